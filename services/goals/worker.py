"""goals-worker: the nameko side of the goals service (eventlet).

It relays the outboxes (V2MOMs, the directory, cycles, comments) to the ``goals.events`` exchange, and marks
milestones done that method check-ins report (checkins' ``checkin_recorded`` / ``checkin_corrected``,
milestone_completions.py); from those and ``progress_changed`` it keeps goals' own copy of each V2MOM's progress
and each item's latest check-in, which ExportV2MOMs reads (checkin_projection.py). It marks the children a
``v2mom_parent_changed`` (its own event) names. It applies HRIS events from ``hris.events`` to the directory
(hris.py), and directory changes dated in the future when their date comes.
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
from services.platform.worker.deps import LeasesProvider, OutboxRelayProvider  # noqa: E402
from services.platform.worker.runner import run_services  # noqa: E402

from . import checkin_projection  # noqa: E402
from .checkin_projection import CheckinProjection  # noqa: E402
from .comments import COMMENTS  # noqa: E402
from . import directory  # noqa: E402
from .directory import CYCLES, ORG_UNITS, PEOPLE, Directory  # noqa: E402
from .approver_changes import ApproverChanges  # noqa: E402
from .directory_sync import DirectorySync  # noqa: E402
from . import hris_rejected  # noqa: E402
from .hris import HIRED, SOURCE as HRIS, TERMINATED, UNIT_RETIRED, UNIT_UPSERTED, UPDATED, HrisEvents  # noqa: E402
from . import repository  # noqa: E402
from .milestone_completions import MilestoneCompletions  # noqa: E402
from .repository import V2MOMS, V2MOMRepository  # noqa: E402
from v2mom.v1 import events_pb2  # noqa: E402

RELAY_INTERVAL = load_settings("goals").relay_interval_seconds
DUE_CHANGES_INTERVAL = 15.0  # seconds; a change dated in the future applies this long after its time at most


class RepositoryProvider(DependencyProvider):
    """One V2MOMRepository per container, on the goals database, for the event handlers."""

    def setup(self):
        settings = config_module.load("goals")
        self.client = connect(settings.mongo_uri, "goals-worker")
        database = self.client[settings.database_name]
        ensure_indexes(database, repository.INDEXES + checkin_projection.INDEXES)
        self.repository = V2MOMRepository(database)
        self.checkins = CheckinProjection(database)

    def stop(self):
        self.client.close()

    def get_dependency(self, worker_ctx):
        return self.repository


class CheckinProjectionProvider(RepositoryProvider):
    """goals' copy of checkins' progress and latest check-ins, for ExportV2MOMs (checkin_projection.py)."""

    def get_dependency(self, worker_ctx):
        return self.checkins


class DirectoryProvider(DependencyProvider):
    """Directory sync for the HRIS handlers and the timer of future-dated changes, and what follows a directory
    change (``events``, ``approvers``; an uncached directory: a change must be seen at once)."""

    def setup(self):
        settings = config_module.load("goals")
        self.client = connect(settings.mongo_uri, "goals-worker")
        database = self.client[settings.database_name]
        ensure_indexes(database, directory.INDEXES + hris_rejected.INDEXES)
        people = Directory(database, cache_seconds=0)
        self.events = HrisEvents(DirectorySync(people))
        self.approvers = ApproverChanges(V2MOMRepository(database), people)

    def stop(self):
        self.client.close()

    def get_dependency(self, worker_ctx):
        return self


class GoalsWorker:
    name = "goals_worker"

    relay = OutboxRelayProvider("goals", [V2MOMS, PEOPLE, ORG_UNITS, CYCLES, COMMENTS])
    repository = RepositoryProvider()
    checkins = CheckinProjectionProvider()
    org = DirectoryProvider()
    leases = LeasesProvider("goals")

    # A correction may report milestones too; either way only not-done ones change, so order does not matter.
    # Each check-in is also the item's latest until a later one (or its correction) comes, in any order.

    @cloud_event_handler("checkins", "checkin_recorded")
    def on_checkin_recorded(self, envelope):
        self._take_checkin(envelope)

    @cloud_event_handler("checkins", "checkin_corrected")
    def on_checkin_corrected(self, envelope):
        self._take_checkin(envelope)

    @cloud_event_handler("checkins", "progress_changed")
    def on_progress_changed(self, envelope):
        # Each carries the V2MOM's revision: an older or replayed one writes nothing.
        data = parse_data(envelope, events_pb2.ProgressEventData)
        require(bool(data.v2mom_id) and data.revision > 0, "needs v2momId and a positive revision", envelope)
        with_retries(lambda _: self.checkins.take_progress(data), envelope)

    @cloud_event_handler("goals", "v2mom_parent_changed")
    def on_v2mom_parent_changed(self, envelope):
        # Its own event, consumed like anyone's: the approval wrote it with the parent, and each child's mark
        # (ListV2MOMs parent_changed) follows from it, once, in any order.
        data = parse_data(envelope, events_pb2.ParentChangedEventData)
        require(data.HasField("change_time"), "needs changeTime", envelope)
        changed_at = from_timestamp(data.change_time)
        with_retries(lambda _: self.repository.mark_parent_changed(list(data.child_ids), changed_at),
                     envelope)

    def _take_checkin(self, envelope):
        checkin = parse_data(envelope, events_pb2.CheckinEventData).checkin
        require(bool(checkin.id and checkin.v2mom_id and checkin.item_id) and checkin.HasField("observe_time")
                and checkin.HasField("record_time"), "needs a check-in with ids and times", envelope)
        with_retries(lambda _: self.checkins.take_checkin(checkin), envelope)
        if with_retries(lambda _: MilestoneCompletions(self.repository).take(checkin), envelope):
            self.relay.kick([V2MOMS])  # the milestones_completed event leaves now, not at the next tick

    @cloud_event_handler(HRIS, HIRED)
    def on_employee_hired(self, envelope):
        self._directory_change(envelope)

    @cloud_event_handler(HRIS, UPDATED)
    def on_employee_updated(self, envelope):
        self._directory_change(envelope)

    @cloud_event_handler(HRIS, TERMINATED)
    def on_employee_terminated(self, envelope):
        self._directory_change(envelope)

    @cloud_event_handler(HRIS, UNIT_UPSERTED)
    def on_org_unit_upserted(self, envelope):
        self._directory_change(envelope)

    @cloud_event_handler(HRIS, UNIT_RETIRED)
    def on_org_unit_retired(self, envelope):
        self._directory_change(envelope)

    def _directory_change(self, envelope):
        require(envelope["type"] in hris_rejected.TYPES, "not an HRIS event type", envelope)
        with_retries(self.org.events.apply, envelope)
        self.relay.kick([PEOPLE, ORG_UNITS])  # person_upserted / org_unit_upserted leave now

    @cloud_event_handler("goals", "person_upserted")
    def on_person_upserted(self, envelope):
        # Its own event, as v2mom_parent_changed: approvals follow a leaver or a new manager once the directory
        # write is committed, and a redelivery finds nothing left to move.
        change = parse_data(envelope, events_pb2.PersonEventData)
        if with_retries(lambda _: self.org.approvers.follow(change), envelope):
            self.relay.kick([V2MOMS])

    @cloud_event_handler("goals", "org_unit_upserted")
    def on_own_org_unit_upserted(self, envelope):
        # Its own event, as person_upserted: a unit's V2MOMs move to its new leader (transfers.py).
        change = parse_data(envelope, events_pb2.OrgUnitEventData)
        if with_retries(lambda _: self.org.approvers.follow_unit(change), envelope):
            self.relay.kick([V2MOMS])

    @timer(interval=DUE_CHANGES_INTERVAL)
    def apply_due_directory_changes(self):
        if self.leases["due_directory_changes"].held() and self.org.events.sync.apply_due():
            self.relay.kick([PEOPLE, ORG_UNITS])

    @timer(interval=RELAY_INTERVAL)
    def relay_outbox(self):
        # Drain fully each tick so a backlog after an outage clears quickly.
        self.relay.drain()


def main() -> None:
    run_services("goals", GoalsWorker)


if __name__ == "__main__":
    main()
