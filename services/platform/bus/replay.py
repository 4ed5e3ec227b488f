"""Publishing logged events again, to one integrator's queue and nobody else's.

Never through the service's events exchange (live consumers would see
everything twice), and not through the default exchange either: that would
need the right to publish to every queue on the broker, which no service's
user has (deploy/rabbitmq/definitions.py). Each service has a durable direct
exchange of its own, ``<service>.replay``; an integrator binds their queue to
it once, with the queue's name as routing key, and a replay publishes there
with that routing key, ``mandatory`` and with publisher confirms. So a replay
reaches only a queue that asked for replays, and a queue that is not bound
comes back (returned), never silently dropped.

The bodies are the log's, byte for byte what was published, so every event
keeps its CloudEvents id; a header ``x-v2mom-replayed`` marks the delivery.
"""

import amqp
import kombu

from .events import replay_exchange_name
from .outbox import ConfirmingPublisher, Outgoing, PublishFailed

REPLAYED_HEADER = "x-v2mom-replayed"


def declare_replay_exchange(channel, name: str) -> None:
    kombu.Exchange(name, type="direct", durable=True)(channel).declare()


class QueueMissing(RuntimeError):
    """The queue to replay to does not exist on the broker."""


class QueueNotBound(RuntimeError):
    """The broker returned the replay: the queue is not bound to the replay exchange with its name."""

    def __init__(self, message: str, confirmed: int):
        super().__init__(message)
        self.confirmed = confirmed


class BrokerRefused(RuntimeError):
    """The broker refused this service's user (permissions, an exclusive queue)."""


class ReplayPublisher(ConfirmingPublisher):
    """Publishes to ``<service>.replay`` with routing key = ``queue``; one confirm wait per batch."""

    def __init__(self, amqp_uri: str, service: str, queue: str, confirm_timeout: float = 10.0):
        super().__init__(amqp_uri, replay_exchange_name(service), confirm_timeout)
        self.queue = queue

    def _declare(self, channel) -> None:
        # Passive: only whether it exists. Declaring it would make a queue nobody reads.
        channel.queue_declare(self.queue, passive=True)
        declare_replay_exchange(channel, self.exchange)

    def check(self) -> None:
        """Opens the channel (the queue exists, the exchange is declared); raises as ``send`` does."""
        self._guarded(self._open)

    def send(self, messages: list[Outgoing]) -> None:
        """Returns once the broker confirmed every message into the queue; raises otherwise."""
        if messages:
            self._guarded(lambda: self._send_and_wait(messages))

    def _send_and_wait(self, messages: list[Outgoing]) -> None:
        channel = self._open()
        self._returned = []
        self._wait_for_confirms(self._send(channel, messages, self.exchange, routing_key=self.queue,
                                           headers={REPLAYED_HEADER: True}))
        if self._returned:
            raise QueueNotBound(
                f"the broker returned {len(self._returned)} of {len(messages)} events: queue {self.queue!r} is not "
                f"bound to exchange {self.exchange!r} with routing key {self.queue!r}",
                confirmed=len(messages) - len(self._returned))

    def _guarded(self, action):
        try:
            return action()
        except (QueueNotBound, PublishFailed):
            self.close()
            raise
        except amqp.exceptions.NotFound as error:
            self.close()
            if "no queue" not in str(error.reply_text or ""):  # the replay exchange deleted during a replay, say
                raise BrokerRefused(f"the broker refused: {error.reply_text or error}") from None
            raise QueueMissing(f"queue {self.queue!r} does not exist on the broker") from None
        except (amqp.exceptions.AccessRefused, amqp.exceptions.ResourceLocked) as error:
            self.close()
            raise BrokerRefused(f"the broker refused: {error.reply_text or error}") from None
        except (OSError, amqp.exceptions.AMQPError, kombu.exceptions.KombuError) as error:
            self.close()
            raise PublishFailed(f"broker unavailable: {error}") from error
