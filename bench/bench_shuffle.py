"""reduceByKey (5M pairs, 1M keys) and join (2M x 200k rows): gopark against a plain dict.

    python bench/bench_shuffle.py [--repeat 3] [--master process:2] [--ops rbk,join,sums] [--local]

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

from _common import APPS, Command, Row, Timing, compare_dicts, load_out, print_table, time_commands

TITLES = {"rbk": "reduceByKey, 5M pairs over 1M keys", "join": "join, 2M x 200k rows (int keys)",
          "sums": "reduceByKey, 5M pairs over 1M keys, values other than 1"}


def check(op: str, expected: Timing, got: Timing, expected_out: Path, got_out: Path) -> str:
    """Compare another command's result with the dict version's."""
    if op in ("rbk", "sums"):
        return compare_dicts(load_out(expected_out), load_out(got_out))
    if expected.best.result == got.best.result:
        return "OK"
    return f"MISMATCH (dict {expected.best.result}, got {got.best.result})"


def bench(op: str, repeat: int, master: str, tmp: Path, local: bool) -> tuple[list[Row], list[str]]:
    """Time one operation's commands; return its table rows and the failures' reports."""
    commands = [
        Command("dict", [str(APPS / "shuffle_dict.py"), op], tmp / f"{op}-dict.marshal"),
        Command("Pool(2)", [str(APPS / "shuffle_pool.py"), op, "2"], tmp / f"{op}-pool.marshal"),
        Command(f"gopark {master}", [str(APPS / "shuffle_gopark.py"), op, "-m", master],
                tmp / f"{op}-gopark.marshal"),
    ]
    if local:
        commands.append(Command("gopark local", [str(APPS / "shuffle_gopark.py"), op, "-m", "local"],
                                tmp / f"{op}-local.marshal"))
    print(f"{TITLES[op]}:", flush=True)
    runs = time_commands(commands, repeat)
    failures = [f"{op} / {cmd.name} FAILED\n{runs[cmd.name].best.failure()}"
                for cmd in commands if not runs[cmd.name].ok]

    base_cmd = commands[0]
    base = runs[base_cmd.name]
    rows = [Row(f"{op}: dict (1 process)", base.seconds, note=f"baseline; {base.runs_note()}")]
    for cmd in commands[1:]:
        timing = runs[cmd.name]
        secs = timing.seconds
        ratio = base.seconds / secs if base.seconds and secs else None
        note = f"result {check(op, base, timing, base_cmd.out, cmd.out)}; " if ratio else ""
        note += timing.runs_note()
        if cmd.name == f"gopark {master}":
            rows.append(Row(f"{op}: {cmd.name}", secs, ratio, "dict", ">= 1.0x", ratio >= 1.0 if ratio else None,
                            (f"aim 1.2x: {'yes' if ratio >= 1.2 else 'no'}; " if ratio else "") + note))
        else:
            rows.append(Row(f"{op}: {cmd.name}", secs, ratio, "dict", "context", note=note))
    return rows, failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command; the best counts")
    parser.add_argument("--master", default="process:2")
    parser.add_argument("--ops", default="rbk,join", help="comma-separated: rbk, join, sums (the issue's target is "
                        "rbk's: pairs (key, 1); sums has other values, for context)")
    parser.add_argument("--local", action="store_true", help="also run gopark -m local, for context")
    opts = parser.parse_args()

    all_rows: list[Row] = []
    all_failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gopark-bench-") as tmp:
        for op in opts.ops.split(","):
            rows, failures = bench(op, opts.repeat, opts.master, Path(tmp), opts.local)
            all_rows += rows
            all_failures += failures
    for failure in all_failures:
        print(f"\n{failure}\n")
    print_table(f"shuffles: {', '.join(TITLES[op] for op in opts.ops.split(','))} "
                f"(best of {opts.repeat}, whole commands, runs interleaved)", all_rows,
                "ratio = dict seconds / these seconds (higher is faster)")
    mismatched = any("MISMATCH" in r.note for r in all_rows)
    return 1 if all_failures or mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
