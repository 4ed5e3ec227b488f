"""Event consumption in a real nameko worker: idempotency, retries, the dead-letter queue, and the queue type,
delivery limit, prefetch and concurrency settings as the broker sees them."""

import functools
import json
import os
import re
import subprocess
import sys
import time
from urllib.parse import urlsplit

import kombu
import pytest

from services.platform.bus.events import envelope
from services.platform.core.config import ConfigError, load
from services.platform.worker.runner import nameko_config
from tests.support.broker import queue_exists
from tests.support.processes import log_tail, spawn
from tests.support import processes

HANDLER_QUEUE = "evt-testsource-thing_happened--recorder.on_thing"


def thing(n, behaviour=None) -> dict:
    return envelope("testsource", "thing_happened", subject=f"t{n}", data={"n": n, "behaviour": behaviour})


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


def spawn_recorder(settings, **env):
    return spawn([sys.executable, "-m", "tests.support.workers.recorder"], {
        **os.environ, "MONGO_URI": settings.mongo_uri, "MONGO_DB": settings.database_name,
        "AMQP_URI": settings.amqp_uri, **env})


def consuming(connection, process) -> None:
    """Waits until the recorder's handler queue has its consumer."""
    deadline = time.monotonic() + 20
    while not queue_exists(connection, HANDLER_QUEUE) or not consumers(connection):
        assert process.poll() is None, log_tail(process)
        assert time.monotonic() < deadline, "the recorder never consumed its queue"
        time.sleep(0.1)


def consumers(connection) -> int:
    return connection.channel().queue_declare(HANDLER_QUEUE, passive=True).consumer_count


@pytest.fixture
def recorder(settings, connection):
    process = spawn_recorder(settings)
    consuming(connection, process)
    yield process
    processes.stop(process)


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


def wait_for_dead_letters(connection, count: int, message: str) -> list:
    """The DLQ's messages once there are at least ``count`` of them (taken off the queue)."""
    collected = []

    def enough():
        collected.extend(dead_letters(connection))
        return len(collected) >= count

    wait_for(enough, message=message)
    return collected


def test_bad_events_go_to_the_dead_letter_queue_and_the_worker_keeps_going(db, connection, recorder):
    publish_raw(connection, b"{not json")
    publish_raw(connection, {"hello": "not a cloudevent"})
    publish_raw(connection, b"\x00\x01", content_type="application/x-unknown")
    publish_raw(connection, thing(1, behaviour="poison"))
    publish_raw(connection, thing(2, behaviour="broken"))
    publish_raw(connection, thing(3))

    wait_for(lambda: db.applied.count_documents({}) == 1, message="the good event was not applied")
    collected = wait_for_dead_letters(connection, 5, "not all bad events were dead-lettered")
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
    collected = wait_for_dead_letters(connection, 1, "the forged event was not dead-lettered")
    assert [json.loads(m.body)["id"] for m in collected] == [forged["id"]]
    assert db.applied.count_documents({"n": 11}) == 0
    wait_for(lambda: "wrong source" in log_tail(recorder, 20000), message="no reason was logged")
    assert "source '/v2mom/goals' does not match exchange 'testsource.events'" in log_tail(recorder, 20000)


# --- queue type, delivery limit, prefetch and concurrency (AMQP_QUEUE_TYPE, AMQP_DELIVERY_LIMIT, AMQP_PREFETCH,
# WORKER_CONCURRENCY): what the broker says about the queues and consumers a real worker declares ------------------


def rabbitmqctl_json(settings, *args) -> list[dict]:
    """``rabbitmqctl -q <args> -p <the test's vhost> --formatter json``, parsed."""
    vhost = urlsplit(settings.amqp_uri).path.lstrip("/") or "/"
    result = subprocess.run(["rabbitmqctl", "-q", *args, "-p", vhost, "--formatter", "json"],
                            capture_output=True, text=True, timeout=60, check=True)
    return json.loads(result.stdout)


def broker_queues(settings) -> dict[str, dict]:
    rows = rabbitmqctl_json(settings, "list_queues", "name", "type", "durable", "auto_delete", "exclusive",
                            "arguments", "messages_ready", "messages_unacknowledged")
    # arguments come as [name, type, value]
    return {row["name"]: {**row, "arguments": {a[0]: a[-1] for a in row["arguments"]}} for row in rows}


@pytest.fixture
def quorum_recorder(settings, connection):
    process = spawn_recorder(settings, AMQP_QUEUE_TYPE="quorum", AMQP_DELIVERY_LIMIT="2")
    consuming(connection, process)
    yield process
    processes.stop(process)


def test_quorum_queues_are_declared_durable_with_a_delivery_limit_and_dead_lettering(settings, quorum_recorder):
    queues = broker_queues(settings)
    handler, dlq = queues[HANDLER_QUEUE], queues[HANDLER_QUEUE + ".dlq"]
    assert handler["type"] == dlq["type"] == "quorum"
    for queue in (handler, dlq):
        assert queue["durable"] is True and queue["auto_delete"] is False and not queue["exclusive"]  # '' on quorum
    assert handler["arguments"] == {"x-queue-type": "quorum", "x-delivery-limit": 2,
                                    "x-dead-letter-exchange": "recorder.dlx", "x-dead-letter-routing-key": HANDLER_QUEUE}


def test_an_event_requeued_past_the_delivery_limit_is_dead_lettered_and_a_good_one_applied_once(
        db, settings, connection, quorum_recorder):
    """A handler whose service stays Unavailable requeues its event every time: on a quorum queue the broker
    dead-letters it after AMQP_DELIVERY_LIMIT requeues instead of handing it back forever."""
    stuck, good = thing(20, behaviour="unavailable"), thing(21)
    publish_raw(connection, stuck)
    publish_raw(connection, good)
    wait_for(lambda: db.applied.count_documents({"n": 21}) == 1, message="the good event was not applied")
    [message] = wait_for_dead_letters(connection, 1, "the event that keeps failing was never dead-lettered")
    assert json.loads(message.body)["id"] == stuck["id"]
    [death] = message.headers["x-death"]
    assert (death["reason"], death["queue"], death["count"]) == ("delivery_limit", HANDLER_QUEUE, 1)
    assert message.headers["x-first-death-reason"] == "delivery_limit"
    assert db.attempts.find_one({"_id": stuck["id"]})["n"] == 3  # the first delivery and two redeliveries
    logged = log_tail(quorum_recorder, 20000)
    assert '"msg": "event dead-lettered: delivery limit reached"' in logged and '"deliveries": 3' in logged
    time.sleep(1.5)  # nothing comes back: not redelivered, and the good event was not applied again
    assert db.attempts.find_one({"_id": stuck["id"]})["n"] == 3
    assert db.applied.count_documents({}) == 1
    assert broker_queues(settings)[HANDLER_QUEUE]["messages_ready"] == 0
    assert quorum_recorder.poll() is None


def test_a_queue_that_exists_with_another_type_stops_the_worker_saying_what_to_do(settings, connection):
    # The queue as a classic worker declared it, before AMQP_QUEUE_TYPE=quorum.
    kombu.Queue(HANDLER_QUEUE, durable=True, queue_arguments={
        "x-dead-letter-exchange": "recorder.dlx", "x-dead-letter-routing-key": HANDLER_QUEUE})(connection.channel()).declare()
    process = spawn_recorder(settings, AMQP_QUEUE_TYPE="quorum")
    try:
        assert process.wait(timeout=30) == 3, log_tail(process)
        logged = log_tail(process, 20000)
    finally:
        processes.stop(process)
    assert f"queue '{HANDLER_QUEUE}'" in logged and "inequivalent arg 'x-queue-type'" in logged
    assert "AMQP_QUEUE_TYPE=quorum" in logged and f"rabbitmqctl delete_queue -p" in logged
    assert broker_queues(settings)[HANDLER_QUEUE]["type"] == "classic"  # left as it was


def test_classic_stays_the_default_without_a_type_argument(settings, recorder):
    handler = broker_queues(settings)[HANDLER_QUEUE]
    assert handler["type"] == "classic" and "x-queue-type" not in handler["arguments"]
    assert "x-delivery-limit" not in handler["arguments"]


def test_prefetch_and_concurrency_reach_the_broker_and_the_handlers(db, settings, connection):
    """AMQP_PREFETCH=4: the broker keeps four deliveries unacknowledged on the consumer; WORKER_CONCURRENCY=2:
    no more than two handlers run at once."""
    process = spawn_recorder(settings, WORKER_CONCURRENCY="2", AMQP_PREFETCH="4")
    try:
        consuming(connection, process)
        [consumer] = [c for c in rabbitmqctl_json(settings, "list_consumers", "queue_name", "prefetch_count")
                      if c["queue_name"] == HANDLER_QUEUE]
        assert consumer["prefetch_count"] == 4
        for n in range(8):  # two at a time, two seconds each: four deliveries stay in flight for six seconds
            publish_raw(connection, envelope("testsource", "thing_happened", subject=f"s{n}",
                                             data={"n": n, "behaviour": "slow", "seconds": 2.0}))
        wait_for(lambda: connection.channel().queue_declare(HANDLER_QUEUE, passive=True).message_count == 4,
                 message="the broker did not deliver the prefetch and keep the rest")
        wait_for(lambda: broker_queues(settings)[HANDLER_QUEUE]["messages_unacknowledged"] == 4,
                 message="the consumer never had its prefetch unacknowledged")
        wait_for(lambda: db.runs.count_documents({}) == 8, message="the slow events were not all handled")
        runs = sorted((run["start"], run["end"]) for run in db.runs.find())
        assert max(sum(1 for s, e in runs if s <= start < e) for start, _ in runs) == 2
    finally:
        processes.stop(process)


def test_prefetch_defaults_to_the_concurrency(settings, connection):
    process = spawn_recorder(settings, WORKER_CONCURRENCY="3")
    try:
        consuming(connection, process)
        prefetch = {c["queue_name"]: c["prefetch_count"]
                    for c in rabbitmqctl_json(settings, "list_consumers", "queue_name", "prefetch_count")}
        assert prefetch == {HANDLER_QUEUE: 3}
    finally:
        processes.stop(process)


@pytest.mark.parametrize("variable, value, error", [
    ("AMQP_QUEUE_TYPE", "stream", "AMQP_QUEUE_TYPE must be one of classic, quorum, got 'stream'"),
    ("AMQP_DELIVERY_LIMIT", "0", "AMQP_DELIVERY_LIMIT must be at least 1, got 0"),
    ("WORKER_CONCURRENCY", "many", "WORKER_CONCURRENCY must be an integer, got 'many'"),
    ("AMQP_PREFETCH", "-1", "AMQP_PREFETCH must be at least 0, got -1"),
])
def test_queue_and_consumer_settings_refuse_what_they_cannot_mean(monkeypatch, variable, value, error):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=re.escape(error)):
        load("recorder")


def test_queue_and_consumer_settings_reach_nameko(monkeypatch):
    assert nameko_config(load("recorder")) | {"AMQP_URI": ""} == {
        "AMQP_URI": "", "serializer": "json", "ACCEPT": ["json", "cloudevents"], "max_workers": 10,
        "AMQP_PREFETCH": 10, "AMQP_QUEUE_TYPE": "classic", "AMQP_DELIVERY_LIMIT": 20}
    monkeypatch.setenv("AMQP_QUEUE_TYPE", "Quorum")
    monkeypatch.setenv("WORKER_CONCURRENCY", "32")
    monkeypatch.setenv("AMQP_PREFETCH", "64")
    monkeypatch.setenv("AMQP_DELIVERY_LIMIT", "5")
    config = nameko_config(load("recorder"))
    assert (config["AMQP_QUEUE_TYPE"], config["max_workers"], config["AMQP_PREFETCH"],
            config["AMQP_DELIVERY_LIMIT"]) == ("quorum", 32, 64, 5)
