"""The V2MOM lifecycle: its states, which action may leave which state, and who may take it.

    action            from                                 to                            by
    update (edit)     DRAFT, CHANGES_REQUESTED, PUBLISHED  unchanged (PUBLISHED: DRAFT)  editor
    submit            DRAFT, CHANGES_REQUESTED             SUBMITTED                     editor
    approve           SUBMITTED                            PUBLISHED                     approver
    request_changes   SUBMITTED                            CHANGES_REQUESTED             approver
    archive           any but ARCHIVED                     ARCHIVED (terminal)           editor
    withdraw          SUBMITTED                            DRAFT                         editor

The editor is the owner or an admin; the approver is the owner's manager (an
admin for company V2MOMs), or any admin, never the owner: access.py says who
they are for a given V2MOM. Pure rules: no store, no gRPC.
"""

from dataclasses import dataclass

from services.platform.core.errors import (
    Aborted,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PreconditionViolation,
)

from . import lint

DRAFT = "V2MOM_STATE_DRAFT"
SUBMITTED = "V2MOM_STATE_SUBMITTED"
CHANGES_REQUESTED = "V2MOM_STATE_CHANGES_REQUESTED"
PUBLISHED = "V2MOM_STATE_PUBLISHED"
ARCHIVED = "V2MOM_STATE_ARCHIVED"

EDITOR = "editor"  # the owner, or an admin
APPROVER = "approver"  # the owner's approver, or an admin; never the owner


@dataclass(frozen=True)
class Action:
    name: str  # as the history records it
    verb: str  # "only DRAFT V2MOMs can be <verb>"
    allowed_from: tuple[str, ...]
    taken_by: str  # EDITOR or APPROVER
    target: str | None  # the state after; None: see state_after


UPDATE = Action("UPDATE", "edited", (DRAFT, CHANGES_REQUESTED, PUBLISHED), EDITOR, None)
SUBMIT = Action("SUBMIT", "submitted", (DRAFT, CHANGES_REQUESTED), EDITOR, SUBMITTED)
APPROVE = Action("APPROVE", "approved", (SUBMITTED,), APPROVER, PUBLISHED)
REQUEST_CHANGES = Action("REQUEST_CHANGES", "sent back", (SUBMITTED,), APPROVER, CHANGES_REQUESTED)
ARCHIVE = Action("ARCHIVE", "archived", (DRAFT, SUBMITTED, CHANGES_REQUESTED, PUBLISHED), EDITOR, ARCHIVED)
# The owner takes a submission back before it is decided, to change it or to wait.
WITHDRAW = Action("WITHDRAW", "withdrawn", (SUBMITTED,), EDITOR, DRAFT)


def state_after(action: Action, state: str) -> str:
    if action.target is None:
        # Editing the published version opens a new draft; the published one stays as it is.
        return DRAFT if state == PUBLISHED else state
    return action.target


def require_allowed(action: Action, v2mom_id: str, state: str) -> None:
    """FAILED_PRECONDITION when ``action`` may not leave ``state``."""
    if state in action.allowed_from:
        return
    if action is ARCHIVE:
        raise FailedPrecondition(f"v2mom {v2mom_id!r} is already archived")
    names = ", ".join(s.removeprefix("V2MOM_STATE_") for s in action.allowed_from)
    shown = state.removeprefix("V2MOM_STATE_")
    raise FailedPrecondition(
        f"v2mom {v2mom_id!r} is {shown}; only {names} V2MOMs can be {action.verb}",
        [PreconditionViolation("STATE", v2mom_id, f"state is {shown}")],
    )


def require_expected_revision(doc: dict, expected: int) -> None:
    """Every action may name the revision it was decided on (0: any); another one means someone got there first."""
    if expected < 0:
        raise InvalidArgument([FieldViolation("expected_revision", "must not be negative")])
    if expected and expected != doc["revision"]:
        raise Aborted(f"v2mom {doc['_id']!r} is at revision {doc['revision']}, not {expected}; read it again and retry")


def require_submittable(doc: dict) -> None:
    """Lint errors block a submission; warnings and info do not."""
    errors = [f for f in lint.lint(doc["content"]) if f.severity == lint.ERROR]
    if errors:
        raise FailedPrecondition(
            f"v2mom {doc['_id']!r} has {len(errors)} problem(s) to fix before submitting; see LintV2MOM",
            [PreconditionViolation(f.code, f.field_path, f.message) for f in errors],
        )


def requires_change_reason(doc: dict) -> bool:
    """Once published, every edit says why: readers of the published version will see it change."""
    return bool(doc.get("published_revision"))
