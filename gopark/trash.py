"""Removing what a work folder no longer needs, off the path of the jobs.

The map outputs of a dropped shuffle and the files of a dropped cached RDD go
at the start of the next job. Deleting them can cost milliseconds a file or
folder: a file system that discards the blocks it frees as it frees them
(ext4 mounted with ``discard``, as cloud disks often are) waits for the disk
at each removal of a folder, or of a file already written out (3 ms here, so
10 ms of a 4-task shuffle's job). A :class:`Trash` moves each of them at once
into its own folder (a rename: nothing freed) and deletes them there in a
thread of its own while the jobs go on.
"""
from __future__ import annotations

import itertools
import os
import shutil
import threading
from collections.abc import Iterable


class Trash:
    """The trash folder of one work folder (``<work_dir>/trash``), emptied by a thread of its own.

    :meth:`throw` returns once what it was given is gone from where it was;
    :meth:`close` ends the thread (what it had not deleted yet goes with the
    work folder, which its owner removes).
    """

    def __init__(self, work_dir: str) -> None:
        self.folder = os.path.join(work_dir, "trash")
        self._names = itertools.count()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def throw(self, paths: Iterable[str]) -> None:
        """Move each of ``paths`` (files or folders in the work folder; one that is gone is skipped) into
        the trash, to be deleted there. One that cannot be moved is deleted in place, now."""
        moved = False
        for path in paths:
            try:
                os.makedirs(self.folder, exist_ok=True)
                os.rename(path, os.path.join(self.folder, f"{os.getpid()}-{next(self._names)}"))
                moved = True
            except FileNotFoundError:
                continue
            except OSError:
                _delete(path)
        if moved:
            with self._lock:
                if self._closed:
                    return
                if self._thread is None:
                    self._thread = threading.Thread(target=self._empty, name="gopark-trash", daemon=True)
                    self._thread.start()
            self._wake.set()

    def _empty(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                names = os.listdir(self.folder)
            except OSError:
                names = []
            for name in names:
                if self._closed:
                    return
                _delete(os.path.join(self.folder, name))
            if self._closed:
                return

    def close(self) -> None:
        """End the thread, at once if it is deleting nothing, else after the file or folder it is deleting;
        safe to call twice."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()


def _delete(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
