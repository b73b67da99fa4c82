"""Numbered, forward-only SQL migrations, applied in one transaction under an advisory lock.

`0001_schema` is the baseline: the first eight migrations, squashed before the first release
so that `sql/` reads as the schema. A database those eight built has exactly the baseline's
schema; its ledger is recognised and rewritten to show the baseline (`LEGACY_CHAIN`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from notifyd.db.connection import CONNECTION_ERRORS, Pool
from notifyd.errors import MigrationError
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
LEDGER: Final = "SELECT version, name FROM notifyd.schema_migrations"
# Is the migration ledger there at all (a database notifyd never migrated has none)?
LEDGER_EXISTS: Final = "SELECT to_regclass('notifyd.schema_migrations') IS NOT NULL"
RECORD_VERSION: Final = "INSERT INTO notifyd.schema_migrations (version, name) VALUES ($1, $2)"
# PgBouncer's words when it closes a connection that began a transaction in statement mode.
STATEMENT_POOLING: Final = "statement pooling mode"
STATEMENT_POOLING_ADVICE: Final = (
    "notifyd needs transactions: set the pooler's pool_mode to transaction or session"
)
# Held until the transaction ends, whatever happens to the session.
LOCK: Final = "SELECT pg_advisory_xact_lock($1)"
# Fresh statistics, so the planner sees the partial indexes for what they are from the start.
ANALYZE: Final = "ANALYZE notifyd.users, notifyd.notifications, notifyd.notification_attempts"

# The migrations squashed into the baseline, as a database built by them records them. Such a
# database has exactly the baseline's schema (a test compares the two), so its ledger only
# needs to say so. Entries are never added here: migrations after the baseline are applied
# like any other.
LEGACY_CHAIN: Final = {
    1: "0001_initial",
    2: "0002_reliability",
    3: "0003_scheduling",
    4: "0004_dashboard",
    5: "0005_attempts_without_foreign_key",
    6: "0006_claim_function",
    7: "0007_cheaper_channel_check",
    8: "0008_message_checked_when_written",
}
BASELINE_VERSION: Final = 1
# The squashed chain's entries make way for the baseline's, which takes the applied_at of
# the last of them: when the database reached the schema the baseline describes.
RECORD_BASELINE: Final = """
    WITH squashed AS (
        DELETE FROM notifyd.schema_migrations WHERE version = ANY($3::int[])
        RETURNING applied_at
    )
    INSERT INTO notifyd.schema_migrations (version, name, applied_at)
    SELECT $1, $2, max(applied_at) FROM squashed
"""


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

    All of them in one transaction, which first takes a transaction-level advisory lock:
    instances that start at the same moment wait for the first one, then find nothing left
    to do; every pending migration is applied, or none is. No lock outlives the
    transaction, so this works the same through a transaction pooler (a session lock taken
    there would stay with whichever server connection ran it). A ledger that holds the
    squashed chain is first rewritten to hold the baseline instead; one that holds part of
    it is refused (MigrationError), and nothing is changed. A statement the server refuses
    is a MigrationError naming the migration.
    """
    pending = load_migrations(directory)
    applied_now: list[str] = []
    async with pool.connection() as connection:
        # A migration says with a WARNING what it changed in the rows it found (values it
        # had to repair, rows it could not check): the operator reads it in the log.
        connection.add_log_listener(_log_warning)
        try:
            async with _refusals_named("the migration ledger"), connection.transaction():
                await connection.execute(LOCK, MIGRATION_LOCK_KEY)
                await connection.execute(CREATE_LEDGER)
                ledger = await _read_ledger(connection)
                squashed = _squashed_chain(ledger, pending)
                if squashed:
                    await _record_baseline(connection, squashed, pending)
                    ledger = _as_baseline(ledger, squashed, pending)
                for migration in pending:
                    if migration.version in ledger:
                        continue
                    async with _refusals_named(migration.name):
                        await connection.execute(migration.sql)
                    await connection.execute(RECORD_VERSION, migration.version, migration.name)
                    applied_now.append(migration.name)
            for name in applied_now:
                log.info("migration_applied", migration=name)
            if applied_now:
                await connection.execute(ANALYZE)
        finally:
            with contextlib.suppress(asyncpg.InterfaceError):  # closed under it: nothing to undo
                connection.remove_log_listener(_log_warning)
    return applied_now


@asynccontextmanager
async def _refusals_named(what: str) -> AsyncIterator[None]:
    """The server's refusal of `what` as a MigrationError (an outage stays one)."""
    try:
        yield
    except MigrationError:
        raise
    except asyncpg.ConnectionDoesNotExistError as exc:
        if STATEMENT_POOLING in str(exc):
            raise MigrationError(f"{what}: {exc}: {STATEMENT_POOLING_ADVICE}") from exc
        raise  # an outage, translated as such by the caller
    except asyncpg.PostgresError as exc:
        if isinstance(exc, CONNECTION_ERRORS):
            raise
        raise MigrationError(f"{what}: {type(exc).__name__}: {exc}") from exc


async def _read_ledger(connection: PoolConnectionProxy[asyncpg.Record]) -> dict[int, str]:
    return {row["version"]: row["name"] for row in await connection.fetch(LEDGER)}


def _squashed_chain(ledger: dict[int, str], known: list[Migration]) -> dict[int, str]:
    """The ledger's entries of the squashed chain: all of it, or none.

    An entry counts only when this notifyd does not know it as one of its own migrations,
    so migrating with the old chain's files (as the tests do) stays ordinary. Part of the
    chain is a database a development build left half-way: the baseline cannot stand for
    it, and replaying the rest is no longer possible here.
    """
    own = {(m.version, m.name) for m in known}
    found = {
        version: name
        for version, name in sorted(ledger.items())
        if LEGACY_CHAIN.get(version) == name and (version, name) not in own
    }
    if not found or (found == LEGACY_CHAIN and set(ledger) == set(LEGACY_CHAIN)):
        return found
    raise MigrationError(_partial_chain_message(ledger, found))


def _partial_chain_message(ledger: dict[int, str], found: dict[int, str]) -> str:
    missing = [name for version, name in LEGACY_CHAIN.items() if version not in found]
    others = [name for version, name in sorted(ledger.items()) if version not in found]
    first = LEGACY_CHAIN[min(LEGACY_CHAIN)]
    last = LEGACY_CHAIN[max(LEGACY_CHAIN)]
    parts = [
        f"the database holds part of the migrations {first} to {last}, which this notifyd "
        f"replaces with one baseline only as a whole: applied {', '.join(found.values())}",
    ]
    if missing:
        parts.append(f"missing {', '.join(missing)}")
    if others:
        parts.append(f"also {', '.join(others)}")
    advice = (
        f"bring it to {last} with the notifyd build that started it, or, if its data can "
        "go, drop the schema (DROP SCHEMA notifyd CASCADE) and run `notifyd migrate`"
    )
    return f"{'; '.join(parts)}: {advice}"


async def _record_baseline(
    connection: PoolConnectionProxy[asyncpg.Record],
    squashed: dict[int, str],
    known: list[Migration],
) -> None:
    """Make the ledger say "baseline applied" where it lists the squashed chain."""
    baseline = _baseline(known)
    versions = sorted(squashed)
    await connection.execute(RECORD_BASELINE, BASELINE_VERSION, baseline.name, versions)
    log.info(
        "legacy_migrations_recognised",
        replaced=list(squashed.values()),
        recorded=baseline.name,
    )


def _baseline(known: list[Migration]) -> Migration:
    for migration in known:
        if migration.version == BASELINE_VERSION:
            return migration
    raise RuntimeError(f"no migration {BASELINE_VERSION:04d} to stand for the squashed chain")


def _as_baseline(
    ledger: dict[int, str], squashed: dict[int, str], known: list[Migration]
) -> dict[int, str]:
    """The ledger as it reads once the squashed chain is recorded as the baseline."""
    rest = {version: name for version, name in ledger.items() if version not in squashed}
    return {**rest, BASELINE_VERSION: _baseline(known).name}


def _log_warning(_connection: Any, message: Any) -> None:
    if getattr(message, "severity", None) == "WARNING":
        log.warning("migration_warning", message=str(message))


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    applied: frozenset[int]
    # Known to this notifyd and not applied yet, in order.
    pending: tuple[Migration, ...]
    # Applied, but unknown to this notifyd: the database was migrated by a newer one.
    unknown: frozenset[int]
    # The baseline's name when the ledger lists the squashed chain instead, which counts as
    # the baseline applied; the next `migrate` records it so.
    recognised_as: str | None = None


async def schema_status(pool: Pool) -> SchemaStatus:
    """Which migrations the database has, and which this notifyd would still apply.

    A ledger holding the squashed chain counts as holding the baseline: the schema is the
    same, so it is as usable as after `migrate`, which rewrites only the ledger. Part of
    the chain raises MigrationError, as `migrate` would.
    """
    known = load_migrations()
    async with pool.connection() as connection:
        ledger: dict[int, str] = {}
        if await connection.fetchval(LEDGER_EXISTS):
            ledger = await _read_ledger(connection)
    squashed = _squashed_chain(ledger, known)
    recognised_as = None
    if squashed:
        ledger = _as_baseline(ledger, squashed, known)
        recognised_as = ledger[BASELINE_VERSION]
    applied = frozenset(ledger)
    return SchemaStatus(
        applied=applied,
        pending=tuple(m for m in known if m.version not in applied),
        unknown=applied - {m.version for m in known},
        recognised_as=recognised_as,
    )
