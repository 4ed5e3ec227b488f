"""CloudEvents 1.0 structured JSON envelopes for everything on the bus.

Events go to one durable topic exchange per publishing service, named
``<service>.events`` (nameko's convention), with the event type as routing
key - so nameko ``@event_handler("goals", "v2mom_approved")`` receives them.
"""

import json
from datetime import UTC, datetime

from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.message import Message
from kombu.serialization import register

from ..core.ids import new_id

CONTENT_TYPE = "application/cloudevents+json"
SERIALIZER = "cloudevents"
SPEC_VERSION = "1.0"
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type", "time", "datacontenttype", "data")


def _dumps(body) -> str:
    return json.dumps(body, separators=(",", ":"), default=str)


# Consumers (nameko or plain kombu) accept this content type by name.
register(SERIALIZER, _dumps, json.loads, content_type=CONTENT_TYPE, content_encoding="utf-8")


def exchange_name(service: str) -> str:
    return f"{service}.events"


def unrouted_name(exchange: str) -> str:
    """The alternate exchange of ``exchange``, and the durable queue that keeps what no consumer's queue took."""
    return f"{exchange}.unrouted"


def replay_exchange_name(service: str) -> str:
    """The direct exchange through which ReplayEvents publishes to one queue, bound with its own name (replay.py)."""
    return f"{service}.replay"


def source_of(service: str) -> str:
    """The CloudEvents ``source`` of every event a service publishes."""
    return f"/v2mom/{service}"


def envelope(service: str, event_type: str, subject: str, data: dict | Message, time: datetime | None = None) -> dict:
    """A new event. ``source`` names the publishing service; ``subject`` the aggregate id.

    A protobuf payload is stored as bytes and rendered to proto3 JSON only by
    ``to_wire`` in the relay: that rendering is pure Python and was the
    costliest step of an API write (bench/README.md).
    """
    event = {
        "specversion": SPEC_VERSION,
        "id": new_id("evt"),
        "source": source_of(service),
        "type": event_type,
        "subject": subject,
        "time": (time or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
    }
    if isinstance(data, Message):
        event["data_proto"] = {"type": data.DESCRIPTOR.full_name, "value": data.SerializeToString()}
    else:
        event["data"] = data
    return event


def to_wire(event: dict) -> dict:
    """The CloudEvents envelope as consumers see it, every payload field printed, defaults included."""
    if "data_proto" not in event:
        return event
    stored = event["data_proto"]
    descriptor = descriptor_pool.Default().FindMessageTypeByName(stored["type"])
    message = message_factory.GetMessageClass(descriptor).FromString(bytes(stored["value"]))
    wire = {key: value for key, value in event.items() if key != "data_proto"}
    # Defaults are printed: a consumer must see `active: false`, not a missing field.
    wire["data"] = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    return wire


class MalformedEvent(ValueError):
    pass


class SourceMismatch(MalformedEvent):
    """An event whose source is not the service whose exchange it came through: forged or misrouted."""


def parse(body, exchange: str | None = None) -> dict:
    """Validates an incoming envelope; raises MalformedEvent with the reason.

    With the exchange the message came through, also checks that the event's
    ``source`` is that exchange's service: each service's broker user may
    write only to its own exchange, so this is what stops checkins from
    announcing a ``v2mom_approved``.
    """
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body)
        except ValueError as error:
            raise MalformedEvent(f"body is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise MalformedEvent("envelope must be a JSON object")
    missing = [name for name in REQUIRED_ATTRIBUTES if name not in body]
    if missing:
        raise MalformedEvent(f"envelope lacks {', '.join(missing)}")
    if body["specversion"] != SPEC_VERSION:
        raise MalformedEvent(f"unsupported specversion {body['specversion']!r}")
    if not isinstance(body["data"], dict):
        raise MalformedEvent("data must be a JSON object")
    if exchange is not None:
        check_source(body, exchange)
    return body


def check_source(event: dict, exchange: str) -> None:
    """Raises SourceMismatch unless the event came through its own service's exchange."""
    if not exchange.endswith(".events"):
        raise SourceMismatch(f"event from {event.get('source')!r} came through {exchange!r}, no service's events exchange")
    expected = source_of(exchange.removesuffix(".events"))
    if event.get("source") != expected:
        raise SourceMismatch(f"source {event.get('source')!r} does not match exchange {exchange!r} ({expected!r})")
