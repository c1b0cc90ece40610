"""SPEC sections 9 and 4: failing tasks, dying workers, bad input, and the options of a Context."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from functools import partial

import pytest
from apps.procs import alive, children, wait_until

from gopark import ConfigError, Context, InputNotFound, JobError, register_func
from gopark.options import from_argv

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps")


# --- registered functions ------------------------------------------------------------------

@register_func(name="errors.always_fails")
def always_fails(x):
    raise ValueError(f"bad record {x}")


@register_func(name="errors.fails_on_merge")
def fails_on_merge(a, b):
    raise ArithmeticError("cannot merge")


@register_func
def add(a, b):
    return a + b


@register_func
def mod_pair(n, x):
    return (x % n, x)


@register_func
def fail_and_mark(folder, x):
    """Leaves one file per attempt, then fails."""
    with open(os.path.join(folder, uuid.uuid4().hex), "w"):
        pass
    raise RuntimeError("this task always fails")


@register_func
def fail_times(folder, times, x):
    """Fails the first ``times`` attempts (one file each), then succeeds."""
    if len(os.listdir(folder)) < times:
        with open(os.path.join(folder, uuid.uuid4().hex), "w"):
            pass
        raise RuntimeError("not yet")
    return x * 10


@register_func
def die_once(folder, how, acc, trigger, x):
    """The first attempt of the task holding ``trigger`` kills its own worker process."""
    acc.add(1)
    if x == trigger:
        try:
            fd = os.open(os.path.join(folder, "died"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return x
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        if how == "exit":
            os._exit(3)
        os.kill(os.getpid(), signal.SIGKILL)
    return x


@register_func
def always_die(x):
    os.kill(os.getpid(), signal.SIGKILL)


@register_func(name="errors.calls_exit")
def calls_exit(x):
    sys.exit(3)


class AppError(Exception):
    """An exception class of the app."""


@register_func(name="errors.raises_app_error")
def raises_app_error(x):
    raise AppError(f"app-specific {x}")


@register_func
def pid_of(x):
    return os.getpid()


# --- a task that raises ----------------------------------------------------------------------

def check_job_error(err, remote_type, message, func_name):
    assert err.remote_type == remote_type
    assert message in err.remote_message
    assert "Traceback" in err.remote_traceback and remote_type in err.remote_traceback
    assert err.func_name == func_name
    text = str(err)
    for part in (remote_type, message, func_name, "Traceback"):
        assert part in text, text


def test_task_that_always_raises(ctx):
    with pytest.raises(JobError) as info:
        ctx.parallelize([1, 2, 3], 1).map(always_fails).collect()
    check_job_error(info.value, "ValueError", "bad record 1", "errors.always_fails")
    assert "raise ValueError" in info.value.remote_traceback


def test_task_that_raises_in_a_map_stage(ctx):
    with pytest.raises(JobError) as info:
        ctx.parallelize(range(10), 2).map(always_fails).map(partial(mod_pair, 2)).reduceByKey(add).collect()
    check_job_error(info.value, "ValueError", "bad record", "errors.always_fails")


def test_task_that_raises_in_a_merge(ctx):
    with pytest.raises(JobError) as info:
        ctx.parallelize(range(10), 2).map(partial(mod_pair, 2)).reduceByKey(fails_on_merge).collect()
    check_job_error(info.value, "ArithmeticError", "cannot merge", "errors.fails_on_merge")


def test_task_that_raises_in_an_action(ctx):
    with pytest.raises(JobError) as info:
        ctx.parallelize(range(10), 2).reduce(fails_on_merge)
    check_job_error(info.value, "ArithmeticError", "cannot merge", "errors.fails_on_merge")
    with pytest.raises(JobError) as info:
        ctx.parallelize(range(10), 2).foreach(always_fails)
    check_job_error(info.value, "ValueError", "bad record", "errors.always_fails")


@register_func(name="errors.ident")
def ident(x):
    return x


@register_func(name="errors.type_error_on_3")
def type_error_on_3(x):
    if x == 3:
        raise TypeError("three is not welcome")
    return (x, x)


def test_counting_actions_refuse_records_they_cannot_count(ctx):
    """countByKey of records that are not pairs, countByValue of unhashable records: the action's own
    TypeError, no function of the app blamed; an error of the app's function upstream is still its own."""
    with pytest.raises(JobError) as info:
        ctx.parallelize(range(3), 1).map(ident).countByKey()
    err = info.value
    assert err.remote_type == "TypeError" and err.func_name is None
    assert "countByKey needs (key, value) pairs with hashable keys: 'int' object is not subscriptable" \
        in err.remote_message
    with pytest.raises(JobError) as info:
        ctx.parallelize([[1], [2]], 1).map(ident).countByValue()
    assert info.value.func_name is None
    assert "countByValue needs hashable records: unhashable type: 'list'" in info.value.remote_message
    with pytest.raises(JobError) as info:
        ctx.parallelize(range(5), 1).map(type_error_on_3).countByKey()
    check_job_error(info.value, "TypeError", "three is not welcome", "errors.type_error_on_3")
    assert ctx.parallelize([("a", 1), ("b", 2), ("a", 3)], 2).map(ident).countByKey() == {"a": 2, "b": 1}


def test_distinct_of_unhashable_records_blames_no_function(ctx):
    """distinct, subtract and intersection key the records by gopark's own function: an unhashable record
    is the operation's TypeError, named by the stage, with no function blamed (gopark's or the app's)."""
    for make, what in ((lambda r: r.distinct(), "distinct"),
                       (lambda r: r.subtract(ctx.parallelize([[1]], 1)), "subtract"),
                       (lambda r: r.intersection(ctx.parallelize([[1]], 1)), "intersection")):
        with pytest.raises(JobError) as info:
            make(ctx.parallelize([[1], [2], [1]], 2).map(ident)).collect()
        err = info.value
        assert err.remote_type == "TypeError" and "unhashable type: 'list'" in err.remote_message
        assert err.func_name is None, what
        first = str(err).splitlines()[0]
        assert "gopark." not in first and "(in " not in first, first


def test_task_that_raises_an_exception_of_the_app(ctx):
    with pytest.raises(JobError) as info:
        ctx.parallelize([7], 1).map(raises_app_error).collect()
    check_job_error(info.value, "AppError", "app-specific 7", "errors.raises_app_error")


class BrokenStr(Exception):
    def __str__(self):
        return self.detail       # never set: str() of this exception fails


class Cancelled(BaseException):
    """Not an Exception (as asyncio.CancelledError)."""


@register_func(name="errors.raises_broken_str")
def raises_broken_str(x):
    raise BrokenStr()


@register_func(name="errors.raises_undecodable")
def raises_undecodable(x):
    raise ValueError("cannot parse " + os.fsdecode(b"caf\xe9.txt"))     # a file name that is not UTF-8


@register_func(name="errors.raises_base_exception")
def raises_base_exception(x):
    raise Cancelled(f"gave up on record {x}")


def test_exceptions_whose_text_is_not_plain_are_still_reported_whole(ctx):
    """str() of the exception fails, or its message holds undecodable bytes of a file name: still a JobError
    with the type, a message, the traceback and the function, in every mode (not a lost worker)."""
    with pytest.raises(JobError) as info:
        ctx.parallelize([1, 2], 2).map(raises_broken_str).collect()
    check_job_error(info.value, "BrokenStr", "str() of the exception failed: AttributeError",
                    "errors.raises_broken_str")
    with pytest.raises(JobError) as info:
        ctx.parallelize([1, 2], 2).map(raises_undecodable).collect()
    check_job_error(info.value, "ValueError", "cannot parse caf\\udce9.txt", "errors.raises_undecodable")
    assert ctx.parallelize(range(4), 2).count() == 4


def test_a_task_raising_a_base_exception_fails_as_any_other(ctx):
    with pytest.raises(JobError) as info:
        ctx.parallelize([7], 1).map(raises_base_exception).collect()
    check_job_error(info.value, "Cancelled", "gave up on record 7", "errors.raises_base_exception")
    assert "failed 4 times" in str(info.value)


def test_task_that_calls_sys_exit(ctx):
    """A task that exits is a failed task in every mode: the action raises JobError, the driver goes on."""
    with pytest.raises(JobError):
        ctx.parallelize([1], 1).map(calls_exit).collect()
    assert ctx.parallelize(range(4), 2).count() == 4


def test_context_works_after_a_failed_job(ctx):
    with pytest.raises(JobError):
        ctx.parallelize(range(4), 2).map(always_fails).count()
    assert ctx.parallelize(range(4), 2).map(partial(mod_pair, 2)).reduceByKey(add).collectAsMap() == {0: 2, 1: 4}


@pytest.mark.parametrize("master", ["local", "process:2"])
@pytest.mark.parametrize("max_failures", [None, 1, 2])
def test_max_failures(tmp_path, master, max_failures):
    options = {} if max_failures is None else {"max_failures": max_failures}
    with Context(master, quiet=True, **options) as ctx:
        with pytest.raises(JobError):
            ctx.parallelize([0], 1).map(partial(fail_and_mark, str(tmp_path))).collect()
    assert len(os.listdir(tmp_path)) == (max_failures or 4)


@pytest.mark.parametrize("master", ["local", "process:2"])
def test_task_that_fails_then_succeeds(tmp_path, master):
    with Context(master, quiet=True, max_failures=4) as ctx:
        assert ctx.parallelize([1, 2], 1).map(partial(fail_times, str(tmp_path), 3)).collect() == [10, 20]
    assert len(os.listdir(tmp_path)) == 3


def test_max_failures_from_the_command_line(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["app.py", "--max-failures", "3", "-q", "-m", "local"])
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    with Context() as ctx:
        with pytest.raises(JobError):
            ctx.parallelize([0], 1).map(partial(fail_and_mark, str(tmp_path))).collect()
    assert len(os.listdir(tmp_path)) == 3
    assert sys.argv == ["app.py"]


# --- a worker that dies (process mode) -----------------------------------------------------

@pytest.mark.parametrize("how", ["exit", "sigkill"])
@pytest.mark.parametrize("stage", ["map", "result"])
def test_worker_death_loses_only_its_task(tmp_path, how, stage):
    before = children()
    with Context("process:2", quiet=True) as ctx:
        acc = ctx.accumulator(0)
        records = ctx.parallelize(range(40), 4).map(partial(die_once, str(tmp_path), how, acc, 13))
        if stage == "map":
            got = records.map(partial(mod_pair, 3)).reduceByKey(add).collectAsMap()
            assert got == {r: sum(x for x in range(40) if x % 3 == r) for r in range(3)}
        else:
            assert records.collect() == list(range(40))
        assert acc.value == 40                       # the lost attempt's updates are not counted
        dead = int((tmp_path / "died").read_text())
        assert not alive(dead)
        assert wait_until(lambda: len(children() - before) == 2), "the pool did not get back to 2 workers"
        pool = children() - before
        assert dead not in pool
        assert set(ctx.parallelize(range(20), 20).map(pid_of).collect()) <= pool
    assert wait_until(lambda: not (children() - before))


def test_worker_killed_between_jobs_is_replaced():
    before = children()
    with Context("process:2", quiet=True) as ctx:
        rdd = ctx.parallelize(range(30), 3).map(partial(mod_pair, 5)).cache()
        want = {r: sum(x for x in range(30) if x % 5 == r) for r in range(5)}
        assert rdd.reduceByKey(add).collectAsMap() == want
        pool = children() - before
        assert len(pool) == 2
        victim = min(pool)
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: not alive(victim))
        assert rdd.reduceByKey(add, 2).collectAsMap() == want
        assert rdd.count() == 30
        assert wait_until(lambda: len(children() - before) == 2), "the pool did not get back to 2 workers"
        assert victim not in children()


def test_task_that_always_kills_its_worker(tmp_path):
    before = children()
    with Context("process:2", quiet=True, max_failures=2) as ctx:
        with pytest.raises(JobError, match="failed 2 times; last error: TaskLost: worker .* died") as failed:
            ctx.parallelize([1], 1).map(always_die).reduce(add)
        # where in the task the worker died is not known: not blamed on the reduce's function (nor any other)
        assert failed.value.func_name is None and "(in " not in str(failed.value)
        assert wait_until(lambda: len(children() - before) == 2), "the pool did not get back to 2 workers"
        assert ctx.parallelize(range(10), 3).map(partial(mod_pair, 2)).reduceByKey(add).collectAsMap() == {
            0: 20, 1: 25}


# --- bad input -----------------------------------------------------------------------------

@pytest.mark.parametrize("master", ["bogus", "process:", "process:0", "process:x", "process:-1", "mesos://", "zk://host",
                                    "", "local local", "local:3", "process:99999", "127.0.0.1:99999", "host:0",
                                    "mesos://127.0.0.1:65536", "zk://h:1,h:70000/mesos"])
def test_bad_master(master):
    with pytest.raises(ConfigError) as info:
        Context(master, quiet=True)
    assert "\n" not in str(info.value)
    assert repr(master) in str(info.value)


@pytest.mark.parametrize("env", ["garbage", "mesos://garbage", "zk://host", "host:0"])
def test_a_bad_mesos_master_in_the_environment_is_named_as_coming_from_there(monkeypatch, env):
    monkeypatch.setenv("MESOS_MASTER", env)
    with pytest.raises(ConfigError) as info:
        Context("mesos", quiet=True)
    said = str(info.value)
    assert "\n" not in said and said.startswith(f"master 'mesos' reads the Mesos master from $MESOS_MASTER={env!r}: ")


def test_parallel_argument_sets_the_default_number_of_partitions():
    with Context("local", 3, quiet=True) as ctx:
        assert ctx.parallelize(range(10)).getNumPartitions() == 3
        assert ctx.parallelize(range(10)).collect() == list(range(10))


def test_bad_option_values():
    for options in ({"parallel": 0}, {"mem": -5}, {"max_failures": 0}, {"no_such_option": 1},
                    {"mem": float("inf")}, {"mem": float("nan")}, {"cpus": float("nan")}, {"mem": True},
                    {"quiet": "no"}, {"verbose": 0}, {"compress": "no"}):
        with pytest.raises(ConfigError) as info:
            Context("local", **options)
        assert "\n" not in str(info.value)
        assert list(options)[0] in str(info.value)


def test_textFile_of_a_missing_path(ctx, tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        ctx.textFile(str(tmp_path / "missing.txt"))
    assert "missing.txt" in str(info.value)
    with pytest.raises(FileNotFoundError):
        ctx.textFile(str(tmp_path / "*.nothing"))


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def test_malformed_conf_file(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    bad = write(tmp_path / "bad.conf", "master = = 'local'\n[[[\n")
    monkeypatch.setattr(sys, "argv", ["app.py", "--conf", bad])
    with pytest.raises(ConfigError) as info:
        Context()
    assert "bad.conf" in str(info.value)
    unknown = write(tmp_path / "unknown.conf", 'master = "local"\nfrobnicate = 3\n')
    monkeypatch.setattr(sys, "argv", ["app.py", "--conf", unknown])
    with pytest.raises(ConfigError) as info:
        Context()
    assert "frobnicate" in str(info.value)
    helped = write(tmp_path / "help.conf", "help = true\n")
    monkeypatch.setattr(sys, "argv", ["app.py", "--conf", helped])
    with pytest.raises(ConfigError, match="unknown options help; known: ") as info:
        Context()
    assert "help," not in str(info.value) and not str(info.value).endswith("help")
    wrong_type = write(tmp_path / "wrong.conf", 'parallel = "many"\n')
    monkeypatch.setattr(sys, "argv", ["app.py", "--conf", wrong_type])
    with pytest.raises(ConfigError):
        Context()
    monkeypatch.setattr(sys, "argv", ["app.py", "--conf", str(tmp_path / "absent.conf")])
    with pytest.raises(FileNotFoundError):
        Context()
    monkeypatch.setattr(sys, "argv", ["app.py", "--conf", str(tmp_path)])     # a folder
    with pytest.raises(ConfigError, match="cannot be read"):
        Context()
    latin = tmp_path / "latin.conf"
    latin.write_bytes(b'# caf\xe9\nmaster = "local"\n')        # TOML is UTF-8
    monkeypatch.setattr(sys, "argv", ["app.py", "--conf", str(latin)])
    with pytest.raises(ConfigError, match="latin.conf.*not UTF-8"):
        Context()
    for text in ('quiet = "no"\n', "mem = inf\n"):
        monkeypatch.setattr(sys, "argv", ["app.py", "--conf", write(tmp_path / "typed.conf", text)])
        with pytest.raises(ConfigError):
            Context()
    both = write(tmp_path / "both.conf", "max-failures = 2\nmax_failures = 3\n")    # one option, twice
    monkeypatch.setattr(sys, "argv", ["app.py", "--conf", both])
    with pytest.raises(ConfigError, match="both.conf' sets max_failures twice, as max-failures and as max_failures"):
        Context()
    for argv in (["--conf", ""], ["--conf="]):      # e.g. --conf "$CONF" with CONF unset: no file, not no option
        monkeypatch.setattr(sys, "argv", ["app.py", *argv])
        with pytest.raises(InputNotFound, match="^--conf file '' does not exist$"):
            Context()
    with pytest.raises(InputNotFound, match="^--conf file '' does not exist$"):
        Context("local", conf="")


def test_conf_file_is_applied_and_the_command_line_wins(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    conf = write(tmp_path / "good.conf", 'master = "process:2"\nparallel = 3\nquiet = true\n')
    monkeypatch.setattr(sys, "argv", ["app.py", "--conf", conf, "input.txt"])
    with Context() as ctx:
        assert sys.argv == ["app.py", "input.txt"]
        rdd = ctx.parallelize(range(12))
        assert rdd.getNumPartitions() == 3
        assert os.getpid() not in rdd.map(pid_of).collect()
    monkeypatch.setattr(sys, "argv", ["app.py", "--conf", conf, "-m", "local", "-p", "5"])
    with Context() as ctx:
        rdd = ctx.parallelize(range(12))
        assert rdd.getNumPartitions() == 5
        assert set(rdd.map(pid_of).collect()) == {os.getpid()}


def test_context_reads_its_options_from_argv(monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(sys, "argv", ["app.py", "-m", "process:2", "-p", "3", "--mem", "64", "-q",
                                      "--my-flag", "x", "input.txt", "-n", "5"])
    with Context() as ctx:
        assert sys.argv == ["app.py", "--my-flag", "x", "input.txt", "-n", "5"]
        assert ctx.options.mem == 64 and ctx.options.quiet is True
        rdd = ctx.parallelize(range(30))
        assert rdd.getNumPartitions() == 3
        pids = set(rdd.map(pid_of).collect())
        assert os.getpid() not in pids and len(pids) <= 2


def test_context_reads_long_options_from_argv(monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(sys, "argv", ["app.py", "data.txt", "--master", "local", "--parallel", "4", "--quiet",
                                      "--cpus", "2"])
    with Context() as ctx:
        assert sys.argv == ["app.py", "data.txt"]
        assert ctx.parallelize(range(8)).getNumPartitions() == 4
        assert set(ctx.parallelize(range(8)).map(pid_of).collect()) == {os.getpid()}


def test_no_master_on_the_command_line_means_local(monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(sys, "argv", ["app.py", "-q", "rest"])
    with Context() as ctx:
        assert sys.argv == ["app.py", "rest"]
        assert set(ctx.parallelize(range(8), 4).map(pid_of).collect()) == {os.getpid()}


def test_mesos_unfrozen_tells_to_build():
    with pytest.raises(ConfigError) as info:
        Context("mesos://127.0.0.1:5050", quiet=True)
    assert "build" in str(info.value)


def test_bad_master_from_argv(monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(sys, "argv", ["app.py", "-m", "nowhere"])
    with pytest.raises(ConfigError):
        Context()


def test_help_lists_gopark_options(monkeypatch, capsys):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(sys, "argv", ["app.py", "--help"])
    try:
        with Context():
            pass
    except SystemExit as exc:
        assert exc.code in (0, None)
    out = capsys.readouterr().out
    for option in ("--master", "--parallel", "--cpus", "--mem", "--conf", "--quiet", "--verbose"):
        assert option in out, out


def test_help_stays_where_the_app_had_it_among_its_arguments(capsys):
    argv = ["app.py", "a", "-m", "local", "--help", "b", "-q", "c"]
    assert from_argv(argv).help and argv == ["app.py", "a", "--help", "b", "c"]
    argv = ["app.py", "--help", "x"]
    assert from_argv(argv).help and argv == ["app.py", "--help", "x"]
    argv = ["app.py", "x", "--", "--help"]          # the app's own, after --
    assert not from_argv(argv).help and argv == ["app.py", "x", "--", "--help"]
    assert "--master" in capsys.readouterr().out


def test_a_conf_file_given_to_a_context_that_reads_argv(tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text('master = "process:3"\nmem = 64\n')
    opts = from_argv(["app.py", "-q"], conf=str(conf))
    assert (opts.master, opts.mem, opts.quiet) == ("process:3", 64, True)
    other = tmp_path / "d.toml"
    other.write_text('master = "local"\n')
    assert from_argv(["app.py", "--conf", str(other)], conf=str(conf)).master == "local"   # argv's wins



def test_an_option_takes_the_command_lines_value_then_the_codes_then_the_conf_files(tmp_path, monkeypatch):
    conf = tmp_path / "c.toml"
    conf.write_text("parallel = 2\nmem = 64\nmax_failures = 7\n")
    opts = from_argv(["app.py", "-p", "5"], conf=str(conf), parallel=3, mem=128)
    assert (opts.parallel, opts.mem, opts.max_failures) == (5, 128, 7)
    monkeypatch.setattr(sys, "argv", ["app.py", "-p", "5"])
    with Context("local", parallel=4, quiet=True) as ctx:      # a master given: no command line read
        assert ctx.options.parallel == 4 and ctx.parallelize(range(8)).getNumPartitions() == 4
    assert sys.argv == ["app.py", "-p", "5"]

@pytest.mark.parametrize("argv", [["-p", "abc"], ["--mem", "x"], ["-m"], ["--cpus"]])
def test_bad_option_values_are_a_config_error(argv):
    with pytest.raises(ConfigError, match="see --help"):
        from_argv(["app.py", *argv])


# --- bad input to an app gives one line ---------------------------------------------------------

def run_app(*args):
    return subprocess.run([sys.executable, os.path.join(APPS, "wc_app.py"), *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case", ["master", "missing", "conf", "conf latin-1", "conf folder", "mem inf", "parallel abc",
                                  "bare -m", "unlistable folder", "unsearchable folder", "unreadable file", "device",
                                  "master in code", "missing, master in code", "mfs:///x.txt", "mfs://h:0/x.txt",
                                  "mfs://h:99999/x.txt", "mfs://h:abc/x.txt"])
def test_an_app_with_bad_input_prints_one_error_line(tmp_path, case):
    data = write(tmp_path / "words.txt", "a b c\n")
    if case == "parallel abc":
        proc = run_app(data, "-p", "abc", "-q")
        token = "'abc'"
    elif case == "bare -m":
        proc = run_app(data, "-q", "-m")
        token = "-m/--master"
    elif case.endswith("master in code"):
        path = data if case == "master in code" else str(tmp_path / "missing.txt")
        proc = subprocess.run([sys.executable, os.path.join(APPS, "explicit_master_app.py"),
                               "bogus" if case == "master in code" else "local", path],
                              capture_output=True, text=True, timeout=120)
        token = "bogus" if case == "master in code" else "missing.txt"
    elif case == "master":
        proc = run_app(data, "-m", "nowhere:land", "-q")
        token = "nowhere:land"
    elif case == "missing":
        proc = run_app(str(tmp_path / "missing.txt"), "-m", "local", "-q")
        token = "missing.txt"
    elif case == "conf":
        proc = run_app(data, "--conf", write(tmp_path / "bad.conf", "= = ="), "-q")
        token = "bad.conf"
    elif case == "conf latin-1":
        conf = tmp_path / "latin.conf"
        conf.write_bytes(b"\xff\xfe garbage\n")
        proc = run_app(data, "--conf", str(conf), "-q")
        token = "latin.conf"
    elif case == "conf folder":
        proc = run_app(data, "--conf", str(tmp_path), "-q")
        token = str(tmp_path)
    elif case in ("unlistable folder", "unsearchable folder", "unreadable file"):
        (tmp_path / "d").mkdir()
        inside = write(tmp_path / "d" / "words.txt", "a b c\n")
        os.chmod(inside if case == "unreadable file" else tmp_path / "d", 0o300 if case == "unlistable folder" else 0)
        try:     # without the capabilities that let root read anything
            proc = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search",
                                   sys.executable, os.path.join(APPS, "wc_app.py"),
                                   str(tmp_path / "d") if case == "unlistable folder" else inside, "-q"],
                                  capture_output=True, text=True, timeout=120)
        finally:
            os.chmod(tmp_path / "d", 0o700)
        token = {"unlistable folder": "cannot list the folder", "unsearchable folder": "cannot be read",
                 "unreadable file": "cannot be read: permission denied"}[case]
    elif case == "device":
        proc = run_app("/dev/null", "-q")
        token = "neither a file nor a folder"
    elif case.startswith("mfs://"):     # refused before any connection: no master host, or a bad port
        proc = run_app(case, "-q")
        token = case
    else:
        proc = run_app(data, "--mem", "inf", "-q")
        token = "inf"
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert token in lines[0] and "Traceback" not in proc.stderr


SIGTERM_DURING_START = """
import os, signal, sys
from gopark import Context
from gopark.scheduler import process
started = process.ProcessBackend.__init__
def start_then_sigterm(self, *args, **kwargs):
    started(self, *args, **kwargs)           # the workers and the work folder exist
    print(" ".join(str(p) for p in self.worker_pids), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)      # as a service manager stopping the app while it starts
process.ProcessBackend.__init__ = start_then_sigterm
Context("process:2", quiet=True)
print("the Context started", flush=True)
"""


def test_sigterm_while_a_context_starts_leaves_nothing(tmp_path):
    """SIGTERM between the work folder's making and the end of Context(): a clean exit (143), its workers
    ended and its work folder removed, as for a SIGTERM during a job."""
    env = dict(os.environ, TMPDIR=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", SIGTERM_DURING_START], env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 128 + signal.SIGTERM, (run.returncode, run.stderr)
    assert "the Context started" not in run.stdout
    workers = [int(p) for p in run.stdout.split()]
    assert len(workers) == 2
    assert wait_until(lambda: not any(alive(p) for p in workers), timeout=30)
    assert not [n for n in os.listdir(tmp_path) if n.startswith("gopark-")], os.listdir(tmp_path)


SIGTERM_AS_A_WORKER_LEAVES = """
import atexit, os, signal, time
from gopark import Context, register_func
armed = []
def sigterm_at_exit():
    os.kill(os.getpid(), signal.SIGTERM)   # a service manager's, to the app's process group, as it stops
    time.sleep(0.2)
    print("the worker's exit went on after its SIGTERM", flush=True)
@register_func
def arm(x):
    if os.environ.get("GOPARK_ROLE") == "worker" and not armed:
        armed.append(atexit.register(sigterm_at_exit))
    return x
if __name__ == "__main__":
    with Context("process:2", quiet=True) as ctx:
        print(ctx.parallelize(range(4), 4).map(arm).count(), flush=True)
"""


def test_a_sigterm_to_a_worker_that_has_left_its_task_loop_ends_it_silently(tmp_path):
    """A worker asked to leave runs the app's atexit handlers (and threading's shutdown); a SIGTERM then
    (``kill -TERM -PGID`` as the app stops) ends it as it would any program. It used to raise the worker's
    Terminated inside the interpreter's exit, which Python printed on the app's stderr as "Exception
    ignored ... gopark.errors.Terminated: 143" (found by a peer-test helper)."""
    app = tmp_path / "term_at_exit.py"
    app.write_text(SIGTERM_AS_A_WORKER_LEAVES)
    run = subprocess.run([sys.executable, str(app)], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, TMPDIR=str(tmp_path), PYTHONPATH=os.pathsep.join(sys.path)))
    assert (run.returncode, run.stdout, run.stderr) == (0, "4\n", "")


CTRL_C_AFTER_A_TASK_ENDED = """
import functools, os, signal, sys, threading, time
from gopark import Context, register_func
from gopark.scheduler import dag
@register_func
def count(acc, x):
    acc.add(1)
    if x % 25 == 0:
        time.sleep(1)       # each task a second: the first has ended at 1.5 s, the next one runs
    return x
posting = dag.DAGScheduler.post
def ctrl_c_as_the_first_task_ends(self, event):
    if event[0] == "end" and not pressed:
        pressed.append(1)
        os.kill(os.getpid(), signal.SIGINT)     # before the scheduler has taken the end (still to be queued)
        time.sleep(0.5)
    posting(self, event)
pressed = []
if __name__ == "__main__":
    mode, when = sys.argv[1:]
    if when == "as-it-ends":
        dag.DAGScheduler.post = ctrl_c_as_the_first_task_ends
    with Context(mode, quiet=True) as ctx:
        acc = ctx.accumulator(0)
        rdd = ctx.parallelize(range(100), 4).map(functools.partial(count, acc)).cache()
        if when == "later":
            threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        try:
            rdd.count()
        except KeyboardInterrupt:
            print("interrupted", acc.value, flush=True)
        print(rdd.count(), acc.value, flush=True)
"""


@pytest.mark.parametrize("mode, when", [("local", "later"), ("process:2", "as-it-ends")])
def test_a_caught_ctrl_c_keeps_the_updates_of_the_tasks_that_had_ended(tmp_path, mode, when):
    """An app catches a Ctrl-C that ends a job of a cached RDD and goes on with it: the tasks that had
    ended keep their cached partitions, so their accumulator updates count (they are not computed again),
    and every record counts once in all. Local mode used to drop them: a stage's ends were handled only
    after all its tasks had run; a task whose end was still queued when the job ended (process mode) was
    dropped with it (found by a peer-test helper)."""
    app = tmp_path / "ctrl_c_after_a_task.py"
    app.write_text(CTRL_C_AFTER_A_TASK_ENDED)
    run = subprocess.run([sys.executable, str(app), mode, when], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, TMPDIR=str(tmp_path), PYTHONPATH=os.pathsep.join(sys.path)))
    assert run.returncode == 0, run.stderr
    interrupted, after = run.stdout.splitlines()
    assert after == "100 100", run.stdout
    if mode == "local":     # one task had ended, the next was running: its updates went with it
        assert interrupted == "interrupted 25", run.stdout


CTRL_C_INSIDE_START = """
import os, signal, sys
import zmq
from gopark import Context
made = zmq.Context._add_socket
def made_then_ctrl_c(self, socket):
    os.kill(os.getpid(), signal.SIGINT)       # Ctrl-C just as zmq has made the driver's socket
    return made(self, socket)
zmq.Context._add_socket = made_then_ctrl_c
try:
    Context("process:2", quiet=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
zmq.Context._add_socket = made
with Context("process:2", quiet=True) as ctx:
    print(ctx.parallelize(range(10), 2).count(), flush=True)
"""


def test_ctrl_c_inside_a_contexts_start_is_handled_once_it_has_started(tmp_path):
    """Ctrl-C while Context() starts its pool waits until the pool has started (or failed to), then
    interrupts it: nothing is left behind and the next Context starts. Handled in the middle, it could leave
    a socket zmq had made but not yet handed over, which zmq's term() waited for for ever (found by a chaos
    test), zmq half imported (every later Context failing), or a worker started and not known."""
    env = dict(os.environ, TMPDIR=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", CTRL_C_INSIDE_START], env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and run.stdout.split() == ["interrupted", "10"], (run.stdout, run.stderr)
    assert not [n for n in os.listdir(tmp_path) if n.startswith("gopark-")], os.listdir(tmp_path)


CTRL_C_BURST_IN_STOP = """
import os, shutil, signal, sys
from gopark import Context, context
from gopark.scheduler import process
stopping, removing = process.ProcessBackend.stop, shutil.rmtree
def stop_under_ctrl_c(self):
    for _ in range(3):
        os.kill(os.getpid(), signal.SIGINT)   # a user pressing Ctrl-C again and again while it stops
    stopping(self)
def remove_under_ctrl_c(path, *args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)       # ... and as it removes the work folder
    removing(path, *args, **kwargs)
process.ProcessBackend.stop = stop_under_ctrl_c
context.shutil.rmtree = remove_under_ctrl_c
ctx = Context("process:2", quiet=True)
workers = ctx.backend.worker_pids
try:
    ctx.stop()
except KeyboardInterrupt:
    print("interrupted once", flush=True)
def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
print("workers alive", any(alive(p) for p in workers), flush=True)
print("work folder", os.path.exists(ctx.work_dir), flush=True)
"""


def test_ctrl_c_again_and_again_while_a_context_stops_is_handled_once_it_has_stopped(tmp_path):
    """Ctrl-C pressed again and again while stop() runs is handled once, when its workers are ended and its
    work folder removed (each one, handled as it came, could cut the removal of the folder, left for good)."""
    run = subprocess.run([sys.executable, "-c", CTRL_C_BURST_IN_STOP], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, TMPDIR=str(tmp_path)))
    assert run.returncode == 0 and run.stdout.splitlines() == [
        "interrupted once", "workers alive False", "work folder False"], (run.stdout, run.stderr)
    assert not [n for n in os.listdir(tmp_path) if n.startswith("gopark-")], os.listdir(tmp_path)


CTRL_C_IN_STOP_AT_EXIT = """
import os, signal
from gopark import Context
from gopark.scheduler import process
stopping = process.ProcessBackend.stop
def stop_under_ctrl_c(self):
    os.kill(os.getpid(), signal.SIGINT)       # Ctrl-C as the app, ending, stops the Context it left running
    stopping(self)
process.ProcessBackend.stop = stop_under_ctrl_c
ctx = Context("process:2", quiet=True)
print(ctx.parallelize(range(10), 2).count(), ctx.work_dir, flush=True)
"""


def test_ctrl_c_while_an_ending_app_stops_its_context_is_quiet_and_leaves_nothing(tmp_path):
    """A Context left running is stopped at the interpreter's exit; a Ctrl-C then has nothing left to
    interrupt: no "Exception ignored in atexit callback" traceback, the workers and the work folder gone."""
    run = subprocess.run([sys.executable, "-c", CTRL_C_IN_STOP_AT_EXIT], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, TMPDIR=str(tmp_path)))
    assert run.returncode == 0 and run.stderr == "", (run.returncode, run.stderr)
    count, work_dir = run.stdout.split()
    assert count == "10" and not os.path.exists(work_dir)
    assert not [n for n in os.listdir(tmp_path) if n.startswith("gopark-")], os.listdir(tmp_path)


CTRL_C_THEN_SIGTERM_IN_STOP = """
import os, signal
from gopark import Context
from gopark.scheduler import process
stopping = process.ProcessBackend.stop
def stop_under_signals(self):
    os.kill(os.getpid(), signal.SIGINT)
    os.kill(os.getpid(), signal.SIGTERM)
    stopping(self)
process.ProcessBackend.stop = stop_under_signals
try:
    Context("process:2", quiet=True).stop()
except KeyboardInterrupt:
    print("only the Ctrl-C was handled", flush=True)
"""


def test_a_sigterm_held_with_a_ctrl_c_while_a_context_stops_still_ends_the_app(tmp_path):
    """Both held during stop(): SIGTERM is handled first (exit 143), not lost behind the KeyboardInterrupt
    that Ctrl-C's handler raises."""
    run = subprocess.run([sys.executable, "-c", CTRL_C_THEN_SIGTERM_IN_STOP], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, TMPDIR=str(tmp_path)))
    assert run.returncode == 128 + signal.SIGTERM and not run.stdout, (run.returncode, run.stdout, run.stderr)
    assert not [n for n in os.listdir(tmp_path) if n.startswith("gopark-")], os.listdir(tmp_path)


def test_a_function_that_cannot_travel_is_one_error_line_naming_the_apps_line(tmp_path):
    """A lambda given to map, not caught by the app: one line (a TypeError still, as SPEC section 2 says),
    saying what to do and where, not a traceback through gopark's frames."""
    import gopark
    assert issubclass(gopark.FunctionNotSendable, TypeError)
    app = tmp_path / "lambda_app.py"
    app.write_text("from gopark import Context\nwith Context('local') as ctx:\n"
                   "    ctx.parallelize([1]).map(lambda x: x).count()\n")
    run = subprocess.run([sys.executable, str(app)], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert run.returncode == 1
    assert run.stderr.strip() == ("gopark: error: RDD.map got a lambda: gopark sends functions by name, so pass a "
                                  "module-level function decorated with @register_func (or a functools.partial of "
                                  "one) (at lambda_app.py:3)"), run.stderr


CTRL_C_TWICE_IN_A_JOB = """
import os, signal, sys, threading, time
from gopark import Context, register_func
from gopark.scheduler import process
@register_func
def slow(x):
    time.sleep(0.2)
    return x
cancelling = process.ProcessBackend.cancel
def cancel_under_ctrl_c(self, tids):
    os.kill(os.getpid(), signal.SIGINT)   # the same Ctrl-C again (a frozen app's launcher passes it on)
    cancelling(self, tids)
process.ProcessBackend.cancel = cancel_under_ctrl_c
def press_twice():
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(float(sys.argv[1]))        # a moment later: as the first is being handled
    os.kill(os.getpid(), signal.SIGINT)
if __name__ == "__main__":
    with Context("process:2", quiet=True) as ctx:
        threading.Timer(0.5, press_twice).start()
        ctx.parallelize(range(100), 20).map(slow).count()
"""


@pytest.mark.parametrize("gap", [0.0, 0.0005, 0.002, 0.01, 0.05, 0.3])
def test_a_ctrl_c_that_comes_twice_interrupts_a_job_once(tmp_path, gap):
    """A second SIGINT while the job's clean-up and the Context's stop run for the first (a frozen app gets
    the terminal's and its launcher's), or once they are done, as the app goes down (0.3 s: while the
    interpreter waits for the thread that sends it), is the same Ctrl-C: one KeyboardInterrupt traceback,
    not a second one "during handling of the above exception", or raised where stderr is gone; nothing
    left behind."""
    app = tmp_path / "twice.py"
    app.write_text(CTRL_C_TWICE_IN_A_JOB)
    run = subprocess.run([sys.executable, str(app), str(gap)], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, TMPDIR=str(tmp_path)))
    assert run.returncode == -signal.SIGINT, (run.returncode, run.stderr)    # as Python ends on a Ctrl-C
    assert run.stderr.count("KeyboardInterrupt") == 1 and "During handling" not in run.stderr, run.stderr
    assert not [n for n in os.listdir(tmp_path) if n.startswith("gopark-")], os.listdir(tmp_path)


def test_every_error_kind_is_importable_from_gopark_and_is_a_goparkerror(ctx, tmp_path):
    """An app catches gopark's errors by the names `gopark` exports, one base for all, each also the builtin
    kind it is (a missing input is a FileNotFoundError)."""
    import gopark
    kinds = ["JobError", "SerializationError", "FetchFailed", "ConfigError", "InputNotFound", "InputUnavailable",
             "OutputExists", "OutputNotWritable", "FunctionNotSendable"]
    assert all(issubclass(getattr(gopark, k), gopark.GoparkError) for k in kinds)
    with pytest.raises(gopark.InputNotFound) as missing:
        ctx.textFile(str(tmp_path / "nowhere.txt"))
    assert isinstance(missing.value, FileNotFoundError)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("")
    with pytest.raises(gopark.OutputExists):
        ctx.parallelize([1], 1).saveAsTextFile(str(tmp_path / "out"))


@pytest.mark.parametrize("sig", ["TERM", "INT"])
def test_signals_striking_local_jobs_at_random_never_hang_nor_leave_a_task_behind(sig):
    """SIGTERM or Ctrl-C while local-mode jobs run, at random moments: each time the Context ends with
    Terminated (KeyboardInterrupt) and the next one starts and counts (found hanging in the scheduler's queue,
    and refusing every later Context as 'inside a task', by a fuzzer)."""
    app = os.path.join(os.path.dirname(__file__), "apps", "signal_storm_app.py")
    ran = subprocess.run([sys.executable, app, "150"], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, SIG=sig, PYTHONPATH=os.pathsep.join(sys.path)))
    assert ran.returncode == 0 and ran.stdout.strip() == "150 ended", (ran.stdout[-2000:], ran.stderr[-3000:])


def test_task_state_a_signal_left_set_is_cleared_before_the_next_context_and_job():
    """What a local task that a signal ended while it was being restored leaves set (its accumulator table,
    its broadcasts), outside any task, does not make the driver a task: Context() starts, the driver's adds
    count and its value reads."""
    from gopark import shared
    shared._task_local.updates, shared._task_local.broadcasts = {}, ["gone", {}]      # as such a task leaves it
    with Context("local", quiet=True) as c:
        acc = c.accumulator(0)
        acc.add(2)
        assert acc.value == 2 and c.parallelize(range(3), 2).count() == 3
    shared._task_local.updates = {}
    with Context("local", quiet=True) as c:
        shared._task_local.updates = {}                  # left after the Context started: the next job clears it
        acc = c.accumulator(0)
        assert c.parallelize(range(3), 2).count() == 3
        acc.add(5)
        assert acc.value == 5


@register_func(name="errors.drop_a_termination")
def drop_a_termination(x):
    """A Terminated raised where Python only prints it: in a weakref's callback, as a signal handler may."""
    import weakref

    from gopark.errors import Terminated

    class Held:
        pass

    def callback(_ref):
        raise Terminated(143)

    held = Held()
    ref = weakref.ref(held, callback)
    del held
    assert ref() is None
    return x


def test_a_termination_signal_whose_exception_python_dropped_still_ends_the_job():
    """A signal handler's exception raised inside a garbage collector's callback is only printed: the
    Context posts it to its scheduler, whose job raises it, and the Context stops as for any SIGTERM."""
    with pytest.raises(SystemExit) as ended:
        with Context("local", quiet=True) as c:
            c.parallelize([1, 2], 2).map(drop_a_termination).collect()
    assert type(ended.value).__name__ == "Terminated" and ended.value.code == 143
    with Context("local", quiet=True) as c:          # the signal is not raised again
        assert c.parallelize([1, 2], 2).collect() == [1, 2]


def test_a_job_run_while_a_sigterm_unwinds_the_app_is_not_ended_again():
    """An app that saves what it has in a ``finally`` while the SIGTERM's Terminated propagates: its job runs."""
    app = ("import os, signal, time\nfrom gopark import Context\nwith Context('local', quiet=True) as ctx:\n"
           "    try:\n        os.kill(os.getpid(), signal.SIGTERM)\n        time.sleep(5)\n    finally:\n"
           "        print('cleanup', ctx.parallelize(range(10), 2).count(), flush=True)\n")
    ran = subprocess.run([sys.executable, "-c", app], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert ran.stdout == "cleanup 10\n" and ran.returncode == 143, (ran.stdout, ran.stderr[-2000:])
