"""EmailProvider against a real SMTP server (aiosmtpd) on the test's event loop."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr

from notifyd.channel_settings import EmailSettings
from notifyd.domain import OutgoingMessage, Recipient
from notifyd.errors import PermanentProviderError, TransientProviderError
from notifyd.providers.email import EmailProvider
from tests.fakes.leaks import error_texts
from tests.fakes.smtp import FakeSmtpServer, unused_port
from tests.support import wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

TO = "ivan@example.org"
FROM = "notifyd@example.com"
USERNAME = "notifyd"
PASSWORD = "s3cret-Pa55word-xyz"
SUBJECT = "Заказ №42 подтверждён ✓"
BODY = (
    "Здравствуйте, Иван!\n"
    "Ваш заказ подтверждён.\n"
    ".a line that starts with a dot survives dot-stuffing\n"
    "From the start of a line, too.\n" + "Очень длинная строка " * 10
)


def _message(
    *, email: str | None = TO, subject: str = SUBJECT, body: str = BODY
) -> OutgoingMessage:
    recipient = Recipient(user_id=7, email=email, phone=None, telegram_chat_id=None)
    return OutgoingMessage(notification_id=42, recipient=recipient, subject=subject, body=body)


def _provider(server: FakeSmtpServer | None = None, **overrides: Any) -> EmailProvider:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port if server else unused_port(),
        "from_address": FROM,
        "timeout": 5.0,
    }
    values.update(overrides)
    return EmailProvider(EmailSettings(**values))


@pytest.fixture
async def server() -> AsyncIterator[FakeSmtpServer]:
    async with FakeSmtpServer() as fake:
        yield fake


@pytest.fixture
async def auth_server() -> AsyncIterator[FakeSmtpServer]:
    async with FakeSmtpServer(username=USERNAME, password=PASSWORD) as fake:
        yield fake


async def test_delivers_cyrillic_subject_and_body_intact(server: FakeSmtpServer) -> None:
    answer = await _provider(server).send(_message())

    [received] = await server.wait_for_messages(1)
    assert received["Subject"] == SUBJECT
    assert received.get_content().rstrip("\n") == BODY
    assert received.get_content_type() == "text/plain"
    assert received.get_content_charset() == "utf-8"
    assert received["From"] == FROM
    assert received["To"] == TO
    assert received["Message-ID"] == answer["message_id"]
    sent_at = parsedate_to_datetime(received["Date"])
    assert abs(datetime.now(UTC) - sent_at) < timedelta(minutes=1)
    assert answer["smtp_code"] == 250
    assert "queued" in answer["smtp_message"]
    # Non-ASCII headers travel as RFC 2047 encoded words, never as raw 8-bit bytes.
    header_block = server.received[0].raw.split(b"\r\n\r\n", 1)[0]
    assert header_block.isascii()


async def test_envelope_uses_the_bare_addresses(server: FakeSmtpServer) -> None:
    provider = _provider(server, from_address="Сервис уведомлений <notifyd@example.com>")

    await provider.send(_message())

    await server.wait_for_messages(1)
    assert server.received[0].mail_from == FROM
    assert server.received[0].rcpt_tos == [TO]
    assert server.messages[0]["From"].addresses[0].display_name == "Сервис уведомлений"


async def test_every_attempt_at_one_notification_has_the_same_message_id(
    server: FakeSmtpServer,
) -> None:
    provider = _provider(server)

    first = await provider.send(_message())
    again = await provider.send(_message())  # a repeated attempt (say, after a crash)
    other = await provider.send(
        OutgoingMessage(
            notification_id=43,
            recipient=_message().recipient,
            subject=SUBJECT,
            body=BODY,
        )
    )

    # Mail systems drop a copy whose Message-ID they have seen: a repeat reaches no one.
    assert first["message_id"] == again["message_id"]
    assert first["message_id"] != other["message_id"]
    assert first["message_id"].startswith("<notifyd.42.")
    assert first["message_id"].endswith("@example.com>")
    assert len(await server.wait_for_messages(3)) == 3


async def test_logs_in_with_username_and_password(auth_server: FakeSmtpServer) -> None:
    provider = _provider(auth_server, username=USERNAME, password=SecretStr(PASSWORD))

    await provider.send(_message())

    assert len(await auth_server.wait_for_messages(1)) == 1
    assert auth_server.logins == [USERNAME]


async def test_no_login_without_a_username(auth_server: FakeSmtpServer) -> None:
    # A password alone (left over in the config) must not trigger AUTH.
    provider = _provider(auth_server, password=SecretStr(PASSWORD))

    with pytest.raises(PermanentProviderError) as caught:
        await provider.send(_message())

    assert caught.value.response == {
        "smtp_code": 530,
        "smtp_message": "5.7.0 Authentication required",
    }
    assert auth_server.logins == []
    assert auth_server.failed_logins == 0


async def test_wrong_password_is_permanent_and_not_leaked(auth_server: FakeSmtpServer) -> None:
    wrong = "wrong-Pa55word-abc"
    provider = _provider(auth_server, username=USERNAME, password=SecretStr(wrong))

    with pytest.raises(PermanentProviderError) as caught:
        await provider.send(_message())

    assert caught.value.response is not None
    assert caught.value.response["smtp_code"] == 535
    assert auth_server.failed_logins >= 1  # aiosmtplib tries each AUTH mechanism
    assert auth_server.received == []
    assert wrong not in error_texts(caught.value)


async def test_password_echoed_by_the_server_is_scrubbed(auth_server: FakeSmtpServer) -> None:
    # A broken server may quote what it got; the password must still not reach the error.
    provider = _provider(auth_server, username=USERNAME, password=SecretStr(PASSWORD))
    auth_server.mode = "reject"
    auth_server.fail_at = "data"
    auth_server.reject_reply = f"550 5.7.1 refused for password {PASSWORD}"

    with pytest.raises(PermanentProviderError) as caught:
        await provider.send(_message())

    texts = error_texts(caught.value)
    assert PASSWORD not in texts
    assert "refused for password ***" in texts
    assert caught.value.__cause__ is None


async def test_password_never_in_transient_errors(auth_server: FakeSmtpServer) -> None:
    provider = _provider(auth_server, username=USERNAME, password=SecretStr(PASSWORD))
    auth_server.mode = "tempfail"

    with pytest.raises(TransientProviderError) as caught:
        await provider.send(_message())

    assert auth_server.logins == [USERNAME]
    assert PASSWORD not in error_texts(caught.value)


@pytest.mark.parametrize("stage", ["rcpt", "data"])
async def test_tempfail_is_transient_with_the_smtp_code(server: FakeSmtpServer, stage: str) -> None:
    server.mode = "tempfail"
    server.fail_at = stage  # type: ignore[assignment]

    with pytest.raises(TransientProviderError) as caught:
        await _provider(server).send(_message())

    assert caught.value.response == {
        "smtp_code": 451,
        "smtp_message": "4.3.0 Temporary failure, try again later",
    }
    assert "451" in str(caught.value)
    assert server.received == []


@pytest.mark.parametrize("stage", ["rcpt", "data"])
async def test_reject_is_permanent_with_the_smtp_code(server: FakeSmtpServer, stage: str) -> None:
    server.mode = "reject"
    server.fail_at = stage  # type: ignore[assignment]

    with pytest.raises(PermanentProviderError) as caught:
        await _provider(server).send(_message())

    assert caught.value.response == {
        "smtp_code": 550,
        "smtp_message": "5.1.1 Mailbox does not exist",
    }
    assert server.received == []


async def test_retry_succeeds_once_the_server_recovers(server: FakeSmtpServer) -> None:
    provider = _provider(server)
    server.mode = "tempfail"
    with pytest.raises(TransientProviderError):
        await provider.send(_message())

    server.mode = "accept"
    answer = await provider.send(_message())

    assert answer["smtp_code"] == 250
    assert len(await server.wait_for_messages(1)) == 1


async def test_refused_connection_is_transient() -> None:
    with pytest.raises(TransientProviderError, match="connection"):
        await _provider(None).send(_message())


async def test_server_down_then_up_again(server: FakeSmtpServer) -> None:
    provider = _provider(server, connect_cooldown=0)
    await server.stop()

    with pytest.raises(TransientProviderError):
        await provider.send(_message())

    await server.start()
    await provider.send(_message())
    assert len(await server.wait_for_messages(1)) == 1


async def test_slow_server_beyond_the_timeout_is_transient(server: FakeSmtpServer) -> None:
    server.mode = "slow"
    server.delay = 30.0
    provider = _provider(server, timeout=0.3)

    # Ended by the attempt's own timeout: the outer deadline is a third of the server's 30 s.
    async with asyncio.timeout(10):
        with pytest.raises(TransientProviderError, match="timeout"):
            await provider.send(_message())

    assert server.received == []


async def test_slow_server_within_the_timeout_delivers(server: FakeSmtpServer) -> None:
    server.mode = "slow"
    server.delay = 0.05

    answer = await _provider(server, timeout=5.0).send(_message())

    assert answer["smtp_code"] == 250
    assert len(await server.wait_for_messages(1)) == 1


@pytest.mark.parametrize("email", [None, ""])
async def test_missing_email_is_permanent(server: FakeSmtpServer, email: str | None) -> None:
    with pytest.raises(PermanentProviderError, match="user has no email address"):
        await _provider(server).send(_message(email=email))

    assert server.connection_count == 0


@pytest.mark.parametrize(
    "subject",
    [
        "Hi\r\nBcc: victim@example.net",
        "Hi\nBcc: victim@example.net",
        "Hi\rX-Evil: 1",
        "Hi\u2028Bcc: victim@example.net",
        "Hi\x0bBcc: victim@example.net",
    ],
)
async def test_header_injection_in_subject_is_refused(server: FakeSmtpServer, subject: str) -> None:
    with pytest.raises(PermanentProviderError, match="line break"):
        await _provider(server).send(_message(subject=subject))

    assert server.connection_count == 0


@pytest.mark.parametrize(
    "email", ["ivan@example.org\r\nBcc: victim@example.net", "a@b.org, victim@example.net"]
)
async def test_injection_or_several_addresses_in_email_is_refused(
    server: FakeSmtpServer, email: str
) -> None:
    with pytest.raises(PermanentProviderError):
        await _provider(server).send(_message(email=email))

    assert server.received == []
    if "\n" in email:  # refused before connecting at all
        assert server.connection_count == 0


async def test_body_cannot_inject_headers(server: FakeSmtpServer) -> None:
    await _provider(server).send(_message(body="\r\nBcc: victim@example.net\r\n\r\nhi"))

    [received] = await server.wait_for_messages(1)
    assert received["Bcc"] is None
    assert server.received[0].rcpt_tos == [TO]


async def test_unconfigured_host_is_permanent(server: FakeSmtpServer) -> None:
    with pytest.raises(PermanentProviderError, match="email channel is not configured"):
        await _provider(server, host="").send(_message())

    assert server.connection_count == 0


async def test_starttls_is_required_when_configured(server: FakeSmtpServer) -> None:
    # The fake offers no STARTTLS: the provider must refuse to send in the clear.
    with pytest.raises(PermanentProviderError, match="STARTTLS"):
        await _provider(server, security="starttls").send(_message())

    assert server.received == []


async def test_no_starttls_attempt_when_security_is_none(server: FakeSmtpServer) -> None:
    await _provider(server, security="none").send(_message())

    assert len(await server.wait_for_messages(1)) == 1


async def test_implicit_tls_against_a_plain_server_is_transient(server: FakeSmtpServer) -> None:
    with pytest.raises(TransientProviderError):
        await _provider(server, security="tls", timeout=1.0).send(_message())

    assert server.received == []


async def test_after_a_refused_connection_attempts_fail_at_once_for_the_cooldown(
    server: FakeSmtpServer,
) -> None:
    provider = _provider(server, connect_cooldown=30)
    await server.stop()
    with pytest.raises(TransientProviderError, match="connection"):
        await provider.send(_message())
    await server.start()
    opened = server.connection_count

    with pytest.raises(TransientProviderError, match=r"not tried again for 30s"):
        await provider.send(_message())

    assert server.connection_count == opened  # it did not even knock
    assert server.received == []


async def test_after_the_cooldown_the_server_is_tried_again(server: FakeSmtpServer) -> None:
    provider = _provider(server, connect_cooldown=0.05)
    await server.stop()
    with pytest.raises(TransientProviderError):
        await provider.send(_message())
    await server.start()

    async def delivered() -> bool:
        try:
            await provider.send(_message())
        except TransientProviderError:
            return False
        return True

    await wait_until(delivered, deadline=5, what="a delivery once the cooldown is over")
    assert len(await server.wait_for_messages(1)) == 1
