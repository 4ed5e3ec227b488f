"""Every event type goals and check-ins publish has a consumer among our workers.

Events are published ``mandatory``: a type no queue is bound for ends in the
exchange's unrouted queue and sets off V2MOMEventsUnroutable, so a new event
type needs a consumer (or a decision to make its exchange a feed, as notify's
is) before it ships.
"""

import ast
import importlib
from pathlib import Path

import pytest

from services.metrics import consume as metrics_consume

ROOT = Path(__file__).resolve().parents[2]
PUBLISHERS = ("goals", "checkins")
WORKERS = ("goals", "checkins", "notify")  # metrics subscribes through consume.SUBSCRIPTIONS


def _imported_names(tree: ast.Module, service: str) -> dict[str, tuple[str, str | None]]:
    """What each name a worker imports from its own package refers to: (module, attribute or None for a module)."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            package = f"services.{service}" + (f".{node.module}" if node.module else "")
            for alias in node.names:
                target = (package, alias.name) if node.module else (f"{package}.{alias.name}", None)
                names[alias.asname or alias.name] = target
    return names


def _resolve(node: ast.expr, names: dict) -> str:
    """A decorator argument: a literal, a name imported from the service's own modules, or module.NAME."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in names and names[node.id][1]:
        module, attribute = names[node.id]
        return getattr(importlib.import_module(module), attribute)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in names:
        module, attribute = names[node.value.id]
        return getattr(importlib.import_module(module if attribute is None else f"{module}.{attribute}"), node.attr)
    raise AssertionError(f"cannot resolve {ast.unparse(node)}")


def _handled(service: str) -> set[tuple[str, str]]:
    tree = ast.parse((ROOT / "services" / service / "worker.py").read_text())
    names = _imported_names(tree, service)
    found = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "cloud_event_handler"
                and len(node.args) == 2):
            found.add((_resolve(node.args[0], names), _resolve(node.args[1], names)))
    return found


def consumed() -> set[tuple[str, str]]:
    pairs = {(source, event_type) for source, types in metrics_consume.SUBSCRIPTIONS.items() for event_type in types}
    for service in WORKERS:
        pairs |= _handled(service)
    return pairs


def test_the_scan_finds_the_handlers_we_know():
    # A scan that found nothing would pass the test below vacuously.
    assert {("goals", "v2mom_submitted"), ("checkins", "checkin_recorded"), ("goals", "cycle_changed")} <= consumed()


@pytest.mark.parametrize("publisher", PUBLISHERS)
def test_every_published_event_type_has_a_consumer(publisher):
    published = set(importlib.import_module(f"services.{publisher}.events").EVENT_TYPES)
    handled = {event_type for source, event_type in consumed() if source == publisher}
    assert published - handled == set(), f"{publisher} publishes types no worker of ours consumes"
