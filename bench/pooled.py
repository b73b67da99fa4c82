"""Scenario 8: the drain through PgBouncer in transaction mode, beside the direct drain.

A PgBouncer (Debian's `pgbouncer`; the scenario is skipped without it) in front of the
bench's PostgreSQL, with more server connections than the daemon's pool, so it is the hop
and the statements prepared again for each execution (no statement cache behind a
transaction pooler) that are measured, not a queue at the pooler. Twice: with the LISTEN
session on the server (`database.listen_url`), and poll-only, without it.
"""

from __future__ import annotations

from bench.drain import _drain_details, drain
from bench.harness import Bench
from bench.report import Figure
from tests.pgbouncer import PgBouncer, pgbouncer_missing


async def scenario_pooled(bench: Bench) -> list[Figure]:
    missing = pgbouncer_missing()
    if missing is not None:
        raise RuntimeError(missing)
    count = bench.params.drain_sizes[0]
    bouncer = PgBouncer(bench.pg.server_url, "transaction", pool_size=20)
    bouncer.start()
    try:
        direct = await drain(bench, "notifyd", count)
        listening = await drain(
            bench,
            "notifyd",
            count,
            route=(
                "pgbouncer",
                lambda url: {
                    "NOTIFYD_DATABASE__URL": bouncer.url_for(url),
                    "NOTIFYD_DATABASE__LISTEN_URL": url,
                },
            ),
        )
        polling = await drain(
            bench,
            "notifyd",
            count,
            route=(
                "pgbouncer-poll-only",
                lambda url: {"NOTIFYD_DATABASE__URL": bouncer.url_for(url)},
            ),
        )
    finally:
        bouncer.cleanup()
    return [
        Figure(
            scenario="8 pooled",
            name=f"{count:,} through PgBouncer (transaction), listen_url",
            unit="notif/s",
            value=listening["per_second"],
            reference=direct["per_second"],
            reference_name="direct",
            details={"pooled": _drain_details(listening), "direct": _drain_details(direct)},
        ),
        Figure(
            scenario="8 pooled",
            name=f"{count:,} through PgBouncer (transaction), poll-only",
            unit="notif/s",
            value=polling["per_second"],
            reference=direct["per_second"],
            reference_name="direct",
            details={"pooled": _drain_details(polling)},
        ),
    ]
