"""Semantics that DPark's and Spark's own tests rely on, found by porting them (each in every mode)."""
from __future__ import annotations

import pytest

from gopark import ConfigError, Context, JobError, register_func


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
