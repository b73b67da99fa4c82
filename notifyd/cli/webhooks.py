"""`notifyd webhooks off`: stop recording status events, for the whole database.

An instance with webhook endpoints turns recording on when it starts; none ever turns it
off, since another instance may be the one sending. This is how an operator does, once no
instance has endpoints any more. Events recorded already are left as they are.
"""

from __future__ import annotations

import argparse
import sys
from typing import Final

from notifyd.cli.runner import EXIT_OK, Action, connect_one
from notifyd.config import Settings, load_settings
from notifyd.db import Database
from notifyd.db.migrations import schema_status
from notifyd.delivery.event_recording import Level, describe

# The migration that brought the switch (sql/0006_status_event_switch.sql).
SWITCH_MIGRATION: Final = 6


def add_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add `webhooks off` to the `notifyd` parser; `common` holds --config."""
    webhooks = commands.add_parser("webhooks", help="status webhooks: stop recording events")
    actions = webhooks.add_subparsers(dest="webhooks_command", required=True, metavar="{off}")
    off = actions.add_parser(
        "off",
        parents=[common],
        help="stop recording status events for every instance (one started with endpoints "
        "turns it on again)",
    )
    off.set_defaults(command_parser=off, prepare=_prepare_off)


def _prepare_off(args: argparse.Namespace) -> Action:
    async def act(database: Database) -> int:
        # Read again: the command's action gets the database only. It loaded once already,
        # so it loads now.
        _warn_if_sending(load_settings(args.config))
        was = await database.recording.switch_off()
        if was is None:
            print("status events were not recorded; nothing changed")
            return EXIT_OK
        pending = await database.recording.pending()
        since = was.since.isoformat(timespec="seconds")
        print(
            f"status events are no longer recorded (they were since {since}, switched on by "
            f"{was.switched_on_by}). {pending} event(s) recorded and not sent yet stay: an "
            "instance with endpoints still sends them within webhooks.retry_for, else "
            "retention deletes them."
        )
        return EXIT_OK

    return act


def _warn_if_sending(settings: Settings) -> None:
    """Say so when this very configuration would turn recording on again."""
    count = len(settings.webhooks.endpoints)
    if count:
        print(
            f"notifyd webhooks off: this configuration has {count} webhook endpoint(s): "
            "`notifyd serve` with it turns recording on again when it starts, and until "
            "then its endpoints are told of no notification that ends",
            file=sys.stderr,
        )


async def recording_check(settings: Settings, url: str) -> tuple[Level, str]:
    """`notifyd check-config`'s webhooks line: whether events are recorded, and if that fits."""
    database = await connect_one(settings, url)
    try:
        schema = await schema_status(database.pool)
        if SWITCH_MIGRATION in {migration.version for migration in schema.pending}:
            return "off", "the database is not migrated yet: `notifyd migrate` or `serve` first"
        state = await database.recording.state()
    finally:
        await database.close()
    return describe(state, len(settings.webhooks.endpoints))
