"""The SCIM Users use cases, each a directory change through directory_sync.py (as DirectoryService's).

A POST finds its person by externalId, else by userName: a live one is ``uniqueness`` (409); one that
left or was deleted is restored (the same id, the same V2MOMs), as an HRIS rehire is. PUT and PATCH change
the fields that differ; DELETE terminates the person and hides them from SCIM (the directory keeps them:
their V2MOMs stay, and ListOrphans shows what waits on them). Every change is effective now, and after the
record's newest version, so the client's latest word wins over an older feed's (directory_rules.py).
"""

import logging
from datetime import datetime, timedelta, timezone

from pymongo.database import Database

from services.platform.core.cache import ExpiringCache
from services.platform.core.clock import utc_now
from services.platform.core.errors import Aborted, Violations
from services.platform.core.ids import new_id
from services.platform.core.validation import is_id
from services.platform.store.mongo import Index

from .. import directory_rules as rules
from ..directory import ORG_UNITS, PEOPLE, Directory
from ..directory_sync import STALE, DirectorySync
from . import filter as scim_filter
from . import mapping, patch
from .errors import ScimError, invalid_value
from .schemas import MAX_RESULTS

LIVE_USER_NAME_INDEX = "people_by_live_user_name_key"
INDEXES = [Index(PEOPLE, [("user_name_key", 1)], name="people_by_user_name",
                 partial={"user_name_key": {"$exists": True}}),
           # The guard: two requests that both found a userName free cannot both take it (the loser's write is a
           # duplicate key: 409 uniqueness). Only people SCIM still shows hold theirs; a deleted one's may be
           # taken (RFC 7644 3.6), so the filter is ``scim_deleted: false``, which every SCIM write sets.
           # One field: the dev store checks a one-field unique index through the index, and a compound one by
           # reading the whole collection at every write. Descending, so its key pattern differs from
           # people_by_user_name's (MongoDB keeps one index per key pattern and options).
           Index(PEOPLE, [("user_name_key", -1)], name=LIVE_USER_NAME_INDEX, unique=True,
                 partial={"user_name_key": {"$exists": True}, "scim_deleted": False}),
           Index(PEOPLE, [("scim_external_id", 1)], name="people_by_scim_external_id",
                 partial={"scim_external_id": {"$exists": True}})]
# Declared by earlier versions: dropped at start-up (drop_retired_indexes), after the new guard is built.
RETIRED_INDEXES = {PEOPLE: ["people_by_live_user_name"]}  # (user_name_key, scim_deleted): the same guard, compound
HIDDEN = {"outbox": 0, "outbox_pending": 0}
LIVE = {"scim_deleted": {"$ne": True}}
MAX_DEPARTMENTS = 500
# A filter no index serves (``co``, ``ew``, ``pr``, ``ne``, ``gt``..., or ``or``/``not`` around an indexed test)
# is decided by reading the live people; past this many it answers 400 ``tooMany`` (RFC 7644 3.12), so no
# request reads the whole of a big directory. Identity providers send ``userName eq`` or ``externalId eq``.
FILTER_SCAN_LIMIT = 10_000
PREFIX_INDEXES = {"externalId": ("scim_external_id", "people_by_scim_external_id"), "id": ("_id", "_id_")}
MAX_START = 2**31  # past any directory; a bigger skip would not fit the store's 64-bit integers anyway
ATTEMPTS = 3

log = logging.getLogger(__name__)
NEVER = datetime.min.replace(tzinfo=timezone.utc)


def release_duplicate_user_names(db: Database) -> list[str]:
    """Lets the unique index be built on a database written before it existed, where a race may have given two
    live people one userName (creating the index would then fail at every start). Per userName, the person
    written last keeps it (an identity provider's later writes go to the id it kept); the others give up the
    claim: ``user_name_key`` goes, their userName is still shown, a ``userName eq`` finds the holder only, and
    the next write that gives one of them the name back answers 409 ``uniqueness``, for an administrator to
    settle in the identity provider. Reads nothing once the index exists. Returns the ids released."""
    people = db[PEOPLE]
    if LIVE_USER_NAME_INDEX in people.index_information():
        return []
    holders: dict[str, list[dict]] = {}
    for person in people.find({"user_name_key": {"$exists": True}, "scim_deleted": False},
                              {"user_name_key": 1, "updated_at": 1}):
        holders.setdefault(person["user_name_key"], []).append(person)
    released = []
    for key, people_holding in holders.items():
        people_holding.sort(key=lambda person: (person.get("updated_at") or NEVER, person["_id"]))
        for person in people_holding[:-1]:
            people.update_one({"_id": person["_id"], "user_name_key": key}, {"$unset": {"user_name_key": ""}})
            released.append(person["_id"])
        if len(people_holding) > 1:
            log.warning("scim userName held by several live people; the last written keeps it",
                        extra={"user_name": key, "kept": people_holding[-1]["_id"],
                               "released": [person["_id"] for person in people_holding[:-1]]})
    return released


class ScimUsers:
    def __init__(self, directory: Directory, default_org_unit: str = "", clock=utc_now,
                 cache_seconds: float = 5.0, filter_scan_limit: int = FILTER_SCAN_LIMIT):
        self.directory = directory
        self.filter_scan_limit = filter_scan_limit
        # A department named again is the same unit for a few seconds, as the directory's own cache holds.
        self.departments_seen = ExpiringCache(cache_seconds, remember_missing=False)
        self.sync = DirectorySync(directory, clock)
        self.people = directory.db[PEOPLE]
        self.units = directory.db[ORG_UNITS]
        self.default_org_unit = default_org_unit
        self.clock = clock

    # --- reads -----------------------------------------------------------------------------------------------

    def get(self, person_id: str, base_url: str) -> dict:
        return self.render(self._live(person_id), base_url)

    def render(self, doc: dict, base_url: str) -> dict:
        return mapping.to_resource(doc, base_url, self._unit_name)

    def search(self, tree, start: int, count: int, base_url: str) -> tuple[int, list[dict]]:
        """(totalResults, the page): ``start`` 1-based, in id order."""
        if tree is None:
            total = self.people.count_documents(LIVE)
            rows = self.people.find(LIVE, HIDDEN).sort("_id", 1).skip(start - 1).limit(count) if count else []
            return total, [self.render(doc, base_url) for doc in rows]
        found = [r for r in (self.render(doc, base_url) for doc in self._candidates(scim_filter.narrowing(tree)))
                 if scim_filter.matches(tree, r)]
        return len(found), found[start - 1:start - 1 + count]

    def _candidates(self, tests: list) -> list[dict]:
        """The records a filter can match (the filter itself still decides): by index when it tests userName,
        externalId or id for equality, or externalId or id for a prefix; else the live people, at most
        ``filter_scan_limit`` of them."""
        by = {(test.op, test.path.attr): test.value for test in tests}
        if ("eq", "userName") in by:
            rows = self._user_name_records(by["eq", "userName"])
        elif ("eq", "externalId") in by:
            rows = list(self.people.find({"scim_external_id": by["eq", "externalId"]}, HIDDEN))
        elif ("eq", "id") in by:
            rows = list(self.people.find({"_id": by["eq", "id"]}, HIDDEN))
        elif by:  # a prefix: one index range (people_by_scim_external_id, _id)
            (_, attr), prefix = next(iter(by.items()))
            field, index = PREFIX_INDEXES[attr]
            rows = self._bounded(self.people.find({field: _prefix_range(prefix)}, HIDDEN).sort(field, 1).hint(index))
        else:
            rows = self._bounded(self.people.find(LIVE, HIDDEN).sort("_id", 1))
        return sorted((row for row in rows if not row.get("scim_deleted")), key=lambda row: row["_id"])

    def _bounded(self, cursor) -> list[dict]:
        rows = list(cursor.limit(self.filter_scan_limit + 1))
        if len(rows) > self.filter_scan_limit:
            raise ScimError(400, f"this filter would read more than {self.filter_scan_limit} users; filter by "
                                 "userName eq, externalId eq or sw, or id eq or sw", "tooMany")
        return rows

    def departments(self) -> list[str]:
        rows = self.units.find({"retired": {"$ne": True}}, {"name": 1}).sort("_id", 1).limit(MAX_DEPARTMENTS)
        return sorted({row["name"] for row in rows if row.get("name")})

    # --- writes ----------------------------------------------------------------------------------------------

    def create(self, resource: dict) -> tuple[dict, bool]:
        """(the person, whether new): a POST. It finds its person by externalId, else by employeeNumber (the
        HRIS's key), else by userName: one SCIM provisioned who is still here is ``uniqueness``; one who left
        or was deleted is restored; one the HRIS or the seed wrote is taken over."""
        asked = mapping.wanted(resource)
        existing = self._by_key("scim_external_id", asked["external_id"]) \
            or self._by_key("external_id", asked["employee_number"])
        holder = self._user_name_holder(asked["user_name"], other_than=(existing or {}).get("_id"))
        if existing is None and holder is not None and not holder.get("scim_external_id"):
            existing = holder  # nothing else names them: the userName says who comes back
        elif holder is not None and not holder.get("scim_deleted"):
            raise ScimError(409, f"userName {asked['user_name'][:80]!r} is taken", "uniqueness")
        if existing is not None and _live(existing) and "user_name" in existing:
            raise ScimError(409, f"User {existing['_id']!r} has this externalId, employeeNumber or userName: "
                                 "PUT or PATCH it", "uniqueness")
        if existing is not None:
            return self._write(existing, {**asked, "active": True}), False
        person_id = asked["user_name"] if is_id(asked["user_name"]) and not self.people.find_one(
            {"_id": asked["user_name"]}, {"_id": 1}) else new_id("usr")
        return self._write(None, asked, new_id_=person_id, user_name_checked=True), True

    def _by_key(self, field: str, value: str) -> dict | None:
        return self.people.find_one({field: value}, HIDDEN) if value else None

    def replace(self, person_id: str, resource: dict) -> dict:
        return self._write(self._live(person_id), mapping.wanted(resource))

    def patch(self, person_id: str, body: dict, base_url: str) -> dict:
        operations = patch.operations_of(body)
        for _ in range(ATTEMPTS):
            existing = self._live(person_id)
            patched = patch.apply(self.render(existing, base_url), operations)
            if patched.get("id") != person_id:
                raise ScimError(400, "id is read-only", "mutability")
            try:
                return self._write(existing, mapping.wanted(mapping.normalized(patched)), retry=False)
            except _Changed:
                continue
        raise ScimError(409, "the user kept changing underneath; try again")

    def delete(self, person_id: str) -> None:
        existing = self._live(person_id)
        fields = {"employment_status": rules.TERMINATED, "scim_deleted": True,
                  "end_date": existing.get("end_date") or self.clock().date().isoformat()}
        self._sync(existing, _changed(existing, fields), existing.get("external_id") or "", person_id)

    # --- the change ------------------------------------------------------------------------------------------

    def _write(self, existing: dict | None, asked: dict, new_id_: str = "", retry: bool = True,
               user_name_checked: bool = False) -> dict:
        person_id = (existing or {}).get("_id") or new_id_
        external_id = (existing or {}).get("external_id") or ""
        if existing is None:  # the HRIS's key: the employee number when it is one, else the directory id
            external_id = asked["employee_number"] if is_id(asked["employee_number"]) else person_id
        if not user_name_checked and (existing or {}).get("user_name_key") != asked["user_name"].lower():
            holder = self._user_name_holder(asked["user_name"], other_than=person_id)
            if holder is not None and not holder.get("scim_deleted"):
                raise ScimError(409, f"userName {asked['user_name'][:80]!r} is taken", "uniqueness")
        fields = self._fields(existing, asked)
        violations = Violations()
        rules.check_person(violations, "", {"external_id": external_id or person_id, "id": person_id,
                                            "fields": fields})
        if violations:
            raise invalid_value("; ".join(f"{mapping.SCIM_NAMES.get(v.field, v.field)}: {v.description}"
                                          for v in violations.items[:5]))
        for _ in range(ATTEMPTS if retry else 1):
            changed = _changed(existing, fields)
            if not changed:
                return existing
            try:
                return self._sync(existing, changed, external_id, person_id)
            except _Changed:
                existing = self.people.find_one({"_id": person_id}, HIDDEN)
        if retry:
            raise ScimError(409, "the user kept changing underneath; try again")
        raise _Changed()

    def _fields(self, existing: dict | None, asked: dict) -> dict:
        current = existing or {}
        status, end_date = current.get("employment_status") or rules.ACTIVE, current.get("end_date") or ""
        # active=false terminates today; true again reactivates (a rehire: no end date). Otherwise the status
        # and a planned end date are the HRIS's, and stay (on leave is active).
        if not asked["active"] and status != rules.TERMINATED:
            status, end_date = rules.TERMINATED, self.clock().date().isoformat()
        elif asked["active"] and status == rules.TERMINATED:
            status, end_date = rules.ACTIVE, ""
        return {
            "display_name": asked["display_name"], "email": mapping.primary_email(asked["emails"]),
            "title": asked["title"],
            "manager_ref": self._manager_ref(current, asked["manager_ref"]),
            "org_unit_ref": self._unit_ref(current, asked["department"]),
            "time_zone": asked["time_zone"], "locale": asked["locale"], "employment_status": status,
            "start_date": current.get("start_date") or "", "end_date": end_date,
            "user_name": asked["user_name"], "user_name_key": asked["user_name"].lower(),
            "scim_external_id": asked["external_id"], "scim_emails": asked["emails"], "scim_name": asked["scim_name"], "employee_number": asked["employee_number"],
            "department": asked["department"], "scim_deleted": False,
        }

    def _sync(self, existing: dict | None, changed: dict, external_id: str, person_id: str) -> dict:
        # A new person is created or refused, never merged into one a concurrent request just created.
        change = {"kind": "person", "external_id": external_id, "id": person_id, "fields": changed,
                  "effective_at": self._effective(existing), "create_only": existing is None}
        try:
            outcome, record = self.sync.upsert_person(change)
        except Aborted:  # every write was a duplicate key: most likely a userName taken meanwhile
            self._refuse_taken(changed.get("user_name") or "", person_id)
            raise
        if outcome == STALE:  # someone wrote a newer version meanwhile: read it and decide again
            raise _Changed()
        return record if record is not None and "_id" in record else self._live(person_id)

    def _refuse_taken(self, user_name: str, person_id: str) -> None:
        holder = self._user_name_holder(user_name, other_than=person_id) if user_name else None
        if holder is not None and not holder.get("scim_deleted"):
            raise ScimError(409, f"userName {user_name[:80]!r} is taken", "uniqueness")

    def _effective(self, existing: dict | None) -> datetime:
        """Now, or just after the record's newest version when that is not older (the same millisecond)."""
        now = self.clock()
        newest = max((v[0] for v in ((existing or {}).get("versions") or {}).values() if v), default="")
        if newest and datetime.fromisoformat(newest) >= now:
            return datetime.fromisoformat(newest) + timedelta(milliseconds=1)
        return now

    def _manager_ref(self, current: dict, ref: str) -> str:
        if ref and ref in (current.get("manager_ref"), current.get("pending_manager"), current.get("manager_id")):
            return current.get("manager_ref") or ref
        return ref

    def _unit_ref(self, current: dict, department: str) -> str:
        """The org unit a department names (external id, id or name); none named keeps the person's unit,
        a new person goes to SCIM_DEFAULT_ORG_UNIT or the company's root unit."""
        if department == current.get("department") and current.get("org_unit_id"):
            return current["org_unit_id"]  # named as before: the unit it named then
        if not department:
            unit_id = current.get("org_unit_id") or self._default_unit()
            if not unit_id:
                raise invalid_value("department is required: no default org unit is set (SCIM_DEFAULT_ORG_UNIT)")
            return unit_id
        unit = self.departments_seen.get(department, lambda: self._unit_named(department))
        if unit is None:
            raise invalid_value(f"department {department[:80]!r} names no org unit; org units come from the "
                                "HRIS (DirectoryService or hris.events)")
        if unit.get("retired") and unit["_id"] != current.get("org_unit_id"):
            raise invalid_value(f"org unit {unit['_id']!r} is retired")
        return unit["_id"]

    def _unit_named(self, department: str) -> dict | None:
        unit = self.directory.unit_by_ref(department)
        if unit is None:
            named = list(self.units.find({"name": department, "retired": {"$ne": True}}, {"_id": 1}).limit(2))
            if len(named) > 1:
                raise invalid_value(f"department {department[:80]!r} names several org units: use its id")
            unit = named[0] if named else None
        return {"_id": unit["_id"], "retired": bool(unit.get("retired"))} if unit else None

    def _default_unit(self) -> str:
        if self.default_org_unit:
            return self.default_org_unit
        roots = list(self.units.find({"level": "ORG_LEVEL_COMPANY", "retired": {"$ne": True}}, {"_id": 1}).limit(2))
        return roots[0]["_id"] if len(roots) == 1 else ""

    # --- look-ups --------------------------------------------------------------------------------------------

    def _live(self, person_id: str) -> dict:
        # By _id alone: the store answers ``_id`` with another condition by a scan.
        doc = self.people.find_one({"_id": person_id}, HIDDEN) if isinstance(person_id, str) else None
        if doc is None or doc.get("scim_deleted"):
            raise ScimError(404, f"no User {person_id[:80]!r}")
        return doc

    def _user_name_holder(self, user_name: str, other_than: str | None) -> dict | None:
        """Who else holds a userName, preferring one SCIM still shows."""
        holders = [d for d in self._user_name_records(user_name) if d["_id"] != other_than]
        return next((d for d in holders if not d.get("scim_deleted")), holders[0] if holders else None)

    def _user_name_records(self, user_name: str) -> list[dict]:
        """Records whose userName this is (case-insensitively); a record SCIM never named answers to its id.
        Two look-ups by index rather than one ``$or``, which the store would answer by a scan."""
        rows = list(self.people.find({"user_name_key": user_name.lower()}, HIDDEN).limit(5))
        by_id = self.people.find_one({"_id": user_name}, HIDDEN) if is_id(user_name) else None
        return rows + ([by_id] if by_id is not None and "user_name_key" not in by_id else [])

    def _unit_name(self, unit_id: str) -> str:
        unit = self.directory.org_unit(unit_id) if unit_id else None
        return (unit or {}).get("name") or ""


class _Changed(Exception):
    """The record changed between our read and our write."""


def _live(doc: dict) -> bool:
    return doc.get("active", True) is not False and not doc.get("scim_deleted")


def _changed(existing: dict, fields: dict) -> dict:
    if existing is None:
        return fields
    current = {**existing, "manager_ref": existing.get("manager_ref") or existing.get("manager_id") or "",
               "org_unit_ref": existing.get("org_unit_id") or "",
               # Written the first time SCIM takes a record over: the userName guard's index needs it.
               "scim_deleted": existing.get("scim_deleted")}
    return {name: value for name, value in fields.items() if current.get(name, type(value)()) != value}


def _prefix_range(prefix: str) -> dict:
    """The strings starting with ``prefix``, as an index range (U+10FFFF sorts after every character)."""
    return {"$gte": prefix, "$lt": prefix + "\U0010ffff"}


def page_bounds(start, count) -> tuple[int, int]:
    """startIndex (1-based; below 1 is 1, and no further than the store can skip) and count (negative is 0; at
    most MAX_RESULTS), RFC 7644 3.4.2.4."""
    return min(max(1, start), MAX_START), min(max(0, count), MAX_RESULTS)
