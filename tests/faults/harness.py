"""What the fault tests share: `notifyd serve` instances wired to the fakes, and checks.

What was delivered, and how often, is read from the database (the truth) and from what
the fake vendors received, never from the daemon's own account of what it did.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.acceptance.daemon_process import DaemonProcess, free_port
from tests.fakes.smtp import FakeSmtpServer, ReceivedMail, _Handler, _TrackedSMTP
from tests.fakes.telegram import FakeTelegramApi
from tests.support import TERMINAL, wait_until

# providers/email_message.py builds the Message-ID as <notifyd.{id}.{digest}@{domain}>.
_MESSAGE_ID = re.compile(r"<notifyd\.(\d+)\.")


class ObservedSmtpServer(FakeSmtpServer):
    """The fake SMTP server, also telling what its sessions are doing right now."""

    def __init__(self) -> None:
        super().__init__()
        # Messages fully sent by the client and not answered yet (the "slow" wait).
        self.in_data = 0
        # Sessions inside a mail transaction (MAIL accepted, DATA not answered yet).
        self._transactions: set[SMTP] = set()
        # When each message in `received` was kept (time.monotonic()).
        self.received_at: list[float] = []
        # Called with the number of messages kept so far, after one is kept and before
        # the client gets its 250: a fault injected here hits the worst moment.
        self.on_stored: Callable[[int], None] | None = None

    @property
    def open_connections(self) -> int:
        """SMTP sessions not yet closed: an upper bound on the messages in flight."""
        return len(self._connections)

    @property
    def in_transaction(self) -> int:
        """Messages under way: MAIL accepted, the answer to DATA not given yet.

        Unlike `open_connections`, idle pooled connections do not count.
        """
        self._transactions &= self._connections  # a dropped connection ends its transaction
        return len(self._transactions)

    def _protocol(self) -> SMTP:
        # As FakeSmtpServer._protocol, with a handler that counts the DATA waits.
        protocol = _TrackedSMTP(
            _CountingHandler(self),
            owner=self,
            hostname="fake-smtp.test",
            authenticator=self._authenticate,
            auth_require_tls=False,
            loop=asyncio.get_running_loop(),
        )
        self._connections.add(protocol)
        self.connection_count += 1
        return protocol

    async def _store(self, envelope: Envelope) -> None:
        await super()._store(envelope)
        self.received_at.append(time.monotonic())
        if self.on_stored is not None:
            self.on_stored(len(self.received))


class _CountingHandler(_Handler):
    def __init__(self, server: ObservedSmtpServer) -> None:
        super().__init__(server)
        self._observed = server

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        reply = await super().handle_MAIL(server, session, envelope, address, mail_options)
        if reply.startswith("250"):
            self._observed._transactions.add(server)
        return reply

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self._observed._transactions.discard(server)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self._observed.in_data += 1
        try:
            return await super().handle_DATA(server, session, envelope)
        finally:
            self._observed.in_data -= 1
            self._observed._transactions.discard(server)


@dataclass
class Instance:
    """One `notifyd serve` subprocess and the port its API answers on."""

    process: DaemonProcess
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def returncode(self) -> int | None:
        return self.process.process.returncode

    def events(self, name: str) -> list[dict[str, Any]]:
        """The log events called `name`, oldest first."""
        found = []
        for line in list(self.process.lines):
            if f'"{name}"' not in line:
                continue
            event: dict[str, Any] = json.loads(line)
            if event.get("event") == name:
                found.append(event)
        return found

    async def wait_for_events(
        self, name: str, count: int = 1, deadline: float = 30.0
    ) -> list[dict[str, Any]]:
        """Wait until the log holds at least `count` events called `name`."""

        async def enough() -> list[dict[str, Any]]:
            if self.returncode is not None:
                raise AssertionError(
                    f"notifyd exited ({self.returncode}) before {count} {name}: "
                    f"{self.process.tail()}"
                )
            events = self.events(name)
            return events if len(events) >= count else []

        return await wait_until(
            enough, deadline=deadline, interval=0.05, what=f"{count} {name} event(s)"
        )


class Launcher:
    """Starts `notifyd serve` instances on one database, wired to the fake vendors.

    `settings` are dotted keys (`"delivery.lease_seconds"`) turned into NOTIFYD_*
    variables; every instance is stopped (SIGTERM, then SIGKILL) when the test ends.
    """

    def __init__(
        self,
        cwd: Path,
        database_url: str,
        smtp: FakeSmtpServer | None = None,
        telegram: FakeTelegramApi | None = None,
        *,
        base_settings: Mapping[str, object] | None = None,
        ready_event: str = "listener_connected",
    ) -> None:
        self.cwd = cwd
        self.database_url = database_url
        self.smtp = smtp
        self.telegram = telegram
        # Settings every instance gets (a test's own win), and the log event that says an
        # instance is ready to claim: its listener connected, or its start when poll-only.
        self.base_settings = dict(base_settings or {})
        self.ready_event = ready_event
        self.started: list[Instance] = []

    def environment(self, port: int, settings: Mapping[str, object]) -> dict[str, str]:
        values: dict[str, object] = {
            "database.url": self.database_url,
            "http.port": port,
            "log.level": "info",
        }
        if self.smtp is not None:
            values["channels.email.host"] = self.smtp.host
            values["channels.email.port"] = self.smtp.port
        if self.telegram is not None:
            values["channels.telegram.api_url"] = self.telegram.url
            values["channels.telegram.bot_token"] = self.telegram.token
        values.update(self.base_settings)
        values.update(settings)
        return {
            "NOTIFYD_" + key.upper().replace(".", "__"): str(value) for key, value in values.items()
        }

    async def start(
        self,
        settings: Mapping[str, object] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> Instance:
        """Start an instance and wait until its API answers and its listener is connected."""
        port = free_port()
        process = DaemonProcess(
            ["serve"], self.environment(port, settings or {}), cwd=self.cwd, preexec_fn=preexec_fn
        )
        instance = Instance(process, port)
        self.started.append(instance)
        await process.start()
        await process.wait_for_event("notifyd_started", deadline=60)
        await process.wait_for_event(self.ready_event, deadline=60)
        return instance

    async def stop_all(self) -> None:
        if self.smtp is not None:
            self.smtp.mode = "accept"  # nothing left for a stopping instance to wait on
        for instance in self.started:
            await instance.process.stop()


# Arranging rows


async def create_users(
    db: asyncpg.Connection,
    count: int,
    *,
    email: bool = True,
    phone: bool = True,
    telegram_chat_id: int | None = None,
) -> list[int]:
    """`count` users with the asked contacts, made in one statement."""
    rows = await db.fetch(
        """
        INSERT INTO notifyd.users (email, phone, telegram_chat_id)
        SELECT CASE WHEN $2 THEN 'user' || i || '@example.com' END,
               CASE WHEN $3 THEN '+1555' || lpad(i::text, 7, '0') END,
               $4::text
        FROM generate_series(1, $1) AS i
        RETURNING id
        """,
        count,
        email,
        phone,
        None if telegram_chat_id is None else str(telegram_chat_id),
    )
    return [row["id"] for row in rows]


async def enqueue(
    db: asyncpg.Connection, user_ids: Sequence[int], channels: Sequence[str], tag: str
) -> list[int]:
    """One notification per user, with a unique message text, in one transaction."""
    rows = await db.fetch(
        """
        SELECT notifyd.enqueue(t.user_id, $2 || ' #' || t.n, 'fault test', $3::text[]) AS id
        FROM unnest($1::bigint[]) WITH ORDINALITY AS t (user_id, n)
        ORDER BY t.n
        """,
        list(user_ids),
        tag,
        list(channels),
    )
    return [row["id"] for row in rows]


# Checking rows


async def statuses(db: asyncpg.Connection, ids: Sequence[int]) -> Counter[str]:
    rows = await db.fetch(
        "SELECT status, count(*) AS n FROM notifyd.notifications"
        " WHERE id = ANY($1::bigint[]) GROUP BY status",
        list(ids),
    )
    return Counter({row["status"]: row["n"] for row in rows})


async def wait_all_terminal(
    db: asyncpg.Connection, ids: Sequence[int], deadline: float, what: str = "all terminal"
) -> float:
    """Wait until every notification in `ids` is sent or failed; return the seconds taken."""
    started = time.monotonic()

    async def terminal() -> bool:
        counts = await statuses(db, ids)
        return sum(counts[status] for status in TERMINAL) == len(ids)

    try:
        await wait_until(terminal, deadline=deadline, interval=0.1, what=what)
    except AssertionError:
        raise AssertionError(f"{what}: still {dict(await statuses(db, ids))}") from None
    return time.monotonic() - started


@dataclass(frozen=True)
class AttemptLog:
    """The attempt log of some notifications, summed up."""

    successes: dict[int, int]  # notification id -> successful attempts
    failures: dict[int, int]  # notification id -> failed attempts
    rows: list[asyncpg.Record]

    def total_failures(self) -> int:
        return sum(self.failures.values())


async def attempt_log(db: asyncpg.Connection, ids: Sequence[int]) -> AttemptLog:
    rows = await db.fetch(
        """
        SELECT notification_id, channel, attempt, status, error, transient,
               provider_response::text AS provider_response, started_at, finished_at
        FROM notifyd.notification_attempts
        WHERE notification_id = ANY($1::bigint[])
        ORDER BY notification_id, id
        """,
        list(ids),
    )
    successes: Counter[int] = Counter()
    failures: Counter[int] = Counter()
    for row in rows:
        target = successes if row["status"] == "success" else failures
        target[row["notification_id"]] += 1
    return AttemptLog(dict(successes), dict(failures), rows)


async def check_sent_have_one_success(db: asyncpg.Connection, ids: Sequence[int]) -> AttemptLog:
    """Every `sent` notification has exactly one successful attempt; nothing else has one."""
    log = await attempt_log(db, ids)
    rows = await db.fetch(
        "SELECT id, status FROM notifyd.notifications WHERE id = ANY($1::bigint[])", list(ids)
    )
    for row in rows:
        expected = 1 if row["status"] == "sent" else 0
        got = log.successes.get(row["id"], 0)
        assert got == expected, (
            f"notification {row['id']} is {row['status']} with {got} successful attempt(s)"
        )
    return log


def notification_ids(mails: Sequence[ReceivedMail]) -> list[int]:
    """The notification id of each message, read from its Message-ID."""
    ids = []
    for mail in mails:
        match = _MESSAGE_ID.search(str(mail.message["Message-ID"]))
        assert match is not None, f"no notification id in Message-ID {mail.message['Message-ID']}"
        ids.append(int(match.group(1)))
    return ids


def mails_per_notification(smtp: FakeSmtpServer) -> Counter[int]:
    """How many times the SMTP server accepted a message for each notification id."""
    return Counter(notification_ids(smtp.received))


def duplicates(counts: Counter[int]) -> int:
    """Messages received beyond the first for each notification."""
    return sum(count - 1 for count in counts.values() if count > 1)


@dataclass(frozen=True)
class DeathSnapshot:
    """What a dead instance left behind: mail accepted by the server, attempts recorded.

    Taken once the instance is gone and its SMTP sessions have ended, so nothing changes
    it any more until another instance starts.
    """

    accepted: frozenset[int]  # notifications whose e-mail the server kept
    recorded: frozenset[int]  # notifications with a successful attempt in the database

    @property
    def unrecorded(self) -> frozenset[int]:
        """Delivered, but the database does not know: the only possible duplicates."""
        return self.accepted - self.recorded


async def snapshot_after_death(
    db: asyncpg.Connection, smtp: ObservedSmtpServer, ids: Sequence[int]
) -> DeathSnapshot:
    """Wait until the dead instance's SMTP sessions ended; then see what it left."""

    async def sessions_ended() -> bool:
        return smtp.in_data == 0

    await wait_until(sessions_ended, deadline=30, what="the dead instance's SMTP sessions")
    log = await attempt_log(db, ids)
    return DeathSnapshot(frozenset(mails_per_notification(smtp)), frozenset(log.successes))


def check_duplicates_came_from(mails: Counter[int], snapshot: DeathSnapshot) -> int:
    """Duplicates only of mail the dead instance sent and never recorded, each one at most."""
    repeated = {notification_id for notification_id, count in mails.items() if count > 1}
    assert repeated <= snapshot.unrecorded, (
        f"sent again although recorded as sent: {sorted(repeated - snapshot.unrecorded)}"
    )
    assert max(mails.values(), default=0) <= 2, mails.most_common(3)
    return len(repeated)
