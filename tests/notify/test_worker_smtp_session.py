"""channels.email.SmtpSession, the dispatcher's one SMTP connection per batch, against the dev sink: reuse, a fresh
connection after an error or a connection the relay dropped, the whole-send deadline, the same Message-ID."""

import socket
import time

import pytest

from dataclasses import replace

from services.notify import kinds
from services.notify.channels import Message, PermanentFailure, TemporaryFailure
from services.notify.channels.email import SmtpSession, SmtpSettings
from tests.support.sinks import silent_server, smtp_sink


def message(**changes) -> Message:
    fields = dict(delivery_id="dlv-0123abcd", notification_id="ntf-1", kind=kinds.APPROVAL_REQUESTED,
                  recipient_id="p-eve", recipient_name="Eve Example", recipient_email="eve@example.com",
                  title="Approve the Sales V2MOM", body="Dana submitted the Sales V2MOM for your approval.")
    return Message(**(fields | changes))


def settings_for(sink) -> SmtpSettings:
    return replace(SmtpSettings(), host="127.0.0.1", port=sink.port, timeout=5.0)


def test_one_connection_carries_the_messages_of_a_pass_each_with_its_own_message_id(tmp_path):
    with smtp_sink(tmp_path) as sink:
        session = SmtpSession(settings_for(sink))
        for n in range(3):
            session.send(message(delivery_id=f"dlv-{n}", recipient_email=f"r{n}@example.com"))
        session.close()
        mails = sink.messages()
    assert session.connections == 1
    assert [m["Message-ID"] for m in mails] == ["<dlv-0@localhost>", "<dlv-1@localhost>", "<dlv-2@localhost>"]
    assert [m.envelope["rcpt_tos"] for m in mails] == [["r0@example.com"], ["r1@example.com"], ["r2@example.com"]]


def test_a_refusal_closes_the_connection_and_the_next_send_opens_a_fresh_one(tmp_path):
    with smtp_sink(tmp_path, "--refuse", "gone@example.com=550", "--refuse", "busy@example.com=451") as sink:
        session = SmtpSession(settings_for(sink))
        session.send(message(delivery_id="dlv-1"))
        with pytest.raises(PermanentFailure, match="550"):
            session.send(message(delivery_id="dlv-2", recipient_email="gone@example.com"))
        with pytest.raises(TemporaryFailure, match="451"):
            session.send(message(delivery_id="dlv-3", recipient_email="busy@example.com"))
        session.send(message(delivery_id="dlv-4"))
        session.close()
        mails = sink.messages()
    assert session.connections == 3
    assert [m["Message-ID"] for m in mails] == ["<dlv-1@localhost>", "<dlv-4@localhost>"]


def test_a_connection_the_relay_dropped_while_idle_is_replaced_within_the_send(tmp_path):
    with smtp_sink(tmp_path) as sink:
        session = SmtpSession(settings_for(sink))
        session.send(message(delivery_id="dlv-1"))
        session._smtp.sock.shutdown(socket.SHUT_RDWR)  # as if the relay had timed the idle connection out
        session.send(message(delivery_id="dlv-2"))
        session.close()
        session.close()  # twice is harmless
        mails = sink.messages()
    assert session.connections == 2
    assert [m["Message-ID"] for m in mails] == ["<dlv-1@localhost>", "<dlv-2@localhost>"]


def test_a_relay_that_never_greets_fails_the_send_within_the_timeout_and_close_does_not_wait():
    with silent_server() as (port, connections):
        session = SmtpSession(SmtpSettings(host="127.0.0.1", port=port, timeout=1.0))
        started = time.monotonic()
        with pytest.raises(TemporaryFailure):
            session.send(message())
        elapsed = time.monotonic() - started
        session.close()
        assert connections
    assert 0.9 <= elapsed < 3.0


def test_an_address_that_is_not_one_address_is_permanent_and_opens_nothing(tmp_path):
    with smtp_sink(tmp_path) as sink:
        session = SmtpSession(settings_for(sink))
        with pytest.raises(PermanentFailure, match="cannot address"):
            session.send(message(recipient_email="a@example.com, b@example.com"))
        session.close()
    assert session.connections == 0
