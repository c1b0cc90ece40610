"""Process mode: a pool of long-lived worker subprocesses of the same program.

The pool starts once per Context. Workers connect to the driver's ZeroMQ
ROUTER socket on ``ipc://`` inside the Context's private (0700) work folder,
say hello with a secret token given in their environment, then receive
``[task, tid, payload]`` and answer ``[result, tid, payload]``, all msgpack.

One I/O thread owns the socket and the workers. It blocks in one poll on the
socket, an eventfd that ``submit`` rings, and a pidfd per worker, so a worker
that dies (an exception in its loop, ``os._exit``, SIGKILL, the OOM killer)
is seen at once: its task is reported lost to the scheduler (which runs it
again) and a new worker takes its place.

Workers die with the driver (PR_SET_PDEATHSIG, set in the worker), and
``stop()`` asks them to leave, then kills those that do not.

The workers are started first thing, before the driver imports ZeroMQ
(and ``hmac``) and binds its socket: a worker takes a good 100 ms to start,
and those imports (25 ms) are done meanwhile rather than before it.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gopark import binary, ops, registry, shuffle
from gopark.trash import Trash

if TYPE_CHECKING:
    import zmq

log = logging.getLogger("gopark.process")

_MAX_EARLY_DEATHS = 3
_MAX_IPC_PATH = 100   # sockaddr_un holds 107 bytes
_LEAVE_SECONDS = 2.0   # how long stop() waits for an idle worker to leave before it kills it


def worker_command() -> list[str]:
    """The command that starts a worker: this same program in the worker role."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    # -P: nothing first on its path (-m would put the current folder there, a script its own folder), but
    # the driver's path (PYTHONPATH, see worker_environment): a module of the folder the app was started
    # from never shadows the app's. Its loop by its file, installed beside gopark: a module ``launcher`` of
    # the app's own folder (first on that path) does not shadow it
    script = os.path.join(_INSTALLED, "launcher", "worker.py")
    return [sys.executable, "-P", script] if os.path.isfile(script) else [sys.executable, "-P", "-m", "launcher.worker"]


_INSTALLED = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # holds gopark/


def worker_environment(endpoint: str, token: str, worker_id: str, work_dir: str, mem_bytes: int,
                       compress: bool, argv_file: str) -> dict[str, str]:
    """What a worker needs to know, passed in its environment."""
    env = dict(os.environ)
    env.update({
        "GOPARK_ROLE": "worker",
        "GOPARK_DRIVER": endpoint,
        "GOPARK_TOKEN": token,
        "GOPARK_WORKER_ID": worker_id,
        "GOPARK_WORK_DIR": work_dir,
        "GOPARK_MEM": str(mem_bytes),
        "GOPARK_COMPRESS": "1" if compress else "",
        "GOPARK_DRIVER_PID": str(os.getpid()),
        "PYTHONPATH": os.pathsep.join(registry.worker_path()),
        registry.USER_PYTHONPATH_ENV: "=" + os.environ["PYTHONPATH"] if "PYTHONPATH" in os.environ else "",
        registry.ARGV_FILE_ENV: argv_file,
        # one str hash seed in every worker (the driver's if it has one), as PySpark's executors: hash(word)
        # in a task must not depend on the worker that ran it
        "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0"),
    })
    main_name, main_file = registry.main_module_name(), registry.main_module_file()
    # "__main__" when the driver's has no name to import (python -c): not the worker's own script's
    env[registry.MAIN_NAME_ENV] = main_name or "__main__"
    if main_name and main_name != "__main__" and main_file and os.path.isfile(main_file):
        env[registry.MAIN_FILE_ENV] = main_file    # (frozen, the app is a module inside the binary)
    return env


def _write_argvs(work_dir: str, argvs: tuple[list[str], list[str]]) -> str:
    """The driver's arguments (see ``registry.ARGV_FILE_ENV``) in a file of the work folder: its path. (Not in
    the environment, where one variable holds at most 128 KiB: a command line of many input files is more.)"""
    path = os.path.join(work_dir, "argv.json")
    argv, import_argv = (registry.argv_strings(args) for args in argvs)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"argv": argv, "import_argv": import_argv}, f)
    return path


@dataclasses.dataclass
class _Worker:
    wid: str
    proc: subprocess.Popen
    pidfd: int
    ready: bool = False
    task: int | None = None
    ending: float | None = None     # sent SIGTERM (its task cancelled): killed if still there at this time


class ProcessBackend:
    """A pool of ``n`` worker processes fed by one I/O thread."""

    def __init__(self, n: int, post: Callable[[tuple], None], work_dir: str, mem_bytes: int,
                 compress: bool, extra_env: dict[str, str] | None = None,
                 argvs: tuple[list[str], list[str]] | None = None) -> None:
        """``argvs``: the driver's ``sys.argv`` after and before its Context took gopark's options out (this
        process's, as it is now, by default), for the workers (see ``registry.ARGV_FILE_ENV``)."""
        self.default_parallelism = n
        self._argv_file = _write_argvs(work_dir, argvs or (sys.argv, registry.ARGV_AT_IMPORT))
        self._extra_env = extra_env or {}
        self._compress = compress
        self._post = post
        self._work_dir = work_dir
        self._trash = Trash(work_dir)
        self._mem = mem_bytes
        self._token = os.urandom(16).hex()
        self._mark = os.urandom(8).hex()    # each worker's is this, "-", its id (see ops.end_piped_commands)
        sock = os.path.join(work_dir, "driver.sock")
        self._sock_dir = None
        if len(sock) > _MAX_IPC_PATH:    # e.g. deep in a Mesos sandbox: a short private folder of its own
            # named like a Context's work folder, so the next Context removes it if this process is killed
            self._sock_dir = sock = tempfile.mkdtemp(prefix=f"gopark-{os.getpid()}-sock-")
            sock = os.path.join(sock, "driver.sock")
        self._endpoint = f"ipc://{sock}"
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._lock = threading.Lock()
        self._submitted: collections.deque = collections.deque()
        self._cancelled: set[int] = set()
        self._queue: collections.deque[tuple[int, bytes, list[str]]] = collections.deque()
        self._workers: dict[str, _Worker] = {}
        self._by_fd: dict[int, _Worker] = {}
        self._seq = 0
        self._size = n              # workers to keep (grow() raises it); a dead one is replaced
        self._early_deaths = 0
        self._spawn_error: str | None = None     # why the last worker could not be started
        self._broken: str | None = None
        self._stopping = False
        self._spawned_for = 0       # worker slots started (deaths are replaced in _handle_exit)
        self._zctx: zmq.Context | None = None
        self._router: zmq.Socket | None = None
        try:
            # first: see the module's description. With SIGINT and SIGTERM blocked, as the pool's thread
            # spawns: a worker starts with them blocked and takes them only once it ignores SIGINT (a
            # terminal's Ctrl-C, which reaches the whole process group, printed a starting worker's traceback)
            held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            try:
                self._spawn_missing()
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
            import zmq
            self._zctx = zmq.Context()
            self._router = self._zctx.socket(zmq.ROUTER)
            self._router.setsockopt(zmq.LINGER, 0)
            self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
            self._router.bind(self._endpoint)
        except BaseException:       # (a bind that fails...): nothing started is left behind
            self._shutdown()
            os.close(self._wake)
            raise
        self._thread = threading.Thread(target=self._loop, name="gopark-process-backend", daemon=True)
        self._thread.start()

    # -- called by the scheduler thread ---------------------------------------------
    def submit(self, tid: int, payload: bytes, preferred: list[str]) -> None:
        with self._lock:
            if self._broken or self._stopping:      # nobody is left to run it: say so now rather than never
                self._post(("lost", tid, self._broken or "the Context was stopped", "driver"))
                return
            self._submitted.append((tid, payload, preferred))
            os.eventfd_write(self._wake, 1)

    def grow(self, n: int) -> None:
        """Keep at least ``n`` workers from now on (a Mesos executor given more tasks than it has workers)."""
        with self._lock:
            if n <= self._size or self._stopping:
                return
            self._size = n
            os.eventfd_write(self._wake, 1)

    def cancel(self, tids: list[int]) -> None:
        """Drop these tasks: unsent ones are forgotten, a worker running one is ended (and replaced)."""
        with self._lock:
            if self._stopping:      # every worker is being ended anyway
                return
            self._cancelled.update(tids)
            os.eventfd_write(self._wake, 1)

    def drop_shuffles(self, shuffle_ids: list[int]) -> None:
        """The workers wrote these shuffles' map outputs into this pool's work folder: remove them there."""
        shuffle.remove_shuffles(shuffle_ids, self._work_dir, self._trash)

    def drop_cached(self, rdd_ids: list[int]) -> None:
        """The workers' disk copies go now (their own, with the live list of their next task)."""
        from gopark.task import remove_cached  # here: the executor imports this module, runs no task
        remove_cached(rdd_ids, self._work_dir, self._trash)

    def stop(self) -> None:
        """End every worker and the I/O thread; safe to call twice, and from any thread (a job another
        thread runs may still submit or cancel meanwhile: they do nothing from now on)."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            os.eventfd_write(self._wake, 1)
        self._thread.join()
        os.close(self._wake)      # only now: the I/O thread reads it, and the lock keeps writers out
        self._trash.close()

    @property
    def worker_pids(self) -> list[int]:
        return [w.proc.pid for w in list(self._workers.values())]

    # -- the I/O thread ---------------------------------------------------------------
    def _loop(self) -> None:
        import zmq
        # signals go to the main thread, whose wait for scheduler events they must interrupt (Ctrl-C)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._wake, zmq.POLLIN)
        for fd in self._by_fd:          # the workers __init__ started
            poller.register(fd, zmq.POLLIN)
        try:
            self._check_alive()
            while not self._stopping:
                ready = dict(poller.poll(self._kill_late()))
                if self._router in ready:
                    self._receive()
                if self._wake in ready:
                    os.eventfd_read(self._wake)
                    with self._lock:
                        while self._submitted:
                            self._queue.append(self._submitted.popleft())
                    self._take_cancellations()
                    for fd in self._spawn_missing():     # grow()
                        poller.register(fd, zmq.POLLIN)
                    self._check_alive()
                for fd in [fd for fd in ready if fd in self._by_fd]:
                    self._handle_exit(poller, self._by_fd[fd])
                self._dispatch()
        except Exception:  # the backend itself broke: every task it holds is lost, later ones too
            log.exception("the process backend failed")
            with self._lock:
                self._broken = "the process backend failed"
                held = [t[0] for t in self._queue] + [t[0] for t in self._submitted]
                held += [w.task for w in self._workers.values() if w.task is not None]
                self._queue.clear()
                self._submitted.clear()
            for tid in held:
                self._post(("lost", tid, self._broken, "driver"))
        finally:
            self._shutdown()

    def _check_alive(self) -> None:
        """After spawning: with no worker alive since starting one failed, nothing would start one again
        (only a death does): the pool is broken, and its tasks say why instead of waiting for ever."""
        if not self._workers and self._spawn_error is not None and not self._broken:
            self._broken = f"workers cannot be started: {self._spawn_error}"

    def _spawn_missing(self) -> list[int]:
        """Start the workers of slots not started yet (all of them at first; then those ``grow`` added);
        their pidfds (for the poller)."""
        fds = []
        while self._spawned_for < self._size and not self._broken:
            self._spawned_for += 1
            fds += self._spawn()
        return fds

    def _spawn(self) -> list[int]:
        """Start one worker; its pidfd, or none if it could not be started."""
        replaced = binary.replaced()
        if replaced:      # the workers still up run on; when none is left, the pool is broken (_check_alive)
            if self._spawn_error is None:
                log.warning("%s: no new worker is started", replaced)
            self._spawn_error = replaced
            return []
        self._seq += 1
        wid = f"w{self._seq}"
        env = worker_environment(self._endpoint, self._token, wid, self._work_dir, self._mem, self._compress,
                                 self._argv_file)
        env.update(self._extra_env)
        env[ops.PIPE_MARK_ENV] = f"{self._mark}-{wid}"
        try:
            proc = subprocess.Popen(worker_command(), env=env, stdin=subprocess.DEVNULL, close_fds=True)
        except OSError as exc:      # e.g. no more processes or files: as if it died at once
            log.warning("cannot start a worker: %s", exc)
            self._early_deaths += 1
            self._spawn_error = str(exc)
            if self._early_deaths >= _MAX_EARLY_DEATHS:
                self._broken = f"workers cannot be started: {exc}"
            return []
        try:
            pidfd = os.pidfd_open(proc.pid)
        except BaseException:       # no file left (EMFILE): it could not be watched, so it does not run
            proc.kill()
            proc.wait()
            raise
        log.debug("worker %s started (pid %d)", wid, proc.pid)
        w = _Worker(wid, proc, pidfd)
        self._workers[wid] = w
        self._by_fd[pidfd] = w
        return [pidfd]

    def _receive(self) -> None:
        ended: list[tuple] = []
        try:
            self._receive_into(ended)
        finally:
            # a worker that answered gets its next task before the scheduler thread, woken by the answer,
            # holds the GIL to unpack it (a big result takes milliseconds in C, with no switch)
            if ended:
                self._take_cancellations()
                self._dispatch()
            for event in ended:
                self._post(event)

    def _receive_into(self, ended: list[tuple]) -> None:
        import hmac

        import zmq
        while True:
            try:
                frames = self._router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            wid = frames[0].decode()
            w = self._workers.get(wid)
            if w is None:
                continue
            if frames[1] == b"hello":
                if len(frames) == 3 and hmac.compare_digest(frames[2], self._token.encode()):
                    w.ready = True
                    self._early_deaths = 0
                else:
                    log.warning("worker %s sent a bad token; ignoring it", wid)
            elif frames[1] == b"result" and w.ready and w.task is not None:
                tid = int(frames[2])
                if tid == w.task:
                    w.task = None
                    ended.append(("end", tid, frames[3], wid))

    def _handle_exit(self, poller: zmq.Poller, w: _Worker) -> None:
        import zmq
        poller.unregister(w.pidfd)
        os.close(w.pidfd)
        del self._by_fd[w.pidfd]
        del self._workers[w.wid]
        code = w.proc.wait()
        reason = f"worker {w.wid} (pid {w.proc.pid}) died with exit code {code}"
        log.info("%s", reason)
        if code and self._piped():      # killed (SIGKILL, OOM) in the middle of a pipe: what it started
            ops.end_piped_commands(f"{self._mark}-{w.wid}\0")
        if code:        # killed in the middle of a spill, maybe: what it spilled
            from gopark.task import spill_root
            self._trash.throw([spill_root(self._work_dir, w.wid)])
        if w.task is not None:
            self._post(("lost", w.task, reason, w.wid))
        if not w.ready and code > 0:   # failed on its own before serving (not killed): a crash loop?
            self._early_deaths += 1
            if self._early_deaths >= _MAX_EARLY_DEATHS:
                self._broken = f"workers die before they start ({reason}); see their error above"
        if not self._stopping and not self._broken:
            for fd in self._spawn():
                poller.register(fd, zmq.POLLIN)
            self._check_alive()

    def _take_cancellations(self) -> None:
        """The tasks ``cancel`` was given since the last look: dropped from the queue, their workers ended."""
        with self._lock:
            cancelled, self._cancelled = self._cancelled, set()
        if cancelled:
            self._cancel(cancelled)

    def _cancel(self, tids: set[int]) -> None:
        self._queue = collections.deque(t for t in self._queue if t[0] not in tids)
        for w in self._workers.values():
            if w.task in tids and w.ending is None:
                # SIGTERM: it ends the task (its finally blocks run: a pipe's command is ended) and leaves;
                # its exit is seen through its pidfd, and a new worker takes its place
                w.proc.terminate()
                w.ending = time.monotonic() + _LEAVE_SECONDS

    def _kill_late(self) -> int | None:
        """Kill the workers sent SIGTERM that are still there at their deadline; the milliseconds until
        the next such deadline (None: there is none), for the loop's poll."""
        now = time.monotonic()
        endings = [w for w in self._workers.values() if w.ending is not None]
        for w in endings:
            if w.ending <= now:         # type: ignore[operator]
                w.proc.kill()
                w.ending = math.inf     # killed: still leaving (never given a task) until its exit is seen
        waiting = [w.ending - now for w in endings if w.ending < math.inf]     # type: ignore[operator]
        return max(1, int(min(waiting) * 1000) + 1) if waiting else None

    def _dispatch(self) -> None:
        import zmq
        if self._broken:
            for tid, _, _ in self._queue:
                self._post(("lost", tid, self._broken, "driver"))
            self._queue.clear()
            return
        # (a worker sent SIGTERM is leaving, also when its cancelled task's result came in first)
        idle = [w for w in self._workers.values() if w.ready and w.task is None and w.ending is None]
        while idle and self._queue:
            tid, payload, preferred = task = self._queue.popleft()
            w = next((w for w in idle if w.wid in preferred), idle[0])
            idle.remove(w)
            try:
                self._router.send_multipart([w.wid.encode(), b"task", str(tid).encode(), payload], copy=False)
            except zmq.ZMQError:    # it died since the poll: its pidfd will say so; the task waits
                w.ready = False
                self._queue.appendleft(task)
                continue
            w.task = tid

    def _shutdown(self) -> None:
        """Idle workers are asked to leave; busy or unstarted ones get SIGTERM (all of them when
        ``__init__`` failed: none had said hello), on which a worker ends its task (whose ``finally``
        blocks end the commands a ``pipe`` started) and leaves; any still there by the deadline are killed."""
        for w in self._workers.values():
            if w.ending is None and not (w.ready and w.task is None and self._ask_to_leave(w)):
                w.proc.terminate()       # (one sent SIGTERM already, its task cancelled, is leaving)
        # their pidfds say when they have exited (Popen.wait with a timeout polls with sleeps of up to 50 ms)
        deadline = time.monotonic() + _LEAVE_SECONDS
        for w in self._workers.values():
            if not select.select([w.pidfd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                w.proc.kill()
            w.proc.wait()
            os.close(w.pidfd)
        self._workers.clear()
        self._by_fd.clear()
        if self._piped():           # what the pool's commands started and left running (a daemon...)
            ops.end_piped_commands(f"{self._mark}-")
        if self._router is not None:
            self._router.close(0)
        if self._zctx is not None and self._router is not None:
            self._zctx.term()
        # (with no router: its making failed, maybe after zmq made the socket, which term() would wait for
        # for ever; the context is left to the garbage collector)
        if self._sock_dir:
            shutil.rmtree(self._sock_dir, ignore_errors=True)

    def _piped(self) -> bool:
        """A worker of this pool has piped to a command (see ops.pipe_lines)."""
        return os.path.exists(os.path.join(self._work_dir, ops.PIPED))

    def _ask_to_leave(self, w: _Worker) -> bool:
        """Send an idle worker ``stop``; False if it cannot be sent (it died meanwhile)."""
        import zmq
        try:
            self._router.send_multipart([w.wid.encode(), b"stop"], zmq.NOBLOCK)   # type: ignore[union-attr]
        except zmq.ZMQError:
            return False
        return True
