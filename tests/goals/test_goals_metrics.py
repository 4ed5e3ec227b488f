"""goals-api's /metrics over real HTTP (services/goals/http.py, collector.py): the HRIS events the real
goals-worker dead-letters, counted once per event id however often it comes back; the directory's pending
work; no token for /metrics while SCIM keeps its own; a clean ``promtool check metrics``."""

import json
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import kombu
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.goals.api import create_server
from services.goals.directory import Directory
from services.goals.directory_sync import DirectorySync
from services.goals.hris import HrisEvents
from services.goals.hris_rejected import REJECTED, TYPES
from services.platform.worker.consumer import PermanentError
from tests.support.broker import queue_exists
from tests.support.goals import build_org
from tests.support.hris import publish
from tests.support.processes import log_tail, wait_for
from tests.support.scim import TOKEN, scim_goals
from tests.support.services import served

HIRED_QUEUE = "evt-hris-employee.hired--goals_worker.on_employee_hired"
REJECTED_TOTAL = "v2mom_goals_hris_events_rejected_total"
PROMTOOL_HINT = "promtool is missing: install Debian's prometheus package (apt-get install -y prometheus)"


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


@pytest.fixture
def goals_http(settings):
    """A goals-api on the test's database, its HTTP side on a free port and SCIM off (no SCIM_TOKEN)."""
    with served(create_server, settings, None, "127.0.0.1:0") as (server, _):
        yield f"http://127.0.0.1:{server.http.port}"


def get(url: str, token: str | None = None, method: str = "GET") -> tuple[int, dict, str]:
    request = urllib.request.Request(url, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, dict(reply.headers), reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def scrape(base: str) -> str:
    status, headers, text = get(f"{base}/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain"), (status, text[:500])
    return text


def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def rejected(text: str, kind: str) -> float:
    return samples(text)[(REJECTED_TOTAL, (("type", kind),))]


def promtool_check(text: str) -> None:
    if shutil.which("promtool") is None:
        pytest.fail(PROMTOOL_HINT)
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, f"promtool check metrics:\n{check.stdout}{check.stderr}"


def hris_event(kind: str, data: dict, time: datetime | None = None) -> dict:
    at = (time or datetime(2026, 5, 1, tzinfo=UTC)).isoformat().replace("+00:00", "Z")
    return {"specversion": "1.0", "id": f"hris-{uuid.uuid4().hex}", "source": "/v2mom/hris", "type": kind,
            "time": at, "datacontenttype": "application/json", "data": data}


def employee(external_id: str, **fields) -> dict:
    return {"externalId": external_id, "id": f"user-{external_id}", "displayName": f"Employee {external_id}",
            "email": f"{external_id}@acme.test", "orgUnitRef": "platform", "managerRef": "lee",
            "timeZone": "Europe/Paris", **fields}


def dlq_depth(connection) -> int:
    return connection.channel().queue_declare(HIRED_QUEUE + ".dlq", passive=True).message_count


def test_a_rejected_hris_event_counts_once_on_goals_api_metrics(db, connection, goals_worker, goals_http):
    build_org(db)
    wait_for(lambda: queue_exists(connection, HIRED_QUEUE) and queue_exists(connection, HIRED_QUEUE + ".dlq")
             or goals_worker.poll() is not None, 30, "goals-worker never declared its HRIS queues")
    assert goals_worker.poll() is None, log_tail(goals_worker)
    before = scrape(goals_http)
    assert all(rejected(before, kind) == 0 for kind in TYPES)  # every type is there from the start
    promtool_check(before)

    bad = hris_event("employee.hired", employee("E700", timeZone="Nowhere/Land"))
    publish(connection, bad)
    wait_for(lambda: rejected(scrape(goals_http), "employee.hired") == 1, 30, "the rejection was never counted")
    # The same event again (the HRIS resends it, or an operator moves it back from the DLQ): dead-lettered
    # again, counted still once.
    publish(connection, bad)
    wait_for(lambda: dlq_depth(connection) == 2, 30, "the second delivery was never dead-lettered")
    after = scrape(goals_http)
    assert rejected(after, "employee.hired") == 1
    assert all(rejected(after, kind) == 0 for kind in TYPES if kind != "employee.hired")
    assert db[REJECTED].count_documents({}) == 1 and db.people.count_documents({"external_id": "E700"}) == 0
    promtool_check(after)
    dead = kombu.Queue(HIRED_QUEUE + ".dlq")(connection.channel())
    assert json.loads(dead.get(no_ack=True).body)["id"] == bad["id"]
    assert goals_worker.poll() is None, log_tail(goals_worker)


def test_the_directorys_pending_work_is_gauged(db, goals_http):
    build_org(db)
    events = HrisEvents(DirectorySync(Directory(db, 0)))
    soon = (datetime.now(UTC) + timedelta(days=30)).isoformat().replace("+00:00", "Z")
    events.apply(hris_event("employee.hired", employee("E801", managerRef="E999")))  # a manager not known yet
    events.apply(hris_event("employee.hired", employee("E802", effectiveTime=soon)))  # dated in the future
    events.apply(hris_event("employee.terminated", {"externalId": "E803"}))  # overtook the hire
    events.apply(hris_event("org_unit.upserted", {"externalId": "u-new", "name": "New team", "level": "ORG_LEVEL_TEAM",
                                                   "parentRef": "u-later"}))
    with pytest.raises(PermanentError):
        events.apply(hris_event("org_unit.retired", {"externalId": ""}))
    text = scrape(goals_http)
    got = samples(text)
    assert got[("v2mom_goals_people_pending_manager", ())] == 1
    assert got[("v2mom_goals_org_units_pending_parent", ())] == 1
    assert got[("v2mom_goals_directory_changes_scheduled", (("kind", "dated"),))] == 1
    assert got[("v2mom_goals_directory_changes_scheduled", (("kind", "waiting_for_person"),))] == 1
    assert rejected(text, "org_unit.retired") == 1 and rejected(text, "employee.hired") == 0
    assert "hris_rejected_by_type" in db[REJECTED].index_information()
    promtool_check(text)


def test_metrics_need_no_token_while_scim_keeps_its_own(mongo_uri):
    with scim_goals(mongo_uri) as env:
        base = f"http://127.0.0.1:{env.server.http.port}"
        assert env.server.scim is env.server.http
        assert "# TYPE v2mom_goals_hris_events_rejected_total counter" in scrape(base)
        assert get(f"{base}/metrics", method="HEAD")[0] == 200
        assert get(f"{base}/metrics", method="POST")[0] == 405
        status, headers, _ = get(f"{base}/scim/v2/Users")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert get(f"{base}/scim/v2/Users", token="not-the-token")[0] == 401
        assert get(f"{base}/scim/v2/Users", token=TOKEN)[0] == 200
        assert get(f"{base}/metricsx")[0] == 401  # anything but /metrics is SCIM's, token first


def test_without_a_scim_token_the_http_side_serves_metrics_and_no_scim(goals_http):
    assert "v2mom_goals_people_pending_manager 0.0" in scrape(goals_http)
    status, _, text = get(f"{goals_http}/scim/v2/Users", token=TOKEN)
    assert status == 404 and "SCIM is off" in text
