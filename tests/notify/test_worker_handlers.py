"""notify-worker's handlers, schedules and dispatcher in process, on the real wire store (no broker, no goals-api).

Envelopes are built by goals' and check-ins' own event code and rendered as they travel (``to_wire``), so the
handlers see exactly what RabbitMQ would hand them. Senders are recorders, so a test can say what went out.
"""

from datetime import UTC, datetime, timedelta

import pytest

from services.goals import events as goals_events
from services.notify import kinds, rules, schedules
from services.notify.channels import PermanentFailure, TemporaryFailure
from services.notify.deliveries import Deliveries
from services.notify.store import NOTIFICATIONS, PREFERENCES, SCHEDULES, STATS, SUBSCRIPTIONS, V2MOMS
from services.platform.bus.events import to_wire
from services.platform.worker.consumer import PermanentError
from tests.support.notify_world import (
    T0, approved, changes_requested, checkin, content, counts, deliveries, fire_due, notifications,
    progress, stale, submitted, v2mom_event,
)
from v2mom.v1 import common_pb2, events_pb2, goals_pb2

# --- approvals --------------------------------------------------------------------------------------------------


def test_a_submission_asks_the_approver_in_the_inbox_and_by_email_once_however_often_it_arrives(world):
    event = submitted()
    world.notifier.v2mom_submitted(event)
    [note] = notifications(world.db)
    assert (note["recipient_id"], note["kind"], note["link"]) == ("lee", kinds.APPROVAL_REQUESTED,
                                                                  "https://portal.test/v2moms/v2m_1")
    assert note["_id"] == rules.notification_id(event["id"], "lee", kinds.APPROVAL_REQUESTED)
    assert note["facts"]["lint"]["methods"] == 1 and note["read_at"] is None
    by_channel = {d["channel"]: d for d in deliveries(world.db)}
    assert by_channel[kinds.INBOX]["status"] == "SENT" and by_channel[kinds.INBOX]["outbox"][0]["type"] == "notification_sent"
    assert by_channel[kinds.EMAIL]["status"] == "PENDING" and by_channel[kinds.EMAIL]["target"] == "lee@acme.test"
    assert world.db[STATS].find_one({"_id": f"sent|{kinds.APPROVAL_REQUESTED}|{kinds.INBOX}"})["n"] == 1
    before = counts(world.db)
    world.notifier.v2mom_submitted(event)  # the broker redelivers it
    assert counts(world.db) == before == (1, 2, 2)
    assert world.db[STATS].find_one({"_id": f"sent|{kinds.APPROVAL_REQUESTED}|{kinds.INBOX}"})["n"] == 1


def test_a_decision_tells_the_owner_with_the_comment_and_stops_the_reminders(world):
    world.notifier.v2mom_submitted(submitted())
    world.notifier.v2mom_changes_requested(changes_requested())
    [decided] = notifications(world.db, kind=kinds.APPROVAL_DECIDED)
    assert decided["recipient_id"] == "olive" and "Comment: Add a measure" in decided["body"]
    assert {s["state"] for s in world.db[SCHEDULES].find()} == {schedules.CANCELLED}
    # resubmitted: new reminders, untouched by the older decision replayed
    world.notifier.v2mom_submitted(submitted(revision=4))
    world.notifier.v2mom_changes_requested(changes_requested())
    assert world.db[SCHEDULES].count_documents({"state": schedules.WAITING}) == 2
    world.notifier.v2mom_approved(approved(revision=5))
    assert world.db[SCHEDULES].count_documents({"state": schedules.WAITING, "kind": {"$ne": schedules.CHECKIN_REMINDER}}) == 0
    assert world.db[V2MOMS].find_one({"_id": "v2m_1"})["content"]["title"] == "Olive FY27"


def withdrawn(revision=3, **kw):
    return v2mom_event(goals_events.V2MOM_WITHDRAWN, revision, goals_pb2.V2MOM_STATE_DRAFT, actor="olive", **kw)


def test_a_withdrawn_submission_stops_reminding_the_approver_even_when_it_arrives_first(world):
    world.notifier.v2mom_submitted(submitted())
    world.notifier.v2mom_withdrawn(withdrawn())
    assert {s["state"] for s in world.db[SCHEDULES].find()} == {schedules.CANCELLED}
    fire_due(world, T0 + timedelta(days=7))
    assert notifications(world.db, kind=kinds.APPROVAL_OVERDUE) == []
    world.notifier.v2mom_withdrawn(withdrawn(v2mom_id="v2m_2"))  # out of order: the withdrawal first
    world.notifier.v2mom_submitted(submitted(v2mom_id="v2m_2"))
    assert world.db[SCHEDULES].count_documents({"payload.v2mom_id": "v2m_2", "state": schedules.WAITING}) == 0


def test_a_submission_handed_to_another_approver_asks_them_and_stops_reminding_the_first(world):
    world.notifier.v2mom_submitted(submitted())
    handed_over = T0 + timedelta(days=1)
    world.clock.now = handed_over
    moved = v2mom_event(goals_events.V2MOM_APPROVER_CHANGED, 3, goals_pb2.V2MOM_STATE_SUBMITTED, approver="dana",
                        reason="lee left")
    moved["time"] = handed_over.isoformat()
    world.notifier.v2mom_approver_changed(moved)
    world.notifier.v2mom_approver_changed(moved)  # a replay asks nobody twice
    asked = notifications(world.db, kind=kinds.APPROVAL_REQUESTED)
    assert sorted(n["recipient_id"] for n in asked) == ["dana", "lee"]
    waiting = list(world.db[SCHEDULES].find({"state": schedules.WAITING}))
    assert {s["payload"]["approver_id"] for s in waiting} == {"dana"} and len(waiting) == 2
    # The new approver's SLA (2 working days here) runs from the hand-over, not from the first submission.
    assert min(s["due_at"] for s in waiting) > T0 + timedelta(days=2)


def test_approved_before_submitted_asks_nobody_and_schedules_nothing(world):
    world.notifier.v2mom_approved(approved(revision=3))
    world.notifier.v2mom_submitted(submitted(revision=2))
    assert [n["kind"] for n in notifications(world.db)] == [kinds.APPROVAL_DECIDED]
    assert world.db[SCHEDULES].count_documents({"kind": {"$ne": schedules.CHECKIN_REMINDER}}) == 0


def test_unknown_people_and_bad_payloads_are_permanent_and_write_nothing(world):
    with pytest.raises(PermanentError, match="approver 'ghost' is unknown"):
        world.notifier.v2mom_submitted(submitted(approver="ghost"))
    bad = submitted()
    bad["data"]["revision"] = "not a number"
    with pytest.raises(PermanentError, match="does not parse"):
        world.notifier.v2mom_submitted(bad)
    no_id = submitted(v2mom_id="")
    with pytest.raises(PermanentError, match="needs v2momId"):
        world.notifier.v2mom_submitted(no_id)
    assert counts(world.db) == (0, 0, 0)


def test_a_company_submission_without_an_approver_notifies_nobody(world):
    world.notifier.v2mom_submitted(submitted(approver=""))
    assert counts(world.db) == (0, 0, 0)


def test_approval_sla_reminds_the_approver_then_escalates_to_their_manager(world):
    world.notifier.v2mom_submitted(submitted())
    due = sorted(s["due_at"] for s in world.db[SCHEDULES].find())
    assert due == [datetime(2026, 6, 12, 12, 0, tzinfo=UTC), datetime(2026, 6, 16, 12, 0, tzinfo=UTC)]
    fire_due(world, T0 + timedelta(days=2))
    [reminder] = notifications(world.db, kind=kinds.APPROVAL_OVERDUE)
    assert reminder["recipient_id"] == "lee"
    fire_due(world, T0 + timedelta(days=6))
    assert sorted(n["recipient_id"] for n in notifications(world.db, kind=kinds.APPROVAL_OVERDUE)) == ["dana", "lee"]
    assert world.db[SCHEDULES].count_documents({"state": schedules.DONE}) == 2


def test_a_decision_landing_while_the_submission_writes_its_schedules_leaves_them_telling_nobody(world, monkeypatch):
    """The approval handler runs between the submission's copy write and its schedules' insert (two handlers in
    flight): its cancel finds nothing yet, so the schedules are written WAITING; when they fire, the copy's decision
    stops them before anyone is reminded."""
    add_many = world.notifier.schedules.add_many

    def decided_meanwhile(documents):
        world.notifier.v2mom_approved(approved())
        return add_many(documents)
    monkeypatch.setattr(world.notifier.schedules, "add_many", decided_meanwhile)
    world.notifier.v2mom_submitted(submitted())
    monkeypatch.undo()
    assert world.db[SCHEDULES].count_documents({"kind": {"$in": [schedules.APPROVAL_REMINDER,
                                                                  schedules.APPROVAL_ESCALATION]}}) == 2
    fire_due(world, T0 + timedelta(days=6))
    assert notifications(world.db, kind=kinds.APPROVAL_OVERDUE) == []
    assert len(notifications(world.db, kind=kinds.APPROVAL_DECIDED)) == 1


def test_a_schedule_fired_twice_after_a_lost_lease_writes_nothing_new(world):
    world.notifier.v2mom_submitted(submitted())
    at = T0 + timedelta(days=2, minutes=1)
    schedule = world.notifier.schedules.claim_due(at, 30)
    world.notifier.fire(schedule)  # ... and the worker dies before marking it done
    assert world.notifier.schedules.claim_due(at, 30) is None  # leased: another replica does not fire it
    again = world.notifier.schedules.claim_due(at + timedelta(seconds=31), 30)
    assert again["_id"] == schedule["_id"]
    before = counts(world.db)
    world.notifier.fire(again)
    assert world.notifier.schedules.done(again, at) and not world.notifier.schedules.done(schedule, at)
    assert counts(world.db) == before


# --- items and progress ---------------------------------------------------------------------------------------------


def test_a_stale_item_goes_to_its_owner_then_by_email_then_to_the_accountable_and_the_managers(world):
    world.notifier.v2mom_approved(approved())
    world.notifier.item_stale(stale())
    [first] = notifications(world.db, kind=kinds.ITEM_ESCALATION)
    assert first["recipient_id"] == "olive"
    assert [d["channel"] for d in deliveries(world.db, notification_id=first["_id"])] == [kinds.INBOX]
    fire_due(world, T0 + timedelta(hours=24))
    assert sorted(d["channel"] for d in deliveries(world.db, notification_id=first["_id"])) == [kinds.EMAIL, kinds.INBOX]
    assert [n["recipient_id"] for n in notifications(world.db, kind=kinds.ITEM_ESCALATION)] == ["olive", "acc"]
    world.db[NOTIFICATIONS].update_many({"recipient_id": "acc"}, {"$set": {"read_at": T0}})  # acc read it
    fire_due(world, T0 + timedelta(hours=48))
    escalated = {n["recipient_id"]: n for n in notifications(world.db, kind=kinds.ITEM_ESCALATION)}
    assert set(escalated) == {"olive", "acc", "lee"}  # lee: olive's manager
    assert deliveries(world.db, notification_id=escalated["acc"]["_id"], channel=kinds.EMAIL) == []  # it was read
    fire_due(world, T0 + timedelta(hours=72))
    assert len(deliveries(world.db, notification_id=escalated["lee"]["_id"], channel=kinds.EMAIL)) == 1
    assert world.db[SCHEDULES].count_documents({"state": schedules.WAITING, "kind": schedules.ITEM_ESCALATION}) == 0


def test_a_checkin_stops_the_escalation_and_counts_the_reminder_converted_once(world):
    world.notifier.v2mom_approved(approved())
    world.notifier.item_stale(stale())
    assert world.db[STATS].find_one({"_id": "reminders|2026-06-10"})["reminded"] == 1
    event = checkin(recorded=T0 + timedelta(hours=30))
    world.notifier.checkin_recorded(event)
    world.notifier.checkin_recorded(event)  # replayed
    assert world.db[SCHEDULES].count_documents({"state": schedules.WAITING, "kind": schedules.ITEM_ESCALATION}) == 0
    assert world.db[STATS].find_one({"_id": "reminders|2026-06-10"})["converted"] == 1
    late = checkin(recorded=T0 + timedelta(hours=60))
    world.notifier.checkin_recorded(late)
    assert world.db[STATS].find_one({"_id": "reminders|2026-06-10"})["converted"] == 1


def test_more_measures_off_track_draws_attention_of_the_owner_and_the_accountable_once(world):
    world.notifier.v2mom_approved(approved())
    world.notifier.progress_changed(progress(1, 0))
    assert notifications(world.db, kind=kinds.ATTENTION) == []
    event = progress(2, 1)
    world.notifier.progress_changed(event)
    world.notifier.progress_changed(event)  # replayed
    world.notifier.progress_changed(progress(1, 0))  # an older one, late
    assert sorted(n["recipient_id"] for n in notifications(world.db, kind=kinds.ATTENTION)) == ["acc", "olive"]
    world.notifier.progress_changed(progress(3, 1))  # no more than before
    assert len(notifications(world.db, kind=kinds.ATTENTION)) == 2


def with_obstacles(*obstacles):
    body = content()
    for obstacle_id, status in obstacles:
        body.obstacles.add(id=obstacle_id, title=f"Blocker {obstacle_id}", owner_id="olive", status=status,
                           method_ids=["m1"])
    return body


def test_an_obstacle_opened_in_a_publication_draws_attention_of_the_owner_and_the_accountable_once(world):
    first = approved(revision=3, body=with_obstacles(("o1", goals_pb2.OBSTACLE_STATUS_OPEN),
                                                    ("o2", goals_pb2.OBSTACLE_STATUS_RESOLVED)))
    world.notifier.v2mom_approved(first)
    world.notifier.v2mom_approved(first)  # replayed
    told = notifications(world.db, kind=kinds.ATTENTION)
    assert sorted(n["recipient_id"] for n in told) == ["acc", "olive"]
    assert {n["facts"]["obstacle_id"] for n in told} == {"o1"} and "Blocker o1" in told[0]["title"]
    # still open: nobody is told again; newly open (o2 reopened, o3 new): told once each
    later = approved(revision=5, body=with_obstacles(("o1", goals_pb2.OBSTACLE_STATUS_OPEN),
                                                    ("o2", goals_pb2.OBSTACLE_STATUS_OPEN),
                                                    ("o3", goals_pb2.OBSTACLE_STATUS_OPEN)))
    world.notifier.v2mom_approved(later)
    world.notifier.v2mom_approved(first)  # the old publication, late: changes nothing
    opened = sorted((n["facts"]["obstacle_id"], n["recipient_id"]) for n in notifications(world.db, kind=kinds.ATTENTION))
    assert opened == [("o1", "acc"), ("o1", "olive"), ("o2", "acc"), ("o2", "olive"), ("o3", "acc"), ("o3", "olive")]


def test_changes_requested_tells_nobody_about_obstacles(world):
    world.notifier.v2mom_changes_requested(
        v2mom_event(goals_events.V2MOM_CHANGES_REQUESTED, 3, goals_pb2.V2MOM_STATE_CHANGES_REQUESTED, actor="lee",
                    reason="later", body=with_obstacles(("o1", goals_pb2.OBSTACLE_STATUS_OPEN))))
    assert notifications(world.db, kind=kinds.ATTENTION) == []


def obstacle_changed(revision, status, previous, obstacle_id="o1"):
    data = events_pb2.ObstacleEventData(
        v2mom_id="v2m_1", revision=revision, owner_id="olive", org_unit_id="platform", cycle_id="FY2027",
        level=common_pb2.ORG_LEVEL_INDIVIDUAL, actor_id="olive", title="Olive FY27", accountable_ids=["acc"],
        obstacle=goals_pb2.Obstacle(id=obstacle_id, title=f"Blocker {obstacle_id}", owner_id="olive", status=status,
                                    method_ids=["m1"]),
        previous_status=previous, changed_paths=["status"])
    return to_wire(goals_events.obstacle_event(data))


def test_an_obstacle_reopened_without_approval_is_told_once_and_the_next_approval_does_not_repeat_it(world):
    OPEN, RESOLVED = goals_pb2.OBSTACLE_STATUS_OPEN, goals_pb2.OBSTACLE_STATUS_RESOLVED
    world.notifier.v2mom_approved(approved(revision=3, body=with_obstacles(("o1", RESOLVED))))
    world.notifier.obstacle_changed(obstacle_changed(4, goals_pb2.OBSTACLE_STATUS_MITIGATING, RESOLVED))
    assert notifications(world.db, kind=kinds.ATTENTION) == []  # mitigating is not news
    reopened = obstacle_changed(5, OPEN, goals_pb2.OBSTACLE_STATUS_MITIGATING)
    world.notifier.obstacle_changed(reopened)
    world.notifier.obstacle_changed(reopened)  # replayed
    told = notifications(world.db, kind=kinds.ATTENTION)
    assert sorted(n["recipient_id"] for n in told) == ["acc", "olive"] and "Blocker o1" in told[0]["title"]
    world.notifier.v2mom_approved(approved(revision=7, body=with_obstacles(("o1", OPEN))))  # carries the change
    assert len(notifications(world.db, kind=kinds.ATTENTION)) == 2


def comment_added(mentions, author="lee", on_published=False):
    comment = goals_pb2.Comment(id="cmt_1", v2mom_id="v2m_1", item_id="m1", author_id=author, text="@olive when?",
                                mention_ids=mentions, on_published=on_published, v2mom_revision=3, revision=1)
    comment.create_time.FromDatetime(T0)
    comment.update_time.FromDatetime(T0)
    data = events_pb2.CommentEventData(comment=comment, owner_id="olive", org_unit_id="platform", cycle_id="FY2027",
                                       title="Olive FY27")
    return to_wire(goals_events.comment_event(data))


def test_the_people_a_comment_mentions_are_told_once_the_author_and_strangers_never(world):
    event = comment_added(["olive", "acc", "lee", "ghost"])
    world.notifier.comment_added(event)
    world.notifier.comment_added(event)  # replayed
    told = notifications(world.db, kind=kinds.MENTION)
    assert sorted(n["recipient_id"] for n in told) == ["acc", "olive"]
    assert "Lee Lead mentioned you" in told[0]["title"] and "@olive when?" in told[0]["body"]
    assert {n["item_id"] for n in told} == {"m1"}
    channels = sorted(d["channel"] for d in deliveries(world.db, notification_id=told[0]["_id"]))
    assert channels == ["CHANNEL_EMAIL", "CHANNEL_INBOX"]


def test_mentions_reach_a_webhook_only_when_it_asks_for_them():
    assert not rules.subscription_wants({"kinds": []}, kinds.MENTION, "platform")
    assert rules.subscription_wants({"kinds": [kinds.MENTION]}, kinds.MENTION, "platform")


# --- a parent V2MOM changed --------------------------------------------------------------------------------------------


def parent_changed(owners, actor="dana", owner="lee", event_revision=9):
    data = events_pb2.ParentChangedEventData(
        v2mom_id="v2m_team", revision=event_revision, previous_revision=4, owner_id=owner, org_unit_id="platform",
        level=common_pb2.ORG_LEVEL_TEAM, cycle_id="FY2027", actor_id=actor,
        changed_paths=["content.vision", "content.methods"], child_ids=[f"v2m_{o}" for o in owners],
        child_owner_ids=owners, title="Platform FY27")
    data.change_time.FromDatetime(T0)
    return to_wire(goals_events.parent_changed_event(data))


def test_the_owners_beneath_a_changed_parent_are_told_once_in_the_inbox(world):
    event = parent_changed(["olive", "acc", "lee", "dana", "ghost"])
    world.notifier.v2mom_parent_changed(event)
    world.notifier.v2mom_parent_changed(event)  # replayed
    told = notifications(world.db, kind=kinds.PARENT_CHANGED)
    # Not the parent's owner (lee) nor its approver (dana): they made the change; ghost is unknown, skipped.
    assert sorted(n["recipient_id"] for n in told) == ["acc", "olive"]
    note = next(n for n in told if n["recipient_id"] == "olive")
    assert note["_id"] == rules.notification_id(f"{event['id']}/parent", "olive", kinds.PARENT_CHANGED)
    assert "“Platform FY27”, which yours aligns to, changed" == note["title"]
    assert "new vision, methods (revision 9)" in note["body"] and note["link"] == "https://portal.test/v2moms/v2m_team"
    assert note["facts"]["child_ids"] == ["v2m_olive", "v2m_acc", "v2m_lee", "v2m_dana", "v2m_ghost"]
    assert [d["channel"] for d in deliveries(world.db, notification_id=note["_id"])] == [kinds.INBOX]  # by default

    world.notifier.v2mom_parent_changed(parent_changed(["olive"], event_revision=10))  # a later change: told again
    assert len(notifications(world.db, kind=kinds.PARENT_CHANGED, recipient_id="olive")) == 2


def test_a_parent_change_follows_the_recipients_preferences_and_reaches_webhooks_only_when_asked(world):
    world.db[PREFERENCES].insert_one({"_id": "olive", "kinds": {kinds.PARENT_CHANGED: {"channels": [kinds.EMAIL]}}})
    world.db[PREFERENCES].insert_one({"_id": "acc", "kinds": {kinds.PARENT_CHANGED: {"channels": []}}})
    world.notifier.v2mom_parent_changed(parent_changed(["olive", "acc"]))
    [olive] = notifications(world.db, kind=kinds.PARENT_CHANGED, recipient_id="olive")
    assert [d["channel"] for d in deliveries(world.db, notification_id=olive["_id"])] == [kinds.EMAIL]
    [acc] = notifications(world.db, kind=kinds.PARENT_CHANGED, recipient_id="acc")  # kept, delivered nowhere
    assert deliveries(world.db, notification_id=acc["_id"]) == []
    assert not rules.subscription_wants({"kinds": []}, kinds.PARENT_CHANGED, "platform")
    assert rules.subscription_wants({"kinds": [kinds.PARENT_CHANGED]}, kinds.PARENT_CHANGED, "platform")


def test_a_parent_change_without_its_parent_is_dead_lettered(world):
    event = parent_changed(["olive"])
    event["data"]["v2momId"] = ""
    with pytest.raises(PermanentError):
        world.notifier.v2mom_parent_changed(event)
    assert notifications(world.db, kind=kinds.PARENT_CHANGED) == []


# --- dispatching ------------------------------------------------------------------------------------------------------


def test_the_dispatcher_sends_marks_sent_and_counts_once(world):
    world.notifier.v2mom_submitted(submitted())
    world.clock.now = T0 + timedelta(seconds=3)
    assert world.dispatcher.run_once(10) == 1
    [message] = world.email.sent
    [email] = deliveries(world.db, channel=kinds.EMAIL)
    assert message.delivery_id == email["_id"] and message.recipient_email == "lee@acme.test"
    assert message.unsubscribe_url == ""  # approval requests are not unsubscribable
    assert email["status"] == "SENT" and email["tries"] == 1 and email["outbox"][0]["type"] == "notification_sent"
    assert world.db[STATS].find_one({"_id": f"latency|{kinds.EMAIL}"})["buckets"]["5_0"] == 1
    assert world.dispatcher.run_once(10) == 0


def test_two_dispatchers_never_claim_the_same_delivery(world):
    world.notifier.v2mom_submitted(submitted())
    deliveries_ = Deliveries(world.db)
    first = deliveries_.claim_due(T0, 30)
    assert first is not None and deliveries_.claim_due(T0, 30) is None
    assert deliveries_.claim_due(T0 + timedelta(seconds=31), 30)["_id"] == first["_id"]  # the lease expired
    assert not deliveries_.mark_sent(first, T0 + timedelta(seconds=32))  # the first claimant lost its lease


def test_temporary_failures_retry_on_the_schedule_and_fail_for_good_after_the_last_try(world):
    world.notifier.v2mom_submitted(submitted())
    world.email.failures = [TemporaryFailure("421 busy", retry_after=600)]
    world.dispatcher.run_once(10)
    [email] = deliveries(world.db, channel=kinds.EMAIL)
    assert email["status"] == "PENDING" and email["tries"] == 1 and email["last_error"] == "421 busy"
    assert email["next_try_at"] >= T0 + timedelta(seconds=600)
    assert world.dispatcher.run_once(10) == 0  # not due yet
    world.clock.now = email["next_try_at"]
    world.email.failures = [PermanentFailure("550 no such user")]
    world.dispatcher.run_once(10)
    [email] = deliveries(world.db, channel=kinds.EMAIL)
    assert email["status"] == "FAILED" and email["outbox"][-1]["type"] == "notification_failed"
    assert world.db[STATS].find_one({"_id": f"failed|{kinds.APPROVAL_REQUESTED}|{kinds.EMAIL}"})["n"] == 1


def test_quiet_hours_hold_email_until_they_end_without_counting_a_try(world):
    world.db["preferences"].insert_one({"_id": "lee", "quiet_hours": {"start": "11:00", "end": "13:30"}})
    world.notifier.v2mom_submitted(submitted())
    world.dispatcher.run_once(10)
    assert world.email.sent == []
    [email] = deliveries(world.db, channel=kinds.EMAIL)
    assert email["next_try_at"] == datetime(2026, 6, 10, 13, 30, tzinfo=UTC) and email["tries"] == 0
    world.clock.now = email["next_try_at"]
    world.dispatcher.run_once(10)
    assert len(world.email.sent) == 1


def test_unsubscribed_mail_is_skipped_and_webhooks_follow_subscriptions_and_410_disables_them(world):
    world.db[SUBSCRIPTIONS].insert_many([
        {"_id": "sub_unit", "org_unit_id": "platform", "url": "https://hooks.test/a", "format": "WEBHOOK_FORMAT_STANDARD",
         "kinds": [], "disabled_at": None},
        {"_id": "sub_other", "org_unit_id": "sales", "url": "https://hooks.test/b", "kinds": [], "disabled_at": None},
    ])
    world.db["preferences"].insert_one({"_id": "olive", "unsubscribed": [kinds.ATTENTION]})
    world.notifier.v2mom_approved(approved())
    world.notifier.progress_changed(progress(2, 1))
    hooks = deliveries(world.db, channel=kinds.WEBHOOK)
    assert {d["target"] for d in hooks} == {"sub_unit"} and len(hooks) == 3  # decision + two attentions
    assert kinds.EMAIL not in {d["channel"] for d in deliveries(world.db, recipient_id="olive", kind=kinds.ATTENTION)}
    world.webhook.failures = [PermanentFailure("410 Gone", gone=True)]
    world.dispatcher.run_once(10)
    assert world.db[SUBSCRIPTIONS].find_one({"_id": "sub_unit"})["disabled_at"] is not None
    statuses = sorted(d["status"] for d in deliveries(world.db, channel=kinds.WEBHOOK))
    assert statuses == ["FAILED", "SKIPPED", "SKIPPED"]


def test_person_upserted_keeps_the_newest_revision(world):
    world.notifier.person_upserted(to_wire(goals_events.person_event(events_pb2.PersonEventData(
        person=common_pb2.Person(id="lee", display_name="Lee New", email="new@acme.test", active=True), revision=5))))
    world.notifier.person_upserted(to_wire(goals_events.person_event(events_pb2.PersonEventData(
        person=common_pb2.Person(id="lee", display_name="Lee Old", email="old@acme.test", active=True), revision=3))))
    assert world.people.get("lee").email == "new@acme.test"
