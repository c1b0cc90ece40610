"""SPEC section 6: broadcasts and accumulators, in every mode."""
from __future__ import annotations

import collections
import contextlib
import hashlib
import operator
import os
from functools import partial

import pytest
from apps import shared_app
from apps.funcs import add_to, count_call, peak_kib, peak_reset

from gopark import Context, JobError, SerializationError, register_func

# --- registered functions ------------------------------------------------------------------


@register_func
def lookup(table, x):
    return table.value[x % len(table.value)]


@register_func
def digest(b, x):
    return hashlib.sha256(b.value["blob"]).hexdigest(), len(b.value["numbers"])


@register_func
def value_identity(b, x):
    return os.getpid(), id(b.value)


@register_func
def add_as_list(acc, x):
    acc.add([x])


@register_func
def concat(a, b):
    return a + b


@register_func
def read_value(acc, x):
    return acc.value


@register_func
def set_value(acc, x):
    acc.value = x


@register_func
def keep_max(a, b):
    return max(a, b)


@register_func
def union(a, b):
    return a | b


@register_func
def add_as_set(acc, x):
    acc.add(frozenset([x % 5]))


@register_func
def fail_once(marker_dir, trigger, x):
    """The first attempt of the task holding ``trigger`` fails."""
    marker = os.path.join(marker_dir, "failed-once")
    if x == trigger and not os.path.exists(marker):
        with open(marker, "w"):
            pass
        raise RuntimeError("the first attempt fails")
    return x


@register_func
def divmod_pair(n, x):
    return x % n, [x]


@register_func
def add3(a, b):
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def nearest(centers, p):
    return min(range(len(centers)), key=lambda i: (p[0] - centers[i][0]) ** 2 + (p[1] - centers[i][1]) ** 2)


@register_func
def assign(centers_b, p):
    return nearest(centers_b.value, p), (p[0], p[1], 1)


@register_func
def add_then_fail_once(marker_dir, acc, trigger, x):
    """Adds ``x``; the first attempt of the task holding ``trigger`` then fails."""
    acc.add(x)
    if x == trigger:
        marker = os.path.join(marker_dir, "failed-once")
        if not os.path.exists(marker):
            with open(marker, "w"):
                pass
            raise RuntimeError("the first attempt fails after its adds")
    return x


# --- broadcast -----------------------------------------------------------------------------

def test_broadcast_read_in_tasks(ctx):
    table = ctx.broadcast(["zero", "one", "two"])
    assert table.value == ["zero", "one", "two"]
    assert ctx.parallelize(range(7), 3).map(partial(lookup, table)).collect() == [
        ["zero", "one", "two"][x % 3] for x in range(7)]


def test_large_broadcast(ctx):
    blob = bytes(range(256)) * (5 * 4096)            # 5 MiB
    numbers = list(range(100_000))
    b = ctx.broadcast({"blob": blob, "numbers": numbers})
    want = (hashlib.sha256(blob).hexdigest(), len(numbers))
    assert ctx.parallelize(range(8), 8).map(partial(digest, b)).collect() == [want] * 8


def test_a_process_loads_a_broadcast_once(ctx):
    b = ctx.broadcast({"blob": b"x" * 100_000, "numbers": [1, 2, 3]})
    seen = collections.defaultdict(set)
    for pid, ident in ctx.parallelize(range(16), 16).map(partial(value_identity, b)).collect():
        seen[pid].add(ident)
    assert all(len(ids) == 1 for ids in seen.values()), seen


def test_unpersist_keeps_the_value_and_destroy_ends_it(ctx):
    table = ctx.broadcast(["zero", "one", "two"])
    looked_up = ctx.parallelize(range(7), 3).map(partial(lookup, table))
    want = [["zero", "one", "two"][x % 3] for x in range(7)]
    assert looked_up.collect() == want
    table.unpersist()                      # copies dropped: read again when needed, as Spark's
    assert looked_up.collect() == want and table.value == ["zero", "one", "two"]
    table.destroy()
    with pytest.raises(SerializationError, match="was destroyed"):
        looked_up.collect()                # a job that still uses it: refused in the driver
    with pytest.raises(SerializationError, match="was destroyed"):
        ctx.parallelize(range(3)).map(partial(lookup, table))
    with pytest.raises(ValueError, match="was destroyed"):
        table.value                                     # noqa: B018
    assert not any(name.endswith(table.id) for name in os.listdir(ctx.work_dir))
    other = ctx.broadcast([5])             # the others are untouched
    assert ctx.parallelize(range(2), 2).map(partial(lookup, other)).collect() == [5, 5]


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_a_broadcasts_value_is_still_read_in_the_driver_after_stop(master):
    """DPark's driver keeps the value: ``value`` works after ``stop()``, read before it or not."""
    with Context(master, quiet=True) as ctx:
        read = ctx.broadcast([1, 2, 3])
        assert read.value == [1, 2, 3]
        unread = ctx.broadcast({"k": (1, 2)})
        assert ctx.parallelize([0, 1], 2).map(partial(lookup, read)).collect() == [1, 2]     # tasks read it
        destroyed = ctx.broadcast([0])
        destroyed.destroy()
        later = ctx.broadcast([9])
    assert not os.path.exists(ctx.work_dir)
    assert read.value == [1, 2, 3] and unread.value == {"k": (1, 2)}
    later.destroy()                                         # after stop, before its value was read
    for gone in (destroyed, later):
        with pytest.raises(ValueError, match="was destroyed"):
            gone.value                                      # noqa: B018


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_a_broadcast_of_a_stopped_context_is_refused_by_another_in_the_driver(master):
    """Its tasks' copy went with its Context's work folder: refused at the call (or at the action, for an
    RDD made while it was live), never a task failing on a missing file."""
    first = Context(master, quiet=True)
    with Context(master, quiet=True) as second:
        table = first.broadcast([7, 8])
        made_before = second.parallelize([0, 1], 2).map(partial(lookup, table))
        assert made_before.collect() == [7, 8]              # another live Context's broadcast: fine
        first.stop()
        with pytest.raises(SerializationError, match="belongs to a stopped Context.*ctx.broadcast"):
            second.parallelize([0, 1], 2).map(partial(lookup, table))
        with pytest.raises(SerializationError, match="belongs to a stopped Context"):
            made_before.collect()
        with pytest.raises(SerializationError, match="belongs to a stopped Context"):
            second.parallelize([table], 1)
        again = second.broadcast(table.value)               # its value, read in the driver, broadcast anew
        assert second.parallelize([0, 1], 2).map(partial(lookup, again)).collect() == [7, 8]


@register_func
def loaded_after_reading(broadcasts, x):
    """The broadcasts this process holds a copy of, after reading ``broadcasts``."""
    from gopark import shared
    values = [b.value for b in broadcasts]
    return os.getpid(), sorted(shared._loaded) if all(v is not None for v in values) else None


def test_workers_drop_their_copies_of_broadcasts_destroyed_unpersisted_or_dropped_by_the_app(ctx):
    """Spark's ContextCleaner and unpersist: before its next task, a worker drops its copy of a broadcast
    the driver destroyed, unpersisted (read again when a task needs it) or no longer has a handle of, so an
    iterative job that broadcasts a new value each round does not grow its workers."""
    import gc
    kept, gone, ended = ctx.broadcast([1]), ctx.broadcast([2]), ctx.broadcast([3])
    ids = {"kept": kept.id, "gone": gone.id, "ended": ended.id}
    first = dict(ctx.parallelize(range(16), 16).map(partial(loaded_after_reading, [kept, gone, ended])).collect())
    assert first and all(set(ids.values()) <= set(held) for held in first.values())
    ended.destroy()
    del gone
    gc.collect()
    second = ctx.parallelize(range(16), 16).map(partial(loaded_after_reading, [])).collect()
    for pid, held in second:
        assert ids["gone"] not in held and ids["ended"] not in held, held
        assert pid not in first or ids["kept"] in held, held      # still wanted: kept
    kept.unpersist()
    third = ctx.parallelize(range(16), 16).map(partial(loaded_after_reading, [])).collect()
    assert all(ids["kept"] not in held for _, held in third)
    again = ctx.parallelize(range(4), 4).map(partial(length_of, kept)).collect()
    assert again == [1] * 4 and kept.value == [1]       # loaded again where a task reads it


_reads: list = []     # every copy of a broadcast's value a task of this process read (kept: ids stay unique)


@register_func
def copy_read(b):
    """(this process, the id of the copy of ``b.value`` its task read)."""
    value = b.value
    _reads.append(value)
    return os.getpid(), id(value)


def _copies(rdd) -> dict:
    by_process: dict = {}
    for pid, copy in rdd.collect():
        by_process.setdefault(pid, set()).add(copy)
    return by_process


def test_a_broadcast_packed_into_data_is_loaded_once_per_generation(ctx):
    """A handle inside the records (parallelize's slices are packed at the call) is loaded once by each
    process, and once again after unpersist (not before every task: its generation is the task's, not the
    one of the call). Which process runs how many tasks is up to the scheduler: compared where they ran."""
    b = ctx.broadcast(list(range(100)))
    reads = ctx.parallelize([b] * 8, 8).map(copy_read)
    first, second = _copies(reads), _copies(reads)
    assert all(len(copies) == 1 for copies in [*first.values(), *second.values()])
    assert all(second[pid] == first[pid] for pid in first.keys() & second.keys())     # not loaded again
    b.unpersist()
    third, fourth = _copies(reads), _copies(reads)
    assert all(len(copies) == 1 for copies in [*third.values(), *fourth.values()])
    assert all(third[pid] != first[pid] for pid in first.keys() & third.keys())       # loaded again
    assert all(fourth[pid] == third[pid] for pid in third.keys() & fourth.keys())     # once


def test_two_local_contexts_keep_each_others_broadcast_copies():
    """Local mode runs the tasks of every Context of the process in it: a job of one Context drops only
    the copies of its own broadcasts that are gone."""
    from gopark import Context
    with Context("local", quiet=True) as c1, Context("local", quiet=True) as c2:
        b1 = c1.broadcast(list(range(100)))
        reads = c1.parallelize([b1] * 4, 4).map(copy_read)
        before = _copies(reads)
        c2.broadcast([2])
        c2.parallelize(range(2), 2).count()
        assert _copies(reads) == before and len(before[os.getpid()]) == 1


@register_func
def total_length(broadcasts, x):
    return sum(len(b.value) for b in broadcasts)


def test_unpersisting_from_another_thread_while_local_jobs_run():
    """The copies that a task drops are a snapshot of this process' (another thread unpersists meanwhile)."""
    import random
    import sys
    import threading
    import time

    from gopark import Context
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with Context("local", quiet=True) as c:
            bs = [c.broadcast([i]) for i in range(2000)]
            job = c.parallelize(range(4), 4).map(partial(total_length, bs))
            end = time.monotonic() + 1.5

            def unpersist_all():
                while time.monotonic() < end:
                    for b in bs:
                        b.unpersist()
                    time.sleep(random.random() / 100)       # in bursts, between a job's tasks
            other = threading.Thread(target=unpersist_all)
            other.start()
            try:
                while time.monotonic() < end:
                    assert job.collect() == [2000] * 4
            finally:
                other.join()
    finally:
        sys.setswitchinterval(switch)


@register_func
def value_of(b):
    return b.value


@register_func
def value_in(outer, x):
    return outer.value["inner"].value


@register_func
def plus_value(acc, pair):
    return acc + pair[0].value


@register_func
def add_to_zero(acc, v):
    return (acc[0].value if isinstance(acc, list) else acc) + v


def _broadcast_files(ctx) -> set:
    return {name for name in os.listdir(ctx.work_dir) if name.startswith("broadcast-")}


def test_a_dropped_broadcasts_file_goes_unless_packed_data_still_holds_it(ctx):
    """Spark's ContextCleaner: the driver's file of a broadcast whose handle the app dropped is removed, so
    an iterative job broadcasting each round does not fill the disk; but not while data packed with it
    (parallelize's records, a zero value, another broadcast's value) may still be read."""
    import gc
    before = _broadcast_files(ctx)
    kept = ctx.broadcast("kept")
    for i in range(3):
        dropped = ctx.broadcast(list(range(i + 10)))
        assert ctx.parallelize(range(4), 2).map(partial(length_of, dropped)).collect() == [i + 10] * 4
    del dropped
    gc.collect()
    assert _broadcast_files(ctx) - before == {f"broadcast-{kept.id}"}
    in_records = ctx.broadcast("in records")
    records = ctx.parallelize([in_records] * 4, 2).map(value_of)
    in_zero = ctx.broadcast(5)
    pairs = ctx.parallelize([(in_zero, "a")], 1)
    of_zero = ctx.broadcast(100)
    summed = ctx.parallelize([("k", 1), ("k", 2)], 2).aggregateByKey([of_zero], add_to_zero, operator.add)
    inner = ctx.broadcast("inner")
    outer = ctx.broadcast({"inner": inner})
    del in_records, in_zero, inner, of_zero
    gc.collect()
    assert records.collect() == ["in records"] * 4 and records.collect() == ["in records"] * 4
    assert pairs.map(partial(plus_value, 1)).collect() == [6]
    assert summed.collectAsMap() == {"k": 203}           # each map task starts from its own zero
    assert ctx.parallelize(range(2), 2).map(partial(value_in, outer)).collect() == ["inner"] * 2
    del records
    gc.collect()
    assert len(_broadcast_files(ctx) - before) == 5        # kept, in_zero (pairs), of_zero (summed), inner, outer


@register_func
def append_to_value(b, x):
    b.value.append(x)
    return len(b.value)


def test_a_task_gets_a_copy_of_the_broadcast_in_every_mode(ctx):
    """Local mode too: a task never sees (or changes) the driver's own object, as in process mode; the
    driver's value is the one packed at the call too (PySpark's), whatever the app does to its object."""
    original = [1, 2]
    b = ctx.broadcast(original)
    original.append(3)
    assert ctx.parallelize(range(3), 1).map(partial(append_to_value, b)).collect() == [3, 4, 5]
    assert original == [1, 2, 3] and b.value == [1, 2] and b.value is b.value


def kmeans_reference(points, centers, iterations):
    for _ in range(iterations):
        sums = {}
        for p in points:
            i = nearest(centers, p)
            s = sums.get(i, (0, 0, 0))
            sums[i] = (s[0] + p[0], s[1] + p[1], s[2] + 1)
        centers = [(sums[i][0] / sums[i][2], sums[i][1] / sums[i][2]) if i in sums else c
                   for i, c in enumerate(centers)]
    return centers


def test_iterative_job_with_new_broadcasts_and_a_cached_rdd(ctx):
    points_data = [((i * 37) % 101, (i * 59) % 103) for i in range(600)]
    initial = [(0.0, 0.0), (50.0, 50.0), (100.0, 0.0), (0.0, 100.0)]
    computed = ctx.accumulator(0)
    points = ctx.parallelize(points_data, 4).map(partial(count_call, computed)).cache()
    centers = initial
    for _ in range(5):
        b = ctx.broadcast(centers)
        sums = points.map(partial(assign, b)).reduceByKey(add3, numSplits=3).collectAsMap()
        centers = [(sums[i][0] / sums[i][2], sums[i][1] / sums[i][2]) if i in sums else c
                   for i, c in enumerate(centers)]
    assert centers == kmeans_reference(points_data, initial, 5)
    assert computed.value == len(points_data)            # the cached points were computed once


def _map_outputs(ctx) -> int:
    root = os.path.join(ctx.work_dir, "shuffle")
    return sum(len(os.listdir(os.path.join(root, s))) for s in os.listdir(root)) if os.path.isdir(root) else 0


def test_an_iterative_job_leaves_only_its_last_rounds_shuffles_and_broadcasts(ctx):
    """Spark's ContextCleaner: the shuffles of RDDs the app no longer holds (each round's, in a loop), their
    map outputs on this machine and the broadcasts of dropped handles go before the next job: a long
    iterative job does not fill the disk. A shuffle still held is kept and reused."""
    points_data = [((i * 37) % 101, (i * 59) % 103) for i in range(600)]
    points = ctx.parallelize(points_data, 4).cache()
    kept = points.map(partial(assign, ctx.broadcast([(0.0, 0.0)]))).reduceByKey(add3, numSplits=3)
    kept_sums = kept.collectAsMap()
    after_kept, files_before = _map_outputs(ctx), _broadcast_files(ctx)
    centers = [(0.0, 0.0), (50.0, 50.0), (100.0, 0.0), (0.0, 100.0)]
    for _ in range(6):
        b = ctx.broadcast(centers)
        sums = points.map(partial(assign, b)).reduceByKey(add3, numSplits=3).collectAsMap()
        centers = [(sums[i][0] / sums[i][2], sums[i][1] / sums[i][2]) if i in sums else c
                   for i, c in enumerate(centers)]
    assert centers == kmeans_reference(points_data, [(0.0, 0.0), (50.0, 50.0), (100.0, 0.0), (0.0, 100.0)], 6)
    ctx.parallelize(range(2), 2).count()                   # the next job: the last round's shuffle is let go
    assert _map_outputs(ctx) == after_kept                  # the kept shuffle's outputs only
    assert _broadcast_files(ctx) == files_before | {f"broadcast-{b.id}"}      # the last round's only
    assert kept.collectAsMap() == kept_sums and _map_outputs(ctx) == after_kept   # its map stage not run again


def _worker_envs():
    """The WorkerEnvs of the process running this task: the one its task was given (found on the stack: a
    worker makes its own before it keeps what its start made out of the garbage collector's lists), and
    any other the collector knows of (in local mode, other Contexts' too)."""
    import gc
    import sys

    from gopark.task import WorkerEnv, run_task
    envs = {id(env): env for env in gc.get_objects() if isinstance(env, WorkerEnv)}
    frame = sys._getframe(1)
    while frame is not None:      # (only run_task's locals are read: reading a frame's keeps them alive)
        if frame.f_code is run_task.__code__:
            env = frame.f_locals["env"]
            envs[id(env)] = env
        frame = frame.f_back
    assert envs, "no WorkerEnv found"
    return list(envs.values())


@register_func
def held_cached(_x):
    """The ids of the RDDs whose cached partitions the process running this task holds in memory (or
    still notes the generation of)."""
    envs = _worker_envs()
    return sorted({key[0] for env in envs for key in env.cache} | {i for env in envs for i in env.generations})


def _cached_ids(ctx) -> set[int]:
    """RDDs with cached partitions: in the memory of the processes that run a job's tasks, or on disk."""
    held = {i for ids in ctx.parallelize(range(8), 8).map(held_cached).collect() for i in ids}
    folder = os.path.join(ctx.work_dir, "cache")
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return held | {int(n.split("-")[0]) for n in names if n.split("-")[0].isdigit()}


def test_cached_partitions_of_rdds_let_go_or_unpersisted_are_dropped(ctx):
    """Spark's ContextCleaner and unpersist: the cached partitions of an RDD the app no longer holds, or
    unpersisted, leave the workers' memory and disk before the next job; an iterative job that caches each
    round keeps only its last round's. An RDD still held stays cached (not computed again)."""
    computed = ctx.accumulator(0)
    kept = ctx.parallelize(range(40), 4).map(partial(count_call, computed)).cache()
    assert kept.count() == 40
    rounds = []
    for _ in range(3):
        r = ctx.parallelize(range(40), 4).map(str).cache()
        assert r.count() == 40
        rounds.append(r.id)
    u = ctx.parallelize(range(40), 4).map(str).cache()
    assert u.count() == 40
    before = _cached_ids(ctx)
    assert {kept.id, r.id, u.id} <= before and not before & set(rounds[:-1])   # earlier rounds' already gone
    u.unpersist()
    del r
    assert _cached_ids(ctx) == {kept.id}
    assert kept.count() == 40 and computed.value == 40 and u.count() == 40


@register_func
def held_bytes(work_dir, _x):
    """The bytes of cached partitions the process running this task holds in memory for the Context
    whose work folder is ``work_dir`` (in local mode, other Contexts of the test run live here too)."""
    return sum(len(p) for env in _worker_envs() if env.work_dir == work_dir for p in env.cache.values())


@register_func
def block_of_text(calls, i):
    calls.add(1)
    return [f"{i:02d}-{j:06d}-" + "x" * 90 for j in range(3000)]      # about 300 KB a partition


@register_func
def lines_of_text(calls, i):
    calls.add(1)
    return [f"{i:02d}-{j:06d}-" + "x" * 90 for j in range(1000)]      # about 100 KB a partition


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_cached_partitions_take_at_most_half_the_budget_in_memory_and_the_rest_are_read_from_disk(master):
    """A cached RDD larger than the memory budget (``--mem``) does not grow a worker, or the driver in
    local mode, past it: the memory copies take at most half of it, the oldest leave first, and a
    partition no longer in memory is read from its disk copy (computed once all the same); unpersisted,
    its disk copies go."""
    with Context(master, mem=1, quiet=True) as ctx:          # 1 MiB: room for five partitions in memory
        computed = ctx.accumulator(0)
        big = ctx.parallelize(range(16), 16).flatMap(partial(lines_of_text, computed)).cache()
        assert big.count() == 16000
        assert sorted(big.collect()) == sorted(f"{i:02d}-{j:06d}-" + "x" * 90 for i in range(16) for j in range(1000))
        assert big.map(len).sum() == 16000 * 100
        assert computed.value == 16
        held = ctx.parallelize(range(8), 8).map(partial(held_bytes, ctx.work_dir)).collect()
        assert 0 < max(held) <= (1 << 20) // 2, held
        cache_folder = os.path.join(ctx.work_dir, "cache")
        assert len(os.listdir(cache_folder)) >= 11          # those memory cannot hold at least
        big.unpersist()
        assert ctx.parallelize([1], 1).count() == 1          # drops big
        assert os.listdir(cache_folder) == []


@register_func
def kilobyte_lines(calls, n, i):
    calls.add(1)
    return (f"{i}-{j:07d}-".ljust(1000, "x") for j in range(n))


@pytest.mark.parametrize("master", ["local", "process:1"])
def test_a_cached_partition_bigger_than_memory_goes_to_disk_as_it_is_computed(master):
    """A cached partition whose packed copy outgrows an eighth of ``--mem`` is written to disk as it is
    packed, and read back from there, by this task and the next: 80 MB of records cached under
    ``--mem 32`` grow the process running the task by less than the budget (it grew by 160 MB when the
    copy was made in memory, then joined), no memory copy of it is kept, and it is computed once."""
    with Context(master, mem=32, quiet=True) as ctx:
        computed = ctx.accumulator(0)
        before = ctx.parallelize([0], 1).map(peak_reset).collect()[0]
        big = ctx.parallelize([7], 1).flatMap(partial(kilobyte_lines, computed, 80_000)).cache()
        assert big.count() == 80_000
        grown = ctx.parallelize([0], 1).map(peak_kib).collect()[0] - before
        assert grown < 32 * 1024, f"grew by {grown} KiB"
        assert big.map(len).sum() == 80_000 * 1000
        assert big.filter(partial(operator.eq, "7-0012345-".ljust(1000, "x"))).count() == 1
        assert computed.value == 1
        assert ctx.parallelize([0], 1).map(partial(held_bytes, ctx.work_dir)).collect() == [0]
        left = [name for name in os.listdir(os.path.join(ctx.work_dir, "cache")) if not name.endswith(".lock")]
        assert left == [f"{big.id}-0"]          # (no temporary file, no published copy, no owner file)


@register_func
def lines_dying_once(marker, i):
    """1 KB lines; the process dies (SIGKILL) halfway through the first time, as an OOM kill would."""
    import signal
    for j in range(20_000):
        if j == 10_000 and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        yield f"{i}-{j:07d}-".ljust(1000, "x")


def test_a_worker_killed_while_it_writes_a_cached_partition_to_disk_leaves_no_part_of_it(tmp_path):
    """The copy a task writes as it computes a partition memory cannot hold is made in its worker's spill
    folder, removed when the worker dies: a worker killed halfway leaves nothing of it (it left a 10 MB
    temporary file in the cache folder until the Context stopped), and the retry caches it whole."""
    with Context("process:1", mem=8, quiet=True) as ctx:
        lines = ctx.parallelize([5], 1).flatMap(partial(lines_dying_once, str(tmp_path / "died"))).cache()
        assert lines.count() == 20_000
        assert lines.map(len).sum() == 20_000 * 1000
        left = [os.path.relpath(os.path.join(d, f), ctx.work_dir) for folder in ("cache", "spill")
                for d, _, files in os.walk(os.path.join(ctx.work_dir, folder)) for f in files
                if not f.endswith(".lock")]
        assert left == [os.path.join("cache", f"{lines.id}-0")], left
    assert (tmp_path / "died").exists()


def test_files_of_cached_copies_and_cartesian_products_are_closed_even_when_left_unread(tmp_path):
    """A cached partition's disk copy is open while its records are read, and closed also when the reading
    never starts (a zip whose other side failed); a cartesian product's right-hand records packed to a
    temporary file have it closed when the product is done, or left after a take: Python's development
    mode reports no unclosed file."""
    import subprocess
    import sys
    script = tmp_path / "unread.py"
    script.write_text(
        "import os, sys\n"
        "from functools import partial\n"
        "sys.path.insert(0, os.path.join(sys.argv[1], 'tests'))\n"
        "from test_shared import kilobyte_lines\n"
        "from gopark import Context, JobError, register_func\n"
        "@register_func\n"
        "def bad(x):\n"
        "    raise ValueError('no')\n"
        "if __name__ == '__main__':\n"
        "    for master in ('local', 'process:1'):\n"
        "        with Context(master, mem=1, quiet=True, max_failures=1) as ctx:\n"
        "            calls = ctx.accumulator(0)\n"
        "            big = ctx.parallelize([1], 1).flatMap(partial(kilobyte_lines, calls, 3000)).cache()\n"
        "            assert big.count() == 3000\n"
        "            try:\n"
        "                big.map(bad).zip(big).count()\n"
        "            except JobError:\n"
        "                pass\n"
        "            pairs = ctx.parallelize([1, 2], 1).cartesian(big)\n"
        "            assert pairs.count() == 6000 and len(pairs.take(3)) == 3\n"
        "    print('done')\n")
    env = dict(os.environ, PYTHONDEVMODE="1")
    ran = subprocess.run([sys.executable, str(script), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))],
                         capture_output=True, text=True, timeout=120, env=env)
    assert ran.returncode == 0 and "done" in ran.stdout, ran.stderr
    assert "ResourceWarning" not in ran.stderr, ran.stderr


@register_func
def int_lists(n, i):
    return ([i * 10**6 + j * 100 + k + 300 for k in range(100)] for j in range(n))   # 100 ints: 3.6 KB as objects


@pytest.mark.parametrize("master", ["local", "process:1"])
def test_the_objects_a_cached_partition_keeps_for_its_first_read_are_sized_as_objects(master):
    """The task that caches a partition reads its first pass from the computed objects while they are
    small, sized as objects (not by their packed copy), and packs them in batches of about 1 MB as objects:
    10k lists of 100 ints (4.9 MB packed, 36 MB as objects) cached under ``--mem 64`` grew a worker by 57
    MB (kept until their packed copy passed 1/16 of ``--mem``, the first batch 4096 of them whatever
    their size), now by about 23 MB."""
    with Context(master, mem=64, quiet=True) as ctx:
        before = ctx.parallelize([0], 1).map(peak_reset).collect()[0]
        rows = ctx.parallelize([3], 1).flatMap(partial(int_lists, 10_000)).cache()
        assert rows.map(len).sum() == 10_000 * 100
        grown = ctx.parallelize([0], 1).map(peak_kib).collect()[0] - before
        assert grown < 32 * 1024, f"grew by {grown} KiB"         # (half the budget)
        assert rows.map(sum).sum() == sum(map(sum, int_lists(10_000, 3)))


def test_a_damaged_disk_copy_of_a_cached_partition_fails_its_task_instead_of_giving_fewer_records():
    """A cached partition's disk copy cut short (damaged from outside: they are written whole, renamed into
    place) is an error where it is read; msgpack's reader would have ended there as if it were whole."""
    import glob
    with Context("process:2", mem=1, quiet=True) as ctx:          # most partitions are read from disk
        big = ctx.parallelize(range(8), 8).flatMap(partial(block_of_text, ctx.accumulator(0))).cache()
        assert big.count() == 24000
        for path in glob.glob(os.path.join(ctx.work_dir, "cache", f"{big.id}-*")):
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)
        with pytest.raises(JobError, match="cached partition's copy is cut short"):
            big.count()


def test_a_cached_partition_local_mode_cannot_write_to_disk_leaves_no_part_of_it(tmp_path):
    """Local mode moves the cached partitions memory cannot hold to disk; one whose write fails (a full disk:
    here a file size limit) is dropped with a warning, computed again when needed, and leaves no partial
    file (its temporary file stayed, and unpersist did not remove it)."""
    import subprocess
    import sys
    script = tmp_path / "full_disk.py"
    script.write_text(
        "import os, resource, signal, sys\n"
        "from functools import partial\n"
        "sys.path.insert(0, os.path.join(sys.argv[1], 'tests'))\n"
        "from test_shared import block_of_text\n"
        "from gopark import Context\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))\n"
        "with Context('local', mem=1) as ctx:\n"
        "    calls = ctx.accumulator(0)\n"
        "    big = ctx.parallelize(range(6), 6).flatMap(partial(block_of_text, calls)).cache()\n"
        "    assert big.count() == 18000 and big.count() == 18000, calls.value\n"
        "    folder = os.path.join(ctx.work_dir, 'cache')\n"
        "    print('left', sorted(os.listdir(folder)) if os.path.isdir(folder) else [])\n"
        "    print('computed', calls.value)\n")
    ran = subprocess.run([sys.executable, str(script), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))],
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert "left []" in ran.stdout, ran.stdout
    assert "not written to disk" in ran.stderr and "File too large" in ran.stderr
    computed = int(ran.stdout.split("computed")[1])
    assert 6 < computed <= 12            # those dropped, computed again by the second count


@register_func
def small_row(i):
    return (i, (i % 977, i % 13, i / 7.0))


@register_func
def peak_rss_mib(_x):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def test_a_partition_being_cached_is_held_packed_not_also_as_a_list_of_its_records():
    """A cached partition is packed a batch at a time as it is computed, and read back a batch at a time:
    a worker given a small ``--mem`` does not hold the whole partition as objects besides its packed copy
    (400k small tuples: +105 MiB of peak RSS before, +28 MiB now, most of it the packed copy)."""
    with Context("process:1", mem=16, quiet=True) as ctx:
        before = ctx.parallelize([0], 1).map(peak_rss_mib).collect()[0]
        rows = ctx.parallelize(range(400_000), 1).map(small_row).cache()
        assert rows.count() == 400_000
        assert rows.map(len).sum() == 800_000
        assert rows.filter(partial(operator.eq, (5, (5, 5, 5 / 7.0)))).collect() == [(5, (5, 5, 5 / 7.0))]
        after = ctx.parallelize([0], 1).map(peak_rss_mib).collect()[0]
        assert after - before < 50, (before, after)


@register_func
def slow_count_call(acc, x):
    import time
    acc.add(1)
    time.sleep(0.05)        # the partitions spread over every worker
    return x


def test_an_rdd_unpersisted_then_cached_again_is_computed_afresh_on_every_worker():
    """The workers that ran no task of the job that dropped it still hold the old copies in memory: they
    must not serve them once the RDD is cached again (each cache() after a drop is a new generation)."""
    with Context("process:4", quiet=True) as ctx:
        adds = ctx.accumulator(0)
        xs = ctx.parallelize(range(16), 16).map(partial(slow_count_call, adds)).cache()
        assert xs.count() == 16 and adds.value == 16
        xs.unpersist()
        assert ctx.parallelize([1], 1).count() == 1          # drops xs: one worker runs this job's task
        xs.cache()
        assert xs.count() == 16 and adds.value == 32           # every partition computed again, once
        assert xs.count() == 16 and adds.value == 32           # ... and cached again


@register_func
def destroy_in_task(b, x):
    b.destroy()
    return x


@register_func
def unpersist_in_task(b, x):
    b.unpersist(blocking=True)
    return x


def test_a_broadcast_is_unpersisted_or_destroyed_in_the_driver_only(ctx):
    """PySpark's: blocking= is taken (and changes nothing here); a task that tries fails."""
    b = ctx.broadcast([1])
    for f in (destroy_in_task, unpersist_in_task):
        with pytest.raises(JobError, match="RuntimeError: .* can only be (destroyed|unpersisted) in the driver"):
            ctx.parallelize([1], 1).map(partial(f, b)).collect()
    b.unpersist(blocking=True)
    assert ctx.parallelize([1], 1).map(partial(length_of, b)).collect() == [1]
    b.destroy(blocking=True)
    with pytest.raises(ValueError, match="was destroyed"):
        b.value                                         # noqa: B018


def test_data_packed_with_a_broadcast_destroyed_since_is_refused_at_the_call(ctx):
    """parallelize's records and a zero value are packed at their call: a job on them after the broadcast
    they hold was destroyed is a SerializationError in the driver, as for a function given it."""
    b = ctx.broadcast(100)
    records = ctx.parallelize([b, b], 2)
    summed = ctx.parallelize([("k", 1), ("k", 2)], 2).aggregateByKey([b], add_to_zero, operator.add)
    assert records.map(value_of).collect() == [100, 100]
    b.destroy()             # (summed not run yet: a shuffle already written would not need its zero value)
    for job in (records.count, summed.collectAsMap):
        with pytest.raises(SerializationError, match="was destroyed"):
            job()
    with pytest.raises(SerializationError, match="was destroyed"):       # packed after: at the call
        ctx.parallelize([("k", 1)], 1).aggregateByKey([b], add_to_zero, operator.add)


# --- accumulators --------------------------------------------------------------------------

@register_func
def add_in_place(total, more):
    for i, x in enumerate(more):
        total[i] += x
    return total


@register_func
def added(acc, x):
    acc.add(x)
    return x


@register_func
def added_value(acc, b, x):
    acc.add(b.value)
    return b.value


def test_a_merge_that_adds_in_place_changes_neither_the_records_nor_a_broadcast(ctx):
    """PySpark's VectorAccumulatorParam adds in place: a task's first update is its own copy, so the merge
    does not change the record added, nor a broadcast's value that every task of the worker reads."""
    vectors = ctx.accumulator([0.0, 0.0], add_in_place)
    records = ctx.parallelize([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]], 1).map(partial(added, vectors)).collect()
    assert records == [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]] and vectors.value == [6.0, 6.0]
    from_broadcast = ctx.accumulator([0.0, 0.0], add_in_place)
    b = ctx.broadcast([1.0, 1.0])
    seen = ctx.parallelize(range(3), 1).map(partial(added_value, from_broadcast, b)).collect()
    assert seen == [[1.0, 1.0]] * 3 and from_broadcast.value == [3.0, 3.0]
    assert ctx.parallelize(range(2), 1).map(partial(length_of, b)).collect() == [2, 2]


def test_accumulator_with_foreach(ctx):
    acc = ctx.accumulator(0)
    data = list(range(-10, 100))
    ctx.parallelize(data, 4).foreach(partial(add_to, acc))
    assert acc.value == sum(data)
    ctx.parallelize(data, 3).foreach(partial(add_to, acc))
    assert acc.value == 2 * sum(data)


@register_func
def accumulators_alive(_records):
    import gc

    from gopark.shared import Accumulator
    yield sum(isinstance(o, Accumulator) for o in gc.get_objects())


def test_an_accumulator_the_app_let_go_is_not_kept(ctx):
    """One accumulator a job (the usual pattern): neither the driver nor a worker keeps those the app
    dropped (each stayed for the Context's life: ~0.5 kB a job, in every process)."""
    import gc
    import weakref
    data = ctx.parallelize(range(8), 4)
    probe = ctx.parallelize(range(8), 8).mapPartitions(accumulators_alive)
    before = max(probe.collect())         # named ones, of other tests in this process
    gone = []
    for _ in range(30):
        acc = ctx.accumulator(0)
        data.foreach(partial(add_to, acc))
        assert acc.value == 28
        gone.append(weakref.ref(acc))
        del acc
    gc.collect()
    assert [r for r in gone if r() is not None] == []
    kept = ctx.accumulator(0)
    data.foreach(partial(add_to, kept))
    assert kept.value == 28
    assert max(probe.collect()) <= before + 1


def test_accumulator_starts_from_its_initial_value(ctx):
    acc = ctx.accumulator(1000)
    assert acc.value == 1000
    ctx.parallelize([1, 2, 3], 2).foreach(partial(add_to, acc))
    assert acc.value == 1006


def test_accumulator_with_custom_merge(ctx):
    data = [3, -7, 42, 5, 41]
    high = ctx.accumulator(0, merge=keep_max)
    ctx.parallelize(data, 3).foreach(partial(add_to, high))
    assert high.value == 42

    seen = ctx.accumulator([], merge=concat)
    ctx.parallelize(data, 3).foreach(partial(add_as_list, seen))
    assert sorted(seen.value) == sorted(data)

    residues = ctx.accumulator(frozenset(), merge=union)
    ctx.parallelize(range(20), 4).foreach(partial(add_as_set, residues))
    assert residues.value == frozenset(range(5))


def test_module_level_accumulator_found_by_name(ctx):
    before = shared_app.HITS.value
    assert ctx.parallelize(range(25), 4).map(shared_app.hit).count() == 25
    assert shared_app.HITS.value == before + 25

    total_before = shared_app.TOTAL.value
    assert ctx.parallelize(range(10), 3).map(shared_app.add_half).collect() == list(range(10))
    assert shared_app.TOTAL.value == total_before + 5.0


@pytest.mark.parametrize("use", [read_value, set_value], ids=["read", "set"])
def test_a_task_may_not_read_or_set_an_accumulators_value(ctx, use):
    """In local mode a task would see the driver's value, in a worker its own: refused in every mode, as Spark does."""
    for acc in (ctx.accumulator(5), shared_app.HITS):
        before = acc.value
        with pytest.raises(JobError, match="a task can only add to an accumulator") as failed:
            ctx.parallelize([1, 2], 2).map(partial(use, acc)).collect()
        assert failed.value.remote_type == "RuntimeError"
        assert acc.value == before


def test_retried_task_counts_once(ctx, tmp_path):
    acc = ctx.accumulator(0)
    data = list(range(1, 41))
    out = ctx.parallelize(data, 4).map(partial(add_then_fail_once, str(tmp_path), acc, 25)).collect()
    assert out == data
    assert os.path.exists(tmp_path / "failed-once")      # the first attempt did fail
    assert acc.value == sum(data)


def test_retried_map_task_counts_once(ctx, tmp_path):
    acc = ctx.accumulator(0)
    data = list(range(1, 41))
    rdd = ctx.parallelize(data, 4).map(partial(add_then_fail_once, str(tmp_path), acc, 7))
    assert rdd.map(partial(divmod_pair, 3)).reduceByKey(concat).count() == 3
    assert os.path.exists(tmp_path / "failed-once")
    assert acc.value == sum(data)


@register_func
def lose_map_outputs_once(work_dir, marker_dir, kv):
    """The first time: remove every map output of the Context (as a lost disk or executor would)."""
    import glob
    marker = os.path.join(marker_dir, "lost-once")
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        for output in glob.glob(os.path.join(work_dir, "shuffle", "shuffle-*", "*")):
            with contextlib.suppress(FileNotFoundError):
                os.remove(output)
    return kv


@register_func
def mod8_pair(x):
    return (x % 8, x)


def test_outputs_lost_at_once_and_seen_one_reducer_at_a_time_are_one_loss(ctx, tmp_path):
    """64 map outputs removed at once: the reducers running meanwhile see them go one by one, each a fetch
    failure; they count as one loss (the job would fail after max_failures of them), and the job ends."""
    rdd = ctx.parallelize(range(2000), 64).map(mod8_pair).reduceByKey(operator.add, 8)
    got = rdd.map(partial(lose_map_outputs_once, ctx.work_dir, str(tmp_path))).collectAsMap()
    assert got == {k: sum(x for x in range(2000) if x % 8 == k) for k in range(8)}
    assert os.path.exists(tmp_path / "lost-once")


def test_map_tasks_run_again_for_lost_outputs_count_once(ctx, tmp_path):
    """The first reducer removes every map output: the others' fetches fail, the map stage runs again;
    the result is exact and the map side's updates count once (SPEC section 6: a retried task's updates)."""
    acc = ctx.accumulator(0)
    pairs = ctx.parallelize(range(1000), 4).map(partial(count_call, acc)).map(mod8_pair)
    got = pairs.reduceByKey(operator.add, 4).map(partial(lose_map_outputs_once, ctx.work_dir, str(tmp_path)))
    assert got.collectAsMap() == {k: sum(x for x in range(1000) if x % 8 == k) for k in range(8)}
    assert os.path.exists(tmp_path / "lost-once")
    assert acc.value == 1000


def test_retried_task_over_a_cached_rdd_counts_once(ctx, tmp_path):
    """The first attempt computes and caches the partition, then fails; its retry reads the cache.

    Every record went through ``count_call`` exactly once, so the total must be the number of records.
    """
    acc = ctx.accumulator(0)
    cached = ctx.parallelize(range(10), 2).map(partial(count_call, acc)).cache()
    assert cached.map(partial(fail_once, str(tmp_path), 3)).collect() == list(range(10))
    assert os.path.exists(tmp_path / "failed-once")
    assert cached.count() == 10                       # computed once: later jobs read the cache
    assert acc.value == 10


@register_func
def length_of(b, x):
    return len(b.value)


def test_broadcast_copies_loaded_in_the_driver_go_with_their_handle_and_context():
    """Local mode: a task's copy of a broadcast is dropped when the app drops the broadcast, or at stop()."""
    import gc

    from gopark import Context, shared
    with Context("local", quiet=True) as c:
        kept = c.broadcast(list(range(1000)))
        dropped_ids = []
        for _ in range(3):
            dropped = c.broadcast(list(range(1000)))
            assert c.parallelize([1], 1).map(partial(length_of, dropped)).collect() == [1000]
            assert dropped.id in shared._loaded
            dropped_ids.append(dropped.id)
            del dropped
            gc.collect()
        assert c.parallelize([1], 1).map(partial(length_of, kept)).collect() == [1000]
        assert kept.id in shared._loaded and not set(dropped_ids) & set(shared._loaded)
    assert kept.id not in shared._loaded


def test_a_named_accumulator_made_again_is_the_same_and_another_one_under_its_name_is_refused():
    import gopark
    first = gopark.accumulator(0, name="tests.shared.dup")
    assert gopark.accumulator(0, name="tests.shared.dup") is first       # its module run again
    for init, merge in ((5, None), (0.0, None), (0, concat)):
        with pytest.raises(ValueError, match="accumulator name 'tests.shared.dup' is taken"):
            gopark.accumulator(init, merge, name="tests.shared.dup")
    nan = gopark.accumulator(float("nan"), name="tests.shared.nan")
    assert gopark.accumulator(float("nan"), name="tests.shared.nan") is nan
    other_module: dict = {"gopark": gopark, "__name__": "app.other"}     # the same init and merge, another module
    with pytest.raises(ValueError, match="'tests.shared.dup' is taken .* by module test_shared"):
        exec("gopark.accumulator(0, name='tests.shared.dup')", other_module)
    same_module = {"gopark": gopark, "__name__": __name__}   # its code run again (a notebook's cell run twice)
    exec(compile("made = gopark.accumulator(0, name='tests.shared.dup')", "<cell 2>", "exec"), same_module)
    assert same_module["made"] is first
    for name in (5, ("a",), ""):
        with pytest.raises(TypeError, match="accumulator: name is a non-empty str"):
            gopark.accumulator(0, name=name)
