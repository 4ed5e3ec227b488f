"""Benchmark: GetV2MOM and CreateV2MOM on goals-api, as a ratio of a bare grpcio+pymongo server.

One run starts, per store engine:
  1. the mongoeco wire server (its own process; SQLite in a temp dir, as
     `make run` uses, then the memory engine);
  2. goals-api (`python -m services.goals.api`, its own process) on database
     ``bench_goals``;
  3. bench/bare_server.py (its own process) on database ``bench_bare`` in the
     same store, with the same indexes;
and drives each from a separate client process (bench/load_client.py).

The two stacks run alternately (ours/bare, then bare/ours, ...) for a few
rounds, so slow drifts of the machine hit both; each round gives a ratio
(ours/bare for throughput, bare/ours for latency, so 1.0 means "as fast as
bare" either way) and the report gives the median ratio over the rounds.

Creates grow the collection, and mongoeco's insert cost grows with collection
size (docs/architecture.md, "Storage"). So in every round both stacks insert exactly
the same number of documents into collections of the same starting size, and
the round's documents are deleted afterwards: every round, and every per-round
ratio, compares like with like.

    .venv/bin/python -m bench.goals_api            # ~2.5 min, writes bench/results/goals_api.{md,json}
    .venv/bin/python -m bench.goals_api --quick    # ~30 s smoke run
"""

import argparse
import base64
import statistics
import sys
import tempfile
from pathlib import Path

import bson
import grpc
import pymongo
from google.type import date_pb2
from tqdm import tqdm

from bench import harness
from bench.harness import BARE, OURS, Process, fmt, verdict
from services.goals import repository
from services.goals.directory import Directory
from services.platform.api.auth import bearer_metadata, mint_dev_token
from services.platform.core.config import load
from services.platform.store.mongo import ensure_indexes
from v2mom.v1 import common_pb2, goals_pb2, goals_pb2_grpc

RESULT_NAME = "goals_api"

TARGET = 0.7  # our stack at >= 0.7 of the bare path, for both RPCs
OURS_DB, BARE_DB = "bench_goals", "bench_bare"
CYCLE = "FY2027"
ORG_UNIT = "acme"
MANAGER = "mgr"
RPCS = (("get", "GetV2MOM"), ("create", "CreateV2MOM"))

DEFAULTS = {
    "rounds": 8,
    "concurrency": 4,
    "seed_docs": 20,
    "get_warmup": 50,
    "get_count": 500,
    "create_warmup": 5,
    "create_count": 25,
    "time_limit": 20.0,
    "engines": "sqlite,memory",
}
QUICK = {
    "rounds": 2,
    "seed_docs": 8,
    "get_warmup": 20,
    "get_count": 200,
    "create_warmup": 4,
    "create_count": 20,
    "time_limit": 8.0,
    "engines": "sqlite",
}


# --- processes -------------------------------------------------------------------


def start_ours(uri: str, tmp: Path) -> tuple[Process, int]:
    process = harness.spawn_service("goals-api", "services.goals.api", tmp, {"MONGO_URI": uri, "MONGO_DB": OURS_DB})
    return process, harness.wait_for_port(process)


def start_bare(uri: str, tmp: Path) -> tuple[Process, int]:
    args = ["-m", "bench.bare_server", "--mongo-uri", uri, "--db", BARE_DB]
    process, port = harness.start_with_ready_file("bare-server", args, tmp, tmp / "bare.port")
    return process, int(port)


# --- data --------------------------------------------------------------------------


def content_template() -> goals_pb2.V2MOMContent:
    """A realistic individual V2MOM: 3 values, 4 methods with milestones, 2 obstacles, 3 measures.

    The load client makes the author the owner and accountable of every method.
    """
    day = lambda y, m, d: date_pb2.Date(year=y, month=m, day=d)  # noqa: E731
    return goals_pb2.V2MOMContent(
        title="FY27: ship what customers asked for",
        vision="Every customer on the new platform by Q4, with support tickets halved and releases every week.",
        values=[
            goals_pb2.Value(id=f"val{i}", name=name, description=f"We practise {name.lower()} in every plan and review.")
            for i, name in enumerate(("Customer first", "Ship small", "Own it"), 1)
        ],
        methods=[
            goals_pb2.Method(
                id=f"mth{i}",
                title=f"Method {i}: deliver milestone set {i}",
                description="Plan it, build it in small steps, measure the outcome and write it down.",
                value_ids=[f"val{1 + i % 3}"],
                consulted_ids=[MANAGER],
                start_date=day(2026, 2, 1),
                due_date=day(2026, 3 * i, 28),
                milestones=[
                    goals_pb2.Milestone(id=f"mil{i}{j}", title=f"Milestone {j}", due_date=day(2026, 3 * i - 1, 10 * j))
                    for j in (1, 2)
                ],
                weight=25,
            )
            for i in range(1, 5)
        ],
        obstacles=[
            goals_pb2.Obstacle(
                id=f"obs{i}", title=f"Obstacle {i}", description="Two open roles on the team.",
                status=goals_pb2.OBSTACLE_STATUS_OPEN, method_ids=["mth1"],
            )
            for i in (1, 2)
        ],
        measures=[
            goals_pb2.Measure(
                id=f"msr{i}",
                title=f"Measure {i}",
                kind=goals_pb2.MEASURE_KIND_LAGGING,
                unit="NPS",
                baseline=30,
                target=45,
                direction=goals_pb2.DIRECTION_INCREASE,
                due_date=day(2026, 12, 31),
                method_ids=[f"mth{i}"],
            )
            for i in (1, 2, 3)
        ],
    )


def author_ids(count: int) -> list[str]:
    return [f"author{i:05d}" for i in range(count)]


def seed_directory(db, authors: list[str]) -> None:
    """The org the API needs, through Directory (as HRIS sync will write it)."""
    directory = Directory(db, 0)
    directory.upsert_org_unit({"_id": ORG_UNIT, "name": "Acme", "level": "ORG_LEVEL_COMPANY", "parent_id": None, "leader_id": "ceo"})
    directory.upsert_person({"_id": "ceo", "display_name": "CEO", "org_unit_id": ORG_UNIT, "manager_id": None})
    directory.upsert_person({"_id": MANAGER, "display_name": "Manager", "org_unit_id": ORG_UNIT, "manager_id": "ceo"})
    for person_id in authors:
        directory.upsert_person({"_id": person_id, "display_name": person_id, "org_unit_id": ORG_UNIT, "manager_id": MANAGER})
    directory.upsert_cycle(CYCLE, "2026-02-01", "2027-01-31")


def create_request(person_id: str, template: goals_pb2.V2MOMContent) -> goals_pb2.CreateV2MOMRequest:
    content = goals_pb2.V2MOMContent()
    content.CopyFrom(template)
    for method in content.methods:
        method.owner_id = method.accountable_id = person_id
    return goals_pb2.CreateV2MOMRequest(
        level=common_pb2.ORG_LEVEL_INDIVIDUAL, owner_id=person_id, org_unit_id=ORG_UNIT, cycle_id=CYCLE, content=content
    )


def seed_v2moms(port: int, people: list[tuple[str, str]], template) -> list[list[str]]:
    """V2MOMs for GetV2MOM to read, made through the stack's own CreateV2MOM: [[id, owner's token]]."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = goals_pb2_grpc.GoalServiceStub(channel)
        return [
            [stub.CreateV2MOM(create_request(person_id, template), metadata=bearer_metadata(token), timeout=30).id, token]
            for person_id, token in people
        ]


def collection_sizes(client: pymongo.MongoClient) -> dict[str, int]:
    return {stack: client[db][repository.V2MOMS].count_documents({}) for stack, db in ((OURS, OURS_DB), (BARE, BARE_DB))}


def reset_collections(client: pymongo.MongoClient, keep: dict[str, list[str]]) -> None:
    """Deletes what a round created, so the next round's creates start from the same size again."""
    for stack, db in ((OURS, OURS_DB), (BARE, BARE_DB)):
        client[db][repository.V2MOMS].delete_many({"_id": {"$nin": keep[stack]}})


def doc_sizes(client: pymongo.MongoClient) -> dict:
    """Mean BSON size of stored documents, whole and as read back by GetV2MOM."""
    sizes = {}
    for stack, db_name in ((OURS, OURS_DB), (BARE, BARE_DB)):
        docs = list(client[db_name][repository.V2MOMS].find({}).limit(20))
        read = [{k: v for k, v in d.items() if k not in repository.SUMMARY} for d in docs]
        sizes[stack] = {
            "stored_bytes": round(statistics.mean(len(bson.encode(d)) for d in docs)),
            "stored_elements": round(statistics.mean(harness.elements(d) for d in docs)),
            "read_bytes": round(statistics.mean(len(bson.encode(d)) for d in read)),
            "read_elements": round(statistics.mean(harness.elements(d) for d in read)),
        }
    return sizes


# --- measuring ---------------------------------------------------------------------


def summarize(rounds: list[dict]) -> dict:
    """Per RPC: the shared medians and ratios, gated at "runs at >= 0.7 of bare" on throughput and median
    latency both; p99 is reported, not gated (too few samples)."""
    summary = {}
    for op, rpc in RPCS:
        row = {"rpc": rpc, **harness.summarize_rounds([r[op] for r in rounds]), "target": TARGET}
        row["pass"] = bool(row["errors"] == 0 and row["ratio_throughput"] >= TARGET and row["ratio_p50"] >= TARGET)
        summary[op] = row
    return summary


def bench_engine(engine: str, opts: argparse.Namespace, bar: tqdm) -> dict:
    settings = load("goals")
    template = content_template()
    per_round_creates = opts.create_warmup + opts.create_count
    authors = author_ids(opts.seed_docs + opts.rounds * per_round_creates)
    tokens = {a: mint_dev_token(settings.auth, a) for a in authors}
    processes: list[Process] = []
    client = None
    with tempfile.TemporaryDirectory(prefix="bench-goals-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            bar.set_description(f"{engine}: starting store and servers")
            store, uri = harness.start_store(engine, tmp)
            processes.append(store)
            client = harness.mongo_client(uri)
            seed_directory(client[OURS_DB], authors)
            ensure_indexes(client[BARE_DB], repository.INDEXES)  # the same indexes as ours: same store work
            ours, ours_port = start_ours(uri, tmp)
            processes.append(ours)
            bare, bare_port = start_bare(uri, tmp)
            processes.append(bare)
            ports = {OURS: ours_port, BARE: bare_port}
            servers = {OURS: ours, BARE: bare}

            bar.set_description(f"{engine}: seeding {opts.seed_docs} V2MOMs per stack")
            seed_people = [(a, tokens[a]) for a in authors[: opts.seed_docs]]
            get_items = {stack: seed_v2moms(ports[stack], seed_people, template) for stack in (OURS, BARE)}
            bar.update(1)

            content_b64 = base64.b64encode(template.SerializeToString()).decode()
            common = {"concurrency": opts.concurrency, "time_limit": opts.time_limit}
            keep = {stack: [item[0] for item in items] for stack, items in get_items.items()}
            rounds = []
            for index in range(opts.rounds):
                order = (OURS, BARE) if index % 2 == 0 else (BARE, OURS)
                start = opts.seed_docs + index * per_round_creates
                round_authors = authors[start : start + per_round_creates]
                record = {"round": index + 1, "order": list(order)}
                for op, rpc in RPCS:
                    if op == "create":
                        sizes = collection_sizes(client)
                        if sizes[OURS] != sizes[BARE]:
                            raise RuntimeError(f"v2moms collections differ in size before creates: {sizes}")
                        record["create_start_size"] = sizes[OURS]
                    for stack in order:
                        bar.set_description(f"{engine}: round {index + 1}/{opts.rounds} {rpc} {stack}")
                        plan = {**common, "target": f"127.0.0.1:{ports[stack]}", "op": op}
                        if op == "get":
                            plan |= {"warmup": opts.get_warmup, "count": opts.get_count, "items": get_items[stack]}
                        else:
                            plan |= {
                                "warmup": opts.create_warmup,
                                "count": opts.create_count,
                                "items": [[a, tokens[a]] for a in round_authors],
                                "cycle_id": CYCLE,
                                "org_unit_id": ORG_UNIT,
                                "content": content_b64,
                            }
                        record.setdefault(op, {})[stack] = harness.measure(plan, servers[stack], store)
                        harness.require_alive(processes)
                        bar.update(1)
                    record[op]["ratios"] = harness.round_ratios(record[op][OURS], record[op][BARE])
                bar.set_postfix(
                    get=f"{record['get']['ratios']['throughput']:.2f}", create=f"{record['create']['ratios']['throughput']:.2f}"
                )
                record["create_end_size"] = collection_sizes(client)
                rounds.append(record)
                if index == opts.rounds - 1:
                    stored = doc_sizes(client)
                reset_collections(client, keep)
        finally:
            if client is not None:
                client.close()
            for process in reversed(processes):
                process.stop()
    return {
        "engine": engine,
        "summary": summarize(rounds),
        "rounds": rounds,
        "doc_sizes": stored,
        "directory_cache_seconds": settings.directory_cache_seconds,
    }


# --- reporting -----------------------------------------------------------------------


def render_markdown(result: dict) -> str:
    o = result["options"]
    lines = [
        "# goals-api benchmark: GetV2MOM and CreateV2MOM against a bare grpcio server",
        "",
        *harness.machine_lines(result, "anything else running adds noise to both stacks"),
        f"- **Load:** a separate client process, {o['concurrency']} threads with one gRPC channel each; "
        f"{o['rounds']} rounds, stacks alternating (ours/bare, then bare/ours); "
        f"GetV2MOM {o['get_count']} requests per stack per round after {o['get_warmup']} warm-up; "
        f"CreateV2MOM {o['create_count']} after {o['create_warmup']} warm-up; each phase bounded to {o['time_limit']:.0f} s.",
        f"- **Target:** ours ≥ {TARGET} × bare, for throughput and p50 latency of both RPCs "
        "(ratios are medians of per-round ratios; latency ratios are bare/ours, so above 1.0 means faster than bare). "
        "p99 is shown, not gated: a few hundred samples per round make it noisy.",
        "",
        f"## Verdict: **{verdict(result['pass'])}**",
        "",
    ]
    for engine in result["engines"]:
        s, sizes = engine["summary"], engine["doc_sizes"]
        label = "SQLite engine (as `make run`)" if engine["engine"] == "sqlite" else "memory engine"
        lines += [
            f"### Store: mongoeco wire server, {label}",
            "",
            "| RPC | ours req/s | bare req/s | **throughput ratio** | ours p50 ms | bare p50 ms | **p50 ratio** "
            "| ours p99 ms | bare p99 ms | p99 ratio | errors | target | result |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for op, rpc in RPCS:
            r = s[op]
            lines.append(
                f"| {rpc} | {fmt(r['ours_throughput'], 1)} | {fmt(r['bare_throughput'], 1)} | **{fmt(r['ratio_throughput'])}** "
                f"({fmt(r['ratio_throughput_range'][0])}–{fmt(r['ratio_throughput_range'][1])}) "
                f"| {fmt(r['ours_p50_ms'])} | {fmt(r['bare_p50_ms'])} | **{fmt(r['ratio_p50'])}** "
                f"| {fmt(r['ours_p99_ms'])} | {fmt(r['bare_p99_ms'])} | {fmt(r['ratio_p99'])} "
                f"| {r['errors']} | ≥ {TARGET} | {verdict(r['pass'])} |"
            )
        lines += [
            "",
            "CPU per request (including warm-up calls), from /proc: what each server process and the store spent. "
            "Not gated; it shows what the ratio above cannot when the store dominates.",
            "",
            "| RPC | ours server CPU ms/req | bare server CPU ms/req | ours/bare | store CPU ms/req, ours | store CPU ms/req, bare |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for op, rpc in RPCS:
            r = s[op]
            lines.append(
                f"| {rpc} | {fmt(r['ours_server_cpu_ms_per_req'])} | {fmt(r['bare_server_cpu_ms_per_req'])} "
                f"| {fmt(r['ratio_server_cpu'])}× | {fmt(r['ours_store_cpu_ms_per_req'])} | {fmt(r['bare_store_cpu_ms_per_req'])} |"
            )
        bounded = [rpc for op, rpc in RPCS if s[op]["time_bounded"]]
        if bounded:
            lines += ["", f"- **Note:** some {' and '.join(bounded)} phases stopped at the {o['time_limit']:.0f} s bound "
                      "before their request count; their throughput is over the requests that completed."]
        starts = sorted({r["create_start_size"] for r in engine["rounds"]})
        lines += [
            "",
            f"- Creates: in every round both stacks insert the same number of documents ({o['create_warmup'] + o['create_count']}, "
            f"warm-up included) into v2moms collections of the same starting size "
            f"({', '.join(map(str, starts))} documents); the round's documents are deleted afterwards, so every round starts "
            "from the same size (mongoeco's insert cost grows with collection size).",
            f"- Stored V2MOM document: ours {sizes[OURS]['stored_bytes']:,} B / {sizes[OURS]['stored_elements']} elements, "
            f"bare {sizes[BARE]['stored_bytes']:,} B / {sizes[BARE]['stored_elements']} elements; read back by GetV2MOM: "
            f"ours {sizes[OURS]['read_bytes']:,} B / {sizes[OURS]['read_elements']}, bare {sizes[BARE]['read_bytes']:,} B / {sizes[BARE]['read_elements']}.",
            "",
            "<details><summary>Per round</summary>",
            "",
            "| round | order | RPC | ours req/s | bare req/s | tput ratio | ours p50 | bare p50 | p50 ratio | p99 ratio |",
            "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in engine["rounds"]:
            for op, rpc in RPCS:
                x = r[op]
                lines.append(
                    f"| {r['round']} | {'/'.join(r['order'])} | {rpc} | {fmt(x[OURS]['throughput'], 1)} | {fmt(x[BARE]['throughput'], 1)} "
                    f"| {fmt(x['ratios']['throughput'])} | {fmt(x[OURS]['p50_ms'])} | {fmt(x[BARE]['p50_ms'])} "
                    f"| {fmt(x['ratios']['p50'])} | {fmt(x['ratios']['p99'])} |"
                )
        lines += ["", "</details>", ""]
    lines += [
        "## What is compared",
        "",
        "- **ours**: `python -m services.goals.api` as deployed: JWT auth and error-mapping interceptor, validation, "
        "directory look-ups (owner and cycle, through the directory cache), access checks, the stored history entry "
        "and outbox event, proto conversion.",
        "- **bare** (`bench/bare_server.py`): a plain grpcio server on the generated `GoalServiceServicer` base, same "
        "thread-pool size, no interceptors. GetV2MOM is one `find_one` by `_id` with our projection, turned into the "
        "response by the message constructors; CreateV2MOM is one `insert_one` of a document with the same shape as "
        "ours (content, a history entry and a pending event each carrying the content), in its own database in the "
        "same store, with the same indexes.",
        "- GetV2MOM reads V2MOMs that each stack created through its own CreateV2MOM; each request is made by the "
        "V2MOM's owner. Each CreateV2MOM comes from a different author (one individual V2MOM per person and cycle).",
        "- Ratios factor out the store (mongoeco is far slower than MongoDB; see docs/architecture.md, \"Storage\"): "
        "absolute numbers only compare runs on the same machine.",
        "",
        "Regenerate with `make bench` (or `.venv/bin/python -m bench.goals_api`; `--help` lists the knobs).",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.goals_api", description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    harness.add_quick(parser, QUICK, "a ~30 s smoke run")
    parser.add_argument("--rounds", type=int, help=f"A/B rounds (default {DEFAULTS['rounds']})")
    parser.add_argument("--concurrency", type=int, help=f"client threads (default {DEFAULTS['concurrency']})")
    parser.add_argument("--seed-docs", type=int, help=f"V2MOMs per stack for GetV2MOM to read (default {DEFAULTS['seed_docs']})")
    parser.add_argument("--get-warmup", type=int, help=f"(default {DEFAULTS['get_warmup']})")
    parser.add_argument("--get-count", type=int, help=f"measured GetV2MOM calls per stack per round (default {DEFAULTS['get_count']})")
    parser.add_argument("--create-warmup", type=int, help=f"(default {DEFAULTS['create_warmup']})")
    parser.add_argument("--create-count", type=int, help=f"measured CreateV2MOM calls per stack per round (default {DEFAULTS['create_count']})")
    parser.add_argument("--time-limit", type=float, help=f"seconds per measured phase (default {DEFAULTS['time_limit']})")
    parser.add_argument("--engines", help=f"comma-separated: sqlite, memory (default {DEFAULTS['engines']})")
    parser.add_argument("--out-dir", type=Path, default=harness.RESULTS_DIR, help="where goals_api.md and goals_api.json go")
    harness.add_strict_and_progress(parser, "the target is missed")
    args = parser.parse_args(argv)
    harness.apply_defaults(args, DEFAULTS, QUICK)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(args.engines) - {"sqlite", "memory"}
    if unknown or not args.engines:
        parser.error(f"--engines takes sqlite and/or memory, not {', '.join(sorted(unknown)) or 'nothing'}")
    harness.require_positive(parser, args, ("rounds", "concurrency", "seed_docs", "get_count", "create_count"))
    return args


def console_summary(engines: list[dict]) -> str:
    return "\n".join(
        f"{engine['engine']:>6} {rpc:<11} ours {r['ours_throughput']:8.1f} req/s  bare {r['bare_throughput']:8.1f} req/s  "
        f"ratio {fmt(r['ratio_throughput'])}  p50 ratio {fmt(r['ratio_p50'])}  p99 ratio {fmt(r['ratio_p99'])}  "
        f"{verdict(r['pass'])}"
        for engine in engines
        for op, rpc in RPCS
        for r in (engine["summary"][op],)
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    clock = harness.RunClock.start()
    steps = len(args.engines) * (1 + args.rounds * 2 * len(RPCS))
    engines = []
    with harness.progress_bar(steps, args.progress) as bar:
        for engine in args.engines:
            engines.append(bench_engine(engine, args, bar))
    options = {k: getattr(args, k) for k in ("quick", "rounds", "concurrency", "seed_docs", "get_warmup", "get_count",
                                               "create_warmup", "create_count", "time_limit", "engines")}
    result = {
        **clock.record(RESULT_NAME, argv),
        "options": options,
        "target": TARGET,
        "engines": engines,
        # The verdict is the SQLite store's (what `make run` uses) when it ran; otherwise the engines run.
        "pass": all(
            row["pass"]
            for engine in engines
            if engine["engine"] == "sqlite" or "sqlite" not in args.engines
            for row in engine["summary"].values()
        ),
    }
    return harness.finish(result, args, render_markdown(result), console_summary(engines), f"{verdict(result['pass'])} (target {TARGET}); ")


if __name__ == "__main__":
    sys.exit(main())
