"""Shuffle: map tasks write per-reducer buckets to local disk; reducers read and merge them.

Map side (:func:`write_map_output`): records are combined in a dict when the
shuffle has map-side combining (``reduceByKey``, ``combineByKey``) and it
pays (see :func:`_combine`), else appended to per-bucket buffers
(``groupByKey``, joins, ``partitionByKey``, sorts), in a loop with the
per-record operations before the shuffle. When the data held outgrows the
task's memory budget (and every few thousand records of a scatter), the
buffers are flushed: packed into one more chunk of each reducer's bucket.

A map output is one file of its own per attempt,
``shuffle-<id>/<map>-<attempt>-*``: the buckets' chunks, held in memory and
written a segment at a time (every reducer's chunks held since the last
segment, reducer after reducer: one segment for an output that fits a 16th of
the budget), then its index: each segment's ``reducers + 1`` offsets (u64 LE;
reducer ``r``'s bytes of a segment are ``[offset r, offset r + 1)``), and a
trailer ``index start:u64 segments:u32 reducers:u32``. One file a map task,
not one a reducer: a shuffle of 200 maps to 200 reducers made 40,000 files
(3.7 s of its 200k records' job, nearly all in creating them; now 1.3 s). The
driver registers an output only once its task has succeeded, so a failed or
repeated attempt never has a partial output read; the location says which
reducers it holds anything for (:func:`sent_bitmap`), and a reducer reads its
byte ranges (the file server sends them for ``<output>/<reducer>``).

Bucket: chunks of ``length:u32 flags:u8 payload``; the payload is a
msgpack array ``[k1, v1, k2, v2, ...]``, or ``[k1, k2, ...]`` when flag 2 is
set: the keys of pairs whose value is the int 1 (a map task whose records are
``(key, 1)`` by construction, the counting idiom, writes them so: half the
data, and a reducer that adds counts them in C). With flag 4 besides, those
keys are all ints and the payload is them as little-endian int64s (flag 8:
int32s; flag 32: uint32s; no msgpack object a key to write or to read); with
flag 16 besides, they are in sub-partitions of the reducer (:func:`key_subs`):
the payload starts with their number (u8) and each one's count of keys (u32
LE). Flag 1: zlib-compressed (chosen per Context: by default only in Mesos
mode, where buckets travel).

Reduce side (:class:`Merger`): merges values per key in a dict (int keys
counted by sub-partition: a dict each, while only such chunks come); past the
budget it spills the dict into hash sub-partitions on disk and merges them one
at a time at the end (external merge), so a shuffle larger than memory
completes.
"""
from __future__ import annotations

import array
import contextlib
import heapq
import io
import itertools
import os
import shutil
import struct
import sys
import tempfile
import weakref
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any

from gopark import pipeline, serialize
from gopark.errors import FetchFailed
from gopark.partitioner import HashPartitioner, portable_hash
from gopark.trash import Trash

_HEADER = struct.Struct(">IB")
_COMPRESS_MIN = 4096
_SPILL_BITS = 5
_SUB_PARTITIONS = 1 << _SPILL_BITS     # spill files of a reducer
_MISSING = object()
_MIX = 0x9E3779B97F4A7C15      # 2**64 / the golden ratio, odd


def spill_part(key: Any) -> int:
    """Which of a reducer's ``_SUB_PARTITIONS`` spill files takes ``key``: the top bits of its
    :func:`portable_hash` times ``_MIX`` (Fibonacci hashing), not the hash's low bits, which all the keys
    of one reducer share when the shuffle's partition count is a multiple of 32 (they would all go to
    one file, merged back as a whole: no memory saved)."""
    return ((portable_hash(key) * _MIX) & 0xFFFFFFFFFFFFFFFF) >> (64 - _SPILL_BITS)


def rss_bytes() -> int:
    """This process' resident memory."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


_CHECK_EVERY = pipeline.CHECK_EVERY   # entries (records or new keys) between two looks at the memory budget
_FLAT = frozenset({int, float, str, bytes, bool, type(None)})
_SIZED_ITEMS = 8        # items of a container sized by :func:`held_size`; the others count as their average
_SIZED_LEVELS = 8       # levels of containers it looks into
_SIZED_NODES = 64       # containers it looks into, at most (a record of records: the first ones)
_SAMPLES = 64           # the samples a Budget's average size follows, about
_RECENT = 8             # the samples that :meth:`Budget.full_of_entries`' average follows, about


def held_size(obj: Any) -> int:
    """The bytes ``obj`` holds, estimated: its own size and its items', down to ``_SIZED_LEVELS`` levels of
    containers (a sample of each container's first items, scaled to its length; at most ``_SIZED_NODES``
    containers looked into, the first found). An item shared by many containers (None, True, an int from
    -5 to 256: Python's own) counts nothing; any other counts in each container that holds it, on the safe
    side for a budget."""
    return _held(obj, _SIZED_LEVELS, [_SIZED_NODES])


def _held(obj: Any, levels: int, nodes: list[int]) -> int:
    """:func:`held_size` of ``obj``, ``levels`` more levels looked into, ``nodes[0]`` more containers."""
    size = sys.getsizeof(obj)
    t = type(obj)
    if t in _FLAT or not levels or nodes[0] <= 0:
        return size
    if t is dict:
        nodes[0] -= 1
        sample = list(itertools.islice(obj.items(), _SIZED_ITEMS))
        inside = sum(_item_size(k, levels, nodes) + _item_size(v, levels, nodes) for k, v in sample)
    elif t in (tuple, list, set, frozenset):
        nodes[0] -= 1
        sample = list(itertools.islice(obj, _SIZED_ITEMS))
        inside = sum(_item_size(x, levels, nodes) for x in sample)
    else:
        return size
    return size + inside * len(obj) // len(sample) if sample else size


def _item_size(item: Any, levels: int, nodes: list[int]) -> int:
    """:func:`_held` of a container's item (one level down), nothing for an object Python shares."""
    if item is None or type(item) is bool or (type(item) is int and -5 <= item <= 256):
        return 0
    return _held(item, levels - 1, nodes)


class Budget:
    """How much data a task may hold before it spills, estimated as entries are added.

    Every ``CHECK_EVERY`` entries, the holder samples one entry's size and
    adds that many entries of the average sampled size (of about the last
    ``_SAMPLES`` samples since the last reset), or of this sample's if larger:
    over the limit, it spills (or flushes) and resets. A dict folded into
    counts as its entries at that size (:meth:`full_of_entries`). The
    process' real RSS, read every few thousand checks, is the safety net.
    """

    def __init__(self, mem_bytes: int) -> None:
        self.mem = mem_bytes
        self.limit = max(mem_bytes - rss_bytes(), mem_bytes // 4, 1 << 20)
        self.held = 0
        self.avg = 128          # bytes an entry, on average, of the samples since the last reset
        self._samples = 0
        self._ticks = 0

    def full(self, size: int) -> bool:
        """``CHECK_EVERY`` more entries, one of them sampled at ``size`` bytes: is the budget spent? They
        count at the samples' average, or at this one's size if larger (records that grow midway: the
        average of the small ones before would count the large ones as small)."""
        if self._samples < _SAMPLES:
            self._samples += 1
        self.avg += (size - self.avg) // self._samples
        self.held += _CHECK_EVERY * max(self.avg, size)
        if self.held > self.limit:
            return True
        self._ticks += 1
        if self._ticks >= 8192:
            self._ticks = 0
            return rss_bytes() > self.mem * 1.2
        return False

    def full_of_pairs(self, k: Any, v: Any) -> bool:
        """:meth:`full`, the sample being a (key, value) entry of a dict or of flat buffers."""
        return self.full(held_size(k) + held_size(v) + 96)

    def full_of_records(self, record: Any) -> bool:
        """:meth:`full`, the sample being a record held in a list."""
        return self.full(held_size(record) + 64)

    def full_of_entries(self, entries: int, k: Any, c: Any) -> bool:
        """The look of a dict being folded into, after ``CHECK_EVERY`` more pairs: it holds ``entries``
        keys, ``k, c`` the entry just folded. Each look samples that entry's size into the average, which
        goes on following the samples (combiners grow as values fold into them: a list appended to, while
        no key is new), and the whole dict counts at that average, or at the latest sample if larger, on top
        of what :meth:`full` counted since the last reset (records scattered to buffers meanwhile)."""
        if self._samples < _RECENT:
            self._samples += 1
        size = held_size(k) + held_size(c) + 96
        self.avg += (size - self.avg) // self._samples
        if self.held + entries * max(self.avg, size) > self.limit:    # (the average lags a growth, the sample not)
            return True
        self._ticks += 1
        if self._ticks >= 8192:
            self._ticks = 0
            return rss_bytes() > self.mem * 1.2
        return False

    def reset(self) -> None:
        """What was held is written out: count afresh, and sample sizes afresh. (No collection of the young
        generation here: made at every flush, it kept resetting the count that starts Python's own
        collections, so the older generations were never collected and a long app's cycles piled up.)"""
        self.held = 0
        self._samples = 0


_ZLIB, _KEYS, _INT64, _INT32, _SUBS, _UINT32 = 1, 2, 4, 8, 16, 32   # chunk flags: compressed; keys alone; those
#                                                                keys as ints; in sub-partitions; as uint32s
_WIDTHS = _INT32 | _INT64 | _UINT32
_SUB_COUNT = struct.Struct("<I")
#: the array typecodes of the int widths a chunk of keys may have, by flag
_INT_CODES = {_INT32: next(code for code in "ilh" if array.array(code).itemsize == 4), _INT64: "q",
              _UINT32: next(code for code in "IL" if array.array(code).itemsize == 4)}


class Keys:
    """A chunk of a bucket file that holds only keys (``keys``: a list, or an ``array`` of ints when they
    are all ints), each of a pair ``(key, 1)``. ``subs``: for ints, how many keys each sub-partition of
    the reducer has, one after another (see :func:`key_subs`), or None."""

    __slots__ = ("keys", "subs")

    def __init__(self, keys: list | array.array, subs: list[int] | None = None) -> None:
        self.keys = keys
        self.subs = subs

    def sub_slices(self) -> Iterator[list | array.array]:
        """The keys of each sub-partition, in order."""
        start = 0
        for n in self.subs or ():
            yield self.keys[start:start + n]
            start += n


#: buffers of keys a map task fills at most, across its reducers (see :func:`key_subs`)
_KEY_BUFFERS = 64
_MAX_SUBS = 16


def key_subs(partitioner: Any) -> int:
    """Sub-partitions of each reducer's share of keys sent alone (by a hash partitioner).

    A reducer counts its keys in C, a dict lookup a key; a dict of a few
    hundred thousand keys does not fit in a core's cache, and a lookup then
    costs several cache misses. The map tasks split each reducer's keys
    further by their hash, at no cost (one scatter into ``n * subs`` buffers:
    key ``k`` goes to buffer ``hash(k) % (n * subs)``, which is its reducer
    ``hash(k) % n`` and sub-partition ``(hash(k) % (n * subs)) // n``), and
    the reducer counts each sub-partition in a dict of its own (about 30%
    faster at 250k keys). A power of two, as ``n * subs`` is when ``n`` is.
    Up to 64 buffers: 16 sub-partitions of 4 reducers count 250k keys each
    10% faster than 4 did (dicts of 16k keys fit a core's 2 MiB cache); past
    64, the chunks get too small (a flush packs 64k keys) and it is slower.
    """
    if type(partitioner) is not HashPartitioner:
        return 1
    n = partitioner.num_partitions
    return 1 if n >= _KEY_BUFFERS else min(_MAX_SUBS, 1 << ((_KEY_BUFFERS // n).bit_length() - 1))


def pack_ints(lists: Sequence[Collection[int]]) -> tuple[list[bytes], int] | None:
    """Collections of ints (exactly ``int``, known to the caller), each as little-endian int32s, or all as
    int64s, and the flag that says which; None if one does not fit. Packed in C by :mod:`struct` (a third
    faster than ``array``'s conversion, which parses each item as a call's argument) and read back with
    :func:`ints_from`, with no msgpack object an int (an int object is made only as it is used)."""
    for flag, code in _INT_FORMATS.items():
        try:
            return [_pack_all(ints, code) for ints in lists], flag
        except struct.error:        # one out of this width's range
            continue
    return None


_INT_FORMATS = {_INT32: "i", _INT64: "q"}   # struct's codes of the widths, standard sizes with "<"
_PACK_STEP = 1 << 14                        # ints packed by one call: its arguments are a tuple that long


def _pack_all(ints: Collection[int], code: str) -> bytes:
    n = len(ints)
    if n <= _PACK_STEP:
        return struct.pack(f"<{n}{code}", *ints)
    it = iter(ints)
    step = struct.Struct(f"<{_PACK_STEP}{code}").pack
    full, rest = divmod(n, _PACK_STEP)
    packed = [step(*itertools.islice(it, _PACK_STEP)) for _ in range(full)]
    packed.append(struct.pack(f"<{rest}{code}", *it))
    return b"".join(packed)


def ints_from(payload: bytes, flag: int) -> array.array:
    """The ints that :func:`pack_ints` packed with ``flag``; ValueError if ``payload`` is not a whole number of them."""
    ints = array.array(_INT_CODES[flag])
    if len(payload) % ints.itemsize:
        raise ValueError(f"{len(payload)} bytes of {ints.itemsize}-byte ints")
    ints.frombytes(payload)
    if sys.byteorder != "little":
        ints.byteswap()
    return ints


def _keys_payload(subs: list[list], ints: bool, packer: serialize.Packer) -> tuple[bytes, int]:
    """A reducer's keys alone, by sub-partition, as one chunk's payload and flags: as int32s or int64s when
    they are all exactly ints (``ints``: known to be) that fit one, by sub-partition if more than one, else
    msgpack."""
    packed = pack_ints(subs) if ints else None
    if packed is None:
        flat = subs[0] if len(subs) == 1 else list(itertools.chain.from_iterable(subs))
        return packer.pack(flat), _KEYS
    parts, flag = packed
    return _by_sub_partition(parts, [len(sub) for sub in subs], flag)


def _by_sub_partition(parts: list[bytes], counts: list[int], flag: int) -> tuple[bytes, int]:
    """Packed ints of a reducer's sub-partitions (``counts`` of each) as one chunk's payload and flags."""
    if len(parts) == 1:
        return parts[0], _KEYS | flag
    payload = b"".join([len(parts).to_bytes(1, "little"), *map(_SUB_COUNT.pack, counts), *parts])
    return payload, _KEYS | _SUBS | flag


def _little(ints: array.array) -> bytes:
    """The ints of an array, little-endian."""
    if sys.byteorder == "little":
        return ints.tobytes()
    swapped = array.array(ints.typecode, ints)
    swapped.byteswap()
    return swapped.tobytes()


#: the top bytes of the little-endian int64s within ``±(2**61 - 2)``, with room to spare: such an int is its own hash
_OWN_HASH_TOPS = bytes(range(0x00, 0x1F)) + bytes(range(0xE1, 0x100))


def _beyond_own_hash(int64s: bytes) -> bool:
    """Some of these little-endian int64s may not be their own hash: beyond ``±(2**61 - 2)`` (or near)."""
    return bool(int64s[7::8].translate(None, _OWN_HASH_TOPS))


def _write_chunk(f: Any, flat: list, packer: serialize.Packer, compress: bool = False) -> None:
    """``flat``, pairs ``[k, v, ...]``, as a chunk."""
    _write_payload(f, packer.pack(flat), 0, compress)


def _write_payload(f: Any, payload: bytes, flags: int, compress: bool) -> None:
    """One chunk: its header, then ``payload`` (compressed with ``compress``, when that is worth it)."""
    if compress and len(payload) >= _COMPRESS_MIN:
        payload, flags = zlib.compress(payload, 1), flags | _ZLIB
    f.write(_HEADER.pack(len(payload), flags))
    f.write(payload)


def read_chunks(path: str) -> Iterator[list | Keys]:
    """The chunks of a bucket file, one at a time: flat ``[k, v, ...]`` lists, or :class:`Keys`."""
    with open(path, "rb") as f:
        yield from _read_chunks_from(f, path)


def pairs_in(chunk: list | Keys) -> int:
    """How many (key, value) pairs a chunk holds."""
    return len(chunk.keys) if type(chunk) is Keys else len(chunk) // 2


def _read_exact(f: Any, n: int) -> bytes:
    data = f.read(n)
    while 0 < len(data) < n:          # a socket may hand over less than asked
        more = f.read(n - len(data))
        if not more:
            break
        data += more
    return data


def _read_chunks_from(f: Any, name: str) -> Iterator[list | Keys]:
    while True:
        head = _read_exact(f, _HEADER.size)
        if not head:
            return
        if len(head) < _HEADER.size:
            raise OSError(f"truncated shuffle bucket {name}")
        n, flags = _HEADER.unpack(head)
        payload = _read_exact(f, n)
        if len(payload) < n:
            raise OSError(f"truncated shuffle bucket {name}")
        try:
            chunk = _chunk(payload, flags)
        except (ValueError, TypeError, KeyError, zlib.error) as exc:     # not what was written
            raise OSError(f"corrupt shuffle bucket {name}: {exc}") from exc
        yield chunk


def _chunk(payload: bytes, flags: int) -> list | Keys:
    """One chunk, from its payload and flags (see the module's description); ValueError if they do not
    make one."""
    if flags & _ZLIB:
        payload = zlib.decompress(payload)
    width = flags & _WIDTHS
    if not width:
        flat = serialize.unpackb(payload)
        return Keys(flat) if flags & _KEYS else flat
    if width & (width - 1):
        raise ValueError("more than one int width flagged")
    subs = None
    if flags & _SUBS:
        start = 1 + payload[0] * _SUB_COUNT.size if payload else 1
        if len(payload) < start:
            raise ValueError("truncated sub-partition counts")
        subs = [n for n, in _SUB_COUNT.iter_unpack(payload[1:start])]
        payload = payload[start:]
    ints = ints_from(payload, width)
    if subs is not None and sum(subs) != len(ints):
        raise ValueError(f"sub-partitions of {sum(subs)} keys, {len(ints)} read")
    return Keys(ints, subs)


class _Held:
    """A reducer's chunks of one map output, held until the output's next segment is written; ``name``: the
    bucket's, ``<the output's file>/<reducer>`` (as the file server serves it). ``held``: the bytes held by
    all of the output's reducers, a one-item list they share (not their :class:`_Buckets`: no cycle)."""

    __slots__ = ("chunks", "held", "name")

    def __init__(self, held: list[int], name: str) -> None:
        self.chunks: list[bytes] = []
        self.held = held
        self.name = name

    def write(self, data: bytes) -> None:
        self.chunks.append(data)
        self.held[0] += len(data)


class _Buckets:
    """Per-reducer flat buffers (``bufs``: pairs; ``ones``: keys of ``(key, 1)`` pairs, ``subs`` buffers a
    reducer: buffer ``i`` holds keys of reducer ``i % n``, sub-partition ``i // n``, see :func:`key_subs`),
    packed into chunks at each flush, and written to the map output's one file ``f`` a segment at a time:
    every reducer's chunks held since the last one, reducer after reducer, once they hold ``hold`` bytes
    and at the end (:meth:`finish`)."""

    def __init__(self, f: Any, path: str, n: int, compress: bool, subs: int = 1, hold: int = 1 << 24) -> None:
        self.f = f
        self.compress = compress
        self.n = n
        self.bufs: list[list] = [[] for _ in range(n)]
        self.ones: list[list] = [[] for _ in range(n * subs)]
        self.mixed: list[bool] = [False] * (n * subs)    # ones[i] holds a key that is not exactly an int
        # keys a reducer counts by sub-partition may be placed by value (pipeline.scatter's by_value), into
        # ``ints``, while every one is an int: their order in the reducer is the sub-partitions' anyway. Never
        # both ``ints`` and ``ones`` hold keys (the one is written out before the other is filled): the
        # keys keep their order, and among equal keys (-1 and -1.0) the first seen stays first
        self.by_value_allowed = subs > 1
        self.other_key_seen = False      # a key that is not exactly an int came: by hash from then on
        self.ints: list[array.array] = [array.array(_INT_CODES[_UINT32]) for _ in range(n * subs)] \
            if self.by_value_allowed else []
        self.held = [0]         # bytes of the chunks held
        self.reducers = [_Held(self.held, f"{path}/{r}") for r in range(n)]
        self.hold = hold
        self.sent: set[int] = set()      # reducers given a chunk
        self.segments: list[array.array] = []     # each segment's offsets: reducer r's bytes are [r, r + 1)
        self.flushes = 0        # chunks packed (they can no longer be taken back)
        self.packer = serialize.Packer("a shuffle record")

    # -- pipeline.ByValue: int keys placed by value, into arrays of uint32s (int64s once one needs it: a
    # negative key, or one of 2**32 or more). Unsigned: ``array.append`` converts an item of an unsigned type
    # with one C call, a signed one as a call's argument (PyArg_Parse): a map task's loop 16% faster
    def start(self) -> list[array.array]:
        if any(self.ones):
            self.flush()
        return self.ints

    def widen(self, k: int) -> list[array.array] | None:
        if self.ints[0].itemsize == 8 or not -(1 << 63) <= k < 1 << 63:
            return None
        self.ints = [array.array(_INT_CODES[_INT64], ints) for ints in self.ints]
        return self.ints

    def stop(self) -> None:
        self.other_key_seen = True
        self.by_hash()

    def by_hash(self) -> None:
        """Keys are about to be placed by hash, into ``ones``: those placed by value are written out first."""
        if any(self.ints):
            self.flush()

    def flush(self) -> None:
        # keys first: they are only ever written by a scatter, before the pairs of the spill that follows it
        for r, payload, flags in self._keys_payloads():
            _write_payload(self._sink(r), payload, flags, self.compress)
        for buf in self.ones:
            buf.clear()                   # in place: a loop filling the buffers holds their ``append``
        for ints in self.ints:
            del ints[:]
        self.mixed[:] = [False] * len(self.mixed)
        for r, buf in enumerate(self.bufs):
            if buf:
                self._write_pairs(r, buf)
                buf.clear()
        if self.held[0] >= self.hold:
            self._write_segment()

    def _write_pairs(self, r: int, buf: list) -> None:
        """Reducer ``r``'s buffer of pairs ``[k, v, ...]`` as chunks of about a quarter of ``hold`` bytes:
        each chunk's pairs as many as the bytes a pair took packed so far allow (at first
        ``_FIRST_PAIRS``), and fewer if the largest of a few pairs sampled across them says so (values
        that grow midway); the segment written whenever the chunks held reach ``hold``, and each chunk's
        records let go once packed. A buffer of large values is never held as objects and packed whole
        besides (nor grows the packer's own buffer to its size, which it keeps)."""
        piece = self.hold // 4
        start = packed = 0
        step = 2 * _FIRST_PAIRS
        while start < len(buf):
            end = min(len(buf), start + step)
            stride = max(2, (end - start) // 8 & ~1)       # even: a key's index
            largest = max(held_size(buf[i]) + held_size(buf[i + 1]) for i in range(start, end, stride))
            end = min(end, start + 2 * max(1, piece // largest))
            if start == 0 and end == len(buf):
                _write_chunk(self._sink(r), buf, self.packer, self.compress)
                return
            payload = self.packer.pack(buf[start:end])
            buf[start:end] = [None] * (end - start)
            _write_payload(self._sink(r), payload, 0, self.compress)
            packed += len(payload)
            start = end
            step = 2 * max(1, piece * start // 2 // max(packed, 1))     # whole pairs
            if self.held[0] >= self.hold:
                self._write_segment()

    def _keys_payloads(self) -> list[tuple[int, bytes, int]]:
        """Each reducer's keys alone (``ones``, or ``ints``) as one chunk's payload and flags."""
        n = self.n
        if any(self.ints):
            self._rehome()
            flag = _INT64 if self.ints[0].itemsize == 8 else _UINT32
            return [(r, *_by_sub_partition(list(map(_little, subs)), list(map(len, subs)), flag))
                    for r in range(n) if any(subs := self.ints[r::n])]
        return [(r, *_keys_payload(subs, not any(self.mixed[r::n]), self.packer))
                for r in range(n) if any(subs := self.ones[r::n])]

    def _rehome(self) -> None:
        """Every int placed by value is in buffer ``k % N`` (of the N buffers), which is its hash's but for -1
        (in the last buffer, its hash is -2) and those beyond ``±(2**61 - 2)`` (int64s only): those are
        moved to their hash's buffer, after its keys (all placed by value: their order is of no account)."""
        ints = self.ints
        n_bufs = len(ints)
        suspects = [i for i, buf in enumerate(ints) if buf.itemsize == 8 and _beyond_own_hash(_little(buf))]
        if n_bufs - 1 not in suspects and ints[-1].itemsize == 8 and -1 in ints[-1]:   # (uint32s: none negative)
            suspects.append(n_bufs - 1)
        moved: list[list[int]] = [[] for _ in range(n_bufs)]
        for i in suspects:
            buf = ints[i]
            away = [k for k in buf if hash(k) % n_bufs != i]
            if away:
                buf[:] = array.array(buf.typecode, [k for k in buf if hash(k) % n_bufs == i])   # in place
                for k in away:
                    moved[hash(k) % n_bufs].append(k)
        for buf, keys in zip(ints, moved):
            buf.extend(keys)

    def _sink(self, r: int) -> _Held:
        self.flushes += 1
        self.sent.add(r)
        return self.reducers[r]

    def _write_segment(self) -> None:
        offsets = array.array("Q")
        pos = self.f.tell()
        for held in self.reducers:
            offsets.append(pos)
            if held.chunks:
                self.f.writelines(held.chunks)
                pos += sum(map(len, held.chunks))
                held.chunks.clear()
        offsets.append(pos)
        self.segments.append(offsets)
        self.held[0] = 0

    def finish(self) -> None:
        """Write what is held, then the index: each segment's offsets, and the trailer that finds them."""
        if self.held[0]:
            self._write_segment()
        index_start = self.f.tell()
        for offsets in self.segments:
            if sys.byteorder != "little":
                offsets.byteswap()
            self.f.write(offsets.tobytes())
        self.f.write(_TRAILER.pack(index_start, len(self.segments), self.n))


#: the end of a map output's file: where its index starts, its segments, its reducers
_TRAILER = struct.Struct("<QII")
_OFFSETS = struct.Struct("<QQ")


def _trailer(fd: int, name: str) -> tuple[int, int, int]:
    """(index start, segments, reducers) of the map output open as ``fd``; OSError if it is not whole."""
    size = os.fstat(fd).st_size
    if size < _TRAILER.size:
        raise OSError(f"truncated map output {name}")
    index_start, segments, reducers = _TRAILER.unpack(os.pread(fd, _TRAILER.size, size - _TRAILER.size))
    if index_start + segments * (reducers + 1) * 8 + _TRAILER.size != size:
        raise OSError(f"truncated or corrupt map output {name}")
    return index_start, segments, reducers


def bucket_ranges(fd: int, reduce_id: int, name: str) -> list[tuple[int, int]]:
    """Where one reducer's chunks lie in a map output (open as ``fd``): a (start, end) byte range for each
    segment that holds some. Read with ``pread``: a few system calls, no seek. OSError if the file is not a
    whole map output."""
    index_start, segments, reducers = _trailer(fd, name)
    if not 0 <= reduce_id < reducers:
        raise OSError(f"map output {name} has {reducers} reducers, not reducer {reduce_id}")
    ranges = []
    for s in range(segments):
        pair = os.pread(fd, _OFFSETS.size, index_start + (s * (reducers + 1) + reduce_id) * 8)
        start, end = _OFFSETS.unpack(pair)
        if not start <= end <= index_start:
            raise OSError(f"corrupt map output {name}")
        if start < end:
            ranges.append((start, end))
    return ranges


class _Range:
    """The bytes ``[start, end)`` of the file open as ``fd``, read as a file of its own (by ``pread``)."""

    def __init__(self, fd: int, start: int, end: int) -> None:
        self.fd = fd
        self.pos = start
        self.end = end

    def read(self, n: int) -> bytes:
        data = os.pread(self.fd, min(n, self.end - self.pos), self.pos)
        self.pos += len(data)
        return data


_READ_WHOLE = 1 << 18     # a bucket's range up to this many bytes is read at once


def read_output(path: str, reduce_id: int) -> Iterator[list | Keys]:
    """The chunks of one reducer in the map output file ``path``; OSError if it is not a whole map output."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield from read_ranges(fd, bucket_ranges(fd, reduce_id, path), path)
    finally:
        os.close(fd)


def output_reducers(path: str) -> int:
    """How many reducers the map output file ``path`` was written for (by its trailer)."""
    with open(path, "rb") as f:
        return _trailer(f.fileno(), path)[2]


def read_ranges(fd: int, ranges: list[tuple[int, int]], name: str) -> Iterator[list | Keys]:
    """The chunks in these byte ranges of the file open as ``fd``, one range after another (a small
    one read whole, at once)."""
    for start, end in ranges:
        if end - start <= _READ_WHOLE:
            data = os.pread(fd, end - start, start)
            yield from _read_chunks_from(io.BytesIO(data), name)
        else:
            yield from _read_chunks_from(_Range(fd, start, end), name)


def write_map_output(records: Iterable[Any], root: str, shuffle_id: int, map_id: int, attempt: int,
                     partitioner: Any, create: Callable[[Any], Any] | None,
                     merge_value: Callable[[Any, Any], Any] | None, mem_bytes: int, compress: bool,
                     ops: Sequence[tuple[str, Callable[..., Any]]] = (), probe: bool = True) -> tuple[str, bytes]:
    """Write one map task's buckets; returns the output's file and the bitmap of the reducers it wrote a
    bucket for (:func:`sent_bitmap`).

    The records of ``records`` pass through the per-record ``ops`` in the
    loop that writes them (see :mod:`gopark.pipeline`). ``merge_value`` set:
    combine map-side (while that makes fewer pairs, see :func:`_combine`; with ``probe`` False,
    always: aggregateByKey's zero value is taken once per key of each map task, as in Spark).
    ``compress``: zlib the chunks (about 2x smaller, about 80 MB/s of CPU),
    worth it when buckets cross the network, not when every reader is on this host.
    """
    base = shuffle_folder(root, shuffle_id)
    os.makedirs(base, exist_ok=True)
    # a file of its own per attempt: the driver registers it only once the task has succeeded,
    # and a re-run never has to replace (or trust) an earlier attempt's file
    fd, path = tempfile.mkstemp(prefix=f"{map_id}-{attempt}-", dir=base)
    # keys in sub-partitions only for a reducer that counts them, to which their order does not matter
    counted = merge_value is not None and pipeline.adds(merge_value)
    budget = Budget(mem_bytes)
    try:
        with open(fd, "wb") as f:
            buckets = _Buckets(f, path, partitioner.num_partitions, compress, key_subs(partitioner) if counted else 1,
                               hold=_hold(mem_bytes, partitioner.num_partitions))
            if merge_value is not None:
                _combine(records, ops, buckets, budget, partitioner, create, merge_value, probe)
            else:
                _scatter(records, ops, buckets, budget, partitioner, None)
            buckets.flush()
            buckets.finish()
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return path, sent_bitmap(buckets.sent, partitioner.num_partitions)


def _hold(mem_bytes: int, reducers: int) -> int:
    """Bytes of packed chunks a map task holds before it writes them as a segment: a 16th of its budget,
    but at least 64 times the segment's offsets (whose index the task keeps to the end, and each reducer
    reads a pair of a segment), within ``[_HOLD_MIN, _HOLD_MAX]``."""
    return min(_HOLD_MAX, max(_HOLD_MIN, mem_bytes // 16, 64 * 8 * (reducers + 1)))


_HOLD_MIN = 1 << 18
_HOLD_MAX = 1 << 24
_FIRST_PAIRS = 512      # pairs of a buffer packed as one chunk before their packed size is known


def not_a_pair(record: Any) -> TypeError:
    """The error for a record a shuffle got that is not a (key, value) pair."""
    return TypeError(f"a shuffle needs (key, value) pairs, got {type(record).__name__}: {record!r:.80}")


#: the first records of a map task (before its per-record operations) tell whether combining pays
_PROBE_RECORDS = 1 << 16
_PROBE_MIN_PAIRS = 1 << 14      # fewer pairs than this from them: too few to tell, keep combining
_UNIQUE = 0.8                   # combining stops when more than this share of the probed pairs had new keys
_SCATTER_RECORDS = 1 << 20      # records sent on uncombined before the next probe
#: blocks of CHECK_EVERY records a scatter takes between two flushes of its buffers: a buffer is packed
#: while the keys it points to are still in the cache (a map task of reduceByKey: 0.20 -> 0.17 s)
_FLUSH_BLOCKS = 64


def _combine(records: Iterable[Any], ops: Sequence[tuple[str, Callable[..., Any]]], buckets: _Buckets,
             budget: Budget, partitioner: Any, create: Callable[[Any], Any] | None,
             merge_value: Callable[[Any, Any], Any], probe: bool = True) -> None:
    """Combine map-side, unless the first records show it would hardly make fewer pairs (and ``probe``).

    Combining costs a dict insert per pair; when nearly every key is new, it
    saves the shuffle almost nothing, and the reducers merge those pairs
    anyway. So the first ``_PROBE_RECORDS`` records are combined, counting
    pairs and new keys; if more than ``_UNIQUE`` of the pairs had new keys,
    what was combined is written out and the next ``_SCATTER_RECORDS``
    records go straight to their buckets (as Trino's adaptive partial
    aggregation does), then the next records are probed again: keys that
    start repeating later are combined again. The word counts' C loop
    (:func:`pipeline.counts`) always combines.
    """
    combined: dict[Any, Any] = {}

    def spill() -> None:
        pipeline.scatter(combined.items(), (), buckets.bufs, None, partitioner, _no_check, not_a_pair, pairs=True)
        combined.clear()
        buckets.flush()
        budget.reset()

    def check(k: Any, c: Any) -> None:
        if budget.full_of_entries(len(combined), k, c):
            spill()

    records = iter(records)
    probing = probe and not pipeline.counts(ops, create, merge_value)
    if probing and pipeline.keys_counted(ops, create, merge_value):
        _probe_scattering(records, ops, buckets, budget, partitioner, combined)
        probing = False
    while probing:
        seen, new = pipeline.combine(itertools.islice(records, _PROBE_RECORDS), ops, combined, create,  # type: ignore[misc]
                                     merge_value, check, not_a_pair, probe=True)
        probing = seen >= _PROBE_MIN_PAIRS and new > seen * _UNIQUE
        if probing:
            spill()
            _scatter(itertools.islice(records, _SCATTER_RECORDS), ops, buckets, budget, partitioner, create)
    pipeline.combine(records, ops, combined, create, merge_value, check, not_a_pair)
    spill()


def _probe_scattering(records: Iterator[Any], ops: Sequence[tuple[str, Callable[..., Any]]], buckets: _Buckets,
                      budget: Budget, partitioner: Any, combined: dict) -> None:
    """:func:`_combine`'s probe when the records are scattered as keys alone, to be counted by the reducers.

    The probe's records are scattered, and their keys counted in C: if more than
    ``_UNIQUE`` of them are distinct, they stay in the buffers, as the next
    ``_SCATTER_RECORDS`` records do, and the records after those are probed again;
    else the probed keys are taken back out of the buffers and counted into
    ``combined`` (in C), and this returns: the rest is combined. Probing costs
    nothing then, when nearly every key is new, beyond a set of its keys.
    """
    while True:
        # keys placed by value (in ``ints``, while every key is an int) or by hash (in ``ones``): a probe's go
        # to one or the other, in the order they came, each equal key in one buffer (by value, all are ints:
        # the first key that is not one writes out those held, which can then no longer be taken back: the
        # probe sees the write and starts again)
        marks = [len(buf) for buf in (*buckets.ints, *buckets.ones)]
        flushes = buckets.flushes
        _scatter(itertools.islice(records, _PROBE_RECORDS), ops, buckets, budget, partitioner, None, flush_blocks=None)
        if buckets.flushes != flushes:      # the budget wrote them out: they cannot be taken back, nor tell
            continue
        held = [*buckets.ints, *buckets.ones]      # (after the scatter: widened ints are new arrays, same keys)
        probed = [buf[m:] for buf, m in zip(held, marks)]
        seen = sum(map(len, probed))
        # distinct keys counted buffer by buffer (equal keys share one, by value or by hash): 64 sets of a
        # thousand keys each cost 3.5 ms, one of 64k 6 ms
        if seen >= _PROBE_MIN_PAIRS and sum(map(len, map(set, probed))) > seen * _UNIQUE:
            _scatter(itertools.islice(records, _SCATTER_RECORDS), ops, buckets, budget, partitioner, None)
            continue
        for buf, m, keys in zip(held, marks, probed):
            if keys:
                pipeline.count_keys(combined, keys)
                del buf[m:]
        return


def _scatter(records: Iterable[Any], ops: Sequence[tuple[str, Callable[..., Any]]], buckets: _Buckets,
             budget: Budget, partitioner: Any, create: Callable[[Any], Any] | None,
             flush_blocks: int | None = _FLUSH_BLOCKS) -> None:
    """Each (k, v) of ``records`` (through ``ops``) to its reducer's buffer as ``k, v`` (``k, create(v)``
    with ``create``), flushed to the bucket files whenever the budget is spent, and after every
    ``flush_blocks`` blocks of records (None: only when the budget is spent). Keys alone are placed by
    value where the buffers allow it (:class:`_Buckets`)."""
    blocks = 0
    every = flush_blocks or 1 << 62

    def check(k: Any, v: Any) -> None:
        nonlocal blocks
        blocks += 1
        if budget.full_of_pairs(k, v) or blocks >= every:
            blocks = 0
            buckets.flush()
            budget.reset()

    by_value = buckets.by_value_allowed and not buckets.other_key_seen
    if not by_value:
        buckets.by_hash()
    pipeline.scatter(records, ops, buckets.bufs, create, partitioner, check, not_a_pair, ones=buckets.ones,
                     mixed=buckets.mixed, by_value=buckets if by_value else None)


def read_shuffle(shuffle_id: int, locations: list[dict], reduce_id: int,
                 here: str | None = None) -> Iterator[tuple[Any, Any]]:
    """The pairs every map output holds for one reducer (see :func:`shuffle_chunks`)."""
    return _pairs_of(shuffle_chunks(shuffle_id, locations, reduce_id, here))


def shuffle_chunks(shuffle_id: int, locations: list[dict], reduce_id: int,
                   here: str | None = None) -> Iterator[list | Keys]:
    """The chunks every map output holds for one reducer; FetchFailed naming every output found gone.

    An output with a ``url`` that is not served from ``here`` (the file server
    of this process's executor) is fetched over HTTP; the others are read from
    local disk.
    """
    # None: the driver learnt the output was lost after this task was made (a lost executor)
    gone = [(m, None if loc is None else loc["path"]) for m, loc in enumerate(locations)
            if loc is None or (not loc.get("nothing") and holds(loc, reduce_id) and _is_local(loc, here)
                               and not os.path.exists(loc["path"]))]
    if gone:
        m = gone[0][0]
        host = (locations[m] or {}).get("host", "?")
        raise FetchFailed(shuffle_id, m, reduce_id, host, "map output is gone", gone)
    return itertools.chain.from_iterable(
        read_bucket(loc, shuffle_id, m, reduce_id) if _is_local(loc, here)
        else fetch_bucket(locations, shuffle_id, m, reduce_id)
        for m, loc in enumerate(locations)
        if not loc.get("nothing") and holds(loc, reduce_id))     # type: ignore[union-attr, arg-type]


def _is_local(location: dict, here: str | None) -> bool:
    url = location.get("url")
    return url is None or (here is not None and url.startswith(here + "/"))


def shuffle_folder(root: str, shuffle_id: int) -> str:
    """The folder of a shuffle's map outputs under a process's shuffle folder ``root``."""
    return os.path.join(root, f"shuffle-{shuffle_id}")


def remove_shuffles(shuffle_ids: Iterable[int], work_dir: str, trash: Trash) -> None:
    """Throw away the folders of dropped shuffles in ``work_dir``, every file in them: the outputs the driver
    registered, and those it never heard of (a map task's attempt that ended after its job failed, or was
    stopped between writing its output and saying so)."""
    root = os.path.join(work_dir, "shuffle")
    trash.throw(shuffle_folder(root, int(i)) for i in shuffle_ids)


def sent_bitmap(sent: Iterable[int], reducers: int) -> bytes:
    """The reducers a map output has a bucket for, as a bitmap: bit ``r`` of byte ``r // 8``. It travels in
    the output's location (``"sent"``), so that the driver gives a reduce task only the outputs that hold
    something for it (Spark's MapStatus): a shuffle of M maps to R reducers does not open M x R mostly
    empty buckets."""
    bits = bytearray((reducers + 7) // 8)
    for r in sent:
        bits[r >> 3] |= 1 << (r & 7)
    return bytes(bits)


def locations_for(locations: list[dict | None], needed: Iterable[int]) -> list[dict | None]:
    """``locations`` as a task that reads reducers ``needed`` gets them: an output whose ``"sent"`` bitmap
    holds none of them is ``SENT_NOTHING`` (not read, nor looked for); the others as they are, but without
    their bitmap when the task reads one reducer (it holds something for it); a task reading several (a
    coalesce of a shuffle's partitions) keeps it, to tell a bucket never written (not asked for) from a
    lost one (:func:`holds`). A lost one (None) stays None."""
    needed = list(needed)
    out: list[dict | None] = []
    for loc in locations:
        if loc is None or "sent" not in loc:
            out.append(loc)
        elif not any(holds(loc, r) for r in needed):
            out.append(SENT_NOTHING)
        elif len(needed) == 1:
            out.append({k: v for k, v in loc.items() if k != "sent"})
        else:
            out.append(loc)
    return out


def holds(location: dict, reduce_id: int) -> bool:
    """The map output at ``location`` holds something for this reducer (as far as its location says)."""
    sent = location.get("sent")
    return sent is None or ((reduce_id >> 3) < len(sent) and bool(sent[reduce_id >> 3] & (1 << (reduce_id & 7))))


SENT_NOTHING = {"nothing": True}     # a map output's location for a reducer it sent nothing


def read_bucket(location: dict, shuffle_id: int, map_id: int, reduce_id: int) -> Iterator[list | Keys]:
    """The chunks one map output holds for one reducer; FetchFailed if it is gone (or damaged)."""
    path = location["path"]
    host = location.get("host", "?")

    def chunks() -> Iterator[list | Keys]:
        try:
            yield from read_output(path, reduce_id)
        except OSError as exc:      # (a missing file too: the output is being removed)
            raise FetchFailed(shuffle_id, map_id, reduce_id, host, str(exc), [(map_id, path)]) from exc

    return chunks()


def fetch_bucket(locations: list[dict], shuffle_id: int, map_id: int, reduce_id: int) -> Iterator[list | Keys]:
    """One map output's chunks for one reducer, from the file server of the executor that wrote it.

    404: that output is gone. A server that cannot be reached: every output it
    held is gone (its executor or machine is), and FetchFailed names them all.
    """
    loc = locations[map_id]
    url, host = f"{loc['url']}/{reduce_id}", loc.get("host", "?")

    def chunks() -> Iterator[list | Keys]:
        from gopark import http
        try:
            with http.get(url) as resp:
                yield from _read_chunks_from(resp, url)
        except http.NotFound:
            raise FetchFailed(shuffle_id, map_id, reduce_id, host, "map output is gone",
                              [(map_id, loc["path"])]) from None
        except ConnectionError as exc:    # refused, reset: the executor that served it is gone
            server = http.server_of(loc["url"])
            gone = [(m, other["path"]) for m, other in enumerate(locations)
                    if other.get("url") and http.server_of(other["url"]) == server]
            raise FetchFailed(shuffle_id, map_id, reduce_id, host, f"cannot reach {server}: {exc}", gone) from exc
        except OSError as exc:
            raise FetchFailed(shuffle_id, map_id, reduce_id, host, str(exc), [(map_id, loc["path"])]) from exc

    return chunks()


def _pairs(chunk: list | Keys) -> Iterator[tuple[Any, Any]]:
    if type(chunk) is Keys:
        return zip(chunk.keys, itertools.repeat(1))
    it = iter(chunk)
    return zip(it, it)


def _pairs_of(chunks: Iterable[list | Keys]) -> Iterator[tuple[Any, Any]]:
    """The pairs of chunks (flat ``[k, v, ...]`` lists, or :class:`Keys`), one after another."""
    return itertools.chain.from_iterable(map(_pairs, chunks))


def _pairs_counting_keys(chunks: Iterable[list | Keys], count: Callable[[Keys], None],
                         before_pairs: Callable[[], None]) -> Iterator[Iterator[tuple]]:
    """The pairs of each chunk of pairs, ``before_pairs()`` called before each; a chunk of :class:`Keys`
    goes to ``count`` when its turn comes."""
    for chunk in chunks:
        if type(chunk) is Keys:
            count(chunk)
        else:
            before_pairs()
            yield _pairs(chunk)


def _no_check(k: Any, c: Any) -> None:
    """No budget to check: a sub-partition read back is merged whole, a spill writes what is held."""


class MergedItems:
    """The (key, combiner) pairs of a reducer's merged dicts ``parts`` (its sub-partitions, or one dict), as
    an iterator whose ``iter()`` is a C iterator over the dicts' items (a loop over it runs in C), and
    which gives the dicts themselves while none of their pairs has been taken (:meth:`whole`: ``collect``
    packs each as one batch). ``ints``: their keys and values are known to be all exactly ints (counts of
    int keys)."""

    __slots__ = ("parts", "ints", "_items", "_taken")

    def __init__(self, parts: list[dict], ints: bool = False) -> None:
        self.parts = parts
        self.ints = ints
        self._items = iter(parts[0].items()) if len(parts) == 1 else \
            itertools.chain.from_iterable(map(dict.items, parts))
        self._taken = False

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        self._taken = True
        return self._items

    def __next__(self) -> tuple[Any, Any]:
        self._taken = True
        return next(self._items)

    def whole(self) -> list[dict] | None:
        """``parts`` if none of their pairs can have been taken yet, else None."""
        return None if self._taken else self.parts


_PENDING_KEYS = 1 << 20     # keys of chunks held back to be counted a sub-partition at a time (4 MB of int32s)


class _SubPartitionCount:
    """A reducer's count of int keys by sub-partition (:func:`key_subs`): a dict each (``parts``).

    Chunks are held until they have ``_PENDING_KEYS`` keys between them (fewer
    under a small memory budget), then
    counted one sub-partition at a time across them all, so that one dict is in
    the cache while its keys are counted (the map tasks flush their buffers
    often, and a chunk has a few thousand keys of each sub-partition).
    """

    def __init__(self, counted: pipeline.KeyCount, n: int, mem_bytes: int) -> None:
        self.parts: list[dict] = [{} for _ in range(n)]
        self.counted = counted
        self.pending: list[list] = []       # the keys of each held chunk, by sub-partition
        self.held = 0
        # held keys cost up to 8 bytes each (4 read, 4 sliced): a 64th of the budget at most
        self.hold = max(_CHECK_EVERY, min(_PENDING_KEYS, mem_bytes // 64))

    def add(self, chunk: Keys) -> None:
        self.pending.append(list(chunk.sub_slices()))
        self.held += len(chunk.keys)
        if self.held >= self.hold:
            self.settle()

    def settle(self) -> None:
        """Count the held chunks."""
        pending, self.pending, self.held = self.pending, [], 0
        for s, part in enumerate(self.parts):
            for keys in pending:
                self.counted.add(keys[s], part)


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
        #: while every chunk added was of int keys in sub-partitions: their count (see :func:`key_subs`);
        #: ``data`` is empty then
        self._subs: _SubPartitionCount | None = None
        self.spill_dir: str | None = None
        self._files: list[Any] = []
        self._packer = serialize.Packer("a shuffle record")

    def add_values(self, pairs: Iterable[tuple[Any, Any]]) -> None:
        """Fold raw values; every value counts against the budget (grouped lists grow with each): the
        pairs are taken in blocks of ``_CHECK_EVERY``, the budget checked after each."""
        data, create, merge = self.data, self.create, self.merge_value
        get = data.get
        pairs = itertools.chain(pairs)       # once ended, ended (see pipeline's blocks)
        while True:
            k = v = _MISSING
            for k, v in itertools.islice(pairs, _CHECK_EVERY):
                c = get(k, _MISSING)
                data[k] = (v if create is None else create(v)) if c is _MISSING else merge(c, v)
            if k is _MISSING:
                return
            self._check(k, v)

    def add_to_groups(self, pairs: Iterable[tuple[Any, Any]], i: int, n: int) -> None:
        """cogroup: append each value to list ``i`` of its key's ``n`` lists (in blocks, as :meth:`add_values`)."""
        data = self.data
        get = data.get
        pairs = itertools.chain(pairs)
        while True:
            k = v = _MISSING
            for k, v in itertools.islice(pairs, _CHECK_EVERY):
                groups = get(k)
                if groups is None:
                    groups = data[k] = [[], []] if n == 2 else [[] for _ in range(n)]
                groups[i].append(v)
            if k is _MISSING:
                return
            self._check(k, v)

    def add_combiners(self, chunks: Iterable[list | Keys]) -> None:
        """Fold the combiners of a shuffle's chunks (in a generated loop, as the map side does); each new
        key counts against the budget. When combiners add (``a + b``), a chunk of :class:`Keys` is counted
        in C (:class:`pipeline.KeyCount`), in its turn between the chunks of pairs."""
        if pipeline.adds(self.merge_combiners):
            counted = pipeline.KeyCount(self.data, self._check)

            def count(chunk: Keys) -> None:
                if chunk.subs is not None and not self.data and \
                        (self._subs is None or len(self._subs.parts) == len(chunk.subs)):
                    if self._subs is None:
                        self._subs = _SubPartitionCount(counted, len(chunk.subs), self.budget.mem)
                    self._subs.add(chunk)
                else:
                    self._unsplit()
                    counted.add(chunk.keys)
            pairs = itertools.chain.from_iterable(_pairs_counting_keys(chunks, count, self._unsplit))
        else:
            pairs = _pairs_of(chunks)
        pipeline.combine(pairs, (), self.data, None, self.merge_combiners, self._check_folded, not_a_pair,
                         pairs=True)
        if self._subs is not None:
            self._subs.settle()

    def _unsplit(self) -> None:
        """The sub-partitions' dicts merged into ``data``, which holds every key from now on."""
        if self._subs is not None:
            self._subs.settle()
            for part in self._subs.parts:
                self.data.update(part)
            self._subs = None

    @property
    def parts(self) -> list[dict] | None:
        """The sub-partitions' dicts, while keys are counted by sub-partition; else None."""
        return self._subs.parts if self._subs is not None else None

    def _dicts(self) -> list[dict]:
        return self._subs.parts if self._subs is not None else [self.data]

    def _check(self, k: Any, v: Any) -> None:
        """After ``_CHECK_EVERY`` more entries (the last one ``k, v``): spill if over budget.

        A spill empties ``self.data`` in place, so a loop filling it goes on with the same dict.
        """
        if self.budget.full_of_pairs(k, v):
            self._spill()

    def _check_folded(self, k: Any, c: Any) -> None:
        """:meth:`_check` of the combine loop (after ``_CHECK_EVERY`` more pairs folded into ``data``)."""
        if self.budget.full_of_entries(len(self.data), k, c):
            self._spill()

    def _spill(self) -> None:
        if self.spill_dir is None:
            os.makedirs(self.spill_root, exist_ok=True)
            self.spill_dir = tempfile.mkdtemp(prefix="spill-", dir=self.spill_root)
            self._files = [open(os.path.join(self.spill_dir, str(i)), "w+b") for i in range(_SUB_PARTITIONS)]
        bufs: list[list] = [[] for _ in range(_SUB_PARTITIONS)]
        for data in self._dicts():
            for k, c in data.items():
                b = bufs[spill_part(k)]
                b.append(k)
                b.append(c)
            data.clear()
        for f, buf in zip(self._files, bufs):
            if buf:
                _write_chunk(f, buf, self._packer)
        self.budget.reset()

    def items(self) -> Iterator[tuple[Any, Any]]:
        """Every (key, combiner): the dict's own items when nothing spilled (:class:`MergedItems`: a
        consumer may take them in C), else merged back one sub-partition at a time. The merger is spent
        afterwards."""
        if self.spill_dir is None:
            return MergedItems(self._dicts(), ints=self._subs is not None)
        return self._merged_spills()

    def items_as(self, convert: Callable[[Any], Any]) -> Iterator[tuple[Any, Any]]:
        """Every (key, ``convert(combiner)``), by C's ``zip`` and ``map`` when nothing spilled."""
        if self.spill_dir is None:
            self._unsplit()
            return zip(self.data.keys(), map(convert, self.data.values()))
        return ((k, convert(c)) for k, c in self._merged_spills())

    def _merged_spills(self) -> Iterator[tuple[Any, Any]]:
        try:
            self._spill()
            for f in self._files:
                f.flush()
                merged: dict[Any, Any] = {}
                pipeline.combine(_pairs_of(read_chunks(f.name)), (), merged, None, self.merge_combiners, _no_check,
                                 not_a_pair, pairs=True)
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


_RUN_CHUNK = 16 << 10      # bytes (estimated) of a chunk of a sorted run on disk
_FAN_IN = 64               # sorted runs merged at once (the merge holds a chunk of each)


def write_records(path: str, records: Iterable[Any], step: int, packer: serialize.Packer) -> None:
    """``records`` to the file ``path``, in chunks of ``step`` records (a sorted run, a checkpoint's part)."""
    with open(path, "wb") as f:
        _write_records_to(f, records, step, packer)


def _write_records_to(f: Any, records: Iterable[Any], step: int, packer: serialize.Packer) -> None:
    """``records`` to the open binary file ``f``, in chunks of ``step`` records."""
    it = iter(records)
    while chunk := list(itertools.islice(it, step)):
        _write_chunk(f, chunk, packer)


def read_records(path: str) -> Iterator[Any]:
    """The records :func:`write_records` wrote to ``path``."""
    return itertools.chain.from_iterable(read_chunks(path))    # type: ignore[arg-type]


def _merge_runs(runs: list[str], folder: str, key: Callable[[Any], Any], reverse: bool, step: int,
                packer: serialize.Packer) -> list[str]:
    """At most ``_FAN_IN`` sorted runs: consecutive runs merged into one, a group at a time, in passes
    (a merge of runs in their order keeps the sort stable)."""
    names = itertools.count()
    while len(runs) > _FAN_IN:
        merged = []
        for i in range(0, len(runs), _FAN_IN):
            group = runs[i:i + _FAN_IN]
            if len(group) == 1:
                merged.append(group[0])
                continue
            path = os.path.join(folder, f"merged-{next(names)}")
            write_records(path, heapq.merge(*map(read_records, group), key=key, reverse=reverse), step, packer)
            for done in group:
                os.remove(done)
            merged.append(path)
        runs = merged
    return runs


def external_sort(records: Iterable[Any], key: Callable[[Any], Any], reverse: bool, mem_bytes: int,
                  spill_root: str) -> Iterator[Any]:
    """``sorted(records, key, reverse)`` within a memory budget: sorted runs spilled, then merged."""
    budget = Budget(mem_bytes)
    run: list = []
    runs: list[str] = []
    folder: str | None = None
    packer = serialize.Packer("a record being sorted")
    try:
        for record in records:
            run.append(record)
            if len(run) % _CHECK_EVERY == 0 and budget.full_of_records(record):
                if folder is None:
                    os.makedirs(spill_root, exist_ok=True)
                    folder = tempfile.mkdtemp(prefix="sort-", dir=spill_root)
                run.sort(key=key, reverse=reverse)
                path = os.path.join(folder, str(len(runs)))
                # chunks of about _RUN_CHUNK bytes: the merge holds one chunk of every run at once
                step = max(16, min(4096, _RUN_CHUNK // budget.avg))
                write_records(path, run, step, packer)
                runs.append(path)
                run = []
                budget.reset()
        run.sort(key=key, reverse=reverse)
        if not runs:
            yield from run
            return
        runs = _merge_runs(runs, folder, key, reverse, step, packer)   # type: ignore[arg-type]
        yield from heapq.merge(*map(read_records, runs), iter(run), key=key, reverse=reverse)
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)


def records_to_reread(records: Iterable[Any], mem_bytes: int, spill_root: str) -> Iterable[Any]:
    """``records``, to be iterated again and again (a cartesian product's right-hand partition, once for
    each record of its left): a list, or, when they outgrow the memory budget, a :class:`Reread` of them."""
    budget = Budget(mem_bytes)
    held: list = []
    it = iter(records)
    while True:
        block = list(itertools.islice(it, _CHECK_EVERY))
        held += block
        if len(block) < _CHECK_EVERY:
            return held
        if budget.full_of_records(block[-1]):
            break
    step = max(16, min(4096, _REREAD_CHUNK // budget.avg))
    return Reread(_let_go(held, step), it, spill_root, step)


def _let_go(held: list, step: int) -> Iterator[Any]:
    """The records of ``held``, the list emptied a chunk of ``step`` at a time as they are taken (from its
    end, reversed once: cutting chunks off its front would move the rest each time)."""
    held.reverse()
    while held:
        chunk = held[-step:]
        del held[-step:]
        chunk.reverse()
        yield from chunk


_REREAD_CHUNK = 256 << 10      # bytes (estimated) of a chunk of a Reread's file


class Reread:
    """Records packed, in chunks, into a temporary file of no name (closed when the Reread is let go; its
    space goes with it, or with the process), read again from the start at each iteration (by ``pread``:
    two passes at once do not disturb each other)."""

    def __init__(self, first: Iterable[Any], rest: Iterator[Any], spill_root: str, step: int) -> None:
        os.makedirs(spill_root, exist_ok=True)
        self._file = tempfile.TemporaryFile(dir=spill_root)
        weakref.finalize(self, self._file.close)
        packer = serialize.Packer("a record held for a cartesian product")
        try:
            _write_records_to(self._file, itertools.chain(first, rest), step, packer)
            self._file.flush()
        except BaseException:
            self._file.close()
            raise
        self._size = self._file.tell()

    def __iter__(self) -> Iterator[Any]:
        return itertools.chain.from_iterable(self._chunks())

    def _chunks(self) -> Iterator[list]:
        """The file's chunks, from the start (the Reread, and its file, kept open while they are read)."""
        yield from _read_chunks_from(_Range(self._file.fileno(), 0, self._size),  # type: ignore[misc]
                                     "the temporary file of a cartesian product's records")
