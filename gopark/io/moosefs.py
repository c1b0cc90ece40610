"""MooseFS 3.0.x reader: split planning and split reading straight from chunkservers.

gopark reads ``mfs://master[:port]/path`` URLs, and paths under a MooseFS FUSE
mount, without going through FUSE: the driver asks the master where each 64 MiB
chunk lives and makes one split per chunk whose preferred hosts are the
chunkservers that hold it (SPEC section 8); a worker then reads the bytes of its
split directly from one of those chunkservers.  Everything here is standard
library only, and a split is plain data (a dict) that travels as msgpack.

Protocol pieces used (MFSCommunication.h of MooseFS 3.0.117).  All integers are
big-endian; every packet is ``cmd:32 length:32 payload[length]``:

* Session.  ``CLTOMA_FUSE_REGISTER`` (400, reply 401) starts with the 64-byte
  ACL blob, then a register code: ``NEWSESSION`` (2) ``version:32 ileng:32 info
  pleng:32 path\\0`` gets ``version:32 sessionid:32 metaid:64 sesflags:8 umask:16
  rootuid rootgid mapalluid mapallgid mingoal:8 maxgoal:8 mintrash:32 maxtrash:32
  disables:32`` (49 bytes; shorter for older masters) or a 1-byte status;
  ``RECONNECT`` (3) ``sessionid:32 version:32 metaid:64`` re-attaches an existing
  session after a lost connection; ``CLOSESESSION`` (6) ends it at exit.  The
  master shapes its replies by the version we claim (3.0.117), e.g. 36-byte
  attribute records.
* Metadata (requests carry ``msgid:32`` first, replies echo it; a 1-byte body is
  a status): ``LOOKUP`` 406, ``GETATTR`` 408, ``READLINK`` 412, ``READDIR`` 428
  (with attributes, all entries in one reply), ``PATHS`` 486 (inode to paths).
  An attribute record is ``flags:8 type:4|mode:12 uid gid atime mtime ctime
  nlink:32 length:64 winattr:8``.
* Chunk locations: ``READ_CHUNK`` 432 ``inode:32 index:32 flags:8`` gets
  ``protocolid:8 file_length:64 chunkid:64 version:32`` and N x ``ip:32 port:16
  csver:32 labelmask:32``, ordered by topology distance (same host first), then
  randomly.  Chunk id 0 is a hole (reads as zeros).  A locked chunk can hold the
  reply for up to 30 s, hence socket timeouts above that.
* Data: ``CLTOCS_READ`` 200 ``protocolid:8=1 chunkid:64 version:32 offset:32
  size:32`` to a chunkserver returns one ``READ_DATA`` 202 ``chunkid:64
  blocknum:16 blockoffset:16 size:32 crc:32 data`` per (part of a) 64 KiB block,
  where crc is zlib's CRC-32 of the data, then ``READ_STATUS`` 201 ``chunkid:64
  status:8``.  Every CRC and status is checked; fewer bytes than asked for is an
  error, never an end of file.
* Liveness: ``NOP`` (cmd 0).  The master drops a client that sent nothing for
  10 s and sends NOPs itself (skipped while waiting for a reply); a daemon
  thread per master connection sends a NOP when the connection was idle for
  ``keepalive`` seconds and drains the master's NOPs.

Failures: a lost master connection (restart, idle drop) is re-established on
the next call, re-attaching the same session when the master still knows it,
else registering a new one; only when that fails for ``reconnect_wait``
seconds is :class:`MasterUnreachable` raised.  A chunkserver that refuses,
times out, answers a bad status, a bad CRC or a short read is skipped for the
next replica, resuming at the first byte not yet delivered; when every replica
fails the locations are asked again once, then :class:`ChunkUnavailable` names
the chunk and the servers tried.

Mounted paths: ``mfsmount`` 3.0.117 lists itself in /proc/mounts as ``mfs#HOST:PORT
MOUNTPOINT fuse ...`` (later versions: fstype ``fuse.mfs``), which gives the
master.  The inode a FUSE ``stat`` reports for a file under the mount is its
MooseFS inode, and ``PATHS`` turns it into the absolute MooseFS path, so mounts
of a subfolder (``mfsmount -S``) need no special case.  The mount's ``.masterinfo``
file is not used: it points at a proxy that the mount process serves on its own
127.0.0.1, reachable only from the mount's network namespace and tied to its
session.  Listing and globbing of mounted paths go through the mount itself.

Network namespaces: every connection is opened by the thread that makes the call
(plan_splits, read_split, MasterClient methods); the keepalive thread only uses
connections that already exist.  A caller that entered a network namespace with
setns(2) therefore gets all of its MooseFS traffic inside that namespace.

Sessions: :func:`get_master` keeps one :class:`MasterClient` per (host, port) and
process, closed at interpreter exit; after ``fork`` the child drops the parent's
connections without touching them and opens its own.

Permissions: the master does not check permissions on READ_CHUNK, and neither
does this reader beyond what LOOKUP/READDIR enforce for the process's uid/gid.
"""
from __future__ import annotations

import atexit
import bz2
import contextlib
import errno
import fnmatch
import itertools
import logging
import math
import os
import posixpath
import re
import select
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Self

from gopark.errors import ConfigError
from gopark.io.text import LocalTree, Node, folder_files, visible

__all__ = [
    "BLOCK_SIZE",
    "CHUNK_SIZE",
    "DEFAULT_PORT",
    "Attr",
    "ChunkLocation",
    "ChunkUnavailable",
    "DirEntry",
    "MasterClient",
    "MasterUnreachable",
    "MfsError",
    "MfsFile",
    "MfsMount",
    "close_masters",
    "file_lengths",
    "find_mount",
    "get_master",
    "is_mfs_path",
    "mfs_mounts",
    "open_file",
    "parse_mfs_url",
    "plan_splits",
    "read_split",
    "read_split_texts",
    "status_text",
    "verify_block",
]

log = logging.getLogger("gopark.moosefs")

# ---- sizes and defaults ------------------------------------------------------------
DEFAULT_PORT = 9421
CHUNK_SIZE = 64 << 20          # MFSCHUNKSIZE
BLOCK_SIZE = 64 << 10          # MFSBLOCKSIZE: unit of the chunkserver's CRCs
READ_BLOCK = 2 << 20           # bytes handed on at once while streaming a split
MASTER_TIMEOUT = 60.0          # per socket operation; a locked chunk holds READ_CHUNK up to 30 s
CHUNKSERVER_TIMEOUT = 60.0     # per socket operation on a chunkserver connection: the last replica left
REPLICA_TIMEOUT = 10.0         # ... while another replica is left to try (a hung server accepts, never answers)
AVOID_FOR = 120.0              # a chunkserver that failed a read is tried last for this long, in this process
CONNECT_TIMEOUT = 10.0         # TCP connect, master and chunkservers
KEEPALIVE = 3.0                # idle seconds before a NOP; the master drops clients after 10 s
RECONNECT_WAIT = 30.0          # how long a lost master connection is retried
REPLICA_WAIT = 20.0            # how long to wait for a chunk that has no live copy listed
_MAX_PACKET = 1 << 30          # larger lengths mean a broken stream, not a real reply

# ---- protocol constants ------------------------------------------------------------
_NOP = 0
_UNKNOWN_COMMAND, _BAD_COMMAND_SIZE = 1, 2
_CLTOCS_READ, _CSTOCL_READ_STATUS, _CSTOCL_READ_DATA = 200, 201, 202
_REGISTER = 400
_LOOKUP, _GETATTR, _READLINK, _READDIR, _READ_CHUNK, _PATHS = 406, 408, 412, 428, 432, 486
_REGISTER_BLOB = b"DjI1GAQDULI5d2YjA26ypc3ovkhjvhciTQVx3CS4nYgtBoUcsljiVpsErJENHaw0"
_NEWSESSION, _RECONNECT, _CLOSESESSION = 2, 3, 6
_ROOT_INODE = 1
_GETDIR_WITHATTR = 0x01
_TYPE_FILE, _TYPE_DIR, _TYPE_SYMLINK = 1, 2, 3
_MAX_SYMLINKS = 40


def _version(major: int, mid: int, minor: int) -> int:
    """MooseFS encodes 3.0.117 as maj:16 mid:8 (minor*2):8 (minor as is before 2.x)."""
    return (major << 16) | (mid << 8) | (minor * 2 if major > 1 else minor)


_CLIENT_VERSION = _version(3, 0, 117)

_STATUS_OK = 0
_ST_EPERM, _ST_ENOTDIR, _ST_ENOENT, _ST_EACCES = 1, 2, 3, 4
_ST_CHUNKLOST, _ST_LOCKED, _ST_CHUNKBUSY, _ST_NOTDONE = 8, 11, 14, 16
_ST_ENOENT_NOCACHE = 48
_STATUS_TEXT = (
    "OK", "Operation not permitted", "Not a directory", "No such file or directory",
    "Permission denied", "File exists", "Invalid argument", "Directory not empty",
    "Chunk lost", "Out of memory", "Index too big", "Chunk locked", "No chunk servers",
    "No such chunk", "Chunk is busy", "Incorrect register BLOB", "Operation not completed",
    "File not opened", "Write not started", "Wrong chunk version", "Chunk already exists",
    "No space left", "IO error", "Incorrect block number", "Incorrect size",
    "Incorrect offset", "Can't connect", "Incorrect chunk id", "Disconnected", "CRC error",
    "Operation delayed", "Can't create path", "Data mismatch", "Read-only file system",
    "Quota exceeded", "Bad session id", "Password is needed", "Incorrect password",
    "Attribute not found", "Operation not supported", "Result too large",
    "Entity not found", "Entity is active", "Chunkserver not present", "Waiting on lock",
    "Resource temporarily unavailable", "Interrupted system call", "Operation canceled",
    "No such file or directory (not cacheable)", "Operation not permitted (mfs admin only)",
    "Class name already in use", "Maximum number of classes reached", "No such class",
    "Class in use",
)


def status_text(status: int) -> str:
    """The MooseFS name of a status code, e.g. ``19 (Wrong chunk version)``."""
    text = _STATUS_TEXT[status] if 0 <= status < len(_STATUS_TEXT) else "Unknown MFS error"
    return f"{status} ({text})"


# ---- errors ------------------------------------------------------------------------
class MfsError(OSError):
    """An error reported by MooseFS or met while talking to it.

    ``status`` is the MooseFS status code when the cluster answered one.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class MasterUnreachable(MfsError, ConnectionError):
    """The master could not be reached (or re-reached after a lost connection)."""


class ChunkUnavailable(MfsError):
    """No replica of a chunk could be read; the message names the chunk and servers."""


class _Disconnected(Exception):
    """A connection-level failure: the socket is no longer usable. ``rejected``: the master refused the
    command itself (asking again will not help)."""

    def __init__(self, message: str, rejected: bool = False) -> None:
        super().__init__(message)
        self.rejected = rejected


class _ReplicaFailed(Exception):
    """One chunkserver could not deliver (refused, timeout, bad status, CRC, short read)."""


def _status_error(status: int, what: str) -> OSError:
    """The exception for a status the master answered about ``what`` (a URL or a path)."""
    text = f"{what}: {status_text(status)}"
    if status in (_ST_ENOENT, _ST_ENOENT_NOCACHE):
        return FileNotFoundError(errno.ENOENT, f"no such file or directory on MooseFS: {what}")
    if status in (_ST_EACCES, _ST_EPERM):
        return PermissionError(errno.EACCES, f"permission denied by MooseFS: {what}")
    if status == _ST_ENOTDIR:
        return NotADirectoryError(errno.ENOTDIR, f"not a directory on MooseFS: {what}")
    return MfsError(text, status)


# ---- plain records -----------------------------------------------------------------
@dataclass(frozen=True)
class Attr:
    """The attributes of an inode as the master reports them."""

    type: int          # 1 file, 2 directory, 3 symlink, 4.. special files
    mode: int          # permission bits (12 bits)
    uid: int
    gid: int
    atime: int
    mtime: int
    ctime: int
    nlink: int
    length: int

    @property
    def is_file(self) -> bool:
        return self.type == _TYPE_FILE

    @property
    def is_dir(self) -> bool:
        return self.type == _TYPE_DIR

    @property
    def is_symlink(self) -> bool:
        return self.type == _TYPE_SYMLINK

    @classmethod
    def parse(cls, data: bytes | memoryview) -> Attr:
        """Parse a 35- or 36-byte record (``SESFLAG_ATTRBIT`` layout: type in the mode word)."""
        _flags, type_mode, uid, gid, atime, mtime, ctime, nlink, length = _ATTR.unpack_from(data)
        return cls(type_mode >> 12, type_mode & 0o7777, uid, gid, atime, mtime, ctime, nlink, length)


_ATTR = struct.Struct(">BHIIIIIIQ")   # 35 bytes; 3.0.93+ appends winattr:8


@dataclass(frozen=True)
class DirEntry:
    """One entry of a directory listing."""

    name: str
    inode: int
    attr: Attr


@dataclass(frozen=True)
class ChunkLocation:
    """Where one chunk of a file lives: ``servers`` are (ip, port) in the master's order."""

    index: int
    chunkid: int
    version: int
    file_length: int
    servers: tuple[tuple[str, int], ...]

    @property
    def hosts(self) -> list[str]:
        """The distinct chunkserver IPs, sorted (the master's order is random)."""
        return sorted({ip for ip, _ in self.servers})


# ---- socket helpers ----------------------------------------------------------------
def _recv_into(sock: socket.socket, view: memoryview) -> None:
    """Fill ``view`` from ``sock``; any failure or EOF raises _Disconnected."""
    got, size = 0, len(view)
    try:
        while got < size:
            n = sock.recv_into(view[got:], size - got)
            if n == 0:
                raise _Disconnected(f"connection closed by peer after {got} of {size} bytes")
            got += n
    except OSError as e:
        raise _Disconnected(_describe(e)) from e


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray(size)
    if size:
        _recv_into(sock, memoryview(buf))
    return bytes(buf)


def _recv_packet(sock: socket.socket) -> tuple[int, bytes]:
    cmd, length = struct.unpack(">II", _recv_exact(sock, 8))
    if length > _MAX_PACKET:
        raise _Disconnected(f"implausible packet length {length} for command {cmd}")
    return cmd, _recv_exact(sock, length)


def _sendall(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError as e:
        raise _Disconnected(_describe(e)) from e


def _describe(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timed out"
    return str(e) or type(e).__name__


def _connect(host: str, port: int, connect_timeout: float, timeout: float) -> socket.socket:
    """A connected TCP socket with ``timeout`` on every operation; failures raise _Disconnected."""
    try:
        sock = socket.create_connection((host, port), timeout=connect_timeout)
    except OSError as e:
        raise _Disconnected(_describe(e)) from e
    sock.settimeout(timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _packet(cmd: int, payload: bytes) -> bytes:
    return struct.pack(">II", cmd, len(payload)) + payload


def _ip(raw: int) -> str:
    return socket.inet_ntoa(struct.pack(">I", raw))


# ---- the master --------------------------------------------------------------------
class MasterClient:
    """A session with one MooseFS master, safe to share between threads.

    Connects on first use (from the calling thread), re-connects after a lost
    connection, and keeps an idle connection alive with NOPs.

    >>> m = MasterClient("10.77.0.1")                    # doctest: +SKIP
    >>> inode, attr = m.resolve("/data/words.txt")      # doctest: +SKIP
    >>> m.chunk_location(inode, 0).hosts                # doctest: +SKIP
    ['10.77.0.11', '10.77.0.12']
    """

    def __init__(self, host: str, port: int = DEFAULT_PORT, *, timeout: float = MASTER_TIMEOUT,
                 connect_timeout: float = CONNECT_TIMEOUT, keepalive: float | None = KEEPALIVE,
                 reconnect_wait: float = RECONNECT_WAIT) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        #: chunkserver -> when a read from it last failed (monotonic): the files of this master try it last
        self.failed_at: dict[tuple[str, int], float] = {}
        self.reconnect_wait = reconnect_wait
        self.sessionid = 0
        self.metaid = 0
        self.master_version = 0
        self.reconnects = 0            # connections re-established after a loss
        self._attr_size = 36
        self._uid = os.getuid()
        self._gid = os.getgid()
        self._sock: socket.socket | None = None
        self._msgid = 0
        self._last_send = 0.0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"MasterClient({self.host!r}, {self.port}, session={self.sessionid})"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, path: str) -> str:
        """The mfs:// URL of an absolute MooseFS path on this master."""
        return f"mfs://{self.address}{path}"

    # -- connection and session --------------------------------------------------
    def connect(self) -> None:
        """Open the connection and session now (they are otherwise opened on first use)."""
        with self._lock:
            self._ensure_connected()

    def close(self) -> None:
        """End the session on the master and close the connection; later calls reconnect."""
        self._stop.set()
        with self._lock:
            sock, self._sock = self._sock, None
            if sock is not None and self.sessionid:
                body = _REGISTER_BLOB + struct.pack(">BIQ", _CLOSESESSION, self.sessionid, self.metaid)
                with contextlib.suppress(_Disconnected):      # a dead master forgets it anyway
                    sock.settimeout(min(self.timeout, 2.0))
                    _sendall(sock, _packet(_REGISTER, body))
                    while _recv_packet(sock)[0] != _REGISTER + 1:
                        pass
            if sock is not None:
                sock.close()
            self.sessionid = 0
        keeper, self._keeper = self._keeper, None
        if keeper is not None and keeper is not threading.current_thread():
            keeper.join(timeout=5)
        self._stop = threading.Event()

    def _abandon(self) -> None:
        """Forget the connection and session without a word to the master (a forked
        child's copy: the parent keeps using them; the child registers its own)."""
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._keeper = None
        self._lock = threading.RLock()
        self.sessionid = 0

    def _ensure_connected(self) -> None:
        if self._sock is not None:
            return
        if not self.sessionid:
            try:
                self._open_session()
            except _Disconnected as e:
                raise MasterUnreachable(
                    f"cannot reach MooseFS master {self.address}: {e}") from None
            return
        # a session existed: the master may be restarting; keep trying for a while
        deadline = time.monotonic() + self.reconnect_wait
        delay = 0.1
        while True:
            try:
                self._open_session()
                self.reconnects += 1
                log.info("reconnected to MooseFS master %s (session %d)", self.address, self.sessionid)
                return
            except _Disconnected as e:
                if time.monotonic() + delay > deadline:
                    raise MasterUnreachable(
                        f"lost MooseFS master {self.address} and could not reconnect within "
                        f"{self.reconnect_wait:g} s: {e}") from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _open_session(self) -> None:
        sock = _connect(self.host, self.port, self.connect_timeout, self.timeout)
        try:
            if not (self.sessionid and self._reattach(sock)):
                self._register(sock)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._last_send = time.monotonic()
        self._start_keeper()

    def _reattach(self, sock: socket.socket) -> bool:
        """REGISTER_RECONNECT: re-attach our session; False when the master refuses it."""
        body = _REGISTER_BLOB + struct.pack(">BIIQ", _RECONNECT, self.sessionid, _CLIENT_VERSION,
                                            self.metaid)
        _sendall(sock, _packet(_REGISTER, body))
        data = self._register_reply(sock)
        status = data[-1] if data else -1      # 3.0.95+: version:32 status:8
        if status != _STATUS_OK:
            log.info("MooseFS master %s did not keep session %d (%s); registering a new one",
                     self.address, self.sessionid, status_text(status))
            return False
        return True

    def _register(self, sock: socket.socket) -> None:
        """REGISTER_NEWSESSION for the whole tree ("/")."""
        info = f"gopark {socket.gethostname()} pid {os.getpid()}".encode()
        path = b"/\0"
        body = (_REGISTER_BLOB + struct.pack(">BII", _NEWSESSION, _CLIENT_VERSION, len(info)) + info
                + struct.pack(">I", len(path)) + path)
        _sendall(sock, _packet(_REGISTER, body))
        data = self._register_reply(sock)
        if len(data) == 1:
            raise MfsError(f"MooseFS master {self.address} refused a session for '/': "
                           f"{status_text(data[0])} (check mfsexports.cfg)", data[0])
        # the layout grew with the master's version: 49 (>= 3.0.112), 45 (>= 3.0.72), 43 (>= 3.0.11)
        if len(data) not in (43, 45, 49):
            raise _Disconnected(f"unexpected register reply of {len(data)} bytes")
        major, mid, minor, sessionid, metaid = struct.unpack_from(">HBBIQ", data)
        self.master_version = (major << 16) | (mid << 8) | minor
        self.sessionid, self.metaid = sessionid, metaid
        self._attr_size = 36 if self.master_version >= _version(3, 0, 93) else 35

    def _register_reply(self, sock: socket.socket) -> bytes:
        while True:
            cmd, data = _recv_packet(sock)
            if cmd == _REGISTER + 1:
                return data
            if cmd != _NOP:
                raise _Disconnected(f"unexpected command {cmd} while registering")

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # -- keepalive -----------------------------------------------------------------
    def _start_keeper(self) -> None:
        if self.keepalive is None or (self._keeper is not None and self._keeper.is_alive()):
            return
        self._keeper = threading.Thread(target=self._keep_alive, args=(self._stop,),
                                        name=f"mfs-keepalive-{self.address}", daemon=True)
        self._keeper.start()

    def _keep_alive(self, stop: threading.Event) -> None:
        interval = self.keepalive or KEEPALIVE
        while not stop.wait(interval / 3):
            if not self._lock.acquire(blocking=False):
                continue                    # a request is running: the connection is busy anyway
            try:
                sock = self._sock
                if sock is None:
                    continue
                try:
                    self._nop_if_due(sock, interval)
                    while select.select([sock], [], [], 0)[0]:
                        cmd, _ = _recv_packet(sock)     # the master's NOPs and notices
                        if cmd != _NOP:
                            log.debug("ignored idle packet %d from %s", cmd, self.address)
                except (_Disconnected, OSError, ValueError) as e:
                    log.info("MooseFS master %s connection lost while idle: %s", self.address, e)
                    self._drop()
            finally:
                self._lock.release()

    def _nop_if_due(self, sock: socket.socket, interval: float) -> None:
        """A NOP when nothing was sent for ``interval`` seconds: the master drops a client it has not heard
        from for 10 s."""
        if time.monotonic() - self._last_send >= interval:
            _sendall(sock, _packet(_NOP, b""))
            self._last_send = time.monotonic()

    # -- requests -----------------------------------------------------------------
    def _request(self, cmd: int, body: bytes) -> bytes:
        """Send ``msgid + body`` as ``cmd``; return the reply after its msgid.

        Reconnects and re-sends when the connection breaks (every request here is a
        read, so re-sending is safe): once at once, then with a growing pause, for
        up to ``timeout`` seconds; a command the master rejects fails at the second.
        """
        with self._lock:
            first_drop = None
            for attempt in itertools.count(1):
                self._ensure_connected()
                assert self._sock is not None
                self._msgid = (self._msgid + 1) & 0xFFFFFFFF or 1
                try:
                    _sendall(self._sock, _packet(cmd, struct.pack(">I", self._msgid) + body))
                    self._last_send = time.monotonic()
                    return self._await_reply(cmd + 1)
                except _Disconnected as e:
                    self._drop()
                    first_drop = first_drop or time.monotonic()
                    if e.rejected and attempt >= 2:
                        raise MfsError(f"MooseFS master {self.address} rejected the request: {e}") from None
                    if time.monotonic() - first_drop >= self.timeout:
                        raise MasterUnreachable(f"MooseFS master {self.address} dropped the request {attempt} "
                                                f"times in {self.timeout:g} s: {e}") from None
                    log.info("MooseFS master %s connection lost (%s); reconnecting", self.address, e)
                    if attempt > 1:
                        time.sleep(min(0.1 * 2 ** attempt, 2.0))
        raise AssertionError("unreachable")

    def _await_reply(self, reply_cmd: int) -> bytes:
        """The reply to the request just sent. While the master holds it (READ_CHUNK of a chunk another
        client is writing waits for the writer), NOPs keep the session alive, as the keepalive thread does
        when idle: the master drops a client it has not heard from for 10 s, and the request with it."""
        sock = self._sock
        assert sock is not None
        interval = self.keepalive or KEEPALIVE
        deadline = time.monotonic() + self.timeout
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise _Disconnected(f"no reply in {self.timeout:g} s")
            if not select.select([sock], [], [], max(0.0, min(self._last_send + interval, deadline) - now))[0]:
                self._nop_if_due(sock, interval)
                continue
            cmd, data = _recv_packet(sock)
            if cmd == reply_cmd and len(data) >= 4 and struct.unpack_from(">I", data)[0] == self._msgid:
                return data[4:]
            if cmd in (_UNKNOWN_COMMAND, _BAD_COMMAND_SIZE):
                raise _Disconnected(f"master rejected command (reply {cmd})", rejected=True)
            # NOPs (cmd 0, msgid 0) and unsolicited notices (msgid 0): skip

    # -- metadata -----------------------------------------------------------------
    def _gids(self) -> bytes:
        return struct.pack(">III", self._uid, 1, self._gid)

    def lookup(self, parent: int, name: str, *, what: str | None = None) -> tuple[int, Attr]:
        """The inode and attributes of ``name`` in directory ``parent``."""
        raw = name.encode()
        if not 0 < len(raw) < 256:
            raise _status_error(_ST_ENOENT, what or name)
        reply = self._request(_LOOKUP, struct.pack(">IB", parent, len(raw)) + raw + self._gids())
        if len(reply) == 1:
            raise _status_error(reply[0], what or name)
        (inode,) = struct.unpack_from(">I", reply)
        return inode, Attr.parse(memoryview(reply)[4:])

    def getattr(self, inode: int, *, what: str | None = None) -> Attr:
        """The attributes of an inode."""
        reply = self._request(_GETATTR, struct.pack(">IBII", inode, 0, self._uid, self._gid))
        if len(reply) == 1:
            raise _status_error(reply[0], what or f"inode {inode}")
        return Attr.parse(reply)

    def readlink(self, inode: int, *, what: str | None = None) -> str:
        """The target of a symbolic link."""
        reply = self._request(_READLINK, struct.pack(">I", inode))
        if len(reply) == 1:
            raise _status_error(reply[0], what or f"inode {inode}")
        (length,) = struct.unpack_from(">I", reply)
        return reply[4:4 + length].rstrip(b"\0").decode("utf-8", "surrogateescape")

    def readdir(self, inode: int, *, what: str | None = None) -> list[DirEntry]:
        """The entries of a directory (without '.' and '..'), in the master's order."""
        body = struct.pack(">IIIIBIQ", inode, self._uid, 1, self._gid, _GETDIR_WITHATTR,
                           0xFFFFFFFF, 0)
        reply = self._request(_READDIR, body)
        if len(reply) == 1:
            raise _status_error(reply[0], what or f"inode {inode}")
        entries = []
        view, pos, asize = memoryview(reply), 8, self._attr_size   # skip nedgeid:64
        while pos < len(reply):
            nlen = reply[pos]
            name = bytes(view[pos + 1:pos + 1 + nlen]).decode("utf-8", "surrogateescape")
            pos += 1 + nlen
            (child,) = struct.unpack_from(">I", reply, pos)
            attr = Attr.parse(view[pos + 4:pos + 4 + asize])
            pos += 4 + asize
            if name not in (".", ".."):
                entries.append(DirEntry(name, child, attr))
        if pos != len(reply):
            raise MfsError(f"malformed directory listing from {self.address}")
        return entries

    def paths(self, inode: int) -> list[str]:
        """The absolute MooseFS paths of an inode (several for hard links)."""
        reply = self._request(_PATHS, struct.pack(">I", inode))
        if len(reply) == 1:
            raise _status_error(reply[0], f"inode {inode}")
        out, pos = [], 0
        while pos + 4 <= len(reply):
            (length,) = struct.unpack_from(">I", reply, pos)
            path = reply[pos + 4:pos + 4 + length].decode("utf-8", "surrogateescape")
            pos += 4 + length
            if not path.startswith("./"):                  # "./TRASH (...)", "./SUSTAINED (...)"
                out.append("/" + path.lstrip("/"))
        return out

    def resolve(self, path: str) -> tuple[int, Attr, str]:
        """Look up an absolute path, following symbolic links.

        Returns the inode, its attributes and the canonical path.  A missing
        component raises FileNotFoundError naming the mfs:// URL.
        """
        pending = [p for p in path.split("/") if p]
        pending.reverse()                       # a stack: next component last
        done: list[tuple[str, int]] = []        # resolved (name, inode) from the root
        inode, attr = _ROOT_INODE, self.getattr(_ROOT_INODE)
        hops = 0
        while pending:
            name = pending.pop()
            if name == ".":
                continue
            if name == "..":
                if done:
                    done.pop()
                inode = done[-1][1] if done else _ROOT_INODE
                attr = self.getattr(inode)
                continue
            here = "/" + "/".join([n for n, _ in done] + [name])
            what = self.url(path) if here == path else f"{self.url(path)} (at {here})"
            if not attr.is_dir:
                raise NotADirectoryError(errno.ENOTDIR, f"not a directory on MooseFS: {what}")
            child, cattr = self.lookup(inode, name, what=what)
            if cattr.is_symlink:
                hops += 1
                if hops > _MAX_SYMLINKS:
                    raise MfsError(f"too many levels of symbolic links: {self.url(path)}", None)
                target = self.readlink(child, what=what)
                if target.startswith("/"):
                    done = []
                    inode, attr = _ROOT_INODE, self.getattr(_ROOT_INODE)
                pending.extend(reversed([p for p in target.split("/") if p]))
                continue
            done.append((name, child))
            inode, attr = child, cattr
        return inode, attr, "/" + "/".join(n for n, _ in done)

    def chunk_location(self, inode: int, index: int, *, what: str | None = None) -> ChunkLocation:
        """Where chunk ``index`` of a file lives (READ_CHUNK); past the end: chunk id 0."""
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._request(_READ_CHUNK, struct.pack(">IIB", inode, index, 0))
            if len(reply) == 1:
                status = reply[0]
                # the master normally waits for a locked chunk itself; these are leftovers
                if status in (_ST_LOCKED, _ST_CHUNKBUSY, _ST_NOTDONE) and time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                if status == _ST_CHUNKLOST:
                    raise ChunkUnavailable(f"chunk {index} of {what or f'inode {inode}'} is lost "
                                           f"(no valid copy on any chunkserver)", status)
                raise _status_error(status, what or f"inode {inode}")
            return _parse_read_chunk(index, reply, self.address)


def _parse_read_chunk(index: int, reply: bytes, address: str) -> ChunkLocation:
    """MATOCL_FUSE_READ_CHUNK after msgid, for protocol ids 2 (3.0.10+), 1 and none."""
    if len(reply) >= 21 and reply[0] == 2 and (len(reply) - 21) % 14 == 0:
        _, length, chunkid, version = struct.unpack_from(">BQQI", reply)
        width, pos = 14, 21
    elif len(reply) >= 21 and reply[0] == 1 and (len(reply) - 21) % 10 == 0:
        _, length, chunkid, version = struct.unpack_from(">BQQI", reply)
        width, pos = 10, 21
    elif len(reply) >= 20 and (len(reply) - 20) % 6 == 0:
        length, chunkid, version = struct.unpack_from(">QQI", reply)
        width, pos = 6, 20
    else:
        raise MfsError(f"malformed chunk location reply ({len(reply)} bytes) from {address}")
    servers = []
    for at in range(pos, len(reply), width):
        raw_ip, port = struct.unpack_from(">IH", reply, at)
        servers.append((_ip(raw_ip), port))
    return ChunkLocation(index, chunkid, version, length, tuple(servers))


# ---- one process-wide session per master ----------------------------------------------
_masters: dict[tuple[str, int], MasterClient] = {}
_masters_lock = threading.Lock()


def get_master(host: str, port: int = DEFAULT_PORT) -> MasterClient:
    """The shared MasterClient of this process for ``host:port``."""
    key = (host, int(port))
    with _masters_lock:
        client = _masters.get(key)
        if client is None:
            client = _masters[key] = MasterClient(host, int(port))
        return client


def close_masters() -> None:
    """Close every shared session (run at interpreter exit)."""
    with _masters_lock:
        clients = list(_masters.values())
        _masters.clear()
    for client in clients:
        client.close()


def _forget_masters_after_fork() -> None:
    global _masters_lock
    _masters_lock = threading.Lock()
    for client in _masters.values():
        client._abandon()
    _masters.clear()


atexit.register(close_masters)
os.register_at_fork(after_in_child=_forget_masters_after_fork)


# ---- chunkserver reads ---------------------------------------------------------------
_READ_DATA_HEAD = struct.Struct(">QHHII")


class _ChunkserverStream:
    """One CLTOCS_READ on one chunkserver connection, yielding verified bytes."""

    def __init__(self, server: tuple[str, int], timeout: float, connect_timeout: float) -> None:
        try:
            self.sock = _connect(server[0], server[1], connect_timeout, timeout)
        except _Disconnected as e:
            raise _ReplicaFailed(f"cannot connect: {e}") from None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def read(self, chunkid: int, version: int, offset: int, size: int,
             block_size: int) -> Iterator[bytearray]:
        """Yield ``size`` bytes from ``offset`` of the chunk in fresh buffers of at most
        ``block_size`` (a multiple of 64 KiB) that end on 64 KiB block borders, so the
        chunkserver's packets fill them exactly.  Every packet's CRC is checked before
        its bytes are yielded."""
        sock = self.sock

        def new_buffer() -> bytearray:
            return bytearray(min(left, block_size - expect % BLOCK_SIZE))

        try:
            _sendall(sock, struct.pack(">IIBQIII", _CLTOCS_READ, 21, 1, chunkid, version, offset, size))
            expect, left = offset, size
            buf = new_buffer()
            view, fill = memoryview(buf), 0
            head = bytearray(8)
            sub = bytearray(_READ_DATA_HEAD.size)
            while True:
                _recv_into(sock, memoryview(head))
                cmd, length = struct.unpack(">II", head)
                if cmd == _NOP:
                    if length:
                        _recv_exact(sock, length)
                    continue
                if cmd == _CSTOCL_READ_STATUS:
                    if length != 9:
                        raise _ReplicaFailed(f"malformed status packet ({length} bytes)")
                    cid, status = struct.unpack(">QB", _recv_exact(sock, 9))
                    if cid != chunkid:
                        raise _ReplicaFailed(f"status for chunk {cid:016X}")
                    if status != _STATUS_OK:
                        raise _ReplicaFailed(f"status {status_text(status)}")
                    if left:
                        raise _ReplicaFailed(f"short read: {size - left} of {size} bytes")
                    if fill:
                        yield buf if fill == len(buf) else buf[:fill]
                    return
                if cmd != _CSTOCL_READ_DATA or length < len(sub):
                    raise _ReplicaFailed(f"unexpected packet {cmd} ({length} bytes)")
                _recv_into(sock, memoryview(sub))
                cid, blocknum, blockoff, bsize, crc = _READ_DATA_HEAD.unpack(sub)
                if (cid != chunkid or length != len(sub) + bsize or bsize > left
                        or blocknum * BLOCK_SIZE + blockoff != expect or blockoff + bsize > BLOCK_SIZE):
                    raise _ReplicaFailed(f"malformed data packet (block {blocknum}+{blockoff}, "
                                         f"{bsize} bytes, expected offset {expect})")
                if fill + bsize > len(buf):
                    raise _ReplicaFailed(f"data packet crosses a block border at offset {expect}")
                piece = view[fill:fill + bsize]
                _recv_into(sock, piece)
                if zlib.crc32(piece) != crc:
                    raise _ReplicaFailed(f"CRC mismatch in block {blocknum} of chunk {chunkid:016X}")
                fill += bsize
                expect += bsize
                left -= bsize
                if fill == len(buf) and left:
                    yield buf
                    buf = new_buffer()
                    view, fill = memoryview(buf), 0
        except _Disconnected as e:
            raise _ReplicaFailed(str(e)) from None


def _healthy_first(servers: Iterable[tuple[str, int]],
                   failed_at: dict[tuple[str, int], float]) -> list[tuple[str, int]]:
    """``servers`` (the master's order) with those that failed a read in the last ``AVOID_FOR`` seconds last."""
    now = time.monotonic()
    return sorted(servers, key=lambda s: now - failed_at.get(s, -math.inf) < AVOID_FOR)


def verify_block(data: bytes | bytearray | memoryview, crc: int) -> bool:
    """True when ``crc`` is the chunkserver CRC (zlib CRC-32) of ``data``."""
    return zlib.crc32(data) == crc


class MfsFile:
    """One MooseFS file, by inode: byte ranges read straight from its chunkservers.

    ``timeout`` bounds every chunkserver socket operation on the last replica
    left to try; while another one is left, ``REPLICA_TIMEOUT`` does, so a hung
    replica is abandoned for the next one after that long. A chunkserver that
    failed a read is tried last by every read of this process from the same
    master for ``AVOID_FOR`` seconds (a split's next chunk, the next split, the
    next task): the master's client, one a process, keeps that.
    """

    def __init__(self, client: MasterClient, inode: int, path: str, *,
                 timeout: float = CHUNKSERVER_TIMEOUT, connect_timeout: float = CONNECT_TIMEOUT,
                 replica_wait: float = REPLICA_WAIT) -> None:
        self.client = client
        self.inode = inode
        self.path = path
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout, timeout)
        self.replica_wait = replica_wait
        self._locations: dict[int, ChunkLocation] = {}

    @property
    def url(self) -> str:
        return self.client.url(self.path)

    @property
    def length(self) -> int:
        """The current length of the file, from the master."""
        return self.location(0, refresh=True).file_length

    def location(self, index: int, refresh: bool = False) -> ChunkLocation:
        """The (cached) location of chunk ``index``."""
        loc = None if refresh else self._locations.get(index)
        if loc is None:
            loc = self.client.chunk_location(self.inode, index, what=self.url)
            self._locations[index] = loc
        return loc

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        """The bytes ``[start, end)`` (to the end of the file by default)."""
        return b"".join(self.iter_bytes(start, end))

    def iter_bytes(self, start: int = 0, end: int | None = None, *,
                   block_size: int = READ_BLOCK) -> Iterator[bytearray]:
        """Stream ``[start, end)`` in pieces of at most ``block_size`` bytes (rounded
        down to a multiple of 64 KiB).

        Reading past the end of the file is an error (the file is shorter than
        the caller thinks), not a short result.
        """
        block_size = max(BLOCK_SIZE, block_size - block_size % BLOCK_SIZE)
        if end is None:
            end = self.location(start // CHUNK_SIZE).file_length
        if not 0 <= start <= end:
            raise ValueError(f"bad byte range [{start}, {end})")
        pos = start
        while pos < end:
            index = pos // CHUNK_SIZE
            loc = self.location(index)
            if end > loc.file_length:
                raise MfsError(f"{self.url} is {loc.file_length} bytes long, cannot read up to "
                               f"byte {end} (did it change since the split was planned?)")
            base = index * CHUNK_SIZE
            stop = min(end, base + CHUNK_SIZE)
            yield from self._iter_chunk(loc, pos - base, stop - base, block_size)
            pos = stop

    def _iter_chunk(self, loc: ChunkLocation, lo: int, hi: int,
                    block_size: int) -> Iterator[bytearray]:
        if loc.chunkid == 0:                                # a hole: zeros
            for at in range(lo, hi, block_size):
                yield bytearray(min(block_size, hi - at))
            return
        pos = lo
        tried: list[str] = []
        refreshed = False
        while True:
            if not loc.servers:
                loc = self._wait_for_replicas(loc)
            servers = _healthy_first(loc.servers, self.client.failed_at)
            for n, server in enumerate(servers, 1):
                timeout = self.timeout if n == len(servers) else min(self.timeout, REPLICA_TIMEOUT)
                try:
                    with _ChunkserverStream(server, timeout, min(self.connect_timeout, timeout)) as stream:
                        for block in stream.read(loc.chunkid, loc.version, pos, hi - pos, block_size):
                            pos += len(block)
                            yield block
                    self.client.failed_at.pop(server, None)
                    return
                except _ReplicaFailed as e:
                    self.client.failed_at[server] = time.monotonic()
                    where = f"{server[0]}:{server[1]}"
                    tried.append(f"{where} ({e})")
                    log.warning("chunk %016X of %s: replica %s failed: %s; trying the next one",
                                loc.chunkid, self.url, where, e)
            if refreshed:
                break
            fresh = self.location(loc.index, refresh=True)
            refreshed = True
            if (fresh.chunkid, fresh.version, set(fresh.servers)) == (
                    loc.chunkid, loc.version, set(loc.servers)):
                break                                        # nothing new to try
            loc = fresh
        raise ChunkUnavailable(
            f"chunk {loc.chunkid:016X} (index {loc.index}) of {self.url}: no replica could be "
            f"read; tried {'; '.join(tried)}")

    def _wait_for_replicas(self, loc: ChunkLocation) -> ChunkLocation:
        """A chunk with no live copy listed (chunkservers still registering after a
        master restart, or all down): ask again for ``replica_wait`` seconds."""
        deadline = time.monotonic() + self.replica_wait
        delay = 0.1
        while not loc.servers:
            if time.monotonic() + delay > deadline:
                raise ChunkUnavailable(
                    f"chunk {loc.chunkid:016X} (index {loc.index}) of {self.url}: no chunkserver "
                    f"holds a live copy (waited {self.replica_wait:g} s; tried no server)")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
            loc = self.location(loc.index, refresh=True)
        return loc


# ---- paths: URLs and mounts ------------------------------------------------------------
_URL_PREFIX = "mfs://"


def parse_mfs_url(url: str) -> tuple[str, int, str]:
    """``mfs://master[:port]/path`` -> (master, port, normalized absolute path); ConfigError (a ValueError)
    for a URL that names no master, or a bad port: the app's input, one error line.

    >>> parse_mfs_url("mfs://mfsmaster/data//logs/")
    ('mfsmaster', 9421, '/data/logs')
    """
    if not url.startswith(_URL_PREFIX):
        raise ConfigError(f"not a MooseFS URL: {url!r} (expected mfs://master[:port]/path)")
    rest = url[len(_URL_PREFIX):]
    netloc, slash, path = rest.partition("/")
    host, colon, port_text = netloc.rpartition(":") if ":" in netloc else (netloc, "", "")
    if colon:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(f"bad port {port_text!r} in MooseFS URL {url!r}")
        port = int(port_text)
    else:
        port = DEFAULT_PORT
    if not host or any(c in host for c in "/@ "):
        raise ConfigError(f"no master host in MooseFS URL {url!r} (expected mfs://master[:port]/path)")
    return host, port, posixpath.normpath("/" + path) if slash else "/"


@dataclass(frozen=True)
class MfsMount:
    """A MooseFS FUSE mount of this machine and the master it talks to."""

    mountpoint: str
    host: str
    port: int


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def mfs_mounts(mounts_file: str = "/proc/mounts") -> list[MfsMount]:
    """The MooseFS mounts listed in ``mounts_file``.

    mfsmount 3.0.x writes ``mfs#HOST:PORT MOUNTPOINT fuse ...`` ("#" escaped as
    "\\043"); later versions use the fstype ``fuse.mfs``.
    """
    try:
        with open(mounts_file, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        source, mountpoint, fstype = (_OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), x)
                                      for x in fields[:3])
        if not (fstype == "fuse" or fstype.startswith("fuse.")):
            continue
        if source.startswith("mfs#"):
            source = source[4:]
        elif fstype not in ("fuse.mfs", "fuse.mfsmount", "fuse.mfsmount3"):
            continue
        host, colon, port = source.rpartition(":")
        if not colon or not port.isdigit():
            host, port = source, str(DEFAULT_PORT)
        if host:
            found.append(MfsMount(mountpoint, host, int(port)))
    return found


def find_mount(path: str, mounts_file: str = "/proc/mounts") -> MfsMount | None:
    """The MooseFS mount that ``path`` (a local path, maybe a glob) lives under."""
    if path.startswith(_URL_PREFIX):
        return None
    real = os.path.realpath(path)
    best = None
    for mount in mfs_mounts(mounts_file):
        mp = mount.mountpoint.rstrip("/") or "/"
        inside = real == mp or real.startswith(mp + "/") or mp == "/"
        if inside and (best is None or len(mp) > len(best.mountpoint.rstrip("/"))):
            best = mount
    return best


def is_mfs_path(path: str) -> bool:
    """True for an mfs:// URL or a path under a MooseFS mount: read it with this module."""
    return path.startswith(_URL_PREFIX) or find_mount(path) is not None


def open_file(path: str, *, timeout: float = CHUNKSERVER_TIMEOUT) -> MfsFile:
    """The MfsFile of one regular file given as an mfs:// URL or a mounted path.

    >>> data = open_file("mfs://10.77.0.1/data/a.txt").read()   # doctest: +SKIP
    """
    if path.startswith(_URL_PREFIX):
        host, port, mpath = parse_mfs_url(path)
        client = get_master(host, port)
        inode, attr, _ = client.resolve(mpath)
    else:
        mount = find_mount(path)
        if mount is None:
            raise ValueError(f"{path!r} is neither an mfs:// URL nor under a MooseFS mount")
        client = get_master(mount.host, mount.port)
        st = os.stat(path)
        inode = st.st_ino
        attr = client.getattr(inode, what=path)
        rel = os.path.relpath(os.path.realpath(path), os.path.realpath(mount.mountpoint))
        mpath = _mfs_path_of(client, inode, rel, path)
    if not attr.is_file:
        raise IsADirectoryError(errno.EISDIR, f"not a regular file: {path}")
    return MfsFile(client, inode, mpath, timeout=timeout)


# ---- expansion of a path to files ---------------------------------------------------------
_MAGIC = re.compile(r"[*?[]")


def _has_magic(path: str) -> bool:
    return _MAGIC.search(path) is not None


class _MasterTree:
    """Directory walking through the master (mfs:// URLs)."""

    def __init__(self, client: MasterClient) -> None:
        self.client = client

    def describe(self, path: str) -> str:
        return self.client.url(path)

    def stat(self, path: str) -> Node:
        inode, attr, _ = self.client.resolve(path)
        return Node(attr.is_file, attr.is_dir, inode)

    def listdir(self, path: str) -> list[tuple[str, Node]]:
        inode, attr, _ = self.client.resolve(path)
        if not attr.is_dir:
            raise NotADirectoryError(errno.ENOTDIR, f"not a directory on MooseFS: {self.describe(path)}")
        out = []
        for e in self.client.readdir(inode, what=self.describe(path)):
            if e.attr.is_symlink:
                try:
                    node = self.stat(posixpath.join(path, e.name))
                except FileNotFoundError:                      # a dangling link: skipped, and said
                    log.warning("skipped %s, a link to a path that does not exist on MooseFS (through mfs:// an "
                                "absolute link is read from the MooseFS root)",
                                self.describe(posixpath.join(path, e.name)))
                    continue
            else:
                node = Node(e.attr.is_file, e.attr.is_dir, e.inode)
            out.append((e.name, node))
        return out


def _walk(tree: _MasterTree | LocalTree, path: str) -> list[tuple[str, Node]]:
    """The regular files that ``path`` names: itself, a directory's files (see
    :func:`gopark.io.text.folder_files`), or the files and directories' files a glob matches (sorted), as the
    local reader (``gopark.io.text``) finds them: a name with glob characters that exists is
    itself; a glob's last part skips hidden names ('.', '_'), the parts before it only
    names starting with '.' (as ``glob``), unless the pattern starts with that character."""
    node: Node | None = None
    if _has_magic(path):
        try:
            node = tree.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            pass
    else:
        node = tree.stat(path)
    if node is not None:
        if node.is_file:
            return [(path, node)]
        if node.is_dir:
            return folder_files(tree, path, node)
        raise OSError(errno.EINVAL, f"not a regular file or directory: {tree.describe(path)}")
    parts = path.split("/")
    first = next(i for i, p in enumerate(parts) if _has_magic(p))
    base = "/".join(parts[:first]) or "/"
    current = [(base, tree.stat(base))]
    last = max(i for i, p in enumerate(parts) if p)
    for i, part in enumerate(parts[first:], first):
        if not part:
            continue
        nxt = []
        for dirpath, node in current:
            if not node.is_dir:
                continue
            if _has_magic(part):
                nxt.extend((posixpath.join(dirpath, name), n) for name, n in tree.listdir(dirpath)
                           if fnmatch.fnmatchcase(name, part)
                           and (visible(name, part) if i == last else name[:1] != "." or part[:1] == "."))
            else:
                child = posixpath.join(dirpath, part)
                try:
                    nxt.append((child, tree.stat(child)))
                except (FileNotFoundError, NotADirectoryError):
                    pass
        current = nxt
    if not current:
        raise FileNotFoundError(errno.ENOENT, f"no file matches {tree.describe(path)}")
    files = []
    for match, node in sorted(current, key=lambda x: x[0]):
        if node.is_file:
            files.append((match, node))
        elif node.is_dir:
            files.extend(folder_files(tree, match, node))
    return files


def _expand(path: str) -> tuple[list[tuple[int, str, int]], MasterClient]:
    """(inode, absolute MooseFS path, length) of the files ``path`` names, and their master."""
    if path.startswith(_URL_PREFIX):
        host, port, mpath = parse_mfs_url(path)
        client = get_master(host, port)
        tree = _MasterTree(client)
        files = []
        found = _walk(tree, mpath)
        _refuse_file_as_folder(path, found, mpath)
        for fpath, node in found:
            attr = client.getattr(node.inode, what=client.url(fpath))
            files.append((node.inode, fpath, attr.length))
        return files, client
    mount = find_mount(path)
    if mount is None:
        raise ValueError(f"{path!r} is neither an mfs:// URL nor under a MooseFS mount")
    client = get_master(mount.host, mount.port)
    local = os.path.abspath(path)
    try:
        found = _walk(LocalTree(), local)
    except FileNotFoundError as e:
        raise FileNotFoundError(errno.ENOENT,
                                f"no such file or directory on MooseFS mount {mount.mountpoint} "
                                f"({mount.host}:{mount.port}): {path}") from e
    _refuse_file_as_folder(path, found, local)
    files = []
    for fpath, node in found:
        rel = os.path.relpath(os.path.realpath(fpath), os.path.realpath(mount.mountpoint))
        if rel == ".." or rel.startswith("../"):     # its inode number is not MooseFS's
            raise OSError(errno.EXDEV, f"{fpath} links to {os.path.realpath(fpath)}, outside the MooseFS mount "
                                       f"{mount.mountpoint}: give that path to a textFile of its own")
        attr = client.getattr(node.inode, what=fpath)
        files.append((node.inode, _mfs_path_of(client, node.inode, rel, fpath), attr.length))
    return files, client


def _refuse_file_as_folder(path: str, found: list[tuple[str, Node]], named: str) -> None:
    """``dir/file.txt/`` names no file (as on a local disk): its normalized name found the file itself."""
    if path.endswith("/") and len(found) == 1 and found[0][0] == named and found[0][1].is_file:
        raise FileNotFoundError(errno.ENOENT, f"no such file or directory on MooseFS: {path} (a file, named as "
                                              "a folder)")


def file_lengths(path: str) -> list[int]:
    """The lengths of the plain (not compressed) files ``path`` names, as textFile finds them (metadata only:
    no chunk is looked up)."""
    files, _ = _expand(path)
    return [length for _, mpath, length in files if not mpath.endswith(tuple(_COMPRESSED))]


def list_files(path: str) -> tuple[list[str], MasterClient]:
    """The absolute MooseFS paths of the files ``path`` (an mfs:// URL or a mounted path) names, as
    textFile's splits find them (a folder's visible files, globs), and their master."""
    files, client = _expand(path)
    return [mpath for _, mpath, _ in files], client


def _mfs_path_of(client: MasterClient, inode: int, rel: str, local: str) -> str:
    """The absolute MooseFS path of a file seen at ``rel`` inside a mount."""
    candidates = client.paths(inode)
    suffix = "/" if rel == "." else "/" + rel
    for candidate in candidates:
        if candidate == suffix or candidate.endswith(suffix):
            return candidate
    if candidates:
        return candidates[0]
    raise FileNotFoundError(errno.ENOENT, f"no MooseFS path for inode {inode} ({local})")


# ---- split planning --------------------------------------------------------------------
_COMPRESSED = {".gz": "gz", ".bz2": "bz2"}


def _chunk_pieces(split_size: int | None) -> list[int]:
    """Offsets inside a chunk where splits start, plus CHUNK_SIZE.

    ``split_size`` >= 64 MiB (or None) keeps one split per chunk (a split never
    spans chunks, so it has one set of hosts).  A smaller one cuts each chunk into
    n = ceil(64 MiB / split_size) equal parts, with borders rounded to 64 KiB
    blocks: split_size is in effect rounded down to a size that divides the chunk
    (16 MiB -> 4 parts of 16 MiB; 10 MiB -> 7 parts of about 9.1 MiB).  At most
    1024 parts (64 KiB each).
    """
    if split_size is None or split_size >= CHUNK_SIZE:
        return [0, CHUNK_SIZE]
    if split_size <= 0:
        raise ValueError(f"split_size must be positive, not {split_size}")
    blocks = CHUNK_SIZE // BLOCK_SIZE
    parts = min(-(-CHUNK_SIZE // split_size), blocks)
    return [blocks * k // parts * BLOCK_SIZE for k in range(parts + 1)]


def plan_splits(path: str, split_size: int | None = None) -> list[dict]:
    """The splits of ``path`` as plain dicts (msgpack-ready).

    ``path`` is an mfs:// URL or a path under a MooseFS mount; a file, a
    directory (its regular files, sorted, then its subdirectories', without names
    that start with '.' or '_'), or a glob in any component.  One split per chunk by
    default (see _chunk_pieces for ``split_size``); a ``.gz``/``.bz2`` file is
    one split with ``"compression"`` set and the hosts of its first chunk; an
    empty file one empty split (``start == end == 0``, no hosts), as Hadoop's.  Each split::

        {"kind": "mfs", "master": host, "port": port, "path": "/abs/path",
         "inode": int, "start": int, "end": int, "hosts": [sorted IPs]}
    """
    pieces = _chunk_pieces(split_size)
    files, client = _expand(path)
    splits = []
    for inode, mpath, length in files:
        base = {"kind": "mfs", "master": client.host, "port": client.port, "path": mpath,
                "inode": inode}
        if length == 0:     # one empty split, as Hadoop's (so Spark's); no chunk, no hosts
            splits.append({**base, "start": 0, "end": 0, "hosts": []})
            continue
        what = client.url(mpath)
        compression = next((c for ext, c in _COMPRESSED.items() if mpath.endswith(ext)), None)
        if compression:
            hosts = client.chunk_location(inode, 0, what=what).hosts
            splits.append({**base, "compression": compression, "start": 0, "end": length,
                           "hosts": hosts})
            continue
        for index in range(-(-length // CHUNK_SIZE)):
            hosts = client.chunk_location(inode, index, what=what).hosts
            chunk_base = index * CHUNK_SIZE
            for lo, hi in itertools.pairwise(pieces):
                start, end = chunk_base + lo, min(chunk_base + hi, length)
                if start >= end:
                    break
                splits.append({**base, "start": start, "end": end, "hosts": list(hosts)})
    return splits


# ---- split reading ---------------------------------------------------------------------
def read_split(split: Mapping[str, Any], *, timeout: float | None = None,
               block_size: int = READ_BLOCK) -> Iterator[str]:
    """The text lines of one split (UTF-8, undecodable bytes replaced, without
    the line end; a trailing "\\r" is dropped too).

    They are read as :func:`read_split_texts` gives them, the lines of a block
    at a time, and handed out by C.
    """
    from gopark.io.text import lines_of
    return itertools.chain.from_iterable(map(lines_of, read_split_texts(split, timeout=timeout,
                                                                        block_size=block_size)))


def read_split_texts(split: Mapping[str, Any], *, timeout: float | None = None,
                     block_size: int = READ_BLOCK) -> Iterator[str]:
    """The lines of one split as texts: each the lines of a block read, joined by ``"\\n"``, decoded
    (UTF-8, undecodable bytes replaced).

    A line belongs to the split in which it starts: a split that starts inside a
    line skips it, and the last line is read past ``end`` as far as needed, so
    the splits of a file together give each of its lines once.  Compressed
    splits give the lines of the whole decompressed file.  Reading streams in
    pieces of ``block_size``; ``timeout`` bounds each chunkserver socket operation.
    """
    if split.get("kind") != "mfs":
        raise ValueError(f"not a MooseFS split: {split!r}")
    if not split["end"]:        # an empty file's split: nothing to read, no chunk to ask for
        return
    client = get_master(split["master"], split["port"])
    f = MfsFile(client, split["inode"], split["path"],
                timeout=CHUNKSERVER_TIMEOUT if timeout is None else timeout)
    start, end = int(split["start"]), int(split["end"])
    compression = split.get("compression")
    if compression is None:
        length = f.location(start // CHUNK_SIZE).file_length
        if end > length:
            raise MfsError(f"{f.url} is {length} bytes long but the split ends at {end} "
                           f"(did it change since the split was planned?)")
        begin = start - 1 if start > 0 else 0
        blocks = _split_blocks(f, begin, end, length, block_size)
        yield from _texts(blocks, begin, skip_first=start > 0, stop=end)
    elif compression in _DECOMPRESSORS:
        blocks = f.iter_bytes(0, end, block_size=block_size)
        inflate = _DECOMPRESSORS[compression]
        yield from _texts(inflate(blocks, f.url, block_size), 0, False, None)
    else:
        raise ValueError(f"unknown compression {compression!r} in split of {f.url}")


def _split_blocks(f: MfsFile, begin: int, end: int, length: int,
                  block_size: int) -> Iterator[bytearray]:
    """``[begin, end)`` in one stream, then, as long as the consumer wants more (its
    last line goes on), growing pieces past ``end`` up to the end of the file."""
    yield from f.iter_bytes(begin, end, block_size=block_size)
    pos, step = end, BLOCK_SIZE
    while pos < length:
        stop = min(pos + step, length)
        yield from f.iter_bytes(pos, stop, block_size=block_size)
        pos, step = stop, min(step * 2, block_size)


def _texts(blocks: Iterable[bytes | bytearray], offset: int, skip_first: bool,
           stop: int | None) -> Iterator[str]:
    """Split a byte stream that starts at ``offset`` into texts of whole lines (see
    :func:`read_split_texts`).

    With ``skip_first``, bytes up to and including the first newline are dropped
    (the stream starts one byte before a split, so a split starting right after a
    newline keeps its first line).  With ``stop``, only lines starting before
    ``stop`` are given; the one crossing it is completed.
    """
    pending = bytearray()          # the current, incomplete line
    line_at = offset               # absolute offset where it starts
    pos = offset                   # absolute offset of the current block
    skipping = skip_first
    for block in blocks:
        size = len(block)
        view = memoryview(block)
        lo = 0
        if skipping:
            first = block.find(b"\n")
            if first < 0:
                pos += size
                continue
            lo, skipping = first + 1, False
            line_at = pos + lo
        if stop is not None and line_at >= stop:
            return
        last = block.rfind(b"\n", lo)
        if last < 0:
            pending += view[lo:]
            pos += size
            continue
        if stop is not None and stop - pos <= last + 1:
            cut = block.find(b"\n", max(lo, stop - pos - 1))   # ends the line holding byte stop-1
            yield _decode(pending, view[lo:cut])
            return
        yield _decode(pending, view[lo:last])
        pending = bytearray(view[last + 1:])
        line_at = pos + last + 1
        pos += size
    if not skipping and pending and (stop is None or line_at < stop):
        yield _decode(bytearray(), memoryview(pending))


def _decode(pending: bytearray, tail: memoryview) -> str:
    """The text of ``pending + tail`` (which ends just before a newline)."""
    if pending:
        pending += tail
        return str(pending, "utf-8", "replace")
    return str(tail, "utf-8", "replace")


def _gunzip(blocks: Iterable[bytes | bytearray], what: str, limit: int) -> Iterator[bytes]:
    """Decompress concatenated gzip members, giving at most ``limit`` bytes at a time
    (a small input can inflate a thousandfold).  Truncated or corrupt data is an error."""
    d = zlib.decompressobj(zlib.MAX_WBITS | 16)
    in_member = False
    try:
        for block in blocks:
            data = bytes(block)
            while data:
                if not in_member:         # zeros padding a member out, skipped as gzip and Python's gzip do
                    data = data.lstrip(b"\0")
                    if not data:
                        break
                in_member = True
                out = d.decompress(data, limit)
                while len(out) == limit and not d.unconsumed_tail and not d.eof:
                    yield out                          # output may be pending inside zlib
                    out = d.decompress(b"", limit)
                if out:
                    yield out
                if d.eof:                              # next member, if any, starts here
                    data = d.unused_data
                    d, in_member = zlib.decompressobj(zlib.MAX_WBITS | 16), False
                else:
                    data = d.unconsumed_tail
    except zlib.error as e:
        raise MfsError(f"{what}: corrupt gzip data: {e}") from None
    if in_member:
        raise MfsError(f"{what}: truncated gzip data (the stream ends inside a member)")


def _bunzip2(blocks: Iterable[bytes | bytearray], what: str, limit: int) -> Iterator[bytes]:
    """Decompress concatenated bzip2 streams, at most ``limit`` bytes at a time."""
    d = bz2.BZ2Decompressor()
    in_stream = False
    try:
        for block in blocks:
            data = bytes(block)
            while data:
                in_stream = True
                out = d.decompress(data, limit)
                while not d.eof and not d.needs_input:     # more output is pending
                    if out:
                        yield out
                    out = d.decompress(b"", limit)
                if out:
                    yield out
                data = b""
                if d.eof:
                    data = d.unused_data
                    d, in_stream = bz2.BZ2Decompressor(), False
    except (OSError, EOFError) as e:
        raise MfsError(f"{what}: corrupt bzip2 data: {e}") from None
    if in_stream:
        raise MfsError(f"{what}: truncated bzip2 data (the stream ends inside a member)")


_DECOMPRESSORS: dict[str, Callable[[Iterable[bytes | bytearray], str, int], Iterator[bytes]]] = {
    "gz": _gunzip,
    "bz2": _bunzip2,
}
