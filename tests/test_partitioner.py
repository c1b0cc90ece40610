"""Hash partitioning: a key's partition is the same by get_partition, in the map side's loop, and in every process."""
from __future__ import annotations

import operator
import os
import subprocess
import sys

import pytest

from gopark import SerializationError, pipeline
from gopark.partitioner import HashPartitioner

KEY_LISTS = {
    "ascii": ["w1", "w2", "", "the", "a" * 100],
    "non-ascii": ["été", "日本", "ß", "w1"],
    "lone surrogate": ["ok", "\ud800x", "é"],      # str.encode() refuses it; portable_hash does not
    "ints": [0, 1, -1, 2**70, 12345],
    "mixed": ["a", 1, (1, "b"), None, 2.5, b"x", frozenset({1})],
}


def placed(keys: list, n: int) -> list[int]:
    """The reducer each key goes to when the map side's scatter loop writes the pairs ``(key, i)``."""
    bufs: list[list] = [[] for _ in range(n)]
    pipeline.scatter(((k, i) for i, k in enumerate(keys)), (), bufs, None, HashPartitioner(n),
                     lambda k, v: None, TypeError)
    where = {i: r for r, buf in enumerate(bufs) for i in buf[1::2]}
    return [where[i] for i in range(len(keys))]


@pytest.mark.parametrize("kind", list(KEY_LISTS))
def test_the_scatter_loop_places_each_key_by_get_partition(kind):
    keys = KEY_LISTS[kind]
    for n in (1, 2, 7):
        part = HashPartitioner(n)
        assert placed(keys, n) == [part.get_partition(k) for k in keys]


def test_partitions_do_not_depend_on_the_process_hash_seed():
    keys = KEY_LISTS["ascii"] + KEY_LISTS["non-ascii"] + KEY_LISTS["lone surrogate"] + [(1, "b"), 2**70]
    script = ("import sys; sys.path.insert(0, sys.argv[1]); from test_partitioner import placed; "
              f"print(placed({keys!r}, 13))")
    seen = {subprocess.run([sys.executable, "-c", script, os.path.dirname(__file__)], capture_output=True,
                           text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2", "3")}
    assert len(seen) == 1


def test_keys_with_non_ascii_characters_reduce_by_key(ctx):
    keys = ["été", "b", "日本", "e\u0301"] * 5
    got = ctx.parallelize([(k, 1) for k in keys], 3).reduceByKey(operator.add, 2).collectAsMap()
    assert got == {k: 5 for k in keys}


def test_a_lone_surrogate_is_not_gopark_data(ctx):
    with pytest.raises(SerializationError, match="'\\\\ud800', which is not Unicode"):
        ctx.parallelize([("\ud800a", 1)], 1).collect()


def test_nan_keys_go_to_the_same_partition_in_every_mode_and_run(ctx):
    """hash(nan) is the object's address since Python 3.10, and every NaN read back is a new object."""
    data = [(float("nan"), i) for i in range(40)]
    assert ctx.parallelize(data, 2).partitionByKey(3).glom().map(len).collect() == [40, 0, 0]
