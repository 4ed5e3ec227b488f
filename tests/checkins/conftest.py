"""Fixtures of the check-ins tests: the goals side of their world (tests.support.checkins), on the test's
goals database, through the test's goals-api; the check-ins store read directly (``store``), and a check-ins
database for the in-process tests that need no API (``cdb``). checkins_api, checkins_worker and checkins_db are
the root's."""

import uuid

import pymongo
import pytest

from services.checkins import clock_store, progress_store
from services.goals.directory import Directory
from services.platform.store.mongo import ensure_indexes
from tests.support.checkins import FY2027_DATES, GoalsWorld, publish_v2mom, world_content
from tests.support.checkins_requests import Store
from tests.support.mongo import Commands
from v2mom.v1 import common_pb2, goals_pb2


@pytest.fixture
def goals_world(db, goals_api) -> GoalsWorld:
    """Team 'onboarding' led by lee; ann and rob in it, cat a peer elsewhere, ada an admin.

    Published: the team V2MOM (lee) and ann's V2MOM aligned to it. Draft: rob's.
    The cycle FY2027 started 2026-02-01 and ends on FY2027_LAST_DAY, half a year from today.
    """
    directory = Directory(db, cache_seconds=0)
    directory.upsert_cycle("FY2027", *FY2027_DATES)
    directory.upsert_cycle("FY2025", "2024-02-01", "2025-01-31")
    directory.upsert_org_unit({"_id": "acme", "name": "Acme", "level": "ORG_LEVEL_COMPANY", "leader_id": "ceo"})
    directory.upsert_org_unit({"_id": "onboarding", "name": "Onboarding", "level": "ORG_LEVEL_TEAM", "parent_id": "acme", "leader_id": "lee"})
    directory.upsert_org_unit({"_id": "billing", "name": "Billing", "level": "ORG_LEVEL_TEAM", "parent_id": "acme", "leader_id": "cat"})
    for person, unit, manager, roles in (
        ("ceo", "acme", None, []), ("ada", "acme", "ceo", ["admin"]), ("lee", "onboarding", "ceo", []),
        ("ann", "onboarding", "lee", []), ("rob", "onboarding", "lee", []), ("cat", "billing", "ceo", []),
    ):
        directory.upsert_person({"_id": person, "display_name": person.title(), "org_unit_id": unit, "manager_id": manager, "roles": roles})
    team = publish_v2mom(goals_api, "lee", "ceo", world_content("Onboarding FY27"), level=common_pb2.ORG_LEVEL_TEAM, org_unit_id="onboarding")
    ann = publish_v2mom(goals_api, "ann", "lee", world_content(), parent_id=team)
    draft = goals_api("rob").CreateV2MOM(
        goals_pb2.CreateV2MOMRequest(level=common_pb2.ORG_LEVEL_INDIVIDUAL, cycle_id="FY2027", content=world_content("Rob FY27"))
    ).id
    return GoalsWorld(goals_api, team, ann, draft)


@pytest.fixture
def store(checkins_db):
    return Store(checkins_db)


@pytest.fixture
def cdb(mongo_uri):
    """A check-ins database of the test's own, for projections run in process (no API, no goals-api)."""
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    name = f"checkins_unit_{uuid.uuid4().hex[:10]}"
    # The indexes checkins-worker makes at start: some reads name theirs.
    ensure_indexes(client[name], progress_store.INDEXES + clock_store.INDEXES)
    yield client[name]
    client.drop_database(name)
    client.close()


@pytest.fixture
def recorded_store(mongo_uri):
    """A check-ins database of the test's own, and the record of every command its client sends
    (tests/support/mongo.Commands): for tests of what a path costs the store."""
    commands = Commands()
    client = pymongo.MongoClient(mongo_uri, tz_aware=True, event_listeners=[commands])
    name = f"checkins_cost_{uuid.uuid4().hex[:10]}"
    yield client[name], commands
    client.drop_database(name)
    client.close()
