"""Commands that work on notifyd's database: `send`, `status`, `users add` and `users list`.

They validate with the HTTP API's own request models, so the rules cannot drift, and go
through the database layer: `send` only enqueues, and the running daemon delivers (the
insert wakes it). Arguments are validated before the configuration or the database is
touched; a bad value exits with 2 and names the option (`options.py`). How they run is
`runner.py`'s.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Final

from notifyd import display
from notifyd.cli import tables
from notifyd.cli.options import json_flag, row_id, validated
from notifyd.cli.runner import EXIT_FAILURE, EXIT_OK, Action, fail, json_text
from notifyd.db import Database
from notifyd.domain import Attempt, Enqueued, Notification, User
from notifyd.errors import ConstraintViolationError, NotFoundError, UnknownUserError
from notifyd.web.answers import enqueued_json, notification_json, user_json
from notifyd.web.schemas import NotifyRequest, UserCreate

DEFAULT_USER_LIMIT: Final = 50
MAX_USER_LIMIT: Final = 1000
# The status view shows the start of the message; --json has all of it.
MESSAGE_PREVIEW_COLUMNS: Final = 72


def add_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add `send`, `status` and `users` to the `notifyd` parser; `common` holds --config."""
    send = commands.add_parser(
        "send", parents=[common], help="enqueue a notification (the running daemon delivers it)"
    )
    send.add_argument("--user", type=int, required=True, metavar="ID", help="the user's id")
    send.add_argument("--message", required=True, metavar="TEXT", help="the text to send")
    send.add_argument(
        "--subject", metavar="S", help="the e-mail's subject (other channels put it first)"
    )
    send.add_argument(
        "--channels",
        metavar="LIST",
        help="channels to try in order, comma-separated (default: email,sms,telegram)",
    )
    send.add_argument(
        "--send-at", metavar="ISO", help="deliver from then on, e.g. 2026-12-01T09:00:00+03:00"
    )
    send.add_argument("--priority", type=int, metavar="N", help="-100 to 100 (default 0)")
    json_flag(send, "print the API's JSON answer instead of the id")
    send.set_defaults(command_parser=send, prepare=_prepare_send)

    status = commands.add_parser(
        "status", parents=[common], help="show a notification and its attempts"
    )
    status.add_argument("id", type=row_id, metavar="ID", help="the notification's id")
    json_flag(status, "print the API's JSON (GET /api/notifications/ID)")
    status.set_defaults(command_parser=status, prepare=_prepare_status)

    users = commands.add_parser("users", help="add or list users")
    actions = users.add_subparsers(dest="users_command", required=True, metavar="{add,list}")
    add = actions.add_parser("add", parents=[common], help="create a user with their contacts")
    add.add_argument("--email", metavar="E", help="e-mail address")
    add.add_argument("--phone", metavar="P", help="E.164 phone number, e.g. +15551234567")
    add.add_argument("--telegram-chat-id", metavar="C", help="chat id or @channelusername")
    json_flag(add, "print the API's JSON answer instead of the id")
    add.set_defaults(command_parser=add, prepare=_prepare_user_add)
    listing = actions.add_parser("list", parents=[common], help="list users, oldest first")
    listing.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_USER_LIMIT,
        metavar="N",
        help=f"at most N users (default {DEFAULT_USER_LIMIT}, up to {MAX_USER_LIMIT})",
    )
    listing.add_argument(
        "--after", type=row_id, metavar="ID", help="only users with ids above ID (next page)"
    )
    json_flag(listing, "print a JSON array of users")
    listing.set_defaults(command_parser=listing, prepare=_prepare_user_list)


# send


def _prepare_send(args: argparse.Namespace) -> Action:
    data: dict[str, Any] = {"user_id": args.user, "message": args.message}
    if args.subject is not None:
        data["subject"] = args.subject
    if args.channels is not None:
        # A stray comma (`email,sms,`) is forgiven; an empty list is refused by the rules.
        data["channels"] = [name.strip() for name in args.channels.split(",") if name.strip()]
    if args.send_at is not None:
        data["send_at"] = args.send_at
    if args.priority is not None:
        data["priority"] = args.priority
    request = validated(args, NotifyRequest, data)

    async def send(database: Database) -> int:
        try:
            (notification,) = await database.notifications.enqueue([request.to_new()])
        except UnknownUserError as exc:
            fail(f"--user: {exc}", args)
            return EXIT_FAILURE
        except ConstraintViolationError as exc:
            fail(f"refused by the database ({exc.constraint or exc})", args)
            return EXIT_FAILURE
        answer = Enqueued(notification.id, notification.status, notification.created_at)
        print(json_text(enqueued_json(answer)) if args.json else notification.id)
        return EXIT_OK

    return send


# status


def _prepare_status(args: argparse.Namespace) -> Action:
    notification_id: int = args.id

    async def status(database: Database) -> int:
        notifications = database.notifications
        try:
            notification = await notifications.get(notification_id)
        except NotFoundError as exc:
            fail(str(exc), args)
            return EXIT_FAILURE
        attempts = (await notifications.attempts([notification_id]))[notification_id]
        if args.json:
            print(json_text(notification_json(notification, attempts)))
        else:
            print(render_status(notification, attempts))
        return EXIT_OK

    return status


def render_status(notification: Notification, attempts: list[Attempt]) -> str:
    """The notification's fields, then its attempts as a table (oldest first)."""
    n = notification
    head = tables.fields(
        [
            ("notification", n.id),
            ("status", n.status),
            ("user", n.user_id),
            ("channels", ", ".join(n.channels)),
            ("priority", n.priority),
            ("subject", tables.shorten(tables.clean(n.subject), MESSAGE_PREVIEW_COLUMNS) or "-"),
            ("message", tables.shorten(tables.clean(n.message), MESSAGE_PREVIEW_COLUMNS)),
            ("send at", tables.moment(n.send_at)),
            ("created", tables.moment(n.created_at)),
            ("updated", tables.moment(n.updated_at)),
            ("finished", tables.moment(n.finished_at)),
            *([("round", n.round)] if n.round > 1 else []),
            *(
                [("cancel asked", tables.moment(n.cancel_requested_at))]
                if n.cancel_requested_at
                else []
            ),
        ]
    )
    if not attempts:
        return f"{head}\n\nno attempts yet"
    # With retries, each attempt says which round it was made in.
    rounds = n.round > 1 or any(a.round > 1 for a in attempts)
    rows = [
        (
            *((a.round,) if rounds else ()),
            a.channel,
            a.attempt,
            a.status,
            tables.moment(a.started_at, zone=False),
            display.duration((a.finished_at - a.started_at).total_seconds()),
            a.error or "",
        )
        for a in attempts
    ]
    header = ("CHANNEL", "ATTEMPT", "STATUS", "STARTED (UTC)", "DURATION", "ERROR")
    attempts_table = tables.table(
        ("ROUND", *header) if rounds else header,
        rows,
        right={0, 2, 5} if rounds else {1, 4},
    )
    return f"{head}\n\n{attempts_table}"


# users


def _prepare_user_add(args: argparse.Namespace) -> Action:
    data = {
        name: value
        for name, value in (
            ("email", args.email),
            ("phone", args.phone),
            ("telegram_chat_id", args.telegram_chat_id),
        )
        if value is not None
    }
    contacts = validated(args, UserCreate, data).contacts()

    async def add(database: Database) -> int:
        try:
            user = await database.users.create(
                contacts.get("email"), contacts.get("phone"), contacts.get("telegram_chat_id")
            )
        except ConstraintViolationError as exc:
            fail(f"refused by the database ({exc.constraint or exc})", args)
            return EXIT_FAILURE
        print(json_text(user_json(user)) if args.json else user.id)
        return EXIT_OK

    return add


def _prepare_user_list(args: argparse.Namespace) -> Action:
    limit: int = args.limit
    after: int | None = args.after

    async def listing(database: Database) -> int:
        users = await database.users.page(after, limit)
        if args.json:
            print(json_text([user_json(user) for user in users]))
        elif users:
            print(render_users(users))
        else:
            print("no users yet", file=sys.stderr)
        return EXIT_OK

    return listing


def render_users(users: list[User]) -> str:
    return tables.table(
        ("ID", "EMAIL", "PHONE", "TELEGRAM CHAT", "CREATED (UTC)", "SUPPRESSED"),
        [
            (
                user.id,
                user.email or "-",
                user.phone or "-",
                user.telegram_chat_id or "-",
                tables.moment(user.created_at, zone=False),
                ",".join(s.channel for s in user.suppressions) or "-",
            )
            for user in users
        ],
        right={0},
    )


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_USER_LIMIT:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_USER_LIMIT}")
    return value
