"""A form body the dashboard cannot read is a 400 page, never a 500 with a traceback.

`request.post()` raised UnicodeDecodeError on a urlencoded body with bytes that are not
UTF-8, and ValueError on a multipart body that is not one: anyone who may post a form
(without API tokens, any local client) got a 500 and a traceback in the log.
"""

from __future__ import annotations

import asyncpg
import pytest
from structlog.testing import capture_logs

from tests.admin.conftest import DaemonFactory

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}
URLENCODED = "application/x-www-form-urlencoded"
UNREADABLE = [
    (URLENCODED, b"email=\xff\xfe%40example.com"),
    ("multipart/form-data; boundary=zz", b"email=b%40example.com"),
    ("multipart/form-data; boundary=zz", b"--zz\r\nContent-Disposition: form-data\r\n\r\nx"),
    ("multipart/form-data", b"--zz\r\n\r\n--zz--\r\n"),
]


@pytest.mark.parametrize(("content_type", "body"), UNREADABLE)
@pytest.mark.parametrize("path", ["/admin/users/{user}", "/admin/login"])
async def test_an_unreadable_form_is_a_400_page_and_changes_nothing(
    daemon_factory: DaemonFactory,
    db: asyncpg.Connection,
    path: str,
    content_type: str,
    body: bytes,
) -> None:
    daemon = await daemon_factory()
    user = await daemon.create_user(email="ivan@example.com")

    with capture_logs() as logs:
        response = await daemon.client.post(
            path.format(user=user),
            data=body,
            headers={**SAME_ORIGIN, "Content-Type": content_type},
            allow_redirects=False,
        )

    assert response.status == 400, await response.text()
    assert response.content_type == "text/html"
    assert not [entry for entry in logs if entry["log_level"] in {"error", "critical"}]
    assert await db.fetchval("SELECT email FROM notifyd.users") == "ivan@example.com"


async def test_a_multipart_form_is_read_like_any_other(
    daemon_factory: DaemonFactory, db: asyncpg.Connection
) -> None:
    daemon = await daemon_factory()
    user = await daemon.create_user(email="ivan@example.com")
    body = (
        b'--zz\r\nContent-Disposition: form-data; name="email"\r\n\r\n'
        b"olga@example.com\r\n--zz--\r\n"
    )

    response = await daemon.client.post(
        f"/admin/users/{user}",
        data=body,
        headers={**SAME_ORIGIN, "Content-Type": "multipart/form-data; boundary=zz"},
        allow_redirects=False,
    )

    assert response.status == 303, await response.text()
    assert await db.fetchval("SELECT email FROM notifyd.users") == "olga@example.com"
