"""Pipeline health: events processed, dead-lettered, their lag and the newest event time per source.

Processed counts and lags are tallied in the worker's memory and written once a
second (``flush``): one extra write per event would halve the worker's
throughput for numbers that are about the pipeline, not the organisation. So a
worker killed outright can lose up to a second of these counts, and a redelivered
event is counted again. Dead letters are rare and written at once, before the
message is rejected (at least once: a crash in between counts one twice).
"""

import re
import threading
from collections import defaultdict
from datetime import datetime

from pymongo.database import Database

from services.platform.core.clock import utc_now

from . import store

LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)
LAG_KEYS = [repr(b).replace(".", "_") for b in LAG_BUCKETS] + ["inf"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def safe_key(text: str) -> str:
    """Routing keys of rejected messages are anyone's text: never let them become a field path."""
    return _UNSAFE.sub("_", text or "unknown")[:64] or "unknown"


def lag_key(seconds: float) -> str:
    for bound, key in zip(LAG_BUCKETS, LAG_KEYS):
        if seconds <= bound:
            return key
    return "inf"


class PipelineStats:
    """Tallies in memory; ``flush`` moves them to the store in one write per source."""

    def __init__(self):
        self._lock = threading.Lock()
        self._tally: dict[str, dict] = {}

    def observe(self, source: str, event_type: str, event_time: datetime, now: datetime | None = None) -> None:
        now = now or utc_now()
        lag = max(0.0, (now - event_time).total_seconds())
        with self._lock:
            tally = self._tally.setdefault(source, {"inc": defaultdict(int), "last": event_time})
            inc = tally["inc"]
            inc[f"processed.{safe_key(event_type)}"] += 1
            inc[f"lag.buckets.{lag_key(lag)}"] += 1
            inc["lag.sum"] += lag
            inc["lag.count"] += 1
            tally["last"] = max(tally["last"], event_time)

    def flush(self, db: Database) -> None:
        with self._lock:
            tally, self._tally = self._tally, {}
        for source, pending in tally.items():
            store.add_to_pipeline(db, safe_key(source), dict(pending["inc"]), pending["last"])


def record_dead_letter(db: Database, source: str, event_type: str, reason: str) -> None:
    store.add_to_pipeline(db, safe_key(source), {f"dead_lettered.{safe_key(event_type)}.{safe_key(reason)}": 1})
