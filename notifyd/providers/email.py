"""E-mail over SMTP with aiosmtplib, over a small pool of connections.

What the server's replies mean (slow down, try again, suppress the address, give up) is
read in `smtp_replies.py`; this module sends, keeps the pool, and logs.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import aiosmtplib

from notifyd.addresses import parse_mailbox
from notifyd.domain import Channel, OutgoingMessage
from notifyd.errors import (
    PermanentProviderError,
    ProviderError,
    ThrottledError,
    TransientProviderError,
)
from notifyd.logs import get_logger
from notifyd.providers import email_message, mime, smtp_replies
from notifyd.providers.base import Provider, local_resource_error
from notifyd.redaction import Scrubber

if TYPE_CHECKING:
    from notifyd.channel_settings import EmailSettings

log = get_logger(__name__)

_SECURITY_NAMES = {"none": "no TLS", "starttls": "STARTTLS", "tls": "TLS"}


@dataclass(slots=True)
class _Connection:
    """A connected, logged-in SMTP client and how much it has been used."""

    smtp: aiosmtplib.SMTP
    messages: int = 0
    idle_since: float = 0.0


class EmailProvider(Provider):
    """Sends each message as a UTF-8 plain-text e-mail, over a small pool of connections.

    A healthy connection goes back to the pool (up to `pool_size` idle ones) instead of a
    new TCP, TLS and login handshake per message. Idle ones older than `pool_idle_timeout`
    are closed before a server times them out, and each carries at most
    `max_messages_per_connection` messages. A pooled connection the server dropped anyway
    is replaced once, on the spot, by a fresh one.
    """

    channel = Channel.EMAIL

    def __init__(self, settings: EmailSettings) -> None:
        self._settings = settings
        # Every form the password is sent in: AUTH LOGIN sends it in base64, AUTH PLAIN
        # sends `\0user\0password` in base64, and a server may echo either in its reply.
        password = settings.password.get_secret_value()
        self._scrubber = Scrubber(
            (password, f"\0{settings.username}\0{password}") if password else ()
        )
        # The configuration checked the sender's shape already.
        display_name, self._sender = parse_mailbox(settings.from_address)
        self._from = mime.mailbox("From", display_name, self._sender)
        self._local_hostname: str | None = None
        # Most recently used last: reuse the warmest, let the coldest time out.
        self._idle: deque[_Connection] = deque()
        self.connections_opened = 0
        # After a failed connection, new ones fail at once until this time (monotonic).
        self._unreachable_until = 0.0
        self._unreachable_reason = ""

    async def close(self) -> None:
        """Say QUIT on every idle connection."""
        idle, self._idle = list(self._idle), deque()
        await asyncio.gather(*(self._quit(connection) for connection in idle))

    async def send(self, message: OutgoingMessage) -> dict[str, Any]:
        """Deliver one message; return the SMTP server's answer to DATA."""
        if not self._settings.host:
            raise PermanentProviderError("email channel is not configured")
        if not message.recipient.email:
            raise PermanentProviderError("user has no email address")
        # Another application may have written any address the database's looser check
        # lets in: one that is not an addr-spec fails here, before any SMTP command, and
        # for good (retrying cannot change it).
        to, unusable = email_message.recipient(message.recipient.email)
        if to is None:
            raise PermanentProviderError(f"the user's email address cannot be used: {unusable}")
        email_message.refuse_line_breaks(message.subject)
        if not self._idle:
            # Fails before a timer is armed: a server that is down refuses every attempt,
            # so this is the path that runs thousands of times a second.
            self._refuse_while_unreachable()
        error: ProviderError | None = None
        try:
            answer, mail = await self._deliver(
                lambda: email_message.build(message, to, self._from, self._sender), to
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ValueError) as exc:
            error = self._translate(exc)
            if not self._leaks_password(exc):
                raise error from exc
        if error is not None:
            # The library's exception quotes the password (a server echoed it back): raised
            # out here the error has no __context__, which `from None` would keep.
            raise error from None
        message_id = str(mail["Message-ID"])
        log.debug("email_accepted", notification_id=message.notification_id, message_id=message_id)
        return {"smtp_code": 250, "smtp_message": answer, "message_id": message_id}

    @property
    def missing_setting(self) -> str | None:
        return None if self._settings.host else "channels.email.host"

    async def check(self) -> str:
        """Connect (with TLS as configured), log in if a username is set, and say QUIT."""
        settings = self._settings
        if not settings.host:
            raise PermanentProviderError("email channel is not configured")
        error: ProviderError | None = None
        try:
            async with asyncio.timeout(settings.timeout):
                connection = await self._connect()  # logs in when a username is set
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ValueError) as exc:
            error = self._translate(exc)
            if not self._leaks_password(exc):
                raise error from exc
        if error is not None:
            raise error from None  # as in `send`: no context that quotes the password
        await self._quit(connection)
        security = _SECURITY_NAMES[settings.security]
        done = f"connected to {settings.host}:{settings.port} ({security})"
        if settings.username:
            return f"{done}, logged in as {settings.username}"
        return f"{done}; no username set, so no login tried"

    async def _deliver(
        self, build: Callable[[], EmailMessage], recipient: str
    ) -> tuple[str, EmailMessage]:
        """Hand the message to the server; return its answer to DATA, and the message.

        The message is built only once a connection is there: building one costs more
        than a refused connection, and a server that is down refuses every attempt.
        """
        # aiosmtplib's timeout bounds each network operation; this one bounds the attempt.
        async with asyncio.timeout(self._settings.timeout):
            connection, reused = await self._acquire()
            try:
                mail = build()
            except PermanentProviderError:
                await self._release(connection)  # the connection itself is fine
                raise
            sender = self._sender
            try:
                answer = await self._send(connection, mail, sender, recipient)
            except aiosmtplib.SMTPServerDisconnected:
                self._discard(connection)
                if not reused:
                    raise
                # The server closed a pooled connection while it sat idle: once more on a
                # fresh one, which fails for real if the server is really gone.
                connection = await self._connect()
                try:
                    answer = await self._send(connection, mail, sender, recipient)
                except BaseException:
                    self._discard(connection)
                    raise
            except BaseException:
                self._discard(connection)
                raise
        # Outside the deadline: the message is accepted, a slow goodbye must not fail it.
        await self._release(connection)
        return answer, mail

    @staticmethod
    async def _send(
        connection: _Connection, mail: EmailMessage, sender: str, recipient: str
    ) -> str:
        # One recipient: if it is refused, aiosmtplib raises SMTPRecipientsRefused rather
        # than returning a partial-failure dict.
        _, answer = await connection.smtp.send_message(mail, sender=sender, recipients=[recipient])
        connection.messages += 1
        return answer

    async def _acquire(self) -> tuple[_Connection, bool]:
        """An idle pooled connection, else a new one; and whether it was pooled."""
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if connection.smtp.is_connected and (
                now - connection.idle_since < self._settings.pool_idle_timeout
            ):
                return connection, True
            self._discard(connection)
        return await self._connect(), False

    def _refuse_while_unreachable(self) -> None:
        if time.monotonic() < self._unreachable_until:
            # The server refused a connection moments ago: do not knock again yet. Under
            # load this spares a server that is down, and this daemon's CPU.
            raise TransientProviderError(
                f"SMTP connection failed: {self._unreachable_reason}"
                f" (not tried again for {self._settings.connect_cooldown:g}s)"
            )

    async def _connect(self) -> _Connection:
        settings = self._settings
        self._refuse_while_unreachable()
        if self._local_hostname is None:
            # aiosmtplib resolves the FQDN in a thread on every connect; do it once.
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        smtp = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            username=settings.username or None,
            password=settings.password.get_secret_value() if settings.username else None,
            use_tls=settings.security == "tls",
            # False, not None: None would mean "upgrade if the server offers it".
            start_tls=settings.security == "starttls",
            validate_certs=settings.validate_certs,
            timeout=settings.timeout,
            local_hostname=self._local_hostname,
        )
        try:
            await smtp.connect()  # closes the client itself when it fails
        except aiosmtplib.SMTPResponseException:
            raise  # the server answered (a refused login, a 4xx greeting): not unreachable
        except (ConnectionError, OSError, TimeoutError) as exc:
            # This host out of descriptors says nothing about the server: no cooldown.
            if local_resource_error("SMTP", exc) is None:
                self._unreachable_until = time.monotonic() + settings.connect_cooldown
                self._unreachable_reason = self._scrub(f"{type(exc).__name__}: {exc}")
            raise
        self.connections_opened += 1
        return _Connection(smtp)

    async def _release(self, connection: _Connection) -> None:
        """Done with a healthy connection: back to the pool, or QUIT if it has no room."""
        settings = self._settings
        if (
            connection.smtp.is_connected
            and len(self._idle) < settings.pool_size
            and connection.messages < settings.max_messages_per_connection
        ):
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
            return
        await self._quit(connection)

    async def _quit(self, connection: _Connection) -> None:
        try:
            await connection.smtp.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass  # the messages were accepted already; only the goodbye failed
        finally:
            connection.smtp.close()

    def _discard(self, connection: _Connection) -> None:
        """Drop a connection whose state is unknown after a failure, without talking to it."""
        connection.smtp.close()

    def _translate(self, exc: BaseException) -> ProviderError:
        """The provider error for a failure of aiosmtplib or the network."""
        error = smtp_replies.provider_error(exc, self._scrub)
        if isinstance(error, ThrottledError):
            smtp_code = error.response["smtp_code"] if error.response else None
            log.warning("smtp_rate_limited", smtp_code=smtp_code, scope=error.scope)
        return error

    def _scrub(self, text: str) -> str:
        return self._scrubber.scrub(text)

    def _leaks_password(self, exc: BaseException) -> bool:
        return self._scrubber.leaks(exc)
