"""Registered helpers behind the RDD methods (joins, distinct, groupByKey, sorting, pipe).

They are ordinary registered functions under ``gopark.*`` names, so the plans
that use them travel by name like the user's own functions.
"""
from __future__ import annotations

import bisect
import contextlib
import itertools
import math
import os
import random
import selectors
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
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
    try:
        return pair[0] == key
    except (TypeError, IndexError, KeyError):     # an int, an empty tuple, a dict: not a pair
        raise TypeError(f"lookup needs (key, value) pairs, got {type(pair).__name__}: {pair!r:.80}") from None


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


def partition_rng(seed: int, split: int) -> random.Random:
    """The random numbers of partition ``split`` of an RDD sampled with ``seed`` (the same each time it is
    computed, in every mode)."""
    return random.Random(seed * 1_000_003 + split)


def poisson_count(rng: random.Random, mean: float) -> int:
    """A draw of a Poisson variable of mean ``mean``: how many times a record is taken, with replacement.

    Small means multiply uniform draws until their product falls under ``exp(-mean)``; from
    ``_PRODUCT_MEANS`` on, that bound comes too near 0.0 (it is 0.0 past 745: every draw would stop at
    about 740), so the count is of the arrivals in a unit of time of a process of that rate (exponential
    gaps), as PySpark's sampler does for large means. Both take time in proportion to the count."""
    if mean < _PRODUCT_MEANS:
        limit = math.exp(-mean)
        k, p = 0, rng.random()
        while p > limit:
            k += 1
            p *= rng.random()
        return k
    k, t = 0, rng.expovariate(mean)
    while t < 1.0:
        k += 1
        t += rng.expovariate(mean)
    return k


_PRODUCT_MEANS = 20.0


@register_func(name="gopark.in_random_split")
def in_random_split(low: float, high: float, seed: int, split: int, it: Any) -> Iterator[Any]:
    """randomSplit: the records whose draw (one per record, the same for every split of one seed) falls in
    ``[low, high)``."""
    draw = partition_rng(seed, split).random
    return (x for x in it if low <= draw() < high)


@register_func(name="gopark.sample_by_key")
def sample_by_key(fractions: dict, with_replacement: bool, seed: int, split: int, it: Any) -> Iterator[Any]:
    """sampleByKey: each (key, value) pair kept with its key's probability (or taken a Poisson number of
    times of that mean); a key without a fraction fails the task, as in Spark."""
    rng = partition_rng(seed, split)
    for pair in it:
        key = pair[0]
        if key not in fractions:
            raise KeyError(f"sampleByKey: no fraction given for the key {key!r}")
        if with_replacement:
            for _ in range(poisson_count(rng, fractions[key])):
                yield pair
        elif rng.random() < fractions[key]:
            yield pair


@register_func(name="gopark.extent")
def extent(it: Any) -> list:
    """histogram: ``[(min, max, count)]`` of a partition's records that are neither None nor NaN; ``[]`` if none."""
    low = high = None
    n = 0
    for x in it:
        if x is None or x != x:
            continue
        if n == 0:
            low = high = x
        elif x < low:
            low = x
        elif x > high:
            high = x
        n += 1
    return [(low, high, n)] if n else []


@register_func(name="gopark.histogram_counts")
def histogram_counts(buckets: list, it: Any) -> list:
    """histogram: how many records of a partition fall in each bucket ``[buckets[i], buckets[i + 1])``, the
    last one closed; None, NaN, and records outside the buckets are not counted."""
    low, high, last = buckets[0], buckets[-1], len(buckets) - 2
    counts = [0] * (last + 1)
    find = bisect.bisect_right
    for x in it:
        if x is None or x != x or x < low or x > high:     # x != x: NaN
            continue
        counts[min(find(buckets, x) - 1, last)] += 1
    return [counts]


@register_func(name="gopark.reduce_partition_by_key")
def reduce_partition_by_key(f: list, it: Any) -> list:
    """reduceByKeyLocally: a partition's pairs folded by key with the function ``f`` references, as one dict."""
    from gopark.shuffle import not_a_pair
    fn = registry.decode_func(f)
    merged: dict = {}
    for pair in it:
        match pair:        # what a shuffle takes for a pair (see pipeline._unpack)
            case (k, v):
                merged[k] = fn(merged[k], v) if k in merged else v
            case _:
                raise not_a_pair(pair)
    return [merged]


_PIPE_CHUNK = 1 << 16      # bytes of records written to a piped command before its output is looked at again


@register_func(name="gopark.pipe_lines")
def pipe_lines(argv: list[str], env: dict[str, str] | None, check: bool, quiet: bool, it: Any) -> Iterator[str]:
    """:meth:`RDD.pipe`: a partition's records, one a line, through the command ``argv``; its output's lines.

    One thread writes and reads (a non-blocking loop over both pipes): the
    records are computed in the task's own thread, where their functions'
    accumulator updates count. A command that exits before it has read
    everything (``head``) ends the writing, not the task.
    """
    # a process group of its own: what the command starts ends with it when the task is stopped; and it
    # dies with this process when that is killed outright (SIGKILL, the OOM killer), which ends no task.
    # (The kernel's signal comes when the *thread* that started the command ends: none does before its
    # task ends, and by then this has waited for its command. SIGKILL: a command may ignore SIGTERM, and
    # nobody is left to follow up. Only the command gets it: what it starts sees its pipes end.)
    # In a worker, the command and what it starts carry the worker's mark (PIPE_MARK_ENV), by which the pool
    # finds and ends what is left of them once the worker is gone (see end_piped_commands).
    marked = _PIPE_MARK
    if marked:
        _note_piping(os.environ.get("GOPARK_WORK_DIR"))
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL if quiet else None,
                            env={**command_environment(), **(env or {}), **({PIPE_MARK_ENV: marked} if marked else {})},
                            process_group=0, preexec_fn=parent_death_signal(os.getpid()))
    try:
        stdin, stdout = proc.stdin.fileno(), proc.stdout.fileno()    # type: ignore[union-attr]
        os.set_blocking(stdin, False)
        records, pending, partial = iter(it), bytearray(), b""
        with selectors.DefaultSelector() as sel:
            sel.register(stdout, selectors.EVENT_READ)
            sel.register(stdin, selectors.EVENT_WRITE)
            writing = True
            while sel.get_map():
                for key, _ in sel.select():
                    if key.fd == stdout:
                        data = os.read(stdout, _PIPE_CHUNK)
                        if not data:
                            sel.unregister(stdout)
                            continue
                        *lines, partial = (partial + data).split(b"\n")
                        yield from (line.decode("utf-8") for line in lines)
                        continue
                    while writing and len(pending) < _PIPE_CHUNK:
                        record = next(records, _END)
                        if record is _END:
                            writing = False
                        else:
                            pending += _pipe_line(record)
                    try:
                        pending = pending[os.write(stdin, pending):] if pending else pending
                    except BrokenPipeError:        # it stopped reading: the rest is not wanted
                        writing, pending = False, bytearray()
                    if not writing and not pending:
                        sel.unregister(stdin)
                        proc.stdin.close()         # type: ignore[union-attr]
        if partial:
            yield partial.decode("utf-8")
        code = proc.wait()
        if check and code:
            raise RuntimeError(f"pipe: {shlex.join(argv)!r:.200} exited with code {code}")
    finally:
        if proc.poll() is None:     # the consumer stopped early (take), a record failed, the worker is stopped
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for f in (proc.stdin, proc.stdout):
            if f is not None and not f.closed:
                f.close()
        proc.wait()


_END = object()

#: the environment variable of a worker's mark, passed on to the commands its tasks pipe to
PIPE_MARK_ENV = "GOPARK_PIPE_MARK"
PIPED = "piped"         # a file of the pool's work folder: a worker of it has piped to a command
# taken out of a worker's environment as it starts: only the commands it pipes to get it, not what the app's
# functions start themselves (the pool ends what carries it)
_PIPE_MARK = os.environ.pop(PIPE_MARK_ENV, None)


def _note_piping(work_dir: str | None) -> None:
    if work_dir and not os.path.exists(os.path.join(work_dir, PIPED)):
        with contextlib.suppress(OSError):
            open(os.path.join(work_dir, PIPED), "ab").close()


def end_piped_commands(mark: str) -> int:
    """SIGKILL every process of this user whose environment holds ``PIPE_MARK_ENV`` starting with ``mark``
    (a pool's mark and "-": all its workers'; a worker's whole mark and "\\0": that worker's alone):
    what the commands piped to by gone workers started and left running (the kernel ends a command when
    its worker dies, not what the command started, which may not read its pipes: a ``sleep``, a daemon).
    Each is signalled through a pidfd opened before its environment is read, so a pid that a new process
    took meanwhile is not signalled. Returns how many were."""
    needle = f"\0{PIPE_MARK_ENV}={mark}".encode()
    uid, me, ended = os.getuid(), os.getpid(), 0
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
            pidfd = os.pidfd_open(int(name))
        except OSError:             # gone, or not ours to look at
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                environ = b"\0" + f.read()
            if needle in environ:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                ended += 1
        except OSError:
            pass
        finally:
            os.close(pidfd)
    return ended


#: seconds after a Ctrl-C in which another is the same one (see :func:`interrupt`)
SAME_CTRL_C = 0.5
_last_ctrl_c = [-math.inf]


def ctrl_c_may_repeat() -> bool:
    """A Ctrl-C came less than :data:`SAME_CTRL_C` ago: its twin may still come (see :func:`interrupt`)."""
    return time.monotonic() - _last_ctrl_c[0] < SAME_CTRL_C


def forget_ctrl_c() -> None:
    """A job starts: a Ctrl-C from now on is a new one (the app caught the last and went on)."""
    _last_ctrl_c[0] = -math.inf


def interrupt(signum: int, frame: Any) -> None:
    """The driver's SIGINT handler while a Context runs (where the app left Python's default): a
    KeyboardInterrupt, as the default, but one only for a Ctrl-C that comes twice within
    :data:`SAME_CTRL_C` and no job started between (a frozen app's launcher passes the terminal's on to the
    app, which got it too), whose second would cut short the clean-up of the first."""
    now = time.monotonic()
    if now - _last_ctrl_c[0] < SAME_CTRL_C:
        return
    _last_ctrl_c[0] = now
    signal.default_int_handler(signum, frame)     # raises it


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM held while the block runs, then handled as they would have been (each once): for
    a start or a stop that a signal must not cut in the middle (a socket made but not yet kept, an import
    half done, a folder half removed, left for ever). Only in the main thread: elsewhere no signal
    interrupts anything. A SIGINT while a KeyboardInterrupt is being handled is dropped (see below).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = {}
    # a Ctrl-C already being handled (a job's or a stop's clean-up as a KeyboardInterrupt goes up): one that
    # comes while the block runs is the same press (a frozen app's launcher passes the terminal's on to the
    # app, which got it too) or one more of it, not a second KeyboardInterrupt for the app
    interrupted = isinstance(sys.exc_info()[1], KeyboardInterrupt)
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if handler is not signal.SIG_IGN and handler is not None:      # (None: not set from Python)
            held[sig] = handler
            signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)
        # each once, its own handler now (the default ends the process, as it would have); SIGTERM first:
        # its handler ends the app, which a KeyboardInterrupt raised first would have kept it from seeing
        for sig in sorted(set(caught), key=lambda s: s != signal.SIGTERM):
            if not (sig == signal.SIGINT and interrupted and held[sig] in (signal.default_int_handler, interrupt)):
                signal.raise_signal(sig)


_PR_SET_PDEATHSIG = 1
_prctl: Any = None      # libc's prctl, looked up when first needed rather than at every app's import


def parent_death_signal(parent: int | None) -> Callable[[], None] | None:
    """What a process calls to be sent SIGKILL when its parent ends, however it ends (also a worker, which
    goes with its driver): it asks the kernel (PR_SET_PDEATHSIG), then exits at once if its parent is no
    longer ``parent`` (when given: it ended before the kernel was asked, nobody is left to tell). None where there is
    no ``prctl`` (not Linux).

    libc's ``prctl`` is looked up here, beforehand: a piped command calls the function as its
    ``preexec_fn``, between fork and exec, where nothing may need a lock another thread held at the fork
    (an import's, the dynamic loader's, logging's...); it makes one ctypes call and reads its parent's pid.
    """
    global _prctl
    prctl = _prctl
    if prctl is None:
        try:
            import ctypes
            prctl = ctypes.CDLL(None, use_errno=True).prctl
            prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
            prctl.restype = ctypes.c_int
        except (OSError, AttributeError):
            prctl = False
        _prctl = prctl          # (another thread may do the same meanwhile: as well)
    if not prctl:
        return None
    sig = int(signal.SIGKILL)

    def die_with_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if parent is not None and os.getppid() != parent:
            os._exit(1)

    return die_with_parent


def command_environment() -> dict[str, str]:
    """The environment of a command a task starts, the same in every mode: the app's, without what gopark
    and PyInstaller set for themselves (a worker's role, the driver's address and token, the driver's
    sys.path as PYTHONPATH, a frozen app's bundle as LD_LIBRARY_PATH and its ``_PYI_*`` markers)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOPARK_", "_PYI_", "_MEI"))}
    user_path = os.environ.get(registry.USER_PYTHONPATH_ENV)
    if user_path is not None:                   # a worker: its PYTHONPATH is gopark's
        env.pop("PYTHONPATH", None)
        if user_path:
            env["PYTHONPATH"] = user_path[1:]
    if getattr(sys, "frozen", False):
        original = env.pop("LD_LIBRARY_PATH_ORIG", None)
        env.pop("LD_LIBRARY_PATH", None)
        if original is not None:
            env["LD_LIBRARY_PATH"] = original
    return env


def _pipe_line(record: Any) -> bytes:
    """A record as a line for a piped command: bytes as they are, a str as UTF-8, anything else as ``str()``;
    its own trailing line breaks are not doubled."""
    if type(record) is bytes:
        return record.rstrip(b"\n") + b"\n"
    try:
        return (record if type(record) is str else str(record)).rstrip("\n").encode("utf-8") + b"\n"
    except UnicodeEncodeError as exc:      # a lone surrogate: not UTF-8 text, not data
        raise serialize.not_unicode(exc, "pipe") from None


@register_func(name="gopark.whole_file")
def whole_file(decompress: bool, unicode: bool, path: str) -> tuple[str, str | bytes]:
    """:meth:`Context.wholeTextFiles` and ``binaryFiles``: ``(path, its content)``; ``.gz``/``.bz2``
    decompressed with ``decompress``; decoded from UTF-8 (undecodable bytes replaced, as textFile's lines)
    with ``unicode``. A failure to read names the file, not a function of the app."""
    from gopark.io import text
    data = text.read_whole(path, decompress, "wholeTextFiles" if decompress else "binaryFiles")
    return (path, data.decode("utf-8", "replace") if unicode else data)
