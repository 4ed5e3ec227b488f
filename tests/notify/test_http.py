"""notify-api's HTTP side over real HTTP: one-click unsubscribe (RFC 8058) and what other requests get."""

import threading
import urllib.error
import urllib.request

from services.notify import kinds, unsubscribe
from v2mom.v1 import notify_pb2

SECRET = unsubscribe.secret_from_env()


def call(url: str, method: str = "GET", body: bytes | None = None, content_type: str | None = None):
    """(status, body text, headers) of one real HTTP request."""
    request = urllib.request.Request(url, data=body, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(), response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), error.headers


def link(base: str, person: str, kind: str) -> str:
    return unsubscribe.unsubscribe_url(base, unsubscribe.make_token(SECRET, person, kind))


ONE_CLICK = b"List-Unsubscribe=One-Click"
FORM = "application/x-www-form-urlencoded"


def test_get_shows_a_confirmation_form_and_changes_nothing(notify_api, notify_db):
    url = link(notify_api.http_url, "ann", kinds.DIGEST)
    status, page, headers = call(url)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert '<form method="post"' in page and 'name="List-Unsubscribe" value="One-Click"' in page
    assert "digest notifications" in page
    assert notify_db.preferences.find_one({"_id": "ann"}) is None


def test_post_turns_off_email_for_exactly_that_kind_idempotently(notify_api, notify_db):
    notify_db.preferences.insert_one({"_id": "ann", "kinds": {kinds.ATTENTION: {"channels": [kinds.INBOX, kinds.EMAIL],
                                                                                 "digest": False}}})
    url = link(notify_api.http_url, "ann", kinds.CHECKIN_REMINDER)
    for _ in range(2):
        status, page, _ = call(url, "POST", ONE_CLICK, FORM)
        assert status == 200 and "no longer get checkin reminder notifications by email" in page
    stored = notify_db.preferences.find_one({"_id": "ann"})
    assert stored["unsubscribed"] == [kinds.CHECKIN_REMINDER]
    assert kinds.channels_for(stored, kinds.CHECKIN_REMINDER) == (kinds.INBOX,)
    assert kinds.channels_for(stored, kinds.ATTENTION) == (kinds.INBOX, kinds.EMAIL)
    shown = notify_api("ann").GetPreferences(notify_pb2.GetPreferencesRequest())
    channels = {p.kind: list(p.channels) for p in shown.kinds}
    assert channels[notify_pb2.NOTIFICATION_KIND_CHECKIN_REMINDER] == [notify_pb2.CHANNEL_INBOX]
    assert channels[notify_pb2.NOTIFICATION_KIND_DIGEST] == [notify_pb2.CHANNEL_EMAIL]
    assert notify_db.preferences.find_one({"_id": "bob"}) is None


def test_the_form_as_multipart_works_too(notify_api, notify_db):
    boundary = "b0undary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n'
            f"--{boundary}--\r\n").encode()
    status, _, _ = call(link(notify_api.http_url, "cy", kinds.DIGEST), "POST", body,
                        f"multipart/form-data; boundary={boundary}")
    assert status == 200 and notify_db.preferences.find_one({"_id": "cy"})["unsubscribed"] == [kinds.DIGEST]


def test_forged_altered_or_missing_tokens_are_400_and_change_nothing(notify_api, notify_db):
    base = notify_api.http_url
    forged = unsubscribe.unsubscribe_url(base, unsubscribe.make_token("not-our-secret", "ann", kinds.DIGEST))
    good = unsubscribe.make_token(SECRET, "ann", kinds.DIGEST)
    payload = good.split(".")[0]
    widened = unsubscribe.unsubscribe_url(base, unsubscribe.make_token(SECRET, "ann", kinds.DIGEST)[:-2] + "AA")
    for url in (forged, widened, f"{base}/unsubscribe", f"{base}/unsubscribe?token=", f"{base}/unsubscribe?token=a.b",
                f"{base}/unsubscribe?token={payload}", f"{base}/unsubscribe?token=" + "x" * 5000):
        for method in ("GET", "POST"):
            status, text, headers = call(url, method, ONE_CLICK if method == "POST" else None, FORM)
            assert status == 400, (url[:80], method, status)
            assert headers["Content-Type"].startswith("text/plain") and "not valid" in text
    assert notify_db.preferences.count_documents({}) == 0


def test_post_without_the_one_click_body_is_refused(notify_api, notify_db):
    url = link(notify_api.http_url, "ann", kinds.DIGEST)
    for body in (None, b"List-Unsubscribe=Yes", b"x" * 10_000):
        status, _, _ = call(url, "POST", body, FORM)
        assert status == 400
    assert notify_db.preferences.count_documents({}) == 0


def test_other_paths_and_methods(notify_api):
    base = notify_api.http_url
    assert call(f"{base}/")[0] == 404
    assert call(f"{base}/unsubscribe/../admin")[0] == 404
    status, _, headers = call(link(base, "ann", kinds.DIGEST), "PUT", b"x")
    assert status == 405 and "POST" in headers["Allow"]
    assert call(f"{base}/metrics", "POST", b"x")[0] == 405
    assert call(f"{base}/metrics", "DELETE")[0] == 405


def test_many_requests_at_once_are_all_answered(notify_api):
    url = f"{notify_api.http_url}/metrics"
    statuses = []

    def fetch():
        statuses.append(call(url)[0])

    threads = [threading.Thread(target=fetch) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [200] * 30
