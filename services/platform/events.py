"""CloudEvents 1.0 structured JSON envelopes for everything on the bus.

Events go to one durable topic exchange per publishing service, named
``<service>.events`` (nameko's convention), with the event type as routing
key - so nameko ``@event_handler("goals", "v2mom_approved")`` receives them.
"""

import json
from datetime import UTC, datetime

from kombu.serialization import register

from .ids import new_id

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


def envelope(service: str, event_type: str, subject: str, data: dict, time: datetime | None = None) -> dict:
    """A new event. ``source`` names the publishing service; ``subject`` the aggregate id."""
    return {
        "specversion": SPEC_VERSION,
        "id": new_id("evt"),
        "source": f"/v2mom/{service}",
        "type": event_type,
        "subject": subject,
        "time": (time or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": data,
    }


class MalformedEvent(ValueError):
    pass


def parse(body) -> dict:
    """Validates an incoming envelope; raises MalformedEvent with the reason."""
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
    return body
