"""The documented `notifyd.toml` at the top of the repository shows every key at its default."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from notifyd.config import Settings, load_settings

CONFIG_FILE = Path(__file__).resolve().parents[2] / "notifyd.toml"


def _fields(model: type[BaseModel], section: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every leaf key of the settings, as (section, ..., key)."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _fields(annotation, (*section, name))
        else:
            yield (*section, name)


def _default(key: tuple[str, ...]) -> Any:
    value: Any = Settings()
    for part in key:
        value = getattr(value, part)
    return value


def _section_text(text: str, section: tuple[str, ...]) -> str:
    """The lines of one `[a.b]` table, up to the next table header."""
    header = re.search(rf"^\[{re.escape('.'.join(section))}\]$", text, re.MULTILINE)
    assert header is not None, f"no [{'.'.join(section)}] table"
    following = re.search(r"^\[", text[header.end() :], re.MULTILINE)
    end = header.end() + following.start() if following else len(text)
    return text[header.end() : end]


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings() reads NOTIFYD_* itself: the comparison is about the file alone.
    for name in list(os.environ):
        if name.startswith("NOTIFYD_"):
            monkeypatch.delenv(name)


def test_documented_file_equals_the_defaults() -> None:
    assert load_settings(CONFIG_FILE, environ={}) == Settings()


@pytest.mark.parametrize("key", list(_fields(Settings)), ids=".".join)
def test_every_key_is_documented(key: tuple[str, ...]) -> None:
    *section, name = key
    text = CONFIG_FILE.read_text(encoding="utf-8")
    table: Any = tomllib.loads(text)
    for part in section:
        table = table[part]
    if name in table:
        return
    # Only secrets and keys without a default may stay commented out.
    default = _default(key)
    assert default is None or isinstance(default, SecretStr), f"{'.'.join(key)} is commented out"
    assert re.search(rf"^# {name} = ", _section_text(text, tuple(section)), re.MULTILINE), (
        f"{'.'.join(key)} is not in {CONFIG_FILE.name}"
    )
