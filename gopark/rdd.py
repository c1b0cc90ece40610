"""RDDs: lazy lineage nodes that are plain data.

Each kind is a small class with the same four parts:

- ``_deps()``: its parents, narrow (an RDD) or across a shuffle (a
  :class:`ShuffleDependency`); the DAG scheduler cuts stages at the latter;
- ``_parent_splits(split)``: which parent partitions a narrow partition reads;
- ``_params(needed, outputs)``: its parameters as data, for one task (only the
  ``needed`` partitions of a parallelized collection travel; a shuffle read
  carries the map output locations in ``outputs``);
- ``compute(split, task)``: on a worker, the iterator of one partition.

:func:`lineage_to_wire` packs the narrow part of a lineage for one task and
:func:`lineage_from_wire` rebuilds it on a worker, from registered functions
only. The public methods below are thin: each returns a node, or runs a job
through ``Context.runJob`` with an action of :mod:`gopark.actions`.
"""
from __future__ import annotations

import bisect
import functools
import heapq
import itertools
import math
import operator
import os
import random
import sys
import traceback
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from gopark import actions, ops, pipeline, registry, serialize, shared, shuffle
from gopark.errors import OutputExists, job_error
from gopark.partitioner import FuncPartitioner, HashPartitioner, RangePartitioner, portable_hash, range_bounds
from gopark.partitioner import partition_count as _num
from gopark.pipeline import PER_RECORD
from gopark.stats import StatCounter


def _in_gopark(frame: Any) -> bool:
    """A frame of gopark's own code (by module name: file names are relative in a frozen app)."""
    name = frame.f_globals.get("__name__", "")
    return name == "gopark" or name.startswith("gopark.")


def call_site() -> str:
    """``method at file.py:line``: the gopark method the user's code called (the outermost one), and where;
    just ``method`` when no frame of the user's code is under it."""
    f = sys._getframe(1)
    method = f.f_code.co_name
    while f is not None and _in_gopark(f):
        method = f.f_code.co_name if not f.f_code.co_name.startswith("_") else method
        f = f.f_back
    if f is None:
        return method
    return f"{method} at {os.path.basename(f.f_code.co_filename)}:{f.f_lineno}"


def _seed(seed: Any, what: str) -> int:
    """A random seed given to ``what``: an int, or a random one drawn now for None (the RDD then draws the
    same numbers each time it is computed)."""
    if seed is None:
        return random.randrange(1 << 63)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"{what}: seed must be an integer or None, not {seed!r}")
    return seed


def _count(n: Any, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"{what} needs a non-negative integer, not {n!r}")
    return n


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{what} is True or False, not {value!r:.100}")
    return value


def _numPartitions_too(method: Callable[..., RDD]) -> Callable[..., RDD]:  # noqa: N802
    """A method of ``numSplits`` (SPEC's, DPark's name) that takes Spark's ``numPartitions=`` for it too,
    so that an app written for PySpark runs as it is."""
    @functools.wraps(method)
    def _taking(self: RDD, *args: Any, numPartitions: int | None = None, **kwargs: Any) -> RDD:  # noqa: N803
        if numPartitions is not None:
            if "numSplits" in kwargs:
                raise TypeError(f"{method.__name__}: numSplits and numPartitions are one argument: give one")
            kwargs["numSplits"] = numPartitions
        return method(self, *args, **kwargs)
    return _taking  # named _...: a call site names the method it wraps (see call_site)


def _numSplits_too(method: Callable[..., RDD]) -> Callable[..., RDD]:  # noqa: N802
    """A PySpark method of ``numPartitions`` that takes SPEC's ``numSplits=`` for it too (every shuffle does)."""
    @functools.wraps(method)
    def _taking(self: RDD, *args: Any, numSplits: int | None = None, **kwargs: Any) -> RDD:  # noqa: N803
        if numSplits is not None:
            if args or "numPartitions" in kwargs:
                raise TypeError(f"{method.__name__}: numSplits and numPartitions are one argument: give one")
            kwargs["numPartitions"] = numSplits
        return method(self, *args, **kwargs)
    return _taking


class Aggregator:
    """How a shuffle folds values per key: three function references (``create`` None = identity).
    ``probe`` False: the map tasks combine all along (see ``shuffle._combine``), never stopping when
    keys hardly repeat."""

    def __init__(self, create: list | None, merge_value: list, merge_combiners: list, probe: bool = True) -> None:
        self.create, self.merge_value, self.merge_combiners = create, merge_value, merge_combiners
        self.probe = probe
        self.holds: list = []       # broadcast handles packed into ``create`` (see shared.handles_packed)

    def to_wire(self) -> list:
        return [self.create, self.merge_value, self.merge_combiners]


class ShuffleDependency:
    """A wide dependency: ``rdd``'s records are redistributed by ``partitioner``."""

    def __init__(self, rdd: RDD, partitioner: HashPartitioner | RangePartitioner | FuncPartitioner,
                 aggregator: Aggregator | None, map_side_combine: bool, key_ref: list | None = None,
                 site: str = "") -> None:
        self.rdd = rdd
        self.site = site           # where the shuffling RDD was made: "reduceByKey at app.py:12"
        self.key_ref = key_ref     # partition by key_ref(key) (sortByKey's keyfunc)
        self.partitioner = partitioner
        self.aggregator = aggregator
        self.map_side_combine = map_side_combine and aggregator is not None
        self.shuffle_id = rdd.ctx._new_shuffle_id()

    def to_wire(self) -> dict:
        agg = self.aggregator
        if agg is not None:
            shared.check_held(agg.holds)
        return {"sid": self.shuffle_id, "part": self.partitioner.to_wire(),
                "create": agg.create if (agg and self.map_side_combine) else None,
                "merge": agg.merge_value if (agg and self.map_side_combine) else None, "key": self.key_ref,
                **({} if agg is None or agg.probe else {"probe": False})}


class RDDId(int):
    """An RDD's id: an int, as DPark's ``rdd.id``, that can be called, as PySpark's ``rdd.id()``."""

    __slots__ = ()

    def __call__(self) -> int:
        return int(self)


serialize.register_as_base(RDDId, int)     # as data (``partial(f, rdd.id)``), an id is an int


class RDD:
    """A resilient distributed dataset: a lazy, partitioned collection of records.

    >>> from gopark import Context
    >>> with Context("local") as ctx:
    ...     ctx.parallelize([1, 2, 3, 4], 2).map(abs).count()
    4
    """

    kind = "rdd"
    _checkpoint_to: str | None = None       # checkpoint(): the folder its parts go under, after the next job
    #: local files and folders this RDD itself reads (textFile's, wholeTextFiles', checkpoint files): a
    #: saveAsTextFile(overwrite=True) of a lineage holding it must not remove them
    input_paths: tuple[str, ...] = ()

    def __init__(self, ctx: Any, num_partitions: int) -> None:
        self.ctx = ctx
        self.id = RDDId(ctx._new_rdd_id() if ctx is not None else -1)
        self.num_partitions = num_partitions
        self.partitioner: HashPartitioner | RangePartitioner | FuncPartitioner | None = None
        self.is_cached = False
        self.site = call_site() if ctx is not None else ""

    # -- structure (overridden by the kinds) --------------------------------------
    def _deps(self) -> list[RDD | ShuffleDependency]:
        return []

    def _parent_splits(self, split: int) -> list[tuple[RDD, int]]:
        return []

    def _params(self, needed: set[int], outputs: dict[int, list]) -> dict:
        return {}

    def _wire_parents(self, needed: set[int]) -> list[RDD]:
        """The parents that travel with a task that computes the splits ``needed`` (with their own lineage
        when it reads them; see :func:`lineage_to_wire`): every narrow one."""
        return narrow_parents(self)

    def compute(self, split: int, task: Any) -> Iterator[Any]:
        """The records of partition ``split`` (each RDD kind's own; ``task`` is the running TaskContext)."""
        raise NotImplementedError(self.kind)

    def iterator(self, split: int, task: Any) -> Iterator[Any]:
        """Partition ``split``, from the cache if this RDD is cached."""
        if self.is_cached:
            return task.cached(self, split)
        return self.compute(split, task)

    def per_record_tail(self, split: int, task: Any) -> tuple[Iterator[Any], list[tuple[str, Any]]]:
        """Partition ``split`` as an iterator, and the per-record operations (``[(op, function), ...]``,
        see :mod:`gopark.pipeline`) still to apply to it, for a caller that runs them in one loop
        with what consumes the records. Here none: only a chain of narrow operations has some."""
        return self.iterator(split, task), []

    def _split_hosts(self, split: int) -> list[str]:
        return []

    def preferredLocations(self, split: int) -> list[str]:
        """The hosts where partition ``split`` would best be computed (e.g. MooseFS chunkservers)."""
        stack: list[tuple[RDD, int]] = [(self, split)]
        while stack:                 # depth first, first parent first; no recursion
            rdd, s = stack.pop()
            hosts = rdd._split_hosts(s)
            if hosts:
                return hosts
            stack.extend(reversed(rdd._parent_splits(s)))
        return []

    def __len__(self) -> int:
        return self.num_partitions

    def __iter__(self) -> Iterator[Any]:
        """The records, in order, from one job (DPark's ``for x in rdd``; :meth:`toLocalIterator` holds
        one partition at a time)."""
        return itertools.chain.from_iterable(self.ctx.runJob(self, ["collect"]))

    @property
    def context(self) -> Any:
        """The Context this RDD belongs to (Spark's ``rdd.context``)."""
        return self.ctx

    def name(self) -> str | None:
        """The name :meth:`setName` gave this RDD, if any."""
        return getattr(self, "_name", None)

    def setName(self, name: str) -> RDD:
        """Name this RDD (shown by :meth:`toDebugString`); returns it."""
        self._name = str(name)
        return self

    def toDebugString(self) -> str:
        """The lineage, one RDD a line: ``(partitions) Kind[id] where it was made``; a parent read across a
        shuffle starts a deeper ``+-`` level (a stage of its own), a narrow one stays at its child's (``|``).

        >>> print(ctx.parallelize(range(4), 2).map(abs).reduceByKey(operator.add).toDebugString())
        (2) ShuffledRDD[...] ...
         +-(2) PipedRDD[...] ...
            |  ParallelCollection[...] ...
        """
        lines: list[str] = []
        stack: list[tuple[RDD, int, bool]] = [(self, 0, True)]      # (rdd, stage depth, first of its stage)
        seen: set[int] = set()
        while stack:
            rdd, depth, first = stack.pop()
            label = f"{type(rdd).__name__}[{rdd.id}] {rdd.site}" + (f" ({rdd.name()})" if rdd.name() else "") \
                + (" [cached]" if rdd.is_cached else "") + (" (shown above)" if rdd.id in seen else "")
            lines.append(("   " * (depth - 1) + " +-" if depth else "") + f"({rdd.num_partitions}) {label}" if first
                         else "   " * depth + " |  " + label)
            if rdd.id in seen:
                continue
            seen.add(rdd.id)
            for dep in reversed(rdd._deps()):
                if isinstance(dep, ShuffleDependency):
                    stack.append((dep.rdd, depth + 1, True))
                else:
                    stack.append((dep, depth, False))
        return "\n".join(lines)

    def getNumPartitions(self) -> int:
        """The number of partitions.

        >>> ctx.parallelize(range(10), 3).getNumPartitions()
        3
        """
        return self.num_partitions

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} ({self.num_partitions} partitions) {self.site}>"

    def _f(self, fn: Any, what: str) -> list:
        ref = registry.encode_func(fn, f"RDD.{what}")
        if self.ctx is not None and self.ctx.master.kind != "local":     # workers will import its module
            registry.check_importable(ref, f"RDD.{what}")
        return ref

    def _shuffle_parts(self, numSplits: int | None, *others: RDD) -> int:
        """A shuffle's partitions: ``numSplits``, else the Context's ``parallel`` option when it was given
        (Spark's ``spark.default.parallelism``: a loop growing an RDD by unions does not grow its shuffles
        with it), else the most of its parents'."""
        return _num(numSplits, "numSplits") or (self.ctx.options.parallel if self.ctx is not None else None) or \
            max(self.num_partitions, *(o.num_partitions for o in others), 1)

    def _key_partitioner(self, numSplits: int | None, partitionFunc: Callable[[Any], int] | None,  # noqa: N803
                         what: str, parts_name: str = "numSplits") -> HashPartitioner | FuncPartitioner:
        """A by-key shuffle's partitioner: by gopark's portable hash, or with PySpark's ``partitionFunc`` (a
        registered function of the key giving an int), ``partitionFunc(key) % numSplits``."""
        n = _num(numSplits, parts_name) or self._shuffle_parts(None)
        if partitionFunc is None or partitionFunc is portable_hash:
            return HashPartitioner(n)
        ref = self._f(partitionFunc, what)
        inner = ref
        while inner[0] == "p":          # partial(hash)
            inner = inner[1]
        # hash, a type's __hash__ (str.__hash__...) or methodcaller("__hash__"): PySpark asks for PYTHONHASHSEED
        if inner in (["b", "hash"], ["b", "id"]) or inner[0] in ("m", "mc") and "__hash__" in inner[1:3]:
            raise TypeError(f"{what}: the builtin hash of a str or bytes (and an object's id) differs from process "
                            "to process, so equal keys could land in different partitions; leave partitionFunc out "
                            "to partition by gopark's portable hash")
        return FuncPartitioner(n, ref, registry.decode_func(ref))

    def _cogroup_partitioner(self, numSplits: int | None, others: list[RDD]) \
            -> HashPartitioner | RangePartitioner | FuncPartitioner:
        """A join's or cogroup's partitioner, as Spark's defaultPartitioner chooses it: with no ``numSplits``,
        the partitioner of the input that has the most partitions among those that have one, if it has as
        many as any input: that input (and any partitioned alike) is then not shuffled again. Not a range
        partitioner (sortByKey's), as PySpark's joins never take one: it compares each key of the other inputs
        with its bounds, and a key of another type there (None, a str among ints) would fail the join."""
        n = self._shuffle_parts(numSplits, *others)
        if numSplits is None:
            partitioned = [r.partitioner for r in (self, *others)
                           if r.partitioner is not None and not isinstance(r.partitioner, RangePartitioner)]
            best = max(partitioned, key=lambda p: p.num_partitions, default=None)
            if best is not None and best.num_partitions >= n:
                return best
        return HashPartitioner(n)

    # -- narrow transformations ----------------------------------------------------
    def map(self, f: Callable[[Any], Any], preservesPartitioning: bool = False) -> RDD:  # noqa: N803
        """Apply ``f`` to each record. ``preservesPartitioning`` (Spark's): ``f`` keeps each pair's key, so
        the result keeps this RDD's partitioner (a join with an RDD partitioned alike then shuffles neither).

        >>> ctx.parallelize([1, 2, 3]).map(str).collect()
        ['1', '2', '3']
        """
        return PipedRDD(self, "map", self._f(f, "map"),
                        keeps_partitioner=_flag(preservesPartitioning, "map: preservesPartitioning"))

    def flatMap(self, f: Callable[[Any], Iterable[Any]], preservesPartitioning: bool = False) -> RDD:  # noqa: N803
        """Apply ``f`` to each record and flatten the iterables it returns (``preservesPartitioning``: see
        :meth:`map`).

        >>> ctx.parallelize(['a b', 'c']).flatMap(str.split).collect()
        ['a', 'b', 'c']
        """
        return PipedRDD(self, "flatMap", self._f(f, "flatMap"),
                        keeps_partitioner=_flag(preservesPartitioning, "flatMap: preservesPartitioning"))

    def filter(self, f: Callable[[Any], bool]) -> RDD:
        """Keep the records for which ``f`` is true.

        >>> ctx.parallelize([0, 1, 2, 0]).filter(bool).collect()
        [1, 2]
        """
        return PipedRDD(self, "filter", self._f(f, "filter"), keeps_partitioner=True)

    def mapPartitions(self, f: Callable[[Iterator[Any]], Iterable[Any]],
                      preservesPartitioning: bool = False) -> RDD:  # noqa: N803
        """Apply ``f`` to each partition's iterator (``preservesPartitioning``: see :meth:`map`).

        >>> ctx.parallelize([3, 1, 2, 0], 2).mapPartitions(sorted).glom().collect()
        [[1, 3], [0, 2]]
        """
        return PipedRDD(self, "mapPartitions", self._f(f, "mapPartitions"),
                        keeps_partitioner=_flag(preservesPartitioning, "mapPartitions: preservesPartitioning"))

    def mapPartitionsWithIndex(self, f: Callable[[int, Iterator[Any]], Iterable[Any]],
                               preservesPartitioning: bool = False) -> RDD:  # noqa: N803
        """Apply ``f(split_index, iterator)`` to each partition (``preservesPartitioning``: see :meth:`map`)."""
        return PipedRDD(self, "mapPartitionsWithIndex", self._f(f, "mapPartitionsWithIndex"),
                        keeps_partitioner=_flag(preservesPartitioning, "mapPartitionsWithIndex: preservesPartitioning"))

    def mapValue(self, f: Callable[[Any], Any]) -> RDD:
        """Apply ``f`` to the value of each (key, value) pair.

        >>> ctx.parallelize([('a', 'xy'), ('b', 'z')]).mapValue(len).collect()
        [('a', 2), ('b', 1)]
        """
        return PipedRDD(self, "mapValue", self._f(f, "mapValue"), keeps_partitioner=True)

    mapValues = mapValue

    def flatMapValue(self, f: Callable[[Any], Iterable[Any]]) -> RDD:
        """(key, x) for each x in ``f(value)`` of each (key, value) pair.

        >>> ctx.parallelize([('a', 'x y')]).flatMapValue(str.split).collect()
        [('a', 'x'), ('a', 'y')]
        """
        return PipedRDD(self, "flatMapValue", self._f(f, "flatMapValue"), keeps_partitioner=True)

    flatMapValues = flatMapValue

    def keys(self) -> RDD:
        """The keys of (key, value) pairs.

        >>> ctx.parallelize([('a', 1), ('b', 2)]).keys().collect()
        ['a', 'b']
        """
        return PipedRDD(self, "keys", None)

    def values(self) -> RDD:
        """The values of (key, value) pairs.

        >>> ctx.parallelize([('a', 1), ('b', 2)]).values().collect()
        [1, 2]
        """
        return PipedRDD(self, "values", None)

    def pipe(self, command: str | list[str], env: dict[str, str] | None = None, checkCode: bool = False,  # noqa: N803
             quiet: bool = False) -> RDD:
        """Each partition's records through an external command, one a line (a str as UTF-8, bytes as they
        are, anything else as ``str(record)``); the records are the lines it prints, as str.

        ``command``: a str (split as a shell would, with no shell run) or a list of arguments. ``env``: variables
        added to the worker's environment for it. ``checkCode``: a non-zero exit code fails the task (else it
        is ignored, as in Spark). ``quiet``: its stderr is dropped (DPark's option), else it is the worker's.

        >>> ctx.parallelize(['b', 'a'], 1).pipe('sort').collect()
        ['a', 'b']
        """
        import shlex
        if isinstance(command, str):
            argv = shlex.split(command)
        elif isinstance(command, (list, tuple)) and all(isinstance(a, str) for a in command):
            argv = list(command)
        else:
            raise TypeError(f"pipe: command is a str or a list of str, not {command!r:.100}")
        if not argv:
            raise ValueError("pipe: command is empty")
        if env is not None and not (isinstance(env, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
            raise TypeError(f"pipe: env is a dict of str to str, not {env!r:.100}")
        return self.mapPartitions(functools.partial(ops.pipe_lines, argv, env, _flag(checkCode, "pipe: checkCode"),
                                                    _flag(quiet, "pipe: quiet")))

    def glom(self) -> RDD:
        """Each partition as one list.

        >>> ctx.parallelize(range(5), 2).glom().collect()
        [[0, 1], [2, 3, 4]]
        """
        return PipedRDD(self, "glom", None)

    def sample(self, fraction: float, withReplacement: bool = False, seed: int | None = 12345) -> RDD:
        """A random sample: each record kept with probability ``fraction`` (or drawn Poisson times).

        ``seed=None``: a random one, drawn now (the RDD is the same sample each time it is computed).

        >>> s = ctx.parallelize(range(1000), 4).sample(0.1, seed=7)
        >>> s.collect() == s.collect() and 50 < s.count() < 150
        True
        """
        if ((isinstance(fraction, bool) or (type(fraction) is int and fraction in (0, 1)))
                and isinstance(withReplacement, (int, float)) and not isinstance(withReplacement, bool)):
            # PySpark's order: sample(False, 0.5), sample(True, 2), sample(0, 0.5) (a fraction of 0 or 1
            # with a number for withReplacement is not DPark's order)
            fraction, withReplacement = withReplacement, fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < math.inf or (
                fraction > 1 and not withReplacement):
            raise ValueError(f"sample: fraction must be in [0, 1] (any finite one >= 0 with replacement), "
                             f"not {fraction!r}")
        return PipedRDD(self, "sample", None, [float(fraction), bool(withReplacement), _seed(seed, "sample")])

    def sampleByKey(self, withReplacement: bool, fractions: dict, seed: int | None = None) -> RDD:
        """(key, value) pairs sampled by key: each kept with its key's probability ``fractions[key]`` (with
        replacement: taken a Poisson number of times of that mean), as Spark's. A key missing from
        ``fractions`` fails the job.

        >>> pairs = ctx.parallelize([('a', i) for i in range(100)] + [('b', i) for i in range(100)], 4)
        >>> sorted({k for k, _ in pairs.sampleByKey(False, {'a': 0.5, 'b': 0.0}, seed=3).collect()})
        ['a']
        """
        if not isinstance(fractions, dict) or not all(
                not isinstance(f, bool) and isinstance(f, (int, float)) and 0 <= f < math.inf
                and (withReplacement or f <= 1) for f in fractions.values()):
            raise ValueError("sampleByKey: fractions must be a dict of each key's probability, in [0, 1] (any "
                             f"finite number >= 0 with replacement), not {fractions!r}")
        return self.mapPartitionsWithIndex(functools.partial(
            ops.sample_by_key, {k: float(f) for k, f in fractions.items()}, bool(withReplacement),
            _seed(seed, "sampleByKey")))

    def enumerate(self) -> RDD:
        """(index, record) with indexes 0, 1, ... in partition order (runs a job to count partitions).

        >>> ctx.parallelize(['a', 'b', 'c'], 2).enumerate().collect()
        [(0, 'a'), (1, 'b'), (2, 'c')]
        """
        counts = self.ctx.runJob(self, ["count"])
        starts = list(itertools.accumulate([0, *counts[:-1]]))
        return PipedRDD(self, "enumerate", None, starts)

    def zipWithIndex(self) -> RDD:
        """(record, index): Spark's order of :meth:`enumerate`.

        >>> ctx.parallelize(['a', 'b', 'c'], 2).zipWithIndex().collect()
        [('a', 0), ('b', 1), ('c', 2)]
        """
        return self.enumerate().map(ops.swap)

    def zipWithUniqueId(self) -> RDD:
        """(record, a unique id): ids ``k * n + i`` for the k-th record of partition ``i`` of ``n`` (no job
        runs, unlike :meth:`zipWithIndex`; the ids are not consecutive).

        >>> ctx.parallelize(['a', 'b', 'c'], 2).zipWithUniqueId().collect()
        [('a', 0), ('b', 1), ('c', 3)]
        """
        return self.mapPartitionsWithIndex(functools.partial(ops.unique_ids, self.num_partitions))

    def randomSplit(self, weights: list[float], seed: int | None = None) -> list[RDD]:
        """This RDD's records split at random into RDDs of about these relative ``weights``: each record
        in exactly one of them. Each split computes this RDD again and draws one number a record, by
        its place in its partition, as Spark's does: an RDD whose partitions may come in another order
        when computed again (an aggregation that spilled under ``--mem``) should be cached first.

        >>> [len(part.collect()) for part in ctx.parallelize(range(1000), 4).randomSplit([1, 3], seed=5)]
        [258, 742]
        """
        if not weights or any(isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < math.inf
                              for w in weights) or not 0 < sum(weights) < math.inf:
            raise ValueError(f"randomSplit: weights must be finite non-negative numbers, not all 0: {weights!r}")
        seed = _seed(seed, "randomSplit")
        total = sum(weights)
        bounds = [0.0, *itertools.accumulate(w / total for w in weights)]
        bounds[-1] = 1.0
        return [self.mapPartitionsWithIndex(functools.partial(ops.in_random_split, low, high, seed))
                for low, high in zip(bounds, bounds[1:])]

    @_numPartitions_too
    def repartition(self, numSplits: int) -> RDD:
        """The same records in ``numSplits`` partitions of about equal size (a shuffle).

        >>> ctx.parallelize(range(8), 1).repartition(4).glom().map(len).collect()
        [2, 2, 2, 2]
        """
        n = _num(numSplits, "repartition: numSplits")
        spread = self.mapPartitionsWithIndex(ops.spread)
        return ShuffledRDD(spread, HashPartitioner(n), None, False).values()

    @_numPartitions_too
    def coalesce(self, numSplits: int, shuffle: bool = False) -> RDD:
        """Fewer partitions, each the union of neighbouring ones, without a shuffle (unless ``shuffle``).

        >>> ctx.parallelize(range(6), 3).coalesce(2).glom().collect()
        [[0, 1], [2, 3, 4, 5]]
        """
        n = _num(numSplits, "coalesce: numSplits")
        if shuffle:
            return self.repartition(n)
        return CoalescedRDD(self, min(n, self.num_partitions)) if n < self.num_partitions else self

    def cache(self) -> RDD:
        """Keep the partitions once computed; later jobs read them instead of recomputing.

        >>> ctx.parallelize([1, 2]).map(str).cache().collect()
        ['1', '2']
        """
        self.is_cached = True
        self._marked()
        return self

    def persist(self, *_level: Any) -> RDD:
        """Same as :meth:`cache`.

        >>> ctx.parallelize([1, 2]).persist().map(str).collect()
        ['1', '2']
        """
        return self.cache()

    def unpersist(self, blocking: bool = False) -> RDD:
        """Stop caching: the cached partitions are dropped before the next job (``blocking``: PySpark's, has
        no effect; nothing is dropped while a job runs)."""
        _flag(blocking, "unpersist: blocking")
        self.is_cached = False
        self._marked()
        return self

    def _marked(self) -> None:
        """This RDD was cached, unpersisted or marked for checkpoint (see ``Context._cache_marks``)."""
        if self.ctx is not None:
            self.ctx._cache_marks += 1

    def checkpoint(self, path: str | None = None) -> RDD:
        """Save the records to files after the next job that computes this RDD (a job of its own writes
        them), then read them from there: its lineage is not computed again, nor kept (Spark's and
        DPark's). ``path``: the folder to save under (DPark's); by default the Context's
        (:meth:`Context.setCheckpointDir`). Every worker must see that folder (in Mesos mode: a shared
        file system, such as a mounted MooseFS). Cache the RDD too, or its lineage runs twice for that
        first job. Returns this RDD.
        """
        if self.isCheckpointed() or self._checkpoint_to is not None:
            return self
        from gopark.io import checkpoint, text
        folder = path if path is not None else self.ctx.getCheckpointDir()
        if folder is None:
            raise ValueError("checkpoint: no folder: call ctx.setCheckpointDir(path) first, or pass one")
        folder = text.output_folder(folder, "checkpoint")
        self._checkpoint_to = checkpoint.new_folder(folder, int(self.id))     # made now: an error is said here
        self.ctx._checkpoints_due.add(int(self.id))
        # let go before a job saved it: no longer due, and its folder goes (empty, or what a failed save left)
        self._unsaved = weakref.finalize(self, checkpoint.never_saved, self.ctx._checkpoints_due, int(self.id),
                                         self._checkpoint_to)
        self._marked()
        return self

    def isCheckpointed(self) -> bool:
        """True once the records are saved and read from there (after the job that followed checkpoint())."""
        return isinstance(self, CheckpointRDD)

    def getCheckpointFile(self) -> str | None:
        """The folder of the saved records, once checkpointed; else None."""
        return self.folder if isinstance(self, CheckpointRDD) else None

    def union(self, *others: RDD | list[RDD]) -> RDD:
        """The records of this RDD and of ``others``.

        >>> ctx.parallelize([1, 2]).union(ctx.parallelize([3])).collect()
        [1, 2, 3]
        """
        rdds = [self]
        for o in others:
            rdds.extend(o if isinstance(o, (list, tuple)) else [o])
        return union_of(self.ctx, _check_rdds(rdds, "union"))

    __add__ = union

    def cartesian(self, other: RDD) -> RDD:
        """Every pair (a, b) of a record of this RDD and one of ``other``.

        >>> ctx.parallelize([1, 2]).cartesian(ctx.parallelize(['a', 'b'])).collect()
        [(1, 'a'), (1, 'b'), (2, 'a'), (2, 'b')]
        """
        return CartesianRDD(self, _check_rdds([self, other], "cartesian")[1])

    def zip(self, other: RDD) -> RDD:
        """(a, b) pairs of records at the same position; both RDDs need the same partitioning.

        >>> ctx.parallelize([1, 2], 1).zip(ctx.parallelize(['a', 'b'], 1)).collect()
        [(1, 'a'), (2, 'b')]
        """
        other = _check_rdds([self, other], "zip")[1]
        if other.num_partitions != self.num_partitions:
            raise ValueError(f"zip needs RDDs with the same number of partitions, "
                             f"not {self.num_partitions} and {other.num_partitions}")
        return ZippedRDD(self, other)

    # -- shuffles -------------------------------------------------------------------
    @_numPartitions_too
    def combineByKey(self, createCombiner: Callable[[Any], Any], mergeValue: Callable[[Any, Any], Any],
                     mergeCombiners: Callable[[Any, Any], Any], numSplits: int | None = None,
                     partitionFunc: Callable[[Any], int] | None = None) -> RDD:  # noqa: N803
        """Fold the values of each key: ``createCombiner(v)``, ``mergeValue(c, v)``, ``mergeCombiners(c, c)``.
        ``partitionFunc``: see :meth:`partitionBy`.

        >>> sorted(ctx.parallelize([('a', 1), ('a', 2)]).combineByKey(str, operator.add, operator.add).collect())
        [('a', '12')]
        """
        agg = Aggregator(self._f(createCombiner, "combineByKey"), self._f(mergeValue, "combineByKey"),
                         self._f(mergeCombiners, "combineByKey"))
        return ShuffledRDD(self, self._key_partitioner(numSplits, partitionFunc, "combineByKey"), agg, True)

    @_numPartitions_too
    def aggregateByKey(self, zeroValue: Any, seqFunc: Callable[[Any, Any], Any], combFunc: Callable[[Any, Any], Any],
                       numSplits: int | None = None, partitionFunc: Callable[[Any], int] | None = None) -> RDD:  # noqa: N803
        """Fold each key's values into a copy of ``zeroValue`` with ``seqFunc(acc, v)``, then merge those
        accumulators with ``combFunc(acc, acc)`` (Spark's: each map task starts each key from its own copy).
        ``partitionFunc``: see :meth:`partitionBy`.

        >>> sorted(ctx.parallelize([('a', 1), ('a', 2), ('b', 3)]).aggregateByKey(0, operator.add, operator.add)
        ...        .collect())
        [('a', 3), ('b', 3)]
        """
        return self._aggregate_by_key(zeroValue, seqFunc, combFunc, numSplits, partitionFunc, "aggregateByKey")

    @_numPartitions_too
    def foldByKey(self, zeroValue: Any, func: Callable[[Any, Any], Any], numSplits: int | None = None,
                  partitionFunc: Callable[[Any], int] | None = None) -> RDD:  # noqa: N803
        """Merge the values of each key with ``func``, starting from a copy of ``zeroValue`` in each map task.
        ``partitionFunc``: see :meth:`partitionBy`.

        >>> sorted(ctx.parallelize([('a', 1), ('a', 2), ('b', 3)]).foldByKey(0, operator.add).collect())
        [('a', 3), ('b', 3)]
        """
        return self._aggregate_by_key(zeroValue, func, func, numSplits, partitionFunc, "foldByKey")

    def _aggregate_by_key(self, zero: Any, seq: Callable[[Any, Any], Any], comb: Callable[[Any, Any], Any],
                          numSplits: int | None, partitionFunc: Callable[[Any], int] | None, what: str) -> RDD:
        seq_ref = self._f(seq, what)
        with shared.handles_packed() as held:
            packed_zero = serialize.packb_checked(zero, f"the zeroValue of RDD.{what}")
        create = ["p", registry.encode_func(ops.fold_into_zero, ""), [packed_zero, seq_ref], {}]
        # combined all along: each key of each map task takes the zero value once (again after the task
        # spilled what it combined, under a small --mem), as Spark's does
        agg = Aggregator(create, seq_ref, self._f(comb, what), probe=False)
        agg.holds = held        # the broadcast handles packed in the zero value (see shared.handles_packed)
        return ShuffledRDD(self, self._key_partitioner(numSplits, partitionFunc, what), agg, True)

    @_numPartitions_too
    def reduceByKey(self, func: Callable[[Any, Any], Any], numSplits: int | None = None,
                    partitionFunc: Callable[[Any], int] | None = None) -> RDD:  # noqa: N803
        """Merge the values of each key with ``func``, combining map-side first. ``partitionFunc``: see
        :meth:`partitionBy`.

        >>> sorted(ctx.parallelize([('a', 1), ('b', 2), ('a', 3)]).reduceByKey(operator.add).collect())
        [('a', 4), ('b', 2)]
        """
        f = self._f(func, "reduceByKey")
        return ShuffledRDD(self, self._key_partitioner(numSplits, partitionFunc, "reduceByKey"), Aggregator(None, f, f),
                           True)

    @_numPartitions_too
    def groupByKey(self, numSplits: int | None = None, partitionFunc: Callable[[Any], int] | None = None) -> RDD:  # noqa: N803
        """(key, [values]) for each key. ``partitionFunc``: see :meth:`partitionBy`.

        >>> sorted(ctx.parallelize([('a', 1), ('b', 2), ('a', 3)]).groupByKey().collect())
        [('a', [1, 3]), ('b', [2])]
        """
        agg = Aggregator(registry.encode_func(ops.one_list, ""), registry.encode_func(ops.append, ""),
                         registry.encode_func(ops.extend, ""))
        return ShuffledRDD(self, self._key_partitioner(numSplits, partitionFunc, "groupByKey"), agg, False)

    @_numPartitions_too
    def partitionByKey(self, numSplits: int | None = None) -> RDD:
        """The same (key, value) pairs, hash-partitioned by key.

        >>> ctx.parallelize([(1, 'x'), (2, 'y'), (3, 'z')]).partitionByKey(2).glom().collect()
        [[(2, 'y')], [(1, 'x'), (3, 'z')]]
        """
        return ShuffledRDD(self, HashPartitioner(self._shuffle_parts(numSplits)), None, False)

    @_numPartitions_too
    def distinct(self, numSplits: int | None = None) -> RDD:
        """Each distinct record once.

        >>> sorted(ctx.parallelize([1, 2, 1, 3, 2]).distinct().collect())
        [1, 2, 3]
        """
        first = registry.encode_func(ops.keep_first, "")
        return ShuffledRDD(self._as_keys(), HashPartitioner(self._shuffle_parts(numSplits)),
                           Aggregator(None, first, first), True).keys()

    def _as_keys(self) -> RDD:
        """Each record as the key of a pair ``(record, None)``: distinct, subtract and intersection shuffle these."""
        return PipedRDD(self, "map", registry.encode_func(ops.with_none, ""))

    def _records_cogrouped(self, other: RDD, numSplits: int | None, what: str) -> RDD:
        """(record, ([None for each time here], [None for each time in ``other``])) of every record of either."""
        return self._as_keys().groupWith(_check_rdds([self, other], what)[1]._as_keys(), numSplits=numSplits)

    @_numPartitions_too
    def groupWith(self, *others: RDD | list[RDD], numSplits: int | None = None) -> RDD:
        """(key, ([values of self], [values of other], ...)) for each key of any of them.

        ``others``: one RDD, a list of RDDs (DPark) or several RDDs (Spark);
        an int after them is ``numSplits``, as in ``a.cogroup(b, 3)``.

        >>> sorted(ctx.parallelize([('a', 1)]).groupWith(ctx.parallelize([('a', 2), ('b', 3)])).collect())
        [('a', ([1], [2])), ('b', ([], [3]))]
        """
        rdds: list[RDD] = []
        if others and type(others[-1]) is int and numSplits is None:   # cogroup(other, 3), as Spark and DPark
            *others, numSplits = others      # type: ignore[assignment]
        for o in others:
            rdds.extend(o if isinstance(o, (list, tuple)) else [o])
        if not rdds:
            raise TypeError("groupWith takes at least one other RDD")
        rdds = _check_rdds([self, *rdds], "groupWith")[1:]
        return CoGroupedRDD([self, *rdds], self._cogroup_partitioner(numSplits, rdds))

    cogroup = groupWith

    def _join(self, other: RDD, numSplits: int | None, how: Callable[..., Any], what: str) -> RDD:
        other = _check_rdds([self, other], what)[1]
        grouped = CoGroupedRDD([self, other], self._cogroup_partitioner(numSplits, [other]))
        return PipedRDD(grouped, "flatMapValue", registry.encode_func(how, ""), keeps_partitioner=True)

    @_numPartitions_too
    def join(self, other: RDD, numSplits: int | None = None) -> RDD:
        """(k, (v, w)) for each pair of values of a key present in both.

        >>> ctx.parallelize([('a', 1), ('b', 2)]).join(ctx.parallelize([('a', 'x')])).collect()
        [('a', (1, 'x'))]
        """
        return self._join(other, numSplits, ops.join_pairs, "join")

    @_numPartitions_too
    def leftOuterJoin(self, other: RDD, numSplits: int | None = None) -> RDD:
        """Like join; keys only in this RDD give (k, (v, None)).

        >>> sorted(ctx.parallelize([('a', 1), ('b', 2)]).leftOuterJoin(ctx.parallelize([('a', 'x')])).collect())
        [('a', (1, 'x')), ('b', (2, None))]
        """
        return self._join(other, numSplits, ops.left_outer_pairs, "leftOuterJoin")

    @_numPartitions_too
    def rightOuterJoin(self, other: RDD, numSplits: int | None = None) -> RDD:
        """Like join; keys only in ``other`` give (k, (None, w)).

        >>> sorted(ctx.parallelize([('a', 1)]).rightOuterJoin(ctx.parallelize([('a', 'x'), ('c', 'y')])).collect())
        [('a', (1, 'x')), ('c', (None, 'y'))]
        """
        return self._join(other, numSplits, ops.right_outer_pairs, "rightOuterJoin")

    @_numPartitions_too
    def outerJoin(self, other: RDD, numSplits: int | None = None) -> RDD:
        """Like join, keeping keys of either side with None for the missing value.

        >>> sorted(ctx.parallelize([('a', 1), ('b', 2)]).outerJoin(ctx.parallelize([('a', 'x'), ('c', 'y')])).collect())
        [('a', (1, 'x')), ('b', (2, None)), ('c', (None, 'y'))]
        """
        return self._join(other, numSplits, ops.full_outer_pairs, "outerJoin")

    fullOuterJoin = outerJoin

    @_numPartitions_too
    def sortByKey(self, ascending: bool = True, numSplits: int | None = None,
                  keyfunc: Callable[[Any], Any] | None = None) -> RDD:
        """(key, value) pairs sorted by key across partitions (samples keys to balance ranges).

        >>> ctx.parallelize([(3, 'c'), (1, 'a'), (2, 'b')]).sortByKey().collect()
        [(1, 'a'), (2, 'b'), (3, 'c')]
        """
        return self._by_ranges(ascending, numSplits, keyfunc, "sortByKey")

    def _by_ranges(self, ascending: bool, numSplits: int | None, keyfunc: Callable[[Any], Any] | None,  # noqa: N803
                   what: str) -> RDD:
        """:meth:`sortByKey`, its errors naming ``what``: the method the app called."""
        n = self._shuffle_parts(numSplits)
        key_ref = self._f(keyfunc, what) if keyfunc is not None else None
        # about 100 keys per range to cut (Spark samples 60): better balanced ranges for little driver work
        sample = self.ctx.runJob(self, ["sample_keys", max(100, 100 * n // max(1, self.num_partitions)), key_ref])
        bounds = range_bounds([k for part in sample for k in part], n, what)
        shuffled = ShuffledRDD(self, RangePartitioner(bounds, bool(ascending), n), None, False, key_ref)
        # by keyfunc's ranges, the result is not partitioned by its keys: no partitioner (a join with it
        # shuffles it), as Spark's sortBy gives none
        return PipedRDD(shuffled, "sortPartition", key_ref, [not ascending], keeps_partitioner=key_ref is None)

    @_numSplits_too
    def repartitionAndSortWithinPartitions(self, numPartitions: int | None = None,  # noqa: N802, N803
                                           partitionFunc: Callable[[Any], int] | None = None,  # noqa: N803
                                           ascending: bool = True,
                                           keyfunc: Callable[[Any], Any] | None = None) -> RDD:
        """PySpark's: the (key, value) pairs partitioned by key as :meth:`partitionBy` does, each partition
        sorted by key (by ``keyfunc(key)`` with ``keyfunc``), in one shuffle; past the memory budget the
        sort spills to disk. The result keeps the partitioner: a join with an RDD partitioned alike
        shuffles neither.

        >>> pairs = ctx.parallelize([(3, 'c'), (1, 'a'), (4, 'd'), (2, 'b')])
        >>> pairs.repartitionAndSortWithinPartitions(2).glom().collect()
        [[(2, 'b'), (4, 'd')], [(1, 'a'), (3, 'c')]]
        """
        what = "repartitionAndSortWithinPartitions"
        key_ref = self._f(keyfunc, what) if keyfunc is not None else None
        shuffled = ShuffledRDD(self, self._key_partitioner(numPartitions, partitionFunc, what, "numPartitions"), None,
                               False)
        return PipedRDD(shuffled, "sortPartition", key_ref, [not ascending], keeps_partitioner=True)

    @_numPartitions_too
    def sort(self, key: Callable[[Any], Any] | None = None, reverse: bool = False,
             numSplits: int | None = None) -> RDD:
        """The records sorted by ``key`` (default: the records themselves).

        >>> ctx.parallelize(['bb', 'a', 'ccc']).sort(key=len, reverse=True).collect()
        ['ccc', 'bb', 'a']
        """
        return self._sorted(key, reverse, numSplits, "sort")

    def _sorted(self, key: Callable[[Any], Any] | None, reverse: bool, numSplits: int | None, what: str) -> RDD:  # noqa: N803
        keyed = PipedRDD(self, "keyBy", self._f(key, what) if key is not None else None)
        return keyed._by_ranges(not reverse, numSplits, None, what).values()

    @_numPartitions_too
    def sortBy(self, keyfunc: Callable[[Any], Any], ascending: bool = True, numSplits: int | None = None) -> RDD:
        """Spark's name for :meth:`sort` by ``keyfunc``.

        >>> ctx.parallelize(['bb', 'a', 'ccc']).sortBy(len).collect()
        ['a', 'bb', 'ccc']
        """
        return self._sorted(keyfunc, not ascending, numSplits, "sortBy")

    @_numSplits_too
    def partitionBy(self, numPartitions: int | None = None,  # noqa: N803
                    partitionFunc: Callable[[Any], int] | None = None) -> RDD:
        """PySpark's: :meth:`partitionByKey`, or with ``partitionFunc`` (a registered function of the key
        giving an int), each pair into partition ``partitionFunc(key) % numPartitions``.

        >>> ctx.parallelize([(1, 'x'), (2, 'y'), (3, 'z')]).partitionBy(2, abs).glom().collect()
        [[(2, 'y')], [(1, 'x'), (3, 'z')]]
        """
        partitioner = self._key_partitioner(numPartitions, partitionFunc, "partitionBy", "numPartitions")
        if self.partitioner == partitioner:     # already partitioned so (PySpark's): no shuffle
            return self
        return ShuffledRDD(self, partitioner, None, False)

    @_numPartitions_too
    def groupBy(self, f: Callable[[Any], Any], numSplits: int | None = None) -> RDD:
        """(f(x), [records x with that f(x)]) for each value of ``f``.

        >>> sorted(ctx.parallelize(['a', 'bb', 'cc']).groupBy(len).collect())
        [(1, ['a']), (2, ['bb', 'cc'])]
        """
        return PipedRDD(self, "keyBy", self._f(f, "groupBy")).groupByKey(numSplits)

    @_numPartitions_too
    def subtract(self, other: RDD, numSplits: int | None = None) -> RDD:
        """The records of this RDD that ``other`` does not hold, each as many times as it is here.

        >>> sorted(ctx.parallelize([1, 2, 2, 3]).subtract(ctx.parallelize([3])).collect())
        [1, 2, 2]
        """
        return self._records_cogrouped(other, numSplits, "subtract").flatMap(ops.left_only_keys)

    @_numPartitions_too
    def subtractByKey(self, other: RDD, numSplits: int | None = None) -> RDD:
        """The (key, value) pairs of this RDD whose key ``other`` does not have.

        >>> ctx.parallelize([('a', 1), ('b', 2)]).subtractByKey(ctx.parallelize([('b', 0)])).collect()
        [('a', 1)]
        """
        return self.groupWith(_check_rdds([self, other], "subtractByKey")[1], numSplits=numSplits).flatMap(
            ops.left_only_pairs)

    @_numPartitions_too
    def intersection(self, other: RDD, numSplits: int | None = None) -> RDD:
        """Each record found in both RDDs, once.

        >>> sorted(ctx.parallelize([1, 2, 2, 3]).intersection(ctx.parallelize([2, 3, 4])).collect())
        [2, 3]
        """
        return self._records_cogrouped(other, numSplits, "intersection").filter(ops.in_both).keys()

    def keyBy(self, f: Callable[[Any], Any]) -> RDD:
        """(f(x), x) for each record x.

        >>> ctx.parallelize(['a', 'bb']).keyBy(len).collect()
        [(1, 'a'), (2, 'bb')]
        """
        return PipedRDD(self, "keyBy", self._f(f, "keyBy"))

    # -- actions ------------------------------------------------------------------
    def collect(self) -> list:
        """All records, in partition order.

        >>> ctx.parallelize(range(4), 2).collect()
        [0, 1, 2, 3]
        """
        return list(itertools.chain.from_iterable(self.ctx.runJob(self, ["collect"])))

    def toLocalIterator(self) -> Iterator[Any]:
        """The records, in partition order, a partition's job at a time: the driver holds one partition.

        >>> list(ctx.parallelize(range(4), 2).toLocalIterator())
        [0, 1, 2, 3]
        """
        for split in range(self.num_partitions):
            (part,) = self.ctx.runJob(self, ["collect"], [split])
            yield from part

    def collectAsMap(self) -> dict:
        """The (key, value) pairs as a dict.

        >>> ctx.parallelize([('a', 1), ('b', 2)]).collectAsMap()
        {'a': 1, 'b': 2}
        """
        result: dict = {}

        def merge(pieces: list) -> None:      # a partition's dicts of pairs, lists of other records
            nonlocal result
            for piece in pieces:
                if not result and type(piece) is dict:
                    result = piece
                    continue
                try:
                    result.update(piece)
                except (TypeError, ValueError) as exc:   # a record that is not a pair, or an unhashable key
                    raise actions.not_map_pairs(exc) from None

        # merged in partition order as the results come, while later tasks still run
        self.ctx.runJob(self, ["collectAsMap"], on_result=merge)
        return result

    def count(self) -> int:
        """The number of records.

        >>> ctx.parallelize(range(10)).count()
        10
        """
        return sum(self.ctx.runJob(self, ["count"]))

    def treeReduce(self, f: Callable[[Any, Any], Any], depth: int = 2) -> Any:
        """:meth:`reduce` (the partitions' results are few and merged in the driver: ``depth`` is not needed)."""
        _num(depth, "treeReduce: depth")
        self._f(f, "treeReduce")          # only for the error's name: this call's, not reduce's
        return self.reduce(f)

    def treeAggregate(self, zeroValue: Any, seqOp: Callable[[Any, Any], Any], combOp: Callable[[Any, Any], Any],
                      depth: int = 2) -> Any:
        """:meth:`aggregate` (see :meth:`treeReduce`)."""
        _num(depth, "treeAggregate: depth")
        self._f(seqOp, "treeAggregate")   # (as treeReduce's)
        self._f(combOp, "treeAggregate")
        return self.aggregate(zeroValue, seqOp, combOp)

    def reduce(self, f: Callable[[Any, Any], Any]) -> Any:
        """Fold all records with ``f``; ValueError on an empty RDD.

        >>> ctx.parallelize(range(5)).reduce(operator.add)
        10
        """
        ref = self._f(f, "reduce")
        parts = [p[0] for p in self.ctx.runJob(self, ["reduce", ref]) if p]
        if not parts:
            raise ValueError("reduce of an empty RDD")
        return _in_driver(ref, "reduce", functools.reduce, registry.decode_func(ref), parts)

    def fold(self, zero: Any, f: Callable[[Any, Any], Any]) -> Any:
        """Fold each partition from ``zero`` with ``f``, then the partition results.

        >>> ctx.parallelize([1, 2, 3], 2).fold(0, operator.add)
        6
        """
        ref = self._f(f, "fold")
        zero_copy = serialize.unpackb(serialize.packb_checked(zero, "RDD.fold"))   # f may change it, as Spark's
        parts = self.ctx.runJob(self, ["fold", zero, ref])                        # clone of it may be
        return _in_driver(ref, "fold", functools.reduce, registry.decode_func(ref), parts, zero_copy)

    def aggregate(self, zero: Any, seqOp: Callable[[Any, Any], Any], combOp: Callable[[Any, Any], Any]) -> Any:
        """``seqOp`` over each partition from ``zero``; ``combOp`` over the partition results.

        >>> ctx.parallelize([1, 2, 3]).aggregate(0, operator.add, operator.add)
        6
        """
        seq, comb = self._f(seqOp, "aggregate"), self._f(combOp, "aggregate")
        zero_copy = serialize.unpackb(serialize.packb_checked(zero, "RDD.aggregate"))   # combOp may change it
        parts = self.ctx.runJob(self, ["aggregate", zero, seq])
        return _in_driver(comb, "aggregate", functools.reduce, registry.decode_func(comb), parts, zero_copy)

    def take(self, n: int) -> list:
        """The first ``n`` records, reading as few partitions as it can.

        >>> ctx.parallelize(range(100), 10).take(3)
        [0, 1, 2]
        """
        if isinstance(n, int) and not isinstance(n, bool) and n < 0:
            return []                      # as Spark's take
        _count(n, "take")
        taken: list = []
        done, batch = 0, 1
        while len(taken) < n and done < self.num_partitions:
            parts = list(range(done, min(self.num_partitions, done + batch)))
            # (islice takes at most sys.maxsize: more records than a partition can have)
            for part in self.ctx.runJob(self, ["take", min(n - len(taken), sys.maxsize)], parts):
                taken.extend(part[: n - len(taken)])
            done += len(parts)
            batch *= 4
        return taken

    def first(self) -> Any:
        """The first record; ValueError on an empty RDD.

        >>> ctx.parallelize(['x', 'y']).first()
        'x'
        """
        got = self.take(1)
        if not got:
            raise ValueError("first of an empty RDD")
        return got[0]

    def top(self, n: int = 10, key: Callable[[Any], Any] | None = None, reverse: bool = False) -> list:
        """The ``n`` largest records (by ``key``), largest first (10 by default, as DPark's); with
        ``reverse`` (DPark's), the ``n`` smallest, smallest first.

        >>> ctx.parallelize([5, 1, 4]).top(2)
        [5, 4]
        """
        if not isinstance(reverse, bool):
            raise TypeError(f"top: reverse is True or False, not {reverse!r:.100}")
        if reverse:
            return self._ordered(n, key, "top", "bottom", heapq.nsmallest)
        return self._ordered(n, key, "top", "top", heapq.nlargest)

    def takeOrdered(self, n: int, key: Callable[[Any], Any] | None = None) -> list:
        """The ``n`` smallest records (by ``key``), smallest first.

        >>> ctx.parallelize([5, 1, 4, 2]).takeOrdered(2)
        [1, 2]
        """
        return self._ordered(n, key, "takeOrdered", "bottom", heapq.nsmallest)

    def _ordered(self, n: int, key: Callable[[Any], Any] | None, what: str, action: str,
                 pick: Callable[..., list]) -> list:
        _count(n, what)
        ref = self._f(key, what) if key is not None else None
        parts = self.ctx.runJob(self, [action, n, ref])
        return _in_driver(ref, what, pick, n, itertools.chain.from_iterable(parts),
                          key=registry.decode_func(ref) if ref else None)

    def lookup(self, key: Any) -> list:
        """The values of ``key`` in (key, value) pairs.

        >>> ctx.parallelize([('a', 1), ('b', 2), ('a', 3)]).lookup('a')
        [1, 3]

        With a partitioner (out of a shuffle by key), only the key's partition is read, as Spark's.
        """
        values = self.filter(functools.partial(ops.key_is, key)).values()
        if self.partitioner is not None:
            try:
                split = self.partitioner.get_partition(key)
            except Exception:  # noqa: BLE001 (a key its partitioner cannot place: no pair has it; all are read)
                return values.collect()
            return list(itertools.chain.from_iterable(self.ctx.runJob(values, ["collect"], [split])))
        return values.collect()

    def max(self, key: Callable[[Any], Any] | None = None) -> Any:
        """The largest record (by ``key``); ValueError on an empty RDD.

        >>> ctx.parallelize([3, 7, 5]).max()
        7
        """
        return self._extreme("max", key)

    def min(self, key: Callable[[Any], Any] | None = None) -> Any:
        """The smallest record (by ``key``); ValueError on an empty RDD.

        >>> ctx.parallelize(['bb', 'a', 'ccc']).min(key=len)
        'a'
        """
        return self._extreme("min", key)

    def _extreme(self, which: str, key: Callable[[Any], Any] | None) -> Any:
        ref = self._f(key, which) if key is not None else None
        parts = [p[0] for p in self.ctx.runJob(self, [which, ref]) if p]
        if not parts:
            raise ValueError(f"{which} of an empty RDD")
        pick = max if which == "max" else min
        return pick(parts, key=registry.decode_func(ref)) if ref else pick(parts)

    def sum(self) -> Any:
        """The sum of the records (0 for an empty RDD).

        >>> ctx.parallelize(range(5)).sum()
        10
        """
        return sum(self.ctx.runJob(self, ["sum"]))

    def mean(self) -> float:
        """The arithmetic mean of the records; 0.0 for an empty RDD, as Spark's (``stats().mean()``).

        >>> ctx.parallelize([1, 2, 3, 4]).mean()
        2.5
        """
        parts = self.ctx.runJob(self, ["sum_count"])
        total, n = sum(p[0] for p in parts), sum(p[1] for p in parts)
        return total / n if n else 0.0

    def stats(self) -> StatCounter:
        """Count, mean, variance, max and min of the records, in one job (a :class:`StatCounter`).

        >>> ctx.parallelize([1, 2, 3, 4], 2).stats()
        (count: 4, mean: 2.5, stdev: 1.118033988749895, max: 4.0, min: 1.0)
        """
        total = StatCounter()
        for part in self.ctx.runJob(self, ["stats"]):
            total.mergeStats(StatCounter._of(part))
        return total

    def variance(self) -> float:
        """The population variance of the records (nan for an empty RDD)."""
        return self.stats().variance()

    def stdev(self) -> float:
        """The population standard deviation of the records."""
        return self.stats().stdev()

    def sampleVariance(self) -> float:
        """The sample variance of the records (divided by ``count - 1``)."""
        return self.stats().sampleVariance()

    def sampleStdev(self) -> float:
        """The sample standard deviation of the records."""
        return self.stats().sampleStdev()

    def takeSample(self, withReplacement: bool, num: int, seed: int | None = None) -> list:
        """``num`` records drawn at random (as Spark does: a sample large enough with high probability,
        drawn again in the rare case it is not, then shuffled), all of them if ``num`` is more than the
        RDD holds and ``withReplacement`` is False.

        >>> len(ctx.parallelize(range(100), 4).takeSample(False, 10, seed=1))
        10
        """
        _count(num, "takeSample")
        if num > _MAX_SAMPLE:          # PySpark's bound: the sample's fraction would not be computable
            raise ValueError(f"takeSample: num cannot be greater than {_MAX_SAMPLE}, not {num}")
        rng = random.Random(seed)
        if num == 0:
            return []
        total = self.count()
        if total == 0:
            return []
        if not withReplacement and num >= total:
            records = self.collect()
            rng.shuffle(records)
            return records
        fraction = _sample_fraction(num, total, withReplacement)
        while True:
            records = self.sample(fraction, withReplacement, rng.randrange(1 << 63)).collect()
            if len(records) >= num:
                rng.shuffle(records)
                return records[:num]

    def histogram(self, buckets: int | list | tuple) -> tuple[list, list[int]]:
        """How many records fall in each bucket, as Spark's: ``buckets`` is a number of evenly spaced buckets
        from the smallest record to the largest (their bounds are returned), or the sorted bounds themselves
        ``[b0, b1, ..., bn]``: bucket ``i`` counts ``b[i] <= x < b[i + 1]``, the last one ``x <= bn`` too.
        None and NaN records, and records outside the bounds, are not counted. Returns (bounds, counts).

        >>> ctx.parallelize([1, 2, 2, 3, 5, 9], 2).histogram(2)
        ([1, 5, 9], [4, 2])
        >>> ctx.parallelize([1, 2, 2, 3, 5, 9], 2).histogram([0, 5, 10])
        ([0, 5, 10], [4, 2])
        """
        if isinstance(buckets, int) and not isinstance(buckets, bool):
            if buckets < 1:
                raise ValueError(f"histogram: the number of buckets must be at least 1, not {buckets}")
            extents = [e for e in self.mapPartitions(ops.extent).collect() if e]     # (min, max, count) each
            if not extents:
                raise ValueError("histogram: cannot make buckets for an empty RDD (or one of None and NaN only)")
            low, high = min(e[0] for e in extents), max(e[1] for e in extents)
            if low == high or buckets == 1:
                return [low, high], [sum(e[2] for e in extents)]
            try:
                step = (high - low) / buckets
            except (TypeError, OverflowError) as exc:
                raise TypeError(f"histogram: cannot make {buckets} evenly spaced buckets from {low!r:.40} to "
                                f"{high!r:.40}: {exc}") from None
            if math.isinf(step):
                raise ValueError("histogram: cannot make buckets with an infinite bound")
            if int(step) * buckets == high - low:     # ints stay ints when they divide evenly, as in Spark
                step = int(step)
            bounds = [low + i * step for i in range(buckets)] + [high]
        elif isinstance(buckets, (list, tuple)):
            bounds = list(buckets)
            if len(bounds) < 2:
                raise ValueError("histogram: buckets needs at least two bounds")
            if any(b is None or b != b for b in bounds):
                raise ValueError("histogram: buckets cannot hold None or NaN")
            if sorted(bounds) != bounds or len(set(bounds)) != len(bounds):
                raise ValueError(f"histogram: bucket bounds must be sorted and distinct: {bounds!r}")
        else:
            raise TypeError(f"histogram: buckets is a number of buckets or a list of bounds, not {buckets!r}")
        counts = [0] * (len(bounds) - 1)
        for part in self.mapPartitions(functools.partial(ops.histogram_counts, bounds)).collect():
            counts = [a + b for a, b in zip(counts, part)]
        return (buckets if isinstance(buckets, (list, tuple)) else bounds), counts     # bounds given: as given

    def countApproxDistinct(self, relativeSD: float = 0.05) -> int:
        """The number of distinct records: exactly (Spark's estimate is within ``relativeSD`` of it).

        >>> ctx.parallelize([1, 2, 1, 3, 2]).countApproxDistinct()
        3
        """
        if isinstance(relativeSD, bool) or not isinstance(relativeSD, (int, float)) or not relativeSD > 0.000017:
            raise ValueError(f"countApproxDistinct: relativeSD must be more than 0.000017, not {relativeSD!r}")
        return self.distinct().count()

    def reduceByKeyLocally(self, f: Callable[[Any, Any], Any]) -> dict:
        """The values of each key folded by ``f``, as a dict in the driver, without a shuffle: each partition
        folds its own pairs, the driver merges the partitions' dicts (in partition order).

        >>> ctx.parallelize([('a', 1), ('b', 2), ('a', 3)], 2).reduceByKeyLocally(operator.add)
        {'a': 4, 'b': 2}
        """
        ref = self._f(f, "reduceByKeyLocally")
        parts = self.mapPartitions(functools.partial(ops.reduce_partition_by_key, ref)).collect()
        # the same fold over the partitions' dicts, in the driver
        return _in_driver(ref, "reduceByKeyLocally", ops.reduce_partition_by_key, ref,
                          itertools.chain.from_iterable(map(dict.items, parts)))[0]

    def isEmpty(self) -> bool:
        """True when the RDD has no record (reads as few partitions as it can).

        >>> ctx.parallelize([], 2).isEmpty()
        True
        """
        return not self.take(1)

    def foreach(self, f: Callable[[Any], Any]) -> None:
        """Call ``f`` on each record, where the record is (here, local mode: in the driver).

        >>> ctx.parallelize([1, 2], 1).foreach(print)
        1
        2
        """
        self.ctx.runJob(self, ["foreach", self._f(f, "foreach")])

    def foreachPartition(self, f: Callable[[Iterator[Any]], Any]) -> None:
        """Call ``f`` on each partition's iterator."""
        self.ctx.runJob(self, ["foreachPartition", self._f(f, "foreachPartition")])

    def countByKey(self) -> dict:
        """{key: number of pairs with it}.

        >>> ctx.parallelize([('a', 1), ('a', 2), ('b', 3)]).countByKey()
        {'a': 2, 'b': 1}
        """
        return actions.merge_counts(self.ctx.runJob(self, ["countByKey"]))

    def countByValue(self) -> dict:
        """{record: number of times it occurs}.

        >>> ctx.parallelize(['x', 'y', 'x']).countByValue()
        {'x': 2, 'y': 1}
        """
        return actions.merge_counts(self.ctx.runJob(self, ["countByValue"]))

    def saveAsTextFile(self, path: str, overwrite: bool = False, compress: bool = False, *,
                       compressionCodecClass: str | None = None) -> list[str]:  # noqa: N803
        """One ``part-NNNNN`` file per partition, a line per record, then ``_SUCCESS``; the paths of
        the part files (DPark's return). ``compress``: gzip each one, as ``part-NNNNN.gz`` (which
        textFile reads back); PySpark's ``compressionCodecClass="org.apache.hadoop.io.compress.GzipCodec"``
        is the same.

        A job that fails leaves the folder empty (no part file of the partitions that were written).
        A non-empty folder is OutputExists unless ``overwrite``, and always when the RDD reads from it.

        >>> import os, shutil, tempfile
        >>> out = os.path.join(tempfile.mkdtemp(), "out")
        >>> [os.path.basename(p) for p in ctx.parallelize(["a", b"b", 3], 2).saveAsTextFile(out)]
        ['part-00000', 'part-00001']
        >>> sorted(os.listdir(out)), ctx.textFile(out).collect()
        (['_SUCCESS', 'part-00000', 'part-00001'], ['a', 'b', '3'])
        >>> shutil.rmtree(os.path.dirname(out))
        """
        from gopark.io import text
        path = text.output_folder(path, "saveAsTextFile")
        if compressionCodecClass is not None:
            if not isinstance(compressionCodecClass, str) or compressionCodecClass.rsplit(".", 1)[-1] != "GzipCodec":
                raise ValueError(f"saveAsTextFile: the one codec is org.apache.hadoop.io.compress.GzipCodec, "
                                 f"not {compressionCodecClass!r:.200}")
            compress = True
        for name, flag in (("overwrite", overwrite), ("compress", compress)):
            if not isinstance(flag, bool):     # a truthy "no" would remove what is there
                raise TypeError(f"saveAsTextFile: {name} is True or False, not {flag!r:.100}")
        if overwrite:
            _refuse_to_overwrite_an_input(self, path)
        with text.OutputFolder(path, overwrite) as out:     # emptied after a failure, as Spark's committer does
            names = self.ctx.runJob(self, ["save", out.path, compress])
        return [os.path.join(out.path, name) for name in names]


def _refuse_to_overwrite_an_input(rdd: RDD, path: str) -> None:
    """saveAsTextFile(overwrite=True) into a folder that ``rdd`` reads from (the ``input_paths`` of any RDD
    of its lineage) would remove its input before the job reads it: refused, as Spark's "Cannot overwrite
    a path that is also being read from"."""
    from gopark.io import text
    outs = {os.path.abspath(text.local_path(path)), os.path.realpath(text.local_path(path))}
    for r in lineage(rdd):
        for p in r.input_paths:       # as given, and where its links lead
            if any(x == out or x.startswith(out + os.sep) for x in {os.path.abspath(p), os.path.realpath(p)}
                   for out in outs):
                raise OutputExists(f"saveAsTextFile: cannot overwrite {path!r}: the RDD reads from it "
                                   f"({p!r}); write elsewhere, then move")


_MAX_SAMPLE = sys.maxsize - int(10 * math.sqrt(sys.maxsize))    # the most records takeSample draws


def _sample_fraction(num: int, total: int, with_replacement: bool) -> float:
    """The fraction a sample of ``total`` records needs to hold ``num`` of them with high probability
    (Spark's ``SamplingUtils.computeFractionForSampleSize``)."""
    if with_replacement:
        spread = 9 if num < 12 else 5
        return max(num + spread * math.sqrt(num), 1e-10) / total
    fraction, gamma = num / total, -math.log(1e-4) / total
    return min(1.0, max(1e-10, fraction + gamma + math.sqrt(gamma * gamma + 2 * gamma * fraction)))


def _in_driver(ref: list | None, what: str, run: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``run(*args, **kwargs)``: the driver's part of an action, which merges the partitions' results
    (with the user's function ``ref``); its failure is a JobError, as the same failure in a task would be."""
    try:
        return run(*args, **kwargs)
    except Exception as exc:
        func = registry.func_label(ref)
        raise job_error(f"{what}: merging the partitions' results in the driver failed: "
                        f"{type(exc).__name__}: {exc}" + (f" (in {func})" if func else ""),
                        type(exc).__name__, str(exc), traceback.format_exc(), func) from exc


def _check_rdds(rdds: list, what: str) -> list[RDD]:
    for r in rdds:
        if not isinstance(r, RDD):
            raise TypeError(f"{what} takes RDDs, not {type(r).__name__}")
    ctx = rdds[0].ctx
    if any(r.ctx is not ctx for r in rdds):
        raise ValueError(f"{what}: the RDDs belong to different Contexts")
    return rdds


# --- kinds -------------------------------------------------------------------------

class ParallelCollection(RDD):
    """``ctx.parallelize(seq, n)``: slices of a driver-side collection (a range stays a range)."""

    kind = "parallel"

    def __init__(self, ctx: Any, slices: list, holds: list | None = None) -> None:
        super().__init__(ctx, len(slices))
        self.slices = slices          # packed bytes, or ["range", start, stop, step]
        self.holds = holds or []      # the broadcast handles packed in them (see shared.handles_packed)

    def _params(self, needed: set[int], outputs: dict[int, list]) -> dict:
        shared.check_held(self.holds)
        return {"slices": {i: self.slices[i] for i in needed}}

    def compute(self, split: int, task: Any) -> Iterator[Any]:
        s = self.slices[split]
        if isinstance(s, list):
            return iter(range(s[1], s[2], s[3]))
        return iter(serialize.unpackb(s))

    @classmethod
    def _build(cls, params: dict, parents: list[RDD], n: int) -> RDD:
        node = _bare(cls, n)
        node.slices = params["slices"]
        return node


def slice_collection(seq: Any, n: int) -> list:
    """``n`` slices of ``seq`` as they travel: packed data, or ranges."""
    if isinstance(seq, range):
        length = len(seq)
        bounds = [(i * length) // n for i in range(n + 1)]
        return [["range", seq[a] if a < length else seq.stop, seq[b] if b < length else seq.stop, seq.step]
                if a < b else ["range", 0, 0, 1] for a, b in zip(bounds, bounds[1:])]
    items = list(seq)
    bounds = [(i * len(items)) // n for i in range(n + 1)]
    return [serialize.packb_checked(items[a:b], "parallelize") for a, b in zip(bounds, bounds[1:])]


class TextFileRDD(RDD):
    """``ctx.textFile(path)``: lines of files split on line borders (or by MooseFS chunk)."""

    kind = "text"

    def __init__(self, ctx: Any, path: str, splits: list[dict], asked: tuple[str, ...] = ()) -> None:
        """``asked``: the local paths the app gave (a mounted MooseFS's splits name no local file)."""
        super().__init__(ctx, len(splits))
        self.path = path
        self.splits = splits
        self.input_paths = tuple(s["path"] for s in splits if s.get("kind") != "mfs" and "path" in s) + asked

    def _params(self, needed: set[int], outputs: dict[int, list]) -> dict:
        return {"splits": {i: self.splits[i] for i in needed}}

    def _split_hosts(self, split: int) -> list[str]:
        return list(self.splits[split].get("hosts", ()))

    def compute(self, split: int, task: Any) -> Iterator[Any]:
        from gopark.io import text
        return text.read_split(self.splits[split])

    @classmethod
    def _build(cls, params: dict, parents: list[RDD], n: int) -> RDD:
        node = _bare(cls, n)
        node.splits = params["splits"]
        return node


def _sample(fraction: float, with_replacement: bool, seed: int, split: int, it: Iterator[Any]) -> Iterator[Any]:
    rng = ops.partition_rng(seed, split)
    if not with_replacement:
        return (x for x in it if rng.random() < fraction)
    return _poisson_sample(rng, fraction, it)


def _poisson_sample(rng: random.Random, fraction: float, it: Iterator[Any]) -> Iterator[Any]:
    for x in it:
        for _ in range(ops.poisson_count(rng, fraction)):
            yield x


def _sort_partition(f: Callable[[Any], Any] | None, reverse: bool, it: Iterator[Any], task: Any) -> Iterator[Any]:
    from gopark.shuffle import external_sort
    key = operator.itemgetter(0) if f is None else (lambda kv: f(kv[0]))
    return external_sort(it, key, reverse, task.env.mem_bytes, task.env.spill_root)


def _pipe(op: str, f: Callable[..., Any] | None, extra: Any, split: int, it: Iterator[Any],
          task: Any) -> Iterator[Any]:
    """Partition ``split`` of a narrow operation over its parent's iterator ``it``.

    The per-record operations (map, filter, ...) are not here: they run as
    generated loops, see :mod:`gopark.pipeline`.
    """
    if op in ("mapPartitions", "mapPartitionsWithIndex"):
        records = f(it) if op == "mapPartitions" else f(split, it)
        if records is None:         # as iter(None) would, with what to look for: a function that forgot to return
            raise TypeError(f"{op}: the function returned None, not an iterable of records (a missing return?)")
        return iter(records)
    if op == "glom":
        return iter([list(it)])
    if op == "sample":
        return _sample(extra[0], extra[1], extra[2], split, it)
    if op == "enumerate":
        return zip(itertools.count(extra[split]), it)
    if op == "sortPartition":
        return _sort_partition(f, extra[0], it, task)
    raise ValueError(f"unknown operation {op!r}")


class PipedRDD(RDD):
    """A narrow, one-to-one operation (map, filter, mapPartitions, ...) on one parent."""

    kind = "pipe"

    def __init__(self, parent: RDD, op: str, f: list | None, extra: Any = None,
                 keeps_partitioner: bool = False) -> None:
        super().__init__(parent.ctx, parent.num_partitions)
        self.parent, self.op, self.f_ref, self.extra = parent, op, f, extra
        if keeps_partitioner:
            self.partitioner = parent.partitioner
        self._fn: Callable[..., Any] | None = None

    def _deps(self) -> list[RDD | ShuffleDependency]:
        return [self.parent]

    def _parent_splits(self, split: int) -> list[tuple[RDD, int]]:
        return [(self.parent, split)]

    def _params(self, needed: set[int], outputs: dict[int, list]) -> dict:
        return {"op": self.op, "f": self.f_ref, "x": self.extra}

    def compute(self, split: int, task: Any) -> Iterator[Any]:
        return pipeline.iterate(*self._stacked(split, task))

    def per_record_tail(self, split: int, task: Any) -> tuple[Iterator[Any], list[tuple[str, Any]]]:
        """As :meth:`RDD.per_record_tail`: the trailing per-record operations of this chain of
        narrow operations are left out of the iterator (unless this RDD is cached)."""
        if self.is_cached:
            return self.iterator(split, task), []
        return self._stacked(split, task)

    def _stacked(self, split: int, task: Any) -> tuple[Iterator[Any], list[tuple[str, Any]]]:
        """The chain of uncached narrow operations ending here, stacked as iterators over the
        first one's parent, but for the trailing per-record ones (each run of per-record
        operations is one generated loop)."""
        chain: list[PipedRDD] = [self]
        while isinstance(chain[-1].parent, PipedRDD) and not chain[-1].parent.is_cached:
            chain.append(chain[-1].parent)
        # per-record operations not applied yet: those the chain's first parent leaves (a union's part)
        it, run = chain[-1].parent.per_record_tail(split, task)
        for node in reversed(chain):
            if node.op in PER_RECORD:
                f = node.fn()
                run.append(("keyBySelf", None) if node.op == "keyBy" and f is None else (node.op, f))
                continue
            it = _pipe(node.op, node.fn(), node.extra, split, pipeline.iterate(it, run), task)
            run = []
        return it, run

    def fn(self) -> Any:
        """This operation's function, decoded once."""
        if self._fn is None and self.f_ref is not None:
            self._fn = registry.decode_func(self.f_ref)
        return self._fn

    @classmethod
    def _build(cls, params: dict, parents: list[RDD], n: int) -> RDD:
        node = _bare(cls, n)
        node.parent, node.op, node.f_ref, node.extra = parents[0], params["op"], params["f"], params["x"]
        node._fn = None
        return node


class UnionRDD(RDD):
    """The partitions of several RDDs, one after the other."""

    kind = "union"

    def __init__(self, ctx: Any, rdds: list[RDD]) -> None:
        super().__init__(ctx, sum(r.num_partitions for r in rdds))
        self.rdds = rdds                  # as given (on a worker: the parents its task reads)
        self.read: dict[int, list[int]] | None = None    # on a worker: split -> [its parent in rdds, its split there]
        self._view: tuple[int, list[RDD], list[int]] | None = None

    def _parents(self) -> tuple[list[RDD], list[int]]:
        """The RDDs it reads (:func:`union_parents`) and the first split of each, worked out again after an
        RDD of its Context was cached, unpersisted or marked for checkpoint."""
        marks = self.ctx._cache_marks if self.ctx is not None else 0
        if self._view is None or self._view[0] != marks:
            parents = union_parents(self)
            self._view = marks, parents, list(itertools.accumulate((r.num_partitions for r in parents), initial=0))
        return self._view[1], self._view[2]

    def _deps(self) -> list[RDD | ShuffleDependency]:
        return list(self._parents()[0]) if self.read is None else list(self.rdds)

    def _parent_splits(self, split: int) -> list[tuple[RDD, int]]:
        return [self._locate(split)]

    def _reads(self, needed: set[int]) -> dict[int, tuple[RDD, int]]:
        """Of each split ``needed``: the parent it reads and its split there."""
        return {s: self._locate(s) for s in needed}

    def _wire_parents(self, needed: set[int]) -> list[RDD]:
        """Only the parents the splits ``needed`` read travel (a union may have thousands)."""
        return list({id(r): r for r, _ in self._reads(needed).values()}.values())

    def _params(self, needed: set[int], outputs: dict[int, list]) -> dict:
        position = {id(r): i for i, r in enumerate(self._wire_parents(needed))}    # in the wire's parents
        return {"read": {split: [position[id(r)], s] for split, (r, s) in self._reads(needed).items()}}

    def compute(self, split: int, task: Any) -> Iterator[Any]:
        r, s = self._locate(split)
        return r.iterator(s, task)

    def per_record_tail(self, split: int, task: Any) -> tuple[Iterator[Any], list[tuple[str, Any]]]:
        """As :meth:`RDD.per_record_tail`: a partition of a union is its parent's, trailing operations included."""
        if self.is_cached:
            return self.iterator(split, task), []
        r, s = self._locate(split)
        return r.per_record_tail(s, task)

    def _locate(self, split: int) -> tuple[RDD, int]:
        if self.read is not None:
            i, s = self.read[split]
            return self.rdds[i], s
        if not 0 <= split < self.num_partitions:
            raise IndexError(split)
        parents, starts = self._parents()
        i = bisect.bisect_right(starts, split) - 1
        return parents[i], split - starts[i]

    @classmethod
    def _build(cls, params: dict, parents: list[RDD | None], n: int) -> RDD:
        node = _bare(cls, n)
        node.rdds = parents
        node.read = params["read"]
        return node


class PartitionerAwareUnionRDD(RDD):
    """The union of RDDs partitioned alike (Spark's PartitionerAwareUnionRDD): partition i is partition i of
    each of them, one after the other, and the partitioner is kept (a join with it shuffles neither side)."""

    kind = "punion"

    def __init__(self, ctx: Any, rdds: list[RDD]) -> None:
        super().__init__(ctx, rdds[0].num_partitions)
        self.rdds = rdds                  # as given (on a worker: the RDDs it reads)
        self.partitioner = rdds[0].partitioner
        self._view: tuple[int, list[RDD]] | None = None

    def _parents(self) -> list[RDD]:
        """The RDDs it reads (:func:`union_parents`; see :meth:`UnionRDD._parents`)."""
        if self.ctx is None:
            return self.rdds
        if self._view is None or self._view[0] != self.ctx._cache_marks:
            self._view = self.ctx._cache_marks, union_parents(self)
        return self._view[1]

    def _deps(self) -> list[RDD | ShuffleDependency]:
        return list(self._parents())

    def _parent_splits(self, split: int) -> list[tuple[RDD, int]]:
        return [(r, split) for r in self._parents()]

    def _params(self, needed: set[int], outputs: dict[int, list]) -> dict:
        return {}

    def compute(self, split: int, task: Any) -> Iterator[Any]:
        return itertools.chain.from_iterable(r.iterator(split, task) for r in self._parents())

    @classmethod
    def _build(cls, params: dict, parents: list[RDD], n: int) -> RDD:
        node = _bare(cls, n)
        node.rdds = parents
        return node


def union_of(ctx: Any, rdds: list[RDD]) -> RDD:
    """The union of ``rdds`` (checked): partition by partition when they are all partitioned alike, as
    Spark's, else their partitions one after the other."""
    first = rdds[0].partitioner
    if len(rdds) > 1 and first is not None and all(r.partitioner == first for r in rdds[1:]):
        return PartitionerAwareUnionRDD(ctx, rdds)
    return UnionRDD(ctx, rdds)


def union_parents(union: UnionRDD | PartitionerAwareUnionRDD) -> list[RDD]:
    """The RDDs a union reads: those it was made of, with each union of its kind among them (not cached,
    nor marked for checkpoint) replaced by the RDDs that one reads, the same partitions in the same order.
    A union grown one RDD at a time in a loop (``acc = acc.union(more)``) reads its thousands of RDDs
    itself, instead of its tasks going down a chain of as many unions (and Python's recursion limit with
    them), and each task carries the one it reads."""
    parents: list[RDD] = []
    stack = [iter(union.rdds)]
    while stack:
        for r in stack[-1]:
            if type(r) is type(union) and not r.is_cached and r._checkpoint_to is None:
                stack.append(iter(r.rdds))     # type: ignore[attr-defined]
                break
            parents.append(r)
        else:
            stack.pop()
    return parents


class CartesianRDD(RDD):
    """Every pair of records of two RDDs; partition i x j reads a's i and b's j."""

    kind = "cartesian"

    def __init__(self, a: RDD, b: RDD) -> None:
        super().__init__(a.ctx, a.num_partitions * b.num_partitions)
        self.a, self.b = a, b

    def _deps(self) -> list[RDD | ShuffleDependency]:
        return [self.a, self.b]

    def _parent_splits(self, split: int) -> list[tuple[RDD, int]]:
        i, j = divmod(split, self.b.num_partitions)
        return [(self.a, i), (self.b, j)]

    def compute(self, split: int, task: Any) -> Iterator[Any]:
        from gopark.shuffle import records_to_reread
        i, j = divmod(split, self.b.num_partitions)
        # b's partition is read again for each record of a's: held, or packed to disk past the budget
        right = records_to_reread(self.b.iterator(j, task), task.env.mem_bytes, task.env.spill_root)
        return ((x, y) for x in self.a.iterator(i, task) for y in right)

    @classmethod
    def _build(cls, params: dict, parents: list[RDD], n: int) -> RDD:
        node = _bare(cls, n)
        node.a, node.b = parents
        return node


class CoalescedRDD(RDD):
    """Partition i is parent partitions [i*P/n, (i+1)*P/n), one after the other: no shuffle."""

    kind = "coalesce"

    def __init__(self, parent: RDD, n: int) -> None:
        super().__init__(parent.ctx, n)
        self.parent = parent
        self._np = parent.num_partitions

    def _deps(self) -> list[RDD | ShuffleDependency]:
        return [self.parent]

    def _range(self, split: int) -> range:
        return range(split * self._np // self.num_partitions, (split + 1) * self._np // self.num_partitions)

    def _parent_splits(self, split: int) -> list[tuple[RDD, int]]:
        return [(self.parent, s) for s in self._range(split)]

    def _params(self, needed: set[int], outputs: dict[int, list]) -> dict:
        return {"np": self._np}

    def compute(self, split: int, task: Any) -> Iterator[Any]:
        return itertools.chain.from_iterable(self.parent.iterator(s, task) for s in self._range(split))

    @classmethod
    def _build(cls, params: dict, parents: list[RDD], n: int) -> RDD:
        node = _bare(cls, n)
        node.parent = parents[0]
        node._np = params["np"]
        return node


class ZippedRDD(RDD):
    """(a, b) pairs of records at the same position of two equally partitioned RDDs."""

    kind = "zip"

    def __init__(self, a: RDD, b: RDD) -> None:
        super().__init__(a.ctx, a.num_partitions)
        self.a, self.b = a, b

    def _deps(self) -> list[RDD | ShuffleDependency]:
        return [self.a, self.b]

    def _parent_splits(self, split: int) -> list[tuple[RDD, int]]:
        return [(self.a, split), (self.b, split)]

    def compute(self, split: int, task: Any) -> Iterator[Any]:
        return _zip_exact(self.a.iterator(split, task), self.b.iterator(split, task), split)

    @classmethod
    def _build(cls, params: dict, parents: list[RDD], n: int) -> RDD:
        node = _bare(cls, n)
        node.a, node.b = parents
        return node


def _zip_exact(a: Iterator[Any], b: Iterator[Any], split: int) -> Iterator[tuple]:
    end = object()
    for x, y in itertools.zip_longest(a, b, fillvalue=end):
        if x is end or y is end:
            raise ValueError(f"zip: partition {split} of the two RDDs has different numbers of records")
        yield (x, y)


class ShuffledRDD(RDD):
    """The reduce side of a shuffle: pairs of every map output for this partition, merged."""

    kind = "shuffled"

    def __init__(self, parent: RDD, partitioner: HashPartitioner | RangePartitioner | FuncPartitioner,
                 aggregator: Aggregator | None, map_side_combine: bool, key_ref: list | None = None) -> None:
        super().__init__(parent.ctx, partitioner.num_partitions)
        self.partitioner = partitioner
        self.aggregator = aggregator
        self.dep = ShuffleDependency(parent, partitioner, aggregator, map_side_combine, key_ref, self.site)

    def _deps(self) -> list[RDD | ShuffleDependency]:
        return [self.dep]

    def _params(self, needed: set[int], outputs: dict[int, list]) -> dict:
        agg = self.aggregator
        return {"sid": self.dep.shuffle_id, "locs": shuffle.locations_for(outputs[self.dep.shuffle_id], needed),
                "agg": agg.to_wire() if agg else None, "combined": self.dep.map_side_combine}

    def compute(self, split: int, task: Any) -> Iterator[Any]:
        sid, locs, agg = self.params["sid"], self.params["locs"], self.params["agg"]
        if agg is None:
            return task.read_shuffle(sid, locs, split)
        merger = task.merger(agg)
        if self.params["combined"]:
            merger.add_combiners(task.shuffle_chunks(sid, locs, split))
        else:
            merger.add_values(task.read_shuffle(sid, locs, split))
        return merger.items()

    @classmethod
    def _build(cls, params: dict, parents: list[RDD], n: int) -> RDD:
        node = _bare(cls, n)
        node.params = params
        return node


class CoGroupedRDD(RDD):
    """(key, ([values of rdd 0], [values of rdd 1], ...)); a parent already partitioned alike is read narrow."""

    kind = "cogroup"

    def __init__(self, rdds: list[RDD], partitioner: HashPartitioner) -> None:
        super().__init__(rdds[0].ctx, partitioner.num_partitions)
        self.partitioner = partitioner
        self.inputs: list[RDD | ShuffleDependency] = [
            r if r.partitioner == partitioner else ShuffleDependency(r, partitioner, None, False, site=self.site)
            for r in rdds]

    def _deps(self) -> list[RDD | ShuffleDependency]:
        return list(self.inputs)

    def _parent_splits(self, split: int) -> list[tuple[RDD, int]]:
        return [(r, split) for r in self.inputs if isinstance(r, RDD)]

    def _params(self, needed: set[int], outputs: dict[int, list]) -> dict:
        return {"inputs": [None if isinstance(d, RDD) else [d.shuffle_id, shuffle.locations_for(outputs[d.shuffle_id],
                                                                                              needed)]
                           for d in self.inputs]}

    def compute(self, split: int, task: Any) -> Iterator[Any]:
        n = len(self.wire_inputs)
        merger = task.merger(None, merge_combiners=_merge_groups)
        narrow = iter(self.narrow_parents)
        for i, spec in enumerate(self.wire_inputs):
            if spec is None:
                pairs: Iterable[tuple] = next(narrow).iterator(split, task)
            else:
                pairs = task.read_shuffle(spec[0], spec[1], split)
            merger.add_to_groups(pairs, i, n)
        return merger.items_as(tuple)

    @classmethod
    def _build(cls, params: dict, parents: list[RDD], n: int) -> RDD:
        node = _bare(cls, n)
        node.wire_inputs = params["inputs"]
        node.narrow_parents = parents
        return node


def _merge_groups(a: list[list], b: list[list]) -> list[list]:
    for x, y in zip(a, b):
        x.extend(y)
    return a


class CheckpointRDD(RDD):
    """A checkpointed RDD (see :meth:`RDD.checkpoint`): the same RDD object (its id, partitioner, cache),
    whose partitions are read from its part files; its lineage is gone. :func:`save_checkpoints` turns an
    RDD into one."""

    kind = "checkpoint"
    folder: str
    parts: list[str]          # the part file of each partition

    def _params(self, needed: set[int], outputs: dict[int, list]) -> dict:
        return {"parts": {i: self.parts[i] for i in needed}}

    def compute(self, split: int, task: Any) -> Iterator[Any]:
        from gopark.io import checkpoint
        return checkpoint.read_partition(self.parts[split])

    @classmethod
    def _build(cls, params: dict, parents: list[RDD], n: int) -> RDD:
        node = _bare(cls, n)
        node.parts = params["parts"]
        return node


def save_checkpoints(ctx: Any, rdd: RDD, run: Callable[[RDD, list], list]) -> None:
    """After a job on ``rdd``: save the RDDs of its lineage that ``checkpoint()`` marked (not those below
    one of them, whose lineage goes) with a job each (``run(rdd, action)``), and turn each into a
    :class:`CheckpointRDD`, in place: every RDD made from it reads its files from then on."""
    if not ctx._checkpoints_due:
        return
    marked: list[RDD] = []
    seen: set[int] = set()
    stack = [rdd]
    while stack:
        r = stack.pop()
        if r.id in seen or isinstance(r, CheckpointRDD):
            continue
        seen.add(r.id)
        if r._checkpoint_to is not None:
            marked.append(r)
            continue
        stack.extend(d.rdd if isinstance(d, ShuffleDependency) else d for d in r._deps())
    for r in marked:
        folder = r._checkpoint_to
        parts = run(r, ["checkpoint", folder])
        r._unsaved.detach()                 # saved: its folder stays (as Spark's)
        kept = {k: v for k, v in r.__dict__.items()
                if k in ("ctx", "id", "num_partitions", "partitioner", "is_cached", "site", "_name")}
        r.__dict__.clear()                  # its lineage: parents, splits, functions
        r.__dict__.update(kept, folder=folder, parts=parts, input_paths=(folder,))
        r.__class__ = CheckpointRDD
        ctx._checkpoints_due.discard(int(r.id))


_KINDS: dict[str, type[RDD]] = {c.kind: c for c in (ParallelCollection, TextFileRDD, PipedRDD, UnionRDD, CoalescedRDD,
                                                      CartesianRDD, ZippedRDD, ShuffledRDD, CoGroupedRDD,
                                                      CheckpointRDD, PartitionerAwareUnionRDD)}


def _bare(cls: type[RDD], n: int) -> Any:
    node = cls.__new__(cls)
    node.ctx = None
    node.num_partitions = n
    node.partitioner = None
    node.is_cached = False
    node.site = ""
    return node


# --- lineage as data ---------------------------------------------------------------

def lineage(rdd: RDD, across_shuffles: bool = True) -> Iterator[RDD]:
    """Each RDD of ``rdd``'s lineage once, ``rdd`` first; with ``across_shuffles`` False, only its narrow
    lineage (what the tasks of one stage compute)."""
    stack, seen = [rdd], set()
    while stack:
        r = stack.pop()
        if r.id in seen:
            continue
        seen.add(r.id)
        yield r
        for d in r._deps():
            if not isinstance(d, ShuffleDependency):
                stack.append(d)
            elif across_shuffles:
                stack.append(d.rdd)


def narrow_parents(rdd: RDD) -> list[RDD]:
    """The parents read without a shuffle."""
    return [d for d in rdd._deps() if isinstance(d, RDD)]


def lineage_to_wire(root: RDD, split: int, outputs: dict[int, list]) -> dict:
    """The narrow lineage under ``root`` that partition ``split`` needs, as data."""
    needed: dict[int, set[int]] = {}
    rdds: dict[int, RDD] = {}
    stack = [(root, split)]
    while stack:
        r, s = stack.pop()
        seen = needed.setdefault(int(r.id), set())
        if s in seen:
            continue
        seen.add(s)
        rdds[int(r.id)] = r
        stack.extend(r._parent_splits(s))
    nodes = {}
    for rid, r in rdds.items():
        nodes[rid] = {"k": r.kind, "n": r.num_partitions, "c": r.is_cached,
                      "p": [int(p.id) for p in r._wire_parents(needed[rid])], "a": r._params(needed[rid], outputs)}
    return {"root": int(root.id), "nodes": nodes}


def lineage_from_wire(wire: dict) -> RDD:
    """Rebuild on a worker the RDD nodes :func:`lineage_to_wire` described; returns the root."""
    nodes = wire["nodes"]
    built: dict[int, RDD] = {}
    stack: list[tuple[int, bool]] = [(wire["root"], False)]
    while stack:                 # parents before children, without recursion: lineages can be long
        rid, parents_built = stack.pop()
        if rid in built:
            continue
        spec = nodes[rid]
        if not parents_built:
            stack.append((rid, True))
            stack.extend((p, False) for p in spec["p"] if p in nodes and p not in built)
            continue
        parents = [built[p] if p in nodes else None for p in spec["p"]]   # None: not read by this task
        node = _KINDS[spec["k"]]._build(spec["a"], parents, spec["n"])
        node.id = rid
        node.is_cached = spec["c"]
        built[rid] = node
    return built[wire["root"]]
