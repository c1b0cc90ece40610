"""The Context: where an app starts, chooses its master, and makes its first RDDs.

It owns everything of one session: the options, the work folder (private,
removed by ``stop()``), the RDD and shuffle ids, the DAG scheduler and the
backend that runs tasks. Two Contexts never share any of it.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import itertools
import os
import shutil
import signal
import sys
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from gopark import registry, shared
from gopark.errors import ConfigError, GoparkError, JobError, OutputNotWritable, Terminated
from gopark.ops import ctrl_c_may_repeat, interrupt, signals_deferred
from gopark.rdd import (
    RDD,
    ParallelCollection,
    TextFileRDD,
    _check_rdds,
    _num,
    save_checkpoints,
    slice_collection,
    union_of,
)

_WORK_PREFIX = "gopark-"


def _remove_stale_work_dirs() -> None:
    """Work folders of drivers that were killed before they could clean up."""
    import glob  # the driver's only
    for path in glob.glob(os.path.join(tempfile.gettempdir(), _WORK_PREFIX + "*")):
        pid = os.path.basename(path)[len(_WORK_PREFIX):].split("-")[0]
        try:
            if not pid.isdigit() or os.stat(path).st_uid != os.getuid():
                continue
        except OSError:     # another driver removed it first
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass


def _one_line_errors(exc_type: type, exc: BaseException, tb: Any) -> None:
    """gopark's input errors, not caught by the app, print as one line, not a traceback."""
    if isinstance(exc, GoparkError) and not isinstance(exc, JobError):
        where = _app_line(tb)
        print(f"gopark: error: {exc}" + (f" (at {where})" if where else ""), file=sys.stderr)
        return
    sys.__excepthook__(exc_type, exc, tb)


def _app_line(tb: Any) -> str | None:
    """``file:line`` of the app's frame that called into gopark in ``tb`` (the call that received the bad
    input), if any."""
    found = None
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__") or ""
        if module.partition(".")[0] in ("gopark", "launcher"):
            if found:
                return found
        else:
            found = f"{os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return None


class Context:
    """The entry point of an app: ``with Context() as ctx: ctx.textFile(...)...``.

    ``master`` is ``"local"`` (default), ``"process[:N]"``, ``"mesos"``...; with
    no master, options come from ``sys.argv`` (``-m``, ``-p``, ``--mem``, ...),
    unless that is a test runner's (pytest, unittest), whose ``-m``/``-p`` mean
    other things: then the defaults and the keyword options apply.

    >>> with Context("local") as ctx:
    ...     ctx.parallelize(range(10), 2).map(abs).count()
    10
    """

    def __init__(self, master: str | None = None, parallel: int | None = None, **options: Any) -> None:
        # imported here: a worker imports the app, and with it this module, but makes no Context
        from gopark import options as options_mod
        from gopark.progress import Progress
        from gopark.scheduler.dag import DAGScheduler
        registry.check_may_start_context()
        shared.forget_stale_task_state()      # left by a task a signal ended, in local mode
        registry.warn_of_globals_set_in_driver_code()
        if sys.excepthook is sys.__excepthook__:    # not an app's (or IPython's) own
            sys.excepthook = _one_line_errors
        if master is None:
            self.options = options_mod.from_argv(parallel=parallel, **options)
        else:
            self.options = options_mod.make_options(master, parallel, **options)
        self.master = options_mod.parse_master(self.options.master)
        if self.master.kind == "mesos" and not getattr(sys, "frozen", False):
            script = sys.argv[0] if sys.argv and sys.argv[0].endswith(".py") else "app.py"  # as the user ran it
            raise ConfigError(f"-m mesos runs a frozen app: build it first with `gopark build {script}` "
                              "and run the executable it makes")
        # -v: gopark logs at DEBUG while this Context runs (a later Context of the process, without -v, does not)
        self._log_level_before: int | None = None
        if self.options.verbose:
            import logging
            self._log_level_before = logging.getLogger("gopark").level
            self.setLogLevel("DEBUG")
        # first: a SIGTERM from now on ends the start cleanly (the ``except`` below), as it ends a job
        self._signals = _exit_on_termination()
        self.work_dir = ""
        try:
            _remove_stale_work_dirs()
            self.work_dir = tempfile.mkdtemp(prefix=f"{_WORK_PREFIX}{os.getpid()}-")
            self._rdd_ids = itertools.count()
            self._shuffle_ids = itertools.count()
            self._broadcasts = shared.BroadcastBook()     # the live ones, that tasks carry (see shared.py)
            self._checkpoint_dir: str | None = None
            self._checkpoints_due: set[int] = set()      # the ids of RDDs checkpoint() marked, not saved yet
            # how many times one of its RDDs was cached, unpersisted or marked for checkpoint: what is worked
            # out from those marks (the RDDs a union reads, see rdd.union_parents) is worked out again after
            self._cache_marks = 0
            self._stopped = False
            self.scheduler = DAGScheduler(self.options.max_failures, Progress(not self.options.quiet),
                                          self._broadcasts)
            if self._signals:
                _signalled.add(self.scheduler)
            # Ctrl-C or SIGTERM is handled once a pool of workers has started (or failed to) and is held here,
            # to be stopped: cut in the middle, its start could leave a worker started but not known, zmq half
            # imported (every later Context failing), a socket made but not kept (zmq's term() waiting for
            # ever). Not Mesos' start, which may wait 30 s for a master: Ctrl-C ends that wait.
            with signals_deferred() if self.master.kind == "process" else contextlib.nullcontext():
                self.backend = self._make_backend(int(self.options.mem * (1 << 20)))
            self.scheduler.backend = self.backend
            # the same on one machine in every mode (so partitions, and collect order, match), but at least
            # one partition per worker
            self.defaultParallelism: int = self.options.parallel or max(
                2, os.cpu_count() or 1, self.backend.default_parallelism)
            atexit.register(self._stop_at_exit)
        except BaseException:     # (a backend that cannot start, SIGTERM, Ctrl-C): nothing is left behind
            if hasattr(self, "backend"):
                self.backend.stop()
            if self.work_dir:
                shutil.rmtree(self.work_dir, ignore_errors=True)
            _restore_signals(self._signals)
            self._restore_log_level()
            raise

    def _make_backend(self, mem_bytes: int) -> Any:
        compress = self.options.compress if self.options.compress is not None else self.master.kind == "mesos"
        if self.master.kind == "process":
            from gopark.scheduler.process import ProcessBackend
            # (its workers get sys.argv as this Context left it, and as gopark's import found it: its default)
            return ProcessBackend(self.master.workers, self.scheduler.post, self.work_dir, mem_bytes, compress)
        if self.master.kind == "mesos":
            from gopark.scheduler.mesos import MesosBackend
            return MesosBackend(self.master.address, self.scheduler.post, self.work_dir, self.options.cpus,
                                self.options.mem, compress, registry.main_module_name() or "app")
        from gopark.scheduler.local import LocalBackend
        from gopark.task import DRIVER, WorkerEnv
        return LocalBackend(self.scheduler.post,
                            WorkerEnv(self.work_dir, mem_bytes, DRIVER, cache_on_disk=False, compress=compress))

    def setLogLevel(self, logLevel: str) -> None:  # noqa: N802, N803
        """What gopark logs on stderr (its logger ``gopark``), by Spark's level names: ALL, TRACE, DEBUG
        (what ``-v`` sets: the scheduler's events), INFO, WARN, ERROR, FATAL, OFF. Progress lines are not
        logs: ``-q`` silences them."""
        import logging  # here: a worker imports this module with the app, and logs nothing
        levels = {"ALL": logging.DEBUG, "TRACE": logging.DEBUG, "DEBUG": logging.DEBUG, "INFO": logging.INFO,
                  "WARN": logging.WARNING, "WARNING": logging.WARNING, "ERROR": logging.ERROR,
                  "FATAL": logging.CRITICAL, "OFF": logging.CRITICAL + 1}
        level = levels.get(logLevel.upper()) if isinstance(logLevel, str) else None
        if level is None:
            raise ConfigError(f"setLogLevel: {logLevel!r} is not a log level: {', '.join(levels)}")
        if not logging.getLogger().handlers:     # the app's own logging set-up, if any, gets the records
            logging.basicConfig(format="%(asctime)s %(name)s %(message)s")
        logging.getLogger("gopark").setLevel(level)

    # -- lifecycle ----------------------------------------------------------------------
    def stop(self) -> None:
        """End the workers, remove the work folder. Safe to call more than once."""
        stopping = False
        try:
            # Ctrl-C, again and again: handled once all is stopped and removed (not in Mesos mode, whose stop
            # may wait for its master, a wait Ctrl-C must end)
            with signals_deferred() if self.master.kind != "mesos" else contextlib.nullcontext():
                if self._stopped:
                    return
                self._stopped = stopping = True
                _signalled.discard(self.scheduler)
                atexit.unregister(self._stop_at_exit)
                self.scheduler.stop()          # a job another thread runs ends, and starts no more tasks
                try:
                    self.backend.stop()
                finally:
                    self._broadcasts.keep_values()
                    shutil.rmtree(self.work_dir, ignore_errors=True)
                    shared.forget_broadcasts(list(self._broadcasts.live))
        finally:
            if stopping:
                _restore_signals(self._signals)
                self._restore_log_level()

    def _restore_log_level(self) -> None:
        """The gopark logger's level as it was before this Context's ``-v`` (if it had one), unless the app
        has set another since (``setLogLevel``)."""
        if self._log_level_before is not None:
            import logging
            logger = logging.getLogger("gopark")
            if logger.level == logging.DEBUG:
                logger.setLevel(self._log_level_before)
            self._log_level_before = None

    def _stop_at_exit(self) -> None:
        """stop(), for a Context the app left running as the interpreter exits: a Ctrl-C that comes meanwhile
        is handled once it has stopped (see stop), and here there is nothing left for it to interrupt (not
        "Exception ignored in atexit callback" and a traceback)."""
        with contextlib.suppress(KeyboardInterrupt):
            self.stop()

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _new_rdd_id(self) -> int:
        return next(self._rdd_ids)

    def _new_shuffle_id(self) -> int:
        return next(self._shuffle_ids)

    # -- data sources -------------------------------------------------------------------
    def parallelize(self, seq: Iterable[Any], numSlices: int | None = None) -> RDD:
        """An RDD of the items of ``seq`` in ``numSlices`` partitions (default: defaultParallelism).

        >>> with Context("local") as ctx:
        ...     ctx.parallelize([1, 2, 3], 2).glom().collect()
        [[1], [2, 3]]
        """
        self._check_running()
        n = _num(numSlices, "numSlices") or self.defaultParallelism
        # a str gives its characters, a dict its keys: as in Spark; an RDD is not a local sequence
        if not hasattr(seq, "__iter__") or isinstance(seq, RDD):
            raise TypeError(f"parallelize takes a sequence of records, not {type(seq).__name__}")
        with shared.handles_packed() as held:
            slices = slice_collection(seq, n)
        return ParallelCollection(self, slices, held)

    makeRDD = parallelize

    def range(self, start: int, end: int | None = None, step: int = 1, numSlices: int | None = None) -> RDD:
        """The ints of ``range(start, end, step)`` (``range(start)`` without ``end``), as Spark's ``range``.

        >>> with Context("local") as ctx:
        ...     ctx.range(1, 7, 2).collect()
        [1, 3, 5]
        """
        return self.parallelize(range(start) if end is None else range(start, end, step), numSlices)

    def textFile(self, path: str | list[str], splitSize: int | None = None, numSplits: int | None = None, *,
                 minPartitions: int | None = None) -> RDD:  # noqa: N803
        """The lines of a file, a folder's files or a glob (``.gz``/``.bz2`` decompressed; ``mfs://``), or of
        several (a list, or Spark's comma-separated string), in splits of at most ``splitSize`` bytes, at
        least ``numSplits`` of them (``minPartitions``: Spark's name).

        >>> import os, shutil, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> with open(os.path.join(folder, "a.txt"), "w") as f:
        ...     _ = f.write("one two\\nthree\\n")
        >>> ctx.textFile(os.path.join(folder, "a.txt")).collect()
        ['one two', 'three']
        >>> ctx.textFile(folder, numSplits=2).getNumPartitions()
        2
        >>> shutil.rmtree(folder)
        """
        self._check_running()
        from gopark.io import text
        if minPartitions is not None:
            if numSplits is not None:
                raise TypeError("textFile: numSplits and minPartitions are one argument: give one")
            numSplits = minPartitions
        pieces = text.input_paths(path)
        asked = tuple(text.glob_root(text.local_path(p)) for p in pieces if not p.startswith("mfs://"))
        named = path if isinstance(path, str) else ",".join(pieces)     # (a Path, a list: as strings)
        return TextFileRDD(self, named, text.plan_splits(pieces, splitSize, numSplits, self.defaultParallelism),
                           asked)

    def wholeTextFiles(self, path: str | list[str], minPartitions: int | None = None,  # noqa: N802, N803
                       use_unicode: bool = True) -> RDD:
        """``(path, content)`` for each file a path, a folder or a glob names (as :meth:`textFile` finds them;
        ``.gz``/``.bz2`` decompressed), ``path`` absolute, content as str (UTF-8; bytes with ``use_unicode``
        False), in ``minPartitions`` partitions (default: the default parallelism), at most one per file.
        A file is read whole by one task: for many small files. Local paths, a mounted MooseFS, and ``mfs://``
        URLs (``(mfs:// URL, content)``, read from the chunkservers, with no preferred hosts)."""
        return self._whole_files(path, minPartitions, "wholeTextFiles", True, bool(use_unicode))

    def binaryFiles(self, path: str | list[str], minPartitions: int | None = None) -> RDD:  # noqa: N802, N803
        """``(path, bytes)`` for each file, as :meth:`wholeTextFiles` finds them, not decompressed."""
        return self._whole_files(path, minPartitions, "binaryFiles", False, False)

    def _whole_files(self, path: str, min_partitions: int | None, what: str, decompress: bool,
                     unicode: bool) -> RDD:
        self._check_running()
        from gopark import ops
        from gopark.io import text
        wanted = _num(min_partitions, f"{what}: minPartitions") or self.defaultParallelism
        files = text.whole_files(path, what)
        if not files:           # an empty folder, as textFile's
            return self.emptyRDD()
        n = min(len(files), wanted)
        rdd = self.parallelize(files, n).map(functools.partial(ops.whole_file, decompress, unicode))
        rdd.input_paths = tuple(files)
        return rdd

    def union(self, rdds: list[RDD]) -> RDD:
        """The records of all ``rdds`` (none: an empty RDD).

        >>> ctx.union([ctx.parallelize([1, 2]), ctx.parallelize([3])]).collect()
        [1, 2, 3]
        """
        self._check_running()
        if isinstance(rdds, RDD):
            rdds = [rdds]
        rdds = list(rdds)
        if not rdds:      # as Spark's and DPark's: the union of nothing is empty
            return self.emptyRDD()
        rdds = _check_rdds(rdds, "union")
        if rdds[0].ctx is not self:
            raise ValueError("union: the RDDs belong to another Context")
        return union_of(self, rdds)

    def emptyRDD(self) -> RDD:
        """An RDD with no record and no partition, as Spark's.

        >>> with Context("local") as ctx:
        ...     ctx.emptyRDD().collect(), ctx.emptyRDD().getNumPartitions()
        ([], 0)
        """
        self._check_running()
        return ParallelCollection(self, [])

    def broadcast(self, value: Any) -> shared.Broadcast:
        """A read-only value every task can read as ``b.value`` (pass ``b`` through ``partial``).

        >>> b = ctx.broadcast({"a": 1})
        >>> b.value
        {'a': 1}
        """
        self._check_running()
        return shared.new_broadcast(value, self.work_dir, getattr(self.backend, "files_url", None), self._broadcasts)

    def accumulator(self, init: Any = 0, merge: Callable[[Any, Any], Any] | None = None) -> shared.Accumulator:
        """A value tasks ``add`` to and the driver reads (``merge`` default ``+``).

        >>> acc = ctx.accumulator(0)
        >>> acc.add(2)
        >>> acc.add(3)
        >>> acc.value
        5
        >>> ctx.accumulator([], operator.add).value
        []
        """
        return shared.new_accumulator(init, merge)

    # -- jobs -------------------------------------------------------------------------
    def runJob(self, rdd: RDD, action: list, partitions: list[int] | None = None,
               on_result: Callable[[Any], None] | None = None) -> list[Any]:
        """Run an action (as data) on partitions of ``rdd``; one result per partition (with ``on_result``:
        each handed to it as soon as those before it have been, see ``DAGScheduler.run_job``).

        Not inside a task (a function of a job calling an action, or ``sortByKey``'s sample): a RuntimeError
        in every mode, where local mode's task, run by the job holding the scheduler, would wait for ever."""
        if shared.in_task():
            raise RuntimeError("an action cannot run inside a task: only the driver runs jobs")
        self._check_running()
        parts = list(range(rdd.num_partitions)) if partitions is None else list(partitions)
        if len(set(parts)) != len(parts) or not all(type(p) is int and 0 <= p < rdd.num_partitions for p in parts):
            raise ValueError(f"runJob: partitions must be distinct indexes below {rdd.num_partitions}, not {parts}")
        try:
            results = self.scheduler.run_job(rdd, action, parts, on_result)
        finally:
            if self._stopped:    # stopped by another thread while this job's task ran here (local mode):
                shutil.rmtree(self.work_dir, ignore_errors=True)     # what it wrote since goes too
        save_checkpoints(self, rdd, self._run_all)
        return results

    def _run_all(self, rdd: RDD, action: list) -> list[Any]:
        return self.scheduler.run_job(rdd, action, list(range(rdd.num_partitions)), None)

    def setCheckpointDir(self, dirName: str) -> None:  # noqa: N802, N803
        """The folder RDD.checkpoint() saves under (Spark's): every worker must see it at this path."""
        from gopark.io import text
        dirName = text.output_folder(dirName, "setCheckpointDir")
        folder = os.path.abspath(os.path.expanduser(dirName))     # as checkpoint() takes a folder
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise OutputNotWritable(f"setCheckpointDir: cannot make {dirName!r}: {exc.strerror or exc}") from None
        self._checkpoint_dir = folder

    def getCheckpointDir(self) -> str | None:  # noqa: N802
        """The folder of :meth:`setCheckpointDir` (absolute, ``~`` expanded), or None."""
        return self._checkpoint_dir

    def _check_running(self) -> None:
        if self._stopped:
            raise GoparkError("this Context is stopped: make a new Context to run more jobs")
        if self.options.help:   # --help: options were shown, the app's parser did not exit
            self.stop()
            raise SystemExit(0)


_TERMINATING = (signal.SIGTERM, signal.SIGHUP)
_signal_users = [0]     # running Contexts relying on _terminated (the handlers are the process')


_signalled: weakref.WeakSet = weakref.WeakSet()     # the schedulers of the running Contexts among them
_unraisable_hook: list = []      # sys.unraisablehook as it was before gopark's, while gopark's is set


def _terminated(signum: int, frame: Any) -> None:
    """SIGTERM/SIGHUP: leave as SIGINT does, through ``with``/``finally``/atexit (which stop the Context)."""
    raise Terminated(128 + signum)


def _unraisable(args: Any) -> None:
    """sys.unraisablehook while Contexts handle the signals: Python only prints an exception raised in a
    garbage collector's callback or a ``__del__``, where the handler may have run; a Terminated dropped so
    goes to the running schedulers instead, whose job (or next job) raises it in the driver."""
    if isinstance(args.exc_value, Terminated):
        for scheduler in list(_signalled):
            scheduler.post(("raise", args.exc_value))
        return
    (_unraisable_hook[0] if _unraisable_hook else sys.__unraisablehook__)(args)


def _exit_on_termination() -> bool:
    """Make SIGTERM and SIGHUP exit cleanly where the app left them to kill the process outright, and a
    Ctrl-C that comes twice at once interrupt once (:func:`gopark.ops.interrupt`) where the app left Python's own.

    Only from the main thread, and only for signals still at their default (or
    already ours): an app's own handlers are never replaced. True: this Context
    counts among the handlers' users.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    for sig in _TERMINATING:
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _terminated)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, interrupt)
    if sys.unraisablehook is not _unraisable:
        _unraisable_hook[:] = [sys.unraisablehook]
        sys.unraisablehook = _unraisable
    _signal_users[0] += 1
    return True


def _restore_signals(used: bool) -> None:
    """The last running Context gives the signals their default back (where they are still ours)."""
    if not used:
        return
    _signal_users[0] -= 1
    if _signal_users[0] or threading.current_thread() is not threading.main_thread():
        return
    for sig in _TERMINATING:
        if signal.getsignal(sig) is _terminated:
            signal.signal(sig, signal.SIG_DFL)
    # (not while the twin of a Ctrl-C may still come: the app is going down with the first, maybe already
    # tearing the interpreter down, where a second KeyboardInterrupt is a traceback on no stderr; ours drops
    # it, and behaves as Python's for any later one)
    if signal.getsignal(signal.SIGINT) is interrupt and not ctrl_c_may_repeat():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if sys.unraisablehook is _unraisable and _unraisable_hook:
        sys.unraisablehook = _unraisable_hook.pop()
