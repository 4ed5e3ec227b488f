"""The pause switch asks the store one handler at a time once it has an answer (services/metrics/control.py)."""

import threading

from services.metrics import control


class _CountedReads:
    """The metrics database, with its reads of the control collection counted and, when asked, held."""

    def __init__(self, db):
        self.db = db
        self.reads = 0
        self.hold = threading.Event()
        self.hold.set()
        self.reading = threading.Event()

    def __getitem__(self, name):
        collection = self.db[name]
        outer = self

        class Collection:
            def find_one(self, *args, **kwargs):
                outer.reads += 1
                outer.reading.set()
                outer.hold.wait(10)
                return collection.find_one(*args, **kwargs)

            def __getattr__(self, attribute):
                return getattr(collection, attribute)

        return Collection()


def test_handlers_arriving_during_a_read_take_the_held_answer_instead_of_reading_again(metrics_db):
    db = _CountedReads(metrics_db)
    switch = control.PauseSwitch(db, ttl=0.0)  # every call would ask, but for one already asking
    assert switch.paused() is False and db.reads == 1

    db.hold.clear()
    db.reading.clear()
    asking = threading.Thread(target=switch.paused)
    asking.start()
    assert db.reading.wait(5)
    assert control.take_rebuild_lease(metrics_db, "test")
    # Arrives while the read is under way: the held answer, no second read.
    assert switch.paused() is False and db.reads == 2
    db.hold.set()
    asking.join(5)
    # The read that was under way saw the lease; so does the next.
    assert switch.paused() is True and db.reads == 3
    control.release_rebuild_lease(metrics_db, "test")
    assert switch.paused() is False


def test_before_its_first_answer_every_handler_asks(metrics_db):
    assert control.take_rebuild_lease(metrics_db, "test")
    db = _CountedReads(metrics_db)
    db.hold.clear()
    switch = control.PauseSwitch(db, ttl=60.0)
    answers = []
    first = threading.Thread(target=lambda: answers.append(switch.paused()))
    first.start()
    assert db.reading.wait(5)
    second = threading.Thread(target=lambda: answers.append(switch.paused()))
    second.start()
    while db.reads < 2 and second.is_alive():
        second.join(0.01)
    db.hold.set()
    first.join(5)
    second.join(5)
    # Nobody took "not paused" for an answer while a rebuild held the lease.
    assert answers == [True, True] and db.reads == 2
    control.release_rebuild_lease(metrics_db, "test")
    # Answered now: within ttl, no read.
    assert switch.paused() is True and db.reads == 2
