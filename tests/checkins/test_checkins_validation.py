"""The ugly requests: each is refused with the right code, names the right field, and writes nothing.

Then replays: the same request with the same idempotency key, again and again
and all at once, records one check-in.
"""

import math
import threading

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from tests.support.checkins_requests import (
    ADMIN, Code, correct_request, expect_nothing_written, measure_request, method_request, ON_TRACK,
)
from tests.support.grpc_errors import assert_clean, field_violations, rpc_error
from v2mom.v1 import checkins_pb2

THREE_MB = "x" * (3 * 1024 * 1024)


@pytest.fixture
def ann_v2mom(goals_world):
    return goals_world.ann_v2mom_id


def _measure(**changes):
    """A valid measure check-in on ann's V2MOM, with `changes` applied (None clears a field)."""
    def build(v2mom_id):
        request = measure_request(v2mom_id, "msr-ttv")
        for field, value in changes.items():
            if value is None:
                request.ClearField(field)
            elif field == "observe_time":
                request.observe_time.CopyFrom(value)
            else:
                setattr(request, field, value)
        return request
    return build


def _method(**changes):
    def build(v2mom_id):
        request = method_request(v2mom_id, "mth-guide")
        for field, value in changes.items():
            if isinstance(value, list):
                request.completed_milestone_ids.extend(value)
            elif value is None:
                request.ClearField(field)
            else:
                setattr(request, field, value)
        return request
    return build


def _invalid_stamp(seconds=0, nanos=0) -> Timestamp:
    """A Timestamp outside what google.protobuf.Timestamp allows (the wire carries it anyway)."""
    return Timestamp(seconds=seconds, nanos=nanos)


MEASURE_CASES = {
    "no v2mom_id": (_measure(v2mom_id=""), "v2mom_id"),
    "no measure_id": (_measure(measure_id=""), "measure_id"),
    "id with a newline": (_measure(measure_id="msr-ttv\n"), "measure_id"),
    "id too long": (_measure(v2mom_id="v" * 65), "v2mom_id"),
    "id not ascii": (_measure(measure_id="msr-tév"), "measure_id"),
    "id with a slash": (_measure(v2mom_id="../etc"), "v2mom_id"),
    "value NaN": (_measure(value=math.nan), "value"),
    "value +inf": (_measure(value=math.inf), "value"),
    "value -inf": (_measure(value=-math.inf), "value"),
    "no status": (_measure(status=checkins_pb2.CHECKIN_STATUS_UNSPECIFIED), "status"),
    "unknown status": (_measure(status=99), "status"),
    "negative status": (_measure(status=-1), "status"),
    "no confidence": (_measure(confidence=None), "confidence"),
    "confidence -1": (_measure(confidence=-1), "confidence"),
    "confidence 11": (_measure(confidence=11), "confidence"),
    "confidence huge": (_measure(confidence=2**31 - 1), "confidence"),
    "comment 2,001 characters": (_measure(comment="é" * 2001), "comment"),
    "comment 3 MB": (_measure(comment=THREE_MB), "comment"),
    "idempotency key too long": (_measure(idempotency_key="k" * 65), "idempotency_key"),
    "idempotency key with a space": (_measure(idempotency_key="retry 1"), "idempotency_key"),
    "idempotency key with a slash": (_measure(idempotency_key="a/b"), "idempotency_key"),
    "idempotency key not ascii": (_measure(idempotency_key="ключ"), "idempotency_key"),
    "observe_time nanos negative": (_measure(observe_time=_invalid_stamp(1_780_000_000, -1)), "observe_time"),
    "observe_time past year 9999": (_measure(observe_time=_invalid_stamp(10**12)), "observe_time"),
    "observe_time at the epoch": (_measure(observe_time=_invalid_stamp(0)), "observe_time"),
}

METHOD_CASES = {
    "no method_id": (_method(method_id=""), "method_id"),
    "progress below 0": (_method(progress_percent=-0.1), "progress_percent"),
    "progress above 100": (_method(progress_percent=100.1), "progress_percent"),
    "progress NaN": (_method(progress_percent=math.nan), "progress_percent"),
    "progress inf": (_method(progress_percent=math.inf), "progress_percent"),
    "21 milestones": (_method(completed_milestone_ids=[f"mil-{i}" for i in range(21)]), "completed_milestone_ids"),
    "a milestone twice": (_method(completed_milestone_ids=["mil-draft", "mil-draft"]), "completed_milestone_ids"),
    "a malformed milestone id": (_method(completed_milestone_ids=["mil draft"]), "completed_milestone_ids[0]"),
    "an empty milestone id": (_method(completed_milestone_ids=[""]), "completed_milestone_ids[0]"),
    "an unknown milestone": (_method(completed_milestone_ids=["mil-draft", "mil-nope"]), "completed_milestone_ids[1]"),
    "comment too long": (_method(comment="x" * 2001), "comment"),
    "no status": (_method(status=0), "status"),
}


@pytest.mark.parametrize("name", MEASURE_CASES)
def test_bad_measure_checkins_are_refused(goals_world, checkins_api, store, ann_v2mom, name):
    build, field = MEASURE_CASES[name]
    expect_nothing_written(store, checkins_api("ann").RecordMeasureCheckin, build(ann_v2mom), Code.INVALID_ARGUMENT, field)


@pytest.mark.parametrize("name", METHOD_CASES)
def test_bad_method_checkins_are_refused(goals_world, checkins_api, store, ann_v2mom, name):
    build, field = METHOD_CASES[name]
    expect_nothing_written(store, checkins_api("ann").RecordMethodCheckin, build(ann_v2mom), Code.INVALID_ARGUMENT, field)


def test_every_problem_is_reported_at_once(goals_world, checkins_api, store):
    request = checkins_pb2.RecordMeasureCheckinRequest(
        v2mom_id="", measure_id="bad id", value=math.nan, status=42, comment="x" * 2001, idempotency_key="no spaces",
    )
    error = expect_nothing_written(store, checkins_api("ann").RecordMeasureCheckin, request, Code.INVALID_ARGUMENT,
                                   "v2mom_id", "measure_id", "value", "status", "confidence", "comment", "idempotency_key")
    assert len(field_violations(error)) == 7


def test_bad_input_is_refused_before_goals_is_asked(goals_world, checkins_api, store):
    """Validation needs nothing stored: a hopeless request costs no call to goals-api."""
    expect_nothing_written(store, checkins_api("ann").RecordMeasureCheckin, _measure(value=math.nan)("v2m_unknown"),
                           Code.INVALID_ARGUMENT, "value")
    assert store.db.structures.count_documents({}) == 0


CORRECTION_CASES = {
    "no checkin_id": (dict(checkin_id=""), "checkin_id"),
    "no reason": (dict(reason=""), "reason"),
    "a blank reason": (dict(reason="   \n"), "reason"),
    "reason 1,001 characters": (dict(reason="r" * 1001), "reason"),
    "value NaN": (dict(value=math.nan), "value"),
    "value inf": (dict(value=math.inf), "value"),
    "progress 101": (dict(progress_percent=101), "progress_percent"),
    "confidence 11": (dict(confidence=11), "confidence"),
    "unknown status": (dict(status=5), "status"),
    "comment too long": (dict(comment="c" * 2001), "comment"),
    "idempotency key too long": (dict(idempotency_key="k" * 65), "idempotency_key"),
}


@pytest.mark.parametrize("name", CORRECTION_CASES)
def test_bad_corrections_are_refused(goals_world, checkins_api, store, ann_v2mom, name):
    original = checkins_api("ann").RecordMeasureCheckin(measure_request(ann_v2mom, "msr-ttv"))
    fields, field = CORRECTION_CASES[name]
    request = checkins_pb2.CorrectCheckinRequest(**{"checkin_id": original.id, "reason": "fix", **fields})
    expect_nothing_written(store, checkins_api("ann").CorrectCheckin, request, Code.INVALID_ARGUMENT, field)
    assert "superseded_by_id" not in store.checkin(original.id)


def test_fields_sent_with_the_wrong_wire_type_are_ignored_then_missing(goals_world, checkins_api, store):
    """Bytes no client library would send: v2mom_id (a string) arrives as a varint, value (a double) as a string."""
    channel = grpc.insecure_channel(f"127.0.0.1:{checkins_api.port}")
    call = channel.unary_unary("/v2mom.v1.CheckinService/RecordMeasureCheckin",
                               response_deserializer=checkins_pb2.Checkin.FromString)
    metadata = checkins_api("ann").metadata
    raw = b"\x08\x05" + b"\x1a\x03abc"
    error = rpc_error(lambda request: call(request, metadata=metadata, timeout=10), raw)
    channel.close()
    assert error.code() == Code.INVALID_ARGUMENT
    assert_clean(error)
    assert {"v2mom_id", "measure_id"} <= {field for field, _ in field_violations(error)}
    assert store.count() == 0


def test_a_3_mb_reason_is_refused_cleanly(goals_world, checkins_api, store, ann_v2mom):
    original = checkins_api("ann").RecordMeasureCheckin(measure_request(ann_v2mom, "msr-ttv"))
    expect_nothing_written(store, checkins_api("ann").CorrectCheckin, correct_request(original.id, reason=THREE_MB),
                           Code.INVALID_ARGUMENT, "reason")


# --- replays: one check-in however often a request arrives --------------------------------------------------


def test_the_same_request_five_times_records_once(goals_world, checkins_api, store, ann_v2mom):
    request = measure_request(ann_v2mom, "msr-ttv", value=18, idempotency_key="ann:2026-11-26:msr-ttv")
    results = [checkins_api("ann").RecordMeasureCheckin(request) for _ in range(5)]

    assert len({r.id for r in results}) == 1 and all(r == results[0] for r in results)
    assert store.count() == 1 and len(store.events()) == 1


@pytest.mark.parametrize("rpc", ["RecordMeasureCheckin", "RecordMethodCheckin"])
def test_the_same_request_five_times_at_once_records_once(goals_world, checkins_api, store, ann_v2mom, rpc):
    """All five arrive before any has stored anything (and before the structure is cached): the unique index decides."""
    if rpc == "RecordMeasureCheckin":
        request = measure_request(ann_v2mom, "msr-ttv", value=18, idempotency_key="retry-storm")
    else:
        request = method_request(ann_v2mom, "mth-guide", progress=10, idempotency_key="retry-storm")
    barrier, results = threading.Barrier(5), []

    def send():
        barrier.wait()
        try:
            results.append(getattr(checkins_api("ann"), rpc)(request).id)
        except grpc.RpcError as error:
            results.append(error.code())

    threads = [threading.Thread(target=send) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 5 and all(isinstance(r, str) for r in results), results
    assert len(set(results)) == 1
    assert store.count() == 1 and len(store.events()) == 1
    assert store.db.structures.count_documents({}) == 1


def test_the_same_key_with_other_content_returns_the_first_checkin_unchanged(goals_world, checkins_api, store, ann_v2mom):
    ann = checkins_api("ann")
    first = ann.RecordMeasureCheckin(measure_request(ann_v2mom, "msr-ttv", value=18, idempotency_key="k1"))
    again = ann.RecordMeasureCheckin(measure_request(ann_v2mom, "msr-ttv", value=25, comment="other", idempotency_key="k1"))
    other_rpc = ann.RecordMethodCheckin(method_request(ann_v2mom, "mth-guide", idempotency_key="k1"))

    assert again == first and other_rpc == first and again.value == 18
    assert store.count() == 1


def test_keys_are_per_author_and_calls_without_a_key_are_not_deduplicated(goals_world, checkins_api, store, ann_v2mom):
    first = checkins_api("ann").RecordMeasureCheckin(measure_request(ann_v2mom, "msr-nps", idempotency_key="k1"))
    rob = checkins_api("rob").RecordMeasureCheckin(measure_request(ann_v2mom, "msr-nps", idempotency_key="k1"))
    assert rob.id != first.id and rob.author_id == "rob"

    for _ in range(2):
        checkins_api("ann").RecordMeasureCheckin(measure_request(ann_v2mom, "msr-nps"))
    assert store.count() == 4


def test_a_replayed_correction_corrects_once(goals_world, checkins_api, store, ann_v2mom):
    ann = checkins_api("ann")
    original = ann.RecordMeasureCheckin(measure_request(ann_v2mom, "msr-ttv", value=20))
    request = correct_request(original.id, value=19, idempotency_key="fix-1")
    results = [ann.CorrectCheckin(request) for _ in range(5)]

    assert len({r.id for r in results}) == 1
    assert store.count() == 2 and store.count(supersedes_id=original.id) == 1
    assert store.checkin(original.id)["superseded_by_id"] == results[0].id


def test_a_replay_returns_the_first_checkin_as_it_is_now(goals_world, checkins_api, store, ann_v2mom):
    """Even once corrected: the retry learns it was recorded, and that it has been superseded since."""
    ann = checkins_api("ann")
    request = measure_request(ann_v2mom, "msr-ttv", value=20, idempotency_key="k-late")
    first = ann.RecordMeasureCheckin(request)
    correction = ann.CorrectCheckin(correct_request(first.id, value=21))
    replay = ann.RecordMeasureCheckin(request)
    assert replay.id == first.id and replay.superseded_by_id == correction.id
    assert store.count() == 2


def test_unauthenticated_bad_requests_are_unauthenticated_first(goals_world, checkins_api, store):
    expect_nothing_written(store, checkins_api(None).RecordMeasureCheckin, checkins_pb2.RecordMeasureCheckinRequest(),
                           Code.UNAUTHENTICATED)


def test_an_admin_gets_the_same_validation(goals_world, checkins_api, store, ann_v2mom):
    expect_nothing_written(store, checkins_api("ada", ADMIN).RecordMeasureCheckin,
                           measure_request(ann_v2mom, "msr-ttv", confidence=None, status=ON_TRACK),
                           Code.INVALID_ARGUMENT, "confidence")
