"""Use case: nothing waits on someone who cannot act (goals-worker, from its own ``person_upserted``).

Two rules, each a recorded system revision (history action ``CHANGE_APPROVER``, the rule in the reason) with a
``v2mom_approver_changed`` event in the same conditional write; the state stays, nothing is approved again:

- a person leaves: the V2MOMs submitted to them go to their nearest active manager, else to any admin;
- a person's manager changes: their own submitted V2MOMs go to the new manager.

And a leaver's drafts (V2MOMs never published, not yet archived) are archived with the reason "left"
(``ARCHIVE`` by the system, ``v2mom_archived``), which frees their slots; their published V2MOMs stay, and
ListOrphans shows them to whoever takes over (TransferV2MOM). The items they hold in others' V2MOMs pass to
those V2MOMs' owners (handover.py).

Driven by the event rather than inside the directory write, so a crash between the two loses nothing: the
event is redelivered until this has run, and a rerun finds nothing left to move.
"""

from services.platform.core.clock import utc_now
from services.platform.core.errors import Aborted
from services.platform.store.mongo import find_in

from . import commits, convert, events
from .directory import Directory
from .handover import ItemHandover
from . import lifecycle
from .lifecycle import CHANGES_REQUESTED, DRAFT, SUBMITTED
from .repository import V2MOMRepository
from v2mom.v1 import events_pb2

ACTION = "CHANGE_APPROVER"
SYSTEM = commits.SYSTEM


class ApproverChanges:
    def __init__(self, repository: V2MOMRepository, directory: Directory):
        self.repository = repository
        self.directory = directory

    def follow(self, change: events_pb2.PersonEventData) -> int:
        """Moves what a directory change leaves waiting; returns how many V2MOMs moved."""
        person = change.person
        moved = 0
        if not person.active:
            successor = self.successor(person.id)
            for doc in self._submitted("approver_id", person.id, "by_approver"):
                moved += self._move(doc, successor, f"{person.id} left; their manager (or an admin) approves now")
            moved += self._archive_drafts(person.id)
            moved += ItemHandover(self.repository).hand_over(person.id)
        if person.active and change.previous_manager_id != person.manager_id and person.manager_id:
            for doc in self._submitted("owner_id", person.id, "by_owner"):
                if doc.get("approver_id") == change.previous_manager_id:
                    moved += self._move(doc, person.manager_id, f"{person.id}'s manager is now {person.manager_id}")
        return moved

    def follow_unit(self, change: events_pb2.OrgUnitEventData) -> int:
        """A unit's V2MOMs follow its leader (transfers.py, goals-worker's own ``org_unit_upserted``); how many moved."""
        from .transfers import Transfers  # transfers builds on this module's successor rule
        return Transfers(self.repository, self.directory).follow_leader(change.org_unit)

    def successor(self, person_id: str) -> str:
        return successor_of(self.directory, person_id)

    def _archive_drafts(self, person_id: str) -> int:
        drafts = find_in(self.repository.collection, "owner_id", [person_id],
                         {"state": {"$in": [DRAFT, CHANGES_REQUESTED, SUBMITTED]}, "published": None},
                         index="by_owner")
        for doc in drafts:
            stamp = utc_now()
            commits.commit(self.repository, SYSTEM, doc, lifecycle.ARCHIVE, {"archived_at": stamp, "updated_at": stamp},
                           stamp, "left", unset=("slot",))
        return len(drafts)

    def _submitted(self, field: str, person_id: str, index: str) -> list[dict]:
        return find_in(self.repository.collection, field, [person_id], {"state": SUBMITTED}, index=index)

    def _move(self, doc: dict, approver_id: str, reason: str) -> int:
        if doc.get("approver_id") == approver_id or approver_id == doc["owner_id"]:
            return 0  # nobody approves their own: it stays where it is rather than go to its owner
        stamp = utc_now()
        after = {**doc, "approver_id": approver_id, "revision": doc["revision"] + 1}
        entry = commits.history_entry(after, ACTION, SYSTEM, stamp, reason, ["approver_id"])
        data = convert.event_data(after, SYSTEM.person_id, doc["state"], reason=reason, changed_paths=["approver_id"])
        saved = self.repository.apply(doc["_id"], doc["revision"], {"approver_id": approver_id, "updated_at": stamp},
                                      entry, [events.v2mom_event(events.V2MOM_APPROVER_CHANGED, data)])
        if saved is None:
            raise Aborted(f"v2mom {doc['_id']!r} changed meanwhile")  # the consumer reads it again
        return 1


def successor_of(directory: Directory, person_id: str) -> str:
    """Who takes over from someone who left: the nearest active manager above; "" (any admin) when none is."""
    for manager_id in directory.manager_chain(person_id):
        manager = directory.person(manager_id)
        if manager and manager.get("active", True):
            return manager_id
    return ""
