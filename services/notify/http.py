"""notify-api's HTTP side (NOTIFY_HTTP_ADDR, default 127.0.0.1:9101): ``/metrics`` and one-click ``/unsubscribe``.

- ``GET /metrics``: the Prometheus exposition of notify's collectors
  (collector.py), content negotiated as prometheus_client does.
- ``GET /unsubscribe?token=...``: a small confirmation page with a form. It
  changes nothing: mail scanners and link previews follow links.
- ``POST /unsubscribe?token=...`` with ``List-Unsubscribe=One-Click`` (RFC
  8058; the page's form sends the same): turns off email for exactly the kind
  and person the signed token names (unsubscribe.py), idempotently.

A bad token is 400 with a plain message; other paths 404, other methods 405.
Requests are served by a bounded pool of threads: when every one is busy the
accept loop waits and the kernel's backlog holds new connections, so a flood
cannot start unbounded threads.
"""

import html
import logging
import re
from collections.abc import Callable
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry

from services.platform.api import wsgi

from . import unsubscribe

log = logging.getLogger(__name__)

MAX_BODY = 4096
MAX_TOKEN = 512
HTTP_THREADS = 8
ONE_CLICK = ("List-Unsubscribe", "One-Click")
# A multipart/form-data body (RFC 8058 allows it) carries the pair as a part named List-Unsubscribe.
_MULTIPART_ONE_CLICK = re.compile(rb'name="?List-Unsubscribe"?\r?\n(?:[^\r\n]+\r?\n)*\r?\nOne-Click\r?\n')


def make_app(registry: CollectorRegistry, secret: str, unsubscribe_kind: Callable[[str, str], bool]):
    """The WSGI app; ``unsubscribe_kind(person_id, kind)`` turns email off for one kind (service.py)."""

    def app(environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        try:
            if path == "/metrics":
                return wsgi.metrics(registry, environ, start_response)
            if path == "/unsubscribe":
                return _unsubscribe(environ, method, secret, unsubscribe_kind, start_response)
            return wsgi.plain(start_response, "404 Not Found", "not found\n")
        except Exception:  # a bug or the store down: no traceback to the client
            log.exception("http request failed", extra={"path": path, "method": method})
            return wsgi.plain(start_response, "500 Internal Server Error", "internal error; it has been logged\n")

    return app


def _unsubscribe(environ, method, secret, unsubscribe_kind, start_response):
    if method not in ("GET", "POST"):
        return wsgi.plain(start_response, "405 Method Not Allowed", "use GET or POST\n", [("Allow", "GET, POST")])
    token = (parse_qs(environ.get("QUERY_STRING", "")).get("token") or [""])[0]
    try:
        if not token or len(token) > MAX_TOKEN:
            raise unsubscribe.BadToken("missing or too long")
        person_id, kind = unsubscribe.read_token(secret, token)
    except unsubscribe.BadToken:
        return wsgi.plain(start_response, "400 Bad Request", "This unsubscribe link is not valid. Change what you get "
                                                             "in your notification preferences instead.\n")
    what = _kind_text(kind)
    if method == "GET":
        return _html(start_response, "200 OK", _confirmation_page(token, what))
    if not _is_one_click(environ):
        return wsgi.plain(start_response, "400 Bad Request", "expected the form field List-Unsubscribe=One-Click\n")
    unsubscribe_kind(person_id, kind)
    return _html(start_response, "200 OK", _page("Unsubscribed", f"<p>You will no longer get {what} by email.</p>"))


def _is_one_click(environ) -> bool:
    body = _read_body(environ)
    if body is None:
        return False
    if "multipart/form-data" in environ.get("CONTENT_TYPE", ""):
        return bool(_MULTIPART_ONE_CLICK.search(body))
    fields = parse_qs(body.decode("utf-8", "replace"))
    return fields.get(ONE_CLICK[0]) == [ONE_CLICK[1]]


def _read_body(environ) -> bytes | None:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if not 0 < length <= MAX_BODY:
        return None
    return environ["wsgi.input"].read(length)


def _kind_text(kind: str) -> str:
    return kind.removeprefix("NOTIFICATION_KIND_").replace("_", " ").lower() + " notifications"


def _confirmation_page(token: str, what: str) -> str:
    action = html.escape(f"/unsubscribe?token={token}", quote=True)
    return _page("Unsubscribe", (
        f"<p>Stop getting {html.escape(what)} by email? Other notifications and your inbox are not affected.</p>"
        f'<form method="post" action="{action}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>'
    ))


def _page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">'
            f"<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n")


def _html(start_response, status: str, text: str):
    body = text.encode()
    start_response(status, [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")])
    return [body]



# --- the server --------------------------------------------------------------------------------------------


def start(addr: str, app) -> wsgi.HttpServer:
    """Serves ``app`` on ``addr`` ("host:port"; port 0 picks a free one) from a daemon thread: ``port``, and
    ``shutdown()`` (run_api's on_stop) to stop it."""
    return wsgi.start(addr, app, HTTP_THREADS, "notify")
