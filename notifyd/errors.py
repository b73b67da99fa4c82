"""Every error notifyd raises on purpose.

    NotifydError
    ├── ConfigError                  bad configuration; the daemon refuses to start
    ├── DatabaseUnavailableError     PostgreSQL cannot be reached right now
    ├── PooledSessionError           a session that must be PostgreSQL's own reached a pooler
    ├── ListenDatabaseError          the LISTEN session's URL names another database, or a standby
    ├── MigrationError               the database's migrations cannot be brought up to date
    ├── UnknownUserError             a notification names a user that does not exist
    ├── ConstraintViolationError     the database refused a row (a CHECK or foreign key)
    ├── NotFoundError                a requested row does not exist
    ├── IdempotencyKeyReusedError    an Idempotency-Key came back with a different request
    ├── WrongStatusError             a cancel or retry of a notification in another status
    └── ProviderError                a provider could not deliver one message
        ├── TransientProviderError   worth retrying (timeouts, 4xx SMTP, 5xx HTTP, refused)
        │   ├── ThrottledError       the vendor asks to slow down (HTTP 429, SMTP 421 / 4.7.x):
        │   │                        a pause, not a failure of the message
        │   └── LocalResourceError   this host ran out of descriptors or memory: not the
        │                            vendor's failure, so not an attempt to count
        └── PermanentProviderError   retrying cannot help (no contact, 5xx SMTP, 400/401 HTTP)
            └── RecipientUnreachableError  this contact can never be reached this way (the
                                           user blocked the bot, replied STOP, no such mailbox)

Library errors (asyncpg, aiohttp, aiosmtplib) are translated into these at the module that
talks to the library, so the rest of the daemon only ever sees this tree.
"""

from __future__ import annotations

from typing import Any, Literal


class NotifydError(Exception):
    """Base of every error notifyd raises on purpose."""


class ConfigError(NotifydError):
    """The configuration is invalid; the message names the key."""


class DatabaseUnavailableError(NotifydError):
    """PostgreSQL cannot be reached or refused the connection."""


class PooledSessionError(NotifydError):
    """A URL meant for a session of its own (LISTEN, the presence lock) reached a pooler."""


class ListenDatabaseError(NotifydError):
    """The LISTEN session's URL names another database than the pool's, or a standby."""


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


class WrongStatusError(NotifydError):
    """A notification is not in a status the operation applies to; `status` says which."""

    def __init__(self, notification_id: int, status: str, action: str) -> None:
        super().__init__(f"notification {notification_id} is {status}: it cannot be {action}")
        self.notification_id = notification_id
        self.status = status
        self.action = action


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


class ThrottledError(TransientProviderError):
    """The vendor is limiting how fast it accepts messages: wait, then try again.

    `scope` says what is limited: the whole channel (the bot, the account, the mail server)
    or only this recipient. A throttled attempt does not count against the channel's
    attempts; the channel (or the recipient) pauses for `retry_after` seconds, or a short
    default when the vendor does not say.
    """

    def __init__(
        self,
        message: str,
        *,
        scope: Literal["channel", "recipient"] = "channel",
        response: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, response=response, retry_after=retry_after)
        self.scope = scope


class RecipientUnreachableError(PermanentProviderError):
    """The vendor says this contact can never be reached this way; `reason` says why.

    The contact is suppressed: later deliveries skip this channel for this user, without
    calling the vendor, until the contact changes or the suppression is lifted by hand.
    """

    def __init__(
        self, message: str, *, reason: str, response: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, response=response)
        self.reason = reason
