"""Consuming CloudEvents in nameko workers: dead-lettering, bounded retries, idempotency.

nameko's EventHandler acks a message whose handler raised, and a message it
cannot decode kills its consumer loop. Both would lose or block events, so:

- every handler queue is declared with a dead-letter exchange
  (``<consuming service>.dlx``) and a dead-letter queue ``<queue>.dlq``;
- undecodable bodies, envelopes that are not CloudEvents, events whose
  ``source`` is not the service whose exchange they came through (forged or
  misrouted), and handlers that keep failing are rejected without requeue, so RabbitMQ moves them to the DLQ
  (with its ``x-death`` header saying why);
- a store outage, another service being unreachable (``Unavailable``, raised by
  ServiceClient once its own retries are spent), or other writers winning every
  race for a document (``Aborted``) is not the message's fault: those are
  requeued, not dead-lettered;
- the handler gets a validated envelope, and ``ProcessedEvents`` lets it
  record the event id in the same write as its effect.

Queues are classic unless ``AMQP_QUEUE_TYPE=quorum``: then the handler
queue and its DLQ are quorum queues (durable, replicated), and the handler
queue has a delivery limit (``AMQP_DELIVERY_LIMIT``), so an event requeued
that many times - a service that stays unreachable - is dead-lettered by the
broker (``x-death`` reason ``delivery_limit``) instead of coming back forever.
A queue that exists with another type or limit cannot be changed in place:
the worker stops with ``QueueMismatch`` saying what to do. Each handler
queue's consumer gets ``AMQP_PREFETCH`` deliveries ahead (default: the
container's ``max_workers``, as nameko does). docs/architecture.md, "Queues,
prefetch and concurrency".
"""

import logging
import time

import amqp
import eventlet
import kombu
from google.protobuf import json_format
from kombu import Exchange, Queue
from nameko.events import SERVICE_POOL, EventHandler, get_event_exchange
from nameko.messaging import QueueConsumer
from pymongo.errors import ConnectionFailure

from ..core.errors import Aborted, Unavailable
from ..bus.events import MalformedEvent, SourceMismatch, parse

log = logging.getLogger(__name__)

HANDLER_ATTEMPTS = 3
RETRY_BACKOFF_SECONDS = 0.2

# nameko config keys (services.platform.worker.runner.nameko_config fills them from the settings).
QUEUE_TYPE_KEY = "AMQP_QUEUE_TYPE"
DELIVERY_LIMIT_KEY = "AMQP_DELIVERY_LIMIT"
PREFETCH_KEY = "AMQP_PREFETCH"
DEFAULT_DELIVERY_LIMIT = 20


class PermanentError(Exception):
    """A handler's verdict that this event can never be processed: dead-letter it."""


def parse_data(envelope: dict, message_class):
    """The envelope's data as a proto message; wrong types or shapes are permanent."""
    try:
        return json_format.ParseDict(envelope["data"], message_class(), ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError) as error:
        raise PermanentError(f"{envelope.get('type')} data does not parse as {message_class.__name__}: {error}") from None


def require(condition: bool, what: str, envelope: dict) -> None:
    """Dead-letters the event, naming it, unless ``condition`` holds."""
    if not condition:
        raise PermanentError(f"{envelope.get('type')} {envelope.get('id')}: {what}")


def ensure_exchange(connection, name: str) -> None:
    """Makes sure a publisher's topic exchange exists, declaring it only if it does not.

    A passive declare needs no permission. On a fresh broker a consumer can
    start before the publisher ever ran; then it declares the exchange as the
    publisher would, which a service user may not do - compose's broker
    definitions declare every exchange up front.
    """
    try:
        connection.channel().exchange_declare(name, "topic", durable=True, auto_delete=False, passive=True)
    except amqp.exceptions.NotFound:
        connection.channel().exchange_declare(name, "topic", durable=True, auto_delete=False)


def dead_letter_exchange(service: str) -> Exchange:
    return Exchange(f"{service}.dlx", type="direct", durable=True)


def dead_letter_queue_name(queue_name: str) -> str:
    return f"{queue_name}.dlq"


def is_quorum(config: dict) -> bool:
    return config.get(QUEUE_TYPE_KEY, "classic") == "quorum"


def handler_queue_arguments(config: dict, queue_name: str, dlx_name: str) -> dict:
    """A handler queue's arguments: its dead-lettering, and on quorum queues the type and delivery limit.

    A classic queue gets no ``x-queue-type``: queues declared before the setting existed have none, and
    RabbitMQ refuses a redeclaration that adds one.
    """
    arguments = {"x-dead-letter-exchange": dlx_name, "x-dead-letter-routing-key": queue_name}
    if is_quorum(config):
        arguments |= {"x-queue-type": "quorum",
                      "x-delivery-limit": int(config.get(DELIVERY_LIMIT_KEY, DEFAULT_DELIVERY_LIMIT))}
    return arguments


def dead_letter_queue_arguments(config: dict) -> dict:
    return {"x-queue-type": "quorum"} if is_quorum(config) else {}


class QueueMismatch(RuntimeError):
    """A queue exists on the broker with another type or other arguments than this worker declares.

    RabbitMQ cannot change a queue's type or arguments in place, and restarting the worker will not
    change the answer, so the message says what the operator can do.
    """

    def __init__(self, queue: str, vhost: str, config: dict, reply: str):
        self.queue = queue
        wanted = f"AMQP_QUEUE_TYPE={config.get(QUEUE_TYPE_KEY, 'classic')}"
        if is_quorum(config):
            wanted += f", AMQP_DELIVERY_LIMIT={config.get(DELIVERY_LIMIT_KEY, DEFAULT_DELIVERY_LIMIT)}"
        super().__init__(
            f"queue {queue!r} in vhost {vhost!r} exists with another type or other arguments than this worker "
            f"declares ({wanted}); the broker said: {reply}. RabbitMQ cannot change them in place. Either set "
            "AMQP_QUEUE_TYPE/AMQP_DELIVERY_LIMIT back to what the queue has (rabbitmqctl list_queues -p "
            f"{vhost} name type arguments), or recreate the queue: stop every worker of this service, move its "
            f"messages aside, `rabbitmqctl delete_queue -p {vhost} {queue}` and start the workers, which declare "
            "it anew (docs/architecture.md, \"Changing a queue's type\")"
        )


class DeadLetteringQueueConsumer(QueueConsumer):
    """Rejects what cannot be decoded instead of crashing the consumer loop; prefetches AMQP_PREFETCH."""

    @property
    def prefetch_count(self):
        # Per consumer (basic.qos without global, which quorum queues refuse): each handler queue's own.
        return self.container.config.get(PREFETCH_KEY) or self.container.max_workers

    def get_consumers(self, consumer_cls, channel):
        consumers = super().get_consumers(consumer_cls, channel)
        for consumer in consumers:
            consumer.on_decode_error = self._reject_undecodable
        return consumers

    @staticmethod
    def _reject_undecodable(message, error):
        log.warning(
            "event dead-lettered: undecodable body",
            extra={"routing_key": message.delivery_info.get("routing_key"), "reason": str(error)[:300]},
        )
        message.reject(requeue=False)


class CloudEventHandler(EventHandler):
    """``@cloud_event_handler("goals", "v2mom_approved")`` - a pooled, reliable handler with a DLQ."""

    queue_consumer = DeadLetteringQueueConsumer()

    def __init__(self, source_service, event_type, **kwargs):
        super().__init__(source_service, event_type, handler_type=SERVICE_POOL, reliable_delivery=True, **kwargs)

    def setup(self):
        super().setup()
        service = self.container.service_name
        dlx = dead_letter_exchange(service)
        source = get_event_exchange(self.source_service, self.container.config)
        # Bound to, never declared here: declaring needs configure permission on another service's exchange,
        # which would also let this service delete it (deploy/rabbitmq). _declare_on_broker makes sure it exists.
        source.no_declare = True
        config = self.container.config
        # Durable, never exclusive or auto-deleted: a quorum queue can be nothing else, and a classic one
        # must outlive the worker too.
        self.queue = Queue(
            self.queue.name,
            exchange=source,
            routing_key=self.event_type,
            durable=True,
            exclusive=False,
            auto_delete=False,
            queue_arguments=handler_queue_arguments(config, self.queue.name, dlx.name),
        )
        self.dead_letter_queue = Queue(
            dead_letter_queue_name(self.queue.name), exchange=dlx, routing_key=self.queue.name, durable=True,
            exclusive=False, auto_delete=False, queue_arguments=dead_letter_queue_arguments(config),
        )
        self.delivery_limit = int(config.get(DELIVERY_LIMIT_KEY, DEFAULT_DELIVERY_LIMIT)) if is_quorum(config) else None
        self._declare_on_broker(source.name)

    def _declare_on_broker(self, source_exchange: str):
        """The source exchange, the handler queue (bound) and its DLQ, before consuming: a queue that exists with
        another type fails here, once and with what to do (QueueMismatch), not in the consumer's reconnect loop."""
        with kombu.Connection(self.container.config["AMQP_URI"]) as connection:
            ensure_exchange(connection, source_exchange)
            for queue in (self.queue, self.dead_letter_queue):
                try:
                    queue(connection.channel()).declare()
                except amqp.exceptions.PreconditionFailed as error:
                    raise QueueMismatch(queue.name, connection.virtual_host, self.container.config,
                                        str(error)) from None

    def handle_message(self, body, message):
        try:
            envelope = parse(body, message.delivery_info.get("exchange", ""))
        except MalformedEvent as error:
            what = "wrong source" if isinstance(error, SourceMismatch) else "malformed"
            log.warning(f"event dead-lettered: {what}", extra={"queue": self.queue.name, "reason": str(error)})
            message.reject(requeue=False)
            return
        super().handle_message(envelope, message)

    def handle_message_processed(self, message, result=None, exc_info=None):
        if exc_info is None:
            self.queue_consumer.ack_message(message)
        elif isinstance(exc_info[1], (ConnectionFailure, Unavailable, Aborted)):
            # The store or a service we call is down, or other writers kept winning a race: nothing is wrong
            # with the event, so try it again later rather than dead-letter it.
            eventlet.sleep(1.0)
            self._note_delivery_limit(message, exc_info[1])
            self.queue_consumer.requeue_message(message)
        else:
            log.warning(
                "event dead-lettered: handler failed",
                extra={"queue": self.queue.name, "error": f"{type(exc_info[1]).__name__}: {exc_info[1]}"[:500]},
            )
            message.reject(requeue=False)


    def _note_delivery_limit(self, message, error):
        """On a quorum queue, the delivery after ``delivery_limit`` requeues is the last: say so as it goes."""
        delivered_before = (message.headers or {}).get("x-delivery-count", 0)
        if self.delivery_limit is not None and delivered_before >= self.delivery_limit:
            log.warning(
                "event dead-lettered: delivery limit reached",
                extra={"queue": self.queue.name, "deliveries": delivered_before + 1,
                       "delivery_limit": self.delivery_limit, "error": f"{type(error).__name__}: {error}"[:500]},
            )


cloud_event_handler = CloudEventHandler.decorator


def with_retries(handler, envelope, attempts: int = HANDLER_ATTEMPTS, backoff: float = RETRY_BACKOFF_SECONDS):
    """Runs a handler body, retrying transient failures a bounded number of times."""
    for attempt in range(1, attempts + 1):
        try:
            return handler(envelope)
        except (PermanentError, MalformedEvent, ConnectionFailure, Unavailable):
            raise  # Unavailable: ServiceClient already retried with backoff; the consumer requeues it
        except Exception as error:
            if attempt == attempts:
                raise
            log.info("event handler retrying",
                     extra={"event_id": envelope.get("id"), "attempt": attempt, "error": f"{type(error).__name__}: {error}"})
            time.sleep(backoff * attempt)


class ProcessedEvents:
    """Which event ids a consumer has already applied, kept in its own database.

    Where the effect is a single document, record the id in that same write
    (``$addToSet`` on a bounded field, or a guard on the update); this
    collection is for effects that span documents.
    """

    def __init__(self, db, collection: str = "processed_events"):
        self.collection = db[collection]

    def seen(self, event_id: str) -> bool:
        return self.collection.find_one({"_id": event_id}, {"_id": 1}) is not None

    def mark(self, event_id: str, event_type: str) -> None:
        self.collection.update_one(
            {"_id": event_id}, {"$setOnInsert": {"type": event_type, "at": time.time()}}, upsert=True
        )
