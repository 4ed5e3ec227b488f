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
kept, and counts once that approval arrives.
"""

import base64
import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime

from google.type import date_pb2

from services.platform.core.errors import FieldViolation, InvalidArgument
from services.platform.bus.outbox import outbox_index
from v2mom.v1 import checkins_pb2, events_pb2

from . import events
from .progress import MEASURE, METHOD, ItemProgress, clamp_percent, measure_progress, own_progress, tree_progress, week_start
from .published import PublishedItem, PublishedV2MOM
from .staleness import ITEM_CLOCKS, OVERDUE, STALE, stale_item
from .times import from_timestamp, to_timestamp, utc_now
from .versioned import Change, next_revision, update_versioned

PROGRESS = "progress"
INDEXES = [outbox_index(PROGRESS)]

# What moved a V2MOM's progress (ProgressEventData.cause).
CHECKIN, CORRECTION, STRUCTURE, CHILD = "checkin", "correction", "structure", "child"

# How a child stands in its parent's tree.
ACTIVE, ARCHIVED, MOVED = "active", "archived", "moved"

OFF_TRACK = "CHECKIN_STATUS_OFF_TRACK"
# A little over three years of weekly points; older ones drop off the front.
SNAPSHOTS_KEPT = 160
# Ids of corrected check-ins remembered per item, so a late original cannot come back.
SUPERSEDED_REMEMBERED = 20


@dataclass(frozen=True)
class CheckinFacts:
    """A recorded or corrected check-in, as the projection needs it."""

    checkin_id: str
    v2mom_id: str
    kind: str
    item_id: str
    person_id: str
    observe_time: datetime
    record_time: datetime
    progress_percent: float
    status: str
    value: float | None = None
    confidence: int | None = None
    supersedes_id: str = ""

    @classmethod
    def from_message(cls, checkin: checkins_pb2.Checkin) -> "CheckinFacts":
        return cls(
            checkin_id=checkin.id,
            v2mom_id=checkin.v2mom_id,
            kind=checkins_pb2.ItemKind.Name(checkin.item_kind),
            item_id=checkin.item_id,
            person_id=checkin.author_id,
            observe_time=from_timestamp(checkin.observe_time),
            record_time=from_timestamp(checkin.record_time),
            progress_percent=checkin.progress_percent,
            status=checkins_pb2.CheckinStatus.Name(checkin.status),
            value=checkin.value if checkin.HasField("value") else None,
            confidence=checkin.confidence if checkin.HasField("confidence") else None,
            supersedes_id=checkin.supersedes_id,
        )

    @property
    def order(self) -> tuple:
        """Later observation wins; then later recording; the id settles exact ties."""
        return (self.observe_time, self.record_time, self.checkin_id)


@dataclass(frozen=True)
class ChildReport:
    """What a parent learns about one aligned V2MOM."""

    child_id: str
    revision: int
    tree_progress_percent: float
    state: str = ACTIVE


@dataclass(frozen=True)
class Applied:
    """The document as one change left it (as found, when the change was a replay or too old)."""

    doc: "ProgressDoc"
    changed: bool


@dataclass(frozen=True)
class Cause:
    reason: str
    person_id: str = ""
    item_kind: str = ""
    item_id: str = ""


# --- the document -------------------------------------------------------------------


@dataclass
class ProgressDoc:
    v2mom_id: str
    revision: int = 0
    structure_revision: int = 0
    owner_id: str = ""
    org_unit_id: str = ""
    cycle_id: str = ""
    parent_id: str = ""
    title: str = ""
    publish_time: datetime | None = None
    archived: bool = False
    items: list[dict] = field(default_factory=list)
    latest: list[dict] = field(default_factory=list)
    children: list[dict] = field(default_factory=list)
    progress_percent: float = 0.0
    tree_progress_percent: float = 0.0
    off_track_measures: int = 0
    measures: int = 0
    snapshots: list[dict] = field(default_factory=list)
    update_time: datetime | None = None

    @classmethod
    def from_stored(cls, stored: dict | None, v2mom_id: str) -> "ProgressDoc":
        if stored is None:
            return cls(v2mom_id)
        known = cls.__dataclass_fields__.keys() - {"v2mom_id"}
        return cls(v2mom_id, **{key: copy.deepcopy(value) for key, value in stored.items() if key in known})

    def to_stored(self) -> dict:
        stored = asdict(self)
        del stored["v2mom_id"], stored["revision"]  # the _id, and versioned.py's to keep
        return stored

    @property
    def structure_known(self) -> bool:
        return self.structure_revision > 0

    def as_published(self) -> PublishedV2MOM:
        """The structure this document holds (the newest approval it applied)."""
        return PublishedV2MOM(
            v2mom_id=self.v2mom_id, revision=self.structure_revision, owner_id=self.owner_id,
            org_unit_id=self.org_unit_id, cycle_id=self.cycle_id, parent_id=self.parent_id, title=self.title,
            publish_time=self.publish_time, items=tuple(PublishedItem(**item) for item in self.items),
        )

    # --- lookups

    def latest_of(self, kind: str, item_id: str) -> dict | None:
        return next((entry for entry in self.latest if entry["kind"] == kind and entry["item_id"] == item_id), None)

    def child(self, child_id: str) -> dict | None:
        return next((entry for entry in self.children if entry["v2mom_id"] == child_id), None)

    def counted_children(self) -> list[dict]:
        return [entry for entry in self.children if entry["state"] == ACTIVE]

    def item_percent(self, item: dict) -> float | None:
        """An item's progress from its latest check-in, read on the current scale; None without one."""
        latest = self.latest_of(item["kind"], item["item_id"])
        if latest is None:
            return None
        on_a_scale = item.get("baseline") is not None and item.get("target") is not None
        if item["kind"] == MEASURE and latest.get("value") is not None and on_a_scale:
            # Recomputed, not copied: a re-approval may have moved the target.
            return measure_progress(latest["value"], item["baseline"], item["target"], item.get("direction", ""))
        return clamp_percent(latest["progress_percent"])

    # --- derived values

    def recompute(self) -> None:
        self.progress_percent = own_progress(
            ItemProgress(item["kind"], item["weight"], self.item_percent(item)) for item in self.items
        )
        self.tree_progress_percent = tree_progress(
            self.progress_percent, bool(self.items), [entry["tree_progress_percent"] for entry in self.counted_children()]
        )
        measures = [item for item in self.items if item["kind"] == MEASURE]
        self.measures = len(measures)
        self.off_track_measures = sum(
            1 for item in measures if (self.latest_of(MEASURE, item["item_id"]) or {}).get("status") == OFF_TRACK
        )

    def counts(self) -> tuple[int, int]:
        return (self.off_track_measures, self.measures)

    def progress_moved_from(self, before: "ProgressDoc") -> bool:
        return not (_close(self.progress_percent, before.progress_percent)
                    and _close(self.tree_progress_percent, before.tree_progress_percent))

    def announces_change_from(self, before: "ProgressDoc") -> bool:
        """Whether the parent and other consumers must hear about this write.

        Nothing is announced before the structure is known: without it there
        is no owner, cycle or parent to tell anyone about.
        """
        if not self.structure_known:
            return False
        return (
            not before.structure_known
            or self.progress_moved_from(before)
            or self.counts() != before.counts()
            or self.parent_id != before.parent_id
            or self.archived != before.archived
        )

    def keep_snapshot(self, as_of: datetime) -> None:
        """The trend line's point for the week `as_of` falls in; a late fact never rewrites an earlier week.

        A fact is late when the document already holds one observed in a
        later week: only the newest point takes the new progress. Otherwise
        the progress now is the progress as of the fact's week, so that week
        gets its point, and any later points (drawn without the fact, say
        by the approval, before history observed earlier was recorded) take
        it too.
        """
        week = week_start(as_of).isoformat()
        if self.snapshots and self.snapshots[-1]["week_start"] >= week and self._holds_facts_after(week):
            self.snapshots[-1].update(self._point(self.snapshots[-1]["week_start"]))
            return
        earlier = [point for point in self.snapshots if point["week_start"] < week]
        later = [self._point(point["week_start"]) for point in self.snapshots if point["week_start"] > week]
        self.snapshots = (earlier + [self._point(week)] + later)[-SNAPSHOTS_KEPT:]

    def _holds_facts_after(self, week: str) -> bool:
        return any(week_start(entry["observe_time"]).isoformat() > week for entry in self.latest)

    def _point(self, week: str) -> dict:
        return {"week_start": week, "progress_percent": self.progress_percent,
                "tree_progress_percent": self.tree_progress_percent}

    def event_data(self, before: "ProgressDoc", cause: Cause) -> events_pb2.ProgressEventData:
        return events_pb2.ProgressEventData(
            v2mom_id=self.v2mom_id,
            owner_id=self.owner_id,
            org_unit_id=self.org_unit_id,
            cycle_id=self.cycle_id,
            parent_v2mom_id=self.parent_id,
            progress_percent=self.progress_percent,
            tree_progress_percent=self.tree_progress_percent,
            previous_progress_percent=before.progress_percent,
            previous_tree_progress_percent=before.tree_progress_percent,
            revision=self.revision,
            cause=cause.reason,
            person_id=cause.person_id,
            item_kind=checkins_pb2.ItemKind.Value(cause.item_kind) if cause.item_kind else 0,
            item_id=cause.item_id,
            off_track_measures=self.off_track_measures,
            measures=self.measures,
            archived=self.archived,
        )


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=0.0, abs_tol=1e-9)


# --- the changes: each returns False when there is nothing to do ---------------------


def take_structure(doc: ProgressDoc, published: PublishedV2MOM) -> bool:
    if published.revision <= doc.structure_revision:
        return False  # a replay, or an approval older than the one applied
    doc.structure_revision = published.revision
    doc.owner_id, doc.org_unit_id, doc.cycle_id = published.owner_id, published.org_unit_id, published.cycle_id
    doc.parent_id, doc.title, doc.publish_time = published.parent_id, published.title, published.publish_time
    doc.items = [asdict(item) for item in published.items]
    return True


def take_checkin(doc: ProgressDoc, checkin: CheckinFacts) -> bool:
    current = doc.latest_of(checkin.kind, checkin.item_id)
    if current is not None:
        if checkin.checkin_id == current["checkin_id"] or checkin.checkin_id in current["superseded_ids"]:
            return False  # a replay, or an original whose correction already counts
        corrects_current = checkin.supersedes_id == current["checkin_id"]
        if not corrects_current and checkin.order <= _order(current):
            return False  # a late arrival: something newer already counts
    superseded = (current["superseded_ids"] if current else []) + ([checkin.supersedes_id] if checkin.supersedes_id else [])
    entry = _latest_entry(checkin, superseded[-SUPERSEDED_REMEMBERED:])
    doc.latest = [e for e in doc.latest if e is not current] + [entry]
    return True


def take_archive(doc: ProgressDoc) -> bool:
    if doc.archived:
        return False  # archiving is final in goals, so a flag is enough
    doc.archived = True
    return True


def take_child(doc: ProgressDoc, report: ChildReport) -> bool:
    current = doc.child(report.child_id)
    if current is not None and current["revision"] >= report.revision:
        return False  # older than what this parent already knows about the child
    entry = {"v2mom_id": report.child_id, "revision": report.revision,
             "tree_progress_percent": report.tree_progress_percent, "state": report.state}
    doc.children = sorted([e for e in doc.children if e is not current] + [entry], key=lambda e: e["v2mom_id"])
    return True


def _order(entry: dict) -> tuple:
    return (entry["observe_time"], entry["record_time"], entry["checkin_id"])


def _latest_entry(checkin: CheckinFacts, superseded_ids: list[str]) -> dict:
    return {
        "kind": checkin.kind, "item_id": checkin.item_id, "checkin_id": checkin.checkin_id,
        "person_id": checkin.person_id, "observe_time": checkin.observe_time, "record_time": checkin.record_time,
        "value": checkin.value, "progress_percent": checkin.progress_percent, "status": checkin.status,
        "confidence": checkin.confidence, "superseded_ids": superseded_ids,
    }


# --- the store -------------------------------------------------------------------------


class ProgressStore:
    def __init__(self, db, now: Callable[[], datetime] = utc_now):
        self.collection = db[PROGRESS]
        self.now = now

    def load(self, v2mom_id: str) -> ProgressDoc | None:
        stored = self.collection.find_one({"_id": v2mom_id}, {"outbox": 0})
        return ProgressDoc.from_stored(stored, v2mom_id) if stored else None

    def apply_structure(self, published: PublishedV2MOM) -> Applied:
        return self._change(published.v2mom_id, lambda doc: take_structure(doc, published), Cause(STRUCTURE))

    def apply_checkin(self, checkin: CheckinFacts) -> Applied:
        cause = Cause(CORRECTION if checkin.supersedes_id else CHECKIN, checkin.person_id, checkin.kind, checkin.item_id)
        # The week a check-in speaks for is the week it observed, so backfilled history draws a trend line.
        return self._change(checkin.v2mom_id, lambda doc: take_checkin(doc, checkin), cause, as_of=checkin.observe_time)

    def archive(self, v2mom_id: str) -> Applied:
        return self._change(v2mom_id, take_archive, Cause(STRUCTURE))

    def apply_child(self, parent_id: str, report: ChildReport) -> Applied:
        return self._change(parent_id, lambda doc: take_child(doc, report), Cause(CHILD))

    def _change(self, v2mom_id: str, take: Callable[[ProgressDoc], bool], cause: Cause,
                as_of: datetime | None = None) -> Applied:
        """Applies one change, with its event and snapshot when it moves the V2MOM's progress."""
        seen: list[ProgressDoc] = []

        def decide(stored: dict | None) -> Change | None:
            before = ProgressDoc.from_stored(stored, v2mom_id)
            after = copy.deepcopy(before)
            seen[:] = [before]
            if not take(after):
                return None
            now = self.now()
            after.revision, after.update_time = next_revision(stored), now
            after.recompute()
            announced = []
            if after.announces_change_from(before):
                announced.append(events.progress_event(after.event_data(before, cause)))
                after.keep_snapshot(min(as_of or now, now))
            self._leave_old_parent(before, after)
            seen[:] = [after]
            return Change(after.to_stored(), announced)

        changed = update_versioned(self.collection, v2mom_id, decide) is not None
        return Applied(seen[0], changed)

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


def child_report(data: events_pb2.ProgressEventData) -> ChildReport:
    return ChildReport(data.v2mom_id, data.revision, data.tree_progress_percent, ARCHIVED if data.archived else ACTIVE)


# --- the read side (the API's GetProgress, GetProgressHistory, ListStaleItems) -----------

MAX_TREE_DEPTH = 10
STALE_STATES = [STALE, OVERDUE]
_TOKEN_PREFIX = "stale:"


class ProgressReader:
    """Answers from the projection; never from the check-ins history."""

    def __init__(self, db, now: Callable[[], datetime] = utc_now):
        self.docs = db[PROGRESS]
        self.clocks = db[ITEM_CLOCKS]
        self.now = now

    def progress(self, v2mom_id: str, include_tree: bool) -> checkins_pb2.Progress | None:
        """A V2MOM's progress, None when it was never published here; with include_tree, its tree below."""
        level = self._messages([v2mom_id])
        if not level:
            return None
        if include_tree:
            self._add_children(level, depth=1)
        return level[0][1]

    def history(self, v2mom_id: str) -> checkins_pb2.GetProgressHistoryResponse | None:
        doc = self._docs([v2mom_id])
        if not doc:
            return None
        return checkins_pb2.GetProgressHistoryResponse(snapshots=[_snapshot(point) for point in doc[0].snapshots])

    def stale_items(self, owner_id: str, org_unit_ids: list[str], after: str, limit: int) -> tuple[list[checkins_pb2.StaleItem], str]:
        """Running STALE and OVERDUE items of one owner, or in some org units; paged by an opaque token."""
        query: dict = {"active": True, "staleness": {"$in": STALE_STATES}}
        if owner_id:
            query["owner_id"] = owner_id
        else:
            query["org_unit_id"] = {"$in": list(org_unit_ids)}
        if after:
            query["_id"] = {"$gt": _decode_token(after)}
        rows = list(self.clocks.find(query, {"outbox": 0}).sort("_id", 1).limit(limit + 1))
        token = _encode_token(rows[limit - 1]["_id"]) if len(rows) > limit else ""
        return [stale_item(clock) for clock in rows[:limit]], token

    # --- building messages, one query per tree level

    def _docs(self, v2mom_ids: list[str]) -> list[ProgressDoc]:
        found = {stored["_id"]: stored for stored in self.docs.find({"_id": {"$in": v2mom_ids}}, {"outbox": 0})}
        docs = [ProgressDoc.from_stored(found[v2mom_id], v2mom_id) for v2mom_id in v2mom_ids if v2mom_id in found]
        return [doc for doc in docs if doc.structure_known]

    def _messages(self, v2mom_ids: list[str]) -> list[tuple[ProgressDoc, checkins_pb2.Progress]]:
        docs = self._docs(v2mom_ids)
        clocks: dict[tuple, dict] = {}
        for clock in self.clocks.find({"v2mom_id": {"$in": [doc.v2mom_id for doc in docs]}}, {"outbox": 0}):
            clocks[(clock["v2mom_id"], clock["kind"], clock["item_id"])] = clock
        return [(doc, self._message(doc, clocks)) for doc in docs]

    def _add_children(self, level: list[tuple[ProgressDoc, checkins_pb2.Progress]], depth: int) -> None:
        if depth > MAX_TREE_DEPTH or not level:
            return
        wanted = [entry["v2mom_id"] for doc, _ in level for entry in doc.counted_children()]
        by_id = {doc.v2mom_id: (doc, message) for doc, message in self._messages(wanted)}
        for doc, message in level:
            message.children.extend(by_id[e["v2mom_id"]][1] for e in doc.counted_children() if e["v2mom_id"] in by_id)
        self._add_children(list(by_id.values()), depth + 1)

    def _message(self, doc: ProgressDoc, clocks: dict[tuple, dict]) -> checkins_pb2.Progress:
        message = checkins_pb2.Progress(
            v2mom_id=doc.v2mom_id, owner_id=doc.owner_id, org_unit_id=doc.org_unit_id, cycle_id=doc.cycle_id,
            progress_percent=doc.progress_percent, tree_progress_percent=doc.tree_progress_percent,
            items=[self._item(doc, item, clocks.get((doc.v2mom_id, item["kind"], item["item_id"]))) for item in doc.items],
        )
        if doc.update_time:
            message.update_time.CopyFrom(to_timestamp(doc.update_time))
        return message

    def _item(self, doc: ProgressDoc, item: dict, clock: dict | None) -> checkins_pb2.ItemProgress:
        percent = doc.item_percent(item)
        latest = doc.latest_of(item["kind"], item["item_id"])
        running = bool(clock and clock.get("active"))
        message = checkins_pb2.ItemProgress(
            kind=checkins_pb2.ItemKind.Value(item["kind"]), item_id=item["item_id"], title=item["title"],
            owner_id=item["owner_id"], weight=item["weight"], progress_percent=percent or 0.0,
            stale=running and clock["staleness"] in STALE_STATES,
            overdue=(running and clock["staleness"] == OVERDUE) or self._late(item, percent),
        )
        if latest is not None:
            message.status = checkins_pb2.CheckinStatus.Value(latest["status"])
            message.last_checkin_time.CopyFrom(to_timestamp(latest["observe_time"]))
            if latest.get("value") is not None:
                message.value = latest["value"]
            if latest.get("confidence") is not None:
                message.confidence = latest["confidence"]
        return message

    def _late(self, item: dict, percent: float | None) -> bool:
        """A method past its due date that is not done is overdue, however recently it was checked in."""
        due = item.get("due_date")
        return item["kind"] == METHOD and bool(due) and self.now().date() > date.fromisoformat(due) and (percent or 0.0) < 100.0


def _snapshot(point: dict) -> checkins_pb2.ProgressSnapshot:
    day = date.fromisoformat(point["week_start"])
    return checkins_pb2.ProgressSnapshot(
        week_start=date_pb2.Date(year=day.year, month=day.month, day=day.day),
        progress_percent=point["progress_percent"], tree_progress_percent=point["tree_progress_percent"],
    )


def _encode_token(last_id: str) -> str:
    return base64.urlsafe_b64encode((_TOKEN_PREFIX + last_id).encode()).decode()


def _decode_token(token: str) -> str:
    try:
        decoded = base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        decoded = ""
    if not decoded.startswith(_TOKEN_PREFIX):
        raise InvalidArgument([FieldViolation("page_token", "is not a token this list returned")])
    return decoded[len(_TOKEN_PREFIX):]
