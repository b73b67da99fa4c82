"""The options of the database commands: checked by the API's own request models.

A bad value exits with 2 (argparse's usage error) naming the option, before the
configuration or the database is touched.
"""

from __future__ import annotations

import argparse
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ValidationError

from notifyd.domain import BIGINT_MAX

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

Body = TypeVar("Body", bound=BaseModel)


def validated(args: argparse.Namespace, model: type[Body], data: dict[str, Any]) -> Body:
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


def row_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= BIGINT_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} is not an id (a whole number from 1)")
    return value


def json_flag(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--json", action="store_true", help=help_text)
