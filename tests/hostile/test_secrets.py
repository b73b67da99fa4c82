"""No secret in logs, answers, the attempt table, or the settings' repr.

The real `notifyd serve` runs with every kind of secret set to a distinctive value (SMTP
password, Telegram bot token, Twilio auth token, API tokens, the database password) and
every vendor refusing it, so each channel fails with an authentication error; the SMTP
server quotes the AUTH PLAIN blob it got in its refusal, as some do. API calls come with
wrong and right tokens. Then every log line, every answer body, the dashboard's page of the
notification and every attempt row is searched for each secret, in the forms it could be
written in.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest

from notifyd.config import load_settings
from tests.acceptance.daemon_process import DaemonProcess, free_port
from tests.fakes.smtp import FakeSmtpServer
from tests.fakes.telegram import FakeTelegramApi
from tests.fakes.twilio import FakeTwilioApi
from tests.support import wait_until

pytestmark = pytest.mark.acceptance

SMTP_PASSWORD = "smtp-Secret-Pa55word-7f3a"
BOT_TOKEN = "987654:Bot-Secret-Token-9c2e41d7aa"
TWILIO_TOKEN = "twilio-secret-token-51b0c3e9"
API_TOKEN = "api-Secret-Token-0123456789abcdef"
DB_PASSWORD = "db-Secret-Pa55-3e8d0c"
SECRETS = (SMTP_PASSWORD, BOT_TOKEN, TWILIO_TOKEN, API_TOKEN, DB_PASSWORD)


def forms(secret: str) -> set[str]:
    """The ways a secret could show up: as is, URL-quoted, in base64 (alone, in basic-auth
    credentials, in an SMTP AUTH PLAIN blob)."""
    found = {secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode()}
    for user in ("notifyd", "AC" + "0" * 32):
        found.add(base64.b64encode(f"{user}:{secret}".encode()).decode())
        found.add(base64.b64encode(f"\0{user}\0{secret}".encode()).decode())
    found.add(secret.split(":")[-1])  # a bot token's secret half
    return found


@pytest.fixture
async def leaky_database(
    pg_server_url: str, database_url: str, needs_superuser: None
) -> AsyncIterator[str]:
    """The test's database, reached as a role with a password."""
    role = f"leaky_{uuid.uuid4().hex[:8]}"
    name = urlsplit(database_url).path.lstrip("/")
    admin = await asyncpg.connect(pg_server_url)
    await admin.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{DB_PASSWORD}'")
    parts = urlsplit(database_url)
    netloc = f"{role}:{DB_PASSWORD}@{parts.netloc.rpartition('@')[2]}"
    yield urlunsplit(parts._replace(netloc=netloc, path=f"/{name}"))
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
    )
    await admin.execute(f"DROP ROLE IF EXISTS {role}")
    await admin.close()


async def test_no_secret_leaks_anywhere(
    leaky_database: str, database_url: str, tmp_path: Path
) -> None:
    smtp = FakeSmtpServer(
        username="notifyd",
        password="the-real-password-is-different",
        auth_mechanisms=("PLAIN",),
        echo_auth=True,
    )
    telegram = FakeTelegramApi(token="111:the-real-token", chats={1001})
    twilio = FakeTwilioApi()
    await smtp.start()
    await telegram.start()
    await twilio.start()
    port = free_port()
    env = {
        "DATABASE_URL": leaky_database,
        "NOTIFYD_HTTP__PORT": str(port),
        "NOTIFYD_LOG__LEVEL": "debug",
        "NOTIFYD_API__TOKENS": f'["{API_TOKEN}"]',
        "NOTIFYD_DELIVERY__BACKOFF_INITIAL": "0.01",
        "NOTIFYD_DELIVERY__BACKOFF_MAX": "0.02",
        "EMAIL_HOST": smtp.host,
        "EMAIL_PORT": str(smtp.port),
        "EMAIL_HOST_USER": "notifyd",
        "EMAIL_HOST_PASSWORD": SMTP_PASSWORD,
        "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "TELEGRAM_API_URL": telegram.url,
        "NOTIFYD_CHANNELS__SMS__PROVIDER": "twilio",
        "NOTIFYD_CHANNELS__SMS__API_URL": twilio.url,
        "NOTIFYD_CHANNELS__SMS__ACCOUNT_SID": twilio.account_sid,
        "NOTIFYD_CHANNELS__SMS__AUTH_TOKEN": TWILIO_TOKEN,
        "NOTIFYD_CHANNELS__SMS__FROM_NUMBER": next(iter(sorted(twilio.numbers))),
    }
    daemon = DaemonProcess(["serve"], env, cwd=tmp_path)
    answers: list[str] = []
    try:
        await daemon.start()
        await daemon.wait_for_event("notifyd_started", deadline=60)
        base = f"http://127.0.0.1:{port}"
        good = {"Authorization": f"Bearer {API_TOKEN}"}
        # unsafe: keep the session cookie of an address given by IP (127.0.0.1).
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            for headers in ({}, {"Authorization": f"Bearer {API_TOKEN[:-1]}"}, good):
                async with http.get(f"{base}/api/users/1", headers=headers) as response:
                    answers.append(await response.text())
            async with http.post(
                f"{base}/api/users/",
                json={"email": "a@example.com", "phone": "+79001234567", "telegram_chat_id": 1001},
                headers=good,
            ) as response:
                user_id = (await response.json())["id"]
            async with http.post(
                f"{base}/api/notify/", json={"user_id": user_id, "message": "m"}, headers=good
            ) as response:
                answers.append(await response.text())
                notification_id = (await response.json())["id"]
            for path in ("/readyz", "/metrics", "/api/openapi.json"):
                async with http.get(f"{base}{path}", headers=good) as response:
                    answers.append(await response.text())

            async def failed() -> str | None:
                async with http.get(
                    f"{base}/api/notifications/{notification_id}", headers=good
                ) as response:
                    text = await response.text()
                    # The notification's own status: its failed attempts say "failed" too.
                    return text if json.loads(text)["status"] == "failed" else None

            answers.append(await wait_until(failed, deadline=60, what="every channel to fail"))
            async with http.post(
                f"{base}/admin/login",
                data={"token": API_TOKEN, "next": "/admin/"},
                headers={"Origin": base},
                allow_redirects=False,
            ) as response:
                assert response.status == 303, await response.text()
            async with http.get(f"{base}/admin/notifications/{notification_id}") as response:
                assert response.status == 200
                page = await response.text()
                assert "Authentication failed for ***" in page
                answers.append(page)
    finally:
        await daemon.stop()
        await smtp.stop()
        await telegram.stop()
        await twilio.stop()

    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT channel, error, provider_response::text AS response "
            "FROM notifyd.notification_attempts"
        )
    finally:
        await connection.close()
    assert {row["channel"] for row in rows} == {"email", "sms", "telegram"}
    logs = "\n".join(daemon.lines) + daemon.stderr.decode(errors="replace")
    places = {
        "logs": logs,
        "answers": "\n".join(answers),
        "attempts": "\n".join(f"{r['error']} {r['response']}" for r in rows),
    }
    leaks = [
        (place, secret)
        for place, text in places.items()
        for secret in SECRETS
        for form in forms(secret)
        if form in text
    ]
    print(
        f"SECRETS: {len(SECRETS)} secrets x {len(places)} places, {len(daemon.lines)} log lines,"
        f" {len(rows)} attempts, {len(answers)} answers, leaks={len(leaks)}"
    )
    assert leaks == []


def test_settings_repr_and_dump_hide_every_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://notifyd:{DB_PASSWORD}@db/notifyd")
    monkeypatch.setenv("EMAIL_HOST_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("NOTIFYD_API__TOKENS", f'["{API_TOKEN}"]')
    monkeypatch.setenv("NOTIFYD_CHANNELS__SMS__AUTH_TOKEN", TWILIO_TOKEN)
    settings = load_settings(None)
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        for secret in SECRETS:
            assert secret not in text
    assert settings.database.redacted_url() == "postgresql://notifyd:***@db/notifyd"
