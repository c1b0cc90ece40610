"""Registered functions that live in an app module, not in a test module.

Workers find them by importing ``apps.funcs`` by name.
"""
import os

from gopark import register_func


@register_func
def count_call(acc, x):
    """Counts the records that go through it."""
    acc.add(1)
    return x


@register_func
def add_to(acc, x):
    """Adds each record to an accumulator (for foreach)."""
    acc.add(x)


@register_func
def double(x):
    """Deliberately the same short name as ``test_registry.double``: names include the module."""
    return ("apps", 2 * x)


@register_func
def worker_pid(x):
    """The process that ran the task."""
    return os.getpid()


@register_func(name="apps.funcs.renamed")
def renamed(x):
    return x + 1000


def not_registered_here(x):
    """Left to an app to register (main_block_registration_app: wrongly, from its main block's call)."""
    return x
