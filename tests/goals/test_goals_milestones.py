"""Milestones close from check-ins: a method check-in's completed milestones become done in the V2MOM, a system
revision with no re-approval, idempotent on replays and late events.

The use case runs against a real goals-api's database; the last test runs goals-worker as a real process,
fed checkins' events through RabbitMQ, and reads the result through the real API.
"""

import json
import time
import uuid

import kombu
import pytest

from services.checkins import events as checkin_events
from services.goals.milestone_completions import MilestoneCompletions
from services.goals.repository import V2MOMRepository
from services.platform.bus.events import to_wire
from services.platform.core.clock import to_timestamp, utc_now
from tests.support.broker import queue_exists
from tests.support.catalogue import validate_event
from tests.support.events_probe import EventProbe
from tests.support.goals import INDIVIDUAL, MANAGER, OWNER, build_org, valid_content
from tests.support.processes import log_tail, wait_for
from v2mom.v1 import checkins_pb2, events_pb2, goals_pb2

QUEUE = "evt-checkins-checkin_recorded--goals_worker.on_checkin_recorded"


def method_checkin(v2mom_id: str, milestone_ids, method_id="mth-0", kind=checkins_pb2.ITEM_KIND_METHOD):
    now = to_timestamp(utc_now())
    return checkins_pb2.Checkin(id=f"chk_{uuid.uuid4().hex[:10]}", v2mom_id=v2mom_id, item_kind=kind,
                                item_id=method_id, author_id=OWNER, progress_percent=50,
                                completed_milestone_ids=list(milestone_ids), observe_time=now, record_time=now)


def milestones_of(v2mom: goals_pb2.V2MOM, method_id="mth-0") -> dict[str, bool]:
    method = next(m for m in v2mom.content.methods if m.id == method_id)
    return {m.id: m.done for m in method.milestones}


@pytest.fixture
def completions(goals):
    return MilestoneCompletions(V2MOMRepository(goals.db))


def get(goals, v2mom_id, person=OWNER):
    return goals.client(person).GetV2MOM(goals_pb2.GetV2MOMRequest(id=v2mom_id))


def test_a_method_checkin_marks_its_milestone_done_without_a_new_approval(goals, cycle, completions):
    published = goals.published(cycle_id=cycle)
    checkin = method_checkin(published.id, ["mil-0"])
    assert completions.take(checkin)
    assert milestones_of(get(goals, published.id, person="pete")) == {"mil-0": True}  # published readers too
    after = get(goals, published.id)
    assert (after.state, after.revision, after.published_revision) == (
        goals_pb2.V2MOM_STATE_PUBLISHED, published.revision + 1, published.published_revision)
    raw = goals.raw(published.id)
    entry = raw["latest_revision"]
    # A system revision: the system acts, the check-in and who recorded it are the reason.
    assert (entry["action"], entry["actor_id"], entry["changed_paths"]) == (
        "COMPLETE_MILESTONES", "system", ["content.methods[mth-0].milestones[mil-0].done"])
    assert entry["reason"] == f"completed by check-in {checkin.id} of {OWNER}"
    event = to_wire(raw["outbox"][-1])
    assert event["type"] == "milestones_completed" and event["data"]["state"] == "V2MOM_STATE_PUBLISHED"
    assert (event["data"]["actorId"], event["data"]["reason"]) == ("system", entry["reason"])
    validate_event(event)  # matches docs/events.asyncapi.yaml
    history = goals.client(OWNER).ListRevisions(goals_pb2.ListRevisionsRequest(v2mom_id=published.id))
    assert (history.revisions[-1].action, history.revisions[-1].actor_id) == ("COMPLETE_MILESTONES", "system")


def test_replays_late_and_foreign_checkins_change_nothing(goals, cycle, completions):
    published = goals.published(cycle_id=cycle)
    checkin = method_checkin(published.id, ["mil-0"])
    assert completions.take(checkin)
    revision = goals.raw(published.id)["revision"]
    outbox = len(goals.raw(published.id)["outbox"])
    assert not completions.take(checkin)  # the same event again
    assert not completions.take(method_checkin(published.id, ["mil-0"]))  # a later one naming it again
    assert not completions.take(method_checkin(published.id, ["mil-gone"]))  # not (or no longer) a milestone
    assert not completions.take(method_checkin(published.id, ["mil-0"], method_id="mth-gone"))
    assert not completions.take(method_checkin(published.id, [], ))  # nothing completed
    assert not completions.take(method_checkin(published.id, ["mil-0"], kind=checkins_pb2.ITEM_KIND_MEASURE))
    raw = goals.raw(published.id)
    assert (raw["revision"], len(raw["outbox"])) == (revision, outbox)


def test_drafts_and_archived_v2moms_are_left_alone(goals, cycle, completions):
    draft = goals.create(cycle_id=cycle)
    assert not completions.take(method_checkin(draft.id, ["mil-0"]))
    assert goals.raw(draft.id)["revision"] == draft.revision
    assert not completions.take(method_checkin("v2m_nobody_knows", ["mil-0"]))


def test_a_draft_under_way_gets_the_milestone_too_so_the_next_approval_keeps_it(goals, cycle, completions):
    published = goals.published(cycle_id=cycle)
    draft = goals.edit(published, reason="Sharper vision", vision="Cut invoice errors from 4% to 0.5% by 2027")
    assert completions.take(method_checkin(published.id, ["mil-0"]))
    working = get(goals, published.id)
    assert working.state == goals_pb2.V2MOM_STATE_DRAFT and milestones_of(working) == {"mil-0": True}
    goals.submit(working)
    approved = goals.approve(working, MANAGER)
    assert milestones_of(approved) == {"mil-0": True}
    assert draft.revision < approved.revision


# --- goals-worker as a process, fed through RabbitMQ ------------------------------------------------


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


def publish(connection, envelope: dict) -> None:
    exchange = kombu.Exchange("checkins.events", type="topic", durable=True)
    kombu.Producer(connection.default_channel, exchange=exchange).publish(
        json.dumps(envelope), routing_key=envelope["type"], content_type="application/cloudevents+json",
        content_encoding="utf-8", declare=[exchange])


def test_goals_worker_marks_milestones_from_checkins_events_once(db, settings, goals_api, connection, goals_worker):
    build_org(db)
    owner = goals_api(OWNER)
    created = owner.CreateV2MOM(goals_pb2.CreateV2MOMRequest(level=INDIVIDUAL, owner_id=OWNER, cycle_id="FY2027",
                                                             content=valid_content()))
    owner.SubmitV2MOM(goals_pb2.SubmitV2MOMRequest(id=created.id))
    published = goals_api(MANAGER).ApproveV2MOM(goals_pb2.ApproveV2MOMRequest(id=created.id))
    probe = EventProbe(settings.amqp_uri, "goals.events", routing_key="milestones_completed")
    try:
        wait_for(lambda: queue_exists(connection, QUEUE) or goals_worker.poll() is not None, 30,
                 "goals-worker never declared its queue")
        assert goals_worker.poll() is None, log_tail(goals_worker)
        data = events_pb2.CheckinEventData(checkin=method_checkin(published.id, ["mil-0"]))
        envelope = to_wire(checkin_events.checkin_event(checkin_events.CHECKIN_RECORDED, data))
        for _ in range(3):  # redelivered: marked once
            publish(connection, envelope)
        wait_for(lambda: milestones_of(owner.GetV2MOM(goals_pb2.GetV2MOMRequest(id=published.id))) == {"mil-0": True},
                 30, "the milestone never became done")
        received = probe.drain(until_count=1)
        time.sleep(1.0)
        received = probe.settle(quiet_seconds=0.5)
    finally:
        probe.close()
    assert [e["data"]["v2momId"] for e in received] == [published.id]
    validate_event(received[0])
    assert owner.GetV2MOM(goals_pb2.GetV2MOMRequest(id=published.id)).revision == published.revision + 1
