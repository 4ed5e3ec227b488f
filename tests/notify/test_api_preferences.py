"""notify-api's preferences over real gRPC: GetPreferences and UpdatePreferences, each person their own."""

import grpc
import pytest
from google.protobuf import field_mask_pb2

from services.notify import kinds
from tests.support.grpc_errors import expect
from v2mom.v1 import notify_pb2

K = notify_pb2
INBOX, EMAIL, WEBHOOK = K.CHANNEL_INBOX, K.CHANNEL_EMAIL, K.CHANNEL_WEBHOOK


def by_kind(preferences) -> dict:
    return {p.kind: (list(p.channels), p.digest) for p in preferences.kinds}


def update(client, *entries, quiet=None, paths=()):
    preferences = K.Preferences(kinds=[K.KindPreference(kind=k, channels=c, digest=d) for k, c, d in entries])
    if quiet is not None:
        preferences.quiet_hours.start, preferences.quiet_hours.end = quiet
    mask = field_mask_pb2.FieldMask(paths=list(paths))
    return client.UpdatePreferences(K.UpdatePreferencesRequest(preferences=preferences, update_mask=mask))


def test_defaults_for_everyone_and_the_time_zone_from_the_directory_copy(notify_api, notify_db):
    notify_db.people.insert_one({"_id": "ann", "time_zone": "Europe/Berlin"})
    ann = notify_api("ann").GetPreferences(K.GetPreferencesRequest())
    assert ann.person_id == "ann" and ann.time_zone == "Europe/Berlin"
    assert by_kind(ann)[K.NOTIFICATION_KIND_DIGEST] == ([EMAIL], False)
    assert by_kind(ann)[K.NOTIFICATION_KIND_ITEM_ESCALATION] == ([INBOX], False)
    assert len(ann.kinds) == len(kinds.KINDS) and not ann.quiet_hours.start and not ann.HasField("update_time")
    assert notify_api("bob").GetPreferences(K.GetPreferencesRequest()).time_zone == "UTC"


def test_update_stores_the_documented_shape_and_reads_back(notify_api, notify_db):
    client = notify_api("ann")
    answer = update(client, (K.NOTIFICATION_KIND_CHECKIN_REMINDER, [EMAIL], True),
                    (K.NOTIFICATION_KIND_ATTENTION, [], False), quiet=("22:00", "07:00"))
    assert by_kind(answer)[K.NOTIFICATION_KIND_CHECKIN_REMINDER] == ([EMAIL], True)
    assert by_kind(answer)[K.NOTIFICATION_KIND_ATTENTION] == ([], False)
    assert (answer.quiet_hours.start, answer.quiet_hours.end) == ("22:00", "07:00") and answer.HasField("update_time")
    stored = notify_db.preferences.find_one({"_id": "ann"})
    assert stored["kinds"] == {kinds.CHECKIN_REMINDER: {"channels": [kinds.EMAIL], "digest": True},
                               kinds.ATTENTION: {"channels": [], "digest": False}}
    assert stored["quiet_hours"] == {"start": "22:00", "end": "07:00"}
    assert kinds.channels_for(stored, kinds.ATTENTION) == ()
    assert client.GetPreferences(K.GetPreferencesRequest()) == answer
    # Bob's are untouched.
    assert by_kind(notify_api("bob").GetPreferences(K.GetPreferencesRequest()))[K.NOTIFICATION_KIND_ATTENTION][0] == \
        [INBOX, EMAIL]


def test_the_mask_changes_only_the_paths_it_names(notify_api, notify_db):
    client = notify_api("ann")
    update(client, (K.NOTIFICATION_KIND_DIGEST, [INBOX], False), quiet=("12:00", "13:00"))
    answer = update(client, quiet=("23:00", "06:00"), paths=["quiet_hours"])
    assert by_kind(answer)[K.NOTIFICATION_KIND_DIGEST] == ([INBOX], False)
    assert answer.quiet_hours.start == "23:00"
    cleared = update(client, paths=["quiet_hours"])
    assert not cleared.quiet_hours.start and notify_db.preferences.find_one({"_id": "ann"})["quiet_hours"] is None
    answer = update(client, (K.NOTIFICATION_KIND_DIGEST, [EMAIL], False), quiet=("01:00", "02:00"), paths=["kinds"])
    assert by_kind(answer)[K.NOTIFICATION_KIND_DIGEST] == ([EMAIL], False) and not answer.quiet_hours.start


def test_approval_requests_cannot_lose_the_inbox(notify_api, notify_db):
    client = notify_api("ann")
    error = expect(lambda r: update(client, (K.NOTIFICATION_KIND_APPROVAL_REQUESTED, [EMAIL], False)), None,
                   grpc.StatusCode.INVALID_ARGUMENT, "preferences.kinds[0].channels")
    assert "inbox" in error.details().lower()
    assert notify_db.preferences.find_one({"_id": "ann"}) is None
    answer = update(client, (K.NOTIFICATION_KIND_APPROVAL_REQUESTED, [INBOX], False))
    assert by_kind(answer)[K.NOTIFICATION_KIND_APPROVAL_REQUESTED] == ([INBOX], False)


@pytest.mark.parametrize("entries, quiet, paths, fields", [
    ([(0, [INBOX], False)], None, (), ["preferences.kinds[0].kind"]),
    ([(99, [INBOX], False)], None, (), ["preferences.kinds[0].kind"]),
    ([(K.NOTIFICATION_KIND_DIGEST, [0], False)], None, (), ["preferences.kinds[0].channels[0]"]),
    ([(K.NOTIFICATION_KIND_DIGEST, [42], False)], None, (), ["preferences.kinds[0].channels[0]"]),
    ([(K.NOTIFICATION_KIND_DIGEST, [WEBHOOK], False)], None, (), ["preferences.kinds[0].channels[0]"]),
    ([(K.NOTIFICATION_KIND_DIGEST, [EMAIL, EMAIL], False)], None, (), ["preferences.kinds[0].channels[1]"]),
    ([(K.NOTIFICATION_KIND_DIGEST, [EMAIL], False)] * 2, None, (), ["preferences.kinds[1].kind"]),
    ([(K.NOTIFICATION_KIND_APPROVAL_OVERDUE, [EMAIL], True)], None, (), ["preferences.kinds[0].digest"]),
    ([], ("25:00", "07:00"), (), ["preferences.quiet_hours.start"]),
    ([], ("7:00", "x" * 10_000), (), ["preferences.quiet_hours.start", "preferences.quiet_hours.end"]),
    ([], ("22:00", ""), (), ["preferences.quiet_hours.end"]),
    ([], ("22:00", "22:00"), (), ["preferences.quiet_hours.end"]),
    ([], None, ["kinds", "time_zone"], ["update_mask.paths[1]"]),
    ([], None, ["kinds", "kinds"], ["update_mask.paths"]),
])
def test_bad_preferences_are_refused_with_every_problem_named(notify_api, notify_db, entries, quiet, paths, fields):
    client = notify_api("ann")
    expect(lambda r: update(client, *entries, quiet=quiet, paths=paths), None, grpc.StatusCode.INVALID_ARGUMENT,
           *fields)
    assert notify_db.preferences.find_one({"_id": "ann"}) is None


def test_no_preferences_message_or_another_persons_id_is_refused(notify_api):
    client = notify_api("ann")
    expect(client.UpdatePreferences, K.UpdatePreferencesRequest(), grpc.StatusCode.INVALID_ARGUMENT, "preferences")
    expect(client.UpdatePreferences, K.UpdatePreferencesRequest(preferences=K.Preferences(person_id="bob")),
           grpc.StatusCode.INVALID_ARGUMENT, "preferences.person_id")


def test_choosing_email_again_undoes_a_one_click_unsubscribe(notify_api, notify_db):
    notify_db.preferences.insert_one({"_id": "ann", "unsubscribed": [kinds.DIGEST, kinds.ATTENTION]})
    client = notify_api("ann")
    assert by_kind(client.GetPreferences(K.GetPreferencesRequest()))[K.NOTIFICATION_KIND_DIGEST] == ([], False)
    answer = update(client, (K.NOTIFICATION_KIND_DIGEST, [EMAIL], False))
    assert by_kind(answer)[K.NOTIFICATION_KIND_DIGEST] == ([EMAIL], False)
    assert by_kind(answer)[K.NOTIFICATION_KIND_ATTENTION] == ([INBOX], False)  # still unsubscribed from its email
    assert notify_db.preferences.find_one({"_id": "ann"})["unsubscribed"] == [kinds.ATTENTION]
