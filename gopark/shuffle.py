"""Shuffle: map tasks write per-reducer buckets to local disk; reducers read and merge them.

Map side (:func:`write_map_output`): records are combined in a dict when the
shuffle has map-side combining (``reduceByKey``, ``combineByKey``), or
appended to per-bucket buffers when it has not (``groupByKey``, joins,
``partitionByKey``, sorts). When the data held outgrows the task's memory
budget, the buffers are flushed: appended to the bucket files as one more
chunk. A map output is a folder ``<shuffle>/<map>/`` holding one file per
non-empty reducer; it is written under a temporary name and renamed whole, so
a failed or repeated attempt never leaves a partial output.

Bucket file: chunks of ``length:u32 flags:u8 payload``; the payload is a
msgpack array ``[k1, v1, k2, v2, ...]``, zlib-compressed when flags is 1.

Reduce side (:class:`Merger`): merges values per key in a dict; past the
budget it spills the dict into hash sub-partitions on disk and merges them one
at a time at the end (external merge), so a shuffle larger than memory
completes.
"""
from __future__ import annotations

import gc
import heapq
import os
import shutil
import struct
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from gopark import serialize
from gopark.errors import FetchFailed

_HEADER = struct.Struct(">IB")
_COMPRESS_MIN = 4096
_SUB_PARTITIONS = 32
_MISSING = object()


def rss_bytes() -> int:
    """This process' resident memory."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


class Budget:
    """How much data a task may hold before it spills, estimated as records are added.

    The estimate (sizes sampled from the first records of each fill) decides;
    the process' real RSS, read every few thousand records, is the safety net.
    """

    def __init__(self, mem_bytes: int) -> None:
        self.mem = mem_bytes
        self.limit = max(mem_bytes - rss_bytes(), mem_bytes // 4, 1 << 20)
        self.held = 0
        self._ticks = 0

    def over(self, added: int) -> bool:
        self.held += added
        self._ticks += 1
        if self.held > self.limit:
            return True
        if self._ticks >= 8192:
            self._ticks = 0
            return rss_bytes() > self.mem * 1.2
        return False

    def reset(self) -> None:
        self.held = 0
        gc.collect(0)


def _size(k: Any, v: Any) -> int:
    return sys.getsizeof(k) + sys.getsizeof(v) + 96


def _write_chunk(f: Any, flat: list, packer: serialize.Packer) -> None:
    payload = packer.pack(flat)
    flags = 0
    if len(payload) >= _COMPRESS_MIN:
        payload, flags = zlib.compress(payload, 1), 1
    f.write(_HEADER.pack(len(payload), flags))
    f.write(payload)


def read_chunks(path: str) -> Iterator[list]:
    """The flat ``[k, v, ...]`` arrays of a bucket file, one chunk at a time."""
    with open(path, "rb") as f:
        while True:
            head = f.read(_HEADER.size)
            if not head:
                return
            if len(head) < _HEADER.size:
                raise OSError(f"truncated shuffle bucket {path}")
            n, flags = _HEADER.unpack(head)
            payload = f.read(n)
            if len(payload) < n:
                raise OSError(f"truncated shuffle bucket {path}")
            yield serialize.unpackb(zlib.decompress(payload) if flags else payload)


class _Buckets:
    """Per-reducer flat buffers, appended to the bucket files of one map output."""

    def __init__(self, folder: str, n: int) -> None:
        self.folder = folder
        self.bufs: list[list] = [[] for _ in range(n)]
        self.files: dict[int, Any] = {}
        self.packer = serialize.Packer("a shuffle record")

    def flush(self) -> None:
        for r, buf in enumerate(self.bufs):
            if buf:
                f = self.files.get(r)
                if f is None:
                    f = self.files[r] = open(os.path.join(self.folder, str(r)), "ab")
                _write_chunk(f, buf, self.packer)
                self.bufs[r] = []

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def write_map_output(records: Iterable[Any], root: str, shuffle_id: int, map_id: int, attempt: int,
                     get_partition: Callable[[Any], int], n_reducers: int,
                     create: Callable[[Any], Any] | None, merge_value: Callable[[Any, Any], Any] | None,
                     mem_bytes: int) -> str:
    """Write one map task's buckets; returns the output folder. ``merge_value`` set = combine map-side."""
    base = os.path.join(root, f"shuffle-{shuffle_id}")
    os.makedirs(base, exist_ok=True)
    final = os.path.join(base, str(map_id))
    tmp = tempfile.mkdtemp(prefix=f"{map_id}.{attempt}.", dir=base)
    buckets = _Buckets(tmp, n_reducers)
    budget = Budget(mem_bytes)
    try:
        if merge_value is not None:
            _combine(records, buckets, budget, get_partition, create, merge_value)
        else:
            _append(records, buckets, budget, get_partition)
        buckets.flush()
    except BaseException:
        buckets.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    buckets.close()
    try:
        os.rename(tmp, final)
    except OSError:  # an earlier attempt already wrote this output: keep it
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _record_pair(record: Any) -> tuple[Any, Any]:
    try:
        k, v = record
    except (TypeError, ValueError):
        raise TypeError(f"a shuffle needs (key, value) pairs, got {type(record).__name__}: {record!r:.80}") from None
    return k, v


def _combine(records: Iterable[Any], buckets: _Buckets, budget: Budget, get_partition: Callable[[Any], int],
             create: Callable[[Any], Any] | None, merge_value: Callable[[Any, Any], Any]) -> None:
    combined: dict[Any, Any] = {}
    sample, est = 0, 128

    def spill() -> None:
        bufs = buckets.bufs
        for k, c in combined.items():
            b = bufs[get_partition(k)]
            b.append(k)
            b.append(c)
        combined.clear()
        buckets.flush()
        budget.reset()

    for record in records:
        try:
            k, v = record
        except (TypeError, ValueError):
            k, v = _record_pair(record)
        c = combined.get(k, _MISSING)
        if c is _MISSING:
            combined[k] = v if create is None else create(v)
            if sample < 64:
                sample += 1
                est = (est * (sample - 1) + _size(k, v)) // sample
            if budget.over(est):
                spill()
                sample = 0
        else:
            combined[k] = merge_value(c, v)
    spill()


def _append(records: Iterable[Any], buckets: _Buckets, budget: Budget,
            get_partition: Callable[[Any], int]) -> None:
    bufs = buckets.bufs
    sample, est = 0, 128
    for record in records:
        try:
            k, v = record
        except (TypeError, ValueError):
            k, v = _record_pair(record)
        b = bufs[get_partition(k)]
        b.append(k)
        b.append(v)
        if sample < 64:
            sample += 1
            est = (est * (sample - 1) + _size(k, v) - 40) // sample
        if budget.over(est):
            buckets.flush()
            budget.reset()
            sample = 0


def read_bucket(location: dict, shuffle_id: int, map_id: int, reduce_id: int) -> Iterator[tuple[Any, Any]]:
    """The (key, value) pairs one map output holds for one reducer; FetchFailed if it is gone."""
    folder = location["path"]
    if not os.path.isdir(folder):
        raise FetchFailed(shuffle_id, map_id, reduce_id, location.get("host", "?"), "map output is gone")
    path = os.path.join(folder, str(reduce_id))
    try:
        chunks = read_chunks(path)
        for flat in chunks:
            it = iter(flat)
            yield from zip(it, it)
    except FileNotFoundError:
        if os.path.isdir(folder):
            return  # this map sent nothing to this reducer
        raise FetchFailed(shuffle_id, map_id, reduce_id, location.get("host", "?"), "map output is gone") from None
    except OSError as exc:
        raise FetchFailed(shuffle_id, map_id, reduce_id, location.get("host", "?"), str(exc)) from exc


class Merger:
    """Reduce side: merge values by key within a memory budget, spilling to disk past it.

    ``create(v)`` and ``merge_value(c, v)`` fold raw values; ``merge_combiners``
    folds combiners (from map-side combining, and when spilled parts are read
    back).
    """

    def __init__(self, create: Callable[[Any], Any] | None, merge_value: Callable[[Any, Any], Any],
                 merge_combiners: Callable[[Any, Any], Any], mem_bytes: int, spill_root: str) -> None:
        self.create = create
        self.merge_value = merge_value
        self.merge_combiners = merge_combiners
        self.budget = Budget(mem_bytes)
        self.spill_root = spill_root
        self.data: dict[Any, Any] = {}
        self.spill_dir: str | None = None
        self._files: list[Any] = []
        self._packer = serialize.Packer("a shuffle record")
        self._sample, self._est = 0, 128

    def _new_key(self, k: Any, c: Any) -> None:
        if self._sample < 64:
            self._sample += 1
            self._est = (self._est * (self._sample - 1) + _size(k, c)) // self._sample
        if self.budget.over(self._est):
            self._spill()

    def add_values(self, pairs: Iterable[tuple[Any, Any]]) -> None:
        data, create, merge = self.data, self.create, self.merge_value
        for k, v in pairs:
            c = data.get(k, _MISSING)
            if c is _MISSING:
                data[k] = c = v if create is None else create(v)
                self._new_key(k, c)
                data = self.data
            else:
                data[k] = merge(c, v)
                if self.budget.over(0):  # combiners that grow (lists) are caught by the RSS check
                    self._spill()
                    data = self.data

    def add_combiners(self, pairs: Iterable[tuple[Any, Any]]) -> None:
        data, merge = self.data, self.merge_combiners
        for k, c in pairs:
            old = data.get(k, _MISSING)
            if old is _MISSING:
                data[k] = c
                self._new_key(k, c)
                data = self.data
            else:
                data[k] = merge(old, c)

    def _spill(self) -> None:
        if self.spill_dir is None:
            os.makedirs(self.spill_root, exist_ok=True)
            self.spill_dir = tempfile.mkdtemp(prefix="spill-", dir=self.spill_root)
            self._files = [open(os.path.join(self.spill_dir, str(i)), "w+b") for i in range(_SUB_PARTITIONS)]
        bufs: list[list] = [[] for _ in range(_SUB_PARTITIONS)]
        for k, c in self.data.items():
            b = bufs[hash(k) % _SUB_PARTITIONS]
            b.append(k)
            b.append(c)
        self.data = {}
        for f, buf in zip(self._files, bufs):
            if buf:
                _write_chunk(f, buf, self._packer)
        self.budget.reset()
        self._sample = 0

    def items(self) -> Iterator[tuple[Any, Any]]:
        """Every (key, combiner); the merger is spent afterwards."""
        if self.spill_dir is None:
            yield from self.data.items()
            self.data = {}
            return
        try:
            self._spill()
            for f in self._files:
                f.flush()
                merged: dict[Any, Any] = {}
                merge = self.merge_combiners
                for flat in read_chunks(f.name):
                    it = iter(flat)
                    for k, c in zip(it, it):
                        old = merged.get(k, _MISSING)
                        merged[k] = c if old is _MISSING else merge(old, c)
                yield from merged.items()
                del merged
        finally:
            self.cleanup()

    def cleanup(self) -> None:
        for f in self._files:
            f.close()
        self._files = []
        if self.spill_dir:
            shutil.rmtree(self.spill_dir, ignore_errors=True)
            self.spill_dir = None


def external_sort(records: Iterable[Any], key: Callable[[Any], Any], reverse: bool, mem_bytes: int,
                  spill_root: str) -> Iterator[Any]:
    """``sorted(records, key, reverse)`` within a memory budget: sorted runs spilled, then merged."""
    budget = Budget(mem_bytes)
    run: list = []
    runs: list[str] = []
    folder: str | None = None
    packer = serialize.Packer("a record being sorted")
    sample, est = 0, 128
    try:
        for record in records:
            run.append(record)
            if sample < 64:
                sample += 1
                est = (est * (sample - 1) + sys.getsizeof(record) + 64) // sample
            if budget.over(est):
                if folder is None:
                    os.makedirs(spill_root, exist_ok=True)
                    folder = tempfile.mkdtemp(prefix="sort-", dir=spill_root)
                run.sort(key=key, reverse=reverse)
                path = os.path.join(folder, str(len(runs)))
                with open(path, "wb") as f:
                    for i in range(0, len(run), 4096):
                        _write_chunk(f, run[i:i + 4096], packer)
                runs.append(path)
                run = []
                budget.reset()
                sample = 0
        run.sort(key=key, reverse=reverse)
        if not runs:
            yield from run
            return
        streams = [(x for chunk in read_chunks(path) for x in chunk) for path in runs]
        yield from heapq.merge(*streams, iter(run), key=key, reverse=reverse)
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
