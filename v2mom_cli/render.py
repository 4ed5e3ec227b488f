"""Plain-text views for a terminal: tables, trees and the full V2MOM."""

import shutil
import textwrap
from collections.abc import Callable
from datetime import datetime

from v2mom.v1 import common_pb2, goals_pb2

NameOf = Callable[[str], str]

MAX_WIDTH = 100
TITLE_WIDTH = 52


def width() -> int:
    return min(shutil.get_terminal_size((MAX_WIDTH, 24)).columns, MAX_WIDTH)


def state_name(state: int) -> str:
    return goals_pb2.V2MOMState.Name(state).removeprefix("V2MOM_STATE_")


def level_name(level: int) -> str:
    return common_pb2.OrgLevel.Name(level).removeprefix("ORG_LEVEL_").lower()


def state_label(v2mom: goals_pb2.V2MOM) -> str:
    """The state, saying when a published version stands behind a newer working copy."""
    label = state_name(v2mom.state)
    behind = v2mom.published_revision and v2mom.state not in (
        goals_pb2.V2MOM_STATE_PUBLISHED, goals_pb2.V2MOM_STATE_ARCHIVED,
    )
    return f"{label} (published r{v2mom.published_revision})" if behind else label


def clip(text: str, limit: int = TITLE_WIDTH) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def table(headers: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "(none)"
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = [headers, *rows]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def date_text(value) -> str:
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}" if value.year else ""


def time_text(stamp) -> str:
    if not stamp.seconds:
        return ""
    return datetime.fromtimestamp(stamp.seconds).strftime("%Y-%m-%d %H:%M")


def number(value: float) -> str:
    return f"{value:g}"


def wrapped(text: str, indent: int) -> str:
    prefix = " " * indent
    return textwrap.fill(" ".join(text.split()), width=width(), initial_indent=prefix, subsequent_indent=prefix)


# --- lists ----------------------------------------------------------------------


def v2mom_table(v2moms) -> str:
    rows = [
        [v.id, state_label(v), level_name(v.level), v.cycle_id, v.owner_id, v.org_unit_id, clip(v.content.title)]
        for v in v2moms
    ]
    return table(["ID", "STATE", "LEVEL", "CYCLE", "OWNER", "UNIT", "TITLE"], rows)


def people_table(people) -> str:
    rows = [
        [p.id, p.display_name + ("" if p.active else " (left)"), clip(p.title, 36), p.org_unit_id, p.manager_id or "-",
         ",".join(p.roles) or "-"]
        for p in people
    ]
    return table(["ID", "NAME", "TITLE", "UNIT", "MANAGER", "ROLES"], rows)


def units_tree(units) -> str:
    """The org chart, children under their parent, as far as the units listed reach."""
    children: dict[str, list] = {}
    ids = {u.id for u in units}
    for unit in units:
        parent = unit.parent_id if unit.parent_id in ids else ""
        children.setdefault(parent, []).append(unit)

    def label(unit) -> str:
        return f"{unit.name} ({unit.id}) · {level_name(unit.level)} · led by {unit.leader_id or 'nobody'}"

    return tree_text(children.get("", []), lambda u: children.get(u.id, []), label)


def alignment_tree(root: goals_pb2.AlignmentNode, methods: bool = False) -> str:
    def label(node) -> str:
        return f"{node.title} [{state_name(node.state)}] · {level_name(node.level)} · {node.owner_id} · {node.id}"

    sections = [tree_text([root], lambda node: node.children, label)]
    if methods:
        sections.append(method_support(root))
    sections.append(cascade_gaps(root))
    return "\n\n".join(section for section in sections if section)


def method_support(root: goals_pb2.AlignmentNode) -> str:
    """Each method of a V2MOM with V2MOMs shown below it, and the child methods that carry it out
    (GetAlignmentTree's methods[].supported_by)."""
    lines: list[str] = []

    def walk(node) -> None:
        if node.children and node.methods:
            lines.append(f"  {node.title}")
            for method in node.methods:
                lines.append(f"    {method.title}")
                lines.extend(f"      <- {s.title} ({s.owner_id}, {s.v2mom_id})" for s in method.supported_by)
                if not method.supported_by:
                    lines.append("      <- nobody below")
        for child in node.children:
            walk(child)

    walk(root)
    return "Methods and the methods below that carry them out:\n" + "\n".join(lines) if lines else ""


def cascade_gaps(root: goals_pb2.AlignmentNode) -> str:
    """The methods no V2MOM below supports, V2MOM by V2MOM (GetAlignmentTree's unsupported_method_ids)."""
    lines: list[str] = []

    def walk(node) -> None:
        titles = {method.method_id: method.title for method in node.methods}
        if node.unsupported_method_ids:
            lines.append(f"  {node.title}: " + "; ".join(titles.get(i, i) for i in node.unsupported_method_ids))
        for child in node.children:
            walk(child)

    walk(root)
    return "Methods no V2MOM below supports:\n" + "\n".join(lines) if lines else ""


def tree_text(roots, children_of, label) -> str:
    lines: list[str] = []

    def walk(node, prefix: str, connector: str, child_prefix: str) -> None:
        lines.append(prefix + connector + label(node))
        kids = list(children_of(node))
        for i, kid in enumerate(kids):
            last = i == len(kids) - 1
            walk(kid, prefix + child_prefix, "└── " if last else "├── ", "    " if last else "│   ")

    for root in roots:
        walk(root, "", "", "")
    return "\n".join(lines)


def history_table(revisions) -> str:
    rows = []
    for r in revisions:
        note = r.reason
        if r.changed_paths and r.action == "UPDATE":
            note = f"{note} [changed {', '.join(r.changed_paths)}]".strip()
        rows.append([str(r.revision), time_text(r.time), r.action, r.actor_id, state_name(r.state), clip(note, 70)])
    return table(["REV", "WHEN", "ACTION", "BY", "STATE", "NOTE"], rows)


def lint_report(response: goals_pb2.LintV2MOMResponse) -> str:
    order = {goals_pb2.SEVERITY_ERROR: 0, goals_pb2.SEVERITY_WARNING: 1, goals_pb2.SEVERITY_INFO: 2}
    findings = sorted(response.findings, key=lambda f: order.get(f.severity, 3))
    rows = [
        [goals_pb2.Severity.Name(f.severity).removeprefix("SEVERITY_"), f.field_path, f"{f.message} ({f.code})"]
        for f in findings
    ]
    counts = {name: sum(1 for f in findings if f.severity == level) for name, level in (
        ("error", goals_pb2.SEVERITY_ERROR), ("warning", goals_pb2.SEVERITY_WARNING), ("note", goals_pb2.SEVERITY_INFO))}
    tally = ", ".join(f"{n} {name}{'s' if n != 1 else ''}" for name, n in counts.items() if n) or "no findings"
    verdict = "Ready to submit" if response.submittable else "Not ready to submit"
    body = table(["SEVERITY", "WHERE", "FINDING"], rows) + "\n\n" if rows else ""
    return f"{body}{verdict}: {tally}."


def person_card(person: common_pb2.Person, name_of: NameOf) -> str:
    lines = [f"{person.display_name} ({person.id})", f"{person.title} · {person.org_unit_id} · {person.email}"]
    lines.append(f"Manager: {_person(person.manager_id, name_of) if person.manager_id else 'none (top of the company)'}")
    lines.append(f"Roles: {', '.join(person.roles) or 'none'}")
    return "\n".join(lines)


# --- one V2MOM ---------------------------------------------------------------------


def v2mom_detail(v2mom: goals_pb2.V2MOM, name_of: NameOf, unit_name: str, parent_title: str) -> str:
    content = v2mom.content
    sections = [
        _heading_block(v2mom, name_of, unit_name, parent_title),
        "VISION\n" + wrapped(content.vision or "(none yet)", 2),
        "VALUES\n" + _values(content),
        "METHODS (in priority order)\n" + _methods(content, name_of),
        "OBSTACLES\n" + _obstacles(content, name_of),
        "MEASURES\n" + _measures(content, name_of),
    ]
    return "\n\n".join(sections)


def _heading_block(v2mom: goals_pb2.V2MOM, name_of: NameOf, unit_name: str, parent_title: str) -> str:
    lines = [
        v2mom.content.title or "(untitled)",
        f"{v2mom.id} · {level_name(v2mom.level)} V2MOM of {unit_name} ({v2mom.org_unit_id}) · {v2mom.cycle_id}",
        f"State: {state_name(v2mom.state)}, revision {v2mom.revision}"
        + (f" · published revision {v2mom.published_revision}" if v2mom.published_revision else " · never published"),
        f"Owner: {_person(v2mom.owner_id, name_of)}",
    ]
    if v2mom.state == goals_pb2.V2MOM_STATE_SUBMITTED:
        lines.append(f"Waiting for: {_person(v2mom.approver_id, name_of) if v2mom.approver_id else 'an admin'}")
    if v2mom.parent_id:
        lines.append(f"Aligned to: {parent_title or '(not visible to you)'} ({v2mom.parent_id})")
    if v2mom.HasField("parent_change_time"):
        lines.append(f"Parent changed: re-approved with changes {time_text(v2mom.parent_change_time)}, "
                     "after this V2MOM was last edited")
    if v2mom.changes_requested_reason:
        lines.append(f"Changes requested: {v2mom.changes_requested_reason}")
    if v2mom.showing_published:
        lines.append("Showing the published version.")
    elif v2mom.published_revision and v2mom.state != goals_pb2.V2MOM_STATE_PUBLISHED:
        lines.append("Showing the working copy; add --published to see what everyone else sees.")
    return "\n".join(lines)


def _person(person_id: str, name_of: NameOf) -> str:
    name = name_of(person_id)
    return person_id if name == person_id else f"{name} ({person_id})"


def _values(content) -> str:
    if not content.values:
        return "  (none yet)"
    return "\n".join(
        f"  {i}. {value.name}" + (f"\n{wrapped(value.description, 5)}" if value.description else "")
        for i, value in enumerate(content.values, 1)
    )


def _methods(content, name_of: NameOf) -> str:
    if not content.methods:
        return "  (none yet)"
    value_names = {v.id: v.name for v in content.values}
    return "\n\n".join(_method(i, m, value_names, name_of) for i, m in enumerate(content.methods, 1))


def _method(position: int, method, value_names: dict, name_of: NameOf) -> str:
    weight = f"  [{number(method.weight)}%]" if method.weight else ""
    lines = [f"  {position}. {method.title}{weight}"]
    if method.description:
        lines.append(wrapped(method.description, 5))
    dates = " → ".join(d for d in (date_text(method.start_date), date_text(method.due_date)) if d) or "no dates"
    lines.append(f"     Owner: {name_of(method.owner_id) if method.owner_id else 'nobody yet'} · {dates}")
    lines.append(f"     RACI: {_raci(method, name_of)}")
    if method.value_ids:
        lines.append(f"     Values: {'; '.join(value_names.get(v, v) for v in method.value_ids)}")
    for milestone in method.milestones:
        mark = "x" if milestone.done else " "
        lines.append(f"     [{mark}] {milestone.title}  {date_text(milestone.due_date)}".rstrip())
    return "\n".join(lines)


def _raci(method, name_of: NameOf) -> str:
    def people(ids) -> str:
        return ", ".join(name_of(i) for i in ids) or "-"

    accountable = name_of(method.accountable_id) if method.accountable_id else "-"
    return (
        f"A {accountable} · R {people(method.responsible_ids)} · "
        f"C {people(method.consulted_ids)} · I {people(method.informed_ids)}"
    )


def _method_numbers(content, method_ids) -> str:
    position = {m.id: str(i) for i, m in enumerate(content.methods, 1)}
    return ", ".join(position.get(i, i) for i in method_ids)


def _obstacles(content, name_of: NameOf) -> str:
    if not content.obstacles:
        return "  (none)"
    blocks = []
    for obstacle in content.obstacles:
        status = goals_pb2.ObstacleStatus.Name(obstacle.status).removeprefix("OBSTACLE_STATUS_").lower()
        owner = f", owner {name_of(obstacle.owner_id)}" if obstacle.owner_id else ""
        lines = [f"  • {obstacle.title}  ({status}{owner})"]
        if obstacle.description:
            lines.append(wrapped(obstacle.description, 4))
        if obstacle.method_ids:
            lines.append(f"    Affects methods {_method_numbers(content, obstacle.method_ids)}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def _measures(content, name_of: NameOf) -> str:
    if not content.measures:
        return "  (none yet)"
    blocks = []
    for measure in content.measures:
        weight = f"  [{number(measure.weight)}%]" if measure.weight else ""
        lines = [f"  • {measure.title}{weight}", f"    {_measure_line(measure, name_of)}"]
        if measure.method_ids:
            lines.append(f"    Driven by methods {_method_numbers(content, measure.method_ids)}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def _measure_line(measure, name_of: NameOf) -> str:
    baseline = number(measure.baseline) if measure.HasField("baseline") else "?"
    target = number(measure.target) if measure.HasField("target") else "?"
    parts = [f"{baseline} → {target} {measure.unit}".rstrip()]
    if measure.direction:
        parts[0] += f" ({goals_pb2.Direction.Name(measure.direction).removeprefix('DIRECTION_').lower()})"
    if measure.due_date.year:
        parts[0] += f" by {date_text(measure.due_date)}"
    if measure.kind:
        parts.append(goals_pb2.MeasureKind.Name(measure.kind).removeprefix("MEASURE_KIND_").lower())
    if measure.owner_id:
        parts.append(f"owner {name_of(measure.owner_id)}")
    return " · ".join(parts)
