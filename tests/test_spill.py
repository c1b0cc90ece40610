"""Sorting and merging past the memory budget: the spill paths run, and results stay exact."""
from __future__ import annotations

import glob
import os
import random
import tempfile

import pytest

from gopark import Context

DATA = [(random.Random(3).randint(0, 10**6) * 7 % 1_000_003, "v" * 60) for _ in range(120_000)]


@pytest.fixture
def spills(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The prefixes of the spill folders made in this process (local mode runs tasks here)."""
    made: list[str] = []
    real = tempfile.mkdtemp

    def spying(*args, **kwargs):  # noqa: ANN002, ANN003
        made.append(kwargs.get("prefix") or (args[1] if len(args) > 1 else ""))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", spying)
    return made


@pytest.mark.parametrize("ascending", [True, False])
def test_sort_by_key_larger_than_memory(spills: list[str], ascending: bool) -> None:
    with Context("local", mem=8, quiet=True) as ctx:
        got = ctx.parallelize(DATA, 4).sortByKey(ascending, numSplits=2).collect()
    assert [k for k, _ in got] == sorted((k for k, _ in DATA), reverse=not ascending)
    assert sorted(got) == sorted(DATA)
    assert any(p.startswith("sort-") for p in spills), spills


def test_group_by_key_larger_than_memory(spills: list[str]) -> None:
    with Context("local", mem=8, quiet=True) as ctx:
        got = ctx.parallelize(DATA, 4).map(tuple).groupByKey(2).collectAsMap()
    expected: dict[int, list[str]] = {}
    for k, v in DATA:
        expected.setdefault(k, []).append(v)
    assert {k: sorted(v) for k, v in got.items()} == expected
    assert any(p.startswith("spill-") for p in spills), spills


def test_sort_in_process_mode_with_a_small_budget() -> None:
    with Context("process:2", mem=20, quiet=True) as ctx:
        got = ctx.parallelize(DATA, 4).sortByKey(numSplits=3).keys().collect()
    assert got == sorted(k for k, _ in DATA)


@pytest.mark.parametrize("master", ["local", "process:2"])
@pytest.mark.parametrize("compress", [True, False])
def test_shuffle_buckets_compressed_when_asked(master: str, compress: bool) -> None:
    words = [(f"word{i % 5000}", i) for i in range(60_000)]
    with Context(master, quiet=True, compress=compress) as ctx:
        got = ctx.parallelize(words, 3).groupByKey(2).mapValue(sorted).collectAsMap()
        flags = set()
        for path in glob.glob(os.path.join(ctx.work_dir, "shuffle", "shuffle-*", "[0-9]*", "*")):
            with open(path, "rb") as f:
                flags.add(f.read(5)[4])        # the first chunk's header: length:u32 flags:u8
    expected: dict[str, list[int]] = {}
    for k, v in words:
        expected.setdefault(k, []).append(v)
    assert got == expected
    assert flags == ({1} if compress else {0})
