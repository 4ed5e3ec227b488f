"""A real Prometheus scrapes the metrics service while the demo organisation runs, and every query
of the Grafana dashboards and of the alerting and recording rules returns series.

The whole system runs on one wire Mongo and a RabbitMQ vhost of this test's
own: goals-api and checkins-api in process (the fixtures every API test uses),
goals-worker, checkins-worker, metrics-worker and metrics-api as processes
(metrics-api as `python -m services.metrics.api`, /metrics on a free port), and
notify-api (`python -m services.notify.api`, its HTTP side on a free port) over
a notify database of the test's own, into which a few deliveries are written
as notify-worker would (services/notify/store.py): one that failed for good
with its `failed|KIND|CHANNEL` count, some pending, some sent; and goals-api
as a process too (`python -m services.goals.api`, its HTTP side on a free
port, no SCIM_TOKEN) on the goals database, for goals' /metrics. Debian's
`prometheus` binary, on another free loopback port, scrapes metrics-api,
notify-api, goals-api and itself every second with deploy/prometheus/alerts.yml loaded. The goals
demo seed plays the organisation (V2MOMs in every state); a few weeks of
check-ins are recorded through checkins-api, on track and off, diligent and
silent (the check-ins demo seed records some 550 and takes two minutes, too
long here); one malformed event is published so that dead-lettering has
something to show, and one HRIS hire goals-worker must reject.

Then, through Prometheus's HTTP API:
- every template variable of every dashboard resolves, in its chain, to real label values;
- every panel query, with those values put in, returns at least one series;
- every recording rule's expression, and every alert's expression without its
  threshold and gates (tests/support/promql.py: alert_signal), returns at least one series;
- every metric a query reads exists, every rule evaluates without error and every target is up.
A query added to a dashboard or a rule added to alerts.yml is covered without touching this file.
`promtool check metrics` also checks a live scrape of metrics-api, notify-api and goals-api.
"""

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import kombu
import pymongo
import pytest
import yaml
from v2mom.v1 import checkins_pb2, goals_pb2

from deploy.demo.goals_seed import seed as seed_goals
from services.notify import store as notify_store
from tests.support.hris import publish as publish_hris
from tests.support.metrics import raw_event
from tests.support.metrics_service import QUEUES as METRICS_WORKER_QUEUES
from tests.support.processes import free_port, log_tail, spawn, start_module, stop
from tests.support.promql import (
    ALERTS_FILE,
    BROKER_SERIES_PREFIX,
    dashboard_queries,
    dashboards,
    metric_names,
    parse_label_values,
    reads_only_broker_series,
    rule_queries,
    rules,
    substitute,
    variable_query,
    variables,
)

# The demo organisation's admin (deploy/demo/goals/org.yaml): roles are the directory's, never a token's.
DEMO_ADMIN = "kofi.mensah"

PROMETHEUS_HINT = ("prometheus or promtool is missing: install Debian's prometheus package "
                   "(`apt-get update && apt-get install -y prometheus`); make test does")
CHECKINS_WORKER_QUEUES = (
    "evt-goals-v2mom_approved--checkins_worker.on_v2mom_approved",
    "evt-checkins-checkin_recorded--checkins_worker.on_checkin_recorded",
)
GOALS_WORKER_QUEUES = ("evt-hris-employee.hired--goals_worker.on_employee_hired",)
# What Grafana would put in for its own variables, given a 1 s scrape interval.
BUILTIN_VALUES = {"__rate_interval": "1m", "__interval": "15s", "__interval_ms": "15000", "__range": "1h",
                  "__range_s": "3600", "__range_ms": "3600000"}
READY_TIMEOUT = 30.0
SERIES_TIMEOUT = 60.0  # after the seeds: until Prometheus shows them and every query has series


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _wait_for(what: str, ready, process: subprocess.Popen, log: Path, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"{what} exited with {process.returncode}:\n{_tail(log)}"
        assert time.monotonic() < deadline, f"{what} not ready after {timeout:.0f} s:\n{_tail(log)}"
        time.sleep(0.1)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _queues_exist(connection, names) -> bool:
    for name in names:
        try:
            connection.channel().queue_declare(name, passive=True)
        except Exception:  # noqa: BLE001 - not declared yet
            return False
    return True


class Service:
    """One of the system's processes, started as `make run` would (python -m ...)."""

    def __init__(self, module: str, env: dict, log: Path):
        self.log = log
        self.process = start_module(module, env, log)

    def stop(self) -> None:
        stop(self.process)


class Prometheus:
    """Debian's prometheus on a free loopback port, its data in a temporary directory."""

    def __init__(self, workdir: Path, metrics_target: str, notify_target: str, goals_target: str):
        binary = shutil.which("prometheus")
        if binary is None or shutil.which("promtool") is None:
            pytest.fail(PROMETHEUS_HINT)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS_FILE)],
            "scrape_configs": [
                {"job_name": "metrics-api", "static_configs": [
                    {"targets": [metrics_target], "labels": {"service": "metrics", "process": "api"}}]},
                {"job_name": "notify-api", "static_configs": [
                    {"targets": [notify_target], "labels": {"service": "notify", "process": "api"}}]},
                {"job_name": "goals-api", "static_configs": [
                    {"targets": [goals_target], "labels": {"service": "goals", "process": "api"}}]},
                {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{self.port}"]}]},
            ],
        }
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config), encoding="utf-8")
        check = subprocess.run(["promtool", "check", "config", str(self.config)], capture_output=True, text=True)
        assert check.returncode == 0, f"promtool check config (test config):\n{check.stdout}{check.stderr}"
        self.log = workdir / "prometheus.log"
        self.process = spawn(
            [binary, f"--config.file={self.config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h",
             ], log=self.log,
        )
        _wait_for("prometheus", lambda: _http_ok(f"{self.url}/-/ready"), self.process, self.log)

    def api(self, path: str, **params) -> dict:
        data = urllib.parse.urlencode(params, doseq=True).encode() if params else None
        request = urllib.request.Request(f"{self.url}/api/v1/{path}", data=data)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            body = json.load(error)
        if body.get("status") != "success":
            raise QueryError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list:
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] in ("vector", "matrix") else [data["result"]]

    def stop(self) -> None:
        stop(self.process)


class QueryError(RuntimeError):
    pass


# --- template variables ----------------------------------------------------------------------------


def resolve_variables(prometheus: Prometheus, dashboard: dict) -> tuple[dict[str, str], list[str]]:
    """Values for the dashboard's variables, in order, each query run with the values chosen before it.

    As Grafana would: the first option in the variable's sort order, "All" where
    offered. Except org_unit, where the top of the tree (largest subtree headcount
    in the chosen cycle) is taken, as the CEO opening the dashboard would see it.
    Returns the values and the variables that had no option at all.
    """
    values, empty = dict(BUILTIN_VALUES), []
    for variable in variables(dashboard):
        name = variable["name"]
        if variable["type"] == "custom":
            values[name] = variable["current"]["value"]
            continue
        selector, label = parse_label_values(substitute(variable_query(variable), values))
        if selector:
            options = sorted({s[label] for s in prometheus.api("series", **{"match[]": selector}) if label in s})
        else:
            options = sorted(prometheus.api(f"label/{label}/values"))
        if variable.get("sort") in (2, 4, 6):
            options.reverse()
        if not options:
            empty.append(f"${name}: {variable_query(variable)!r} (as {selector!r}) found no {label}")
            values[name] = "no-value"
        elif variable.get("includeAll"):
            values[name] = variable.get("allValue") or "|".join(options)
        elif name == "org_unit":
            headcounts = prometheus.query(f'v2mom_headcount{{cycle="{values.get("cycle", "")}", scope="subtree"}}')
            by_unit = {s["metric"]["org_unit"]: float(s["value"][1]) for s in headcounts}
            values[name] = max(options, key=lambda unit: by_unit.get(unit, -1))
        else:
            values[name] = options[0]
    return values, empty


def all_queries(prometheus: Prometheus) -> tuple[list[tuple[str, str]], list[str]]:
    """(where, PromQL) for every dashboard panel (variables resolved) and every rule; and unresolved variables."""
    queries, problems = [], []
    for path, dashboard in dashboards():
        values, empty = resolve_variables(prometheus, dashboard)
        problems += [f"{path.name}: {line}" for line in empty]
        shown = {k: v for k, v in values.items() if k not in BUILTIN_VALUES}
        queries += [(f"{where} {shown}", substitute(expr, values)) for where, expr in dashboard_queries(dashboard)]
    ours = [(where, expr) for where, expr in rule_queries() if not reads_only_broker_series(expr)]
    return queries + ours, problems


def empty_queries(prometheus: Prometheus, queries) -> list[str]:
    failures = []
    for where, expr in queries:
        try:
            if not prometheus.query(expr):
                failures.append(f"{where}\n    returned no series: {expr}")
        except QueryError as error:
            failures.append(f"{where}\n    failed ({error}): {expr}")
    return failures


# --- the system -------------------------------------------------------------------------------------


@pytest.fixture
def workers_listening(settings, goals_worker, checkins_worker, metrics_worker):
    """The consuming workers have their queues before goals (or the HRIS) publishes anything."""
    with kombu.Connection(settings.amqp_uri) as connection:
        _wait_for("metrics-worker's queues", lambda: _queues_exist(connection, METRICS_WORKER_QUEUES),
                  metrics_worker.process, metrics_worker.log)
        deadline = time.monotonic() + READY_TIMEOUT
        for worker, queues in ((checkins_worker, CHECKINS_WORKER_QUEUES), (goals_worker, GOALS_WORKER_QUEUES)):
            while not _queues_exist(connection, queues):
                assert worker.poll() is None, log_tail(worker)
                assert time.monotonic() < deadline, f"{queues[0]}: its worker never declared it"
                time.sleep(0.1)


def start_metrics_api(settings, metrics_db_name, goals_addr, checkins_addr, tmp_path) -> tuple[Service, int]:
    port = free_port()
    api = Service("services.metrics.api", {
        "MONGO_URI": settings.mongo_uri, "MONGO_DB": metrics_db_name, "AMQP_URI": settings.amqp_uri,
        "GRPC_ADDR": "127.0.0.1:0", "METRICS_HTTP_ADDR": f"127.0.0.1:{port}",
        "GOALS_ADDR": goals_addr, "CHECKINS_ADDR": checkins_addr, "LOG_LEVEL": "WARNING",
    }, tmp_path / "metrics-api.log")
    _wait_for("metrics-api", lambda: _http_ok(f"http://127.0.0.1:{port}/metrics"), api.process, api.log)
    return api, port


@pytest.fixture
def notify_db_name(mongo_uri):
    """A notify database of the test's own, dropped afterwards."""
    name = f"notify_prom_test_{uuid.uuid4().hex[:10]}"
    yield name
    client = pymongo.MongoClient(mongo_uri)
    client.drop_database(name)
    client.close()


def write_deliveries(mongo_uri: str, notify_db_name: str, now: datetime | None = None) -> None:
    """What notify-worker leaves behind after a bounce, a busy Monday and a few sends, in store.py's shapes.

    One email approval request failed for good (a 550), with its ``failed|KIND|CHANNEL`` count; three emails
    and a webhook wait for their next try; two emails were sent, with their ``sent|`` and ``latency|`` stats.
    No notify-worker runs, so they stay as written.
    """
    now = now or datetime.now(UTC)
    kind, email, webhook = "NOTIFICATION_KIND_APPROVAL_REQUESTED", "CHANNEL_EMAIL", "CHANNEL_WEBHOOK"

    def delivery(n: int, channel: str, status: str, **fields) -> dict:
        return {"_id": f"dlv_prometheus_test_{n}", "notification_id": f"ntf_prometheus_test_{n}",
                "recipient_id": "priya.raman", "kind": kind, "channel": channel,
                "target": "priya.raman@acmerobotics.example" if channel == email else "sub_prometheus_test",
                "status": status, "tries": 1, "last_error": "", "created_at": now - timedelta(minutes=30),
                "next_try_at": now + timedelta(hours=1), "sent_at": None, "lease_until": None,
                "cause_event_id": f"evt_prometheus_test_{n}", "v2mom_id": "v2m_prometheus_test", **fields}

    deliveries = [
        delivery(1, email, notify_store.FAILED, tries=8, last_error="550 5.1.1 No such user here", next_try_at=None),
        *(delivery(n, email, notify_store.PENDING, last_error="451 4.3.0 Local error, try again later")
          for n in (2, 3, 4)),
        delivery(5, webhook, notify_store.PENDING, last_error="HTTP 503"),
        *(delivery(n, email, notify_store.SENT, next_try_at=None, sent_at=now - timedelta(minutes=29))
          for n in (6, 7)),
    ]
    client = pymongo.MongoClient(mongo_uri)
    try:
        db = client[notify_db_name]
        db[notify_store.DELIVERIES].insert_many(deliveries)
        db[notify_store.STATS].insert_many([
            {"_id": notify_store.failed_id(kind, email), "n": 1},
            {"_id": notify_store.sent_id(kind, email), "n": 2},
            {"_id": notify_store.latency_id(email), "sum": 120.0, "count": 2,
             "buckets": {notify_store.latency_key(60.0): 2}},
        ])
    finally:
        client.close()


def start_notify_api(settings, notify_db_name, tmp_path) -> tuple[Service, int]:
    """notify-api as `make run` starts it, on its own database; returns it and its HTTP port (/metrics)."""
    port = free_port()
    api = Service("services.notify.api", {
        "MONGO_URI": settings.mongo_uri, "MONGO_DB": notify_db_name, "AMQP_URI": settings.amqp_uri,
        "GRPC_ADDR": "127.0.0.1:0", "NOTIFY_HTTP_ADDR": f"127.0.0.1:{port}", "LOG_LEVEL": "WARNING",
    }, tmp_path / "notify-api.log")
    _wait_for("notify-api", lambda: _http_ok(f"http://127.0.0.1:{port}/metrics"), api.process, api.log)
    return api, port


def start_goals_api(settings, tmp_path) -> tuple[Service, int]:
    """goals-api as `make run` starts it (without SCIM_TOKEN), beside the in-process one on the same database;
    returns it and its HTTP port (/metrics)."""
    port = free_port()
    api = Service("services.goals.api", {
        "MONGO_URI": settings.mongo_uri, "MONGO_DB": settings.database_name, "AMQP_URI": settings.amqp_uri,
        "GRPC_ADDR": "127.0.0.1:0", "SCIM_HTTP_ADDR": f"127.0.0.1:{port}", "LOG_LEVEL": "WARNING",
    }, tmp_path / "goals-api.log")
    _wait_for("goals-api", lambda: _http_ok(f"http://127.0.0.1:{port}/metrics"), api.process, api.log)
    return api, port


def publish_rejected_hire(amqp_uri: str) -> None:
    """An HRIS hire in a unit nobody knows: goals-worker dead-letters it, and goals-api counts it."""
    hire = {"specversion": "1.0", "id": f"hris-{uuid.uuid4().hex}", "source": "/v2mom/hris", "type": "employee.hired",
            "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"), "datacontenttype": "application/json",
            "data": {"externalId": "E-PROM-1", "displayName": "Nobody Known", "email": "nobody@acme.test",
                     "orgUnitRef": "no-such-unit"}}
    with kombu.Connection(amqp_uri) as connection:
        publish_hris(connection, hire)


def record_checkins(goals_api, checkins_api, now: datetime | None = None) -> int:
    """A few weeks of measure check-ins on the published V2MOMs of the demo's open cycles, by their owners.

    V2MOM number n gets n % 4 weekly check-ins (so some are silent), off track when
    n % 3 == 0, and every other checked-in V2MOM one this week too. Returns how many.
    """
    now = now or datetime.now(UTC)
    admin = goals_api(DEMO_ADMIN)
    today = now.date().isoformat()
    open_cycles = {c.id for c in admin.ListCycles(goals_pb2.ListCyclesRequest()).cycles
                   if _day(c.start_date) <= today <= _day(c.end_date)}
    published, token = [], ""
    while True:
        page = admin.ListV2MOMs(goals_pb2.ListV2MOMsRequest(state=goals_pb2.V2MOM_STATE_PUBLISHED, page_size=200,
                                                            page_token=token))
        published += [v for v in page.v2moms if v.cycle_id in open_cycles and v.content.measures]
        if not (token := page.next_page_token):
            break
    recorded = 0
    for n, v2mom in enumerate(sorted(published, key=lambda v: v.id)):
        observed = [now - timedelta(days=7 * week + 1) for week in range(1, n % 4 + 1)]
        if n % 4 and n % 2:
            observed.append(now - timedelta(minutes=5))
        status = checkins_pb2.CHECKIN_STATUS_OFF_TRACK if n % 3 == 0 else checkins_pb2.CHECKIN_STATUS_ON_TRACK
        for moment in sorted(observed):
            request = checkins_pb2.RecordMeasureCheckinRequest(
                v2mom_id=v2mom.id, measure_id=v2mom.content.measures[0].id, value=1.0 + recorded % 7, status=status,
                confidence=7, comment="Recorded by the Prometheus integration test.")
            request.observe_time.FromDatetime(moment)
            try:
                checkins_api(v2mom.owner_id).RecordMeasureCheckin(request)
            except grpc.RpcError as error:
                raise AssertionError(f"check-in on {v2mom.id} as {v2mom.owner_id}: {error.code().name}: "
                                     f"{error.details()}") from None
            recorded += 1
    return recorded


def _day(date) -> str:
    return f"{date.year:04d}-{date.month:02d}-{date.day:02d}"


def publish_malformed_event(amqp_uri: str) -> None:
    """A check-in event whose payload is not a check-in: metrics-worker must dead-letter it."""
    event = raw_event("checkins", "checkin_recorded", {"checkin": "not a check-in"})
    with kombu.Connection(amqp_uri) as connection:
        exchange = kombu.Exchange("checkins.events", type="topic", durable=True)
        producer = kombu.Producer(connection.channel())
        producer.publish(json.dumps(event), exchange=exchange, routing_key=event["type"], delivery_mode=2,
                         content_type="application/cloudevents+json", content_encoding="utf-8", declare=[exchange])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        return response.read().decode()


@pytest.mark.timeout(300)
def test_every_dashboard_and_rule_query_returns_series_from_a_live_organisation(
        settings, db, goals_api, checkins_api, metrics_db_name, notify_db_name, workers_listening, tmp_path):
    started = time.monotonic()
    goals_addr, checkins_addr = f"127.0.0.1:{goals_api.port}", f"127.0.0.1:{checkins_api.port}"
    seed_goals(settings, goals_api_address=goals_addr, progress=False)
    # After the goals seed: metrics-api reads the cycles' dates from goals-api (and keeps them a while).
    metrics_api, metrics_port = start_metrics_api(settings, metrics_db_name, goals_addr, checkins_addr, tmp_path)
    write_deliveries(settings.mongo_uri, notify_db_name)
    notify_api, notify_port = start_notify_api(settings, notify_db_name, tmp_path)
    goals_http, goals_port = start_goals_api(settings, tmp_path)
    prometheus = None
    try:
        prometheus = Prometheus(tmp_path, f"127.0.0.1:{metrics_port}", f"127.0.0.1:{notify_port}",
                                f"127.0.0.1:{goals_port}")
        recorded = record_checkins(goals_api, checkins_api)
        publish_malformed_event(settings.amqp_uri)
        publish_rejected_hire(settings.amqp_uri)
        seeded = time.monotonic()
        deadline = seeded + SERIES_TIMEOUT

        # The organisation made it through the pipeline into Prometheus.
        root = wait_for_value(prometheus, 'max(v2mom_headcount{scope="subtree"})', lambda v: v > 40, deadline)
        wait_for_value(prometheus, 'sum(v2mom_pending_approvals{scope="direct"})', lambda v: v > 0, deadline)
        if recorded:
            wait_for_value(prometheus, 'max(v2mom_trailing_checkins{scope="subtree"})', lambda v: v > 0, deadline)
        wait_for_value(prometheus, "sum(v2mom_metrics_events_dead_lettered_total)", lambda v: v >= 1, deadline)
        wait_for_value(prometheus, "sum(v2mom_notify_deliveries_failed_total)", lambda v: v == 1, deadline)
        wait_for_value(prometheus, 'v2mom_notify_deliveries_pending{channel="email"}', lambda v: v == 3, deadline)
        wait_for_value(prometheus, 'v2mom_goals_hris_events_rejected_total{type="employee.hired"}', lambda v: v == 1,
                       deadline)

        # Every query has series: poll, as some need a few scrapes (rates) or a rule evaluation.
        while True:
            queries, unresolved = all_queries(prometheus)
            failures = unresolved + empty_queries(prometheus, queries)
            if not failures or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert not failures, (f"{len(failures)} of {len(queries)} queries returned nothing "
                              f"({time.monotonic() - seeded:.0f} s after the seeds):\n" + "\n".join(failures))
        assert len(queries) >= 60, f"only {len(queries)} queries found: is the extraction broken?"

        _every_metric_read_exists(prometheus, queries)
        _every_rule_evaluates(prometheus)
        _every_target_is_up(prometheus)
        _promtool_accepts_a_live_scrape(metrics_port, ("v2mom_cycle_start_timestamp_seconds",
                                                       "v2mom_metrics_events_dead_lettered_total{"))
        _promtool_accepts_a_live_scrape(notify_port, ("v2mom_notify_deliveries_failed_total{",
                                                      "v2mom_notify_deliveries_pending{"))
        _promtool_accepts_a_live_scrape(goals_port, ('v2mom_goals_hris_events_rejected_total{type="employee.hired"} 1.0',
                                                     "v2mom_goals_people_pending_manager "))
        print(f"\n{len(queries)} queries checked; headcount {root:.0f}; {recorded} check-ins; "
              f"{time.monotonic() - started:.0f} s in all, {seeded - started:.0f} s of it seeding")
    finally:
        if prometheus is not None:
            prometheus.stop()
        goals_http.stop()
        notify_api.stop()
        metrics_api.stop()


def wait_for_value(prometheus: Prometheus, expr: str, good, deadline: float) -> float:
    value = None
    while True:
        result = prometheus.query(expr)
        if result:
            value = float(result[0]["value"][1])
            if good(value):
                return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Prometheus never saw what the seed did: {expr} is {value}")
        time.sleep(0.5)


def _every_metric_read_exists(prometheus: Prometheus, queries) -> None:
    known = set(prometheus.api("label/__name__/values"))
    missing = {}
    for where, expr in queries:
        for name in metric_names(expr) - known:
            missing.setdefault(name, where)
    for rule in rules():
        for name in metric_names(rule.expr) - known:  # gates too, which the signals leave out
            if not name.startswith(BROKER_SERIES_PREFIX):
                missing.setdefault(name, f"alerts.yml: {rule.kind} {rule.name}")
    assert not missing, "read but not exported (nor recorded):\n" + "\n".join(
        f"  {name} (read by {where})" for name, where in sorted(missing.items()))


def _every_rule_evaluates(prometheus: Prometheus) -> None:
    bad = [f"{group['name']}/{rule['name']}: {rule.get('health')} {rule.get('lastError', '')}"
           for group in prometheus.api("rules")["groups"] for rule in group["rules"]
           if rule.get("health") != "ok"]
    assert not bad, "rules that do not evaluate cleanly:\n" + "\n".join(bad)
    loaded = {rule["name"] for group in prometheus.api("rules")["groups"] for rule in group["rules"]}
    assert loaded == {rule.name for rule in rules()}


def _every_target_is_up(prometheus: Prometheus) -> None:
    targets = prometheus.api("targets")["activeTargets"]
    down = [f"{t['labels']['job']} {t['scrapeUrl']}: {t['health']} {t.get('lastError')}" for t in targets
            if t["health"] != "up"]
    assert not down, "\n".join(down)


def _promtool_accepts_a_live_scrape(port: int, expected: tuple[str, ...]) -> None:
    body = scrape(port)
    assert all(text in body for text in expected), (expected, body[:3000])
    result = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"promtool check metrics on a live scrape:\n{result.stdout}{result.stderr}"
