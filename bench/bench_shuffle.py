"""reduceByKey (5M pairs, 1M keys) and join (2M x 200k rows): gopark against a plain dict.

    python bench/bench_shuffle.py [--repeat 3] [--master process:2] [--ops rbk,join]

For each operation, times three whole commands (best of ``--repeat``):

- ``apps/shuffle_dict.py OP``: one process, plain dict (the baseline);
- ``apps/shuffle_pool.py OP``: the same work over ``multiprocessing.Pool(2)``, for context;
- ``apps/shuffle_gopark.py OP -m process:2``.

The records are generated inside each command from ``range(N)``; no data file.
Target (issue): gopark at least as fast as the dict version (1.0x), aim 1.2x.
Results must match the dict version's (OK / MISMATCH).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _common import APPS, Row, Run, best_of, compare_dicts, load_out, print_table

TITLES = {"rbk": "reduceByKey, 5M pairs over 1M keys", "join": "join, 2M x 200k rows (int keys)"}


def check(op: str, dict_run: Run, other: Run, dict_out: Path, other_out: Path) -> str:
    """Compare another command's result with the dict version's."""
    if op == "rbk":
        return compare_dicts(load_out(dict_out), load_out(other_out))
    if dict_run.result == other.result:
        return "OK"
    return f"MISMATCH (dict {dict_run.result}, got {other.result})"


def bench(op: str, repeat: int, master: str, tmp: Path) -> tuple[list[Row], list[str]]:
    commands = {
        "dict": [str(APPS / "shuffle_dict.py"), op],
        "Pool(2)": [str(APPS / "shuffle_pool.py"), op, "2"],
        f"gopark {master}": [str(APPS / "shuffle_gopark.py"), op, "-m", master],
    }
    runs: dict[str, tuple[Run, Path]] = {}
    failures = []
    for name, args in commands.items():
        out = tmp / f"{op}-{name.split()[0]}.marshal"
        print(f"{op} / {name}: {' '.join(args)}", flush=True)
        run, _ = best_of(args, repeat, env={"BENCH_OUT": str(out)}, label=name)
        runs[name] = (run, out)
        if not run.ok:
            failures.append(f"{op} / {name} FAILED\n{run.failure()}")

    dict_run, dict_out = runs["dict"]
    base = dict_run.seconds if dict_run.ok else None
    rows = [Row(f"{op}: dict (1 process)", base, note="baseline")]
    for name in list(commands)[1:]:
        run, out = runs[name]
        secs = run.seconds if run.ok else None
        ratio = base / secs if base and secs else None
        note = f"result {check(op, dict_run, run, dict_out, out)}" if base and secs else ""
        if name.startswith("gopark"):
            rows.append(Row(f"{op}: {name}", secs, ratio, "dict", ">= 1.0x",
                            ratio >= 1.0 if ratio else None, note + (f"; aim 1.2x: {'yes' if ratio >= 1.2 else 'no'}"
                                                                     if ratio else "")))
        else:
            rows.append(Row(f"{op}: {name}", secs, ratio, "dict", "context", note=note))
    return rows, failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command; the best counts")
    parser.add_argument("--master", default="process:2")
    parser.add_argument("--ops", default="rbk,join", help="comma-separated: rbk, join")
    opts = parser.parse_args()

    all_rows: list[Row] = []
    all_failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gopark-bench-") as tmp:
        for op in opts.ops.split(","):
            rows, failures = bench(op, opts.repeat, opts.master, Path(tmp))
            all_rows += rows
            all_failures += failures
    for failure in all_failures:
        print(f"\n{failure}\n")
    print_table(f"shuffles: {', '.join(TITLES[op] for op in opts.ops.split(','))} "
                f"(best of {opts.repeat}, whole commands)", all_rows,
                "ratio = dict seconds / these seconds (higher is faster)")
    mismatched = any("MISMATCH" in r.note for r in all_rows)
    return 1 if all_failures or mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
