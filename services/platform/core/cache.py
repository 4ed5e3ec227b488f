"""A small expiring, size-bounded cache for answers read from a store or another service.

Lock-free on purpose: single dict and OrderedDict operations are atomic under
the GIL, and two threads loading the same key at once both load it, which is
harmless. A ``threading.Lock`` would be worse than useless in an eventlet
worker, where it becomes a green lock, and contending for a green lock from
eventlet's real OS threads (tpool) kills the hub ("greenlet.error: Cannot
switch to a different thread").
"""

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

DEFAULT_MAX_ENTRIES = 10_000


class ExpiringCache:
    """Remembers each key's loaded value for ``ttl_seconds``; the least recently used go first past ``max_entries``."""

    def __init__(self, ttl_seconds: float, max_entries: int = DEFAULT_MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic, remember_missing: bool = True):
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        # False: a None answer ("no such record") is not kept, so a record that another process
        # writes a moment later is seen at once rather than after the TTL.
        self.remember_missing = remember_missing
        self.clock = clock
        self._entries: OrderedDict = OrderedDict()

    def get(self, key: Hashable, load: Callable):
        hit = self._entries.get(key)
        if hit is not None and hit[1] > self.clock():
            self._touch(key)
            return hit[0]
        return self.refresh(key, load)

    def refresh(self, key: Hashable, load: Callable):
        """Loads now, whatever is cached, and keeps the answer."""
        value = load()
        if value is None and not self.remember_missing:
            self._entries.pop(key, None)
            return None
        self._entries[key] = (value, self.clock() + self.ttl)
        self._touch(key)
        self._evict()
        return value

    def last(self, key: Hashable, default=None):
        """The last value loaded for key, however old (default when none was, or it was evicted)."""
        hit = self._entries.get(key)
        return default if hit is None else hit[0]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _touch(self, key: Hashable) -> None:
        try:
            self._entries.move_to_end(key)
        except KeyError:  # another thread evicted or cleared it meanwhile
            pass

    def _evict(self) -> None:
        while len(self._entries) > self.max_entries:
            try:
                self._entries.popitem(last=False)
            except KeyError:
                return
