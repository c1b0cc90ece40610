"""Functions by name: ``register_func`` and the function references that travel.

Code never travels. A function given to an RDD method becomes a *function
reference*, plain data that names it:

- ``["r", name, module]``: a registered function; ``module`` is imported on a
  worker that does not know ``name`` yet (the app's main script under its own
  name, never as ``__main__``);
- ``["p", ref, args, kwargs]``: a ``functools.partial`` of a reference, its bound
  arguments being data, broadcasts or accumulators;
- ``["b", name]``, ``["o", name]``, ``["m", type, method]``: a builtin, an
  ``operator`` function, a method of a builtin type (``str.split``);
- ``["ig", items]``, ``["ag", names]``, ``["mc", name, args, kwargs]``: what
  ``operator.itemgetter``, ``attrgetter`` and ``methodcaller`` make.

A worker rebuilds the callable from its own registry (``decode_func``), so it
can only run what its own program registered.
"""
from __future__ import annotations

import builtins
import contextlib
import functools
import importlib
import importlib.machinery
import importlib.util
import keyword
import operator
import os
import re
import sys
import threading
import types
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar, overload

from gopark import serialize
from gopark.errors import FunctionNotSendable

F = TypeVar("F", bound=Callable[..., Any])

_registry: dict[str, Callable[..., Any]] = {}
_code_names: dict[types.CodeType, str] = {}
_import_lock = threading.RLock()
_importing: list[str] = []                # app modules this process is importing for their functions, innermost last
_stopped_at_context: set[str] = set()     # of them, those whose import ended at their driver code (a Context)
_task_entries: set[types.CodeType] = set()   # the code of the function a task runs in (see in_task)
# the driver: the line of its script's top level, outside `if __name__ == "__main__":`, that made a Context,
# and the functions registered below it (which a worker, importing the script up to that line, never sees)
_driver_code_line: list[int] = []
_below_driver_code: set[str] = set()


class DriverCodeReached(BaseException):
    """A Context made while a worker imports the app (driver code outside ``if __name__ == "__main__":``):
    ends the import there, keeping the functions registered above it. Never seen by the app."""


@contextlib.contextmanager
def temporarily(owner: Any, name: str, value: Any) -> Iterator[Any]:
    """``owner.name`` is ``value`` inside the block (yielded), and what it was before (None if unset) after:
    the per-thread state a task sets (a ``threading.local``), or ``sys.argv``."""
    previous = getattr(owner, name, None)
    setattr(owner, name, value)
    try:
        yield value
    finally:
        setattr(owner, name, previous)


def task_entry(fn: F) -> F:
    """Mark ``fn`` as the function every task runs in (``gopark.task.run_task``), for :func:`in_task`."""
    _task_entries.add(fn.__code__)
    return fn


def in_task() -> bool:
    """A task runs in this thread: a frame of :func:`task_entry`'s function is on its stack. (Not a flag
    set around the task: an exception a signal handler raises, Ctrl-C or SIGTERM in local mode, can strike
    while such a flag is being restored, and leave it set for good.)"""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code in _task_entries:
            return True
        frame = frame.f_back
    return False


def check_may_start_context() -> None:
    """Called by ``Context()``: raises where a Context must not start.

    While a worker imports the app, :class:`DriverCodeReached` ends that import
    (the worker needs only the functions registered above the driver code, and
    would otherwise run the whole app, starting workers of its own). Inside a
    task, in every mode, a RuntimeError: a Context belongs to the driver.
    """
    if _importing:
        raise DriverCodeReached(_importing[-1])
    if in_task():
        raise RuntimeError("a Context cannot be made inside a task: only the driver runs jobs")
    if not _driver_code_line and (line := _unguarded_top_level_line()) is not None:
        _driver_code_line.append(line)


def _unguarded_top_level_line() -> int | None:
    """The line of the running script's top-level code that is calling into gopark now, when it is outside
    ``if __name__ == "__main__":`` and the script's source can be read (not a frozen app's, nor python -c)."""
    frame: Any = sys._getframe(1)
    while frame is not None and not (frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") ==
                                     "__main__"):      # through the app's helpers (ctx = make()) and subclasses
        frame = frame.f_back
    path = main_module_file()
    if frame is None or not path or not os.path.isfile(path) or _in_main_block(path, frame.f_lineno):
        return None
    return frame.f_lineno

# The driver's main script, which workers import under MAIN_NAME (never as __main__).
MAIN_FILE_ENV = "GOPARK_MAIN_FILE"
MAIN_NAME_ENV = "GOPARK_MAIN_NAME"
#: a JSON file of the driver's arguments: ``argv``, its ``sys.argv`` once its Context took gopark's options
#: out (a worker's own ``sys.argv``), and ``import_argv``, what it was before, when the app's modules were
#: imported (a worker imports them with it, so their module-level code sees what it saw in the driver)
ARGV_FILE_ENV = "GOPARK_ARGV_FILE"
#: a worker's environment: the app's own PYTHONPATH ("=value", "" for none), for the commands its tasks start
#: (``ops.command_environment``: the worker's PYTHONPATH is the driver's sys.path)
USER_PYTHONPATH_ENV = "GOPARK_USER_PYTHONPATH"

#: this process's ``sys.argv`` and folder when gopark was first imported: what the app's module-level code
#: saw (an app may change ``sys.argv``, or change folder, before it makes its Context)
ARGV_AT_IMPORT = list(sys.argv)
try:
    FOLDER_AT_IMPORT: str | None = os.getcwd()
except OSError:        # the folder was removed
    FOLDER_AT_IMPORT = None


def argv_strings(argv: list) -> list[str]:
    """``argv`` as strings (an app may put a ``pathlib.Path`` in ``sys.argv``)."""
    return [a if isinstance(a, str) else str(a) for a in argv]


def main_module_name() -> str | None:
    """The name under which the running app's ``__main__`` is importable elsewhere."""
    if os.environ.get(MAIN_NAME_ENV):
        return os.environ[MAIN_NAME_ENV]
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return spec.name.removesuffix(".__main__")
    path = _main_file(main)
    if path:
        return script_module_name(path)
    return None


def script_module_name(script: str) -> str:
    """The module name a script's functions are registered under (and workers import it by): its file's,
    or, where that is no module name (``word-count.py``, ``app.v2.py``), one made of it (``word_count``,
    ``app_v2``): the same with ``python app.py`` as in the binary ``gopark build`` makes of it."""
    stem = os.path.splitext(os.path.basename(script))[0]
    if stem.isidentifier() and not keyword.iskeyword(stem):
        return stem
    name = re.sub(r"\W", "_", stem)
    return name if name.isidentifier() and not keyword.iskeyword(name) else f"app_{name}"


def _main_file(main: Any) -> str | None:
    """The script ``__main__`` was run from; None for an interactive session, ``python -c``, or a script
    piped to ``python -`` (whose ``__file__`` is ``<stdin>``: no file another process could import)."""
    path = getattr(main, "__file__", None)
    return None if not path or (path.startswith("<") and path.endswith(">")) else path


_TEST_RUNNERS = ("pytest", "py.test", "unittest", "nose2")


def main_is_a_test_runner() -> bool:
    """The running ``__main__`` is pytest's, unittest's or nose2's (not an app's script)."""
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None) or ""
    spec_name = getattr(getattr(main, "__spec__", None), "name", None) or ""
    return any(n.split(".")[0] in _TEST_RUNNERS for n in (os.path.basename(main_file), spec_name) if n)


def main_module_file() -> str | None:
    """The file of the running app's main script, if it has one."""
    if os.environ.get(MAIN_FILE_ENV):
        return os.environ[MAIN_FILE_ENV]
    path = _main_file(sys.modules.get("__main__"))
    return os.path.abspath(path) if path else None


def _module_of(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or "__main__"
    if module == "__main__":
        return main_module_name() or "__main__"
    return module


def _same_function(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    """The same source function, e.g. a script run as __main__ and imported as a module."""
    if a is b:
        return True
    ca, cb = getattr(a, "__code__", None), getattr(b, "__code__", None)
    return (ca is not None and cb is not None and ca.co_filename == cb.co_filename
            and ca.co_firstlineno == cb.co_firstlineno
            and getattr(a, "__qualname__", None) == getattr(b, "__qualname__", None))


def _register(fn: F, name: str | None) -> F:
    if not callable(fn) or not hasattr(fn, "__code__"):
        raise TypeError(f"register_func takes a module-level Python function, not {type(fn).__name__}")
    if fn.__name__ == "<lambda>" or "<locals>" in fn.__qualname__:
        raise TypeError(f"register_func takes a module-level function; {fn.__qualname__!r} is a "
                        "lambda or is defined inside another function")
    key = name or f"{_module_of(fn)}.{fn.__qualname__}"
    old = _registry.get(key)
    if old is not None and not _same_function(old, fn):
        raise ValueError(f"two different functions are registered under the name {key!r}: "
                         f"{_where(old)} and {_where(fn)}")
    line = _registering_in_main_block(first=getattr(fn, "__gopark_name__", None) is None)
    if line is not None:
        raise TypeError(f"register_func: {key!r} is registered inside `if __name__ == \"__main__\":` (line {line} "
                        f"of {os.path.basename(main_module_file() or '')}, or code it calls): a worker imports the "
                        "script without running that block, so it would not know the function; register it at "
                        "module level")
    _registry[key] = fn
    if _driver_code_line and getattr(fn, "__module__", None) == "__main__":
        _below_driver_code.add(key)
    first = getattr(fn, "__gopark_name__", None)
    if first is None or _registry.get(first) is not fn:
        # a second name is an alias: the function travels under its first, which workers know too (the
        # second may be given in driver code alone)
        _code_names[fn.__code__] = key
        fn.__gopark_name__ = key  # type: ignore[attr-defined]
    return fn


def _registering_in_main_block(first: bool) -> int | None:
    """The line of the running script's ``if __name__ == "__main__":`` block that is registering a function
    (``@register_func`` or ``register_func(f)`` there), if that is where the registration comes from; also
    through the functions that line calls (``main()`` registering a function), when the registration is
    the function's ``first`` (a later one is an alias, see :func:`_register`)."""
    frame: Any = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    called = False
    while frame is not None and frame.f_code.co_name != "<module>":      # the top-level code that runs now
        frame, called = frame.f_back, True
    # through calls, a first registration (of the script's function, or of a module's the script imports:
    # workers import both without running the main block), unless that block is a test runner's, whose
    # tests register as they run (local mode takes them)
    if frame is None or frame.f_globals.get("__name__") != "__main__" or \
            (called and (not first or main_is_a_test_runner())):
        return None
    path = main_module_file()
    if not path:
        return None
    import linecache
    if not linecache.getline(path, frame.f_lineno)[:1].isspace():    # at the top level: not in a block
        return None
    return frame.f_lineno if _in_main_block(path, frame.f_lineno) else None


def _in_main_block(path: str, line: int) -> bool:
    """``line`` of the script ``path`` is inside one of its ``if __name__ == "__main__":`` blocks."""
    return any(start <= line <= end for start, end in _main_blocks(path))


@functools.lru_cache(maxsize=8)
def _main_blocks(path: str) -> list[tuple[int, int]]:
    """(first line, last line) of each ``if __name__ == "__main__":`` block of a script; none if unreadable."""
    import ast
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return []
    return [(node.lineno, node.end_lineno or node.lineno) for node in _main_block_nodes(tree)]


def _main_block_nodes(tree: Any) -> list[Any]:
    """The ``if __name__ == "__main__":`` statements of a parsed script's top level."""
    import ast
    return [node for node in tree.body if isinstance(node, ast.If) and _is_main_test(node.test)]


def registrations_in_main_block(tree: Any) -> list[int]:
    """The lines where a script's parsed source (``tree``) registers a function inside its
    ``if __name__ == "__main__":`` blocks (``@register_func``, ``@gopark.register_func(name=...)``,
    ``register_func(f)``): what :func:`_register` refuses as it runs, found without running it (``gopark
    build``: a frozen app holds no source to look at)."""
    import ast

    def is_register(node: Any) -> bool:
        node = node.func if isinstance(node, ast.Call) else node
        return (isinstance(node, ast.Name) and node.id == "register_func") or (
            isinstance(node, ast.Attribute) and node.attr == "register_func")

    lines = []
    for block in _main_block_nodes(tree):
        for node in ast.walk(block):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines += [d.lineno for d in node.decorator_list if is_register(d)]
            elif isinstance(node, ast.Call) and is_register(node.func) and node.args:
                lines.append(node.lineno)
    return sorted(lines)


def _where(fn: Callable[..., Any]) -> str:
    code = getattr(fn, "__code__", None)
    return f"{fn.__qualname__} ({code.co_filename}:{code.co_firstlineno})" if code else repr(fn)


@overload
def register_func(fn: F) -> F: ...
@overload
def register_func(fn: None = None, *, name: str | None = None) -> Callable[[F], F]: ...


def register_func(fn: Any = None, *, name: str | None = None) -> Any:
    """Register a module-level function by name so workers can find it.

    ``@register_func``, ``@register_func(name="...")`` or ``register_func(fn)``;
    returns the function unchanged.

    >>> @register_func
    ... def double(x):
    ...     return 2 * x
    >>> double(2)
    4
    """
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"register_func: name is a non-empty str, not {name!r:.100}")
    if fn is None:
        return lambda f: _register(f, name)
    if isinstance(fn, str):
        raise TypeError("use @register_func(name=...) to give a function a name")
    return _register(fn, name)


def registered_name(code: types.CodeType) -> str | None:
    """The registered name of the function whose code object this is."""
    return _code_names.get(code)


# --- references ---------------------------------------------------------------

def _builtin_type(name: str) -> type | None:
    """The builtin class called ``name`` (``int``, ``range``, ``reversed``, ``NoneType``...), if any."""
    if name == "NoneType":
        return type(None)
    t = getattr(builtins, name, None)
    return t if isinstance(t, type) else None


def _not_allowed(fn: Any, what: str) -> FunctionNotSendable:
    if isinstance(fn, types.BuiltinFunctionType) and getattr(fn, "__self__", None) is not None \
            and isinstance(fn.__self__, types.ModuleType):       # math.sqrt, zlib.crc32...
        name = f"{fn.__self__.__name__}.{fn.__name__}"
        return FunctionNotSendable(f"{what} got the C function {name}, which gopark cannot send by name (only "
                                   f"the builtins and the operator module's travel so): call it from a registered "
                                   f"function, e.g. @register_func def {fn.__name__}(x): return {name}(x)")
    kind = "a lambda" if getattr(fn, "__name__", "") == "<lambda>" else (
        f"the class {getattr(fn, '__qualname__', '')!r}" if isinstance(fn, type) else
        "a closure" if "<locals>" in getattr(fn, "__qualname__", "") else
        "a bound method" if isinstance(fn, types.MethodType) else
        f"the bound method {type(fn.__self__).__name__}.{fn.__name__} of an object"
        if isinstance(fn, (types.BuiltinMethodType, types.MethodWrapperType)) and fn.__self__ is not None else
        f"an unregistered function {getattr(fn, '__qualname__', '')!r}" if isinstance(fn, types.FunctionType)
        else "None" if fn is None else _a(type(fn).__name__))
    return FunctionNotSendable(f"{what} got {kind}: gopark sends functions by name, so pass a module-level "
                               "function decorated with @register_func (or a functools.partial of one)")


def worker_path() -> list[str]:
    """The ``sys.path`` a worker process gets: the driver's, a relative entry ('' for ``python -c``) taken
    in the folder the driver was in when it imported the app's modules."""
    return list(dict.fromkeys(os.path.abspath(os.path.join(FOLDER_AT_IMPORT or os.getcwd(), p)) for p in sys.path))


def take_worker_path(path: Iterable[str]) -> None:
    """A worker: the entries of the driver's :func:`worker_path` that its ``sys.path`` lacks, after its own
    (a frozen worker's bundle first)."""
    sys.path.extend(p for p in path if p and p not in sys.path)


_found_modules: set[tuple[str, tuple[str, ...]]] = set()    # (top-level module, path) found: found again


def check_importable(ref: list, what: str) -> None:
    """TypeError, in the driver, if a worker process could not import the module of a registered function
    ``ref`` names (``["r", name, module]``, or a partial of one) by its name, with :func:`worker_path` (as
    :func:`_import_module_for` does): a plugin loaded by hand (``importlib.util.spec_from_file_location``)
    from a folder that is not on ``sys.path``, or an interactive session's ``__main__``, would fail every task."""
    while ref[0] == "p":
        ref = ref[1]
    if ref[0] == "r" and ref[1] in _below_driver_code:
        raise FunctionNotSendable(
            f"{what} got {ref[1]!r}, registered below the driver code at line {_driver_code_line[0]} of "
            f"{os.path.basename(main_module_file() or '')} (a Context made outside `if __name__ == \"__main__\":`)"
            ": a worker imports the script up to there only, so it would not know the function; define the "
            "functions above it, or put the driver code under that `if`")
    if ref[0] == "r" and ref[2] == "__main__" and main_module_name() is None:
        raise FunctionNotSendable(f"{what} got {ref[1]!r}, registered in an interactive session (python -c, a "
                                  "script piped to python -, a notebook), which worker processes cannot import: use "
                                  "local mode (-m local, or Context('local')), or move it into a module or a script "
                                  "file")
    if ref[0] != "r" or _importable(ref[2], worker_path()):
        return
    fn = _registry.get(ref[1])
    where = getattr(getattr(fn, "__code__", None), "co_filename", "?")
    raise FunctionNotSendable(f"{what} got {ref[1]!r}, whose module {ref[2]!r} (from {where!r}) is not found by "
                              "its name on sys.path: a worker process imports the module by name and would not "
                              "find it; put its folder on sys.path (PYTHONPATH) and import it by name")


def _importable(module: str, path: list[str]) -> bool:
    top = module.partition(".")[0]
    key = (top, tuple(path))
    if key in _found_modules or module in (main_module_name(), "__main__") or top in sys.builtin_module_names:
        return True
    for finder in sys.meta_path:        # as the import system looks for it, without taking what is imported
        if finder is importlib.machinery.PathFinder:
            found = importlib.machinery.PathFinder.find_spec(top, path) is not None
        elif getattr(finder, "find_spec", None) is None:
            return True                 # a finder of the old protocol: it cannot be asked (nor refused)
        else:
            try:
                found = finder.find_spec(top, None) is not None
            except Exception:  # noqa: BLE001 (a finder of the app's that fails on a name it was not made for)
                found = False
        if found:
            _found_modules.add(key)
            return True
    return False


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _encode(fn: Any, what: str) -> list:
    if isinstance(fn, functools.partial):
        return ["p", _encode(fn.func, what), list(fn.args), dict(fn.keywords)]
    if isinstance(fn, types.FunctionType):
        name = getattr(fn, "__gopark_name__", None)
        if name is None or not _same_function(_registry.get(name), fn):   # e.g. __main__'s copy of the app
            raise _not_allowed(fn, what)
        return ["r", name, _module_of(fn)]
    if isinstance(fn, types.BuiltinFunctionType) and getattr(builtins, fn.__name__, None) is fn:
        return ["b", fn.__name__]
    if isinstance(fn, type) and _builtin_type(fn.__name__) is fn:     # int, range, reversed, zip...
        return ["b", fn.__name__]
    name = getattr(fn, "__name__", None)
    if isinstance(name, str) and name and getattr(operator, name, None) is fn:
        return ["o", name]
    if isinstance(fn, (types.MethodDescriptorType, types.WrapperDescriptorType,
                       types.ClassMethodDescriptorType)):
        owner = fn.__objclass__
        if _builtin_type(owner.__name__) is owner:                   # str.split, dict.items...
            return ["m", owner.__name__, fn.__name__]
    if isinstance(fn, (operator.itemgetter, operator.attrgetter, operator.methodcaller)):
        ctor, args = fn.__reduce__()[:2]
        if isinstance(fn, operator.itemgetter):
            return ["ig", list(args)]
        if isinstance(fn, operator.attrgetter):
            return ["ag", list(args)]
        if isinstance(ctor, functools.partial):  # methodcaller with keywords
            return ["mc", ctor.args[0], list(args), dict(ctor.keywords)]
        return ["mc", args[0], list(args[1:]), {}]
    raise _not_allowed(fn, what)


def encode_func(fn: Any, what: str) -> list:
    """The reference of ``fn`` as data; TypeError for anything that cannot travel by name.

    ``what`` names the call that received ``fn`` (e.g. ``"RDD.map"``) for the error.
    """
    ref = _encode(fn, what)
    serialize.packb_checked(ref, f"the arguments bound to the function given to {what}")  # data check, in the driver
    return ref


@functools.lru_cache(maxsize=1)
def _driver_argvs(path: str) -> dict[str, list[str]]:
    import json  # only workers read it
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def driver_argv(which: str) -> list[str] | None:
    """The driver's ``argv`` or ``import_argv`` (see :data:`ARGV_FILE_ENV`), in a worker; None elsewhere."""
    path = os.environ.get(ARGV_FILE_ENV)
    return list(_driver_argvs(path)[which]) if path else None


@contextlib.contextmanager
def _argv(argv: list[str] | None) -> Iterator[None]:
    """``sys.argv`` is ``argv`` (if given) inside the block."""
    if argv is None:
        yield
        return
    with temporarily(sys, "argv", argv):
        yield


def _import_module_for(module: str) -> None:
    """Import the app's ``module`` (its main script under its own name, never as ``__main__``) for the
    functions it registers. Its driver code, if not under ``if __name__ == "__main__":``, ends the import
    where it makes a Context (:class:`DriverCodeReached`): the module stays, as far as it ran."""
    # the arguments its module-level code saw in the driver, for its package's too
    with _import_lock, _argv(driver_argv("import_argv")):
        if module in sys.modules:
            return
        parent, _, child = module.rpartition(".")
        main_file = main_module_file()
        if module == main_module_name() and main_file and os.path.isfile(main_file):
            spec = importlib.util.spec_from_file_location(module, main_file)
        else:
            if parent:
                importlib.import_module(parent)
                if module in sys.modules:       # the package imported it
                    return
            spec = importlib.util.find_spec(module)
        if spec is None or spec.loader is None:
            raise ModuleNotFoundError(f"no module named {module!r}", name=module)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[module] = mod
        _importing.append(module)
        try:
            spec.loader.exec_module(mod)
        except DriverCodeReached:
            _stopped_at_context.add(module)
        except BaseException:
            sys.modules.pop(module, None)
            raise
        finally:
            _importing.pop()
        if parent:
            setattr(sys.modules[parent], child, mod)


def source_lines(name: str) -> str | None:
    """Where the body of the function registered as ``name`` is, as a traceback names a place:
    ``File "app.py", line 7`` (``lines 7-9``); None if no Python function is registered so."""
    code = getattr(_registry.get(name), "__code__", None)
    if code is None:
        return None
    body = sorted({line for _, _, line in list(code.co_lines())[1:] if line is not None}) or [code.co_firstlineno]
    return f'File "{code.co_filename}", ' + (f"line {body[0]}" if len(body) == 1 else f"lines {body[0]}-{body[-1]}")


def lookup(name: str, module: str | None = None) -> Callable[..., Any]:
    """The function registered as ``name``, importing ``module`` first if needed."""
    fn = _registry.get(name)
    if fn is None and module == "__main__":
        raise LookupError(f"{name!r} was registered in an interactive session (no script file), which other "
                          "processes cannot import: use local mode (-m local, or Context('local')), "
                          "or move it into a module")
    if fn is None and module:
        _import_module_for(module)
        fn = _registry.get(name)
    if fn is None and module in _stopped_at_context:
        raise LookupError(f"{name!r} is registered below the driver code of {module!r}, which is not under "
                          "`if __name__ == \"__main__\":`; a worker imports the app up to its Context only: "
                          "define the functions above it, or put the driver code under that `if`")
    if fn is None:
        raise LookupError(f"no function is registered as {name!r} in this program "
                          f"(module {module!r} was imported and did not register it)")
    return fn


def decode_func(ref: list) -> Callable[..., Any]:
    """The callable a reference names, from this process' own registry."""
    tag = ref[0]
    if tag == "r":
        return lookup(ref[1], ref[2])
    if tag == "p":
        return _bind(decode_func(ref[1]), ref[2], ref[3])
    if tag == "b":
        return getattr(builtins, ref[1])
    if tag == "o":
        return getattr(operator, ref[1])
    if tag == "m":
        return getattr(_builtin_type(ref[1]), ref[2])
    if tag == "ig":
        return operator.itemgetter(*ref[1])
    if tag == "ag":
        return operator.attrgetter(*ref[1])
    if tag == "mc":
        return operator.methodcaller(ref[1], *ref[2], **ref[3])
    raise ValueError(f"unknown function reference {ref!r}")


_TAGS = {"r", "p", "b", "o", "m", "ig", "ag", "mc"}
#: the names of gopark's own registered functions start with this (``gopark.with_none``...)
OWN_PREFIX = "gopark."


_CO_VARKEYWORDS = 0x08    # inspect.CO_VARKEYWORDS, without importing inspect in every worker


def _bind(func: Callable[..., Any], args: list, kwargs: dict) -> Callable[..., Any]:
    """``partial(func, *args, **kwargs)``, made cheap to call where it can be.

    A partial with keywords builds a dict at every call (~0.25 µs, as much as
    the rest of a word count's map step). For a plain function whose bound
    keywords can be its parameters' defaults, the same call is a copy of the
    function with those defaults (only calls that are errors for the partial,
    such as passing the bound parameter again by position, behave otherwise).
    """
    bound = _with_defaults(func, len(args), kwargs) if kwargs else None
    if bound is None:
        return functools.partial(func, *args, **kwargs)
    return functools.partial(bound, *args) if args else bound


def _with_defaults(func: Any, n_args: int, kwargs: dict) -> Callable[..., Any] | None:
    if type(func) is not types.FunctionType:
        return None
    code = func.__code__
    if code.co_flags & _CO_VARKEYWORDS:
        return None
    npos = code.co_argcount
    names = code.co_varnames[:npos]
    kwonly = code.co_varnames[npos:npos + code.co_kwonlyargcount]
    defaults = func.__defaults__ or ()
    values = dict(zip(names[npos - len(defaults):], defaults))
    kwdefaults = dict(func.__kwdefaults__ or {})
    settable = names[max(code.co_posonlyargcount, n_args):]
    for name, value in kwargs.items():
        if name in kwonly:
            kwdefaults[name] = value
        elif name in settable:
            values[name] = value
        else:
            return None
    first = npos               # defaults cover names[first:], which must all have a value
    while first > 0 and names[first - 1] in values:
        first -= 1
    if any(name in names and names.index(name) < first for name in kwargs):
        return None
    bound = types.FunctionType(code, func.__globals__, func.__name__,
                               tuple(values[n] for n in names[first:]), func.__closure__)
    bound.__kwdefaults__ = kwdefaults or None
    # not its __dict__ (its registered name): encoding this copy must not pass for the bare function
    bound.__qualname__, bound.__module__, bound.__doc__ = func.__qualname__, func.__module__, func.__doc__
    return bound


def func_label(ref: Any) -> str | None:
    """A short human name for a reference (the registered name, or the builtin's); None for other data."""
    if not isinstance(ref, list) or not ref or ref[0] not in _TAGS:
        return None
    tag = ref[0]
    if tag == "r":
        return ref[1]
    if tag == "p":
        return func_label(ref[1])
    if tag in ("b", "o"):
        return f"{'operator.' if tag == 'o' else ''}{ref[1]}"
    if tag == "m":
        return f"{ref[1]}.{ref[2]}"
    return {"ig": "operator.itemgetter", "ag": "operator.attrgetter", "mc": "operator.methodcaller"}[tag]


class MainBlockGlobalWarning(UserWarning):
    """A registered function reads a global that the main script sets only in its driver code."""


def _global_reads(fn: types.FunctionType) -> set[str]:
    """The globals ``fn`` reads (LOAD_GLOBAL, in its code and the code nested in it), and those read by the
    functions of its module that it calls by a global name, and so on."""
    import dis
    names: set[str] = set()
    seen: set[types.CodeType] = set()
    todo = [fn.__code__]
    module_globals = fn.__globals__
    while todo:
        code = todo.pop()
        if code in seen:
            continue
        seen.add(code)
        todo.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
        for ins in dis.get_instructions(code):
            if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME") and isinstance(ins.argval, str):
                names.add(ins.argval)
                called = module_globals.get(ins.argval)
                if isinstance(called, types.FunctionType) and called.__globals__ is module_globals:
                    todo.append(called.__code__)
    return names


def _set_in_driver_code(source: str) -> tuple[dict[str, int], set[str]]:
    """({name: line} of the globals a script binds in its driver code, the names it binds elsewhere at
    module level). Driver code: the body of ``if __name__ == "__main__":``, and functions' assignments to
    names they declare ``global``."""
    import ast
    tree = ast.parse(source)

    def bound(nodes: list[Any], into: dict[str, int]) -> None:
        for node in nodes:
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    into.setdefault(sub.id, sub.lineno)
                elif isinstance(sub, (ast.Import, ast.ImportFrom)):
                    for alias in sub.names:
                        into.setdefault((alias.asname or alias.name).split(".")[0], sub.lineno)
                elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    into.setdefault(sub.name, sub.lineno)

    def called(nodes: list[Any]) -> set[str]:
        return {c.func.id for n in nodes for c in ast.walk(n)
                if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}

    driver: dict[str, int] = {}
    top: dict[str, int] = {}
    main_blocks = [node for node in tree.body if isinstance(node, ast.If) and _is_main_test(node.test)]
    for node in main_blocks:
        bound(node.body, driver)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            top.setdefault(node.name, node.lineno)
        elif node not in main_blocks:
            bound([node], top)
    # a function's ``global`` stores are driver code when only the main block calls it (not the module's
    # own top level, nor a task: a registered function's lazy set-up runs on workers too)
    defs = (ast.FunctionDef, ast.AsyncFunctionDef)
    drivers_only = (called([stmt for n in main_blocks for stmt in n.body])
                    - called([n for n in tree.body if n not in main_blocks and not isinstance(n, defs)]))
    for node in tree.body:
        if isinstance(node, defs) and node.name in drivers_only:
            declared = {n for g in ast.walk(node) if isinstance(g, ast.Global) for n in g.names}
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store) and sub.id in declared:
                    driver.setdefault(sub.id, sub.lineno)
    return driver, set(top)


def _is_main_test(test: Any) -> bool:
    import ast
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return (any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
            and any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides))


def warn_of_globals_set_in_driver_code() -> None:
    """Warn (:class:`MainBlockGlobalWarning`) of each registered function of the running script
    (``__main__``) that reads a global the script sets only in its driver code: a worker imports the
    script, so it never runs that code and sees the module-level value (or none). Silent where the
    script's source cannot be read (a frozen app)."""
    mine = [fn for fn in _registry.values()
            if isinstance(fn, types.FunctionType) and fn.__module__ == "__main__"]
    path = main_module_file()
    if not mine or not path:
        return
    try:
        with open(path, encoding="utf-8") as f:
            set_there, top = _set_in_driver_code(f.read())
    except (OSError, SyntaxError, ValueError):
        return
    code = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type)
    for fn in mine:
        for name in sorted(_global_reads(fn) & set_there.keys()):
            if name in top and isinstance(fn.__globals__.get(name), code):    # code: the same in a worker
                continue
            warnings.warn(f"{fn.__gopark_name__} reads the global {name!r}, which {os.path.basename(path)} "  # type: ignore[attr-defined]
                          f"sets in its driver code (line {set_there[name]}); a worker imports the script without "
                          "running that code, so it sees the module-level value, or none: pass the value with "
                          "functools.partial or a broadcast", MainBlockGlobalWarning, stacklevel=3)
