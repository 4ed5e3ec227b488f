"""Fixtures of the notify tests: notify-api in process, notify-worker processes, its database and an SMTP sink.

The channel tests start their own SMTP and HTTP receivers (tests/support/sinks.py).
"""

import uuid
from dataclasses import replace

import amqp
import kombu
import pymongo
import pytest

from services.notify.api import create_server
from services.platform.core.config import load
from tests.support.events_probe import EventProbe
from tests.support.goals import build_org
from tests.support.notify import NotifyWorker
from tests.support.notify_world import build_world
from tests.support.services import served_in_process
from tests.support.sinks import smtp_sink
from v2mom.v1 import notify_pb2_grpc

# --- notify-api (tests/notify/test_api_*.py, test_http.py, test_collector.py) ---------------------------


@pytest.fixture
def notify_settings(mongo_uri):
    """notify's settings on a database of the test's own (dropped afterwards by notify_db)."""
    return replace(load("notify", "127.0.0.1:0"), mongo_uri=mongo_uri, mongo_db=f"notify_test_{uuid.uuid4().hex[:10]}")


@pytest.fixture
def notify_db(notify_settings):
    """The notify database of this test, read and written directly (as notify-worker would)."""
    client = pymongo.MongoClient(notify_settings.mongo_uri, tz_aware=True)
    yield client[notify_settings.database_name]
    client.drop_database(notify_settings.database_name)
    client.close()


@pytest.fixture
def notify_api(notify_settings, notify_db, goals_api, enroll):
    """An in-process notify-api (gRPC and HTTP on free ports); a factory of per-person clients, people of the
    test's goals-api, which notify-api asks who they are.

    ``notify_api.http_url`` is its HTTP side; webhooks to private addresses stay refused
    (NOTIFY_ALLOW_PRIVATE_WEBHOOKS as the environment has it)."""
    settings = replace(notify_settings, goals_addr=f"127.0.0.1:{goals_api.port}")
    with served_in_process(create_server, notify_pb2_grpc.NotifyServiceStub, settings, "127.0.0.1:0",
                           enroll=enroll) as client_for:
        client_for.http_url = f"http://127.0.0.1:{client_for.server.http.port}"
        try:
            yield client_for
        finally:
            client_for.server.http.shutdown()


# --- notify-worker processes (tests/notify/test_worker_process.py, test_reminders.py, test_digest.py) ---------


@pytest.fixture
def notify_db_name(mongo_uri):
    name = f"notify_worker_test_{uuid.uuid4().hex[:10]}"
    yield name
    client = pymongo.MongoClient(mongo_uri)
    client.drop_database(name)
    client.close()


@pytest.fixture
def ndb(mongo_uri, notify_db_name):
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    yield client[notify_db_name]
    client.close()


@pytest.fixture
def sink(tmp_path):
    with smtp_sink(tmp_path / "smtp") as sink:
        yield sink


@pytest.fixture
def org(db):
    """The goals directory of tests.support.goals (olive reports to lee, lee to dana; emails <id>@acme.test)."""
    return build_org(db)


@pytest.fixture(scope="session", autouse=True)
def purge_unrouted_notify_events(amqp_uri):
    """notify.events has no consumer here, so what these tests relay is kept in notify.events.unrouted
    (services/platform/bus/outbox.py); emptied at the end, so runs do not pile up on the machine's broker."""
    yield
    with kombu.Connection(amqp_uri) as connection:
        try:
            connection.channel().queue_purge("notify.events.unrouted")
        except amqp.exceptions.NotFound:
            pass


@pytest.fixture
def probe(settings):
    probe = EventProbe(settings.amqp_uri, "notify.events")
    yield probe
    probe.close()


@pytest.fixture
def notify_worker(settings, notify_db_name, goals_api, sink, tmp_path):
    worker = NotifyWorker(settings, notify_db_name, goals_api.port, sink.port, tmp_path / "notify-worker.log")
    try:
        yield worker
    finally:
        worker.stop_all()


@pytest.fixture
def world(notify_db):
    """notify's handlers and dispatcher in process on this test's database (tests/support/notify_world.py)."""
    return build_world(notify_db)
