"""Two replicas of every api and worker under a mixed load stay exact, and handle every event once in effect.

Every process is a real one (tests/support/cluster.py): goals-api, checkins-api, goals-worker,
checkins-worker, metrics-worker and notify-worker twice each, metrics-api twice in process. The load goes
through the APIs, spread over their replicas by gRPC's round_robin: the demo organisation's creates,
submissions and approvals, then its eight weeks of check-ins while a scripted week (an approval, a request
for changes, a submission, a move, a leaver) runs at the same time. Then:

- every queue had two competing consumers;
- every engagement gauge, on both metrics-api replicas, equals the recomputation from the source APIs
  (tests/support/exactness.py): an event counted twice, or lost, would show;
- every check-in the clients recorded is stored once;
- each delivery notify sent reached the mail sink once (its Message-ID is stable across retries);
- the singleton jobs (each service's outbox relay, the staleness sweep, metrics' history) ran under leases.
"""

import threading
import time
from collections import Counter
from datetime import UTC, datetime

import pytest

from deploy.demo.checkins_seed import seed as seed_checkins
from deploy.demo.goals_seed import seed as seed_goals
from tests.support.exactness import (
    DEMO_ADMIN, FAMILIES, a_leaver, engagement, expected_samples, mismatches, outbox_pending, pages, read_sources,
    scripted_week, wait_quiet,
)
from tests.support.metrics_service import scrape
from tests.support.cluster import consumers_per_queue
from v2mom.v1 import checkins_pb2, goals_pb2


def notify_settled(notify_db) -> bool:
    return notify_db.deliveries.count_documents({"status": "PENDING"}) == 0 and outbox_pending(notify_db) == 0


@pytest.mark.timeout(600)
def test_two_replicas_of_every_process_stay_exact_under_a_mixed_load(settings, goals_settings, cluster,
                                                                      metrics_apis, sink, stores, apis):
    started = time.monotonic()
    metrics, clock = metrics_apis
    goals_db, checkins_db, notify_db = stores["goals"], stores["checkins"], stores["notify"]
    goals, checkins = apis
    queues = consumers_per_queue(settings.amqp_uri)
    assert queues and all(n == 2 for n in queues.values()), f"every queue has both replicas consuming: {queues}"

    seed_goals(goals_settings, goals_api_address=cluster.target("goals"), progress=False)
    print(f"goals seed {time.monotonic() - started:.1f}s")
    recorded = {}

    def record_history():
        recorded["report"] = seed_checkins(settings.auth, cluster.target("goals"), cluster.target("checkins"),
                                           progress=False, catch_up_wait=0)
    history = threading.Thread(target=record_history)
    history.start()
    done = scripted_week(goals_db, goals, with_leaver=False)  # while the check-ins go in
    history.join(timeout=600)
    assert not history.is_alive() and "report" in recorded, "the check-in history never finished"
    # Someone leaves once their history is in: the seed's check-ins in their name would be refused.
    owners = {v.owner_id for v in pages(goals(DEMO_ADMIN).ListV2MOMs, goals_pb2.ListV2MOMsRequest(page_size=200),
                                        "v2moms")}
    done.update(a_leaver(goals_db, owners - {done["moved"][0]}))
    report = recorded["report"]
    assert report.recorded > 100, report.summary()
    assert {"approved", "changes_requested", "submitted", "moved", "left"} <= done.keys(), done
    print(f"check-ins and the week {time.monotonic() - started:.1f}s")

    wait_quiet(metrics[0].http_port, [goals_db, checkins_db, notify_db], settings.amqp_uri, timeout=180)
    deadline = time.monotonic() + 60
    while not notify_settled(notify_db):
        assert time.monotonic() < deadline, "notify never sent what it had"
        time.sleep(0.5)
    clock[0] = datetime.now(UTC).replace(microsecond=0)
    print(f"quiet {time.monotonic() - started:.1f}s")
    families, scraped = engagement(scrape(metrics[0].http_port))
    expected = expected_samples(read_sources(goals(DEMO_ADMIN), checkins(DEMO_ADMIN)), clock[0])
    second = engagement(scrape(metrics[1].http_port))[1]
    stored_checkins = sum(
        len(pages(checkins(DEMO_ADMIN).ListCheckins, checkins_pb2.ListCheckinsRequest(
            v2mom_id=v2mom.id, include_superseded=True, page_size=200), "checkins"))
        for v2mom in pages(goals(DEMO_ADMIN).ListV2MOMs, goals_pb2.ListV2MOMsRequest(page_size=200), "v2moms"))
    leases = {name: {doc["_id"] for doc in stores[name].leases.find()} for name in stores}

    assert families == FAMILIES
    wrong = mismatches(expected, scraped)
    assert not wrong, f"{len(wrong)} of {len(expected)} samples missing, extra or wrong:\n" + "\n".join(wrong[:60])
    assert second == scraped, "the two metrics-api replicas disagree"
    assert stored_checkins == report.recorded + report.corrected, (stored_checkins, report.summary())

    mail = Counter(message["Message-ID"] for message in sink.messages())
    assert mail, "notify sent no mail: the seed's submissions ask approvers by email"
    twice = {message_id: n for message_id, n in mail.items() if n > 1}
    assert not twice, f"deliveries sent more than once: {twice}"

    assert leases == {"goals": {"outbox_relay", "due_directory_changes"}, "checkins": {"outbox_relay", "staleness"},
                      "metrics": {"history"}, "notify": {"outbox_relay"}}, leases
    assert time.monotonic() - started < 420
