"""MetricsService over real gRPC, the exposition over real HTTP, and RebuildAggregates on the demo organisation.

The rebuild test runs the whole pipeline: goals-api with the demo seed,
goals-worker relaying its outbox, the real metrics-worker consuming, and
check-in events published to checkins.events beside a CheckinService that
answers the rebuild's list calls from the same check-ins.
"""

import shutil
import subprocess
import time
import uuid
from concurrent import futures
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import grpc
import pymongo
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from prometheus_client.parser import text_string_to_metric_families

from services.goals.directory import Directory
from services.platform.api.auth import bearer_metadata, mint_dev_token
from deploy.demo.goals_seed import seed
from services.metrics import control, history
from deploy.demo.calendar import current_cycle
from tests.support.metrics import apply_all, CheckinLog, CheckinStore, FakeCheckinService, Journey, NOW, SmallOrg
from tests.support.grpc_errors import expect
from tests.support.metrics_service import handled, publish, QUEUES, scrape, start_metrics_api
from tests.support.services import Caller
from v2mom.v1 import checkins_pb2_grpc, common_pb2, goals_pb2, metrics_pb2

# The demo organisation's admin (deploy/demo/goals/org.yaml): roles are the directory's, never a token's.
DEMO_ADMIN = "kofi.mensah"

PROMTOOL_HINT = "promtool is missing: install Debian's prometheus package (apt-get install -y prometheus); make test does"


@pytest.fixture
def checkin_log():
    return CheckinLog()


@pytest.fixture
def checkins_server(checkin_log):
    """A CheckinService answering from ``checkin_log`` (the real one is being built beside this)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    checkins_pb2_grpc.add_CheckinServiceServicer_to_server(FakeCheckinService(CheckinStore(checkin_log)), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None)


@pytest.fixture
def metrics_api(metrics_settings, metrics_db, checkins_server, goals_api, enroll):
    """metrics-api in process, its clock pinned to NOW, rebuilding from an unreachable goals-api; who calls it is
    the test's goals-api's to say."""
    client_for, stop = start_metrics_api(metrics_settings, "127.0.0.1:9", checkins_server, lambda: NOW,
                                         directory_addr=f"127.0.0.1:{goals_api.port}", enroll=enroll)
    yield client_for
    stop()


@pytest.fixture
def small_org(metrics_db):
    org = SmallOrg()
    apply_all(metrics_db, org.events())
    return org


def details(error: grpc.RpcError) -> list:
    status = rpc_status.from_call(error)
    found = []
    for detail in status.details if status else []:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            found.extend(v.field for v in bad.field_violations)
    return found


def engagement_samples(text: str) -> dict:
    """Every engagement sample (pipeline health and process metrics excluded)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text) if family.name.startswith("v2mom_")
        and not family.name.startswith("v2mom_metrics_") for s in family.samples
    }


# --- GetEngagement -------------------------------------------------------------------------------------


def test_get_engagement_direct_and_subtree(metrics_api, small_org):
    reader = metrics_api("ann")
    team = reader.GetEngagement(metrics_pb2.GetEngagementRequest(
        org_unit_id="platform", cycle_id="FY2027", scope=metrics_pb2.SCOPE_DIRECT))
    assert (team.org_unit_name, team.level, team.scope) == ("Platform", common_pb2.ORG_LEVEL_TEAM, metrics_pb2.SCOPE_DIRECT)
    assert team.compute_time.ToDatetime(tzinfo=UTC) == NOW
    assert (team.headcount, team.people_with_v2mom, team.creation_ratio) == (2, 2, 1.0)
    assert {(s.state, s.count) for s in team.v2moms_by_state} == {("V2MOM_STATE_PUBLISHED", 1), ("V2MOM_STATE_SUBMITTED", 1)}
    assert (team.submitted_v2moms, team.approved_v2moms, team.approval_ratio, team.pending_approvals) == (2, 1, 0.5, 1)
    assert team.oldest_pending_age.ToTimedelta() == timedelta(days=3)
    assert team.oldest_pending_submit_time.ToDatetime(tzinfo=UTC) == NOW - timedelta(days=3)
    assert (team.time_to_approval.count, team.time_to_approval.sum.ToTimedelta()) == (1, timedelta(hours=2))
    assert [b.cumulative_count for b in team.time_to_approval.buckets] == [0, 1, 1, 1, 1, 1, 1, 1, 1]
    assert team.time_to_approval.buckets[-1].upper_bound_seconds == float("inf")
    assert (team.trailing_checkins, team.checkins_week_to_date, team.checkins_per_member_per_week) == (4, 2, 0.5)
    assert (team.published_v2moms, team.checked_in_v2moms, team.checkin_coverage_ratio) == (1, 1, 1.0)
    assert (team.tracked_items, team.stale_items, team.overdue_items) == (3, 0, 1)
    assert (team.average_progress_percent, team.measures, team.off_track_measures, team.off_track_ratio) == (50.0, 2, 1, 0.5)
    assert not team.HasField("tree_progress_percent")

    company = reader.GetEngagement(metrics_pb2.GetEngagementRequest(org_unit_id="acme", cycle_id="FY2027"))
    assert company.scope == metrics_pb2.SCOPE_SUBTREE  # the default
    assert (company.headcount, company.people_with_v2mom) == (6, 5)
    assert company.tree_progress_percent == pytest.approx(30.0)
    assert company.average_progress_percent == pytest.approx(35.0)

    sales = reader.GetEngagement(metrics_pb2.GetEngagementRequest(org_unit_id="sales", cycle_id="FY2027"))
    for unset in ("approval_ratio", "checkin_coverage_ratio", "average_progress_percent", "off_track_ratio",
                  "oldest_pending_submit_time"):
        assert not sales.HasField(unset), f"{unset} has no denominator and must be unset"


def test_a_cycle_without_data_gives_zeros_and_the_real_headcount(metrics_api, small_org):
    empty = metrics_api("ann").GetEngagement(metrics_pb2.GetEngagementRequest(org_unit_id="acme", cycle_id="FY2030"))
    assert (empty.headcount, empty.people_with_v2mom, empty.creation_ratio, empty.published_v2moms) == (6, 0, 0.0, 0)


def test_bad_requests_are_refused_with_field_violations(metrics_api, small_org):
    reader = metrics_api("ann")
    with pytest.raises(grpc.RpcError) as error:
        reader.GetEngagement(metrics_pb2.GetEngagementRequest(org_unit_id="bad id!", scope=7))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(details(error.value)) == {"org_unit_id", "cycle_id", "scope"}
    with pytest.raises(grpc.RpcError) as error:
        reader.GetEngagement(metrics_pb2.GetEngagementRequest(org_unit_id="nowhere", cycle_id="FY2027"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as error:
        metrics_api(None).GetEngagement(metrics_pb2.GetEngagementRequest(org_unit_id="acme", cycle_id="FY2027"))
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


# --- ListEngagement ----------------------------------------------------------------------------------


def listed(response) -> list[str]:
    return [e.org_unit_id for e in response.engagements]


def test_list_engagement_sorts_by_any_rate_with_unknown_rates_last(metrics_api, small_org):
    reader = metrics_api("ceo")
    request = metrics_pb2.ListEngagementRequest(org_unit_id="acme", cycle_id="FY2027", scope=metrics_pb2.SCOPE_DIRECT)
    # creation: sales 0.5, eng 1.0, platform 1.0 (a tie, broken by id)
    assert listed(reader.ListEngagement(request)) == ["sales", "eng", "platform"]
    request.descending = True
    assert listed(reader.ListEngagement(request)) == ["eng", "platform", "sales"]
    # approval: eng 0.0, platform 0.5, sales has nothing submitted and comes last both ways
    request.order_by = metrics_pb2.ENGAGEMENT_RATE_APPROVAL
    assert listed(reader.ListEngagement(request)) == ["platform", "eng", "sales"]
    request.descending = False
    assert listed(reader.ListEngagement(request)) == ["eng", "platform", "sales"]
    request.order_by = metrics_pb2.ENGAGEMENT_RATE_CHECKIN_FREQUENCY
    assert listed(reader.ListEngagement(request)) == ["eng", "sales", "platform"]
    # subtree scope and a level filter: the laggard teams
    teams = metrics_pb2.ListEngagementRequest(org_unit_id="acme", cycle_id="FY2027", level=common_pb2.ORG_LEVEL_TEAM,
                                              order_by=metrics_pb2.ENGAGEMENT_RATE_CREATION)
    response = reader.ListEngagement(teams)
    assert listed(response) == ["sales", "platform"] and response.total_size == 2
    assert response.engagements[0].scope == metrics_pb2.SCOPE_SUBTREE
    # under a department
    assert listed(reader.ListEngagement(metrics_pb2.ListEngagementRequest(org_unit_id="eng", cycle_id="FY2027"))) == ["platform"]


def test_list_engagement_pages(metrics_api, small_org):
    reader = metrics_api("ceo")
    request = metrics_pb2.ListEngagementRequest(org_unit_id="acme", cycle_id="FY2027", page_size=2)
    first = reader.ListEngagement(request)
    assert (listed(first), first.total_size) == (["sales", "eng"], 3) and first.next_page_token
    request.page_token = first.next_page_token
    second = reader.ListEngagement(request)
    assert (listed(second), second.next_page_token) == (["platform"], "")

    request.order_by = metrics_pb2.ENGAGEMENT_RATE_PROGRESS  # another query: the token is not for it
    with pytest.raises(grpc.RpcError) as error:
        reader.ListEngagement(request)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and details(error.value) == ["page_token"]
    with pytest.raises(grpc.RpcError) as error:
        reader.ListEngagement(metrics_pb2.ListEngagementRequest(org_unit_id="acme", cycle_id="FY2027", page_size=201,
                                                                level=common_pb2.ORG_LEVEL_COMPANY))
    assert set(details(error.value)) == {"page_size", "level"}


# --- history ----------------------------------------------------------------------------------------


def test_engagement_history_has_one_snapshot_per_week(metrics_api, small_org, metrics_db):
    history.refresh(metrics_db, now=NOW - timedelta(weeks=2))
    history.refresh(metrics_db, now=NOW - timedelta(weeks=1, days=1))
    history.refresh(metrics_db, now=NOW - timedelta(weeks=1))  # the same week again: the later one stands
    history.refresh(metrics_db, now=NOW)
    response = metrics_api("ceo").GetEngagementHistory(
        metrics_pb2.GetEngagementHistoryRequest(org_unit_id="acme", cycle_id="FY2027"))
    weeks = [(s.week_start.year, s.week_start.month, s.week_start.day) for s in response.snapshots]
    assert weeks == [(2026, 11, 9), (2026, 11, 16), (2026, 11, 23)]  # Mondays, oldest first
    latest = response.snapshots[-1].engagement
    assert (latest.headcount, latest.people_with_v2mom, latest.scope) == (6, 5, metrics_pb2.SCOPE_SUBTREE)
    assert latest.tree_progress_percent == pytest.approx(30.0)
    # the trailing window is evaluated as of each snapshot: two weeks back it was other weeks
    assert response.snapshots[0].engagement.trailing_checkins != latest.trailing_checkins

    direct = metrics_api("ceo").GetEngagementHistory(metrics_pb2.GetEngagementHistoryRequest(
        org_unit_id="platform", cycle_id="FY2027", scope=metrics_pb2.SCOPE_DIRECT))
    assert [s.engagement.headcount for s in direct.snapshots] == [2, 2, 2]


# --- the exposition -------------------------------------------------------------------------------------


def test_scrape_over_http_is_clean_for_promtool(metrics_api, small_org):
    body = scrape(metrics_api.http_port)
    assert 'v2mom_creation_ratio{cycle="FY2027",level="team",org_unit="sales",org_unit_name="Sales",scope="direct"} 0.5' in body
    assert "process_cpu_seconds_total" in body and "v2mom_metrics_events_processed_total" in body
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(PROMTOOL_HINT)
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"promtool check metrics:\n{result.stdout}{result.stderr}"


def test_cycle_dates_come_from_goals(metrics_settings, metrics_db, checkins_server, goals_api, db):
    Directory(db, cache_seconds=0).upsert_cycle("FY2027", "2026-02-01", "2027-01-31")
    client_for, stop = start_metrics_api(metrics_settings, f"127.0.0.1:{goals_api.port}", checkins_server, lambda: NOW)
    try:
        samples = {(s.name, tuple(s.labels.items())): s.value
                   for family in text_string_to_metric_families(scrape(client_for.http_port)) for s in family.samples}
    finally:
        stop()
    assert samples[("v2mom_cycle_start_timestamp_seconds", (("cycle", "FY2027"),))] == datetime(2026, 2, 1, tzinfo=UTC).timestamp()
    # the day after the last: "time() < end" holds all through 31 January
    assert samples[("v2mom_cycle_end_timestamp_seconds", (("cycle", "FY2027"),))] == datetime(2027, 2, 1, tzinfo=UTC).timestamp()


def test_someone_the_directory_does_not_know_or_has_let_go_is_refused(metrics_api, small_org, db, metrics_settings):
    request = metrics_pb2.GetEngagementRequest(org_unit_id="acme", cycle_id="FY2027")
    stranger = Caller(metrics_api.stub, bearer_metadata(mint_dev_token(metrics_settings.auth, "ghost", roles=["admin"])))
    refused = expect(stranger.GetEngagement, request, grpc.StatusCode.UNAUTHENTICATED)
    assert "'ghost' is not a person in the org directory" in refused.details()
    metrics_api("leo")  # in the directory...
    Directory(db, cache_seconds=0).upsert_person({"_id": "leo", "display_name": "Leo", "active": False})  # ...and gone
    refused = expect(metrics_api("leo").GetEngagement, request, grpc.StatusCode.PERMISSION_DENIED)
    assert "leo is no longer active in the directory" in refused.details()


# --- RebuildAggregates ------------------------------------------------------------------------------


def test_only_admins_may_rebuild(metrics_api):
    with pytest.raises(grpc.RpcError) as error:
        metrics_api("ann").RebuildAggregates(metrics_pb2.RebuildAggregatesRequest())
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_rebuild_without_its_sources_is_unavailable_and_changes_nothing(metrics_api, small_org, metrics_db):
    before = engagement_samples(scrape(metrics_api.http_port))
    with pytest.raises(grpc.RpcError) as error:
        metrics_api("ada", ("admin",)).RebuildAggregates(metrics_pb2.RebuildAggregatesRequest(), timeout=60)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE  # goals-api is not there
    assert engagement_samples(scrape(metrics_api.http_port)) == before
    assert not control.rebuild_running(metrics_db), "the lease outlived the failed rebuild"


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


def demo_checkins(goals_api, log: CheckinLog, now: datetime) -> None:
    """A few weeks of check-ins, progress and staleness on the published demo V2MOMs."""
    admin = goals_api(DEMO_ADMIN)
    published, token = [], ""
    while True:
        page = admin.ListV2MOMs(goals_pb2.ListV2MOMsRequest(state=goals_pb2.V2MOM_STATE_PUBLISHED, page_size=200,
                                                            page_token=token))
        published.extend(page.v2moms)
        if not (token := page.next_page_token):
            break
    assert len(published) >= 5
    for n, v2mom in enumerate(sorted(published, key=lambda v: v.id)):
        journey = Journey(v2mom.id, v2mom.owner_id, v2mom.org_unit_id, "individual",
                          measures=tuple(m.id for m in v2mom.content.measures), cycle=v2mom.cycle_id)
        if not journey.measures:
            continue
        for week in range(n % 5):  # some diligent, some silent
            log.record(journey, journey.measures[week % len(journey.measures)], now - timedelta(days=7 * week + 1))
        log.set_progress(journey, 1, own=10.0 * (n % 10), tree=5.0 * (n % 10), off_track=n % 2)
        if n % 5 == 0:  # the silent ones go stale, then overdue
            log.go_stale(journey, journey.measures[0], last_checkin=None, overdue=n % 10 == 0)


def wait_idle(metrics_db, goals_db, connection, timeout=180.0) -> None:
    """The goals outbox is drained, the metrics queues are empty and nothing more gets handled."""
    deadline, last, quiet_since = time.monotonic() + timeout, -1, time.monotonic()
    channel = connection.channel()
    while time.monotonic() < deadline:
        busy = sum(goals_db[name].count_documents({"outbox_pending": True}) for name in ("people", "v2moms", "org_units"))
        busy += sum(channel.queue_declare(name, passive=True).message_count for name in QUEUES)
        now_handled = handled(metrics_db)
        if busy or now_handled != last:
            last, quiet_since = now_handled, time.monotonic()
        elif time.monotonic() - quiet_since > 2.0:
            return
        time.sleep(0.2)
    raise AssertionError("the pipeline never went quiet")


def test_rebuild_equals_incremental_on_the_demo_organisation(
        settings, db, metrics_settings, metrics_db, checkins_server, checkin_log, goals_api, goals_worker,
        connection, metrics_worker):
    # Nothing is published before the seed below, so the metrics worker's queues are in place in time.
    frozen = datetime.now(UTC).replace(microsecond=0)
    client_for, stop_api = start_metrics_api(metrics_settings, f"127.0.0.1:{goals_api.port}", checkins_server,
                                             lambda: frozen)
    try:
        seed(settings, goals_api_address=f"127.0.0.1:{goals_api.port}", progress=False)
        demo_checkins(goals_api, checkin_log, frozen)
        publish(connection, checkin_log.events)
        wait_idle(metrics_db, db, connection)
        incremental = engagement_samples(scrape(client_for.http_port))
        company = frozenset({("org_unit", "acme"), ("org_unit_name", "Acme Robotics"), ("level", "company"),
                             ("cycle", current_cycle()), ("scope", "subtree")})
        # Not a comparison of empty scrapes: every kind of fact made it through.
        assert incremental[("v2mom_headcount", company)] > 40
        for name in ("v2mom_people_with_v2mom", "v2mom_pending_approvals", "v2mom_trailing_checkins",
                     "v2mom_checked_in_v2moms", "v2mom_overdue_items", "v2mom_stale_items", "v2mom_off_track_measures",
                     "v2mom_time_to_approval_seconds_count"):
            assert incremental[(name, company)] > 0, name

        admin = client_for(DEMO_ADMIN)
        summary = admin.RebuildAggregates(metrics_pb2.RebuildAggregatesRequest(), timeout=120)
        assert (summary.v2moms, summary.checkins) == (22, len(checkin_log.checkins))
        assert summary.org_units > 10 and summary.people > 40 and summary.aggregates > 0
        assert engagement_samples(scrape(client_for.http_port)) == incremental

        # A new deployment: nothing but the sources.
        fresh = replace(metrics_settings, mongo_db=f"metrics_test_{uuid.uuid4().hex[:10]}")
        fresh_client, stop_fresh = start_metrics_api(fresh, f"127.0.0.1:{goals_api.port}", checkins_server, lambda: frozen)
        try:
            fresh_client(DEMO_ADMIN).RebuildAggregates(metrics_pb2.RebuildAggregatesRequest(), timeout=120)
            assert engagement_samples(scrape(fresh_client.http_port)) == incremental
        finally:
            stop_fresh()
            pymongo.MongoClient(fresh.mongo_uri).drop_database(fresh.database_name)
    finally:
        stop_api()
        metrics_worker.stop()


