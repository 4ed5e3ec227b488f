"""deploy/rabbitmq/definitions.py against the machine's real broker: one user per service, each held to its own
exchanges and queues, and the alternate-exchange policy keeping what no queue takes.

The definitions are imported with `rabbitmqctl import_definitions` into a throwaway vhost, with throwaway
users (a prefix of the test's own), all deleted afterwards even when the test fails.
"""

import json
import re
import secrets
import subprocess
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import amqp
import grpc
import kombu
import pytest

from deploy.rabbitmq import definitions as broker
from services.platform.api.tls import BALANCED
from services.platform.bus.events import envelope
from services.platform.bus.outbox import ConfirmingPublisher
from services.platform.worker.consumer import dead_letter_exchange, dead_letter_queue_name, ensure_exchange

ROOT = Path(__file__).resolve().parents[2]


def rabbitmqctl(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["rabbitmqctl", *args], check=check, capture_output=True, text=True, timeout=60, input=stdin)


def wait_for_import(vhost: str, document: dict) -> None:
    """The import runs in the background; bindings are imported last."""
    expected = {binding["source"] for binding in document["bindings"]}
    deadline = time.monotonic() + 30
    while not expected <= set(rabbitmqctl("list_bindings", "-p", vhost, "-q", "source_name").stdout.split()):
        assert time.monotonic() < deadline, "rabbitmqctl import_definitions did not finish"
        time.sleep(0.3)


@contextmanager
def imported_definitions():
    """{user: amqp uri} in a vhost of its own, as compose's definitions set the broker up."""
    tag = uuid.uuid4().hex[:10]
    vhost, prefix = f"definitions_test_{tag}", f"definitions-test-{tag}-"
    passwords = {user: secrets.token_hex(16) for user in broker.USERS}
    document = broker.definitions(passwords, vhost=vhost, user_prefix=prefix)
    try:
        # Through stdin: the broker node, not this process, would read a file, and may not see pytest's tmp.
        rabbitmqctl("import_definitions", stdin=json.dumps(document))
        wait_for_import(vhost, document)
        yield {user: f"amqp://{prefix}{user}:{password}@127.0.0.1:5672/{vhost}" for user, password in passwords.items()}
    finally:
        for user in passwords:
            rabbitmqctl("delete_user", prefix + user, check=False)
        rabbitmqctl("delete_vhost", vhost, check=False)


@pytest.fixture(scope="module")
def users(amqp_uri):
    with imported_definitions() as uris:
        yield uris


def refused(uri: str, action) -> str:
    """Runs action(channel) as a user; returns the broker's refusal, or fails if there was none."""
    with kombu.Connection(uri) as connection:
        channel = connection.channel()
        with pytest.raises(amqp.exceptions.AccessRefused) as raised:
            action(channel)
            channel.basic_qos(0, 1, False)  # a synchronous call: an asynchronous refusal (publish) arrives by then
        return str(raised.value)


def publish(channel, exchange: str, event_type: str) -> None:
    event = envelope(exchange.removesuffix(".events"), event_type, subject="v1", data={})
    channel.basic_publish(amqp.Message(json.dumps(event)), exchange=exchange, routing_key=event_type)


def test_checkins_cannot_publish_a_goals_event(users):
    """Finding 7: with guest/guest every service could publish a forged v2mom_approved."""
    reason = refused(users["checkins"], lambda channel: publish(channel, "goals.events", "v2mom_approved"))
    assert "Basic.publish: (403) ACCESS_REFUSED - access to exchange 'goals.events'" in reason
    for service in ("metrics", "notify"):
        assert "goals.events" in refused(users[service], lambda channel: publish(channel, "goals.events", "v2mom_approved"))


def test_no_service_may_declare_or_delete_another_services_exchange(users):
    assert "Exchange.delete: (403) ACCESS_REFUSED - access to exchange 'goals.events'" in refused(
        users["checkins"], lambda channel: channel.exchange_delete("goals.events"))
    assert "Exchange.declare: (403) ACCESS_REFUSED - access to exchange 'checkins.events'" in refused(
        users["notify"], lambda channel: channel.exchange_declare("checkins.events", "topic", durable=True, auto_delete=False))


def test_a_service_may_not_take_another_services_queue(users):
    theirs = "evt-goals-v2mom_submitted--notify_worker.on_v2mom_submitted"
    assert f"Queue.declare: (403) ACCESS_REFUSED - access to queue '{theirs}'" in refused(
        users["checkins"], lambda channel: channel.queue_declare(theirs, durable=True, auto_delete=False))
    with kombu.Connection(users["notify"]) as connection:
        connection.channel().queue_declare(theirs, durable=True, auto_delete=False)
    assert f"Basic.get: (403) ACCESS_REFUSED - access to queue '{theirs}'" in refused(
        users["checkins"], lambda channel: channel.basic_get(theirs))


def test_a_service_replays_only_through_its_own_replay_exchange_to_a_queue_bound_there(users):
    """ReplayEvents as goals-api does it (services/platform/bus/replay.py), with goals' user: the integrator's
    queue (declared and bound by the broker's admin here) gets it; checkins' user may not use goals.replay."""
    from services.platform.bus.outbox import wire_body
    from services.platform.bus.replay import ReplayPublisher

    queue = f"integrator-{uuid.uuid4().hex[:8]}"
    with kombu.Connection(users["admin"]) as connection:
        channel = connection.channel()
        channel.queue_declare(queue, durable=True, auto_delete=False)
        channel.queue_bind(queue, "goals.replay", routing_key=queue)  # the definitions declared the exchange
    event = envelope("goals", "v2mom_created", subject="v1", data={})
    publisher = ReplayPublisher(users["goals"], "goals", queue)
    try:
        publisher.send([(event["id"], event["type"], wire_body(event))])
    finally:
        publisher.close()
    with kombu.Connection(users["admin"]) as connection:
        replayed = connection.channel().basic_get(queue, no_ack=True)
        assert replayed is not None and replayed.properties["message_id"] == event["id"]
        connection.channel().queue_delete(queue)
    assert "goals.replay" in refused(users["checkins"], lambda channel: channel.basic_publish(
        amqp.Message("{}"), exchange="goals.replay", routing_key=queue))


def test_a_relay_whose_user_may_not_declare_its_replay_exchange_still_publishes(users, caplog):
    """A broker whose definitions predate the replay exchanges: live events must not stop for it."""
    publisher = ConfirmingPublisher(users["checkins"], "checkins.events", replay_exchange="goals.replay")
    try:
        assert publisher.publish([envelope("checkins", "checkin_recorded", subject="c1", data={})]) == 0
    finally:
        publisher.close()
    assert "replay exchange not declared" in caplog.text


def test_a_consumer_declares_what_the_kernel_consumer_does_and_receives_what_it_consumes(users):
    """As checkins-worker: a passive look at goals.events, its queue bound there, its dead-letter queue and exchange."""
    worker = broker.worker_name("checkins")
    queue = f"evt-goals-v2mom_approved--{worker}.on_v2mom_approved"
    with kombu.Connection(users["checkins"]) as connection:
        ensure_exchange(connection, "goals.events")
        source = kombu.Exchange("goals.events", type="topic", durable=True, no_declare=True)
        dlx = dead_letter_exchange(worker)
        kombu.Queue(queue, exchange=source, routing_key="v2mom_approved", durable=True,
                    queue_arguments={"x-dead-letter-exchange": dlx.name})(connection.channel()).declare()
        kombu.Queue(dead_letter_queue_name(queue), exchange=dlx, routing_key=queue,
                    durable=True)(connection.channel()).declare()
        publisher = ConfirmingPublisher(users["goals"], "goals.events")
        try:
            approved = envelope("goals", "v2mom_approved", subject="v1", data={"v2momId": "v1"})
            assert publisher.publish([approved]) == 0
        finally:
            publisher.close()
        received = connection.channel().basic_get(queue, no_ack=True)
    assert received is not None and json.loads(received.body)["id"] == approved["id"]


def test_the_hris_publishes_to_hris_events_only_and_goals_worker_receives_it(users):
    """The HRIS's user writes its exchange and nothing else; goals-worker's HRIS queue receives what it sends."""
    assert "access to exchange 'goals.events'" in refused(
        users["hris"], lambda channel: publish(channel, "goals.events", "person_upserted"))
    assert "access to exchange 'hris.events'" in refused(
        users["hris"], lambda channel: channel.exchange_delete("hris.events"))
    assert "access to exchange 'hris.events'" in refused(
        users["checkins"], lambda channel: publish(channel, "hris.events", "employee.hired"))
    queue = f"evt-hris-employee.hired--{broker.worker_name('goals')}.on_employee_hired"
    with kombu.Connection(users["goals"]) as connection:
        source = kombu.Exchange("hris.events", type="topic", durable=True, no_declare=True)
        kombu.Queue(queue, exchange=source, routing_key="employee.hired", durable=True)(connection.channel()).declare()
        with kombu.Connection(users["hris"]) as hris:
            publish(hris.channel(), "hris.events", "employee.hired")
        received = wait_for_message(connection, queue)
    assert json.loads(received.body)["type"] == "employee.hired"


def wait_for_message(connection, queue: str):
    deadline = time.monotonic() + 10
    while (message := connection.channel().basic_get(queue, no_ack=True)) is None:
        assert time.monotonic() < deadline, f"nothing reached {queue}"
        time.sleep(0.1)
    return message


@pytest.mark.parametrize("service", broker.SERVICES)
def test_the_patterns_name_the_workers_as_the_code_does(service):
    source = (ROOT / "services" / service / "worker.py").read_text(encoding="utf-8")
    assert re.search(rf'^    name = "{broker.worker_name(service)}"$', source, re.MULTILINE)


def test_the_alternate_exchange_keeps_an_event_no_queue_takes(users):
    """The policy, not the relay, routes it: the broker confirms without returning it."""
    publisher = ConfirmingPublisher(users["goals"], "goals.events")
    try:
        orphan = envelope("goals", "org_unit_upserted", subject="u1", data={})
        assert publisher.publish([orphan]) == 0, "returned: the exchange has no alternate exchange"
    finally:
        publisher.close()
    with kombu.Connection(users["goals"]) as connection:
        kept = connection.channel().basic_get("goals.events.unrouted", no_ack=True)
    assert kept is not None and kept.properties["message_id"] == orphan["id"]


def test_the_notify_feeds_unrouted_queue_keeps_only_the_newest_events(users, monkeypatch):
    """notify.events has no consumer of ours: its unrouted queue is bounded, dropping the oldest, not growing forever."""
    policy = next(p for p in broker.definitions(dict.fromkeys(broker.USERS, "x" * 32))["policies"]
                  if p["pattern"] == r"^notify\.events\.unrouted$")
    assert policy["definition"] == {"max-length": broker.FEED_KEEP, "overflow": "drop-head"}
    vhost = users["notify"].rsplit("/", 1)[1]
    # The same policy with a small bound, so the test need not publish ten thousand events.
    rabbitmqctl("set_policy", "-p", vhost, "--apply-to", "queues", "--priority", "1", "notify-feed-small",
                r"^notify\.events\.unrouted$", json.dumps({**policy["definition"], "max-length": 3}))
    publisher = ConfirmingPublisher(users["notify"], "notify.events")
    try:
        sent = [envelope("notify", "notification_sent", subject=f"n{i}", data={}) for i in range(5)]
        publisher.publish(sent)
    finally:
        publisher.close()
    with kombu.Connection(users["notify"]) as connection:
        channel = connection.channel()
        kept = [channel.basic_get("notify.events.unrouted", no_ack=True) for _ in range(4)]
    assert [m.properties["message_id"] for m in kept if m] == [event["id"] for event in sent[2:]]


def test_guest_is_not_among_the_users():
    document = broker.definitions({user: "x" * 16 for user in broker.USERS})
    assert {user["name"] for user in document["users"]} == {"admin", "goals", "checkins", "metrics", "notify", "hris"}


@pytest.mark.parametrize("service", broker.SERVICES)
def test_no_pattern_reaches_another_services_resources(service):
    granted = {kind: re.compile(pattern) for kind, pattern in broker.permissions(service).items()}
    for other in set(broker.SERVICES) - {service}:
        worker = broker.worker_name(other)
        theirs = [f"{other}.events.unrouted", f"{other}.replay", f"{worker}.dlx", f"evt-goals-v2mom_approved--{worker}.on_v2mom_approved",
                  f"evt-goals-v2mom_approved--{worker}.on_v2mom_approved.dlq"]
        for kind, pattern in granted.items():
            assert not any(pattern.match(name) for name in theirs), (kind, other)
        assert not granted["write"].match(f"{other}.events") and not granted["configure"].match(f"{other}.events")
    assert not granted["write"].match("amq.default") and not granted["write"].match("")  # no publishing to any queue


def test_passwords_come_from_the_environment_and_are_refused_when_weak():
    environ = {broker.password_variable(user): secrets.token_hex(16) for user in broker.USERS}
    assert broker.passwords_from_environment(environ)["goals"] == environ["RABBITMQ_GOALS_PASSWORD"]
    with pytest.raises(SystemExit, match="RABBITMQ_CHECKINS_PASSWORD must be set"):
        broker.passwords_from_environment({**environ, "RABBITMQ_CHECKINS_PASSWORD": "guest"})


# --- the real processes, each as its own user --------------------------------------------------------------


@pytest.fixture
def fresh_users(amqp_uri):
    """Users in a vhost no other test declared anything in: the workers declare their queues their own way."""
    with imported_definitions() as uris:
        yield uris


@pytest.mark.timeout(300)
def test_every_real_process_runs_as_its_own_broker_user_and_events_flow(fresh_users, mongo_uri, tmp_path):
    """What compose runs: every worker and api as a real process, each connecting as its own user of the
    definitions. The patterns above could forbid something the code does (nameko's own declarations, the
    relay's unrouted queue, a DLX, a replay exchange): a worker would not start, or an event would never
    be relayed or consumed. goals' directory and an approval go out on goals.events, a check-in on
    checkins.events, notify's deliveries on notify.events; every consumer takes what it consumes."""
    import pymongo

    from services.platform.api.auth import bearer_metadata, mint_dev_token
    from services.platform.core.config import load
    from tests.support.checkins_requests import measure_request
    from tests.support.cluster import Cluster, consumers_per_queue, queue_depths
    from tests.support.exactness import outbox_pending
    from tests.support.goals import MANAGER, OWNER, PEOPLE, build_org, valid_content
    from v2mom.v1 import checkins_pb2_grpc, common_pb2, goals_pb2, goals_pb2_grpc

    admin = fresh_users["admin"]
    cluster = Cluster(mongo_uri, admin, tmp_path, replicas_each=1,
                      amqp_uris={service: fresh_users[service] for service in broker.SERVICES},
                      extra_env={"NOTIFY_SMTP_HOST": "127.0.0.1", "NOTIFY_SMTP_PORT": "1"})  # no mail goes out
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    try:
        cluster.start()  # every worker declared its queues and bindings as its own user, or it exited
        dbs = {service: client[name] for service, name in cluster.databases.items()}
        build_org(dbs["goals"])  # person_upserted and org_unit_upserted, relayed by goals-worker
        auth = load("goals").auth

        def caller(stub_class, service, person):
            channel = grpc.insecure_channel(cluster.target(service), options=BALANCED)
            channels.append(channel)
            return stub_class(channel), bearer_metadata(mint_dev_token(auth, person))

        channels = []
        goals, as_owner = caller(goals_pb2_grpc.GoalServiceStub, "goals", OWNER)
        _, as_manager = caller(goals_pb2_grpc.GoalServiceStub, "goals", MANAGER)
        checkins, as_owner_at_checkins = caller(checkins_pb2_grpc.CheckinServiceStub, "checkins", OWNER)
        created = goals.CreateV2MOM(goals_pb2.CreateV2MOMRequest(
            level=common_pb2.ORG_LEVEL_INDIVIDUAL, owner_id=OWNER, cycle_id="FY2027", content=valid_content(OWNER)),
            metadata=as_owner, timeout=30)
        goals.SubmitV2MOM(goals_pb2.SubmitV2MOMRequest(id=created.id), metadata=as_owner, timeout=30)
        goals.ApproveV2MOM(goals_pb2.ApproveV2MOMRequest(id=created.id), metadata=as_manager, timeout=30)
        wait_until(lambda: dbs["checkins"].list_collection_names() and _checked_in(
            checkins, as_owner_at_checkins, measure_request(created.id, "msr-1", value=3)), "the check-in")

        def settled():
            return (not any(outbox_pending(db) for db in dbs.values())
                    and not any(n for name, n in queue_depths(admin).items() if not name.endswith(".unrouted"))
                    and dbs["notify"].notifications.count_documents({"recipient_id": OWNER}) >= 1
                    and dbs["metrics"].people.count_documents({}) == len(PEOPLE))
        wait_until(settled, "every event relayed, consumed and applied", cluster)
        queues = consumers_per_queue(admin)
        assert queues and all(n == 1 for n in queues.values()), queues
        assert {name.rsplit("--", 1)[1].split(".")[0] for name in queues} == {
            broker.worker_name(service) for service in broker.SERVICES}
        assert not [name for name, n in queue_depths(admin).items() if name.endswith(".dlq") and n]
    finally:
        for channel in locals().get("channels", []):
            channel.close()
        cluster.stop()
        for name in cluster.databases.values():
            client.drop_database(name)
        client.close()


def _checked_in(stub, metadata, request) -> bool:
    """A check-in recorded; False while checkins cannot yet see the approval (it asks goals)."""
    try:
        stub.RecordMeasureCheckin(request, metadata=metadata, timeout=30)
        return True
    except grpc.RpcError as error:
        if error.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
            return False
        raise


def wait_until(condition, what: str, cluster=None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}" + (f"\n{cluster.logs()}" if cluster else "")
        time.sleep(0.5)
