"""Named hostile requests, each with the answer it must get; none writes anything.

The table is the issue's list: every body, header, method and content type an attacker
or a broken client may send. Whatever it is, the answer is a 2xx or a 4xx in the
problem format, never a 500 or a traceback, and a 4xx changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import asyncpg
import pytest
from yarl import URL

from tests.support import Daemon

DaemonFactory = Callable[..., Awaitable[Daemon]]
USER = "{user}"  # replaced by a real user id


@dataclass(frozen=True)
class Case:
    name: str
    status: int
    body: bytes = b""
    method: str = "POST"
    path: str = "/api/notify/"
    content_type: str | None = "application/json"
    field: str | None = None
    headers: dict[str, str] = dataclass_field(default_factory=dict)


def raw(text: str) -> bytes:
    return text.encode("utf-8")


CASES = [
    Case("user_id 1e30", 422, raw('{"user_id": 1e30, "message": "m"}'), field="user_id"),
    Case("user_id 2**70", 422, raw(f'{{"user_id": {2**70}, "message": "m"}}'), field="user_id"),
    Case("user_id -2**70", 422, raw(f'{{"user_id": {-(2**70)}, "message": "m"}}'), field="user_id"),
    Case("user_id true", 422, raw('{"user_id": true, "message": "m"}'), field="user_id"),
    Case("user_id as text", 422, raw('{"user_id": "1", "message": "m"}'), field="user_id"),
    Case(
        "priority true",
        422,
        raw('{"user_id": USER, "message": "m", "priority": true}'),
        field="priority",
    ),
    Case("NUL in message", 422, raw('{"user_id": USER, "message": "a\\u0000b"}'), field="message"),
    Case(
        "NUL in subject",
        422,
        raw('{"user_id": USER, "message": "m", "subject": "\\u0000"}'),
        field="subject",
    ),
    Case("lone surrogate", 400, raw('{"user_id": USER, "message": "\\ud800"}')),
    Case("invalid UTF-8", 400, b'{"user_id": 1, "message": "\xff\xfe"}'),
    Case("overlong UTF-8", 400, b'{"user_id": 1, "message": "\xc0\xaf"}'),
    Case("NaN", 400, raw('{"user_id": USER, "message": "m", "priority": NaN}')),
    Case("deeply nested", 400, raw('{"user_id": 1, "message": ' + "[" * 5000 + "]" * 5000 + "}")),
    Case("duplicate keys", 400, raw('{"user_id": USER, "message": "m", "message": "n"}')),
    Case(
        "huge channels array",
        422,
        raw(
            '{"user_id": USER, "message": "m", "channels": [' + ",".join(['"sms"'] * 100_000) + "]}"
        ),
        field="channels",
    ),
    Case(
        "huge message",
        422,
        raw('{"user_id": USER, "message": "' + "x" * 70_000 + '"}'),
        field="message",
    ),
    Case(
        "unknown field", 422, raw('{"user_id": USER, "message": "m", "admin": true}'), field="admin"
    ),
    Case(
        "subject with CRLF",
        422,
        raw('{"user_id": USER, "message": "m", "subject": "x\\r\\nBcc: all@example.com"}'),
        field="subject",
    ),
    Case("empty body", 400, b""),
    Case("whitespace body", 400, b"   \n"),
    Case("JSON array", 400, raw("[1, 2]")),
    Case("JSON string", 400, raw('"hello"')),
    Case("JSON null", 400, raw("null")),
    Case("truncated JSON", 400, raw('{"user_id": 1, "mess')),
    Case("text/plain", 415, raw('{"user_id": USER, "message": "m"}'), content_type="text/plain"),
    Case(
        "form-encoded",
        415,
        raw("user_id=1&message=m"),
        content_type="application/x-www-form-urlencoded",
    ),
    Case("no content type", 415, raw('{"user_id": USER, "message": "m"}'), content_type=None),
    Case("multipart", 415, raw("--x--"), content_type="multipart/form-data; boundary=x"),
    Case("over the body limit", 413, raw('{"user_id": 1, "message": "' + "x" * 1_100_000 + '"}')),
    Case("plain enqueue", 200, raw('{"user_id": USER, "message": "m"}')),
    Case(
        "query string on POST",
        422,
        raw('{"user_id": USER, "message": "m"}'),
        path="/api/notify/?debug=1&user_id=999",
        field="debug",
    ),
    Case(
        "invalid UTF-8 in a query escape",
        400,
        raw('{"user_id": USER, "message": "m"}'),
        path="/api/notify/?user_id=%ff",
        field="(query)",
    ),
    Case(
        "NUL in a query value",
        400,
        method="GET",
        path="/api/notifications?status=sent%00",
        content_type=None,
        field="(query)",
    ),
    Case(
        "a stray percent sign",
        400,
        method="GET",
        path="/api/notifications?status=%zz",
        content_type=None,
        field="(query)",
    ),
    Case(
        "repeated query parameter",
        422,
        method="GET",
        path="/api/notifications?status=sent&status=failed",
        content_type=None,
        field="status",
    ),
    Case(
        "foreign Host (DNS rebinding)",
        421,
        raw('{"user_id": USER, "message": "m"}'),
        headers={"Host": "attacker.example:8000"},
        field="Host",
    ),
    Case(
        "malformed Host",
        400,
        raw('{"user_id": USER, "message": "m"}'),
        headers={"Host": "a b"},
        field="Host",
    ),
    Case(
        "undecodable gzip body",
        400,
        b"not gzip at all",
        headers={"Content-Encoding": "gzip"},
        field="(body)",
    ),
    Case("HEAD on POST-only", 405, method="HEAD", content_type=None),
    Case("PUT on POST-only", 405, raw('{"user_id": USER, "message": "m"}'), method="PUT"),
    Case("DELETE on POST-only", 405, method="DELETE", content_type=None),
    Case("GET on POST-only", 405, method="GET", content_type=None),
    Case(
        "DELETE a notification",
        405,
        method="DELETE",
        path="/api/notifications/1",
        content_type=None,
    ),
    Case(
        "id beyond bigint in path", 404, method="GET", path=f"/api/users/{2**70}", content_type=None
    ),
    Case("negative id in path", 404, method="GET", path="/api/users/-1", content_type=None),
    Case(
        "path traversal",
        404,
        method="GET",
        path="/api/users/..%2f..%2fetc%2fpasswd",
        content_type=None,
    ),
    Case(
        "malformed Idempotency-Key",
        400,
        raw('{"user_id": USER, "message": "m"}'),
        headers={"Idempotency-Key": "x" * 300},
        field="Idempotency-Key",
    ),
    Case(
        "bad query parameter",
        422,
        method="GET",
        path="/api/notifications?limit=1e9",
        content_type=None,
        field="limit",
    ),
    Case(
        "unknown query parameter",
        422,
        method="GET",
        path="/api/notifications?order=asc",
        content_type=None,
        field="order",
    ),
]


async def count_rows(db: asyncpg.Connection) -> tuple[int, int]:
    row = await db.fetchrow(
        "SELECT (SELECT count(*) FROM notifyd.notifications) AS notifications,"
        " (SELECT count(*) FROM notifyd.users) AS users"
    )
    assert row is not None
    return row["notifications"], row["users"]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_hostile_request_gets_its_answer_and_changes_nothing(
    daemon: Daemon, db: asyncpg.Connection, case: Case
) -> None:
    user_id = await daemon.create_user(phone="+79001234567")
    before = await count_rows(db)
    headers = dict(case.headers)
    if case.content_type is not None:
        headers["Content-Type"] = case.content_type
    body = case.body.replace(b"USER", str(user_id).encode())
    # The path as written, escapes and all: the client must not repair it.
    url = URL(str(daemon.client.make_url("/")).rstrip("/") + case.path, encoded=True)
    response = await daemon.client.session.request(
        case.method,
        url,
        data=body or None,
        headers=headers,
        skip_auto_headers={"Content-Type"},
    )
    assert response.status == case.status, (case.name, await response.text())
    after = await count_rows(db)
    if case.status >= 400:
        assert after == before, case.name
        if case.method != "HEAD":
            assert response.content_type == "application/problem+json", case.name
            problem = await response.json()
            assert problem["status"] == case.status
            if case.field is not None:
                assert case.field in {e["field"] for e in problem["errors"]}, problem
    else:
        assert after[0] == before[0] + 1


async def test_configured_limits_are_enforced_and_named(
    daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    daemon = await daemon_factory(limits={"max_message_length": 160, "max_subject_bytes": 20})
    user_id = await daemon.create_user(phone="+79001234567")
    for body, field_name in (
        ({"message": "x" * 161}, "message"),
        ({"message": "m", "subject": "я" * 11}, "subject"),  # 22 bytes
    ):
        response = await daemon.client.post("/api/notify/", json={"user_id": user_id, **body})
        assert response.status == 422
        problem = await response.json()
        [error] = problem["errors"]
        assert error["field"] == field_name
        assert ("160 characters" if field_name == "message" else "20 bytes") in error["message"]
    ok = await daemon.client.post(
        "/api/notify/", json={"user_id": user_id, "message": "x" * 160, "subject": "я" * 10}
    )
    assert ok.status == 200
    assert (await count_rows(db))[0] == 1


def test_the_table_covers_every_answer_the_api_gives() -> None:
    assert {case.status for case in CASES} == {200, 400, 404, 405, 413, 415, 421, 422}
    print(f"HOSTILE: {len(CASES)} named cases")
