"""goals-worker: the nameko side of the goals service (eventlet).

It relays the outboxes (V2MOMs, the directory, cycles, comments) to the ``goals.events`` exchange, and marks
milestones done that method check-ins report (checkins' ``checkin_recorded`` / ``checkin_corrected``,
milestone_completions.py), and marks the children a ``v2mom_parent_changed`` (its own event) names. HRIS
directory sync (a later issue) adds its event handlers here.
Run it with ``python -m services.goals.worker``.
"""

import warnings

# eventlet warns that it is in bugfix-only mode; docs/architecture.md records that choice.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()  # before anything opens a socket

from nameko.extensions import DependencyProvider  # noqa: E402
from nameko.timer import timer  # noqa: E402

from services.platform.core import config as config_module  # noqa: E402
from services.platform.core.config import load_or_exit as load_settings  # noqa: E402
from services.platform.store.mongo import connect, ensure_indexes  # noqa: E402
from services.platform.core.clock import from_timestamp  # noqa: E402
from services.platform.worker.consumer import cloud_event_handler, parse_data, require, with_retries  # noqa: E402
from services.platform.worker.deps import OutboxRelayProvider  # noqa: E402
from services.platform.worker.runner import run_services  # noqa: E402

from .comments import COMMENTS  # noqa: E402
from .directory import CYCLES, ORG_UNITS, PEOPLE  # noqa: E402
from . import repository  # noqa: E402
from .milestone_completions import MilestoneCompletions  # noqa: E402
from .repository import V2MOMS, V2MOMRepository  # noqa: E402
from v2mom.v1 import events_pb2  # noqa: E402

RELAY_INTERVAL = load_settings("goals").relay_interval_seconds


class RepositoryProvider(DependencyProvider):
    """One V2MOMRepository per container, on the goals database, for the event handlers."""

    def setup(self):
        settings = config_module.load("goals")
        self.client = connect(settings.mongo_uri, "goals-worker")
        database = self.client[settings.database_name]
        ensure_indexes(database, repository.INDEXES)
        self.repository = V2MOMRepository(database)

    def stop(self):
        self.client.close()

    def get_dependency(self, worker_ctx):
        return self.repository


class GoalsWorker:
    name = "goals_worker"

    relay = OutboxRelayProvider("goals", [V2MOMS, PEOPLE, ORG_UNITS, CYCLES, COMMENTS])
    repository = RepositoryProvider()

    # A correction may report milestones too; either way only not-done ones change, so order does not matter.

    @cloud_event_handler("checkins", "checkin_recorded")
    def on_checkin_recorded(self, envelope):
        self._complete_milestones(envelope)

    @cloud_event_handler("checkins", "checkin_corrected")
    def on_checkin_corrected(self, envelope):
        self._complete_milestones(envelope)

    @cloud_event_handler("goals", "v2mom_parent_changed")
    def on_v2mom_parent_changed(self, envelope):
        # Its own event, consumed like anyone's: the approval wrote it with the parent, and each child's mark
        # (ListV2MOMs parent_changed) follows from it, once, in any order.
        data = parse_data(envelope, events_pb2.ParentChangedEventData)
        require(data.HasField("change_time"), "needs changeTime", envelope)
        changed_at = from_timestamp(data.change_time)
        with_retries(lambda _: self.repository.mark_parent_changed(list(data.child_ids), changed_at),
                     envelope)

    def _complete_milestones(self, envelope):
        checkin = parse_data(envelope, events_pb2.CheckinEventData).checkin
        if with_retries(lambda _: MilestoneCompletions(self.repository).take(checkin), envelope):
            self.relay.kick([V2MOMS])  # the milestones_completed event leaves now, not at the next tick

    @timer(interval=RELAY_INTERVAL)
    def relay_outbox(self):
        # Drain fully each tick so a backlog after an outage clears quickly.
        self.relay.drain()


def main() -> None:
    run_services("goals", GoalsWorker)


if __name__ == "__main__":
    main()
