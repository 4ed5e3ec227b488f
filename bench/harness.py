"""What the benchmarks share: processes, the store, measuring, ratios, the run's record and its files.

bench/goals_api.py, bench/checkins.py and bench/metrics.py each measure a different service, but
they run it the same way: the mongoeco wire server and every service under test as processes of
their own, a load client as another, CPU time from /proc, A/B rounds summarised as medians of
per-round ratios, and results written as JSON plus Markdown with the same machine header. One
copy here keeps the benchmarks comparable with each other: a fix to how one of them measures or
reports reaches all three.

The bare servers and the load clients import it too, so it imports nothing of services/.
"""

import argparse
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import grpc
import pymongo
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"

OURS, BARE = "ours", "bare"
# The same pool size as services/platform/api/server.py, so no bare server gets more threads than ours.
MAX_WORKERS = 16
STORE_FILE = "store.sqlite"  # the SQLite engine's file, in the run's temp dir
GRPC_STARTED = "grpc server started"  # the log line a gRPC service prints with its bound port


# --- processes ---------------------------------------------------------------------------------------------


@dataclass
class Process:
    """A child process with its output in a log file: the log is what a failure report shows."""

    name: str
    popen: subprocess.Popen
    log_path: Path

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Terminate, then kill: a stuck child must not outlive the run and hold the store's port."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)


def spawn(name: str, args: list[str], tmp: Path, env: dict | None = None) -> Process:
    """`python ARGS` from the repository root, output to TMP/NAME.log: each service is its own process,
    so its CPU is its own and a crash shows in its log."""
    log_path = tmp / f"{name}.log"
    with open(log_path, "wb") as log_file:
        popen = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return Process(name, popen, log_path)


def wait_until(process: Process, ready, what: str, timeout: float = 60.0):
    """Polls `ready()` until it returns something true; fails early, with the log, if the process died."""
    deadline = time.monotonic() + timeout
    while True:
        value = ready()
        if value:
            return value
        if process.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{process.name} did not become ready ({what}):\n{process.log_tail()}")
        time.sleep(0.05)


def require_alive(processes) -> None:
    """After each phase: a child that died mid-run would otherwise show up only as odd numbers."""
    for process in processes:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")


def ready_file_text(path: Path) -> str | bool:
    """What a child wrote to its ready file (an address or a port), or False until it has."""
    return path.exists() and path.read_text().strip()


def start_with_ready_file(name: str, args: list[str], tmp: Path, ready: Path, what: str = "ready file") -> tuple[Process, str]:
    """Spawns a child that announces itself by writing READY (given as --ready-file); returns what it wrote.

    The old file goes first: a restarted child must not be taken as ready from its last run's file."""
    ready.unlink(missing_ok=True)
    process = spawn(name, [*args, "--ready-file", str(ready)], tmp)
    return process, wait_until(process, lambda: ready_file_text(ready), what)


def start_store(engine: str, tmp: Path) -> tuple[Process, str]:
    """The mongoeco wire server on a free port (SQLite in TMP/store.sqlite, or memory); returns its URI."""
    args = ["-m", "deploy.dev.mongo_server", "--port", "0"]
    if engine == "sqlite":
        args += ["--sqlite", str(tmp / STORE_FILE)]
    return start_with_ready_file(f"mongo-{engine}", args, tmp, tmp / "mongo.uri")


def logged_port(process: Process, message: str = GRPC_STARTED) -> int | None:
    """The port in the service's JSON log line MESSAGE: services bind port 0 and say which they got."""
    for line in process.log_tail(1_000_000).splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == message:
            return int(entry["port"])
    return None


def spawn_service(name: str, module: str, tmp: Path, env: dict) -> Process:
    """`python -m MODULE` as deployed, on a free gRPC port, logging at INFO (its start line carries the port).

    goals-api's HTTP side (/metrics, SCIM) on a free port too: a `make run` may hold its default :8090."""
    defaults = {"GRPC_ADDR": "127.0.0.1:0", "SCIM_HTTP_ADDR": "127.0.0.1:0", "LOG_LEVEL": "INFO"}
    return spawn(name, ["-m", module], tmp, {**defaults, **env})


def wait_for_port(process: Process, message: str = GRPC_STARTED) -> int:
    return wait_until(process, lambda: logged_port(process, message), f"'{message}' log line")


def mongo_client(uri: str) -> pymongo.MongoClient:
    """The harness's own driver connection: tz-aware like the services', and quick to fail on a dead store."""
    return pymongo.MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=5000)


@contextmanager
def embedded_store(sqlite_path: Path):
    """mongoeco's embedded client on the stopped store's SQLite file: bulk loads without the wire's
    scan per insert, which makes large histories quadratic (docs/architecture.md, "Storage")."""
    from mongoeco import MongoClient
    from mongoeco.engines import SQLiteEngine

    client = MongoClient(engine=SQLiteEngine(str(sqlite_path)))
    try:
        yield client
    finally:
        client.close()


def run_module(module: str, plan: dict, timeout: float, what: str | None = None) -> dict:
    """A client process: plan as JSON on stdin, result as JSON on its last stdout line. Its own process,
    so its CPU does not compete with the harness's and its GIL is not the server's."""
    completed = subprocess.run([sys.executable, "-m", module], cwd=ROOT, input=json.dumps(plan),
                               capture_output=True, text=True, timeout=timeout)
    if completed.returncode != 0:
        raise RuntimeError(f"{what or module} failed ({completed.returncode}):\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_client(plan: dict) -> dict:
    """One bench/load_client.py phase, bounded by the plan's own time limit plus start-up slack."""
    return run_module("bench.load_client", plan, timeout=plan["time_limit"] + 120, what="load client")


class Vhost:
    """A RabbitMQ vhost of the benchmark's own: the services' queue names are fixed, so another worker
    on a shared vhost would take (or double) the benchmark's events."""

    def __init__(self, amqp_uri: str, prefix: str, purpose: str):
        self.name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        self.uri = amqp_uri.rstrip("/") + "/" + self.name
        self.purpose = purpose

    def __enter__(self) -> "Vhost":
        self._ctl("add_vhost", self.name)
        self._ctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")
        return self

    def __exit__(self, *exc) -> None:
        self._ctl("delete_vhost", self.name)

    def _ctl(self, *args: str) -> None:
        try:
            subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as error:
            raise RuntimeError(f"rabbitmqctl {args[0]} failed ({error}): {self.purpose} needs a vhost of its own") from None


def queue_depth(connection, name: str) -> int | None:
    """Messages in a queue, or None while nobody has declared it: passive, so it never creates one."""
    try:
        return connection.channel().queue_declare(name, passive=True).message_count
    except Exception:  # noqa: BLE001 - not declared yet
        return None


# --- the bare servers -----------------------------------------------------------------------------------------


def bare_arguments(description: str) -> argparse.ArgumentParser:
    """The flags every bare server takes; bench/*.py passes --ready-file to learn the bound port."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--addr", default="127.0.0.1:0")
    parser.add_argument("--mongo-uri", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--ready-file", help="write the bound port here once serving")
    return parser


def bare_grpc_server(addr: str, add_servicer, options: list[tuple] = ()) -> tuple[grpc.Server, int]:
    """A plain grpcio server with our pool size and no interceptors: the least a service can be."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=MAX_WORKERS), options=[*options, ("grpc.so_reuseport", 0)])
    add_servicer(server)
    port = server.add_insecure_port(addr)
    if port == 0:
        raise RuntimeError(f"could not bind {addr}")
    return server, port


def serve_until_signalled(server: grpc.Server, port: int, ready_file: str | None) -> None:
    """Serves until SIGINT/SIGTERM (what Process.stop sends), announcing the port once serving."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    if ready_file:
        Path(ready_file).write_text(str(port))
    stop.wait()
    server.stop(grace=2).wait()


# --- measuring -------------------------------------------------------------------------------------------------


def _stat_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU of the whole process, exited threads included, in clock ticks (10 ms)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _schedstat_cpu_seconds(pid: int) -> float | None:
    """Nanosecond CPU time summed over the live threads (exited threads drop out)."""
    try:
        total = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except FileNotFoundError:
                continue  # the thread ended meanwhile
        return total / 1e9
    except (OSError, IndexError, ValueError):
        return None


def cpu_seconds(pid: int) -> tuple[float | None, float | None]:
    """(precise, coarse) CPU time a process has used so far; Linux /proc, None elsewhere."""
    return _schedstat_cpu_seconds(pid), _stat_cpu_seconds(pid)


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MB; Linux /proc, None elsewhere."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_spent(before: tuple, after: tuple) -> float | None:
    """The precise delta, unless threads that ended in between make it disagree with the coarse one."""
    precise = None if before[0] is None or after[0] is None else after[0] - before[0]
    coarse = None if before[1] is None or after[1] is None else after[1] - before[1]
    if precise is not None and (coarse is None or abs(precise - coarse) <= 0.03 + 0.05 * coarse):
        return precise
    return coarse


def measure(plan: dict, server: Process, store: Process) -> dict:
    """Runs one load-client phase and adds the CPU the server and the store spent per request: with a real
    MongoDB the store is cheap and the server's own CPU is what limits throughput, which a ratio on
    mongoeco cannot show."""
    before = {"server": cpu_seconds(server.popen.pid), "store": cpu_seconds(store.popen.pid)}
    result = run_client(plan)
    served = plan["warmup"] + result["completed"] + result["errors"]
    for name, process in (("server", server), ("store", store)):
        spent = cpu_spent(before[name], cpu_seconds(process.popen.pid))
        result[f"{name}_cpu_ms_per_req"] = round(spent * 1000 / served, 3) if spent is not None and served else math.nan
    return result


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return math.nan
    position = (len(sorted_values) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def ratio(numerator: float, denominator: float) -> float:
    """NaN, not an exception, when a side measured nothing: the report shows n/a and the run goes on."""
    if not denominator or math.isnan(numerator) or math.isnan(denominator):
        return math.nan
    return numerator / denominator


def median(values) -> float:
    """The median of what could be computed (NaN ratios left out), NaN if nothing could."""
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def round_ratios(ours: dict, bare: dict) -> dict:
    """One A/B round as ratios oriented so that 1.0 is "as fast as bare" and more is better (latency bare/ours);
    server CPU is ours/bare, a cost multiple."""
    return {
        "throughput": ratio(ours["throughput"], bare["throughput"]),
        "p50": ratio(bare["p50_ms"], ours["p50_ms"]),
        "p99": ratio(bare["p99_ms"], ours["p99_ms"]),
        "server_cpu": ratio(ours["server_cpu_ms_per_req"], bare["server_cpu_ms_per_req"]),
    }


def summarize_rounds(rounds: list[dict]) -> dict:
    """Medians of the raw numbers and of the per-round ratios, with the ratios' range: each round's ratio
    compares like with like (the same moment of the machine), so its median resists drift better than a
    ratio of medians would."""
    row = {}
    for stack in (OURS, BARE):
        for metric in ("throughput", "p50_ms", "p99_ms", "server_cpu_ms_per_req", "store_cpu_ms_per_req"):
            row[f"{stack}_{metric}"] = round(median(r[stack][metric] for r in rounds), 3)
    for metric in ("throughput", "p50", "p99", "server_cpu"):
        row[f"ratio_{metric}"] = round(median(r["ratios"][metric] for r in rounds), 3)
        seen = [r["ratios"][metric] for r in rounds if not math.isnan(r["ratios"][metric])]
        row[f"ratio_{metric}_range"] = [round(min(seen), 3), round(max(seen), 3)] if seen else [math.nan, math.nan]
    row["errors"] = sum(r[stack]["errors"] for r in rounds for stack in (OURS, BARE))
    row["time_bounded"] = any(r[stack]["time_bounded"] for r in rounds for stack in (OURS, BARE))
    return row


def elements(value) -> int:
    """BSON elements in a document, nested ones included: what a decoder walks."""
    if isinstance(value, dict):
        return sum(1 + elements(v) for v in value.values())
    if isinstance(value, list):
        return sum(1 + elements(v) for v in value)
    return 0


# --- the run's record ------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def _memory_gib() -> float | None:
    memory_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return memory_gib


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _package_versions() -> dict[str, str | None]:
    versions = {}
    for package in ("grpcio", "protobuf", "pymongo", "mongoeco"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def machine_info() -> dict:
    """Absolute numbers only compare runs on the same machine and code: the report says which they were."""
    return {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": _package_versions(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


def loadavg() -> float | None:
    """The 1-minute load average: anything else running on the machine adds noise to both stacks."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


@dataclass
class RunClock:
    """Started with the run, so its record can say how long it took and how busy the machine was meanwhile."""

    started: float
    load_before: float | None

    @classmethod
    def start(cls) -> "RunClock":
        return cls(time.monotonic(), loadavg())

    def record(self, name: str, argv: list[str] | None) -> dict:
        """The first keys of every result JSON: which benchmark, when, how long, how it was called, where."""
        return {
            "benchmark": name,
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "duration_s": round(time.monotonic() - self.started, 1),
            "command": " ".join([f"python -m bench.{name}", *(argv if argv is not None else sys.argv[1:])]),
            "machine": {**machine_info(), "load_average_1m": {"start": self.load_before, "end": loadavg()}},
        }


# --- the command line ------------------------------------------------------------------------------------------


def add_quick(parser: argparse.ArgumentParser, quick: dict, what: str = "a smoke run") -> None:
    parser.add_argument("--quick", action="store_true", help=f"{what}: " + ", ".join(f"{k}={v}" for k, v in quick.items()))


def add_strict_and_progress(parser: argparse.ArgumentParser, missed: str = "a target is missed") -> None:
    parser.add_argument("--strict", action="store_true", help=f"exit with status 1 when {missed}")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar (default: when stderr is a terminal)")


def apply_defaults(args: argparse.Namespace, defaults: dict, quick: dict) -> None:
    """Flags left unset take --quick's value, else the default: so --quick --rounds 5 means what it says."""
    base = {**defaults, **(quick if args.quick else {})}
    for key, default in base.items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    if args.progress is None:
        args.progress = sys.stderr.isatty()


def require_positive(parser: argparse.ArgumentParser, args: argparse.Namespace, keys) -> None:
    for key in keys:
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be at least 1")


def progress_bar(total: int, enabled: bool) -> tqdm:
    """On stderr, so stdout stays the summary a script can read."""
    return tqdm(total=total, unit="step", file=sys.stderr, disable=not enabled, dynamic_ncols=True)


# --- the report ------------------------------------------------------------------------------------------------


def fmt(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def machine_lines(result: dict, noise: str = "anything else running adds noise") -> list[str]:
    """The report's when/where/what-code lines, from RunClock.record's keys."""
    m = result["machine"]
    return [
        f"- **Date:** {result['date']} · **duration:** {result['duration_s']:.0f} s · **command:** `{result['command']}`",
        f"- **Machine:** {m['cpu']}, {m['cpus']} CPUs, {m['memory_gib']} GiB · {m['platform']} · Python {m['python']}",
        "- **Packages:** " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
        f"- **Other load:** 1-minute load average {m['load_average_1m']['start']} at the start, "
        f"{m['load_average_1m']['end']} at the end (on {m['cpus']} CPUs; {noise})",
        f"- **Code:** commit `{m['commit']}`{' plus uncommitted changes' if m['dirty'] else ''}",
    ]


def options_line(options: dict) -> str:
    return f"- **Options:** {', '.join(f'{k}={v}' for k, v in options.items())}"


def json_safe(value):
    """NaN (a ratio that could not be computed) as null: strict JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def write_results(result: dict, out_dir: Path, markdown: str) -> tuple[Path, Path]:
    """OUT_DIR/<benchmark>.json and .md, each through a temp file and a rename: an interrupted run never
    leaves a half-written file where the README links to the latest results."""
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = []
    as_json = json.dumps(json_safe(result), indent=2, allow_nan=False) + "\n"
    for suffix, text in (("json", as_json), ("md", markdown)):
        path = out_dir / f"{result['benchmark']}.{suffix}"
        partial = path.with_suffix(f".{suffix}.tmp")
        partial.write_text(text)
        partial.replace(path)
        outputs.append(path)
    return outputs[0], outputs[1]


def finish(result: dict, args: argparse.Namespace, markdown: str, summary: str, lead: str = "") -> int:
    """Writes the results, prints the summary and where they went; the exit status --strict asks for."""
    json_path, md_path = write_results(result, args.out_dir, markdown)
    print(summary)
    shown = md_path.relative_to(ROOT) if md_path.is_relative_to(ROOT) else md_path
    print(f"{lead}results: {shown}, {json_path.name}")
    return 1 if args.strict and not result["pass"] else 0
