"""The README followed top to bottom, as a newcomer would: its own commands, run for real.

Each shell command of "Try it" runs as written (curl, `.venv/bin/notifyd ...`), in one
folder, against the real `notifyd serve` with its embedded PostgreSQL, and its answer is
compared with the `# ...` line written under it ("..." stands for what varies). Three
things are put in place of the outside world: the port (8000 becomes a free one), the
local catcher's port (1025), and api.telegram.org (a fake Bot API with the README's token
and a user who wrote to the bot). `make serve` is `notifyd serve` (what it runs, checked
in tests/docs), with the variables the README sets. The scripted dashboard login of
docs/operations.md runs the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.acceptance.daemon_process import PASSTHROUGH_ENV, DaemonProcess, free_port
from tests.acceptance.test_check_config_first_run import smtp_listens_on_localhost_25
from tests.docs.markdown import DOCS, README, Block, Command, blocks, code_spans, commands
from tests.fakes.telegram import FakeTelegramApi
from tests.support import wait_until

pytestmark = [
    pytest.mark.acceptance,
    pytest.mark.skipif(shutil.which("curl") is None, reason="the README's commands use curl"),
    pytest.mark.skipif(shutil.which("bash") is None, reason="the README's commands are bash"),
]

README_TEXT = README.read_text("utf-8")
README_ADDRESS = "http://localhost:8000"
CATCHER_PORT = "1025"
TELEGRAM_API = "https://api.telegram.org"
CHAT_ID = 123456789  # the chat id the README's getUpdates answer shows
ANSWER_DEADLINE = 30.0
BIN = Path(sys.executable).parent


def try_it() -> list[Block]:
    """The blocks from "## Try it" to the next second-level heading."""
    section = README_TEXT.split("\n## Try it\n", 1)[1].split("\n## ", 1)[0]
    return blocks("## Try it\n" + section)


def prose_command(prefix: str) -> str:
    """A command the README's text gives in `code` (not in a block)."""
    prose = re.sub(r"```.*?```", "", README_TEXT, flags=re.DOTALL)
    text = " ".join(prose.split())  # code may be wrapped across lines
    found = [span for span in code_spans(text) if span.startswith(prefix)]
    assert found, f"the README no longer says `{prefix}...`"
    return found[0]


def matches(expected: Any, actual: Any) -> bool:
    """`actual` is what `expected` shows: "..." stands for any value, any other keys (as
    a key) or any items (as an item of a list)."""
    if expected == "...":
        return True
    if isinstance(expected, dict):
        keys = set(expected) - {"..."}
        if not isinstance(actual, dict) or not keys <= set(actual):
            return False
        if "..." not in expected and set(actual) != keys:
            return False
        return all(matches(expected[key], actual[key]) for key in keys)
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return False
        if "..." not in expected:
            return len(expected) == len(actual) and all(map(matches, expected, actual))
        cut = expected.index("...")
        head, tail = expected[:cut], expected[cut + 1 :]
        return (
            len(actual) >= len(head) + len(tail)
            and all(map(matches, head, actual[: len(head)]))
            and all(map(matches, tail, actual[len(actual) - len(tail) :]))
        )
    return type(expected) is type(actual) and expected == actual


def shows(expected: str, output: str) -> bool:
    """The output is what the README's `# ...` line shows."""
    if expected.startswith(("{", "[")):
        try:
            return matches(json.loads(expected), json.loads(output))
        except ValueError:
            return False
    # A table or text: its fragments between "...", in order, whitespace aside.
    text = " ".join(output.split())
    position = 0
    for fragment in (" ".join(part.split()) for part in expected.split("...")):
        found = text.find(fragment, position)
        if found < 0:
            return False
        position = found + len(fragment)
    return True


class Newcomer:
    """Two terminals in one folder: `make serve` in one, the README's commands in the other."""

    def __init__(self, home: Path, telegram: FakeTelegramApi) -> None:
        self.home = home
        self.port = free_port()
        self.catcher_port = free_port()
        self.telegram = telegram
        self.exported: dict[str, str] = {}
        self.daemon: DaemonProcess | None = None
        self.catcher: asyncio.subprocess.Process | None = None
        self.caught: list[str] = []
        self._catcher_reader: asyncio.Task[None] | None = None

    def substitute(self, text: str) -> str:
        return (
            text.replace(README_ADDRESS, f"http://127.0.0.1:{self.port}")
            .replace(f"localhost:{CATCHER_PORT}", f"localhost:{self.catcher_port}")
            .replace(f"EMAIL_PORT={CATCHER_PORT}", f"EMAIL_PORT={self.catcher_port}")
            .replace(TELEGRAM_API, self.telegram.url)
            .replace(".venv/bin/", f"{BIN}/")
        )

    def env(self, **more: str) -> dict[str, str]:
        env = {name: os.environ[name] for name in PASSTHROUGH_ENV if name in os.environ}
        # Where the README's notifyd talks to Telegram, it talks to the fake.
        return {**env, **self.exported, "TELEGRAM_API_URL": self.telegram.url, **more}

    async def follow(self, command: Command, sql: str | None) -> str | None:
        """Do what the command says; return its output if it is one that answers."""
        text = self.substitute(command.text)
        words = shlex.split(text, comments=True)
        assignments = {}
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            name, _, value = words.pop(0).partition("=")
            assignments[name] = value
        if words == ["make", "serve"]:
            await self.serve(assignments)
            return None
        if words == ["make", "test"]:
            return None  # this suite is what it runs
        if words[0] == "export":
            for word in words[1:]:
                name, _, value = word.partition("=")
                self.exported[name] = value
            return None
        if words[1:] == ["install", "aiosmtpd"]:
            # No network here; `make test`, which runs this, installed it from the lock.
            assert importlib.util.find_spec("aiosmtpd") is not None
            return None
        if "aiosmtpd" in words:
            await self.start_catcher(words)
            return None
        if words == [f"{BIN}/notifyd", "psql"]:
            assert sql is not None, "psql without the SQL to type into it"
            return await self.answer(command, f"{text} -v ON_ERROR_STOP=1", stdin=sql)
        return await self.answer(command, text)

    async def shell(self, text: str, stdin: str | None = None) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            text,
            cwd=self.home,
            env=self.env(),
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        data = stdin.encode() if stdin is not None else None
        out, err = await asyncio.wait_for(process.communicate(data), 60)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def answer(self, command: Command, text: str, stdin: str | None = None) -> str:
        """Run it; with an answer written under it, until it answers that (or fail)."""
        last: tuple[int, str, str] = (0, "", "")

        async def answered() -> bool:
            nonlocal last
            last = await self.shell(text, stdin)
            code, out, _ = last
            return code == 0 and (command.expected is None or shows(command.expected, out))

        try:
            await wait_until(answered, deadline=ANSWER_DEADLINE, interval=0.25, what=text)
        except AssertionError:
            code, out, err = last
            raise AssertionError(
                f"{command.text}\nexpected: {command.expected}\nexit {code}\n{out}\n{err}"
            ) from None
        return last[1]

    async def serve(self, assignments: dict[str, str]) -> None:
        """(Re)start `make serve`: Ctrl-C, then the command with these variables."""
        await self.stop_daemon()
        env = self.env(NOTIFYD_HTTP__PORT=str(self.port), **assignments)
        self.daemon = DaemonProcess(["serve"], env, cwd=self.home)
        await self.daemon.start()
        await self.daemon.wait_for_event("notifyd_started", deadline=90)

    async def stop_daemon(self) -> None:
        if self.daemon is not None:
            assert await self.daemon.stop() == 0, self.daemon.tail()
            self.daemon = None

    async def start_catcher(self, words: list[str]) -> None:
        python, *args = words
        assert python == f"{BIN}/python"
        self.catcher = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            cwd=self.home,
            # A terminal shows each line at once; a pipe would hold them back.
            env=self.env(PYTHONUNBUFFERED="1"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._catcher_reader = asyncio.create_task(self._read_catcher())

        async def listening() -> bool:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("localhost", self.catcher_port), timeout=1),
            ):
                return True
            return False

        await wait_until(listening, deadline=20, interval=0.1, what="the catcher's port")

    async def _read_catcher(self) -> None:
        assert self.catcher is not None
        assert self.catcher.stdout is not None
        async for line in self.catcher.stdout:
            self.caught.append(line.decode("utf-8", "replace"))

    async def close(self) -> None:
        if self.daemon is not None:
            await self.daemon.stop()
        if self.catcher is not None and self.catcher.returncode is None:
            self.catcher.terminate()
            await self.catcher.wait()
        if self._catcher_reader is not None:
            await self._catcher_reader


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegramApi]:
    token = re.search(r"export TELEGRAM_BOT_TOKEN=(\S+)", README_TEXT)
    assert token is not None, "the README no longer exports TELEGRAM_BOT_TOKEN"
    async with FakeTelegramApi(token=token.group(1)) as api:
        api.user_writes(CHAT_ID)  # step 2: "send it any message"
        yield api


@pytest.fixture
async def newcomer(embedded_home: Path, telegram: FakeTelegramApi) -> AsyncIterator[Newcomer]:
    person = Newcomer(embedded_home, telegram)
    yield person
    await person.close()


async def notifications(person: Newcomer) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{person.port}/api/notifications?limit=200"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        items: list[dict[str, Any]] = (await response.json())["items"]
        return items


@pytest.mark.timeout(300)
async def test_the_readme_from_a_fresh_folder_to_a_real_email_and_telegram_message(
    newcomer: Newcomer, telegram: FakeTelegramApi
) -> None:
    if smtp_listens_on_localhost_25():
        pytest.skip("a mail server listens on localhost:25 here: the README's first e-mail fails")
    # The README offers the access log with its first `make serve`: take it up on that.
    access = prose_command("NOTIFYD_LOG__ACCESS=true make serve")
    sections: dict[str, list[Block]] = {}
    for block in try_it():
        sections.setdefault(block.section, []).append(block)
    assert list(sections) == [
        "Try it",
        "Send a notification",
        "Enqueue from SQL",
        "See the e-mail",
        "Send a real Telegram message",
    ]
    answers: dict[str, str] = {}

    async def follow_section(name: str) -> None:
        sql = "\n".join(b.text for b in sections[name] if b.language == "sql") or None
        for block in sections[name]:
            if block.language != "sh":
                continue
            for command in commands(block):
                if command.text.startswith("make serve"):
                    command = Command(command.section, access, None)
                output = await newcomer.follow(command, sql)
                if output is not None:
                    answers[command.text] = output

    await follow_section("Try it")
    await follow_section("Send a notification")
    assert newcomer.daemon is not None
    requests = [e for e in newcomer.daemon.events() if e["event"] == "http_request"]
    assert [(e["method"], e["path"], e["status"]) for e in requests[:2]] == [
        ("POST", "/api/users/", 201),
        ("POST", "/api/notify/", 200),
    ]
    # What the README says happened: e-mail failed three times with its error, then SMS.
    attempts = [e for e in newcomer.daemon.events() if e["event"] == "attempt_finished"]
    assert [(a["channel"], a["status"]) for a in attempts] == [("email", "failed")] * 3 + [
        ("sms", "success")
    ]
    refused = prose_command("SMTP connection failed:")
    if not any(a["error"] == refused for a in attempts):
        pytest.fail(f"the README quotes {refused!r}, the daemon said {attempts[0]['error']!r}")
    assert "sms_stub_sent" in {e["event"] for e in newcomer.daemon.events()}

    await follow_section("Enqueue from SQL")
    one_line = prose_command(".venv/bin/notifyd psql -c")
    await newcomer.follow(Command("Enqueue from SQL", one_line, None), None)
    # The curl's notification, the SQL block's three, and the one-line enqueue.
    assert len(await notifications(newcomer)) == 5

    await follow_section("See the e-mail")
    resend = next(text for text in answers if "/api/notify/" in text)
    sent = json.loads(await newcomer.follow(Command("", resend, None), None) or "{}")

    async def caught() -> bool:
        return "Тестовое уведомление" in "".join(newcomer.caught)

    await wait_until(caught, deadline=ANSWER_DEADLINE, what="the e-mail at the catcher")
    assert prose_command("=?utf-8?b?") in "".join(newcomer.caught)  # the encoded subject
    status = prose_command(".venv/bin/notifyd status ID").replace("ID", str(sent["id"]))
    await newcomer.follow(Command("", status, "email 1 success"), None)

    await follow_section("Send a real Telegram message")

    async def delivered() -> bool:
        return any(call.chat_id == CHAT_ID for call in telegram.sent)

    await wait_until(delivered, deadline=ANSWER_DEADLINE, what="the Telegram message")
    (message,) = telegram.sent
    assert message.text == "Hello from notifyd"
    assert [call.method for call in telegram.calls].count("getUpdates") == 1


async def test_the_documented_scripted_dashboard_login_works_and_needs_its_origin(
    newcomer: Newcomer, database_url: str
) -> None:
    page = (DOCS / "operations.md").read_text("utf-8")
    (block,) = [b for b in blocks(page) if b.section == "Dashboard" and b.language == "sh"]
    login, users_page = commands(block)
    assert "Origin: http://localhost:8000" in login.text
    token = "dashboard-SCRIPT-token-0123456789"
    newcomer.exported["TOKEN"] = token
    await newcomer.serve({"NOTIFYD_API__TOKENS": json.dumps([token]), "DATABASE_URL": database_url})

    await newcomer.follow(login, None)  # answers what the page shows under it: 303
    html = await newcomer.follow(users_page, None)
    assert html is not None
    assert "<title>Users" in html

    without_origin = login.text.replace("-H 'Origin: http://localhost:8000'", "")
    assert without_origin != login.text
    refused = await newcomer.follow(Command(login.section, without_origin, "403"), None)
    assert refused is not None
    assert refused.strip() == "403"
