"""The engagement families kept rendered in metrics-api, following what changes in the store.

Reading every aggregate on every scrape costs what the store charges for all of
them before anything is rendered: 4.5 s for 10,000 units on mongoeco
(bench/results/metrics.md). Instead each metrics-api keeps, per (unit, cycle),
the aggregate it last read, its counts and its rendered lines. Each scrape first
reads only what changed: aggregates and units whose ``changed`` (the store's
time of their last write, store.py) is at or after the newest it has seen, less
``overlap`` for writes that commit out of the order of their times. The changed
units and their ancestors are recounted and re-rendered; nothing else is. Each
family's text, and its compressed form, is kept until one of its units changes.

So a scrape still shows every write committed before it began, and replicas
reading one store serve the same text. What depends on the moment is worked out
at the scrape: the ages of the oldest pending approval and open obstacle on every scrape, and the
windows (trailing weeks, last cadence, the current quarter) whenever the UTC
day turns, or a cycle's quarters change, which recounts every unit from the
copy without reading the store. A rebuild rewrites
the aggregates wholesale, so when one starts or ends the copy is read afresh.
``follow`` runs a thread that catches up every few seconds, so scrapes find
little left to do, and re-reads everything now and then in case a write ever
escaped the overlap.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from pymongo.database import Database

from . import control, store
from .collector import GAUGES
from .engagement import DIRECT, SUBTREE, Counts, Snapshot, View, Window, counts_at, pending_age
from .exposition import LabelSets, Piece, Texts, family_headers, family_lines, gauge_lines
from .org import OrgTree

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (unit, cycle)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The families that move with the clock between changes, each an age of the oldest of something (the Counts
# field of its epoch): rendered on every scrape, never kept.
AGES = {"v2mom_oldest_pending_approval_age_seconds": "oldest_pending",
        "v2mom_oldest_open_obstacle_age_seconds": "oldest_open_obstacle"}
AGE_FAMILIES = {i: AGES[name] for i, (name, _, _) in enumerate(GAUGES) if name in AGES}


CHANGES, EVERYTHING, RECONCILE = "changes", "everything", "reconcile"
READ_KINDS = (CHANGES, EVERYTHING, RECONCILE)


@dataclass
class ReadStats:
    """What one kind of read has cost this process so far: for its operators, and for bench/metrics.py, which
    needs our CPU per scrape without the store's."""

    reads: int = 0
    documents: int = 0
    cpu_seconds: float = 0.0  # this thread's CPU: reading (decoding included), recounting, rendering

    def add(self, documents: int, cpu_seconds: float) -> None:
        self.reads += 1
        self.documents += documents
        self.cpu_seconds += cpu_seconds


def _is_older(row: dict, kept: dict | None) -> bool:
    """Whether ``row`` was read before the write ``kept`` shows (a full re-read races with changes)."""
    if kept is None or kept.get(store.CHANGED) is None:
        return False
    return row.get(store.CHANGED) is None or row[store.CHANGED] < kept[store.CHANGED]


def _placed(row: dict) -> tuple:
    """What puts a unit in the tree: being a unit yet (a revision), and its parent."""
    return row.get("revision", 0) > 0, row.get("parent_id") or ""


class Copy:
    """The documents as last read, and the newest change seen in each collection."""

    def __init__(self, rebuild_marker: tuple):
        self.rebuild_marker = rebuild_marker
        self.units: dict[str, dict] = {}
        self.aggregates: dict[str, dict] = {}
        self.cycles: dict[str, dict] = {}  # their quarters bound coverage (engagement.Window)
        self.newest: dict[str, datetime | None] = {store.UNITS: None, store.AGGREGATES: None, store.CYCLES: None}

    def take(self, collection: str, rows) -> list[tuple[dict | None, dict]]:
        """(kept before, row) for every row that is news: neither as kept nor older than it."""
        kept = {store.UNITS: self.units, store.AGGREGATES: self.aggregates, store.CYCLES: self.cycles}[collection]
        news = []
        for row in rows:
            before = kept.get(row["_id"])
            if row == before or _is_older(row, before):
                continue
            kept[row["_id"]] = row
            news.append((before, row))
            changed = row.get(store.CHANGED)
            if changed is not None and (self.newest[collection] is None or changed > self.newest[collection]):
                self.newest[collection] = changed
        return news


class RenderedEngagement:
    """The engagement text for ``/metrics``, current as of each call to ``pieces``. Thread-safe."""

    def __init__(self, db: Database, overlap: timedelta = timedelta(seconds=5)):
        self.db = db
        self.overlap = overlap
        self._lock = threading.Lock()
        self._copy: Copy | None = None
        self._day: date | None = None
        self._tree = OrgTree({})
        self._cycles: list[str] = []
        self._quarters: dict[str, list[tuple[str, str]]] = {}  # store.quarters_of the copy's cycles
        self._keys: list[Key] = []
        self._position: dict[str, int] = {}  # a unit's place in tree order: parents before children
        self._direct: dict[Key, Counts] = {}
        self._subtree: dict[Key, Counts] = {}
        self._labels: dict[Key, LabelSets] = {}
        self._blocks: list[dict[Key, str]] = []
        # Each family served whole (header and samples), per format, until one of its units changes.
        self._served: dict[bool, list[Piece | None]] = {False: [], True: []}
        self.reads = {kind: ReadStats() for kind in READ_KINDS}

    # --- what a scrape asks for --------------------------------------------------------------------

    def pieces(self, now: datetime, openmetrics_format: bool = False) -> list[Piece]:
        """Every engagement family, header then samples, as exposition.engagement_chunks renders a fresh read:
        one piece per family, kept until a unit in it changes (a check-in touches a few families, not all)."""
        with self._lock:
            self._catch_up(now)
            served = self._served[openmetrics_format]
            pieces = []
            for index, header in enumerate(family_headers(openmetrics_format)):
                if index in AGE_FAMILIES:
                    pieces.append(Piece(header + "".join(self._ages(now, index))))
                    continue
                if served[index] is None:
                    served[index] = Piece(header + "".join(map(self._blocks[index].__getitem__, self._keys)))
                pieces.append(served[index])
            return pieces

    def chunks(self, now: datetime, openmetrics_format: bool = False) -> list[bytes]:
        return [piece.raw for piece in self.pieces(now, openmetrics_format)]

    def _ages(self, now: datetime, index: int) -> list[str]:
        stamp, oldest = now.timestamp(), AGE_FAMILIES[index]
        values, labels = [], []
        for key in self._keys:
            for counts in (self._direct[key], self._subtree[key]):
                values.append(pending_age(getattr(counts, oldest), stamp) or 0.0)  # as collector.GAUGES has it
            labels += self._labels[key].closed
        name = GAUGES[index][0]
        return gauge_lines(name, labels, values, Texts())

    # --- keeping up with the store ------------------------------------------------------------------

    def follow(self, clock: Callable[[], datetime], every: float = 5.0, reconcile_every: float = 600.0,
               stop: threading.Event | None = None) -> threading.Thread:
        """Catches up every ``every`` seconds and reads everything again every ``reconcile_every``, on a daemon
        thread, until ``stop`` is set."""
        stop = stop or threading.Event()

        def run() -> None:
            reconciled, wait = time.monotonic(), 0.0  # the first read at once: a scrape after a start finds it done
            while not stop.wait(wait):
                wait = every
                try:
                    if time.monotonic() - reconciled >= reconcile_every:
                        self.reconcile(clock())
                        reconciled = time.monotonic()
                    else:
                        with self._lock:
                            self._catch_up(clock())
                except Exception:  # the store may be away for a while: scrapes report that, this keeps trying
                    log.exception("engagement copy could not catch up")

        thread = threading.Thread(target=run, name="engagement-follower", daemon=True)
        thread.start()
        return thread

    def reconcile(self, now: datetime) -> None:
        """Reads every unit and aggregate again and takes what the copy missed; the reading holds no lock."""
        started = time.thread_time()
        units, aggregates, cycles = self._read_all()
        with self._lock:
            if self._copy is None or control.rebuild_marker(self.db) != self._copy.rebuild_marker:
                self._catch_up(now)  # a first read, or a rebuild since: read afresh anyway
                return
            self._apply(units, aggregates, now, cycles)
            self.reads[RECONCILE].add(len(units) + len(aggregates), time.thread_time() - started)

    def _catch_up(self, now: datetime) -> None:
        started, marker = time.thread_time(), control.rebuild_marker(self.db)
        if self._copy is None or marker != self._copy.rebuild_marker:
            self._copy = Copy(marker)
            self._day = None
            kind, (units, aggregates, cycles) = EVERYTHING, self._read_all()
        else:
            kind = CHANGES
            units = store.units_changed_since(self.db, self._since(store.UNITS))
            aggregates = store.aggregates_changed_since(self.db, self._since(store.AGGREGATES))
            cycles = store.cycles_changed_since(self.db, self._since(store.CYCLES))
        self._apply(units, aggregates, now, cycles)
        self.reads[kind].add(len(units) + len(aggregates), time.thread_time() - started)

    def _read_all(self) -> tuple[list[dict], list[dict], list[dict]]:
        return store.units(self.db), store.aggregates(self.db), store.cycles(self.db)

    def _since(self, collection: str) -> datetime:
        """The newest change seen in ``collection``, less the overlap for writes committed out of order."""
        newest = self._copy.newest[collection]
        return newest - self.overlap if newest is not None else EPOCH

    # --- recounting ----------------------------------------------------------------------------------

    def _apply(self, unit_rows: list[dict], aggregate_rows: list[dict], now: datetime, cycle_rows: list[dict]) -> None:
        """Takes the rows that are news and recounts what they touch; everything when the tree, the cycles, their
        quarters or the day changed."""
        reshaped, touched_units, relabelled = False, set(), set()
        for before, row in self._copy.take(store.UNITS, unit_rows):
            placed_before, placed_now = _placed(before or {}), _placed(row)
            if placed_before != placed_now:
                reshaped |= placed_before[0] or placed_now[0]  # not a unit before or after: not in the tree
            elif placed_now[0]:
                touched_units.add(row["_id"])
                if (before.get("name"), before.get("level")) != (row.get("name"), row.get("level")):
                    relabelled.add(row["_id"])
        touched: set[Key] = set()
        for _before, row in self._copy.take(store.AGGREGATES, aggregate_rows):
            reshaped |= row["cycle"] not in self._cycles
            touched.add((row["unit"], row["cycle"]))
        if self._copy.take(store.CYCLES, cycle_rows):
            reshaped, self._quarters = True, store.quarters_of(self._copy.cycles.values())
        if reshaped or now.date() != self._day:
            self._recount_everything(now)
            return
        self._refresh_units(touched_units, relabelled)
        touched |= {(unit_id, cycle) for unit_id in touched_units for cycle in self._cycles}
        self._recount({key for key in touched if key[0] in self._tree.units}, now)

    def _refresh_units(self, unit_ids: set[str], relabelled: set[str]) -> None:
        """Name, level and headcount from the copy, for units whose place in the tree stayed."""
        fresh = OrgTree.of([self._copy.units[unit_id] for unit_id in unit_ids]).units
        for unit_id in unit_ids:
            unit, new = self._tree.units[unit_id], fresh[unit_id]
            unit.name, unit.level, unit.members = new.name, new.level, new.members
        for unit_id in relabelled:
            for cycle in self._cycles:
                self._labels[(unit_id, cycle)] = LabelSets.of(self._tree, [(unit_id, cycle)])

    def _recount_everything(self, now: datetime) -> None:
        self._day = now.date()
        self._tree = OrgTree.of(self._copy.units.values())
        self._cycles = sorted({row["cycle"] for row in self._copy.aggregates.values()})
        order = self._tree.everything()
        self._position = {unit_id: index for index, unit_id in enumerate(order)}
        self._keys = [(unit_id, cycle) for cycle in self._cycles for unit_id in order]
        self._labels = {key: LabelSets.of(self._tree, [key]) for key in self._keys}
        self._direct, self._subtree = {}, {}
        self._blocks = [{} for _ in family_headers()]
        self._served = {False: [None] * len(self._blocks), True: [None] * len(self._blocks)}
        self._recount(set(self._keys), now)

    def _recount(self, keys: set[Key], now: datetime) -> None:
        """Direct counts of ``keys``, subtree counts of them and their ancestors (children first), and the lines
        of all of those."""
        if not keys:
            return
        window = Window(now, self._quarters)
        for unit_id, cycle in keys:
            aggregate = self._copy.aggregates.get(store.aggregate_id(unit_id, cycle))
            self._direct[(unit_id, cycle)] = counts_at(aggregate, self._tree.units[unit_id].members, now, window)
        summed = keys | {(above, cycle) for unit_id, cycle in keys for above in self._tree.ancestors(unit_id)}
        for unit_id, cycle in sorted(summed, key=lambda key: -self._position[key[0]]):  # children first
            total = Counts()
            total += self._direct[(unit_id, cycle)]
            for child in self._tree.units[unit_id].children:
                total += self._subtree[(child, cycle)]
            self._subtree[(unit_id, cycle)] = total
        self._render(sorted(summed), now)

    def _render(self, keys: list[Key], now: datetime) -> None:
        snapshot = Snapshot(now, self._tree, self._direct, self._subtree, self._cycles)
        views: list[View] = [snapshot.view(unit_id, cycle, scope) for unit_id, cycle in keys
                             for scope in (DIRECT, SUBTREE)]
        labels = LabelSets(*([] for _ in LabelSets._fields))
        for key in keys:
            for mine, theirs in zip(labels, self._labels[key]):
                mine += theirs
        for index, lines in enumerate(family_lines(views, labels, Texts())):
            blocks, fresh = self._blocks[index], dict(zip(keys, map(str.__add__, lines[0::2], lines[1::2])))
            if any(blocks.get(key) != block for key, block in fresh.items()):
                blocks.update(fresh)
                self._served[False][index] = self._served[True][index] = None
