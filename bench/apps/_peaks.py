"""Peak memory of a driver and of every process under it, straight from /proc (no gopark API): the
bench apps' report, read just before their Context stops."""
from __future__ import annotations

import os
import sys
from typing import Any


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


def print_report(report: dict[str, Any]) -> None:
    """The report, a line a process, on stderr."""
    print(f"driver pid {os.getpid()}: VmHWM {report['driver_hwm_mib']:.1f} MiB", file=sys.stderr)
    for p in report["procs"]:
        print(f"  {'  ' * (p['depth'] - 1)}pid {p['pid']} (parent {p['ppid']}): VmHWM {p['hwm_mib']:.1f} MiB"
              f"  {p['cmd']}", file=sys.stderr)
