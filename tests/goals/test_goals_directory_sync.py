"""DirectoryService over gRPC, and directory sync's convergence: identity on the HRIS id, effective times,
pending managers, cycles, future-dated changes, imports and orphans (services/goals/directory_sync.py)."""

import random
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.goals.directory import Directory
from services.goals.directory_sync import DirectorySync
from services.platform.api.auth import bearer_metadata, mint_dev_token
from tests.support.directory import directory_caller, hire
from tests.support.goals import ADMIN, MANAGER, OWNER, TEAM, build_org
from v2mom.v1 import common_pb2, directory_pb2, directory_pb2_grpc

D = directory_pb2
TERMINATED = common_pb2.EMPLOYMENT_STATUS_TERMINATED


@pytest.fixture
def hr(goals):
    """A DirectoryService client for an admin (admins and HR may write)."""
    return directory_caller(goals, ADMIN, timeout=15)


def test_only_hr_or_admin_may_write_and_the_service_is_health_checked(goals):
    stub = directory_pb2_grpc.DirectoryServiceStub(goals.channel)
    request = D.UpsertPersonRequest(person=hire(f"e{uuid.uuid4().hex[:8]}"))
    with pytest.raises(grpc.RpcError) as refused:
        stub.UpsertPerson(request, metadata=bearer_metadata(mint_dev_token(goals.settings.auth, OWNER)))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with goals.roles(MANAGER, ["hr"]):
        answer = stub.UpsertPerson(request, metadata=bearer_metadata(mint_dev_token(goals.settings.auth, MANAGER)))
    assert answer.outcome == D.CHANGE_OUTCOME_CREATED
    health = health_pb2_grpc.HealthStub(goals.channel).Check(
        health_pb2.HealthCheckRequest(service="v2mom.v1.DirectoryService"))
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_identity_is_the_external_id_so_a_new_email_or_a_rehire_keeps_the_record(hr, goals):
    key = f"e{uuid.uuid4().hex[:8]}"
    created = hr("UpsertPerson", D.UpsertPersonRequest(person=hire(key, manager="lee", title="Engineer")))
    assert created.outcome == D.CHANGE_OUTCOME_CREATED and created.person.manager_id == "lee"
    renamed = hr("UpsertPerson", D.UpsertPersonRequest(person=hire(key, manager="lee", email=f"new.{key}@acme.test",
                                                                   id="someone-else")))
    assert renamed.outcome == D.CHANGE_OUTCOME_CHANGED and renamed.person.id == created.person.id
    gone = hr("DeactivatePerson", D.DeactivatePersonRequest(ref=key))
    assert not gone.person.active and gone.person.employment_status == TERMINATED and gone.person.end_date.year
    back = hr("UpsertPerson", D.UpsertPersonRequest(person=hire(key, manager="lee", email=f"new.{key}@acme.test")))
    assert back.person.id == created.person.id and back.person.active
    assert goals.db.people.count_documents({"external_id": key}) == 1


def test_bad_fields_are_invalid_argument_and_unknown_references_a_precondition(hr):
    with pytest.raises(grpc.RpcError) as bad:
        hr("UpsertPerson", D.UpsertPersonRequest(person=hire("e-tz", time_zone="Mars/Olympus_Mons")))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "IANA" in bad.value.details()
    with pytest.raises(grpc.RpcError) as unknown:
        hr("UpsertPerson", D.UpsertPersonRequest(person=hire("e-unit", unit="no-such-unit")))
    assert unknown.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as missing:
        hr("DeactivatePerson", D.DeactivatePersonRequest(ref="nobody-at-all"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_manager_named_before_they_exist_is_pending_until_they_arrive_and_a_cycle_is_refused(hr, goals):
    boss, report = f"b{uuid.uuid4().hex[:8]}", f"r{uuid.uuid4().hex[:8]}"
    waiting = hr("UpsertPerson", D.UpsertPersonRequest(person=hire(report, manager=boss)))
    assert waiting.person.manager_id == "" and waiting.person.pending_manager_external_id == boss
    with pytest.raises(grpc.RpcError) as cycle:
        hr("UpsertPerson", D.UpsertPersonRequest(person=hire(boss, manager=report)))
    assert cycle.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "cycle" in cycle.value.details()
    hr("UpsertPerson", D.UpsertPersonRequest(person=hire(boss, manager="lee")))
    resolved = goals.db.people.find_one({"external_id": report})
    assert resolved["manager_id"] == f"p-{boss}" and not resolved.get("pending_manager")


def test_an_older_change_is_ignored_and_a_future_one_waits_for_its_date(hr, goals):
    key, now = f"e{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    hr("UpsertPerson", D.UpsertPersonRequest(person=hire(key, title="Lead", at=now)))
    late = hr("UpsertPerson", D.UpsertPersonRequest(person=hire(key, title="Intern", at=now - timedelta(days=1))))
    assert late.outcome == D.CHANGE_OUTCOME_STALE and late.person.title == "Lead"
    later = hr("UpsertPerson", D.UpsertPersonRequest(person=hire(key, title="Director", at=now + timedelta(days=3))))
    assert later.outcome == D.CHANGE_OUTCOME_SCHEDULED
    assert goals.db.people.find_one({"external_id": key})["title"] == "Lead"
    sync = DirectorySync(Directory(goals.db, 0), clock=lambda: now + timedelta(days=4))
    assert sync.apply_due() >= 1
    assert goals.db.people.find_one({"external_id": key})["title"] == "Director"


def _feed(prefix: str) -> list[dict]:
    """Changes to three people over a week, some dated alike, as a feed would send them."""
    start = datetime(2026, 3, 1, tzinfo=UTC)
    changes = []
    for day in range(6):
        for n in range(3):
            fields = {"display_name": f"P{n} v{day % 4}", "email": f"{prefix}{n}@acme.test",
                      "title": random.choice(["A", "B", "C"]), "manager_ref": f"{prefix}0" if n else "ceo",
                      "org_unit_ref": random.choice(["platform", "mobile"]), "time_zone": "", "locale": "",
                      "employment_status": random.choice(["ACTIVE", "ON_LEAVE", "TERMINATED"]), "start_date": "",
                      "end_date": ""}
            changes.append({"kind": "person", "external_id": f"{prefix}{n}", "id": f"{prefix}{n}",
                            "fields": fields, "effective_at": start + timedelta(days=day // 2)})
    return changes


def _state(db) -> list[dict]:
    ignore = {"revision", "updated_at", "outbox", "outbox_pending", "versions"}
    people = db.people.find({"external_id": {"$exists": True}}).sort("external_id", 1)
    return [{k: v for k, v in person.items() if k not in ignore} for person in people]


def test_shuffled_and_duplicated_feeds_converge_on_one_state(goals):
    random.seed(10)
    feed = _feed("x-")
    states = []
    for run in range(4):
        db = goals.db.client[f"goals_converge_{uuid.uuid4().hex[:10]}"]
        try:
            sync = DirectorySync(build_org(db), clock=lambda: datetime(2026, 4, 1, tzinfo=UTC))
            sent = feed + random.sample(feed, len(feed) // 2)  # duplicates
            random.shuffle(sent)
            for change in sent:
                sync.upsert_person(change)
            states.append(_state(db))
        finally:
            goals.db.client.drop_database(db.name)
    assert len(states[0]) == 3 and states[0][1]["manager_id"] == "x-0"
    assert all(state == states[0] for state in states[1:]), "every order and repetition ends the same"


def test_import_refuses_a_bad_batch_whole_and_a_dry_run_writes_nothing(hr, goals):
    a, b, c = (f"i{uuid.uuid4().hex[:8]}" for _ in range(3))
    bad = D.ImportDirectoryRequest(people=[hire(a, manager=b), hire(b, manager=a), hire(c, manager="ghost-boss"),
                                           hire(f"{c}x", email=f"{a}@acme.test")])
    answer = hr("ImportDirectory", bad)
    reasons = {(row.index, row.reason.split(" ")[0]) for row in answer.refused}
    assert {(0, "manager"), (1, "manager"), (2, "unknown"), (3, "duplicate")} <= reasons
    assert not answer.applied and goals.db.people.count_documents({"external_id": {"$in": [a, b, c]}}) == 0
    good = D.ImportDirectoryRequest(people=[hire(b, manager=a), hire(a, manager="lee"), hire(c, manager=a)],
                                    dry_run=True)
    dry = hr("ImportDirectory", good)
    assert [row.external_id for row in dry.created] == [b, a, c] and not dry.applied and not dry.refused
    assert goals.db.people.count_documents({"external_id": {"$in": [a, b, c]}}) == 0
    good.dry_run = False
    assert hr("ImportDirectory", good).applied
    assert goals.db.people.find_one({"external_id": b})["manager_id"] == f"p-{a}"
    moved = D.ImportDirectoryRequest(people=[hire(b, manager=a, unit="mobile"), hire(a, manager="lee"),
                                             hire(c, manager=a, title="Staff")], dry_run=True)
    again = hr("ImportDirectory", moved)
    assert [row.external_id for row in again.moved] == [b] and [row.external_id for row in again.changed] == [c]
    assert again.unchanged == 1


def test_list_orphans_names_the_v2moms_of_people_who_left_and_who_should_take_over(hr, goals, cycle):
    key = f"o{uuid.uuid4().hex[:8]}"
    hr("UpsertPerson", D.UpsertPersonRequest(person=hire(key, manager="lee", id=key)))
    v2mom = goals.create(owner=key, cycle_id=cycle)
    hr("DeactivatePerson", D.DeactivatePersonRequest(ref=key))
    orphans = hr("ListOrphans", D.ListOrphansRequest()).orphans
    mine = [o for o in orphans if o.v2mom_id == v2mom.id]
    assert [(o.kind, o.person_id, o.successor_id) for o in mine] == [(D.Orphan.KIND_OWNER_GONE, key, "lee")]


def test_a_termination_that_overtakes_the_hire_waits_for_the_person(goals):
    key, now = f"t{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    sync = DirectorySync(Directory(goals.db, 0))
    outcome, _ = sync.deactivate_person(key, "", now, keep_if_unknown=True)
    assert outcome == "SCHEDULED" and goals.db.people.count_documents({"external_id": key}) == 0
    hired = {"kind": "person", "external_id": key, "id": key, "effective_at": now - timedelta(days=30),
             "fields": {**{name: "" for name in ("email", "title", "manager_ref", "time_zone", "locale", "start_date",
                                                  "end_date")},
                        "display_name": "Late Hire", "org_unit_ref": "platform", "employment_status": "ACTIVE"}}
    outcome, person = sync.upsert_person(hired)
    assert outcome == "CREATED" and not person["active"] and person["employment_status"] == "TERMINATED"


def test_a_directory_id_held_by_another_employee_is_already_exists(hr):
    first, second = f"a{uuid.uuid4().hex[:8]}", f"a{uuid.uuid4().hex[:8]}"
    hr("UpsertPerson", D.UpsertPersonRequest(person=hire(first, id=f"taken-{first}")))
    with pytest.raises(grpc.RpcError) as taken:
        hr("UpsertPerson", D.UpsertPersonRequest(person=hire(second, id=f"taken-{first}")))
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_an_import_that_would_deactivate_many_stops_unless_allowed(isolated_goals):
    stub = directory_pb2_grpc.DirectoryServiceStub(isolated_goals.channel)
    metadata = bearer_metadata(mint_dev_token(isolated_goals.settings.auth, ADMIN))
    rows = [hire(f"m{n}", manager="lee") for n in range(3)]
    assert stub.ImportDirectory(D.ImportDirectoryRequest(people=rows), metadata=metadata).applied
    for row in rows:
        row.employment_status = TERMINATED
    with pytest.raises(grpc.RpcError) as stopped:
        stub.ImportDirectory(D.ImportDirectoryRequest(people=rows, dry_run=True), metadata=metadata)
    assert stopped.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "3 of 12" in stopped.value.details()
    allowed = stub.ImportDirectory(D.ImportDirectoryRequest(people=rows, allow_mass_deactivation=True),
                                   metadata=metadata)
    assert allowed.applied and len(allowed.deactivated) == 3
    assert isolated_goals.db.people.count_documents({"external_id": {"$in": ["m0", "m1", "m2"]}, "active": False}) == 3


def test_a_retired_unit_takes_no_new_v2mom_and_shows_its_live_ones_as_orphans(isolated_goals):
    stub = directory_pb2_grpc.DirectoryServiceStub(isolated_goals.channel)
    metadata = bearer_metadata(mint_dev_token(isolated_goals.settings.auth, ADMIN))
    team = isolated_goals.create(owner="mia", level=TEAM, org_unit_id="mobile")
    with pytest.raises(grpc.RpcError) as in_use:
        stub.RetireOrgUnit(D.RetireOrgUnitRequest(ref="mobile"), metadata=metadata)
    assert in_use.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "move them first" in in_use.value.details()
    for person_id in ("mia", "pete"):
        isolated_goals.directory.upsert_person({**isolated_goals.directory.person(person_id), "org_unit_id": "eng"})
    retired = stub.RetireOrgUnit(D.RetireOrgUnitRequest(ref="mobile"), metadata=metadata)
    assert retired.outcome == D.CHANGE_OUTCOME_CHANGED and retired.org_unit.retired
    with pytest.raises(grpc.RpcError) as refused:
        isolated_goals.create(owner="mia", level=TEAM, org_unit_id="mobile", as_person=ADMIN,
                              cycle_id=isolated_goals.new_cycle("2028-02-01", "2029-01-31"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "retired" in refused.value.details()
    orphans = stub.ListOrphans(D.ListOrphansRequest(), metadata=metadata).orphans
    assert [(o.kind, o.v2mom_id) for o in orphans] == [(D.Orphan.KIND_UNIT_RETIRED, team.id)]


def test_nobody_terminates_themselves_by_an_upsert_or_an_import(hr, goals):
    admin = goals.directory.person(ADMIN)
    me = hire(f"self-{uuid.uuid4().hex[:6]}", id=ADMIN, unit=admin["org_unit_id"], employment_status=TERMINATED)
    with pytest.raises(grpc.RpcError) as refused:
        hr("UpsertPerson", D.UpsertPersonRequest(person=me))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "yourself" in refused.value.details()
    answer = hr("ImportDirectory", D.ImportDirectoryRequest(people=[me]))
    assert not answer.applied and "yourself" in answer.refused[0].reason
    assert goals.directory.person(ADMIN)["active"]
