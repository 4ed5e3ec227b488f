"""checkins-worker: the nameko side of the check-ins service (eventlet).

- relays the outbox of ``checkins``, ``progress`` and ``item_clocks`` to ``checkins.events``;
- keeps progress and item clocks in step with goals' ``v2mom_approved`` /
  ``v2mom_archived`` and with ``checkin_recorded`` / ``checkin_corrected``;
- carries each V2MOM's tree progress one level up on its own ``progress_changed``;
- moves due item clocks on a timer (``item_became_stale`` / ``item_overdue``).

What each event does lives in handlers.py; this module is wiring.
Run it with ``python -m services.checkins.worker``.
"""

import warnings

# eventlet warns that it is in bugfix-only mode; docs/architecture.md records that choice.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()  # before anything opens a socket

from nameko.extensions import DependencyProvider  # noqa: E402
from nameko.timer import timer  # noqa: E402

from services.platform.core import config as config_module  # noqa: E402
from services.platform.core.clock import utc_now  # noqa: E402
from services.platform.worker.blocking import call_blocking  # noqa: E402
from services.platform.core.config import env_float, env_int, load_or_exit as load_settings  # noqa: E402
from services.platform.worker.consumer import cloud_event_handler, with_retries  # noqa: E402
from services.platform.store.mongo import connect, ensure_indexes  # noqa: E402
from services.platform.worker.deps import LeasesProvider, OutboxRelayProvider  # noqa: E402
from services.platform.bus.outbox import outbox_index  # noqa: E402
from services.platform.worker.runner import run_services  # noqa: E402

from . import clock_store, events, handlers, progress_store  # noqa: E402
from .goals_client import GoalsClient  # noqa: E402
from .handlers import Projection  # noqa: E402
from .repository import CHECKINS  # noqa: E402

SERVICE = events.SERVICE
# What this worker's own writes put events in (the check-ins' outbox is filled by checkins-api).
WRITTEN_HERE = tuple(sorted(handlers.WRITTEN_HERE))
RELAY_INTERVAL = load_settings(SERVICE).relay_interval_seconds
STALENESS_INTERVAL = env_float("STALENESS_INTERVAL_SECONDS", 60.0)
STALENESS_BATCH = env_int("STALENESS_BATCH", 500)


class ProjectionProvider(DependencyProvider):
    """One Projection per container: the check-ins database, with the indexes it needs, and goals-api."""

    def setup(self):
        settings = config_module.load(SERVICE)
        self.client = connect(settings.mongo_uri, f"{SERVICE}-worker")
        database = self.client[settings.database_name]
        # The relay reads the API's check-ins too: it needs their outbox index even if the API never ran.
        ensure_indexes(database, progress_store.INDEXES + clock_store.INDEXES + [outbox_index(CHECKINS)])
        self.goals = GoalsClient(settings.goals_addr, settings.auth)
        # grpcio's C core would block every green thread during a call: goals is asked from a real thread.
        self.projection = Projection(database, self.goals, call_goals=call_blocking)

    def stop(self):
        self.goals.close()
        self.client.close()

    def get_dependency(self, worker_ctx):
        return self.projection


class CheckinsWorker:
    name = "checkins_worker"

    projection = ProjectionProvider()
    leases = LeasesProvider(SERVICE)
    # A check-in's only event is the one it is inserted with (a correction links it, silently).
    relay = OutboxRelayProvider(
        SERVICE, [CHECKINS, progress_store.PROGRESS, clock_store.ITEM_CLOCKS], append_once=frozenset({CHECKINS})
    )

    @timer(interval=RELAY_INTERVAL)
    def relay_outbox(self):
        # Drain fully each tick so a backlog after an outage clears quickly.
        self.relay.drain()

    @timer(interval=STALENESS_INTERVAL)
    def advance_staleness(self):
        if not self.leases["staleness"].held():
            return  # another replica sweeps (each clock's move is guarded anyway; this saves the double reads)
        clock_store.advance_due(self.projection.db, utc_now(), STALENESS_BATCH)
        self.relay.kick(WRITTEN_HERE)

    # Each handler kicks the relay for what it wrote: its events leave now, not at the next tick.

    @cloud_event_handler("goals", "v2mom_approved")
    def on_v2mom_approved(self, envelope):
        with_retries(self.projection.v2mom_approved, envelope)
        self.relay.kick(WRITTEN_HERE)

    @cloud_event_handler("goals", "v2mom_archived")
    def on_v2mom_archived(self, envelope):
        with_retries(self.projection.v2mom_archived, envelope)
        self.relay.kick(WRITTEN_HERE)

    # The published version changed in place, with no new approval: item owners (a leaver's items) or the owner.
    @cloud_event_handler("goals", "v2mom_items_reassigned")
    def on_v2mom_items_reassigned(self, envelope):
        with_retries(self.projection.published_changed_in_place, envelope)
        self.relay.kick(WRITTEN_HERE)

    @cloud_event_handler("goals", "v2mom_transferred")
    def on_v2mom_transferred(self, envelope):
        with_retries(self.projection.published_changed_in_place, envelope)
        self.relay.kick(WRITTEN_HERE)

    @cloud_event_handler("goals", "cycle_changed")
    def on_cycle_changed(self, envelope):
        with_retries(self.projection.cycle_changed, envelope)

    @cloud_event_handler("goals", "cycle_closed")
    def on_cycle_closed(self, envelope):
        with_retries(self.projection.cycle_changed, envelope)  # its cycle, whole, as cycle_changed carries it

    # These three kick only what the handler wrote events into: a check-in's clock write rarely carries one,
    # and a progress_changed writes only to a parent. Each kick that found nothing was a poll of the store.

    @cloud_event_handler(events.SERVICE, events.CHECKIN_RECORDED)
    def on_checkin_recorded(self, envelope):
        self._kick(with_retries(self.projection.checkin_recorded, envelope))

    @cloud_event_handler(events.SERVICE, events.CHECKIN_CORRECTED)
    def on_checkin_corrected(self, envelope):
        self._kick(with_retries(self.projection.checkin_corrected, envelope))

    @cloud_event_handler(events.SERVICE, events.PROGRESS_CHANGED)
    def on_progress_changed(self, envelope):
        self._kick(with_retries(self.projection.progress_changed, envelope))

    def _kick(self, written) -> None:
        if written:  # an empty kick would drain every collection
            self.relay.kick(sorted(written))


def main() -> None:
    run_services(SERVICE, CheckinsWorker)


if __name__ == "__main__":
    main()
