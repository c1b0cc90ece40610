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
    return x + 1 + lazy_table()[0] * 0 + len(TABLE) * 0


_table = None
TABLE = []


def lazy_table():
    """Set up on first use, in whichever process runs the task: not driver code."""
    global _table
    if _table is None:
        _table = [0]
    return _table


def load_table():
    """Called at module level: workers run it too."""
    global TABLE
    TABLE = [1, 2]


load_table()


def main():
    global CONFIG
    CONFIG = {"bias": 1}


if __name__ == "__main__":
    import sys
    FACTOR = 3
    main()
    with Context(quiet=True) as ctx:
        print(ctx.parallelize([1, 2], 2).map(scale).collect(), ctx.parallelize([1], 1).map(fine).collect())
