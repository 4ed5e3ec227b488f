"""ImportDirectory's reads and writes in bulk (directory_import.py decides what they are).

- ``BatchView``: the stored people and org units a batch can touch, read in a few queries before the batch is
  checked, then kept up to date as its rows are applied, so the check, the diff and the apply resolve every
  reference, cycle and difference in memory. A reference it did not read (a manager chain leaving what was
  read) is read then, and kept.
- ``PeopleWrites``: the people an apply creates or changes, each with its ``person_upserted`` event, written in
  one ``insert_many`` and one ``bulk_write`` of updates guarded by the revision read, as a row would be alone.
  Whatever a guard refuses (someone wrote the person meanwhile, or holds the id) is handed back, to go through
  directory_sync one change at a time: correctness never rests on the bulk path.

How the view reads: by ``$in`` on external id and on ``_id`` in chunks (store/mongo.py's ``find_in``), walking up
the manager (parent) references of what it found. A batch whose keys are a good share of the collection
(SCAN_SHARE) reads the whole collection once instead: on MongoDB that is the cheaper plan at that share, and on
the mongoeco wire server every ``$in`` chunk (and every miss of a ``find_one``) costs a scan of the collection
anyway (bench/README.md, "directory_import").
"""

from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from services.platform.bus.outbox import new_document_with_events, with_events
from services.platform.core.errors import AlreadyExists
from services.platform.store.mongo import find_in

from .directory import MAX_CHAIN, ORG_UNITS, PEOPLE, Directory, person_changed_event

SCAN_SHARE = 0.05
HIDDEN = ("outbox", "outbox_pending")
DUPLICATE_KEY = 11000


class RecordView:
    """The records of one collection an import reads, by external id and by ``_id``."""

    def __init__(self, collection: Collection, pending_field: str, resolved_field: str):
        self.collection = collection
        self.pending_field, self.resolved_field = pending_field, resolved_field
        self.by_external: dict[str, dict] = {}
        self.by_id: dict[str, dict] = {}
        self.asked: set[str] = set()  # references looked up both ways (found or not)
        self.complete = False  # the whole collection was read
        self.count: int | None = None

    def load(self, refs) -> None:
        """Reads the records these references name, and the records up their chains."""
        wanted = {ref for ref in refs if ref} - self.asked
        for _ in range(MAX_CHAIN):
            if not wanted or self.complete:
                return
            if self.count is None:
                self.count = self.collection.estimated_document_count()
            if len(wanted) >= SCAN_SHARE * max(1, self.count):
                self._add(self.collection.find({}))  # no projection: mongoeco projects slower than it sends
                self.complete = True
                return
            found = (find_in(self.collection, "external_id", wanted, projection=dict.fromkeys(HIDDEN, 0))
                     + find_in(self.collection, "_id", wanted, projection=dict.fromkeys(HIDDEN, 0)))
            self._add(found)
            self.asked |= wanted
            wanted = {self.next_ref(record) for record in found} - self.asked - {""}

    def refresh(self, refs) -> None:
        """Reads these references again (a change written around the view)."""
        refs = [ref for ref in refs if ref]
        for ref in refs:
            for index in (self.by_external, self.by_id):
                record = index.pop(ref, None)
                if record is not None:
                    self.by_id.pop(record["_id"], None)
                    self.by_external.pop(record.get("external_id") or "", None)
        self.asked -= set(refs)
        found = (find_in(self.collection, "external_id", refs, projection=dict.fromkeys(HIDDEN, 0))
                 + find_in(self.collection, "_id", refs, projection=dict.fromkeys(HIDDEN, 0)))
        self._add(found)
        self.asked |= set(refs)

    def by_ref(self, ref: str) -> dict | None:
        """The record a reference names: by external id first, then by directory id (Directory.person_by_ref)."""
        if not ref:
            return None
        if not self.complete and ref not in self.asked:
            self.load([ref])
        return self.by_external.get(ref) or self.by_id.get(ref)

    def record_for(self, change: dict) -> dict | None:
        """The record a change is about, as DirectorySync._record_for finds it."""
        record_id = change.get("id") or change["external_id"]
        if not self.complete:
            self.load([change["external_id"], record_id])
        if change["external_id"] and change["external_id"] in self.by_external:
            return self.by_external[change["external_id"]]
        found = self.by_id.get(record_id)
        if found is not None and found.get("external_id") not in (None, "", change["external_id"]):
            raise AlreadyExists(f"{self.collection.name} id {record_id!r} belongs to HRIS record "
                                f"{found['external_id']!r}")
        return found

    def next_ref(self, record: dict) -> str:
        return record.get(self.pending_field) or record.get(self.resolved_field) or ""

    def put(self, record: dict) -> None:
        self.by_id[record["_id"]] = record
        if record.get("external_id"):
            self.by_external[record["external_id"]] = record

    def records(self):
        return self.by_id.values()

    def _add(self, records) -> None:
        for record in records:
            for name in HIDDEN:
                record.pop(name, None)
            self.put(record)


class BatchView:
    """People and org units for one import; answers ``person_by_ref`` / ``unit_by_ref`` as Directory does, so
    DirectorySync's rules run against it."""

    def __init__(self, directory: Directory):
        self.directory = directory
        self.people = RecordView(directory.db[PEOPLE], "pending_manager", "manager_id")
        self.units = RecordView(directory.db[ORG_UNITS], "pending_parent", "parent_id")

    def person_by_ref(self, ref: str) -> dict | None:
        return self.people.by_ref(ref)

    def unit_by_ref(self, ref: str) -> dict | None:
        return self.units.by_ref(ref)

    def reload_units(self) -> None:
        """After the batch's org units were written one by one."""
        asked = set(self.units.asked) | set(self.units.by_external) | set(self.units.by_id)
        self.units = RecordView(self.directory.db[ORG_UNITS], "pending_parent", "parent_id")
        self.units.load(asked)

    def raise_confirmed(self, entries: list[dict]) -> None:
        """Counts the import confirmations of these people (directory_rules.py, "Confirmations") in their versions,
        as DirectorySync._confirmed does for one person."""
        from . import directory_rules as rules

        best: dict[tuple, list] = {}
        for entry in entries:
            key = (entry["e"], entry["r"])
            best[key] = max(best.get(key, ["", ""]), [entry["at"], entry["d"]])
        for (external_id, revision), version in best.items():
            person = self.people.by_external.get(external_id)
            if person is not None and person.get("revision") == revision:
                person["versions"] = rules.raised_versions(person.get("versions"), rules.PERSON_FIELDS, version)


class PeopleWrites:
    """Created and changed people of one apply, written together."""

    def __init__(self, directory: Directory):
        self.directory = directory
        self.staged: dict[str, dict] = {}  # by _id, in the order first staged (managers first)

    def __len__(self) -> int:
        return len(self.staged)

    def stage(self, change: dict | None, existing: dict | None, document: dict) -> None:
        """``change``: the row (None for a resolution, which is not retried when it loses). A record staged again
        keeps its first guard and gains the second event, as two writes in a row would."""
        staged = self.staged.get(document["_id"])
        if staged is None:
            self.staged[document["_id"]] = {"change": change, "existing": existing, "document": document,
                                            "events": [person_changed_event(document, existing)]}
            return
        staged["events"].append(person_changed_event(document, staged["document"]))
        staged["document"] = document
        staged["change"] = staged["change"] or change

    def flush(self) -> tuple[list[dict], list[dict]]:
        """Writes what was staged; returns the documents written and the changes whose write lost."""
        staged, self.staged = list(self.staged.values()), {}
        lost = self._insert([item for item in staged if item["existing"] is None])
        lost += self._update([item for item in staged if item["existing"] is not None])
        if staged:
            self.directory.cache.clear()
        lost_ids = {id(item) for item in lost}
        written = [item["document"] for item in staged if id(item) not in lost_ids]
        return written, [item["change"] for item in lost if item["change"] is not None]

    def _insert(self, items: list[dict]) -> list[dict]:
        """In order (a manager before their reports, even if the process dies half way); a duplicate key loses
        that row alone and the rest are sent again."""
        lost: list[dict] = []
        people = self.directory.db[PEOPLE]
        while items:
            try:
                people.insert_many([new_document_with_events(item["document"], item["events"]) for item in items],
                                   ordered=True)
                break
            except BulkWriteError as error:
                (first, *_) = error.details["writeErrors"]
                if first.get("code") != DUPLICATE_KEY:
                    raise
                lost.append(items[first["index"]])
                items = items[first["index"] + 1:]
        return lost

    def _update(self, items: list[dict]) -> list[dict]:
        if not items:
            return []
        people = self.directory.db[PEOPLE]
        requests = [UpdateOne({"_id": item["document"]["_id"], "revision": item["existing"].get("revision")},
                              with_events({"$set": {k: v for k, v in item["document"].items() if k != "_id"}},
                                          item["events"]))
                    for item in items]
        try:
            modified = people.bulk_write(requests, ordered=False).modified_count
        except BulkWriteError as error:  # a duplicate key (an email or an id someone else took): that one lost
            if any(failure.get("code") != DUPLICATE_KEY for failure in error.details["writeErrors"]):
                raise
            modified = error.details["nModified"]
        if modified == len(items):
            return []
        # Some guard lost: the ones whose stored versions are not the ones written are retried alone.
        stored = {record["_id"]: record for record in find_in(
            people, "_id", [item["document"]["_id"] for item in items], projection={"versions": 1, "revision": 1})}
        return [item for item in items
                if (stored.get(item["document"]["_id"]) or {}).get("versions") != item["document"]["versions"]
                or stored[item["document"]["_id"]].get("revision") != item["document"]["revision"]]
