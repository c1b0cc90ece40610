"""Registers functions in three places: at module level, in a block that every import runs, and, as a
mistake, inside the main block (``sys.argv[1]`` says which way: decorator, call, or a call in a function
that the main block calls, of one of its functions or of another module's: "function", "module")."""
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


def register_in_main(which):
    """A first registration made by the main block's call: of one of the script's functions, or of another
    module's (which workers import without it)."""
    if which == "module":
        import apps.funcs
        register_func(apps.funcs.not_registered_here)
    else:
        register_func(in_main_block)


if __name__ == "__main__":
    with Context(quiet=True) as ctx:
        print(ctx.parallelize([1, 2], 2).map(ten_times).map(plus_one).collect(), flush=True)
        if sys.argv[1] == "decorator":
            @register_func
            def in_main_block(x):
                return x
        elif sys.argv[1] in ("function", "module"):
            register_in_main(sys.argv[1])
        else:
            def in_main_block(x):
                return x
            register_func(in_main_block)
        print(ctx.parallelize([1, 2], 2).map(in_main_block).collect())
