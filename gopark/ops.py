"""Registered helpers behind the RDD methods (joins, distinct, groupByKey, sorting).

They are ordinary registered functions under ``gopark.*`` names, so the plans
that use them travel by name like the user's own functions.
"""
from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

from gopark import registry, serialize
from gopark.registry import register_func


@register_func(name="gopark.one_list")
def one_list(v: Any) -> list:
    return [v]


@register_func(name="gopark.append")
def append(c: list, v: Any) -> list:
    c.append(v)
    return c


@register_func(name="gopark.extend")
def extend(a: list, b: list) -> list:
    a.extend(b)
    return a


@register_func(name="gopark.keep_first")
def keep_first(a: Any, b: Any) -> Any:
    return a


@register_func(name="gopark.with_none")
def with_none(x: Any) -> tuple:
    return (x, None)


@register_func(name="gopark.swap")
def swap(pair: tuple) -> tuple:
    return (pair[1], pair[0])


@register_func(name="gopark.key_is")
def key_is(key: Any, pair: tuple) -> bool:
    return pair[0] == key


@register_func(name="gopark.spread")
def spread(split: int, it: Any) -> Any:
    """(a key that deals records round-robin, record), starting at the partition's index."""
    return enumerate(it, split)


@register_func(name="gopark.join_pairs")
def join_pairs(groups: tuple) -> Iterator[tuple]:
    """Each (v, w) of a key's values on the left and on the right (itertools.product: no Python loop)."""
    vs, ws = groups
    return itertools.product(vs, ws)


@register_func(name="gopark.left_outer_pairs")
def left_outer_pairs(groups: tuple) -> Iterator[tuple]:
    vs, ws = groups
    return itertools.product(vs, ws or [None])


@register_func(name="gopark.right_outer_pairs")
def right_outer_pairs(groups: tuple) -> Iterator[tuple]:
    vs, ws = groups
    return itertools.product(vs or [None], ws)


@register_func(name="gopark.full_outer_pairs")
def full_outer_pairs(groups: tuple) -> Iterator[tuple]:
    vs, ws = groups
    return itertools.product(vs or [None], ws or [None])


@register_func(name="gopark.left_only_keys")
def left_only_keys(row: tuple) -> list:
    """subtract: a cogrouped (record, ([None...], [None...])) gives the record once for each time it is in
    the left RDD, when the right has none."""
    k, (vs, ws) = row
    return [] if ws else [k] * len(vs)


@register_func(name="gopark.left_only_pairs")
def left_only_pairs(row: tuple) -> list:
    """subtractByKey: the left pairs of a key the right RDD does not have."""
    k, (vs, ws) = row
    return [] if ws else [(k, v) for v in vs]


@register_func(name="gopark.in_both")
def in_both(row: tuple) -> bool:
    """intersection: a cogrouped record found on both sides."""
    _, (vs, ws) = row
    return bool(vs) and bool(ws)


@register_func(name="gopark.fold_into_zero")
def fold_into_zero(zero: bytes, seq: list, v: Any) -> Any:
    """aggregateByKey, foldByKey: a key's first value (in a map task) folded by the function ``seq``
    references into a fresh copy of the zero value (kept packed: no two keys share a mutable zero)."""
    return registry.decode_func(seq)(serialize.unpackb(zero), v)


@register_func(name="gopark.unique_ids")
def unique_ids(n: int, split: int, it: Any) -> Iterator[tuple]:
    """zipWithUniqueId: (record, k * n + split) for the k-th record of partition ``split`` of ``n``."""
    return zip(it, itertools.count(split, n))


@register_func(name="gopark.in_random_split")
def in_random_split(low: float, high: float, seed: int, split: int, it: Any) -> Iterator[Any]:
    """randomSplit: the records whose draw (one per record, the same for every split of one seed) falls in
    ``[low, high)``."""
    draw = random.Random(seed * 1_000_003 + split).random
    return (x for x in it if low <= draw() < high)
