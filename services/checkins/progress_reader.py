"""The read model of the worker's projection: GetProgress, GetProgressHistory and ListStaleItems messages.

checkins-api answers from the ``progress`` and ``item_clocks`` documents the
worker keeps, never from the check-ins history. The stores do the queries
(one per tree level); this module only turns documents into messages.
"""

from collections.abc import Callable
from datetime import datetime

from services.platform.core.clock import to_date_proto, to_timestamp, utc_now
from v2mom.v1 import checkins_pb2

from .clock_store import Clocks
from .convert import value_progress_to_proto
from .progress_doc import ProgressDoc, past_due
from .progress_store import ProgressStore
from .staleness import OVERDUE, STALE_STATES, stale_item

MAX_TREE_DEPTH = 10

Level = list[tuple[ProgressDoc, checkins_pb2.Progress]]


class ProgressReader:
    """Answers from the projection; never from the check-ins history."""

    def __init__(self, db, now: Callable[[], datetime] = utc_now):
        self.docs = ProgressStore(db, now)
        self.clocks = Clocks(db)
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
        docs = self.docs.load_known([v2mom_id])
        if not docs:
            return None
        return checkins_pb2.GetProgressHistoryResponse(snapshots=[_snapshot(point) for point in docs[0].snapshots])

    def stale_items(self, owner_id: str, org_unit_ids: list[str], after: str,
                    limit: int) -> tuple[list[checkins_pb2.StaleItem], str]:
        """Running STALE and OVERDUE items of one owner, or in some org units, after the item ``after``.

        Returns the page and the position after its last item ("" on the last page).
        """
        rows = self.clocks.running_stale(owner_id, org_unit_ids, after, limit + 1)
        next_after = rows[limit - 1]["_id"] if len(rows) > limit else ""
        return [stale_item(clock) for clock in rows[:limit]], next_after

    # --- building messages, one query per tree level

    def _messages(self, v2mom_ids: list[str]) -> Level:
        docs = self.docs.load_known(v2mom_ids)
        clocks = self.clocks.of_v2moms([doc.v2mom_id for doc in docs])
        return [(doc, self._message(doc, clocks)) for doc in docs]

    def _add_children(self, level: Level, depth: int) -> None:
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
            values=[value_progress_to_proto(entry) for entry in doc.value_progress()],
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
            overdue=(running and clock["staleness"] == OVERDUE) or past_due(item, percent, self.now().date()),
        )
        if latest is not None:
            message.status = checkins_pb2.CheckinStatus.Value(latest["status"])
            message.last_checkin_time.CopyFrom(to_timestamp(latest["observe_time"]))
            if latest.get("value") is not None:
                message.value = latest["value"]
            if latest.get("confidence") is not None:
                message.confidence = latest["confidence"]
        return message


def _snapshot(point: dict) -> checkins_pb2.ProgressSnapshot:
    return checkins_pb2.ProgressSnapshot(
        week_start=to_date_proto(point["week_start"]),
        progress_percent=point["progress_percent"], tree_progress_percent=point["tree_progress_percent"],
    )
