"""DNS rebinding: a request naming a host notifyd does not answer to is refused, and changes
nothing, on the API and on the dashboard; the names clients use are served.

A rebinding page sends its own name in `Host` (and, for a form, a matching `Origin`):
that is all the requests below need to look like one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from notifyd.web.hosts import HostPolicy
from tests.admin.support import insert_user, page
from tests.support import Daemon

DaemonFactory = Callable[..., Awaitable[Daemon]]
EVIL = "rebind.attacker.example"


async def counts(db: asyncpg.Connection) -> tuple[Any, ...]:
    row = await db.fetchrow(
        "SELECT (SELECT count(*) FROM notifyd.notifications),"
        " (SELECT count(*) FROM notifyd.users),"
        " (SELECT array_agg(email ORDER BY id) FROM notifyd.users)"
    )
    assert row is not None
    return tuple(row)


def foreign(daemon: Daemon) -> dict[str, str]:
    port = daemon.client.port
    return {"Host": f"{EVIL}:{port}", "Origin": f"http://{EVIL}:{port}"}


async def assert_refused_problem(response: Any) -> None:
    assert response.status == 421, await response.text()
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    assert [error["field"] for error in problem["errors"]] == ["Host"]
    assert EVIL in problem["errors"][0]["message"]


# A loopback daemon without tokens (the default): only loopback names


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/users/{user}", None),
        ("GET", "/api/notifications", None),
        ("GET", "/api/openapi.json", None),
        ("POST", "/api/notify/", {"user_id": "{user}", "message": "hi"}),
        ("POST", "/api/users/", {"email": "attacker@example.com"}),
        ("PATCH", "/api/users/{user}", {"email": "attacker@example.com"}),
        ("GET", "/no/such/route", None),
    ],
)
async def test_the_api_refuses_a_foreign_host_and_changes_nothing(
    daemon: Daemon, db: asyncpg.Connection, method: str, path: str, body: dict[str, Any] | None
) -> None:
    user_id = await insert_user(db, email="ivan@example.com")
    before = await counts(db)
    if body is not None:
        body = {k: (user_id if v == "{user}" else v) for k, v in body.items()}
    response = await daemon.client.request(
        method, path.format(user=user_id), json=body, headers=foreign(daemon)
    )
    await assert_refused_problem(response)
    assert await counts(db) == before


async def test_a_rebound_dashboard_form_is_refused_and_changes_nothing(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    # The form a rebinding page would post: its own Host and Origin, which match.
    user_id = await insert_user(db, email="ivan@example.com")
    before = await counts(db)
    response = await daemon.client.post(
        f"/admin/users/{user_id}",
        data={"email": "attacker@example.com", "phone": "", "telegram_chat_id": ""},
        headers=foreign(daemon),
        allow_redirects=False,
    )
    doc = await page(response, status=421)
    assert "Host" in doc.text()
    assert await counts(db) == before


@pytest.mark.parametrize(
    "path", ["/admin/", "/admin/users", "/admin/login", "/admin/static/admin.css"]
)
async def test_dashboard_pages_are_refused_to_a_foreign_host(daemon: Daemon, path: str) -> None:
    doc = await page(await daemon.client.get(path, headers=foreign(daemon)), status=421)
    assert EVIL in doc.text()


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST:8000", "127.0.0.1", "127.0.0.1:1", "[::1]:80", "localhost."]
)
async def test_loopback_names_are_served_with_any_port(daemon: Daemon, host: str) -> None:
    response = await daemon.client.get("/api/notifications", headers={"Host": host})
    assert response.status == 200, await response.text()
    response = await daemon.client.get("/admin/", headers={"Host": host})
    assert response.status == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_probes_answer_any_host(daemon: Daemon, path: str) -> None:
    # A kubelet sends the pod's IP, a load balancer its own name: never turned away.
    await daemon.app_ready()
    response = await daemon.client.get(path, headers={"Host": f"{EVIL}:80"})
    assert response.status == 200


@pytest.mark.parametrize("host", ["", "a b", "evil.example:port", "[::1", "::1"])
async def test_a_malformed_host_is_a_400(daemon: Daemon, host: str) -> None:
    response = await daemon.client.get("/api/notifications", headers={"Host": host})
    assert response.status == 400
    problem = await response.json()
    assert problem["errors"][0]["field"] == "Host"


async def test_a_rebound_page_cannot_read_with_tokens_either(
    daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    token = "t0ken-for-the-ops-team-0123456789"
    daemon = await daemon_factory(api={"tokens": [token]})
    headers = {**foreign(daemon), "Authorization": f"Bearer {token}"}
    response = await daemon.client.get("/api/notifications", headers=headers)
    await assert_refused_problem(response)


# Listening beyond loopback: IP addresses and the listed names


async def test_beyond_loopback_ip_addresses_are_served_and_names_must_be_listed(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = await daemon_factory(
        http={"host": "0.0.0.0", "allowed_hosts": ["notifyd", ".example.org"]}
    )
    for host in (
        "10.1.2.3:8000",
        "[2001:db8::1]:8000",
        "notifyd:8000",
        "example.org",
        "a.b.example.org",
    ):
        response = await daemon.client.get("/api/notifications", headers={"Host": host})
        assert response.status == 200, (host, await response.text())
    for host in (f"{EVIL}:8000", "notifyd.evil.example", "example.org.evil.example"):
        response = await daemon.client.get("/api/notifications", headers={"Host": host})
        assert response.status == 421, host


async def test_a_star_serves_any_name(daemon_factory: DaemonFactory) -> None:
    daemon = await daemon_factory(http={"allowed_hosts": ["*"]})
    response = await daemon.client.get("/api/notifications", headers={"Host": EVIL})
    assert response.status == 200


@pytest.mark.parametrize(
    ("listen", "allowed", "host", "served"),
    [
        ("127.0.0.1", [], "localhost", True),
        ("127.0.0.1", [], "127.0.0.2", True),
        ("127.0.0.1", [], "10.0.0.1", False),
        ("::1", [], "[::1]", True),
        ("localhost", [], "evil.example", False),
        ("0.0.0.0", [], "10.0.0.1", True),
        ("0.0.0.0", [], "evil.example", False),
        ("0.0.0.0", ["Notify.Example.com"], "notify.example.COM.", True),
        ("0.0.0.0", [".example.com"], "example.com", True),
        ("0.0.0.0", [".example.com"], "badexample.com", False),
        ("127.0.0.1", ["10.0.0.1"], "10.0.0.1", True),
        ("127.0.0.1", ["[2001:db8::1]"], "[2001:DB8:0::1]", True),
    ],
)
def test_which_names_are_served(listen: str, allowed: list[str], host: str, served: bool) -> None:
    from notifyd.config import HttpSettings

    settings = HttpSettings(host=listen, allowed_hosts=tuple(allowed))
    assert HostPolicy(settings.host, settings.allowed_hosts).serves(host) is served


async def test_an_absolute_target_names_the_host_instead_of_the_header(daemon: Daemon) -> None:
    # RFC 9112: the authority of an absolute-form target wins over Host.
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.client.port)
    writer.write(
        b"GET http://rebind.attacker.example/api/notifications HTTP/1.1\r\n"
        b"Host: localhost\r\nConnection: close\r\n\r\n"
    )
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 421 ")
