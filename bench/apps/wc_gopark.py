"""gopark: the word count of SPEC section 2, with a report of peak memory.

    python bench/apps/wc_gopark.py CORPUS -m process:2 [--mem MB]

Prints the number of distinct words; with ``$BENCH_OUT`` set, writes the
counts there (marshal, bench only). Just before the Context stops, reads the
peak RSS (VmHWM) of every process whose parent is this driver, and of their
descendants, straight from /proc (no gopark API), and prints it together with
the driver's own.
"""
from __future__ import annotations

import json
import marshal
import os
import sys
from functools import partial
from typing import Any

from gopark import Context, register_func


@register_func
def words(line: str) -> list[str]:
    return line.split()


@register_func
def pair(word: str, n: int = 1) -> tuple[str, int]:
    return (word, n)


@register_func
def add(a: int, b: int) -> int:
    return a + b


def _parents() -> dict[int, int]:
    """{pid: ppid} of every live, non-zombie process."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z":
            parents[int(entry)] = int(fields[1])
    return parents


def _status(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/status") as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except OSError:
        return {}


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
    except OSError:
        return ""


def peak_rss_report() -> dict[str, Any]:
    """VmHWM in MiB of this process and of every descendant, with depth and command."""
    me = os.getpid()
    parents = _parents()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    procs = []
    todo = [(pid, 1) for pid in sorted(children.get(me, []))]
    while todo:
        pid, depth = todo.pop(0)
        hwm = _status(pid).get("VmHWM", "")
        if hwm:
            procs.append({"pid": pid, "ppid": parents[pid], "depth": depth,
                          "hwm_mib": int(hwm.split()[0]) / 1024, "cmd": _cmdline(pid)})
        todo += [(child, depth + 1) for child in sorted(children.get(pid, []))]
    driver = int(_status(me).get("VmHWM", "0 kB").split()[0]) / 1024
    return {"driver_hwm_mib": driver, "procs": procs}


def main() -> None:
    with Context() as ctx:                     # parses -m, --mem etc. from sys.argv
        counts = (ctx.textFile(sys.argv[1])
                     .flatMap(words)
                     .map(partial(pair, n=1))
                     .reduceByKey(add)
                     .collectAsMap())
        report = peak_rss_report()
    print(f"driver pid {os.getpid()}: VmHWM {report['driver_hwm_mib']:.1f} MiB", file=sys.stderr)
    for p in report["procs"]:
        print(f"  {'  ' * (p['depth'] - 1)}pid {p['pid']} (parent {p['ppid']}): VmHWM {p['hwm_mib']:.1f} MiB"
              f"  {p['cmd']}", file=sys.stderr)
    out = os.environ.get("BENCH_OUT")
    if out:
        with open(out, "wb") as f:
            marshal.dump(counts, f)
    print("BENCH_RESULT " + json.dumps({"distinct": len(counts), "total": sum(counts.values()),
                                        "memory": report}))


if __name__ == "__main__":
    main()
