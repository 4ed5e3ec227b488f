"""v2mom: write, review and approve V2MOMs from a terminal.

Start with `v2mom login <person-id>`; every other command acts as that person.
"""

import argparse
import os
import sys
import textwrap
import traceback
from datetime import date

import grpc

from v2mom_format import yaml_content

from . import checkins, commands, directory, discussion, events, export, notify, orphans, planning, refs
from .errors import CliError, describe_rpc_error
from .session import check_environment
from .session import DEFAULT_ADDR, DEFAULT_CHECKINS_ADDR, DEFAULT_NOTIFY_ADDR

REFERENCES = textwrap.indent(refs.__doc__.split("\n", 2)[2].strip(), "  ")
EPILOG = f"""\
V2MOMs are named by id, or by reference:
{REFERENCES}

Measures and methods are named by id, or by the start of their title.

The goals API address comes from --addr, else V2MOM_GOALS_ADDR, else {DEFAULT_ADDR};
the check-ins API's from --checkins-addr, else V2MOM_CHECKINS_ADDR, else {DEFAULT_CHECKINS_ADDR};
the notify API's from --notify-addr, else V2MOM_NOTIFY_ADDR, else {DEFAULT_NOTIFY_ADDR}.
The token lives in ~/.config/v2mom/token, or wherever V2MOM_TOKEN_FILE points.
"""

FILE_FORMAT = "The file is YAML:\n\n" + yaml_content.__doc__.split("\n", 2)[2]


def build_parser() -> argparse.ArgumentParser:
    # --addr works before or after the command; after it, it wins.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--addr", default=argparse.SUPPRESS, help=f"goals API host:port (default {DEFAULT_ADDR})")
    common.add_argument(
        "--checkins-addr", default=argparse.SUPPRESS, help=f"check-ins API host:port (default {DEFAULT_CHECKINS_ADDR})"
    )
    common.add_argument(
        "--notify-addr", default=argparse.SUPPRESS, help=f"notify API host:port (default {DEFAULT_NOTIFY_ADDR})"
    )
    parser = argparse.ArgumentParser(
        prog="v2mom", description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--addr", default=os.environ.get("V2MOM_GOALS_ADDR") or DEFAULT_ADDR, help="goals API host:port (see below)"
    )
    parser.add_argument(
        "--checkins-addr", default=os.environ.get("V2MOM_CHECKINS_ADDR") or DEFAULT_CHECKINS_ADDR,
        help="check-ins API host:port (see below)",
    )
    parser.add_argument(
        "--notify-addr", default=os.environ.get("V2MOM_NOTIFY_ADDR") or DEFAULT_NOTIFY_ADDR,
        help="notify API host:port (see below)",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)

    def command(name, handler, help_text, description=None, epilog=None):
        cmd = sub.add_parser(
            name, parents=[common], help=help_text, description=description or help_text, epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.set_defaults(handler=handler)
        return cmd

    login = command("login", commands.login, "act as a person from the directory (development tokens), "
                                             "or save a token from your identity provider (--token)")
    login.add_argument("person_id", nargs="?", help="their directory id, for example jonas.weber (development)")
    login.add_argument("--token", help="a token from the identity provider (production: V2MOM_ENV=production)")
    command("whoami", commands.whoami, "show who you are logged in as")

    people = command("people", commands.people, "list people in the directory")
    people.add_argument("--unit", help="only this org unit")
    people.add_argument("--manager", help="only the direct reports of this person")
    command("units", commands.units, "show the org units as a tree")

    listing = command("list", commands.list_v2moms, "list V2MOMs you can see")
    listing.add_argument("--owner", help="only this owner's (a person id, or me)")
    listing.add_argument("--unit", help="only this org unit's")
    listing.add_argument("--cycle", help="only this cycle's, for example FY2027")
    listing.add_argument("--state", help=f"only in this state: {', '.join(commands.STATES)}")
    listing.add_argument("--mine", action="store_true", help="only your own")
    listing.add_argument("--parent-changed", action="store_true",
                         help="only those whose parent's published content changed since they were last edited")

    show = command("show", commands.show, "show a V2MOM: vision, values, methods, obstacles, measures")
    show.add_argument("v2mom", help="id or reference (see `v2mom --help`)")
    show.add_argument("--published", action="store_true", help="the published version, not the working copy")
    show.add_argument("--yaml", action="store_true", help="print it as a file for `v2mom edit -f`")

    create = command("create", commands.create, "create a V2MOM from a YAML file, or from a template", epilog=FILE_FORMAT)
    create.add_argument("-f", "--file", help="the YAML file ('-' reads standard input)")
    create.add_argument("--template", help="start from this template instead (see `v2mom templates`)")
    create.add_argument("--cycle", help="with --template: the cycle (default the current one)")
    create.add_argument("--unit", help="with --template: the org unit, for team, department and company templates")

    edit = command(
        "edit", commands.edit, "replace the sections of a V2MOM that a YAML file contains",
        description="Replaces the sections the file contains (title, vision, values, methods, obstacles, "
        "measures, parent) and leaves the others as they are. `v2mom show <id> --yaml` gives a file to start from.",
        epilog=FILE_FORMAT,
    )
    edit.add_argument("v2mom", help="id or reference")
    edit.add_argument("-f", "--file", required=True, help="the YAML file ('-' reads standard input)")
    edit.add_argument("--reason", help="why: required once the V2MOM has been published")

    lint = command("lint", commands.lint, "check a V2MOM or a file against the V2MOM guidance", epilog=FILE_FORMAT)
    lint.add_argument("v2mom", nargs="?", help="id or reference")
    lint.add_argument("-f", "--file", help="lint this YAML file instead of a stored V2MOM")

    command("submit", commands.submit, "send a V2MOM to your manager for approval").add_argument("v2mom")
    approve = command("approve", commands.approve, "approve and publish a V2MOM waiting for you")
    approve.add_argument("v2mom")
    approve.add_argument("--comment", help="a note for the owner")
    changes = command("request-changes", commands.request_changes, "send a submitted V2MOM back to its owner")
    changes.add_argument("v2mom")
    changes.add_argument("--reason", required=True, help="what to change, for the owner")
    archive = command("archive", commands.archive, "archive a V2MOM (final)")
    archive.add_argument("v2mom")
    archive.add_argument("--reason", help="why, for the history")

    command("pending", commands.pending, "list V2MOMs waiting for your approval")
    command("history", commands.history, "list a V2MOM's revisions: who did what, when and why").add_argument("v2mom")
    tree = command("tree", commands.tree, "show what aligns to a V2MOM, as a tree")
    tree.add_argument("v2mom")
    tree.add_argument("--depth", type=int, default=0, help="levels below it to show (1-10, default all)")
    tree.add_argument("--methods", action="store_true",
                      help="also each method and the methods of the V2MOMs below that say they carry it out")
    withdraw = command("withdraw", planning.withdraw, "take your submission back before it is decided (back to draft)")
    withdraw.add_argument("v2mom")
    withdraw.add_argument("--reason", help="why, for the history and your approver")
    add_checkin_commands(command)
    add_notify_commands(command, common)
    add_planning_commands(command, common)
    add_discussion_commands(command, common)
    events.add_commands(command)
    return parser


def add_discussion_commands(command, common) -> None:
    obstacle = command(
        "obstacle", discussion.obstacle, "show an obstacle of a published V2MOM, or change its status, owner or "
        "methods (no re-approval)",
        description="Obstacles are live: their status, owner and the methods they block change on the published "
        "V2MOM at once, recorded in its history. Without options it shows the obstacle, how long it has been open "
        "and whether that is too long (STALE). The V2MOM's owner, their managers, admins and the obstacle's owner "
        "may change it.",
    )
    obstacle.add_argument("v2mom", help="id or reference (see `v2mom --help`)")
    obstacle.add_argument("obstacle", help="the obstacle's id, or the start of its title")
    obstacle.add_argument("--status", choices=list(discussion.STATUSES), help="its new status")
    obstacle.add_argument("--owner", help="its new owner: me, @person, a person id, or none")
    obstacle.add_argument("--methods", help="the methods it blocks, comma-separated ids or title starts ('' for none)")
    obstacle.add_argument("--reason", help="why, for the history")

    def subcommand(subparsers, name, handler, help_text):
        cmd = subparsers.add_parser(name, parents=[common], prog=f"v2mom comment {name}", help=help_text,
                                    description=help_text)
        cmd.set_defaults(handler=handler)
        return cmd

    comment = command("comment", None, "comment on a V2MOM or one of its items; edit or delete your comment",
                      description="Comments go on the version you see: the working copy if you may see it (only "
                      "its readers see the comment), else the published one. @person in the text mentions them.")
    actions = comment.add_subparsers(dest="comment_command", metavar="{add,edit,delete}", required=True)
    add = subcommand(actions, "add", discussion.add_comment, "add a comment (or a reply)")
    add.add_argument("v2mom", help="id or reference")
    add.add_argument("text", help="what you have to say; @person mentions them")
    add.add_argument("--item", help="about this value, method, measure or obstacle (id or start of its title)")
    add.add_argument("--reply-to", metavar="COMMENT_ID", help="answer this comment (its thread, item and version)")
    add.add_argument("--mention", action="append", metavar="PERSON", help="also tell this person; repeatable")
    add.add_argument("--published", action="store_true", help="on the published version, seen by everyone")
    edit = subcommand(actions, "edit", discussion.edit_comment, "replace the text of your comment (the old is kept)")
    edit.add_argument("comment_id")
    edit.add_argument("text")
    subcommand(actions, "delete", discussion.delete_comment, "delete your comment (a tombstone stays in its thread)"
               ).add_argument("comment_id")

    listing = command("comments", discussion.comments, "show the discussion on a V2MOM, as threads, oldest first")
    listing.add_argument("v2mom", help="id or reference")
    listing.add_argument("--item", help="only about this value, method, measure or obstacle")


def add_planning_commands(command, common) -> None:
    def subcommand(subparsers, parent, name, handler, help_text):
        cmd = subparsers.add_parser(name, parents=[common], prog=f"v2mom {parent} {name}", help=help_text,
                                    description=help_text)
        cmd.set_defaults(handler=handler)
        return cmd

    cycles = command("cycles", planning.cycles, "list the planning cycles and their quarters; admins create, "
                     "change and close them")
    cycle_commands = cycles.add_subparsers(dest="cycles_command", metavar="{current,create,update,close}")
    subcommand(cycle_commands, "cycles", "current", planning.current_cycle, "show the cycle and quarter of today")
    create = subcommand(cycle_commands, "cycles", "create", planning.create_cycle, "create a cycle (admins)")
    create.add_argument("cycle_id", help="for example FY2028")
    create.add_argument("--start", type=_day, required=True, help="its first day, YYYY-MM-DD")
    create.add_argument("--end", type=_day, required=True, help="its last day, YYYY-MM-DD")
    create.add_argument("--quarters", action="store_true", help="cut it into four quarters of three months")
    update = subcommand(cycle_commands, "cycles", "update", planning.update_cycle, "change a cycle's dates or quarters (admins)")
    update.add_argument("cycle_id")
    update.add_argument("--start", type=_day)
    update.add_argument("--end", type=_day)
    update.add_argument("--quarters", action=argparse.BooleanOptionalAction, default=None,
                        help="cut it into four quarters of three months; --no-quarters removes them")
    close = subcommand(cycle_commands, "cycles", "close", planning.close_cycle,
                       "close a cycle: archive what is still in progress in it and open the next (admins)")
    close.add_argument("cycle_id")
    close.add_argument("--next", required=True, help="the cycle that follows: an existing one, or a new one with its dates")
    close.add_argument("--next-start", type=_day, help="a new next cycle's first day")
    close.add_argument("--next-end", type=_day, help="a new next cycle's last day")
    close.add_argument("--quarters", action="store_true", help="cut the new next cycle into quarters")
    close.add_argument("--reason", required=True, help="why, recorded on every V2MOM it archives")

    copy = command("copy", planning.copy, "copy a V2MOM into a new cycle as a draft (copy forward)",
                   description="Copies a V2MOM into another cycle as a draft: new ids, each item remembering the one "
                   "it came from; measures start from last cycle's final values (read from the check-ins API); "
                   "methods completed last cycle stay behind unless --include-completed; aligned to the new "
                   "cycle's V2MOM of the old parent's unit when there is one.")
    copy.add_argument("v2mom", help="the V2MOM to copy, for example me/FY2027 or unit:eng/FY2027")
    copy.add_argument("--to", required=True, help="the cycle to copy it into")
    copy.add_argument("--omit", help=f"leave whole parts out: comma-separated {', '.join(planning.PARTS)}")
    copy.add_argument("--drop", action="append", metavar="ITEM_ID", help="leave this item out (its id); repeatable")
    copy.add_argument("--include-completed", action="store_true", help="bring completed methods too")
    copy.add_argument("--no-baselines", action="store_true", help="keep the old baselines; ask check-ins nothing")
    copy.add_argument("--parent", help="align to this V2MOM instead (id or reference)")

    templates = command("templates", planning.templates, "list V2MOM templates; admins save and delete them")
    templates.add_argument("--level", help=f"only for this level: {', '.join(planning.LEVELS)}")
    template_commands = templates.add_subparsers(dest="templates_command", metavar="{show,save,delete}")
    subcommand(template_commands, "templates", "show", planning.show_template, "show a template").add_argument("template_id")
    save = subcommand(template_commands, "templates", "save", planning.save_template,
                      "save a YAML file (as for create; its level: says which) as a template (admins)")
    save.add_argument("template_id")
    save.add_argument("-f", "--file", required=True, help="the YAML file")
    save.add_argument("--name", help="default: the file's title")
    save.add_argument("--description")
    save.add_argument("--update", action="store_true", help="replace an existing template")
    delete = subcommand(template_commands, "templates", "delete", planning.delete_template, "delete a template (admins)")
    delete.add_argument("template_id")


def add_checkin_commands(command) -> None:
    statuses = list(checkins.STATUSES)
    record = command(
        "checkin", checkins.checkin, "record how a measure or a method of a published V2MOM is going",
        description="A measure takes --value (and --confidence); a method takes --progress (and --milestone).",
    )
    record.add_argument("v2mom", help="id or reference (see `v2mom --help`)")
    record.add_argument("item", help="the measure's or method's id, or the start of its title")
    record.add_argument("--status", required=True, choices=statuses, help="how it is going")
    record.add_argument("--value", type=float, help="a measure's current value")
    record.add_argument("--confidence", type=int, help="a measure: how sure you are it will reach its target, 0-10")
    record.add_argument("--progress", type=float, help="a method: how far it is, 0-100")
    record.add_argument("--milestone", action="append", help="a method's milestone now done (id or title); repeatable")
    record.add_argument("--comment", help="what is behind the number")
    record.add_argument("--observed", type=_day, help="the day it was so, YYYY-MM-DD (default now)")

    fix = command(
        "correct", checkins.correct, "correct a check-in: a new one replaces it, and the old one stays in the history",
        description="Only what you give changes; the rest is taken from the check-in you correct.",
    )
    fix.add_argument("checkin_id", help="the check-in's id (see `v2mom checkins`)")
    fix.add_argument("--reason", required=True, help="why it was wrong, for the history")
    fix.add_argument("--value", type=float, help="a measure's corrected value")
    fix.add_argument("--progress", type=float, help="a method's corrected progress, 0-100")
    fix.add_argument("--status", choices=statuses)
    fix.add_argument("--confidence", type=int, help="0-10, measures only")
    fix.add_argument("--comment")

    listing = command("checkins", checkins.list_checkins, "list a V2MOM's check-ins, newest first")
    listing.add_argument("v2mom", help="id or reference")
    listing.add_argument("--item", help="only this measure or method (id or start of its title)")
    listing.add_argument("--all", action="store_true", help="include check-ins that were corrected since")

    progress = command("progress", checkins.progress, "show how far a V2MOM has come, item by item")
    progress.add_argument("v2mom", help="id or reference")
    progress.add_argument("--tree", action="store_true", help="also the V2MOMs aligned below it")
    history = command("progress-history", checkins.progress_history, "show a V2MOM's progress week by week")
    history.add_argument("v2mom", help="id or reference")

    exporting = command(
        "export", export.export, "write a subtree's V2MOMs, progress and latest check-ins to a CSV or XLSX file",
        description="Every V2MOM you may see in an org unit and the units below it, in a cycle: one row per "
        "value, method, measure and obstacle, with its V2MOM's owner, progress and latest check-in.")
    exporting.add_argument("--unit", help="the org unit at the top (default: your own)")
    exporting.add_argument("--cycle", help="the cycle (default: the current one)")
    exporting.add_argument("--format", choices=sorted(export.WRITERS), default="xlsx", help="csv or xlsx (default)")
    exporting.add_argument("-o", "--output", help="the file to write (default: v2moms-<unit>-<cycle>.<format>)")
    exporting.add_argument("--include-archived", action="store_true", help="also archived V2MOMs")

    org = command("directory", None, "HR and admins: bring people in from an HRIS export; hand on what leavers left")
    org_commands = org.add_subparsers(dest="directory_command", metavar="{import,orphans,transfer}", required=True)
    importing = org_commands.add_parser(
        "import", prog="v2mom directory import", help="import people from a CSV file",
        description="Imports people from an HRIS export: a CSV with the header employee_id, name, org_unit "
        "(an id or a path such as acme/eng/platform) and optionally email, manager_id (their employee id), "
        "title, time_zone (IANA), status (active, on leave, terminated), username, locale, start_date, "
        "end_date. The whole file is checked first; any bad row rejects it with its line number.")
    importing.set_defaults(handler=directory.import_csv)
    importing.add_argument("file", help="the CSV file")
    importing.add_argument("--dry-run", action="store_true", help="print what would change, write nothing")
    importing.add_argument("--allow-mass-deactivation", action="store_true",
                           help="go ahead although more than 10%% of the active people would be deactivated")
    listing = org_commands.add_parser(
        "orphans", prog="v2mom directory orphans", help="list what waits on someone who can no longer act",
        description="V2MOMs whose owner left, submissions waiting on an approver who left, and V2MOMs of retired "
        "units, each with the successor the directory suggests (the nearest active manager).")
    listing.set_defaults(handler=orphans.orphans)
    moving = org_commands.add_parser(
        "transfer", prog="v2mom directory transfer", help="give a V2MOM to a successor",
        description="Moves a live V2MOM to a new owner (an orphan's successor, a unit's new leader): recorded in "
        "its history as TRANSFER; state, content and approvals stay, and a submission goes to the successor's "
        "manager. HR, admins and the owner's managers may.")
    moving.set_defaults(handler=orphans.transfer)
    moving.add_argument("v2mom", help="id or reference")
    moving.add_argument("--to", required=True, help="the successor's person id")
    moving.add_argument("--reason", help="why, for the history (default: transferred to <successor>)")

    stale = command("stale", checkins.stale, "list measures and methods that are stale or overdue for a check-in")
    stale.add_argument("--owner", help="whose items: me (the default), @person or a person id")
    stale.add_argument("--unit", help="the items of an org unit and every unit below it")


def add_notify_commands(command, common) -> None:
    def subcommand(subparsers, parent, name, handler, help_text, description=None):
        cmd = subparsers.add_parser(
            name, parents=[common], prog=f"v2mom {parent} {name}", help=help_text, description=description or help_text,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.set_defaults(handler=handler)
        return cmd

    inbox = command(
        "inbox", notify.inbox, "list your notifications, newest first, and how many are unread",
        description="Your notifications, newest first: when, what kind, the title, its id and link; "
        "● marks the unread ones. `v2mom inbox read` marks them read.",
    )
    inbox.usage = "v2mom inbox [--unread] [--limit N]\n       v2mom inbox read ID... | --all"
    inbox.add_argument("--unread", action="store_true", help="only the unread ones")
    inbox.add_argument("--limit", type=int, default=20, metavar="N", help="show at most N (default 20)")
    inbox_commands = inbox.add_subparsers(dest="inbox_command", metavar="{read}")
    mark = subcommand(
        inbox_commands, "inbox", "read", notify.mark_read, "mark notifications read",
        description="Marks the named notifications read, or with --all every one in your inbox. "
        "Marking one read again changes nothing.",
    )
    mark.add_argument("ids", nargs="*", metavar="ID", help="a notification's id (see `v2mom inbox`)")
    mark.add_argument("--all", action="store_true", help="mark your whole inbox read")

    kinds = ", ".join(notify.KINDS)
    prefs = command(
        "prefs", notify.show_preferences, "show where each kind of notification goes, and your quiet hours",
        description="Shows, per kind of notification, the channels it goes to (inbox, email) and whether it is "
        "gathered into the weekly digest; your quiet hours and time zone. "
        "`v2mom prefs set` and `v2mom prefs quiet` change them.",
        epilog=f"Kinds: {kinds}.",
    )
    prefs.usage = ("v2mom prefs\n       v2mom prefs set KIND [--channels inbox,email] [--digest | --no-digest]\n"
                   "       v2mom prefs quiet HH:MM HH:MM | off")
    prefs_commands = prefs.add_subparsers(dest="prefs_command", metavar="{set,quiet}")
    set_kind = subcommand(
        prefs_commands, "prefs", "set", notify.set_kind, "choose where one kind of notification goes",
        description="Changes one kind; the others stay as they are. Approval requests always reach the inbox. "
        f"Kinds: {kinds}.",
    )
    set_kind.add_argument("kind", help="the kind, for example checkin-reminder")
    set_kind.add_argument(
        "--channels", metavar="LIST", help="comma-separated: inbox,email, inbox, email, or none to turn it off"
    )
    set_kind.add_argument(
        "--digest", action=argparse.BooleanOptionalAction, default=None,
        help="gather it into the weekly digest instead of sending it at once (approval-decided, "
        "checkin-reminder, attention and mention only); --no-digest sends it at once again",
    )
    quiet = subcommand(
        prefs_commands, "prefs", "quiet", notify.set_quiet_hours, "set or turn off your quiet hours",
        description="Email that falls in your quiet hours waits until they end (your time zone; the inbox is "
        "not held back). A start after the end wraps midnight: `v2mom prefs quiet 22:00 07:00`. "
        "`v2mom prefs quiet off` turns them off.",
    )
    quiet.add_argument("start", metavar="START", help="when they start, HH:MM (24-hour, your time zone), or off")
    quiet.add_argument("end", nargs="?", metavar="END", help="when they end, HH:MM")

    log = command(
        "deliveries", notify.deliveries, "list the delivery log, newest first (admins)",
        description="Every delivery of a notification to a channel (inbox, email, webhook): its status, target, "
        "tries and last error, newest first. Admins only.",
    )
    log.add_argument("--recipient", help="only this person's: a person id, @person or me")
    log.add_argument("--status", choices=list(notify.DELIVERY_STATUSES), help="only in this status")
    log.add_argument("--channel", choices=list(notify.DELIVERY_CHANNELS), help="only through this channel")
    log.add_argument("--limit", type=int, default=50, metavar="N", help="show at most N (default 50)")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: use YYYY-MM-DD") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    context = commands.Context(args.addr, args.checkins_addr, args.notify_addr)
    try:
        check_environment()  # production refuses a development secret before anything is sent
        return args.handler(context, args)
    except CliError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return error.exit_code
    except yaml_content.ContentError as error:
        source = getattr(args, "file", None) or "the file"
        print(f"error: {source}: {error}", file=sys.stderr)
        return 1
    except grpc.RpcError as error:
        print("\n".join(describe_rpc_error(error, args.addr)), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a bug here must still not greet people with a traceback
        print(f"error: the v2mom CLI failed unexpectedly: {type(error).__name__}: {error}", file=sys.stderr)
        if os.environ.get("V2MOM_DEBUG"):
            traceback.print_exc()
        else:
            print("  run again with V2MOM_DEBUG=1 to see where", file=sys.stderr)
        return 1
    finally:
        context.close()


if __name__ == "__main__":
    sys.exit(main())
