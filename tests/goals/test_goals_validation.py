"""The ugly requests, on every RPC: each is refused with the right code and names the right field.

For every case: never INTERNAL, no traceback text in what the client sees, and
nothing half-written (every stored V2MOM, its history and its outbox, is
exactly as before).
"""

import base64
import math
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import pytest
from grpc_status import rpc_status

from tests.support.goals import (
    ADMIN, CEO, COMPANY, d, DEPARTMENT, INDIVIDUAL, MANAGER, mask, OWNER, SKIP, TEAM, valid_content,
)
from tests.support.grpc_errors import assert_clean, expect, field_violations, rpc_error
from v2mom.v1 import common_pb2, goals_pb2

Code = grpc.StatusCode
THREE_MB = "x" * (3 * 1024 * 1024)


@dataclass
class World:
    """V2MOMs the cases point at. Cycle c1: dept X ← team T ← olive's draft D. Cycle c2: olive's published P."""

    goals: object
    c1: str
    c2: str
    dept: goals_pb2.V2MOM
    team: goals_pb2.V2MOM
    draft: goals_pb2.V2MOM
    published: goals_pb2.V2MOM

    def snapshot(self) -> dict:
        return {doc["_id"]: doc for doc in self.goals.db.v2moms.find({})}


@pytest.fixture(scope="module")
def world(goals):
    c1, c2 = goals.new_cycle(), goals.new_cycle()
    dept = goals.published(owner=SKIP, approver=CEO, level=DEPARTMENT, org_unit_id="eng", cycle_id=c1,
                           content=valid_content(SKIP))
    team = goals.published(owner=MANAGER, approver=SKIP, level=TEAM, org_unit_id="platform", cycle_id=c1,
                           parent_id=dept.id, content=valid_content(MANAGER))
    draft = goals.create(cycle_id=c1, parent_id=team.id)
    published = goals.published(cycle_id=c2)
    return World(goals, c1, c2, dept, team, draft, published)


# --- content: the same mistakes through CreateV2MOM, UpdateV2MOM and LintV2MOM ----------------------------


def _more(items, count: int, prefix: str, make):
    while len(items) < count:
        items.append(make(f"{prefix}-{len(items)}"))


def _method(i):
    return goals_pb2.Method(id=i, title=f"Method {i}", owner_id=OWNER, accountable_id=OWNER, due_date=d(2026, 9, 1))


def _set(path: str, value):
    """A mutation that sets content.<path> (dotted, with [i]) to value."""
    def mutate(content):
        *parents, leaf = path.split(".")
        target = content
        for part in parents:
            name, _, index = part.partition("[")
            target = getattr(target, name)
            if index:
                target = target[int(index.rstrip("]"))]
        if isinstance(value, list):
            field = getattr(target, leaf)
            del field[:]
            field.extend(value)
        elif hasattr(value, "DESCRIPTOR"):
            getattr(target, leaf).CopyFrom(value)
        else:
            setattr(target, leaf, value)
    return mutate


def _many_methods(count):
    return lambda c: _more(c.methods, count, "mth-x", _method)


def _six_values(c):
    _more(c.values, 6, "val-x", lambda i: goals_pb2.Value(id=i, name=i))


def _many_obstacles(c):
    _more(c.obstacles, 21, "obs-x", lambda i: goals_pb2.Obstacle(id=i, title=i))


def _many_measures(c):
    _more(c.measures, 21, "msr-x", lambda i: goals_pb2.Measure(id=i, title=i))


def _many_milestones(c):
    _more(c.methods[0].milestones, 21, "mil-x", lambda i: goals_pb2.Milestone(id=i, title=i))


def _start_after_due(c):
    c.methods[0].start_date.CopyFrom(d(2026, 10, 1))
    c.methods[0].due_date.CopyFrom(d(2026, 9, 1))


PEOPLE_21 = [OWNER] * 21
# (case id, mutation of valid_content(), field path inside the content)
CONTENT_CASES = [
    ("title_201", _set("title", "t" * 201), "title"),
    ("vision_2001", _set("vision", "v" * 2001), "vision"),
    ("vision_3MB", _set("vision", THREE_MB), "vision"),
    ("values_6", _six_values, "values"),
    ("value_id_65", _set("values[0].id", "v" * 65), "values[0].id"),
    ("value_id_format", _set("values[0].id", "has space"), "values[0].id"),
    ("value_id_newline", _set("values[0].id", "val-customers\n"), "values[0].id"),
    ("value_id_duplicate", _set("values[1].id", "val-customers"), "values[1].id"),
    ("value_name_missing", _set("values[0].name", "  "), "values[0].name"),
    ("value_name_121", _set("values[0].name", "n" * 121), "values[0].name"),
    ("value_description_2001", _set("values[0].description", "d" * 2001), "values[0].description"),
    ("methods_21", _many_methods(21), "methods"),
    ("method_id_duplicate", _set("methods[1].id", "mth-0"), "methods[1].id"),
    ("method_id_65", _set("methods[0].id", "m" * 65), "methods[0].id"),
    ("method_title_missing", _set("methods[0].title", ""), "methods[0].title"),
    ("method_title_201", _set("methods[0].title", "t" * 201), "methods[0].title"),
    ("method_description_4001", _set("methods[0].description", "d" * 4001), "methods[0].description"),
    ("method_value_link_unknown", _set("methods[0].value_ids", ["val-nope"]), "methods[0].value_ids"),
    ("method_value_link_twice", _set("methods[0].value_ids", ["val-quality", "val-quality"]), "methods[0].value_ids"),
    ("method_value_links_6", _set("methods[0].value_ids", ["val-customers"] * 6), "methods[0].value_ids"),
    ("method_owner_unknown", _set("methods[0].owner_id", "ghost"), "methods[0].owner_id"),
    ("method_owner_format", _set("methods[0].owner_id", "not an id!"), "methods[0].owner_id"),
    ("method_accountable_unknown", _set("methods[0].accountable_id", "ghost"), "methods[0].accountable_id"),
    ("method_responsible_unknown", _set("methods[0].responsible_ids", ["ghost"]), "methods[0].responsible_ids[0]"),
    ("method_responsible_21", _set("methods[0].responsible_ids", PEOPLE_21), "methods[0].responsible_ids"),
    ("method_consulted_21", _set("methods[0].consulted_ids", PEOPLE_21), "methods[0].consulted_ids"),
    ("method_informed_21", _set("methods[0].informed_ids", PEOPLE_21), "methods[0].informed_ids"),
    ("method_due_feb_30", _set("methods[0].due_date", d(2026, 2, 30)), "methods[0].due_date"),
    ("method_start_month_13", _set("methods[0].start_date", d(2026, 13, 1)), "methods[0].start_date"),
    ("method_due_no_year", _set("methods[0].due_date", d(0, 3, 1)), "methods[0].due_date"),
    ("method_start_after_due", _start_after_due, "methods[0].due_date"),
    ("method_weight_nan", _set("methods[0].weight", math.nan), "methods[0].weight"),
    ("method_weight_inf", _set("methods[0].weight", math.inf), "methods[0].weight"),
    ("method_weight_negative", _set("methods[0].weight", -1.0), "methods[0].weight"),
    ("method_weight_101", _set("methods[0].weight", 101.0), "methods[0].weight"),
    ("milestones_21", _many_milestones, "methods[0].milestones"),
    ("milestone_id_65", _set("methods[0].milestones[0].id", "m" * 65), "methods[0].milestones[0].id"),
    ("milestone_id_duplicate", lambda c: c.methods[0].milestones.add(id="mil-0", title="Again"), "methods[0].milestones[1].id"),
    ("milestone_title_201", _set("methods[0].milestones[0].title", "t" * 201), "methods[0].milestones[0].title"),
    ("milestone_title_missing", _set("methods[0].milestones[0].title", ""), "methods[0].milestones[0].title"),
    ("milestone_due_feb_29_2026", _set("methods[0].milestones[0].due_date", d(2026, 2, 29)), "methods[0].milestones[0].due_date"),
    ("obstacles_21", _many_obstacles, "obstacles"),
    ("obstacle_id_65", _set("obstacles[0].id", "o" * 65), "obstacles[0].id"),
    ("obstacle_id_duplicate", lambda c: c.obstacles.add(id="obs-1", title="Again"), "obstacles[1].id"),
    ("obstacle_title_missing", _set("obstacles[0].title", " "), "obstacles[0].title"),
    ("obstacle_title_201", _set("obstacles[0].title", "t" * 201), "obstacles[0].title"),
    ("obstacle_description_4001", _set("obstacles[0].description", "d" * 4001), "obstacles[0].description"),
    ("obstacle_status_99", _set("obstacles[0].status", 99), "obstacles[0].status"),
    ("obstacle_owner_unknown", _set("obstacles[0].owner_id", "ghost"), "obstacles[0].owner_id"),
    ("obstacle_method_link_unknown", _set("obstacles[0].method_ids", ["mth-nope"]), "obstacles[0].method_ids"),
    ("obstacle_method_links_21", _set("obstacles[0].method_ids", ["mth-0"] * 21), "obstacles[0].method_ids"),
    ("measures_21", _many_measures, "measures"),
    ("measure_id_duplicate", _set("measures[1].id", "msr-1"), "measures[1].id"),
    ("measure_id_65", _set("measures[0].id", "m" * 65), "measures[0].id"),
    ("measure_title_missing", _set("measures[0].title", ""), "measures[0].title"),
    ("measure_method_links_21", _set("measures[0].method_ids", ["mth-0"] * 21), "measures[0].method_ids"),
    ("measure_title_201", _set("measures[0].title", "t" * 201), "measures[0].title"),
    ("measure_unit_33", _set("measures[0].unit", "u" * 33), "measures[0].unit"),
    ("measure_kind_99", _set("measures[0].kind", 99), "measures[0].kind"),
    ("measure_direction_7", _set("measures[0].direction", 7), "measures[0].direction"),
    ("measure_baseline_nan", _set("measures[0].baseline", math.nan), "measures[0].baseline"),
    ("measure_target_inf", _set("measures[0].target", -math.inf), "measures[0].target"),
    ("measure_weight_nan", _set("measures[0].weight", math.nan), "measures[0].weight"),
    ("measure_due_feb_30", _set("measures[0].due_date", d(2026, 2, 30)), "measures[0].due_date"),
    ("measure_method_link_unknown", _set("measures[0].method_ids", ["mth-nope"]), "measures[0].method_ids"),
    ("measure_owner_unknown", _set("measures[0].owner_id", "ghost"), "measures[0].owner_id"),
]


def bad_content(mutate) -> goals_pb2.V2MOMContent:
    content = valid_content()
    mutate(content)
    return content


def top_level(path: str) -> str:
    return path.split("[")[0].split(".")[0]


@pytest.mark.parametrize("rpc", ["CreateV2MOM", "UpdateV2MOM", "LintV2MOM"])
@pytest.mark.parametrize("name, mutate, path", CONTENT_CASES, ids=[c[0] for c in CONTENT_CASES])
def test_bad_content_is_refused_on_every_rpc_that_takes_content(goals, world, rpc, name, mutate, path):
    content = bad_content(mutate)
    if rpc == "CreateV2MOM":
        request = goals_pb2.CreateV2MOMRequest(level=INDIVIDUAL, cycle_id=goals.new_cycle(), content=content)
        field = f"content.{path}"
    elif rpc == "UpdateV2MOM":
        request = goals_pb2.UpdateV2MOMRequest(
            v2mom=goals_pb2.V2MOM(id=world.draft.id, content=content), update_mask=mask(f"content.{top_level(path)}"))
        field = f"v2mom.content.{path}"
    else:
        request = goals_pb2.LintV2MOMRequest(content=content)
        field = f"content.{path}"
    before = world.snapshot()
    error = expect(getattr(goals.client(OWNER), rpc), request, Code.INVALID_ARGUMENT, field)
    assert len(error.details()) < 2000 and THREE_MB[:1000] not in str(field_violations(error))
    assert world.snapshot() == before


def test_the_valid_content_really_is_valid(goals):
    response = goals.client(OWNER).LintV2MOM(goals_pb2.LintV2MOMRequest(content=valid_content()))
    assert response.submittable and list(response.findings) == []


# --- every other field of every RPC ---------------------------------------------------------------------


@dataclass
class Case:
    name: str
    rpc: str
    build: Callable[[World], object]
    field: str | None = None
    code: grpc.StatusCode = Code.INVALID_ARGUMENT
    caller: str = OWNER


def create(w: World, **kw) -> goals_pb2.CreateV2MOMRequest:
    args = {"level": INDIVIDUAL, "cycle_id": w.goals.new_cycle(), "content": valid_content()}
    return goals_pb2.CreateV2MOMRequest(**{**args, **kw})


def update(w: World, v2mom_id=None, paths=("content.title",), reason="", expected=0, **v2mom_fields):
    return goals_pb2.UpdateV2MOMRequest(
        v2mom=goals_pb2.V2MOM(id=w.draft.id if v2mom_id is None else v2mom_id, **v2mom_fields),
        update_mask=mask(*paths), change_reason=reason, expected_revision=expected)


def obstacle(w: World, v2mom_id=None, obstacle_id="obs-1", paths=("status",), reason="", expected_revision=0,
             **fields) -> goals_pb2.UpdateObstacleRequest:
    fields = {"status": goals_pb2.OBSTACLE_STATUS_RESOLVED, **fields}
    return goals_pb2.UpdateObstacleRequest(
        v2mom_id=w.published.id if v2mom_id is None else v2mom_id, obstacle_id=obstacle_id,
        obstacle=goals_pb2.Obstacle(**fields), update_mask=mask(*paths), reason=reason,
        expected_revision=expected_revision)


def comment(w: World, **fields) -> goals_pb2.AddCommentRequest:
    return goals_pb2.AddCommentRequest(**{"v2mom_id": w.published.id, "text": "A fair point", **fields})


def token_of(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


# "wrI=" is "²": str.isdigit() took it for a revision number that int() then refused (INTERNAL).
BAD_TOKENS = {"not_base64": "%%%", "bad_padding": "abc", "not_utf8": token_of(b"\xff\xfe\xfd"),
              "operator": token_of(b'{"$gt": ""}'), "newline": token_of(b"v2m\n"), "superscript_two": "wrI="}
PAGED = {
    "ListV2MOMs": lambda **kw: goals_pb2.ListV2MOMsRequest(**kw),
    "ListPendingApprovals": lambda **kw: goals_pb2.ListPendingApprovalsRequest(**kw),
    "ListRevisions": lambda w, **kw: goals_pb2.ListRevisionsRequest(v2mom_id=w.draft.id, **kw),
    "ListPeople": lambda **kw: goals_pb2.ListPeopleRequest(**kw),
    "ListOrgUnits": lambda **kw: goals_pb2.ListOrgUnitsRequest(**kw),
    "ListTemplates": lambda **kw: goals_pb2.ListTemplatesRequest(**kw),
}


def cycle(cycle_id: str, year: int, quarters: int = 0, overlap: bool = False) -> common_pb2.Cycle:
    """A fiscal year from February with ``quarters`` of a month each (overlapping by a day when asked)."""
    made = common_pb2.Cycle(id=cycle_id, start_date=d(year, 2, 1), end_date=d(year + 1, 1, 31))
    for n in range(quarters):
        first = d(year, 1 + n, 28) if overlap and n else d(year, 2 + n, 1)
        made.quarters.add(id=f"Q{n + 1}", start_date=first, end_date=d(year, 2 + n, 28))
    return made


def paged(rpc, **kw):
    make = PAGED[rpc]
    return (lambda w: make(w, **kw)) if rpc == "ListRevisions" else (lambda w: make(**kw))


CASES = [
    # CreateV2MOM
    Case("level_missing", "CreateV2MOM", lambda w: create(w, level=0), "level"),
    Case("level_unknown", "CreateV2MOM", lambda w: create(w, level=42), "level"),
    Case("cycle_missing", "CreateV2MOM", lambda w: create(w, cycle_id=""), "cycle_id"),
    Case("cycle_format", "CreateV2MOM", lambda w: create(w, cycle_id="FY 2027"), "cycle_id"),
    Case("cycle_newline", "CreateV2MOM", lambda w: create(w, cycle_id="FY2027\n"), "cycle_id"),
    Case("cycle_unknown", "CreateV2MOM", lambda w: create(w, cycle_id="FY1999"), "cycle_id"),
    Case("owner_unknown", "CreateV2MOM", lambda w: create(w, owner_id="ghost"), "owner_id", caller=ADMIN),
    Case("owner_65", "CreateV2MOM", lambda w: create(w, owner_id="o" * 65), "owner_id", caller=ADMIN),
    Case("request_id_65", "CreateV2MOM", lambda w: create(w, request_id="r" * 65), "request_id"),
    Case("unit_missing", "CreateV2MOM", lambda w: create(w, level=TEAM), "org_unit_id", caller=MANAGER),
    Case("unit_unknown", "CreateV2MOM", lambda w: create(w, level=TEAM, org_unit_id="nowhere"), "org_unit_id", caller=ADMIN),
    Case("team_level_on_department", "CreateV2MOM", lambda w: create(w, level=TEAM, org_unit_id="eng"), "level", caller=ADMIN),
    Case("department_level_on_team", "CreateV2MOM", lambda w: create(w, level=DEPARTMENT, org_unit_id="platform"), "level",
         caller=ADMIN),
    Case("company_level_on_department", "CreateV2MOM", lambda w: create(w, level=COMPANY, org_unit_id="eng"), "level",
         caller=ADMIN),
    Case("individual_in_someone_elses_unit", "CreateV2MOM", lambda w: create(w, org_unit_id="mobile"), "org_unit_id"),
    Case("team_owner_not_leader", "CreateV2MOM", lambda w: create(w, level=TEAM, org_unit_id="platform", owner_id=OWNER),
         "owner_id", caller=ADMIN),
    Case("parent_unknown", "CreateV2MOM", lambda w: create(w, parent_id="v2m_nope"), "parent_id"),
    Case("parent_format", "CreateV2MOM", lambda w: create(w, parent_id="../etc"), "parent_id"),
    Case("parent_other_cycle", "CreateV2MOM", lambda w: create(w, cycle_id=w.c1, owner_id="otto", parent_id=w.published.id),
         "parent_id", caller=ADMIN),
    # GetV2MOM
    Case("get_id_missing", "GetV2MOM", lambda w: goals_pb2.GetV2MOMRequest(), "id"),
    Case("get_id_format", "GetV2MOM", lambda w: goals_pb2.GetV2MOMRequest(id="v2m x"), "id"),
    Case("get_id_65", "GetV2MOM", lambda w: goals_pb2.GetV2MOMRequest(id="v" * 65), "id"),
    Case("get_id_3MB", "GetV2MOM", lambda w: goals_pb2.GetV2MOMRequest(id=THREE_MB), "id"),
    Case("get_view_unknown", "GetV2MOM", lambda w: goals_pb2.GetV2MOMRequest(id=w.draft.id, view=9), "view"),
    Case("get_unknown", "GetV2MOM", lambda w: goals_pb2.GetV2MOMRequest(id="v2m_nope"), code=Code.NOT_FOUND),
    Case("get_published_view_never_published", "GetV2MOM",
         lambda w: goals_pb2.GetV2MOMRequest(id=w.draft.id, view=goals_pb2.V2MOM_VIEW_PUBLISHED), code=Code.NOT_FOUND),
    # UpdateV2MOM
    Case("update_id_missing", "UpdateV2MOM", lambda w: update(w, v2mom_id=""), "v2mom.id"),
    Case("update_mask_missing", "UpdateV2MOM", lambda w: update(w, paths=()), "update_mask"),
    Case("update_mask_unknown", "UpdateV2MOM", lambda w: update(w, paths=("content.nonsense",)), "update_mask"),
    Case("update_mask_state", "UpdateV2MOM", lambda w: update(w, paths=("state",)), "update_mask"),
    Case("update_mask_owner", "UpdateV2MOM", lambda w: update(w, paths=("owner_id",)), "update_mask"),
    Case("update_mask_revision", "UpdateV2MOM", lambda w: update(w, paths=("revision",)), "update_mask"),
    Case("update_mask_whole_content", "UpdateV2MOM", lambda w: update(w, paths=("content",)), "update_mask"),
    Case("update_mask_huge_path", "UpdateV2MOM", lambda w: update(w, paths=("p" * 100_000,)), "update_mask"),
    Case("update_mask_5000_unknown_paths", "UpdateV2MOM",
         lambda w: update(w, paths=[f"content.x{i:04d}" for i in range(5000)]), "update_mask"),
    Case("update_reason_1001", "UpdateV2MOM", lambda w: update(w, reason="r" * 1001), "change_reason"),
    Case("update_expected_negative", "UpdateV2MOM", lambda w: update(w, expected=-1), "expected_revision"),
    Case("update_parent_format", "UpdateV2MOM", lambda w: update(w, paths=("parent_id",), parent_id="a b"), "v2mom.parent_id"),
    Case("update_parent_unknown", "UpdateV2MOM", lambda w: update(w, paths=("parent_id",), parent_id="v2m_nope"),
         "v2mom.parent_id"),
    Case("update_parent_other_cycle", "UpdateV2MOM",
         lambda w: update(w, paths=("parent_id",), parent_id=w.published.id), "v2mom.parent_id"),
    Case("update_parent_self", "UpdateV2MOM", lambda w: update(w, paths=("parent_id",), parent_id=w.draft.id),
         "v2mom.parent_id"),
    Case("update_loop_team_under_draft", "UpdateV2MOM",
         lambda w: update(w, v2mom_id=w.team.id, paths=("parent_id",), parent_id=w.draft.id, reason="loop"),
         "v2mom.parent_id", caller=MANAGER),
    Case("update_loop_dept_under_draft", "UpdateV2MOM",
         lambda w: update(w, v2mom_id=w.dept.id, paths=("parent_id",), parent_id=w.draft.id, reason="loop"),
         "v2mom.parent_id", caller=SKIP),
    Case("update_published_without_reason", "UpdateV2MOM",
         lambda w: update(w, v2mom_id=w.published.id, content=goals_pb2.V2MOMContent(title="x")), "change_reason"),
    Case("update_unknown", "UpdateV2MOM", lambda w: update(w, v2mom_id="v2m_nope"), code=Code.NOT_FOUND),
    # ListV2MOMs
    Case("list_owner_format", "ListV2MOMs", lambda w: goals_pb2.ListV2MOMsRequest(owner_id="a b"), "owner_id"),
    Case("list_unit_format", "ListV2MOMs", lambda w: goals_pb2.ListV2MOMsRequest(org_unit_id="u" * 65), "org_unit_id"),
    Case("list_cycle_format", "ListV2MOMs", lambda w: goals_pb2.ListV2MOMsRequest(cycle_id="$gt"), "cycle_id"),
    Case("list_state_unknown", "ListV2MOMs", lambda w: goals_pb2.ListV2MOMsRequest(state=6), "state"),
    # Submit / Approve / RequestChanges / Archive
    Case("submit_id_missing", "SubmitV2MOM", lambda w: goals_pb2.SubmitV2MOMRequest(), "id"),
    Case("submit_expected_negative", "SubmitV2MOM",
         lambda w: goals_pb2.SubmitV2MOMRequest(id=w.draft.id, expected_revision=-5), "expected_revision"),
    Case("submit_stale", "SubmitV2MOM", lambda w: goals_pb2.SubmitV2MOMRequest(id=w.draft.id, expected_revision=99),
         code=Code.ABORTED),
    Case("approve_id_missing", "ApproveV2MOM", lambda w: goals_pb2.ApproveV2MOMRequest(), "id", caller=MANAGER),
    Case("approve_comment_1001", "ApproveV2MOM", lambda w: goals_pb2.ApproveV2MOMRequest(id=w.draft.id, comment="c" * 1001),
         "comment", caller=MANAGER),
    Case("approve_expected_negative", "ApproveV2MOM",
         lambda w: goals_pb2.ApproveV2MOMRequest(id=w.draft.id, expected_revision=-1), "expected_revision", caller=MANAGER),
    Case("changes_reason_missing", "RequestChanges", lambda w: goals_pb2.RequestChangesRequest(id=w.draft.id), "reason",
         caller=MANAGER),
    Case("changes_reason_1001", "RequestChanges",
         lambda w: goals_pb2.RequestChangesRequest(id=w.draft.id, reason="r" * 1001), "reason", caller=MANAGER),
    Case("changes_reason_3MB", "RequestChanges", lambda w: goals_pb2.RequestChangesRequest(id=w.draft.id, reason=THREE_MB),
         "reason", caller=MANAGER),
    Case("changes_id_missing", "RequestChanges", lambda w: goals_pb2.RequestChangesRequest(reason="why"), "id",
         caller=MANAGER),
    Case("archive_reason_1001", "ArchiveV2MOM", lambda w: goals_pb2.ArchiveV2MOMRequest(id=w.draft.id, reason="r" * 1001),
         "reason"),
    Case("archive_id_missing", "ArchiveV2MOM", lambda w: goals_pb2.ArchiveV2MOMRequest(), "id"),
    Case("archive_expected_negative", "ArchiveV2MOM",
         lambda w: goals_pb2.ArchiveV2MOMRequest(id=w.draft.id, expected_revision=-1), "expected_revision"),
    # UpdateObstacle
    Case("obstacle_v2mom_missing", "UpdateObstacle", lambda w: obstacle(w, v2mom_id=""), "v2mom_id"),
    Case("obstacle_id_format", "UpdateObstacle", lambda w: obstacle(w, obstacle_id="obs 1"), "obstacle_id"),
    Case("obstacle_mask_empty", "UpdateObstacle", lambda w: obstacle(w, paths=()), "update_mask"),
    Case("obstacle_mask_title", "UpdateObstacle", lambda w: obstacle(w, paths=("title",)), "update_mask"),
    Case("obstacle_status_missing", "UpdateObstacle", lambda w: obstacle(w, status=0), "obstacle.status"),
    Case("obstacle_status_unknown", "UpdateObstacle", lambda w: obstacle(w, status=42), "obstacle.status"),
    Case("obstacle_owner_unknown", "UpdateObstacle", lambda w: obstacle(w, paths=("owner_id",), owner_id="ghost"),
         "obstacle.owner_id"),
    Case("obstacle_owner_65", "UpdateObstacle", lambda w: obstacle(w, paths=("owner_id",), owner_id="o" * 65),
         "obstacle.owner_id"),
    Case("obstacle_methods_21", "UpdateObstacle",
         lambda w: obstacle(w, paths=("method_ids",), method_ids=[f"m{i}" for i in range(21)]), "obstacle.method_ids"),
    Case("obstacle_method_twice", "UpdateObstacle",
         lambda w: obstacle(w, paths=("method_ids",), method_ids=["mth-0", "mth-0"]), "obstacle.method_ids"),
    Case("obstacle_method_unknown", "UpdateObstacle", lambda w: obstacle(w, paths=("method_ids",), method_ids=["mth-9"]),
         "obstacle.method_ids[0]"),
    Case("obstacle_reason_1001", "UpdateObstacle", lambda w: obstacle(w, reason="r" * 1001), "reason"),
    Case("obstacle_expected_negative", "UpdateObstacle", lambda w: obstacle(w, expected_revision=-1), "expected_revision"),
    Case("obstacle_expected_stale", "UpdateObstacle", lambda w: obstacle(w, expected_revision=1), code=Code.ABORTED),
    Case("obstacle_unknown", "UpdateObstacle", lambda w: obstacle(w, obstacle_id="obs-9"), code=Code.NOT_FOUND),
    Case("obstacle_never_published", "UpdateObstacle", lambda w: obstacle(w, v2mom_id=w.draft.id),
         code=Code.FAILED_PRECONDITION),
    # AddComment, ListComments, EditComment, DeleteComment
    Case("comment_v2mom_missing", "AddComment", lambda w: comment(w, v2mom_id=""), "v2mom_id"),
    Case("comment_text_missing", "AddComment", lambda w: comment(w, text=" \n"), "text"),
    Case("comment_text_4001", "AddComment", lambda w: comment(w, text="t" * 4001), "text"),
    Case("comment_item_unknown", "AddComment", lambda w: comment(w, item_id="mth-9"), "item_id"),
    Case("comment_reply_format", "AddComment", lambda w: comment(w, reply_to="{}"), "reply_to"),
    Case("comment_reply_unknown", "AddComment", lambda w: comment(w, reply_to="cmt_nope"), code=Code.NOT_FOUND),
    Case("comment_mention_unknown", "AddComment", lambda w: comment(w, mention_ids=["ghost"]), "mention_ids[0]"),
    Case("comment_mentions_21", "AddComment", lambda w: comment(w, mention_ids=[f"p{i}" for i in range(21)]),
         "mention_ids"),
    Case("comment_view_unknown", "AddComment", lambda w: comment(w, view=9), "view"),
    Case("comment_request_id_65", "AddComment", lambda w: comment(w, request_id="r" * 65), "request_id"),
    Case("comment_v2mom_unknown", "AddComment", lambda w: comment(w, v2mom_id="v2m_nope"), code=Code.NOT_FOUND),
    Case("comments_v2mom_missing", "ListComments", lambda w: goals_pb2.ListCommentsRequest(), "v2mom_id"),
    Case("comments_item_format", "ListComments",
         lambda w: goals_pb2.ListCommentsRequest(v2mom_id=w.published.id, item_id="a b"), "item_id"),
    Case("comments_page_size_201", "ListComments",
         lambda w: goals_pb2.ListCommentsRequest(v2mom_id=w.published.id, page_size=201), "page_size"),
    Case("comments_token_bad", "ListComments",
         lambda w: goals_pb2.ListCommentsRequest(v2mom_id=w.published.id, page_token="wrI="), "page_token"),
    Case("edit_comment_id_missing", "EditComment", lambda w: goals_pb2.EditCommentRequest(text="x"), "id"),
    Case("edit_comment_text_missing", "EditComment", lambda w: goals_pb2.EditCommentRequest(id="cmt_1"), "text"),
    Case("edit_comment_text_4001", "EditComment", lambda w: goals_pb2.EditCommentRequest(id="cmt_1", text="t" * 4001),
         "text"),
    Case("edit_comment_expected_negative", "EditComment",
         lambda w: goals_pb2.EditCommentRequest(id="cmt_1", text="x", expected_revision=-1), "expected_revision"),
    Case("edit_comment_unknown", "EditComment", lambda w: goals_pb2.EditCommentRequest(id="cmt_1", text="x"),
         code=Code.NOT_FOUND),
    Case("delete_comment_id_missing", "DeleteComment", lambda w: goals_pb2.DeleteCommentRequest(), "id"),
    Case("delete_comment_id_format", "DeleteComment", lambda w: goals_pb2.DeleteCommentRequest(id="../x"), "id"),
    Case("delete_comment_unknown", "DeleteComment", lambda w: goals_pb2.DeleteCommentRequest(id="cmt_1"),
         code=Code.NOT_FOUND),
    # GetAlignmentTree
    Case("export_unit_missing", "ExportV2MOMs", lambda w: goals_pb2.ExportV2MOMsRequest(cycle_id=w.c1), "org_unit_id"),
    Case("export_cycle_format", "ExportV2MOMs", lambda w: goals_pb2.ExportV2MOMsRequest(org_unit_id="eng", cycle_id="a/b"),
         "cycle_id"),
    Case("export_unit_unknown", "ExportV2MOMs", lambda w: goals_pb2.ExportV2MOMsRequest(org_unit_id="nowhere", cycle_id=w.c1),
         code=Code.NOT_FOUND),
    Case("tree_id_missing", "GetAlignmentTree", lambda w: goals_pb2.GetAlignmentTreeRequest(), "id"),
    Case("tree_depth_negative", "GetAlignmentTree", lambda w: goals_pb2.GetAlignmentTreeRequest(id=w.dept.id, max_depth=-1),
         "max_depth"),
    Case("tree_depth_11", "GetAlignmentTree", lambda w: goals_pb2.GetAlignmentTreeRequest(id=w.dept.id, max_depth=11),
         "max_depth"),
    Case("tree_unknown", "GetAlignmentTree", lambda w: goals_pb2.GetAlignmentTreeRequest(id="v2m_nope"), code=Code.NOT_FOUND),
    # ListRevisions / LintV2MOM
    Case("revisions_id_missing", "ListRevisions", lambda w: goals_pb2.ListRevisionsRequest(), "v2mom_id"),
    Case("revisions_unknown", "ListRevisions", lambda w: goals_pb2.ListRevisionsRequest(v2mom_id="v2m_nope"),
         code=Code.NOT_FOUND),
    Case("lint_id_format", "LintV2MOM", lambda w: goals_pb2.LintV2MOMRequest(id="not valid"), "id"),
    Case("lint_unknown", "LintV2MOM", lambda w: goals_pb2.LintV2MOMRequest(id="v2m_nope"), code=Code.NOT_FOUND),
    # Cycles
    Case("cycle_not_admin", "CreateCycle", lambda w: goals_pb2.CreateCycleRequest(cycle=cycle("C9", 2090)),
         code=Code.PERMISSION_DENIED),
    Case("cycle_id_missing", "CreateCycle", lambda w: goals_pb2.CreateCycleRequest(cycle=cycle("", 2090)), "cycle.id",
         caller=ADMIN),
    Case("cycle_id_33", "CreateCycle", lambda w: goals_pb2.CreateCycleRequest(cycle=cycle("C" * 33, 2090)), "cycle.id",
         caller=ADMIN),
    Case("cycle_bad_date", "CreateCycle", lambda w: goals_pb2.CreateCycleRequest(
        cycle=common_pb2.Cycle(id="C9", start_date=d(2090, 2, 30), end_date=d(2091, 1, 31))), "cycle.start_date",
         caller=ADMIN),
    Case("cycle_quarters_5", "CreateCycle", lambda w: goals_pb2.CreateCycleRequest(cycle=cycle("C9", 2090, quarters=5)),
         "cycle.quarters", caller=ADMIN),
    Case("cycle_quarters_overlap", "CreateCycle", lambda w: goals_pb2.CreateCycleRequest(
        cycle=cycle("C9", 2090, quarters=2, overlap=True)), "cycle.quarters[1].start_date", caller=ADMIN),
    Case("cycle_update_mask", "UpdateCycle", lambda w: goals_pb2.UpdateCycleRequest(
        cycle=common_pb2.Cycle(id=w.c1), update_mask=mask("close_time")), "update_mask", caller=ADMIN),
    Case("cycle_update_id", "UpdateCycle", lambda w: goals_pb2.UpdateCycleRequest(update_mask=mask("quarters")),
         "cycle.id", caller=ADMIN),
    Case("current_cycle_time", "GetCurrentCycle", lambda w: goals_pb2.GetCurrentCycleRequest(
        time={"seconds": 2**62}), "time"),
    Case("close_reason", "CloseCycle", lambda w: goals_pb2.CloseCycleRequest(
        cycle_id=w.c1, next_cycle=common_pb2.Cycle(id=w.c2)), "reason", caller=ADMIN),
    Case("close_not_admin", "CloseCycle", lambda w: goals_pb2.CloseCycleRequest(
        cycle_id=w.c1, reason="r", next_cycle=common_pb2.Cycle(id=w.c2)), code=Code.PERMISSION_DENIED),
    # CopyV2MOM / WithdrawSubmission
    Case("copy_source_missing", "CopyV2MOM", lambda w: goals_pb2.CopyV2MOMRequest(cycle_id=w.c2), "source_id"),
    Case("copy_same_cycle", "CopyV2MOM", lambda w: goals_pb2.CopyV2MOMRequest(source_id=w.draft.id, cycle_id=w.c1),
         "cycle_id"),
    Case("copy_101_omitted", "CopyV2MOM", lambda w: goals_pb2.CopyV2MOMRequest(
        source_id=w.draft.id, cycle_id=w.c2, omit_item_ids=[f"i{n}" for n in range(101)]), "omit_item_ids"),
    Case("copy_final_inf", "CopyV2MOM", lambda w: goals_pb2.CopyV2MOMRequest(
        source_id=w.draft.id, cycle_id=w.c2, final_values=[goals_pb2.MeasureFinalValue(measure_id="m", value=math.inf)]),
         "final_values[0].value"),
    Case("withdraw_id_missing", "WithdrawSubmission", lambda w: goals_pb2.WithdrawSubmissionRequest(), "id"),
    Case("withdraw_draft", "WithdrawSubmission", lambda w: goals_pb2.WithdrawSubmissionRequest(id=w.draft.id),
         code=Code.FAILED_PRECONDITION),
    # Templates
    Case("templates_level_unknown", "ListTemplates", lambda w: goals_pb2.ListTemplatesRequest(level=9), "level"),
    Case("template_get_unknown", "GetTemplate", lambda w: goals_pb2.GetTemplateRequest(id="nope"), code=Code.NOT_FOUND),
    Case("template_create_not_admin", "CreateTemplate", lambda w: goals_pb2.CreateTemplateRequest(
        template=goals_pb2.Template(id="t", name="T", level=TEAM)), code=Code.PERMISSION_DENIED),
    Case("template_create_no_level", "CreateTemplate", lambda w: goals_pb2.CreateTemplateRequest(
        template=goals_pb2.Template(id="t", name="T")), "template.level", caller=ADMIN),
    Case("template_update_mask", "UpdateTemplate", lambda w: goals_pb2.UpdateTemplateRequest(
        template=goals_pb2.Template(id="t"), update_mask=mask("revision")), "update_mask", caller=ADMIN),
    Case("template_delete_unknown", "DeleteTemplate", lambda w: goals_pb2.DeleteTemplateRequest(id="nope"),
         code=Code.NOT_FOUND, caller=ADMIN),
    Case("create_template_unknown", "CreateV2MOM", lambda w: create(w, content=goals_pb2.V2MOMContent(), template_id="nope"),
         "template_id"),
    Case("create_template_and_content", "CreateV2MOM", lambda w: create(w, template_id="any"), "template_id"),
    # Directory
    Case("person_id_missing", "GetPerson", lambda w: goals_pb2.GetPersonRequest(), "id"),
    Case("person_id_format", "GetPerson", lambda w: goals_pb2.GetPersonRequest(id="olive\n"), "id"),
    Case("person_unknown", "GetPerson", lambda w: goals_pb2.GetPersonRequest(id="ghost"), code=Code.NOT_FOUND),
    Case("people_unit_format", "ListPeople", lambda w: goals_pb2.ListPeopleRequest(org_unit_id="a/b"), "org_unit_id"),
    Case("people_manager_format", "ListPeople", lambda w: goals_pb2.ListPeopleRequest(manager_id="m" * 65), "manager_id"),
    Case("unit_id_missing", "GetOrgUnit", lambda w: goals_pb2.GetOrgUnitRequest(), "id"),
    Case("unit_unknown_get", "GetOrgUnit", lambda w: goals_pb2.GetOrgUnitRequest(id="nowhere"), code=Code.NOT_FOUND),
    Case("units_parent_format", "ListOrgUnits", lambda w: goals_pb2.ListOrgUnitsRequest(parent_id="{}"), "parent_id"),
]
for _rpc in PAGED:
    for _size in (-1, 201, -(2**31)):
        CASES.append(Case(f"{_rpc}_page_size_{_size}", _rpc, paged(_rpc, page_size=_size), "page_size"))
    for _name, _token in BAD_TOKENS.items():
        CASES.append(Case(f"{_rpc}_token_{_name}", _rpc, paged(_rpc, page_token=_token), "page_token"))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_request_is_refused_cleanly(goals, world, case):
    before = world.snapshot()
    fields = (case.field,) if case.field else ()
    expect(getattr(goals.client(case.caller), case.rpc), case.build(world), case.code, *fields)
    assert world.snapshot() == before


def test_every_rpc_has_validation_cases():
    rpcs = set(goals_pb2.DESCRIPTOR.services_by_name["GoalService"].methods_by_name) - {"ListCycles"}  # takes nothing
    assert {c.rpc for c in CASES} == rpcs


def test_unknown_ids_in_list_filters_match_nothing(goals, world):
    client = goals.client(OWNER)
    assert list(client.ListV2MOMs(goals_pb2.ListV2MOMsRequest(owner_id="ghost")).v2moms) == []
    assert list(client.ListV2MOMs(goals_pb2.ListV2MOMsRequest(cycle_id="FY1999")).v2moms) == []
    assert list(client.ListPeople(goals_pb2.ListPeopleRequest(org_unit_id="nowhere")).people) == []
    assert list(client.ListOrgUnits(goals_pb2.ListOrgUnitsRequest(parent_id="nowhere")).org_units) == []


# --- links are checked against the whole V2MOM after the edit -------------------------------------------------


def test_an_edit_of_methods_may_link_values_it_did_not_resend(goals):
    v2mom = goals.create(cycle_id=goals.new_cycle())
    methods = list(valid_content().methods)
    methods[0].title = "Ship the new invoice pipeline by Q3"
    request = goals_pb2.UpdateV2MOMRequest(
        v2mom=goals_pb2.V2MOM(id=v2mom.id, content=goals_pb2.V2MOMContent(methods=methods)), update_mask=mask("content.methods"))
    updated = goals.client(OWNER).UpdateV2MOM(request)
    assert updated.content.methods[0].title == "Ship the new invoice pipeline by Q3"
    assert [v.id for v in updated.content.values] == ["val-customers", "val-quality", "val-openness"]


def test_an_edit_of_values_must_not_strand_method_links(goals):
    v2mom = goals.create(cycle_id=goals.new_cycle())
    values = [v for v in valid_content().values if v.id != "val-openness"]  # methods[2] links it
    request = goals_pb2.UpdateV2MOMRequest(
        v2mom=goals_pb2.V2MOM(id=v2mom.id, content=goals_pb2.V2MOMContent(values=values)), update_mask=mask("content.values"))
    before = goals.raw(v2mom.id)
    expect(goals.client(OWNER).UpdateV2MOM, request, Code.INVALID_ARGUMENT, "v2mom.content.methods[2].value_ids")
    assert goals.raw(v2mom.id) == before


def test_an_archived_parent_is_refused(goals):
    cycle_id = goals.new_cycle()
    parent = goals.published(owner=MANAGER, approver=SKIP, level=TEAM, org_unit_id="platform", cycle_id=cycle_id,
                             content=valid_content(MANAGER))  # published, so olive can see it
    goals.client(MANAGER).ArchiveV2MOM(goals_pb2.ArchiveV2MOMRequest(id=parent.id))
    expect(goals.client(OWNER).CreateV2MOM, goals_pb2.CreateV2MOMRequest(
        level=INDIVIDUAL, cycle_id=cycle_id, parent_id=parent.id), Code.FAILED_PRECONDITION)
    assert goals.v2mom_count(cycle_id=cycle_id) == 1


# --- sizes beyond the per-field limits ------------------------------------------------------------------------


def test_a_request_over_the_message_limit_is_refused_before_the_service(goals):
    cycle_id = goals.new_cycle()
    request = goals_pb2.CreateV2MOMRequest(level=INDIVIDUAL, cycle_id=cycle_id,
                                           content=goals_pb2.V2MOMContent(vision="x" * (5 * 1024 * 1024)))
    error = rpc_error(goals.client(OWNER).CreateV2MOM, request)
    assert error.code() == Code.RESOURCE_EXHAUSTED
    assert_clean(error)
    assert goals.v2mom_count(cycle_id=cycle_id) == 0


def test_hundreds_of_violations_still_arrive_as_invalid_argument(goals):
    """Every method names 20 unknown people: the answer must fit in gRPC trailers, not turn into INTERNAL."""
    content = valid_content()
    _more(content.methods, 20, "mth-x", _method)
    for i, method in enumerate(content.methods):
        method.value_ids[:] = [f"value{i:02d}{j}".ljust(64, "v") for j in range(5)]
        method.responsible_ids[:] = [f"ghost{i:02d}{j:02d}".ljust(64, "g") for j in range(20)]
    cycle_id = goals.new_cycle()
    error = expect(goals.client(OWNER).CreateV2MOM, goals_pb2.CreateV2MOMRequest(
        level=INDIVIDUAL, cycle_id=cycle_id, content=content), Code.INVALID_ARGUMENT)
    # Well under gRPC's 8 KiB soft limit on metadata, past which calls fail at random.
    assert len(rpc_status.from_call(error).SerializeToString()) < 6000
    fields = [f for f, _ in field_violations(error)]
    assert fields[0] == "content.methods[0].value_ids"
    assert 10 <= len(fields) <= 25 and "more" in field_violations(error)[-1][1]  # capped, and says so
    assert goals.v2mom_count(cycle_id=cycle_id) == 0


# --- whatever arrives, never INTERNAL ---------------------------------------------------------------------------

NASTY_STRINGS = [
    " ", "\x00", "\t\n", "$gt", "{\"$ne\": null}", "../../etc/passwd", "' OR 1=1 --", "é" * 65, "💥" * 10,
    "a" * 65, "v2m_\n", "%s%s%n", "<script>alert(1)</script>", "\u202e", "A" * 70_000,
]
NASTY_INTS = [2**31 - 1, -(2**31)]


def _scalar_fields(message):
    for field in message.DESCRIPTOR.fields:
        if not field.is_repeated and field.type in (field.TYPE_STRING, field.TYPE_INT32, field.TYPE_INT64,
                                                                    field.TYPE_ENUM):
            yield field


def test_no_input_ever_gets_internal(goals, world):
    """Each top-level field of each request alone gets each nasty value, from an admin who may do anything."""
    admin = goals.client(ADMIN)
    service = goals_pb2.DESCRIPTOR.services_by_name["GoalService"]
    before = world.snapshot()
    tried = 0
    for method in service.methods:
        request_class = getattr(goals_pb2, method.input_type.name)
        for field in _scalar_fields(request_class()):
            values = NASTY_STRINGS if field.type == field.TYPE_STRING else NASTY_INTS
            for value in values:
                if field.type == field.TYPE_INT64:
                    value = value * 2**32
                request = request_class(**{field.name: value})
                try:
                    getattr(admin, method.name)(request)
                except grpc.RpcError as error:
                    assert_clean(error)
                tried += 1
    assert tried > 300
    assert world.snapshot() == before
