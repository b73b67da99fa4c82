"""Every error notifyd raises on purpose.

    NotifydError
    ├── ConfigError                  bad configuration; the daemon refuses to start
    ├── DatabaseUnavailableError     PostgreSQL cannot be reached right now
    ├── MigrationError               the database's migrations cannot be brought up to date
    ├── UnknownUserError             a notification names a user that does not exist
    ├── ConstraintViolationError     the database refused a row (a CHECK or foreign key)
    ├── NotFoundError                a requested row does not exist
    ├── IdempotencyKeyReusedError    an Idempotency-Key came back with a different request
    └── ProviderError                a provider could not deliver one message
        ├── TransientProviderError   worth retrying (timeouts, 4xx SMTP, 5xx/429 HTTP, refused)
        │   └── LocalResourceError   this host ran out of descriptors or memory: not the
        │                            vendor's failure, so not an attempt to count
        └── PermanentProviderError   retrying cannot help (no contact, 5xx SMTP, 400/401/403 HTTP)

Library errors (asyncpg, aiohttp, aiosmtplib) are translated into these at the module that
talks to the library, so the rest of the daemon only ever sees this tree.
"""

from __future__ import annotations

from typing import Any


class NotifydError(Exception):
    """Base of every error notifyd raises on purpose."""


class ConfigError(NotifydError):
    """The configuration is invalid; the message names the key."""


class DatabaseUnavailableError(NotifydError):
    """PostgreSQL cannot be reached or refused the connection."""


class MigrationError(NotifydError):
    """The database's migration ledger is one this notifyd cannot bring up to date."""


class UnknownUserError(NotifydError):
    """A notification refers to a user id that does not exist."""

    def __init__(self, user_id: int) -> None:
        super().__init__(f"user {user_id} does not exist")
        self.user_id = user_id


class ConstraintViolationError(NotifydError):
    """The database refused a write; `constraint` names the rule that was broken."""

    def __init__(self, constraint: str, message: str) -> None:
        super().__init__(message)
        self.constraint = constraint


class NotFoundError(NotifydError):
    """A requested row does not exist."""


class IdempotencyKeyReusedError(NotifydError):
    """An Idempotency-Key was sent before with a different request body."""


class ProviderError(NotifydError):
    """A provider failed to deliver one message.

    `response` is what the vendor answered (stored as the attempt's provider_response);
    it must never contain secrets.
    """

    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        response: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.response = response
        self.retry_after = retry_after


class TransientProviderError(ProviderError):
    """Delivery failed for a reason that may go away: retry on the same channel."""

    transient = True


class LocalResourceError(TransientProviderError):
    """The attempt could not start for want of something on this host (EMFILE, ENOMEM).

    The daemon's own fault, never the vendor's: whoever catches it should retry later
    without counting an attempt. A `TransientProviderError`, so that code that does not
    know it still retries.
    """


class PermanentProviderError(ProviderError):
    """Delivery failed for a reason retrying cannot fix: fall back to the next channel."""
