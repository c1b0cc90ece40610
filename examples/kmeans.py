"""K-means: an iterative job over a cached RDD, with the centers broadcast each round.

    python examples/kmeans.py [-m local|process[:N]] [--points N] [--k K] [--iterations I]
"""
import argparse
import random
from functools import partial

from gopark import Context, register_func


@register_func
def make_points(k, per_cluster, seed, split, _it):
    """Points around k known centers; each partition makes its own, deterministically."""
    rng = random.Random(seed * 7919 + split)
    for _ in range(per_cluster):
        c = rng.randrange(k)
        yield (c * 10.0 + rng.gauss(0, 1), c * -5.0 + rng.gauss(0, 1))


@register_func
def closest(centers, point):
    """(index of the nearest center, (point, 1)); ``centers`` is a broadcast."""
    cs = centers.value
    best = min(range(len(cs)), key=lambda i: (cs[i][0] - point[0]) ** 2 + (cs[i][1] - point[1]) ** 2)
    return (best, (point, 1))


@register_func
def add_points(a, b):
    (pa, na), (pb, nb) = a, b
    return ((pa[0] + pb[0], pa[1] + pb[1]), na + nb)


@register_func
def mean(total):
    (x, y), n = total
    return (x / n, y / n)


def spread_out(sample, k):
    """k starting centers far from each other (farthest-first over a small sample, in the driver)."""
    centers = [sample[0]]
    while len(centers) < k:
        centers.append(max(sample, key=lambda p: min((p[0] - c[0]) ** 2 + (p[1] - c[1]) ** 2 for c in centers)))
    return centers


def main():
    with Context() as ctx:
        parser = argparse.ArgumentParser(description="k-means on generated points")
        parser.add_argument("--points", type=int, default=40_000)
        parser.add_argument("--k", type=int, default=4)
        parser.add_argument("--iterations", type=int, default=10)
        args = parser.parse_args()
        n = ctx.defaultParallelism
        points = (ctx.parallelize(range(n), n)
                     .mapPartitionsWithIndex(partial(make_points, args.k, args.points // n, 42))
                     .cache())
        centers = spread_out(points.sample(0.02, seed=7).collect(), args.k)
        for _ in range(args.iterations):
            b = ctx.broadcast(centers)
            new = points.map(partial(closest, b)).reduceByKey(add_points).mapValue(mean).collectAsMap()
            centers = [new.get(i, centers[i]) for i in range(len(centers))]
        for x, y in sorted(centers):
            print(f"{x:8.3f} {y:8.3f}")


if __name__ == "__main__":
    main()
