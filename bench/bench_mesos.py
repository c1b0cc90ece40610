"""Mesos mode vs process mode: the word count of the 200 MiB corpus, frozen, on this machine.

    python bench/bench_mesos.py [--corpus PATH] [--runs 2]

Builds bench/apps/wc_gopark.py (onefile), then times whole commands (best of
--runs, alternated): ``./wc_gopark CORPUS -m process:2`` and the same binary
with ``-m <master>`` against the Mesos double of tests/ with two agents of one
CPU each, so half of every reducer's buckets come over HTTP from the other
executor (compressed, Mesos mode's default), the binary is fetched by each
agent, and executors start their pools. Both runs must give the same counts.
There is no target in the issues for this; it shows what Mesos mode costs.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from tests.mesos_double import MesosCluster  # noqa: E402 (after the repo is on the path)


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - t, done.stdout.split("BENCH_RESULT ")[1].split('"memory"')[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--corpus", default=os.path.join(HERE, "data", "zipf_200MiB_v1000000_a1.1_s20240601.txt"))
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))   # so the double stops its executors
    if not os.path.exists(args.corpus):
        sys.exit(f"no corpus at {args.corpus}: run bench/bench_wordcount.py once to make it")
    work = tempfile.mkdtemp(prefix="gopark-bench-mesos-")
    wc_bin = os.path.join(work, "wc_gopark")
    subprocess.run([sys.executable, "-m", "gopark.cli", "build", os.path.join(HERE, "apps", "wc_gopark.py"),
                    "-o", wc_bin], check=True, capture_output=True)
    env = dict(os.environ)
    proc, mesos = [], []
    with MesosCluster(os.path.join(work, "mesos"), agents=[{"cpus": 1.0, "mem": 4096.0}] * 2) as cluster:
        for _ in range(args.runs):
            secs, p_out = timed([wc_bin, args.corpus, "-m", "process:2", "-q"], env)
            proc.append(secs)
            secs, m_out = timed([wc_bin, args.corpus, "-m", cluster.master, "--mem", "1024", "-q"], env)
            mesos.append(secs)
            assert p_out == m_out, (p_out, m_out)
            cluster.wait_for(lambda: not any(a.executors() for a in cluster.agents), timeout=30)
    subprocess.run(["rm", "-rf", work], check=False)
    best_p, best_m = min(proc), min(mesos)
    print(f"word count {os.path.basename(args.corpus)}, frozen, best of {args.runs}:")
    print(f"  -m process:2                      {best_p:7.2f} s")
    print(f"  -m mesos (double, 2 agents x 1 cpu) {best_m:7.2f} s")
    print(f"  mesos / process = {best_m / best_p:.2f}x the time")


if __name__ == "__main__":
    main()
