"""``gopark build``: freeze an app with PyInstaller into one executable that plays every role.

The app is not the frozen entry point: a two-line entry script calls
``launcher.main.main("<app module>")``, and the app is bundled as an ordinary
module, so the driver runs it as ``__main__`` and workers import it by name
(see launcher/main.py). PyInstaller runs in this process on the top-level
``build.spec``; its work files live in a cache folder per app
(``$GOPARK_BUILD_CACHE``, default ``~/.cache/gopark/build``), never in the
user's source folder, and make a rebuild of an unchanged app take a second. They are reused only while
every source the last build bundled has the same content (PyInstaller itself goes by mtimes).
"""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable

from gopark import binary
from gopark.errors import GoparkError


class BuildError(GoparkError):
    """The app cannot be built; the message says why in one line."""


@dataclasses.dataclass
class BuildResult:
    path: str          # the executable
    size: int          # bytes: the file, or the whole folder for --onedir
    sha256: str        # what a driver announces to Mesos executors
    seconds: float


def _spec_path() -> str:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for candidate in (os.path.join(here, "build.spec"), os.path.join(sys.prefix, "share", "gopark", "build.spec")):
        if os.path.isfile(candidate):
            return candidate
    raise BuildError("build.spec is missing from this gopark installation")


def check_app(script: str) -> str:
    """The app's module name, or BuildError: missing, not Python, syntax error, not a gopark app."""
    if not os.path.exists(script):
        raise BuildError(f"{script} does not exist")
    if not os.path.isfile(script) or not script.endswith(".py"):
        raise BuildError(f"{script} is not a Python file (.py)")
    with open(script, "rb") as f:
        source = f.read()
    try:
        tree = ast.parse(source, filename=script)
    except SyntaxError as exc:
        raise BuildError(f"{script}:{exc.lineno}: syntax error: {exc.msg}") from None
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    if not {"register_func", "Context"} & (names | attrs):   # an app of builtins alone registers nothing
        raise BuildError(f"{script} does not use gopark (no Context, no @register_func): nothing to build")
    from gopark import registry
    inside = registry.registrations_in_main_block(tree)
    if inside:
        raise BuildError(f"{script}:{inside[0]}: a function is registered inside `if __name__ == \"__main__\":`: "
                         "a worker imports the app without running that block, so it would not know it; "
                         "register it at module level")
    module = registry.script_module_name(script)   # as python app.py registers its functions
    if module != _stem(script) and os.path.exists(os.path.join(os.path.dirname(script), module + ".py")):
        raise BuildError(f"{script}: its file name is no Python module name, and {module}.py, the name the binary "
                         "would give it, is taken beside it: rename the app")
    _check_no_shadows(script)
    _check_imports(tree, script)
    spec = importlib.util.find_spec(module) if module not in sys.modules else sys.modules[module].__spec__
    origin = getattr(spec, "origin", None)
    if spec is not None and origin and os.path.abspath(origin) != os.path.abspath(script):
        raise BuildError(f"{script}: an installed module is already named {module!r}; rename the app")
    return module


def _stem(script: str) -> str:
    return os.path.splitext(os.path.basename(script))[0]


def _check_imports(tree: ast.Module, script: str) -> None:
    """BuildError for a module the app imports at its top level (not in a ``try``) that is found neither
    here nor beside it: the binary would carry nothing of it and fail as it starts, on every machine."""
    import importlib.machinery
    folder = os.path.dirname(os.path.abspath(script))
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.partition(".")[0]
            if (top in sys.modules or importlib.machinery.PathFinder.find_spec(top, [folder]) is not None
                    or importlib.util.find_spec(top) is not None):
                continue
            raise BuildError(f"{script}:{node.lineno}: imports {top!r}, which is not installed here (nor beside "
                             "the app): the binary would fail as it starts; install it, then build")


def _check_no_shadows(script: str) -> None:
    """BuildError if the app's folder holds a module or package named ``gopark`` or ``launcher`` that is not
    gopark's own: the app's folder comes first where the build looks for modules, so the binary would
    carry it instead (and run it as its own entry)."""
    import gopark
    installed = os.path.dirname(os.path.dirname(os.path.realpath(gopark.__file__)))
    folder = os.path.dirname(os.path.abspath(script))
    for name in ("gopark", "launcher"):
        for found in (os.path.join(folder, name + ".py"), os.path.join(folder, name)):
            if os.path.exists(found) and os.path.realpath(found) != os.path.join(installed, name):
                raise BuildError(f"{script}: the app's folder holds {found}, which would replace gopark's own "
                                 f"{name!r} in the binary; rename it, or move the app to another folder")


def _cache_dir(script: str, name: str, onedir: bool) -> str:
    root = os.environ.get("GOPARK_BUILD_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "gopark", "build")
    key = hashlib.sha256(f"{os.path.abspath(script)}\0{name}\0{onedir}".encode()).hexdigest()[:16]
    return os.path.join(root, f"{name}-{key}")


#: days after which the work files of an app not built since are removed (by the next build of any app)
KEEP_UNUSED_DAYS = 30


_MARK = ".gopark-build-cache"     # in each folder _cache_dir makes: only those are ever removed


def _forget_unused_caches(root: str) -> None:
    """Remove the work folders (about 50 MB each) of apps not built for :data:`KEEP_UNUSED_DAYS` days: one
    is kept for each app built (by path, name and kind), and the cache would otherwise only grow. Only
    folders gopark made (named as :func:`_cache_dir` names them, holding its mark): $GOPARK_BUILD_CACHE may
    be a folder that holds other things."""
    oldest = time.time() - KEEP_UNUSED_DAYS * 86400
    with os.scandir(root) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):       # another build removing it, or using it, meanwhile
                if (entry.is_dir(follow_symlinks=False) and re.fullmatch(r".+-[0-9a-f]{16}", entry.name)
                        and os.path.isfile(os.path.join(entry.path, _MARK)) and entry.stat().st_mtime < oldest):
                    shutil.rmtree(entry.path)


def _write_if_changed(path: str, text: str | bytes) -> str:
    """Write ``text`` unless the file holds it already (an unchanged mtime keeps PyInstaller's cache valid)."""
    data = text.encode() if isinstance(text, str) else text
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return path
    except OSError:
        pass
    with open(path, "wb") as f:
        f.write(data)
    return path


#: in an app's cache folder: {source file: sha256} of the modules its last build bundled
_SOURCES = "sources.json"


def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def _forget_stale_work(cache: str) -> None:
    """Remove PyInstaller's work files of the last build unless every source it bundled still has the
    content it had then. PyInstaller reuses them by mtime: a file copied with its old mtime (``cp -p``,
    ``tar x``), or changed within the second the last build ended, would ship its old code."""
    work, manifest = os.path.join(cache, "work"), os.path.join(cache, _SOURCES)
    try:
        with open(manifest, encoding="utf-8") as f:
            recorded = json.load(f)
        fresh = all(_digest(path) == digest for path, digest in recorded.items())
    except (OSError, ValueError, AttributeError):     # none (a first or failed build), or unreadable
        fresh = False
    if not fresh:
        shutil.rmtree(work, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(manifest)         # written again once this build has succeeded


def _note_sources(cache: str, listed: str) -> None:
    """After a build: the digests of the sources it bundled (``listed`` by build.spec)."""
    with open(listed, encoding="utf-8") as f:
        sources = json.load(f)
    tmp = os.path.join(cache, _SOURCES + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({path: _digest(path) for path in sources}, f)
    os.replace(tmp, os.path.join(cache, _SOURCES))


def _folder_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def _ticker(say: Callable[[str], None], done: threading.Event, started: float) -> None:
    while not done.wait(5.0):
        say(f"still building ({time.monotonic() - started:.0f}s)")


_ONEDIR_MARK = ".gopark-onedir"   # in a --onedir output folder: it may be replaced by the next build


def _check_output(output: str, script: str) -> None:
    """BuildError unless ``output`` may be (over)written: never the app itself, never a folder
    other than an earlier ``--onedir`` build (``gopark build wc/wc.py`` next to a folder ``wc/``)."""
    if os.path.realpath(script) == os.path.realpath(output):     # through symlinks too
        raise BuildError(f"the output {output} is the app itself: give another -o")
    if os.path.isdir(output) and not os.path.islink(output) \
            and not os.path.isfile(os.path.join(output, _ONEDIR_MARK)):
        raise BuildError(f"the output {output} is a folder that is not an earlier --onedir build: "
                         "give -o a path for the executable (e.g. -o build/NAME)")
    folder = os.path.dirname(output)        # (absolute) made if missing: its first existing ancestor decides
    while not os.path.lexists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise BuildError(f"the output {output} cannot be written: {folder} is not a folder")
    try:                 # (a try, not os.access: root may write anywhere but in /proc, a read-only mount...)
        fd, probe = tempfile.mkstemp(prefix=".gopark-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise BuildError(f"the output {output} cannot be written: {folder} is a folder this user may not "
                         f"write to ({exc.strerror or exc})") from None


def _install(built: str, output: str, name: str, onedir: bool) -> None:
    """The build's result at ``output`` (checked), through a temporary copy beside it, so that ``output`` is
    either the old build or the new one whole."""
    tmp = f"{output}.gopark-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    try:
        if onedir:
            shutil.copytree(built, tmp, symlinks=True)
            with open(os.path.join(tmp, _ONEDIR_MARK), "w") as f:
                f.write(f"{name}\n")
        else:
            shutil.copy2(built, tmp)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    if os.path.isdir(output) and not os.path.islink(output):
        shutil.rmtree(output)              # an earlier --onedir build (checked)
    elif onedir and os.path.lexists(output):
        os.unlink(output)                  # a file or a link, where the folder goes
    os.replace(tmp, output)


def build(script: str, output: str | None = None, name: str | None = None, onedir: bool = False,
          say: Callable[[str], None] = print) -> BuildResult:
    """Freeze ``script`` into ``output`` (default ``./NAME``); BuildError for a bad app or a failed build."""
    started = time.monotonic()
    # the file itself, through links: its folder holds its sibling modules, its name is the module the binary
    # bundles (`python link.py` runs the file of the link's name as __main__; the binary its own, alike)
    script = os.path.realpath(script)
    module = check_app(script)
    name = name or _stem(script)
    output = os.path.abspath(output or name)
    _check_output(output, script)
    cache = _cache_dir(script, name, onedir)
    os.makedirs(cache, exist_ok=True)
    open(os.path.join(cache, _MARK), "ab").close()
    os.utime(cache)                 # used now: see _forget_unused_caches
    _forget_unused_caches(os.path.dirname(cache))
    if module != _stem(script):    # the app under its module name, beside the entry (where the build looks first)
        with open(script, "rb") as f:
            _write_if_changed(os.path.join(cache, f"{module}.py"), f.read())
    entry = _write_if_changed(os.path.join(cache, f"gopark_entry_{module}.py"),
                              f"import sys\nfrom launcher.main import main\nsys.exit(main({module!r}))\n")
    build_id = _write_if_changed(os.path.join(cache, binary.BUILD_ID_FILE),
                                 hashlib.sha256(f"{os.path.abspath(script)}\0{name}".encode()).hexdigest())
    import PyInstaller.__main__

    say(f"building {name} from {script} ({'onedir' if onedir else 'onefile'}) with PyInstaller")
    done = threading.Event()
    threading.Thread(target=_ticker, args=(say, done, started), daemon=True).start()
    _forget_stale_work(cache)
    listed = os.path.join(cache, "sources-listed.json")
    args = [_spec_path(), "--noconfirm", "--log-level", "WARN",
            "--workpath", os.path.join(cache, "work"), "--distpath", os.path.join(cache, "dist"),
            "--", "--entry", entry, "--app", module,
            "--app-dir", os.path.dirname(script),
            "--name", name, "--build-id", build_id, "--sources-out", listed] + (["--onedir"] if onedir else [])
    try:
        PyInstaller.__main__.run(args)
    except SystemExit as exc:
        if exc.code == "Aborted by user request.":    # PyInstaller's word for a Ctrl-C
            raise KeyboardInterrupt from None
        if exc.code not in (0, None):
            raise BuildError(f"PyInstaller failed (exit {exc.code}); see its messages above") from None
    finally:
        done.set()
    _note_sources(cache, listed)
    _check_output(output, script)          # again: the build took a while
    try:
        _install(os.path.join(cache, "dist", name), output, name, onedir)
    except OSError as exc:                 # a full disk, a folder made read-only meanwhile...
        raise BuildError(f"the output {output} cannot be written: {exc.strerror or exc}") from None
    exe = os.path.join(output, name) if onedir else output
    size = _folder_size(output) if onedir else os.path.getsize(output)
    return BuildResult(exe, size, binary.digest(output), time.monotonic() - started)
