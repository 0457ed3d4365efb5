"""Where the real services live, and what to do when one is not running.

Off CI a missing service skips its tests; on CI (CI=true) it fails them, so a
broken .ci/run cannot pass by skipping everything.
"""
from __future__ import annotations

import os
from typing import NoReturn

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
