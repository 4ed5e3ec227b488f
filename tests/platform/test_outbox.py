"""The outbox relay against the real broker and the wire store."""

import json
import uuid

import eventlet
import kombu
import pymongo
import pytest

from services.platform.bus.events import envelope
from services.platform.worker.deps import SerialRelay
from services.platform.bus.outbox import ConfirmingPublisher, OutboxRelay, PublishFailed, new_document_with_events, with_events
from tests.support.events_probe import EventProbe
from tests.support.mongo import Commands

EXCHANGE_SERVICE = "outboxtest"


def event(n: int) -> dict:
    return envelope(EXCHANGE_SERVICE, "thing_happened", subject=f"agg{n}", data={"n": n})


@pytest.fixture
def probe(amqp_uri):
    probe = EventProbe(amqp_uri, f"{EXCHANGE_SERVICE}.events")
    yield probe
    probe.close()


def relay_for(db, amqp_uri, batch_size=200) -> OutboxRelay:
    return OutboxRelay.for_service(db, EXCHANGE_SERVICE, ["things"], amqp_uri, batch_size=batch_size)


def relay_recording_updates(mongo_uri, db, amqp_uri, append_once=frozenset()) -> tuple[int, list[dict]]:
    """Relays ``things`` until empty through a client of its own: how many events went, and the filter of each
    update it sent."""
    commands = Commands()
    client = pymongo.MongoClient(mongo_uri, event_listeners=[commands])
    relay = OutboxRelay.for_service(client[db.name], EXCHANGE_SERVICE, ["things"], amqp_uri, append_once=append_once)
    try:
        relayed = []
        sent = commands.during(lambda: relayed.append(relay.relay_until_empty()))
    finally:
        relay.close()
        client.close()
    return relayed[0], [filter_ for command, _, filter_ in sent if command == "update"]


def test_relay_publishes_every_pending_event_once_and_clears_the_flag(db, amqp_uri, probe):
    for n in range(25):
        db.things.insert_one(new_document_with_events({"_id": f"agg{n}"}, [event(n), event(n)]))
    relay = relay_for(db, amqp_uri, batch_size=10)
    try:
        assert relay.relay_until_empty() == 50
    finally:
        relay.close()
    received = probe.drain(until_count=50)
    probe.settle(quiet_seconds=0.3)
    assert len(probe.received) == 50 and len({e["id"] for e in received}) == 50
    assert db.things.count_documents({"outbox_pending": True}) == 0
    assert db.things.count_documents({"outbox": {"$size": 0}}) == 25


def test_append_once_documents_are_cleared_in_one_write_each(mongo_uri, db, amqp_uri, probe):
    for n in range(5):
        db.things.insert_one(new_document_with_events({"_id": f"agg{n}"}, [event(n)]))
    relayed, updates = relay_recording_updates(mongo_uri, db, amqp_uri, append_once={"things"})
    assert relayed == 5
    assert len(probe.drain(until_count=5)) == 5
    assert len(updates) == 5
    assert all(set(filter_) == {"_id"} for filter_ in updates), "filters by _id alone"
    assert db.things.count_documents({"outbox_pending": True}) == 0
    assert db.things.count_documents({"outbox": {"$size": 0}}) == 5


def test_unreachable_broker_keeps_events_for_later(db, amqp_uri, probe):
    db.things.insert_one(new_document_with_events({"_id": "agg1"}, [event(1)]))
    dead = OutboxRelay(db, ["things"], ConfirmingPublisher("amqp://guest:guest@127.0.0.1:1/", "outboxtest.events"))
    assert dead.relay_once() == 0
    assert dead.stats.failures == 1
    assert len(db.things.find_one({"_id": "agg1"})["outbox"]) == 1

    live = relay_for(db, amqp_uri)
    try:
        assert live.relay_once() == 1
    finally:
        live.close()
    assert [e["data"]["n"] for e in probe.drain(until_count=1)] == [1]


class SlowPublisher(ConfirmingPublisher):
    """Lets the test change the document while a batch is on its way to the broker."""

    def __init__(self, *args, during_publish, **kwargs):
        super().__init__(*args, **kwargs)
        self.during_publish = during_publish

    def publish(self, events, bodies=None):
        unroutable = super().publish(events, bodies)
        self.during_publish()
        return unroutable


def test_event_added_while_publishing_is_not_lost(db, amqp_uri, probe):
    db.things.insert_one(new_document_with_events({"_id": "agg1"}, [event(1)]))
    late = event(2)

    def api_writes_meanwhile():
        db.things.update_one({"_id": "agg1"}, with_events({"$set": {"x": 1}}, [late]))

    relay = OutboxRelay(db, ["things"], SlowPublisher(amqp_uri, "outboxtest.events", during_publish=api_writes_meanwhile))
    try:
        assert relay.relay_once() == 1
        stored = db.things.find_one({"_id": "agg1"})
        assert [e["id"] for e in stored["outbox"]] == [late["id"]]
        assert stored["outbox_pending"] is True, "the flag was cleared with an event still waiting"
        relay.publisher.during_publish = lambda: None
        assert relay.relay_once() == 1
    finally:
        relay.close()
    assert [e["data"]["n"] for e in probe.drain(until_count=2)] == [1, 2]


def test_an_outbox_holding_just_what_was_read_is_emptied_in_one_write(mongo_uri, db, amqp_uri, probe):
    for n in range(5):
        db.things.insert_one(new_document_with_events({"_id": f"agg{n}"}, [event(n), event(n)]))
    relayed, updates = relay_recording_updates(mongo_uri, db, amqp_uri)
    assert relayed == 10 and len(probe.drain(until_count=10)) == 10
    assert len(updates) == 5 and all("_id" in filter_ for filter_ in updates)
    assert db.things.count_documents({"outbox_pending": True}) == 0
    assert db.things.count_documents({"outbox": {"$size": 0}}) == 5


def test_events_another_relay_let_go_and_new_ones_of_the_same_count_are_told_apart(db, amqp_uri, probe):
    """While this relay publishes, another one lets the two events go and two new ones arrive: the outbox is as
    long as the one read, so only the last event's id shows it is not the same; the new ones stay pending."""
    db.things.insert_one(new_document_with_events({"_id": "agg1"}, [event(1), event(1)]))
    newer = [event(2), event(3)]

    def another_relay_and_a_writer_meanwhile():
        db.things.update_one({"_id": "agg1"}, {"$set": {"outbox": [], "outbox_pending": False}})
        db.things.update_one({"_id": "agg1"}, with_events({"$set": {"x": 1}}, newer))

    relay = OutboxRelay(db, ["things"], SlowPublisher(amqp_uri, "outboxtest.events",
                                                      during_publish=another_relay_and_a_writer_meanwhile))
    try:
        assert relay.relay_once() == 2
        stored = db.things.find_one({"_id": "agg1"})
        assert [e["id"] for e in stored["outbox"]] == [e["id"] for e in newer]
        assert stored["outbox_pending"] is True
        relay.publisher.during_publish = lambda: None
        assert relay.relay_once() == 2
    finally:
        relay.close()
    assert sorted(e["data"]["n"] for e in probe.drain(until_count=4)) == [1, 1, 2, 3]


def test_nacked_or_unconfirmed_batch_raises(amqp_uri):
    publisher = ConfirmingPublisher(amqp_uri, "outboxtest.events", confirm_timeout=0.0)
    with pytest.raises(PublishFailed):
        publisher.publish([event(1)])
    publisher.close()


def test_leftover_flag_without_events_is_cleared(db, amqp_uri):
    db.things.insert_one({"_id": "agg1", "outbox": [], "outbox_pending": True})
    relay = relay_for(db, amqp_uri)
    try:
        assert relay.relay_once() == 0
    finally:
        relay.close()
    assert db.things.find_one({"_id": "agg1"})["outbox_pending"] is False


# --- SerialRelay: the worker's relay, run by its timer and kicked by its handlers -------------------------------


def test_a_drain_requested_during_a_pass_is_folded_into_it(db, amqp_uri, probe):
    """A kick while the timer's pass runs makes that pass go round again; no second relay runs alongside."""
    db.things.insert_one(new_document_with_events({"_id": "agg1"}, [event(1)]))
    db.others.insert_one(new_document_with_events({"_id": "agg9"}, [event(9)]))
    answers_meanwhile = []

    def handler_writes_and_kicks():
        serial.relay.publisher.during_publish = lambda: None
        db.things.insert_one(new_document_with_events({"_id": "agg2"}, [event(2)]))
        answers_meanwhile.append(serial.drain(["things"]))

    publisher = SlowPublisher(amqp_uri, f"{EXCHANGE_SERVICE}.events", during_publish=handler_writes_and_kicks)
    serial = SerialRelay(OutboxRelay(db, ["things", "others"], publisher))
    try:
        assert serial.drain(["things"]) == 2
        assert answers_meanwhile == [0], "the request during the pass did not start a relay of its own"
        assert db.others.count_documents({"outbox_pending": True}) == 1, "a drain of one collection leaves the others"
        assert serial.drain() == 1
    finally:
        publisher.close()
    assert sorted(e["data"]["n"] for e in probe.drain(until_count=3)) == [1, 2, 9]
    assert db.things.count_documents({"outbox_pending": True}) == 0


def test_a_kick_relays_in_a_green_thread_of_its_own(db, amqp_uri, probe):
    db.things.insert_one(new_document_with_events({"_id": "agg1"}, [event(1)]))
    serial = SerialRelay(OutboxRelay.for_service(db, EXCHANGE_SERVICE, ["things"], amqp_uri))
    try:
        serial.kick(["things"])
        assert serial.stats.published == 0, "kick returns before relaying"
        for _ in range(200):
            eventlet.sleep(0.02)
            if serial.stats.published:
                break
        assert serial.stats.published == 1
    finally:
        serial.relay.close()
    assert [e["data"]["n"] for e in probe.drain(until_count=1)] == [1]


def test_a_kick_cut_short_by_the_stop_is_no_error_and_nothing_is_lost(db, amqp_uri, probe, caplog):
    """The container stops while a handler's kick relays: the connections close under it. That is a stop, not a
    failure to log as one; the event stays pending for the next start."""
    db.things.insert_one(new_document_with_events({"_id": "agg1"}, [event(1)]))

    class ClosedUnderIt(ConfirmingPublisher):
        def publish(self, events, bodies=None):
            serial.stopping = True  # the container's stop closes the connection as the batch goes out
            raise ConnectionResetError("connection closed by the stop")

    publisher = ClosedUnderIt(amqp_uri, f"{EXCHANGE_SERVICE}.events")
    serial = SerialRelay(OutboxRelay(db, ["things"], publisher))
    try:
        with caplog.at_level("INFO", logger="services.platform.worker.deps"):
            serial._drain_logged(("things",))
    finally:
        publisher.close()
    assert "outbox relay pass cut short by the stop" in caplog.text and "kick failed" not in caplog.text
    assert serial.drain(["things"]) == 0, "a stopping relay starts no new pass"
    assert db.things.count_documents({"outbox_pending": True}) == 1, "the event waits for the next start"


def test_an_event_no_queue_takes_is_kept_in_the_unrouted_queue_and_counted(db, amqp_uri):
    """Finding 7: published without `mandatory`, such an event was confirmed and silently dropped."""
    service = f"unroutedtest{uuid.uuid4().hex[:8]}"  # an exchange of its own, with no queue bound to it
    lost = envelope(service, "thing_happened", subject="agg1", data={"n": 1})
    db.things.insert_one(new_document_with_events({"_id": "agg1"}, [lost]))
    relay = OutboxRelay.for_service(db, service, ["things"], amqp_uri)
    try:
        assert relay.relay_until_empty() == 1
        assert relay.stats.unroutable == 1
        assert db.things.count_documents({"outbox_pending": True}) == 0
        with kombu.Connection(amqp_uri) as connection:
            kept = connection.default_channel.basic_get(f"{service}.events.unrouted", no_ack=True)
            assert kept is not None, "the unroutable event was dropped"
            assert kept.properties["message_id"] == lost["id"] and kept.delivery_info["routing_key"] == "thing_happened"
            assert json.loads(kept.body)["data"] == {"n": 1}
    finally:
        relay.close()
        _delete_exchange_and_its_unrouted_queue(amqp_uri, f"{service}.events")


def test_unroutable_events_warn_once_per_type_and_are_still_counted(db, amqp_uri, caplog):
    """Without the broker's policy (make run) every notification_sent warned; the count already tells how many."""
    service = f"unroutedtest{uuid.uuid4().hex[:8]}"
    relay = OutboxRelay.for_service(db, service, ["things"], amqp_uri)
    try:
        with caplog.at_level("DEBUG", logger="services.platform.bus.outbox"):
            for n, event_type in enumerate(["thing_happened", "thing_happened", "other_happened"]):
                db.things.insert_one(new_document_with_events(
                    {"_id": f"agg{n}"}, [envelope(service, event_type, f"agg{n}", {})]))
                assert relay.relay_until_empty() == 1
        assert relay.stats.unroutable == 3
        lines = [r for r in caplog.records if r.getMessage().startswith("events unroutable")]
        assert [(r.levelname, r.types) for r in lines] == [
            ("WARNING", ["thing_happened"]), ("DEBUG", ["thing_happened"]), ("WARNING", ["other_happened"])]
    finally:
        relay.close()
        _delete_exchange_and_its_unrouted_queue(amqp_uri, f"{service}.events")


def test_routable_events_are_not_counted_as_unroutable(db, amqp_uri, probe):
    db.things.insert_one(new_document_with_events({"_id": "agg1"}, [event(1)]))
    relay = relay_for(db, amqp_uri)
    try:
        assert relay.relay_until_empty() == 1
    finally:
        relay.close()
    assert relay.stats.unroutable == 0
    assert len(probe.drain(until_count=1)) == 1


def _delete_exchange_and_its_unrouted_queue(amqp_uri: str, exchange: str) -> None:
    with kombu.Connection(amqp_uri) as connection:
        channel = connection.channel()
        channel.queue_delete(f"{exchange}.unrouted")
        channel.exchange_delete(f"{exchange}.unrouted")
        channel.exchange_delete(exchange)


def test_unroutable_events_stay_in_the_outbox_while_the_unrouted_queue_is_gone(db, amqp_uri):
    service = f"unroutedtest{uuid.uuid4().hex[:8]}"
    db.things.insert_one(new_document_with_events({"_id": "agg1"}, [envelope(service, "thing_happened", "agg1", {})]))
    relay = OutboxRelay.for_service(db, service, ["things"], amqp_uri)
    try:
        relay.publisher._open()
        with kombu.Connection(amqp_uri) as connection:
            connection.channel().queue_delete(f"{service}.events.unrouted")  # an operator's mistake
        assert relay.relay_once() == 0 and relay.stats.failures == 1
        assert len(db.things.find_one({"_id": "agg1"})["outbox"]) == 1, "dropped with nowhere to keep it"
        assert relay.relay_once() == 1, "reconnecting redeclares the unrouted queue"
        assert relay.stats.unroutable == 1
    finally:
        relay.close()
        _delete_exchange_and_its_unrouted_queue(amqp_uri, f"{service}.events")


def test_replicas_relay_only_while_they_hold_the_relay_lease(db, amqp_uri, probe):
    """Two workers' relays over the same outboxes: only the lease holder publishes, so each event goes out once
    and in its document's order; when the holder stops, the other takes over at once."""
    from services.platform.store.lease import Leases

    replicas = [SerialRelay(relay_for(db, amqp_uri), lease=Leases(db, 10.0, holder=name)["outbox_relay"])
                for name in ("worker-a", "worker-b")]
    first, second = replicas
    try:
        db.things.insert_one(new_document_with_events({"_id": "agg1"}, [event(1), event(2)]))
        assert first.drain() == 2
        db.things.insert_one(new_document_with_events({"_id": "agg2"}, [event(3)]))
        assert second.drain() == 0, "a replica without the lease relays nothing"
        assert db.things.count_documents({"outbox_pending": True}) == 1
        assert first.drain() == 1
        first.lease.release()  # a clean stop
        db.things.insert_one(new_document_with_events({"_id": "agg3"}, [event(4)]))
        second.lease._retry_at = 0.0  # its next tick, sooner than the released hold would have run out
        assert second.drain() == 1, "the other replica takes over once the holder let go"
    finally:
        for replica in replicas:
            replica.relay.close()
    received = probe.drain(until_count=4)
    probe.settle(quiet_seconds=0.3)
    assert [e["data"]["n"] for e in probe.received] == [1, 2, 3, 4]
    assert len(received) == 4
