"""Property-based tests: generated bodies and query strings never break validation or HTTP.

hypothesis builds JSON bodies around a valid one (every field replaced by any JSON value,
extra keys, missing keys) and arbitrary bytes. For each: the request model either refuses
it or produces what the database accepts; the API answers 200 or a 4xx problem, never a
500; and a 4xx writes nothing.

It also builds query strings (known and unknown names, any values, raw bytes escaped,
stray escapes) for every GET route: API, probes, dashboard pages and static files. Each
gets its page or a 4xx (a problem from the API and the probes, a page from the
dashboard), never a 500, and changes nothing.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any
from urllib.parse import quote_plus

import asyncpg
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from yarl import URL

from notifyd.domain import (
    CHANNELS,
    MAX_MESSAGE_LENGTH,
    MAX_SUBJECT_LENGTH,
    has_visible_text,
    timestamp_in_range,
)
from notifyd.web.problems import ApiError
from notifyd.web.query import parse_query
from notifyd.web.schemas import NotifyRequest
from tests.support import Daemon

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=8,
)
FIELDS = ("user_id", "message", "subject", "channels", "send_at", "priority")
VALID: dict[str, Any] = {"user_id": 1, "message": "hello", "subject": "hi", "channels": ["sms"]}


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A valid body with some fields replaced, dropped or added."""
    body = dict(VALID)
    for name in draw(st.sets(st.sampled_from(FIELDS))):
        body[name] = draw(JSON)
    for name in draw(st.sets(st.sampled_from(FIELDS), max_size=2)):
        body.pop(name, None)
    body.update(draw(st.dictionaries(st.text(max_size=8), JSON, max_size=2)))
    return body


def storable(request: NotifyRequest) -> bool:
    """What the database's constraints on notifications demand."""
    return (
        1 <= request.user_id <= 2**63 - 1
        and has_visible_text(request.message)
        and len(request.message) <= MAX_MESSAGE_LENGTH
        and "\x00" not in request.message + request.subject
        and "\r" not in request.subject
        and "\n" not in request.subject
        and len(request.subject.encode("utf-8")) <= MAX_SUBJECT_LENGTH
        and 1 <= len(request.channels) == len(set(request.channels))
        and set(request.channels) <= set(CHANNELS)
        and -100 <= request.priority <= 100
        and (request.send_at is None or timestamp_in_range(request.send_at))
    )


@settings(max_examples=3000, deadline=None)
@given(bodies())
def test_the_request_model_accepts_only_what_the_database_stores(body: dict[str, Any]) -> None:
    try:
        request = NotifyRequest.model_validate(body)
    except ValidationError as exc:
        for error in exc.errors():
            assert error["type"]  # a described error, never a crash
        return
    assert storable(request), body


async def status_and_count(
    daemon: Daemon, db: asyncpg.Connection, payload: bytes
) -> tuple[int, int]:
    response = await daemon.client.post(
        "/api/notify/", data=payload, headers={"Content-Type": "application/json"}
    )
    if response.status != 200:
        assert response.content_type == "application/problem+json"
        assert (await response.json())["status"] == response.status
    count: int = await db.fetchval("SELECT count(*) FROM notifyd.notifications")
    return response.status, count


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies())
async def test_generated_bodies_get_200_or_a_4xx_and_a_4xx_writes_nothing(
    daemon: Daemon, db: asyncpg.Connection, body: dict[str, Any]
) -> None:
    user_id = await db.fetchval(
        "INSERT INTO notifyd.users (phone) VALUES ('+79001234567') RETURNING id"
    )
    if body.get("user_id") == 1:
        body["user_id"] = user_id
    before: int = await db.fetchval("SELECT count(*) FROM notifyd.notifications")
    status, after = await status_and_count(daemon, db, json.dumps(body).encode())
    # Shown by --hypothesis-show-statistics: how the generated bodies were answered.
    event(f"HTTP {status}")
    assert status in {200, 400, 422}, body
    assert after == before + (1 if status == 200 else 0)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
async def test_arbitrary_bytes_never_get_a_server_error(
    daemon: Daemon, db: asyncpg.Connection, payload: bytes
) -> None:
    before: int = await db.fetchval("SELECT count(*) FROM notifyd.notifications")
    status, after = await status_and_count(daemon, db, payload)
    assert status in {400, 422}, payload
    assert after == before


# Query strings, on every route (API, probes, dashboard, static files)

KNOWN_NAMES = st.sampled_from(
    [
        "status", "user_id", "channel", "created_after", "created_before", "limit",
        "cursor", "after", "saved", "next", "colour", "", "Status", "user_id[]",
    ]
)  # fmt: skip
LIKELY_VALUES = st.sampled_from(
    [
        "sent", "failed", "email", "fax", "1", "0", "-1", "50", "201", "1e9", "9" * 30,
        "2026-11-30T12:00:00Z", "2026-11-30T12:00:00", "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00", "/admin/", "//evil.example", "aWQ6MQ", "",
    ]
)  # fmt: skip
# Mostly names and values a route knows, so that validation past decoding is reached too.
PARAMETER_NAMES = KNOWN_NAMES | KNOWN_NAMES | st.text(max_size=10)
PARAMETER_VALUES = LIKELY_VALUES | LIKELY_VALUES | st.text(max_size=40)


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    """A raw query string: well-formed pairs, raw bytes escaped, or odd escapes."""
    parts: list[str] = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["pair", "pair", "pair", "pair", "bytes", "odd"]))
        if kind == "pair":
            name, value = draw(PARAMETER_NAMES), draw(PARAMETER_VALUES)
            parts.append(f"{quote_plus(name)}={quote_plus(value)}")
        elif kind == "bytes":  # any bytes, escaped: invalid UTF-8, NUL, controls
            raw = draw(st.binary(max_size=8))
            parts.append(
                draw(PARAMETER_NAMES.map(quote_plus)) + "=" + "".join(f"%{b:02X}" for b in raw)
            )
        else:  # stray %, half escapes, separators in odd places
            parts.append(draw(st.text(alphabet="%0123456789abcdefABCDEFxyz+=;.~-_", max_size=12)))
    return "&".join(parts)


@settings(max_examples=2000, deadline=None)
@given(raw=query_strings())
def test_a_query_string_is_read_strictly_or_refused_as_malformed(raw: str) -> None:
    try:
        pairs = parse_query(raw)
    except ApiError as exc:
        refused = exc.status
    else:
        refused = None
    if refused is not None:
        assert refused == 400, raw
        return
    for name, value in pairs:
        assert not any(unicodedata.category(char) == "Cc" for char in name + value), raw
        (name + value).encode("utf-8")  # no lone surrogates: valid text


ROUTES = [
    "/api/notifications",
    "/api/notifications/{notification}",
    "/api/users/{user}",
    "/api/users/{user}/notifications",
    "/api/openapi.json",
    "/healthz",
    "/readyz",
    "/metrics",
    "/admin/",
    "/admin/users",
    "/admin/users/{user}",
    "/admin/notifications/{notification}",
    "/admin/login",
    "/admin/static/admin.css",
]


async def _existing(db: asyncpg.Connection) -> dict[str, int]:
    row = await db.fetchrow(
        "SELECT (SELECT max(id) FROM notifyd.users) AS user,"
        " (SELECT max(id) FROM notifyd.notifications) AS notification"
    )
    assert row is not None
    if row["notification"] is not None:
        return {"user": row["user"], "notification": row["notification"]}
    user = await db.fetchval(
        "INSERT INTO notifyd.users (phone) VALUES ('+15551234567') RETURNING id"
    )
    notification = await db.fetchval(
        "INSERT INTO notifyd.notifications (user_id, message, channels, status, finished_at)"
        " VALUES ($1, 'm', '{sms}', 'sent', now()) RETURNING id",
        user,
    )
    return {"user": user, "notification": notification}


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(route=st.sampled_from(ROUTES), raw=query_strings())
async def test_any_query_string_on_any_route_gets_an_answer_or_a_4xx(
    daemon: Daemon, db: asyncpg.Connection, route: str, raw: str
) -> None:
    await daemon.app_ready()
    ids = await _existing(db)
    before = await db.fetchval("SELECT count(*) FROM notifyd.notifications")
    path = route.format(**ids)
    url = URL(f"{str(daemon.client.make_url('/')).rstrip('/')}{path}?{raw}", encoded=True)
    response = await daemon.client.session.get(url, allow_redirects=False)
    # Shown by --hypothesis-show-statistics: how the generated query strings were answered.
    event(f"{'dashboard' if path.startswith('/admin/') else 'API'} HTTP {response.status}")
    assert response.status in {200, 303, 400, 404, 422}, (path, raw, await response.text())
    if response.status >= 400:
        if path.startswith("/admin/"):
            assert response.content_type == "text/html", (path, raw)
        else:
            assert response.content_type == "application/problem+json", (path, raw)
            assert (await response.json())["status"] == response.status
    assert await db.fetchval("SELECT count(*) FROM notifyd.notifications") == before
