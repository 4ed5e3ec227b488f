"""Carrying a V2MOM's content into a new cycle (CopyV2MOM), and a template's into a new V2MOM. Pure, no store.

The guide's advice for a new year: keep the values steady, adapt methods and
measures, reassess obstacles. So the owner chooses what comes along (whole
parts or single items); methods finished last cycle stay behind unless asked
for; every item gets a new id, remembers the one it came from
(``copied_from``), and its links follow it (a link to an item left behind is
dropped); each measure starts from where the last cycle ended (its final value
becomes the baseline); dates move by the distance between the two cycles'
starts; milestones start undone.
"""

from dataclasses import dataclass, field
from datetime import date, timedelta

from services.platform.core.ids import new_id

PARTS = {"values": "val", "methods": "mth", "obstacles": "obs", "measures": "msr"}


@dataclass(frozen=True)
class Choice:
    omit_parts: frozenset[str] = frozenset()
    omit_item_ids: frozenset[str] = frozenset()
    include_completed_methods: bool = False
    completed_method_ids: frozenset[str] = frozenset()
    final_values: dict[str, float] = field(default_factory=dict)
    shift: timedelta = timedelta(0)
    mark_origin: bool = True  # False for a template: its items come from no earlier V2MOM
    # The old parent's method ids -> the new parent's copies of them (published), for methods' `supports`.
    parent_methods: dict[str, str] = field(default_factory=dict)


def is_completed(method: dict, completed_ids: frozenset[str]) -> bool:
    """Completed: reported so (check-ins) or every milestone done."""
    milestones = method.get("milestones") or []
    return method["id"] in completed_ids or (bool(milestones) and all(m.get("done") for m in milestones))


def copied_content(content: dict, choice: Choice) -> dict:
    """The new content: chosen items under new ids, links, baselines and dates carried over."""
    kept = {part: [item for item in content.get(part, []) if _kept(part, item, choice)] for part in PARTS}
    new_ids = {part: {item["id"]: new_id(prefix) for item in kept[part]} for part, prefix in PARTS.items()}
    copied = {"title": content.get("title", ""), "vision": content.get("vision", "")}
    for part in PARTS:
        copied[part] = [_item(part, item, new_ids, choice) for item in kept[part]]
    return copied


def _kept(part: str, item: dict, choice: Choice) -> bool:
    if part in choice.omit_parts or item["id"] in choice.omit_item_ids:
        return False
    return not (part == "methods" and not choice.include_completed_methods
                and is_completed(item, choice.completed_method_ids))


def _item(part: str, item: dict, new_ids: dict[str, dict[str, str]], choice: Choice) -> dict:
    copied = {**item, "id": new_ids[part][item["id"]]}
    copied.pop("copied_from", None)
    if choice.mark_origin:
        copied["copied_from"] = item["id"]
    if "value_ids" in item:
        copied["value_ids"] = _links(item["value_ids"], new_ids["values"])
    if "method_ids" in item:
        copied["method_ids"] = _links(item["method_ids"], new_ids["methods"])
    if "supports" in item:  # cascading: what it carries out above follows to the parent's copies, or goes
        copied["supports"] = _links(item["supports"], choice.parent_methods)
    for key in ("start_date", "due_date"):
        if key in item:
            copied[key] = _moved(item[key], choice.shift)
    if part == "methods":
        copied["milestones"] = [{**m, "id": new_id("mil"), "done": False, "due_date": _moved(m.get("due_date"), choice.shift)}
                                for m in item.get("milestones", [])]
    if part == "measures" and item["id"] in choice.final_values:
        copied["baseline"] = choice.final_values[item["id"]]
    return copied


def _links(ids: list[str], new_ids: dict[str, str]) -> list[str]:
    return [new_ids[old] for old in ids if old in new_ids]


def _moved(day: str | None, shift: timedelta) -> str | None:
    return (date.fromisoformat(day) + shift).isoformat() if day else day
