"""Small functions of the app written into gopark's generated loops, instead of called from them.

``def pair(w, n=1): return (w, n)`` and ``def add(a, b): return a + b`` cost
more to call (~45 ns each in CPython 3.11) than to run. When a function's
whole body is one ``return`` of an expression over its parameters, the
generated loops of :mod:`gopark.pipeline` evaluate that expression in place:
``(x1, c1_0)`` instead of ``f1(x1)``. The expression is rebuilt from the
function's own bytecode (no source is needed, so a frozen app's functions
qualify too); nothing travels, the function is the one the registry found.

What qualifies: a plain function (or a ``functools.partial`` of one), no
closure, no ``*args``/``**kwargs``, not a generator, made of straight-line
code (assignments and unpacking of local variables, then one ``return``)
whose bytecode is only: its parameters and locals, constants, globals (read
at each evaluation, as the function does: by their bare names when the loop
runs with the function's module dict as its globals, else looked up in that
dict, then the builtins; see :func:`global_read`), operators (in-place ones
as the ``operator.i*`` function that they are), comparisons, ``in``/``is``,
subscripts and slices, attributes, tuples and lists, and calls with
positional arguments (of a module's function too: ``math.sqrt(x)``,
``os.path.join(a, b)``). Every
parameter it does not get from the loop must have a value (a default, or
bound by the partial). Anything else (a branch, a loop, a keyword argument in
a call, a call of ``eval``, ``globals``, ``locals``, ``warnings.warn`` or
another function that looks at its caller's frame, an expression nested too
deep for the parser...) is called as before. The binary operators of
:mod:`operator` (``operator.add``...) are their operator.

The evaluation is the function's: the same operations on the same objects in
the same order; arguments and locals are names in the loop, each assigned
once. What differs: no frame is made, so a tracer or profiler would not see
the call (loops are not inlined while ``sys.settrace`` or ``sys.setprofile``
is active when a partition starts); the function's defaults, code and
partial arguments are read once per partition; a global deleted during a
partition is a NameError as in the function, but a KeyError where the loop
looks it up (a function of a second module inlined into the same loop, a
global named like one of the loop's own variables). A failure inside an
inlined expression is blamed on the function by the loop's line
(:func:`gopark.pipeline.inlined_name`).
"""
from __future__ import annotations

import dis
import functools
import inspect
import keyword
import operator
import os
import sys
import types
import warnings
from dataclasses import dataclass, field
from typing import Any

#: CPython versions whose bytecode this module reads (others: nothing is inlined)
SUPPORTED = (3, 11)

_REFUSED_FLAGS = (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS | inspect.CO_GENERATOR | inspect.CO_COROUTINE
                  | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE)

_BINARY = frozenset({"+", "-", "*", "/", "//", "%", "**", "@", "<<", ">>", "&", "|", "^"})
_IN_PLACE = {"+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
             "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "@=": operator.imatmul,
             "<<=": operator.ilshift, ">>=": operator.irshift, "&=": operator.iand, "|=": operator.ior,
             "^=": operator.ixor}
_COMPARE = frozenset({"<", "<=", "==", "!=", ">", ">="})
_UNARY = {"UNARY_NEGATIVE": "-", "UNARY_POSITIVE": "+", "UNARY_INVERT": "~", "UNARY_NOT": "not "}

#: operator module functions and the expression each one is
_OPERATORS: dict[Any, str] = {
    operator.add: "({0} + {1})", operator.sub: "({0} - {1})", operator.mul: "({0} * {1})",
    operator.truediv: "({0} / {1})", operator.floordiv: "({0} // {1})", operator.mod: "({0} % {1})",
    operator.pow: "({0} ** {1})", operator.matmul: "({0} @ {1})", operator.lshift: "({0} << {1})",
    operator.rshift: "({0} >> {1})", operator.and_: "({0} & {1})", operator.or_: "({0} | {1})",
    operator.xor: "({0} ^ {1})", operator.lt: "({0} < {1})", operator.le: "({0} <= {1})",
    operator.eq: "({0} == {1})", operator.ne: "({0} != {1})", operator.gt: "({0} > {1})",
    operator.ge: "({0} >= {1})", operator.getitem: "{0}[{1}]", operator.is_: "({0} is {1})",
    operator.is_not: "({0} is not {1})", operator.neg: "(-{0})", operator.pos: "(+{0})",
    operator.invert: "(~{0})", operator.not_: "(not {0})",
}


@dataclass(frozen=True)
class Expr:
    """A function as an expression: ``template.format(*args, c=prefix)`` is its source.

    ``{0}``, ``{1}``... are the arguments the loop passes (names of its
    variables); ``{c}N`` the N-th value of ``consts``, which the loop binds to
    local names with that prefix. ``name`` is what a failure is blamed on.
    """

    template: str
    consts: tuple = field(repr=False)
    name: str
    items: tuple[str, ...] | None = None    # the templates of the items, when the expression is a tuple display
    statements: tuple[str, ...] = ()        # assignments to run first (``{c}lN``: the function's locals)
    #: the indexes in ``consts`` of the function's module dict and builtins, if it reads globals
    spaces: tuple[int, int] | None = None
    reads: tuple[str, ...] = ()             # the globals it reads, each as :func:`global_read` writes it

    def render(self, args: tuple[str, ...] | list[str], prefix: str) -> str:
        return self.template.format(*args, c=prefix)


#: set to ``0`` (``off``, ``false``, ``no``) in the environment of the driver (which passes it on to
#: its workers and executors): nothing is inlined, every function is called (its own frame in
#: tracebacks, its calls seen by tools)
SWITCH = "GOPARK_INLINE"
_OFF = frozenset({"0", "false", "no", "off"})     # values of SWITCH that turn inlining off


def enabled() -> bool:
    """Inlining is on: a supported CPython, no tracer or profiler to miss the calls, not switched off."""
    return (sys.version_info[:2] == SUPPORTED and sys.gettrace() is None and sys.getprofile() is None
            and os.environ.get(SWITCH, "").strip().lower() not in _OFF)


def expression(fn: Any, nargs: int, name: str) -> Expr | None:
    """``fn`` called with ``nargs`` positional arguments, as an :class:`Expr`; None if it must be called."""
    template = _OPERATORS.get(fn) if _hashable(fn) else None
    if template is not None:
        wanted = 1 if "{1}" not in template else 2
        return Expr(template, (), name) if wanted == nargs else None
    pre: tuple = ()
    kw: dict = {}
    if type(fn) is functools.partial:
        pre, kw, fn = fn.args, dict(fn.keywords), fn.func
    if type(fn) is not types.FunctionType:
        return None
    code = fn.__code__
    if code.co_flags & _REFUSED_FLAGS or code.co_freevars or code.co_cellvars:
        return None
    bound = _bind(fn, code, len(pre) + nargs, kw)
    if bound is None:
        return None
    consts: list[Any] = list(pre) + [bound[i] for i in sorted(bound)]
    # parameter i is: ("const", j) for one bound by the partial or a default, ("arg", a) for the loop's
    params: dict[int, tuple[str, int]] = {}
    for i in range(len(pre)):
        params[i] = ("const", i)
    for a in range(nargs):
        params[len(pre) + a] = ("arg", a)
    for j, i in enumerate(sorted(bound)):
        params[i] = ("const", len(pre) + j)
    try:
        template, items, statements, spaces, reads = _decompile(fn, code, params, consts)
    except _NotInlinable:
        return None
    return Expr(template, tuple(consts), name, items, tuple(statements), spaces, reads)


def _hashable(fn: Any) -> bool:
    try:
        hash(fn)
    except Exception:
        return False
    return True


def _bind(fn: types.FunctionType, code: types.CodeType, npositional: int, kw: dict) -> dict[int, Any] | None:
    """{parameter index: value} for every parameter after the first ``npositional``; None if one lacks a value."""
    nargs, nkwonly = code.co_argcount, code.co_kwonlyargcount
    if npositional > nargs:
        return None
    names = code.co_varnames[:nargs + nkwonly]
    defaults = fn.__defaults__ or ()
    kwdefaults = fn.__kwdefaults__ or {}
    if any(n not in names or names.index(n) < max(npositional, code.co_posonlyargcount) for n in kw):
        return None      # not a parameter, given twice, or positional-only: the call is a TypeError
    values: dict[int, Any] = {}
    for i in range(npositional, nargs + nkwonly):
        n = names[i]
        if n in kw:
            values[i] = kw[n]
        elif i < nargs and i >= nargs - len(defaults):
            values[i] = defaults[i - (nargs - len(defaults))]
        elif i >= nargs and n in kwdefaults:
            values[i] = kwdefaults[n]
        else:
            return None
    return values


def global_read(prefix: str, spaces: tuple[int, int], name: str) -> str:
    """The source reading global ``name`` as LOAD_GLOBAL does, at each evaluation: the module's dict
    (constant ``spaces[0]``), then the builtins (constant ``spaces[1]``). A generated loop that runs with
    the module's dict as its globals reads it by its bare name instead (:mod:`gopark.pipeline`)."""
    module, builtin = f"{prefix}{spaces[0]}", f"{prefix}{spaces[1]}"
    return f"({module}[{name!r}] if {name!r} in {module} else {builtin}[{name!r}])"


class _NotInlinable(Exception):
    pass


_UNDEFINED = object()

#: what looks at the frame that calls it: inlined, it would see gopark's loop instead of the function
_FRAME_READERS: list[Any] = [eval, exec, globals, locals, vars, dir, breakpoint, super, sys._getframe,
                             inspect.currentframe, inspect.stack, warnings.warn, warnings.warn_explicit]

_MAX_DEPTH = 100      # brackets in one generated line (CPython's parser stops at 200)


#: modules whose functions look at their caller's frame: a logger's (the record's function, file and line),
#: tracebacks and stacks, the debugger
_FRAME_MODULES = frozenset({"logging", "inspect", "traceback", "warnings", "pdb", "bdb"})
_FUNCTIONS = (types.FunctionType, types.BuiltinFunctionType)


def _check_frameless(value: Any) -> None:
    if any(value is reader for reader in _FRAME_READERS):
        raise _NotInlinable(f"{value!r} reads its caller's frame")
    module = value.__module__ if isinstance(value, _FUNCTIONS) else None
    if isinstance(module, str) and module.partition(".")[0] in _FRAME_MODULES:
        raise _NotInlinable(f"{value!r} may read its caller's frame")


def _depth(src: str) -> int:
    depth = deepest = 0
    for ch in src:
        if ch in "([":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]":
            depth -= 1
    return deepest


def _decompile(fn: types.FunctionType, code: types.CodeType, params: dict[int, tuple[str, int]],
               consts: list[Any]) -> tuple[str, tuple[str, ...] | None, list[str], tuple[int, int] | None,
                                           tuple[str, ...]]:
    """The source of the expression ``fn`` returns, in the template form of :class:`Expr`, its
    items' when it is a tuple display, the assignments to its locals before it, and where its
    globals are read (:attr:`Expr.spaces`, :attr:`Expr.reads`).

    Locals (assigned, or unpacked, from straight-line code) become fresh names
    ``{c}lN``, one per assignment, so an expression never changes meaning once
    built. An assignment is written out only while nothing but names waits on
    the stack: nothing is then evaluated out of the function's order.
    """
    def const(value: Any) -> str:
        consts.append(value)
        names.add(f"{{c}}{len(consts) - 1}")
        return f"{{c}}{len(consts) - 1}"

    def fresh() -> str:
        name = f"{{c}}l{len(statements) + len(temps)}"
        temps.add(name)
        names.add(name)
        return name

    def settled() -> None:
        if any(src not in names for _, src in stack):
            raise _NotInlinable("an assignment inside an expression")

    def name_ok(n: str) -> str:
        if not n.isidentifier() or keyword.iskeyword(n):
            raise _NotInlinable(n)
        return n

    stack: list[tuple[str, str]] = []    # (kind, source): kind "v" a value, "f" a callable to CALL
    displays: dict[str, tuple[str, ...]] = {}   # the tuple displays built, by source: their items
    known: dict[str, Any] = {}           # the sources of globals: their values now
    statements: list[str] = []
    temps: set[str] = set()
    spaces: tuple[int, int] | None = None    # the constants holding the module's dict and the builtins
    reads: set[str] = set()                  # the globals read
    # what each of the function's variables holds now: its parameters' sources to start with
    bindings = {i: (f"{{{n}}}" if kind == "arg" else f"{{c}}{n}") for i, (kind, n) in params.items()}
    names = set(bindings.values())       # sources that are plain names: reading one has no effect

    def pop(k: int = 1) -> list[str]:
        if len(stack) < k or any(kind != "v" for kind, _ in stack[len(stack) - k:]):
            raise _NotInlinable("stack")
        items = [src for _, src in stack[len(stack) - k:]]
        del stack[len(stack) - k:]
        return items

    instructions = list(dis.get_instructions(code))
    for n, ins in enumerate(instructions):
        op, arg = ins.opname, ins.arg
        if op in ("RESUME", "NOP", "PRECALL"):
            continue
        if op == "LOAD_FAST":
            if arg not in bindings:
                raise _NotInlinable("a variable read before it is assigned")
            stack.append(("v", bindings[arg]))
        elif op == "STORE_FAST":
            (value,) = pop()
            settled()
            if value not in names:
                name = fresh()
                statements.append(f"{name} = {value}")
                value = name
            bindings[arg] = value
        elif op == "UNPACK_SEQUENCE":
            (value,) = pop()
            settled()
            targets = [fresh() for _ in range(arg)]
            statements.append(f"{', '.join(targets)}, = {value}")
            stack.extend(("v", t) for t in reversed(targets))   # the first target is stored first
        elif op == "LOAD_CONST":
            stack.append(("v", const(ins.argval)))
        elif op == "LOAD_GLOBAL":
            g = name_ok(ins.argval)
            space, builtins = fn.__globals__, fn.__builtins__
            if not isinstance(builtins, dict):
                raise _NotInlinable("builtins that are not a dict")
            value = space[g] if g in space else builtins.get(g, _UNDEFINED)
            if value is _UNDEFINED:
                raise _NotInlinable("an undefined global")
            _check_frameless(value)
            if spaces is None:           # the module's dict and the builtins, one constant each
                const(space)
                const(builtins)
                spaces = (len(consts) - 2, len(consts) - 1)
            src = global_read("{c}", spaces, g)
            reads.add(g)
            known[src] = value
            stack.append(("f" if arg & 1 else "v", src))
        elif op == "LOAD_ATTR" or op == "LOAD_METHOD":
            if op == "LOAD_ATTR" and stack and stack[-1][0] == "f":
                # ``module.function(...)``: CPython 3.11 loads an imported module as a global with a NULL
                # (the callable's slot), then the function as its attribute; that is what is called
                _, obj = stack.pop()
                kind = "f"
            else:
                (obj,) = pop()
                kind = "v" if op == "LOAD_ATTR" else "f"
            attr = name_ok(ins.argval)
            src = f"{obj}.{attr}"
            if obj in known:             # a module's function, say: refused if it needs the caller's frame
                value = inspect.getattr_static(known[obj], attr, None)    # no property of the app's runs
                _check_frameless(value)
                known[src] = value       # and so are those of its attributes (``os.path.join``)
            stack.append((kind, src))
        elif op == "CALL":
            args = pop(arg) if arg else []
            if not stack or stack[-1][0] != "f":
                raise _NotInlinable("a call of a computed callable")
            _, callee = stack.pop()
            stack.append(("v", f"{callee}({', '.join(args)})"))
        elif op == "BINARY_OP":
            a, b = pop(2)
            if ins.argrepr in _BINARY:
                stack.append(("v", f"({a} {ins.argrepr} {b})"))
            elif ins.argrepr in _IN_PLACE:          # x += y: operator.iadd(x, y) is that, as an expression
                stack.append(("v", f"{const(_IN_PLACE[ins.argrepr])}({a}, {b})"))
            else:
                raise _NotInlinable(ins.argrepr)
        elif op == "COMPARE_OP":
            if ins.argrepr not in _COMPARE:
                raise _NotInlinable(ins.argrepr)
            a, b = pop(2)
            stack.append(("v", f"({a} {ins.argrepr} {b})"))
        elif op == "IS_OP" or op == "CONTAINS_OP":
            a, b = pop(2)
            word = ("is", "is not") if op == "IS_OP" else ("in", "not in")
            stack.append(("v", f"({a} {word[arg]} {b})"))
        elif op in _UNARY:
            (a,) = pop()
            stack.append(("v", f"({_UNARY[op]}{a})"))
        elif op == "BINARY_SUBSCR":
            obj, index = pop(2)
            stack.append(("v", f"{obj}[{index}]"))
        elif op == "BUILD_SLICE" and n + 1 < len(instructions) and instructions[n + 1].opname == "BINARY_SUBSCR":
            stack.append(("v", ":".join(pop(arg))))        # only ever a subscript: x[a:b]
        elif op == "BUILD_TUPLE":
            items = pop(arg) if arg else []
            src = f"({', '.join(items)},)" if items else "()"
            displays[src] = tuple(items)
            stack.append(("v", src))
        elif op == "BUILD_LIST":
            items = pop(arg) if arg else []
            stack.append(("v", f"[{', '.join(items)}]"))
        elif op == "RETURN_VALUE":
            if n != len(instructions) - 1 or len(stack) != 1:
                raise _NotInlinable("more than one return")
            (src,) = pop()
            if max(map(_depth, [src, *statements])) > _MAX_DEPTH:
                raise _NotInlinable("too deeply nested for the parser")
            return src, displays.get(src), statements, spaces, tuple(sorted(reads))
        else:
            raise _NotInlinable(op)
    raise _NotInlinable("no return")
