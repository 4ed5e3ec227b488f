"""The metrics service in tests: metrics-worker as a process (``Worker``, the queues it declares, events
published to it and how many it has handled) and metrics-api in process (``start_metrics_api``, ``scrape``)."""

import json
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import replace

import grpc
import kombu

from services.metrics import consume, store
from services.metrics.api import Sources, create_server
from tests.support.broker import queue_exists
from tests.support.processes import spawn, stop
from tests.support.services import Caller, metadata_for, served
from v2mom.v1 import metrics_pb2_grpc

QUEUES = [f"evt-{source}-{event_type}--metrics_worker.on_{source}_event"
          for source, types in consume.SUBSCRIPTIONS.items() for event_type in types]


class Worker:
    """Starts, kills and restarts `python -m services.metrics.worker` (``env`` is its whole environment; its log
    goes to ``log``, or to env["WORKER_LOG"], or to a temporary file); ``start`` returns once its queues exist."""

    def __init__(self, env: dict, connection=None, log=None):
        self.env = env
        self.connection = connection
        self.log = log or env.get("WORKER_LOG")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = spawn([sys.executable, "-m", "services.metrics.worker"], self.env, self.log)
        with ExitStack() as scope:
            connection = self.connection or scope.enter_context(kombu.Connection(self.env["AMQP_URI"]))
            deadline = time.monotonic() + 30
            while not all(queue_exists(connection, name) for name in QUEUES):
                assert self.process.poll() is None, f"the worker exited with {self.process.returncode}"
                assert time.monotonic() < deadline, "the worker never declared its queues"
                time.sleep(0.1)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process:
            stop(self.process)


def publish(connection, events, raw: list[tuple[str, str, bytes]] = ()) -> None:
    channel = connection.channel()
    exchanges = {source: kombu.Exchange(f"{source}.events", type="topic", durable=True) for source in ("goals", "checkins")}
    producer = kombu.Producer(channel)
    for exchange in exchanges.values():
        exchange(channel).declare()
    for event in events:
        source = event["source"].rsplit("/", 1)[1]
        producer.publish(json.dumps(event), exchange=exchanges[source], routing_key=event["type"], delivery_mode=2,
                         content_type="application/cloudevents+json", content_encoding="utf-8")
    for source, routing_key, body in raw:
        producer.publish(body, exchange=exchanges[source], routing_key=routing_key, delivery_mode=2,
                         content_type="application/cloudevents+json", content_encoding="utf-8")
    channel.close()


def handled(db) -> int:
    """Deliveries the worker has finished with: processed or dead-lettered (tallies flush every 0.2 s)."""
    total = 0
    for doc in store.pipeline(db):
        total += sum((doc.get("processed") or {}).values())
        total += sum(n for reasons in (doc.get("dead_lettered") or {}).values() for n in reasons.values())
    return total


def start_metrics_api(metrics_settings, goals_addr, checkins_addr, clock, directory_addr=None, enroll=None):
    """metrics-api in process: rebuilding from ``goals_addr`` and ``checkins_addr``, asking who callers are at
    ``directory_addr`` (goals-api; default ``goals_addr``), where ``enroll`` puts the people tests name."""
    settings = replace(metrics_settings, goals_addr=directory_addr or goals_addr)
    running = ExitStack()
    server, port = running.enter_context(served(create_server, settings, "127.0.0.1:0",
                                                Sources(goals_addr, checkins_addr, grace_seconds=1.0), clock))
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = metrics_pb2_grpc.MetricsServiceStub(channel)

    def client_for(person_id, roles=()):
        return Caller(stub, metadata_for(settings, person_id, roles, enroll))

    client_for.http_port = server.http_port
    client_for.stub = stub

    def stop():
        channel.close()
        running.close()
        server.http.shutdown()

    return client_for, stop


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return response.read().decode()


def dead_letters(connection) -> list:
    found = []
    channel = connection.channel()
    for name in QUEUES:
        queue = kombu.Queue(name + ".dlq")(channel)
        while (message := queue.get(no_ack=True)) is not None:
            found.append(message)
    channel.close()
    return found
