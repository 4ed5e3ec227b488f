"""Naming a measure, a method or a milestone of a published V2MOM without its id.

People type the start of a title ("robots", "Ship the telemetry") more easily
than a server-assigned id; both work. An id wins over a title, and a title
prefix must name exactly one: otherwise the error lists the candidates.
"""

from dataclasses import dataclass

from v2mom.v1 import goals_pb2

from .errors import CliError

MEASURE, METHOD = "measure", "method"


@dataclass(frozen=True)
class Item:
    kind: str
    id: str
    title: str
    # Methods only: their milestones, as (id, title).
    milestones: tuple[tuple[str, str], ...] = ()


def items_of(content: goals_pb2.V2MOMContent) -> list[Item]:
    measures = [Item(MEASURE, m.id, m.title) for m in content.measures]
    methods = [
        Item(METHOD, m.id, m.title, tuple((milestone.id, milestone.title) for milestone in m.milestones))
        for m in content.methods
    ]
    return measures + methods


def find_item(content: goals_pb2.V2MOMContent, name: str) -> Item:
    """The measure or method `name` names: its id, or the start of its title."""
    return _pick(name, [(item.id, item.title, item) for item in items_of(content)], "measure or method")


def find_milestone(item: Item, name: str) -> str:
    """The id of the method's milestone that `name` names."""
    return _pick(name, [(mid, title, mid) for mid, title in item.milestones], f"milestone of {item.title!r}")


def pick(name: str, choices: list[tuple[str, str, object]], what: str):
    """The value of the (id, title, value) choice that `name` names: its id, or the start of its title."""
    return _pick(name, choices, what)


def _pick(name: str, choices: list[tuple[str, str, object]], what: str):
    by_id = [value for choice_id, _, value in choices if choice_id == name]
    if by_id:
        return by_id[0]
    wanted = _folded(name)
    matches = [(title, value) for _, title, value in choices if _folded(title).startswith(wanted)] if wanted else []
    if len(matches) == 1:
        return matches[0][1]
    if not matches:
        known = "; ".join(f"{title} ({choice_id})" for choice_id, title, _ in choices) or "none"
        raise CliError(f"no {what} is called {name!r}; there are: {known}", exit_code=2)
    titles = "; ".join(title for title, _ in matches)
    raise CliError(f"{name!r} could be any of: {titles}. Give more of the title, or the id", exit_code=2)


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()
