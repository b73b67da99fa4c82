"""Numbered, forward-only SQL migrations, applied under an advisory lock."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final

from notifyd.db.connection import Pool
from notifyd.logs import get_logger

log = get_logger(__name__)

# Advisory lock key that serialises migrations across instances ("notifyd" in ASCII).
MIGRATION_LOCK_KEY: Final = 0x6E6F746966796400

_FILENAME: Final = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

CREATE_LEDGER: Final = """
    CREATE SCHEMA IF NOT EXISTS notifyd;
    CREATE TABLE IF NOT EXISTS notifyd.schema_migrations (
        version    integer PRIMARY KEY,
        name       text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
    );
"""
APPLIED_VERSIONS: Final = "SELECT version FROM notifyd.schema_migrations"
# Is the migration ledger there at all (a database notifyd never migrated has none)?
LEDGER_EXISTS: Final = "SELECT to_regclass('notifyd.schema_migrations') IS NOT NULL"
RECORD_VERSION: Final = "INSERT INTO notifyd.schema_migrations (version, name) VALUES ($1, $2)"
LOCK: Final = "SELECT pg_advisory_lock($1)"
UNLOCK: Final = "SELECT pg_advisory_unlock($1)"
# Fresh statistics, so the planner sees the partial indexes for what they are from the start.
ANALYZE: Final = "ANALYZE notifyd.users, notifyd.notifications, notifyd.notification_attempts"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations_dir() -> Path:
    """Where the migrations are: inside the installed wheel, or `sql/` of a source tree."""
    packaged = Path(str(resources.files("notifyd"))) / "sql"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "sql"


def load_migrations(directory: Path | None = None) -> list[Migration]:
    directory = directory or migrations_dir()
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILENAME.match(path.name)
        if match is None:
            continue
        found.append(Migration(int(match.group(1)), path.stem, path.read_text("utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers in {directory}")
    if not found:
        raise RuntimeError(f"no migrations found in {directory}")
    return found


async def migrate(pool: Pool, directory: Path | None = None) -> list[str]:
    """Apply every migration not applied yet; return the names applied.

    A session advisory lock serialises instances that start at the same moment; the second
    one waits, then finds nothing left to do.
    """
    pending = load_migrations(directory)
    applied_now: list[str] = []
    async with pool.connection() as connection:
        await connection.execute(LOCK, MIGRATION_LOCK_KEY)
        try:
            await connection.execute(CREATE_LEDGER)
            applied = {row["version"] for row in await connection.fetch(APPLIED_VERSIONS)}
            for migration in pending:
                if migration.version in applied:
                    continue
                async with connection.transaction():
                    await connection.execute(migration.sql)
                    await connection.execute(RECORD_VERSION, migration.version, migration.name)
                applied_now.append(migration.name)
                log.info("migration_applied", migration=migration.name)
            if applied_now:
                await connection.execute(ANALYZE)
        finally:
            await connection.execute(UNLOCK, MIGRATION_LOCK_KEY)
    return applied_now


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    applied: frozenset[int]
    # Known to this notifyd and not applied yet, in order.
    pending: tuple[Migration, ...]
    # Applied, but unknown to this notifyd: the database was migrated by a newer one.
    unknown: frozenset[int]


async def schema_status(pool: Pool) -> SchemaStatus:
    """Which migrations the database has, and which this notifyd would still apply."""
    known = load_migrations()
    async with pool.connection() as connection:
        applied: frozenset[int] = frozenset()
        if await connection.fetchval(LEDGER_EXISTS):
            applied = frozenset(row["version"] for row in await connection.fetch(APPLIED_VERSIONS))
    return SchemaStatus(
        applied=applied,
        pending=tuple(m for m in known if m.version not in applied),
        unknown=applied - {m.version for m in known},
    )
