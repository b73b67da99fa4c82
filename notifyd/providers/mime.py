"""The header fields of notifyd's e-mails, written out here and not by `email`'s folder.

Python's `email` package reads a value given to a header as if it came from a message: it
decodes RFC 2047 encoded words in it. Its folder, writing the header out again, put a
decoded CR LF into the message as a real line break (3.11 and 3.12 releases before the
CVE-2024-6923 fix): a subject `=?utf-8?q?Hi=0D=0AFrom:_ceo@victim.example?=` added a
header, or began the body early. It also mangles long words on those releases.

So each field is written out whole here and handed to `email` as a header object, which
its policy stores as it is and asks to fold itself (`EmailPolicy` keeps a value that has
a `name`). Text from a notification appears only as printable ASCII words without `=?`,
or inside base64 encoded words; addresses are plain addr-specs checked before. No text can
start a line of its own, whatever the Python; a reader decodes exactly the text given.
"""

from __future__ import annotations

import base64
import re
from typing import Any, Final

# RFC 5322 recommends lines of at most 78 characters.
MAX_LINE: Final = 78
# UTF-8 bytes per encoded word: 56 base64 characters, 68 with `=?utf-8?b?` and `?=`, so
# `Subject: ` and one word fit a line.
_CHUNK_BYTES: Final = 42
# Words that need no encoding: printable ASCII, one space between them, none at either end.
_PLAIN_TEXT: Final = re.compile(r"[!-~]+(?: [!-~]+)*")
# A display name that is a phrase of atoms (RFC 5322 atext), written as it is.
_ATOM: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PHRASE: Final = re.compile(rf"{_ATOM}(?: {_ATOM})*")
_LINE_BREAK: Final = re.compile(r"[\r\n]")


class WrittenHeader(str):
    """A header field notifyd wrote out: `email` stores it and writes it exactly as it is.

    The string is the unfolded value; `lines` are its folded lines, joined on output by the
    policy's line separator and a space.
    """

    name: str
    lines: tuple[str, ...]

    def __new__(cls, name: str, lines: tuple[str, ...]) -> WrittenHeader:
        if any(_LINE_BREAK.search(line) for line in lines):
            raise ValueError(f"a line of the {name} header contains a line break")
        value = super().__new__(cls, " ".join(lines))
        value.name = name
        value.lines = lines
        return value

    def fold(self, *, policy: Any) -> str:
        """The field as it goes into the message (`email`'s header object interface)."""
        linesep: str = policy.linesep
        return f"{self.name}: " + f"{linesep} ".join(self.lines) + linesep


def plain(name: str, value: str) -> WrittenHeader:
    """A field whose value notifyd made itself (a date, a Message-ID, a checked address)."""
    return WrittenHeader(name, (value,))


def unstructured(name: str, text: str) -> WrittenHeader:
    """Free text (a subject): as it is when plain ASCII, otherwise as encoded words."""
    lines = _fold_words(name, text) if _is_plain(text, _PLAIN_TEXT) else None
    return WrittenHeader(name, lines or encoded_words(text))


def mailbox(name: str, display_name: str, address: str) -> WrittenHeader:
    """A single-address field (`From`): the display name, if any, then `<address>`."""
    if not display_name:
        return WrittenHeader(name, (address,))
    if _is_plain(display_name, _PLAIN_PHRASE):
        phrase: tuple[str, ...] = (display_name,)
    else:
        phrase = encoded_words(display_name)
    return WrittenHeader(name, (*phrase, f"<{address}>"))


def encoded_words(text: str) -> tuple[str, ...]:
    """`text` as RFC 2047 base64 encoded words of whole characters, one per line.

    Readers join adjacent encoded words without the space between them, as RFC 2047 asks;
    Python's own address parser puts a space there, so a display name longer than one word
    (42 bytes of UTF-8) reads with a space more in a Python program.
    """
    words = []
    chunk = b""
    for char in text:
        encoded = char.encode("utf-8")
        if len(chunk) + len(encoded) > _CHUNK_BYTES:
            words.append(_encoded_word(chunk))
            chunk = b""
        chunk += encoded
    if chunk or not words:
        words.append(_encoded_word(chunk))
    return tuple(words)


def _encoded_word(data: bytes) -> str:
    return f"=?utf-8?b?{base64.b64encode(data).decode('ascii')}?=" if data else ""


def _is_plain(text: str, pattern: re.Pattern[str]) -> bool:
    # `=?` could open an encoded word in a reader's eyes; such text is encoded instead.
    return text == "" or (pattern.fullmatch(text) is not None and "=?" not in text)


def _fold_words(name: str, text: str) -> tuple[str, ...] | None:
    """Plain words folded at spaces into lines of at most `MAX_LINE`; None if one is longer."""
    lines: list[str] = []
    line = ""
    room = MAX_LINE - len(name) - 2  # after `Name: `
    for word in text.split(" "):
        if not line:
            line = word
        elif len(line) + 1 + len(word) <= room:
            line = f"{line} {word}"
        else:
            lines.append(line)
            line = word
            room = MAX_LINE - 1  # after the folding space
        if len(line) > room:
            return None
    lines.append(line)
    return tuple(lines)
