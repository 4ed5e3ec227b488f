"""The real parts every folder of tests shares: the mongoeco wire server, RabbitMQ, per-test databases, and the
one way to start each service in a test.

The wire server runs as its own process (as in `make run`); each test gets fresh database names in it, so
tests never see each other's data. APIs run in process (tests.support.services.served_in_process), workers
as processes (tests.support.processes.start_module). Plain helpers live in tests/support; the fixtures of
one service's tests in that folder's conftest.py.
"""

import os
import socket
import subprocess
import uuid
from dataclasses import replace

import pymongo
import pytest

from services.platform.core.config import load
from tests.support.processes import start_module, stop, wire_server
from tests.support.services import served, served_in_process

AMQP_URI = os.environ.get("AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")

# Ends what the tests leave running, failed tests' servers included, and fails the run if any outlived it.
pytest_plugins = ["tests.support.leak_guard"]


def _broker_reachable(host="127.0.0.1", port=5672) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


# --- Mongo ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory):
    if os.environ.get("TEST_MONGO_URI"):
        yield os.environ["TEST_MONGO_URI"]
        return
    process, uri = wire_server(tmp_path_factory.mktemp("mongo"))
    yield uri
    stop(process, timeout=10)


@pytest.fixture(scope="session")
def sqlite_mongo_uri(tmp_path_factory):
    """The wire server on its SQLite engine, as `make run` keeps var/: it turns queries into SQL, and refuses
    some that the memory engine takes (an empty `$in` on an indexed field, a very long one)."""
    folder = tmp_path_factory.mktemp("mongo_sqlite")
    process, uri = wire_server(folder, "--sqlite", str(folder / "store.sqlite"))
    yield uri
    stop(process, timeout=10)


@pytest.fixture
def db_name():
    return f"goals_test_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def metrics_db_name(mongo_uri):
    """A database name of the test's own for the metrics service, dropped afterwards."""
    name = f"metrics_test_{uuid.uuid4().hex[:10]}"
    yield name
    client = pymongo.MongoClient(mongo_uri)
    client.drop_database(name)
    client.close()


# --- RabbitMQ -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def amqp_uri():
    assert _broker_reachable(), "RabbitMQ is not reachable on 127.0.0.1:5672: start it with `rabbitmq-server -detached`"
    return AMQP_URI


def _rabbitmqctl(*args) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def isolated_broker_uri(amqp_uri):
    """A vhost of the test's own: no leftover or concurrent messages reach its workers' queues."""
    vhost = f"test_{uuid.uuid4().hex[:10]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield amqp_uri.rstrip("/") + "/" + vhost
    _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture
def broker_uri(amqp_uri):
    """The broker a test's services use; modules that run workers override it with isolated_broker_uri."""
    return amqp_uri


@pytest.fixture
def connection(settings):
    """A kombu connection to the test's broker (settings.amqp_uri: broker_uri's vhost)."""
    import kombu

    with kombu.Connection(settings.amqp_uri) as connection:
        yield connection


# --- settings and databases of each service -----------------------------------------------------------


@pytest.fixture
def settings(mongo_uri, broker_uri, db_name):
    """goals' settings on the test's database and broker."""
    return replace(load("goals"), mongo_uri=mongo_uri, mongo_db=db_name, amqp_uri=broker_uri, directory_cache_seconds=0.0)


@pytest.fixture
def db(settings):
    client = pymongo.MongoClient(settings.mongo_uri, tz_aware=True)
    yield client[settings.database_name]
    client.drop_database(settings.database_name)
    client.close()


@pytest.fixture
def checkins_settings(settings, goals_api):
    """Settings of the check-ins service: its own database, goals-api at the test's goals server."""
    return replace(
        load("checkins", "127.0.0.1:0"),
        mongo_uri=settings.mongo_uri,
        mongo_db=f"checkins_test_{uuid.uuid4().hex[:10]}",
        amqp_uri=settings.amqp_uri,
        goals_addr=f"127.0.0.1:{goals_api.port}",
    )


@pytest.fixture
def checkins_db(checkins_settings):
    """The check-ins service's database, read directly."""
    client = pymongo.MongoClient(checkins_settings.mongo_uri, tz_aware=True)
    yield client[checkins_settings.database_name]
    client.drop_database(checkins_settings.database_name)
    client.close()


@pytest.fixture
def metrics_settings(settings, metrics_db_name):
    """Settings of the metrics service: the test's broker, a database of its own, its own credential."""
    return replace(settings, service="metrics", mongo_db=metrics_db_name, auth=replace(settings.auth, service="metrics"))


# --- the services: APIs in process ---------------------------------------------------------------------


@pytest.fixture
def enroll(settings):
    """Makes the people a test names exist in goals' directory (the test's goals database), with their roles."""
    from tests.support.people import Enroll

    enrolling = Enroll(settings.mongo_uri, settings.database_name)
    yield enrolling
    enrolling.close()


@pytest.fixture
def goals_api(settings, enroll):
    """An in-process goals-api on a free port; returns a factory of per-person clients."""
    from services.goals.api import create_server
    from v2mom.v1 import goals_pb2_grpc

    with served_in_process(create_server, goals_pb2_grpc.GoalServiceStub, settings, enroll=enroll) as client_for:
        yield client_for


@pytest.fixture
def checkins_api(checkins_settings, enroll):
    """An in-process checkins-api on a free port; returns a factory of per-person clients (people in goals')."""
    from services.checkins.api import create_server
    from v2mom.v1 import checkins_pb2_grpc

    with served_in_process(create_server, checkins_pb2_grpc.CheckinServiceStub, checkins_settings,
                           enroll=enroll) as client_for:
        yield client_for


@pytest.fixture(scope="module")
def seeded_goals(mongo_uri):
    """A goals-api on a fresh database, the demo organisation seeded through it, once per test module."""
    from deploy.demo.goals_seed import seed
    from services.goals.api import create_server
    from tests.support.cli import SeededGoals

    settings = replace(
        load("goals"), mongo_uri=mongo_uri, mongo_db=f"goals_demo_{uuid.uuid4().hex[:10]}", directory_cache_seconds=0.0
    )
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    try:
        with served(create_server, settings) as (_, port):
            address = f"127.0.0.1:{port}"
            report = seed(settings, goals_api_address=address, progress=False)
            yield SeededGoals(address, settings, client[settings.database_name], report)
    finally:
        client.drop_database(settings.database_name)
        client.close()


# --- the services: workers as processes ------------------------------------------------------------------


@pytest.fixture
def goals_worker(settings):
    """A real goals-worker process (nameko, eventlet) on this test's database."""
    process = start_module("services.goals.worker", {
        "MONGO_URI": settings.mongo_uri, "MONGO_DB": settings.database_name, "AMQP_URI": settings.amqp_uri,
        "RELAY_INTERVAL_SECONDS": "0.05", "LOG_LEVEL": "INFO",
    })
    yield process
    stop(process)


@pytest.fixture
def checkins_worker(checkins_settings):
    """A real checkins-worker process (nameko) on the test's check-ins database."""
    process = start_module("services.checkins.worker", {
        "MONGO_URI": checkins_settings.mongo_uri, "MONGO_DB": checkins_settings.database_name,
        "AMQP_URI": checkins_settings.amqp_uri, "GOALS_ADDR": checkins_settings.goals_addr,
        "RELAY_INTERVAL_SECONDS": "0.05", "STALENESS_INTERVAL_SECONDS": "0.5",
    })
    yield process
    stop(process)


@pytest.fixture
def metrics_worker(metrics_settings, tmp_path):
    """A real metrics-worker process on the test's metrics database; its queues exist once this returns.

    ``stop()``, ``kill()`` and ``start()`` again; its log is ``.log`` (a file in tmp_path)."""
    from tests.support.metrics_service import Worker

    worker = Worker({
        **os.environ, "MONGO_URI": metrics_settings.mongo_uri, "MONGO_DB": metrics_settings.database_name,
        "AMQP_URI": metrics_settings.amqp_uri, "METRICS_STATS_FLUSH_SECONDS": "0.2",
        "LOG_LEVEL": os.environ.get("WORKER_LOG_LEVEL", "WARNING"),
    }, log=tmp_path / "metrics-worker.log")
    worker.start()
    yield worker
    worker.stop()
