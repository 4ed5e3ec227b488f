"""Two SCIM POSTs (or a POST and a rename) racing for one userName create one person: the unique index
``people_by_live_user_name_key`` refuses the loser's write, which answers 409 ``uniqueness`` (services/goals/scim/
users.py). Concurrent real HTTP requests against a served goals-api on the wire Mongo server; in the forced
interleavings every request has found the userName free before any of them writes."""

import threading
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pymongo
import pytest

from services.goals.api import create_server
from services.goals.scim.users import INDEXES, LIVE_USER_NAME_INDEX, ScimUsers
from services.platform.core.config import load
from services.platform.store.mongo import ensure_indexes
from tests.support.scim import ENTERPRISE, scim_goals, user
from tests.support.services import served

CLIENTS = 6


@pytest.fixture(scope="module")
def scim(mongo_uri):
    with scim_goals(mongo_uri) as env:
        yield env


def race(scim, requests: list[tuple]) -> list:
    """Sends the requests at once, each from its own thread; the replies in the same order."""
    start = threading.Barrier(len(requests))

    def send(request):
        start.wait(timeout=30)
        return scim.call(*request)

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(send, requests))


@pytest.fixture
def checks_meet(monkeypatch):
    """Holds every request after its userName check until ``parties`` requests have checked, so all of them
    find the userName free before any writes (the interleaving a real race produces now and then)."""
    def install(parties: int):
        met = threading.Barrier(parties)
        holder = ScimUsers._user_name_holder

        def checked_then_wait(self, user_name, other_than):
            found = holder(self, user_name, other_than)
            try:
                met.wait(timeout=5)
            except threading.BrokenBarrierError:  # a later check (a retry) passes alone
                pass
            return found

        monkeypatch.setattr(ScimUsers, "_user_name_holder", checked_then_wait)
    return install


def holders(scim, name: str) -> list[dict]:
    return list(scim.db.people.find({"user_name_key": name.lower()}))


def assert_one_winner(replies, scim, name: str) -> dict:
    statuses = sorted(reply.status for reply in replies)
    assert statuses == [201] + [409] * (len(replies) - 1), [(r.status, r.body) for r in replies]
    for reply in replies:
        if reply.status == 409:
            assert reply.body["scimType"] == "uniqueness", reply.body
    stored = holders(scim, name)
    assert len(stored) == 1, stored
    winner = next(reply.body for reply in replies if reply.status == 201)
    assert stored[0]["_id"] == winner["id"]
    return winner


@pytest.mark.parametrize("name", ["race.{key}@acme.test", "race-{key}"], ids=["email-like", "id-like"])
def test_posts_that_all_found_the_user_name_free_create_one_person(scim, checks_meet, name):
    """Different externalIds, or none; an id-like userName also races for the same directory id."""
    name = name.format(key=uuid.uuid4().hex[:6])
    checks_meet(CLIENTS)
    bodies = [user(name, displayName=f"Racer {n}", **({"externalId": f"ext-{uuid.uuid4().hex[:8]}"} if n % 2 else {}))
              for n in range(CLIENTS)]
    assert_one_winner(race(scim, [("POST", "/Users", body) for body in bodies]), scim, name)


def test_unforced_concurrent_posts_create_one_person(scim):
    for _ in range(3):
        name = f"Free.{uuid.uuid4().hex[:6]}@acme.test"
        bodies = [user(name if n % 2 else name.upper(), externalId=f"ext-{uuid.uuid4().hex[:8]}")
                  for n in range(CLIENTS)]
        assert_one_winner(race(scim, [("POST", "/Users", body) for body in bodies]), scim, name)


def test_a_rename_racing_a_post_for_the_same_user_name_leaves_one_holder(scim, checks_meet):
    name = f"rename.{uuid.uuid4().hex[:6]}@acme.test"
    other = scim.create(displayName="Renamer")
    checks_meet(2)
    replies = race(scim, [("POST", "/Users", user(name, externalId="ext-post")),
                          ("PUT", f"/Users/{other['id']}", user(name, displayName="Renamer"))])
    assert sorted(reply.status for reply in replies) in ([200, 409], [201, 409]), [(r.status, r.body) for r in replies]
    assert next(reply for reply in replies if reply.status == 409).body["scimType"] == "uniqueness"
    assert len(holders(scim, name)) == 1


def test_a_deleted_users_name_may_be_taken_again_and_the_index_guards_live_ones(scim):
    name = f"again.{uuid.uuid4().hex[:6]}@acme.test"
    first = scim.create(user_name=name, externalId="ext-first")
    assert scim.call("DELETE", f"/Users/{first['id']}").status == 204
    second = scim.create(user_name=name, externalId="ext-second")  # another client id: a new person
    assert second["id"] != first["id"] and len(holders(scim, name)) == 2
    # Restoring the first now would give the name two live holders: refused.
    reply = scim.call("POST", "/Users", user(name, externalId="ext-first"))
    assert (reply.status, reply.body.get("scimType")) == (409, "uniqueness")
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        scim.db.people.insert_one({"_id": f"x-{uuid.uuid4().hex[:6]}", "user_name_key": name, "scim_deleted": False})
    assert LIVE_USER_NAME_INDEX in scim.db.people.index_information()


def test_taking_over_an_hris_record_marks_it_live_for_the_guard(scim):
    """A record the HRIS (or the seed) wrote has no scim_deleted; SCIM's first write sets it, so the index
    holds its userName from then on."""
    taken = scim.call("POST", "/Users", user("otto", displayName="Otto Teammate", **{ENTERPRISE: {}}))
    assert taken.status in (200, 201), taken.body
    assert scim.db.people.find_one({"_id": "otto"})["scim_deleted"] is False


def test_a_database_written_before_the_guard_still_starts_with_one_holder_per_user_name(scim, mongo_uri):
    """Two live people with one userName (a race before the guard existed) would make building
    the index fail at every start; goals-api starts, the one written last keeps the name, and giving it back to
    the other is a 409 ``uniqueness``."""
    name = f"twice.{uuid.uuid4().hex[:6]}@acme.test"
    first = scim.create(user_name=name, externalId=f"ext-{uuid.uuid4().hex[:8]}")
    second = scim.create(user_name=f"other.{uuid.uuid4().hex[:6]}@acme.test", externalId=f"ext-{uuid.uuid4().hex[:8]}")
    scim.db.people.drop_index(LIVE_USER_NAME_INDEX)
    try:
        scim.db.people.update_one({"_id": second["id"]}, {"$set": {"user_name": name, "user_name_key": name}})
        settings = replace(load("goals"), mongo_uri=mongo_uri, mongo_db=scim.db.name, directory_cache_seconds=0.0)
        with served(create_server, settings):
            assert LIVE_USER_NAME_INDEX in scim.db.people.index_information()
    finally:
        ensure_indexes(scim.db, INDEXES)  # the module's other tests need the guard, whatever happened here
    assert [person["_id"] for person in holders(scim, name)] == [second["id"]]
    found = scim.call("GET", "/Users?filter=" + urllib.parse.quote(f'userName eq "{name}"')).body
    assert [resource["id"] for resource in found["Resources"]] == [second["id"]]
    assert scim.call("GET", f"/Users/{first['id']}").body["userName"] == name  # still shown
    reply = scim.call("PUT", f"/Users/{first['id']}", user(name, externalId=first["externalId"]))
    assert (reply.status, reply.body.get("scimType")) == (409, "uniqueness"), reply.body


def test_the_compound_guard_of_earlier_versions_gives_way_to_the_one_field_guard_at_start(scim, mongo_uri):
    """A database from before: the guard was (user_name_key, scim_deleted), which the dev store checked by reading
    every person at every write. goals-api builds the one-field guard and drops the old one; the guard still holds."""
    people = scim.db.people
    people.drop_index(LIVE_USER_NAME_INDEX)
    people.create_index([("user_name_key", 1), ("scim_deleted", 1)], name="people_by_live_user_name", unique=True,
                        partialFilterExpression={"user_name_key": {"$exists": True}, "scim_deleted": False})
    try:
        settings = replace(load("goals"), mongo_uri=mongo_uri, mongo_db=scim.db.name, directory_cache_seconds=0.0)
        with served(create_server, settings):
            indexes = people.index_information()
            assert LIVE_USER_NAME_INDEX in indexes and "people_by_live_user_name" not in indexes
            assert indexes[LIVE_USER_NAME_INDEX]["unique"] and indexes[LIVE_USER_NAME_INDEX]["key"] == [("user_name_key", -1)]
    finally:
        ensure_indexes(scim.db, INDEXES)
    name = f"guarded.{uuid.uuid4().hex[:6]}@acme.test"
    scim.create(user_name=name, externalId=f"ext-{uuid.uuid4().hex[:8]}")
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        people.insert_one({"_id": f"x-{uuid.uuid4().hex[:6]}", "user_name_key": name, "scim_deleted": False})
    people.insert_one({"_id": f"y-{uuid.uuid4().hex[:6]}", "user_name_key": name, "scim_deleted": True})  # not live
