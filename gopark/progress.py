"""What a person sees while a job runs: one line per stage on stderr.

Nothing is shown for a job that ends within a second. After that, each stage
gets one line (``[gopark] stage 3 reduceByKey at wc.py:12: 5/8 tasks 2.1s``),
rewritten in place on a terminal five times a second (its count of finished tasks
and its time), ended when the stage ends.
``-q`` turns it off.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

_TICK = 0.2     # a terminal's line is redrawn this often while a job runs (its elapsed time goes on)


class Progress:
    """Progress lines for the stages of the running job.

    Called by the scheduler's thread; on a terminal, a thread of its own redraws the running stage's line
    every ``_TICK`` seconds meanwhile, so the line shows (and its time goes on) while no task ends: a long
    task, or a stage run in local mode, whose tasks run in the scheduler's thread.
    """

    def __init__(self, enabled: bool, stream: TextIO | None = None, delay: float = 1.0) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.delay = delay
        self._job_start = 0.0
        self._stages: dict[int, list] = {}   # stage id -> [name, done, total, start]
        self._open: int | None = None        # stage whose line is unfinished on a terminal
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._lock = threading.Lock()        # the stages and the stream: the scheduler's thread and the ticker's
        self._ticker: threading.Thread | None = None
        self._job_over = threading.Event()

    def job_started(self) -> None:
        with self._lock:
            self._job_start = time.monotonic()
            self._stages.clear()
        if self.enabled and self._tty:
            self._job_over.clear()
            self._ticker = threading.Thread(target=self._tick, name="gopark-progress", daemon=True)
            self._ticker.start()

    def job_ended(self) -> None:
        if self._ticker is not None:
            self._job_over.set()
            self._ticker.join()
            self._ticker = None
        with self._lock:
            if self._open is not None:
                self.stream.write("\n")
                self.stream.flush()
                self._open = None
            self._stages.clear()

    def stage_started(self, stage_id: int, name: str, total: int, done: int) -> None:
        with self._lock:
            self._stages[stage_id] = [name, done, total, time.monotonic()]

    def task_done(self, stage_id: int) -> None:
        with self._lock:
            st = self._stages.get(stage_id)
            if st is not None:
                st[1] += 1

    def stage_done(self, stage_id: int) -> None:
        with self._lock:
            if stage_id in self._stages and self.enabled and time.monotonic() - self._job_start > self.delay:
                self._draw(stage_id, final=True)
            self._stages.pop(stage_id, None)

    def _tick(self) -> None:
        """The ticker: redraw the line of the stage on show (else of the last started) until the job ends."""
        while not self._job_over.wait(_TICK):
            with self._lock:
                if not self._stages or time.monotonic() - self._job_start <= self.delay:
                    continue
                self._draw(self._open if self._open in self._stages else max(self._stages), final=False)

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
