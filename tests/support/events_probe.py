"""A test-side consumer: a durable queue bound to an exchange, read with basic_get.

Durable so that it survives a broker restart in the outage test.
"""

import json
import time
import uuid

import amqp
import kombu


class EventProbe:
    def __init__(self, amqp_uri: str, exchange: str, routing_key: str = "#"):
        self.connection = kombu.Connection(amqp_uri)
        self.exchange = kombu.Exchange(exchange, type="topic", durable=True)
        self.queue = kombu.Queue(
            f"test.probe.{uuid.uuid4().hex[:8]}", self.exchange, routing_key=routing_key, durable=True
        )
        self.queue(self.connection.default_channel).declare()
        self.received: list[dict] = []
        self.messages: list = []

    def drain(self, until_count: int, timeout: float = 20.0) -> list[dict]:
        """Reads until at least until_count events arrived in total, or the timeout."""
        deadline = time.monotonic() + timeout
        while len(self.received) < until_count and time.monotonic() < deadline:
            if not self._get_one():
                time.sleep(0.05)
        return self.received

    def settle(self, quiet_seconds: float = 1.0) -> list[dict]:
        """Reads everything until nothing new arrives for quiet_seconds."""
        deadline = time.monotonic() + quiet_seconds
        while time.monotonic() < deadline:
            if self._get_one():
                deadline = time.monotonic() + quiet_seconds
            else:
                time.sleep(0.05)
        return self.received

    def _get_one(self) -> bool:
        try:
            message = self.queue(self.connection.default_channel).get(no_ack=True)
        except (OSError, amqp.exceptions.ConnectionError, kombu.exceptions.OperationalError):
            self._reconnect()
            return False
        if message is None:
            return False
        self.messages.append(message)
        self.received.append(json.loads(message.body))
        return True

    def _reconnect(self) -> None:
        # After a broker restart the old socket is dead; the durable queue kept its messages.
        uri = self.connection.as_uri(include_password=True)
        try:
            self.connection.release()
        except OSError:
            pass
        self.connection = kombu.Connection(uri)
        try:
            self.connection.ensure_connection(max_retries=1)
        except Exception:
            time.sleep(0.2)

    def close(self) -> None:
        try:
            self.queue(self.connection.default_channel).delete()
        finally:
            self.connection.release()
