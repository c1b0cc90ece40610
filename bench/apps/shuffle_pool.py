"""Baseline for context: shuffle_dict.py's work split over multiprocessing.Pool(2).

    python bench/apps/shuffle_pool.py rbk|sums|join [PROCESSES=2]

rbk, sums: each worker sums its slice of i into a dict, the parent merges them.
join: each worker builds the small side (200k rows) and probes its slice of
the large side (a broadcast hash join); the parent adds the (count, checksum).
"""
from __future__ import annotations

import json
import marshal
import os
import sys
from multiprocessing import Pool

from shuffle_dict import JOIN_LEFT, RBK_PAIRS, build_right, probe, reduce_by_key, sums_pair


def rbk_slice(bounds: tuple[int, int]) -> dict[int, int]:
    return reduce_by_key(*bounds)


def sums_slice(bounds: tuple[int, int]) -> dict[int, int]:
    return reduce_by_key(*bounds, sums_pair)


def join_slice(bounds: tuple[int, int]) -> tuple[int, int]:
    return probe(build_right(), *bounds)


def slices(n: int, parts: int) -> list[tuple[int, int]]:
    return [(n * p // parts, n * (p + 1) // parts) for p in range(parts)]


def main() -> None:
    op = sys.argv[1]
    processes = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    with Pool(processes) as pool:
        if op in ("rbk", "sums"):
            parts = pool.map(rbk_slice if op == "rbk" else sums_slice, slices(RBK_PAIRS, processes), chunksize=1)
            counts = parts[0]
            for part in parts[1:]:
                for k, v in part.items():
                    counts[k] = counts.get(k, 0) + v
            result = {"keys": len(counts), "total": sum(counts.values())}
            out = os.environ.get("BENCH_OUT")
            if out:
                with open(out, "wb") as f:
                    marshal.dump(counts, f)
        elif op == "join":
            done = pool.map(join_slice, slices(JOIN_LEFT, processes), chunksize=1)
            result = {"rows": sum(r for r, _ in done), "checksum": sum(c for _, c in done)}
        else:
            raise SystemExit(f"unknown operation {op!r}: use rbk, sums or join")
    print("BENCH_RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
