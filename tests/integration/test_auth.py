"""API tokens and the rate limit: who may call /api/, and how often."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from structlog.testing import capture_logs

from notifyd.config import load_settings
from notifyd.errors import ConfigError
from notifyd.web.app import create_app
from notifyd.web.auth import Authenticator, RateLimiter, caller_id
from tests.integration.test_api import assert_problem, count_notifications
from tests.support import Daemon, make_settings

DaemonFactory = Callable[..., Awaitable[Daemon]]
TOKEN = "t0ken-for-the-shop-0123456789"
OTHER = "t0ken-for-the-crm-9876543210"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def secured(daemon_factory: DaemonFactory) -> Daemon:
    return await daemon_factory(api={"tokens": [TOKEN, OTHER]})


async def user(daemon: Daemon) -> int:
    response = await daemon.client.post(
        "/api/users/", json={"phone": "+79001234567"}, headers=bearer(TOKEN)
    )
    assert response.status == 201
    user_id: int = (await response.json())["id"]
    return user_id


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ],
    ids=["none", "empty", "wrong", "longer", "basic", "no-scheme"],
)
async def test_api_calls_without_a_valid_token_get_401_and_change_nothing(
    secured: Daemon, db: asyncpg.Connection, headers: dict[str, str]
) -> None:
    user_id = await user(secured)
    response = await secured.client.post(
        "/api/notify/", json={"user_id": user_id, "message": "m"}, headers=headers
    )
    problem = await assert_problem(response, 401, "Authorization")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="notifyd"'
    assert TOKEN not in str(problem)
    assert await count_notifications(db) == 0
    for path in (f"/api/users/{user_id}", "/api/notifications/1"):
        await assert_problem(await secured.client.get(path, headers=headers), 401)


async def test_every_configured_token_is_accepted(secured: Daemon) -> None:
    user_id = await user(secured)
    for token in (TOKEN, OTHER, TOKEN.upper().lower()):
        response = await secured.client.post(
            "/api/notify/", json={"user_id": user_id, "message": "m"}, headers=bearer(token)
        )
        assert response.status == 200
    lowercase_scheme = {"Authorization": f"bearer {TOKEN}"}
    assert (await secured.client.get(f"/api/users/{user_id}", headers=lowercase_scheme)).ok


async def test_probes_and_metrics_stay_open(secured: Daemon) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        response = await secured.client.get(path)
        assert response.status in {200, 503}, path


async def test_idempotency_keys_belong_to_the_token_that_sent_them(
    secured: Daemon, db: asyncpg.Connection
) -> None:
    user_id = await user(secured)
    body = {"user_id": user_id, "message": "m"}
    ids = set()
    for token in (TOKEN, OTHER, TOKEN):
        response = await secured.client.post(
            "/api/notify/", json=body, headers={**bearer(token), "Idempotency-Key": "same"}
        )
        assert response.status == 200
        ids.add((await response.json())["id"])
    assert len(ids) == 2
    assert await count_notifications(db) == 2
    scopes = await db.fetch("SELECT scope FROM notifyd.idempotency_keys ORDER BY scope")
    assert sorted(r["scope"] for r in scopes) == sorted(
        caller_id(t.encode()) for t in (TOKEN, OTHER)
    )


async def test_the_rate_limit_answers_429_with_retry_after_per_token(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = await daemon_factory(api={"tokens": [TOKEN, OTHER], "rate_limit": 2})
    statuses = []
    for _ in range(3):
        response = await daemon.client.get("/api/users/1", headers=bearer(TOKEN))
        statuses.append(response.status)
    assert statuses[:2] == [404, 404]  # allowed through to the handler
    assert statuses[2] == 429
    limited = await daemon.client.get("/api/users/1", headers=bearer(TOKEN))
    problem = await assert_problem(limited, 429)
    assert int(limited.headers["Retry-After"]) >= 1
    assert "2 per second" in problem["detail"]
    # Another token has its own budget.
    assert (await daemon.client.get("/api/users/1", headers=bearer(OTHER))).status == 404


def test_rate_limiter_refills_at_its_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("notifyd.web.auth.time.monotonic", lambda: now[0])
    limiter = RateLimiter(rate=2, burst=2)
    assert [limiter.wait_time("a") for _ in range(3)] == [0, 0, 0.5]
    now[0] += 0.5
    assert limiter.wait_time("a") == 0
    assert limiter.wait_time("a") == pytest.approx(0.5)


def test_authenticator_names_callers_without_their_token() -> None:
    authenticator = Authenticator([TOKEN, OTHER])
    caller = authenticator.caller(f"Bearer {TOKEN}")
    assert caller == caller_id(TOKEN.encode())
    assert caller is not None
    assert TOKEN not in caller
    assert authenticator.caller(f"Bearer {TOKEN[:-1]}") is None
    assert Authenticator([]).caller(None) == ""


@pytest.mark.parametrize(
    ("host", "event", "level"),
    [("127.0.0.1", "api_open", "warning"), ("0.0.0.0", "api_open_on_network", "error")],
)
def test_an_open_api_is_logged_louder_on_the_network(
    database_url: str, host: str, event: str, level: str
) -> None:
    settings = make_settings(database_url, http={"host": host})
    with capture_logs() as logs:
        create_app(settings, database_url)
    [entry] = [e for e in logs if e["event"] in {"api_open", "api_open_on_network"}]
    assert (entry["event"], entry["log_level"]) == (event, level)
    with capture_logs() as logs:
        create_app(make_settings(database_url, api={"tokens": [TOKEN]}), database_url)
    assert not [e for e in logs if str(e["event"]).startswith("api_open")]


@pytest.mark.parametrize("token", ["short", "with a space-0123456789", ""])
def test_weak_tokens_are_refused_at_start(token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFYD_API__TOKENS", f'["{TOKEN}", "{token}"]')
    with pytest.raises(ConfigError, match=r"api\.tokens"):
        load_settings(None)


def test_tokens_come_from_a_json_list_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOTIFYD_API__TOKENS", f'["{TOKEN}", "{OTHER}"]')
    settings = load_settings(None)
    assert [t.get_secret_value() for t in settings.api.tokens] == [TOKEN, OTHER]
    assert TOKEN not in repr(settings)
