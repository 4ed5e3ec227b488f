"""notify-worker as a process in tests, and publishing goals/check-ins events to it (plain helpers, no fixtures)."""

import json
import time

import kombu

from services.goals import events as goals_events
from services.platform.bus.events import to_wire
from tests.support.processes import log_tail, start_module, stop
from v2mom.v1 import common_pb2, events_pb2, goals_pb2

HANDLERS = {
    "goals": ("person_upserted", "v2mom_submitted", "v2mom_approved", "v2mom_changes_requested", "v2mom_archived",
              "cycle_changed", "cycle_closed"),
    "checkins": ("item_became_stale", "item_overdue", "checkin_recorded", "progress_changed"),
}
QUEUES = [f"evt-{source}-{event_type}--notify_worker.on_{event_type}"
          for source, types in HANDLERS.items() for event_type in types]
SUBMITTED_QUEUE = "evt-goals-v2mom_submitted--notify_worker.on_v2mom_submitted"


class NotifyWorker:
    """notify-worker processes on the test's database, broker, goals-api and SMTP sink; all stopped at the end."""

    def __init__(self, settings, notify_db_name, goals_port, smtp_port, log_path):
        self.env = {
            "MONGO_URI": settings.mongo_uri, "MONGO_DB": notify_db_name, "AMQP_URI": settings.amqp_uri,
            "GOALS_ADDR": f"127.0.0.1:{goals_port}", "NOTIFY_SMTP_HOST": "127.0.0.1", "NOTIFY_SMTP_PORT": str(smtp_port),
            "NOTIFY_PORTAL_URL_TEMPLATE": "https://portal.test/v2moms/{v2mom_id}",
            "RELAY_INTERVAL_SECONDS": "0.05", "NOTIFY_DISPATCH_INTERVAL_SECONDS": "0.1",
            "NOTIFY_SCHEDULE_INTERVAL_SECONDS": "0.2", "LOG_LEVEL": "INFO",
        }
        self.log_path = log_path
        self.processes = []

    def start(self, connection, **extra_env):
        process = start_module("services.notify.worker", {**self.env, **extra_env}, log=self.log_path)
        self.processes.append(process)
        deadline = time.monotonic() + 40
        # Consumed, not only declared: a queue is bound before its consumer starts, and an event published to a
        # queue declared but not bound yet is lost.
        while not all(_consumed(connection, name) for name in QUEUES):
            assert process.poll() is None, log_tail(process)
            assert time.monotonic() < deadline, f"notify-worker never consumed its queues: {log_tail(process)}"
            time.sleep(0.1)
        return process

    def stop_all(self):
        for process in self.processes:
            stop(process)


def _consumed(connection, name: str) -> bool:
    try:
        return connection.channel().queue_declare(name, passive=True).consumer_count > 0
    except Exception:  # not declared yet (a passive declare fails, and closes its channel)
        return False


def publish(connection, envelope, exchange="goals.events"):
    target = kombu.Exchange(exchange, type="topic", durable=True)
    producer = kombu.Producer(connection.default_channel, exchange=target)
    body = envelope if isinstance(envelope, str) else json.dumps(envelope)
    routing_key = envelope["type"] if isinstance(envelope, dict) else "v2mom_submitted"
    producer.publish(body, routing_key=routing_key, content_type="application/cloudevents+json",
                     content_encoding="utf-8", declare=[target])


def v2mom_event(event_type, state, v2mom_id="v2m_proc", revision=2, approver="lee", reason="", actor=""):
    data = events_pb2.V2MOMEventData(
        v2mom_id=v2mom_id, revision=revision, owner_id="olive", org_unit_id="platform", cycle_id="FY2027",
        level=common_pb2.ORG_LEVEL_INDIVIDUAL, state=state, approver_id=approver, reason=reason, actor_id=actor,
        content=goals_pb2.V2MOMContent(title=f"Olive {v2mom_id}"))
    return to_wire(goals_events.v2mom_event(event_type, data))


def mails_to(sink, address):
    return [m for m in sink.messages() if m.envelope["rcpt_tos"] == [address]]


class Clock:
    """A settable clock for notify's handlers and dispatcher: ``clock.now`` is what they read."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


class Recorder:
    """A sender that records each message; queued ``failures`` are raised first, one per send."""

    def __init__(self):
        self.sent, self.failures = [], []

    def __call__(self, *args):
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(args[-1])

