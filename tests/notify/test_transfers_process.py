"""notify-worker as a real process (RabbitMQ vhost of its own, the wire Mongo server, goals-api for people, the SMTP
sink): a V2MOM transferred on goals.events reaches its new owner by email and inbox once, however often the event
is delivered, and notify's copy of the V2MOM is theirs."""

import time
from datetime import UTC, datetime

import pytest

from services.goals import events as goals_events
from services.notify import kinds
from services.notify.store import ITEMS, NOTIFICATIONS, V2MOMS
from services.platform.bus.events import to_wire
from tests.support.broker import queue_exists
from tests.support.notify import mails_to, publish
from tests.support.processes import wait_for
from v2mom.v1 import common_pb2, events_pb2, goals_pb2

QUEUE = "evt-goals-v2mom_transferred--notify_worker.on_v2mom_transferred"
T0 = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


def event(event_type, revision, owner, previous="", actor="lee"):
    data = events_pb2.V2MOMEventData(
        v2mom_id="v2m_tr", revision=revision, owner_id=owner, org_unit_id="platform", cycle_id="FY2027",
        level=common_pb2.ORG_LEVEL_INDIVIDUAL, state=goals_pb2.V2MOM_STATE_PUBLISHED, actor_id=actor,
        reason="owner left" if previous else "Fine",
        content=goals_pb2.V2MOMContent(
            title="Billing FY27", methods=[goals_pb2.Method(id="m1", title="Ship", owner_id="olive")],
            measures=[goals_pb2.Measure(id="x1", title="Errors")]))
    data.submit_time.FromDatetime(T0)
    data.publish_time.FromDatetime(T0)
    if previous:
        data.previous_owner_id = previous
    return to_wire(goals_events.v2mom_event(event_type, data))


def test_a_transfer_reaches_the_new_owner_once_by_email_and_inbox(org, notify_worker, connection, ndb, sink):
    notify_worker.start(connection)
    wait_for(lambda: queue_exists(connection, QUEUE), message="no queue for v2mom_transferred")
    publish(connection, event("v2mom_approved", 3, "olive"))
    wait_for(lambda: mails_to(sink, "olive@acme.test"), message="no decision mail")

    transfer = event("v2mom_transferred", 4, "otto", previous="olive")
    publish(connection, transfer)
    publish(connection, transfer)  # redelivered upstream
    def told_of_the_transfer():  # otto may also be reminded to check in on the measure that became his
        return [m for m in mails_to(sink, "otto@acme.test") if "now yours" in m["Subject"]]

    [mail] = wait_for(told_of_the_transfer, message="the new owner never heard of the transfer")
    assert "Billing FY27" in mail["Subject"] and "now yours" in mail["Subject"]
    assert "https://portal.test/v2moms/v2m_tr" in mail.get_body(("plain",)).get_content()
    wait_for(lambda: connection.channel().queue_declare(QUEUE, passive=True).message_count == 0,
             message="transfers never consumed")
    time.sleep(1.0)  # the dispatcher runs a few more times: the replay sends nothing
    assert len(told_of_the_transfer()) == 1, "the replayed transfer was told twice"
    [note] = list(ndb[NOTIFICATIONS].find({"recipient_id": "otto", "kind": kinds.ATTENTION}))
    assert "now yours" in note["title"]
    assert ndb[V2MOMS].find_one({"_id": "v2m_tr"})["owner_id"] == "otto"
    owners = {doc["item_id"]: doc["owner_id"] for doc in ndb[ITEMS].find({"v2mom_id": "v2m_tr"})}
    assert owners == {"m1": "olive", "x1": "otto"}
