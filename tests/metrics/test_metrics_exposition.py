"""/metrics renders the engagement families itself (services/metrics/exposition.py): the same scrape as before.

Before exposition.py, one prometheus_client registry rendered everything
(``generate_latest`` of ``EngagementCollector``, the pipeline and cycle-date
collectors and the process collector). Here that registry is the reference
(``Exposition.full``): for the small organisation of the aggregation tests, plus
org unit names that need escaping, a second cycle and an organisation shaped as
the benchmark loads it, the new text must be byte for byte the registry's, in
every format a client can negotiate, parse to the same families and samples,
and pass ``promtool check metrics``.
"""

import gzip
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.parser import text_string_to_metric_families

from services.metrics import engagement, store
from services.metrics.api import exposition_for
from services.metrics.collector import CycleCollector, EngagementCollector, PipelineCollector
from services.metrics.cycles import Cycle
from services.metrics.exposition import HTTP_THREADS, Exposition, render_engagement, start_http_server
from services.metrics.pipeline import PipelineStats
from services.metrics.rendered import RenderedEngagement
from tests.support.metrics import ago, apply_all, bench_shaped_org, Journey, NOW, org_unit, person, SmallOrg

PROMTOOL_HINT = "promtool is missing: install Debian's prometheus package (apt-get install -y prometheus); make test does"
WEIRD = 'Back\\slash "quoted"\nnew line, and a trailing backslash \\'
# What clients send: none (curl), Prometheus 2 and 3 defaults, OpenMetrics asked for alone, text 1.0.0 in each
# escaping (dots rewrites every name: the old path serves it).
ACCEPTS = [
    None,
    "text/plain;version=0.0.4",
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;"
    "version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
    "application/openmetrics-text",
    "application/openmetrics-text;version=0.0.1,text/plain;version=0.0.4",
    "text/plain;version=1.0.0;escaping=underscores",
    "text/plain;version=1.0.0;escaping=values",
    "text/plain;version=1.0.0;escaping=dots",
]


class FixedCalendar:
    def cycles(self):
        return [Cycle("FY2027", NOW - timedelta(days=200), NOW + timedelta(days=165))]


def small_org_with_oddities(db) -> None:
    """The aggregation tests' organisation, a unit whose name needs every escape, and a second cycle."""
    org = SmallOrg()
    weird = [org_unit("odd", WEIRD, "team", parent="eng"), person("zed", "odd")]
    next_cycle = (Journey("v-zed-28", "zed", "odd", "individual", cycle="FY2028")
                  .step("draft", ago(days=3)).step("submitted", ago(days=2)).step("published", ago(days=1)))
    apply_all(db, org.events() + weird + next_cycle.events)
    stats = PipelineStats()
    stats.observe("goals", "v2mom_created", NOW - timedelta(seconds=2), now=NOW)
    stats.flush(db)


def exposition(db) -> Exposition:
    # No process collector: its CPU seconds move between two renderings.
    return Exposition(db, lambda: NOW, [PipelineCollector(db), CycleCollector(FixedCalendar())], RenderedEngagement(db))


def reference(db) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(EngagementCollector(db, lambda: NOW))
    return registry


def parsed(text: str) -> dict:
    """{family: (type, help, sorted samples)} with samples as (name, sorted labels, value)."""
    return {
        family.name: (family.type, family.documentation,
                      sorted((s.name, tuple(sorted(s.labels.items())), s.value) for s in family.samples))
        for family in text_string_to_metric_families(text)
    }


def promtool_check(text: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(PROMTOOL_HINT)
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"promtool check metrics:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("build", [small_org_with_oddities, bench_shaped_org, lambda db: None],
                         ids=["small-org-with-oddities", "bench-shaped", "empty"])
def test_engagement_text_is_the_collectors_byte_for_byte(metrics_db, build):
    build(metrics_db)
    snapshot = engagement.snapshot(NOW, store.org_tree(metrics_db), store.aggregates(metrics_db))
    old = generate_latest(reference(metrics_db)).decode()
    new = render_engagement(snapshot)
    assert new == old
    assert parsed(new) == parsed(old)
    assert render_engagement(snapshot, openmetrics_format=True) + "# EOF\n" == openmetrics_latest(reference(metrics_db)).decode()


def test_the_oddities_are_really_there(metrics_db):
    """The equivalence above covers escaped names, left-out ratios, both cycles and the histogram."""
    small_org_with_oddities(metrics_db)
    text = render_engagement(engagement.snapshot(NOW, store.org_tree(metrics_db), store.aggregates(metrics_db)))
    assert 'org_unit_name="Back\\\\slash \\"quoted\\"\\nnew line, and a trailing backslash \\\\"' in text
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    odd = {("org_unit", "odd"), ("org_unit_name", WEIRD), ("level", "team"), ("cycle", "FY2028"), ("scope", "direct")}
    assert samples[("v2mom_published_v2moms", frozenset(odd))] == 1
    assert samples[("v2mom_time_to_approval_seconds_bucket", frozenset(odd | {("le", "+Inf")}))] == 1
    sales = {("org_unit", "sales"), ("org_unit_name", "Sales"), ("level", "team"), ("cycle", "FY2027"),
             ("scope", "direct")}
    assert ("v2mom_approval_ratio", frozenset(sales)) not in samples  # nothing submitted: left out
    assert samples[("v2mom_headcount", frozenset(sales))] == 2


@pytest.mark.parametrize("accept", ACCEPTS)
def test_every_negotiated_format_is_the_old_registrys_byte_for_byte(metrics_db, accept):
    small_org_with_oddities(metrics_db)
    served = exposition(metrics_db)
    encoder, content_type = choose_encoder(accept)
    pieces, served_type = served.render(accept)
    assert served_type == content_type
    assert b"".join(piece.raw for piece in pieces) == encoder(served.full)


def test_the_whole_scrape_parses_the_same_has_each_family_once_and_passes_promtool(metrics_db):
    small_org_with_oddities(metrics_db)
    served = exposition(metrics_db)
    text = served.body().decode()
    assert parsed(text) == parsed(generate_latest(served.full).decode())
    families = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(families) == len(set(families))
    assert {"v2mom_headcount", "v2mom_time_to_approval_seconds", "v2mom_metrics_events_processed_total",
            "v2mom_cycle_start_timestamp_seconds"} <= set(families)
    assert len([line for line in text.splitlines() if line.startswith("# HELP ")]) == len(families)
    promtool_check(text)


@pytest.mark.parametrize("names", [
    ["v2mom_metrics_events_processed_total"],
    ["v2mom_headcount", "v2mom_approval_ratio"],
    ["v2mom_time_to_approval_seconds_bucket", "v2mom_v2moms"],
    ["v2mom_time_to_approval_seconds_count", "v2mom_time_to_approval_seconds_sum", "v2mom_time_to_approval_seconds"],
    ["no_such_metric"],
])
@pytest.mark.parametrize("accept", [None, ACCEPTS[-1]])
def test_name_filters_are_served_from_the_copy(metrics_db, names, accept):
    """Issue 12, finding 6: ``name[]`` re-read and recounted everything through a registry, per request (and,
    since our collectors have no ``describe``, that registry's restriction found none of them)."""
    small_org_with_oddities(metrics_db)
    served = exposition(metrics_db)
    served.full = None  # a request that reaches the slow path fails here
    # What name[] means: every family restricted to the samples named (collectors without describe included).
    everything = CollectorRegistry(support_collectors_without_names=True)
    for collector in (EngagementCollector(metrics_db, lambda: NOW), PipelineCollector(metrics_db),
                      CycleCollector(FixedCalendar())):
        everything.register(collector)
    encoder, _ = choose_encoder(accept)
    text = served.body(accept, {"name[]": names}).decode()
    assert parsed(text) == parsed(encoder(everything.restricted_registry(names)).decode())
    assert bool(text) == (names != ["no_such_metric"])


def test_the_http_endpoint_serves_a_bounded_number_of_requests_at_once(metrics_db):
    """A thread per request, without bound, before: 16 slow scrapes at once ran 16 threads."""
    served = exposition(metrics_db)
    running, most = [0], [0]
    render = served.render

    def slow_render(accept, params=None):
        running[0] += 1
        most[0] = max(most[0], running[0])
        time.sleep(0.2)
        running[0] -= 1
        return render(accept, params)

    served.render = slow_render
    httpd, _thread = start_http_server(0, "127.0.0.1", served)
    url = f"http://127.0.0.1:{httpd.server_address[1]}/metrics?name[]=v2mom_headcount"
    try:
        with ThreadPoolExecutor(16) as clients:
            codes = list(clients.map(lambda _: urllib.request.urlopen(url, timeout=30).status, range(16)))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert codes == [200] * 16 and 1 < most[0] <= HTTP_THREADS


def test_the_http_endpoint_serves_plain_and_gzip_and_answers_like_prometheus_client(metrics_db):
    small_org_with_oddities(metrics_db)
    served = exposition_for(metrics_db, lambda: NOW)
    httpd, _thread = start_http_server(0, "127.0.0.1", served)
    url = f"http://127.0.0.1:{httpd.server_address[1]}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            assert response.headers.get("Content-Encoding") is None
            plain = response.read()
            assert int(response.headers["Content-Length"]) == len(plain)
        promtool_check(plain.decode())
        request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip", "Accept": ACCEPTS[3]})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            assert response.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
            unpacked = gzip.decompress(response.read()).decode()
        assert unpacked.endswith("# EOF\n") and unpacked.count("# EOF") == 1
        assert "process_cpu_seconds_total" in unpacked and "v2mom_headcount{" in unpacked
        assert _engagement(unpacked) == _engagement(plain.decode())
        options = urllib.request.Request(url, method="OPTIONS")
        with urllib.request.urlopen(options, timeout=30) as response:
            assert response.headers["Allow"] == "OPTIONS,GET"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=30)
        assert refused.value.code == 405
    finally:
        httpd.shutdown()
        httpd.server_close()


def _engagement(text: str) -> dict:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            if not family.name.startswith(("process_", "python_", "v2mom_metrics_engagement_copy_"))  # they move
            for s in family.samples}
