"""Module-level accumulators, found by name on workers (SPEC section 6, GoPark style)."""
import gopark
from gopark import register_func

HITS = gopark.accumulator(0, name="tests.apps.hits")
TOTAL = gopark.accumulator(0.0, name="tests.apps.total")


@register_func
def hit(x):
    HITS.add(1)
    return x


@register_func
def add_half(x):
    TOTAL.add(0.5)
    return x
