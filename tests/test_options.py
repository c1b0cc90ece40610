"""Where a bare Context() takes its options: the app's command line, never a test runner's."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

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
from gopark import Context, JobError, register_func

@register_func
def inc(x):
    return x + 1

with Context("local", quiet=True) as ctx:
    print(ctx.parallelize([1, 2]).map(inc).collect())
with Context("process:2", quiet=True, max_failures=1) as ctx:
    try:
        ctx.parallelize([1, 2]).map(inc).collect()
    except JobError as e:
        print("JobError", e.remote_type, "interactive session" in e.remote_message)
'''


@pytest.mark.parametrize("how", ["-c", "stdin"])
def test_functions_of_an_interactive_session_run_locally_and_say_why_not_elsewhere(how) -> None:
    """``python -c``, and a script piped to ``python -`` (whose ``__file__`` is ``<stdin>``, not a file)."""
    args, given = ([sys.executable, "-c", INTERACTIVE], None) if how == "-c" else ([sys.executable, "-"], INTERACTIVE)
    result = subprocess.run(args, input=given, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[2, 3]", "JobError LookupError True"]


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
