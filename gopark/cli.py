"""The ``gopark`` command."""
from __future__ import annotations

import argparse
import sys

import gopark
from gopark import options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gopark", description="gopark: code never travels, plans do.")
    parser.add_argument("--version", action="version", version=f"gopark {gopark.__version__}")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("options", help="show the options every gopark app takes")
    args = parser.parse_args(argv)
    if args.command == "options":
        print(options.help_text())
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
