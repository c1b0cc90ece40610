"""A Mesos master and agents in one process, for tests: the real v1 HTTP APIs, real executor processes.

No Mesos master can be installed here, so gopark's Mesos backend is tested
against this double. It speaks the wire protocols of Mesos 1.11 closely
enough that unmodified pymesos 0.3.15 drivers work against it:

* the master serves the v1 **scheduler API** (``POST /api/v1/scheduler``):
  ``SUBSCRIBE`` answers ``200`` with a never-ending chunked body of RecordIO
  events and a ``Mesos-Stream-Id`` header that every later call must carry;
  other calls answer ``202`` with an empty body, and problems with offers or
  tasks come back asynchronously as task updates, as from a real master;
* each agent serves the v1 **executor API** (``POST /api/v1/executor``) and
  runs executors as real processes: it fetches ``CommandInfo.uris`` into a
  fresh sandbox (through a per-agent cache for ``cache=true``), spawns the
  command in a session of its own with the ``MESOS_*`` environment, relays
  status updates (per-task FIFO, the head in flight until the scheduler
  acknowledges it) and reports executor exits;
* events are shaped like the protobufs (``{"type": "OFFERS", "offers":
  {"offers": [...]}}``), not like the examples of the Mesos docs.

Usage::

    with MesosCluster(tmp_path, agents=2) as cluster:
        driver = MesosSchedulerDriver(scheduler, framework_info, cluster.master)
        ...
        cluster.agents[0].kill_executor("e1")   # the executor dies: TASK_FAILED + executorLost
        cluster.agents[1].lose()                # the agent dies: TASK_LOST + slaveLost
        cluster.disconnect_framework(fid)       # the stream drops: pymesos re-subscribes
        cluster.state()                         # what GET /state answers, for assertions and debugging

Every call, event, fetch and process exit is also logged to
``workdir/mesos-double.log`` (and to the ``mesos_double`` logger at DEBUG).

What it models, in Mesos' terms:

* **Offers.** Every ``offer_interval`` seconds each live agent's free
  scalar resources (total minus what tasks and executors hold minus what is
  already offered) go to one subscribed, unsuppressed framework whose filters
  do not cover them (frameworks take turns); several agents give several
  offers in one ``OFFERS`` event. ``Filters.refuse_seconds`` (default 5,
  also when ``filters`` is absent) of ``DECLINE`` and of the unused part of
  an ``ACCEPT`` filter those resources of that agent, as Mesos' allocator
  does: a larger free set (a task ended) is offered at once. ``REVIVE``
  clears the filters and ends ``SUPPRESS``.
* **Launching.** ``ACCEPT`` with ``LAUNCH`` (custom ``ExecutorInfo`` or a
  command task) or ``LAUNCH_GROUP``. Invalid offers give ``TASK_LOST``
  (``REASON_INVALID_OFFERS``); invalid tasks and tasks that do not fit give
  ``TASK_ERROR`` (``REASON_TASK_INVALID``). A task for an executor id that
  already runs on that agent goes to it (a ``LAUNCH`` event on its stream);
  tasks sent before the executor subscribed are queued until ``SUBSCRIBED``.
  Task and executor resources are charged to the agent and given back when
  the task ends / the executor exits.
* **Fetcher.** ``http(s)://`` (loopback hosts only), ``file://`` and absolute
  paths; ``executable``, ``extract`` (``.tar .tar.gz .tgz .tar.bz2 .tbz2
  .tar.xz .txz .zip .gz``), ``output_file``, ``cache``. A failed fetch gives
  ``TASK_FAILED`` (``REASON_CONTAINER_LAUNCH_FAILED``, the message names the
  URI) and ``FAILURE`` with status -1, as Mesos does.
* **Executors.** ``shell=true`` runs ``value`` with ``/bin/sh -c``,
  ``shell=false`` execs ``value`` with ``arguments`` as argv; cwd = sandbox,
  ``start_new_session=True``, stdout/stderr to the sandbox files ``stdout``
  and ``stderr``; environment = ``os.environ`` + the ``MESOS_*`` variables
  of a real agent + ``CommandInfo.environment`` (which wins, as in Mesos).
  When an executor exits (or is killed) its process group is killed (Mesos
  destroys the container), its unfinished tasks get ``TASK_FAILED``
  (``REASON_EXECUTOR_TERMINATED``; ``TASK_KILLED`` if they were being
  killed) and the scheduler gets ``FAILURE{agent_id, executor_id, status}``
  (a wait status: exit code << 8, or the signal number). An executor that
  does not subscribe within ``registration_timeout`` is killed
  (``REASON_EXECUTOR_REGISTRATION_TIMEOUT``).
* **Status updates.** An executor's ``UPDATE`` is checked like Mesos does
  (16-byte uuid, ``SOURCE_EXECUTOR``, no ``TASK_STAGING``), acknowledged to
  the executor at once (``ACKNOWLEDGED``, as the real agent does once it has
  the update), and forwarded to the scheduler with ``agent_id`` and
  ``executor_id`` filled in and everything else (``uuid``, ``data``)
  untouched. Per task one update is in flight; the next one goes out when the
  scheduler's ``ACKNOWLEDGE`` names the head's uuid; the head is resent every
  ``update_retry`` seconds (doubling) and on re-subscription. Updates the
  master makes itself (``TASK_LOST``, ``TASK_ERROR``, reconciliation) carry
  no uuid and must not be acknowledged.
* ``KILL`` (an unknown task gives ``TASK_LOST`` without uuid, a task not yet
  delivered gives ``TASK_KILLED``), ``SHUTDOWN``, ``TEARDOWN`` (``SHUTDOWN``
  to each executor, SIGKILL of its group after the grace period),
  ``MESSAGE`` both ways, ``RECONCILE`` (explicit and implicit), ``REVIVE``,
  ``SUPPRESS``, re-subscription with the framework id (pymesos reconnects),
  ``failover_timeout`` after a disconnection, ``HEARTBEAT`` events.
* ``GET /version`` (``{"version": "1.11.0"}``) and ``GET /state`` (a small
  JSON of frameworks, tasks, offers, agents and executors) on the master;
  ``GET /state`` on an agent.

Not modelled: protobuf bodies, authentication, roles and reservations (all
resources are unreserved ``*``), volumes, ports and other non-scalar
resources, ``PARTITION_AWARE`` states (``TASK_LOST`` is always used),
inverse offers, operation feedback, agent restarts and checkpoint recovery,
containerizers, health checks, ``DEFAULT`` executors without a command.

Hard rules it keeps: every listener binds 127.0.0.1 and the fetcher
downloads only from loopback hosts (proxies ignored); it signals only the
process groups of the executors it spawned, and only while their leader is
not yet reaped (so the pid cannot have been reused); ``stop()`` kills them
all, closes every socket and joins its threads, and removes no files.

Executors are children of the test process, so the double reaps them itself.
A pymesos executor gets ``MESOS_CHECKPOINT="0"``, which pymesos reads as
true: when its agent goes away it retries for a day instead of exiting, which
is why ``lose()`` and ``stop()`` kill executors rather than wait for them.
"""
from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import ipaddress
import itertools
import json
import logging
import os
import queue
import select
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tarfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
import zipfile
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol, Self

__all__ = ["Agent", "MesosCluster", "TERMINAL_STATES", "VERSION"]

log = logging.getLogger("mesos_double")

VERSION = "1.11.0"
TERMINAL_STATES = frozenset({"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST",
                             "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR"})
DEFAULT_AGENT: dict[str, Any] = {"cpus": 2.0, "mem": 2048.0, "disk": 10240.0, "hostname": "127.0.0.1",
                                 "ip": "127.0.0.1"}
DEFAULT_REFUSE_SECONDS = 5.0          # Filters.refuse_seconds' default
MAX_REFUSE_SECONDS = 365 * 86400.0    # the master's cap
MIN_ALLOCATABLE = ({"cpus": 0.01}, {"mem": 32.0})   # --min_allocatable_resources default: either one
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip", ".gz")
FETCH_TIMEOUT = 10.0
COMMAND_KILL_GRACE = 3.0              # the command executor's default kill grace period
LOCALHOST_IP_INT = 16777343           # 127.0.0.1 as MasterInfo.ip (network order read as little-endian)

Json = dict[str, Any]
Scalars = dict[str, float]


# --------------------------------------------------------------------------- small helpers
def _recordio(event: Json) -> bytes:
    """One RecordIO record: ``<decimal byte length>\\n<JSON bytes>``, no trailing newline."""
    data = json.dumps(event, separators=(",", ":")).encode()
    return b"%d\n" % len(data) + data


def _new_uuid() -> str:
    """A status update uuid as the JSON mapping of protobuf ``bytes`` has it: base64 of 16 bytes."""
    return base64.b64encode(uuid.uuid4().bytes).decode("ascii")


def _value(obj: Any, key: str) -> str | None:
    """``obj[key]["value"]`` of a protobuf id message, or None."""
    if isinstance(obj, dict) and isinstance(obj.get(key), dict):
        value = obj[key].get("value")
        return value if isinstance(value, str) and value else None
    return None


def _scalars(resources: Iterable[Json] | None) -> Scalars:
    """The scalar resources of a ``Resource`` list, summed by name."""
    total: Scalars = {}
    for resource in resources or ():
        if resource.get("type", "SCALAR") == "SCALAR" and "scalar" in resource:
            name = resource["name"]
            total[name] = round(total.get(name, 0.0) + float(resource["scalar"]["value"]), 6)
    return total


def _add(a: Scalars, b: Scalars) -> Scalars:
    return {k: round(a.get(k, 0.0) + b.get(k, 0.0), 6) for k in a.keys() | b.keys()}


def _sub(a: Scalars, b: Scalars) -> Scalars:
    return {k: round(a.get(k, 0.0) - b.get(k, 0.0), 6) for k in a.keys() | b.keys()}


def _positive(a: Scalars) -> Scalars:
    return {k: v for k, v in a.items() if v > 1e-9}


def _fits(need: Scalars, have: Scalars) -> bool:
    """Whether ``need`` is contained in ``have``."""
    return all(have.get(k, 0.0) + 1e-9 >= v for k, v in need.items() if v > 1e-9)


def _describe(a: Scalars) -> str:
    return "; ".join(f"{k}:{v:g}" for k, v in sorted(_positive(a).items())) or "{}"


def _duration(proto: Any, default: float) -> float:
    """Seconds of a ``DurationInfo`` (``{"nanoseconds": n}``), or ``default``."""
    if isinstance(proto, dict) and "nanoseconds" in proto:
        return max(0.0, int(proto["nanoseconds"]) / 1e9)
    return default


def _wait_status(returncode: int | None) -> int:
    """What Mesos reports as an executor's status: a wait(2) status, -1 when unknown."""
    if returncode is None:
        return -1
    return returncode << 8 if returncode >= 0 else -returncode


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- HTTP plumbing
class _EventStream:
    """A ``200`` chunked response carrying RecordIO events, one HTTP chunk per record.

    ``send`` queues from any thread; ``serve`` writes, in the request handler's
    thread, until ``close()`` (ends the body with the last chunk), until the
    peer goes away, or until the socket is shut down. Heartbeat events go out
    when nothing else did for ``heartbeat`` seconds.
    """

    def __init__(self, handler: _Handler, heartbeat: float | None) -> None:
        self._handler = handler
        self._heartbeat = heartbeat
        self._queue: queue.SimpleQueue[Json | None] = queue.SimpleQueue()
        self.ended = threading.Event()

    def send(self, event: Json) -> None:
        if not self.ended.is_set():
            self._queue.put(event)

    def close(self) -> None:
        self._queue.put(None)

    def _peer_closed(self) -> bool:
        sock = self._handler.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def serve(self) -> None:
        out = self._handler.wfile
        poll = min(0.1, self._heartbeat or 0.1)
        last = time.monotonic()
        try:
            while True:
                try:
                    event = self._queue.get(timeout=poll)
                except queue.Empty:
                    if self._peer_closed():
                        return
                    if self._heartbeat is None or time.monotonic() - last < self._heartbeat:
                        continue
                    event = {"type": "HEARTBEAT"}
                if event is None:
                    out.write(b"0\r\n\r\n")
                    return
                record = _recordio(event)
                out.write(b"%X\r\n" % len(record) + record + b"\r\n")
                last = time.monotonic()
        except (OSError, ValueError):
            return
        finally:
            self.ended.set()
            self._handler.close_connection = True


class _Owner(Protocol):
    def handle_get(self, handler: _Handler) -> None: ...
    def handle_post(self, handler: _Handler) -> None: ...


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 (keep-alive, chunked streams) with the JSON conventions of the v1 APIs."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # headers and body are separate writes: with Nagle and delayed ACKs each
        # keep-alive call from pymesos would take ~40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # the access log is noise here
        pass

    @property
    def route(self) -> str:
        return urllib.parse.urlsplit(self.path).path.rstrip("/")

    def do_GET(self) -> None:
        self.server.owner.handle_get(self)

    def do_POST(self) -> None:
        self.server.owner.handle_post(self)

    def reply(self, code: int, body: bytes | str = b"", content_type: str = "text/plain; charset=utf-8") -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        if data:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def reply_json(self, obj: Any) -> None:
        self.reply(200, json.dumps(obj, indent=1, sort_keys=True), "application/json")

    def read_call(self) -> Json | None:
        """The JSON ``Call`` of a POST, or None after answering 4xx as the real master/agent do."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            self.reply(415, "Expecting 'Content-Type' of application/json or application/x-protobuf")
            return None
        accept = (self.headers.get("Accept") or "*/*").lower()
        if not any(kind in accept for kind in ("application/json", "*/*", "application/*")):
            self.reply(406, "Expecting 'Accept' to allow application/json or application/x-protobuf")
            return None
        try:
            call = json.loads(body)
        except ValueError as exc:
            self.reply(400, f"Failed to parse body into JSON: {exc}")
            return None
        if not isinstance(call, dict) or not isinstance(call.get("type"), str):
            self.reply(400, "Failed to validate call: Expecting 'type' to be present")
            return None
        return call

    def open_stream(self, headers: dict[str, str], heartbeat: float | None) -> _EventStream:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        return _EventStream(self, heartbeat)


class _Server(ThreadingHTTPServer):
    """A threading HTTP server on 127.0.0.1 that can close every connection it accepted."""

    daemon_threads = True

    def __init__(self, owner: _Owner, name: str) -> None:
        self.owner = owner
        self._name = name
        self._connections: dict[threading.Thread, socket.socket] = {}
        self._guard = threading.Lock()
        self._closed = False
        super().__init__(("127.0.0.1", 0), _Handler)
        self.port: int = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{name}-http", daemon=True)
        self._thread.start()

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)   # not HTTPServer's: it does a reverse DNS lookup
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self._serve_connection, args=(request, client_address),
                                  name=f"{self._name}-conn", daemon=True)
        with self._guard:
            if self._closed:
                self.shutdown_request(request)
                return
            self._connections[thread] = request
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._guard:
                self._connections.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):   # a peer that went away is not an error
            log.exception("%s: error while serving %s", self._name, client_address)

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, shut every open connection down, join their threads. Idempotent."""
        with self._guard:
            if self._closed:
                return
            self._closed = True
        self.shutdown()
        self.server_close()
        self._thread.join(timeout)
        with self._guard:
            connections = list(self._connections.items())
        for _, sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread, _ in connections:
            thread.join(max(0.0, deadline - time.monotonic()))


# --------------------------------------------------------------------------- fetcher
class FetchError(Exception):
    """A URI could not be fetched; the message names it."""


class _Fetcher:
    """One agent's Mesos fetcher: downloads into sandboxes, through a cache for ``cache=true``.

    ``counts[uri]`` is the number of real downloads (copies from the source)
    of ``uri``; a cached URI is downloaded once per agent and user, later
    sandboxes get a copy from the cache.
    """

    def __init__(self, cache_dir: Path, log_line: Callable[[str], None]) -> None:
        self.cache_dir = cache_dir
        self.counts: dict[str, int] = {}
        self._log = log_line
        self._guard = threading.Lock()
        self._uri_locks: dict[str, threading.Lock] = {}
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # never via a proxy

    def fetch(self, uri: Json, sandbox: Path, user: str = "") -> Path:
        value = uri.get("value")
        if not isinstance(value, str) or not value:
            raise FetchError("Failed to fetch a URI without a value")
        parsed = urllib.parse.urlsplit(value)
        output = uri.get("output_file") or os.path.basename(parsed.path) or "download"
        if os.path.isabs(output) or ".." in Path(output).parts:
            raise FetchError(f"Failed to fetch '{value}': output_file '{output}' is not a relative path")
        dest = sandbox / output
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            if uri.get("cache"):
                key = hashlib.sha256(f"{user}\0{value}".encode()).hexdigest()[:24]
                cached = self.cache_dir / key / (os.path.basename(parsed.path) or "download")
                with self._lock_for(key):
                    if not cached.exists():
                        self._download(value, cached)
                    else:
                        self._log(f"fetcher: {value} from the cache")
                shutil.copyfile(cached, dest)
            else:
                self._download(value, dest)
            if uri.get("executable"):
                dest.chmod(0o755)
            elif uri.get("extract", True) and dest.name.endswith(ARCHIVE_SUFFIXES):
                _extract(dest, sandbox)
        except FetchError:
            raise
        except Exception as exc:
            raise FetchError(f"Failed to fetch '{value}': {exc}") from exc
        return dest

    def _lock_for(self, key: str) -> threading.Lock:
        with self._guard:
            return self._uri_locks.setdefault(key, threading.Lock())

    def _download(self, value: str, dest: Path) -> None:
        parsed = urllib.parse.urlsplit(value)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".part")
        if parsed.scheme in ("", "file"):
            source = urllib.parse.unquote(parsed.path) if parsed.scheme else value
            if not os.path.isabs(source):
                raise FetchError(f"Failed to fetch '{value}': a local path must be absolute")
            shutil.copyfile(source, partial)
        elif parsed.scheme in ("http", "https"):
            if not _is_loopback(parsed.hostname or ""):
                raise FetchError(f"Failed to fetch '{value}': the Mesos double fetches from loopback hosts only")
            with self._opener.open(value, timeout=FETCH_TIMEOUT) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
        else:
            raise FetchError(f"Failed to fetch '{value}': scheme '{parsed.scheme}' is not supported by the double")
        os.replace(partial, dest)
        with self._guard:
            self.counts[value] = self.counts.get(value, 0) + 1
        self._log(f"fetcher: downloaded {value} -> {dest}")


def _extract(archive: Path, into: Path) -> None:
    name = archive.name
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(into)
    elif name.endswith(".gz") and not name.endswith(".tar.gz"):
        with gzip.open(archive) as src, open(into / name[:-3], "wb") as out:
            shutil.copyfileobj(src, out)
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(into, filter="data")


# --------------------------------------------------------------------------- state records
@dataclass(eq=False)
class _Task:
    info: Json
    framework_id: str
    agent: Agent
    resources: Scalars
    executor_id: str = ""
    state: str = "TASK_STAGING"          # the latest state the master knows of
    agent_state: str = "TASK_STAGING"    # the latest state the agent knows of
    charged: bool = True                 # its resources are still counted as used on the agent
    kill_requested: bool = False

    @property
    def task_id(self) -> str:
        return self.info["task_id"]["value"]


@dataclass(eq=False)
class _Offer:
    id: str
    framework_id: str
    agent: Agent
    resources: Scalars


@dataclass(eq=False)
class _Framework:
    id: str
    info: Json
    stream: _EventStream | None = None
    stream_id: str | None = None
    suppressed: bool = False
    filters: dict[str, list[tuple[Scalars, float]]] = field(default_factory=dict)   # agent id -> (refused, until)
    tasks: dict[str, _Task] = field(default_factory=dict)
    disconnected_at: float | None = None

    def send(self, event: Json) -> None:
        if self.stream is not None:
            self.stream.send(event)

    @property
    def role(self) -> str:
        roles = self.info.get("roles") or []
        return roles[0] if roles else self.info.get("role") or "*"

    @property
    def multi_role(self) -> bool:
        return any(c.get("type") == "MULTI_ROLE" for c in self.info.get("capabilities") or [])


@dataclass(eq=False)
class _ExecutorRun:
    """One run of an executor (a container, in Mesos' terms) on an agent."""

    framework_id: str
    executor_id: str
    kind: str                  # "custom" (ExecutorInfo) or "command" (TaskInfo.command)
    info: Json                 # the ExecutorInfo (made up for a command task)
    framework_info: Json
    command: Json              # the CommandInfo to run
    sandbox: Path
    container_id: str
    resources: Scalars
    grace: float
    state: str = "FETCHING"    # FETCHING -> RUNNING -> EXITED
    charged: bool = True
    proc: subprocess.Popen[bytes] | None = None
    reaped: bool = False
    returncode: int | None = None
    stream: _EventStream | None = None
    subscribed: bool = False
    spawned_at: float = 0.0
    pending: list[tuple[Json, list[str]]] = field(default_factory=list)   # events held until SUBSCRIBED
    tasks: dict[str, _Task] = field(default_factory=dict)
    shutdown_requested: bool = False
    kill_at: float | None = None
    orphaned: bool = False     # its framework or agent is gone, or the cluster stops: nothing to report
    reason: str = "REASON_EXECUTOR_TERMINATED"
    message: str = "Executor terminated"
    thread: threading.Thread | None = None

    @property
    def live(self) -> bool:
        return self.state != "EXITED"


# --------------------------------------------------------------------------- agent
class Agent:
    """A Mesos agent: its resources, its executor API endpoint, its executor processes.

    Public: ``agent_id``, ``hostname``, ``endpoint`` (``127.0.0.1:<port>``),
    ``sandbox_root``, ``fetch_count``, ``resources`` (the totals),
    ``executors()``, ``sandbox()``, ``kill_executor()``, ``lose()``.
    """

    def __init__(self, cluster: MesosCluster, index: int, spec: dict[str, Any]) -> None:
        spec = {**DEFAULT_AGENT, **spec}
        self._cluster = cluster
        self._lock = cluster.lock
        self.hostname: str = str(spec.pop("hostname"))
        self.ip: str = str(spec.pop("ip"))      # only said in offers (Mesos' agent address); it listens on 127.0.0.1
        self.attributes: dict[str, str] = {str(k): str(v) for k, v in (spec.pop("attributes", None) or {}).items()}
        self.resources: Scalars = {str(k): float(v) for k, v in spec.items()}
        self.used: Scalars = {}
        self.agent_id: str = f"{cluster.master_id}-S{index}"
        self.sandbox_root: Path = cluster.workdir / "slaves" / self.agent_id
        self.sandbox_root.mkdir(parents=True, exist_ok=True)
        self._fetcher = _Fetcher(cluster.workdir / "fetcher-cache" / self.agent_id,
                                 lambda line: cluster._log(self.agent_id, line))
        self.fetch_count: dict[str, int] = self._fetcher.counts
        self.active = True
        self._runs: dict[tuple[str, str], _ExecutorRun] = {}   # the live run of each (framework, executor)
        self._all_runs: list[_ExecutorRun] = []
        self._updates: dict[tuple[str, str], deque[Json]] = {}   # (framework, task) -> updates, head in flight
        self._retries: dict[tuple[str, str], tuple[float, float]] = {}   # -> (next resend, interval)
        self._server = _Server(self, f"agent-{index}")
        self.port: int = self._server.port
        self.endpoint: str = f"127.0.0.1:{self.port}"

    def __repr__(self) -> str:
        return f"<Agent {self.agent_id} {self.hostname} {self.endpoint}{'' if self.active else ' lost'}>"

    # -- public --------------------------------------------------------------------------------
    def executors(self) -> dict[str, int]:
        """The live executor processes of this agent: executor id -> pid."""
        with self._lock:
            return {run.executor_id: run.proc.pid for run in self._all_runs
                    if run.proc is not None and not run.reaped}

    def sandbox(self, executor_id: str) -> Path | None:
        """The sandbox of the latest run of ``executor_id`` on this agent."""
        with self._lock:
            runs = [run for run in self._all_runs if run.executor_id == executor_id]
            return runs[-1].sandbox if runs else None

    def kill_executor(self, executor_id: str) -> None:
        """SIGKILL the process group of a live executor, as if it crashed.

        The agent then reports its unfinished tasks ``TASK_FAILED``
        (``REASON_EXECUTOR_TERMINATED``) and the scheduler gets
        ``FAILURE{executor_id, agent_id, status=9}``. KeyError if no live
        process has that executor id.
        """
        with self._lock:
            runs = [run for run in self._all_runs
                    if run.executor_id == executor_id and run.proc is not None and not run.reaped]
            if not runs:
                raise KeyError(f"no live executor {executor_id!r} on agent {self.agent_id}")
            for run in runs:
                self._cluster._log(self.agent_id, f"kill_executor {executor_id} (pid {run.proc.pid})")
                self._killpg(run)

    def lose(self) -> None:
        """The agent disappears: its executors die, its endpoint closes, the master removes it.

        Each framework gets ``TASK_LOST`` (``SOURCE_MASTER``,
        ``REASON_AGENT_REMOVED``, no uuid) for its unfinished tasks there,
        ``RESCIND`` for outstanding offers of the agent, and ``FAILURE`` with
        only ``agent_id`` (pymesos' ``slaveLost``). No offers come from it any
        more. Idempotent.
        """
        with self._lock:
            if not self.active:
                return
            self.active = False
            self._cluster._log(self.agent_id, "lost")
            self._abandon_runs()
            self._updates.clear()
            self._retries.clear()
            self._cluster._master.agent_removed(self)
        self._server.close()

    # -- used by the master (cluster lock held) --------------------------------------------------
    def live_run(self, framework_id: str, executor_id: str) -> _ExecutorRun | None:
        run = self._runs.get((framework_id, executor_id))
        return run if run is not None and run.live else None

    def info(self) -> Json:
        return {"id": {"value": self.agent_id}, "hostname": self.hostname, "port": self.port,
                "resources": _resources(self.resources, "*", None),
                "attributes": [{"name": k, "type": "TEXT", "text": {"value": v}} for k, v in self.attributes.items()]}

    def executor_ids(self, framework_id: str) -> list[Json]:
        return [{"value": eid} for (fid, eid), run in self._runs.items()
                if fid == framework_id and run.live and run.kind == "custom"]

    def launch(self, framework: _Framework, executor_info: Json | None, tasks: list[_Task], group: bool,
               executor_resources: Scalars) -> None:
        """Start the tasks: on a running executor, or on a new run that fetches, spawns and subscribes."""
        if executor_info is None:                # a command task: Mesos runs its command executor
            task = tasks[0]
            run = self._new_run(framework, "command", {"executor_id": {"value": task.task_id},
                                                       "framework_id": {"value": framework.id},
                                                       "command": task.info["command"], "name": "command"},
                                task.info["command"], {})
        else:
            run = self.live_run(framework.id, executor_info["executor_id"]["value"])
            if run is not None and run.shutdown_requested:
                for task in tasks:
                    task.executor_id = run.executor_id
                    run.tasks[task.task_id] = task
                    self._agent_update(run, task, "TASK_LOST", "REASON_EXECUTOR_TERMINATED",
                                       "Executor is terminating")
                return
            if run is None:
                info = dict(executor_info)
                info.setdefault("framework_id", {"value": framework.id})
                run = self._new_run(framework, "custom", info, info["command"], executor_resources)
        for task in tasks:
            task.executor_id = run.executor_id
            run.tasks[task.task_id] = task
        if run.kind == "command":
            return
        if group:
            event = {"type": "LAUNCH_GROUP", "launch_group": {"task_group": {"tasks": [t.info for t in tasks]}}}
        else:
            event = {"type": "LAUNCH", "launch": {"task": tasks[0].info}}
        ids = [task.task_id for task in tasks]
        if run.stream is not None:
            self._cluster._log(self.agent_id, f"-> executor {run.executor_id} {event['type']} {ids}")
            run.stream.send(event)
        else:
            run.pending.append((event, ids))

    def kill_task(self, task: _Task, kill_policy: Json | None) -> None:
        run = self.live_run(task.framework_id, task.executor_id)
        if run is None or task.task_id not in run.tasks:
            return
        task.kill_requested = True
        now = time.monotonic()
        if run.kind == "command":
            if run.state == "RUNNING":
                self._killpg(run, signal.SIGTERM)
                grace = _duration((kill_policy or {}).get("grace_period"), COMMAND_KILL_GRACE)
                run.kill_at = min(run.kill_at or float("inf"), now + grace)
            else:
                self._agent_update(run, task, "TASK_KILLED", "REASON_TASK_KILLED_DURING_LAUNCH",
                                   "Killed before the command started")
            return
        for event, ids in list(run.pending):
            if task.task_id in ids:          # not delivered yet: drop it (with its group), report it killed
                run.pending.remove((event, ids))
                for tid in ids:
                    self._agent_update(run, run.tasks[tid], "TASK_KILLED", "REASON_TASK_KILLED_DURING_LAUNCH",
                                       "Killed before delivery to the executor")
                return
        if run.stream is not None:
            event: Json = {"type": "KILL", "kill": {"task_id": {"value": task.task_id}}}
            if kill_policy:
                event["kill"]["kill_policy"] = kill_policy
            self._cluster._log(self.agent_id, f"-> executor {run.executor_id} KILL {task.task_id}")
            run.stream.send(event)

    def shutdown_executor(self, framework_id: str, executor_id: str) -> None:
        run = self.live_run(framework_id, executor_id)
        if run is not None:
            self._shutdown_run(run)

    def remove_framework(self, framework_id: str) -> None:
        """The framework is gone: shut its executors down, forget its pending updates."""
        for run in [r for r in self._runs.values() if r.framework_id == framework_id and r.live]:
            run.orphaned = True
            self._release_executor(run)
            self._shutdown_run(run)
        for key in [k for k in self._updates if k[0] == framework_id]:
            self._updates.pop(key, None)
            self._retries.pop(key, None)

    def framework_message(self, framework_id: str, executor_id: str, data: str) -> None:
        run = self.live_run(framework_id, executor_id)
        if run is not None and run.stream is not None:
            run.stream.send({"type": "MESSAGE", "message": {"data": data}})
        else:
            self._cluster._log(self.agent_id, f"dropped a framework message for executor {executor_id}")

    def acknowledge(self, framework_id: str, task_id: str, uuid_b64: str) -> None:
        """The scheduler acknowledged an update: the next one of that task may go."""
        key = (framework_id, task_id)
        pending = self._updates.get(key)
        if not pending or pending[0].get("uuid") != uuid_b64:
            self._cluster._log(self.agent_id, f"ignored ACKNOWLEDGE of {task_id} uuid={uuid_b64}")
            return
        pending.popleft()
        if pending:
            self._forward_head(key)
        else:
            self._updates.pop(key, None)
            self._retries.pop(key, None)

    def resend_updates(self, framework_id: str) -> None:
        """After a (re)subscription: forward each task's unacknowledged head update again."""
        for key in [k for k in self._updates if k[0] == framework_id]:
            self._forward_head(key)

    def tick(self, now: float) -> None:
        for key, (when, interval) in list(self._retries.items()):
            if now >= when and self._updates.get(key):
                self._cluster._log(self.agent_id, f"retrying the unacknowledged update of {key[1]}")
                self._forward_head(key, min(interval * 2, 600.0))
        for run in self._all_runs:
            if run.state != "RUNNING" or run.reaped:
                continue
            if run.kill_at is not None and now >= run.kill_at:
                self._cluster._log(self.agent_id, f"grace period over: SIGKILL executor {run.executor_id}")
                run.kill_at = None
                self._killpg(run)
            elif (run.kind == "custom" and not run.subscribed and not run.shutdown_requested
                  and run.reason != "REASON_EXECUTOR_REGISTRATION_TIMEOUT"
                  and now - run.spawned_at > self._cluster.registration_timeout):
                run.reason = "REASON_EXECUTOR_REGISTRATION_TIMEOUT"
                run.message = "Executor did not register within the registration timeout"
                self._cluster._log(self.agent_id, f"executor {run.executor_id} did not subscribe: killing it")
                self._killpg(run)

    def state(self) -> Json:
        return {"id": self.agent_id, "hostname": self.hostname, "endpoint": self.endpoint, "active": self.active,
                "resources": self.resources, "used": _positive(self.used),
                "fetch_count": dict(self.fetch_count),
                "executors": [{"framework_id": run.framework_id, "executor_id": run.executor_id,
                               "kind": run.kind, "state": run.state,
                               "pid": run.proc.pid if run.proc is not None else None,
                               "returncode": run.returncode, "subscribed": run.subscribed,
                               "sandbox": str(run.sandbox), "resources": run.resources,
                               "tasks": {tid: t.agent_state for tid, t in run.tasks.items()}}
                              for run in self._all_runs]}

    # -- cluster shutdown ------------------------------------------------------------------------
    def _abandon_runs(self) -> None:
        """Kill every executor process now; nothing will be reported about them (lock held)."""
        for run in self._all_runs:
            run.orphaned = True
            self._killpg(run)
            if run.stream is not None:
                run.stream.close()
                run.stream = None

    def _join(self, deadline: float) -> list[_ExecutorRun]:
        """Wait for the threads of all runs; the runs still going afterwards."""
        with self._lock:
            runs = list(self._all_runs)
        for run in runs:
            if run.thread is not None:
                run.thread.join(max(0.0, deadline - time.monotonic()))
        return [run for run in runs if run.thread is not None and run.thread.is_alive()]

    # -- HTTP: the executor API ------------------------------------------------------------------
    def handle_get(self, h: _Handler) -> None:
        if h.route in ("/version", "/slave(1)/version"):
            h.reply_json({"version": VERSION, "build_user": "mesos-double"})
        elif h.route in ("/state", "/state.json", "/slave(1)/state"):
            with self._lock:
                state = self.state()
            h.reply_json(state)
        else:
            h.reply(404)

    def handle_post(self, h: _Handler) -> None:
        if h.route not in ("/api/v1/executor", "/slave(1)/api/v1/executor"):
            h.reply(404)
            return
        call = h.read_call()
        if call is None:
            return
        for key in ("executor_id", "framework_id"):
            if _value(call, key) is None:
                h.reply(400, f"Failed to validate Executor::Call: Expecting '{key}' to be present")
                return
        if call["type"] == "SUBSCRIBE":
            self._executor_subscribe(h, call)
            return
        with self._lock:
            code, body = self._executor_call(call)
        h.reply(code, body)

    def _executor_subscribe(self, h: _Handler, call: Json) -> None:
        key = (call["framework_id"]["value"], call["executor_id"]["value"])
        with self._lock:
            run = self._runs.get(key)
            if run is None or run.state != "RUNNING" or not self.active:
                stream = None
            else:
                if run.stream is not None:
                    run.stream.close()
                stream = h.open_stream({}, self._cluster.heartbeat)
                run.stream, run.subscribed = stream, True
                self._cluster._log(self.agent_id, f"executor {run.executor_id} SUBSCRIBE -> SUBSCRIBED")
                framework = self._cluster._master.frameworks.get(run.framework_id)
                stream.send({"type": "SUBSCRIBED", "subscribed": {
                    "executor_info": run.info,
                    "framework_info": dict(framework.info if framework is not None else run.framework_info),
                    "agent_info": self.info(),
                    "container_id": {"value": run.container_id}}})
                for event, ids in run.pending:
                    self._cluster._log(self.agent_id, f"-> executor {run.executor_id} {event['type']} {ids}")
                    stream.send(event)
                run.pending.clear()
                if run.shutdown_requested:
                    stream.send({"type": "SHUTDOWN"})
        if stream is None:
            h.reply(400, "Executor cannot be found")
            return
        stream.serve()
        with self._lock:
            if run.stream is stream:
                run.stream = None
                self._cluster._log(self.agent_id, f"executor {run.executor_id} stream closed")

    def _executor_call(self, call: Json) -> tuple[int, str]:
        run = self._runs.get((call["framework_id"]["value"], call["executor_id"]["value"]))
        if run is None or run.state != "RUNNING" or not self.active:
            return 400, "Executor cannot be found"
        if run.stream is None:
            return 403, "Executor is not subscribed"
        kind = call["type"]
        if kind == "UPDATE":
            status = (call.get("update") or {}).get("status")
            problem = _check_executor_update(call, status)
            if problem:
                return 400, f"Failed to validate Executor::Call: {problem}"
            assert isinstance(status, dict)
            self._cluster._log(self.agent_id, f"executor {run.executor_id} UPDATE {status['task_id']['value']} "
                                              f"{status['state']} uuid={status['uuid']}")
            self._status_update(run, dict(status))
            run.stream.send({"type": "ACKNOWLEDGED", "acknowledged": {
                "task_id": status["task_id"], "uuid": status["uuid"]}})
            return 202, ""
        if kind == "MESSAGE":
            data = (call.get("message") or {}).get("data")
            if not isinstance(data, str):
                return 400, "Failed to validate Executor::Call: Expecting 'message.data' to be present"
            self._cluster._master.executor_message(self, run, data)
            return 202, ""
        if kind == "HEARTBEAT":
            return 202, ""
        return 400, f"Failed to validate Executor::Call: unsupported call type '{kind}'"

    # -- running executors -----------------------------------------------------------------------
    def _new_run(self, framework: _Framework, kind: str, info: Json, command: Json, resources: Scalars) -> _ExecutorRun:
        executor_id = info["executor_id"]["value"]
        container_id = str(uuid.uuid4())
        sandbox = (self.sandbox_root / "frameworks" / framework.id / "executors" / executor_id
                   / "runs" / container_id)
        sandbox.mkdir(parents=True)
        run = _ExecutorRun(framework_id=framework.id, executor_id=executor_id, kind=kind, info=info,
                           framework_info=dict(framework.info), command=command, sandbox=sandbox,
                           container_id=container_id, resources=resources,
                           grace=_duration(info.get("shutdown_grace_period"), self._cluster.shutdown_grace))
        self._runs[(framework.id, executor_id)] = run
        self._all_runs.append(run)
        run.thread = threading.Thread(target=self._run_executor, args=(run,),
                                      name=f"executor-{executor_id}", daemon=True)
        run.thread.start()
        return run

    def _run_executor(self, run: _ExecutorRun) -> None:
        """The life of one run, in its own thread: fetch, spawn, wait, report."""
        user = run.command.get("user") or run.framework_info.get("user") or ""
        try:
            for uri in run.command.get("uris") or []:
                self._fetcher.fetch(uri, run.sandbox, user)
        except FetchError as exc:
            with self._lock:
                run.reason, run.message = "REASON_CONTAINER_LAUNCH_FAILED", f"Failed to launch container: {exc}"
                self._cluster._log(self.agent_id, f"executor {run.executor_id}: {run.message}")
                self._run_ended(run)
            return
        with self._lock:
            unwanted = (self._cluster.stopped or run.orphaned or not self.active or run.shutdown_requested
                        or all(t.agent_state in TERMINAL_STATES for t in run.tasks.values()))
            if unwanted:
                self._run_ended(run)
                return
            try:
                run.proc = self._spawn(run)
            except OSError as exc:
                run.reason, run.message = "REASON_CONTAINER_LAUNCH_FAILED", f"Failed to launch container: {exc}"
                self._run_ended(run)
                return
            run.state, run.spawned_at = "RUNNING", time.monotonic()
            self._cluster._log(self.agent_id, f"spawned executor {run.executor_id} pid={run.proc.pid} "
                                              f"sandbox={run.sandbox}")
            if run.kind == "command":
                for task in run.tasks.values():
                    self._executor_made_update(run, task, "TASK_RUNNING")
        pid = run.proc.pid
        with contextlib.suppress(ChildProcessError):
            # wait without reaping: until we reap it, the pid (and so its group id) cannot be reused
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        with self._lock:
            self._killpg(run)                # Mesos destroys the whole container
            run.returncode = run.proc.wait()
            run.reaped = True
            self._cluster._log(self.agent_id, f"executor {run.executor_id} exited rc={run.returncode}")
            self._run_ended(run)

    def _spawn(self, run: _ExecutorRun) -> subprocess.Popen[bytes]:
        command = run.command
        env = dict(os.environ)
        env.update(self._mesos_env(run))
        for variable in (command.get("environment") or {}).get("variables") or []:
            if variable.get("type", "VALUE") == "VALUE":
                env[variable["name"]] = variable.get("value", "")
        value = command.get("value") or ""
        if command.get("shell", True):
            args: str | list[str] = value
            executable = None
        else:
            args = list(command.get("arguments") or []) or [value]
            executable = value
        with open(run.sandbox / "stdout", "ab") as out, open(run.sandbox / "stderr", "ab") as err:
            # a session of its own: pymesos' executor ends with os.killpg(0, SIGKILL)
            return subprocess.Popen(args, shell=bool(command.get("shell", True)), executable=executable,
                                    cwd=run.sandbox, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True)

    def _mesos_env(self, run: _ExecutorRun) -> dict[str, str]:
        return {
            "MESOS_AGENT_ENDPOINT": self.endpoint,
            "MESOS_FRAMEWORK_ID": run.framework_id,
            "MESOS_EXECUTOR_ID": run.executor_id,
            "MESOS_DIRECTORY": str(run.sandbox),
            "MESOS_SANDBOX": str(run.sandbox),
            "MESOS_SLAVE_ID": self.agent_id,
            "MESOS_AGENT_ID": self.agent_id,
            "MESOS_SLAVE_PID": f"slave(1)@{self.endpoint}",
            # the real agent writes "1"/"0"; pymesos reads bool(os.environ.get(...)), so "0" is true
            "MESOS_CHECKPOINT": "1" if run.framework_info.get("checkpoint") else "0",
            "MESOS_HTTP_COMMAND_EXECUTOR": "0",
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": f"{run.grace:g}secs",
            "MESOS_RECOVERY_TIMEOUT": "15mins",
            "MESOS_SUBSCRIPTION_BACKOFF_MAX": "2secs",
        }

    def _killpg(self, run: _ExecutorRun, sig: int = signal.SIGKILL) -> None:
        """Signal the run's process group: only ours, and only while its leader is not reaped."""
        if run.proc is None or run.reaped:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.proc.pid, sig)

    def _shutdown_run(self, run: _ExecutorRun) -> None:
        if not run.live or run.shutdown_requested:
            return
        run.shutdown_requested = True
        if run.state != "RUNNING":
            return                               # still fetching: it will not be spawned
        if run.kind == "command":
            self._killpg(run, signal.SIGTERM)
        elif run.stream is not None:
            self._cluster._log(self.agent_id, f"-> executor {run.executor_id} SHUTDOWN")
            run.stream.send({"type": "SHUTDOWN"})
        run.kill_at = time.monotonic() + run.grace

    def _run_ended(self, run: _ExecutorRun) -> None:
        """The run is over (exited, or never started): report it as the real agent would (lock held)."""
        run.state = "EXITED"
        if self._runs.get((run.framework_id, run.executor_id)) is run:
            del self._runs[(run.framework_id, run.executor_id)]
        if run.stream is not None:
            run.stream.close()
            run.stream = None
        run.pending.clear()
        self._release_executor(run)
        if run.orphaned or not self.active:
            return
        for task in run.tasks.values():
            if task.agent_state in TERMINAL_STATES:
                continue
            if run.kind == "command" and run.proc is not None:
                rc = run.returncode
                state = ("TASK_KILLED" if task.kill_requested or run.shutdown_requested
                         else "TASK_FINISHED" if rc == 0 else "TASK_FAILED")
                text = f"Command exited with status {rc}" if rc is not None and rc >= 0 else \
                    f"Command terminated with signal {-(rc or 0)}"
                self._executor_made_update(run, task, state, text)
            else:
                killed = task.kill_requested or run.shutdown_requested
                reason = "REASON_EXECUTOR_TERMINATED" if killed else run.reason
                self._agent_update(run, task, "TASK_KILLED" if killed else "TASK_FAILED", reason, run.message)
        if run.kind == "custom":
            self._cluster._master.executor_exited(self, run, _wait_status(run.returncode if run.reaped else None))

    def _release_executor(self, run: _ExecutorRun) -> None:
        if run.charged:
            run.charged = False
            self.used = _sub(self.used, run.resources)

    # -- status update manager -------------------------------------------------------------------
    def _agent_update(self, run: _ExecutorRun, task: _Task, state: str, reason: str, message: str) -> None:
        self._status_update(run, {"task_id": {"value": task.task_id}, "state": state, "source": "SOURCE_AGENT",
                                  "reason": reason, "message": message, "uuid": _new_uuid(),
                                  "timestamp": time.time()})

    def _executor_made_update(self, run: _ExecutorRun, task: _Task, state: str, message: str = "") -> None:
        """An update of the emulated command executor."""
        status: Json = {"task_id": {"value": task.task_id}, "state": state, "source": "SOURCE_EXECUTOR",
                        "uuid": _new_uuid(), "timestamp": time.time()}
        if message:
            status["message"] = message
        self._status_update(run, status)

    def _status_update(self, run: _ExecutorRun, status: Json) -> None:
        """Record an update and queue it for the scheduler (per task FIFO, head in flight)."""
        if run.orphaned:
            return                          # nobody to tell: the framework or the agent is gone
        status["agent_id"] = {"value": self.agent_id}
        status["executor_id"] = {"value": run.executor_id}
        task_id = status["task_id"]["value"]
        task = run.tasks.get(task_id)
        if task is not None:
            if task.agent_state in TERMINAL_STATES:
                self._cluster._log(self.agent_id, f"ignored {status['state']} of {task_id}: already terminal")
                return
            task.agent_state = status["state"]
            if status["state"] in TERMINAL_STATES and task.charged:
                task.charged = False
                self.used = _sub(self.used, task.resources)
        key = (run.framework_id, task_id)
        pending = self._updates.setdefault(key, deque())
        pending.append(status)
        if len(pending) == 1:
            self._forward_head(key)

    def _forward_head(self, key: tuple[str, str], interval: float | None = None) -> None:
        interval = interval or self._cluster.update_retry
        self._retries[key] = (time.monotonic() + interval, interval)
        self._cluster._master.forward_update(key[0], self._updates[key][0])


def _check_executor_update(call: Json, status: Any) -> str | None:
    """What the real agent's validation says about an executor's UPDATE, or None if it is fine."""
    if not isinstance(status, dict):
        return "Expecting 'update' to be present"
    if _value(status, "task_id") is None or not isinstance(status.get("state"), str):
        return "Expecting 'update.status.task_id' and 'update.status.state' to be present"
    if "uuid" not in status:
        return "Expecting 'uuid' to be present"
    try:
        if len(base64.b64decode(status["uuid"], validate=True)) != 16:
            return "Invalid UUID"
    except (ValueError, TypeError):
        return "Invalid UUID"
    if "executor_id" in status and status["executor_id"] != call["executor_id"]:
        return "ExecutorID in Call does not match ExecutorID in TaskStatus"
    if status.get("source") != "SOURCE_EXECUTOR":
        return "Received Call from executor with invalid source, expecting 'SOURCE_EXECUTOR'"
    if status["state"] == "TASK_STAGING":
        return "Received TASK_STAGING from executor which is not allowed"
    return None


def _resources(scalars: Scalars, role: str, allocation_role: str | None) -> list[Json]:
    out = []
    for name, value in sorted(_positive(scalars).items()):
        resource: Json = {"name": name, "type": "SCALAR", "scalar": {"value": round(value, 6)}, "role": "*"}
        if allocation_role is not None:
            resource["allocation_info"] = {"role": allocation_role}
        out.append(resource)
    return out


# --------------------------------------------------------------------------- master
class _Master:
    """The master: frameworks, offers, the scheduler API. Every method runs under the cluster lock."""

    def __init__(self, cluster: MesosCluster) -> None:
        self._cluster = cluster
        self._lock = cluster.lock
        self.id = cluster.master_id
        self.frameworks: dict[str, _Framework] = {}
        self.removed: set[str] = set()
        self.offers: dict[str, _Offer] = {}
        self._framework_seq = itertools.count()
        self._offer_seq = itertools.count(1)
        self._turn = 0
        self._next_allocation = 0.0
        self._server = _Server(self, "master")
        self.address = f"127.0.0.1:{self._server.port}"
        self._calls: dict[str, Callable[[_Framework, Json], str | None]] = {
            "TEARDOWN": self._teardown, "ACCEPT": self._accept, "DECLINE": self._decline,
            "REVIVE": self._revive, "SUPPRESS": self._suppress, "KILL": self._kill,
            "SHUTDOWN": self._shutdown, "ACKNOWLEDGE": self._acknowledge, "RECONCILE": self._reconcile,
            "MESSAGE": self._message, "REQUEST": self._ignore, "ACCEPT_INVERSE_OFFERS": self._ignore,
            "DECLINE_INVERSE_OFFERS": self._ignore, "ACKNOWLEDGE_OPERATION_STATUS": self._ignore,
            "RECONCILE_OPERATIONS": self._ignore,
        }

    # -- HTTP --------------------------------------------------------------------------------------
    def handle_get(self, h: _Handler) -> None:
        if h.route in ("/version", "/master/version"):
            h.reply_json({"version": VERSION, "build_user": "mesos-double", "build_time": 0})
        elif h.route in ("/state", "/state.json", "/master/state", "/master/state.json"):
            h.reply_json(self._cluster.state())
        else:
            h.reply(404)

    def handle_post(self, h: _Handler) -> None:
        if h.route not in ("/api/v1/scheduler", "/master/api/v1/scheduler"):
            h.reply(404)
            return
        call = h.read_call()
        if call is None:
            return
        if call["type"] == "SUBSCRIBE":
            self._subscribe(h, call)
            return
        with self._lock:
            code, body = self._scheduler_call(h, call)
        h.reply(code, body)

    def _scheduler_call(self, h: _Handler, call: Json) -> tuple[int, str]:
        framework_id = _value(call, "framework_id")
        framework = self.frameworks.get(framework_id or "")
        if framework is None:
            return 400, "Framework cannot be found"
        if framework.stream is None:
            return 403, "Framework is not subscribed"
        stream_id = h.headers.get("Mesos-Stream-Id")
        if not stream_id:
            return 400, "All non-subscribe calls should include the 'Mesos-Stream-Id' header"
        if stream_id != framework.stream_id:
            return 400, (f"The stream ID '{stream_id}' included in this request didn't match the stream ID "
                         f"currently associated with framework ID {framework.id}")
        kind = call["type"]
        if kind == "UNKNOWN":
            return 501, "Received an unexpected 'UNKNOWN' call"
        handler = self._calls.get(kind)
        if handler is None:
            return 400, f"Failed to validate scheduler::Call: unsupported call type '{kind}'"
        self._cluster._log("master", f"<- {kind} {_summary(call)}")
        problem = handler(framework, call)
        return (400, f"Failed to validate scheduler::Call: {problem}") if problem else (202, "")

    def _subscribe(self, h: _Handler, call: Json) -> None:
        if h.headers.get("Mesos-Stream-Id"):
            h.reply(400, "Subscribe calls should not include the 'Mesos-Stream-Id' header")
            return
        info = dict((call.get("subscribe") or {}).get("framework_info") or {})
        if not isinstance(info.get("user"), str) or not isinstance(info.get("name"), str):
            h.reply(400, "Failed to validate scheduler::Call: Expecting 'framework_info.user' and "
                         "'framework_info.name' to be present")
            return
        call_id, info_id = _value(call, "framework_id"), _value(info, "id")
        if call_id and info_id and call_id != info_id:
            h.reply(400, "Failed to validate scheduler::Call: 'framework_id' differs from "
                         "'subscribe.framework_info.id'")
            return
        stream_id = str(uuid.uuid4())
        with self._lock:
            framework_id = call_id or info_id
            stream = h.open_stream({"Mesos-Stream-Id": stream_id}, self._cluster.heartbeat)
            if framework_id in self.removed:
                self._cluster._log("master", f"SUBSCRIBE of removed framework {framework_id}: ERROR")
                stream.send({"type": "ERROR", "error": {"message": "Framework has been removed"}})
                stream.close()
                framework = None
            else:
                framework = self._add_framework(framework_id, info, call, stream, stream_id)
        stream.serve()
        if framework is None:
            return
        with self._lock:
            if framework.stream is stream:
                self._cluster._log("master", f"framework {framework.id} disconnected")
                framework.stream = framework.stream_id = None
                framework.disconnected_at = time.monotonic()
                for offer_id in [o.id for o in self.offers.values() if o.framework_id == framework.id]:
                    del self.offers[offer_id]

    def _add_framework(self, framework_id: str | None, info: Json, call: Json, stream: _EventStream,
                       stream_id: str) -> _Framework:
        if not framework_id:
            framework_id = f"{self.id}-{next(self._framework_seq):04d}"
        info["id"] = {"value": framework_id}
        framework = self.frameworks.get(framework_id)
        if framework is None:
            framework = self.frameworks[framework_id] = _Framework(framework_id, info)
        else:
            framework.info = info
            if framework.stream is not None:      # one subscription per framework: the old stream ends
                framework.stream.send({"type": "ERROR", "error": {"message": "Framework failed over"}})
                framework.stream.close()
        framework.stream, framework.stream_id, framework.disconnected_at = stream, stream_id, None
        framework.suppressed = bool((call.get("subscribe") or {}).get("suppressed_roles"))
        self._cluster._log("master", f"SUBSCRIBE {info.get('name')!r} -> SUBSCRIBED {framework_id}")
        stream.send({"type": "SUBSCRIBED", "subscribed": {
            "framework_id": {"value": framework_id},
            "heartbeat_interval_seconds": self._cluster.heartbeat,
            "master_info": {"id": self.id, "ip": LOCALHOST_IP_INT, "port": self._server.port,
                            "hostname": "127.0.0.1", "version": VERSION,
                            "address": {"hostname": "127.0.0.1", "ip": "127.0.0.1", "port": self._server.port}}}})
        for agent in self._cluster.agents:
            if agent.active:
                agent.resend_updates(framework_id)
        self._next_allocation = 0.0
        return framework

    # -- calls (each returns None, or a validation problem for a 400) -----------------------------
    def _ignore(self, framework: _Framework, call: Json) -> str | None:
        return None

    def _teardown(self, framework: _Framework, call: Json) -> str | None:
        self._remove_framework(framework)
        return None

    def _accept(self, framework: _Framework, call: Json) -> str | None:
        accept = call.get("accept") or {}
        offer_ids = [o.get("value") for o in accept.get("offer_ids") or []]
        launches = _launches(accept.get("operations") or [])
        offers = [self.offers.get(oid or "") for oid in offer_ids]
        problem = None
        if not offer_ids:
            problem = "No offers specified"
        elif any(o is None or o.framework_id != framework.id for o in offers):
            bad = [oid for oid, o in zip(offer_ids, offers) if o is None or o.framework_id != framework.id]
            problem = f"Offer {bad[0]} is no longer valid"
        elif len({o.agent.agent_id for o in offers if o is not None}) > 1:
            problem = "Aggregated offers must belong to one single agent"
        valid = [o for o in offers if o is not None and o.framework_id == framework.id]
        for offer in valid:
            self.offers.pop(offer.id, None)
        if problem:
            for _, _, tasks in launches:
                for task in tasks:
                    self._master_update(framework, task, "TASK_LOST", "REASON_INVALID_OFFERS", problem)
            return None
        agent = valid[0].agent
        available: Scalars = {}
        for offer in valid:
            available = _add(available, offer.resources)
        seen: set[str] = set()
        for group, executor_info, tasks in launches:
            problem = self._check_launch(framework, agent, group, executor_info, tasks, seen)
            new_executor = (executor_info is not None and problem is None
                            and agent.live_run(framework.id, executor_info["executor_id"]["value"]) is None)
            executor_resources = _scalars(executor_info.get("resources")) if new_executor and executor_info else {}
            need = executor_resources
            for task in tasks:
                need = _add(need, _scalars(task.get("resources")))
            if problem is None and not _fits(need, available):
                problem = (f"Task uses more resources {_describe(need)} than available {_describe(available)}")
            if problem:
                reason = "REASON_TASK_GROUP_INVALID" if group else "REASON_TASK_INVALID"
                for task in tasks:
                    self._master_update(framework, task, "TASK_ERROR", reason, problem)
                continue
            available = _sub(available, need)
            agent.used = _add(agent.used, need)
            records = []
            for info in tasks:
                info.setdefault("agent_id", {"value": agent.agent_id})
                record = _Task(info=info, framework_id=framework.id, agent=agent,
                               resources=_scalars(info.get("resources")))
                framework.tasks[record.task_id] = record
                records.append(record)
            self._cluster._log("master", f"launching {[r.task_id for r in records]} on {agent.agent_id}")
            agent.launch(framework, executor_info, records, group, executor_resources)
        self._add_filter(framework, agent, _positive(available), accept.get("filters"))
        return None

    def _check_launch(self, framework: _Framework, agent: Agent, group: bool, executor_info: Json | None,
                      tasks: list[Json], seen: set[str]) -> str | None:
        for task in tasks:
            task_id = _value(task, "task_id")
            if task_id is None:
                return "Task has no 'task_id'"
            known = framework.tasks.get(task_id)
            if task_id in seen or (known is not None and known.state not in TERMINAL_STATES):
                return f"Task has duplicate ID: {task_id}"
            seen.add(task_id)
            agent_id = _value(task, "agent_id")
            if agent_id is not None and agent_id != agent.agent_id:
                return f"Task uses invalid agent: {agent_id}"
            if group and "executor" in task:
                return "The tasks of a task group must not have an 'executor'"
            if not group and ("executor" in task) == ("command" in task):
                return "Task should have at least one (but not both) of CommandInfo or ExecutorInfo present"
        if executor_info is None:
            return "LAUNCH_GROUP needs an 'executor'" if group else None
        executor_id = _value(executor_info, "executor_id")
        if executor_id is None:
            return "ExecutorInfo has no 'executor_id'"
        if _value(executor_info, "framework_id") not in (None, framework.id):
            return "ExecutorInfo has an invalid FrameworkID"
        if not isinstance(executor_info.get("command"), dict):
            return "The Mesos double runs only executors with a 'command' (no DEFAULT executor)"
        run = agent.live_run(framework.id, executor_id)
        if run is not None and not _same_executor(run.info, executor_info):
            return ("Task has invalid ExecutorInfo (existing ExecutorInfo with same ExecutorID "
                    "is not compatible)")
        return None

    def _add_filter(self, framework: _Framework, agent: Agent, refused: Scalars, filters: Json | None) -> None:
        refuse = DEFAULT_REFUSE_SECONDS
        if isinstance(filters, dict) and "refuse_seconds" in filters:
            refuse = float(filters["refuse_seconds"])
        refuse = min(refuse, MAX_REFUSE_SECONDS)
        if refused and refuse > 0:
            framework.filters.setdefault(agent.agent_id, []).append((refused, time.monotonic() + refuse))

    def _decline(self, framework: _Framework, call: Json) -> str | None:
        decline = call.get("decline") or {}
        for offer_id in decline.get("offer_ids") or []:
            offer = self.offers.get(offer_id.get("value") or "")
            if offer is not None and offer.framework_id == framework.id:
                del self.offers[offer.id]
                self._add_filter(framework, offer.agent, offer.resources, decline.get("filters"))
        return None

    def _revive(self, framework: _Framework, call: Json) -> str | None:
        framework.suppressed = False
        framework.filters.clear()
        self._next_allocation = 0.0
        return None

    def _suppress(self, framework: _Framework, call: Json) -> str | None:
        framework.suppressed = True
        return None

    def _kill(self, framework: _Framework, call: Json) -> str | None:
        kill = call.get("kill") or {}
        task_id = _value(kill, "task_id")
        if task_id is None:
            return "Expecting 'kill.task_id' to be present"
        task = framework.tasks.get(task_id)
        if task is None or task.state in TERMINAL_STATES or not task.agent.active:
            status: Json = {"task_id": {"value": task_id}, "state": "TASK_LOST", "source": "SOURCE_MASTER",
                            "reason": "REASON_RECONCILIATION", "message": "Attempted to kill an unknown task",
                            "timestamp": time.time()}
            if "agent_id" in kill:
                status["agent_id"] = kill["agent_id"]
            framework.send({"type": "UPDATE", "update": {"status": status}})
            return None
        task.agent.kill_task(task, kill.get("kill_policy"))
        return None

    def _shutdown(self, framework: _Framework, call: Json) -> str | None:
        shutdown = call.get("shutdown") or {}
        executor_id, agent_id = _value(shutdown, "executor_id"), _value(shutdown, "agent_id")
        if executor_id is None or agent_id is None:
            return "Expecting 'shutdown.executor_id' and 'shutdown.agent_id' to be present"
        agent = self._agent(agent_id)
        if agent is not None:
            agent.shutdown_executor(framework.id, executor_id)
        return None

    def _acknowledge(self, framework: _Framework, call: Json) -> str | None:
        ack = call.get("acknowledge") or {}
        agent_id, task_id, uuid_b64 = _value(ack, "agent_id"), _value(ack, "task_id"), ack.get("uuid")
        if agent_id is None or task_id is None or not isinstance(uuid_b64, str):
            return "Expecting 'acknowledge.agent_id', 'acknowledge.task_id' and 'acknowledge.uuid' to be present"
        try:
            if len(base64.b64decode(uuid_b64, validate=True)) != 16:
                return "Not a valid UUID"
        except ValueError:
            return "Not a valid UUID"
        agent = self._agent(agent_id)
        if agent is not None and agent.active:
            agent.acknowledge(framework.id, task_id, uuid_b64)
        return None

    def _reconcile(self, framework: _Framework, call: Json) -> str | None:
        wanted = (call.get("reconcile") or {}).get("tasks") or []
        if wanted:
            for entry in wanted:
                task_id = _value(entry, "task_id")
                if task_id is None:
                    return "Expecting 'reconcile.tasks.task_id' to be present"
                task = framework.tasks.get(task_id)
                if task is None:
                    status: Json = {"task_id": {"value": task_id}, "state": "TASK_LOST",
                                    "message": "Reconciliation: Task is unknown"}
                    if "agent_id" in entry:
                        status["agent_id"] = entry["agent_id"]
                    self._send_status(framework, status, "REASON_RECONCILIATION")
                else:
                    self._send_status(framework, self._task_status(task, "Reconciliation: Latest task state"),
                                      "REASON_RECONCILIATION")
        else:
            for task in framework.tasks.values():
                if task.state not in TERMINAL_STATES:
                    self._send_status(framework, self._task_status(task, "Reconciliation: Latest task state"),
                                      "REASON_RECONCILIATION")
        return None

    def _message(self, framework: _Framework, call: Json) -> str | None:
        message = call.get("message") or {}
        agent_id, executor_id, data = _value(message, "agent_id"), _value(message, "executor_id"), message.get("data")
        if agent_id is None or executor_id is None or not isinstance(data, str):
            return "Expecting 'message.agent_id', 'message.executor_id' and 'message.data' to be present"
        agent = self._agent(agent_id)
        if agent is not None and agent.active:
            agent.framework_message(framework.id, executor_id, data)
        return None

    # -- from the agents ----------------------------------------------------------------------------
    def forward_update(self, framework_id: str, status: Json) -> None:
        framework = self.frameworks.get(framework_id)
        if framework is None:
            return
        task = framework.tasks.get(status["task_id"]["value"])
        if task is not None:
            task.state = status["state"]
        self._cluster._log("master", f"-> UPDATE {status['task_id']['value']} {status['state']} "
                                     f"uuid={status.get('uuid')}")
        framework.send({"type": "UPDATE", "update": {"status": dict(status)}})

    def executor_exited(self, agent: Agent, run: _ExecutorRun, status: int) -> None:
        framework = self.frameworks.get(run.framework_id)
        if framework is not None:
            self._cluster._log("master", f"-> FAILURE executor {run.executor_id} status={status}")
            framework.send({"type": "FAILURE", "failure": {
                "agent_id": {"value": agent.agent_id}, "executor_id": {"value": run.executor_id},
                "status": status}})

    def executor_message(self, agent: Agent, run: _ExecutorRun, data: str) -> None:
        framework = self.frameworks.get(run.framework_id)
        if framework is not None:
            framework.send({"type": "MESSAGE", "message": {
                "agent_id": {"value": agent.agent_id}, "executor_id": {"value": run.executor_id}, "data": data}})

    def agent_removed(self, agent: Agent) -> None:
        for offer in [o for o in self.offers.values() if o.agent is agent]:
            del self.offers[offer.id]
            framework = self.frameworks.get(offer.framework_id)
            if framework is not None:
                framework.send({"type": "RESCIND", "rescind": {"offer_id": {"value": offer.id}}})
        for framework in self.frameworks.values():
            for task in framework.tasks.values():
                if task.agent is agent and task.state not in TERMINAL_STATES:
                    task.state = task.agent_state = "TASK_LOST"
                    task.charged = False
                    self._master_update(framework, task.info, "TASK_LOST", "REASON_AGENT_REMOVED",
                                        f"Agent {agent.hostname} removed")
            framework.filters.pop(agent.agent_id, None)
            self._cluster._log("master", f"-> FAILURE agent {agent.agent_id} (to {framework.id})")
            framework.send({"type": "FAILURE", "failure": {"agent_id": {"value": agent.agent_id}}})

    # -- housekeeping (the cluster's tick thread) ---------------------------------------------------
    def tick(self, now: float) -> None:
        for framework in list(self.frameworks.values()):
            timeout = float(framework.info.get("failover_timeout") or 0.0)
            if framework.disconnected_at is not None and now - framework.disconnected_at >= timeout:
                self._cluster._log("master", f"failover timeout of {framework.id}: removing it")
                self._remove_framework(framework)
        if now >= self._next_allocation:
            self._next_allocation = now + self._cluster.offer_interval
            self._allocate(now)

    def _allocate(self, now: float) -> None:
        candidates = [f for f in self.frameworks.values() if f.stream is not None and not f.suppressed]
        if not candidates:
            return
        batches: dict[str, list[Json]] = {}
        for agent in self._cluster.agents:
            if not agent.active:
                continue
            free = _positive(_sub(_sub(agent.resources, agent.used), self._offered(agent)))
            if not any(_fits(minimum, free) for minimum in MIN_ALLOCATABLE):
                continue
            for i in range(len(candidates)):
                framework = candidates[(self._turn + i) % len(candidates)]
                if not self._filtered(framework, agent, free, now):
                    batches.setdefault(framework.id, []).append(self._make_offer(framework, agent, free))
                    break
            self._turn += 1
        for framework_id, offers in batches.items():
            self._cluster._log("master", f"-> OFFERS {[o['id']['value'] for o in offers]} to {framework_id}")
            self.frameworks[framework_id].send({"type": "OFFERS", "offers": {"offers": offers}})

    def _offered(self, agent: Agent) -> Scalars:
        total: Scalars = {}
        for offer in self.offers.values():
            if offer.agent is agent:
                total = _add(total, offer.resources)
        return total

    def _filtered(self, framework: _Framework, agent: Agent, free: Scalars, now: float) -> bool:
        filters = [(refused, until) for refused, until in framework.filters.get(agent.agent_id, []) if until > now]
        framework.filters[agent.agent_id] = filters
        return any(_fits(free, refused) for refused, _ in filters)

    def _make_offer(self, framework: _Framework, agent: Agent, free: Scalars) -> Json:
        offer_id = f"{self.id}-O{next(self._offer_seq)}"
        self.offers[offer_id] = _Offer(offer_id, framework.id, agent, free)
        allocation_role = framework.role if framework.multi_role else None
        offer: Json = {
            "id": {"value": offer_id}, "framework_id": {"value": framework.id},
            "agent_id": {"value": agent.agent_id}, "hostname": agent.hostname,
            "url": {"scheme": "http", "address": {"hostname": agent.hostname, "ip": agent.ip, "port": agent.port},
                    "path": "/slave(1)"},
            "resources": _resources(free, "*", allocation_role),
            "attributes": agent.info()["attributes"],
            "executor_ids": agent.executor_ids(framework.id),
        }
        if allocation_role is not None:
            offer["allocation_info"] = {"role": allocation_role}
        return offer

    # -- helpers ----------------------------------------------------------------------------------
    def _agent(self, agent_id: str) -> Agent | None:
        return next((a for a in self._cluster.agents if a.agent_id == agent_id), None)

    def _remove_framework(self, framework: _Framework) -> None:
        self._cluster._log("master", f"removing framework {framework.id}")
        for offer_id in [o.id for o in self.offers.values() if o.framework_id == framework.id]:
            del self.offers[offer_id]
        for agent in self._cluster.agents:
            agent.remove_framework(framework.id)
        for task in framework.tasks.values():
            if task.state not in TERMINAL_STATES:
                task.state = task.agent_state = "TASK_KILLED"
            if task.charged:
                task.charged = False
                task.agent.used = _sub(task.agent.used, task.resources)
        if framework.stream is not None:
            framework.stream.close()
        framework.stream = framework.stream_id = None
        framework.disconnected_at = None
        self.frameworks.pop(framework.id, None)
        self.removed.add(framework.id)

    def _task_status(self, task: _Task, message: str) -> Json:
        status: Json = {"task_id": {"value": task.task_id}, "state": task.state, "message": message,
                        "agent_id": {"value": task.agent.agent_id}}
        if task.executor_id and task.executor_id != task.task_id:
            status["executor_id"] = {"value": task.executor_id}
        return status

    def _master_update(self, framework: _Framework, task_info: Json, state: str, reason: str, message: str) -> None:
        status: Json = {"task_id": task_info.get("task_id") or {"value": ""}, "state": state, "message": message}
        if "agent_id" in task_info:
            status["agent_id"] = task_info["agent_id"]
        self._cluster._log("master", f"-> UPDATE {status['task_id'].get('value')} {state} ({message})")
        self._send_status(framework, status, reason)

    def _send_status(self, framework: _Framework, status: Json, reason: str) -> None:
        """An update made by the master: SOURCE_MASTER and no uuid (it must not be acknowledged)."""
        status.update(source="SOURCE_MASTER", reason=reason, timestamp=time.time())
        framework.send({"type": "UPDATE", "update": {"status": status}})

    def close_streams(self) -> None:
        for framework in self.frameworks.values():
            if framework.stream is not None:
                framework.stream.close()
                framework.stream = None

    def state(self) -> Json:
        return {"id": self.id, "version": VERSION, "address": self.address,
                "frameworks": [{"id": f.id, "name": f.info.get("name"), "connected": f.stream is not None,
                                "suppressed": f.suppressed,
                                "offers": [o.id for o in self.offers.values() if o.framework_id == f.id],
                                "tasks": [{"id": t.task_id, "state": t.state, "agent_id": t.agent.agent_id,
                                           "executor_id": t.executor_id, "resources": t.resources}
                                          for t in f.tasks.values()]}
                               for f in self.frameworks.values()],
                "removed_frameworks": sorted(self.removed)}


def _launches(operations: list[Json]) -> list[tuple[bool, Json | None, list[Json]]]:
    """``(is_group, executor_info, task_infos)`` of each launch in ACCEPT's operations."""
    found: list[tuple[bool, Json | None, list[Json]]] = []
    for operation in operations:
        kind = operation.get("type")
        if kind == "LAUNCH":
            for task in (operation.get("launch") or {}).get("task_infos") or []:
                found.append((False, task.get("executor"), [task]))
        elif kind == "LAUNCH_GROUP":
            launch = operation.get("launch_group") or {}
            found.append((True, launch.get("executor"), list((launch.get("task_group") or {}).get("tasks") or [])))
        else:
            log.warning("the Mesos double ignores %s operations", kind)
    return found


def _same_executor(running: Json, wanted: Json) -> bool:
    """Whether two ExecutorInfos are the same executor (the master compares them, framework id aside)."""
    def strip(info: Json) -> Json:
        return {k: v for k, v in info.items() if k != "framework_id"}
    return strip(running) == strip(wanted)


def _summary(call: Json) -> str:
    kind = call["type"]
    if kind == "ACCEPT":
        accept = call.get("accept") or {}
        return (f"offers={[o.get('value') for o in accept.get('offer_ids') or []]} "
                f"ops={[op.get('type') for op in accept.get('operations') or []]}")
    if kind == "ACKNOWLEDGE":
        ack = call.get("acknowledge") or {}
        return f"{_value(ack, 'task_id')} uuid={ack.get('uuid')}"
    if kind == "KILL":
        return str(_value(call.get("kill") or {}, "task_id"))
    return ""


# --------------------------------------------------------------------------- the cluster
class MesosCluster:
    """A master and ``agents`` agents on 127.0.0.1 ephemeral ports; files under ``workdir``.

    ``agents`` is a count, or one dict per agent: ``{"cpus": 2.0, "mem":
    2048.0, "disk": 10240.0, "hostname": "127.0.0.1", "ip": "127.0.0.1"}`` are
    the defaults; any other numeric key is one more scalar resource,
    ``"attributes"`` a dict of text attributes. ``hostname`` and ``ip`` are
    only labels (offers' ``hostname`` and ``url.address``, agent info): every
    endpoint is on 127.0.0.1.

    ``heartbeat``: seconds between HEARTBEAT events; ``offer_interval``:
    seconds between allocation rounds; ``shutdown_grace``: an executor's grace
    period between SHUTDOWN and SIGKILL unless its ExecutorInfo has
    ``shutdown_grace_period`` (also given to it as
    ``MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD``); ``registration_timeout``: how
    long a spawned custom executor may take to subscribe; ``update_retry``:
    the first resend interval of an unacknowledged status update.
    """

    def __init__(self, workdir: str | Path, agents: int | list[dict[str, Any]] = 1, heartbeat: float = 1.0,
                 offer_interval: float = 0.1, *, shutdown_grace: float = 5.0, registration_timeout: float = 60.0,
                 update_retry: float = 10.0) -> None:
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.heartbeat = float(heartbeat)
        self.offer_interval = float(offer_interval)
        self.shutdown_grace = float(shutdown_grace)
        self.registration_timeout = float(registration_timeout)
        self.update_retry = float(update_retry)
        self.lock = threading.RLock()
        self.stopped = False
        self.master_id = str(uuid.uuid4())
        self._log_file = open(self.workdir / "mesos-double.log", "a", buffering=1)
        self._log_lock = threading.Lock()
        self._t0 = time.monotonic()
        self._tick_stop = threading.Event()
        self._tick_thread: threading.Thread | None = None
        self.agents: list[Agent] = []
        try:
            self._master = _Master(self)
            self.master: str = self._master.address
            specs = [{} for _ in range(agents)] if isinstance(agents, int) else list(agents)
            for index, spec in enumerate(specs):
                self.agents.append(Agent(self, index, dict(spec)))
            self._tick_thread = threading.Thread(target=self._tick_loop, name="mesos-double-tick", daemon=True)
            self._tick_thread.start()
        except BaseException:
            self.stop()
            raise
        self._log("cluster", f"master {self.master}, agents {[a.endpoint for a in self.agents]}")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<MesosCluster master={self.master} agents={len(self.agents)}{' stopped' if self.stopped else ''}>"

    def state(self) -> Json:
        """What ``GET /state`` on the master answers: frameworks, tasks, offers, agents, executors."""
        with self.lock:
            state = self._master.state()
            state["agents"] = [agent.state() for agent in self.agents]
            return state

    def disconnect_framework(self, framework_id: str) -> None:
        """End a framework's subscription stream, as a dropped connection would (a fault to inject).

        The framework stays (until its ``failover_timeout``); a pymesos driver
        re-subscribes at once with its framework id and gets ``reregistered``
        and the unacknowledged updates again.
        """
        with self.lock:
            framework = self._master.frameworks[framework_id]
            if framework.stream is not None:
                framework.stream.close()

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> bool:
        """Poll ``predicate`` until it is true (True) or ``timeout`` seconds passed (False)."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)

    def stop(self) -> None:
        """Kill every executor process group, close all sockets and streams, join the threads. Idempotent.

        Files under ``workdir`` stay for post-mortems.
        """
        with self.lock:
            if self.stopped:
                return
            self.stopped = True
        self._tick_stop.set()
        if self._tick_thread is not None:
            self._tick_thread.join(5.0)
        with self.lock:
            for agent in self.agents:
                agent._abandon_runs()
            if hasattr(self, "_master"):
                self._master.close_streams()
        if hasattr(self, "_master"):
            self._master._server.close()
        for agent in self.agents:
            agent._server.close()
        deadline = time.monotonic() + 10.0
        stuck = [run for agent in self.agents for run in agent._join(deadline)]
        if stuck:
            log.warning("mesos double: threads of %s did not end", [run.executor_id for run in stuck])
        self._log("cluster", "stopped")
        with self._log_lock:
            self._log_file.close()

    # -- internals --------------------------------------------------------------------------------
    def _tick_loop(self) -> None:
        step = max(0.005, min(0.05, self.offer_interval / 2))
        while not self._tick_stop.wait(step):
            with self.lock:
                if self.stopped:
                    return
                now = time.monotonic()
                try:
                    self._master.tick(now)
                    for agent in self.agents:
                        if agent.active:
                            agent.tick(now)
                except Exception:
                    log.exception("mesos double: housekeeping failed")

    def _log(self, who: str, line: str) -> None:
        """One line of the cluster's event log (``workdir/mesos-double.log``), also at DEBUG level."""
        text = f"{time.monotonic() - self._t0:8.3f} [{who}] {line}"
        log.debug("%s", text)
        with self._log_lock:
            if not self._log_file.closed:
                self._log_file.write(text + "\n")
