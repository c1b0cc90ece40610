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
