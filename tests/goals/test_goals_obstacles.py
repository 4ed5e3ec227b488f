"""UpdateObstacle over real gRPC: obstacles change on a published V2MOM without re-approval, with history,
an obstacle_changed event in the same write, open times and the stale flag."""

from datetime import timedelta

import grpc

from services.goals import obstacles
from services.platform.api.auth import bearer_metadata, mint_dev_token
from services.platform.bus.events import to_wire
from services.platform.core.clock import utc_now
from tests.support.goals import ADMIN, MANAGER, OWNER, PEER, SKIP, TEAMMATE, mask
from tests.support.grpc_errors import expect
from tests.support.processes import free_port, log_tail, start_module, stop
from v2mom.v1 import goals_pb2, goals_pb2_grpc

Code = grpc.StatusCode
OPEN, MITIGATING, RESOLVED = (goals_pb2.OBSTACLE_STATUS_OPEN, goals_pb2.OBSTACLE_STATUS_MITIGATING,
                              goals_pb2.OBSTACLE_STATUS_RESOLVED)


def update(goals, person, v2mom_id, paths=("status",), obstacle_id="obs-1", **fields):
    return goals.client(person).UpdateObstacle(goals_pb2.UpdateObstacleRequest(
        v2mom_id=v2mom_id, obstacle_id=obstacle_id, obstacle=goals_pb2.Obstacle(**fields), update_mask=mask(*paths)))


def test_the_owner_resolves_an_obstacle_of_a_published_v2mom_without_a_new_approval(goals, cycle):
    published = goals.published(cycle_id=cycle)
    assert published.content.obstacles[0].HasField("open_time")  # the approval opened it
    after = update(goals, OWNER, published.id, status=MITIGATING)
    assert (after.state, after.revision) == (goals_pb2.V2MOM_STATE_PUBLISHED, published.revision + 1)
    assert after.content.obstacles[0].status == MITIGATING
    raw = goals.raw(published.id)
    assert raw["published"]["content"]["obstacles"][0]["status"] == "OBSTACLE_STATUS_MITIGATING"
    assert raw["published"]["revision"] == published.published_revision  # no new approval
    assert raw["latest_revision"]["action"] == "UPDATE_OBSTACLE"
    assert raw["latest_revision"]["changed_paths"] == ["content.obstacles[obs-1].status"]
    event = to_wire(raw["outbox"][-1])
    assert event["type"] == "obstacle_changed"
    assert (event["data"]["obstacle"]["status"], event["data"]["previousStatus"], event["data"]["accountableIds"]) == (
        "OBSTACLE_STATUS_MITIGATING", "OBSTACLE_STATUS_OPEN", [OWNER])
    seen = goals.client(PEER).GetV2MOM(goals_pb2.GetV2MOMRequest(id=published.id))
    assert seen.content.obstacles[0].status == MITIGATING  # everyone sees the live status


def test_the_approvers_chain_admins_and_the_obstacles_owner_may_others_may_not(goals, cycle):
    content = goals.create(cycle_id=cycle).content
    content.obstacles[0].owner_id = TEAMMATE
    v2mom = goals.create(cycle_id=goals.new_cycle(), content=content)
    goals.submit(v2mom)
    published = goals.approve(v2mom, MANAGER)
    for person in (MANAGER, SKIP, ADMIN, TEAMMATE):
        update(goals, person, published.id, status=RESOLVED if person != TEAMMATE else OPEN)
    expect(goals.client(PEER).UpdateObstacle, goals_pb2.UpdateObstacleRequest(
        v2mom_id=published.id, obstacle_id="obs-1", obstacle=goals_pb2.Obstacle(status=RESOLVED),
        update_mask=mask("status")), Code.PERMISSION_DENIED)


def test_owner_and_methods_change_and_follow_into_the_draft(goals, cycle):
    published = goals.published(cycle_id=cycle)
    goals.edit(published, reason="New vision", vision="Cut invoice errors from 4% to 0.5% by December 2026")
    after = update(goals, OWNER, published.id, paths=("owner_id", "method_ids"), owner_id=TEAMMATE,
                   method_ids=["mth-1", "mth-2"])
    assert after.state == goals_pb2.V2MOM_STATE_DRAFT
    assert (after.content.obstacles[0].owner_id, list(after.content.obstacles[0].method_ids)) == (
        TEAMMATE, ["mth-1", "mth-2"])
    raw = goals.raw(published.id)
    assert raw["published"]["content"]["obstacles"][0]["owner_id"] == TEAMMATE
    assert "opened_at" not in raw["content"]["obstacles"][0]  # the working copy carries no open time
    approved = goals.approve(goals.submit(goals.client(OWNER).GetV2MOM(goals_pb2.GetV2MOMRequest(id=published.id))),
                             MANAGER)
    assert approved.content.obstacles[0].owner_id == TEAMMATE  # the next approval keeps the live change


def test_bad_requests_are_specific_errors(goals, cycle):
    published = goals.published(cycle_id=cycle)
    call = goals.client(OWNER).UpdateObstacle

    def request(**fields):
        base = dict(v2mom_id=published.id, obstacle_id="obs-1", obstacle=goals_pb2.Obstacle(status=RESOLVED),
                    update_mask=mask("status"))
        return goals_pb2.UpdateObstacleRequest(**{**base, **fields})

    expect(call, request(v2mom_id="bad id!"), Code.INVALID_ARGUMENT, "v2mom_id")
    expect(call, request(update_mask=mask("title")), Code.INVALID_ARGUMENT, "update_mask")
    expect(call, request(obstacle=goals_pb2.Obstacle()), Code.INVALID_ARGUMENT, "obstacle.status")
    expect(call, request(obstacle=goals_pb2.Obstacle(owner_id="nobody"), update_mask=mask("owner_id")),
           Code.INVALID_ARGUMENT, "obstacle.owner_id")
    expect(call, request(obstacle=goals_pb2.Obstacle(method_ids=["mth-99"]), update_mask=mask("method_ids")),
           Code.INVALID_ARGUMENT, "obstacle.method_ids[0]")
    expect(call, request(reason="x" * 1001), Code.INVALID_ARGUMENT, "reason")
    expect(call, request(obstacle_id="obs-99"), Code.NOT_FOUND)
    expect(call, request(expected_revision=1), Code.ABORTED)
    draft = goals.create(cycle_id=goals.new_cycle())
    expect(call, request(v2mom_id=draft.id), Code.FAILED_PRECONDITION)
    first = call(request())
    assert call(request()).revision == first.revision  # a replay changes nothing


def test_an_obstacle_open_too_long_is_flagged_stale(goals, cycle):
    published = goals.published(cycle_id=cycle)
    assert not published.content.obstacles[0].stale
    long_ago = utc_now() - timedelta(days=obstacles.DEFAULT_STALE_DAYS + 1)
    goals.db.v2moms.update_one({"_id": published.id}, {"$set": {"published.content.obstacles.0.opened_at": long_ago}})
    shown = goals.client(PEER).GetV2MOM(goals_pb2.GetV2MOMRequest(id=published.id)).content.obstacles[0]
    assert shown.stale and shown.open_time.ToDatetime().date() == long_ago.date()
    update(goals, OWNER, published.id, status=MITIGATING)  # still unresolved: it keeps its open time
    assert goals.client(PEER).GetV2MOM(goals_pb2.GetV2MOMRequest(id=published.id)).content.obstacles[0].stale
    update(goals, OWNER, published.id, status=RESOLVED)
    shown = goals.client(PEER).GetV2MOM(goals_pb2.GetV2MOMRequest(id=published.id)).content.obstacles[0]
    assert not shown.stale and not shown.HasField("open_time")
    reopened = update(goals, OWNER, published.id, status=OPEN).content.obstacles[0]
    assert not reopened.stale and reopened.open_time.ToDatetime().date() == utc_now().date()


def test_how_long_is_too_long_is_goals_apis_obstacle_stale_days(goals, cycle):
    published = goals.published(cycle_id=cycle)
    goals.db.v2moms.update_one({"_id": published.id},
                               {"$set": {"published.content.obstacles.0.opened_at": utc_now() - timedelta(days=3)}})
    request = goals_pb2.GetV2MOMRequest(id=published.id)
    assert not goals.client(PEER).GetV2MOM(request).content.obstacles[0].stale  # 3 days: fine by the default 14

    port = free_port()
    api = start_module("services.goals.api", {  # a goals-api as deployed, told 2 days, on the same database
        "MONGO_URI": goals.settings.mongo_uri, "MONGO_DB": goals.settings.database_name,
        "GRPC_ADDR": f"127.0.0.1:{port}", "SCIM_HTTP_ADDR": f"127.0.0.1:{free_port()}", "OBSTACLE_STALE_DAYS": "2",
        "LOG_LEVEL": "WARNING"})
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        try:
            grpc.channel_ready_future(channel).result(timeout=30)
        except grpc.FutureTimeoutError:
            raise AssertionError(f"goals-api never listened:\n{log_tail(api)}") from None
        peer = bearer_metadata(mint_dev_token(goals.settings.auth, PEER))
        shown = goals_pb2_grpc.GoalServiceStub(channel).GetV2MOM(request, metadata=peer, timeout=15)
        assert shown.content.obstacles[0].stale
    finally:
        channel.close()
        stop(api)
