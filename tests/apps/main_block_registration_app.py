"""Registers functions in three places: at module level, in a block that every import runs, and, as a
mistake, inside the main block (``sys.argv[1]`` says which way: decorator, call, or a call in a function
that the main block calls)."""
import sys

from gopark import Context, register_func


@register_func
def ten_times(x):
    return 10 * x


if "gopark" in sys.modules:                  # a block every import of the script runs: allowed
    @register_func
    def plus_one(x):
        return x + 1


def in_main_block(x):
    return x


def register_in_main():
    register_func(in_main_block)       # one of the script's functions, first registered by the main block's call


if __name__ == "__main__":
    with Context(quiet=True) as ctx:
        print(ctx.parallelize([1, 2], 2).map(ten_times).map(plus_one).collect(), flush=True)
        if sys.argv[1] == "decorator":
            @register_func
            def in_main_block(x):
                return x
        elif sys.argv[1] == "function":
            register_in_main()
        else:
            def in_main_block(x):
                return x
            register_func(in_main_block)
        print(ctx.parallelize([1, 2], 2).map(in_main_block).collect())
