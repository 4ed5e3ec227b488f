"""Blocking client calls (grpcio) from eventlet workers: in a real OS thread, one at a time.

grpcio's C core blocks the calling OS thread, so a call made on the hub's
thread would stop every green thread; eventlet's tpool runs it in a real
thread instead. But grpcio's Python layer guards each channel with locks from
``threading``, which ``eventlet.monkey_patch()`` has made green, and a green
lock contended from two OS threads kills the hub ("greenlet.error: Cannot
switch to a different thread"): the worker stops consuming. So calls go
through a real lock, and only one tpool thread at a time is ever inside a
channel. Import this only in eventlet workers.
"""

from collections.abc import Callable

from eventlet import tpool
from eventlet.patcher import original

_ONE_AT_A_TIME = original("threading").Lock()  # real: tpool threads wait on it, never the hub


def call_blocking(fn: Callable, *args):
    """``fn(*args)`` in a tpool thread, after any other blocking call has finished; the green thread waits."""

    def one_at_a_time():
        with _ONE_AT_A_TIME:
            return fn(*args)

    return tpool.execute(one_at_a_time)
