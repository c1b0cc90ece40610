"""What a person sees while a job runs: one line per stage on stderr.

Nothing is shown for a job that ends within a second. After that, each stage
gets one line (``[gopark] stage 3 reduceByKey at wc.py:12: 5/8 tasks 2.1s``).
On a terminal, the lines of the running stages (two map stages of a join run at
once) are rewritten in place five times a second (their counts of finished tasks
and their times), below the final lines of the stages that have ended, each cut
to the terminal's width; elsewhere, a stage's line is written once, as it ends.
``-q`` turns it off.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO

_TICK = 0.2     # a terminal's line is redrawn this often while a job runs (its elapsed time goes on)


class Progress:
    """Progress lines for the stages of the running job.

    Called by the scheduler's thread; on a terminal, a thread of its own redraws the running stages' lines
    every ``_TICK`` seconds meanwhile, so they show (and their times go on) while no task ends: a long
    task, or a stage run in local mode, whose tasks run in the scheduler's thread.
    """

    def __init__(self, enabled: bool, stream: TextIO | None = None, delay: float = 1.0) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.delay = delay
        self._job_start = 0.0
        self._stages: dict[int, list] = {}   # stage id -> [name, done, total, start]
        self._shown = 0                      # running stages' lines on the terminal (the cursor ends the last)
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
            if self._shown:          # (stages a failure left running: their lines stay as they were)
                self.stream.write("\n")
                self.stream.flush()
                self._shown = 0
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
                self._draw(ended=stage_id)
            self._stages.pop(stage_id, None)

    def _tick(self) -> None:
        """The ticker: redraw the running stages' lines until the job ends."""
        while not self._job_over.wait(_TICK):
            with self._lock:
                if self._stages and time.monotonic() - self._job_start > self.delay:
                    self._draw()

    def _line(self, stage_id: int, width: int | None = None) -> str:
        name, done, total, start = self._stages[stage_id]
        head, tail = f"[gopark] stage {stage_id} ", f": {done}/{total} tasks {time.monotonic() - start:.1f}s"
        if width is not None and len(head) + len(name) + len(tail) > width:     # one row: the counts stay
            name = name[:max(0, width - len(head) - len(tail) - 1)] + "…"
        return head + name + tail

    def _draw(self, ended: int | None = None) -> None:
        """Write the final line of stage ``ended`` (if any); on a terminal, in place of the running stages'
        lines, which are drawn again below it."""
        if not self._tty:
            if ended is not None:
                self.stream.write(self._line(ended) + "\n")
                self.stream.flush()
            return
        width = _width(self.stream)
        out = ["\r" + (f"\x1b[{self._shown - 1}A" if self._shown > 1 else "")]    # to the first running line
        if ended is not None:
            out.append("\r" + self._line(ended) + "\x1b[K\n")
        running = [self._line(sid, width) for sid in sorted(self._stages) if sid != ended]
        out.append("\n".join("\r" + line + "\x1b[K" for line in running))
        if len(running) + (ended is not None) < self._shown:
            out.append("\x1b[J")       # fewer lines than were shown: the rest goes
        self._shown = len(running)
        self.stream.write("".join(out))
        self.stream.flush()


def _width(stream: TextIO) -> int | None:
    """Columns a line may fill on the terminal ``stream`` (one less than it has: no wrap at the last one);
    None if it does not say (a pseudo-terminal whose size was never set reports none)."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return None
    return max(20, columns - 1) if columns > 0 else None
