"""Fake vendor servers for tests: real servers on loopback that answer like the vendor."""

from tests.fakes.leaks import error_texts
from tests.fakes.smtp import FakeSmtpServer, ReceivedMail, unused_port
from tests.fakes.telegram import ApiCall, FakeTelegramApi
from tests.fakes.vendor import ForcedAnswer

__all__ = [
    "ApiCall",
    "FakeSmtpServer",
    "FakeTelegramApi",
    "ForcedAnswer",
    "ReceivedMail",
    "error_texts",
    "unused_port",
]
