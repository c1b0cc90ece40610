"""The app tests/test_mesos.py freezes and runs against the Mesos double.

    mesos_app JOB [ARG] [gopark options]

Jobs print one line a result, so a test compares them with the same job in
local mode: ``wordcount FILE``, ``shared`` (broadcast, accumulators, cache),
``big`` (a result larger than a status update carries), ``where`` (which
processes ran tasks), ``fail`` (a task that always raises), ``rounds N``
(N shuffles in a row, slow enough to lose an executor in the middle), ``drops FILE``
(shuffles and cached RDDs let go, then waits for FILE).
"""
import argparse
import os
import sys
import time
from functools import partial

import gopark
from gopark import Context, binary, register_func

seen = gopark.accumulator(0, name="mesos_app.seen")
ARG0 = sys.argv[0]       # as the module-level code of the app sees it: the same in the driver and its workers


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
def weigh(table, acc, word):
    seen.add(1)
    acc.add(1)
    return (word, table.value.get(word, 0))


@register_func
def where(_x):
    time.sleep(0.1)
    return (os.getpid(), os.getppid(), os.path.basename(sys.executable), binary.sha256(),
            bool(os.environ.get("GOPARK_FILES_URL")), tuple(sys.argv[1:]), ARG0)


@register_func
def blob(i):
    return (i, "x" * 1000)


@register_func
def boom(x):
    raise ValueError(f"boom at {x}")


@register_func
def inverse(x):
    return 100 // x


@register_func
def slow_key(x):
    time.sleep(0.02)
    return (x % 7, x)


@register_func
def split_agent(split, lines):
    yield (split, os.environ.get("MESOS_AGENT_ID", "?"), sum(1 for _ in lines))


def main():
    parser = argparse.ArgumentParser(description="mesos test app")
    parser.add_argument("job")
    parser.add_argument("arg", nargs="?")
    with Context() as ctx:
        args = parser.parse_args()
        if args.job == "wordcount":
            counts = ctx.textFile(args.arg, numSplits=4).flatMap(words).map(one).reduceByKey(add, 3)
            for word, n in sorted(counts.collect()):
                print(word, n)
        elif args.job == "shared":
            table = ctx.broadcast({"a": 1, "b": 2, "c": 3})
            acc = ctx.accumulator(0)
            rdd = ctx.parallelize(list("abcdabcdx") * 10, 4).map(partial(weigh, table, acc)).cache()
            print("SUM", rdd.map(lambda_free_second).reduce(add))
            print("GROUPS", sorted((k, len(v)) for k, v in rdd.groupByKey(3).collect()))
            print("ACC", acc.value, seen.value)
        elif args.job == "checkpoint":       # arg: the folder, which the agents see (one machine here)
            ctx.setCheckpointDir(args.arg)
            groups = ctx.parallelize(list("abcdabcdx") * 10, 4).map(one).reduceByKey(add, 3)
            groups.checkpoint()
            print("COUNTS", sorted(groups.collect()), groups.isCheckpointed())
            print("AGAIN", sorted(groups.mapValues(str).collect()), len(os.listdir(groups.getCheckpointFile())))
        elif args.job == "big":
            data = ctx.parallelize(range(2000), 2).map(blob).collect()
            print("BIG", len(data), sum(len(s) for _, s in data), data[0][0], data[-1][0])
        elif args.job == "where":
            print("WHERE", sorted(set(ctx.parallelize(range(8), 8).map(where).collect())))
            print("DRIVER", binary.sha256())
            print("ARG0", ARG0)
        elif args.job == "splits":      # arg: a file; which agent read each split
            for split, agent, lines in sorted(ctx.textFile(args.arg).mapPartitionsWithIndex(split_agent).collect()):
                print("SPLIT", split, agent, lines)
        elif args.job == "fail":
            ctx.parallelize(range(4), 2).map(boom).collect()
        elif args.job == "failinline":
            ctx.parallelize([1, 0], 2).map(inverse).collect()
        elif args.job == "drops":       # arg: a file to wait for once the dropped shuffles should be gone
            base = ctx.parallelize(range(100), 4)
            kept = base.map(one).reduceByKey(add, 2)
            print("KEPT", kept.count(), flush=True)
            cached = base.map(str).cache()
            print("CACHED", cached.count(), cached.id, flush=True)
            for i in range(3):       # each round's RDDs are let go as soon as their jobs end
                print("ROUND", i, base.map(one).reduceByKey(add, 3).count(), base.map(str).cache().count(),
                      flush=True)
            print("NEXT", ctx.parallelize(range(2), 2).count())
            print("READY", flush=True)
            deadline = time.monotonic() + 60
            while not os.path.exists(args.arg) and time.monotonic() < deadline:
                time.sleep(0.05)
            print("KEPT", kept.count(), cached.count())
        elif args.job == "rounds":
            rdd = ctx.parallelize(range(200), 4)
            for i in range(int(args.arg)):
                rdd = rdd.map(slow_key).groupByKey(4).flatMap(second_values)
                print("ROUND", i, rdd.count(), flush=True)
            print("TOTAL", sorted(rdd.collect())[:5], rdd.sum())


@register_func
def lambda_free_second(pair):
    return pair[1]


@register_func
def second_values(pair):
    return pair[1]


if __name__ == "__main__":
    main()
