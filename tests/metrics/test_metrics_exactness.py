"""Exactness: every engagement gauge on a live scrape equals a value recomputed from the source services' APIs.

The whole pipeline runs for real on a RabbitMQ vhost of its own: goals-api (in
process) with goals-worker relaying its outbox, checkins-api (in process) with
checkins-worker, the metrics-worker process consuming both, and metrics-api
serving /metrics over HTTP. The organisation is the goals demo seed, the
check-ins demo history (deploy/demo/checkins_seed.py), and a scripted week on top:
a submission, an approval, a request for changes, a move, a V2MOM transferred (TransferV2MOM) to
someone in another team, and a leaver.

The expected values come from tests/support/exactness.py, which reads only the
source services' APIs. metrics-api's clock is pinned to the moment of
comparison, so windows and ages are evaluated at the same instant on both sides.
"""

import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pymongo
import pytest

from deploy.demo.calendar import current_cycle
from deploy.demo.checkins_seed import seed as seed_checkins
from deploy.demo.goals_seed import seed as seed_goals
from tests.support.broker import queue_exists
from tests.support.exactness import (
    CHECKINS_WORKER_QUEUES, DEMO_ADMIN, FAMILIES, engagement, expected_samples, mismatches, outbox_pending, queued,
    read_sources, scripted_week, wait_quiet,
)
from tests.support.metrics_service import scrape, start_metrics_api
from tests.support.processes import log_tail


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


@pytest.fixture
def metrics_settings(settings):
    return replace(settings, service="metrics", mongo_db=f"metrics_test_{uuid.uuid4().hex[:10]}")


@pytest.fixture
def mongo(settings):
    client = pymongo.MongoClient(settings.mongo_uri, tz_aware=True)
    yield client
    client.close()


# --- the test ---------------------------------------------------------------------------------------------


def test_every_gauge_equals_a_recomputation_from_the_sources(
        settings, db, mongo, connection, metrics_settings, goals_api, checkins_settings, checkins_api,
        goals_worker, checkins_worker, metrics_worker):
    started = time.monotonic()
    checkins_db = mongo[checkins_settings.database_name]
    # metrics_worker's queues exist before anything is published
    deadline = time.monotonic() + 30
    while not all(queue_exists(connection, name) for name in CHECKINS_WORKER_QUEUES):
        assert checkins_worker.poll() is None, log_tail(checkins_worker)
        assert time.monotonic() < deadline, "checkins-worker never declared its queues"
        time.sleep(0.1)
    clock = [datetime.now(UTC)]
    goals_addr, checkins_addr = f"127.0.0.1:{goals_api.port}", f"127.0.0.1:{checkins_api.port}"
    metrics, stop_api = start_metrics_api(metrics_settings, goals_addr, checkins_addr, lambda: clock[0])
    try:
        print(f"setup {time.monotonic() - started:.1f}s")
        seed_goals(settings, goals_api_address=goals_addr, progress=False)
        print(f"goals seed {time.monotonic() - started:.1f}s")
        report = seed_checkins(settings.auth, goals_addr, checkins_addr, progress=False, catch_up_wait=0)
        assert report.recorded > 100, report.summary()
        admin_goals, admin_checkins = goals_api(DEMO_ADMIN), checkins_api(DEMO_ADMIN)
        done = scripted_week(db, goals_api, with_transfer=True, with_planning=True)
        assert {"approved", "changes_requested", "submitted", "moved", "transferred", "left", "withdrawn",
                "obstacles_changed", "copied"} <= done.keys(), done
        assert len(done["obstacles_changed"]) == 2, done  # one resolved, one reopened

        print(f"check-ins seed and week {time.monotonic() - started:.1f}s")
        wait_quiet(metrics.http_port, [db, checkins_db], settings.amqp_uri)
        clock[0] = datetime.now(UTC).replace(microsecond=0)  # the moment both sides evaluate windows and ages at
        print(f"quiet {time.monotonic() - started:.1f}s")
        families, scraped = engagement(scrape(metrics.http_port))
        expected = expected_samples(read_sources(admin_goals, admin_checkins), clock[0])
        assert engagement(scrape(metrics.http_port))[1] == scraped, "the gauges moved while the sources were read"
        assert outbox_pending(db) + outbox_pending(checkins_db) + queued(settings.amqp_uri) == 0
    finally:
        stop_api()
        mongo.drop_database(metrics_settings.database_name)
        mongo.drop_database(checkins_settings.database_name)

    assert families == FAMILIES, f"families not checked here: {families - FAMILIES}; missing: {FAMILIES - families}"
    company = frozenset({"org_unit": "acme", "org_unit_name": "Acme Robotics", "level": "company",
                         "cycle": current_cycle(), "scope": "subtree"}.items())
    for name in ("v2mom_headcount", "v2mom_trailing_checkins", "v2mom_stale_items", "v2mom_overdue_items",
                 "v2mom_pending_approvals", "v2mom_off_track_measures", "v2mom_checked_in_v2moms",
                 "v2mom_time_to_approval_seconds_count", "v2mom_open_obstacles"):
        assert expected[(name, company)] > 0, f"{name}: the scenario does not exercise it"
    copied_cycle = done["copied"][2]  # the copy forward counts as a creation in its new cycle
    assert sum(value for (name, labels), value in scraped.items()
               if name == "v2mom_people_with_v2mom" and ("cycle", copied_cycle) in labels
               and ("scope", "direct") in labels) == 1, "the copy forward is not counted in its new cycle"
    wrong = mismatches(expected, scraped)
    assert not wrong, f"{len(wrong)} of {len(expected)} samples missing, extra or wrong:\n" + "\n".join(wrong[:60])
    assert time.monotonic() - started < 180  # ~2 min, most of it recording the check-ins demo history
