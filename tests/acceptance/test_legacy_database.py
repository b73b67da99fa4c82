"""The commands on a database built by the migrations squashed into the baseline.

The whole chain is as good as the baseline: the commands work on it, check-config says so,
and `notifyd migrate` records the baseline. Part of the chain is refused by every command,
with what was found and what to do.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg
import pytest

from notifyd.db.migrations import LEGACY_CHAIN, load_migrations
from tests.acceptance.test_cli import run_notifyd
from tests.conftest import EmptyDatabase
from tests.fakes.smtp import FakeSmtpServer, unused_port
from tests.schema import LEGACY_MIGRATIONS, migrate_database

pytestmark = pytest.mark.acceptance

LEDGER = "SELECT version, name FROM notifyd.schema_migrations ORDER BY version"


async def ledger(url: str) -> list[tuple[int, str]]:
    connection = await asyncpg.connect(url)
    try:
        return [(row["version"], row["name"]) for row in await connection.fetch(LEDGER)]
    finally:
        await connection.close()


async def chain_database(empty_database: EmptyDatabase, tmp_path: Path, applied: int) -> str:
    """A database built by the first `applied` migrations of the squashed chain."""
    directory = tmp_path / "chain"
    directory.mkdir()
    for path in sorted(LEGACY_MIGRATIONS.glob("*.sql"))[:applied]:
        shutil.copy(path, directory)
    url = await empty_database()
    await migrate_database(url, directory)
    return url


def env_for(url: str, smtp: FakeSmtpServer) -> dict[str, str]:
    return {"DATABASE_URL": url, "EMAIL_HOST": smtp.host, "EMAIL_PORT": str(smtp.port)}


async def test_the_whole_chain_works_and_migrate_records_the_baseline(
    empty_database: EmptyDatabase, tmp_path: Path, smtp_server: FakeSmtpServer
) -> None:
    url = await chain_database(empty_database, tmp_path, len(LEGACY_CHAIN))
    env = env_for(url, smtp_server)
    # The chain is as good as the baseline; what came after the baseline is still to apply.
    after = [m for m in load_migrations() if m.version > 1]

    checked = await run_notifyd("check-config", env=env, cwd=tmp_path)
    assert await ledger(url) == list(LEGACY_CHAIN.items())  # check-config did not write it
    migrated = await run_notifyd("migrate", env=env, cwd=tmp_path)
    added = await run_notifyd("users", "add", "--email", "a@example.com", env=env, cwd=tmp_path)

    assert checked.code == 0, checked
    database = checked.line("database")
    assert database.split()[1] == "ok"
    if after:
        assert f"{len(after)} migration(s) pending ({after[0].name}" in database
    else:
        assert "migrations up to date (1 applied)" in database
    assert "0001_initial to 0008_message_checked_when_written recognised as 0001_schema" in (
        database
    )
    assert migrated.code == 0, migrated
    assert '"event":"legacy_migrations_recognised"' in migrated.stdout
    assert await ledger(url) == [(1, "0001_schema"), *((m.version, m.name) for m in after)]
    assert added.code == 0, added


async def test_part_of_the_chain_is_refused_by_every_command(
    empty_database: EmptyDatabase, tmp_path: Path, smtp_server: FakeSmtpServer
) -> None:
    url = await chain_database(empty_database, tmp_path, 6)
    env = env_for(url, smtp_server)

    migrated = await run_notifyd("migrate", env=env, cwd=tmp_path)
    served = await run_notifyd(
        "serve", env=env | {"NOTIFYD_HTTP__PORT": str(unused_port())}, cwd=tmp_path
    )
    listed = await run_notifyd("users", "list", env=env, cwd=tmp_path)
    checked = await run_notifyd("check-config", env=env, cwd=tmp_path)

    missing = "missing 0007_cheaper_channel_check, 0008_message_checked_when_written"
    for result in (migrated, served, listed):
        assert result.code == 1, result
        assert missing in result.stderr
        assert "DROP SCHEMA notifyd CASCADE" in result.stderr
        assert "Traceback" not in result.stderr
    for result in (migrated, served):  # the daemon's own log says why it stopped
        assert '"event":"migrations_refused"' in result.stdout
    assert checked.code == 1
    assert checked.line("database").split()[1] == "failed"
    assert missing in checked.line("database")
    assert await ledger(url) == list(LEGACY_CHAIN.items())[:6]
