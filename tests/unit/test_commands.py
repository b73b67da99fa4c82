"""The command line without a database: argument validation, the status view, secrets.

Bad arguments must exit with 2 before the configuration or the database is looked at, so
these run `main` in-process with nothing configured.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from notifyd.cli import main
from notifyd.cli.check import (
    CheckResult,
    all_ok,
    config_source,
    report,
    secrets_of,
    variable_for,
)
from notifyd.cli.commands import render_status
from notifyd.cli.runner import not_migrated
from notifyd.config import Settings
from notifyd.db.migrations import Migration, SchemaStatus, load_migrations
from notifyd.domain import Attempt, Notification
from notifyd.redaction import REDACTED


def _exit_code_and_stderr(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    code = info.value.code
    assert isinstance(code, int)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "option", "reason"),
    [
        (["--channels", "email,fax"], "--channels", "'fax': Input should be 'email'"),
        (["--channels", "sms,sms"], "--channels", "must not repeat a channel"),
        (["--channels", ""], "--channels", "at least 1 item"),
        (["--priority", "-101"], "--priority", "greater than or equal to -100"),
        (["--priority", "high"], "--priority", "invalid int value"),
        (["--send-at", "tomorrow"], "--send-at", "datetime"),
        (["--send-at", "2030-01-01T09:00:00"], "--send-at", "timezone"),
        (["--subject", "a\rb"], "--subject", "single line"),
        (["--subject", "x" * 999], "--subject", "at most 998"),
        (["--message", ""], "--message", "at least 1 character"),
        (["--message", "nul\x00"], "--message", "NUL"),
        (["--user", "0"], "--user", "greater than or equal to 1"),
        (["--user", str(2**63)], "--user", "less than or equal to"),
        (["--user", "ivan"], "--user", "invalid int value"),
    ],
)
def test_send_refuses_what_the_api_refuses_naming_the_option(
    capsys: pytest.CaptureFixture[str], extra: list[str], option: str, reason: str
) -> None:
    args = {"--user": "1", "--message": "hello"}
    args.update(zip(extra[::2], extra[1::2], strict=True))

    code, stderr = _exit_code_and_stderr(
        capsys, "send", *[part for pair in args.items() for part in pair]
    )

    assert code == 2
    assert f"{option}: " in stderr or f"argument {option}: " in stderr, stderr
    assert reason in stderr, stderr


def test_send_reports_every_bad_option_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    code, stderr = _exit_code_and_stderr(
        capsys, "send", "--user", "1", "--message", " ", "--priority", "500"
    )

    assert code == 2
    assert "--message: must not be blank" in stderr
    assert "--priority: " in stderr


def test_send_needs_a_user_and_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    code, stderr = _exit_code_and_stderr(capsys, "send", "--message", "hello")

    assert code == 2
    assert "--user" in stderr


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["users", "add", "--email", "not-an-address"], "--email: must be an e-mail address"),
        (["users", "add", "--phone", "+0123"], "--phone: must be an E.164 phone number"),
        (["users", "add", "--telegram-chat-id", "@ab"], "--telegram-chat-id: must be a Telegram"),
        (["users", "list", "--limit", "0"], "argument --limit"),
        (["users", "list", "--after", "-1"], "argument --after"),
        (["users"], "required"),
        (["status", "0"], "argument ID"),
        (["status", "abc"], "argument ID"),
        (["status", str(2**63)], "argument ID"),
    ],
)
def test_other_commands_refuse_bad_arguments_with_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    code, stderr = _exit_code_and_stderr(capsys, *argv)

    assert code == 2
    assert expected in stderr, stderr


def test_a_bad_setting_exits_2_naming_the_key_without_a_log_line_on_stdout(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NOTIFYD_CHANNELS__EMAIL__PORT", "smtp")

    code = main(["users", "list"])

    captured = capsys.readouterr()
    assert code == 2
    assert "channels.email.port" in captured.err
    assert captured.out == ""


# The status view

T0 = datetime(2026, 11, 30, 12, 45, 13, 123000, tzinfo=UTC)


def _notification(**changes: object) -> Notification:
    fields: dict[str, object] = {
        "id": 7,
        "user_id": 3,
        "subject": "",
        "message": "hello",
        "channels": ("telegram", "email"),
        "status": "pending",
        "send_at": None,
        "priority": 0,
        "created_at": T0,
        "updated_at": T0,
        "finished_at": None,
    }
    fields.update(changes)
    return Notification(**fields)  # type: ignore[arg-type]


def _attempt(channel: str, number: int, status: str, error: str | None, ms: float) -> Attempt:
    return Attempt(
        id=number,
        notification_id=7,
        channel=channel,
        attempt=number,
        status=status,
        error=error,
        transient=None,
        provider_response=None,
        started_at=T0,
        finished_at=T0 + timedelta(milliseconds=ms),
    )


def test_status_without_attempts_says_so() -> None:
    text = render_status(_notification(), [])

    assert text.splitlines()[:2] == ["notification  7", "status        pending"]
    assert "subject       -" in text
    assert "created       2026-11-30 12:45:13.123 UTC" in text
    assert text.endswith("\n\nno attempts yet")


def test_status_lists_attempts_in_a_table() -> None:
    attempts = [
        _attempt("telegram", 1, "failed", "Telegram: Bad Request: chat not found", 812.5),
        _attempt("email", 1, "success", None, 12.3),
    ]

    text = render_status(_notification(status="sent", finished_at=T0), attempts)

    head, table = text.split("\n\n")
    assert "finished      2026-11-30 12:45:13.123 UTC" in head
    assert table.splitlines() == [
        "CHANNEL   ATTEMPT  STATUS   STARTED (UTC)            DURATION  ERROR",
        "telegram        1  failed   2026-11-30 12:45:13.123  812.5 ms  "
        "Telegram: Bad Request: chat not found",
        "email           1  success  2026-11-30 12:45:13.123   12.3 ms",
    ]


def test_status_shows_the_start_of_a_long_message_on_one_line() -> None:
    text = render_status(_notification(message="line one\nline two " + "x" * 200), [])

    (line,) = [line for line in text.splitlines() if line.startswith("message")]
    assert "line one line two" in line
    assert line.endswith("…")
    assert len(line) < 100


# check-config's report


def test_secrets_of_lists_every_configured_secret_in_its_printed_forms() -> None:
    settings = Settings(
        database={"url": "postgresql://notifyd:p%40ss-word@db:5432/notifyd"},
        api={"tokens": ["api-token-0123456789abcdef"]},
        channels={
            "email": {"password": "smtp-pass"},
            "telegram": {"bot_token": "123:tok/en"},
            "sms": {
                "provider": "twilio",
                "account_sid": "AC" + "0" * 32,
                "auth_token": "twilio-token",
                "from_number": "+15005550006",
            },
        },
    )

    found = secrets_of(settings)

    for secret in (
        "p%40ss-word",
        "p@ss-word",
        "api-token-0123456789abcdef",
        "smtp-pass",
        "123:tok/en",
        "123%3Atok%2Fen",
        "twilio-token",
    ):
        assert secret in found
    assert found == sorted(found, key=len, reverse=True)  # longest first: no partial masks


def test_report_masks_secrets_whatever_a_check_said() -> None:
    settings = Settings(channels={"telegram": {"bot_token": SecretStr("123:leaky")}})
    results = [CheckResult("telegram", "failed", "GET http://x/bot123:leaky/getMe refused")]

    text = report(results, settings)

    assert "123:leaky" not in text
    assert f"/bot{REDACTED}/getMe" in text
    assert not all_ok(results)
    assert all_ok([CheckResult("sms", "skipped", "nothing to check")])


def test_config_source_names_the_file_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert config_source(None, {}) == "no notifyd.toml: defaults and environment"
    assert config_source(Path("other.toml"), {}) == "read other.toml"
    assert config_source(None, {"NOTIFYD_CONFIG": "/etc/notifyd.toml"}) == "read /etc/notifyd.toml"
    (tmp_path / "notifyd.toml").write_text("", "utf-8")
    assert config_source(None, {}) == "read notifyd.toml"


# The advice for a database that is not up to date


def test_a_partly_migrated_database_is_told_to_migrate() -> None:
    later = Migration(2, "0002_later", "")
    schema = SchemaStatus(applied=frozenset({1}), pending=(later,), unknown=frozenset())

    for embedded_dir in (None, Path("/srv/notifyd/.notifyd/pgdata")):
        message = not_migrated(schema, embedded_dir)
        assert message.startswith("the database is not migrated (0002_later pending)")
        assert "`notifyd migrate`" in message


def test_an_empty_embedded_database_is_the_wrong_folder_not_a_missing_migration() -> None:
    schema = SchemaStatus(
        applied=frozenset(), pending=tuple(load_migrations()), unknown=frozenset()
    )
    data_dir = Path("/home/ivan/.notifyd/pgdata")

    embedded = not_migrated(schema, data_dir)
    external = not_migrated(schema, None)

    assert "not migrated" not in embedded
    assert f"{data_dir} has no notifyd schema" in embedded
    assert "cd to the folder where it ran" in embedded
    assert "DATABASE_URL" in embedded
    assert external.startswith("the database has no notifyd schema: run `notifyd migrate`")


@pytest.mark.parametrize(
    ("key", "variable"),
    [
        ("channels.telegram.bot_token", "TELEGRAM_BOT_TOKEN"),
        ("channels.email.host", "EMAIL_HOST"),
        ("channels.sms.account_sid", "NOTIFYD_CHANNELS__SMS__ACCOUNT_SID"),
    ],
)
def test_check_config_names_the_variable_that_sets_a_key(key: str, variable: str) -> None:
    assert variable_for(key) == variable
