"""Load generator for the SCIM benchmark: a separate client process, as a provisioning client would be.

Reads one plan as JSON on stdin, runs ``concurrency`` threads that each create a user (POST /Users) and then
patch it (PATCH /Users/{id}: Entra's capitalised ``Replace`` of ``active`` as the string "False", and a title),
over and over, each request on its own connection as most clients do, and prints one JSON result.

Plan: {"base": "http://127.0.0.1:PORT/scim/v2", "token": "...", "concurrency": 4, "warmup": 10,
       "seconds": 20.0, "run": "<unique>", "department": "Engineering"}

A warm-up (that many create+patch pairs over all threads) is left out. Result: requests, errors, elapsed_s,
throughput (req/s), per op and overall p50/p95/p99 ms, up to five error samples.
"""

import json
import sys
import threading
import time
import urllib.error
import urllib.request

from bench.harness import percentile

TIMEOUT_S = 30.0
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def call(plan: dict, method: str, path: str, body: dict) -> tuple[int, dict | None]:
    request = urllib.request.Request(plan["base"] + path, data=json.dumps(body).encode(), method=method)
    request.add_header("Content-Type", "application/scim+json")
    request.add_header("Authorization", f"Bearer {plan['token']}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, {"detail": error.read()[:300].decode(errors="replace")}


def new_user(plan: dict, number: str) -> dict:
    return {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
            "userName": f"bench.{plan['run']}.{number}@acme.test", "externalId": f"ext-{plan['run']}-{number}",
            "name": {"givenName": "Bench", "familyName": number}, "displayName": f"Bench {number}",
            "emails": [{"value": f"bench.{plan['run']}.{number}@acme.test", "type": "work", "primary": True}],
            "timezone": "Europe/Berlin", "locale": "de-DE", "active": True,
            ENTERPRISE: {"employeeNumber": f"E{plan['run']}{number}", "department": plan["department"]}}


PATCH = {"schemas": [PATCH_OP], "Operations": [{"op": "Replace", "path": "active", "value": "False"},
                                               {"op": "Replace", "value": {"title": "Provisioned"}}]}


def pair(plan: dict, index: int, sequence: int, out: dict | None) -> None:
    """One user created then patched; timed into ``out`` (None: the warm-up)."""
    number = f"{index:02d}{sequence:06d}"
    user_id = None
    for op in ("create", "patch"):
        started = time.perf_counter()
        if op == "create":
            status, body = call(plan, "POST", "/Users", new_user(plan, number))
            user_id = (body or {}).get("id") if status == 201 else None
        else:
            status, body = call(plan, "PATCH", f"/Users/{user_id}", PATCH) if user_id else (0, "no user to patch")
        took = (time.perf_counter() - started) * 1000
        if out is None:
            continue
        with out["lock"]:
            out["latencies"][op].append(took)
            if status not in (200, 201):
                out["errors"] += 1
                if len(out["samples"]) < 5:
                    out["samples"].append(f"{op} {status}: {str(body)[:200]}")


def worker(plan: dict, index: int, warm: threading.Barrier, out: dict) -> None:
    for sequence in range(plan["warmup_each"]):
        pair(plan, index, sequence, None)
    warm.wait(timeout=300)
    sequence = plan["warmup_each"]
    while time.monotonic() < out["stop_at"]:
        pair(plan, index, sequence, out)
        sequence += 1


def run(plan: dict) -> dict:
    concurrency = plan["concurrency"]
    plan = {**plan, "warmup_each": max(1, plan["warmup"] // concurrency)}
    out = {"lock": threading.Lock(), "latencies": {"create": [], "patch": []}, "errors": 0, "samples": [],
           "stop_at": float("inf")}

    def go() -> None:  # the last thread out of its warm-up starts the clock for all
        out["t0"] = time.monotonic()
        out["stop_at"] = out["t0"] + plan["seconds"]

    warm = threading.Barrier(concurrency, action=go)
    threads = [threading.Thread(target=worker, args=(plan, i, warm, out)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - out["t0"]
    everything = sorted(out["latencies"]["create"] + out["latencies"]["patch"])
    result = {"requests": len(everything), "errors": out["errors"], "elapsed_s": round(elapsed, 2),
              "throughput": round(len(everything) / elapsed, 2) if elapsed > 0 else float("nan"),
              "error_samples": out["samples"]}
    for name, values in (("all", everything), *((op, sorted(v)) for op, v in out["latencies"].items())):
        for q in (0.5, 0.95, 0.99):
            result[f"{name}_p{int(q * 100)}_ms"] = round(percentile(values, q), 1)
    return result


def main() -> None:
    print(json.dumps(run(json.loads(sys.stdin.read()))))


if __name__ == "__main__":
    main()
