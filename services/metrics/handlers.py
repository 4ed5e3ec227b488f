"""The platform's CloudEvents handler, counting what it dead-letters.

Dead letters are counted here, in the consumer, just before the reject: the
consumer knows why (undecodable body, malformed envelope, invalid payload,
handler failure) and which queue. Counting by draining the DLQs instead would
take the messages away from the operators who need to inspect and replay them.
"""

import logging

from pymongo.errors import ConnectionFailure, PyMongoError

from services.platform.core import config
from services.platform.worker.consumer import CloudEventHandler, DeadLetteringQueueConsumer, PermanentError
from services.platform.bus.events import MalformedEvent, SourceMismatch, parse
from services.platform.store.mongo import connect

from . import pipeline

log = logging.getLogger(__name__)

SERVICE = "metrics"


class DeadLetterCounter:
    """A connection of its own: the consumer extensions sit outside nameko's dependency injection."""

    def __init__(self):
        self._db = None

    def record(self, source: str, event_type: str, reason: str) -> None:
        try:
            if self._db is None:
                settings = config.load(SERVICE)
                self._db = connect(settings.mongo_uri, "metrics-dead-letters")[settings.database_name]
            pipeline.record_dead_letter(self._db, source, event_type, reason)
        except PyMongoError:
            # Never let counting stand between a poison message and its dead-letter queue.
            log.warning("could not count a dead letter", extra={"source": source, "type": event_type}, exc_info=True)


COUNTER = DeadLetterCounter()


def _source_of(exchange: str) -> str:
    return exchange.removesuffix(".events") if exchange else "unknown"


class CountingQueueConsumer(DeadLetteringQueueConsumer):
    def _reject_undecodable(self, message, error):
        info = message.delivery_info
        COUNTER.record(_source_of(info.get("exchange", "")), info.get("routing_key", ""), "undecodable")
        DeadLetteringQueueConsumer._reject_undecodable(message, error)


class MetricsEventHandler(CloudEventHandler):
    queue_consumer = CountingQueueConsumer()

    def handle_message(self, body, message):
        try:
            parse(body, message.delivery_info.get("exchange", ""))
        except MalformedEvent as error:
            reason = "wrong_source" if isinstance(error, SourceMismatch) else "malformed"
            COUNTER.record(self.source_service, self.event_type, reason)
        super().handle_message(body, message)

    def handle_message_processed(self, message, result=None, exc_info=None):
        if exc_info is not None and not isinstance(exc_info[1], ConnectionFailure):
            reason = "invalid" if isinstance(exc_info[1], PermanentError) else "failed"
            COUNTER.record(self.source_service, self.event_type, reason)
        super().handle_message_processed(message, result, exc_info)


metrics_event_handler = MetricsEventHandler.decorator
