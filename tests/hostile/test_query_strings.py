"""Every route checks its query string: unknown, repeated or unreadable parameters get a 4xx.

The API and the probes answer with a problem naming the parameter, the dashboard with a
page; nothing is written. Paths are sent exactly as written (no client-side repair).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from aiohttp import ClientResponse
from yarl import URL

from tests.admin.support import origin, page
from tests.support import Daemon

# Every GET route of the daemon (the POST routes take no parameters either).
API_ROUTES = [
    "/api/notifications",
    "/api/notifications/1",
    "/api/users/1",
    "/api/users/1/notifications",
    "/api/openapi.json",
    "/healthz",
    "/readyz",
    "/metrics",
]
DASHBOARD_ROUTES = [
    "/admin/",
    "/admin/users",
    "/admin/users/1",
    "/admin/notifications/1",
    "/admin/login",
    "/admin/static/admin.css",
    "/admin/static/favicon.svg",
]
# What is wrong with each query, and the status the API gives it (the dashboard: 400).
BAD_QUERIES = {
    "unknown": ("colour=red", 422),
    "empty name": ("=x", 422),
    "stray percent": ("status=%zz", 400),
    "half escape": ("status=%4", 400),
    "invalid UTF-8": ("status=%ff%fe", 400),
    "overlong UTF-8": ("status=%c0%af", 400),
    "lone surrogate in UTF-8": ("status=%ed%a0%80", 400),
    "NUL": ("status=sent%00", 400),
    "line break": ("status=sent%0d%0a", 400),
    "huge name": ("x" * 6000 + "=1", 422),
}


async def get(daemon: Daemon, path: str) -> ClientResponse:
    url = URL(str(daemon.client.make_url("/")).rstrip("/") + path, encoded=True)
    return await daemon.client.session.get(url, allow_redirects=False)


async def ready_with_rows(daemon: Daemon, db: asyncpg.Connection) -> None:
    await daemon.app_ready()
    user_id = await db.fetchval(
        "INSERT INTO notifyd.users (phone) VALUES ('+15551234567') RETURNING id"
    )
    await db.execute(
        "INSERT INTO notifyd.notifications (id, user_id, message, channels, status, finished_at)"
        " VALUES (1, $1, 'm', '{sms}', 'sent', now())",
        user_id,
    )


@pytest.mark.parametrize("path", API_ROUTES)
async def test_the_api_and_probes_refuse_a_bad_query(
    daemon: Daemon, db: asyncpg.Connection, path: str
) -> None:
    await ready_with_rows(daemon, db)
    for bad, (query, status) in BAD_QUERIES.items():
        response = await get(daemon, f"{path}?{query}")
        assert response.status == status, (bad, await response.text())
        assert response.content_type == "application/problem+json", bad
        problem = await response.json()
        assert problem["status"] == status
        field = "(query)" if status == 400 else query.split("=")[0]
        assert problem["errors"][0]["field"] == field, bad


@pytest.mark.parametrize("path", API_ROUTES)
async def test_the_api_and_probes_answer_without_a_query(
    daemon: Daemon, db: asyncpg.Connection, path: str
) -> None:
    await ready_with_rows(daemon, db)
    assert (await get(daemon, path)).status == 200
    # A bare "?" or stray "&" is no parameter at all.
    assert (await get(daemon, f"{path}?&")).status == 200


@pytest.mark.parametrize("path", DASHBOARD_ROUTES)
async def test_the_dashboard_refuses_a_bad_query_with_a_page(
    daemon: Daemon, db: asyncpg.Connection, path: str
) -> None:
    await ready_with_rows(daemon, db)
    for bad, (query, _) in BAD_QUERIES.items():
        response = await get(daemon, f"{path}?{query}")
        assert response.status == 400, bad
        doc = await page(response, status=400)
        assert "query string" in doc.text(), bad


@pytest.mark.parametrize(
    "path",
    [
        "/admin/?status=sent&status=failed",
        "/admin/users?after=1&after=2",
        "/admin/login?next=/admin/&next=/admin/users",
    ],
)
async def test_the_dashboard_refuses_a_repeated_parameter(daemon: Daemon, path: str) -> None:
    doc = await page(await get(daemon, path), status=400)
    assert "give this parameter once" in doc.text()


@pytest.mark.parametrize(
    "path",
    [
        "/admin/?status=&channel=&user_id=",  # the filter form, nothing chosen
        "/admin/?status=sent&channel=sms&user_id=1&limit=5",
        "/admin/users?after=1",
        "/admin/users/1?saved=1",
        "/admin/login?next=/admin/users",
    ],
)
async def test_the_dashboard_still_takes_its_own_parameters(
    daemon: Daemon, db: asyncpg.Connection, path: str
) -> None:
    await ready_with_rows(daemon, db)
    response = await get(daemon, path)
    assert response.status in {200, 303}, await response.text()


async def test_a_post_with_a_query_is_refused_and_writes_nothing(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    await ready_with_rows(daemon, db)
    response = await daemon.client.post(
        "/admin/users/1?email=attacker@example.com",
        data={"phone": "+15550000000"},
        headers=origin(daemon),
        allow_redirects=False,
    )
    await page(response, status=400)
    assert await db.fetchval("SELECT phone FROM notifyd.users") == "+15551234567"


async def test_without_a_token_the_query_is_not_even_read(
    daemon_factory: Callable[..., Awaitable[Daemon]],
) -> None:
    daemon = await daemon_factory(api={"tokens": ["t0ken-for-the-ops-team-0123456789"]})
    # 401 first: a caller without a token learns nothing of which parameters exist.
    assert (await get(daemon, "/api/notifications?colour=red")).status == 401
    assert (await get(daemon, "/api/notifications?status=%ff")).status == 401
