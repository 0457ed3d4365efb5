"""Build the app's collaborators from settings, once per process (web, worker or CLI)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import redis

from telehealth import chain as chain_module
from telehealth import settings as settings_module
from telehealth.jobs import InlineJobs, Jobs, RQJobs
from telehealth.paging import ConsolePager, Pager
from telehealth.records import Records
from telehealth.sessions import Sessions
from telehealth.settings import Settings
from telehealth.triage import protocol as protocol_module
from telehealth.triage.protocol import Protocol


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Services:
    settings: Settings
    protocol: Protocol
    records: Records
    sessions: Sessions
    jobs: Jobs
    pager: Pager
    chains: dict[str, dict[str, Any]]
    clock: Callable[[], datetime] = field(default=utcnow)


def redis_client(settings: Settings) -> redis.Redis:
    """Real Redis with short timeouts, or an in-process fake in embedded mode."""
    if settings.is_embedded_redis:
        import fakeredis

        return fakeredis.FakeRedis(server=_embedded_server())
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
        health_check_interval=30,
    )


@lru_cache(maxsize=1)
def _embedded_server() -> object:
    import fakeredis

    return fakeredis.FakeServer()


def build(settings: Settings, *, pager: Pager | None = None, jobs: Jobs | None = None,
          client: redis.Redis | None = None, create_schema: bool = False) -> Services:
    if settings.database_url.startswith("sqlite:///"):
        Path(settings.database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    records = Records.from_url(settings.database_url)
    if create_schema:
        records.create_schema()
    client = client if client is not None else redis_client(settings)
    services = Services(
        settings=settings,
        protocol=protocol_module.load(settings.flows_dir),
        records=records,
        sessions=Sessions(client, settings.session_ttl_seconds),
        jobs=jobs or RQJobs(client),
        pager=pager or _pager(settings),
        chains=chain_module.load(settings.flows_dir),
    )
    if jobs is None and settings.run_jobs_inline:
        services.jobs = InlineJobs(services)
    return services


def _pager(settings: Settings) -> Pager:
    if settings.pager == "twilio":
        from twilio.http.http_client import TwilioHttpClient

        from telehealth.twilio_pager import TWILIO_API, BaseUrlHttpClient, TwilioPager

        base = settings.twilio_api_base_url.rstrip("/")
        timeout = settings.twilio_timeout_seconds
        http_client = (TwilioHttpClient(timeout=timeout) if base in ("", TWILIO_API)
                       else BaseUrlHttpClient(base, timeout=timeout))
        return TwilioPager.from_settings(settings, http_client=http_client)
    return ConsolePager()


@lru_cache(maxsize=1)
def for_worker() -> Services:
    """The services an `rq worker` process uses, built on its first job from the environment."""
    return build(settings_module.from_env())
