"""Values that show progress: GetProgress reports each value's progress from the measures behind its methods
(or the methods when none has a measure), weighted as the V2MOM's own progress.

Real goals-api and checkins-api; the worker's side runs in process on the events checkins-api wrote."""

import pytest

from services.checkins.goals_client import GoalsClient
from services.checkins.handlers import Projection
from services.checkins.progress import MEASURE, METHOD, LinkedItem, items_behind_value
from tests.support.checkins import day, publish_v2mom
from tests.support.checkins_requests import Store
from v2mom.v1 import checkins_pb2, goals_pb2

ON_TRACK = checkins_pb2.CHECKIN_STATUS_ON_TRACK


def linked_content() -> goals_pb2.V2MOMContent:
    """care <- guide <- nps (75); speed <- calls <- nps (75), ttv (25); team <- hire <- ttv (25)."""
    def method(method_id, value_id):
        return goals_pb2.Method(id=method_id, title=f"Do {method_id} by June", value_ids=[value_id], owner_id="cat",
                                accountable_id="cat", due_date=day("2026-12-31"))

    def measure(measure_id, kind, baseline, target, weight, method_ids):
        return goals_pb2.Measure(id=measure_id, title=f"{measure_id} from {baseline} to {target}", kind=kind,
                                 baseline=baseline, target=target, weight=weight, method_ids=method_ids,
                                 direction=goals_pb2.DIRECTION_INCREASE if target > baseline else goals_pb2.DIRECTION_DECREASE,
                                 owner_id="cat", unit="points", due_date=day("2026-12-31"))

    return goals_pb2.V2MOMContent(
        title="Cat FY27", vision="Billing customers rate us 8 of 10 by Q4 2026",
        values=[goals_pb2.Value(id=v, name=v.title(), description=f"We live {v} every week") for v in ("care", "speed", "team")],
        methods=[method("guide", "care"), method("calls", "speed"), method("hire", "team")],
        measures=[measure("nps", goals_pb2.MEASURE_KIND_LAGGING, 20, 60, 75, ["guide", "calls"]),
                  measure("ttv", goals_pb2.MEASURE_KIND_LEADING, 30, 10, 25, ["calls", "hire"])],
    )


def test_items_behind_a_value_are_its_methods_measures_else_its_methods():
    items = [LinkedItem(METHOD, "guide", ("care",)), LinkedItem(METHOD, "hire", ("team",)),
             LinkedItem(MEASURE, "nps", ("guide",))]
    assert [i.item_id for i in items_behind_value("care", items)] == ["nps"]
    assert [i.item_id for i in items_behind_value("team", items)] == ["hire"]
    assert items_behind_value("nobody", items) == []


@pytest.fixture
def cat_v2mom(goals_world):
    return publish_v2mom(goals_world.goals_api, "cat", "ceo", linked_content())


def values_of(progress: checkins_pb2.Progress) -> dict:
    return {v.value_id: (round(v.progress_percent, 6), checkins_pb2.ItemKind.Name(v.kind), list(v.item_ids))
            for v in progress.values}


def test_get_progress_reports_each_values_progress_weighted_as_the_roll_up(
        goals_world, cat_v2mom, checkins_api, checkins_db, checkins_settings):
    cat = checkins_api("cat")
    before = cat.GetProgress(checkins_pb2.GetProgressRequest(v2mom_id=cat_v2mom))
    assert values_of(before) == {  # nothing projected yet: the published structure, all at 0
        "care": (0.0, "ITEM_KIND_MEASURE", ["nps"]), "speed": (0.0, "ITEM_KIND_MEASURE", ["nps", "ttv"]),
        "team": (0.0, "ITEM_KIND_MEASURE", ["ttv"])}

    recorded = [
        cat.RecordMeasureCheckin(checkins_pb2.RecordMeasureCheckinRequest(
            v2mom_id=cat_v2mom, measure_id="nps", value=40, status=ON_TRACK, confidence=7)),   # 50 %
        cat.RecordMeasureCheckin(checkins_pb2.RecordMeasureCheckinRequest(
            v2mom_id=cat_v2mom, measure_id="ttv", value=10, status=ON_TRACK, confidence=7)),   # 100 %
        cat.RecordMethodCheckin(checkins_pb2.RecordMethodCheckinRequest(
            v2mom_id=cat_v2mom, method_id="hire", progress_percent=30, status=ON_TRACK)),
    ]
    goals = GoalsClient(checkins_settings.goals_addr, checkins_settings.auth)
    try:
        projection = Projection(checkins_db, goals)
        for checkin in recorded:  # the worker's side, in process, on the events the API wrote
            projection.checkin_recorded(Store(checkins_db).event_of(checkin.id))
    finally:
        goals.close()

    progress = cat.GetProgress(checkins_pb2.GetProgressRequest(v2mom_id=cat_v2mom))
    assert values_of(progress) == {
        "care": (50.0, "ITEM_KIND_MEASURE", ["nps"]),
        "speed": (62.5, "ITEM_KIND_MEASURE", ["nps", "ttv"]),  # (75 x 50 + 25 x 100) / 100, as the V2MOM's own
        "team": (100.0, "ITEM_KIND_MEASURE", ["ttv"])}  # the method's own 30 % is not what measures it
    assert progress.progress_percent == pytest.approx(62.5)
    assert [v.name for v in progress.values] == ["Care", "Speed", "Team"]
