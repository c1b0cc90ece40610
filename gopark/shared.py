"""Shared variables: broadcasts (read-only values) and accumulators (add-only sums).

Broadcast: the driver packs the value once into the Context's work folder;
a worker loads it the first time a task reads ``b.value`` and keeps it
(``_loaded``) while its driver wants it: every task carries its Context's
live broadcasts (:class:`BroadcastBook`), and before it runs, the worker drops
its copies of that Context's other broadcasts, and of those unpersisted since
they were loaded, as Spark's ContextCleaner and ``unpersist`` do
(:func:`task_broadcasts`): an iterative job that broadcasts a new value each
round does not grow its workers. A broadcast travels as ``[id, path, owner]``
(the owner: its Context's token), where the path is a URL on the driver's file
server in Mesos mode.

Accumulator: inside a task, ``add`` records into the task's own update table
(``task_updates``); the driver merges a task's table only when that task is the
first successful attempt of its partition, so a retried or speculative task
counts once. Module-level accumulators (``gopark.accumulator(..., name=...)``)
are found by name on workers, which import the module that made them.
"""
from __future__ import annotations

import contextlib
import operator
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from gopark import registry, serialize
from gopark.errors import SerializationError

_MISSING = object()
_BROADCAST_EXT, _ACCUMULATOR_EXT = 10, 11


# --- broadcast ------------------------------------------------------------------

class BroadcastBook:
    """A Context's broadcasts that its tasks may still read: ``live`` is ``{id: generation}`` (how many times
    each was unpersisted), ``owner`` a token of the Context. Every task carries both (:meth:`for_task`);
    a process running the task drops its copies of the owner's broadcasts that are not live, or that were
    loaded in an earlier generation (see :func:`task_broadcasts`)."""

    def __init__(self) -> None:
        self.owner = os.urandom(8).hex()
        self.live: dict[str, int] = {}
        self.handles: weakref.WeakSet[Broadcast] = weakref.WeakSet()    # the driver's, while the app has them
        self.stopped = False        # the Context stopped: its broadcasts' files are gone with its work folder

    def for_task(self) -> list:
        return [self.owner, dict(self.live)]     # one C-level copy: a handle's finalizer may run meanwhile

    def keep_values(self) -> None:
        """Before the Context's work folder goes: each handle the app still has keeps its packed copy from
        there, if it has not read its value yet (unpacked only if asked for): ``value`` goes on working
        after ``stop()`` (DPark's driver keeps the value); no task can read them any more."""
        self.stopped = True
        for b in list(self.handles):
            if not b.destroyed and b._value is _MISSING and b._file is not None:
                with contextlib.suppress(OSError), open(b._file, "rb") as f:
                    b._packed = f.read()


class Broadcast:
    """A read-only value shipped once to every worker; read it with ``.value``."""

    def __init__(self, bid: str, path: str, value: Any = _MISSING, file: str | None = None,
                 book: BroadcastBook | None = None, owner: str = "") -> None:
        self.id = bid
        self.path = path
        self._value = value
        self._file = file               # the driver's packed copy (the driver's handle only)
        self._book = book               # its Context's book (the driver's handle only)
        self.owner = book.owner if book is not None else owner
        self.holds: list[Broadcast] = []   # the driver's handles packed in its value (see handles_packed)
        self.destroyed = False
        self._packed: bytes | None = None    # the driver's packed copy, kept when its Context stopped

    @property
    def value(self) -> Any:
        """The broadcast value: in a task, the worker's copy (fetched once, then kept); ValueError once
        destroyed."""
        if self.destroyed:
            raise ValueError(f"{self!r} was destroyed: its value is gone")
        if self._value is _MISSING:
            if self._packed is not None:    # the driver's, after its Context stopped
                self._value, self._packed = serialize.unpackb(self._packed), None
            elif self._file is not None:    # the driver's: its own copy of what was packed (PySpark's)
                with open(self._file, "rb") as f:
                    self._value = serialize.unpackb(f.read())
            else:
                self._value = _load_broadcast(self.id, self.path, self.owner)
        return self._value

    def unpersist(self, blocking: bool = False) -> None:
        """Spark's: the workers drop their copies before their next task (a task that reads it again
        loads it again); the driver keeps the value. ``blocking`` (PySpark's) changes nothing: no task
        reads a dropped copy."""
        _in_driver_only(self, "unpersisted")
        _loaded.pop(self.id, None)
        if self._book is not None and self.id in self._book.live:
            self._book.live[self.id] += 1

    def destroy(self, blocking: bool = False) -> None:
        """Remove the value for good, as Spark's ``destroy``: the driver's packed copy and this process'
        copy, and the workers' copies before their next task; a function given it afterwards is refused
        at the call (SerializationError), and ``value`` is a ValueError. ``blocking``: as :meth:`unpersist`."""
        _in_driver_only(self, "destroyed")
        self.destroyed = True
        self._value, self._packed = _MISSING, None
        _loaded.pop(self.id, None)
        if self._book is not None:
            self._book.live.pop(self.id, None)
        if self._file is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._file)

    def __repr__(self) -> str:
        return f"Broadcast({self.id})"


def _in_driver_only(b: Broadcast, what: str) -> None:
    if in_task():
        raise RuntimeError(f"{b!r}: a broadcast can only be {what} in the driver (as PySpark's)")


_loaded: dict[str, tuple[str, int, Any]] = {}      # this process' copies: {id: (owner, generation, value)}
_load_lock = threading.Lock()


def new_broadcast(value: Any, folder: str, url: str | None = None, book: BroadcastBook | None = None) -> Broadcast:
    """Pack ``value`` into ``folder`` (SerializationError in the driver) and return its handle.

    ``url``: where ``folder`` is served to other machines; workers fetch the value from there.
    ``book``: the Context's (see the module's description): this one is live in it until it is destroyed
    or its handle is gone.
    """
    with handles_packed() as inner:
        data = serialize.packb_checked(value, "broadcast")
    bid = os.urandom(16).hex()
    path = os.path.join(folder, f"broadcast-{bid}")
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)
    if book is not None:
        book.live[bid] = 0
    # the value as packed now: the app changing its object afterwards changes neither the tasks' copies
    # nor the driver's (read back from the file when first asked for, as PySpark's)
    b = Broadcast(bid, f"{url}/{os.path.basename(path)}" if url else path, _MISSING, path, book)
    b.holds = inner          # broadcasts in its value: kept while it may be read
    if book is not None:
        book.handles.add(b)
    # with the driver's handle go the copy tasks load in this process (local mode), the workers', and the
    # file (Spark's ContextCleaner): an iterative job broadcasting each round does not fill the disk
    weakref.finalize(b, _forget, book, bid, path)
    return b


def _forget(book: BroadcastBook | None, bid: str, file: str) -> None:
    if book is not None:
        book.live.pop(bid, None)
    _loaded.pop(bid, None)
    with contextlib.suppress(OSError):
        os.unlink(file)


_packing = threading.local()


@contextlib.contextmanager
def handles_packed() -> Iterator[list[Broadcast]]:
    """Within this block, the driver's broadcast handles that are packed are listed in the yielded list:
    what keeps the packed data (parallelize's slices, a zero value, a broadcast's value) keeps them, so
    that their files are not removed with a handle the app dropped while the data may still be read."""
    with registry.temporarily(_packing, "handles", []) as handles:
        yield handles


def forget_broadcasts(ids: list[str]) -> None:
    """Drop this process' loaded copies of these broadcasts (their driver handle or Context is gone)."""
    for bid in ids:
        _loaded.pop(bid, None)


@contextlib.contextmanager
def task_broadcasts(carried: list | None) -> Iterator[None]:
    """Around a task that carries its Context's ``[owner, {id: generation}]`` (:meth:`BroadcastBook.for_task`):
    first drop this process' copies of that Context's broadcasts that are gone or were unpersisted since
    they were loaded (Spark's ContextCleaner and ``unpersist``: an iterative job broadcasting a new value
    each round does not grow its workers); a copy loaded within is of the task's generation. Other
    Contexts' copies (local mode runs several Contexts' tasks in one process) are left alone."""
    if carried is not None:
        owner, live = carried
        # a snapshot: unpersist, destroy and handles' finalizers of other threads drop entries meanwhile; a
        # copy (no allocation per entry, unlike list(items()), whose garbage collection may run a finalizer)
        for bid, (held_by, generation, _) in _loaded.copy().items():
            if held_by == owner and live.get(bid) != generation:
                _loaded.pop(bid, None)
    with registry.temporarily(_task_local, "broadcasts", carried):
        yield


def _load_broadcast(bid: str, path: str, owner: str) -> Any:
    carried = getattr(_task_local, "broadcasts", None)
    generation = carried[1].get(bid, 0) if carried is not None and carried[0] == owner else 0
    with _load_lock:
        held = _loaded.get(bid)
        if held is None:
            if path.startswith(("http://", "https://")):
                from gopark import http
                data = http.fetch(path)
            else:
                with open(path, "rb") as f:
                    data = f.read()
            held = _loaded[bid] = (owner, generation, serialize.unpackb(data))
        return held[2]


def _decode_broadcast(data: list) -> Broadcast:
    """A task's handle: its value is the packed one, loaded once per process, never the driver's
    own object (in local mode too: a task sees the same value, and changes the same copy, in every mode)."""
    bid, path, *owner = data        # (packed by a gopark before owners: [id, path])
    return Broadcast(bid, path, owner=owner[0] if owner else "")


def check_held(handles: list[Broadcast]) -> None:
    """SerializationError if one of these handles, packed into data earlier, was destroyed since (or its
    Context stopped): a task reading the data could not read it (see :func:`handles_packed`)."""
    for b in handles:
        _check_usable(b)


def _check_usable(b: Broadcast) -> None:
    if b.destroyed:
        raise SerializationError(f"{b!r} was destroyed (Broadcast.destroy): no task can use it any more")
    if b._book is not None and b._book.stopped:
        raise SerializationError(f"{b!r} belongs to a stopped Context: its tasks' copy went with it (its value "
                                 "is still read in the driver: broadcast that again, ctx.broadcast(b.value))")


def _encode_broadcast(b: Broadcast) -> list:
    _check_usable(b)
    handles = getattr(_packing, "handles", None)
    if handles is not None and b._book is not None:
        handles.append(b)
    return [b.id, b.path, b.owner]


serialize.register_ext(_BROADCAST_EXT, Broadcast, _encode_broadcast, _decode_broadcast)


# --- accumulators ---------------------------------------------------------------

_task_local = threading.local()


def in_task() -> bool:
    """This thread runs a task (its accumulator table is set, and a task does run: see
    :func:`forget_stale_task_state`)."""
    if getattr(_task_local, "updates", None) is None:
        return False
    forget_stale_task_state()
    return getattr(_task_local, "updates", None) is not None


def forget_stale_task_state() -> None:
    """Clear this thread's task state (its accumulator table, the broadcasts its task carried) when no
    task runs in it: a task that a signal's exception ended (Ctrl-C or SIGTERM in local mode) may have left
    it set, if it struck while the state was being restored; the driver's adds would go nowhere."""
    if not registry.in_task():
        _task_local.updates = None
        _task_local.broadcasts = None


@contextlib.contextmanager
def task_updates() -> Iterator[dict[str, Any]]:
    """Within this block (one task), accumulator adds go to the yielded table."""
    with registry.temporarily(_task_local, "updates", {}) as table:
        yield table


class Accumulator:
    """A value tasks add to and the driver reads: ``acc.add(x)``, ``acc += x``, ``acc.value``.

    ``merge`` (default ``+``) combines two values; it must be a registered
    function or an ``operator`` function so workers can use it.
    """

    def __init__(self, key: str, init: Any = 0, merge: Callable[[Any, Any], Any] | None = None,
                 merge_ref: list | None = None) -> None:
        self.key = key
        self._value = self._init = init
        self._merge_ref = merge_ref if merge_ref is not None else (
            registry.encode_func(merge, "accumulator(merge=...)") if merge is not None else ["o", "add"])
        self._merge = merge or (registry.decode_func(self._merge_ref) if merge_ref else operator.add)

    @property
    def value(self) -> Any:
        """The driver's value; a task may only add (it would see another value in each mode: Spark refuses too)."""
        self._not_in_task()
        return self._value

    @value.setter
    def value(self, v: Any) -> None:
        self._not_in_task()
        self._value = v

    def _not_in_task(self) -> None:
        if in_task():
            raise RuntimeError(f"{self!r:.200}: a task can only add to an accumulator; its value is read in the "
                               "driver, after an action")

    def add(self, x: Any) -> None:
        """Merge ``x`` into the value (``merge``, ``+`` by default): in a task, into that task's updates,
        which count once when the task succeeds; in the driver, at once."""
        table = getattr(_task_local, "updates", None)
        if table is None:
            self._value = self._merge(self._value, x)
        elif self.key in table:
            table[self.key] = self._merge(table[self.key], x)
        else:       # a copy: a merge that adds in place (PySpark's addInPlace) must not change a record or a
            #         broadcast's value it was given
            table[self.key] = x if type(x) in _IMMUTABLE else serialize.unpackb(
                serialize.packb_checked(x, "an accumulator's update"))

    def __iadd__(self, x: Any) -> Accumulator:
        self.add(x)
        return self

    @property
    def merge_ref(self) -> list:
        """The merge function, as data (how it travels)."""
        return self._merge_ref

    def merge_update(self, delta: Any) -> None:
        """Driver: fold one successful task's update into the value."""
        self._value = self._merge(self._value, delta)

    def __repr__(self) -> str:
        return f"Accumulator({self.key}, value={self._value!r})"


_IMMUTABLE = frozenset({int, float, bool, str, bytes, type(None)})

# key -> accumulator: named ones live as long as their module; a Context's (and a worker's proxy of one)
# as long as something holds it (the app, or an RDD's function a job runs): one the app let go is not kept
_accumulators: weakref.WeakValueDictionary[str, Accumulator] = weakref.WeakValueDictionary()
_named: dict[str, Accumulator] = {}
_made_in: dict[str, str] = {}     # the module that made each named accumulator


def new_accumulator(init: Any = 0, merge: Callable[[Any, Any], Any] | None = None) -> Accumulator:
    """A Context's accumulator (``ctx.accumulator``)."""
    serialize.packb_checked(init, "accumulator")
    acc = Accumulator("u:" + os.urandom(16).hex(), init, merge)
    _accumulators[acc.key] = acc
    return acc


def accumulator(init: Any = 0, merge: Callable[[Any, Any], Any] | None = None,
                name: str | None = None) -> Accumulator:
    """A module-level accumulator, found by ``name`` on workers (GoPark style).

    >>> hits = accumulator(0, name="doc.hits")
    >>> hits.add(2); hits.value
    2
    """
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"accumulator: name is a non-empty str, not {name!r:.100}")
    serialize.packb_checked(init, "accumulator")
    caller = sys._getframe(1)
    module = caller.f_globals.get("__name__", "__main__")       # the module that makes it, by its name
    if module == "__main__":
        module = registry.main_module_name() or module          # (as workers import the script)
    if name is None:
        name = f"{module}:{caller.f_lineno}"
    key = "n:" + name
    acc = Accumulator(key, init, merge)
    known = _named.get(key)
    if known is not None:
        # the same module run again (as __main__, then imported by its name) finds its accumulator;
        # another accumulator under the name (made by another module, or otherwise) is a mistake, as two
        # functions under one name are
        if key in _decoded:          # a worker decoded it from a task before its module made it here
            _made_in[key] = module
        elif repr(known._init) != repr(init) or known._merge_ref != acc._merge_ref or \
                _made_in.get(key, module) != module:
            raise ValueError(f"accumulator name {name!r} is taken by {known!r} (made with init={known._init!r} by "
                             f"module {_made_in.get(key, '?')}); give this one another name")
        return known
    _named[key] = acc
    _made_in[key] = module
    _accumulators[key] = acc
    return acc


def find_accumulator(key: str) -> Accumulator | None:
    """The accumulator a task's update names, in this process."""
    return _accumulators.get(key)


def _decode_accumulator(data: list) -> Accumulator:
    key, merge_ref = data
    acc = _accumulators.get(key)
    if acc is None:  # a worker: a proxy that only records this process' task updates
        acc = Accumulator(key, None, merge_ref=merge_ref)
        _accumulators[key] = acc
        if key.startswith("n:"):
            _named.setdefault(key, acc)
            _decoded.add(key)
    return acc


_decoded: set[str] = set()   # named accumulators a worker knew from a task first (made with init None)

serialize.register_ext(_ACCUMULATOR_EXT, Accumulator, lambda a: [a.key, a._merge_ref], _decode_accumulator)
