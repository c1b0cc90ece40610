"""The running program as a binary: is it frozen, where is it, what is its sha256.

The sha256 is what a driver announces to Mesos executors, which check the
binary they fetched against it before running anything. For a onefile build it
is the hash of the executable; for a onedir build, of every file of its folder
(relative path and content, in sorted order), since the executable alone is
PyInstaller's generic bootloader.
"""
from __future__ import annotations

import functools
import glob
import os
import shutil
import stat
import sys
import tempfile
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import hashlib


def is_frozen() -> bool:
    """True when running as an executable made by ``gopark build``."""
    return bool(getattr(sys, "frozen", False))


def is_onefile() -> bool:
    """A onefile build: unpacked at each start into a ``_MEI`` folder."""
    return is_frozen() and os.path.basename(getattr(sys, "_MEIPASS", "")).startswith("_MEI")


def executable() -> str:
    """The path of the running binary (or the Python interpreter when not frozen)."""
    return os.path.realpath(sys.executable)


def running_file() -> str:
    """A path to the very file this process runs: ``/proc/self/exe``, which stays that file when a new
    build replaces the one at :func:`executable` (its path, where /proc is missing)."""
    return "/proc/self/exe" if os.path.exists("/proc/self/exe") else executable()


def replaced() -> str | None:
    """Why a worker started from :func:`executable` would not run this process's code: a frozen app's
    binary at its path is another file than the one running (a new build replaced it since); else None."""
    if not is_frozen() or not os.path.exists("/proc/self/exe"):
        return None
    try:
        there, running = os.stat(sys.executable), os.stat("/proc/self/exe")
    except OSError as exc:
        return f"the app's binary is gone from {sys.executable} ({exc.strerror})"
    if (there.st_dev, there.st_ino) == (running.st_dev, running.st_ino):
        return None
    return (f"the app's binary {sys.executable} was replaced (a new build?) after this run started: a worker "
            "started from it would run other code; run the app again")


def _hash_file(h: hashlib._Hash, path: str) -> None:
    with open(path, "rb") as f:
        for block in iter(functools.partial(f.read, 1 << 20), b""):
            h.update(block)


def digest(path: str) -> str:
    """sha256 of a file, or of a folder: each file's relative path and content, in sorted order."""
    # imported here: a driver in process mode spawns its workers before it, with no OpenSSL to load first
    import hashlib
    h = hashlib.sha256()
    if not os.path.isdir(path):
        _hash_file(h, path)
        return h.hexdigest()
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(folder, name)
            h.update(os.path.relpath(full, path).encode() + b"\0")
            _hash_file(h, full)
    return h.hexdigest()


def pack_folder(folder: str, archive: str) -> str:
    """Write ``folder`` (a onedir build), under its own name, into the tar ``archive``: what a Mesos agent's
    fetcher extracts into the executor's sandbox. Uncompressed: most of it is compressed libraries already,
    and the agents cache it."""
    import tarfile
    with tarfile.open(archive, "w") as tar:
        tar.add(folder, arcname=os.path.basename(folder))      # (in sorted order)
    return archive


@functools.cache
def sha256() -> str:
    """The sha256 of the running binary (hex; its folder for a onedir build); computed once."""
    if is_frozen() and not is_onefile():
        return digest(os.path.dirname(executable()))
    return digest(running_file())


def _live_unpack_dirs() -> set[str]:
    live = set()
    for env_path in glob.glob("/proc/[0-9]*/environ"):
        try:
            with open(env_path, "rb") as f:
                for item in f.read().split(b"\0"):
                    if item.startswith(b"_PYI_APPLICATION_HOME_DIR="):
                        live.add(os.path.realpath(item.split(b"=", 1)[1].decode()))
        except OSError:
            pass
    return live


BUILD_ID_FILE = "gopark_build_id"


_PARTIAL_MIN_AGE_S = 10.0     # untouched this long: no bootloader is unpacking into it (each write touches a file)


def remove_stale_unpack_dirs(min_age_s: float = 3.0) -> list[str]:
    """Remove ``_MEI`` folders that earlier runs of this same binary left (e.g. after SIGKILL).

    A folder is this binary's when it holds the same build id; it is stale when
    no live process uses it. A run killed while its bootloader unpacked (in its
    first tens of milliseconds) left a folder without the build id: it is this
    binary's when all it holds are files of this unpack (none larger), and no
    file was written into it for 10 s.
    """
    meipass = getattr(sys, "_MEIPASS", None)
    if not (is_onefile() and meipass):
        return []
    try:
        with open(os.path.join(meipass, BUILD_ID_FILE), "rb") as f:
            build_id = f.read()
    except OSError:
        return []
    now, candidates = time.time(), []
    for d in glob.glob(os.path.join(os.path.dirname(meipass) or tempfile.gettempdir(), "_MEI*")):
        try:
            if os.path.realpath(d) == os.path.realpath(meipass) or now - os.stat(d).st_mtime < min_age_s:
                continue
            with open(os.path.join(d, BUILD_ID_FILE), "rb") as f:
                if f.read() == build_id:
                    candidates.append(d)
        except FileNotFoundError:
            if _partial_unpack_of(d, meipass, now - _PARTIAL_MIN_AGE_S):
                candidates.append(d)
        except OSError:
            continue
    if not candidates:          # the usual case: no need to read every process' environment
        return []
    live = _live_unpack_dirs()
    removed = [d for d in candidates if os.path.realpath(d) not in live]
    for d in removed:
        shutil.rmtree(d, ignore_errors=True)
    return removed


def _partial_unpack_of(folder: str, meipass: str, untouched_since: float) -> bool:
    """``folder`` holds some files of ``meipass``'s unpack (at least one; at the same paths, of the same kind,
    none larger: the last one may be half written) and nothing else, none modified since ``untouched_since``."""
    found = False
    try:
        for root, dirs, files in os.walk(folder):
            for name in dirs + files:
                path = os.path.join(root, name)
                twin = os.path.join(meipass, os.path.relpath(path, folder))
                st, ours = os.lstat(path), os.lstat(twin)
                if st.st_mtime > untouched_since or stat.S_IFMT(st.st_mode) != stat.S_IFMT(ours.st_mode):
                    return False
                if stat.S_ISLNK(st.st_mode):
                    if os.readlink(path) != os.readlink(twin):
                        return False
                elif not stat.S_ISDIR(st.st_mode):
                    if st.st_size > ours.st_size:
                        return False
                    found = True
    except OSError:          # a name this unpack lacks, or the folder changed meanwhile
        return False
    return found
