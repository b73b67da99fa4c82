"""Configuration: defaults, the TOML file, NOTIFYD_* and legacy variables, errors, secrets.

NOTIFYD_* variables are read by pydantic-settings from the real environment, so they are
set with monkeypatch; the legacy variables are passed to `load_settings` as `environ`.
tests/conftest.py clears both kinds before every test.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from notifyd.config import Settings, load_settings
from notifyd.errors import ConfigError

DB_PASSWORD = "db-pass-5f1c"
SMTP_PASSWORD = "smtp-pass-a9e2"
BOT_TOKEN = "123456:bot-token-77d0"


@pytest.fixture(autouse=True)
def _no_config_file_in_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # load_settings() reads ./notifyd.toml when no path is given; the repository has one.
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "notifyd.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _error(path: Path | None = None, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={} if environ is None else environ)
    return str(info.value)


# Sources and precedence


def test_defaults_without_a_file_or_variables() -> None:
    settings = load_settings(None, environ={})

    assert settings == Settings()
    assert settings.http.host == "127.0.0.1"
    assert settings.http.port == 8000
    assert settings.database.url is None
    assert settings.delivery.max_attempts == 3
    assert settings.channels.email.host == "localhost"
    assert settings.channels.email.port == 25
    assert settings.channels.email.security == "none"
    assert settings.channels.sms.fail_always is False
    assert settings.channels.telegram.bot_token.get_secret_value() == ""
    assert settings.log.level == "info"


def test_toml_file_overrides_defaults(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        """
        [http]
        port = 9100
        [delivery]
        max_attempts = 5
        backoff_initial = 2.5
        [channels.email]
        host = "smtp.example.com"
        security = "tls"
        """,
    )

    settings = load_settings(path, environ={})

    assert settings.http.port == 9100
    assert settings.http.host == "127.0.0.1"
    assert settings.delivery.max_attempts == 5
    assert settings.delivery.backoff_initial == 2.5
    assert settings.channels.email.host == "smtp.example.com"
    assert settings.channels.email.security == "tls"
    assert settings.channels.email.port == 25


def test_notifyd_config_in_environ_names_the_file(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[http]\nport = 9200\n")

    settings = load_settings(None, environ={"NOTIFYD_CONFIG": str(path)})

    assert settings.http.port == 9200


def test_notifyd_variable_beats_the_toml_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _toml(tmp_path, "[delivery]\nmax_attempts = 5\nbackoff_initial = 2.0\n")
    monkeypatch.setenv("NOTIFYD_DELIVERY__MAX_ATTEMPTS", "7")

    settings = load_settings(path, environ={})

    assert settings.delivery.max_attempts == 7
    # The rest of the file's section is kept, not replaced by the variable's section.
    assert settings.delivery.backoff_initial == 2.0


def test_nested_notifyd_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFYD_CHANNELS__EMAIL__PORT", "2525")

    settings = load_settings(None, environ={})

    assert settings.channels.email.port == 2525
    assert settings.channels.email.host == "localhost"


def test_log_level_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFYD_LOG__LEVEL", "DEBUG")

    assert load_settings(None, environ={}).log.level == "debug"


def test_legacy_variables() -> None:
    environ = {
        "DATABASE_URL": f"postgresql://notifyd:{DB_PASSWORD}@db.example.com:5432/notifyd",
        "EMAIL_HOST": "smtp.example.com",
        "EMAIL_PORT": "587",
        "EMAIL_HOST_USER": "mailer",
        "EMAIL_HOST_PASSWORD": SMTP_PASSWORD,
        "DEFAULT_FROM_EMAIL": "noreply@example.com",
        "SMS_FAIL_ALWAYS": "TRUE",
        "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "TELEGRAM_API_URL": "http://127.0.0.1:8081/",
    }

    settings = load_settings(None, environ=environ)

    assert settings.database.url is not None
    assert settings.database.url.get_secret_value() == environ["DATABASE_URL"]
    email = settings.channels.email
    assert email.host == "smtp.example.com"
    assert email.port == 587
    assert email.username == "mailer"
    assert email.password.get_secret_value() == SMTP_PASSWORD
    assert email.from_address == "noreply@example.com"
    assert settings.channels.sms.fail_always is True
    assert settings.channels.telegram.bot_token.get_secret_value() == BOT_TOKEN
    assert settings.channels.telegram.api_url == "http://127.0.0.1:8081"


@pytest.mark.parametrize(
    ("environ", "security"),
    [
        ({"EMAIL_USE_TLS": "True"}, "starttls"),
        ({"EMAIL_USE_SSL": "true"}, "tls"),
        ({"EMAIL_USE_TLS": "1"}, "starttls"),
        ({"EMAIL_USE_TLS": "False"}, "none"),
        ({"EMAIL_USE_SSL": "0"}, "none"),
    ],
)
def test_legacy_email_security(environ: dict[str, str], security: str) -> None:
    assert load_settings(None, environ=environ).channels.email.security == security


def test_legacy_variables_beat_the_toml_file(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[channels.email]\nhost = "from-file"\nport = 2525\n')

    settings = load_settings(path, environ={"EMAIL_HOST": "from-legacy"})

    assert settings.channels.email.host == "from-legacy"
    assert settings.channels.email.port == 2525


def test_notifyd_variable_beats_legacy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFYD_CHANNELS__EMAIL__HOST", "from-notifyd")

    settings = load_settings(None, environ={"EMAIL_HOST": "from-legacy", "EMAIL_PORT": "587"})

    assert settings.channels.email.host == "from-notifyd"
    # Legacy keys the NOTIFYD_ variables do not set still apply.
    assert settings.channels.email.port == 587


def test_empty_legacy_values_are_ignored(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[channels.email]\nhost = "from-file"\n')

    settings = load_settings(path, environ={"DATABASE_URL": "", "EMAIL_HOST": ""})

    assert settings.database.url is None
    assert settings.channels.email.host == "from-file"


def test_empty_database_url_in_the_file_means_embedded(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[database]\nurl = ""\n')

    assert load_settings(path, environ={}).database.url is None


# Errors name the key


def test_bad_notifyd_variable_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFYD_HTTP__PORT", "abc")

    assert "http.port" in _error()


def test_out_of_range_port_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFYD_HTTP__PORT", "70000")

    assert "http.port" in _error()


def test_bad_legacy_variable_names_both_key_and_variable() -> None:
    message = _error(environ={"EMAIL_PORT": "notaport"})

    assert "channels.email.port" in message
    assert "EMAIL_PORT" in message


def test_bad_toml_value_does_not_blame_an_unset_legacy_variable(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[channels.email]\nport = "notaport"\n')

    message = _error(path)

    assert "channels.email.port" in message
    assert "EMAIL_PORT" not in message


def test_backoff_max_below_backoff_initial_names_delivery(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[delivery]\nbackoff_initial = 10\nbackoff_max = 5\n")

    message = _error(path)

    assert "delivery" in message
    assert "backoff_max" in message


def test_unknown_key_in_the_file_is_named(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[http]\ncolour = 1\n")

    assert "http.colour" in _error(path)


def test_unknown_section_in_the_file_is_named(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[smtp]\nhost = 'x'\n")

    assert "smtp" in _error(path)


def test_invalid_toml(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[http\nport = \n")

    message = _error(path)

    assert "not valid TOML" in message
    assert str(path) in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"

    message = _error(path)

    assert str(path) in message
    assert "does not exist" in message


def test_non_postgres_database_url_names_database_url() -> None:
    message = _error(environ={"DATABASE_URL": f"mysql://u:{DB_PASSWORD}@db/notifyd"})

    assert "database.url" in message
    assert "DATABASE_URL" in message
    assert DB_PASSWORD not in message


def test_several_problems_are_all_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFYD_HTTP__PORT", "abc")

    message = _error(environ={"EMAIL_PORT": "notaport"})

    assert "http.port" in message
    assert "channels.email.port" in message


def test_unknown_log_level_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFYD_LOG__LEVEL", "verbose")

    assert "log.level" in _error()


@pytest.mark.parametrize(
    ("env", "enabled"),
    [({}, False), ({"NOTIFYD_LOG__ACCESS": "true"}, True), ({"NOTIFYD_LOG__LEVEL": "debug"}, True)],
)
def test_the_access_log_is_off_unless_asked_for_or_at_debug(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], enabled: bool
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert load_settings(None, environ={}).log.access_enabled is enabled


def test_an_access_log_that_its_level_would_hide_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOTIFYD_LOG__ACCESS", "true")
    monkeypatch.setenv("NOTIFYD_LOG__LEVEL", "warning")

    message = _error()
    assert "log.access" in message
    assert 'needs level = "info" or "debug"' in message


# Secrets


@pytest.fixture
def secret_settings() -> Settings:
    return load_settings(
        None,
        environ={
            "DATABASE_URL": f"postgresql://notifyd:{DB_PASSWORD}@db.example.com:5432/notifyd",
            "EMAIL_HOST_PASSWORD": SMTP_PASSWORD,
            "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        },
    )


@pytest.mark.parametrize(
    "render",
    [repr, str, lambda s: s.model_dump_json(), lambda s: str(s.model_dump())],
    ids=["repr", "str", "model_dump_json", "model_dump"],
)
def test_secrets_do_not_appear_when_settings_are_rendered(
    secret_settings: Settings, render: Callable[[Settings], str]
) -> None:
    text = render(secret_settings)

    assert DB_PASSWORD not in text
    assert SMTP_PASSWORD not in text
    assert BOT_TOKEN not in text
    assert "**********" in text


def test_model_dump_json_masks_secret_fields(secret_settings: Settings) -> None:
    dumped = json.loads(secret_settings.model_dump_json())

    assert dumped["database"]["url"] == "**********"
    assert dumped["channels"]["email"]["password"] == "**********"
    assert dumped["channels"]["telegram"]["bot_token"] == "**********"


def test_redacted_url_hides_the_password_only(secret_settings: Settings) -> None:
    redacted = secret_settings.database.redacted_url()

    assert redacted == "postgresql://notifyd:***@db.example.com:5432/notifyd"
    assert DB_PASSWORD not in redacted


def test_redacted_url_without_a_password_is_unchanged() -> None:
    url = "postgresql://notifyd@db.example.com/notifyd?sslmode=require"

    settings = load_settings(None, environ={"DATABASE_URL": url})

    assert settings.database.redacted_url() == url


def test_redacted_url_is_none_for_the_embedded_database() -> None:
    assert load_settings(None, environ={}).database.redacted_url() is None


def test_redacted_url_keeps_ipv6_brackets() -> None:
    settings = load_settings(
        None, environ={"DATABASE_URL": f"postgresql://u:{DB_PASSWORD}@[::1]:5432/db"}
    )

    assert settings.database.redacted_url() == "postgresql://u:***@[::1]:5432/db"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://notifyd:s3cret-pw@db:5x/notifyd",
        "postgresql://notifyd:s3cret-pw@db:99999/notifyd",
    ],
)
def test_a_database_url_with_a_bad_port_is_refused_at_start_without_its_password(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(ConfigError, match=r"database\.url.*invalid port") as caught:
        load_settings(None)
    assert "s3cret-pw" not in str(caught.value)
