"""The schema as pg_dump prints it, and the migrations squashed into sql/0001_schema.sql.

`LEGACY_MIGRATIONS` holds the eight migrations exactly as notifyd applied them before the
squash: a database they build is what an early deployment has, and what the baseline must
build too.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path
from typing import Final

import pytest

from notifyd.db import Database
from notifyd.db.embedded import psql_executable
from notifyd.db.migrations import migrate, migrations_dir

LEGACY_MIGRATIONS: Final = Path(__file__).parent / "integration" / "legacy_migrations"


def pg_dump_executable() -> str:
    """The pg_dump shipped beside the embedded PostgreSQL's psql, else the one on PATH."""
    psql = psql_executable()
    if psql is not None:
        beside = Path(psql).with_name("pg_dump")
        if beside.is_file():
            return str(beside)
    found = shutil.which("pg_dump")
    if found is None:
        pytest.skip("pg_dump is not installed")
    return found


async def dump_schema(url: str) -> str:
    """`pg_dump --schema-only --schema=notifyd` of the database at `url`."""
    process = await asyncio.create_subprocess_exec(
        pg_dump_executable(),
        "--schema-only",
        "--schema=notifyd",
        f"--dbname={url}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=os.environ.copy(),
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return normalise_dump(out.decode())


# `ALTER TABLE ONLY t ALTER COLUMN c SET (option=value, ...);`, as pg_dump prints a column's
# attribute options.
_COLUMN_OPTIONS: Final = re.compile(r"^(ALTER TABLE ONLY \S+ ALTER COLUMN \S+ SET )\((.*)\);$")


def normalise_dump(dump: str) -> str:
    """`dump` without what differs between two databases of the same schema.

    - Newer pg_dump frames its output with a random key (`\\restrict KEY` ... `\\unrestrict
      KEY`).
    - Some server builds keep options of their own on every column (`pg_attver=<number>`),
      different in each database: options named `pg_*` are the server's, never notifyd's
      (its migrations set no column options), so they are left out, and a line left with
      none goes too.
    """
    kept: list[str] = []
    for line in dump.splitlines():
        if line.startswith(("\\restrict", "\\unrestrict")):
            continue
        options = _COLUMN_OPTIONS.match(line)
        if options is not None:
            own = [o for o in options[2].split(", ") if not o.startswith("pg_")]
            if not own:
                continue
            line = f"{options[1]}({', '.join(own)});"
        kept.append(line)
    return "\n".join(kept)


def migrations_up_to(version: int, into: Path) -> Path:
    """`into`, holding notifyd's migrations up to `version`: a database of an earlier
    release, to upgrade from."""
    for path in sorted(migrations_dir().glob("*.sql")):
        if int(path.name[:4]) <= version:
            shutil.copy(path, into / path.name)
    return into


async def migrate_database(url: str, directory: Path | None = None) -> list[str]:
    """Apply the migrations in `directory` (notifyd's own by default) to `url`."""
    database = await Database.connect(url, min_size=1, max_size=1)
    try:
        return await migrate(database.pool, directory)
    finally:
        await database.close()
