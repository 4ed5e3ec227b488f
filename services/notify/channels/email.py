"""Email over SMTP: one delivery as one message with a plain-text and an HTML part.

The message is built with the standard library's EmailMessage under
``policy.default``: every header goes through the header registry, the title
and names are flattened to one line first, and the envelope recipient is the
delivery's address alone (never read back from headers). So a title or a name
like ``"x\\r\\nBcc: evil@example.com"`` stays text inside its header.

The Message-ID comes from the delivery id, so a retry of a delivery the relay
had in fact accepted is recognisable as the same message. Kinds that recur
(kinds.UNSUBSCRIBABLE) carry RFC 8058 one-click unsubscribe headers; the link
turns off that one kind for that one person (unsubscribe.py).

SMTP answers map onto the channel contract: a 5xx refusal of the recipient
or of the message is permanent; 4xx replies, lost connections and timeouts
are temporary. Refusals that are about our own configuration (wrong
credentials, no STARTTLS, the sender refused) are temporary too: the
operator can fix them while the retry schedule runs, and the mail still goes.
"""

import logging
import re
import smtplib
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address, HeaderRegistry
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, parseaddr

from jinja2 import DictLoader, Environment, StrictUndefined, select_autoescape

from services.platform.core.config import ConfigError, env_float, env_int, env_str

from .. import kinds
from . import Message, PermanentFailure, TemporaryFailure, email_templates
from .deadline import Deadline

log = logging.getLogger(__name__)

# What the link in each kind of mail invites the reader to do.
ACTIONS = {
    kinds.APPROVAL_REQUESTED: "Review the V2MOM",
    kinds.APPROVAL_DECIDED: "Open your V2MOM",
    kinds.APPROVAL_OVERDUE: "Review the V2MOM",
    kinds.CHECKIN_REMINDER: "Check in",
    kinds.ITEM_ESCALATION: "Open the item",
    kinds.ATTENTION: "Open the V2MOM",
    kinds.DIGEST: "Open V2MOM",
}
# Why the reader gets the kinds they can unsubscribe from, said in the footer beside the link.
REASONS = {
    kinds.CHECKIN_REMINDER: "you own items that are due for a check-in",
    kinds.DIGEST: "you get the weekly digest of your team",
    kinds.ITEM_ESCALATION: "items you are responsible for have had no check-in",
    kinds.ATTENTION: "items you are responsible for need attention",
}
# The facts a mail shows, in this order, under these labels; other facts (ids) are for machines.
FACT_LABELS = {
    "v2mom_title": "V2MOM",
    "item_title": "Item",
    "decision": "Decision",
    "comment": "Comment",
    "lint_summary": "Guidance",
    "due_date": "Due",
    "progress": "Progress",
    "status": "Status",
}

class _MemoHeaderRegistry(HeaderRegistry):
    """policy.default's header registry, with its header classes made once per name.

    The stock registry builds a new class with ``type()`` for every header of every message (a third of the time
    it takes to build one of ours). The classes it builds hold no state, so one per header name parses, checks
    and folds exactly as the stock ones do: only the repeated class creation goes.
    """

    def __init__(self):
        super().__init__()
        self._classes: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        made = self._classes.get(key)
        if made is None:
            made = self._classes[key] = super().__getitem__(name)
        return made


# policy.default, its header classes memoised (above): the same parsing, and so the same defence against injection.
MAIL_POLICY = default_policy.clone(header_factory=_MemoHeaderRegistry())

_templates = Environment(
    loader=DictLoader({"mail.txt": email_templates.TEXT, "mail.html": email_templates.HTML}),
    autoescape=select_autoescape(enabled_extensions=("html",), disabled_extensions=("txt",), default=True),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)


def _env_flag(name: str, default: bool) -> bool:
    raw = env_str(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "127.0.0.1"
    port: int = 2525
    starttls: bool = False
    username: str = ""
    password: str = field(default="", repr=False)
    mail_from: str = "V2MOM <v2mom@localhost>"
    timeout: float = 10.0
    ca_file: str = ""  # a private relay's CA for STARTTLS; the system's CAs when empty

    @classmethod
    def from_env(cls) -> "SmtpSettings":
        settings = cls(
            host=env_str("NOTIFY_SMTP_HOST", cls.host),
            port=env_int("NOTIFY_SMTP_PORT", cls.port),
            starttls=_env_flag("NOTIFY_SMTP_STARTTLS", cls.starttls),
            username=env_str("NOTIFY_SMTP_USERNAME", ""),
            password=env_str("NOTIFY_SMTP_PASSWORD", ""),
            mail_from=env_str("NOTIFY_MAIL_FROM", cls.mail_from),
            timeout=env_float("NOTIFY_SEND_TIMEOUT_SECONDS", cls.timeout),
            ca_file=env_str("NOTIFY_SMTP_CA_FILE", ""),
        )
        if not parseaddr(settings.mail_from)[1]:
            raise ConfigError(f"NOTIFY_MAIL_FROM must be an address, got {settings.mail_from!r}")
        if settings.timeout <= 0:
            raise ConfigError("NOTIFY_SEND_TIMEOUT_SECONDS must be positive")
        return settings

    @property
    def sender_address(self) -> str:
        return parseaddr(self.mail_from)[1]

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file or None)


def build_email(message: Message, settings: SmtpSettings, now: datetime | None = None) -> EmailMessage:
    """The message as it goes out; ValueError when the recipient's address is not one address."""
    mail = EmailMessage(policy=MAIL_POLICY)
    mail["From"] = settings.mail_from
    mail["To"] = Address(display_name=one_line(message.recipient_name), addr_spec=message.recipient_email)
    mail["Subject"] = one_line(message.title)
    mail["Date"] = format_datetime(now or datetime.now(UTC))
    mail["Message-ID"] = message_id(message.delivery_id, settings.sender_address)
    # Out-of-office replies to a robot only add noise (RFC 3834; X-Auto-Response-Suppress for Exchange).
    mail["Auto-Submitted"] = "auto-generated"
    mail["X-Auto-Response-Suppress"] = "All"
    if message.unsubscribe_url:
        mail["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
        mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    context = template_context(message)
    mail.set_content(_templates.get_template("mail.txt").render(context))
    mail.add_alternative(_templates.get_template("mail.html").render(context), subtype="html")
    return mail


def template_context(message: Message) -> dict:
    body = message.body.replace("\r\n", "\n").strip()
    return {
        "recipient_name": one_line(message.recipient_name) or "there",
        "title": one_line(message.title),
        "body": body,
        "paragraphs": [paragraph.split("\n") for paragraph in re.split(r"\n\s*\n", body) if paragraph.strip()],
        "facts": [(label, str(message.facts[key])) for key, label in FACT_LABELS.items()
                  if message.facts.get(key) not in (None, "")],
        # Only web links: a javascript: or data: link in an href would run in some mail clients.
        "link": message.link if message.link.startswith(("https://", "http://")) else "",
        "action": ACTIONS.get(message.kind, "Open V2MOM"),
        "unsubscribe_url": message.unsubscribe_url,
        "reason": REASONS.get(message.kind, "of your notification settings"),
    }


def send_email(message: Message, settings: SmtpSettings) -> None:
    """Hands the message to the relay; returns once the relay has accepted it, else raises a channel failure."""
    try:
        mail = build_email(message, settings)
    except ValueError as error:  # the recipient address does not parse as one address
        raise PermanentFailure(f"cannot address the mail: {error}") from None
    started = time.monotonic()
    smtp = smtplib.SMTP(timeout=settings.timeout)
    with Deadline(settings.timeout, lambda: smtp.sock) as deadline:
        try:
            _converse(smtp, mail, message.recipient_email, settings)
        except (smtplib.SMTPException, OSError) as error:
            raise _failure(error, deadline, settings) from None
        finally:
            smtp.close()
    log.info("email accepted by the relay", extra={
        "delivery_id": message.delivery_id, "kind": message.kind,
        "elapsed_ms": round((time.monotonic() - started) * 1000),
    })


class SmtpSession:
    """One SMTP connection for several messages (worker.py: one per dispatch batch): the first ``send`` opens
    it, the next ones reuse it (MAIL, RCPT, DATA only), ``close`` says QUIT.

    Each ``send`` is what ``send_email`` is for one message: the same mail (so the same Message-ID), the same
    whole-send deadline (``SmtpSettings.timeout``, connecting included), the same channel failures. A send
    that fails closes the connection, and the next send opens a fresh one. A reused connection that turns
    out closed by the relay meanwhile (idle too long: it drops before answering) is replaced once within
    the same send and deadline; should the relay have taken the message before dropping, the receiver sees
    it twice under one Message-ID, as after any retry.
    """

    def __init__(self, settings: SmtpSettings):
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None
        self.connections = 0  # how many this session opened (tests, logs)

    def send(self, message: Message) -> None:
        try:
            mail = build_email(message, self.settings)
        except ValueError as error:  # the recipient address does not parse as one address
            raise PermanentFailure(f"cannot address the mail: {error}") from None
        started = time.monotonic()
        reused = self._smtp is not None
        with Deadline(self.settings.timeout, lambda: self._smtp.sock if self._smtp is not None else None) as deadline:
            try:
                if reused:
                    try:
                        self._smtp.send_message(mail, from_addr=self.settings.sender_address,
                                                to_addrs=[message.recipient_email])
                    except (smtplib.SMTPServerDisconnected, ConnectionError):
                        if deadline.expired:
                            raise
                        self._drop()  # closed while idle: once more, on a new connection
                        reused = False
                if not reused:
                    self._open()
                    self._smtp.send_message(mail, from_addr=self.settings.sender_address,
                                            to_addrs=[message.recipient_email])
            except (smtplib.SMTPException, OSError) as error:
                self._drop()
                raise _failure(error, deadline, self.settings) from None
            except BaseException:
                self._drop()
                raise
        log.info("email accepted by the relay", extra={
            "delivery_id": message.delivery_id, "kind": message.kind, "reused_connection": reused,
            "elapsed_ms": round((time.monotonic() - started) * 1000),
        })

    def close(self) -> None:
        """QUIT (within the send timeout) and close; the session may be used again (it reconnects)."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        with Deadline(self.settings.timeout, lambda: smtp.sock):
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                pass  # the relay has every message already; a lost QUIT changes nothing
            finally:
                smtp.close()

    def _open(self) -> None:
        smtp = smtplib.SMTP(timeout=self.settings.timeout)
        self._smtp = smtp
        self.connections += 1
        _connect(smtp, self.settings)

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()


def _failure(error: Exception, deadline: Deadline, settings: SmtpSettings) -> TemporaryFailure | PermanentFailure:
    """What an SMTP conversation's error means for the delivery."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(error.recipients.values()), (0, b""))
        return _by_code(code, f"recipient refused: {code} {_text(reply)}")
    if isinstance(error, (smtplib.SMTPAuthenticationError, smtplib.SMTPSenderRefused, smtplib.SMTPHeloError,
                          smtplib.SMTPNotSupportedError)):
        log.error("the mail relay refused us: check the NOTIFY_SMTP_* settings", extra={"error": str(error)})
        return TemporaryFailure(f"relay refused the session: {_describe(error)}")
    if isinstance(error, smtplib.SMTPResponseException):  # DATA refused, or a reply we did not expect
        return _by_code(error.smtp_code, f"relay refused: {error.smtp_code} {_text(error.smtp_error)}")
    # disconnected, timed out, TLS failed
    if deadline.expired or isinstance(error, TimeoutError):
        return TemporaryFailure(f"no answer from {settings.host}:{settings.port} within {settings.timeout:g}s")
    return TemporaryFailure(f"{settings.host}:{settings.port}: {_describe(error)}")


def _converse(smtp: smtplib.SMTP, mail: EmailMessage, recipient: str, settings: SmtpSettings) -> None:
    _connect(smtp, settings)
    smtp.send_message(mail, from_addr=settings.sender_address, to_addrs=[recipient])
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass  # the relay has the message already; a lost QUIT changes nothing


def _connect(smtp: smtplib.SMTP, settings: SmtpSettings) -> None:
    # The SMTP object is made before connecting so the deadline can reach its socket. starttls() checks the
    # certificate against ``_host``, which smtplib sets only when the constructor connects: set it here.
    smtp._host = settings.host
    smtp.connect(settings.host, settings.port)
    smtp.ehlo_or_helo_if_needed()
    if settings.starttls:
        smtp.starttls(context=settings.tls_context())
        smtp.ehlo()
    if settings.username:
        smtp.login(settings.username, settings.password)


def message_id(delivery_id: str, sender_address: str) -> str:
    """``<delivery-id@sender's domain>``: the same for every try of one delivery."""
    local = re.sub(r"[^A-Za-z0-9._-]", "-", delivery_id) or "delivery"
    domain = sender_address.rpartition("@")[2] or "localhost"
    return f"<{local}@{domain}>"


def one_line(text: str) -> str:
    """Text with every line break and control character turned into a space: one header line's worth."""
    flattened = " ".join(text.splitlines())
    return re.sub(r"[\x00-\x1f\x7f]", " ", flattened).strip()


def _by_code(code: int, error: str) -> TemporaryFailure | PermanentFailure:
    return PermanentFailure(error) if 500 <= code < 600 else TemporaryFailure(error)


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"
