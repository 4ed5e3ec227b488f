"""bench/checkins.py's report: the Markdown of results/checkins.md and the console summary (bench.harness writes the files)."""

from bench.harness import BARE, OURS, fmt, machine_lines, options_line, verdict


def console_summary(result: dict) -> str:
    a = result["throughput"]["summary"]
    lag = result["lag"]["lag"]
    history = result["history"]
    lines = [
        f"A RecordMeasureCheckin  ours {fmt(a['ours_throughput'], 1)}/s  bare {fmt(a['bare_throughput'], 1)}/s  "
        f"throughput ratio {fmt(a['ratio_throughput'])}  p50 ratio {fmt(a['ratio_p50'])}  {verdict(a['pass'])}",
        f"B event lag at {fmt(lag['rate'], 1)}/s  p50 {fmt(lag['lag_p50_ms'], 0)} ms  p99 {fmt(lag['lag_p99_ms'], 0)} ms  "
        f"({lag['matched']} matched, {lag['missing']} missing)  {verdict(lag['pass'])}",
    ]
    for point in history["points"]:
        lines.append(
            f"C {point['stored'][OURS]:>6,} stored  ours {fmt(point[OURS]['p50_ms'], 1)} ms  bare {fmt(point[BARE]['p50_ms'], 1)} ms"
            f"  ours-bare {fmt(point['extra_ms'], 1)} ms"
        )
    lines.append(f"C flat beyond the store: {verdict(history['pass'])} (ours-bare grew {fmt(history['extra_growth_ms'], 1)} ms, "
                 f"allowed {fmt(history['allowed_growth_ms'], 1)} ms)")
    lines.append(f"{verdict(result['pass'])} overall")
    return "\n".join(lines)


def render(result: dict) -> str:
    return "\n".join([*_header(result), *_throughput(result), *_lag(result), *_history(result), *_method(result)])


def _header(result: dict) -> list[str]:
    t = result["targets"]
    return [
        "# checkins-api benchmark: RecordMeasureCheckin against a bare grpcio server, event lag, history growth",
        "",
        *(machine_lines(result, result["note"]) if result.get("note") else machine_lines(result)),
        "- **Store:** the mongoeco wire server, SQLite engine (as `make run`), its own process.",
        f"- **Targets:** A: ours ≥ {t['ratio']} × bare in throughput and p50 latency; "
        f"B: p99 event lag < {t['lag_p99_ms']:.0f} ms at half the maximum throughput; "
        f"C: our cost beyond the bare insert grows by at most {t['flat']['slack_ms']:.0f} ms + "
        f"{t['flat']['slack_share_of_store_growth']:.0%} of the store's own growth from the smallest to the largest history.",
        options_line(result["options"]),
        "",
        f"## Verdict: **{verdict(result['pass'])}**",
        "",
    ]


def _throughput(result: dict) -> list[str]:
    part, o = result["throughput"], result["options"]
    s, sizes = part["summary"], part["doc_sizes"]
    return [
        "## A. RecordMeasureCheckin: throughput and latency against bare",
        "",
        f"A separate client process, {o['concurrency']} threads with a channel each, {o['rounds']} rounds alternating "
        f"ours/bare then bare/ours; {o['count']} calls per stack per round after {o['warmup']} warm-up, each a different "
        f"measure of {o['v2moms']} published V2MOMs in turn, as its owner, with an idempotency key. checkins-worker is not running.",
        "",
        "| | ours | bare | **ratio** (median; range) | target | result |",
        "|---|---:|---:|---:|---:|---|",
        f"| throughput, calls/s | {fmt(s['ours_throughput'], 1)} | {fmt(s['bare_throughput'], 1)} | "
        f"**{fmt(s['ratio_throughput'])}** ({fmt(s['ratio_throughput_range'][0])}–{fmt(s['ratio_throughput_range'][1])}) "
        f"| ≥ {_target(result)} | {verdict(s['ratio_throughput'] >= _target(result))} |",
        f"| p50 latency, ms | {fmt(s['ours_p50_ms'])} | {fmt(s['bare_p50_ms'])} | **{fmt(s['ratio_p50'])}** "
        f"({fmt(s['ratio_p50_range'][0])}–{fmt(s['ratio_p50_range'][1])}) | ≥ {_target(result)} | {verdict(s['ratio_p50'] >= _target(result))} |",
        f"| p99 latency, ms | {fmt(s['ours_p99_ms'])} | {fmt(s['bare_p99_ms'])} | {fmt(s['ratio_p99'])} | (shown) | |",
        f"| server CPU per call, ms | {fmt(s['ours_server_cpu_ms_per_req'])} | {fmt(s['bare_server_cpu_ms_per_req'])} | "
        f"{fmt(s['ratio_server_cpu'])}× (ours/bare) | (shown) | |",
        f"| store CPU per call, ms | {fmt(s['ours_store_cpu_ms_per_req'])} | {fmt(s['bare_store_cpu_ms_per_req'])} | | | |",
        "",
        f"Errors: {s['errors']}. Latency ratios are bare/ours, so above 1.0 is faster than bare. "
        f"Every round starts from {', '.join(sorted({str(r['start_size']) for r in part['rounds']}))} stored check-ins per stack. "
        f"A stored check-in: ours {sizes[OURS]['bytes']:,} B / {sizes[OURS]['elements']} elements, "
        f"bare {sizes[BARE]['bytes']:,} B / {sizes[BARE]['elements']} elements, the same fields.",
        "",
        "<details><summary>Per round</summary>",
        "",
        "| round | order | ours calls/s | bare calls/s | tput ratio | ours p50 | bare p50 | p50 ratio | p99 ratio |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {r['round']} | {'/'.join(r['order'])} | {fmt(r[OURS]['throughput'], 1)} | {fmt(r[BARE]['throughput'], 1)} "
            f"| {fmt(r['ratios']['throughput'])} | {fmt(r[OURS]['p50_ms'])} | {fmt(r[BARE]['p50_ms'])} "
            f"| {fmt(r['ratios']['p50'])} | {fmt(r['ratios']['p99'])} |"
            for r in part["rounds"]
        ],
        "",
        "</details>",
        "",
    ]


def _target(result: dict) -> float:
    return result["targets"]["ratio"]


def _lag(result: dict) -> list[str]:
    part = result["lag"]
    maximum, lag = part["maximum"], part["lag"]
    return [
        "## B. Event lag: RecordMeasureCheckin returning → `progress_changed` consumed",
        "",
        f"checkins-worker runs with RELAY_INTERVAL_SECONDS={part['relay_interval_s']} (what it ships with), on a RabbitMQ "
        f"vhost of its own. Maximum throughput just before, closed loop with the worker running: "
        f"**{fmt(maximum['throughput'], 1)} calls/s** (p50 {fmt(maximum['p50_ms'])} ms). Then a separate process records "
        f"check-ins open loop at half that, {fmt(lag['rate'], 1)}/s (achieved {fmt(lag['achieved_rate'], 1)}/s), over "
        f"{part['pairs']} measures not used by anything else (each comes round every {part['pair_reuse_s']} s), and times "
        "each from its call returning to its own `progress_changed` (cause `checkin`) reaching a queue it bound before "
        "sending. The event makes two outbox hops: the check-in's `checkin_recorded`, then the progress document's "
        "`progress_changed`.",
        "",
        "| rate/s | calls | matched | missing | errors | lag p50 ms | lag p99 ms | lag max ms | call p50 ms | call p99 ms | result |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        _lag_row(lag, bold=True),
        *[_lag_row(run) for run in part.get("slower", [])],
        "",
        f"Target: p99 < {result['targets']['lag_p99_ms']:.0f} ms at half the maximum throughput (the first row). "
        + ("When it misses, the next rows try a half and a quarter of that rate, shorter, to show what the stack "
           "sustains; they are not the target." if part.get("slower") else ""),
        "",
    ]


def _lag_row(run: dict, bold: bool = False) -> str:
    p99 = f"**{fmt(run['lag_p99_ms'], 0)}**" if bold else fmt(run["lag_p99_ms"], 0)
    return (
        f"| {fmt(run['rate'], 1)} (achieved {fmt(run['achieved_rate'], 1)}) | {run['sent']} | {run['matched']} | "
        f"{run['missing']} | {run['errors']} | {fmt(run['lag_p50_ms'], 0)} | {p99} | {fmt(run['lag_max_ms'], 0)} | "
        f"{fmt(run['latency_p50_ms'])} | {fmt(run['latency_p99_ms'])} | {verdict(run['pass'])} |"
    )


def _history(result: dict) -> list[str]:
    part, o = result["history"], result["options"]
    rows = [
        f"| {p['stored'][OURS]:,} | {fmt(p[OURS]['p50_ms'], 1)} | {fmt(p[BARE]['p50_ms'], 1)} | **{fmt(p['extra_ms'], 1)}** "
        f"| {fmt(p[OURS]['mean_ms'], 1)} | {fmt(p[BARE]['mean_ms'], 1)} | {fmt(p['ratio'])} |"
        for p in part["points"]
    ]
    return [
        "## C. Per-check-in cost as the stored history grows",
        "",
        f"Both check-ins collections are filled to each size with check-ins shaped as checkins-api stores them; then a "
        f"separate client process records {o['history_samples']} pairs of check-ins (after one warm-up each), one through "
        "each stack back to back, alternating which goes first. **ours − bare** is the median of the per-pair "
        "differences: our cost beyond the store's own insert.",
        "",
        "| stored check-ins | ours p50 ms | bare insert p50 ms | **ours − bare ms** | ours mean | bare mean | bare/ours (p50) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"From the smallest to the largest history the bare insert (the store's own cost) grew by "
        f"{fmt(part['store_growth_ms'], 1)} ms and our cost beyond it by **{fmt(part['extra_growth_ms'], 1)} ms** "
        f"(allowed: {fmt(part['allowed_growth_ms'], 1)} ms): **{verdict(part['pass'])}**.",
        "",
    ]


def _method(result: dict) -> list[str]:
    return [
        "## What is compared",
        "",
        "- **ours**: `python -m services.checkins.api` as deployed: JWT auth and error mapping, whether the caller is "
        "still active (goals' directory, remembered 30 s), validation, the replayed-key look-up, the published structure "
        "(its stored copy; goals-api on a miss) and the cycle's dates, the access rule, the cadence, the check-in with "
        "its `checkin_recorded` event in one insert, proto conversion.",
        "- **bare** (`bench/bare_checkins_server.py`): the generated servicer on a plain grpcio server, same pool size; "
        "one `insert_one` of a document with the same fields and conventions, its event payload as protobuf bytes; "
        "own database in the same store, same indexes.",
        "- The history in C is bulk-loaded with mongoeco's embedded client while the store is stopped: over the wire "
        "mongoeco inserts one document at a time and scans the collection for each, so 20k would take hours.",
        "- Ratios factor out the store, which is far slower than MongoDB; absolute numbers only compare runs on the "
        "same machine. See bench/README.md for what the numbers say and where the time goes.",
        "",
        "Regenerate with `make bench` (both benchmarks) or `.venv/bin/python -m bench.checkins` (`--help` lists the knobs).",
        "",
    ]
