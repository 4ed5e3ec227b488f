"""A manager of hundreds, on the SQLite store `make run` keeps: lists name every report, and that store
refuses an `$in` of more than about 500 values (store.mongo.IN_CHUNK)."""

import pytest

from tests.support.goals import FY2027, FY2028, MANAGER, OWNER, PEER, start_env, stop_env
from v2mom.v1 import goals_pb2

REPORTS = 600


@pytest.fixture
def big_team(sqlite_mongo_uri):
    env = start_env(sqlite_mongo_uri)
    shape = {k: v for k, v in env.db.people.find_one({"_id": OWNER}).items() if not k.startswith("outbox")}
    env.db.people.insert_many([{**shape, "_id": f"r{i:03}", "display_name": f"Report {i}"} for i in range(REPORTS)])
    yield env
    stop_env(env)


def listed(client, page_size: int, **filters) -> list[goals_pb2.V2MOM]:
    found, token = [], ""
    while True:
        page = client.ListV2MOMs(goals_pb2.ListV2MOMsRequest(page_size=page_size, page_token=token, **filters))
        found += page.v2moms
        if not page.next_page_token:
            return found
        token = page.next_page_token


def test_a_manager_of_hundreds_lists_their_reports_drafts_and_everyone_elses_published(big_team):
    """Issue 12, finding 4: the list named all 601 owners in one `$in` (and `$nin`): INTERNAL on that store."""
    goals = big_team
    draft = goals.create(cycle_id=FY2027)  # OWNER reports to MANAGER
    peers_published = goals.published(owner=PEER, approver="mia", cycle_id=FY2027)
    goals.create(owner=PEER, cycle_id=FY2028)  # a draft MANAGER may not see

    seen = listed(goals.client(MANAGER), page_size=1)
    assert [(v.id, v.state) for v in seen] == sorted([
        (draft.id, goals_pb2.V2MOM_STATE_DRAFT), (peers_published.id, goals_pb2.V2MOM_STATE_PUBLISHED)])
    assert [v.id for v in listed(goals.client(MANAGER), 5, owner_id=PEER)] == [peers_published.id]
    assert [v.id for v in listed(goals.client(MANAGER), 5, state=goals_pb2.V2MOM_STATE_DRAFT)] == [draft.id]
