"""database.listen_url and database.pooler: what is accepted, and what is refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from notifyd.config import load_settings
from notifyd.db.pooler import Route
from notifyd.errors import ConfigError

SECRET = "listen-PASSWORD-k8j7"
Env = Callable[[dict[str, str]], None]


@pytest.fixture(autouse=True)
def _no_config_file_in_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], None]:
    """Set variables: NOTIFYD_* in the process's environment, as the daemon reads them."""

    def set_all(values: dict[str, str]) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_all


def _error() -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ={})
    return str(info.value)


def test_listen_url_and_pooler_from_the_environment(env: Env) -> None:
    env(
        {
            "NOTIFYD_DATABASE__LISTEN_URL": f"postgresql://notifyd:{SECRET}@db:5432/notifyd",
            "NOTIFYD_DATABASE__POOLER": "transaction",
        }
    )
    settings = load_settings(
        None, environ={"DATABASE_URL": "postgresql://notifyd@pgbouncer:6432/notifyd"}
    )
    database = settings.database
    assert database.listen_url is not None
    assert database.listen_url.get_secret_value().endswith("@db:5432/notifyd")
    assert database.pooler == "transaction"
    assert SECRET not in (database.redacted_listen_url() or "")
    assert SECRET not in repr(settings)


def test_defaults_detect_the_pooler_and_listen_on_the_url() -> None:
    database = load_settings(None, environ={}).database
    assert (database.pooler, database.listen_url) == ("auto", None)


def test_a_listen_url_without_a_url_is_refused(env: Env) -> None:
    env({"NOTIFYD_DATABASE__LISTEN_URL": "postgresql://db/notifyd"})
    message = _error()
    assert "database" in message
    assert "listen_url is set without url" in message


def test_a_listen_url_that_is_not_postgresql_is_refused_naming_the_key(env: Env) -> None:
    env(
        {
            "NOTIFYD_DATABASE__URL": "postgresql://db/notifyd",
            "NOTIFYD_DATABASE__LISTEN_URL": "http://db",
        }
    )
    message = _error()
    assert "database.listen_url" in message
    assert "must be a postgresql:// URL" in message


def test_an_unknown_pooler_is_refused_naming_the_key(env: Env) -> None:
    env({"NOTIFYD_DATABASE__POOLER": "statement"})
    message = _error()
    assert "database.pooler" in message


@pytest.mark.parametrize(
    ("pooler", "keeps_sessions", "described"),
    [
        ("none", True, "PostgreSQL itself"),
        ("session", True, "a session pooler"),
        ("transaction", False, "a transaction pooler"),
    ],
)
def test_what_each_route_keeps(pooler: str, keeps_sessions: bool, described: str) -> None:
    route = Route(pooler, detected=True)  # type: ignore[arg-type]
    assert route.keeps_sessions is keeps_sessions
    assert route.describe() == f"{described} (detected)"
    assert Route(pooler, detected=False).describe().endswith("(database.pooler)")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("listen_url", "listen_pooler"),
    [
        (None, "session"),  # the session goes to database.url, which the setting describes
        ("postgresql://notifyd@pgbouncer:6432/notifyd", "session"),  # the same URL
        ("postgresql://notifyd@db:5432/notifyd", "auto"),  # a URL of its own: looked at
    ],
)
def test_database_pooler_describes_the_url_and_a_listen_url_of_its_own_is_detected(
    env: Env, listen_url: str | None, listen_pooler: str
) -> None:
    env({"NOTIFYD_DATABASE__POOLER": "session"})
    if listen_url is not None:
        env({"NOTIFYD_DATABASE__LISTEN_URL": listen_url})
    settings = load_settings(
        None, environ={"DATABASE_URL": "postgresql://notifyd@pgbouncer:6432/notifyd"}
    )
    assert settings.database.listen_pooler == listen_pooler
