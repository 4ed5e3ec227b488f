"""Benchmark: goals-api's SCIM endpoint under a provisioning client's load, against a bare HTTP server doing
the store's part of the same requests.

One run, on the mongoeco wire server with its SQLite engine (what `make run` uses), each part its own process:

- **ours**: the real goals-api (``python -m services.goals.api``, database ``bench_scim``, SCIM on, the org
  units seeded through ``Directory``), serving SCIM as shipped (8 HTTP threads);
- **bare**: ``python -m bench.scim_bare`` (database ``bench_scim_bare``, with the indexes of goals' ``people``):
  a token compare, one ``insert_one`` per POST, one ``find_one_and_update`` per PATCH (what is left when the
  use case is taken away);
- **the client**: ``python -m bench.scim_client``, 4 threads, each creating a user (POST /Users with the
  enterprise extension) and then patching it (Entra's ``Replace`` of ``active`` as "False", plus a title),
  for a fixed time after a warm-up, a new connection per request.

Each phase starts from an empty ``people`` (the org units stay), so each measures the same directory size;
rounds alternate which stack goes first; each stack's numbers are medians over rounds, the ratio ours ÷ bare
per round then its median (1.0: as fast as the bare store calls). Target (the issue's): ours sustains
≥ 25 requests/s with 4 clients, with no errors; p99 is reported.

    .venv/bin/python -m bench.scim            # about 2 minutes; bench/results/scim.{md,json}
    .venv/bin/python -m bench.scim --quick    # a smoke run, well under a minute
"""

import argparse
import sys
import tempfile
import uuid
from pathlib import Path

from bench import harness
from bench.harness import BARE, Process

RESULT_NAME = "scim"
OURS = "ours"
TARGET_RPS = 25.0
TOKEN = "bench-scim-token-" + "0" * 32
DB, BARE_DB = "bench_scim", "bench_scim_bare"
DEPARTMENT = "Engineering"
SCIM_LISTENING = "scim listening"

DEFAULTS = {"seconds": 20.0, "rounds": 3, "concurrency": 4, "warmup": 20}
QUICK = {"seconds": 3.0, "rounds": 1, "concurrency": 4, "warmup": 4}


def seed_units(mongo_uri: str) -> None:
    """The org units users are provisioned into, as the HRIS would have written them; and bare's collection
    gets the indexes goals-api's ``people`` has (mongoeco checks a unique index by a scan: a store cost both
    stacks must pay, or the ratio measures the indexes rather than the code)."""
    from services.goals import directory as directory_module
    from services.goals.directory import Directory
    from services.goals.scim import users as scim_users
    from services.platform.store.mongo import ensure_indexes

    client = harness.mongo_client(mongo_uri)
    try:
        ensure_indexes(client[BARE_DB], [index for index in directory_module.INDEXES + scim_users.INDEXES
                                         if index.collection == "people"])
        directory = Directory(client[DB], cache_seconds=0)
        directory.upsert_org_unit({"_id": "acme", "name": "Acme", "level": "ORG_LEVEL_COMPANY", "parent_id": "",
                                   "leader_id": ""})
        directory.upsert_org_unit({"_id": "eng", "name": DEPARTMENT, "level": "ORG_LEVEL_DEPARTMENT",
                                   "parent_id": "acme", "leader_id": ""})
    finally:
        client.close()


def start_ours(tmp: Path, mongo_uri: str) -> tuple[Process, int]:
    process = harness.spawn_service("goals-api", "services.goals.api", tmp, {
        "MONGO_URI": mongo_uri, "MONGO_DB": DB, "SCIM_TOKEN": TOKEN, "SCIM_HTTP_ADDR": "127.0.0.1:0"})
    return process, harness.wait_for_port(process, SCIM_LISTENING)


def start_bare(tmp: Path, mongo_uri: str) -> tuple[Process, int]:
    process, port = harness.start_with_ready_file(
        "scim-bare", ["-m", "bench.scim_bare", "--mongo-uri", mongo_uri, "--db", BARE_DB, "--token", TOKEN],
        tmp, tmp / "bare.port")
    return process, int(port)


def phase(opts, port: int, server: Process, store: Process, run: str, people) -> dict:
    """One measured run of the client against one stack, from an empty ``people`` (as bench/notify.py empties
    its collections between rounds: mongoeco's writes get dearer as a collection grows, README "Findings")."""
    people.delete_many({})
    plan = {"base": f"http://127.0.0.1:{port}/scim/v2", "token": TOKEN, "concurrency": opts.concurrency,
            "warmup": opts.warmup, "seconds": opts.seconds, "run": run, "department": DEPARTMENT}
    before = {"server": harness.cpu_seconds(server.popen.pid), "store": harness.cpu_seconds(store.popen.pid)}
    result = harness.run_module("bench.scim_client", plan, timeout=opts.seconds + 300, what="scim client")
    served = result["requests"] + result["errors"]
    for name, process in (("server", server), ("store", store)):
        spent = harness.cpu_spent(before[name], harness.cpu_seconds(process.popen.pid))
        result[f"{name}_cpu_ms_per_req"] = round(spent * 1000 / served, 2) if spent is not None and served else None
    return result


def bench(opts, bar) -> list[dict]:
    rounds = []
    with tempfile.TemporaryDirectory(prefix="bench-scim-") as tmp_name:
        tmp = Path(tmp_name)
        procs: dict[str, Process] = {}
        client = None
        try:
            procs["store"], mongo_uri = harness.start_store("sqlite", tmp)
            seed_units(mongo_uri)
            client = harness.mongo_client(mongo_uri)
            people = {OURS: client[DB].people, BARE: client[BARE_DB].people}
            procs[OURS], ours_port = start_ours(tmp, mongo_uri)
            procs[BARE], bare_port = start_bare(tmp, mongo_uri)
            ports = {OURS: ours_port, BARE: bare_port}
            run = uuid.uuid4().hex[:6]
            for index in range(opts.rounds):
                order = (OURS, BARE) if index % 2 == 0 else (BARE, OURS)
                record = {"round": index + 1, "order": list(order)}
                for name in order:
                    bar.set_description(f"round {index + 1}/{opts.rounds}: {name}")
                    record[name] = phase(opts, ports[name], procs[name], procs["store"], f"{run}{index}{name[0]}",
                                         people[name])
                    harness.require_alive(procs.values())
                    bar.update(1)
                record["ratio"] = harness.ratio(record[OURS]["throughput"], record[BARE]["throughput"])
                rounds.append(record)
        finally:
            if client is not None:
                client.close()
            for name in (OURS, BARE, "store"):
                if name in procs:
                    procs[name].stop()
    return rounds


def summarize(rounds: list[dict]) -> dict:
    row = {}
    for stack in (OURS, BARE):
        for metric in ("throughput", "all_p50_ms", "all_p99_ms", "create_p99_ms", "patch_p99_ms",
                       "server_cpu_ms_per_req", "store_cpu_ms_per_req"):
            row[f"{stack}_{metric}"] = round(harness.median(
                r[stack][metric] if r[stack][metric] is not None else float("nan") for r in rounds), 2)
    ratios = [r["ratio"] for r in rounds]
    row["ratio"] = round(harness.median(ratios), 3)
    row["ratio_range"] = [round(min(ratios), 3), round(max(ratios), 3)]
    row["errors"] = sum(r[s]["errors"] for r in rounds for s in (OURS, BARE))
    row["requests"] = sum(r[OURS]["requests"] for r in rounds)
    row["pass"] = bool(row["errors"] == 0 and row[f"{OURS}_throughput"] >= TARGET_RPS)
    return row


def render(result: dict) -> str:
    s = result["summary"]
    f = harness.fmt
    lines = [
        "# SCIM benchmark: goals-api's /scim/v2 against a bare HTTP server doing the same store calls", "",
        *harness.machine_lines(result), harness.options_line(result["options"]), "",
        "## Verdict", "",
        f"**{harness.verdict(result['pass'])}**: ours sustained **{f(s['ours_throughput'], 1)} requests/s** with "
        f"{result['options']['concurrency']} concurrent clients creating and patching users (target ≥ {TARGET_RPS:g}), "
        f"p99 **{f(s['ours_all_p99_ms'], 0)} ms** (POST {f(s['ours_create_p99_ms'], 0)} ms, PATCH "
        f"{f(s['ours_patch_p99_ms'], 0)} ms), {s['errors']} errors. Against the bare store calls: "
        f"**{f(s['ratio'], 2)}×** throughput (range {f(s['ratio_range'][0], 2)}–{f(s['ratio_range'][1], 2)}).", "",
        "## Rounds", "",
        "| round | stack | requests | req/s | p50 ms | p99 ms | POST p99 | PATCH p99 | server CPU ms/req | store CPU ms/req | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rounds"]:
        for stack in r["order"]:
            x = r[stack]
            lines.append(f"| {r['round']} | {stack} | {x['requests']} | {f(x['throughput'], 1)} | {f(x['all_p50_ms'], 0)} | "
                         f"{f(x['all_p99_ms'], 0)} | {f(x['create_p99_ms'], 0)} | {f(x['patch_p99_ms'], 0)} | "
                         f"{f(x['server_cpu_ms_per_req'])} | {f(x['store_cpu_ms_per_req'])} | {x['errors']} |")
    lines += ["", "## Medians", "",
              "| | ours | bare |", "|---|---|---|"]
    for metric, label in (("throughput", "req/s"), ("all_p50_ms", "p50 ms"), ("all_p99_ms", "p99 ms"),
                          ("server_cpu_ms_per_req", "server CPU ms/req"), ("store_cpu_ms_per_req", "store CPU ms/req")):
        lines.append(f"| {label} | {f(s[f'ours_{metric}'])} | {f(s[f'bare_{metric}'])} |")
    lines += ["", "What ours does per request that bare does not: the token, the body's checks, the directory "
              "look-ups (userName holder, externalId, the department's unit, the manager), the change through "
              "directory_sync (per-field versions, the conditional write with its `person_upserted` in the outbox) "
              "and the User rendered back. Absolute numbers are mongoeco's; the ratio is the comparable figure.", ""]
    return "\n".join(lines)


def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scim", description=__doc__.splitlines()[0])
    harness.add_quick(parser, QUICK)
    parser.add_argument("--seconds", type=float, help=f"measured seconds per stack per round (default {DEFAULTS['seconds']})")
    parser.add_argument("--rounds", type=int, help=f"A/B rounds (default {DEFAULTS['rounds']})")
    parser.add_argument("--concurrency", type=int, help=f"client threads (default {DEFAULTS['concurrency']})")
    parser.add_argument("--warmup", type=int, help=f"create+patch pairs not counted (default {DEFAULTS['warmup']})")
    parser.add_argument("--out-dir", type=Path, default=harness.RESULTS_DIR, help="where scim.md and scim.json go")
    harness.add_strict_and_progress(parser)
    args = parser.parse_args(argv)
    harness.apply_defaults(args, DEFAULTS, QUICK)
    harness.require_positive(parser, args, ("rounds", "concurrency", "warmup"))
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    clock = harness.RunClock.start()
    with harness.progress_bar(2 * args.rounds, args.progress) as bar:
        rounds = bench(args, bar)
    summary = summarize(rounds)
    result = {**clock.record(RESULT_NAME, argv), "engine": "sqlite",
              "options": {key: getattr(args, key) for key in (*DEFAULTS, "quick")},
              "targets": {"requests_per_second": TARGET_RPS}, "rounds": rounds, "summary": summary,
              "pass": summary["pass"]}
    console = (f"scim: {harness.verdict(result['pass'])}: {harness.fmt(summary['ours_throughput'], 1)} req/s, "
               f"p99 {harness.fmt(summary['ours_all_p99_ms'], 0)} ms, {harness.fmt(summary['ratio'])}x bare, "
               f"{summary['errors']} errors")
    return harness.finish(result, args, render(result), console)


if __name__ == "__main__":
    sys.exit(main())
