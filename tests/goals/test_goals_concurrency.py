"""Optimistic concurrency: a stale revision is ABORTED, and no update is ever lost."""

import threading

import grpc
import pytest

from services.goals.repository import V2MOMRepository
from tests.support.goals import ADMIN, INDIVIDUAL, MANAGER, mask, OWNER, valid_content
from tests.support.grpc_errors import expect
from v2mom.v1 import goals_pb2

Code = grpc.StatusCode
WRITERS = 8


def title_update(v2mom_id: str, title: str, expected: int) -> goals_pb2.UpdateV2MOMRequest:
    return goals_pb2.UpdateV2MOMRequest(
        v2mom=goals_pb2.V2MOM(id=v2mom_id, content=goals_pb2.V2MOMContent(title=title)),
        update_mask=mask("content.title"), expected_revision=expected,
    )


def history_of(goals, v2mom_id: str) -> list[dict]:
    """Every stored history entry, oldest first (the revisions collection and the V2MOM's newest)."""
    return V2MOMRepository(goals.db).history(v2mom_id, 0, 1000)


def run_together(calls) -> list:
    """Starts every call at once (a barrier), returns each one's response or grpc status code."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(i, call):
        barrier.wait()
        try:
            results[i] = call()
        except grpc.RpcError as error:
            results[i] = error.code()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_stale_expected_revision_is_aborted(goals, cycle):
    v2mom = goals.create(cycle_id=cycle)
    owner = goals.client(OWNER)
    owner.UpdateV2MOM(title_update(v2mom.id, "First edit", expected=1))
    before = goals.raw(v2mom.id)
    error = expect(owner.UpdateV2MOM, title_update(v2mom.id, "Edit from a stale read", expected=1), Code.ABORTED)
    assert "revision 2" in error.details()
    assert goals.raw(v2mom.id) == before
    # Every revision-checked transition behaves the same.
    expect(owner.SubmitV2MOM, goals_pb2.SubmitV2MOMRequest(id=v2mom.id, expected_revision=1), Code.ABORTED)
    goals.client(OWNER).SubmitV2MOM(goals_pb2.SubmitV2MOMRequest(id=v2mom.id, expected_revision=2))
    manager = goals.client(MANAGER)
    expect(manager.ApproveV2MOM, goals_pb2.ApproveV2MOMRequest(id=v2mom.id, expected_revision=2), Code.ABORTED)
    expect(manager.RequestChanges, goals_pb2.RequestChangesRequest(id=v2mom.id, expected_revision=2, reason="x"), Code.ABORTED)
    expect(owner.ArchiveV2MOM, goals_pb2.ArchiveV2MOMRequest(id=v2mom.id, expected_revision=1), Code.ABORTED)
    assert manager.ApproveV2MOM(goals_pb2.ApproveV2MOMRequest(id=v2mom.id, expected_revision=3)).state == (
        goals_pb2.V2MOM_STATE_PUBLISHED)


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_updates_from_one_read_exactly_one_wins(goals, cycle, round_):
    v2mom = goals.create(cycle_id=cycle)
    owner = goals.client(OWNER)
    titles = [f"Writer {i} title" for i in range(WRITERS)]
    results = run_together([lambda t=t: owner.UpdateV2MOM(title_update(v2mom.id, t, expected=1)) for t in titles])

    wins = [r for r in results if isinstance(r, goals_pb2.V2MOM)]
    assert len(wins) == 1, results
    assert [r for r in results if not isinstance(r, goals_pb2.V2MOM)] == [Code.ABORTED] * (WRITERS - 1)
    stored = goals.client(OWNER).GetV2MOM(goals_pb2.GetV2MOMRequest(id=v2mom.id))
    assert stored.revision == 2 and stored.content.title == wins[0].content.title
    raw = goals.raw(v2mom.id)
    history = history_of(goals, v2mom.id)
    assert [h["revision"] for h in history] == [1, 2] and history[1]["content"]["title"] == wins[0].content.title
    assert [e["type"] for e in raw["outbox"]] == ["v2mom_created", "v2mom_updated"]
    goals.edit(v2mom, title="After the race")  # copies revision 2 out of the V2MOM: the winner's, not a loser's
    assert [h["content"]["title"] for h in history_of(goals, v2mom.id)[1:]] == [wins[0].content.title, "After the race"]


def test_concurrent_writers_that_retry_lose_nothing(goals, cycle):
    """Each writer adds its own milestone; on ABORTED it re-reads and retries. Every one must survive."""
    v2mom = goals.create(cycle_id=cycle)
    owner = goals.client(OWNER)
    attempts = {"aborted": 0}
    lock = threading.Lock()

    def add_milestone(writer: int):
        while True:
            current = owner.GetV2MOM(goals_pb2.GetV2MOMRequest(id=v2mom.id))
            methods = list(current.content.methods)
            methods[0].milestones.add(id=f"mil-w{writer}", title=f"Writer {writer} milestone")
            request = goals_pb2.UpdateV2MOMRequest(
                v2mom=goals_pb2.V2MOM(id=v2mom.id, content=goals_pb2.V2MOMContent(methods=methods)),
                update_mask=mask("content.methods"), expected_revision=current.revision,
            )
            try:
                return owner.UpdateV2MOM(request)
            except grpc.RpcError as error:
                assert error.code() == Code.ABORTED, error.details()
                with lock:
                    attempts["aborted"] += 1

    results = run_together([lambda w=w: add_milestone(w) for w in range(WRITERS)])
    assert all(isinstance(r, goals_pb2.V2MOM) for r in results), results
    final = owner.GetV2MOM(goals_pb2.GetV2MOMRequest(id=v2mom.id))
    milestones = {m.id for m in final.content.methods[0].milestones}
    assert {f"mil-w{w}" for w in range(WRITERS)} <= milestones  # no lost update
    assert final.revision == 1 + WRITERS  # one revision per success, none for the refused tries
    history = goals.client(OWNER).ListRevisions(goals_pb2.ListRevisionsRequest(v2mom_id=v2mom.id)).revisions
    assert [r.revision for r in history] == list(range(1, WRITERS + 2))
    assert {r.revision for r in results} == set(range(2, WRITERS + 2))  # every success is in history


def test_concurrent_transitions_only_one_applies(goals, cycle):
    """Submit and archive race from the same revision: one wins, the other is ABORTED or refused by state."""
    v2mom = goals.create(cycle_id=cycle)
    owner = goals.client(OWNER)
    results = run_together([
        lambda: owner.SubmitV2MOM(goals_pb2.SubmitV2MOMRequest(id=v2mom.id, expected_revision=1)),
        lambda: owner.ArchiveV2MOM(goals_pb2.ArchiveV2MOMRequest(id=v2mom.id, expected_revision=1)),
        lambda: owner.UpdateV2MOM(title_update(v2mom.id, "Racing edit", expected=1)),
    ])
    assert sum(isinstance(r, goals_pb2.V2MOM) for r in results) == 1, results
    assert all(r == Code.ABORTED for r in results if not isinstance(r, goals_pb2.V2MOM))
    assert goals.raw(v2mom.id)["revision"] == 2


def test_concurrent_approvals_publish_once(goals, cycle):
    v2mom = goals.submitted(cycle_id=cycle)
    manager, admin = goals.client(MANAGER), goals.client(ADMIN)
    results = run_together([
        lambda: manager.ApproveV2MOM(goals_pb2.ApproveV2MOMRequest(id=v2mom.id)),
        lambda: admin.ApproveV2MOM(goals_pb2.ApproveV2MOMRequest(id=v2mom.id)),
        lambda: manager.RequestChanges(goals_pb2.RequestChangesRequest(id=v2mom.id, reason="wait")),
    ])
    assert sum(isinstance(r, goals_pb2.V2MOM) for r in results) == 1, results
    # Without expected_revision a loser either read the old state (ABORTED) or the new one (wrong state).
    assert all(r in (Code.ABORTED, Code.FAILED_PRECONDITION) for r in results if not isinstance(r, goals_pb2.V2MOM))
    raw = goals.raw(v2mom.id)
    assert raw["revision"] == 3 and len(history_of(goals, v2mom.id)) == 3 and len(raw["outbox"]) == 3


def test_concurrent_creates_for_one_slot_make_one_v2mom(goals, cycle):
    owner = goals.client(OWNER)
    request = goals_pb2.CreateV2MOMRequest(level=INDIVIDUAL, cycle_id=cycle, content=valid_content())
    results = run_together([lambda: owner.CreateV2MOM(request) for _ in range(WRITERS)])
    assert sum(isinstance(r, goals_pb2.V2MOM) for r in results) == 1, results
    assert [r for r in results if not isinstance(r, goals_pb2.V2MOM)] == [Code.ALREADY_EXISTS] * (WRITERS - 1)
    assert goals.v2mom_count(cycle_id=cycle) == 1
