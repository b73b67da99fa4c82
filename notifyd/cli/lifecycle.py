"""`notifyd cancel ID` and `notifyd retry ID`: what POST .../cancel and .../retry do."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable

from notifyd.cli.options import json_flag, row_id
from notifyd.cli.runner import EXIT_FAILURE, EXIT_OK, Action, fail, json_text
from notifyd.db import Database
from notifyd.domain import Notification, Status
from notifyd.errors import NotFoundError, WrongStatusError
from notifyd.web.answers import notification_json


def add_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add `cancel` and `retry` to the `notifyd` parser; `common` holds --config."""
    cancel = commands.add_parser(
        "cancel",
        parents=[common],
        help="cancel a notification not sent yet (one being delivered stops after its attempt)",
    )
    cancel.add_argument("id", type=row_id, metavar="ID", help="the notification's id")
    json_flag(cancel, "print the API's JSON answer (POST /api/notifications/ID/cancel)")
    cancel.set_defaults(command_parser=cancel, prepare=_prepare_cancel)

    retry = commands.add_parser(
        "retry",
        parents=[common],
        help="send a failed or cancelled notification again, from its first channel",
    )
    retry.add_argument("id", type=row_id, metavar="ID", help="the notification's id")
    json_flag(retry, "print the API's JSON answer (POST /api/notifications/ID/retry)")
    retry.set_defaults(command_parser=retry, prepare=_prepare_retry)


def _prepare_cancel(args: argparse.Namespace) -> Action:
    return _action(args, lambda database: database.lifecycle.cancel(args.id))


def _prepare_retry(args: argparse.Namespace) -> Action:
    return _action(args, lambda database: database.lifecycle.retry(args.id))


def _action(
    args: argparse.Namespace, change: Callable[[Database], Awaitable[Notification]]
) -> Action:
    async def act(database: Database) -> int:
        try:
            notification = await change(database)
        except (NotFoundError, WrongStatusError) as exc:
            fail(str(exc), args)
            return EXIT_FAILURE
        if args.json:
            attempts = await database.notifications.attempts([notification.id])
            print(json_text(notification_json(notification, attempts[notification.id])))
        else:
            print(describe(notification))
        return EXIT_OK

    return act


def describe(notification: Notification) -> str:
    """One line saying where the notification stands now."""
    n = notification
    if n.status == Status.PROCESSING:
        return (
            f"notification {n.id}: cancel asked for; it is being delivered and starts no"
            " further attempt (it ends cancelled, or sent if the attempt under way succeeds)"
        )
    if n.status == Status.PENDING:
        return f"notification {n.id}: pending again (round {n.round})"
    return f"notification {n.id}: {n.status}"
