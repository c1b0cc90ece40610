"""What a person sees while a job runs: one line per stage on stderr.

Nothing is shown for a job that ends within a second. After that, each stage
gets one line (``[gopark] stage 3 reduceByKey at wc.py:12: 5/8 tasks 2.1s``),
rewritten in place on a terminal as tasks finish, ended when the stage ends.
``-q`` turns it off.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Progress lines for the stages of the running job."""

    def __init__(self, enabled: bool, stream: TextIO | None = None, delay: float = 1.0) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.delay = delay
        self._job_start = 0.0
        self._stages: dict[int, list] = {}   # stage id -> [name, done, total, start]
        self._open: int | None = None        # stage whose line is unfinished on a terminal
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_draw = 0.0

    def job_started(self) -> None:
        self._job_start = time.monotonic()
        self._stages.clear()

    def job_ended(self) -> None:
        if self._open is not None:
            self.stream.write("\n")
            self._open = None
        self._stages.clear()

    def stage_started(self, stage_id: int, name: str, total: int, done: int) -> None:
        self._stages[stage_id] = [name, done, total, time.monotonic()]

    def task_done(self, stage_id: int) -> None:
        st = self._stages.get(stage_id)
        if st is None:
            return
        st[1] += 1
        now = time.monotonic()
        if self.enabled and self._tty and now - self._job_start > self.delay and now - self._last_draw > 0.1:
            self._draw(stage_id, final=False)
            self._last_draw = now

    def stage_done(self, stage_id: int) -> None:
        if stage_id in self._stages and self.enabled and time.monotonic() - self._job_start > self.delay:
            self._draw(stage_id, final=True)
        self._stages.pop(stage_id, None)

    def _draw(self, stage_id: int, final: bool) -> None:
        name, done, total, start = self._stages[stage_id]
        line = f"[gopark] stage {stage_id} {name}: {done}/{total} tasks {time.monotonic() - start:.1f}s"
        if self._open is not None and self._open != stage_id:
            self.stream.write("\n")
        if self._tty:
            self.stream.write("\r" + line + "\x1b[K" + ("\n" if final else ""))
            self._open = None if final else stage_id
        elif final:
            self.stream.write(line + "\n")
        self.stream.flush()
