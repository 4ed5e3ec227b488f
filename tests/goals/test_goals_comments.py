"""Discussion over real gRPC: comments on a V2MOM or an item, threads, @mentions, who sees which version's
comments, edits and deletes kept in history, comment_added in the same write, replays and bad requests."""

import grpc

from services.goals import mentions
from services.platform.bus.events import to_wire
from tests.support.goals import ADMIN, CEO, MANAGER, OWNER, PEER, SKIP, TEAMMATE
from tests.support.grpc_errors import expect
from v2mom.v1 import goals_pb2

Code = grpc.StatusCode
WORKING, PUBLISHED = goals_pb2.V2MOM_VIEW_WORKING, goals_pb2.V2MOM_VIEW_PUBLISHED


def add(goals, person, v2mom_id, text, **fields):
    return goals.client(person).AddComment(goals_pb2.AddCommentRequest(v2mom_id=v2mom_id, text=text, **fields))


def listed(goals, person, v2mom_id, **fields) -> list[goals_pb2.Comment]:
    comments, token = [], ""
    while True:
        page = goals.client(person).ListComments(goals_pb2.ListCommentsRequest(
            v2mom_id=v2mom_id, page_token=token, **fields))
        comments += page.comments
        if not (token := page.next_page_token):
            return comments


def test_a_thread_on_an_item_with_mentions_and_its_event(goals, cycle):
    published = goals.published(cycle_id=cycle)
    first = add(goals, PEER, published.id, "Can @olive share the data plan? cc @nobody and @lee.", item_id="obs-1")
    assert (first.on_published, first.item_id, list(first.mention_ids)) == (True, "obs-1", [OWNER, MANAGER])
    reply = add(goals, OWNER, published.id, "Yes, by Friday @pete", reply_to=first.id)
    assert (reply.reply_to, reply.item_id, reply.on_published, list(reply.mention_ids)) == (
        first.id, "obs-1", True, [PEER])
    assert [c.id for c in listed(goals, CEO, published.id, item_id="obs-1", page_size=1)] == [first.id, reply.id]
    assert listed(goals, CEO, published.id, item_id="mth-0") == []
    stored = goals.db.comments.find_one({"_id": first.id})
    event = to_wire(stored["outbox"][0])
    assert event["type"] == "comment_added" and stored["outbox_pending"] is True
    assert (event["data"]["comment"]["mentionIds"], event["data"]["ownerId"], event["data"]["title"]) == (
        [OWNER, MANAGER], OWNER, published.content.title)


def test_a_drafts_comments_are_seen_only_by_those_who_see_the_draft(goals, cycle):
    published = goals.published(cycle_id=cycle)
    goals.edit(published, reason="Sharper vision", vision="Cut invoice errors from 4% to 0.5% by December 2026")
    on_draft = add(goals, MANAGER, published.id, "The new vision is better")
    on_published = add(goals, MANAGER, published.id, "For everyone", view=PUBLISHED)
    assert (on_draft.on_published, on_published.on_published) == (False, True)
    for person in (OWNER, SKIP, ADMIN):
        assert {c.id for c in listed(goals, person, published.id)} == {on_draft.id, on_published.id}
    assert [c.id for c in listed(goals, PEER, published.id)] == [on_published.id]
    expect(goals.client(PEER).AddComment, goals_pb2.AddCommentRequest(
        v2mom_id=published.id, text="hi", view=WORKING), Code.PERMISSION_DENIED)
    expect(goals.client(PEER).AddComment, goals_pb2.AddCommentRequest(
        v2mom_id=published.id, text="hi", reply_to=on_draft.id), Code.NOT_FOUND)
    error = expect(goals.client(MANAGER).AddComment, goals_pb2.AddCommentRequest(
        v2mom_id=published.id, text="look", mention_ids=[PEER]), Code.INVALID_ARGUMENT, "mention_ids[0]")
    assert "cannot see" in error.details()
    hidden_mention = add(goals, MANAGER, published.id, "@pete will not hear of this draft")
    assert list(hidden_mention.mention_ids) == []
    draft_version = goals.client(OWNER).GetV2MOM(goals_pb2.GetV2MOMRequest(id=published.id))
    goals.approve(goals.submit(draft_version), MANAGER)  # the draft is everyone's now; what was said on it is not
    assert [c.id for c in listed(goals, PEER, published.id)] == [on_published.id]
    assert {c.id for c in listed(goals, OWNER, published.id)} == {on_draft.id, on_published.id, hidden_mention.id}
    draft = goals.create(cycle_id=goals.new_cycle())
    expect(goals.client(PEER).ListComments, goals_pb2.ListCommentsRequest(v2mom_id=draft.id), Code.NOT_FOUND)


def test_the_author_edits_and_deletes_and_history_is_kept(goals, cycle):
    published = goals.published(cycle_id=cycle)
    comment = add(goals, TEAMMATE, published.id, "First tought")
    edited = goals.client(TEAMMATE).EditComment(goals_pb2.EditCommentRequest(
        id=comment.id, text="First thought", expected_revision=comment.revision))
    assert (edited.text, edited.revision, [e.text for e in edited.edits]) == ("First thought", 2, ["First tought"])
    expect(goals.client(OWNER).EditComment, goals_pb2.EditCommentRequest(id=comment.id, text="mine now"),
           Code.PERMISSION_DENIED)
    expect(goals.client(OWNER).DeleteComment, goals_pb2.DeleteCommentRequest(id=comment.id), Code.PERMISSION_DENIED)
    expect(goals.client(TEAMMATE).EditComment, goals_pb2.EditCommentRequest(
        id=comment.id, text="again", expected_revision=1), Code.ABORTED)
    tombstone = goals.client(TEAMMATE).DeleteComment(goals_pb2.DeleteCommentRequest(id=comment.id))
    assert (tombstone.deleted, tombstone.text, list(tombstone.edits)) == (True, "", [])
    assert goals.client(TEAMMATE).DeleteComment(goals_pb2.DeleteCommentRequest(id=comment.id)).revision == 3
    stored = goals.db.comments.find_one({"_id": comment.id})
    assert [e["text"] for e in stored["edits"]] == ["First tought", "First thought"]
    expect(goals.client(TEAMMATE).EditComment, goals_pb2.EditCommentRequest(id=comment.id, text="back"),
           Code.FAILED_PRECONDITION)
    assert listed(goals, PEER, published.id)[0].deleted  # the thread keeps its shape


def test_bad_requests_and_replays(goals, cycle):
    published = goals.published(cycle_id=cycle)
    call = goals.client(OWNER).AddComment

    def request(**fields):
        return goals_pb2.AddCommentRequest(**{"v2mom_id": published.id, "text": "ok", **fields})

    expect(call, request(v2mom_id="bad id!"), Code.INVALID_ARGUMENT, "v2mom_id")
    expect(call, request(text=" "), Code.INVALID_ARGUMENT, "text")
    expect(call, request(text="x" * 4001), Code.INVALID_ARGUMENT, "text")
    expect(call, request(item_id="mth-99"), Code.INVALID_ARGUMENT, "item_id")
    expect(call, request(mention_ids=["ghost"]), Code.INVALID_ARGUMENT, "mention_ids[0]")
    expect(call, request(mention_ids=[f"p{i}" for i in range(21)]), Code.INVALID_ARGUMENT, "mention_ids")
    expect(call, request(view=7), Code.INVALID_ARGUMENT, "view")
    expect(call, request(reply_to="cmt_missing"), Code.NOT_FOUND)
    expect(call, request(v2mom_id="v2m_missing"), Code.NOT_FOUND)
    expect(goals.client(OWNER).ListComments, goals_pb2.ListCommentsRequest(v2mom_id=published.id, page_token="junk"),
           Code.INVALID_ARGUMENT)
    expect(goals.client(OWNER).EditComment, goals_pb2.EditCommentRequest(id="cmt_missing", text="x"), Code.NOT_FOUND)
    first = call(request(request_id="once"))
    assert call(request(request_id="once")).id == first.id
    assert goals.db.comments.count_documents({"v2mom_id": published.id}) == 1


def test_mentions_in_the_text_are_ids_once_each_and_at_most_twenty():
    assert mentions.mentioned_in("cc @lee, @olive. and @lee again; mail@example.com is no one") == ["lee", "olive"]
    assert len(mentions.mentioned_in(" ".join(f"@p{i}" for i in range(500)))) == mentions.MAX_MENTIONS
