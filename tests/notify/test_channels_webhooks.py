"""Webhooks against real HTTP receivers on 127.0.0.1: Standard Webhooks signatures checked with the independent
`standardwebhooks` package (rotation included), Slack and Teams shapes, what each answer means, timeouts, a
receiver that never answers not holding up others, and targets checked at send time."""

import json
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import quote

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from services.notify import kinds
from services.notify.channels import Message, PermanentFailure, TemporaryFailure
from services.notify.channels.secrets import is_valid_secret, mask, new_secret
from services.notify.channels.webhooks import SLACK, STANDARD, TEAMS, send_webhook
from tests.support.processes import ROOT, free_port
from tests.support.sinks import dripping_server, silent_server, tls_files, webhook_sink, webhook_sink_process

TIMEOUT = 5.0


def message(**changes) -> Message:
    fields = dict(
        delivery_id="dlv-7f3a", notification_id="ntf-9", kind=kinds.ATTENTION, recipient_id="p-ann",
        recipient_name="Ann", recipient_email="ann@example.com", title="Revenue measure is off track",
        body="New ARR is at 41% with 20% of the cycle left.\nSee <the plan> & act.",
        link="https://portal.example.com/v2moms/v-1", facts={"v2mom_id": "v-1", "item_id": "m-3"},
        created_at="2026-03-02T09:00:00Z",
    )
    return Message(**(fields | changes))


def subscription(url: str, form: str = STANDARD, **changes) -> dict:
    return {"_id": "sub-1", "url": url, "format": form, "secret": new_secret(), **changes}


def verify(secret: str, request: dict) -> dict:
    """What the receiver's side of the spec says about a request (raises WebhookVerificationError if forged)."""
    return Webhook(secret).verify(request["body"], request["headers"])


def send(sub: dict, msg: Message | None = None, **options):
    return send_webhook(sub, msg or message(), options.pop("timeout", TIMEOUT), options.pop("allow_private", True),
                        **options)


# --- Standard Webhooks ----------------------------------------------------------------------------------


def test_a_standard_webhook_verifies_with_an_independent_implementation():
    with webhook_sink() as sink:
        sub = subscription(sink.url("/hooks/v2mom"))
        assert send(sub) == 200
        [request] = sink.requests
    payload = verify(sub["secret"], request)
    assert request["path"] == "/hooks/v2mom"
    assert request["headers"]["webhook-id"] == "dlv-7f3a"
    assert request["headers"]["Content-Type"] == "application/json"
    assert abs(int(request["headers"]["webhook-timestamp"]) - time.time()) < 60
    assert payload["type"] == kinds.ATTENTION and payload["timestamp"] == "2026-03-02T09:00:00Z"
    assert payload["data"]["title"] == "Revenue measure is off track"
    assert payload["data"]["facts"] == {"v2mom_id": "v-1", "item_id": "m-3"}
    with pytest.raises(WebhookVerificationError):
        verify(new_secret(), request)
    with pytest.raises(WebhookVerificationError):
        verify(sub["secret"], request | {"body": request["body"].replace("41%", "91%")})


def test_retries_keep_the_webhook_id_and_sign_their_own_timestamp():
    now = datetime.now(UTC)
    with webhook_sink() as sink:
        sub = subscription(sink.url())
        send(sub, now=now - timedelta(seconds=90))
        send(sub, now=now)
        first, second = sink.requests
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"] == "dlv-7f3a"
    assert int(second["headers"]["webhook-timestamp"]) - int(first["headers"]["webhook-timestamp"]) == 90
    assert verify(sub["secret"], first) == verify(sub["secret"], second)


def test_during_a_rollover_both_secrets_sign_and_each_signature_verifies_on_its_own():
    old, new = new_secret(), new_secret()
    now = datetime.now(UTC)
    rolling = {"secret": new, "previous_secret": old, "previous_secret_expires_at": now + timedelta(hours=24)}
    with webhook_sink() as sink:
        send(subscription(sink.url(), **rolling), now=now)
        send(subscription(sink.url(), **rolling | {"previous_secret_expires_at": now - timedelta(seconds=1)}), now=now)
        during, after = sink.requests
    signatures = during["headers"]["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(signature.startswith("v1,") for signature in signatures)
    for secret, signature in zip((new, old), signatures):
        alone = during | {"headers": during["headers"] | {"webhook-signature": signature}}
        assert verify(secret, alone)["type"] == kinds.ATTENTION
    # A receiver that still knows only the old secret, and one that already has the new one, both accept it.
    assert verify(old, during) == verify(new, during)
    assert len(after["headers"]["webhook-signature"].split(" ")) == 1
    assert verify(new, after)
    with pytest.raises(WebhookVerificationError):
        verify(old, after)


def test_secrets_are_whsec_base64_and_masked_for_display():
    first, second = new_secret(), new_secret()
    assert first != second and first.startswith("whsec_") and is_valid_secret(first)
    assert Webhook(first)  # the independent implementation reads it as a key
    assert not any(is_valid_secret(bad) for bad in ("", "whsec_", "whsec_not base64!", "sk_" + first[6:],
                                                    "whsec_" + "QUFB" * 2))  # 6 bytes: too short to trust
    assert mask(first).startswith("whsec_") and first[10:] not in mask(first) and len(mask(first)) < 12


# --- Slack and Teams ------------------------------------------------------------------------------------


def test_slack_gets_block_kit_with_its_markup_escaped():
    with webhook_sink() as sink:
        send(subscription(sink.url("/services/T0/B0/x"), SLACK, secret=""))
        [request] = sink.requests
    payload = json.loads(request["body"])
    assert "webhook-signature" not in request["headers"]
    assert payload["text"] == "Revenue measure is off track"
    assert [block["type"] for block in payload["blocks"]] == ["header", "section", "actions"]
    assert payload["blocks"][0]["text"] == {"type": "plain_text", "text": "Revenue measure is off track"}
    assert "See &lt;the plan&gt; &amp; act." in payload["blocks"][1]["text"]["text"]
    assert payload["blocks"][2]["elements"][0]["url"] == "https://portal.example.com/v2moms/v-1"


def test_teams_gets_an_adaptive_card_in_the_workflows_envelope():
    with webhook_sink() as sink:
        send(subscription(sink.url("/workflows/abc"), TEAMS, secret=""))
        [request] = sink.requests
    payload = json.loads(request["body"])
    assert payload["type"] == "message"
    [attachment] = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert [block["text"] for block in card["body"]] == [message().title, message().body]
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open in V2MOM",
                                "url": "https://portal.example.com/v2moms/v-1"}]
    assert "@type" not in payload and "themeColor" not in payload, "not the retired MessageCard"


# --- what an answer means -------------------------------------------------------------------------------


def test_a_standard_subscription_without_a_usable_secret_sends_nothing():
    with webhook_sink() as sink:
        for secret in ("", "whsec_short", "not-a-secret"):
            with pytest.raises(PermanentFailure, match="secret|sign"):
                send(subscription(sink.url(), secret=secret))
        assert sink.requests == []


def test_410_gone_is_permanent_and_says_so():
    with webhook_sink() as sink, pytest.raises(PermanentFailure) as failure:
        send(subscription(sink.url("/status/410")))
    assert failure.value.gone and "410" in str(failure.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 301, 302])
def test_other_client_errors_and_redirects_are_permanent_but_not_gone(status):
    with webhook_sink() as sink:
        with pytest.raises(PermanentFailure) as failure:
            send(subscription(sink.url(f"/status/{status}")))
        assert len(sink.requests) == 1, "a redirect is not followed"
    assert not failure.value.gone


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504])
def test_server_errors_and_request_timeouts_are_temporary(status):
    with webhook_sink() as sink, pytest.raises(TemporaryFailure) as failure:
        send(subscription(sink.url(f"/status/{status}")))
    assert failure.value.retry_after is None


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_in_seconds_is_passed_on(status):
    with webhook_sink() as sink, pytest.raises(TemporaryFailure) as failure:
        send(subscription(sink.url(f"/status/{status}?retry_after=120")))
    assert failure.value.retry_after == 120


def test_retry_after_as_an_http_date_is_passed_on_as_seconds_from_now():
    now = datetime.now(UTC).replace(microsecond=0)
    when = quote(format_datetime(now + timedelta(seconds=90), usegmt=True))
    with webhook_sink() as sink, pytest.raises(TemporaryFailure) as failure:
        send(subscription(sink.url(f"/status/429?retry_after={when}")), now=now)
    assert failure.value.retry_after == 90


def test_no_receiver_listening_is_temporary():
    with pytest.raises(TemporaryFailure):
        send(subscription(f"http://127.0.0.1:{free_port()}/hook"))


# --- receivers that never answer ------------------------------------------------------------------------


def test_a_receiver_that_never_answers_fails_within_the_timeout_and_holds_up_no_other_delivery():
    outcomes = {}

    def deliver(name, sub):
        started = time.monotonic()
        try:
            outcomes[name] = send(sub, timeout=2.0)
        except TemporaryFailure as failure:
            outcomes[name] = failure
        outcomes[name + "_seconds"] = time.monotonic() - started

    with silent_server() as (silent_port, connections), webhook_sink() as good:
        stuck = threading.Thread(target=deliver, args=("stuck", subscription(f"http://127.0.0.1:{silent_port}/hook")))
        stuck.start()
        time.sleep(0.2)  # the stuck delivery is connected and waiting when the good one starts
        fine = threading.Thread(target=deliver, args=("fine", subscription(good.url())))
        fine.start()
        fine.join(timeout=5)
        assert outcomes.get("fine") == 200 and outcomes["fine_seconds"] < 1.0
        assert "stuck" not in outcomes, "the stuck delivery is still waiting while the good one is done"
        stuck.join(timeout=10)
        assert connections
    assert isinstance(outcomes["stuck"], TemporaryFailure) and 1.9 <= outcomes["stuck_seconds"] < 4.0


def test_a_receiver_that_answers_one_byte_at_a_time_is_cut_off_at_the_timeout():
    with dripping_server(every=0.2) as (port, _):
        started = time.monotonic()
        with pytest.raises(TemporaryFailure, match="within 1s"):
            send(subscription(f"http://127.0.0.1:{port}/hook"), timeout=1.0)
    assert time.monotonic() - started < 2.0


GREEN_SENDS = textwrap.dedent("""
    import eventlet
    eventlet.monkey_patch()
    import json, sys, time
    from services.notify.channels import Message, TemporaryFailure
    from services.notify.channels.secrets import new_secret
    from services.notify.channels.webhooks import send_webhook

    message = Message("dlv-1", "n-1", "NOTIFICATION_KIND_ATTENTION", "p", "P", "p@example.com", "t", "b")
    times = {}

    def deliver(name, port):
        started = time.monotonic()
        sub = {"url": f"http://127.0.0.1:{port}/hook", "format": "WEBHOOK_FORMAT_STANDARD", "secret": new_secret()}
        try:
            times[name] = [str(send_webhook(sub, message, 2.0, True))]
        except TemporaryFailure as failure:
            times[name] = [type(failure).__name__]
        times[name].append(time.monotonic() - started)

    stuck = eventlet.spawn(deliver, "stuck", int(sys.argv[1]))
    eventlet.sleep(0.2)
    fine = eventlet.spawn(deliver, "fine", int(sys.argv[2]))
    fine.wait()
    times["stuck_done_when_fine_done"] = "stuck" in times
    stuck.wait()
    print(json.dumps(times))
""")


def test_in_an_eventlet_worker_a_silent_receiver_holds_up_no_other_green_thread():
    """notify-worker runs the same plain code after eventlet.monkey_patch(): the waits must be green ones."""
    with silent_server() as (silent_port, _), webhook_sink() as good:
        done = subprocess.run([sys.executable, "-c", GREEN_SENDS, str(silent_port), str(good.port)], check=False,
                              cwd=ROOT, capture_output=True, text=True, timeout=30,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    times = json.loads(done.stdout.strip().splitlines()[-1])
    assert times["fine"][0] == "200" and times["fine"][1] < 1.0
    assert times["stuck_done_when_fine_done"] is False
    assert times["stuck"][0] == "TemporaryFailure" and 1.9 <= times["stuck"][1] < 4.0


# --- targets at send time -------------------------------------------------------------------------------


def test_a_name_resolving_to_loopback_is_refused_at_send_time_unless_allowed():
    with webhook_sink() as sink:
        sub = subscription(f"http://localhost:{sink.port}/hook")
        with pytest.raises(PermanentFailure, match="unsafe target"):
            send(sub, allow_private=False)
        with pytest.raises(PermanentFailure, match="https"):
            send(subscription(sink.url()), allow_private=False)
        assert sink.requests == []


def rebinding_dns(first: str, then: str):
    """An attacker's DNS: one answer for the first question, another for every later one."""

    def resolver(host, port, type=0):
        resolver.calls += 1
        address = first if resolver.calls == 1 else then
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    resolver.calls = 0
    return resolver


def test_the_send_connects_to_the_address_it_checked_and_names_the_host_only_in_host():
    dns = rebinding_dns(first="127.0.0.1", then="10.255.255.1")
    with webhook_sink() as sink:
        assert send(subscription(f"http://hooks.rebind.test:{sink.port}/hook"), resolver=dns) == 200
        [request] = sink.requests
    assert dns.calls == 1, "one look-up: the address checked is the address used"
    assert request["headers"]["Host"] == f"hooks.rebind.test:{sink.port}"


def test_https_checks_the_certificate_against_the_host_name_not_the_address(tmp_path):
    ca, chain, key = tls_files(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(chain, key)
    trusting = ssl.create_default_context(cafile=str(ca))
    with webhook_sink(server_tls, host_name="localhost") as sink:
        sub = subscription(sink.url("/secure"))
        assert send(sub, resolver=rebinding_dns("127.0.0.1", "127.0.0.1"), ssl_context=trusting) == 200
        [request] = sink.requests
        assert verify(sub["secret"], request)
        with pytest.raises(TemporaryFailure, match="SSL|certificate"):  # the certificate names localhost only
            send(subscription(f"https://other.test:{sink.port}/secure"),
                 resolver=rebinding_dns("127.0.0.1", "127.0.0.1"), ssl_context=trusting)
        with pytest.raises(TemporaryFailure):  # the system's CAs do not know the test CA
            send(sub, resolver=rebinding_dns("127.0.0.1", "127.0.0.1"))


def test_the_dev_sink_process_takes_and_keeps_webhooks(tmp_path):
    with webhook_sink_process(tmp_path) as sink:
        sub = subscription(sink.url("/dev"))
        assert send(sub) == 200
        with pytest.raises(PermanentFailure):
            send(sub | {"url": sink.url("/status/410")})
        kept = sink.read()
    assert [request["path"] for request in kept] == ["/dev", "/status/410"]
    assert verify(sub["secret"], kept[0])["data"]["kind"] == kinds.ATTENTION
