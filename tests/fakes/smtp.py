"""A real SMTP server (aiosmtpd) on the test's own event loop, with switchable failures.

It runs on the current loop rather than in aiosmtpd's `Controller` thread, so a test
decides exactly when the server answers and nothing races behind its back.
"""

from __future__ import annotations

import asyncio
import base64
import email.policy
import socket
import time
from collections import deque
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from typing import Any, Literal

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

Mode = Literal["accept", "tempfail", "reject", "slow"]
Stage = Literal["rcpt", "data"]

TEMPFAIL_REPLY = "451 4.3.0 Temporary failure, try again later"
REJECT_REPLY = "550 5.1.1 Mailbox does not exist"
# What a server limiting its clients answers beyond its rate (Postfix's anvil, SES, Gmail
# say much the same), and when it also drops the session.
RATE_LIMIT_REPLY = "451 4.7.1 Rate limit exceeded, try again later"
CLOSING_REPLY = "421 4.7.0 Too many messages, closing connection"


@dataclass(frozen=True)
class ReceivedMail:
    """One accepted message: its SMTP envelope and the parsed content."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes


def unused_port() -> int:
    """A loopback port nothing listens on right now (for "connection refused")."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class FakeSmtpServer:
    """An SMTP server on 127.0.0.1 that accepts, defers, rejects or stalls on demand.

    `mode` may be switched at any time and applies to the next command:
    - "accept": keep every message (`received`, `messages`);
    - "tempfail": answer `tempfail_reply` (451 4.3.0) at `fail_at` ("rcpt" or "data");
    - "reject": answer `reject_reply` (550 5.1.1) at `fail_at`;
    - "slow": wait `delay` seconds before answering DATA, then accept. A client that
      gives up first drops the connection, which cancels the wait: nothing is kept.
    With `username` and `password`, MAIL is refused (530) until AUTH succeeds; AUTH is
    offered over the plain connection, since tests have no TLS, with the mechanisms in
    `auth_mechanisms`. With `echo_auth`, every AUTH fails and the 535 reply quotes what the
    client sent, as some broken servers do: AUTH PLAIN's blob (base64 of
    `\0user\0password`), AUTH LOGIN's base64 password.
    """

    def __init__(
        self,
        *,
        mode: Mode = "accept",
        fail_at: Stage = "rcpt",
        delay: float = 5.0,
        username: str | None = None,
        password: str | None = None,
        port: int = 0,
        auth_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN"),
        echo_auth: bool = False,
    ) -> None:
        self.mode: Mode = mode
        self.fail_at: Stage = fail_at
        self.delay = delay
        self.tempfail_reply = TEMPFAIL_REPLY
        self.reject_reply = REJECT_REPLY
        self.username = username
        self.password = password
        self.auth_mechanisms = auth_mechanisms
        self.echo_auth = echo_auth
        self.host = "127.0.0.1"
        self.port = port
        self.received: list[ReceivedMail] = []
        self.logins: list[str] = []  # usernames that authenticated successfully
        self.failed_logins = 0
        self.connection_count = 0  # connections accepted since creation
        # Connections to drop, without a word, on their next MAIL: what a server that closed
        # an idle connection looks like to a client that had not noticed yet.
        self.drop_on_next_mail = 0
        # At most `rate_limit` messages (MAIL commands) in any second (None: no limit):
        # beyond it MAIL is answered `rate_limit_reply`, and a 421 reply closes the session.
        # Refused MAILs are counted in `refused`; `accepted_at` holds when each was let in.
        self.rate_limit: float | None = None
        self.rate_tolerance = 0.05
        self.rate_limit_reply = RATE_LIMIT_REPLY
        self.refused = 0
        self.accepted_at: list[float] = []
        self._window: deque[float] = deque()
        self._server: asyncio.Server | None = None
        self._connections: set[SMTP] = set()
        self._changed = asyncio.Condition()

    @property
    def messages(self) -> list[EmailMessage]:
        """The parsed messages received so far, oldest first."""
        return [mail.message for mail in self.received]

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._server is not None

    async def start(self) -> None:
        """Listen; after a `stop`, listen again on the same port."""
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop open connections: the server is "down"."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for protocol in list(self._connections):
            if protocol.transport is not None:
                protocol.transport.abort()  # type: ignore[attr-defined]
        self._connections.clear()
        await server.wait_closed()

    async def __aenter__(self) -> FakeSmtpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def wait_for_messages(
        self,
        count: int,
        timeout: float = 5.0,  # noqa: ASYNC109  (a deadline; clear failure)
    ) -> list[EmailMessage]:
        """Wait until at least `count` messages arrived; fail after `timeout` seconds."""
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: len(self.received) >= count), timeout
                )
            except TimeoutError:
                raise AssertionError(
                    f"expected {count} message(s) within {timeout}s, got {len(self.received)}"
                ) from None
        return self.messages

    def over_rate(self) -> str | None:
        """The refusal due to a MAIL now, or None (and the MAIL is counted)."""
        if self.rate_limit is None:
            return None
        now = time.monotonic()
        # The window forgives as much jitter as the fake Bot API's (`FloodControl`).
        window = 1.0 - self.rate_tolerance
        while self._window and self._window[0] <= now - window:
            self._window.popleft()
        if len(self._window) >= self.rate_limit:
            self.refused += 1
            return self.rate_limit_reply
        self._window.append(now)
        self.accepted_at.append(now)
        return None

    def _protocol(self) -> SMTP:
        protocol = _TrackedSMTP(
            _Handler(self),
            owner=self,
            hostname="fake-smtp.test",  # not socket.getfqdn(): it may wait on DNS
            authenticator=self._authenticate,
            auth_require_tls=False,
            auth_exclude_mechanism=[m for m in ("PLAIN", "LOGIN") if m not in self.auth_mechanisms],
            loop=asyncio.get_running_loop(),
        )
        self._connections.add(protocol)
        self.connection_count += 1
        return protocol

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if (
            self.username is not None
            and isinstance(data, LoginPassword)
            and data.login.decode() == self.username
            and data.password.decode() == self.password
        ):
            self.logins.append(self.username)
            return AuthResult(success=True)
        self.failed_logins += 1
        return AuthResult(success=False, handled=False)

    async def _store(self, envelope: Envelope) -> None:
        raw = envelope.original_content
        assert isinstance(raw, bytes)
        parsed = message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        mail = ReceivedMail(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            message=parsed,
            raw=raw,
        )
        async with self._changed:
            self.received.append(mail)
            self._changed.notify_all()


class _TrackedSMTP(SMTP):
    """aiosmtpd's protocol, forgetting itself when its connection ends."""

    def __init__(self, handler: _Handler, *, owner: FakeSmtpServer, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._owner = owner

    def connection_lost(self, error: Exception | None) -> None:
        self._owner._connections.discard(self)
        super().connection_lost(error)


class _Handler:
    """aiosmtpd hooks that apply the server's current mode."""

    def __init__(self, server: FakeSmtpServer) -> None:
        self._server = server

    async def handle_AUTH(
        self, server: SMTP, session: Session, envelope: Envelope, args: list[str]
    ) -> Any:
        if not self._server.echo_auth:
            return MISSING  # aiosmtpd's own AUTH, with `_authenticate`
        self._server.failed_logins += 1
        mechanism = args[0].upper()
        if mechanism == "LOGIN":
            password = await server.challenge_auth("Password:")
            if not isinstance(password, bytes):
                return None  # the client gave up; aiosmtpd has answered
            sent = base64.b64encode(password).decode()
        else:
            sent = args[1] if len(args) > 1 else ""
        return f"535 5.7.8 Authentication failed for {sent}"

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self._server.username is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        if (refusal := self._server.over_rate()) is not None:
            if refusal.startswith("421"):
                # The reply goes out first: close() flushes what is written.
                transport = server.transport
                assert transport is not None
                asyncio.get_running_loop().call_soon(transport.close)
            return refusal
        if self._server.drop_on_next_mail > 0:
            self._server.drop_on_next_mail -= 1
            assert server.transport is not None
            server.transport.abort()
            return "421 4.4.2 dropped"  # never reaches the client
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        failure = self._failure("rcpt")
        if failure is not None:
            return failure
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        failure = self._failure("data")
        if failure is not None:
            return failure
        if self._server.mode == "slow":
            await asyncio.sleep(self._server.delay)  # the fault itself, not a test wait
        await self._server._store(envelope)
        return "250 2.0.0 OK: queued as FAKE"

    def _failure(self, stage: Stage) -> str | None:
        if self._server.fail_at != stage:
            return None
        if self._server.mode == "tempfail":
            return self._server.tempfail_reply
        if self._server.mode == "reject":
            return self._server.reject_reply
        return None
