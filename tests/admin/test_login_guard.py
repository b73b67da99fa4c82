"""The login form's limits, and the cookie's `Secure` flag behind a TLS-terminating proxy."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from typing import Any

import pytest
from aiohttp import ClientResponse
from structlog.testing import capture_logs

from notifyd.web.admin.session import COOKIE_NAME
from notifyd.web.admin.throttle import CLIENT_BURST, GLOBAL_BURST, LoginThrottle, client_key
from tests.admin.support import origin, page
from tests.support import Daemon

DaemonFactory = Callable[..., Awaitable[Daemon]]
TOKEN = "t0ken-for-the-ops-team-0123456789"


async def try_login(
    daemon: Daemon, token: str, headers: dict[str, str] | None = None
) -> ClientResponse:
    return await daemon.client.post(
        "/admin/login",
        data={"token": token, "next": "/admin/"},
        headers={**origin(daemon), **(headers or {})},
        allow_redirects=False,
    )


# Throttled logins


async def test_a_client_guessing_tokens_is_held_back_with_a_429(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = await daemon_factory(api={"tokens": [TOKEN]})
    for _ in range(int(CLIENT_BURST)):
        assert (await try_login(daemon, "a-wrong-guess")).status == 403
    with capture_logs() as logs:
        response = await try_login(daemon, TOKEN)  # even the right token, now
    doc = await page(response, status=429)
    assert int(response.headers["Retry-After"]) >= 1
    assert "Too many attempts" in doc.by_id("login-error").text()
    assert "Set-Cookie" not in response.headers
    assert [e["event"] for e in logs if e["event"].startswith("admin_login")] == [
        "admin_login_throttled"
    ]


async def test_other_clients_are_counted_apart_behind_a_trusted_proxy(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = await daemon_factory(api={"tokens": [TOKEN]}, http={"trusted_proxies": ["127.0.0.1"]})
    guesser = {"X-Forwarded-For": "203.0.113.7"}
    for _ in range(int(CLIENT_BURST)):
        await try_login(daemon, "a-wrong-guess", guesser)
    assert (await try_login(daemon, "a-wrong-guess", guesser)).status == 429
    operator = {"X-Forwarded-For": "198.51.100.20"}
    assert (await try_login(daemon, TOKEN, operator)).status == 303


async def test_many_addresses_together_meet_the_global_limit(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = await daemon_factory(api={"tokens": [TOKEN]}, http={"trusted_proxies": ["127.0.0.1"]})
    statuses: list[int] = []
    # Each address stays within its own limit; together they pass the global burst.
    for address in range(int(GLOBAL_BURST) + 10):
        response = await try_login(daemon, "guess", {"X-Forwarded-For": f"203.0.113.{address}"})
        statuses.append(response.status)
    assert 429 in statuses
    assert statuses[: int(GLOBAL_BURST)] == [403] * int(GLOBAL_BURST)


def test_one_ipv6_client_is_its_64() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2")
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key(None) == "unknown"


def test_the_throttle_stays_bounded_however_many_addresses_try() -> None:
    throttle = LoginThrottle(global_rate=1e9, global_burst=1e9)
    for n in range(30_000):
        assert throttle.retry_after(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}") == 0
    assert throttle.clients <= 10_000


# The cookie's Secure flag


def cookie_of(response: ClientResponse) -> Any:
    assert response.status == 303, response.status
    return SimpleCookie(response.headers["Set-Cookie"])[COOKIE_NAME]


@pytest.mark.parametrize(
    "headers",
    [{"X-Forwarded-Proto": "https"}, {"Forwarded": 'for="203.0.113.7";proto=https'}],
    ids=["x-forwarded-proto", "forwarded"],
)
async def test_behind_a_trusted_tls_proxy_the_cookie_is_secure(
    daemon_factory: DaemonFactory, headers: dict[str, str]
) -> None:
    daemon = await daemon_factory(
        api={"tokens": [TOKEN]}, http={"trusted_proxies": ["127.0.0.0/8"]}
    )
    with capture_logs() as logs:
        cookie = cookie_of(await try_login(daemon, TOKEN, headers))
    assert cookie["secure"] is True
    if "Forwarded" in headers:  # the client's own address, not the proxy's
        assert [e["remote"] for e in logs if e["event"] == "admin_login"] == ["203.0.113.7"]


async def test_an_untrusted_peer_cannot_claim_https(daemon_factory: DaemonFactory) -> None:
    daemon = await daemon_factory(api={"tokens": [TOKEN]})  # no trusted proxies
    with capture_logs() as logs:
        response = await try_login(
            daemon, TOKEN, {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.1"}
        )
        cookie = cookie_of(response)
    assert not cookie["secure"]
    assert [e["remote"] for e in logs if e["event"] == "admin_login"] == ["127.0.0.1"]


async def test_a_trusted_proxy_cannot_be_spoofed_through_its_own_header(
    daemon_factory: DaemonFactory,
) -> None:
    # The client wrote its own X-Forwarded-For; the proxy appended the real address.
    daemon = await daemon_factory(
        api={"tokens": [TOKEN]}, http={"trusted_proxies": ["127.0.0.1", "10.0.0.0/8"]}
    )
    with capture_logs() as logs:
        await try_login(daemon, TOKEN, {"X-Forwarded-For": "1.2.3.4, 198.51.100.9, 10.0.0.2"})
    assert [e["remote"] for e in logs if e["event"] == "admin_login"] == ["198.51.100.9"]


async def test_secure_cookies_always_sets_it_on_plain_http(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = await daemon_factory(api={"tokens": [TOKEN]}, http={"secure_cookies": "always"})
    assert cookie_of(await try_login(daemon, TOKEN))["secure"] is True
