"""Webhooks: one delivery POSTed to one subscription's URL, as Standard Webhooks JSON, a Slack message or a Teams card.

- ``WEBHOOK_FORMAT_STANDARD`` (https://www.standardwebhooks.com): a JSON body
  ``{"type", "timestamp", "data"}`` and the headers ``webhook-id`` (the
  delivery id: the same on every retry, so a receiver can drop repeats),
  ``webhook-timestamp`` (this try, Unix seconds) and ``webhook-signature``
  (``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``). During a secret
  rollover the previous secret signs too: two signatures, space-separated, and
  a receiver that knows either secret accepts the delivery.
- ``WEBHOOK_FORMAT_SLACK``: a Slack incoming webhook, Block Kit.
- ``WEBHOOK_FORMAT_TEAMS``: a Microsoft Teams Workflows webhook carrying an
  Adaptive Card (the retired Office 365 connectors' MessageCard is not sent).

Every send checks its target first (targets.py) and connects to the address
it checked; redirects are not followed, since a redirect could lead anywhere.
How the receiver's answer maps to what happens next is in ``outcome``.
"""

import base64
import hashlib
import hmac
import http.client
import json
import logging
import socket
import ssl
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from . import Message, PermanentFailure, TemporaryFailure, targets
from .deadline import Deadline
from .secrets import secret_key

log = logging.getLogger(__name__)

STANDARD = "WEBHOOK_FORMAT_STANDARD"
SLACK = "WEBHOOK_FORMAT_SLACK"
TEAMS = "WEBHOOK_FORMAT_TEAMS"
USER_AGENT = "v2mom-notify/1"
MAX_ANSWER_EXCERPT = 512  # of a receiver's answer, kept for last_error
SLACK_HEADER_LIMIT = 150  # characters of a Block Kit header
SLACK_TEXT_LIMIT = 3000  # characters of a Block Kit section


def send_webhook(subscription: dict, message: Message, timeout: float, allow_private: bool,
                 now: datetime | None = None, *, resolver=socket.getaddrinfo,
                 ssl_context: ssl.SSLContext | None = None) -> int:
    """POSTs the message to the subscription and returns the receiver's 2xx status.

    Raises TemporaryFailure (try again, maybe after ``retry_after``) or PermanentFailure (``gone`` on 410).
    ``resolver`` and ``ssl_context`` default to the system's; tests hand in their own.
    """
    now = now or datetime.now(UTC)
    body, headers = render(subscription, message, now)
    try:
        target = targets.check_target(subscription["url"], allow_private, resolver)
    except targets.UnsafeTarget as error:
        raise PermanentFailure(f"unsafe target: {error}") from None
    except targets.UnresolvableTarget as error:
        raise TemporaryFailure(str(error)) from None
    started = time.monotonic()
    status, answer_headers, excerpt = post(subscription["url"], target, body, headers, timeout, ssl_context)
    log.info("webhook answered", extra={
        "delivery_id": message.delivery_id, "subscription_id": subscription.get("_id"), "host": target.host,
        "status": status, "elapsed_ms": round((time.monotonic() - started) * 1000),
    })
    return outcome(status, answer_headers.get("Retry-After"), excerpt, now)


def render(subscription: dict, message: Message, now: datetime) -> tuple[bytes, dict]:
    """The body and headers of this try in the subscription's format."""
    form = subscription.get("format") or STANDARD
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if form == SLACK:
        return _json(slack_payload(message)), headers
    if form == TEAMS:
        return _json(teams_payload(message)), headers
    if form != STANDARD:
        raise PermanentFailure(f"unknown webhook format {form!r}")
    body = _json(standard_payload(message, now))
    timestamp = int(now.timestamp())
    secrets = signing_secrets(subscription, now)
    if not secrets:
        raise PermanentFailure("the subscription has no signing secret")
    try:
        signatures = [sign(secret, message.delivery_id, timestamp, body) for secret in secrets]
    except ValueError as error:
        raise PermanentFailure(f"the subscription cannot sign: {error}") from None
    headers |= {
        "webhook-id": message.delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signatures),
    }
    return body, headers


def signing_secrets(subscription: dict, now: datetime) -> list[str]:
    """The current secret, and the previous one while its rollover lasts."""
    secrets = [subscription["secret"]] if subscription.get("secret") else []
    expires = subscription.get("previous_secret_expires_at")
    if subscription.get("previous_secret") and expires is not None:
        if expires.tzinfo is None:  # a client without tz_aware reads UTC as naive
            expires = expires.replace(tzinfo=UTC)
        if expires > now:
            secrets.append(subscription["previous_secret"])
    return secrets


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def standard_payload(message: Message, now: datetime) -> dict:
    return {
        "type": message.kind,
        "timestamp": message.created_at or now.isoformat().replace("+00:00", "Z"),
        "data": {
            "notification_id": message.notification_id,
            "kind": message.kind,
            "recipient_id": message.recipient_id,
            "title": message.title,
            "body": message.body,
            "link": message.link,
            "facts": message.facts,
        },
    }


def slack_payload(message: Message) -> dict:
    """Block Kit; ``text`` is what notifications and old clients show. Slack reads &, < and > as markup."""
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(message.title, SLACK_HEADER_LIMIT)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(_slack_escape(message.body), SLACK_TEXT_LIMIT)}},
    ]
    if message.link:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open in V2MOM"}, "url": message.link},
        ]})
    return {"text": _slack_escape(message.title), "blocks": blocks}


def teams_payload(message: Message) -> dict:
    """The envelope a Teams Workflows "post to a channel when a webhook request is received" flow expects."""
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": message.title, "weight": "Bolder", "size": "Medium", "wrap": True},
            {"type": "TextBlock", "text": message.body, "wrap": True},
        ],
    }
    if message.link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open in V2MOM", "url": message.link}]
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card},
    ]}


def post(url: str, target: targets.Target, body: bytes, headers: dict, timeout: float,
         ssl_context: ssl.SSLContext | None) -> tuple[int, http.client.HTTPMessage, str]:
    """(status, headers, the start of the answer) from one POST to the checked address, all within ``timeout``."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if parts.scheme == "https":
        connection = PinnedHTTPSConnection(target, timeout, ssl_context or ssl.create_default_context())
    else:
        connection = PinnedHTTPConnection(target, timeout)
    try:
        with Deadline(timeout, lambda: connection.sock) as deadline:
            try:
                connection.request("POST", path, body=body, headers=headers)
                answer = connection.getresponse()
                excerpt = answer.read(MAX_ANSWER_EXCERPT).decode("utf-8", "replace")
            except (OSError, http.client.HTTPException) as error:
                if deadline.expired or isinstance(error, TimeoutError):
                    raise TemporaryFailure(f"no answer from {target.host} within {timeout:g}s") from None
                raise TemporaryFailure(f"{target.host}: {type(error).__name__}: {error}") from None
            # A shut-down socket reads as the end of the answer, so a cut-off "200 OK" can look whole: it is not.
            if deadline.expired:
                raise TemporaryFailure(f"no whole answer from {target.host} within {timeout:g}s")
            return answer.status, answer.headers, excerpt
    finally:
        connection.close()


class PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address the target check approved; the host name goes only into the Host header."""

    def __init__(self, target: targets.Target, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self.pinned_ip = target.resolved_ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self.pinned_ip, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class PinnedHTTPSConnection(PinnedHTTPConnection):
    """As PinnedHTTPConnection, with TLS: SNI and certificate checked against the host name, not the address."""

    default_port = http.client.HTTPS_PORT

    def __init__(self, target: targets.Target, timeout: float, context: ssl.SSLContext):
        super().__init__(target, timeout)
        self.tls_context = context

    def connect(self) -> None:
        super().connect()
        self.sock = self.tls_context.wrap_socket(self.sock, server_hostname=self.host)


def outcome(status: int, retry_after: str | None, excerpt: str, now: datetime) -> int:
    """The status when the receiver took the delivery; else the failure that says what to do next."""
    if 200 <= status < 300:
        return status
    error = f"HTTP {status}: {excerpt[:200]}".rstrip(": ")
    if status == 410:
        raise PermanentFailure(error, gone=True)
    if status in (429, 503):
        raise TemporaryFailure(error, retry_after=retry_after_seconds(retry_after, now))
    if status == 408 or status >= 500:
        raise TemporaryFailure(error)
    # 3xx (redirects are not followed) and every other 4xx: the same request will never succeed.
    raise PermanentFailure(error)


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A Retry-After header as seconds from now: delta-seconds or an HTTP-date (RFC 9110); None if absent or bad."""
    value = (value or "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _json(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
