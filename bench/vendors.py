"""Scenario 7, vendors: delivery at a vendor's pace, and e-mail against the bare library.

- **Paced**: notifyd against a fake vendor that enforces R messages a second (the fakes
  of the test suite, run in this process): the fake Bot API with Telegram's flood control
  at R = 30, and an aiosmtpd server that answers `451 4.7.1` beyond 100 MAILs a second
  (notifyd told `channels.email.rate_limit = 100`, as an operator would be). The rate is
  the fake's own count: messages it accepted over the time from its first to its last;
  refused is its 429s (or 451s) over all requests. Targets: ≥ 0.9 R, ≤ 2 % refused.
- **E-mail throughput**: an aiosmtpd sink in its own process; notifyd drains N e-mails
  to it with `concurrency` connections, and the bare aiosmtplib loop
  (`bench/smtp_peers.py`) sends N over as many connections, in its own process, right
  after. Target: notifyd ≥ 0.8 of the loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Final

import asyncpg

from bench.harness import Bench, MeasureError, drain_timeout, seconds_between, stop_all, wait_done
from bench.procs import Child, free_port, line_ready, python_argv
from bench.report import Figure
from bench.tables import NOTIFYD
from tests.fakes.smtp import FakeSmtpServer
from tests.fakes.telegram import FakeTelegramApi, FloodControl

TOKEN: Final = "123456:BENCH-token-abcdefghijklmnopqrstuv"  # noqa: S105  (the fake's)
TELEGRAM_RATE: Final = 30
SMTP_RATE: Final = 100
CONNECTIONS: Final = 10


async def scenario_vendors(bench: Bench) -> list[Figure]:
    quick = bench.params.drain_sizes[0] < 20_000
    figures = await _telegram(bench, 450 if quick else 900)
    figures += await _smtp_paced(bench, 1_000 if quick else 2_000)
    figures += await _email_throughput(bench, 3_000 if quick else 10_000)
    return figures


async def _drain(
    bench: Bench, label: str, count: int, channels: list[str], env: dict[str, str]
) -> dict[str, Any]:
    """Insert `count` notifications on `channels`; wait for them; the database's figures."""
    name, url, children = await bench.setup(label, lambda url: [bench.daemon(label, url, env=env)])
    try:
        await asyncio.sleep(1.0)  # startup settles
        connection = await asyncpg.connect(url)
        try:
            async with connection.transaction():
                await connection.execute(NOTIFYD.insert_series, count, bench.params.users, channels)
            committed = await connection.fetchval("SELECT clock_timestamp()")
            await wait_done(
                connection, count, children, deadline=drain_timeout(count), interval=0.2
            )
            stats = await connection.fetchrow(NOTIFYD.stats)
            throttled = await connection.fetchval(
                "SELECT count(*) FROM notifyd.notification_attempts WHERE status = 'throttled'"
            )
        finally:
            await connection.close()
    finally:
        await stop_all(children)
        await bench.pg.drop_database(name)
    assert stats is not None
    seconds = seconds_between(stats["last_finished"], committed)
    return {
        "sent": stats["sent"],
        "failed": stats["failed"],
        "attempts": stats["attempts"],
        "throttled_attempts": throttled,
        "db_seconds": seconds,
        "per_second": None if not seconds else round(count / seconds, 1),
    }


def _rate(times: list[float]) -> float | None:
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return (len(times) - 1) / (times[-1] - times[0])


def _paced_figures(
    what: str, rate: int, accepted: list[float], refused: int, details: dict[str, Any]
) -> list[Figure]:
    delivered = _rate(accepted)
    requests = len(accepted) + refused
    share = 100 * refused / requests if requests else None
    details = {**details, "accepted": len(accepted), "refused": refused}
    return [
        Figure(
            scenario="vendors",
            name=f"{what} delivered at its limit",
            unit="msg/s",
            value=None if delivered is None else round(delivered, 2),
            reference=float(rate),
            reference_name=f"the vendor's limit, {rate}/s",
            target_kind="ratio_at_least",
            target=0.9,
            details=details,
        ),
        Figure(
            scenario="vendors",
            name=f"{what} requests refused",
            unit="%",
            value=None if share is None else round(share, 2),
            target_kind="at_most",
            target=2.0,
            details={"refused": refused, "requests": requests},
        ),
    ]


async def _telegram(bench: Bench, count: int) -> list[Figure]:
    chats = set(range(1, bench.params.users + 1))
    fake = FakeTelegramApi(TOKEN, chats=chats, limits=FloodControl(per_second=TELEGRAM_RATE))
    await fake.start()
    try:
        env = {
            "NOTIFYD_CHANNELS__TELEGRAM__API_URL": fake.url,
            "NOTIFYD_CHANNELS__TELEGRAM__BOT_TOKEN": TOKEN,
            "NOTIFYD_CHANNELS__TELEGRAM__RATE_LIMIT": str(TELEGRAM_RATE),
        }
        drained = await _drain(bench, f"telegram-paced-{count}", count, ["telegram"], env)
    finally:
        await fake.stop()
    bench.log(
        f"  telegram at {TELEGRAM_RATE}/s: {len(fake.sent)} sent, {len(fake.refused)} refused"
    )
    return _paced_figures("telegram", TELEGRAM_RATE, fake.sent_at, len(fake.refused), drained)


async def _smtp_paced(bench: Bench, count: int) -> list[Figure]:
    server = FakeSmtpServer()
    server.rate_limit = SMTP_RATE
    await server.start()
    try:
        env = {
            **_email_env(server.port),
            "NOTIFYD_CHANNELS__EMAIL__RATE_LIMIT": str(SMTP_RATE),
            # Enough connections that the limit, not a round trip's latency, binds.
            "NOTIFYD_CHANNELS__EMAIL__CONCURRENCY": str(2 * CONNECTIONS),
            "NOTIFYD_CHANNELS__EMAIL__POOL_SIZE": str(2 * CONNECTIONS),
        }
        drained = await _drain(bench, f"smtp-paced-{count}", count, ["email"], env)
    finally:
        await server.stop()
    bench.log(f"  smtp at {SMTP_RATE}/s: {len(server.received)} sent, {server.refused} refused")
    return _paced_figures("smtp", SMTP_RATE, server.accepted_at, server.refused, drained)


def _email_env(port: int) -> dict[str, str]:
    return {
        "NOTIFYD_CHANNELS__EMAIL__HOST": "127.0.0.1",
        "NOTIFYD_CHANNELS__EMAIL__PORT": str(port),
        "NOTIFYD_CHANNELS__EMAIL__CONCURRENCY": str(CONNECTIONS),
        "NOTIFYD_CHANNELS__EMAIL__POOL_SIZE": str(CONNECTIONS),
        "NOTIFYD_CHANNELS__EMAIL__FROM_ADDRESS": "bench@example.com",
    }


async def _email_throughput(bench: Bench, count: int) -> list[Figure]:
    port = free_port()
    sink = Child(
        name="smtp-sink",
        argv=python_argv("-m", "bench.smtp_peers", "sink", str(port)),
        env={},
        log_dir=bench.run_dir,
        cwd=bench.run_dir,
        ready=line_ready("ready"),
    )
    await sink.start()
    try:
        drained = await _drain(bench, f"email-sink-{count}", count, ["email"], _email_env(port))
        bare = await _bare_loop(bench, port, count, prebuilt=False)
        sending_only = await _bare_loop(bench, port, count, prebuilt=True)
    finally:
        await sink.stop()
    bench.log(
        f"  e-mail to a sink, {CONNECTIONS} connections: notifyd {drained['per_second']}/s,"
        f" bare aiosmtplib loop {bare['per_second']}/s,"
        f" sending prebuilt messages {sending_only['per_second']}/s"
    )
    return [
        Figure(
            scenario="vendors",
            name=f"e-mail to an SMTP sink, {CONNECTIONS} connections",
            unit="mails/s",
            value=drained["per_second"],
            reference=bare["per_second"],
            reference_name="bare aiosmtplib loop",
            target_kind="ratio_at_least",
            target=0.8,
            details={"notifyd": drained, "bare": bare},
        ),
        Figure(
            scenario="vendors",
            name=f"e-mail to an SMTP sink, {CONNECTIONS} connections (vs sending only)",
            unit="mails/s",
            value=drained["per_second"],
            reference=sending_only["per_second"],
            reference_name="bare loop, messages built beforehand",
            details={"notifyd": drained, "bare": sending_only},
        ),
    ]


async def _bare_loop(bench: Bench, port: int, count: int, *, prebuilt: bool) -> dict[str, Any]:
    extra = ["--prebuilt"] if prebuilt else []
    loop = Child(
        name="smtp-bare-loop" + ("-prebuilt" if prebuilt else ""),
        argv=python_argv(
            "-m", "bench.smtp_peers", "loop", str(port), str(CONNECTIONS), str(count), *extra
        ),
        env={},
        log_dir=bench.run_dir,
        cwd=bench.run_dir,
    )
    await loop.start()
    assert loop.process is not None
    give_up = time.monotonic() + drain_timeout(count)
    while loop.process.returncode is None:
        if time.monotonic() > give_up:
            await loop.stop()
            raise MeasureError(f"the bare loop did not finish {count} mails")
        await asyncio.sleep(0.2)
    if loop.process.returncode != 0:
        raise MeasureError(f"the bare loop failed: {loop.tail()}")
    result: dict[str, Any] = json.loads(
        loop.stdout_path.read_text("utf-8").strip().splitlines()[-1]
    )
    return result
