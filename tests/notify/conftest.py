"""Fixtures of the notify tests. The channel tests start their own SMTP and HTTP receivers (tests/support/sinks.py)."""


# --- notify-api (tests/notify/test_api_*.py, test_http.py, test_collector.py) ---------------------------


import uuid as _uuid
from dataclasses import replace as _replace

import grpc as _grpc
import pymongo as _pymongo
import pytest as _pytest


@_pytest.fixture
def notify_settings(mongo_uri):
    """notify's settings on a database of the test's own (dropped afterwards by notify_db)."""
    from services.platform.core.config import load

    return _replace(load("notify", "127.0.0.1:0"), mongo_uri=mongo_uri, mongo_db=f"notify_test_{_uuid.uuid4().hex[:10]}")


@_pytest.fixture
def notify_db(notify_settings):
    """The notify database of this test, read and written directly (as notify-worker would)."""
    client = _pymongo.MongoClient(notify_settings.mongo_uri, tz_aware=True)
    yield client[notify_settings.database_name]
    client.drop_database(notify_settings.database_name)
    client.close()


@_pytest.fixture
def notify_api(notify_settings, notify_db):
    """An in-process notify-api (gRPC and HTTP on free ports); a factory of per-person clients.

    ``notify_api.http_url`` is its HTTP side; webhooks to private addresses stay refused
    (NOTIFY_ALLOW_PRIVATE_WEBHOOKS as the environment has it)."""
    from services.notify.api import create_server
    from services.platform.api.auth import bearer_metadata, mint_token
    from tests.support.services import Caller
    from v2mom.v1 import notify_pb2_grpc

    server, port = create_server("127.0.0.1:0", notify_settings, "127.0.0.1:0")
    server.start()
    channel = _grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = notify_pb2_grpc.NotifyServiceStub(channel)

    def client_for(person_id: str | None, roles=()):
        metadata = bearer_metadata(mint_token(notify_settings.auth, person_id, roles)) if person_id else ()
        return Caller(stub, metadata)

    client_for.port = port
    client_for.http_url = f"http://127.0.0.1:{server.http.port}"
    try:
        yield client_for
    finally:
        channel.close()
        server.http.shutdown()
        server.stop(grace=None)
