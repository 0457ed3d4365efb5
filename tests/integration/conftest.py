"""Where the real services live, and what to do when one is not running.

Off CI a missing service skips its tests; on CI (CI=true) it fails them, so a
broken .ci/run cannot pass by skipping everything. Below those fixtures: helpers to run the
Procfile's processes and a throwaway PostgreSQL database per test.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/14"


def _unavailable(service: str, error: Exception) -> NoReturn:
    message = f"{service} is unreachable: {type(error).__name__}: {error}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """SQLAlchemy URL of the `test` database (trust auth), checked once per session."""
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL.replace("+psycopg", ""), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        _unavailable("PostgreSQL", error)
    return POSTGRES_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of Redis database 14, reserved for tests, checked once per session."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as error:
        _unavailable("Redis", error)
    finally:
        client.close()
    return REDIS_URL


# --- processes and throwaway databases for the end-to-end tests --------------------------

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def procfile(root: Path = PROJECT_ROOT) -> dict[str, str]:
    """The Procfile's process lines by name, as a platform reads them."""
    processes = {}
    for line in (root / "Procfile").read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.lstrip().startswith("#"):
            processes[name.strip()] = command.strip()
    return processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_env(**values: str) -> dict[str, str]:
    """This environment with the test's Python's bin folder (the venv's) first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL", "PORT"}}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(values)
    return env


def start_process(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Run a Procfile command through the shell, in its own process group, output to `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(["/bin/sh", "-c", command], cwd=PROJECT_ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop_process_group(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the whole group (shell, gunicorn master and workers, rq work horses), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll `condition` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}", pytrace=False)
        time.sleep(interval)


@pytest.fixture
def empty_postgres_database(postgres_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test (no tables), dropped afterwards."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    name = f"telehealth_e2e_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def clean_redis(redis_url: str) -> Iterator[str]:
    """Redis database 14, flushed before and after the test."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    try:
        yield redis_url
    finally:
        client.flushdb()
        client.close()


def descendants(pid: int) -> list[int]:
    """Every living process below `pid`. rq's work horses call setpgrp(), so a process group
    kill misses them; a machine that dies takes them along, so the tests kill them too."""
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


def kill_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process started by `start_process`, its group and every process below it, at once."""
    below = descendants(process.pid)
    for pid in below:
        try:
            os.kill(pid, signal.SIGSTOP)  # nobody finishes a request while the rest are being killed
        except ProcessLookupError:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid in below:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=10)


def stop_tree(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """`stop_process_group`, then SIGKILL whatever it left below (work horses in their own group)."""
    below = descendants(process.pid)
    stop_process_group(process, grace)
    for pid in below:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# --- Twilio stand-ins: a recording fake for the chain tests, Prism for the contract ---------

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
TWILIO_TOKEN = "f" * 32  # the REST API's credentials, syntactically valid; not the webhook token
LINE_NUMBER = "+12025550100"  # what tests.conftest.Twilio posts webhooks To
SHARED = PROJECT_ROOT.parent / "shared"
TWILIO_SPEC = SHARED / "vendor" / "twilio_api_v2010.json"


@pytest.fixture
def fake_twilio() -> Iterator[Any]:
    """A local Twilio REST fake recording every page (see fake_twilio.py)."""
    from tests.integration.fake_twilio import FakeTwilio

    fake = FakeTwilio(ACCOUNT_SID, TWILIO_TOKEN).start()
    try:
        yield fake
    finally:
        fake.stop()


def _prism_unavailable(message: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def prism(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Stoplight Prism mocking Twilio's own OpenAPI description; yields its base URL.

    Prism comes from the project's node_modules (`npm ci`); it is never downloaded here.
    """
    binary = PROJECT_ROOT / "node_modules" / ".bin" / "prism"
    if not binary.exists():
        _prism_unavailable("Prism is not installed: run `npm ci` at the project root")
    if not TWILIO_SPEC.exists():
        _prism_unavailable(f"Twilio's API description is missing: {TWILIO_SPEC}")
    port = free_port()
    log = tmp_path_factory.mktemp("prism") / "prism.log"
    command = f"npx --no-install prism mock -h 127.0.0.1 -p {port} '{TWILIO_SPEC}'"
    process = start_process(command, process_env(), log)
    try:
        deadline = time.monotonic() + 60
        while "Prism is listening" not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                _prism_unavailable(f"Prism did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_tree(process, grace=5)


def chain_flows(directory: Path, chains: dict[str, Any]) -> Path:
    """A copy of flows/ whose escalation.yaml holds `chains` (delays of seconds, for the tests)."""
    import shutil

    import yaml

    flows = directory / "flows"
    shutil.copytree(PROJECT_ROOT / "flows", flows)
    (flows / "escalation.yaml").write_text(yaml.safe_dump({"version": 1, "chains": chains}, sort_keys=False))
    return flows
