"""notify-api's admin RPCs over real gRPC: the delivery log and webhook subscriptions."""

import base64
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from services.notify.api import create_server
from tests.support.grpc_errors import expect
from tests.support.services import served_in_process
from v2mom.v1 import notify_pb2, notify_pb2_grpc

K = notify_pb2
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOOK = "https://hooks.example.com/services/T000/B000/XXXX"


def delivery(n: int, recipient: str, status: str = "SENT", channel: str = "CHANNEL_EMAIL") -> dict:
    created = T0 + timedelta(minutes=n // 2)  # pairs share a creation time
    return {
        "_id": f"dlv_{n:04d}", "notification_id": f"ntf_{n}", "recipient_id": recipient,
        "kind": "NOTIFICATION_KIND_APPROVAL_REQUESTED", "channel": channel, "target": f"{recipient}@example.com",
        "status": status, "tries": 2, "last_error": "421 try later" if status != "SENT" else "", "created_at": created,
        "next_try_at": created + timedelta(minutes=5), "sent_at": created + timedelta(seconds=3) if status == "SENT"
        else None, "lease_until": created, "cause_event_id": f"evt_{n}", "v2mom_id": "v1",
        "outbox": [{"id": "evt_x", "type": "notification_sent"}],
    }


def secret_of(length: int) -> str:
    return "whsec_" + base64.b64encode(bytes(range(length))).decode()


def subscription(url=HOOK, fmt=K.WEBHOOK_FORMAT_SLACK, **fields) -> K.CreateSubscriptionRequest:
    return K.CreateSubscriptionRequest(subscription=K.Subscription(url=url, format=fmt, **fields))


# --- who may call ----------------------------------------------------------------------------------------


def test_admin_rpcs_refuse_everyone_else(notify_api):
    person = notify_api("ann", roles=["manager"])
    for rpc, request in [("ListDeliveries", K.ListDeliveriesRequest()), ("CreateSubscription", subscription()),
                         ("ListSubscriptions", K.ListSubscriptionsRequest()),
                         ("DeleteSubscription", K.DeleteSubscriptionRequest(id="sub_1")),
                         ("RotateSubscriptionSecret", K.RotateSubscriptionSecretRequest(id="sub_1"))]:
        expect(getattr(person, rpc), request, grpc.StatusCode.PERMISSION_DENIED)


# --- the delivery log ------------------------------------------------------------------------------------


def test_delivery_log_newest_first_filtered_and_paged(notify_api, notify_db):
    docs = [delivery(n, "ann" if n % 2 else "bob", "PENDING" if n % 5 == 0 else "SENT",
                     "CHANNEL_WEBHOOK" if n % 7 == 0 else "CHANNEL_EMAIL") for n in range(60)]
    notify_db.deliveries.insert_many(docs)
    admin = notify_api("root", roles=["admin"])

    def everything(**filters) -> list[str]:
        ids, token = [], ""
        while True:
            page = admin.ListDeliveries(K.ListDeliveriesRequest(page_size=7, page_token=token, **filters))
            ids += [d.id for d in page.deliveries]
            token = page.next_page_token
            if not token:
                return ids

    def expected(keep) -> list[str]:
        chosen = [d for d in docs if keep(d)]
        return [d["_id"] for d in sorted(chosen, key=lambda d: (d["created_at"], d["_id"]), reverse=True)]

    assert everything() == expected(lambda d: True)
    assert everything(recipient_id="ann") == expected(lambda d: d["recipient_id"] == "ann")
    assert everything(status=K.DELIVERY_STATUS_PENDING) == expected(lambda d: d["status"] == "PENDING")
    assert everything(channel=K.CHANNEL_WEBHOOK, recipient_id="bob") == expected(
        lambda d: d["channel"] == "CHANNEL_WEBHOOK" and d["recipient_id"] == "bob")
    first = admin.ListDeliveries(K.ListDeliveriesRequest(page_size=1, status=K.DELIVERY_STATUS_PENDING)).deliveries[0]
    assert (first.id, first.status, first.channel, first.tries, first.last_error) == (
        "dlv_0055", K.DELIVERY_STATUS_PENDING, K.CHANNEL_EMAIL, 2, "421 try later")
    assert first.kind == K.NOTIFICATION_KIND_APPROVAL_REQUESTED and first.target == "ann@example.com"
    assert first.HasField("next_try_time") and not first.HasField("sent_time")


@pytest.mark.parametrize("request_, field", [
    (K.ListDeliveriesRequest(status=9), "status"),
    (K.ListDeliveriesRequest(channel=-3), "channel"),
    (K.ListDeliveriesRequest(recipient_id="x" * 70_000), "recipient_id"),
    (K.ListDeliveriesRequest(page_size=500), "page_size"),
    (K.ListDeliveriesRequest(page_token="not-a-token"), "page_token"),
])
def test_delivery_log_refuses_bad_filters(notify_api, request_, field):
    expect(notify_api("root", roles=["admin"]).ListDeliveries, request_, grpc.StatusCode.INVALID_ARGUMENT, field)


def test_a_delivery_log_token_is_refused_with_other_filters(notify_api, notify_db):
    notify_db.deliveries.insert_many([delivery(n, "ann") for n in range(3)])
    admin = notify_api("root", roles=["admin"])
    token = admin.ListDeliveries(K.ListDeliveriesRequest(page_size=1)).next_page_token
    expect(admin.ListDeliveries, K.ListDeliveriesRequest(page_token=token, recipient_id="ann"),
           grpc.StatusCode.INVALID_ARGUMENT, "page_token")


# --- subscriptions ---------------------------------------------------------------------------------------


def test_create_list_delete_with_the_secret_shown_once(notify_api, notify_db):
    admin = notify_api("root", roles=["admin"])
    standard = admin.CreateSubscription(subscription(fmt=K.WEBHOOK_FORMAT_STANDARD, org_unit_id="eng",
                                                     kinds=[K.NOTIFICATION_KIND_ATTENTION]))
    assert standard.id.startswith("sub_") and standard.org_unit_id == "eng" and standard.HasField("create_time")
    raw = base64.b64decode(standard.secret.removeprefix("whsec_"), validate=True)
    assert standard.secret.startswith("whsec_") and len(raw) == 32
    stored = notify_db.subscriptions.find_one({"_id": standard.id})
    assert stored["secret"] == standard.secret and stored["created_by"] == "root"
    assert stored["kinds"] == ["NOTIFICATION_KIND_ATTENTION"] and stored["format"] == "WEBHOOK_FORMAT_STANDARD"

    given = secret_of(24)
    mine = admin.CreateSubscription(subscription(url=HOOK + "2", fmt=K.WEBHOOK_FORMAT_STANDARD, secret=given))
    assert mine.secret == given
    slack = admin.CreateSubscription(subscription(url=HOOK + "3"))
    assert slack.secret == "" and notify_db.subscriptions.find_one({"_id": slack.id})["secret"] == ""

    listed = admin.ListSubscriptions(K.ListSubscriptionsRequest()).subscriptions
    assert [s.id for s in listed] == sorted([standard.id, mine.id, slack.id])
    shown = {s.id: s.secret for s in listed}
    assert shown[standard.id] == "whsec_…" + standard.secret[-4:] and shown[slack.id] == ""

    ids, token = [], ""
    while True:
        page = admin.ListSubscriptions(K.ListSubscriptionsRequest(page_size=2, page_token=token))
        ids += [s.id for s in page.subscriptions]
        if not (token := page.next_page_token):
            break
    assert ids == sorted(shown)

    admin.DeleteSubscription(K.DeleteSubscriptionRequest(id=mine.id))
    assert notify_db.subscriptions.find_one({"_id": mine.id}) is None
    expect(admin.DeleteSubscription, K.DeleteSubscriptionRequest(id=mine.id), grpc.StatusCode.NOT_FOUND)
    expect(admin.DeleteSubscription, K.DeleteSubscriptionRequest(id=""), grpc.StatusCode.INVALID_ARGUMENT, "id")


def test_the_same_target_twice_already_exists(notify_api):
    admin = notify_api("root", roles=["admin"])
    first = admin.CreateSubscription(subscription(org_unit_id="eng"))
    error = expect(admin.CreateSubscription, subscription(org_unit_id="eng"), grpc.StatusCode.ALREADY_EXISTS)
    assert first.id in error.details()
    admin.CreateSubscription(subscription(org_unit_id="sales"))  # another unit is another subscription


@pytest.mark.parametrize("request_, fields", [
    (K.CreateSubscriptionRequest(), ["subscription", "subscription.url", "subscription.format"]),
    (subscription(url="http://hooks.example.com/x"), ["subscription.url"]),
    (subscription(url="https://127.0.0.1/x"), ["subscription.url"]),
    (subscription(url="https://10.1.2.3:8443/x"), ["subscription.url"]),
    (subscription(url="https://user:pw@hooks.example.com/x"), ["subscription.url"]),
    (subscription(url="ftp://hooks.example.com/x"), ["subscription.url"]),
    (subscription(url="not a url"), ["subscription.url"]),
    (subscription(url="https://hooks.example.com/" + "x" * 3000), ["subscription.url"]),
    (subscription(fmt=0), ["subscription.format"]),
    (subscription(fmt=12), ["subscription.format"]),
    (subscription(kinds=[0]), ["subscription.kinds[0]"]),
    (subscription(kinds=[K.NOTIFICATION_KIND_DIGEST, K.NOTIFICATION_KIND_DIGEST]), ["subscription.kinds[1]"]),
    (subscription(org_unit_id="bad unit!"), ["subscription.org_unit_id"]),
    (subscription(secret=secret_of(32)), ["subscription.secret"]),  # Slack is not signed
    (subscription(fmt=K.WEBHOOK_FORMAT_STANDARD, secret="hunter2"), ["subscription.secret"]),
    (subscription(fmt=K.WEBHOOK_FORMAT_STANDARD, secret=secret_of(16)), ["subscription.secret"]),
    (subscription(fmt=K.WEBHOOK_FORMAT_STANDARD, secret=secret_of(65)), ["subscription.secret"]),
    (subscription(fmt=K.WEBHOOK_FORMAT_STANDARD, secret="whsec_!!notbase64!!"), ["subscription.secret"]),
    (subscription(fmt=K.WEBHOOK_FORMAT_STANDARD, secret="whsec_" + "A" * 100_000), ["subscription.secret"]),
])
def test_bad_subscriptions_are_refused(notify_api, notify_db, request_, fields):
    expect(notify_api("root", roles=["admin"]).CreateSubscription, request_, grpc.StatusCode.INVALID_ARGUMENT,
           *fields)
    assert notify_db.subscriptions.count_documents({}) == 0


def test_http_and_private_targets_only_when_allowed(notify_settings, notify_db, monkeypatch, goals_api, enroll):
    monkeypatch.setenv("NOTIFY_ALLOW_PRIVATE_WEBHOOKS", "true")
    settings = replace(notify_settings, goals_addr=f"127.0.0.1:{goals_api.port}")  # who callers are
    with served_in_process(create_server, notify_pb2_grpc.NotifyServiceStub, settings, enroll=enroll) as client_for:
        created = client_for("root", roles=["admin"]).CreateSubscription(subscription(url="http://127.0.0.1:8099/hook"))
    assert notify_db.subscriptions.find_one({"_id": created.id})["url"] == "http://127.0.0.1:8099/hook"


def test_rotation_keeps_the_old_secret_signing_for_the_overlap(notify_api, notify_db):
    admin = notify_api("root", roles=["admin"])
    sub = admin.CreateSubscription(subscription(fmt=K.WEBHOOK_FORMAT_STANDARD))
    before = datetime.now(UTC)
    rotated = admin.RotateSubscriptionSecret(K.RotateSubscriptionSecretRequest(id=sub.id))
    assert rotated.secret.startswith("whsec_") and rotated.secret != sub.secret
    expires = rotated.previous_secret_expire_time.ToDatetime(tzinfo=UTC)
    assert timedelta(hours=23, minutes=59) < expires - before < timedelta(hours=24, minutes=1)
    stored = notify_db.subscriptions.find_one({"_id": sub.id})
    assert (stored["secret"], stored["previous_secret"]) == (rotated.secret, sub.secret)

    given = secret_of(48)
    again = admin.RotateSubscriptionSecret(K.RotateSubscriptionSecretRequest(id=sub.id, new_secret=given,
                                                                             overlap_hours=720))
    assert again.secret == given
    assert again.previous_secret_expire_time.ToDatetime(tzinfo=UTC) - before > timedelta(days=29, hours=23)
    assert notify_db.subscriptions.find_one({"_id": sub.id})["previous_secret"] == rotated.secret
    listed = admin.ListSubscriptions(K.ListSubscriptionsRequest()).subscriptions[0]
    assert listed.secret == "whsec_…" + given[-4:] and listed.HasField("previous_secret_expire_time")


def test_rotation_refuses_bad_input_unknown_ids_and_unsigned_formats(notify_api):
    admin = notify_api("root", roles=["admin"])
    slack = admin.CreateSubscription(subscription())
    rotate = admin.RotateSubscriptionSecret
    expect(rotate, K.RotateSubscriptionSecretRequest(id="sub_nope"), grpc.StatusCode.NOT_FOUND)
    expect(rotate, K.RotateSubscriptionSecretRequest(id=slack.id), grpc.StatusCode.FAILED_PRECONDITION)
    expect(rotate, K.RotateSubscriptionSecretRequest(id=slack.id, overlap_hours=721), grpc.StatusCode.INVALID_ARGUMENT,
           "overlap_hours")
    expect(rotate, K.RotateSubscriptionSecretRequest(id=slack.id, overlap_hours=-1), grpc.StatusCode.INVALID_ARGUMENT,
           "overlap_hours")
    expect(rotate, K.RotateSubscriptionSecretRequest(id=slack.id, new_secret="whsec_short"),
           grpc.StatusCode.INVALID_ARGUMENT, "new_secret")
    expect(rotate, K.RotateSubscriptionSecretRequest(), grpc.StatusCode.INVALID_ARGUMENT, "id")
