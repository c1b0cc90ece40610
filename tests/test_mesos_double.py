"""The Mesos double (tests/mesos_double.py) against unmodified pymesos 0.3.15 drivers.

Each test drives a real ``MesosSchedulerDriver`` and real executor processes
(``tests/apps/mesos_echo_executor.py``, a pymesos ``MesosExecutorDriver``
fetched over HTTP from a loopback file server) and checks what a scheduler
sees: offers, status updates, executor and agent losses. A fixture checks
after every test that no executor process the double spawned is still alive.
"""
from __future__ import annotations

import base64
import gzip
import http.client
import http.server
import io
import json
import logging
import os
import shutil
import socket
import socketserver
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from apps.procs import alive, listening_tcp, socket_inodes
from mesos_double import FetchError, MesosCluster, _Fetcher

from gopark.scheduler.mesos_http import import_pymesos

pymesos = import_pymesos()
logging.getLogger("pymesos").setLevel(logging.CRITICAL)

EXECUTOR_SCRIPT = Path(__file__).parent / "apps" / "mesos_echo_executor.py"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def scalar(name: str, value: float) -> dict:
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}}


def offered(offer: dict) -> dict[str, float]:
    return {r["name"]: r["scalar"]["value"] for r in offer["resources"]}


# --------------------------------------------------------------------------- helpers
class FileServer:
    """Serves a folder over HTTP on 127.0.0.1 and remembers the paths it was asked for."""

    def __init__(self, root: Path) -> None:
        requests = self.requests = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                requests.append(self.path)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def server_bind(self) -> None:
                socketserver.TCPServer.server_bind(self)   # no reverse DNS lookup

        self._server = Server(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/{name}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class Recorder(pymesos.Scheduler):
    """A scheduler that records every callback, for tests to wait on."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.events: list[tuple[str, Any]] = []
        self.offers: dict[str, dict] = {}        # outstanding offers by id

    def _add(self, kind: str, payload: Any) -> None:
        with self.cond:
            self.events.append((kind, payload))
            self.cond.notify_all()

    def registered(self, driver, framework_id, master_info):
        self._add("registered", framework_id["value"])

    def reregistered(self, driver, master_info):
        self._add("reregistered", master_info)

    def resourceOffers(self, driver, offers):
        with self.cond:
            for offer in offers:
                self.offers[offer["id"]["value"]] = offer
        self._add("offers", offers)

    def offerRescinded(self, driver, offer_id):
        with self.cond:
            self.offers.pop(offer_id["value"], None)
        self._add("rescind", offer_id["value"])

    def statusUpdate(self, driver, status):
        self._add("update", status)

    def frameworkMessage(self, driver, executor_id, agent_id, data):
        self._add("message", (executor_id["value"], agent_id["value"], base64.b64decode(data)))

    def executorLost(self, driver, executor_id, agent_id, status):
        self._add("executor_lost", (executor_id["value"], agent_id["value"], status))

    def slaveLost(self, driver, agent_id):
        self._add("agent_lost", agent_id["value"])

    def error(self, driver, message):
        self._add("error", message)

    # -- waiting -------------------------------------------------------------------------------
    def wait(self, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
        with self.cond:
            result = self.cond.wait_for(predicate, timeout)
        assert result, f"timed out waiting for {what or predicate}; events: {self.events}"
        return result

    def take_offer(self, agent_id: str | None = None, cpus: float = 0.0, timeout: float = 10.0) -> dict:
        """Wait for an outstanding offer (of ``agent_id``, with at least ``cpus``) and take it."""
        def find():
            for oid, offer in self.offers.items():
                if (agent_id in (None, offer["agent_id"]["value"])
                        and offered(offer).get("cpus", 0.0) >= cpus - 1e-9):
                    return oid
            return None
        oid = self.wait(find, timeout, f"an offer of {agent_id or 'any agent'} with {cpus} cpus")
        with self.cond:
            return self.offers.pop(oid)

    def of_kind(self, kind: str) -> list[Any]:
        with self.cond:
            return [payload for k, payload in self.events if k == kind]

    def updates(self, task_id: str) -> list[dict]:
        return [s for s in self.of_kind("update") if s["task_id"]["value"] == task_id]

    def wait_update(self, task_id: str, state: str, timeout: float = 10.0) -> dict:
        def find():
            return next((s for s in self.updates(task_id) if s["state"] == state), None)
        return self.wait(find, timeout, f"{task_id} {state}")

    def decline_all(self, driver, refuse_seconds: float) -> None:
        with self.cond:
            ids = [offer["id"] for offer in self.offers.values()]
            self.offers.clear()
        if ids:
            driver.declineOffer(ids, {"refuse_seconds": refuse_seconds})


class Framework:
    """A started pymesos scheduler driver with its Recorder."""

    def __init__(self, master: str, failover_timeout: float = 0.0, implicit_acknowledgements: bool = True) -> None:
        self.sched = Recorder()
        info = {"user": "", "name": "double-test", "hostname": "127.0.0.1", "failover_timeout": failover_timeout}
        self.driver = pymesos.MesosSchedulerDriver(self.sched, info, master, use_addict=False,
                                                   implicit_acknowledgements=implicit_acknowledgements)
        self.driver.start()
        self.id = self.sched.wait(lambda: self.sched.of_kind("registered"), what="SUBSCRIBED")[0]

    def launch(self, offer: dict, *tasks: dict, refuse_seconds: float = 0.0) -> None:
        self.driver.launchTasks(offer["id"], list(tasks), {"refuse_seconds": refuse_seconds})

    def stop(self, failover: bool = False) -> None:
        self.driver.stop(failover)
        self.driver.join()


def echo_task(task_id: str, offer: dict, executor_id: str, url: str, order: dict | None = None,
              cpus: float = 0.5, mem: float = 64.0, env: dict[str, str] | None = None) -> dict:
    """A TaskInfo for the echo executor, fetched from ``url`` through the agent's cache."""
    variables = [{"name": k, "value": v} for k, v in sorted({"ECHO_MARK": "marked", **(env or {})}.items())]
    return {
        "name": task_id, "task_id": {"value": task_id}, "agent_id": offer["agent_id"],
        "resources": [scalar("cpus", cpus), scalar("mem", mem)],
        "data": b64(json.dumps(order or {}).encode()),
        "executor": {
            "executor_id": {"value": executor_id}, "name": "echo executor",
            "resources": [scalar("cpus", 0.1), scalar("mem", 32.0)],
            "command": {"value": f"{sys.executable} mesos_echo_executor.py",
                        "uris": [{"value": url, "cache": True, "extract": False}],
                        "environment": {"variables": variables}},
        },
    }


def command_task(task_id: str, offer: dict, command: str) -> dict:
    return {"name": task_id, "task_id": {"value": task_id}, "agent_id": offer["agent_id"],
            "resources": [scalar("cpus", 0.1), scalar("mem", 32.0)],
            "command": {"value": command, "shell": True}}


def report(status: dict) -> dict:
    """The echo executor's JSON report (pid, cwd, env) in a status message."""
    return json.loads(status["message"])


# --------------------------------------------------------------------------- fixtures
def _spawned_pids(cluster: MesosCluster) -> list[int]:
    return [e["pid"] for a in cluster.state()["agents"] for e in a["executors"] if e["pid"] is not None]


def _check_nothing_left(cluster: MesosCluster) -> None:
    started = time.monotonic()
    cluster.stop()
    assert time.monotonic() - started < 8, "stop() took too long"
    left = [pid for pid in _spawned_pids(cluster) if alive(pid)]
    assert not left, f"executor processes left after stop(): {left}"


@pytest.fixture
def files(tmp_path: Path) -> Iterator[FileServer]:
    root = tmp_path / "www"
    root.mkdir()
    shutil.copy(EXECUTOR_SCRIPT, root / EXECUTOR_SCRIPT.name)
    server = FileServer(root)
    yield server
    server.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[MesosCluster]:
    c = MesosCluster(tmp_path / "mesos", agents=1)
    yield c
    _check_nothing_left(c)


@pytest.fixture
def cluster2(tmp_path: Path) -> Iterator[MesosCluster]:
    c = MesosCluster(tmp_path / "mesos", agents=[{"cpus": 1.0, "mem": 512.0, "hostname": "node-a"},
                                                  {"cpus": 2.0, "mem": 1024.0, "hostname": "node-b"}])
    yield c
    _check_nothing_left(c)


@pytest.fixture
def framework(cluster: MesosCluster) -> Iterator[Framework]:
    fw = Framework(cluster.master)
    yield fw
    fw.stop()


# --------------------------------------------------------------------------- tests
def test_round_trip_fetch_cache_and_executor_reuse(cluster: MesosCluster, framework: Framework,
                                                   files: FileServer) -> None:
    agent, sched = cluster.agents[0], framework.sched
    url = files.url("mesos_echo_executor.py")
    offer = sched.take_offer()
    assert offered(offer) == {"cpus": 2.0, "mem": 2048.0, "disk": 10240.0}
    assert offer["agent_id"]["value"] == agent.agent_id and offer["hostname"] == "127.0.0.1"
    assert offer["framework_id"]["value"] == framework.id

    framework.launch(offer, echo_task("t1", offer, "e1", url, cpus=0.5))
    finished = sched.wait_update("t1", "TASK_FINISHED")
    assert [s["state"] for s in sched.updates("t1")] == ["TASK_RUNNING", "TASK_FINISHED"]
    assert json.loads(base64.b64decode(finished["data"])) == {}          # the task's data came back untouched
    assert finished["agent_id"]["value"] == agent.agent_id
    assert finished["executor_id"]["value"] == "e1"
    assert finished["source"] == "SOURCE_EXECUTOR" and len(base64.b64decode(finished["uuid"])) == 16
    first = report(finished)
    env, sandbox = first["env"], agent.sandbox("e1")
    assert sandbox is not None and first["cwd"] == str(sandbox) and sandbox.is_relative_to(agent.sandbox_root)
    assert env["MESOS_AGENT_ENDPOINT"] == agent.endpoint and agent.endpoint.startswith("127.0.0.1:")
    assert env["MESOS_FRAMEWORK_ID"] == framework.id and env["MESOS_EXECUTOR_ID"] == "e1"
    assert env["MESOS_DIRECTORY"] == env["MESOS_SANDBOX"] == str(sandbox)
    assert env["MESOS_SLAVE_ID"] == env["MESOS_AGENT_ID"] == agent.agent_id
    assert env["MESOS_CHECKPOINT"] == "0" and env["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"] == "5secs"
    assert env["ECHO_MARK"] == "marked"
    assert (sandbox / "stdout").read_text().startswith("echo executor")
    assert (sandbox / "stderr").exists()
    # the task's resources came back, the executor's are held while it lives
    assert cluster.wait_for(lambda: cluster.state()["agents"][0]["used"] == {"cpus": 0.1, "mem": 32.0})

    # a second task for e1 goes to the same process; ~1 MB of result data passes through
    offer = sched.take_offer(cpus=0.5)
    assert {"value": "e1"} in offer["executor_ids"]
    framework.launch(offer, echo_task("t2", offer, "e1", url, {"size": 1_000_000}))
    finished = sched.wait_update("t2", "TASK_FINISHED")
    assert base64.b64decode(finished["data"]) == b"x" * 1_000_000
    assert report(finished)["pid"] == first["pid"]
    assert os.getpgid(first["pid"]) == agent.executors()["e1"]     # sh -c's pid leads the executor's group

    # another executor id: a new process, its file copied from the agent's cache
    offer = sched.take_offer(cpus=0.6)
    framework.launch(offer, echo_task("t3", offer, "e2", url))
    third = report(sched.wait_update("t3", "TASK_FINISHED"))
    assert third["pid"] != first["pid"]
    assert set(agent.executors()) == {"e1", "e2"}
    assert agent.fetch_count == {url: 1}
    assert files.requests == ["/mesos_echo_executor.py"]
    e2_sandbox = agent.sandbox("e2")
    assert e2_sandbox is not None and (e2_sandbox / "mesos_echo_executor.py").exists()

    # TEARDOWN: each executor gets SHUTDOWN and exits by itself (code 0)
    framework.stop()
    assert cluster.wait_for(lambda: not agent.executors(), timeout=5)
    codes = {e["executor_id"]: e["returncode"] for e in cluster.state()["agents"][0]["executors"]}
    assert codes == {"e1": 0, "e2": 0}
    assert cluster.state()["agents"][0]["used"] == {}


def test_offers_of_several_agents_decline_revive_suppress(cluster2: MesosCluster) -> None:
    framework = Framework(cluster2.master)
    sched, driver = framework.sched, framework.driver
    try:
        first = sched.wait(lambda: sched.of_kind("offers"), what="OFFERS")[0]
        assert sorted(o["hostname"] for o in first) == ["node-a", "node-b"]      # one event, one offer per agent
        assert {o["hostname"]: offered(o)["cpus"] for o in first} == {"node-a": 1.0, "node-b": 2.0}

        def offers_after(mark: int) -> int:
            return len(sched.of_kind("offers")) - mark

        sched.decline_all(driver, refuse_seconds=30)
        mark = len(sched.of_kind("offers"))
        time.sleep(0.5)                                   # five offer intervals: filtered
        assert offers_after(mark) == 0

        driver.reviveOffers()
        sched.wait(lambda: len(sched.offers) == 2, what="offers of both agents after REVIVE")

        driver.suppressOffers()
        sched.decline_all(driver, refuse_seconds=0)
        mark = len(sched.of_kind("offers"))
        time.sleep(0.5)
        assert offers_after(mark) == 0, "offers while suppressed"

        driver.reviveOffers()
        sched.wait(lambda: len(sched.offers) == 2, what="offers after REVIVE ends SUPPRESS")
    finally:
        framework.stop()


def test_kill_executor_gives_task_failed_and_executor_lost(cluster: MesosCluster, framework: Framework,
                                                           files: FileServer) -> None:
    agent, sched = cluster.agents[0], framework.sched
    offer = sched.take_offer()
    framework.launch(offer, echo_task("t1", offer, "e1", files.url("mesos_echo_executor.py"), {"hold": True}))
    sched.wait_update("t1", "TASK_RUNNING")
    pid = agent.executors()["e1"]

    agent.kill_executor("e1")
    failed = sched.wait_update("t1", "TASK_FAILED")
    assert failed["source"] == "SOURCE_AGENT" and failed["reason"] == "REASON_EXECUTOR_TERMINATED"
    assert failed["agent_id"]["value"] == agent.agent_id and failed["executor_id"]["value"] == "e1"
    assert "uuid" in failed
    lost = sched.wait(lambda: sched.of_kind("executor_lost"), what="executorLost")
    assert lost == [("e1", agent.agent_id, 9)]            # killed by SIGKILL: wait status 9
    assert not alive(pid) and agent.executors() == {}
    assert cluster.wait_for(lambda: cluster.state()["agents"][0]["used"] == {})
    with pytest.raises(KeyError):
        agent.kill_executor("e1")


def test_lost_agent_gives_task_lost_and_agent_lost(cluster2: MesosCluster, files: FileServer) -> None:
    framework = Framework(cluster2.master)
    sched, driver = framework.sched, framework.driver
    node_a, node_b = cluster2.agents
    try:
        offer = sched.take_offer(agent_id=node_b.agent_id)
        framework.launch(offer, echo_task("t1", offer, "e1", files.url("mesos_echo_executor.py"), {"hold": True}))
        sched.wait_update("t1", "TASK_RUNNING")
        pid = node_b.executors()["e1"]
        sched.wait(lambda: any(o["agent_id"]["value"] == node_b.agent_id for o in sched.offers.values()),
                   what="an outstanding offer of node-b")

        node_b.lose()
        lost = sched.wait_update("t1", "TASK_LOST")
        assert lost["source"] == "SOURCE_MASTER" and lost["reason"] == "REASON_AGENT_REMOVED"
        assert lost["agent_id"]["value"] == node_b.agent_id and "uuid" not in lost
        assert sched.wait(lambda: sched.of_kind("agent_lost")) == [node_b.agent_id]
        assert sched.of_kind("executor_lost") == []
        assert sched.wait(lambda: sched.of_kind("rescind")), "node-b's outstanding offer was not rescinded"
        assert cluster2.wait_for(lambda: not alive(pid), timeout=5)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", node_b.port), timeout=1).close()

        sched.decline_all(driver, refuse_seconds=0)
        mark = len(sched.of_kind("offers"))
        sched.wait(lambda: len(sched.of_kind("offers")) > mark, what="a new offer")
        time.sleep(0.3)                                   # a few more allocation rounds
        later = [o for batch in sched.of_kind("offers")[mark:] for o in batch]
        assert {o["agent_id"]["value"] for o in later} == {node_a.agent_id}
        node_b.lose()                                     # idempotent
    finally:
        framework.stop()


def test_kill_messages_and_reconcile(cluster: MesosCluster, framework: Framework, files: FileServer) -> None:
    agent, sched, driver = cluster.agents[0], framework.sched, framework.driver
    offer = sched.take_offer()
    framework.launch(offer, echo_task("t1", offer, "e1", files.url("mesos_echo_executor.py"), {"hold": True}))
    sched.wait_update("t1", "TASK_RUNNING")

    driver.sendFrameworkMessage({"value": "e1"}, {"value": agent.agent_id}, b64(b"ping"))
    assert sched.wait(lambda: sched.of_kind("message")) == [("e1", agent.agent_id, b"echo:ping")]

    driver.reconcileTasks([{"task_id": {"value": "t1"}}, {"task_id": {"value": "nope"}}])
    sched.wait(lambda: len(sched.updates("nope")) == 1 and len(sched.updates("t1")) == 2)
    explicit, unknown = sched.updates("t1")[1], sched.updates("nope")[0]
    assert explicit["state"] == "TASK_RUNNING" and explicit["reason"] == "REASON_RECONCILIATION"
    assert explicit["source"] == "SOURCE_MASTER" and "uuid" not in explicit
    assert unknown["state"] == "TASK_LOST" and "uuid" not in unknown
    driver.reconcileTasks([])                               # implicit: every task the master knows
    implicit = sched.wait(lambda: len(sched.updates("t1")) == 3 and sched.updates("t1")[2])
    assert implicit["state"] == "TASK_RUNNING" and implicit["reason"] == "REASON_RECONCILIATION"

    driver.killTask({"value": "t1"})
    killed = sched.wait_update("t1", "TASK_KILLED")
    assert killed["source"] == "SOURCE_EXECUTOR" and killed["executor_id"]["value"] == "e1"
    driver.killTask({"value": "ghost"})
    ghost = sched.wait_update("ghost", "TASK_LOST")
    assert ghost["reason"] == "REASON_RECONCILIATION" and "uuid" not in ghost
    assert "e1" in agent.executors()                        # killing a task leaves its executor running


def test_updates_wait_for_acknowledgements(tmp_path: Path, files: FileServer) -> None:
    with MesosCluster(tmp_path / "mesos", update_retry=0.3) as cluster:
        framework = Framework(cluster.master, failover_timeout=100, implicit_acknowledgements=False)
        sched, driver = framework.sched, framework.driver
        try:
            offer = sched.take_offer()
            framework.launch(offer, echo_task("t1", offer, "e1", files.url("mesos_echo_executor.py")))
            running = sched.wait_update("t1", "TASK_RUNNING")
            # unacknowledged, the head is resent (same uuid); FINISHED waits behind it
            sched.wait(lambda: len(sched.updates("t1")) >= 2, what="a resent TASK_RUNNING")
            assert {(u["state"], u["uuid"]) for u in sched.updates("t1")} == {("TASK_RUNNING", running["uuid"])}
            driver.acknowledgeStatusUpdate(running)
            finished = sched.wait_update("t1", "TASK_FINISHED")
            # a dropped stream: pymesos re-subscribes, the unacknowledged FINISHED comes again
            mark = len(sched.updates("t1"))
            cluster.disconnect_framework(framework.id)
            sched.wait(lambda: sched.of_kind("reregistered"), what="reregistered")
            sched.wait(lambda: len(sched.updates("t1")) > mark, what="FINISHED again")
            assert sched.updates("t1")[-1]["uuid"] == finished["uuid"]
            driver.acknowledgeStatusUpdate(finished)
            assert cluster.wait_for(lambda: not cluster.agents[0]._updates)
        finally:
            framework.stop()


def test_executor_exit_fails_its_tasks(cluster: MesosCluster, framework: Framework, files: FileServer) -> None:
    agent, sched = cluster.agents[0], framework.sched
    url = files.url("mesos_echo_executor.py")
    offer = sched.take_offer()
    # two tasks in one ACCEPT for a new executor: queued until it subscribes, then both delivered
    framework.launch(offer, echo_task("hold", offer, "e1", url, {"hold": True}),
                     echo_task("quit", offer, "e1", url, {"exit": 3}))
    failed = sched.wait_update("hold", "TASK_FAILED")
    assert failed["reason"] == "REASON_EXECUTOR_TERMINATED" and failed["source"] == "SOURCE_AGENT"
    assert sched.wait_update("quit", "TASK_FAILED")["reason"] == "REASON_EXECUTOR_TERMINATED"
    assert sched.wait(lambda: sched.of_kind("executor_lost")) == [("e1", agent.agent_id, 3 << 8)]
    assert agent.executors() == {}


def test_launch_errors_are_reported_as_task_updates(cluster: MesosCluster, framework: Framework,
                                                    files: FileServer) -> None:
    sched, driver = framework.sched, framework.driver
    url = files.url("mesos_echo_executor.py")
    offer = sched.take_offer()
    framework.launch(offer, echo_task("huge", offer, "e1", url, cpus=64.0),
                     command_task("twin", offer, "true"), command_task("twin", offer, "true"))
    huge = sched.wait_update("huge", "TASK_ERROR")
    assert huge["reason"] == "REASON_TASK_INVALID" and "more resources" in huge["message"]
    assert huge["source"] == "SOURCE_MASTER" and "uuid" not in huge
    twin = sched.wait_update("twin", "TASK_ERROR")
    assert "duplicate" in twin["message"]
    sched.wait_update("twin", "TASK_FINISHED")               # the first of the twins ran
    # an offer used twice: TASK_LOST / REASON_INVALID_OFFERS, never an HTTP error
    framework.launch(offer, command_task("late", offer, "true"))
    late = sched.wait_update("late", "TASK_LOST")
    assert late["reason"] == "REASON_INVALID_OFFERS"
    # a URI that cannot be fetched: TASK_FAILED naming it, executorLost with an unknown status
    offer = sched.take_offer()
    missing = files.url("missing.py")
    task = echo_task("nofile", offer, "e9", url)
    task["executor"]["command"]["uris"] = [{"value": missing, "cache": True}]
    framework.launch(offer, task)
    failed = sched.wait_update("nofile", "TASK_FAILED")
    assert failed["reason"] == "REASON_CONTAINER_LAUNCH_FAILED" and missing in failed["message"]
    assert sched.wait(lambda: sched.of_kind("executor_lost")) == [("e9", cluster.agents[0].agent_id, -1)]
    assert not driver.aborted


def test_command_tasks_and_registration_timeout(tmp_path: Path) -> None:
    with MesosCluster(tmp_path / "mesos", registration_timeout=0.5) as cluster:
        framework = Framework(cluster.master)
        sched = framework.sched
        try:
            offer = sched.take_offer()
            framework.launch(offer, command_task("ok", offer, 'test "$MESOS_SANDBOX" = "$(pwd -P)" && echo hi > out'),
                             command_task("bad", offer, "exit 7"), command_task("long", offer, "sleep 30"))
            sched.wait_update("ok", "TASK_FINISHED")
            assert (cluster.agents[0].sandbox("ok") / "out").read_text() == "hi\n"
            assert sched.wait_update("bad", "TASK_FAILED")["message"] == "Command exited with status 7"
            sched.wait_update("long", "TASK_RUNNING")
            framework.driver.killTask({"value": "long"})
            assert sched.wait_update("long", "TASK_KILLED")["source"] == "SOURCE_EXECUTOR"
            assert sched.of_kind("executor_lost") == []        # command executors are not reported

            # a custom executor that never subscribes is killed after the registration timeout
            offer = sched.take_offer(cpus=1.0)
            task = command_task("stuck", offer, "unused")
            del task["command"]
            task["executor"] = {"executor_id": {"value": "sleeper"}, "command": {"value": "sleep 30"}}
            framework.launch(offer, task)
            failed = sched.wait_update("stuck", "TASK_FAILED")
            assert failed["reason"] == "REASON_EXECUTOR_REGISTRATION_TIMEOUT"
            assert sched.wait(lambda: sched.of_kind("executor_lost")) == [("sleeper", cluster.agents[0].agent_id, 9)]
        finally:
            framework.stop()
        pids = _spawned_pids(cluster)
    assert pids and not [pid for pid in pids if alive(pid)]


def test_teardown_kills_an_executor_that_ignores_shutdown(tmp_path: Path, files: FileServer) -> None:
    with MesosCluster(tmp_path / "mesos", shutdown_grace=0.5) as cluster:
        framework = Framework(cluster.master)
        offer = framework.sched.take_offer()
        # MESOS_LOCAL keeps pymesos from killing its own group: the agent has to do it
        env = {"MESOS_LOCAL": "1", "ECHO_IGNORE_SHUTDOWN": "1"}
        framework.launch(offer, echo_task("t1", offer, "e1", files.url("mesos_echo_executor.py"),
                                          {"hold": True}, env=env))
        running = framework.sched.wait_update("t1", "TASK_RUNNING")
        assert report(running)["env"]["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"] == "0.5secs"
        pid = cluster.agents[0].executors()["e1"]
        started = time.monotonic()
        framework.stop()                                        # TEARDOWN
        assert cluster.wait_for(lambda: not alive(pid), timeout=5)
        assert 0.4 < time.monotonic() - started < 3
        sandbox = cluster.agents[0].sandbox("e1")
        assert sandbox is not None and "shutdown requested" in (sandbox / "stdout").read_text()
        # the agent records the exit when its reaper sees it, a moment after the process is gone
        assert cluster.wait_for(lambda: cluster.state()["agents"][0]["executors"][0]["returncode"] == -9,
                                timeout=5)
        assert cluster.state()["frameworks"] == []


def test_stop_kills_executors_and_closes_everything(tmp_path: Path, files: FileServer) -> None:
    cluster = MesosCluster(tmp_path / "mesos", agents=2)
    framework = Framework(cluster.master, failover_timeout=100)
    url = files.url("mesos_echo_executor.py")
    try:
        for agent, eid in zip(cluster.agents, ("e1", "e2")):
            offer = framework.sched.take_offer(agent_id=agent.agent_id)
            framework.launch(offer, echo_task(f"t-{eid}", offer, eid, url, {"hold": True}))
            framework.sched.wait_update(f"t-{eid}", "TASK_RUNNING")
        assert sorted(listening_tcp(socket_inodes())) == ["127.0.0.1"] * 4   # master, two agents, file server
    finally:
        framework.stop(failover=True)                           # the framework (and its executors) stay
    pids = _spawned_pids(cluster)
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    _check_nothing_left(cluster)
    cluster.stop()                                              # idempotent
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(cluster.master.split(":")[1])), timeout=1).close()


def test_http_surface(cluster: MesosCluster) -> None:
    def get(path: str) -> Any:
        with NO_PROXY.open(f"http://{cluster.master}{path}", timeout=5) as response:
            return json.loads(response.read())

    assert get("/version")["version"] == "1.11.0"
    assert get("/state")["agents"][0]["id"] == cluster.agents[0].agent_id
    host, port = cluster.master.split(":")

    def call(body: dict, headers: dict[str, str] | None = None,
             content_type: str = "application/json", endpoint: str = cluster.master,
             path: str = "/api/v1/scheduler") -> tuple[int, str]:
        h, p = endpoint.split(":")
        conn = http.client.HTTPConnection(h, int(p), timeout=5)
        conn.request("POST", path, json.dumps(body), {"Content-Type": content_type, **(headers or {})})
        response = conn.getresponse()
        result = response.status, response.read().decode()
        conn.close()
        return result

    # SUBSCRIBE by hand: 200, chunked, a stream id, RecordIO records
    sock = socket.create_connection((host, int(port)), timeout=5)
    body = json.dumps({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "raw"}}})
    sock.sendall(f"POST /api/v1/scheduler HTTP/1.1\r\nHost: {cluster.master}\r\nContent-Type: application/json\r\n"
                 f"Accept: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode())
    reader = sock.makefile("rb")
    assert reader.readline().startswith(b"HTTP/1.1 200")
    headers = {}
    while (line := reader.readline().decode().strip()):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    assert headers["transfer-encoding"] == "chunked"
    stream_id = headers["mesos-stream-id"]
    chunk = reader.read(int(reader.readline(), 16))
    length, _, record = chunk.partition(b"\n")
    event = json.loads(record)
    assert int(length) == len(record) and event["type"] == "SUBSCRIBED"
    framework_id = event["subscribed"]["framework_id"]["value"]

    teardown = {"type": "TEARDOWN", "framework_id": {"value": framework_id}}
    assert call(teardown, content_type="text/plain")[0] == 415
    assert call(teardown) == (400, "All non-subscribe calls should include the 'Mesos-Stream-Id' header")
    code, text = call(teardown, {"Mesos-Stream-Id": "other"})
    assert code == 400 and "didn't match the stream ID" in text
    assert call({**teardown, "framework_id": {"value": "nope"}}, {"Mesos-Stream-Id": stream_id}) == \
        (400, "Framework cannot be found")
    code, _ = call({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "x"}}},
                   {"Mesos-Stream-Id": stream_id})
    assert code == 400
    assert call(teardown, {"Mesos-Stream-Id": stream_id}) == (202, "")
    assert reader.read().endswith(b"0\r\n\r\n")               # TEARDOWN ends the stream
    sock.close()
    resubscribe = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "x"}},
                   "framework_id": {"value": framework_id}}
    code, text = call(resubscribe)
    assert code == 200 and "Framework has been removed" in text    # as an ERROR event, then the stream ends

    # the executor API checks who is calling
    agent = cluster.agents[0].endpoint
    ids = {"framework_id": {"value": framework_id}, "executor_id": {"value": "nobody"}}
    assert call({"type": "UPDATE", **ids}, endpoint=agent, path="/api/v1/executor") == \
        (400, "Executor cannot be found")
    code, text = call({"type": "UPDATE", "framework_id": ids["framework_id"]}, endpoint=agent,
                      path="/api/v1/executor")
    assert code == 400 and "executor_id" in text
    with pytest.raises(urllib.error.HTTPError):
        get("/no-such-page")


def test_fetcher_semantics(tmp_path: Path, files: FileServer) -> None:
    fetcher = _Fetcher(tmp_path / "cache", lambda line: None)
    src = tmp_path / "src"
    src.mkdir()
    (src / "tool.sh").write_text("#!/bin/sh\necho tool\n")
    with tarfile.open(src / "bundle.tar.gz", "w:gz") as tf:
        data = b"inside the tarball\n"
        member = tarfile.TarInfo("pkg/readme.txt")
        member.size = len(data)
        tf.addfile(member, io.BytesIO(data))
    with zipfile.ZipFile(src / "z.zip", "w") as zf:
        zf.writestr("zipped.txt", "zipped\n")
    (src / "note.txt.gz").write_bytes(gzip.compress(b"gunzipped\n"))
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()

    tool = fetcher.fetch({"value": f"file://{src}/tool.sh", "executable": True, "output_file": "bin/t"}, sandbox)
    assert tool == sandbox / "bin" / "t" and os.access(tool, os.X_OK)
    fetcher.fetch({"value": str(src / "bundle.tar.gz")}, sandbox)
    assert (sandbox / "pkg" / "readme.txt").read_text() == "inside the tarball\n"
    assert (sandbox / "bundle.tar.gz").exists()
    fetcher.fetch({"value": str(src / "z.zip")}, sandbox)
    assert (sandbox / "zipped.txt").read_text() == "zipped\n"
    fetcher.fetch({"value": str(src / "note.txt.gz")}, sandbox)
    assert (sandbox / "note.txt").read_text() == "gunzipped\n"
    fetcher.fetch({"value": str(src / "z.zip"), "extract": False, "output_file": "kept.zip"}, sandbox)
    assert (sandbox / "kept.zip").exists()

    url = files.url("mesos_echo_executor.py")
    for name in ("a", "b", "c"):
        fetcher.fetch({"value": url, "cache": True, "output_file": name}, sandbox)
    fetcher.fetch({"value": url, "output_file": "d"}, sandbox)
    assert fetcher.counts[url] == 2 and len(files.requests) == 2   # cached once, then one uncached download
    assert (sandbox / "c").read_bytes() == EXECUTOR_SCRIPT.read_bytes()

    for uri, words in [({"value": "http://192.0.2.1/x"}, "loopback"),
                       ({"value": "hdfs://namenode/x"}, "not supported"),
                       ({"value": "relative/path"}, "absolute"),
                       ({"value": str(src / "tool.sh"), "output_file": "../escape"}, "relative"),
                       ({"value": files.url("missing")}, "404")]:
        with pytest.raises(FetchError, match=words) as caught:
            fetcher.fetch(uri, sandbox)
        assert uri["value"] in str(caught.value)
