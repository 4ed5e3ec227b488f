"""ImportDirectory: a batch of org units and people, checked whole before anything is written.

Every row is checked against the batch and the directory together (a manager or a unit may be named by a row
further down): unknown references, duplicate ids and emails, manager and unit cycles and malformed rows refuse
the batch, each with its row and reason, and nothing is written. Otherwise the diff says what applying does;
a dry run stops there. An import is idempotent: running it again changes nothing, and writes nothing.

The check, the diff and the apply read the directory once, in bulk (directory_batch.py's BatchView), and
resolve references, cycles and differences in memory, the batch's rows counting over the stored ones. Org
units (few) are applied row by row through DirectorySync, parents first. People are decided managers first
with DirectorySync's own rules against the view (a row sees the rows before it), then written together: the
new ones in one ordered ``insert_many``, the changed ones in one ``bulk_write`` guarded by the revision read,
each document with its ``person_upserted`` event. A row whose write lost (someone wrote the person meanwhile)
or that the view cannot decide goes through DirectorySync alone. A row equal to the stored person is not
written; the part's one confirmation document keeps its version instead (directory_rules.py,
"Confirmations"). A crash half way leaves whole rows (managers before their reports); running it again
completes it.
"""

from dataclasses import dataclass, field
from datetime import timedelta

from services.platform.core.clock import utc_now
from services.platform.core.errors import AlreadyExists, FailedPrecondition, NotFound

from . import directory_rules as rules
from .directory import PEOPLE
from .directory_batch import BatchView, PeopleWrites, Sizes
from .directory_sync import FUTURE_SKEW, DirectorySync, by_refs, manager_ref_of, parent_ref_of

MASS_DEACTIVATION_SHARE = 0.10
# Old confirmations are pruned by an import at most this often per process: a file sent in parts is many
# imports a minute, and each prune is a read (an import makes about one confirmation per 500 unchanged rows).
PRUNE_EVERY = timedelta(minutes=10)


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
        self.pruned_at = None
        self.sizes = Sizes()  # shared by this process's imports: a file's parts count the directory once

    def run(self, units: list[dict], people: list[dict], dry_run: bool, allow_mass_deactivation: bool,
            refused: list[dict], caller_id: str = "") -> Diff:
        """``refused``: rows the caller already found malformed (kind, index, external_id, reason); a row that
        would terminate ``caller_id`` is refused too (a slip of a file must not lock HR out)."""
        diff = Diff(refused=list(refused))
        batch = _Batch(units, people)
        view = self._view(batch)
        self._check_caller(batch, view, caller_id, diff)
        self._check_references(batch, view, diff)
        self._describe(batch, view, diff)
        if diff.refused:
            return diff
        self._guard_mass_deactivation(diff, allow_mass_deactivation)  # a dry run says so too
        if dry_run:
            return diff
        if batch.units:
            for change in batch.units_parents_first():
                self.sync.upsert_org_unit(change)
            view.reload_units()
        self._apply_people(batch, view)
        self._prune()
        diff.applied = True
        return diff

    def _prune(self) -> None:
        now = utc_now()
        if self.pruned_at is None or now - self.pruned_at >= PRUNE_EVERY:
            self.pruned_at = now
            self.directory.prune_confirmations(now - timedelta(days=rules.CONFIRMATION_DAYS))

    def _view(self, batch: "_Batch") -> BatchView:
        """The stored records the batch names, its rows and the references they make, in a few reads."""
        view = BatchView(self.directory, self.sizes)
        unit_refs = {change["fields"]["parent_ref"] for change in batch.units}
        unit_refs |= {change["fields"]["org_unit_ref"] for change in batch.people}
        view.units.load(unit_refs, batch.units)
        view.people.load({change["fields"]["manager_ref"] for change in batch.people}, batch.people)
        if batch.people:
            oldest = min(rules.version_of(change["effective_at"], {})[0] for change in batch.people)
            view.raise_confirmed(self.directory.confirmations_since(
                oldest, [change["external_id"] for change in batch.people]))
        return view

    @staticmethod
    def _check_caller(batch: "_Batch", view: BatchView, caller_id: str, diff: Diff) -> None:
        for index, change in enumerate(batch.people):
            if caller_id and change["fields"].get("employment_status") == rules.TERMINATED:
                person = view.person_by_ref(change["external_id"]) \
                    or view.person_by_ref(change.get("id") or change["external_id"])
                if person is not None and person["_id"] == caller_id:
                    diff.refused.append(_refusal("person", index, change["external_id"],
                                                 "you cannot terminate yourself"))

    def _check_references(self, batch: "_Batch", view: BatchView, diff: Diff) -> None:
        for kind, index, external_id, reason in batch.duplicates():
            diff.refused.append(_refusal(kind, index, external_id, reason))
        # A parent neither in the batch nor in the directory is kept pending, as UpsertOrgUnit keeps it (an HRIS
        # often sends a team before its department); only a loop, pending references counted, is refused.
        for index, change in enumerate(batch.units):
            parent = change["fields"]["parent_ref"]
            if rules.manager_cycle(batch.keys_of(change), parent, lambda ref: self._parent_ref(batch, view, ref)):
                diff.refused.append(_refusal("org_unit", index, change["external_id"], "org unit cycle"))
        for index, change in enumerate(batch.people):
            self._check_person(batch, view, index, change, diff)

    def _check_person(self, batch: "_Batch", view: BatchView, index: int, change: dict, diff: Diff) -> None:
        fields = change["fields"]
        unit, manager = fields["org_unit_ref"], fields["manager_ref"]
        if unit not in batch.unit_keys and view.unit_by_ref(unit) is None:
            diff.refused.append(_refusal("person", index, change["external_id"], f"unknown org unit {unit!r}"))
        if manager and manager not in batch.person_keys and view.person_by_ref(manager) is None:
            diff.refused.append(_refusal("person", index, change["external_id"], f"unknown manager {manager!r}"))
        elif rules.manager_cycle(batch.keys_of(change), manager, lambda ref: self._manager_ref(batch, view, ref)):
            diff.refused.append(_refusal("person", index, change["external_id"], "manager cycle"))

    @staticmethod
    def _manager_ref(batch: "_Batch", view: BatchView, ref: str) -> str:
        row = batch.person_rows.get(ref)
        return row["fields"]["manager_ref"] if row else manager_ref_of(view, ref)

    @staticmethod
    def _parent_ref(batch: "_Batch", view: BatchView, ref: str) -> str:
        row = batch.unit_rows.get(ref)
        return row["fields"]["parent_ref"] if row else parent_ref_of(view, ref)

    def _describe(self, batch: "_Batch", view: BatchView, diff: Diff) -> None:
        for index, change in enumerate(batch.units):
            stored = view.unit_by_ref(change["external_id"])
            self._classify(diff, "org_unit", index, change, stored, ("parent_ref", "parent_id"))
        for index, change in enumerate(batch.people):
            stored = view.person_by_ref(change["external_id"])
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
        if allowed or not diff.deactivated:  # nothing to count (a count is a scan on mongoeco)
            return
        active = self.directory.db[PEOPLE].count_documents({"active": True})
        if len(diff.deactivated) > MASS_DEACTIVATION_SHARE * active:
            raise FailedPrecondition(
                f"this import would deactivate {len(diff.deactivated)} of {active} active people (more than "
                f"{MASS_DEACTIVATION_SHARE:.0%}); check the file, or allow mass deactivation")

    # --- applying people -----------------------------------------------------------------------------------

    def _apply_people(self, batch: "_Batch", view: BatchView) -> None:
        writes, confirmed = PeopleWrites(self.directory), []
        due_by = self.sync.clock() + FUTURE_SKEW
        for change in batch.people_managers_first():
            if change["effective_at"] > due_by:
                self.sync.upsert_person(change)  # kept for its date
                continue
            try:
                self._stage_person(change, view, writes, confirmed)
            except (AlreadyExists, FailedPrecondition, NotFound):
                # What the view cannot decide (an id another employee holds; a unit or manager changed since the
                # check) DirectorySync decides on the store as it is, after what was staged so far is written,
                # and raises what it raises, as applying row by row would.
                self._write(writes, confirmed, view)
                confirmed = []
                self.sync.upsert_person(change)
                view.people.refresh([change["external_id"], change.get("id") or ""])
        self._write(writes, confirmed, view)

    def _stage_person(self, change: dict, view: BatchView, writes: PeopleWrites, confirmed: list[dict]) -> None:
        """DirectorySync._apply_person's decision for one row, against the view."""
        existing = view.people.record_for(change)
        version = rules.version_of(change["effective_at"], {"person": change["external_id"] or change["id"],
                                                            **change["fields"]})
        newer = rules.newer_fields(existing, change["fields"], version)
        if existing is not None and not newer:
            return  # unchanged or stale: every field's stored version is newer
        document = self.sync._person_document(change, existing, newer, version, store=view)
        if existing is not None and _same(existing, document):
            confirmed.append({"e": document["external_id"], "at": version[0], "d": version[1],
                              "r": existing.get("revision")})
            return
        writes.stage(change, existing, document)
        view.people.put(document)

    def _write(self, writes: PeopleWrites, confirmed: list[dict], view: BatchView) -> None:
        """Writes what was staged, then what follows from it: people and units that named the new ones as their
        manager or leader before they arrived, and changes that waited for them; rows whose write lost go
        through DirectorySync."""
        created = {item["document"]["_id"] for item in writes.staged.values() if item["existing"] is None}
        # Only a new person, or one who gains the HRIS's id (a record the seed wrote), can be what a pending
        # reference names: anyone else was found when the reference was made. So a re-import that changes
        # people reads no pending references.
        named = created | {item["document"]["_id"] for item in writes.staged.values() if item["existing"] is not None
                           and item["existing"].get("external_id") != item["document"].get("external_id")}
        written, lost = writes.flush()
        self.sizes.grew(PEOPLE, len(created))
        for change in lost:
            self.sync.upsert_person(change)
        arrived_by_ref = by_refs([document for document in written if document["_id"] in named])
        self._resolve_reports(arrived_by_ref, view)
        self._resolve_leaders(arrived_by_ref, view)
        arrived = [document for document in written if document["_id"] in created]
        waiting = {kept["waits_for"] for kept in self.directory.waiting_on_any(
            [document.get("external_id") or "" for document in arrived])}
        for document in arrived:
            if document.get("external_id") in waiting:
                self.sync._apply_waiting(document)
        if confirmed:
            self.directory.confirm(confirmed, utc_now())

    def _resolve_reports(self, arrived: dict[str, dict], view: BatchView) -> None:
        """DirectorySync's resolution of reports for every person who arrived (``by_refs``), in one read and one
        bulk write (a resolution that loses to a concurrent write is left to that writer, as there)."""
        if not arrived:
            return
        resolutions = PeopleWrites(self.directory)
        for record, manager in self.sync.waiting_reports(arrived):
            document = {**record, "manager_id": manager["_id"], "pending_manager": None,
                        "revision": record["revision"] + 1, "updated_at": utc_now()}
            resolutions.stage(None, record, document)
            view.people.put(document)
        resolutions.flush()

    def _resolve_leaders(self, arrived: dict[str, dict], view: BatchView) -> None:
        """DirectorySync's leader resolution for every person who arrived, the units it writes kept in the view."""
        if not arrived:
            return
        for unit in self.sync.resolve_leaders(arrived):
            view.units.put(unit)


def _same(stored: dict, document: dict) -> bool:
    """Whether writing ``document`` would change nothing a reader sees (only its revision and versions)."""
    return all(stored.get(name) == value for name, value in document.items()
               if name not in ("revision", "updated_at", "versions"))


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
