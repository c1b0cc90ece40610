"""gopark: per-job time of a tiny job on an already running Context.

    python bench/apps/tiny_gopark.py [REPS=50] [WARMUP=5] -m process:2

Runs ``ctx.parallelize(range(1000), 4).map(square).count()`` WARMUP times,
then REPS times, each timed with perf_counter inside this process; prints
the per-job times (seconds) as ``BENCH_RESULT``.
"""
from __future__ import annotations

import itertools
import json
import sys
import time

from gopark import Context, register_func


@register_func
def square(x: int) -> int:
    return x * x


def main() -> None:
    with Context() as ctx:                     # parses -m etc. from sys.argv
        args = list(itertools.takewhile(lambda a: not a.startswith("-"), sys.argv[1:]))
        reps = int(args[0]) if args else 50
        warmup = int(args[1]) if len(args) > 1 else 5
        counts = [ctx.parallelize(range(1000), 4).map(square).count() for _ in range(warmup)]
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            counts.append(ctx.parallelize(range(1000), 4).map(square).count())
            times.append(time.perf_counter() - start)
    print("BENCH_RESULT " + json.dumps({"times": times, "counts_ok": all(c == 1000 for c in counts)}))


if __name__ == "__main__":
    main()
