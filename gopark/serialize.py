"""msgpack with the types of SPEC section 3 kept: tuple, set, frozenset, bytes, big int.

msgpack has one array type, so a tuple, a set and a frozenset travel as an
array whose first item is a one-byte-free ext marker; ``_list_hook`` turns them
back on the way in. Integers beyond 64 bits travel as an ext holding their
two's complement bytes, little-endian (any size: no limit of decimal digits).
Broadcast and accumulator handles register their own ext codes
(``register_ext``) so they can ride inside a ``functools.partial``.

Anything else raises :class:`SerializationError` naming the type and the
operation (``what``) that tried to send it.
"""
from __future__ import annotations

import contextlib
import gc
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgpack
import msgpack.fallback

from gopark.errors import SerializationError

_TUPLE, _SET, _FROZENSET, _BIGINT = 1, 2, 3, 4


class _Marker:
    __slots__ = ("kind",)

    def __init__(self, kind: int) -> None:
        self.kind = kind


_MARKS = {code: _Marker(code) for code in (_TUPLE, _SET, _FROZENSET)}
_EXT_MARKS = {code: msgpack.ExtType(code, b"") for code in _MARKS}
_REBUILD = {_TUPLE: tuple, _SET: set, _FROZENSET: frozenset}

# code -> (class, encode(obj) -> data, decode(data) -> obj); filled by gopark.shared
_EXT_TYPES: dict[int, tuple[type, Callable[[Any], Any], Callable[[Any], Any]]] = {}
_EXT_BY_CLASS: dict[type, int] = {}


def register_ext(code: int, cls: type, encode: Callable[[Any], Any], decode: Callable[[Any], Any]) -> None:
    """Let objects of ``cls`` travel as ext ``code``: ``encode`` gives data, ``decode`` rebuilds."""
    _EXT_TYPES[code] = (cls, encode, decode)
    _EXT_BY_CLASS[cls] = code


_AS_BASE: dict[type, type] = {}


def register_as_base(cls: type, base: type) -> None:
    """Let objects of ``cls``, a subclass of the data type ``base``, travel as ``base`` (they come back as a
    ``base``: gopark's own int-like ids)."""
    _AS_BASE[cls] = base


def _default(obj: Any) -> Any:
    t = type(obj)
    if t is tuple:
        return [_EXT_MARKS[_TUPLE], *obj]
    if t is set:
        return [_EXT_MARKS[_SET], *obj]
    if t is frozenset:
        return [_EXT_MARKS[_FROZENSET], *obj]
    if t is int:              # beyond 64 bits (bool is msgpack's own)
        return msgpack.ExtType(_BIGINT, obj.to_bytes(obj.bit_length() // 8 + 1, "little", signed=True))
    if t in _AS_BASE:
        return _AS_BASE[t](obj)
    code = _EXT_BY_CLASS.get(t)
    if code is not None:
        return msgpack.ExtType(code, packb(_EXT_TYPES[code][1](obj), "a shared variable"))
    # a subclass of a data type (namedtuple, Counter, OrderedDict, IntEnum...) would not come back as
    # itself: refused, as any other type (SPEC section 3), with the base to convert it to
    raise TypeError(t)


def _ext_hook(code: int, data: bytes) -> Any:
    if code in _MARKS:
        return _MARKS[code]
    if code == _BIGINT:
        return int.from_bytes(data, "little", signed=True)
    ext = _EXT_TYPES.get(code)
    if ext is None:
        raise SerializationError(f"unknown msgpack ext type {code} in received data")
    return ext[2](unpackb(data))


def _list_hook(items: list) -> Any:
    if items:
        first = items[0]
        if type(first) is _Marker:
            return _REBUILD[first.kind](items[1:])
    return items


_DATA_TYPES = (dict, list, tuple, set, frozenset, str, bytes, int, float)


def _describe(exc: Exception) -> str:
    """The type that could not be packed, named, with the data type to convert it to if it subclasses one."""
    if isinstance(exc, UnicodeEncodeError):
        return f"str holding {exc.object[exc.start:exc.end]!r}, which is not Unicode (a lone surrogate)"
    arg = exc.args[0] if exc.args else None
    if isinstance(arg, str) and arg.startswith("recursion limit exceeded"):     # msgpack's
        return _TOO_DEEP
    if isinstance(arg, type):
        name = arg.__qualname__ if arg.__module__ == "builtins" else f"{arg.__module__}.{arg.__qualname__}"
        base = next((b for b in _DATA_TYPES if issubclass(arg, b)), None)
        return f"{name} (a subclass of {base.__name__}: convert it with {base.__name__}(...))" if base else name
    return str(exc)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No garbage collection while a large value is unpacked (msgpack's advice): each collection of the
    oldest generation, which the new containers trigger, walks every object the process holds (a driver
    holding an app's millions spends more in them than in unpacking). They run again afterwards."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def not_unicode(exc: UnicodeEncodeError, what: str) -> SerializationError:
    """The error of a str that UTF-8 cannot encode (a lone surrogate), found writing it out in ``what``: it
    is no gopark data (a record holding it would not be sent either)."""
    return SerializationError(f"cannot write a {_describe(exc)} in {what}: gopark data is Unicode text")


def packb(obj: Any, what: str = "sending data") -> bytes:
    """Pack ``obj``; a value that is not gopark data raises SerializationError."""
    try:
        return msgpack.packb(obj, default=_default, strict_types=True, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, SerializationError):
            raise
        raise SerializationError(
            f"cannot serialize a value of type {_describe(exc)} in {what}: gopark data is None, bool, "
            "int, float, str, bytes, list, tuple, dict, set and frozenset, nested") from None


_PLAIN = frozenset({int, float, str, bytes, bool, type(None)})


#: levels of lists, tuples, dicts and sets that msgpack packs (1024 since msgpack 1.1, 511 before), counting
#: those gopark packs a value in (a batch of records, a task's plan): a value the driver is given that goes
#: deeper is refused at once (one that contains itself would be walked for ever), one a task made fails it
_MAX_DEPTH = msgpack.fallback.DEFAULT_RECURSE_LIMIT
#: how deep a record, a broadcast value or a bound argument may nest, in every mode and operation: the
#: levels gopark adds (at most 24: a plan, a join's or a cogroup's tuples, a batch) come out of msgpack's
NEST_LIMIT = _MAX_DEPTH - 24
_TOO_DEEP = (f"list, tuple, dict or set nested too deep (data may nest {NEST_LIMIT} levels; msgpack packs "
             f"{_MAX_DEPTH}, counting those gopark adds): does it contain itself?")


def _reject_buffers(obj: Any, what: str) -> None:
    """msgpack packs bytearray and memoryview as bytes without asking: refuse them here; and a value
    nested deeper than msgpack packs (one that contains itself would be walked for ever)."""
    stack = [(obj, 0)]
    while stack:
        o, depth = stack.pop()
        t = type(o)
        if t in _PLAIN:
            continue
        if isinstance(o, (bytearray, memoryview)):
            raise SerializationError(f"cannot serialize a value of type {t.__name__} in {what}: "
                                     "use bytes (gopark data keeps its types, and bytes is the one for binary)")
        if isinstance(o, dict):
            if set(map(type, o)) <= _PLAIN and set(map(type, o.values())) <= _PLAIN:
                continue
            inside: Iterable[Any] = itertools.chain(o.keys(), o.values())
        elif isinstance(o, (list, tuple, set, frozenset)) and not set(map(type, o)) <= _PLAIN:
            inside = o
        else:
            continue
        if depth == _MAX_DEPTH - 1:       # (at depth 0: the value itself; its items are one level deeper)
            raise SerializationError(f"cannot serialize a value of type {_TOO_DEEP} in {what}")
        stack.extend((x, depth + 1) for x in inside)


_BUFFERS = frozenset({bytearray, memoryview})


def check_flat(items: Iterable[Any], what: str) -> None:
    """The cheap part of the check for records a task produced: buffers among ``items`` themselves.

    (msgpack would pass them off as bytes; a full walk of every record costs too much there.)
    """
    found = set(map(type, items)) & _BUFFERS
    if found:
        raise SerializationError(f"cannot serialize a value of type {found.pop().__name__} in {what}: "
                                 "use bytes (gopark data keeps its types, and bytes is the one for binary)")


def packb_checked(obj: Any, what: str) -> bytes:
    """:func:`packb` for a value given in the driver (``what`` names the call): every type checked."""
    _reject_buffers(obj, what)
    return packb(obj, what)


def unpackb(data: bytes) -> Any:
    """Unpack what :func:`packb` packed, with its types."""
    return msgpack.unpackb(data, ext_hook=_ext_hook, list_hook=_list_hook, raw=False,
                           strict_map_key=False, use_list=True)


class Packer:
    """A reusable packer for many records (one per thread: msgpack packers are not shared)."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._packer = msgpack.Packer(default=_default, strict_types=True, use_bin_type=True)

    def pack(self, obj: Any) -> bytes:
        try:
            return self._packer.pack(obj)
        except (TypeError, ValueError, OverflowError) as exc:
            self._packer.reset()
            if isinstance(exc, SerializationError):      # a value's own (a destroyed broadcast's)
                raise
            raise SerializationError(
                f"cannot serialize a value of type {_describe(exc)} in {self._what}: gopark data is None, "
                "bool, int, float, str, bytes, list, tuple, dict, set and frozenset, nested") from None


def _unpacker(f: Any = None) -> msgpack.Unpacker:
    """A streaming unpacker of what :func:`packb` packs, reading ``f`` (a binary file), or fed."""
    return msgpack.Unpacker(f, ext_hook=_ext_hook, list_hook=_list_hook, raw=False, strict_map_key=False,
                            use_list=True, max_buffer_size=2 ** 31 - 1)


def unpack_file(f: Any, what: str) -> Iterator[Any]:
    """Every object packed one after another in the binary file ``f`` (``what`` it holds), read a piece at a
    time, each unpacked with no garbage collection (a batch of records: its thousands of new containers
    would trigger a dozen young collections, a sixth of the time it takes); ValueError if the file ends
    inside one (cut short: msgpack would end there as if it were whole)."""
    unpacker = _unpacker(f)
    while True:
        with gc_paused():
            try:
                obj = unpacker.unpack()
            except msgpack.OutOfData:
                break
        yield obj
    try:
        unpacker.read_bytes(1)      # b"" at the end; refused in the middle of an object
    except ValueError:
        raise ValueError(f"{what} is cut short (its {f.tell()} bytes end inside an object): was it damaged?") from None


def unpack_stream(chunks: Iterable[bytes]) -> Iterator[Any]:
    """Every object of a stream of packed objects fed as byte chunks."""
    unpacker = _unpacker()
    for chunk in chunks:
        unpacker.feed(chunk)
        yield from unpacker
