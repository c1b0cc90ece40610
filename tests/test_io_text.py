"""SPEC section 8: textFile (files, folders, globs, .gz/.bz2, splits on line borders) and saveAsTextFile."""
from __future__ import annotations

import bz2
import gzip
import operator
import os
import time
from functools import partial

import pytest

from gopark import register_func
from gopark.errors import InputNotFound, OutputExists, OutputNotWritable
from gopark.io import text


def ref_lines(data: bytes) -> list[str]:
    """The lines of ``data`` as SPEC/Spark read them: split on \\n, a trailing \\r dropped, no final empty line."""
    if not data:
        return []
    lines = data.decode("utf-8").split("\n")
    if lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def write(path, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


CONTENTS = {
    "plain": b"".join(b"line %d\n" % i for i in range(40)),
    "crlf": b"".join(b"row %d\r\n" % i for i in range(30)),
    "no-final-newline": b"first\nsecond\nthird without newline",
    "long-lines": b"short\n" + b"L" * 300 + b"\n\nx\n" + b"M" * 157 + b"\nend\n",
    "empty-lines": b"\n\n\na\n\nb\n\n",
    "utf8": ("é\n中文字符行\n😀😀😀\nmixed é 中 😀 text\n" * 6 + "ü").encode(),
    "one-line": b"only one line, no newline",
}
SPLIT_SIZES = [1, 2, 3, 4, 5, 7, 11, 16, 64, 100000]


@pytest.mark.parametrize("name", list(CONTENTS))
def test_every_line_exactly_once_for_every_split_size(ctx, tmp_path, name):
    data = CONTENTS[name]
    path = write(tmp_path / "f.txt", data)
    want = ref_lines(data)
    for size in SPLIT_SIZES:
        rdd = ctx.textFile(path, splitSize=size)
        assert rdd.collect() == want, f"splitSize={size}"
        assert rdd.getNumPartitions() == -(-len(data) // size), f"splitSize={size}"


def test_lines_longer_than_the_split(ctx, tmp_path):
    data = b"".join(b"%d:" % i + b"abcdefghij" * (i % 7) + b"\n" for i in range(60))
    path = write(tmp_path / "long.txt", data)
    parts = ctx.textFile(path, splitSize=13).glom().collect()
    assert [ln for p in parts for ln in p] == ref_lines(data)
    assert any(p == [] for p in parts)            # some splits hold no line start at all


def test_empty_file(ctx, tmp_path):
    path = write(tmp_path / "empty.txt", b"")
    assert ctx.textFile(path).collect() == []
    assert ctx.textFile(path, splitSize=3).count() == 0


def test_textFile_of_a_file(ctx, tmp_path):
    data = CONTENTS["plain"]
    rdd = ctx.textFile(write(tmp_path / "a.txt", data))
    assert rdd.collect() == ref_lines(data)
    assert rdd.count() == 40


def test_numSplits(ctx, tmp_path):
    data = b"".join(b"%09d\n" % i for i in range(100))       # 1000 bytes, lines of 10
    path = write(tmp_path / "n.txt", data)
    for n in (1, 2, 4, 5, 10, 20, 3, 7):
        rdd = ctx.textFile(path, numSplits=n)
        assert rdd.collect() == ref_lines(data), n
        assert rdd.getNumPartitions() == n   # not n + 1 with a sliver: Hadoop's (Spark's) 10% slop


def test_numSplits_gives_at_least_that_many_splits(contexts, tmp_path):
    """As Spark's minPartitions and DPark's numSplits: n splits asked of a file of n bytes or more gives n or more."""
    ctx = contexts("local")
    fewer = {}
    for size, n in ((100, 18), (9, 4), (1000, 300), (1000, 7)):
        data = (b"abcdefghi\n" * size)[:size]
        rdd = ctx.textFile(write(tmp_path / f"s{size}-{n}.txt", data), numSplits=n)
        assert rdd.collect() == ref_lines(data)
        if rdd.getNumPartitions() < n:
            fewer[(size, n)] = rdd.getNumPartitions()
    assert not fewer, f"(file size, numSplits): partitions made = {fewer}"
    folder = tmp_path / "ten"
    folder.mkdir()
    for i in range(10):                       # several files: each its share of the splits, rounded up
        write(folder / f"{i}.txt", b"abcdefghi\n" * 11)
    for n in (1, 9, 10, 11, 25):
        rdd = ctx.textFile(str(folder), numSplits=n)
        assert n <= rdd.getNumPartitions() <= n + 10 and rdd.count() == 110, (n, rdd.getNumPartitions())


def make_folder(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    files = {"b.txt": b"b1\nb2\n", "a.txt": b"a1\na2\na3\n", "c.log": b"c1\n", "d.txt": b"d1"}
    for name, data in files.items():
        write(folder / name, data)
    write(folder / ".hidden", b"hidden\n")
    write(folder / "_SUCCESS", b"")
    write(folder / "_meta", b"underscore\n")
    return folder


def test_textFile_of_a_folder(ctx, tmp_path):
    folder = make_folder(tmp_path)
    assert ctx.textFile(str(folder)).collect() == ["a1", "a2", "a3", "b1", "b2", "c1", "d1"]
    assert ctx.textFile(str(folder), splitSize=4).collect() == ["a1", "a2", "a3", "b1", "b2", "c1", "d1"]


def test_textFile_of_a_folder_reads_its_subfolders_files_too_as_dparks_does(ctx, tmp_path):
    """A folder's files, then each subfolder's in turn (sorted, depth first), not hidden ones (a subfolder
    starting with '.' or '_' neither); a folder met again through a link is read once. They were skipped,
    silently, before."""
    folder = make_folder(tmp_path)
    for sub, name, data in [("day=2", "part-0", b"x2\n"), ("day=1", "part-0", b"x1\n"), ("day=1/h=3", "p", b"y3\n"),
                            ("_temporary", "part-0", b"half\n"), (".git", "HEAD", b"ref\n"), ("empty", "", b"")]:
        (folder / sub).mkdir(parents=True, exist_ok=True)
        if name:
            write(folder / sub / name, data)
    os.symlink("..", folder / "day=1" / "up")                   # a loop: the folder again
    expected = ["a1", "a2", "a3", "b1", "b2", "c1", "d1", "x1", "y3", "x2"]
    assert ctx.textFile(str(folder)).collect() == expected
    assert ctx.textFile(str(folder), splitSize=4).collect() == expected
    assert [os.path.relpath(p, folder) for p, _ in ctx.wholeTextFiles(str(folder)).collect()] == [
        "a.txt", "b.txt", "c.log", "d.txt", "day=1/part-0", "day=1/h=3/p", "day=2/part-0"]
    assert ctx.textFile(str(tmp_path / "in*")).count() == len(expected)      # a glob's folders alike


def test_a_subfolder_that_cannot_be_listed_is_skipped_with_a_warning(ctx, tmp_path, monkeypatch, caplog):
    """As DPark's os.walk: a subfolder the user may not list (``lost+found`` at a disk's root) does not fail
    the read of the folder, which it did once subfolders were read; the folder itself still does."""
    folder = make_folder(tmp_path)
    (folder / "lost+found").mkdir()
    write(folder / "lost+found" / "x", b"never read\n")
    real = os.scandir

    def scandir(path="."):
        if os.path.basename(os.fspath(path)) == "lost+found" or os.fspath(path) == str(tmp_path / "locked"):
            raise PermissionError(13, "Permission denied")
        return real(path)
    monkeypatch.setattr(os, "scandir", scandir)
    with caplog.at_level("WARNING", logger="gopark.io"):
        assert ctx.textFile(str(folder)).collect() == ["a1", "a2", "a3", "b1", "b2", "c1", "d1"]
    assert "lost+found" in caplog.text and "cannot be listed" in caplog.text
    (tmp_path / "locked").mkdir()
    from gopark.errors import InputUnavailable
    with pytest.raises(InputUnavailable, match="cannot list the folder"):
        ctx.textFile(str(tmp_path / "locked"))


def test_a_link_in_a_folder_that_leads_nowhere_is_skipped_and_said(ctx, tmp_path, caplog):
    """A dangling link among a folder's names is no file to read: skipped, as before, but with a warning
    naming it (its data is missing from the input), not silently."""
    folder = make_folder(tmp_path)
    os.symlink(str(tmp_path / "gone.txt"), folder / "e.txt")
    with caplog.at_level("WARNING", logger="gopark.io"):
        assert ctx.textFile(str(folder)).collect() == ["a1", "a2", "a3", "b1", "b2", "c1", "d1"]
    assert "e.txt" in caplog.text and "gone.txt" in caplog.text and "does not exist" in caplog.text


def test_textFile_of_a_glob(ctx, tmp_path):
    folder = make_folder(tmp_path)
    assert ctx.textFile(str(folder / "*.txt")).collect() == ["a1", "a2", "a3", "b1", "b2", "d1"]
    assert ctx.textFile(str(folder / "[bc].*")).collect() == ["b1", "b2", "c1"]


def test_textFile_of_a_glob_of_folders_reads_their_files_as_hadoop_does(ctx, tmp_path):
    out = tmp_path / "out"
    for day in ("day=1", "day=2"):
        ctx.parallelize([f"{day} a", f"{day} b"], 2).saveAsTextFile(str(out / day))
    (out / "_tmp").mkdir()
    (out / "_tmp" / "part-00000").write_text("half written\n")      # hidden: skipped
    (out / "day=3").mkdir()                                           # empty: nothing
    assert ctx.textFile(str(out / "day=*")).collect() == ["day=1 a", "day=1 b", "day=2 a", "day=2 b"]
    assert ctx.textFile(str(out / "*")).collect() == ["day=1 a", "day=1 b", "day=2 a", "day=2 b"]
    assert ctx.textFile(str(out / "day=*" / "part-*")).count() == 4
    assert ctx.textFile(str(out / "day=1" / "*")).collect() == ["day=1 a", "day=1 b"]   # not its _SUCCESS
    assert ctx.textFile(str(out / "_*")).collect() == ["half written"]         # asked for by name
    with pytest.raises(InputNotFound, match="no file matches"):
        ctx.textFile(str(out / "day=3*"))


def test_saving_where_no_folder_can_be_made_is_one_clear_error_in_the_driver(ctx, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x\n")
    for path in (blocker / "out", blocker):
        with pytest.raises((OutputNotWritable, OutputExists), match="saveAsTextFile") as failed:
            ctx.parallelize(range(4), 2).saveAsTextFile(str(path))
        assert str(path) in str(failed.value)
    with pytest.raises(OutputNotWritable, match="cannot write into .*a-file/out.*Not a directory"):
        ctx.parallelize(range(4), 2).saveAsTextFile(str(blocker / "out"))
    assert blocker.read_text() == "x\n"


def test_compressed_files(ctx, tmp_path):
    folder = tmp_path / "z"
    folder.mkdir()
    gz_data = "".join(f"gz line {i} é\n" for i in range(500)).encode()
    bz_data = "".join(f"bz line {i} 中\n" for i in range(300)).encode() + b"no newline"
    plain = b"p1\np2\np3\n"
    with gzip.open(folder / "a.gz", "wb") as f:
        f.write(gz_data)
    with bz2.open(folder / "b.bz2", "wb") as f:
        f.write(bz_data)
    write(folder / "c.txt", plain)
    rdd = ctx.textFile(str(folder), splitSize=4)
    assert rdd.getNumPartitions() == 1 + 1 + 3            # one split per compressed file
    assert rdd.collect() == ref_lines(gz_data) + ref_lines(bz_data) + ref_lines(plain)
    for name, data in (("a.gz", gz_data), ("b.bz2", bz_data)):
        one = ctx.textFile(str(folder / name), numSplits=5)
        assert one.getNumPartitions() == 1
        assert one.collect() == ref_lines(data)


@register_func
def fail_once_at(folder, trigger, x):
    """The first attempt of the task holding ``trigger`` fails after earlier records were written."""
    if x == trigger:
        marker = os.path.join(folder, "failed")
        if not os.path.exists(marker):
            with open(marker, "w"):
                pass
            raise RuntimeError("fail in the middle of a partition")
    return x


def test_save_then_read_back(ctx, tmp_path):
    records = [f"record {i} é" for i in range(50)]
    out = str(tmp_path / "out")
    ctx.parallelize(records, 4).saveAsTextFile(out)
    assert ctx.textFile(out).collect() == records
    with pytest.raises(OutputExists):
        ctx.parallelize(records, 4).saveAsTextFile(out)
    with pytest.raises(TypeError, match="overwrite is True or False"):      # a truthy "no" removes nothing
        ctx.parallelize(["other"], 1).saveAsTextFile(out, overwrite="no")
    assert ctx.textFile(out).collect() == records
    ctx.parallelize(["other"], 1).saveAsTextFile(out, overwrite=True)
    assert ctx.textFile(out).collect() == ["other"]


def test_overwriting_a_folder_the_rdd_reads_from_is_refused_and_keeps_the_data(ctx, tmp_path):
    """As Spark's "Cannot overwrite a path that is also being read from": the RDD's input (textFile, also
    behind a shuffle, or its checkpoint files) would be removed before the job reads it. Nothing is removed."""
    out = str(tmp_path / "data")
    ctx.parallelize(["b", "a", "c"], 2).saveAsTextFile(out)
    before = sorted(os.listdir(out))
    for rdd in (ctx.textFile(out).map(str.upper),
                ctx.textFile(os.path.join(out, "part-*")).map(partial(operator.mul, 2)).distinct(),
                ctx.parallelize(["x"], 1).union(ctx.textFile(out)), ctx.wholeTextFiles(out).values(),
                ctx.binaryFiles(os.path.join(out, "part-00000")).keys()):
        with pytest.raises(OutputExists, match="cannot overwrite .* the RDD reads from it"):
            rdd.saveAsTextFile(out, overwrite=True)
        assert sorted(os.listdir(out)) == before and sorted(ctx.textFile(out).collect()) == ["a", "b", "c"]
    ctx.setCheckpointDir(str(tmp_path / "checkpoints"))
    checkpointed = ctx.parallelize(["z"], 1).map(str.upper)
    checkpointed.checkpoint()
    assert checkpointed.collect() == ["Z"] and checkpointed.isCheckpointed()
    with pytest.raises(OutputExists, match="reads from it"):
        checkpointed.saveAsTextFile(str(tmp_path / "checkpoints"), overwrite=True)
    saved = ctx.textFile(out).map(str.upper).saveAsTextFile(str(tmp_path / "elsewhere"), overwrite=True)
    assert len(saved) == 2 and sorted(ctx.textFile(str(tmp_path / "elsewhere")).collect()) == ["A", "B", "C"]


def test_file_urls_name_local_paths(ctx, tmp_path):
    """As Spark takes them: file:///path, file://localhost/path, file:/path, with %-escapes."""
    out = tmp_path / "out dir"
    lines = [f"line {i}" for i in range(50)]
    ctx.parallelize(lines, 3).saveAsTextFile("file://" + str(out).replace(" ", "%20"))
    assert sorted(os.listdir(out)) == ["_SUCCESS", "part-00000", "part-00001", "part-00002"]
    for url in ("file://" + str(out), "file://localhost" + str(out), "file:" + str(out) + "/part-*"):
        assert ctx.textFile(url).collect() == lines
    assert not os.path.exists("file:")          # never a folder called file: under the current one
    with pytest.raises(FileNotFoundError, match="host 'elsewhere'"):
        ctx.textFile("file://elsewhere/tmp/x")


@pytest.mark.parametrize("url", ["mfs://mfsmaster/out", "hdfs://namenode:8020/out", "s3://bucket/out",
                                 "http://host/out"])
def test_a_url_of_another_file_system_is_refused_at_the_call_not_written_as_a_local_folder(ctx, tmp_path,
                                                                                          monkeypatch, url):
    monkeypatch.chdir(tmp_path)
    rdd = ctx.parallelize(["a", "b"], 2)
    scheme = url.split(":")[0]
    for write in (rdd.saveAsTextFile, ctx.setCheckpointDir, rdd.checkpoint):
        with pytest.raises(OutputNotWritable, match=f"cannot write to '{url}': gopark writes local paths, not "
                                                    f"{scheme}:// URLs"):
            write(url)
    if scheme != "mfs":                         # (mfs:// is read from the chunkservers: see test_moosefs_rdd)
        with pytest.raises(InputNotFound, match=f"textFile: cannot read '{url}': .* not {scheme}:// URLs"):
            ctx.textFile(url)
    assert os.listdir(tmp_path) == [] and not rdd.isCheckpointed()     # no folder named "hdfs:" or "mfs:"


def test_a_splitsize_of_a_few_bytes_cutting_a_great_many_splits_is_refused_saying_numsplits(ctx, tmp_path):
    """Spark's ``textFile(path, 3)`` means 3 partitions; here the second argument is DPark's splitSize, in
    bytes: 3-byte splits of a 59 kB file would be 19,630 tasks (of a big file, more than the driver holds)."""
    path = tmp_path / "lines.txt"
    path.write_text("".join(f"line {i}\n" for i in range(6000)))
    with pytest.raises(ValueError, match=r"textFile: splitSize=3 \(bytes, DPark's\) cuts the input into "
                                         r"19,630 splits; for 3 partitions give numSplits=3"):
        ctx.textFile(str(path), 3)
    assert ctx.textFile(str(path), numSplits=3).getNumPartitions() == 3
    # a count of partitions as Spark takes it (under 64) making over 1,000 splits: refused too (a 30 kB file
    # cut into 7,223 splits of 4 bytes: seconds of tiny tasks, silently, before)
    with pytest.raises(ValueError, match=r"splitSize=16 \(bytes, DPark's\) cuts the input into 3,681 splits; "
                                         r"for 16 partitions give numSplits=16"):
        ctx.textFile(str(path), 16)
    assert ctx.textFile(str(path), 64).count() == 6000          # small splits, not so many: as asked
    small = tmp_path / "small.txt"
    small.write_text("".join(f"line {i}\n" for i in range(1000)))
    assert ctx.textFile(str(small), 16).count() == 1000         # 556 splits of 16 bytes: as asked



@pytest.mark.parametrize(("kwargs", "said"), [
    ({"splitSize": True}, "splitSize must be a positive number of bytes, not True"),
    ({"splitSize": 0}, "splitSize must be a positive number of bytes, not 0"),
    ({"numSplits": True}, "numSplits must be a positive integer, not True"),
    ({"numSplits": 2.0}, "numSplits must be a positive integer, not 2.0"),
    ({"numSplits": 2 ** 31}, "numSplits must be at most 2147483647 \\(Spark's limit\\), not 2147483648")])
def test_bad_split_arguments_are_refused_at_the_call(ctx, tmp_path, kwargs, said):
    (tmp_path / "in.txt").write_text("x\ny\n")
    with pytest.raises(ValueError, match=f"^textFile: {said}$"):
        ctx.textFile(str(tmp_path / "in.txt"), **kwargs)


def test_an_empty_file_is_one_empty_partition(ctx, tmp_path):
    """As Hadoop's (so Spark's) input: saved again, it is an empty part file."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "empty.txt").write_bytes(b"")
    (tmp_path / "in" / "full.txt").write_text("a\nb\n")
    empty = ctx.textFile(str(tmp_path / "in" / "empty.txt"))
    assert empty.getNumPartitions() == 1 and empty.glom().collect() == [[]]
    assert empty.zip(ctx.parallelize([], 1)).collect() == []
    empty.saveAsTextFile(str(tmp_path / "out"))
    assert sorted(os.listdir(tmp_path / "out")) == ["_SUCCESS", "part-00000"]
    assert (tmp_path / "out" / "part-00000").read_bytes() == b""
    both = ctx.textFile(str(tmp_path / "in"))
    assert both.glom().collect()[0] == []       # empty.txt's, first of the folder's sorted names
    assert both.collect() == ["a", "b"] and ctx.textFile(str(tmp_path / "in"), numSplits=2).collect() == ["a", "b"]

def test_path_like_objects_name_paths_in_and_out(ctx, tmp_path):
    (tmp_path / "in.txt").write_text("x\ny\n")
    assert ctx.textFile(tmp_path / "in.txt").collect() == ["x", "y"]
    assert ctx.textFile([tmp_path / "in.txt", str(tmp_path / "in.txt")]).count() == 4
    assert ctx.wholeTextFiles(tmp_path).collect() == [(str(tmp_path / "in.txt"), "x\ny\n")]
    saved = ctx.textFile(tmp_path / "in.txt").map(str.upper).saveAsTextFile(tmp_path / "out")
    assert saved[0] == str(tmp_path / "out" / "part-00000") and ctx.textFile(tmp_path / "out").collect() == ["X", "Y"]
    ctx.setCheckpointDir(tmp_path / "checkpoints")
    assert ctx.getCheckpointDir() == str(tmp_path / "checkpoints")
    rdd = ctx.parallelize([1, 2], 2)
    rdd.checkpoint(tmp_path / "here")
    assert rdd.collect() == [1, 2] and rdd.isCheckpointed()
    assert rdd.getCheckpointFile().startswith(str(tmp_path / "here"))


def test_retried_save_task_leaves_no_partial_file(ctx, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    out = tmp_path / "out"
    ctx.parallelize(range(40), 4).map(partial(fail_once_at, str(markers), 15)).saveAsTextFile(str(out))
    assert os.path.exists(markers / "failed")
    assert sorted(os.listdir(out)) == sorted(["_SUCCESS"] + [f"part-{i:05d}" for i in range(4)])
    lines = []
    for i in range(4):
        with open(out / f"part-{i:05d}") as f:
            lines += f.read().splitlines()
    assert lines == [str(i) for i in range(40)]


@register_func
def fail_on_zero(x):
    return 10 // x


def test_a_failed_save_job_leaves_the_folder_empty(ctx, tmp_path):
    """Partitions already written are removed with _temporary: no partial output to read back."""
    from gopark import JobError
    out = tmp_path / "out"
    with pytest.raises(JobError):
        ctx.parallelize([1, 2, 0, 4], 2).map(fail_on_zero).saveAsTextFile(str(out))
    assert os.listdir(out) == []
    ctx.parallelize([1, 2, 4], 2).map(fail_on_zero).saveAsTextFile(str(out))   # no overwrite needed
    assert sorted(ctx.textFile(str(out)).collect()) == ["10", "2", "5"]


@register_func
def remove_folder_at_zero(folder, x):
    if x == 0:
        import shutil
        shutil.rmtree(folder, ignore_errors=True)      # as an outside cleanup, or an app's unguarded top level
    return x


def test_a_save_whose_folder_is_removed_meanwhile_fails_with_a_job_error(ctx, tmp_path):
    """The folder gone while the job runs: its tasks fail, and the app gets the JobError (the clean-up
    after it finds nothing to remove), not the clean-up's own FileNotFoundError."""
    from gopark import JobError
    out = str(tmp_path / "out")
    with pytest.raises(JobError) as info:
        ctx.parallelize(range(40), 4).map(partial(remove_folder_at_zero, out)).saveAsTextFile(out)
    # the output could not be written: no function of the app is blamed (it was the map's, the stage's last)
    assert info.value.remote_type == "FileNotFoundError" and info.value.func_name is None, info.value
    assert "(in " not in str(info.value).splitlines()[0]
    with pytest.raises(JobError) as info:     # an OSError of the app's own function is still the function's
        ctx.parallelize(["/no/such/file"], 1).map(read_file).saveAsTextFile(str(tmp_path / "other"))
    assert info.value.remote_type == "FileNotFoundError" and info.value.func_name == "test_io_text.read_file"
    not_gz = tmp_path / "plain.gz"
    not_gz.write_bytes(b"hello, not gzip\n")
    with pytest.raises(JobError) as info:     # ... also when it fails inside gzip, as writing a .gz part may
        ctx.parallelize([str(not_gz)], 1).map(read_gz).saveAsTextFile(str(tmp_path / "third"), compress=True)
    assert info.value.remote_type == "BadGzipFile" and info.value.func_name == "test_io_text.read_gz"


@register_func
def read_gz(path):
    import gzip
    with gzip.open(path) as f:
        return f.read()


@register_func
def read_file(path):
    with open(path) as f:
        return f.read()


def hold_folder_lock(folder) -> int:
    """Take a folder's lock as a running saveAsTextFile holds it; its descriptor. Waited for a moment: a
    process the driver has just started (a replacement worker) holds a copy of the last save's until it
    execs."""
    import fcntl
    held = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    deadline = time.monotonic() + 10
    while True:
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return held
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(held)
                raise
            time.sleep(0.01)


def test_a_folder_another_job_is_writing_into_is_refused_and_left_alone(ctx, tmp_path):
    """While another job holds the folder (its lock, as a running saveAsTextFile holds it), a save into it
    is refused at once, even with overwrite=True, and what is there is not touched; once it is let go, the
    save replaces it."""
    out = tmp_path / "out"
    ctx.parallelize(["old"], 1).saveAsTextFile(str(out))
    held = hold_folder_lock(out)
    try:
        with pytest.raises(OutputExists, match="another job is writing into"):
            ctx.parallelize(["new"], 1).saveAsTextFile(str(out), overwrite=True)
        assert sorted(os.listdir(out)) == ["_SUCCESS", "part-00000"] and ctx.textFile(str(out)).collect() == ["old"]
    finally:
        os.close(held)
    ctx.parallelize(["new"], 1).saveAsTextFile(str(out), overwrite=True)
    assert ctx.textFile(str(out)).collect() == ["new"]


def test_a_lock_a_just_started_process_still_holds_a_copy_of_is_waited_for(ctx, tmp_path):
    """A process the driver starts (a replacement worker, a pipe command) holds a copy of the lock of a save
    that has just ended until it execs: the next save into the folder waits that moment out instead of
    being refused as if another job were writing into it."""
    out = tmp_path / "out"
    ctx.parallelize(["old"], 1).saveAsTextFile(str(out))
    held = hold_folder_lock(out)
    child = os.fork()
    if child == 0:          # as a process between its fork and its exec: it has the descriptor, for a moment
        time.sleep(0.2)
        os._exit(0)
    try:
        os.close(held)      # the save that took it has ended
        ctx.parallelize(["new"], 1).saveAsTextFile(str(out), overwrite=True)
        assert ctx.textFile(str(out)).collect() == ["new"]
    finally:
        os.waitpid(child, 0)


OVERLAPPING_SAVE_APP = """
import os, sys, time
from gopark import Context, register_func
@register_func
def wait_for_go(folder, x):
    if x == 0:
        open(os.path.join(folder, "started"), "w").close()
        while not os.path.exists(os.path.join(folder, "go")):
            time.sleep(0.02)
    return x
if __name__ == "__main__":
    folder, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    from functools import partial
    with Context(quiet=True) as ctx:
        ctx.parallelize(range(n), 4).map(partial(wait_for_go, folder)).saveAsTextFile(out, overwrite=True)
    print("saved", n)
"""


def test_two_runs_saving_into_one_folder_at_once_never_mix_nor_lose_the_output(tmp_path):
    """An overlapping run of an app (a scheduled job started again before the last one ended) writing the
    same folder with overwrite=True: the second is refused with one line while the first writes; the
    first's output is whole, marked _SUCCESS (before, each removed the other's part files: a folder holding
    _SUCCESS alone, read back as no records)."""
    import subprocess
    import sys
    import time
    app = tmp_path / "overlap.py"
    app.write_text(OVERLAPPING_SAVE_APP)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    (tmp_path / "go").touch()
    (tmp_path / "first").mkdir()
    first = subprocess.Popen([sys.executable, str(app), str(tmp_path / "first"), str(out), "100", "-m", "process:2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "first" / "started").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.02)
        second = subprocess.run([sys.executable, str(app), str(tmp_path), str(out), "7", "-m", "local"],
                                capture_output=True, text=True, timeout=120, env=env)
        assert second.returncode == 1 and second.stdout == "", second
        (line,) = second.stderr.strip().splitlines()
        assert line.startswith(f"gopark: error: saveAsTextFile: another job is writing into {str(out)!r}"), line
        (tmp_path / "first" / "go").touch()
        stdout, stderr = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0 and stdout == "saved 100\n", stderr
    assert sorted(os.listdir(out)) == ["_SUCCESS"] + [f"part-{i:05d}" for i in range(4)]
    lines = []
    for i in range(4):
        lines += (out / f"part-{i:05d}").read_text().splitlines()
    assert lines == [str(i) for i in range(100)]


def test_an_unreadable_input_is_named_and_no_function_is_blamed(ctx, tmp_path):
    """A corrupt .gz fails its task with gzip's error, naming the file, not 'in <last function>'."""
    from gopark import JobError
    bad = write(tmp_path / "bad.gz", b"junk, not gzip")
    with pytest.raises(JobError) as info:
        ctx.textFile(bad).map(str).filter(bool).collect()
    assert info.value.remote_type == "BadGzipFile"
    assert bad in str(info.value).splitlines()[0]
    assert info.value.func_name is None


def test_a_file_removed_after_textfile_is_named(ctx, tmp_path):
    from gopark import JobError
    gone = write(tmp_path / "gone.txt", b"a\nb\n")
    rdd = ctx.textFile(gone).map(str)
    os.unlink(gone)
    with pytest.raises(JobError) as info:
        rdd.collect()
    assert info.value.remote_type == "FileNotFoundError" and gone in str(info.value).splitlines()[0]
    assert info.value.func_name is None


@pytest.mark.parametrize("mib, parallel, splits", [
    (10, 2, 2),        # small: one split per unit of parallelism
    (100, 2, 6),       # 16 MiB or more each, at most 6 per unit of parallelism
    (112, 2, 6),       # a multiple of the parallelism that keeps them 16 MiB or more
    (200, 2, 12),
    (200, 3, 12),      # a multiple of the parallelism
    (1024, 2, 16),     # large: at most 64 MiB each
])
def test_default_splits_balance_the_workers(tmp_path, mib, parallel, splits):
    """With no splitSize or numSplits: enough splits that a slower worker takes fewer, none over 64 MiB."""
    from gopark import Context
    path = tmp_path / "sparse.txt"
    with open(path, "wb") as f:
        f.truncate(mib << 20)            # the plan reads sizes only: a sparse file costs no disk
    with Context("local", parallel=parallel, quiet=True) as c:
        assert c.textFile(str(path)).getNumPartitions() == splits
    planned = text.plan_splits(str(path), parallelism=parallel)
    assert [(s["start"], s["end"]) for s in planned] == \
        [(i * (-(-(mib << 20) // splits)), min(mib << 20, (i + 1) * (-(-(mib << 20) // splits))))
         for i in range(splits)]


def test_default_splits_of_a_folder_cut_each_file_in_equal_parts(tmp_path):
    """Files of a folder are cut in equal parts near the split size: no small remainder, none under 16 MiB."""
    folder = tmp_path / "many"
    folder.mkdir()
    for i, mib in enumerate([20] * 10 + [40, 45, 1]):
        with open(folder / f"part-{i:02d}", "wb") as f:
            f.truncate(mib << 20)
    planned = text.plan_splits(str(folder), parallelism=2)
    sizes = {}
    for s in planned:
        sizes.setdefault(s["path"], []).append(s["end"] - s["start"])
    for path, parts in sizes.items():
        assert max(parts) - min(parts) <= 1, (path, parts)            # equal parts
        assert min(parts) >= text.MIN_SPLIT_SIZE or len(parts) == 1, (path, parts)
        assert sum(parts) == os.path.getsize(path)


def test_several_paths_as_a_list_or_a_comma_separated_string(ctx, tmp_path):
    """DPark's list of paths and Spark's "a,b": the files of each, in order; a path that exists with
    a comma in its name is that file."""
    for name in ("a", "b"):
        write(tmp_path / f"{name}.txt", f"{name}1\n{name}2\n".encode())
    write(tmp_path / "c,d.txt", b"comma\n")
    both = ["a1", "a2", "b1", "b2"]
    a, b = str(tmp_path / "a.txt"), str(tmp_path / "b.txt")
    assert ctx.textFile([a, b]).collect() == both == ctx.textFile((a, b), numSplits=4).collect()
    assert ctx.textFile(f"{a},{b}").collect() == both
    assert ctx.textFile(f"{b},{tmp_path / '[ab].txt'}").collect() == ["b1", "b2"] + both
    assert ctx.textFile(str(tmp_path / "c,d.txt")).collect() == ["comma"]
    assert ctx.textFile(str(tmp_path / "c,*.txt")).collect() == ["comma"]      # a glob that matches, whole
    (tmp_path / "x,y").mkdir()
    write(tmp_path / "x,y" / "in.txt", b"inside\n")
    assert ctx.textFile(str(tmp_path / "x,y" / "*.txt")).collect() == ["inside"]
    assert ctx.wholeTextFiles(f"{a},{b}").keys().collect() == [a, b]
    assert ctx.binaryFiles([b]).collect() == [(b, b"b1\nb2\n")]
    for bad in ([], [a, 7], ""):
        with pytest.raises(TypeError, match="a path string"):
            ctx.textFile(bad)
    with pytest.raises(InputNotFound, match="zz.txt' does not exist"):
        ctx.textFile([a, str(tmp_path / "zz.txt")])


def test_whole_text_files_gives_each_file_whole_with_its_path(ctx, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    write(folder / "a.txt", "first\nline é\n".encode())
    write(folder / "b.json", b'{"x": 1}')
    write(folder / "c.txt.gz", gzip.compress(b"zipped\n"))
    write(folder / "d.bin", b"\xff\xfe")
    write(folder / "_SUCCESS", b"")                        # hidden, as textFile skips it
    rdd = ctx.wholeTextFiles(str(folder))
    assert rdd.collect() == [(str(folder / "a.txt"), "first\nline é\n"), (str(folder / "b.json"), '{"x": 1}'),
                             (str(folder / "c.txt.gz"), "zipped\n"), (str(folder / "d.bin"), "\ufffd\ufffd")]
    assert ctx.wholeTextFiles(str(folder / "*.txt"), minPartitions=3).getNumPartitions() == 1   # one per file at most
    assert ctx.wholeTextFiles(str(folder), 3).getNumPartitions() == 3
    assert ctx.wholeTextFiles("file://" + str(folder / "a.txt"), use_unicode=False).collect() == [
        (str(folder / "a.txt"), "first\nline é\n".encode())]
    assert dict(ctx.binaryFiles(str(folder)).collect())[str(folder / "c.txt.gz")] == (folder / "c.txt.gz").read_bytes()
    assert ctx.wholeTextFiles(str(folder)).mapValues(len).collectAsMap()[str(folder / "b.json")] == 8


def test_whole_text_files_bad_input_is_one_error_at_the_call(ctx, tmp_path):
    from gopark import JobError
    from gopark.errors import InputUnavailable
    with pytest.raises(InputNotFound, match="wholeTextFiles: .*does not exist"):
        ctx.wholeTextFiles(str(tmp_path / "missing"))
    with pytest.raises(InputNotFound, match="binaryFiles: no file matches"):
        ctx.binaryFiles(str(tmp_path / "*.none"))
    with pytest.raises(ValueError, match="minPartitions"):
        ctx.wholeTextFiles(str(tmp_path), minPartitions=0)
    (tmp_path / "empty").mkdir()
    empty = str(tmp_path / "empty")
    assert ctx.wholeTextFiles(empty).collect() == [] == ctx.textFile(empty).collect()
    odd = tmp_path / "odd"
    odd.mkdir()
    write(os.path.join(os.fsencode(odd), b"caf\xe9.txt"), b"x")            # a name that is not UTF-8
    for read in (ctx.wholeTextFiles, ctx.binaryFiles, ctx.textFile):
        with pytest.raises(InputUnavailable, match="is not UTF-8: rename it"):
            read(str(odd))
    gone = write(tmp_path / "gone.txt", b"x")
    rdd = ctx.wholeTextFiles(gone)
    os.remove(gone)                                         # after the call: the task fails, naming the file
    with pytest.raises(JobError, match="gone.txt"):
        rdd.collect()


def test_a_read_error_of_a_moosefs_split_names_the_input(monkeypatch):
    """Lines of an mfs:// split are read where its errors get the input's name (as a local file's)."""
    from gopark.io import moosefs

    def broken(split, **_kw):
        yield "first line"
        raise moosefs.MfsError("chunkserver gone")

    monkeypatch.setattr(moosefs, "read_split_texts", broken)
    split = {"kind": "mfs", "path": "mfs://master/data/x.txt", "master": "m", "port": 9421, "inode": 1,
             "start": 0, "end": 10}
    with pytest.raises(moosefs.MfsError) as failed:
        list(text.read_split(split))
    assert failed.value.gopark_input == "mfs://master/data/x.txt"


def test_overwriting_refuses_an_input_under_a_moosefs_mount_or_linked_from_the_folder(ctx, tmp_path, monkeypatch):
    """The paths the app gave count as read too (a mounted MooseFS's splits name no local file), and an input
    file in the folder that links elsewhere: removing the folder would remove it."""
    from gopark.io import moosefs
    mount = tmp_path / "mnt"
    (mount / "data").mkdir(parents=True)
    (mount / "data" / "part-00000").write_text("precious\n")
    monkeypatch.setattr(moosefs, "is_mfs_path", lambda p: os.path.abspath(p).startswith(str(mount)))
    monkeypatch.setattr(moosefs, "plan_splits", lambda p, size=None: [
        {"kind": "mfs", "master": "mfsmaster", "port": 9421, "path": "/data/part-00000", "inode": 7,
         "start": 0, "end": 9, "hosts": []}])
    with pytest.raises(OutputExists, match="reads from it"):
        ctx.textFile(str(mount / "data")).saveAsTextFile(str(mount / "data"), overwrite=True)
    assert (mount / "data" / "part-00000").read_text() == "precious\n"
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "elsewhere.txt").write_text("x\ny\n")
    (out / "in.txt").symlink_to(tmp_path / "elsewhere.txt")
    with pytest.raises(OutputExists, match="reads from it"):
        ctx.textFile(str(out / "in.txt")).saveAsTextFile(str(out), overwrite=True)
    assert sorted(os.listdir(out)) == ["in.txt"]
