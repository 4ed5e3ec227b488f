"""deploy/prometheus/: the configuration and the rules, checked and unit-tested by Debian's promtool.

promtool comes with Debian's `prometheus` package (make test installs it). These
tests fail, never skip, when it is missing.
"""

import shutil
import subprocess

import pytest
import yaml

from tests.support.promql import alert_signal, ALERTS_FILE, metric_names, PROMETHEUS_DIR, rules

CONFIG_FILE = PROMETHEUS_DIR / "prometheus.yml"
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*_test.yml"))
PROMTOOL_HINT = ("promtool is missing: install Debian's prometheus package "
                 "(`apt-get update && apt-get install -y prometheus`); make test does")
SEVERITIES = {"critical", "warning", "info"}
CATEGORIES = {"engagement", "pipeline"}


def promtool(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail(PROMTOOL_HINT)
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout, cwd=PROMETHEUS_DIR)


def test_promtool_accepts_the_configuration_and_its_rule_files():
    result = promtool("check", "config", str(CONFIG_FILE))
    assert result.returncode == 0, f"promtool check config:\n{result.stdout}{result.stderr}"
    assert "1 rule files found" in result.stdout, result.stdout


def test_promtool_accepts_the_rules():
    result = promtool("check", "rules", str(ALERTS_FILE))
    assert result.returncode == 0, f"promtool check rules:\n{result.stdout}{result.stderr}"


def test_the_rule_unit_tests_pass():
    assert RULE_TESTS, "no promtool rule tests under deploy/prometheus/tests/"
    result = promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, f"promtool test rules:\n{result.stdout}{result.stderr}"
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


def test_every_alert_is_unit_tested_firing_and_not_firing():
    firing, silent = set(), set()
    for path in RULE_TESTS:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert spec["rule_files"] == ["../alerts.yml"], f"{path.name} must test deploy/prometheus/alerts.yml"
        for case in spec["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = {rule.name for rule in rules() if rule.kind == "alert"}
    assert alerts, "alerts.yml has no alerts"
    assert not alerts - firing, f"alerts never tested firing: {sorted(alerts - firing)}"
    assert not alerts - silent, f"alerts never tested staying silent: {sorted(alerts - silent)}"
    assert not (firing | silent) - alerts, f"tests of alerts that do not exist: {sorted((firing | silent) - alerts)}"


def test_every_recording_rule_is_tested_or_read_by_an_alert():
    recorded = {rule.name for rule in rules() if rule.kind == "record"}
    read = set()
    for rule in rules():
        read |= metric_names(rule.expr)
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for check in case.get("promql_expr_test", []):
                read |= metric_names(check["expr"])
    assert not recorded - read, f"recording rules nothing tests or reads: {sorted(recorded - read)}"


@pytest.mark.parametrize(("job", "address_variable"), [
    ("metrics-api", "METRICS_HTTP_ADDR"),
    ("notify-api", "NOTIFY_HTTP_ADDR"),
    ("goals-api", "SCIM_HTTP_ADDR"),
])
def test_each_exporting_api_is_scraped_where_docker_compose_serves_it(job, address_variable):
    config = yaml.safe_load(CONFIG_FILE.read_text(encoding="utf-8"))
    scrape = next((c for c in config["scrape_configs"] if c["job_name"] == job), None)
    assert scrape is not None, f"prometheus.yml has no {job} job"
    assert scrape.get("metrics_path", "/metrics") == "/metrics"
    targets = [target for static in scrape["static_configs"] for target in static["targets"]]
    compose = yaml.safe_load((PROMETHEUS_DIR.parents[1] / "docker-compose.yml").read_text(encoding="utf-8"))
    port = compose["services"][job]["environment"][address_variable].rsplit(":", 1)[1]
    # One target through the service name: every replica exports the same numbers from the database.
    assert targets == [f"{job}:{port}"]
    assert job in compose["services"]["prometheus"]["depends_on"], f"Prometheus should start after {job}"


@pytest.mark.parametrize("rule", [r for r in rules() if r.kind == "alert"], ids=lambda r: r.name)
def test_alerts_wait_carry_severity_and_say_what_and_where(rule):
    spec = rule.spec
    assert "for" in spec, f"{rule.name}: every alert waits (`for:`) before it fires"
    labels, annotations = spec.get("labels", {}), spec.get("annotations", {})
    assert labels.get("severity") in SEVERITIES, f"{rule.name}: severity must be one of {sorted(SEVERITIES)}"
    assert labels.get("category") in CATEGORIES, f"{rule.name}: category must be one of {sorted(CATEGORIES)}"
    assert annotations.get("summary") and annotations.get("description"), f"{rule.name}: summary and description"
    assert "$labels." in annotations["summary"], f"{rule.name}: the summary should name what it is about ($labels)"
    # The integration test evaluates this signal; it must be an expression, not a number.
    assert metric_names(alert_signal(rule.expr)), f"{rule.name}: nothing left to evaluate once the threshold is off"


def test_the_rule_names_follow_prometheus_conventions():
    for rule in rules():
        if rule.kind == "record":
            assert rule.name.count(":") == 2, f"recording rule {rule.name}: use level:metric:operations"
        else:
            assert rule.name.startswith("V2MOM") and rule.name.isalnum(), f"alert {rule.name}: V2MOMCamelCase"


# --- the stripping the integration test relies on ---------------------------------------------------


@pytest.mark.parametrize("expr, signal", [
    ("a > 1", "a"),
    ('v2mom_x{scope="direct"} > 7 * 86400', 'v2mom_x{scope="direct"}'),
    ("a < 0.5 * b and on() (c >= 3)", "a"),
    ("a < on(cycle) group_left() (0.5 * (b > 0.25))", "a"),
    ("(a > 0) or (b unless b offset 10m)", "a or b"),
    ("sum by (s) (increase(x[10m])) > 0\nor\nsum by (s) (x unless x offset 10m)",
     "sum by (s) (increase(x[10m])) or sum by (s) (x unless x offset 10m)"),
    ("a > bool 1", "a > bool 1"),
    ('up{job!="metrics-api"} == 0', 'up{job!="metrics-api"}'),
    ("count(a > 1)", "count(a > 1)"),
])
def test_alert_signal_takes_off_thresholds_and_gates(expr, signal):
    assert alert_signal(expr) == signal


def test_metric_names_leave_out_functions_labels_and_durations():
    expr = ('histogram_quantile(0.9, sum by (source, le) (rate(v2mom_lag_bucket{job="m", le!="1"}[$__rate_interval])))'
            " / on(source) group_left(name) v2mom:x:rate5m offset 1w")
    assert metric_names(expr) == {"v2mom_lag_bucket", "v2mom:x:rate5m"}
