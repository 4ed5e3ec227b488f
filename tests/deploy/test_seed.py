"""The demo organisation: its shape, its V2MOMs in every state, and that seeding twice changes nothing."""

from collections import Counter
from datetime import UTC, datetime

import grpc

from deploy.demo.goals import Org, load_org
from deploy.demo.goals_seed import seed, seed_directory
from services.goals.directory import INDEXES as DIRECTORY_INDEXES, Directory
from services.goals.directory_sync import DirectorySync
from services.goals.repository import V2MOMRepository
from services.platform.api.auth import bearer_metadata, mint_dev_token
from services.platform.store.mongo import ensure_indexes
from deploy.demo.calendar import current_cycle, utc_today
from tests.support.cli import demo_name
from v2mom.v1 import common_pb2, goals_pb2, goals_pb2_grpc

ALL_STATES = {"V2MOM_STATE_DRAFT", "V2MOM_STATE_SUBMITTED", "V2MOM_STATE_CHANGES_REQUESTED",
              "V2MOM_STATE_PUBLISHED", "V2MOM_STATE_ARCHIVED"}


def history(db, v2mom_id: str) -> list[dict]:
    """A V2MOM's history entries, oldest first (goals keeps them in their own collection)."""
    return V2MOMRepository(db).history(v2mom_id, 0, 1000)


def snapshot(db) -> dict:
    """Everything a second run could touch: each V2MOM's revision and history, directory records, pending events."""
    v2moms = {d["_id"]: (d["revision"], len(history(db, d["_id"])), d["state"]) for d in db.v2moms.find()}
    people = {d["_id"]: d["updated_at"] for d in db.people.find()}
    units = {d["_id"]: d["updated_at"] for d in db.org_units.find()}
    events = sum(len(d.get("outbox", [])) for name in ("v2moms", "people", "org_units") for d in db[name].find())
    return {"v2moms": v2moms, "people": people, "units": units, "cycles": list(db.cycles.find()), "events": events}


def test_seeding_twice_changes_nothing(settings, db, goals_api):
    address = f"127.0.0.1:{goals_api.port}"
    first = seed(settings, goals_api_address=address, progress=False)
    assert first.v2moms_created == first.v2moms == 22
    assert first.steps_run > first.v2moms  # the lifecycle really ran through the API
    before = snapshot(db)
    assert before["events"] > 0

    second = seed(settings, goals_api_address=address, progress=False)

    assert not second.changed, second.summary()
    assert (second.v2moms_created, second.steps_run, second.directory_changes) == (0, 0, 0)
    assert second.left_alone == []
    assert snapshot(db) == before


def test_a_v2mom_changed_by_hand_is_left_as_it_is(settings, db, goals_api):
    address = f"127.0.0.1:{goals_api.port}"
    seed(settings, goals_api_address=address, progress=False)
    # Li Wei's demo V2MOM waits for Priya; she sends it back, off script.
    li_wei = db.v2moms.find_one({"owner_id": "li.wei"})
    goals_api("priya.raman").RequestChanges(goals_pb2.RequestChangesRequest(id=li_wei["_id"], reason="Add dates"))

    report = seed(settings, goals_api_address=address, progress=False)

    assert report.left_alone == [demo_name("fy27-li.wei")]
    assert not report.changed
    assert db.v2moms.find_one({"_id": li_wei["_id"]})["state"] == "V2MOM_STATE_CHANGES_REQUESTED"


def test_the_org_has_a_ceo_three_departments_eight_teams_and_sixty_people(seeded_goals):
    db = seeded_goals.db
    levels = Counter(u["level"] for u in db.org_units.find())
    assert levels == {"ORG_LEVEL_COMPANY": 1, "ORG_LEVEL_DEPARTMENT": 3, "ORG_LEVEL_TEAM": 8}
    people = {p["_id"]: p for p in db.people.find()}
    assert len(people) == 60
    assert all(p["email"] == f"{p['_id']}@acmerobotics.example" for p in people.values())

    units = {u["_id"]: u for u in db.org_units.find()}
    ceo = units["acme"]["leader_id"]
    assert people[ceo]["manager_id"] is None
    for unit in units.values():
        leader = people[unit["leader_id"]]
        expected_manager = units[unit["parent_id"]]["leader_id"] if unit["parent_id"] else None
        assert leader["manager_id"] == expected_manager, unit["_id"]
        assert leader["org_unit_id"] == unit["_id"]

    admins = [p for p in people.values() if "admin" in p["roles"]]
    assert admins and ceo not in {a["_id"] for a in admins}
    assert any("hr" in p["roles"] for p in people.values())
    # Last year's cycle and the running one, which holds today (tests/deploy/test_demo_calendar.py pins their dates).
    cycles = {c["_id"]: (c["start_date"], c["end_date"]) for c in db.cycles.find()}
    assert cycles == {c["id"]: (c["start"], c["end"]) for c in load_org().cycles} and len(cycles) == 2
    start, end = cycles[current_cycle()]
    assert start <= utc_today().isoformat() <= end


def test_every_state_is_there_with_a_true_history(seeded_goals):
    docs = {d["content"]["title"]: d for d in seeded_goals.db.v2moms.find()}
    assert {d["state"] for d in docs.values()} == ALL_STATES
    reopened = docs[demo_name("Engineering FY2027")]
    assert reopened["state"] == "V2MOM_STATE_DRAFT" and reopened["published_revision"] == 3

    sales = [(h["action"], h["actor_id"]) for h in history(seeded_goals.db, docs[demo_name("Sales FY2027")]["_id"])]
    assert sales == [
        ("CREATE", "marcus.bell"), ("SUBMIT", "marcus.bell"), ("REQUEST_CHANGES", "helena.vasquez"),
        ("UPDATE", "marcus.bell"), ("SUBMIT", "marcus.bell"), ("APPROVE", "helena.vasquez"),
    ]
    company = docs[demo_name("Acme Robotics FY2027")]
    approver = history(seeded_goals.db, company["_id"])[-1]["actor_id"]
    assert approver != company["owner_id"] and "admin" in seeded_goals.db.people.find_one({"_id": approver})["roles"]
    assert docs[demo_name("Acme Robotics FY2026")]["state"] == "V2MOM_STATE_ARCHIVED"
    assert docs[demo_name("Li Wei FY2027")]["approver_id"] == "priya.raman"


def test_published_v2moms_follow_the_guidance(seeded_goals):
    for doc in seeded_goals.db.v2moms.find({"published_revision": {"$gt": 0}}):
        content = doc["published"]["content"]
        title = content["title"]
        assert 3 <= len(content["values"]) <= 5, title
        assert 5 <= len(content["methods"]) <= 8, title
        assert sum(m["weight"] for m in content["methods"]) == 100, title
        assert all(m["owner_id"] and m["accountable_id"] and m["due_date"] for m in content["methods"]), title
        assert content["obstacles"], title
        assert all(m["baseline"] is not None and m["target"] is not None and m["unit"] for m in content["measures"]), title


def test_the_company_v2mom_aligns_down_to_individuals(seeded_goals):
    channel = grpc.insecure_channel(seeded_goals.address)
    stub = goals_pb2_grpc.GoalServiceStub(channel)
    ceo = bearer_metadata(mint_dev_token(seeded_goals.settings.auth, "helena.vasquez"))
    company = seeded_goals.db.v2moms.find_one({"level": "ORG_LEVEL_COMPANY", "cycle_id": current_cycle()})

    tree = stub.GetAlignmentTree(goals_pb2.GetAlignmentTreeRequest(id=company["_id"]), metadata=ceo, timeout=10)
    channel.close()

    levels_by_depth: dict[int, set] = {}

    def walk(node, depth):
        levels_by_depth.setdefault(depth, set()).add(node.level)
        for child in node.children:
            walk(child, depth + 1)

    walk(tree, 0)
    assert levels_by_depth[0] == {common_pb2.ORG_LEVEL_COMPANY}
    assert levels_by_depth[1] == {common_pb2.ORG_LEVEL_DEPARTMENT}
    assert levels_by_depth[2] == {common_pb2.ORG_LEVEL_TEAM}
    assert levels_by_depth[3] == {common_pb2.ORG_LEVEL_INDIVIDUAL}
    assert sum(1 for _ in seeded_goals.db.v2moms.find({"level": "ORG_LEVEL_INDIVIDUAL"})) == 8


def test_the_demo_cascades_methods_with_its_deliberate_gaps(seeded_goals):
    """Departments and teams name the parent methods they carry out; what nobody carries is the demo's
    deliberate gaps: the company's monthly safety review (no department took it up) and the departments' own
    hiring methods (People's Talent team does that work, in another branch of the tree)."""
    channel = grpc.insecure_channel(seeded_goals.address)
    stub = goals_pb2_grpc.GoalServiceStub(channel)
    ceo = bearer_metadata(mint_dev_token(seeded_goals.settings.auth, "helena.vasquez"))
    company = seeded_goals.db.v2moms.find_one({"level": "ORG_LEVEL_COMPANY", "cycle_id": current_cycle()})
    tree = stub.GetAlignmentTree(goals_pb2.GetAlignmentTreeRequest(id=company["_id"], max_depth=1), metadata=ceo,
                                 timeout=10)

    assert list(tree.unsupported_method_ids) == ["mth-review-every-field-safety-event-within-7-days-every-mont"]
    assert len(tree.methods) == 6 and sum(1 for m in tree.methods if m.supported_by) == 5
    r3 = next(m for m in tree.methods if m.method_id == "mth-launch-the-r3-picker-with-8-hour-runtime-and-auto-dockin")
    assert {s.method_id for s in r3.supported_by} == {
        "mth-deliver-r3-auto-docking-and-8-hour-runtime-to-ga-by-30-s",
        "mth-qualify-a-second-battery-cell-supplier-by-june", "mth-run-90-of-release-checks-in-simulation-by-october"}
    # One level down the tree was not read: no department's methods are judged.
    assert all(not child.unsupported_method_ids for child in tree.children)

    by_title = {}
    for department in tree.children:
        node = stub.GetAlignmentTree(goals_pb2.GetAlignmentTreeRequest(id=department.id, max_depth=1), metadata=ceo,
                                     timeout=10)
        by_title[node.title] = list(node.unsupported_method_ids)
    # People's own methods carry out no company method: lint says so, as advice.
    people = next(child for child in tree.children if child.org_unit_id == "people")
    lint = stub.LintV2MOM(goals_pb2.LintV2MOMRequest(id=people.id), metadata=ceo, timeout=10)
    channel.close()
    assert sorted(f.field_path for f in lint.findings if f.code == "method.supports_nothing") == [
        "content.methods[2].supports", "content.methods[3].supports", "content.methods[4].supports"]
    assert by_title == {
        demo_name("Engineering FY2027"): ["mth-hire-22-engineers-through-a-structured-interview-loop"],
        demo_name("Sales FY2027"): ["mth-hire-8-account-executives-and-have-each-one-selling-with"],
        demo_name("People FY2027"): [],
    }


def test_seed_serves_the_api_itself_when_given_only_a_database(db):
    report = seed(db, progress=False)
    assert report.v2moms_created == 22
    assert db.v2moms.count_documents({}) == 22


def test_the_seed_resolves_a_manager_and_a_leader_an_hris_named_before_it_wrote_them(db):
    """A path that writes people without the directory use case still settles what waited on them."""
    ensure_indexes(db, DIRECTORY_INDEXES)  # goals-api's, which the seed writes beside
    sync, now = DirectorySync(Directory(db, 0)), datetime.now(UTC)
    sync.upsert_org_unit({"kind": "unit", "external_id": "lab", "id": "lab", "effective_at": now,
                          "fields": {"name": "Lab", "level": "ORG_LEVEL_TEAM", "parent_ref": "",
                                     "leader_ref": "dana"}})
    sync.upsert_person({"kind": "person", "external_id": "E-9", "id": "erin", "effective_at": now,
                        "fields": {"display_name": "Erin", "email": "erin@acme.test", "org_unit_ref": "lab",
                                   "manager_ref": "dana"}})
    org = Org(cycles=[], units=[], people=[{"_id": "dana", "display_name": "Dana", "email": "dana@acme.test",
                                            "title": "Lead", "manager_id": "", "org_unit_id": "lab", "roles": []}])

    assert seed_directory(Directory(db, 0), org) == 1

    unit, erin = db.org_units.find_one({"_id": "lab"}), db.people.find_one({"_id": "erin"})
    assert (unit["leader_id"], unit["pending_leader"]) == ("dana", None)
    assert (erin["manager_id"], erin["pending_manager"]) == ("dana", None)
    assert seed_directory(Directory(db, 0), org) == 0
