"""Who may use the dashboard: the login form, the signed cookie, cross-site posts refused."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
from structlog.testing import capture_logs

from notifyd.web.admin.session import COOKIE_NAME, Sessions
from notifyd.web.auth import caller_id
from tests.admin.support import insert_user, login, origin, page
from tests.support import Daemon

DaemonFactory = Callable[..., Awaitable[Daemon]]
TOKEN = "t0ken-for-the-ops-team-0123456789"
OTHER = "t0ken-for-the-crm-9876543210"


@pytest.fixture
async def secured(daemon_factory: DaemonFactory) -> Daemon:
    return await daemon_factory(api={"tokens": [TOKEN, OTHER]})


def session_cookie(daemon: Daemon) -> str | None:
    for cookie in daemon.client.session.cookie_jar:
        if cookie.key == COOKIE_NAME:
            return cookie.value
    return None


def admin_events(logs: list[dict[str, Any]]) -> list[str]:
    """The dashboard's log events (the daemon logs its own meanwhile)."""
    return [entry["event"] for entry in logs if entry["event"].startswith("admin_")]


def use_cookie(daemon: Daemon, value: str) -> None:
    daemon.client.session.cookie_jar.clear()
    daemon.client.session.cookie_jar.update_cookies(
        {COOKIE_NAME: value}, daemon.client.make_url("/admin/")
    )


@pytest.mark.parametrize(
    "path",
    ["/admin/", "/admin/users", "/admin/users/1", "/admin/notifications/1", "/admin/?status=sent"],
)
async def test_pages_redirect_to_the_login_form_without_a_cookie(
    secured: Daemon, path: str
) -> None:
    response = await secured.client.get(path, allow_redirects=False)
    assert response.status == 303
    location = urlsplit(response.headers["Location"])
    assert location.path == "/admin/login"
    assert parse_qs(location.query) == {"next": [path]}


async def test_login_form_shows_no_data(secured: Daemon, db: asyncpg.Connection) -> None:
    await insert_user(db, email="secret-person@example.com")
    doc = await page(await secured.client.get("/admin/login?next=/admin/users"))
    form = doc.by_id("login-form")
    assert form.attrs["method"] == "post"
    inputs = {node.attrs["name"]: node.attrs for node in form.find_all("input")}
    assert inputs["token"]["type"] == "password"
    assert inputs["next"]["value"] == "/admin/users"
    assert not doc.has_id("counts")
    assert not doc.by_class("sections")
    assert "secret-person" not in doc.text()


async def test_a_post_without_a_cookie_is_sent_to_log_in_and_writes_nothing(
    secured: Daemon, db: asyncpg.Connection
) -> None:
    user_id = await insert_user(db, email="ivan@example.com")
    response = await secured.client.post(
        f"/admin/users/{user_id}",
        data={"email": "mallory@example.com"},
        headers=origin(secured),
        allow_redirects=False,
    )
    assert response.status == 303
    assert response.headers["Location"] == "/admin/login"
    assert await db.fetchval("SELECT email FROM notifyd.users") == "ivan@example.com"


@pytest.mark.parametrize(
    "token",
    ["", "   ", "not-a-token", TOKEN[:-1], TOKEN + "x", f"Bearer {TOKEN}", TOKEN.upper()],
    ids=["empty", "blank", "wrong", "shorter", "longer", "with-scheme", "other-case"],
)
async def test_a_wrong_token_is_refused(secured: Daemon, token: str) -> None:
    with capture_logs() as logs:
        response = await secured.client.post(
            "/admin/login",
            data={"token": token, "next": "/admin/"},
            headers=origin(secured),
            allow_redirects=False,
        )
    html = await response.text()
    doc = await page(response, status=403)
    assert "not a valid API token" in doc.by_id("login-error").text()
    assert "Set-Cookie" not in response.headers
    assert session_cookie(secured) is None
    assert "value" not in doc.by_id("token").attrs  # what was typed is not sent back
    if token.strip():
        assert token not in html
    assert admin_events(logs) == ["admin_login_refused"]


async def test_the_right_token_logs_in_with_a_strict_cookie(secured: Daemon) -> None:
    with capture_logs() as logs:
        response = await secured.client.post(
            "/admin/login",
            data={"token": OTHER, "next": "/admin/users"},
            headers=origin(secured),
            allow_redirects=False,
        )
    assert response.status == 303
    assert response.headers["Location"] == "/admin/users"
    cookie = SimpleCookie(response.headers["Set-Cookie"])[COOKIE_NAME]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/admin"
    assert not cookie["secure"]  # plain http here; https sets it
    assert int(cookie["max-age"]) == 8 * 3600
    caller = caller_id(OTHER.encode())
    assert cookie.value.startswith(f"{caller}.")
    assert OTHER not in cookie.value
    assert [entry["caller"] for entry in logs if entry["event"] == "admin_login"] == [caller]
    assert all(OTHER not in str(entry) for entry in logs)

    doc = await page(await secured.client.get("/admin/users"))
    assert doc.has_id("counts")
    assert any(form.attrs.get("action") == "/admin/logout" for form in doc.find_all("form"))
    assert OTHER not in await (await secured.client.get("/admin/")).text()


async def test_logging_in_leads_back_to_the_page_asked_for(secured: Daemon) -> None:
    response = await secured.client.get("/admin/users?after=3")
    assert response.url.path == "/admin/login"
    doc = await page(response)
    target = doc.by_id("login-form").find_all("input")[0].attrs["value"]
    assert target == "/admin/users?after=3"
    response = await secured.client.post(
        "/admin/login", data={"token": TOKEN, "next": target}, headers=origin(secured)
    )
    assert response.status == 200
    assert response.url.path_qs == "/admin/users?after=3"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/admin/",
        "/admin//evil.example",
        "/\\evil.example",
        "/api/users/1",
        "/admin/login",
        "javascript:alert(1)",
    ],
)
async def test_after_login_the_redirect_stays_on_the_dashboard(
    secured: Daemon, target: str
) -> None:
    response = await secured.client.post(
        "/admin/login",
        data={"token": TOKEN, "next": target},
        headers=origin(secured),
        allow_redirects=False,
    )
    assert response.status == 303
    assert response.headers["Location"] == "/admin/"


async def test_the_login_form_with_a_valid_cookie_goes_on(secured: Daemon) -> None:
    await login(secured, TOKEN)
    response = await secured.client.get("/admin/login?next=/admin/users", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/admin/users"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda value: value[:-1] + ("0" if value[-1] != "0" else "1"),  # signature
        lambda value: "0123456789abcdef" + value[16:],  # another caller
        lambda value: value.replace(".", ".9", 1),  # a later expiry
        lambda value: value.rsplit(".", 1)[0],  # no signature
        lambda value: "garbage",
        lambda value: "",
        lambda value: value + "é",
    ],
    ids=["signature", "caller", "expiry", "unsigned", "garbage", "empty", "non-ascii"],
)
async def test_a_forged_cookie_is_refused(secured: Daemon, tamper: Callable[[str], str]) -> None:
    await login(secured, TOKEN)
    value = session_cookie(secured)
    assert value is not None
    use_cookie(secured, tamper(value))
    response = await secured.client.get("/admin/", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].startswith("/admin/login")


async def test_an_expired_cookie_is_refused_and_cleared(secured: Daemon) -> None:
    sessions = Sessions([TOKEN, OTHER])
    caller = caller_id(TOKEN.encode())
    use_cookie(secured, sessions.issue(caller, time.time() - sessions.lifetime - 1))
    response = await secured.client.get("/admin/", allow_redirects=False)
    assert response.status == 303
    cleared = SimpleCookie(response.headers["Set-Cookie"])[COOKIE_NAME]
    assert cleared.value == ""
    assert cleared["max-age"] == "0"
    # A cookie made just now with the same key works: the key is all that matters.
    use_cookie(secured, sessions.issue(caller, time.time()))
    assert (await secured.client.get("/admin/", allow_redirects=False)).status == 200


async def test_a_cookie_works_on_another_instance_and_stops_when_tokens_change(
    daemon_factory: DaemonFactory,
) -> None:
    first = await daemon_factory(api={"tokens": [TOKEN, OTHER]})
    await login(first, TOKEN)
    value = session_cookie(first)
    assert value is not None

    # The same tokens (in another order): a restart, or a second instance.
    same = await daemon_factory(api={"tokens": [OTHER, TOKEN]})
    use_cookie(same, value)
    assert (await same.client.get("/admin/", allow_redirects=False)).status == 200

    # OTHER revoked: every cookie issued before is void, even one made with TOKEN.
    rotated = await daemon_factory(api={"tokens": [TOKEN]})
    use_cookie(rotated, value)
    response = await rotated.client.get("/admin/", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].startswith("/admin/login")


async def test_logout_clears_the_cookie(secured: Daemon) -> None:
    await login(secured, TOKEN)
    response = await secured.client.post(
        "/admin/logout", headers=origin(secured), allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == "/admin/login"
    cleared = SimpleCookie(response.headers["Set-Cookie"])[COOKIE_NAME]
    assert cleared["max-age"] == "0"
    assert cleared["path"] == "/admin"
    assert session_cookie(secured) is None
    response = await secured.client.get("/admin/", allow_redirects=False)
    assert response.status == 303


CROSS_SITE = [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://127.0.0.1.evil.example"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Sec-Fetch-Site": "cross-site", "Origin": "SELF"},
    {},
]
CROSS_SITE_IDS = [
    "other-origin",
    "null-origin",
    "lookalike",
    "cross-site",
    "same-site",
    "fetch-site-wins",
    "no-headers",
]


def resolve(daemon: Daemon, headers: dict[str, str]) -> dict[str, str]:
    return {name: origin(daemon)["Origin"] if v == "SELF" else v for name, v in headers.items()}


@pytest.mark.parametrize("headers", CROSS_SITE, ids=CROSS_SITE_IDS)
async def test_a_cross_site_edit_is_refused_even_when_logged_in(
    secured: Daemon, db: asyncpg.Connection, headers: dict[str, str]
) -> None:
    user_id = await insert_user(db, email="ivan@example.com")
    await login(secured, TOKEN)
    with capture_logs() as logs:
        response = await secured.client.post(
            f"/admin/users/{user_id}",
            data={"email": "mallory@example.com"},
            headers=resolve(secured, headers),
            allow_redirects=False,
        )
    await page(response, status=403)
    assert await db.fetchval("SELECT email FROM notifyd.users") == "ivan@example.com"
    assert admin_events(logs) == ["admin_cross_site_refused"]


@pytest.mark.parametrize("headers", CROSS_SITE, ids=CROSS_SITE_IDS)
async def test_a_cross_site_login_or_logout_is_refused(
    secured: Daemon, headers: dict[str, str]
) -> None:
    response = await secured.client.post(
        "/admin/login",
        data={"token": TOKEN},
        headers=resolve(secured, headers),
        allow_redirects=False,
    )
    await page(response, status=403)
    assert session_cookie(secured) is None

    await login(secured, TOKEN)
    response = await secured.client.post(
        "/admin/logout", headers=resolve(secured, headers), allow_redirects=False
    )
    await page(response, status=403)
    assert session_cookie(secured) is not None


async def test_the_open_dashboard_refuses_cross_site_edits_too(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    user_id = await insert_user(db, email="ivan@example.com")
    response = await daemon.client.post(
        f"/admin/users/{user_id}",
        data={"email": "mallory@example.com"},
        headers={"Origin": "https://evil.example"},
    )
    await page(response, status=403)
    assert await db.fetchval("SELECT email FROM notifyd.users") == "ivan@example.com"


async def test_same_origin_by_fetch_metadata_is_accepted(
    secured: Daemon, db: asyncpg.Connection
) -> None:
    user_id = await insert_user(db, email="ivan@example.com")
    await login(secured, TOKEN)
    response = await secured.client.post(
        f"/admin/users/{user_id}",
        data={"email": "new@example.com"},
        headers={"Sec-Fetch-Site": "same-origin"},
        allow_redirects=False,
    )
    assert response.status == 303
    assert await db.fetchval("SELECT email FROM notifyd.users") == "new@example.com"


async def test_the_open_dashboard_has_no_login(daemon: Daemon) -> None:
    response = await daemon.client.get("/admin/login", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/admin/"


async def test_the_cookie_is_no_api_token(secured: Daemon) -> None:
    await login(secured, TOKEN)
    response = await secured.client.get("/api/users/1")
    assert response.status == 401  # /api/ still wants the bearer token itself


async def test_the_stylesheet_needs_no_login(secured: Daemon) -> None:
    response = await secured.client.get("/admin/static/admin.css", allow_redirects=False)
    assert response.status == 200
