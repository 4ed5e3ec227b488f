"""Turns per key within one process: handlers changing the same document take turns instead of racing.

A worker handles several events at once. When two of them change the same
document, the optimistic guard (a revision or version in the filter) lets one
write and refuses the other, which then pays a read, a refused write and a
back-off again. Taking turns per document inside the process avoids those
losses; the guard still settles races with other replicas.
"""

import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager


class KeyedLocks:
    """One lock per key, kept only while someone holds or waits for it.

    In an eventlet worker ``threading.Lock`` is eventlet's green lock (the
    process is monkey-patched first) and only green threads may take these, as
    the handlers run in them; tpool's OS threads must never (they only call
    other services), or the hub dies (see cache.py). Hold one key at a time:
    nothing here orders two keys, so nesting them could deadlock.
    """

    def __init__(self):
        self._guard = threading.Lock()
        self._locks: dict[Hashable, list] = {}  # key -> [lock, holders and waiters]

    @contextmanager
    def holding(self, key: Hashable) -> Iterator[None]:
        with self._guard:
            entry = self._locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[key]
