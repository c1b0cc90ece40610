"""Sorting and merging past the memory budget: the spill paths run, and results stay exact."""
from __future__ import annotations

import array
import glob
import itertools
import operator
import os
import random
import sys
import tempfile
from collections.abc import Iterable

import pytest
from apps.funcs import peak_kib, peak_reset

from gopark import Context, SerializationError, pipeline, register_func, shuffle

_RANDOM = random.Random(3)
DATA = [(_RANDOM.randint(0, 10**6) * 7 % 1_000_003, "v" * 60) for _ in range(120_000)]   # ~113k distinct keys


@pytest.fixture
def spills(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The prefixes of the spill folders made in this process (local mode runs tasks here)."""
    made: list[str] = []
    real = tempfile.mkdtemp

    def spying(*args, **kwargs):  # noqa: ANN002, ANN003
        made.append(kwargs.get("prefix") or (args[1] if len(args) > 1 else ""))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", spying)
    return made


@pytest.mark.parametrize("ascending", [True, False])
def test_sort_by_key_larger_than_memory(spills: list[str], ascending: bool) -> None:
    with Context("local", mem=8, quiet=True) as ctx:
        got = ctx.parallelize(DATA, 4).sortByKey(ascending, numSplits=2).collect()
    assert [k for k, _ in got] == sorted((k for k, _ in DATA), reverse=not ascending)
    assert sorted(got) == sorted(DATA)
    assert any(p.startswith("sort-") for p in spills), spills


def test_repartition_and_sort_within_partitions_larger_than_memory(spills: list[str]) -> None:
    with Context("local", mem=8, quiet=True) as ctx:
        parts = ctx.parallelize(DATA, 4).repartitionAndSortWithinPartitions(2).glom().collect()
    assert sorted(kv for part in parts for kv in part) == sorted(DATA)
    assert all([k for k, _ in part] == sorted(k for k, _ in part) for part in parts)
    assert any(p.startswith("sort-") for p in spills), spills


def test_group_by_key_larger_than_memory(spills: list[str]) -> None:
    with Context("local", mem=8, quiet=True) as ctx:
        got = ctx.parallelize(DATA, 4).map(tuple).groupByKey(2).collectAsMap()
    expected: dict[int, list[str]] = {}
    for k, v in DATA:
        expected.setdefault(k, []).append(v)
    assert {k: sorted(v) for k, v in got.items()} == expected
    assert any(p.startswith("spill-") for p in spills), spills


def test_join_and_cogroup_larger_than_memory(spills: list[str]) -> None:
    left = [(i * 7919 % 50_000, "v" * 60 + str(i)) for i in range(120_000)]
    right = [(i * 31 % 70_000, i) for i in range(40_000)]
    with Context("local", mem=8, quiet=True) as ctx:
        left_rdd, right_rdd = ctx.parallelize(left, 4), ctx.parallelize(right, 3)
        joined = left_rdd.join(right_rdd, 2).collect()
        grouped = left_rdd.groupWith(right_rdd, numSplits=2).collectAsMap()
    index: dict[int, list[int]] = {}
    for k, w in right:
        index.setdefault(k, []).append(w)
    assert sorted(joined) == sorted((k, (v, w)) for k, v in left for w in index.get(k, ()))
    keys = {k for k, _ in left} | set(index)
    assert set(grouped) == keys
    assert all(type(groups) is tuple and len(groups) == 2 for groups in grouped.values())
    assert all(sorted(grouped[k][1]) == sorted(index.get(k, [])) for k in keys)
    assert sum(len(vs) for vs, _ in grouped.values()) == len(left)
    assert any(p.startswith("spill-") for p in spills), spills


def test_sort_in_process_mode_with_a_small_budget() -> None:
    with Context("process:2", mem=20, quiet=True) as ctx:
        got = ctx.parallelize(DATA, 4).sortByKey(numSplits=3).keys().collect()
    assert got == sorted(k for k, _ in DATA)


@pytest.mark.parametrize("master", ["local", "process:2"])
@pytest.mark.parametrize("compress", [True, False])
def test_shuffle_buckets_compressed_when_asked(master: str, compress: bool) -> None:
    words = [(f"word{i % 5000}", i) for i in range(60_000)]
    with Context(master, quiet=True, compress=compress) as ctx:
        got = ctx.parallelize(words, 3).groupByKey(2).mapValue(sorted).collectAsMap()
        flags = set()
        for path in glob.glob(os.path.join(ctx.work_dir, "shuffle", "shuffle-*", "[0-9]*")):
            with open(path, "rb") as f:
                for r in range(2):
                    for start, _ in shuffle.bucket_ranges(f.fileno(), r, path):
                        f.seek(start)
                        flags.add(f.read(5)[4])        # a bucket's first chunk's header: length:u32 flags:u8
    expected: dict[str, list[int]] = {}
    for k, v in words:
        expected.setdefault(k, []).append(v)
    assert got == expected
    assert flags == ({1} if compress else {0})


@pytest.mark.parametrize("ascending", [True, False])
def test_sort_merges_many_runs_in_passes(monkeypatch: pytest.MonkeyPatch, ascending: bool) -> None:
    """More sorted runs than are merged at once (2 here): they are merged in passes, and the sort stays
    exact and stable (equal keys keep the order of their records)."""
    from gopark import shuffle
    merged: list[int] = []
    real = shuffle._merge_runs

    def counting(runs, *args):  # noqa: ANN001, ANN002
        merged.append(len(runs))
        return real(runs, *args)

    monkeypatch.setattr(shuffle, "_FAN_IN", 2)
    monkeypatch.setattr(shuffle, "_merge_runs", counting)
    data = [(k % 5_000, f"{i:08d}" + v[8:]) for i, (k, v) in enumerate(DATA)]   # ~24 records a key, in order
    with Context("local", mem=8, quiet=True) as ctx:
        got = ctx.parallelize(data, 4).sortByKey(ascending, numSplits=2).collect()
    assert got == sorted(data, key=lambda kv: kv[0], reverse=not ascending)
    assert merged and max(merged) > 2, merged


@pytest.mark.parametrize("how", ["values", "groups"])
def test_a_reducer_checks_its_budget_after_every_check_every_pairs(tmp_path, how: str) -> None:
    """Raw values (groupByKey without a map-side combine) and cogroup's groups are taken in blocks:
    the budget is looked at after each block of CHECK_EVERY pairs, and after the last one."""
    from gopark import ops, pipeline, shuffle
    n = pipeline.CHECK_EVERY
    pairs = [(i % 300, i) for i in range(2 * n + 7)]
    merger = shuffle.Merger(ops.one_list, ops.append, ops.extend, 1 << 30, str(tmp_path))
    checked: list = []
    merger._check = lambda k, v: checked.append((k, v))     # type: ignore[method-assign]
    if how == "values":
        merger.add_values(iter(pairs))
        expected = {k: [v for kk, v in pairs if kk == k] for k in range(300)}
    else:
        merger.add_to_groups(iter(pairs), 1, 3)
        expected = {k: [[], [v for kk, v in pairs if kk == k], []] for k in range(300)}
    assert merger.data == expected
    assert checked == [pairs[n - 1], pairs[2 * n - 1], pairs[-1]]
    checked.clear()
    merger.add_values(iter([])) if how == "values" else merger.add_to_groups(iter([]), 0, 3)
    assert checked == []


def test_a_merged_dict_is_sent_whole_only_while_none_of_its_pairs_was_taken():
    from gopark import actions
    from gopark.shuffle import MergedItems
    merged = MergedItems([{1: "a", (2, 3): {4}}])
    assert merged.whole() == [{1: "a", (2, 3): {4}}]
    assert actions.decode_stream("collectAsMap", actions._collect(merged, "collectAsMap").data) == merged.parts
    assert next(merged) == (1, "a")
    assert merged.whole() is None
    assert actions.decode_stream("collect", actions._collect(merged, "collect").data) == [((2, 3), {4})]


def test_a_reducers_sub_partitions_are_sent_as_a_dict_each():
    from gopark import actions
    from gopark.shuffle import MergedItems
    parts = [{1: 2, 5: 1}, {}, {2: 7}, {(3, 4): "x"}]
    merged = MergedItems(parts)
    assert merged.whole() is parts
    pieces = actions.decode_stream("collectAsMap", actions._collect(merged, "collectAsMap").data)
    assert [dict(p) for p in pieces] == [p for p in parts if p]
    assert actions.decode_stream("collect", actions._collect(merged, "collect").data) == [(1, 2), (5, 1), (2, 7),
                                                                                     ((3, 4), "x")]
    taken = MergedItems(parts)
    it = iter(taken)
    assert next(it) == (1, 2)
    assert taken.whole() is None
    assert actions.decode_stream("collect", actions._collect(taken, "collect").data) == [(5, 1), (2, 7), ((3, 4), "x")]


def _batch_kinds(stream):
    from gopark import serialize
    return [kind for kind, _ in serialize.unpack_stream([stream])]


def test_a_merged_dict_of_ints_travels_as_two_arrays_of_ints_and_keeps_its_types():
    """A dict whose keys and values are all exactly ints goes as ``["i", [width, keys, values]]`` (no msgpack
    object an int, and no dict in between in the driver); a dict with any other type of key or value, an
    int subclass included, or an int beyond 64 bits, goes as its pairs, and every type comes back."""
    import enum

    from gopark import actions
    from gopark.shuffle import MergedItems

    class Colour(enum.IntEnum):
        RED = 1

    parts = [{1: 2, -5: 1, 7: 0}, {2**40: 3, 4: -2**63}, {True: 1}, {8: False}, {1.0: 2}, {9: 2**64}, {10: 2.5}]
    stream = actions._collect(MergedItems(parts), "collectAsMap").data
    assert _batch_kinds(stream) == ["i", "i", "p", "p", "p", "p", "p"]
    pieces = [dict(p) for p in actions.decode_stream("collectAsMap", stream)]
    assert pieces == parts
    for got, want in zip(pieces, parts):
        assert [(type(k), type(v)) for k, v in got.items()] == [(type(k), type(v)) for k, v in want.items()]
    assert actions.decode_stream("collect", actions._collect(MergedItems(parts[:2]), "collect").data) == \
        [(1, 2), (-5, 1), (7, 0), (2**40, 3), (4, -2**63)]
    for part in ({Colour.RED: 4}, {4: Colour.RED}):      # not passed off as an int: refused, as anywhere
        with pytest.raises(SerializationError, match="subclass of int"):
            actions._collect(MergedItems([{1: 1}, part]), "collectAsMap")


def test_counts_of_int_keys_travel_as_ints_known_without_a_look():
    """A reducer counting int keys by sub-partition knows its dicts hold ints alone (``MergedItems.ints``)."""
    from gopark import actions, shuffle
    from gopark.shuffle import MergedItems

    merger = shuffle.Merger(None, operator.add, operator.add, 1 << 30, "/nonexistent")
    merger.add_combiners(iter([shuffle.Keys(array.array("q", [3, 3, 7, 2**40]), [2, 1, 1])]))
    merged = merger.items()
    assert type(merged) is MergedItems and merged.ints
    stream = actions._collect(merged, "collectAsMap").data
    assert set(_batch_kinds(stream)) == {"i"}
    result = {}
    for piece in actions.decode_stream("collectAsMap", stream):
        result.update(piece)
    assert result == {3: 2, 7: 1, 2**40: 1}


@pytest.mark.parametrize("reducers", [3, 32, 64])
def test_a_reducers_spilled_pairs_spread_over_its_spill_files_whatever_the_partition_count(
        tmp_path, reducers: int) -> None:
    """The keys of one reducer share their hash modulo the partition count: the spill files are chosen by
    other bits of it, so that each holds a part of what spilled and the merge back holds a part at a time
    (with 32 or 64 partitions, every key once went to one file: the whole partition merged at once)."""
    from gopark import ops, shuffle
    merger = shuffle.Merger(ops.one_list, ops.append, ops.extend, 1 << 30, str(tmp_path))
    keys = [k for k in range(64_000) if hash(k) % reducers == 5 % reducers]      # reducer 5's keys
    merger.add_values((k, "v" * 20) for k in keys)
    merger._spill()
    for f in merger._files:
        f.flush()
    sizes = [os.path.getsize(f.name) for f in merger._files]
    assert len(sizes) == 32 and max(sizes) < 2 * sum(sizes) / 32, sizes
    assert sorted(k for k, _ in merger.items()) == keys
    assert not os.path.exists(merger.spill_dir or "")


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_a_map_output_larger_than_what_a_task_holds_is_written_in_segments(master: str) -> None:
    """A map task holds its buckets' packed chunks up to a 16th of its budget, then writes them as one more
    segment of its one file: each reducer reads its byte ranges of every segment, in the order written
    (groupByKey's values keep the order of their map task's records)."""
    rows = [(i % 7, f"{i:07d}" + "x" * 40) for i in range(120_000)]      # about 6 MB
    with Context(master, mem=4, quiet=True) as ctx:                     # holds 256 KiB at most
        got = ctx.parallelize(rows, 2).groupByKey(3).collectAsMap()
        outputs = glob.glob(os.path.join(ctx.work_dir, "shuffle", "shuffle-*", "[0-9]*"))
        assert len(outputs) == 2
        for path in outputs:
            with open(path, "rb") as f:
                f.seek(-shuffle._TRAILER.size, os.SEEK_END)
                _, segments, reducers = shuffle._TRAILER.unpack(f.read())
            assert reducers == 3 and segments > 3, segments
    expected: dict[int, list[str]] = {}
    for k, v in rows:
        expected.setdefault(k, []).append(v)
    assert {k: sorted(v) for k, v in got.items()} == expected
    half = len(rows) // 2           # each map task's values, in its records' order, one task after the other
    assert all(v == [x for kk, x in rows[:half] if kk == k] + [x for kk, x in rows[half:] if kk == k]
               or v == [x for kk, x in rows[half:] if kk == k] + [x for kk, x in rows[:half] if kk == k]
               for k, v in got.items())


def test_a_wide_map_outputs_index_stays_a_small_part_of_it(tmp_path) -> None:
    """Each segment of a map output adds its reducers' offsets to the index (held by the task to its end): a
    segment holds at least 64 times its offsets' bytes, so the index of a shuffle to 20,000 reducers stays a
    small part of the output (written every 512 KiB of an 8 MiB budget, it was 16% of it)."""
    from gopark.partitioner import HashPartitioner
    records = ((i, "x" * 90) for i in range(150_000))
    path, _ = shuffle.write_map_output(records, str(tmp_path), 1, 0, 0, HashPartitioner(20_000), None, None,
                                       8 << 20, False)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        f.seek(-shuffle._TRAILER.size, os.SEEK_END)
        index_start, segments, reducers = shuffle._TRAILER.unpack(f.read())
    assert reducers == 20_000 and segments > 1
    assert size - index_start < size / 32, (segments, size - index_start, size)
    got = sorted(k for r in range(20_000) for chunk in shuffle.read_output(path, r) for k in chunk[::2])
    assert got == list(range(150_000))


def _true_size(obj: object, seen: set[int]) -> int:
    """The bytes ``obj`` and everything it holds take, each object counted once."""
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    inside: Iterable[object] = ()
    if isinstance(obj, dict):
        inside = itertools.chain(obj.keys(), obj.values())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        inside = obj
    return sys.getsizeof(obj) + sum(_true_size(x, seen) for x in inside)


def _nested(i: int, depth: int) -> tuple:
    value: tuple = (f"user{i:07d}", f"some text payload number {i}", i * 1000)
    for _ in range(depth - 1):
        value = (value, f"level {i}")
    return value


@pytest.mark.parametrize("depth", [1, 5])
@pytest.mark.parametrize("op", ["sortBy", "groupByKey"])
def test_what_nested_records_hold_counts_against_the_budget(monkeypatch: pytest.MonkeyPatch, op: str,
                                                             depth: int) -> None:
    """Records whose values are tuples of strings (``depth`` tuples deep): what the strings take counts too,
    so a sort's run (or a reducer's dict) written out when the budget is spent holds about the budget, not
    half as much again."""
    rows = [(f"user{i * 7919 % 100_003:07d}", _nested(i, depth)) for i in range(60_000 // depth)]
    held: list[int] = []
    limits: list[int] = []
    real_full = shuffle.Budget.full

    def full(self: shuffle.Budget, size: int) -> bool:
        limits.append(self.limit)
        return real_full(self, size)

    monkeypatch.setattr(shuffle.Budget, "full", full)
    if op == "sortBy":
        real_write = shuffle.write_records

        def write_records(path: str, records, step: int, packer) -> None:  # noqa: ANN001
            if isinstance(records, list):       # a sorted run (not a merge of runs)
                held.append(_true_size(records, set()))
            real_write(path, records, step, packer)

        monkeypatch.setattr(shuffle, "write_records", write_records)
    else:
        real_spill = shuffle.Merger._spill

        def spill(self: shuffle.Merger) -> None:
            held.append(sum(_true_size(d, set()) for d in self._dicts()))
            real_spill(self)

        monkeypatch.setattr(shuffle.Merger, "_spill", spill)
    with Context("local", mem=8, quiet=True) as ctx:
        rdd = ctx.parallelize(rows, 2)
        if op == "sortBy":
            got = rdd.sortBy(operator.itemgetter(0), numSplits=1).collect()
            assert got == sorted(rows, key=operator.itemgetter(0))
        else:
            got = rdd.groupByKey(1).mapValues(len).collectAsMap()
            assert sum(got.values()) == len(rows) and len(got) == len({k for k, _ in rows})
    assert len(held) >= 2, held
    limit = max(limits)
    # the budget is looked at every CHECK_EVERY records: that many more may come in before it is
    step = pipeline.CHECK_EVERY * _true_size(rows[0], set())
    assert max(held) < 1.2 * limit + step, (held, limit, step)


@register_func
def _listed(v: object) -> list:
    return [v]


def test_combiners_that_grow_count_against_the_budget_and_go_out_in_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """reduceByKey of lists over few keys: no key is new after the first records, but every fold grows a
    list; the map side spills when what its dict holds reaches the budget, and writes each reducer's buffer
    in chunks of a part of what it may hold, not one chunk of it all."""
    rows = [(i % 50, f"{i:06d}" + "x" * 200) for i in range(40_000)]
    held: list[int] = []
    chunks: list[int] = []
    limits: list[int] = []
    real_entries, real_flush, real_payload = shuffle.Budget.full_of_entries, shuffle._Buckets.flush, \
        shuffle._write_payload

    def full_of_entries(self: shuffle.Budget, entries: int, k: object, c: object) -> bool:
        limits.append(self.limit)
        return real_entries(self, entries, k, c)

    def flush(self: shuffle._Buckets) -> None:
        held.append(_true_size(self.bufs, set()))
        real_flush(self)

    def write_payload(f, payload: bytes, flags: int, compress: bool) -> None:  # noqa: ANN001
        chunks.append(len(payload))
        real_payload(f, payload, flags, compress)

    monkeypatch.setattr(shuffle.Budget, "full_of_entries", full_of_entries)
    monkeypatch.setattr(shuffle._Buckets, "flush", flush)
    monkeypatch.setattr(shuffle, "_write_payload", write_payload)
    with Context("local", mem=8, quiet=True) as ctx:
        got = ctx.parallelize(rows, 1).mapValue(_listed).reduceByKey(operator.add, 2).collectAsMap()
    assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v for kk, v in rows if kk == k) for k in range(50)}
    limit = max(limits)
    assert len(held) >= 3 and max(held) < 1.3 * limit, (held, limit)
    assert max(chunks) < limit, (chunks, limit)      # each a part of what the task may hold


def test_values_that_grow_midway_count_at_their_new_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """A partition whose first records are tiny and the rest large: the budget counts the large ones at their
    own size (not at the average of the tiny ones sampled first), and a buffer whose first pairs are tiny is
    still written in chunks of a part of what the task may hold."""
    rows = [(i % 500, f"s{i}" if i < 70_000 else f"{i:09d}" + "y" * 2000) for i in range(80_000)]
    held: list[int] = []
    chunks: list[int] = []
    limits: list[int] = []
    real_full, real_flush, real_payload = shuffle.Budget.full, shuffle._Buckets.flush, shuffle._write_payload

    def full(self: shuffle.Budget, size: int) -> bool:
        limits.append(self.limit)
        return real_full(self, size)

    def flush(self: shuffle._Buckets) -> None:
        held.append(_true_size(self.bufs, set()))
        real_flush(self)

    def write_payload(f, payload: bytes, flags: int, compress: bool) -> None:  # noqa: ANN001
        chunks.append(len(payload))
        real_payload(f, payload, flags, compress)

    monkeypatch.setattr(shuffle.Budget, "full", full)
    monkeypatch.setattr(shuffle._Buckets, "flush", flush)
    monkeypatch.setattr(shuffle, "_write_payload", write_payload)
    with Context("local", mem=64, quiet=True) as ctx:       # (more looks at tiny records than are sampled)
        got = ctx.parallelize(rows, 1).groupByKey(2).mapValue(len).collectAsMap()
    assert got == {k: len(rows) // 500 for k in range(500)}
    limit = max(limits)
    step = pipeline.CHECK_EVERY * _true_size(rows[-1], set())     # what may come in between two looks
    assert max(held) < 1.2 * limit + step, (held, limit, step)
    assert max(chunks) <= shuffle._hold(64 << 20, 2) // 2, chunks    # about a quarter of what it holds


@register_func
def text_row(i: int) -> tuple:
    return (i, f"{i:05d}".ljust(300, "x"), frozenset({i, -i}))


@register_func
def kilobyte_line(i: int) -> str:
    return f"{i:07d}".ljust(1000, "x")


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_a_cartesian_products_right_partition_larger_than_memory_is_read_again_from_disk(
        monkeypatch: pytest.MonkeyPatch, master: str) -> None:
    """The right-hand partition of a cartesian product, read once for each record of the left one, is held
    while it fits the budget, else packed to a file read again at each pass: the pairs are Spark's, in its
    order (each left record with every right one), their types kept."""
    files: list[str] = []
    real = tempfile.TemporaryFile

    def spying(*args, **kwargs):  # noqa: ANN002, ANN003
        files.append(kwargs.get("dir", ""))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", spying)
    left, right = list(range(7)), [text_row(i) for i in range(4000)]      # 1.3 MB on the right
    with Context(master, mem=1, quiet=True) as ctx:
        got = ctx.parallelize(left, 2).cartesian(ctx.parallelize(range(4000), 1).map(text_row)).collect()
        small = ctx.parallelize(left, 2).cartesian(ctx.parallelize(range(100), 1).map(text_row)).collect()
    assert got == [(x, y) for x in left[:3] for y in right] + [(x, y) for x in left[3:] for y in right]
    assert small == [(x, y) for x in left[:3] for y in right[:100]] + [(x, y) for x in left[3:] for y in right[:100]]
    if master == "local":
        assert len(files) == 2 and all("spill" in d for d in files)     # one for each task of the first only


def test_a_cartesian_products_right_partition_larger_than_memory_does_not_grow_the_worker() -> None:
    """80 MB of records on the right of a cartesian product under ``--mem 32``: the worker grows by less
    than the budget (it grew by 80 MB when they were held as a list)."""
    with Context("process:1", mem=32, quiet=True) as ctx:
        before = ctx.parallelize([0], 1).map(peak_reset).collect()[0]
        right = ctx.parallelize(range(80_000), 1).map(kilobyte_line)
        assert ctx.parallelize([1, 2, 3], 1).cartesian(right).count() == 240_000
        grown = ctx.parallelize([0], 1).map(peak_kib).collect()[0] - before
    assert grown < 32 * 1024, f"grew by {grown} KiB"
