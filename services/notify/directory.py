"""notify's copy of the directory (collection ``people``): who someone is, their email, manager and time zone.

Kept from goals' ``person_upserted`` events (a revision guard drops an older
event that arrives after a newer one), and filled from goals-api
(``GetPerson``, with notify's own credential) on a miss, so a notification
for someone whose event notify never saw still reaches them. Reads go
through a short lock-free cache (``ExpiringCache``: eventlet workers must not
take ``threading`` locks).

A document: ``{_id, display_name, email, manager_id, org_unit_id, active,
time_zone, revision, updated_at}``; ``revision`` is goals' revision of the
person (0 when filled from goals-api, so any event wins over it).
"""

import logging
from collections.abc import Callable

import grpc
from pymongo.errors import DuplicateKeyError

from services.platform.api.client import ServiceClient
from services.platform.core.cache import ExpiringCache
from services.platform.core.clock import utc_now
from services.platform.core.config import AuthSettings
from services.platform.core.errors import Unavailable
from services.platform.core.validation import is_id
from v2mom.v1 import goals_pb2, goals_pb2_grpc

from .rules import Person
from .store import PEOPLE

log = logging.getLogger(__name__)

CACHE_SECONDS = 30.0
_MISSING = object()


class GoalsPeople:
    """goals-api's GetPerson (None when goals does not know the person) and ListCycles, as notify asks them."""

    def __init__(self, addr: str, auth: AuthSettings):
        self.client = ServiceClient(addr, goals_pb2_grpc.GoalServiceStub, auth, "goals")

    def get_person(self, person_id: str) -> dict | None:
        try:
            person = self.client.call("GetPerson", goals_pb2.GetPersonRequest(id=person_id))
        except grpc.RpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise Unavailable(f"goals-api refused GetPerson: {error.code().name}") from None
        return {"display_name": person.display_name, "email": person.email, "manager_id": person.manager_id,
                "org_unit_id": person.org_unit_id, "active": person.active}

    def list_cycles(self) -> list:
        """Every cycle with its quarters (goals lists them unpaged: a handful); Unavailable when goals-api cannot
        answer or refuses (a goals-api that does not grant notify ListCycles yet)."""
        try:
            return list(self.client.call("ListCycles", goals_pb2.ListCyclesRequest()).cycles)
        except grpc.RpcError as error:
            raise Unavailable(f"goals-api refused ListCycles: {error.code().name}") from None

    def close(self) -> None:
        self.client.close()


def _person(doc: dict) -> Person:
    return Person(
        id=doc["_id"], name=doc.get("display_name") or "", email=doc.get("email") or "",
        manager_id=doc.get("manager_id") or "", org_unit_id=doc.get("org_unit_id") or "",
        time_zone=doc.get("time_zone") or "UTC", active=doc.get("active", True),
    )


class People:
    def __init__(self, db, goals: GoalsPeople | None, call_goals: Callable = lambda fn, *args: fn(*args),
                 cache_seconds: float = CACHE_SECONDS):
        self.collection = db[PEOPLE]
        self.goals = goals
        # notify-worker passes call_blocking: grpcio must not run on the hub's thread.
        self.call_goals = call_goals
        self.cache = ExpiringCache(cache_seconds)

    def upsert_from_event(self, person: dict, revision: int) -> bool:
        """A person_upserted's person (proto3 JSON); an older revision than the stored one changes nothing."""
        fields = {
            "display_name": person.get("displayName") or "", "email": person.get("email") or "",
            "manager_id": person.get("managerId") or "", "org_unit_id": person.get("orgUnitId") or "",
            "active": bool(person.get("active")), "revision": revision, "updated_at": utc_now(),
        }
        if person.get("timeZone"):
            fields["time_zone"] = person["timeZone"]
        result = self.collection.update_one({"_id": person["id"], "revision": {"$lt": revision}}, {"$set": fields})
        if result.matched_count == 0:
            try:
                self.collection.insert_one({"_id": person["id"], **fields})
            except DuplicateKeyError:
                return False  # stored already, at this revision or a newer one
        self.cache.clear()
        return True

    def get(self, person_id: str) -> Person | None:
        """The person, from the copy or else from goals-api; None when neither knows them.

        Raises Unavailable when the copy lacks them and goals-api is down: the
        event is requeued, never delivered to a guessed address.
        """
        if not person_id:
            return None
        found = self.cache.get(person_id, lambda: self._load(person_id))
        return None if found is _MISSING else found

    def _load(self, person_id: str):
        doc = self.collection.find_one({"_id": person_id})
        if doc is not None:
            return _person(doc)
        if self.goals is None or not is_id(person_id):
            return _MISSING
        fetched = self.call_goals(self.goals.get_person, person_id)
        if fetched is None:
            log.info("person unknown to goals", extra={"person_id": person_id})
            return _MISSING
        doc = {"_id": person_id, **fetched, "revision": 0, "updated_at": utc_now()}
        try:
            self.collection.insert_one(doc)
        except DuplicateKeyError:
            doc = self.collection.find_one({"_id": person_id}) or doc  # an event got there first: it wins
        return _person(doc)
