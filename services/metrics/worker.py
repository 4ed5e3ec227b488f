"""metrics-worker: the nameko side of the metrics service (eventlet).

It consumes the goals and check-ins events that move engagement, applies each
to the metrics database (consume.py, ledger.py), tallies pipeline health, and
refreshes the weekly history snapshots.
Run it with ``python -m services.metrics.worker``.
"""

import warnings

# eventlet warns that it is in bugfix-only mode; docs/architecture.md records that choice.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()  # before anything opens a socket

import logging  # noqa: E402

from nameko.extensions import DependencyProvider  # noqa: E402
from nameko.timer import timer  # noqa: E402
from pymongo.errors import ConnectionFailure  # noqa: E402

from services.platform.core import config  # noqa: E402
from services.platform.worker.consumer import with_retries  # noqa: E402
from services.platform.worker.deps import LeasesProvider  # noqa: E402
from services.platform.store.mongo import connect, ensure_indexes  # noqa: E402
from services.platform.worker.runner import run_services  # noqa: E402

from . import consume, control, history, store  # noqa: E402
from .handlers import SERVICE, metrics_event_handler  # noqa: E402
from .pipeline import PipelineStats  # noqa: E402

log = logging.getLogger(__name__)

STATS_INTERVAL = config.env_float("METRICS_STATS_FLUSH_SECONDS", 1.0)
SNAPSHOT_INTERVAL = config.env_float("METRICS_SNAPSHOT_INTERVAL_SECONDS", 3600.0)


class RebuildInProgress(ConnectionFailure):
    """A ConnectionFailure on purpose: the platform consumer requeues those after a pause
    instead of dead-lettering them, which is what events must do while a rebuild runs."""


class MetricsStore(DependencyProvider):
    """The metrics database with its indexes, the pause switch, and the pipeline tally."""

    def setup(self):
        settings = config.load(SERVICE)
        self.client = connect(settings.mongo_uri, "metrics-worker")
        self.db = self.client[settings.database_name]
        ensure_indexes(self.db, store.INDEXES)
        self.pause = control.PauseSwitch(self.db)
        self.stats = PipelineStats()
        self.snapshots_written: dict = {}

    def stop(self):
        try:
            self.stats.flush(self.db)  # a clean stop loses no tally
        finally:
            self.client.close()

    def get_dependency(self, worker_ctx):
        return self


def _handles(source: str, *event_types: str):
    """One entrypoint (and so one queue with its DLQ) per event type, on the same method."""
    def decorate(method):
        for event_type in event_types:
            method = metrics_event_handler(source, event_type)(method)
        return method
    return decorate


class MetricsWorker:
    name = "metrics_worker"

    store = MetricsStore()
    leases = LeasesProvider(SERVICE)

    @_handles(consume.GOALS, *consume.SUBSCRIPTIONS[consume.GOALS])
    def on_goals_event(self, envelope):
        self._handle(consume.GOALS, envelope)

    @_handles(consume.CHECKINS, *consume.SUBSCRIPTIONS[consume.CHECKINS])
    def on_checkins_event(self, envelope):
        self._handle(consume.CHECKINS, envelope)

    def _handle(self, source: str, envelope: dict) -> None:
        if self.store.pause.paused():
            raise RebuildInProgress("aggregates are being rebuilt; the event waits in its queue")
        event_time = consume.event_time(envelope)
        with_retries(lambda event: consume.apply(self.store.db, source, event), envelope)
        self.store.stats.observe(source, envelope["type"], event_time)

    @timer(interval=STATS_INTERVAL)
    def flush_stats(self):
        self.store.stats.flush(self.store.db)

    @timer(interval=SNAPSHOT_INTERVAL)
    def refresh_history(self):
        if self.store.pause.paused() or not self.leases["history"].held():
            return  # one replica writes the week's snapshots; the others' would be the same writes again
        changed = history.refresh(self.store.db, written=self.store.snapshots_written)
        tidied = history.prune_zeros(self.store.db)
        log.info("history refreshed", extra={"snapshots": changed, "tidied": tidied})


def main() -> None:
    run_services(SERVICE, MetricsWorker)


if __name__ == "__main__":
    main()
