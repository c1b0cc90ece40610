"""Baseline: word count in one process with collections.Counter.

    python bench/apps/wc_counter.py CORPUS

Splits each line as the gopark app does (``str.split``). Prints the number of
distinct words; with ``$BENCH_OUT`` set, writes the counts there (marshal).
"""
from __future__ import annotations

import json
import marshal
import os
import sys
from collections import Counter


def count(path: str) -> dict[str, int]:
    counts: Counter[str] = Counter()
    with open(path, encoding="utf-8") as f:
        for line in f:
            counts.update(line.split())
    return dict(counts)


def main() -> None:
    counts = count(sys.argv[1])
    out = os.environ.get("BENCH_OUT")
    if out:
        with open(out, "wb") as f:
            marshal.dump(counts, f)
    print("BENCH_RESULT " + json.dumps({"distinct": len(counts), "total": sum(counts.values())}))


if __name__ == "__main__":
    main()
