"""bench/notify.py's report: the Markdown of results/notify.md and the console summary (bench.harness writes the files)."""

from bench.harness import BARE, fmt, machine_lines, options_line, verdict

OURS = "notify"


def console_summary(result: dict) -> str:
    a, b, c = result["throughput"], result["lag"], result["dispatch"]
    return "\n".join([
        f"A email delivery  notify-worker {fmt(a['ours_throughput'], 1)}/s  bare smtplib {fmt(a['bare_throughput'], 1)}/s  "
        f"ratio {fmt(a['ratio'])} (range {fmt(a['ratio_range'][0])}–{fmt(a['ratio_range'][1])})  "
        f"exactly once: {a['exactly_once']}  {verdict(a['pass'])}",
        f"B lag at {fmt(b['rate'], 1)}/s  p50 {fmt(b['lag_p50_ms'], 0)} ms  p95 {fmt(b['lag_p95_ms'], 0)} ms  "
        f"p99 {fmt(b['lag_p99_ms'], 0)} ms  ({b['matched']}/{b['sent']} matched, {b['duplicates']} duplicates)  "
        f"{verdict(b['pass'])}",
        f"C dispatcher alone  notify-worker {fmt(c['ours_throughput'], 1)}/s  bare smtplib {fmt(c['bare_throughput'], 1)}/s  "
        f"ratio {fmt(c['ratio'])} (range {fmt(c['ratio_range'][0])}–{fmt(c['ratio_range'][1])})  "
        f"exactly once: {c['exactly_once']}  (no target)",
        f"{verdict(result['pass'])} overall",
    ])


def render(result: dict) -> str:
    return "\n".join([*_header(result), *_throughput(result), *_lag(result), *_dispatch(result), *_method(result)])


def _header(result: dict) -> list[str]:
    t, s = result["targets"], result["notify_settings"]
    return [
        "# notify-worker benchmark: email delivery against a bare smtplib client, and submission-to-mail lag",
        "",
        *machine_lines(result),
        "- **Store:** the mongoeco wire server, SQLite engine (as `make run`), its own process. **Broker:** RabbitMQ, "
        "a vhost of the run's own. **Mail:** `deploy/dev/smtp_sink.py --jsonl`, its own process.",
        f"- **notify-worker settings:** dispatch every {s['dispatch_interval_s']} s, in batches of {s['dispatch_batch']} "
        f"deliveries (one lease and one SMTP connection each) while any are due, up to {s.get('dispatch_pass_max', '–')} "
        f"a pass, relay every {s['relay_interval_s']} s, {s['max_workers']} event handlers in flight (what it ships with).",
        f"- **Targets:** A: notify-worker ≥ {t['ratio']} × the bare client's messages/s; "
        f"B: p99 lag < {t['lag_p99_ms']:.0f} ms at half of A's notify rate.",
        options_line(result["options"]),
        "",
        f"## Verdict: **{verdict(result['pass'])}**",
        "",
    ]


def _throughput(result: dict) -> list[str]:
    a, o = result["throughput"], result["options"]
    cpu = a["cpu_ms_per_msg"]
    rows = []
    for r in a["rounds"]:
        ours, bare = r[OURS], r[BARE]
        rows.append(
            f"| {r['round']} | {'/'.join(r['order'])} | {fmt(ours['throughput'], 1)} | {fmt(ours['seconds'])} "
            f"| {ours['arrived']}/{ours['sent']} | {ours['duplicates']} | {fmt(bare['throughput'], 1)} | {fmt(bare['seconds'])} "
            f"| {bare['arrived']}/{bare['sent']} | {fmt(r['ratio'])} |"
        )
    warm = a["warmup"]
    return [
        "## A. Delivery throughput: notify-worker against a bare smtplib client",
        "",
        f"Per round and stack, {o['messages']} approvers' emails ({o['approvers']} approvers, round-robin). "
        "**notify**: that many `v2mom_submitted` envelopes published at once to `goals.events`; the clock runs from "
        "the first publish to the sink receiving the last approver's email. **bare**: one smtplib client process "
        "sending the same messages (notify's own mails from its previous run, Message-ID renamed to the same length; "
        f"{a['mail_bytes_per_msg']:,} B each on average) to the same sink, one after another, one connection per "
        "batch of 50 as notify's dispatcher sends a batch; the clock runs from its first connect to the last mail received. "
        f"{o['rounds']} rounds alternating which goes first, after a notify warm-up of {warm['sent']} "
        f"({fmt(warm['throughput'], 1)}/s, not counted).",
        "",
        "| | notify-worker | bare smtplib | **ratio** (median; range) | target | result |",
        "|---|---:|---:|---:|---:|---|",
        f"| messages/s | {fmt(a['ours_throughput'], 1)} | {fmt(a['bare_throughput'], 1)} | **{fmt(a['ratio'])}** "
        f"({fmt(a['ratio_range'][0])}–{fmt(a['ratio_range'][1])}) | ≥ {result['targets']['ratio']} | {verdict(a['pass'])} |",
        f"| sender CPU per message, ms (notify-worker; the smtplib client process) | {fmt(cpu[f'{OURS}_worker'])} "
        f"| {fmt(cpu['bare_client'])} | | | |",
        f"| store CPU per message, ms | {fmt(cpu[f'{OURS}_store'])} | {fmt(cpu[f'{BARE}_store'])} | | | |",
        f"| SMTP sink CPU per message, ms | {fmt(cpu[f'{OURS}_sink'])} | {fmt(cpu[f'{BARE}_sink'])} | | | |",
        "",
        f"Every email arrived exactly once in every round (both stacks): **{a['exactly_once']}**. notify wrote one "
        f"EMAIL delivery SENT and one INBOX delivery per submission: **{a['deliveries_match']}**. "
        f"Bare send errors: {a['bare_errors']}.",
        "",
        "| round | order | notify msg/s | notify s | arrived | dup | bare msg/s | bare s | arrived | ratio |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ]


def _lag(result: dict) -> list[str]:
    b = result["lag"]
    return [
        "## B. Lag: `v2mom_submitted` published → the approver's email at the sink",
        "",
        f"At half of A's median notify rate, {fmt(b['rate'], 1)}/s (achieved {fmt(b['achieved_rate'], 1)}/s; the "
        f"publisher fell behind its schedule by at most {fmt(b['publish_late_max_ms'], 0)} ms), {b['sent']} "
        f"submissions over {fmt(b['seconds'], 1)} s, each a V2MOM of its own whose id is in the mail's subject. "
        "Lag = the sink's receive time (stamped before it answers 250) − the publish time, same clock.",
        "",
        "| rate/s | sent | matched | missing | dup | p50 ms | p95 ms | **p99 ms** | max ms | target | result |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| {fmt(b['rate'], 1)} | {b['sent']} | {b['matched']} | {b['missing']} | {b['duplicates']} "
        f"| {fmt(b['lag_p50_ms'], 0)} | {fmt(b['lag_p95_ms'], 0)} | **{fmt(b['lag_p99_ms'], 0)}** | {fmt(b['lag_max_ms'], 0)} "
        f"| < {result['targets']['lag_p99_ms']:.0f} | {verdict(b['pass'])} |",
        "",
        f"Where it goes: publish → the delivery written by the `v2mom_submitted` handler p50 {fmt(b['handler_p50_ms'], 0)} ms "
        f"(p99 {fmt(b['handler_p99_ms'], 0)}); delivery written → received by the sink (waiting for the dispatcher's "
        f"tick, then the send) p50 {fmt(b['dispatch_p50_ms'], 0)} ms (p99 {fmt(b['dispatch_p99_ms'], 0)}).",
        "",
    ]


def _dispatch(result: dict) -> list[str]:
    c, o = result["dispatch"], result["options"]
    rows = [
        f"| {r['round']} | {'/'.join(r['order'])} | {fmt(r[OURS]['spread_throughput'], 1)} | {r[OURS]['arrived']}/{r[OURS]['sent']} "
        f"| {r[OURS]['duplicates']} | {fmt(r[OURS]['store_cpu_ms_per_msg'])} | {fmt(r[BARE]['spread_throughput'], 1)} "
        f"| {r[BARE]['arrived']}/{r[BARE]['sent']} | {fmt(r['ratio'])} |"
        for r in c["rounds"]
    ]
    return [
        "## C. The dispatcher alone: queued deliveries → the sink (no target; what A's ratio would be without the handler)",
        "",
        f"Per round, {o['queued']} approvers' EMAIL deliveries are written by a notify-worker whose dispatcher does not "
        "tick, which is then stopped; the shipped notify-worker is started and its dispatcher sends them (claim, "
        "preferences, render, send, SENT with `notification_sent`, relay). **bare** sends the same mails as in A. "
        "Both are timed from the first mail received to the last: (n − 1) ÷ (last − first).",
        "",
        "| | notify-worker's dispatcher | bare smtplib | **ratio** (median; range) |",
        "|---|---:|---:|---:|",
        f"| messages/s | {fmt(c['ours_throughput'], 1)} | {fmt(c['bare_throughput'], 1)} | **{fmt(c['ratio'])}** "
        f"({fmt(c['ratio_range'][0])}–{fmt(c['ratio_range'][1])}) |",
        "",
        f"Every email arrived exactly once (both stacks): **{c['exactly_once']}**; every queued delivery SENT after one "
        f"try: **{c['sent_once']}**. Store CPU per message while the dispatcher sent: {fmt(c['store_cpu_ms_per_msg'])} ms.",
        "",
        "| round | order | dispatcher msg/s | arrived | dup | store CPU ms/msg | bare msg/s | arrived | ratio |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ]


def _method(result: dict) -> list[str]:
    return [
        "## What is compared",
        "",
        "- **notify**: `python -m services.notify.worker` as deployed: nameko consuming `goals.events`, the envelope "
        "check, the payload parsed, approver and owner from notify's `people` copy (written beforehand in "
        "directory.py's shape, so no goals-api runs), the V2MOM copy, the notification with its INBOX and EMAIL "
        "deliveries, the SLA reminder and escalation schedules; then the dispatcher timer claiming due deliveries a "
        "batch at a time under one lease (one bulk write), the preference checks (read once a batch), the mail rendered "
        "(text and HTML) and sent over the batch's SMTP connection, the batch's deliveries marked SENT with their "
        "`notification_sent` in the outbox (one bulk write), the stats counted, the relay to `notify.events` (with the "
        "event log kept for replay).",
        "- **bare**: a plain smtplib client sending the very bytes notify sent, nothing else: no broker, no store.",
        "- So A's ratio is the whole notify pipeline (about 12 document writes and 6 round trips per email, handler, "
        "dispatch and relay together, on mongoeco, which is far slower than MongoDB) against the SMTP conversation "
        "alone, and C's is the dispatcher's share of it (4 document writes per email: the claim, SENT with its "
        "event, the event log, the relay's clear); see bench/README.md.",
        "",
        "Regenerate with `make bench` or `.venv/bin/python -m bench.notify` (`--help` lists the knobs).",
        "",
    ]
