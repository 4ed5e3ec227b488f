"""Templates over real gRPC: admins manage them, everyone lists them, CreateV2MOM starts from one."""

import grpc

from tests.support.goals import ADMIN, INDIVIDUAL, mask, OWNER, TEAM, valid_content
from tests.support.grpc_errors import expect
from v2mom.v1 import goals_pb2

Code = grpc.StatusCode


def individual_template(template_id: str = "tpl-individual") -> goals_pb2.Template:
    content = valid_content()
    for method in content.methods:  # a template names no people: the owner fills them in
        method.owner_id = method.accountable_id = ""
        del method.responsible_ids[:]
    for item in list(content.obstacles) + list(content.measures):
        item.owner_id = ""
    return goals_pb2.Template(id=template_id, name="My year", description="For one person", level=INDIVIDUAL,
                              content=content)


def test_admins_manage_templates_and_a_v2mom_starts_from_one(goals, cycle):
    admin = goals.client(ADMIN)
    made = admin.CreateTemplate(goals_pb2.CreateTemplateRequest(template=individual_template()))
    assert (made.id, made.revision, made.level) == ("tpl-individual", 1, INDIVIDUAL)
    expect(admin.CreateTemplate, goals_pb2.CreateTemplateRequest(template=individual_template()), Code.ALREADY_EXISTS)
    expect(goals.client(OWNER).CreateTemplate, goals_pb2.CreateTemplateRequest(template=individual_template("mine")),
           Code.PERMISSION_DENIED)

    listed = goals.client(OWNER).ListTemplates(goals_pb2.ListTemplatesRequest(level=INDIVIDUAL))
    assert [t.id for t in listed.templates] == ["tpl-individual"]
    assert goals.client(OWNER).ListTemplates(goals_pb2.ListTemplatesRequest(level=TEAM)).templates == []

    v2mom = goals.client(OWNER).CreateV2MOM(goals_pb2.CreateV2MOMRequest(
        level=INDIVIDUAL, cycle_id=cycle, template_id="tpl-individual"))
    assert v2mom.content.vision == made.content.vision and len(v2mom.content.methods) == 5
    template_ids = {m.id for m in made.content.methods}
    assert not {m.id for m in v2mom.content.methods} & template_ids  # ids of its own
    assert v2mom.content.methods[0].value_ids[0] == v2mom.content.values[0].id  # links follow
    assert not v2mom.content.methods[0].copied_from  # a template is no earlier V2MOM
    expect(goals.client("mia").CreateV2MOM, goals_pb2.CreateV2MOMRequest(
        level=TEAM, org_unit_id="mobile", cycle_id=cycle, template_id="tpl-individual"), Code.INVALID_ARGUMENT, "template_id")

    renamed = admin.UpdateTemplate(goals_pb2.UpdateTemplateRequest(
        template=goals_pb2.Template(id="tpl-individual", name="Your year"), update_mask=mask("name"), expected_revision=1))
    assert (renamed.name, renamed.revision, renamed.content) == ("Your year", 2, made.content)
    expect(admin.UpdateTemplate, goals_pb2.UpdateTemplateRequest(
        template=goals_pb2.Template(id="tpl-individual", name="Again"), update_mask=mask("name"), expected_revision=1),
        Code.ABORTED)
    expect(admin.DeleteTemplate, goals_pb2.DeleteTemplateRequest(id="tpl-individual", expected_revision=1), Code.ABORTED)
    admin.DeleteTemplate(goals_pb2.DeleteTemplateRequest(id="tpl-individual", expected_revision=2))
    expect(goals.client(OWNER).GetTemplate, goals_pb2.GetTemplateRequest(id="tpl-individual"), Code.NOT_FOUND)
