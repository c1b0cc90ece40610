"""Checkpoints (``RDD.checkpoint``): an RDD's partitions saved as files, read back instead of its lineage.

The driver makes a folder per RDD under the checkpoint folder the app gave
(``<dir>/rdd-<id>-<8 hex>``, :func:`new_folder`, when checkpoint() is called); each task of the checkpoint
job writes its partition there as ``part-NNNNN`` (:func:`write_partition`: the
shuffle's chunk format, so records keep their types; atomically, so a retried
task leaves one whole file); the RDD then reads those files
(:func:`read_partition`). Every worker must see the folder at the same path: a
local folder in local and process mode, a shared file system (a mounted
MooseFS) in Mesos mode. The files stay when the app ends, as Spark's do.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator
from typing import Any

from gopark import serialize, shuffle
from gopark.errors import OutputNotWritable

_STEP = 4096        # records per chunk of a part file


def new_folder(base: str, rdd_id: int) -> str:
    """Driver: a new folder for RDD ``rdd_id``'s parts under ``base``; one clear error if it cannot be made."""
    folder = os.path.join(os.path.abspath(os.path.expanduser(base)), f"rdd-{rdd_id}-{os.urandom(4).hex()}")
    try:
        os.makedirs(folder)
    except OSError as exc:
        raise OutputNotWritable(f"checkpoint: cannot write into {base!r}: {exc.strerror or exc}") from None
    return folder


def never_saved(due: set[int], rdd_id: int, folder: str) -> None:
    """Driver: RDD ``rdd_id``, marked by checkpoint(), is gone unsaved: it is not due any more (``due``: its
    Context's ids of marked RDDs), and its ``folder`` goes, with the parts a failed save left in it (no
    RDD will read them)."""
    due.discard(rdd_id)
    shutil.rmtree(folder, ignore_errors=True)


def write_partition(folder: str, split: int, attempt: int, records: Iterable[Any]) -> str:
    """Write partition ``split`` to ``folder/part-NNNNN`` (through a temporary name); returns the path."""
    path = os.path.join(folder, f"part-{split:05d}")
    tmp = f"{path}.attempt-{attempt}-{os.getpid()}"
    try:
        shuffle.write_records(tmp, records, _STEP, serialize.Packer("a checkpointed record"))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def read_partition(path: str) -> Iterator[Any]:
    """The records of a part file."""
    return shuffle.read_records(path)
