"""nameko dependency providers shared by every service's worker."""

import logging
import time

import eventlet
import pymongo
from nameko.extensions import DependencyProvider

from ..core import config as config_module
from ..store.lease import SKEW_SECONDS, Lease, Leases
from ..store.mongo import connect, ensure_indexes
from ..bus import event_log
from ..bus.outbox import OutboxRelay

log = logging.getLogger(__name__)


class MongoDatabase(DependencyProvider):
    """The service's own database, one client per container."""

    def __init__(self, service: str):
        self.service = service
        self.client: pymongo.MongoClient | None = None

    def setup(self):
        settings = config_module.load(self.service)
        self.client = connect(settings.mongo_uri, f"{self.service}-worker")
        self.database = self.client[settings.database_name]

    def stop(self):
        if self.client is not None:
            self.client.close()

    def get_dependency(self, worker_ctx):
        return self.database


class SerialRelay:
    """The container's outbox relay, one pass at a time, run by the timer and kicked by handlers.

    A handler that has just stored an event kicks the relay for the
    collections it wrote, so the event leaves now rather than at the next
    tick: a check-in's progress_changed would otherwise wait up to a whole
    relay interval on top of the check-in's own hop. A request that arrives
    during a pass is folded into it (the pass goes round again) rather than
    starting a second relay over the same documents. Green threads switch
    only at I/O, so the busy flag needs no lock.

    Across replicas, only the holder of the ``outbox_relay`` lease relays:
    one publisher keeps each document's events in order and sends each
    once. Another replica's handlers kick in vain; the holder's next tick
    (RELAY_INTERVAL_SECONDS) takes their events.

    The holder also keeps the event log to its retention: every
    ``prune_seconds`` (and at once again while a prune found more than it
    deletes in one go), between passes, never beside one.
    """

    def __init__(self, relay: OutboxRelay, max_passes: int = 50, lease: Lease | None = None,
                 prune_seconds: float = 60.0, clock=time.monotonic):
        self.relay = relay
        self.max_passes = max_passes
        self.lease = lease
        self.prune_seconds = prune_seconds
        self.clock = clock
        self._next_prune = 0.0
        self._wanted: set[str] = set()
        self._busy = False
        self.stopping = False  # the container is stopping: its store and broker connections are closing

    def drain(self, collections=None) -> int:
        """Relays until nothing is pending in `collections` (default: all); 0 if a pass already runs."""
        self._wanted |= set(collections or self.relay.collections)
        if self._busy or self.stopping:
            return 0
        self._busy = True
        total = 0
        try:
            while self._wanted:
                if self.lease is not None and not self.lease.held():
                    self._wanted = set()
                    break
                wanted, self._wanted = self._wanted, set()
                total += self.relay.relay_until_empty(self.max_passes, only=wanted)
            if self.lease is None or self.lease.held():
                self._prune_if_due()
        finally:
            self._busy = False
        return total

    def _prune_if_due(self) -> None:
        if self.relay.event_log is None or self.clock() < self._next_prune:
            return
        try:
            deleted, more = self.relay.event_log.prune()
        except pymongo.errors.PyMongoError as error:  # the store is away: the next prune tries again
            log.warning("event log not pruned", extra={"reason": str(error)[:200]})
            more, deleted = False, 0
        if deleted:
            log.info("event log pruned", extra={"deleted": deleted, "more": more})
        self._next_prune = self.clock() + (0.0 if more else self.prune_seconds)

    def kick(self, collections) -> None:
        """Drains `collections` in a green thread of its own: the handler does not wait for the broker."""
        eventlet.spawn_n(self._drain_logged, tuple(collections))

    def _drain_logged(self, collections) -> None:
        try:
            self.drain(collections)
        except Exception:  # the timer's next tick retries; a kick must not die silently
            if self.stopping:  # its connections closed under it: what is left goes at the next start
                log.info("outbox relay pass cut short by the stop", extra={"collections": list(collections)})
                return
            log.exception("outbox relay kick failed", extra={"collections": list(collections)})

    @property
    def stats(self):
        return self.relay.stats


RELAY_JOB = "outbox_relay"


def lease_seconds() -> float:
    seconds = config_module.env_float("LEASE_SECONDS", 10.0)
    if seconds <= 4 * SKEW_SECONDS:
        raise config_module.ConfigError(
            f"LEASE_SECONDS must be more than {4 * SKEW_SECONDS:g} (it must outlast clock skew), got {seconds:g}")
    return seconds


def event_log_prune_seconds() -> float:
    seconds = config_module.env_float("EVENT_LOG_PRUNE_SECONDS", 60.0)
    if seconds <= 0:
        raise config_module.ConfigError(f"EVENT_LOG_PRUNE_SECONDS must be more than 0, got {seconds:g}")
    return seconds


class OutboxRelayProvider(DependencyProvider):
    """One SerialRelay per container, relaying while it holds the service's relay lease."""

    def __init__(self, service: str, collections: list[str], append_once: frozenset[str] = frozenset()):
        self.service = service
        self.collections = collections
        self.append_once = append_once
        self.relay: SerialRelay | None = None

    def setup(self):
        settings = config_module.load(self.service)
        self.client = connect(settings.mongo_uri, f"{self.service}-relay")
        database = self.client[settings.database_name]
        ensure_indexes(database, event_log.INDEXES)
        self.leases = Leases(database, lease_seconds())
        self.relay = SerialRelay(OutboxRelay.for_service(
            database,
            self.service,
            self.collections,
            settings.amqp_uri,
            batch_size=settings.relay_batch_size,
            append_once=self.append_once,
            retention_days=settings.event_log_retention_days,
        ), lease=self.leases[RELAY_JOB], prune_seconds=event_log_prune_seconds())

    def stop(self):
        if self.relay is not None:
            self.relay.stopping = True
            self.relay.relay.close()
            self.leases.release_all()
        self.client.close()

    def get_dependency(self, worker_ctx):
        return self.relay



class LeasesProvider(DependencyProvider):
    """The container's leases on its singleton timers: ``if self.leases["staleness"].held(): ...``.

    A timer whose job must run in one replica at a time asks first; the
    others' ticks return at once, and take over within LEASE_SECONDS of the
    holder's death (at once after a clean stop).
    """

    def __init__(self, service: str):
        self.service = service
        self.client: pymongo.MongoClient | None = None

    def setup(self):
        settings = config_module.load(self.service)
        self.client = connect(settings.mongo_uri, f"{self.service}-leases")
        self.leases = Leases(self.client[settings.database_name], lease_seconds())

    def stop(self):
        if self.client is not None:
            self.leases.release_all()
            self.client.close()

    def get_dependency(self, worker_ctx):
        return self.leases
