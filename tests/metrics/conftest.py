"""Fixtures of the metrics tests: the one metrics database (indexes in place) of a test."""

import pymongo
import pytest

from services.metrics import store
from services.platform.store.mongo import ensure_indexes


@pytest.fixture
def metrics_db(mongo_uri, metrics_db_name):
    """The metrics service's database of this test (the one metrics_settings names), indexes in place."""
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    db = client[metrics_db_name]
    ensure_indexes(db, store.INDEXES)
    yield db
    client.drop_database(db.name)
    client.close()
