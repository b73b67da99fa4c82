"""Commands that work on notifyd's database: `send`, `status`, `users add` and `users list`.

They validate with the HTTP API's own request models, so the rules cannot drift, and go
through the database layer: `send` only enqueues, and the running daemon delivers (the
insert wakes it). Arguments are validated before the configuration or the database is touched; a bad
value exits with 2 and names the option.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from notifyd import display
from notifyd.cli import tables
from notifyd.config import Settings
from notifyd.db import Database
from notifyd.db.migrations import SchemaStatus, schema_status
from notifyd.domain import BIGINT_MAX, Attempt, Enqueued, Notification, User
from notifyd.errors import ConstraintViolationError, NotFoundError, UnknownUserError
from notifyd.web.answers import enqueued_json, notification_json, user_json
from notifyd.web.schemas import NotifyRequest, UserCreate

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
# Bad arguments or configuration (argparse uses 2 as well).
EXIT_USAGE: Final = 2

DEFAULT_USER_LIMIT: Final = 50
MAX_USER_LIMIT: Final = 1000
# The status view shows the start of the message; --json has all of it.
MESSAGE_PREVIEW_COLUMNS: Final = 72

# The option that sets each field of the API's request models.
OPTIONS: Final = {
    "user_id": "--user",
    "message": "--message",
    "subject": "--subject",
    "channels": "--channels",
    "send_at": "--send-at",
    "priority": "--priority",
    "email": "--email",
    "phone": "--phone",
    "telegram_chat_id": "--telegram-chat-id",
}

Action = Callable[[Database], Awaitable[int]]
Body = TypeVar("Body", bound=BaseModel)


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
    _json_flag(send, "print the API's JSON answer instead of the id")
    send.set_defaults(command_parser=send, prepare=_prepare_send)

    status = commands.add_parser(
        "status", parents=[common], help="show a notification and its attempts"
    )
    status.add_argument("id", type=_row_id, metavar="ID", help="the notification's id")
    _json_flag(status, "print the API's JSON (GET /api/notifications/ID)")
    status.set_defaults(command_parser=status, prepare=_prepare_status)

    users = commands.add_parser("users", help="add or list users")
    actions = users.add_subparsers(dest="users_command", required=True, metavar="{add,list}")
    add = actions.add_parser("add", parents=[common], help="create a user with their contacts")
    add.add_argument("--email", metavar="E", help="e-mail address")
    add.add_argument("--phone", metavar="P", help="E.164 phone number, e.g. +15551234567")
    add.add_argument("--telegram-chat-id", metavar="C", help="chat id or @channelusername")
    _json_flag(add, "print the API's JSON answer instead of the id")
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
        "--after", type=_row_id, metavar="ID", help="only users with ids above ID (next page)"
    )
    _json_flag(listing, "print a JSON array of users")
    listing.set_defaults(command_parser=listing, prepare=_prepare_user_list)


def prepare(args: argparse.Namespace) -> Action | None:
    """The action the arguments ask for, validated; None for commands not defined here.

    Invalid arguments exit with 2 (argparse's usage error) naming the option.
    """
    preparer: Callable[[argparse.Namespace], Action] | None = getattr(args, "prepare", None)
    return None if preparer is None else preparer(args)


async def run(
    settings: Settings, url: str, action: Action, *, embedded_dir: Path | None = None
) -> int:
    """Connect to the database, make sure its schema is current, and run `action`.

    `embedded_dir`: the embedded database's data directory, when that is the one used.
    """
    database = await connect_one(settings, url)
    try:
        schema = await schema_status(database.pool)
        if schema.pending:
            _fail(not_migrated(schema, embedded_dir))
            return EXIT_FAILURE
        return await action(database)
    finally:
        await database.close()


def not_migrated(schema: SchemaStatus, embedded_dir: Path | None) -> str:
    """Why a database whose migrations are pending cannot be used, and what to do."""
    if not schema.applied and embedded_dir is not None:
        # An embedded cluster without notifyd's schema is one `serve` never ran on (a
        # cluster left by an older notifyd's read command, say): migrating it would only
        # hide that the data is elsewhere.
        return (
            f"the embedded database in {embedded_dir} has no notifyd schema: `notifyd serve` "
            "never ran in this folder. Either cd to the folder where it ran, or set "
            "DATABASE_URL; to start afresh here, run `notifyd serve` (or `notifyd migrate`)."
        )
    if not schema.applied:
        return (
            "the database has no notifyd schema: run `notifyd migrate` (or start "
            "`notifyd serve`, which migrates)"
        )
    names = ", ".join(migration.name for migration in schema.pending)
    return (
        f"the database is not migrated ({names} pending): run `notifyd migrate` "
        "(or start `notifyd serve`, which migrates)"
    )


async def connect_one(settings: Settings, url: str) -> Database:
    """The database over a single connection, for a command that runs and exits."""
    db = settings.database
    return await Database.connect(
        url,
        min_size=1,
        max_size=1,
        connect_timeout=db.connect_timeout,
        command_timeout=db.command_timeout,
        pooler=db.pooler,
    )


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
    request = _validated(args, NotifyRequest, data)

    async def send(database: Database) -> int:
        try:
            (notification,) = await database.notifications.enqueue([request.to_new()])
        except UnknownUserError as exc:
            _fail(f"--user: {exc}", args)
            return EXIT_FAILURE
        except ConstraintViolationError as exc:
            _fail(f"refused by the database ({exc.constraint or exc})", args)
            return EXIT_FAILURE
        answer = Enqueued(notification.id, notification.status, notification.created_at)
        print(_json(enqueued_json(answer)) if args.json else notification.id)
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
            _fail(str(exc), args)
            return EXIT_FAILURE
        attempts = (await notifications.attempts([notification_id]))[notification_id]
        if args.json:
            print(_json(notification_json(notification, attempts)))
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
    contacts = _validated(args, UserCreate, data).contacts()

    async def add(database: Database) -> int:
        try:
            user = await database.users.create(
                contacts.get("email"), contacts.get("phone"), contacts.get("telegram_chat_id")
            )
        except ConstraintViolationError as exc:
            _fail(f"refused by the database ({exc.constraint or exc})", args)
            return EXIT_FAILURE
        print(_json(user_json(user)) if args.json else user.id)
        return EXIT_OK

    return add


def _prepare_user_list(args: argparse.Namespace) -> Action:
    limit: int = args.limit
    after: int | None = args.after

    async def listing(database: Database) -> int:
        users = await database.users.page(after, limit)
        if args.json:
            print(_json([user_json(user) for user in users]))
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


# Helpers


def _validated(args: argparse.Namespace, model: type[Body], data: dict[str, Any]) -> Body:
    """`data` checked by the API's model; otherwise exit 2 naming each bad option."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        parser: argparse.ArgumentParser = args.command_parser
        parser.error("; ".join(option_errors(exc, data)))


def option_errors(exc: ValidationError, data: dict[str, Any]) -> list[str]:
    """pydantic's errors as `--option: message`, quoting the list item at fault."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        location = error["loc"]
        field = str(location[0]) if location else ""
        option = OPTIONS.get(field, field or "arguments")
        message = error["msg"].removeprefix("Value error, ")
        if len(location) > 1 and isinstance(location[1], int):
            items = data.get(field)
            if isinstance(items, list) and location[1] < len(items):
                message = f"{items[location[1]]!r}: {message}"
        problems.append(f"{option}: {message}")
    return problems


def _row_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= BIGINT_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} is not an id (a whole number from 1)")
    return value


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_USER_LIMIT:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_USER_LIMIT}")
    return value


def _json_flag(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--json", action="store_true", help=help_text)


def _json(data: Any) -> str:
    # orjson, as the API answers: the same bytes as the HTTP response body.
    return orjson.dumps(data).decode()


def _fail(message: str, args: argparse.Namespace | None = None) -> None:
    """Say what went wrong on stderr, prefixed with the command (`notifyd users add: ...`)."""
    words = ["notifyd"]
    if args is not None:
        words += [args.command, getattr(args, "users_command", None) or ""]
    print(f"{' '.join(word for word in words if word)}: {message}", file=sys.stderr)
