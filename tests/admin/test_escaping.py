"""Hostile input: whatever a notification, an attempt or a vendor holds is shown as text."""

from __future__ import annotations

import asyncpg

from tests.admin.support import insert_attempt, insert_notification, insert_user, origin, page
from tests.support import Daemon

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
ATTRIBUTE = '" onmouseover="alert(2)" x="'
IMG = "<img src=x onerror=alert(3)>"


async def hostile(db: asyncpg.Connection) -> tuple[int, int]:
    user_id = await insert_user(db, telegram_chat_id="@hostile_channel")
    notification_id = await insert_notification(
        db,
        user_id,
        status="failed",
        subject=f"{SCRIPT} {ATTRIBUTE}",
        message=f"{SCRIPT}\n{IMG}\n</pre></main>{SCRIPT}",
        channels=("telegram",),
    )
    await insert_attempt(
        db,
        notification_id,
        "telegram",
        1,
        "failed",
        error=f"Bad Request: {SCRIPT} {IMG}",
        transient=False,
        provider_response={
            "description": SCRIPT,
            "ok": False,
            SCRIPT: [IMG, ATTRIBUTE],
            "html": "</pre><script>alert(4)</script>",
        },
    )
    return user_id, notification_id


def assert_inert(html: str) -> None:
    """No element came from the data: no script, no image, no early end of the page."""
    lowered = html.lower()
    assert "<script" not in lowered
    assert "<img" not in lowered
    assert lowered.count("</main>") == 1


async def test_the_list_escapes_subject_and_message(daemon: Daemon, db: asyncpg.Connection) -> None:
    await hostile(db)
    response = await daemon.client.get("/admin/")
    html = await response.text()
    assert response.status == 200
    assert_inert(html)
    assert ESCAPED in html
    doc = await page(response)
    cells = doc.by_id("notifications").find_all("td")
    assert any(cell.text().startswith(SCRIPT) for cell in cells)  # the text, as typed


async def test_the_detail_page_escapes_everything_it_shows(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    _, notification_id = await hostile(db)
    response = await daemon.client.get(f"/admin/notifications/{notification_id}")
    html = await response.text()
    assert response.status == 200
    assert_inert(html)
    doc = await page(response)
    assert doc.by_id("subject").text() == f"{SCRIPT} {ATTRIBUTE}".strip()
    assert doc.by_id("message").children == [f"{SCRIPT}\n{IMG}\n</pre></main>{SCRIPT}"]
    entry = doc.by_id("timeline").find_all("li")[0]
    error = entry.by_class("attempt-error")[0].find_all("pre")[0]
    assert error.children == [f"Bad Request: {SCRIPT} {IMG}"]
    response_text = entry.by_class("provider-response")[0].find_all("pre")[0].text()
    assert f'"description": "{SCRIPT}"' in response_text
    assert f'"{SCRIPT}": [' in response_text
    assert '"html": "</pre><script>alert(4)</script>"' in response_text
    # The attribute-breaking text stays inside the text, never opens an attribute.
    assert all("onmouseover" not in node.attrs for node in doc.walk())


async def test_the_user_page_escapes_recent_notifications_and_typed_values(
    daemon: Daemon, db: asyncpg.Connection
) -> None:
    user_id, _ = await hostile(db)
    html = await (await daemon.client.get(f"/admin/users/{user_id}")).text()
    assert_inert(html)
    assert ESCAPED in html

    # A refused value is put back into the form: as an attribute value, escaped.
    response = await daemon.client.post(
        f"/admin/users/{user_id}",
        data={"email": f"{ATTRIBUTE}{SCRIPT}", "phone": IMG},
        headers=origin(daemon),
    )
    html = await response.text()
    assert response.status == 422
    assert_inert(html)
    doc = await page(response, status=422)
    assert doc.by_id("email").attrs["value"] == f"{ATTRIBUTE}{SCRIPT}".strip()
    assert doc.by_id("phone").attrs["value"] == IMG
    assert all("onmouseover" not in node.attrs for node in doc.walk())


async def test_a_hostile_query_string_is_escaped(daemon: Daemon) -> None:
    response = await daemon.client.get("/admin/", params={"user_id": SCRIPT, "status": IMG})
    html = await response.text()
    assert response.status == 400
    assert_inert(html)
    doc = await page(response, status=400)
    assert doc.by_id("filters").find_all("input")[0].attrs["value"] == SCRIPT
