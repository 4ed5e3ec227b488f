"""Guidance on a V2MOM's quality, after the domain guide.

Errors block submission; warnings and info are advice. Works on the stored
(document) form of the content so it needs no protobuf.
"""

import math
import re
from dataclasses import dataclass

ERROR = "ERROR"
WARNING = "WARNING"
INFO = "INFO"

# The guide: "three to five values are easier to remember"; methods 5-8 keep
# focus without leaving the vision uncovered.
VALUES_RANGE = (3, 5)
METHODS_RANGE = (5, 8)

VAGUE_WORDS = (
    "improve", "improved", "improving", "better", "enhance", "optimize", "optimise",
    "increase", "reduce", "grow", "more", "less", "faster", "stronger", "boost", "maximize",
)
JARGON = (
    "synergy", "synergies", "leverage", "paradigm", "holistic", "best-in-class", "world-class",
    "move the needle", "low-hanging fruit", "value-add", "circle back", "deep dive", "bandwidth",
    "stakeholder-centric", "thought leadership", "game changer", "game-changer", "disrupt",
    "next-generation", "robust", "seamless", "scalable solution", "empower", "actionable insights",
)
_VAGUE = re.compile(r"\b(" + "|".join(VAGUE_WORDS) + r")\b", re.IGNORECASE)
_JARGON = re.compile(r"(?<![\w-])(" + "|".join(re.escape(j) for j in JARGON) + r")(?![\w-])", re.IGNORECASE)
# A number or a date anchors a vague verb: "improve NPS to 45", "by Q3", "by March".
# Whole month names only: a bare prefix made "marketing", "decrease" or "junior" count as
# dates. "May" counts only after a preposition, or "we may improve things" would pass.
_MONTHS = r"jan(uary)?|feb(ruary)?|mar(ch)?|apr(il)?|june?|july?|aug(ust)?|sept?(ember)?|oct(ober)?|nov(ember)?|dec(ember)?"
_ANCHOR = re.compile(
    r"\d|\b(q[1-4]|h[12]|" + _MONTHS + r")\b|\b(by|in|before|until|end of)\s+may\b", re.IGNORECASE
)


@dataclass(frozen=True)
class Finding:
    severity: str
    field_path: str
    code: str
    message: str


def lint(content: dict, has_parent: bool = False) -> list[Finding]:
    """``has_parent``: the V2MOM aligns to a parent, so each method should carry out one of its methods."""
    findings: list[Finding] = []
    findings += _lint_vision(content)
    findings += _lint_values(content)
    findings += _lint_methods(content)
    findings += _lint_measures(content)
    findings += _lint_measure_kinds(content.get("measures", []))
    findings += _lint_obstacles(content)
    if has_parent:
        findings += _lint_cascade(content)
    findings += _lint_weights(content.get("methods", []), "content.methods", "method")
    findings += _lint_weights(content.get("measures", []), "content.measures", "measure")
    return findings


def has_errors(findings: list[Finding]) -> bool:
    return any(f.severity == ERROR for f in findings)


def _lint_vision(content: dict) -> list[Finding]:
    if not content.get("vision", "").strip():
        return [Finding(ERROR, "content.vision", "vision.missing", "Write a vision: the end goal this V2MOM serves.")]
    return _wording("content.vision", content["vision"])


def _lint_values(content: dict) -> list[Finding]:
    values = content.get("values", [])
    findings: list[Finding] = []
    low, high = VALUES_RANGE
    if not values:
        findings.append(Finding(ERROR, "content.values", "values.missing", "Name at least one value."))
    elif not low <= len(values) <= high:
        findings.append(
            Finding(WARNING, "content.values", "values.count", f"Keep {low} to {high} values; this has {len(values)}.")
        )
    linked = {vid for m in content.get("methods", []) for vid in m.get("value_ids", [])}
    measured = _measured_values(content)
    for i, value in enumerate(values):
        path = f"content.values[{i}]"
        if not value.get("description", "").strip():
            findings.append(
                Finding(WARNING, f"{path}.description", "value.missing_behaviour", f"Say what behaviour '{value['name']}' means in daily work.")
            )
        if value["id"] not in linked:
            findings.append(
                Finding(WARNING, path, "value.unlinked", f"Value '{value['name']}' is linked to no method, so nothing puts it into practice.")
            )
        if value["id"] not in measured:
            findings.append(Finding(ERROR, path, "value.unmeasured",
                                    f"Nothing measures value '{value['name']}': link a measure to a method that carries it out, "
                                    "so its progress shows."))
        findings += _wording(f"{path}.description", value.get("description", ""))
    return findings


def _measured_values(content: dict) -> set[str]:
    """Values with a measure behind them: a measure links to a method that carries the value out (how a value's
    progress is read, checkins' progress.items_behind_value)."""
    measured_methods = {mid for measure in content.get("measures", []) for mid in measure.get("method_ids", [])}
    return {vid for m in content.get("methods", []) if m.get("id") in measured_methods for vid in m.get("value_ids", [])}


def _lint_measure_kinds(measures: list[dict]) -> list[Finding]:
    # The guide pairs results (lagging) with the activity that drives them (leading): one kind alone either
    # reports too late to steer or never shows the result. Measures of no stated kind are not judged.
    kinds = {m.get("kind") for m in measures} - {None, "", "MEASURE_KIND_UNSPECIFIED"}
    if kinds == {"MEASURE_KIND_LAGGING"}:
        return [Finding(WARNING, "content.measures", "measures.all_lagging",
                        "Every measure is lagging: add a leading one that shows early whether the methods work.")]
    if kinds == {"MEASURE_KIND_LEADING"}:
        return [Finding(WARNING, "content.measures", "measures.all_leading",
                        "Every measure is leading: add a lagging one that shows the result the vision asks for.")]
    return []


def _lint_methods(content: dict) -> list[Finding]:
    methods = content.get("methods", [])
    findings: list[Finding] = []
    low, high = METHODS_RANGE
    if not methods:
        findings.append(Finding(ERROR, "content.methods", "methods.missing", "Add the methods that will achieve the vision."))
    elif not low <= len(methods) <= high:
        findings.append(
            Finding(WARNING, "content.methods", "methods.count", f"Aim for {low} to {high} methods; this has {len(methods)}.")
        )
    for i, method in enumerate(methods):
        findings += _lint_method(f"content.methods[{i}]", method)
    return findings


def _lint_cascade(content: dict) -> list[Finding]:
    # Cascading: each level's methods carry out the level above's. A method that names none of the
    # parent's methods may be fine (local work), so this is advice, not a block.
    return [Finding(WARNING, f"content.methods[{i}].supports", "method.supports_nothing",
                    f"Method '{method.get('title') or '(untitled)'}' supports none of the parent's methods: "
                    "name the ones it carries out.")
            for i, method in enumerate(content.get("methods", [])) if not method.get("supports")]


def _lint_method(path: str, method: dict) -> list[Finding]:
    title = method.get("title") or "(untitled)"
    findings: list[Finding] = []
    if not method.get("owner_id"):
        findings.append(Finding(ERROR, f"{path}.owner_id", "method.missing_owner", f"Method '{title}' needs an owner."))
    if not method.get("due_date"):
        findings.append(Finding(ERROR, f"{path}.due_date", "method.missing_due_date", f"Method '{title}' needs a due date."))
    if not method.get("accountable_id"):
        findings.append(
            Finding(ERROR, f"{path}.accountable_id", "method.missing_accountable", f"Method '{title}' needs exactly one Accountable person.")
        )
    if not method.get("value_ids"):
        findings.append(
            Finding(WARNING, f"{path}.value_ids", "method.unlinked", f"Link method '{title}' to the value it puts into practice.")
        )
    findings += _wording(f"{path}.title", method.get("title", ""))
    return findings


def _lint_measures(content: dict) -> list[Finding]:
    measures = content.get("measures", [])
    if not measures:
        return [Finding(WARNING, "content.measures", "measures.missing", "Add measures so progress can be tracked.")]
    findings: list[Finding] = []
    for i, measure in enumerate(measures):
        path = f"content.measures[{i}]"
        title = measure.get("title") or "(untitled)"
        for field, label in (("baseline", "a baseline"), ("target", "a target"), ("unit", "a unit"), ("due_date", "a due date")):
            if measure.get(field) in (None, ""):
                findings.append(
                    Finding(ERROR, f"{path}.{field}", f"measure.missing_{field}", f"Measure '{title}' needs {label}.")
                )
        if measure.get("baseline") is not None and measure.get("baseline") == measure.get("target"):
            findings.append(
                Finding(WARNING, f"{path}.target", "measure.no_change", f"Measure '{title}' has its target equal to its baseline.")
            )
        findings += _wording(f"{path}.title", measure.get("title", ""))
    return findings


def _lint_obstacles(content: dict) -> list[Finding]:
    # A resolved obstacle needs nobody any more; an unresolved one without an owner or a method it
    # blocks is one nobody will work on (UpdateObstacle can fix both without a new approval).
    findings: list[Finding] = []
    for i, obstacle in enumerate(content.get("obstacles", [])):
        if obstacle.get("status") == "OBSTACLE_STATUS_RESOLVED":
            continue
        path, title = f"content.obstacles[{i}]", obstacle.get("title") or "(untitled)"
        if not obstacle.get("owner_id"):
            findings.append(Finding(WARNING, f"{path}.owner_id", "obstacle.missing_owner",
                                    f"Obstacle '{title}' needs an owner who will clear it."))
        if not obstacle.get("method_ids"):
            findings.append(Finding(WARNING, f"{path}.method_ids", "obstacle.unlinked",
                                    f"Link obstacle '{title}' to the methods it stands in the way of."))
    return findings


def _lint_weights(items: list[dict], path: str, noun: str) -> list[Finding]:
    weights = [item.get("weight") or 0.0 for item in items]
    if not any(weights):
        return []
    total = sum(weights)
    if not math.isclose(total, 100.0, abs_tol=0.01):
        return [
            Finding(ERROR, path, f"{noun}.weights_total", f"{noun.capitalize()} weights total {total:g}; they must total 100.")
        ]
    return []


def _wording(path: str, text: str) -> list[Finding]:
    findings: list[Finding] = []
    vague = _VAGUE.search(text or "")
    if vague and not _ANCHOR.search(text):
        findings.append(
            Finding(WARNING, path, "wording.vague", f"'{vague.group(0)}' without a number or a date is vague: say by how much and by when.")
        )
    for match in dict.fromkeys(m.group(0).lower() for m in _JARGON.finditer(text or "")):
        findings.append(Finding(INFO, path, "wording.jargon", f"'{match}' is jargon: use plain words everyone understands."))
    return findings
