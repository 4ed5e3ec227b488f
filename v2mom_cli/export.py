"""`v2mom export`: a subtree's V2MOMs in a cycle, as a file a leader opens in a spreadsheet.

goals-api streams the V2MOMs the caller may see (ExportV2MOMs); check-ins-api gives each one's progress and
latest check-in. ExportV2MOMs carries progress and latest check-ins too, as goals-worker last heard them from
checkins' events, but not the values' progress, which only GetProgress gives; so the file is read from
check-ins-api, live, and the merge is here: one row per value, method, measure and obstacle, each carrying its
V2MOM's columns, so a spreadsheet can filter and pivot on them.
"""

import sys
from pathlib import Path

import grpc
from tqdm import tqdm

from v2mom.v1 import checkins_pb2, common_pb2, goals_pb2

from . import refs, spreadsheet

HEADER = [
    "Cycle", "Org unit", "V2MOM", "V2MOM id", "Level", "State", "Owner", "Owner id", "Progress %", "Tree progress %",
    "Latest check-in", "Latest check-in by", "Latest check-in on", "Latest comment",
    "Item kind", "Item id", "Item", "Item owner", "Item progress %", "Item status", "Item last check-in",
]
WRITERS = {"csv": spreadsheet.write_csv, "xlsx": spreadsheet.write_xlsx}


def export(ctx, args) -> int:
    cycle_id = args.cycle or refs.current_cycle(ctx.client)
    unit = args.unit or _my_unit(ctx)
    path = Path(args.output or f"v2moms-{unit}-{cycle_id}.{args.format}")
    request = goals_pb2.ExportV2MOMsRequest(org_unit_id=unit, cycle_id=cycle_id, include_archived=args.include_archived)
    rows, count, bar = [], 0, None
    for exported in ctx.client.stream("ExportV2MOMs", request):
        if bar is None:  # the first message says how many follow; tqdm draws only on a terminal
            bar = tqdm(total=exported.total, desc="Exporting", unit="V2MOM", file=sys.stderr, disable=None)
        rows += v2mom_rows(exported, _progress(ctx, exported.v2mom), _latest_checkin(ctx, exported.v2mom))
        count += 1
        bar.update(1)
    if bar is not None:
        bar.close()
    WRITERS[args.format](path, HEADER, rows)
    print(f"Wrote {count} V2MOMs ({len(rows)} rows) of {unit} in {cycle_id} to {path}")
    return 0


def _my_unit(ctx) -> str:
    return ctx.call("GetPerson", goals_pb2.GetPersonRequest(id=ctx.me)).org_unit_id


def _progress(ctx, v2mom: goals_pb2.V2MOM) -> checkins_pb2.Progress | None:
    """None for a V2MOM never published (nothing to check in on) or that check-ins does not know."""
    if not v2mom.published_revision:
        return None
    try:
        return ctx.checkins.call("GetProgress", checkins_pb2.GetProgressRequest(v2mom_id=v2mom.id), attempts=3)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


def _latest_checkin(ctx, v2mom: goals_pb2.V2MOM) -> checkins_pb2.Checkin | None:
    if not v2mom.published_revision:
        return None
    found = ctx.checkins.call("ListCheckins", checkins_pb2.ListCheckinsRequest(v2mom_id=v2mom.id, page_size=1),
                              attempts=3)
    return found.checkins[0] if found.checkins else None


def v2mom_rows(exported: goals_pb2.ExportedV2MOM, progress: checkins_pb2.Progress | None,
               latest: checkins_pb2.Checkin | None) -> list[spreadsheet.Row]:
    """The V2MOM's rows: its vision, then each value, method, measure and obstacle."""
    v2mom = exported.v2mom
    titles = {i.id: i.title for i in (*v2mom.content.methods, *v2mom.content.measures)}
    common = [
        v2mom.cycle_id, exported.org_unit_name or v2mom.org_unit_id, v2mom.content.title, v2mom.id,
        _enum(v2mom.level, "ORG_LEVEL_"), _enum_name(goals_pb2.V2MOMState, v2mom.state, "V2MOM_STATE_"),
        exported.owner.display_name or v2mom.owner_id, v2mom.owner_id,
        _round(progress.progress_percent) if progress else None,
        _round(progress.tree_progress_percent) if progress else None,
        _time(latest.observe_time) if latest else None, latest.author_id if latest else None,
        titles.get(latest.item_id, latest.item_id) if latest else None, latest.comment if latest else None,
    ]
    items = {i.item_id: i for i in progress.items} if progress else {}
    values = {v.value_id: v for v in progress.values} if progress else {}
    rows = [common + ["Vision", "", v2mom.content.vision, "", None, "", ""]]
    for value in v2mom.content.values:
        shown = values.get(value.id)
        rows.append(common + ["Value", value.id, value.name, "", _round(shown.progress_percent) if shown else None, "", ""])
    for kind, things in (("Method", v2mom.content.methods), ("Measure", v2mom.content.measures)):
        for thing in things:
            rows.append(common + [kind, thing.id, thing.title, thing.owner_id, *_item_columns(items.get(thing.id))])
    for obstacle in v2mom.content.obstacles:
        status = _enum_name(goals_pb2.ObstacleStatus, obstacle.status, "OBSTACLE_STATUS_")
        rows.append(common + ["Obstacle", obstacle.id, obstacle.title, obstacle.owner_id, None, status, ""])
    return rows


def _item_columns(item: checkins_pb2.ItemProgress | None) -> list:
    if item is None:
        return [None, "", ""]
    checked = _time(item.last_checkin_time) if item.HasField("last_checkin_time") else ""
    status = _enum_name(checkins_pb2.CheckinStatus, item.status, "CHECKIN_STATUS_") if item.status else ""
    return [_round(item.progress_percent), status, checked]


def _enum(value: int, prefix: str) -> str:
    return _enum_name(common_pb2.OrgLevel, value, prefix)


def _enum_name(enum, value: int, prefix: str) -> str:
    return enum.Name(value).removeprefix(prefix).replace("_", " ").lower() if value else ""


def _round(percent: float) -> float:
    return round(percent, 1)


def _time(stamp) -> str:
    return stamp.ToDatetime().strftime("%Y-%m-%d %H:%M")
