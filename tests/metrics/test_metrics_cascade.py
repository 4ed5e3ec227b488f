"""v2mom_unsupported_parent_methods: the methods of published company, department and team V2MOMs that no
published V2MOM beneath supports, per org unit and cycle, kept from goals' approvals and archives (applied
through consume.apply on the real store, in any order and any number of times) and exposed by metrics-api's
/metrics text, clean for promtool."""

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.metrics import consume
from services.metrics.api import exposition_for
from services.platform.bus.events import envelope, to_wire
from tests.support.metrics import NOW
from v2mom.v1 import common_pb2, events_pb2, goals_pb2

GAUGE = "v2mom_unsupported_parent_methods"


def v2mom_event(event_type: str, v2mom_id: str, revision: int, level, unit: str, methods: dict[str, list[str]],
                parent_id: str = "") -> dict:
    state = goals_pb2.V2MOM_STATE_ARCHIVED if event_type == "v2mom_archived" else goals_pb2.V2MOM_STATE_PUBLISHED
    data = events_pb2.V2MOMEventData(
        v2mom_id=v2mom_id, revision=revision, owner_id=f"owner-{v2mom_id}", org_unit_id=unit, level=level,
        cycle_id="FY2027", parent_id=parent_id, state=state,
        content=goals_pb2.V2MOMContent(title=v2mom_id, methods=[
            goals_pb2.Method(id=m, title=m, supports=s) for m, s in methods.items()]))
    data.publish_time.FromDatetime(NOW)
    return to_wire(envelope("goals", event_type, subject=v2mom_id, data=data))


def gauge(db) -> dict[tuple[str, str], float]:
    text = exposition_for(db, lambda: NOW).body().decode()
    return {(s.labels["org_unit"], s.labels["cycle"]): s.value
            for family in text_string_to_metric_families(text) if family.name == GAUGE for s in family.samples}


TEAM = common_pb2.ORG_LEVEL_TEAM
DEPT = common_pb2.ORG_LEVEL_DEPARTMENT
INDIVIDUAL = common_pb2.ORG_LEVEL_INDIVIDUAL


def test_unsupported_parent_methods_follow_approvals_and_archives(metrics_db):
    def apply(event):
        consume.apply(metrics_db, "goals", event)

    dept = v2mom_event("v2mom_approved", "v2m_eng", 4, DEPT, "eng", {"d1": [], "d2": [], "d3": []})
    team = v2mom_event("v2mom_approved", "v2m_team", 4, TEAM, "platform", {"t1": ["d1"], "t2": ["d1", "d2"]}, "v2m_eng")
    olive = v2mom_event("v2mom_approved", "v2m_olive", 4, INDIVIDUAL, "platform", {"o1": ["t1"]}, "v2m_team")
    apply(team)  # a child before its parent: counted once the parent arrives
    assert gauge(metrics_db) == {("platform", "FY2027"): 2.0}  # nobody beneath the team yet
    apply(dept)
    apply(olive)
    assert gauge(metrics_db) == {("eng", "FY2027"): 1.0, ("platform", "FY2027"): 1.0}  # d3; t2

    for event in (team, olive, dept):  # replays change nothing
        apply(event)
    assert gauge(metrics_db) == {("eng", "FY2027"): 1.0, ("platform", "FY2027"): 1.0}

    apply(v2mom_event("v2mom_archived", "v2m_team", 6, TEAM, "platform", {}, "v2m_eng"))
    apply(team)  # the approval again, late: older than the archive
    assert gauge(metrics_db) == {("eng", "FY2027"): 3.0}  # the archived team counts no gap and supports nothing


def test_the_scrape_with_the_gauge_is_clean_for_promtool(metrics_db):
    consume.apply(metrics_db, "goals", v2mom_event("v2mom_approved", "v2m_eng", 2, DEPT, "eng", {"d1": []}))
    body = exposition_for(metrics_db, lambda: NOW).body()
    assert f'{GAUGE}{{cycle="FY2027",org_unit="eng"}} 1.0'.encode() in body
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: install Debian's prometheus package (apt-get install -y prometheus)")
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert result.returncode == 0, f"promtool check metrics:\n{result.stdout}{result.stderr}"


class ListedGoals:
    """GoalsSource's interface over V2MOMs as goals-api lists them (their published content with them)."""

    def __init__(self, v2moms: list[tuple[goals_pb2.V2MOM, goals_pb2.V2MOMContent]]):
        self.listed = v2moms

    def org_units(self):
        return iter([])

    def people(self):
        return iter([])

    def cycles(self):
        return iter([])

    def v2moms(self):
        return (v2mom for v2mom, _ in self.listed)

    def published_content(self, v2mom):
        return next(content for listed, content in self.listed if listed.id == v2mom.id)


def listed(v2mom_id, level, unit, methods, parent_id="", state=goals_pb2.V2MOM_STATE_PUBLISHED):
    content = goals_pb2.V2MOMContent(title=v2mom_id, methods=[
        goals_pb2.Method(id=m, title=m, supports=s) for m, s in methods.items()])
    v2mom = goals_pb2.V2MOM(id=v2mom_id, revision=5, published_revision=4, owner_id=f"owner-{v2mom_id}",
                            org_unit_id=unit, level=level, cycle_id="FY2027", parent_id=parent_id, state=state,
                            content=content)
    return v2mom, content


def test_a_rebuild_counts_the_same_from_goals_lists(metrics_db):
    from services.metrics import rebuild
    from tests.support.metrics import CheckinLog, CheckinStore

    goals = ListedGoals([
        listed("v2m_eng", DEPT, "eng", {"d1": [], "d2": [], "d3": []}),
        listed("v2m_team", TEAM, "platform", {"t1": ["d1"], "t2": ["d1", "d2"]}, "v2m_eng"),
        listed("v2m_olive", INDIVIDUAL, "platform", {"o1": ["t1"]}, "v2m_team"),
        listed("v2m_old", TEAM, "platform", {"x1": ["d3"]}, "v2m_eng", state=goals_pb2.V2MOM_STATE_ARCHIVED),
    ])
    rebuild.rebuild(metrics_db, goals, CheckinStore(CheckinLog()), grace_seconds=0, clock=lambda: NOW)
    assert gauge(metrics_db) == {("eng", "FY2027"): 1.0, ("platform", "FY2027"): 1.0}  # d3 (its supporter is archived); t2


def test_milestones_completed_moves_the_revision_and_counts_nothing_anew(metrics_db):
    from services.metrics import store

    approved = v2mom_event("v2mom_approved", "v2m_eng", 4, DEPT, "eng", {"d1": []})
    consume.apply(metrics_db, "goals", approved)
    before = counted(metrics_db)
    done = v2mom_event("v2mom_approved", "v2m_eng", 5, DEPT, "eng", {"d1": []})
    done["type"] = "milestones_completed"  # the same payload shape: the published content, one revision on
    consume.apply(metrics_db, "goals", done)
    consume.apply(metrics_db, "goals", done)  # a redelivery
    assert metrics_db[store.V2MOMS].find_one({"_id": "v2m_eng"})["state"]["revision"] == 5
    assert counted(metrics_db) == before


def counted(db) -> dict:
    """Every v2mom_ sample but the metrics service's own health (which moves with every event handled)."""
    text = exposition_for(db, lambda: NOW).body().decode()
    return {(s.name, frozenset(s.labels.items())): s.value for family in text_string_to_metric_families(text)
            if family.name.startswith("v2mom_") and not family.name.startswith("v2mom_metrics_") for s in family.samples}


def test_a_recount_read_before_another_replicas_archive_does_not_overwrite_it(metrics_db, monkeypatch):
    """Two metrics-worker replicas: one archives the company V2MOM while the other, handling its child's archive,
    has read the company as published and is about to write its count. The stale count must not stick."""
    from services.metrics import store

    company = {"co-m1": [], "co-m2": []}
    consume.apply(metrics_db, "goals", v2mom_event("v2mom_approved", "co", 3, common_pb2.ORG_LEVEL_COMPANY, "acme",
                                                   company))
    consume.apply(metrics_db, "goals", v2mom_event("v2mom_approved", "eng", 3, DEPT, "eng", {"e-m1": ["co-m1"]},
                                                   parent_id="co"))
    assert gauge(metrics_db) == {("acme", "FY2027"): 1.0, ("eng", "FY2027"): 1.0}

    support = metrics_db[store.METHOD_SUPPORT]
    write = type(support).update_one
    archived_meanwhile = []

    def other_replica_archives_first(self, query, update, *args, **kwargs):
        recount = query == {"_id": "co"} and list(update.get("$set", {})) == ["unsupported"]
        if self.name == store.METHOD_SUPPORT and recount and not archived_meanwhile:
            archived_meanwhile.append(True)  # the other replica's archive lands between this one's read and write
            write(self, {"_id": "co"}, {"$set": {"revision": 4, "archived": True, "unsupported": 0}})
        return write(self, query, update, *args, **kwargs)

    monkeypatch.setattr(type(support), "update_one", other_replica_archives_first)
    consume.apply(metrics_db, "goals", v2mom_event("v2mom_archived", "eng", 4, DEPT, "eng", {"e-m1": ["co-m1"]},
                                                   parent_id="co"))
    assert archived_meanwhile
    assert support.find_one({"_id": "co"})["unsupported"] == 0
    assert gauge(metrics_db) == {}
