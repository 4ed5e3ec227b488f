"""ImportDirectory's reads and writes in bulk (directory_import.py decides what they are).

- ``BatchView``: the stored people and org units a batch can touch, read in a few queries before the batch is
  checked, then kept up to date as its rows are applied, so the check, the diff and the apply resolve every
  reference, cycle and difference in memory. A reference it did not read (a manager chain leaving what was
  read) is read then, and kept.
- ``PeopleWrites``: the people an apply creates or changes, each with its ``person_upserted`` event, written in
  one ``insert_many`` and one ``bulk_write`` of updates guarded by the revision read, as a row would be alone.
  Whatever a guard refuses (someone wrote the person meanwhile, or holds the id) is handed back, to go through
  directory_sync one change at a time: correctness never rests on the bulk path.

How the view reads, by external id and by ``_id``, then up the manager (parent) references of what it found:
keys that run in order (E000100 ... E000599: an export sorted by employee id, sent in parts, is a couple of
runs per part, its rows and their managers) as one index range each, whatever the size of the directory; keys
that are a good share of the collection (WHOLE_SHARE, or SCAN_SHARE when they do not run) by reading the whole
collection once (and a SMALL one, such as the org units, always); a few scattered keys by ``$in`` in chunks (store/mongo.py's ``find_in``). The shares are
MongoDB's sensible plans too, and on the mongoeco wire server every ``$in`` chunk (and every ``find_one`` that
finds nothing) costs a scan of the collection (bench/README.md, "directory_import").
"""

import re
import time

from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from services.platform.bus.outbox import new_document_with_events, with_events
from services.platform.core.errors import AlreadyExists
from services.platform.store.mongo import find_in

from .directory import MAX_CHAIN, ORG_UNITS, PEOPLE, Directory, person_changed_event

SCAN_SHARE = 0.05  # keys of at least this share of the collection: read it whole rather than by $in
WHOLE_SHARE = 0.25  # ... and rather than by ranges (mongoeco sends a record of a range ~4x slower than of a scan)
RANGE_READS = 12  # index ranges per lookup at most; keys spread wider are read by $in (or the whole collection)
RANGE_GAP = 32
SIZE_SECONDS = 60.0
SMALL = 1000  # a collection of at most this many records (org units, mostly) is read whole: one command
HIDDEN = ("outbox", "outbox_pending")
DUPLICATE_KEY = 11000


class RecordView:
    """The records of one collection an import reads, by external id and by ``_id``."""

    def __init__(self, collection: Collection, pending_field: str, resolved_field: str, sizes: "Sizes"):
        self.collection = collection
        self.sizes = sizes
        self.pending_field, self.resolved_field = pending_field, resolved_field
        self.by_external: dict[str, dict] = {}
        self.by_id: dict[str, dict] = {}
        self.asked = {"external_id": set(), "_id": set()}  # keys looked up by each field (found or not)
        self.complete = False  # the whole collection was read
        self.count: int | None = None

    def load(self, refs=(), rows=()) -> None:
        """Reads the records these references name (by external id, else by id, as ``by_ref`` answers) and
        these rows are about (``record_for``), then the records up their chains."""
        refs = {ref for ref in refs if ref}
        for _ in range(MAX_CHAIN):
            if self.complete or not (refs or rows):
                return
            found = self._read("external_id", refs | {row["external_id"] for row in rows})
            ids = {ref for ref in refs if ref not in self.by_external}
            ids |= {key for row in rows if row["external_id"] not in self.by_external
                    for key in (row.get("id") or row["external_id"], row["external_id"])}
            found += self._read("_id", ids)
            refs, rows = {self.next_ref(record) for record in found} - {""}, ()

    def _read(self, field: str, keys) -> list[dict]:
        asked = self.asked[field]
        keys = sorted({key for key in keys if key} - asked)
        if not keys or self.complete:
            return []
        if self.count is None:
            self.count = self.sizes.of(self.collection)
        runs, whole = key_runs(keys), WHOLE_SHARE * self.count
        if self.count > SMALL and len(keys) < whole and len(runs) <= RANGE_READS and span(runs) < whole:
            found = read_ranges(self.collection, field, keys, runs)
        elif self.count <= SMALL or len(keys) >= SCAN_SHARE * self.count:
            everything = list(self.collection.find({}))  # no projection: mongoeco projects slower than it sends
            self._add(everything)
            self.complete = True
            return everything
        else:
            found = find_in(self.collection, field, keys, projection=dict.fromkeys(HIDDEN, 0))
        asked.update(keys)
        self._add(found)
        return found

    def refresh(self, refs) -> None:
        """Reads these references again (a change written around the view)."""
        refs = {ref for ref in refs if ref}
        for ref in refs:
            for index in (self.by_external, self.by_id):
                record = index.pop(ref, None)
                if record is not None:
                    self.by_id.pop(record["_id"], None)
                    self.by_external.pop(record.get("external_id") or "", None)
        for asked in self.asked.values():
            asked -= refs
        self._add(find_in(self.collection, "external_id", refs, projection=dict.fromkeys(HIDDEN, 0))
                  + find_in(self.collection, "_id", refs, projection=dict.fromkeys(HIDDEN, 0)))

    def by_ref(self, ref: str) -> dict | None:
        """The record a reference names: by external id first, then by directory id (Directory.person_by_ref)."""
        if not ref:
            return None
        if not self.complete and (ref not in self.asked["external_id"]
                                  or (ref not in self.by_external and ref not in self.asked["_id"])):
            self.load([ref])
        return self.by_external.get(ref) or self.by_id.get(ref)

    def record_for(self, change: dict) -> dict | None:
        """The record a change is about, as DirectorySync._record_for finds it."""
        record_id = change.get("id") or change["external_id"]
        if not self.complete:
            self.load(rows=[change])
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

    def _add(self, records) -> None:
        """Records read; one the view already holds keeps the view's (this batch may have changed it)."""
        for record in records:
            for name in HIDDEN:
                record.pop(name, None)
            if record["_id"] not in self.by_id:
                self.put(record)


def read_ranges(collection: Collection, field: str, keys: list[str], runs: list[tuple[str, str]]) -> list[dict]:
    """The records whose ``field`` is one of ``keys``, read as one index range per run of them (``key_runs``)."""
    wanted, found = set(keys), []
    for low, high in runs:
        for record in collection.find({field: {"$gte": low, "$lte": high}}):
            if record.get(field) in wanted:
                for name in HIDDEN:
                    record.pop(name, None)
                found.append(record)
    return found


NUMBERED = re.compile(r"^(.*?)(\d+)$")


def key_runs(keys) -> list[tuple[str, str]]:
    """Sorted keys as (first, last) runs: the same prefix and as many digits, each within RANGE_GAP of the
    one before (so a range reads at most RANGE_GAP records it does not want per key)."""
    runs: list[list] = []
    previous = None
    for key in sorted(keys):
        numbered = NUMBERED.match(key)
        shape = (numbered.group(1), len(numbered.group(2)), int(numbered.group(2))) if numbered else None
        if (runs and shape and previous and shape[:2] == previous[:2]
                and shape[2] - previous[2] <= RANGE_GAP):
            runs[-1][1] = key
        else:
            runs.append([key, key])
        previous = shape
    return [(low, high) for low, high in runs]


def span(runs: list[tuple[str, str]]) -> int:
    """How many numbered keys the runs cover at most: about the records reading them costs."""
    total = 0
    for low, high in runs:
        first, last = NUMBERED.match(low), NUMBERED.match(high)
        total += int(last.group(2)) - int(first.group(2)) + 1 if first and last and low != high else 1
    return total


class Sizes:
    """How many records each collection holds, for choosing how to read (ranges, ``$in`` or the whole): kept
    for SIZE_SECONDS and grown by what the imports write, so the parts of one file do not each count again.
    Only the plan depends on it, never an answer: a stale size reads more or less than it could, no less than
    it must."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.known: dict[str, tuple[int, float]] = {}

    def of(self, collection: Collection) -> int:
        size, until = self.known.get(collection.name, (0, 0.0))
        if until <= self.clock():
            size = collection.estimated_document_count()
            self.known[collection.name] = (size, self.clock() + SIZE_SECONDS)
        return size

    def grew(self, name: str, added: int) -> None:
        if name in self.known and added:
            size, until = self.known[name]
            self.known[name] = (size + added, until)


class BatchView:
    """People and org units for one import; answers ``person_by_ref`` / ``unit_by_ref`` as Directory does, so
    DirectorySync's rules run against it."""

    def __init__(self, directory: Directory, sizes: Sizes | None = None):
        self.directory = directory
        self.sizes = sizes or Sizes()
        self.people = RecordView(directory.db[PEOPLE], "pending_manager", "manager_id", self.sizes)
        self.units = RecordView(directory.db[ORG_UNITS], "pending_parent", "parent_id", self.sizes)

    def person_by_ref(self, ref: str) -> dict | None:
        return self.people.by_ref(ref)

    def unit_by_ref(self, ref: str) -> dict | None:
        return self.units.by_ref(ref)

    def reload_units(self) -> None:
        """After the batch's org units were written one by one."""
        asked = set().union(*self.units.asked.values(), self.units.by_external, self.units.by_id)
        self.units = RecordView(self.directory.db[ORG_UNITS], "pending_parent", "parent_id", self.sizes)
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
