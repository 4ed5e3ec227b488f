"""Event consumption in a real nameko worker: idempotency, retries and the dead-letter queue."""

import functools
import json
import os
import sys
import time

import kombu
import pytest

from services.platform.bus.events import envelope
from tests.support.broker import queue_exists
from tests.support.processes import log_tail, spawn
from tests.support import processes

HANDLER_QUEUE = "evt-testsource-thing_happened--recorder.on_thing"


def thing(n, behaviour=None) -> dict:
    return envelope("testsource", "thing_happened", subject=f"t{n}", data={"n": n, "behaviour": behaviour})


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


@pytest.fixture
def recorder(settings, connection):
    env = {**os.environ, "MONGO_URI": settings.mongo_uri, "MONGO_DB": settings.database_name, "AMQP_URI": settings.amqp_uri}
    process = spawn([sys.executable, "-m", "tests.support.workers.recorder"], env)
    deadline = time.monotonic() + 20
    while not queue_exists(connection, HANDLER_QUEUE):
        assert process.poll() is None, log_tail(process)
        assert time.monotonic() < deadline, "the recorder never declared its queue"
        time.sleep(0.1)
    yield process
    process.terminate()
    process.wait(timeout=15)


def publish_raw(connection, body, content_type="application/cloudevents+json", routing_key="thing_happened"):
    exchange = kombu.Exchange("testsource.events", type="topic", durable=True)
    producer = kombu.Producer(connection.default_channel, exchange=exchange)
    payload = body if isinstance(body, (bytes, str)) else json.dumps(body)
    producer.publish(payload, routing_key=routing_key, content_type=content_type, content_encoding="utf-8", declare=[exchange])


wait_for = functools.partial(processes.wait_for, timeout=20.0)


def dead_letters(connection) -> list:
    queue = kombu.Queue(HANDLER_QUEUE + ".dlq")(connection.channel())
    found = []
    while (message := queue.get(no_ack=True)) is not None:
        found.append(message)
    return found


def test_bad_events_go_to_the_dead_letter_queue_and_the_worker_keeps_going(db, connection, recorder):
    publish_raw(connection, b"{not json")
    publish_raw(connection, {"hello": "not a cloudevent"})
    publish_raw(connection, b"\x00\x01", content_type="application/x-unknown")
    publish_raw(connection, thing(1, behaviour="poison"))
    publish_raw(connection, thing(2, behaviour="broken"))
    publish_raw(connection, thing(3))

    wait_for(lambda: db.applied.count_documents({}) == 1, message="the good event was not applied")
    collected = []

    def all_dead_lettered():
        collected.extend(dead_letters(connection))
        return len(collected) >= 5

    wait_for(all_dead_lettered, message="not all bad events were dead-lettered")
    assert len(collected) == 5
    reasons = {m.headers["x-death"][0]["reason"] for m in collected}
    assert reasons == {"rejected"}
    assert recorder.poll() is None, "the worker died on a poison message"


def test_transient_failures_are_retried_within_bounds(db, connection, recorder):
    publish_raw(connection, thing(7, behaviour="flaky"))
    wait_for(lambda: db.applied.count_documents({"n": 7}) == 1)
    assert db.attempts.find_one()["n"] == 2
    assert dead_letters(connection) == []


def test_an_event_that_keeps_losing_races_is_requeued_not_dead_lettered(db, connection, recorder):
    publish_raw(connection, thing(8, behaviour="contended"))
    wait_for(lambda: db.applied.count_documents({"n": 8}) == 1, message="the contended event was never applied")
    assert db.attempts.find_one()["n"] == 5  # three tries in the first delivery, two in the next
    assert dead_letters(connection) == []


def test_replayed_event_is_applied_once(db, connection, recorder):
    event = thing(9)
    for _ in range(3):
        publish_raw(connection, event)
    publish_raw(connection, thing(10))
    wait_for(lambda: db.applied.count_documents({"n": 10}) == 1)
    time.sleep(0.3)
    assert db.applied.count_documents({"n": 9}) == 1


def test_an_event_whose_source_is_not_its_exchange_is_dead_lettered_with_the_reason(db, connection, recorder):
    """Finding 7: a consumer took any `source` from any exchange, so one service could speak for another."""
    forged = envelope("goals", "thing_happened", subject="t11", data={"n": 11})  # goals' event on testsource's exchange
    publish_raw(connection, forged)
    publish_raw(connection, thing(12))
    wait_for(lambda: db.applied.count_documents({"n": 12}) == 1, message="the good event was not applied")
    collected = []

    def dead_lettered():
        collected.extend(dead_letters(connection))
        return collected

    wait_for(dead_lettered, message="the forged event was not dead-lettered")
    assert [json.loads(m.body)["id"] for m in collected] == [forged["id"]]
    assert db.applied.count_documents({"n": 11}) == 0
    wait_for(lambda: "wrong source" in log_tail(recorder, 20000), message="no reason was logged")
    assert "source '/v2mom/goals' does not match exchange 'testsource.events'" in log_tail(recorder, 20000)
