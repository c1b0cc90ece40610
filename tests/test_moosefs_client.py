"""The MooseFS client (gopark.io.moosefs) against a real MooseFS 3.0 cluster.

One cluster for the module (tests/mfs_cluster.py: master + 3 chunkservers in a
private network namespace); files are written through a FUSE mount, read
through the client from inside the namespace, and checked against the bytes
written and against ``mfsfileinfo``.  Tests that stop or pause daemons restore
them before they end, and run after the tests that compare plans with
``mfsfileinfo``.
"""
from __future__ import annotations

import bz2
import contextlib
import dataclasses
import gzip
import hashlib
import itertools
import os
import random
import re
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from mfs_cluster import MfsCluster

from gopark.io import moosefs as mfs
from gopark.io.text import lines_of

MiB = 1 << 20
CHUNK = mfs.CHUNK_SIZE


# ---- data and the reference line splitter --------------------------------------------------
def make_text(size: int, seed: int, newline_at_end: bool = True) -> bytes:
    """``size`` bytes of numbered lines of random lengths (0..~260), some empty."""
    rnd = random.Random(seed)
    pool = bytes(rnd.choices(b"abcdefghijklmnopqrstuvwxyz ABC,.;0123456789", k=1 << 16))
    lengths = rnd.randbytes(size // 40 + 1000)
    parts, total, i = [], 0, 0
    while total < size:
        n = lengths[i % len(lengths)]
        if n < 8:
            n = 0                                            # some empty lines
        at = (i * 7919) % (len(pool) - 256)
        line = b"%d:" % i + pool[at:at + n] + b"\n" if n else b"\n"
        parts.append(line)
        total += len(line)
        i += 1
    data = b"".join(parts)[:size]
    if newline_at_end:
        data = data[:-1] + b"\n"
    return data


def decode_lines(data: bytes) -> list[str]:
    """The lines of ``data`` as the reader must give them."""
    if not data:
        return []
    if data.endswith(b"\n"):
        data = data[:-1]
    return [line.decode("utf-8", "replace").removesuffix("\r") for line in data.split(b"\n")]


def expected_split_lines(data: bytes, start: int, end: int) -> list[str]:
    """The lines that START in [start, end) (line starts: 0 and after every newline)."""
    def next_line_start(pos: int) -> int:
        if pos == 0:
            return 0
        nl = data.find(b"\n", pos - 1)
        return nl + 1 if nl >= 0 else len(data)
    first, stop = next_line_start(start), next_line_start(end)
    return decode_lines(data[first:stop]) if first < stop else []


def read_all(splits: list[dict]) -> list[str]:
    return [line for split in splits for line in mfs.read_split(split)]


def lines_digest(lines: Iterator[str]) -> tuple[int, str]:
    h, n = hashlib.sha256(), 0
    for line in lines:
        h.update(line.encode())
        h.update(b"\n")
        n += 1
    return n, h.hexdigest()


# ---- the cluster -------------------------------------------------------------------------------
@dataclasses.dataclass
class Env:
    cluster: MfsCluster
    mnt: Path
    files: dict[str, bytes]

    def url(self, rel: str) -> str:
        return f"{self.cluster.master_url}/{rel}"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("mfs")
    with MfsCluster(root / "cluster", ncs=3) as cluster:
        mnt = cluster.mount(root / "mnt")
        files: dict[str, bytes] = {}

        def put(rel: str, data: bytes) -> None:
            path = mnt / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            files[rel] = data

        (mnt / "g1").mkdir()
        (mnt / "g2").mkdir()
        cluster.set_goal(mnt / "g1", 1)
        cluster.set_goal(mnt / "g2", 2)
        put("sizes/empty.txt", b"")
        put("sizes/one.txt", b"x")
        exact = make_text(CHUNK, seed=1)                       # ends with "\n" at byte 64 MiB - 1
        put("sizes/exact64.txt", exact)
        put("sizes/plus1.txt", exact + b"z")                   # one line alone in chunk 1
        put("g2/big.txt", make_text(200 * MiB + 12345, seed=2, newline_at_end=False))
        put("g1/single.txt", make_text(3 * MiB, seed=3))
        put("small.txt", make_text(3 * MiB + 777, seed=4, newline_at_end=False))
        put("odd.txt", b"crlf line\r\n\xff\xfe bad utf8 \xc3\x28\r\n" + b"y" * (2 * MiB)
            + b"\n\n\nlast\r")
        put("dir/b.txt", b"b1\nb2\n")
        put("dir/a.txt", b"a1\na2")
        put("dir/_SUCCESS", b"")
        put("dir/.hidden", b"hidden\n")
        put("dir/sub/deep.txt", b"deep\n")
        put("dir/c.gz", gzip.compress(b"c1\nc2\n") + gzip.compress(b"c3\n"))
        put("logs/2024-01/part-0.txt", b"jan\n")
        put("logs/2024-02/part-0.txt", b"feb\n")
        put("logs/2023-12/part-0.txt", b"dec\n")
        gz_text = make_text(5 * MiB, seed=5)
        files["zip/text.source"] = gz_text
        put("zip/text.gz", gzip.compress(gz_text[:MiB], 1) + gzip.compress(gz_text[MiB:], 1))
        put("zip/text.bz2", bz2.compress(gz_text, 1))
        put("zip/broken.gz", gzip.compress(gz_text, 1)[:-5000])
        with cluster.inside():
            try:
                yield Env(cluster, mnt, files)
            finally:
                mfs.close_masters()


# ---- pure units ----------------------------------------------------------------------------------
def test_parse_mfs_url() -> None:
    assert mfs.parse_mfs_url("mfs://mfsmaster/data//logs/") == ("mfsmaster", 9421, "/data/logs")
    assert mfs.parse_mfs_url("mfs://10.1.2.3:9500/a/../b") == ("10.1.2.3", 9500, "/b")
    assert mfs.parse_mfs_url("mfs://m") == ("m", 9421, "/")
    for bad in ("hdfs://m/x", "mfs:///x", "mfs://m:0/x", "mfs://m:http/x", "mfs://:9421/x"):
        with pytest.raises(ValueError, match="MooseFS URL|bad port"):
            mfs.parse_mfs_url(bad)


def test_mount_table(tmp_path: Path) -> None:
    table = tmp_path / "mounts"
    table.write_text(
        "proc /proc proc rw 0 0\n"
        "mfs\\04310.77.0.1:9421 /mnt/mfs fuse rw,nosuid,allow_other 0 0\n"
        "mfsmaster:9500 /mnt/with\\040space fuse.mfs rw 0 0\n"
        "other#x:1 /mnt/other fuse rw 0 0\n"
        "mfs\\04310.0.0.9:9421 /mnt/mfs/inner fuse rw 0 0\n")
    assert mfs.mfs_mounts(str(table)) == [
        mfs.MfsMount("/mnt/mfs", "10.77.0.1", 9421),
        mfs.MfsMount("/mnt/with space", "mfsmaster", 9500),
        mfs.MfsMount("/mnt/mfs/inner", "10.0.0.9", 9421)]
    assert mfs.find_mount("/mnt/mfs/a/b.txt", str(table)).host == "10.77.0.1"
    assert mfs.find_mount("/mnt/mfs/inner/x", str(table)).host == "10.0.0.9"   # longest wins
    assert mfs.find_mount("/mnt/mfsx/a", str(table)) is None
    assert mfs.find_mount("mfs://10.77.0.1/a", str(table)) is None


def test_chunk_pieces() -> None:
    assert mfs._chunk_pieces(None) == [0, CHUNK]
    assert mfs._chunk_pieces(200 * MiB) == [0, CHUNK]
    assert mfs._chunk_pieces(16 * MiB) == [0, 16 * MiB, 32 * MiB, 48 * MiB, CHUNK]
    ten = mfs._chunk_pieces(10 * MiB)                 # rounded down to 7 parts of ~9.1 MiB
    assert len(ten) == 8 and all(b - a <= 10 * MiB for a, b in zip(ten, ten[1:], strict=False))
    assert all(p % mfs.BLOCK_SIZE == 0 for p in ten)
    assert len(mfs._chunk_pieces(1)) == 1025          # at most 1024 parts of 64 KiB
    with pytest.raises(ValueError, match="positive"):
        mfs._chunk_pieces(0)


@pytest.mark.parametrize("seed", range(6))
def test_line_splitter_exactly_once(seed: int) -> None:
    """The splitter alone: random data, random split borders, random block sizes."""
    rnd = random.Random(seed)
    data = bytes(rnd.choice(b"ab\n\n\r\xc3") for _ in range(rnd.randrange(1, 4000)))
    borders = sorted({0, len(data), *(rnd.randrange(len(data)) for _ in range(rnd.randrange(1, 30)))})
    got = []
    for start, end in zip(borders, borders[1:], strict=False):
        begin = max(start - 1, 0)
        blocks, pos = [], begin
        while pos < len(data):
            step = rnd.randrange(1, 300)
            blocks.append(data[pos:pos + step])
            pos += step
        lines = [ln for t in mfs._texts(iter(blocks), begin, start > 0, end) for ln in lines_of(t)]
        assert lines == expected_split_lines(data, start, end)
        got.extend(lines)
    assert got == decode_lines(data)


def test_verify_block() -> None:
    block = os.urandom(mfs.BLOCK_SIZE)
    crc = zlib.crc32(block)
    assert mfs.verify_block(block, crc)
    assert not mfs.verify_block(block, crc ^ 1)
    assert not mfs.verify_block(block[:-1] + bytes([block[-1] ^ 0x10]), crc)


def test_status_and_errors() -> None:
    assert mfs.status_text(19) == "19 (Wrong chunk version)"
    e = mfs.MfsError("chunk 0000000000000001: bad", 22)
    assert str(e) == "chunk 0000000000000001: bad" and e.status == 22 and isinstance(e, OSError)
    assert issubclass(mfs.MasterUnreachable, ConnectionError)
    assert issubclass(mfs.ChunkUnavailable, IOError)


# ---- planning ------------------------------------------------------------------------------------
def test_sizes(env: Env) -> None:
    empty = mfs.plan_splits(env.url("sizes/empty.txt"))     # one empty split, as Hadoop's
    assert [(s["path"], s["start"], s["end"], s["hosts"]) for s in empty] == [("/sizes/empty.txt", 0, 0, [])]
    assert read_all(empty) == []
    one = mfs.plan_splits(env.url("sizes/one.txt"))
    assert [(s["start"], s["end"]) for s in one] == [(0, 1)]
    assert one[0]["kind"] == "mfs" and one[0]["master"] == env.cluster.master_ip
    assert one[0]["port"] == 9421 and one[0]["path"] == "/sizes/one.txt"
    assert one[0]["inode"] == os.stat(env.mnt / "sizes/one.txt").st_ino
    assert read_all(one) == ["x"]

    exact = mfs.plan_splits(env.url("sizes/exact64.txt"))
    assert [(s["start"], s["end"]) for s in exact] == [(0, CHUNK)]
    assert read_all(exact) == decode_lines(env.files["sizes/exact64.txt"])

    plus1 = mfs.plan_splits(env.url("sizes/plus1.txt"))
    assert [(s["start"], s["end"]) for s in plus1] == [(0, CHUNK), (CHUNK, CHUNK + 1)]
    assert list(mfs.read_split(plus1[1])) == ["z"]
    assert read_all(plus1) == decode_lines(env.files["sizes/plus1.txt"])


@pytest.mark.parametrize("rel", ["g2/big.txt", "sizes/plus1.txt", "g1/single.txt"])
def test_plan_matches_mfsfileinfo(env: Env, rel: str) -> None:
    splits = mfs.plan_splits(env.url(rel))
    info = env.cluster.file_info(env.mnt / rel)
    assert len(splits) == len(info) == -(-len(env.files[rel]) // CHUNK)
    for split, chunk in zip(splits, info, strict=True):
        assert split["start"] == chunk["index"] * CHUNK
        assert split["hosts"] == sorted(c.split(":")[0] for c in chunk["copies"])
        assert len(split["hosts"]) == (1 if rel.startswith("g1/") else 2)


def test_big_file_every_line_once(env: Env) -> None:
    data = env.files["g2/big.txt"]
    want = lines_digest(iter(decode_lines(data)))
    splits = mfs.plan_splits(env.url("g2/big.txt"))
    assert len(splits) == 4
    assert lines_digest(line for s in splits for line in mfs.read_split(s)) == want
    # 16 MiB splits: 13 of them; the file's lines cross many of the borders
    small = mfs.plan_splits(env.url("g2/big.txt"), split_size=16 * MiB)
    assert len(small) == 13 and small[4]["start"] == CHUNK
    assert lines_digest(line for s in small for line in mfs.read_split(s)) == want


@pytest.mark.parametrize("split_size", [64 << 10, 100_000, 1 << 20, None])
def test_lines_across_split_borders(env: Env, split_size: int | None) -> None:
    for rel in ("small.txt", "odd.txt"):
        data = env.files[rel]
        splits = mfs.plan_splits(env.url(rel), split_size)
        assert splits[0]["start"] == 0 and splits[-1]["end"] == len(data)
        assert all(a["end"] == b["start"] for a, b in zip(splits, splits[1:], strict=False))
        for split in splits:
            assert list(mfs.read_split(split)) == expected_split_lines(data, split["start"], split["end"])
        assert read_all(splits) == decode_lines(data)
    odd = read_all(mfs.plan_splits(env.url("odd.txt"), 64 << 10))
    assert odd[:2] == ["crlf line", "\ufffd\ufffd bad utf8 \ufffd("]
    assert odd[2:] == ["y" * (2 * MiB), "", "", "last"]


def test_directory_and_glob(env: Env) -> None:
    names = [(s["path"], s.get("compression")) for s in mfs.plan_splits(env.url("dir"))]
    assert names == [("/dir/a.txt", None), ("/dir/b.txt", None), ("/dir/c.gz", "gz"), ("/dir/sub/deep.txt", None)]
    assert read_all(mfs.plan_splits(env.url("dir/"))) == ["a1", "a2", "b1", "b2", "c1", "c2", "c3", "deep"]
    assert [s["path"] for s in mfs.plan_splits(env.url("dir/*.txt"))] == ["/dir/a.txt", "/dir/b.txt"]
    assert [s["path"] for s in mfs.plan_splits(env.url("dir/_*"))] == ["/dir/_SUCCESS"]    # named: read (empty)
    assert [s["path"] for s in mfs.plan_splits(env.url("dir/.h*"))] == ["/dir/.hidden"]
    assert [s["path"] for s in mfs.plan_splits(env.url("dir/s*"))] == ["/dir/sub/deep.txt"]
    logs = mfs.plan_splits(env.url("logs/2024-*/part-*"))
    assert [s["path"] for s in logs] == ["/logs/2024-01/part-0.txt", "/logs/2024-02/part-0.txt"]
    assert read_all(logs) == ["jan", "feb"]
    with pytest.raises(FileNotFoundError, match=r"no file matches .*nothing-\*"):
        mfs.plan_splits(env.url("logs/nothing-*"))


def test_compressed_files_are_one_split(env: Env) -> None:
    text = env.files["zip/text.source"]
    for rel, kind in (("zip/text.gz", "gz"), ("zip/text.bz2", "bz2")):
        splits = mfs.plan_splits(env.url(rel), split_size=64 << 10)
        first_chunk = env.cluster.file_info(env.mnt / rel)[0]
        assert splits == [{"kind": "mfs", "master": env.cluster.master_ip, "port": 9421,
                           "path": "/" + rel, "inode": os.stat(env.mnt / rel).st_ino,
                           "compression": kind, "start": 0, "end": len(env.files[rel]),
                           "hosts": sorted(c.split(":")[0] for c in first_chunk["copies"])}]
        # a small block size: many decompression rounds, output bounded per round
        lines = list(mfs.read_split(splits[0], block_size=64 << 10))
        assert lines == decode_lines(text)
    broken = mfs.plan_splits(env.url("zip/broken.gz"))
    with pytest.raises(mfs.MfsError, match="truncated gzip"):
        list(mfs.read_split(broken[0]))


def test_mounted_paths_same_as_urls(env: Env) -> None:
    for rel in ("g2/big.txt", "dir", "dir/*.txt", "logs/2024-*/part-*", "sizes"):
        assert mfs.plan_splits(str(env.mnt / rel)) == mfs.plan_splits(env.url(rel)), rel
    assert mfs.is_mfs_path(str(env.mnt / "dir/a.txt"))
    assert mfs.is_mfs_path(env.url("x"))
    assert not mfs.is_mfs_path(str(env.mnt.parent / "cluster"))
    rel = "small.txt"
    via_mount = read_all(mfs.plan_splits(str(env.mnt / rel), 1 << 20))
    assert via_mount == read_all(mfs.plan_splits(env.url(rel), 1 << 20)) == decode_lines(env.files[rel])


def test_subfolder_mount_gives_absolute_paths(env: Env, tmp_path: Path) -> None:
    sub = env.cluster.mount(tmp_path / "sub", subfolder="/logs")
    try:
        splits = mfs.plan_splits(str(sub / "2024-*/part-0.txt"))
        assert [s["path"] for s in splits] == ["/logs/2024-01/part-0.txt", "/logs/2024-02/part-0.txt"]
        assert read_all(splits) == ["jan", "feb"]
    finally:
        env.cluster.umount(sub)


def test_open_file_reads_bytes(env: Env) -> None:
    data = env.files["sizes/plus1.txt"]
    f = mfs.open_file(env.url("sizes/plus1.txt"))
    assert f.length == len(data)
    assert f.read(CHUNK - 100, CHUNK + 1) == data[CHUNK - 100:]
    assert f.read(12345, 12345 + 3 * mfs.BLOCK_SIZE + 7) == data[12345:12345 + 3 * mfs.BLOCK_SIZE + 7]
    with pytest.raises(mfs.MfsError, match="cannot read up to"):
        f.read(0, len(data) + 1)
    assert mfs.open_file(str(env.mnt / "sizes/one.txt")).read() == b"x"


def test_forked_child_gets_its_own_session(env: Env) -> None:
    """Workers are forked: a child must not share its parent's master connection."""
    split = mfs.plan_splits(env.url("small.txt"), 1 << 20)[1]
    want = expected_split_lines(env.files["small.txt"], split["start"], split["end"])
    parent = mfs.get_master(split["master"], split["port"])
    assert list(mfs.read_split(split)) == want
    session, reconnects = parent.sessionid, parent.reconnects
    pid = os.fork()
    if pid == 0:                                          # the child: report through the exit code
        code = 1
        try:
            child = mfs.get_master(split["master"], split["port"])
            ok = list(mfs.read_split(split)) == want
            code = 0 if ok and child is not parent and child.sessionid not in (0, session) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert list(mfs.read_split(split)) == want
    assert (parent.sessionid, parent.reconnects) == (session, reconnects)   # undisturbed


# ---- errors --------------------------------------------------------------------------------------
def test_missing_file(env: Env) -> None:
    url = env.url("no/such/file.txt")
    with pytest.raises(FileNotFoundError, match=re.escape(url)):
        mfs.plan_splits(url)
    with pytest.raises(FileNotFoundError, match="no/such/file.txt"):
        mfs.plan_splits(str(env.mnt / "no/such/file.txt"))
    good = mfs.plan_splits(env.url("sizes/one.txt"))[0]
    gone = {**good, "inode": 999_999, "path": "/was/here.txt"}
    with pytest.raises(FileNotFoundError, match="/was/here.txt"):
        list(mfs.read_split(gone))


def test_master_unreachable(env: Env) -> None:
    client = mfs.MasterClient("10.77.0.99", 9421)          # inside the namespace, nothing listens
    with pytest.raises(mfs.MasterUnreachable) as info:
        client.getattr(1)
    message = str(info.value)
    assert "10.77.0.99:9421" in message and "\n" not in message
    with pytest.raises(mfs.MasterUnreachable, match=r"10\.77\.0\.99:9499"):
        mfs.plan_splits("mfs://10.77.0.99:9499/x.txt")


class FakeChunkserver:
    """Speaks just enough of the chunkserver protocol to misbehave on purpose."""

    def __init__(self, env: Env, mode: str, ip: str = "10.77.0.200") -> None:
        self.mode = mode
        self.address = (ip, 9422)
        with env.cluster.inside():
            self.listener = socket.create_server(self.address)
        self.listener.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn, contextlib.suppress(OSError):     # the client hangs up on bad data
                conn.settimeout(10)
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        cmd, length = struct.unpack(">II", conn.recv(8, socket.MSG_WAITALL))
        _, chunkid, _, offset, size = struct.unpack(">BQIII", conn.recv(length, socket.MSG_WAITALL))
        if self.mode == "status":
            conn.sendall(struct.pack(">IIQB", 201, 9, chunkid, 19))
            return
        if self.mode == "hang":
            self.stop.wait(30)
            return
        sent = 0
        while sent < size:
            pos = offset + sent
            n = min(size - sent, mfs.BLOCK_SIZE - pos % mfs.BLOCK_SIZE)
            block = b"\0" * n
            if self.mode == "short":                    # one byte less, then "OK"
                block = block[:-1]
                conn.sendall(struct.pack(">IIQHHII", 202, 19 + n, chunkid, pos // mfs.BLOCK_SIZE,
                                         pos % mfs.BLOCK_SIZE, n - 1, zlib.crc32(block)) + block)
                break
            crc = zlib.crc32(block) ^ (1 if self.mode == "crc" else 0)
            conn.sendall(struct.pack(">IIQHHII", 202, 20 + n, chunkid, pos // mfs.BLOCK_SIZE,
                                     pos % mfs.BLOCK_SIZE, n, crc) + block)
            sent += n
        conn.sendall(struct.pack(">IIQB", 201, 9, chunkid, 0))


class SteeredFile(mfs.MfsFile):
    """An MfsFile whose chunk locations list ``extra`` servers first (or only)."""

    def __init__(self, f: mfs.MfsFile, extra: list[tuple[str, int]], only: bool = False) -> None:
        super().__init__(f.client, f.inode, f.path, timeout=1.5)
        self.extra, self.only = tuple(extra), only

    def location(self, index: int, refresh: bool = False) -> mfs.ChunkLocation:
        loc = super().location(index, refresh)
        servers = self.extra if self.only else self.extra + loc.servers
        return dataclasses.replace(loc, servers=servers)


@pytest.mark.parametrize(("mode", "reason"), [("crc", "CRC mismatch"), ("status", r"status 19 \(Wrong"),
                                               ("short", "short read"), ("hang", "timed out")])
def test_bad_replica_is_skipped(env: Env, caplog: pytest.LogCaptureFixture, mode: str,
                                reason: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = env.files["g2/big.txt"]
    fake = FakeChunkserver(env, mode)
    try:
        f = mfs.open_file(env.url("g2/big.txt"))
        monkeypatch.setattr(f.client, "failed_at", {})   # the fake failed the last case: it would be tried last
        caplog.set_level("WARNING", logger="gopark.moosefs")
        got = SteeredFile(f, [fake.address]).read(CHUNK - 5000, CHUNK + 3 * MiB)
        assert got == data[CHUNK - 5000:CHUNK + 3 * MiB]
        assert any("10.77.0.200:9422" in r.getMessage() and r.levelname == "WARNING"
                   for r in caplog.records)
        with pytest.raises(mfs.ChunkUnavailable) as info:
            SteeredFile(f, [fake.address], only=True).read(0, MiB)
        chunkid = env.cluster.file_info(env.mnt / "g2/big.txt")[0]["chunkid"]
        assert f"{chunkid:016X}" in str(info.value)
        assert "10.77.0.200:9422" in str(info.value)
        assert info.match(reason)
    finally:
        fake.close()


# ---- failures of the cluster (these change it; they run last) --------------------------------------
def _connected_chunkservers() -> set[str]:
    """ip:port of the chunkservers this process has an open TCP connection to
    (read from this thread's network namespace)."""
    ours = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                ours.add(target[8:-1])
    found = set()
    with open("/proc/thread-self/net/tcp", encoding="ascii") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            ip_hex, port_hex = remote.split(":")
            if state == "01" and inode in ours and int(port_hex, 16) == 9422:
                found.add(f"{socket.inet_ntoa(struct.pack('<I', int(ip_hex, 16)))}:9422")
    return found


def test_chunkserver_killed_mid_read(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    data = env.files["g2/big.txt"]
    split = mfs.plan_splits(env.url("g2/big.txt"))[1]               # chunk 1: 64..128 MiB
    want = expected_split_lines(data, split["start"], split["end"])
    caplog.set_level("WARNING", logger="gopark.moosefs")
    lines = mfs.read_split(split, block_size=1 << 20)
    got = [next(lines) for _ in range(1000)]
    serving = _connected_chunkservers()
    assert len(serving) == 1 and serving <= {f"{h}:9422" for h in split["hosts"]}
    victim = env.cluster.chunkserver_index(serving.pop())
    env.cluster.stop_chunkserver(victim, kill=True)
    try:
        got.extend(lines)
        assert got == want
        assert any("failed" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    finally:
        env.cluster.start_chunkserver(victim)


def test_every_replica_unreachable(env: Env) -> None:
    split = mfs.plan_splits(env.url("g2/big.txt"))[0]
    chunkid = env.cluster.file_info(env.mnt / "g2/big.txt")[0]["chunkid"]
    holders = [env.cluster.chunkserver_index(h) for h in split["hosts"]]
    for i in holders:
        env.cluster.pause_chunkserver(i)           # listed by the master, answering nothing
    try:
        start = time.monotonic()
        with pytest.raises(mfs.ChunkUnavailable) as info:
            list(mfs.read_split(split, timeout=1.5))
        assert time.monotonic() - start < 20
    finally:
        for i in holders:
            env.cluster.resume_chunkserver(i)
    message = str(info.value)
    assert f"{chunkid:016X}" in message and "\n" not in message
    for host in split["hosts"]:
        assert f"{host}:9422" in message
    first = list(itertools.islice(mfs.read_split(split), 3))
    assert first == decode_lines(env.files["g2/big.txt"][:100_000])[:3]


def test_chunk_without_live_copy(env: Env) -> None:
    f = mfs.open_file(env.url("g1/single.txt"))
    holder = env.cluster.chunkserver_index(f.location(0).hosts[0])
    env.cluster.stop_chunkserver(holder, kill=False)
    try:
        slow = mfs.MfsFile(f.client, f.inode, f.path, replica_wait=1.0)
        with pytest.raises(mfs.ChunkUnavailable, match="no chunkserver holds a live copy"):
            slow.read(0, 100)
    finally:
        env.cluster.start_chunkserver(holder)
    assert f.read(0, 100) == env.files["g1/single.txt"][:100]


def test_master_restart_between_reads(env: Env) -> None:
    split = mfs.plan_splits(env.url("small.txt"))[0]
    client = mfs.get_master(split["master"], split["port"])
    want = decode_lines(env.files["small.txt"])
    assert list(mfs.read_split(split)) == want
    session, reconnects = client.sessionid, client.reconnects
    env.cluster.restart_master(wait=False)          # chunkservers re-register while we read
    assert list(mfs.read_split(split)) == want
    assert client.reconnects == reconnects + 1
    assert client.sessionid == session              # the master kept the session: re-attached
    env.cluster.wait_ready()


def test_keepalive_across_idle(env: Env) -> None:
    """The master drops a client silent for 10 s; NOPs keep one alive."""
    kept = mfs.MasterClient(env.cluster.master_ip, keepalive=3.0)
    silent = mfs.MasterClient(env.cluster.master_ip, keepalive=None)
    try:
        kept.connect()
        silent.connect()
        time.sleep(12.5)
        assert kept.getattr(1).is_dir and silent.getattr(1).is_dir
        assert kept.reconnects == 0
        assert silent.reconnects == 1                # dropped, then re-attached transparently
    finally:
        kept.close()
        silent.close()
