"""Narrow operations fused with the map-side combine (gopark.pipeline): same results as unfused.

Every chain ends in a combining shuffle (reduceByKey / combineByKey /
foldByKey), where the trailing per-record operations run in one generated
loop. Each result is checked against plain Python, and against the same chain
with a ``cache()`` cutting it (a cached RDD is never fused through), in every
mode.
"""
from __future__ import annotations

import collections
import re
import sys
from functools import partial

import pytest
from apps.wc_app import add, pair, words  # the SPEC section 2 word count's functions

from gopark import JobError, pipeline, register_func
from gopark.partitioner import HashPartitioner

LINES = ["the cat sat", "", "on the mat the end", "a b c a b a", "x"] * 7


@register_func
def not_a(word):
    return word != "a"


@register_func
def length(word):
    return len(word)


@register_func
def letters(word):
    return list(word)


@register_func
def twice(v):
    return [v, v]


@register_func
def by_first(word):
    return (word[:1], word)


@register_func
def swap(kv):
    return (kv[1], kv[0])


@register_func
def as_list(v):
    return [v]


@register_func
def extend(c, v):
    return c + [v]


@register_func
def concat(a, b):
    return a + b


@register_func
def bad_record(word):
    return word            # a str, not a pair


@register_func
def fails_on_x(word):
    if word == "x":
        raise KeyError("no x here")
    return (word, 1)


def reference_counts(keyed):
    counts = collections.Counter()
    for k, v in keyed:
        counts[k] += v
    return dict(counts)


ALL_WORDS = [w for line in LINES for w in line.split()]


# name -> (the chain up to the combine, as steps on the lines' RDD; the expected counts)
CHAINS = {
    "flatMap/map": ([("flatMap", words), ("map", partial(pair, n=1))],
                    reference_counts((w, 1) for w in ALL_WORDS)),
    "map after a cut": ([("flatMap", words), ("cache", None), ("map", pair)],
                        reference_counts((w, 1) for w in ALL_WORDS)),
    "flatMap/filter/map": ([("flatMap", words), ("filter", not_a), ("map", pair)],
                           reference_counts((w, 1) for w in ALL_WORDS if w != "a")),
    "flatMap/map/mapValue": ([("flatMap", words), ("map", pair), ("mapValue", partial(add, b=2))],
                             reference_counts((w, 3) for w in ALL_WORDS)),
    "flatMap/map/flatMapValue": ([("flatMap", words), ("map", pair),
                                  ("flatMapValue", twice)],
                                 reference_counts((w, 2) for w in ALL_WORDS)),
    "flatMap/map/keys/map": ([("flatMap", words), ("map", by_first), ("keys", None), ("map", pair)],
                             reference_counts((w[:1], 1) for w in ALL_WORDS)),
    "flatMap/map/values/map": ([("flatMap", words), ("map", by_first), ("values", None), ("map", pair)],
                               reference_counts((w, 1) for w in ALL_WORDS)),
    "flatMap/flatMap/map": ([("flatMap", words), ("flatMap", letters), ("map", pair)],
                            reference_counts((c, 1) for w in ALL_WORDS for c in w)),
}


def build(rdd, steps, cut_at=None):
    for i, (op, f) in enumerate(steps):
        if i == cut_at or op == "cache":
            rdd = rdd.cache()
        if op in ("keys", "values"):
            rdd = getattr(rdd, op)()
        elif op != "cache":
            rdd = getattr(rdd, op)(f)
    return rdd


@pytest.mark.parametrize("name", list(CHAINS))
def test_fused_chains_equal_plain_python(ctx, name):
    """Each chain: fused, and cut by a cache() before its last step (so not fused through)."""
    steps, expected = CHAINS[name]
    lines = ctx.parallelize(LINES, 3)
    fused = dict(build(lines, steps).reduceByKey(add).collect())
    cut = dict(build(lines, steps, cut_at=len(steps) - 1).reduceByKey(add).collect())
    assert fused == expected
    assert cut == expected


def test_combine_by_key_with_create(ctx):
    rdd = ctx.parallelize(LINES, 2).flatMap(words).map(by_first)
    got = dict(rdd.combineByKey(as_list, extend, concat).collect())
    expected = collections.defaultdict(list)
    for w in ALL_WORDS:
        expected[w[:1]].append(w)
    assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in expected.items()}


def test_distinct_goes_through_the_fused_loop(ctx):
    assert sorted(ctx.parallelize(LINES, 4).flatMap(words).filter(not_a).distinct().collect()) \
        == sorted(set(ALL_WORDS) - {"a"})


def test_a_record_that_is_not_a_pair_is_named(ctx):
    with pytest.raises(JobError) as info:
        ctx.parallelize(LINES, 2).flatMap(words).map(bad_record).reduceByKey(add).collect()
    # the first word of either partition: 'the', or 'on', which a str of two is not a pair either
    assert re.search(r"pairs, got str: '(the|on)'", str(info.value)), info.value


def test_a_failing_user_function_is_named_through_the_fused_loop(ctx):
    with pytest.raises(JobError) as info:
        ctx.parallelize(LINES, 2).flatMap(words).map(fails_on_x).reduceByKey(add).collect()
    assert info.value.remote_type == "KeyError" and "no x here" in str(info.value)
    assert info.value.func_name.endswith("fails_on_x")


def test_spill_inside_the_fused_loop(written_chunks):
    """The fused loop checks the budget: a tiny --mem spills map-side and still counts right."""
    from gopark import Context
    many = [" ".join(f"w{(i * 7919 + j) % 50000}" for j in range(20)) for i in range(6000)]
    with Context("local", mem=8, quiet=True) as c:   # 8 MB: the map side spills
        got = dict(c.parallelize(many, 2).flatMap(words).map(pair).reduceByKey(add).collect())
    assert got == reference_counts((w, 1) for line in many for w in line.split())
    spilled = [name for name, n in collections.Counter(name for name, _ in written_chunks).items() if n > 1]
    assert any("shuffle-" in name for name in spilled), "no map output was written in more than one chunk"


def test_the_loop_is_generated_once_per_shape():
    steps = pipeline._slots([("flatMap", words), ("map", pair)], inlining=False)[0]
    merge = pipeline._Slot("merge")
    a = pipeline.combine_loop(steps, merge, None)
    assert pipeline.combine_loop(pipeline._slots([("flatMap", str.split), ("map", tuple)], False)[0], merge, None) is a
    assert pipeline.combine_loop(steps, merge, pipeline._Slot("create")) is not a
    with pytest.raises(ValueError):
        pipeline.combine_loop(pipeline._slots([("mapPartitions", words)], False)[0], merge, None)


def test_each_operation_as_plain_python():
    """Each generated step, alone, in each consumer: what the operation means in plain Python."""
    records = [("a", 1), ("b", 2), ("a", 3), ("c", 0)]
    fns = {"map": swap, "flatMap": lambda kv: [kv, kv], "filter": lambda kv: kv[1],
           "mapValue": str, "flatMapValue": range, "keys": None, "values": None, "keyBy": len,
           "keyBySelf": None}
    meaning = {
        "keyBy": [(len(kv), kv) for kv in records],
        "keyBySelf": [(kv, kv) for kv in records],
        "map": [swap(kv) for kv in records],
        "flatMap": [x for kv in records for x in [kv, kv]],
        "filter": [kv for kv in records if kv[1]],
        "mapValue": [(k, str(v)) for k, v in records],
        "flatMapValue": [(k, x) for k, v in records for x in range(v)],
        "keys": [k for k, _ in records],
        "values": [v for _, v in records],
    }
    for op, f in fns.items():
        assert list(pipeline.iterate(iter(records), [(op, f)])) == meaning[op], op
        then = [("map", pair)] if op in ("keys", "values") else []
        expected: dict = {}
        for x in meaning[op]:
            k, v = pair(x) if then else x
            expected[k] = v if k not in expected else add(expected[k], v)
        combined: dict = {}
        pipeline.combine(iter(records), [(op, f), *then], combined, None, add, lambda k, c: None, TypeError)
        assert combined == expected, op
        folded = pipeline.fold(iter(records), [(op, f), ("map", str)], "", add, object())
        assert folded == "".join(map(str, meaning[op])), op


def test_sys_settrace_sees_user_functions():
    """Debuggers and coverage see calls into user functions from the generated loop."""
    seen = []

    def tracer(frame, event, arg):
        if event == "call":
            seen.append(frame.f_code.co_name)

    combined: dict = {}
    sys.settrace(tracer)
    try:
        pipeline.combine(iter(["a b"]), [("flatMap", words), ("map", pair)], combined, None, add,
                         lambda k, c: None, TypeError)
    finally:
        sys.settrace(None)
    assert combined == {"a": 1, "b": 1}
    assert "words" in seen and "pair" in seen


@register_func
def add_len(acc, word):
    return acc + len(word)


@pytest.mark.parametrize("name", list(CHAINS))
def test_reduce_fold_aggregate_through_fused_chains(ctx, name):
    """The actions' fold runs in the same loop as the chain: same values as plain Python."""
    steps, _ = CHAINS[name]
    lines = ctx.parallelize(LINES, 3)
    records = build(lines, steps).collect()          # collect is not fused: the reference
    rdd = build(lines, steps).map(swap)
    values = [kv[0] for kv in map(swap, records)]
    assert rdd.keys().reduce(add) == sum(values)
    assert rdd.keys().fold(0, add) == sum(values)
    assert rdd.values().map(str).aggregate(0, add_len, add) == sum(len(str(kv[0])) for kv in records)


def test_reduce_with_empty_partitions_through_a_fused_chain(ctx):
    rdd = ctx.parallelize(["", "", "a b", ""], 4).flatMap(words).map(length)
    assert rdd.reduce(add) == 2
    assert rdd.fold(10, add) == 2 + 10 * 5    # the zero once per partition and once in the driver
    with pytest.raises(ValueError):
        ctx.parallelize(["", ""], 2).flatMap(words).map(length).reduce(add)


@register_func
def stop_at(n, x):
    if x == n:
        raise StopIteration()
    return x


@register_func
def stop_in_flat(n, x):
    return [stop_at(n, x)]


@register_func
def keep_unless(n, x):
    return stop_at(n, x) is not None


@pytest.mark.parametrize("how", ["map", "filter", "flatMap", "map then collect", "map then reduceByKey",
                                 "map then reduce", "mapValue", "map then count", "sort by key function",
                                 "map then groupByKey"])
def test_a_stop_iteration_from_the_app_fails_the_task(ctx, how):
    """Never a silently shorter partition (SPARK-23754): the job fails, naming the function."""
    nums = ctx.parallelize(range(10), 2)
    stop = partial(stop_at, 5)
    run = {
        "map": lambda: nums.map(stop).collect(),
        "filter": lambda: nums.filter(partial(keep_unless, 5)).collect(),
        "flatMap": lambda: nums.flatMap(partial(stop_in_flat, 5)).collect(),
        "map then collect": lambda: nums.map(stop).map(str).collect(),
        "map then reduceByKey": lambda: nums.map(stop).map(pair).reduceByKey(add).collect(),
        "map then reduce": lambda: nums.map(stop).reduce(add),
        "mapValue": lambda: nums.map(twice).map(tuple).mapValue(stop).collect(),
        "map then count": lambda: nums.map(stop).count(),
        "sort by key function": lambda: nums.sort(key=stop).collect(),
        "map then groupByKey": lambda: nums.map(stop).map(pair).groupByKey().collect(),
    }[how]
    with pytest.raises(JobError) as info:
        run()
    assert info.value.remote_type == "StopIterationInTask"
    assert "StopIteration" in str(info.value) and info.value.func_name.endswith("stop_at")


@register_func
def dup(x):
    return [x, x]


@register_func
def alone(x):
    return [x]


@pytest.mark.parametrize("depth", [8, 9, 25])
def test_a_long_chain_of_flat_maps_is_cut_into_several_loops(ctx, depth):
    """Python allows 20 nested blocks in a function: deep chains run as several generated loops."""
    rdd = ctx.parallelize([1, 2], 2)
    for i in range(depth):
        rdd = rdd.flatMap(dup if i % 8 == 0 else alone)     # a few doublings, many levels
    copies = 2 ** len(range(0, depth, 8))
    assert rdd.count() == 2 * copies
    assert rdd.reduce(add) == 3 * copies
    assert dict(rdd.map(pair).reduceByKey(add).collect()) == {1: copies, 2: copies}


@register_func
def add_until(n, a, b):
    if a + b > n:
        raise StopIteration()
    return a + b


@pytest.mark.parametrize("how", ["reduce", "fold", "aggregate", "reduce after cache"])
def test_a_stop_iteration_in_the_fold_function_fails_the_same_way_fused_or_not(ctx, how):
    nums = ctx.parallelize(range(10), 2)
    stop = partial(add_until, 5)
    run = {"reduce": lambda: nums.reduce(stop), "fold": lambda: nums.fold(0, stop),
           "aggregate": lambda: nums.aggregate(0, stop, add),
           "reduce after cache": lambda: nums.map(str).map(int).cache().reduce(stop)}[how]
    with pytest.raises(JobError) as info:
        run()
    assert info.value.remote_type == "StopIterationInTask" and info.value.func_name.endswith("add_until")


@pytest.mark.parametrize("ops, every", [
    ([("map", by_first)], "record"),                           # one pair per record: taken in blocks
    ([("map", swap)], "record"),
    ([("filter", not_a), ("map", by_first)], "pair"),          # counted as it scatters
    ([("flatMap", letters), ("map", partial(pair, n=1))], "pair"),
])
def test_a_scatter_checks_its_budget_after_every_check_every_records(ops, every):
    n = pipeline.CHECK_EVERY
    records = [f"w{i}" for i in range(2 * n + 500)] if ops[0][1] is not swap else [(i, i) for i in range(2 * n + 1)]
    checked: list = []
    bufs: list[list] = [[], [], []]
    pipeline.scatter(iter(records), ops, bufs, None, HashPartitioner(3), lambda k, v: checked.append((k, v)),
                     TypeError, ones=[[], [], []])
    pairs = list(pipeline.iterate(iter(records), ops))
    if every == "record":     # after each block of n records, the last one's pair; and after the last block
        expected = [pairs[i] for i in range(n - 1, len(pairs), n)] + ([pairs[-1]] if len(pairs) % n else [])
    else:
        expected = [pairs[i] for i in range(n - 1, len(pairs), n)]
    assert checked == expected
    checked.clear()
    pipeline.scatter(iter([]), ops, bufs, None, HashPartitioner(3), lambda k, v: checked.append((k, v)), TypeError)
    assert checked == []


@register_func
def key_of(x):
    return (x, 1)


@register_func
def key_and_value_of(x):
    return (x, "v")


@pytest.mark.parametrize("n", [1, 2, 3, 4, 8])
def test_a_scatter_puts_each_key_where_the_hash_partitioner_says(n):
    """Computed in the loop for int and ASCII str keys (``% n``, or ``& (n - 1)`` for a power of two)."""
    keys = [0, 1, -1, -2, 7, 2**61 - 1, 2**61, -(2**64) - 3, 10**30, True, False, 2.5, -0.0, "a", "é", "", "zz" * 30,
            b"b", (1, "x"), None, frozenset({3})]
    part = HashPartitioner(n)
    for fn in (key_of, key_and_value_of):
        bufs: list[list] = [[] for _ in range(n)]
        ones: list[list] = [[] for _ in range(n)]
        pipeline.scatter(iter(keys), [("map", fn)], bufs, None, part, lambda k, v: None, TypeError, ones=ones)
        held = ones if fn is key_of else [b[::2] for b in bufs]
        assert sorted(map(repr, (k for b in held for k in b))) == sorted(map(repr, keys))
        for r, b in enumerate(held):
            assert all(part.get_partition(k) == r for k in b), (fn, r, b)


def raise_at_1500(x):
    if x == 1500:
        raise StopIteration
    return x


@register_func
def c_map_stopping_at_1500(it):
    return map(raise_at_1500, it)     # a C iterator: Python takes the StopIteration for its end


@register_func
def mod_7_pair(x):
    return (x % 7, x)


def test_records_that_ended_stay_ended_in_a_scatter(ctx):
    """The scatter takes records in blocks; an iterator asked again after its end (a C ``map`` whose
    function raised StopIteration goes on) gives no more records to it than to ``collect``."""
    parts = ctx.parallelize(range(3000), 1).mapPartitions(c_map_stopping_at_1500)
    assert parts.count() == 1500
    grouped = parts.map(mod_7_pair).groupByKey().mapValue(sorted).collectAsMap()
    assert grouped == {r: list(range(r, 1500, 7)) for r in range(7)}
