"""Functions whose module's globals bear the names of a generated loop's own: ``n``, ``k``, ``v``, ``a``,
``hash``, ``type``, ``count``, ``islice``... (gopark runs a loop with the module dict of the functions it
inlines as its globals: these must keep meaning what they mean here, and the loop's own, what they mean there).

``STEP`` changes while records flow (``set_step``, called, not inlined), and ``add_step`` reads it each time."""
from gopark import register_func

n = 1000
k = "the module's k"
v = -1
a = 7
END = "not the loop's end"
count = 3
islice = None
STEP = 0


def hash(x):    # noqa: A001  (shadows the builtin on purpose)
    return 0


def type(x):    # noqa: A001
    return "shadowed"


@register_func
def plus_n(x):
    return (x % 5, x + n + a + count)


@register_func
def module_k(x):
    return (x % 3, (k, v, END, islice))


@register_func
def hashed(x):
    return (x % 4, hash(x) + len(type(x)))


@register_func
def set_step(x):
    global STEP
    STEP = x // 10
    return True


@register_func
def add_step(x):
    return (x % 2, x + STEP)


@register_func
def plus_n_of_key(kv):
    return kv[0] + n


@register_func
def delete_missing_at_2(x):
    global MISSING
    if x == 2:
        del MISSING
    return True


@register_func
def gone(x):
    return (x, MISSING)    # noqa: F821  (set, then deleted, by the test)
