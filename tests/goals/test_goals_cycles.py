"""Cycles over real gRPC: CreateCycle, UpdateCycle, GetCurrentCycle, and CloseCycle rolling a year over."""

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from tests.support.goals import ADMIN, d, FY2027, MANAGER, mask, OWNER, TEAMMATE
from tests.support.grpc_errors import expect
from v2mom.v1 import common_pb2, goals_pb2

Code = grpc.StatusCode


def fiscal_year(cycle_id: str, year: int, quarters: bool = True) -> common_pb2.Cycle:
    """Feb 1 of ``year`` to Jan 31 of the next, in four quarters."""
    cycle = common_pb2.Cycle(id=cycle_id, start_date=d(year, 2, 1), end_date=d(year + 1, 1, 31))
    if quarters:
        bounds = [(d(year, 2, 1), d(year, 4, 30)), (d(year, 5, 1), d(year, 7, 31)),
                  (d(year, 8, 1), d(year, 10, 31)), (d(year, 11, 1), d(year + 1, 1, 31))]
        cycle.quarters.extend(common_pb2.Quarter(id=f"Q{i + 1}", start_date=a, end_date=b) for i, (a, b) in enumerate(bounds))
    return cycle


def at(year: int, month: int, day: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromJsonString(f"{year:04d}-{month:02d}-{day:02d}T12:00:00Z")
    return stamp


def refused(call, request, code, words: str) -> None:
    """The call fails with ``code``, and its message says ``words``."""
    error = expect(call, request, code)
    assert words in error.details(), error.details()


def outbox_types(collection, doc_id: str) -> list[str]:
    return [event["type"] for event in (collection.find_one({"_id": doc_id}) or {}).get("outbox", [])]


def test_admin_creates_a_year_with_quarters_and_everyone_finds_the_current_one(goals):
    admin = goals.client(ADMIN)
    created = admin.CreateCycle(goals_pb2.CreateCycleRequest(cycle=fiscal_year("FY2031", 2030)))
    assert created.id == "FY2031" and [q.id for q in created.quarters] == ["Q1", "Q2", "Q3", "Q4"]
    assert "cycle_changed" in outbox_types(goals.db.cycles, "FY2031")

    current = goals.client(OWNER).GetCurrentCycle(goals_pb2.GetCurrentCycleRequest(time=at(2030, 6, 15)))
    assert (current.cycle.id, current.quarter.id) == ("FY2031", "Q2")
    assert current.quarter.start_date == d(2030, 5, 1)
    listed = goals.client(OWNER).ListCycles(goals_pb2.ListCyclesRequest())
    assert "FY2031" in [c.id for c in listed.cycles]
    now = goals.client(OWNER).GetCurrentCycle(goals_pb2.GetCurrentCycleRequest())
    assert now.cycle.id and not now.HasField("quarter") or now.quarter.id  # whatever contains today answers
    refused(goals.client(OWNER).GetCurrentCycle, goals_pb2.GetCurrentCycleRequest(time=at(2090, 1, 1)), Code.NOT_FOUND, "2090-01-01")


def test_cycle_writes_refuse_what_is_wrong_with_specific_errors(goals):
    admin = goals.client(ADMIN)
    refused(goals.client(OWNER).CreateCycle, goals_pb2.CreateCycleRequest(cycle=fiscal_year("FY2041", 2040)),
           Code.PERMISSION_DENIED, "admins")
    admin.CreateCycle(goals_pb2.CreateCycleRequest(cycle=fiscal_year("FY2041", 2040)))
    refused(admin.CreateCycle, goals_pb2.CreateCycleRequest(cycle=fiscal_year("FY2041", 2040)), Code.ALREADY_EXISTS, "FY2041")
    refused(admin.CreateCycle, goals_pb2.CreateCycleRequest(cycle=fiscal_year("FY2041b", 2040)),
           Code.FAILED_PRECONDITION, "overlap")
    backwards = common_pb2.Cycle(id="BACK", start_date=d(2050, 2, 1), end_date=d(2050, 1, 1))
    expect(admin.CreateCycle, goals_pb2.CreateCycleRequest(cycle=backwards), Code.INVALID_ARGUMENT, "cycle.end_date")
    outside = fiscal_year("FY2051", 2050)
    outside.quarters[3].end_date.CopyFrom(d(2051, 3, 1))
    expect(admin.CreateCycle, goals_pb2.CreateCycleRequest(cycle=outside), Code.INVALID_ARGUMENT, "cycle.quarters[3]")
    expect(admin.CreateCycle, goals_pb2.CreateCycleRequest(cycle=common_pb2.Cycle(id="NODATES")),
           Code.INVALID_ARGUMENT, "cycle.start_date")
    expect(admin.UpdateCycle, goals_pb2.UpdateCycleRequest(cycle=common_pb2.Cycle(id="FY2041"), update_mask=mask("id")),
           Code.INVALID_ARGUMENT, "update_mask")
    refused(admin.UpdateCycle, goals_pb2.UpdateCycleRequest(cycle=common_pb2.Cycle(id="NOPE"), update_mask=mask("quarters")),
           Code.NOT_FOUND, "NOPE")


def test_update_changes_the_quarters_and_says_so(goals):
    admin = goals.client(ADMIN)
    admin.CreateCycle(goals_pb2.CreateCycleRequest(cycle=fiscal_year("FY2061", 2060, quarters=False)))
    goals.db.cycles.update_one({"_id": "FY2061"}, {"$set": {"outbox": []}})
    changed = admin.UpdateCycle(goals_pb2.UpdateCycleRequest(cycle=fiscal_year("FY2061", 2060), update_mask=mask("quarters")))
    assert len(changed.quarters) == 4 and changed.start_date == d(2060, 2, 1)
    assert outbox_types(goals.db.cycles, "FY2061") == ["cycle_changed"]
    again = admin.UpdateCycle(goals_pb2.UpdateCycleRequest(cycle=fiscal_year("FY2061", 2060), update_mask=mask("quarters")))
    assert again == changed and outbox_types(goals.db.cycles, "FY2061") == ["cycle_changed"]  # nothing new to say


def test_closing_a_year_archives_what_is_in_progress_and_opens_the_next(goals):
    admin = goals.client(ADMIN)
    admin.CreateCycle(goals_pb2.CreateCycleRequest(cycle=fiscal_year("FY2071", 2070)))
    draft = goals.create(cycle_id="FY2071")
    submitted = goals.submitted(owner=TEAMMATE, cycle_id="FY2071")
    published = goals.published(owner=MANAGER, approver="dana", cycle_id="FY2071")
    request = goals_pb2.CloseCycleRequest(cycle_id="FY2071", reason="FY2071 is over", next_cycle=fiscal_year("FY2072", 2071))
    refused(goals.client(OWNER).CloseCycle, request, Code.PERMISSION_DENIED, "admins")

    closed = admin.CloseCycle(request)
    assert closed.archived_count == 3 and closed.cycle.next_cycle_id == "FY2072" and closed.cycle.HasField("close_time")
    assert closed.next_cycle.id == "FY2072" and len(closed.next_cycle.quarters) == 4
    for v2mom in (draft, submitted, published):
        raw = goals.raw(v2mom.id)
        assert raw["state"] == "V2MOM_STATE_ARCHIVED" and raw["latest_revision"]["reason"] == "FY2071 is over"
        assert outbox_types(goals.db.v2moms, v2mom.id)[-1] == "v2mom_archived"
    assert "cycle_closed" in outbox_types(goals.db.cycles, "FY2071")
    assert "cycle_changed" in outbox_types(goals.db.cycles, "FY2072")
    in_the_closed_year = goals.client(OWNER).GetCurrentCycle(goals_pb2.GetCurrentCycleRequest(time=at(2070, 12, 1)))
    assert in_the_closed_year.cycle.id == "FY2072"  # closed early: planning has moved on to the next

    assert admin.CloseCycle(request).archived_count == 0  # a replay finishes nothing twice
    other_next = goals_pb2.CloseCycleRequest(cycle_id="FY2071", reason="again", next_cycle=common_pb2.Cycle(id=FY2027))
    refused(admin.CloseCycle, other_next, Code.FAILED_PRECONDITION, "already closed")
    refused(goals.client(OWNER).CreateV2MOM, goals_pb2.CreateV2MOMRequest(
        level=common_pb2.ORG_LEVEL_INDIVIDUAL, cycle_id="FY2071", content=goals_pb2.V2MOMContent(title="late")),
        Code.FAILED_PRECONDITION, "closed")
    refused(admin.UpdateCycle, goals_pb2.UpdateCycleRequest(cycle=fiscal_year("FY2071", 2070), update_mask=mask("quarters")),
           Code.FAILED_PRECONDITION, "closed")
    assert goals.create(owner=TEAMMATE, cycle_id="FY2072").cycle_id == "FY2072"  # the new year takes V2MOMs


def test_close_refuses_bad_requests(goals):
    admin = goals.client(ADMIN)
    expect(admin.CloseCycle, goals_pb2.CloseCycleRequest(cycle_id=FY2027, next_cycle=common_pb2.Cycle(id="X")),
           Code.INVALID_ARGUMENT, "reason")
    expect(admin.CloseCycle, goals_pb2.CloseCycleRequest(cycle_id=FY2027, reason="r", next_cycle=common_pb2.Cycle(id=FY2027)),
           Code.INVALID_ARGUMENT, "next_cycle.id")
    refused(admin.CloseCycle, goals_pb2.CloseCycleRequest(cycle_id="NOPE", reason="r", next_cycle=common_pb2.Cycle(id=FY2027)),
           Code.NOT_FOUND, "NOPE")
    expect(admin.CloseCycle, goals_pb2.CloseCycleRequest(cycle_id=FY2027, reason="r", next_cycle=common_pb2.Cycle(id="NEWNODATES")),
           Code.INVALID_ARGUMENT, "next_cycle.start_date")
