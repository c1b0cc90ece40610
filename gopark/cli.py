"""The ``gopark`` command: ``gopark build app.py``, ``gopark options``."""
from __future__ import annotations

import argparse
import os
import signal
import sys

import gopark
from gopark import options


def _build(args: argparse.Namespace) -> int:
    from gopark.build import BuildError, build

    def say(msg: str) -> None:
        print(f"[gopark build] {msg}", file=sys.stderr, flush=True)

    try:
        result = build(args.script, args.output, args.name, args.onedir, say)
    except BuildError as exc:
        print(f"gopark build: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gopark build: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    # a path to run it by: as -o gave it when absolute, else from here ("./app", "../bin/app")
    shown = result.path if os.path.isabs(args.output or "") else os.path.relpath(result.path)
    if os.sep not in shown:
        shown = os.path.join(".", shown)
    print(f"built {shown}  {result.size / 2**20:.1f} MiB  "
          f"sha256 {result.sha256}  ({result.seconds:.1f}s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gopark", description="gopark: code never travels, plans do.")
    parser.add_argument("--version", action="version", version=f"gopark {gopark.__version__}")
    sub = parser.add_subparsers(dest="command")
    b = sub.add_parser("build", help="freeze an app into one executable (PyInstaller)")
    b.add_argument("script", help="the app, e.g. app.py")
    b.add_argument("-o", "--output", help="where to write the executable (default ./NAME)")
    b.add_argument("--name", help="the executable's name (default: the script's)")
    b.add_argument("--onedir", action="store_true", help="a folder with the executable instead of one file")
    sub.add_parser("options", help="show the options every gopark app takes")
    args = parser.parse_args(argv)
    if args.command == "build":
        return _build(args)
    if args.command == "options":
        print(options.help_text())
        return 0
    parser.print_help(sys.stderr)       # no command: usage, as a usage error
    return 2


if __name__ == "__main__":
    sys.exit(main())
