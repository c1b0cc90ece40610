"""Narrow per-record operations fused, into one Python loop, with what consumes their records.

``textFile(...).flatMap(words).map(pair).reduceByKey(add)`` calls two user
functions per word. Run as C iterators (``map``, ``chain``), each call enters
the interpreter afresh from C; written as one loop, the calls are plain
Python-to-Python calls, which CPython 3.11 makes without a new C frame (the
word count in local mode: 16.3 s before, 13.7 s after).

Every run of per-record operations (:data:`PER_RECORD`) is one generated
generator (:func:`iterate`); two consumers take the operations into their own
loop: the map-side combine of a shuffle (``reduceByKey``, ``combineByKey``,
``distinct``: :func:`combine`) and the fold of the ``reduce``, ``fold`` and
``aggregate`` actions (:func:`fold`). A StopIteration raised by the app's
function inside the loop fails the task (:class:`StopIterationInTask`); under
C's ``map`` it would have passed for the end of the partition.

A loop is generated from fixed templates per *shape* (the consumer and the
sequence of operation names), compiled once per process and cached. No user
code is in the generated source: the app's functions are arguments of the
compiled loop, as they would be of ``map``. This module is where these
operations mean what they mean; ``rdd._pipe`` runs the others (mapPartitions,
glom, sample, ...).
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

#: operations that turn one record into zero, one or more records, with no state
PER_RECORD = frozenset({"map", "flatMap", "filter", "mapValue", "flatMapValue", "keys", "values", "keyBy"})

CHECK_EVERY = 1024   # new keys between two calls of ``check``

_NESTING = frozenset({"flatMap", "flatMapValue"})   # each opens one more ``for`` in the loop
_MAX_NESTED = 8      # of them in one generated loop (Python allows 20 nested blocks in a function)


def _shallow(records: Iterable[Any], ops: Sequence[tuple[str, Callable[..., Any]]]) -> tuple[Iterable[Any], Sequence]:
    """``records`` through all but the last ``_MAX_NESTED`` nesting operations, and the operations left."""
    nesting = [i for i, (op, _) in enumerate(ops) if op in _NESTING]
    if len(nesting) <= _MAX_NESTED:
        return records, ops
    cut = nesting[-_MAX_NESTED]
    return iterate(records, ops[:cut]), ops[cut:]


def _step(op: str, i: int, x: str, depth: int) -> tuple[list[str], str, int]:
    """Source lines applying operation ``op`` (function ``f{i}``) to record ``x``; the next record's name."""
    pad = "    " * depth
    y = f"x{i + 1}"
    if op == "map":
        return [f"{pad}{y} = f{i}({x})"], y, depth
    if op == "flatMap":
        return [f"{pad}for {y} in f{i}({x}):"], y, depth + 1
    if op == "filter":
        return [f"{pad}if not f{i}({x}):", f"{pad}    continue"], x, depth
    if op == "mapValue":
        return [f"{pad}k{i}, v{i} = {x}", f"{pad}{y} = (k{i}, f{i}(v{i}))"], y, depth
    if op == "flatMapValue":
        return [f"{pad}k{i}, v{i} = {x}", f"{pad}for w{i} in f{i}(v{i}):", f"{pad}    {y} = (k{i}, w{i})"], y, depth + 1
    if op == "keys":
        return [f"{pad}{y} = {x}[0]"], y, depth
    if op == "values":
        return [f"{pad}{y} = {x}[1]"], y, depth
    if op == "keyBy":
        return [f"{pad}{y} = (f{i}({x}), {x})"], y, depth
    if op == "keyBySelf":       # keyBy with no function (sort without a key): (x, x)
        return [f"{pad}{y} = ({x}, {x})"], y, depth
    raise ValueError(f"{op!r} is not a per-record operation")


class StopIterationInTask(RuntimeError):
    """A function of the app raised StopIteration while records flowed through it.

    Run from an iterator, that would silently end the partition early (losing
    records, as SPARK-23754 found in PySpark); the task fails instead.
    """


_STOPPED = ("a function raised StopIteration, which would have silently ended this partition early; "
            "the task fails instead (raise another exception to stop on purpose)")


def _compile(name: str, head: list[str], ops: tuple[str, ...], sink: list[str], tail: list[str]) -> Callable:
    """``head``, the loop over ``records`` through ``ops`` with ``sink`` (on the record ``x``) inside, ``tail``.

    A StopIteration raised in the loop's body (by a function of the app: the
    loop's own end is not raised) becomes :class:`StopIterationInTask`.
    """
    lines = list(head)
    if ops:
        lines.append(f"    {', '.join(f'f{i}' for i in range(len(ops)))}, = fns")
    lines += ["    try:", "        for x0 in records:"]
    x, depth = "x0", 3
    for i, op in enumerate(ops):
        more, x, depth = _step(op, i, x, depth)
        lines += more
    lines += [("    " * depth) + line.replace("{x}", x) for line in sink]
    lines += ["    except StopIteration as exc:", "        raise StopIterationInTask(STOPPED) from exc"]
    lines += tail
    namespace: dict[str, Any] = {"StopIterationInTask": StopIterationInTask, "STOPPED": _STOPPED}
    exec(compile("\n".join(lines) + "\n", f"<gopark {name} loop {'/'.join(ops) or '-'}>", "exec"), namespace)
    return namespace["loop"]


@functools.lru_cache(maxsize=256)
def iterate_loop(ops: tuple[str, ...]) -> Callable[..., Iterator[Any]]:
    """The compiled generator ``loop(records, fns)``: the records of ``records`` run through ``ops``."""
    return _compile("iterate", ["def loop(records, fns):"], ops, ["yield {x}"], [])


def iterate(records: Iterable[Any], ops: list[tuple[str, Callable[..., Any]]]) -> Iterator[Any]:
    """``records`` run through the per-record ``ops``, as one generator (see :func:`iterate_loop`)."""
    if not ops:
        return iter(records)
    records, ops = _shallow(records, ops)
    return iterate_loop(tuple(op for op, _ in ops))(records, [f for _, f in ops])


@functools.lru_cache(maxsize=256)
def combine_loop(ops: tuple[str, ...], with_create: bool) -> Callable[..., None]:
    """The compiled loop ``loop(records, fns, combined, create, merge, check, not_a_pair)``.

    For each record of ``records``, run through ``ops`` (``fns[i]`` is the
    function of ``ops[i]``), it folds the resulting ``(k, v)`` into the dict
    ``combined``: ``merge(combined[k], v)`` for a key it holds, else ``v`` (or
    ``create(v)``). After every ``CHECK_EVERY`` new keys it calls
    ``check(k, combined[k])``, which may empty ``combined`` (a spill). A
    result that is not a pair raises ``not_a_pair(result)``.
    """
    first = "create(v)" if with_create else "v"
    sink = [
        "try:",
        "    k, v = {x}",
        "except (TypeError, ValueError):",
        "    raise not_a_pair({x}) from None",
        "if k in combined:",
        "    combined[k] = merge(combined[k], v)",
        "else:",
        f"    combined[k] = {first}",
        "    fresh += 1",
        f"    if fresh == {CHECK_EVERY}:",
        "        fresh = 0",
        "        check(k, combined[k])",
    ]
    head = ["def loop(records, fns, combined, create, merge, check, not_a_pair):", "    fresh = 0"]
    return _compile("combine", head, ops, sink, [])


@functools.lru_cache(maxsize=256)
def fold_loop(ops: tuple[str, ...]) -> Callable[..., Any]:
    """The compiled loop ``loop(records, fns, acc, f, empty) -> acc``.

    Folds each record of ``records``, run through ``ops``, into ``acc`` with
    ``acc = f(acc, record)``; while ``acc`` is ``empty`` the record becomes
    ``acc`` (``reduce``); a partition with no record gives ``acc`` back.
    """
    sink = ["if acc is empty:", "    acc = {x}", "else:", "    acc = f(acc, {x})"]
    return _compile("fold", ["def loop(records, fns, acc, f, empty):"], ops, sink, ["    return acc"])


def combine(records: Iterable[Any], ops: list[tuple[str, Callable[..., Any]]], combined: dict,
            create: Callable[[Any], Any] | None, merge: Callable[[Any, Any], Any],
            check: Callable[[Any, Any], None], not_a_pair: Callable[[Any], Exception]) -> None:
    """Fold ``records``, passed through the per-record ``ops``, into ``combined`` (see :func:`combine_loop`)."""
    records, ops = _shallow(records, ops)
    loop = combine_loop(tuple(op for op, _ in ops), create is not None)
    loop(records, [f for _, f in ops], combined, create, merge, check, not_a_pair)


def fold(records: Iterable[Any], ops: Sequence[tuple[str, Callable[..., Any]]], acc: Any,
         f: Callable[[Any, Any], Any], empty: Any) -> Any:
    """``records`` passed through the per-record ``ops`` and folded by ``f`` into ``acc`` (see :func:`fold_loop`)."""
    records, ops = _shallow(records, ops)
    return fold_loop(tuple(op for op, _ in ops))(records, [g for _, g in ops], acc, f, empty)
