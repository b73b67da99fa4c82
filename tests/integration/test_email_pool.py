"""The SMTP connection pool: reuse, limits, and reconnecting when the server drops one."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from notifyd.errors import TransientProviderError
from tests.fakes.smtp import FakeSmtpServer
from tests.integration.test_email_provider import _message, _provider

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest.fixture
async def server() -> AsyncIterator[FakeSmtpServer]:
    async with FakeSmtpServer() as fake:
        yield fake


async def test_sequential_messages_share_one_connection(server: FakeSmtpServer) -> None:
    provider = _provider(server)
    for _ in range(10):
        await provider.send(_message())
    assert len(await server.wait_for_messages(10)) == 10
    assert server.connection_count == 1
    assert provider.connections_opened == 1
    await provider.close()


async def test_concurrent_messages_open_more_and_keep_pool_size_idle(
    server: FakeSmtpServer,
) -> None:
    provider = _provider(server, pool_size=4)
    await asyncio.gather(*(provider.send(_message()) for _ in range(6)))
    assert provider.connections_opened == 6
    await asyncio.gather(*(provider.send(_message()) for _ in range(4)))
    assert provider.connections_opened == 6  # the four kept were reused
    assert len(await server.wait_for_messages(10)) == 10
    await provider.close()


async def test_a_connection_the_server_dropped_is_replaced_on_the_spot(
    server: FakeSmtpServer,
) -> None:
    provider = _provider(server)
    await provider.send(_message())
    server.drop_on_next_mail = 1  # the pooled connection dies as it is used
    answer = await provider.send(_message())
    assert answer["smtp_code"] == 250
    assert len(await server.wait_for_messages(2)) == 2
    assert provider.connections_opened == 2
    await provider.close()


async def test_a_fresh_connection_that_drops_is_a_transient_failure(
    server: FakeSmtpServer,
) -> None:
    provider = _provider(server, pool_size=0)
    server.drop_on_next_mail = 1
    with pytest.raises(TransientProviderError, match="connection"):
        await provider.send(_message())
    assert provider.connections_opened == 1


async def test_a_restarted_server_gets_a_new_connection(server: FakeSmtpServer) -> None:
    provider = _provider(server)
    await provider.send(_message())
    await server.stop()
    await server.start()
    await provider.send(_message())
    assert len(await server.wait_for_messages(2)) == 2
    assert provider.connections_opened == 2
    await provider.close()


async def test_each_connection_carries_at_most_the_configured_messages(
    server: FakeSmtpServer,
) -> None:
    provider = _provider(server, max_messages_per_connection=3)
    for _ in range(7):
        await provider.send(_message())
    assert provider.connections_opened == 3
    assert server.connection_count == 3
    await provider.close()


async def test_pool_size_zero_opens_a_connection_per_message(server: FakeSmtpServer) -> None:
    provider = _provider(server, pool_size=0)
    for _ in range(3):
        await provider.send(_message())
    assert provider.connections_opened == 3
    assert server.connection_count == 3


async def test_an_idle_connection_past_its_timeout_is_not_reused(server: FakeSmtpServer) -> None:
    provider = _provider(server, pool_idle_timeout=30)
    await provider.send(_message())
    [connection] = provider._idle
    connection.idle_since -= 31  # as if it had sat idle for 31 s
    await provider.send(_message())
    assert provider.connections_opened == 2
    assert not connection.smtp.is_connected
    await provider.close()


async def test_a_failed_connection_is_not_reused(server: FakeSmtpServer) -> None:
    provider = _provider(server)
    await provider.send(_message())
    server.mode = "tempfail"
    with pytest.raises(Exception, match="SMTP"):
        await provider.send(_message())
    server.mode = "accept"
    await provider.send(_message())
    assert provider.connections_opened == 2
    await provider.close()


async def test_close_says_goodbye_on_every_idle_connection(server: FakeSmtpServer) -> None:
    provider = _provider(server, pool_size=4)
    await asyncio.gather(*(provider.send(_message()) for _ in range(3)))
    connections = list(provider._idle)
    assert len(connections) == 3
    await provider.close()
    assert provider._idle == type(provider._idle)()
    assert not any(connection.smtp.is_connected for connection in connections)
