"""Parent changes reach children: what changed when a published V2MOM is approved again, and who hangs below it.

Pure rules on the stored (document) form. The published content is compared part by part, leaving out what
is bookkeeping rather than content (the open time the approval stamps on obstacles). The event names the
V2MOMs aligned beneath and their owners (goals-worker then marks each one, and ListV2MOMs can find them; notify
tells the owners); a V2MOM whose parent changed after its own last edit shows ``parent_change_time`` until its
next edit.
"""

from datetime import datetime

from services.platform.core.clock import to_timestamp

from . import events
from .lifecycle import ARCHIVED
from v2mom.v1 import common_pb2, events_pb2

PARTS = ("title", "vision", "values", "methods", "obstacles", "measures")


def changed_paths(before: dict | None, after: dict) -> list[str]:
    """The parts of the published content that differ from the version replaced; none for a first approval."""
    if before is None:
        return []
    return [f"content.{part}" for part in PARTS if _plain(before, part) != _plain(after, part)]


def _plain(content: dict, part: str):
    value = content.get(part)
    if part == "obstacles":
        return [{k: v for k, v in o.items() if k != "opened_at"} for o in value or []]
    return value


def aligned_beneath(parent_id: str, candidates: list[dict]) -> list[dict]:
    """The V2MOMs whose working copy or published version aligns to the parent, not archived, by id."""
    return sorted((doc for doc in candidates if doc["state"] != ARCHIVED
                   and parent_id in (doc.get("parent_id"), doc.get("published_parent_id"))), key=lambda doc: doc["_id"])


def event(doc: dict, previous_revision: int, actor_id: str, paths: list[str], children: list[dict],
          stamp: datetime) -> dict:
    """v2mom_parent_changed for ``doc`` as the approval leaves it (its published version just set)."""
    data = events_pb2.ParentChangedEventData(
        v2mom_id=doc["_id"], revision=doc["published"]["revision"], previous_revision=previous_revision,
        owner_id=doc["owner_id"], org_unit_id=doc["org_unit_id"], level=common_pb2.OrgLevel.Value(doc["level"]),
        cycle_id=doc["cycle_id"], actor_id=actor_id, changed_paths=paths, child_ids=[child["_id"] for child in children],
        child_owner_ids=list(dict.fromkeys(child["owner_id"] for child in children)),
        title=doc["published"]["content"].get("title", ""), change_time=to_timestamp(stamp),
    )
    return events.parent_changed_event(data)
