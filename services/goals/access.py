"""Who may see and do what with a V2MOM.

Published versions are visible to everyone. Working copies (drafts, pending
submissions, requested changes) only to the owner, the owner's manager
chain and admins. Anything a caller may not see does not exist for them.
Who may take each lifecycle action is named in lifecycle.py and decided here.
Who a caller is comes from the directory too (``person_record``): the kernel's
Authenticator refuses people it does not know or marks inactive (a leaver)
before any of this runs, and takes their roles from here, never from a token.
"""

from services.platform.api.auth import Caller, PersonRecord
from services.platform.core.errors import NotFound, PermissionDenied
from services.platform.core.validation import is_id

from .directory import Directory
from .lifecycle import APPROVER, SUBMITTED


class Access:
    def __init__(self, directory: Directory):
        self.directory = directory

    def person_record(self, person_id: str) -> PersonRecord | None:
        """A caller as the directory knows them (auth.PeopleLookup); None for someone it does not."""
        person = self.directory.person(person_id) if is_id(person_id) else None
        if person is None:
            return None
        return PersonRecord(frozenset(person.get("roles") or ()), bool(person.get("active", True)))

    def sees_working_copy(self, caller: Caller, doc: dict) -> bool:
        if caller.is_admin or caller.person_id == doc["owner_id"]:
            return True
        return caller.person_id in self.directory.manager_chain(doc["owner_id"])

    def person_sees_version(self, person: dict, doc: dict, on_published: bool) -> bool:
        """Whether someone the directory knows (not the caller: a person mentioned) sees that version."""
        if not person.get("active", True):
            return False
        if on_published:
            return self.is_public(doc)
        person_id = person["_id"]
        return ("admin" in (person.get("roles") or ()) or person_id == doc["owner_id"]
                or person_id in self.directory.manager_chain(doc["owner_id"]))

    def is_public(self, doc: dict) -> bool:
        return doc.get("published") is not None

    def may_see(self, caller: Caller, doc: dict) -> bool:
        return self.is_public(doc) or self.sees_working_copy(caller, doc)

    def require_visible(self, caller: Caller, doc: dict | None, v2mom_id: str) -> dict:
        if doc is None or not self.may_see(caller, doc):
            raise NotFound(f"v2mom {v2mom_id!r} not found")
        return doc

    def require_working_copy(self, caller: Caller, doc: dict | None, v2mom_id: str) -> dict:
        """For actions on the working copy; a published-only viewer is told no, not lied to."""
        doc = self.require_visible(caller, doc, v2mom_id)
        if not self.sees_working_copy(caller, doc):
            raise PermissionDenied(f"only the owner, their managers and admins may work on v2mom {v2mom_id!r}")
        return doc

    def require_editor(self, caller: Caller, doc: dict | None, v2mom_id: str) -> dict:
        doc = self.require_working_copy(caller, doc, v2mom_id)
        if not (caller.is_admin or caller.person_id == doc["owner_id"]):
            raise PermissionDenied(f"only the owner or an admin may change v2mom {v2mom_id!r}")
        return doc

    def require_actor(self, taken_by: str, caller: Caller, doc: dict | None, v2mom_id: str) -> dict:
        """The V2MOM, if the caller is who may take a lifecycle action (lifecycle.EDITOR or APPROVER) on it."""
        if taken_by == APPROVER:
            return self.require_approver(caller, doc, v2mom_id)
        return self.require_editor(caller, doc, v2mom_id)

    def require_approver(self, caller: Caller, doc: dict | None, v2mom_id: str) -> dict:
        doc = self.require_working_copy(caller, doc, v2mom_id)
        if caller.person_id == doc["owner_id"]:
            raise PermissionDenied("nobody may approve their own V2MOM")
        # Outside a submission the stored approver is stale or unset: ask who would approve it now,
        # so the would-be approver hears "not submitted" rather than "not you".
        approver = doc.get("approver_id") if doc["state"] == SUBMITTED else self.approver_for(doc)
        if caller.is_admin or (approver and caller.person_id == approver):
            return doc
        raise PermissionDenied(f"v2mom {v2mom_id!r} is for {approver or 'an admin'} to approve, not you")

    def visible_owner_ids(self, caller: Caller) -> list[str]:
        """Owners whose working copies the caller may see (admins see all: handled by the caller)."""
        return [caller.person_id, *self.directory.reports_of(caller.person_id)]

    def approver_for(self, doc: dict) -> str:
        """The owner's manager; company V2MOMs and people without a manager go to admins ('')."""
        if doc["level"] == "ORG_LEVEL_COMPANY":
            return ""
        owner = self.directory.person(doc["owner_id"])
        return (owner or {}).get("manager_id") or ""
