"""A webhook receiver for development and tests: it takes every POST, says so, and keeps it if asked.

Subscriptions in `make run` point here (with NOTIFY_ALLOW_PRIVATE_WEBHOOKS=true,
since it is plain http on 127.0.0.1). Each POST prints one line on stdout
(path, webhook-id, the start of the body); ``--jsonl FILE`` adds one JSON
object per request (path, headers, body) to FILE.

The path chooses the answer, so failures can be rehearsed with a
subscription URL alone: ``/status/410`` answers 410 Gone, ``/status/429?retry_after=120``
answers 429 with ``Retry-After: 120``; any other path answers 200.

    python -m deploy.dev.webhook_sink --port 9102 --jsonl var/webhooks.jsonl
"""

import argparse
import json
import re
import signal
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 1024 * 1024
STATUS_PATH = re.compile(r"^/status/([1-5][0-9][0-9])/?$")


def make_server(host: str, port: int, keep: Callable[[dict], None]) -> ThreadingHTTPServer:
    """A server (not yet serving) that hands each request, as a dict, to ``keep`` before it answers."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, MAX_BODY))
            parts = urlsplit(self.path)
            keep({
                "received_at": time.time(), "method": "POST", "path": parts.path, "query": parts.query,
                "headers": dict(self.headers.items()), "body": body.decode("utf-8", "replace"),
            })
            self.answer(parts)

        def answer(self, parts):
            match = STATUS_PATH.match(parts.path)
            status = int(match.group(1)) if match else 200
            reply = b"ok" if status < 300 else f"sink answers {status}".encode()
            self.send_response(status)
            retry_after = parse_qs(parts.query).get("retry_after")
            if retry_after:
                self.send_header("Retry-After", retry_after[0])
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format, *args):
            pass  # one line per request comes from `keep`; the default access log would say it twice

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def printer(jsonl: Path | None) -> Callable[[dict], None]:
    lock = threading.Lock()

    def keep(request: dict) -> None:
        excerpt = request["body"][:120].replace("\n", " ")
        print(f"POST {request['path']} webhook-id={request['headers'].get('webhook-id', '-')} body={excerpt}",
              flush=True)
        if jsonl:
            with lock, jsonl.open("a", encoding="utf-8") as out:
                out.write(json.dumps(request) + "\n")

    return keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9102)
    parser.add_argument("--ready-file", type=Path, help="write the listening port here once listening")
    parser.add_argument("--jsonl", type=Path, help="append one JSON object per request to this file")
    args = parser.parse_args()
    server = make_server(args.host, args.port, printer(args.jsonl))
    port = server.server_address[1]
    print(f"webhook sink listening on http://{args.host}:{port}", flush=True)
    if args.ready_file:
        args.ready_file.write_text(str(port))
    # shutdown() waits for serve_forever() to return, and the handler runs inside it on this thread: so it
    # asks another thread to call shutdown().
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
