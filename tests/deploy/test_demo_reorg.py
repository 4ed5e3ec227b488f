"""The demo's reorganisation (deploy/demo/reorg.py): through the directory API as HR, once; the seed keeps it."""

from deploy.demo.goals_seed import seed
from deploy.demo.reorg import LEAVER, MOVER, NEW_MANAGER, NEW_UNIT, effective_time, reorganise
from v2mom.v1 import common_pb2, goals_pb2


def test_one_person_moves_team_and_another_leaves_once(settings, db, goals_api):
    address = f"127.0.0.1:{goals_api.port}"
    seed(settings, goals_api_address=address, progress=False)
    before = {p["_id"]: p for p in db.people.find({"_id": {"$in": [MOVER, LEAVER]}})}

    first = reorganise(address, settings.auth)

    assert first.changed and first.outcomes == {MOVER: "changed", LEAVER: "changed"}, first.outcomes
    mover = goals_api("kofi.mensah").GetPerson(goals_pb2.GetPersonRequest(id=MOVER))
    assert (mover.org_unit_id, mover.manager_id, mover.active) == (NEW_UNIT, NEW_MANAGER, True)
    assert (mover.display_name, mover.email, mover.title) == tuple(before[MOVER][k] for k in ("display_name", "email", "title"))
    assert mover.external_id == MOVER  # the HRIS keeps him from now on
    leaver = goals_api("kofi.mensah").GetPerson(goals_pb2.GetPersonRequest(id=LEAVER))
    assert not leaver.active and leaver.employment_status == common_pb2.EMPLOYMENT_STATUS_TERMINATED
    day = effective_time().ToDatetime().date()
    assert (leaver.end_date.year, leaver.end_date.month, leaver.end_date.day) == (day.year, day.month, day.day)
    # Each change is one person_upserted in its record's outbox, for goals-worker and the other services.
    assert all(len(db.people.find_one({"_id": p})["outbox"]) >= 1 for p in (MOVER, LEAVER))

    again = reorganise(address, settings.auth)
    assert not again.changed, again.outcomes
    assert "already applied" in again.summary()
    # The seed leaves both alone: it neither moves Diego back nor brings Omar back.
    reseeded = seed(settings, goals_api_address=address, progress=False)
    assert not reseeded.changed, reseeded.summary()
    stored = {p["_id"]: p for p in db.people.find({"_id": {"$in": [MOVER, LEAVER]}})}
    assert stored[MOVER]["org_unit_id"] == NEW_UNIT and stored[LEAVER]["active"] is False
