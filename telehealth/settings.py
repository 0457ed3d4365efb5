"""Configuration from the environment. This is the only module that reads os.environ."""
from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    twilio_auth_token: str = ""
    twilio_account_sid: str = ""
    twilio_phone_number: str = ""
    # Where the Twilio pager sends its REST calls. Only tests change it (a local fake or mock).
    twilio_api_base_url: str = "https://api.twilio.com"
    # Empty means embedded mode: fakeredis in-process.
    redis_url: str = ""
    database_url: str = f"sqlite:///{ROOT / 'instance' / 'telehealth.sqlite3'}"
    api_token: str = ""
    secret_key: str = ""
    port: int = 5000
    public_base_url: str = ""
    flows_dir: Path = ROOT / "flows"
    sms_session_timeout_minutes: int = 30
    session_ttl_seconds: int = 6 * 3600
    # Embedded mode runs jobs in-process instead of through an rq worker.
    run_jobs_inline: bool = False
    default_region: str = "US"
    redis_timeout_seconds: float = 0.5
    # Texts one number may send in a minute before the line stops reading them (0: no limit).
    sms_flood_limit_per_minute: int = 20
    # How long the Twilio pager waits for one REST call before it counts as a (retried) failure.
    twilio_timeout_seconds: float = 10.0
    # Paging: "console" prints alerts (embedded default); "twilio" sends them.
    pager: str = "console"
    supervisor_phone: str = ""
    # How often every worker re-derives due escalation steps from the database.
    sweep_seconds: float = 10.0
    # Set by gunicorn.conf.py: where prometheus_client keeps each worker process's metrics.
    metrics_dir: str = ""
    # Staff console: idle sign-out, lockout after failed sign-ins, cookies, how times are shown.
    console_idle_minutes: int = 15
    console_lockout_failures: int = 5
    console_lockout_minutes: int = 15
    # Off only for local development over plain http on a host other than localhost.
    console_secure_cookies: bool = True
    console_timezone: str = "UTC"
    console_board_refresh_seconds: int = 10

    @property
    def is_embedded_redis(self) -> bool:
        return not self.redis_url

    def with_overrides(self, **overrides: object) -> "Settings":
        return replace(self, **overrides)  # type: ignore[arg-type]


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _fallback_secret(auth_token: str) -> str:
    """Without SECRET_KEY, every gunicorn worker must still sign console cookies alike: derive one
    from the (secret) Twilio token, or make one up for a single embedded process."""
    if auth_token:
        return hashlib.sha256(f"telehealth-secret-key:{auth_token}".encode()).hexdigest()
    return secrets.token_hex(32)


def _sqlalchemy_url(url: str) -> str:
    """Platforms hand out postgres:// URLs; SQLAlchemy wants a dialect and the driver we ship."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    base = Settings()
    redis_url = env.get("REDIS_URL", "")
    return Settings(
        twilio_auth_token=env.get("TWILIO_AUTH_TOKEN", ""),
        twilio_account_sid=env.get("TWILIO_ACCOUNT_SID", ""),
        twilio_phone_number=env.get("TWILIO_PHONE_NUMBER", ""),
        twilio_api_base_url=(env.get("TWILIO_API_BASE_URL") or base.twilio_api_base_url).rstrip("/"),
        redis_url=redis_url,
        database_url=_sqlalchemy_url(env.get("DATABASE_URL") or base.database_url),
        api_token=env.get("API_TOKEN", ""),
        secret_key=env.get("SECRET_KEY") or _fallback_secret(env.get("TWILIO_AUTH_TOKEN", "")),
        port=int(env.get("PORT", "5000")),
        public_base_url=env.get("PUBLIC_BASE_URL", "").rstrip("/"),
        flows_dir=Path(env.get("FLOWS_DIR") or base.flows_dir),
        sms_session_timeout_minutes=int(env.get("SMS_SESSION_TIMEOUT_MINUTES", "30")),
        session_ttl_seconds=int(env.get("SESSION_TTL_SECONDS", str(base.session_ttl_seconds))),
        run_jobs_inline=_flag(env.get("RUN_JOBS_INLINE"), default=not redis_url),
        default_region=env.get("DEFAULT_REGION", "US"),
        redis_timeout_seconds=float(env.get("REDIS_TIMEOUT_SECONDS", "0.5")),
        sms_flood_limit_per_minute=int(env.get("SMS_FLOOD_LIMIT_PER_MINUTE") or base.sms_flood_limit_per_minute),
        twilio_timeout_seconds=float(env.get("TWILIO_TIMEOUT_SECONDS") or base.twilio_timeout_seconds),
        pager=env.get("PAGER") or ("twilio" if env.get("TWILIO_ACCOUNT_SID") and redis_url else "console"),
        supervisor_phone=env.get("SUPERVISOR_PHONE", ""),
        sweep_seconds=float(env.get("SWEEP_SECONDS", "10")),
        metrics_dir=env.get("PROMETHEUS_MULTIPROC_DIR", ""),
        console_idle_minutes=int(env.get("CONSOLE_IDLE_MINUTES", "15")),
        console_lockout_failures=int(env.get("CONSOLE_LOCKOUT_FAILURES", "5")),
        console_lockout_minutes=int(env.get("CONSOLE_LOCKOUT_MINUTES", "15")),
        console_secure_cookies=_flag(env.get("CONSOLE_SECURE_COOKIES"), default=True),
        console_timezone=env.get("CONSOLE_TIMEZONE") or base.console_timezone,
        console_board_refresh_seconds=int(env.get("CONSOLE_BOARD_REFRESH_SECONDS", "10")),
    )
