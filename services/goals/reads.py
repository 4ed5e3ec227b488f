"""Use cases reading V2MOMs: GetV2MOM, ListV2MOMs, ListPendingApprovals, GetAlignmentTree, ListRevisions.

Each caller sees what access.py lets them: the working copy, the published
version only (views.py), or nothing at all.
"""

from services.platform.api.auth import Caller
from services.platform.core import paging
from services.platform.core.errors import NotFound, PermissionDenied, Violations
from services.platform.core.validation import check_enum, check_id

from . import alignment, cascade, convert, validation
from .access import Access
from .repository import V2MOMRepository
from .views import parent_shown, render, render_for
from v2mom.v1 import goals_pb2

LIST_FILTERS = ("owner_id", "org_unit_id", "cycle_id")


class Reads:
    def __init__(self, repository: V2MOMRepository, access: Access):
        self.repository = repository
        self.access = access

    def get(self, caller: Caller, request: goals_pb2.GetV2MOMRequest) -> goals_pb2.V2MOM:
        validation.require_id("id", request.id)
        violations = Violations()
        check_enum(violations, "view", goals_pb2.V2MOMView, request.view)
        violations.raise_if_any()
        doc = self.access.require_visible(caller, self.repository.get(request.id), request.id)
        sees_working = self.access.sees_working_copy(caller, doc)
        if request.view == goals_pb2.V2MOM_VIEW_PUBLISHED:
            if not doc.get("published"):
                raise NotFound(f"v2mom {request.id!r} has no published version")
            return render(doc, show_published=True)
        if request.view == goals_pb2.V2MOM_VIEW_WORKING and not sees_working:
            raise PermissionDenied("only the owner, their managers and admins see the working copy")
        return render(doc, show_published=not sees_working)

    def list_v2moms(self, caller: Caller, request: goals_pb2.ListV2MOMsRequest) -> goals_pb2.ListV2MOMsResponse:
        violations = Violations()
        for field in LIST_FILTERS:
            check_id(violations, field, getattr(request, field), required=False)
        check_enum(violations, "state", goals_pb2.V2MOMState, request.state)
        limit = paging.page_size(violations, request.page_size)
        violations.raise_if_any()
        filters = {field: getattr(request, field) for field in LIST_FILTERS}
        state = goals_pb2.V2MOMState.Name(request.state) if request.state else None
        # The flag joins the token's filters only when set, so tokens issued before it existed still work.
        token_filters = {**filters, "state": state, **({"parent_changed": True} if request.parent_changed else {})}
        after = paging.decode_token(request.page_token, "ListV2MOMs", token_filters, str)
        if request.parent_changed:
            filters["parent_changed_at"] = {"$exists": True}  # by_parent_changed
        # Admins see every working copy: no list of owners to restrict to.
        working_owners = None if caller.is_admin else self.access.visible_owner_ids(caller)
        docs = self.repository.list_page(filters, state, working_owners, after, limit + 1)
        return goals_pb2.ListV2MOMsResponse(
            v2moms=[render_for(self.access, caller, d) for d in docs[:limit]],
            next_page_token=paging.next_token("ListV2MOMs", token_filters, docs, limit, _id),
        )

    def pending_approvals(
        self, caller: Caller, request: goals_pb2.ListPendingApprovalsRequest
    ) -> goals_pb2.ListV2MOMsResponse:
        violations = Violations()
        limit = paging.page_size(violations, request.page_size)
        violations.raise_if_any()
        after = paging.decode_token(request.page_token, "ListPendingApprovals", {}, str)
        # "" is the approver of company V2MOMs and of people without a manager: any admin.
        approvers = [caller.person_id, ""] if caller.is_admin else [caller.person_id]
        docs = self.repository.pending_approval_page(approvers, caller.person_id, after, limit + 1)
        return goals_pb2.ListV2MOMsResponse(
            v2moms=[render(d, show_published=False) for d in docs[:limit]],
            next_page_token=paging.next_token("ListPendingApprovals", {}, docs, limit, _id),
        )

    def alignment_tree(self, caller: Caller, request: goals_pb2.GetAlignmentTreeRequest) -> goals_pb2.AlignmentNode:
        validation.require_id("id", request.id)
        depth = alignment.tree_depth(request.max_depth)
        root = self.access.require_visible(caller, self.repository.get(request.id), request.id)
        children = alignment.visible_children(
            root["_id"], depth, self.repository.children_of, lambda doc: self.access.may_see(caller, doc),
            lambda doc: parent_shown(self.access, caller, doc),
        )
        return self._subtree(caller, root, children, levels_below=depth)

    def _subtree(self, caller: Caller, doc: dict, children: dict[str, list[dict]],
                 levels_below: int) -> goals_pb2.AlignmentNode:
        # Bottom-up: appending a message to a repeated field copies it, so a child must be
        # complete before it goes in (growing it afterwards lost every grandchild).
        shown = render_for(self.access, caller, doc)
        node = goals_pb2.AlignmentNode(
            id=doc["_id"],
            title=shown.content.title,
            owner_id=doc["owner_id"],
            org_unit_id=doc["org_unit_id"],
            level=shown.level,
            state=shown.state,
        )
        below = children.get(doc["_id"], [])
        node.children.extend(self._subtree(caller, child, children, levels_below - 1) for child in below)
        # Individuals have nobody beneath by design: their methods are never "unsupported".
        judged = levels_below > 0 and doc["level"] != "ORG_LEVEL_INDIVIDUAL"
        self._add_cascade(caller, node, self._shown_content(caller, doc), below, complete=judged)
        return node

    def _add_cascade(self, caller: Caller, node: goals_pb2.AlignmentNode, content: dict, below: list[dict],
                     complete: bool) -> None:
        """Each method with the shown children's methods that support it (cascade.py); the unsupported ones
        only where judged (``complete``): the children were read (the last level's were not), and a company,
        department or team V2MOM, which has levels beneath it."""
        found = cascade.supporters([(c["_id"], c["owner_id"], self._shown_content(caller, c)) for c in below])
        for method in content.get("methods") or []:
            node.methods.add(method_id=method.get("id", ""), title=method.get("title", ""),
                             supported_by=[goals_pb2.SupportingMethod(**s) for s in found.get(method.get("id"), [])])
        if complete:
            node.unsupported_method_ids.extend(cascade.unsupported(content, found))

    def _shown_content(self, caller: Caller, doc: dict) -> dict:
        if self.access.sees_working_copy(caller, doc) or not doc.get("published"):
            return doc["content"]
        return doc["published"]["content"]

    def revisions(self, caller: Caller, request: goals_pb2.ListRevisionsRequest) -> goals_pb2.ListRevisionsResponse:
        validation.require_id("v2mom_id", request.v2mom_id)
        violations = Violations()
        limit = paging.page_size(violations, request.page_size)
        violations.raise_if_any()
        self.access.require_working_copy(caller, self.repository.get(request.v2mom_id), request.v2mom_id)
        filters = {"v2mom_id": request.v2mom_id}
        after = paging.decode_token(request.page_token, "ListRevisions", filters, int) or 0
        history = self.repository.history(request.v2mom_id, after, limit + 1)
        return goals_pb2.ListRevisionsResponse(
            revisions=[convert.revision_to_proto(h) for h in history[:limit]],
            next_page_token=paging.next_token("ListRevisions", filters, history, limit, lambda h: h["revision"]),
        )


def _id(doc: dict) -> str:
    return doc["_id"]
