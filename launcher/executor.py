"""The Mesos executor role of the binary: one per agent and framework, started by the agent.

The agent's fetcher downloaded this binary from the driver (under its sha256)
and started it with ``GOPARK_ROLE=executor``. Before anything else it checks
its own sha256 against the one the driver announced (``GOPARK_SHA256``); on a
mismatch it runs no task and answers each with TASK_FAILED saying so.

Otherwise it serves its work folder over HTTP (``launcher.fileserver``: map
outputs for reducers elsewhere, large results for the driver) and runs tasks
in a pool of worker subprocesses of the same binary (the process backend:
a worker that dies loses only its task). Status updates:

- TASK_RUNNING, its data the URL of this executor's file server;
- TASK_FINISHED, data ``b"R" + packed result``, or ``b"U" + url`` when the
  result is large (a one-shot file the driver fetches);
- TASK_FAILED when the worker running it died; TASK_KILLED when asked.

A task's own exception is a finished task with a failed result: the DAG
scheduler decides about retries. ``shutdown`` (framework torn down) ends the
pool and removes the work folder.
"""
from __future__ import annotations

import base64
import functools
import json
import logging
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from typing import Any

from gopark import binary
from gopark.scheduler.mesos import INLINE_RESULT

log = logging.getLogger("gopark.executor")
_SEND_RETRIES = (0.2, 0.5, 1, 2, 4, 8)   # seconds between attempts to send one status update


class GoparkExecutor:
    """pymesos callbacks; the pool and the file server start at registration."""

    def __init__(self, hash_error: str | None) -> None:
        self.hash_error = hash_error     # set: every task is answered TASK_FAILED with it
        self.pool: Any = None
        self.files: Any = None
        self.work_dir: str | None = None
        self.files_url = ""
        self._task_ids: dict[int, dict] = {}
        self._killed: set[int] = set()
        self._updates: queue.Queue = queue.Queue()
        self._driver: Any = None
        self._lock = threading.Lock()
        self._sender = threading.Thread(target=self._send_updates, name="gopark-status", daemon=True)

    # -- pymesos callbacks -------------------------------------------------------------
    def registered(self, driver: Any, executor_info: dict, framework_info: dict, agent_info: dict) -> None:
        self._driver = driver
        self._sender.start()
        if self.hash_error:
            return
        try:
            self._start(executor_info, agent_info)
        except Exception as exc:   # no pool: say why to every task rather than leave them hanging
            log.exception("the executor cannot start")
            self.hash_error = f"gopark executor on {agent_info.get('hostname')} cannot start: {exc}"

    def _start(self, executor_info: dict, agent_info: dict) -> None:
        from gopark.scheduler.process import ProcessBackend
        from launcher.fileserver import FileServer, local_address

        config = json.loads(base64.b64decode(executor_info["data"]))
        self.work_dir = tempfile.mkdtemp(prefix="gopark-executor-", dir=os.environ.get("MESOS_SANDBOX") or None)
        self.files = FileServer(local_address(os.environ["MESOS_AGENT_ENDPOINT"]))
        self.files_url = self.files.add_root("work", self.work_dir)
        self.pool = ProcessBackend(config["workers"], self._on_event, self.work_dir, config["mem"],
                                   config["compress"], extra_env={"GOPARK_FILES_URL": self.files_url},
                                   argvs=config.get("argvs"))
        log.info("executor of %s ready: %d workers, files at %s", agent_info.get("hostname"),
                 config["workers"], self.files_url)

    def reregistered(self, driver: Any, agent_info: dict) -> None:
        self._driver = driver

    def disconnected(self, driver: Any) -> None:
        log.info("disconnected from the agent")

    def launchTask(self, driver: Any, task: dict) -> None:  # noqa: N802 (pymesos' names)
        task_id = task["task_id"]
        if self.hash_error:
            self._update(task_id, "TASK_FAILED", message=self.hash_error)
            return
        tid = int(task_id["value"])
        with self._lock:
            self._task_ids[tid] = task_id
            held = len(self._task_ids)
        self._update(task_id, "TASK_RUNNING", data=self.files_url.encode())
        # Mesos gave each task its own resources: as many workers as tasks held (the pool started
        # with what the agent's first offer held, and later offers may hold more)
        self.pool.grow(held)
        self.pool.submit(tid, base64.b64decode(task["data"]), [])

    def launchTaskGroup(self, driver: Any, tasks: list[dict]) -> None:  # noqa: N802
        for task in tasks:
            self.launchTask(driver, task)

    def killTask(self, driver: Any, task_id: dict) -> None:  # noqa: N802
        tid = int(task_id["value"])
        with self._lock:
            known = self._task_ids.pop(tid, None)
            self._killed.add(tid)
        if self.pool is not None:
            self.pool.cancel([tid])
        self._update(known or task_id, "TASK_KILLED")

    def frameworkMessage(self, driver: Any, message: str) -> None:  # noqa: N802
        """What the driver no longer wants: ``{"drop_shuffles": [shuffle_id, ...]}``, map outputs of dropped
        shuffles; ``{"drop_cached": [rdd_id, ...]}``, cached partitions of dropped or unpersisted RDDs."""
        try:
            said = json.loads(base64.b64decode(message))
            shuffle_ids, rdd_ids = said.get("drop_shuffles") or [], said.get("drop_cached") or []
        except (ValueError, TypeError, AttributeError):
            log.warning("ignored a framework message that is not gopark's: %.80r", message)
            return
        pool = self.pool
        if pool is None:        # it could not start: no task ran
            return
        if isinstance(shuffle_ids, list) and all(type(i) is int for i in shuffle_ids):
            pool.drop_shuffles(shuffle_ids)
        if isinstance(rdd_ids, list):
            pool.drop_cached(rdd_ids)

    def error(self, driver: Any, message: str) -> None:
        log.error("agent: %s", message)

    def shutdown(self, driver: Any) -> None:
        self.close()

    # -- the pool's events (its I/O thread) ------------------------------------------
    def _on_event(self, event: tuple) -> None:
        kind, tid, payload = event[0], event[1], event[2]
        with self._lock:
            task_id = self._task_ids.pop(tid, None)
            if tid in self._killed:
                self._killed.discard(tid)
                return
        if task_id is None:
            return
        if kind == "lost":
            self._update(task_id, "TASK_FAILED", message=str(payload))
        elif len(payload) <= INLINE_RESULT:
            self._update(task_id, "TASK_FINISHED", data=b"R" + payload)
        else:   # written to disk by the status thread, not this one (the pool's, which feeds workers)
            self._updates.put(functools.partial(self._large_result, task_id, tid, payload))

    def _large_result(self, task_id: dict, tid: int, payload: bytes) -> dict:
        path = os.path.join(self.work_dir, "results", str(tid))  # type: ignore[arg-type]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(payload)
        url = self.files.publish(f"result/{tid}", path, one_shot=True)
        return _status(task_id, "TASK_FINISHED", b"U" + url.encode())

    # -- status updates, sent in order from one thread ---------------------------------
    def _update(self, task_id: dict, state: str, data: bytes = b"", message: str = "") -> None:
        status = _status(task_id, state, data, message)
        self._updates.put(lambda: status)

    def _send_updates(self) -> None:
        while True:
            make = self._updates.get()   # what makes the next status, or None: stop
            if make is None:
                return
            status = make()
            for delay in (*_SEND_RETRIES, None):
                try:
                    self._driver.sendStatusUpdate(status)
                    break
                except Exception:   # pymesos opens a new connection to the agent at the next call
                    if delay is None:
                        # pymesos keeps no unacknowledged updates to send again: a lost final
                        # update would leave the driver waiting forever. Ending the executor makes
                        # the agent report its tasks lost, and the driver runs them again.
                        log.exception("cannot send the status of task %s; the executor ends",
                                      status["task_id"]["value"])
                        os._exit(3)
                    time.sleep(delay)

    def close(self) -> None:
        """End the pool and the file server, remove the work folder; safe to call twice."""
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.stop()
        files, self.files = self.files, None
        if files is not None:
            files.stop()
        if self.work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        if self._sender.is_alive():
            self._updates.put(None)
            self._sender.join(timeout=5)


def _status(task_id: dict, state: str, data: bytes = b"", message: str = "") -> dict:
    status: dict[str, Any] = {"task_id": task_id, "state": state}
    if data:
        status["data"] = base64.b64encode(data).decode()
    if message:
        status["message"] = message
    return status


def check_binary() -> str | None:
    """Why this binary must not run tasks (its sha256 is not the driver's), or None."""
    expected = os.environ.get("GOPARK_SHA256", "")
    actual = binary.sha256()
    if expected != actual:
        return (f"gopark: the executor's binary has sha256 {actual}, not {expected or '(none announced)'} "
                "as the driver announced: the agent fetched another build")
    return None


def main() -> int:
    logging.basicConfig(format="%(asctime)s %(name)s %(message)s", level=logging.INFO, stream=sys.stderr)
    hash_error = check_binary()
    if hash_error:
        print(hash_error, file=sys.stderr)
    missing = [k for k in ("MESOS_AGENT_ENDPOINT", "MESOS_FRAMEWORK_ID", "MESOS_EXECUTOR_ID") if k not in os.environ]
    if missing:
        print(f"gopark: error: the executor role is started by a Mesos agent ({', '.join(missing)} not set)",
              file=sys.stderr)
        return 2
    from gopark.scheduler.mesos_http import import_pymesos
    pymesos = import_pymesos()
    executor = GoparkExecutor(hash_error)
    driver = pymesos.MesosExecutorDriver(executor, use_addict=False)
    try:
        driver.run()
    finally:
        executor.close()
    return 1 if hash_error else 0
