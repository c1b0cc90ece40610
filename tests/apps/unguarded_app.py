"""An app whose driver code is not under ``if __name__ == "__main__":``, as many DPark scripts are written.

    [UNGUARDED_LATE=1] python unguarded_app.py [-m MASTER]

A worker imports the app for its functions: the import ends where the driver
code makes its Context, so the worker neither runs the job again nor starts
workers of its own. With ``UNGUARDED_LATE=1`` (seen by the workers too), the
Context is made above a function that the job uses: a worker does not have
that function, and the job's error says why.
"""
import os
import sys

from gopark import Context, JobError, register_func

LATE = os.environ.get("UNGUARDED_LATE") == "1"
print("module level", file=sys.stderr)          # each worker prints this too (it imports the app)
if LATE:
    ctx = Context()


@register_func
def double(x):
    return 2 * x


@register_func
def make_a_context(x):
    Context("local")
    return x


def run() -> None:
    print(ctx.parallelize(range(6), 3).map(double).collect())
    try:
        ctx.parallelize([1], 1).map(make_a_context).collect()
    except JobError as exc:
        print("in a task:", exc.remote_type, exc.remote_message)
    ctx.stop()


if not LATE:
    ctx = Context()
run()
