"""Applies changes to V2MOMs and people, and carries their contributions to the aggregates.

One change to an entity is one conditional write of its document (guarded by
its version ``v``): the new state, and the message id with the deltas it caused,
remembered in ``recent``. The deltas are the difference between what the
entity contributes now and what it contributed before, both computed from its
state (model.py), so the document need not carry its contribution. Then each
delta is applied to its target with ``store.bump``, which remembers the delta's
id in the same write. So:

- a duplicate event finds its id in ``recent`` and only re-sends the deltas it
  caused, which their targets refuse if they already have them; a worker killed
  between the two writes is made whole by the redelivery;
- two handlers changing one entity at once cannot both win: the loser re-reads
  and recomputes;
- deltas are increments, so the order they reach a target in does not matter.

A V2MOM's deltas can target its owner (``live|<cycle>``), which changes the
person's state and hence the person's own contribution: the same mechanism, one
level down. When a person moves, their individual V2MOMs are re-attributed to
the new unit by a follow-up change on each (see ``person``).
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from pymongo.database import Database

from services.platform.core.locks import KeyedLocks

from . import model, store

log = logging.getLogger(__name__)

ATTEMPTS = 50
# Changes to one entity take turns within this process (a Ledger is made per event). metrics-worker
# handles several events at once, and a check-in's events (the check-in, then its V2MOM's and each
# parent's progress) all change the same few V2MOMs: during `make run`'s check-in history the losers
# of the version guard doubled the worker's reads and writes of metrics.v2moms.
_TURNS = KeyedLocks()

Change = Callable[[dict], dict]


class Contention(RuntimeError):
    """An entity kept changing underneath: the handler's retry starts over."""


@dataclass(frozen=True)
class Outcome:
    state: dict
    unit: str = ""
    previous_unit: str = ""
    replayed: bool = False
    inserted: bool = False


@dataclass(frozen=True)
class _Step:
    """A change worked out against one version of an entity, not yet written."""

    state: dict
    unit: str
    previous_unit: str
    deltas: list  # [[target, [[path, increment], ...]], ...]


class Ledger:
    def __init__(self, db: Database):
        self.db = db

    # --- entry points ----------------------------------------------------------------------

    def v2mom(self, v2mom_id: str, message_id: str, change: Change) -> Outcome:
        outcome = self._apply(_V2MOMS, v2mom_id, message_id, change)
        if outcome.inserted and _follows_owner(outcome.state):
            # Inserted after the owner's move looked for their V2MOMs? Then nobody else will fix it.
            self._reattribute_if_moved(v2mom_id, outcome, message_id)
        return outcome

    def person(self, person_id: str, message_id: str, change: Change) -> Outcome:
        outcome = self._apply(_PEOPLE, person_id, message_id, change)
        if outcome.replayed or outcome.unit != outcome.previous_unit:
            self._follow_owner(person_id, outcome.state["org_unit_id"], message_id)
        return outcome

    # --- the engine -------------------------------------------------------------------------

    def _apply(self, kind: "_Kind", entity_id: str, message_id: str, change: Change, refresh: bool = False) -> Outcome:
        memo = store.short_id(message_id)
        for attempt in range(ATTEMPTS):
            # The deltas are flushed after the turn: a flush changes other entities, and holding two turns
            # at once could deadlock with a handler taking them the other way round.
            with _TURNS.holding((kind.collection, entity_id)):
                done = self._attempt(kind, entity_id, memo, change, refresh)
            if done is not None:
                outcome, deltas = done
                if outcome.replayed:
                    # Applied before, perhaps never acked: its targets refuse what they already have.
                    log.info("change replayed", extra={"entity": kind.source(entity_id), "message_id": message_id})
                self._flush(kind.source(entity_id), message_id, deltas)
                return outcome
            time.sleep(0.001 * min(attempt + 1, 20))  # another replica changed it first; under eventlet this yields
        raise Contention(f"{kind.collection} {entity_id!r} kept changing; gave up after {ATTEMPTS} attempts")

    def _attempt(self, kind: "_Kind", entity_id: str, memo: str, change: Change,
                 refresh: bool) -> tuple[Outcome, list] | None:
        """One read and, if the change is news, one guarded write: the outcome and the deltas to flush,
        or None when the write lost to another writer."""
        doc = store.entity(self.db, kind.collection, entity_id)
        remembered = next((entry for entry in (doc or {}).get("recent", []) if entry["id"] == memo), None)
        if remembered is not None:
            unit = doc.get("unit", "")
            return Outcome(doc["state"], unit, unit, replayed=True), remembered["d"]
        step = self._step(kind, doc, change, refresh)
        if doc is not None and step.state == doc["state"] and not step.deltas and step.unit == step.previous_unit:
            return Outcome(step.state, step.unit, step.previous_unit), []  # old or repeated news: nothing to record
        if self._write(kind, entity_id, doc, step, memo):
            return Outcome(step.state, step.unit, step.previous_unit, inserted=doc is None), step.deltas
        return None

    def _step(self, kind: "_Kind", doc: dict | None, change: Change, refresh: bool) -> _Step:
        state = doc["state"] if doc else kind.new()
        new_state = change(state)
        unit = self._unit_for(kind, new_state, doc, refresh)
        previous_unit = doc.get("unit", "") if doc else ""
        before = kind.contribution(state, previous_unit) if doc else {}
        deltas = model.diff(before, kind.contribution(new_state, unit))
        return _Step(new_state, unit, previous_unit, [[target, sorted(values.items())] for target, values in deltas])

    def _write(self, kind: "_Kind", entity_id: str, doc: dict | None, step: _Step, memo: str) -> bool:
        """The new state and the memory of this change, if the entity is still as it was read."""
        fields = _fields(kind, step.state, step.unit)
        change = {"id": memo, "d": step.deltas}
        if doc is None:
            return store.insert_entity(self.db, kind.collection, entity_id, fields, change)
        return store.update_entity(self.db, kind.collection, entity_id, doc["v"], fields, change)

    def _flush(self, source: str, message_id: str, stored_deltas: list) -> None:
        applied_id = store.delta_id(message_id, source)
        for target, pairs in stored_deltas:
            kind, key = model.parse_target(target)
            increments = dict(pairs)
            if kind == "agg":
                unit, cycle = key.split("|", 1)
                store.bump(self.db, store.AGGREGATES, key, applied_id, increments, {"unit": unit, "cycle": cycle})
            elif kind == "unit":
                # revision 0: a unit heard of through its members before its own event.
                store.bump(self.db, store.UNITS, key, applied_id, increments, {"revision": 0})
            elif kind == "person":
                self.person(key, applied_id, lambda state, inc=increments: model.apply_live_counts(state, inc))
            else:
                raise ValueError(f"unknown target {target!r}")

    # --- who a V2MOM counts for ----------------------------------------------------------------

    def _unit_for(self, kind: "_Kind", state: dict, doc: dict | None, refresh: bool) -> str:
        if kind is _PEOPLE:
            return state["org_unit_id"]
        if not _follows_owner(state):
            return state["org_unit_id"]
        previous = doc["state"] if doc else None
        if (not refresh and doc and doc.get("unit") and _follows_owner(previous)
                and previous["owner_id"] == state["owner_id"]):
            # Kept in step by the owner's moves (see _follow_owner): no need to look them up again.
            return doc["unit"]
        return model.attributed_unit(state, self._owner_unit(state["owner_id"]))

    def _owner_unit(self, person_id: str) -> str | None:
        if not person_id:
            return None
        return store.person_unit(self.db, person_id)

    def _follow_owner(self, person_id: str, unit: str, message_id: str) -> None:
        """Moves the person's individual V2MOMs whose attribution no longer matches."""
        if not unit:
            return
        for v2mom_id in store.individual_v2moms_elsewhere(self.db, person_id, unit):
            self._apply(_V2MOMS, v2mom_id, f"{message_id}/follow", lambda state: state, refresh=True)

    def _reattribute_if_moved(self, v2mom_id: str, outcome: Outcome, message_id: str) -> None:
        current = model.attributed_unit(outcome.state, self._owner_unit(outcome.state["owner_id"]))
        if current != outcome.unit:
            self._apply(_V2MOMS, v2mom_id, f"{message_id}/follow", lambda state: state, refresh=True)


def _fields(kind: "_Kind", state: dict, unit: str) -> dict:
    return {"state": state, "unit": unit, **kind.index_fields(state)}


def v2mom_document(v2mom_id: str, state: dict, unit: str, version: int) -> dict:
    """A whole V2MOM document, as RebuildAggregates writes it (no memory of past messages)."""
    return {"_id": v2mom_id, "v": version, **_fields(_V2MOMS, state, unit), "recent": []}


def person_document(person_id: str, state: dict, version: int) -> dict:
    return {"_id": person_id, "v": version, **_fields(_PEOPLE, state, state["org_unit_id"]), "recent": []}


def _follows_owner(state: dict) -> bool:
    return state["level"] in (model.INDIVIDUAL, "")


@dataclass(frozen=True)
class _Kind:
    collection: str
    new: Callable[[], dict]
    contribution: Callable[[dict, str], model.Contribution]
    prefix: str

    def source(self, entity_id: str) -> str:
        return f"{self.prefix}:{entity_id}"

    def index_fields(self, state: dict) -> dict:
        if self.collection == store.V2MOMS:
            return {"owner_id": state["owner_id"], "individual": _follows_owner(state)}
        return {}


_V2MOMS = _Kind(store.V2MOMS, model.new_v2mom, model.v2mom_contribution, "v2mom")
_PEOPLE = _Kind(store.PEOPLE, model.new_person, lambda state, unit: model.person_contribution(state), "person")
