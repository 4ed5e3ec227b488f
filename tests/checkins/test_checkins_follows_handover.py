"""checkins-worker follows a published version that changed in place in goals (no new approval): a leaver's
items passed to the V2MOM's owner (``v2mom_items_reassigned``) and a V2MOM moved to a new owner
(``v2mom_transferred``). Real processes: goals-api, goals-worker and checkins-worker on RabbitMQ and the wire
store; the directory changes as an HRIS sync writes it."""

import pytest

from services.checkins.clock_store import ITEM_CLOCKS
from services.checkins.progress_store import PROGRESS
from services.goals.directory import Directory
from tests.support.broker import queue_exists
from tests.support.processes import log_tail, wait_for

QUEUES = (
    "evt-goals-v2mom_approved--checkins_worker.on_v2mom_approved",
    "evt-goals-v2mom_items_reassigned--checkins_worker.on_v2mom_items_reassigned",
    "evt-goals-v2mom_transferred--checkins_worker.on_v2mom_transferred",
)


@pytest.fixture
def broker_uri(isolated_broker_uri):
    return isolated_broker_uri


@pytest.fixture
def worker(checkins_db, connection, checkins_worker):
    """checkins-worker once its queues exist, so goals' events published after this reach it."""
    wait_for(lambda: all(queue_exists(connection, name) for name in QUEUES) or checkins_worker.poll() is not None,
             30, "checkins-worker never declared its queues")
    assert checkins_worker.poll() is None, log_tail(checkins_worker)
    return checkins_worker


@pytest.fixture
def world(worker, goals_world, goals_worker):
    return goals_world


def clock_owners(cdb, v2mom_id: str) -> dict:
    return {clock["item_id"]: (clock["owner_id"], clock["v2mom_owner_id"])
            for clock in cdb[ITEM_CLOCKS].find({"v2mom_id": v2mom_id})}


def test_check_ins_follow_a_leavers_items_and_a_new_leader(world, db, checkins_db, worker, goals_worker):
    cdb, ann, team = checkins_db, world.ann_v2mom_id, world.team_v2mom_id
    wait_for(lambda: clock_owners(cdb, ann).get("msr-nps") == ("rob", "ann"), 30,
             f"ann's approval never reached check-ins: {log_tail(worker)}")
    directory = Directory(db, cache_seconds=0)

    # rob leaves: the measure and method he owned in ann's (and lee's) V2MOM are now theirs, in check-ins too.
    directory.upsert_person({**directory.person("rob"), "active": False})
    # Each item's clock is its own write: wait for both, not for the first and then look at the other.
    handed = {"msr-nps": ("ann", "ann"), "mth-calls": ("ann", "ann")}
    wait_for(lambda: {item: owners for item, owners in clock_owners(cdb, ann).items() if item in handed} == handed, 30,
             f"check-ins never learned that rob's items passed to ann: {clock_owners(cdb, ann)} {log_tail(worker)}")
    wait_for(lambda: clock_owners(cdb, team).get("msr-nps") == ("lee", "lee"), 30, "nor in the team's V2MOM")
    progress = cdb[PROGRESS].find_one({"_id": ann})
    assert {item["item_id"]: item["owner_id"] for item in progress["items"]}["msr-nps"] == "ann"

    # The team gets a new leader: its V2MOM moves to her, and its clocks name her as the V2MOM's owner.
    directory.upsert_org_unit({**directory.org_unit("onboarding"), "leader_id": "ann"})
    wait_for(lambda: (cdb[PROGRESS].find_one({"_id": team}) or {}).get("owner_id") == "ann", 30,
             f"check-ins never learned the team's new owner: {log_tail(worker)}")
    wait_for(lambda: all(owner == "ann" for _, owner in clock_owners(cdb, team).values()), 30,
             "the team's clocks still name lee")
    assert worker.poll() is None and goals_worker.poll() is None, log_tail(worker)
