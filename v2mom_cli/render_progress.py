"""Plain-text views of check-ins, progress and staleness."""

from datetime import datetime

from v2mom.v1 import checkins_pb2

from .render import clip, number, table, tree_text

BAR_WIDTH = 20
# Eighths of a cell, so a bar moves with every 0.625 %, not every 5 %.
BAR_PARTS = " ▏▎▍▌▋▊▉"
SPARKS = "▁▂▃▄▅▆▇█"


def status_name(status: int) -> str:
    if not status:
        return "-"
    return checkins_pb2.CheckinStatus.Name(status).removeprefix("CHECKIN_STATUS_").replace("_", " ").lower()


def kind_name(kind: int) -> str:
    return checkins_pb2.ItemKind.Name(kind).removeprefix("ITEM_KIND_").lower()


def percent(value: float) -> str:
    return f"{value:.1f}%"


def day_text(stamp) -> str:
    """The local date of a Timestamp; "never" when it is unset."""
    if not stamp.seconds and not stamp.nanos:
        return "never"
    return datetime.fromtimestamp(stamp.seconds).strftime("%Y-%m-%d")


def bar(value: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar for 0-100 %, `width` cells at 100 %."""
    eighths = round(max(0.0, min(100.0, value)) / 100 * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (BAR_PARTS[part] if part else "")).ljust(width)


def sparkline(values: list[float]) -> str:
    """One character per value, on the absolute 0-100 % scale (so a flat 90 % looks high, not flat)."""
    return "".join(SPARKS[min(len(SPARKS) - 1, int(max(0.0, v) / 100 * len(SPARKS)))] for v in values)


# --- one check-in -----------------------------------------------------------------------


def reading(checkin: checkins_pb2.Checkin) -> str:
    """What the check-in reports: a measure's value and how far that is, or a method's progress."""
    if checkin.HasField("value"):
        return f"{number(checkin.value)} ({percent(checkin.progress_percent)} of the way)"
    return f"{percent(checkin.progress_percent)} done"


def recorded(checkin: checkins_pb2.Checkin, title: str) -> str:
    flag = "--value" if checkin.HasField("value") else "--progress"
    details = [status_name(checkin.status)]
    if checkin.HasField("confidence"):
        details.append(f"confidence {checkin.confidence}/10")
    if checkin.completed_milestone_ids:
        details.append(f"milestones done: {', '.join(checkin.completed_milestone_ids)}")
    return "\n".join([
        f"Checked in on {kind_name(checkin.item_kind)} {title!r}: {reading(checkin)}, {'; '.join(details)}.",
        f"Check-in {checkin.id}, observed {day_text(checkin.observe_time)}. "
        f"A mistake? v2mom correct {checkin.id} --reason \"...\" {flag} ...",
    ])


def corrected(correction: checkins_pb2.Checkin) -> str:
    return (
        f"Corrected {correction.supersedes_id}: {correction.id} replaces it, {reading(correction)}, "
        f"{status_name(correction.status)}. The corrected check-in stays in the history (v2mom checkins --all)."
    )


def checkins_table(checkins, titles: dict[str, str]) -> str:
    rows = [
        [
            day_text(c.observe_time), clip(titles.get(c.item_id, c.item_id), 36), reading(c), status_name(c.status),
            str(c.confidence) if c.HasField("confidence") else "-", c.author_id, c.id, clip(_note(c), 48),
        ]
        for c in checkins
    ]
    return table(["OBSERVED", "ITEM", "READING", "STATUS", "CONF", "BY", "ID", "NOTE"], rows)


def _note(checkin: checkins_pb2.Checkin) -> str:
    notes = [checkin.comment] if checkin.comment else []
    if checkin.supersedes_id:
        notes.append(f"corrects {checkin.supersedes_id}: {checkin.correction_reason}")
    if checkin.superseded_by_id:
        notes.append(f"corrected by {checkin.superseded_by_id}")
    return " · ".join(notes)


# --- progress ---------------------------------------------------------------------------


def progress_report(progress: checkins_pb2.Progress, titles: dict[str, str], with_tree: bool) -> str:
    title = titles.get(progress.v2mom_id) or progress.v2mom_id
    lines = [
        f"{title}  ·  {progress.v2mom_id}  ·  {progress.owner_id}  ·  {progress.cycle_id}",
        f"Own progress    {percent(progress.progress_percent):>6}  {bar(progress.progress_percent)}",
        f"With its tree   {percent(progress.tree_progress_percent):>6}  {bar(progress.tree_progress_percent)}",
        "",
        values_table(progress.values),
        "",
        items_table(progress.items),
    ]
    if with_tree:
        lines += ["", "TREE (own · with its tree)", progress_tree(progress, titles)]
    return "\n".join(lines)


def values_table(values) -> str:
    """Each value's progress and what it is read from (checkins' ValueProgress)."""
    rows = [[clip(value.name or value.value_id, 44), f"{percent(value.progress_percent):>6}", bar(value.progress_percent),
             _behind(value)] for value in values]
    return table(["VALUE", "PROGRESS", "", "FROM"], rows)


def _behind(value: checkins_pb2.ValueProgress) -> str:
    if not value.item_ids:
        return "nothing measures it"
    noun = "measure" if value.kind == checkins_pb2.ITEM_KIND_MEASURE else "method"
    return f"{len(value.item_ids)} {noun}{'s' if len(value.item_ids) > 1 else ''}"


def items_table(items) -> str:
    rows = [
        [kind_name(item.kind), clip(item.title, 44), status_name(item.status), percent(item.progress_percent),
         day_text(item.last_checkin_time), _flags(item)]
        for item in items
    ]
    return table(["KIND", "ITEM", "STATUS", "PROGRESS", "LAST CHECK-IN", "FLAGS"], rows)


def _flags(item: checkins_pb2.ItemProgress) -> str:
    # Overdue implies stale; say the stronger one only.
    return "overdue" if item.overdue else "stale" if item.stale else ""


def progress_tree(progress: checkins_pb2.Progress, titles: dict[str, str]) -> str:
    def label(node: checkins_pb2.Progress) -> str:
        title = titles.get(node.v2mom_id) or node.v2mom_id
        return (f"{title} · {node.owner_id} · {percent(node.progress_percent)} · "
                f"{percent(node.tree_progress_percent)}")

    return tree_text([progress], lambda node: node.children, label)


def history_chart(title: str, snapshots) -> str:
    if not snapshots:
        return f"No progress recorded for {title!r} yet: nobody has checked in on it."
    rows = [
        [f"{s.week_start.year:04d}-{s.week_start.month:02d}-{s.week_start.day:02d}",
         f"{percent(s.progress_percent):>6}", bar(s.progress_percent), f"{percent(s.tree_progress_percent):>6}"]
        for s in snapshots
    ]
    trend = sparkline([s.progress_percent for s in snapshots])
    return "\n".join([
        f"{title}: progress per week",
        "",
        table(["WEEK OF", "OWN", "", "TREE"], rows),
        "",
        f"Trend (own, oldest first): {trend}",
    ])


# --- staleness ---------------------------------------------------------------------------


def stale_table(items) -> str:
    if not items:
        return "Nothing stale: every measure and method had a check-in within its cadence."
    rows = [
        [checkins_pb2.Staleness.Name(i.staleness).removeprefix("STALENESS_").lower(), kind_name(i.kind),
         clip(i.title, 44), i.owner_id, day_text(i.last_checkin_time), day_text(i.stale_since_time), i.v2mom_id]
        for i in items
    ]
    return "\n".join([
        table(["STATE", "KIND", "ITEM", "OWNER", "LAST CHECK-IN", "STALE SINCE", "V2MOM"], rows),
        "",
        "Check in with: v2mom checkin <v2mom> <item> ... (see v2mom checkin --help)",
    ])
