"""Every RDD method of SPEC section 5 against a plain-Python reference, in every mode.

The functions given to RDD methods are registered at module level: in process
mode the workers import this module by name to find them.
"""
from __future__ import annotations

import collections
import gzip
import os
import random
import time
from functools import partial
from operator import itemgetter, lt

import pytest
from apps.funcs import add_to, count_call

from gopark import JobError, register_func

# --- data ------------------------------------------------------------------------------

NUMS = list(range(-20, 60))
WORDS = "the quick brown fox jumps over the lazy dog and the cat sat on the mat by the dog".split() * 3
PAIRS = [(w, i) for i, w in enumerate(WORDS)]                      # string keys, duplicated
INT_PAIRS = [(i % 7, i) for i in range(50)]                        # int keys, duplicated
_rng = random.Random(20240601)
SHUFFLED = _rng.sample(range(1000), 1000)
DISTINCT_PAIRS = [((i * 7919) % 1000, i) for i in range(1000)]     # 1000 distinct keys, scrambled
SKEWED = [(0, i) for i in range(900)] + [(k, -k) for k in range(1, 101)]
_rng.shuffle(SKEWED)


# --- registered functions ------------------------------------------------------------

@register_func
def double(x):
    return 2 * x


@register_func
def is_even(x):
    return x % 2 == 0


@register_func
def repeat_by_mod(x):
    return [x] * (x % 3)


@register_func
def sum_partition(it):
    return [sum(it)]


@register_func
def double_partition(it):
    for x in it:
        yield 2 * x


@register_func
def with_index(i, it):
    return [(i, x) for x in it]


@register_func
def add(a, b):
    return a + b


@register_func
def upto(v):
    return list(range(v % 4))


@register_func
def pair_with(n, x):
    return (x, n)


@register_func
def mod_pair(n, x):
    return (x % n, x)


@register_func
def greater_than(n, x):
    return x > n


@register_func
def neg(x):
    return -x


@register_func
def create_avg(v):
    return (v, 1)


@register_func
def merge_avg(c, v):
    return (c[0] + v, c[1] + 1)


@register_func
def merge_avgs(a, b):
    return (a[0] + b[0], a[1] + b[1])


@register_func
def seq_op(acc, x):
    return (acc[0] + x, acc[1] + 1)


@register_func
def one_list(x):
    return [x]


@register_func
def append(lst, x):
    lst.append(x)
    return lst


@register_func
def extend(a, b):
    a.extend(b)
    return a


@register_func
def key_len(s):
    return len(s)


# --- references ------------------------------------------------------------------------

def grouped(pairs):
    """{key: sorted values}."""
    out = collections.defaultdict(list)
    for k, v in pairs:
        out[k].append(v)
    return {k: sorted(vs) for k, vs in out.items()}


def ref_join(a, b, how):
    ga, gb = grouped(a), grouped(b)
    keys = set(ga) & set(gb) if how == "inner" else (
        set(ga) if how == "left" else set(gb) if how == "right" else set(ga) | set(gb))
    return [(k, (v, w)) for k in keys for v in ga.get(k, [None]) for w in gb.get(k, [None])]


def norm_cogroup(result):
    """{key: tuple of sorted lists}, checking the shape SPEC gives: (key, (list, list, ...))."""
    out = {}
    for k, groups in result:
        assert type(groups) is tuple, groups
        assert all(type(g) is list for g in groups), groups
        out[k] = tuple(sorted(g) for g in groups)
    return out


def ref_cogroup(*datasets):
    keys = {k for d in datasets for k, _ in d}
    return {k: tuple(sorted(v for kk, v in d if kk == k) for d in datasets) for k in keys}


def by_repr(records):
    return sorted(records, key=repr)


# --- narrow transformations ---------------------------------------------------------------

def test_map(ctx):
    assert ctx.parallelize(NUMS, 4).map(double).collect() == [2 * x for x in NUMS]


def test_flatMap(ctx):
    assert ctx.parallelize(NUMS, 4).flatMap(repeat_by_mod).collect() == [y for x in NUMS for y in [x] * (x % 3)]


def test_filter(ctx):
    assert ctx.parallelize(NUMS, 4).filter(is_even).collect() == [x for x in NUMS if x % 2 == 0]


def test_mapPartitions(ctx):
    rdd = ctx.parallelize(NUMS, 4)
    parts = rdd.glom().collect()
    assert rdd.mapPartitions(sum_partition).collect() == [sum(p) for p in parts]
    assert rdd.mapPartitions(double_partition).collect() == [2 * x for x in NUMS]


def test_mapPartitionsWithIndex(ctx):
    rdd = ctx.parallelize(NUMS, 5)
    parts = rdd.glom().collect()
    assert rdd.mapPartitionsWithIndex(with_index).collect() == [(i, x) for i, p in enumerate(parts) for x in p]


@register_func
def forgets_to_return(*args):
    for _ in args[-1]:
        pass


@pytest.mark.parametrize("method", ["mapPartitions", "mapPartitionsWithIndex"])
def test_a_partition_function_returning_None_fails_the_job(ctx, method):
    """As iterating None does in Spark and DPark; not an empty partition that hides a missing return."""
    with pytest.raises(JobError, match=f"{method}: the function returned None") as failed:
        getattr(ctx.parallelize(NUMS, 2), method)(forgets_to_return).collect()
    assert failed.value.remote_type == "TypeError"
    assert getattr(ctx.parallelize([], 2), method)(with_index if "Index" in method else sum_partition).collect() \
        == ([] if "Index" in method else [0, 0])


@pytest.mark.parametrize("method", ["mapValue", "mapValues"])
def test_mapValue(ctx, method):
    out = getattr(ctx.parallelize(INT_PAIRS, 3), method)(double).collect()
    assert out == [(k, 2 * v) for k, v in INT_PAIRS]


@pytest.mark.parametrize("method", ["flatMapValue", "flatMapValues"])
def test_flatMapValue(ctx, method):
    out = getattr(ctx.parallelize(INT_PAIRS, 3), method)(upto).collect()
    assert out == [(k, x) for k, v in INT_PAIRS for x in range(v % 4)]


def test_keys_and_values(ctx):
    rdd = ctx.parallelize(PAIRS, 3)
    assert rdd.keys().collect() == [k for k, _ in PAIRS]
    assert rdd.values().collect() == [v for _, v in PAIRS]


def test_glom(ctx):
    parts = ctx.parallelize(NUMS, 4).glom().collect()
    assert len(parts) == 4
    assert all(type(p) is list for p in parts)
    assert [x for p in parts for x in p] == NUMS
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1, sizes


def test_parallelize_slices(ctx):
    assert ctx.parallelize(range(10, 0, -3), 3).collect() == list(range(10, 0, -3))
    assert ctx.parallelize(range(1000), 7).count() == 1000
    many = ctx.parallelize([1, 2, 3], 10)
    assert many.getNumPartitions() == 10
    assert many.collect() == [1, 2, 3]
    assert ctx.makeRDD(["a", "b"], 2).collect() == ["a", "b"]
    assert ctx.parallelize([], 3).collect() == []


def test_union(ctx):
    a, b, c = NUMS[:10], WORDS[:7], [(1, 2)]
    ra, rb, rc = ctx.parallelize(a, 2), ctx.parallelize(b, 3), ctx.parallelize(c, 1)
    assert ra.union(rb).getNumPartitions() == 5
    assert ra.union(rb).collect() == a + b
    assert ra.union(rb, rc).collect() == a + b + c
    assert ra.union([rb, rc]).count() == len(a + b + c)


def test_operations_around_a_union(ctx):
    """The per-record operations of a union's parents and those after it (one loop per task, through the
    union), with an operation by partition index on either side."""
    a = ctx.parallelize(NUMS[:12], 3).map(double).filter(is_even)
    b = ctx.parallelize(NUMS[12:20], 2).mapPartitionsWithIndex(with_index).map(neg_pair)
    both = a.map(neg).union(b)
    expected = [-2 * x for x in NUMS[:12]] + [(-i, -x) for i, x in enumerate_parts(NUMS[12:20], 2)]
    assert both.collect() == expected
    assert both.map(repr).collect() == [repr(x) for x in expected]
    tagged = both.mapPartitionsWithIndex(with_index).collect()
    assert [x for _, x in tagged] == expected and [i for i, _ in tagged] == sorted(i for i, _ in tagged)
    assert both.filter(bool).count() == sum(1 for x in expected if x)


def enumerate_parts(xs, n):
    """(partition index, record) of ``xs`` parallelized in ``n`` slices."""
    size = len(xs) // n
    return [(i, x) for i in range(n) for x in xs[i * size:(i + 1) * size]]


@register_func
def neg_pair(ix):
    i, x = ix
    return (-i, -x)


def test_ctx_union(ctx):
    a, b, c = NUMS[:10], WORDS[:7], [(1, 2)]
    both = ctx.union([ctx.parallelize(a, 2), ctx.parallelize(b, 3), ctx.parallelize(c, 1)])
    assert both.getNumPartitions() == 6
    assert both.collect() == a + b + c


def test_union_of_an_rdd_with_itself(ctx):
    ra = ctx.parallelize(NUMS[:10], 2)
    assert ra.union(ra).collect() == NUMS[:10] * 2
    assert ctx.union([ra, ra, ra]).count() == 30


def test_a_union_grown_one_rdd_at_a_time_runs_at_any_length(ctx):
    """``acc = acc.union(more)`` in a loop (and ``more.union(acc)``): thousands of unions, as one."""
    acc, expected = ctx.parallelize([0], 1), [0]
    for i in range(1, 1500):
        more = ctx.parallelize([i, -i], 2)
        acc, expected = (acc.union(more), expected + [i, -i]) if i % 3 else (more.union(acc), [i, -i] + expected)
    assert acc.getNumPartitions() == 1 + 2 * 1499
    assert acc.collect() == expected and acc.map(double).count() == len(expected)
    pairs = ctx.parallelize([(1, "a"), (2, "b")], 2).partitionByKey(2)
    alike = pairs
    for _ in range(600):       # partitioned alike: partition by partition, the partitioner kept
        alike = alike.union(pairs)
    assert alike.partitioner == pairs.partitioner and alike.getNumPartitions() == 2
    assert sorted(alike.collect()) == sorted(pairs.collect() * 601)


@pytest.mark.parametrize("cached", ["before", "after"])
def test_a_cached_union_stays_a_parent_of_the_union_made_from_it(ctx, cached):
    """Cached before the union made from it, or after (as Spark's, whose unions keep their parents): that
    union reads its cache; once unpersisted, its parents again."""
    computed = ctx.accumulator(0)
    inner = ctx.parallelize([1, 2], 2).map(partial(count_call, computed)).union(ctx.parallelize([3], 1))
    if cached == "before":
        inner.cache()
    outer = inner.union(ctx.parallelize([4], 1))
    if cached == "after":
        inner.cache()
    assert inner.count() == 3 and computed.value == 2
    assert outer.collect() == [1, 2, 3, 4]
    assert computed.value == 2          # read from the cache
    inner.unpersist()
    assert outer.collect() == [1, 2, 3, 4] and computed.value == 4


def test_unpersist_takes_pysparks_blocking(ctx):
    computed = ctx.accumulator(0)
    rdd = ctx.parallelize([1, 2], 2).map(partial(count_call, computed)).cache()
    assert rdd.count() == 2 and rdd.count() == 2 and computed.value == 2
    assert rdd.unpersist(blocking=True) is rdd
    assert rdd.count() == 2 and computed.value == 4
    with pytest.raises(TypeError, match="unpersist: blocking is True or False"):
        rdd.unpersist(blocking="yes")


def test_distinct(ctx):
    out = ctx.parallelize(WORDS, 4).distinct()
    got = out.collect()
    assert sorted(got) == sorted(set(WORDS))
    assert ctx.parallelize(WORDS, 4).distinct(numSplits=3).getNumPartitions() == 3


def test_sample_fraction_bounds(ctx):
    rdd = ctx.parallelize(NUMS, 4)
    with pytest.raises(ValueError):
        rdd.sample(-0.1)
    with pytest.raises(ValueError):
        rdd.sample(1.5)
    for bad in (float("nan"), float("inf")):        # refused as Spark's require(fraction >= 0) does nan
        for with_replacement in (False, True):
            with pytest.raises(ValueError, match="fraction"):
                rdd.sample(bad, with_replacement)
    assert rdd.sample(0.0, seed=1).collect() == []
    assert rdd.sample(1.0, seed=1).collect() == NUMS


def is_subsequence(sub, seq):
    it = iter(seq)
    return all(any(x == y for y in it) for x in sub)


def test_sample_deterministic_with_seed(ctx):
    data = list(range(2000))
    rdd = ctx.parallelize(data, 4)
    a = rdd.sample(0.3, seed=7).collect()
    assert a == rdd.sample(0.3, seed=7).collect()
    assert a == ctx.parallelize(data, 4).sample(0.3, seed=7).collect()
    assert is_subsequence(a, data)
    assert 300 < len(a) < 900, len(a)
    assert a != rdd.sample(0.3, seed=8).collect()


def test_sample_with_replacement(ctx):
    data = list(range(500))
    rdd = ctx.parallelize(data, 4)
    a = rdd.sample(2.0, withReplacement=True, seed=3).collect()
    assert a == rdd.sample(2.0, withReplacement=True, seed=3).collect()
    assert set(a) <= set(data)
    assert len(a) > len(set(a))          # with replacement and fraction 2, records repeat
    assert 500 < len(a) < 1500, len(a)


def test_sample_with_replacement_takes_a_record_about_fraction_times_however_large(ctx):
    """A Poisson draw of a large mean (PySpark's sampler changes its method past 20): a fraction of 1000
    or more takes each record about that many times (a product of uniform draws stopped at about 740)."""
    rdd = ctx.parallelize(range(10), 2)
    for fraction in (50.0, 1000.0, 5000.0):
        n = rdd.sample(True, fraction, 7).count()
        assert abs(n - 10 * fraction) < 0.05 * 10 * fraction, (fraction, n)
    pairs = ctx.parallelize([("a", i) for i in range(10)], 2)
    assert abs(pairs.sampleByKey(True, {"a": 2000.0}, 5).count() - 20000) < 1000
    taken = rdd.takeSample(True, 10000, 3)
    assert len(taken) == 10000 and set(taken) == set(range(10))


def test_sample_same_in_every_mode(contexts):
    local, proc = contexts("local"), contexts("process:2")
    for fraction, repl in ((0.25, False), (1.5, True)):
        a = local.parallelize(range(3000), 6).sample(fraction, withReplacement=repl, seed=42).collect()
        b = proc.parallelize(range(3000), 6).sample(fraction, withReplacement=repl, seed=42).collect()
        assert a == b


def test_cartesian(ctx):
    a, b = [1, 2, 3, 4], ["x", "y", "z"]
    out = ctx.parallelize(a, 2).cartesian(ctx.parallelize(b, 3))
    assert out.getNumPartitions() == 6
    got = out.collect()
    assert sorted(got) == sorted((x, y) for x in a for y in b)
    assert all(type(p) is tuple for p in got)
    square = ctx.parallelize(a, 2)
    assert sorted(square.cartesian(square).collect()) == sorted((x, y) for x in a for y in a)


def test_zip(ctx):
    rdd = ctx.parallelize(NUMS, 4)
    assert rdd.zip(rdd.map(double)).collect() == [(x, 2 * x) for x in NUMS]
    words = (WORDS * 2)[:len(NUMS)]
    assert rdd.zip(ctx.parallelize(words, 4)).collect() == list(zip(NUMS, words))
    assert rdd.zip(rdd).collect() == [(x, x) for x in NUMS]


def test_zip_needs_the_same_partitioning(ctx):
    with pytest.raises((ValueError, JobError)):
        ctx.parallelize(NUMS, 4).zip(ctx.parallelize(NUMS, 3)).collect()
    with pytest.raises((ValueError, JobError)):
        ctx.parallelize(NUMS, 4).zip(ctx.parallelize(NUMS[:-8], 4)).collect()


# --- shuffles ----------------------------------------------------------------------------

def test_groupByKey(ctx):
    out = ctx.parallelize(PAIRS, 4).groupByKey().collect()
    assert all(type(vs) is list for _, vs in out)
    assert len(out) == len(set(WORDS))
    assert {k: sorted(vs) for k, vs in out} == grouped(PAIRS)


def test_reduceByKey(ctx):
    out = ctx.parallelize(PAIRS, 4).reduceByKey(add).collectAsMap()
    assert out == {k: sum(vs) for k, vs in grouped(PAIRS).items()}
    assert ctx.parallelize(INT_PAIRS, 3).reduceByKey(add).collectAsMap() == {
        k: sum(vs) for k, vs in grouped(INT_PAIRS).items()}


def test_combineByKey(ctx):
    out = ctx.parallelize(INT_PAIRS, 4).combineByKey(create_avg, merge_avg, merge_avgs).collectAsMap()
    assert out == {k: (sum(vs), len(vs)) for k, vs in grouped(INT_PAIRS).items()}
    lists = ctx.parallelize(PAIRS, 3).combineByKey(one_list, append, extend, numSplits=2)
    assert {k: sorted(v) for k, v in lists.collect()} == grouped(PAIRS)


def test_partitionByKey(ctx):
    out = ctx.parallelize(PAIRS, 4).partitionByKey(numSplits=3)
    parts = out.glom().collect()
    assert len(parts) == 3
    homes = collections.defaultdict(set)
    for i, part in enumerate(parts):
        for k, _ in part:
            homes[k].add(i)
    assert all(len(h) == 1 for h in homes.values()), homes
    assert sorted(x for p in parts for x in p) == sorted(PAIRS)


LEFT = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("e", 5)]
RIGHT = [("a", "x"), ("d", "y"), ("a", "z"), ("c", "w"), ("f", "v")]


@pytest.mark.parametrize("method,how", [("join", "inner"), ("leftOuterJoin", "left"),
                                        ("rightOuterJoin", "right"), ("outerJoin", "outer")])
def test_joins(ctx, method, how):
    a, b = ctx.parallelize(LEFT, 2), ctx.parallelize(RIGHT, 3)
    got = getattr(a, method)(b).collect()
    assert all(type(r) is tuple and type(r[1]) is tuple for r in got)
    assert by_repr(got) == by_repr(ref_join(LEFT, RIGHT, how))


def test_join_of_copartitioned_rdds(ctx):
    a = ctx.parallelize(INT_PAIRS, 3).reduceByKey(add, numSplits=4)
    b = ctx.parallelize([(k, str(k)) for k in range(10)], 2).partitionByKey(numSplits=4)
    got = a.join(b).collect()
    sums = {k: sum(vs) for k, vs in grouped(INT_PAIRS).items()}
    assert sorted(got) == sorted((k, (s, str(k))) for k, s in sums.items())
    c = ctx.parallelize([(k, -k) for k in range(3, 12)], 2)          # one side partitioned, one not
    assert sorted(a.leftOuterJoin(c).collect()) == sorted((k, (s, -k if k >= 3 else None)) for k, s in sums.items())
    assert norm_cogroup(a.groupWith(b, c).collect()) == ref_cogroup(
        list(sums.items()), [(k, str(k)) for k in range(10)], [(k, -k) for k in range(3, 12)])
    assert sorted(a.join(a).collect()) == sorted((k, (s, s)) for k, s in sums.items())


GW_A = [("a", 1), ("b", 2), ("a", 3), ("c", 4)]
GW_B = [("a", "x"), ("d", "y"), ("a", "z")]
GW_C = [("b", 10.0), ("e", 20.0)]


def test_groupWith_one_rdd(ctx):
    a, b = ctx.parallelize(GW_A, 2), ctx.parallelize(GW_B, 2)
    assert norm_cogroup(a.groupWith(b).collect()) == ref_cogroup(GW_A, GW_B)
    assert norm_cogroup(a.cogroup(b).collect()) == ref_cogroup(GW_A, GW_B)


def test_groupWith_a_list_of_rdds(ctx):
    a, b, c = ctx.parallelize(GW_A, 2), ctx.parallelize(GW_B, 2), ctx.parallelize(GW_C, 1)
    assert norm_cogroup(a.groupWith([b, c]).collect()) == ref_cogroup(GW_A, GW_B, GW_C)
    assert norm_cogroup(a.cogroup([b, c]).collect()) == ref_cogroup(GW_A, GW_B, GW_C)


def test_groupWith_several_rdds(ctx):
    a, b, c = ctx.parallelize(GW_A, 2), ctx.parallelize(GW_B, 2), ctx.parallelize(GW_C, 1)
    assert norm_cogroup(a.groupWith(b, c).collect()) == ref_cogroup(GW_A, GW_B, GW_C)
    assert norm_cogroup(a.cogroup(b, c).collect()) == ref_cogroup(GW_A, GW_B, GW_C)


def check_sorted_partitions(parts, reverse):
    flat = [k for p in parts for k, _ in p]
    assert flat == sorted(flat, reverse=reverse)


@pytest.mark.parametrize("ascending", [True, False])
@pytest.mark.parametrize("n", [1, 3, 8])
def test_sortByKey(ctx, ascending, n):
    out = ctx.parallelize(DISTINCT_PAIRS, 5).sortByKey(ascending, numSplits=n)
    assert out.collect() == sorted(DISTINCT_PAIRS, reverse=not ascending)
    parts = out.glom().collect()
    assert len(parts) == n
    check_sorted_partitions(parts, not ascending)


@pytest.mark.parametrize("ascending", [True, False])
def test_sortByKey_skewed_keys(ctx, ascending):
    out = ctx.parallelize(SKEWED, 6).sortByKey(ascending=ascending, numSplits=6)
    got = out.collect()
    assert [k for k, _ in got] == sorted((k for k, _ in SKEWED), reverse=not ascending)
    assert sorted(got) == sorted(SKEWED)
    check_sorted_partitions(out.glom().collect(), not ascending)


def test_sortByKey_string_keys(ctx):
    out = ctx.parallelize(PAIRS, 4).sortByKey(numSplits=3).collect()
    assert [k for k, _ in out] == sorted(WORDS)
    assert sorted(out) == sorted(PAIRS)


def test_sort(ctx):
    rdd = ctx.parallelize(SHUFFLED, 4)
    assert rdd.sort().collect() == sorted(SHUFFLED)
    assert rdd.sort(reverse=True).collect() == sorted(SHUFFLED, reverse=True)
    assert rdd.sort(key=neg).collect() == sorted(SHUFFLED, reverse=True)
    assert rdd.sort(key=neg, reverse=True, numSplits=3).collect() == sorted(SHUFFLED)
    pairs = ctx.parallelize(DISTINCT_PAIRS, 3)
    assert pairs.sort(key=itemgetter(1)).collect() == sorted(DISTINCT_PAIRS, key=itemgetter(1))


def test_sort_by_key_with_ties(ctx):
    words = ctx.parallelize(WORDS, 3)
    for reverse in (False, True):
        got = words.sort(key=key_len, reverse=reverse).collect()
        assert [len(w) for w in got] == sorted((len(w) for w in WORDS), reverse=reverse)
        assert sorted(got) == sorted(WORDS)


SHUFFLES = {
    "groupByKey": lambda a, b, n: a.groupByKey(numSplits=n),
    "reduceByKey": lambda a, b, n: a.reduceByKey(add, numSplits=n),
    "combineByKey": lambda a, b, n: a.combineByKey(create_avg, merge_avg, merge_avgs, numSplits=n),
    "partitionByKey": lambda a, b, n: a.partitionByKey(numSplits=n),
    "distinct": lambda a, b, n: a.distinct(numSplits=n),
    "join": lambda a, b, n: a.join(b, numSplits=n),
    "leftOuterJoin": lambda a, b, n: a.leftOuterJoin(b, numSplits=n),
    "rightOuterJoin": lambda a, b, n: a.rightOuterJoin(b, numSplits=n),
    "outerJoin": lambda a, b, n: a.outerJoin(b, numSplits=n),
    "groupWith": lambda a, b, n: a.groupWith(b, numSplits=n),
    "cogroup-list": lambda a, b, n: a.cogroup([b, b], numSplits=n),
    "sortByKey": lambda a, b, n: a.sortByKey(numSplits=n),
    "sort": lambda a, b, n: a.sort(numSplits=n),
}


@pytest.mark.parametrize("name", list(SHUFFLES))
@pytest.mark.parametrize("n", [1, 5])
def test_numSplits_of_every_shuffle(ctx, name, n):
    a = ctx.parallelize(DISTINCT_PAIRS, 3)
    b = ctx.parallelize([(k, -k) for k in range(0, 1000, 3)], 2)
    out = SHUFFLES[name](a, b, n)
    assert out.getNumPartitions() == n
    parts = out.glom().collect()
    assert len(parts) == n
    assert sum(len(p) for p in parts) == out.count()


def test_shuffles_of_an_empty_rdd(ctx):
    empty = ctx.parallelize([], 3)
    other = ctx.parallelize([("a", 1)], 2)
    assert empty.groupByKey().collect() == []
    assert empty.reduceByKey(add, numSplits=4).collect() == []
    assert empty.distinct().collect() == []
    assert empty.sortByKey(numSplits=3).collect() == []
    assert empty.sort().collect() == []
    assert empty.join(other).collect() == []
    assert empty.rightOuterJoin(other).collect() == [("a", (None, 1))]
    assert norm_cogroup(empty.groupWith(other).collect()) == {"a": ([], [1])}


@register_func
def ten_then_fail(x):
    yield from range(10)
    raise RuntimeError("read past what take needed")


@register_func
def log_step(acc, step, x):
    acc.add([(step, x)])
    return x


@register_func
def concat(a, b):
    return a + b


def test_narrow_transformations_are_pipelined(ctx):
    log = ctx.accumulator([], merge=concat)
    rdd = ctx.parallelize([1, 2, 3], 1).map(partial(log_step, log, "a")).filter(partial(log_step, log, "b"))
    assert rdd.map(partial(log_step, log, "c")).collect() == [1, 2, 3]
    assert log.value == [(step, x) for x in (1, 2, 3) for step in "abc"]
    # records are pulled one at a time: take(3) never reads the 11th record of this generator
    assert ctx.parallelize([0], 1).flatMap(ten_then_fail).map(double).filter(is_even).take(3) == [0, 2, 4]


def test_cache_computes_once(ctx):
    acc = ctx.accumulator(0)
    rdd = ctx.parallelize(NUMS, 4).map(partial(count_call, acc)).cache()
    assert rdd.count() == len(NUMS)
    assert rdd.map(double).collect() == [2 * x for x in NUMS]
    assert rdd.reduce(add) == sum(NUMS)
    assert acc.value == len(NUMS)


@register_func
def slowly_counted(acc, x):
    time.sleep(0.002)
    acc.add(1)
    return x


def test_a_cached_partition_two_tasks_need_at_once_is_computed_once(ctx):
    """``c.union(c)``: two tasks of one job read the same partition of ``c``; in process mode they run at
    once on two workers: one computes it, the other waits for that task's end and reads it."""
    acc = ctx.accumulator(0)
    c = ctx.parallelize(range(200), 1).map(partial(slowly_counted, acc)).cache()
    assert sorted(c.union(c).collect()) == sorted(list(range(200)) * 2)
    assert acc.value == 200
    assert c.count() == 200 and acc.value == 200


def test_tasks_that_need_each_others_cached_partitions_compute_each_once(ctx):
    """``a.zip(b).union(b.zip(a))``: one task computes a's partition, then needs b's, which the other task
    computes while it will need a's: a task holds a partition's lock only while computing it, and publishes
    it at once, so neither waits for the other's end, and each partition is computed once."""
    acc = ctx.accumulator(0)
    a = ctx.parallelize(range(100), 1).map(partial(slowly_counted, acc)).cache()
    b = ctx.parallelize(range(100, 200), 1).map(partial(slowly_counted, acc)).cache()
    got = a.zip(b).union(b.zip(a)).collect()
    assert got == [(i, 100 + i) for i in range(100)] + [(100 + i, i) for i in range(100)]
    assert acc.value == 200


def test_cached_empty_partitions(ctx):
    """Partitions with no record cache as such: an empty RDD, and the empty partitions of a filter."""
    empty = ctx.parallelize([], 3).cache()
    assert empty.count() == 0 and empty.collect() == [] and empty.glom().collect() == [[], [], []]
    few = ctx.parallelize(range(10), 4).filter(partial(lt, 7)).cache()
    assert few.glom().collect() == [[], [], [], [8, 9]] and few.sum() == 17


@pytest.mark.parametrize("parts", [2, 3, 6])
def test_cartesian_of_a_cached_rdd_with_itself_computes_it_once(ctx, parts):
    acc = ctx.accumulator(0)
    s = ctx.parallelize(range(60), parts).map(partial(slowly_counted, acc)).cache()
    assert s.cartesian(s).count() == 3600
    assert acc.value == 60
    assert s.count() == 60 and acc.value == 60


@register_func
def exit_once(marker_dir, x):
    """The first task to see a record, first time: its worker process dies (os._exit) right after it."""
    marker = os.path.join(marker_dir, "exited-once")
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        os._exit(3)
    return x


def test_a_cached_partition_whose_worker_died_is_computed_again_and_counted_once(tmp_path):
    """A task computes (and publishes) a cached partition, then its worker dies: the copy of a task that
    is gone is not read; the retry computes the partition again, counting its records once."""
    from gopark import Context
    with Context("process:2", quiet=True) as c:
        acc = c.accumulator(0)
        cached = c.parallelize(range(10), 1).map(partial(count_call, acc)).cache()
        assert cached.map(partial(exit_once, str(tmp_path))).collect() == list(range(10))
        assert os.path.exists(tmp_path / "exited-once")
        assert cached.count() == 10 and acc.value == 10


def test_a_task_computing_many_cached_partitions_holds_few_files_open():
    """coalesce(1) of 1100 cached partitions: one task computes them all, under a limit of 256 open files
    (a lock file held for each until the task's end would exceed it)."""
    import resource

    from gopark import Context
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))      # the workers inherit it
    try:
        with Context("process:2", quiet=True) as c:
            assert c.parallelize(range(2200), 1100).cache().coalesce(1).count() == 2200
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@register_func
def fork_a_helper_then_die_once(marker_dir, x):
    """The first time: fork a helper that outlives its parent a while (as multiprocessing's fork does),
    then die: the helper holds what the worker's descriptors held."""
    marker = os.path.join(marker_dir, "forked-once")
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        if os.fork() == 0:
            time.sleep(2)
            os._exit(0)
        os._exit(3)
    return x


def test_a_cached_partition_of_a_worker_that_forked_then_died_is_computed_again(tmp_path):
    """A forked child keeps the file locks of flock, not those of lockf: the copy a dead task published
    must not pass for a running task's (its retry would read it and count none of its records)."""
    from gopark import Context
    with Context("process:2", quiet=True) as c:
        acc = c.accumulator(0)
        cached = c.parallelize(range(10), 1).map(partial(count_call, acc)).cache()
        assert cached.map(partial(fork_a_helper_then_die_once, str(tmp_path))).collect() == list(range(10))
        assert cached.count() == 10 and acc.value == 10


@register_func
def plus_one(x):
    return x + 1


def test_a_chain_of_cached_rdds_computed_in_one_task_holds_few_files_open():
    """120 cached RDDs one on another, none computed yet: one task computes them inside one another, under a
    limit of 100 open files (a lock each for all of them at once would exceed it)."""
    import resource

    from gopark import Context
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (100, hard))      # the workers inherit it
    try:
        with Context("process:2", quiet=True) as c:
            rdd = c.parallelize(range(4), 2)
            for _ in range(120):
                rdd = rdd.map(plus_one).cache()
            assert rdd.collect() == [120, 121, 122, 123]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_persist_computes_once(ctx):
    acc = ctx.accumulator(0)
    rdd = ctx.parallelize(PAIRS, 3).map(partial(count_call, acc)).persist()
    assert rdd.reduceByKey(add).collectAsMap() == {k: sum(vs) for k, vs in grouped(PAIRS).items()}
    assert rdd.count() == len(PAIRS)
    assert rdd.collect() == PAIRS
    assert acc.value == len(PAIRS)


def test_uncached_rdd_is_computed_by_each_job(ctx):
    acc = ctx.accumulator(0)
    rdd = ctx.parallelize(NUMS, 4).map(partial(count_call, acc))
    rdd.count()
    rdd.count()
    assert acc.value == 2 * len(NUMS)


def test_enumerate(ctx):
    out = ctx.parallelize(WORDS, 4).filter(partial(greater_than, "m")).enumerate()
    kept = [w for w in WORDS if w > "m"]
    assert out.collect() == list(enumerate(kept))


# --- actions -------------------------------------------------------------------------------

def test_collect_and_collectAsMap(ctx):
    assert ctx.parallelize(WORDS, 4).collect() == WORDS
    unique = [(k, i) for i, k in enumerate(sorted(set(WORDS)))]
    assert ctx.parallelize(unique, 3).collectAsMap() == dict(unique)


def test_collectAsMap_keeps_the_last_value_of_a_key_as_dict_does(ctx):
    """Repeated keys within and across partitions, pairs as tuples and as lists, batches of both."""
    records = [(i % 5000, i) for i in range(12_000)] + [["x", 1], ("x", 2), ["y", 3]] + [(7, "last")]
    assert ctx.parallelize(records, 3).collectAsMap() == dict(records)
    assert ctx.parallelize([], 2).collectAsMap() == {}
    with pytest.raises(TypeError):
        ctx.parallelize([(1, 2), 3], 2).collectAsMap()


def test_count(ctx):
    assert ctx.parallelize(NUMS, 4).count() == len(NUMS)
    assert ctx.parallelize(NUMS, 4).filter(partial(greater_than, 1000)).count() == 0
    assert ctx.parallelize([], 2).count() == 0


def test_count_of_ranges_and_of_more_records_than_a_counted_block(ctx):
    """A range's partitions are counted at once (a count of range(10**12) takes no time, and a SIGTERM is not
    held up by a C loop), other records a block of 65536 at a time."""
    assert ctx.parallelize(range(10**12), 3).count() == 10**12
    assert ctx.parallelize(range(2**64, 2**64 + 10**12), 3).count() == 10**12
    for r in (range(10, 0, -3), range(5, 5), range(-7, 100, 9), range(2**64, 2**64 + 10)):
        assert ctx.parallelize(r, 3).count() == len(r)
    assert ctx.parallelize(range(200_000), 2).filter(is_even).count() == 100_000
    for n in (65535, 65536, 65537, 3 * 65536):
        assert ctx.parallelize(list(range(n)), 1).count() == n


def test_reduce(ctx):
    assert ctx.parallelize(NUMS, 4).reduce(add) == sum(NUMS)
    assert ctx.parallelize(WORDS, 3).reduce(add) == "".join(WORDS)     # order of partitions kept
    assert ctx.parallelize([5], 3).reduce(add) == 5


def test_reduce_of_empty_rdd_is_an_error(ctx):
    with pytest.raises(ValueError):
        ctx.parallelize([], 3).reduce(add)
    with pytest.raises(ValueError):
        ctx.parallelize(NUMS, 3).filter(partial(greater_than, 1000)).reduce(add)


def test_fold(ctx):
    assert ctx.parallelize(NUMS, 4).fold(0, add) == sum(NUMS)
    assert ctx.parallelize([], 2).fold(0, add) == 0
    assert ctx.parallelize(WORDS, 3).fold("", add) == "".join(WORDS)


def test_aggregate(ctx):
    total = ctx.parallelize(NUMS, 4).aggregate((0, 0), seq_op, merge_avgs)
    assert total == (sum(NUMS), len(NUMS))
    assert type(total) is tuple
    assert ctx.parallelize([], 2).aggregate((0, 0), seq_op, merge_avgs) == (0, 0)
    # a mutable zero is copied for every partition
    assert sorted(ctx.parallelize(NUMS, 4).aggregate([], append, extend)) == sorted(NUMS)


def test_first(ctx):
    assert ctx.parallelize(WORDS, 4).first() == WORDS[0]
    assert ctx.parallelize(NUMS, 8).filter(partial(greater_than, 50)).first() == 51
    with pytest.raises(ValueError):
        ctx.parallelize([], 2).first()


def test_take(ctx):
    rdd = ctx.parallelize(NUMS, 4)
    assert rdd.take(5) == NUMS[:5]
    assert rdd.take(30) == NUMS[:30]
    assert rdd.take(1000) == NUMS
    assert rdd.take(0) == []
    assert ctx.parallelize([1, 2, 3], 10).take(3) == [1, 2, 3]
    assert ctx.parallelize(range(100), 10).filter(partial(greater_than, 90)).take(3) == [91, 92, 93]
    assert ctx.parallelize([], 3).take(2) == []


def test_top(ctx):
    rdd = ctx.parallelize(SHUFFLED, 4)
    assert rdd.top(5) == sorted(SHUFFLED, reverse=True)[:5]
    assert rdd.top(5, key=neg) == sorted(SHUFFLED)[:5]
    assert rdd.top(2000) == sorted(SHUFFLED, reverse=True)
    assert ctx.parallelize(DISTINCT_PAIRS, 3).top(3, key=itemgetter(1)) == sorted(
        DISTINCT_PAIRS, key=itemgetter(1), reverse=True)[:3]
    # DPark's reverse: the smallest, smallest first
    assert rdd.top(5, reverse=True) == sorted(SHUFFLED)[:5]
    assert rdd.top(4, neg, True) == sorted(SHUFFLED, reverse=True)[:4]
    with pytest.raises(TypeError, match="reverse is True or False"):
        rdd.top(3, reverse="yes")


def test_foreach(ctx):
    acc = ctx.accumulator(0)
    assert ctx.parallelize(NUMS, 4).foreach(partial(add_to, acc)) is None
    assert acc.value == sum(NUMS)



@register_func
def add_partition_sum(acc, it):
    acc.add(sum(it))


@register_func
def add_each_lazily(acc, it):
    for x in it:            # a generator function: its body runs only as its result is taken
        acc.add(x)
        yield x


@register_func
def add_count_and_return_it(acc, it):
    n = sum(1 for _ in it)
    acc.add(n)
    return n                # not iterable: dropped


@register_func
def fail_after_one(it):
    yield next(it)
    raise ValueError("after one")


def test_foreachPartition(ctx):
    acc = ctx.accumulator(0)
    assert ctx.parallelize(NUMS, 4).foreachPartition(partial(add_partition_sum, acc)) is None
    assert acc.value == sum(NUMS)
    lazily = ctx.accumulator(0)     # as PySpark's: a generator's records are taken, so its body runs
    assert ctx.parallelize(NUMS, 4).foreachPartition(partial(add_each_lazily, lazily)) is None
    assert lazily.value == sum(NUMS)
    counted = ctx.accumulator(0)
    ctx.parallelize(NUMS, 3).foreachPartition(partial(add_count_and_return_it, counted))
    assert counted.value == len(NUMS)
    with pytest.raises(JobError, match="after one") as err:
        ctx.parallelize(NUMS, 2).foreachPartition(fail_after_one)
    assert err.value.func_name.endswith("fail_after_one")


def test_take_more_than_any_rdd_holds(ctx):
    """n beyond sys.maxsize is an int like any other (top and takeOrdered take it too)."""
    rdd = ctx.parallelize(NUMS, 4)
    assert rdd.take(2 ** 64) == NUMS
    assert rdd.top(2 ** 64) == sorted(NUMS, reverse=True)


def test_results_are_unpacked_without_collections_and_the_apps_gc_setting_is_kept(ctx):
    import gc
    assert gc.isenabled()
    rdd = ctx.parallelize([(i, [i]) for i in range(20000)], 4)
    collections_before = sum(g["collections"] for g in gc.get_stats())
    assert rdd.collect()[-1] == (19999, [19999]) and gc.isenabled()
    if ctx.master.kind == "process":    # (in local mode the records are made in the driver, by the task)
        assert sum(g["collections"] for g in gc.get_stats()) - collections_before < 10   # 40k containers: ~57
    gc.disable()            # an app's own choice stays
    try:
        assert rdd.count() == 20000 and rdd.collectAsMap()[5] == [5] and not gc.isenabled()
    finally:
        gc.enable()


@register_func
def gc_thresholds(_x):
    import gc
    return gc.get_threshold()


def test_tasks_make_no_full_garbage_collections_and_the_apps_thresholds_come_back(ctx):
    """A full collection walks every object the process holds (in local mode, the app's own): none while a
    task runs; young ones go on; the app's own thresholds are back after the job."""
    import gc
    saved = gc.get_threshold()
    gc.set_threshold(800, 11, 12)
    try:
        seen = set(ctx.parallelize(range(4), 2).map(gc_thresholds).collect())
        assert gc.get_threshold() == (800, 11, 12)
    finally:
        gc.set_threshold(*saved)
    young, middle, full = seen.pop()
    assert not seen and full >= 1 << 30 and young > 0 and middle > 0

def test_countByKey(ctx):
    counts = ctx.parallelize(PAIRS, 4).countByKey()
    assert counts == dict(collections.Counter(WORDS)) and type(counts) is dict     # data (PySpark: a defaultdict)


def test_countByValue(ctx):
    assert ctx.parallelize(WORDS, 4).countByValue() == dict(collections.Counter(WORDS))
    assert ctx.parallelize(INT_PAIRS, 4).map(itemgetter(0)).countByValue() == dict(
        collections.Counter(k for k, _ in INT_PAIRS))


RECORDS = ["héllo wörld ✓", b"raw \xff\xfe bytes", 42, 3.5, None, (1, "a"), [1, 2], {"k": 1}, "", "last"]
LINES = [b"h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93", b"raw \xff\xfe bytes", b"42", b"3.5", b"None",
         b"(1, 'a')", b"[1, 2]", b"{'k': 1}", b"", b"last"]


def read_parts(folder, n):
    parts = [f"part-{i:05d}" for i in range(n)]
    assert sorted(os.listdir(folder)) == sorted(parts + ["_SUCCESS"])
    data = []
    for name in parts:
        with open(os.path.join(folder, name), "rb") as f:
            data.append(f.read())
    return data


def test_saveAsTextFile(ctx, tmp_path):
    out = tmp_path / "out"
    written = ctx.parallelize(RECORDS, 3).saveAsTextFile(str(out))
    assert written == [str(out / f"part-{i:05d}") for i in range(3)]     # DPark returns the paths
    data = read_parts(out, 3)
    assert b"".join(data) == b"".join(line + b"\n" for line in LINES)
    assert os.path.getsize(out / "_SUCCESS") == 0


def test_saveAsTextFile_compressed_is_read_back_by_textFile(ctx, tmp_path):
    out = tmp_path / "out"
    lines = [f"line {i}" for i in range(20_000)]
    written = ctx.parallelize(lines, 3).saveAsTextFile(str(out), compress=True)
    assert written == [str(out / f"part-{i:05d}.gz") for i in range(3)]
    assert sorted(os.listdir(out)) == ["_SUCCESS", "part-00000.gz", "part-00001.gz", "part-00002.gz"]
    assert b"".join(gzip.decompress((out / f"part-{i:05d}.gz").read_bytes()) for i in range(3)) == \
        "".join(line + "\n" for line in lines).encode()
    assert ctx.textFile(str(out), splitSize=10 << 10).collect() == lines
    with pytest.raises(TypeError, match="compress is True or False"):
        ctx.parallelize(lines, 1).saveAsTextFile(str(tmp_path / "other"), compress="yes")
    with pytest.raises(ValueError, match="the one codec is org.apache.hadoop.io.compress.GzipCodec"):
        ctx.parallelize(lines, 1).saveAsTextFile(str(tmp_path / "other"), compressionCodecClass="x.BZip2Codec")
    assert not (tmp_path / "other").exists()
    # PySpark's name for it
    codec = "org.apache.hadoop.io.compress.GzipCodec"
    assert ctx.parallelize(lines, 2).saveAsTextFile(str(tmp_path / "py"), compressionCodecClass=codec) == [
        str(tmp_path / "py" / f"part-{i:05d}.gz") for i in range(2)]
    assert ctx.textFile(str(tmp_path / "py")).collect() == lines


def test_saveAsTextFile_empty_partitions(ctx, tmp_path):
    out = tmp_path / "out"
    ctx.parallelize(["a", "b"], 4).saveAsTextFile(str(out))
    assert b"".join(read_parts(out, 4)) == b"a\nb\n"


@register_func
def with_a_lone_surrogate(x):
    return f"{x}\ud800" if x == 3 else str(x)


def test_a_str_that_is_not_unicode_is_not_written_out(ctx, tmp_path):
    """A lone surrogate (no UTF-8 encodes it) fails saveAsTextFile's and pipe's task as it would fail sending
    the record: a SerializationError, and no part file is left."""
    made = ctx.parallelize([1, 2, 3, 4], 2).map(with_a_lone_surrogate)
    with pytest.raises(JobError, match=r"cannot write a str holding '\\ud800'.* in saveAsTextFile") as err:
        made.saveAsTextFile(str(tmp_path / "out"))
    assert err.value.remote_type == "SerializationError"
    assert os.listdir(tmp_path / "out") == []
    with pytest.raises(JobError, match=r"cannot write a str holding '\\ud800'.* in pipe"):
        made.pipe("cat").collect()

def test_saveAsTextFile_into_an_existing_folder(ctx, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    ctx.parallelize(["x"], 1).saveAsTextFile(str(empty))
    assert read_parts(empty, 1) == [b"x\n"]

    full = tmp_path / "full"
    full.mkdir()
    (full / "stale.txt").write_text("old")
    with pytest.raises(FileExistsError):
        ctx.parallelize(["y"], 2).saveAsTextFile(str(full))
    assert os.listdir(full) == ["stale.txt"]
    ctx.parallelize(["y", "z"], 2).saveAsTextFile(str(full), overwrite=True)
    assert read_parts(full, 2) == [b"y\n", b"z\n"]


# --- many jobs over one lineage -----------------------------------------------------------

def test_one_rdd_reused_by_many_jobs(ctx):
    rdd = ctx.parallelize(SHUFFLED, 4).map(double)
    for i in range(5):
        assert rdd.filter(partial(greater_than, 400 * i)).count() == sum(1 for x in SHUFFLED if 2 * x > 400 * i)
    assert rdd.count() == len(SHUFFLED)
    assert rdd.reduce(add) == 2 * sum(SHUFFLED)
    assert rdd.take(3) == [2 * x for x in SHUFFLED[:3]]
    assert rdd.map(partial(mod_pair, 10)).reduceByKey(add).collectAsMap() == {
        k: sum(vs) for k, vs in grouped((2 * x % 10, 2 * x) for x in SHUFFLED).items()}


def test_shuffle_map_stage_runs_once(ctx):
    acc = ctx.accumulator(0)
    counts = ctx.parallelize(WORDS, 3).map(partial(count_call, acc)).map(partial(pair_with, 1)).reduceByKey(add, 2)
    expected = dict(collections.Counter(WORDS))
    assert counts.collectAsMap() == expected
    assert acc.value == len(WORDS)
    assert counts.count() == len(expected)
    assert counts.mapValue(double).collectAsMap() == {k: 2 * v for k, v in expected.items()}
    assert counts.keys().collect() == [k for k, _ in counts.collect()]
    assert counts.sortByKey().collect() == sorted(expected.items())
    assert acc.value == len(WORDS)


# --- the same pipeline gives the same result in every mode --------------------------------

PIPELINES = {
    "reduceByKey": lambda c: c.parallelize(PAIRS, 4).reduceByKey(add, 3).collect(),
    "default-partitioning": lambda c: c.parallelize(PAIRS).reduceByKey(add).glom().collect(),
    "groupByKey": lambda c: c.parallelize(PAIRS, 4).groupByKey(3).collect(),
    "combineByKey": lambda c: c.parallelize(INT_PAIRS, 4).combineByKey(create_avg, merge_avg, merge_avgs).collect(),
    "partitionByKey": lambda c: c.parallelize(PAIRS, 4).partitionByKey(3).glom().collect(),
    "distinct": lambda c: c.parallelize(WORDS, 4).distinct(3).collect(),
    "join": lambda c: c.parallelize(LEFT, 2).outerJoin(c.parallelize(RIGHT, 2)).collect(),
    "cogroup": lambda c: c.parallelize(GW_A, 2).cogroup(c.parallelize(GW_B, 2), c.parallelize(GW_C, 1)).collect(),
    "sortByKey": lambda c: c.parallelize(SKEWED, 4).sortByKey(numSplits=3).collect(),
    "sort": lambda c: c.parallelize(WORDS, 4).sort(key=key_len).collect(),
    "union": lambda c: c.parallelize(NUMS[:5], 2).union(c.parallelize(WORDS[:4], 1)).collect(),
    "cartesian": lambda c: c.parallelize(NUMS[:5], 2).cartesian(c.parallelize(WORDS[:3], 2)).collect(),
    "countByValue": lambda c: list(c.parallelize(WORDS, 4).countByValue().items()),
}


@pytest.mark.parametrize("name", list(PIPELINES))
def test_same_result_in_every_mode(contexts, name):
    assert PIPELINES[name](contexts("local")) == PIPELINES[name](contexts("process:2"))
