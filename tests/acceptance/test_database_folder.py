"""Which embedded database a command uses: only `serve` and `migrate` ever create one.

The embedded database lives in the folder `notifyd serve` ran from. A command run from
another folder must say so, not start an empty cluster there and call it unmigrated.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from notifyd.db.embedded import quiet_pgserver_import
from tests.acceptance.test_cli import run_notifyd

pytestmark = pytest.mark.acceptance

READING = [
    ["send", "--user", "1", "--message", "hello"],
    ["status", "1"],
    ["cancel", "1"],
    ["retry", "1"],
    ["users", "list"],
    ["users", "add", "--email", "ivan@example.com"],
    ["psql", "-c", "SELECT 1"],
    ["webhooks", "off"],
]
EMBEDDED = Path(".notifyd/pgdata")


@pytest.mark.parametrize("args", READING, ids=lambda args: " ".join(args[:2]))
async def test_a_reading_command_without_a_database_here_names_the_folder_and_the_ways_out(
    tmp_path: Path, args: list[str]
) -> None:
    result = await run_notifyd(*args, env={}, cwd=tmp_path)

    assert result.code == 1, result
    assert result.stdout == ""
    assert result.stderr.startswith(f"notifyd {args[0]}: no database:")
    assert str(tmp_path) in result.stderr  # the folder it looked in
    assert "cd to the folder where `notifyd serve` ran" in result.stderr
    assert "DATABASE_URL" in result.stderr
    assert "migrate" not in result.stderr  # not the advice for a database in the wrong place
    assert not (tmp_path / ".notifyd").exists()  # and no cluster was made here


async def test_an_absolute_embedded_dir_without_a_database_is_named(tmp_path: Path) -> None:
    data_dir = tmp_path / "elsewhere" / "pgdata"
    env = {"NOTIFYD_DATABASE__EMBEDDED_DIR": str(data_dir)}

    result = await run_notifyd("users", "list", env=env, cwd=tmp_path)

    assert result.code == 1, result
    assert str(data_dir) in result.stderr
    assert "database.embedded_dir" in result.stderr
    assert not data_dir.exists()


async def test_migrate_creates_the_database_that_reading_commands_then_use(
    embedded_home: Path,
) -> None:
    served = embedded_home / "served"
    other = embedded_home / "other"
    served.mkdir()
    other.mkdir()

    migrated = await run_notifyd("migrate", env={}, cwd=served)
    assert migrated.code == 0, migrated
    assert (served / EMBEDDED / "PG_VERSION").is_file()

    added = await run_notifyd("users", "add", "--phone", "+15551234567", env={}, cwd=served)
    assert added.code == 0, added
    listed = await run_notifyd("users", "list", env={}, cwd=served)
    assert listed.code == 0, listed
    assert "+15551234567" in listed.stdout

    elsewhere = await run_notifyd("users", "list", env={}, cwd=other)
    assert elsewhere.code == 1
    assert str(other) in elsewhere.stderr
    assert not (other / ".notifyd").exists()


async def test_a_cluster_without_notifyd_in_it_is_not_called_unmigrated(
    embedded_home: Path,
) -> None:
    # What a read command of an older notifyd left in the wrong folder: a cluster, empty.
    with quiet_pgserver_import():
        from pgserver.postgres_server import get_server

    (embedded_home / EMBEDDED).parent.mkdir()
    server = get_server(embedded_home / EMBEDDED, cleanup_mode="stop")
    try:
        result = await run_notifyd("users", "list", env={}, cwd=embedded_home)
    finally:
        with contextlib.suppress(Exception):
            server.cleanup()

    assert result.code == 1, result
    assert "not migrated" not in result.stderr
    assert f"{embedded_home / EMBEDDED} has no notifyd schema" in result.stderr
    assert "never ran in this folder" in result.stderr
    assert "cd to the folder where it ran" in result.stderr
