#!/usr/bin/env python3
"""Benchmark the triage line against its physical limit (issue 6). See bench/README.md.

    .venv/bin/python bench/run.py            # the real run: a few minutes, writes results/latest.*
    .venv/bin/python bench/run.py --quick    # a short smoke: writes results/quick.*

Phase A (load): the Procfile's release command migrates a fresh PostgreSQL database; the Procfile's
web command serves the line under gunicorn; the same command with only the app changed serves the
reference app (bench/refapp.py: bare and floor). wrk replays precomputed, signed webhooks at
concurrency 1, 8 and 32 for a fixed duration against bare, floor, our SMS turn and our voice turn.

Phase B (footprint and alerts): a second fresh database, the web command, the Procfile's worker
(`rq worker`, PAGER=twilio pointed at a local fake of Twilio's REST API, bench/fake_twilio.py) and
an on-call clinician added with `telehealth roster add`. Measured: SQL rows and bytes per completed
conversation, Redis memory per active conversation, and the time from the webhook that completes an
emergency rule to the page reaching the fake Twilio.

Every process is started by this script in its own process group and stopped by it at the end;
the databases it creates are dropped and its Redis database number is flushed.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

import scenarios  # noqa: E402
from scenarios import Builder, Patient, Phones, Request  # noqa: E402

APP_SPEC = re.compile(r"""(['"]?)telehealth\.app:create_app\(\)\1""")
REF_SPEC = "'refapp:create_app()'"
CLINICIAN_PHONE = "+12025550142"  # the on-call primary in phase B (not a patient number)
# Everything telehealth/settings.py reads: never inherited from the shell running the benchmark.
APP_ENV = {"TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID", "TWILIO_PHONE_NUMBER", "TWILIO_API_BASE_URL",
           "REDIS_URL", "DATABASE_URL", "API_TOKEN", "SECRET_KEY", "PORT", "PUBLIC_BASE_URL", "FLOWS_DIR",
           "SMS_SESSION_TIMEOUT_MINUTES", "SESSION_TTL_SECONDS", "RUN_JOBS_INLINE", "DEFAULT_REGION",
           "REDIS_TIMEOUT_SECONDS", "PAGER", "SUPERVISOR_PHONE", "SWEEP_SECONDS"}
TARGETS = ("bare", "floor", "ours_sms", "ours_voice")
LABELS = {"bare": "bare", "floor": "floor", "ours_sms": "ours (SMS turn)", "ours_voice": "ours (voice turn)"}
TARGET_GOALS = {"ratio_vs_floor": 0.8, "p99_ms_at_32": 60.0, "alert_p99_s": 1.0, "redis_bytes": 2048}

FULL = dict(duration=15, warmup=3, concurrency=(1, 8, 32), sql_conversations=200, redis_conversations=200,
            emergencies=50)
QUICK = dict(duration=2, warmup=1, concurrency=(1, 8, 32), sql_conversations=20, redis_conversations=20,
             emergencies=6)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- tools ---------------------------------------------------------------------------------


def ensure_tools(profile: bool) -> None:
    """wrk from Debian; matplotlib (and py-spy for --profile) from PyPI into this venv."""
    if shutil.which("wrk") is None:
        log("wrk is missing: apt-get install -y wrk")
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, stdout=subprocess.DEVNULL)
        if shutil.which("wrk") is None:
            subprocess.run(["apt-get", "update"], check=False, stdout=subprocess.DEVNULL)
            subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, stdout=subprocess.DEVNULL)
    wanted = ["matplotlib"] + (["py-spy"] if profile else [])
    missing = [name for name in wanted if not _installed(name)]
    if missing:
        log(f"installing {', '.join(missing)} into {sys.prefix} (pin it in pyproject's `bench` extra)")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *missing], check=True)


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


# --- processes -----------------------------------------------------------------------------


def procfile() -> dict[str, str]:
    lines = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.lstrip().startswith("#"):
            lines[name.strip()] = command.strip()
    return lines


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in APP_ENV and not k.startswith("CONSOLE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(values)
    return env


class Proc:
    """A Procfile command run through the shell in its own process group."""

    def __init__(self, name: str, command: str, env: dict[str, str], logdir: Path) -> None:
        self.name, self.command = name, command
        self.log = logdir / f"{name}.log"
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(["/bin/sh", "-c", command], cwd=ROOT, env=env, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def pids(self, needle: str) -> list[int]:
        """Living processes below this one whose command line contains `needle`."""
        found = []
        for pid in [self.popen.pid, *descendants(self.popen.pid)]:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if needle in cmdline:
                found.append(pid)
        return found

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the group, then SIGKILL it and anything below it (rq work horses leave the group)."""
        below = descendants(self.popen.pid)
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        for pid in below:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def wait_http(port: int, proc: Proc, path: str = "/healthz", timeout: float = 60.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise SystemExit(f"{proc.name} exited while starting:\n{proc.tail()}")
        try:
            if requests.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{proc.name} did not answer on port {port} within {timeout:.0f}s:\n{proc.tail()}")


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --- how busy the machine is --------------------------------------------------------------

SERVERS = {"postgres", "redis-server", "wrk"}  # shared servers doing the benchmark's work


def _ticks() -> dict[int, tuple[str, int]]:
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        found[int(stat.parent.name)] = (comm, int(fields[11]) + int(fields[12]))
    return found


def _foreign_backend(pid: int) -> bool:
    """A PostgreSQL backend serving another client's database (another session's tests)."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return "(" in title and "telehealth_bench_" not in title and title.startswith("postgres:")


def _steal() -> tuple[int, int]:
    cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in cpu]
    return values[7] if len(values) > 7 else 0, sum(values[:8])


class CpuMeter:
    """CPU used by processes that are not the benchmark's while it measures (other sessions,
    test suites): the benchmark shares a 2-core machine, and this says how much it was disturbed."""

    def __init__(self, ours: Callable[[], set[int]]) -> None:
        self.ours = ours
        self.hz = os.sysconf("SC_CLK_TCK")

    def start(self) -> None:
        self.t0, self.before, self.steal0 = time.monotonic(), _ticks(), _steal()

    def stop(self) -> dict[str, Any]:
        seconds = time.monotonic() - self.t0
        after, (steal1, total1) = _ticks(), _steal()
        mine = self.ours() | {os.getpid()}
        foreign: dict[str, float] = {}
        for pid, (comm, ticks) in after.items():
            if pid in mine or (comm in SERVERS and not _foreign_backend(pid)):
                continue
            used = ticks - self.before.get(pid, (comm, 0))[1] if pid in self.before else ticks
            if used > 0:
                foreign[comm] = foreign.get(comm, 0.0) + used / self.hz
        steal = (steal1 - self.steal0[0]) / max(1, total1 - self.steal0[1])
        top = sorted(foreign.items(), key=lambda kv: -kv[1])[:3]
        return {"foreign_cores": round(sum(foreign.values()) / seconds, 3), "steal_fraction": round(steal, 4),
                "top_foreign": {k: round(v / seconds, 3) for k, v in top}}

    def wait_quiet(self, limit: float, patience: float) -> dict[str, Any]:
        """Wait up to `patience` seconds for a second in which others use under `limit` cores."""
        deadline = time.monotonic() + patience
        while True:
            self.start()
            time.sleep(1.0)
            load = self.stop()
            if load["foreign_cores"] < limit or time.monotonic() > deadline:
                return load


# --- PostgreSQL and Redis ------------------------------------------------------------------


class Postgres:
    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []

    def url(self, name: str) -> str:
        base, _, _ = self.admin_url.rpartition("/")
        return f"{base}/{name}"

    def create(self) -> str:
        import psycopg

        name = f"telehealth_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return name

    def drop_all(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()

    def connect(self, name: str) -> Any:
        import psycopg

        return psycopg.connect(self.url(name), autocommit=True, connect_timeout=5)


def sqlalchemy_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1]


# --- wrk -----------------------------------------------------------------------------------


def write_streams(prefix: Path, per_thread: list[list[Request]], host: str) -> None:
    for tid, stream in enumerate(per_thread):
        with open(f"{prefix}.{tid}.req", "wb") as out:
            for req in stream:
                raw = req.raw(host)
                out.write(b"%08d" % len(raw))
                out.write(raw)


def wrk(port: int, per_thread: list[list[Request]], connections: int, duration: float, mode: str,
        workdir: Path, name: str) -> dict[str, Any]:
    host = f"127.0.0.1:{port}"
    prefix = workdir / name
    write_streams(prefix, per_thread, host)
    command = ["wrk", "-t", str(len(per_thread)), "-c", str(connections), "-d", f"{duration:g}s",
               "--timeout", "15s", "-s", str(HERE / "stream.lua"), f"http://{host}", "--", str(prefix), mode]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 120)
    for tid in range(len(per_thread)):
        Path(f"{prefix}.{tid}.req").unlink(missing_ok=True)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    raw = json.loads(line.removeprefix("BENCH_RESULT "))
    seconds = raw["duration_us"] / 1e6
    pct = raw["latency_us"]["percentiles"]
    return {
        "connections": connections, "wrk_threads": len(per_thread), "duration_s": round(seconds, 3),
        "requests": raw["requests"], "rps": round(raw["requests"] / seconds, 1),
        "latency_ms": {"p50": pct["50"] / 1000, "p75": pct["75"] / 1000, "p90": pct["90"] / 1000,
                       "p95": pct["95"] / 1000, "p99": pct["99"] / 1000, "p99.9": pct["99.9"] / 1000,
                       "mean": round(raw["latency_us"]["mean"] / 1000, 3),
                       "max": raw["latency_us"]["max"] / 1000},
        "errors": raw["errors"],
        "responses": {"ok": raw["threads"]["ok"], "not_ok": raw["threads"]["not_ok"],
                      "forbidden": raw["threads"]["forbidden"], "failsafe": raw["threads"]["failsafe"]},
        "stream": {"requests_prepared": raw["threads"]["stream"], "sent": raw["threads"]["sent"],
                   "sent_per_thread": raw["threads"]["sent_each"], "mode": mode, "wrapped": raw["threads"]["wrapped"],
                   "exhausted_threads": raw["threads"]["exhausted"]},
    }


# --- the benchmark -------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, config: dict[str, Any], stack: ExitStack) -> None:
        self.args, self.config, self.stack = args, config, stack
        self.rng = random.Random(args.seed)
        self.phones = Phones()
        self.work = Path(tempfile.mkdtemp(prefix="telehealth-bench-"))
        stack.callback(shutil.rmtree, self.work, True)
        self.pg = Postgres(args.postgres)
        stack.callback(self.pg.drop_all)
        self.redis_url = f"{args.redis.rstrip('/')}/{args.redis_db}"
        self.token = secrets.token_hex(16)
        self.api_token = secrets.token_hex(16)
        self.procfile = procfile()
        self.results: dict[str, Any] = {}
        self.procs: list[Proc] = []
        self.meter = CpuMeter(self.our_pids)
        import redis

        self.redis = redis.Redis.from_url(self.redis_url)
        self.redis.ping()
        self.redis.flushdb()
        stack.callback(self.redis.flushdb)

    # processes ------------------------------------------------------------------------------

    def env(self, database: str, port: int, **extra: str) -> dict[str, str]:
        return process_env(TWILIO_AUTH_TOKEN=self.token, API_TOKEN=self.api_token,
                           SECRET_KEY=secrets.token_hex(16), REDIS_URL=self.redis_url,
                           DATABASE_URL=sqlalchemy_url(self.pg.url(database)), PORT=str(port), **extra)

    def start(self, name: str, command: str, env: dict[str, str]) -> Proc:
        proc = Proc(name, command, env, self.work)
        self.stack.callback(proc.stop)
        self.procs.append(proc)
        return proc

    def our_pids(self) -> set[int]:
        pids = {os.getpid(), *descendants(os.getpid())}
        for proc in self.procs:
            pids |= {proc.popen.pid, *descendants(proc.popen.pid)}
        return pids

    def release(self, database: str) -> None:
        done = subprocess.run(["/bin/sh", "-c", self.procfile["release"]], cwd=ROOT, capture_output=True,
                              text=True, env=self.env(database, 0), timeout=120)
        if done.returncode != 0:
            raise SystemExit(f"release failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")

    def web_command(self) -> str:
        return self.procfile["web"]

    def ref_command(self) -> str:
        web = self.procfile["web"]
        if not APP_SPEC.search(web):
            raise SystemExit(f"cannot find the app in the Procfile's web command: {web}")
        return APP_SPEC.sub(REF_SPEC, web)

    # phase A --------------------------------------------------------------------------------

    def phase_a(self) -> None:
        db = self.pg.create()
        log(f"phase A: database {db}, Redis {self.redis_url}; release: {self.procfile['release']}")
        self.release(db)
        with self.pg.connect(db) as conn:
            from refapp import CREATE_TABLE

            conn.execute(CREATE_TABLE)
        self.db_a = db
        self.web_port, self.ref_port = free_port(), free_port()
        web = self.start("web", self.web_command(), self.env(db, self.web_port))
        ref_env = self.env(db, self.ref_port, PYTHONPATH=str(HERE))
        ref = self.start("refapp", self.ref_command(), ref_env)
        wait_http(self.web_port, web)
        wait_http(self.ref_port, ref, path="/nothing-here")
        self.web, self.ref = web, ref
        self.results["validation"] = self.validate()
        ports = {"bare": self.ref_port, "floor": self.ref_port, "ours_sms": self.web_port,
                 "ours_voice": self.web_port}
        targets = self.args.targets.split(",") if self.args.targets else TARGETS
        load: dict[str, dict[str, Any]] = {t: {} for t in targets}
        for c in self.config["concurrency"]:
            for target in targets:
                load[target][str(c)] = self.measure(target, ports[target], c, load)
        self.results["load"] = load
        if set(TARGETS) <= set(load):
            self.results["ratios"] = {
                t: {c: {"vs_bare": round(load[t][c]["rps"] / load["bare"][c]["rps"], 4),
                        "vs_floor": round(load[t][c]["rps"] / load["floor"][c]["rps"], 4)}
                    for c in load[t]} for t in ("ours_sms", "ours_voice")}
        web.stop()
        ref.stop()

    def builder(self, port: int) -> Builder:
        return Builder(self.token, f"127.0.0.1:{port}", self.rng, self.phones)

    def streams(self, target: str, port: int, threads: int, per_thread: int, slots: int,
                spacing: int) -> list[list[Request]]:
        """One stream per wrk thread, each over its own patients."""
        b = self.builder(port)
        channel = "voice" if target == "ours_voice" else "sms"
        mix = scenarios.VOICE_MIX if channel == "voice" else scenarios.SMS_MIX
        paths = {"bare": {"sms_path": "/bare"}, "floor": {"sms_path": "/floor"}}.get(target, {})
        mean_len = scenarios.mean_length(b, channel, mix)
        return [scenarios.interleave(scenarios.patients(b, channel, mix, self.rng, **paths), slots, per_thread,
                                     mean_len, min_spacing=spacing) for _ in range(threads)]

    def measure(self, target: str, port: int, c: int, load: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """A warm-up, then the measured run.

        Bare and floor: the warm-up sizes their streams (which start over when they end). Ours: one
        stream of patients per wrk thread, sized from the floor's throughput at this concurrency; the
        warm-up plays its start (every conversation beginning at once) and the measured run goes on
        from where the warm-up stopped, so it sees the steady mix of first, middle and last messages.
        """
        threads = 1 if c == 1 else 2
        per_conn = c // threads
        spacing = max(4 * per_conn, 16)  # a patient's next message waits for this many others
        wrap = target in ("bare", "floor")
        warmup, duration = self.config["warmup"], self.config["duration"]
        mean_len = 14.0
        if wrap:
            warm = wrk(port, self.streams(target, port, threads, 4000, spacing, spacing), c, warmup, "wrap",
                       self.work, f"{target}-{c}-warm")
            expected = max(warm["rps"], 10.0) * duration / threads  # requests per thread
            slots = max(spacing, int(expected / (3 * mean_len)))
            streams = self.streams(target, port, threads, min(int(expected * 2) + 200, 20000), slots, spacing)
        else:
            floor = load.get("floor", {}).get(str(c), {}).get("rps", 1000.0)
            expected = floor * (warmup + duration) / threads  # ours is not expected to beat the floor
            slots = max(spacing, int(0.5 * expected / (3 * mean_len)))  # ~3 conversations per slot at 0.5x
            streams = self.streams(target, port, threads, int(expected * 1.5) + 500, slots, spacing)
            warm = wrk(port, streams, c, warmup, "once", self.work, f"{target}-{c}-warm")
            streams = [stream[int(n):] for stream, n in zip(streams, warm["stream"]["sent_per_thread"])]
        if target == "floor":
            self.empty_floor_queue()
        quiet = self.meter.wait_quiet(0.1, self.args.wait_quiet)
        window_start = datetime.now(timezone.utc)
        self.meter.start()
        result = wrk(port, streams, c, duration, "wrap" if wrap else "once", self.work, f"{target}-{c}")
        result["machine_load"] = self.meter.stop()
        result["machine_load"]["before_run"] = quiet["foreign_cores"]
        window_end = datetime.now(timezone.utc)
        if self.args.profile and target == "ours_sms" and c == max(self.config["concurrency"]):
            # An extra run under py-spy, so the profiler's own cost stays out of the figures above.
            rest = [stream[int(n):] for stream, n in zip(streams, result["stream"]["sent_per_thread"])]
            profiler = self.start_profiler()
            again = wrk(port, rest, c, duration, "once", self.work, f"{target}-{c}-profiled")
            self.finish_profiler(profiler, again)
        result["warmup_rps"] = warm["rps"]
        result["stream"]["slots_per_thread"] = slots
        if warm["stream"]["exhausted_threads"]:
            result["stream"]["exhausted_threads"] += warm["stream"]["exhausted_threads"]
        if not wrap:
            result["conversations"] = self.conversations_between(window_start, window_end)
        busy = result["machine_load"]["foreign_cores"]
        problems = [k for k, v in (("non-2xx", result["responses"]["not_ok"]),
                                   (f"other processes used {busy:.2f} cores", busy >= 0.15),
                                   ("fail-safe replies", result["responses"]["failsafe"]),
                                   ("socket errors", sum(result["errors"][k] for k in ("connect", "read", "write"))),
                                   ("timeouts", result["errors"]["timeout"]),
                                   ("exhausted streams", result["stream"]["exhausted_threads"])) if v]
        result["problems"] = problems
        lat = result["latency_ms"]
        log(f"{LABELS[target]:>18} c={c:<2} {result['rps']:>8.1f} req/s  p50 {lat['p50']:6.1f} ms  "
            f"p95 {lat['p95']:6.1f} ms  p99 {lat['p99']:6.1f} ms" + (f"  PROBLEMS: {problems}" if problems else ""))
        return result

    def empty_floor_queue(self) -> None:
        from rq import Queue

        Queue("bench-floor", connection=self.redis).empty()

    def conversations_between(self, start: datetime, end: datetime) -> dict[str, Any]:
        """Conversations started, and ended by disposition, during the measured run."""
        with self.pg.connect(self.db_a) as conn:
            started = conn.execute("SELECT count(*) FROM conversations WHERE started_at >= %s AND started_at < %s",
                                   (start, end)).fetchone()[0]
            ended = dict(conn.execute(
                "SELECT coalesce(disposition, status), count(*) FROM conversations "
                "WHERE ended_at >= %s AND ended_at < %s GROUP BY 1", (start, end)).fetchall())
        return {"started": started, "ended": sum(ended.values()), "ended_by_disposition": ended}

    # validation -----------------------------------------------------------------------------

    def validate(self) -> dict[str, Any]:
        """Play every script (SMS: with each of its first texts) with Python requests, one request at a
        time: the outcome is the script's, no fail-safe reply, and each voice answer goes to the URL
        the previous TwiML's Gather named."""
        import requests

        b = self.builder(self.web_port)
        checked = []
        cases = [("sms", script, text, None) for script, _ in scenarios.SMS_MIX
                 for text in scenarios.narratives(script)]
        cases += [("voice", script, None, spoken) for script, _ in scenarios.VOICE_MIX for spoken in (False, True)]
        for channel, script, narrative, spoken in cases:
            p = b.patient(channel, script, narrative=narrative, spoken=spoken)
            replies = [self.send(p_req, requests) for p_req in p.requests]
            for i, (req, (status, body)) in enumerate(zip(p.requests, replies)):
                if status not in (200, 204) or "Otherwise please" in body:
                    raise SystemExit(f"validation: {channel} {script.name} request {i} -> {status}: {body[:300]}")
                if channel == "voice" and i + 2 < len(p.requests):  # the next answer's URL is the Gather's
                    action = re.search(r'<Gather [^>]*action="([^"]+)"', body)
                    nxt = p.requests[i + 1].path.replace("&", "&amp;")
                    if action is None or action.group(1) != nxt:
                        raise SystemExit(f"validation: voice {script.name} step {i}: expected a Gather to "
                                         f"{nxt}, got {body[:400]}")
            got = self.api(f"/api/conversations?phone={urllib.parse.quote(p.phone)}", requests)["conversations"]
            disposition = got[0]["disposition"] if got else None
            if len(got) != 1 or disposition != script.disposition or got[0]["status"] != "completed":
                raise SystemExit(f"validation: {channel} {script.name}: expected one completed "
                                 f"{script.disposition} conversation, got {got}")
            checked.append({"channel": channel, "script": script.name, "requests": len(p.requests),
                            "disposition": disposition})
        log(f"validated {len(checked)} scripted conversations: each ended as its script says")
        return {"conversations": checked}

    def send(self, req: Request, requests: Any, port: int | None = None) -> tuple[int, str]:
        url = f"http://127.0.0.1:{port or self.web_port}{req.path}"
        r = requests.post(url, data=req.body(), headers=req.headers(), timeout=20)
        return r.status_code, r.text

    def api(self, path: str, requests: Any, port: int | None = None) -> Any:
        r = requests.get(f"http://127.0.0.1:{port or self.web_port}{path}", timeout=20,
                         headers={"Authorization": f"Bearer {self.api_token}"})
        r.raise_for_status()
        return r.json()

    # profiling (--profile) ------------------------------------------------------------------

    def start_profiler(self) -> Any:
        """py-spy on the gunicorn workers, idle frames included: a sync worker's waits on PostgreSQL
        and Redis are where much of a turn's wall time goes."""
        master = self.gunicorn_master(self.web)
        out = RESULTS / "profile-ours-sms.txt"
        command = [_bin("py-spy"), "record", "--pid", str(master), "--subprocesses", "--idle", "--rate", "200",
                   "--format", "raw", "--output", str(out), "--duration", str(max(1, int(self.config["duration"]) - 1))]
        log(f"profiling the gunicorn workers with py-spy -> {out.relative_to(ROOT)}")
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True), out

    @staticmethod
    def gunicorn_master(proc: Proc) -> int:
        """The gunicorn arbiter below the shell: a gunicorn process whose parent is not one."""
        found = []
        for pid in proc.pids("gunicorn"):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if cmdline and cmdline[0].endswith(b"sh"):
                continue
            found.append(pid)
        parents = {pid: int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) for pid in found}
        return next(pid for pid in found if parents[pid] not in found)

    def finish_profiler(self, profiler: Any, run: dict[str, Any]) -> None:
        popen, out = profiler
        _, err = popen.communicate(timeout=60)
        if not out.exists():
            log(f"py-spy wrote nothing: {err[-500:]}")
            return
        self.results["profile"] = {"run": {k: run[k] for k in ("rps", "latency_ms", "connections")},
                                   **summarize_profile(out)}

    # phase B --------------------------------------------------------------------------------

    def phase_b(self) -> None:
        import requests

        self.redis.flushdb()
        db = self.pg.create()
        self.db_b = db
        log(f"phase B: database {db}; worker: {self.procfile['worker']}")
        self.release(db)
        fake = fake_twilio_start()
        self.stack.callback(fake.stop)
        port = free_port()
        pager_env = dict(PAGER="twilio", TWILIO_ACCOUNT_SID=scenarios.ACCOUNT_SID,
                         TWILIO_PHONE_NUMBER=scenarios.LINE_NUMBER, TWILIO_API_BASE_URL=fake.base_url,
                         PUBLIC_BASE_URL=f"http://127.0.0.1:{port}")
        env = self.env(db, port, **pager_env)
        now = datetime.now(timezone.utc)
        shift = f"{(now - timedelta(hours=1)):%Y-%m-%dT%H:%MZ},{(now + timedelta(days=1)):%Y-%m-%dT%H:%MZ},primary"
        done = subprocess.run([_bin("telehealth"), "roster", "add", "--name", "Bench Clinician", "--phone",
                               CLINICIAN_PHONE, "--shift", shift], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)
        if done.returncode != 0:
            raise SystemExit(f"roster add failed:\n{done.stdout}\n{done.stderr}")
        web = self.start("web-b", self.web_command(), env)
        worker = self.start("worker", self.procfile["worker"], env)
        wait_http(port, web)
        self.web_b_port = port
        wait_until(lambda: self.redis.keys("rq:worker:*"), 30, "the rq worker to register")
        self.results["sql"] = self.measure_sql(port, db, requests)
        self.results["redis"] = self.measure_redis(port)
        self.results["emergency_to_alert"] = self.measure_alerts(port, db, fake, requests)
        if worker.popen.poll() is not None:
            raise SystemExit(f"the worker died:\n{worker.tail()}")
        web.stop()
        worker.stop()

    def run_once(self, port: int, patients: list[Patient], lanes: int = 4) -> dict[str, Any]:
        """Play a fixed set of patients to the end, each request once: setup for the footprints.

        Not load: wrk always runs for its whole duration, so these few requests go out from four
        Python threads, each taking its patients' messages in turn.
        """
        import requests
        from concurrent.futures import ThreadPoolExecutor

        def lane(members: list[Patient]) -> tuple[int, list[str]]:
            sent, problems = 0, []
            with requests.Session() as session:
                for req in scenarios.round_robin(members, len(members)):
                    r = session.post(f"http://127.0.0.1:{port}{req.path}", data=req.body(), headers=req.headers(),
                                     timeout=20)
                    sent += 1
                    if r.status_code not in (200, 204) or "Otherwise please" in r.text:
                        problems.append(f"{req.path} -> {r.status_code} {r.text[:200]}")
            return sent, problems

        groups = [patients[i::lanes] for i in range(lanes)]
        with ThreadPoolExecutor(lanes) as pool:
            outcomes = list(pool.map(lane, groups))
        problems = [p for _, ps in outcomes for p in ps]
        if problems:
            raise SystemExit(f"{len(problems)} requests failed, e.g. {problems[:3]}")
        return {"requests": sum(n for n, _ in outcomes)}

    def measure_sql(self, port: int, db: str, requests: Any) -> dict[str, Any]:
        """SQL rows and bytes per completed conversation (the mix; the worker pages the escalations)."""
        k = self.config["sql_conversations"]
        b = self.builder(port)
        sms = [b.patient("sms", s) for s in _take(scenarios.weighted(scenarios.SMS_MIX, self.rng), k - k // 2)]
        voice = [b.patient("voice", s) for s in _take(scenarios.weighted(scenarios.VOICE_MIX, self.rng), k // 2)]
        patients = sms + voice
        self.rng.shuffle(patients)
        escalated = sum(p.script.disposition in ("urgent", "emergency") for p in patients)
        with self.pg.connect(db) as conn:
            before = table_sizes(conn)
            run = self.run_once(port, patients)
            wait_until(lambda: conn.execute("SELECT count(*) FROM conversations WHERE status = 'completed'")
                       .fetchone()[0] >= k, 60, f"{k} completed conversations")
            self.wait_worker_idle(conn, escalated)
            after = table_sizes(conn)
            dispositions = dict(conn.execute("SELECT disposition, count(*) FROM conversations GROUP BY 1").fetchall())
        scripted: dict[str, int] = {}
        for p in patients:
            scripted[p.script.disposition] = scripted.get(p.script.disposition, 0) + 1
        if dispositions != scripted:
            raise SystemExit(f"SQL batch: the line's dispositions {dispositions} are not the scripts' {scripted}")
        tables = {}
        for name in sorted(after):
            a, b0 = after[name], before.get(name, {"rows": 0, "tuple_bytes": 0, "total_bytes": 0, "heap_bytes": 0})
            delta = {key: a[key] - b0[key] for key in a}
            if delta["rows"] or delta["total_bytes"]:
                tables[name] = {"rows": round(delta["rows"] / k, 2), "tuple_bytes": round(delta["tuple_bytes"] / k),
                                "total_bytes": round(delta["total_bytes"] / k)}
        per = {key: sum(t[key] for t in tables.values()) for key in ("rows", "tuple_bytes", "total_bytes")}
        log(f"SQL per completed conversation: {per['rows']:.1f} rows, {per['tuple_bytes']} B of row data, "
            f"{per['total_bytes']} B on disk (with indexes)")
        return {"conversations": k, "sms": len(sms), "voice": len(voice), "escalated": escalated,
                "dispositions": dispositions, "requests": run["requests"], "per_conversation": per,
                "tables": tables,
                "note": "deltas over the whole database for k conversations run to the end, after the worker "
                        "paged every escalation's first step; tuple_bytes = sum(pg_column_size(row)), "
                        "total_bytes = pg_total_relation_size (heap, TOAST, indexes, dead row versions)"}

    def wait_worker_idle(self, conn: Any, escalated: int) -> None:
        from rq import Queue
        from rq.registry import StartedJobRegistry

        queue = Queue("escalations", connection=self.redis)
        started = StartedJobRegistry(queue=queue)

        def idle() -> bool:
            pending = conn.execute("SELECT count(*) FROM alerts WHERE status IN ('pending', 'claimed')").fetchone()[0]
            stepped = conn.execute("SELECT count(*) FROM escalations WHERE next_step > 0").fetchone()[0]
            return queue.count == 0 and started.count == 0 and pending == 0 and stepped >= escalated

        wait_until(idle, 180, "the worker to page every escalation's first step", interval=0.5)
        time.sleep(0.5)

    def measure_redis(self, port: int) -> dict[str, Any]:
        """Memory of conversations left half-way: every key holding one of their ids."""
        n = self.config["redis_conversations"]
        b = self.builder(port)
        patients = [b.patient("sms" if i % 2 == 0 else "voice", scenarios.HALF_ROUTINE) for i in range(n)]
        for p in patients:
            if p.channel == "voice":
                p.requests = p.requests[:-1]  # still on the line: no status callback
        used_before = self.redis.info("memory")["used_memory"]
        keys_before = set(self.redis.scan_iter(count=1000))
        self.run_once(port, patients)
        used_after = self.redis.info("memory")["used_memory"]
        ids: dict[str, int] = {}
        for i, p in enumerate(patients):
            ids[p.phone] = i
            if p.call_sid:
                ids[p.call_sid] = i
            for req in p.requests:
                if "MessageSid" in req.params:
                    ids[req.params["MessageSid"]] = i
        per_patient = [0] * n
        by_kind: dict[str, dict[str, int]] = {}
        for key in self.redis.scan_iter(count=1000):
            if key in keys_before:
                continue
            name = key.decode()
            owner = next((ids[part] for part in name.split(":") if part in ids), None)
            if owner is None:
                continue
            usage = self.redis.memory_usage(key, samples=0) or 0
            per_patient[owner] += usage
            kind = ":".join("*" if part in ids else "#" if part.isdigit() else part for part in name.split(":"))
            kind = f"{patients[owner].channel} {kind}"
            entry = by_kind.setdefault(kind, {"keys": 0, "bytes": 0})
            entry["keys"] += 1
            entry["bytes"] += usage
        if sum(1 for v in per_patient if v) != n:
            raise SystemExit(f"only {sum(1 for v in per_patient if v)} of {n} half-way conversations hold keys")
        sms = [per_patient[i] for i, p in enumerate(patients) if p.channel == "sms"]
        voice = [per_patient[i] for i, p in enumerate(patients) if p.channel == "voice"]
        result = {
            "conversations": n, "requests_per_conversation": {"sms": len(patients[0].requests),
                                                              "voice": len(patients[1].requests) if n > 1 else 0},
            "bytes_per_conversation": {"sms_mean": round(statistics.mean(sms)) if sms else None,
                                       "sms_max": max(sms) if sms else None,
                                       "voice_mean": round(statistics.mean(voice)) if voice else None,
                                       "voice_max": max(voice) if voice else None,
                                       "all_mean": round(statistics.mean(per_patient))},
            "keys_by_kind": {k: {"keys_per_conversation": round(v["keys"] / (len(sms) if k.startswith("sms") else
                                                                               len(voice)), 2),
                                 "bytes_per_conversation": round(v["bytes"] / (len(sms) if k.startswith("sms")
                                                                              else len(voice)))}
                             for k, v in sorted(by_kind.items())},
            "used_memory_delta_per_conversation": round((used_after - used_before) / n),
            "note": "MEMORY USAGE (SAMPLES 0) of every key whose name holds one of the conversation's ids "
                    "(phone, CallSid, MessageSids), for conversations left half-way through a routine path",
        }
        worst = max(v for v in (result["bytes_per_conversation"]["sms_mean"],
                                result["bytes_per_conversation"]["voice_mean"]) if v is not None)
        result["worst_channel_mean"] = worst
        log(f"Redis per active conversation: SMS {result['bytes_per_conversation']['sms_mean']} B, "
            f"voice {result['bytes_per_conversation']['voice_mean']} B "
            f"(used_memory delta {result['used_memory_delta_per_conversation']} B)")
        return result

    def measure_alerts(self, port: int, db: str, fake: Any, requests: Any) -> dict[str, Any]:
        """Emergencies one at a time: from sending the completing webhook to the page at the fake Twilio."""
        n = self.config["emergencies"]
        b = self.builder(port)
        kinds = [scenarios.EMERGENCY_CHEST, scenarios.EMERGENCY_SADDLE, scenarios.EMERGENCY_FEVER_IV]
        sent: dict[str, dict[str, Any]] = {}
        for i in range(n):
            channel = "sms" if i % 2 == 0 else "voice"
            script = kinds[(i // 2) % len(kinds)]
            if channel == "sms" and i % 8 == 6:
                script = scenarios.EMERGENCY_VOLUNTEERED_S
            p = b.patient(channel, script)
            completing = len(p.requests) - (2 if channel == "voice" else 1)
            for req in p.requests[:completing]:
                self.send(req, requests, port)
            time.sleep(0.15)  # the worker is idle again: one emergency at a time
            pages_before = fake.count()
            t0 = time.perf_counter()
            status, body = self.send(p.requests[completing], requests, port)
            t_reply = time.perf_counter()
            if status != 200 or "911" not in body:
                raise SystemExit(f"emergency {i}: the completing reply has no 911 instruction: {status} {body[:300]}")
            wait_until(lambda: fake.count() >= pages_before + 2, 20, f"emergency {i}'s pages", interval=0.005)
            for req in p.requests[completing + 1:]:
                self.send(req, requests, port)
            sent[p.phone] = {"t0": t0, "reply_s": t_reply - t0, "channel": channel}
        time.sleep(1.0)
        with self.pg.connect(db) as conn:
            rows = conn.execute(
                "SELECT c.phone, a.channel, a.twilio_sid FROM alerts a JOIN escalations e ON e.id = a.escalation_id "
                "JOIN conversations c ON c.id = e.conversation_id WHERE a.kind = 'page' AND a.step = 0").fetchall()
        pages = fake.by_sid()
        first: dict[str, float] = {}
        by_channel: dict[str, list[float]] = {"sms": [], "voice": []}
        for phone, channel, sid in rows:
            if phone not in sent or sid not in pages:
                continue
            delay = pages[sid].at - sent[phone]["t0"]
            by_channel[channel].append(delay)
            first[phone] = min(first.get(phone, math.inf), delay)
        if len(first) != n:
            raise SystemExit(f"only {len(first)} of {n} emergencies reached the fake Twilio")
        result = {
            "emergencies": n, "measured": "one at a time, the line otherwise idle; from just before the completing "
                                          "webhook is sent to the page's request arriving at the fake Twilio",
            "first_page_s": summary(list(first.values())),
            "sms_page_s": summary(by_channel["sms"]), "call_page_s": summary(by_channel["voice"]),
            "completing_webhook_reply_s": summary([s["reply_s"] for s in sent.values()]),
            "samples_s": sorted(round(v, 4) for v in first.values()),
        }
        log(f"emergency -> first page: p50 {result['first_page_s']['p50']:.3f} s, "
            f"p99 {result['first_page_s']['p99']:.3f} s (n={n})")
        return result


def _take(it: Iterator[Any], n: int) -> list[Any]:
    return [next(it) for _ in range(n)]


def fake_twilio_start() -> Any:
    from fake_twilio import FakeTwilio

    return FakeTwilio().start()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, no interpolation: the p99 of 50 samples is the largest of them."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(percentile(values, 50), 4), "p95": round(percentile(values, 95), 4),
            "p99": round(percentile(values, 99), 4), "max": round(max(values), 4),
            "mean": round(statistics.mean(values), 4)}


def table_sizes(conn: Any) -> dict[str, dict[str, int]]:
    names = [r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
        "AND table_type = 'BASE TABLE' AND table_name <> 'alembic_version'").fetchall()]
    sizes = {}
    for name in names:
        rows, tuples, total, heap = conn.execute(
            f'SELECT count(*), coalesce(sum(pg_column_size(t.*)), 0), pg_total_relation_size(%s), '
            f'pg_relation_size(%s) FROM "{name}" t', (name, name)).fetchone()
        sizes[name] = {"rows": rows, "tuple_bytes": int(tuples), "total_bytes": total, "heap_bytes": heap}
    return sizes


TRANSACTIONS = {"Records._transaction", "Records.transaction"}
WRAPPERS = TRANSACTIONS | {"Sessions._run", "_redis", "Durable.read", "Durable._write", "Outbox.status.<locals>.read",
                           "Sessions._load", "Sessions._save", "Sessions.count_text.<locals>.count"}


def summarize_profile(path: Path, top: int = 40) -> dict[str, Any]:
    """Collapsed stacks from py-spy: shares of the samples taken inside a request (below gunicorn's
    handle_request). With --idle these are shares of wall time, waits on sockets included.

    - functions: each function's inclusive share (line numbers dropped) and its self share;
    - statements: the inclusive share of each line of our own code (telehealth/, workers/).
    """
    functions: dict[str, int] = {}
    own: dict[str, int] = {}
    statements: dict[str, int] = {}
    calls: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        inside = next((i for i, f in enumerate(frames) if ".handle_request (" in f), None)
        if inside is None:
            continue
        frames = frames[inside:]
        n = int(count)
        total += n
        names = [re.sub(r":\d+\)$", ")", f) for f in frames]
        for name in set(names):
            functions[name] = functions.get(name, 0) + n
        own[names[-1]] = own.get(names[-1], 0) + n
        for frame in set(f for f in frames if "(telehealth/" in f or "(workers/" in f):
            statements[frame] = statements.get(frame, 0) + n
        ours = [i for i, f in enumerate(names) if "(telehealth/" in f or "(workers/" in f]
        if ours:
            below = " ".join(names[ours[-1] + 1:])
            kind = ("PostgreSQL" if "(psycopg/" in below or "(sqlalchemy/" in below else
                    "Redis" if "(redis/" in below else "Python")
            # Helpers every call goes through are named after the call that used them.
            at = len(ours) - 1
            while at > 0 and names[ours[at]].split(" (")[0] in WRAPPERS:
                at -= 1
            wrapper = names[ours[-1]].split(" (")[0]
            key = f"{kind} in {names[ours[at]]}" + (" [at commit: ORM flush + COMMIT]" if wrapper in TRANSACTIONS else "")
        else:
            key = "outside telehealth/ (gunicorn, Flask, werkzeug)"
        calls[key] = calls.get(key, 0) + n

    def share(table: dict[str, int]) -> list[dict[str, Any]]:
        return [{"frame": f, "percent": round(100 * v / total, 1)}
                for f, v in sorted(table.items(), key=lambda kv: -kv[1])[:top]]

    kinds: dict[str, int] = {}
    for key, v in calls.items():
        kind = key.split(" in ")[0] if " in " in key else "Python"
        kinds[kind] = kinds.get(kind, 0) + v
    return {"samples_in_requests": total, "file": str(path.relative_to(ROOT)),
            "by_kind": {k: round(100 * v / total, 1) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
            "by_call": share(calls), "functions": share(functions), "self": share(own),
            "statements": share(statements)}


# --- machine description -------------------------------------------------------------------


def describe_machine(bench: Bench) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "?")
    meminfo = Path("/proc/meminfo").read_text()
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))  # type: ignore[union-attr]
    os_release = Path("/etc/os-release").read_text() if Path("/etc/os-release").exists() else ""
    pretty = re.search(r'PRETTY_NAME="([^"]+)"', os_release)
    versions = {}
    for dist in ("flask", "werkzeug", "gunicorn", "twilio", "redis", "rq", "sqlalchemy", "psycopg", "alembic",
                 "matplotlib", "py-spy"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    with bench.pg.connect("postgres") as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "telehealth", "workers", "flows", "Procfile"],
                                cwd=ROOT, capture_output=True, text=True).stdout.strip())
    return {
        "cpu_model": model, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_kb / 1024 / 1024, 1), "os": pretty.group(1) if pretty else platform.platform(),
        "kernel": platform.release(), "python": platform.python_version(),
        "redis_server": bench.redis.info("server")["redis_version"], "postgresql": pg_version,
        "wrk": wrk_version.split(" [")[0], "packages": versions,
        "git_commit": commit + ("+uncommitted changes" if dirty else ""),
        "procfile": bench.procfile,
    }


# --- output --------------------------------------------------------------------------------


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    load, top = results["load"], str(max(int(c) for c in results["load"]["floor"]))
    ratio = min(results["ratios"]["ours_sms"][c]["vs_floor"] for c in results["ratios"]["ours_sms"])
    ratio_voice = min(results["ratios"]["ours_voice"][c]["vs_floor"] for c in results["ratios"]["ours_voice"])
    p99 = load["ours_sms"][top]["latency_ms"]["p99"]
    p99_voice = load["ours_voice"][top]["latency_ms"]["p99"]
    alert = results["emergency_to_alert"]["first_page_s"]["p99"]
    redis_bytes = results["redis"]["worst_channel_mean"]
    return [
        {"target": "our throughput >= 0.8x floor (lowest over concurrency)", "sms": ratio, "voice": ratio_voice,
         "met": ratio >= 0.8 and ratio_voice >= 0.8},
        {"target": f"p99 <= 60 ms at concurrency {top}", "sms": p99, "voice": p99_voice,
         "met": p99 <= 60 and p99_voice <= 60},
        {"target": "emergency-to-alert p99 < 1 s", "value": alert, "met": alert < 1.0},
        {"target": "<= 2 KiB Redis per active conversation (worse channel, mean)", "value": redis_bytes,
         "met": redis_bytes <= 2048},
    ]


def write_readme_block(results: dict[str, Any], path: Path) -> None:
    load = results["load"]
    cs = list(load["bare"])
    lines = [f"Run of {results['generated_at']} on {results['machine']['cpu_model']}, "
             f"{results['machine']['usable_cores']} cores, {results['machine']['memory_gib']} GiB; "
             f"commit {results['machine']['git_commit']}; {results['config']['duration']} s per run. "
             "Full figures: `results/latest.json`; plot: `results/latest.png`.", "",
             "| endpoint | conc. | req/s | p50 ms | p95 ms | p99 ms | x bare | x floor |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for t in TARGETS:
        for c in cs:
            r = load[t][c]
            lat = r["latency_ms"]
            ratio = results["ratios"].get(t, {}).get(c)
            mark = " (flagged)" if r.get("problems") else ""
            ratios = f"{ratio['vs_bare']:.3f} | {ratio['vs_floor']:.2f}" if ratio else " | "
            lines.append(f"| {LABELS[t]} | {c}{mark} | {r['rps']:,.0f} | {lat['p50']:.1f} | {lat['p95']:.1f} | "
                         f"{lat['p99']:.1f} | {ratios} |")
    flagged = [f"{LABELS[t]} at {c}: {', '.join(load[t][c]['problems'])}" for t in TARGETS for c in cs
               if load[t][c].get("problems")]
    if flagged:
        lines += ["", "Flagged runs (their figures are suspect): " + "; ".join(flagged) + "."]
    if results.get("profile"):
        prof = results["profile"]
        kinds = ", ".join(f"{k} {v}%" for k, v in prof["by_kind"].items())
        lines += ["", f"Where our SMS turn's time goes at {prof['run']['connections']} connections (py-spy `--idle`, "
                      f"share of wall time inside requests; raw stacks in `results/profile-ours-sms.txt`): "
                      f"{kinds}. By call:", "", "| share | waiting on / doing, in |", "|---:|---|"]
        lines += [f"| {e['percent']}% | {e['frame']} |" for e in prof["by_call"][:12]]
    sql, redis_r, alert = results["sql"], results["redis"], results["emergency_to_alert"]
    per = sql["per_conversation"]
    lines += ["", "| other figure | value |", "|---|---|",
              f"| emergency -> first page at Twilio (n={alert['emergencies']}) | p50 {alert['first_page_s']['p50']*1000:.0f} ms, "
              f"p99 {alert['first_page_s']['p99']*1000:.0f} ms, max {alert['first_page_s']['max']*1000:.0f} ms |",
              f"| Redis per active conversation (half-way, n={redis_r['conversations']}) | SMS "
              f"{redis_r['bytes_per_conversation']['sms_mean']:,} B, voice "
              f"{redis_r['bytes_per_conversation']['voice_mean']:,} B |",
              f"| SQL per completed conversation (n={sql['conversations']}) | {per['rows']:.1f} rows, "
              f"{per['tuple_bytes']:,} B of row data, {per['total_bytes']:,} B on disk with indexes |",
              "", "| target | measured | met |", "|---|---|---|"]
    for v in results["verdicts"]:
        measured = (f"SMS {v['sms']}, voice {v['voice']}" if "sms" in v else f"{v['value']}")
        lines.append(f"| {v['target']} | {measured} | {'yes' if v['met'] else '**no**'} |")
    block = "\n".join(lines)
    text = path.read_text()
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    if start in text and end in text:
        head, _, rest = text.partition(start)
        _, _, tail = rest.partition(end)
        path.write_text(f"{head}{start}\n{block}\n{end}{tail}")


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short smoke run; writes results/quick.*")
    parser.add_argument("--duration", type=float, help="seconds per measured wrk run (default 15, quick 2)")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the gunicorn workers during our SMS turn at the highest concurrency")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="admin URL; databases are created beside it and dropped at the end")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--redis-db", type=int, default=13, help="flushed at the start and the end (default 13)")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--wait-quiet", type=float, default=10.0, metavar="SECONDS",
                        help="before each run, wait up to this long for other processes to leave the CPUs "
                             "(default 10; 0 = do not wait); what they used is recorded either way")
    experiment = parser.add_argument_group(
        "experiments", "any of these makes a partial run: its figures go to results/experiment.json only")
    experiment.add_argument("--targets", help="comma-separated subset of bare,floor,ours_sms,ours_voice")
    experiment.add_argument("--concurrency", help="comma-separated connection counts, e.g. 32")
    experiment.add_argument("--skip-b", action="store_true", help="load only (no footprints, no alert timing)")
    experiment.add_argument("--only-b", action="store_true", help="footprints and alert timing only")
    args = parser.parse_args(argv)
    config = dict(QUICK if args.quick else FULL)
    if args.duration:
        config["duration"] = args.duration
    if args.concurrency:
        config["concurrency"] = tuple(int(c) for c in args.concurrency.split(","))
    partial = bool(args.targets or args.only_b or args.skip_b)
    name = "quick" if args.quick else "latest"
    ensure_tools(args.profile)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # stop what was started, drop what was created
        signal.signal(sig, _terminate)
    RESULTS.mkdir(exist_ok=True)
    started = time.monotonic()
    with ExitStack() as stack:
        bench = Bench(args, config, stack)
        results = bench.results
        results["generated_at"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        results["command"] = " ".join([Path(sys.executable).relative_to(ROOT).as_posix()
                                       if str(sys.executable).startswith(str(ROOT)) else sys.executable,
                                       "bench/run.py", *sys.argv[1:]])
        results["machine"] = describe_machine(bench)
        results["config"] = {**config, "concurrency": list(config["concurrency"]),
                             "wrk_threads": {str(c): 1 if c == 1 else 2 for c in config["concurrency"]},
                             "web_command": bench.web_command(), "reference_command": bench.ref_command(),
                             "redis": bench.redis_url, "sms_mix": {s.name: w for s, w in scenarios.SMS_MIX},
                             "voice_mix": {s.name: w for s, w in scenarios.VOICE_MIX}}
        if not args.only_b:
            bench.phase_a()
        if not args.skip_b:
            bench.phase_b()
        results["elapsed_s"] = round(time.monotonic() - started, 1)
    if partial:  # an experiment: the figures go to results/experiment.json, nothing else is touched
        (RESULTS / "experiment.json").write_text(json.dumps(results, indent=2) + "\n")
        log("wrote bench/results/experiment.json")
        return 0
    results["verdicts"] = verdicts(results)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    from plot import plot

    plot(results, RESULTS / f"{name}.png")
    if name == "latest":
        write_readme_block(results, HERE / "README.md")
    log(f"wrote {out.relative_to(ROOT)} and {name}.png in {results['elapsed_s']:.0f} s")
    for v in results.get("verdicts", []):
        log(f"{'MET   ' if v['met'] else 'MISSED'} {v['target']}: "
            + (f"SMS {v['sms']}, voice {v['voice']}" if "sms" in v else str(v["value"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
