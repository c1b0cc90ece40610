"""A small app the tests freeze: it reports where its tasks ran, counts words, runs a long job,
or fails in a function that its workers run inline.

    frozen_app [--words FILE] [--where] [--sleep SECONDS] [--fail-inline] [gopark options]
"""
import argparse
import importlib
import os
import sys
import time

from gopark import Context, JobError, binary, register_func


@register_func
def where(_x):
    time.sleep(0.2)   # long enough for both workers to take tasks
    return (os.getpid(), os.path.realpath(sys.executable), __name__, bool(getattr(sys, "frozen", False)),
            getattr(sys, "_MEIPASS", None), binary.sha256(), hash("gopark"))


@register_func
def words(line):
    return line.split()


@register_func
def one(word):
    return (word, 1)


@register_func
def add(a, b):
    return a + b


@register_func
def tenth_of(x):
    return 10 // x          # one returned expression: run inline by the worker's generated loop


@register_func
def nap(x):
    time.sleep(0.05)
    return x


def main():
    parser = argparse.ArgumentParser(description="frozen test app")
    parser.add_argument("--words")
    parser.add_argument("--where", action="store_true")
    parser.add_argument("--sleep", type=float)
    parser.add_argument("--fail-inline", action="store_true")
    parser.add_argument("--pipe-env", action="store_true")
    parser.add_argument("--plugin", help="a folder to put on sys.path, holding gopark_test_plugin.py")
    with Context() as ctx:
        args = parser.parse_args()
        if args.where:
            for _ in range(2):
                print("WHERE", sorted(set(ctx.parallelize(range(8), 8).map(where).collect())))
            print("DRIVER", (os.getpid(), os.path.realpath(sys.executable), __name__,
                             getattr(sys, "_MEIPASS", None), binary.sha256(), hash("gopark")))
        if args.words:
            counts = ctx.textFile(args.words).flatMap(words).map(one).reduceByKey(add).collectAsMap()
            for word in sorted(counts):
                print(word, counts[word])
        if args.fail_inline:
            try:
                ctx.parallelize([1, 0], 2).map(tenth_of).collect()
            except JobError as exc:
                print("FAILED", exc.func_name, exc.remote_type, "ran inline" in exc.remote_traceback)
        if args.pipe_env:      # what a piped command sees of the frozen app's own environment
            shown = ctx.parallelize([1], 1).pipe(["sh", "-c", "env | grep '^_PYI_\\|^GOPARK_' "
                                                 "| grep -vc '^GOPARK_PIPE_MARK=' || true; "     # (a worker's mark)
                                                 "echo \"${LD_LIBRARY_PATH-unset}\""]).collect()
            print("PIPE_ENV", shown)
        if args.plugin:         # a module the build could not see, found where the driver found it
            sys.path.insert(0, args.plugin)
            plugin = importlib.import_module("gopark_test_plugin")
            print("PLUGIN", sorted(ctx.parallelize(range(4), 2).map(plugin.triple).collect()))
        if args.sleep:
            print("READY", flush=True)
            ctx.parallelize(range(int(args.sleep / 0.05) * 2), 2).map(nap).count()


if __name__ == "__main__":
    main()
