"""Property: every value of SPEC section 3's data types comes back equal and of the same types."""
from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gopark import Context, register_func
from gopark.serialize import packb, unpackb

hashable = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=8)
data = st.recursive(
    hashable,
    lambda inner: (st.lists(inner, max_size=4) | st.tuples(inner, inner) | st.dictionaries(hashable, inner, max_size=3)
                   | st.sets(hashable, max_size=3) | st.frozensets(hashable, max_size=3)),
    max_leaves=20)


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same type all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


@settings(max_examples=400, deadline=None)
@given(data)
def test_round_trip_keeps_values_and_types(value: Any) -> None:
    assert same(unpackb(packb(value)), value)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(hashable, data), max_size=20))
def test_round_trip_through_a_shuffle(pairs: list) -> None:
    with Context("local", quiet=True, parallel=2) as ctx:
        got = ctx.parallelize(pairs, 3).partitionByKey(2).collect()
    left = list(got)
    for p in pairs:                      # the same records, each of the same types, in any order
        match = next((i for i, g in enumerate(left) if same(g, p)), None)
        assert match is not None, (p, got)
        left.pop(match)
    assert left == []


@register_func
def keep_first(a: Any, b: Any) -> Any:
    return a


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(hashable, data), max_size=20))
def test_round_trip_of_a_reduce_sides_merged_dict(pairs: list) -> None:
    """A reducer's merged dict travels to the driver whole (one msgpack map): keys, values and their
    order come back as a dict built in one process would have them."""
    expected: dict = {}
    for k, v in pairs:
        expected.setdefault(k, v)
    with Context("local", quiet=True) as ctx:
        merged = ctx.parallelize(pairs, 1).reduceByKey(keep_first, 1)
        as_map, as_list = merged.collectAsMap(), merged.collect()
    assert same(as_map, expected) and same(list(as_map), list(expected))
    assert len(as_list) == len(expected) and all(same(g, e) for g, e in zip(as_list, expected.items()))
