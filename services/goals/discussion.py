"""Use cases of the discussion on V2MOMs: AddComment, ListComments, EditComment, DeleteComment.

A comment belongs to one version of a V2MOM: the working copy (seen by the
owner, their manager chain and admins) or the published version (seen by
everyone). It keeps that audience for good, even once a draft it was written
on is approved: a remark on a draft is never shown to people who could not
see the draft (access.py decides, as for the reads). Mentions are the @ids in
the text that are people who see the version (others are ignored, "@home" is
no one) plus the ids named in ``mention_ids``, which must be such people.
"""

from services.platform.api.auth import Caller
from services.platform.core import paging
from services.platform.core.clock import utc_now
from services.platform.core.errors import (Aborted, FailedPrecondition, FieldViolation, InvalidArgument, NotFound,
                                           PermissionDenied, PreconditionViolation, Violations)
from services.platform.core.ids import new_id
from services.platform.core.validation import check_enum, check_id, check_text

from . import convert, events, mentions, validation
from .access import Access
from .authoring import request_key
from .comments import CommentStore
from .directory import Directory
from .lifecycle import ARCHIVED
from .repository import V2MOMRepository
from v2mom.v1 import events_pb2, goals_pb2


class Discussion:
    def __init__(self, comments: CommentStore, repository: V2MOMRepository, directory: Directory, access: Access):
        self.comments = comments
        self.repository = repository
        self.directory = directory
        self.access = access

    # --- AddComment ----------------------------------------------------------------

    def add(self, caller: Caller, request: goals_pb2.AddCommentRequest) -> goals_pb2.Comment:
        _check_add(request)
        create_key = request_key(caller, request.request_id)
        if create_key and (existing := self.comments.find_by_create_key(create_key)):
            return comment_to_proto(existing)
        doc = self.access.require_visible(caller, self.repository.get(request.v2mom_id), request.v2mom_id)
        if doc["state"] == ARCHIVED:
            raise FailedPrecondition(f"v2mom {doc['_id']!r} is archived",
                                     [PreconditionViolation("STATE", doc["_id"], "archived V2MOMs take no comments")])
        item_id, on_published = self._placement(caller, doc, request)
        mention_ids = self._mentions(caller, doc, on_published, request)
        stamp = utc_now()
        comment = {
            "_id": new_id("cmt"), "v2mom_id": doc["_id"], "item_id": item_id, "reply_to": request.reply_to,
            "author_id": caller.person_id, "text": request.text, "mention_ids": mention_ids,
            "on_published": on_published, "v2mom_revision": _version(doc, on_published)["revision"],
            "created_at": stamp, "updated_at": stamp, "deleted": False, "edits": [], "revision": 1,
            **({"create_key": create_key} if create_key else {}),
        }
        return comment_to_proto(self.comments.insert(comment, [_event(comment, doc)]))

    def _placement(self, caller: Caller, doc: dict, request: goals_pb2.AddCommentRequest) -> tuple[str, bool]:
        """(item id, on the published version?): a reply's are its parent's, else the requested view's."""
        if request.reply_to:
            parent = self._visible_comment(caller, doc, request.reply_to, "reply_to")
            if request.item_id and request.item_id != parent["item_id"]:
                raise InvalidArgument([FieldViolation("item_id", "a reply is about its parent's item; leave it empty")])
            return parent["item_id"], parent["on_published"]
        on_published = self._version_for(caller, doc, request.view)
        if request.item_id and request.item_id not in mentions.item_ids(_version(doc, on_published)["content"]):
            raise InvalidArgument([FieldViolation("item_id", f"no item {request.item_id!r} in the version commented on")])
        return request.item_id, on_published

    def _version_for(self, caller: Caller, doc: dict, view: int) -> bool:
        sees_working = self.access.sees_working_copy(caller, doc)
        if view == goals_pb2.V2MOM_VIEW_WORKING and not sees_working:
            raise PermissionDenied("only the owner, their managers and admins see the working copy")
        if view == goals_pb2.V2MOM_VIEW_PUBLISHED and not doc.get("published"):
            raise NotFound(f"v2mom {doc['_id']!r} has no published version")
        if view == goals_pb2.V2MOM_VIEW_UNSPECIFIED:
            return not sees_working
        return view == goals_pb2.V2MOM_VIEW_PUBLISHED

    def _mentions(self, caller: Caller, doc: dict, on_published: bool, request: goals_pb2.AddCommentRequest) -> list[str]:
        violations = Violations()
        named = list(dict.fromkeys(request.mention_ids))
        for i, person_id in enumerate(named):
            person = self.directory.person(person_id)
            if person is None:
                violations.add(f"mention_ids[{i}]", f"unknown person {person_id!r}")
            elif not self.access.person_sees_version(person, doc, on_published):
                violations.add(f"mention_ids[{i}]", f"{person_id!r} cannot see the version commented on")
        violations.raise_if_any()
        written = [p for p in mentions.mentioned_in(request.text) if self._sees(p, doc, on_published)]
        return [p for p in dict.fromkeys(named + written) if p != caller.person_id][:mentions.MAX_MENTIONS]

    def _sees(self, person_id: str, doc: dict, on_published: bool) -> bool:
        person = self.directory.person(person_id)
        return person is not None and self.access.person_sees_version(person, doc, on_published)

    # --- ListComments --------------------------------------------------------------

    def list(self, caller: Caller, request: goals_pb2.ListCommentsRequest) -> goals_pb2.ListCommentsResponse:
        violations = Violations()
        check_id(violations, "v2mom_id", request.v2mom_id)
        check_id(violations, "item_id", request.item_id, required=False)
        limit = paging.page_size(violations, request.page_size)
        violations.raise_if_any()
        filters = {"v2mom_id": request.v2mom_id, "item_id": request.item_id}
        after = paging.decode_token(request.page_token, "ListComments", filters, str)
        doc = self.access.require_visible(caller, self.repository.get(request.v2mom_id), request.v2mom_id)
        published_only = not self.access.sees_working_copy(caller, doc)
        rows = self.comments.page(doc["_id"], request.item_id, published_only, after, limit + 1)
        return goals_pb2.ListCommentsResponse(
            comments=[comment_to_proto(row) for row in rows[:limit]],
            next_page_token=paging.next_token("ListComments", filters, rows, limit, lambda row: row["_id"]),
        )

    # --- EditComment, DeleteComment ------------------------------------------------

    def edit(self, caller: Caller, request: goals_pb2.EditCommentRequest) -> goals_pb2.Comment:
        violations = Violations()
        check_id(violations, "id", request.id)
        check_text(violations, "text", request.text, mentions.MAX_TEXT, required=True)
        if request.expected_revision < 0:
            violations.add("expected_revision", "must not be negative")
        violations.raise_if_any()
        comment = self._own_comment(caller, request.id)
        if comment["deleted"]:
            raise FailedPrecondition(f"comment {request.id!r} was deleted",
                                     [PreconditionViolation("DELETED", request.id, "a deleted comment stays deleted")])
        if request.expected_revision and request.expected_revision != comment["revision"]:
            raise Aborted(f"comment {request.id!r} is at revision {comment['revision']}, not {request.expected_revision}")
        if request.text == comment["text"]:
            return comment_to_proto(comment)  # a replayed edit changes nothing
        return comment_to_proto(self._change(comment, {"text": request.text}))

    def delete(self, caller: Caller, request: goals_pb2.DeleteCommentRequest) -> goals_pb2.Comment:
        validation.require_id("id", request.id)
        comment = self._own_comment(caller, request.id)
        if comment["deleted"]:
            return comment_to_proto(comment)  # deleting again changes nothing
        return comment_to_proto(self._change(comment, {"text": "", "deleted": True, "deleted_at": utc_now()}))

    def _change(self, comment: dict, fields: dict) -> dict:
        if len(comment["edits"]) >= mentions.MAX_EDITS:
            raise FailedPrecondition(f"comment {comment['_id']!r} was edited {mentions.MAX_EDITS} times",
                                     [PreconditionViolation("EDITS", comment["_id"], "write a new comment instead")])
        stamp = utc_now()
        prior = {"text": comment["text"], "at": comment["updated_at"]}
        saved = self.comments.change(comment["_id"], comment["revision"], {**fields, "updated_at": stamp}, prior)
        if saved is None:
            raise Aborted(f"comment {comment['_id']!r} changed while you were working on it; read it again and retry")
        return saved

    def _own_comment(self, caller: Caller, comment_id: str) -> dict:
        comment = self.comments.get(comment_id)
        doc = self.repository.get(comment["v2mom_id"]) if comment else None
        if comment is None or doc is None or not self._may_see(caller, doc, comment):
            raise NotFound(f"comment {comment_id!r} not found")
        if comment["author_id"] != caller.person_id:
            raise PermissionDenied("only its author may edit or delete a comment")
        return comment

    def _visible_comment(self, caller: Caller, doc: dict, comment_id: str, field: str) -> dict:
        comment = self.comments.get(comment_id)
        if comment is None or comment["v2mom_id"] != doc["_id"] or not self._may_see(caller, doc, comment):
            raise NotFound(f"{field}: comment {comment_id!r} not found on v2mom {doc['_id']!r}")
        return comment

    def _may_see(self, caller: Caller, doc: dict, comment: dict) -> bool:
        if comment["on_published"]:
            return self.access.may_see(caller, doc)
        return self.access.sees_working_copy(caller, doc)


def _check_add(request: goals_pb2.AddCommentRequest) -> None:
    violations = Violations()
    check_id(violations, "v2mom_id", request.v2mom_id)
    for field in ("item_id", "reply_to", "request_id"):
        check_id(violations, field, getattr(request, field), required=False)
    check_text(violations, "text", request.text, mentions.MAX_TEXT, required=True)
    check_enum(violations, "view", goals_pb2.V2MOMView, request.view)
    violations.max_items("mention_ids", request.mention_ids, mentions.MAX_MENTIONS)
    for i, person_id in enumerate(request.mention_ids[:mentions.MAX_MENTIONS]):
        check_id(violations, f"mention_ids[{i}]", person_id)
    violations.raise_if_any()


def _version(doc: dict, on_published: bool) -> dict:
    """The version commented on: its revision and content."""
    if on_published:
        return {"revision": doc["published"]["revision"], "content": doc["published"]["content"]}
    return {"revision": doc["revision"], "content": doc["content"]}


def comment_to_proto(comment: dict) -> goals_pb2.Comment:
    deleted = bool(comment.get("deleted"))
    message = goals_pb2.Comment(
        id=comment["_id"], v2mom_id=comment["v2mom_id"], item_id=comment["item_id"], reply_to=comment["reply_to"],
        author_id=comment["author_id"], text=comment["text"], mention_ids=comment["mention_ids"],
        on_published=comment["on_published"], v2mom_revision=comment["v2mom_revision"], deleted=deleted,
        revision=comment["revision"],
    )
    convert.set_time(message, "create_time", comment["created_at"])
    convert.set_time(message, "update_time", comment["updated_at"])
    convert.set_time(message, "delete_time", comment.get("deleted_at"))
    if not deleted:  # a tombstone shows none of what was said; the store keeps it
        for edit in comment["edits"]:
            convert.set_time(message.edits.add(text=edit["text"]), "time", edit["at"])
    return message


def _event(comment: dict, doc: dict) -> dict:
    version = _version(doc, comment["on_published"])
    data = events_pb2.CommentEventData(
        comment=comment_to_proto(comment), owner_id=doc["owner_id"], org_unit_id=doc["org_unit_id"],
        cycle_id=doc["cycle_id"], title=version["content"].get("title", ""),
    )
    return events.comment_event(data)
