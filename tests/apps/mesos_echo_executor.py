"""A pymesos custom executor for the Mesos double's tests (tests/test_mesos_double.py).

The agent fetches this file into a sandbox and runs it with ``python``. Each
task's ``data`` is base64 of a JSON object telling it what to do:

* ``{}``: TASK_RUNNING, then TASK_FINISHED whose ``data`` is the task's own
  ``data`` and whose ``message`` is a JSON report (pid, cwd, MESOS_* env);
* ``{"size": n}``: as above, but the FINISHED ``data`` is base64 of n bytes;
* ``{"hold": true}``: TASK_RUNNING, then nothing until KILL (TASK_KILLED);
* ``{"exit": code}``: TASK_RUNNING, then the process exits with ``code``;
* ``{"say": text}``: a framework message ``text`` to the scheduler, then as ``{}``.

A framework message ``x`` is answered with ``echo:x``. SHUTDOWN ends the
process with exit code 0, unless ``ECHO_IGNORE_SHUTDOWN`` is set: then it
stays until the agent kills it.
"""
from __future__ import annotations

import base64
import json
import os
import sys
import threading

from gopark.scheduler.mesos_http import import_pymesos

pymesos = import_pymesos()

done = threading.Event()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def report() -> str:
    env = {k: v for k, v in os.environ.items() if k.startswith("MESOS_") or k.startswith("ECHO_")}
    return json.dumps({"pid": os.getpid(), "cwd": os.getcwd(), "env": env})


class EchoExecutor(pymesos.Executor):
    def launchTask(self, driver, task):
        threading.Thread(target=self._run, args=(driver, task), daemon=True).start()

    def _run(self, driver, task):
        task_id = task["task_id"]
        order = json.loads(base64.b64decode(task.get("data") or b64(b"{}")))
        driver.sendStatusUpdate({"task_id": task_id, "state": "TASK_RUNNING", "message": report()})
        if order.get("hold"):
            return
        if "exit" in order:
            sys.stdout.flush()
            os._exit(int(order["exit"]))
        if "say" in order:
            driver.sendFrameworkMessage(b64(order["say"].encode()))
        data = b64(b"x" * int(order["size"])) if "size" in order else task.get("data", "")
        driver.sendStatusUpdate({"task_id": task_id, "state": "TASK_FINISHED", "data": data, "message": report()})

    def killTask(self, driver, task_id):
        driver.sendStatusUpdate({"task_id": task_id, "state": "TASK_KILLED"})

    def frameworkMessage(self, driver, message):
        driver.sendFrameworkMessage(b64(b"echo:" + base64.b64decode(message)))

    def shutdown(self, driver):
        print("shutdown requested", flush=True)
        if not os.environ.get("ECHO_IGNORE_SHUTDOWN"):
            done.set()


def main() -> int:
    print("echo executor", report(), flush=True)
    driver = pymesos.MesosExecutorDriver(EchoExecutor())
    driver.start()
    done.wait()
    driver.stop()
    driver.join()
    print("exit 0", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
