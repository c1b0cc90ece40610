"""The DAG scheduler's state machine driven through its backend seam, without worker processes.

A backend that answers every task twice (as speculative execution would) and
posts an event nobody asked for: results and accumulators must still count
each partition once, and unknown events must be ignored.
"""
from __future__ import annotations

from functools import partial

from gopark import Context, register_func
from gopark.scheduler.local import LocalBackend
from gopark.task import run_task


class TwiceBackend(LocalBackend):
    """Runs each task twice and reports both answers, then an answer for a task that never was."""

    def submit(self, tid: int, payload: bytes, preferred: list[str]) -> None:
        first, second = run_task(payload, self.env), run_task(payload, self.env)
        self._post(("end", tid + 10_000_000, first, "nobody"))    # unknown task: ignored
        self._post(("end", tid, first, "driver"))
        self._post(("end", tid, second, "driver"))                # a duplicate answer


@register_func
def counted(acc, x):
    acc.add(1)
    return (x % 3, x)


@register_func
def add(a, b):
    return a + b


def test_duplicate_and_unknown_answers_count_once() -> None:
    with Context("local", quiet=True) as ctx:
        ctx.backend = ctx.scheduler.backend = TwiceBackend(ctx.scheduler.post, ctx.backend.env)
        calls = ctx.accumulator(0)
        pairs = ctx.parallelize(range(30), 3).map(partial(counted, calls))
        assert pairs.reduceByKey(add).collectAsMap() == {k: sum(x for x in range(30) if x % 3 == k) for k in range(3)}
        assert calls.value == 30                  # each map task ran twice; its updates counted once
        assert pairs.count() == 30
        assert calls.value == 60
