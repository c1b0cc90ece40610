"""Many partitions: a reduceByKey of 200k records over M maps x R reducers, on a running Context.

    python bench/bench_wide.py [--repeat 3] [--master process:2]

Spark's default shuffle width is 200 partitions. Each size's job is timed in
``apps/wide_gopark.py`` (best of ``--repeat`` after a warm-up); the ratio is
against the same records' job at 4 x 4, in the same run: what the width
itself costs (map output files, tasks, fetches). No issue target; for context
(one file a map output, not one a reducer: 200 x 200 went from 3.7-4.7 s to
1.3 s when that changed).
"""
from __future__ import annotations

import argparse
import sys

from _common import APPS, Row, print_table, run_app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--master", default="process:2")
    opts = parser.parse_args()
    args = [str(APPS / "wide_gopark.py"), str(opts.repeat), "-m", opts.master]
    print(f"gopark: {' '.join(args)}", flush=True)
    run = run_app(args)
    if not run.ok or not run.result.get("counts_ok"):
        print(f"FAILED\n{run.failure()}")
        return 1
    best = run.result["best"]
    base = best["4x4"]
    rows = [Row(f"reduceByKey 200k, {size}", secs * 1000, secs / base, "4x4", "context",
                note="baseline" if size == "4x4" else "")
            for size, secs in best.items()]
    print_table(f"Wide shuffles, -m {opts.master} (best of {opts.repeat}, per job)", rows,
                "ratio: the job's time over the 4 x 4 job's (higher: the width costs more)", unit="ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
