"""Local mode: tasks run one after another in the driver process.

They go through the same packed form as everywhere else (:func:`run_task`),
so a pipeline behaves the same in every mode: values are copied, types are
checked, accumulator updates of a retried task count once.
"""
from __future__ import annotations

from collections.abc import Callable

from gopark import shuffle
from gopark.task import WorkerEnv, remove_cached, run_task
from gopark.trash import Trash


class LocalBackend:
    """Runs each submitted task at once, in the calling thread."""

    def __init__(self, post: Callable[[tuple], None], env: WorkerEnv) -> None:
        self._post = post
        self.env = env
        self.default_parallelism = 1
        self._trash = Trash(env.work_dir)

    def submit(self, tid: int, payload: bytes, preferred: list[str]) -> None:
        self._post(("end", tid, run_task(payload, self.env), "driver"))

    def cancel(self, tids: list[int]) -> None:
        """Nothing to do: a local task has ended before the scheduler hears of it."""

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
