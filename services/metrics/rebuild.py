"""RebuildAggregates: every entity and aggregate recomputed from the source services' lists.

Why the list RPCs rather than a replay of retained events: a new deployment
has no retained events, the goals and check-ins services are the owners of the
truth, and retaining every event would make the metrics database grow with
history (each insert into a growing collection costs more on the store we run
on). The lists give the current state; the entity states are built from them
with the same functions the worker applies to events (model.py, facts.py), so
the two paths cannot disagree on a definition. A test holds them equal.

While it runs, the rebuild holds a lease that makes every worker leave events
in their queues (control.py). The events still queued afterwards are safe to
apply: V2MOM, person, unit and progress changes carry revisions that the
rebuilt entities keep; staleness claims merge; and check-ins recorded before
the rebuild started (``as_of``) are already counted, so their events only move
the latest observation forward. Weekly history is not rebuilt: it records what
was seen at the time.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from pymongo.database import Database

from services.platform.core.clock import to_millis, utc_now

from . import cascade, control, facts, ledger, model, store
from .sources import CheckinsSource, GoalsSource
from v2mom.v1 import goals_pb2

log = logging.getLogger(__name__)


class RebuildBusy(RuntimeError):
    pass


@dataclass
class Summary:
    org_units: int = 0
    people: int = 0
    v2moms: int = 0
    checkins: int = 0
    stale_items: int = 0
    aggregates: int = 0
    as_of: datetime | None = None
    seconds: float = 0.0


@dataclass
class World:
    """Entity states as the sources describe them now."""

    units: dict[str, dict] = field(default_factory=dict)
    people: dict[str, dict] = field(default_factory=dict)
    v2moms: dict[str, dict] = field(default_factory=dict)
    # Published V2MOMs' methods and supports (cascade.py), keyed by V2MOM id.
    method_support: dict[str, dict] = field(default_factory=dict)


def rebuild(db: Database, goals: GoalsSource, checkins: CheckinsSource, holder: str = "metrics-api",
            grace_seconds: float = 2.0, clock: Callable[[], datetime] = utc_now) -> Summary:
    started = time.monotonic()
    if not control.take_rebuild_lease(db, holder):
        raise RebuildBusy("a rebuild is already running")
    try:
        time.sleep(grace_seconds)  # events already being handled finish; new ones wait in their queues
        summary = Summary(as_of=to_millis(clock()))
        world = gather(db, goals, checkins, summary)
        control.extend_rebuild_lease(db, holder)
        summary.aggregates = write(db, world)
        _cycles(db, goals)
    finally:
        control.release_rebuild_lease(db, holder)
    summary.seconds = time.monotonic() - started
    log.info("aggregates rebuilt", extra={k: v for k, v in vars(summary).items() if k != "as_of"})
    return summary


# --- reading the sources ----------------------------------------------------------------------------


def gather(db: Database, goals: GoalsSource, checkins: CheckinsSource, summary: Summary) -> World:
    world = World()
    # The lists carry no revisions: those the projection holds are kept, so queued events still lose to newer data.
    _units(db, goals, world, summary)
    _people(db, goals, world, summary)
    published = _v2moms(goals, world, summary)
    _checkins(checkins, world, published, summary)
    _progress(db, checkins, world, published)
    _staleness(checkins, world, summary)
    for state in world.v2moms.values():
        # Counted here: their events, still queued, must not count them again.
        state["checkins_as_of"] = summary.as_of
    return world


def _cycles(db, goals) -> None:
    """Quarters of cycles whose events this store never saw (it started after them); those it kept stay, since
    the list carries no revision and a newer event may be queued."""
    for cycle in goals.cycles():
        store.upsert_cycle(db, facts.cycle_from_listing(cycle, revision=0))


def _units(db, goals, world, summary):
    known = store.known_revisions(db, store.UNITS, "revision")
    for unit in goals.org_units():
        # A unit must sort above the "heard of through members only" placeholder (revision 0).
        world.units[unit.id] = facts.unit_from_listing(unit, max(known.get(unit.id, 0), 1))
    summary.org_units = len(world.units)


def _people(db, goals, world, summary):
    known = store.known_revisions(db, store.PEOPLE, "state.revision")
    for person in goals.people():
        fact = facts.person_from_listing(person, known.get(person.id, 0))
        world.people[person.id] = {**model.new_person(), **{k: fact[k] for k in ("revision", "org_unit_id", "active")}}
    summary.people = len(world.people)


def _v2moms(goals, world, summary) -> list[tuple[str, str]]:
    """Builds each V2MOM's lifecycle; returns (id, cycle) of those with a published version."""
    published = []
    for v2mom in goals.v2moms():
        content = goals.published_content(v2mom)
        fact = facts.lifecycle_from_v2mom(v2mom, content)
        world.v2moms[v2mom.id] = model.apply_lifecycle(model.new_v2mom(), fact)
        if v2mom.published_revision:
            published.append((v2mom.id, v2mom.cycle_id))
        if content is not None:
            world.method_support[v2mom.id] = cascade.entry(
                v2mom.id, v2mom.revision, v2mom.org_unit_id, v2mom.cycle_id, v2mom.level, v2mom.parent_id, content,
                archived=v2mom.state == goals_pb2.V2MOM_STATE_ARCHIVED)
    summary.v2moms = len(world.v2moms)
    return published


def _checkins(checkins, world, published, summary):
    cadences: dict[str, int] = {}
    for v2mom_id, cycle_id in published:
        if cycle_id not in cadences:
            cadences[cycle_id] = checkins.cadence(cycle_id)
        for message in checkins.checkins(v2mom_id):
            fact = facts.checkin(message, cadences[cycle_id])
            world.v2moms[v2mom_id] = model.apply_checkin(world.v2moms[v2mom_id], fact)
            summary.checkins += 1


def _progress(db, checkins, world, published):
    known = store.known_revisions(db, store.V2MOMS, "state.progress.revision")
    for v2mom_id, _ in published:
        progress = checkins.progress(v2mom_id)
        if progress is not None:
            fact = facts.progress_from_listing(progress, known.get(v2mom_id, 0))
            world.v2moms[v2mom_id]["progress"] = {key: fact[key] for key in ("revision", "own", "tree", "off_track")}


def _staleness(checkins, world, summary):
    roots = [unit_id for unit_id, unit in world.units.items() if unit["parent_id"] not in world.units]
    for root in roots:
        for item in checkins.stale_items(root):
            fact = facts.staleness(item)
            state = world.v2moms.get(fact["v2mom_id"]) or model.new_v2mom()
            world.v2moms[fact["v2mom_id"]] = model.apply_staleness(state, fact)
            summary.stale_items += 1


# --- contributions and the write -------------------------------------------------------------------


def contributions(world: World) -> tuple[dict[str, str], dict[str, model.Contribution], model.Contribution]:
    """(each V2MOM's unit, each entity's contribution, the sum of all of them by target).

    People's live-V2MOM counts are derived from the V2MOMs' contributions, as the
    worker's deltas would have made them.
    """
    units, contributed, total = {}, {}, {}
    for person in world.people.values():
        person["live"] = []
    for v2mom_id, state in world.v2moms.items():
        owner = world.people.get(state["owner_id"])
        units[v2mom_id] = model.attributed_unit(state, (owner or {}).get("org_unit_id") or None)
        contributed[f"v2mom:{v2mom_id}"] = model.v2mom_contribution(state, units[v2mom_id])
        for target, values in contributed[f"v2mom:{v2mom_id}"].items():
            kind, person_id = model.parse_target(target)
            if kind == "person":
                person = world.people.setdefault(person_id, model.new_person())
                world.people[person_id] = model.apply_live_counts(person, values)
    for person_id, state in world.people.items():
        contributed[f"person:{person_id}"] = model.person_contribution(state)
    for contribution in contributed.values():
        for target, values in contribution.items():
            if model.parse_target(target)[0] != "person":
                model.add(total, target, values)
    return units, contributed, total


def nested(values: dict[str, float]) -> dict:
    """{"tta.sum": 3} -> {"tta": {"sum": 3}}: the shape ``$inc`` on those paths builds."""
    root: dict = {}
    for path, value in values.items():
        node, *parts = root, *path.split(".")
        *parents, leaf = parts
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return root


def write(db: Database, world: World) -> int:
    units, contributed, total = contributions(world)
    versions = store.entity_versions(db)
    people = [ledger.person_document(pid, state, versions.get(pid, 0) + 1) for pid, state in world.people.items()]
    v2moms = [ledger.v2mom_document(vid, state, units[vid], versions.get(vid, 0) + 1) for vid, state in world.v2moms.items()]
    members = {model.parse_target(t)[1]: int(v.get("members", 0)) for t, v in total.items() if t.startswith("unit:")}
    unit_docs = [{"_id": unit_id, **{k: fact[k] for k in ("revision", "name", "level", "parent_id")},
                  "members": members.get(unit_id, 0), "recent": []} for unit_id, fact in world.units.items()]
    aggregates = []
    for target, values in total.items():
        kind, key = model.parse_target(target)
        if kind == "agg":
            unit_id, cycle_id = key.split("|", 1)
            aggregates.append({"_id": key, "unit": unit_id, "cycle": cycle_id, **nested(values), "recent": []})
    support = cascade.counted(list(world.method_support.values()))
    for collection, docs in ((store.UNITS, unit_docs), (store.PEOPLE, people), (store.V2MOMS, v2moms),
                             (store.AGGREGATES, aggregates), (store.METHOD_SUPPORT, support)):
        store.replace_all(db, collection, docs)
    return len(aggregates)

