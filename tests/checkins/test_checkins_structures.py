"""The stored copy of each V2MOM's published structure: events keep it current, and newer always wins.

store_from_event / mark_archived are what checkins-worker calls on goals'
v2mom_approved / v2mom_archived events; here the tests call them with the
very payloads goals-api put in its outbox.
"""

import random
import threading
from datetime import UTC

import pytest

from services.checkins import structures
from services.platform.core.clock import to_millis
from services.platform.bus.events import MalformedEvent, to_wire
from tests.support.checkins import FY2027_DATES, world_content
from tests.support.checkins_requests import Code, correct_request, expect_nothing_written, measure_request
from v2mom.v1 import goals_pb2


def approved_events(goals_db, v2mom_id: str) -> list[dict]:
    """The data of every v2mom_approved event goals-api stored for this V2MOM, oldest first."""
    doc = goals_db.v2moms.find_one({"_id": v2mom_id})
    return [to_wire(event)["data"] for event in doc["outbox"] if event["type"] == "v2mom_approved"]


def republish(goals_world, v2mom_id: str, content: goals_pb2.V2MOMContent) -> None:
    """ann edits her measures, lee approves: a new published revision."""
    ann = goals_world.client("ann")
    ann.UpdateV2MOM(goals_pb2.UpdateV2MOMRequest(
        v2mom=goals_pb2.V2MOM(id=v2mom_id, content=content), update_mask={"paths": ["content.measures"]},
        change_reason="new quarter, new measures",
    ))
    ann.SubmitV2MOM(goals_pb2.SubmitV2MOMRequest(id=v2mom_id))
    goals_world.client("lee").ApproveV2MOM(goals_pb2.ApproveV2MOMRequest(id=v2mom_id))


def without_ttv() -> goals_pb2.V2MOMContent:
    content = world_content()
    del content.measures[1]
    content.measures[0].weight = 100
    return content


def test_a_measure_removed_in_a_newer_revision_is_refused_once_its_event_is_seen(goals_world, db, checkins_api, store):
    ann_v2mom = goals_world.ann_v2mom_id
    earlier = checkins_api("ann").RecordMeasureCheckin(measure_request(ann_v2mom, "msr-ttv"))
    first_revision = store.structure(ann_v2mom)["published_revision"]
    republish(goals_world, ann_v2mom, without_ttv())

    assert structures.store_from_event(store.db, approved_events(db, ann_v2mom)[-1]) is True
    stored = store.structure(ann_v2mom)
    assert stored["published_revision"] > first_revision
    assert [m["id"] for m in stored["measures"]] == ["msr-nps"]
    assert stored["cycle_start"] == "2026-02-01"  # kept from the fetch: events carry no cycle dates

    error = expect_nothing_written(store, checkins_api("ann").RecordMeasureCheckin, measure_request(ann_v2mom, "msr-ttv"),
                                   Code.NOT_FOUND)
    assert "msr-ttv" in error.details()
    error = expect_nothing_written(store, checkins_api("ann").CorrectCheckin, correct_request(earlier.id, value=12),
                                   Code.FAILED_PRECONDITION)
    assert "no longer" in error.details()
    assert checkins_api("rob").RecordMeasureCheckin(measure_request(ann_v2mom, "msr-nps")).item_id == "msr-nps"


def test_an_older_revision_never_replaces_a_newer_one(goals_world, db, checkins_api, store):
    ann_v2mom = goals_world.ann_v2mom_id
    republish(goals_world, ann_v2mom, without_ttv())
    old, new = approved_events(db, ann_v2mom)
    assert structures.store_from_event(store.db, new) is True

    # A replayed or late event, and a slow fetch that read the old version: neither wins.
    assert structures.store_from_event(store.db, old) is False
    stale_fetch = structures.structure_from_content(
        ann_v2mom, int(old["revision"]), "ann", "onboarding", "FY2027", "", world_content()
    )
    assert structures.store(store.db, stale_fetch) is False
    assert store.structure(ann_v2mom)["published_revision"] == int(new["revision"])
    assert [m["id"] for m in store.structure(ann_v2mom)["measures"]] == ["msr-nps"]

    # The same event again is harmless.
    assert structures.store_from_event(store.db, new) is True
    expect_nothing_written(store, checkins_api("ann").RecordMeasureCheckin, measure_request(ann_v2mom, "msr-ttv"),
                           Code.NOT_FOUND)


def test_racing_writers_of_many_revisions_leave_the_newest(goals_world, store):
    revisions = list(range(1, 21))
    random.shuffle(revisions)
    barrier = threading.Barrier(len(revisions))

    def write(revision):
        barrier.wait()
        content = world_content(f"revision {revision}")
        structures.store(store.db, structures.structure_from_content("v2m_race", revision, "ann", "onboarding", "FY2027", "", content))

    threads = [threading.Thread(target=write, args=(revision,)) for revision in revisions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = store.structure("v2m_race")
    assert stored["published_revision"] == 20 and stored["title"] == "revision 20"
    assert store.db.structures.count_documents({}) == 1


def test_a_new_item_is_found_in_goals_before_its_event_arrives(goals_world, checkins_api, store):
    ann_v2mom = goals_world.ann_v2mom_id
    checkins_api("ann").RecordMeasureCheckin(measure_request(ann_v2mom, "msr-ttv"))
    content = world_content()
    content.measures.add(id="msr-new", title="Support tickets per week", kind=goals_pb2.MEASURE_KIND_LEADING, unit="tickets",
                         baseline=100, target=50, direction=goals_pb2.DIRECTION_DECREASE, owner_id="ann", weight=0,
                         due_date=content.measures[0].due_date)
    content.measures[0].weight, content.measures[1].weight, content.measures[2].weight = 50, 25, 25
    republish(goals_world, ann_v2mom, content)

    checkin = checkins_api("ann").RecordMeasureCheckin(measure_request(ann_v2mom, "msr-new", value=75))
    assert checkin.progress_percent == 50.0
    assert "msr-new" in [m["id"] for m in store.structure(ann_v2mom)["measures"]]


def test_archiving_stops_checkins_without_asking_goals(goals_world, checkins_api, store):
    ann_v2mom = goals_world.ann_v2mom_id
    earlier = checkins_api("ann").RecordMeasureCheckin(measure_request(ann_v2mom, "msr-ttv"))
    revision = store.structure(ann_v2mom)["published_revision"]

    assert structures.mark_archived(store.db, ann_v2mom, revision + 1) is True
    assert structures.mark_archived(store.db, ann_v2mom, revision + 1) is False  # a duplicate event changes nothing

    for call, request in ((checkins_api("ann").RecordMeasureCheckin, measure_request(ann_v2mom, "msr-ttv")),
                          (checkins_api("ann").CorrectCheckin, correct_request(earlier.id, value=1))):
        error = expect_nothing_written(store, call, request, Code.FAILED_PRECONDITION)
        assert "archived" in error.details()


def test_an_archived_event_before_any_approval_leaves_a_stub_no_approval_can_revive(goals_world, db, checkins_api, store):
    """Events can arrive out of order: archived first, the older approval after it."""
    ann_v2mom = goals_world.ann_v2mom_id
    assert structures.mark_archived(store.db, ann_v2mom, 99) is True
    expect_nothing_written(store, checkins_api("ann").RecordMeasureCheckin, measure_request(ann_v2mom, "msr-ttv"),
                           Code.FAILED_PRECONDITION)
    assert structures.store_from_event(store.db, approved_events(db, ann_v2mom)[-1]) is True

    stored = store.structure(ann_v2mom)
    assert stored["archived"] is True and stored["archived_revision"] == 99 and stored["measures"]
    expect_nothing_written(store, checkins_api("ann").RecordMeasureCheckin, measure_request(ann_v2mom, "msr-ttv"),
                           Code.FAILED_PRECONDITION)


def test_a_structure_learned_from_an_event_gets_its_cycle_dates_from_goals(goals_world, db, checkins_api, store):
    ann_v2mom = goals_world.ann_v2mom_id
    structures.store_from_event(store.db, approved_events(db, ann_v2mom)[-1])
    assert "cycle_start" not in store.structure(ann_v2mom)

    checkins_api("ann").RecordMeasureCheckin(measure_request(ann_v2mom, "msr-ttv"))
    stored = store.structure(ann_v2mom)
    assert (stored["cycle_start"], stored["cycle_end"]) == FY2027_DATES


def test_the_copy_keeps_when_goals_published_it_from_events_and_from_goals(goals_world, db, checkins_api, store):
    published = goals_world.client("cat").GetV2MOM(
        goals_pb2.GetV2MOMRequest(id=goals_world.ann_v2mom_id, view=goals_pb2.V2MOM_VIEW_PUBLISHED)
    ).publish_time.ToDatetime(tzinfo=UTC)
    team = goals_world.client("cat").GetV2MOM(
        goals_pb2.GetV2MOMRequest(id=goals_world.team_v2mom_id, view=goals_pb2.V2MOM_VIEW_PUBLISHED)
    ).publish_time.ToDatetime(tzinfo=UTC)

    structures.store_from_event(store.db, approved_events(db, goals_world.ann_v2mom_id)[-1])
    checkins_api("lee").RecordMeasureCheckin(measure_request(goals_world.team_v2mom_id, "msr-ttv"))  # fetched from goals

    assert store.structure(goals_world.ann_v2mom_id)["publish_time"] == to_millis(published)
    assert store.structure(goals_world.team_v2mom_id)["publish_time"] == to_millis(team)


@pytest.mark.parametrize("mangle", [
    lambda data: "not a dict",
    lambda data: {**data, "v2momId": ""},
    lambda data: {**data, "revision": "0"},
    lambda data: {**data, "state": "V2MOM_STATE_DRAFT"},
    lambda data: {**data, "state": "V2MOM_STATE_NONSENSE"},
    lambda data: {**data, "content": ["not", "an", "object"]},
    lambda data: {**data, "revision": "many"},
])
def test_malformed_approved_payloads_are_refused_and_store_nothing(goals_world, db, store, mangle):
    data = mangle(approved_events(db, goals_world.ann_v2mom_id)[-1])
    with pytest.raises(MalformedEvent):
        structures.store_from_event(store.db, data)
    assert store.db.structures.count_documents({}) == 0
