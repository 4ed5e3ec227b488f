"""Who may record and correct check-ins, and who may read them.

Reading: check-ins, progress and staleness are taken on published V2MOMs
only, and goals shows every published version to every authenticated
caller, so every authenticated caller may read them.

Recording, on a published V2MOM: the item's owner; for a method also its
Accountable and Responsible people; the V2MOM's owner; an admin. Consulted
and Informed people, managers and peers may read but not record.

Correcting: during the cycle, whoever may record on that item. Once the
cycle has ended the books are closing: only the V2MOM's owner, the item's
owner or an admin.
"""

from services.platform.api.auth import Caller
from services.platform.core.errors import PermissionDenied

from .progress import METHOD


def _is(caller: Caller, person_id: str | None) -> bool:
    # An empty owner must never match a token whose subject happens to be empty.
    return bool(person_id) and caller.person_id == person_id


def owns(caller: Caller, structure: dict, item: dict) -> bool:
    """The V2MOM's owner, the item's owner, or an admin."""
    return caller.is_admin or _is(caller, structure["owner_id"]) or _is(caller, item.get("owner_id"))


def may_record(caller: Caller, structure: dict, kind: str, item: dict) -> bool:
    if owns(caller, structure, item):
        return True
    if kind == METHOD:
        return _is(caller, item.get("accountable_id")) or caller.person_id in item.get("responsible_ids", [])
    return False


def require_may_record(caller: Caller, structure: dict, kind: str, item: dict) -> None:
    if not may_record(caller, structure, kind, item):
        roles = "its owner, Accountable or Responsible people" if kind == METHOD else "its owner"
        raise PermissionDenied(
            f"check-ins on {item['id']!r} are for {roles}, the V2MOM's owner or an admin; not {caller.person_id}"
        )


def require_may_correct(caller: Caller, structure: dict, kind: str, item: dict, cycle_ended: bool) -> None:
    if not cycle_ended:
        require_may_record(caller, structure, kind, item)
    elif not owns(caller, structure, item):
        raise PermissionDenied(
            f"cycle {structure['cycle_id']} has ended: only the V2MOM's owner, the item's owner "
            "or an admin may correct its check-ins"
        )


def require_admin(caller: Caller, action: str) -> None:
    if not caller.is_admin:
        raise PermissionDenied(f"only an admin may {action}")
