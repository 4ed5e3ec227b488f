"""Planning commands: cycles (and the yearly rollover), copying a V2MOM forward, templates, withdrawing a submission.

`v2mom copy` reads last cycle's final values and completed methods from the
check-ins API (GetProgress) and sends them with the copy: goals asks no other
service.
"""

from datetime import date

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from google.type import date_pb2

from v2mom.v1 import checkins_pb2, common_pb2, goals_pb2
from v2mom_format import yaml_content

from . import refs, render
from .errors import CliError

PARTS = ("values", "methods", "obstacles", "measures")
LEVELS = {"company": common_pb2.ORG_LEVEL_COMPANY, "department": common_pb2.ORG_LEVEL_DEPARTMENT,
          "team": common_pb2.ORG_LEVEL_TEAM, "individual": common_pb2.ORG_LEVEL_INDIVIDUAL}


# --- cycles -----------------------------------------------------------------------------------------


def cycles(ctx, args) -> int:
    listed = ctx.call("ListCycles", goals_pb2.ListCyclesRequest()).cycles
    current = _current_id(ctx)
    for cycle in listed:
        print(_cycle_line(cycle, cycle.id == current))
    return 0


def current_cycle(ctx, args) -> int:
    found = ctx.call("GetCurrentCycle", goals_pb2.GetCurrentCycleRequest())
    quarter = f", {found.quarter.id} ({_day(found.quarter.start_date)} to {_day(found.quarter.end_date)})" \
        if found.HasField("quarter") else ""
    print(f"{found.cycle.id}: {_day(found.cycle.start_date)} to {_day(found.cycle.end_date)}{quarter}")
    return 0


def create_cycle(ctx, args) -> int:
    cycle = common_pb2.Cycle(id=args.cycle_id, start_date=_proto_day(args.start), end_date=_proto_day(args.end))
    if args.quarters:
        cycle.quarters.extend(quarters_of(args.start, args.end))
    made = ctx.call("CreateCycle", goals_pb2.CreateCycleRequest(cycle=cycle))
    print(f"Created {_cycle_line(made, False)}")
    return 0


def update_cycle(ctx, args) -> int:
    stored = {c.id: c for c in ctx.call("ListCycles", goals_pb2.ListCyclesRequest()).cycles}.get(args.cycle_id)
    if stored is None:
        raise CliError(f"no cycle {args.cycle_id!r}; see `v2mom cycles`")
    cycle, paths = common_pb2.Cycle(id=args.cycle_id), []
    if args.start:
        cycle.start_date.CopyFrom(_proto_day(args.start))
        paths.append("start_date")
    if args.end:
        cycle.end_date.CopyFrom(_proto_day(args.end))
        paths.append("end_date")
    if args.quarters is not None:
        start, end = args.start or _date(stored.start_date), args.end or _date(stored.end_date)
        cycle.quarters.extend(quarters_of(start, end) if args.quarters else [])
        paths.append("quarters")
    if not paths:
        raise CliError("say what changes: --start, --end, --quarters or --no-quarters")
    changed = ctx.call("UpdateCycle", goals_pb2.UpdateCycleRequest(cycle=cycle, update_mask=FieldMask(paths=paths)))
    print(f"Updated {_cycle_line(changed, False)}")
    return 0


def close_cycle(ctx, args) -> int:
    next_cycle = common_pb2.Cycle(id=args.next)
    if args.next_start or args.next_end:
        if not (args.next_start and args.next_end):
            raise CliError("a new next cycle needs both --next-start and --next-end")
        next_cycle.start_date.CopyFrom(_proto_day(args.next_start))
        next_cycle.end_date.CopyFrom(_proto_day(args.next_end))
        if args.quarters:
            next_cycle.quarters.extend(quarters_of(args.next_start, args.next_end))
    request = goals_pb2.CloseCycleRequest(cycle_id=args.cycle_id, reason=args.reason, next_cycle=next_cycle)
    closed = ctx.call("CloseCycle", request)
    print(f"Closed {closed.cycle.id}: {closed.archived_count} V2MOM(s) still in progress archived.")
    print(f"Open: {_cycle_line(closed.next_cycle, False)}")
    print(f"Next: v2mom copy me --to {closed.next_cycle.id}  (or @person, unit:<unit>, each with /{closed.cycle.id})")
    return 0


def quarters_of(start: date, end: date) -> list[common_pb2.Quarter]:
    """Four quarters of three months from the start; the last one ends with the cycle."""
    firsts = [_months_on(start, 3 * n) for n in range(4)]
    lasts = [date.fromordinal(first.toordinal() - 1) for first in firsts[1:]] + [end]
    return [common_pb2.Quarter(id=f"Q{n + 1}", start_date=_proto_day(a), end_date=_proto_day(b))
            for n, (a, b) in enumerate(zip(firsts, lasts))]


# --- copy forward -----------------------------------------------------------------------------------


def copy(ctx, args) -> int:
    source_id = ctx.resolve(args.v2mom)
    finals, completed = ([], []) if args.no_baselines else _last_cycle_results(ctx, source_id)
    omitted = [part.strip() for part in (args.omit or "").split(",") if part.strip()]
    unknown = [part for part in omitted if part not in PARTS]
    if unknown:
        raise CliError(f"--omit takes {', '.join(PARTS)}; not {', '.join(unknown)}")
    request = goals_pb2.CopyV2MOMRequest(
        source_id=source_id, cycle_id=args.to, omit_item_ids=args.drop or [],
        include_completed_methods=args.include_completed, completed_method_ids=completed, final_values=finals,
        parent_id=ctx.resolve(args.parent, args.to) if args.parent else "", request_id=ctx.idempotency_key,
        **{f"omit_{part}": True for part in omitted},
    )
    copied = ctx.call("CopyV2MOM", request)
    aligned = f", aligned to {copied.parent_id}" if copied.parent_id else ", not aligned (no matching parent yet)"
    print(f"Copied {source_id} into {copied.cycle_id} as draft {copied.id}{aligned}.")
    print(f"  {len(copied.content.values)} values, {len(copied.content.methods)} methods, "
          f"{len(copied.content.obstacles)} obstacles, {len(copied.content.measures)} measures; "
          f"{len(finals)} baseline(s) from last cycle's final values.")
    print(f"Next: v2mom show {copied.id}, v2mom edit {copied.id} -f ..., v2mom submit {copied.id}")
    return 0


def _last_cycle_results(ctx, v2mom_id: str) -> tuple[list, list[str]]:
    """Each measure's latest value and the methods done, as check-ins knows them; nothing if it knows none."""
    try:
        progress = ctx.checkins.call("GetProgress", checkins_pb2.GetProgressRequest(v2mom_id=v2mom_id))
    except grpc.RpcError as error:
        if error.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
            raise
        print(f"(no check-ins to carry over: {error.details()})")
        return [], []
    finals = [goals_pb2.MeasureFinalValue(measure_id=item.item_id, value=item.value) for item in progress.items
              if item.kind == checkins_pb2.ITEM_KIND_MEASURE and item.HasField("value")]
    done = [item.item_id for item in progress.items
            if item.kind == checkins_pb2.ITEM_KIND_METHOD and item.progress_percent >= 100]
    return finals, done


# --- templates ---------------------------------------------------------------------------------------


def templates(ctx, args) -> int:
    request = goals_pb2.ListTemplatesRequest(level=_level(args.level) if args.level else 0)
    for template in refs.list_all(ctx.client, "ListTemplates", request, "templates"):
        print(f"{template.id:<28} {render.level_name(template.level):<11} {template.name}")
    return 0


def show_template(ctx, args) -> int:
    template = ctx.call("GetTemplate", goals_pb2.GetTemplateRequest(id=args.template_id))
    print(f"{template.name} ({render.level_name(template.level)}, revision {template.revision})")
    if template.description:
        print(template.description)
    content = template.content
    print(f"\nVision: {content.vision}")
    for value in content.values:
        print(f"  value   {value.name}: {value.description}")
    for method in content.methods:
        print(f"  method  {method.title}")
    for measure in content.measures:
        print(f"  measure {measure.title}")
    for obstacle in content.obstacles:
        print(f"  obstacle {obstacle.title}")
    print(f"\nStart from it: v2mom create --template {template.id}")
    return 0


def save_template(ctx, args) -> int:
    document = yaml_content.load_file(args.file)
    template = goals_pb2.Template(
        id=args.template_id, name=args.name or str(document.get("title") or args.template_id),
        description=args.description or "", level=yaml_content.level_of(document),
        content=yaml_content.to_content(document, ctx.me),
    )
    if args.update:
        paths = ["name", "level", "content"] + (["description"] if args.description is not None else [])
        saved = ctx.call("UpdateTemplate", goals_pb2.UpdateTemplateRequest(template=template, update_mask=FieldMask(paths=paths)))
    else:
        saved = ctx.call("CreateTemplate", goals_pb2.CreateTemplateRequest(template=template))
    print(f"Saved template {saved.id} (revision {saved.revision}).")
    return 0


def delete_template(ctx, args) -> int:
    ctx.call("DeleteTemplate", goals_pb2.DeleteTemplateRequest(id=args.template_id))
    print(f"Deleted template {args.template_id}.")
    return 0


def create_from_template(ctx, args) -> int:
    template = ctx.call("GetTemplate", goals_pb2.GetTemplateRequest(id=args.template))
    request = goals_pb2.CreateV2MOMRequest(
        level=template.level, cycle_id=args.cycle or refs.current_cycle(ctx.client), org_unit_id=args.unit or "",
        template_id=template.id, request_id=ctx.idempotency_key,
    )
    v2mom = ctx.call("CreateV2MOM", request)
    print(f"Created {v2mom.id} from template {template.id} ({render.state_name(v2mom.state)}).")
    print(f"Next: v2mom show {v2mom.id} --yaml > mine.yaml, make it yours, v2mom edit {v2mom.id} -f mine.yaml")
    return 0


# --- withdrawing ---------------------------------------------------------------------------------------


def withdraw(ctx, args) -> int:
    request = goals_pb2.WithdrawSubmissionRequest(id=ctx.resolve(args.v2mom), reason=args.reason or "")
    v2mom = ctx.call("WithdrawSubmission", request)
    print(f"Withdrew {v2mom.id}: it is a draft again; submit it when it is ready.")
    return 0


# --- helpers ---------------------------------------------------------------------------------------------


def _current_id(ctx) -> str:
    try:
        return ctx.call("GetCurrentCycle", goals_pb2.GetCurrentCycleRequest()).cycle.id
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return ""


def _cycle_line(cycle: common_pb2.Cycle, current: bool) -> str:
    marks = (" (current)" if current else "") + (f" closed, then {cycle.next_cycle_id}" if cycle.HasField("close_time") else "")
    quarters = f"  quarters: {', '.join(q.id for q in cycle.quarters)}" if cycle.quarters else ""
    return f"{cycle.id:<10} {_day(cycle.start_date)} to {_day(cycle.end_date)}{marks}{quarters}"


def _level(name: str) -> int:
    if name not in LEVELS:
        raise CliError(f"--level takes {', '.join(LEVELS)}; not {name!r}")
    return LEVELS[name]


def _months_on(day: date, months: int) -> date:
    month = day.month - 1 + months
    return date(day.year + month // 12, month % 12 + 1, min(day.day, 28))


def _proto_day(day: date) -> date_pb2.Date:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def _date(value: date_pb2.Date) -> date:
    return date(value.year, value.month, value.day)


def _day(value: date_pb2.Date) -> str:
    return _date(value).isoformat()
