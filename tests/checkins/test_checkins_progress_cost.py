"""A check-in costs the projection one progress document and one clock, never a look at the history.

Every command the handler sends to the store is recorded (pymongo command
monitoring), with the history of check-ins empty and then 500 strong. The
commands must be the same few, each addressed by _id, and none may touch
the ``checkins`` collection except the one correction link by _id. A worker
that wrote the documents remembers them and only writes; one that did not
(just started, or another replica wrote last) reads each once first.
"""

from datetime import timedelta

from services.checkins.handlers import Projection
from tests.support.checkin_events import approved, checkin_data, corrected, FakeGoals, NOW, recorded, v2mom_data
from v2mom.v1 import checkins_pb2

HISTORY = 500
WEEKLY = checkins_pb2.CADENCE_WEEKLY  # the event names the cadence, so no settings lookup either


def shape(commands):
    """What was asked of which collection, by which key; the values of the keys do not matter."""
    return sorted((command, collection, tuple(sorted(query))) for command, collection, query in commands)


def add_history(db, count: int) -> None:
    db.checkins.insert_many([
        {"_id": f"chk_hist_{n:05d}", "v2mom_id": "v2m_ann", "item_id": "msr-nps", "author_id": "rob",
         "observe_time": NOW - timedelta(days=100, minutes=n), "value": float(n % 60)}
        for n in range(count)
    ])


def test_a_check_in_touches_one_progress_document_and_one_clock_however_long_the_history(recorded_store):
    db, commands = recorded_store
    projection = Projection(db, FakeGoals(), now=lambda: NOW)
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3)))

    def one_checkin(hours_ago):
        data = checkin_data("v2m_ann", value=40.0, observed=NOW - timedelta(hours=hours_ago), cadence=WEEKLY)
        return commands.during(lambda: projection.checkin_recorded(recorded(data)))

    without_history = one_checkin(5)
    add_history(db, HISTORY)
    with_history = one_checkin(4)

    assert shape(with_history) == shape(without_history) == [
        ("update", "item_clocks", ("_id", "revision")),
        ("update", "progress", ("_id", "revision")),
    ]
    assert not [c for c in with_history if c[1] == "checkins"]
    assert {query["_id"] for _, collection, query in with_history if collection == "progress"} == {"v2m_ann"}


def test_a_worker_that_did_not_write_them_reads_the_two_documents_once(recorded_store):
    db, commands = recorded_store
    Projection(db, FakeGoals(), now=lambda: NOW).v2mom_approved(approved(v2mom_data("v2m_ann", 3)))
    add_history(db, HISTORY)
    started_since = Projection(db, FakeGoals(), now=lambda: NOW)
    data = checkin_data("v2m_ann", value=40.0, observed=NOW - timedelta(hours=4), cadence=WEEKLY)

    seen = commands.during(lambda: started_since.checkin_recorded(recorded(data)))

    assert shape(seen) == [
        ("find", "item_clocks", ("_id",)),
        ("find", "progress", ("_id",)),
        ("update", "item_clocks", ("_id", "revision")),
        ("update", "progress", ("_id", "revision")),
    ]


def test_a_correction_adds_only_the_link_to_the_check_in_it_replaces(recorded_store):
    db, commands = recorded_store
    projection = Projection(db, FakeGoals(), now=lambda: NOW)
    projection.v2mom_approved(approved(v2mom_data("v2m_ann", 3)))
    add_history(db, HISTORY)
    fix = checkin_data("v2m_ann", value=50.0, supersedes_id="chk_hist_00007", cadence=WEEKLY)

    seen = commands.during(lambda: projection.checkin_corrected(corrected(fix)))

    touching_history = [(command, query) for command, collection, query in seen if collection == "checkins"]
    assert touching_history == [("update", {"_id": "chk_hist_00007", "superseded_by_id": {"$exists": False}})]
    assert len(seen) == 3  # the link, the clock, the progress document
