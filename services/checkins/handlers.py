"""What checkins-worker does with each event it consumes.

Plain methods over the check-ins database and goals-api, so the nameko
service stays wiring and tests can drive them in-process. Every handler is
idempotent: a replay, or facts arriving out of order, leave the state a
single in-order delivery would. A payload that cannot be read raises
PermanentError, which dead-letters it.
"""

import logging
import math
from collections.abc import Callable
from datetime import datetime


from services.platform.core.clock import from_date_proto, utc_now
from services.platform.core.errors import Unavailable
from services.platform.worker.consumer import parse_data, require
from v2mom.v1 import checkins_pb2, events_pb2, goals_pb2

from . import structures
from .clock_store import ITEM_CLOCKS, Clocks
from .clock_store import follow_cycle
from .cycles import cadence_name, cycle_window, quarter_ends
from .goals_client import GoalsClient
from .progress_doc import CheckinFacts, child_report
from .progress_store import PROGRESS, ProgressStore
from .published import PublishedV2MOM
from .repository import CheckinRepository, CycleSettingsRepository
from .versioned import WriteConflict

log = logging.getLogger(__name__)

CLOCK_SYNC_ATTEMPTS = 5
# The collections this worker's own writes put events in (the check-ins' outbox is filled by checkins-api).
WRITTEN_HERE = frozenset({PROGRESS, ITEM_CLOCKS})




class Projection:
    """Keeps ``progress`` and ``item_clocks`` in step with goals' approvals and the check-ins."""

    def __init__(self, db, goals: GoalsClient, call_goals: Callable = lambda fn, *args: fn(*args),
                 now: Callable[[], datetime] = utc_now):
        self.db = db
        self.goals = goals
        # checkins-worker passes services.platform.worker.blocking.call_blocking: grpcio must not block the green threads.
        self.call_goals = call_goals
        self.now = now
        self.progress = ProgressStore(db, now)
        self.clocks = Clocks(db)
        self.cycle_settings = CycleSettingsRepository(db)

    # --- goals events ---------------------------------------------------------------------

    def v2mom_approved(self, envelope: dict) -> None:
        data = parse_data(envelope, events_pb2.V2MOMEventData)
        require(bool(data.v2mom_id) and data.revision > 0, "needs v2momId and a positive revision", envelope)
        require(data.state == goals_pb2.V2MOM_STATE_PUBLISHED, "is not about a published V2MOM", envelope)
        structures.store_from_event(self.db, envelope["data"])
        self.progress.apply_structure(PublishedV2MOM.from_event(data))
        self.clocks_follow(data.v2mom_id)

    def published_changed_in_place(self, envelope: dict) -> None:
        """goals' ``v2mom_items_reassigned`` and ``v2mom_transferred``: the published version changed without a
        new approval (a leaver's items passed to the V2MOM's owner, or the V2MOM to a new owner). The event
        carries the published content once there is one; its revision orders it after the approval it changes,
        so it is stored as an approval's would be, and a late one loses to anything newer."""
        data = parse_data(envelope, events_pb2.V2MOMEventData)
        require(bool(data.v2mom_id) and data.revision > 0, "needs v2momId and a positive revision", envelope)
        if not data.HasField("publish_time") or data.state == goals_pb2.V2MOM_STATE_ARCHIVED:
            return  # never published: check-ins know nothing of it yet; archived: nothing runs any more
        data.state = goals_pb2.V2MOM_STATE_PUBLISHED  # the version it carries is the published one
        structures.store_from_event(self.db, {**envelope["data"], "state": "V2MOM_STATE_PUBLISHED"})
        self.progress.apply_structure(PublishedV2MOM.from_event(data))
        self.clocks_follow(data.v2mom_id)

    def v2mom_archived(self, envelope: dict) -> None:
        data = parse_data(envelope, events_pb2.V2MOMEventData)
        require(bool(data.v2mom_id) and data.revision > 0, "needs v2momId and a positive revision", envelope)
        structures.mark_archived(self.db, data.v2mom_id, data.revision)
        self.progress.archive(data.v2mom_id)
        self.clocks_follow(data.v2mom_id)

    def clocks_follow(self, v2mom_id: str) -> None:
        """Brings the item clocks in line with the progress document's structure and archived flag.

        The clocks follow the document, not the event at hand: an approval and
        an archive (or two approvals) handled at the same time each write the
        document first and then sync, and a sync that finds the document
        changed under it syncs again. So the last sync always reflects the
        last word, whichever handler finishes first. Replays sync too, which
        finishes a delivery that died between the two writes.
        """
        for _ in range(CLOCK_SYNC_ATTEMPTS):
            doc = self.progress.load(v2mom_id)
            if doc is None or not doc.structure_known:
                return  # nothing published yet: no clock runs without a structure
            self.clocks.apply_structure(
                doc.as_published(), archived=doc.archived, cadence=self.cycle_settings.cadence_or_default(doc.cycle_id),
                cycle=self._cycle(doc.cycle_id), now=self.now(),
            )
            again = self.progress.load(v2mom_id)
            if (again.structure_revision, again.archived) == (doc.structure_revision, doc.archived):
                return
        raise WriteConflict(f"clocks of {v2mom_id}: the structure kept changing while they were synced")

    # --- check-in events --------------------------------------------------------------------

    # The check-in and progress handlers return the collections they wrote events into (WRITTEN_HERE when it
    # may be any): the worker kicks its relay for those only, so no handler sets off a poll that finds nothing.

    def checkin_recorded(self, envelope: dict) -> frozenset[str]:
        return self._checkin(envelope, self._checkin_data(envelope))

    def checkin_corrected(self, envelope: dict) -> frozenset[str]:
        data = self._checkin_data(envelope)
        correction = data.checkin
        require(bool(correction.supersedes_id), "a correction must name the check-in it supersedes", envelope)
        # The API links the two after inserting the correction; if it died in between, finish its work.
        CheckinRepository(self.db).mark_superseded(correction.supersedes_id, correction.id)
        return self._checkin(envelope, data)

    def _checkin(self, envelope: dict, data: events_pb2.CheckinEventData) -> frozenset[str]:
        facts = CheckinFacts.from_message(data.checkin)
        applied = self.progress.apply_checkin(facts)
        written = {PROGRESS} if applied.announced else set()
        if not applied.doc.structure_known:
            # This worker never saw the approval (it may have started after it): learn the structure now.
            # The check-in is already kept, and counts once the structure is there.
            self._learn_structure(facts.v2mom_id)
            written |= WRITTEN_HERE
        cadence = cadence_name(data.cadence) if data.cadence else self.cycle_settings.cadence_or_default(data.checkin.cycle_id)
        move = self.clocks.record_checkin(facts.v2mom_id, facts.kind, facts.item_id, facts.observe_time, cadence)
        if move is not None and move.event_type:
            written.add(ITEM_CLOCKS)
        return frozenset(written)

    def _checkin_data(self, envelope: dict) -> events_pb2.CheckinEventData:
        data = parse_data(envelope, events_pb2.CheckinEventData)
        checkin = data.checkin
        require(bool(checkin.id and checkin.v2mom_id and checkin.item_id), "needs checkin id, v2momId and itemId", envelope)
        require(checkin.item_kind in (checkins_pb2.ITEM_KIND_MEASURE, checkins_pb2.ITEM_KIND_METHOD), "needs an item kind", envelope)
        require(checkin.HasField("observe_time") and checkin.HasField("record_time"), "needs observe and record times", envelope)
        numbers = [checkin.progress_percent] + ([checkin.value] if checkin.HasField("value") else [])
        require(all(math.isfinite(number) for number in numbers), "carries a number that is not finite", envelope)
        return data

    def _learn_structure(self, v2mom_id: str) -> None:
        """From the stored copy of the structure when there is one, else from goals-api.

        If goals is unreachable this raises, and the delivery is retried: the
        structure is never guessed.
        """
        found = self._published_structure(v2mom_id)
        if found is None:
            log.warning("check-in on a V2MOM goals does not know as published", extra={"v2mom_id": v2mom_id})
            return  # the check-in stays kept; an approval, if one ever comes, makes it count
        published, archived = found
        if archived:
            self.progress.archive(v2mom_id)
        self.progress.apply_structure(published)
        self.clocks_follow(v2mom_id)

    def _published_structure(self, v2mom_id: str) -> tuple[PublishedV2MOM, bool] | None:
        stored = structures.find(self.db, v2mom_id)
        if stored and structures.is_complete(stored):
            return PublishedV2MOM.from_structure_copy(stored), bool(stored.get("archived"))
        v2mom = self.call_goals(self.goals.published_v2mom, v2mom_id)
        if v2mom is None:
            return None
        archived = v2mom.state == goals_pb2.V2MOM_STATE_ARCHIVED
        structures.store(self.db, structures.structure_from_v2mom(v2mom), archived=archived)
        return PublishedV2MOM.from_v2mom(v2mom), archived

    def _cycle(self, cycle_id: str) -> tuple | None:
        """The cycle's (start, end, quarter ends): no clock counts from before the start, each stops at the end,
        and a check-in counts for its own quarter.

        Goals says, or while goals is down, what an earlier answer said; None when goals does not
        know the cycle.
        """
        try:
            dates = self.call_goals(self.goals.cycle_dates, cycle_id)
            quarters = self.call_goals(self.goals.cycle_quarters, cycle_id) if dates else []
        except Unavailable:
            known = self.clocks.known_cycle(cycle_id)
            if known is None:
                raise  # never guessed: the delivery is retried
            return known
        return (*cycle_window(*dates), quarter_ends(quarters)) if dates else None

    # --- goals' cycle events ---------------------------------------------------------------------

    def cycle_changed(self, envelope: dict) -> None:
        """cycle_changed and cycle_closed: running clocks of the cycle take its dates and quarters as the event
        says, and the next cycle lookup asks goals again. Replays and older events write the same or are
        corrected by the newer one, which carries the whole cycle."""
        data = parse_data(envelope, events_pb2.CycleEventData)
        cycle = data.cycle
        require(bool(cycle.id) and cycle.HasField("start_date") and cycle.HasField("end_date"),
                "needs cycle.id and its dates", envelope)
        self.goals.forget_cycles()
        start, end = cycle_window(from_date_proto(cycle.start_date), from_date_proto(cycle.end_date))
        quarters = [(from_date_proto(q.start_date), from_date_proto(q.end_date)) for q in cycle.quarters]
        follow_cycle(self.db, cycle.id, start, end, quarter_ends(quarters), self.now())

    # --- this service's own progress events ------------------------------------------------------

    def progress_changed(self, envelope: dict) -> frozenset[str]:
        """Carries a V2MOM's tree progress one level up, to the V2MOM it aligns to."""
        data = parse_data(envelope, events_pb2.ProgressEventData)
        require(bool(data.v2mom_id) and data.revision > 0, "needs v2momId and a positive revision", envelope)
        require(math.isfinite(data.tree_progress_percent), "carries a tree progress that is not finite", envelope)
        if not data.parent_v2mom_id:
            return frozenset()
        applied = self.progress.apply_child(data.parent_v2mom_id, child_report(data))
        return frozenset({PROGRESS}) if applied.announced else frozenset()

