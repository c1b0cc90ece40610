"""Reading /proc: which processes are ours, alive, or workers of a given driver.

Plain helpers for the tests (nothing here is given to gopark).
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable


def _stat(pid: int) -> tuple[int, str] | None:
    """(ppid, state) of ``pid``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = data[data.rfind(")") + 2:].split()   # the command name may hold spaces and parentheses
    return int(fields[1]), fields[0]


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def children(parent: int | None = None, zombies: bool = False) -> set[int]:
    """The child processes of ``parent`` (default: this process); zombies only if asked."""
    parent = os.getpid() if parent is None else parent
    found = set()
    for pid in _pids():
        st = _stat(pid)
        if st is not None and st[0] == parent and (zombies or st[1] != "Z"):
            found.add(pid)
    return found


def describe(pids: set[int]) -> str:
    """``pid (state) command`` of each, for assertion messages."""
    lines = []
    for pid in sorted(pids):
        st = _stat(pid)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            cmd = "?"
        lines.append(f"{pid} ({st[1] if st else 'gone'}) {cmd}")
    return "; ".join(lines)


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    st = _stat(pid)
    return st is not None and st[1] != "Z"


def pids_with_env(name: str, value: str) -> set[int]:
    """Live processes whose environment holds ``name=value`` (e.g. a driver's workers)."""
    want = f"{name}={value}".encode()
    found = set()
    for pid in _pids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if want in env and alive(pid):
            found.add(pid)
    return found


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def socket_inodes(pid: int | None = None) -> set[int]:
    """The inodes of the sockets ``pid`` (default: this process) has open."""
    fd_dir = f"/proc/{os.getpid() if pid is None else pid}/fd"
    inodes = set()
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:["):-1]))
    return inodes


def _addr(hex_addr: str) -> str:
    """The IP of a /proc/net/tcp{,6} ``ADDR:PORT`` field, as text."""
    import ipaddress
    ip_hex = hex_addr.split(":")[0]
    raw = bytes.fromhex(ip_hex)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return str(ipaddress.IPv6Address(words))


def listening_tcp(inodes: set[int]) -> list[str]:
    """The local addresses of listening TCP sockets among ``inodes``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] == "0A" and int(cols[9]) in inodes:
                found.append(_addr(cols[1]))
    return found


def unix_socket_paths(inodes: set[int]) -> list[str]:
    """The bound paths of unix sockets among ``inodes``."""
    found = []
    with open("/proc/net/unix") as f:
        for row in f.read().splitlines()[1:]:
            cols = row.split()
            if len(cols) >= 8 and int(cols[6]) in inodes:
                found.append(cols[7])
    return found
