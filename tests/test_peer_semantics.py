"""Semantics that DPark's and Spark's own tests rely on, found by porting them (each in every mode)."""
from __future__ import annotations

import operator
from functools import partial

import pytest

from gopark import ConfigError, Context, JobError, register_func
from gopark.partitioner import portable_hash


@register_func
def picky_add(a, b):
    if a + b > 10:
        raise ArithmeticError(f"{a} + {b} is too much")
    return a + b


def test_the_union_of_no_rdd_is_empty(ctx: Context) -> None:
    empty = ctx.union([])
    assert empty.count() == 0 and empty.collect() == [] and empty.sort().collect() == []


def test_cogroup_takes_num_splits_by_position(ctx: Context) -> None:
    a = ctx.parallelize([(1, "a"), (2, "b")], 2)
    b = ctx.parallelize([(1, "x"), (3, "y")], 2)
    c = ctx.parallelize([(3, "z")], 1)
    grouped = a.cogroup(b, 3)
    assert grouped.getNumPartitions() == 3
    assert sorted(grouped.collect()) == [(1, (["a"], ["x"])), (2, (["b"], [])), (3, ([], ["y"]))]
    assert a.groupWith([b, c], 4).getNumPartitions() == 4
    assert a.groupWith(b, c, 5).getNumPartitions() == 5
    assert a.groupWith(b, numSplits=2).getNumPartitions() == 2


def test_builtin_classes_are_functions_too(ctx: Context) -> None:
    """SPEC section 2: builtins exist on every node; range, reversed, zip... are builtin classes."""
    assert ctx.parallelize([2, 3], 2).flatMap(range).collect() == [0, 1, 0, 1, 2]
    assert ctx.parallelize([("a", [1, 2, 3])]).flatMapValue(reversed).collect() == [("a", 3), ("a", 2), ("a", 1)]
    assert ctx.parallelize([[1, 2], [3, 4]]).map(tuple).collect() == [(1, 2), (3, 4)]
    assert ctx.parallelize(["a b"]).map(str.upper).collect() == ["A B"]
    assert ctx.parallelize([[1, 2]]).flatMap(enumerate).collect() == [(0, 1), (1, 2)]


class Row:
    pass


def test_a_class_of_the_app_is_refused_by_name(ctx: Context) -> None:
    with pytest.raises(TypeError, match="got the class 'Row'.*register_func"):
        ctx.parallelize([1]).map(Row)


def test_the_driver_side_merge_of_reduce_fails_as_a_job_error(ctx: Context) -> None:
    """Each partition's sum is fine; only the driver's merge of them raises: still a JobError."""
    rdd = ctx.parallelize([3, 3, 4, 4], 2)       # partitions 6 and 8; 6 + 8 > 10
    for action in (lambda: rdd.reduce(picky_add), lambda: rdd.fold(0, picky_add),
                   lambda: rdd.aggregate(0, picky_add, picky_add)):
        with pytest.raises(JobError) as info:
            action()
        assert info.value.remote_type == "ArithmeticError" and info.value.func_name.endswith("picky_add")
        assert "too much" in str(info.value)


def test_local_with_a_count_is_a_clear_config_error() -> None:
    with pytest.raises(ConfigError, match="process:N"):
        Context("local:3")


def test_sort_by_key_gives_the_partitions_asked_for_even_with_few_keys(ctx: Context) -> None:
    """As PySpark: repeated keys make some ranges empty, never fewer partitions."""
    pairs = [(i % 3, i) for i in range(30)]
    rdd = ctx.parallelize(pairs, 5).sortByKey(numSplits=6)
    assert rdd.getNumPartitions() == 6 and len(rdd.glom().collect()) == 6
    assert [k for k, _ in rdd.collect()] == sorted(k for k, _ in pairs)
    down = ctx.parallelize(pairs, 7).sortByKey(False)
    assert down.getNumPartitions() == 7
    assert [k for k, _ in down.collect()] == sorted((k for k, _ in pairs), reverse=True)
    assert ctx.parallelize([], 3).sortByKey(numSplits=4).glom().collect() == [[], [], [], []]


def test_sort_by_key_of_keys_that_cannot_be_ordered_says_so(ctx: Context) -> None:
    with pytest.raises(TypeError, match="sortByKey: the keys cannot be ordered together"):
        ctx.parallelize([(1, "a"), ("b", 2)], 2).sortByKey()


def test_sort_of_records_that_cannot_be_ordered_names_the_method_called(ctx: Context) -> None:
    """sort and sortBy sort by sortByKey's ranges: their error names them, not sortByKey."""
    mixed = [1, "a", 2.0, (1,)] * 20
    with pytest.raises(TypeError, match="^sort: the keys cannot be ordered together"):
        ctx.parallelize(mixed, 3).sort()
    with pytest.raises(TypeError, match="^sortBy: the keys cannot be ordered together"):
        ctx.parallelize([(x, 0) for x in mixed], 3).sortBy(operator.itemgetter(0))


def test_collect_as_map_of_records_that_are_not_pairs_says_so(ctx: Context) -> None:
    """A record that is not a pair, or a pair with an unhashable key: the error of a dict built of them
    (as PySpark's ``dict(collect())``), saying what collectAsMap needs; 2-item records are pairs."""
    for records, error in (([1, 2], TypeError), ([(1, 2, 3)], ValueError), ([([1], 2)], TypeError)):
        with pytest.raises(error, match="^collectAsMap needs \\(key, value\\) pairs with hashable keys: "):
            ctx.parallelize(records, 2).collectAsMap()
    assert ctx.parallelize([[1, 2], "ab", (3, 4)], 2).collectAsMap() == {1: 2, "a": "b", 3: 4}


def test_parallelize_iterates_strings_and_dicts_as_spark_does(ctx: Context) -> None:
    assert ctx.parallelize("abc", 2).collect() == ["a", "b", "c"]
    assert ctx.parallelize({1: 2, 3: 4}).collect() == [1, 3]
    with pytest.raises(TypeError, match="parallelize takes a sequence"):
        ctx.parallelize(42)


def test_take_of_a_negative_count_is_empty(ctx: Context) -> None:
    assert ctx.parallelize([1, 2, 3]).take(-1) == []
    with pytest.raises(ValueError):
        ctx.parallelize([1, 2, 3]).take("2")


def test_sample_without_a_seed_is_random_but_fixed_for_the_rdd(ctx: Context) -> None:
    rdd = ctx.parallelize(range(1000), 4).sample(0.5, False, None)
    first = rdd.collect()
    assert 300 < len(first) < 700 and rdd.collect() == first


def test_top_of_partitions_that_cannot_be_compared_is_a_job_error(ctx: Context) -> None:
    """Each partition's top is fine; comparing them in the driver fails: a JobError, not heapq's TypeError."""
    with pytest.raises(JobError) as info:
        ctx.parallelize([1, "a"], 2).top(2)
    assert info.value.remote_type == "TypeError" and "top" in str(info.value)


def test_sort_by_key_gives_equally_frequent_keys_a_partition_each(ctx: Context) -> None:
    pairs = [(i % 10, 0) for i in range(1000)]
    assert ctx.parallelize(pairs, 4).sortByKey(numSplits=10).glom().map(len).collect() == [100] * 10
    assert ctx.parallelize(pairs, 4).sortByKey(False, 10).glom().map(len).collect() == [100] * 10


# --- PySpark's argument names, for an app ported as it is ----------------------------------

@register_func
def same_pairs(it):
    return it


def test_every_shuffle_takes_sparks_numPartitions_for_numSplits(ctx: Context) -> None:
    pairs = ctx.parallelize([(i % 5, i) for i in range(40)], 4)
    other = ctx.parallelize([(i, -i) for i in range(5)], 2)
    shuffled = {
        "reduceByKey": pairs.reduceByKey(max, numPartitions=3),
        "groupByKey": pairs.groupByKey(numPartitions=3),
        "foldByKey": pairs.foldByKey(0, max, numPartitions=3),
        "sortByKey": pairs.sortByKey(False, numPartitions=3),
        "sortBy": pairs.values().sortBy(abs, numPartitions=3),
        "join": pairs.join(other, numPartitions=3),
        "cogroup": pairs.cogroup(other, numPartitions=3),
        "distinct": pairs.distinct(numPartitions=3),
        "subtractByKey": pairs.subtractByKey(other, numPartitions=3),
        "repartition": pairs.repartition(numPartitions=3),
    }
    for name, rdd in shuffled.items():
        assert rdd.getNumPartitions() == 3, name
        method = {"cogroup": "groupWith"}.get(name, name)       # an alias: the call site names the method
        assert f"{method} at test_peer_semantics.py" in rdd.toDebugString().splitlines()[0], name
    assert sorted(shuffled["reduceByKey"].collect()) == [(k, max(range(k, 40, 5))) for k in range(5)]
    assert [k for k, _ in shuffled["sortByKey"].collect()] == sorted((i % 5 for i in range(40)), reverse=True)
    with pytest.raises(TypeError, match="numSplits and numPartitions are one argument"):
        pairs.reduceByKey(max, numSplits=2, numPartitions=3)


def test_preservesPartitioning_keeps_the_partitioner_so_a_join_shuffles_neither_side(ctx: Context) -> None:
    left = ctx.parallelize([(i, i) for i in range(20)], 2).partitionBy(3)
    right = ctx.parallelize([(i, -i) for i in range(0, 20, 2)], 2).partitionBy(3)
    kept = left.mapPartitions(same_pairs, preservesPartitioning=True)
    assert kept.partitioner == left.partitioner
    assert left.mapPartitions(same_pairs).partitioner is None          # by default, as Spark's
    assert left.map(tuple, True).partitioner == left.partitioner
    assert left.flatMap(same_pairs_of, preservesPartitioning=True).partitioner == left.partitioner
    assert left.mapPartitionsWithIndex(index_and_pairs, True).partitioner == left.partitioner
    lineage = kept.join(right).toDebugString()
    assert lineage.count("+-") == 2, lineage        # the two partitionBy shuffles; none for the join
    assert "+-" in left.mapPartitions(same_pairs).join(right).toDebugString().splitlines()[2]
    assert sorted(kept.join(right).collect()) == [(i, (i, -i)) for i in range(0, 20, 2)]
    with pytest.raises(TypeError, match="preservesPartitioning is True or False"):
        left.map(tuple, "yes")


@register_func
def same_pairs_of(pair):
    return [pair]


@register_func
def index_and_pairs(i, it):
    return it


def test_textFile_takes_sparks_minPartitions_and_top_dparks_default_of_ten(ctx: Context, tmp_path) -> None:
    path = tmp_path / "lines.txt"
    path.write_text("".join(f"line {i}\n" for i in range(100)))
    rdd = ctx.textFile(str(path), minPartitions=4)
    assert rdd.getNumPartitions() >= 4 and rdd.count() == 100
    with pytest.raises(TypeError, match="numSplits and minPartitions are one argument"):
        ctx.textFile(str(path), numSplits=2, minPartitions=4)
    assert ctx.parallelize(range(30), 3).top() == list(range(29, 19, -1))


def test_setLogLevel_sets_what_gopark_logs_by_sparks_level_names(ctx: Context, caplog) -> None:
    import logging
    logger = logging.getLogger("gopark")
    before = logger.level
    try:
        ctx.setLogLevel("WARN")
        ctx.parallelize(range(4), 2).count()
        assert not [r for r in caplog.records if r.name.startswith("gopark")]
        ctx.setLogLevel("DEBUG")
        ctx.parallelize(range(4), 2).count()
        assert any(r.name.startswith("gopark.scheduler") for r in caplog.records)
        for name, level in (("WARN", logging.WARNING), ("error", logging.ERROR), ("OFF", logging.CRITICAL + 1)):
            ctx.setLogLevel(name)
            assert logger.level == level
        with pytest.raises(ConfigError, match="'LOUD' is not a log level: ALL, TRACE, DEBUG"):
            ctx.setLogLevel("LOUD")
    finally:
        logger.setLevel(before)


@register_func
def by_remainder(k):
    return k % 7


def test_partitionBy_takes_a_registered_partitionFunc_as_pyspark_does(ctx: Context) -> None:
    pairs = ctx.parallelize([(k, str(k)) for k in range(30)], 4)
    parted = pairs.partitionBy(3, by_remainder)
    assert parted.getNumPartitions() == 3
    assert parted.glom().collect() == [[(k, str(k)) for k in range(30) if k % 7 % 3 == p] for p in range(3)]
    assert parted.partitioner == pairs.partitionBy(3, by_remainder).partitioner != pairs.partitionBy(3).partitioner
    assert parted.partitionBy(3, by_remainder) is parted and pairs.partitionBy(3).partitionBy(3).toDebugString().count(
        "+-") == 1                                         # already partitioned so: no shuffle (PySpark's)
    kept = parted.mapValues(len)
    lineage = kept.join(pairs.partitionBy(3, by_remainder)).toDebugString()
    assert lineage.count("+-") == 2, lineage        # partitioned alike: the join shuffles neither side
    assert sorted(kept.join(pairs.partitionBy(numPartitions=3, partitionFunc=by_remainder)).collect()) == \
        [(k, (len(str(k)), str(k))) for k in range(30)]
    assert sorted(parted.reduceByKey(max).collect()) == [(k, str(k)) for k in range(30)]
    with pytest.raises(TypeError, match="register_func"):
        pairs.partitionBy(3, lambda k: k)
    with pytest.raises(JobError, match="TypeError"):
        ctx.parallelize([("a", 1)], 1).partitionBy(2, by_remainder).collect()   # 'a' % 7


@register_func
def by_name(k):
    return k


def test_by_key_shuffles_take_pysparks_partitionFunc(ctx: Context) -> None:
    """reduceByKey, groupByKey, combineByKey, foldByKey and aggregateByKey take PySpark's partitionFunc (third
    positional, after numPartitions, or by name): each key in partition partitionFunc(key) % n, and the result
    partitioned as partitionBy(n, partitionFunc) is (a join with that shuffles neither side)."""
    pairs = ctx.parallelize([(k % 20, k) for k in range(100)], 4)
    sums = {k: sum(v for v in range(100) if v % 20 == k) for k in range(20)}
    expected_parts = [sorted(k for k in range(20) if k % 7 % 3 == p) for p in range(3)]
    results = {
        "reduceByKey": pairs.reduceByKey(operator.add, 3, by_remainder),
        "groupByKey": pairs.groupByKey(numPartitions=3, partitionFunc=by_remainder).mapValues(sum),
        "combineByKey": pairs.combineByKey(int, operator.add, operator.add, 3, by_remainder),
        "foldByKey": pairs.foldByKey(0, operator.add, 3, partitionFunc=by_remainder),
        "aggregateByKey": pairs.aggregateByKey(0, operator.add, operator.add, 3, by_remainder),
    }
    other = ctx.parallelize([(k, -k) for k in range(20)], 2).partitionBy(3, by_remainder)
    for name, rdd in results.items():
        parts = rdd.glom().collect()
        assert [sorted(k for k, _ in part) for part in parts] == expected_parts, name
        assert dict(kv for part in parts for kv in part) == sums, name
        assert rdd.partitioner == other.partitioner, name
        joined = rdd.join(other)
        assert joined.toDebugString().count("+-") == 2, name   # the groupByKey's mapValues keeps it too
        assert sorted(joined.collect()) == [(k, (sums[k], -k)) for k in range(20)], name
    with pytest.raises(TypeError, match="register_func"):
        pairs.reduceByKey(operator.add, 3, lambda k: k)
    for process_dependent in (hash, id, str.__hash__, bytes.__hash__, object.__hash__,
                              operator.methodcaller("__hash__"), partial(str.__hash__)):
        with pytest.raises(TypeError, match="groupByKey: the builtin hash of a str"):
            pairs.groupByKey(3, process_dependent)
    with pytest.raises(JobError, match=r"TypeError: the partition function .*by_name.* returned str 'k0'"):
        ctx.parallelize([("k0", 1)], 1).reduceByKey(operator.add, 2, by_name).collect()
    with pytest.raises(JobError, match=r"bad operand type for abs\(\): 'str' \(in abs\)"):   # not the map before it
        ctx.parallelize([("k0", 1)], 1).mapValues(by_name).reduceByKey(operator.add, 2, abs).collect()
    by_hash = pairs.reduceByKey(operator.add, 3, portable_hash)
    assert by_hash.partitioner == pairs.reduceByKey(operator.add, 3).partitioner


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_the_parallel_option_given_is_every_shuffles_default_as_sparks_default_parallelism(master: str) -> None:
    with Context(master, parallel=3, quiet=True) as ctx:
        grown = ctx.parallelize(range(10), 8)
        for i in range(4):
            grown = grown.union(ctx.parallelize([i], 2))       # 16 partitions: its shuffles stay at 3
        assert grown.getNumPartitions() == 16
        assert grown.distinct().getNumPartitions() == 3 and sorted(grown.distinct().collect()) == list(range(10))
        pairs = grown.map(partial(operator.mul, 1)).keyBy(bool)
        for shuffled in (pairs.reduceByKey(operator.add), pairs.groupByKey(), pairs.join(pairs),
                         pairs.groupWith(pairs), pairs.sortByKey()):
            assert shuffled.getNumPartitions() == 3
        assert pairs.reduceByKey(operator.add, 5).getNumPartitions() == 5        # asked for: as asked
        assert dict(pairs.reduceByKey(operator.add).collect()) == {False: 0, True: 45 + 0 + 1 + 2 + 3}
    with Context(master, quiet=True) as ctx:                    # not given: the most of the parents'
        assert ctx.parallelize(range(10), 8).union(ctx.parallelize([1], 2)).distinct().getNumPartitions() == 10


def test_a_union_of_rdds_partitioned_alike_is_partitioned_so_too(ctx: Context) -> None:
    """Spark's PartitionerAwareUnionRDD: partition i of the union is partition i of each, the partitioner is
    kept, and a join with it shuffles neither side; RDDs partitioned otherwise, or not, are concatenated."""
    pairs = ctx.parallelize([(k, k) for k in range(8)], 3)
    parted = pairs.partitionBy(2)
    both = parted.union(parted)
    assert both.getNumPartitions() == 2 and both.partitioner == parted.partitioner
    assert both.glom().collect() == [part + part for part in parted.glom().collect()]
    assert ctx.union([parted, parted.mapValues(str)]).getNumPartitions() == 2
    joined = both.join(parted)
    assert joined.toDebugString().count("+-") == 1, joined.toDebugString()   # parted's one shuffle
    assert sorted(joined.collect()) == sorted([(k, (k, k)) for k in range(8)] * 2)
    assert parted.union(pairs).getNumPartitions() == 5 and parted.union(pairs).partitioner is None
    assert parted.union(pairs.partitionBy(3)).getNumPartitions() == 5


def test_repartitionAndSortWithinPartitions_sorts_each_partition_of_one_shuffle(ctx: Context) -> None:
    """PySpark's: partitioned by key (by hash, or partitionFunc), each partition sorted by key, or by
    keyfunc(key), ascending or not; the partitioner is kept; the sort spills past the memory budget."""
    records = [((k * 37) % 101, str(k)) for k in range(300)]
    pairs = ctx.parallelize(records, 5)
    by_hash = pairs.repartitionAndSortWithinPartitions(4)
    parts = by_hash.glom().collect()
    assert len(parts) == 4 and sorted(kv for part in parts for kv in part) == sorted(records)
    for p, part in enumerate(parts):
        assert [k for k, _ in part] == sorted(k for k, _ in part) and all(portable_hash(k) % 4 == p for k, _ in part)
    assert by_hash.partitioner == pairs.partitionBy(4).partitioner
    descending = pairs.repartitionAndSortWithinPartitions(3, by_remainder, ascending=False).glom().collect()
    assert [[k for k, _ in part] for part in descending] == \
        [sorted((k for k, _ in records if k % 7 % 3 == p), reverse=True) for p in range(3)]
    keyed = pairs.repartitionAndSortWithinPartitions(numPartitions=2, keyfunc=negated).glom().collect()
    assert [[k for k, _ in part] for part in keyed] == \
        [sorted((k for k, _ in records if portable_hash(k) % 2 == p), reverse=True) for p in range(2)]
    assert pairs.repartitionAndSortWithinPartitions().getNumPartitions() == 5
    assert pairs.repartitionAndSortWithinPartitions(numSplits=2).glom().collect() == \
        pairs.repartitionAndSortWithinPartitions(2).glom().collect()        # SPEC: every shuffle takes numSplits
    assert pairs.partitionBy(numSplits=3).getNumPartitions() == 3
    for bad in (pairs.repartitionAndSortWithinPartitions, pairs.partitionBy):
        with pytest.raises(ValueError, match="numPartitions must be a positive integer, not 0"):
            bad(0)
        with pytest.raises(TypeError, match="numSplits and numPartitions are one argument"):
            bad(2, numSplits=2)
    with pytest.raises(TypeError, match="register_func"):
        pairs.repartitionAndSortWithinPartitions(2, keyfunc=lambda k: -k)
    with pytest.raises(JobError, match="TypeError"):        # keys that do not compare
        ctx.parallelize([(1, "a"), ("b", 2)], 1).repartitionAndSortWithinPartitions(1).collect()


def test_rdds_of_two_contexts_are_refused_by_every_method_that_takes_another_rdd() -> None:
    """Each Context numbers its own RDDs and shuffles: mixed in one job, one side's data would stand for
    the other's. Every method that takes another RDD refuses it at the call, as union does."""
    with Context("local", quiet=True) as c1, Context("local", quiet=True) as c2:
        a, b = c1.parallelize([(1, "a")], 1), c2.parallelize([(1, "b")], 1)
        calls = [a.join, a.leftOuterJoin, a.rightOuterJoin, a.outerJoin, a.cartesian, a.zip, a.groupWith,
                 a.cogroup, a.union, a.subtract, a.subtractByKey, a.intersection, lambda o: a.groupWith([a, o]),
                 lambda o: c1.union([o]), lambda o: c1.union([a, o])]
        for call in calls:
            with pytest.raises(ValueError, match="Context"):
                call(b)
        assert a.join(c1.parallelize([(1, "c")], 1)).collect() == [(1, ("a", "c"))]


@register_func
def add_six(acc, x):
    acc.add(6)
    return x


def test_an_accumulator_whose_merge_fails_in_the_driver_fails_the_job(ctx: Context) -> None:
    """Each task adds 6 once (no merge there); the driver's second merge goes over 10 and raises: a JobError
    naming the merge function (not a bare exception from the scheduler, nor an update dropped)."""
    acc = ctx.accumulator(0, picky_add)
    with pytest.raises(JobError, match="^an accumulator: merging a task's update failed in the driver: "
                       "ArithmeticError") as info:
        ctx.parallelize(range(4), 4).map(partial(add_six, acc)).count()
    assert info.value.func_name.endswith("picky_add") and info.value.remote_type == "ArithmeticError"
    assert ctx.parallelize(range(4), 2).count() == 4


@register_func
def negated(k):
    return -k


@register_func
def extend_in_place(acc, more):
    acc.extend(more)          # allowed by Spark's docs: op may change its first argument and return it
    return acc


@register_func
def as_list(x):
    return [x]


def test_a_join_with_an_rdd_sorted_by_a_keyfunc_finds_every_key(ctx: Context) -> None:
    """sortByKey(keyfunc=) ranges the keys by keyfunc(key): its result is not partitioned by its keys, and a
    join with it must shuffle it (it took its partitioner as its keys' own and missed 3 keys in 4)."""
    a = ctx.parallelize([(i, "a") for i in range(100)], 4).sortByKey(keyfunc=negated, numSplits=4)
    b = ctx.parallelize([(i, "b") for i in range(100)], 2)
    assert a.collect() == [(i, "a") for i in reversed(range(100))]
    assert a.join(b).count() == 100 and sorted(a.join(b).keys().collect()) == list(range(100))
    assert a.cogroup(b).count() == 100


def test_fold_leaves_the_drivers_zero_value_as_it_was(ctx: Context) -> None:
    """As aggregate does, and Spark's fold, which merges the partitions' results into a clone of zero."""
    zero: list = []
    assert ctx.parallelize([1, 2, 3, 4], 2).map(as_list).fold(zero, extend_in_place) == [1, 2, 3, 4]
    assert zero == []


def test_a_join_with_a_sorted_rdd_takes_keys_that_cannot_be_ordered_with_its_own(ctx: Context) -> None:
    """Keys of another type on the other side (None, a str among ints) only do not match, as in PySpark,
    whose joins hash: the sorted side's range partitioner is not reused to place them."""
    a = ctx.parallelize([(1, "a"), (2, "b"), (3, "c")], 2).sortByKey()
    b = ctx.parallelize([(None, "x"), (1, "y"), ("s", "z")], 2)
    assert a.join(b).collect() == [(1, ("a", "y"))]
    assert sorted(map(repr, a.cogroup(b).collect())) == sorted(map(repr, [
        (1, (["a"], ["y"])), (2, (["b"], [])), (3, (["c"], [])), (None, ([], ["x"])), ("s", ([], ["z"]))]))
    assert sorted(a.leftOuterJoin(b).collect()) == [(1, ("a", "y")), (2, ("b", None)), (3, ("c", None))]


def test_verbose_logs_at_debug_while_its_context_runs_and_no_longer_after() -> None:
    """``-v`` (verbose=True) is the Context's: once it stops, a later Context of the same process logs as
    before; a level the app set meanwhile (setLogLevel) is kept."""
    import logging
    logger = logging.getLogger("gopark")
    before = logger.level
    try:
        with Context("local", verbose=True, quiet=True) as c:
            assert logger.level == logging.DEBUG and c.parallelize(range(3), 2).count() == 3
        assert logger.level == before
        with Context("local", verbose=True, quiet=True) as c:
            c.setLogLevel("ERROR")
        assert logger.level == logging.ERROR
    finally:
        logger.setLevel(before)
