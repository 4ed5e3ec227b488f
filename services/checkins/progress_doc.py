"""A V2MOM's progress document and the changes facts make to it: pure, no I/O.

The ``progress`` collection (progress_store.py) holds one such document per
V2MOM. Each fact (a published structure, a check-in, an archive, a child's
report) is applied by a ``take_*`` function that returns False when it
changes nothing (a replay, or something older than what is known), so
applying facts in any order, any number of times, ends in the same document.
The roll-up math itself is in progress.py.
"""

import copy
import math
from dataclasses import asdict, dataclass, field
from datetime import date, datetime

from services.platform.core.clock import from_timestamp
from v2mom.v1 import checkins_pb2, events_pb2

from .progress import (MEASURE, METHOD, ItemProgress, LinkedItem, clamp_percent, items_behind_value, measure_progress,
                       own_progress, tree_progress, week_start)
from .published import PublishedItem, PublishedV2MOM

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
    values: list[dict] = field(default_factory=list)
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
            values=tuple(self.values),
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

    def value_progress(self) -> list[dict]:
        """Each value's progress, weighted as the V2MOM's own is, over the items behind it (progress.py); on read,
        so it always agrees with the items' progress. {"value", "percent", "items"}, in the V2MOM's order."""
        linked = [LinkedItem(item["kind"], item["item_id"], tuple(item.get("links") or ())) for item in self.items]
        by_key = {(item["kind"], item["item_id"]): item for item in self.items}
        result = []
        for value in self.values:
            behind = [by_key[(i.kind, i.item_id)] for i in items_behind_value(value["id"], linked)]
            percent = own_progress(ItemProgress(i["kind"], i["weight"], self.item_percent(i)) for i in behind)
            result.append({"value": value, "percent": percent, "items": behind})
        return result

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
    doc.values = [dict(value) for value in published.values]
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


def child_report(data: events_pb2.ProgressEventData) -> ChildReport:
    return ChildReport(data.v2mom_id, data.revision, data.tree_progress_percent, ARCHIVED if data.archived else ACTIVE)


def past_due(item: dict, percent: float | None, today: date) -> bool:
    """A method past its due date that is not done is overdue, however recently it was checked in."""
    due = item.get("due_date")
    return item["kind"] == METHOD and bool(due) and today > date.fromisoformat(due) and (percent or 0.0) < 100.0
