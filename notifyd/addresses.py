"""E-mail addresses: exactly one addr-spec each, parsed by email-validator.

A pattern like `name@domain` let `alice(bob@evil.example)` through (a comment, which mail
libraries read as the address `alice`) and `<script>alert(1)</script>@x.example`. Two rules
now, one for each use:

- `deliverable_address`: a user's address, taken by the API and the CLI and checked again
  before any delivery (another application may have written it). email-validator's rules
  without DNS lookups: one addr-spec, no quoted local part, domain literal or display name,
  a domain that can exist on the Internet (so not `localhost`, nor under `.test`, `.local`,
  `.invalid`, `.onion` or `.arpa`).
- `is_plain_address`: the shape the database checks (`users_email_format`) and the sender
  address must have: dot-atom "@" dot-atom, with no space, control or other invisible
  character, nor any of `()<>[]:;@\\,"`, in its parts. Looser, so that an operator's
  `webmaster@localhost` works; enough that an address can carry nothing into a header
  field or an SMTP command.
"""

from __future__ import annotations

import re
from typing import Final

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from notifyd.domain import INVISIBLE_RANGES

MAX_ADDRESS_LENGTH: Final = 254
# One part of a dot-atom: no invisible character (space, control, zero-width, bidirectional
# control...) and none of the specials. The database's notifyd.is_plain_address() has the
# same class.
_ATOM: Final = (
    "[^"
    + "".join(f"{chr(first)}-{chr(last)}" for first, last in INVISIBLE_RANGES)
    + r'()<>\[\]:;@\\,".]+'
)
_PLAIN_ADDRESS: Final = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_ATOM}(?:\.{_ATOM})*")
# `Display Name <address>`, `"Display Name" <address>` or a bare address.
_MAILBOX: Final = re.compile(r"(?P<name>[^<>]*?)\s*<(?P<address>[^<>]*)>|(?P<bare>[^<>]*)")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


# What `deliverable_address` refuses for its domain alone, as a pattern an OpenAPI document
# can state (ECMA-262: no flags, so each letter in both cases): a domain that is, or ends
# in, a special-use name.
SPECIAL_USE_PATTERN: Final = (
    r"^(?!.*[.@](?:" + "|".join(_any_case(name) for name in SPECIAL_USE_DOMAIN_NAMES) + r")\.?$)"
)


def deliverable_address(text: str) -> str:
    """The address to deliver to (its ASCII form where it has one), or ValueError saying why.

    No DNS lookup is made.
    """
    try:
        checked = validate_email(
            text,
            check_deliverability=False,
            allow_smtputf8=True,
            allow_empty_local=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            strict=True,  # RFC 5321's 64 octets for the local part
        )
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    address: str = checked.ascii_email or checked.normalized
    return address


def is_plain_address(text: str) -> bool:
    """Whether `text` is one addr-spec in its plain form (the database's check)."""
    return len(text) <= MAX_ADDRESS_LENGTH and _PLAIN_ADDRESS.fullmatch(text) is not None


def parse_mailbox(text: str) -> tuple[str, str]:
    """A sender like `Name <name@example.com>` as (display name, address); ValueError if not.

    The display name may be quoted; the address must be plain (`is_plain_address`).
    """
    found = _MAILBOX.fullmatch(text.strip())
    if found is None:
        raise ValueError("must be one e-mail address, or a name and <address>")
    name = (found["name"] or "").strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = re.sub(r"\\(.)", r"\1", name[1:-1])
    address = (found["address"] if found["address"] is not None else found["bare"]).strip()
    if not is_plain_address(address):
        raise ValueError("must be an e-mail address like name@example.com, or Name <address>")
    if _CONTROL.search(name):
        raise ValueError("the name must not contain control characters or line breaks")
    return name, address
