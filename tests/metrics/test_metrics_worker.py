"""The real metrics-worker process on a RabbitMQ vhost of its own, fed real CloudEvents envelopes.

The expected gauges come from an oracle: the same events applied in process,
in order, once, to a database of their own (the unit tests establish that
this is right). The worker must reach exactly that state whatever the broker
does to the stream: duplicates, reordering, poison, and a SIGKILL mid-stream.
"""

import functools
import json
import os
import random
import time

import pytest

from services.metrics import store
from tests.support.metrics import ago, apply_all, CheckinLog, coverage, cycle_event, quarter_team, raw_event, scrape, SmallOrg
from tests.support import processes
from tests.support.metrics_service import dead_letters, handled, publish, Worker
from v2mom.v1 import checkins_pb2

@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


wait_for = functools.partial(processes.wait_for, timeout=90.0, every=0.2)


def expected_for(oracle_db, events) -> dict:
    apply_all(oracle_db, events)
    return scrape(oracle_db)


# --- the tests ---------------------------------------------------------------------------------------


def test_goals_and_checkins_events_reach_every_gauge(databases, connection, worker):
    worker_db, oracle_db = databases
    events = SmallOrg().events()
    expected = expected_for(oracle_db, events)

    publish(connection, events)
    wait_for(lambda: handled(worker_db) >= len(events), message="the worker did not handle every event")
    assert scrape(worker_db) == expected
    processed = {(doc["_id"], event_type): n for doc in store.pipeline(worker_db)
                 for event_type, n in (doc.get("processed") or {}).items()}
    published = {}
    for event in events:
        key = (event["source"].rsplit("/", 1)[1], event["type"])
        published[key] = published.get(key, 0) + 1
    assert processed == published
    assert dead_letters(connection) == []


def test_duplicates_reordering_and_poison_change_no_gauge_and_poison_is_dead_lettered(databases, connection, worker):
    worker_db, oracle_db = databases
    events = SmallOrg().events()
    expected = expected_for(oracle_db, events)
    noisy = events + random.Random(7).sample(events, 20)
    random.Random(7).shuffle(noisy)
    poison = [
        raw_event("goals", "v2mom_approved", {"v2momId": "v-ann", "revision": "not a number"}),
        raw_event("checkins", "checkin_recorded", {"checkin": {"id": "c", "v2momId": "v-ann"}}),
        {**events[0], "id": "evt_badtime", "time": "yesterday"},
    ]
    undecodable = [("goals", "v2mom_created", b"{not json"), ("checkins", "progress_changed", b'{"hello": "not a cloudevent"}'),
                   # goals' approval through the check-ins exchange: a forgery, whatever its payload
                   ("checkins", "checkin_recorded", json.dumps({**poison[0], "id": "evt_forged"}).encode())]

    publish(connection, noisy[:40] + poison + noisy[40:], raw=undecodable)
    wait_for(lambda: handled(worker_db) >= len(noisy) + len(poison) + len(undecodable),
             message="the worker did not handle every delivery")
    assert scrape(worker_db) == expected

    letters = dead_letters(connection)
    assert len(letters) == len(poison) + len(undecodable)
    assert {m.headers["x-death"][0]["reason"] for m in letters} == {"rejected"}
    counted = {(doc["_id"], event_type, reason): n for doc in store.pipeline(worker_db)
               for event_type, reasons in (doc.get("dead_lettered") or {}).items() for reason, n in reasons.items()}
    assert counted == {
        ("goals", "v2mom_approved", "invalid"): 1,
        ("checkins", "checkin_recorded", "invalid"): 1,
        ("goals", "org_unit_upserted", "invalid"): 1,
        ("goals", "v2mom_created", "undecodable"): 1,
        ("checkins", "progress_changed", "malformed"): 1,
        ("checkins", "checkin_recorded", "wrong_source"): 1,
    }
    assert worker.process.poll() is None, "the worker died on a poison message"


def busy_stream() -> list[dict]:
    """The small org, then a few hundred check-ins and progress changes on two hot V2MOMs."""
    org = SmallOrg()
    log = CheckinLog()
    rng = random.Random(11)
    for n in range(240):
        journey = org.ann if n % 3 else org.acme
        item = rng.choice(journey.measures)
        log.record(journey, item, ago(days=rng.randint(0, 34), minutes=n), recorded=ago(minutes=240 - n))
        if n % 40 == 39:
            log.set_progress(journey, 10 + n, own=n / 3, tree=n / 4, off_track=n % 2)
    log.go_stale(org.acme, "m1", last_checkin=ago(days=40), overdue=True, kind=checkins_pb2.ITEM_KIND_MEASURE)
    return org.events() + log.events


def test_killing_the_worker_mid_stream_loses_and_double_counts_nothing(databases, connection, worker):
    worker_db, oracle_db = databases
    events = busy_stream()
    expected = expected_for(oracle_db, events)

    publish(connection, events)
    for kill_after in (len(events) // 6, len(events) // 2, len(events) * 3 // 4):
        wait_for(lambda: handled(worker_db) >= kill_after, every=0.05,
                 message=f"fewer than {kill_after} events were handled")
        worker.kill()  # SIGKILL: no clean stop, unacked messages go back to their queues
        worker.start()

    def converged():
        return scrape(worker_db) == expected

    wait_for(converged, timeout=120, every=0.5, message="the gauges never reached the oracle's values")
    time.sleep(1.0)  # and they stay there: nothing redelivered late counts twice
    assert scrape(worker_db) == expected
    assert dead_letters(connection) == []


def test_events_wait_in_their_queues_while_a_rebuild_holds_the_lease(databases, connection, worker):
    from services.metrics import control

    worker_db, oracle_db = databases
    events = SmallOrg().events()
    expected = expected_for(oracle_db, events)
    assert control.take_rebuild_lease(worker_db, "test")
    time.sleep(1.0)  # the worker's pause switch notices within half a second
    publish(connection, events)
    time.sleep(2.0)
    assert worker_db[store.AGGREGATES].count_documents({}) == 0, "an event was applied during the rebuild"
    control.release_rebuild_lease(worker_db, "test")
    wait_for(lambda: scrape(worker_db) == expected, message="the events were not applied after the rebuild")
    assert dead_letters(connection) == []


def test_a_weekly_snapshot_is_written_by_the_timer(settings, databases, connection):
    worker_db, _ = databases
    env = {**os.environ, "MONGO_URI": settings.mongo_uri, "MONGO_DB": worker_db.name, "AMQP_URI": settings.amqp_uri,
           "METRICS_SNAPSHOT_INTERVAL_SECONDS": "0.5", "LOG_LEVEL": "WARNING"}
    worker = Worker(env, connection)
    worker.start()
    try:
        publish(connection, SmallOrg().events()[:12])
        wait_for(lambda: worker_db[store.HISTORY].count_documents({}) > 0, message="no snapshot was written")
    finally:
        worker.stop()
    assert worker.process.returncode == 0



def test_the_worker_learns_quarters_from_goals_cycle_events_and_coverage_follows_them(databases, connection, worker):
    worker_db, _ = databases
    events, _, _ = quarter_team()
    stream = events + [cycle_event(revision=2), cycle_event(quarters=(), revision=1)]  # the older one, late
    publish(connection, stream)
    wait_for(lambda: handled(worker_db) >= len(stream), message="the worker did not handle every event")
    assert store.cycle_quarters(worker_db)["FY2027"][-1] == ("2026-11-24", "2027-01-31")
    assert coverage(worker_db) == (0, 0.0)  # last checked in during Q3: not covered in Q4
