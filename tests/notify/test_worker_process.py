"""notify-worker as a real process: RabbitMQ (a vhost per test), the wire Mongo server, a real goals-api (and
goals-worker where goals' own events are the input), and the dev SMTP sink receiving the mail.

- approvals end to end: a submission through goals-api reaches the approver by email and inbox, the decision
  reaches the owner with the approver's comment, and notify.events carries notification_sent; a parent approved
  again with a new vision reaches the owner aligned beneath (PARENT_CHANGED, inbox only);
- a replayed event makes one notification and one email; bad input and unknown people are dead-lettered with
  nothing written; an approval that arrives before its submission asks nobody;
- a worker SIGKILLed between an SMTP send and marking it sent is restarted, and the receiver sees that delivery
  under one Message-ID only (README, "Worker": the exactly-once argument).
"""

import os
import signal
import time

import pytest
from google.protobuf import field_mask_pb2

from services.notify import kinds, schedules
from services.notify.store import DELIVERIES, NOTIFICATIONS, SCHEDULES
from tests.support.goals import valid_content
from tests.support.notify import SUBMITTED_QUEUE, mails_to, publish, v2mom_event
from tests.support.processes import wait_for
from v2mom.v1 import common_pb2, goals_pb2


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


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
    # The SLA reminder and the skip-level escalation (the weekly digests of the org's managers wait there too).
    waiting = sorted(s["kind"] for s in ndb[SCHEDULES].find({"state": "WAITING", "kind": {"$in": [
        schedules.APPROVAL_REMINDER, schedules.APPROVAL_ESCALATION]}}))
    assert waiting == [schedules.APPROVAL_ESCALATION, schedules.APPROVAL_REMINDER], waiting

    lee.ApproveV2MOM(goals_pb2.ApproveV2MOMRequest(id=created.id, comment="Great focus on errors"))
    # The owner also gets an ATTENTION mail for the obstacle the approval opened: it may arrive in the same instant.
    [decided] = wait_for(lambda: [m for m in mails_to(sink, "olive@acme.test") if "approved" in m["Subject"]],
                         message="the owner never heard the decision")
    assert "Great focus on errors" in decided.get_body(("plain",)).get_content()
    wait_for(lambda: ndb[SCHEDULES].count_documents({"state": "CANCELLED"}) == 2, message="reminders not cancelled")

    approvals = (kinds.APPROVAL_REQUESTED, kinds.APPROVAL_DECIDED)
    sent = wait_for(lambda: (lambda got: got if len(got) >= 4 else None)(
        [e for e in probe.drain(6, timeout=0.5) if e["type"] == "notification_sent" and e["data"]["kind"] in approvals]),
        message="notification_sent never reached notify.events")
    channels = sorted(e["data"]["channel"] for e in sent if e["type"] == "notification_sent")
    assert channels == [kinds.EMAIL, kinds.EMAIL, kinds.INBOX, kinds.INBOX]
    assert {e["data"]["recipientId"] for e in sent} == {"lee", "olive"}
    assert all(e["source"] == "/v2mom/notify" for e in sent)


def test_a_changed_parent_reaches_the_owner_aligned_beneath_in_the_inbox(org, goals_api, goals_worker, notify_worker,
                                                                          connection, ndb, sink):
    notify_worker.start(connection)
    olive, lee, dana = goals_api("olive"), goals_api("lee"), goals_api("dana")

    def published(client, approver, **create):
        created = client.CreateV2MOM(goals_pb2.CreateV2MOMRequest(cycle_id="FY2027", **create))
        client.SubmitV2MOM(goals_pb2.SubmitV2MOMRequest(id=created.id))
        return approver.ApproveV2MOM(goals_pb2.ApproveV2MOMRequest(id=created.id))

    team = published(lee, dana, level=common_pb2.ORG_LEVEL_TEAM, org_unit_id="platform",
                     content=valid_content("lee", title="Platform FY27"))
    mine = published(olive, lee, level=common_pb2.ORG_LEVEL_INDIVIDUAL, parent_id=team.id,
                     content=valid_content(title="Olive ships billing"))
    edited = lee.UpdateV2MOM(goals_pb2.UpdateV2MOMRequest(
        v2mom=goals_pb2.V2MOM(id=team.id, content=goals_pb2.V2MOMContent(vision="Zero invoice errors by 2027")),
        update_mask=field_mask_pb2.FieldMask(paths=["content.vision"]), change_reason="The year moved on"))
    lee.SubmitV2MOM(goals_pb2.SubmitV2MOMRequest(id=edited.id))
    dana.ApproveV2MOM(goals_pb2.ApproveV2MOMRequest(id=edited.id))

    [note] = wait_for(lambda: list(ndb[NOTIFICATIONS].find({"kind": kinds.PARENT_CHANGED})), 30,
                      "the owner aligned beneath never heard of the change")
    assert (note["recipient_id"], note["v2mom_id"], note["facts"]["child_ids"]) == ("olive", team.id, [mine.id])
    assert "Platform FY27" in note["title"] and "new vision" in note["body"]
    assert [d["channel"] for d in ndb[DELIVERIES].find({"notification_id": note["_id"]})] == [kinds.INBOX]
    time.sleep(1.0)  # lee (the parent's owner) and dana (its approver) are never told
    assert ndb[NOTIFICATIONS].count_documents({"kind": kinds.PARENT_CHANGED}) == 1


# --- replays, bad input, unknown people, order ----------------------------------------------------------------------


def test_a_mention_in_a_comment_reaches_the_person_mentioned(org, goals_api, goals_worker, notify_worker, connection,
                                                              ndb, sink):
    notify_worker.start(connection)
    olive, lee = goals_api("olive"), goals_api("lee")
    created = olive.CreateV2MOM(goals_pb2.CreateV2MOMRequest(
        level=common_pb2.ORG_LEVEL_INDIVIDUAL, cycle_id="FY2027", content=valid_content(title="Olive ships billing")))
    comment = lee.AddComment(goals_pb2.AddCommentRequest(v2mom_id=created.id, text="@olive can the rollout start in May?"))

    [mail] = wait_for(lambda: [m for m in mails_to(sink, "olive@acme.test") if "mentioned you" in m["Subject"]],
                      message="the person mentioned never heard of it")
    assert "Olive ships billing" in mail["Subject"]
    assert "can the rollout start in May?" in mail.get_body(("plain",)).get_content()
    [note] = list(ndb[NOTIFICATIONS].find({"kind": kinds.MENTION}))
    assert (note["recipient_id"], note["facts"]["comment_id"], note["v2mom_id"]) == ("olive", comment.id, created.id)
    assert not mails_to(sink, "lee@acme.test"), "the author is never told of their own comment"


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
