"""The `v2mom` notification commands (inbox, prefs, deliveries), run as a subprocess against a real notify-api.

People log in through the root's seeded goals-api (the demo organisation), as
at a terminal; notify-api runs in process on a database of this module's own.
Notifications and deliveries are inserted straight into that database in the
shapes services/notify/store.py documents, as notify-worker writes them. Each
test acts as different people, so the tests do not see each other's inboxes.
"""

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pymongo
import pytest

from services.notify import kinds
from services.notify.api import create_server
from services.platform.core.config import load
from tests.support.cli import Cli
from tests.support.processes import free_port
from tests.support.services import served
from v2mom.v1 import notify_pb2
from v2mom_cli import notify as notify_commands
from v2mom_cli.errors import CliError

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PORTAL = "http://127.0.0.1:8080/v2moms"


@dataclass
class Notify:
    address: str
    db: pymongo.database.Database


@pytest.fixture(scope="module")
def notify(mongo_uri, seeded_goals):
    # goals_addr: notify-api asks the demo's goals-api who its callers are.
    settings = replace(load("notify", "127.0.0.1:0"), mongo_uri=mongo_uri, goals_addr=seeded_goals.address,
                       mongo_db=f"notify_cli_{uuid.uuid4().hex[:10]}")
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    try:
        with served(create_server, settings) as (_, port):
            yield Notify(f"127.0.0.1:{port}", client[settings.database_name])
    finally:
        client.drop_database(settings.database_name)
        client.close()


@pytest.fixture
def cli(seeded_goals, notify, tmp_path):
    cli = Cli(seeded_goals.address, tmp_path)
    cli.env["V2MOM_NOTIFY_ADDR"] = notify.address
    return cli


def local(moment: datetime) -> str:
    """A time as the CLI prints it: local, to the minute."""
    return datetime.fromtimestamp(moment.timestamp()).strftime("%Y-%m-%d %H:%M")


def notification(n: int, recipient: str, kind: str, title: str, read: bool = False) -> dict:
    created = T0 + timedelta(hours=n)
    return {
        "_id": f"ntf_{recipient.replace('.', '_')}_{n}", "recipient_id": recipient, "kind": kind, "title": title,
        "body": "The details.", "link": f"{PORTAL}/v2m_{n}", "v2mom_id": f"v2m_{n}", "item_id": "",
        "cause_event_id": f"evt_{n}", "created_at": created, "read_at": created + timedelta(minutes=5) if read else None,
        "facts": {},
    }


def delivery(n: int, recipient: str, channel: str, status: str, tries: int = 1, last_error: str = "") -> dict:
    created = T0 + timedelta(minutes=n)
    return {
        "_id": f"dlv_cli_{n:02d}", "notification_id": f"ntf_cli_{n}", "recipient_id": recipient,
        "kind": kinds.APPROVAL_REQUESTED, "channel": channel,
        "target": f"{recipient}@example.com" if channel == kinds.EMAIL else ("sub_hook" if channel == kinds.WEBHOOK
                                                                            else recipient),
        "status": status, "tries": tries, "last_error": last_error, "created_at": created,
        "next_try_at": created + timedelta(minutes=10), "sent_at": created + timedelta(seconds=2) if status == "SENT"
        else None, "lease_until": None, "cause_event_id": f"evt_{n}", "v2mom_id": "v2m_1", "outbox": [],
    }


def row(output: str, *words: str) -> str:
    """The one line of output that holds every word."""
    lines = [line for line in output.splitlines() if all(word in line for word in words)]
    assert len(lines) == 1, f"expected one line with {words} in:\n{output}"
    return lines[0]


def table_rows(output: str) -> list[str]:
    """The table's lines below its header, up to the blank line after it."""
    lines = output.splitlines()
    return lines[1:lines.index("")] if "" in lines else lines[1:]


# --- the inbox -------------------------------------------------------------------------------------


def test_the_inbox_lists_newest_first_with_unread_marks_and_marks_read(cli, notify):
    me, other = "hannah.berg", "priya.raman"
    notify.db.notifications.insert_many([
        notification(1, me, kinds.APPROVAL_DECIDED, "Your V2MOM was approved", read=True),
        notification(2, me, kinds.CHECKIN_REMINDER, "Check in on Robots reporting telemetry"),
        notification(3, me, kinds.ITEM_ESCALATION, "Ship the telemetry agent is overdue"),
        notification(4, other, kinds.APPROVAL_REQUESTED, "Hannah Berg FY2027 waits for your approval"),
    ])
    cli.ok("login", me)

    listed = cli.ok("inbox")
    rows = table_rows(listed)
    assert len(rows) == 3  # not Priya's
    assert rows[0].startswith("●") and "item-escalation" in rows[0] and local(T0 + timedelta(hours=3)) in rows[0]
    assert rows[1].startswith("●") and "checkin-reminder" in rows[1]
    assert not rows[2].startswith("●") and "approval-decided" in rows[2]
    assert row(listed, "ntf_hannah_berg_3", "Ship the telemetry agent is overdue", f"{PORTAL}/v2m_3")
    assert "2 unread." in listed and "Mark read: v2mom inbox read <id>... (or --all)" in listed

    unread = cli.ok("inbox", "--unread")
    assert len(table_rows(unread)) == 2 and "Your V2MOM was approved" not in unread
    newest = cli.ok("inbox", "--limit", "1")
    assert len(table_rows(newest)) == 1 and "The newest 1 shown; see more with --limit." in newest

    assert cli.ok("inbox", "read", "ntf_hannah_berg_2").strip() == "Marked 1 read; 1 unread left."
    assert notify.db.notifications.find_one({"_id": "ntf_hannah_berg_2"})["read_at"] is not None
    assert not table_rows(cli.ok("inbox"))[1].startswith("●")
    again = cli.ok("inbox", "read", "ntf_hannah_berg_2", "ntf_hannah_berg_1")
    assert again.strip() == "Marked 0 read (2 already were); 1 unread left."

    # Another person's notification is not found, and nothing is marked.
    theirs = cli("inbox", "read", "ntf_hannah_berg_3", "ntf_priya_raman_4")
    assert theirs.returncode == 1 and theirs.stdout == "" and "Traceback" not in theirs.stderr
    assert theirs.stderr.startswith("error: NOT_FOUND: ")
    assert notify.db.notifications.find_one({"_id": "ntf_hannah_berg_3"})["read_at"] is None

    assert cli.ok("inbox", "read", "--all").strip() == "Marked 1 read; 0 unread left."
    assert notify.db.notifications.count_documents({"recipient_id": me, "read_at": None}) == 0
    assert notify.db.notifications.find_one({"_id": "ntf_priya_raman_4"})["read_at"] is None
    assert cli.ok("inbox", "--unread").strip() == "Nothing unread."
    assert cli.ok("inbox").strip().endswith("Nothing unread.")

    for neither_or_both in (("inbox", "read"), ("inbox", "read", "ntf_hannah_berg_1", "--all")):
        refused = cli(*neither_or_both)
        assert refused.returncode == 2 and "give --all; not both" in refused.stderr


def test_an_empty_inbox_says_so(cli, notify):
    cli.ok("login", "tomasz.nowak")
    assert cli.ok("inbox").strip() == "Your inbox is empty."


# --- preferences -----------------------------------------------------------------------------------


def test_prefs_shows_the_defaults_and_changes_one_kind_and_the_quiet_hours(cli, notify):
    me = "mei.tanaka"
    notify.db.people.insert_one({"_id": me, "time_zone": "Asia/Tokyo"})
    cli.ok("login", me)

    shown = cli.ok("prefs")
    assert shown.startswith(f"Notification preferences of {me} (time zone Asia/Tokyo)")
    assert row(shown, "approval-requested").split() == ["approval-requested", "inbox,", "email", "no"]
    assert row(shown, "item-escalation").split() == ["item-escalation", "inbox", "no"]
    assert row(shown, "digest  ").split() == ["digest", "email", "no"]
    assert "Quiet hours: none." in shown

    changed = cli.ok("prefs", "set", "checkin-reminder", "--channels", "email", "--digest")
    assert changed.strip() == "checkin-reminder now goes to email, gathered into the weekly digest."
    stored = notify.db.preferences.find_one({"_id": me})
    assert stored["kinds"][kinds.CHECKIN_REMINDER] == {"channels": [kinds.EMAIL], "digest": True}
    # Every other kind was sent back as it was: none of them changed.
    for kind in kinds.KINDS:
        if kind != kinds.CHECKIN_REMINDER:
            assert kinds.channels_for(stored, kind) == kinds.DEFAULT_CHANNELS[kind], kind
            assert not kinds.wants_digest(stored, kind), kind

    off = cli.ok("prefs", "set", "attention", "--channels", "none")
    assert off.strip() == "attention now is turned off (no channels), sent at once."
    # A proto-style name works too; without --channels the channels stay.
    undigested = cli.ok("prefs", "set", "CHECKIN_REMINDER", "--no-digest")
    assert undigested.strip() == "checkin-reminder now goes to email, sent at once."
    stored = notify.db.preferences.find_one({"_id": me})
    assert stored["kinds"][kinds.CHECKIN_REMINDER] == {"channels": [kinds.EMAIL], "digest": False}
    assert stored["kinds"][kinds.ATTENTION] == {"channels": [], "digest": False}

    quiet = cli.ok("prefs", "quiet", "22:00", "07:00")
    assert quiet.startswith("Quiet hours: 22:00 to 07:00 (Asia/Tokyo): email waits until they end")
    stored = notify.db.preferences.find_one({"_id": me})
    assert stored["quiet_hours"] == {"start": "22:00", "end": "07:00"}
    assert stored["kinds"][kinds.ATTENTION] == {"channels": [], "digest": False}  # the mask left the kinds alone

    shown = cli.ok("prefs")
    assert row(shown, "checkin-reminder").split() == ["checkin-reminder", "email", "no"]
    assert row(shown, "attention").split() == ["attention", "none", "(off)", "no"]
    assert "Quiet hours: 22:00 to 07:00 (Asia/Tokyo)" in shown and "Last changed " in shown

    assert cli.ok("prefs", "quiet", "off").strip() == "Quiet hours off: email goes out at any hour."
    assert notify.db.preferences.find_one({"_id": me})["quiet_hours"] is None


def test_prefs_refuses_unknown_names_and_what_the_api_refuses(cli, notify):
    me = "arjun.patel"
    cli.ok("login", me)

    unknown = cli("prefs", "set", "approvals", "--channels", "inbox")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr.strip() == (
        "error: unknown notification kind 'approvals'; use one of approval-requested, approval-decided, "
        "approval-overdue, checkin-reminder, item-escalation, attention, digest, mention, parent-changed"
    )
    webhook = cli("prefs", "set", "digest", "--channels", "inbox,webhook")
    assert webhook.returncode == 2
    assert "error: unknown channel 'webhook' (webhooks are subscriptions an admin sets up)" in webhook.stderr
    nothing = cli("prefs", "set", "digest")
    assert nothing.returncode == 2 and "say what to change" in nothing.stderr
    half = cli("prefs", "quiet", "22:00")
    assert half.returncode == 2 and "give the start and the end of your quiet hours" in half.stderr

    # What only the API knows comes back as its field violations, one line each.
    inbox_kept = cli("prefs", "set", "approval-requested", "--channels", "email")
    assert inbox_kept.returncode == 1
    lines = inbox_kept.stderr.splitlines()
    assert lines[0] == "error: INVALID_ARGUMENT: the request has 1 problem(s):"
    assert lines[1].startswith("  - preferences.kinds[0].channels: approval requests always reach the inbox")
    not_digestible = cli("prefs", "set", "approval-requested", "--digest")
    assert "cannot be gathered into the digest" in not_digestible.stderr
    bad_time = cli("prefs", "quiet", "25:00", "07:00")
    assert bad_time.returncode == 1 and "  - preferences.quiet_hours.start: " in bad_time.stderr

    for result in (unknown, webhook, nothing, half, inbox_kept, not_digestible, bad_time):
        assert "Traceback" not in result.stderr
    assert notify.db.preferences.find_one({"_id": me}) is None  # nothing was stored


# --- the delivery log ------------------------------------------------------------------------------


def test_admins_read_the_delivery_log_filtered_and_others_are_refused(cli, notify):
    notify.db.deliveries.insert_many([
        delivery(1, "hannah.berg", kinds.INBOX, "SENT"),
        delivery(2, "hannah.berg", kinds.EMAIL, "FAILED", tries=5, last_error="550 5.1.1 mailbox unavailable"),
        delivery(3, "li.wei", kinds.EMAIL, "PENDING", tries=2, last_error="421 4.7.0 try again later"),
        delivery(4, "li.wei", kinds.WEBHOOK, "SKIPPED"),
    ])
    cli.ok("login", "kofi.mensah")  # an admin of the demo organisation

    log = cli.ok("deliveries")
    rows = table_rows(log)
    assert [line.split()[-1] for line in rows] == ["dlv_cli_04", "dlv_cli_03", "dlv_cli_02", "dlv_cli_01"]
    failed = row(log, "dlv_cli_02")
    assert failed.split()[:8] == [*local(T0 + timedelta(minutes=2)).split(), "failed", "email", "approval-requested",
                                  "hannah.berg", "hannah.berg@example.com", "5"]
    assert "550 5.1.1 mailbox unavailable" in failed
    assert local(T0 + timedelta(minutes=13)) in row(log, "dlv_cli_03", "pending", "421 4.7.0 try again later")
    assert local(T0 + timedelta(minutes=1, seconds=2)) in row(log, "dlv_cli_01", "sent", "inbox")
    assert "sub_hook" in row(log, "dlv_cli_04", "skipped", "webhook")

    assert [line.split()[-1] for line in table_rows(cli.ok("deliveries", "--status", "failed"))] == ["dlv_cli_02"]
    assert [line.split()[-1] for line in table_rows(cli.ok("deliveries", "--recipient", "@li.wei"))] == \
        ["dlv_cli_04", "dlv_cli_03"]
    assert [line.split()[-1] for line in table_rows(cli.ok("deliveries", "--channel", "email",
                                                           "--recipient", "li.wei"))] == ["dlv_cli_03"]
    assert cli.ok("deliveries", "--channel", "inbox", "--status", "failed").strip() == "No deliveries match."
    newest = cli.ok("deliveries", "--limit", "3")
    assert len(table_rows(newest)) == 3 and "The newest 3 shown; see more with --limit." in newest

    cli.ok("login", "hannah.berg")
    refused = cli("deliveries")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.strip() == \
        "error: PERMISSION_DENIED: only admins may read the delivery log and manage webhook subscriptions"


# --- reaching the API ----------------------------------------------------------------------------


def test_an_unreachable_notify_api_names_its_address_and_setting(cli):
    cli.ok("login", "jonas.weber")
    address = f"127.0.0.1:{free_port()}"
    from_env = cli("inbox", env={"V2MOM_NOTIFY_ADDR": address})
    from_flag = cli("inbox", "--notify-addr", address, env={"V2MOM_NOTIFY_ADDR": "127.0.0.1:1"})  # the flag wins
    for result in (from_env, from_flag):
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stderr.splitlines() == [
            f"error: cannot reach the notify API at {address}",
            "  start it with `make run`, or point --notify-addr / V2MOM_NOTIFY_ADDR at a running one",
        ]


# --- names -----------------------------------------------------------------------------------------


def test_kinds_and_channels_are_named_as_people_say_them():
    assert notify_commands.kind_value("checkin-reminder") == notify_pb2.NOTIFICATION_KIND_CHECKIN_REMINDER
    assert notify_commands.kind_value(" Item_Escalation ") == notify_pb2.NOTIFICATION_KIND_ITEM_ESCALATION
    assert notify_commands.kind_value("NOTIFICATION_KIND_DIGEST") == notify_pb2.NOTIFICATION_KIND_DIGEST
    assert list(notify_commands.KINDS) == ["approval-requested", "approval-decided", "approval-overdue",
                                           "checkin-reminder", "item-escalation", "attention", "digest", "mention",
                                           "parent-changed"]
    with pytest.raises(CliError, match="unknown notification kind 'unspecified'"):
        notify_commands.kind_value("unspecified")
    assert notify_commands.channel_values("email, inbox,email") == [notify_pb2.CHANNEL_EMAIL, notify_pb2.CHANNEL_INBOX]
    assert notify_commands.channel_values("none") == []
    with pytest.raises(CliError, match="unknown channel 'sms'"):
        notify_commands.channel_values("sms")
