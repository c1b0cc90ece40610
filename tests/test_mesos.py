"""Mesos mode end to end: a real frozen app against the Mesos master/agent double.

The double (tests/mesos_double.py) speaks Mesos' v1 HTTP APIs to pymesos, runs
the agents' fetcher (the binary is downloaded from the driver's file server
and cached) and starts the executors as real processes of the fetched binary.
Every result is compared with the same job run unfrozen in local mode.
"""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.mesos_double import MesosCluster

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "tests", "frozen", "mesos_app.py")
SAMPLE = os.path.join(ROOT, "examples", "data", "words.txt")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("mesos-build") / "mesos_app"
    built = subprocess.run([sys.executable, "-m", "gopark.cli", "build", APP, "-o", str(out)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    return str(out)


@pytest.fixture
def tmp_env(tmp_path: str) -> dict[str, str]:
    """The driver's and executors' TMPDIR: no unpacked _MEI folder or gopark folder may be left there."""
    tmp = os.path.join(tmp_path, "tmp")
    os.makedirs(tmp)
    yield dict(os.environ, TMPDIR=tmp)
    deadline = time.monotonic() + 10
    while os.listdir(tmp) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert os.listdir(tmp) == []


@contextlib.contextmanager
def running_cluster(path: str, agents: list[dict], tmp_env: dict[str, str]) -> Iterator[MesosCluster]:
    """A double whose executors inherit the test's TMPDIR; on leaving, they must have ended."""
    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = tmp_env["TMPDIR"]
    try:
        with MesosCluster(path, agents=agents) as c:
            yield c
            assert_executors_end(c)
    finally:
        if old is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old


@pytest.fixture
def cluster(tmp_path: str, tmp_env: dict[str, str]) -> MesosCluster:
    with running_cluster(os.path.join(tmp_path, "mesos"), [{"cpus": 2.0, "mem": 2048.0}] * 2, tmp_env) as c:
        yield c


def assert_executors_end(c: MesosCluster) -> None:
    """After the driver has gone, the framework's executors end on their own (TEARDOWN)."""
    assert c.wait_for(lambda: not any(a.executors() for a in c.agents), timeout=15), \
        [a.executors() for a in c.agents]


def local(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, APP, *args, "-m", "local", "-q"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def mesos(app: str, c: MesosCluster, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([app, *args, "-m", c.master, "--mem", "256", "-q"], capture_output=True, text=True,
                          timeout=180, env=env)


def test_wordcount_across_two_agents_matches_local(app: str, cluster: MesosCluster,
                                                   tmp_env: dict[str, str]) -> None:
    got = mesos(app, cluster, tmp_env, "wordcount", SAMPLE)
    assert got.returncode == 0, got.stderr
    want = local("wordcount", SAMPLE)
    assert got.stdout == want.stdout and got.stdout.count("\n") > 10
    fetched = [n for a in cluster.agents for uri, n in a.fetch_count.items() if "/bin/" in uri]
    assert fetched and all(n == 1 for n in fetched)      # the fetcher's cache: once per agent


def test_one_cpu_agents_run_one_task_after_another(app: str, tmp_path: str, tmp_env: dict[str, str]) -> None:
    """The executor's own small share comes out of the agent's one CPU: tasks still fit, all of them."""
    with running_cluster(os.path.join(tmp_path, "mesos1"), [{"cpus": 1.0, "mem": 1024.0}] * 2, tmp_env) as c:
        got = mesos(app, c, tmp_env, "wordcount", SAMPLE)
        assert got.returncode == 0, got.stderr
        assert got.stdout == local("wordcount", SAMPLE).stdout


def test_second_run_uses_the_fetcher_cache(app: str, cluster: MesosCluster, tmp_env: dict[str, str]) -> None:
    """The binary's URL is the same in every run (its hash, on the port its hash picks): an agent's fetcher,
    which caches by URL, downloads it once, however many runs start executors there."""
    for _ in range(2):
        got = mesos(app, cluster, tmp_env, "where")
        assert got.returncode == 0, got.stderr
        assert_executors_end(cluster)
    uris = {uri for a in cluster.agents for uri in a.fetch_count}
    assert len(uris) == 1, uris
    assert all(list(a.fetch_count.values()) in ([], [1]) for a in cluster.agents), \
        [a.fetch_count for a in cluster.agents]


def test_an_agent_that_cannot_start_the_executor_is_left_out(app: str, tmp_path: str,
                                                              tmp_env: dict[str, str]) -> None:
    """One agent of three cannot fetch the binary (its fetcher's cache is broken, say): its launches fail
    at once, and it keeps offering. After two such failures it is left out (its offers declined, a
    warning naming it and why) and the job runs on the others; every task failed on it there before."""
    with running_cluster(os.path.join(tmp_path, "mesos3"), [{"cpus": 2.0, "mem": 2048.0}] * 3, tmp_env) as c:
        broken = c.agents[0]
        cache = c.workdir / "fetcher-cache" / broken.agent_id
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text("not a folder")          # every fetch there fails
        got = mesos(app, c, tmp_env, "wordcount", SAMPLE)
        assert got.returncode == 0, got.stderr
        assert got.stdout == local("wordcount", SAMPLE).stdout
        assert f"{broken.hostname}" in got.stderr and "left out" in got.stderr, got.stderr
        assert got.stderr.count("left out") == 1, got.stderr


def test_a_job_whose_every_agent_cannot_start_the_executor_fails_saying_why(app: str, tmp_path: str,
                                                                             tmp_env: dict[str, str]) -> None:
    with running_cluster(os.path.join(tmp_path, "mesos2"), [{"cpus": 2.0, "mem": 2048.0}] * 2, tmp_env) as c:
        for agent in c.agents:
            cache = c.workdir / "fetcher-cache" / agent.agent_id
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text("not a folder")
        started = time.monotonic()
        got = mesos(app, c, tmp_env, "wordcount", SAMPLE)
        assert got.returncode == 1, got.stderr
        assert "Failed to fetch" in got.stderr.splitlines()[-1], got.stderr
        assert time.monotonic() - started < 60


def test_moosefs_splits_run_on_the_agents_that_hold_their_chunks(app: str, tmp_path, tmp_env: dict[str, str]) -> None:
    """SPEC: MooseFS splits are scheduled on the chunkservers that hold them. MooseFS names chunkservers
    by IP, Mesos names agents by host name: an agent is matched by the IP its offers carry too (with
    host names alone no split ever ran where its chunk is). A real MooseFS cluster (goal 1, two chunks),
    an agent "on" each chunkserver; the whole test runs in the cluster's network namespace."""
    from mfs_cluster import MfsCluster
    line = b"x" * 99 + b"\n"
    data = line * (70 * (1 << 20) // len(line))                 # two chunks
    with MfsCluster(tmp_path / "mfs", ncs=2) as mfs:
        mnt = mfs.mount(tmp_path / "mnt")
        (mnt / "one").mkdir()
        mfs.set_goal(mnt / "one", 1)
        (mnt / "one" / "data.txt").write_bytes(data)
        holders = [chunk["copies"][0].split(":")[0] for chunk in mfs.file_info(mnt / "one" / "data.txt")]
        agents = [{"cpus": 2.0, "mem": 2048.0, "hostname": f"node-{i}.example", "ip": ip}
                  for i, ip in enumerate(mfs.chunkserver_ips)]
        with mfs.inside(), running_cluster(str(tmp_path / "mesos"), agents, tmp_env) as c:
            got = mesos(app, c, tmp_env, "splits", f"{mfs.master_url}/one/data.txt")
            ran_on = {agent.agent_id: agent.ip for agent in c.agents}
    assert got.returncode == 0, got.stderr
    splits = [line.split() for line in got.stdout.splitlines() if line.startswith("SPLIT")]
    assert len(splits) == len(holders) == 2, got.stdout
    assert [ran_on[agent] for _, _, agent, _ in splits] == holders, (got.stdout, holders)
    assert sum(int(n) for *_, n in splits) == len(data) // len(line)


def test_a_binary_whose_name_holds_a_space_runs(app: str, cluster: MesosCluster, tmp_env: dict[str, str],
                                                tmp_path) -> None:
    """Its name goes into the fetch URL (quoted) and into the executor's shell command (quoted)."""
    spaced = tmp_path / "mesos app"
    shutil.copy2(app, spaced)
    got = mesos(str(spaced), cluster, tmp_env, "shared")
    assert got.returncode == 0, got.stderr
    assert got.stdout == local("shared").stdout


def test_a_onedir_build_runs_from_its_folder_shipped_as_an_archive(app: str, cluster: MesosCluster,
                                                                   tmp_env: dict[str, str], tmp_path) -> None:
    """A --onedir build's folder goes to the agents as a tar their fetcher extracts (and caches, once per
    agent); the executor checks the folder's sha256 and runs tasks in workers of the folder's binary."""
    out = tmp_path / "onedir" / "mesos_app"
    built = subprocess.run([sys.executable, "-m", "gopark.cli", "build", APP, "-o", str(out), "--onedir"],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    binary = str(out / "mesos_app")
    for _ in range(2):
        got = mesos(binary, cluster, tmp_env, "shared")
        assert got.returncode == 0, got.stderr
        assert got.stdout == local("shared").stdout
    where = subprocess.run([binary, "where", "-m", cluster.master, "--mem", "256", "-q"], capture_output=True,
                           text=True, timeout=180, env=tmp_env)
    assert where.returncode == 0, where.stderr
    lines = dict(line.split(" ", 1) for line in where.stdout.splitlines())
    ran = eval(lines["WHERE"])  # noqa: S307 (our own app's printed tuples)
    assert {w[2] for w in ran} == {"mesos_app"} and {w[3] for w in ran} == {lines["DRIVER"]}
    fetched = [n for a in cluster.agents for uri, n in a.fetch_count.items() if uri.endswith("/mesos_app.tar")]
    assert fetched and all(n == 1 for n in fetched)
    assert not [n for a in cluster.agents for n in a.fetch_count if n.endswith("/mesos_app")]   # not the file


def test_tasks_run_in_workers_of_the_fetched_binary(app: str, cluster: MesosCluster,
                                                    tmp_env: dict[str, str]) -> None:
    # started by a relative path: the driver's argv[0] is the binary's real path, its workers' too
    got = subprocess.run(["./" + os.path.basename(app), "where", "-m", cluster.master, "--mem", "256", "-q"],
                         capture_output=True, text=True, timeout=180, env=tmp_env, cwd=os.path.dirname(app))
    assert got.returncode == 0, got.stderr
    lines = dict(line.split(" ", 1) for line in got.stdout.splitlines())
    driver_sha = lines["DRIVER"]
    where = eval(lines["WHERE"])  # noqa: S307 (our own app's printed tuples)
    assert {w[2] for w in where} == {"mesos_app"}            # the binary itself, in the worker role
    assert {w[3] for w in where} == {driver_sha}             # the hash the driver announced
    assert all(w[4] for w in where)                          # workers of an executor (its file server)
    assert all(w[5] == ("where",) for w in where)            # the driver's arguments, gopark's removed
    assert {w[6] for w in where} == {lines["ARG0"]} and os.path.isabs(lines["ARG0"])   # argv[0] at import too
    executor_parents = {w[1] for w in where}
    assert len({w[0] for w in where}) >= 2 and len(executor_parents) <= 2


def test_broadcast_accumulators_and_cache(app: str, cluster: MesosCluster, tmp_env: dict[str, str]) -> None:
    got = mesos(app, cluster, tmp_env, "shared")
    assert got.returncode == 0, got.stderr
    assert got.stdout == local("shared").stdout
    assert "ACC 90 90" in got.stdout


def test_checkpoint_on_executors(app: str, cluster: MesosCluster, tmp_env: dict[str, str], tmp_path) -> None:
    """Executors write a checkpoint's parts and read them back (a folder every agent sees: one machine)."""
    got = mesos(app, cluster, tmp_env, "checkpoint", str(tmp_path / "cp-mesos"))
    assert got.returncode == 0, got.stderr
    assert got.stdout == local("checkpoint", str(tmp_path / "cp-local")).stdout
    assert "COUNTS [('a', 20), ('b', 20), ('c', 20), ('d', 20), ('x', 10)] True" in got.stdout
    assert "AGAIN [('a', '20'), ('b', '20'), ('c', '20'), ('d', '20'), ('x', '10')] 3" in got.stdout


def test_large_results_come_back_whole(app: str, cluster: MesosCluster, tmp_env: dict[str, str]) -> None:
    got = mesos(app, cluster, tmp_env, "big")      # ~1 MB per task: more than a status update carries
    assert got.returncode == 0, got.stderr
    assert got.stdout == local("big").stdout == "BIG 2000 2000000 0 1999\n"


def test_a_failing_task_is_a_job_error_with_the_remote_traceback(app: str, cluster: MesosCluster,
                                                                tmp_env: dict[str, str]) -> None:
    got = mesos(app, cluster, tmp_env, "fail")
    assert got.returncode == 1
    assert "JobError" in got.stderr and "ValueError: boom at" in got.stderr and "mesos_app.boom" in got.stderr
    assert f"last error on {os.uname().nodename}: ValueError: boom at" in got.stderr, got.stderr   # the agent's host


def test_gopark_inline_0_in_the_drivers_environment_reaches_the_executors(app: str, cluster: MesosCluster,
                                                                           tmp_env: dict[str, str]) -> None:
    inlined = mesos(app, cluster, tmp_env, "failinline")
    assert inlined.returncode == 1 and "(raised in mesos_app.inverse, File " in inlined.stderr
    assert "which gopark ran inline" in inlined.stderr
    assert "GOPARK_INLINE" not in os.environ        # the executors inherit this process' environment
    called = mesos(app, cluster, dict(tmp_env, GOPARK_INLINE="0"), "failinline")
    assert called.returncode == 1 and "ZeroDivisionError" in called.stderr
    assert "ran inline" not in called.stderr and ", in inverse\n" in called.stderr


def _run_watching(args: list[str], env: dict[str, str], on_line, timeout: float) -> subprocess.CompletedProcess:
    """Run ``args``, calling ``on_line(line)`` for each line it prints as it prints it (then ``timeout``
    seconds for it to end); the whole output."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out = []
    try:
        for line in proc.stdout:
            out.append(line)
            on_line(line)
        err = proc.stderr.read()
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(out), err)


def _run_and_break(app: str, c: MesosCluster, env: dict[str, str], breaker) -> subprocess.CompletedProcess:
    """Run ``rounds 4``; when round 1 is done, call ``breaker(c)``; the whole output."""
    return _run_watching([app, "rounds", "4", "-m", c.master, "--mem", "256", "-q"], env,
                         lambda line: breaker(c) if line.startswith("ROUND 1 ") else None, 120)


def test_a_lost_executor_loses_only_work_that_is_recomputed(app: str, cluster: MesosCluster,
                                                            tmp_env: dict[str, str]) -> None:
    def kill_one_executor(c: MesosCluster) -> None:
        agent = next(a for a in c.agents if a.executors())
        agent.kill_executor(next(iter(agent.executors())))

    got = _run_and_break(app, cluster, tmp_env, kill_one_executor)
    assert got.returncode == 0, got.stderr
    assert got.stdout == local("rounds", "4").stdout
    next_run_cleans_up(app, tmp_env)


def test_a_lost_agent_loses_only_work_that_is_recomputed(app: str, cluster: MesosCluster,
                                                         tmp_env: dict[str, str]) -> None:
    got = _run_and_break(app, cluster, tmp_env, lambda c: next(a for a in c.agents if a.executors()).lose())
    assert got.returncode == 0, got.stderr
    assert got.stdout == local("rounds", "4").stdout
    next_run_cleans_up(app, tmp_env)


def test_map_outputs_and_cached_partitions_the_app_let_go_leave_the_executors(
        app: str, cluster: MesosCluster, tmp_env: dict[str, str], tmp_path) -> None:
    """Spark's ContextCleaner on a cluster: the driver asks the executors (framework messages) to remove
    the map outputs of shuffles, and the cached partitions of RDDs, that the app no longer holds; a shuffle
    and a cached RDD still held keep theirs and are not computed again."""
    def left_on_executors() -> tuple[set[str], set[str]]:
        work = [p for a in cluster.agents for p in glob.glob(
            os.path.join(a.sandbox_root, "**", "gopark-executor-*"), recursive=True)]
        shuffles = {os.path.basename(os.path.dirname(p)) for w in work
                    for p in glob.glob(os.path.join(w, "shuffle", "shuffle-*", "*"))}
        cached = {n.split("-")[0] for w in work for n in os.listdir(os.path.join(w, "cache"))
                  if n.split("-")[0].isdigit()} if work else set()
        return shuffles, cached

    go = str(tmp_path / "go")
    seen: dict[str, Any] = {}

    def on_line(line: str) -> None:
        if line.startswith("CACHED"):
            seen["cached"] = line.split()[2]
        if line.startswith("READY"):
            want = ({"shuffle-0"}, {seen["cached"]})
            cluster.wait_for(lambda: left_on_executors() == want, timeout=15)
            seen["left"] = left_on_executors()
            open(go, "w").close()

    ran = _run_watching([app, "drops", go, "-m", cluster.master, "--mem", "256", "-q"], tmp_env, on_line, 60)
    assert ran.returncode == 0, ran.stderr
    cached_id = seen["cached"]
    assert ran.stdout == (f"KEPT 100\nCACHED 100 {cached_id}\nROUND 0 100 100\nROUND 1 100 100\n"
                          f"ROUND 2 100 100\nNEXT 2\nREADY\nKEPT 100 100\n")
    assert seen["left"] == ({"shuffle-0"}, {cached_id})   # what the app still holds is still there, no other


def next_run_cleans_up(app: str, env: dict[str, str]) -> None:
    """A SIGKILLed onefile executor leaves its unpacked folder; the next run of the binary removes it."""
    assert len(glob.glob(os.path.join(env["TMPDIR"], "_MEI*"))) <= 1
    assert subprocess.run([app, "where", "-m", "local", "-q"], env=env, capture_output=True,
                          timeout=60).returncode == 0


def test_tasks_that_no_agent_takes_are_said_to_wait_and_the_driver_still_stops(app: str, tmp_path,
                                                                                tmp_env: dict[str, str]) -> None:
    """No agent at all, and an agent too small for --mem: the job waits (an agent may come), and after
    STARVED_WARNING seconds a warning says why; SIGTERM then ends the driver cleanly."""
    from gopark.scheduler.mesos import STARVED_WARNING
    with contextlib.ExitStack() as stack:
        empty = stack.enter_context(running_cluster(os.path.join(tmp_path, "m0"), [], tmp_env))
        small = stack.enter_context(running_cluster(os.path.join(tmp_path, "m1"), [{"cpus": 1.0, "mem": 128.0}],
                                                    tmp_env))
        runs = {}
        for what, c in (("no agent", empty), ("too small", small)):
            log = open(os.path.join(tmp_path, f"{what}.log"), "w+")
            stack.callback(log.close)
            runs[what] = (subprocess.Popen([app, "where", "-m", c.master, "--mem", "256", "-q"], stderr=log,
                                           env=tmp_env), log)
        said = {"no agent": "tasks have waited 1", "too small": "no offer has room for a task (--cpus 1, --mem 256"}
        try:
            deadline = time.monotonic() + STARVED_WARNING + 20
            while time.monotonic() < deadline and not all(said[w] in _read(log) for w, (_, log) in runs.items()):
                assert all(p.poll() is None for p, _ in runs.values()), {w: _read(log) for w, (_, log) in runs.items()}
                time.sleep(0.2)
            for what, (_, log) in runs.items():
                assert said[what] in _read(log), (what, _read(log))
            assert "agents seen so far: 0): are agents registered" in _read(runs["no agent"][1])
        finally:
            for proc, _ in runs.values():
                proc.send_signal(signal.SIGTERM)
            codes = [proc.wait(timeout=60) for proc, _ in runs.values()]
        assert codes == [128 + signal.SIGTERM] * 2, codes


def test_a_master_gone_for_good_fails_the_job_with_one_message(app: str, tmp_path, tmp_env: dict[str, str]) -> None:
    """The whole cluster goes mid-job: when pymesos' connection ends (a 403: the master dropped the framework),
    or past the framework's failover timeout with no master, the driver says it lost the master and the job
    fails; not a KeyboardInterrupt (pymesos interrupts the main thread), nor a day of pymesos' retries (its
    own messages are held back)."""
    from gopark.scheduler.mesos import MASTER_LOST
    with running_cluster(os.path.join(tmp_path, "m"), [{"cpus": 2.0, "mem": 1024.0}], tmp_env) as c:
        driver = subprocess.Popen([app, "rounds", "1000", "-m", c.master, "--mem", "256", "-q"], env=tmp_env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert driver.stdout.readline().startswith("ROUND 0"), driver.stderr.read()
            c.stop()
            started = time.monotonic()
            _, err = driver.communicate(timeout=MASTER_LOST + 60)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
    assert driver.returncode == 1 and time.monotonic() - started < MASTER_LOST + 30, err
    # (a master going down answers 403 to the framework's calls first, or stops answering: either way)
    assert f"lost the Mesos master at {c.master}" in err and "KeyboardInterrupt" not in err, err
    assert "JobError" in err and "pymesos" not in err, err
    # the executor killed with its agent left its unpacked binary: the next executor on that machine removes
    # it (tmp_env checks that nothing is left); its pool's socket folder stays (a known gap: an executor
    # cannot tell a dead executor's from a live one in another pid namespace), removed here
    assert any(n.startswith("_MEI") for n in os.listdir(tmp_env["TMPDIR"]))
    time.sleep(max(0.0, 4.0 - (time.monotonic() - started)))      # an unpacked folder is stale after 3 s
    for folder in glob.glob(os.path.join(tmp_env["TMPDIR"], "gopark-*-sock-*")):
        shutil.rmtree(folder)
    with running_cluster(os.path.join(tmp_path, "m2"), [{"cpus": 2.0, "mem": 1024.0}], tmp_env) as c2:
        assert mesos(app, c2, tmp_env, "where").returncode == 0


def _read(f: Any) -> str:
    f.seek(0)
    return f.read()


def test_unreachable_master_is_one_line(app: str, tmp_env: dict[str, str]) -> None:
    import socket
    with socket.socket() as s:        # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    got = subprocess.run([app, "where", "-m", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=60,
                         env=tmp_env)
    assert got.returncode == 1
    (line,) = got.stderr.strip().splitlines()
    assert line.startswith(f"gopark: error: cannot reach the Mesos master at 127.0.0.1:{port}: "
                           "[Errno 111] Connection refused (at "), line


@pytest.mark.parametrize("server", ["silent", "not mesos", "not http"])
def test_a_master_address_that_is_not_a_mesos_master_is_one_line(app: str, tmp_env: dict[str, str],
                                                                  server: str) -> None:
    """A port that accepts and never answers, or an HTTP server that is not Mesos: one line, no hang."""
    import http.server
    import socket
    import threading
    if server == "silent":
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port, stop = listener.getsockname()[1], listener.close
    elif server == "not http":       # its reply's line breaks must not reach the error line
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)

        def answer() -> None:
            with contextlib.suppress(OSError):
                while True:
                    conn, _ = listener.accept()
                    with conn:
                        conn.recv(4096)
                        conn.sendall(b"HELLO NOT HTTP\r\n\r\n")
        threading.Thread(target=answer, daemon=True).start()
        port, stop = listener.getsockname()[1], listener.close
    else:
        httpd = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        port = httpd.server_address[1]

        def stop() -> None:
            httpd.shutdown()
            httpd.server_close()
    try:
        got = subprocess.run([app, "where", "-m", f"127.0.0.1:{port}"], capture_output=True, text=True,
                             timeout=90, env=tmp_env)
    finally:
        stop()
    assert got.returncode == 1
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port} does not answer as a Mesos master" in lines[0], got.stderr


def test_executor_refuses_a_binary_that_is_not_the_announced_one(app: str, tmp_env: dict[str, str]) -> None:
    env = dict(tmp_env, GOPARK_ROLE="executor", GOPARK_SHA256="0" * 64)
    got = subprocess.run([app], capture_output=True, text=True, timeout=60, env=env)
    assert got.returncode != 0
    assert "sha256" in got.stderr and "0" * 64 in got.stderr


def test_executor_role_outside_mesos_is_one_line(app: str, tmp_env: dict[str, str]) -> None:
    from gopark import binary
    env = dict(tmp_env, GOPARK_ROLE="executor", GOPARK_SHA256=binary.digest(app))
    got = subprocess.run([app], capture_output=True, text=True, timeout=60, env=env)
    assert got.returncode == 2
    assert got.stderr.strip().splitlines()[-1].startswith("gopark: error: the executor role is started by a Mesos")


def test_driver_killed_leaves_no_executor(app: str, cluster: MesosCluster, tmp_env: dict[str, str]) -> None:
    """SIGKILL of the driver: the master removes the framework when its failover timeout (10 s)
    is over, and its executors end."""
    proc = subprocess.Popen([app, "rounds", "50", "-m", cluster.master, "-q"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=tmp_env)
    assert proc.stdout.readline().startswith("ROUND 0")
    assert any(a.executors() for a in cluster.agents)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert cluster.wait_for(lambda: not any(a.executors() for a in cluster.agents), timeout=25)
    next_run_cleans_up(app, tmp_env)      # the driver's own unpacked folder, left by the SIGKILL
