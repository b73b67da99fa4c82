"""E-mail addresses are parsed (email-validator), not pattern-matched: exactly one addr-spec.

`alice(bob@evil.example)` and `<script>alert(1)</script>@x.example` matched the old
`name@domain` pattern, were stored, and were sent to `RCPT TO:<alice>` and `<script>`.
Now the API, the CLI and the dashboard refuse them naming `email`; the database refuses
what is not one plain addr-spec; and an address another application wrote before that
(or one the database's looser check lets in) fails the e-mail channel once, for good,
before any SMTP command.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifyd.addresses import deliverable_address, is_plain_address, parse_mailbox
from notifyd.channel_settings import EmailSettings
from notifyd.config import load_settings
from notifyd.domain import OutgoingMessage, Recipient
from notifyd.errors import ConfigError, PermanentProviderError
from notifyd.providers.email import EmailProvider
from tests.admin.support import origin, page
from tests.fakes.smtp import FakeSmtpServer
from tests.support import Daemon

NOT_ONE_ADDRESS = [
    "alice(bob@evil.example)",
    "<script>alert(1)</script>@x.example",
    "alice@example.com(comment)",
    "Alice <alice@example.com>",
    "alice@example.com, bob@example.com",
    '"alice smith"@example.com',
    "alice@[192.0.2.1]",
    "alice..smith@example.com",
    ".alice@example.com",
    "alice@example..com",
    "alice@-example.com",
    "alice@example",
    "root@localhost",
    "alice@printer.local",
    "al\u200bice@example.com",
    "al\u202eice@example.com",
    "=?utf-8?q?=0D=0ABcc:_x@y.example?=<a@b.example>",
    "a" * 65 + "@example.com",
    "alice@" + "a" * 250 + ".com",
]
# Refused by the API, but plain enough for the database's check: written by SQL, they
# reach the provider, which refuses them.
PLAIN_BUT_UNDELIVERABLE = [
    "root@localhost",
    "alice@printer.local",
    "alice@example",
    "alice@-example.com",
    "a" * 65 + "@example.com",
]
GOOD = [
    "ivan@example.org",
    "Ivan.Petrov+news@Example.ORG",
    "o'brien@example.co.uk",
    "a+b=c?d{e}|f~g@example.com",
    "user@пример.рф",
    "иван@пример.рф",
    "x@xn--e1afmkfd.xn--p1ai",
]


# The API, the CLI's model, the dashboard


@pytest.mark.parametrize("email", NOT_ONE_ADDRESS)
async def test_the_api_refuses_what_is_not_one_address_naming_email(
    daemon: Daemon, db: asyncpg.Connection, email: str
) -> None:
    created = await daemon.client.post("/api/users/", json={"email": email})
    assert created.status == 422
    assert [e["field"] for e in (await created.json())["errors"]] == ["email"]

    user_id = await daemon.create_user(phone="+15551234567")
    changed = await daemon.client.patch(f"/api/users/{user_id}", json={"email": email})
    assert changed.status == 422
    assert [e["field"] for e in (await changed.json())["errors"]] == ["email"]
    assert await db.fetchval("SELECT count(*) FROM notifyd.users WHERE email IS NOT NULL") == 0


@pytest.mark.parametrize("email", GOOD)
async def test_the_api_takes_an_address_as_it_was_given(daemon: Daemon, email: str) -> None:
    response = await daemon.client.post("/api/users/", json={"email": email})
    assert response.status == 201, await response.text()
    assert (await response.json())["email"] == email


@pytest.mark.parametrize(
    "email", ["alice(bob@evil.example)", "<script>alert(1)</script>@x.example"]
)
async def test_the_dashboard_form_names_the_email_field(
    daemon: Daemon, db: asyncpg.Connection, email: str
) -> None:
    await daemon.app_ready()
    user_id = await daemon.create_user(email="ivan@example.org")

    response = await daemon.client.post(
        f"/admin/users/{user_id}", data={"email": email}, headers=origin(daemon)
    )

    doc = await page(response, status=422)
    assert doc.by_id("error-email").text().startswith("must be an e-mail address")
    assert await db.fetchval("SELECT email FROM notifyd.users") == "ivan@example.org"


# The database


@pytest.mark.parametrize("email", [e for e in NOT_ONE_ADDRESS if e not in PLAIN_BUT_UNDELIVERABLE])
async def test_the_database_refuses_what_is_not_one_plain_address(
    db: asyncpg.Connection, email: str
) -> None:
    with pytest.raises(asyncpg.CheckViolationError) as caught:
        await db.execute("INSERT INTO notifyd.users (email) VALUES ($1)", email)
    assert caught.value.constraint_name == "users_email_format"
    assert not is_plain_address(email)


CORPUS = [*NOT_ONE_ADDRESS, *GOOD, "a@b", "a.b@c.d", "a@b.", "@b", "a@", "a@@b", "a\\b@c", "a b@c"]


async def test_the_database_and_notifyd_agree_on_plain_addresses(db: asyncpg.Connection) -> None:
    in_sql = await db.fetchval(
        "SELECT array_agg(notifyd.is_plain_address(a) ORDER BY i)"
        " FROM unnest($1::text[]) WITH ORDINALITY AS t(a, i)",
        CORPUS,
    )
    assert dict(zip(CORPUS, in_sql, strict=True)) == {a: is_plain_address(a) for a in CORPUS}


async def test_the_database_and_notifyd_agree_on_every_character_in_an_address(
    db: asyncpg.Connection,
) -> None:
    addresses = [
        f"a{chr(code)}b@example.com" for code in range(1, 0x110000) if not 0xD800 <= code <= 0xDFFF
    ]
    in_sql = await db.fetchval(
        "SELECT array_agg(notifyd.is_plain_address(a) ORDER BY i)"
        " FROM unnest($1::text[]) WITH ORDINALITY AS t(a, i)",
        addresses,
    )
    differ = [
        f"U+{ord(a[1]):04X}"
        for a, plain in zip(addresses, in_sql, strict=True)
        if plain != is_plain_address(a)
    ]
    assert differ == []
    assert not is_plain_address("a\u200bb@example.com")


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    address=st.emails()
    | st.builds(
        "{}@{}.{}".format,
        st.text(min_size=1, max_size=20),
        st.text(min_size=1, max_size=20),
        st.sampled_from(["com", "рф", "org"]),
    )
)
async def test_every_address_notifyd_delivers_to_the_database_stores(
    db: asyncpg.Connection, address: str
) -> None:
    try:
        deliverable_address(address)
    except ValueError:
        return
    assert is_plain_address(address)
    assert await db.fetchval("SELECT notifyd.is_plain_address($1)", address) is True


# The provider, for what another application wrote


def _provider(server: FakeSmtpServer, **overrides: Any) -> EmailProvider:
    settings = {"host": server.host, "port": server.port, "from_address": "n@example.com"}
    return EmailProvider(EmailSettings(**{**settings, **overrides}))


def _message(email: str) -> OutgoingMessage:
    recipient = Recipient(user_id=1, email=email, phone=None, telegram_chat_id=None)
    return OutgoingMessage(notification_id=1, recipient=recipient, subject="s", body="b")


@pytest.fixture
async def server() -> AsyncIterator[FakeSmtpServer]:
    async with FakeSmtpServer() as fake:
        yield fake


@pytest.mark.parametrize("email", NOT_ONE_ADDRESS)
async def test_the_provider_refuses_an_unusable_address_before_any_smtp_command(
    server: FakeSmtpServer, email: str
) -> None:
    with pytest.raises(PermanentProviderError, match="email address cannot be used"):
        await _provider(server).send(_message(email))
    assert server.connection_count == 0


async def test_an_internationalised_domain_travels_in_its_ascii_form(
    server: FakeSmtpServer,
) -> None:
    await _provider(server).send(_message("user@пример.рф"))

    [mail] = server.received
    assert mail.rcpt_tos == ["user@xn--e1afmkfd.xn--p1ai"]
    assert mail.message["To"] == "user@xn--e1afmkfd.xn--p1ai"


async def test_an_address_written_by_sql_fails_email_once_and_falls_back(
    daemon: Daemon, db: asyncpg.Connection, smtp_server: FakeSmtpServer
) -> None:
    # As stored before the database's check became stricter (or with it dropped).
    await db.execute("ALTER TABLE notifyd.users DROP CONSTRAINT users_email_format")
    user_id = await db.fetchval(
        "INSERT INTO notifyd.users (email, phone) VALUES ('alice(bob@evil.example)',"
        " '+15551234567') RETURNING id"
    )
    notification_id = await db.fetchval(
        "SELECT notifyd.enqueue($1, 'hello', '', ARRAY['email', 'sms'])", user_id
    )

    finished = await daemon.wait_finished(notification_id)

    assert finished["status"] == "sent"
    email, sms = finished["attempts"]
    assert (email["channel"], email["status"], email["attempt"]) == ("email", "failed", 1)
    assert email["error"].startswith("the user's email address cannot be used")
    assert (sms["channel"], sms["status"]) == ("sms", "success")
    transient = await db.fetchval(
        "SELECT transient FROM notifyd.notification_attempts WHERE channel = 'email'"
    )
    assert transient is False
    assert smtp_server.connection_count == 0


# The sender


@pytest.mark.parametrize(
    "from_address",
    [
        "alice(bob@evil.example)",
        "<script>alert(1)</script>@x.example",
        "a@example.com, b@example.com",
        "Name <a@example.com> trailing",
        "Line\x0bBreak <a@example.com>",
        "nobody",
    ],
)
def test_the_configuration_refuses_a_sender_that_is_not_one_address(
    from_address: str,
) -> None:
    with pytest.raises(ConfigError, match=r"channels\.email\.from_address"):
        load_settings(None, {"DEFAULT_FROM_EMAIL": from_address})


@pytest.mark.parametrize(
    ("from_address", "parsed"),
    [
        ("webmaster@localhost", ("", "webmaster@localhost")),
        ("Сервис уведомлений <notifyd@example.com>", ("Сервис уведомлений", "notifyd@example.com")),
        ('"Billing, Inc." <billing@example.com>', ("Billing, Inc.", "billing@example.com")),
        ('"Say \\"hi\\"" <hi@example.com>', ('Say "hi"', "hi@example.com")),
    ],
)
def test_the_configuration_takes_a_sender_with_or_without_a_name(
    from_address: str, parsed: tuple[str, str]
) -> None:
    settings = load_settings(None, {"DEFAULT_FROM_EMAIL": from_address})
    assert parse_mailbox(settings.channels.email.from_address) == parsed


async def test_a_user_stored_with_an_unfit_address_must_fix_it_to_change_anything(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    # As the migration leaves such a user: the check added NOT VALID over the old row.
    await db.execute("ALTER TABLE notifyd.users DROP CONSTRAINT users_email_format")
    user_id = await db.fetchval(
        "INSERT INTO notifyd.users (email) VALUES ('alice(bob@evil.example)') RETURNING id"
    )
    await db.execute(
        "ALTER TABLE notifyd.users ADD CONSTRAINT users_email_format"
        " CHECK (email IS NULL OR notifyd.is_plain_address(email)) NOT VALID"
    )

    shown = await daemon.client.get(f"/api/users/{user_id}")
    assert (await shown.json())["email"] == "alice(bob@evil.example)"
    phone_only = await daemon.client.patch(f"/api/users/{user_id}", json={"phone": "+15551234567"})
    assert phone_only.status == 422
    assert [e["field"] for e in (await phone_only.json())["errors"]] == ["email"]
    fixed = await daemon.client.patch(
        f"/api/users/{user_id}", json={"email": "alice@example.com", "phone": "+15551234567"}
    )
    assert fixed.status == 200, await fixed.text()
