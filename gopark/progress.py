"""What a person sees while a job runs: one line per stage on stderr.

Nothing is shown for a job that ends within a second. After that, each stage
gets one line (``[gopark] stage 3 reduceByKey at wc.py:12: 5/8 tasks 2.1s``),
written as it ends. On a terminal, one more line shows the running stages
meanwhile, side by side as Spark's console progress bar shows them (two map
stages of a join run at once: ``[gopark] stage 1 join at app.py:9: 3/8 tasks
2.0s | stage 2 join at app.py:9: 0/8 tasks 2.0s``), rewritten in place five
times a second (their counts of finished tasks and their times), cut to the
terminal's width; a stage that ends takes its place with its final line, and the
running line goes on below. One line, redrawn with a carriage return only: what
a task prints to the same terminal meanwhile is never written over.
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

    Called by the scheduler's thread; on a terminal, a thread of its own redraws the running stages' line
    every ``_TICK`` seconds meanwhile, so it shows (and their times go on) while no task ends: a long
    task, or a stage run in local mode, whose tasks run in the scheduler's thread.
    """

    def __init__(self, enabled: bool, stream: TextIO | None = None, delay: float = 1.0) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.delay = delay
        self._job_start = 0.0
        self._stages: dict[int, list] = {}   # stage id -> [name, done, total, start]
        self._shown = False                  # the running line is on the terminal (the cursor ends it)
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
            if self._shown:          # (stages a failure left running: their line stays as it was)
                self.stream.write("\n")
                self.stream.flush()
                self._shown = False
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
        """The ticker: redraw the running stages' line until the job ends."""
        while not self._job_over.wait(_TICK):
            with self._lock:
                if self._stages and time.monotonic() - self._job_start > self.delay:
                    self._draw()

    def _line(self, stage_id: int) -> str:
        """A stage's final line."""
        return "[gopark] " + "".join(self._part(stage_id))

    def _part(self, stage_id: int, name_room: int | None = None) -> tuple[str, str, str]:
        """A stage's part of a line: ``stage N ``, its name (cut to ``name_room`` characters, ``…`` last),
        and its counts and time."""
        name, done, total, start = self._stages[stage_id]
        if name_room is not None and len(name) > name_room:
            name = name[:name_room - 1] + "…" if name_room > 1 else ""
        return f"stage {stage_id} ", name, f": {done}/{total} tasks {time.monotonic() - start:.1f}s"

    def _running_line(self, stages: list[int], width: int | None) -> str:
        """The running stages side by side, within ``width`` columns: their names cut first, evenly."""
        parts = [self._part(sid) for sid in stages]
        line = "[gopark] " + " | ".join("".join(part) for part in parts)
        if width is None or len(line) <= width:
            return line
        fixed = len("[gopark] ") + 3 * (len(parts) - 1) + sum(len(head) + len(tail) for head, _, tail in parts)
        room = max(0, (width - fixed) // len(parts))
        line = "[gopark] " + " | ".join("".join(self._part(sid, room)) for sid in stages)
        return line if len(line) <= width else line[:width - 1] + "…"

    def _draw(self, ended: int | None = None) -> None:
        """Write the final line of stage ``ended`` (if any); on a terminal, in place of the running line,
        which is drawn again below it."""
        if not self._tty:
            if ended is not None:
                self.stream.write(self._line(ended) + "\n")
                self.stream.flush()
            return
        out = []
        if ended is not None:
            out.append("\r" + self._line(ended) + "\x1b[K\n")
        running = [sid for sid in sorted(self._stages) if sid != ended]
        if running:
            out.append("\r" + self._running_line(running, _width(self.stream)) + "\x1b[K")
        self._shown = bool(running)
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
