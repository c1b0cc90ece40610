"""PageRank on a generated graph: links cached and partitioned once, joined with the ranks each round.

    python examples/pagerank.py [-m local|process[:N]] [--pages N] [--iterations I]
"""
import argparse
import random
from functools import partial

from gopark import Context, register_func


@register_func
def out_links(pages, page):
    rng = random.Random(page)
    return (page, sorted({rng.randrange(pages) for _ in range(1 + page % 5)} - {page}) or [(page + 1) % pages])


@register_func
def contributions(item):
    _page, (links, rank) = item
    return [(dest, rank / len(links)) for dest in links]


@register_func
def add(a, b):
    return a + b


@register_func
def damp(rank):
    return 0.15 + 0.85 * rank


@register_func
def one(_links):
    return 1.0


@register_func
def rank_of(item):
    return item[1]


def main():
    with Context() as ctx:
        parser = argparse.ArgumentParser(description="PageRank")
        parser.add_argument("--pages", type=int, default=2000)
        parser.add_argument("--iterations", type=int, default=10)
        args = parser.parse_args()
        links = ctx.parallelize(range(args.pages)).map(partial(out_links, args.pages)).partitionByKey().cache()
        ranks = links.mapValue(one)
        for _ in range(args.iterations):
            ranks = links.join(ranks).flatMap(contributions).reduceByKey(add).mapValue(damp)
        for page, rank in ranks.top(5, key=rank_of):
            print(f"{page}\t{rank:.4f}")


if __name__ == "__main__":
    main()
