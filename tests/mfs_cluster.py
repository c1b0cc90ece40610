"""A throwaway MooseFS 3.0.x cluster for tests: one master, N chunkservers, FUSE mounts.

MooseFS 3.0.117 refuses 127.0.0.0/8 between chunkserver and master, so the
cluster lives in a network namespace of its own (one per MfsCluster, named after
the pid, so two test runs never collide) whose ``lo`` carries NET.0/24: the
master listens on NET.1:9419-9421, chunkserver i on NET.(10+i):9422.  Every
address of that /24 is local inside the namespace and nothing leaves it.  In
the root namespace NET.0/24 is made unreachable, so a client started outside by
mistake fails at once ("No route to host") instead of sending traffic anywhere.

Everything that talks to the cluster must run inside the namespace:

* programs: :meth:`MfsCluster.run_in_ns` (``nsenter --net=...``; not ``ip netns
  exec``, which also makes a private mount namespace and would hide FUSE mounts);
* Python code of this process: ``with cluster.inside():`` moves the *current
  thread* into the namespace with setns(2) and back.  Threads and subprocesses
  started while inside inherit the namespace (and keep it after the block ends);
  sockets opened inside stay in the namespace for their whole life.

Daemons run in the foreground (``-f``) as children of this process, with their
logs under BASE/logs, and get SIGKILL if the thread that started them dies
(PR_SET_PDEATHSIG), so a killed test run does not leave them behind.  The
master runs under a small reaper (it never waits for its metadata-writer child,
which would otherwise end up a zombie of init).
:meth:`MfsCluster.stop` (also run by the context manager, and by ``start`` when
it fails) unmounts the mounts, stops the daemons it started (by pid), deletes
the namespace and the base directory.

Needs root, and the Debian packages moosefs-master, moosefs-chunkserver,
moosefs-client, moosefs-cli (plus fuse3, util-linux nsenter, iproute2); it
installs nothing.
"""
from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Self

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
MASTER_PORT = 9421
CHUNKSERVER_PORT = 9422
NETNS_PREFIX = "gopark-mfs-"
REQUIRED_PROGRAMS = ("mfsmaster", "mfschunkserver", "mfsmount", "mfscli", "mfsfileinfo",
                     "mfssetgoal", "nsenter", "ip", "fusermount3", "umount")
APT_PACKAGES = "moosefs-master moosefs-chunkserver moosefs-client moosefs-cli fuse3"
EMPTY_METADATA = "/var/lib/mfs/metadata.mfs.empty"

_libc = ctypes.CDLL(None, use_errno=True)
_counter = itertools.count(1)

# Runs a daemon as its child and reaps every process orphaned below it: the master
# never waits for its metadata writer, which would otherwise become a zombie of
# init.  Forwards SIGTERM/SIGINT/SIGHUP to the daemon; exits with its exit code
# once every descendant is gone; the daemon gets SIGKILL if the wrapper dies.
_REAPER = r"""
import ctypes, os, signal, sys
libc = ctypes.CDLL(None)
libc.prctl(36, 1, 0, 0, 0)                      # PR_SET_CHILD_SUBREAPER
pid = os.fork()
if pid == 0:
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)      # PR_SET_PDEATHSIG
    os.execvp(sys.argv[1], sys.argv[1:])
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, lambda n, _: os.kill(pid, n))
code = 1
while True:
    try:
        child, status = os.wait()
    except ChildProcessError:
        break
    if child == pid:
        code = os.waitstatus_to_exitcode(status)
sys.exit(code)
"""


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns(CLONE_NEWNET): {os.strerror(err)}")


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the thread that started it dies."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _ip(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *argv], capture_output=True, text=True, check=False)


def _mount_points() -> list[str]:
    """The mount points of /proc/mounts, their octal escapes (a space, a tab, a backslash...) decoded."""
    with open("/proc/mounts", encoding="utf-8", errors="surrogateescape") as f:
        return [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[1])
                for line in f if len(line.split()) > 1]


def _mounted(path: Path) -> bool:
    return os.path.realpath(path) in _mount_points()


def _mounts_under(base: Path) -> list[str]:
    root = os.path.realpath(base) + "/"
    return [p for p in _mount_points() if (p + "/").startswith(root)]


def _children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (e.g. the master's metadata writer)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


class MfsCluster:
    """A MooseFS cluster under ``base_dir`` in a private network namespace.

    >>> with MfsCluster(tmp_path / "mfs", ncs=3) as cluster:      # doctest: +SKIP
    ...     mnt = cluster.mount(tmp_path / "mnt")
    ...     (mnt / "a.txt").write_text("hello\\n")
    ...     with cluster.inside():
    ...         splits = plan_splits(f"mfs://{cluster.master_ip}/a.txt")
    """

    def __init__(self, base_dir: str | os.PathLike[str], ncs: int = 3, *, netns: str | None = None,
                 net: str = "10.77.0", hdd_leave: str = "256MiB", ready_timeout: float = 60.0) -> None:
        self.base = Path(base_dir).absolute()
        self.ncs = ncs
        self.netns = netns or f"{NETNS_PREFIX}{os.getpid()}-{next(_counter)}"
        self.net = net
        self.hdd_leave = hdd_leave
        self.ready_timeout = ready_timeout
        self.master_ip = f"{net}.1"
        self.master_port = MASTER_PORT
        self.chunkserver_ips = [f"{net}.{10 + i}" for i in range(1, ncs + 1)]
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._mounts: dict[Path, subprocess.Popen[bytes]] = {}
        self._made_mountpoints: set[Path] = set()
        self._ns_created = False
        self._route_added = False
        self._base_created = False

    # -- names --------------------------------------------------------------------
    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"

    @property
    def master_url(self) -> str:
        """``mfs://MASTER:PORT`` (append an absolute path)."""
        return f"mfs://{self.master_ip}:{self.master_port}"

    def chunkserver_index(self, ip: str) -> int:
        """1-based index of the chunkserver listening on ``ip``."""
        return self.chunkserver_ips.index(ip.split(":")[0]) + 1

    def log(self, name: str) -> str:
        """The log of a daemon: "master", "cs1", ..."""
        path = self.base / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- life cycle ---------------------------------------------------------------
    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Self:
        """Create the namespace, configs and metadata; start the daemons; wait until
        every chunkserver can take a chunk.  Cleans up and re-raises on failure."""
        if os.geteuid() != 0:
            raise PermissionError("MfsCluster needs root (network namespaces, FUSE mounts)")
        missing = [p for p in REQUIRED_PROGRAMS if shutil.which(p) is None]
        if missing or not os.path.exists(EMPTY_METADATA):
            raise RuntimeError(f"MooseFS test cluster: missing {', '.join(missing) or EMPTY_METADATA}; "
                               f"install with: apt-get install -y {APT_PACKAGES}")
        try:
            self._make_netns()
            self._write_configs()
            self._start_master()
            for i in range(1, self.ncs + 1):
                self.start_chunkserver(i, wait=False)
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Unmount, stop every daemon started here, delete the namespace and base dir.

        Safe to call twice and after a partial start.  Raises RuntimeError at the
        end if something could not be cleaned up (after trying everything).
        """
        problems: list[str] = []
        for mountpoint in list(self._mounts):
            try:
                self.umount(mountpoint)
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                problems.append(f"umount {mountpoint}: {e}")
        for name in [n for n in self._procs if n != "master"]:
            self._kill(name)
        if "master" in self._procs:
            # SIGTERM: the master stops (and reaps) its metadata writer; after a SIGKILL
            # that child would be orphaned to init, which may never reap it
            self._kill("master", signal.SIGTERM, wait=30)
        if self._ns_created:
            result = _ip("netns", "delete", self.netns)
            if result.returncode != 0 and os.path.exists(self.netns_path):
                problems.append(f"ip netns delete {self.netns}: {result.stderr.strip()}")
            self._ns_created = False
        if self._route_added:
            others = [n for n in _ip("netns", "list").stdout.split() if n.startswith(NETNS_PREFIX)]
            if not others:                   # no other test cluster relies on the safety route
                _ip("route", "del", "unreachable", f"{self.net}.0/24")
            self._route_added = False
        if self._base_created and self.base.exists():
            left = _mounts_under(self.base)
            if left:
                problems.append(f"still mounted, not deleting {self.base}: {left}")
            else:
                shutil.rmtree(self.base, ignore_errors=True)
                self._base_created = False
        if problems:
            raise RuntimeError("MooseFS test cluster cleanup: " + "; ".join(problems))

    # -- namespace ------------------------------------------------------------------
    def _make_netns(self) -> None:
        if os.path.exists(self.netns_path):
            raise RuntimeError(f"network namespace {self.netns} already exists")
        route = f"{self.net}.0/24"
        if "unreachable" not in _ip("route", "show", route).stdout:
            self._check(["ip", "route", "replace", "unreachable", route])
            self._route_added = True
        self._check(["ip", "netns", "add", self.netns])
        self._ns_created = True
        self._check(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        # a /24 on lo: the whole /24 is local inside the namespace
        self._check(["ip", "-n", self.netns, "addr", "add", f"{self.master_ip}/24", "dev", "lo"])

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        """Run the current thread inside the cluster's network namespace.

        Threads and subprocesses started within the block are born inside it
        (and stay there); sockets opened within it stay in it.
        """
        original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(self.netns_path, os.O_RDONLY)
            try:
                _setns(target)
            finally:
                os.close(target)
            try:
                yield
            finally:
                _setns(original)
        finally:
            os.close(original)

    def nsenter_argv(self, argv: Sequence[str]) -> list[str]:
        return ["nsenter", f"--net={self.netns_path}", *argv]

    def run_in_ns(self, argv: Sequence[str], *, check: bool = True,
                  timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a program (mfsfileinfo, mfssetgoal, mfscli...) inside the namespace."""
        result = subprocess.run(self.nsenter_argv(argv), capture_output=True, text=True,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): "
                               f"{(result.stderr or result.stdout).strip()}")
        return result

    @staticmethod
    def _check(argv: Sequence[str]) -> None:
        result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")

    # -- configs --------------------------------------------------------------------
    def _write_configs(self) -> None:
        if self.base.exists() and any(self.base.iterdir()):
            raise RuntimeError(f"{self.base} is not empty: the cluster owns (and deletes) its base dir")
        self._base_created = True
        for sub in ("master", "logs"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        user = "WORKING_USER = root\nWORKING_GROUP = root\n"
        shutil.copy(EMPTY_METADATA, self.base / "master" / "metadata.mfs")
        (self.base / "mfsexports.cfg").write_text("*  /  rw,alldirs,admin,maproot=0:0\n*  .  rw\n")
        (self.base / "mfstopology.cfg").write_text("")
        (self.base / "mfsmaster.cfg").write_text(
            f"{user}SYSLOG_IDENT = mfsmaster-{self.netns}\nNICE_LEVEL = 0\n"
            f"DATA_PATH = {self.base}/master\n"
            f"EXPORTS_FILENAME = {self.base}/mfsexports.cfg\n"
            f"TOPOLOGY_FILENAME = {self.base}/mfstopology.cfg\n"
            f"MATOML_LISTEN_HOST = {self.master_ip}\nMATOML_LISTEN_PORT = 9419\n"
            f"MATOCS_LISTEN_HOST = {self.master_ip}\nMATOCS_LISTEN_PORT = 9420\n"
            f"MATOCL_LISTEN_HOST = {self.master_ip}\nMATOCL_LISTEN_PORT = {self.master_port}\n"
            "REPLICATIONS_DELAY_INIT = 0\nBACK_LOGS = 5\nSESSION_SUSTAIN_TIME = 60\n")
        for i, ip in enumerate(self.chunkserver_ips, start=1):
            d = self.base / f"cs{i}"
            (d / "data").mkdir(parents=True, exist_ok=True)
            (d / "hdd").mkdir(exist_ok=True)
            (d / "mfshdd.cfg").write_text(f"{d}/hdd\n")
            (d / "mfschunkserver.cfg").write_text(
                f"{user}SYSLOG_IDENT = mfschunkserver-{self.netns}-{i}\nNICE_LEVEL = 0\n"
                f"DATA_PATH = {d}/data\nHDD_CONF_FILENAME = {d}/mfshdd.cfg\n"
                f"HDD_LEAVE_SPACE_DEFAULT = {self.hdd_leave}\n"
                f"MASTER_HOST = {self.master_ip}\nMASTER_PORT = 9420\n"
                f"BIND_HOST = {ip}\nCSSERV_LISTEN_HOST = {ip}\n"
                f"CSSERV_LISTEN_PORT = {CHUNKSERVER_PORT}\nMASTER_RECONNECTION_DELAY = 1\n")

    # -- daemons ----------------------------------------------------------------------
    def _spawn(self, name: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        with open(self.base / "logs" / f"{name}.log", "ab") as logf:
            proc = subprocess.Popen(self.nsenter_argv(argv), stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_die_with_parent)  # noqa: PLW1509 - no threads race here
        return proc

    def _kill(self, name: str, sig: int = signal.SIGKILL, wait: float = 10.0) -> None:
        """Stop one daemon started here by pid (SIGKILL if ``sig`` is not enough)."""
        proc = self._procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                for child in _children_of(proc.pid):       # the master under its reaper
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGKILL)
                proc.kill()
                proc.wait(timeout=10)
        else:
            proc.wait()

    def _start_master(self) -> None:
        self._procs["master"] = self._spawn(
            "master", [sys.executable, "-c", _REAPER, "mfsmaster", "-a", "-f",
                       "-c", str(self.base / "mfsmaster.cfg"), "start"])
        self._wait_port(self.master_ip, self.master_port, "master")

    def _wait_port(self, ip: str, port: int, name: str) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            proc = self._procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}): {self.log(name)[-2000:]}")
            with self.inside():
                try:
                    socket.create_connection((ip, port), timeout=1).close()
                    return
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} does not listen on {ip}:{port}")
            time.sleep(0.05)

    def ready_chunkservers(self) -> list[str]:
        """IPs of the chunkservers registered with the master with room for a chunk."""
        out = self.run_in_ns(["mfscli", "-H", self.master_ip, "-P", str(self.master_port),
                              "-SCS", "-p", "-s", "|"], check=False).stdout
        ready = []
        # fields: "chunk servers"|ip|port|id|labels|version|load|maint|chunks|used|total|...
        for line in out.splitlines():
            f = line.split("|")
            if len(f) > 10 and "chunk servers" in f[0] and re.fullmatch(r"[0-9.]+", f[1]):
                with contextlib.suppress(ValueError):
                    if int(f[10]) - int(f[9]) > 64 << 20:
                        ready.append(f[1])
        return ready

    def wait_ready(self, ips: Sequence[str] | None = None) -> None:
        """Wait until the given chunkservers (default: all running) are registered."""
        want = set(ips) if ips is not None else {
            ip for i, ip in enumerate(self.chunkserver_ips, 1) if f"cs{i}" in self._procs}
        deadline = time.monotonic() + self.ready_timeout
        while not want <= set(self.ready_chunkservers()):
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}): {self.log(name)[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"chunkservers not ready: {sorted(want)}; "
                                   f"ready: {self.ready_chunkservers()}")
            time.sleep(0.2)

    def start_chunkserver(self, i: int, *, wait: bool = True) -> None:
        """Start chunkserver i (1-based) and, with ``wait``, wait until it is registered."""
        name = f"cs{i}"
        if name in self._procs:
            raise RuntimeError(f"{name} is already running")
        self._procs[name] = self._spawn(
            name, ["mfschunkserver", "-f", "-c", str(self.base / name / "mfschunkserver.cfg"), "start"])
        if wait:
            self.wait_ready([self.chunkserver_ips[i - 1]])

    def stop_chunkserver(self, i: int, *, kill: bool = True) -> None:
        """Stop chunkserver i: SIGKILL (a crash) or SIGTERM (a clean stop)."""
        self._kill(f"cs{i}", signal.SIGKILL if kill else signal.SIGTERM)

    def pause_chunkserver(self, i: int) -> None:
        """SIGSTOP chunkserver i: the master still lists it, but it answers nothing."""
        self._procs[f"cs{i}"].send_signal(signal.SIGSTOP)

    def resume_chunkserver(self, i: int) -> None:
        self._procs[f"cs{i}"].send_signal(signal.SIGCONT)

    def restart_master(self, *, wait: bool = True) -> None:
        """Stop the master (SIGTERM: it saves metadata and sessions, ~2.5 s) and start it
        again; with ``wait``, until every running chunkserver is registered again.
        Its clients see their connections closed, as in any master restart."""
        self._kill("master", signal.SIGTERM, wait=60)
        self._start_master()
        if wait:
            self.wait_ready()

    # -- mounts and tools -----------------------------------------------------------------
    def mount(self, mountpoint: str | os.PathLike[str], subfolder: str = "/") -> Path:
        """Mount the cluster (mfsmount in the namespace, FUSE visible to everyone)."""
        mp = Path(mountpoint).absolute()
        if not mp.exists():
            mp.mkdir(parents=True)
            self._made_mountpoints.add(mp)
        name = f"mount-{len(self._mounts) + 1}"
        proc = self._spawn(name, ["mfsmount", "-f", str(mp), "-H", self.master_ip,
                                  "-P", str(self.master_port), "-S", subfolder])
        self._mounts[mp] = proc
        deadline = time.monotonic() + self.ready_timeout
        while not _mounted(mp):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.umount(mp)
                raise RuntimeError(f"mfsmount on {mp} failed ({proc.returncode}): "
                                   f"{self.log(name)[-2000:]}")
            time.sleep(0.05)
        return mp

    def umount(self, mountpoint: str | os.PathLike[str]) -> None:
        """Unmount a mount made by :meth:`mount`, wait for its mfsmount to end, and
        remove the mountpoint if :meth:`mount` created it."""
        mp = Path(mountpoint).absolute()
        proc = self._mounts.pop(mp)
        if _mounted(mp):
            for argv in (["fusermount3", "-u", str(mp)], ["umount", str(mp)], ["umount", "-l", str(mp)]):
                if subprocess.run(argv, capture_output=True, check=False).returncode == 0:
                    break
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if _mounted(mp):
            raise RuntimeError(f"{mp} is still mounted")
        if mp in self._made_mountpoints:
            self._made_mountpoints.discard(mp)
            with contextlib.suppress(OSError):
                mp.rmdir()

    def set_goal(self, path: str | os.PathLike[str], goal: int, *, recursive: bool = False) -> None:
        """mfssetgoal on a mounted path."""
        self.run_in_ns(["mfssetgoal", *(["-r"] if recursive else []), str(goal), str(path)])

    def file_info(self, path: str | os.PathLike[str]) -> list[dict]:
        """mfsfileinfo of a mounted file: [{"index", "chunkid", "version", "copies":
        ["ip:port", ...] (valid copies)}] per chunk."""
        out = self.run_in_ns(["mfsfileinfo", str(path)]).stdout
        chunks: list[dict] = []
        for line in out.splitlines():
            m = re.match(r"\s*chunk (\d+): ([0-9A-F]{16})_([0-9A-F]{8})", line)
            if m:
                chunks.append({"index": int(m[1]), "chunkid": int(m[2], 16),
                               "version": int(m[3], 16), "copies": []})
                continue
            m = re.match(r"\s*copy \d+: ([0-9.]+:\d+) \(status:(\w+)\)", line)
            if m and chunks and m[2] == "VALID":
                chunks[-1]["copies"].append(m[1])
        return chunks
