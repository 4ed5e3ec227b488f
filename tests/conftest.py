"""Real parts for the tests: the mongoeco wire server, RabbitMQ, gRPC over sockets.

The wire server runs as its own process (as in `make run`); each test gets
a fresh database name in it, so tests never see each other's data.
"""

import os
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import replace

import grpc
import pymongo
import pytest

from services.platform.api.auth import bearer_metadata, mint_token
from services.platform.core.config import load
from tests.helpers_platform import log_tail, spawn

AMQP_URI = os.environ.get("AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")


def _broker_reachable(host="127.0.0.1", port=5672) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory):
    if os.environ.get("TEST_MONGO_URI"):
        yield os.environ["TEST_MONGO_URI"]
        return
    ready = tmp_path_factory.mktemp("mongo") / "uri"
    process = spawn([sys.executable, "-m", "deploy.dev.mongo_server", "--port", "0", "--ready-file", str(ready)])
    deadline = time.monotonic() + 30
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"mongo wire server did not start: {log_tail(process, 2000)}")
        time.sleep(0.05)
    yield ready.read_text()
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def amqp_uri():
    assert _broker_reachable(), "RabbitMQ is not reachable on 127.0.0.1:5672: start it with `rabbitmq-server -detached`"
    return AMQP_URI


def _rabbitmqctl(*args) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def broker_uri(amqp_uri):
    """The broker a test's services use; modules that run workers override it with isolated_broker_uri."""
    return amqp_uri


@pytest.fixture
def isolated_broker_uri(amqp_uri):
    """A vhost of the test's own: no leftover or concurrent messages reach its workers' queues."""
    vhost = f"test_{uuid.uuid4().hex[:10]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield amqp_uri.rstrip("/") + "/" + vhost
    _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture
def db_name():
    return f"goals_test_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(mongo_uri, broker_uri, db_name):
    return replace(load("goals"), mongo_uri=mongo_uri, mongo_db=db_name, amqp_uri=broker_uri, directory_cache_seconds=0.0)


@pytest.fixture
def db(settings):
    client = pymongo.MongoClient(settings.mongo_uri, tz_aware=True)
    yield client[settings.database_name]
    client.drop_database(settings.database_name)
    client.close()


def token(settings, person_id: str, roles=()) -> str:
    return mint_token(settings.auth, person_id, roles)


class Caller:
    """A real gRPC client acting as one person."""

    def __init__(self, stub, metadata):
        self.stub = stub
        self.metadata = metadata

    def __getattr__(self, rpc):
        method = getattr(self.stub, rpc)
        return lambda request, **kw: method(request, metadata=self.metadata, timeout=kw.pop("timeout", 10), **kw)


@pytest.fixture
def goals_worker(settings):
    """A real goals-worker process (nameko, eventlet) on this test's database."""
    env = {
        **os.environ,
        "MONGO_URI": settings.mongo_uri,
        "MONGO_DB": settings.database_name,
        "AMQP_URI": settings.amqp_uri,
        "RELAY_INTERVAL_SECONDS": "0.1",
        "LOG_LEVEL": "INFO",
    }
    process = spawn([sys.executable, "-m", "services.goals.worker"], env)
    yield process
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def served_in_process(create_server, stub_class, settings):
    """Starts a service's gRPC server on a free port; yields a factory of per-person clients."""
    server, port = create_server("127.0.0.1:0", settings)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = stub_class(channel)

    def client_for(person_id: str | None, roles=()) -> Caller:
        metadata = bearer_metadata(token(settings, person_id, roles)) if person_id else ()
        return Caller(stub, metadata)

    client_for.port = port
    client_for.server = server
    try:
        yield client_for
    finally:
        channel.close()
        server.stop(grace=None)


@pytest.fixture
def goals_api(settings):
    """An in-process goals-api on a free port; returns a factory of per-person clients."""
    from services.goals.api import create_server
    from v2mom.v1 import goals_pb2_grpc

    with served_in_process(create_server, goals_pb2_grpc.GoalServiceStub, settings) as client_for:
        yield client_for
