"""No header field or body can be forged through a notification's fields.

A subject written as an RFC 2047 encoded word carrying `=0D=0A` passed the line-break
checks, and Python's `email` package (3.11 and 3.12 before the CVE-2024-6923 fix) wrote the
decoded CR LF into the message: a second From, any header, a body of the sender's choice.
Each message here is delivered to a real SMTP server (aiosmtpd) and read back with a real
parser (`email` with `policy.default`): exactly one From, To and Subject, the subject and
the body exactly as sent, and the one recipient in the envelope.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifyd.channel_settings import EmailSettings
from notifyd.domain import MAX_SUBJECT_LENGTH, OutgoingMessage, Recipient
from notifyd.providers import mime
from notifyd.providers.email import EmailProvider
from tests.fakes.smtp import FakeSmtpServer, ReceivedMail

TO = "ivan@example.org"
FROM = "notifyd@example.com"
BODY = "Your invoice is attached.\n"

ENCODED_WORD_ATTACKS = [
    # The report's example: a second From, then an empty line and a body of its own.
    "=?utf-8?q?Invoice=0D=0AFrom:_ceo@victim.example=0D=0A=0D=0A<a_href=https://evil.example>"
    "Pay_here</a>?=",
    "=?utf-8?b?SW52b2ljZQ0KQmNjOiB2aWN0aW1AZXhhbXBsZS5uZXQ=?=",  # base64: "Invoice\r\nBcc: ..."
    "=?UTF-8?Q?a=0Ab?= =?utf-8?q?=0D=0AX-Evil:_1?=",
    "Re: =?iso-8859-1?q?=0D=0AReply-To:_evil@example.net?= your order",
    "=?utf-8?q?=0D=0A=0D=0A?=",
    "=?utf-8?q?" + "A" * 80 + "=0D=0ABcc:_x@example.net?=",  # long enough to be refolded
]
SUBJECTS = [
    *ENCODED_WORD_ATTACKS,
    "",
    "Hello",
    "Заказ №42 подтверждён ✓",
    "plain =?x?= text and ?= alone",
    "  two leading spaces, two  inside, one trailing ",
    "tab\tinside",
    "a" * 300,
    ("word " * 150).strip(),
    "😀" * 200,
    "x" * MAX_SUBJECT_LENGTH,
    '"quoted" (comment) <angle> a@b.example; c:d',
]


def message(subject: str, body: str = BODY, email: str = TO) -> OutgoingMessage:
    recipient = Recipient(user_id=1, email=email, phone=None, telegram_chat_id=None)
    return OutgoingMessage(notification_id=7, recipient=recipient, subject=subject, body=body)


def provider(server: FakeSmtpServer, **overrides: Any) -> EmailProvider:
    values: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "from_address": FROM,
        "timeout": 5.0,
        **overrides,
    }
    return EmailProvider(EmailSettings(**values))


def read_back(mail: ReceivedMail) -> EmailMessage:
    """The delivered bytes parsed again, as a mail program reads them."""
    parsed = BytesParser(policy=policy.default).parsebytes(mail.raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


def assert_one_of_each(mail: ReceivedMail) -> EmailMessage:
    parsed = read_back(mail)
    for name in ("From", "To", "Subject", "Date", "Message-ID"):
        assert len(parsed.get_all(name) or []) == 1, (name, mail.raw[:2000])
    names = [name.lower() for name in parsed]
    assert sorted(names) == sorted(
        [
            "from",
            "to",
            "subject",
            "message-id",
            "date",
            "content-type",
            "content-transfer-encoding",
            "mime-version",
        ]
    ), mail.raw[:2000]
    assert mail.rcpt_tos == [TO]
    return parsed


@pytest.fixture
async def server() -> AsyncIterator[FakeSmtpServer]:
    async with FakeSmtpServer() as fake:
        yield fake


@pytest.mark.parametrize("subject", SUBJECTS)
async def test_the_subject_arrives_as_sent_and_adds_nothing(
    server: FakeSmtpServer, subject: str
) -> None:
    await provider(server).send(message(subject))

    [mail] = server.received
    parsed = assert_one_of_each(mail)
    assert parsed["Subject"] == subject
    assert parsed["From"] == FROM
    assert parsed["To"] == TO
    assert parsed.get_content().replace("\r\n", "\n") == BODY
    # Every header line within the line length RFC 5322 recommends.
    head = mail.raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert max(len(line) for line in head.split(b"\r\n")) <= 78


@pytest.mark.parametrize(
    "display_name",
    [
        "=?utf-8?q?S=0D=0ABcc:_v@x.net?=",
        "=?utf-8?b?U3VwcG9ydA0KQmNjOiB2QHgubmV0?=",  # "Support\r\nBcc: v@x.net"
        "Сервис уведомлений",
        "Billing, Inc. (EU)",
        'The "Best" Shop',
        "Plain Name",
    ],
)
async def test_the_senders_display_name_arrives_as_configured_and_adds_nothing(
    server: FakeSmtpServer, display_name: str
) -> None:
    quoted = display_name.replace("\\", "\\\\").replace('"', '\\"')
    sender = provider(server, from_address=f'"{quoted}" <{FROM}>')

    await sender.send(message("Hello"))

    [mail] = server.received
    parsed = assert_one_of_each(mail)
    [address] = parsed["From"].addresses
    assert (address.display_name, address.addr_spec) == (display_name, FROM)
    assert mail.mail_from == FROM


@pytest.mark.parametrize(
    "body",
    [
        "\r\nBcc: victim@example.net\r\n\r\nhi",
        "line\n.\nMAIL FROM:<evil@example.net>\nRCPT TO:<victim@example.net>\nDATA\nforged\n.\n",
        "a\r\n.\r\nQUIT\r\n",
        "=?utf-8?q?=0D=0ABcc:_x@example.net?=\n",
        "From: ceo@victim.example\n\nnot a header",
    ],
)
async def test_the_body_stays_one_body(server: FakeSmtpServer, body: str) -> None:
    await provider(server).send(message("Hello", body=body))

    [mail] = server.received
    parsed = assert_one_of_each(mail)
    assert parsed.get_content().replace("\r\n", "\n") == body.replace("\r\n", "\n") + (
        "" if body.endswith("\n") else "\n"
    )


async def test_many_messages_on_one_connection_stay_apart(server: FakeSmtpServer) -> None:
    sender = provider(server)
    for subject in ENCODED_WORD_ATTACKS:
        await sender.send(message(subject))

    assert len(server.received) == len(ENCODED_WORD_ATTACKS)
    assert server.connection_count == 1
    for mail, subject in zip(server.received, ENCODED_WORD_ATTACKS, strict=True):
        assert assert_one_of_each(mail)["Subject"] == subject


# Any subject the API lets through: text without NUL or line breaks, up to 998 bytes.
API_SUBJECTS = st.text(
    alphabet=st.characters(
        exclude_categories=("Cs",), exclude_characters="\x00\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029"
    ),
    max_size=300,
).filter(lambda text: len(text.encode()) <= MAX_SUBJECT_LENGTH)
# Any display name the configuration lets through: no control characters, no space at
# either end (both are stripped).
DISPLAY_NAMES = st.text(
    alphabet=st.characters(exclude_categories=("Cs", "Cc", "Zl", "Zp")), max_size=60
).map(str.strip)


def build_and_read_back(subject: str, name: str) -> tuple[EmailMessage, bytes]:
    built = EmailMessage()
    built["From"] = mime.mailbox("From", name, FROM)
    built["To"] = mime.plain("To", TO)
    built["Subject"] = mime.unstructured("Subject", subject)
    built.set_content(BODY, charset="utf-8")
    raw = built.as_bytes(policy=policy.SMTP)
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    assert [len(parsed.get_all(n) or []) for n in ("From", "To", "Subject")] == [1, 1, 1]
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    return parsed, raw


@settings(max_examples=500, deadline=None)
@given(subject=API_SUBJECTS, name=DISPLAY_NAMES)
def test_any_subject_and_display_name_read_back(subject: str, name: str) -> None:
    parsed, _ = build_and_read_back(subject, name)

    assert parsed["Subject"] == subject
    [sender] = parsed["From"].addresses
    assert sender.addr_spec == FROM
    if len(name.encode()) <= 42:  # one encoded word at most
        assert sender.display_name == name
    else:
        # Split over several encoded words. RFC 2047 readers join them as they were;
        # Python's address parser puts a space between each two (a reader's quirk).
        assert "".join(sender.display_name.split()) == "".join(name.split())
