"""ListV2MOMs filters, paging and visibility; the directory RPCs (people, org units, cycles)."""

import pytest
from grpc import StatusCode as Code

from tests.support.goals import (
    ADMIN, CEO, DEPARTMENT, FY2027, FY2028, MANAGER, OWNER, PEER, PEOPLE, SKIP, TEAM, TEAMMATE, UNITS,
    valid_content,
)
from tests.support.grpc_errors import expect
from v2mom.v1 import common_pb2, goals_pb2

S = goals_pb2


@pytest.fixture(scope="module")
def listed(goals):
    """Two cycles of V2MOMs in every state, in a database of this module's own."""
    c1, c2 = goals.new_cycle(), goals.new_cycle()
    made = {
        "olive_draft": goals.create(cycle_id=c1),
        "otto_published": goals.published(owner=TEAMMATE, cycle_id=c1, content=valid_content(TEAMMATE)),
        "pete_submitted": goals.submitted(owner=PEER, cycle_id=c1, content=valid_content(PEER)),
        "team_published": goals.published(owner=MANAGER, approver=SKIP, level=TEAM, org_unit_id="platform", cycle_id=c1,
                                          content=valid_content(MANAGER)),
        "dept_draft": goals.create(owner=SKIP, level=DEPARTMENT, org_unit_id="eng", cycle_id=c1, content=valid_content(SKIP)),
        "olive_published": goals.published(cycle_id=c2),
        "mia_archived": goals.published(owner="mia", approver=SKIP, cycle_id=c2, content=valid_content("mia")),
        "otto_changes": goals.submitted(owner=TEAMMATE, cycle_id=c2, content=valid_content(TEAMMATE)),
    }
    goals.client("mia").ArchiveV2MOM(S.ArchiveV2MOMRequest(id=made["mia_archived"].id))
    goals.client(MANAGER).RequestChanges(S.RequestChangesRequest(id=made["otto_changes"].id, reason="more detail"))
    ids = {name: v.id for name, v in made.items()}
    return {"c1": c1, "c2": c2, "ids": ids, "everything": set(ids.values())}


def names(listed, response) -> set[str]:
    by_id = {v: k for k, v in listed["ids"].items()}
    return {by_id[v.id] for v in response.v2moms if v.id in by_id}


def list_as(goals, person, **filters):
    return goals.client(person).ListV2MOMs(S.ListV2MOMsRequest(page_size=200, **filters))


@pytest.mark.parametrize("filters, expected", [
    ({"owner_id": OWNER}, {"olive_draft", "olive_published"}),
    ({"owner_id": TEAMMATE}, {"otto_published", "otto_changes"}),
    ({"org_unit_id": "platform"}, {"olive_draft", "otto_published", "team_published", "olive_published", "otto_changes"}),
    ({"org_unit_id": "eng"}, {"dept_draft"}),
    ({"cycle": "c1"}, {"olive_draft", "otto_published", "pete_submitted", "team_published", "dept_draft"}),
    ({"cycle": "c2"}, {"olive_published", "mia_archived", "otto_changes"}),
    ({"state": S.V2MOM_STATE_DRAFT}, {"olive_draft", "dept_draft"}),
    ({"state": S.V2MOM_STATE_SUBMITTED}, {"pete_submitted"}),
    ({"state": S.V2MOM_STATE_CHANGES_REQUESTED}, {"otto_changes"}),
    ({"state": S.V2MOM_STATE_PUBLISHED}, {"otto_published", "team_published", "olive_published"}),
    ({"state": S.V2MOM_STATE_ARCHIVED}, {"mia_archived"}),
    ({"cycle": "c1", "state": S.V2MOM_STATE_PUBLISHED}, {"otto_published", "team_published"}),
    ({"owner_id": OWNER, "cycle": "c2", "org_unit_id": "platform"}, {"olive_published"}),
    ({"owner_id": OWNER, "org_unit_id": "mobile"}, set()),
])
def test_filters_as_admin(goals, listed, filters, expected):
    filters = dict(filters)
    if "cycle" in filters:
        filters["cycle_id"] = listed[filters.pop("cycle")]
    assert names(listed, list_as(goals, ADMIN, **filters)) == expected


@pytest.mark.parametrize("person, expected", [
    (PEER, {"otto_published", "team_published", "olive_published", "mia_archived", "pete_submitted"}),
    (OWNER, {"olive_draft", "otto_published", "team_published", "olive_published", "mia_archived"}),
    (MANAGER, {"olive_draft", "otto_published", "team_published", "olive_published", "mia_archived", "otto_changes"}),
    (SKIP, {"olive_draft", "otto_published", "pete_submitted", "team_published", "dept_draft", "olive_published",
            "mia_archived", "otto_changes"}),
    (ADMIN, {"olive_draft", "otto_published", "pete_submitted", "team_published", "dept_draft", "olive_published",
             "mia_archived", "otto_changes"}),
])
def test_each_caller_lists_what_they_may_see(goals, listed, person, expected):
    assert names(listed, list_as(goals, person)) == expected


def test_peers_get_the_published_view_in_lists(goals, listed):
    seen = {v.id: v for v in list_as(goals, PEER, cycle_id=listed["c2"]).v2moms}
    archived = seen[listed["ids"]["mia_archived"]]
    assert archived.state == S.V2MOM_STATE_ARCHIVED and archived.showing_published
    assert seen[listed["ids"]["olive_published"]].showing_published
    assert names(listed, list_as(goals, PEER, state=S.V2MOM_STATE_ARCHIVED)) == {"mia_archived"}


def page_through(client, request, field="v2moms") -> tuple[list[str], int]:
    seen, pages = [], 0
    while True:
        response = getattr(client, type(request).__name__.removesuffix("Request"))(request)
        items = list(getattr(response, field))
        seen += [item.id for item in items]
        pages += 1
        assert pages < 100, "the paging never ends"
        if not response.next_page_token:
            return seen, pages
        assert items, "an empty page with a next token"
        request.page_token = response.next_page_token


@pytest.mark.parametrize("page_size", [1, 2, 3, 7, 50])
def test_paging_round_trip_has_no_gaps_or_duplicates(isolated_goals, page_size):
    goals = isolated_goals
    made = [goals.create(cycle_id=goals.new_cycle()).id for _ in range(7)]
    made += [goals.published(owner=TEAMMATE, cycle_id=goals.new_cycle(), content=valid_content(TEAMMATE)).id for _ in range(3)]
    seen, pages = page_through(goals.client(OWNER), S.ListV2MOMsRequest(page_size=page_size))
    assert sorted(seen) == sorted(made) and len(seen) == len(made)
    assert pages == -(-len(made) // page_size)


def test_paging_skips_hidden_v2moms_without_empty_pages(isolated_goals):
    goals = isolated_goals
    visible = []
    for i in range(6):
        goals.create(cycle_id=goals.new_cycle())  # olive's drafts: hidden from pete
        visible.append(goals.published(owner=TEAMMATE, cycle_id=goals.new_cycle(), content=valid_content(TEAMMATE)).id)
    seen, pages = page_through(goals.client(PEER), S.ListV2MOMsRequest(page_size=2))
    assert sorted(seen) == sorted(visible) and pages == 3


def test_paging_keeps_the_filters(isolated_goals):
    goals = isolated_goals
    cycle_id = goals.new_cycle()
    wanted = [goals.create(owner=p, cycle_id=cycle_id, content=valid_content(p)).id for p in (OWNER, TEAMMATE, PEER, "mia")]
    goals.create(cycle_id=goals.new_cycle())  # another cycle: never listed
    seen, _ = page_through(goals.client(ADMIN), S.ListV2MOMsRequest(cycle_id=cycle_id, page_size=1))
    assert sorted(seen) == sorted(wanted)


def test_a_token_works_only_for_the_list_and_filters_it_came_from(isolated_goals):
    goals = isolated_goals
    cycle_id = goals.new_cycle()
    for person in (OWNER, TEAMMATE):
        goals.create(owner=person, cycle_id=cycle_id, content=valid_content(person))
    client = goals.client(ADMIN)
    token = client.ListV2MOMs(S.ListV2MOMsRequest(cycle_id=cycle_id, page_size=1)).next_page_token
    assert token
    for call, request in (
        (client.ListV2MOMs, S.ListV2MOMsRequest(cycle_id=goals.new_cycle(), page_token=token)),
        (client.ListV2MOMs, S.ListV2MOMsRequest(page_token=token)),
        (client.ListPeople, S.ListPeopleRequest(page_token=token)),
        (client.ListOrgUnits, S.ListOrgUnitsRequest(page_token=token)),
        (client.ListPendingApprovals, S.ListPendingApprovalsRequest(page_token=token)),
    ):
        expect(call, request, Code.INVALID_ARGUMENT, "page_token")


def test_default_page_size_is_50(isolated_goals):
    goals = isolated_goals
    people = [f"p{i:02d}" for i in range(53)]
    for person in people:
        goals.directory.upsert_person({"_id": person, "display_name": person, "org_unit_id": "platform", "manager_id": MANAGER})
    first = goals.client(ADMIN).ListPeople(S.ListPeopleRequest(org_unit_id="platform"))
    assert len(first.people) == 50 and first.next_page_token
    seen, pages = page_through(goals.client(ADMIN), S.ListPeopleRequest(org_unit_id="platform", page_size=0), field="people")
    assert pages == 2 and sorted(seen) == sorted(people + [MANAGER, OWNER, TEAMMATE])


# --- the directory -------------------------------------------------------------------------------------------------


def test_get_person(goals):
    person = goals.client(PEER).GetPerson(S.GetPersonRequest(id=ADMIN))
    assert (person.id, person.display_name, person.email, person.manager_id, person.org_unit_id) == (
        ADMIN, "Ada Admin", "ada@acme.test", CEO, "acme")
    assert list(person.roles) == ["admin"] and person.active
    assert goals.client(PEER).GetPerson(S.GetPersonRequest(id=CEO)).manager_id == ""


@pytest.mark.parametrize("filters, expected", [
    ({}, set(PEOPLE)),
    ({"org_unit_id": "platform"}, {MANAGER, OWNER, TEAMMATE}),
    ({"manager_id": MANAGER}, {OWNER, TEAMMATE}),
    ({"manager_id": CEO}, {ADMIN, SKIP, "sam"}),
    ({"org_unit_id": "mobile", "manager_id": "mia"}, {PEER}),
    ({"org_unit_id": "sales", "manager_id": MANAGER}, set()),
])
def test_list_people(goals, filters, expected):
    seen, _ = page_through(goals.client(PEER), S.ListPeopleRequest(page_size=2, **filters), field="people")
    assert len(seen) == len(set(seen)) and set(seen) == expected


def test_get_org_unit(goals):
    unit = goals.client(PEER).GetOrgUnit(S.GetOrgUnitRequest(id="eng"))
    assert (unit.name, unit.level, unit.parent_id, unit.leader_id) == ("Engineering", common_pb2.ORG_LEVEL_DEPARTMENT, "acme", SKIP)
    assert goals.client(PEER).GetOrgUnit(S.GetOrgUnitRequest(id="acme")).parent_id == ""


@pytest.mark.parametrize("parent, expected", [
    ("", {u["_id"] for u in UNITS}),
    ("acme", {"eng", "sales"}),
    ("eng", {"platform", "mobile"}),
    ("platform", set()),
])
def test_list_org_units(goals, parent, expected):
    seen, _ = page_through(goals.client(PEER), S.ListOrgUnitsRequest(parent_id=parent, page_size=2), field="org_units")
    assert len(seen) == len(set(seen)) and set(seen) == expected


def test_list_cycles_in_date_order(isolated_goals):
    goals = isolated_goals
    goals.directory.upsert_cycle("FY2026", "2025-02-01", "2026-01-31")
    cycles = goals.client(PEER).ListCycles(S.ListCyclesRequest()).cycles
    assert [c.id for c in cycles] == ["FY2026", FY2027, FY2028]
    assert (cycles[1].start_date.year, cycles[1].start_date.month, cycles[1].start_date.day) == (2026, 2, 1)
    assert (cycles[1].end_date.year, cycles[1].end_date.month, cycles[1].end_date.day) == (2027, 1, 31)
