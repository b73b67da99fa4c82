"""Helpers for the dashboard tests: a small HTML tree, rows arranged in SQL, logging in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import asyncpg
from aiohttp import ClientResponse

from tests.support import Daemon

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        """The text inside, with runs of whitespace as one space."""
        parts: list[str] = []
        for child in self.children:
            parts.append(child if isinstance(child, str) else f" {child.text()} ")
        return " ".join("".join(parts).split())

    def walk(self) -> Iterator[Node]:
        for child in self.children:
            if isinstance(child, Node):
                yield child
                yield from child.walk()

    def find_all(self, tag: str) -> list[Node]:
        return [node for node in self.walk() if node.tag == tag]

    def by_id(self, element_id: str) -> Node:
        for node in self.walk():
            if node.attrs.get("id") == element_id:
                return node
        raise AssertionError(f"no element with id {element_id!r}")

    def has_id(self, element_id: str) -> bool:
        return any(node.attrs.get("id") == element_id for node in self.walk())

    def by_class(self, name: str) -> list[Node]:
        return [node for node in self.walk() if name in node.attrs.get("class", "").split()]


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


async def page(response: ClientResponse, status: int = 200) -> Node:
    """The parsed HTML of a dashboard page answered with `status`."""
    html = await response.text()
    assert response.status == status, html[:2000]
    assert response.content_type == "text/html"
    return parse(html)


def rows(table: Node) -> list[list[str]]:
    """The cells' text of each body row of a table (an "empty" row is left out)."""
    body = table.find_all("tbody")[0]
    found = []
    for row in body.find_all("tr"):
        cells = row.find_all("td")
        if len(cells) == 1 and "empty" in cells[0].attrs.get("class", ""):
            continue
        found.append([cell.text() for cell in cells])
    return found


def origin(daemon: Daemon) -> dict[str, str]:
    """The Origin header the dashboard's own forms send."""
    return {"Origin": str(daemon.client.make_url("/")).rstrip("/")}


async def login(daemon: Daemon, token: str) -> ClientResponse:
    """Log in through the form; the client keeps the cookie."""
    response = await daemon.client.post(
        "/admin/login",
        data={"token": token, "next": "/admin/"},
        headers=origin(daemon),
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    return response


async def insert_user(db: asyncpg.Connection, **contacts: Any) -> int:
    user_id: int = await db.fetchval(
        "INSERT INTO notifyd.users (email, phone, telegram_chat_id) VALUES ($1, $2, $3) "
        "RETURNING id",
        contacts.get("email"),
        contacts.get("phone"),
        contacts.get("telegram_chat_id"),
    )
    return user_id


async def insert_notification(
    db: asyncpg.Connection,
    user_id: int,
    *,
    status: str = "sent",
    subject: str = "Subject",
    message: str = "Message",
    channels: tuple[str, ...] = ("email", "sms", "telegram"),
    created_at: datetime | None = None,
    finished_at: datetime | None = None,
    finished_ago: timedelta | None = timedelta(seconds=1),
) -> int:
    """A notification at rest (sent or failed by default, so no dispatcher claims it)."""
    if finished_at is None and finished_ago is not None and status in {"sent", "failed"}:
        now: datetime = await db.fetchval("SELECT now()")
        finished_at = now - finished_ago
    notification_id: int = await db.fetchval(
        """
        INSERT INTO notifyd.notifications
            (user_id, subject, message, channels, status, created_at, finished_at)
        VALUES ($1, $2, $3, $4, $5, coalesce($6, least(now(), $7)), $7)
        RETURNING id
        """,
        user_id,
        subject,
        message,
        list(channels),
        status,
        created_at,
        finished_at,
    )
    return notification_id


async def insert_attempt(
    db: asyncpg.Connection,
    notification_id: int,
    channel: str,
    attempt: int,
    status: str,
    *,
    started_at: datetime | None = None,
    duration: timedelta = timedelta(milliseconds=250),
    error: str | None = None,
    transient: bool | None = None,
    provider_response: Any = None,
) -> int:
    if started_at is None:
        started_at = await db.fetchval("SELECT now()")
    assert started_at is not None
    attempt_id: int = await db.fetchval(
        """
        INSERT INTO notifyd.notification_attempts
            (notification_id, channel, attempt, status, error, transient, provider_response,
             started_at, finished_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8, $9)
        RETURNING id
        """,
        notification_id,
        channel,
        attempt,
        status,
        error,
        transient,
        None if provider_response is None else json.dumps(provider_response),
        started_at,
        started_at + duration,
    )
    return attempt_id
