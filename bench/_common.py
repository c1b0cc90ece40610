"""Shared helpers of the bench drivers: running whole commands, data, tables.

Every figure a driver prints is the wall time of a whole command
(``python bench/apps/X.py ...``, interpreter start-up included), taken with
``time.perf_counter`` around the subprocess. Apps report what they computed on
one stdout line ``BENCH_RESULT {json}``; larger results (dicts to compare) go
to a file named by ``$BENCH_OUT``, written with ``marshal`` (bench only: a
local file the same run writes and reads back; nothing crosses a trust border).
"""
from __future__ import annotations

import compileall
import json
import marshal
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
APPS = BENCH / "apps"
DATA = BENCH / "data"

RESULT_PREFIX = "BENCH_RESULT "


@dataclass
class Run:
    """One whole-command run: its wall time and what it printed."""

    argv: list[str]
    seconds: float
    returncode: int
    stdout: str
    stderr: str
    result: dict[str, Any] = field(default_factory=dict)
    stray_pids: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def failure(self) -> str:
        """The command and the tail of its stderr, for a report."""
        tail = "\n".join(self.stderr.strip().splitlines()[-25:])
        return f"command: {' '.join(self.argv)}\nexit code: {self.returncode}\nstderr (tail):\n{tail}"


def app_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of an app: the repo on PYTHONPATH so ``import gopark`` works."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def _group_members(pgid: int) -> list[int]:
    """Pids of live processes whose process group is ``pgid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


def _end_group(pgid: int) -> list[int]:
    """End what is left of a process group this bench started; return the stray pids.

    Each app runs in a new session whose group id is the app's own pid, so
    whatever it leaves behind (workers that outlive their driver) is found and
    ended by that id, never by name.
    """
    strays = _group_members(pgid)
    if not strays:
        return []
    try:
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while _group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _group_members(pgid):
            os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return strays


def run_app(args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 1800) -> Run:
    """Run ``python ARGS`` from the repo root and time the whole command."""
    argv = [sys.executable, *args]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=REPO, env=app_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        err += f"\n[bench] killed after a timeout of {timeout:.0f} s"
    seconds = time.perf_counter() - start
    run = Run(argv=argv, seconds=seconds, returncode=proc.returncode, stdout=out, stderr=err)
    run.stray_pids = _end_group(proc.pid)
    for line in out.splitlines():
        if line.startswith(RESULT_PREFIX):
            run.result = json.loads(line[len(RESULT_PREFIX):])
    return run


@dataclass
class Command:
    """A command to time: the app's arguments and the file it writes its result to."""

    name: str
    args: list[str]
    out: Path


@dataclass
class Timing:
    """The runs of one command: the fastest successful one (or the failed one) and every time."""

    best: Run
    times: list[float]

    @property
    def ok(self) -> bool:
        return self.best.ok

    @property
    def seconds(self) -> float | None:
        return self.best.seconds if self.best.ok else None

    def runs_note(self) -> str:
        return "runs " + "/".join(f"{t:.2f}" for t in self.times)


def compile_sources() -> None:
    """Byte-compile gopark, the launcher and the apps, as ``pip install`` does for a package it installs.

    An editable checkout run with ``PYTHONDONTWRITEBYTECODE`` set (as on the
    machine these figures come from) never gets its ``.pyc`` files written,
    so every process of every run would compile the modules changed since
    they last were: about 0.1 s in the driver and again in each worker.
    """
    for folder in (REPO / "gopark", REPO / "launcher", APPS):
        if not compileall.compile_dir(str(folder), quiet=1):
            raise SystemExit(f"bench: cannot byte-compile {folder}")


def time_commands(commands: Sequence[Command], repeat: int) -> dict[str, Timing]:
    """Run each command ``repeat`` times, interleaved (A B C A B C ...); keep each one's best.

    Interleaving spreads whatever else loads the machine over every
    contender. A command that fails is not run again. The sources are
    byte-compiled first (:func:`compile_sources`).
    """
    compile_sources()
    timings: dict[str, Timing] = {}
    for i in range(repeat):
        for cmd in commands:
            if cmd.name in timings and not timings[cmd.name].ok:
                continue
            print(f"  [{i + 1}/{repeat}] {cmd.name}: {' '.join(cmd.args)}", flush=True)
            run = run_app(cmd.args, env={"BENCH_OUT": str(cmd.out)})
            print(f"        {run.seconds:.2f} s" if run.ok else f"        FAILED (exit {run.returncode})",
                  flush=True)
            if run.stray_pids:
                print(f"        WARNING: processes left running after the app exited, ended by the bench: "
                      f"{run.stray_pids}", flush=True)
            seen = timings.get(cmd.name)
            if seen is None:
                timings[cmd.name] = Timing(run, [run.seconds] if run.ok else [])
                continue
            if run.ok:
                seen.times.append(run.seconds)
            if not run.ok or run.seconds < seen.best.seconds:
                seen.best = run
    return timings


def load_out(path: Path) -> Any:
    """Read back a result an app wrote to ``$BENCH_OUT``."""
    with open(path, "rb") as f:
        return marshal.load(f)


def compare_dicts(expected: dict[Any, Any], got: dict[Any, Any]) -> str:
    """``OK`` or ``MISMATCH`` with a short account of the differences."""
    if expected == got:
        return "OK"
    missing = expected.keys() - got.keys()
    extra = got.keys() - expected.keys()
    wrong = [k for k in expected.keys() & got.keys() if expected[k] != got[k]]
    sample = wrong[:3]
    return (f"MISMATCH ({len(expected)} vs {len(got)} keys; {len(missing)} missing, {len(extra)} extra, "
            f"{len(wrong)} with other values, e.g. {[(k, expected[k], got[k]) for k in sample]})")


@dataclass
class Row:
    """One line of a result table."""

    name: str
    value: float | None
    ratio: float | None = None
    baseline: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""


def print_table(title: str, rows: Sequence[Row], ratio_doc: str, unit: str = "seconds") -> None:
    """Print rows as a fixed-width table, under a title and a line saying what ratio means.

    ``unit`` heads the value column (seconds, ms, MiB).
    """
    print()
    print(title)
    print(ratio_doc)
    head = f"{'name':<36} {unit:>9} {'ratio':>7}  {'vs':<14} {'target':<9} {'met':<4} note"
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}x"
        met = "" if r.met is None else ("yes" if r.met else "NO")
        value = "failed" if r.value is None else f"{r.value:.2f}"
        print(f"{r.name:<36} {value:>9} {ratio:>7}  {r.baseline:<14} {r.target:<9} "
              f"{met:<4} {r.note}".rstrip())
    print()
