"""Cascading gaps: the methods of a published V2MOM that no V2MOM aligned beneath it supports (pure).

A V2MOM's methods name, in ``supports``, the methods of its parent they carry out. A method of a company,
department or team V2MOM that no published child supports is work nobody below has taken up: leaders
alert on those (``v2mom_unsupported_parent_methods``). Individual V2MOMs have nobody beneath by design, so
their methods are never counted.
"""

from v2mom.v1 import common_pb2, events_pb2, goals_pb2

INDIVIDUAL = "ORG_LEVEL_INDIVIDUAL"


def entry_from_event(data: events_pb2.V2MOMEventData) -> dict:
    """What the support collection keeps of a V2MOM just published: its methods and what they support."""
    return entry(data.v2mom_id, data.revision, data.org_unit_id, data.cycle_id, data.level, data.parent_id,
                 data.content)


def entry(v2mom_id: str, revision: int, org_unit_id: str, cycle_id: str, level: int, parent_id: str,
          content: goals_pb2.V2MOMContent, archived: bool = False) -> dict:
    return {
        "_id": v2mom_id, "revision": revision, "org_unit_id": org_unit_id, "cycle_id": cycle_id,
        "level": common_pb2.OrgLevel.Name(level), "parent_id": parent_id or None,
        "methods": [m.id for m in content.methods],
        "supports": sorted({s for m in content.methods for s in m.supports}),
        "archived": archived,
    }


def counted(entries: list[dict]) -> list[dict]:
    """Each entry with its ``unsupported`` count, from the others aligned to it (a rebuild's whole world)."""
    children: dict[str, list[dict]] = {}
    for each in entries:
        if each.get("parent_id"):
            children.setdefault(each["parent_id"], []).append(each)
    return [{**each, "unsupported": unsupported(each, children.get(each["_id"], []))} for each in entries]


def unsupported(parent: dict, children: list[dict]) -> int:
    """How many of the parent's methods no child (published, not archived) supports; 0 for an individual's."""
    if parent.get("archived") or parent.get("level") == INDIVIDUAL:
        return 0
    supported = {s for child in children if not child.get("archived") for s in child.get("supports") or []}
    return sum(1 for method_id in parent.get("methods") or [] if method_id not in supported)
