"""Fixtures of the scale tests: the whole system as replica processes (tests/support/cluster.py) on a broker
vhost and a wire store of its own, an SMTP sink for notify-worker's mail, and metrics-api in process with a
pinned clock."""

from dataclasses import replace
from datetime import UTC, datetime

from v2mom.v1 import checkins_pb2_grpc, goals_pb2_grpc

import pymongo
import pytest

from tests.support.cluster import Cluster, balanced_clients
from tests.support.metrics_service import start_metrics_api
from tests.support.processes import stop, wire_server
from tests.support.sinks import smtp_sink


@pytest.fixture
def store(tmp_path):
    """A wire server of the test's own: the chaos loop pauses it, and no other test shares it."""
    process, uri = wire_server(tmp_path)
    try:
        yield process, uri
    finally:
        stop(process, timeout=10)


@pytest.fixture
def mongo_uri(store):
    return store[1]


@pytest.fixture
def store_process(store):
    return store[0]


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


@pytest.fixture
def sink(tmp_path):
    with smtp_sink(tmp_path / "smtp") as sink:
        yield sink


@pytest.fixture
def cluster(mongo_uri, broker_uri, sink, tmp_path):
    """Two replicas of every api and worker, all ready; stopped, and their databases dropped, at the end."""
    running = Cluster(mongo_uri, broker_uri, tmp_path, replicas_each=2, extra_env={
        "NOTIFY_SMTP_HOST": "127.0.0.1", "NOTIFY_SMTP_PORT": str(sink.port),
        "NOTIFY_PORTAL_URL_TEMPLATE": "https://portal.test/v2moms/{v2mom_id}",
        "NOTIFY_DISPATCH_INTERVAL_SECONDS": "0.1", "NOTIFY_SCHEDULE_INTERVAL_SECONDS": "0.2",
        "METRICS_SNAPSHOT_INTERVAL_SECONDS": "2",
    })
    try:
        yield running.start()
    finally:
        running.stop()
        client = pymongo.MongoClient(mongo_uri)
        for name in running.databases.values():
            client.drop_database(name)
        client.close()


@pytest.fixture
def goals_settings(settings, cluster):
    """goals' settings on the cluster's goals database (the seed writes the directory there)."""
    return replace(settings, mongo_db=cluster.databases["goals"])


@pytest.fixture
def metrics_apis(settings, cluster):
    """Two in-process metrics-api replicas on the cluster's metrics database; ``clock[0]`` is their now."""
    clock = [datetime.now(UTC)]
    metrics_settings = replace(settings, service="metrics", mongo_db=cluster.databases["metrics"],
                               auth=replace(settings.auth, service="metrics"))
    started = [start_metrics_api(metrics_settings, cluster.target("goals"), cluster.target("checkins"),
                                 lambda: clock[0]) for _ in range(2)]
    try:
        yield [client for client, _ in started], clock
    finally:
        for _, stop_api in started:
            stop_api()


@pytest.fixture
def stores(settings, cluster):
    """The cluster's databases by service ("goals", "checkins", "metrics", "notify"), read directly."""
    client = pymongo.MongoClient(settings.mongo_uri, tz_aware=True)
    yield {service: client[name] for service, name in cluster.databases.items()}
    client.close()


@pytest.fixture
def apis(settings, cluster):
    """Factories of per-person clients of goals-api and checkins-api, each balanced over its replicas."""
    goals = balanced_clients(settings, cluster.target("goals"), goals_pb2_grpc.GoalServiceStub)
    checkins = balanced_clients(settings, cluster.target("checkins"), checkins_pb2_grpc.CheckinServiceStub)
    yield goals, checkins
    goals.close()
    checkins.close()
