"""The demo's templates: one per level, created through goals-api by the seed, and left alone by a second run."""

from deploy.demo.goals import load_templates
from deploy.demo.goals_seed import seed
from v2mom.v1 import common_pb2, goals_pb2


def test_the_seed_ships_one_template_per_level_and_a_second_run_changes_nothing(seeded_goals):
    assert (seeded_goals.report.templates, seeded_goals.report.templates_created) == (4, 4)
    stored = {doc["_id"]: doc for doc in seeded_goals.db.templates.find()}
    assert {doc["level"] for doc in stored.values()} == {
        common_pb2.OrgLevel.Name(level) for level in (common_pb2.ORG_LEVEL_COMPANY, common_pb2.ORG_LEVEL_DEPARTMENT,
                                                      common_pb2.ORG_LEVEL_TEAM, common_pb2.ORG_LEVEL_INDIVIDUAL)}
    for doc in stored.values():
        content = doc["content"]
        # The guide's advice, kept: three to five values with the behaviour spelt out, every method serving
        # a value, leading and lagging measures.
        assert 3 <= len(content["values"]) <= 5 and all(value["description"] for value in content["values"])
        assert all(method["value_ids"] for method in content["methods"])
        assert {measure["kind"] for measure in content["measures"]} == {"MEASURE_KIND_LEADING", "MEASURE_KIND_LAGGING"}

    again = seed(seeded_goals.settings, goals_api_address=seeded_goals.address, progress=False)
    assert (again.templates, again.templates_created, again.changed) == (4, 0, False)


def test_every_demo_template_names_no_people():
    for template in load_templates():
        content = template.content
        people = [m.owner_id for m in content.methods] + [m.accountable_id for m in content.methods]
        people += [o.owner_id for o in content.obstacles] + [m.owner_id for m in content.measures]
        assert not any(people), template.id
        assert isinstance(template, goals_pb2.Template) and template.name and template.description
