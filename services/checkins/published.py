"""The parts of a published V2MOM that progress and staleness need.

Built from a ``v2mom_approved`` payload or from goals-api's published view,
so both roads lead to the same value.
"""

from dataclasses import dataclass
from datetime import datetime

from services.platform.core.clock import from_timestamp, to_millis
from v2mom.v1 import events_pb2, goals_pb2

from .progress import MEASURE, METHOD


@dataclass(frozen=True)
class PublishedItem:
    kind: str
    item_id: str
    title: str
    owner_id: str
    weight: float
    # Measures only: the scale a value is read on.
    baseline: float | None = None
    target: float | None = None
    direction: str = ""
    # ISO date, when the item has one.
    due_date: str = ""
    # What the item links to in the V2MOM: a measure's method ids, a method's value ids (values' progress).
    links: tuple[str, ...] = ()


@dataclass(frozen=True)
class PublishedV2MOM:
    v2mom_id: str
    # Goals' published revision: a structure never replaces a newer one.
    revision: int
    owner_id: str
    org_unit_id: str
    cycle_id: str
    parent_id: str
    title: str
    publish_time: datetime | None
    items: tuple[PublishedItem, ...]
    # The values, as {"id", "name"}: their progress is read from the items that link to them.
    values: tuple[dict, ...] = ()

    @property
    def item_ids(self) -> set[str]:
        return {item.item_id for item in self.items}

    @classmethod
    def from_event(cls, data: events_pb2.V2MOMEventData) -> "PublishedV2MOM":
        return cls._build(data.v2mom_id, data, data.revision, data.content)

    @classmethod
    def from_v2mom(cls, v2mom: goals_pb2.V2MOM) -> "PublishedV2MOM":
        return cls._build(v2mom.id, v2mom, v2mom.published_revision, v2mom.content)

    @classmethod
    def from_structure_copy(cls, stored: dict) -> "PublishedV2MOM":
        """From the API's copy in the ``structures`` collection (its shape: structures.py)."""
        owner = stored["owner_id"]
        measures = [
            PublishedItem(
                kind=MEASURE, item_id=m["id"], title=m.get("title", ""), owner_id=m.get("owner_id") or owner,
                weight=m.get("weight") or 0.0, baseline=m.get("baseline"), target=m.get("target"),
                direction=m.get("direction") or "", links=tuple(m.get("method_ids") or ()),
            )
            for m in stored.get("measures", [])
        ]
        methods = [
            PublishedItem(
                kind=METHOD, item_id=m["id"], title=m.get("title", ""),
                owner_id=m.get("owner_id") or m.get("accountable_id") or owner, weight=m.get("weight") or 0.0,
                due_date=m.get("due_date") or "", links=tuple(m.get("value_ids") or ()),
            )
            for m in stored.get("methods", [])
        ]
        publish_time = stored.get("publish_time")
        return cls(
            v2mom_id=stored["_id"], revision=stored["published_revision"], owner_id=owner,
            org_unit_id=stored.get("org_unit_id", ""), cycle_id=stored.get("cycle_id", ""),
            parent_id=stored.get("parent_id") or "", title=stored.get("title", ""),
            # Copies keep goals' publish_time (structures.py), so clocks started from a copy count from
            # publication. Only a copy without one (goals did not say) starts them when this worker learns of it.
            publish_time=to_millis(publish_time) if isinstance(publish_time, datetime) else None,
            items=tuple(measures + methods),
            values=tuple({"id": v["id"], "name": v.get("name", "")} for v in stored.get("values") or []),
        )

    @classmethod
    def _build(cls, v2mom_id: str, header, revision: int, content: goals_pb2.V2MOMContent) -> "PublishedV2MOM":
        """header: a V2MOMEventData or a V2MOM; both name owner, org unit, cycle, parent and publish time alike."""
        return cls(
            v2mom_id=v2mom_id,
            revision=revision,
            owner_id=header.owner_id,
            org_unit_id=header.org_unit_id,
            cycle_id=header.cycle_id,
            parent_id=header.parent_id,
            title=content.title,
            publish_time=from_timestamp(header.publish_time) if header.HasField("publish_time") else None,
            items=tuple(_items(content, default_owner=header.owner_id)),
            values=tuple({"id": value.id, "name": value.name} for value in content.values),
        )


def _items(content: goals_pb2.V2MOMContent, default_owner: str):
    for measure in content.measures:
        yield PublishedItem(
            kind=MEASURE,
            item_id=measure.id,
            title=measure.title,
            owner_id=measure.owner_id or default_owner,
            weight=measure.weight,
            baseline=measure.baseline if measure.HasField("baseline") else None,
            target=measure.target if measure.HasField("target") else None,
            direction=goals_pb2.Direction.Name(measure.direction),
            due_date=_iso(measure.due_date) if measure.HasField("due_date") else "",
            links=tuple(measure.method_ids),
        )
    for method in content.methods:
        yield PublishedItem(
            kind=METHOD,
            item_id=method.id,
            title=method.title,
            owner_id=method.owner_id or method.accountable_id or default_owner,
            weight=method.weight,
            due_date=_iso(method.due_date) if method.HasField("due_date") else "",
            links=tuple(method.value_ids),
        )


def _iso(day) -> str:
    return f"{day.year:04d}-{day.month:02d}-{day.day:02d}"

