"""Revision history in its own collection: a V2MOM's document stays the same size however often it is edited,
ListRevisions pages through every revision, and documents stored with the old `history` array move on start."""

import bson

from services.goals import api as goals_api_module
from services.goals.repository import MIGRATIONS, REVISIONS, REVISIONS_MOVED, migrate
from tests.support.goals import OWNER, PEER
from tests.support.services import served_in_process
from v2mom.v1 import goals_pb2, goals_pb2_grpc

LONG_VISION = "Cut invoice errors from 4% to 2% by June 2026. " * 40


def every_revision(client, v2mom_id: str, page_size: int) -> list[goals_pb2.Revision]:
    found, token = [], ""
    while True:
        page = client.ListRevisions(goals_pb2.ListRevisionsRequest(v2mom_id=v2mom_id, page_size=page_size, page_token=token))
        found.extend(page.revisions)
        if not page.next_page_token:
            return found
        token = page.next_page_token


def stored_size(doc: dict) -> int:
    """The document's size without its outbox, which grows until a relay empties it (none runs here)."""
    return len(bson.encode({k: v for k, v in doc.items() if k != "outbox"}))


def test_a_much_edited_v2mom_keeps_its_size_and_every_revision(goals, cycle):
    """Issue 12, finding 6: every revision's content was pushed into the V2MOM's document, towards 16 MB."""
    v2mom = goals.create(cycle_id=cycle)
    sizes = []
    for i in range(24):
        goals.edit(v2mom, title=f"Title {i}", vision=f"{LONG_VISION} ({i})")
        sizes.append(stored_size(goals.raw(v2mom.id)))
    assert max(sizes[1:]) - min(sizes[1:]) < 100  # one more digit in the title, nothing per revision

    revisions = every_revision(goals.client(OWNER), v2mom.id, page_size=5)
    assert [r.revision for r in revisions] == list(range(1, 26))
    assert [r.content.title for r in revisions[1:]] == [f"Title {i}" for i in range(24)]
    assert goals.db[REVISIONS].count_documents({"v2mom_id": v2mom.id}) == 24  # the newest lives in the V2MOM
    assert "revisions_by_v2mom" in {index["name"] for index in goals.db[REVISIONS].list_indexes()}


def to_old_shape(db, v2mom_id: str) -> None:
    """The document as versions before the revisions collection stored it: the whole history inside."""
    history = [{k: v for k, v in entry.items() if k not in ("_id", "v2mom_id")}
               for entry in db[REVISIONS].find({"v2mom_id": v2mom_id}).sort("revision", 1)]
    latest = db.v2moms.find_one({"_id": v2mom_id})["latest_revision"]
    db[REVISIONS].delete_many({"v2mom_id": v2mom_id})
    db.v2moms.update_one({"_id": v2mom_id}, {"$set": {"history": [*history, latest]},
                                             "$unset": {"latest_revision": "", "published.parent_id": "",
                                                        "published_parent_id": ""}})
    db[MIGRATIONS].delete_many({})


def test_history_stored_inside_old_documents_moves_to_its_collection_on_start(isolated_goals):
    goals = isolated_goals
    v2mom = goals.published(cycle_id=goals.new_cycle())
    goals.edit(v2mom, title="A draft on top", reason="rework")
    before = every_revision(goals.client(OWNER), v2mom.id, page_size=2)
    to_old_shape(goals.db, v2mom.id)
    assert len(goals.raw(v2mom.id)["history"]) == 4

    with served_in_process(goals_api_module.create_server, goals_pb2_grpc.GoalServiceStub, goals.settings) as client_for:
        after = every_revision(client_for(OWNER), v2mom.id, page_size=2)
        published = client_for(PEER).GetV2MOM(goals_pb2.GetV2MOMRequest(id=v2mom.id))
    raw = goals.raw(v2mom.id)
    assert [(r.revision, r.action, r.content.title) for r in after] == [(r.revision, r.action, r.content.title) for r in before]
    assert "history" not in raw and raw["latest_revision"]["revision"] == 4 and raw["published_parent_id"] is None
    assert published.state == goals_pb2.V2MOM_STATE_PUBLISHED and published.parent_id == ""
    assert goals.db[MIGRATIONS].find_one({"_id": REVISIONS_MOVED})

    goals.db.v2moms.update_one({"_id": v2mom.id}, {"$set": {"history": []}})
    migrate(goals.db)  # done once per database: a second start reads the marker, not the V2MOMs
    assert goals.raw(v2mom.id)["history"] == []
