"""The event catalogue (docs/events.asyncapi.yaml) as a validator for tests.

    from tests.support.catalogue import validate_event
    validate_event(json.loads(message.body), exchange="checkins.events")   # raises CatalogueMismatch

Any test that receives a real event (from RabbitMQ or from an outbox) should
pass it through ``validate_event``: then the catalogue that external consumers
code against cannot silently drift from what the services publish. Pass the
exchange it came from when the test knows it: the catalogue says which
service publishes each type, and each message's schema pins its ``source``.

The schemas are AsyncAPI Schema Objects, a superset of JSON Schema draft 7,
so they are checked with ``Draft7Validator``. ``$ref``s point into the same
document; a ``referencing`` registry holding the whole document resolves them
in place, so the YAML stays the single source. Formats are not asserted
(``date-time`` needs an optional package); the schemas carry patterns for
the strings that matter.
"""

import functools
from pathlib import Path

import yaml
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE_PATH = ROOT / "docs" / "events.asyncapi.yaml"
# Any absolute URI works; it only anchors the in-document "#/..." references.
CATALOGUE_URI = "urn:v2mom:asyncapi:events"

__all__ = [
    "CatalogueMismatch", "validate_event", "load_catalogue", "message_for_type", "exchange_of_type", "payload_validator",
]


class CatalogueMismatch(AssertionError):
    """An event does not match docs/events.asyncapi.yaml."""


@functools.cache
def load_catalogue() -> dict:
    with CATALOGUE_PATH.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@functools.cache
def _registry() -> Registry:
    resource = Resource(contents=load_catalogue(), specification=DRAFT7)
    return Registry().with_resource(CATALOGUE_URI, resource)


def resolve_pointer(document, pointer: str):
    """The value at a JSON pointer ("#/a/b" or "/a/b"); KeyError/IndexError when absent."""
    node = document
    for raw in pointer.lstrip("#").split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _follow(node: dict) -> tuple[str | None, dict]:
    """Follows a chain of in-document $refs; returns (last $ref, target)."""
    ref = None
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        node = resolve_pointer(load_catalogue(), ref)
    return ref, node


def _channel_of_type(event_type: str) -> dict:
    channels = load_catalogue().get("channels", {}).values()
    return next(channel for channel in channels if channel.get("address") == event_type)


@functools.cache
def _messages_by_type() -> dict[str, tuple[str, dict]]:
    """Event type (= channel address = routing key) -> (message $ref, message)."""
    found: dict[str, tuple[str, dict]] = {}
    for channel_name, channel in load_catalogue().get("channels", {}).items():
        messages = channel.get("messages") or {}
        if len(messages) != 1:
            raise CatalogueMismatch(f"channel {channel_name!r} must carry exactly one message, has {len(messages)}")
        (message,) = messages.values()
        ref, resolved = _follow(message)
        found[channel["address"]] = (ref or f"#/channels/{channel_name}/messages/{next(iter(messages))}", resolved)
    return found


def catalogued_types() -> set[str]:
    return set(_messages_by_type())


def message_for_type(event_type: str) -> dict:
    try:
        return _messages_by_type()[event_type][1]
    except KeyError:
        raise CatalogueMismatch(
            f"event type {event_type!r} is not in {CATALOGUE_PATH.name} "
            f"(catalogued: {', '.join(sorted(catalogued_types()))})"
        ) from None


def exchange_of_type(event_type: str) -> str:
    """The exchange the catalogue says an event type is published on."""
    message_for_type(event_type)  # raises for an unknown type
    _, binding = _follow(_channel_of_type(event_type)["bindings"])
    return binding["amqp"]["exchange"]["name"]


@functools.cache
def payload_validator(pointer: str) -> Draft7Validator:
    """A validator for the schema at an in-document pointer, e.g. "#/components/schemas/Person"."""
    return Draft7Validator({"$ref": CATALOGUE_URI + pointer}, registry=_registry())


def _leaf_errors(errors):
    # allOf/anyOf failures nest the real reasons in .context; report those,
    # not "... is not valid under the given schema".
    for error in errors:
        if error.context:
            yield from _leaf_errors(error.context)
        else:
            yield error


def schema_errors(instance, pointer: str) -> list[str]:
    """Readable reasons why ``instance`` does not match the schema at ``pointer``; empty when it does."""
    errors = payload_validator(pointer).iter_errors(instance)
    reasons = {f"at {error.json_path}: {error.message}" for error in _leaf_errors(errors)}
    return sorted(reasons)


def validate_event(envelope: dict, exchange: str | None = None) -> None:
    """Raises CatalogueMismatch unless ``envelope`` is a catalogued event that matches its schema.

    Checks the envelope and its data against the message schema of its
    ``type`` (which pins ``source`` to the publishing service), that
    ``subject`` is the aggregate id the message's ``x-subject`` names (JSON
    Schema cannot compare two fields), and, given the ``exchange`` the event
    arrived on, that the catalogue has its type published there.
    """
    if not isinstance(envelope, dict):
        raise CatalogueMismatch(f"an event envelope is a JSON object, got {type(envelope).__name__}")
    event_type = envelope.get("type")
    if not isinstance(event_type, str):
        raise CatalogueMismatch(f"envelope has no string 'type': {envelope!r:.200}")
    ref, _ = _messages_by_type().get(event_type, (None, None))
    if ref is None:
        message_for_type(event_type)  # raises with the list of known types
    if exchange is not None and exchange_of_type(event_type) != exchange:
        raise CatalogueMismatch(
            f"{event_type} event arrived on {exchange!r}, but {CATALOGUE_PATH.name} has it published on "
            f"{exchange_of_type(event_type)!r}"
        )
    reasons = schema_errors(envelope, f"{ref}/payload")
    if reasons:
        raise CatalogueMismatch(
            f"{event_type} event {envelope.get('id')!r} does not match {CATALOGUE_PATH.name}:\n  " + "\n  ".join(reasons)
        )
    _check_subject(envelope, event_type, message_for_type(event_type).get("x-subject"))


def _check_subject(envelope: dict, event_type: str, pointers) -> None:
    """``x-subject``: one JSON pointer into the envelope, or a list whose values, joined by '/', make the subject."""
    if not pointers:
        return
    pointers = [pointers] if isinstance(pointers, str) else list(pointers)
    try:
        expected = "/".join(str(resolve_pointer(envelope, pointer)) for pointer in pointers)
    except (KeyError, IndexError, TypeError):
        raise CatalogueMismatch(f"{event_type} event lacks one of {pointers}, which its subject is made of") from None
    if envelope["subject"] != expected:
        raise CatalogueMismatch(
            f"{event_type} event subject {envelope['subject']!r} differs from {' + / + '.join(pointers)} = {expected!r}"
        )
