"""goals-api's HTTP side (SCIM_HTTP_ADDR, default 127.0.0.1:8090): ``/metrics`` and ``/scim/v2``.

- ``GET /metrics``: the Prometheus exposition of goals' collector (collector.py), without a token, as
  metrics-api's and notify-api's are: it shows counts, never people or reasons.
- ``/scim/v2``: SCIM provisioning (scim/http.py), behind its bearer token, when SCIM_TOKEN is set; otherwise
  404, and SCIM is off. Any other path goes to SCIM's app too, which answers 401 without the token, as before.

WSGI on the kernel's bounded pool of threads (services/platform/api/wsgi.py), started with the gRPC server
and stopped with it (``attach``).
"""

import logging

from prometheus_client import CollectorRegistry

from services.platform.api import wsgi
from services.platform.core.config import env_str

from .scim import http as scim_http

log = logging.getLogger(__name__)

DEFAULT_ADDR = scim_http.DEFAULT_ADDR
HTTP_THREADS = 8


def addr_from_env() -> str:
    return env_str("SCIM_HTTP_ADDR", DEFAULT_ADDR)


def make_app(registry: CollectorRegistry, scim_app=None):
    """The WSGI app: /metrics from ``registry``; everything else to ``scim_app`` (None: SCIM off)."""

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            try:
                return wsgi.metrics(registry, environ, start_response)
            except Exception:  # the store down, or a bug: no traceback to the scraper
                log.exception("metrics scrape failed")
                return wsgi.plain(start_response, "500 Internal Server Error", "internal error; it has been logged\n")
        if scim_app is not None:
            return scim_app(environ, start_response)
        return wsgi.plain(start_response, "404 Not Found", "not found (SCIM is off: goals-api has no SCIM_TOKEN)\n")

    return app


def attach(server, addr: str, registry: CollectorRegistry, scim_app=None) -> wsgi.HttpServer:
    """Serves the HTTP side beside a gRPC server (``server.http``; ``server.scim`` too when SCIM is on), stopped
    when the server is."""
    running = wsgi.start(addr, make_app(registry, scim_app), HTTP_THREADS, "goals")
    stop = server.stop

    def stop_both(grace=None):
        running.shutdown()
        return stop(grace)

    server.stop = stop_both
    server.http = running
    server.scim = running if scim_app is not None else None
    # bench/scim.py and the tests wait for "scim listening" with its port.
    log.info("scim listening" if scim_app is not None else "goals http listening",
             extra={"addr": addr, "port": running.port, "scim": scim_app is not None})
    return running
