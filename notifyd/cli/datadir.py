"""Where the embedded database is, and what to say when a command finds none.

`serve` and `migrate` create the embedded PostgreSQL where none is; the commands that only
read or change rows (`send`, `status`, `users`, `webhooks`, `psql`, `check-config`) never
do: run from the wrong folder they would start an empty cluster there and report an empty
database.
"""

from __future__ import annotations

from pathlib import Path

from notifyd.config import DatabaseSettings

# Commands that use an existing database and never create the embedded one.
READING_COMMANDS = frozenset({"send", "status", "cancel", "retry", "users", "webhooks", "psql"})


def has_embedded_database(data_dir: Path) -> bool:
    """Whether `data_dir` holds a PostgreSQL cluster (initdb writes PG_VERSION first)."""
    return (data_dir / "PG_VERSION").is_file()


def missing_database(database: DatabaseSettings) -> str | None:
    """Why there is no database to use, with the ways out; None if there is one."""
    if database.url is not None or has_embedded_database(database.embedded_dir):
        return None
    data_dir = database.embedded_dir
    if data_dir.is_absolute():
        return (
            f"no database: DATABASE_URL is not set and {data_dir} (database.embedded_dir) "
            "holds no embedded database. Set database.embedded_dir to where `notifyd serve` "
            "keeps its data, or set DATABASE_URL to your PostgreSQL."
        )
    return (
        f"no database: DATABASE_URL is not set and there is no embedded database in "
        f"{Path.cwd()} (looked for {data_dir}; `notifyd serve` creates it in the folder it "
        "runs from). Either cd to the folder where `notifyd serve` ran, or set DATABASE_URL "
        "to your PostgreSQL."
    )
