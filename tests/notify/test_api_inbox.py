"""notify-api's inbox over real gRPC: ListNotifications, MarkRead, GetUnreadCount.

Notifications are inserted straight into the ``notifications`` collection in
the shape store.py documents, as notify-worker writes them.
"""

from datetime import UTC, datetime, timedelta

import grpc
import pytest

from services.goals.directory import Directory
from services.platform.api.auth import bearer_metadata, mint_dev_token
from tests.support.grpc_errors import expect
from v2mom.v1 import notify_pb2, notify_pb2_grpc

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def notification(n: int, recipient: str, read: bool = False, created_at: datetime | None = None) -> dict:
    created = created_at or T0 + timedelta(minutes=n)
    return {
        "_id": f"ntf_{recipient}_{n:04d}", "recipient_id": recipient, "kind": "NOTIFICATION_KIND_CHECKIN_REMINDER",
        "title": f"Check in on item {n}", "body": "It has been a week.", "link": f"http://portal/v2moms/v{n}",
        "v2mom_id": f"v{n}", "item_id": f"m{n}", "cause_event_id": f"evt_{n}", "created_at": created,
        "read_at": created + timedelta(hours=1) if read else None, "facts": {},
    }


def test_lists_own_inbox_newest_first_with_every_field(notify_api, notify_db):
    notify_db.notifications.insert_many([notification(1, "ann"), notification(2, "ann", read=True),
                                         notification(3, "bob")])
    page = notify_api("ann").ListNotifications(notify_pb2.ListNotificationsRequest())
    assert [n.id for n in page.notifications] == ["ntf_ann_0002", "ntf_ann_0001"]
    assert page.next_page_token == ""
    newest = page.notifications[0]
    assert newest.recipient_id == "ann" and newest.kind == notify_pb2.NOTIFICATION_KIND_CHECKIN_REMINDER
    assert (newest.title, newest.v2mom_id, newest.item_id) == ("Check in on item 2", "v2", "m2")
    assert newest.create_time.ToDatetime(tzinfo=UTC) == T0 + timedelta(minutes=2)
    assert newest.HasField("read_time") and not page.notifications[1].HasField("read_time")


def test_pages_through_many_notifications_without_gaps_or_repeats(notify_api, notify_db):
    # 130 notifications, ten of them sharing one creation time: the id breaks the tie.
    docs = [notification(n, "ann", read=n % 3 == 0) for n in range(120)]
    docs += [notification(200 + n, "ann", created_at=T0 + timedelta(minutes=50)) for n in range(10)]
    notify_db.notifications.insert_many(docs + [notification(n, "bob") for n in range(5)])
    client = notify_api("ann")
    seen, token, pages = [], "", 0
    while True:
        page = client.ListNotifications(notify_pb2.ListNotificationsRequest(page_size=17, page_token=token))
        seen += [(n.create_time.ToDatetime(), n.id) for n in page.notifications]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 8 and len(seen) == 130 and len(set(seen)) == 130
    assert seen == sorted(seen, reverse=True)

    unread, token = [], ""
    while True:
        page = client.ListNotifications(notify_pb2.ListNotificationsRequest(unread_only=True, page_size=25,
                                                                            page_token=token))
        unread += [n.id for n in page.notifications]
        assert all(not n.HasField("read_time") for n in page.notifications)
        token = page.next_page_token
        if not token:
            break
    assert len(unread) == 130 - 40 == len(set(unread))


def test_page_tokens_work_only_for_the_list_and_filters_they_came_from(notify_api, notify_db):
    notify_db.notifications.insert_many([notification(n, "ann") for n in range(5)])
    client = notify_api("ann")
    token = client.ListNotifications(notify_pb2.ListNotificationsRequest(page_size=2)).next_page_token
    assert token
    call = client.ListNotifications
    expect(call, notify_pb2.ListNotificationsRequest(page_token=token, unread_only=True),
           grpc.StatusCode.INVALID_ARGUMENT, "page_token")
    expect(notify_api("bob").ListNotifications, notify_pb2.ListNotificationsRequest(page_token=token),
           grpc.StatusCode.INVALID_ARGUMENT, "page_token")
    for bad in ("garbage", "x" * 5000, "eyJmIjoxfQ==", token[:-4]):
        expect(call, notify_pb2.ListNotificationsRequest(page_token=bad), grpc.StatusCode.INVALID_ARGUMENT,
               "page_token")
    for size in (-1, 201):
        expect(call, notify_pb2.ListNotificationsRequest(page_size=size), grpc.StatusCode.INVALID_ARGUMENT,
               "page_size")


def test_mark_read_marks_own_ids_and_replays_change_nothing(notify_api, notify_db):
    notify_db.notifications.insert_many([notification(n, "ann") for n in range(4)])
    client = notify_api("ann")
    ids = ["ntf_ann_0000", "ntf_ann_0001"]
    first = client.MarkRead(notify_pb2.MarkReadRequest(notification_ids=ids))
    assert (first.marked, first.unread_count) == (2, 2)
    read_at = notify_db.notifications.find_one({"_id": "ntf_ann_0000"})["read_at"]
    again = client.MarkRead(notify_pb2.MarkReadRequest(notification_ids=ids))
    assert (again.marked, again.unread_count) == (0, 2)
    assert notify_db.notifications.find_one({"_id": "ntf_ann_0000"})["read_at"] == read_at
    assert client.GetUnreadCount(notify_pb2.GetUnreadCountRequest()).unread_count == 2


def test_mark_read_all_marks_the_whole_inbox_and_nobody_elses(notify_api, notify_db):
    notify_db.notifications.insert_many([notification(n, "ann") for n in range(3)] + [notification(9, "bob")])
    answer = notify_api("ann").MarkRead(notify_pb2.MarkReadRequest(all=True))
    assert (answer.marked, answer.unread_count) == (3, 0)
    assert notify_api("ann").MarkRead(notify_pb2.MarkReadRequest(all=True)).marked == 0
    assert notify_api("bob").GetUnreadCount(notify_pb2.GetUnreadCountRequest()).unread_count == 1


def test_another_persons_or_an_unknown_id_is_not_found_and_nothing_is_marked(notify_api, notify_db):
    notify_db.notifications.insert_many([notification(1, "ann"), notification(2, "bob")])
    client = notify_api("ann")
    for ids in (["ntf_ann_0001", "ntf_bob_0002"], ["ntf_ann_0001", "ntf_nobody"]):
        error = expect(client.MarkRead, notify_pb2.MarkReadRequest(notification_ids=ids), grpc.StatusCode.NOT_FOUND)
        assert ids[1] in error.details()
    assert notify_db.notifications.count_documents({"read_at": None}) == 2


@pytest.mark.parametrize("request_, field", [
    (notify_pb2.MarkReadRequest(), "notification_ids"),
    (notify_pb2.MarkReadRequest(notification_ids=["a"], all=True), "notification_ids"),
    (notify_pb2.MarkReadRequest(notification_ids=[f"n{i}" for i in range(201)]), "notification_ids"),
    (notify_pb2.MarkReadRequest(notification_ids=["a", "a"]), "notification_ids"),
    (notify_pb2.MarkReadRequest(notification_ids=["x" * 100_000]), "notification_ids[0]"),
    (notify_pb2.MarkReadRequest(notification_ids=["bad id\n"]), "notification_ids[0]"),
])
def test_mark_read_refuses_bad_input(notify_api, request_, field):
    expect(notify_api("ann").MarkRead, request_, grpc.StatusCode.INVALID_ARGUMENT, field)


def test_every_rpc_needs_a_token(notify_api):
    anonymous = notify_api(None)
    for rpc, request in [("ListNotifications", notify_pb2.ListNotificationsRequest()),
                         ("MarkRead", notify_pb2.MarkReadRequest(all=True)),
                         ("GetUnreadCount", notify_pb2.GetUnreadCountRequest()),
                         ("GetPreferences", notify_pb2.GetPreferencesRequest()),
                         ("UpdatePreferences", notify_pb2.UpdatePreferencesRequest()),
                         ("ListDeliveries", notify_pb2.ListDeliveriesRequest()),
                         ("CreateSubscription", notify_pb2.CreateSubscriptionRequest()),
                         ("ListSubscriptions", notify_pb2.ListSubscriptionsRequest()),
                         ("DeleteSubscription", notify_pb2.DeleteSubscriptionRequest(id="sub_1")),
                         ("RotateSubscriptionSecret", notify_pb2.RotateSubscriptionSecretRequest(id="sub_1"))]:
        expect(getattr(anonymous, rpc), request, grpc.StatusCode.UNAUTHENTICATED)


def test_someone_the_directory_does_not_know_or_has_let_go_is_refused(notify_api, notify_settings, db):
    stranger = bearer_metadata(mint_dev_token(notify_settings.auth, "ghost", roles=["admin"]))
    with grpc.insecure_channel(f"127.0.0.1:{notify_api.port}") as channel:
        refused = expect(lambda r: notify_pb2_grpc.NotifyServiceStub(channel).ListDeliveries(r, metadata=stranger,
                                                                                              timeout=10),
                         notify_pb2.ListDeliveriesRequest(), grpc.StatusCode.UNAUTHENTICATED)
    assert "'ghost' is not a person in the org directory" in refused.details()
    notify_api("leo")  # in the directory...
    Directory(db, cache_seconds=0).upsert_person({"_id": "leo", "display_name": "Leo", "active": False})  # ...and gone
    refused = expect(notify_api("leo").GetUnreadCount, notify_pb2.GetUnreadCountRequest(), grpc.StatusCode.PERMISSION_DENIED)
    assert "leo is no longer active in the directory" in refused.details()


def test_a_body_that_is_not_a_request_message_is_invalid_argument(notify_api, notify_settings):
    notify_api("ann")  # a person of goals' directory
    metadata = bearer_metadata(mint_dev_token(notify_settings.auth, "ann"))
    with grpc.insecure_channel(f"127.0.0.1:{notify_api.port}") as channel:
        raw = channel.unary_unary("/v2mom.v1.NotifyService/MarkRead")  # bytes as they are
        # notification_ids (field 1) holding bytes that are not UTF-8
        expect(lambda body: raw(body, metadata=metadata, timeout=10), b"\x0a\x05\xff\xfe\xfd\xfc\xfb",
               grpc.StatusCode.INVALID_ARGUMENT, "request")
