"""The org tree: units as heard of from ``org_unit_upserted`` (store.upsert_unit), and the tree they form.

Only parent pointers are stored. The tree (children, ancestors, subtree
order) is built in memory when read: units arrive in any order and concurrently
(a seed upserts them all at once), and a stored ancestors array would have to be
rewritten across the subtree on every such arrival. Reading every unit is linear
in the number of units, which a scrape pays anyway.
"""

from dataclasses import dataclass, field

LEVEL_LABELS = {
    "ORG_LEVEL_COMPANY": "company",
    "ORG_LEVEL_DEPARTMENT": "department",
    "ORG_LEVEL_TEAM": "team",
    "ORG_LEVEL_INDIVIDUAL": "individual",
    "ORG_LEVEL_UNSPECIFIED": "unspecified",
}


@dataclass
class Unit:
    id: str
    name: str
    level: str
    parent_id: str
    members: int
    children: list[str] = field(default_factory=list)

    @property
    def level_label(self) -> str:
        return LEVEL_LABELS.get(self.level, "unspecified")


class OrgTree:
    """Units the metrics service has heard of from goals, with children and subtree order."""

    def __init__(self, units: dict[str, Unit]):
        self.units = units
        self.roots: list[str] = []
        self._link()

    @classmethod
    def of(cls, rows) -> "OrgTree":
        """From unit documents (name, level, parent_id, members); those only heard of through members
        (revision 0) are not units yet."""
        return cls({
            row["_id"]: Unit(row["_id"], row.get("name", ""), row.get("level", ""), row.get("parent_id") or "",
                             int(row.get("members", 0)))
            for row in rows if row.get("revision", 1) > 0
        })

    def _link(self) -> None:
        for unit in sorted(self.units.values(), key=lambda u: u.id):
            parent = self.units.get(unit.parent_id)
            if parent is None:
                self.roots.append(unit.id)  # the top, or a parent not heard of yet
            else:
                parent.children.append(unit.id)
        # Bad data can make a loop with no root: break it at its smallest id.
        reached = set(self._walk(self.roots))
        for unit_id in sorted(self.units):
            if unit_id not in reached:
                looped = self.units[unit_id]
                self.units[looped.parent_id].children.remove(unit_id)
                self.roots.append(unit_id)
                reached.update(self._walk([unit_id]))

    def _walk(self, starts: list[str]) -> list[str]:
        """Pre-order from the given units (iterative: deep trees must not hit the recursion limit)."""
        order, stack, seen = [], list(reversed(starts)), set()
        while stack:
            unit_id = stack.pop()
            if unit_id in seen:
                continue
            seen.add(unit_id)
            order.append(unit_id)
            stack.extend(reversed(self.units[unit_id].children))
        return order

    def __contains__(self, unit_id: str) -> bool:
        return unit_id in self.units

    def subtree(self, unit_id: str) -> list[str]:
        """The unit and everything below it, parents before children."""
        return self._walk([unit_id])

    def everything(self) -> list[str]:
        return self._walk(self.roots)

    def ancestors(self, unit_id: str) -> list[str]:
        chain, cursor = [], self.units[unit_id].parent_id
        while cursor in self.units and cursor not in chain and cursor != unit_id:
            chain.append(cursor)
            cursor = self.units[cursor].parent_id
        return chain
