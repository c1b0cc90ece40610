"""What Spark users reach for beyond SPEC's list: sum, max, min, mean, isEmpty, keyBy, sortBy,
aggregateByKey, foldByKey, stats, takeSample, zipWithUniqueId, randomSplit, histogram, sampleByKey,
reduceByKeyLocally, countApproxDistinct, pipe...

Each against plain Python, in every mode (the ``ctx`` fixture).
"""
from __future__ import annotations

import contextlib
import glob
import operator
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial

import pytest
from apps.procs import alive, children, describe, wait_until

from gopark import Context, JobError, register_func
from gopark.stats import StatCounter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = [7, -3, 12, 0, 5, 12, -8, 4]
WORDS = ["pear", "fig", "banana", "kiwi", "apple"]


@register_func
def neg(x: int) -> int:
    return -x


def test_sum_max_min_mean(ctx: Context) -> None:
    rdd = ctx.parallelize(DATA, 3)
    assert rdd.sum() == sum(DATA)
    assert rdd.max() == max(DATA) and rdd.min() == min(DATA)
    assert rdd.max(key=neg) == min(DATA) and rdd.min(key=neg) == max(DATA)
    assert rdd.mean() == sum(DATA) / len(DATA)
    words = ctx.parallelize(WORDS, 2)
    assert words.max(key=len) == max(WORDS, key=len) and words.min(key=len) == min(WORDS, key=len)


def test_empty_rdd(ctx: Context) -> None:
    empty = ctx.parallelize([], 3)
    assert empty.isEmpty() and not ctx.parallelize([0], 3).isEmpty()
    assert empty.sum() == 0
    for action in (empty.max, empty.min):
        with pytest.raises(ValueError, match="empty"):
            action()
    assert empty.mean() == empty.stats().mean() == 0.0      # Spark's: a StatCounter's mean starts at 0.0
    assert type(empty.mean()) is float


def test_key_by_and_sort_by(ctx: Context) -> None:
    words = ctx.parallelize(WORDS, 2)
    assert words.keyBy(len).collect() == [(len(w), w) for w in WORDS]
    assert words.sortBy(len).collect() == sorted(WORDS, key=len)
    assert words.sortBy(len, ascending=False, numSplits=3).collect() == sorted(WORDS, key=len, reverse=True)
    with pytest.raises(TypeError, match="register_func"):
        words.keyBy(lambda w: w[0])


def test_sample_takes_pysparks_argument_order_too(ctx: Context) -> None:
    rdd = ctx.parallelize(range(1000), 4)
    assert rdd.sample(False, 0.3, 7).collect() == rdd.sample(0.3, False, 7).collect()
    assert rdd.sample(False, 1).collect() == list(range(1000))        # an int fraction, too
    assert rdd.sample(False, 0).collect() == []
    assert rdd.sample(True, 2, 1).collect() == rdd.sample(2, True, 1).collect()
    assert len(rdd.sample(True, 2, 1).collect()) > 1000
    # PySpark's flag as 0 or 1: a fraction of 0 or 1 with a number after it is PySpark's order
    assert rdd.sample(0, 0.3, 7).collect() == rdd.sample(0.3, False, 7).collect()
    assert rdd.sample(1, 0.5, 7).collect() == rdd.sample(0.5, True, 7).collect()
    assert rdd.sample(1, False, 7).count() == 1000 and rdd.sample(0, True, 7).count() == 0     # DPark's order


@register_func
def by_tens(key: int) -> int:
    return key // 10


def test_lookup_reads_only_the_keys_partition_when_the_rdd_has_a_partitioner(ctx: Context) -> None:
    """As Spark's: a shuffle by key put the key in one partition, the one its partitioner gives."""
    data = [(i % 100, i) for i in range(2000)]
    expected = {k: [v for kk, v in data if kk == k] for k in (0, 7, 99)}
    shuffled = {"hash": ctx.parallelize(data, 4).groupByKey(8).flatMapValues(sorted),
                "func": ctx.parallelize(data, 4).partitionBy(8, by_tens),
                "range": ctx.parallelize(data, 4).sortByKey(numPartitions=8),
                "range down": ctx.parallelize(data, 4).sortByKey(False, 8)}
    for how, rdd in shuffled.items():
        read = ctx.accumulator(0)
        counted = rdd.mapPartitionsWithIndex(partition_counter(read), preservesPartitioning=True)
        for key, values in expected.items():
            before = read.value
            assert sorted(counted.lookup(key)) == values, how
            assert read.value - before == 1, how           # one partition read, of 8
        assert counted.lookup(1000) == [] and counted.lookup("no such key") == []
    plain = ctx.parallelize(data, 4)
    read = ctx.accumulator(0)
    assert sorted(plain.mapPartitionsWithIndex(partition_counter(read)).lookup(7)) == expected[7]
    assert read.value == 4                                  # no partitioner: every partition


def test_lookup_of_records_that_are_not_pairs_says_so(ctx: Context) -> None:
    from gopark import JobError
    with pytest.raises(JobError) as info:
        ctx.parallelize([1, 2, 3], 2).lookup(1)
    assert info.value.remote_type == "TypeError"
    # either partition may fail first: [1] or [2, 3]
    assert info.value.remote_message in ("lookup needs (key, value) pairs, got int: 1",
                                         "lookup needs (key, value) pairs, got int: 2")


def partition_counter(acc):
    return partial(count_partition_with_index, acc)


@register_func
def count_partition_with_index(acc, _index, it):
    acc.add(1)
    return it


def test_repartition_coalesce_zip_with_index_take_ordered_lookup(ctx: Context) -> None:
    rdd = ctx.parallelize(list(range(100)), 3)
    again = rdd.repartition(5)
    assert again.getNumPartitions() == 5 and sorted(again.collect()) == list(range(100))
    assert max(again.glom().map(len).collect()) <= 21              # about equal parts
    fewer = rdd.coalesce(2)
    assert fewer.getNumPartitions() == 2 and fewer.collect() == list(range(100))   # order kept
    assert rdd.coalesce(10) is rdd
    assert rdd.coalesce(2, shuffle=True).getNumPartitions() == 2
    assert rdd.zipWithIndex().collect() == [(x, i) for i, x in enumerate(range(100))]
    assert ctx.parallelize(DATA, 3).takeOrdered(3) == sorted(DATA)[:3]
    assert ctx.parallelize(DATA, 3).takeOrdered(2, key=neg) == sorted(DATA, key=neg)[:2]
    pairs = ctx.parallelize([(w[0], w) for w in WORDS], 2)
    assert pairs.lookup("p") == ["pear"] and pairs.lookup("z") == []


@register_func
def singleton(i: int) -> tuple[int, list[int]]:
    return (i % 2, [i])


def test_in_place_changes_downstream_never_reach_a_cached_rdd(ctx: Context) -> None:
    import operator
    cached = ctx.parallelize(range(6), 3).map(singleton).cache()
    before = cached.collect()
    assert sorted(cached.reduceByKey(operator.iadd).collect()) == [(0, [0, 2, 4]), (1, [1, 3, 5])]
    assert cached.collect() == before == [(i % 2, [i]) for i in range(6)]


def test_a_task_producing_a_bytearray_fails_instead_of_changing_its_type(ctx: Context) -> None:
    from gopark import SerializationError
    records = ctx.parallelize([b"ab", b"cd"], 1)
    with pytest.raises(SerializationError, match="bytearray"):
        records.map(bytearray).collect()
    with pytest.raises(SerializationError, match="bytearray"):
        records.keyBy(len).mapValue(bytearray).collect()
    with pytest.raises(SerializationError, match="bytearray"):
        records.map(bytearray).first()
    assert records.map(bytes).collect() == [b"ab", b"cd"]


def test_spark_set_operations_and_groupBy(ctx: Context) -> None:
    """subtract keeps this RDD's repeats, intersection gives each common record once, as Spark's do."""
    left = [1, 2, 2, 3, (4, 5), "x", None, 2 ** 70]
    right = [3, "x", 9, (4, 5), 3]
    a, b = ctx.parallelize(left, 3), ctx.parallelize(right, 2)
    assert sorted(map(repr, a.subtract(b).collect())) == sorted(map(repr, [1, 2, 2, None, 2 ** 70]))
    assert sorted(map(repr, a.intersection(b, 4).collect())) == sorted(map(repr, [3, (4, 5), "x"]))
    assert a.subtract(ctx.parallelize([], 1)).count() == len(left)
    pairs = ctx.parallelize([("a", 1), ("b", 2), ("a", 3), ("c", 4)], 2)
    assert sorted(pairs.subtractByKey(ctx.parallelize([("b", 0), ("z", 1)], 1)).collect()) == [
        ("a", 1), ("a", 3), ("c", 4)]
    words = ctx.parallelize(["a", "bb", "cc", "d", "eee"], 2)
    assert sorted((k, sorted(v)) for k, v in words.groupBy(len, 3).collect()) == [
        (1, ["a", "d"]), (2, ["bb", "cc"]), (3, ["eee"])]
    assert pairs.partitionBy(2).glom().collect() == pairs.partitionByKey(2).glom().collect()
    for builtin_hash in (hash, partial(hash), operator.methodcaller("__hash__")):     # however it is wrapped
        with pytest.raises(TypeError, match="builtin hash of a str .* leave partitionFunc out"):
            pairs.partitionBy(2, builtin_hash)
    with pytest.raises(TypeError, match="register_func"):
        words.groupBy(lambda w: w[0])
    with pytest.raises(TypeError, match="subtract takes RDDs"):
        a.subtract([1, 2])


@register_func
def add_to_set(acc: set, v: object) -> set:
    acc.add(v)
    return acc


@register_func
def union_sets(a: set, b: set) -> set:
    return a | b


@register_func
def append_value(acc: list, v: object) -> list:
    acc.append(v)          # in place: every key must start from its own copy of the zero value
    return acc


@register_func
def concat_lists(a: list, b: list) -> list:
    return a + b


PAIRS = [(i % 7, i % 5) for i in range(200)] + [("s", (1, 2)), ("s", (1, 2)), ("t", b"x")]


def test_aggregate_by_key_and_fold_by_key(ctx: Context) -> None:
    import operator
    rdd = ctx.parallelize(PAIRS, 4)
    expected: dict = {}
    for k, v in PAIRS:
        expected.setdefault(k, set()).add(v)
    got = dict(rdd.aggregateByKey(set(), add_to_set, union_sets, 3).collect())
    assert got == expected and all(type(s) is set for s in got.values())
    lists = dict(rdd.aggregateByKey([], append_value, concat_lists).collect())
    assert {k: sorted(map(repr, vs)) for k, vs in lists.items()} == \
        {k: sorted(repr(v) for kk, v in PAIRS if kk == k) for k in expected}
    ints = ctx.parallelize([p for p in PAIRS if type(p[0]) is int], 4)
    sums: dict = {}
    for k, v in PAIRS:
        if type(k) is int:
            sums[k] = sums.get(k, 0) + v
    assert dict(ints.foldByKey(0, operator.add).collect()) == sums
    assert ints.foldByKey(0, operator.add, 2).getNumPartitions() == 2


def test_aggregate_by_key_refuses_bad_input_at_the_call(ctx: Context) -> None:
    import operator

    from gopark import SerializationError
    rdd = ctx.parallelize(PAIRS, 2)
    with pytest.raises(TypeError, match="register_func"):
        rdd.aggregateByKey(0, lambda a, v: a, operator.add)
    with pytest.raises(TypeError, match="RDD.foldByKey"):
        rdd.foldByKey(0, lambda a, b: a)
    with pytest.raises(SerializationError, match="zeroValue of RDD.aggregateByKey"):
        rdd.aggregateByKey(object(), operator.add, operator.add)


def test_stats_and_variances(ctx: Context) -> None:
    import math
    import statistics
    data = [3.5, -2, 7, 7, 0, 12.25, 1, -9, 4]
    rdd = ctx.parallelize(data, 4)
    s = rdd.stats()
    assert s.count() == len(data) and s.max() == max(data) and s.min() == min(data)
    assert math.isclose(s.mean(), statistics.fmean(data)) and math.isclose(s.sum(), sum(data))
    assert math.isclose(s.variance(), statistics.pvariance(data))
    assert math.isclose(s.sampleVariance(), statistics.variance(data))
    assert math.isclose(rdd.stdev(), statistics.pstdev(data))
    assert math.isclose(rdd.sampleStdev(), statistics.stdev(data))
    assert math.isclose(rdd.variance(), statistics.pvariance(data))
    assert math.isclose(rdd.sampleVariance(), statistics.variance(data))
    # partitions with no record merge as nothing
    assert ctx.parallelize([5], 3).stats().asDict(sample=True) == {
        "count": 1, "mean": 5.0, "sum": 5.0, "min": 5.0, "max": 5.0, "stdev": 0.0, "variance": 0.0}
    as_dict = ctx.parallelize([1.0, 2.0, 3.0, 4.0], 2).stats().asDict()     # PySpark's default: the sample ones
    assert math.isclose(as_dict["stdev"], statistics.stdev([1, 2, 3, 4]))
    assert math.isclose(as_dict["variance"], statistics.variance([1, 2, 3, 4]))
    assert StatCounter(None).count() == 0
    with pytest.raises(TypeError, match="mergeStats takes a StatCounter, not list"):
        StatCounter([1.0]).mergeStats([2.0])
    empty = ctx.parallelize([], 2).stats()
    assert empty.count() == 0 and math.isnan(empty.variance()) and math.isnan(empty.sampleStdev())
    assert repr(ctx.parallelize([1, 2, 3, 4], 2).stats()) == \
        "(count: 4, mean: 2.5, stdev: 1.118033988749895, max: 4.0, min: 1.0)"
    assert [type(v) for v in (s.max(), s.min(), rdd.stats().max())] == [float] * 3   # PySpark's with numpy


def test_stat_counter_merges() -> None:
    import statistics

    from gopark.stats import StatCounter
    a, b = StatCounter([1, 2, 3]), StatCounter([10, 20])
    both = a.copy().mergeStats(b).merge(5)
    assert both.count() == 6 and both.max() == 20 and both.min() == 1
    assert abs(both.variance() - statistics.pvariance([1, 2, 3, 10, 20, 5])) < 1e-9
    assert a.count() == 3          # copy() kept it apart


class SparkStatCounter:
    """Spark's StatCounter's arithmetic (its Scala and PySpark's), written out: what gopark's must give to the bit."""

    def __init__(self, values: list) -> None:
        self.n, self.mu, self.m2 = 0, 0.0, 0.0
        for v in values:
            delta = v - self.mu
            self.n += 1
            self.mu += delta / self.n
            self.m2 += delta * (v - self.mu)

    def merge_stats(self, other: SparkStatCounter) -> SparkStatCounter:
        if self.n == 0:
            self.n, self.mu, self.m2 = other.n, other.mu, other.m2
        elif other.n:
            delta, n = other.mu - self.mu, self.n + other.n
            if other.n * 10 < self.n:
                self.mu = self.mu + (delta * other.n) / n
            elif self.n * 10 < other.n:
                self.mu = other.mu - (delta * self.n) / n
            else:
                self.mu = (self.mu * self.n + other.mu * other.n) / n
            self.m2 += other.m2 + (delta * delta * self.n * other.n) / n
            self.n = n
        return self


@pytest.mark.parametrize("slices", [1, 3, 7, 40])
def test_stats_are_sparks_to_the_last_bit_on_ill_conditioned_data(ctx: Context, slices: int) -> None:
    data = [0.1 * i + 1e-3 * (i % 7) for i in range(1, 1000)] + [1e16, 1.0, -1e16] + [0.3] * 5
    rdd = ctx.parallelize(data, slices)
    expected = SparkStatCounter([])
    for part in rdd.glom().collect():
        expected.merge_stats(SparkStatCounter(part))
    got = rdd.stats()
    assert (got.count(), got.mean(), got.variance()) == (expected.n, expected.mu, expected.m2 / expected.n)
    one_by_one = StatCounter()
    for x in data[:500]:
        one_by_one.merge(x)
    whole = SparkStatCounter(data[:500])
    assert (one_by_one.mean(), one_by_one.variance()) == (whole.mu, whole.m2 / whole.n)
    assert (one_by_one.max(), one_by_one.min()) == (max(data[:500]), min(data[:500]))


def test_take_sample(ctx: Context) -> None:
    rdd = ctx.parallelize(range(1000), 4)
    got = rdd.takeSample(False, 50, seed=7)
    assert len(got) == 50 == len(set(got)) and set(got) <= set(range(1000))
    assert got == rdd.takeSample(False, 50, seed=7)          # a seed gives the same sample
    with_rep = rdd.takeSample(True, 2000, seed=3)
    assert len(with_rep) == 2000 and set(with_rep) <= set(range(1000)) and len(set(with_rep)) < 2000
    small = ctx.parallelize(range(10), 3)
    everything = small.takeSample(False, 25, seed=1)
    assert sorted(everything) == list(range(10))
    assert small.takeSample(False, 0) == [] and ctx.parallelize([], 2).takeSample(True, 5) == []
    with pytest.raises(ValueError, match="num cannot be greater than"):
        small.takeSample(False, sys.maxsize)         # PySpark's bound, before any job
    with pytest.raises(ValueError, match="takeSample"):
        small.takeSample(False, -1)


def test_tree_reduce_tree_aggregate_range_and_empty_rdd(ctx: Context) -> None:
    import operator
    assert ctx.range(10).collect() == list(range(10))
    assert ctx.emptyRDD().collect() == [] and ctx.emptyRDD().isEmpty() and ctx.emptyRDD().count() == 0
    assert ctx.emptyRDD().getNumPartitions() == 0 and ctx.union([]).getNumPartitions() == 0     # as Spark's
    assert ctx.emptyRDD().reduceByKey(operator.add).collect() == [] and ctx.emptyRDD().fold(0, operator.add) == 0
    assert ctx.emptyRDD().union(ctx.range(3)).collect() == [0, 1, 2] and ctx.emptyRDD().take(2) == []
    assert ctx.range(3, 20, 4, numSlices=3).glom().collect() == [[3], [7, 11], [15, 19]]
    rdd = ctx.range(1, 101, numSlices=4)
    assert rdd.treeReduce(operator.add) == 5050 and rdd.treeReduce(operator.add, depth=3) == 5050
    assert rdd.treeAggregate(0, operator.add, operator.add) == 5050
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="depth"):
            rdd.treeReduce(operator.add, depth=bad)
        with pytest.raises(ValueError, match="depth"):
            rdd.treeAggregate(0, operator.add, operator.add, depth=bad)


def test_zip_with_unique_id(ctx: Context) -> None:
    rdd = ctx.parallelize(WORDS * 3, 4)
    got = rdd.zipWithUniqueId().collect()
    assert [w for w, _ in got] == WORDS * 3
    ids = [i for _, i in got]
    assert len(set(ids)) == len(ids)
    parts = rdd.glom().collect()
    assert ids == [k * 4 + p for p, part in enumerate(parts) for k in range(len(part))]


def test_random_split(ctx: Context) -> None:
    rdd = ctx.parallelize(range(4000), 4)
    parts = rdd.randomSplit([1, 2, 1], seed=11)
    got = [p.collect() for p in parts]
    assert sorted(x for g in got for x in g) == list(range(4000))        # each record in exactly one
    assert 800 < len(got[0]) < 1200 and 1800 < len(got[1]) < 2200 and 800 < len(got[2]) < 1200
    assert [p.collect() for p in rdd.randomSplit([1, 2, 1], seed=11)] == got     # a seed, the same split
    assert [p.count() for p in rdd.randomSplit([0, 1], seed=3)] == [0, 4000]
    for bad in ([], [0, 0], [-1, 2], ["a"], [float("inf"), 1], [float("nan"), 1], [1e308, 1e308]):
        with pytest.raises(ValueError, match="randomSplit"):
            rdd.randomSplit(bad)


def _histogram(records: list, bounds: list) -> list[int]:
    """The reference: each record's bucket found by a plain scan."""
    counts = [0] * (len(bounds) - 1)
    for x in records:
        if x is None or x != x:
            continue
        for i in range(len(counts)):
            last = i == len(counts) - 1
            if bounds[i] <= x < bounds[i + 1] or (last and x == bounds[-1]):
                counts[i] += 1
                break
    return counts


def test_histogram(ctx: Context) -> None:
    records = [x * 7 % 101 - 20 for x in range(500)] + [None, float("nan")]
    rdd = ctx.parallelize(records, 4)
    numbers = [x for x in records if x is not None and x == x]
    for n in (1, 2, 7, 10):
        bounds, counts = rdd.histogram(n)
        assert bounds[0] == min(numbers) and bounds[-1] == max(numbers) and len(bounds) == n + 1
        assert counts == _histogram(records, bounds) and sum(counts) == len(numbers)
    assert rdd.histogram(4) == ([-20, 5, 30, 55, 80], _histogram(records, [-20, 5, 30, 55, 80]))  # ints stay ints
    for given in ([0, 10, 50], (-100, 0.5, 200), [0.0, 0.1, 0.2, 0.3]):
        assert rdd.histogram(given) == (given, _histogram(records, list(given)))      # the bounds as given
    floats = ctx.parallelize([0.0, 0.1, 0.2, 0.3, 0.25, 0.31], 2)
    assert floats.histogram([0, 0.1, 0.2, 0.3]) == ([0, 0.1, 0.2, 0.3], [1, 1, 3])
    assert ctx.parallelize([3, 3, 3], 2).histogram(5) == ([3, 3], [3])
    for bad, kind in ((0, ValueError), ([1], ValueError), ([2, 1], ValueError), ([1, 1, 2], ValueError),
                      ([0, None], ValueError), ([0, float("nan")], ValueError), ("ab", TypeError)):
        with pytest.raises(kind, match="histogram"):
            rdd.histogram(bad)
    with pytest.raises(ValueError, match="empty"):
        ctx.parallelize([None], 2).histogram(3)
    # as PySpark: one bucket, or all records equal, needs no arithmetic (strings, ints beyond floats)
    assert ctx.parallelize([0, 2**1100], 2).histogram(1) == ([0, 2**1100], [2])
    assert ctx.parallelize(["b", "a"], 2).histogram(1) == (["a", "b"], [2])
    assert ctx.parallelize(["a", "a"], 2).histogram(3) == (["a", "a"], [2])
    for values in (["a", "b"], [0, 2**1100]):          # else: said in the driver, no task fails
        with pytest.raises(TypeError, match="histogram: cannot make 2 evenly spaced buckets"):
            ctx.parallelize(values, 2).histogram(2)


def test_count_approx_distinct(ctx: Context) -> None:
    records = [x % 37 for x in range(1000)] + ["a", "a", (1, 2)]
    assert ctx.parallelize(records, 4).countApproxDistinct() == len(set(records))
    assert ctx.parallelize(records, 4).countApproxDistinct(0.01) == len(set(records))
    with pytest.raises(ValueError, match="relativeSD"):
        ctx.parallelize(records, 4).countApproxDistinct(0)


@register_func
def longer(a: str, b: str) -> str:
    return a if len(a) >= len(b) else b


def test_reduce_by_key_locally(ctx: Context) -> None:
    pairs = [(w[0], w) for w in WORDS * 3] + [(1, "x"), (1.0, "yy")]
    expected: dict = {}
    for k, v in pairs:
        expected[k] = longer(expected[k], v) if k in expected else v
    got = ctx.parallelize(pairs, 3).reduceByKeyLocally(longer)
    assert got == expected and [type(k) for k in got] == [type(k) for k in expected]
    assert ctx.parallelize([], 3).reduceByKeyLocally(longer) == {}
    with pytest.raises(TypeError, match="register_func"):
        ctx.parallelize(pairs).reduceByKeyLocally(lambda a, b: a)
    with pytest.raises(Exception, match="pairs"):
        ctx.parallelize([1, 2], 2).reduceByKeyLocally(longer)


def test_sample_by_key(ctx: Context) -> None:
    pairs = ctx.parallelize([(k, i) for k in "abc" for i in range(3000)], 4)
    fractions = {"a": 0.1, "b": 0.5, "c": 0.0}
    got = pairs.sampleByKey(False, fractions, seed=7).collect()
    assert got == pairs.sampleByKey(False, fractions, seed=7).collect()        # a seed, the same sample
    by_key = {k: [v for kk, v in got if kk == k] for k in "abc"}
    assert 200 < len(by_key["a"]) < 400 and 1350 < len(by_key["b"]) < 1650 and by_key["c"] == []
    assert all(len(set(vs)) == len(vs) for vs in by_key.values())             # without replacement: once each
    again = pairs.sampleByKey(True, {"a": 2.0, "b": 0.5, "c": 1.0}, seed=7).collect()
    counts = {k: sum(1 for kk, _ in again if kk == k) for k in "abc"}
    assert 5400 < counts["a"] < 6600 and 1300 < counts["b"] < 1700 and 2700 < counts["c"] < 3300
    for bad in ({"a": 1.5}, {"a": -0.1}, {"a": "x"}, [("a", 0.5)]):
        with pytest.raises(ValueError, match="sampleByKey"):
            pairs.sampleByKey(False, bad)
    with pytest.raises(Exception, match="no fraction given for the key 'c'"):
        pairs.sampleByKey(False, {"a": 0.5, "b": 0.5}).collect()


def test_context_name_and_debug_string(ctx: Context) -> None:
    base = ctx.parallelize(range(10), 2)
    assert base.context is ctx
    assert base.name() is None and base.setName("numbers") is base and base.name() == "numbers"
    counted = base.map(neg).cache().keyBy(neg).reduceByKey(longer, 3)
    lines = counted.toDebugString().splitlines()
    assert lines[0].startswith("(3) ShuffledRDD[") and "reduceByKey at " in lines[0]
    assert lines[1].startswith(" +-(2) PipedRDD[") and "keyBy at " in lines[1]
    assert lines[2].startswith("    |  PipedRDD[") and "map at " in lines[2] and lines[2].endswith("[cached]")
    assert lines[3].startswith("    |  ParallelCollection[") and lines[3].endswith("(numbers)")
    assert len(lines) == 4


@register_func
def refuse_to_merge(a: int, b: int) -> int:
    raise ValueError(f"no merge of {a} and {b}")


def test_reduce_by_key_locally_a_failing_merge_in_the_driver_is_a_job_error(ctx: Context) -> None:
    """One value of the key a partition: only the driver merges, and its failure is a JobError, as reduce's."""
    from gopark import JobError
    with pytest.raises(JobError, match="reduceByKeyLocally: merging the partitions' results in the driver failed"):
        ctx.parallelize([("a", 1), ("a", 2)], 2).reduceByKeyLocally(refuse_to_merge)


def test_iterating_an_rdd_gives_its_records_as_dparks(ctx: Context) -> None:
    records = list(range(1000))
    rdd = ctx.parallelize(records, 10)
    assert [x for x in rdd] == records and 999 in rdd and -1 not in rdd
    assert list(ctx.parallelize([], 3)) == []
    with pytest.raises(TypeError, match="parallelize takes a sequence of records, not ParallelCollection"):
        ctx.parallelize(rdd)          # not collected behind the user's back


def test_to_local_iterator_runs_a_job_a_partition_as_it_is_read(ctx: Context) -> None:
    rdd = ctx.parallelize(range(10), 4)
    assert list(rdd.toLocalIterator()) == list(range(10))
    assert list(ctx.parallelize([], 3).toLocalIterator()) == []
    jobs = []
    it = rdd.map(str).toLocalIterator()
    real = ctx.runJob

    def counted(*args, **kwargs):
        jobs.append(args[2] if len(args) > 2 else kwargs.get("partitions"))
        return real(*args, **kwargs)
    ctx.runJob = counted
    try:
        assert next(it) == "0" and jobs == [[0]]
        assert list(it) == [str(i) for i in range(1, 10)] and jobs == [[0], [1], [2], [3]]
    finally:
        del ctx.runJob


@register_func
def count_into(acc: object, x: object) -> object:
    acc.add(1)      # type: ignore[attr-defined]
    return x


def test_pipe_sends_each_record_as_a_line_and_gives_the_lines_printed(ctx: Context) -> None:
    records = ["b", "a", 3, b"raw\n", "with\n", ("t", 1), "é"]
    assert ctx.parallelize(records, 1).pipe("cat").collect() == ["b", "a", "3", "raw", "with", "('t', 1)", "é"]
    # a partition at a time: each partition's lines sorted on their own
    assert ctx.parallelize(["d", "c", "b", "a"], 2).pipe(["sort"]).glom().collect() == [["c", "d"], ["a", "b"]]
    assert ctx.parallelize(range(5), 2).pipe("wc -l").map(int).collect() == [2, 3]
    assert ctx.parallelize([], 2).pipe("cat").collect() == []
    many = ctx.parallelize(range(200_000), 3)            # more than a pipe's buffer each way
    assert many.pipe("cat").map(int).collect() == list(range(200_000))


def test_pipe_env_exit_codes_and_commands_that_stop_reading(ctx: Context) -> None:
    one = ctx.parallelize([1], 1)
    assert one.pipe(["sh", "-c", "echo $PIPE_TEST; exit 3"], env={"PIPE_TEST": "x y"}).collect() \
        == ["x y"]                                        # an exit code is ignored unless checkCode
    # the app's environment, the same in every mode: not a worker's own variables (its role, the driver's
    # token, the driver's sys.path as PYTHONPATH); in a worker, only its mark, by which what the command
    # starts is ended once the worker is gone
    shown = one.pipe(["sh", "-c", "env | grep '^GOPARK_' | grep -vc '^GOPARK_PIPE_MARK=' || true; "
                                  "echo \"${PYTHONPATH-unset}\""]).collect()
    assert shown == ["0", os.environ.get("PYTHONPATH", "unset")]
    with pytest.raises(JobError, match="RuntimeError: pipe: .*exited with code 3"):
        one.pipe("sh -c 'exit 3'", checkCode=True).collect()
    # head stops reading after 2 lines: the rest of the partition is not wanted, the task does not fail
    assert ctx.parallelize(range(300_000), 2).pipe("head -n 2", checkCode=True).collect() == \
        ["0", "1", "150000", "150001"]
    assert ctx.parallelize(range(10), 2).pipe("cat").take(3) == ["0", "1", "2"]


def test_pipe_records_are_computed_in_the_task_so_their_accumulator_updates_count(ctx: Context) -> None:
    acc = ctx.accumulator(0)
    assert ctx.parallelize(range(1000), 4).map(partial(count_into, acc)).pipe("cat").count() == 1000
    assert acc.value == 1000


def test_pipe_refuses_bad_arguments_at_the_call(ctx: Context) -> None:
    rdd = ctx.parallelize([1], 1)
    for bad in (3, ["ls", 3], None):
        with pytest.raises(TypeError, match="pipe: command"):
            rdd.pipe(bad)
    with pytest.raises(ValueError, match="pipe: command is empty"):
        rdd.pipe("  ")
    with pytest.raises(TypeError, match="pipe: env"):
        rdd.pipe("cat", env={"A": 1})
    with pytest.raises(TypeError, match="pipe: checkCode is True or False"):
        rdd.pipe("cat", checkCode="yes")


# a pipe's command writes its pid ($0: the file, written whole), then runs long: its shell waits for a sleep
LONG_COMMAND = 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0"; sleep 60; cat'


def _ppid(pid: int) -> int | None:
    """The parent of ``pid`` (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    return int(data[data.rfind(")") + 2:].split()[1])


def _children_of(pid: int) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _ppid(int(p)) == pid]


def _end_command(pid: int | None) -> None:
    """End what is left of a LONG_COMMAND whose shell was ``pid``: it leads a process group of its own (see
    ``ops.pipe_lines``), which its sleep stays in even once the shell is gone, and whose id no new process
    takes while one of them lives."""
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _pid_in(path) -> int | None:
    return int(path.read_text()) if path.exists() else None


def test_a_pipe_command_dies_with_a_worker_killed_outright(tmp_path) -> None:
    """SIGKILL (or the OOM killer) ends no task, so no ``finally`` ends the command: the kernel does, as its
    parent dies (it has a process group of its own, which the worker's death does not reach); and the pool
    ends what the command started (by the worker's mark in their environment), which the kernel does not."""
    pid_file = tmp_path / "command.pid"
    errors: list[BaseException] = []

    def job(rdd) -> None:
        try:
            rdd.collect()
        except BaseException as exc:        # noqa: BLE001  # looked at by the test's thread
            errors.append(exc)

    command = None
    with Context("process:1", quiet=True, max_failures=1) as ctx:
        running = threading.Thread(target=job, args=(ctx.parallelize(["x"], 1).pipe(
            ["sh", "-c", LONG_COMMAND, str(pid_file)]),))
        running.start()
        try:
            assert wait_until(pid_file.exists, timeout=60), "the command did not start"
            command = _pid_in(pid_file)
            worker = _ppid(command)
            assert worker in children(), f"the command's parent {worker} is not a worker of this test's"
            assert wait_until(lambda: _children_of(command), timeout=10), "the command's sleep did not start"
            started = _children_of(command)           # the sleep: it reads no pipe, and ignores its parent's end
            os.kill(worker, signal.SIGKILL)
            assert wait_until(lambda: not alive(command), timeout=5), \
                f"the command outlived its worker: {describe({command})}"
            assert wait_until(lambda: not any(alive(p) for p in started), timeout=5), \
                f"what the command started outlived its worker: {describe(set(started))}"
        finally:
            _end_command(command or _pid_in(pid_file))
            running.join(timeout=60)
    assert not running.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], JobError) and "TaskLost" in str(errors[0]), errors


@register_func
def start_detached(seconds: int) -> int:
    return subprocess.Popen(["sleep", str(seconds)], start_new_session=True).pid


def test_what_a_piped_command_left_running_ends_with_the_pool(tmp_path) -> None:
    """A command that starts a process of its own session (``setsid``, a daemon) and exits: the task ends, the
    process runs on; the pool's stop ends it (by the worker's mark in its environment), nothing else."""
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)      # not the pool's: left alone
    own = None
    try:
        with Context("process:2", quiet=True) as ctx:
            (started,) = ctx.parallelize(["x"], 1).pipe(
                ["sh", "-c", "setsid sleep 60 >/dev/null 2>&1 < /dev/null & echo $!"]).collect()
            left = int(started)
            assert alive(left)                     # the job is done, the daemon runs on
            # what a function of the app starts itself is its own business: not marked, never ended
            (own,) = ctx.parallelize([60], 1).map(start_detached).collect()
        assert wait_until(lambda: not alive(left), timeout=5), f"it outlived the pool: {describe({left})}"
        assert other.poll() is None and alive(own)
    finally:
        other.kill()
        other.wait()
        if own is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(own, signal.SIGKILL)


LOCAL_DRIVER = """
import sys, threading
from gopark import Context

def job(ctx):
    ctx.parallelize(["x"], 1).pipe(["sh", "-c", sys.argv[3], sys.argv[1]]).collect()

with Context("local", quiet=True) as ctx:
    if sys.argv[2] == "job thread":         # local tasks run in the thread that runs the job
        runs = threading.Thread(target=job, args=(ctx,))
        runs.start()
        runs.join()
    else:
        job(ctx)
"""


@pytest.mark.parametrize("where", ["main thread", "job thread"])
def test_a_pipe_command_dies_with_a_local_driver_killed_outright(tmp_path, where: str) -> None:
    """Local mode runs the command from the driver's thread that runs the job: SIGKILL ends the driver,
    every thread of it, and with it the command."""
    pid_file = tmp_path / "command.pid"
    with open(tmp_path / "stderr", "wb") as stderr:
        driver = subprocess.Popen([sys.executable, "-c", LOCAL_DRIVER, str(pid_file), where, LONG_COMMAND],
                                  stdout=subprocess.DEVNULL, stderr=stderr,
                                  env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                                      [ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])))
    command = None
    try:
        assert wait_until(lambda: pid_file.exists() or driver.poll() is not None, timeout=60) \
            and pid_file.exists(), (tmp_path / "stderr").read_text()
        command = _pid_in(pid_file)
        assert _ppid(command) == driver.pid
        driver.kill()
        driver.wait(timeout=30)
        assert wait_until(lambda: not alive(command), timeout=5), \
            f"the command outlived its driver: {describe({command})}"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        _end_command(command or _pid_in(pid_file))
        for folder in glob.glob(os.path.join(tempfile.gettempdir(), f"gopark-{driver.pid}-*")):
            shutil.rmtree(folder, ignore_errors=True)        # a killed driver could not remove its own


def test_a_pipe_run_by_a_thread_that_ends_is_not_cut_short(ctx: Context) -> None:
    """The kernel ties the command's death to the thread that started it: a job run by a thread of the
    app's (which runs local tasks, and their commands) ends, and the thread after it, without harm."""
    got: list = []
    runs = threading.Thread(target=lambda: got.append(
        ctx.parallelize(range(4), 2).pipe(["sh", "-c", "sleep 0.2; cat"], checkCode=True).collect()))
    runs.start()
    runs.join(timeout=60)
    assert got == [["0", "1", "2", "3"]]
    assert ctx.parallelize(range(4), 2).pipe("cat", checkCode=True).collect() == ["0", "1", "2", "3"]


def test_an_rdd_id_is_an_int_as_in_dpark_and_can_be_called_as_in_pyspark(ctx: Context) -> None:
    a, b = ctx.parallelize([1], 1), ctx.parallelize([1], 1).map(neg)
    assert isinstance(a.id, int) and a.id() == a.id and type(a.id()) is int
    assert b.id() != a.id() and len({a.id, b.id}) == 2
    assert b.cache().count() == 1 and b.count() == 1      # ids travel as plain ints (cached partitions too)
    # as data too, as the plain int it was
    assert ctx.parallelize([a.id], 1).map(neg).collect() == [-a.id] and ctx.broadcast({"id": b.id}).value["id"] == b.id
    assert type(ctx.parallelize([a.id], 1).collect()[0]) is int


@register_func
def pair_with_itself(x: int) -> tuple:
    return (x, x)


@register_func
def partition_name(key: int) -> str:
    return f"p{key}"          # an app's bug: not a partition number


def test_a_partition_function_that_returns_no_int_is_blamed_for_it(ctx: Context) -> None:
    """Not the map function before it (whose loop the partition function's result failed in)."""
    with pytest.raises(JobError) as info:
        ctx.parallelize(range(6), 2).map(pair_with_itself).partitionBy(3, partition_name).collect()
    assert info.value.func_name.endswith("partition_name")
    assert "the partition function" in info.value.remote_message and "returned str 'p" in info.value.remote_message


@register_func
def salted_partition(salt: object, key: int) -> int:
    import zlib
    return zlib.crc32(f"{salt}|{key}".encode())      # 1 and 1.0 place keys apart


def test_partition_functions_with_arguments_equal_but_of_other_types_are_other_partitioners(ctx: Context) -> None:
    """partial(f, 1) and partial(f, 1.0) place keys apart: a join of RDDs partitioned by each must shuffle."""
    keys = range(40)
    a = ctx.parallelize([(k, "a") for k in keys], 3).partitionBy(4, partial(salted_partition, 1))
    b = ctx.parallelize([(k, "b") for k in keys], 3).partitionBy(4, partial(salted_partition, 1.0))
    assert a.partitioner != b.partitioner
    assert a.partitioner == ctx.parallelize([(0, 0)], 1).partitionBy(4, partial(salted_partition, 1)).partitioner
    assert a.join(b).count() == 40


# --- checkpoint -------------------------------------------------------------------------------

@register_func
def mod_pair(n: int, x: int) -> tuple[int, int]:
    return (x % n, x)


def test_checkpoint_saves_after_the_next_job_and_cuts_the_lineage(ctx: Context, tmp_path) -> None:
    from apps.funcs import count_call
    computed = ctx.accumulator(0)
    ctx.setCheckpointDir(str(tmp_path / "cp"))
    assert ctx.getCheckpointDir() == str(tmp_path / "cp")
    pairs = ctx.parallelize(range(100), 4).map(partial(count_call, computed)).map(partial(mod_pair, 5))
    assert not pairs.isCheckpointed() and pairs.getCheckpointFile() is None
    assert pairs.checkpoint() is pairs and not pairs.isCheckpointed()      # marked: saved after the next job
    assert pairs.checkpoint() is pairs and len(os.listdir(tmp_path / "cp")) == 1     # marked once
    assert pairs.count() == 100
    assert computed.value == 200               # the job, then the checkpoint's own job (nothing cached)
    assert pairs.isCheckpointed()
    folder = pairs.getCheckpointFile()
    assert os.path.dirname(folder) == str(tmp_path / "cp")
    assert sorted(os.listdir(folder)) == [f"part-{i:05d}" for i in range(4)]
    want = [(x % 5, x) for x in range(100)]
    assert pairs.collect() == want and computed.value == 200              # read back, types kept (tuples)
    assert pairs.glom().map(len).collect() == [25] * 4                    # the same partitions
    sums = pairs.reduceByKey(operator.add)
    assert sorted(sums.collect()) == [(k, sum(x for x in range(100) if x % 5 == k)) for k in range(5)]
    assert computed.value == 200
    # DPark's form: a folder of its own; a shuffled RDD keeps its partitioner
    sums.setName("sums").checkpoint(str(tmp_path / "dpark"))
    assert sorted(sums.collect()) == sorted(sums.collect())
    assert sums.isCheckpointed() and sums.getCheckpointFile().startswith(str(tmp_path / "dpark"))
    assert sums.partitioner is not None and sums.join(sums).count() == 5
    assert sums.name() == "sums"


def test_an_rdd_marked_for_checkpoint_then_let_go_unsaved_leaves_nothing(ctx: Context, tmp_path) -> None:
    """checkpoint() makes the RDD's folder at the call (to say an error there); an RDD let go before a job
    saved it is no longer due, and its empty folder goes: a loop that marks RDDs it never runs left one
    folder and one due id each (and every job then walked its lineage looking for them)."""
    import gc
    ctx.setCheckpointDir(str(tmp_path / "cp"))
    for _ in range(50):
        marked = ctx.parallelize(range(10), 2).map(partial(mod_pair, 3))
        marked.checkpoint()
        del marked
    gc.collect()           # (the shared Context's other tests' garbage; these go as they are let go)
    assert os.listdir(tmp_path / "cp") == [] and not ctx._checkpoints_due
    saved = ctx.parallelize(range(10), 2).map(partial(mod_pair, 3)).checkpoint()
    assert saved.count() == 10 and saved.isCheckpointed()
    folder = saved.getCheckpointFile()
    del saved
    assert os.listdir(tmp_path / "cp") == [os.path.basename(folder)]      # a saved one stays (as Spark's)


@register_func
def fails_when_computed_again(marks: str, x: int) -> int:
    """Partition 1's records: the second time they are computed, a failure (the checkpoint's own job)."""
    if x % 2:
        mark = os.path.join(marks, f"seen-{x}")
        if os.path.exists(mark):
            time.sleep(0.2)         # partition 0's part is saved first
            raise ValueError("computed again")
        open(mark, "w").close()
    return x


def test_a_checkpoint_whose_save_failed_leaves_no_folder_once_its_rdd_is_let_go(ctx: Context, tmp_path) -> None:
    """The checkpoint's own job failed after some parts were written: the RDD stays marked (a later job tries
    again), and once it is let go, unsaved, the folder goes with the parts in it (no RDD reads them)."""
    import gc
    (tmp_path / "marks").mkdir()
    ctx.setCheckpointDir(str(tmp_path / "cp"))
    marked = ctx.parallelize([0, 2, 1, 3], 2).map(partial(fails_when_computed_again, str(tmp_path / "marks")))
    marked.checkpoint()
    with pytest.raises(JobError, match="computed again"):
        marked.count()              # the job succeeds; the checkpoint's job, computing it again, fails
    assert not marked.isCheckpointed()
    (folder,) = os.listdir(tmp_path / "cp")
    assert os.listdir(tmp_path / "cp" / folder) == ["part-00000"]       # partition 0's, saved
    del marked
    gc.collect()
    assert os.listdir(tmp_path / "cp") == [] and not ctx._checkpoints_due


def test_checkpoint_errors_are_said_at_the_call(ctx: Context, tmp_path, monkeypatch) -> None:
    from gopark.errors import OutputNotWritable
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with Context("local", quiet=True) as fresh:          # "~" is the home folder, as checkpoint(path)'s
        fresh.setCheckpointDir("~/cp")
        assert fresh.getCheckpointDir() == str(tmp_path / "home" / "cp") and (tmp_path / "home" / "cp").is_dir()
    with Context("local", quiet=True) as fresh:         # (the shared ctx may have a folder set already)
        with pytest.raises(ValueError, match="setCheckpointDir"):
            fresh.parallelize(range(3)).checkpoint()
    rdd = ctx.parallelize(range(3))
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputNotWritable, match="checkpoint: cannot write into"):
        rdd.checkpoint(str(tmp_path / "file" / "under"))
    with pytest.raises(OutputNotWritable, match="setCheckpointDir: cannot make"):
        ctx.setCheckpointDir(str(tmp_path / "file" / "under"))
    with pytest.raises(TypeError, match="checkpoint takes a folder path"):
        rdd.checkpoint(3)
    assert rdd.collect() == [0, 1, 2] and not rdd.isCheckpointed()
    empty = ctx.emptyRDD().checkpoint(str(tmp_path / "e"))
    assert empty.count() == 0 and empty.isCheckpointed()
