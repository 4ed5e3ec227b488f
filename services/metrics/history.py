"""Weekly snapshots for GetEngagementHistory, and upkeep of the aggregate documents.

A snapshot is a unit's own ``Counts`` for a cycle at one moment, stored under
its ISO week: ``history/<unit>|<cycle>.weeks.<week>``. The worker's timer
refreshes the current week's entry, so each past week keeps its last refresh
and the current week shows the week so far; a restart or a second worker just
writes the same numbers again. Subtree history sums the stored direct counts of
the units below, as the tree stands when read, the same way a scrape does.
"""

import logging
from datetime import datetime

from pymongo.database import Database

from services.platform.core.clock import utc_now

from . import engagement, model, store
from .engagement import Counts
from .org import OrgTree

log = logging.getLogger(__name__)

MAX_WEEKS = 60
PRUNED_MAPS = ("pending", "checkins", "covered", "v2moms", "tta.buckets", "open_obstacles")


def refresh(db: Database, now: datetime | None = None, written: dict | None = None) -> int:
    """Writes the current week's snapshot of every (unit, cycle); returns how many changed.

    ``written`` (kept by the caller between ticks) skips documents whose numbers did not move.
    """
    now = now or utc_now()
    written = {} if written is None else written
    week = model.week_key(now)
    snapshot = engagement.snapshot(now, store.org_tree(db), store.aggregates(db), quarters=store.cycle_quarters(db))
    existing = store.history_ids(db)
    empty = Counts().to_doc()
    changed = []
    for (unit_id, cycle_id), counts in snapshot.direct.items():
        doc = counts.to_doc()
        key = (store.aggregate_id(unit_id, cycle_id), week)
        if written.get(key) == doc or (doc == empty and key[0] not in existing):
            continue  # unchanged since the last tick, or nothing to remember
        changed.append((unit_id, cycle_id, doc))
        written[key] = doc
    store.write_history_week(db, week, changed)
    return len(changed)


def weeks(db: Database, tree: OrgTree, unit_id: str, cycle_id: str, scope: str) -> list[tuple[str, Counts, Counts]]:
    """(week, counts in scope, the unit's own counts), oldest first."""
    units = tree.subtree(unit_id) if scope == engagement.SUBTREE else [unit_id]
    rows = store.history(db, cycle_id, units)
    totals: dict[str, Counts] = {}
    own: dict[str, Counts] = {}
    for row in rows:
        for week, doc in (row.get("weeks") or {}).items():
            counts = Counts.from_doc(doc)
            totals.setdefault(week, Counts())
            totals[week] += counts
            if row["unit"] == unit_id:
                own[week] = counts
    ordered = sorted(totals, key=model.week_start)[-MAX_WEEKS:]
    return [(week, totals[week], own.get(week, Counts())) for week in ordered]


def prune_zeros(db: Database) -> int:
    """Removes counters that came back to zero (a V2MOM's last check-in day it has moved on from, say).

    Each removal is conditional on the value still being zero, so a concurrent
    increment wins. Returns how many documents were tidied.
    """
    tidied = 0
    for doc in store.aggregates(db):
        zeros = _zero_paths(doc)
        if zeros:
            tidied += store.unset_zeros(db, doc["_id"], zeros)
    return tidied


def _zero_paths(doc: dict) -> list[str]:
    paths = []
    for name in PRUNED_MAPS:
        node = doc
        for part in name.split("."):
            node = (node or {}).get(part) if isinstance(node, dict) else None
        for key, value in (node or {}).items():
            if isinstance(value, dict):
                paths.extend(f"{name}.{key}.{inner}" for inner, n in value.items() if n == 0)
            elif value == 0:
                paths.append(f"{name}.{key}")
    return paths
