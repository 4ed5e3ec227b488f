"""Every goals state change leaves as a CloudEvent through the outbox and the real worker."""

import subprocess
import time

import pytest
from google.protobuf import field_mask_pb2
from google.type import date_pb2

from services.goals.directory import Directory
from services.goals.events import EVENT_TYPES
from services.platform.bus.events import parse
from tests.support.catalogue import validate_event
from tests.support.events_probe import EventProbe
from v2mom.v1 import common_pb2, goals_pb2


def build_org(db) -> None:
    directory = Directory(db, cache_seconds=0)
    directory.upsert_cycle("FY2027", "2026-02-01", "2027-01-31")
    directory.upsert_org_unit({"_id": "acme", "name": "Acme", "level": "ORG_LEVEL_COMPANY", "leader_id": "ceo"})
    directory.upsert_person({"_id": "ceo", "display_name": "Cleo CEO", "org_unit_id": "acme"})
    directory.upsert_person({"_id": "ann", "display_name": "Ann", "org_unit_id": "acme", "manager_id": "ceo"})


def content(vision="Ship 3 features customers rate 8+ by Q4") -> goals_pb2.V2MOMContent:
    due = date_pb2.Date(year=2026, month=12, day=31)
    return goals_pb2.V2MOMContent(
        title="Ann FY27",
        vision=vision,
        values=[goals_pb2.Value(id="v1", name="Customer first", description="Talk to 5 customers a week")],
        methods=[
            goals_pb2.Method(id="m1", title="Launch beta by June", value_ids=["v1"], owner_id="ann", accountable_id="ann", due_date=due)
        ],
        measures=[goals_pb2.Measure(title="NPS", unit="NPS", baseline=30, target=45, direction=1, due_date=due,
                                    method_ids=["m1"])],
    )


def run_lifecycle(goals_api) -> str:
    """create → submit → changes requested → edit → submit → approve → edit published → archive."""
    ann, ceo = goals_api("ann"), goals_api("ceo")
    v2mom = ann.CreateV2MOM(goals_pb2.CreateV2MOMRequest(level=common_pb2.ORG_LEVEL_INDIVIDUAL, cycle_id="FY2027", content=content()))
    ann.SubmitV2MOM(goals_pb2.SubmitV2MOMRequest(id=v2mom.id))
    ceo.RequestChanges(goals_pb2.RequestChangesRequest(id=v2mom.id, reason="Add a measure for retention"))
    ann.UpdateV2MOM(goals_pb2.UpdateV2MOMRequest(
        v2mom=goals_pb2.V2MOM(id=v2mom.id, content=content("Ship 4 features rated 8+ by Q4")),
        update_mask=field_mask_pb2.FieldMask(paths=["content.vision"]),
    ))
    ann.SubmitV2MOM(goals_pb2.SubmitV2MOMRequest(id=v2mom.id))
    ceo.ApproveV2MOM(goals_pb2.ApproveV2MOMRequest(id=v2mom.id))
    ann.UpdateV2MOM(goals_pb2.UpdateV2MOMRequest(
        v2mom=goals_pb2.V2MOM(id=v2mom.id, content=content("Ship 5 features rated 8+ by Q4")),
        update_mask=field_mask_pb2.FieldMask(paths=["content.vision"]),
        change_reason="a new customer segment",
    ))
    ann.ArchiveV2MOM(goals_pb2.ArchiveV2MOMRequest(id=v2mom.id, reason="reorganised"))
    return v2mom.id


EXPECTED_SEQUENCE = [
    "v2mom_created", "v2mom_submitted", "v2mom_changes_requested", "v2mom_updated",
    "v2mom_submitted", "v2mom_approved", "v2mom_updated", "v2mom_archived",
]


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


@pytest.fixture
def probe(settings):
    probe = EventProbe(settings.amqp_uri, "goals.events")
    yield probe
    probe.close()


def events_for(received: list[dict], subject: str) -> list[dict]:
    return [e for e in received if e["subject"] == subject]


def test_every_state_change_is_published_once_in_order(db, goals_api, goals_worker, probe):
    build_org(db)
    v2mom_id = run_lifecycle(goals_api)

    received = probe.drain(until_count=len(EXPECTED_SEQUENCE) + 3)
    received = probe.settle(quiet_seconds=0.5)
    mine = events_for(received, v2mom_id)

    assert [e["type"] for e in mine] == EXPECTED_SEQUENCE
    assert len({e["id"] for e in received}) == len(received), "an event was published twice"
    for event in received:
        validate_event(event)  # matches docs/events.asyncapi.yaml
    for event in mine:
        parse(event)  # a valid CloudEvents envelope
        assert event["source"] == "/v2mom/goals"
        assert event["data"]["v2momId"] == v2mom_id
        assert event["data"]["ownerId"] == "ann" and event["data"]["orgUnitId"] == "acme"
        assert event["data"]["cycleId"] == "FY2027"
    approved = next(e for e in mine if e["type"] == "v2mom_approved")
    assert approved["data"]["state"] == "V2MOM_STATE_PUBLISHED"
    assert approved["data"]["previousState"] == "V2MOM_STATE_SUBMITTED"
    assert approved["data"]["actorId"] == "ceo" and approved["data"]["publishTime"]
    changes = next(e for e in mine if e["type"] == "v2mom_changes_requested")
    assert changes["data"]["reason"] == "Add a measure for retention"
    assert db.v2moms.count_documents({"outbox_pending": True}) == 0
    assert db.v2moms.find_one({"_id": v2mom_id})["outbox"] == []


def test_person_and_org_unit_upserts_are_published(db, goals_worker, probe):
    # Ids of its own, so events from other runs sharing the broker cannot be mistaken for these.
    suffix = db.name[-10:]
    unit, boss, hire = f"unit-{suffix}", f"boss-{suffix}", f"hire-{suffix}"
    directory = Directory(db, 0)
    directory.upsert_org_unit({"_id": unit, "name": "Skunkworks", "level": "ORG_LEVEL_TEAM", "leader_id": boss})
    directory.upsert_person({"_id": boss, "display_name": "Bo", "org_unit_id": unit})
    directory.upsert_person({"_id": hire, "display_name": "Hal", "org_unit_id": unit, "manager_id": boss})
    directory.upsert_person({"_id": hire, "display_name": "Hal", "org_unit_id": unit, "manager_id": boss, "active": False})

    probe.drain(until_count=4)
    received = [e for e in probe.settle(quiet_seconds=0.5) if e["subject"] in (unit, boss, hire)]
    for event in received:
        validate_event(event)  # matches docs/events.asyncapi.yaml
    # Order holds per record, not across collections.
    assert sorted((e["type"], e["subject"]) for e in received) == sorted([
        ("org_unit_upserted", unit), ("person_upserted", boss), ("person_upserted", hire), ("person_upserted", hire),
    ])
    hired, left = [e["data"] for e in received if e["subject"] == hire]
    assert left["person"]["active"] is False, "a leaver's active=false must be in the payload"
    assert (hired["revision"], left["revision"]) == ("1", "2")
    assert left["previousManagerId"] == boss


def test_published_messages_are_persistent_and_typed(db, goals_api, goals_worker, probe):
    build_org(db)
    probe.drain(until_count=3)
    message = probe.messages[0]
    assert message.properties["delivery_mode"] == 2
    assert message.content_type == "application/cloudevents+json"
    assert message.properties["message_id"] == probe.received[0]["id"]
    assert message.delivery_info["routing_key"] == probe.received[0]["type"]
    assert set(e["type"] for e in probe.received) <= set(EVENT_TYPES)
    for event in probe.received:
        validate_event(event)  # matches docs/events.asyncapi.yaml


def _rabbitmqctl(*args) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


@pytest.fixture
def broker_control():
    """Stops the machine's RabbitMQ application; always starts it again."""
    try:
        _rabbitmqctl("status")
    except (FileNotFoundError, subprocess.CalledProcessError) as error:
        pytest.fail(f"the outage test needs rabbitmqctl to stop and start the local broker: {error}")
    yield lambda action: _rabbitmqctl(f"{action}_app")
    _rabbitmqctl("start_app")
    _rabbitmqctl("await_startup")


@pytest.mark.broker_outage
def test_broker_outage_loses_nothing_and_publishes_once(db, goals_api, goals_worker, probe, broker_control):
    build_org(db)
    probe.drain(until_count=3)  # the directory's own events, before the outage

    broker_control("stop")
    v2mom_id = run_lifecycle(goals_api)  # every call succeeds with the broker down
    time.sleep(1.0)  # the relay tries, fails and keeps the events
    stored = db.v2moms.find_one({"_id": v2mom_id})
    assert [e["type"] for e in stored["outbox"]] == EXPECTED_SEQUENCE
    assert stored["outbox_pending"] is True

    broker_control("start")
    _rabbitmqctl("await_startup")
    probe.drain(until_count=3 + len(EXPECTED_SEQUENCE), timeout=60)
    received = probe.settle(quiet_seconds=1.5)

    mine = events_for(received, v2mom_id)
    for event in received:
        validate_event(event)  # matches docs/events.asyncapi.yaml
    assert [e["type"] for e in mine] == EXPECTED_SEQUENCE
    assert len({e["id"] for e in received}) == len(received), "an event was published twice"
    assert db.v2moms.find_one({"_id": v2mom_id})["outbox"] == []
    assert goals_worker.poll() is None, "the worker died during the outage"


def test_obstacle_changes_and_comments_leave_through_their_outboxes(db, goals_api, goals_worker, probe):
    build_org(db)
    ann, ceo = goals_api("ann"), goals_api("ceo")
    body = content()
    body.obstacles.add(id="o1", title="Legacy data", owner_id="ann", status=goals_pb2.OBSTACLE_STATUS_OPEN,
                       method_ids=["m1"])
    v2mom = ann.CreateV2MOM(goals_pb2.CreateV2MOMRequest(level=common_pb2.ORG_LEVEL_INDIVIDUAL, cycle_id="FY2027",
                                                         content=body))
    ann.SubmitV2MOM(goals_pb2.SubmitV2MOMRequest(id=v2mom.id))
    ceo.ApproveV2MOM(goals_pb2.ApproveV2MOMRequest(id=v2mom.id))
    ann.UpdateObstacle(goals_pb2.UpdateObstacleRequest(
        v2mom_id=v2mom.id, obstacle_id="o1", obstacle=goals_pb2.Obstacle(status=goals_pb2.OBSTACLE_STATUS_RESOLVED),
        update_mask=field_mask_pb2.FieldMask(paths=["status"]), reason="cleaned up"))
    comment = ceo.AddComment(goals_pb2.AddCommentRequest(v2mom_id=v2mom.id, text="Well done @ann", item_id="o1"))

    probe.drain(until_count=8)
    mine = events_for(probe.settle(quiet_seconds=0.5), v2mom.id)
    for event in mine:
        validate_event(event)  # matches docs/events.asyncapi.yaml
    assert [e["type"] for e in mine] == ["v2mom_created", "v2mom_submitted", "v2mom_approved", "obstacle_changed",
                                         "comment_added"]
    approved, changed, added = mine[2:]
    assert approved["data"]["content"]["obstacles"][0]["openTime"]  # the approval opened it
    assert (changed["data"]["obstacle"]["status"], changed["data"]["previousStatus"], changed["data"]["reason"]) == (
        "OBSTACLE_STATUS_RESOLVED", "OBSTACLE_STATUS_OPEN", "cleaned up")
    assert (added["data"]["comment"]["id"], added["data"]["comment"]["mentionIds"]) == (comment.id, ["ann"])
    assert db.comments.count_documents({"outbox_pending": True}) == 0
