"""Summary statistics of numeric records: ``RDD.stats()`` and what it returns (Spark's StatCounter).

Each task sums up its partition in one pass (count, mean and the sum of
squared deviations, Welford's update); the driver merges the partitions'
summaries (Chan et al.'s pairwise formula, as Spark's StatCounter), so no record leaves its task.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def of_partition(records: Iterable[Any], start: list | None = None) -> list:
    """``[count, mean, sum of squared deviations, max, min]`` of one partition's numbers (max and min as floats,
    as Spark's doubles and PySpark's with numpy: ``max: 3.0``), Welford's update a number; ``start``: such
    a summary the numbers add to (:meth:`StatCounter.merge`)."""
    n, mean, m2, hi, lo = start if start is not None else (0, 0.0, 0.0, -math.inf, math.inf)
    for x in records:
        n += 1
        delta = x - mean
        mean += delta / n
        m2 += delta * (x - mean)
        if x > hi:
            hi = x
        if x < lo:
            lo = x
    return [n, mean, m2, float(hi), float(lo)]


class StatCounter:
    """Count, mean, variance, max and min of numbers, mergeable (as PySpark's ``StatCounter``).

    >>> s = StatCounter([1, 2, 3, 4])
    >>> s.count(), s.mean(), s.variance(), s.sampleVariance(), s.max(), s.min()
    (4, 2.5, 1.25, 1.6666666666666667, 4.0, 1.0)
    """

    def __init__(self, values: Iterable[Any] | None = None) -> None:
        self.n, self.mu, self.m2, self.maxValue, self.minValue = of_partition(values or ())

    @classmethod
    def _of(cls, summary: list) -> StatCounter:
        counter = cls()
        counter.n, counter.mu, counter.m2, counter.maxValue, counter.minValue = summary
        return counter

    def merge(self, value: Any) -> StatCounter:
        """Add one number (Welford's update, as each task's)."""
        self.n, self.mu, self.m2, self.maxValue, self.minValue = of_partition(
            [value], [self.n, self.mu, self.m2, self.maxValue, self.minValue])
        return self

    def mergeStats(self, other: StatCounter) -> StatCounter:
        """Add another counter's numbers (in place; returns this counter)."""
        if not isinstance(other, StatCounter):
            raise TypeError(f"mergeStats takes a StatCounter, not {type(other).__name__} (merge adds one number)")
        if other.n == 0:
            return self
        if self.n == 0:
            self.n, self.mu, self.m2, self.maxValue, self.minValue = \
                other.n, other.mu, other.m2, other.maxValue, other.minValue
            return self
        n = self.n + other.n
        delta = other.mu - self.mu
        # the mean as Spark's StatCounter has it, to the last bit: from the bigger side's when the other
        # is under a tenth of it, else the weighted sum
        if other.n * 10 < self.n:
            self.mu = self.mu + (delta * other.n) / n
        elif self.n * 10 < other.n:
            self.mu = other.mu - (delta * self.n) / n
        else:
            self.mu = (self.mu * self.n + other.mu * other.n) / n
        self.m2 += other.m2 + delta * delta * self.n * other.n / n
        self.n = n
        self.maxValue = max(self.maxValue, other.maxValue)
        self.minValue = min(self.minValue, other.minValue)
        return self

    def copy(self) -> StatCounter:
        return StatCounter._of([self.n, self.mu, self.m2, self.maxValue, self.minValue])

    def count(self) -> int:
        return self.n

    def mean(self) -> float:
        return self.mu

    def sum(self) -> float:
        return self.n * self.mu

    def max(self) -> Any:
        return self.maxValue

    def min(self) -> Any:
        return self.minValue

    def variance(self) -> float:
        """The population variance (nan with no number)."""
        return self.m2 / self.n if self.n else math.nan

    def sampleVariance(self) -> float:
        """The sample variance, divided by ``count - 1`` (nan with fewer than two numbers)."""
        return self.m2 / (self.n - 1) if self.n > 1 else math.nan

    def stdev(self) -> float:
        return math.sqrt(self.variance())

    def sampleStdev(self) -> float:
        return math.sqrt(self.sampleVariance())

    def asDict(self, sample: bool = False) -> dict:
        """PySpark's, its quirk included: the sample stdev and variance by default, the population
        ones with ``sample=True`` (its tests assert it)."""
        return {"count": self.count(), "mean": self.mean(), "sum": self.sum(), "min": self.min(),
                "max": self.max(), "stdev": self.stdev() if sample else self.sampleStdev(),
                "variance": self.variance() if sample else self.sampleVariance()}

    def __repr__(self) -> str:
        return (f"(count: {self.count()}, mean: {self.mean()}, stdev: {self.stdev()}, "
                f"max: {self.max()}, min: {self.min()})")
