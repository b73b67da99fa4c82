"""Property-based tests: generated bodies never break validation or the HTTP layer.

hypothesis builds JSON bodies around a valid one (every field replaced by any JSON value,
extra keys, missing keys) and arbitrary bytes. For each: the request model either refuses
it or produces what the database accepts; the API answers 200 or a 4xx problem, never a
500; and a 4xx writes nothing.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from notifyd.domain import (
    CHANNELS,
    MAX_MESSAGE_LENGTH,
    MAX_SUBJECT_LENGTH,
    has_visible_text,
    timestamp_in_range,
)
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
