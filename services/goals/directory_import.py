"""ImportDirectory: a batch of org units and people, checked whole before anything is written.

Every row is checked against the batch and the directory together (a manager or a unit may be named by a row
further down): unknown references, duplicate ids and emails, manager and unit cycles and malformed rows refuse
the batch, each with its row and reason, and nothing is written. Otherwise the diff says what applying does;
a dry run stops there. Applying goes through DirectorySync row by row (units parents first, people managers
first), so an import is idempotent: running it again changes nothing. A crash half way leaves the rows
written so far, each whole; running it again completes it.
"""

from dataclasses import dataclass, field

from services.platform.core.errors import FailedPrecondition

from . import directory_rules as rules
from .directory import PEOPLE
from .directory_sync import CREATED, DirectorySync

MASS_DEACTIVATION_SHARE = 0.10


@dataclass
class Diff:
    created: list[dict] = field(default_factory=list)
    changed: list[dict] = field(default_factory=list)
    deactivated: list[dict] = field(default_factory=list)
    moved: list[dict] = field(default_factory=list)
    unchanged: int = 0
    refused: list[dict] = field(default_factory=list)
    applied: bool = False


class DirectoryImport:
    def __init__(self, sync: DirectorySync):
        self.sync = sync
        self.directory = sync.directory

    def run(self, units: list[dict], people: list[dict], dry_run: bool, allow_mass_deactivation: bool,
            refused: list[dict]) -> Diff:
        """``refused``: rows the caller already found malformed (kind, index, external_id, reason)."""
        diff = Diff(refused=list(refused))
        batch = _Batch(units, people)
        self._check_references(batch, diff)
        self._describe(batch, diff)
        if diff.refused:
            return diff
        self._guard_mass_deactivation(diff, allow_mass_deactivation)  # a dry run says so too
        if dry_run:
            return diff
        for change in batch.units_parents_first():
            self.sync.upsert_org_unit(change)
        for change in batch.people_managers_first():
            self.sync.upsert_person(change)
        diff.applied = True
        return diff

    def _check_references(self, batch: "_Batch", diff: Diff) -> None:
        for kind, index, external_id, reason in batch.duplicates():
            diff.refused.append(_refusal(kind, index, external_id, reason))
        for index, change in enumerate(batch.units):
            parent = change["fields"]["parent_ref"]
            if parent and parent not in batch.unit_keys and self.directory.unit_by_ref(parent) is None:
                diff.refused.append(_refusal("org_unit", index, change["external_id"], f"unknown parent {parent!r}"))
            elif rules.manager_cycle(batch.keys_of(change), parent, lambda ref: self._parent_ref(batch, ref)):
                diff.refused.append(_refusal("org_unit", index, change["external_id"], "org unit cycle"))
        for index, change in enumerate(batch.people):
            self._check_person(batch, index, change, diff)

    def _check_person(self, batch: "_Batch", index: int, change: dict, diff: Diff) -> None:
        fields = change["fields"]
        unit, manager = fields["org_unit_ref"], fields["manager_ref"]
        if unit not in batch.unit_keys and self.directory.unit_by_ref(unit) is None:
            diff.refused.append(_refusal("person", index, change["external_id"], f"unknown org unit {unit!r}"))
        if manager and manager not in batch.person_keys and self.directory.person_by_ref(manager) is None:
            diff.refused.append(_refusal("person", index, change["external_id"], f"unknown manager {manager!r}"))
        elif rules.manager_cycle(batch.keys_of(change), manager, lambda ref: self._manager_ref(batch, ref)):
            diff.refused.append(_refusal("person", index, change["external_id"], "manager cycle"))

    def _manager_ref(self, batch: "_Batch", ref: str) -> str:
        row = batch.person_rows.get(ref)
        return row["fields"]["manager_ref"] if row else self.sync._manager_ref_of(ref)

    def _parent_ref(self, batch: "_Batch", ref: str) -> str:
        row = batch.unit_rows.get(ref)
        return row["fields"]["parent_ref"] if row else self.sync._parent_ref_of(ref)

    def _describe(self, batch: "_Batch", diff: Diff) -> None:
        for index, change in enumerate(batch.units):
            stored = self.directory.unit_by_ref(change["external_id"])
            self._classify(diff, "org_unit", index, change, stored, ("parent_ref", "parent_id"))
        for index, change in enumerate(batch.people):
            stored = self.directory.person_by_ref(change["external_id"])
            self._classify(diff, "person", index, change, stored, ("org_unit_ref", "org_unit_id"),
                           ("manager_ref", "manager_id"))

    def _classify(self, diff: Diff, kind: str, index: int, change: dict, stored: dict | None, *places) -> None:
        row = {"kind": kind, "index": index, "external_id": change["external_id"],
               "id": (stored or {}).get("_id") or change.get("id") or change["external_id"], "detail": ""}
        if stored is None:
            diff.created.append(row)
            return
        version = rules.version_of(change["effective_at"], {})
        newer = rules.newer_fields(stored, change["fields"], version)
        differing = {name: value for name, value in newer.items() if stored.get(name) != value}
        if not differing:
            diff.unchanged += 1
            return
        if differing.get("employment_status") == rules.TERMINATED and stored.get("active", True):
            diff.deactivated.append(row)
        moves = [f"{ref} {stored.get(ref) or stored.get(resolved) or '-'} -> {differing[ref] or '-'}"
                 for ref, resolved in places if ref in differing and differing[ref] != stored.get(resolved)]
        if moves:
            diff.moved.append({**row, "detail": "; ".join(moves)})
        if set(differing) - {"employment_status", "end_date"} - {ref for ref, _ in places}:
            diff.changed.append(row)

    def _guard_mass_deactivation(self, diff: Diff, allowed: bool) -> None:
        active = self.directory.db[PEOPLE].count_documents({"active": True})
        if not allowed and len(diff.deactivated) > MASS_DEACTIVATION_SHARE * active:
            raise FailedPrecondition(
                f"this import would deactivate {len(diff.deactivated)} of {active} active people (more than "
                f"{MASS_DEACTIVATION_SHARE:.0%}); check the file, or allow mass deactivation")


class _Batch:
    """The rows of one import, by every key they can be referred to by."""

    def __init__(self, units: list[dict], people: list[dict]):
        self.units, self.people = units, people
        self.unit_rows = {key: row for row in units for key in self.keys_of(row)}
        self.person_rows = {key: row for row in people for key in self.keys_of(row)}
        self.unit_keys, self.person_keys = set(self.unit_rows), set(self.person_rows)

    @staticmethod
    def keys_of(change: dict) -> set[str]:
        return {change["external_id"], change.get("id") or change["external_id"]}

    def duplicates(self):
        for kind, rows, what in (("org_unit", self.units, ("external_id", "id")),
                                 ("person", self.people, ("external_id", "id", "email"))):
            seen: dict = {}
            for index, row in enumerate(rows):
                for name in what:
                    value = row["fields"].get(name) if name == "email" else (row.get(name) or row["external_id"])
                    if value and (name, value.lower()) in seen:
                        yield kind, index, row["external_id"], f"duplicate {name} {value!r} (row {seen[(name, value.lower())]})"
                    seen.setdefault((name, value.lower() if value else value), index)

    def units_parents_first(self) -> list[dict]:
        return sorted(self.units, key=lambda row: self._depth(row, self.unit_rows, "parent_ref"))

    def people_managers_first(self) -> list[dict]:
        return sorted(self.people, key=lambda row: self._depth(row, self.person_rows, "manager_ref"))

    @staticmethod
    def _depth(row: dict, rows: dict, ref_field: str) -> int:
        depth, ref = 0, row["fields"][ref_field]
        while ref in rows and depth < len(rows):  # the batch has no cycles by now; the bound is a guard
            depth, ref = depth + 1, rows[ref]["fields"][ref_field]
        return depth


def _refusal(kind: str, index: int, external_id: str, reason: str) -> dict:
    return {"kind": kind, "index": index, "external_id": external_id, "reason": reason}
