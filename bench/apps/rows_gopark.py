"""gopark: sortBy and groupByKey of rows whose values are tuples of strings, with a report of peak memory.

    python bench/apps/rows_gopark.py sort|group -m process:2 [--mem MB]

The rows ``(key, (name, text, number))`` are made inside the job from
``parallelize(range(ROWS), 2)``: about 360 bytes each in memory, most of it in
the nested strings (what a budget that sized only the outer tuple would miss).
``sort`` sorts them by key; ``group`` groups them by a key of 200k values. The
app checks its own result (sorted, nothing lost) and prints it with the peak
RSS (VmHWM) of the driver and of every process under it, read just before the
Context stops.
"""
from __future__ import annotations

import json
import sys

from _peaks import peak_rss_report, print_report

from gopark import Context, register_func

ROWS = 2_000_000
GROUP_KEYS = 200_000


@register_func
def row(i: int) -> tuple[str, tuple[str, str, int]]:
    key = f"user{i * 7919 % 1_000_003:07d}"
    return (key, (key, f"some text payload number {i}", i))


@register_func
def group_row(i: int) -> tuple[int, tuple[str, str, int]]:
    return (i * 7919 % GROUP_KEYS, (f"user{i:07d}", f"some text payload number {i}", i))


@register_func
def first(r: tuple) -> object:
    return r[0]


@register_func
def sorted_run(it: object) -> list[tuple[int, str, str, bool]]:
    """A partition's count, first and last key, and whether its keys come in order."""
    n, first_key, last, ordered = 0, None, None, True
    for key, _ in it:          # type: ignore[attr-defined]
        if last is not None and key < last:
            ordered = False
        first_key = key if first_key is None else first_key
        n, last = n + 1, key
    return [(n, first_key, last, ordered)]


@register_func
def group_size(values: list) -> int:
    return len(values)


@register_func
def add(a: int, b: int) -> int:
    return a + b


def main() -> None:
    op = sys.argv[1]
    with Context() as ctx:                     # parses -m, --mem etc. from sys.argv
        if op == "sort":
            runs = ctx.parallelize(range(ROWS), 2).map(row).sortBy(first).mapPartitions(sorted_run).collect()
            edges = [key for run in runs if run[0] for key in run[1:3]]
            ok = all(run[3] for run in runs) and edges == sorted(edges) and sum(run[0] for run in runs) == ROWS
            result = {"rows": sum(run[0] for run in runs), "ok": ok}
        else:
            sizes = ctx.parallelize(range(ROWS), 2).map(group_row).groupByKey().mapValue(group_size)
            groups, rows = sizes.count(), sizes.values().reduce(add)
            result = {"groups": groups, "rows": rows, "ok": groups == GROUP_KEYS and rows == ROWS}
        report = peak_rss_report()
    print_report(report)
    print("BENCH_RESULT " + json.dumps({**result, "memory": report}))


if __name__ == "__main__":
    main()
