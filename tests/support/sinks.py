"""Receivers for the notify channel tests, all on 127.0.0.1, each stopped when its ``with`` block ends.

smtp_sink             deploy/dev/smtp_sink.py as a process; ``.messages()`` parses what it kept
webhook_sink          deploy/dev/webhook_sink.py's server in a thread; ``.requests`` is what it got
webhook_sink_process  the same sink as the process `make run` starts
silent_server         accepts connections and never answers
dripping_server       answers one header byte at a time, for ever
tls_files             a test CA and a certificate for "localhost" (trustme), as PEM files
"""

import json
import socket
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_string
from email.policy import default as default_policy
from pathlib import Path

from deploy.dev.webhook_sink import make_server
from tests.support.processes import log_tail, spawn, stop

HOST = "127.0.0.1"


def _wait_for_ready_file(process, ready: Path, what: str) -> int:
    deadline = time.monotonic() + 20
    while not ready.exists() or not ready.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start: {log_tail(process, 2000)}")
        time.sleep(0.02)
    return int(ready.read_text())


@dataclass
class SmtpSink:
    port: int
    jsonl: Path

    def records(self) -> list[dict]:
        if not self.jsonl.exists():
            return []
        return [json.loads(line) for line in self.jsonl.read_text(encoding="utf-8").splitlines() if line]

    def messages(self) -> list:
        """Each kept message, parsed, with the envelope as ``.envelope`` ({mail_from, rcpt_tos, tls, authenticated})."""
        parsed = []
        for record in self.records():
            message = message_from_string(record["raw"], policy=default_policy)
            message.envelope = {key: record[key] for key in ("mail_from", "rcpt_tos", "tls", "authenticated")}
            parsed.append(message)
        return parsed


@contextmanager
def smtp_sink(folder: Path, *args: str):
    """The dev SMTP sink on a free port, with extra command-line ``args`` (--refuse, --starttls-cert, --auth)."""
    folder.mkdir(parents=True, exist_ok=True)
    ready, jsonl = folder / "smtp-port", folder / "mail.jsonl"
    process = spawn([sys.executable, "-m", "deploy.dev.smtp_sink", "--port", "0", "--ready-file", str(ready),
                     "--jsonl", str(jsonl), *args])
    try:
        yield SmtpSink(_wait_for_ready_file(process, ready, "smtp sink"), jsonl)
    finally:
        stop(process, timeout=5)


@dataclass
class WebhookSink:
    port: int
    scheme: str = "http"
    host: str = HOST
    requests: list = field(default_factory=list)

    def url(self, path: str = "/hook") -> str:
        return f"{self.scheme}://{self.host}:{self.port}{path}"


@contextmanager
def webhook_sink(tls_context=None, host_name: str = HOST):
    """The dev webhook sink's server in a thread of this process; with ``tls_context`` it speaks https."""
    sink = WebhookSink(0, "https" if tls_context else "http", host_name)
    server = make_server(HOST, 0, sink.requests.append)
    if tls_context is not None:
        server.socket = tls_context.wrap_socket(server.socket, server_side=True)
    sink.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def webhook_sink_process(folder: Path):
    """deploy/dev/webhook_sink.py as `make run` starts it; ``.requests()`` reads its --jsonl file."""
    folder.mkdir(parents=True, exist_ok=True)
    ready, jsonl = folder / "webhook-port", folder / "webhooks.jsonl"
    process = spawn([sys.executable, "-m", "deploy.dev.webhook_sink", "--port", "0", "--ready-file", str(ready),
                     "--jsonl", str(jsonl)])
    try:
        sink = WebhookSink(_wait_for_ready_file(process, ready, "webhook sink"))
        sink.read = lambda: [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []
        yield sink
    finally:
        stop(process, timeout=5)


@contextmanager
def _holding_server(on_connection):
    """A listening socket whose connections get ``on_connection(conn, stopped)`` in threads of their own."""
    listener = socket.create_server((HOST, 0))
    listener.settimeout(0.05)
    stopped = threading.Event()
    connections = []

    def accept_until_stopped():
        while not stopped.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connections.append(conn)
            threading.Thread(target=on_connection, args=(conn, stopped), daemon=True).start()

    thread = threading.Thread(target=accept_until_stopped, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], connections
    finally:
        stopped.set()
        thread.join(timeout=5)
        listener.close()
        for conn in connections:
            conn.close()


@contextmanager
def silent_server():
    """Accepts every connection and never says a word: yields (port, accepted connections)."""
    with _holding_server(lambda conn, stopped: stopped.wait()) as (port, connections):
        yield port, connections


@contextmanager
def dripping_server(every: float = 0.2):
    """Answers with a status line and then one more header byte every ``every`` seconds, never ending."""

    def drip(conn, stopped):
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not stopped.wait(every):
                conn.sendall(b"a")
        except OSError:
            pass  # the client hung up: what the test expects

    with _holding_server(drip) as (port, connections):
        yield port, connections


def tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate chain, server key) for "localhost", written as PEM files."""
    import trustme

    authority = trustme.CA()
    server = authority.issue_cert("localhost")
    ca, chain, key = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    authority.cert_pem.write_to_path(str(ca))
    server.private_key_and_cert_chain_pem.write_to_path(str(chain))
    server.private_key_pem.write_to_path(str(key))
    return ca, chain, key

