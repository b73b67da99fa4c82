"""An id in a path is ASCII digits, as the document says, and nothing else.

Python's `\\d` matches every script's decimal digits, and `int()` reads them: `/api/users/`
and U+0661 ARABIC-INDIC DIGIT ONE, or U+FF11 FULLWIDTH DIGIT ONE, was user 1. Another
name for the same resource is one that a proxy's rules, a log search or an audit of paths
does not expect; each such path is now a 404, like any other unknown path.
"""

from __future__ import annotations

import pytest
from yarl import URL

from tests.support import Daemon

ARABIC_INDIC_ONE = "%D9%A1"
FULLWIDTH_ONE = "%EF%BC%91"
DEVANAGARI_ONE = "%E0%A5%A7"

PATHS = [
    ("GET", "/api/users/{id}"),
    ("GET", "/api/users/{id}/notifications"),
    ("PATCH", "/api/users/{id}"),
    ("DELETE", "/api/users/{id}/suppressions/email"),
    ("GET", "/api/notifications/{id}"),
    ("POST", "/api/notifications/{id}/cancel"),
    ("POST", "/api/notifications/{id}/retry"),
    ("GET", "/admin/users/{id}"),
    ("GET", "/admin/notifications/{id}"),
]


@pytest.mark.parametrize("digit", [ARABIC_INDIC_ONE, FULLWIDTH_ONE, DEVANAGARI_ONE])
@pytest.mark.parametrize(("method", "path"), PATHS, ids=[f"{m} {p}" for m, p in PATHS])
async def test_an_id_in_other_digits_names_nothing(
    daemon: Daemon, method: str, path: str, digit: str
) -> None:
    user_id = await daemon.create_user(email="ivan@example.com")
    notification = await daemon.notify(user_id=user_id, message="m", send_at="2999-01-01T00:00:00Z")
    assert user_id == notification["id"] == 1
    # The same path with the ASCII digit names the rows (so the one below only differs in it).
    plain = await daemon.client.request("GET", path.replace("{id}", "1").split("/suppressions")[0])
    assert plain.status in {200, 405}, await plain.text()

    url = URL(str(daemon.client.make_url(path.replace("{id}", digit))), encoded=True)
    response = await daemon.client.session.request(
        method, url, json={"phone": "+15551234567"} if method == "PATCH" else None
    )

    assert response.status == 404, await response.text()
    after = await daemon.notification(1)
    assert after["status"] == "pending"
