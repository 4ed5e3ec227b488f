"""The ``progress`` collection: how far each V2MOM, and its tree, has come.

One document per V2MOM, written only by checkins-worker. Every change is
incremental (the document holds the latest check-in per item, never the
history), idempotent (a replayed or older fact changes nothing) and guarded
by ``revision`` (see versioned.py). A change that moves the V2MOM's progress
carries its ``progress_changed`` event and this week's snapshot in the same
write.

    {
      _id: v2mom id,
      revision: 12,                 # +1 per write: the write guard and ProgressEventData.revision
      structure_revision: 5,        # goals' published revision applied; 0 = structure not known yet
      owner_id, org_unit_id, cycle_id, parent_id ("" at the top), title, publish_time,
      archived: false,
      items: [{kind, item_id, title, owner_id, weight, baseline, target, direction, due_date}],  # the structure
      latest: [{kind, item_id, checkin_id, person_id, observe_time, record_time, value (null for methods),
                progress_percent (as recorded), status, confidence, superseded_ids: [...]}],
      children: [{v2mom_id, revision, tree_progress_percent, state: active | archived | moved}],
      progress_percent, tree_progress_percent, off_track_measures, measures,
      snapshots: [{week_start: "2026-03-02", progress_percent, tree_progress_percent}],
      update_time,
      outbox: [...], outbox_pending
    }

``latest`` is kept apart from ``items`` because facts arrive in any order: a
check-in on a measure added by an approval this worker has not seen yet is
kept, and counts once that approval arrives. What each fact does to the
document is decided in progress_doc.py; this module reads and writes it.

Check-ins and children's reports on one V2MOM take turns within the process,
and the one whose turn it is writes every fact that queued for the document
meanwhile, in one write: each fact still moves the revision by one and
carries its own ``progress_changed`` (the events and revisions are those of
one write per fact, in the order they queued), and each handler returns, and
acks, only once the write holding its fact has committed. The store also
remembers each document as it last wrote it (versioned.Remembered), so a
change decides on that instead of reading it again.
"""

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from services.platform.bus.outbox import outbox_index
from services.platform.core.clock import utc_now
from services.platform.core.locks import KeyedLocks
from services.platform.store.mongo import find_in

from . import events
from .progress_doc import (
    CHECKIN,
    CHILD,
    CORRECTION,
    MOVED,
    STRUCTURE,
    Cause,
    CheckinFacts,
    ChildReport,
    ProgressDoc,
    take_archive,
    take_checkin,
    take_child,
    take_structure,
)
from .published import PublishedV2MOM
from .versioned import Change, Remembered, next_revision, update_versioned

PROGRESS = "progress"
INDEXES = [outbox_index(PROGRESS)]
# Reads never need the pending events.
WITHOUT_OUTBOX = {"outbox": 0}
# How long the turn's holder waits before taking what queued: long enough for the rest of a relay batch's
# deliveries to queue, short beside the event's lag budget.
BATCH_WAIT_SECONDS = 0.005


@dataclass(frozen=True)
class Applied:
    """The document as one change left it (as found, when the change was a replay or too old)."""

    doc: "ProgressDoc"
    changed: bool
    # Whether the write carried a progress_changed (for this fact or another written with it).
    announced: bool = False


@dataclass
class _Step:
    """One fact to apply to a document: what it does, why, and the week it speaks for."""

    take: Callable[[ProgressDoc], bool]
    cause: Cause
    as_of: datetime | None = None
    result: Applied | None = field(default=None, compare=False)


class ProgressStore:
    def __init__(self, db, now: Callable[[], datetime] = utc_now):
        self.collection = db[PROGRESS]
        self.now = now
        # Check-ins and children's reports on one V2MOM take turns within this process. They used to race
        # for its document: a check-in's three measures, relayed in one batch and handled at once, lost
        # the revision guard to each other, and each loss cost a read, a refused write and a back-off
        # (three in four check-ins lost once at 15/s). The guard still settles races with other
        # replicas and with approvals. Neither change calls another while it holds its turn (a check-in
        # or a report never moves the V2MOM to another parent), so one turn is held at a time.
        self._turns = KeyedLocks()
        # Facts waiting for their V2MOM's turn: the holder writes them all (see the module's docstring).
        self._queued: dict[str, list[_Step]] = {}
        self._memory = Remembered()

    def load(self, v2mom_id: str) -> ProgressDoc | None:
        stored = self.collection.find_one({"_id": v2mom_id}, WITHOUT_OUTBOX)
        return ProgressDoc.from_stored(stored, v2mom_id) if stored else None

    def load_known(self, v2mom_ids: list[str]) -> list[ProgressDoc]:
        """The documents of those V2MOMs whose structure is known, in the order asked (one query)."""
        found = {stored["_id"]: stored for stored in find_in(self.collection, "_id", v2mom_ids, projection=WITHOUT_OUTBOX)}
        docs = [ProgressDoc.from_stored(found[v2mom_id], v2mom_id) for v2mom_id in v2mom_ids if v2mom_id in found]
        return [doc for doc in docs if doc.structure_known]

    def apply_structure(self, published: PublishedV2MOM) -> Applied:
        return self._change(published.v2mom_id, lambda doc: take_structure(doc, published), Cause(STRUCTURE))

    def apply_checkin(self, checkin: CheckinFacts) -> Applied:
        cause = Cause(CORRECTION if checkin.supersedes_id else CHECKIN, checkin.person_id, checkin.kind, checkin.item_id)
        # The week a check-in speaks for is the week it observed, so backfilled history draws a trend line.
        return self._in_turn(checkin.v2mom_id, _Step(lambda doc: take_checkin(doc, checkin), cause, checkin.observe_time))

    def archive(self, v2mom_id: str) -> Applied:
        return self._change(v2mom_id, take_archive, Cause(STRUCTURE))

    def apply_child(self, parent_id: str, report: ChildReport) -> Applied:
        return self._in_turn(parent_id, _Step(lambda doc: take_child(doc, report), Cause(CHILD)))

    def _in_turn(self, v2mom_id: str, step: _Step) -> Applied:
        """Waits for the V2MOM's turn; the holder writes every fact queued by then, this one among them.

        A write that fails leaves the others' facts unapplied: each then takes
        its own turn (and retries as its handler does), so one fact's failure
        is never another's.
        """
        self._queued.setdefault(v2mom_id, []).append(step)
        with self._turns.holding(v2mom_id):
            if step.result is None:
                # A moment first: facts delivered with this one (a relay batch: a person's check-ins on the
                # V2MOM's measures, sent one after another) reach the queue and go in this write.
                time.sleep(BATCH_WAIT_SECONDS)
                batch = list(self._queued.pop(v2mom_id, []))  # a copy: a late arrival queues for the next turn
                if not any(queued is step for queued in batch):
                    batch.append(step)  # its batch failed in another's turn: queued no longer
                results = self._change_all(v2mom_id, batch)
                for queued, result in zip(batch, results, strict=True):
                    queued.result = result
        return step.result

    def _change(self, v2mom_id: str, take: Callable[[ProgressDoc], bool], cause: Cause,
                as_of: datetime | None = None) -> Applied:
        """Applies one change, with its event and snapshot when it moves the V2MOM's progress."""
        return self._change_all(v2mom_id, [_Step(take, cause, as_of)])[0]

    def _change_all(self, v2mom_id: str, steps: list[_Step]) -> list[Applied]:
        """Applies changes in order in one write: each as its own write would, with its own revision, event and
        snapshot when it moves the V2MOM's progress."""
        seen: list[Applied] = []

        def decide(stored: dict | None) -> Change | None:
            before = ProgressDoc.from_stored(stored, v2mom_id)
            doc = copy.deepcopy(before)
            now = self.now()
            announced, changed = [], []
            for step in steps:
                prior = copy.deepcopy(doc)
                if not step.take(doc):
                    doc = prior  # as the fact found it, whatever the refusal touched
                    changed.append(False)
                    continue
                changed.append(True)
                doc.revision, doc.update_time = next_revision(stored) + sum(changed) - 1, now
                doc.recompute()
                if doc.announces_change_from(prior):
                    announced.append(events.progress_event(doc.event_data(prior, step.cause)))
                    doc.keep_snapshot(min(step.as_of or now, now))
                self._leave_old_parent(prior, doc)
            seen[:] = [Applied(doc, flag, bool(announced)) for flag in changed]
            if not any(changed):
                return None
            return Change(doc.to_stored(), announced, revisions=sum(changed))

        update_versioned(self.collection, v2mom_id, decide, memory=self._memory)
        return seen

    def _leave_old_parent(self, before: ProgressDoc, after: ProgressDoc) -> None:
        """A re-approval moved this V2MOM: the old parent must stop counting it.

        The new parent hears through this write's progress_changed event. The
        old one is told here, before the write, with the revision this write
        will have: events this V2MOM sent the old parent earlier carry lower
        revisions, so however late they arrive they cannot bring it back. If
        the write then loses a race, the next attempt repeats this with its
        own revision; repeating it is harmless.
        """
        if before.structure_known and before.parent_id and before.parent_id != after.parent_id:
            self.apply_child(before.parent_id, ChildReport(after.v2mom_id, after.revision, after.tree_progress_percent, MOVED))
