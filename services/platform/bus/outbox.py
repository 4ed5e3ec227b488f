"""The transactional outbox: state and its events in one document write.

An aggregate document carries its unpublished events in ``outbox`` and a flag
``outbox_pending`` (indexed) so the relay finds them without scanning. The
relay publishes a batch with publisher confirms, then removes exactly the
events the broker confirmed. If the broker is down, nothing is removed and
the next pass tries again; consumers de-duplicate by event id, so a crash
between confirm and removal costs a duplicate, never a loss.

Events are published ``mandatory``: one that no queue is bound for (say,
relayed before its consumer first declared its queue) would otherwise be
confirmed and dropped. The exchange's alternate exchange (a policy,
deploy/rabbitmq) sends it to the durable queue ``<exchange>.unrouted``; where
that policy is missing the broker returns it, and the relay puts it in that
same queue itself. Either way it is kept for an operator, counted by the
broker and alerted on (deploy/prometheus/alerts.yml).

Once confirmed, and before they leave the outbox, the events are logged
(event_log.py) exactly as they were published, so that ReplayEvents can send
them again, to one integrator's queue, for EVENT_LOG_RETENTION_DAYS.
"""

import json
import logging
import time
from dataclasses import dataclass

import amqp
import kombu
from pymongo import UpdateOne
from pymongo.database import Database

from .event_log import EventLog
from .events import CONTENT_TYPE, exchange_name, replay_exchange_name, to_wire, unrouted_name
from ..store.mongo import Index

log = logging.getLogger(__name__)

OUTBOX_FIELD = "outbox"
PENDING_FIELD = "outbox_pending"


def outbox_index(collection: str) -> Index:
    return Index(collection, [(PENDING_FIELD, 1)], name="outbox_pending")


def with_events(update: dict, events: list[dict]) -> dict:
    """Adds events to a Mongo update document, so they commit with the change."""
    update = {key: dict(value) for key, value in update.items()}
    update.setdefault("$push", {})[OUTBOX_FIELD] = {"$each": events}
    update.setdefault("$set", {})[PENDING_FIELD] = True
    return update


def new_document_with_events(document: dict, events: list[dict]) -> dict:
    return {**document, OUTBOX_FIELD: list(events), PENDING_FIELD: True}


class PublishFailed(RuntimeError):
    pass


# A message to publish: (CloudEvents id, type, the JSON body).
Outgoing = tuple[str, str, str]


def wire_body(event: dict) -> str:
    """The JSON an event is published as (rendered once: the relay logs the same text)."""
    return json.dumps(to_wire(event), separators=(",", ":"))


class ConfirmingPublisher:
    """Publishes batches to a durable topic exchange and waits for every confirm.

    One confirm round-trip per batch instead of per message: that is what
    lifts the relay above nameko's per-dispatch confirm rate.
    """

    def __init__(self, amqp_uri: str, exchange: str, confirm_timeout: float = 10.0, replay_exchange: str = ""):
        self.amqp_uri = amqp_uri
        self.exchange = exchange
        # Declared beside the exchange, so an integrator can bind a queue to it before asking for a replay.
        self.replay_exchange = replay_exchange
        self.confirm_timeout = confirm_timeout
        self._connection: kombu.Connection | None = None
        self._channel = None
        self._acked = 0
        self._nacked: set[int] = set()
        self._next_tag = 1
        self._returned: list[str] = []
        # Warned about once each: without the broker policy (make run) every batch of such a type would warn
        # again, and the count (RelayStats.unroutable) already says how many.
        self._unroutable_types_warned: set[str] = set()

    def _open(self):
        if self._channel is not None:
            return self._channel
        connection = kombu.Connection(self.amqp_uri, connect_timeout=3, heartbeat=0)
        try:
            connection.ensure_connection(max_retries=1)
            channel = connection.channel()
            self._declare(channel)
            channel.confirm_select()
        except BaseException:
            connection.release()
            raise
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        channel.events["basic_return"].add(self._on_return)
        self._connection, self._channel = connection, channel
        self._acked, self._nacked, self._next_tag = 0, set(), 1
        return channel

    def _declare(self, channel) -> None:
        """What must exist before publishing: the service's exchange, and the unrouted queue behind it."""
        # Declared without arguments: the alternate exchange comes from a policy (deploy/rabbitmq), and an
        # argument here would fail with PRECONDITION_FAILED on exchanges declared before it existed.
        kombu.Exchange(self.exchange, type="topic", durable=True)(channel).declare()
        unrouted = unrouted_name(self.exchange)
        unrouted_exchange = kombu.Exchange(unrouted, type="fanout", durable=True)
        kombu.Queue(unrouted, exchange=unrouted_exchange, routing_key="", durable=True)(channel).declare()
        if self.replay_exchange:
            self._declare_replay_exchange(channel.connection)

    def _declare_replay_exchange(self, connection) -> None:
        """On a channel of its own, and never in the way of publishing: a broker user not yet granted the replay
        exchange (definitions loaded before it existed) costs ReplayEvents, not the live events."""
        channel = connection.channel()
        try:
            kombu.Exchange(self.replay_exchange, type="direct", durable=True)(channel).declare()
        except (amqp.exceptions.AccessRefused, amqp.exceptions.PreconditionFailed) as error:
            log.warning("replay exchange not declared: the broker refused; ReplayEvents cannot reach queues until "
                        "this service's user may configure it (deploy/rabbitmq/definitions.py)",
                        extra={"exchange": self.replay_exchange, "reason": str(error.reply_text or error)[:200]})
            return
        try:
            channel.close()
        except Exception:  # closing a channel the broker already closed
            pass

    def _on_ack(self, delivery_tag, multiple):
        self._acked = max(self._acked, delivery_tag)

    def _on_nack(self, delivery_tag, multiple):
        self._nacked.add(delivery_tag)
        self._acked = max(self._acked, delivery_tag)

    def _on_return(self, error, exchange, routing_key, message):
        # The broker returns a mandatory message no queue took, before it confirms it.
        self._returned.append(message.properties.get("message_id"))

    def publish(self, events: list[dict], bodies: list[str] | None = None) -> int:
        """Returns only when the broker has confirmed every event; raises otherwise.

        ``bodies``: the events as rendered by ``wire_body``, when the caller
        has them already (the relay logs exactly what it published).
        Returns how many were unroutable and kept in ``<exchange>.unrouted``
        by the relay itself (an exchange without its alternate exchange).
        """
        if not events:
            return 0
        messages = list(zip((e["id"] for e in events), (e["type"] for e in events),
                            bodies if bodies is not None else map(wire_body, events), strict=True))
        try:
            return self._publish_and_wait(messages)
        except PublishFailed:
            self.close()
            raise
        except (OSError, amqp.exceptions.AMQPError, kombu.exceptions.KombuError) as error:
            self.close()
            raise PublishFailed(f"broker unavailable: {error}") from error

    def _publish_and_wait(self, messages: list[Outgoing]) -> int:
        channel = self._open()
        self._returned = []
        # mandatory: an event no queue takes comes back instead of being confirmed and dropped.
        self._wait_for_confirms(self._send(channel, messages, self.exchange))
        returned = set(self._returned)
        unroutable = [message for message in messages if message[0] in returned]
        if unroutable:
            self._keep_unroutable(channel, unroutable)
        return len(unroutable)

    def _send(self, channel, messages: list[Outgoing], exchange: str, routing_key: str | None = None,
              headers: dict | None = None) -> range:
        """Publishes persistent, mandatory messages (routing key: each one's type, unless given); their tags."""
        first_tag = self._next_tag
        for event_id, event_type, body in messages:
            message = amqp.Message(
                body,
                content_type=CONTENT_TYPE,
                content_encoding="utf-8",
                delivery_mode=2,
                message_id=event_id,
                type=event_type,
                timestamp=int(time.time()),
                **({"application_headers": headers} if headers else {}),
            )
            channel.basic_publish(message, exchange=exchange, routing_key=routing_key or event_type, mandatory=True)
            self._next_tag += 1
        return range(first_tag, self._next_tag)

    def _wait_for_confirms(self, tags: range) -> None:
        last_tag = tags[-1]
        deadline = time.monotonic() + self.confirm_timeout
        while self._acked < last_tag:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishFailed(f"no confirm for {last_tag - self._acked} events")
            self._connection.drain_events(timeout=remaining)
        if any(tag in tags for tag in self._nacked):
            raise PublishFailed("broker refused (nacked) part of the batch")

    def _keep_unroutable(self, channel, messages: list[Outgoing]) -> None:
        """Does what the alternate exchange would have: keeps the events in the durable unrouted queue."""
        types = {event_type for _, event_type, _ in messages}
        first_time = types - self._unroutable_types_warned
        self._unroutable_types_warned |= types
        log.log(
            logging.WARNING if first_time else logging.DEBUG,
            "events unroutable: no queue is bound for them and the exchange has no alternate exchange "
            "(deploy/rabbitmq policy); kept in the unrouted queue (warned once per type)",
            extra={"exchange": self.exchange, "queue": unrouted_name(self.exchange), "events": len(messages),
                   "types": sorted(types)},
        )
        self._returned = []
        self._wait_for_confirms(self._send(channel, messages, unrouted_name(self.exchange)))
        if self._returned:  # its queue was deleted: keep the events in the outbox; reopening redeclares it
            raise PublishFailed(f"{unrouted_name(self.exchange)} has no queue to keep unroutable events")

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:  # a dead socket may fail to close; it is gone either way
                pass
        self._connection, self._channel = None, None


@dataclass
class RelayStats:
    published: int = 0
    failures: int = 0
    # Published, but no queue was bound for them: kept in the exchange's unrouted queue by the relay.
    unroutable: int = 0


class OutboxRelay:
    """Moves pending events from a service's collections to its exchange."""

    def __init__(self, db: Database, collections: list[str], publisher: ConfirmingPublisher, batch_size: int = 200,
                 append_once: frozenset[str] = frozenset(), event_log: EventLog | None = None):
        self.db = db
        # What the broker confirmed is logged here before it leaves the outbox (event_log.py), when it is enabled.
        self.event_log = event_log
        self.collections = collections
        self.publisher = publisher
        self.batch_size = batch_size
        # Collections whose documents get their events only in the write that creates them (a
        # check-in, say): the relay clears those in one write instead of two.
        self.append_once = frozenset(append_once)
        self.stats = RelayStats()

    @classmethod
    def for_service(cls, db, service: str, collections, amqp_uri: str, batch_size: int = 200,
                    append_once=frozenset(), retention_days: int = 0) -> "OutboxRelay":
        """With ``retention_days``, what it publishes is logged for replay (EVENT_LOG_RETENTION_DAYS); with 0, it
        is not (and ``prune`` empties the log)."""
        publisher = ConfirmingPublisher(amqp_uri, exchange_name(service),
                                        replay_exchange=replay_exchange_name(service) if retention_days > 0 else "")
        return cls(db, list(collections), publisher, batch_size, frozenset(append_once), EventLog(db, retention_days))

    def relay_once(self, only: set[str] | None = None) -> int:
        """One pass over every collection (or those in `only`); returns how many events went out."""
        return sum(self._relay_collection(name)[0] for name in self.collections if only is None or name in only)

    def relay_until_empty(self, max_passes: int = 1000, only: set[str] | None = None) -> int:
        """Passes until nothing is left pending, as far as the last look at each collection showed.

        A collection goes round again only when its batch was full: one that
        returned fewer documents than a batch had nothing more pending when it
        was read, so looking again at once would be a wasted query (the relay's
        polls were a fifth of the store's commands during `make run`'s seed).
        Events written after that read are the next pass's: the writer's kick
        or the next tick.
        """
        total = 0
        names = [name for name in self.collections if only is None or name in only]
        for _ in range(max_passes):
            again = []
            for name in names:
                sent, full = self._relay_collection(name)
                total += sent
                if sent and full:
                    again.append(name)
            if not again:
                break
            names = again
        return total

    def _relay_collection(self, name: str) -> tuple[int, bool]:
        """How many events went out, and whether the batch was full (more may be pending)."""
        collection = self.db[name]
        documents = list(
            collection.find({PENDING_FIELD: True}, {OUTBOX_FIELD: 1}).limit(self.batch_size)
        )
        full = len(documents) >= self.batch_size
        events = [event for doc in documents for event in doc.get(OUTBOX_FIELD, [])]
        if not events:
            # A flag left over by a crash between removal and clearing.
            for doc in documents:
                self._clear_flag_if_empty(collection, doc["_id"])
            return 0, full
        bodies = [wire_body(event) for event in events]
        try:
            unroutable = self.publisher.publish(events, bodies)
        except PublishFailed as error:
            self.stats.failures += 1
            log.warning("outbox relay paused", extra={"collection": name, "pending": len(events), "reason": str(error)})
            return 0, full
        if self.event_log is not None:
            # Before the outbox lets go: nothing published is missing from the log (a crash in between publishes
            # the batch again, and logs it once: the ids are the log's keys).
            self.event_log.record(events, bodies)
        self._let_go(collection, documents)
        self.stats.published += len(events)
        self.stats.unroutable += unroutable
        log.debug("outbox relayed", extra={"collection": name, "events": len(events)})
        return len(events), full

    def _let_go(self, collection, documents: list[dict]) -> None:
        """Takes the published events out of their documents' outboxes, in one write per document when the
        outbox still holds just them (the usual case), else in two that remove exactly them."""
        emptied = collection.bulk_write([self._emptying(collection.name, doc) for doc in documents], ordered=False)
        if emptied.matched_count < len(documents):
            # An event arrived since the read, or another relay let some go: the exact removal is safe to
            # repeat on every document (what is gone stays gone, and the flag is cleared only when empty).
            collection.bulk_write([op for doc in documents for op in self._removal(doc)], ordered=True)

    def _emptying(self, collection: str, doc: dict) -> UpdateOne:
        """Empties the outbox and clears the flag if it still holds exactly the events read: events are only
        ever appended, and their ids are unique, so an outbox of the same length whose last event is the one
        read is the one read. In a collection whose documents get events only when created, nothing can have
        arrived.

        Every filter names the document by ``_id``: on mongoeco a filter without it is a scan of the collection.
        """
        cleared = {"$set": {OUTBOX_FIELD: [], PENDING_FIELD: False}}
        if collection in self.append_once:
            return UpdateOne({"_id": doc["_id"]}, cleared)
        outbox = doc.get(OUTBOX_FIELD, [])
        still = {"_id": doc["_id"], OUTBOX_FIELD: {"$size": len(outbox)}}
        if outbox:
            still[f"{OUTBOX_FIELD}.{len(outbox) - 1}.id"] = outbox[-1]["id"]
        return UpdateOne(still, cleared)

    @staticmethod
    def _removal(doc: dict) -> list[UpdateOne]:
        """Removes exactly the published events; clears the flag only if no new event arrived in between."""
        ids = [event["id"] for event in doc.get(OUTBOX_FIELD, [])]
        return [
            UpdateOne({"_id": doc["_id"]}, {"$pull": {OUTBOX_FIELD: {"id": {"$in": ids}}}}),
            UpdateOne({"_id": doc["_id"], OUTBOX_FIELD: {"$size": 0}}, {"$set": {PENDING_FIELD: False}}),
        ]

    @staticmethod
    def _clear_flag_if_empty(collection, doc_id) -> None:
        collection.update_one({"_id": doc_id, OUTBOX_FIELD: {"$size": 0}}, {"$set": {PENDING_FIELD: False}})

    def close(self) -> None:
        self.publisher.close()
