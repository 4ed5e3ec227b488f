"""Fixtures of the check-ins tests: the goals side of their world (tests.support.checkins), on the test's
goals database, through the test's goals-api; the check-ins store read directly (``store``), and a check-ins
database for the in-process tests that need no API (``cdb``). checkins_api, checkins_worker and checkins_db are
the root's."""

import uuid

import pymongo
import pytest

from services.checkins import clock_store, progress_store
from services.platform.store.mongo import ensure_indexes
from tests.support.checkins import GoalsWorld, build_goals_world
from tests.support.checkins_requests import Store
from tests.support.mongo import Commands


@pytest.fixture
def goals_world(db, goals_api) -> GoalsWorld:
    return build_goals_world(db, goals_api)


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
