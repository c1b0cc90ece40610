"""Frozen vs unfrozen (issue "one binary"): build times and sizes, cold start, word count speed.

    python bench/bench_frozen.py [--runs 7] [--corpus PATH]

Builds bench/apps/cold_tiny.py (onefile and onedir) and bench/apps/wc_gopark.py
(onefile) with `gopark build`, cold (empty build cache) and again (cached),
then times whole commands, each pair alternated to share the machine's noise:

- cold start to the result of a tiny job: `./cold_tiny -m process:2` vs
  `python bench/apps/cold_tiny.py -m process:2` (median of --runs); target <= 1.5x;
- the word count of the 200 MiB corpus, frozen vs unfrozen (best of 2); target >= 0.95x.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _common import compile_sources

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def build(script: str, out: str, cache: str, onedir: bool = False) -> float:
    env = dict(os.environ, GOPARK_BUILD_CACHE=cache)
    cmd = [sys.executable, "-m", "gopark.cli", "build", script, "-o", out] + (["--onedir"] if onedir else [])
    return timed(cmd, env)


def size_mib(path: str) -> float:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs) / 2**20
    return os.path.getsize(path) / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--corpus", default=os.path.join(HERE, "data", "zipf_200MiB_v1000000_a1.1_s20240601.txt"))
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="gopark-bench-frozen-")
    cache = os.path.join(work, "cache")
    tiny = os.path.join(HERE, "apps", "cold_tiny.py")
    wc = os.path.join(HERE, "apps", "wc_gopark.py")
    onefile, onedir = os.path.join(work, "cold_tiny"), os.path.join(work, "cold_tiny_dir")
    rows = [("build onefile, cold (empty cache)", build(tiny, onefile, cache)),
            ("build onefile, cached, nothing changed", build(tiny, onefile, cache)),
            ("build onedir, cold", build(tiny, onedir, cache, onedir=True)),
            ("build onedir, cached", build(tiny, onedir, cache, onedir=True))]
    for name, secs in rows:
        print(f"{name:45s} {secs:7.2f} s")
    print(f"{'size onefile':45s} {size_mib(onefile):7.1f} MiB")
    print(f"{'size onedir':45s} {size_mib(onedir):7.1f} MiB")

    compile_sources()          # the python side as installed: .pyc written (the frozen side bundles them)
    plain, frozen, frozen_dir = [], [], []
    for _ in range(args.runs):
        plain.append(timed([sys.executable, tiny, "-m", "process:2", "-q"]))
        frozen.append(timed([onefile, "-m", "process:2", "-q"]))
        frozen_dir.append(timed([os.path.join(onedir, "cold_tiny"), "-m", "process:2", "-q"]))
    py, one, dr = statistics.median(plain), statistics.median(frozen), statistics.median(frozen_dir)
    print(f"\ncold tiny job, median of {args.runs}: python {py:.3f} s, onefile {one:.3f} s, onedir {dr:.3f} s")
    print(f"  onefile / python = {one / py:.2f}x (target <= 1.5x: {'met' if one / py <= 1.5 else 'NOT met'})")
    print(f"  onedir  / python = {dr / py:.2f}x")

    if os.path.exists(args.corpus):
        wc_bin = os.path.join(work, "wc_gopark")
        build(wc, wc_bin, cache)
        base = [sys.executable, wc]
        u = min(timed(base + [args.corpus, "-m", "process:2", "-q"]) for _ in range(2))
        f = min(timed([wc_bin, args.corpus, "-m", "process:2", "-q"]) for _ in range(2))
        print(f"\nword count {os.path.basename(args.corpus)}: python {u:.2f} s, onefile {f:.2f} s, "
              f"speed frozen/unfrozen = {u / f:.2f}x (target >= 0.95x: {'met' if u / f >= 0.95 else 'NOT met'})")
    else:
        print(f"\n(no corpus at {args.corpus}: run bench/bench_wordcount.py once to make it)")
    subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    main()
