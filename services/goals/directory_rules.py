"""Pure rules of directory sync: what a change says, and whether it beats what is stored.

Every field of a person or an org unit is a last-writer-wins register ordered by (effective time, digest of
the change): a change sets the fields it names whose stored version is older. Any set of changes, applied in
any order, any number of times, so ends in the same record - that is what lets late, duplicated and reordered
HRIS feeds converge. The digest breaks ties between different changes dated alike, the same way everywhere.

Confirmations. An import row whose values all equal the stored person's writes nothing (a nightly export of
10,000 people must not rewrite 10,000 records), but skipping the version bump would let a late change dated
between the stored versions and the import win afterwards. So the import records, in one document per part
(``directory_confirmations``), each such row's version and the revision it saw; while the person is still at
that revision their fields count as at least that version (``raised_versions``), and the next write of the
person keeps the raised versions, so they outlive the confirmation (kept CONFIRMATION_DAYS).
"""

import hashlib
import json
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.platform.core.errors import Violations
from services.platform.core.validation import check_id, check_text

ACTIVE, ON_LEAVE, TERMINATED = "ACTIVE", "ON_LEAVE", "TERMINATED"
STATUSES = (ACTIVE, ON_LEAVE, TERMINATED)
LEVELS = ("ORG_LEVEL_COMPANY", "ORG_LEVEL_DEPARTMENT", "ORG_LEVEL_TEAM")

PERSON_FIELDS = ("display_name", "email", "title", "manager_ref", "org_unit_ref", "time_zone", "locale",
                 "employment_status", "start_date", "end_date")
UNIT_FIELDS = ("name", "level", "parent_ref", "leader_ref")

MAX_LOCALE = 35  # BCP 47's longest practical tags
CONFIRMATION_DAYS = 30  # how long an import's confirmation of unchanged rows is kept (see above)


def version_of(effective_at: datetime, fields: dict) -> list[str]:
    """The order key of a change: its effective time (fixed-width ISO, so strings compare as times) and a digest."""
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return [effective_at.isoformat(timespec="milliseconds"), digest]


def newer_fields(stored: dict | None, fields: dict, version: list[str]) -> dict:
    """The fields of a change that beat the stored record's versions of them."""
    versions = (stored or {}).get("versions") or {}
    return {name: value for name, value in fields.items() if list(versions.get(name) or ["", ""]) < version}


def merged_versions(stored: dict | None, names, version: list[str]) -> dict:
    return {**((stored or {}).get("versions") or {}), **{name: version for name in names}}


def raised_versions(versions: dict | None, names, version: list[str]) -> dict:
    """``versions`` with each of ``names`` at least ``version`` (a confirmation's)."""
    raised = dict(versions or {})
    for name in names:
        if list(raised.get(name) or ["", ""]) < list(version):
            raised[name] = list(version)
    return raised


def is_active(status: str) -> bool:
    """Whether someone of this employment status can sign in and act: on leave still can (they come back)."""
    return status != TERMINATED


def check_person(violations: Violations, prefix: str, change: dict) -> None:
    """The rules a person change must meet, whatever path it came by."""
    check_id(violations, f"{prefix}external_id", change["external_id"])
    check_id(violations, f"{prefix}id", change.get("id") or change["external_id"])
    fields = change["fields"]
    check_text(violations, f"{prefix}display_name", fields["display_name"], 200, required=True)
    check_text(violations, f"{prefix}email", fields["email"], 254)
    if fields["email"] and fields["email"].count("@") != 1:
        violations.add(f"{prefix}email", "must be one address with one @")
    check_text(violations, f"{prefix}title", fields["title"], 200)
    check_id(violations, f"{prefix}org_unit_ref", fields["org_unit_ref"])
    check_id(violations, f"{prefix}manager_ref", fields["manager_ref"], required=False)
    if fields["manager_ref"] and fields["manager_ref"] in (change["external_id"], change.get("id")):
        violations.add(f"{prefix}manager_ref", "a person cannot be their own manager")
    check_time_zone(violations, f"{prefix}time_zone", fields["time_zone"])
    check_text(violations, f"{prefix}locale", fields["locale"], MAX_LOCALE)
    if fields["employment_status"] not in STATUSES:
        violations.add(f"{prefix}employment_status", f"must be one of {', '.join(STATUSES)}")
    if fields["start_date"] and fields["end_date"] and fields["end_date"] < fields["start_date"]:
        violations.add(f"{prefix}end_date", "is before start_date")


def check_unit(violations: Violations, prefix: str, change: dict) -> None:
    check_id(violations, f"{prefix}external_id", change["external_id"])
    check_id(violations, f"{prefix}id", change.get("id") or change["external_id"])
    fields = change["fields"]
    check_text(violations, f"{prefix}name", fields["name"], 200, required=True)
    if fields["level"] not in LEVELS:
        violations.add(f"{prefix}level", "must be company, department or team")
    check_id(violations, f"{prefix}parent_ref", fields["parent_ref"], required=fields["level"] != LEVELS[0])
    check_id(violations, f"{prefix}leader_ref", fields["leader_ref"], required=False)


def check_time_zone(violations: Violations, field: str, name: str) -> None:
    if not name:
        return
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        violations.add(field, f"{name[:64]!r} is not an IANA time zone")


def iso_date(value: date | None) -> str:
    return value.isoformat() if value else ""


def manager_cycle(person_keys: set[str], manager_ref: str, next_ref, limit: int = 200) -> bool:
    """Whether naming ``manager_ref`` as the manager of the person known by ``person_keys`` (id, external id)
    closes a loop; ``next_ref(ref)`` is the manager reference of the person a reference names, or ""."""
    seen: set[str] = set()
    ref = manager_ref
    while ref and len(seen) < limit:
        if ref in person_keys:
            return True
        if ref in seen:
            return False  # a loop above, not through this person: not this change's doing
        seen.add(ref)
        ref = next_ref(ref)
    return False
