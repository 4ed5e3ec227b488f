"""A mail relay for development and tests that delivers nothing: it accepts mail, says so, and keeps it if asked.

notify-worker sends its email here in `make run` (NOTIFY_SMTP_HOST/PORT). Each
message prints one line on stdout (from, to, subject); ``--jsonl FILE`` adds one
JSON object per message (envelope, subject and the raw message) to FILE, and
``--maildir DIR`` keeps each raw message as a file, for a mail client to open.

Bounces and outages can be rehearsed: ``--refuse ADDRESS=CODE`` answers RCPT TO
for that address with CODE (550: no such user; 451: try again later), and
``--starttls-cert/--starttls-key`` with ``--auth USER:PASSWORD`` make it a relay
that wants STARTTLS and a login, like a real one.

    python -m deploy.dev.smtp_sink --port 2525 --jsonl var/mail.jsonl
"""

import argparse
import asyncio
import json
import logging
import signal
import ssl
import time
import uuid
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

log = logging.getLogger(__name__)

REFUSALS = {
    550: "550 5.1.1 No such user here",
    551: "551 5.1.6 User not local",
    552: "552 5.2.2 Mailbox full",
    553: "553 5.1.3 Mailbox name not allowed",
    450: "450 4.2.1 Mailbox busy, try again later",
    451: "451 4.3.0 Local error, try again later",
    452: "452 4.2.2 Insufficient storage, try again later",
}


class Sink:
    """The aiosmtpd handler: refuses the addresses it was told to, keeps and reports the rest."""

    def __init__(self, refusals: dict[str, int], jsonl: Path | None, maildir: Path | None):
        self.refusals = {address.lower(): code for address, code in refusals.items()}
        self.jsonl = jsonl
        self.maildir = maildir

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        code = self.refusals.get(address.lower())
        if code is not None:
            return REFUSALS.get(code, f"{code} Refused by the sink")
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        subject = str(message_from_bytes(raw, policy=default_policy).get("Subject", ""))
        print(f"mail from={envelope.mail_from} to={','.join(envelope.rcpt_tos)} subject={subject!r}", flush=True)
        record = {
            "received_at": time.time(), "mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
            "subject": subject, "authenticated": bool(session.authenticated), "tls": session.ssl is not None,
            "raw": raw.decode("utf-8", "replace"),
        }
        # Written before the 250 reply, so a sender that got its 250 finds the message kept.
        if self.jsonl:
            with self.jsonl.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")
        if self.maildir:
            (self.maildir / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml").write_bytes(raw)
        return "250 2.0.0 Kept by the sink"


def password_check(user: str, password: str):
    """An aiosmtpd authenticator that knows one user."""

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data == (user.encode(), password.encode())
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    return authenticator


async def serve(args: argparse.Namespace) -> None:
    sink = Sink(dict(args.refuse), args.jsonl, args.maildir)
    tls = None
    if args.starttls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.starttls_cert, args.starttls_key)
    authenticator = password_check(*args.auth) if args.auth else None
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(sink, hostname="sink.localhost", tls_context=tls, require_starttls=tls is not None,
                     authenticator=authenticator, auth_required=authenticator is not None,
                     auth_require_tls=tls is not None, loop=loop),
        args.host, args.port,
    )
    port = server.sockets[0].getsockname()[1]
    print(f"smtp sink listening on {args.host}:{port}", flush=True)
    if args.ready_file:
        # Tests asking for port 0 learn the real port from this file.
        args.ready_file.write_text(str(port))
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()


def refusal(text: str) -> tuple[str, int]:
    address, _, code = text.rpartition("=")
    if not address or not code.isdigit() or not 400 <= int(code) < 600:
        raise argparse.ArgumentTypeError("use ADDRESS=CODE with a 4xx or 5xx CODE")
    return address, int(code)


def credentials(text: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise argparse.ArgumentTypeError("use USER:PASSWORD")
    return user, password


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--ready-file", type=Path, help="write the listening port here once listening")
    parser.add_argument("--jsonl", type=Path, help="append one JSON object per message to this file")
    parser.add_argument("--maildir", type=Path, help="keep each raw message as a .eml file in this folder")
    parser.add_argument("--refuse", type=refusal, action="append", default=[], metavar="ADDRESS=CODE",
                        help="answer RCPT TO for ADDRESS with CODE (e.g. bounce@example.com=550)")
    parser.add_argument("--starttls-cert", help="PEM certificate: offer and require STARTTLS")
    parser.add_argument("--starttls-key", help="PEM private key of --starttls-cert")
    parser.add_argument("--auth", type=credentials, metavar="USER:PASSWORD", help="require this login")
    args = parser.parse_args()
    if args.maildir:
        args.maildir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
