"""The kernel's shared primitives: page tokens, the expiring cache, the clock, validation shapes, store filters."""

import base64
import json
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from google.type import date_pb2

from services.platform.core import paging
from services.platform.core.cache import ExpiringCache
from services.platform.core.clock import (
    from_date_proto, from_timestamp, to_date_proto, to_millis, to_timestamp, utc_now,
)
from services.platform.core.errors import InvalidArgument, Violations
from services.platform.core.validation import check_date, check_id, check_number, is_id
from services.platform.store.mongo import after_id, matching


def violation_of(error: InvalidArgument) -> tuple[str, str]:
    (only,) = error.violations
    return only.field, only.description


# --- page tokens -----------------------------------------------------------------------------------


def test_a_token_resumes_the_list_and_the_filters_it_was_issued_for():
    token = paging.encode_token("people", {"unit": "eng"}, "person_42")
    assert paging.decode_token(token, "people", {"unit": "eng"}) == "person_42"
    assert paging.decode_token("", "people", {"unit": "eng"}) is None


@pytest.mark.parametrize("list_name, filters", [("units", {"unit": "eng"}), ("people", {"unit": "sales"}), ("people", {})])
def test_a_token_of_another_list_or_other_filters_is_refused(list_name, filters):
    token = paging.encode_token("people", {"unit": "eng"}, "person_42")
    with pytest.raises(InvalidArgument) as refused:
        paging.decode_token(token, list_name, filters)
    assert violation_of(refused.value)[0] == "page_token"


@pytest.mark.parametrize("token", [
    "wrI=",  # base64 of "²": once accepted by isdigit() and refused by int(), an INTERNAL
    "%%%", "not base64!", "e30=", "W10=", "bnVsbA==", "x" * 2000, "\u00e9t\u00e9",
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
])
def test_garbage_tokens_are_invalid_arguments_never_errors(token):
    with pytest.raises(InvalidArgument) as refused:
        paging.decode_token(token, "revisions", ["v1"], int)
    assert violation_of(refused.value) == ("page_token", "is not a token this list issued for these filters")


def test_a_position_of_the_wrong_type_is_refused():
    for position in ("3", 3.5, True, None, [1]):
        forged = paging.encode_token("revisions", ["v1"], position)
        with pytest.raises(InvalidArgument):
            paging.decode_token(forged, "revisions", ["v1"], int)
    assert paging.decode_token(paging.encode_token("revisions", ["v1"], 3), "revisions", ["v1"], int) == 3


def test_filters_fingerprint_does_not_depend_on_key_order():
    token = paging.encode_token("people", {"a": 1, "b": 2}, 7)
    assert paging.decode_token(token, "people", {"b": 2, "a": 1}, int) == 7
    payload = json.loads(base64.urlsafe_b64decode(token))
    assert set(payload) == {"f", "p"}


def test_next_token_only_when_a_row_more_came_back():
    rows = [{"_id": f"r{i}"} for i in range(3)]
    assert paging.next_token("l", {}, rows, 3, lambda row: row["_id"]) == ""
    token = paging.next_token("l", {}, rows, 2, lambda row: row["_id"])
    assert paging.decode_token(token, "l", {}) == "r1"


@pytest.mark.parametrize("value, expected", [(0, 50), (1, 1), (200, 200)])
def test_page_size_defaults_and_bounds(value, expected):
    violations = Violations()
    assert paging.page_size(violations, value) == expected
    assert not violations


@pytest.mark.parametrize("value", [-1, 201, 10**9])
def test_page_size_out_of_range_is_a_violation(value):
    violations = Violations()
    paging.page_size(violations, value)
    assert [v.field for v in violations.items] == ["page_size"]


# --- the expiring cache ----------------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_cache_keeps_an_answer_for_its_ttl_then_loads_again():
    clock, loads = FakeClock(), []
    cache = ExpiringCache(5, clock=clock)
    load = lambda: loads.append(1) or len(loads)  # noqa: E731
    assert cache.get("k", load) == 1
    clock.now += 4.9
    assert cache.get("k", load) == 1
    clock.now += 0.2
    assert cache.get("k", load) == 2


def test_a_zero_ttl_caches_nothing():
    loads = []
    cache = ExpiringCache(0)
    for _ in range(3):
        cache.get("k", lambda: loads.append(1))
    assert len(loads) == 3


def test_cache_is_bounded_and_evicts_the_least_recently_used():
    cache = ExpiringCache(60, max_entries=2)
    cache.get("a", lambda: "A")
    cache.get("b", lambda: "B")
    cache.get("a", lambda: "A again")  # a hit: "a" is now the most recent
    cache.get("c", lambda: "C")
    assert len(cache) == 2
    assert cache.last("a") == "A" and cache.last("c") == "C" and cache.last("b") is None


def test_last_answers_however_old_and_refresh_always_loads():
    clock = FakeClock()
    cache = ExpiringCache(1, clock=clock)
    cache.get("k", lambda: "old")
    clock.now += 1000
    assert cache.last("k") == "old"
    assert cache.refresh("k", lambda: "new") == "new"
    assert cache.last("missing", "default") == "default"


def test_a_cache_told_not_to_remember_misses_loads_a_missing_key_again():
    answers = iter([None, "written since"])
    cache = ExpiringCache(60, remember_missing=False)
    assert cache.get("k", lambda: next(answers)) is None
    assert cache.get("k", lambda: next(answers)) == "written since"
    assert cache.get("k", lambda: "not loaded: the answer is kept") == "written since"


def test_a_failed_load_keeps_nothing():
    cache = ExpiringCache(60)

    def failing():
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        cache.get("k", failing)
    assert cache.last("k") is None and len(cache) == 0


# --- the clock -------------------------------------------------------------------------------------


def test_times_are_aware_utc_whole_milliseconds():
    moment = utc_now()
    assert moment.tzinfo is UTC and moment.microsecond % 1000 == 0
    naive = datetime(2026, 3, 1, 12, 0, 0, 123456)
    assert to_millis(naive) == datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    elsewhere = datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert to_millis(elsewhere) == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_timestamps_round_trip_at_millisecond_precision():
    moment = datetime(2026, 11, 27, 9, 30, 15, 987654, tzinfo=UTC)
    assert from_timestamp(to_timestamp(moment)) == to_millis(moment)


def test_dates_round_trip_and_the_empty_date_is_none():
    assert from_date_proto(to_date_proto("2027-01-31")) == date(2027, 1, 31)
    assert from_date_proto(to_date_proto(date(2026, 2, 1))) == date(2026, 2, 1)
    assert to_date_proto("") == date_pb2.Date() and from_date_proto(date_pb2.Date()) is None
    with pytest.raises(ValueError):
        from_date_proto(date_pb2.Date(year=2026, month=2, day=30))


# --- validation shapes -----------------------------------------------------------------------------


@pytest.mark.parametrize("value, ok", [
    ("hannah.berg", True), ("a" * 64, True), ("a" * 65, False), ("olive\n", False), ("", False), ("a b", False),
    ("\u00e9", False), (None, False), (7, False),
])
def test_ids(value, ok):
    assert is_id(value) is ok


def test_check_id_required_and_optional():
    violations = Violations()
    check_id(violations, "owner_id", "")
    check_id(violations, "parent_id", "", required=False)
    check_id(violations, "id", "bad id")
    assert [(v.field, v.description.split()[0]) for v in violations.items] == [("owner_id", "is"), ("id", "must")]


def test_numbers_and_dates():
    violations = Violations()
    check_number(violations, "weight", float("nan"))
    check_number(violations, "weight", 2.0, 0, 1)
    check_number(violations, "weight", 0.5, 0, 1)
    assert check_date(violations, "due", date_pb2.Date(year=2026, month=2, day=30)) is None
    assert check_date(violations, "due", date_pb2.Date(year=2026, month=2, day=28)) == date(2026, 2, 28)
    assert [v.field for v in violations.items] == ["weight", "weight", "due"]


# --- store filters ---------------------------------------------------------------------------------


def test_matching_keeps_only_given_values_and_after_id_pages_by_id():
    assert matching(org_unit_id="eng", manager_id="", cycle=None, level=0) == {"org_unit_id": "eng", "level": 0}
    assert after_id({"a": 1}, None) == {"a": 1}
    assert after_id({"a": 1}, "x") == {"a": 1, "_id": {"$gt": "x"}}


def test_an_event_must_come_through_its_own_services_exchange():
    from services.platform.bus.events import MalformedEvent, SourceMismatch, envelope, parse

    approved = envelope("goals", "v2mom_approved", subject="v1", data={"v2momId": "v1"})
    assert parse(approved, "goals.events") is approved
    assert parse(approved) is approved  # no exchange given: only the envelope's shape is checked
    for exchange in ("checkins.events", "", "goals.dlx", "goals.events.unrouted"):
        with pytest.raises(SourceMismatch) as raised:
            parse(approved, exchange)
        assert isinstance(raised.value, MalformedEvent) and repr(exchange) in str(raised.value)
