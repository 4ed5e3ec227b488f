"""Cycle dates for the exposition, from goals' ListCycles, cached.

Alerts need cycle dates ("three weeks into a cycle"). Goals owns them and
they change perhaps once a year, so metrics-api asks ListCycles at most
every ``ttl`` seconds (the quarters, which coverage needs on every read, come
from goals' cycle events instead: store.CYCLES). When goals cannot be reached the
last known dates stay, and the next attempt waits ``retry`` seconds, so a
scrape never waits on goals for more than one short deadline.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.platform.core.config import AuthSettings
from services.platform.api.client import ServiceClient
from v2mom.v1 import goals_pb2, goals_pb2_grpc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cycle:
    id: str
    start: datetime  # 00:00 UTC of the first day
    end: datetime  # 00:00 UTC of the day after the last


def _midnight(day) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def from_listing(cycles: list) -> list[Cycle]:
    return [Cycle(c.id, _midnight(c.start_date), _midnight(c.end_date) + timedelta(days=1))
            for c in cycles if c.start_date.year and c.end_date.year]


class CycleCalendar:
    def __init__(self, fetch: Callable[[], list[Cycle]], ttl: float = 300.0, retry: float = 60.0):
        self.fetch = fetch
        self.ttl, self.retry = ttl, retry
        self._cycles: list[Cycle] = []
        self._next = 0.0
        self._lock = threading.Lock()

    @classmethod
    def from_goals(cls, goals_addr: str, auth: AuthSettings) -> "CycleCalendar":
        client = ServiceClient(goals_addr, goals_pb2_grpc.GoalServiceStub, auth, "goals", deadline_seconds=2.0,
                               attempts=1)
        return cls(lambda: from_listing(client.call("ListCycles", goals_pb2.ListCyclesRequest()).cycles))

    def cycles(self) -> list[Cycle]:
        with self._lock:
            if time.monotonic() >= self._next:
                self._refresh()
            return list(self._cycles)

    def _refresh(self) -> None:
        try:
            self._cycles = self.fetch()
            self._next = time.monotonic() + self.ttl
        except Exception as error:  # noqa: BLE001 - whatever went wrong, keep what we knew
            log.warning("cycle dates unavailable", extra={"error": f"{type(error).__name__}: {error}"[:300]})
            self._next = time.monotonic() + self.retry
