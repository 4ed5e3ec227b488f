"""checkins-worker as a real process: RabbitMQ, the wire Mongo server, a real goals-api and goals-worker.

Goals publishes approvals and archives through its own outbox and worker;
check-ins are written the way checkins-api writes them (the document with
its event in the outbox) and leave through this worker's relay. Everything
is asserted on the store and on the wire (``checkins.events``), and every
event seen on the wire must match docs/events.asyncapi.yaml.
"""

import json
import time
from datetime import UTC, datetime, timedelta

import kombu
import pytest
from google.protobuf import field_mask_pb2
from google.type import date_pb2

from services.checkins import events as checkin_events
from services.checkins.progress_store import PROGRESS
from services.checkins.clock_store import ITEM_CLOCKS
from services.platform.bus.events import to_wire
from services.platform.bus.outbox import new_document_with_events
from tests.support.broker import queue_exists
from tests.support.catalogue import validate_event
from tests.support.checkin_events import approved, archived, checkin_data as event_data, v2mom_data
from tests.support.checkins import FY2027_FIRST_DAY, FY2027_LAST_DAY, world_content
from tests.support.events_probe import EventProbe
from tests.support.processes import log_tail, wait_for
from v2mom.v1 import checkins_pb2, common_pb2, goals_pb2

HANDLERS = ("on_v2mom_approved", "on_v2mom_archived", "on_checkin_recorded", "on_checkin_corrected", "on_progress_changed")
QUEUES = {
    "on_v2mom_approved": "evt-goals-v2mom_approved--checkins_worker.on_v2mom_approved",
    "on_v2mom_archived": "evt-goals-v2mom_archived--checkins_worker.on_v2mom_archived",
    "on_checkin_recorded": "evt-checkins-checkin_recorded--checkins_worker.on_checkin_recorded",
    "on_checkin_corrected": "evt-checkins-checkin_corrected--checkins_worker.on_checkin_corrected",
    "on_progress_changed": "evt-checkins-progress_changed--checkins_worker.on_progress_changed",
}
WEEKLY = checkins_pb2.CADENCE_WEEKLY


def checkin_data(v2mom_id, item_id="msr-nps", cadence=checkins_pb2.CADENCE_BIWEEKLY, **fields):
    """A check-in's event data as checkins-api writes it: it always names the cycle's cadence."""
    return event_data(v2mom_id, item_id, cadence=cadence, **fields)


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


@pytest.fixture
def cdb(checkins_db):
    """Here the worker's database: the one checkins_settings names."""
    return checkins_db


EXCHANGE = "checkins.events"


@pytest.fixture
def probe(settings):
    """Bound before anything publishes, so it sees every event of the test; each must match the catalogue."""
    probe = EventProbe(settings.amqp_uri, EXCHANGE)
    yield probe
    probe.settle(quiet_seconds=0.3)
    probe.close()
    for event in probe.received:
        validate_event(event, exchange=EXCHANGE)


@pytest.fixture
def worker(cdb, probe, connection, checkins_worker):
    """checkins-worker, once its queues exist: goals' events published after this reach it."""
    deadline = time.monotonic() + 30
    while not all(queue_exists(connection, name) for name in QUEUES.values()):
        assert checkins_worker.poll() is None, log_tail(checkins_worker)
        assert time.monotonic() < deadline, "checkins-worker never declared its queues"
        time.sleep(0.1)
    return checkins_worker


@pytest.fixture
def world(worker, goals_world, goals_worker):
    """The goals world, published after the check-ins worker listens (goals' outbox holds the events until then)."""
    return goals_world


def progress_of(cdb, v2mom_id) -> dict:
    return cdb[PROGRESS].find_one({"_id": v2mom_id}) or {}


def wait_progress(cdb, v2mom_id, condition, message):
    return wait_for(lambda: (lambda d: d if d and condition(d) else None)(progress_of(cdb, v2mom_id)), message=message)


def record_checkin(cdb, data, event_type=checkin_events.CHECKIN_RECORDED) -> None:
    """What checkins-api writes: the check-in and its event in one insert; the worker's relay publishes it."""
    checkin = data.checkin
    document = {"_id": checkin.id, "v2mom_id": checkin.v2mom_id, "item_id": checkin.item_id,
                "author_id": checkin.author_id, "observe_time": checkin.observe_time.ToDatetime(tzinfo=UTC)}
    cdb.checkins.insert_one(new_document_with_events(document, [checkin_events.checkin_event(event_type, data)]))


def publish(connection, exchange: str, envelope, routing_key: str | None = None) -> None:
    target = kombu.Exchange(exchange, type="topic", durable=True)
    producer = kombu.Producer(connection.default_channel, exchange=target)
    body = envelope if isinstance(envelope, (bytes, str)) else json.dumps(envelope)
    producer.publish(body, routing_key=routing_key or envelope["type"], content_type="application/cloudevents+json",
                     content_encoding="utf-8", declare=[target])


def of_type(events, event_type, v2mom_id=None):
    return [e for e in events if e["type"] == event_type and (v2mom_id is None or e["data"].get("v2momId") == v2mom_id)]


def alive(worker) -> None:
    assert worker.poll() is None, f"checkins-worker died: {log_tail(worker)}"


# --- approvals and check-ins -----------------------------------------------------------------------


def test_an_approval_in_goals_creates_progress_and_clocks(world, cdb, probe, worker):
    team, ann = world.team_v2mom_id, world.ann_v2mom_id
    wait_progress(cdb, ann, lambda d: d.get("structure_revision"), "ann's approval never reached check-ins")
    wait_progress(cdb, team, lambda d: [c["v2mom_id"] for c in d.get("children", [])] == [ann],
                  "the team never learned that ann's V2MOM aligns to it")

    assert progress_of(cdb, ann)["parent_id"] == team and progress_of(cdb, team)["parent_id"] == ""
    for v2mom_id in (team, ann):
        # The clocks follow the progress document in the same delivery, a moment later.
        wait_for(lambda: cdb[ITEM_CLOCKS].count_documents({"v2mom_id": v2mom_id, "active": True}) == 4,
                 timeout=30.0, message=f"{v2mom_id} did not get a running clock per item: {log_tail(worker)}")
        assert all(c["staleness"] == "FRESH" for c in cdb[ITEM_CLOCKS].find({"v2mom_id": v2mom_id}))
    announced = probe.drain(until_count=2)
    assert {(e["data"]["v2momId"], e["data"]["cause"]) for e in of_type(announced, "progress_changed")} >= {
        (team, "structure"), (ann, "structure")}
    alive(worker)


def test_quarters_given_to_the_cycle_in_goals_reach_the_running_clocks(world, cdb, worker):
    # goals-api's UpdateCycle, goals-worker's relay of cycle_changed, checkins-worker's consumer: all real.
    ann = world.ann_v2mom_id
    wait_for(lambda: cdb[ITEM_CLOCKS].count_documents({"v2mom_id": ann, "active": True}) == 4,
             timeout=30.0, message=f"ann's clocks never started: {log_tail(worker)}")
    second_quarter = datetime.now(UTC).date() + timedelta(days=3)
    quarters = [common_pb2.Quarter(id="Q1", start_date=_day(FY2027_FIRST_DAY), end_date=_day(second_quarter - timedelta(days=1))),
                common_pb2.Quarter(id="Q2", start_date=_day(second_quarter), end_date=_day(FY2027_LAST_DAY))]
    world.client("ada", ["admin"]).UpdateCycle(goals_pb2.UpdateCycleRequest(
        cycle=common_pb2.Cycle(id="FY2027", quarters=quarters), update_mask=field_mask_pb2.FieldMask(paths=["quarters"])))

    quarter_end = datetime(second_quarter.year, second_quarter.month, second_quarter.day, tzinfo=UTC)
    wait_for(lambda: all((c.get("quarter_ends") or [None])[0] == quarter_end for c in cdb[ITEM_CLOCKS].find({"v2mom_id": ann})),
             timeout=30.0, message=f"cycle_changed never reached ann's clocks: {log_tail(worker)}")
    alive(worker)


def _day(value) -> date_pb2.Date:
    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


def test_check_ins_move_progress_and_roll_up_the_tree(world, cdb, probe, worker):
    team, ann = world.team_v2mom_id, world.ann_v2mom_id
    wait_progress(cdb, team, lambda d: d.get("children"), "the tree never formed")
    record_checkin(cdb, checkin_data(ann, "msr-nps", value=40.0, author_id="rob", observed=datetime.now(UTC)))
    record_checkin(cdb, checkin_data(team, "msr-nps", value=60.0, author_id="lee", observed=datetime.now(UTC)))

    wait_progress(cdb, team, lambda d: abs(d["tree_progress_percent"] - 56.25) < 1e-9,
                  "team tree progress never became mean(75, 37.5)")
    assert progress_of(cdb, ann)["progress_percent"] == pytest.approx(37.5)
    assert progress_of(cdb, team)["progress_percent"] == pytest.approx(75.0)

    def announced_roll_up():
        seen = probe.drain(until_count=len(probe.received) + 1, timeout=0.5)
        return of_type(seen, "progress_changed", ann) and [e for e in of_type(seen, "progress_changed", team)
                                                           if e["data"]["cause"] == "child"]
    wait_for(announced_roll_up, message="the roll-up was not announced on checkins.events")
    for event in probe.received:
        validate_event(event, exchange=EXCHANGE)
    by_ann = next(e["data"] for e in of_type(probe.received, "progress_changed", ann) if e["data"]["cause"] == "checkin")
    assert by_ann["personId"] == "rob" and by_ann["itemId"] == "msr-nps" and by_ann["itemKind"] == "ITEM_KIND_MEASURE"
    assert by_ann["parentV2momId"] == team and by_ann["progressPercent"] == pytest.approx(37.5)
    assert by_ann["previousProgressPercent"] == 0.0 and by_ann["measures"] == 2
    assert cdb.checkins.count_documents({"outbox_pending": True}) == 0  # the relay published the check-ins


def test_a_re_approval_without_a_measure_drops_it_and_an_archive_stops_counting(world, cdb, worker):
    team, ann = world.team_v2mom_id, world.ann_v2mom_id
    wait_progress(cdb, team, lambda d: d.get("children"), "the tree never formed")
    record_checkin(cdb, checkin_data(ann, "msr-nps", value=40.0, observed=datetime.now(UTC)))
    record_checkin(cdb, checkin_data(team, "msr-nps", value=60.0, author_id="lee", observed=datetime.now(UTC)))
    wait_progress(cdb, team, lambda d: abs(d["tree_progress_percent"] - 56.25) < 1e-9, "no roll-up")

    content = world_content()
    del content.measures[1]  # msr-ttv goes
    content.measures[0].weight = 100
    world.client("ann").UpdateV2MOM(goals_pb2.UpdateV2MOMRequest(
        v2mom=goals_pb2.V2MOM(id=ann, content=content), update_mask=field_mask_pb2.FieldMask(paths=["content.measures"]),
        change_reason="time to value is measured by the product team now",
    ))
    world.client("ann").SubmitV2MOM(goals_pb2.SubmitV2MOMRequest(id=ann))
    world.client("lee").ApproveV2MOM(goals_pb2.ApproveV2MOMRequest(id=ann))

    wait_progress(cdb, ann, lambda d: d["measures"] == 1 and abs(d["progress_percent"] - 50.0) < 1e-9,
                  "the re-approval did not drop msr-ttv from ann's progress")
    wait_progress(cdb, team, lambda d: abs(d["tree_progress_percent"] - 62.5) < 1e-9, "the team did not follow")
    wait_for(lambda: not cdb[ITEM_CLOCKS].find_one({"v2mom_id": ann, "item_id": "msr-ttv"})["active"],
             message="the removed measure's clock kept running")

    world.client("ann").ArchiveV2MOM(goals_pb2.ArchiveV2MOMRequest(id=ann, reason="moved teams"))
    wait_progress(cdb, team, lambda d: abs(d["tree_progress_percent"] - 75.0) < 1e-9,
                  "the archived V2MOM still counts in its parent's tree")
    assert progress_of(cdb, ann)["archived"] is True
    wait_for(lambda: cdb[ITEM_CLOCKS].count_documents({"v2mom_id": ann, "active": True}) == 0,
             message="the archived V2MOM's clocks kept running")
    alive(worker)


# --- duplicates, disorder and poison ------------------------------------------------------------------------


def test_duplicates_and_disorder_do_not_corrupt_progress(world, cdb, connection, probe, worker):
    team, ann = world.team_v2mom_id, world.ann_v2mom_id
    wait_progress(cdb, team, lambda d: d.get("children"), "the tree never formed")

    # The same check-in three times: counted once.
    once = to_wire(checkin_events.checkin_event(checkin_events.CHECKIN_RECORDED, checkin_data(ann, value=40.0)))
    for _ in range(3):
        publish(connection, "checkins.events", once)
    wait_progress(cdb, ann, lambda d: abs(d["progress_percent"] - 37.5) < 1e-9, "the check-in never counted")
    revision = progress_of(cdb, ann)["revision"]

    # An approval older than the one applied, and a replay of the current one: ignored.
    current = progress_of(cdb, ann)["structure_revision"]
    stale_content = world_content()
    del stale_content.measures[:]
    publish(connection, "goals.events", approved(v2mom_data(ann, current - 1, stale_content, parent_id=team)))
    replayed = approved(v2mom_data(ann, current, world_content(), parent_id=team))
    for _ in range(3):
        publish(connection, "goals.events", replayed)

    # Archived before approved, for a V2MOM the goals side made up for this test: it never counts.
    publish(connection, "goals.events", archived("v2m_stray", 9, parent_id=team))
    publish(connection, "goals.events", approved(v2mom_data("v2m_stray", 8, parent_id=team)))
    wait_progress(cdb, "v2m_stray", lambda d: d.get("structure_revision") == 8 and d["archived"], "stray never applied")
    wait_progress(cdb, team, lambda d: [c["state"] for c in d["children"] if c["v2mom_id"] == "v2m_stray"] == ["archived"],
                  "the team never heard that the stray V2MOM is archived")

    probe.settle(quiet_seconds=1.5)  # let anything still in flight land before judging
    after = progress_of(cdb, ann)
    assert (after["revision"], after["structure_revision"], after["progress_percent"]) == (revision, current, 37.5)
    assert len(after["latest"]) == 1
    assert cdb[ITEM_CLOCKS].count_documents({"v2mom_id": "v2m_stray"}) == 3  # idle, but there
    assert cdb[ITEM_CLOCKS].count_documents({"v2mom_id": "v2m_stray", "active": True}) == 0
    assert progress_of(cdb, team)["tree_progress_percent"] == pytest.approx(37.5 / 2)
    announced_for_ann = [e["data"]["cause"] for e in of_type(probe.received, "progress_changed", ann)]
    assert announced_for_ann == ["structure", "checkin"]  # one approval, one check-in: nothing for the rest
    alive(worker)


def test_a_malformed_event_goes_to_the_dead_letter_queue_and_the_worker_keeps_going(world, cdb, connection, worker):
    wait_progress(cdb, world.team_v2mom_id, lambda d: d.get("children"), "the tree never formed")
    good = approved(v2mom_data("v2m_after_poison", 2))
    poison = {**approved(v2mom_data("v2m_poison", 2)), "data": {"v2momId": 12, "revision": "not a number"}}
    publish(connection, "goals.events", poison)
    publish(connection, "goals.events", good)

    wait_progress(cdb, "v2m_after_poison", lambda d: d.get("structure_revision") == 2, "the next event was not applied")
    dlq = kombu.Queue(QUEUES["on_v2mom_approved"] + ".dlq")(connection.channel())
    dead = wait_for(lambda: dlq.get(no_ack=True), message="the malformed event never reached the dead-letter queue")
    assert json.loads(dead.body)["id"] == poison["id"]
    assert dead.headers["x-death"][0]["reason"] == "rejected"
    assert cdb[PROGRESS].count_documents({"_id": "v2m_poison"}) == 0
    alive(worker)


# --- staleness ---------------------------------------------------------------------------------------------


def test_the_timer_announces_stale_then_overdue_exactly_once(world, cdb, probe, worker):
    ann = world.ann_v2mom_id
    cdb.cycle_settings.insert_one({"_id": "FY2027", "cadence": "CADENCE_WEEKLY"})
    wait_progress(cdb, ann, lambda d: d.get("structure_revision"), "ann's approval never reached check-ins")
    # Last observed 15 days ago on a weekly cadence: one step to stale, the next to overdue.
    observed = datetime.now(UTC) - timedelta(days=15)
    record_checkin(cdb, checkin_data(ann, "msr-nps", value=40.0, observed=observed, cadence=WEEKLY))

    def both_announced():
        probe.drain(until_count=len(probe.received) + 1, timeout=0.5)
        return of_type(probe.received, "item_overdue")
    wait_for(both_announced, message="the item never became overdue on the wire")
    probe.settle(quiet_seconds=2.0)  # a few more timer ticks: nothing more may come

    steps = [e for e in probe.received if e["type"] in ("item_became_stale", "item_overdue")]
    assert [e["type"] for e in steps] == ["item_became_stale", "item_overdue"]
    for event in steps:
        validate_event(event, exchange=EXCHANGE)
        data = event["data"]
        item = data["item"]
        assert (item["v2momId"], item["itemId"], item["kind"]) == (ann, "msr-nps", "ITEM_KIND_MEASURE")
        assert (item["ownerId"], item["orgUnitId"], item["cycleId"]) == ("rob", "onboarding", "FY2027")
        assert data["v2momOwnerId"] == "ann" and data["cadence"] == "CADENCE_WEEKLY"
        assert item["lastCheckinTime"] and item["staleSinceTime"]
    assert steps[1]["data"]["item"]["staleness"] == "STALENESS_OVERDUE"
    assert cdb[ITEM_CLOCKS].find_one({"v2mom_id": ann, "item_id": "msr-nps"})["staleness"] == "OVERDUE"
    alive(worker)
