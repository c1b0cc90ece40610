"""The entry of a binary made by ``gopark build``: one executable, every role.

``gopark build app.py`` freezes a two-line entry script that calls
``main("app")``. The role comes from the environment:

- no ``GOPARK_ROLE``: the **driver**. The app module runs as ``__main__``
  (its ``if __name__ == "__main__":`` block runs), its functions registered
  under the app's module name, as with ``python app.py``;
- ``GOPARK_ROLE=worker``: a **worker** of a process pool. The app is imported
  under its own name, never as ``__main__``, when a task first names it, so
  only its registrations run;
- ``GOPARK_ROLE=executor``: a **Mesos executor**, started by a Mesos agent
  from the binary its fetcher downloaded; it checks its sha256, then runs
  tasks in a pool of workers (this binary again, in the worker role).
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types

from gopark import binary, options, registry


def run_driver(app_module: str) -> int:
    """Run the app as ``__main__``, as ``python app.py`` would."""
    if binary.is_onefile():   # the bootloader parent unpacked us: if it is killed, go too (workers follow)
        from launcher.worker import die_with_parent
        die_with_parent()
        binary.remove_stale_unpack_dirs()
    if "--help" in sys.argv[1:]:
        print(options.help_text())
        os.environ[options.HELP_SHOWN_ENV] = "1"
    sys.argv[0] = binary.executable()
    registry.ARGV_AT_IMPORT[0] = sys.argv[0]     # what the app's module-level code sees (so on workers too)
    try:
        _run_as_main(app_module)
    except SystemExit:
        raise
    except BaseException as exc:  # report it as `python app.py` would, not as the bootloader does
        sys.excepthook(type(exc), exc, exc.__traceback__)
        return 130 if isinstance(exc, KeyboardInterrupt) else 1
    return 0


def _run_as_main(app_module: str) -> None:
    """``runpy.run_module(app_module, run_name="__main__", alter_sys=True)``, except that ``sys.argv[0]``
    stays the executable (runpy would make it the module's path inside the unpacked folder, so the
    app's argparse would say ``usage: app.py``)."""
    spec = importlib.util.find_spec(app_module)
    if spec is None or spec.loader is None:
        raise ImportError(f"the app module {app_module!r} is not in this binary")
    code = spec.loader.get_code(app_module)  # type: ignore[attr-defined]
    module = types.ModuleType("__main__")
    module.__dict__.update(__file__=spec.origin, __cached__=None, __loader__=spec.loader,
                           __package__=spec.parent, __spec__=spec)
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = module
    try:
        exec(code, module.__dict__)
    finally:
        if saved is not None:
            sys.modules["__main__"] = saved


def main(app_module: str) -> int:
    """Dispatch on the role; ``app_module`` is the frozen app's module name."""
    os.environ[registry.MAIN_NAME_ENV] = app_module
    role = os.environ.get("GOPARK_ROLE", "driver")
    if role == "worker":
        from launcher import worker
        return worker.main()
    if role == "driver":
        return run_driver(app_module)
    if role == "executor":
        from launcher import executor
        if binary.is_onefile():
            binary.remove_stale_unpack_dirs()
        return executor.main()
    print(f"gopark: error: unknown role GOPARK_ROLE={role!r}", file=sys.stderr)
    return 2
