"""A deterministic Zipf word corpus for the word-count benchmarks.

numpy is used here, in the bench only, to generate data fast; no app and no
baseline counts with it.

The vocabulary has ``vocab`` words ``w<n>`` (n a permutation of 0..vocab-1, so
frequent words are not just the short ones); word ranks follow a Zipf law of
exponent ``a`` truncated to the vocabulary; lines have 10 to 20 words
separated by one space. The same arguments always give the same bytes.
Run it alone to (re)make a corpus: ``python bench/_corpus.py [SIZE_MIB]``.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from _common import DATA

SEED = 20240601
VOCAB = 1_000_000
ZIPF_A = 1.1
_CHUNK_WORDS = 4_000_000


def corpus_path(size_mib: int, vocab: int = VOCAB, a: float = ZIPF_A, seed: int = SEED) -> Path:
    return DATA / f"zipf_{size_mib}MiB_v{vocab}_a{a}_s{seed}.txt"


def ensure_corpus(size_mib: int = 200, vocab: int = VOCAB, a: float = ZIPF_A, seed: int = SEED) -> Path:
    """Return the corpus file, generating it first if this machine has none yet."""
    path = corpus_path(size_mib, vocab, a, seed)
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    _write_corpus(tmp, size_mib * 2**20, vocab, a, seed)
    os.replace(tmp, path)
    print(f"generated {path} ({path.stat().st_size / 2**20:.0f} MiB) in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    return path


def _write_corpus(path: Path, size_bytes: int, vocab: int, a: float, seed: int) -> None:
    import numpy as np  # only to generate data, and only when a corpus is missing

    rng = np.random.default_rng(seed)
    cdf = np.cumsum(np.arange(1, vocab + 1, dtype=np.float64) ** -a)
    cdf /= cdf[-1]
    words = np.array([b"w%d" % n for n in rng.permutation(vocab)], dtype=object)
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=vocab)
    written = 0
    with open(path, "wb") as f:
        while written < size_bytes:
            ranks = np.minimum(np.searchsorted(cdf, rng.random(_CHUNK_WORDS), side="right"), vocab - 1)
            line_ends = np.cumsum(rng.integers(10, 21, size=_CHUNK_WORDS // 10))
            line_ends = line_ends[line_ends <= _CHUNK_WORDS]
            ranks = ranks[:line_ends[-1]]
            # Join every word with a space, then turn the space after each
            # line's last word into a newline, in place.
            buf = bytearray(b" ".join(words[ranks].tolist()))
            buf += b" "
            seps = np.cumsum(lengths[ranks] + 1) - 1
            newlines = seps[line_ends - 1]
            np.frombuffer(buf, dtype=np.uint8)[newlines] = ord("\n")
            room = size_bytes - written
            if len(buf) > room:
                fits = int(np.searchsorted(newlines, room - 1, side="right"))
                buf = buf[:int(newlines[max(fits, 1) - 1]) + 1]
                f.write(buf)
                break
            f.write(buf)
            written += len(buf)


if __name__ == "__main__":
    print(ensure_corpus(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
