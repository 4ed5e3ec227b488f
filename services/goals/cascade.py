"""Method-level alignment (cascading): a method names the parent V2MOM's methods it carries out (``supports``).

Pure rules on the stored (document) form. A method's ``supports`` must name methods of the parent's
published version, the one its children are shown and align to; a V2MOM with no parent supports nothing.
The tree (reads.py) shows, for each method, the child methods that support it, and which methods no child
supports: the gaps in a cascade.
"""

from services.platform.core.errors import Violations


def method_ids(content: dict | None) -> set[str]:
    return {m.get("id") for m in (content or {}).get("methods") or []}


def require_supports_known(content: dict, parent: dict | None, prefix: str) -> None:
    """INVALID_ARGUMENT naming each ``supports`` entry that is not a method of the parent's published version."""
    published = ((parent or {}).get("published") or {}).get("content")
    known = method_ids(published)
    violations = Violations()
    for i, method in enumerate(content.get("methods") or []):
        for j, supported in enumerate(method.get("supports") or []):
            if supported in known:
                continue
            field = f"{prefix}.methods[{i}].supports[{j}]"
            if parent is None:
                violations.add(field, "this V2MOM has no parent: set parent_id, or leave supports empty")
            elif published is None:
                violations.add(field, f"parent {parent['_id']!r} has no published version to support yet")
            else:
                violations.add(field, f"{supported[:64]!r} is not a method of parent {parent['_id']!r}'s published version")
    violations.raise_if_any()


def names_supports(content: dict) -> bool:
    return any(method.get("supports") for method in content.get("methods") or [])


def supporters(children: list[tuple[str, str, dict]]) -> dict[str, list[dict]]:
    """Parent method id -> the child methods naming it; ``children`` are (v2mom id, owner id, content as shown)."""
    found: dict[str, list[dict]] = {}
    for v2mom_id, owner_id, content in children:
        for method in content.get("methods") or []:
            for supported in method.get("supports") or []:
                found.setdefault(supported, []).append(
                    {"v2mom_id": v2mom_id, "method_id": method.get("id", ""), "title": method.get("title", ""),
                     "owner_id": owner_id})
    return found


def unsupported(content: dict, found: dict[str, list[dict]]) -> list[str]:
    """The content's method ids no child supports, in the content's order."""
    return [m.get("id") for m in content.get("methods") or [] if not found.get(m.get("id"))]
