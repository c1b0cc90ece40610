"""gopark: the word count of SPEC section 2, with a report of peak memory.

    python bench/apps/wc_gopark.py CORPUS -m process:2 [--mem MB]

Prints the number of distinct words; with ``$BENCH_OUT`` set, writes the
counts there (marshal, bench only). Just before the Context stops, reads the
peak RSS (VmHWM) of every process whose parent is this driver, and of their
descendants, straight from /proc (no gopark API), and prints it together with
the driver's own.
"""
from __future__ import annotations

import json
import marshal
import os
import sys
from functools import partial

from _peaks import peak_rss_report, print_report

from gopark import Context, register_func


@register_func
def words(line: str) -> list[str]:
    return line.split()


@register_func
def pair(word: str, n: int = 1) -> tuple[str, int]:
    return (word, n)


@register_func
def add(a: int, b: int) -> int:
    return a + b


def main() -> None:
    with Context() as ctx:                     # parses -m, --mem etc. from sys.argv
        counts = (ctx.textFile(sys.argv[1])
                     .flatMap(words)
                     .map(partial(pair, n=1))
                     .reduceByKey(add)
                     .collectAsMap())
        report = peak_rss_report()
    print_report(report)
    out = os.environ.get("BENCH_OUT")
    if out:
        with open(out, "wb") as f:
            marshal.dump(counts, f)
    print("BENCH_RESULT " + json.dumps({"distinct": len(counts), "total": sum(counts.values()),
                                        "memory": report}))


if __name__ == "__main__":
    main()
