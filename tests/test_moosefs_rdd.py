"""textFile over MooseFS through the engine, against a real cluster (1 master, 3 chunkservers).

The whole module runs inside the cluster's network namespace (``cluster.inside()``):
the Context, its process-mode workers (born there) and the MooseFS client.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from mfs_cluster import MfsCluster

from gopark import Context, JobError, register_func
from gopark.io import moosefs

MiB = 1 << 20
ROOT = Path(__file__).resolve().parent.parent


@register_func
def words(line: str) -> list[str]:
    return line.split()


@register_func
def pair(word: str, n: int = 1) -> tuple[str, int]:
    return (word, n)


@register_func
def add(a: int, b: int) -> int:
    return a + b


def make_corpus(size: int, seed: int) -> bytes:
    """Lines of long words (few records per MiB, so jobs stay quick), some across the chunk border."""
    rng = random.Random(seed)
    vocab = [f"w{i}-" + "x" * rng.randint(50, 300) for i in range(3000)]
    lines = [" ".join(rng.choices(vocab, k=rng.randint(1, 12))) + "\n" for _ in range(4000)]
    out, n = [], 0
    while n < size:
        line = rng.choice(lines)
        out.append(line)
        n += len(line)
    return "".join(out).encode()


class Env:
    def __init__(self, cluster: MfsCluster, mnt: Path, local: Path) -> None:
        self.cluster, self.mnt, self.local = cluster, mnt, local

    def url(self, rel: str) -> str:
        return f"{self.cluster.master_url}/{rel}"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("mfsrdd")
    data = make_corpus(70 * MiB, seed=11)                  # two chunks
    local = root / "corpus.txt"
    local.write_bytes(data)
    with MfsCluster(root / "cluster", ncs=3) as cluster:
        mnt = cluster.mount(root / "mnt")
        (mnt / "g2").mkdir()
        cluster.set_goal(mnt / "g2", 2)
        (mnt / "g2" / "corpus.txt").write_bytes(data)
        with cluster.inside():
            try:
                yield Env(cluster, mnt, local)
            finally:
                moosefs.close_masters()


def word_count(ctx: Context, path: str) -> dict[str, int]:
    return ctx.textFile(path).flatMap(words).map(partial(pair, n=1)).reduceByKey(add).collectAsMap()


@pytest.fixture(scope="module")
def expected(env: Env) -> dict[str, int]:
    with open(env.local) as f:
        return dict(Counter(w for line in f for w in line.split()))


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_word_count_over_mfs_equals_the_local_file(env: Env, expected: dict[str, int], master: str) -> None:
    with Context(master, quiet=True) as ctx:
        assert word_count(ctx, env.url("g2/corpus.txt")) == expected
        assert word_count(ctx, str(env.mnt / "g2" / "corpus.txt")) == expected   # the mounted path
        assert word_count(ctx, str(env.local)) == expected


def test_one_split_per_chunk_preferring_its_chunkservers(env: Env) -> None:
    info = env.cluster.file_info(env.mnt / "g2" / "corpus.txt")
    with Context("process:2", quiet=True) as ctx:
        rdd = ctx.textFile(env.url("g2/corpus.txt"))
        assert rdd.getNumPartitions() == len(info) == 2
        for i, chunk in enumerate(info):
            assert rdd.preferredLocations(i) == sorted(c.split(":")[0] for c in chunk["copies"])
            assert len(chunk["copies"]) == 2
        # a narrow transformation keeps the locations of its parent's split
        assert rdd.flatMap(words).preferredLocations(1) == rdd.preferredLocations(1)


def test_a_stopped_chunkserver_fails_over_to_the_other_replica(env: Env, expected: dict[str, int]) -> None:
    info = env.cluster.file_info(env.mnt / "g2" / "corpus.txt")
    victim = env.cluster.chunkserver_index(info[0]["copies"][0].split(":")[0])
    env.cluster.stop_chunkserver(victim)
    try:
        with Context("process:2", quiet=True) as ctx:
            assert word_count(ctx, env.url("g2/corpus.txt")) == expected
    finally:
        env.cluster.start_chunkserver(victim)


def test_a_hung_chunkserver_is_left_for_the_other_replica_soon_and_tried_last_afterwards(
        env: Env, expected: dict[str, int], caplog: pytest.LogCaptureFixture) -> None:
    """A chunkserver that accepts connections and never answers (SIGSTOP: hung on a dead disk): a read
    leaves it for the other replica after REPLICA_TIMEOUT, not the last replica's CHUNKSERVER_TIMEOUT (60 s
    a chunk read before: a two-chunk file took 60-120 s), and every later read of the process (the next
    split, the next chunk) tries it last: it fails one read, not one per split."""
    path = env.mnt / "g2" / "corpus.txt"
    info = env.cluster.file_info(path)
    hung = next(ip for ip in env.cluster.chunkserver_ips if all(ip in str(c["copies"]) for c in info))
    env.cluster.pause_chunkserver(env.cluster.chunkserver_index(hung))
    try:
        started = time.monotonic()
        with caplog.at_level("WARNING", logger="gopark.moosefs"), Context("local", quiet=True) as ctx:
            assert word_count(ctx, env.url("g2/corpus.txt")) == expected
            assert ctx.textFile(env.url("g2/corpus.txt"), numSplits=6).count() == \
                sum(1 for _ in open(env.local, "rb"))
        took = time.monotonic() - started
    finally:
        env.cluster.resume_chunkserver(env.cluster.chunkserver_index(hung))
    failed = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(failed) <= 1 and all(hung in m for m in failed), failed
    assert took < moosefs.CHUNKSERVER_TIMEOUT, took


def test_a_file_another_client_keeps_appending_to_is_read_when_the_writer_lets_go(env: Env) -> None:
    """The master holds READ_CHUNK of a chunk being written, and drops the request every 10 s while the
    writer goes on: textFile asks again (as mfsmount does) instead of failing at the call after two drops
    ("keeps dropping the connection", 20 s) with a healthy master."""
    path = env.mnt / "growing.txt"
    path.write_bytes(b"".join(b"line %d\n" % i for i in range(10000)))
    size = path.stat().st_size
    writer = subprocess.Popen([sys.executable, "-c", f"""
import time
f = open({str(path)!r}, "ab", buffering=0)
started, i = time.monotonic(), 0
while time.monotonic() - started < 24:
    f.write(b"more %d\\n" % i)
    i += 1
    if i % 100 == 0:
        time.sleep(0.01)
"""])
    try:
        deadline = time.monotonic() + 20
        while path.stat().st_size <= size and time.monotonic() < deadline:      # it writes
            time.sleep(0.05)
        assert path.stat().st_size > size
        with Context("local", quiet=True) as ctx:
            assert ctx.textFile(env.url("growing.txt")).count() >= 10000
    finally:
        writer.kill()
        writer.wait()


def test_master_restart_between_two_jobs(env: Env, expected: dict[str, int]) -> None:
    with Context("process:2", quiet=True) as ctx:
        assert word_count(ctx, env.url("g2/corpus.txt")) == expected
        env.cluster.restart_master()
        assert word_count(ctx, env.url("g2/corpus.txt")) == expected


def test_missing_file_is_an_error_at_the_textfile_call(env: Env) -> None:
    with Context("local", quiet=True) as ctx:
        with pytest.raises(FileNotFoundError, match="nothere.txt"):
            ctx.textFile(env.url("g2/nothere.txt"))
        for named_as_folder in (env.url("g2/corpus.txt") + "/", str(env.mnt / "g2" / "corpus.txt") + "/"):
            with pytest.raises(FileNotFoundError, match="corpus.txt/ .a file, named as a folder"):   # as locally
                ctx.textFile(named_as_folder)
        with pytest.raises(FileNotFoundError, match="does not exist"):
            ctx.textFile(str(env.local) + "/")


def test_unreachable_master_is_one_clear_line(env: Env) -> None:
    url = "mfs://10.77.0.99:9421/x.txt"          # inside the namespace, where nothing listens
    with Context("local", quiet=True) as ctx:
        with pytest.raises(OSError, match="10.77.0.99:9421"):
            ctx.textFile(url)
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "wordcount.py"), url, "-q"],
                            capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0
    assert len(lines) == 1 and lines[0].startswith("gopark: error:") and "10.77.0.99:9421" in lines[0], lines


def test_num_splits_cuts_chunks_into_smaller_splits(env: Env, expected: dict[str, int]) -> None:
    info = env.cluster.file_info(env.mnt / "g2" / "corpus.txt")
    with Context("process:2", quiet=True) as ctx:
        rdd = ctx.textFile(env.url("g2/corpus.txt"), numSplits=6)
        assert rdd.getNumPartitions() >= 6
        for i in range(rdd.getNumPartitions()):      # every split still prefers its own chunk's servers
            chunk = rdd.splits[i]["start"] // (64 << 20)
            assert rdd.preferredLocations(i) == sorted(c.split(":")[0] for c in info[chunk]["copies"])
        counts = rdd.flatMap(words).map(partial(pair, n=1)).reduceByKey(add).collectAsMap()
    assert counts == expected


def test_num_splits_of_a_file_within_a_chunk_is_exact_as_on_a_local_disk(env: Env, tmp_path: Path) -> None:
    """numSplits=n cuts a MooseFS file within one chunk into exactly n splits, as it cuts a local file (it
    gave n + 1 for sizes that are not a multiple of 64 KiB n times), with the same lines."""
    base = env.mnt / "nsplits"
    base.mkdir(exist_ok=True)
    with Context("local", quiet=True) as ctx:
        for size, n in ((1 * MiB + 7, 4), (300 * 1024, 3), (10 * MiB + 123, 2), (5000, 7)):
            data = b"".join(b"%07d some words\n" % i for i in range(size // 20 + 1))[:size]
            (base / f"f{size}.txt").write_bytes(data)
            (tmp_path / f"f{size}.txt").write_bytes(data)
            on_mfs = ctx.textFile(env.url(f"nsplits/f{size}.txt"), numSplits=n)
            local = ctx.textFile(str(tmp_path / f"f{size}.txt"), numSplits=n)
            assert on_mfs.getNumPartitions() == local.getNumPartitions() == n, (size, n)
            assert on_mfs.glom().collect() == local.glom().collect()
        names = ["f307200.txt", "f5000.txt", "f1048583.txt"]      # several files: planned together
        on_mfs = ctx.textFile([env.url(f"nsplits/{name}") for name in names], numSplits=5)
        local = ctx.textFile([str(tmp_path / name) for name in names], numSplits=5)
        assert on_mfs.getNumPartitions() == local.getNumPartitions()
        assert on_mfs.glom().collect() == local.glom().collect()


def test_a_split_size_that_is_a_partition_count_is_refused_as_for_a_local_file(env: Env) -> None:
    """``textFile(path, 4)`` (Spark's minPartitions where DPark's splitSize is): the same error as for a local
    file, at the call; it made 1,024 splits of every chunk (2,401 tasks for 150 MB), or one of a small file."""
    with Context("local", quiet=True) as ctx:
        for path in (env.url("g2/corpus.txt"), str(env.local)):
            with pytest.raises(ValueError, match=r"splitSize=4 \(bytes, DPark's\) cuts the input into .* "
                                                 r"for 4 partitions give numSplits=4"):
                ctx.textFile(path, 4)
        assert ctx.textFile(env.url("g2/corpus.txt"), splitSize=16 * MiB).getNumPartitions() == 4 + 1  # 70 MiB


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_whole_text_files_and_binary_files_of_mfs_urls(env: Env, tmp_path: Path, master: str) -> None:
    """wholeTextFiles/binaryFiles of an mfs:// URL find the files as textFile does and read each one whole
    from its chunkservers: what they give for the same tree on a local disk, under mfs:// names."""
    import gzip
    big = make_corpus(65 * MiB, seed=5)          # over a chunk border
    tree = {"w/a.txt": "ä line\nsecond\n".encode(), "w/b.gz": gzip.compress(b"zipped\n"), "w/_SUCCESS": b"",
            "w/.hid": b"hidden", "w/empty.txt": b"", "w/pad.gz": gzip.compress(b"padded\n") + b"\0" * 512}
    base = env.mnt / f"whole-{master}"
    for rel, data in tree.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(data)
    (base / "w" / "big.txt").write_bytes(big)
    url = env.url(f"whole-{master}/w")
    with Context(master, quiet=True) as ctx:
        texts = ctx.wholeTextFiles(url, minPartitions=3)
        assert texts.getNumPartitions() == 3
        assert texts.collectAsMap() == {f"{url}/a.txt": "ä line\nsecond\n", f"{url}/b.gz": "zipped\n",
                                        f"{url}/big.txt": big.decode(), f"{url}/empty.txt": "",
                                        f"{url}/pad.gz": "padded\n"}     # zero padding, as gzip tools leave it
        assert dict(ctx.binaryFiles(url + "/b*.gz").collect()) == {f"{url}/b.gz": tree["w/b.gz"]}
        empty = ctx.textFile(f"{url}/empty.txt")       # one empty partition, as Hadoop's
        assert empty.getNumPartitions() == 1 and empty.glom().collect() == [[]]
        assert ctx.wholeTextFiles(url + "/a.txt", use_unicode=False).collect() == [(f"{url}/a.txt", tree["w/a.txt"])]
        # several paths: Spark's comma-separated URLs, DPark's list (a local file among them)
        assert ctx.textFile(f"{url}/a.txt,{url}/b.gz").collect() == ["ä line", "second", "zipped"]
        assert ctx.textFile([f"{url}/b.gz", str(env.local)]).count() == 1 + ctx.textFile(str(env.local)).count()
        assert ctx.wholeTextFiles([f"{url}/b.gz", f"{url}/a.txt"]).keys().collect() == [f"{url}/b.gz", f"{url}/a.txt"]
        # the mounted path reads the same contents, under local names
        assert ctx.wholeTextFiles(str(base / "w")).values().collect() == texts.values().collect()
        with pytest.raises(FileNotFoundError, match="nothere"):
            ctx.wholeTextFiles(env.url("nothere/*.txt"))
        with pytest.raises(OSError, match="10.77.0.99:9421"):
            ctx.binaryFiles("mfs://10.77.0.99:9421/x")
        (base / "w" / "a.txt").unlink()          # gone after the call: the task's failure names it
        with pytest.raises(JobError, match="a.txt"):
            texts.count()


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_names_globs_links_and_gzip_padding_read_as_the_local_reader_reads_them(env: Env, tmp_path: Path,
                                                                                master: str, caplog) -> None:
    """The MooseFS reader finds and reads what textFile of the same tree on a local disk gives."""
    import gzip
    tree = {"t/data[1].txt": b"literal brackets\n", "t/data1.txt": b"data one\n",
            "t/day=1/part-0": b"day1\n", "t/_tmp/part-0": b"under an underscore folder\n",
            "t/.hid/part-0": b"under a dot folder\n", "t/day=1/_SUCCESS": b"",
            "t/z.gz": gzip.compress(b"zipped\nlines\n") + b"\0" * 512}
    for base in (env.mnt / f"cmp-{master}", tmp_path / "local"):
        for rel, data in tree.items():
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            (base / rel).write_bytes(data)
        (base / "t" / "day=1" / "up").symlink_to("..")        # a loop: the folder read once
        (base / "t" / "gone.txt").symlink_to("/nonexistent/gone.txt")     # leads nowhere: skipped, said
    asked = ["t/data[1].txt", "t/data[12].txt", "t/*/part-*", "t/_*/part-*", "t/.*/part-*", "t/day=*", "t/z.gz",
             "t", "t/"]
    with Context(master, quiet=True) as ctx:
        for rel in asked:
            local = ctx.textFile(str(tmp_path / "local" / rel)).collect()
            assert ctx.textFile(env.url(f"cmp-{master}/{rel}")).collect() == local, rel
            assert ctx.textFile(str(env.mnt / f"cmp-{master}" / rel)).collect() == local, rel
        assert ctx.textFile(env.url(f"cmp-{master}/t/data[1].txt")).collect() == ["literal brackets"]
        assert ctx.textFile(env.url(f"cmp-{master}/t/*/part-*")).count() == 2      # not .hid's
        caplog.clear()
        with caplog.at_level("WARNING", logger="gopark.moosefs"):
            assert ctx.textFile(env.url(f"cmp-{master}/t")).collect() == [     # its files, then its subfolders'
                "data one", "literal brackets", "zipped", "lines", "day1"]
            assert ctx.textFile(str(env.mnt / f"cmp-{master}" / "t")).count() == 5
        said = [r.getMessage() for r in caplog.records if "gone.txt" in r.getMessage()]
        assert len(said) == 2, said              # mfs:// and the mount each say it
        assert ctx.textFile(env.url(f"cmp-{master}/t/z.gz")).collect() == ["zipped", "lines"]
        outside = tmp_path / "outside.txt"
        outside.write_text("a local file\n")
        (env.mnt / f"cmp-{master}" / "links").mkdir()
        (env.mnt / f"cmp-{master}" / "links" / "l.txt").symlink_to(outside)
        with pytest.raises(OSError, match="outside the MooseFS mount"):      # not another file's inode
            ctx.textFile(str(env.mnt / f"cmp-{master}" / "links"))
