"""Fixtures for the check-ins service: a real goals-api with a published V2MOM,
and the check-ins API and worker on databases of their own.

Use with ``from tests.helpers_checkins import *`` in a test module, plus
``broker_uri`` overridden to ``isolated_broker_uri`` where workers run.
"""

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

import pytest
from google.type import date_pb2

from services.goals.directory import Directory
from services.platform.core.config import load
from tests.conftest import served_in_process
from tests.helpers_platform import spawn
from v2mom.v1 import common_pb2, goals_pb2


# The world's cycle FY2027 opened on 2026-02-01 and is still running: the API tests record check-ins at the
# real clock, which checkins-api refuses once a cycle has ended. So its last day is half a year after the day
# the suite runs, never a fixed date the calendar will pass.
FY2027_FIRST_DAY = date(2026, 2, 1)
FY2027_LAST_DAY = datetime.now(UTC).date() + timedelta(days=183)
FY2027_DATES = (FY2027_FIRST_DAY.isoformat(), FY2027_LAST_DAY.isoformat())

__all__ = [
    "checkins_settings", "goals_world", "checkins_api", "checkins_worker", "goals_worker_for_checkins",
    "GoalsWorld", "publish_v2mom", "world_content",
]


@pytest.fixture
def checkins_settings(settings, goals_api):
    """Settings of the check-ins service: its own database, goals-api at the test's goals server."""
    return replace(
        load("checkins", "127.0.0.1:0"),
        mongo_uri=settings.mongo_uri,
        mongo_db=f"checkins_test_{uuid.uuid4().hex[:10]}",
        amqp_uri=settings.amqp_uri,
        goals_addr=f"127.0.0.1:{goals_api.port}",
    )


def day(iso: str) -> date_pb2.Date:
    year, month, dd = (int(part) for part in iso.split("-"))
    return date_pb2.Date(year=year, month=month, day=dd)


def world_content(title="Ann FY27") -> goals_pb2.V2MOMContent:
    """Two measures (one increasing, one decreasing) and two methods with RACI."""
    return goals_pb2.V2MOMContent(
        title=title,
        vision="Customers rate onboarding 8 of 10 by Q4 2026",
        values=[goals_pb2.Value(id="val-care", name="Customer care", description="Answer every ticket within 1 day")],
        methods=[
            goals_pb2.Method(
                id="mth-guide", title="Ship the setup guide by June", value_ids=["val-care"], owner_id="ann",
                accountable_id="ann", responsible_ids=["rob"], consulted_ids=["cat"], due_date=day("2026-06-30"),
                milestones=[goals_pb2.Milestone(id="mil-draft", title="Draft", due_date=day("2026-04-30"))],
            ),
            goals_pb2.Method(
                id="mth-calls", title="Call 20 new customers by May", value_ids=["val-care"], owner_id="rob",
                accountable_id="ann", due_date=day("2026-05-31"),
            ),
        ],
        measures=[
            goals_pb2.Measure(
                id="msr-nps", title="Onboarding NPS", kind=goals_pb2.MEASURE_KIND_LAGGING, unit="NPS", baseline=20,
                target=60, direction=goals_pb2.DIRECTION_INCREASE, due_date=day("2026-12-31"), owner_id="rob", weight=75,
            ),
            goals_pb2.Measure(
                id="msr-ttv", title="Days to first value", kind=goals_pb2.MEASURE_KIND_LEADING, unit="days",
                baseline=30, target=10, direction=goals_pb2.DIRECTION_DECREASE, due_date=day("2026-12-31"),
                owner_id="ann", weight=25,
            ),
        ],
    )


@dataclass
class GoalsWorld:
    """The goals side of a check-ins test: people, a cycle and V2MOMs."""

    goals_api: object
    team_v2mom_id: str
    ann_v2mom_id: str
    draft_v2mom_id: str

    def client(self, person_id, roles=()):
        return self.goals_api(person_id, roles)


def publish_v2mom(goals_api, owner, approver, content, level=common_pb2.ORG_LEVEL_INDIVIDUAL, org_unit_id="", parent_id="", cycle_id="FY2027"):
    created = goals_api(owner).CreateV2MOM(
        goals_pb2.CreateV2MOMRequest(level=level, org_unit_id=org_unit_id, cycle_id=cycle_id, parent_id=parent_id, content=content)
    )
    goals_api(owner).SubmitV2MOM(goals_pb2.SubmitV2MOMRequest(id=created.id))
    goals_api(approver, ("admin",) if approver == "admin" else ()).ApproveV2MOM(goals_pb2.ApproveV2MOMRequest(id=created.id))
    return created.id


@pytest.fixture
def goals_world(db, goals_api) -> GoalsWorld:
    """Team 'onboarding' led by lee; ann and rob in it, cat a peer elsewhere, ada an admin.

    Published: the team V2MOM (lee) and ann's V2MOM aligned to it. Draft: rob's.
    The cycle FY2027 started 2026-02-01 and ends on FY2027_LAST_DAY, half a year from today.
    """
    directory = Directory(db, cache_seconds=0)
    directory.upsert_cycle("FY2027", *FY2027_DATES)
    directory.upsert_cycle("FY2025", "2024-02-01", "2025-01-31")
    directory.upsert_org_unit({"_id": "acme", "name": "Acme", "level": "ORG_LEVEL_COMPANY", "leader_id": "ceo"})
    directory.upsert_org_unit({"_id": "onboarding", "name": "Onboarding", "level": "ORG_LEVEL_TEAM", "parent_id": "acme", "leader_id": "lee"})
    directory.upsert_org_unit({"_id": "billing", "name": "Billing", "level": "ORG_LEVEL_TEAM", "parent_id": "acme", "leader_id": "cat"})
    for person, unit, manager, roles in (
        ("ceo", "acme", None, []), ("ada", "acme", "ceo", ["admin"]), ("lee", "onboarding", "ceo", []),
        ("ann", "onboarding", "lee", []), ("rob", "onboarding", "lee", []), ("cat", "billing", "ceo", []),
    ):
        directory.upsert_person({"_id": person, "display_name": person.title(), "org_unit_id": unit, "manager_id": manager, "roles": roles})
    team = publish_v2mom(goals_api, "lee", "ceo", world_content("Onboarding FY27"), level=common_pb2.ORG_LEVEL_TEAM, org_unit_id="onboarding")
    ann = publish_v2mom(goals_api, "ann", "lee", world_content(), parent_id=team)
    draft = goals_api("rob").CreateV2MOM(
        goals_pb2.CreateV2MOMRequest(level=common_pb2.ORG_LEVEL_INDIVIDUAL, cycle_id="FY2027", content=world_content("Rob FY27"))
    ).id
    return GoalsWorld(goals_api, team, ann, draft)


@pytest.fixture
def checkins_api(checkins_settings):
    """An in-process checkins-api on a free port; returns a factory of per-person clients."""
    from services.checkins.api import create_server
    from v2mom.v1 import checkins_pb2_grpc

    with served_in_process(create_server, checkins_pb2_grpc.CheckinServiceStub, checkins_settings) as client_for:
        yield client_for


def _start(module: str, env: dict) -> subprocess.Popen:
    return spawn([sys.executable, "-m", module], {**os.environ, **env})


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def goals_worker_for_checkins(settings):
    """goals-worker, so goals' events reach the check-ins worker."""
    process = _start("services.goals.worker", {
        "MONGO_URI": settings.mongo_uri, "MONGO_DB": settings.database_name,
        "AMQP_URI": settings.amqp_uri, "RELAY_INTERVAL_SECONDS": "0.05",
    })
    yield process
    _stop(process)


@pytest.fixture
def checkins_worker(checkins_settings):
    """A real checkins-worker process (nameko) on the test's check-ins database."""
    process = _start("services.checkins.worker", {
        "MONGO_URI": checkins_settings.mongo_uri, "MONGO_DB": checkins_settings.database_name,
        "AMQP_URI": checkins_settings.amqp_uri, "GOALS_ADDR": checkins_settings.goals_addr,
        "RELAY_INTERVAL_SECONDS": "0.05", "STALENESS_INTERVAL_SECONDS": "0.5",
    })
    yield process
    _stop(process)
