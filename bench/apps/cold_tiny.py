"""A tiny job from a cold start: `python cold_tiny.py -m process:2` vs the frozen binary of it."""
from gopark import Context, register_func


@register_func
def square(x):
    return x * x


if __name__ == "__main__":
    with Context() as ctx:
        print(ctx.parallelize(range(1000), 4).map(square).count())
