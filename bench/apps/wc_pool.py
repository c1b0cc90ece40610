"""Baseline: hand-written word count over byte ranges with multiprocessing.Pool.

    python bench/apps/wc_pool.py CORPUS [PROCESSES=2]

The file is cut into PROCESSES byte ranges; a line belongs to the range in
which it starts. Each worker counts its range's lines with a Counter (on
bytes, decoding only the distinct words), the parent merges the counts.
Prints the number of distinct words; with ``$BENCH_OUT`` set, writes the
counts there (marshal).
"""
from __future__ import annotations

import json
import marshal
import os
import sys
from collections import Counter
from multiprocessing import Pool


def count_range(job: tuple[str, int, int]) -> dict[str, int]:
    """Count the words of the lines that start in ``[start, end)``."""
    path, start, end = job
    counts: Counter[bytes] = Counter()
    with open(path, "rb") as f:
        pos = start
        if start > 0:
            # The line around ``start`` belongs to the previous range unless
            # it starts exactly at ``start``.
            f.seek(start - 1)
            pos += len(f.readline()) - 1
        for line in f:
            if pos >= end:
                break
            counts.update(line.split())
            pos += len(line)
    return {word.decode(): n for word, n in counts.items()}


def count(path: str, processes: int) -> dict[str, int]:
    size = os.path.getsize(path)
    bounds = [size * i // processes for i in range(processes + 1)]
    jobs = [(path, bounds[i], bounds[i + 1]) for i in range(processes)]
    with Pool(processes) as pool:
        parts = pool.map(count_range, jobs, chunksize=1)
    counts = parts[0]
    for part in parts[1:]:
        for word, n in part.items():
            counts[word] = counts.get(word, 0) + n
    return counts


def main() -> None:
    processes = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    counts = count(sys.argv[1], processes)
    out = os.environ.get("BENCH_OUT")
    if out:
        with open(out, "wb") as f:
            marshal.dump(counts, f)
    print("BENCH_RESULT " + json.dumps({"distinct": len(counts), "total": sum(counts.values())}))


if __name__ == "__main__":
    main()
