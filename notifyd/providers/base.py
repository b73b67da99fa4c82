"""The interface every delivery provider implements."""

from __future__ import annotations

import errno
import os
from abc import ABC, abstractmethod
from typing import Any, Final

from notifyd.domain import Channel, OutgoingMessage
from notifyd.errors import LocalResourceError

# What `Provider.check` answers when there is nothing to try (a provider without a vendor).
NOTHING_TO_CHECK: Final = "nothing to check"


# What the operating system answers when this process or host has run out of something.
_LOCAL_SHORTAGES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def local_resource_error(vendor: str, exc: BaseException) -> LocalResourceError | None:
    """A `LocalResourceError` if `exc`, or an error it wraps, is such a shortage."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _LOCAL_SHORTAGES:
            reason = os.strerror(current.errno)
            return LocalResourceError(f"{vendor}: not attempted: this host ran short ({reason})")
        # aiohttp keeps the socket's error as `os_error`; others chain it.
        for wrapped in (getattr(current, "os_error", None), current.__cause__, current.__context__):
            if isinstance(wrapped, BaseException):
                pending.append(wrapped)
    return None


class Provider(ABC):
    """Delivers messages on one channel.

    `send` returns the vendor's answer (a JSON-able dict stored as the attempt's
    provider_response) or raises `TransientProviderError` / `PermanentProviderError`.
    It never lets a library exception escape and never puts a secret in an error.
    """

    channel: Channel

    async def start(self) -> None:  # noqa: B027  (optional hook, empty on purpose)
        """Open long-lived resources (HTTP sessions, connection pools)."""

    async def close(self) -> None:  # noqa: B027  (optional hook, empty on purpose)
        """Release what `start` opened."""

    @abstractmethod
    async def send(self, message: OutgoingMessage) -> dict[str, Any]:
        """Deliver one message; return the vendor's answer."""

    @property
    def missing_setting(self) -> str | None:
        """The setting this channel cannot work without, when it is unset; else None."""
        return None

    async def check(self) -> str:
        """Try the vendor without sending anything: reachable, and taking the credentials.

        Returns a short description of what worked, or raises `TransientProviderError` /
        `PermanentProviderError` with a message as free of secrets as `send`'s. Bounded by
        the channel's timeout. `close` releases what it opened.
        """
        return NOTHING_TO_CHECK
