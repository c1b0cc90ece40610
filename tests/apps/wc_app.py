"""A word-count app, run as a script by the tests: ``python wc_app.py FILE [--tag T] [-m MASTER] [-q]``.

It prints results whose order the pipeline itself defines (partition order,
sorted shuffles), so its output must be the same in every mode.
"""
import sys
from functools import partial

from gopark import Context, register_func


@register_func
def words(line):
    return line.split()


@register_func
def pair(word, n=1):
    return (word, n)


@register_func
def add(a, b):
    return a + b


@register_func
def count_of(item):
    return item[1]


@register_func
def length(word):
    return (len(word), word)


def main():
    with Context() as ctx:
        args = sys.argv[1:]            # gopark's own options are gone by now
        path = args[0]
        lines = ctx.textFile(path, numSplits=3)
        counts = lines.flatMap(words).map(partial(pair, n=1)).reduceByKey(add, numSplits=3)
        print("args", args)
        print("distinct", counts.count())
        print("raw", counts.collect())
        print("sorted", counts.sortByKey(numSplits=2).collect())
        print("top", counts.top(3, key=count_of))
        print("by_length", lines.flatMap(words).map(length).groupByKey(2).mapValue(sorted).sortByKey().collect())
        print("lines", lines.count())


if __name__ == "__main__":
    main()
