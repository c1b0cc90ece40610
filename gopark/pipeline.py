"""Narrow per-record operations fused, into one Python loop, with what consumes their records.

``textFile(...).flatMap(words).map(pair).reduceByKey(add)`` calls two user
functions per word. Run as C iterators (``map``, ``chain``), each call enters
the interpreter afresh from C; written as one loop, the calls are plain
Python-to-Python calls, which CPython 3.11 makes without a new C frame (the
word count in local mode: 16.3 s before, 13.7 s after).

Every run of per-record operations (:data:`PER_RECORD`) is one generated
generator (:func:`iterate`); three consumers take the operations into their
own loop: the map-side combine of a shuffle (``reduceByKey``,
``combineByKey``, ``distinct``: :func:`combine`), the scatter of a map task's
records to its reducers' buffers (every other shuffle, and a combine that
stopped combining: :func:`scatter`), and the fold of the ``reduce``,
``fold`` and ``aggregate`` actions (:func:`fold`). A StopIteration raised by the app's
function inside the loop fails the task (:class:`StopIterationInTask`); under
C's ``map`` it would have passed for the end of the partition.

A loop is generated from fixed templates per *shape* (the consumer and the
sequence of operation names), compiled once per process and cached. No user
code is in the generated source: the app's functions are arguments of the
compiled loop, as they would be of ``map``; the loop runs with the module
dict of the functions it inlines as its globals, so that it reads their
globals as they do (:func:`_slots`), and binds its own names as locals.
This module is where these operations mean what they mean; ``rdd._pipe``
runs the others (mapPartitions, glom, sample, ...).
"""
from __future__ import annotations

import builtins
import dataclasses
import dis
import functools
import itertools
import re
import types
import unicodedata
import warnings
import weakref
import zlib
from collections import _count_elements  # type: ignore[attr-defined]  # Counter's C loop
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gopark import inline, registry
from gopark.io.text import texts_of
from gopark.partitioner import HashPartitioner

#: operations that turn one record into zero, one or more records, with no state
PER_RECORD = frozenset({"map", "flatMap", "filter", "mapValue", "flatMapValue", "keys", "values", "keyBy"})
_ONE_TO_ONE = frozenset({"map", "mapValue", "keys", "values", "keyBy", "keyBySelf"})   # one record each

CHECK_EVERY = 1024   # pairs folded (new keys, where keys are counted) between two calls of ``check``
_PIECE = 2048        # characters of lines whose words a counting loop splits at once (see _CountBudget)

_NESTING = frozenset({"flatMap", "flatMapValue"})   # each opens one more ``for`` in the loop
_MAX_NESTED = 8      # of them in one generated loop (Python allows 20 nested blocks in a function)


def _shallow(records: Iterable[Any], ops: Sequence[tuple[str, Callable[..., Any]]]) -> tuple[Iterable[Any], Sequence]:
    """``records`` through all but the last ``_MAX_NESTED`` nesting operations, and the operations left."""
    nesting = [i for i, (op, _) in enumerate(ops) if op in _NESTING]
    if len(nesting) <= _MAX_NESTED:
        return records, ops
    cut = nesting[-_MAX_NESTED]
    return iterate(records, ops[:cut]), ops[cut:]


@dataclass(frozen=True)
class _Slot:
    """A function of a generated loop: called by its name ``var`` in the loop, or inlined.

    Inlined (``template`` set, see :mod:`gopark.inline`), the loop receives,
    under ``var``, the expression's ``nconsts`` constants instead of the function.
    """

    var: str
    template: str | None = None
    nconsts: int = 0
    name: str | None = None      # blamed for a failure in the inlined expression
    items: tuple[str, ...] | None = None     # the inlined expression is a tuple display of these
    statements: tuple[str, ...] = ()         # the inlined function's assignments, before its expression
    ones: bool = False                       # inlined as ``(x, 1)``: the pair of its argument and the int 1
    one: bool = False                        # inlined as ``(..., 1)``: a pair whose value is the int 1
    spaces: tuple[int, int] | None = None    # inlined, reading globals: see :attr:`inline.Expr.spaces`
    reads: tuple[str, ...] = ()              # the globals the inlined expression reads
    home: bool = False                       # its module's dict is the loop's globals (see :func:`_slots`)

    def prelude(self, pad: str, *args: str) -> list[Line]:
        """The lines to run before :meth:`call` (or :meth:`call_items`) with the same ``args``."""
        return [(pad + s.format(*args, c=f"{self.var}_"), self.name) for s in self.statements]

    def call(self, *args: str) -> str:
        if self.template is None:
            return f"{self.var}({', '.join(args)})"
        return self.template.format(*args, c=f"{self.var}_")

    def call_items(self, *args: str) -> list[str]:
        """The items of the tuple the inlined expression builds, each as source."""
        return [item.format(*args, c=f"{self.var}_") for item in self.items or ()]

    def bare_reads(self) -> dict[str, str]:
        """{the source reading a global as the expression does: the global's name}, when the loop runs with
        the function's module dict as its globals: a bare name is read by LOAD_GLOBAL, cached by CPython."""
        if not self.home or self.spaces is None:
            return {}
        return {inline.global_read(f"{self.var}_", self.spaces, name): name for name in self.reads}

    def bind(self) -> list[str]:
        """The loop's first lines: the constants of an inlined expression as local names."""
        if not self.nconsts:
            return []
        return [f"    {', '.join(f'{self.var}_{j}' for j in range(self.nconsts))}, = {self.var}"]


def _label(fn: Any) -> str:
    """The name a failure of ``fn`` is blamed on: its registered name where it has one."""
    target = fn.func if isinstance(fn, functools.partial) else fn
    if isinstance(target, types.FunctionType):
        found = registry.registered_name(target.__code__)
        if found:
            return found
    try:
        return f"{getattr(target, '__module__', None) or 'builtins'}.{getattr(target, '__qualname__', '?')}"
    except Exception:          # an odd callable's __getattr__: it still gets a name
        return type(target).__qualname__


def _slot(var: str, fn: Any, nargs: int, inlining: bool) -> tuple[_Slot, Any]:
    """The slot of ``fn`` (called with ``nargs`` arguments) and what the loop receives for it."""
    expr = inline.expression(fn, nargs, _label(fn)) if inlining and fn is not None else None
    if expr is None:
        return _Slot(var), fn
    second = re.fullmatch(r"\{c\}(\d+)", expr.items[1]) if expr.items is not None and len(expr.items) == 2 else None
    one = second is not None and _is_int_one(expr.consts[int(second[1])])
    ones = one and not expr.statements and expr.items[0] == "{0}"  # type: ignore[index]
    return (_Slot(var, expr.template, len(expr.consts), expr.name, expr.items, expr.statements, ones, one,
                  expr.spaces, expr.reads), expr.consts)


def _is_int_one(value: Any) -> bool:
    return type(value) is int and value == 1


def _slots(ops: Sequence[tuple[str, Any]], inlining: bool, *others: tuple[str, Any, int]) \
        -> tuple[tuple[tuple[str, _Slot], ...], list[Any], list[_Slot | None], list[Any], dict[str, Any]]:
    """Each operation's slot (``f0``, ``f1``...) and the list ``fns`` the loop receives; the slots and
    values of the ``others`` (``(var, fn, nargs)``, the merge of a combine...; None for no function);
    and the globals the loop runs with.

    These are the module dict of the first inlined function that reads globals: its loop reads
    them by their bare names (:meth:`_Slot.bare_reads`), as the function does, at the speed of a
    LOAD_GLOBAL, which CPython caches, instead of two dict lookups. The generated code's own
    names are all local, so a module's names never change what it means.
    """
    slots: list[_Slot | None] = []
    values: list[Any] = []
    for i, (_, fn) in enumerate(ops):
        slot, value = _slot(f"f{i}", fn, 1, inlining)      # every per-record function takes one argument
        slots.append(slot)
        values.append(value)
    for var, fn, nargs in others:
        slot, value = _slot(var, fn, nargs, inlining) if fn is not None else (None, None)
        slots.append(slot)
        values.append(value)
    # each slot's module dict, where a loop running with it would read the builtins its function reads
    # (not so after the module's __builtins__ was replaced, or for a function made with other builtins)
    modules = [values[i][s.spaces[0]] if s is not None and s.spaces
               and _builtins_of(values[i][s.spaces[0]]) is values[i][s.spaces[1]] else None
               for i, s in enumerate(slots)]
    home = next((m for m in modules if m is not None), _NO_GLOBALS)
    slots = [dataclasses.replace(s, home=True) if m is home else s for s, m in zip(slots, modules)]
    steps = tuple((op, slot) for (op, _), slot in zip(ops, slots))
    return steps, values[:len(ops)], slots[len(ops):], values[len(ops):], home   # type: ignore[return-value]


_NO_GLOBALS: dict[str, Any] = {"__builtins__": {}}     # a loop that reads no global of the app's


def _builtins_of(space: dict[str, Any]) -> Any:
    """The builtins a function made with globals ``space`` reads (as ``types.FunctionType`` finds them)."""
    found = space.get("__builtins__", builtins)
    return found.__dict__ if isinstance(found, types.ModuleType) else found


Line = tuple[str, "str | None"]      # a line of source, and the function blamed for a failure on it


def _step(op: str, f: _Slot, x: str, depth: int) -> tuple[list[Line], str, int]:
    """Source lines applying operation ``op`` (function ``f``) to record ``x``; the next record's name."""
    pad = "    " * depth
    y = f"y{f.var[1:]}"
    name = f.name
    if op == "map":
        return [*f.prelude(pad, x), (f"{pad}{y} = {f.call(x)}", name)], y, depth
    # flatMap, filter, flatMapValue: the function's result on a line of its own, so that a failure
    # iterating or testing it is not blamed on an inlined function
    t = f"t{f.var}"
    if op == "flatMap":
        return [*f.prelude(pad, x), (f"{pad}{t} = {f.call(x)}", name), (f"{pad}for {y} in {t}:", None)], y, depth + 1
    if op == "filter":
        return [*f.prelude(pad, x), (f"{pad}{t} = {f.call(x)}", name), (f"{pad}if not {t}:", None),
                (f"{pad}    continue", None)], x, depth
    if op == "mapValue":
        k, v = f"k{f.var}", f"v{f.var}"
        return [*_split_pair(pad, x, k, v, op), *f.prelude(pad, v),
                (f"{pad}{y} = ({k}, {f.call(v)})", name)], y, depth
    if op == "flatMapValue":
        k, v, w = f"k{f.var}", f"v{f.var}", f"w{f.var}"
        return [*_split_pair(pad, x, k, v, op), *f.prelude(pad, v), (f"{pad}{t} = {f.call(v)}", name),
                (f"{pad}for {w} in {t}:", None), (f"{pad}    {y} = ({k}, {w})", None)], y, depth + 1
    if op == "keys":
        return [(f"{pad}{y} = {x}[0]", None)], y, depth
    if op == "values":
        return [(f"{pad}{y} = {x}[1]", None)], y, depth
    if op == "keyBy":
        return [*f.prelude(pad, x), (f"{pad}{y} = ({f.call(x)}, {x})", name)], y, depth
    if op == "keyBySelf":       # keyBy with no function (sort without a key): (x, x)
        return [(f"{pad}{y} = ({x}, {x})", None)], y, depth
    raise ValueError(f"{op!r} is not a per-record operation")


Pair = tuple[str, str, "str | None"]     # a record known to be a pair: its key's and value's source, blamed function


def _match_pair(pad: str, x: str, k: str, v: str, error: str) -> list[Line]:
    """``k, v = x`` where ``x`` is a pair, else ``raise error``: a pair is a sequence of two (a tuple or
    list; a sequence pattern), never a str, bytes, dict, set or iterator of two."""
    return [(f"{pad}match {x}:", None), (f"{pad}    case ({k}, {v}):", None), (f"{pad}        pass", None),
            (f"{pad}    case _:", None), (f"{pad}        raise {error}", None)]


def _split_pair(pad: str, x: str, k: str, v: str, op: str) -> list[Line]:
    """``k, v = x`` for ``op`` (mapValue, flatMapValue), as a shuffle takes a pair (see :func:`_match_pair`)."""
    return _match_pair(pad, x, k, v, f"pair_needed({op!r}, {x})")


def pair_needed(op: str, record: Any) -> TypeError:
    """The error for a record ``op`` got that is not a (key, value) pair."""
    return TypeError(f"{op} needs (key, value) pairs, got {type(record).__name__}: {record!r:.80}")


def _pair_step(op: str, f: _Slot, x: str, depth: int) -> tuple[list[Line], Pair] | None:
    """Operation ``op`` on ``x`` when its result is a pair display, as the pair's two parts; else None.

    ``mapValue`` always gives one, ``map`` when its function is inlined as a
    2-tuple: the consumer then unpacks ``k, v = key, value`` without building
    (and checking) the tuple.
    """
    pad = "    " * depth
    if op == "map" and f.items is not None and len(f.items) == 2:
        key, value = f.call_items(x)
        return f.prelude(pad, x), (key, value, f.name)
    if op == "mapValue":
        k, v = f"k{f.var}", f"v{f.var}"
        return [*_split_pair(pad, x, k, v, op), *f.prelude(pad, v)], (k, f.call(v), f.name)
    return None


class StopIterationInTask(RuntimeError):
    """A function of the app raised StopIteration while records flowed through it.

    Run from an iterator, that would silently end the partition early (losing
    records, as SPARK-23754 found in PySpark); the task fails instead.
    """


_END = object()      # a block of records that gave none (see _compile's ``every``)

_STOPPED = ("a function raised StopIteration, which would have silently ended this partition early; "
            "the task fails instead (raise another exception to stop on purpose)")


#: the pair a loop over known (key, value) 2-tuples unpacks as it takes them (see :func:`_compile`)
KNOWN_PAIR: Pair = ("k", "v", None)

_PAIR_SINKS = frozenset({"combine", "scatter"})     # loops that consume (key, value) pairs

#: {code of a generated loop: {line: the function inlined on it}}, for blaming failures
_INLINED_LINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def inlined_name(code: Any, line: int) -> str | None:
    """The function whose inlined expression is on ``line`` of a generated loop's ``code``, if any."""
    lines = _INLINED_LINES.get(code)
    return lines.get(line) if lines else None


class _Loop:
    """A compiled loop: ``loop(globals)`` is the loop function that runs with those globals (the last
    value of :func:`_slots`)."""

    def __init__(self, code: types.CodeType, helpers: tuple) -> None:
        self.__code__ = code
        self.helpers = helpers

    def __call__(self, globals_: dict[str, Any]) -> Callable:
        return types.FunctionType(self.__code__, globals_, "loop", (self.helpers,))


#: what the generated source names, besides builtins and its parameters (see :func:`_compile`)
_HELPERS = {"StopIterationInTask": StopIterationInTask, "STOPPED": _STOPPED, "count": _count_elements,
            "crc32": zlib.crc32, "pair_needed": pair_needed, "islice": itertools.islice, "chain": itertools.chain,
            "END": _END}
_UNBOUND = "    pass  # its helpers, bound here"


def _compile(kind: str, params: str, steps: tuple[tuple[str, _Slot], ...], sinks: Sequence[_Slot],
             sink: Callable[[str, Pair | None], list[Line]], tail: list[str], run: int | None = None,
             head: Sequence[str] = (), pairs: bool = False, every: Sequence[str] = ()) -> _Loop:
    """``def loop(params)``: ``records`` through ``steps``, ``sink(x)`` on each result ``x``, then ``tail``.

    ``sink`` gets the record's name, and for a consumer of pairs whose last
    operation gives a pair display, the pair's parts (:func:`_pair_step`).
    With ``pairs`` (and no steps), the records are known to be (key, value)
    2-tuples: the loop unpacks them as it takes them, and the sink gets the
    pair ``k, v``. ``head`` lines run before the loop. With ``run``, only the
    first ``run`` steps are written out, the sink does the others. With
    ``every``, the records are taken in blocks of ``CHECK_EVERY`` (``islice``),
    and the ``every`` lines run after each block: counting records costs
    nothing per record. A StopIteration raised in the loop's body (by a
    function of the app: the loop's own end is not raised) becomes
    :class:`StopIterationInTask`.
    """
    lines: list[Line] = [(f"def loop({params}, _helpers=None):", None), (_UNBOUND, None)]
    if steps:
        lines.append((f"    {', '.join(slot.var for _, slot in steps)}, = fns", None))
    for slot in [slot for _, slot in steps] + list(sinks):
        lines += [(text, None) for text in slot.bind()]
    lines += [(f"    {text}", None) for text in head]
    target = "k, v" if pairs else "x0"
    if every:
        first = target.split(",")[0]       # END until the block gives a record: the sink never assigns it
        # chain: once the records end, they stay ended (a C map over a function raising StopIteration would
        # go on giving records if asked again by the next block)
        lines += [("    records = chain(records)", None), ("    try:", None), ("        while True:", None),
                  (f"            {first} = END", None),
                  (f"            for {target} in islice(records, {CHECK_EVERY}):", None)]
        x, depth = "x0", 4
    else:
        lines += [("    try:", None), (f"        for {target} in records:", None)]
        x, depth = "x0", 3
    last = _pair_step(*steps[-1], "", 0) if kind in _PAIR_SINKS and steps else None
    for op, slot in steps[:run] if run is not None else steps[:-1] if last else steps:
        more, x, depth = _step(op, slot, x, depth)
        lines += more
    pair: Pair | None = KNOWN_PAIR if pairs else None
    if last:
        more, pair = _pair_step(*steps[-1], x, depth)  # type: ignore[misc]
        lines += more
    lines += [(("    " * depth) + text, name) for text, name in sink(x, pair)]
    if every:
        lines += [(f"            if {first} is END:", None), ("                break", None),
                  *((f"            {text}", None) for text in every)]
    lines += [("    except StopIteration as exc:", None),
              ("        raise StopIterationInTask(STOPPED) from exc", None)]
    lines += [(text, None) for text in tail]
    shape = "/".join(op for op, _ in steps) or "-"
    # code objects compare by content: the docstring naming the inlined functions keeps two loops
    # that differ only in whom they blame apart (in _INLINED_LINES, keyed by code)
    inlined = sorted({name for _, name in lines if name})
    if inlined:
        lines.insert(1, (f"    {'inlines ' + ', '.join(inlined)!r}", None))
    source = "\n".join(text for text, _ in lines) + "\n"
    filename = f"<gopark {kind} loop {shape}>"
    # every name the source reads besides its own (helpers and builtins) is bound as a local from
    # the start: no global of the app (the loop may run with its module's dict) changes what they mean
    helpers = sorted(_globals_read(_loop_code(source, filename)))
    values = tuple(_HELPERS[name] if name in _HELPERS else getattr(builtins, name) for name in helpers)
    source = source.replace(_UNBOUND, f"    {', '.join(helpers)}, = _helpers" if helpers else "    pass", 1)
    code = _loop_code(source, filename)
    # a global that a local of the loop's would hide, or that the parser would read as another name
    # (not NFKC-normal: only made by hand), stays a lookup
    bare = {read: name for slot in [slot for _, slot in steps] + list(sinks) for read, name in slot.bare_reads().items()
            if name not in code.co_varnames and (name.isascii() or unicodedata.normalize("NFKC", name) == name)}
    for read, name in bare.items():
        source = source.replace(read, name)
    if bare:
        code = _loop_code(source, filename)
    blamed = {n: name for n, (_, name) in enumerate(lines, 1) if name}
    if blamed:
        _INLINED_LINES[code] = blamed
    return _Loop(code, values)


def _globals_read(code: types.CodeType) -> set[str]:
    return {ins.argval for ins in dis.get_instructions(code) if ins.opname == "LOAD_GLOBAL"}


def _loop_code(source: str, filename: str) -> types.CodeType:
    """The code of the function ``loop`` that ``source`` defines."""
    with warnings.catch_warnings():    # an inlined function's own SyntaxWarning was said when it was defined
        warnings.simplefilter("ignore")
        module = compile(source, filename, "exec")
    return next(c for c in module.co_consts if isinstance(c, types.CodeType) and c.co_name == "loop")


def _iterate_sink(x: str, pair: Pair | None) -> list[Line]:
    return [(f"yield {x}", None)]


@functools.lru_cache(maxsize=256)
def iterate_loop(steps: tuple[tuple[str, _Slot], ...]) -> _Loop:
    """The compiled generator ``loop(records, fns)``: the records of ``records`` run through ``steps``."""
    return _compile("iterate", "records, fns", steps, (), _iterate_sink, [])


def iterate(records: Iterable[Any], ops: list[tuple[str, Callable[..., Any]]]) -> Iterator[Any]:
    """``records`` run through the per-record ``ops``, as one generator (see :func:`iterate_loop`)."""
    if not ops:
        return iter(records)
    records, ops = _shallow(records, ops)
    steps, fns, _, _, home = _slots(ops, inline.enabled())
    return iterate_loop(steps)(home)(records, fns)


def _unpack(x: str, pair: Pair | None) -> list[Line]:
    """``k, v`` of the record ``x``: from a pair display's parts, else unpacked (``not_a_pair`` if it is not one:
    a 2-tuple or a 2-list; a str, bytes, dict or set of two items is not)."""
    if pair is None:
        return _match_pair("", x, "k", "v", f"not_a_pair({x})")
    if pair is KNOWN_PAIR:
        return []
    return [(f"k, v = {pair[0]}, {pair[1]}", pair[2])]


@functools.lru_cache(maxsize=256)
def combine_loop(steps: tuple[tuple[str, _Slot], ...], merge: _Slot, create: _Slot | None,
                 pairs: bool = False, probe: bool = False) -> _Loop:
    """The compiled loop ``loop(records, fns, combined, create, merge, check, not_a_pair)``.

    For each record of ``records``, run through ``steps`` (``fns[i]`` is what
    the loop receives for ``steps[i]``: the function, or the constants of its
    inlined expression), it folds the resulting ``(k, v)`` into the dict
    ``combined``: ``merge(combined[k], v)`` for a key it holds, else ``v`` (or
    ``create(v)``). After every ``CHECK_EVERY`` pairs folded (new keys or not:
    a combiner may grow as values fold into it, a list appended to) it calls
    ``check(k, combined[k])``, which may empty ``combined`` (a spill). A
    result that is not a pair raises ``not_a_pair(result)``; with ``pairs``
    (no steps), every record is known to be a (key, value) 2-tuple. With
    ``probe``, it returns how many pairs it folded and how many of their keys
    were new.
    """
    if not probe and _counts(steps, merge, create):
        return _count_loop(steps)

    def sink(x: str, pair: Pair | None) -> list[Line]:
        merged = (merge.call("combined[k]", "v") if merge.template is None
                  else merge.call("m", "v"))
        return [
            *_unpack(x, pair),
            *([("seen += 1", None)] if probe else []),
            ("if k in combined:", None),
            *([] if merge.template is None else [("    m = combined[k]", None), *merge.prelude("    ", "m", "v")]),
            (f"    combined[k] = {merged}", merge.name),
            ("else:", None),
            *(create.prelude("    ", "v") if create else []),
            (f"    combined[k] = {create.call('v') if create else 'v'}", create.name if create else None),
            *([("    new += 1", None)] if probe else []),
            ("fresh += 1", None),
            (f"if fresh == {CHECK_EVERY}:", None),
            ("    fresh = 0", None),
            ("    check(k, combined[k])", None),
        ]
    sinks = [merge] + ([create] if create else [])
    return _compile("combine", "records, fns, combined, create, merge, check, not_a_pair", steps, sinks, sink,
                    ["    return seen, new"] if probe else [],
                    head=["fresh = 0"] + (["seen = new = 0"] if probe else []), pairs=pairs)


def _counts(steps: tuple[tuple[str, _Slot], ...], merge: _Slot, create: _Slot | None) -> bool:
    """The combine counts the words of a flatMap: ``flatMap(f).map(w -> (w, 1)).reduceByKey(a + b)``.

    The last step is a map inlined as ``(x, 1)`` (``1`` the int; see
    :func:`_slot`), after a flatMap; the merge is inlined as ``a + b``; no create.
    """
    if create is not None or merge.template != "({0} + {1})" or merge.statements or len(steps) < 2:
        return False
    (op, f), (last, g) = steps[-2:]
    return op == "flatMap" and last == "map" and g.ones


def _splits_words(step: tuple[str, _Slot], fn: Any) -> bool:
    """The step is ``flatMap(x -> x.split())``: a str's words, split on whitespace (as line ends are)."""
    op, slot = step
    if op != "flatMap":
        return False
    if slot.template is None:
        return fn is str.split
    return slot.template == "{0}.split()" and not slot.statements and not slot.nconsts


def _count_loop(steps: tuple[tuple[str, _Slot], ...]) -> _Loop:
    """The combine of :func:`combine_loop` when it counts: each record's flatMap output goes to
    ``collections``' C counting loop (``combined[w] = combined.get(w, 0) + 1`` for each ``w``:
    for int counts, what the generated ``(w, 1)`` and ``a + b`` do), then the budget is checked."""
    _, f = steps[-2]
    t = f"t{f.var}"

    def sink(x: str, pair: Pair | None) -> list[Line]:
        return [
            *f.prelude("", x),
            (f"{t} = {f.call(x)}", f.name),
            (f"if type({t}) is list and len({t}) <= {CHECK_EVERY}:", None),
            (f"    count(combined, {t})", None),
            ("else:", None),
            (f"    check.count_slices(combined, {t})", None),
            ("if len(combined) >= check.due:", None),
            ("    check.settle(combined)", None),
        ]
    # its ``check`` is a _CountBudget (see combine)
    return _compile("count", "records, fns, combined, create, merge, check, not_a_pair", steps, [], sink, [],
                    run=len(steps) - 2)


class _CountBudget:
    """``check`` of a counting loop: called, as by the combine loop, after every ``CHECK_EVERY`` new keys
    (a record with more words is counted a slice at a time, so that a spill can come in between)."""

    def __init__(self, check: Callable[[Any, Any], None], combined: dict) -> None:
        self.check = check
        self.due = len(combined) + CHECK_EVERY

    def settle(self, combined: dict) -> None:
        while len(combined) >= self.due:
            k = next(reversed(combined))
            self.check(k, combined[k])               # may spill: empty the dict
            self.due = self.due + CHECK_EVERY if combined else CHECK_EVERY

    def count_texts(self, combined: dict, texts: Iterable[str]) -> None:
        """Count the words of the lines of ``texts`` (see :func:`texts_of`), split a piece of lines
        of about ``_PIECE`` characters at a time: no str is made per line, no loop step runs per line,
        and a piece's words are still in the cache when they are counted (a whole block's are not:
        slower than line by line)."""
        for block in texts:
            start, size = 0, len(block)
            while start < size:
                end = block.find("\n", start + _PIECE)
                if end < 0:
                    end = size
                words = block[start:end].split()
                start = end + 1
                if len(words) <= CHECK_EVERY:
                    _count_elements(combined, words)
                    if len(combined) >= self.due:
                        self.settle(combined)
                else:
                    self.count_slices(combined, words)

    def count_slices(self, combined: dict, items: Iterable[Any]) -> None:
        it = iter(items)
        while chunk := list(itertools.islice(it, CHECK_EVERY)):
            _count_elements(combined, chunk)
            if len(combined) >= self.due:
                self.settle(combined)


@functools.lru_cache(maxsize=256)
def fold_loop(steps: tuple[tuple[str, _Slot], ...], f: _Slot) -> _Loop:
    """The compiled loop ``loop(records, fns, acc, f, empty) -> acc``.

    Folds each record of ``records``, run through ``steps``, into ``acc`` with
    ``acc = f(acc, record)``; while ``acc`` is ``empty`` the record becomes
    ``acc`` (``reduce``); a partition with no record gives ``acc`` back.
    """
    def sink(x: str, pair: Pair | None) -> list[Line]:
        return [("if acc is empty:", None), (f"    acc = {x}", None), ("else:", None),
                *f.prelude("    ", "acc", x), (f"    acc = {f.call('acc', x)}", f.name)]
    return _compile("fold", "records, fns, acc, f, empty", steps, [f], sink, ["    return acc"])


def combine(records: Iterable[Any], ops: Sequence[tuple[str, Callable[..., Any]]], combined: dict,
            create: Callable[[Any], Any] | None, merge: Callable[[Any, Any], Any],
            check: Callable[[Any, Any], None], not_a_pair: Callable[[Any], Exception], *,
            pairs: bool = False, probe: bool = False) -> tuple[int, int] | None:
    """Fold ``records``, passed through the per-record ``ops``, into ``combined`` (see :func:`combine_loop`).

    ``pairs``: ``records`` are (key, value) 2-tuples and there are no ``ops``.
    ``probe``: return (pairs folded, new keys among them).
    """
    if pairs and ops:
        raise ValueError("known pairs are combined with no per-record operations")
    records, ops = _shallow(records, ops)
    steps, fns, (merge_slot, create_slot), (merge_value, create_value), home = _slots(
        ops, inline.enabled(), ("merge", merge, 2), ("create", create, 1))
    if not probe and _counts(steps, merge_slot, create_slot):    # type: ignore[arg-type]
        check = _CountBudget(check, combined)      # type: ignore[assignment]
        texts = texts_of(records) if len(steps) == 2 and _splits_words(steps[0], fns[0]) else None
        if texts is not None:
            check.count_texts(combined, texts)     # type: ignore[attr-defined]
            return None
    loop = combine_loop(steps, merge_slot, create_slot, pairs, probe)(home)     # type: ignore[arg-type]
    return loop(records, fns, combined, create_value, merge_value, check, not_a_pair)


def counts(ops: Sequence[tuple[str, Callable[..., Any]]], create: Callable[[Any], Any] | None,
           merge: Callable[[Any, Any], Any]) -> bool:
    """:func:`combine` of these would count words in C (see :func:`_counts`)."""
    steps, _, (merge_slot,), _, _ = _slots(ops, inline.enabled(), ("merge", merge, 2))
    return create is None and _counts(steps, merge_slot, None)      # type: ignore[arg-type]


def keys_counted(ops: Sequence[tuple[str, Callable[..., Any]]], create: Callable[[Any], Any] | None,
                 merge: Callable[[Any, Any], Any]) -> bool:
    """:func:`scatter` of these sends keys alone (``ops`` make only ``(key, 1)`` pairs, no ``create``), and
    combining them adds (``merge`` is ``a + b``): a key scattered can be counted back instead, in C."""
    steps, _, _, _, _ = _slots(ops, inline.enabled())
    return create is None and _gives_ones(steps) and adds(merge)


def _gives_ones(steps: tuple[tuple[str, _Slot], ...]) -> bool:
    """Every record the steps give is a pair display whose value is the int 1: ``map`` inlined as ``(..., 1)``."""
    return bool(steps) and steps[-1][0] == "map" and steps[-1][1].one


def _one_to_one(steps: tuple[tuple[str, _Slot], ...]) -> bool:
    """Each record gives exactly one through ``steps`` (:data:`_ONE_TO_ONE` ones): a loop over them may take
    the records in blocks, and stop between two."""
    return all(op in _ONE_TO_ONE for op, _ in steps)


@functools.lru_cache(maxsize=256)
def scatter_loop(steps: tuple[tuple[str, _Slot], ...], create: _Slot | None, by: str,
                 pairs: bool = False, keys_only: bool = False, by_value: bool = False) -> _Loop:
    """The compiled loop ``loop(records, fns, appends, create, part, check, not_a_pair, mixed)``.

    Appends the key and value of each (key, value) record of ``records`` (run
    through ``steps``; the value through ``create``, if given) to the flat
    ``[k, v, ...]`` buffer of the key's reducer: ``appends[r]`` is that
    buffer's ``append``; ``r`` is ``part(k)``, or by ``by``: ``"one"`` (one
    reducer) or ``"hash"``: what the hash partitioner gives, computed in the
    loop for an int key (``hash(k) % len(appends)``) and an ASCII str key
    (``crc32(k.encode()) % len(appends)``), by ``part(k)`` for others; or
    ``"mask"``: the same, with ``& (len(appends) - 1)``, for a power of two. After
    every ``CHECK_EVERY`` records it calls ``check(k, v)``, which may empty
    the buffers (in place). With ``pairs`` (no steps), every record is known
    to be a (key, value) 2-tuple. With ``keys_only`` (the steps give only
    ``(key, 1)`` pairs, see :func:`_gives_ones`; no ``create``), only the
    keys are appended: the buffers hold keys, each of a pair whose value is 1;
    ``mixed[r]`` is set when a key that is not exactly an int goes to ``r``.
    When each record gives one pair (:data:`_ONE_TO_ONE` steps), the records are
    taken in blocks of ``CHECK_EVERY`` and ``check`` is called after each block.
    With ``by_value`` (keys alone, by ``"hash"`` or ``"mask"``, in blocks), an int
    key goes to buffer ``k % n`` (``k & mask``), not ``hash(k) % n``: the same
    for every int but -1 and those beyond ``±(2**61 - 2)`` (whose hash is not
    themselves; :func:`scatter`'s caller moves those), at the cost of no call; and
    the loop returns ``(k,)`` at the first key ``k`` that is not exactly an int, or
    that its buffer refuses (an ``array`` of ints too narrow for it: OverflowError),
    not placed, the records after it not taken (None once they end).
    """
    mod = "% n" if by == "hash" else "& mask"       # mask: n is a power of two, and h & (n - 1) == h % n

    def to_reducer(then: str, mark: bool) -> list[Line]:
        """The line ``then``, with ``{a}`` the ``append`` of key ``k``'s reducer's buffer, found by ``by``
        (the reducer in ``r`` for a key that is not an int); with ``mark``, a key that is not exactly an
        int marks its reducer in ``mixed``."""
        if by == "one":
            found = [then.format(a="a0"), *(["if type(k) is not int:", "    mixed[0] = True"] if mark else [])]
        elif by == "part":
            found = ["r = part(k)", then.format(a="appends[r]"),
                     *(["if type(k) is not int:", "    mixed[r] = True"] if mark else [])]
        elif by_value:      # (a try costs nothing until it catches)
            found = ["if type(k) is int:", "    try:", "        " + then.format(a=f"appends[k {mod}]"),
                     "    except OverflowError:", "        return (k,)", "else:", "    return (k,)"]
        else:
            found = ["if type(k) is int:", "    " + then.format(a=f"appends[hash(k) {mod}]"), "else:",
                     "    if type(k) is str and k.isascii():", f"        r = crc32(k.encode()) {mod}",
                     "    else:", "        r = part(k)", "    " + then.format(a="appends[r]"),
                     *(["    mixed[r] = True"] if mark else [])]
        return [(line, None) for line in found]

    blocks = _one_to_one(steps)
    checked = "check(k, 1)" if keys_only else "check(k, v)"
    counted = [] if blocks else [("held += 1", None), (f"if held == {CHECK_EVERY}:", None), ("    held = 0", None),
                                 (f"    {checked}", None)]

    def sink(x: str, pair: Pair | None) -> list[Line]:
        if keys_only:        # the pair display's value, the constant 1, is not evaluated: it has no effect
            return [(f"k = {pair[0]}", pair[2]), *to_reducer("{a}(k)", mark=True), *counted]  # type: ignore[index]
        return [
            *_unpack(x, pair),
            *(create.prelude("", "v") if create else []),
            *([(f"v = {create.call('v')}", create.name)] if create else []),
            *to_reducer("a = {a}", mark=False),
            ("a(k)", None),
            ("a(v)", None),
            *counted,
        ]
    return _compile("scatter", "records, fns, appends, create, part, check, not_a_pair, mixed", steps,
                    [create] if create else [], sink, [],
                    head=[*([] if blocks else ["held = 0"]),
                          {"one": "a0 = appends[0]", "mask": "mask = len(appends) - 1"}.get(by, "n = len(appends)")],
                    pairs=pairs, every=[checked] if blocks else [])


class ByValue(Protocol):
    """Where :func:`scatter` places int keys by value (see :func:`scatter_loop`): an ``array`` of ints for
    each buffer of keys alone (no int object is kept for a key)."""

    def start(self) -> list:
        """The buffers the loop starts placing ints in, by value."""

    def widen(self, k: int) -> list | None:
        """The buffers' ints are too narrow for ``k``: the same buffers, now wide enough for it, or None if
        none can be (it is placed by hash, as a key that is not an int)."""

    def stop(self) -> None:
        """A key not placed by value came: every key from it on is placed by hash."""


def scatter(records: Iterable[Any], ops: Sequence[tuple[str, Callable[..., Any]]], bufs: list[list],
            create: Callable[[Any], Any] | None, partitioner: Any, check: Callable[[Any, Any], None],
            not_a_pair: Callable[[Any], Exception], *, pairs: bool = False,
            ones: list[list] | None = None, mixed: list[bool] | None = None,
            by_value: ByValue | None = None) -> None:
    """Append each (key, value) of ``records``, passed through ``ops``, to the flat buffer ``bufs[r]`` of
    its reducer ``r`` (see :func:`scatter_loop`). ``pairs``: ``records`` are (key, value) 2-tuples and
    there are no ``ops``. ``ones``: buffers for keys alone, used instead of ``bufs`` when the ``ops``
    make only ``(key, 1)`` pairs (and there is no ``create``): half the data to write and read, and
    a reducer that adds counts them in C (:class:`KeyCount`); ``mixed[r]`` is then set when ``ones[r]``
    gets a key that is not exactly an int (the others are written as int32s, or int64s).

    With ``by_value``, keys alone placed by a hash partitioner, one to a record,
    are placed by value (see :func:`scatter_loop`) in ``by_value``'s buffers until
    the first key that is not exactly an int (or too big for any of them), and by
    hash into ``ones`` from it on: an int ``k`` goes to buffer ``k % len(ones)``, a
    misplaced -1 or beyond ``±(2**61 - 2)`` for the caller to move before it writes
    the buffers."""
    if pairs and ops:
        raise ValueError("known pairs are scattered with no per-record operations")
    records, ops = _shallow(records, ops)
    steps, fns, (create_slot,), (create_value,), home = _slots(ops, inline.enabled(), ("create", create, 1))
    keys_only = ones is not None and create is None and _gives_ones(steps)
    if keys_only:
        bufs = ones           # type: ignore[assignment]
    n = len(bufs)
    by = ("one" if n == 1 else "part" if type(partitioner) is not HashPartitioner
          else "mask" if n & (n - 1) == 0 else "hash")
    # by hash, the buffers may be more than the reducers (sub-partitions of keys, see shuffle.key_subs):
    # a key the loop does not place itself goes to the buffer its hash gives among them all, where the
    # equal keys of other types the loop places (5 for 5.0) go too
    part = HashPartitioner(n).get_partition if by in ("mask", "hash") else partitioner.get_partition
    appends = [b.append for b in bufs]
    mixed = mixed if mixed is not None else [False] * n
    if by_value is not None and keys_only and by in ("mask", "hash") and _one_to_one(steps):
        records = iter(records)       # the loop by hash goes on where the loop by value stopped
        loop = scatter_loop(steps, create_slot, by, pairs, keys_only, True)(home)
        ints = by_value.start()
        while (left := loop(records, fns, [b.append for b in ints], create_value, part, check, not_a_pair,
                            mixed)) is not None:
            (k,) = left
            wider = by_value.widen(k) if type(k) is int else None
            if wider is None:
                by_value.stop()
                r = part(k)
                appends[r](k)
                mixed[r] = True
                break
            ints = wider
            ints[k & (n - 1) if by == "mask" else k % n].append(k)
        else:
            return
    scatter_loop(steps, create_slot, by, pairs, keys_only)(home)(records, fns, appends, create_value, part, check,
                                                                  not_a_pair, mixed)


def adds(merge: Callable[[Any, Any], Any]) -> bool:
    """``merge(a, b)`` is ``a + b`` (inlined as that: ``operator.add``, or a function returning it)."""
    slot, _ = _slot("merge", merge, 2, inline.enabled())
    return slot.template == "({0} + {1})" and not slot.statements


def count_keys(combined: dict, keys: Iterable[Any]) -> None:
    """Each key of ``keys``, of a pair ``(key, 1)``, folded into ``combined`` by ``a + b``, in C."""
    _count_elements(combined, keys)


class KeyCount:
    """Folds pairs ``(k, 1)``, given by their keys, into ``combined`` (or the dict given to :meth:`add`) by
    ``a + b``, in C: ``combined[k] + 1`` for a key it holds, else 1. After every ``CHECK_EVERY`` keys it
    added, counted across calls and dicts (a reducer counts many small chunks),
    ``check(k, combined[k])``, which may empty the dicts (a spill)."""

    def __init__(self, combined: dict, check: Callable[[Any, Any], None]) -> None:
        self.combined = combined
        self.check = check
        self.fresh = 0        # keys added since the last check

    def add(self, keys: Sequence[Any], combined: dict | None = None) -> None:
        if combined is None:
            combined = self.combined
        for i in range(0, len(keys), CHECK_EVERY):       # at most CHECK_EVERY new keys between two looks
            before = len(combined)
            _count_elements(combined, keys[i:i + CHECK_EVERY])
            self.fresh += len(combined) - before
            if self.fresh >= CHECK_EVERY:
                self.fresh -= CHECK_EVERY
                k = next(reversed(combined))
                self.check(k, combined[k])


def fold(records: Iterable[Any], ops: Sequence[tuple[str, Callable[..., Any]]], acc: Any,
         f: Callable[[Any, Any], Any], empty: Any) -> Any:
    """``records`` passed through the per-record ``ops`` and folded by ``f`` into ``acc`` (see :func:`fold_loop`)."""
    records, ops = _shallow(records, ops)
    steps, fns, (f_slot,), (f_value,), home = _slots(ops, inline.enabled(), ("f", f, 2))
    return fold_loop(steps, f_slot)(home)(records, fns, acc, f_value, empty)    # type: ignore[arg-type]
