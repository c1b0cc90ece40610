"""Baseline: the records of shuffle_gopark.py, aggregated with a plain dict in one process.

    python bench/apps/shuffle_dict.py rbk|sums|join

The record functions are copies of shuffle_gopark.py's; the aggregation is
what one writes without a framework (``dict.get`` to sum, a dict of lists to
join).
"""
from __future__ import annotations

import json
import marshal
import os
import sys

RBK_PAIRS = 5_000_000
RBK_KEYS = 1_000_000
JOIN_LEFT = 2_000_000
JOIN_RIGHT = 200_000


def rbk_pair(i: int) -> tuple[int, int]:
    return (i * 7919 % RBK_KEYS, 1)


def sums_pair(i: int) -> tuple[int, int]:
    return (i * 7919 % RBK_KEYS, i % 7)


def left_row(i: int) -> tuple[int, int]:
    return (i * 7919 % JOIN_RIGHT, i)


def right_row(j: int) -> tuple[int, int]:
    return (j, 3 * j)


def join_digest(row: tuple[int, tuple[int, int]]) -> tuple[int, int]:
    k, (a, b) = row
    return (1, (k * 1_000_003 + a * 31 + b) % 1_000_000_007)


def reduce_by_key(lo: int, hi: int, pair=rbk_pair) -> dict[int, int]:  # noqa: ANN001
    counts: dict[int, int] = {}
    for i in range(lo, hi):
        k, v = pair(i)
        counts[k] = counts.get(k, 0) + v
    return counts


def build_right() -> dict[int, list[int]]:
    right: dict[int, list[int]] = {}
    for j in range(JOIN_RIGHT):
        k, b = right_row(j)
        right.setdefault(k, []).append(b)
    return right


def probe(right: dict[int, list[int]], lo: int, hi: int) -> tuple[int, int]:
    rows = checksum = 0
    for i in range(lo, hi):
        k, a = left_row(i)
        for b in right.get(k, ()):
            n, h = join_digest((k, (a, b)))
            rows += n
            checksum += h
    return rows, checksum


def main() -> None:
    op = sys.argv[1]
    if op in ("rbk", "sums"):
        counts = reduce_by_key(0, RBK_PAIRS, rbk_pair if op == "rbk" else sums_pair)
        result = {"keys": len(counts), "total": sum(counts.values())}
        out = os.environ.get("BENCH_OUT")
        if out:
            with open(out, "wb") as f:
                marshal.dump(counts, f)
    elif op == "join":
        rows, checksum = probe(build_right(), 0, JOIN_LEFT)
        result = {"rows": rows, "checksum": checksum}
    else:
        raise SystemExit(f"unknown operation {op!r}: use rbk, sums or join")
    print("BENCH_RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
