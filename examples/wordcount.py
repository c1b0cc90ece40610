"""Word count, as in SPEC section 2.

    python examples/wordcount.py [FILE] [-m local|process[:N]] [--top N]

Prints the number of distinct words and the most frequent ones.
"""
import argparse
import os
import sys
from functools import partial

from gopark import Context, register_func

# the sample's folder: next to this file, or, built with `gopark build`, next to the binary
HERE = os.path.dirname(os.path.abspath(sys.executable if getattr(sys, "frozen", False) else __file__))


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


def main():
    with Context() as ctx:
        parser = argparse.ArgumentParser(description="count the words of a text file")
        parser.add_argument("path", nargs="?", default=os.path.join(HERE, "data", "words.txt"))
        parser.add_argument("--top", type=int, default=5)
        args = parser.parse_args()
        counts = (ctx.textFile(args.path)
                     .flatMap(words)
                     .map(partial(pair, n=1))
                     .reduceByKey(add)
                     .collectAsMap())
        print(len(counts))
        for word, n in sorted(counts.items(), key=count_of, reverse=True)[:args.top]:
            print(f"{n}\t{word}")


if __name__ == "__main__":
    main()
