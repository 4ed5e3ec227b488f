"""A V2MOM transferred to a successor (goals' ``v2mom_transferred``) counts for its new owner and, for an
individual V2MOM, the new owner's unit, from that event on; ``v2mom_items_reassigned`` changes nothing metrics
counts. In process (any arrival order, replays) and through the real metrics-worker on a broker.

The reference is the same org in which the transferred V2MOMs were the successors' from the start: after the
transfer the gauges must be exactly those.
"""

import copy
import functools
import random
import uuid

import pymongo
import pytest

from services.goals import events as goal_events
from services.platform.bus.events import to_wire
from tests.support import processes
from tests.support.metrics import ago, apply_all, at, Journey, LEVELS, person, scrape, SmallOrg, STATES, _stamp, value
from tests.support.metrics_service import dead_letters, handled, publish
from v2mom.v1 import events_pb2

wait_for = functools.partial(processes.wait_for, timeout=90.0, every=0.2)


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


# v-ann (ann's published individual V2MOM in platform) goes to eve in sales, whose own V2MOM is archived;
# v-vp (vp's department V2MOM in eng, changes requested) goes to the ceo and stays with eng.
TRANSFERS = (("ann", "v-ann", "eve", "sales"), ("vp", "v-vp", "ceo", "acme"))


def _v2mom_event(journey: Journey, event_type: str, moment, **extra) -> dict:
    journey.revision += 1
    data = events_pb2.V2MOMEventData(
        v2mom_id=journey.v2mom_id, revision=journey.revision, owner_id=journey.owner, org_unit_id=journey.unit,
        level=LEVELS[journey.level], cycle_id=journey.cycle, state=STATES[journey.state],
        previous_state=STATES[journey.state], content=journey.content(), **extra,
    )
    _stamp(data, "create_time", moment)
    _stamp(data, "submit_time", journey.submit_time)
    _stamp(data, "publish_time", journey.publish_time)
    return at(to_wire(goal_events.v2mom_event(event_type, data)), moment)


def transfer(journey: Journey, new_owner: str, new_owner_unit: str, moment) -> dict:
    """The event goals publishes for TransferV2MOM: a new revision naming the successor (and their unit, for an
    individual V2MOM), the state and content unchanged."""
    previous = journey.owner
    journey.owner = new_owner
    paths = ["owner_id"]
    if journey.level == "individual" and journey.unit != new_owner_unit:
        journey.unit = new_owner_unit
        paths.append("org_unit_id")
    return _v2mom_event(journey, "v2mom_transferred", moment, previous_owner_id=previous, actor_id="hr",
                        changed_paths=paths, reason="owner left")


def reassign_items(journey: Journey, moment) -> dict:
    return _v2mom_event(journey, "v2mom_items_reassigned", moment, actor_id="system", reason="owner left: x left",
                        changed_paths=[f"content.methods[{journey.methods[0]}].accountable_id"])


def transferred_org() -> tuple[list[dict], list[dict]]:
    """(the small org's events, the transfers and a later hand-over of items)."""
    org = SmallOrg()
    journeys = {journey.v2mom_id: journey for journey in org.journeys}
    moves = []
    for n, (_, v2mom_id, new_owner, new_unit) in enumerate(TRANSFERS):
        moves.append(transfer(journeys[v2mom_id], new_owner, new_unit, ago(hours=3 - n)))
    moves.append(reassign_items(journeys["v-ann"], ago(minutes=30)))
    return org.events(), moves


def born_there() -> list[dict]:
    """The small org as if the successors had owned those V2MOMs from the start."""
    events = copy.deepcopy(SmallOrg().events())
    successors = {v2mom_id: (owner, unit) for _, v2mom_id, owner, unit in TRANSFERS}
    for event in events:
        data = event["data"]
        if event["type"].startswith("v2mom_") and data.get("v2momId") in successors:
            owner, unit = successors[data["v2momId"]]
            data["ownerId"] = owner
            if data["level"] == "ORG_LEVEL_INDIVIDUAL":
                data["orgUnitId"] = unit
    return events


@pytest.fixture
def reference(mongo_uri):
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    db = client[f"metrics_test_{uuid.uuid4().hex[:10]}"]
    apply_all(db, born_there())
    yield scrape(db)
    client.drop_database(db.name)
    client.close()


def test_a_transfer_moves_the_v2moms_counts_to_the_new_owner_and_unit(metrics_db, reference):
    events, moves = transferred_org()
    apply_all(metrics_db, events)
    before = scrape(metrics_db)
    g = lambda samples, name, unit, **labels: value(samples, name, unit, **labels)  # noqa: E731
    assert g(before, "v2mom_people_with_v2mom", "platform") == 2 and g(before, "v2mom_people_with_v2mom", "sales") == 1

    apply_all(metrics_db, moves)
    after = scrape(metrics_db)
    assert after == reference
    # ann no longer has a V2MOM in platform; eve (whose own is archived) now has one in sales, with its counts.
    assert g(after, "v2mom_people_with_v2mom", "platform") == 1
    assert g(after, "v2mom_people_with_v2mom", "sales") == 2 and g(after, "v2mom_creation_ratio", "sales") == 1.0
    assert g(after, "v2mom_v2moms", "sales", state="published") == 1
    assert not g(after, "v2mom_v2moms", "platform", state="published")
    assert g(after, "v2mom_tracked_items", "sales") == 3 and g(after, "v2mom_tracked_items", "platform") == 0
    # a unit V2MOM stays with its unit: the vp no longer has one, the ceo (who has acme's) counts once
    assert g(after, "v2mom_people_with_v2mom", "eng") == 0
    assert g(after, "v2mom_v2moms", "eng", state="changes_requested") == 1
    assert g(after, "v2mom_people_with_v2mom", "acme") == 1

    apply_all(metrics_db, moves + events)  # replays count once
    assert scrape(metrics_db) == reference


def test_a_transferred_v2mom_follows_its_new_owner_when_they_move(metrics_db, mongo_uri):
    events, moves = transferred_org()
    moved = person("eve", "platform", revision=2)
    apply_all(metrics_db, events + moves + [moved])
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    db = client[f"metrics_test_{uuid.uuid4().hex[:10]}"]
    try:
        apply_all(db, born_there() + [moved])
        assert scrape(metrics_db) == scrape(db)
        assert value(scrape(db), "v2mom_people_with_v2mom", "platform") == 2
    finally:
        client.drop_database(db.name)
        client.close()


def test_transfers_in_any_arrival_order_with_duplicates_give_the_same_gauges(mongo_uri, reference):
    events, moves = transferred_org()
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    try:
        for seed in (1, 2, 3, 4):
            db = client[f"metrics_test_{uuid.uuid4().hex[:10]}"]
            rng = random.Random(seed)
            stream = events + moves + rng.sample(events, 10) + moves
            rng.shuffle(stream)
            if seed % 2:
                stream = moves + stream  # the transfer before the V2MOM and its new owner are known
            apply_all(db, stream)
            assert scrape(db) == reference, f"arrival order {seed} changed a gauge"
            client.drop_database(db.name)
    finally:
        client.close()


# --- the real worker ------------------------------------------------------------------------------


def test_the_worker_follows_transfers_once_in_any_order(databases, connection, worker, reference):
    worker_db, _ = databases
    events, moves = transferred_org()
    # The transfers first (before their V2MOMs, their new owners, anything), then the org shuffled, then the
    # transfers and a few others again.
    rng = random.Random(5)
    shuffled = list(events)
    rng.shuffle(shuffled)
    stream = moves + shuffled + moves + rng.sample(events, 10)
    publish(connection, stream)
    wait_for(lambda: handled(worker_db) >= len(stream), message="the worker did not handle every event")
    assert scrape(worker_db) == reference
    assert dead_letters(connection) == []
    processed = {event_type: n for doc in worker_db["pipeline"].find({"_id": "goals"})
                 for event_type, n in (doc.get("processed") or {}).items()}
    assert processed["v2mom_transferred"] == 4 and processed["v2mom_items_reassigned"] == 2
