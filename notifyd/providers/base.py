"""The interface every delivery provider implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Recipient:
    """The contacts of the user a notification is for."""

    user_id: int
    email: str | None
    phone: str | None
    telegram_chat_id: str | None


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message to deliver on one channel."""

    notification_id: int
    recipient: Recipient
    subject: str
    body: str

    def as_text(self) -> str:
        """Subject and body as one plain text, for channels without a subject line."""
        if self.subject:
            return f"{self.subject}\n\n{self.body}"
        return self.body


class Provider(ABC):
    """Delivers messages on one channel.

    `send` returns the vendor's answer (a JSON-able dict stored as the attempt's
    provider_response) or raises `TransientProviderError` / `PermanentProviderError`.
    It never lets a library exception escape and never puts a secret in an error.
    """

    channel: str

    async def start(self) -> None:  # noqa: B027  (optional hook, empty on purpose)
        """Open long-lived resources (HTTP sessions, connection pools)."""

    async def close(self) -> None:  # noqa: B027  (optional hook, empty on purpose)
        """Release what `start` opened."""

    @abstractmethod
    async def send(self, message: OutgoingMessage) -> dict[str, Any]:
        """Deliver one message; return the vendor's answer."""
