"""notify-worker follows goals' hand-overs in process: ``v2mom_transferred`` tells the new owner (ATTENTION, by
their preferences) and moves notify's copy of the V2MOM and its items to them; ``v2mom_items_reassigned``
moves items and Accountables in place and tells nobody. Replays and late events change nothing.
"""

from datetime import timedelta

import pytest

from services.goals import events as goals_events
from services.notify import kinds, schedules
from services.notify.store import ITEMS, PREFERENCES, SCHEDULES, V2MOMS
from services.platform.bus.events import to_wire
from services.platform.worker.consumer import PermanentError
from tests.support.notify_world import T0, approved, counts, deliveries, fire_due, notifications, stale
from v2mom.v1 import checkins_pb2, common_pb2, events_pb2, goals_pb2


def handed_content(accountable="acc", measure_owner=""):
    """Olive's V2MOM: the method's owner is acc; the measure has no owner of its own (so it is the V2MOM owner's)."""
    return goals_pb2.V2MOMContent(
        title="Olive FY27",
        methods=[goals_pb2.Method(id="m1", title="Ship it", owner_id="acc", accountable_id=accountable)],
        measures=[goals_pb2.Measure(id="x1", title="NPS", owner_id=measure_owner, method_ids=["m1"])],
    )


def handover_event(event_type, revision, owner, previous="", actor="hr", body=None, state=goals_pb2.V2MOM_STATE_PUBLISHED,
                   paths=("owner_id",), reason="owner left"):
    data = events_pb2.V2MOMEventData(
        v2mom_id="v2m_1", revision=revision, owner_id=owner, org_unit_id="platform", cycle_id="FY2027",
        level=common_pb2.ORG_LEVEL_INDIVIDUAL, state=state, previous_state=state, actor_id=actor, reason=reason,
        changed_paths=list(paths), content=body or handed_content())
    data.submit_time.FromDatetime(T0)
    data.publish_time.FromDatetime(T0 + timedelta(hours=1))
    if previous:
        data.previous_owner_id = previous
    return to_wire(goals_events.v2mom_event(event_type, data))


def transferred(revision=4, owner="nina", previous="olive", **kw):
    return handover_event(goals_events.V2MOM_TRANSFERRED, revision, owner, previous, **kw)


def reassigned(revision=4, owner="olive", **kw):
    return handover_event(goals_events.V2MOM_ITEMS_REASSIGNED, revision, owner, actor="system",
                          paths=("content.methods[m1].accountable_id",), **kw)


def published(world, revision=3):
    event = approved(revision, body=handed_content())
    world.notifier.v2mom_approved(event)
    return event


@pytest.fixture
def nina(world):
    world.people.upsert_from_event({"id": "nina", "displayName": "Nina New", "email": "nina@acme.test",
                                    "managerId": "dana", "orgUnitId": "platform", "active": True}, 1)
    return world


def items(db):
    return {doc["item_id"]: doc for doc in db[ITEMS].find({"v2mom_id": "v2m_1"})}


def test_the_new_owner_is_told_once_and_the_copy_and_its_items_become_theirs(nina):
    world = nina
    approval = published(world)
    assert items(world.db)["x1"]["owner_id"] == "olive"
    event = transferred()
    world.notifier.v2mom_transferred(event)

    [note] = notifications(world.db, recipient_id="nina")
    assert note["kind"] == kinds.ATTENTION and note["title"] == "\u201cOlive FY27\u201d is now yours"
    assert "transferred to you from Olive Owner (owner left)" in note["body"]
    assert note["link"] == "https://portal.test/v2moms/v2m_1" and note["facts"]["previous_owner_id"] == "olive"
    by_channel = {d["channel"]: d for d in deliveries(world.db, notification_id=note["_id"])}
    assert by_channel[kinds.INBOX]["status"] == "SENT"
    assert by_channel[kinds.EMAIL]["target"] == "nina@acme.test"
    assert notifications(world.db, recipient_id="olive", kind=kinds.ATTENTION) == []

    copy = world.db[V2MOMS].find_one({"_id": "v2m_1"})
    assert (copy["owner_id"], copy["revision"], copy["content_revision"]) == ("nina", 4, 4)
    held = items(world.db)
    assert held["x1"]["owner_id"] == "nina" and held["m1"]["owner_id"] == "acc"  # the method has its own owner
    assert all(item["active"] for item in held.values())
    # the item keeps its reminder (it goes to whoever owns the item when it fires)
    assert world.db[SCHEDULES].count_documents({"kind": schedules.CHECKIN_REMINDER, "state": schedules.WAITING}) == 2

    before = counts(world.db)
    world.notifier.v2mom_transferred(event)  # a replay
    world.notifier.v2mom_approved(approval)  # and the approval again, late
    assert counts(world.db) == before
    assert world.db[V2MOMS].find_one({"_id": "v2m_1"})["owner_id"] == "nina"
    assert items(world.db)["x1"]["owner_id"] == "nina"


def test_a_transfer_before_the_approval_ends_as_in_order(nina):
    world = nina
    world.notifier.v2mom_transferred(transferred())
    published(world)  # revision 3, after the transfer's 4
    copy = world.db[V2MOMS].find_one({"_id": "v2m_1"})
    assert (copy["owner_id"], copy["content_revision"]) == ("nina", 4)
    assert items(world.db)["x1"]["owner_id"] == "nina"
    assert [n["recipient_id"] for n in notifications(world.db, kind=kinds.ATTENTION)] == ["nina"]


def test_escalations_go_up_the_new_owners_line(nina):
    world = nina
    published(world)
    world.notifier.item_stale(stale("x1", kind=checkins_pb2.ITEM_KIND_MEASURE))  # told olive, then
    world.notifier.v2mom_transferred(transferred())
    fire_due(world, T0 + timedelta(hours=24))  # tier 1: the Accountable of the measure's method
    fire_due(world, T0 + timedelta(hours=48))  # tier 2: the V2MOM owner's manager, now nina's
    told = {n["recipient_id"] for n in notifications(world.db, kind=kinds.ITEM_ESCALATION)}
    assert told == {"olive", "acc", "dana"}


def test_a_transfer_overtaken_by_a_later_one_tells_nobody(nina):
    world = nina
    published(world)
    world.notifier.v2mom_transferred(transferred(5, owner="acc", previous="nina"))
    world.notifier.v2mom_transferred(transferred(4, owner="nina", previous="olive"))  # late
    assert [n["recipient_id"] for n in notifications(world.db, kind=kinds.ATTENTION)] == ["acc"]
    assert world.db[V2MOMS].find_one({"_id": "v2m_1"})["owner_id"] == "acc"
    assert items(world.db)["x1"]["owner_id"] == "acc"


def test_the_new_owners_preferences_choose_the_channels_and_taking_it_oneself_tells_nobody(nina):
    world = nina
    world.db[PREFERENCES].insert_one({"_id": "nina", "kinds": {kinds.ATTENTION: {"channels": [kinds.INBOX]}}})
    published(world)
    world.notifier.v2mom_transferred(transferred())
    [note] = notifications(world.db, recipient_id="nina")
    assert [d["channel"] for d in deliveries(world.db, notification_id=note["_id"])] == [kinds.INBOX]
    world.notifier.v2mom_transferred(transferred(5, owner="lee", previous="nina", actor="lee"))
    assert notifications(world.db, recipient_id="lee", kind=kinds.ATTENTION) == []
    assert world.db[V2MOMS].find_one({"_id": "v2m_1"})["owner_id"] == "lee"


def test_a_draft_never_published_changes_owner_but_keeps_no_content(nina):
    world = nina
    event = transferred(2, state=goals_pb2.V2MOM_STATE_DRAFT)
    event["data"].pop("publishTime")
    world.notifier.v2mom_transferred(event)
    copy = world.db[V2MOMS].find_one({"_id": "v2m_1"})
    assert copy["owner_id"] == "nina" and "content" not in copy and items(world.db) == {}
    assert len(notifications(world.db, recipient_id="nina")) == 1


def test_an_unknown_new_owner_is_permanent_and_writes_nothing(world):
    with pytest.raises(PermanentError):
        world.notifier.v2mom_transferred(transferred(owner="ghost"))
    assert counts(world.db) == (0, 0, 0) and world.db[V2MOMS].count_documents({}) == 0


def test_items_reassigned_move_the_accountable_and_items_in_place_and_tell_nobody(nina):
    world = nina
    published(world)
    before = counts(world.db)
    event = reassigned(body=handed_content(accountable="olive"))
    world.notifier.v2mom_items_reassigned(event)
    world.notifier.v2mom_items_reassigned(event)
    assert counts(world.db) == before
    copy = world.db[V2MOMS].find_one({"_id": "v2m_1"})
    assert copy["content"]["methods"][0]["accountableId"] == "olive" and copy["content_revision"] == 4
    # a stale measure's first escalation goes to its method's Accountable, olive now, who was told already
    world.notifier.item_stale(stale("x1", kind=checkins_pb2.ITEM_KIND_MEASURE))
    fire_due(world, T0 + timedelta(hours=24))
    assert {n["recipient_id"] for n in notifications(world.db, kind=kinds.ITEM_ESCALATION)} == {"olive"}
    # and a late reassignment (older than the content held) changes nothing
    world.notifier.v2mom_items_reassigned(reassigned(3, body=handed_content(accountable="acc")))
    assert world.db[V2MOMS].find_one({"_id": "v2m_1"})["content"]["methods"][0]["accountableId"] == "olive"
