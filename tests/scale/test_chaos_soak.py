"""The chaos soak: two replicas of everything under a mixed load, while a chaos loop SIGKILLs random workers and
API replicas, restarts the broker once and pauses the store for a few seconds. Nothing is lost or doubled.

The load (tests/support/chaos.py) records check-ins on every published measure from two threads at a steady rate and walks
people through create, submit and approve from a fourth; every call is retried until it succeeds, with its
idempotency key or request id, as a careful client would. When the chaos is over and the pipeline is quiet:

- every call the clients saw succeed is stored exactly once (each check-in key once, each create once, each
  approval published);
- every engagement gauge equals the recomputation from the source APIs (tests/support/exactness.py);
- no queue holds a message, and no dead-letter queue holds anything but the one event this test poisoned.

It prints the figures (calls, retries, kills, restarts, events, lag p99 during and after the faults); a longer
run with the same parts is ``python -m bench.chaos`` (bench/README.md).
"""

import json
import os
import time
from collections import Counter
from datetime import UTC, datetime

import kombu
import pytest

from deploy.demo.calendar import current_cycle
from deploy.demo.goals_seed import seed as seed_goals
from services.platform.bus.events import exchange_name
from tests.support.cluster import queue_depths
from tests.support.chaos import ApprovalLoad, ChaosLoop, CheckinLoad, dead_letter_ids, lag_buckets, lag_p99, measures_to_check_in
from tests.support.exactness import (
    DEMO_ADMIN, engagement, expected_samples, mismatches, pages, read_sources, wait_quiet,
)
from tests.support.goals import valid_content
from tests.support.metrics_service import scrape
from v2mom.v1 import checkins_pb2, goals_pb2

# About three minutes in the suite; bench/chaos.py runs it longer and keeps the figures (V2MOM_SOAK_REPORT).
CHAOS_SECONDS = float(os.environ.get("V2MOM_SOAK_SECONDS") or 75.0)
REPORT = os.environ.get("V2MOM_SOAK_REPORT")
POISON_ID = "soak-poison-0001"


def poison(amqp_uri: str) -> None:
    """A check-in event whose data is not a check-in: each consumer of checkin_recorded must dead-letter it."""
    with kombu.Connection(amqp_uri) as connection:
        exchange = kombu.Exchange(exchange_name("checkins"), type="topic", durable=True)
        envelope = {"specversion": "1.0", "id": POISON_ID, "source": "/v2mom/checkins", "type": "checkin_recorded",
                    "time": datetime.now(UTC).isoformat(), "datacontenttype": "application/json",
                    "data": {"checkin": "not a check-in"}}
        kombu.Producer(connection.default_channel).publish(
            json.dumps(envelope), exchange=exchange, routing_key="checkin_recorded", delivery_mode=2,
            content_type="application/cloudevents+json", content_encoding="utf-8", declare=[exchange])


def journeys(goals_admin, cycle: str) -> list[tuple[str, str]]:
    """(person, manager) for active people with a manager and no V2MOM in the cycle."""
    people = pages(goals_admin.ListPeople, goals_pb2.ListPeopleRequest(page_size=200), "people")
    owners = {v.owner_id for v in pages(goals_admin.ListV2MOMs, goals_pb2.ListV2MOMsRequest(page_size=200), "v2moms")
              if v.cycle_id == cycle}
    return [(p.id, p.manager_id) for p in people if p.active and p.manager_id and p.id not in owners]


@pytest.mark.timeout(600 + 3 * CHAOS_SECONDS)
def test_the_chaos_soak_loses_nothing_and_doubles_nothing(settings, goals_settings, store_process, cluster,
                                                           metrics_apis, stores, apis):
    started = time.monotonic()
    metrics, clock = metrics_apis
    goals_db, checkins_db, notify_db = stores["goals"], stores["checkins"], stores["notify"]
    goals, checkins = apis
    chaos = None
    try:
        seed_goals(goals_settings, goals_api_address=cluster.target("goals"), progress=False)
        cycle = current_cycle()
        checkin_load = CheckinLoad(checkins, measures_to_check_in(goals(DEMO_ADMIN)))
        approval_load = ApprovalLoad(goals, journeys(goals(DEMO_ADMIN), cycle), cycle,
                                     lambda person: valid_content(owner=person))
        assert checkin_load.measures and approval_load.people
        poison(settings.amqp_uri)
        wait_quiet(metrics[0].http_port, [goals_db, checkins_db], settings.amqp_uri, timeout=240)
        before = lag_buckets(metrics[0].http_port)  # the seed's events are in: the lag from here is the soak's
        print(f"seeded {time.monotonic() - started:.1f}s")

        threads = checkin_load.run() + approval_load.run()
        chaos = ChaosLoop(cluster, store_process, CHAOS_SECONDS)
        chaos.run().join(timeout=CHAOS_SECONDS + 300)
        during = lag_buckets(metrics[0].http_port)
        checkin_load.stop.set()
        approval_load.stop.set()
        chaos.settle()
        for thread in threads:
            thread.join(timeout=120)
        assert not [t for t in threads if t.is_alive()], "a load thread never finished its last call"
        assert not checkin_load.errors + approval_load.errors, checkin_load.errors + approval_load.errors
        assert not chaos.faults.errors, chaos.faults.errors
        print(f"chaos over {time.monotonic() - started:.1f}s")

        wait_quiet(metrics[0].http_port, [goals_db, checkins_db, notify_db], settings.amqp_uri, timeout=240)
        clock[0] = datetime.now(UTC).replace(microsecond=0)
        after = lag_buckets(metrics[0].http_port)
        _, scraped = engagement(scrape(metrics[0].http_port))
        expected = expected_samples(read_sources(goals(DEMO_ADMIN), checkins(DEMO_ADMIN)), clock[0])
        stored = Counter(c.id for m in {(m.v2mom_id) for m in checkin_load.measures}
                         for c in pages(checkins(DEMO_ADMIN).ListCheckins, checkins_pb2.ListCheckinsRequest(
                             v2mom_id=m, include_superseded=True, page_size=200), "checkins"))
        created = {request_id: goals(DEMO_ADMIN).GetV2MOM(goals_pb2.GetV2MOMRequest(id=v2mom_id))
                   for request_id, v2mom_id in approval_load.created.items()}
        owned = Counter(v.owner_id for v in pages(goals(DEMO_ADMIN).ListV2MOMs, goals_pb2.ListV2MOMsRequest(
            page_size=200), "v2moms") if v.cycle_id == cycle)
        depths = queue_depths(settings.amqp_uri)
        dead_letters = dead_letter_ids(settings.amqp_uri, [name for name in depths if name.endswith(".dlq")])
    finally:
        if chaos is not None:
            chaos.stop.set()

    faults = chaos.faults
    checkin_calls = checkin_load.tally
    figures = {
        "chaos_seconds": CHAOS_SECONDS, "checkins_recorded": checkin_calls.calls,
        "goals_calls": approval_load.tally.calls, "journeys": len(approval_load.approved),
        "retried": checkin_calls.retries + approval_load.tally.retries,
        "retried_by_status": dict(checkin_calls.by_status + approval_load.tally.by_status),
        "kills": len(faults.kills), "kills_by_kind": dict(Counter(name.rsplit("-", 1)[0] for name in faults.kills)),
        "broker_restarts": faults.broker_restarts, "store_pauses": faults.store_pauses,
        "events_handled_by_metrics": sum(b.get(float("inf"), 0) for b in after.values())
        - sum(b.get(float("inf"), 0) for b in before.values()),
        "lag_p99_during_s": lag_p99(before, during), "lag_p99_after_s": lag_p99(during, after),
        "seconds": round(time.monotonic() - started, 1),
    }
    print(f"\nchaos soak: {json.dumps(figures)}")
    if REPORT:
        with open(REPORT, "w") as out:
            json.dump(figures, out, indent=2)

    assert len(faults.kills) >= CHAOS_SECONDS / 8 and faults.broker_restarts == 1 and faults.store_pauses == 1, faults
    assert checkin_calls.calls > 50, "too little load to prove anything"
    assert len(checkin_load.recorded) == len(set(checkin_load.recorded.values())), "two keys came back as one check-in"
    missing = set(checkin_load.recorded.values()) - stored.keys()
    assert not missing, f"{len(missing)} check-ins the clients saw recorded are not stored"
    assert set(stored) - set(checkin_load.recorded.values()) == set(), "check-ins stored that no client recorded"
    assert all(owned[person] == 1 for person, _ in approval_load.people[:len(created)]), "a create was stored twice"

    wrong = mismatches(expected, scraped)
    assert not wrong, f"{len(wrong)} of {len(expected)} samples missing, extra or wrong:\n" + "\n".join(wrong[:60])
    live = {name: n for name, n in depths.items() if n and not name.endswith((".dlq", ".unrouted"))}
    assert not live, f"messages left in queues: {live}"
    dead = {name: ids for name, ids in dead_letters.items() if ids}
    assert dead and all(ids == [POISON_ID] for ids in dead.values()), f"dead letters beyond the poisoned event: {dead}"
    unpublished = {request_id: goals_pb2.V2MOMState.Name(v.state) for request_id, v in created.items()
                   if v.state != goals_pb2.V2MOM_STATE_PUBLISHED}
    histories = {request_id: [(r.revision, r.action, r.actor_id, goals_pb2.V2MOMState.Name(r.state))
                              for r in goals(DEMO_ADMIN).ListRevisions(goals_pb2.ListRevisionsRequest(
                                  v2mom_id=created[request_id].id, page_size=200)).revisions]
                 for request_id in unpublished}
    assert not unpublished, f"approved V2MOMs not published at the end: {unpublished}; revisions: {histories}"
