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

import contextlib
import errno
import fcntl
import gc
import io
import itertools
import logging
import os
import sys
import tempfile
import threading
import traceback
import weakref
from collections.abc import Iterator
from typing import Any

from gopark import actions, ops, pipeline, registry, serialize, shared
from gopark.errors import FetchFailed, SerializationError, Terminated
from gopark.partitioner import KeyedPartitioner
from gopark.partitioner import from_wire as partitioner_from_wire
from gopark.rdd import RDD, lineage_from_wire
from gopark.shuffle import Merger, held_size, read_shuffle, shuffle_chunks, write_map_output
from gopark.trash import Trash

log = logging.getLogger("gopark.task")


class WorkerEnv:
    """What a process that runs tasks keeps between them: folders, cached partitions, budget.

    ``cache_on_disk``: also write cached partitions to the shared work folder so
    any worker of the host can read them (process mode); without it (local
    mode), only those that memory cannot hold are written there (see
    :meth:`remember`). ``files_url``: where
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
        self.cache_bytes = 0                            # ... their size
        self.generations: dict[int, int] = {}           # ... the generation of each RDD's (see keep_cached)
        self.on_disk: set[tuple[int, int]] = set()      # without cache_on_disk: those moved to disk (remember)
        self._live: dict[int, int] = {}                 # the running task's live cached RDDs: their generation

    @property
    def cluster_host(self) -> str | None:
        """This host's name on a cluster (an executor's worker), which a task's failure names; else None."""
        return self.host if self.files_url else None

    @property
    def spill_root(self) -> str:
        """Where this process's tasks spill (see :func:`spill_root`)."""
        return spill_root(self.work_dir, self.worker_id)

    def cache_path(self, rdd_id: int, split: int) -> str:
        return os.path.join(self.work_dir, "cache", f"{rdd_id}-{split}")

    def remember(self, key: tuple[int, int], packed: bytes) -> None:
        """Keep a cached partition's packed copy in memory. The memory copies take at most half the memory
        budget (``--mem``): the oldest go first, and are read from their disk copies when needed (written
        as they go, when this process keeps no disk copies otherwise: local mode)."""
        self.forget(key)
        self.cache[key] = packed
        self.cache_bytes += len(packed)
        self.generations[key[0]] = self._live.get(key[0], 0)
        while self.cache_bytes > self.mem_bytes // 2:
            oldest = next(iter(self.cache))
            if not self.cache_on_disk:
                self._move_to_disk(oldest)
            self.forget(oldest)

    def remember_on_disk(self, key: tuple[int, int]) -> None:
        """A cached partition too big to keep in memory was committed to its disk copy (see
        :meth:`TaskContext._compute_packed`): read from there when needed."""
        self.forget(key)
        self.generations[key[0]] = self._live.get(key[0], 0)
        if not self.cache_on_disk:
            self.on_disk.add(key)

    def _move_to_disk(self, key: tuple[int, int]) -> None:
        """Write the disk copy of a cached partition memory cannot hold. One that cannot be written (a
        full disk) is dropped, with a warning (nothing of it left on disk): computed again if it is
        needed, as Spark's MEMORY_ONLY."""
        path = self.cache_path(*key)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _write_atomically(path, bytes(_OWNER_HEADER), self.cache[key])
        except OSError as exc:
            log.warning("cached partition %d of RDD %d dropped from memory (over half of --mem) and not "
                        "written to disk (%s): it will be computed again if it is needed", key[1], key[0], exc)
            return
        self.on_disk.add(key)

    def forget(self, key: tuple[int, int]) -> None:
        """Drop this process's copy of a cached partition, if it has one."""
        packed = self.cache.pop(key, None)
        if packed is not None:
            self.cache_bytes -= len(packed)

    def keep_cached(self, live: list[list[int]] | None) -> None:
        """Drop this process's copies of cached partitions of RDDs not in ``live`` (the driver's live
        cached RDDs and their generation, which a task carries; None: keep all), or of another generation
        (the RDD was dropped, unpersisted say, then cached again)."""
        if live is None:
            return
        self._live = dict(live)
        for key in [k for k in self.cache if self._live.get(k[0]) != self.generations.get(k[0])]:
            self.forget(key)
        if self.on_disk:
            self.on_disk = {k for k in self.on_disk if self._live.get(k[0]) == self.generations.get(k[0])}
        if len(self.generations) > len(self._live):     # of RDDs dropped since: none of their copies is left
            self.generations = {i: g for i, g in self.generations.items() if i in self._live}


def spill_root(work_dir: str, worker_id: str) -> str:
    """The folder a worker's tasks spill into (merges, sorts): its own, so that what a worker killed in
    the middle of a spill left is removed when it dies (:meth:`ProcessPool`), not at the Context's stop."""
    return os.path.join(work_dir, "spill", worker_id)


def remove_cached(rdd_ids: list[int], work_dir: str, trash: Trash) -> None:
    """Throw away the files of these RDDs' cached partitions (committed, published, their locks) in
    ``work_dir``: RDDs dropped, which no task reads any more (a cached again one is a new generation)."""
    folder = os.path.join(work_dir, "cache")
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    gone = {str(i) for i in rdd_ids}
    trash.throw(os.path.join(folder, name) for name in names if name.partition("-")[0] in gone)


_OWNER_HEADER = 64     # bytes before a cached partition's data in its file: the name of the task's owner file
_CACHE_BATCH = 4096    # records packed at once into a cached partition's copy (fewer when they are big) ...
_CACHE_CHUNK = 1 << 20     # ... so that a batch packs to, and holds as objects, about this many bytes at most
_ON_DISK = 8           # a cached partition whose packed copy outgrows this fraction of --mem goes to disk as packed
_MAX_LOCKS = 64        # cached partitions a task computes at once, one inside another, under their lock


def _cached_records(packed: bytes | io.BufferedReader) -> Iterator[Any]:
    """The records of a cached partition's packed copy (batches one after another): in memory, or a file
    open past its header (closed once read), unpacked a batch at a time as they are taken; a copy cut short
    (a damaged file) fails, not taken for fewer records."""
    if isinstance(packed, bytes):
        f, empty = io.BytesIO(packed), not packed
    else:
        f, empty = packed, packed.tell() >= os.fstat(packed.fileno()).st_size
    if empty:           # (a partition with no record is an empty batch)
        f.close()
        raise ValueError("a cached partition's copy is empty: was its file damaged?")
    batches = _unpacked(f)
    weakref.finalize(batches, f.close)      # (let go unstarted, say by a zip whose other side failed)
    return itertools.chain.from_iterable(batches)


def _unpacked(f: io.BytesIO | io.BufferedReader) -> Iterator[list]:
    """The batches of ``f``, which is closed once they are read."""
    with f:
        yield from serialize.unpack_file(f, "a cached partition's copy")


def _write_chunks(out: io.FileIO, chunks: list[bytes]) -> None:
    """Write each of ``chunks`` to ``out`` (unbuffered), letting it go once written: those left in the
    list when a write fails were not written whole."""
    while chunks:
        view = memoryview(chunks[0])
        while view:
            view = view[out.write(view):]
        del chunks[0]


def _read_back(path: str, size: int) -> bytes:
    """The first ``size`` bytes of a cached partition's copy in ``path``, past its header."""
    with open(path, "rb") as f:
        f.seek(_OWNER_HEADER)
        return f.read(size)


def _open_copy(path: str) -> io.BufferedReader:
    """A cached partition's copy in the file ``path``, open past its header."""
    f = open(path, "rb")
    f.seek(_OWNER_HEADER)
    return f


class _OnDisk:
    """A cached partition a task computed that is too big to hold in memory: written whole as it was
    computed, to ``path`` (a temporary file, with a header of :data:`_OWNER_HEADER` zeros), until the task
    publishes or commits it."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


class TaskContext:
    """One running task: its env, and the partitions it cached.

    Cached partitions are kept packed and unpacked at each read, so no task can
    change them by changing its records in place. A partition cached by a task
    is kept only when the task succeeds (:meth:`commit`): a failed attempt's
    accumulator updates are dropped, so its cached data must go too, or the
    retry would read it without counting.

    With a shared disk copy (process mode, an executor's pool), a partition is
    computed once on the host even by tasks that run at once (``s.cartesian(s)``
    of a cached ``s``): a task computes it under its file lock, held only while
    computing it (the locks a task waits for while holding one are of RDDs its
    lineage computes it from: no two tasks can wait for each other), and
    publishes it at once, named as its task's own. A task that needs it reads
    that copy while the task that computed it runs, and the copy becomes the
    committed one when that task succeeds. The task holds its owner file locked
    while it runs: if it fails, it removes what it published, and if its process
    dies, the kernel drops the lock and the copy counts as gone. A task that read
    a copy whose task then fails counted none of its accumulator updates; the
    retry of that task computes the partition again and counts them once.
    """

    def __init__(self, env: WorkerEnv) -> None:
        self.env = env
        self.computed: dict[tuple[int, int], bytes | _OnDisk] = {}
        self.published: set[tuple[int, int]] = set()     # computed, and on the shared disk as this task's
        self._owner: tuple[int, str] | None = None      # this task's owner file, locked: fd and path
        self._locks_held = 0

    def cached(self, rdd: RDD, split: int) -> Iterator[Any]:
        """A cached RDD's partition: from this process's memory, its disk copy (shared by the host's workers;
        in local mode, written when memory could not hold it), or computed once now."""
        env, key = self.env, (rdd.id, split)
        packed: bytes | io.BufferedReader | None = env.cache.get(key)
        if packed is None and (copy := self.computed.get(key)) is not None:
            packed = copy if isinstance(copy, bytes) else _open_copy(copy.path)
        if packed is None and key in env.on_disk:
            packed = self._shared(key)
        lock = None
        if packed is None and env.cache_on_disk:
            packed = self._shared(key)
            # nested cached RDDs (a chain of them uncomputed) hold one lock each: a bounded number
            if packed is None and self._locks_held < _MAX_LOCKS and (lock := self._lock(key)) is not None:
                self._locks_held += 1
        try:
            if lock is not None:
                packed = self._shared(key, clean=True)      # published while this one waited
            if packed is not None:
                return _cached_records(packed)
            records, copy = self._compute_packed(rdd, split)
            self.computed[key] = copy
            if lock is not None:
                self._publish(key, copy)
            return records
        finally:
            if lock is not None:
                os.close(lock)
                self._locks_held -= 1

    def _compute_packed(self, rdd: RDD, split: int) -> tuple[Iterator[Any], bytes | _OnDisk]:
        """A cached RDD's partition computed, whole (as Spark's: ``take(1)`` of it computes all of it), and
        packed as it comes, a batch at a time: its records, and its packed copy.

        The records are the computed objects themselves while their packed copy is small (at most 1/16
        of ``--mem``) and they are too (at most 1/4, sized by a record sampled from each batch: lists of
        40 ints take ten times their packed size); past that, those of the
        batches already packed are let go and the records are read back from the packed copy as they are
        taken: the partition is held whole once, packed (twice for a moment, as its batches are joined),
        not also as a list of its objects (a partition of 1M small tuples cached by a worker given
        ``--mem 64`` took 288 MiB; now about the budget). A packed copy that outgrows ``1/_ON_DISK`` of
        ``--mem`` goes on to a file of its own as it is packed (:class:`_OnDisk`), and the records are read
        back from there: a partition bigger than memory is not held at all (200k records of 1 KB, in two
        partitions cached by two workers given ``--mem 64``, took 224 MiB each).
        """
        keep_until, keep_held = self.env.mem_bytes // 16, self.env.mem_bytes // 4
        packer = serialize.Packer("cache")
        kept: list[list] | None = []
        held = 0            # bytes of the objects kept, about
        chunks: list[bytes] = []
        size, step = 0, 64      # records a batch: doubled up to _CACHE_BATCH while the batches stay small
        out: io.FileIO | None = None        # the file of a copy memory cannot hold (and its path)
        path = ""
        to_disk = True
        records = iter(rdd.compute(split, self))
        try:
            while True:
                batch = list(itertools.islice(records, step))
                if not batch and (chunks or out is not None):
                    break
                try:
                    chunk = packer.pack(batch)
                except SerializationError as exc:      # blamed on what made the records, not on what reads them
                    made_by = _made_by(rdd)
                    if made_by is not None:
                        exc.gopark_func = made_by          # type: ignore[attr-defined]
                    else:
                        exc.gopark_action = "cache"        # type: ignore[attr-defined]
                    raise
                chunks.append(chunk)
                size += len(chunk)
                batch_held = len(batch) * (held_size(batch[-1]) + 8) if batch else 0    # its objects, about
                if kept is not None:
                    held += batch_held
                    if size <= keep_until and held <= keep_held:
                        kept.append(batch)
                    else:
                        kept = None
                if to_disk and out is None and size > self.env.mem_bytes // _ON_DISK:
                    try:
                        out, path = self._copy_file(rdd.id, split)
                    except OSError:
                        to_disk = False
                if out is not None:
                    try:
                        _write_chunks(out, chunks)
                    except OSError:     # a full disk, say: held in memory after all, as before the file
                        chunks.insert(0, _read_back(path, size - sum(map(len, chunks))))
                        out.close()
                        _unlink(path)
                        out, to_disk = None, False
                bigger = max(len(chunk), batch_held)
                if bigger > _CACHE_CHUNK:     # big records: fewer of them a batch
                    step = max(1, step * _CACHE_CHUNK // bigger)
                elif step < _CACHE_BATCH and len(batch) == step and 2 * bigger <= _CACHE_CHUNK:
                    step = min(_CACHE_BATCH, 2 * step)
                del batch, chunk
            if out is not None:
                out.close()
        except BaseException:
            if out is not None:
                out.close()
                _unlink(path)
            raise
        if out is not None:
            return _cached_records(_open_copy(path)), _OnDisk(path)
        packed = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        del chunks
        return (itertools.chain.from_iterable(kept) if kept is not None else _cached_records(packed)), packed

    def _copy_file(self, rdd_id: int, split: int) -> tuple[io.FileIO, str]:
        """A new file for a cached partition's copy that memory cannot hold, its header zeros (see
        :class:`_OnDisk`), in this process's spill folder (removed with the process if it dies: a worker
        killed mid-task leaves no part of it), on the work folder's file system, from which it is moved
        into the cache folder to publish or commit it."""
        os.makedirs(self.env.spill_root, exist_ok=True)
        os.makedirs(os.path.dirname(self.env.cache_path(rdd_id, split)), exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=f"cache-{rdd_id}-{split}.", suffix=".tmp", dir=self.env.spill_root)
        out = io.FileIO(fd, "wb")
        try:
            _write_chunks(out, [bytes(_OWNER_HEADER)])
        except BaseException:
            out.close()
            _unlink(path)
            raise
        return out, path

    def _shared(self, key: tuple[int, int], clean: bool = False) -> io.BufferedReader | None:
        """The disk copy of a cached partition, open past its header (its records are read from it as they
        are taken): committed, or published by a task that still runs (``clean``, under the partition's
        lock: remove a copy whose task is gone). Either stays whole while open: a copy is only ever
        replaced or removed, never written in place."""
        path = self.env.cache_path(*key)
        for name in (path, path + ".t", path):     # committed; published; committed meanwhile
            try:
                f = open(name, "rb")
            except FileNotFoundError:
                continue
            try:
                header = f.read(_OWNER_HEADER)
                if name == path or _owner_runs(os.path.dirname(path), header):
                    return f
            except BaseException:
                f.close()
                raise
            f.close()
            if clean:           # its task is gone: so are the copy and the owner file (if a process died)
                _unlink(name)
                if owner := _owner_name(header):
                    _unlink(os.path.join(os.path.dirname(path), owner))
        return None

    def _lock(self, key: tuple[int, int]) -> int | None:
        """Take (waiting for it) the lock of a cached partition: its fd; None if locks cannot be had here."""
        path = self.env.cache_path(*key) + ".lock"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:       # e.g. out of file descriptors: compute it without a lock
            return None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
        except BaseException as exc:    # locks unsupported here; or the wait was ended (SIGTERM)
            os.close(fd)
            if isinstance(exc, OSError):
                return None           # compute it without one
            raise
        return fd

    def _publish(self, key: tuple[int, int], copy: bytes | _OnDisk) -> None:
        """Put a partition this task computed on the shared disk, as its own until it commits."""
        if self._owner is None:
            folder = os.path.dirname(self.env.cache_path(*key))
            fd, owner = tempfile.mkstemp(prefix="owner-", dir=folder)
            fcntl.lockf(fd, fcntl.LOCK_EX)       # until this task ends (or its process does)
            self._owner = fd, owner
        path = self.env.cache_path(*key) + ".t"
        header = os.path.basename(self._owner[1]).encode().ljust(_OWNER_HEADER)
        if isinstance(copy, bytes):
            _write_atomically(path, header, copy)
        else:           # already on disk, whole: named this task's, then moved where readers look
            fd = os.open(copy.path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.pwrite(fd, header, 0)
            finally:
                os.close(fd)
            os.replace(copy.path, path)
            copy.path = path
        self.published.add(key)

    def release(self) -> None:
        """The task ended: what it published and did not commit goes, its copies that memory could not
        hold, and its owner file."""
        for key in self.published:
            _unlink(self.env.cache_path(*key) + ".t")
        self.published.clear()
        for copy in self.computed.values():
            if isinstance(copy, _OnDisk) and copy.path.endswith(".tmp"):   # (neither published nor committed)
                _unlink(copy.path)
        if self._owner is not None:
            fd, owner = self._owner
            _unlink(owner)
            os.close(fd)
            self._owner = None

    def commit(self) -> None:
        """The task succeeded: keep what it cached."""
        env = self.env
        for key, copy in self.computed.items():
            path = env.cache_path(*key)
            if isinstance(copy, _OnDisk):       # memory could not hold it: its disk copy is the one kept
                os.replace(copy.path, path)
                copy.path = path
                self.published.discard(key)
                env.remember_on_disk(key)
                continue
            if env.cache_on_disk:
                if key in self.published:
                    os.replace(path + ".t", path)
                    self.published.discard(key)
                else:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    _write_atomically(path, bytes(_OWNER_HEADER), copy)
            env.remember(key, copy)

    def read_shuffle(self, shuffle_id: int, locations: list[dict], reduce_id: int) -> Iterator[tuple[Any, Any]]:
        """This reducer's pairs of a shuffle: from local disk, or fetched from other executors."""
        return read_shuffle(shuffle_id, locations, reduce_id, self.env.files_url)

    def shuffle_chunks(self, shuffle_id: int, locations: list[dict], reduce_id: int) -> Iterator[Any]:
        """This reducer's chunks of a shuffle (see :func:`gopark.shuffle.shuffle_chunks`)."""
        return shuffle_chunks(shuffle_id, locations, reduce_id, self.env.files_url)

    def merger(self, agg: list | None, merge_combiners: Any = None) -> Merger:
        """A reduce-side merger for an aggregator ``[create, merge_value, merge_combiners]``."""
        spill = self.env.spill_root
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
        where = registry.source_lines(name)     # the app's lines, which the loop's frame above does not show
        exc.add_note(f"(raised in {name}" + (f", {where}" if where else "")
                     + ", which gopark ran inline: it has no frame of its own above)")
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
        path, sent = write_map_output(it, os.path.join(tc.env.work_dir, "shuffle"), dep["sid"], split,
                                      task["attempt"], part, create, merge, tc.env.mem_bytes, tc.env.compress, ops,
                                      probe=dep.get("probe", True))
        location = {"host": tc.env.host, "path": path, "sent": sent}
        if tc.env.files_url:
            location["url"] = f"{tc.env.files_url}/{os.path.relpath(path, tc.env.work_dir)}"
        return location, False
    # reduce, fold, aggregate: the per-record operations run in one loop with the action's fold
    fused = task["action"][0] in actions.FUSED
    it, ops = root.per_record_tail(split, tc) if fused else (root.iterator(split, tc), [])
    value = actions.run(task["action"], it, split, task["attempt"], ops)
    return value, isinstance(value, actions.Stream)


def _write_atomically(path: str, header: bytes, data: bytes) -> None:
    """``path`` holds ``header`` and ``data``, whole, or is not made (a failed write leaves no part of it)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _owner_name(header: bytes) -> str:
    """The owner file's name in a cached partition's header ('' for none: a committed copy's zeros)."""
    name = header.rstrip(b" \0").decode(errors="replace")
    return name if name.startswith("owner-") and os.sep not in name else ""


def _owner_runs(folder: str, header: bytes) -> bool:
    """The task that published a cached partition with ``header`` (its owner file's name, in ``folder``)
    still runs: it holds the file's lock."""
    name = _owner_name(header)
    if not name:
        return False
    try:
        fd = os.open(os.path.join(folder, name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False          # it ended (and removed it)
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False          # nobody holds it: its process is gone
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)


DRIVER = "driver"      # the worker id of local mode's tasks, which run in the driver


def _made_by(rdd: RDD) -> str | None:
    """The registered name of the function that made an RDD's records (``map(f)``...: its last per-record
    operation that makes them; a filter's come from its parent), if one did."""
    while getattr(rdd, "op", None) == "filter":
        rdd = rdd.parent                   # type: ignore[attr-defined]
    ref = getattr(rdd, "f_ref", None)
    while ref and ref[0] == "p":       # a partial of it
        ref = ref[1]
    return ref[1] if ref and ref[0] == "r" else None


def _failure(exc: BaseException, host: str | None = None) -> bytes:
    """A task's failure as its packed result: the exception's type, message and traceback, the registered
    function that raised it, the host it ran on (given on a cluster); every text made printable (a message
    may hold undecodable bytes of a file name, ``str()`` of an app's exception may itself fail)."""
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
        "input": _printable(source) if source else source, "action": action, "fetch": fetch,
        **({"host": host} if host else {})})


def _printable(text: str) -> str:
    """``text`` with what UTF-8 cannot carry (lone surrogates: undecodable bytes of a file name) escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


_FULL_COLLECTION_AFTER = 1 << 30     # a task's threshold of the oldest generation: never, in practice
_collections_lock = threading.Lock()
_tasks_running = 0                       # (local mode may run tasks of several Contexts' jobs at once)
_saved_threshold: tuple[int, ...] = ()   # the process's own thresholds, while tasks run


@contextlib.contextmanager
def _no_full_collections() -> Iterator[None]:
    """While tasks run, no collection of the oldest generation: each one walks every object the process
    holds (in local mode, the app's own, millions maybe; in a worker, the records the task has merged so
    far, again at every 25% they grow). Young collections go on, so cycles a task makes and drops are freed
    as before; the old generation's are, after the task, at the next collection that reaches it."""
    global _tasks_running, _saved_threshold
    with _collections_lock:
        if _tasks_running == 0:
            _saved_threshold = gc.get_threshold()
            gc.set_threshold(*_saved_threshold[:2], _FULL_COLLECTION_AFTER)
        _tasks_running += 1
    try:
        yield
    finally:
        with _collections_lock:
            _tasks_running -= 1
            if _tasks_running == 0:
                gc.set_threshold(*_saved_threshold)


@registry.task_entry
def run_task(payload: bytes, env: WorkerEnv, hold: contextlib.ExitStack | None = None) -> bytes:
    """Run one packed task; the packed result (never raises for the task's own errors). With ``hold``
    (local mode, where the task runs in the driver), SIGINT and SIGTERM are held from the moment its code
    has run until ``hold`` closes, when it cached a partition and made accumulator updates: what it cached
    is kept only if the scheduler also counts its updates, which it does before closing ``hold``."""
    task = serialize.unpackb(payload)
    env.keep_cached(task.get("live_cached"))
    if "path" in task and env.worker_id != DRIVER:    # the driver's sys.path changed since this worker started
        registry.take_worker_path(task["path"])
    tc = TaskContext(env)
    with shared.task_updates() as updates, shared.task_broadcasts(task.get("broadcasts")), _no_full_collections():
        try:
            value, stream = _run(task, tc)
            if hold is not None and updates and tc.computed:    # (else a signal now leaves no cache uncounted)
                hold.enter_context(ops.signals_deferred())
            what = f"the result of {task['action'][0]}" if task["kind"] == "result" else "a shuffle"
            packed = value.data if stream else serialize.packb_checked(value, what)
            result = serialize.packb({"ok": True, "v": packed, "stream": stream, "acc": updates,
                                      "cached": list(map(list, tc.computed))}, "accumulator updates")
            tc.commit()
            return result
        except Terminated:                      # the driver (local mode) is being stopped: not the task's
            raise
        except KeyboardInterrupt:
            if env.worker_id == DRIVER:        # Ctrl-C in local mode, where tasks run in the driver: it stops
                raise
            return _failure(sys.exc_info()[1], env.cluster_host)  # a worker ignores SIGINT: the app raised it
        except BaseException as exc:            # the task's own failure (any kind): reported, never raised here
            return _failure(exc, env.cluster_host)
        finally:
            tc.release()
