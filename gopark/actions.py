"""What an action does with one partition, where the partition is computed.

An action travels as data (``["count"]``, ``["reduce", f]``, ...). A task
applies it to its partition's iterator with :func:`run`; the driver combines
the per-partition results in the RDD method that started the job. ``collect``
packs its records as they come (``STREAM``), so a partition is never held
twice in memory.
"""
from __future__ import annotations

import collections
import heapq
import itertools
import operator
import random
from collections import _count_elements  # type: ignore[attr-defined]  # Counter's C loop
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from gopark import pipeline, registry, serialize, shuffle, stats
from gopark.shuffle import MergedItems, not_a_pair


class Stream:
    """Packed batches of records one after another, ``data`` (the result of ``collect``).

    A batch is ``["p", [k1, v1, k2, v2, ...]]`` when all its records are
    pairs (they are rebuilt with ``zip``, no Python call per record), else
    ``["r", [record, ...]]``; a reducer's whole merged dict is one ``["p", ...]``
    batch, or ``["i", [width, keys, values]]`` when its keys and values are all
    ints (two arrays of ints, see :func:`_pack_dict`). (Not a msgpack map: msgpack
    interns the str keys of a map it reads, one at a time, which takes longer
    than the rest of reading it.) A holder, not a ``bytes`` subclass: the
    bytes go into the task's result as they are, not copied twice more (a
    24 MB result was held four times over).
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


_BATCH = 4096


def all_pairs(batch: list) -> bool:
    """Every record of ``batch`` is a 2-tuple (checked in C, not record by record)."""
    return set(map(type, batch)) == {tuple} and set(map(len, batch)) == {2}


_DICT_ITEM_ITERATOR = type(iter({}.items()))


def _collect(it: Iterable[Any], what: str) -> Stream:
    packer = serialize.Packer(what)
    if type(it) is MergedItems:            # a reduce side's merged dicts
        whole = it.whole()
        if whole is not None:      # their keys came out of the shuffle: data already; their values were made here
            return Stream(b"".join(_pack_dict(part, packer, what, it.ints) for part in whole if part))
        it = iter(it)                      # what is left of their pairs, taken in C below
    if type(it) is _DICT_ITEM_ITERATOR:    # a dict's items: (what is left of) its pairs, in C
        flat = list(itertools.chain.from_iterable(it))
        serialize.check_flat(flat, what)
        return Stream(packer.pack(["p", flat]) if flat else b"")
    out: list[bytes] = []
    it = iter(it)
    while batch := list(itertools.islice(it, _BATCH)):
        if all_pairs(batch):
            flat = list(itertools.chain.from_iterable(batch))
            serialize.check_flat(flat, what)
            out.append(packer.pack(["p", flat]))
        else:
            serialize.check_flat(batch, what)
            out.append(packer.pack(["r", batch]))
    return Stream(b"".join(out))


def _pack_dict(part: dict, packer: serialize.Packer, what: str, ints: bool) -> bytes:
    """One merged dict as one batch: ``["i", [width, keys, values]]`` when its keys and values are all exactly
    ints (``ints``: known to be) that fit one width (packed in C, and read back into the driver's dict
    with no dict in between; counts by int key, typically), else its pairs as one ``["p", ...]`` batch."""
    if ints or (type(next(iter(part))) is int and set(map(type, part)) == _INT
                and set(map(type, part.values())) == _INT):
        packed = shuffle.pack_ints([part, part.values()])
        if packed is not None:
            return packer.pack(["i", [packed[1], *packed[0]]])
    serialize.check_flat(part.values(), what)     # its keys came out of the shuffle: data already
    return packer.pack(["p", list(itertools.chain.from_iterable(part.items()))])


_INT = {int}


def decode_stream(action: str, data: bytes) -> list:
    """Driver: the records of a ``collect`` result; of a ``collectAsMap`` result, its runs of pairs (dicts,
    or iterators of pairs of ints) among lists of the other records, for the caller to merge into its
    dict as each task ends."""
    records: list = []
    pieces: list = []
    for kind, items in serialize.unpack_stream([data]):
        if kind == "i":          # [width, keys, values]
            flag, keys, values = items
            pairs = zip(shuffle.ints_from(keys, flag), shuffle.ints_from(values, flag))   # ints made as taken
            if action == "collectAsMap":
                pieces.append(pairs)
            else:
                records.extend(pairs)
        elif kind == "p":
            pairs = iter(items)
            if action == "collectAsMap":
                try:
                    pieces.append(dict(zip(pairs, pairs)))
                except TypeError as exc:         # an unhashable key
                    raise not_map_pairs(exc) from None
            else:
                records.extend(zip(pairs, pairs))
        elif action == "collectAsMap":
            pieces.append(items)
        else:
            records.extend(items)
    return pieces if action == "collectAsMap" else records


def not_map_pairs(exc: TypeError | ValueError) -> TypeError | ValueError:
    """The error of collectAsMap's dict refusing a record (not a pair, an unhashable key): the same type,
    saying what collectAsMap needs (in the driver, where the dict is built: :func:`decode_stream` and
    the merge of ``RDD.collectAsMap``)."""
    return type(exc)(f"collectAsMap needs (key, value) pairs with hashable keys: {exc}")


_EMPTY = object()


def _sample_keys(n: int, key: Any, it: Iterable[Any]) -> list:
    rng = random.Random(17)
    sample: list = []
    for i, kv in enumerate(it):
        match kv:            # what the shuffle after the sample takes for a pair (see pipeline._unpack)
            case (k, _):
                pass
            case _:
                raise not_a_pair(kv)
        if key is not None:
            k = key(k)
        if i < n:
            sample.append(k)
        else:
            j = rng.randint(0, i)
            if j < n:
                sample[j] = k
    return sample


def _count(it: Iterable[Any]) -> int:
    """How many records ``it`` gives, counted in C (``zip`` with a counter, drained by a ``deque``), a block
    at a time: between two blocks Python runs the signal handlers (a SIGTERM ends a long count in local
    mode); a range's, at once."""
    it = iter(it)
    if type(it) in _RANGE_ITERATORS:
        return it.__length_hint__()          # exact for a range (operator.length_hint stops at 2**63)
    n = 0
    while True:
        counter = itertools.count()
        collections.deque(zip(itertools.islice(it, _COUNT_BLOCK), counter), maxlen=0)  # zip asks islice first
        counted = next(counter)
        n += counted
        if counted < _COUNT_BLOCK:
            return n


_RANGE_ITERATORS = (type(iter(range(0))), type(iter(range(1 << 64))))
_COUNT_BLOCK = 1 << 16


def _count_by(it: Iterable[Any], what: str, needs: str) -> dict:
    """{item: times} of ``it``, counted in C. An item the counting itself cannot take (not a pair for
    countByKey, an unhashable key or record) fails with a TypeError that says what ``what`` ``needs``,
    marked as the action's own (``gopark_action``): no function of the app is blamed."""
    counts: dict = {}
    try:
        _count_elements(counts, it)
    except Exception as exc:
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is None or tb.tb_frame.f_code is not _count_by.__code__:   # raised by the records' own source
            raise
        error = TypeError(f"{what} needs {needs}: {exc}")
        error.gopark_action = what       # type: ignore[attr-defined]
        raise error from exc
    return counts


#: actions that take their partition as an iterator and the per-record operations still to apply
#: (run in one loop with the action's fold: see gopark.pipeline)
FUSED = frozenset({"reduce", "fold", "aggregate"})


def run(action: list, it: Iterator[Any], split: int, attempt: int,
        ops: Sequence[tuple[str, Any]] = ()) -> Any:
    """The result of ``action`` over one partition's records (``it`` passed through ``ops``: FUSED only)."""
    name = action[0]
    f = registry.decode_func(action[-1]) if name in _TAKES_FUNC and action[-1] is not None else None
    if ops and name not in FUSED:
        raise ValueError(f"per-record operations are not fused with {name}")
    if name == "reduce":     # a generated loop, ops or not: a StopIteration from f fails the same way
        acc = pipeline.fold(it, ops, _EMPTY, f, _EMPTY)
        return [] if acc is _EMPTY else [acc]
    if name in ("fold", "aggregate"):
        return pipeline.fold(it, ops, action[1], f, _EMPTY)
    if name in ("collect", "collectAsMap"):
        return _collect(it, name)
    if name == "count":
        return _count(it)
    if name == "take":
        return list(itertools.islice(it, action[1]))
    if name == "top":
        return heapq.nlargest(action[1], it, key=f)
    if name == "bottom":
        return heapq.nsmallest(action[1], it, key=f)
    if name in ("max", "min"):
        first = next(it, _EMPTY)
        if first is _EMPTY:
            return []
        pick = max if name == "max" else min
        return [pick(itertools.chain([first], it), key=f)]
    if name == "sum":
        return sum(it)
    if name == "stats":
        return stats.of_partition(it)
    if name == "sum_count":
        total, n = 0, 0
        for x in it:
            total += x
            n += 1
        return [total, n]
    if name == "foreach":
        for x in it:
            f(x)
        return None
    if name == "foreachPartition":
        made = f(it)
        if made is not None:        # a generator function's body runs as its result is taken (as PySpark)
            try:
                made = iter(made)
            except TypeError:       # a result that is not iterable is dropped
                return None
            collections.deque(made, maxlen=0)
        return None
    if name == "countByKey":
        return _count_by(map(operator.itemgetter(0), it), name, "(key, value) pairs with hashable keys")
    if name == "countByValue":
        return _count_by(it, name, "hashable records")
    if name == "save":
        from gopark.io import text
        return text.write_partition(action[1], split, attempt, it, action[2])
    if name == "checkpoint":
        from gopark.io import checkpoint
        return checkpoint.write_partition(action[1], split, attempt, it)
    if name == "sample_keys":
        return _sample_keys(action[1], f, it)
    raise ValueError(f"unknown action {name!r}")


_TAKES_FUNC = {"reduce", "fold", "aggregate", "top", "bottom", "max", "min", "foreach", "foreachPartition",
               "sample_keys"}


def merge_counts(parts: list[dict]) -> dict:
    """Driver: the sum of per-partition counts, a plain dict (data: it can be broadcast, or bound by a
    partial, where PySpark's ``defaultdict`` could not be)."""
    total: collections.Counter = collections.Counter()
    for p in parts:
        total.update(p)
    return dict(total)
