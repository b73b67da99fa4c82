"""The reference documentation against the code, both ways.

Every setting, command, option, route and log event the code has is documented, with the
right default where there is one; and everything the reference tables name still exists.
A new setting without its row in docs/configuration.md fails here, naming the key.
"""

from __future__ import annotations

import argparse
import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

from notifyd.cli.datadir import READING_COMMANDS
from notifyd.cli.main import ANSWERING_COMMANDS, _parser
from notifyd.config import LEGACY_EMAIL_SECURITY, LEGACY_ENV, Settings
from notifyd.web.app import create_app
from tests.docs.markdown import DOCS, ROOT, Table, code_spans, pages, tables

CONFIGURATION = DOCS / "configuration.md"
COMMANDS = DOCS / "commands.md"
API = DOCS / "api.md"
OPERATIONS = DOCS / "operations.md"


def reference(page: Path, first_column: str) -> list[Table]:
    """The tables of `page` whose first column is headed `first_column`."""
    found = [t for t in tables(page.read_text("utf-8")) if t.header[0] == first_column]
    assert found, f"{page.name} has no table headed {first_column!r}"
    return found


def first_code(cell: str) -> str:
    spans = code_spans(cell)
    assert spans, f"no `code` in the cell {cell!r}"
    return spans[0]


# Settings


def settings_keys(model: type[BaseModel] = Settings, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every key of the configuration with its default, e.g. ("http.port", 8000)."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from settings_keys(annotation, f"{prefix}{name}.")
            continue
        default = field.default
        if default is PydanticUndefined and field.default_factory is not None:
            default = field.default_factory()  # type: ignore[call-arg]
        yield f"{prefix}{name}", default


def sections(model: type[BaseModel] = Settings, prefix: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield f"{prefix}{name}"
            yield from sections(annotation, f"{prefix}{name}.")


def documented_settings() -> dict[str, str]:
    """{key: its default cell} from the tables of docs/configuration.md."""
    rows: dict[str, str] = {}
    for table in reference(CONFIGURATION, "key"):
        for row in table.rows:
            key = first_code(row[0])
            assert key not in rows, f"{key} is documented twice"
            rows[key] = row[1]
    return rows


def as_documented(value: Any) -> Any:
    """A default as a TOML value reads it back."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def test_every_setting_is_documented_with_its_default() -> None:
    documented = documented_settings()
    keys = dict(settings_keys())
    assert len(keys) > 60  # the walk found the nested sections

    missing = sorted(set(keys) - set(documented))
    assert not missing, f"not in docs/configuration.md: {', '.join(missing)}"
    for key, default in keys.items():
        cell = documented[key]
        if default is None:
            assert cell == "unset", f"{key}: documented default {cell!r}, but it has none"
            continue
        written = tomllib.loads(f"value = {first_code(cell)}")["value"]
        assert written == as_documented(default), f"{key}: documented {written!r}, is {default!r}"


def test_every_documented_setting_exists() -> None:
    gone = sorted(set(documented_settings()) - dict(settings_keys()).keys())
    assert not gone, f"docs/configuration.md documents keys that do not exist: {gone}"


_SECTIONS = "|".join(sorted({key.split(".")[0] for key, _ in settings_keys()}))
# `dispatcher.batch_size`, `channels.<name>.timeout`, `log.level = "debug"`: a key at the
# start of a code span.
_KEY_MENTION = re.compile(rf"`((?:{_SECTIONS})\.[a-z_<>]+(?:\.[a-z_]+)*)")


@pytest.mark.parametrize("page", pages(), ids=lambda page: page.name)
def test_every_setting_a_page_names_exists(page: Path) -> None:
    keys = {key for key, _ in settings_keys()} | set(sections())
    channels = {key.split(".")[1] for key in keys if key.startswith("channels.")}
    unknown = []
    for mention in _KEY_MENTION.findall(page.read_text("utf-8")):
        if mention.rsplit(".", 1)[-1] in {"py", "sql", "md", "toml"}:
            continue  # a file, e.g. `api.py`
        candidates = {mention.replace("<name>", channel) for channel in channels}
        if not candidates & keys:
            unknown.append(mention)
    assert not unknown, f"{page.name} names settings that do not exist: {sorted(set(unknown))}"


def test_every_variable_of_the_replaced_system_is_documented() -> None:
    (table,) = [t for t in reference(CONFIGURATION, "variable")]
    documented = {name for row in table.rows for name in code_spans(row[0])}
    assert documented == set(LEGACY_ENV) | set(LEGACY_EMAIL_SECURITY)


# Commands and their options


def leaf_commands() -> dict[str, argparse.ArgumentParser]:
    """{"notifyd users add": its parser, ...}: every command that runs something."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, words: str) -> None:
        subparsers = [
            action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
        ]
        if not subparsers:
            found[words] = parser
            return
        for action in subparsers:
            for name, child in action.choices.items():
                walk(child, f"{words} {name}")

    walk(_parser(), "notifyd")
    return found


def options_of(parser: argparse.ArgumentParser) -> set[str]:
    """Long options (but --help) and positional arguments by their metavar."""
    options: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            options.update(o for o in action.option_strings if o.startswith("--"))
        else:
            options.add(str(action.metavar or action.dest))
    return options


def test_every_command_is_documented_and_nothing_else() -> None:
    (table,) = reference(COMMANDS, "command")
    documented = [first_code(row[0]) for row in table.rows]
    commands = leaf_commands()
    assert len(commands) >= 8

    assert sorted(set(commands) - set(documented)) == [], "commands missing in docs/commands.md"
    assert sorted(set(documented) - set(commands)) == [], "docs/commands.md names gone commands"


def test_every_option_is_documented_under_its_command() -> None:
    documented: dict[str, set[str]] = {}
    for table in reference(COMMANDS, "option"):
        command = first_code(table.heading)
        documented[command] = {first_code(row[0]).split()[0] for row in table.rows}

    for command, parser in leaf_commands().items():
        assert command in documented, f"docs/commands.md has no options table for {command}"
        assert documented[command] == options_of(parser), command
    assert set(documented) <= set(leaf_commands())


def section(page: Path, heading: str) -> str:
    """The text of `page` under `## heading`, up to the next heading of that level."""
    text = page.read_text("utf-8")
    assert f"\n## {heading}\n" in text, f"{page.name} has no section {heading!r}"
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def top_commands() -> set[str]:
    return {words.split()[1] for words in leaf_commands()}


def test_every_command_that_never_creates_a_database_is_named_so() -> None:
    # Every command but the two that create the embedded database and check-config (which
    # reports it skipped): a new command is a reading one unless it says otherwise.
    assert top_commands() - READING_COMMANDS == {"serve", "migrate", "check-config"}
    named = set(code_spans(section(COMMANDS, "Which database")))
    missing = sorted(READING_COMMANDS - named)
    assert not missing, f"docs/commands.md#which-database does not name {missing}"


def test_every_command_that_logs_to_stderr_is_named_so() -> None:
    assert top_commands() - ANSWERING_COMMANDS == {"serve", "migrate", "psql"}
    named = set(code_spans(" ".join(section(OPERATIONS, "Logs").split())))
    missing = sorted(ANSWERING_COMMANDS - named)
    assert not missing, f"docs/operations.md#logs does not name {missing}"


# HTTP routes


def routes() -> set[str]:
    """ "METHOD /path" of every API route (the dashboard's are its own page's)."""
    settings = Settings()
    app = create_app(settings, "postgresql://localhost/unused", deliver=False)
    found = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method == "HEAD" or path.startswith("/admin"):
            continue
        found.add(f"{route.method} {path.rstrip('/') or '/'}")
    return found


def test_every_route_is_documented_and_nothing_else() -> None:
    (table,) = reference(API, "endpoint")
    documented = set()
    for row in table.rows:
        method, path = first_code(row[0]).split()
        documented.add(f"{method} {path.rstrip('/')}")
    actual = routes()
    assert len(actual) >= 10

    assert sorted(actual - documented) == [], "routes missing in docs/api.md"
    assert sorted(documented - actual) == [], "docs/api.md names routes that do not exist"


# Log events


def log_events() -> dict[str, str]:
    """{event: where} for every `log.<level>("event", ...)` in the package."""
    levels = {"debug", "info", "warning", "error", "critical", "exception"}
    found: dict[str, str] = {}
    for path in sorted((ROOT / "notifyd").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in levels
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "log"
            ):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            first = node.args[0] if node.args else None
            # A name written out, so that it can be found (here, and by whoever greps).
            assert isinstance(first, ast.Constant), where
            assert isinstance(first.value, str), where
            found.setdefault(first.value, where)
    return found


def test_every_log_event_is_documented_and_nothing_else() -> None:
    documented = {
        name for table in reference(OPERATIONS, "event") for row in table.rows
        for name in code_spans(row[0])
    }  # fmt: skip
    events = log_events()
    assert len(events) > 40

    missing = {name: where for name, where in events.items() if name not in documented}
    assert not missing, f"log events missing in docs/operations.md: {missing}"
    assert sorted(documented - set(events)) == [], "docs/operations.md names gone events"


# Database tables


SCHEMA = DOCS / "schema.md"


def created_in_migrations(kind: str) -> set[str]:
    """The names of the tables (`kind` "TABLE") or functions the migrations create, with
    the ledger of those applied (created by notifyd.db.migrations)."""
    pattern = re.compile(
        rf"^\s*CREATE (?:OR REPLACE )?{kind} (?:IF NOT EXISTS )?notifyd\.(\w+)", re.MULTILINE
    )
    sources = [*sorted((ROOT / "sql").glob("*.sql")), ROOT / "notifyd" / "db" / "migrations.py"]
    return {name for path in sources for name in pattern.findall(path.read_text("utf-8"))}


def documented_in_schema() -> tuple[set[str], set[str], set[str]]:
    """(tables, functions, types) named by the items of docs/schema.md's list, one an
    item; a type's item says it is "a composite type"."""
    tables, functions, types = set(), set(), set()
    # An item's lines joined: a code span may be wrapped.
    items = " ".join(section(SCHEMA, "Tables and functions").split("\n  ")).splitlines()
    for item in items:
        if not item.startswith("- `notifyd."):
            continue
        name = first_code(item).removeprefix("notifyd.")
        if "(" in name:
            functions.add(name.split("(")[0])
        elif "a composite type" in item:
            types.add(name)
        else:
            tables.add(name)
    return tables, functions, types


def test_every_table_is_documented_and_nothing_else() -> None:
    created = created_in_migrations("TABLE")
    tables, _, _ = documented_in_schema()
    assert len(created) >= 8

    assert sorted(created - tables) == [], "tables missing in docs/schema.md"
    assert sorted(tables - created) == [], "docs/schema.md names tables that do not exist"


def test_every_type_is_documented_and_nothing_else() -> None:
    created = created_in_migrations("TYPE")
    _, _, types = documented_in_schema()
    assert "new_attempt" in created
    assert types == created


def test_every_documented_function_exists() -> None:
    _, functions, _ = documented_in_schema()
    assert {"enqueue", "cancel", "retry", "claim"} <= functions
    gone = sorted(functions - created_in_migrations("FUNCTION"))
    assert not gone, f"docs/schema.md names functions that do not exist: {gone}"
