"""Pi by throwing darts, as GoPark's example: a module-level accumulator counts the hits.

    python examples/pi.py [-m local|process[:N]] [--darts N]
"""
import argparse
import random

import gopark
from gopark import Context, register_func

# found by name on every worker, GoPark style
inside = gopark.accumulator(0, name="pi.inside")


@register_func
def throw(seed):
    rng = random.Random(seed)
    x, y = rng.random(), rng.random()
    if x * x + y * y < 1:
        inside.add(1)


def main():
    with Context() as ctx:
        parser = argparse.ArgumentParser(description="estimate pi")
        parser.add_argument("--darts", type=int, default=200_000)
        args = parser.parse_args()
        ctx.parallelize(range(args.darts), ctx.defaultParallelism * 2).foreach(throw)
        print(f"Pi = {4.0 * inside.value / args.darts:.4f}")


if __name__ == "__main__":
    main()
