"""The schema comparisons ignore what a server keeps per database, and nothing of notifyd's."""

from __future__ import annotations

from tests.schema import normalise_dump

CREATE = "CREATE TABLE notifyd.users (\n    id bigint NOT NULL\n);"


def test_server_column_options_are_left_out() -> None:
    # As one server build prints every column: the number differs between two databases
    # built by the same statements.
    dumps = [
        f"{CREATE}\nALTER TABLE ONLY notifyd.users ALTER COLUMN id SET (pg_attver={n});"
        for n in (3106681504, 3111369704)
    ]
    assert normalise_dump(dumps[0]) == normalise_dump(dumps[1]) == CREATE


def test_options_a_migration_could_set_are_kept() -> None:
    dump = (
        f"{CREATE}\n"
        "ALTER TABLE ONLY notifyd.users ALTER COLUMN id SET (pg_attver=1, n_distinct=-1);"
    )
    assert normalise_dump(dump).splitlines()[-1] == (
        "ALTER TABLE ONLY notifyd.users ALTER COLUMN id SET (n_distinct=-1);"
    )
    assert normalise_dump(dump) != normalise_dump(dump.replace("n_distinct=-1", "n_distinct=-2"))


def test_the_random_restrict_frame_is_left_out() -> None:
    framed = f"\\restrict AbC123\n{CREATE}\n\\unrestrict AbC123"
    assert normalise_dump(framed) == CREATE
