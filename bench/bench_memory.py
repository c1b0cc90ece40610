"""Word count under a memory limit: does the shuffle fit in ``--mem``?

    python bench/bench_memory.py [--app wc|sort|group] [--size-mib 200] [--mem 50] [--master process:2]

Runs ``apps/wc_gopark.py CORPUS -m process:2 --mem MB`` on the word-count
corpus. ``--mem`` defaults to a quarter of the shuffle's data: without
map-side combining the shuffle would carry every word of the corpus once, so
its size is taken as the corpus size (200 MiB -> --mem 50).

Just before ``ctx.stop()`` the app reads VmHWM (peak RSS) from
/proc/<pid>/status for every process whose parent is the driver, and their
descendants (no gopark API). Targets (issue): the job completes, with the same
counts as ``collections.Counter``, and each worker's peak RSS is at most 1.5x
``--mem``. The driver's own peak is printed for information.

``--app sort`` and ``--app group`` run ``apps/rows_gopark.py`` instead (for
context, no target of the issue): a sortBy and a groupByKey of 2M rows whose
values are tuples of strings, made in the job, ``--mem`` 64 by default; the
app checks its own result, the peaks are judged alike.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _common import APPS, Row, Run, compare_dicts, load_out, print_table, run_app
from _corpus import ensure_corpus


def expected_counts(corpus: Path) -> dict[str, int]:
    """Counter's counts of the corpus, cached beside it after the first run."""
    cache = corpus.with_suffix(".counts.marshal")
    if not cache.exists():
        print("computing the expected counts with apps/wc_counter.py (once per corpus)", flush=True)
        tmp = cache.with_suffix(".tmp")
        run = run_app([str(APPS / "wc_counter.py"), str(corpus)], env={"BENCH_OUT": str(tmp)})
        if not run.ok:
            raise SystemExit(f"the Counter baseline failed\n{run.failure()}")
        tmp.replace(cache)
    return load_out(cache)


def short_cmd(cmd: str) -> str:
    """A process's command line without the interpreter's directory, cut to fit a table."""
    head, _, rest = cmd.partition(" ")
    return f"{Path(head).name} {rest}"[:70]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", choices=["wc", "sort", "group"], default="wc",
                        help="wc: the word count (the issue's target); sort, group: apps/rows_gopark.py's sortBy "
                             "and groupByKey of nested rows (for context)")
    parser.add_argument("--size-mib", type=int, default=200)
    parser.add_argument("--mem", type=int, default=None, help="MB per task; default corpus MiB / 4 (wc), 64 (rows)")
    parser.add_argument("--master", default="process:2")
    opts = parser.parse_args()
    if opts.app != "wc":
        return rows(opts.app, opts.mem or 64, opts.master)
    mem = opts.mem or opts.size_mib // 4

    corpus = ensure_corpus(opts.size_mib)
    expected = expected_counts(corpus)
    with tempfile.TemporaryDirectory(prefix="gopark-bench-") as tmp:
        out = Path(tmp) / "gopark.marshal"
        args = [str(APPS / "wc_gopark.py"), str(corpus), "-m", opts.master, "--mem", str(mem)]
        print(f"gopark: {' '.join(args)}", flush=True)
        run = run_app(args, env={"BENCH_OUT": str(out)})
        check = compare_dicts(expected, load_out(out)) if run.ok else "no result"
    return report(run, check, mem, opts.master, f"word count of a {opts.size_mib} MiB corpus")


def rows(op: str, mem: int, master: str) -> int:
    """apps/rows_gopark.py OP: its rows checked by the app itself."""
    args = [str(APPS / "rows_gopark.py"), op, "-m", master, "--mem", str(mem)]
    print(f"gopark: {' '.join(args)}", flush=True)
    run = run_app(args)
    check = ("OK" if run.result.get("ok") else "MISMATCH") if run.ok else "no result"
    what = {"sort": "sortBy", "group": "groupByKey"}[op]
    return report(run, check, mem, master, f"{what} of 2M rows of nested strings (apps/rows_gopark.py {op})")


def report(run: Run, check: str, mem: int, master: str, title: str) -> int:
    """The run's peaks against ``mem``: 0 when it completed, right, with every worker within 1.5x."""
    if run.stray_pids:
        print(f"WARNING: processes left running after the app exited, ended by the bench: {run.stray_pids}")
    if not run.ok:
        print(f"\ngopark FAILED\n{run.failure()}\n")
        return 1

    memory = run.result.get("memory", {})
    limit = 1.5 * mem
    print(f"\ngopark {master} --mem {mem}: completed in {run.seconds:.2f} s (whole command); result {check}")
    lines = []
    for p in memory.get("procs", []):
        rss = p["hwm_mib"]
        kind = "child" if p["depth"] == 1 else f"descendant (depth {p['depth']})"
        lines.append(Row(f"  {kind} pid {p['pid']} peak RSS MiB", rss, rss / mem, f"--mem {mem}",
                        "<= 1.5x", rss <= limit, short_cmd(p["cmd"])))
    lines.append(Row("  driver peak RSS MiB (info)", memory.get("driver_hwm_mib"), note="not judged"))
    print_table(f"{title} with --mem {mem} (MB per task)", lines,
                "ratio = peak RSS (VmHWM) / --mem", unit="MiB")
    if not memory.get("procs"):
        print("no child process of the driver was found: is the master really a process pool?")
    met = all(p["hwm_mib"] <= limit for p in memory.get("procs", []))
    print(f"completed: yes; result: {check}; every worker within 1.5x --mem: {'yes' if met else 'NO'}")
    return 0 if check == "OK" and met else 1


if __name__ == "__main__":
    sys.exit(main())
