"""Where a bare Context() takes its options: the app's command line, never a test runner's; and a master
that is a mistyped mode (procss:2), not taken for a Mesos master's host:port."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gopark import ConfigError, Context
from gopark import options as options_mod

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

INNER_TEST = '''
from gopark import Context

def test_bare_context():
    with Context() as ctx:
        assert ctx.master.kind == "local"
        assert ctx.parallelize([1, 2, 3]).count() == 3
'''


def test_a_bare_context_under_pytest_ignores_pytests_own_options(tmp_path: str) -> None:
    test = os.path.join(tmp_path, "test_inner.py")
    with open(test, "w") as f:
        f.write(INNER_TEST)
    # -m (markers) and -p (plugins) are pytest's here, not gopark's master and parallelism
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
                             test], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


INTERACTIVE = '''
from gopark import Context, register_func

@register_func
def inc(x):
    return x + 1

with Context("local", quiet=True) as ctx:
    print(ctx.parallelize([1, 2]).map(inc).collect())
with Context("process:2", quiet=True) as ctx:
    try:
        ctx.parallelize([1, 2]).map(inc)
    except TypeError as e:      # at the call, in the driver: never a task failing on every worker
        print("TypeError", "interactive session" in str(e))
'''


@pytest.mark.parametrize("how", ["-c", "stdin"])
def test_functions_of_an_interactive_session_run_locally_and_are_refused_for_workers(how) -> None:
    """``python -c``, and a script piped to ``python -`` (whose ``__file__`` is ``<stdin>``, not a file)."""
    args, given = ([sys.executable, "-c", INTERACTIVE], None) if how == "-c" else ([sys.executable, "-"], INTERACTIVE)
    result = subprocess.run(args, input=given, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[2, 3]", "TypeError True"]


SELF_IMPORT = '''
from gopark import Context, register_func

@register_func
def inc(x):
    return x + 1

import selfimport  # the script imports itself: two copies of inc under one name

if __name__ == "__main__":
    with Context("process:2", quiet=True) as ctx:
        print(ctx.parallelize([1, 2], 2).map(inc).collect(), ctx.parallelize([1]).map(selfimport.inc).collect())
'''


def test_a_script_that_also_imports_itself_keeps_its_functions(tmp_path: str) -> None:
    script = os.path.join(tmp_path, "selfimport.py")
    with open(script, "w") as f:
        f.write(SELF_IMPORT)
    result = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[2, 3] [2]"


# --- a mistyped mode is not a Mesos master's host:port -----------------------------------------------------

MISTYPED = [("procss:2", "'process:2'"), ("proces:4", "'process:4'"), ("porcess:3", "'process:3'"),
            ("proccess:8", "'process:8'"), ("Process:4", "'process:4'"), ("lcoal:1", "'local'"),
            ("locla:2", "'local'"), ("LOCAL:1", "'local'"), ("meoss:50", "'mesos'"), ("mesos:5", "'mesos'"),
            # below port 1024, a mode's start or a mode with letters added
            ("processes:2", "'process:2'"), ("proc:2", "'process:2'"), ("locals:3", "'local'")]
# hosts of Mesos masters: a dot, a digit or a dash, not a mode name one slip away, or 'mesos' (one slip
# away or not) at a port of 1024 or above; and any host given as mesos://
MESOS_HOSTS = ["master:5050", "node1:5050", "mesos-master:5050", "mesos:5050", "Mesos:5050", "mesos1:5050",
               "localhost:5050", "local.example.com:5050", "10.0.0.1:5050", "focal:5050", "meson:5050",
               "meoss:5050", "meso:5050", "mess:5050",        # near 'mesos', at a port a master may have
               "prowess:5050", "progress:5050", "mesos://procss:2", "mesos://lcoal:5050",
               "processes:5050", "procs:5050"]


@pytest.mark.parametrize(("master", "meant"), MISTYPED)
def test_a_mistyped_mode_is_refused_at_the_context_saying_what_was_meant(master: str, meant: str) -> None:
    with pytest.raises(ConfigError) as info:
        Context(master, quiet=True)
    said = str(info.value)
    assert "\n" not in said and said.startswith(f"unknown master {master!r}: ")
    assert f"did you mean {meant}" in said, said
    host, _, port = master.partition(":")
    assert f"'mesos://{host}:{port}'" in said, said        # where a Mesos master on such a host is meant
    assert "build" not in said


@pytest.mark.parametrize("master", MESOS_HOSTS)
def test_a_mesos_master_on_a_short_host_name_is_still_one(master: str) -> None:
    with pytest.raises(ConfigError) as info:     # unfrozen: a Mesos master is known, and refused for that
        Context(master, quiet=True)
    assert "-m mesos runs a frozen app: build it first" in str(info.value)


@pytest.mark.parametrize("master", ["local[2]", "local[*]", "local:2"])
def test_sparks_local_n_is_refused_pointing_at_process_n(master: str) -> None:
    with pytest.raises(ConfigError, match=r"for N worker processes use process:N"):
        Context(master, quiet=True)


def run_wc_app(*args: str, cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(ROOT, "tests", "apps", "wc_app.py"), *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd, env=dict(os.environ, PYTHONPATH=ROOT))


@pytest.mark.parametrize(("how", "master", "meant"), [("-m", "procss:2", "'process:2'"), ("-m", "lcoal:1", "'local'"),
                                                      ("--master", "proces:4", "'process:4'"),
                                                      ("--conf", "procss:2", "'process:2'")])
def test_a_mistyped_mode_on_the_command_line_or_in_a_conf_file_is_one_error_line(tmp_path, how: str, master: str,
                                                                                 meant: str) -> None:
    (tmp_path / "words.txt").write_text("a b a\n")
    if how == "--conf":
        (tmp_path / "app.conf").write_text(f'master = "{master}"\n')
        given = ["--conf", str(tmp_path / "app.conf")]
    else:
        given = [how, master]
    result = run_wc_app(str(tmp_path / "words.txt"), *given, "-q", cwd=str(tmp_path))
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [result.stderr.strip()], result.stderr
    named = f"--conf file {str(tmp_path / 'app.conf')!r}: " if how == "--conf" else ""    # where the value came from
    assert result.stderr.startswith(f"gopark: error: {named}unknown master {master!r}: did you mean {meant}"), \
        result.stderr


@pytest.mark.parametrize(("line", "said"), [("mem = -5", "mem must be a positive number of MB, not -5"),
                                            ('quiet = "yes"', "quiet must be true or false, not 'yes'"),
                                            ("parallel = 0", "parallel must be a positive integer, not 0")])
def test_a_bad_value_of_a_conf_file_names_the_file_unless_an_argument_replaces_it(tmp_path, line, said) -> None:
    conf = tmp_path / "app.conf"
    conf.write_text(line + "\n")
    with pytest.raises(ConfigError, match=f"^--conf file {str(conf)!r}: {said}$"):
        Context(conf=str(conf))
    with Context(conf=str(conf), mem=100, quiet=True, parallel=2, master="local") as ctx:
        assert ctx.options.mem == 100
    with pytest.raises(ConfigError, match="^cpus must be a positive number, not 0$"):      # the argument's own
        Context(conf=str(conf), mem=100, quiet=True, parallel=2, master="local", cpus=0)


@pytest.mark.parametrize(("given", "meant"), [(["--mastr", "process:2"], "--master"),
                                           (["--Master=process:2"], "--master"), (["--verbos"], "--verbose"),
                                           (["--parallell", "2"], "--parallel")])
def test_a_mistyped_gopark_option_is_left_to_the_app_with_a_warning(tmp_path, given: list[str], meant: str) -> None:
    """An argument one slip (or a case) away from a gopark option is the app's, as every unknown one is, but
    it is said: the run would otherwise go on silently with gopark's default (local mode for --mastr)."""
    (tmp_path / "words.txt").write_text("a b a\n")
    result = run_wc_app(str(tmp_path / "words.txt"), *given, "-q", cwd=str(tmp_path))
    assert result.returncode == 0 and f"args {[str(tmp_path / 'words.txt'), *given]}" in result.stdout, result.stderr
    assert f"MistypedOptionWarning: {given[0].partition('=')[0]} is not a gopark option (did you mean {meant}?)" \
        in result.stderr, result.stderr
    app_own = run_wc_app(str(tmp_path / "words.txt"), "--tag", "x", "--memo", "--cpu", "-q", cwd=str(tmp_path))
    assert app_own.returncode == 0 and "Warning" not in app_own.stderr, app_own.stderr


def test_an_input_error_line_says_where_the_app_made_the_call(tmp_path) -> None:
    """The one error line of a gopark input error names the app's line that received the bad input."""
    app = tmp_path / "stopped_app.py"
    app.write_text("from gopark import Context\nwith Context('local') as ctx:\n    rdd = ctx.parallelize([1])\n"
                   "rdd.count()\n")
    result = subprocess.run([sys.executable, str(app)], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 1
    assert result.stderr.strip() == ("gopark: error: this Context is stopped: make a new Context to run more jobs "
                                     "(at stopped_app.py:4)"), result.stderr


def test_a_mesos_master_on_the_command_line_is_still_one(tmp_path) -> None:
    (tmp_path / "words.txt").write_text("a b a\n")
    result = run_wc_app(str(tmp_path / "words.txt"), "-m", "master:5050", "-q", cwd=str(tmp_path))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.startswith("gopark: error: -m mesos runs a frozen app: build it first with `gopark build "
                                    f"{os.path.join(ROOT, 'tests', 'apps', 'wc_app.py')}`"), result.stderr
    result = run_wc_app(str(tmp_path / "words.txt"), "-m", "local", "-q", cwd=str(tmp_path))
    assert result.returncode == 0 and "distinct 2" in result.stdout, result.stderr


def test_python_m_gopark_is_the_gopark_command() -> None:
    """``python -m gopark options`` (and ``--version``) work where the ``gopark`` script is not on PATH."""
    shown = subprocess.run([sys.executable, "-m", "gopark", "options"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    for option in ("--master", "--parallel", "--cpus", "--mem", "--max-failures", "--compress", "--conf", "--quiet"):
        assert option in shown.stdout, option
    version = subprocess.run([sys.executable, "-m", "gopark", "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("gopark "), version


def test_every_context_of_a_run_takes_the_command_lines_options(tmp_path) -> None:
    """The first Context takes gopark's options out of sys.argv; one made after it (after stop(), or in
    a second ``with``) runs with them too, not silently in local mode (DPark parses them once)."""
    script = tmp_path / "two_contexts.py"
    script.write_text(
        "import sys\nfrom gopark import Context\n"
        "for n in range(2):\n"
        "    with Context() as ctx:\n"
        "        print(ctx.options.master, ctx.defaultParallelism, ctx.options.max_failures, sys.argv[1:])\n")
    ran = subprocess.run([sys.executable, str(script), "-m", "process:2", "-p", "3", "in.txt", "--max-failures",
                          "2", "-q"], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == ["process:2 3 2 ['in.txt']"] * 2


def test_a_new_sys_argv_list_is_read_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """The options are remembered for the list they were taken from: an app (or a test) that sets
    sys.argv to a new list gets what that list says."""
    monkeypatch.setattr(sys, "argv", ["app.py", "-m", "process:2", "-p", "3"])
    assert options_mod.from_argv().parallel == 3 and sys.argv == ["app.py"]
    assert options_mod.from_argv().parallel == 3          # the same list: the options it had
    monkeypatch.setattr(sys, "argv", ["app.py", "x"])
    fresh = options_mod.from_argv()
    assert fresh.parallel is None and fresh.master == "local" and sys.argv == ["app.py", "x"]
