"""notify-worker as a real process: RabbitMQ (a vhost per test), the wire Mongo server, a real goals-api (and
goals-worker where goals' own events are the input), and the dev SMTP sink receiving the mail.

- approvals end to end: a submission through goals-api reaches the approver by email and inbox, the decision
  reaches the owner with the approver's comment, and notify.events carries notification_sent;
- a replayed event makes one notification and one email; bad input and unknown people are dead-lettered with
  nothing written; an approval that arrives before its submission asks nobody;
- a worker SIGKILLed between an SMTP send and marking it sent is restarted, and the receiver sees that delivery
  under one Message-ID only (README, "Worker": the exactly-once argument).
"""

import json
import os
import signal
import time
import uuid
from dataclasses import replace

import kombu
import pymongo
import pytest

from services.goals import events as goals_events
from services.notify import kinds
from services.notify.store import DELIVERIES, NOTIFICATIONS, SCHEDULES
from services.platform.bus.events import to_wire
from services.platform.core.config import load
from tests.support.broker import queue_exists
from tests.support.events_probe import EventProbe
from tests.support.goals import build_org, valid_content
from tests.support.processes import log_tail, start_module, stop, wait_for
from tests.support.sinks import smtp_sink
from v2mom.v1 import common_pb2, events_pb2, goals_pb2

HANDLERS = {
    "goals": ("person_upserted", "v2mom_submitted", "v2mom_approved", "v2mom_changes_requested", "v2mom_archived"),
    "checkins": ("item_became_stale", "item_overdue", "checkin_recorded", "progress_changed"),
}
QUEUES = [f"evt-{source}-{event_type}--notify_worker.on_{event_type}"
          for source, types in HANDLERS.items() for event_type in types]
SUBMITTED_QUEUE = "evt-goals-v2mom_submitted--notify_worker.on_v2mom_submitted"


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


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


@pytest.fixture
def probe(settings):
    probe = EventProbe(settings.amqp_uri, "notify.events")
    yield probe
    probe.close()


class NotifyWorker:
    """notify-worker processes on the test's database, broker, goals-api and SMTP sink; all stopped at the end."""

    def __init__(self, settings, notify_db_name, goals_port, smtp_port, log_path):
        self.env = {
            "MONGO_URI": settings.mongo_uri, "MONGO_DB": notify_db_name, "AMQP_URI": settings.amqp_uri,
            "GOALS_ADDR": f"127.0.0.1:{goals_port}", "NOTIFY_SMTP_HOST": "127.0.0.1", "NOTIFY_SMTP_PORT": str(smtp_port),
            "NOTIFY_PORTAL_URL_TEMPLATE": "https://portal.test/v2moms/{v2mom_id}",
            "RELAY_INTERVAL_SECONDS": "0.05", "NOTIFY_DISPATCH_INTERVAL_SECONDS": "0.1",
            "NOTIFY_SCHEDULE_INTERVAL_SECONDS": "0.2", "LOG_LEVEL": "INFO",
        }
        self.log_path = log_path
        self.processes = []

    def start(self, connection, **extra_env):
        process = start_module("services.notify.worker", {**self.env, **extra_env}, log=self.log_path)
        self.processes.append(process)
        deadline = time.monotonic() + 40
        while not all(queue_exists(connection, name) for name in QUEUES):
            assert process.poll() is None, log_tail(process)
            assert time.monotonic() < deadline, f"notify-worker never declared its queues: {log_tail(process)}"
            time.sleep(0.1)
        return process

    def stop_all(self):
        for process in self.processes:
            stop(process)


@pytest.fixture
def notify_worker(settings, notify_db_name, goals_api, sink, tmp_path):
    worker = NotifyWorker(settings, notify_db_name, goals_api.port, sink.port, tmp_path / "notify-worker.log")
    try:
        yield worker
    finally:
        worker.stop_all()


def publish(connection, envelope, exchange="goals.events"):
    target = kombu.Exchange(exchange, type="topic", durable=True)
    producer = kombu.Producer(connection.default_channel, exchange=target)
    body = envelope if isinstance(envelope, str) else json.dumps(envelope)
    routing_key = envelope["type"] if isinstance(envelope, dict) else "v2mom_submitted"
    producer.publish(body, routing_key=routing_key, content_type="application/cloudevents+json",
                     content_encoding="utf-8", declare=[target])


def v2mom_event(event_type, state, v2mom_id="v2m_proc", revision=2, approver="lee", reason="", actor=""):
    data = events_pb2.V2MOMEventData(
        v2mom_id=v2mom_id, revision=revision, owner_id="olive", org_unit_id="platform", cycle_id="FY2027",
        level=common_pb2.ORG_LEVEL_INDIVIDUAL, state=state, approver_id=approver, reason=reason, actor_id=actor,
        content=goals_pb2.V2MOMContent(title=f"Olive {v2mom_id}"))
    return to_wire(goals_events.v2mom_event(event_type, data))


def mails_to(sink, address):
    return [m for m in sink.messages() if m.envelope["rcpt_tos"] == [address]]


def dead_letters(connection, queue):
    channel = connection.channel()
    got = []
    while (message := channel.basic_get(f"{queue}.dlq", no_ack=True)) is not None:
        got.append(message)
    return got


# --- approvals end to end ----------------------------------------------------------------------------------------


def test_approvals_end_to_end_through_goals(org, goals_api, goals_worker, notify_worker, connection, ndb, sink, probe):
    notify_worker.start(connection)
    olive, lee = goals_api("olive"), goals_api("lee")
    created = olive.CreateV2MOM(goals_pb2.CreateV2MOMRequest(
        level=common_pb2.ORG_LEVEL_INDIVIDUAL, cycle_id="FY2027", content=valid_content(title="Olive ships billing")))
    olive.SubmitV2MOM(goals_pb2.SubmitV2MOMRequest(id=created.id))

    [ask] = wait_for(lambda: mails_to(sink, "lee@acme.test"), message="the approver never got the request by email")
    assert "Olive ships billing" in ask["Subject"] and "Olive Owner" in ask["Subject"]
    text = ask.get_body(("plain",)).get_content()
    assert f"https://portal.test/v2moms/{created.id}" in text and "5 methods" in text
    [inbox] = list(ndb[NOTIFICATIONS].find({"recipient_id": "lee"}))
    assert inbox["kind"] == kinds.APPROVAL_REQUESTED and inbox["read_at"] is None
    assert ndb[SCHEDULES].count_documents({"state": "WAITING"}) == 2  # SLA reminder and skip-level escalation

    lee.ApproveV2MOM(goals_pb2.ApproveV2MOMRequest(id=created.id, comment="Great focus on errors"))
    [decided] = wait_for(lambda: mails_to(sink, "olive@acme.test"), message="the owner never heard the decision")
    assert "approved" in decided["Subject"]
    assert "Great focus on errors" in decided.get_body(("plain",)).get_content()
    wait_for(lambda: ndb[SCHEDULES].count_documents({"state": "CANCELLED"}) == 2, message="reminders not cancelled")

    sent = wait_for(lambda: (lambda got: got if len(got) >= 4 else None)(
        [e for e in probe.drain(4, timeout=0.5) if e["type"] == "notification_sent"]),
        message="notification_sent never reached notify.events")
    channels = sorted(e["data"]["channel"] for e in sent if e["type"] == "notification_sent")
    assert channels == [kinds.EMAIL, kinds.EMAIL, kinds.INBOX, kinds.INBOX]
    assert {e["data"]["recipientId"] for e in sent} == {"lee", "olive"}
    assert all(e["source"] == "/v2mom/notify" for e in sent)


# --- replays, bad input, unknown people, order ----------------------------------------------------------------------


def test_replays_bad_input_unknown_people_and_out_of_order_events(org, notify_worker, connection, ndb, sink):
    """Events published straight to goals.events; notify learns lee and olive from goals-api (GetPerson)."""
    notify_worker.start(connection)
    event = v2mom_event("v2mom_submitted", goals_pb2.V2MOM_STATE_SUBMITTED)
    publish(connection, event)
    publish(connection, event)  # redelivered by an upstream relay
    wait_for(lambda: mails_to(sink, "lee@acme.test"), message="no request mail")

    ghost = v2mom_event("v2mom_submitted", goals_pb2.V2MOM_STATE_SUBMITTED, v2mom_id="v2m_ghost", approver="ghost")
    publish(connection, ghost)
    publish(connection, "{not json")
    bad = v2mom_event("v2mom_submitted", goals_pb2.V2MOM_STATE_SUBMITTED, v2mom_id="v2m_bad")
    bad["data"]["revision"] = "two"
    publish(connection, bad)
    dead = _collect_dead(connection, SUBMITTED_QUEUE, 3)
    assert len(dead) == 3

    # approved before submitted: the owner hears the decision, and the late submission asks nobody
    publish(connection, v2mom_event("v2mom_approved", goals_pb2.V2MOM_STATE_PUBLISHED, v2mom_id="v2m_late",
                                    revision=3, actor="lee", reason="Fine"))
    wait_for(lambda: mails_to(sink, "olive@acme.test"), message="no decision mail")
    publish(connection, v2mom_event("v2mom_submitted", goals_pb2.V2MOM_STATE_SUBMITTED, v2mom_id="v2m_late", revision=2))
    time.sleep(1.5)  # the late submission is consumed (its queue drains) and the dispatcher runs a few times
    wait_for(lambda: connection.channel().queue_declare(SUBMITTED_QUEUE, passive=True).message_count == 0,
             message="submissions never consumed")
    time.sleep(0.5)

    assert len(mails_to(sink, "lee@acme.test")) == 1  # one event id: one notification, one mail
    assert ndb[NOTIFICATIONS].count_documents({"recipient_id": "lee"}) == 1
    assert ndb[NOTIFICATIONS].count_documents({"v2mom_id": {"$in": ["v2m_ghost", "v2m_bad"]}}) == 0
    assert ndb[DELIVERIES].count_documents({"v2mom_id": {"$in": ["v2m_ghost", "v2m_bad"]}}) == 0
    assert [n["kind"] for n in ndb[NOTIFICATIONS].find({"v2mom_id": "v2m_late"})] == [kinds.APPROVAL_DECIDED]
    assert ndb[SCHEDULES].count_documents({"payload.v2mom_id": "v2m_late"}) == 0
    log = notify_worker.log_path.read_text()
    assert "approver 'ghost' is unknown to the directory" in log and "does not parse" in log


def _collect_dead(connection, queue, count, timeout=20):
    got, deadline = [], time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += dead_letters(connection, queue)
        time.sleep(0.1)
    return got


# --- a crash between sending and marking -------------------------------------------------------------------------------


def test_a_worker_killed_after_sending_is_restarted_and_the_receiver_sees_one_message_id(
        org, notify_worker, connection, ndb, sink, probe):
    first = notify_worker.start(connection, NOTIFY_TEST_PAUSE_AFTER_SEND_SECONDS="120", NOTIFY_LEASE_SECONDS="2")
    publish(connection, v2mom_event("v2mom_submitted", goals_pb2.V2MOM_STATE_SUBMITTED, v2mom_id="v2m_crash"))
    [mail] = wait_for(lambda: mails_to(sink, "lee@acme.test"), message="no mail before the crash")
    wait_for(lambda: "pausing after a send" in notify_worker.log_path.read_text(), message="the hook never paused")
    os.kill(first.pid, signal.SIGKILL)  # sent, not yet marked: the delivery stays PENDING under a lease
    first.wait(timeout=10)
    [email] = list(ndb[DELIVERIES].find({"channel": kinds.EMAIL}))
    assert email["status"] == "PENDING"

    notify_worker.start(connection, NOTIFY_LEASE_SECONDS="2")  # the lease expires, the delivery is claimed again
    wait_for(lambda: ndb[DELIVERIES].find_one({"_id": email["_id"], "status": "SENT"}), timeout=30,
             message="the restarted worker never finished the delivery")
    mails = mails_to(sink, "lee@acme.test")
    assert len(mails) == 2  # sent before the crash and again after it (at least once) ...
    assert {m["Message-ID"] for m in mails} == {mail["Message-ID"]}  # ... as one message, to a receiver
    assert email["_id"] in mail["Message-ID"]
    wait_for(lambda: [e for e in probe.drain(2, timeout=0.5) if e["data"]["deliveryId"] == email["_id"]],
             message="notification_sent never reached notify.events")
    events = [e for e in probe.settle(0.5) if e["data"]["deliveryId"] == email["_id"]]
    assert [e["type"] for e in events] == ["notification_sent"]  # marked and announced once
    assert ndb[DELIVERIES].find_one({"_id": email["_id"]})["tries"] == 1


# --- two replicas ----------------------------------------------------------------------------------------------------


def test_two_replicas_fire_each_schedule_and_send_each_mail_once(org, notify_worker, connection, ndb, sink):
    """An SLA of 0 working days makes the reminder and the skip-level escalation due at once, for both replicas."""
    for _ in range(2):
        notify_worker.start(connection, NOTIFY_APPROVAL_SLA_DAYS="0", NOTIFY_SCHEDULE_INTERVAL_SECONDS="0.05",
                            NOTIFY_DISPATCH_INTERVAL_SECONDS="0.05")
    publish(connection, v2mom_event("v2mom_submitted", goals_pb2.V2MOM_STATE_SUBMITTED, v2mom_id="v2m_twice"))
    wait_for(lambda: ndb[SCHEDULES].count_documents({"state": "DONE"}) == 2, message="schedules never fired")
    wait_for(lambda: ndb[DELIVERIES].count_documents({"channel": kinds.EMAIL, "status": "SENT"}) == 3,
             message="mails never all sent")
    time.sleep(1.0)  # both replicas keep ticking: nothing more may come
    overdue = list(ndb[NOTIFICATIONS].find({"kind": kinds.APPROVAL_OVERDUE}))
    assert sorted(n["recipient_id"] for n in overdue) == ["dana", "lee"]  # the approver, then lee's manager
    assert len(mails_to(sink, "lee@acme.test")) == 2  # the request and the reminder
    assert len(mails_to(sink, "dana@acme.test")) == 1
    assert len({m["Message-ID"] for m in sink.messages()}) == len(sink.messages()) == 3
