"""Alembic environment: always online, URL only from the Config built by records.migrate()."""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

import telehealth.alerts  # noqa: F401  (registers the roster, alert, staff and note tables)
import telehealth.notes  # noqa: F401
import telehealth.roster  # noqa: F401
import telehealth.users  # noqa: F401
from telehealth.records import Base


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("sqlalchemy.url is not set; run migrations through records.migrate()")
    # NullPool and no statement timeout: a migration is one long-ish connection, not a webhook.
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                compare_type=True,
                # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
                render_as_batch=connection.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported")
run_migrations_online()
