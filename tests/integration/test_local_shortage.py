"""A provider that cannot open a socket for want of descriptors says it is this host's fault.

The process's descriptors are used up for real (the soft limit lowered to what is open,
the gaps below it filled), so the provider meets the operating system's own EMFILE. Its
error is a `LocalResourceError`: the vendor did not fail, and the attempt does not count.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import aiosmtplib
import pytest
from pydantic import SecretStr

from notifyd.channel_settings import EmailSettings, TelegramSettings
from notifyd.domain import OutgoingMessage, Recipient
from notifyd.errors import LocalResourceError, TransientProviderError
from notifyd.providers.base import local_resource_error
from notifyd.providers.email import EmailProvider
from notifyd.providers.telegram import TelegramProvider
from tests.fakes.smtp import FakeSmtpServer
from tests.fakes.telegram import FakeTelegramApi

TOKEN = "987654321:AAH-secret-token-Zx9yW8vU7tS6rQ5pO4n"
MESSAGE = OutgoingMessage(
    notification_id=1,
    recipient=Recipient(user_id=1, email="ivan@example.org", phone=None, telegram_chat_id="1001"),
    subject="s",
    body="b",
)


@contextmanager
def no_descriptors_left() -> Iterator[None]:
    """Until the block ends, opening any file or socket fails with EMFILE."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(name) for name in os.listdir("/proc/self/fd"))
    filler: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, hard))
    try:
        while True:
            try:
                filler.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                break
        yield
    finally:
        for descriptor in filler:
            os.close(descriptor)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


pytestmark = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="counts descriptors through /proc"
)


async def test_telegram_without_descriptors_is_a_local_shortage() -> None:
    async with FakeTelegramApi(TOKEN, chats={1001}) as api:
        provider = TelegramProvider(
            TelegramSettings(bot_token=SecretStr(TOKEN), api_url=api.url, timeout=5)
        )
        await provider.start()
        try:
            with no_descriptors_left(), pytest.raises(LocalResourceError) as caught:
                await provider.send(MESSAGE)
            assert "Too many open files" in caught.value.message
            assert TOKEN not in caught.value.message
            assert api.calls == []
            # With descriptors again, the same provider delivers.
            await provider.send(MESSAGE)
            assert len(api.sent) == 1
        finally:
            await provider.close()


async def test_smtp_without_descriptors_is_a_local_shortage(smtp_server: FakeSmtpServer) -> None:
    provider = EmailProvider(
        EmailSettings(host=smtp_server.host, port=smtp_server.port, pool_size=0, timeout=5)
    )
    await provider.start()
    try:
        with no_descriptors_left(), pytest.raises(LocalResourceError):
            await provider.send(MESSAGE)
        assert smtp_server.received == []
        await provider.send(MESSAGE)
        assert len(smtp_server.received) == 1
    finally:
        await provider.close()


@pytest.mark.parametrize(
    "error",
    [
        OSError(24, "Too many open files"),
        aiohttp.ClientConnectorError(
            aiohttp.client_reqrep.ConnectionKey("h", 443, True, True, None, None, None),
            OSError(23, "Too many open files in system"),
        ),
        aiosmtplib.SMTPConnectError("Error connecting to h on port 25"),
    ],
    ids=["oserror", "aiohttp", "aiosmtplib-chained"],
)
def test_shortages_are_found_where_the_libraries_keep_them(error: Exception) -> None:
    if isinstance(error, aiosmtplib.SMTPConnectError):
        error.__cause__ = OSError(24, "Too many open files")
    found = local_resource_error("Vendor", error)
    assert isinstance(found, LocalResourceError)
    assert isinstance(found, TransientProviderError)  # code that does not know it retries


def test_other_network_errors_are_not_a_shortage() -> None:
    assert local_resource_error("Vendor", ConnectionRefusedError(111, "refused")) is None
    assert local_resource_error("Vendor", TimeoutError()) is None
