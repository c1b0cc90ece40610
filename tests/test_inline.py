"""Small functions of the app inlined into the generated loops (gopark.inline): same results, same blame.

Three levels: ``inline.expression`` against calling the function (what
qualifies, what does not); the generated loops with inlining on and off; and
jobs through the public API, in every mode, where an inlined function that
fails is named in the JobError as a called one is.
"""
from __future__ import annotations

import builtins
import gzip
import inspect
import itertools
import logging
import math
import operator
import os.path
import sys
import traceback
import types
import warnings
from functools import partial

import pytest
from apps import shadow_app
from apps.wc_app import add, pair, words
from test_pipeline import as_list, by_first, extend, not_a  # helpers the fused-loop tests use too

from gopark import Context, JobError, inline, pipeline, register_func
from gopark.io import text
from gopark.partitioner import HashPartitioner, RangePartitioner

STEP = 3


# --- functions that qualify: one returned expression over the parameters ------------------------

@register_func
def split_on(line, sep=","):
    return line.split(sep)


@register_func
def head_tail(s):
    return (s[:1], s[1:], s[-1], s[::2])


@register_func
def arith(x, k=2, *, shift=1):
    return (x * k + shift) // 3 % 5 - (-x) ** 2 + (~x & 7 | 8 ^ 1) + (x << 2) + (x >> 1) + x / 4


@register_func
def compare(x):
    return [x < 3, x <= 3, x == 3, x != 3, x > 3, x >= 3, x in (1, 2), x not in (1,), x is None,
            x is not None, not x]


@register_func
def uses_global(x):
    return (x % STEP, len(str(x)))


@register_func
def attribute(z):
    return (z.real, z.imag, z.conjugate())


@register_func
def identity(x):
    return x


@register_func
def constant(x):
    return 7


@register_func
def weighted(w, a, b):
    return a * w + b


@register_func
def digest(row):
    k, (a, b) = row
    return (1, (k * 1_000_003 + a * 31 + b) % 1_000_000_007)


@register_func
def parse(line):
    k, v = line.split(",")
    v = int(v)
    return (k, v)


@register_func
def local(x):
    y = x + 1
    return y


@register_func
def in_place(x):
    x *= 2
    x = x * 2
    return x


@register_func
def swap_twice(kv):
    a, b = kv
    a, b = b, a
    return (a, b, kv)


@register_func
def hypot(p):
    return math.sqrt(p[0] * p[0] + p[1] * p[1])     # a module's function: the module, then its attribute


def joined(name):
    return os.path.join(name, "x")                  # an attribute of a module's attribute


def products(groups):
    vs, ws = groups
    return list(itertools.product(vs, ws))


QUALIFY = [
    (words, 1, ["a b  c", ""]),
    (partial(pair, n=1), 1, ["w"]),
    (add, 2, [(1, 2), ("a", "b"), ([1], [2])]),
    (split_on, 1, ["a,b", ""]),
    (partial(split_on, sep=":"), 1, ["a:b"]),
    (head_tail, 1, ["abc", "x"]),
    (arith, 1, [0, 5, -3]),
    (partial(arith, k=3, shift=0), 1, [4]),
    (compare, 1, [1, 3, 5]),
    (uses_global, 1, [10, 11]),
    (attribute, 1, [3 + 4j]),
    (identity, 1, [None, "x"]),
    (constant, 1, [1]),
    (partial(weighted, 2, 3), 1, [10]),          # positional arguments bound by the partial
    (partial(weighted, b=1), 2, [(2, 3)]),
    (digest, 1, [(5, (6, 7))]),
    (parse, 1, ["a,1", "b, 22"]),
    (local, 1, [1, 2.5]),
    (in_place, 1, [3, 2.5, "ab", (1,)]),
    (swap_twice, 1, [(1, 2), "xy"]),
    (hypot, 1, [(3, 4), (0.5, 1.5)]),
    (joined, 1, ["a", "/b"]),
    (products, 1, [([1, 2], "ab"), ([], [3])]),
    (operator.add, 2, [(1, 2)]),
    (operator.getitem, 2, [((5, 6), 1)]),
    (operator.not_, 1, [0, 1]),
    (operator.is_not, 2, [(None, None)]),
]


def evaluate(expr: inline.Expr, args: tuple):
    """Run ``expr`` as a generated loop would: constants bound, statements, then the expression."""
    names = [f"a{i}" for i in range(len(args))]
    lines = [f"def run({', '.join(names + ['consts'])}):"]
    if expr.consts:
        lines.append(f"    {', '.join(f'c_{j}' for j in range(len(expr.consts)))}, = consts")
    lines += [f"    {s.format(*names, c='c_')}" for s in expr.statements]
    lines.append(f"    return {expr.render(names, 'c_')}")
    namespace: dict = {}
    exec("\n".join(lines), namespace)
    return namespace["run"](*args, expr.consts)


@pytest.mark.parametrize("fn, nargs, samples", QUALIFY, ids=lambda v: getattr(v, "__name__", None))
def test_a_qualifying_function_is_its_expression(fn, nargs, samples):
    expr = inline.expression(fn, nargs, "f")
    assert expr is not None
    for sample in samples:
        args = sample if nargs > 1 else (sample,)
        assert evaluate(expr, args) == fn(*args)


def test_a_tuple_display_gives_its_items():
    expr = inline.expression(partial(pair, n=1), 1, "pair")
    assert expr.items is not None and len(expr.items) == 2
    assert inline.expression(add, 2, "add").items is None


def test_a_global_is_read_at_each_evaluation(monkeypatch):
    expr = inline.expression(uses_global, 1, "uses_global")
    assert evaluate(expr, (10,)) == (1, 2)
    monkeypatch.setattr(sys.modules[__name__], "STEP", 4)
    assert evaluate(expr, (10,)) == (2, 2)


# --- functions that must be called ---------------------------------------------------------------

def branch(x):
    return x if x else 0


def walrus(x):
    return (x, (y := x + 1), y)


def starred(x):
    a, *b = x
    return b


def deleted(x):
    del x
    return 1


def evaluates(line):
    return eval(line)


def reads_globals(name):
    return globals()[name]


def warns(x):
    return warnings.warn(x, UserWarning, 2)


def frame_name(x):
    return sys._getframe().f_code.co_name


LOG = logging.getLogger("tests.inline")


@register_func
def logs(x):
    return (x, LOG.warning("saw %s", x))


def logs_by_module(x):
    return logging.info("saw %s", x)


def formats_stack(x):
    return traceback.format_stack()


@register_func
def too_deep(x):
    return (x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x
            + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x
            + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x
            + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x
            + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x
            + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x + x)


def looping(x):
    for _ in x:
        pass
    return x


def guarded(x):
    try:
        return x + 1
    except TypeError:
        return 0


def keyword_call(line):
    return line.split(maxsplit=1)


def needs_two(a, b):
    return a + b


def star_args(*xs):
    return xs


def star_kwargs(x, **kw):
    return x


def generator(x):
    yield x


def undefined_global(x):
    return x + NOT_DEFINED_ANYWHERE  # noqa: F821


def computed_callable(x):
    return x[0](x)


def positional_only(x, n=1, /):
    return x + n


def make_closure():
    k = 2

    def closure(x):
        return x * k
    return closure


NOT_QUALIFYING = [
    (evaluates, 1), (reads_globals, 1), (warns, 1), (frame_name, 1), (logs, 1), (logs_by_module, 1),
    (formats_stack, 1), (too_deep, 1),
    (branch, 1), (walrus, 1), (starred, 1), (deleted, 1), (looping, 1), (guarded, 1), (keyword_call, 1),
    (needs_two, 1), (add, 1), (add, 3), (star_args, 1), (star_kwargs, 1), (generator, 1),
    (undefined_global, 1), (computed_callable, 1), (make_closure(), 1), (partial(positional_only, n=2), 1),
    (partial(add, 1, a=2), 1), (partial(add, c=2), 1), (len, 1), (str.split, 1), (operator.add, 1),
    (operator.itemgetter(0), 1),
]


@pytest.mark.parametrize("fn, nargs", NOT_QUALIFYING, ids=lambda v: getattr(v, "__name__", None))
def test_a_function_that_does_more_is_called(fn, nargs):
    assert inline.expression(fn, nargs, "f") is None


def test_a_log_record_of_a_function_names_it_and_its_line(ctx, tmp_path):
    """logging finds the function that logs by its frames: a function that logs is called, not inlined,
    so its records name it, its file and line (the generated loop's, had it been inlined)."""
    out = tmp_path / "log"
    handler = logging.FileHandler(out, delay=True)
    handler.setFormatter(logging.Formatter("%(funcName)s %(filename)s:%(lineno)d %(message)s"))
    LOG.addHandler(handler)
    try:
        assert ctx.parallelize([7], 1).map(logs).collect() == [(7, None)]
    finally:
        LOG.removeHandler(handler)
        handler.close()
    if ctx.master.kind == "local":      # a worker's records go to its own handlers (none: this one is the driver's)
        source, first = inspect.getsourcelines(logs)
        line = first + next(i for i, text in enumerate(source) if "LOG.warning" in text)
        assert out.read_text() == f"logs test_inline.py:{line} saw 7\n"


class Settings:
    """A global whose property the app's code can read only once it is configured."""

    configured = False

    @property
    def scale(self):
        if not self.configured:
            raise RuntimeError("read before configure()")
        return 3


SETTINGS = Settings()


@register_func
def scaled(x):
    return x * SETTINGS.scale


@register_func
def negative(x):
    return x < 0


def test_making_the_loop_reads_no_property_of_a_global(ctx):
    """Inlining looks at what a function reads (a module's function that needs its caller's frame is
    refused) without running any of it: a property of the app's global is read when the function is
    called, never when the loop is made, as in plain Python."""
    assert ctx.parallelize([1, 2, 3], 2).filter(negative).map(scaled).collect() == []
    with pytest.raises(JobError, match="read before configure"):
        ctx.parallelize([1, 2, 3], 2).map(scaled).collect()


def test_a_deep_expression_is_called_and_right(ctx):
    assert ctx.parallelize([1, 2], 2).map(too_deep).collect() == [120, 240]


@register_func
def uses_hex(x):
    return hex(x)


def test_a_global_shadowing_a_builtin_is_looked_up_as_python_does(monkeypatch):
    expr = inline.expression(uses_hex, 1, "uses_hex")
    assert evaluate(expr, (255,)) == "0xff"
    monkeypatch.setattr(sys.modules[__name__], "hex", lambda x: "shadowed", raising=False)
    assert evaluate(expr, (255,)) == "shadowed"
    monkeypatch.delattr(sys.modules[__name__], "hex")
    assert evaluate(expr, (255,)) == "0xff"


def test_nothing_is_inlined_under_a_tracer_or_a_profiler():
    assert inline.enabled()
    sys.setprofile(lambda *a: None)
    try:
        assert not inline.enabled()
    finally:
        sys.setprofile(None)


# --- the generated loops, inlining on and off -------------------------------------------------------

@register_func
def plus_one(v):
    return v + 1


@register_func
def swap_kv(kv):
    a, b = kv
    return (b, a)


LINES = ["the cat sat", "", "on the mat the end", "a b c a b a", "x"] * 3
CHAINS = [
    [("flatMap", words), ("map", partial(pair, n=1))],
    [("flatMap", words), ("filter", not_a), ("map", by_first), ("mapValue", len)],
    [("flatMap", words), ("map", by_first), ("mapValue", as_list), ("flatMapValue", identity),
     ("keys", None), ("keyBy", len), ("values", None), ("map", partial(pair, n=2))],
    [("flatMap", split_on), ("map", by_first), ("values", None), ("map", partial(pair, n=1)),
     ("mapValue", plus_one)],
    [("flatMap", words), ("map", by_first), ("map", swap_kv), ("map", swap_kv), ("mapValue", len),
     ("mapValue", local), ("map", swap_kv), ("map", swap_kv)],
]


@pytest.fixture(params=["inlined", "called"])
def inlining(request, monkeypatch):
    if request.param == "called":
        monkeypatch.setattr(inline, "SUPPORTED", (0, 0))
    return request.param


@pytest.mark.parametrize("chain", range(len(CHAINS)))
def test_the_loops_give_the_same_records_inlined_or_called(inlining, chain):
    ops = CHAINS[chain]
    expected = list(LINES)
    for op, f in ops:
        expected = {"map": lambda r, f=f: [f(x) for x in r],
                    "flatMap": lambda r, f=f: [y for x in r for y in f(x)],
                    "filter": lambda r, f=f: [x for x in r if f(x)],
                    "mapValue": lambda r, f=f: [(k, f(v)) for k, v in r],
                    "flatMapValue": lambda r, f=f: [(k, w) for k, v in r for w in f(v)],
                    "keys": lambda r: [k for k, _ in r], "values": lambda r: [v for _, v in r],
                    "keyBy": lambda r, f=f: [(f(x), x) for x in r]}[op](expected)
    assert list(pipeline.iterate(iter(LINES), ops)) == expected
    combined: dict = {}
    pipeline.combine(iter(LINES), ops, combined, None, add, lambda k, c: None, TypeError)
    counts: dict = {}
    for k, v in expected:
        counts[k] = counts[k] + v if k in counts else v
    assert combined == counts
    grouped: dict = {}
    pipeline.combine(iter(LINES), ops, grouped, as_list, extend, lambda k, c: None, TypeError)
    assert {k: sum(v) for k, v in grouped.items()} == counts
    assert pipeline.fold(iter(LINES), ops + [("values", None)], 0, operator.add, object()) == sum(counts.values())
    probed: dict = {}
    assert pipeline.combine(iter(LINES), ops, probed, None, add, lambda k, c: None, TypeError, probe=True) \
        == (len(expected), len(counts))
    assert probed == counts
    partitioners = [(HashPartitioner(3), 3), (HashPartitioner(4), 4), (HashPartitioner(1), 1)]
    if all(type(k) is str for k, _ in expected):
        partitioners.append((RangePartitioner(["b", "t"]), 3))
    for partitioner, n in partitioners:
        bufs: list[list] = [[] for _ in range(n)]
        pipeline.scatter(iter(LINES), ops, bufs, as_list, partitioner, lambda k, v: None, TypeError)
        assert [list(zip(b[::2], b[1::2])) for b in bufs] \
            == [[(k, [v]) for k, v in expected if partitioner.get_partition(k) == r] for r in range(n)]


def test_the_loop_says_what_it_inlined(inlining):
    loop = pipeline.combine_loop(*pipeline._slots([("flatMap", words), ("map", partial(pair, n=1))],
                                                  inline.enabled())[:1], pipeline._Slot("merge"), None)
    names = {name.rsplit(".", 1)[-1] for name in pipeline._INLINED_LINES.get(loop.__code__, {}).values()}
    assert names == ({"words", "pair"} if inlining == "inlined" else set())


# --- through the public API: same results, failures blamed on the function -----------------------

@register_func
def halve(x):
    return 10 // x


@register_func
def halve_pair(x):
    return (x, 10 // x)


@register_func
def pick_second(x):
    return x[1]


@register_func
def divide(a, b):
    return a // b


@register_func
def nonzero_ratio(x):
    return 10 % x


@register_func
def items_of(x):
    return x.items()


@register_func
def first_of(x):
    return next(iter(x))


FAILING = [
    ("map", lambda rdd: rdd.map(halve).collect(), "halve"),
    ("filter", lambda rdd: rdd.filter(nonzero_ratio).count(), "nonzero_ratio"),
    ("flatMap", lambda rdd: rdd.flatMap(items_of).count(), "items_of"),
    ("map into reduceByKey", lambda rdd: rdd.map(halve_pair).reduceByKey(add).collect(), "halve_pair"),
    ("mapValue into reduceByKey", lambda rdd: rdd.map(partial(pair, n=0)).mapValue(halve).reduceByKey(add).collect(),
     "halve"),
    ("reduceByKey's merge", lambda rdd: rdd.map(partial(pair, n=0)).reduceByKey(divide).collect(), "divide"),
    ("reduce", lambda rdd: rdd.map(plus_one).reduce(divide), "divide"),
    ("keyBy", lambda rdd: rdd.keyBy(pick_second).collect(), "pick_second"),
    ("an unpacking statement", lambda rdd: rdd.map(swap_kv).reduceByKey(add).collect(), "swap_kv"),
]


@pytest.mark.parametrize("what, job, name", FAILING, ids=[f[0] for f in FAILING])
def test_a_failing_inlined_function_is_named(ctx, what, job, name):
    with pytest.raises(JobError) as info:
        job(ctx.parallelize([3, 2, 1, 0, 0, 5], 2))
    assert info.value.func_name == f"test_inline.{name}"


def test_stop_iteration_from_an_inlined_function_fails_the_task(ctx):
    with pytest.raises(JobError) as info:
        ctx.parallelize([[1], [], [2]], 2).map(first_of).collect()
    assert info.value.remote_type == "StopIterationInTask"
    assert info.value.func_name == "test_inline.first_of"


def test_jobs_of_inlined_functions_equal_plain_python(ctx):
    lines = ctx.parallelize(LINES * 4, 3)
    counts = lines.flatMap(words).map(partial(pair, n=1)).reduceByKey(add).collectAsMap()
    expected: dict = {}
    for line in LINES * 4:
        for w in line.split():
            expected[w] = expected.get(w, 0) + 1
    assert counts == expected
    nums = ctx.parallelize(range(1, 200), 4)
    assert nums.map(arith).collect() == [arith(x) for x in range(1, 200)]
    assert nums.map(partial(weighted, 2, 3)).reduce(operator.add) == sum(3 * 2 + b for b in range(1, 200))
    points = [(x, x + 1) for x in range(1, 200)]
    assert ctx.parallelize(points, 3).map(hypot).collect() == [hypot(p) for p in points]
    assert nums.map(uses_global).reduceByKey(operator.add).collectAsMap() == \
        {k: sum(len(str(x)) for x in range(1, 200) if x % STEP == k) for k in range(STEP)}


@register_func
def not_iterable(x):
    return x


def test_iterating_a_flat_maps_result_blames_the_same_inlined_or_called(inlining, contexts):
    with pytest.raises(JobError) as info:
        contexts("local").parallelize([1, 2], 1).flatMap(not_iterable).collect()
    assert "not iterable" in info.value.remote_message
    assert info.value.func_name == "test_inline.not_iterable"      # the stage's function, as for any such failure
    assert "ran inline" not in info.value.remote_traceback         # the loop failed, not the function


def test_the_traceback_says_the_function_ran_inline(ctx):
    with pytest.raises(JobError) as info:
        ctx.parallelize([1, 0], 2).map(halve).collect()
    assert "ZeroDivisionError" in info.value.remote_traceback
    line = halve.__code__.co_firstlineno + 2       # its body (under @register_func and def), shown by no frame
    assert (f'(raised in test_inline.halve, File "{__file__}", line {line}, which gopark ran inline'
            in info.value.remote_traceback), info.value.remote_traceback


@pytest.mark.parametrize("value", ["0", "off", "False", " no "])
def test_gopark_inline_off_values(monkeypatch, value):
    monkeypatch.setenv(inline.SWITCH, value)
    assert not inline.enabled()


@pytest.mark.parametrize("value", ["1", "on", "", "yes"])
def test_gopark_inline_other_values_leave_it_on(monkeypatch, value):
    monkeypatch.setenv(inline.SWITCH, value)
    assert inline.enabled()


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_gopark_inline_0_calls_every_function(monkeypatch, master):
    """The switch in the driver's environment: its workers call the function too (its own frame)."""
    monkeypatch.setenv(inline.SWITCH, "0")
    assert not inline.enabled()
    with Context(master, quiet=True) as c:
        with pytest.raises(JobError) as info:
            c.parallelize([1, 0], 2).map(halve).collect()
        assert c.parallelize(range(1, 10), 2).map(halve_pair).filter(bool).count() == 9
    trace = info.value.remote_traceback
    assert "ZeroDivisionError" in trace and "ran inline" not in trace and ", in halve\n" in trace
    assert info.value.func_name == "test_inline.halve"


# --- counting: flatMap(f).map(w -> (w, 1)).reduceByKey(a + b) ---------------------------------------

@register_func
def one_float(w):
    return (w, 1.0)


@register_func
def one_true(w):
    return (w, True)


@register_func
def first_char_one(w):
    return (w[:1], 1)


@register_func
def add_zero(a, b):
    return a + b + 0


@register_func
def words_then_stop(line):
    return line.split() if line != "x" else next(iter([]))


def loop_kind(ops, merge, create=None):
    steps = pipeline._slots(ops, inline.enabled())[0]
    merge_slot, _ = pipeline._slot("merge", merge, 2, inline.enabled())
    create_slot = pipeline._slot("create", create, 1, inline.enabled())[0] if create else None
    return pipeline.combine_loop(steps, merge_slot, create_slot).__code__.co_filename.split()[1]


def test_a_word_count_counts_in_c(inlining):
    kind = loop_kind([("flatMap", words), ("map", partial(pair, n=1))], add)
    assert kind == ("count" if inlining == "inlined" else "combine")


@pytest.mark.parametrize("ops, merge", [
    ([("flatMap", words), ("map", partial(pair, n=2))], add),
    ([("flatMap", words), ("map", one_float)], add),
    ([("flatMap", words), ("map", one_true)], add),
    ([("flatMap", words), ("map", first_char_one)], add),
    ([("flatMap", words), ("map", partial(pair, n=1))], add_zero),
    ([("flatMap", words), ("map", partial(pair, n=1))], operator.mul),
    ([("map", partial(pair, n=1))], add),
    ([("flatMap", words), ("filter", not_a), ("map", partial(pair, n=1))], add),
], ids=["n=2", "1.0", "True", "not the word", "another merge", "mul", "no flatMap", "filter between"])
def test_what_is_not_a_count_is_combined(ops, merge):
    assert loop_kind(ops, merge) != "count"
    assert loop_kind([("flatMap", words), ("map", partial(pair, n=1))], add, create=as_list) != "count"


@pytest.mark.parametrize("lines", [LINES, ["a a a"] * 3000 + ["b"], [" ".join(f"w{i}" for i in range(5000))]])
def test_counting_gives_what_combining_gives(inlining, lines):
    combined: dict = {}
    seen = []
    pipeline.combine(iter(lines), [("flatMap", words), ("map", partial(pair, n=1))], combined, None, add,
                     lambda k, c: seen.append(k), TypeError)
    expected: dict = {}
    for line in lines:
        for w in line.split():
            expected[w] = expected.get(w, 0) + 1
    assert combined == expected
    assert all(type(v) is int for v in combined.values())
    if loop_kind([("flatMap", words), ("map", partial(pair, n=1))], add) == "count":
        assert (len(seen) >= 1) == (len(expected) >= 1024)      # counts: the budget is looked at as keys come
    else:       # a combine: after every CHECK_EVERY pairs folded, new keys or not (a combiner may grow)
        assert len(seen) == sum(len(line.split()) for line in lines) // pipeline.CHECK_EVERY


def test_counting_under_a_spill_and_through_jobs(ctx):
    many = [" ".join(f"w{(i * 7919 + j) % 20000}" for j in range(20)) for i in range(3000)]
    got = ctx.parallelize(many, 3).flatMap(words).map(partial(pair, n=1)).reduceByKey(add).collectAsMap()
    expected: dict = {}
    for line in many:
        for w in line.split():
            expected[w] = expected.get(w, 0) + 1
    assert got == expected
    with pytest.raises(JobError) as info:
        ctx.parallelize(["a b", "x"], 1).flatMap(words_then_stop).map(partial(pair, n=1)).reduceByKey(add).count()
    assert info.value.remote_type == "StopIterationInTask"
    assert info.value.func_name == "test_inline.words_then_stop"


@register_func
def halve_again(x):
    return 10 // x      # the same body as halve's: its own loop, its own blame


def test_two_functions_with_one_body_are_each_blamed(ctx):
    assert ctx.parallelize([1, 2], 1).map(halve).collect() == ctx.parallelize([1, 2], 1).map(halve_again).collect()
    for fn in (halve, halve_again):
        with pytest.raises(JobError) as info:
            ctx.parallelize([1, 0], 1).map(fn).collect()
        assert info.value.func_name == f"test_inline.{fn.__name__}"


@register_func
def with_weight(table, x):
    return (x, table[x])


@register_func
def with_default(x, d={"a": 5}):  # noqa: B006  (a default the function only reads)
    return (x, d.get(x, 0))


@register_func
def with_bit_length(w, n=1):
    return (w, n.bit_length())


def test_pairs_whose_value_is_an_expression_of_a_constant(ctx):
    """(x, table[x]), (x, d.get(x, 0)), (w, n.bit_length()): pairs, not counts, and no error deciding so."""
    rdd = ctx.parallelize(["a", "b", "a"], 2)
    assert rdd.map(partial(with_weight, {"a": 1, "b": 2})).collect() == [("a", 1), ("b", 2), ("a", 1)]
    assert rdd.map(with_default).reduceByKey(add).collectAsMap() == {"a": 10, "b": 0}
    assert rdd.flatMap(words).map(with_bit_length).reduceByKey(add).collectAsMap() == {"a": 2, "b": 1}


@pytest.mark.parametrize("sizes", [[10_000], [3000] * 5, [1] * 3000, [1500, 1, 700, 5000]])
def test_counting_checks_the_budget_as_often_as_combining(inlining, sizes):
    """About every CHECK_EVERY new keys, even inside one record; a spill (the check empties the dict) mid-record."""
    lines = budget_lines(sizes)
    assert_budget_checked(lambda: iter(lines), lines)


def budget_lines(sizes: list[int]) -> list[str]:
    """A line of ``size`` distinct words for each of ``sizes``."""
    return [" ".join(f"w{n}_{i}" for i in range(size)) for n, size in enumerate(sizes)]


def assert_budget_checked(records, lines: list[str]) -> None:
    """Counting the words of ``records()`` (the ``lines``, each time afresh) checks the budget once every
    CHECK_EVERY new keys, and a check that spills (empties the dict) loses and doubles nothing."""
    ops = [("flatMap", words), ("map", partial(pair, n=1))]
    calls: list = []
    pipeline.combine(records(), ops, {}, None, add, lambda k, c: calls.append(k), TypeError)
    assert len(calls) == sum(len(line.split()) for line in lines) // pipeline.CHECK_EVERY
    spilled: list = []
    combined: dict = {}

    def spill(k, c):
        spilled.append(dict(combined))
        combined.clear()
    pipeline.combine(records(), ops, combined, None, add, spill, TypeError)
    assert max(len(part) for part in spilled) < 2 * pipeline.CHECK_EVERY   # counted a slice at a time
    merged: dict = {}
    for part in [*spilled, combined]:
        for k, v in part.items():
            merged[k] = merged.get(k, 0) + v
    assert merged == {w: 1 for line in lines for w in line.split()}


# --- a word count of a text file splits pieces of lines at once ------------------------------------

#: lines whose words (``str.split()``) are cut by more than spaces: CR LF, a lone CR, tabs, Unicode
#: whitespace (which ends no textFile line), undecodable bytes, long lines, empty ones, no final newline
AWKWARD_TEXT = (b"a b\r\nb\tc\r\n\n\n c\rd \x1c e\x1df\xc2\x85g\xe2\x80\xa8h\xe3\x80\x80i\xc2\xa0j\n"
                b"\xff\xfe bad bytes \xc3\n" + b" ".join(b"w%d" % (i % 3000) for i in range(9000)) + b"\n"
                + b"".join(b"line %d of %d words\n" % (i, i % 7) for i in range(4000)) + b"x" * 5000 + b"\n  y")


def reference_counts(data: bytes) -> dict:
    counts: dict = {}
    for line in data.decode("utf-8", "replace").split("\n"):
        for w in line.split():
            counts[w] = counts.get(w, 0) + 1
    return counts


@register_func
def split_words(line):
    return line.split()


@pytest.mark.parametrize("split", [words, str.split, split_words], ids=["words", "str.split", "lambda-like"])
def test_a_text_files_words_counted_a_piece_at_a_time_are_its_lines_words(ctx, tmp_path, split):
    """textFile(...).flatMap(split).map((w, 1)).reduceByKey(add): counted from pieces of lines, cut by the
    splits anywhere (inside lines too), gzipped or not: the words of each line, counted, as Python counts them."""
    path = tmp_path / "awkward.txt"
    path.write_bytes(AWKWARD_TEXT)
    gz = tmp_path / "awkward.txt.gz"
    gz.write_bytes(gzip.compress(AWKWARD_TEXT))
    expected = reference_counts(AWKWARD_TEXT)
    assert "\ufffd" in expected and "\u2028" not in expected and "x" * 5000 in expected
    for source in [ctx.textFile(str(path)), ctx.textFile(str(path), splitSize=777), ctx.textFile(str(gz))]:
        got = source.flatMap(split).map(partial(pair, n=1)).reduceByKey(add).collectAsMap()
        assert got == expected
        assert all(type(v) is int for v in got.values())


def test_a_text_file_counted_under_a_small_budget_spills_and_sums(tmp_path):
    """The pieces of a split are counted with the budget checked as they come: a spill between pieces."""
    path = tmp_path / "many.txt"
    data = b"".join(b" ".join(b"k%d" % ((i * 7919 + j) % 60000) for j in range(12)) + b"\n" for i in range(40000))
    path.write_bytes(data)
    for master in ("local", "process:2"):
        with Context(master, mem=1, quiet=True) as ctx:
            got = ctx.textFile(str(path)).flatMap(words).map(partial(pair, n=1)).reduceByKey(add).collectAsMap()
        assert got == reference_counts(data)


def lines_of_file(path) -> text.Lines:
    return text.read_split({"kind": "file", "path": str(path), "start": 0, "end": os.path.getsize(path)})


@pytest.mark.parametrize("sizes", [[10_000], [3000] * 5, [1] * 3000, [1500, 1, 700, 5000]])
def test_counting_a_text_file_checks_the_budget_as_often_as_combining(tmp_path, sizes):
    """As for records (above): about every CHECK_EVERY new keys, a spill between pieces or inside a long line."""
    path = tmp_path / "keys.txt"
    lines = budget_lines(sizes)
    path.write_text("\n".join(lines) + "\n")
    assert_budget_checked(lambda: lines_of_file(path), lines)


def test_lines_already_taken_are_not_counted_again(tmp_path):
    """Pieces of text are taken only from a split none of whose lines was taken: else, the lines left."""
    path = tmp_path / "three.txt"
    path.write_text("a b\nc\nd d\n")
    lines = lines_of_file(path)
    assert text.texts_of(lines) is not None
    assert next(lines) == "a b"
    assert text.texts_of(lines) is None
    combined: dict = {}
    pipeline.combine(lines, [("flatMap", words), ("map", partial(pair, n=1))], combined, None, add,
                     lambda k, c: None, TypeError)
    assert combined == {"c": 1, "d": 2}


# --- a loop runs with the module dict of the functions it inlines as its globals -------------------

def test_an_inlined_global_is_read_by_its_bare_name():
    steps, fns, _, _, home = pipeline._slots([("map", uses_global)], True)
    assert home is globals()
    loop = pipeline.iterate_loop(steps)
    assert "STEP" in pipeline._globals_read(loop.__code__)
    assert list(loop(home)(iter([4, 10]), fns)) == [uses_global(4), uses_global(10)]


def test_globals_named_like_the_loops_own_keep_their_meaning(ctx):
    """``n``, ``k``, ``a``, ``hash``, ``type``, ``count``, ``END``... of the app's module, read by inlined
    functions, are the module's; the loop's own names are its own (a hash partitioner's ``hash``)."""
    nums = ctx.parallelize(range(100), 3)
    expected: dict = {}
    for x in range(100):
        key, value = shadow_app.plus_n(x)
        expected[key] = expected.get(key, 0) + value
    assert nums.map(shadow_app.plus_n).reduceByKey(add).collectAsMap() == expected
    assert dict(nums.map(shadow_app.module_k).groupByKey().mapValue(len).collect()) == {0: 34, 1: 33, 2: 33}
    assert set(nums.map(shadow_app.module_k).values().collect()) == {("the module's k", -1, "not the loop's end", None)}
    parts = nums.map(shadow_app.hashed).partitionByKey(4).glom().collect()
    assert [sorted(set(part)) for part in parts] == [[(r, len("shadowed"))] for r in range(4)]


def test_a_global_is_read_for_each_record(ctx):
    got = ctx.parallelize(range(100), 2).filter(shadow_app.set_step).map(shadow_app.add_step).reduceByKey(add)
    assert got.collectAsMap() == {r: sum(x + x // 10 for x in range(100) if x % 2 == r) for r in (0, 1)}


def test_functions_of_two_modules_in_one_loop(ctx):
    nums = ctx.parallelize(range(1, 60), 2)
    got = nums.map(uses_global).map(shadow_app.plus_n_of_key).collect()
    assert got == [shadow_app.plus_n_of_key(uses_global(x)) for x in range(1, 60)]


def test_a_global_deleted_while_records_flow_is_a_name_error():
    shadow_app.MISSING = 5                  # deleted by the filter at the second record
    try:
        loop = pipeline.iterate(iter([1, 2, 3]), [("filter", shadow_app.delete_missing_at_2),
                                                  ("map", shadow_app.gone)])
        assert next(loop) == (1, 5)
        with pytest.raises(NameError, match="MISSING"):
            next(loop)
    finally:
        vars(shadow_app).pop("MISSING", None)


def test_a_loop_runs_with_the_builtins_its_functions_read(monkeypatch):
    """A module whose ``__builtins__`` was replaced after its function was made: the function still reads
    the builtins it was made with, and so does the loop that inlines it (the module is not its globals)."""
    module = types.ModuleType("swapped_builtins")
    exec("def size(x):\n    return len(x) + K\n", module.__dict__)
    module.K = 1
    module.__builtins__ = dict(vars(builtins), len=lambda x: 99)
    custom = dict(vars(builtins), len=lambda x: -1)
    made = {"__builtins__": custom}
    exec("def size(x):\n    return len(x) + K\nK = 2\n", made)
    for fn, expected in ((module.size, [3, 4]), (made["size"], [1, 1])):
        assert [fn("ab"), fn("xyz")] == expected
        assert list(pipeline.iterate(iter(["ab", "xyz"]), [("map", fn)])) == expected
        monkeypatch.setattr(inline, "SUPPORTED", (0, 0))
        assert list(pipeline.iterate(iter(["ab", "xyz"]), [("map", fn)])) == expected
        monkeypatch.undo()


def test_a_global_whose_name_is_not_nfkc_normal_is_the_one_read():
    space: dict = {"__builtins__": builtins, "\ufb01": "ligature", "fi": "plain fi"}
    exec("def f(x):\n    return (x, XX)\n", space)
    f = space["f"]
    f.__code__ = f.__code__.replace(co_names=("\ufb01",))   # made by hand: source would read 'fi'
    assert f(1) == (1, "ligature")
    assert list(pipeline.iterate(iter([1]), [("map", f)])) == [(1, "ligature")]
