"""Email over SMTP against a real relay (deploy/dev/smtp_sink.py, a process on 127.0.0.1): the parts, escaping,
headers that cannot be injected, one-click unsubscribe, refusals, timeouts, STARTTLS and login."""

import time
from dataclasses import replace

import pytest

from services.notify import kinds
from services.notify.channels import Message, PermanentFailure, TemporaryFailure
from services.notify.channels.email import SmtpSettings, send_email
from services.platform.core.config import ConfigError
from tests.support.processes import free_port
from tests.support.sinks import silent_server, smtp_sink, tls_files

RECIPIENT = "eve@example.com"


def message(**changes) -> Message:
    fields = dict(
        delivery_id="dlv-0123abcd", notification_id="ntf-1", kind=kinds.APPROVAL_REQUESTED, recipient_id="p-eve",
        recipient_name="Eve Example", recipient_email=RECIPIENT, title="Approve the Sales V2MOM",
        body="Dana submitted the Sales V2MOM for your approval.\n\nIt has 4 methods and 6 measures.",
        link="https://portal.example.com/v2moms/v-1", facts={"comment": "Ready for review", "v2mom_id": "v-1"},
    )
    return Message(**(fields | changes))


def settings_for(sink, **changes) -> SmtpSettings:
    return replace(SmtpSettings(), **({"host": "127.0.0.1", "port": sink.port, "timeout": 5.0} | changes))


def parts(mail) -> tuple[str, str]:
    return mail.get_body(("plain",)).get_content(), mail.get_body(("html",)).get_content()


def test_a_message_has_a_text_and_an_html_part_and_reaches_only_its_recipient(tmp_path):
    with smtp_sink(tmp_path) as sink:
        send_email(message(), settings_for(sink))
        [mail] = sink.messages()
    assert mail.get_content_type() == "multipart/alternative"
    assert mail.envelope["rcpt_tos"] == [RECIPIENT]
    assert mail.envelope["mail_from"] == "v2mom@localhost"
    assert mail["To"] == f"Eve Example <{RECIPIENT}>"
    assert mail["From"] == "V2MOM <v2mom@localhost>"
    assert mail["Subject"] == "Approve the Sales V2MOM"
    assert mail["Message-ID"] == "<dlv-0123abcd@localhost>"
    assert mail["Auto-Submitted"] == "auto-generated"
    text, html = parts(mail)
    assert "Dana submitted the Sales V2MOM" in text
    assert "Review the V2MOM: https://portal.example.com/v2moms/v-1" in text
    assert "Comment: Ready for review" in text
    assert "v2mom_id" not in text + html, "ids are for machines: the mail shows only labelled facts"
    assert '<a href="https://portal.example.com/v2moms/v-1">Review the V2MOM</a>' in html
    assert "<p>It has 4 methods and 6 measures.</p>" in html


def test_a_retry_carries_the_same_message_id(tmp_path):
    with smtp_sink(tmp_path) as sink:
        send_email(message(), settings_for(sink))
        send_email(message(), settings_for(sink))
        send_email(message(delivery_id="dlv-other"), settings_for(sink))
        ids = [mail["Message-ID"] for mail in sink.messages()]
    assert ids[0] == ids[1] != ids[2]


def test_what_people_wrote_is_escaped_in_the_html_part(tmp_path):
    hostile = message(title="Q3 <script>alert('t')</script>", body="Ship <b>it</b> & <img src=x onerror=alert(1)>",
                      recipient_name="<i>Eve</i>", facts={"comment": "</td><script>x()</script>"},
                      link="javascript:alert(1)")
    with smtp_sink(tmp_path) as sink:
        send_email(hostile, settings_for(sink))
        [mail] = sink.messages()
    text, html = parts(mail)
    assert "<script>" not in html and "<img" not in html and "<i>Eve" not in html and "javascript:" not in html
    assert "Q3 &lt;script&gt;alert(&#39;t&#39;)&lt;/script&gt;" in html
    assert "Ship &lt;b&gt;it&lt;/b&gt; &amp; &lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;/td&gt;&lt;script&gt;x()&lt;/script&gt;" in html
    # The text part is not HTML: it shows what was written, as written.
    assert "Ship <b>it</b> & <img src=x onerror=alert(1)>" in text
    assert mail["Subject"] == "Q3 <script>alert('t')</script>"


def test_line_breaks_in_a_title_or_a_name_cannot_add_headers_or_recipients(tmp_path):
    attack = message(title="Hello\r\nBcc: evil@attacker.example\r\nX-Injected: 1",
                     recipient_name="Eve\r\nBcc: evil@attacker.example\nCc: evil2@attacker.example")
    with smtp_sink(tmp_path) as sink:
        send_email(attack, settings_for(sink))
        [mail] = sink.messages()
    assert mail.envelope["rcpt_tos"] == [RECIPIENT]
    assert mail["Bcc"] is None and mail["Cc"] is None and mail["X-Injected"] is None
    assert mail["Subject"] == "Hello Bcc: evil@attacker.example X-Injected: 1"
    assert mail["To"].addresses[0].addr_spec == RECIPIENT
    assert len(mail["To"].addresses) == 1


def test_the_memoised_policy_writes_the_same_bytes_as_policy_default(monkeypatch):
    """MAIL_POLICY only makes each header class once: a mail, hostile title and name included, is byte for byte
    what policy.default makes of it (the multipart boundary fixed, as it is random)."""
    from datetime import UTC, datetime
    from email.policy import default

    from services.notify.channels import email as email_channel

    def built(policy) -> bytes:
        monkeypatch.setattr(email_channel, "MAIL_POLICY", policy)
        mail = email_channel.build_email(
            message(title="Hello\r\nBcc: evil@attacker.example", recipient_name="Ève \"Q\" Exàmple, Jr.\nCc: x@y.z",
                    unsubscribe_url="https://notify.example.com/unsubscribe?t=abc"),
            SmtpSettings(), now=datetime(2026, 6, 1, 9, 0, tzinfo=UTC))
        mail.set_boundary("fixed-boundary")
        return mail.as_bytes()
    memoised = built(email_channel.MAIL_POLICY)
    assert memoised == built(default) and memoised == built(email_channel.MAIL_POLICY)
    assert b"\nBcc:" not in memoised and b"\nCc:" not in memoised


@pytest.mark.parametrize("address", [f"{RECIPIENT}\r\nBcc: evil@attacker.example",
                                     f"{RECIPIENT}, evil@attacker.example", "not-an-address"])
def test_a_recipient_address_that_is_not_one_address_is_refused_before_any_mail_goes(tmp_path, address):
    with smtp_sink(tmp_path) as sink:
        with pytest.raises(PermanentFailure):
            send_email(message(recipient_email=address), settings_for(sink))
        assert sink.records() == []


def test_recurring_kinds_carry_one_click_unsubscribe_and_others_do_not(tmp_path):
    url = "http://127.0.0.1:9101/unsubscribe?token=abc.def"
    with smtp_sink(tmp_path) as sink:
        send_email(message(kind=kinds.CHECKIN_REMINDER, unsubscribe_url=url), settings_for(sink))
        send_email(message(kind=kinds.APPROVAL_REQUESTED), settings_for(sink))
        reminder, approval = sink.messages()
    assert reminder["List-Unsubscribe"] == f"<{url}>"
    assert reminder["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text, html = parts(reminder)
    assert f"Stop these emails: {url}" in text and f'href="{url.replace("&", "&amp;")}"' in html
    assert approval["List-Unsubscribe"] is None and approval["List-Unsubscribe-Post"] is None
    assert "Stop these emails" not in parts(approval)[0]


def test_a_recipient_the_relay_refuses_for_good_is_a_permanent_failure(tmp_path):
    with smtp_sink(tmp_path, "--refuse", "gone@example.com=550") as sink:
        with pytest.raises(PermanentFailure, match="550"):
            send_email(message(recipient_email="gone@example.com"), settings_for(sink))
        assert sink.records() == []


def test_a_relay_that_says_later_is_a_temporary_failure(tmp_path):
    with smtp_sink(tmp_path, "--refuse", "busy@example.com=451") as sink, pytest.raises(TemporaryFailure, match="451"):
        send_email(message(recipient_email="busy@example.com"), settings_for(sink))


def test_no_relay_listening_is_a_temporary_failure():
    with pytest.raises(TemporaryFailure):
        send_email(message(), SmtpSettings(host="127.0.0.1", port=free_port(), timeout=2.0))


def test_a_relay_that_accepts_and_never_greets_fails_within_the_timeout():
    with silent_server() as (port, connections):
        started = time.monotonic()
        with pytest.raises(TemporaryFailure):
            send_email(message(), SmtpSettings(host="127.0.0.1", port=port, timeout=1.0))
        elapsed = time.monotonic() - started
        assert connections, "the relay did accept the connection"
    assert 0.9 <= elapsed < 3.0


def test_starttls_and_login(tmp_path):
    ca, chain, key = tls_files(tmp_path)
    args = ("--starttls-cert", str(chain), "--starttls-key", str(key), "--auth", "notify:s3cret")
    with smtp_sink(tmp_path / "sink", *args) as sink:
        secure = settings_for(sink, host="localhost", starttls=True, username="notify", password="s3cret",
                              ca_file=str(ca))
        send_email(message(), secure)
        with pytest.raises(TemporaryFailure, match="relay refused the session"):
            send_email(message(), replace(secure, password="wrong"))
        with pytest.raises(TemporaryFailure):  # the system's CAs do not trust the test CA
            send_email(message(), replace(secure, ca_file=""))
        with pytest.raises(TemporaryFailure):  # this relay insists on STARTTLS before anything else
            send_email(message(), replace(secure, starttls=False, username=""))
        [mail] = sink.messages()
    assert mail.envelope["tls"] and mail.envelope["authenticated"]


def test_settings_come_from_the_environment(monkeypatch):
    assert SmtpSettings.from_env() == SmtpSettings()
    monkeypatch.setenv("NOTIFY_SMTP_HOST", "smtp.example.com")
    monkeypatch.setenv("NOTIFY_SMTP_PORT", "587")
    monkeypatch.setenv("NOTIFY_SMTP_STARTTLS", "true")
    monkeypatch.setenv("NOTIFY_SMTP_USERNAME", "notify")
    monkeypatch.setenv("NOTIFY_SMTP_PASSWORD", "pw")
    monkeypatch.setenv("NOTIFY_MAIL_FROM", "Goals <goals@example.com>")
    monkeypatch.setenv("NOTIFY_SEND_TIMEOUT_SECONDS", "3.5")
    settings = SmtpSettings.from_env()
    assert (settings.host, settings.port, settings.starttls, settings.username, settings.password) == (
        "smtp.example.com", 587, True, "notify", "pw")
    assert settings.sender_address == "goals@example.com" and settings.timeout == 3.5
    assert "pw" not in repr(settings)
    monkeypatch.setenv("NOTIFY_SMTP_STARTTLS", "perhaps")
    with pytest.raises(ConfigError, match="NOTIFY_SMTP_STARTTLS"):
        SmtpSettings.from_env()


def test_the_dev_sink_keeps_each_message_as_an_eml_file_when_asked(tmp_path):
    maildir = tmp_path / "maildir"
    with smtp_sink(tmp_path, "--maildir", str(maildir)) as sink:
        send_email(message(), settings_for(sink))
    [kept] = maildir.glob("*.eml")
    assert b"Message-ID: <dlv-0123abcd@localhost>" in kept.read_bytes()
