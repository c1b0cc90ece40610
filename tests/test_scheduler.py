"""The DAG scheduler's contract, through the public API: stages, reuse, lost map outputs.

- a lost map output (its folder gone) makes the reducer report FetchFailed; the
  map task runs again from lineage and the job ends with exact results;
- a shuffle shared by two jobs runs its map stage once;
- a job's progress lines appear once it runs longer than a second, one per stage; on a terminal,
  redrawn while its tasks run, every stage running at once side by side, cut to the terminal's width.
"""
from __future__ import annotations

import glob
import io
import os
import re
import signal
import subprocess
import sys
import time
from functools import partial

import pytest

from gopark import Context, JobError, register_func
from gopark.progress import Progress


@register_func
def keyed(calls, x):
    calls.add(1)
    return (x % 5, x)


@register_func
def add(a, b):
    return a + b


@register_func
def slow(x):
    time.sleep(0.15)
    return x


@register_func
def logged(log_path, x):
    with open(log_path, "a") as f:
        f.write(f"{x}\n")
    return x


def test_a_lost_map_output_is_recomputed_from_lineage(ctx: Context, tmp_path) -> None:
    calls = ctx.accumulator(0)
    log = tmp_path / "calls"
    reduced = ctx.parallelize(range(100), 4).map(partial(logged, str(log))).map(partial(keyed, calls)) \
        .reduceByKey(add, 3)
    expected = {k: sum(x for x in range(100) if x % 5 == k) for k in range(5)}
    assert reduced.collectAsMap() == expected
    assert calls.value == 100 and len(log.read_text().split()) == 100
    outputs = sorted(glob.glob(os.path.join(ctx.work_dir, "shuffle", "shuffle-*", "[0-9]*")))
    assert outputs, "the map outputs live in the Context's work folder"
    os.remove(outputs[-1])                         # one map output is lost
    assert reduced.collectAsMap() == expected      # FetchFailed -> that map task runs again
    assert len(log.read_text().split()) == 125     # only the lost map task (25 records) ran again
    assert calls.value == 100                      # and its accumulator updates, counted before, not again
    assert reduced.collectAsMap() == expected      # and the map stage is complete again: skipped
    assert len(log.read_text().split()) == 125 and calls.value == 100


def test_map_stage_of_a_shared_shuffle_runs_once(ctx: Context) -> None:
    calls = ctx.accumulator(0)
    reduced = ctx.parallelize(range(50), 5).map(partial(keyed, calls)).reduceByKey(add)
    assert reduced.count() == 5
    assert sorted(reduced.keys().collect()) == [0, 1, 2, 3, 4]
    assert reduced.mapValue(str).collectAsMap()[0] == str(sum(range(0, 50, 5)))
    assert calls.value == 50


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_progress_lines_one_per_stage_after_a_second(master: str) -> None:
    out = io.StringIO()
    with Context(master, quiet=True) as ctx:
        ctx.parallelize(range(4), 4).count()      # the workers are up (their start may take a second on a busy machine)
        ctx.scheduler.progress = Progress(True, out)
        ctx.parallelize(range(4), 2).map(str).count()             # well under a second: nothing
        assert out.getvalue() == ""
        ctx.parallelize(range(16), 4).map(slow).map(partial(keyed, ctx.accumulator(0))) \
            .reduceByKey(add).collect()                            # over a second, two stages
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert all(line.startswith("[gopark] stage ") and " 4/4 tasks " in line for line in lines), lines
    assert "test_scheduler.py" in lines[0] and "collect at test_scheduler.py" in lines[1], lines
    first, second = (int(line.split()[2]) for line in lines)      # numbered as they run, as in Spark
    assert second == first + 1, lines


PROGRESS_APP = """
import sys, time
from gopark import Context, register_func
@register_func
def two_seconds(x):
    time.sleep(2)
    return x
if __name__ == "__main__":
    with Context(sys.argv[1]) as ctx:
        print("count", ctx.parallelize(range(2), 2).map(two_seconds).count(), flush=True)
"""


def on_a_terminal(argv: list[str], env: dict[str, str], columns: int | None = None) -> tuple[int, str]:
    """Run ``argv`` with stdout and stderr on a pseudo-terminal (``columns`` wide: else of no size); its exit
    status and all it wrote there."""
    import fcntl
    import pty
    import struct
    import termios
    master, slave = pty.openpty()
    if columns is not None:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen(argv, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:       # EIO: every writer has closed it
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        code = proc.wait(timeout=120)
    return code, b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_a_terminals_progress_line_shows_while_no_task_has_ended(master: str, tmp_path) -> None:
    """On a terminal, the line shows once the job has run a second, and goes on being redrawn while tasks
    run: here none ends before 2 s, so "0/2 tasks" shows. (It was drawn only as tasks ended, and in local
    mode, where a stage's tasks ran before the scheduler heard of any, only once the stage was done.)"""
    app = tmp_path / "progress_app.py"
    app.write_text(PROGRESS_APP)
    code, seen = on_a_terminal([sys.executable, str(app), master],
                               dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), TMPDIR=str(tmp_path)))
    assert code == 0 and "count 2" in seen, seen
    assert re.search(r"\r\[gopark\] stage \d+ count at progress_app\.py:\d+: 0/2 tasks 1\.\ds", seen), seen
    if master == "local":    # one task after the other: the first one's end shows while the second runs
        assert re.search(r"\r\[gopark\] stage \d+ count at progress_app\.py:\d+: 1/2 tasks [23]\.\ds", seen), seen
    assert re.search(r"\r\[gopark\] stage \d+ count at progress_app\.py:\d+: 2/2 tasks \d\.\ds\x1b\[K\r?\n", seen), seen


JOIN_APP = """
import sys, time
from gopark import Context, register_func
@register_func
def slow_pair(x):
    time.sleep(1.5)
    return (x, x)
if __name__ == "__main__":
    with Context(sys.argv[1]) as ctx:
        left = ctx.parallelize(range(2), 2).map(slow_pair)
        right = ctx.parallelize(range(2), 2).map(slow_pair)
        print("joined", left.join(right).count(), flush=True)
"""

_PART = r"stage (\d+) [^\r\n|]*: ([01])/2 tasks \d\.\ds"


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_a_terminal_shows_every_running_stage(master: str, tmp_path) -> None:
    """The two map stages of a join run at once (in local mode their tasks one after another): on a
    terminal, the running line shows both side by side (as Spark's console progress bar does), redrawn
    with a carriage return only (never moving the cursor up over what a task printed), until each
    stage's final line; then the join's own stage."""
    app = tmp_path / "join_app.py"
    app.write_text(JOIN_APP)
    code, seen = on_a_terminal([sys.executable, str(app), master],
                               dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), TMPDIR=str(tmp_path)), 200)
    assert code == 0 and "joined 2" in seen, seen
    both = re.findall(r"\r\[gopark\] " + _PART + r" \| " + _PART + r"\x1b\[K", seen)
    assert any(first != second for first, _, second, _ in both), seen       # two stages, side by side
    assert not re.search(r"\x1b\[\d*[AF]", seen), seen                       # the cursor never goes up
    finals = re.findall(r"\r\[gopark\] stage (\d+) [^\r\n|]*: 2/2 tasks \d\.\ds\x1b\[K\r?\n", seen)
    assert len(set(finals)) == 3, seen                                       # each stage ends on its line
    assert seen.index("joined 2") > max(seen.rindex(f"stage {sid} ") for sid in finals), seen


def test_a_terminals_running_line_is_cut_to_its_width_keeping_the_counts(tmp_path) -> None:
    """A running line longer than the terminal is wide would wrap, and the next carriage return would not
    find its start: the stages' names are cut (with an ellipsis), their counts and times stay."""
    app = tmp_path / "an_app_whose_name_is_long_enough_to_need_cutting.py"
    app.write_text(JOIN_APP)
    code, seen = on_a_terminal([sys.executable, str(app), "local"],
                               dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), TMPDIR=str(tmp_path)), 80)
    assert code == 0 and "joined 2" in seen, seen
    live = re.findall(r"\r(\[gopark\] " + _PART + r" \| " + _PART + r")\x1b\[K", seen)
    assert live and all(len(line) <= 79 and line.count("…") == 2 for line, *_ in live), live


@register_func
def refuses(a, b):
    raise ValueError("no")


def test_a_failed_jobs_stage_is_named_by_the_action_called_and_where(ctx: Context) -> None:
    """As in Spark: "reduce at app.py:14", where the app called reduce, not where the RDD was made."""
    import inspect
    rdd = ctx.parallelize(range(4), 2).map(slow)
    with pytest.raises(JobError) as failed:
        rdd.reduce(refuses)
    line = inspect.currentframe().f_lineno - 1
    assert f"(reduce at test_scheduler.py:{line})" in str(failed.value)
    pairs = ctx.parallelize([(1, 1)], 1)
    with pytest.raises(JobError) as failed:
        pairs.map(refuses).sortByKey().count()   # sortByKey samples its keys in a job of its own
    line = inspect.currentframe().f_lineno - 1
    assert f"(sortByKey at test_scheduler.py:{line})" in str(failed.value)


@register_func
def fail_fast_or_sleep(x):
    if x == 0:
        raise ValueError("task 0 fails")
    time.sleep(60)
    return x


def test_a_failed_job_does_not_leave_its_tasks_running() -> None:
    with Context("process:2", quiet=True, max_failures=1) as ctx:
        started = time.monotonic()
        with pytest.raises(JobError, match="failed once; last error: .*task 0 fails"):
            ctx.parallelize(range(4), 4).map(fail_fast_or_sleep).collect()
        assert ctx.parallelize(range(10), 2).map(abs).count() == 10   # the pool is free again at once
        assert time.monotonic() - started < 30
        deadline = time.monotonic() + 20      # a cancelled task's worker is replaced once its exit is seen
        while len(ctx.backend.worker_pids) != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(ctx.backend.worker_pids) == 2


@register_func
def late_if_zero(x):
    if x[1] == 0:
        time.sleep(0.5)
    return x


def test_results_that_come_out_of_order_are_handed_over_in_partition_order() -> None:
    """collectAsMap merges each partition as it comes, yet in partition order: the last value of a key
    wins and the keys keep their order, as in ``dict(collect())``, though partition 0 ends last."""
    records = [("k", i) if i % 10 == 0 else (f"key{i}", i) for i in range(300)]
    with Context("process:2", quiet=True) as ctx:
        rdd = ctx.parallelize(records, 3).map(late_if_zero)
        got = rdd.collectAsMap()
        assert list(got.items()) == list(dict(records).items())
        seen = []
        assert ctx.runJob(rdd, ["count"], [2, 0, 1], on_result=seen.append) == [None] * 3
        assert seen == [100, 100, 100]
        order = []
        ctx.runJob(rdd, ["take", 1], [2, 0, 1], on_result=order.append)
        assert order == [[records[200]], [records[0]], [records[100]]]


def test_every_lost_map_output_is_recomputed_in_one_round(ctx: Context, tmp_path) -> None:
    calls = ctx.accumulator(0)
    log = tmp_path / "calls"
    reduced = ctx.parallelize(range(120), 12).map(partial(logged, str(log))).map(partial(keyed, calls)) \
        .reduceByKey(add, 3)
    expected = reduced.collectAsMap()
    for path in glob.glob(os.path.join(ctx.work_dir, "shuffle", "shuffle-*", "[0-9]*")):
        os.remove(path)                            # all twelve map outputs are lost
    assert reduced.collectAsMap() == expected
    assert len(log.read_text().split()) == 240     # each map task ran once more, no more
    assert calls.value == 120                      # its updates counted once


@pytest.mark.parametrize("damage", ["truncated", "cut at its index", "emptied"])
def test_a_damaged_map_output_is_replaced_by_the_rerun(ctx: Context, damage: str) -> None:
    """A map output that is not whole (its file cut short: in its data, in its index, or empty) is a
    FetchFailed, not an end of data: the map task runs again."""
    reduced = ctx.parallelize(range(60), 2).map(partial(keyed, ctx.accumulator(0))).reduceByKey(add, 2)
    expected = reduced.collectAsMap()
    outputs = sorted(glob.glob(os.path.join(ctx.work_dir, "shuffle", "shuffle-*", "[0-9]*")))
    assert len(outputs) == 2                       # one file a map task
    size = os.path.getsize(outputs[-1])
    with open(outputs[-1], "r+b") as f:
        f.truncate({"truncated": 3, "cut at its index": size - 20, "emptied": 0}[damage])
    assert reduced.collectAsMap() == expected


def test_workers_killed_between_and_during_jobs_are_replaced_every_time() -> None:
    with Context("process:2", quiet=True) as ctx:
        for i in range(30):
            deadline = time.monotonic() + 10
            while len(ctx.backend.worker_pids) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            pids = ctx.backend.worker_pids
            os.kill(pids[i % len(pids)], signal.SIGKILL)     # often an idle, ready worker
            assert ctx.parallelize(range(40), 8).map(abs).count() == 40
        deadline = time.monotonic() + 10
        while len(ctx.backend.worker_pids) != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(ctx.backend.worker_pids) == 2


@register_func
def halve(x):
    return x // 2


def test_a_chain_of_many_shuffles_plans_without_recursion() -> None:
    with Context("local", quiet=True) as ctx:
        rdd = ctx.parallelize([(i % 7, 1) for i in range(70)], 2)
        for _ in range(600):                      # 600 shuffles, planned and run in one job
            rdd = rdd.reduceByKey(add, 2).mapValue(halve)
        assert sorted(rdd.collect()) == [(k, 0) for k in range(7)]


@register_func
def inc(x):
    return x + 1


def test_a_long_chain_of_narrow_operations(ctx: Context) -> None:
    rdd = ctx.parallelize(range(10), 2)
    for _ in range(500):
        rdd = rdd.map(inc)
    assert rdd.collect() == [x + 500 for x in range(10)]


class _FailingCleanup:
    """A backend whose removal of dropped files fails (a Mesos master that answers an error)."""

    def __init__(self, backend) -> None:
        self._backend = backend

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def drop_cached(self, rdd_ids):
        raise OSError("master answered 503")

    def drop_shuffles(self, shuffle_ids):
        raise OSError("master answered 503")


def test_a_cleanup_that_fails_does_not_fail_the_next_job(ctx: Context, caplog) -> None:
    """Removing what dropped shuffles and cached RDDs left is housekeeping: when it fails, the app's next
    job runs all the same, and the failure is logged."""
    backend = ctx.scheduler.backend
    ctx.scheduler.backend = _FailingCleanup(backend)
    try:
        gone = ctx.parallelize(range(8), 2).map(str).cache()
        assert gone.count() == 8
        pairs = ctx.parallelize(range(8), 2).map(partial(keyed, ctx.accumulator(0)))
        assert len(pairs.reduceByKey(add).collect()) == 5
        del gone, pairs
        with caplog.at_level("WARNING", logger="gopark.scheduler"):
            assert ctx.parallelize(range(3), 3).count() == 3
        assert "could not remove" in caplog.text
    finally:
        ctx.scheduler.backend = backend


def _trash_threads() -> list:
    import threading
    return [t for t in threading.enumerate() if t.name == "gopark-trash"]


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_dropped_shuffles_and_cached_rdds_leave_the_work_folder_while_the_next_jobs_run(master: str) -> None:
    """What the app let go leaves its place before the next job (moved into the work folder's trash: a
    rename) and is deleted there by a thread of its own meanwhile; a shuffle's folder goes with its map
    outputs. Stop ends that thread and leaves no work folder."""
    import gc
    others = set(_trash_threads())          # of the other tests' Contexts
    with Context(master, quiet=True) as ctx:
        work = ctx.work_dir
        kept = ctx.parallelize(range(60), 3).map(partial(keyed, ctx.accumulator(0))).reduceByKey(add, 2)
        expected = kept.collectAsMap()
        for _ in range(5):
            r = ctx.parallelize(range(60), 3).map(partial(keyed, ctx.accumulator(0))).reduceByKey(add, 2).cache()
            assert r.collectAsMap() == expected
            del r
            gc.collect()
        assert ctx.parallelize(range(4), 2).count() == 4           # drops the last one
        folders = glob.glob(os.path.join(work, "shuffle", "shuffle-*"))
        assert len(folders) == 1 and len(glob.glob(os.path.join(folders[0], "*"))) == 3   # kept's 3 outputs
        cached = glob.glob(os.path.join(work, "cache", "*"))
        assert all(not os.path.basename(p).split("-")[0].isdigit() for p in cached), cached
        deadline = time.monotonic() + 30
        while os.listdir(os.path.join(work, "trash")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.listdir(os.path.join(work, "trash")) == []
        assert len(set(_trash_threads()) - others) == 1
        assert kept.collectAsMap() == expected
    assert not os.path.exists(work)
    assert set(_trash_threads()) - others == set()


@register_func
def mod_pair(x):
    return (x % 7, 1)


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_a_state_kept_across_batches_holds_only_the_shuffles_since_its_last_checkpoint(master: str, tmp_path) -> None:
    """A running state (``state = state.union(batch).reduceByKey(add).cache()``, the old one unpersisted)
    checkpointed every third batch: the checkpoint cuts the lineage, so the shuffles under it (their map
    outputs, files and stages) go. Every shuffle ever run stayed before (one folder a batch)."""
    import gc
    with Context(master, quiet=True) as ctx:
        ctx.setCheckpointDir(str(tmp_path / "ckpt"))
        state = None
        for i in range(12):
            batch = ctx.parallelize(range(i * 70, (i + 1) * 70), 3).map(mod_pair)
            nxt = (batch if state is None else state.union(batch)).reduceByKey(add, 2).cache()
            if i % 3 == 2:
                nxt.checkpoint()
            assert nxt.collectAsMap() == {k: (i + 1) * 10 for k in range(7)}
            if state is not None:
                state.unpersist()
            state = nxt
            gc.collect()
        assert state.isCheckpointed()
        assert ctx.parallelize(range(4), 2).count() == 4           # drops what the last batch let go
        folders = glob.glob(os.path.join(ctx.work_dir, "shuffle", "shuffle-*"))
        assert len(folders) <= 3, folders       # the batches' since the checkpoint, not 12
        assert len(ctx.scheduler.shuffle_outputs) <= 3
        assert state.union(ctx.parallelize([(0, 1)], 1)).reduceByKey(add).collectAsMap()[0] == 121


@register_func
def fail_on_key_0(kv):
    if kv[0] == 0:
        raise ValueError("no key 0")
    return kv


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_a_failed_jobs_shuffles_go_before_the_next_job_with_no_gc_pass(master: str) -> None:
    """A failed job's error held its lineage in a reference cycle (the error, raised from a frame that held
    it, in its own traceback): its shuffles stayed until Python's next collection. Now they go when the
    app lets the error go, as a done job's do."""
    import gc
    gc.disable()
    try:
        with Context(master, quiet=True) as ctx:
            actions = [lambda r: r.collect(), lambda r: r.count(), lambda r: r.collectAsMap(),
                       lambda r: r.take(3), lambda r: r.reduce(add)]
            for act in actions:
                with pytest.raises(JobError, match="no key 0"):
                    act(ctx.parallelize(range(30), 3).map(partial(keyed, ctx.accumulator(0)))
                        .reduceByKey(add, 2).map(fail_on_key_0))
            assert ctx.parallelize(range(4), 2).count() == 4           # drops what the failed jobs let go
            assert glob.glob(os.path.join(ctx.work_dir, "shuffle", "shuffle-*")) == []
            assert ctx.scheduler.shuffle_outputs == {}
    finally:
        gc.enable()


@register_func
def fail_or_outlive_the_job(x):
    if x == 0:
        time.sleep(0.2)         # 4 attempts: the job fails while the other task sleeps, SIGTERM already ignored
        raise ValueError("partition 0 fails")
    signal.signal(signal.SIGTERM, signal.SIG_IGN)      # cancelled with its job, it still ends and writes its output
    time.sleep(1.5)
    return (x, x)


def test_a_map_output_written_after_its_job_failed_goes_with_its_shuffle() -> None:
    """A map task that ends after its job failed (here it outlives its cancel) wrote an output the scheduler
    never registers: it went with nothing before (its shuffle's folder was found from the registered
    outputs' paths: none), and stayed until stop. A dropped shuffle's folder now goes by the shuffle's id."""
    with Context("process:2", quiet=True) as ctx:
        with pytest.raises(JobError, match="partition 0 fails"):
            ctx.parallelize([0, 1], 2).map(fail_or_outlive_the_job).reduceByKey(add).collect()
        outputs = os.path.join(ctx.work_dir, "shuffle", "shuffle-*", "*")
        deadline = time.monotonic() + 30
        while not glob.glob(outputs) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(glob.glob(outputs)) == 1           # the late map task's
        assert ctx.parallelize(range(4), 2).count() == 4           # drops the failed job's shuffle
        assert glob.glob(os.path.join(ctx.work_dir, "shuffle", "shuffle-*")) == []


@register_func
def wide_pair(x):
    return (x, "v" * 200)


@register_func
def die_once_in_a_spilled_group(marker, kv):
    """Kills its worker outright the first time, past a reducer's spill (its files on disk)."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return len(kv[1])


def test_what_a_worker_killed_in_the_middle_of_a_spill_left_goes_with_it(tmp_path) -> None:
    """A reducer over its budget spills to disk; its worker killed outright (the OOM killer, say) leaves
    those files: they are removed when its death is seen, not at the Context's stop."""
    with Context("process:2", mem=1, quiet=True) as ctx:          # 1 MiB: a reducer spills
        spill = os.path.join(ctx.work_dir, "spill")
        groups = ctx.parallelize(range(30000), 2).map(wide_pair).groupByKey(1)
        marker = str(tmp_path / "died")
        assert groups.map(partial(die_once_in_a_spilled_group, marker)).sum() == 30000
        assert os.path.exists(marker)
        left = [os.path.join(root, f) for root, _dirs, files in os.walk(spill) for f in files]
        assert left == []


def test_a_loop_of_small_jobs_leaves_python_collecting_its_garbage() -> None:
    """A micro-batch loop (hundreds of small shuffle jobs on one Context, local mode: in the driver's own
    heap) does not grow: Python's own collections still run. A young collection that gopark made at every
    flush of a map task's buffers kept resetting the count that starts them, so no older generation was
    ever collected, and each job's cycles piled up (a driver 48 -> 143 MB in 100 jobs)."""
    import gc
    import operator
    with Context("local", quiet=True) as ctx:
        def job() -> None:
            pairs = ctx.parallelize(range(3000), 4).map(partial(keyed, ctx.accumulator(0)))
            assert len(pairs.reduceByKey(operator.add, 3).collectAsMap()) == 5
        for _ in range(20):
            job()
        before = len(gc.get_objects())
        for _ in range(150):
            job()
        grown = len(gc.get_objects()) - before
    assert grown < 5000, grown
