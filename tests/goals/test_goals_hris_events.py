"""HRIS events through RabbitMQ into the real goals-worker: hires, updates in any order, terminations and org
units apply to the directory; malformed or unappliable events are dead-lettered with their reason kept and
counted, and apply nothing (services/goals/hris.py)."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import kombu
import pytest

from services.goals.hris import REJECTED
from tests.support.broker import queue_exists
from tests.support.hris import publish
from tests.support.goals import build_org
from tests.support.processes import log_tail, wait_for

HANDLERS = {"employee.hired": "on_employee_hired", "employee.updated": "on_employee_updated",
            "employee.terminated": "on_employee_terminated", "org_unit.upserted": "on_org_unit_upserted",
            "org_unit.retired": "on_org_unit_retired"}
QUEUES = [f"evt-hris-{kind}--goals_worker.{handler}" for kind, handler in HANDLERS.items()]
HIRED_QUEUE = QUEUES[0]
BASE = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


def event(kind: str, data: dict, hours: int = 0, source: str = "/v2mom/hris") -> dict:
    return {"specversion": "1.0", "id": f"hris-{uuid.uuid4().hex}", "source": source, "type": kind,
            "time": (BASE + timedelta(hours=hours)).isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json", "data": data}


def employee(external_id: str, **fields) -> dict:
    return {"externalId": external_id, "id": f"user-{external_id}", "displayName": f"Employee {external_id}", "email": f"{external_id}@acme.test",
            "orgUnitRef": "platform", "managerRef": "lee", "timeZone": "Europe/Paris", **fields}


def test_hris_events_converge_and_bad_ones_are_dead_lettered_with_their_reason(db, connection, goals_worker):
    build_org(db)
    wait_for(lambda: all(queue_exists(connection, q) for q in QUEUES) or goals_worker.poll() is not None, 30,
             "goals-worker never declared its HRIS queues")
    assert goals_worker.poll() is None, log_tail(goals_worker)
    late_update = event("employee.updated", employee("E100", title="Old title"), hours=1)
    newest = event("employee.updated", employee("E100", title="Staff Engineer", locale="fr-FR"), hours=2)
    for envelope in (event("employee.hired", employee("E100")), newest, late_update, newest):
        publish(connection, envelope)
    bad_zone = event("employee.hired", employee("E200", timeZone="Nowhere/Land"))
    forged = event("employee.hired", employee("E300"), source="/v2mom/goals")
    publish(connection, bad_zone)
    publish(connection, forged)
    publish(connection, event("employee.terminated", {"externalId": "E100", "endDate": {"year": 2026, "month": 5,
                                                                                        "day": 3}}, hours=3))

    def settled():  # five queues, consumed concurrently: wait until every event has been applied, in any order
        person = db.people.find_one({"external_id": "E100"}) or {}
        return person if person.get("active") is False and person.get("title") == "Staff Engineer" else None
    erin = wait_for(settled, 30, "the feed never converged")
    assert (erin["_id"], erin["title"], erin["locale"], erin["manager_id"]) == ("user-E100", "Staff Engineer", "fr-FR", "lee")
    assert erin["end_date"] == "2026-05-03" and erin["employment_status"] == "TERMINATED"
    dlq = kombu.Queue(HIRED_QUEUE + ".dlq")(connection.channel())
    dead = [json.loads(wait_for(lambda: dlq.get(no_ack=True), message="nothing was dead-lettered").body)["id"]
            for _ in range(2)]
    assert sorted(dead) == sorted([bad_zone["id"], forged["id"]])
    kept = db[REJECTED].find_one({"_id": bad_zone["id"]})
    assert "IANA" in kept["reason"] and db[REJECTED].count_documents({}) == 1  # the forged one never reached sync
    assert db.people.count_documents({"external_id": {"$in": ["E200", "E300"]}}) == 0
    assert goals_worker.poll() is None, log_tail(goals_worker)


def test_a_termination_and_a_retirement_dated_in_their_data_apply_at_that_time(isolated_goals):
    # effectiveTime in data (not the CloudEvents time) decides; this path once failed on a bad import.
    from services.goals.directory import Directory
    from services.goals.directory_sync import DirectorySync
    from services.goals.hris import HrisEvents

    events = HrisEvents(DirectorySync(Directory(isolated_goals.db, 0)))
    assert events.apply(event("employee.hired", employee("E900"))) == "CREATED"
    gone = event("employee.terminated", {"externalId": "E900", "effectiveTime": "2026-05-02T09:00:00Z"}, hours=5)
    assert events.apply(gone) == "CHANGED"
    person = isolated_goals.db.people.find_one({"external_id": "E900"})
    assert (person["active"], person["end_date"]) == (False, "2026-05-02")
    isolated_goals.directory.upsert_org_unit({"_id": "empty", "name": "Empty", "level": "ORG_LEVEL_TEAM",
                                              "parent_id": "eng", "leader_id": ""})
    retired = event("org_unit.retired", {"externalId": "empty", "effectiveTime": "2026-05-02T09:00:00Z"})
    assert events.apply(retired) == "CHANGED" and isolated_goals.directory.org_unit("empty")["retired"]
