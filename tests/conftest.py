"""Fixtures of the engine's tests: one suite over every master, and nothing left behind.

- ``ctx``: a Context for each master of ``MASTERS`` (one per test module and
  master, quiet); a test that takes it runs once per master.
- ``contexts``: the same Contexts by master, for tests that compare modes.
- ``written_chunks``: each shuffle chunk written in this process (local
  mode): the name of its file, and whether it holds keys alone.
- SIGINT is not ignored (a runner started in the background ignores it):
  the apps the tests start take Ctrl-C.
- At the end of the session no child process of pytest (a worker) and no
  ``gopark-<our pid>-*`` work folder may be left.
"""
from __future__ import annotations

import glob
import os
import signal
import tempfile

import pytest
from apps.procs import children, describe

from gopark import Context

MASTERS = ["local", "process:2"]

# A runner started in the background by a non-interactive shell (``ci &``) has SIGINT ignored, and an ignored
# signal stays ignored across exec: the apps the tests start, which must take Ctrl-C (KeyboardInterrupt) as
# a person's terminal sends it, would not see it. Python's own handler here makes theirs the default again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def our_work_dirs() -> list[str]:
    """The work folders that Contexts of this process made and did not remove."""
    return glob.glob(os.path.join(tempfile.gettempdir(), f"gopark-{os.getpid()}-*"))


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind():
    """After the whole session: no worker subprocess, no work folder of ours."""
    yield
    left = children(zombies=True)
    dirs = our_work_dirs()
    assert not left, f"child processes left at the end of the session: {describe(left)}"
    assert not dirs, f"work folders left at the end of the session: {dirs}"


@pytest.fixture
def written_chunks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """(the name of its file, whether it holds keys alone) of each shuffle chunk written in this process from
    now on (local mode runs tasks here)."""
    from gopark import shuffle
    chunks: list[tuple[str, bool]] = []
    real = shuffle._write_payload

    def counting(f, payload, flags, compress):  # noqa: ANN001
        chunks.append((f.name, bool(flags & shuffle._KEYS)))
        return real(f, payload, flags, compress)

    monkeypatch.setattr(shuffle, "_write_payload", counting)
    return chunks


@pytest.fixture(scope="module")
def contexts():
    """``contexts(master)``: this module's Context for ``master``, made on first use."""
    made: dict[str, Context] = {}

    def get(master: str) -> Context:
        if master not in made:
            made[master] = Context(master, quiet=True)
        return made[master]

    yield get
    for ctx in made.values():
        ctx.stop()


@pytest.fixture(scope="module", params=MASTERS)
def ctx(request, contexts):
    """A Context for each master of ``MASTERS``."""
    return contexts(request.param)
