"""The operator's commands as a user runs them: `notifyd send|status|users|check-config`.

Each test runs the real command as a subprocess against its own database (DATABASE_URL)
and the fake vendors, then checks the rows, the exit code and what was printed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.acceptance.daemon_process import PASSTHROUGH_ENV
from tests.fakes.smtp import FakeSmtpServer, unused_port
from tests.fakes.telegram import FakeTelegramApi
from tests.fakes.twilio import FakeTwilioApi
from tests.support import Daemon, drop_range_checks

pytestmark = pytest.mark.acceptance

# Distinctive, so that any appearance in the output is a leak and not a coincidence.
SMTP_USER = "mailer@example.com"
SMTP_PASSWORD = "smtp-PASSWORD-a9f3k2"
BOT_TOKEN = "424242:bot-TOKEN-q8w7e6r5t4y3u2i1"
TWILIO_TOKEN = "feedfacecafebeef0123456789abcdef"
API_TOKEN = "api-TOKEN-z1x2c3v4b5n6m7l8"
DB_PASSWORD = "db-PASSWORD-p0o9i8"
SECRETS = (SMTP_PASSWORD, BOT_TOKEN, BOT_TOKEN.split(":")[1], TWILIO_TOKEN, API_TOKEN, DB_PASSWORD)


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def assert_no_secrets(self, *secrets: str) -> None:
        for secret in filter(None, secrets or SECRETS):
            assert secret not in self.stdout, f"{secret!r} in stdout:\n{self.stdout}"
            assert secret not in self.stderr, f"{secret!r} in stderr:\n{self.stderr}"

    def line(self, part: str) -> str:
        """The check-config line of `part`."""
        for text in self.stdout.splitlines():
            if text.split(" ", 1)[0] == part:
                return text
        raise AssertionError(f"no {part} line in:\n{self.stdout}")


Cli = Callable[..., Awaitable[Result]]


async def run_notifyd(
    *args: str, env: dict[str, str], cwd: Path, executable: list[str] | None = None
) -> Result:
    """Run `notifyd ARGS` to its end with a clean environment plus `env`."""
    full_env = {name: os.environ[name] for name in PASSTHROUGH_ENV if name in os.environ}
    full_env.update(env)
    command = executable or [sys.executable, "-m", "notifyd"]
    process = await asyncio.create_subprocess_exec(
        *command,
        *args,
        env=full_env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 90)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


@pytest.fixture
def cli(tmp_path: Path, database_url: str) -> Cli:
    """`notifyd ARGS` on the test's database (more variables with env=...)."""

    async def run(*args: str, env: dict[str, str] | None = None) -> Result:
        return await run_notifyd(
            *args, env={"DATABASE_URL": database_url, **(env or {})}, cwd=tmp_path
        )

    return run


async def add_user(cli: Cli, *contacts: str) -> int:
    result = await cli("users", "add", *contacts)
    assert result.code == 0, result.stderr
    return int(result.stdout)


# send


async def test_send_enqueues_a_notification_and_prints_its_id(
    cli: Cli, db: asyncpg.Connection
) -> None:
    user = await add_user(cli, "--email", "ivan@example.com")

    result = await cli(
        "send",
        "--user", str(user),
        "--message", "Тестовое уведомление",
        "--subject", "Привет!",
        "--channels", "telegram, email",
        "--send-at", "2030-01-02T03:04:05+03:00",
        "--priority", "7",
    )  # fmt: skip

    assert result.code == 0, result.stderr
    assert re.fullmatch(r"\d+\n", result.stdout)  # the id alone: `id=$(notifyd send ...)`
    row = await db.fetchrow("SELECT * FROM notifyd.notifications WHERE id = $1", int(result.stdout))
    assert row is not None
    assert row["user_id"] == user
    assert row["message"] == "Тестовое уведомление"
    assert row["subject"] == "Привет!"
    assert row["channels"] == ["telegram", "email"]
    assert row["send_at"] == datetime(2030, 1, 2, 0, 4, 5, tzinfo=UTC)
    assert row["priority"] == 7
    assert row["status"] == "pending"
    # Delivery is the daemon's: the command made no attempt.
    assert await db.fetchval("SELECT count(*) FROM notifyd.notification_attempts") == 0


async def test_send_json_prints_the_api_answer(cli: Cli, db: asyncpg.Connection) -> None:
    user = await add_user(cli, "--phone", "+15551234567")

    result = await cli("send", "--user", str(user), "--message", "hi", "--json")

    assert result.code == 0, result.stderr
    answer = json.loads(result.stdout)
    assert set(answer) == {"id", "status", "created_at"}
    assert answer["status"] == "pending"
    row = await db.fetchrow(
        "SELECT channels FROM notifyd.notifications WHERE id = $1", answer["id"]
    )
    assert row is not None
    assert row["channels"] == ["email", "sms", "telegram"]  # the API's default


async def test_send_with_bad_input_exits_2_naming_the_option_and_writes_nothing(
    cli: Cli, db: asyncpg.Connection
) -> None:
    user = str(await add_user(cli, "--email", "ivan@example.com"))
    cases = [
        (["--channels", "email,fax"], "--channels", "'fax'"),
        (["--priority", "101"], "--priority", "less than or equal to 100"),
        (["--send-at", "2030-01-02T03:04:05"], "--send-at", "timezone"),
        (["--subject", "two\nlines"], "--subject", "single line"),
        (["--message", "   "], "--message", "blank"),
    ]
    for extra, option, reason in cases:
        base = {"--user": user, "--message": "hello"}
        for name, value in zip(extra[::2], extra[1::2], strict=True):
            base[name] = value
        args = [part for pair in base.items() for part in pair]

        result = await cli("send", *args)

        assert result.code == 2, (extra, result)
        assert option in result.stderr, result.stderr
        assert reason in result.stderr, result.stderr
        assert result.stdout == ""
    assert await db.fetchval("SELECT count(*) FROM notifyd.notifications") == 0


async def test_send_to_an_unknown_user_fails_clearly(cli: Cli, db: asyncpg.Connection) -> None:
    result = await cli("send", "--user", "999", "--message", "hello")

    assert result.code == 1
    assert "--user: user 999 does not exist" in result.stderr
    assert result.stdout == ""
    assert await db.fetchval("SELECT count(*) FROM notifyd.notifications") == 0


# status


async def test_status_of_a_delivered_notification_shows_its_attempts_as_a_table(
    cli: Cli, daemon: Daemon, smtp_server: FakeSmtpServer
) -> None:
    # No Telegram chat: the first channel fails for good and email takes over.
    user = await add_user(cli, "--email", "ivan@example.com")
    sent = await cli(
        "send", "--user", str(user), "--message", "hello", "--channels", "telegram,email"
    )
    assert sent.code == 0, sent.stderr
    notification_id = int(sent.stdout)
    await daemon.wait_finished(notification_id, deadline=20)
    await smtp_server.wait_for_messages(1)

    result = await cli("status", str(notification_id))

    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(rf"notification\s+{notification_id}", lines[0])
    assert re.fullmatch(r"status\s+sent", lines[1])
    assert "channels      telegram, email" in lines
    header = next(i for i, line in enumerate(lines) if line.startswith("CHANNEL"))
    telegram, email = lines[header + 1 : header + 3]
    assert telegram.split()[:3] == ["telegram", "1", "failed"]
    assert telegram.endswith("user has no telegram_chat_id")
    assert email.split()[:3] == ["email", "1", "success"]
    # Aligned: the left-aligned columns start where their header does.
    for title, telegram_value, email_value in (
        ("STATUS", "failed", "success"),
        ("STARTED", telegram.split()[3], email.split()[3]),
    ):
        column = lines[header].index(title)
        assert telegram[column:].startswith(telegram_value), (title, telegram)
        assert email[column:].startswith(email_value), (title, email)
    assert lines[header].index("ERROR") == telegram.index("user has no telegram_chat_id")
    # DURATION is right-aligned: both values end where the header does.
    end = lines[header].index("DURATION") + len("DURATION")
    assert telegram[end - 1] == email[end - 1] == "s"


async def test_status_json_is_the_api_answer(cli: Cli, daemon: Daemon) -> None:
    user = await add_user(cli, "--email", "ivan@example.com")
    notification_id = int((await cli("send", "--user", str(user), "--message", "hi")).stdout)
    await daemon.wait_finished(notification_id, deadline=20)

    result = await cli("status", str(notification_id), "--json")

    assert result.code == 0, result.stderr
    assert json.loads(result.stdout) == await daemon.notification(notification_id)


async def test_status_of_an_unknown_notification_exits_1(cli: Cli) -> None:
    result = await cli("status", "12345")

    assert result.code == 1
    assert "notification 12345 does not exist" in result.stderr
    assert result.stdout == ""


# users


async def test_users_add_and_list(cli: Cli, db: asyncpg.Connection) -> None:
    first = await add_user(cli, "--email", "ivan@example.com", "--telegram-chat-id", "123456789")
    added = await cli("users", "add", "--phone", "+15551234567", "--json")
    assert added.code == 0, added.stderr
    second = json.loads(added.stdout)
    assert second["phone"] == "+15551234567"
    assert second["email"] is None
    row = await db.fetchrow("SELECT * FROM notifyd.users WHERE id = $1", first)
    assert row is not None
    assert (row["email"], row["phone"], row["telegram_chat_id"]) == (
        "ivan@example.com",
        None,
        "123456789",
    )

    listed = await cli("users", "list")

    assert listed.code == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == [
        "ID",
        "EMAIL",
        "PHONE",
        "TELEGRAM",
        "CHAT",
        "CREATED",
        "(UTC)",
        "SUPPRESSED",
    ]
    assert [row.split()[-1] for row in rows] == ["-", "-"]
    assert [row.split()[:4] for row in rows] == [
        [str(first), "ivan@example.com", "-", "123456789"],
        [str(second["id"]), "-", "+15551234567", "-"],
    ]
    assert rows[0].index("ivan@example.com") == header.index("EMAIL")

    page = await cli("users", "list", "--limit", "1", "--after", str(first), "--json")
    assert page.code == 0, page.stderr
    assert [user["id"] for user in json.loads(page.stdout)] == [second["id"]]


async def test_a_reader_that_goes_away_ends_the_command_quietly(
    cli: Cli, tmp_path: Path, database_url: str
) -> None:
    # `notifyd users list | head -1`: the pipe closes before (or while) the table is written.
    for n in range(3):
        await add_user(cli, "--email", f"user{n}@example.com")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        env = {name: os.environ[name] for name in PASSTHROUGH_ENV if name in os.environ}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "notifyd",
            "users",
            "list",
            env={**env, "DATABASE_URL": database_url},
            cwd=tmp_path,
            stdout=write_end,
            stderr=asyncio.subprocess.PIPE,
        )
    finally:
        os.close(write_end)
    _, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode == 1
    assert err.decode() == ""


async def test_users_list_and_status_show_timestamps_stored_out_of_range(
    cli: Cli, db: asyncpg.Connection
) -> None:
    # Written before the range checks existed (here: with them dropped).
    await drop_range_checks(db)
    user = await db.fetchval(
        "INSERT INTO notifyd.users (phone, created_at) VALUES ('+15551234567', 'infinity')"
        " RETURNING id"
    )
    notification = await db.fetchval(
        "INSERT INTO notifyd.notifications (user_id, message, created_at, send_at, finished_at)"
        " VALUES ($1, 'm', '4713-01-01 BC', '10000-01-01Z', '1960-01-01Z') RETURNING id",
        user,
    )
    await db.execute(
        "INSERT INTO notifyd.notification_attempts"
        " (notification_id, channel, attempt, status, started_at, finished_at)"
        " VALUES ($1, 'sms', 1, 'failed', '-infinity', 'infinity')",
        notification,
    )

    listing = await cli("users", "list")
    assert listing.code == 0, listing.stderr
    assert "after 9999-12-31 (out of range)" in listing.stdout
    as_json = await cli("users", "list", "--json")
    assert as_json.code == 0, as_json.stderr
    assert json.loads(as_json.stdout)[0]["created_at"] == "9999-12-31T23:59:59.999999+00:00"

    status = await cli("status", str(notification))
    assert status.code == 0, status.stderr
    assert "before 0001-01-01 (out of range)" in status.stdout
    assert "1960-01-01 00:00:00.000 UTC (out of range)" in status.stdout
    status_json = await cli("status", str(notification), "--json")
    assert status_json.code == 0, status_json.stderr
    assert json.loads(status_json.stdout)["send_at"] == "9999-12-31T23:59:59.999999+00:00"


async def test_users_add_with_a_bad_contact_exits_2_naming_the_option(
    cli: Cli, db: asyncpg.Connection
) -> None:
    result = await cli("users", "add", "--email", "ivan@example.com", "--phone", "8-900-123")

    assert result.code == 2
    assert "--phone: must be an E.164 phone number" in result.stderr
    assert await db.fetchval("SELECT count(*) FROM notifyd.users") == 0


@pytest.mark.parametrize(
    "email", ["alice(bob@evil.example)", "<script>alert(1)</script>@x.example"]
)
async def test_users_add_with_what_is_not_one_address_exits_2_naming_email(
    cli: Cli, db: asyncpg.Connection, email: str
) -> None:
    result = await cli("users", "add", "--email", email)

    assert result.code == 2
    assert "--email: must be an e-mail address" in result.stderr
    assert await db.fetchval("SELECT count(*) FROM notifyd.users") == 0


async def test_the_notifyd_entry_point_runs_the_same_commands(
    tmp_path: Path, database_url: str
) -> None:
    script = Path(sys.executable).parent / "notifyd"
    if not script.is_file():
        pytest.skip("notifyd is not installed as a script next to this Python")
    env = {"DATABASE_URL": database_url}

    added = await run_notifyd("users", "add", env=env, cwd=tmp_path, executable=[str(script)])

    assert added.code == 0, added.stderr
    assert added.stdout.strip().isdigit()


async def test_a_database_without_the_schema_is_refused_with_advice(
    tmp_path: Path, pg_server_url: str
) -> None:
    from tests.databases import database_url_for, drop_database

    name = f"notifyd_empty_{os.getpid()}_{id(tmp_path) % 100000}"
    admin = await asyncpg.connect(pg_server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        env = {"DATABASE_URL": database_url_for(pg_server_url, name)}
        result = await run_notifyd("users", "list", env=env, cwd=tmp_path)
    finally:
        await drop_database(admin, name)
        await admin.close()

    assert result.code == 1
    assert "notifyd migrate" in result.stderr


# check-config


def with_password(url: str, password: str) -> str:
    """`url` with `password` as its password, unless it has one already."""
    parts = urlsplit(url)
    if parts.password:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}:{password}@{host}"))


@pytest.fixture
async def authenticating_smtp() -> AsyncIterator[FakeSmtpServer]:
    async with FakeSmtpServer(username=SMTP_USER, password=SMTP_PASSWORD) as server:
        yield server


@pytest.fixture
async def secret_telegram() -> AsyncIterator[FakeTelegramApi]:
    async with FakeTelegramApi(token=BOT_TOKEN) as api:
        yield api


@pytest.fixture
async def secret_twilio() -> AsyncIterator[FakeTwilioApi]:
    async with FakeTwilioApi(auth_token=TWILIO_TOKEN) as api:
        yield api


@pytest.fixture
def vendors_env(
    database_url: str,
    authenticating_smtp: FakeSmtpServer,
    secret_telegram: FakeTelegramApi,
    secret_twilio: FakeTwilioApi,
) -> dict[str, str]:
    """Every part configured, with the distinctive secrets, against the fakes."""
    sms = secret_twilio.settings()
    return {
        # The test server ignores the password (trust), or has one of its own.
        "DATABASE_URL": with_password(database_url, DB_PASSWORD),
        "EMAIL_HOST": authenticating_smtp.host,
        "EMAIL_PORT": str(authenticating_smtp.port),
        "EMAIL_HOST_USER": SMTP_USER,
        "EMAIL_HOST_PASSWORD": SMTP_PASSWORD,
        "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "TELEGRAM_API_URL": secret_telegram.url,
        "NOTIFYD_CHANNELS__SMS__PROVIDER": "twilio",
        "NOTIFYD_CHANNELS__SMS__API_URL": sms["api_url"],
        "NOTIFYD_CHANNELS__SMS__ACCOUNT_SID": sms["account_sid"],
        "NOTIFYD_CHANNELS__SMS__AUTH_TOKEN": sms["auth_token"],
        "NOTIFYD_CHANNELS__SMS__FROM_NUMBER": sms["from_number"],
        "NOTIFYD_API__TOKENS": json.dumps([API_TOKEN]),
        "NOTIFYD_CHANNELS__EMAIL__TIMEOUT": "5",
        "NOTIFYD_CHANNELS__TELEGRAM__TIMEOUT": "5",
        "NOTIFYD_CHANNELS__SMS__TIMEOUT": "5",
    }


async def check_config(env: dict[str, str], cwd: Path) -> Result:
    return await run_notifyd("check-config", env=env, cwd=cwd)


async def test_check_config_with_every_part_working_exits_0_without_secrets(
    vendors_env: dict[str, str],
    tmp_path: Path,
    authenticating_smtp: FakeSmtpServer,
    secret_telegram: FakeTelegramApi,
    secret_twilio: FakeTwilioApi,
) -> None:
    result = await check_config(vendors_env, tmp_path)

    assert result.code == 0, result
    result.assert_no_secrets(*SECRETS, urlsplit(vendors_env["DATABASE_URL"]).password or "")
    for part in ("config", "database", "email", "sms", "telegram"):
        assert result.line(part).split()[1] == "ok", result.stdout
    assert "1 API token" in result.line("config")
    assert ":***@" in result.line("database")
    assert "migrations up to date" in result.line("database")
    assert f"logged in as {SMTP_USER}" in result.line("email")
    assert "@notifyd_test_bot" in result.line("telegram")
    assert "active" in result.line("sms")
    # Each vendor was really asked, and nothing was sent.
    assert authenticating_smtp.logins == [SMTP_USER]
    assert authenticating_smtp.received == []
    assert [call.method for call in secret_telegram.calls] == ["getMe"]
    assert [request.method for request in secret_twilio.requests] == ["GET"]
    assert secret_twilio.messages == []


WRONG_SMTP_PASSWORD = "wrong-PASSWORD-x7c6"
WRONG_BOT_TOKEN = "424242:wrong-TOKEN-m3n4b5"
WRONG_TWILIO_TOKEN = "badc0ffee0ddf00d" * 2


@pytest.mark.parametrize(
    ("change", "part", "reason"),
    [
        ({"EMAIL_HOST_PASSWORD": WRONG_SMTP_PASSWORD}, "email", "authentication failed"),
        ({"EMAIL_PORT": str(unused_port())}, "email", "connection failed"),
        ({"TELEGRAM_BOT_TOKEN": WRONG_BOT_TOKEN}, "telegram", "bot_token"),
        ({"NOTIFYD_CHANNELS__SMS__AUTH_TOKEN": WRONG_TWILIO_TOKEN}, "sms", "auth_token"),
    ],
    ids=["smtp-wrong-password", "smtp-down", "telegram-wrong-token", "twilio-wrong-token"],
)
async def test_check_config_names_the_part_that_fails_and_exits_1(
    vendors_env: dict[str, str], tmp_path: Path, change: dict[str, str], part: str, reason: str
) -> None:
    result = await check_config(vendors_env | change, tmp_path)

    assert result.code == 1, result
    assert result.line(part).split()[1] == "failed"
    assert reason in result.line(part)
    others = {"config", "database", "email", "sms", "telegram"} - {part}
    assert all(result.line(other).split()[1] == "ok" for other in others), result.stdout
    # Neither the right secrets nor the wrong ones tried instead.
    wrong = (
        WRONG_SMTP_PASSWORD,
        WRONG_BOT_TOKEN,
        WRONG_BOT_TOKEN.split(":")[1],
        WRONG_TWILIO_TOKEN,
    )
    result.assert_no_secrets(*SECRETS, *wrong)


async def test_check_config_reports_a_database_that_is_down(
    vendors_env: dict[str, str], tmp_path: Path
) -> None:
    down = f"postgresql://notifyd:{DB_PASSWORD}@127.0.0.1:{unused_port()}/notifyd"

    result = await check_config(vendors_env | {"DATABASE_URL": down}, tmp_path)

    assert result.code == 1, result
    assert result.line("database").split()[1] == "failed"
    assert "postgresql://notifyd:***@127.0.0.1" in result.line("database")
    assert result.line("email").split()[1] == "ok"  # the other parts are still tried
    result.assert_no_secrets()


async def test_check_config_masks_a_password_given_as_a_query_parameter(
    vendors_env: dict[str, str], tmp_path: Path, database_url: str
) -> None:
    parts = urlsplit(database_url)
    query = f"{parts.query}&" if parts.query else ""
    up = urlunsplit(parts._replace(query=f"{query}password={DB_PASSWORD}"))
    down = f"postgresql://notifyd@127.0.0.1:{unused_port()}/notifyd?password={DB_PASSWORD}"

    working = await check_config(vendors_env | {"DATABASE_URL": up}, tmp_path)
    failing = await check_config(vendors_env | {"DATABASE_URL": down}, tmp_path)

    assert working.code == 0, working
    assert "password=***" in working.line("database")
    assert failing.code == 1, failing
    assert "?password=***" in failing.line("database")
    working.assert_no_secrets()
    failing.assert_no_secrets()


async def test_check_config_masks_an_smtp_auth_exchange_the_server_echoes(
    vendors_env: dict[str, str], tmp_path: Path
) -> None:
    async with FakeSmtpServer(
        username=SMTP_USER, password="another", auth_mechanisms=("PLAIN",), echo_auth=True
    ) as echoing:
        env = vendors_env | {"EMAIL_PORT": str(echoing.port)}
        result = await check_config(env, tmp_path)

    assert result.code == 1, result
    assert "Authentication failed for ***" in result.line("email")
    blob = base64.b64encode(f"\0{SMTP_USER}\0{SMTP_PASSWORD}".encode()).decode()
    result.assert_no_secrets(*SECRETS, blob, base64.b64encode(SMTP_PASSWORD.encode()).decode())


async def test_check_config_skips_what_is_not_configured(
    database_url: str, tmp_path: Path, smtp_server: FakeSmtpServer
) -> None:
    env = {
        "DATABASE_URL": database_url,
        "EMAIL_HOST": smtp_server.host,
        "EMAIL_PORT": str(smtp_server.port),
    }

    result = await check_config(env, tmp_path)

    assert result.code == 0, result
    assert "no username set" in result.line("email")
    assert result.line("sms").split()[1] == "skipped"
    assert "stub provider" in result.line("sms")
    assert result.line("telegram").split()[1] == "skipped"
    assert "channels.telegram.bot_token is not set" in result.line("telegram")
    assert "open to all (no api.tokens)" in result.line("config")


async def test_check_config_with_a_bad_setting_exits_2_naming_the_key(
    vendors_env: dict[str, str], tmp_path: Path
) -> None:
    result = await check_config(
        vendors_env | {"NOTIFYD_CHANNELS__SMS__FROM_NUMBER": "5551234"}, tmp_path
    )

    assert result.code == 2
    assert "channels.sms.from_number" in result.stderr
    assert result.stdout == ""
    result.assert_no_secrets()
