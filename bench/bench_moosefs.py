"""Benchmark: reading MooseFS through gopark's client vs through the FUSE mount.

Run by hand, as root (it starts its own throwaway cluster with tests/mfs_cluster.py):

    python bench/bench_moosefs.py [--size-mib 200] [--rounds 3]

It writes one text file of --size-mib MiB through a mount, then reads it, in
alternating rounds, four ways:

* fuse bytes:   a fresh mfsmount per round (nothing cached in the kernel or in
                mfsmount), ``readinto`` of 4 MiB buffers;
* client bytes: ``open_file(url).iter_bytes()`` straight from the chunkservers;
* fuse lines:   the same fresh-mount read, iterating text lines (utf-8, replace);
* client lines: ``read_split`` over every split of the file.

Chunk files sit in the OS page cache for both paths alike.  It prints each
throughput (best of the rounds) and the ratio client / FUSE; the target is a
ratio of at least 0.8.

Then the engine: the word count of SPEC section 2 (``-m process:2``) over
``mfs://`` (one split per 64 MiB chunk, as SPEC says) and over a local copy
of the same file read in the same 64 MiB splits, alternated, best of
--rounds; the target is mfs:// within 10% of the local copy. For context it
also times the local copy in textFile's default splits (smaller: at least 6
per worker while they stay 16 MiB or more) and mfs:// asked for as many
(``numSplits``).
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from mfs_cluster import MfsCluster  # noqa: E402  (tests/ is not a package)

from gopark import Context, register_func  # noqa: E402
from gopark.io import moosefs as mfs  # noqa: E402
from gopark.io import text  # noqa: E402

MiB = 1 << 20


def make_text(size: int) -> bytes:
    """``size`` bytes of lines of random lengths (about 100 bytes on average)."""
    rnd = random.Random(7)
    pool = bytes(rnd.choices(b"abcdefghijklmnopqrstuvwxyz0123456789 ,.", k=1 << 16))
    lengths = rnd.randbytes(1 << 16)
    parts, total, i = [], 0, 0
    while total < size:
        n = lengths[i % len(lengths)] * 3 // 4
        at = (i * 7919) % (len(pool) - 256)
        line = b"%d " % i + pool[at:at + n] + b"\n"
        parts.append(line)
        total += len(line)
        i += 1
    return b"".join(parts)[:size - 1] + b"\n"


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    start = time.perf_counter()
    n = fn()
    return time.perf_counter() - start, n


def fuse_bytes(path: Path) -> int:
    total, buf = 0, bytearray(4 * MiB)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            total += n
    return total


def fuse_lines(path: Path) -> int:
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        return sum(1 for _ in f)


def client_bytes(url: str) -> int:
    return sum(len(block) for block in mfs.open_file(url).iter_bytes())


def client_lines(url: str) -> int:
    return sum(1 for split in mfs.plan_splits(url) for _ in mfs.read_split(split))


@register_func
def words(line: str) -> list[str]:
    return line.split()


@register_func
def one(word: str) -> tuple[str, int]:
    return (word, 1)


@register_func
def add(a: int, b: int) -> int:
    return a + b


def word_count(path: str, **splits: int) -> tuple[float, int]:
    """Seconds of a whole word count job (a new Context each time), and the number of words."""
    t = time.perf_counter()
    with Context("process:2", quiet=True) as ctx:
        counts = ctx.textFile(path, **splits).flatMap(words).map(one).reduceByKey(add).collectAsMap()
    return time.perf_counter() - t, sum(counts.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib * MiB
    data = make_text(size)
    nlines = data.count(b"\n")
    with tempfile.TemporaryDirectory(prefix="bench-mfs-") as tmp, \
            MfsCluster(Path(tmp) / "cluster", ncs=3) as cluster:
        writer = cluster.mount(Path(tmp) / "mnt-write")
        (writer / "bench.txt").write_bytes(data)
        cluster.umount(writer)
        url = f"{cluster.master_url}/bench.txt"
        best: dict[str, float] = {}

        def record(name: str, seconds: float, got: int, want: int) -> None:
            if got != want:
                raise SystemExit(f"{name}: read {got}, expected {want}")
            best[name] = min(best.get(name, float("inf")), seconds)
            print(f"  {name:13s} {size / MiB / seconds:8.1f} MiB/s  ({seconds:.2f} s)", flush=True)

        for r in range(1, args.rounds + 1):
            print(f"round {r}/{args.rounds}")
            mnt = cluster.mount(Path(tmp) / f"mnt-{r}-bytes")
            record("fuse bytes", *timed(lambda m=mnt: fuse_bytes(m / "bench.txt")), size)
            cluster.umount(mnt)
            with cluster.inside():
                record("client bytes", *timed(lambda: client_bytes(url)), size)
            mnt = cluster.mount(Path(tmp) / f"mnt-{r}-lines")
            record("fuse lines", *timed(lambda m=mnt: fuse_lines(m / "bench.txt")), nlines)
            cluster.umount(mnt)
            with cluster.inside():
                record("client lines", *timed(lambda: client_lines(url)), nlines)
        local = Path(tmp) / "local-copy.txt"
        local.write_bytes(data)
        wc: dict[str, float] = {}
        nwords = len(data.split())
        default = len(text.plan_splits(str(local), parallelism=2))
        runs = [("mfs://", url, {}), ("local", str(local), {"splitSize": mfs.CHUNK_SIZE}),
                ("local, default splits", str(local), {}), (f"mfs:// numSplits={default}", url, {"numSplits": default})]
        for _ in range(args.rounds):
            with cluster.inside():
                for name, path, splits in runs:
                    seconds, got = word_count(path, **splits)
                    if got != nwords:
                        raise SystemExit(f"word count over {name}: {got} words, expected {nwords}")
                    wc[name] = min(wc.get(name, float("inf")), seconds)
                    print(f"  word count {name:22s} {seconds:6.2f} s", flush=True)
        with cluster.inside():
            mfs.close_masters()

    def rate(name: str) -> float:
        return size / MiB / best[name]

    print(f"\n{args.size_mib} MiB text file, {nlines} lines, {os.cpu_count()} CPUs, best of {args.rounds}")
    for kind in ("bytes", "lines"):
        fuse, client = rate(f"fuse {kind}"), rate(f"client {kind}")
        print(f"{kind:6s} FUSE {fuse:8.1f} MiB/s   client {client:8.1f} MiB/s   "
              f"ratio client/FUSE {client / fuse:5.2f}x  (target >= 0.80x)")
    print(f"word count (process:2) mfs:// {wc['mfs://']:.2f} s, local copy in the same splits {wc['local']:.2f} s: "
          f"mfs/local {wc['mfs://'] / wc['local']:.3f}x  (target <= 1.10x)")
    print(f"  context: local copy in textFile's default {default} splits {wc['local, default splits']:.2f} s; "
          f"mfs:// numSplits={default} {wc[f'mfs:// numSplits={default}']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
