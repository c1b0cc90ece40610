"""SPEC section 2: what may be given to an RDD method as a function, and register_func itself."""
from __future__ import annotations

import math
import operator
import os
import subprocess
import sys
from functools import partial

import msgpack.fallback
import pytest
from apps import funcs

from gopark import JobError, SerializationError, register_func, serialize

# --- the three forms of register_func ------------------------------------------------------

def triple(x):
    return 3 * x


TRIPLE = register_func(triple)


@register_func
def double(x):
    return 2 * x


@register_func(name="registry-tests/custom name")
def custom(x):
    return x - 1


@register_func
def scale(x, factor=1, offset=0):
    return x * factor + offset


@register_func
def add(a, b):
    return a + b


@register_func
def read_table(table, x):
    return table.value.get(x, "?")


@register_func
def add_to(acc, x):
    acc.add(x)
    return x


@register_func
def keep_max(a, b):
    return max(a, b)


def clash_one(x):
    return 1


def clash_two(x):
    return 2


def test_register_func_returns_the_function_unchanged():
    assert TRIPLE is triple
    assert triple(2) == 6
    assert double(4) == 8 and double.__name__ == "double"
    assert custom(5) == 4 and custom.__name__ == "custom"
    assert register_func(triple) is triple                      # again: the same function, no error
    assert register_func(name="registry-tests/custom name")(custom) is custom


def test_two_functions_under_one_name_is_an_error():
    assert register_func(name="registry-tests/clash")(clash_one) is clash_one


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_a_function_of_a_module_loaded_by_hand_from_outside_sys_path_is_refused_at_the_call(master, tmp_path,
                                                                                           monkeypatch):
    """A worker process imports a function's module by name: one loaded from a file the import system does
    not find (``spec_from_file_location``) would fail every task; refused at the call (local mode, whose
    tasks run in the driver, takes it)."""
    import importlib.util

    from gopark import Context
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    name = f"gp_plugin_{tmp_path.name}"          # a module of its own for each mode
    (plugins / f"{name}.py").write_text(
        "from gopark import register_func\n\n\n@register_func\ndef triple(x):\n    return 3 * x\n")
    spec = importlib.util.spec_from_file_location(name, plugins / f"{name}.py")
    by_hand = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(by_hand)
    with Context(master, quiet=True) as ctx:
        if master == "local":
            assert ctx.parallelize([1, 2], 2).map(by_hand.triple).collect() == [3, 6]
        else:
            with pytest.raises(TypeError, match=f"RDD.map got '{name}.triple', whose module .* is not found by "
                                                "its name on sys.path: .* put its folder on sys.path"):
                ctx.parallelize([1, 2], 2).map(by_hand.triple)
    monkeypatch.syspath_prepend(str(plugins))     # found by its name (by workers started from now on): fine
    with Context(master, quiet=True) as ctx:
        assert ctx.parallelize([1, 2], 2).map(by_hand.triple).collect() == [3, 6]


@pytest.mark.parametrize("name", [5, ("a", "b"), b"bytes", ""])
def test_a_name_that_is_not_a_string_is_refused_at_the_registration(name):
    with pytest.raises(TypeError, match="register_func: name is a non-empty str"):
        register_func(clash_one, name=name)
    with pytest.raises(TypeError, match="register_func: name is a non-empty str"):
        register_func(name=name)
    with pytest.raises(ValueError):
        register_func(name="registry-tests/clash")(clash_two)
    assert register_func(name="registry-tests/clash")(clash_one) is clash_one


def test_registered_functions_of_every_form_run(ctx):
    rdd = ctx.parallelize(range(10), 3)
    assert rdd.map(triple).collect() == [3 * x for x in range(10)]
    assert rdd.map(double).collect() == [2 * x for x in range(10)]
    assert rdd.map(custom).collect() == [x - 1 for x in range(10)]


def test_functions_of_an_app_module(ctx):
    rdd = ctx.parallelize(range(6), 3)
    # the same short name in two modules: two functions
    assert rdd.map(funcs.double).map(operator.itemgetter(1)).map(double).collect() == [4 * x for x in range(6)]
    assert rdd.map(funcs.renamed).collect() == [x + 1000 for x in range(6)]


def test_process_mode_runs_functions_elsewhere(contexts):
    pids = contexts("process:2").parallelize(range(8), 8).map(funcs.worker_pid).collect()
    assert os.getpid() not in pids
    assert contexts("local").parallelize(range(4), 4).map(funcs.worker_pid).collect() == [os.getpid()] * 4


# --- what is refused, at the call, in the driver ------------------------------------------

def unregistered(x):
    return x


class Holder:
    def method(self, x):
        return x


def make_closure():
    k = 1

    def inner(x, *rest):
        return x + k
    return inner


BAD_FUNCTIONS = {
    "lambda": lambda x, *rest: x,
    "closure": make_closure(),
    "unregistered": unregistered,
    "bound method": Holder().method,
    "bound builtin method": "text".upper,
    "partial of a lambda": partial(lambda x, y: x, 1),
    "partial of an unregistered function": partial(unregistered),
    "C function of a module": math.sqrt,
}

CALLS = {
    "map": lambda c, r, f: r.map(f),
    "flatMap": lambda c, r, f: r.flatMap(f),
    "filter": lambda c, r, f: r.filter(f),
    "mapPartitions": lambda c, r, f: r.mapPartitions(f),
    "mapPartitionsWithIndex": lambda c, r, f: r.mapPartitionsWithIndex(f),
    "mapValue": lambda c, r, f: r.mapValue(f),
    "mapValues": lambda c, r, f: r.mapValues(f),
    "flatMapValue": lambda c, r, f: r.flatMapValue(f),
    "flatMapValues": lambda c, r, f: r.flatMapValues(f),
    "reduceByKey": lambda c, r, f: r.reduceByKey(f),
    "combineByKey-create": lambda c, r, f: r.combineByKey(f, add, add),
    "combineByKey-merge": lambda c, r, f: r.combineByKey(double, f, add),
    "combineByKey-combine": lambda c, r, f: r.combineByKey(double, add, f),
    "sort-key": lambda c, r, f: r.sort(key=f),
    "reduce": lambda c, r, f: r.reduce(f),
    "fold": lambda c, r, f: r.fold(0, f),
    "aggregate-seq": lambda c, r, f: r.aggregate(0, f, add),
    "aggregate-comb": lambda c, r, f: r.aggregate(0, add, f),
    "top-key": lambda c, r, f: r.top(2, key=f),
    "foreach": lambda c, r, f: r.foreach(f),
    "accumulator-merge": lambda c, r, f: c.accumulator(0, merge=f),
}


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("kind", list(BAD_FUNCTIONS))
def test_non_registered_functions_are_refused_at_the_call(ctx, call, kind):
    rdd = ctx.parallelize([(1, 2), (3, 4)], 2)
    with pytest.raises(TypeError) as info:
        CALLS[call](ctx, rdd, BAD_FUNCTIONS[kind])
    assert not isinstance(info.value, JobError)      # refused in the driver, no task ran
    assert "register_func" in str(info.value)


@pytest.mark.parametrize(("fn", "said"), [({"a": 1}.get, "the bound method dict.get of an object"),
                                         ("text".upper, "the bound method str.upper of an object"),
                                         ((1).__add__, "the bound method int.__add__ of an object"),
                                         (3, "an int"), ("text", "a str")])
def test_the_refusal_says_what_it_got(ctx, fn, said):
    with pytest.raises(TypeError, match=f"^RDD.map got {said}: .*@register_func"):
        ctx.parallelize([1]).map(fn)


@pytest.mark.parametrize("call", ["groupBy", "sortBy", "sort", "treeReduce", "treeAggregate"])
def test_the_refusal_names_the_method_that_was_called(ctx, call):
    """Not the method it is made of (groupBy is keyBy then groupByKey...)."""
    rdd = ctx.parallelize([1, 2], 2)
    calls = {"groupBy": lambda f: rdd.groupBy(f), "sortBy": lambda f: rdd.sortBy(f), "sort": lambda f: rdd.sort(f),
             "treeReduce": lambda f: rdd.treeReduce(f), "treeAggregate": lambda f: rdd.treeAggregate(0, f, add)}
    with pytest.raises(TypeError, match=f"^RDD.{call} got a lambda"):
        calls[call](lambda x: x)
    for method in ("repartition", "coalesce"):
        with pytest.raises(ValueError, match=f"^{method}: numSplits must be a positive integer, not 0"):
            getattr(rdd, method)(0)
        with pytest.raises(ValueError, match=f"^{method}: numSplits must be at most 2147483647 \\(Spark's limit\\)"):
            getattr(rdd, method)(10 ** 30)      # not an OverflowError from inside the action


def test_a_c_function_of_a_module_is_refused_with_the_wrapper_to_write(ctx):
    with pytest.raises(TypeError, match=r"the C function math\.sqrt.*@register_func def sqrt\(x\): "
                                        r"return math\.sqrt\(x\)"):
        ctx.parallelize([4.0]).map(math.sqrt)


@pytest.mark.parametrize("call", [c for c in CALLS if c not in ("sort-key", "top-key", "accumulator-merge")])
@pytest.mark.parametrize("bad", [None, 3, "add"], ids=["None", "int", "str"])
def test_what_is_not_a_function_is_refused_at_the_call(ctx, call, bad):
    """(None means "no function" only where the function is optional: sort and top's key, a merge.)"""
    with pytest.raises(TypeError, match="register_func") as info:
        CALLS[call](ctx, ctx.parallelize([(1, 2), (3, 4)], 2), bad)
    assert not isinstance(info.value, JobError)


# --- builtins, operator, partials -----------------------------------------------------------

WORDS = ["alpha", "Beta", "gamma-ray", "delta", "x-y-z"]


def test_builtins(ctx):
    words = ctx.parallelize(WORDS, 2)
    assert words.map(len).collect() == [len(w) for w in WORDS]
    assert ctx.parallelize([1, -2, 3], 2).map(str).collect() == ["1", "-2", "3"]
    assert ctx.parallelize(["7", "-8"], 2).map(int).collect() == [7, -8]
    assert ctx.parallelize([-1.5, 2, -3], 2).map(abs).collect() == [1.5, 2, 3]
    assert ctx.parallelize([0, 1, "", "a", None], 2).filter(bool).collect() == [1, "a"]
    assert ctx.parallelize([4, 9, 2], 2).reduce(max) == 9
    assert ctx.parallelize([("a", [1, 2]), ("b", [3])], 2).mapValue(sum).collect() == [("a", 3), ("b", 3)]


def test_operator_functions(ctx):
    pairs = ctx.parallelize([("a", 1), ("b", 2), ("a", 3)], 2)
    assert pairs.reduceByKey(operator.add).collectAsMap() == {"a": 4, "b": 2}
    assert ctx.parallelize([1, 2, 3, 4], 3).reduce(operator.mul) == 24
    assert ctx.parallelize([1, -2], 2).map(operator.neg).collect() == [-1, 2]
    assert ctx.parallelize([1, 2, 3], 2).fold(0, operator.add) == 6


def test_itemgetter_attrgetter_methodcaller(ctx):
    rows = ctx.parallelize([("a", 1, "x"), ("b", 2, "y")], 2)
    assert rows.map(operator.itemgetter(1)).collect() == [1, 2]
    assert rows.map(operator.itemgetter(0, 2)).collect() == [("a", "x"), ("b", "y")]
    assert ctx.parallelize([{"k": 1}, {"k": 2}], 2).map(operator.itemgetter("k")).collect() == [1, 2]
    assert ctx.parallelize([3, 4.5], 2).map(operator.attrgetter("real")).collect() == [3, 4.5]
    assert ctx.parallelize([3], 1).map(operator.attrgetter("real", "imag")).collect() == [(3, 0)]
    words = ctx.parallelize(WORDS, 2)
    assert words.map(operator.methodcaller("upper")).collect() == [w.upper() for w in WORDS]
    assert words.map(operator.methodcaller("split", "-")).collect() == [w.split("-") for w in WORDS]
    assert words.map(operator.methodcaller("split", sep="-", maxsplit=1)).collect() == [
        w.split("-", 1) for w in WORDS]
    assert words.sort(key=operator.methodcaller("lower")).collect() == sorted(WORDS, key=str.lower)
    assert rows.top(1, key=operator.itemgetter(1)) == [("b", 2, "y")]


def test_partials_with_data(ctx):
    rdd = ctx.parallelize(range(6), 3)
    assert rdd.map(partial(scale, factor=3)).collect() == [3 * x for x in range(6)]
    assert rdd.map(partial(scale, factor=2, offset=20)).collect() == [2 * x + 20 for x in range(6)]
    assert rdd.map(partial(partial(scale, offset=1), factor=-1)).collect() == [1 - x for x in range(6)]
    assert rdd.map(partial(add, 100)).collect() == [100 + x for x in range(6)]


def test_partial_with_broadcast(ctx):
    table = ctx.broadcast({0: "zero", 2: "two", 4: ("four", 4)})
    assert ctx.parallelize(range(5), 2).map(partial(read_table, table)).collect() == [
        "zero", "?", "two", "?", ("four", 4)]


def test_partial_with_accumulator(ctx):
    acc = ctx.accumulator(0)
    high = ctx.accumulator(0, merge=keep_max)
    data = [5, -3, 17, 2]
    assert ctx.parallelize(data, 3).map(partial(add_to, acc)).map(partial(add_to, high)).count() == len(data)
    assert acc.value == sum(data)
    assert high.value == 17


# --- partials decoded on workers: keywords become defaults where they can ------------------------

def _kw_target(word, n=1, *, scale=1):
    return (word, n * scale)


def _no_default_after(a, n, m):
    return (a, n, m)


def _var_kw(a, **kw):
    return (a, kw)


def _pos_only(a, n=1, /, m=2):
    return (a, n, m)


@pytest.mark.parametrize("func, args, kwargs, calls", [
    (_kw_target, (), {"n": 3}, [(("w",), {}), (("w",), {"n": 5}), (("w",), {"scale": 2})]),
    (_kw_target, (), {"scale": 10}, [(("w",), {}), (("w", 2), {})]),
    (_kw_target, ("w",), {"n": 4}, [((), {}), ((), {"scale": 3})]),
    (_no_default_after, (), {"n": 1}, [(("a",), {"m": 2})]),
    (_var_kw, (), {"x": 1}, [((0,), {}), ((0,), {"y": 2})]),
    (_pos_only, (), {"m": 9}, [((1,), {}), ((1, 5), {})]),
])
def test_decoded_partials_call_like_functools_partial(func, args, kwargs, calls) -> None:
    import functools

    from gopark.registry import _bind
    fast = _bind(func, list(args), dict(kwargs))
    slow = functools.partial(func, *args, **kwargs)
    for call_args, call_kwargs in calls:
        assert fast(*call_args, **call_kwargs) == slow(*call_args, **call_kwargs)
    assert getattr(fast, "__code__", func.__code__) is func.__code__ or isinstance(fast, functools.partial)


def test_decoded_partial_keeps_the_registered_function_identity() -> None:
    from gopark.registry import _bind
    fast = _bind(_kw_target, [], {"n": 2})
    assert fast.__code__ is _kw_target.__code__ and fast.__qualname__ == _kw_target.__qualname__
    assert _kw_target("w") == ("w", 1)            # the original keeps its own defaults



@pytest.mark.parametrize("master", ["local", "process:2"])
@pytest.mark.parametrize("how", ["decorator", "call", "function", "module"])
def test_a_function_registered_inside_the_main_block_is_refused_at_its_registration(master, how):
    """A worker imports the script without running the main block: never registered there, the function
    would fail every task (in process mode only); refused at once, in every mode."""
    tests = os.path.dirname(os.path.abspath(__file__))
    app = os.path.join(tests, "apps", "main_block_registration_app.py")
    done = subprocess.run([sys.executable, app, how, "-m", master], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])})
    assert done.returncode != 0
    assert done.stdout == "[11, 21]\n"                  # module level and an always-run block: fine
    name = "apps.funcs.not_registered_here" if how == "module" else "main_block_registration_app.in_main_block"
    assert f"TypeError: register_func: '{name}' is registered inside " \
           "`if __name__ == \"__main__\":` (line " in done.stderr, done.stderr
    assert "register it at module level" in done.stderr


NO_GUARD_APP = """from gopark import Context, register_func

@register_func
def inc(x):
    return x + 1

ctx = Context()
print(ctx.parallelize([1, 2]).map(inc).collect(), flush=True)

@register_func
def dec(x):
    return x - 1

print(ctx.parallelize([1, 2]).map(dec).collect())
"""


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_a_function_registered_below_unguarded_driver_code_is_refused_at_the_call(tmp_path, master):
    """A script whose driver code is not under ``if __name__ == "__main__":``: a worker imports it up to its
    Context, so a function registered below is unknown there: refused in the driver, at the call, in one
    line (it failed every task, retried, before); fine in local mode, where nothing is imported."""
    app = tmp_path / "no_guard.py"
    app.write_text(NO_GUARD_APP)
    done = subprocess.run([sys.executable, str(app), "-m", master], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    if master == "local":
        assert done.returncode == 0 and done.stdout == "[2, 3]\n[0, 1]\n", done.stderr
        return
    assert done.returncode == 1 and done.stdout == "[2, 3]\n", done.stderr
    assert done.stderr.strip() == (
        "gopark: error: RDD.map got 'no_guard.dec', registered below the driver code at line 7 of no_guard.py (a "
        "Context made outside `if __name__ == \"__main__\":`): a worker imports the script up to there only, so "
        "it would not know the function; define the functions above it, or put the driver code under that `if` "
        "(at no_guard.py:14)"), done.stderr


def test_a_second_name_is_an_alias_the_function_travels_under_its_first(ctx):
    from apps.funcs import add_to

    from gopark import registry
    first = add_to.__gopark_name__
    register_func(name="tests.registry.alias")(add_to)       # in driver code alone: no worker knows it
    assert add_to.__gopark_name__ == first and registry.lookup("tests.registry.alias") is add_to
    acc = ctx.accumulator(0)
    ctx.parallelize([1, 2, 3], 2).foreach(partial(add_to, acc))
    assert acc.value == 6


def test_a_value_that_contains_itself_is_refused_at_the_call_not_walked_for_ever(ctx):
    looped = [1]
    looped.append(looped)
    selfish: dict = {}
    selfish["me"] = selfish
    for value in (looped, selfish, (looped,)):
        with pytest.raises(SerializationError, match="nested too deep .*contain itself.* parallelize"):
            ctx.parallelize([value], 1)
        with pytest.raises(SerializationError, match="contain itself"):
            ctx.broadcast(value)
    deep: list = []
    tip = deep
    for _ in range(400):
        tip.append([])
        tip = tip[0]
    assert ctx.parallelize([deep], 1).count() == 1       # deep, not looped: fine


@register_func
def nested(depth, x):
    """``x`` in ``depth`` levels: lists, dicts and tuples in turn."""
    for i in range(depth):
        x = ([x], {"k": x}, (x,))[i % 3]
    return x


@register_func
def depth_of(x):
    n = 0
    while isinstance(x, (list, dict, tuple)):
        x = x["k"] if isinstance(x, dict) else next(iter(x))
        n += 1
    return n


@register_func
def depth_with(value, x):
    return depth_of(value) + x


def test_data_nested_to_the_documented_limit_goes_everywhere_and_deeper_is_refused_at_the_call(ctx):
    deep = nested(serialize.NEST_LIMIT, 0)          # 1000 levels with msgpack 1.1
    assert depth_of(ctx.parallelize([deep], 1).collect()[0]) == serialize.NEST_LIMIT
    assert depth_of(ctx.parallelize([0], 1).map(partial(nested, serialize.NEST_LIMIT)).collect()[0]) == \
        serialize.NEST_LIMIT                        # made by a task
    assert ctx.parallelize([0], 1).map(partial(depth_with, deep)).collect() == [serialize.NEST_LIMIT]
    assert depth_of(ctx.broadcast(deep).value) == serialize.NEST_LIMIT
    pairs = ctx.parallelize([(1, deep), (2, deep), (1, deep)], 2).cache()
    assert [(k, len(vs), depth_of(vs[0])) for k, vs in sorted(pairs.groupByKey(3).collect())] == \
        [(1, 2, serialize.NEST_LIMIT), (2, 1, serialize.NEST_LIMIT)]
    cogrouped = pairs.groupWith(pairs, pairs).mapValue(depth_of).collect()
    assert sorted(cogrouped) == [(1, serialize.NEST_LIMIT + 2), (2, serialize.NEST_LIMIT + 2)]
    assert pairs.join(pairs).count() == 5 and pairs.sortByKey().keys().collect() == [1, 1, 2]

    limit = msgpack.fallback.DEFAULT_RECURSE_LIMIT      # what msgpack packs, gopark's levels included
    too_deep = nested(limit + 1, 0)
    for give in (partial(ctx.parallelize, [too_deep]), partial(ctx.broadcast, too_deep),
                 lambda: ctx.parallelize([1]).map(partial(depth_with, too_deep))):
        with pytest.raises(SerializationError, match=f"nested too deep .*{serialize.NEST_LIMIT} levels.*{limit}"):
            give()
    with pytest.raises(SerializationError, match="nested too deep .* in collect"):   # a task's: its error
        ctx.parallelize([0], 1).map(partial(nested, limit)).collect()
