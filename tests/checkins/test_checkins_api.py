"""checkins-api against a real goals-api: recording, who may record, cycles, corrections, lists, settings.

The world (tests/checkins/conftest.py): team 'onboarding' (lead lee) with ann
and rob; cat leads billing; ada is an admin. Published: lee's team V2MOM and
ann's V2MOM aligned to it; rob's is a draft. Each V2MOM has measures msr-nps
(owner rob; 20 -> 60, increasing) and msr-ttv (owner ann; 30 -> 10,
decreasing), and methods mth-guide (owner and A ann, R rob, C cat; milestone
mil-draft) and mth-calls (owner rob, A ann). Cycle FY2027 runs from 2026-02-01
to half a year from today (FY2027_LAST_DAY); FY2025 has ended.
"""

import functools
import threading
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

import grpc
import pymongo
import pytest
from google.protobuf import field_mask_pb2
from google.type import date_pb2

from services.checkins import api as checkins_api_module
from services.checkins.goals_client import GoalsClient
from services.checkins.handlers import Projection
from services.checkins.clock_store import ITEM_CLOCKS, advance_due
from services.platform.core.clock import utc_now
from services.goals.directory import Directory
from tests.support.checkin_events import approved, v2mom_data
from tests.support.checkins import FY2027_LAST_DAY, publish_v2mom, world_content
from tests.support.checkins_requests import (
    ADMIN, AT_RISK, Code, correct_request, days_ago, expect_nothing_written, measure_request, method_request,
    OFF_TRACK, ON_TRACK, stamp, Store,
)
from tests.support.grpc_errors import expect, precondition_violations
from tests.support.services import served_in_process
from v2mom.v1 import checkins_pb2, checkins_pb2_grpc, common_pb2, goals_pb2

AFTER_FY2027 = datetime.combine(FY2027_LAST_DAY + timedelta(days=10), time(9), tzinfo=UTC)


@dataclass
class World:
    goals: object
    api: object
    store: Store
    team: str
    ann: str
    draft: str

    def as_(self, person, roles=()):
        return self.api(person, roles)


@pytest.fixture
def world(goals_world, checkins_api, checkins_db) -> World:
    return World(goals_world, checkins_api, Store(checkins_db), goals_world.team_v2mom_id, goals_world.ann_v2mom_id,
                 goals_world.draft_v2mom_id)


@pytest.fixture
def cycle_over(monkeypatch):
    """Moves the check-ins service's clock past the end of FY2027."""
    def move():
        monkeypatch.setattr("services.checkins.service.utc_now", lambda: AFTER_FY2027)
    return move


# --- recording on measures: progress derived from baseline, target and direction --------------------------


@pytest.mark.parametrize("measure_id, value, progress", [
    ("msr-nps", 40, 50.0),      # increasing 20 -> 60: halfway
    ("msr-nps", 20, 0.0),       # at the baseline
    ("msr-nps", 60, 100.0),     # at the target
    ("msr-nps", 75, 100.0),     # beyond the target: clamped
    ("msr-nps", 5, 0.0),        # below the baseline: clamped
    ("msr-nps", 21.5, 3.75),    # fractions kept
    ("msr-ttv", 20, 50.0),      # decreasing 30 -> 10: halfway
    ("msr-ttv", 10, 100.0),
    ("msr-ttv", 2, 100.0),      # better than the target: clamped
    ("msr-ttv", 45, 0.0),       # worse than the baseline: clamped
])
def test_a_measure_checkin_derives_progress_and_keeps_the_raw_value(world, measure_id, value, progress):
    checkin = world.as_("ann").RecordMeasureCheckin(measure_request(world.ann, measure_id, value=value, confidence=6))

    assert checkin.progress_percent == pytest.approx(progress)
    assert checkin.value == value and checkin.HasField("value")
    assert checkin.confidence == 6
    assert checkin.item_kind == checkins_pb2.ITEM_KIND_MEASURE and checkin.item_id == measure_id
    stored = world.store.checkin(checkin.id)
    assert stored["value"] == value and stored["progress_percent"] == pytest.approx(progress)


def test_a_checkin_carries_its_context_and_its_event_in_the_same_document(world):
    checkin = world.as_("rob").RecordMeasureCheckin(
        measure_request(world.ann, "msr-nps", value=30, status=AT_RISK, confidence=4, comment="Slow quarter")
    )

    assert (checkin.author_id, checkin.owner_id, checkin.org_unit_id, checkin.cycle_id) == ("rob", "ann", "onboarding", "FY2027")
    assert checkin.status == AT_RISK and checkin.comment == "Slow quarter"
    assert checkin.observe_time == checkin.record_time  # observed now by default
    assert not checkin.supersedes_id and not checkin.superseded_by_id
    event = world.store.event_of(checkin.id)
    assert event["type"] == "checkin_recorded" and event["subject"] == checkin.id
    assert event["data"]["checkin"]["id"] == checkin.id
    assert event["data"]["checkin"]["progressPercent"] == 25.0
    assert event["data"]["itemTitle"] == "Onboarding NPS"
    assert event["data"]["parentV2momId"] == world.team
    assert event["data"]["cadence"] == "CADENCE_BIWEEKLY"
    assert world.store.checkin(checkin.id)["outbox_pending"] is True


def test_a_checkin_rolls_up_to_the_published_parent_while_a_draft_realigns(world):
    """Issue 12, finding 5: goals' published view carried the draft's parent, so the structure check-ins
    fetched (and the roll-up that follows its parent) moved before anyone approved the move."""
    world.goals.client("ann").UpdateV2MOM(goals_pb2.UpdateV2MOMRequest(
        v2mom=goals_pb2.V2MOM(id=world.ann, parent_id=""), update_mask={"paths": ["parent_id"]},
        change_reason="standing alone next cycle"))
    checkin = world.as_("rob").RecordMeasureCheckin(measure_request(world.ann, "msr-nps", value=30))
    assert world.store.structure(world.ann)["parent_id"] == world.team
    assert world.store.event_of(checkin.id)["data"]["parentV2momId"] == world.team


def test_target_equal_to_baseline_is_met_or_not(world):
    content = world_content("Cat FY27")
    for measure in content.measures:
        measure.baseline = measure.target = 5
    content.measures[0].owner_id = content.measures[1].owner_id = "cat"  # msr-nps increasing, msr-ttv decreasing
    v2mom = publish_v2mom(world.goals.goals_api, "cat", "ceo", content)
    cat = world.as_("cat")

    def progress(measure_id, value):
        return cat.RecordMeasureCheckin(measure_request(v2mom, measure_id, value=value)).progress_percent

    assert (progress("msr-nps", 5), progress("msr-nps", 6), progress("msr-nps", 4)) == (100.0, 100.0, 0.0)
    assert (progress("msr-ttv", 5), progress("msr-ttv", 4), progress("msr-ttv", 6)) == (100.0, 100.0, 0.0)


# --- recording on methods -----------------------------------------------------------------------------------


def test_a_method_checkin_records_progress_as_reported_and_its_milestones(world):
    checkin = world.as_("rob").RecordMethodCheckin(
        method_request(world.ann, "mth-guide", progress=35.5, status=OFF_TRACK, completed_milestone_ids=["mil-draft"])
    )

    assert checkin.item_kind == checkins_pb2.ITEM_KIND_METHOD
    assert checkin.progress_percent == 35.5 and checkin.status == OFF_TRACK
    assert list(checkin.completed_milestone_ids) == ["mil-draft"]
    assert not checkin.HasField("value") and not checkin.HasField("confidence")
    assert world.store.event_of(checkin.id)["data"]["itemTitle"] == "Ship the setup guide by June"


def test_a_milestone_of_another_method_is_refused(world):
    expect_nothing_written(
        world.store, world.as_("ann").RecordMethodCheckin,
        method_request(world.ann, "mth-calls", completed_milestone_ids=["mil-draft"]),
        Code.INVALID_ARGUMENT, "completed_milestone_ids[0]",
    )


# --- who may check in ------------------------------------------------------------------------------------

# On lee's team V2MOM, where every role is held by someone different.
PERMISSIONS = [
    ("lee", (), "msr-nps", True),      # the V2MOM's owner
    ("rob", (), "msr-nps", True),      # the measure's owner
    ("ann", (), "msr-nps", False),     # a teammate who owns another measure
    ("cat", (), "msr-nps", False),     # a peer in another team
    ("ceo", (), "msr-nps", False),     # the owner's manager
    ("ada", ADMIN, "msr-nps", True),   # an admin
    ("ann", (), "msr-ttv", True),
    ("rob", (), "msr-ttv", False),
    ("ann", (), "mth-guide", True),    # the method's owner (and Accountable)
    ("rob", (), "mth-guide", True),    # Responsible
    ("cat", (), "mth-guide", False),   # Consulted
    ("ceo", (), "mth-guide", False),
    ("ann", (), "mth-calls", True),    # Accountable only
    ("rob", (), "mth-calls", True),    # the method's owner
    ("lee", (), "mth-calls", True),    # the V2MOM's owner
    ("ada", ADMIN, "mth-calls", True),
    ("cat", (), "mth-calls", False),
]


def _record(world, person, roles, item_id, v2mom_id=None):
    v2mom_id = v2mom_id or world.team
    client = world.as_(person, roles)
    if item_id.startswith("msr"):
        return client.RecordMeasureCheckin, measure_request(v2mom_id, item_id)
    return client.RecordMethodCheckin, method_request(v2mom_id, item_id)


@pytest.mark.parametrize("person, roles, item_id, allowed", PERMISSIONS)
def test_who_may_check_in(world, person, roles, item_id, allowed):
    call, request = _record(world, person, roles, item_id)
    if allowed:
        checkin = call(request)
        assert checkin.author_id == person and world.store.count() == 1
    else:
        error = expect_nothing_written(world.store, call, request, Code.PERMISSION_DENIED)
        assert item_id in error.details()


@pytest.mark.parametrize("item_id", ["msr-nps", "mth-guide"])
def test_anonymous_callers_are_unauthenticated(world, item_id):
    call, request = _record(world, None, (), item_id)
    expect_nothing_written(world.store, call, request, Code.UNAUTHENTICATED)


# --- which V2MOMs take check-ins -------------------------------------------------------------------------


@pytest.mark.parametrize("person, roles, code", [
    ("rob", (), Code.FAILED_PRECONDITION),     # the owner knows it exists: it is not published
    ("ada", ADMIN, Code.FAILED_PRECONDITION),  # so does an admin
    ("lee", (), Code.FAILED_PRECONDITION),     # and rob's manager
    ("cat", (), Code.NOT_FOUND),               # anyone else must not learn that it exists
])
def test_a_draft_takes_no_checkins(world, person, roles, code):
    error = expect_nothing_written(world.store, world.as_(person, roles).RecordMeasureCheckin,
                                   measure_request(world.draft), code)
    if code == Code.FAILED_PRECONDITION:
        assert ("STATE", world.draft, "state is DRAFT") in precondition_violations(error)
    assert world.store.structure(world.draft) is None  # nothing cached about it either


def test_a_submitted_v2mom_takes_no_checkins(world):
    world.goals.client("rob").SubmitV2MOM(goals_pb2.SubmitV2MOMRequest(id=world.draft))
    error = expect_nothing_written(world.store, world.as_("rob").RecordMethodCheckin,
                                   method_request(world.draft, "mth-calls"), Code.FAILED_PRECONDITION)
    assert "SUBMITTED" in error.details()


def test_an_archived_v2mom_takes_no_checkins(world):
    world.goals.client("ann").ArchiveV2MOM(goals_pb2.ArchiveV2MOMRequest(id=world.ann))
    error = expect_nothing_written(world.store, world.as_("ann").RecordMeasureCheckin,
                                   measure_request(world.ann, "msr-ttv"), Code.FAILED_PRECONDITION)
    assert "archived" in error.details()


@pytest.mark.parametrize("rpc, request_for", [
    ("RecordMeasureCheckin", lambda v2mom: measure_request(v2mom, "msr-ttv", idempotency_key="before-the-end")),
    ("RecordMethodCheckin", lambda v2mom: method_request(v2mom, "mth-guide", idempotency_key="before-the-end")),
])
def test_a_retry_after_the_cycle_ended_gets_its_first_answer(world, cycle_over, rpc, request_for):
    """The first call's answer was lost; by the retry the cycle takes no check-ins. It was recorded: say so."""
    request = request_for(world.ann)
    first = getattr(world.as_("ann"), rpc)(request)
    cycle_over()

    assert getattr(world.as_("ann"), rpc)(request) == first
    assert world.store.count() == 1
    # A new key is a new call, and refused.
    request.idempotency_key = "after-the-end"
    error = expect_nothing_written(world.store, getattr(world.as_("ann"), rpc), request, Code.FAILED_PRECONDITION)
    assert "ended" in error.details()


def test_a_published_v2mom_with_a_draft_open_takes_checkins_on_its_published_version(world):
    """Editing a published V2MOM opens a draft; the published version keeps taking check-ins."""
    edited = world_content()
    del edited.measures[0]
    edited.measures[0].weight = 100
    world.goals.client("ann").UpdateV2MOM(goals_pb2.UpdateV2MOMRequest(
        v2mom=goals_pb2.V2MOM(id=world.ann, content=edited), update_mask={"paths": ["content.measures"]},
        change_reason="drop NPS",
    ))
    checkin = world.as_("rob").RecordMeasureCheckin(measure_request(world.ann, "msr-nps"))
    assert checkin.item_id == "msr-nps"


@pytest.mark.parametrize("v2mom_id, item_id, mentions", [
    ("v2m_doesnotexist", "msr-nps", "v2m_doesnotexist"),
    (None, "msr-unknown", "msr-unknown"),
    (None, "mth-guide", "mth-guide"),      # a method's id sent as a measure
])
def test_unknown_v2moms_and_items_are_not_found(world, v2mom_id, item_id, mentions):
    error = expect_nothing_written(world.store, world.as_("ann").RecordMeasureCheckin,
                                   measure_request(v2mom_id or world.ann, item_id), Code.NOT_FOUND)
    assert mentions in error.details()


def test_an_unknown_method_is_not_found(world):
    expect_nothing_written(world.store, world.as_("ann").RecordMethodCheckin,
                           method_request(world.ann, "msr-nps"), Code.NOT_FOUND)


# --- observation times and the cycle -----------------------------------------------------------------------


def test_an_observation_in_the_past_of_the_cycle_is_kept(world):
    observed = days_ago(3)
    checkin = world.as_("ann").RecordMeasureCheckin(measure_request(world.ann, "msr-ttv", observe_time=stamp(observed)))
    assert checkin.observe_time.ToDatetime(tzinfo=UTC) == observed
    assert checkin.record_time.ToDatetime(tzinfo=UTC) > observed


def test_an_observation_a_few_seconds_ahead_is_clock_skew_and_taken_as_now(world):
    ahead = datetime.now(UTC) + timedelta(seconds=30)
    checkin = world.as_("ann").RecordMeasureCheckin(measure_request(world.ann, "msr-ttv", observe_time=stamp(ahead)))
    assert checkin.observe_time == checkin.record_time


@pytest.mark.parametrize("observed, why", [
    (lambda: datetime.now(UTC) + timedelta(minutes=5), "is in the future"),
    (lambda: datetime(2026, 1, 31, 23, 59, tzinfo=UTC), "is before cycle FY2027 starts"),
])
def test_observations_outside_now_and_the_cycle_are_refused(world, observed, why):
    error = expect_nothing_written(world.store, world.as_("ann").RecordMeasureCheckin,
                                   measure_request(world.ann, "msr-ttv", observe_time=stamp(observed())),
                                   Code.INVALID_ARGUMENT, "observe_time")
    assert why in error.details()


def test_the_first_day_of_the_cycle_is_in_it(world):
    first = datetime(2026, 2, 1, tzinfo=UTC)
    checkin = world.as_("ann").RecordMeasureCheckin(measure_request(world.ann, "msr-ttv", observe_time=stamp(first)))
    assert checkin.observe_time.ToDatetime(tzinfo=UTC) == first


def test_an_ended_cycle_takes_no_new_checkins(world):
    old = publish_v2mom(world.goals.goals_api, "ann", "lee", world_content("Ann FY25"), cycle_id="FY2025")
    error = expect_nothing_written(world.store, world.as_("ann").RecordMeasureCheckin,
                                   measure_request(old, "msr-ttv"), Code.FAILED_PRECONDITION)
    assert ("CYCLE_ENDED", "FY2025", "ended 2025-01-31") in precondition_violations(error)


def test_a_cycle_that_has_not_started_takes_no_checkins(world, db):
    opens = FY2027_LAST_DAY + timedelta(days=1)
    Directory(db, cache_seconds=0).upsert_cycle("FY2028", opens.isoformat(), (opens + timedelta(days=364)).isoformat())
    future = publish_v2mom(world.goals.goals_api, "ann", "lee", world_content("Ann FY28"), cycle_id="FY2028")
    error = expect_nothing_written(world.store, world.as_("ann").RecordMeasureCheckin,
                                   measure_request(future, "msr-ttv"), Code.FAILED_PRECONDITION)
    assert precondition_violations(error)[0] == ("CYCLE_NOT_STARTED", "FY2028", f"starts {opens}")


def test_after_the_cycle_no_new_checkin_even_on_a_cached_structure(world, cycle_over):
    world.as_("ann").RecordMeasureCheckin(measure_request(world.ann, "msr-ttv"))
    cycle_over()
    error = expect_nothing_written(world.store, world.as_("ann").RecordMeasureCheckin,
                                   measure_request(world.ann, "msr-ttv"), Code.FAILED_PRECONDITION)
    assert precondition_violations(error)[0][0] == "CYCLE_ENDED"


# --- corrections ---------------------------------------------------------------------------------------------


def test_a_correction_supersedes_and_the_history_keeps_both(world):
    original = world.as_("rob").RecordMeasureCheckin(measure_request(world.ann, "msr-nps", value=40, comment="Q2"))
    correction = world.as_("rob").CorrectCheckin(correct_request(original.id, value=44, reason="misread the survey"))

    assert correction.supersedes_id == original.id and correction.correction_reason == "misread the survey"
    assert correction.value == 44 and correction.progress_percent == 60.0
    assert correction.id != original.id and correction.record_time.ToDatetime() >= original.record_time.ToDatetime()
    assert world.store.checkin(original.id)["superseded_by_id"] == correction.id
    event = world.store.event_of(correction.id)
    assert event["type"] == "checkin_corrected" and event["data"]["checkin"]["supersedesId"] == original.id

    visible = world.as_("cat").ListCheckins(checkins_pb2.ListCheckinsRequest(v2mom_id=world.ann))
    assert [c.id for c in visible.checkins] == [correction.id]
    history = world.as_("cat").ListCheckins(checkins_pb2.ListCheckinsRequest(v2mom_id=world.ann, include_superseded=True))
    assert [c.id for c in history.checkins] == [correction.id, original.id]
    assert history.checkins[1].superseded_by_id == correction.id and history.checkins[1].value == 40


def test_a_correction_keeps_what_it_does_not_change(world):
    observed = days_ago(2)
    original = world.as_("ann").RecordMeasureCheckin(measure_request(
        world.ann, "msr-ttv", value=20, status=AT_RISK, confidence=3, comment="Blocked on data", observe_time=stamp(observed),
    ))
    correction = world.as_("ann").CorrectCheckin(correct_request(original.id, value=15))

    assert correction.observe_time == original.observe_time
    assert (correction.status, correction.confidence, correction.comment) == (AT_RISK, 3, "Blocked on data")
    assert correction.progress_percent == 75.0


def test_a_correction_may_move_the_observation_and_correct_a_method(world):
    original = world.as_("rob").RecordMethodCheckin(method_request(world.ann, "mth-guide", progress=20))
    moved = days_ago(5)
    correction = world.as_("ann").CorrectCheckin(correct_request(
        original.id, progress_percent=25, completed_milestone_ids=["mil-draft"], status=ON_TRACK, observe_time=stamp(moved),
    ))
    assert correction.observe_time.ToDatetime(tzinfo=UTC) == moved
    assert correction.progress_percent == 25 and list(correction.completed_milestone_ids) == ["mil-draft"]


def test_a_correction_of_a_correction_is_allowed_but_not_of_a_superseded_checkin(world):
    rob = world.as_("rob")
    first = rob.RecordMeasureCheckin(measure_request(world.ann, "msr-nps", value=40))
    second = rob.CorrectCheckin(correct_request(first.id, value=41))
    third = rob.CorrectCheckin(correct_request(second.id, value=42))
    assert third.supersedes_id == second.id

    error = expect_nothing_written(world.store, rob.CorrectCheckin, correct_request(first.id, value=43),
                                   Code.FAILED_PRECONDITION)
    assert ("SUPERSEDED", first.id, f"superseded by {second.id}") in precondition_violations(error)


def test_two_racing_corrections_of_one_checkin_leave_exactly_one(world):
    original = world.as_("rob").RecordMeasureCheckin(measure_request(world.ann, "msr-nps", value=40))
    results, barrier = [], threading.Barrier(4)

    def correct(value):
        barrier.wait()
        try:
            results.append(world.as_("rob").CorrectCheckin(correct_request(original.id, value=value)).id)
        except grpc.RpcError as error:
            results.append(error.code())

    threads = [threading.Thread(target=correct, args=(50 + i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [r for r in results if isinstance(r, str)]
    assert len(winners) == 1 and results.count(Code.FAILED_PRECONDITION) == 3
    assert world.store.count(supersedes_id=original.id) == 1
    assert world.store.checkin(original.id)["superseded_by_id"] == winners[0]


def test_a_correction_whose_link_was_never_written_is_linked_by_the_next_attempt(world):
    """The process died between inserting a correction and linking the original to it."""
    rob = world.as_("rob")
    original = rob.RecordMeasureCheckin(measure_request(world.ann, "msr-nps", value=40))
    correction = rob.CorrectCheckin(correct_request(original.id, value=41))
    world.store.db.checkins.update_one({"_id": original.id}, {"$unset": {"superseded_by_id": ""}})

    error = expect(rob.CorrectCheckin, correct_request(original.id, value=42), Code.FAILED_PRECONDITION)
    assert correction.id in error.details()
    assert world.store.count() == 2
    assert world.store.checkin(original.id)["superseded_by_id"] == correction.id


@pytest.mark.parametrize("item_id, fields, field", [
    ("msr-nps", {"progress_percent": 50}, "progress_percent"),
    ("msr-nps", {"completed_milestone_ids": ["mil-draft"]}, "completed_milestone_ids"),
    ("mth-guide", {"value": 3}, "value"),
    ("mth-guide", {"confidence": 3}, "confidence"),
    ("mth-guide", {"completed_milestone_ids": ["mil-nope"]}, "completed_milestone_ids[0]"),
])
def test_a_correction_sends_the_fields_of_its_kind(world, item_id, fields, field):
    call, request = _record(world, "ann", (), item_id, v2mom_id=world.ann)
    original = call(request)
    expect_nothing_written(world.store, world.as_("ann").CorrectCheckin, correct_request(original.id, **fields),
                           Code.INVALID_ARGUMENT, field)


def test_corrections_of_unknown_checkins_are_not_found(world):
    expect_nothing_written(world.store, world.as_("ann").CorrectCheckin, correct_request("chk_nope", value=1),
                           Code.NOT_FOUND)


def test_a_correction_cannot_move_the_observation_before_the_cycle(world):
    original = world.as_("ann").RecordMeasureCheckin(measure_request(world.ann, "msr-ttv"))
    expect_nothing_written(world.store, world.as_("ann").CorrectCheckin,
                           correct_request(original.id, observe_time=stamp(datetime(2026, 1, 1, tzinfo=UTC))),
                           Code.INVALID_ARGUMENT, "observe_time")


# Who may correct on the team V2MOM: during the cycle as who may record; after it, owners and admins only.
CORRECTORS = [
    ("rob", (), "mth-guide", True, False),    # Responsible: during the cycle only
    ("ann", (), "mth-calls", True, False),    # Accountable: during the cycle only
    ("ann", (), "mth-guide", True, True),     # the method's owner
    ("rob", (), "msr-nps", True, True),       # the measure's owner
    ("lee", (), "mth-guide", True, True),     # the V2MOM's owner
    ("ada", ADMIN, "mth-calls", True, True),  # an admin
    ("cat", (), "mth-guide", False, False),   # Consulted: never
    ("ceo", (), "msr-nps", False, False),     # the owner's manager: never
]


@pytest.mark.parametrize("person, roles, item_id, during, after", CORRECTORS)
def test_who_may_correct_during_and_after_the_cycle(world, cycle_over, person, roles, item_id, during, after):
    call, request = _record(world, "lee", (), item_id)
    latest = call(request).id
    corrector = world.as_(person, roles)
    fields = {"value": 45} if item_id.startswith("msr") else {"progress_percent": 45}

    if during:
        latest = corrector.CorrectCheckin(correct_request(latest, **fields)).id
    else:
        expect_nothing_written(world.store, corrector.CorrectCheckin, correct_request(latest, **fields),
                               Code.PERMISSION_DENIED)

    cycle_over()
    if after:
        correction = corrector.CorrectCheckin(correct_request(latest, reason="closing the books", **fields))
        assert correction.supersedes_id == latest
        assert correction.record_time.ToDatetime(tzinfo=UTC) == AFTER_FY2027
    else:
        error = expect_nothing_written(world.store, corrector.CorrectCheckin, correct_request(latest, **fields),
                                       Code.PERMISSION_DENIED)
        if during:
            assert "has ended" in error.details()


# --- ListCheckins ----------------------------------------------------------------------------------------------


@pytest.fixture
def history(world):
    """Six check-ins at known observation times, oldest first (name: (author, v2mom, item, days ago))."""
    plan = {
        "a": ("rob", world.ann, "msr-nps", 10), "b": ("ann", world.ann, "msr-ttv", 8),
        "c": ("rob", world.ann, "mth-guide", 6), "d": ("ann", world.ann, "msr-nps", 4),
        "e": ("rob", world.ann, "msr-nps", 2), "f": ("rob", world.team, "msr-nps", 1),
    }
    made = {}
    for name, (author, v2mom, item, age) in plan.items():
        call, request = _record(world, author, (), item, v2mom_id=v2mom)
        request.observe_time.CopyFrom(stamp(days_ago(age)))
        made[name] = call(request).id
    return made


def _ids(response, history):
    names = {checkin_id: name for name, checkin_id in history.items()}
    return "".join(names[c.id] for c in response.checkins)


@pytest.mark.parametrize("filters, expected", [
    ({"v2mom_id": "ann"}, "edcba"),
    ({"v2mom_id": "ann", "item_id": "msr-nps"}, "eda"),
    ({"author_id": "rob"}, "feca"),
    ({"author_id": "rob", "v2mom_id": "ann"}, "eca"),
    ({"v2mom_id": "team"}, "f"),
    ({"v2mom_id": "ann", "start": 9, "end": 3}, "dcb"),
    ({"v2mom_id": "ann", "start": 4}, "ed"),
    ({"author_id": "ann", "end": 5}, "b"),
    ({"v2mom_id": "v2m_nobody_checked_in"}, ""),
    ({"author_id": "nobody"}, ""),
])
def test_list_checkins_filters_newest_observation_first(world, history, filters, expected):
    request = checkins_pb2.ListCheckinsRequest(author_id=filters.get("author_id", ""), item_id=filters.get("item_id", ""))
    request.v2mom_id = {"ann": world.ann, "team": world.team}.get(filters.get("v2mom_id"), filters.get("v2mom_id", ""))
    if "start" in filters:
        request.start_time.CopyFrom(stamp(days_ago(filters["start"]) - timedelta(hours=1)))
    if "end" in filters:
        request.end_time.CopyFrom(stamp(days_ago(filters["end"]) - timedelta(hours=1)))
    assert _ids(world.as_("cat").ListCheckins(request), history) == expected


def test_list_checkins_pages_with_opaque_tokens(world, history):
    cat = world.as_("cat")
    seen, token, pages = "", "", 0
    while True:
        page = cat.ListCheckins(checkins_pb2.ListCheckinsRequest(author_id="rob", page_size=1, page_token=token))
        seen += _ids(page, history)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == "feca" and pages == 4

    first = cat.ListCheckins(checkins_pb2.ListCheckinsRequest(author_id="rob", page_size=2))
    assert _ids(first, history) == "fe" and first.next_page_token
    for other in (checkins_pb2.ListCheckinsRequest(author_id="ann", page_token=first.next_page_token),
                  checkins_pb2.ListCheckinsRequest(author_id="rob", include_superseded=True, page_token=first.next_page_token),
                  checkins_pb2.ListCheckinsRequest(author_id="rob", page_token="bm90IGEgdG9rZW4="),
                  checkins_pb2.ListCheckinsRequest(author_id="rob", page_token="%%%")):
        expect(cat.ListCheckins, other, Code.INVALID_ARGUMENT, "page_token")


@pytest.mark.parametrize("keyed", [False, True], ids=["ulid-ids", "ids-from-keys"])
def test_equal_observation_times_list_in_record_order_across_pages(world, keyed):
    """Ids from idempotency keys do not sort by time: the record time orders, the id only breaks its ties."""
    observed = stamp(days_ago(1))
    ids = [world.as_("ann").RecordMeasureCheckin(measure_request(
        world.ann, "msr-ttv", value=v, observe_time=observed, idempotency_key=f"k{v}" if keyed else "")).id
        for v in (20, 19, 18, 17, 16)]
    assert len(set(ids)) == 5
    listed, token = [], ""
    while True:
        page = world.as_("ann").ListCheckins(checkins_pb2.ListCheckinsRequest(v2mom_id=world.ann, page_size=1, page_token=token))
        listed += [c.id for c in page.checkins]
        token = page.next_page_token
        if not token:
            break
    assert listed == ids[::-1]  # the later record first


@pytest.mark.parametrize("request_fields, field", [
    ({}, "v2mom_id"),
    ({"item_id": "msr-nps", "author_id": "ann"}, "item_id"),
    ({"v2mom_id": "bad id"}, "v2mom_id"),
    ({"author_id": "x" * 65}, "author_id"),
    ({"author_id": "ann", "page_size": 201}, "page_size"),
    ({"author_id": "ann", "page_size": -1}, "page_size"),
])
def test_list_checkins_refuses_bad_filters(world, request_fields, field):
    expect(world.as_("ann").ListCheckins, checkins_pb2.ListCheckinsRequest(**request_fields), Code.INVALID_ARGUMENT, field)


def test_list_checkins_refuses_an_empty_time_range(world):
    request = checkins_pb2.ListCheckinsRequest(author_id="ann", start_time=stamp(days_ago(1)), end_time=stamp(days_ago(2)))
    expect(world.as_("ann").ListCheckins, request, Code.INVALID_ARGUMENT, "end_time")


def test_list_checkins_needs_a_token(world):
    expect(world.as_(None).ListCheckins, checkins_pb2.ListCheckinsRequest(author_id="ann"), Code.UNAUTHENTICATED)


# --- cycle settings ---------------------------------------------------------------------------------------------


def test_cycle_settings_default_to_biweekly_and_admins_change_them(world):
    get = checkins_pb2.GetCycleSettingsRequest(cycle_id="FY2027")
    assert world.as_("cat").GetCycleSettings(get).cadence == checkins_pb2.CADENCE_BIWEEKLY

    updated = world.as_("ada", ADMIN).UpdateCycleSettings(
        checkins_pb2.UpdateCycleSettingsRequest(cycle_id="FY2027", cadence=checkins_pb2.CADENCE_WEEKLY)
    )
    assert updated == checkins_pb2.CycleSettings(cycle_id="FY2027", cadence=checkins_pb2.CADENCE_WEEKLY)
    assert world.as_("cat").GetCycleSettings(get).cadence == checkins_pb2.CADENCE_WEEKLY

    checkin = world.as_("ann").RecordMeasureCheckin(measure_request(world.ann, "msr-ttv"))
    assert world.store.event_of(checkin.id)["data"]["cadence"] == "CADENCE_WEEKLY"


def test_only_admins_change_cycle_settings(world):
    request = checkins_pb2.UpdateCycleSettingsRequest(cycle_id="FY2027", cadence=checkins_pb2.CADENCE_MONTHLY)
    for person in ("lee", "ceo"):
        expect_nothing_written(world.store, world.as_(person).UpdateCycleSettings, request, Code.PERMISSION_DENIED)
    expect_nothing_written(world.store, world.as_(None).UpdateCycleSettings, request, Code.UNAUTHENTICATED)


def test_a_shorter_cadence_takes_effect_at_the_timers_next_tick(world, checkins_settings):
    # The worker's side, in process: ann's V2MOM was published ten days ago, so on the default
    # biweekly cadence its clocks are not due for four more days.
    goals = GoalsClient(checkins_settings.goals_addr, checkins_settings.auth)
    db = world.store.db
    try:
        Projection(db, goals).v2mom_approved(approved(v2mom_data(world.ann, 1, publish_time=days_ago(10))))
    finally:
        goals.close()
    assert advance_due(db, utc_now()) == 0

    world.as_("ada", ADMIN).UpdateCycleSettings(
        checkins_pb2.UpdateCycleSettingsRequest(cycle_id="FY2027", cadence=checkins_pb2.CADENCE_WEEKLY)
    )

    assert advance_due(db, utc_now()) == 3  # every item: weekly, ten days without a check-in
    stale = world.as_("cat").ListStaleItems(checkins_pb2.ListStaleItemsRequest(owner_id="rob")).items
    assert {(item.item_id, item.staleness) for item in stale} == {
        ("msr-nps", checkins_pb2.STALENESS_STALE), ("msr-ttv", checkins_pb2.STALENESS_STALE)}


def test_quarters_an_admin_gives_the_cycle_in_goals_reach_the_clocks(world, checkins_settings):
    # goals-api's UpdateCycle, then the worker's side in process, learning the quarters through ListCycles:
    # a quarter ending in three days comes before the biweekly step four days from now.
    quarter_end = datetime.combine(utc_now().date() + timedelta(days=3), time(), tzinfo=UTC)
    first_day, last_day = date(2026, 2, 1), FY2027_LAST_DAY
    cycle = common_pb2.Cycle(id="FY2027", quarters=[
        common_pb2.Quarter(id="Q1", start_date=_day(first_day), end_date=_day(quarter_end.date() - timedelta(days=1))),
        common_pb2.Quarter(id="Q2", start_date=_day(quarter_end.date()), end_date=_day(last_day))])
    world.goals.goals_api("ada").UpdateCycle(goals_pb2.UpdateCycleRequest(
        cycle=cycle, update_mask=field_mask_pb2.FieldMask(paths=["quarters"])))
    goals = GoalsClient(checkins_settings.goals_addr, checkins_settings.auth)
    try:
        assert goals.cycle_quarters("FY2027")[0] == (first_day, quarter_end.date() - timedelta(days=1))
        Projection(world.store.db, goals).v2mom_approved(approved(v2mom_data(world.ann, 1, publish_time=days_ago(10))))
    finally:
        goals.close()
    clocks = list(world.store.db[ITEM_CLOCKS].find({"v2mom_id": world.ann}))
    assert clocks and all(clock["next_check_at"] == quarter_end for clock in clocks)


def _day(value: date) -> date_pb2.Date:
    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


def test_a_v2mom_approved_before_its_cycle_goes_stale_a_cadence_into_the_cycle(world, db, checkins_settings):
    # A cycle that opens in ten days, and a V2MOM goals-api publishes in it now: nobody can check in yet.
    opens = datetime.combine(utc_now().date() + timedelta(days=10), time(), tzinfo=UTC)
    Directory(db, cache_seconds=0).upsert_cycle(
        "FY2028", opens.date().isoformat(), (opens.date() + timedelta(days=364)).isoformat())
    future = publish_v2mom(world.goals.goals_api, "ann", "lee", world_content("Ann FY28"), cycle_id="FY2028")
    error = expect_nothing_written(world.store, world.as_("rob").RecordMeasureCheckin,
                                   measure_request(future, "msr-nps"), Code.FAILED_PRECONDITION)
    assert precondition_violations(error)[0][0] == "CYCLE_NOT_STARTED"

    # The worker's side, in process, learning the cycle's dates from goals-api.
    goals = GoalsClient(checkins_settings.goals_addr, checkins_settings.auth)
    try:
        published = goals.published_v2mom(future)
        data = v2mom_data(future, published.published_revision, published.content, owner_id="ann",
                          cycle_id="FY2028", publish_time=published.publish_time.ToDatetime(tzinfo=UTC))
        Projection(world.store.db, goals).v2mom_approved(approved(data))
    finally:
        goals.close()

    clocks_db = world.store.db
    biweekly = timedelta(days=14)
    assert advance_due(clocks_db, utc_now() + biweekly + timedelta(days=1)) == 0  # a cadence after approval: not yet
    assert advance_due(clocks_db, opens + biweekly - timedelta(seconds=1)) == 0
    assert not world.as_("cat").ListStaleItems(checkins_pb2.ListStaleItemsRequest(owner_id="rob")).items
    assert advance_due(clocks_db, opens + biweekly) == 4  # every item, one cadence into the cycle
    stale = world.as_("cat").ListStaleItems(checkins_pb2.ListStaleItemsRequest(owner_id="rob")).items
    assert {(item.v2mom_id, item.item_id) for item in stale} == {(future, "msr-nps"), (future, "mth-calls")}
    assert {item.stale_since_time.ToDatetime(tzinfo=UTC) for item in stale} == {opens + biweekly}


@pytest.mark.parametrize("cycle_id, cadence, code, field", [
    ("FY1999", checkins_pb2.CADENCE_WEEKLY, Code.NOT_FOUND, None),
    ("", checkins_pb2.CADENCE_WEEKLY, Code.INVALID_ARGUMENT, "cycle_id"),
    ("x" * 33, checkins_pb2.CADENCE_WEEKLY, Code.INVALID_ARGUMENT, "cycle_id"),
    ("FY2027", checkins_pb2.CADENCE_UNSPECIFIED, Code.INVALID_ARGUMENT, "cadence"),
    ("FY2027", 42, Code.INVALID_ARGUMENT, "cadence"),
])
def test_cycle_settings_refuse_unknown_cycles_and_cadences(world, cycle_id, cadence, code, field):
    fields = (field,) if field else ()
    expect_nothing_written(world.store, world.as_("ada", ADMIN).UpdateCycleSettings,
                           checkins_pb2.UpdateCycleSettingsRequest(cycle_id=cycle_id, cadence=cadence), code, *fields)
    if code == Code.NOT_FOUND:
        expect(world.as_("ann").GetCycleSettings, checkins_pb2.GetCycleSettingsRequest(cycle_id=cycle_id), code)


# --- progress and staleness: the servicer's side, with a stand-in for the worker's ProgressReader ----------------
# The real ProgressReader (services/checkins/progress_store.py) is the worker side's and its tests
# (tests/checkins/test_checkins_progress*.py) cover what it answers; here only what the servicer adds.


class FakeProgressReader:
    def __init__(self):
        self.calls = []
        self.known = {}

    def progress(self, v2mom_id, include_tree):
        self.calls.append(("progress", v2mom_id, include_tree))
        return self.known.get(v2mom_id)

    def history(self, v2mom_id):
        self.calls.append(("history", v2mom_id))
        return None

    def stale_items(self, owner_id, org_unit_ids, after, limit):
        self.calls.append(("stale", owner_id, list(org_unit_ids), after, limit))
        return [checkins_pb2.StaleItem(item_id=f"item-after-{after or 'start'}")], "next-" + (after or "start")


@pytest.fixture
def with_reader(goals_world, checkins_settings):
    reader = FakeProgressReader()
    create_server = functools.partial(checkins_api_module.create_server, progress_reader=reader)
    with served_in_process(create_server, checkins_pb2_grpc.CheckinServiceStub, checkins_settings) as client_for:
        yield goals_world, reader, client_for("cat")


def test_get_progress_reads_the_projection_and_falls_back_to_the_published_structure(with_reader):
    world, reader, cat = with_reader
    reader.known["v2m_projected"] = checkins_pb2.Progress(v2mom_id="v2m_projected", progress_percent=42)
    assert cat.GetProgress(checkins_pb2.GetProgressRequest(v2mom_id="v2m_projected", include_tree=True)).progress_percent == 42
    assert ("progress", "v2m_projected", True) in reader.calls

    empty = cat.GetProgress(checkins_pb2.GetProgressRequest(v2mom_id=world.ann_v2mom_id))
    assert (empty.owner_id, empty.org_unit_id, empty.cycle_id, empty.progress_percent) == ("ann", "onboarding", "FY2027", 0)
    assert {item.item_id for item in empty.items} == {"msr-nps", "msr-ttv", "mth-guide", "mth-calls"}

    for v2mom_id in ("v2m_unknown", world.draft_v2mom_id):
        expect(cat.GetProgress, checkins_pb2.GetProgressRequest(v2mom_id=v2mom_id), Code.NOT_FOUND)
        expect(cat.GetProgressHistory, checkins_pb2.GetProgressHistoryRequest(v2mom_id=v2mom_id), Code.NOT_FOUND)
    assert cat.GetProgressHistory(checkins_pb2.GetProgressHistoryRequest(v2mom_id=world.ann_v2mom_id)).snapshots == []
    expect(cat.GetProgress, checkins_pb2.GetProgressRequest(v2mom_id=""), Code.INVALID_ARGUMENT, "v2mom_id")
    expect(cat.GetProgressHistory, checkins_pb2.GetProgressHistoryRequest(v2mom_id="a/b"), Code.INVALID_ARGUMENT, "v2mom_id")


def test_stale_items_of_an_org_unit_cover_its_subtree_and_page_with_wrapped_tokens(with_reader):
    _, reader, cat = with_reader
    first = cat.ListStaleItems(checkins_pb2.ListStaleItemsRequest(org_unit_id="acme", page_size=10))
    assert reader.calls[-1] == ("stale", "", ["acme", "billing", "onboarding"], "", 10)
    second = cat.ListStaleItems(checkins_pb2.ListStaleItemsRequest(org_unit_id="acme", page_size=10, page_token=first.next_page_token))
    assert reader.calls[-1][3] == "next-start" and second.items[0].item_id == "item-after-next-start"

    cat.ListStaleItems(checkins_pb2.ListStaleItemsRequest(org_unit_id="onboarding"))
    assert reader.calls[-1] == ("stale", "", ["onboarding"], "", 50)
    cat.ListStaleItems(checkins_pb2.ListStaleItemsRequest(owner_id="rob"))
    assert reader.calls[-1] == ("stale", "rob", [], "", 50)

    calls = len(reader.calls)
    expect(cat.ListStaleItems, checkins_pb2.ListStaleItemsRequest(org_unit_id="nowhere"), Code.NOT_FOUND)
    expect(cat.ListStaleItems, checkins_pb2.ListStaleItemsRequest(owner_id="rob", page_token=first.next_page_token),
           Code.INVALID_ARGUMENT, "page_token")
    expect(cat.ListStaleItems, checkins_pb2.ListStaleItemsRequest(owner_id="rob", page_token="%%%"),
           Code.INVALID_ARGUMENT, "page_token")
    expect(cat.ListStaleItems, checkins_pb2.ListStaleItemsRequest(), Code.INVALID_ARGUMENT, "owner_id")
    expect(cat.ListStaleItems, checkins_pb2.ListStaleItemsRequest(owner_id="rob", org_unit_id="acme"), Code.INVALID_ARGUMENT, "owner_id")
    expect(cat.ListStaleItems, checkins_pb2.ListStaleItemsRequest(owner_id="rob", page_size=500), Code.INVALID_ARGUMENT, "page_size")
    assert len(reader.calls) == calls  # refused before reaching the store


def test_progress_of_an_unknown_id_is_not_found_on_the_sqlite_store(goals_world, checkins_settings, sqlite_mongo_uri):
    """Issue 12, finding 4: on the store `make run` keeps (SQLite), an id with no progress sent the clocks an
    empty `$in`, which that store refuses: INTERNAL instead of NOT_FOUND."""
    settings = replace(checkins_settings, mongo_uri=sqlite_mongo_uri)
    with served_in_process(checkins_api_module.create_server, checkins_pb2_grpc.CheckinServiceStub, settings) as api, \
            pymongo.MongoClient(sqlite_mongo_uri) as client:
        # Some other V2MOM's clock: on an empty collection the store answers before it builds any SQL.
        client[settings.database_name][ITEM_CLOCKS].insert_one({"_id": "clock-elsewhere", "v2mom_id": "v2m_other"})
        for v2mom_id in ("hannah.berg", goals_world.draft_v2mom_id):
            expect(api("cat").GetProgress, checkins_pb2.GetProgressRequest(v2mom_id=v2mom_id, include_tree=True),
                   Code.NOT_FOUND)
            expect(api("cat").GetProgressHistory, checkins_pb2.GetProgressHistoryRequest(v2mom_id=v2mom_id),
                   Code.NOT_FOUND)
        progress = api("cat").GetProgress(checkins_pb2.GetProgressRequest(v2mom_id=goals_world.ann_v2mom_id))
        assert progress.v2mom_id == goals_world.ann_v2mom_id and len(progress.items) == 4
        stale = api("cat").ListStaleItems(checkins_pb2.ListStaleItemsRequest(org_unit_id="acme"))
        assert list(stale.items) == []


def test_get_progress_with_the_real_progress_store_before_the_worker_has_run(world):
    """No worker here: the projection is empty, so every RPC answers from the published structure."""
    progress = world.as_("cat").GetProgress(checkins_pb2.GetProgressRequest(v2mom_id=world.ann, include_tree=True))
    assert progress.v2mom_id == world.ann and progress.progress_percent == 0 and len(progress.items) == 4
    assert world.as_("cat").GetProgressHistory(checkins_pb2.GetProgressHistoryRequest(v2mom_id=world.ann)).snapshots == []
    stale = world.as_("cat").ListStaleItems(checkins_pb2.ListStaleItemsRequest(org_unit_id="acme"))
    assert list(stale.items) == [] and not stale.next_page_token
