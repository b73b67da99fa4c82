"""The dashboard in a real headless browser, served by the real `notifyd serve`.

Chromium is Debian's (`apt-get install -y chromium`), driven by Playwright for Python;
Playwright never downloads a browser here. The screenshots are checked for what breaks
when a page breaks (blank, wrong size, no stylesheet, key elements without a box), not
against a golden image, which would change with every Chromium release.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.acceptance.daemon_process import DaemonProcess, free_port
from tests.admin.png import decode
from tests.admin.support import insert_attempt, insert_notification
from tests.fakes.smtp import FakeSmtpServer
from tests.support import wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # the tests run as root in CI's container
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
TOKEN = "t0ken-for-the-browser-test-0123456789"
SCRIPT = "<script>alert(1)</script>"
# The header bar's background (admin.css `.top`): there only if the stylesheet applied.
HEADER_COLOUR = (0x17, 0x20, 0x2C)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install -y chromium"
    ),
]


@pytest.fixture
async def served(
    database_url: str, smtp_server: FakeSmtpServer, tmp_path: Path
) -> AsyncIterator[str]:
    """`notifyd serve` with an API token, on a free port; its base URL."""
    port = free_port()
    daemon = DaemonProcess(
        ["serve"],
        {
            "DATABASE_URL": database_url,
            "NOTIFYD_HTTP__PORT": str(port),
            "NOTIFYD_API__TOKENS": f'["{TOKEN}"]',
            "EMAIL_HOST": smtp_server.host,
            "EMAIL_PORT": str(smtp_server.port),
        },
        cwd=tmp_path,
    )
    await daemon.start()
    try:
        await daemon.wait_for_event("notifyd_started", deadline=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        await daemon.stop()
    assert not any(TOKEN in line for line in daemon.lines), "the token reached the log"


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    folder = tmp_path / "screenshots"
    folder.mkdir()
    return folder


async def api(session: aiohttp.ClientSession, method: str, url: str, **body: Any) -> Any:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with session.request(method, url, json=body or None, headers=headers) as response:
        assert response.status < 300, await response.text()
        return await response.json()


async def arrange(base: str, db: asyncpg.Connection) -> dict[str, int]:
    """A delivered notification (e-mail refused, then SMS), a pending one, a hostile one."""
    async with aiohttp.ClientSession() as session:
        user = await api(session, "POST", f"{base}/api/users/", phone="+15551234567")
        delivered = await api(
            session,
            "POST",
            f"{base}/api/notify/",
            user_id=user["id"],
            subject="Your order has shipped",
            message="Order 42 is on its way.",
            channels=["email", "sms"],
        )
        await api(
            session,
            "POST",
            f"{base}/api/notify/",
            user_id=user["id"],
            message="Tomorrow's reminder",
            send_at="2099-01-01T09:00:00Z",
        )

        async def sent() -> bool:
            found = await api(session, "GET", f"{base}/api/notifications/{delivered['id']}")
            return bool(found["status"] == "sent")

        await wait_until(sent, deadline=20, what="the first notification to be sent")
    hostile = await insert_notification(
        db,
        user["id"],
        status="failed",
        subject=SCRIPT,
        message=f"{SCRIPT}<img src=x onerror=alert(2)>",
        channels=("telegram",),
        finished_ago=timedelta(seconds=1),
    )
    await insert_attempt(
        db,
        hostile,
        "telegram",
        1,
        "failed",
        error=f"Bad Request: {SCRIPT}",
        transient=False,
        provider_response={"description": SCRIPT, "ok": False},
    )
    return {"user": user["id"], "delivered": delivered["id"], "hostile": hostile}


def assert_rendered(png: bytes, width: int, height: int) -> None:
    """A screenshot of a page that rendered: its size, styled, and not blank."""
    image = decode(png)
    assert (image.width, image.height) == (width, height)
    colours = image.colours()
    _, most = colours.most_common(1)[0]
    # The login page, the emptiest, is 85% background.
    assert most / colours.total() < 0.93, "the page is (almost) one colour: blank"
    assert len(colours) > 20, "too few colours for a page with text"
    assert _near(image.pixel(4, 4), HEADER_COLOUR), "no header bar: the stylesheet did not apply"


def _near(found: tuple[int, int, int], wanted: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 8 for a, b in zip(found, wanted, strict=True))


async def assert_boxes(page: Any, *selectors: str) -> None:
    """Each selector's first element is visible, with a box of some size."""
    for selector in selectors:
        element = page.locator(selector).first
        assert await element.is_visible(), selector
        box = await element.bounding_box()
        assert box is not None, selector
        assert box["width"] > 0, (selector, box)
        assert box["height"] > 0, (selector, box)


async def shoot(page: Any, folder: Path, name: str) -> bytes:
    """A viewport screenshot, checked, and a full-page one for people to look at."""
    await page.screenshot(path=str(folder / f"{name}-full.png"), full_page=True)
    png: bytes = await page.screenshot(path=str(folder / f"{name}.png"))
    assert_rendered(png, VIEWPORT["width"], VIEWPORT["height"])
    return png


async def test_dashboard_in_a_real_browser(
    served: str, browser: Any, db: asyncpg.Connection, screenshots: Path
) -> None:
    ids = await arrange(served, db)
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    dialogs: list[str] = []
    problems: list[str] = []

    async def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )

    # Not logged in: the login form, then the list.
    await page.goto(f"{served}/admin/")
    assert page.url == f"{served}/admin/login?next=%2Fadmin%2F"
    await assert_boxes(page, "#login-form", "#token")
    await shoot(page, screenshots, "login")
    await page.fill("#token", "a-wrong-token-000000000000")
    await page.click("#login-form button[type=submit]")
    assert await page.locator("#login-error").inner_text() == "That is not a valid API token."
    await page.fill("#token", TOKEN)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_url(f"{served}/admin/")
    cookies = await context.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
        ("notifyd_admin", True, "Strict")
    ]

    # The list, under the counts header.
    await assert_boxes(page, "#counts", "#count-pending", "#rate-sms", "#notifications", "#filters")
    assert await page.locator("#count-pending .value").inner_text() == "1"
    assert await page.locator("#count-sent .value").inner_text() == "1"
    assert await page.locator("#count-failed .value").inner_text() == "1"
    assert await page.locator("#rate-email .value").inner_text() == "0%"
    assert await page.locator("#rate-sms .value").inner_text() == "100%"
    assert await page.locator("#rate-telegram .value").inner_text() == "0%"
    assert await page.locator("#notifications tbody tr").count() == 3
    list_png = await shoot(page, screenshots, "list")

    # Filter by status with the form.
    await page.select_option("select[name=status]", "failed")
    await page.click("#filters button[type=submit]")
    await page.wait_for_url(f"{served}/admin/?status=failed&channel=&user_id=")
    assert await page.locator("#notifications tbody tr").count() == 1

    # The delivered notification's timeline.
    await page.goto(f"{served}/admin/")
    await page.click(f"#notifications a[href='/admin/notifications/{ids['delivered']}']")
    await page.wait_for_url(f"{served}/admin/notifications/{ids['delivered']}")
    entries = page.locator("#timeline > li")
    assert await entries.count() == 2
    first, second = await entries.nth(0).inner_text(), await entries.nth(1).inner_text()
    assert first.split()[:5] == ["email", "attempt", "1", "failed", "permanent"]
    assert "user has no email address" in first
    assert second.split()[:4] == ["sms", "attempt", "1", "success"]
    assert (
        '"provider": "stub"' in await entries.nth(1).locator(".provider-response pre").inner_text()
    )
    await assert_boxes(page, "#timeline > li:nth-child(1)", "#timeline > li:nth-child(2)")
    await assert_boxes(page, "#timeline .duration", "#timeline .provider-response pre")
    detail_png = await shoot(page, screenshots, "detail")
    assert detail_png != list_png
    timeline_png = await page.locator("#timeline").screenshot(
        path=str(screenshots / "timeline.png")
    )
    box = await page.locator("#timeline").bounding_box()
    timeline_image = decode(timeline_png)
    # The element's box, in whole pixels (Chromium rounds the fractions up or down).
    assert abs(timeline_image.width - box["width"]) <= 1
    assert abs(timeline_image.height - box["height"]) <= 1
    assert len(timeline_image.colours(step=2)) > 10

    # Hostile content is text: no script ran, no element came from it.
    await page.goto(f"{served}/admin/notifications/{ids['hostile']}")
    assert await page.locator("#subject").inner_text() == SCRIPT
    assert await page.locator(".attempt-error pre").inner_text() == f"Bad Request: {SCRIPT}"
    assert SCRIPT in await page.locator(".provider-response pre").inner_text()
    assert await page.locator("script").count() == 0
    assert await page.locator("img").count() == 0
    await shoot(page, screenshots, "hostile")

    # Edit a user's contacts: a bad phone number is named next to its field.
    await page.goto(f"{served}/admin/users/{ids['user']}")
    await page.fill("#phone", "12")
    await page.click("#contacts button[type=submit]")
    await assert_boxes(page, "#error-phone")
    assert "E.164" in await page.locator("#error-phone").inner_text()
    await shoot(page, screenshots, "user-error")
    await page.fill("#phone", "+15559876543")
    await page.fill("#email", "ivan@example.com")
    await page.click("#contacts button[type=submit]")
    await page.wait_for_url(f"{served}/admin/users/{ids['user']}?saved=1")
    assert await page.locator("#saved").inner_text() == "Saved."
    row = await db.fetchrow("SELECT email, phone FROM notifyd.users WHERE id = $1", ids["user"])
    assert tuple(row) == ("ivan@example.com", "+15559876543")
    await shoot(page, screenshots, "user")

    await page.goto(f"{served}/admin/users")
    await assert_boxes(page, "#users")
    await shoot(page, screenshots, "users")

    # Log out: back to the form, and the pages are closed again.
    await page.click("form.logout button")
    await page.wait_for_url(f"{served}/admin/login")
    await page.goto(f"{served}/admin/users")
    assert page.url.startswith(f"{served}/admin/login")

    await context.close()
    assert dialogs == []
    # The console shows only the refusals asked for: the wrong token, the bad phone number.
    asked = ("status of 403 (Forbidden)", "status of 422 (Unprocessable Entity)")
    assert [problem for problem in problems if not problem.endswith(asked)] == []


async def test_the_screenshot_check_fails_for_a_blank_or_unstyled_page(browser: Any) -> None:
    page = await browser.new_page(viewport=VIEWPORT)
    await page.set_content("<html><body></body></html>")
    with pytest.raises(AssertionError, match="blank"):
        assert_rendered(await page.screenshot(), VIEWPORT["width"], VIEWPORT["height"])
    # Not blank, but without the dashboard's header bar (as when admin.css is not applied).
    cells = "".join(f'<p style="color: rgb({n * 8}, 90, 40)">row {n}</p>' for n in range(30))
    await page.set_content(
        f'<body style="margin: 0"><div style="height: 400px; background: #3366cc"></div>'
        f"{cells}</body>"
    )
    with pytest.raises(AssertionError, match="stylesheet"):
        assert_rendered(await page.screenshot(), VIEWPORT["width"], VIEWPORT["height"])
    with pytest.raises(AssertionError):
        assert_rendered(await page.screenshot(), 800, 600)
    await page.close()
