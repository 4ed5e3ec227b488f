"""Milestones done, as method check-ins report them: pure rules on the stored (document) form.

A milestone only ever goes from not done to done here. That makes the change
idempotent and order-free: a replayed, late or corrected check-in can add a
done milestone but never take one back, so applying check-ins in any order,
any number of times, ends in the same V2MOM. (An owner who wants a milestone
open again edits the V2MOM and has it approved, like any other change.)
"""


def newly_done(content: dict, method_id: str, milestone_ids: list[str]) -> list[str]:
    """The ids among ``milestone_ids`` that are milestones of the method in ``content`` and not done yet."""
    method = next((m for m in content.get("methods") or [] if m.get("id") == method_id), None)
    if method is None:
        return []
    wanted = set(milestone_ids)
    return [m["id"] for m in method.get("milestones") or [] if m.get("id") in wanted and not m.get("done")]


def marked_done(content: dict, method_id: str, milestone_ids: list[str]) -> dict:
    """``content`` with those milestones of the method done; other methods and milestones as they were."""
    wanted = set(milestone_ids)

    def method_after(method: dict) -> dict:
        if method.get("id") != method_id:
            return method
        milestones = [{**m, "done": True} if m.get("id") in wanted else m for m in method.get("milestones") or []]
        return {**method, "milestones": milestones}

    return {**content, "methods": [method_after(m) for m in content.get("methods") or []]}


def changed_paths(method_id: str, milestone_ids: list[str]) -> list[str]:
    return [f"content.methods[{method_id}].milestones[{milestone_id}].done" for milestone_id in milestone_ids]
