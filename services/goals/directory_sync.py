"""Directory sync: the one use case every inbound path (DirectoryService, HRIS events, later SCIM) converges on.

A change names a person or an org unit by its HRIS external id and carries an effective time. It writes the
fields whose stored versions it beats (directory_rules.py), resolves the references it names (a manager not
known yet stays pending and is resolved when they arrive), and writes the record with its ``person_upserted``
/ ``org_unit_upserted`` event in one conditional update. A change dated in the future is kept and applied on
its date (``apply_due``, goals-worker's timer).
"""

from collections.abc import Iterator
from datetime import datetime, timedelta

from services.platform.core.clock import to_millis, utc_now
from services.platform.core.errors import Aborted, AlreadyExists, FailedPrecondition, NotFound

from . import directory_rules as rules
from .directory import ORG_UNITS, PEOPLE, Directory, person_changed_event, unit_changed_event

CREATED, CHANGED, UNCHANGED, STALE, SCHEDULED = "CREATED", "CHANGED", "UNCHANGED", "STALE", "SCHEDULED"
# Clocks of an HRIS and ours disagree a little: "now" from the feed must not become a timer.
FUTURE_SKEW = timedelta(seconds=60)
ATTEMPTS = 5
KEEP_UNKNOWN = timedelta(days=7)  # a termination for someone never hired is dropped after this


class DirectorySync:
    def __init__(self, directory: Directory, clock=utc_now):
        self.directory = directory
        self.clock = clock

    # --- people ------------------------------------------------------------

    def upsert_person(self, change: dict) -> tuple[str, dict | None]:
        """``change``: external_id, id (for a new person), fields (rules.PERSON_FIELDS), effective_at; with
        ``create_only`` (SCIM's POST), a person that exists by then, or a key another record holds (its id,
        external id, a unique userName), is ALREADY_EXISTS rather than changed."""
        return self._timed(change, self._apply_person)

    def deactivate_person(self, ref: str, end_date: str, effective_at: datetime,
                          keep_if_unknown: bool = False) -> tuple[str, dict | None]:
        """``keep_if_unknown``: a feed's termination may overtake the hire (they travel on different queues);
        then it waits for the person, for KEEP_UNKNOWN at most."""
        person = self.directory.person_by_ref(ref)
        end = end_date or effective_at.date().isoformat()
        fields = {"employment_status": rules.TERMINATED, "end_date": end}
        if person is None and keep_if_unknown:
            change = {"kind": "person", "external_id": ref, "id": ref, "fields": fields, "effective_at": effective_at}
            self.directory.schedule(_change_id(change), self.clock() + KEEP_UNKNOWN, change, waits_for=ref)
            return SCHEDULED, None
        if person is None:
            raise NotFound(f"person {ref!r} is not in the directory")
        change = {"kind": "person", "external_id": person.get("external_id") or "", "id": person["_id"],
                  "fields": fields, "effective_at": effective_at}
        return self._timed(change, self._apply_person)

    def _apply_person(self, change: dict) -> tuple[str, dict | None]:
        version = rules.version_of(change["effective_at"], {"person": change["external_id"] or change["id"],
                                                            **change["fields"]})
        for _ in range(ATTEMPTS):
            existing = self._confirmed(self._person_for(change))
            if existing is not None and change.get("create_only"):
                raise AlreadyExists(f"person {change['id'] or change['external_id']!r} was created meanwhile")
            if existing is None and "display_name" not in change["fields"]:
                raise NotFound(f"person {change['external_id']!r} is not in the directory")
            newer = rules.newer_fields(existing, change["fields"], version)
            if existing is not None and not newer:
                return _unchanged_or_stale(existing, change["fields"]), existing
            document = self._person_document(change, existing, newer, version)
            if self.directory.write_record(PEOPLE, existing, document, person_changed_event(document, existing)):
                self._resolve_reports(document)
                self._resolve_leaders(document)
                if existing is None:
                    return CREATED, self._apply_waiting(document)
                return CHANGED, document
            if existing is None and change.get("create_only"):
                raise AlreadyExists(f"person {document['_id']!r}: another record holds its id, external id or "
                                    "a unique key of it")
        raise Aborted(f"person {change['external_id']!r} kept changing underneath; try again")

    def _person_for(self, change: dict) -> dict | None:
        return self._record_for(PEOPLE, change)

    def _confirmed(self, person: dict | None) -> dict | None:
        """The person with the field versions an import confirmed without writing (directory_rules.py,
        "Confirmations"); a write keeps them, so they outlive the confirmation."""
        if person is None or not person.get("external_id"):
            return person
        version = self.directory.confirmed_version(person["external_id"], person.get("revision"))
        if version is None:
            return person
        return {**person, "versions": rules.raised_versions(person.get("versions"), rules.PERSON_FIELDS, version)}

    def _record_for(self, collection: str, change: dict) -> dict | None:
        """The stored record a change is about: by external id; else by the directory id, when no other
        external id holds it (a record the seed wrote becomes the HRIS's)."""
        records, hidden = self.directory.db[collection], {"outbox": 0, "outbox_pending": 0}
        if change["external_id"]:
            found = records.find_one({"external_id": change["external_id"]}, hidden)
            if found is not None:
                return found
        record_id = change.get("id") or change["external_id"]
        found = records.find_one({"_id": record_id}, hidden)
        if found is not None and found.get("external_id") not in (None, "", change["external_id"]):
            raise AlreadyExists(f"{collection} id {record_id!r} belongs to HRIS record {found['external_id']!r}")
        return found

    def _person_document(self, change: dict, existing: dict | None, newer: dict, version: list,
                         store=None) -> dict:
        """``store``: where references are looked up (``person_by_ref``, ``unit_by_ref``): the directory, or an
        import's batch view (directory_batch.py)."""
        store = store or self.directory
        base = existing or {"_id": change.get("id") or change["external_id"], "roles": [], "active": True,
                            "org_unit_id": "", "manager_id": "", **{name: "" for name in rules.PERSON_FIELDS}}
        document = {**base, **newer, "revision": base.get("revision", 0) + 1, "updated_at": utc_now(),
                    "versions": rules.merged_versions(existing, newer, version)}
        if change["external_id"]:
            document["external_id"] = change["external_id"]
        if "org_unit_ref" in newer:
            unit = store.unit_by_ref(newer["org_unit_ref"])
            if unit is None:
                raise FailedPrecondition(f"org unit {newer['org_unit_ref']!r} is not in the directory")
            document["org_unit_id"] = unit["_id"]
        if "manager_ref" in newer:
            self._set_manager(document, newer["manager_ref"], store)
        if "employment_status" in newer:
            document["active"] = rules.is_active(newer["employment_status"])
        return document

    def _set_manager(self, document: dict, ref: str, store) -> None:
        keys = {document["_id"], document.get("external_id") or document["_id"]}
        if rules.manager_cycle(keys, ref, lambda next_ref: manager_ref_of(store, next_ref)):
            raise FailedPrecondition(f"manager {ref!r} would make {document['_id']!r} manage themselves (a cycle)")
        manager = store.person_by_ref(ref)
        document["manager_id"] = manager["_id"] if manager else ""
        document["pending_manager"] = ref if ref and manager is None else None

    def _apply_waiting(self, person: dict) -> dict:
        """Changes that overtook this person's arrival apply now; returns the person as they end up."""
        for kept in self.directory.waiting_on(person.get("external_id") or ""):
            self._apply_person({**kept["change"], "effective_at": to_millis(kept["change"]["effective_at"])})
            self.directory.unschedule(kept["_id"])
        return self._person_for({"external_id": person.get("external_id") or "", "id": person["_id"]}) or person

    def resolve_arrivals(self, people: list[dict]) -> list[dict]:
        """People and units that named any of ``people`` (by id or external id) before they arrived now point
        at them: for a path that writes people without this use case (the demo seed). Returns what it wrote."""
        if not people:
            return []
        arrived = by_refs(people)
        written = []
        for record, manager in self.waiting_reports(arrived):
            written += self._resolve(PEOPLE, [record], manager, "manager_id", "pending_manager", person_changed_event)
        return written + self.resolve_leaders(arrived)

    def waiting_reports(self, arrived: dict[str, dict]) -> Iterator[tuple[dict, dict]]:
        """(person, manager) for everyone whose pending manager is among ``arrived`` (``by_refs``): one read of
        the people still pending (few)."""
        for record in self.directory.pending_people():
            manager = arrived.get(record.get("pending_manager") or "")
            if manager is not None and manager["_id"] != record["_id"]:
                yield record, manager

    def resolve_leaders(self, arrived: dict[str, dict]) -> list[dict]:
        """Units waiting for a leader among ``arrived`` (``by_refs``) now have them:
        one read of the units still pending (few), then one write each. Returns the units written."""
        written = []
        for unit in self.directory.units_pending_leader():
            leader = arrived.get(unit["pending_leader"])
            if leader is not None:
                written += self._resolve_leaders(leader, [unit])
        return written

    def _resolve_reports(self, manager: dict) -> None:
        """People who named this person as manager before they arrived now report to them."""
        waiting = self.directory.waiting_for_manager(_refs(manager))
        self._resolve(PEOPLE, waiting, manager, "manager_id", "pending_manager", person_changed_event)

    def _resolve_leaders(self, person: dict, waiting: list[dict] | None = None) -> list[dict]:
        """Units that named this person as their leader before they were hired now have them (goals-worker then
        moves the units' V2MOMs to them, as for any new leader). ``waiting``: those units, when already read."""
        if waiting is None:
            waiting = self.directory.waiting_for_leader(_refs(person))
        return self._resolve(ORG_UNITS, waiting, person, "leader_id", "pending_leader", unit_changed_event)

    def _resolve(self, collection: str, waiting: list[dict], arrived: dict, field: str, pending: str,
                 make_event) -> list[dict]:
        """Records that named ``arrived`` before it existed now point at it: one write and event each; returns
        the records written."""
        written = []
        for record in waiting:
            document = {**record, field: arrived["_id"], pending: None, "revision": record["revision"] + 1,
                        "updated_at": utc_now()}
            # Lost to a concurrent write: that writer resolved it, or it stays pending until the next change.
            if self.directory.write_record(collection, record, document, make_event(document, record)):
                written.append(document)
        return written

    # --- org units -----------------------------------------------------------

    def upsert_org_unit(self, change: dict) -> tuple[str, dict | None]:
        """``change``: external_id, id, fields (rules.UNIT_FIELDS), effective_at."""
        return self._timed(change, self._apply_unit)

    def retire_org_unit(self, ref: str, effective_at: datetime) -> tuple[str, dict | None]:
        unit = self.directory.unit_by_ref(ref)
        if unit is None:
            raise NotFound(f"org unit {ref!r} is not in the directory")
        if not unit.get("retired") and self.directory.unit_in_use(unit["_id"]):
            # Retiring a unit people still work in would orphan them as well as its V2MOMs: move them first.
            raise FailedPrecondition(f"org unit {unit['_id']!r} still has active people or live units; move them first")
        change = {"kind": "unit", "external_id": unit.get("external_id") or "", "id": unit["_id"],
                  "fields": {"retired": True}, "effective_at": effective_at}
        return self._timed(change, self._apply_unit)

    def _apply_unit(self, change: dict) -> tuple[str, dict | None]:
        version = rules.version_of(change["effective_at"], {"unit": change["external_id"] or change["id"],
                                                            **change["fields"]})
        for _ in range(ATTEMPTS):
            existing = self._unit_for(change)
            newer = rules.newer_fields(existing, change["fields"], version)
            if existing is not None and not newer:
                return _unchanged_or_stale(existing, change["fields"]), existing
            document = self._unit_document(change, existing, newer, version)
            if self.directory.write_record(ORG_UNITS, existing, document, unit_changed_event(document, existing)):
                self._resolve_children(document)
                return (CREATED if existing is None else CHANGED), document
        raise Aborted(f"org unit {change['external_id']!r} kept changing underneath; try again")

    def _unit_for(self, change: dict) -> dict | None:
        return self._record_for(ORG_UNITS, change)

    def _unit_document(self, change: dict, existing: dict | None, newer: dict, version: list) -> dict:
        if existing is None and "name" not in newer:
            raise NotFound(f"org unit {change['external_id']!r} is not in the directory")
        base = existing or {"_id": change.get("id") or change["external_id"], "parent_id": "", "leader_id": "",
                            **{name: "" for name in rules.UNIT_FIELDS}}
        document = {**base, **newer, "revision": base.get("revision", 0) + 1, "updated_at": utc_now(),
                    "versions": rules.merged_versions(existing, newer, version)}
        if change["external_id"]:
            document["external_id"] = change["external_id"]
        if "parent_ref" in newer:
            self._set_parent(document, newer["parent_ref"])
        if "leader_ref" in newer:
            # A leader not hired yet stays pending (``pending_leader``), as a pending manager does.
            ref = newer["leader_ref"]
            leader = self.directory.person_by_ref(ref)
            document["leader_id"] = leader["_id"] if leader else ""
            document["pending_leader"] = ref if ref and leader is None else None
        return document

    def _set_parent(self, unit: dict, ref: str) -> None:
        """The parent a reference names; one not known yet stays pending (``pending_parent``) until it arrives, as
        a pending manager does. A parent that would close a loop, counting pending references, is refused."""
        keys = {unit["_id"], unit.get("external_id") or unit["_id"]}
        if ref and rules.manager_cycle(keys, ref, lambda next_ref: parent_ref_of(self.directory, next_ref)):
            raise FailedPrecondition(f"parent {ref!r} would put org unit {unit['_id']!r} inside itself")
        parent = self.directory.unit_by_ref(ref)
        unit["parent_id"] = parent["_id"] if parent else ""
        unit["pending_parent"] = ref if ref and parent is None else None

    def _resolve_children(self, parent: dict) -> None:
        """Units that named this one as parent before it arrived now sit under it."""
        waiting = self.directory.waiting_for_parent(_refs(parent))
        self._resolve(ORG_UNITS, waiting, parent, "parent_id", "pending_parent", unit_changed_event)

    # --- the timer -------------------------------------------------------------

    def _timed(self, change: dict, apply) -> tuple[str, dict | None]:
        """Applies a change now, or keeps it for its date."""
        if change["effective_at"] > self.clock() + FUTURE_SKEW:
            self.directory.schedule(_change_id(change), change["effective_at"], change)
            return SCHEDULED, None
        return apply(change)

    def apply_due(self, limit: int = 100) -> int:
        """Applies the kept changes whose date has come; returns how many. One that cannot apply any more
        (its unit gone, a cycle) is dropped: the feed's later changes decide."""
        applied = 0
        for kept in self.directory.due_changes(self.clock(), limit):
            change = {**kept["change"], "effective_at": to_millis(kept["due_at"])}
            apply = self._apply_unit if change.get("kind") == "unit" else self._apply_person
            try:
                apply(change)
                applied += 1
            except (FailedPrecondition, NotFound, AlreadyExists):
                pass
            self.directory.unschedule(kept["_id"])
        return applied


def manager_ref_of(store, ref: str) -> str:
    """The manager reference of the person ``ref`` names in ``store`` (pending or resolved), or ""."""
    person = store.person_by_ref(ref)
    return (person.get("pending_manager") or person.get("manager_id") or "") if person else ""


def parent_ref_of(store, ref: str) -> str:
    unit = store.unit_by_ref(ref)
    return (unit.get("pending_parent") or unit.get("parent_id") or "") if unit else ""


def by_refs(records: list[dict]) -> dict[str, dict]:
    """Each record under every reference an HRIS may name it by (``_refs``)."""
    return {ref: record for record in records for ref in _refs(record) if ref}


def _refs(record: dict) -> list[str]:
    """What an HRIS may have named a record by: its directory id and its external id."""
    return [record["_id"], record.get("external_id") or ""]


def _unchanged_or_stale(existing: dict, fields: dict) -> str:
    return UNCHANGED if all(existing.get(name) == value for name, value in fields.items()) else STALE


def _change_id(change: dict) -> str:
    """The same for the same change, so a repeated feed keeps it once."""
    return "/".join(rules.version_of(change["effective_at"], {**change, "effective_at": ""}))
