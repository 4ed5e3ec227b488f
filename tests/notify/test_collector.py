"""notify's /metrics over real HTTP: the counters notify-worker writes into ``stats`` (store.py's shapes),
the pending gauge, the reminder conversion ratio, and a clean ``promtool check metrics``."""

import shutil
import subprocess
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.notify import kinds, store
from services.notify.collector import DeliveryCollector

PROMTOOL_HINT = "promtool is missing: install Debian's prometheus package (apt-get install -y prometheus)"
NOW = datetime(2026, 3, 30, 12, 0, tzinfo=UTC)


def inc(db, stat_id: str, fields: dict) -> None:
    """As notify-worker counts: an upserted $inc."""
    db[store.STATS].update_one({"_id": stat_id}, {"$inc": fields}, upsert=True)


def record_sends(db) -> None:
    for _ in range(3):
        inc(db, store.sent_id(kinds.CHECKIN_REMINDER, kinds.EMAIL), {"n": 1})
    inc(db, store.sent_id(kinds.APPROVAL_REQUESTED, kinds.WEBHOOK), {"n": 1})
    inc(db, store.failed_id(kinds.DIGEST, kinds.EMAIL), {"n": 2})
    for seconds in (0.4, 3.0, 3.5, 7200.0, 100_000.0):
        inc(db, store.latency_id(kinds.EMAIL), {"sum": seconds, "count": 1, f"buckets.{store.latency_key(seconds)}": 1})


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        assert response.status == 200
        return response.read().decode()


def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_show_the_stored_counters_and_pass_promtool(notify_api, notify_db):
    record_sends(notify_db)
    notify_db.deliveries.insert_many([
        {"_id": f"d{n}", "status": store.PENDING if n < 3 else store.SENT, "channel": kinds.EMAIL,
         "next_try_at": NOW, "created_at": NOW} for n in range(5)])
    text = scrape(notify_api.http_url)
    got = samples(text)
    assert got[("v2mom_notify_deliveries_sent_total", (("channel", "email"), ("kind", "checkin_reminder")))] == 3
    assert got[("v2mom_notify_deliveries_sent_total", (("channel", "webhook"), ("kind", "approval_requested")))] == 1
    assert got[("v2mom_notify_deliveries_failed_total", (("channel", "email"), ("kind", "digest")))] == 2
    assert got[("v2mom_notify_delivery_latency_seconds_count", (("channel", "email"),))] == 5
    assert got[("v2mom_notify_delivery_latency_seconds_sum", (("channel", "email"),))] == pytest.approx(107_206.9)
    buckets = {dict(labels)["le"]: value for (name, labels), value in got.items()
               if name == "v2mom_notify_delivery_latency_seconds_bucket"}
    assert (buckets["1.0"], buckets["5.0"], buckets["3600.0"], buckets["21600.0"], buckets["+Inf"]) == (1, 3, 3, 4, 5)
    assert got[("v2mom_notify_deliveries_pending", (("channel", "email"),))] == 3
    assert got[("v2mom_notify_deliveries_pending", (("channel", "webhook"),))] == 0
    assert "v2mom_notify_reminder_checkin_conversion_ratio" not in text  # no reminders: undefined, left out

    if shutil.which("promtool") is None:
        pytest.fail(PROMTOOL_HINT)
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0, f"promtool check metrics:\n{check.stdout}{check.stderr}"


def test_an_empty_store_scrapes_cleanly(notify_api):
    text = scrape(notify_api.http_url)
    assert "# TYPE v2mom_notify_deliveries_sent_total counter" in text
    assert 'v2mom_notify_deliveries_pending{channel="email"} 0.0' in text
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0, f"{check.stdout}{check.stderr}"


def test_conversion_ratio_counts_the_28_days_whose_48_hours_have_passed(notify_db):
    today = NOW.date()
    days = {
        today: (50, 0),  # too recent: their 48 hours are not over
        today - timedelta(days=2): (50, 0),
        today - timedelta(days=3): (10, 5),  # the newest day counted
        today - timedelta(days=30): (10, 3),  # the oldest day counted
        today - timedelta(days=31): (100, 0),  # too old
    }
    for day, (reminded, converted) in days.items():
        inc(notify_db, store.reminders_id(day), {"reminded": reminded, "converted": converted})
    registry = CollectorRegistry()
    registry.register(DeliveryCollector(notify_db, lambda: NOW))
    got = samples(generate_latest(registry).decode())
    assert got[("v2mom_notify_reminder_checkin_conversion_ratio", ())] == pytest.approx(8 / 20)
