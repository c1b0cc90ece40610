"""Mesos mode: tasks run on a Mesos cluster, in executors that are this same binary.

The driver registers a framework with the master (pymesos, v1 HTTP API) and
serves its own executable over HTTP under its sha256 (``launcher.fileserver``).
For each offer it launches pending tasks: a task is the packed task of the
DAG scheduler in ``TaskInfo.data``, run by the agent's gopark executor, which
the agent starts once (per framework) from the binary its fetcher downloaded
and cached. The executor checks the binary's hash, then runs tasks in a pool
of worker subprocesses (``launcher.executor``).

State (guarded by ``_lock``; pymesos calls back from its own thread, the DAG
scheduler submits and cancels from the job's thread):

    pending:   deque of (tid, payload, preferred hosts, submitted at)
    running:   {tid: agent_id}               launched, no final status yet
    launch_of: {tid: launch}                 of running, those whose executor has not said TASK_RUNNING
                                             yet: the agent's launch (Agent.launches) they went in
    cancelled: {tid}                         killed on purpose: their end is not news
    agents:    {agent_id: Agent}             hostname, executor launched?, its file server, launches
                                             failed in a row, left out until

Policy. An offer takes pending tasks while it has ``--cpus`` and ``--mem``
for one more (plus the executor's own share when none runs there yet),
preferring tasks whose preferred hosts include the offer's (by name or IP); a task with
preferences waits at most ``LOCALITY_WAIT`` seconds for such an offer. An
offer that takes nothing is declined; with nothing pending, offers are
suppressed until the next submit revives them. An agent where the tasks of
``LEAVE_OUT_AFTER`` launches in a row ended before they ran (its executor could
not start: the binary not fetched, a broken sandbox; a launch's tasks count
once) is left out for ``LEAVE_OUT_FOR`` seconds: its offers are declined, as
Spark's excludeOnFailure does, unless every agent known and not lost is left
out (the tasks then fail there, and the job says why).

Events to the DAG scheduler, the worker being the agent's id: ``("end", tid,
result, agent_id)`` for TASK_FINISHED (the result rides in the status' data,
or behind a one-shot URL of the executor's file server when large);
``("lost", tid, reason, agent_id)`` for every other final state;
``("worker_lost", agent_id, files_url)`` when an executor or its agent is
lost, so the map outputs and cached partitions it held are computed again.

The other way, framework messages tell executors what to remove from their
work folders: ``{"drop_shuffles": [shuffle_id, ...]}``, the map outputs of
shuffles the app let go, and ``{"drop_cached": [rdd_id, ...]}``, the cached
partitions of RDDs the app let go or unpersisted.
"""
from __future__ import annotations

import base64
import collections
import contextlib
import dataclasses
import functools
import getpass
import json
import logging
import os
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from gopark import binary, inline, registry
from gopark.errors import ConfigError, InputUnavailable

log = logging.getLogger("gopark.mesos")

LOCALITY_WAIT = 1.0          # seconds a task with preferred hosts waits for an offer from one of them
FAILOVER_TIMEOUT = 10.0     # a driver gone this long (killed): the master ends its tasks and executors
REGISTER_TIMEOUT = 30.0      # seconds to reach the master before the Context gives up
EXECUTOR_CPUS, EXECUTOR_MEM = 0.05, 64.0
STARVED_WARNING = 15.0       # seconds of offers too small for any task before a warning
MASTER_LOST = FAILOVER_TIMEOUT + 5.0   # seconds without the master before its tasks are lost (it dropped us)
MASTER_LOST_ZK = 120.0       # ... when ZooKeeper elects masters (a new leader takes a while, then takes us back)
REFUSE_BUSY, REFUSE_IDLE = 0.0, 5.0   # filters on what an ACCEPT leaves and on declines: with tasks waiting, short
INLINE_RESULT = 256 << 10    # results above this size wait on the executor's file server
#: the driver's file server listens first on a port of these (first, count) picked by the binary's hash (below
#: Linux's ephemeral ports, where outgoing connections take theirs), and elsewhere if that one is taken
_BINARY_PORTS = (20000, 10000)
LEAVE_OUT_AFTER = 2          # launches in a row whose tasks an agent failed to start: it is left out ...
LEAVE_OUT_FOR = 600.0        # ... for this many seconds
_FINAL_OK = "TASK_FINISHED"
_NOT_FINAL = {"TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING"}


@dataclasses.dataclass
class Agent:
    hostname: str
    executor_info: dict
    executor_up: bool = False
    files_url: str | None = None
    ip: str = ""                    # its address, as offers say it (data locations may name hosts by IP)
    launches: int = 0               # offers it took tasks from: each launch starts its executor if it is down
    failed_launches: int = 0        # launches in a row whose tasks ended there before they ran
    last_failed_launch: int = 0
    left_out_until: float = 0.0
    lost: bool = False              # the master said it is gone (until it offers again)


def _prefers(preferred: list[str], agent_id: str, agent: Agent) -> bool:
    """A task's preferred locations name this agent: its id, host name or IP."""
    return agent_id in preferred or agent.hostname in preferred or bool(agent.ip and agent.ip in preferred)


def _scalar(resources: list[dict], name: str) -> float:
    return sum(r.get("scalar", {}).get("value", 0.0) for r in resources
               if r.get("name") == name and r.get("type", "SCALAR") == "SCALAR")


def _resources(cpus: float, mem: float) -> list[dict]:
    return [{"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}}]


def _master_host(address: str) -> str:
    """A host:port to route to: the master's, or the first ZooKeeper server's."""
    if address.startswith("zk://"):
        return address[len("zk://"):].split("/", 1)[0].split(",")[0]
    return address


def _guarded(callback: Callable[..., None]) -> Callable[..., None]:
    """A pymesos callback that never raises into pymesos (whose I/O thread would die and
    interrupt the main thread): a failure breaks the backend instead, and every task it holds
    or is given later is reported lost with the reason, so the job ends with a JobError."""
    @functools.wraps(callback)
    def guarded(self: MesosBackend, *args: Any) -> None:
        try:
            callback(self, *args)
        except Exception as exc:
            log.exception("gopark's Mesos scheduler failed in %s", callback.__name__)
            self._break(f"gopark's Mesos scheduler failed in {callback.__name__}: {exc!r}")
    return guarded


def _check_reachable(address: str) -> None:
    """One clear error now, rather than pymesos retrying forever, when nothing listens there."""
    target = _master_host(address)
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            pass
    except (OSError, ValueError) as exc:
        what = "ZooKeeper at" if address.startswith("zk://") else "the Mesos master at"
        raise InputUnavailable(f"cannot reach {what} {target}: {exc}") from exc
    if not address.startswith("zk://"):
        _check_is_a_master(host.strip("[]"), int(port), target)


def _check_is_a_master(host: str, port: int, target: str) -> None:
    """Something listens: it must answer ``GET /version`` as a Mesos master does (pymesos would
    otherwise wait on it forever, or give up from its own thread with a traceback)."""
    import http.client
    import json
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/version")
        resp = conn.getresponse()
        body = resp.read(1 << 16)
        version = json.loads(body).get("version") if resp.status == 200 else None
    except (OSError, http.client.HTTPException, ValueError, AttributeError) as exc:
        said = " ".join(str(exc).split())     # one line, whatever the other side sent
        raise InputUnavailable(f"{target} does not answer as a Mesos master (GET /version: {said:.200})") from exc
    finally:
        conn.close()
    if not version:
        raise InputUnavailable(f"{target} does not answer as a Mesos master "
                               f"(GET /version: HTTP {resp.status}, no Mesos version)")


class MesosBackend:
    """Runs tasks on a Mesos cluster (see the module's docstring)."""

    def __init__(self, address: str, post: Callable[[tuple], None], work_dir: str, cpus: float,
                 mem_mb: float, compress: bool, app_name: str,
                 argvs: tuple[list[str], list[str]] | None = None) -> None:
        if not binary.is_frozen():
            raise ConfigError("-m mesos runs a frozen app: build it first with `gopark build app.py`")
        if threading.current_thread() is not threading.main_thread():
            raise ConfigError("a Mesos-mode Context must be made in the main thread (pymesos needs it)")
        from gopark.scheduler import mesos_http
        from launcher.fileserver import FileServer, local_address
        pymesos = mesos_http.import_pymesos()
        self._post = post
        # the driver's arguments, after and before gopark's options were taken out, for the executors' workers
        self._argvs = [registry.argv_strings(a) for a in argvs or (sys.argv, registry.ARGV_AT_IMPORT)]
        self._cpus, self._mem_mb = cpus, mem_mb
        self._compress = compress
        self._lock = threading.Lock()
        self._pending: collections.deque[tuple[int, bytes, list[str], float]] = collections.deque()
        self._running: dict[int, str] = {}
        self._launch_of: dict[int, int] = {}
        self._cancelled: set[int] = set()
        self._agents: dict[str, Agent] = {}
        self._suppressed = False
        self._registered = threading.Event()
        self._offered = threading.Event()
        self._stopping = threading.Event()   # stop() was called: the framework is being torn down
        self._broken: str | None = None
        self._starving_since: float | None = None
        self._warned = 0.0
        self._last_offer = time.monotonic()
        self._watch: threading.Thread | None = None
        self._address = address
        self._lost_after = MASTER_LOST_ZK if address.startswith("zk://") else MASTER_LOST
        self._disconnected_at: float | None = None
        # pymesos says each retry (tens of thousands of lines a minute from a master with no leader): not
        # unless asked (-v); gopark says what matters
        logging.getLogger("pymesos").setLevel(logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.CRITICAL)
        self.default_parallelism = 0
        self.sha256 = binary.sha256()
        _check_reachable(address)
        host = local_address(_master_host(address))
        # the same URL in every run of this binary (a port of its own, its hash), so that the agents' fetchers,
        # which cache by URL, fetch it once
        self.files = FileServer(host, _BINARY_PORTS[0] + int(self.sha256[:8], 16) % _BINARY_PORTS[1])
        name = os.path.basename(binary.executable())
        self._binary_name = name
        if binary.is_onefile():
            url = self.files.publish_by_content(f"bin/{self.sha256}/{name}", binary.running_file())
            self._fetch = {"value": url, "executable": True, "extract": False, "cache": True, "output_file": name}
            self._command = f"./{name}"
        else:       # a onedir build: its folder, as a tar that the agent's fetcher extracts into the sandbox
            folder = os.path.dirname(binary.executable())
            archive = os.path.join(work_dir, f"{name}.tar")
            try:
                binary.pack_folder(folder, archive)
                url = self.files.publish_by_content(f"bin/{self.sha256}/{name}.tar", archive)   # (served open)
            except BaseException:
                self.files.stop()
                raise
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(archive)
            self._fetch = {"value": url, "executable": False, "extract": True, "cache": True,
                           "output_file": f"{name}.tar"}
            self._command = f"./{os.path.basename(folder)}/{name}"
        self.files_url = self.files.add_root("files", work_dir)   # broadcasts
        framework = {"user": getpass.getuser() or "nobody", "name": f"gopark: {app_name}",
                     "hostname": socket.gethostname(), "failover_timeout": FAILOVER_TIMEOUT, "checkpoint": False}
        self._driver = pymesos.MesosSchedulerDriver(self, framework, address, use_addict=False,
                                                    implicit_acknowledgements=True)
        mesos_http.io_abort_handlers.append(self._connection_ended)
        try:
            self._driver.start()
        except BaseException:
            mesos_http.io_abort_handlers.remove(self._connection_ended)
            raise
        if not self._registered.wait(REGISTER_TIMEOUT):
            self.stop()
            raise InputUnavailable(f"cannot register with the Mesos master at {address} "
                                   f"within {REGISTER_TIMEOUT:.0f} s (it answers, but did not take the framework: "
                                   "a master with no leader elected answers 503; -v shows what it said)")
        self._offered.wait(1.0)    # the first offers tell how many tasks the cluster runs at once
        self._watch = threading.Thread(target=self._watch_the_cluster, name="gopark-mesos-watch", daemon=True)
        self._watch.start()

    # -- called by the DAG scheduler -------------------------------------------------
    def submit(self, tid: int, payload: bytes, preferred: list[str]) -> None:
        with self._lock:
            if self._broken or self._stopping.is_set():
                self._post(("lost", tid, self._broken or "the Context was stopped", "driver"))
                return
            self._pending.append((tid, payload, preferred, time.monotonic()))
            revive, self._suppressed = self._suppressed, False
        if revive:
            self._driver.reviveOffers()

    def cancel(self, tids: list[int]) -> None:
        if self._stopping.is_set():      # the framework is being torn down: its executors end with it
            return
        gone = set(tids)
        with self._lock:
            self._pending = collections.deque(t for t in self._pending if t[0] not in gone)
            running = [tid for tid in tids if tid in self._running]
            self._cancelled.update(running)
        for tid in running:
            self._driver.killTask({"value": str(tid)})

    def drop_shuffles(self, shuffle_ids: list[int]) -> None:
        """Ask every executor to remove these shuffles' map outputs from its disk (a framework message)."""
        for agent_id, executor_id, _ in self._executors():
            self._tell(agent_id, executor_id, {"drop_shuffles": shuffle_ids})

    def drop_cached(self, rdd_ids: list[int]) -> None:
        """Ask every executor to remove these RDDs' cached partitions from its disk (its workers drop their
        copies with the live list of their next task)."""
        for agent_id, executor_id, _ in self._executors():
            self._tell(agent_id, executor_id, {"drop_cached": rdd_ids})

    def _executors(self) -> list[tuple[str, dict, str]]:
        """(agent id, executor id, its file server's URL + "/") of each executor that has run a task."""
        with self._lock:
            return [(agent_id, a.executor_info["executor_id"], a.files_url + "/")
                    for agent_id, a in self._agents.items() if a.files_url and not self._stopping.is_set()]

    def _tell(self, agent_id: str, executor_id: dict, message: dict) -> None:
        data = base64.b64encode(json.dumps(message).encode()).decode()
        self._driver.sendFrameworkMessage(executor_id, {"value": agent_id}, data)

    def stop(self) -> None:
        """Tear the framework down (the master ends its executors), stop serving files."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        from gopark.scheduler import mesos_http
        try:
            self._driver.stop()
            self._driver.join()
        finally:
            with contextlib.suppress(ValueError):      # after join: its I/O thread may end as it stops
                mesos_http.io_abort_handlers.remove(self._connection_ended)
            self.files.stop()
            if self._watch is not None and self._watch is not threading.current_thread():
                self._watch.join()

    # -- pymesos callbacks (its thread) ---------------------------------------------
    def registered(self, driver: Any, framework_id: dict, master_info: dict) -> None:
        log.info("registered with Mesos master %s:%s as framework %s", master_info.get("hostname"),
                 master_info.get("port"), framework_id.get("value"))
        self._disconnected_at = None
        self._registered.set()

    def reregistered(self, driver: Any, master_info: dict) -> None:
        if self._disconnected_at is not None:
            log.warning("connected to the Mesos master again")
        self._disconnected_at = None
        self._registered.set()

    def disconnected(self, driver: Any) -> None:
        if self._stopping.is_set() or self._disconnected_at is not None:
            return
        self._disconnected_at = time.monotonic()
        if self._registered.is_set():
            log.warning("disconnected from the Mesos master at %s: trying again for %.0f s", self._address,
                        self._lost_after)

    @_guarded
    def resourceOffers(self, driver: Any, offers: list[dict]) -> None:  # noqa: N802 (pymesos' names)
        now = self._last_offer = time.monotonic()
        for offer in offers:
            agent_id, host = offer["agent_id"]["value"], offer.get("hostname", "")
            ip = offer.get("url", {}).get("address", {}).get("ip", "")
            cpus, mem = _scalar(offer.get("resources", []), "cpus"), _scalar(offer.get("resources", []), "mem")
            tasks = []
            with self._lock:
                agent = self._agents.get(agent_id)
                if agent is None:
                    slots = max(1, int(cpus // self._cpus))
                    agent = self._agents[agent_id] = Agent(host, self._executor_info(slots))
                    self.default_parallelism += slots
                agent.ip = ip
                agent.lost = False
                left_out = agent.left_out_until > now and not all(
                    a.left_out_until > now for a in self._agents.values() if not a.lost)
                if not agent.executor_up:
                    cpus, mem = cpus - EXECUTOR_CPUS, mem - EXECUTOR_MEM
                # as many tasks as the offer holds; the executor's small share is not worth a whole
                # CPU, so tasks may split what is left of one (each gets at most --cpus and --mem)
                n = min(int((cpus + EXECUTOR_CPUS) / self._cpus + 1e-9),
                        int((mem + EXECUTOR_MEM) / self._mem_mb + 1e-9))
                if cpus <= 0 or mem <= 0 or left_out:     # not even room for the executor's share
                    n = 0
                task_cpus, task_mem = (min(self._cpus, cpus / n), min(self._mem_mb, mem / n)) if n else (0, 0)
                if n == 0 and self._pending and not self._running and not left_out:   # (a busy cluster's leftovers)
                    self._starved(cpus, mem)
                while len(tasks) < n:
                    picked = self._pick(agent_id, agent, now)
                    if picked is None:
                        break
                    tid, payload = picked
                    self._running[tid] = agent_id
                    tasks.append({"name": f"gopark task {tid}", "task_id": {"value": str(tid)},
                                  "agent_id": {"value": agent_id},
                                  "resources": _resources(task_cpus, task_mem),
                                  "executor": agent.executor_info,
                                  "data": base64.b64encode(payload).decode()})
                if tasks:
                    agent.launches += 1
                    for t in tasks:
                        self._launch_of[int(t["task_id"]["value"])] = agent.launches
                    agent.executor_up = True
                    self._starving_since = None
                suppress = not tasks and not self._pending and not self._suppressed
                if suppress:
                    self._suppressed = True
            if tasks:
                log.debug("offer %s on %s: launching tasks %s", offer["id"]["value"], host,
                          [t["task_id"]["value"] for t in tasks])
                driver.launchTasks(offer["id"], tasks, {"refuse_seconds": REFUSE_BUSY})
            elif left_out:
                driver.declineOffer(offer["id"], {"refuse_seconds": agent.left_out_until - now})
            else:
                driver.declineOffer(offer["id"], {"refuse_seconds": REFUSE_IDLE if suppress else REFUSE_BUSY})
                if suppress:
                    driver.suppressOffers()
                    with self._lock:     # a submit between the decision and the SUPPRESS may have revived
                        revive = bool(self._pending)      # first: the master must not end up suppressed
                        self._suppressed = not revive
                    if revive:
                        driver.reviveOffers()
        self._offered.set()

    def _starved(self, cpus: float, mem: float) -> None:
        """Tasks wait and offers are too small for one: say so (every 30 s), as Spark does."""
        now = time.monotonic()
        if self._starving_since is None:
            self._starving_since = now
        elif now - self._starving_since > STARVED_WARNING and now - self._warned > 30:
            self._warned = now
            log.warning("no offer has room for a task (--cpus %g, --mem %g MB each); an offer of "
                        "cpus %.2f, mem %.0f MB was not enough", self._cpus, self._mem_mb, cpus, mem)

    def _connection_ended(self, exc: BaseException) -> None:
        """pymesos' I/O thread died (the master dropped the framework: 403 to its calls)."""
        if not self._stopping.is_set():
            self._lose_the_master(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200])

    def _lose_the_master(self, why: str) -> None:
        """No master for MASTER_LOST seconds (past the framework's failover timeout, after which the master
        has dropped it), or pymesos' connection ended: every task of the Context is lost from now on, and
        its job fails."""
        reason = f"lost the Mesos master at {self._address} ({why})"
        with self._lock:
            if self._broken:
                return
            log.warning("%s", reason)
            self._broken = reason
            lost = [t[0] for t in self._pending] + list(self._running)
            self._pending.clear()
            self._running.clear()
            self._launch_of.clear()
        for tid in lost:
            self._post(("lost", tid, reason, "driver"))

    def _watch_the_cluster(self) -> None:
        """Every second: a master gone too long is lost (:meth:`_lose_the_master`); tasks that wait, none
        running, with no offer for a while (no agent, or none with free resources) are said to (every 30 s),
        as Spark's "Initial job has not accepted any resources"; the job waits on (an agent may come)."""
        while not self._stopping.wait(1.0):
            now = time.monotonic()
            if self._disconnected_at is not None and now - self._disconnected_at > self._lost_after:
                self._lose_the_master(f"no connection for {now - self._disconnected_at:.0f} s")
                return
            with self._lock:
                waited = now - min((since for *_, since in self._pending), default=now)
                silent = now - self._last_offer
                starved = (not self._running and min(waited, silent) > STARVED_WARNING
                           and now - self._warned > 30)
                if starved:
                    self._warned = now
                    agents = len(self._agents)
            if starved:
                log.warning("tasks have waited %.0f s and no Mesos agent has offered resources for %.0f s "
                            "(agents seen so far: %d): are agents registered with the master, with free cpus and mem?",
                            waited, silent, agents)

    def _pick(self, agent_id: str, agent: Agent, now: float) -> tuple[int, bytes] | None:
        """The next task for an offer: one preferring its agent (cached data) or host (input data: by
        name or by IP, as MooseFS names chunkservers), else one that may run anywhere."""
        fallback = None
        for i, (tid, payload, preferred, since) in enumerate(self._pending):
            if _prefers(preferred, agent_id, agent):
                del self._pending[i]
                return tid, payload
            if fallback is None and (not preferred or now - since >= LOCALITY_WAIT
                                     or not self._anyone_has(preferred)):
                fallback = i
        if fallback is None:
            return None
        tid, payload, _, _ = self._pending[fallback]
        del self._pending[fallback]
        return tid, payload

    def _anyone_has(self, preferred: list[str]) -> bool:
        return any(_prefers(preferred, aid, a) for aid, a in self._agents.items())

    def _executor_info(self, slots: int) -> dict:
        config = {"workers": slots, "mem": int(self._mem_mb * (1 << 20)), "compress": self._compress,
                  "sha256": self.sha256, "argvs": self._argvs}
        env = {"GOPARK_ROLE": "executor", "GOPARK_SHA256": self.sha256,
               "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": "10secs"}
        if inline.SWITCH in os.environ:       # the executors' workers inline as the driver does
            env[inline.SWITCH] = os.environ[inline.SWITCH]
        return {
            "executor_id": {"value": f"gopark-{self.sha256[:16]}"},
            "name": f"gopark executor ({self._binary_name})",
            "command": {
                "value": shlex.quote(self._command),     # run by a shell: a name may hold a space
                "shell": True,
                "uris": [self._fetch],
                "environment": {"variables": [{"name": k, "value": v} for k, v in env.items()]},
            },
            "resources": _resources(EXECUTOR_CPUS, EXECUTOR_MEM),
            "data": base64.b64encode(json.dumps(config).encode()).decode(),
        }

    def offerRescinded(self, driver: Any, offer_id: dict) -> None:  # noqa: N802
        """Nothing to undo: tasks are launched in the offer callback itself."""

    def inverseOffers(self, driver: Any, offers: list[dict]) -> None:  # noqa: N802
        """Maintenance windows: not acted on (a lost agent's tasks run again anyway)."""

    def inverseOfferRescinded(self, driver: Any, offer_id: dict) -> None:  # noqa: N802
        """See inverseOffers."""

    def operationStatusUpdate(self, driver: Any, status: dict) -> None:  # noqa: N802
        """gopark sends no operations with feedback."""

    def processHeartBeat(self, driver: Any) -> None:  # noqa: N802
        """The master's heartbeat: nothing to do."""

    @_guarded
    def statusUpdate(self, driver: Any, status: dict) -> None:  # noqa: N802
        state, tid = status.get("state", ""), int(status["task_id"]["value"])
        data = base64.b64decode(status["data"]) if status.get("data") else b""
        with self._lock:
            agent_id = self._running.get(tid) or status.get("agent_id", {}).get("value", "")
            agent = self._agents.get(agent_id)
            if state == "TASK_RUNNING" and agent is not None:
                if data:
                    agent.files_url = data.decode()    # where this executor serves its map outputs
                if self._launch_of.pop(tid, None) is not None:     # started: its launch did not fail
                    agent.failed_launches = 0
            if state in _NOT_FINAL:
                return
            if self._running.pop(tid, None) is None:
                return                              # not ours (any more)
            launch = self._launch_of.pop(tid, None)     # None: it ran
            was_cancelled = tid in self._cancelled
            self._cancelled.discard(tid)
        host = agent.hostname if agent else "?"
        worker = agent_id or host      # cached partitions are kept by this agent's executor
        if was_cancelled:
            return
        if state != _FINAL_OK:
            reason = f"{state} on {host}: {status.get('message') or status.get('reason') or ''}".rstrip(": ")
            if launch is not None and agent is not None:
                self._failed_launch(agent, agent_id, launch, reason)
            self._post(("lost", tid, reason, worker))
            return
        if data[:1] == b"R":
            self._post(("end", tid, data[1:], worker))
        elif data[:1] == b"U":      # large: fetch it without holding up pymesos' thread
            threading.Thread(target=self._fetch_result, args=(tid, data[1:].decode(), worker),
                             name="gopark-result-fetch", daemon=True).start()
        else:
            self._post(("lost", tid, f"TASK_FINISHED on {host} without a gopark result", worker))

    def _failed_launch(self, agent: Agent, agent_id: str, launch: int, reason: str) -> None:
        """A task of ``agent``'s launch ``launch`` ended before it ran (pymesos' thread): ``LEAVE_OUT_AFTER``
        launches in a row so (their tasks count once: one executor start failed) leave the agent out for
        ``LEAVE_OUT_FOR`` seconds."""
        with self._lock:
            if launch == agent.last_failed_launch:
                return
            agent.last_failed_launch = launch
            agent.failed_launches += 1
            if agent.failed_launches < LEAVE_OUT_AFTER or agent.left_out_until > time.monotonic():
                return
            agent.left_out_until = time.monotonic() + LEAVE_OUT_FOR
            agent.failed_launches = 0
        log.warning("Mesos agent %s (%s) failed to start tasks %d times in a row, the last: %s; it is left out "
                    "for %.0f minutes", agent.hostname, agent_id, LEAVE_OUT_AFTER, reason[:400], LEAVE_OUT_FOR / 60)

    def _fetch_result(self, tid: int, url: str, worker: str) -> None:
        from gopark import http
        try:
            self._post(("end", tid, http.fetch(url), worker))
        except Exception as exc:   # whatever it is, the scheduler must hear of this task
            self._post(("lost", tid, f"cannot fetch the result of task {tid}: {exc}", worker))

    def frameworkMessage(self, driver: Any, executor_id: dict, agent_id: dict, data: str) -> None:  # noqa: N802
        """Executors say everything in status updates."""

    @_guarded
    def executorLost(self, driver: Any, executor_id: dict, agent_id: dict, status: int) -> None:  # noqa: N802
        self._agent_gone(agent_id["value"], f"executor {executor_id['value']} exited ({status})")

    @_guarded
    def slaveLost(self, driver: Any, agent_id: dict) -> None:  # noqa: N802
        self._agent_gone(agent_id["value"], "agent lost", lost=True)

    def _agent_gone(self, agent_id: str, why: str, lost: bool = False) -> None:
        """Its tasks are lost (their updates say so too), its map outputs are gone; ``lost``: the agent
        itself (until it offers again)."""
        with self._lock:
            agent = self._agents.get(agent_id)
            if agent is None:
                return
            agent.executor_up = False
            files_url, agent.files_url = agent.files_url, None
            tasks = [tid for tid, a in self._running.items() if a == agent_id]
            # one that never ran a task (it could not start: said once as the agent is left out) is no news
            (log.warning if files_url or tasks else log.info)("%s on %s: its tasks run again", why, agent.hostname)
            for tid in tasks:
                del self._running[tid]
                self._launch_of.pop(tid, None)
            agent.lost = agent.lost or lost
        for tid in tasks:
            self._post(("lost", tid, f"{why} on {agent.hostname}", agent_id))
        self._post(("worker_lost", agent_id, files_url))

    def error(self, driver: Any, message: str) -> None:
        log.error("Mesos master: %s", message)
        self._break(f"Mesos master error: {message}")

    def _break(self, reason: str) -> None:
        """Report every task held as lost, and every later one at once."""
        with self._lock:
            self._broken = reason
            lost = list(self._running) + [t[0] for t in self._pending]
            self._running.clear()
            self._launch_of.clear()
            self._pending.clear()
        for tid in lost:
            self._post(("lost", tid, reason, "driver"))
