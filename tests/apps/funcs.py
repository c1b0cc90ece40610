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


@register_func
def peak_reset(_x):
    """This process's resident memory now (KiB), its peak reset to it (Linux's clear_refs)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS")


@register_func
def peak_kib(_x):
    """This process's peak resident memory (KiB) since it started, or since :func:`peak_reset`."""
    return _status_kib("VmHWM")


def _status_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
