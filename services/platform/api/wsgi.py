"""A small HTTP server for an api process's side endpoints (``/metrics``, ``/unsubscribe``, ``/scim/v2``): WSGI
on a fixed pool of threads; ``start`` runs one, ``metrics`` answers a Prometheus scrape from a registry.

wsgiref's ``ThreadingMixIn`` starts a thread per request with no bound, so a flood of slow requests (a
scrape costs a metrics-api seconds at 10k units) starts threads until the process falls over. Here the accept
loop takes a connection only when a pool thread is free; meanwhile the kernel's listen backlog holds new ones.
"""

import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class names it "format"
        """Nothing: a scrape every few seconds is not news; apps log their own failures."""


class BoundedWSGIServer(WSGIServer):
    """Serves each request on a pool of ``threads``; the accept loop waits while all are busy."""

    threads = 4

    def server_activate(self):
        super().server_activate()
        self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix=f"{self.name}-http")
        self._free = threading.BoundedSemaphore(self.threads)

    def process_request(self, request, client_address):
        self._free.acquire()
        self._pool.submit(self._handle, request, client_address)

    def _handle(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self._free.release()

    def server_close(self):
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def serve(host: str, port: int, app, threads: int, name: str) -> tuple[WSGIServer, threading.Thread]:
    """Serves ``app`` on host:port (0 picks a free port) from a daemon thread, ``threads`` requests at a time."""
    family, _, _, _, sockaddr = socket.getaddrinfo(host or "0.0.0.0", port, type=socket.SOCK_STREAM,
                                                   flags=socket.AI_PASSIVE)[0]

    class Server(BoundedWSGIServer):
        address_family = family

    Server.threads, Server.name = threads, name
    httpd = make_server(sockaddr[0], port, app, Server, handler_class=QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, name=f"{name}-http", daemon=True)
    thread.start()
    return httpd, thread


class HttpServer:
    """A running side endpoint: ``port``, and ``shutdown()`` (idempotent; run_api's on_stop, or the gRPC
    server's stop) to stop it."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread):
        self.httpd, self.thread = httpd, thread
        self.port = httpd.server_address[1]
        self._stopped = threading.Event()

    def shutdown(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def start(addr: str, app, threads: int, name: str) -> HttpServer:
    """Serves ``app`` on ``addr`` ("host:port"; port 0 picks a free one) from a daemon thread."""
    host, _, port = addr.rpartition(":")
    return HttpServer(*serve(host, int(port), app, threads, name))


def metrics(registry: CollectorRegistry, environ, start_response):
    """``GET`` (or ``HEAD``) ``/metrics``: the registry's exposition, content negotiated as prometheus_client
    does (text, or OpenMetrics when asked); 405 for other methods. The registry's collectors run now, so
    what they raise (the store down) is the caller's to answer."""
    method = environ.get("REQUEST_METHOD", "GET")
    if method not in ("GET", "HEAD"):
        return plain(start_response, "405 Method Not Allowed", "use GET\n", [("Allow", "GET, HEAD")])
    encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
    body = encoder(registry)
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [b"" if method == "HEAD" else body]


def plain(start_response, status: str, text: str, headers=()):
    """A short text/plain answer."""
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                            *headers])
    return [body]
