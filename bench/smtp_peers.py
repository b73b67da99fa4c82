"""The e-mail reference's two processes: an SMTP sink, and the bare aiosmtplib loop.

    python -m bench.smtp_peers sink PORT
        an aiosmtpd server on 127.0.0.1:PORT that takes every message and keeps none;
        prints "ready", and on SIGTERM the count it took.
    python -m bench.smtp_peers loop PORT CONNECTIONS COUNT [--prebuilt]
        CONNECTIONS aiosmtplib clients, each connected once, that send COUNT messages
        between them as fast as the sink takes them (each a UTF-8 plain-text message with
        a subject, a Message-ID and a date, built with the standard library's
        EmailMessage; with --prebuilt, built before the clock starts, so that only sending
        is timed); prints a JSON line with the count, the seconds and the rate.

Neither imports notifyd: this is what sending e-mail costs with the same library and the
same number of connections, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import aiosmtplib
from aiosmtpd.smtp import SMTP, Envelope, Session

FROM = "bench@example.com"


class _Sink:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.count += 1
        return "250 2.0.0 OK"


async def sink(port: int) -> None:
    handler = _Sink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.bench", loop=loop), "127.0.0.1", port
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()
    print(json.dumps({"received": handler.count}), flush=True)


def _message(n: int) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = FROM
    mail["To"] = f"user{n}@example.com"
    mail["Subject"] = "bench"
    mail["Message-ID"] = make_msgid(domain="example.com")
    mail["Date"] = format_datetime(datetime.now(UTC))
    mail.set_content(f"benchmark message {n}", charset="utf-8")
    return mail


async def _client(port: int, numbers: range, raw: dict[int, bytes] | None) -> None:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, use_tls=False)
    await smtp.connect()
    try:
        for n in numbers:
            to = [f"user{n}@example.com"]
            if raw is not None:
                await smtp.sendmail(FROM, to, raw[n])
            else:
                await smtp.send_message(_message(n), sender=FROM, recipients=to)
    finally:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await smtp.quit()


async def loop(port: int, connections: int, count: int, prebuilt: bool) -> dict[str, Any]:
    # Built before the clock starts: what sending alone costs, the loop's best case.
    raw = {n: _message(n).as_bytes() for n in range(count)} if prebuilt else None
    started = time.perf_counter()
    await asyncio.gather(
        *(_client(port, range(i, count, connections), raw) for i in range(connections))
    )
    seconds = time.perf_counter() - started
    return {
        "count": count,
        "prebuilt": prebuilt,
        "seconds": round(seconds, 3),
        "per_second": round(count / seconds, 1),
    }


def main(argv: list[str]) -> None:
    if argv[:1] == ["sink"] and len(argv) == 2:
        asyncio.run(sink(int(argv[1])))
    elif argv[:1] == ["loop"] and len(argv) in (4, 5):
        prebuilt = argv[4:] == ["--prebuilt"]
        result = asyncio.run(loop(int(argv[1]), int(argv[2]), int(argv[3]), prebuilt))
        print(json.dumps(result), flush=True)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
