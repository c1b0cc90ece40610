"""A function of a job that runs a job itself, on the driver's Context (which local mode's tasks can reach):
each kind of such call ends the job with a JobError that says why; the app prints what it got."""
from __future__ import annotations

import sys

from gopark import Context, JobError, register_func

HELD: list = []     # the driver's Context, seen by local mode's tasks (in a worker it stays empty)


@register_func
def count_inside(x: int) -> int:
    return HELD[0].parallelize(range(x), 1).count()


@register_func
def sort_inside(x: int) -> list:
    return HELD[0].parallelize([(2, "b"), (1, "a")], 2).sortByKey().collect()   # its sample is a job


@register_func
def index_inside(x: int) -> list:
    return HELD[0].parallelize(["a", "b"], 2).zipWithIndex().collect()        # its count is a job


if __name__ == "__main__":
    with Context() as ctx:
        HELD.append(ctx)
        for f in (count_inside, sort_inside, index_inside):
            try:
                ctx.parallelize([1, 2], 2).map(f).collect()
                print(f.__name__, "ran")
            except JobError as exc:
                print(f.__name__, exc.remote_type, str(exc.remote_message).splitlines()[0])
        print("after:", ctx.parallelize(range(5), 2).count())     # the Context still runs jobs
    sys.exit(0)
