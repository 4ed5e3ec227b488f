"""Every service that publishes events serves ReplayEvents for them, and no other does.

A publisher is a service whose worker relays an outbox (the kernel's OutboxRelayProvider, which logs what it
publishes); each one's api must serve EventLogService over its own log, for its own event types
(services/platform/api/event_log.py). metrics publishes nothing, so it serves no replay.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir()
                  if p.is_dir() and p.name != "platform" and (p / "worker.py").exists())


def _calls(path: Path, name: str) -> list[ast.Call]:
    return [node for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == name]


def test_the_services_that_relay_events_are_the_ones_that_replay_them():
    publishers = {s for s in SERVICES if _calls(ROOT / "services" / s / "worker.py", "OutboxRelayProvider")}
    replayers = {s for s in SERVICES if _calls(ROOT / "services" / s / "api.py", "event_log_binding")}
    assert publishers == {"goals", "checkins", "notify"}
    assert replayers == publishers


def test_each_replays_its_own_event_types():
    for service in ("goals", "checkins", "notify"):
        (call,) = _calls(ROOT / "services" / service / "api.py", "event_log_binding")
        types = ast.unparse(call.args[2])
        assert types.endswith("EVENT_TYPES") and "events" in types, (service, types)
