"""gopark: a reduceByKey of 200k records over many partitions, on a running Context.

    python bench/apps/wide_gopark.py [REPEAT=3] -m process:2

For each (maps, reducers) of SIZES: ``parallelize(range(200_000), maps).map(keyed)
.reduceByKey(add, reducers).count()``, once to warm up, then REPEAT times, each
timed with perf_counter inside this process; prints the best of each (seconds) as
``BENCH_RESULT``, with whether the counts were right.
"""
from __future__ import annotations

import itertools
import json
import sys
import time

from gopark import Context, register_func

RECORDS = 200_000
KEYS = 5_000
SIZES = [(4, 4), (8, 8), (64, 64), (200, 200)]


@register_func
def keyed(i: int) -> tuple[int, int]:
    return (i % KEYS, i)


@register_func
def add(a: int, b: int) -> int:
    return a + b


def main() -> None:
    with Context() as ctx:                     # parses -m etc. from sys.argv
        args = list(itertools.takewhile(lambda a: not a.startswith("-"), sys.argv[1:]))
        repeat = int(args[0]) if args else 3
        best, ok = {}, True
        for maps, reducers in SIZES:
            rdd = ctx.parallelize(range(RECORDS), maps)
            times = []
            for _ in range(repeat + 1):
                start = time.perf_counter()
                ok &= rdd.map(keyed).reduceByKey(add, reducers).count() == KEYS
                times.append(time.perf_counter() - start)
            best[f"{maps}x{reducers}"] = min(times[1:])
    print("BENCH_RESULT " + json.dumps({"best": best, "counts_ok": ok}))


if __name__ == "__main__":
    main()
