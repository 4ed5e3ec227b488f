"""Use cases moving a V2MOM through its lifecycle: SubmitV2MOM, ApproveV2MOM, RequestChanges, ArchiveV2MOM,
WithdrawSubmission.

Which action may leave which state, and who may take it, is lifecycle.py's;
each use case here loads the V2MOM for that actor, checks the rule, and
commits the new state with its history entry and event (commits.py).
"""

from services.platform.api.auth import Caller
from services.platform.core.clock import utc_now

from . import commits, lifecycle, obstacles, parent_changes, validation
from .access import Access
from .repository import V2MOMRepository
from .views import render
from v2mom.v1 import goals_pb2


class Workflow:
    def __init__(self, repository: V2MOMRepository, access: Access):
        self.repository = repository
        self.access = access

    def submit(self, caller: Caller, request: goals_pb2.SubmitV2MOMRequest) -> goals_pb2.V2MOM:
        validation.require_id("id", request.id)
        doc = self._load_for(lifecycle.SUBMIT, caller, request.id, request.expected_revision)
        lifecycle.require_submittable(doc)
        stamp = utc_now()
        changes = {
            "approver_id": self.access.approver_for(doc),
            "submitted_at": stamp,
            "updated_at": stamp,
        }
        # The reason answered the previous submission; a new one starts clean.
        return self._commit(caller, doc, lifecycle.SUBMIT, changes, stamp, unset=("changes_requested_reason",))

    def approve(self, caller: Caller, request: goals_pb2.ApproveV2MOMRequest) -> goals_pb2.V2MOM:
        validation.require_id("id", request.id)
        validation.require_reason("comment", request.comment, required=False)
        doc = self._load_for(lifecycle.APPROVE, caller, request.id, request.expected_revision)
        stamp = utc_now()
        # The parent is part of what is approved: readers keep seeing this one until the next approval.
        before = (doc.get("published") or {}).get("content")
        published = {
            "revision": doc["revision"] + 1,
            # Obstacles open in the version replaced keep their open time; newly open ones start now.
            "content": obstacles.stamp_opened(doc["content"], before, stamp),
            "parent_id": doc.get("parent_id"),
            "approved_by": caller.person_id,
            "published_at": stamp,
        }
        changes = {
            "published": published,
            "published_revision": published["revision"],
            "published_parent_id": published["parent_id"],
            "published_at": stamp,
            "updated_at": stamp,
        }
        told = self._children_told({**doc, **changes}, doc.get("published_revision") or 0, before, caller, stamp)
        saved = commits.commit(self.repository, caller, doc, lifecycle.APPROVE, changes, stamp, request.comment,
                               unset=("changes_requested_reason",), event_content=published["content"],
                               extra_events=told)
        return render(saved, show_published=False)

    def _children_told(self, approved: dict, previous: int, before: dict | None, caller: Caller,
                       stamp) -> tuple[dict, ...]:
        """v2mom_parent_changed when the published content changed and V2MOMs align beneath (parent_changes.py)."""
        paths = parent_changes.changed_paths(before, approved["published"]["content"])
        if not paths:
            return ()
        children = parent_changes.aligned_beneath(approved["_id"], self.repository.children_of([approved["_id"]]))
        if not children:
            return ()
        return (parent_changes.event(approved, previous, caller.person_id, paths, children, stamp),)

    def request_changes(self, caller: Caller, request: goals_pb2.RequestChangesRequest) -> goals_pb2.V2MOM:
        validation.require_id("id", request.id)
        validation.require_reason("reason", request.reason, required=True)
        doc = self._load_for(lifecycle.REQUEST_CHANGES, caller, request.id, request.expected_revision)
        stamp = utc_now()
        changes = {"changes_requested_reason": request.reason, "updated_at": stamp}
        return self._commit(caller, doc, lifecycle.REQUEST_CHANGES, changes, stamp, request.reason)

    def archive(self, caller: Caller, request: goals_pb2.ArchiveV2MOMRequest) -> goals_pb2.V2MOM:
        validation.require_id("id", request.id)
        validation.require_reason("reason", request.reason, required=False)
        doc = self._load_for(lifecycle.ARCHIVE, caller, request.id, request.expected_revision)
        stamp = utc_now()
        changes = {"archived_at": stamp, "updated_at": stamp}
        # Archiving frees the slot for a new V2MOM of the same owner, level and cycle.
        return self._commit(caller, doc, lifecycle.ARCHIVE, changes, stamp, request.reason, unset=("slot",))

    def withdraw(self, caller: Caller, request: goals_pb2.WithdrawSubmissionRequest) -> goals_pb2.V2MOM:
        validation.require_id("id", request.id)
        validation.require_reason("reason", request.reason, required=False)
        doc = self._load_for(lifecycle.WITHDRAW, caller, request.id, request.expected_revision)
        stamp = utc_now()
        # The event still names the approver (built from the document before the unset): notify stops
        # reminding them. The stored one goes, as nobody is asked any more.
        return self._commit(caller, doc, lifecycle.WITHDRAW, {"updated_at": stamp}, stamp, request.reason,
                            unset=("approver_id",))

    def _load_for(self, action: lifecycle.Action, caller: Caller, v2mom_id: str, expected_revision: int) -> dict:
        """The V2MOM, if the caller may take ``action`` on it, at the expected revision, in a state it may leave."""
        doc = self.access.require_actor(action.taken_by, caller, self.repository.get(v2mom_id), v2mom_id)
        lifecycle.require_expected_revision(doc, expected_revision)
        lifecycle.require_allowed(action, doc["_id"], doc["state"])
        return doc

    def _commit(self, caller, doc, action, changes, stamp, reason="", unset=()) -> goals_pb2.V2MOM:
        saved = commits.commit(self.repository, caller, doc, action, changes, stamp, reason, unset=unset)
        return render(saved, show_published=False)
