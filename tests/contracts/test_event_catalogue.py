"""docs/events.asyncapi.yaml against what the goals, check-ins and notify services really publish.

External consumers code against the catalogue, so it must cover exactly the
published types, each on its service's exchange, its examples must be valid,
and payloads built by the services' own code (services/goals/events.py,
services/checkins/events.py, services/notify/events.py) must match it. The publisher
prints every field without explicit presence, defaults included, so the
schemas must require exactly those (plus the message fields the service
always sets), and admit `*_UNSPECIFIED` enum names exactly where the service
can send them. The last tests pair every data schema with its proto message
field by field, so a field added to the proto without the catalogue fails
here, even before anyone populates it.
"""

import copy
import functools
import json

import pytest
from google.protobuf import descriptor_pool, json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.timestamp_pb2 import Timestamp
from google.type import date_pb2

from services.checkins import events as checkin_events
from services.goals import events as goals_events
from services.notify import events as notify_events
from services.platform.bus import events as platform_events
from tests.support.catalogue import (
    _follow, catalogued_types, CatalogueMismatch, exchange_of_type, load_catalogue, message_for_type,
    resolve_pointer, schema_errors, validate_event,
)
from services.goals import directory_api, hris
from services.platform.core.errors import Violations
from v2mom.v1 import checkins_pb2, common_pb2, directory_pb2, events_pb2, goals_pb2, notify_pb2

CATALOGUE = load_catalogue()
SCHEMAS = CATALOGUE["components"]["schemas"]

# Who publishes what: each service on its own exchange, "<service>.events".
SERVICES = {
    goals_events.SERVICE: goals_events.EVENT_TYPES,
    checkin_events.SERVICE: checkin_events.EVENT_TYPES,
    notify_events.SERVICE: notify_events.EVENT_TYPES,
}
SERVICE_OF = {event_type: service for service, types in SERVICES.items() for event_type in types}
ALL_TYPES = tuple(SERVICE_OF)
CHECKIN_TYPES = (checkin_events.CHECKIN_RECORDED, checkin_events.CHECKIN_CORRECTED)
STALENESS_TYPES = (checkin_events.ITEM_BECAME_STALE, checkin_events.ITEM_OVERDUE)

PAYLOAD_MESSAGES = {
    **{event_type: events_pb2.V2MOMEventData for event_type in goals_events.V2MOM_EVENT_TYPES},
    goals_events.PERSON_UPSERTED: events_pb2.PersonEventData,
    goals_events.ORG_UNIT_UPSERTED: events_pb2.OrgUnitEventData,
    **{event_type: events_pb2.CycleEventData for event_type in goals_events.CYCLE_EVENT_TYPES},
    goals_events.OBSTACLE_CHANGED: events_pb2.ObstacleEventData,
    goals_events.COMMENT_ADDED: events_pb2.CommentEventData,
    goals_events.V2MOM_PARENT_CHANGED: events_pb2.ParentChangedEventData,
    **{event_type: events_pb2.CheckinEventData for event_type in CHECKIN_TYPES},
    checkin_events.PROGRESS_CHANGED: events_pb2.ProgressEventData,
    **{event_type: events_pb2.ItemStalenessEventData for event_type in STALENESS_TYPES},
    **{event_type: events_pb2.DeliveryEventData for event_type in notify_events.EVENT_TYPES},
}

# The services' own envelope builders, one per type: the publishers' own serialisation.
PUBLISHERS = {
    **{event_type: functools.partial(goals_events.v2mom_event, event_type) for event_type in goals_events.V2MOM_EVENT_TYPES},
    goals_events.PERSON_UPSERTED: goals_events.person_event,
    goals_events.ORG_UNIT_UPSERTED: goals_events.org_unit_event,
    **{event_type: functools.partial(goals_events.cycle_event, event_type) for event_type in goals_events.CYCLE_EVENT_TYPES},
    goals_events.OBSTACLE_CHANGED: goals_events.obstacle_event,
    goals_events.COMMENT_ADDED: goals_events.comment_event,
    goals_events.V2MOM_PARENT_CHANGED: goals_events.parent_changed_event,
    **{event_type: functools.partial(checkin_events.checkin_event, event_type) for event_type in CHECKIN_TYPES},
    checkin_events.PROGRESS_CHANGED: checkin_events.progress_event,
    **{event_type: functools.partial(checkin_events.staleness_event, event_type) for event_type in STALENESS_TYPES},
    **{event_type: functools.partial(notify_events.delivery_envelope, event_type) for event_type in notify_events.EVENT_TYPES},
}


def publish(event_type: str, data) -> dict:
    """The envelope the publishing service builds for a payload message."""
    return PUBLISHERS[event_type](data)


# What goals-worker receives from an HRIS (hris.events): documented here, published by no service of ours.
RECEIVED = {hris.HIRED: directory_pb2.PersonChange, hris.UPDATED: directory_pb2.PersonChange,
            hris.TERMINATED: directory_pb2.EmployeeTerminatedData, hris.UNIT_UPSERTED: directory_pb2.OrgUnitChange,
            hris.UNIT_RETIRED: directory_pb2.OrgUnitRetiredData}

EXAMPLES = [
    pytest.param(event_type, example, id=f"{event_type}:{example.get('name', index)}")
    for event_type in sorted(catalogued_types() - set(RECEIVED))
    for index, example in enumerate(message_for_type(event_type).get("examples", []))
]


# --- (a) the catalogue covers exactly the published types -------------------------


def test_every_published_type_is_catalogued():
    missing = set(ALL_TYPES) - catalogued_types()
    assert not missing, f"published but not in docs/events.asyncapi.yaml: {sorted(missing)}"


def test_catalogue_documents_only_published_types():
    extra = catalogued_types() - set(ALL_TYPES) - set(RECEIVED)
    assert not extra, f"documented but never published by services/*/events.py: {sorted(extra)}"


@pytest.mark.parametrize("event_type", sorted(RECEIVED))
def test_received_hris_events_are_catalogued_as_goals_worker_takes_them(event_type):
    """On hris.events, received (not sent), with examples valid for the schema that goals-worker's own checks
    (directory_api's conversions, as hris.py runs them) accept."""
    assert exchange_of_type(event_type) == "hris.events"
    receives = [op for op in CATALOGUE["operations"].values()
                if op["action"] == "receive" and _follow(op["channel"])[1]["address"] == event_type]
    assert len(receives) == 1
    message = message_for_type(event_type)
    examples = message.get("examples")
    assert examples, f"{event_type} has no example"
    for example in examples:
        payload = example["payload"]
        assert payload["type"] == event_type and payload["source"] == "/v2mom/hris"
        errors = schema_errors(payload, f"#/components/messages/{event_type}/payload")
        assert not errors, errors
        data = json_format.ParseDict(payload["data"], RECEIVED[event_type]())
        if event_type in (hris.HIRED, hris.UPDATED, hris.UNIT_UPSERTED):
            violations = Violations()
            convert = directory_api.unit_change if event_type == hris.UNIT_UPSERTED else directory_api.person_change
            convert(violations, "", data)
            assert not violations.items, violations.items


def test_event_types_are_unique_across_services():
    # Channels are keyed by type, and consumers filter `#` bindings by type: a type may not mean two things.
    assert len(ALL_TYPES) == sum(len(types) for types in SERVICES.values())


def test_payload_message_table_covers_every_type():
    # Guards this test module itself: a new type must get its proto and publisher here.
    assert set(PAYLOAD_MESSAGES) == set(PUBLISHERS) == set(ALL_TYPES)


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_channel_routes_like_the_publisher(event_type):
    service = SERVICE_OF[event_type]
    channel = CATALOGUE["channels"][event_type]
    assert channel["address"] == event_type, "the routing key is the event type"
    _, binding = _follow(channel["bindings"])
    amqp = binding["amqp"]
    assert amqp["is"] == "routingKey"
    exchange = amqp["exchange"]
    # The relay declares exactly this exchange (services/platform/bus/outbox.py).
    assert exchange["name"] == platform_events.exchange_name(service) == exchange_of_type(event_type)
    assert (exchange["type"], exchange["durable"], exchange["autoDelete"]) == ("topic", True, False)

    message = message_for_type(event_type)
    # The message pins `source` to what the service's envelope says, so validate_event tells the services apart.
    source = next(part["properties"]["source"]["const"] for part in message["payload"]["allOf"] if "properties" in part)
    assert source == publish(event_type, PAYLOAD_MESSAGES[event_type]())["source"] == f"/v2mom/{service}"
    assert message["name"] == event_type
    assert message["contentType"] == platform_events.CONTENT_TYPE
    assert message["bindings"]["amqp"]["messageType"] == event_type
    assert message.get("examples"), f"{event_type} has no example"

    sends = [
        op
        for op in CATALOGUE["operations"].values()
        if op["action"] == "send" and op["channel"]["$ref"] == f"#/channels/{event_type}"
    ]
    assert len(sends) == 1, f"{event_type} needs exactly one send operation, has {len(sends)}"
    assert _follow(sends[0]["bindings"])[1]["amqp"]["deliveryMode"] == 2, "events are persistent"


def test_info_states_the_delivery_guarantee():
    description = CATALOGUE["info"]["description"]
    for phrase in ("at least once", "publisher confirms", "de-duplicate by the envelope `id`"):
        assert phrase in description, f"info.description should state {phrase!r}"


def test_info_names_every_exchange():
    description = CATALOGUE["info"]["description"]
    for service in SERVICES:
        assert f"`{platform_events.exchange_name(service)}`" in description
        assert f"`/v2mom/{service}`" in description


def test_info_states_that_defaults_are_present():
    description = CATALOGUE["info"]["description"]
    for phrase in ("Every field is present, defaults included", "`active: false`", "V2MOM_STATE_UNSPECIFIED"):
        assert phrase in description, f"info.description should state {phrase!r}"
    assert "are left out" not in description, "proto3 JSON here prints defaults; nothing says otherwise"


# --- (b) examples -------------------------------------------------------------------


@pytest.mark.parametrize(("event_type", "example"), EXAMPLES)
def test_example_matches_its_schema(event_type, example):
    payload = example["payload"]
    assert payload["type"] == event_type, "an example must be of its own message's type"
    validate_event(payload)


@pytest.mark.parametrize(("event_type", "example"), EXAMPLES)
def test_example_data_is_canonical_proto3_json(event_type, example):
    # The schema could agree with a wrong example (say, a misspelt field that
    # the schema also misspells, or a default the schema wrongly lets go
    # missing); the generated code cannot. Parsing and re-publishing through
    # services/goals/events.py must give back the example unchanged: exactly
    # what the publisher would have produced, defaults included.
    payload = example["payload"]
    message = json_format.ParseDict(payload["data"], PAYLOAD_MESSAGES[event_type]())
    republished = platform_events.to_wire(publish(event_type, message))
    assert republished["data"] == payload["data"]
    assert republished["subject"] == payload["subject"]


def test_there_is_an_example_for_every_type():
    with_examples = {param.values[0] for param in EXAMPLES}
    assert with_examples == set(ALL_TYPES)


# --- (c) payloads built by the service's own code -------------------------------------


def _date(year, month, day):
    return date_pb2.Date(year=year, month=month, day=day)


def _time(rfc3339: str) -> Timestamp:
    stamp = Timestamp()
    stamp.FromJsonString(rfc3339)
    return stamp


def full_content() -> goals_pb2.V2MOMContent:
    return goals_pb2.V2MOMContent(
        title="Payments team FY2027",
        vision="Paying us is the easiest thing our customers do all day.",
        values=[
            goals_pb2.Value(id="val_1", name="Customer first", description="We start from the customer's problem.",
                            copied_from="val_0"),
            goals_pb2.Value(id="val_2", name="Craft", description="We leave the code better than we found it.",
                            copied_from="val_00"),
        ],
        methods=[
            goals_pb2.Method(
                id="mth_1",
                title="One-click checkout",
                description="Stored payment methods for returning customers.",
                value_ids=["val_1", "val_2"],
                owner_id="ana.lopez",
                accountable_id="ana.lopez",
                responsible_ids=["ben.okafor", "chen.yu"],
                consulted_ids=["legal.team"],
                informed_ids=["cfo.office"],
                start_date=_date(2027, 2, 1),
                due_date=_date(2027, 9, 30),
                milestones=[
                    goals_pb2.Milestone(id="mls_1", title="Design approved", due_date=_date(2027, 3, 15), done=True),
                ],
                weight=100.0,
                copied_from="mth_0",
                supports=["mth_parent_1"],
            ),
        ],
        obstacles=[
            goals_pb2.Obstacle(
                id="obs_1",
                title="PCI audit",
                description="The new vault needs a fresh audit.",
                owner_id="chen.yu",
                status=goals_pb2.OBSTACLE_STATUS_OPEN,
                method_ids=["mth_1"],
                copied_from="obs_0",
                open_time=_time("2027-02-03T10:00:00Z"),
                stale=True,
            ),
        ],
        measures=[
            goals_pb2.Measure(
                id="msr_1",
                title="Checkout conversion",
                kind=goals_pb2.MEASURE_KIND_LAGGING,
                unit="%",
                baseline=61.5,
                target=75.0,
                direction=goals_pb2.DIRECTION_INCREASE,
                due_date=_date(2027, 12, 31),
                method_ids=["mth_1"],
                owner_id="ben.okafor",
                weight=100.0,
                copied_from="msr_0",
            ),
        ],
    )


def full_v2mom_data(**overrides) -> events_pb2.V2MOMEventData:
    fields = dict(
        v2mom_id="v2m_01jdxjzq4k7m9p1s3v5x7z9b1d",
        revision=12,
        owner_id="ana.lopez",
        org_unit_id="fin.payments",
        level=common_pb2.ORG_LEVEL_TEAM,
        cycle_id="FY2027",
        parent_id="v2m_01jdw0m2p4r6t8v0x2z4b6d8f0",
        state=goals_pb2.V2MOM_STATE_SUBMITTED,
        previous_state=goals_pb2.V2MOM_STATE_DRAFT,
        actor_id="ana.lopez",
        approver_id="dora.kim",
        reason="Quarterly re-plan.",
        changed_paths=["content.methods", "parent_id"],
        create_time=_time("2026-11-26T09:15:02.479Z"),
        submit_time=_time("2026-12-01T10:00:00.201543Z"),
        publish_time=_time("2026-12-03T16:45:30Z"),
        archive_time=_time("2028-01-15T10:59:59.123456789Z"),
        content=full_content(),
        copied_from_id="v2m_01jdw0m2p4r6t8v0x2z4b6d8a1",
        previous_owner_id="kai.berger",
    )
    fields.update(overrides)
    return events_pb2.V2MOMEventData(**fields)


# What each lifecycle step looks like; every other field stays fully populated.
V2MOM_STEPS = {
    goals_events.V2MOM_CREATED: dict(state=goals_pb2.V2MOM_STATE_DRAFT, previous_state=goals_pb2.V2MOM_STATE_UNSPECIFIED),
    # Editing the published version opens a new draft.
    goals_events.V2MOM_UPDATED: dict(state=goals_pb2.V2MOM_STATE_DRAFT, previous_state=goals_pb2.V2MOM_STATE_PUBLISHED),
    goals_events.V2MOM_SUBMITTED: dict(state=goals_pb2.V2MOM_STATE_SUBMITTED, previous_state=goals_pb2.V2MOM_STATE_DRAFT),
    goals_events.V2MOM_CHANGES_REQUESTED: dict(
        state=goals_pb2.V2MOM_STATE_CHANGES_REQUESTED, previous_state=goals_pb2.V2MOM_STATE_SUBMITTED
    ),
    goals_events.V2MOM_APPROVED: dict(state=goals_pb2.V2MOM_STATE_PUBLISHED, previous_state=goals_pb2.V2MOM_STATE_SUBMITTED),
    goals_events.V2MOM_ARCHIVED: dict(state=goals_pb2.V2MOM_STATE_ARCHIVED, previous_state=goals_pb2.V2MOM_STATE_PUBLISHED),
    goals_events.V2MOM_WITHDRAWN: dict(state=goals_pb2.V2MOM_STATE_DRAFT, previous_state=goals_pb2.V2MOM_STATE_SUBMITTED),
    # A method check-in's milestones done: the state stays (no re-approval).
    goals_events.MILESTONES_COMPLETED: dict(state=goals_pb2.V2MOM_STATE_PUBLISHED,
                                            previous_state=goals_pb2.V2MOM_STATE_PUBLISHED),
    # A leaver's approvals move on: a system revision, the state stays.
    goals_events.V2MOM_APPROVER_CHANGED: dict(state=goals_pb2.V2MOM_STATE_SUBMITTED,
                                              previous_state=goals_pb2.V2MOM_STATE_SUBMITTED, actor_id="system",
                                              changed_paths=["approver_id"]),
    # A leaver's items pass to the V2MOM's owner: a system revision of the published version, the state stays.
    goals_events.V2MOM_ITEMS_REASSIGNED: dict(state=goals_pb2.V2MOM_STATE_PUBLISHED,
                                              previous_state=goals_pb2.V2MOM_STATE_PUBLISHED, actor_id="system",
                                              changed_paths=["content.methods[mth_1].accountable_id"]),
    # TransferV2MOM: a new owner, the state stays.
    goals_events.V2MOM_TRANSFERRED: dict(state=goals_pb2.V2MOM_STATE_PUBLISHED,
                                         previous_state=goals_pb2.V2MOM_STATE_PUBLISHED, actor_id="dora.kim",
                                         changed_paths=["owner_id"]),
}


def full_cycle_data(closed: bool = True) -> events_pb2.CycleEventData:
    """A closed cycle has every field; an open one no close time or next cycle (cycle_changed)."""
    cycle = common_pb2.Cycle(
        id="FY2027", start_date=_date(2026, 2, 1), end_date=_date(2027, 1, 31),
        quarters=[common_pb2.Quarter(id="Q1", start_date=_date(2026, 2, 1), end_date=_date(2026, 4, 30))],
    )
    if closed:
        cycle.close_time.CopyFrom(_time("2027-02-01T08:00:00.125Z"))
        cycle.next_cycle_id = "FY2028"
    return events_pb2.CycleEventData(cycle=cycle, actor_id="kofi.mensah", reason="FY2027 is over." if closed else "",
                                     revision=3)


def full_obstacle_data() -> events_pb2.ObstacleEventData:
    obstacle = goals_pb2.Obstacle(
        id="obs_1", title="PCI audit", description="The new vault needs a fresh audit.", owner_id="chen.yu",
        status=goals_pb2.OBSTACLE_STATUS_OPEN, method_ids=["mth_1"], copied_from="obs_0",
        open_time=_time("2027-05-04T09:30:00.125Z"), stale=True,
    )
    return events_pb2.ObstacleEventData(
        v2mom_id="v2m_01jdxjzq4k7m9p1s3v5x7z9b1d", revision=13, owner_id="ana.lopez", org_unit_id="fin.payments",
        level=common_pb2.ORG_LEVEL_TEAM, cycle_id="FY2027", actor_id="chen.yu", obstacle=obstacle,
        previous_status=goals_pb2.OBSTACLE_STATUS_RESOLVED, changed_paths=["status"], reason="The auditors are back.",
        title="Payments team FY2027", accountable_ids=["ana.lopez"],
    )


def full_comment_data() -> events_pb2.CommentEventData:
    comment = goals_pb2.Comment(
        id="cmt_1", v2mom_id="v2m_01jdxjzq4k7m9p1s3v5x7z9b1d", item_id="mth_1", reply_to="cmt_0", author_id="dora.kim",
        text="@ana.lopez before the freeze?", mention_ids=["ana.lopez"], on_published=True, v2mom_revision=12,
        create_time=_time("2027-05-04T10:00:00.250Z"), update_time=_time("2027-05-04T10:05:00Z"), deleted=True,
        delete_time=_time("2027-05-04T10:05:00Z"),
        edits=[goals_pb2.CommentEdit(text="@ana.lopez before?", time=_time("2027-05-04T10:00:00.250Z"))], revision=3,
    )
    return events_pb2.CommentEventData(comment=comment, owner_id="ana.lopez", org_unit_id="fin.payments",
                                       cycle_id="FY2027", title="Payments team FY2027")


def full_parent_changed_data() -> events_pb2.ParentChangedEventData:
    return events_pb2.ParentChangedEventData(
        v2mom_id="v2m_01jdw0m2p4r6t8v0x2z4b6d8f0", revision=9, previous_revision=4, owner_id="marta.silva",
        org_unit_id="eng", level=common_pb2.ORG_LEVEL_DEPARTMENT, cycle_id="FY2027", actor_id="cto.office",
        changed_paths=["content.vision", "content.methods"], child_ids=["v2m_01jdxjzq4k7m9p1s3v5x7z9b1d"],
        change_time=_time("2027-06-01T09:00:00.125Z"), title="Engineering FY2027",
        child_owner_ids=["amira.haddad"],
    )


def full_person_data() -> events_pb2.PersonEventData:
    return events_pb2.PersonEventData(
        person=common_pb2.Person(
            id="ben.okafor",
            display_name="Ben Okafor",
            email="ben.okafor@example.com",
            title="Staff Engineer",
            manager_id="ana.lopez",
            org_unit_id="fin.payments",
            roles=["admin", "hr"],
            active=True,
            external_id="E2231",
            time_zone="Africa/Lagos",
            locale="en-NG",
            employment_status=common_pb2.EMPLOYMENT_STATUS_ON_LEAVE,
            start_date=date_pb2.Date(year=2019, month=9, day=2),
            end_date=date_pb2.Date(year=2027, month=1, day=31),
            pending_manager_external_id="E0001",
        ),
        previous_org_unit_id="fin.billing",
        previous_manager_id="dora.kim",
        revision=7,
    )


def full_org_unit_data() -> events_pb2.OrgUnitEventData:
    return events_pb2.OrgUnitEventData(
        org_unit=common_pb2.OrgUnit(
            id="fin.payments",
            name="Payments",
            level=common_pb2.ORG_LEVEL_TEAM,
            parent_id="fin",
            leader_id="ana.lopez",
            external_id="OU-PAY",
            retired=True,
            pending_parent_external_id="OU-FIN",
            pending_leader_external_id="E0042",
        ),
        previous_parent_id="eng",
        revision=3,
    )


def full_checkin_data(**checkin_overrides) -> events_pb2.CheckinEventData:
    """Every field set, a measure's and a method's alike: real check-ins set one or the other."""
    fields = dict(
        id="chk_01jnr5z9y7w5u3s1q9n7l5j3g1",
        v2mom_id="v2m_01jdxjzq4k7m9p1s3v5x7z9b1d",
        item_kind=checkins_pb2.ITEM_KIND_MEASURE,
        item_id="msr_1",
        author_id="ben.okafor",
        owner_id="ana.lopez",
        org_unit_id="fin.payments",
        cycle_id="FY2027",
        value=68.25,
        progress_percent=50.0,
        status=checkins_pb2.CHECKIN_STATUS_AT_RISK,
        confidence=6,
        comment="Checkout redesign ships next sprint.",
        completed_milestone_ids=["mls_1"],
        observe_time=_time("2027-03-15T16:20:05.118Z"),
        record_time=_time("2027-03-16T08:11:59.004123Z"),
        supersedes_id="chk_01jnp4x7c2v9m3k8q1w5e6r0ty",
        correction_reason="Counted the test shop's orders.",
        superseded_by_id="chk_01jnz0later0000000000000000",
    )
    fields.update(checkin_overrides)
    return events_pb2.CheckinEventData(
        checkin=checkins_pb2.Checkin(**fields),
        item_title="Checkout conversion",
        parent_v2mom_id="v2m_01jdw0m2p4r6t8v0x2z4b6d8f0",
        cadence=checkins_pb2.CADENCE_WEEKLY,
    )


# What each check-in type looks like; every other field stays fully populated.
CHECKIN_STEPS = {
    checkin_events.CHECKIN_RECORDED: dict(supersedes_id="", correction_reason="", superseded_by_id=""),
    # Announced when recorded: nothing has superseded a correction yet.
    checkin_events.CHECKIN_CORRECTED: dict(superseded_by_id=""),
}


def full_progress_data() -> events_pb2.ProgressEventData:
    return events_pb2.ProgressEventData(
        v2mom_id="v2m_01jdxjzq4k7m9p1s3v5x7z9b1d",
        owner_id="ana.lopez",
        org_unit_id="fin.payments",
        cycle_id="FY2027",
        parent_v2mom_id="v2m_01jdw0m2p4r6t8v0x2z4b6d8f0",
        progress_percent=50.0,
        tree_progress_percent=37.5,
        previous_progress_percent=12.5,
        previous_tree_progress_percent=100.0,
        revision=9,
        cause="correction",
        person_id="ben.okafor",
        item_kind=checkins_pb2.ITEM_KIND_MEASURE,
        item_id="msr_1",
        off_track_measures=1,
        measures=2,
        archived=True,
    )


def full_staleness_data(staleness=checkins_pb2.STALENESS_OVERDUE) -> events_pb2.ItemStalenessEventData:
    return events_pb2.ItemStalenessEventData(
        item=checkins_pb2.StaleItem(
            v2mom_id="v2m_01jdxjzq4k7m9p1s3v5x7z9b1d",
            kind=checkins_pb2.ITEM_KIND_METHOD,
            item_id="mth_1",
            title="One-click checkout",
            owner_id="ana.lopez",
            org_unit_id="fin.payments",
            cycle_id="FY2027",
            staleness=staleness,
            last_checkin_time=_time("2027-03-01T10:30:12.250Z"),
            stale_since_time=_time("2027-03-15T10:30:12.250Z"),
        ),
        cadence=checkins_pb2.CADENCE_MONTHLY,
        v2mom_owner_id="dora.kim",
    )


STALENESS_STEPS = {
    checkin_events.ITEM_BECAME_STALE: checkins_pb2.STALENESS_STALE,
    checkin_events.ITEM_OVERDUE: checkins_pb2.STALENESS_OVERDUE,
}


def full_delivery(**overrides) -> dict:
    """A delivery document as services/notify/deliveries.py stores it, every field the event reads set."""
    delivery = {
        "_id": "dlv_7f2c4a9e1b6d3805f4a2c8e0b9d1f376",
        "notification_id": "ntf_b2e8d4f0a6c1397e5d3b9f1a7c4e0d28",
        "recipient_id": "ana.lopez",
        "kind": "NOTIFICATION_KIND_ITEM_ESCALATION",
        "channel": "CHANNEL_WEBHOOK",
        "target": "sub_01jnr5z9y7w5u3s1q9n7l5j3g1",
        "status": "PENDING",
        "tries": 8,
        "cause_event_id": "evt_01jpk7q9s1u3w5y7a9c1e3g5j7",
        "v2mom_id": "v2m_01jdxjzq4k7m9p1s3v5x7z9b1d",
    }
    delivery.update(overrides)
    return delivery


def full_delivery_data() -> events_pb2.DeliveryEventData:
    return notify_events.delivery_data(full_delivery(), 9, "gave up after 9 tries: HTTP 503: Service Unavailable")


# What each notify type looks like: (tries, error) as services/notify/deliveries.py passes them.
DELIVERY_STEPS = {
    notify_events.NOTIFICATION_SENT: (9, ""),
    notify_events.NOTIFICATION_FAILED: (9, "gave up after 9 tries: HTTP 503: Service Unavailable"),
}


def unset_fields(message, path="") -> list[str]:
    """Every field, at any depth, left at its default: "fully populated" must stay true as protos grow."""
    unset = []
    for field in message.DESCRIPTOR.fields:
        name = f"{path}{field.name}"
        value = getattr(message, field.name)
        if field.is_repeated:
            if not value:
                unset.append(name)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                for index, item in enumerate(value):
                    unset += unset_fields(item, f"{name}[{index}].")
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if not message.HasField(field.name):
                unset.append(name)
            elif field.message_type.full_name not in ("google.protobuf.Timestamp", "google.type.Date"):
                unset += unset_fields(value, f"{name}.")
        elif field.has_presence:
            if not message.HasField(field.name):
                unset.append(name)
        elif value == field.default_value:
            unset.append(name)
    return unset


def on_the_wire(envelope: dict) -> dict:
    # The relay sends json.dumps(to_wire(envelope)); validate what consumers decode.
    return json.loads(json.dumps(platform_events.to_wire(envelope), separators=(",", ":")))


def built_events() -> list[dict]:
    built = [goals_events.v2mom_event(t, full_v2mom_data(**step)) for t, step in V2MOM_STEPS.items()]
    built.append(goals_events.person_event(full_person_data()))
    built.append(goals_events.org_unit_event(full_org_unit_data()))
    built.append(goals_events.cycle_event(goals_events.CYCLE_CHANGED, full_cycle_data(closed=False)))
    built.append(goals_events.cycle_event(goals_events.CYCLE_CLOSED, full_cycle_data()))
    built.append(goals_events.obstacle_event(full_obstacle_data()))
    built.append(goals_events.comment_event(full_comment_data()))
    built.append(goals_events.parent_changed_event(full_parent_changed_data()))
    built += [checkin_events.checkin_event(t, full_checkin_data(**step)) for t, step in CHECKIN_STEPS.items()]
    built.append(checkin_events.progress_event(full_progress_data()))
    built += [checkin_events.staleness_event(t, full_staleness_data(step)) for t, step in STALENESS_STEPS.items()]
    # notify: the very call services/notify/deliveries.py makes, on a delivery document.
    built += [notify_events.delivery_event(t, full_delivery(), tries, error) for t, (tries, error) in DELIVERY_STEPS.items()]
    return built


@pytest.mark.parametrize(
    "data",
    [full_v2mom_data(), full_person_data(), full_org_unit_data(), full_cycle_data(), full_obstacle_data(),
     full_comment_data(), full_parent_changed_data(), full_checkin_data(), full_progress_data(), full_staleness_data(), full_delivery_data()],
    ids=lambda data: type(data).__name__,
)
def test_payload_fixtures_populate_every_field(data):
    assert unset_fields(data) == [], "populate these so the catalogue check below covers them"


def test_steps_cover_every_type_of_their_payload():
    assert set(V2MOM_STEPS) == set(goals_events.V2MOM_EVENT_TYPES)
    assert set(CHECKIN_STEPS) == set(CHECKIN_TYPES) and set(STALENESS_STEPS) == set(STALENESS_TYPES)
    assert set(DELIVERY_STEPS) == set(notify_events.EVENT_TYPES)


def test_built_events_cover_every_type():
    assert sorted(envelope["type"] for envelope in built_events()) == sorted(ALL_TYPES)


@pytest.mark.parametrize("envelope", built_events(), ids=lambda envelope: envelope["type"])
def test_service_built_event_matches_catalogue(envelope):
    validate_event(on_the_wire(envelope))


def sparse_events() -> list[dict]:
    """The sparsest events the service can publish: every field that may hold its default does.

    Only what the service always sets is set (ids, levels, states, the
    creation time, the content and directory records); optional and message
    fields stay unset, everything else stays at its default.
    """
    sparse_items = goals_pb2.V2MOMContent(
        values=[goals_pb2.Value(id="val_1", name="Craft")],
        methods=[
            goals_pb2.Method(id="mth_1", title="Ship it", milestones=[goals_pb2.Milestone(id="mil_1", title="Beta")]),
        ],
        # The service stores OPEN for an obstacle sent without a status.
        obstacles=[goals_pb2.Obstacle(id="obs_1", title="Legacy", status=goals_pb2.OBSTACLE_STATUS_OPEN)],
        # No kind, direction, baseline, target, due date or weight.
        measures=[goals_pb2.Measure(id="msr_1", title="NPS")],
    )
    return [
        goals_events.v2mom_event(
            goals_events.V2MOM_CREATED,
            events_pb2.V2MOMEventData(
                v2mom_id="v2m_1",
                revision=1,
                owner_id="ana.lopez",
                org_unit_id="fin.payments",
                level=common_pb2.ORG_LEVEL_INDIVIDUAL,
                cycle_id="FY2027",
                state=goals_pb2.V2MOM_STATE_DRAFT,
                actor_id="ana.lopez",
                create_time=_time("2026-11-26T09:15:02Z"),
                content=goals_pb2.V2MOMContent(),
            ),
        ),
        goals_events.v2mom_event(
            goals_events.V2MOM_UPDATED,
            events_pb2.V2MOMEventData(
                v2mom_id="v2m_1",
                revision=2,
                owner_id="ana.lopez",
                org_unit_id="fin.payments",
                level=common_pb2.ORG_LEVEL_INDIVIDUAL,
                cycle_id="FY2027",
                state=goals_pb2.V2MOM_STATE_DRAFT,
                previous_state=goals_pb2.V2MOM_STATE_DRAFT,
                actor_id="ana.lopez",
                changed_paths=["content.methods"],
                create_time=_time("2026-11-26T09:15:02Z"),
                content=sparse_items,
            ),
        ),
        goals_events.obstacle_event(events_pb2.ObstacleEventData(
            v2mom_id="v2m_1", revision=3, owner_id="ana.lopez", org_unit_id="fin.payments",
            level=common_pb2.ORG_LEVEL_INDIVIDUAL, cycle_id="FY2027", actor_id="ana.lopez",
            obstacle=goals_pb2.Obstacle(id="obs_1", title="Legacy", status=goals_pb2.OBSTACLE_STATUS_RESOLVED),
            previous_status=goals_pb2.OBSTACLE_STATUS_OPEN, changed_paths=["status"],
        )),
        goals_events.comment_event(events_pb2.CommentEventData(
            comment=goals_pb2.Comment(id="cmt_1", v2mom_id="v2m_1", author_id="ana.lopez", text="Hm.", v2mom_revision=1,
                                      create_time=_time("2027-05-04T10:00:00Z"),
                                      update_time=_time("2027-05-04T10:00:00Z"), revision=1),
            owner_id="ana.lopez", org_unit_id="fin.payments", cycle_id="FY2027",
        )),
        goals_events.person_event(
            events_pb2.PersonEventData(
                person=common_pb2.Person(id="leaver", display_name="Left Us", org_unit_id="acme", active=False),
                revision=1,
            )
        ),
        goals_events.org_unit_event(
            events_pb2.OrgUnitEventData(
                org_unit=common_pb2.OrgUnit(id="acme", name="Acme", level=common_pb2.ORG_LEVEL_COMPANY),
                revision=1,
            )
        ),
        *sparse_checkins_events(),
        *sparse_notify_events(),
    ]


def sparse_checkins_events() -> list[dict]:
    """The check-ins service's sparsest: a method check-in at 0 % with no comment, a first progress, a never-checked item."""

    def checkin(**fields) -> checkins_pb2.Checkin:
        message = checkins_pb2.Checkin(
            id="chk_1", v2mom_id="v2m_1", item_kind=checkins_pb2.ITEM_KIND_METHOD, item_id="mth_1", author_id="ana.lopez",
            owner_id="ana.lopez", org_unit_id="fin.payments", cycle_id="FY2027", status=checkins_pb2.CHECKIN_STATUS_ON_TRACK,
            observe_time=_time("2027-03-15T16:20:05Z"), record_time=_time("2027-03-15T16:20:05Z"), **fields,
        )
        return message

    def data(message: checkins_pb2.Checkin) -> events_pb2.CheckinEventData:
        return events_pb2.CheckinEventData(checkin=message, item_title="Ship it", cadence=checkins_pb2.CADENCE_BIWEEKLY)

    return [
        checkin_events.checkin_event(checkin_events.CHECKIN_RECORDED, data(checkin())),
        checkin_events.checkin_event(
            checkin_events.CHECKIN_CORRECTED, data(checkin(supersedes_id="chk_0", correction_reason="Wrong method"))
        ),
        checkin_events.progress_event(events_pb2.ProgressEventData(
            v2mom_id="v2m_1", owner_id="ana.lopez", org_unit_id="fin.payments", cycle_id="FY2027", revision=1,
            cause="structure",
        )),
        *[
            checkin_events.staleness_event(event_type, events_pb2.ItemStalenessEventData(
                item=checkins_pb2.StaleItem(
                    v2mom_id="v2m_1", kind=checkins_pb2.ITEM_KIND_MEASURE, item_id="msr_1", title="NPS",
                    owner_id="ana.lopez", org_unit_id="fin.payments", cycle_id="FY2027", staleness=staleness,
                    stale_since_time=_time("2027-03-15T00:00:00Z"),
                ),
                cadence=checkins_pb2.CADENCE_BIWEEKLY, v2mom_owner_id="ana.lopez",
            ))
            for event_type, staleness in STALENESS_STEPS.items()
        ],
    ]


def sparse_notify_events() -> list[dict]:
    """The notify service's sparsest: an inbox delivery of a notification about no V2MOM, and a first-try refusal.

    Only what a delivery document always has is set (services/notify/deliveries.py,
    add_delivery); an older document without cause or V2MOM prints them empty.
    """
    delivery = {
        "_id": "dlv_1", "notification_id": "ntf_1", "recipient_id": "ana.lopez",
        "kind": "NOTIFICATION_KIND_DIGEST", "channel": "CHANNEL_INBOX",
    }
    email = dict(delivery, _id="dlv_2", channel="CHANNEL_EMAIL")
    return [
        notify_events.delivery_event(notify_events.NOTIFICATION_SENT, delivery, 1),
        notify_events.delivery_event(notify_events.NOTIFICATION_FAILED, email, 1, "relay refused: 550 no such user"),
    ]


@pytest.mark.parametrize("envelope", sparse_events(), ids=lambda envelope: envelope["type"])
def test_sparsest_event_matches_catalogue(envelope):
    # Defaults are printed: "", 0, false, [] and *_UNSPECIFIED must all validate where the service sends them.
    validate_event(on_the_wire(envelope))


def keys_versus_required(data: dict, descriptor, path: str = "data") -> list[str]:
    """Where a payload's keys differ from its schemas' `required`, at every depth."""
    schema = SCHEMAS[descriptor.name]
    found = []
    required = set(schema.get("required", ()))
    if set(data) != required:
        found.append(
            f"{path} ({descriptor.name}): sent but not required {sorted(set(data) - required)}, "
            f"required but not sent {sorted(required - set(data))}"
        )
    for field in descriptor.fields:
        if field.type != FieldDescriptor.TYPE_MESSAGE or field.message_type.full_name in WELL_KNOWN:
            continue
        value = data.get(field.json_name)
        items = value if field.is_repeated else ([] if value is None else [value])
        for index, item in enumerate(items):
            where = f"{path}.{field.json_name}" + (f"[{index}]" if field.is_repeated else "")
            found += keys_versus_required(item, field.message_type, where)
    return found


@pytest.mark.parametrize("envelope", sparse_events(), ids=lambda envelope: envelope["type"])
def test_sparsest_event_carries_exactly_the_required_fields(envelope):
    # What the publisher prints for a message with nothing optional set is
    # what every consumer can count on: it must be what the schemas require,
    # no more (a field wrongly required) and no less (a default left out).
    data = on_the_wire(envelope)["data"]
    problems = keys_versus_required(data, PAYLOAD_MESSAGES[envelope["type"]].DESCRIPTOR)
    assert not problems, "\n".join(problems)


# --- the validator really rejects drift ---------------------------------------------


def _v2mom_event(event_type=goals_events.V2MOM_SUBMITTED):
    return on_the_wire(goals_events.v2mom_event(event_type, full_v2mom_data(**V2MOM_STEPS[event_type])))


def _set(path: str, value):
    def mutate(event):
        *parents, last = path.split("/")
        node = resolve_pointer(event, "/" + "/".join(parents)) if parents else event
        node[last] = value

    return mutate


def _delete(path: str):
    def mutate(event):
        *parents, last = path.split("/")
        node = resolve_pointer(event, "/" + "/".join(parents)) if parents else event
        del node[last]

    return mutate


DRIFT = [
    pytest.param(_set("data/undocumentedField", "x"), "undocumentedField", id="undocumented-data-field"),
    pytest.param(_set("data/content/methods/0/priority", 1), "priority", id="undocumented-nested-field"),
    pytest.param(_set("traceparent", "00-abc"), "traceparent", id="undocumented-envelope-attribute"),
    pytest.param(_set("data/revision", 12), "revision", id="int64-as-number"),
    pytest.param(_set("data/state", "SUBMITTED"), "state", id="enum-short-name"),
    pytest.param(_set("data/state", "V2MOM_STATE_PUBLISHED"), "state", id="state-wrong-for-type"),
    pytest.param(_set("data/level", 3), "level", id="enum-as-number"),
    pytest.param(_set("data/createTime", "2026-11-26 09:15:02"), "createTime", id="timestamp-not-rfc3339"),
    pytest.param(_set("data/content/methods/0/dueDate", "2027-09-30"), "dueDate", id="date-as-string"),
    pytest.param(_set("data/content/measures/0/weight", "100"), "weight", id="double-as-string"),
    pytest.param(_set("data/content/methods/0/weight", 150), "weight", id="weight-out-of-range"),
    pytest.param(_set("data/v2mom_id", "v2m_x"), "v2mom_id", id="snake-case-field-name"),
    pytest.param(_delete("data/submitTime"), "submitTime", id="submitted-without-submit-time"),
    pytest.param(_delete("data/revision"), "revision", id="missing-revision"),
    # Defaults are printed: a field without presence may never go missing, at any depth.
    pytest.param(_delete("data/approverId"), "approverId", id="default-field-left-out"),
    pytest.param(_delete("data/changedPaths"), "changedPaths", id="default-list-left-out"),
    pytest.param(_delete("data/previousState"), "previousState", id="default-enum-left-out"),
    pytest.param(_delete("data/content/methods/0/milestones/0/done"), "done", id="nested-default-left-out"),
    pytest.param(_delete("data/content/measures/0/kind"), "kind", id="nested-default-enum-left-out"),
    pytest.param(_delete("data/content"), "content", id="content-left-out"),
    pytest.param(_set("data/parentId", None), "parentId", id="default-as-null"),
    pytest.param(_set("data/ownerId", ""), "ownerId", id="required-id-empty"),
    pytest.param(_set("data/content/methods/0/title", ""), "title", id="required-title-empty"),
    # *_UNSPECIFIED only where the service can send it.
    pytest.param(_set("data/previousState", "V2MOM_STATE_UNSPECIFIED"), "previousState", id="unspecified-previous-state"),
    pytest.param(_set("data/previousState", "V2MOM_STATE_ARCHIVED"), "previousState", id="previous-state-wrong-for-type"),
    pytest.param(_set("data/state", "V2MOM_STATE_UNSPECIFIED"), "state", id="unspecified-state"),
    pytest.param(_set("data/level", "ORG_LEVEL_UNSPECIFIED"), "level", id="unspecified-level"),
    pytest.param(
        _set("data/content/obstacles/0/status", "OBSTACLE_STATUS_UNSPECIFIED"), "status", id="unspecified-obstacle-status"
    ),
    pytest.param(_set("specversion", "0.3"), "specversion", id="wrong-specversion"),
    pytest.param(_set("source", "/v2mom/checkins"), "source", id="wrong-source"),
    pytest.param(_set("subject", "v2m_other"), "subject", id="subject-not-the-aggregate"),
    pytest.param(_set("type", "v2mom_deleted"), "v2mom_deleted", id="unknown-type"),
]


@pytest.mark.parametrize(("mutate", "named"), DRIFT)
def test_validate_event_rejects_drift(mutate, named):
    event = _v2mom_event()
    validate_event(copy.deepcopy(event))  # the unmutated event passes
    mutate(event)
    with pytest.raises(CatalogueMismatch) as raised:
        validate_event(event)
    assert named in str(raised.value), f"the error should point at {named!r}: {raised.value}"


@pytest.mark.parametrize(
    "mutate", [_delete("data/reason"), _set("data/reason", ""), _set("data/reason", " \n\t")], ids=["missing", "empty", "blank"]
)
def test_changes_requested_needs_a_reason(mutate):
    event = _v2mom_event(goals_events.V2MOM_CHANGES_REQUESTED)
    mutate(event)
    with pytest.raises(CatalogueMismatch, match="reason"):
        validate_event(event)


@pytest.mark.parametrize("previous", ["V2MOM_STATE_DRAFT", "V2MOM_STATE_PUBLISHED"])
def test_created_has_no_previous_state(previous):
    event = _v2mom_event(goals_events.V2MOM_CREATED)
    assert event["data"]["previousState"] == "V2MOM_STATE_UNSPECIFIED"
    event["data"]["previousState"] = previous
    with pytest.raises(CatalogueMismatch, match="previousState"):
        validate_event(event)


def test_updated_names_what_changed():
    event = _v2mom_event(goals_events.V2MOM_UPDATED)
    event["data"]["changedPaths"] = []
    with pytest.raises(CatalogueMismatch, match="changedPaths"):
        validate_event(event)


def _directory_event(event_type):
    data = full_person_data() if event_type == goals_events.PERSON_UPSERTED else full_org_unit_data()
    return on_the_wire(publish(event_type, data))


DIRECTORY_DRIFT = [
    pytest.param(goals_events.PERSON_UPSERTED, _delete("data/revision"), "revision", id="person-missing-revision"),
    pytest.param(goals_events.PERSON_UPSERTED, _set("data/revision", 7), "revision", id="person-revision-as-number"),
    pytest.param(goals_events.PERSON_UPSERTED, _set("data/revision", "0"), "revision", id="person-revision-zero"),
    pytest.param(goals_events.PERSON_UPSERTED, _delete("data/person/active"), "active", id="leaver-active-left-out"),
    pytest.param(goals_events.PERSON_UPSERTED, _delete("data/person/roles"), "roles", id="person-roles-left-out"),
    pytest.param(goals_events.PERSON_UPSERTED, _delete("data/previousManagerId"), "previousManagerId", id="person-previous-left-out"),
    pytest.param(goals_events.PERSON_UPSERTED, _set("data/person/managerId", None), "managerId", id="person-manager-null"),
    pytest.param(goals_events.PERSON_UPSERTED, _set("data/person/orgUnitId", ""), "orgUnitId", id="person-without-unit"),
    pytest.param(goals_events.ORG_UNIT_UPSERTED, _delete("data/revision"), "revision", id="unit-missing-revision"),
    pytest.param(goals_events.ORG_UNIT_UPSERTED, _set("data/revision", 3), "revision", id="unit-revision-as-number"),
    pytest.param(goals_events.ORG_UNIT_UPSERTED, _delete("data/orgUnit/leaderId"), "leaderId", id="unit-leader-left-out"),
    pytest.param(goals_events.ORG_UNIT_UPSERTED, _delete("data/previousParentId"), "previousParentId", id="unit-previous-left-out"),
    pytest.param(
        goals_events.ORG_UNIT_UPSERTED, _set("data/orgUnit/level", "ORG_LEVEL_UNSPECIFIED"), "level", id="unit-level-unspecified"
    ),
    pytest.param(goals_events.ORG_UNIT_UPSERTED, _set("subject", "other"), "subject", id="unit-subject-not-the-unit"),
]


@pytest.mark.parametrize(("event_type", "mutate", "named"), DIRECTORY_DRIFT)
def test_validate_event_rejects_directory_drift(event_type, mutate, named):
    event = _directory_event(event_type)
    validate_event(copy.deepcopy(event))  # the unmutated event passes
    mutate(event)
    with pytest.raises(CatalogueMismatch) as raised:
        validate_event(event)
    assert named in str(raised.value), f"the error should point at {named!r}: {raised.value}"


def test_validate_event_rejects_non_objects():
    with pytest.raises(CatalogueMismatch):
        validate_event(b'{"type": "v2mom_created"}')  # type: ignore[arg-type]


def _checkins_event(event_type):
    if event_type in CHECKIN_STEPS:
        return on_the_wire(publish(event_type, full_checkin_data(**CHECKIN_STEPS[event_type])))
    if event_type in STALENESS_STEPS:
        return on_the_wire(publish(event_type, full_staleness_data(STALENESS_STEPS[event_type])))
    return on_the_wire(publish(event_type, full_progress_data()))


RECORDED, CORRECTED = checkin_events.CHECKIN_RECORDED, checkin_events.CHECKIN_CORRECTED
PROGRESS, STALE, OVERDUE = checkin_events.PROGRESS_CHANGED, checkin_events.ITEM_BECAME_STALE, checkin_events.ITEM_OVERDUE

CHECKINS_DRIFT = [
    pytest.param(RECORDED, _set("data/checkin/supersedesId", "chk_0"), "supersedesId", id="recorded-supersedes"),
    pytest.param(RECORDED, _set("data/checkin/correctionReason", "why"), "correctionReason", id="recorded-with-reason"),
    pytest.param(CORRECTED, _set("data/checkin/supersedesId", ""), "supersedesId", id="corrected-supersedes-nothing"),
    pytest.param(CORRECTED, _set("data/checkin/correctionReason", " \t"), "correctionReason", id="corrected-blank-reason"),
    pytest.param(CORRECTED, _set("data/checkin/supersededById", "chk_2"), "supersededById", id="announced-superseded"),
    pytest.param(RECORDED, _set("data/checkin/confidence", 11), "confidence", id="confidence-above-10"),
    pytest.param(RECORDED, _set("data/checkin/progressPercent", 100.5), "progressPercent", id="progress-above-100"),
    pytest.param(RECORDED, _set("data/checkin/value", "68.25"), "value", id="value-as-string"),
    pytest.param(RECORDED, _set("data/checkin/status", "CHECKIN_STATUS_UNSPECIFIED"), "status", id="unspecified-status"),
    pytest.param(RECORDED, _set("data/cadence", "CADENCE_UNSPECIFIED"), "cadence", id="unspecified-cadence"),
    pytest.param(RECORDED, _set("data/checkin/itemKind", "MEASURE"), "itemKind", id="item-kind-short-name"),
    pytest.param(RECORDED, _delete("data/checkin/observeTime"), "observeTime", id="observe-time-left-out"),
    pytest.param(RECORDED, _delete("data/checkin/completedMilestoneIds"), "completedMilestoneIds", id="empty-list-left-out"),
    pytest.param(RECORDED, _delete("data/parentV2momId"), "parentV2momId", id="top-level-parent-left-out"),
    pytest.param(RECORDED, _set("data/checkin/authorId", "someone else"), "authorId", id="author-not-a-directory-id"),
    pytest.param(RECORDED, _set("subject", "chk_other"), "subject", id="subject-not-the-checkin"),
    pytest.param(RECORDED, _set("source", "/v2mom/goals"), "source", id="checkin-from-goals"),
    pytest.param(PROGRESS, _set("data/revision", 9), "revision", id="progress-revision-as-number"),
    pytest.param(PROGRESS, _set("data/cause", "magic"), "cause", id="unknown-cause"),
    pytest.param(PROGRESS, _set("data/treeProgressPercent", -1), "treeProgressPercent", id="tree-progress-negative"),
    pytest.param(PROGRESS, _delete("data/offTrackMeasures"), "offTrackMeasures", id="zero-count-left-out"),
    pytest.param(PROGRESS, _delete("data/archived"), "archived", id="false-left-out"),
    pytest.param(PROGRESS, _set("data/measures", 2.5), "measures", id="count-not-an-integer"),
    pytest.param(STALE, _set("data/item/staleness", "STALENESS_OVERDUE"), "staleness", id="stale-says-overdue"),
    pytest.param(OVERDUE, _set("data/item/staleness", "STALENESS_STALE"), "staleness", id="overdue-says-stale"),
    pytest.param(OVERDUE, _delete("data/item/staleSinceTime"), "staleSinceTime", id="stale-since-left-out"),
    pytest.param(OVERDUE, _set("data/item/kind", "ITEM_KIND_UNSPECIFIED"), "kind", id="unspecified-item-kind"),
    pytest.param(OVERDUE, _set("subject", "v2m_01jdxjzq4k7m9p1s3v5x7z9b1d"), "subject", id="subject-without-item"),
    pytest.param(STALE, _delete("data/item/itemId"), "itemId", id="item-without-id"),
]


@pytest.mark.parametrize(("event_type", "mutate", "named"), CHECKINS_DRIFT)
def test_validate_event_rejects_checkins_drift(event_type, mutate, named):
    event = _checkins_event(event_type)
    validate_event(copy.deepcopy(event), exchange="checkins.events")  # the unmutated event passes
    mutate(event)
    with pytest.raises(CatalogueMismatch) as raised:
        validate_event(event)
    assert named in str(raised.value), f"the error should point at {named!r}: {raised.value}"


def _notify_event(event_type):
    tries, error = DELIVERY_STEPS[event_type]
    return on_the_wire(notify_events.delivery_event(event_type, full_delivery(), tries, error))


SENT, FAILED = notify_events.NOTIFICATION_SENT, notify_events.NOTIFICATION_FAILED

NOTIFY_DRIFT = [
    pytest.param(SENT, _set("data/error", "HTTP 503"), "error", id="sent-with-an-error"),
    pytest.param(FAILED, _set("data/error", ""), "error", id="failed-without-an-error"),
    pytest.param(FAILED, _set("data/error", "x" * 501), "error", id="error-too-long"),
    pytest.param(SENT, _delete("data/error"), "error", id="empty-error-left-out"),
    pytest.param(SENT, _set("data/tries", 0), "tries", id="no-tries"),
    pytest.param(SENT, _set("data/tries", "1"), "tries", id="tries-as-string"),
    pytest.param(SENT, _set("data/kind", "NOTIFICATION_KIND_UNSPECIFIED"), "kind", id="unspecified-kind"),
    pytest.param(SENT, _set("data/channel", "CHANNEL_UNSPECIFIED"), "channel", id="unspecified-channel"),
    pytest.param(SENT, _set("data/channel", "EMAIL"), "channel", id="channel-short-name"),
    pytest.param(SENT, _set("data/recipientId", ""), "recipientId", id="no-recipient"),
    pytest.param(FAILED, _delete("data/v2momId"), "v2momId", id="empty-v2mom-left-out"),
    pytest.param(FAILED, _set("data/deliveryId", ""), "deliveryId", id="delivery-without-id"),
    pytest.param(FAILED, _set("subject", "ntf_b2e8d4f0a6c1397e5d3b9f1a7c4e0d28"), "subject", id="subject-not-the-delivery"),
    pytest.param(FAILED, _set("source", "/v2mom/checkins"), "source", id="delivery-from-checkins"),
]


@pytest.mark.parametrize(("event_type", "mutate", "named"), NOTIFY_DRIFT)
def test_validate_event_rejects_notify_drift(event_type, mutate, named):
    event = _notify_event(event_type)
    validate_event(copy.deepcopy(event), exchange="notify.events")  # the unmutated event passes
    mutate(event)
    with pytest.raises(CatalogueMismatch) as raised:
        validate_event(event)
    assert named in str(raised.value), f"the error should point at {named!r}: {raised.value}"


def test_a_long_error_is_cut_to_what_the_catalogue_admits():
    event = notify_events.delivery_event(FAILED, full_delivery(), 1, "relay refused: 552 " + "too big " * 200)
    wire = on_the_wire(event)
    assert len(wire["data"]["error"]) == notify_events.ERROR_MAX
    validate_event(wire, exchange="notify.events")


def test_delivery_data_reads_every_field_of_the_delivery_document():
    # The fixture populates every field (test_payload_fixtures_populate_every_field); these are the document's own values.
    data = full_delivery_data()
    delivery = full_delivery()
    assert (data.delivery_id, data.notification_id, data.recipient_id, data.cause_event_id, data.v2mom_id) == (
        delivery["_id"], delivery["notification_id"], delivery["recipient_id"], delivery["cause_event_id"],
        delivery["v2mom_id"],
    )
    assert notify_pb2.NotificationKind.Name(data.kind) == delivery["kind"]
    assert notify_pb2.Channel.Name(data.channel) == delivery["channel"]
    assert notify_events.delivery_event(SENT, delivery, 1)["subject"] == delivery["_id"]


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_validate_event_knows_which_exchange_each_type_comes_from(event_type):
    event = _checkins_event(event_type) if SERVICE_OF[event_type] == checkin_events.SERVICE else None
    event = event or on_the_wire(next(e for e in built_events() if e["type"] == event_type))
    own = platform_events.exchange_name(SERVICE_OF[event_type])
    validate_event(event, exchange=own)
    for service in SERVICES.keys() - {SERVICE_OF[event_type]}:
        with pytest.raises(CatalogueMismatch, match=f"arrived on '{service}.events'"):
            validate_event(event, exchange=platform_events.exchange_name(service))


# --- data schemas mirror the protos, field by field ---------------------------------------

WELL_KNOWN = {"google.protobuf.Timestamp": "Timestamp", "google.type.Date": "Date"}
INT64_TYPES = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}
INT32_TYPES = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_SFIXED32,
}


def _field_schema(schema: dict) -> tuple[str | None, dict]:
    """A property's schema with $ref and single-$ref allOf wrappers followed: (component name, schema)."""
    name = None
    while True:
        if "$ref" in schema:
            ref, schema = _follow(schema)
            name = ref.rsplit("/", 1)[-1]
        elif [set(part) for part in schema.get("allOf", [])] == [{"$ref"}]:
            schema = schema["allOf"][0]
        else:
            return name, schema


def _enum_names(enum_descriptor) -> set[str]:
    """The names the service sends for an enum that is never unspecified."""
    return {value.name for value in enum_descriptor.values if value.number != 0}


def _unspecified_name(enum_descriptor) -> str:
    return enum_descriptor.values_by_number[0].name


# Defaults are printed, so an enum field holding 0 arrives as its *_UNSPECIFIED
# name. These are the fields where the service can send that (see
# services/goals/convert.py): the previous state of a new V2MOM, and a
# measure's kind and direction when the owner gave none. Every other enum
# field always holds a real value, and its schema must not admit the 0 name.
UNSPECIFIED_SENT = {
    "v2mom.v1.V2MOMEventData.previous_state",
    "v2mom.v1.Measure.kind",
    "v2mom.v1.Measure.direction",
    # progress_changed caused by an approval, an archive or a child names no item (progress_store.Cause).
    "v2mom.v1.ProgressEventData.item_kind",
    # People written before HRIS sync (the seed) have no employment status.
    "v2mom.v1.Person.employment_status",
}

# Message fields have presence, so they are printed only when set. These the
# service always sets (convert.event_data, Directory.upsert_*), so the schemas
# require them; every other message field may be absent.
ALWAYS_SET = {
    "v2mom.v1.V2MOMEventData.create_time",
    "v2mom.v1.V2MOMEventData.content",
    "v2mom.v1.PersonEventData.person",
    "v2mom.v1.OrgUnitEventData.org_unit",
    "v2mom.v1.CycleEventData.cycle",
    # goals: obstacle_updates._event, discussion._event (comments are stamped when written, edits too).
    "v2mom.v1.ObstacleEventData.obstacle",
    "v2mom.v1.CommentEventData.comment",
    "v2mom.v1.Comment.create_time",
    "v2mom.v1.Comment.update_time",
    "v2mom.v1.CommentEdit.time",
    "v2mom.v1.Cycle.start_date",
    "v2mom.v1.Cycle.end_date",
    "v2mom.v1.Quarter.start_date",
    "v2mom.v1.Quarter.end_date",
    # The check-ins service: convert.checkin_event_data, staleness.staleness_event (a clock only
    # announces a step to STALE or OVERDUE, and both set stale_since).
    "v2mom.v1.CheckinEventData.checkin",
    "v2mom.v1.Checkin.observe_time",
    "v2mom.v1.Checkin.record_time",
    "v2mom.v1.ItemStalenessEventData.item",
    "v2mom.v1.StaleItem.stale_since_time",
}


def _always_printed(field) -> bool:
    """Whether the publisher (always_print_fields_with_no_presence) prints this field in every event."""
    if field.is_repeated:
        return True  # repeated fields have no presence: [] is printed
    return not field.has_presence or field.full_name in ALWAYS_SET


def mismatches(descriptor, schema_name: str, seen: set[str]) -> list[str]:
    """How the schema component differs from the proto message, recursively."""
    if schema_name in seen:
        return []
    seen.add(schema_name)
    schema = SCHEMAS.get(schema_name)
    if schema is None:
        return [f"no components.schemas.{schema_name} for {descriptor.full_name}"]
    found = []
    where = f"{schema_name} ({descriptor.full_name})"
    if schema.get("additionalProperties") is not False:
        found.append(f"{where}: must set additionalProperties: false")
    fields = {field.json_name: field for field in descriptor.fields}
    properties = schema.get("properties", {})
    required = set(schema.get("required", ()))
    always = {json_name for json_name, field in fields.items() if _always_printed(field)}
    for json_name in sorted(always - required):
        found.append(f"{where}: {json_name!r} is printed in every event (defaults included), so it must be required")
    for json_name in sorted(required - always):
        found.append(f"{where}: requires {json_name!r}, which is absent whenever it is unset")
    for json_name in sorted(set(fields) - set(properties)):
        found.append(f"{where}: proto field {json_name!r} is not documented")
    for json_name in sorted(set(properties) - set(fields)):
        found.append(f"{where}: documents {json_name!r}, which the proto does not have")
    for json_name in sorted(set(fields) & set(properties)):
        field = fields[json_name]
        component, prop = _field_schema(properties[json_name])
        label = f"{where}.{json_name}"
        if field.is_repeated:
            if prop.get("type") != "array":
                found.append(f"{label}: repeated field must be an array")
                continue
            component, prop = _field_schema(prop["items"])
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            full_name = field.message_type.full_name
            expected = WELL_KNOWN.get(full_name, field.message_type.name)
            if component != expected:
                found.append(f"{label}: should refer to {expected}, refers to {component}")
            elif full_name not in WELL_KNOWN:
                found += mismatches(field.message_type, component, seen)
        elif field.type == FieldDescriptor.TYPE_ENUM:
            names = set(prop.get("enum", ()))
            unspecified = _unspecified_name(field.enum_type)
            allowed = _enum_names(field.enum_type) | ({unspecified} if field.full_name in UNSPECIFIED_SENT else set())
            if prop.get("type") != "string" or not names:
                found.append(f"{label}: enum must be a string enum of value names")
            elif not names <= allowed:
                found.append(f"{label}: {sorted(names - allowed)} are not {field.enum_type.name} names it can hold")
            elif field.full_name in UNSPECIFIED_SENT and unspecified not in names:
                found.append(f"{label}: the service sends {unspecified} (defaults are printed); the schema must admit it")
        elif field.type in INT64_TYPES:
            if prop.get("type") != "string" or "pattern" not in prop:
                found.append(f"{label}: 64-bit integers are decimal strings in proto3 JSON")
        elif field.type in INT32_TYPES:
            if prop.get("type") != "integer":
                found.append(f"{label}: 32-bit integers are JSON integers")
        elif field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            if prop.get("type") != "number":
                found.append(f"{label}: floating point fields are JSON numbers")
        elif field.type == FieldDescriptor.TYPE_BOOL:
            if prop.get("type") != "boolean":
                found.append(f"{label}: bool fields are JSON booleans")
        elif field.type == FieldDescriptor.TYPE_STRING:
            if prop.get("type") != "string":
                found.append(f"{label}: string fields are JSON strings")
        else:
            found.append(f"{label}: proto type {field.type} has no check here yet")
    return found


@pytest.mark.parametrize("proto", sorted(set(PAYLOAD_MESSAGES.values()), key=lambda p: p.__name__), ids=lambda p: p.__name__)
def test_data_schema_mirrors_proto(proto):
    problems = mismatches(proto.DESCRIPTOR, proto.DESCRIPTOR.name, set())
    assert not problems, "docs/events.asyncapi.yaml differs from the protos:\n" + "\n".join(problems)


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_message_data_builds_on_its_proto_schema(event_type):
    payload = message_for_type(event_type)["payload"]
    data_ref = next(part["properties"]["data"]["$ref"] for part in payload["allOf"] if "properties" in part)
    data_schema = resolve_pointer(CATALOGUE, data_ref)
    bases = [data_ref] + [part["$ref"] for part in data_schema.get("allOf", []) if "$ref" in part]
    expected = f"#/components/schemas/{PAYLOAD_MESSAGES[event_type].DESCRIPTOR.name}"
    assert expected in bases, f"{event_type} data should be (or extend) {expected}, is {bases}"


@pytest.mark.parametrize(
    ("schema_name", "enum", "with_unspecified"),
    [
        ("OrgLevel", common_pb2.OrgLevel, False),
        ("V2MOMState", goals_pb2.V2MOMState, False),
        ("V2MOMStateOrUnspecified", goals_pb2.V2MOMState, True),
        ("ObstacleStatus", goals_pb2.ObstacleStatus, False),
        ("MeasureKind", goals_pb2.MeasureKind, True),
        ("Direction", goals_pb2.Direction, True),
        ("ItemKind", checkins_pb2.ItemKind, False),
        ("ItemKindOrUnspecified", checkins_pb2.ItemKind, True),
        ("CheckinStatus", checkins_pb2.CheckinStatus, False),
        ("Cadence", checkins_pb2.Cadence, False),
        ("Staleness", checkins_pb2.Staleness, False),
        ("NotificationKind", notify_pb2.NotificationKind, False),
        ("Channel", notify_pb2.Channel, False),
    ],
)
def test_enum_schemas_list_every_proto_value(schema_name, enum, with_unspecified):
    # A value added to the proto must be added here, or consumers reject it.
    expected = _enum_names(enum.DESCRIPTOR) | ({_unspecified_name(enum.DESCRIPTOR)} if with_unspecified else set())
    assert set(SCHEMAS[schema_name]["enum"]) == expected


def test_unspecified_table_names_real_enum_fields():
    # Guards UNSPECIFIED_SENT and ALWAYS_SET themselves against typos and renamed fields.
    pool = descriptor_pool.Default()
    for full_name in UNSPECIFIED_SENT:
        assert pool.FindFieldByName(full_name).type == FieldDescriptor.TYPE_ENUM, full_name
    for full_name in ALWAYS_SET:
        assert pool.FindFieldByName(full_name).type == FieldDescriptor.TYPE_MESSAGE, full_name


def test_schema_errors_are_readable():
    # Consumers' test failures are only as useful as this message.
    person = on_the_wire(goals_events.person_event(full_person_data()))["data"]["person"]
    del person["displayName"]
    reasons = schema_errors(person, "#/components/schemas/Person")
    assert reasons == ["at $: 'displayName' is a required property"]
