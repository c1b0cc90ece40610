"""A script whose driver code sets globals that registered functions read (see test_process_mode)."""
import os
import sys

from gopark import Context, register_func

FACTOR = 2
CONFIG = {}


@register_func
def scale(x):
    return x * FACTOR + helper(x)


def helper(x):
    return CONFIG.get("bias", 0) + len(sys.argv) * 0 + os.getpid() * 0


@register_func
def fine(x):
    return x + 1


def main():
    global CONFIG
    CONFIG = {"bias": 1}


if __name__ == "__main__":
    import sys
    FACTOR = 3
    main()
    with Context(quiet=True) as ctx:
        print(ctx.parallelize([1, 2], 2).map(scale).collect(), ctx.parallelize([1], 1).map(fine).collect())
