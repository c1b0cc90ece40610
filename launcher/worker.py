"""The task loop of one worker subprocess (process mode, and the Mesos executor's pool).

Started by the driver with its endpoint, token and work folder in the
environment (see ``gopark.scheduler.process.worker_environment``). It dies with
its parent, ignores Ctrl-C (the driver stops it), leaves on SIGTERM (the driver's
stop while it runs a task: the task's ``finally`` blocks run, ending the commands
its ``pipe`` started), connects to the one driver that started it, proves it
with the token, then runs tasks until told to stop.
The app's modules are imported when a task first names one of their functions,
under their own names (the main script never as ``__main__``).
"""
from __future__ import annotations

import gc
import os
import signal
import sys

import zmq

from gopark.errors import Terminated
from gopark.ops import parent_death_signal
from gopark.registry import driver_argv, take_worker_path
from gopark.task import WorkerEnv, run_task


def die_with_parent(expected_parent: int | None = None) -> None:
    """Ask the kernel to SIGKILL this process when its parent goes, however it goes; exit at once if the
    parent is no longer ``expected_parent`` (it died before we could ask)."""
    ask = parent_death_signal(expected_parent)
    if ask is not None:
        ask()
    elif expected_parent is not None and os.getppid() != expected_parent:
        os._exit(1)


def serve(endpoint: str, token: str, worker_id: str, env: WorkerEnv) -> None:
    """Run the tasks the driver at ``endpoint`` sends until it says stop."""
    zctx = zmq.Context()
    sock = zctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.setsockopt(zmq.IDENTITY, worker_id.encode())
    sock.setsockopt(zmq.RECONNECT_IVL, 10)    # the driver binds as its workers start: try again soon
    sock.connect(endpoint)
    sock.send_multipart([b"hello", token.encode()])
    try:
        while True:
            frames = sock.recv_multipart(copy=False)
            kind = frames[0].bytes
            if kind == b"stop":
                return
            if kind == b"task":
                tid = frames[1].bytes
                sock.send_multipart([b"result", tid, run_task(frames[2].bytes, env)], copy=False)
    finally:
        sock.close()
        zctx.term()


def _leave(signum: int, frame: object) -> None:
    """SIGTERM: end the task being run (Terminated is not the task's failure, see run_task), then the
    process, as an exit (SystemExit) does. Once: a second one must not cut short the task's ``finally``
    blocks (which end what a ``pipe`` started)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated(128 + signum)


def main() -> int:
    die_with_parent(int(os.environ["GOPARK_DRIVER_PID"]))
    if getattr(sys, "frozen", False):   # a frozen program ignores PYTHONPATH: the driver's sys.path, after the bundle's
        take_worker_path(os.environ.get("PYTHONPATH", "").split(os.pathsep))
    argv = driver_argv("argv")      # the driver's, as its functions see them there
    if argv is not None:
        sys.argv = argv
    # the spawner blocks both: a Ctrl-C pending since is dropped, a SIGTERM (cancelled before serving) ends it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.signal(signal.SIGTERM, _leave)
    env = WorkerEnv(os.environ["GOPARK_WORK_DIR"], int(os.environ["GOPARK_MEM"]),
                    os.environ["GOPARK_WORKER_ID"], cache_on_disk=True,
                    compress=bool(os.environ.get("GOPARK_COMPRESS")),
                    files_url=os.environ.get("GOPARK_FILES_URL") or None)
    # what the start made (modules, functions, classes) lives as long as the process: kept out of every
    # garbage collection, among them the last one, at exit, which walked it all, cold (a third of a stop)
    gc.freeze()
    serve(os.environ["GOPARK_DRIVER"], os.environ["GOPARK_TOKEN"], os.environ["GOPARK_WORKER_ID"], env)
    # no task left to end: a SIGTERM from here on (a service manager's to the app's process group as it stops)
    # ends the process as it would any program, not by an exception raised inside the interpreter's exit
    # (the app's atexit handlers, threading's shutdown), which Python prints as "Exception ignored"
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return 0        # a normal exit: the app's atexit handlers run and its open files are flushed


if __name__ == "__main__":
    sys.exit(main())
