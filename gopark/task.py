"""Running one task, wherever it runs: in the driver (local mode), a worker process, an executor.

A task is data: ``{"tid", "stage", "split", "attempt", "lineage", "kind", ...}``
with ``kind`` "map" (write shuffle buckets for ``dep``) or "result" (apply
``action``). :func:`run_task` takes the packed task and returns the packed
result; nothing in between is pickled and no code is received.

Result: ``{"ok": True, "v": packed value, "stream": bool, "acc": {key: delta},
"cached": [[rdd, split], ...]}`` or ``{"ok": False, "type", "msg", "tb",
"func", "input": path of an unreadable input split | None, "action": the action that refused a record
(countByKey...) | None, "fetch": [shuffle, [[map, path], ...]] | None}``.
"""
from __future__ import annotations

import fcntl
import os
import sys
import traceback
from collections.abc import Iterator
from typing import Any

from gopark import actions, pipeline, registry, serialize, shared
from gopark.errors import FetchFailed, Terminated
from gopark.partitioner import KeyedPartitioner
from gopark.partitioner import from_wire as partitioner_from_wire
from gopark.rdd import RDD, lineage_from_wire
from gopark.shuffle import Merger, read_shuffle, shuffle_chunks, write_map_output


class WorkerEnv:
    """What a process that runs tasks keeps between them: folders, cached partitions, budget.

    ``cache_on_disk``: also write cached partitions to the shared work folder so
    any worker of the host can read them (process mode). ``files_url``: where
    the file server of this host's executor serves ``work_dir`` (Mesos mode):
    map outputs carry their URL under it, and outputs under it are read from disk.
    """

    def __init__(self, work_dir: str, mem_bytes: int, worker_id: str, cache_on_disk: bool,
                 compress: bool = False, files_url: str | None = None) -> None:
        self.work_dir = work_dir
        self.files_url = files_url
        self.compress = compress       # shuffle buckets
        self.mem_bytes = mem_bytes
        self.worker_id = worker_id
        self.host = os.uname().nodename       # socket.gethostname(), without importing socket
        self.cache_on_disk = cache_on_disk
        self.cache: dict[tuple[int, int], bytes] = {}   # packed partitions this process computed

    def cache_path(self, rdd_id: int, split: int) -> str:
        return os.path.join(self.work_dir, "cache", f"{rdd_id}-{split}")


_MAX_LOCKS = 64        # cached partitions a task computes under a lock (each holds a file open to the task's end)


class TaskContext:
    """One running task: its env, and the partitions it cached.

    Cached partitions are kept packed and unpacked at each read, so no task can
    change them by changing its records in place. A partition cached by a task
    is kept only when the task succeeds (:meth:`commit`): a failed attempt's
    accumulator updates are dropped, so its cached data must go too, or the
    retry would read it without counting.
    """

    def __init__(self, env: WorkerEnv) -> None:
        self.env = env
        self.computed: dict[tuple[int, int], bytes] = {}
        self.locks: dict[tuple[int, int], int] = {}      # cached partitions this task computes: their lock's fd

    def cached(self, rdd: RDD, split: int) -> Iterator[Any]:
        """A cached RDD's partition: from this worker's memory, the shared disk copy, or computed once now.

        With a shared disk copy, a task that computes a partition holds its lock
        (a file lock) until it ends: a task of another worker that needs it then
        waits, and reads what the first one cached (``c.union(c)`` runs two such
        tasks at once). A task that already holds a lock does not wait for
        another (two tasks could wait for each other): if that one is taken, it
        computes the partition too.
        """
        env, key = self.env, (rdd.id, split)
        packed = env.cache.get(key) or self.computed.get(key)
        if packed is None and env.cache_on_disk:
            packed = self._shared(key)
            if packed is None and self._lock(key):
                packed = self._shared(key)       # cached by the task whose end this one waited for
                if packed is not None:
                    os.close(self.locks.pop(key))
        if packed is not None:
            return iter(serialize.unpackb(packed))
        data = list(rdd.compute(split, self))
        self.computed[key] = serialize.packb(data, "cache")
        return iter(data)

    def _shared(self, key: tuple[int, int]) -> bytes | None:
        """The disk copy of a cached partition, if a task of any worker here committed it."""
        try:
            with open(self.env.cache_path(*key), "rb") as f:
                return f.read()       # another worker's: read again next time, not kept here
        except FileNotFoundError:
            return None

    def _lock(self, key: tuple[int, int]) -> bool:
        """Take the lock of a cached partition (waiting for it only while holding none); False if not taken:
        taken by another task, or this task holds ``_MAX_LOCKS`` already (a file each)."""
        if len(self.locks) >= _MAX_LOCKS:
            return False
        path = self.env.cache_path(*key) + ".lock"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:       # e.g. out of file descriptors: compute it without a lock
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if self.locks else 0))
        except BaseException as exc:    # taken (LOCK_NB), locks unsupported here; or the wait was ended
            os.close(fd)
            if isinstance(exc, OSError):
                return False          # compute it without one
            raise
        self.locks[key] = fd
        return True

    def release(self) -> None:
        """The task ended: let tasks waiting for its partitions read them (committed) or compute them."""
        for fd in self.locks.values():
            os.close(fd)
        self.locks.clear()

    def commit(self) -> None:
        """The task succeeded: keep what it cached."""
        env = self.env
        for (rdd_id, split), packed in self.computed.items():
            if env.cache_on_disk:
                path = env.cache_path(rdd_id, split)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                tmp = f"{path}.{os.getpid()}.tmp"
                with open(tmp, "wb") as f:
                    f.write(packed)
                os.replace(tmp, path)
            env.cache[(rdd_id, split)] = packed

    def read_shuffle(self, shuffle_id: int, locations: list[dict], reduce_id: int) -> Iterator[tuple[Any, Any]]:
        """This reducer's pairs of a shuffle: from local disk, or fetched from other executors."""
        return read_shuffle(shuffle_id, locations, reduce_id, self.env.files_url)

    def shuffle_chunks(self, shuffle_id: int, locations: list[dict], reduce_id: int) -> Iterator[Any]:
        """This reducer's chunks of a shuffle (see :func:`gopark.shuffle.shuffle_chunks`)."""
        return shuffle_chunks(shuffle_id, locations, reduce_id, self.env.files_url)

    def merger(self, agg: list | None, merge_combiners: Any = None) -> Merger:
        """A reduce-side merger for an aggregator ``[create, merge_value, merge_combiners]``."""
        spill = os.path.join(self.env.work_dir, "spill")
        if agg is None:
            return Merger(None, None, merge_combiners, self.env.mem_bytes, spill)  # type: ignore[arg-type]
        create, merge_value, combine = (registry.decode_func(r) if r else None for r in agg)
        return Merger(create, merge_value, combine, self.env.mem_bytes, spill)  # type: ignore[arg-type]


def _failing_func(exc: BaseException) -> str | None:
    """The registered function deepest in the traceback of ``exc`` (or of what caused it).

    A function run inline by a generated loop (:mod:`gopark.inline`) has no
    frame of its own: found by the loop's line, and said in a note of ``exc``.
    """
    name, inlined = None, False
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        found = registry.registered_name(code)
        if found is None and (found := pipeline.inlined_name(code, tb.tb_lineno)) is not None:
            name, inlined = found, True
        elif found is not None:
            name, inlined = found, False
        tb = tb.tb_next
    if name is None and exc.__cause__ is not None:      # e.g. StopIterationInTask: the function raised the cause
        return _failing_func(exc.__cause__)
    if inlined:
        exc.add_note(f"(raised in {name}, which gopark ran inline: it has no frame of its own above)")
    return name


def _run(task: dict, tc: TaskContext) -> tuple[Any, bool]:
    root = lineage_from_wire(task["lineage"])
    split = task["split"]
    if task["kind"] == "map":
        dep = task["dep"]
        part = partitioner_from_wire(dep["part"])
        if dep.get("key"):
            part = KeyedPartitioner(part, registry.decode_func(dep["key"]))
        create = registry.decode_func(dep["create"]) if dep["create"] else None
        merge = registry.decode_func(dep["merge"]) if dep["merge"] else None
        # the per-record operations run in one loop with the writing of the buckets
        it, ops = root.per_record_tail(split, tc)
        path = write_map_output(it, os.path.join(tc.env.work_dir, "shuffle"), dep["sid"], split,
                                task["attempt"], part, create, merge, tc.env.mem_bytes, tc.env.compress, ops,
                                probe=dep.get("probe", True))
        location = {"host": tc.env.host, "path": path}
        if tc.env.files_url:
            location["url"] = f"{tc.env.files_url}/{os.path.relpath(path, tc.env.work_dir)}"
        return location, False
    # reduce, fold, aggregate: the per-record operations run in one loop with the action's fold
    fused = task["action"][0] in actions.FUSED
    it, ops = root.per_record_tail(split, tc) if fused else (root.iterator(split, tc), [])
    value = actions.run(task["action"], it, split, task["attempt"], ops)
    return value, isinstance(value, actions.Stream)


DRIVER = "driver"      # the worker id of local mode's tasks, which run in the driver


def _failure(exc: BaseException) -> bytes:
    """A task's failure as its packed result: the exception's type, message and traceback, the registered
    function that raised it; every text made printable (a message may hold undecodable bytes of a file name,
    ``str()`` of an app's exception may itself fail)."""
    fetch = [exc.shuffle_id, [list(m) for m in exc.missing]] if isinstance(exc, FetchFailed) else None
    source = getattr(exc, "gopark_input", None)       # the input split could not be read
    action = getattr(exc, "gopark_action", None)      # the action refused a record: its own error
    func = getattr(exc, "gopark_func", None) or (None if source or action else _failing_func(exc))
    try:
        msg = str(exc)
    except BaseException as str_failed:  # noqa: BLE001  # the app's __str__: the failure is still reported
        msg = f"<str() of the exception failed: {type(str_failed).__name__}: {str_failed!r:.200}>"
    return serialize.packb({
        "ok": False, "type": type(exc).__name__,
        "msg": _printable(f"{msg} (reading {source})" if source else msg),
        "tb": _printable("".join(traceback.format_exception(exc))), "func": func,
        "input": _printable(source) if source else source, "action": action, "fetch": fetch})


def _printable(text: str) -> str:
    """``text`` with what UTF-8 cannot carry (lone surrogates: undecodable bytes of a file name) escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def run_task(payload: bytes, env: WorkerEnv) -> bytes:
    """Run one packed task; the packed result (never raises for the task's own errors)."""
    task = serialize.unpackb(payload)
    tc = TaskContext(env)
    with registry.running_task(), shared.task_updates() as updates, shared.task_broadcasts(task.get("broadcasts")):
        try:
            value, stream = _run(task, tc)
            what = f"the result of {task['action'][0]}" if task["kind"] == "result" else "a shuffle"
            packed = bytes(value) if stream else serialize.packb_checked(value, what)
            result = serialize.packb({"ok": True, "v": packed, "stream": stream, "acc": updates,
                                      "cached": list(map(list, tc.computed))}, "accumulator updates")
            tc.commit()
            return result
        except Terminated:                      # the driver (local mode) is being stopped: not the task's
            raise
        except KeyboardInterrupt:
            if env.worker_id == DRIVER:        # Ctrl-C in local mode, where tasks run in the driver: it stops
                raise
            return _failure(sys.exc_info()[1])  # a worker ignores SIGINT: the app's own code raised it
        except BaseException as exc:            # the task's own failure (any kind): reported, never raised here
            return _failure(exc)
        finally:
            tc.release()
