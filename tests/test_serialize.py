"""SPEC section 3: data keeps its types through shuffles and collect; anything else is a SerializationError."""
from __future__ import annotations

import collections
import enum
import math
from functools import partial

import pytest

from gopark import JobError, SerializationError, register_func

VALUES = [
    None, True, False, 0, -1, 2 ** 63 - 1, -(2 ** 63), 2 ** 64 - 1, 2 ** 64, 2 ** 100, -(2 ** 100), -(2 ** 63) - 1,
    1.5, -0.0, float("inf"), -2.5e300, "", "héllo ✓ 😀", b"", b"\x00\xff bytes",
    (), (1,), (1, (2, (3,))), [], [1, [2, [3]]], [(), []], ([],), [1, "1", 1.0, True, None],
    set(), {1, 2, 3}, {(1, 2), "a", b"b", 2 ** 70}, frozenset(), frozenset({"a", (1, 2)}),
    {}, {"a": 1}, {(1, 2): "tuple key", frozenset({1}): "frozenset key", 2 ** 70: "big key", None: "none",
                   b"k": "bytes key", 1.5: "float key", ("nested", (1,)): ["v"]},
    {"nested": [{"t": (1, {2}, frozenset({3}))}, ({"x": b"y"},)], "empty": ((), [], {}, set(), frozenset())},
]

HASHABLE_KEYS = [None, 0, -5, 2 ** 64, 2 ** 90, -(2 ** 90), 1.5, "k", "ünï", b"k", (), (1, "a"), ((1,), (2, 3)),
                 frozenset(), frozenset({1, (2, 3)})]


def same(a, b) -> bool:
    """Equal and of the same types all the way down (1 == 1.0 == True and {1} == frozenset({1}) are not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        if a.keys() != b.keys():
            return False
        keys_b = {k: k for k in b}
        return all(same(k, keys_b[k]) and same(a[k], b[k]) for k in a)
    if isinstance(a, (set, frozenset)):
        items_b = {x: x for x in b}
        return a == b and all(same(x, items_b[x]) for x in a)
    return a == b


def assert_same(got, want):
    assert same(got, want), f"{got!r} is not exactly {want!r}"


@register_func
def identity(x):
    return x


@register_func
def pick(values, i):
    return values[i]


@register_func
def keep_first(a, b):
    return a


@register_func
def add(a, b):
    return a + b


@register_func
def read_broadcast(b, i):
    return b.value[i]


class Thing:
    """Not data."""


@register_func
def make_thing(x):
    return Thing()


@register_func
def pair_with_thing(x):
    return (x % 2, Thing())


@register_func
def add_thing(acc, x):
    acc.add(Thing())
    return x


@register_func
def pair_with_complex(x):
    return (x, complex(x, 1))


def test_the_same_checker_tells_types_apart():
    assert not same((1, 2), [1, 2])
    assert not same({1}, frozenset({1}))
    assert not same([1], [1.0])
    assert not same([1], [True])
    assert not same({(1,): 0}, {(1.0,): 0})
    assert same(VALUES, list(VALUES))


def test_collect_keeps_types(ctx):
    assert_same(ctx.parallelize(VALUES, 3).collect(), VALUES)


def test_map_keeps_types(ctx):
    assert_same(ctx.parallelize(VALUES, 4).map(identity).collect(), VALUES)


def test_bound_arguments_keep_types(ctx):
    got = ctx.parallelize(range(len(VALUES)), 3).map(partial(pick, VALUES)).collect()
    assert_same(got, VALUES)


def test_broadcast_keeps_types(ctx):
    b = ctx.broadcast(VALUES)
    assert_same(ctx.parallelize(range(len(VALUES)), 3).map(partial(read_broadcast, b)).collect(), VALUES)


def test_shuffle_keeps_value_types(ctx):
    pairs = list(enumerate(VALUES))
    assert_same(ctx.parallelize(pairs, 3).partitionByKey(4).collectAsMap(), dict(pairs))
    assert_same(ctx.parallelize(pairs, 3).groupByKey(2).collectAsMap(), {i: [v] for i, v in pairs})
    assert_same(ctx.parallelize(pairs, 3).reduceByKey(keep_first, 2).collectAsMap(), dict(pairs))
    joined = ctx.parallelize(pairs, 2).join(ctx.parallelize(pairs, 3)).collectAsMap()
    assert_same(joined, {i: (v, v) for i, v in pairs})


def test_shuffle_keeps_key_types(ctx):
    pairs = [(k, i) for i, k in enumerate(HASHABLE_KEYS)]
    got = ctx.parallelize(pairs * 2, 3).groupByKey(4).collect()
    assert len(got) == len(HASHABLE_KEYS)
    for k, vs in got:
        i = HASHABLE_KEYS.index(k)
        assert_same(k, HASHABLE_KEYS[i])
        assert vs == [i, i]
    counts = ctx.parallelize(pairs, 3).countByKey()
    assert_same(counts, {k: 1 for k in HASHABLE_KEYS})          # a plain dict: data, which can be broadcast
    assert ctx.broadcast(counts).value == counts
    assert {repr(k) for k in ctx.parallelize(HASHABLE_KEYS * 2, 3).distinct(2).collect()} == {
        repr(k) for k in HASHABLE_KEYS}


def test_big_ints_in_shuffles(ctx):
    pairs = [("a", 2 ** 70), ("a", -(2 ** 65)), ("b", 3), ("b", 2 ** 64), ("a", 1), ("c", -(2 ** 200))] * 3
    sums = ctx.parallelize(pairs, 3).reduceByKey(add, 2).collectAsMap()
    assert_same(sums, {"a": 3 * (2 ** 70 - 2 ** 65 + 1), "b": 3 * (3 + 2 ** 64), "c": -3 * 2 ** 200})
    assert ctx.parallelize([2 ** 64 - 1] * 4, 2).reduce(add) == 4 * (2 ** 64 - 1)


def test_ints_of_any_size(ctx):
    """Beyond Python's limit of 4300 decimal digits for str(int): as a record, a key, a result, a bound argument."""
    huge = [2 ** 20_000 + 1, -(3 ** 30_000), 2 ** 64, -(2 ** 63) - 1, 2 ** 63]
    assert_same(ctx.parallelize(huge, 2).collect(), huge)
    assert_same(ctx.parallelize([(k, 1) for k in huge] * 2, 2).reduceByKey(add, 3).collectAsMap(),
                {k: 2 for k in huge})
    assert ctx.parallelize(huge, 3).reduce(add) == sum(huge)
    assert_same(ctx.parallelize([0, 1], 2).map(partial(pick, huge)).collect(), huge[:2])


def test_floats_and_none_in_shuffles(ctx):
    pairs = [(None, 0.1), (True, 0.2), (None, float("-inf")), (1.25, None)]
    got = ctx.parallelize(pairs, 2).groupByKey(2).collectAsMap()
    assert_same({k: sorted(v, key=repr) for k, v in got.items()},
                {None: sorted([0.1, float("-inf")], key=repr), True: [0.2], 1.25: [None]})


# --- not data -----------------------------------------------------------------------------

NOT_DATA = [object(), Thing(), complex(1, 2), bytearray(b"x"), range(3), print]


@pytest.mark.parametrize("value", NOT_DATA, ids=lambda v: type(v).__name__)
def test_parallelize_of_non_data(ctx, value):
    with pytest.raises(SerializationError) as info:
        ctx.parallelize([1, [2, {"k": value}]], 2)
    assert type(value).__name__ in str(info.value)
    assert "parallelize" in str(info.value)


Point = collections.namedtuple("Point", "x y")


class Color(enum.IntEnum):
    RED = 1


class Name(str):
    pass


SUBCLASSES = [Point(1, 2), collections.Counter("aab"), collections.OrderedDict(a=1),
              collections.defaultdict(int), Color.RED, Name("x")]


@pytest.mark.parametrize("value", SUBCLASSES, ids=lambda v: type(v).__name__)
def test_a_subclass_of_a_data_type_is_refused_with_its_base(ctx, value):
    """It would come back as its base type (a namedtuple as a tuple): refused, naming what to convert to."""
    base = next(b for b in (tuple, dict, int, str) if isinstance(value, b))
    with pytest.raises(SerializationError) as info:
        ctx.parallelize([value], 1)
    assert type(value).__name__ in str(info.value) and f"convert it with {base.__name__}(...)" in str(info.value)
    assert ctx.parallelize([base(value)], 1).collect() == [base(value)]


@register_func
def make_counter(x):
    return collections.Counter([x, x])


def test_a_task_that_returns_a_subclass(ctx):
    with pytest.raises(SerializationError) as info:
        ctx.parallelize([1, 2], 2).map(make_counter).collect()
    check_task_error(info, "Counter", "collect")


@register_func
def merge_counters(a, b):
    return a + b


@pytest.mark.parametrize("then", ["reduce", "filter-reduce"])
def test_a_cached_record_that_is_not_data_is_blamed_on_the_function_that_made_it(ctx, then):
    """Not on the function that reads the cache (the reduce's), as it was."""
    made = ctx.parallelize([1, 2], 2).map(make_counter)
    cached = (made.filter(bool) if then == "filter-reduce" else made).cache()
    with pytest.raises(SerializationError) as info:
        cached.reduce(merge_counters)
    assert info.value.func_name == make_counter.__gopark_name__ and "in cache" in info.value.remote_message
    assert "Counter" in info.value.remote_message


def test_broadcast_of_non_data(ctx):
    with pytest.raises(SerializationError) as info:
        ctx.broadcast({"a": object()})
    assert "object" in str(info.value) and "broadcast" in str(info.value)


def test_partial_with_non_data_argument(ctx):
    rdd = ctx.parallelize([1, 2], 2)
    with pytest.raises(SerializationError) as info:
        rdd.map(partial(pick, Thing()))
    assert "Thing" in str(info.value) and "map" in str(info.value)
    with pytest.raises(SerializationError) as info:
        rdd.filter(partial(pick, values=[1, object()]))
    assert "object" in str(info.value) and "filter" in str(info.value)


def test_other_driver_values_that_are_not_data(ctx):
    with pytest.raises(SerializationError):
        ctx.parallelize([1, 2], 2).fold(Thing(), add)
    with pytest.raises(SerializationError):
        ctx.accumulator(Thing())


def check_task_error(info, type_name, operation):
    err = info.value
    assert isinstance(err, JobError), type(err)
    assert isinstance(err, SerializationError), type(err)
    text = str(err)
    assert type_name in text, text
    assert operation in text, text


def test_task_that_returns_non_data(ctx):
    with pytest.raises(SerializationError) as info:
        ctx.parallelize([1, 2, 3], 2).map(make_thing).collect()
    check_task_error(info, "Thing", "collect")


def test_task_that_shuffles_non_data(ctx):
    with pytest.raises(JobError) as info:
        ctx.parallelize(range(10), 2).map(pair_with_thing).groupByKey().collect()
    check_task_error(info, "Thing", "shuffle")
    with pytest.raises(JobError) as info:
        ctx.parallelize(range(10), 2).map(pair_with_complex).reduceByKey(add).collect()
    check_task_error(info, "complex", "shuffle")


@register_func
def concat_as_bytearray(a, b):
    return bytearray(a + b)


def test_a_reduce_side_result_that_is_not_data(ctx):
    """collect of a reduceByKey takes the merged dict's pairs in C: still checked."""
    rdd = ctx.parallelize([("k", b"a"), ("k", b"b"), ("j", b"c")], 2).reduceByKey(concat_as_bytearray, 1)
    with pytest.raises(SerializationError) as info:
        rdd.collect()
    check_task_error(info, "bytearray", "collect")
    with pytest.raises(SerializationError) as info:      # the merged dict, sent whole
        rdd.collectAsMap()
    check_task_error(info, "bytearray", "collectAsMap")
    ok = ctx.parallelize([("k", b"a"), ("k", b"b"), ("j", b"c")], 2).reduceByKey(add, 2)
    assert sorted(ok.collect()) == [("j", b"c"), ("k", b"ab")] or sorted(ok.collect()) == [("j", b"c"), ("k", b"ba")]


def test_task_that_adds_non_data_to_an_accumulator(ctx):
    acc = ctx.accumulator([])
    with pytest.raises(JobError) as info:
        ctx.parallelize(range(2), 2).map(partial(add_thing, acc)).count()     # one add per task
    check_task_error(info, "Thing", "accumulator")
    assert acc.value == []


def test_context_still_works_after_serialization_errors(ctx):
    with pytest.raises(SerializationError):
        ctx.parallelize(range(4), 2).map(make_thing).take(1)
    assert ctx.parallelize(range(4), 2).map(identity).collect() == [0, 1, 2, 3]
