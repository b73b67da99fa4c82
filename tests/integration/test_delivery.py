"""Delivery end to end, in-process: API -> table -> dispatcher -> actors -> providers."""

from __future__ import annotations

from notifyd.exceptions import NotFoundError  # noqa: F401
from tests.fakes.smtp import FakeSmtpServer
from tests.fakes.telegram import FakeTelegramApi
from tests.support import Daemon


async def test_curl_example_is_delivered_by_email(
    daemon: Daemon, smtp_server: FakeSmtpServer
) -> None:
    user_id = await daemon.create_user(email="ivan@example.com", phone="+79001234567")
    answer = await daemon.notify(
        user_id=user_id,
        subject="Привет!",
        message="Тестовое уведомление",
        channels=["email", "sms", "telegram"],
    )
    assert answer["status"] == "pending"
    finished = await daemon.wait_finished(answer["id"])
    assert finished["status"] == "sent"
    assert [(a["channel"], a["attempt"], a["status"]) for a in finished["attempts"]] == [
        ("email", 1, "success")
    ]
    (mail,) = await smtp_server.wait_for_messages(1)
    assert mail["Subject"] == "Привет!"
    assert mail.get_content().strip() == "Тестовое уведомление"
