"""Text input split on line borders, and atomic text output.

A split is plain data (it travels in a task):

- ``{"kind": "file", "path", "start", "end"}``: bytes ``[start, end)`` of a local
  file; a line belongs to the split in which it starts, so every line is read
  exactly once whatever the split borders cut;
- ``{"kind": "gz"|"bz2", "path"}``: a whole compressed file;
- ``{"kind": "mfs", ...}``: a MooseFS chunk, planned and read by ``gopark.io.moosefs``.

Lines are ``str`` (UTF-8, undecodable bytes replaced), without ``\\n`` or ``\\r\\n``.
"""
from __future__ import annotations

import bz2
import contextlib
import glob
import gzip
import inspect
import io
import itertools
import logging
import os
import posixpath
import re
import shutil
import stat
import time
import urllib.parse
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from gopark import serialize
from gopark.errors import InputNotFound, InputUnavailable, OutputExists, OutputNotWritable
from gopark.partitioner import partition_count

log = logging.getLogger("gopark.io")

DEFAULT_SPLIT_SIZE = 64 << 20     # the largest split textFile makes of a plain file by default
MIN_SPLIT_SIZE = 16 << 20         # ... and the smallest it makes to have TASKS_PER_SLOT of them
TASKS_PER_SLOT = 6                # splits per unit of parallelism, when the data is large enough
_BLOCK = 1 << 20


def local_path(path: str) -> str:
    """``path`` with ``~`` expanded; a ``file:`` URL (``file:///tmp/x``, ``file://localhost/tmp/x``,
    ``file:/tmp/x``, as Spark takes them) as the path it names."""
    if path.startswith("file:"):
        rest = path[len("file:"):]
        if rest.startswith("//"):
            host, _, rest = rest[2:].partition("/")
            if host not in ("", "localhost"):
                raise InputNotFound(f"{path!r} names a file on host {host!r}: file: URLs name files of this host")
            rest = "/" + rest
        path = urllib.parse.unquote(rest)
    return os.path.expanduser(path)


def _is_moosefs(path: str) -> bool:
    """``mfs://`` URLs and paths under a mounted MooseFS."""
    if path.startswith("mfs://"):
        return True
    from gopark.io import moosefs
    return moosefs.is_mfs_path(path)


def _plan_moosefs(paths: list[str], split_size: int | None, num_splits: int | None) -> list[dict]:
    """The MooseFS splits of ``paths``, planned together, with the client's errors as gopark's input errors
    (one line each).

    Splits never span chunks; ``numSplits`` asks for smaller ones when the
    chunks give fewer (see :func:`_cut_into_shares`).
    """
    from gopark.io import moosefs
    if split_size is not None and split_size < _SMALL_SPLIT:    # as local files': by the bytes asked for, first
        lengths = []
        for path in paths:
            with _moosefs_errors("textFile", path):
                lengths += moosefs.file_lengths(path)
        _refuse_tiny_splits(split_size, lengths)
    splits = []
    for path in paths:
        with _moosefs_errors("textFile", path):
            splits += moosefs.plan_splits(path, split_size)
    if num_splits and not split_size and len(splits) < num_splits:
        splits = _cut_into_shares(splits, num_splits)
    return splits


def _cut_into_shares(splits: list[dict], num_splits: int) -> list[dict]:
    """numSplits of MooseFS files, cut as local files are: each chunk's split (of a file; a split never spans
    chunks, it keeps its chunk's hosts) its share of ``num_splits`` (rounded up), as equal as bytes allow
    (exactly ``num_splits`` of a file within one chunk); compressed and empty splits stay whole."""
    total = sum(s["end"] - s["start"] for s in splits if "compression" not in s)
    cut: list[dict] = []
    for split in splits:
        size = split["end"] - split["start"]
        if "compression" in split or not size:
            cut.append(split)
            continue
        pieces = min(size, -(-num_splits * size // total))
        starts = [split["start"] + i * size // pieces for i in range(pieces)]
        cut += [{**split, "start": a, "end": b} for a, b in zip(starts, starts[1:] + [split["end"]])]
    return cut


@contextlib.contextmanager
def _moosefs_errors(what: str, path: str) -> Iterator[None]:
    """The MooseFS client's errors finding ``path``'s files as gopark's input errors (one line each)."""
    try:
        yield
    except FileNotFoundError as exc:
        raise InputNotFound(f"{what}: {exc}") from None
    except OSError as exc:
        raise InputUnavailable(f"{what} {path}: {exc}") from None


def whole_files(path: str | list[str], what: str) -> list[str]:
    """The files wholeTextFiles/binaryFiles read (of each path, see :func:`input_paths`): absolute local
    paths, as :func:`list_files` finds them (a mounted MooseFS too), or, for an ``mfs://`` URL, the mfs://
    URLs of the files it names (found by the MooseFS master as textFile's)."""
    files = []
    for p in input_paths(path, what):
        if p.startswith("mfs://"):
            from gopark.io import moosefs
            with _moosefs_errors(what, p):
                found, client = moosefs.list_files(p)
            files += [client.url(mpath) for mpath in found]
        else:
            files += [os.path.abspath(f) for f in list_files(local_path(p), what)]
    return files


def visible(name: str, pattern: str | None = None) -> bool:
    """A folder's listing and a glob's matches skip hidden names, starting with '.' or '_' (as _SUCCESS),
    unless the glob ``pattern`` itself starts with that character (the MooseFS reader's rule too)."""
    if name[:1] in "._":
        return pattern is not None and pattern[:1] == name[:1]
    return True


@dataclass(frozen=True)
class Node:
    """What a folder walk needs to know of a name: a regular file, a folder (links followed), and who it is
    (``inode`` on device ``dev``: a folder met again through a link is not read twice)."""
    is_file: bool
    is_dir: bool
    inode: int
    dev: int = 0


class LocalTree:
    """Folder walking on a local disk (or a FUSE mount: the MooseFS reader's too)."""

    def describe(self, path: str) -> str:
        return path

    def stat(self, path: str) -> Node:
        st = os.stat(path)
        return Node(stat.S_ISREG(st.st_mode), stat.S_ISDIR(st.st_mode), st.st_ino, st.st_dev)

    def listdir(self, path: str) -> list[tuple[str, Node]]:
        out = []
        with os.scandir(path) as it:
            for e in it:
                try:
                    out.append((e.name, self.stat(e.path)))
                except FileNotFoundError:      # removed meanwhile; or a dangling link: skipped, and said
                    if e.is_symlink():
                        log.warning("skipped %s, a link to %r, which does not exist", e.path, os.readlink(e.path))
        return out


class Tree(Protocol):
    """A file system a folder is walked on: :class:`LocalTree`, or the MooseFS master's."""

    def describe(self, path: str) -> str: ...

    def listdir(self, path: str) -> list[tuple[str, Node]]: ...


def folder_files(tree: Tree, path: str, node: Node) -> list[tuple[str, Node]]:
    """The folder ``path``'s files, sorted, not hidden ones, then those of its subfolders (not hidden ones),
    each in turn, as DPark's textFile walks a folder (``out/day=*/part-*`` all read from ``out``; Spark's
    refuses a subfolder); a folder met again (through a link) is not read twice. The folder itself
    unreadable is an OSError; a subfolder that cannot be listed (``lost+found`` at a disk's root, or one
    removed meanwhile) is skipped with a warning, as DPark's ``os.walk`` skips it."""
    files: list[tuple[str, Node]] = []
    seen: set[tuple[int, int]] = set()
    stack = [(path, node)]
    while stack:
        folder, here = stack.pop()
        if (here.dev, here.inode) in seen:
            continue
        seen.add((here.dev, here.inode))
        try:
            listed = tree.listdir(folder)
        except OSError as exc:
            if folder == path:
                raise
            log.warning("skipped the folder %s, which cannot be listed: %s", tree.describe(folder),
                        exc.strerror or exc)
            continue
        entries = [(posixpath.join(folder, name), n) for name, n in sorted(listed) if visible(name)]
        files += [(p, n) for p, n in entries if n.is_file]
        stack += reversed([(p, n) for p, n in entries if n.is_dir])
    return files


def _folder_files(path: str, what: str = "textFile") -> list[str]:
    """A local folder's files (see :func:`folder_files`); InputUnavailable if it cannot be listed."""
    tree = LocalTree()
    try:
        return [p for p, _ in folder_files(tree, path, tree.stat(path))]
    except OSError as exc:            # no permission to read it
        raise InputUnavailable(f"{what}: cannot list the folder {path!r}: {exc.strerror or exc}") from None


def _readable(files: list[str], what: str = "textFile") -> list[str]:
    """``files``, each one this process may read, each named in UTF-8 (else InputUnavailable now, not a failed
    task later: a path is a str, and gopark's strs are Unicode)."""
    for f in files:
        try:
            f.encode("utf-8")
        except UnicodeEncodeError:
            raise InputUnavailable(f"{what}: the file name {os.fsencode(f)!r} is not UTF-8: rename it") from None
        if not os.access(f, os.R_OK):
            raise InputUnavailable(f"{what}: {f!r} cannot be read: permission denied")
    return files


def list_files(path: str, what: str = "textFile") -> list[str]:
    """The files ``path`` names: itself, a folder's files, or the files and folders' files a glob matches
    (as Hadoop's input formats do: ``out/day=*`` reads every day's part files); a match that is hidden
    is skipped, unless the pattern's last part starts with the same character ('_*' names _SUCCESS).
    InputNotFound or InputUnavailable (saying ``what`` read it) if there is none, or one cannot be read."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):   # (a/b where a is a file: b does not exist either)
        mode = None
    except OSError as exc:            # a folder on its way that may not be searched, a loop of links...
        raise InputUnavailable(f"{what}: {path!r} cannot be read: {exc.strerror or exc}") from None
    if mode is not None and stat.S_ISDIR(mode):
        return _readable(_folder_files(path, what), what)
    if mode is not None and stat.S_ISREG(mode):
        return _readable([path], what)
    if mode is not None:
        raise InputUnavailable(f"{what}: {path!r} is neither a file nor a folder")
    if glob.has_magic(path):
        last = os.path.basename(path.rstrip(os.sep))
        files = []
        for match in sorted(glob.glob(path)):
            if not visible(os.path.basename(match.rstrip(os.sep)), last):
                continue
            files += _folder_files(match, what) if os.path.isdir(match) else [match] if os.path.isfile(match) else []
        if files:
            return _readable(files, what)
        raise InputNotFound(f"{what}: no file matches {path!r}")
    raise InputNotFound(f"{what}: {path!r} does not exist")


def plan_splits(path: str | list[str], split_size: int | None = None, num_splits: int | None = None,
                parallelism: int = 1) -> list[dict]:
    """The splits of a file, a folder (its files, not hidden ones) or a glob, or of several
    (:func:`input_paths`).

    By default splits are at most 64 MiB; there are at least
    ``TASKS_PER_SLOT`` per unit of ``parallelism`` while they stay 16 MiB or
    more (a worker that runs slower, on a busier core, then takes fewer of
    them instead of holding up the stage with its equal share); the number of
    splits of one file is a multiple of ``parallelism``; each file is cut
    into equal parts of about that size (no small remainder).
    """
    paths = input_paths(path)
    if split_size is not None and (isinstance(split_size, bool) or not isinstance(split_size, int) or split_size < 1):
        raise ValueError(f"textFile: splitSize must be a positive number of bytes, not {split_size!r}")
    partition_count(num_splits, "textFile: numSplits")
    paths = [local_path(p) for p in paths]
    if all(_is_moosefs(p) for p in paths):      # by their chunks, planned together as local paths are
        return _plan_moosefs(paths, split_size, num_splits)
    if any(_is_moosefs(p) for p in paths):      # a mix: each path planned alone
        return [split for p in paths for split in (_plan_moosefs([p], split_size, num_splits) if _is_moosefs(p)
                                                   else _plan_local([p], split_size, num_splits, parallelism))]
    return _plan_local(paths, split_size, num_splits, parallelism)


def _plan_local(paths: list[str], split_size: int | None, num_splits: int | None, parallelism: int) -> list[dict]:
    """:func:`plan_splits` of local paths, their files planned together."""
    files = [f for p in paths for f in list_files(p)]
    plain = [(f, os.path.getsize(f)) for f in files if not f.endswith((".gz", ".bz2"))]
    equal = split_size is None and not num_splits      # the default: each file in equal parts
    # numSplits=n: n splits of one file, at least n of several (each its share, rounded up)
    shares = split_size is None and bool(num_splits)
    total = sum(size for _, size in plain)
    if equal:
        split_size = max(1, -(-total // _default_count(total, parallelism)))
    elif split_size is not None and split_size < _SMALL_SPLIT:
        _refuse_tiny_splits(split_size, [size for _, size in plain])
    splits: list[dict] = []
    for f in files:
        if f.endswith(".gz") or f.endswith(".bz2"):
            splits.append({"kind": "gz" if f.endswith(".gz") else "bz2", "path": os.path.abspath(f)})
            continue
        size = os.path.getsize(f)
        if not size:    # one empty split, as Hadoop's (so Spark's): its partition is there, empty
            splits.append({"kind": "file", "path": os.path.abspath(f), "start": 0, "end": 0})
            continue
        if shares:      # numSplits: the file's share of them (rounded up), as equal as bytes allow
            pieces = min(size, -(-num_splits * size // total))     # type: ignore[operator]
            starts = [i * size // pieces for i in range(pieces)]
        else:           # equal parts of about split_size: a remainder under a quarter of it goes to the others
            step = -(-size // max(1, int(size / split_size + 0.25))) if equal else split_size
            starts = list(range(0, size, step))
        for start, end in zip(starts, starts[1:] + [size]):
            splits.append({"kind": "file", "path": os.path.abspath(f), "start": start, "end": end})
    return splits


_SMALL_SPLIT = 64 << 10      # bytes: a splitSize under this...
_MANY_SPLITS = 10_000        # ... that cuts the input into more splits than this is a mistake
_COUNT_LIKE = 64             # bytes: a splitSize under this, as a count of partitions would be, ...
_SOME_SPLITS = 1_000         # ... that cuts the input into more splits than this is a mistake too


def _refuse_tiny_splits(split_size: int, sizes: list[int]) -> None:
    """A tiny ``splitSize`` that makes a great many splits of files of ``sizes`` (plain ones: a compressed
    file is one split) is a number of partitions given as Spark's second argument (``textFile(path, 3)``):
    one clear error, before the driver plans (and holds) them all."""
    count = sum(-(-size // split_size) for size in sizes)
    if count > _MANY_SPLITS or (split_size < _COUNT_LIKE and count > _SOME_SPLITS):
        raise ValueError(f"textFile: splitSize={split_size} (bytes, DPark's) cuts the input into {count:,} splits; "
                         f"for {split_size} partitions give numSplits={split_size} (Spark's minPartitions)")


_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def refuse_urls(path: str, what: str, output: bool = False) -> None:
    """A URL gopark does not read (``hdfs://``, ``s3://``...; when ``output``, ``mfs://`` too: MooseFS is
    written through its mount) is one clear error, not a local folder named ``hdfs:``."""
    url = _URL.match(path)
    if url is None or url.group(1) == "file" or (url.group(1) == "mfs" and not output):
        return
    if output:
        hint = " (MooseFS: write under its mount point)" if url.group(1) == "mfs" else ""
        raise OutputNotWritable(f"{what}: cannot write to {path!r}: gopark writes local paths, not "
                                f"{url.group(1)}:// URLs{hint}")
    raise InputNotFound(f"{what}: cannot read {path!r}: gopark reads local paths, paths under a mounted MooseFS "
                        f"and mfs:// URLs, not {url.group(1)}:// URLs")


def path_string(path: Any) -> Any:
    """A path-like object (``pathlib.Path``) as its string; anything else as it is (to be checked)."""
    return os.fspath(path) if isinstance(path, os.PathLike) else path


def output_folder(path: Any, what: str) -> str:
    """The folder ``what`` (saveAsTextFile, setCheckpointDir, checkpoint) is given to write under, as a
    string: TypeError for what is not a path, OutputNotWritable for a URL (see :func:`refuse_urls`)."""
    path = path_string(path)
    if not isinstance(path, str) or not path:
        raise TypeError(f"{what} takes a folder path, not {path!r:.100}")
    refuse_urls(path, what, output=True)
    return path


def input_paths(path: str | list[str] | tuple[str, ...], what: str = "textFile") -> list[str]:
    """The paths textFile reads: ``path``, or each of a list (DPark's), or of a comma-separated string
    (Spark's ``"a.txt,b.txt"``): split so when no file, folder or glob match has the whole name
    (``mfs://`` ones: when every piece is an ``mfs://`` URL or an absolute path). Path-like objects are
    taken as their strings; URLs of other file systems are refused."""
    path = path_string(path)
    if isinstance(path, (list, tuple)):
        paths = [path_string(p) for p in path]
    elif isinstance(path, str) and "," in path:
        pieces = [p for p in path.split(",") if p]
        if path.startswith("mfs://"):       # the master is not asked: every piece must be a URL or a path
            split = all(p.startswith(("mfs://", "/", "file:")) for p in pieces)
        else:                               # no file, folder or glob match has the whole name
            local = local_path(path)
            split = not os.path.lexists(local) and not (glob.has_magic(local) and glob.glob(local))
        paths = pieces if split else [path]
    else:
        paths = [path]
    if not paths or any(not isinstance(p, str) or not p for p in paths):
        raise TypeError(f"{what} takes a path string (or a list of them), not {path!r:.200}")
    for p in paths:
        refuse_urls(p, what)
    return paths


def glob_root(path: str) -> str:
    """The folder a glob looks in (its part before the first pattern); a plain path itself."""
    parts = path.split(os.sep)
    magic = next((i for i, part in enumerate(parts) if glob.has_magic(part)), None)
    return path if magic is None else os.sep.join(parts[:magic]) or os.sep


def _default_count(total: int, parallelism: int) -> int:
    """How many splits ``total`` bytes make by default (see :func:`plan_splits`)."""
    at_most = -(-max(total, 1) // DEFAULT_SPLIT_SIZE)                            # none over 64 MiB
    balance = min(TASKS_PER_SLOT * parallelism, total // MIN_SPLIT_SIZE) // parallelism * parallelism
    n = max(at_most, balance, 1)                                                 # none under 16 MiB for balance
    return -(-n // parallelism) * parallelism


def read_split(split: dict) -> Iterator[str]:
    """The lines of one split.

    An error reading it (a corrupt ``.gz``, a file removed since ``textFile``)
    is raised as it is, marked with the path (``exc.gopark_input``, and a note),
    so the task's failure names the input rather than a function of the app.
    The lines are handed out by C (``chain``) from each block's list of them: no
    Python frame is resumed per line. The iterator also has the blocks as
    texts (see :class:`Lines`).
    """
    texts = _texts(split)
    lines = Lines.from_iterable(map(lines_of, texts))
    lines.texts = texts
    return lines


class Lines(itertools.chain):
    """The lines of a split (an iterator), and ``texts``: the same lines as texts, each the lines of a
    block joined by ``"\\n"``, for a consumer that takes the split whole and would split the lines on
    whitespace anyway (their ends are whitespace too). Taken from the start only (see :func:`texts_of`)."""

    texts: Iterator[str]


def texts_of(records: Iterable[Any]) -> Iterator[str] | None:
    """The texts of ``records`` (see :class:`Lines`) if they are a split's lines of which none was taken."""
    texts = getattr(records, "texts", None) if type(records) is Lines else None
    if texts is None or inspect.getgeneratorstate(texts) != inspect.GEN_CREATED:
        return None
    return texts


def lines_of(text: str) -> list[str]:
    """The lines of a block's text (which ends just before a line end): split at ``\\n``, a ``\\r``
    before it dropped."""
    lines = text.split("\n")
    if "\r" in text:
        lines = [ln.removesuffix("\r") for ln in lines]
    return lines


def _texts(split: dict) -> Iterator[str]:
    """The lines of one split as texts, a block at a time; a read error named (see :func:`read_split`)."""
    try:
        yield from _read_split(split)
    except _READ_ERRORS as exc:
        _name_input(exc, split.get("path") or split.get("kind"), "textFile")
        raise


_READ_ERRORS = (OSError, EOFError, zlib.error)     # an input that cannot be read (gone, corrupt .gz...)


def _name_input(exc: BaseException, where: str, what: str) -> None:
    """Mark ``exc`` with the input it came from (``exc.gopark_input``, and a note): the task's failure names
    the input rather than a function of the app."""
    if getattr(exc, "gopark_input", None) is None:
        exc.gopark_input = where            # type: ignore[attr-defined]
        exc.add_note(f"while reading the {what} input {where}")


def _read_split(split: dict) -> Iterator[str]:
    kind = split["kind"]
    if kind == "file":
        with open(split["path"], "rb") as f:
            yield from read_blocks(f, split["start"], split["end"])
    elif kind in _OPENERS:
        with _OPENERS[kind](split["path"], "rb") as f:
            yield from read_blocks(f, 0, None)
    elif kind == "mfs":
        from gopark.io import moosefs
        yield from moosefs.read_split_texts(split)
    else:
        raise ValueError(f"unknown split kind {kind!r}")


_OPENERS = {"gz": gzip.open, "bz2": bz2.open}     # a compressed file's split kind (its extension): its reader


def read_whole(path: str, decompress: bool, what: str) -> bytes:
    """A file's bytes (a ``.gz`` or ``.bz2`` one decompressed, with ``decompress``), from a local path or
    an ``mfs://`` URL (read from its chunkservers); an error reading it names it (see :func:`read_split`)."""
    kind = path.rsplit(".", 1)[-1] if decompress else ""
    try:
        if path.startswith("mfs://"):
            from gopark.io import moosefs
            data = moosefs.open_file(path).read()
            if kind not in _OPENERS:
                return data
            source: Any = io.BytesIO(data)      # decompressed as a local file is (zero padding and all)
        else:
            source = path
        with _OPENERS.get(kind, open)(source, "rb") as f:
            return f.read()
    except _READ_ERRORS as exc:
        _name_input(exc, path, what)
        raise


def read_blocks(f: BinaryIO, start: int, end: int | None) -> Iterator[str]:
    """Lines of a seekable (or, with start 0, any) binary stream that start in ``[start, end)``, as texts
    (one per block read; see :class:`Lines`); UTF-8, undecodable bytes replaced."""
    if start > 0:
        f.seek(start - 1)
        if f.read(1) != b"\n":       # we are inside a line that belongs to the previous split
            start += len(f.readline())
    pos, carry = start, b""
    while end is None or pos < end:
        want = _BLOCK if end is None else min(_BLOCK, end - pos)
        data = f.read(want)
        if not data:
            break
        pos += len(data)
        buf = carry + data if carry else data
        cut = buf.rfind(b"\n")
        if cut < 0:
            carry = buf
            continue
        carry = buf[cut + 1:]
        yield buf[:cut].decode("utf-8", "replace")
    if carry:
        if end is not None and pos >= end:   # the last line started before end: finish it
            carry += f.readline()
        if carry.endswith(b"\n"):
            carry = carry[:-1]
        yield carry.decode("utf-8", "replace")


# --- output --------------------------------------------------------------------

_LOCK_GRACE = 0.5   # seconds a held output folder's lock is waited for before the save is refused


class OutputFolder:
    """Driver side of saveAsTextFile: the folder the job writes into, held by it while it writes.

    ``with OutputFolder(path, overwrite) as out:`` refuses a non-empty folder
    unless ``overwrite`` (then empties it), makes ``_temporary``, and holds an
    exclusive lock (``flock``) on the folder until the block ends, so that a
    second job writing into it at the same time (an overlapping run of the same
    app) is refused at once (OutputExists) instead of each removing the other's
    part files. At the block's end: ``_SUCCESS`` (see :meth:`finish`), or after
    an error, the part files written removed (:meth:`abort`), as Spark's
    committer leaves a failed job's folder.
    """

    def __init__(self, path: str, overwrite: bool) -> None:
        self.path = path = os.path.abspath(local_path(path))
        self._fd: int | None = None
        try:
            if os.path.exists(path) and not os.path.isdir(path):
                raise OutputExists(f"saveAsTextFile: {path!r} exists and is not a folder")
            os.makedirs(path, exist_ok=True)
            self._hold()
            names = os.listdir(path)
            if names and not overwrite:
                raise OutputExists(f"saveAsTextFile: {path!r} is not empty (pass overwrite=True to replace it)")
            for name in names:      # emptied, not removed: the lock is the folder's
                _remove(os.path.join(path, name))
            os.mkdir(os.path.join(path, "_temporary"))
        except BaseException as exc:
            self._release()
            if isinstance(exc, OSError) and not isinstance(exc, OutputExists):  # under a file, no permission...
                where = f" ({exc.filename!r})" if exc.filename and exc.filename != path else ""
                raise OutputNotWritable(f"saveAsTextFile: cannot write into {path!r}: "
                                        f"{exc.strerror or exc}{where}") from None
            raise

    def _hold(self) -> None:
        """The folder's lock, or OutputExists if another job holds it (none where the file system has no locks).

        A lock held for less than :data:`_LOCK_GRACE` seconds is waited for: a process this one starts (a
        replacement worker, a ``pipe`` command) holds a copy of every descriptor, and so the lock of a save
        that has just ended, from its fork until its exec closes them."""
        import fcntl
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        deadline = time.monotonic() + _LOCK_GRACE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.005)
                    continue
                os.close(fd)
                raise OutputExists(f"saveAsTextFile: another job is writing into {self.path!r} now") from None
            except OSError:         # a file system with no locks (ENOLCK, EOPNOTSUPP): as before there were any
                os.close(fd)
                return
            except BaseException:
                os.close(fd)
                raise
        self._fd = fd

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self.finish()
            else:
                self.abort()
        finally:
            self._release()

    def abort(self) -> None:
        """After the job failed: remove the part files written and ``_temporary`` (the folder was empty, and
        no other job of gopark's wrote into it since: everything in it is this job's)."""
        shutil.rmtree(os.path.join(self.path, "_temporary"), ignore_errors=True)
        try:
            names = os.listdir(self.path)
        except OSError:          # removed meanwhile (by the app): nothing of this job's left to remove
            return
        for name in names:
            if name.startswith("part-"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.path, name))

    def finish(self) -> None:
        """After every partition is written: ``_SUCCESS`` last."""
        shutil.rmtree(os.path.join(self.path, "_temporary"), ignore_errors=True)
        with open(os.path.join(self.path, "_SUCCESS"), "wb"):
            pass


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _line(record: Any) -> bytes:
    if type(record) is bytes:
        return record
    try:
        return (record if type(record) is str else str(record)).encode("utf-8")
    except UnicodeEncodeError as exc:      # a lone surrogate: not UTF-8 text, not data
        raise serialize.not_unicode(exc, "saveAsTextFile") from None


def write_partition(path: str, split: int, attempt: int, records: Iterable[Any], compress: bool = False) -> str:
    """Write ``part-NNNNN`` (``part-NNNNN.gz``, gzipped, with ``compress``) atomically: to a temporary
    name, renamed when whole. Returns the name."""
    name = f"part-{split:05d}" + (".gz" if compress else "")
    tmp = os.path.join(path, "_temporary", f"{name}.attempt-{attempt}-{os.getpid()}")
    try:
        with open(tmp, "wb") as raw, (gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0)
                                      if compress else contextlib.nullcontext(raw)) as f:
            batch: list[bytes] = []
            for record in records:
                batch.append(_line(record))
                if len(batch) >= 4096:
                    f.write(b"\n".join(batch) + b"\n")
                    batch.clear()
            if batch:
                f.write(b"\n".join(batch) + b"\n")
        os.replace(tmp, os.path.join(path, name))
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and _raised_writing(exc):   # the output's error, not the records' source's:
            exc.gopark_action = "saveAsTextFile"                  # type: ignore[attr-defined]  # nobody's blamed
        raise
    return name


def _raised_writing(exc: BaseException) -> bool:
    """``exc`` was raised by :func:`write_partition`'s own file operations (or gzip's under them): every frame
    below write_partition's is gzip's (not the records' source: the app's function, which may use gzip)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code is not write_partition.__code__:
        tb = tb.tb_next
    if tb is None:
        return False
    tb = tb.tb_next
    while tb is not None:
        if tb.tb_frame.f_code.co_filename != gzip.__file__:
            return False
        tb = tb.tb_next
    return True
