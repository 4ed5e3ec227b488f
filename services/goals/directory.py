"""The org directory the goals service owns: people, org units and cycles.

Reads go through a short-lived in-process cache: every RPC needs the caller's
manager chain, and the directory changes rarely (HRIS sync), so a few seconds
of staleness buys a round-trip per lookup.
"""

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.platform.bus.outbox import new_document_with_events, outbox_index, with_events
from services.platform.core.cache import ExpiringCache
from services.platform.core.clock import utc_now
from services.platform.core.ids import new_id
from services.platform.store.mongo import Index, after_id, find_in, matching

from . import convert
from .events import org_unit_event, person_event
from v2mom.v1 import events_pb2

PEOPLE = "people"
ORG_UNITS = "org_units"
CYCLES = "cycles"
SCHEDULED = "directory_scheduled"  # HRIS changes dated in the future, until goals-worker applies them
# What imports found unchanged and did not rewrite: per part, each row's version (directory_rules.py, "Confirmations").
CONFIRMATIONS = "directory_confirmations"
CONFIRMATION_ROWS = 500  # entries per confirmation document, so one person's lookup reads little

INDEXES = [
    # Identity from an HRIS: unique where present (people and units the seed wrote have none).
    Index(PEOPLE, [("external_id", 1)], name="people_by_external_id", unique=True,
          partial={"external_id": {"$exists": True}}),
    Index(ORG_UNITS, [("external_id", 1)], name="units_by_external_id", unique=True,
          partial={"external_id": {"$exists": True}}),
    # People whose manager the HRIS named before the manager arrived.
    Index(PEOPLE, [("pending_manager", 1)], name="people_pending_manager",
          partial={"pending_manager": {"$exists": True}}),
    # Units whose parent the HRIS named before the parent arrived.
    Index(ORG_UNITS, [("pending_parent", 1)], name="units_pending_parent",
          partial={"pending_parent": {"$exists": True}}),
    # Units whose leader the HRIS named before the person was hired.
    Index(ORG_UNITS, [("pending_leader", 1)], name="units_pending_leader",
          partial={"pending_leader": {"$exists": True}}),
    Index(PEOPLE, [("active", 1), ("_id", 1)], name="people_by_active"),
    Index(ORG_UNITS, [("retired", 1), ("_id", 1)], name="units_retired", partial={"retired": {"$exists": True}}),
    Index(SCHEDULED, [("due_at", 1), ("_id", 1)], name="scheduled_by_due"),
    Index(SCHEDULED, [("waits_for", 1), ("_id", 1)], name="scheduled_by_person",
          partial={"waits_for": {"$exists": True}}),
    Index(PEOPLE, [("org_unit_id", 1), ("_id", 1)], name="people_by_unit"),
    Index(PEOPLE, [("manager_id", 1), ("_id", 1)], name="people_by_manager"),
    Index(ORG_UNITS, [("parent_id", 1), ("_id", 1)], name="units_by_parent"),
    # A person's confirmations (multikey), the newest one, and the old ones to prune.
    Index(CONFIRMATIONS, [("entries.e", 1)], name="confirmations_by_person"),
    Index(CONFIRMATIONS, [("at_max", 1)], name="confirmations_by_version"),
    Index(CONFIRMATIONS, [("created_at", 1)], name="confirmations_by_age"),
    outbox_index(PEOPLE),
    outbox_index(ORG_UNITS),
    outbox_index(CYCLES),
]

MAX_CHAIN = 50  # a manager loop in bad HRIS data must not hang a request


class Directory:
    def __init__(self, db: Database, cache_seconds: float = 5.0):
        self.db = db
        # 0 caches nothing: an answer expires the moment it is loaded. A miss is not kept: a person
        # an HRIS feed or the seed writes is referenced at once, often through another replica.
        self.cache = ExpiringCache(cache_seconds, remember_missing=False)

    # --- reads -------------------------------------------------------------

    def person(self, person_id: str) -> dict | None:
        return self.cache.get(("person", person_id), lambda: self.db[PEOPLE].find_one({"_id": person_id}, {"outbox": 0}))

    def org_unit(self, unit_id: str) -> dict | None:
        return self.cache.get(("unit", unit_id), lambda: self.db[ORG_UNITS].find_one({"_id": unit_id}, {"outbox": 0}))

    def cycle(self, cycle_id: str) -> dict | None:
        return self.cache.get(("cycle", cycle_id), lambda: self.db[CYCLES].find_one({"_id": cycle_id}, {"outbox": 0}))

    def fresh_cycle(self, cycle_id: str) -> dict | None:
        """Uncached: for writes guarded by the cycle's revision."""
        return self.db[CYCLES].find_one({"_id": cycle_id}, {"outbox": 0})

    def manager_chain(self, person_id: str) -> list[str]:
        """The person's managers, nearest first."""
        chain: list[str] = []
        person = self.person(person_id)
        while person and person.get("manager_id") and len(chain) < MAX_CHAIN:
            manager_id = person["manager_id"]
            if manager_id in chain or manager_id == person_id:
                break
            chain.append(manager_id)
            person = self.person(manager_id)
        return chain

    def reports_of(self, manager_id: str) -> list[str]:
        """Everyone below a manager, direct and indirect."""
        def load():
            found: list[str] = []
            frontier = [manager_id]
            seen = {manager_id}
            while frontier and len(found) < 100_000:
                rows = find_in(self.db[PEOPLE], "manager_id", frontier, projection={"_id": 1})
                frontier = [row["_id"] for row in rows if row["_id"] not in seen]
                seen.update(frontier)
                found.extend(frontier)
            return found

        return self.cache.get(("reports", manager_id), load)

    def list_people(self, org_unit_id: str, manager_id: str, after: str | None, limit: int) -> list[dict]:
        query = after_id(matching(org_unit_id=org_unit_id, manager_id=manager_id), after)
        return list(self.db[PEOPLE].find(query, {"outbox": 0}).sort("_id", 1).limit(limit))

    def list_org_units(self, parent_id: str, after: str | None, limit: int) -> list[dict]:
        query = after_id(matching(parent_id=parent_id), after)
        return list(self.db[ORG_UNITS].find(query, {"outbox": 0}).sort("_id", 1).limit(limit))

    def list_cycles(self) -> list[dict]:
        return list(self.db[CYCLES].find({}, {"outbox": 0, "outbox_pending": 0}).sort("start_date", 1))

    # --- writes (seed now, HRIS sync later) ----------------------------------

    def upsert_org_unit(self, unit: dict) -> bool:
        """Creates or changes an org unit; returns False when nothing changed."""
        fields = {k: unit.get(k) for k in ("name", "level", "parent_id", "leader_id")}
        return self._upsert(ORG_UNITS, unit["_id"], fields, unit_changed_event)

    def upsert_person(self, person: dict) -> bool:
        keys = ("display_name", "email", "title", "manager_id", "org_unit_id", "roles", "active")
        fields = {k: person.get(k) for k in keys}
        fields["active"] = fields["active"] if fields["active"] is not None else True
        fields["roles"] = list(fields["roles"] or [])
        return self._upsert(PEOPLE, person["_id"], fields, person_changed_event)

    # --- HRIS sync's store (directory_sync.py decides what to write) ------------

    def people_synced_or_gone(self) -> set[str]:
        """The ids of the people an HRIS keeps (they carry its external id) and of those who left."""
        synced = self.db[PEOPLE].find({"external_id": {"$exists": True}}, {"_id": 1}).hint("people_by_external_id")
        gone = self.db[PEOPLE].find({"active": False}, {"_id": 1}).hint("people_by_active")
        return {row["_id"] for row in synced} | {row["_id"] for row in gone}

    def person_by_ref(self, ref: str) -> dict | None:
        """Uncached: the person an HRIS reference names, by external id first, then by directory id."""
        if not ref:
            return None
        found = self.db[PEOPLE].find_one({"external_id": ref}, {"outbox": 0, "outbox_pending": 0})
        return found or self.db[PEOPLE].find_one({"_id": ref}, {"outbox": 0, "outbox_pending": 0})

    def unit_by_ref(self, ref: str) -> dict | None:
        if not ref:
            return None
        found = self.db[ORG_UNITS].find_one({"external_id": ref}, {"outbox": 0, "outbox_pending": 0})
        return found or self.db[ORG_UNITS].find_one({"_id": ref}, {"outbox": 0, "outbox_pending": 0})

    def write_record(self, collection: str, existing: dict | None, document: dict, event: dict) -> bool:
        """One record and its event, conditional on the revision read; False when someone wrote it meanwhile
        (or took its id or external id)."""
        try:
            written = self._write(collection, existing, document, event)
        except DuplicateKeyError:  # another record holds the external id
            return False
        self.cache.clear()
        return written

    def waiting_for_manager(self, refs: list[str]) -> list[dict]:
        """People whose pending manager reference is one of ``refs``."""
        return find_in(self.db[PEOPLE], "pending_manager", [ref for ref in refs if ref],
                       projection={"outbox": 0, "outbox_pending": 0})

    def waiting_for_parent(self, refs: list[str]) -> list[dict]:
        """Org units whose pending parent reference is one of ``refs``."""
        return find_in(self.db[ORG_UNITS], "pending_parent", [ref for ref in refs if ref],
                       projection={"outbox": 0, "outbox_pending": 0}, index="units_pending_parent")

    def waiting_for_leader(self, refs: list[str]) -> list[dict]:
        """Org units whose pending leader reference is one of ``refs``."""
        return find_in(self.db[ORG_UNITS], "pending_leader", [ref for ref in refs if ref],
                       projection={"outbox": 0, "outbox_pending": 0})

    def units_pending_leader(self) -> list[dict]:
        """Every unit whose leader is still pending (few), through the partial index; a resolved one holds
        ``None``, which ``$gt: ""`` leaves out."""
        return list(self.db[ORG_UNITS].find({"pending_leader": {"$gt": ""}}, HIDDEN).hint("units_pending_leader"))

    def pending_people(self) -> list[dict]:
        """Everyone whose manager reference is still pending (few: an import sends managers first). Read whole
        through the partial index: a ``$in`` of references costs mongoeco a scan per value."""
        return list(self.db[PEOPLE].find({"pending_manager": {"$exists": True, "$gt": ""}}, HIDDEN)
                    .hint("people_pending_manager"))

    def waiting_on_any(self, external_ids: list[str]) -> list[dict]:
        """Kept changes waiting for any of these people to arrive."""
        return find_in(self.db[SCHEDULED], "waits_for", [ref for ref in external_ids if ref],
                       sort=("_id",), index="scheduled_by_person")

    # --- import confirmations (directory_rules.py, "Confirmations") -----------------------------------------

    def confirm(self, entries: list[dict], now) -> None:
        """Keeps an import's unchanged rows: ``entries`` of e (external id), at and d (the row's version), r (the
        revision it saw)."""
        parts = [entries[start:start + CONFIRMATION_ROWS] for start in range(0, len(entries), CONFIRMATION_ROWS)]
        if parts:
            self.db[CONFIRMATIONS].insert_many([
                {"_id": new_id("confirm"), "created_at": now, "at_max": max(entry["at"] for entry in part),
                 "entries": part} for part in parts])

    def confirmed_version(self, external_id: str, revision) -> list[str] | None:
        """The newest version confirmed for a person at ``revision``, or None."""
        match = {"e": external_id, "r": revision}
        found = self.db[CONFIRMATIONS].find({"entries.e": external_id, "entries": {"$elemMatch": match}},
                                            {"entries": {"$elemMatch": match}})
        return _newest(entry for doc in found for entry in doc.get("entries") or ())

    def confirmations_since(self, at: str, external_ids: list[str]) -> list[dict]:
        """The confirmed entries of these people in confirmations reaching ``at`` or later: none, for one round
        trip, when the newest confirmation is older (an import's rows are stamped now)."""
        newest = self.db[CONFIRMATIONS].find_one({}, {"at_max": 1}, sort=[("at_max", -1)])
        if newest is None or newest["at_max"] < at:
            return []
        wanted = set(external_ids)
        found = find_in(self.db[CONFIRMATIONS], "entries.e", list(wanted), query={"at_max": {"$gte": at}})
        return [entry for doc in found for entry in doc["entries"] if entry["e"] in wanted]

    def prune_confirmations(self, before, limit: int = 100) -> int:
        """Drops up to ``limit`` confirmations made before ``before``; how many."""
        old = [doc["_id"] for doc in self.db[CONFIRMATIONS].find({"created_at": {"$lt": before}}, {"_id": 1})
               .sort("created_at", 1).limit(limit)]
        return self.db[CONFIRMATIONS].delete_many({"_id": {"$in": old}}).deleted_count if old else 0

    def inactive_people(self, limit: int) -> list[dict]:
        return list(self.db[PEOPLE].find({"active": False}, {"outbox": 0, "outbox_pending": 0})
                    .sort("_id", 1).limit(limit))

    def unit_in_use(self, unit_id: str) -> bool:
        """Whether active people work in the unit, or units that are not retired sit under it."""
        person = self.db[PEOPLE].find_one({"org_unit_id": unit_id, "active": {"$ne": False}}, {"_id": 1},
                                          hint="people_by_unit")
        child = self.db[ORG_UNITS].find_one({"parent_id": unit_id, "retired": {"$ne": True}}, {"_id": 1},
                                            hint="units_by_parent")
        return person is not None or child is not None

    def retired_units(self, limit: int) -> list[dict]:
        return list(self.db[ORG_UNITS].find({"retired": True}, {"outbox": 0, "outbox_pending": 0})
                    .sort("_id", 1).limit(limit))

    def schedule(self, change_id: str, due_at, change: dict, waits_for: str = "") -> None:
        """Keeps a change for later, once whatever the feed repeats (the id is the change's digest);
        ``waits_for``: the external id of a person it applies to as soon as they arrive."""
        kept = {"due_at": due_at, "change": change, **({"waits_for": waits_for} if waits_for else {})}
        self.db[SCHEDULED].update_one({"_id": change_id}, {"$setOnInsert": kept}, upsert=True)

    def waiting_on(self, external_id: str) -> list[dict]:
        if not external_id:
            return []
        return list(self.db[SCHEDULED].find({"waits_for": external_id}).sort("_id", 1))

    def due_changes(self, now, limit: int = 100) -> list[dict]:
        return list(self.db[SCHEDULED].find({"due_at": {"$lte": now}}).sort([("due_at", 1), ("_id", 1)]).limit(limit))

    def unschedule(self, change_id: str) -> None:
        self.db[SCHEDULED].delete_one({"_id": change_id})

    def _upsert(self, collection: str, record_id: str, fields: dict, make_event, attempts: int = 5) -> bool:
        """Writes a directory record and its event, guarded by its revision so concurrent syncs never lose a change."""
        for _ in range(attempts):
            existing = self.db[collection].find_one({"_id": record_id}, {"outbox": 0, "outbox_pending": 0})
            if existing and all(existing.get(k) == v for k, v in fields.items()):
                return False
            revision = (existing or {}).get("revision", 0) + 1
            document = {"_id": record_id, **fields, "revision": revision, "updated_at": utc_now()}
            if self._write(collection, existing, document, make_event(document, existing)):
                self.cache.clear()
                return True
        raise RuntimeError(f"{collection} {record_id!r} kept changing underneath; gave up after {attempts} attempts")

    def _write(self, collection: str, existing: dict | None, document: dict, event: dict) -> bool:
        if existing is None:
            try:
                self.db[collection].insert_one(new_document_with_events(document, [event]))
            except DuplicateKeyError:
                return False
            return True
        fields = {k: v for k, v in document.items() if k != "_id"}
        result = self.db[collection].update_one(
            {"_id": document["_id"], "revision": existing.get("revision")}, with_events({"$set": fields}, [event])
        )
        return result.modified_count == 1

    def upsert_cycle(self, cycle_id: str, start_date: str, end_date: str, quarters: list[dict] | None = None) -> bool:
        """Creates or changes a cycle (the seed's and tests' way, no event); returns False when nothing changed."""
        fields = {"start_date": start_date, "end_date": end_date, **({"quarters": quarters} if quarters is not None else {})}
        existing = self.db[CYCLES].find_one({"_id": cycle_id}, {"outbox": 0})
        if existing and all(existing.get(k) == v for k, v in fields.items()):
            return False
        self.db[CYCLES].update_one({"_id": cycle_id}, {"$set": fields, "$inc": {"revision": 1}}, upsert=True)
        self.cache.clear()
        return True

    def insert_cycle(self, document: dict, event: dict) -> bool:
        """CreateCycle's write, with its event; False when the id is taken."""
        try:
            self.db[CYCLES].insert_one(new_document_with_events(document, [event]))
        except DuplicateKeyError:
            return False
        self.cache.clear()
        return True

    def update_cycle(self, cycle_id: str, revision: int | None, fields: dict, event: dict) -> bool:
        """A change to a cycle read at ``revision``, with its event; False when someone changed it meanwhile."""
        result = self.db[CYCLES].update_one(
            {"_id": cycle_id, "revision": revision}, with_events({"$set": fields, "$inc": {"revision": 1}}, [event])
        )
        self.cache.clear()
        return result.modified_count == 1


HIDDEN = {"outbox": 0, "outbox_pending": 0}


def _newest(entries) -> list[str] | None:
    versions = [[entry["at"], entry["d"]] for entry in entries]
    return max(versions) if versions else None


def person_changed_event(document: dict, existing: dict | None) -> dict:
    """person_upserted: the person now, and where they were (consumers move their copies)."""
    return person_event(
        events_pb2.PersonEventData(
            person=convert.person_to_proto(document),
            previous_org_unit_id=(existing or {}).get("org_unit_id") or "",
            previous_manager_id=(existing or {}).get("manager_id") or "",
            revision=document["revision"],
        )
    )


def unit_changed_event(document: dict, existing: dict | None) -> dict:
    return org_unit_event(
        events_pb2.OrgUnitEventData(
            org_unit=convert.org_unit_to_proto(document),
            previous_parent_id=(existing or {}).get("parent_id") or "",
            revision=document["revision"],
        )
    )
