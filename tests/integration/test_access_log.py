"""The access log: one `http_request` line per request, and never a secret in it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from notifyd.web.access_log import MAX_PATH_CHARS
from notifyd.web.app import create_app
from notifyd.web.auth import caller_id
from tests.support import make_settings

TOKEN = "access-LOG-token-5f4e3d2c1b0a"
WRONG = "wrong-TOKEN-9a8b7c6d5e4f3a2b"
QUERY_SECRET = "hunter2-QUERY-secret"
Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]


@pytest.fixture
async def client_for(database_url: str) -> AsyncIterator[ClientFactory]:
    """An API-only app (no delivery) with the given settings sections."""
    started: list[Client] = []

    async def start(**overrides: Any) -> Client:
        settings = make_settings(database_url, **overrides)
        client: Client = TestClient(TestServer(create_app(settings, database_url, deliver=False)))
        await client.start_server()
        started.append(client)
        return client

    yield start
    for client in started:
        await client.close()


def requests_logged(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in logs if line["event"] == "http_request"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_each_request_is_one_line_with_the_caller_and_without_secrets(
    client_for: ClientFactory,
) -> None:
    client = await client_for(api={"tokens": [TOKEN]}, log={"access": True})
    with capture_logs() as logs:
        created = await client.post(
            "/api/users/", json={"email": "ivan@example.com"}, headers=bearer(TOKEN)
        )
        listed = await client.get(
            f"/api/notifications?status=sent&password={QUERY_SECRET}&limit=5",
            headers=bearer(TOKEN),
        )
        refused = await client.get("/api/users/1", headers=bearer(WRONG))
        probe = await client.get("/healthz")
    assert (created.status, listed.status, refused.status, probe.status) == (201, 422, 401, 200)

    lines = requests_logged(logs)
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("POST", "/api/users/", 201),
        ("GET", "/api/notifications", 422),
        ("GET", "/api/users/1", 401),
        ("GET", "/healthz", 200),
    ]
    # Query parameters by name only; the value that could be a secret is not there.
    assert lines[1]["query"] == ["status", "password", "limit"]
    assert lines[0]["query"] == []
    # The token's id where a token was accepted; nothing where none was (or a wrong one).
    assert [line["caller"] for line in lines] == [caller_id(TOKEN.encode())] * 2 + [None, None]
    assert all(line["duration_ms"] >= 0 for line in lines)
    assert all(line["log_level"] == "info" for line in lines)
    everything = repr(logs)
    for secret in (TOKEN, WRONG, QUERY_SECRET):
        assert secret not in everything


async def test_a_token_sent_as_a_query_parameter_is_not_logged(
    client_for: ClientFactory,
) -> None:
    client = await client_for(api={"tokens": [TOKEN]}, log={"access": True})
    with capture_logs() as logs:
        await client.get(f"/api/users/1?{TOKEN}", headers=bearer(TOKEN))
        await client.get(f"/api/users/1?token={TOKEN}&{TOKEN}=1", headers=bearer(TOKEN))
    first, second = requests_logged(logs)
    assert first["query"] == ["?"]
    assert second["query"] == ["token", "?"]
    assert TOKEN not in repr(logs)


async def test_the_dashboard_login_and_its_pages_are_logged_without_the_cookie(
    client_for: ClientFactory,
) -> None:
    client = await client_for(api={"tokens": [TOKEN]}, log={"access": True})
    origin = {"Origin": f"http://{client.host}:{client.port}"}
    with capture_logs() as logs:
        login = await client.post(
            "/admin/login",
            data={"token": TOKEN, "next": "/admin/users"},
            headers=origin,
            allow_redirects=False,
        )
        cookie = login.cookies["notifyd_admin"].value
        page = await client.get("/admin/users")
        cross_site = await client.post("/admin/logout", allow_redirects=False)
    assert (login.status, page.status, cross_site.status) == (303, 200, 403)

    lines = requests_logged(logs)
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("POST", "/admin/login", 303),
        ("GET", "/admin/users", 200),
        ("POST", "/admin/logout", 403),
    ]
    # The page was served to the operator logged in with the token: its id, not the token.
    assert lines[1]["caller"] == caller_id(TOKEN.encode())
    everything = repr(logs)
    assert TOKEN not in everything
    assert cookie not in everything


async def test_an_unknown_path_and_a_long_one_are_logged_as_404(
    client_for: ClientFactory,
) -> None:
    client = await client_for(log={"access": True})
    long_path = "/" + "x" * (MAX_PATH_CHARS * 3)
    with capture_logs() as logs:
        await client.get("/nope")
        await client.get(long_path)
    first, second = requests_logged(logs)
    assert (first["path"], first["status"]) == ("/nope", 404)
    assert second["status"] == 404
    assert len(second["path"]) == MAX_PATH_CHARS + 1  # cut, with an ellipsis
    assert second["path"].endswith("…")


async def test_the_open_api_logs_an_empty_caller(client_for: ClientFactory) -> None:
    client = await client_for(log={"access": True})
    with capture_logs() as logs:
        await client.post("/api/users/", json={"phone": "+15551234567"})
    (line,) = requests_logged(logs)
    assert line["caller"] == ""  # no tokens configured: every caller is the same one


@pytest.mark.parametrize(
    ("log", "logged"),
    [({}, False), ({"access": False}, False), ({"level": "debug"}, True)],
    ids=["default", "off", "debug"],
)
async def test_the_access_log_is_off_by_default_and_on_at_debug(
    client_for: ClientFactory, log: dict[str, Any], logged: bool
) -> None:
    client = await client_for(log=log)
    with capture_logs() as logs:
        response = await client.get("/healthz")
    assert response.status == 200
    assert bool(requests_logged(logs)) is logged
