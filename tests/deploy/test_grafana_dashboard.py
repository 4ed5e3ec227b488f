"""deploy/grafana/: the provisioning files and the Engagement dashboard's structure.

No Grafana runs here; tests/deploy/test_prometheus_integration.py runs every query of
the dashboard against a real Prometheus. What this checks: the provisioning
points at Prometheus, every panel can be drawn (a data source, targets with
PromQL that Prometheus's own parser accepts, unique ids, a place on the grid),
every template variable a query uses exists and the drill-down chain is in
order, and the panels the issue asks for are there.
"""

import shutil
import subprocess

import pytest
import yaml

from tests.support.promql import (
    all_panels, dashboard_queries, dashboards, DASHBOARDS_DIR, GRAFANA_BUILTINS, GRAFANA_DIR, metric_names,
    parse_label_values, referenced_variables, rules, substitute, variable_query, variables,
)

PROVISIONING = GRAFANA_DIR / "provisioning"
DATASOURCE_UID = "prometheus"
PROMTOOL_HINT = ("promtool is missing: install Debian's prometheus package "
                 "(`apt-get update && apt-get install -y prometheus`); make test does")
GRID_COLUMNS = 24


@pytest.fixture(scope="module")
def engagement():
    found = [d for path, d in dashboards() if path.name == "engagement.json"]
    assert found, f"no engagement.json under {DASHBOARDS_DIR}"
    return found[0]


def drawn(dashboard):
    return [p for p in all_panels(dashboard) if p.get("type") != "row"]


# --- provisioning ------------------------------------------------------------------------------------


def test_the_datasource_is_the_compose_prometheus_with_the_uid_panels_use():
    spec = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text(encoding="utf-8"))
    assert spec["apiVersion"] == 1
    [source] = spec["datasources"]
    assert (source["type"], source["url"], source["uid"], source["access"]) == (
        "prometheus", "http://prometheus:9090", DATASOURCE_UID, "proxy")
    assert source["isDefault"] is True


def test_the_dashboards_provider_loads_the_dashboards_folder():
    spec = yaml.safe_load((PROVISIONING / "dashboards" / "v2mom.yml").read_text(encoding="utf-8"))
    assert spec["apiVersion"] == 1
    [provider] = spec["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/var/lib/grafana/dashboards")
    assert dashboards(), "the provider would find no dashboard JSON"


# --- every dashboard ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path, dashboard", dashboards(), ids=lambda v: getattr(v, "name", ""))
def test_panels_have_unique_ids_a_datasource_and_targets_with_promql(path, dashboard):
    assert dashboard.get("uid") and dashboard.get("title"), f"{path.name}: uid and title"
    ids = [p.get("id") for p in all_panels(dashboard)]
    assert all(isinstance(i, int) for i in ids), f"{path.name}: every panel needs an integer id"
    assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids {sorted(i for i in ids if ids.count(i) > 1)}"
    for panel in drawn(dashboard):
        where = f"{path.name}: panel {panel['id']} {panel.get('title')!r}"
        assert panel.get("title"), f"{where} has no title"
        assert panel.get("datasource") == {"type": "prometheus", "uid": DATASOURCE_UID}, f"{where}: datasource"
        targets = panel.get("targets") or []
        assert targets, f"{where} has no targets"
        refs = [t.get("refId") for t in targets]
        assert all(refs) and len(refs) == len(set(refs)), f"{where}: refIds must be set and unique, got {refs}"
        for target in targets:
            assert (target.get("expr") or "").strip(), f"{where} target {target.get('refId')} has no expr"
            assert target.get("datasource", panel["datasource"]) == panel["datasource"], f"{where}: target datasource"


@pytest.mark.parametrize("path, dashboard", dashboards(), ids=lambda v: getattr(v, "name", ""))
def test_panels_sit_on_the_grid_without_overlapping(path, dashboard):
    cells = {}
    for panel in all_panels(dashboard):
        grid = panel.get("gridPos") or {}
        where = f"{path.name}: panel {panel['id']} {panel.get('title')!r}"
        assert {"x", "y", "w", "h"} <= grid.keys(), f"{where}: gridPos needs x, y, w, h"
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= GRID_COLUMNS and grid["w"] > 0 and grid["h"] > 0, where
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{where} overlaps panel {cells[(x, y)]}"
                cells[(x, y)] = panel["id"]


@pytest.mark.parametrize("path, dashboard", dashboards(), ids=lambda v: getattr(v, "name", ""))
def test_every_variable_used_exists_and_chains_only_to_earlier_ones(path, dashboard):
    defined = []
    for variable in variables(dashboard):
        name = variable["name"]
        if variable["type"] == "query":
            assert variable.get("datasource") == {"type": "prometheus", "uid": DATASOURCE_UID}, f"${name}: datasource"
            query = variable_query(variable)
            parse_label_values(query)  # raises unless label_values(...)
            later = referenced_variables(query) - set(defined) - GRAFANA_BUILTINS
            assert not later, f"${name} uses {sorted(later)}, which are not defined before it"
        elif variable["type"] == "custom":
            assert variable.get("query") and variable.get("current", {}).get("value"), f"${name}: options and current"
        defined.append(name)
    assert len(defined) == len(set(defined)), f"{path.name}: duplicate variable names"
    texts = [expr for _, expr in dashboard_queries(dashboard)]
    texts += [p.get("title", "") for p in all_panels(dashboard)]
    texts += [t.get("legendFormat", "") for p in drawn(dashboard) for t in p["targets"]]
    used = set().union(*(referenced_variables(text) for text in texts))
    unknown = used - set(defined) - GRAFANA_BUILTINS
    assert not unknown, f"{path.name} uses undefined template variables {sorted(unknown)}"
    unused = set(defined) - used
    assert not unused, f"{path.name} defines variables no panel uses: {sorted(unused)}"


@pytest.mark.parametrize("path, dashboard", dashboards(), ids=lambda v: getattr(v, "name", ""))
def test_prometheus_parses_every_query(path, dashboard, tmp_path):
    """Each query, with sample values in its variables, as a recording rule for `promtool check rules`."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(PROMTOOL_HINT)
    values = {name: "1m" for name in GRAFANA_BUILTINS}
    values.update({v["name"]: "x" for v in variables(dashboard)})
    queries = dashboard_queries(dashboard) + [(f"variable ${v['name']}", parse_label_values(variable_query(v))[0])
                                              for v in variables(dashboard) if v["type"] == "query"]
    queries = [(where, query) for where, query in queries if query]
    groups = [{"name": f"q{i}", "rules": [{"record": "dashboard:query:check", "expr": substitute(query, values)}]}
              for i, (_, query) in enumerate(queries)]
    rules_file = tmp_path / "queries.yml"
    rules_file.write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    result = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        bad = [where for i, (where, _) in enumerate(queries) if f"q{i}" in result.stderr + result.stdout]
        pytest.fail(f"Prometheus cannot parse {bad or 'some queries'}:\n{result.stdout}{result.stderr}")


# --- what the Engagement dashboard must show ---------------------------------------------------------


def test_drill_down_goes_cycle_then_level_then_org_unit(engagement):
    names = [v["name"] for v in variables(engagement)]
    assert names[:3] == ["cycle", "level", "org_unit"], names
    by_name = {v["name"]: v for v in variables(engagement)}
    assert referenced_variables(variable_query(by_name["level"])) == {"cycle"}
    assert referenced_variables(variable_query(by_name["org_unit"])) == {"cycle", "level"}
    assert by_name["level"]["includeAll"] is True
    scope = by_name["scope"]
    assert {o["value"] for o in scope["options"]} == {"subtree", "direct"}


def _exprs(dashboard, panel_type=None) -> list[str]:
    return [t["expr"] for p in drawn(dashboard) if panel_type in (None, p["type"]) for t in p["targets"]]


@pytest.mark.parametrize("needed", [
    # rates over time
    "v2mom_creation_ratio", "v2mom_approval_ratio", "v2mom_checkins_per_member_per_week", "v2mom_checkin_coverage_ratio",
    # approvals
    "v2mom_v2moms", "v2mom_submitted_v2moms", "v2mom_approved_v2moms", "v2mom_pending_approvals",
    "v2mom_oldest_pending_approval_age_seconds", "v2mom_time_to_approval_seconds_bucket",
    # progress and risk
    "v2mom_progress_ratio", "v2mom_tree_progress_ratio", "v2mom_off_track_measures_ratio", "v2mom_stale_items",
    "v2mom_overdue_items", "v2mom_open_obstacles", "v2mom_oldest_open_obstacle_age_seconds",
    # pipeline health
    "v2mom_metrics_events_processed_total", "v2mom_metrics_events_dead_lettered_total",
    "v2mom_metrics_event_lag_seconds_bucket", "v2mom_metrics_last_event_timestamp_seconds",
])
def test_the_engagement_dashboard_reads(engagement, needed):
    assert any(needed in metric_names(expr) for expr in _exprs(engagement)), f"no panel reads {needed}"


def test_rates_are_drawn_over_time(engagement):
    over_time = set().union(*(metric_names(e) for e in _exprs(engagement, "timeseries")))
    assert {"v2mom_creation_ratio", "v2mom_approval_ratio", "v2mom_checkins_per_member_per_week",
            "v2mom_checkin_coverage_ratio"} <= over_time


def test_laggards_are_listed_lowest_first_with_instant_queries(engagement):
    laggards = [p for p in drawn(engagement) if p["type"] in ("table", "bargauge") and
                any("bottomk(" in t["expr"] or "$level" in t["expr"] for t in p["targets"])]
    assert any(p["type"] == "table" for p in laggards), "a laggards table"
    for panel in laggards:
        assert all(t.get("instant") for t in panel["targets"]), f"{panel['title']}: tables of units use instant queries"
    table = next(p for p in laggards if p["type"] == "table" and "creation" in p["title"].lower())
    sort = next(t for t in table["transformations"] if t["id"] == "sortBy")["options"]["sort"][0]
    assert sort["desc"] is False, "lowest first"


def test_time_to_approval_is_a_quantile_of_the_histogram(engagement):
    quantiles = [e for e in _exprs(engagement) if "histogram_quantile" in e and "v2mom_time_to_approval_seconds_bucket" in e]
    assert len(quantiles) >= 2
    assert all("by (le)" in e for e in quantiles), "summed over everything but le, as the unit is already chosen"


def test_the_approval_funnel_goes_from_drafts_to_approved(engagement):
    funnel = next(p for p in drawn(engagement) if "funnel" in p["title"].lower())
    exprs = " ".join(t["expr"] for t in funnel["targets"])
    for stage in ('state="draft"', "v2mom_submitted_v2moms", "v2mom_approved_v2moms"):
        assert stage in exprs, f"the funnel lacks {stage}"
    assert exprs.index('state="draft"') < exprs.index("v2mom_submitted_v2moms") < exprs.index("v2mom_approved_v2moms")


def test_event_lag_shows_p50_and_p99(engagement):
    lag = [e for e in _exprs(engagement) if "v2mom_metrics_event_lag_seconds_bucket" in e]
    assert any("histogram_quantile(0.5," in e for e in lag) and any("histogram_quantile(0.99," in e for e in lag)


def test_recorded_series_the_dashboard_reads_are_recorded(engagement):
    recorded = {rule.name for rule in rules() if rule.kind == "record"}
    read = set().union(*(metric_names(e) for e in _exprs(engagement)))
    missing = {name for name in read if ":" in name} - recorded
    assert not missing, f"the dashboard reads recording rules alerts.yml does not define: {sorted(missing)}"
