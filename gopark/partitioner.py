"""Which reducer a key goes to: hash partitioning and sampled range partitioning.

Python's ``hash`` of a str changes from process to process, so hash
partitioning uses :func:`portable_hash`, the same in the driver and on every
worker: the same pipeline puts the same keys in the same partitions in every
mode.
"""
from __future__ import annotations

import bisect
import contextlib
import operator
import zlib
from collections.abc import Sequence
from typing import Any

_MASK = (1 << 63) - 1

#: the most partitions an RDD may have: Spark's (an int), refused beyond at the call that asks for more
MAX_PARTITIONS = (1 << 31) - 1


def partition_count(value: Any, what: str) -> int | None:
    """A count given to ``what`` (numSplits, numSlices...): None, or a positive int up to MAX_PARTITIONS;
    ValueError for anything else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, not {value!r}")
    if value > MAX_PARTITIONS:
        raise ValueError(f"{what} must be at most {MAX_PARTITIONS} (Spark's limit), not {value}")
    return value


_ENCODE = operator.methodcaller("encode", "utf-8", "surrogatepass")


def portable_hash(x: Any) -> int:
    """A hash of ``x`` that does not depend on the process (unlike ``hash(str)``)."""
    t = type(x)
    if t is str:
        return zlib.crc32(_ENCODE(x))
    if t is int or t is bool:
        return hash(x)
    if t is float:        # hash(nan) is its address since Python 3.10: every NaN alike, as in Spark
        return hash(x) if x == x else 0
    if t is bytes:
        return zlib.crc32(x)
    if t is tuple:
        h = 0x345678
        for item in x:
            h = ((h * 1000003) ^ portable_hash(item)) & _MASK
        return h ^ len(x)
    if x is None:
        return 0
    if t is frozenset:
        h = 0
        for item in x:
            h ^= portable_hash(item)
        return h
    return hash(x) & _MASK


class HashPartitioner:
    """Key ``k`` goes to partition ``portable_hash(k) % n``."""

    def __init__(self, n: int) -> None:
        self.num_partitions = n

    def get_partition(self, key: Any) -> int:
        return portable_hash(key) % self.num_partitions

    def to_wire(self) -> list:
        return ["hash", self.num_partitions]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HashPartitioner) and other.num_partitions == self.num_partitions

    def __hash__(self) -> int:
        return hash(("hash", self.num_partitions))


class RangePartitioner:
    """Keys in sorted ranges: partition ``i`` holds keys between ``bounds[i-1]`` and ``bounds[i]``."""

    def __init__(self, bounds: Sequence[Any], ascending: bool = True, n: int | None = None) -> None:
        self.bounds = list(bounds)
        self.ascending = ascending
        # n: the partitions asked for, when the sample gave fewer bounds (an empty RDD): the last ones are empty
        self.num_partitions = max(n or 0, len(self.bounds) + 1)

    def get_partition(self, key: Any) -> int:
        p = bisect.bisect_left(self.bounds, key)
        return p if self.ascending else len(self.bounds) - p

    def to_wire(self) -> list:
        return ["range", self.bounds, self.ascending, self.num_partitions]

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, RangePartitioner) and other.bounds == self.bounds
                and other.ascending == self.ascending and other.num_partitions == self.num_partitions)

    def __hash__(self) -> int:
        return hash(("range", len(self.bounds), self.ascending))


class FuncPartitioner:
    """Key ``k`` goes to partition ``f(k) % n``, ``f`` a registered function (PySpark's ``partitionFunc``);
    ``ref`` is ``f`` as data (see ``registry.encode_func``), how it travels and is compared."""

    def __init__(self, n: int, ref: list, f: Any = None) -> None:
        self.num_partitions = n
        self.ref = ref
        self._f = f

    def get_partition(self, key: Any) -> int:
        if self._f is None:
            from gopark import registry
            self._f = registry.decode_func(self.ref)
        try:
            p = self._f(key)
        except Exception as exc:        # its own failure, also where no frame of it shows (a builtin: abs)
            if getattr(exc, "gopark_func", None) is None:
                from gopark import registry
                with contextlib.suppress(AttributeError):
                    exc.gopark_func = registry.func_label(self.ref)    # type: ignore[attr-defined]
            raise
        if not isinstance(p, int):
            raise self._not_a_partition(key, p)
        return p % self.num_partitions

    def _not_a_partition(self, key: Any, p: Any) -> TypeError:
        """The error for a partition function that returned ``p``, not an int: its own failure (it names it)."""
        from gopark import registry
        name = registry.func_label(self.ref)
        exc = TypeError(f"the partition function {name} returned {type(p).__name__} {p!r:.80} for "
                        f"key {key!r:.80}: it must return an int")
        exc.gopark_func = name        # type: ignore[attr-defined]  # blamed, not the stage's last function
        return exc

    def to_wire(self) -> list:
        return ["func", self.num_partitions, self.ref]

    def __eq__(self, other: object) -> bool:
        # the references as packed data: ``==`` of the lists would take partial(f, 1) for partial(f, 1.0),
        # which may place keys otherwise (data are equal only with their types)
        return isinstance(other, FuncPartitioner) and other.num_partitions == self.num_partitions \
            and other._packed() == self._packed()

    def _packed(self) -> bytes:
        from gopark import serialize
        return serialize.packb(self.ref, "a partition function")

    def __hash__(self) -> int:
        return hash(("func", self.num_partitions))


class KeyedPartitioner:
    """Partitions by ``key(k)`` instead of ``k`` (sortByKey's keyfunc)."""

    def __init__(self, partitioner: HashPartitioner | RangePartitioner, key: Any) -> None:
        self.partitioner = partitioner
        self.key = key
        self.num_partitions = partitioner.num_partitions

    def get_partition(self, k: Any) -> int:
        return self.partitioner.get_partition(self.key(k))


def range_bounds(sample: list, n: int, what: str) -> list:
    """``n - 1`` bounds that cut the sorted ``sample`` into ``n`` nearly equal ranges (partition ``i``:
    keys up to ``bounds[i]``).

    Bounds repeat when keys do (few distinct keys): the partitions between
    equal bounds are empty, so there are always ``n`` of them, as in PySpark.
    TypeError, saying so (as ``what``'s), for keys that cannot be ordered together.
    """
    if n <= 1 or not sample:
        return []
    try:
        keys = sorted(sample)
    except TypeError as exc:
        raise TypeError(f"{what}: the keys cannot be ordered together ({exc})") from None
    # each bound is the last key of its range: a key equal to it stays in that range (bisect_left), so
    # ten equally frequent keys over ten partitions give one key each
    return [keys[max(0, (i * len(keys)) // n - 1)] for i in range(1, n)]


def from_wire(wire: list) -> HashPartitioner | RangePartitioner | FuncPartitioner:
    """The partitioner ``to_wire`` described."""
    if wire[0] == "hash":
        return HashPartitioner(wire[1])
    if wire[0] == "func":
        return FuncPartitioner(wire[1], wire[2])
    return RangePartitioner(wire[1], wire[2], wire[3])
