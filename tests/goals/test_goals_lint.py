"""LintV2MOM: the guidance findings, their severity, field path and code.

Most cases call lint.lint() on the stored (document) form directly; the RPC
tests check the same findings arrive over gRPC, for stored and unsaved content.
"""

import grpc
import pytest

from services.goals import convert, lint
from tests.support.goals import MANAGER, OWNER, valid_content
from tests.support.grpc_errors import expect, precondition_violations
from v2mom.v1 import goals_pb2

E, W, I = lint.ERROR, lint.WARNING, lint.INFO


def doc(mutate=None) -> dict:
    content = convert.content_to_doc(valid_content())
    if mutate:
        mutate(content)
    return content


def findings(content: dict) -> set[tuple[str, str, str]]:
    return {(f.severity, f.field_path, f.code) for f in lint.lint(content)}


def test_valid_content_has_no_findings():
    assert lint.lint(doc()) == []


# --- counts ------------------------------------------------------------------------------------


def _values(n):
    def mutate(c):
        base = c["values"][0]
        c["values"] = [{**base, "id": f"v{i}", "name": f"Value {i}"} for i in range(n)]
        for m in c["methods"]:
            m["value_ids"] = [f"v{i}" for i in range(n)][:5]
    return mutate


def _methods(n):
    def mutate(c):
        template = c["methods"][0]
        c["methods"] = [{**template, "id": f"m{i}", "value_ids": [v["id"] for v in c["values"]]} for i in range(n)]
        for o in c["obstacles"]:
            o["method_ids"] = []
        for m in c["measures"]:
            m["method_ids"] = []
    return mutate


@pytest.mark.parametrize("n, expected", [
    (0, {(E, "content.values", "values.missing")}),
    (1, {(W, "content.values", "values.count")}),
    (2, {(W, "content.values", "values.count")}),
    (3, set()),
    (5, set()),
    (6, {(W, "content.values", "values.count")}),
])
def test_values_outside_three_to_five(n, expected):
    got = {f for f in findings(doc(_values(n))) if f[2].startswith("values.")}
    assert got == expected


@pytest.mark.parametrize("n, expected", [
    (0, {(E, "content.methods", "methods.missing")}),
    (4, {(W, "content.methods", "methods.count")}),
    (5, set()),
    (8, set()),
    (9, {(W, "content.methods", "methods.count")}),
])
def test_methods_outside_five_to_eight(n, expected):
    got = {f for f in findings(doc(_methods(n))) if f[2].startswith("methods.")}
    assert got == expected


# --- methods, values, measures ----------------------------------------------------------------------------


@pytest.mark.parametrize("field, severity, code", [
    ("owner_id", E, "method.missing_owner"),
    ("due_date", E, "method.missing_due_date"),
    ("accountable_id", E, "method.missing_accountable"),
    ("value_ids", W, "method.unlinked"),
])
def test_method_missing_parts(field, severity, code):
    def mutate(c):
        c["methods"][3][field] = [] if field == "value_ids" else None if field == "due_date" else ""
    got = findings(doc(mutate))
    assert (severity, f"content.methods[3].{field}", code) in got
    assert not any(path.startswith("content.methods[0]") for _, path, _ in got)


def test_value_linked_to_no_method():
    def mutate(c):
        for m in c["methods"]:
            m["value_ids"] = [v for v in m["value_ids"] if v != "val-openness"] or ["val-customers"]
    # No method carries it out, so no measure is behind it either: nothing would show its progress.
    assert findings(doc(mutate)) == {(W, "content.values[2]", "value.unlinked"), (E, "content.values[2]", "value.unmeasured")}


def test_value_whose_methods_no_measure_follows_is_an_error():
    def mutate(c):
        c["measures"][1]["method_ids"] = ["mth-3"]  # mth-2, val-openness's only method, loses its measure
    assert findings(doc(mutate)) == {(E, "content.values[2]", "value.unmeasured")}


@pytest.mark.parametrize("kind, code", [("MEASURE_KIND_LAGGING", "measures.all_lagging"),
                                        ("MEASURE_KIND_LEADING", "measures.all_leading")])
def test_measures_all_of_one_kind_are_a_warning(kind, code):
    def mutate(c):
        for measure in c["measures"]:
            measure["kind"] = kind
    assert findings(doc(mutate)) == {(W, "content.measures", code)}


def test_measures_of_no_stated_kind_are_not_judged():
    def mutate(c):
        c["measures"][1]["kind"] = "MEASURE_KIND_UNSPECIFIED"
    assert findings(doc(mutate)) == {(W, "content.measures", "measures.all_lagging")}
    assert findings(doc(lambda c: [m.update(kind="MEASURE_KIND_UNSPECIFIED") for m in c["measures"]])) == set()


def test_value_without_behaviour():
    def mutate(c):
        c["values"][1]["description"] = " "
    assert findings(doc(mutate)) == {(W, "content.values[1].description", "value.missing_behaviour")}


@pytest.mark.parametrize("field, code", [("owner_id", "obstacle.missing_owner"), ("method_ids", "obstacle.unlinked")])
def test_obstacle_missing_owner_or_method_is_a_warning(field, code):
    def mutate(c):
        c["obstacles"][0][field] = [] if field == "method_ids" else ""
    assert findings(doc(mutate)) == {(W, f"content.obstacles[0].{field}", code)}


def test_resolved_obstacle_needs_neither_owner_nor_method():
    def mutate(c):
        c["obstacles"][0].update(owner_id="", method_ids=[], status="OBSTACLE_STATUS_RESOLVED")
    assert findings(doc(mutate)) == set()


@pytest.mark.parametrize("field", ["baseline", "target", "unit", "due_date"])
def test_measure_missing_parts(field):
    def mutate(c):
        c["measures"][1][field] = "" if field == "unit" else None
    assert findings(doc(mutate)) == {(E, f"content.measures[1].{field}", f"measure.missing_{field}")}


def test_zero_is_a_baseline_not_a_missing_one():
    def mutate(c):
        c["measures"][0]["baseline"] = 0.0
        c["measures"][0]["target"] = 0.0
    got = findings(doc(mutate))
    assert not any(code.startswith("measure.missing") for _, _, code in got)
    assert (W, "content.measures[0].target", "measure.no_change") in got


def test_no_measures_and_no_vision():
    def mutate(c):
        c["measures"] = []
        c["vision"] = ""
    assert findings(doc(mutate)) == {(W, "content.measures", "measures.missing"), (E, "content.vision", "vision.missing")} | {
        (E, f"content.values[{i}]", "value.unmeasured") for i in range(3)}


# --- wording ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "Improve things",
    "Make the product better",
    "Enhance customer experience",
    "Grow revenue",
    "Improve marketing",  # "mar..." is not March
    "Reduce churn for junior accounts",  # nor is "jun..." June
    "We may improve onboarding",  # "may" the verb is not May the month
])
def test_vague_wording_without_number_or_date(text):
    assert (W, "content.vision", "wording.vague") in findings(doc(lambda c: c.update(vision=text)))


@pytest.mark.parametrize("text", [
    "Improve NPS to 45 by Q3",
    "Improve onboarding by May",
    "Grow revenue 20% year over year",
    "Reduce churn before December",
    "Ship a better checkout in H2",
    "Cut invoice errors from 4% to 1% by December 2026",
    "Customers renew because support answers within a day",  # no vague word at all
])
def test_specific_wording_passes(text):
    assert not any(code == "wording.vague" for _, _, code in findings(doc(lambda c: c.update(vision=text))))


def test_vague_wording_in_method_and_measure_titles_and_value_descriptions():
    def mutate(c):
        c["methods"][1]["title"] = "Improve the deploy process"
        c["measures"][0]["title"] = "Better quality"
        c["values"][0]["description"] = "We enhance everything we touch"
    got = findings(doc(mutate))
    assert {(W, "content.methods[1].title", "wording.vague"), (W, "content.measures[0].title", "wording.vague"),
            (W, "content.values[0].description", "wording.vague")} <= got


def test_jargon_is_info_once_per_term():
    content = doc(lambda c: c.update(vision="Leverage synergies to cut costs 10% by Q4; leverage them holistic-ally, best-in-class"))
    jargon = [f for f in lint.lint(content) if f.code == "wording.jargon"]
    assert {f.severity for f in jargon} == {I} and {f.field_path for f in jargon} == {"content.vision"}
    terms = sorted(f.message.split("'")[1] for f in jargon)
    assert terms == ["best-in-class", "leverage", "synergies"]  # "holistic-ally" is not "holistic"


# --- weights ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("weights, ok", [
    ([0, 0, 0, 0, 0], True),  # unset: no rule
    ([20, 20, 20, 20, 20], True),
    ([33.33, 33.33, 33.34, 0, 0], True),
    ([50, 30, 0, 0, 0], False),
    ([50, 30, 30, 0, 0], False),
])
def test_method_weights_total_100_when_set(weights, ok):
    def mutate(c):
        for method, weight in zip(c["methods"], weights, strict=True):
            method["weight"] = float(weight)
    expected = set() if ok else {(E, "content.methods", "method.weights_total")}
    assert {f for f in findings(doc(mutate)) if "weights" in f[2]} == expected


def test_measure_weights_total_100_when_set():
    def mutate(c):
        c["measures"][0]["weight"] = 70.0
    assert findings(doc(mutate)) == {(E, "content.measures", "measure.weights_total")}


def test_has_errors_only_counts_errors():
    assert not lint.has_errors([lint.Finding(W, "x", "y", "z"), lint.Finding(I, "x", "y", "z")])
    assert lint.has_errors([lint.Finding(E, "x", "y", "z")])


# --- over gRPC -----------------------------------------------------------------------------------------------------------


def test_lint_rpc_on_unsaved_content(goals):
    content = valid_content()
    content.vision = "Improve things"
    content.methods[4].owner_id = ""
    content.methods[4].ClearField("due_date")
    response = goals.client(OWNER).LintV2MOM(goals_pb2.LintV2MOMRequest(content=content))
    got = {(f.severity, f.field_path, f.code) for f in response.findings}
    assert got == {
        (goals_pb2.SEVERITY_WARNING, "content.vision", "wording.vague"),
        (goals_pb2.SEVERITY_ERROR, "content.methods[4].owner_id", "method.missing_owner"),
        (goals_pb2.SEVERITY_ERROR, "content.methods[4].due_date", "method.missing_due_date"),
    }
    assert not response.submittable
    assert all(f.message for f in response.findings)


def test_lint_rpc_on_stored_working_copy_matches_what_submit_enforces(goals, cycle):
    content = valid_content()
    content.measures[1].unit = ""
    content.values[0].description = "We make things better"
    v2mom = goals.create(cycle_id=cycle, content=content)
    response = goals.client(MANAGER).LintV2MOM(goals_pb2.LintV2MOMRequest(id=v2mom.id))
    errors = {(f.code, f.field_path) for f in response.findings if f.severity == goals_pb2.SEVERITY_ERROR}
    assert errors == {("measure.missing_unit", "content.measures[1].unit")}
    assert (goals_pb2.SEVERITY_WARNING, "content.values[0].description", "wording.vague") in {
        (f.severity, f.field_path, f.code) for f in response.findings}
    assert not response.submittable
    error = expect(goals.client(OWNER).SubmitV2MOM, goals_pb2.SubmitV2MOMRequest(id=v2mom.id), grpc.StatusCode.FAILED_PRECONDITION)
    assert {(kind, subject) for kind, subject, _ in precondition_violations(error)} == errors


def test_warnings_alone_leave_it_submittable(goals):
    content = valid_content()
    content.vision = "Leverage synergies to make billing better"
    for measure in content.measures:
        measure.kind = goals_pb2.MEASURE_KIND_LAGGING  # measures.all_lagging: advice, not a block
    response = goals.client(OWNER).LintV2MOM(goals_pb2.LintV2MOMRequest(content=content))
    severities = {f.severity for f in response.findings}
    assert severities == {goals_pb2.SEVERITY_WARNING, goals_pb2.SEVERITY_INFO} and response.submittable


def test_a_submission_with_many_lint_errors_lists_the_first_and_counts_the_rest(goals, cycle):
    """Issue 12, finding 6: 100 lint errors with long titles passed gRPC's 16 KiB trailer limit, so the
    client got a broken stream instead of FAILED_PRECONDITION."""
    content = valid_content()
    for method in content.methods:
        method.title, method.owner_id, method.accountable_id = "M" * 200, "", ""
        method.ClearField("due_date")
    while len(content.methods) < 20:
        content.methods.append(content.methods[0])
        content.methods[-1].id = f"mth-copy-{len(content.methods)}"
    for measure in content.measures:
        measure.title, measure.unit = "X" * 200, ""
    v2mom = goals.create(cycle_id=cycle, content=content)
    lint_errors = [f for f in goals.client(OWNER).LintV2MOM(goals_pb2.LintV2MOMRequest(id=v2mom.id)).findings
                   if f.severity == goals_pb2.SEVERITY_ERROR]
    assert len(lint_errors) > 60

    error = expect(goals.client(OWNER).SubmitV2MOM, goals_pb2.SubmitV2MOMRequest(id=v2mom.id), grpc.StatusCode.FAILED_PRECONDITION)
    violations = precondition_violations(error)
    assert len(violations) == 20
    assert [(kind, subject) for kind, subject, _ in violations[:19]] == [(f.code, f.field_path) for f in lint_errors[:19]]
    assert violations[19][0] == "MORE" and f"and {len(lint_errors) - 19} more problems" in violations[19][2]


def test_over_grpc_a_value_no_measure_follows_blocks_submission_and_one_kind_of_measures_is_advice(goals, cycle):
    content = valid_content()
    content.measures[1].method_ids[:] = ["mth-3"]  # mth-2, val-openness's only method, loses its measure
    content.measures[1].kind = goals_pb2.MEASURE_KIND_LAGGING  # and every measure is lagging now
    v2mom = goals.create(cycle_id=cycle, content=content)
    response = goals.client(OWNER).LintV2MOM(goals_pb2.LintV2MOMRequest(id=v2mom.id))
    assert {(f.severity, f.field_path, f.code) for f in response.findings} == {
        (goals_pb2.SEVERITY_ERROR, "content.values[2]", "value.unmeasured"),
        (goals_pb2.SEVERITY_WARNING, "content.measures", "measures.all_lagging")}
    assert not response.submittable
    error = expect(goals.client(OWNER).SubmitV2MOM, goals_pb2.SubmitV2MOMRequest(id=v2mom.id),
                   grpc.StatusCode.FAILED_PRECONDITION)
    assert {(kind, subject) for kind, subject, _ in precondition_violations(error)} == {
        ("value.unmeasured", "content.values[2]")}

    content.measures[0].kind = content.measures[1].kind = goals_pb2.MEASURE_KIND_LEADING
    content.measures[1].method_ids[:] = ["mth-3", "mth-2"]
    leading = goals.client(OWNER).LintV2MOM(goals_pb2.LintV2MOMRequest(content=content))
    assert {(f.severity, f.code) for f in leading.findings} == {(goals_pb2.SEVERITY_WARNING, "measures.all_leading")}
    assert leading.submittable
