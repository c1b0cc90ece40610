"""An app whose job never ends by itself: ``python slow_app.py FOLDER [-m MASTER]``.

Each task leaves ``started-<x>-<pid>`` in FOLDER, then sleeps. The tests
interrupt or kill the driver mid-job and look for what it left behind.
``python slow_app.py FOLDER pipe``: each task pipes its records through a shell
that starts a ``sleep`` in the background and waits for it, leaving
``started-pipe-<pid>`` that holds the shell's and the sleep's pids; ``pipefail``:
the same in one partition while the other fails the job (``--max-failures 1``),
after which the app ends at once.
"""
import os
import sys
import time
from functools import partial

from gopark import Context, JobError, register_func


@register_func
def slow(folder, x):
    with open(os.path.join(folder, f"started-{x}-{os.getpid()}"), "w"):
        pass
    time.sleep(120)
    return x


SHELL = 'sleep 120 & echo $$ $! > "$0/pids-$$" && mv "$0/pids-$$" "$0/started-pipe-$$"; wait'


@register_func
def fail_once_piped(folder, i, records):
    """Partition 0 fails (without starting its pipe) once partition 1's pipe has started."""
    if i == 0:
        while not any(n.startswith("started-pipe-") for n in os.listdir(folder)):
            time.sleep(0.01)
        raise RuntimeError("partition 0 fails")
    return records


def main():
    with Context() as ctx:
        folder = sys.argv[1]
        print("driver", os.getpid(), flush=True)
        if sys.argv[2:] == ["pipe"]:
            ctx.parallelize(range(8), 8).pipe(["sh", "-c", SHELL, folder]).collect()
        if sys.argv[2:] == ["pipefail"]:     # the job fails while a pipe runs, and the app ends at once
            try:
                ctx.parallelize(range(2), 2).pipe(["sh", "-c", SHELL, folder]).mapPartitionsWithIndex(
                    partial(fail_once_piped, folder)).collect()
            except JobError:
                return
        ctx.parallelize(range(8), 8).map(partial(slow, folder)).collect()


if __name__ == "__main__":
    main()
