"""Committing one change to a V2MOM: the new state, its history entry and its event, in one write.

Shared by the use cases that change a V2MOM (authoring.py, workflow.py).
"""

from datetime import datetime

from services.platform.api.auth import Caller
from services.platform.core.errors import Aborted

from . import convert, events, lifecycle
from .repository import V2MOMRepository

# The actor of a recorded system revision: a rule applied by goals itself, not anyone's edit (the rule and who
# set it off are in the reason).
SYSTEM = Caller(person_id="system", roles=frozenset())

EVENT_OF = {
    lifecycle.UPDATE.name: events.V2MOM_UPDATED,
    lifecycle.SUBMIT.name: events.V2MOM_SUBMITTED,
    lifecycle.APPROVE.name: events.V2MOM_APPROVED,
    lifecycle.REQUEST_CHANGES.name: events.V2MOM_CHANGES_REQUESTED,
    lifecycle.ARCHIVE.name: events.V2MOM_ARCHIVED,
    lifecycle.WITHDRAW.name: events.V2MOM_WITHDRAWN,
}


def history_entry(doc: dict, action: str, caller: Caller, stamp: datetime, reason: str, changed: list[str]) -> dict:
    """The revision as it stands after ``action``: who, when, why, and the content then."""
    return {
        "revision": doc["revision"],
        "action": action,
        "actor_id": caller.person_id,
        "at": stamp,
        "reason": reason,
        "changed_paths": changed,
        "state": doc["state"],
        "content": doc["content"],
    }


def commit(
    repository: V2MOMRepository,
    caller: Caller,
    doc: dict,
    action: lifecycle.Action,
    changes: dict,
    stamp: datetime,
    reason: str = "",
    changed: list[str] | None = None,
    unset: tuple[str, ...] = (),
    event_content: dict | None = None,
    extra_events: tuple[dict, ...] = (),
) -> dict:
    """Applies ``changes`` and the state ``action`` leads to on top of the revision in ``doc``.

    ``event_content``: the content the event carries, when not the working copy's (an approval's
    published content, whose obstacles carry their open times). ABORTED if someone else changed the
    V2MOM meanwhile. ``extra_events`` go in the same write, after the action's own.
    """
    changed = changed or []
    changes = {**changes, "state": lifecycle.state_after(action, doc["state"])}
    after = {**doc, **changes, "revision": doc["revision"] + 1}
    entry = history_entry(after, action.name, caller, stamp, reason, changed)
    shown = {**after, "content": event_content} if event_content is not None else after
    data = convert.event_data(shown, caller.person_id, doc["state"], reason=reason, changed_paths=changed)
    event = events.v2mom_event(EVENT_OF[action.name], data)
    saved = repository.apply(doc["_id"], doc["revision"], changes, entry, [event, *extra_events], unset)
    if saved is None:
        raise Aborted(f"v2mom {doc['_id']!r} changed while you were working on it; read it again and retry")
    return saved
