"""A leaver's items in other people's V2MOMs pass to each V2MOM's owner (goals-worker, from its own
``person_upserted``, beside approver_changes.py).

The items a person *holds* (``HELD``): methods they own or are the RACI Accountable of, measures and obstacles
they own. When they leave, each live V2MOM of someone else in which they hold items gets one recorded system
revision (history action ``REASSIGN_ITEMS``, actor ``system``, the rule in the reason, e.g. "owner left: ...")
with ``v2mom_items_reassigned`` in the same conditional write. Like UpdateObstacle and completed milestones it
needs no re-approval: the published version changes in place (its revision stays), and so does the working copy
when a draft is open, so the next approval does not undo it; the state stays. Their own V2MOMs are not touched
here (their drafts are archived, the published ones wait in ListOrphans for TransferV2MOM).

The V2MOMs are found through ``item_people`` (index ``by_item_person``), which the repository keeps on every
write. A redelivery finds nothing left to hand over.
"""

from services.platform.core.clock import utc_now
from services.platform.core.errors import Aborted

from . import commits, convert, events
from .repository import V2MOMRepository

ACTION = "REASSIGN_ITEMS"
PAGE = 200  # V2MOMs read at a time; a leaver holding items in more is handed over page after page
SYSTEM = commits.SYSTEM
# (content part, field): what a person may hold in a V2MOM.
HELD = (("methods", "owner_id"), ("methods", "accountable_id"), ("measures", "owner_id"), ("obstacles", "owner_id"))


def holders(content: dict) -> list[str]:
    """Everyone holding an item of ``content``."""
    return [item[field] for part, field in HELD for item in content.get(part) or [] if item.get(field)]


def held_paths(content: dict, person_id: str) -> list[str]:
    """The fields ``person_id`` holds, as history paths (``content.methods[mth-1].accountable_id``)."""
    return [f"content.{part}[{item.get('id', '')}].{field}"
            for part, field in HELD for item in content.get(part) or [] if item.get(field) == person_id]


def handed_over(content: dict, person_id: str, successor_id: str) -> dict:
    """``content`` with every field ``person_id`` holds given to ``successor_id``."""
    changed = dict(content)
    for part in {part for part, _ in HELD}:
        fields = [field for held_part, field in HELD if held_part == part]
        changed[part] = [{**item, **{f: successor_id for f in fields if item.get(f) == person_id}}
                         for item in content.get(part) or []]
    return changed


def changes_for(doc: dict, person_id: str, successor_id: str) -> tuple[dict, list[str]]:
    """The document fields a handover from ``person_id`` changes (working copy and published version) and the
    paths it changes; ({}, []) when they hold nothing in it."""
    changes: dict = {}
    paths = held_paths(doc["content"], person_id)
    if paths:
        changes["content"] = handed_over(doc["content"], person_id, successor_id)
    published = doc.get("published")
    if published:
        published_paths = held_paths(published["content"], person_id)
        if published_paths:
            changes["published"] = {**published,
                                    "content": handed_over(published["content"], person_id, successor_id)}
            paths = sorted(set(paths) | set(published_paths))
    return changes, paths


def event_data(after: dict, actor_id: str, previous_state: str, reason: str, paths: list[str], **extra):
    """A V2MOM event carrying the published version (content and parent) once there is one, as
    milestones_completed does: what check-ins and the readers of the published version follow."""
    published = after.get("published")
    if not published:
        return convert.event_data(after, actor_id, previous_state, reason=reason, changed_paths=paths, **extra)
    shown = {**after, "parent_id": published.get("parent_id") or ""}
    return convert.event_data(shown, actor_id, previous_state, reason=reason, changed_paths=paths,
                              content_message=convert.content_from_doc(published["content"]), **extra)


class ItemHandover:
    def __init__(self, repository: V2MOMRepository):
        self.repository = repository

    def hand_over(self, person_id: str) -> int:
        """Gives what a leaver holds in others' live V2MOMs to their owners; returns how many V2MOMs changed."""
        moved, after = 0, None
        while True:
            page = self.repository.holding_items(person_id, after, PAGE)
            for doc in page:
                if doc["owner_id"] != person_id:  # their own goes whole, by TransferV2MOM
                    moved += self._commit(doc, person_id)
            if len(page) < PAGE:
                return moved
            after = page[-1]["_id"]

    def _commit(self, doc: dict, person_id: str) -> int:
        owner_id = doc["owner_id"]
        changes, paths = changes_for(doc, person_id, owner_id)
        if not paths:
            return 0
        stamp = utc_now()
        reason = f"owner left: {person_id} left; their items pass to the V2MOM's owner {owner_id}"
        after = {**doc, **changes, "revision": doc["revision"] + 1, "updated_at": stamp}
        entry = commits.history_entry(after, ACTION, SYSTEM, stamp, reason, paths)
        data = event_data(after, SYSTEM.person_id, doc["state"], reason, paths)
        saved = self.repository.apply(doc["_id"], doc["revision"], {**changes, "updated_at": stamp}, entry,
                                      [events.v2mom_event(events.V2MOM_ITEMS_REASSIGNED, data)])
        if saved is None:
            raise Aborted(f"v2mom {doc['_id']!r} changed meanwhile")  # the consumer reads it again
        return 1
