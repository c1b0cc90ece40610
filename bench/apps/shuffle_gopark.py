"""gopark: reduceByKey of 5M pairs over 1M keys, or a join of 2M by 200k rows.

    python bench/apps/shuffle_gopark.py rbk|sums|join -m process:2

The records are computed inside the job from ``parallelize(range(N))`` so
no data file is needed; ``shuffle_dict.py`` and ``shuffle_pool.py`` compute
exactly the same records (their functions are copies of these).

- rbk: pairs ``(i * 7919 % 1_000_000, 1)`` for i < 5M, ``reduceByKey(add)``,
  ``collectAsMap()``; with ``$BENCH_OUT`` set, the dict is written there.
- sums: the same with values ``i % 7`` instead of 1 (pairs made as ``(key, 1)``
  travel as their keys alone and are counted in C; these do not).
- join: left rows ``(i * 7919 % 200_000, i)`` for i < 2M, right rows
  ``(j, 3 * j)`` for j < 200k; ``join``, then a (count, checksum) of the
  joined rows by ``map`` + ``reduce``.
"""
from __future__ import annotations

import json
import marshal
import os
import sys

from gopark import Context, register_func

RBK_PAIRS = 5_000_000
RBK_KEYS = 1_000_000
JOIN_LEFT = 2_000_000
JOIN_RIGHT = 200_000
SLICES = 4


@register_func
def rbk_pair(i: int) -> tuple[int, int]:
    return (i * 7919 % RBK_KEYS, 1)


@register_func
def sums_pair(i: int) -> tuple[int, int]:
    return (i * 7919 % RBK_KEYS, i % 7)


@register_func
def add(a: int, b: int) -> int:
    return a + b


@register_func
def left_row(i: int) -> tuple[int, int]:
    return (i * 7919 % JOIN_RIGHT, i)


@register_func
def right_row(j: int) -> tuple[int, int]:
    return (j, 3 * j)


@register_func
def join_digest(row: tuple[int, tuple[int, int]]) -> tuple[int, int]:
    k, (a, b) = row
    return (1, (k * 1_000_003 + a * 31 + b) % 1_000_000_007)


@register_func
def add_pairs(x: tuple[int, int], y: tuple[int, int]) -> tuple[int, int]:
    return (x[0] + y[0], x[1] + y[1])


def main() -> None:
    with Context() as ctx:                     # parses -m etc. from sys.argv
        op = sys.argv[1]
        if op in ("rbk", "sums"):
            pair = rbk_pair if op == "rbk" else sums_pair
            counts = ctx.parallelize(range(RBK_PAIRS), SLICES).map(pair).reduceByKey(add).collectAsMap()
            result = {"keys": len(counts), "total": sum(counts.values())}
            out = os.environ.get("BENCH_OUT")
            if out:
                with open(out, "wb") as f:
                    marshal.dump(counts, f)
        elif op == "join":
            left = ctx.parallelize(range(JOIN_LEFT), SLICES).map(left_row)
            right = ctx.parallelize(range(JOIN_RIGHT), SLICES).map(right_row)
            rows, checksum = left.join(right).map(join_digest).reduce(add_pairs)
            result = {"rows": rows, "checksum": checksum}
        else:
            raise SystemExit(f"unknown operation {op!r}: use rbk, sums or join")
    print("BENCH_RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
