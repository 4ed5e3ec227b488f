"""Fixtures of the metrics tests: the one metrics database (indexes in place) of a test, and the real worker's
database beside an oracle's."""

import uuid

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


@pytest.fixture
def databases(mongo_uri, metrics_db_name):
    """The worker's database (metrics_worker's), and the oracle's."""
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    names = [metrics_db_name, f"metrics_test_{uuid.uuid4().hex[:10]}"]
    worker_db, oracle_db = client[names[0]], client[names[1]]
    ensure_indexes(oracle_db, store.INDEXES)
    yield worker_db, oracle_db
    for name in names:
        client.drop_database(name)
    client.close()


@pytest.fixture
def worker(databases, metrics_worker):
    """The root's metrics_worker, on the first of ``databases``."""
    return metrics_worker
