"""Narrow per-record operations fused with the map-side combine into one Python loop.

``textFile(...).flatMap(words).map(pair).reduceByKey(add)`` calls two user
functions per word. Run as C iterators (``map``, ``chain``), each call enters
the interpreter afresh from C; written as one loop, the calls are plain
Python-to-Python calls, which CPython 3.11 makes without a new C frame. On the
word count that is about a quarter of the map task's time.

The loop is generated from a fixed template per *shape* (the sequence of
operation names, and whether the aggregator has ``create``), compiled once per
process and cached. No user code is in the generated source: the user's
functions are arguments of the compiled loop, exactly as they would be of
``map``. Each operation behaves as its iterator form in ``rdd._pipe``.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

#: operations that turn one record into zero, one or more records, with no state
PER_RECORD = frozenset({"map", "flatMap", "filter", "mapValue", "flatMapValue", "keys", "values"})

CHECK_EVERY = 1024   # new keys between two calls of ``check``


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
    raise ValueError(f"{op!r} is not a per-record operation")


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
    lines = ["def loop(records, fns, combined, create, merge, check, not_a_pair):"]
    if ops:
        lines.append(f"    {', '.join(f'f{i}' for i in range(len(ops)))}, = fns")
    lines += ["    fresh = 0", "    for x0 in records:"]
    x, depth = "x0", 2
    for i, op in enumerate(ops):
        more, x, depth = _step(op, i, x, depth)
        lines += more
    pad = "    " * depth
    first = "create(v)" if with_create else "v"
    lines += [
        f"{pad}try:",
        f"{pad}    k, v = {x}",
        f"{pad}except (TypeError, ValueError):",
        f"{pad}    raise not_a_pair({x}) from None",
        f"{pad}if k in combined:",
        f"{pad}    combined[k] = merge(combined[k], v)",
        f"{pad}else:",
        f"{pad}    combined[k] = {first}",
        f"{pad}    fresh += 1",
        f"{pad}    if fresh == {CHECK_EVERY}:",
        f"{pad}        fresh = 0",
        f"{pad}        check(k, combined[k])",
    ]
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines) + "\n", f"<gopark combine loop {'/'.join(ops) or 'pairs'}>", "exec"),
         namespace)
    return namespace["loop"]


def combine(records: Iterable[Any], ops: list[tuple[str, Callable[..., Any]]], combined: dict,
            create: Callable[[Any], Any] | None, merge: Callable[[Any, Any], Any],
            check: Callable[[Any, Any], None], not_a_pair: Callable[[Any], Exception]) -> None:
    """Fold ``records``, passed through the per-record ``ops``, into ``combined`` (see :func:`combine_loop`)."""
    loop = combine_loop(tuple(op for op, _ in ops), create is not None)
    loop(records, [f for _, f in ops], combined, create, merge, check, not_a_pair)
