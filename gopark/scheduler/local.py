"""Local mode: tasks run one after another in the driver process.

They go through the same packed form as everywhere else (:func:`run_task`),
so a pipeline behaves the same in every mode: values are copied, types are
checked, accumulator updates of a retried task count once.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

from gopark import shuffle
from gopark.task import WorkerEnv, remove_cached, run_task
from gopark.trash import Trash


class LocalBackend:
    """Runs each submitted task in the scheduler's thread, one at a time: ``submit`` posts it, and the
    scheduler runs it when it takes the event (``("run", ...)``), then handles its end at once. So each
    task's end is seen as it comes (the progress line, a Ctrl-C that ends the job later), not all of a
    stage's once the last has run."""

    def __init__(self, post: Callable[[tuple], None], env: WorkerEnv) -> None:
        self._post = post
        self.env = env
        self.default_parallelism = 1
        self._trash = Trash(env.work_dir)
        self._queued: set[int] = set()

    def submit(self, tid: int, payload: bytes, preferred: list[str]) -> None:
        self._queued.add(tid)
        self._post(("run", functools.partial(self._run, tid, payload)))

    def _run(self, tid: int, payload: bytes, hold: contextlib.ExitStack) -> tuple | None:
        """The task's end event; None for a task cancelled since it was submitted."""
        if tid not in self._queued:
            return None
        self._queued.discard(tid)
        return ("end", tid, run_task(payload, self.env, hold), "driver")

    def cancel(self, tids: list[int]) -> None:
        """Tasks not yet run are not run."""
        self._queued.difference_update(tids)

    def drop_shuffles(self, shuffle_ids: list[int]) -> None:
        shuffle.remove_shuffles(shuffle_ids, self.env.work_dir, self._trash)

    def drop_cached(self, rdd_ids: list[int]) -> None:
        """Their partitions go from memory, and from disk (those memory could not hold)."""
        gone = set(rdd_ids)
        for key in [k for k in self.env.cache if k[0] in gone]:
            self.env.forget(key)
        self.env.on_disk = {k for k in self.env.on_disk if k[0] not in gone}
        remove_cached(rdd_ids, self.env.work_dir, self._trash)     # (nothing to list when none was written)

    def stop(self) -> None:
        self.env.cache.clear()
        self.env.cache_bytes = 0
        self.env.on_disk.clear()       # (their files go with the Context's work folder)
        self._trash.close()
