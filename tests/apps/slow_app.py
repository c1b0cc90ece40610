"""An app whose job never ends by itself: ``python slow_app.py FOLDER [-m MASTER]``.

Each task leaves ``started-<x>-<pid>`` in FOLDER, then sleeps. The tests
interrupt or kill the driver mid-job and look for what it left behind.
``python slow_app.py FOLDER pipe``: each task pipes its records through a shell
that starts a ``sleep`` in the background and waits for it, leaving
``started-pipe-<pid>`` that holds the shell's and the sleep's pids.
"""
import os
import sys
import time
from functools import partial

from gopark import Context, register_func


@register_func
def slow(folder, x):
    with open(os.path.join(folder, f"started-{x}-{os.getpid()}"), "w"):
        pass
    time.sleep(120)
    return x


SHELL = 'sleep 120 & echo $$ $! > "$0/pids-$$" && mv "$0/pids-$$" "$0/started-pipe-$$"; wait'


def main():
    with Context() as ctx:
        folder = sys.argv[1]
        print("driver", os.getpid(), flush=True)
        if sys.argv[2:] == ["pipe"]:
            ctx.parallelize(range(8), 8).pipe(["sh", "-c", SHELL, folder]).collect()
        ctx.parallelize(range(8), 8).map(partial(slow, folder)).collect()


if __name__ == "__main__":
    main()
