"""What is particular to process mode: memory budgets, stopping, scripts, Ctrl-C and kill, a private endpoint."""
from __future__ import annotations

import atexit
import glob
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from functools import partial

import pytest
from apps.procs import alive, children, listening_tcp, pids_with_env, socket_inodes, unix_socket_paths, wait_until

from gopark import Context, JobError, register_func

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps")


@register_func
def mod_pair(n, x):
    return (x % n, x)


@register_func
def add(a, b):
    return a + b


@register_func
def wrong_sum(n, kv):
    """True unless the value of key k is k + (k + n), the sum of the two records that have it."""
    k, v = kv
    return v != 2 * k + n


@register_func
def big_value(n, x):
    return (x % n, f"{x:08d}" + "v" * 1000)


@register_func
def wrong_group(n, copies, kv):
    k, values = kv
    return sorted(values) != [f"{k + i * n:08d}" + "v" * 1000 for i in range(copies)]


@register_func
def pid_of(x):
    return os.getpid()


@register_func
def always_fails(x):
    raise RuntimeError("no")


def work_dirs(pid: int) -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), f"gopark-{pid}-*")))


# --- memory ----------------------------------------------------------------------------------

def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


@pytest.mark.parametrize("master", ["process:2", "local"])
def test_shuffle_bigger_than_the_memory_budget(master):
    before = children()
    keys = 200_000
    with Context(master, mem=30, quiet=True) as ctx:
        # 400k records, 100k distinct keys per reducer: more than 30 MB of dict per task
        sums = ctx.parallelize(range(2 * keys), 4).map(partial(mod_pair, keys)).reduceByKey(add, numSplits=2)
        assert sums.count() == keys
        assert sums.filter(partial(wrong_sum, keys)).count() == 0

        # 300 MB of values in 300 groups: about 150 MB per reducer
        groups_n, copies = 300, 1000
        groups = ctx.parallelize(range(groups_n * copies), 6).map(partial(big_value, groups_n)).groupByKey(2)
        assert groups.count() == groups_n
        assert groups.filter(partial(wrong_group, groups_n, copies)).count() == 0
        if master.startswith("process"):
            peaks = {pid: peak_rss_mb(pid) for pid in children() - before}
            assert len(peaks) == 2
            assert all(mb < 120 for mb in peaks.values()), f"peak RSS of the workers (MB): {peaks}"


@register_func
def out_of_order(kv_pairs):
    """The number of neighbours out of order in a partition of (key, value) pairs, and the records seen."""
    bad = n = 0
    last = None
    for k, _ in kv_pairs:
        bad += last is not None and k < last
        last, n = k, n + 1
    return [(bad, n)]


def test_sort_of_large_values_stays_near_the_memory_budget():
    """A record's size counts its value: a sort of 300 MB of 1 kB values under --mem 8 spills runs of about
    the budget and merges them a small chunk of each at a time (workers peaked at 39 MB here, 115 MB before)."""
    before = children()
    n = 300_000
    with Context("process:2", mem=8, quiet=True) as ctx:
        sorted_rdd = ctx.parallelize(range(n), 4).map(partial(big_value, 1_000_003)).sortByKey(numSplits=2)
        parts = sorted_rdd.mapPartitions(out_of_order).collect()
        assert [bad for bad, _ in parts] == [0, 0] and sum(seen for _, seen in parts) == n
        peaks = {pid: peak_rss_mb(pid) for pid in children() - before}
    assert len(peaks) == 2
    assert all(mb < 60 for mb in peaks.values()), f"peak RSS of the workers (MB): {peaks}"


# --- stopping --------------------------------------------------------------------------------

def test_stop_ends_workers_and_removes_the_work_folder(tmp_path):
    before, dirs_before = children(), work_dirs(os.getpid())
    ctx = Context("process:2", quiet=True)
    rdd = ctx.parallelize(range(100), 4).map(partial(mod_pair, 7)).cache()
    assert rdd.reduceByKey(add).count() == 7
    ctx.broadcast(list(range(1000)))
    ctx.parallelize(range(10), 2).saveAsTextFile(str(tmp_path / "out"))
    pids = set(ctx.parallelize(range(20), 20).map(pid_of).collect())
    workers = children() - before
    assert pids <= workers and len(workers) == 2
    new_dirs = work_dirs(os.getpid()) - dirs_before
    assert len(new_dirs) == 1
    ctx.stop()
    assert not any(alive(pid) for pid in workers)
    assert not any(os.path.exists(d) for d in new_dirs)
    ctx.stop()                                    # a second stop is harmless


def test_process_without_a_number_starts_one_worker_per_cpu():
    before = children()
    with Context("process", quiet=True) as ctx:
        assert ctx.parallelize(range(10), 5).map(pid_of).count() == 10
        assert len(children() - before) == os.cpu_count()
    assert not (children() - before)


@register_func
def pid_after_a_nap(x):
    import time
    time.sleep(0.3)
    return os.getpid()


@register_func
def pid_and_str_hash(word):
    import time
    time.sleep(0.3)         # long enough for every worker to take one
    return (os.getpid(), hash(word))


@pytest.mark.parametrize("seed", [None, "123"])
def test_every_worker_hashes_a_str_alike(monkeypatch, seed):
    """hash(word) in a task does not depend on the worker that ran it (as PySpark's executors, every worker
    has the driver's PYTHONHASHSEED, or 0), so keys made with it group together."""
    if seed is None:
        monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    else:
        monkeypatch.setenv("PYTHONHASHSEED", seed)
    with Context("process:3", quiet=True) as ctx:
        for _ in range(10):     # a worker may say hello after the first job's end (a loaded machine)
            got = ctx.parallelize(["gopark"] * 3, 3).map(pid_and_str_hash).collect()
            if len({pid for pid, _ in got}) == 3:
                break
    assert len({pid for pid, _ in got}) == 3
    assert len({h for _, h in got}) == 1
    if seed is not None:        # the driver's seed: the same hash as a process started with it
        expected = subprocess.run([sys.executable, "-c", "print(hash('gopark'))"], capture_output=True, text=True,
                                  env={**os.environ, "PYTHONHASHSEED": seed}, check=True).stdout
        assert got[0][1] == int(expected)


def test_a_module_found_on_a_folder_put_on_sys_path_after_the_workers_started(tmp_path, monkeypatch):
    """The workers started with the driver's sys.path of then; a plugin folder the app adds later reaches them
    with the tasks."""
    (tmp_path / "gopark_late_plugin.py").write_text("from gopark import register_func\n\n@register_func\n"
                                                    "def quadruple(x):\n    return 4 * x\n")
    with Context("process:2", quiet=True) as ctx:
        assert ctx.parallelize(range(4), 2).map(pid_of).count() == 4      # the workers are up
        monkeypatch.syspath_prepend(str(tmp_path))
        import gopark_late_plugin
        assert ctx.parallelize(range(4), 2).map(gopark_late_plugin.quadruple).collect() == [0, 4, 8, 12]


def test_the_pool_grows_when_asked_and_keeps_its_size():
    """A Mesos executor grows its pool when given more tasks than workers (backend.grow)."""
    with Context("process:1", quiet=True) as ctx:
        assert len(ctx.backend.worker_pids) <= 1
        ctx.backend.grow(3)
        assert wait_until(lambda: len(ctx.backend.worker_pids) == 3, timeout=30)
        ctx.backend.grow(2)                                   # never shrinks
        for _ in range(10):     # the newest may not have said hello by the first job's end (a loaded machine)
            pids = set(ctx.parallelize(range(3), 3).map(pid_after_a_nap).collect())
            if len(pids) == 3:
                break
        assert len(pids) == 3 and pids == set(ctx.backend.worker_pids)


def test_two_contexts_at_once():
    before = children()
    with Context("process:2", quiet=True) as a, Context("process:2", quiet=True) as b:
        ra = a.parallelize(range(100), 4).map(partial(mod_pair, 3)).cache()
        rb = b.parallelize(range(1000, 1100), 4).map(partial(mod_pair, 3)).cache()
        want_a = {r: sum(x for x in range(100) if x % 3 == r) for r in range(3)}
        want_b = {r: sum(x for x in range(1000, 1100) if x % 3 == r) for r in range(3)}
        for _ in range(2):
            assert ra.reduceByKey(add).collectAsMap() == want_a
            assert rb.reduceByKey(add).collectAsMap() == want_b
        pids_a = set(a.parallelize(range(20), 20).map(pid_of).collect())
        pids_b = set(b.parallelize(range(20), 20).map(pid_of).collect())
        assert not pids_a & pids_b
        assert len(children() - before) == 4
        a.stop()
        assert rb.reduceByKey(add).collectAsMap() == want_b
        assert not any(alive(p) for p in pids_a)
    assert not (children() - before)


def test_context_manager_stops_on_error():
    before, dirs_before = children(), work_dirs(os.getpid())
    with pytest.raises(JobError):
        with Context("process:2", quiet=True) as ctx:
            ctx.parallelize(range(4), 2).map(always_fails).count()
    assert not (children() - before)
    assert work_dirs(os.getpid()) == dirs_before


@register_func
def napping_pair(x):
    time.sleep(0.2)
    return (x % 3, x)


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_stop_from_another_thread_ends_the_job_it_runs(master):
    """Context.stop() while a job runs in another thread (the ``with`` body raising, a signal): the job
    raises JobError at once instead of waiting for ever for its ended workers (process mode), or going on
    and writing into the removed work folder again (local mode); the thread ends, nothing is left."""
    import threading
    before, dirs_before = children(), work_dirs(os.getpid())
    ctx = Context(master, quiet=True)
    outcome = {}

    def job():
        try:
            outcome["result"] = ctx.parallelize(range(40), 4).map(napping_pair).reduceByKey(add, 2).collectAsMap()
        except BaseException as exc:  # noqa: BLE001
            outcome["error"] = exc

    thread = threading.Thread(target=job)
    thread.start()
    deadline = time.monotonic() + 20
    while ctx.scheduler.job is None and time.monotonic() < deadline:      # the job has started
        time.sleep(0.01)
    time.sleep(0.3)            # its first tasks run (each takes 2 s)
    ctx.stop()
    thread.join(20)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), JobError), outcome
    assert "the Context was stopped" in str(outcome["error"])
    assert not (children() - before)
    assert work_dirs(os.getpid()) == dirs_before
    with pytest.raises(Exception, match="stopped"):
        ctx.parallelize(range(3)).count()


# --- the driver's endpoint ---------------------------------------------------------------------

def test_driver_endpoint_is_private():
    with Context("process:2", quiet=True) as ctx:
        assert ctx.parallelize(range(10), 4).map(pid_of).count() == 10
        ours = socket_inodes()
        exposed = [a for a in listening_tcp(ours) if a not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")]
        assert not exposed, f"the driver listens on TCP at {exposed}"
        new_dirs = work_dirs(os.getpid())
        sockets = [p for p in unix_socket_paths(ours) if any(p.startswith(d + os.sep) for d in new_dirs)]
        assert sockets, f"no unix socket of ours in {new_dirs}: {unix_socket_paths(ours)}"
        for path in sockets:
            assert stat.S_ISSOCK(os.stat(path).st_mode)
            assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700


# --- an app run as a script --------------------------------------------------------------------

def run_script(name, *args, timeout=180):
    return subprocess.run([sys.executable, os.path.join(APPS, name), *args],
                          capture_output=True, text=True, timeout=timeout)


def test_app_script_gives_the_same_output_in_every_mode(tmp_path):
    text = "\n".join(" ".join(f"w{(i * j) % 37}" for j in range(i % 11 + 1)) for i in range(300)) + "\n"
    data = tmp_path / "words.txt"
    data.write_text(text)
    local = run_script("wc_app.py", str(data), "--tag", "x", "-m", "local", "-q")
    proc = run_script("wc_app.py", str(data), "-q", "--tag", "x", "--master", "process:2")
    assert local.returncode == 0, local.stderr
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == local.stdout
    words = text.split()
    assert f"distinct {len(set(words))}\n" in local.stdout
    assert f"args ['{data}', '--tag', 'x']\n" in local.stdout
    assert "lines 300\n" in local.stdout


APP_WITH_HELPER = """
import sys
from gopark import Context
import gp_helper

if __name__ == "__main__":
    with Context() as ctx:
        print(ctx.parallelize(range(4), 2).map(gp_helper.which).collect())
"""

HELPER = """
from gopark import register_func

@register_func
def which(x):
    return ({where!r}, x)
"""


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_workers_import_the_apps_modules_the_driver_imported_not_those_of_the_current_folder(tmp_path, master):
    """The app's folder comes first on a worker's path, as on the driver's: a module of the same name in the
    folder the app was started from (its current folder) is not the one the driver imported."""
    app_dir, here = tmp_path / "app", tmp_path / "here"
    app_dir.mkdir()
    here.mkdir()
    (app_dir / "gp_app.py").write_text(APP_WITH_HELPER)
    (app_dir / "gp_helper.py").write_text(HELPER.format(where="the app's"))
    (here / "gp_helper.py").write_text(HELPER.format(where="the current folder's"))
    (here / "launcher.py").write_text("raise SystemExit('not the launcher')\n")
    (app_dir / "launcher.py").write_text("raise SystemExit('not the launcher either')\n")
    (app_dir / "worker.py").write_text("raise SystemExit('not the worker')\n")
    done = subprocess.run([sys.executable, str(app_dir / "gp_app.py"), "-m", master, "-q"], cwd=here,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[(\"the app's\", 0), (\"the app's\", 1), (\"the app's\", 2), (\"the app's\", 3)]\n"


ARGV_APP = """
import sys
from gopark import Context, register_func

AT_IMPORT = sys.argv[1:]      # read as the module is imported: gopark's options are still there

@register_func
def seen(x):
    return (x, len(AT_IMPORT), AT_IMPORT[:5], len(sys.argv), sys.argv[1:3])

if __name__ == "__main__":
    with Context() as ctx:
        print(ctx.parallelize(range(3), 3).map(seen).collect())
"""


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_the_apps_functions_see_its_arguments_in_every_mode(tmp_path, master):
    """A worker imports the app with the driver's ``sys.argv`` as it was then, and runs tasks with it as the
    driver's Context left it (gopark's options taken out), so module-level code and functions reading the
    app's arguments give what they give in the driver; however long the command line (more than the
    128 KiB one environment variable may hold)."""
    app = tmp_path / "argv_app.py"
    app.write_text(ARGV_APP)
    files = [f"/data/{'x' * 90}/part-{i:05d}.txt" for i in range(2000)]
    done = subprocess.run([sys.executable, str(app), "7", "-m", master, "--extra", "-q", *files],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    at_import = ["7", "-m", master, "--extra", "-q"]
    assert done.stdout == str([(x, 2005, at_import, 2003, ["7", "--extra"]) for x in range(3)]) + "\n"


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_an_app_without_a_main_guard_runs_its_driver_code_once(master):
    """Workers import the app up to its Context: they neither run its job again nor start workers."""
    done = run_script("unguarded_app.py", "-m", master, "-q", timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("[0, 2, 4, 6, 8, 10]\n" "in a task: RuntimeError a Context cannot be made inside "
                           "a task: only the driver runs jobs\n")
    # the driver, and each worker that ran a task, once
    assert done.stderr.count("module level") in ((1,) if master == "local" else (2, 3))


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_a_job_started_inside_a_task_fails_that_job_and_never_hangs(master):
    """A function that runs an action (count; sortByKey's sample; zipWithIndex's count) on the driver's
    Context: in local mode, where its task runs in the driver under the job's hold on the scheduler, a
    RuntimeError that says why (it waited for ever); on a worker, which has no Context, its own error. The
    job fails with a JobError either way, and the Context runs the next job."""
    done = run_script("nested_job_app.py", "-m", master, "-q", "--max-failures", "1", timeout=120)
    assert done.returncode == 0, done.stderr
    why = ("RuntimeError an action cannot run inside a task: only the driver runs jobs" if master == "local"
           else "IndexError list index out of range")
    assert done.stdout == "".join(f"{f} {why}\n" for f in ("count_inside", "sort_inside", "index_inside")) + \
        "after: 5\n"


def test_a_function_registered_below_unguarded_driver_code_is_missing_on_workers_and_says_why():
    done = subprocess.run([sys.executable, os.path.join(APPS, "unguarded_app.py"), "-m", "process:2", "-q",
                           "--max-failures", "1"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "UNGUARDED_LATE": "1"})
    assert done.returncode == 1
    # refused in the driver, at the call, before any task (the workers, importing the app up to its Context,
    # would not have it)
    assert "RDD.map got 'unguarded_app.double', registered below the driver code at line 19 of unguarded_app.py" \
        in done.stderr, done.stderr
    assert 'if __name__ == \"__main__\":' in done.stderr or 'if __name__ == "__main__":' in done.stderr


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_globals_set_in_the_driver_code_are_warned_of(master):
    """A worker imports the script without running its driver code: a function reading a global set
    there sees another value in process mode. Both modes warn of it, naming the function and the global."""
    done = run_script("main_globals_app.py", "-m", master)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("[4, 7] [2]\n" if master == "local" else "[2, 4] [2]\n")
    warned = [line for line in done.stderr.splitlines() if "MainBlockGlobalWarning" in line]
    assert len(warned) == 2, done.stderr
    with open(os.path.join(APPS, "main_globals_app.py")) as f:
        source = f.read().splitlines()
    line = {name: source.index(f"    {name} = {value}") + 1 for name, value in (("CONFIG", '{"bias": 1}'),
                                                                                ("FACTOR", "3"))}
    assert "main_globals_app.scale reads the global 'CONFIG'" in warned[0] and f"(line {line['CONFIG']})" in warned[0]
    assert "main_globals_app.scale reads the global 'FACTOR'" in warned[1] and f"(line {line['FACTOR']})" in warned[1]


_buffered: dict = {}


@register_func
def write_buffered(folder, x):
    """Appends to a file this process keeps open, never flushed by the task: a worker's exit must flush it,
    after running the app's atexit handlers (one writes a last line)."""
    if folder not in _buffered:
        _buffered[folder] = open(os.path.join(folder, f"{os.getpid()}.txt"), "a")
        atexit.register(_buffered[folder].write, "atexit\n")
    _buffered[folder].write(f"{x}\n")
    return x


def test_a_stopped_worker_exits_normally_flushing_what_its_tasks_buffered(tmp_path):
    with Context("process:2", quiet=True) as ctx:
        ctx.parallelize(range(20), 4).map(partial(write_buffered, str(tmp_path))).count()
    files = [(tmp_path / name).read_text().split() for name in os.listdir(tmp_path)]
    assert files and all(lines[-1] == "atexit" for lines in files)
    assert sorted(int(line) for lines in files for line in lines[:-1]) == list(range(20))


def test_runJob_refuses_repeated_or_unknown_partitions(ctx):
    rdd = ctx.parallelize(range(6), 3)
    for parts in ([0, 0, 1], [3], [-1]):
        with pytest.raises(ValueError, match="distinct indexes below 3"):
            ctx.runJob(rdd, ["count"], parts)
    assert ctx.runJob(rdd, ["count"], [2, 0]) == [2, 2]


# --- a driver that is interrupted or killed ------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_local_mode_driver_ends_on_sigterm_mid_task(tmp_path, sig):
    """The task runs in the driver: the signal must end the app, not fail (and retry) the task."""
    driver = subprocess.Popen([sys.executable, os.path.join(APPS, "slow_app.py"), str(tmp_path), "-m", "local",
                               "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_until(lambda: any(n.startswith("started-") for n in os.listdir(tmp_path)), timeout=60)
        driver.send_signal(sig)
        assert driver.wait(timeout=30) == 128 + sig
        assert len([n for n in os.listdir(tmp_path) if n.startswith("started-")]) == 1   # no retry ran
        assert not work_dirs(driver.pid)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        driver.stderr.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL],
                         ids=["SIGINT", "SIGTERM", "SIGHUP", "SIGKILL"])
def test_driver_stopped_mid_job_leaves_no_worker(tmp_path, sig):
    driver = subprocess.Popen([sys.executable, os.path.join(APPS, "slow_app.py"), str(tmp_path), "-m", "process:2",
                               "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers: set[int] = set()
    try:
        assert wait_until(lambda: any(n.startswith("started-") for n in os.listdir(tmp_path)), timeout=60), \
            "no task started"
        assert wait_until(lambda: len(pids_with_env("GOPARK_DRIVER_PID", str(driver.pid))) == 2, timeout=30)
        workers = pids_with_env("GOPARK_DRIVER_PID", str(driver.pid))
        assert driver.poll() is None
        driver.send_signal(sig)
        driver.wait(timeout=60)
        assert wait_until(lambda: not any(alive(p) for p in workers), timeout=30), \
            f"workers left after {sig.name}: {[p for p in workers if alive(p)]}"
        assert not pids_with_env("GOPARK_DRIVER_PID", str(driver.pid))
        if sig != signal.SIGKILL:                     # a clean exit cleans up after itself
            assert not work_dirs(driver.pid), sig.name
            assert driver.returncode == (128 + sig if sig != signal.SIGINT else -signal.SIGINT), driver.returncode
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        driver.stderr.close()
        for pid in workers | pids_with_env("GOPARK_DRIVER_PID", str(driver.pid)):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        for d in work_dirs(driver.pid):               # a killed driver could not remove its own
            shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize(("master", "sig"), [("process:2", signal.SIGINT), ("process:2", signal.SIGTERM),
                                             ("local", signal.SIGINT)], ids=["process-SIGINT", "process-SIGTERM",
                                                                             "local-SIGINT"])
def test_driver_stopped_mid_pipe_ends_the_commands_and_what_they_started(tmp_path, master, sig):
    """A pipe's command runs in a process group of its own, ended with its task: a stopped worker (SIGTERM
    from the driver's stop) or an interrupted local task ends it and the sleep it started, which would
    otherwise outlive the app (they ignore the SIGINT a worker ignores)."""
    driver = subprocess.Popen([sys.executable, os.path.join(APPS, "slow_app.py"), str(tmp_path), "pipe", "-m", master,
                               "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    started = 2 if master.startswith("process") else 1
    pids: list[int] = []
    try:
        assert wait_until(lambda: len(glob.glob(str(tmp_path / "started-pipe-*"))) == started, timeout=60)
        pids = [int(pid) for name in glob.glob(str(tmp_path / "started-pipe-*")) for pid in open(name).read().split()]
        assert len(pids) == 2 * started and all(alive(p) for p in pids)
        driver.send_signal(sig)
        driver.wait(timeout=60)
        assert wait_until(lambda: not any(alive(p) for p in pids), timeout=30), \
            f"left after {sig.name}: {[p for p in pids if alive(p)]}"
        assert not pids_with_env("GOPARK_DRIVER_PID", str(driver.pid))
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        driver.stderr.close()
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def none_alive(pids: list[int]) -> bool:
    return not any(alive(p) for p in pids)


def test_a_job_failing_while_a_pipe_runs_then_the_app_ending_ends_the_pipe(tmp_path):
    """The failed job cancels the pipe's task (SIGTERM to its worker) and the app's exit stops the pool at
    once: the worker, sent SIGTERM twice, must still end the pipe's command (three runs: it was a race)."""
    for run in range(3):
        folder = tmp_path / str(run)
        folder.mkdir()
        driver = subprocess.run([sys.executable, os.path.join(APPS, "slow_app.py"), str(folder), "pipefail",
                                 "-m", "process:2", "-q", "--max-failures", "1"], capture_output=True, timeout=120)
        assert driver.returncode == 0, driver.stderr.decode()
        pids = [int(pid) for name in glob.glob(str(folder / "started-pipe-*")) for pid in open(name).read().split()]
        assert len(pids) == 2
        try:
            assert wait_until(partial(none_alive, pids), timeout=10), f"run {run}: left {[p for p in pids if alive(p)]}"
        finally:
            for pid in pids:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


@register_func
def fail_first_at(deadline, i, records):
    time.sleep(max(0.0, deadline - time.time()))
    if i == 0:
        raise ValueError("partition 0 fails")
    return [1]


def test_a_worker_leaving_after_a_cancelled_task_is_given_no_new_task():
    """Partition 1's result may come in after its task was cancelled (its worker sent SIGTERM): that worker
    is leaving, and a task sent to it would be lost (the next job failed about once in 40)."""
    with Context("process:2", quiet=True, max_failures=1) as ctx:
        ctx.parallelize(range(4), 4).count()
        for _ in range(80):
            with pytest.raises(JobError, match="partition 0 fails"):
                ctx.parallelize(range(2), 2).mapPartitionsWithIndex(
                    partial(fail_first_at, time.time() + 0.03)).collect()
            assert ctx.parallelize(range(8), 8).count() == 8


@pytest.mark.parametrize("n", [1, 2])
def test_a_pool_whose_workers_cannot_be_started_fails_its_jobs_with_the_reason(monkeypatch, n):
    """A worker that cannot even be started (fork or exec fails: no memory, too many processes, an argument
    list too long) is tried again only when another one dies: with none alive, a job says why instead of
    waiting for ever."""
    from gopark.scheduler import process

    def refuse(*args, **kwargs):
        raise OSError(7, "Argument list too long")

    monkeypatch.setattr(process.subprocess, "Popen", refuse)
    with Context(f"process:{n}", quiet=True) as ctx:
        with pytest.raises(JobError, match="workers cannot be started: .*Argument list too long"):
            ctx.parallelize(range(4), 2).count()


def test_a_worker_that_cannot_be_started_once_leaves_the_others_to_run_the_job(monkeypatch):
    from gopark.scheduler import process

    real, refused = process.subprocess.Popen, []

    def refuse_first(*args, **kwargs):
        if not refused:
            refused.append(True)
            raise OSError(11, "Resource temporarily unavailable")
        return real(*args, **kwargs)

    monkeypatch.setattr(process.subprocess, "Popen", refuse_first)
    with Context("process:2", quiet=True) as ctx:
        assert ctx.parallelize(range(4), 2).map(abs).collect() == [0, 1, 2, 3]
    assert refused


ARGS_APP = """
import argparse, sys
import argpkg.fns
from gopark import Context, register_func

parser = argparse.ArgumentParser()
parser.add_argument("--factor", type=int, required=True)
OPTS, REST = parser.parse_known_args()      # the app's own options, read as it is imported
sys.argv = [sys.argv[0], *REST]             # ... and taken out before its Context, as some apps do

@register_func
def scaled(x):
    return x * OPTS.factor

if __name__ == "__main__":
    with Context() as ctx:
        print(ctx.parallelize(range(2), 2).map(scaled).collect())
        print(ctx.parallelize(range(2), 2).map(argpkg.fns.seen).collect())
"""


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_workers_import_the_apps_modules_with_the_arguments_they_saw_in_the_driver(tmp_path, master):
    """What ``sys.argv`` was when gopark was first imported, for the main module and for a package's
    ``__init__`` too, even after the app changed ``sys.argv`` before its Context."""
    (tmp_path / "argpkg").mkdir()
    (tmp_path / "argpkg" / "__init__.py").write_text("import sys\nSEEN = sys.argv[1:]\n")
    (tmp_path / "argpkg" / "fns.py").write_text(
        "import sys\nimport argpkg\nfrom gopark import register_func\nFNS_SEEN = sys.argv[1:]\n\n"
        "@register_func\ndef seen(x):\n    return (x, argpkg.SEEN, FNS_SEEN)\n")
    (tmp_path / "args_app.py").write_text(ARGS_APP)
    done = subprocess.run([sys.executable, str(tmp_path / "args_app.py"), "--factor", "3", "-m", master, "-q"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    given = ["--factor", "3", "-m", master, "-q"]
    assert done.stdout.splitlines() == ["[0, 3]", str([(x, given, given) for x in range(2)])]


def test_a_python_c_driver_that_changes_folder_before_its_context_finds_its_modules(tmp_path):
    (tmp_path / "gp_c_helper.py").write_text("from gopark import register_func\n\n"
                                             "@register_func\ndef inc(x):\n    return x + 1\n")
    script = ("import os\nfrom gopark import Context\nimport gp_c_helper\nos.chdir('/')\n"
              "with Context('process:2', quiet=True) as ctx:\n"
              "    print(ctx.parallelize(range(3), 3).map(gp_c_helper.inc).collect())\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[1, 2, 3]\n"


def test_a_pool_that_fails_to_start_leaves_no_worker_behind(monkeypatch):
    """The workers are started before ZeroMQ is set up: if that fails (here its Context), they are ended, and
    the Context's error is raised."""
    import zmq
    before = children(zombies=True)

    def refuse(*args, **kwargs):
        raise zmq.ZMQError(24, "Too many open files")

    monkeypatch.setattr(zmq, "Context", refuse)
    with pytest.raises(zmq.ZMQError, match="Too many open files"):
        Context("process:2", quiet=True)
    monkeypatch.undo()
    assert children(zombies=True) - before == set()
    with Context("process:2", quiet=True) as ctx:
        assert ctx.parallelize(range(4), 2).count() == 4
