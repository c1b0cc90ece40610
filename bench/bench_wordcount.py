"""Word count of a 200 MiB Zipf corpus: gopark against Counter and Pool(2).

    python bench/bench_wordcount.py [--size-mib 200] [--repeat 3] [--master process:2] [--local]

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

from _common import APPS, Command, Row, compare_dicts, load_out, print_table, time_commands
from _corpus import ensure_corpus


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command; the best counts")
    parser.add_argument("--master", default="process:2")
    parser.add_argument("--skip-baselines", action="store_true", help="run gopark only (no ratios)")
    parser.add_argument("--local", action="store_true", help="also run gopark -m local, for context")
    opts = parser.parse_args()

    corpus = str(ensure_corpus(opts.size_mib))
    with tempfile.TemporaryDirectory(prefix="gopark-bench-") as tmp:
        def command(name: str, app: str, *args: str) -> Command:
            return Command(name, [str(APPS / app), corpus, *args], Path(tmp) / f"{name}.marshal")

        commands = []
        if not opts.skip_baselines:
            commands += [command("counter", "wc_counter.py"), command("pool", "wc_pool.py", "2")]
        commands.append(command("gopark", "wc_gopark.py", "-m", opts.master))
        if opts.local:
            commands.append(command("local", "wc_gopark.py", "-m", "local"))
        runs = time_commands(commands, opts.repeat)

        failed = [name for name, timing in runs.items() if not timing.ok]
        for name in failed:
            print(f"\n{name} FAILED\n{runs[name].best.failure()}\n")
        checks = {}
        if "counter" in runs and "counter" not in failed:
            out = Path(tmp) / "counter.marshal"
            expected = load_out(out)
            cache = Path(corpus).with_suffix(".counts.marshal")  # bench_memory.py's expected counts
            if not cache.exists():
                shutil.copyfile(out, cache)
            for cmd in commands[1:]:
                if cmd.name not in failed:
                    checks[cmd.name] = compare_dicts(expected, load_out(cmd.out))

    def secs(name: str) -> float | None:
        return runs[name].seconds if name in runs else None

    def note(name: str) -> str:
        result = f"result {checks[name]}; " if name in checks else ""
        return result + runs[name].runs_note() if name in runs else ""

    counter, pool, gopark, local = secs("counter"), secs("pool"), secs("gopark"), secs("local")
    rows = [Row("Counter (1 process)", counter, note=f"baseline; {note('counter')}")]
    if "pool" in runs:
        rows.append(Row("Pool(2) byte ranges", pool, counter / pool if counter and pool else None,
                        "Counter", "context", note=note("pool")))
    rows.append(Row(f"gopark {opts.master}", gopark, counter / gopark if counter and gopark else None,
                    "Counter", ">= 1.5x", counter / gopark >= 1.5 if counter and gopark else None, note("gopark")))
    rows.append(Row(f"gopark {opts.master}", gopark, pool / gopark if pool and gopark else None,
                    "Pool(2)", ">= 1.0x", pool / gopark >= 1.0 if pool and gopark else None))
    if "local" in runs:
        rows.append(Row("gopark local", local, counter / local if counter and local else None, "Counter",
                        "context", note=note("local")))
    print_table(f"word count, {opts.size_mib} MiB Zipf corpus (best of {opts.repeat}, whole commands, "
                "runs interleaved)", rows,
                "ratio = baseline seconds / these seconds (higher is faster); "
                "earlier on this machine: Counter 17.5 s, Pool(2) 10.8 s, PySpark local[2] 31.7 s")
    if gopark is not None:
        memory = runs["gopark"].best.result.get("memory", {})
        workers = ", ".join(f"{p['hwm_mib']:.0f}" for p in memory.get("procs", []) if p["depth"] == 1)
        print(f"gopark peak RSS (VmHWM, MiB): driver {memory.get('driver_hwm_mib', 0):.0f}; "
              f"driver's children {workers or 'none found'}")
    return 1 if failed or any(c != "OK" for c in checks.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
