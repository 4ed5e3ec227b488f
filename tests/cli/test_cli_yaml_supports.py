"""A method's `supports` (the parent's method ids it carries out) survives the CLI's YAML both ways, so editing
a V2MOM through `v2mom show --yaml` and `v2mom update` keeps its cascade."""

from v2mom_format import yaml_content
from v2mom.v1 import goals_pb2


def test_supports_round_trip_through_the_yaml_document():
    content = yaml_content.to_content(
        {"title": "Platform FY", "methods": [{"title": "Ship telemetry", "supports": ["mth-fleet", "mth-uptime"]},
                                             {"title": "Hire two engineers"}]}, me="lee")
    assert [list(m.supports) for m in content.methods] == [["mth-fleet", "mth-uptime"], []]
    document = yaml_content.content_document(content)
    assert document["methods"][0]["supports"] == ["mth-fleet", "mth-uptime"]
    again = yaml_content.to_content(document, me="lee", existing=content)
    assert again.methods[0].supports == content.methods[0].supports
    assert isinstance(again, goals_pb2.V2MOMContent)
