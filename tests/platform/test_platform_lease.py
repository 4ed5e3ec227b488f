"""Leases on the wire store: one holder at a time, renewal without round trips, takeover after a crash, hand-over
on a clean stop."""

import pytest

from services.platform.store.lease import SKEW_SECONDS, Lease, Leases


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def lease(db, holder: str, clock: Clock, ttl: float = 10.0, job: str = "relay") -> Lease:
    return Lease(db["leases"], job, holder, ttl, clock)


def test_one_holder_at_a_time_and_the_other_takes_over_when_the_hold_runs_out(db):
    clock = Clock()
    first, second = lease(db, "a", clock), lease(db, "b", clock)
    assert first.held() and not second.held()
    clock.now += 9.0  # within a's hold, which it has not renewed (it crashed, say)
    assert not second.held()
    clock.now += 1.5
    assert second.held(), "a's hold ran out: b takes the job"
    assert db["leases"].find_one({"_id": "relay"})["holder"] == "b"
    assert not first.held(), "a's hold is over and b holds the lease now"


def test_a_live_holder_renews_at_half_time_and_keeps_the_job(db):
    clock = Clock()
    first, second = lease(db, "a", clock), lease(db, "b", clock)
    for _ in range(20):  # 20 s of ticks, every second
        assert first.held() and not second.held()
        clock.now += 1.0
    assert db["leases"].find_one({"_id": "relay"})["until"] > clock.now


def test_held_asks_the_store_only_to_renew(db, monkeypatch):
    clock = Clock()
    first = lease(db, "a", clock)
    assert first.held()
    calls = []
    monkeypatch.setattr(first.collection, "find_one_and_update", lambda *a, **k: calls.append(a))
    for _ in range(40):
        clock.now += 0.1
        assert first.held()
    assert calls == [], "no store write while more than half the hold is left"


def test_a_waiting_replica_does_not_poll_the_store_until_the_hold_can_have_ended(db, monkeypatch):
    clock = Clock()
    assert lease(db, "a", clock).held()
    second = lease(db, "b", clock)
    assert not second.held()
    writes = []
    monkeypatch.setattr(second.collection, "find_one_and_update", lambda *a, **k: writes.append(a))
    clock.now += 5.0
    assert not second.held() and writes == []


def test_a_clean_stop_hands_the_job_over_at_once(db):
    clock = Clock()
    first, second = lease(db, "a", clock), lease(db, "b", clock)
    assert first.held()
    first.release()
    second._retry_at = 0.0  # b would next look at its tick; the released lease is free already
    assert second.held()


def test_a_holder_cut_off_from_the_store_stops_before_its_hold_ends(db, monkeypatch):
    clock = Clock()
    first = lease(db, "a", clock)
    assert first.held()
    from pymongo.errors import ServerSelectionTimeoutError

    def away(*args, **kwargs):
        raise ServerSelectionTimeoutError("store paused")
    monkeypatch.setattr(first.collection, "find_one_and_update", away)
    clock.now += 6.0
    assert first.held(), "renewal failed, but the hold it wrote still has 4 s"
    clock.now += 10.0 - 6.0 - SKEW_SECONDS
    assert not first.held(), "within the skew allowance of its end, the holder stops"


def test_taking_back_a_lapsed_hold_is_not_news_but_a_takeover_is(db, caplog):
    """A timer that ticks less often than the lease lasts takes it back on every tick: logged at debug; the first
    hold, and one taken from another replica, at info (one line per change of holder in the logs)."""
    clock = Clock()
    first, second = lease(db, "a", clock), lease(db, "b", clock)

    def taken() -> list[tuple[str, int]]:
        found = [(r.holder, r.levelno) for r in caplog.records if r.getMessage() == "lease taken"]
        caplog.clear()
        return found

    with caplog.at_level("DEBUG", logger="services.platform.store.lease"):
        assert first.held()
        assert taken() == [("a", 20)]
        for _ in range(3):  # a 15 s timer on a 10 s lease
            clock.now += 15.0
            assert first.held()
        assert taken() == [("a", 10)] * 3
        clock.now += 15.0
        assert second.held(), "a's hold lapsed: b takes it"
        assert taken() == [("b", 20)]
        clock.now += 15.0
        assert first.held(), "b's hold lapsed: a takes it back"
        assert taken() == [("a", 20)], "a change of holder is news, even to a replica that held it before"


def test_jobs_are_leased_separately(db):
    a, b = Leases(db, 10.0, holder="a"), Leases(db, 10.0, holder="b")
    assert a["relay"].held() and b["staleness"].held()
    assert not b["relay"].held() and not a["staleness"].held()


def test_a_lease_shorter_than_the_skew_allows_is_refused(db):
    with pytest.raises(ValueError, match="too short"):
        lease(db, "a", Clock(), ttl=2.0)


def test_a_worker_refuses_a_lease_setting_that_cannot_outlast_clock_skew(monkeypatch):
    from services.platform.core.config import ConfigError
    from services.platform.worker.deps import lease_seconds

    monkeypatch.setenv("LEASE_SECONDS", "3")
    with pytest.raises(ConfigError, match="LEASE_SECONDS must be more than 4"):
        lease_seconds()
    monkeypatch.setenv("LEASE_SECONDS", "7.5")
    assert lease_seconds() == 7.5
