"""The examples in gopark's docstrings run and print what they say."""
from __future__ import annotations

import doctest
import importlib
import operator

import pytest

from gopark import Context

MODULES = ["gopark.rdd", "gopark.context", "gopark.registry", "gopark.shared", "gopark.stats"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    with Context("local", quiet=True, parallel=2) as ctx:   # what the RDD examples call ``ctx``
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS,
                                 extraglobs={"ctx": ctx, "operator": operator})
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0
