"""The one place that reads ``sys.argv`` and ``--conf`` files into :class:`Options`.

``Context()`` with no master calls :func:`from_argv`; gopark's own arguments are
taken out of ``sys.argv`` and the rest is left for the app.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import warnings
from typing import Any, NoReturn

from gopark.errors import ConfigError, InputNotFound

MAX_WORKERS_PER_CPU = 16             # process:N beyond this many per CPU is a typo, not a plan
HELP_SHOWN_ENV = "GOPARK_HELP_SHOWN"   # the frozen launcher printed gopark's options already
MASTER_FORMS = ("local, process, process:N, mesos (master in $MESOS_MASTER), mesos://host:port, "
                "host:port or zk://host:port[,host:port...]/path")


@dataclasses.dataclass
class Options:
    """Everything a Context is configured with."""

    master: str = "local"
    parallel: int | None = None   # default number of partitions
    cpus: float = 1.0             # per task
    mem: int = 1024               # MB per task: the memory budget before a shuffle spills
    max_failures: int = 4         # attempts of one task before the job fails
    quiet: bool = False
    verbose: bool = False
    help: bool = False            # --help: the app shows its own help; no job runs
    compress: bool | None = None  # shuffle buckets; None: only where they cross machines (Mesos)

    def __post_init__(self) -> None:
        try:
            parse_master(self.master)
        except ConfigError as exc:
            raise ConfigError(str(exc), "master") from None
        if self.parallel is not None and not _positive_int(self.parallel):
            raise ConfigError(f"parallel must be a positive integer, not {self.parallel!r}", "parallel")
        if not _positive_number(self.mem):
            raise ConfigError(f"mem must be a positive number of MB, not {self.mem!r}", "mem")
        if not _positive_number(self.cpus):
            raise ConfigError(f"cpus must be a positive number, not {self.cpus!r}", "cpus")
        if not _positive_int(self.max_failures):
            raise ConfigError(f"max_failures must be a positive integer, not {self.max_failures!r}", "max_failures")
        for flag in ("quiet", "verbose", "help"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"{flag} must be true or false, not {getattr(self, flag)!r}", flag)
        if self.compress is not None and not isinstance(self.compress, bool):
            raise ConfigError(f"compress must be true or false, not {self.compress!r}", "compress")


def _positive_int(x: Any) -> bool:
    """An int above 0 (not a bool)."""
    return isinstance(x, int) and not isinstance(x, bool) and x > 0


def _positive_number(x: Any) -> bool:
    """A finite number above 0 (not a bool, not inf or nan)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x < float("inf")


@dataclasses.dataclass(frozen=True)
class Master:
    """A parsed master string: ``kind`` is local, process or mesos."""

    kind: str
    workers: int = 1              # process mode
    address: str | None = None    # mesos: host:port or zk://...


_HOSTPORT = re.compile(r"^[A-Za-z0-9_.\-]+:\d{1,5}$|^\[[0-9A-Fa-f:]+\]:\d{1,5}$")


def _host_port(text: str) -> bool:
    """``text`` is host:port, with a port from 1 to 65535."""
    return bool(_HOSTPORT.match(text)) and 0 < int(text.rpartition(":")[2]) < 65536


def parse_master(master: str) -> Master:
    """The master of SPEC section 4, or ConfigError with the forms it may take."""
    if not isinstance(master, str) or not master.strip():
        raise ConfigError(f"bad master {master!r}: expected {MASTER_FORMS}")
    m = master.strip()
    if m == "local":
        return Master("local")
    if m.startswith(("local:", "local[")):   # not a Mesos master on a host called "local"; Spark's local[N]
        raise ConfigError(f"bad master {master!r}: local mode runs tasks in the driver, one at a time; "
                          "for N worker processes use process:N")
    if m == "process" or m.startswith("process:"):
        if m == "process":
            return Master("process", os.cpu_count() or 1)
        n = m.partition(":")[2]
        if not n.isdigit() or int(n) < 1:
            raise ConfigError(f"bad master {master!r}: process:N takes a positive number of workers")
        most = MAX_WORKERS_PER_CPU * (os.cpu_count() or 1)
        if int(n) > most:
            raise ConfigError(f"bad master {master!r}: {n} worker processes on {os.cpu_count()} CPUs; "
                              f"at most {most} ({MAX_WORKERS_PER_CPU} per CPU)")
        return Master("process", int(n))
    if m == "mesos":
        env = os.environ.get("MESOS_MASTER")
        if not env:
            raise ConfigError("master 'mesos' reads the Mesos master from $MESOS_MASTER, which is not set")
        try:
            return parse_master(env if env.startswith(("zk://", "mesos://")) else f"mesos://{env}")
        except ConfigError as e:
            raise ConfigError(f"master 'mesos' reads the Mesos master from $MESOS_MASTER={env!r}: "
                              f"{e}") from None
    if m.startswith("mesos://"):
        address = m[len("mesos://"):].rstrip("/")
        if not _host_port(address):
            raise ConfigError(f"bad master {master!r}: mesos://host:port")
        return Master("mesos", address=address)
    if m.startswith("zk://"):
        hosts, _, path = m[len("zk://"):].partition("/")
        if not path or not all(_host_port(h) for h in hosts.split(",")):
            raise ConfigError(f"bad master {master!r}: zk://host:port[,host:port...]/path")
        return Master("mesos", address=m)
    if _host_port(m):
        _refuse_a_mistyped_mode(master, m)
        return Master("mesos", address=m)
    raise ConfigError(f"bad master {master!r}: expected {MASTER_FORMS}")


_MODES = ("local", "process", "mesos")
_LOW_PORTS = 1024      # a port below: a number of workers, not where a Mesos master listens (root's ports)


def _slips(word: str) -> set[str]:
    """``word`` with one slip of the fingers: a letter left out, two neighbours swapped, a letter doubled.

    (Not a letter replaced by another: that turns local, mesos and process into names a host may well
    have, such as focal, vocal, meson, memos or prowess.)
    """
    cut = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    return ({a + b[1:] for a, b in cut if b}
            | {a + b[1] + b[0] + b[2:] for a, b in cut if len(b) > 1}
            | {a + b[0] + b for a, b in cut if b})


def _refuse_a_mistyped_mode(master: str, hostport: str) -> None:
    """ConfigError for a ``host:port`` master that is a mistyped mode (``procss:2``, ``lcoal:1``,
    ``Process:4``, ``mesos:5``, ``processes:2``, ``proc:2``) rather than a Mesos master, saying which mode
    was meant.

    Only a host of letters alone is looked at (not ``localhost``; no dot, digit or dash: not
    ``mesos-master``, ``node1``, ``10.0.0.1``), and only a mode name (in any case) or that name with one
    slip (see :func:`_slips`) is refused, or below port 1024, a mode's start of 4 letters or more or a
    mode with letters added. ``mesos`` itself is a usual name of the Mesos master's host (a
    Docker Compose service), and names near it may be hosts too: ``mesos:5050`` and ``meso:5050`` are
    Mesos masters; ``mesos:N`` or ``meoss:N`` below port 1024, where no Mesos master listens, are not.
    A Mesos master on a host so named is still given as ``mesos://host:port``.
    """
    host, _, port = hostport.rpartition(":")
    name, low = host.lower(), int(port) < _LOW_PORTS
    if not host.isascii() or not host.isalpha() or name == "localhost":
        return
    meant = next((mode for mode in _MODES if name == mode or name in _slips(mode)
                  or (low and len(name) >= 4 and (name.startswith(mode) or mode.startswith(name)))), None)
    if meant is None or (meant == "mesos" and not low):     # mesos:5050, meso:5050: a host that may be one
        return
    if name == "mesos":
        hint = ("'mesos' takes no :N (it reads the Mesos master from $MESOS_MASTER); "
                f"did you mean 'mesos' or 'process:{port}'?")
    elif meant == "mesos":
        hint = f"did you mean 'mesos' (the Mesos master in $MESOS_MASTER) or 'mesos://HOST:{port}'?"
    elif meant == "local":
        hint = "did you mean 'local' (it takes no :N)" + (f" or 'process:{port}'?" if low else "?")
    else:
        hint = f"did you mean 'process:{port}'?"
    raise ConfigError(f"unknown master {master!r}: {hint} (a Mesos master on a host called {host!r}: "
                      f"'mesos://{hostport}')")


class _Parser(argparse.ArgumentParser):
    """Bad gopark options are a ConfigError (one line), not argparse's usage block and exit."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see --help)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="gopark options", add_help=False, allow_abbrev=False)
    p.add_argument("-m", "--master", help=f"where tasks run: {MASTER_FORMS} (default local)")
    p.add_argument("-p", "--parallel", type=int,
                   help="default number of partitions, of parallelize and textFile's input and of every shuffle "
                        "(default: inputs in the CPU count, the workers' if more, at least 2; a shuffle in "
                        "its parents' most)")
    p.add_argument("--cpus", type=float, help="CPUs per task a Mesos offer must hold (default 1)")
    p.add_argument("--mem", type=float, help="memory per task in MB; shuffles spill beyond it (default 1024)")
    p.add_argument("--max-failures", type=int, dest="max_failures",
                   help="attempts of a task before the job fails (default 4)")
    p.add_argument("--compress", action=argparse.BooleanOptionalAction, default=None,
                   help="compress shuffle buckets (default: only in Mesos mode, where they cross machines)")
    p.add_argument("--conf", help="a TOML file of these options (master = \"process:4\", mem = 512, ...)")
    p.add_argument("-q", "--quiet", action="store_true", default=None, help="no progress lines")
    p.add_argument("-v", "--verbose", action="store_true", default=None, help="log what the scheduler does")
    p.add_argument("--help", action="store_true", help="show gopark's options")
    return p


class MistypedOptionWarning(UserWarning):
    """An argument left to the app that looks like a gopark option spelled wrong (``--mastr``, ``--Master``)."""


def _warn_of_mistyped_options(rest: list[str], parser: argparse.ArgumentParser) -> None:
    """Warn of each argument of ``rest`` (left to the app) that is a gopark option in another case or with
    one slip of the fingers (:func:`_slips`): the app may take it, but more likely the run goes on with
    gopark's default (local mode, say) where the user asked for another."""
    options = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
    for arg in rest:
        if arg == "--":
            break
        name = arg.partition("=")[0]
        if not name.startswith("--") or name in options:
            continue
        # (not the option without its plural s: an app's own --cpu, say)
        meant = next((o for o in options if name.lower() == o or (name[2:] in _slips(o[2:]) and o != name + "s")),
                     None)
        if meant is not None:
            warnings.warn(f"{name} is not a gopark option (did you mean {meant}?); it is left to the app",
                          MistypedOptionWarning, stacklevel=4)


def help_text() -> str:
    """gopark's options, as ``--help`` shows them."""
    return _parser().format_help().replace("usage: gopark options", "gopark options:")


def read_conf(path: str) -> dict[str, Any]:
    """The options of a TOML ``--conf`` file."""
    import tomllib  # here: most runs have no --conf, and its import takes longer than the rest of the options'
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise InputNotFound(f"--conf file {path!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--conf file {path!r} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:    # TOML is UTF-8
        raise ConfigError(f"--conf file {path!r} is not valid TOML: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:               # a folder, no permission...
        raise ConfigError(f"--conf file {path!r} cannot be read: {exc.strerror or exc}") from None
    spelled: dict[str, str] = {}         # option: how the file spells it (max-failures or max_failures)
    for key in data:
        name = key.replace("-", "_")
        if name in spelled:
            raise ConfigError(f"--conf file {path!r} sets {name} twice, as {spelled[name]} and as {key}", name)
        spelled[name] = key
    data = {k.replace("-", "_"): v for k, v in data.items()}
    known = {f.name for f in dataclasses.fields(Options)} - {"help"}     # a command's flag, not a setting
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"--conf file {path!r} has unknown options {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(known))}")
    return data


def make_options(master: str | None = None, parallel: int | None = None, **given: Any) -> Options:
    """Options from explicit arguments (``Context(master, parallel, **options)``)."""
    conf = given.pop("conf", None)
    values: dict[str, Any] = read_conf(conf) if conf is not None else {}   # "" too: a file name that is no file
    known = {f.name for f in dataclasses.fields(Options)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(f"unknown Context option {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    from_conf = set(values)
    values.update({k: v for k, v in given.items() if v is not None})
    values["help"] = bool(values.get("help"))
    if master is not None:
        values["master"] = master
    if parallel is not None:
        values["parallel"] = parallel
    from_conf -= {k for k, v in {**given, "master": master, "parallel": parallel}.items() if v is not None}
    try:
        return Options(**values)
    except ConfigError as exc:
        if exc.option in from_conf:           # a value of the file's: say which file
            raise ConfigError(f"--conf file {conf!r}: {exc}", exc.option) from None
        raise
    except TypeError as exc:
        raise ConfigError(str(exc)) from None


def _argv_of_a_test_runner() -> bool:
    """``sys.argv`` is still pytest's/unittest's own (where ``-m``, ``-p`` mean other things)."""
    from gopark import registry
    main_file = getattr(sys.modules.get("__main__"), "__file__", None) or ""
    return registry.main_is_a_test_runner() and bool(sys.argv) and \
        os.path.abspath(sys.argv[0]) == os.path.abspath(main_file)


#: gopark's options that ``Context()`` took out of ``sys.argv`` (the list object they were taken from, and
#: their values): the command line's, which a later ``Context()`` of the same run (one after another, or
#: after ``stop()``) takes too, as long as ``sys.argv`` is that list (DPark parses them once)
_taken_from_sys_argv: tuple[list[str] | None, dict[str, Any]] = (None, {})


def from_argv(argv: list[str] | None = None, **given: Any) -> Options:
    """Options from ``sys.argv``; gopark's arguments are removed from it, the app's stay.

    ``--help`` prints gopark's options and stays in ``sys.argv`` for the app's
    own parser; the Context then runs no job (it exits at the first action).
    The options taken from ``sys.argv`` hold for every later Context of the run
    made with no master (those of its command line that were taken before, and
    any given since).
    """
    if argv is None and _argv_of_a_test_runner():
        return make_options(**given)
    args = sys.argv if argv is None else argv
    parser = _parser()
    parsed, rest = parser.parse_known_args(args[1:])
    if argv is None:
        global _taken_from_sys_argv
        found = {k: v for k, v in vars(parsed).items() if v is not None and k != "help"}
        taken = {**_taken_from_sys_argv[1], **found} if _taken_from_sys_argv[0] is args else found
        _taken_from_sys_argv = (args, taken)
        for k, v in taken.items():
            setattr(parsed, k, v)
    if parsed.help:
        if not os.environ.get(HELP_SHOWN_ENV):
            print(help_text())
        # where the app had it, among its own arguments
        rest.insert(len(parser.parse_known_args(args[1:args.index("--help", 1)])[1]), "--help")
    if argv is None:
        _warn_of_mistyped_options(rest, parser)
    args[1:] = rest
    values = {k: v for k, v in vars(parsed).items() if v is not None and k != "conf"}
    if isinstance(values.get("mem"), float) and values["mem"].is_integer():
        values["mem"] = int(values["mem"])
    conf = given.pop("conf", None)
    merged = {**given, **values}
    return make_options(conf=parsed.conf if parsed.conf is not None else conf, **merged)
