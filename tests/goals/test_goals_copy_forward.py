"""copy_forward's rules on plain content: what comes along, and where its links point."""

from datetime import timedelta

from services.goals import copy_forward


def content() -> dict:
    method = {"id": "m1", "title": "Ship", "value_ids": ["v1", "v2"], "start_date": "2026-02-01", "due_date": None,
              "milestones": [{"id": "ms1", "title": "Beta", "due_date": "2026-03-01", "done": True},
                             {"id": "ms3", "title": "GA", "due_date": None, "done": False}],
              "supports": ["pm1", "pm2"]}
    done = {"id": "m2", "title": "Done", "value_ids": [], "milestones": [{"id": "ms2", "title": "x", "done": True}]}
    return {"title": "T", "vision": "V", "values": [{"id": "v1", "name": "A"}, {"id": "v2", "name": "B"}],
            "methods": [method, done], "obstacles": [],
            "measures": [{"id": "x1", "title": "M", "method_ids": ["m1", "m2"], "baseline": 1.0, "due_date": "2026-12-31"}]}


def test_links_follow_their_items_and_supports_follow_the_parents_copies():
    choice = copy_forward.Choice(omit_item_ids=frozenset({"v2"}), final_values={"x1": 7.5}, shift=timedelta(days=365),
                                 parent_methods={"pm1": "pm1-new"})
    copied = copy_forward.copied_content(content(), choice)
    [method] = copied["methods"]  # m2's milestones are all done: completed, left behind
    assert method["copied_from"] == "m1" and method["value_ids"] == [copied["values"][0]["id"]]
    assert method["supports"] == ["pm1-new"]  # pm2 has no copy above: the link goes
    assert method["start_date"] == "2027-02-01" and method["due_date"] is None
    assert [m["done"] for m in method["milestones"]] == [False, False]  # a new year starts them undone
    assert method["milestones"][0]["due_date"] == "2027-03-01" and method["milestones"][0]["id"] != "ms1"
    [measure] = copied["measures"]
    assert (measure["baseline"], measure["method_ids"], measure["due_date"]) == (7.5, [method["id"]], "2027-12-31")


def test_a_template_carries_no_origin():
    copied = copy_forward.copied_content(content(), copy_forward.Choice(mark_origin=False, include_completed_methods=True))
    assert len(copied["methods"]) == 2 and not any("copied_from" in item for item in copied["values"] + copied["methods"])
