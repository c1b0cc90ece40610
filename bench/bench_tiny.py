"""Warm tiny job: gopark's per-job time against a warm multiprocessing.Pool(2).

    python bench/bench_tiny.py [--reps 50] [--warmup 5] [--master process:2]

Both sides are timed in-process, per job, after a warm-up:

- Pool: ``pool.map(square, range(1000))`` on an already started ``Pool(2)``
  (measured here, in this process, before and after gopark; the faster
  median counts);
- gopark: ``ctx.parallelize(range(1000), 4).map(square).count()`` on an
  already running Context (measured inside ``apps/tiny_gopark.py``).

Target (issue): gopark's median per-job time at most 3x the Pool's.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from multiprocessing import Pool

from _common import APPS, Row, print_table, run_app


def square(x: int) -> int:
    return x * x


def pool_times(reps: int, warmup: int) -> list[float]:
    """Per-job seconds of ``pool.map(square, range(1000))`` on a warm Pool(2)."""
    times = []
    with Pool(2) as pool:
        for _ in range(warmup):
            pool.map(square, range(1000))
        for _ in range(reps):
            start = time.perf_counter()
            result = pool.map(square, range(1000))
            times.append(time.perf_counter() - start)
            assert len(result) == 1000
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--master", default="process:2")
    opts = parser.parse_args()

    # The Pool is measured before and after gopark and its faster median
    # kept, so that load from elsewhere on the machine does not favour gopark.
    pool_before = pool_times(opts.reps, opts.warmup)
    args = [str(APPS / "tiny_gopark.py"), str(opts.reps), str(opts.warmup), "-m", opts.master]
    print(f"gopark: {' '.join(args)}", flush=True)
    run = run_app(args)
    pool_after = pool_times(opts.reps, opts.warmup)
    pool = min(pool_before, pool_after, key=statistics.median)
    if run.stray_pids:
        print(f"WARNING: processes left running after the app exited, ended by the bench: {run.stray_pids}")
    pool_ms = [t * 1e3 for t in pool]
    pool_med = statistics.median(pool_ms)
    rows = [Row("Pool(2).map, median per job", pool_med,
                note=f"best {min(pool_ms):.2f} ms; {opts.reps} jobs after {opts.warmup} warm-up; "
                f"medians before/after gopark {statistics.median(pool_before) * 1e3:.2f}/"
                f"{statistics.median(pool_after) * 1e3:.2f} ms")]
    failed = not run.ok or "times" not in run.result
    if failed:
        print(f"\ngopark FAILED\n{run.failure()}\n")
        rows.append(Row(f"gopark {opts.master}, median per job", None))
    else:
        times = [t * 1e3 for t in run.result["times"]]
        med = statistics.median(times)
        rows.append(Row(f"gopark {opts.master}, median per job", med, med / pool_med, "Pool(2)", "<= 3.0x",
                        med / pool_med <= 3.0, f"best {min(times):.2f} ms; counts "
                        f"{'OK' if run.result['counts_ok'] else 'MISMATCH'}"))
    print_table("warm tiny job: parallelize(range(1000), 4).map(f).count() vs Pool(2).map(f, range(1000))",
                rows, "ratio = these ms / Pool ms (lower is faster); times are per job, in-process", unit="ms")
    return 1 if failed or not run.result.get("counts_ok") else 0


if __name__ == "__main__":
    sys.exit(main())
