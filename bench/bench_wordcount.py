"""Word count of a 200 MiB Zipf corpus: gopark against Counter and Pool(2).

    python bench/bench_wordcount.py [--size-mib 200] [--repeat 3] [--master process:2]

Generates the corpus once (bench/data/, cached), then times three whole
commands on it:

- ``apps/wc_counter.py``: one process, ``collections.Counter``;
- ``apps/wc_pool.py``: hand-written ``multiprocessing.Pool(2)`` over byte ranges;
- ``apps/wc_gopark.py -m process:2``: the SPEC section 2 word count.

Targets (issue): gopark at least 1.5x faster than Counter, and at least as
fast as Pool(2). Every result must equal Counter's (OK / MISMATCH).
For scale, measured earlier on this machine: Counter 17.5 s, Pool(2) 10.8 s,
PySpark local[2] 31.7 s.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from _common import APPS, Row, Run, best_of, compare_dicts, load_out, print_table
from _corpus import ensure_corpus


def timed(name: str, args: list[str], repeat: int, out: Path) -> tuple[Run, list[float]]:
    print(f"{name}: {' '.join(args)}", flush=True)
    return best_of(args, repeat, env={"BENCH_OUT": str(out)}, label=name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command; the best counts")
    parser.add_argument("--master", default="process:2")
    parser.add_argument("--skip-baselines", action="store_true", help="run gopark only (no ratios)")
    opts = parser.parse_args()

    corpus = str(ensure_corpus(opts.size_mib))
    with tempfile.TemporaryDirectory(prefix="gopark-bench-") as tmp:
        outs = {name: Path(tmp) / f"{name}.marshal" for name in ("counter", "pool", "gopark")}
        runs: dict[str, tuple[Run, list[float]]] = {}
        if not opts.skip_baselines:
            runs["counter"] = timed("Counter", [str(APPS / "wc_counter.py"), corpus], opts.repeat, outs["counter"])
            runs["pool"] = timed("Pool(2)", [str(APPS / "wc_pool.py"), corpus, "2"], opts.repeat, outs["pool"])
        runs["gopark"] = timed(f"gopark {opts.master}",
                               [str(APPS / "wc_gopark.py"), corpus, "-m", opts.master], opts.repeat, outs["gopark"])

        failed = [name for name, (run, _) in runs.items() if not run.ok]
        for name in failed:
            print(f"\n{name} FAILED\n{runs[name][0].failure()}\n")
        checks = {}
        if "counter" in runs and "counter" not in failed:
            expected = load_out(outs["counter"])
            cache = Path(corpus).with_suffix(".counts.marshal")  # bench_memory.py's expected counts
            if not cache.exists():
                shutil.copyfile(outs["counter"], cache)
            for name in ("pool", "gopark"):
                if name in runs and name not in failed:
                    checks[name] = compare_dicts(expected, load_out(outs[name]))

    def secs(name: str) -> float | None:
        return runs[name][0].seconds if name in runs and name not in failed else None

    def times(name: str) -> str:
        return "runs " + "/".join(f"{t:.2f}" for t in runs[name][1]) if name in runs else ""

    counter, pool, gopark = secs("counter"), secs("pool"), secs("gopark")
    rows = [Row("Counter (1 process)", counter, note=f"baseline; {times('counter')}")]
    if "pool" in runs:
        rows.append(Row("Pool(2) byte ranges", pool, counter / pool if counter and pool else None,
                        "Counter", note=f"result {checks.get('pool', '?')}; {times('pool')}"))
    gopark_note = f"result {checks.get('gopark', '?')}; {times('gopark')}"
    rows.append(Row(f"gopark {opts.master}", gopark, counter / gopark if counter and gopark else None,
                    "Counter", ">= 1.5x", counter / gopark >= 1.5 if counter and gopark else None, gopark_note))
    rows.append(Row(f"gopark {opts.master}", gopark, pool / gopark if pool and gopark else None,
                    "Pool(2)", ">= 1.0x", pool / gopark >= 1.0 if pool and gopark else None))
    print_table(f"word count, {opts.size_mib} MiB Zipf corpus (best of {opts.repeat}, whole commands)", rows,
                "ratio = baseline seconds / these seconds (higher is faster); "
                "earlier on this machine: Counter 17.5 s, Pool(2) 10.8 s, PySpark local[2] 31.7 s")
    if gopark is not None:
        memory = runs["gopark"][0].result.get("memory", {})
        workers = ", ".join(f"{p['hwm_mib']:.0f}" for p in memory.get("procs", []) if p["depth"] == 1)
        print(f"gopark peak RSS (VmHWM, MiB): driver {memory.get('driver_hwm_mib', 0):.0f}; "
              f"driver's children {workers or 'none found'}")
    return 1 if failed or any(c != "OK" for c in checks.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
