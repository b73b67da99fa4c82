"""A fake Twilio Messages API: a real aiohttp server on 127.0.0.1 answering like the vendor."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import math
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aiohttp import web

from tests.fakes.vendor import FakeVendorApi, ForcedAnswer

API_VERSION = "2010-04-01"
MAX_BODY_LENGTH = 1600
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "f00dfeedc0ffee5ecret70ken1234567"
FROM_NUMBER = "+15005550006"
MESSAGING_SERVICE_SID = "MG" + "fedcba9876543210" * 2
# Twilio's magic test numbers (what its test credentials answer for them).
INVALID_NUMBER = "+15005550001"  # 21211
NO_PERMISSION_NUMBER = "+15005550003"  # 21408
UNSUBSCRIBED_NUMBER = "+15005550004"  # 21610 (Twilio: "blocked")
NOT_MOBILE_NUMBER = "+15005550009"  # 21614
VALID_NUMBER = "+15005550010"

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
# The GSM 03.38 basic alphabet; anything else makes the message UCS-2.
_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = set("^{}\\[~]|€\f")
_STATUS_ERRORS = {
    500: (20500, "An internal server error has occurred"),
    502: (20500, "An internal server error has occurred"),
    503: (20503, "Service unavailable"),
}


@dataclass(frozen=True)
class TwilioRequest:
    """One request the fake received, whatever it answered."""

    method: str
    path: str
    account_sid: str  # from the path
    username: str | None  # basic auth, None without an Authorization header
    password: str | None
    content_type: str
    form: dict[str, str]


def twilio_error(status: int, code: int, message: str) -> dict[str, Any]:
    """Twilio's error object, as its REST API sends it."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class FakeTwilioApi(FakeVendorApi):
    """Behaves like api.twilio.com for `POST /2010-04-01/Accounts/{sid}/Messages.json`.

    `GET /2010-04-01/Accounts/{sid}.json` answers the account resource (`account_status`).

    Requests must carry basic auth `account_sid:auth_token` (else 401, code 20003) and a
    form with `To`, `Body` and `From` (one of `numbers`) or `MessagingServiceSid` (one of
    `services`). A `To` that is not E.164 or is in `invalid` answers 21211, one in
    `unsubscribed` 21610 (the recipient replied STOP), one in `landlines` 21614, one starting
    with a prefix in `blocked_prefixes` 21408 (region not enabled); by default these hold
    Twilio's magic test numbers. Accepted messages are in `messages`, every request in
    `requests`.
    Scripted answers (`fail_next`, `rate_limit_next`, `force`) come first, in order, one per
    request; `delay` makes every request hang that long before answering. With `rate_limit`,
    message creation is limited to that many a second (a sliding window).
    """

    def __init__(
        self,
        account_sid: str = ACCOUNT_SID,
        auth_token: str = AUTH_TOKEN,
        *,
        numbers: set[str] | None = None,
        services: set[str] | None = None,
        invalid: set[str] | None = None,
        unsubscribed: set[str] | None = None,
        landlines: set[str] | None = None,
        blocked_prefixes: set[str] | None = None,
        rate_limit: int | None = None,
    ) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.numbers: set[str] = _or_default(numbers, FROM_NUMBER)
        self.services: set[str] = _or_default(services, MESSAGING_SERVICE_SID)
        self.invalid: set[str] = _or_default(invalid, INVALID_NUMBER)
        self.unsubscribed: set[str] = _or_default(unsubscribed, UNSUBSCRIBED_NUMBER)
        self.landlines: set[str] = _or_default(landlines, NOT_MOBILE_NUMBER)
        self.blocked_prefixes: set[str] = _or_default(blocked_prefixes, NO_PERMISSION_NUMBER)
        # The account resource: "suspended" or "closed" is what a stopped account shows.
        self.friendly_name = "notifyd test account"
        self.account_status = "active"
        self.requests: list[TwilioRequest] = []
        self.messages: list[dict[str, Any]] = []  # the message resources created
        # At most `rate_limit` messages in any second (None: no limit): beyond it, 429 with
        # error 20429 and a Retry-After header, as Twilio answers; counted in `refused`.
        self.rate_limit = rate_limit
        self.refused = 0
        self._window: deque[float] = deque()
        self._answers_to_lose = 0

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """`channels.sms` settings that send through this fake."""
        values: dict[str, Any] = {
            "provider": "twilio",
            "api_url": self.url,
            "account_sid": self.account_sid,
            "auth_token": self.auth_token,
            "from_number": next(iter(sorted(self.numbers)), ""),
        }
        values.update(overrides)
        return values

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/2010-04-01/Accounts/{account}/Messages.json", self._handle)
        app.router.add_route("GET", "/2010-04-01/Accounts/{account}.json", self._account)
        app.router.add_route("*", "/{tail:.*}", self._not_found)

    def rate_limit_next(self, times: int = 1, retry_after: int = 1, *, header: bool = True) -> None:
        """The next `times` requests answer 429, code 20429, with a Retry-After header."""
        body = twilio_error(429, 20429, "Too Many Requests")
        headers = {"Retry-After": str(retry_after)} if header else {}
        self.force(ForcedAnswer(429, body, headers), times)

    def fail_next(self, times: int = 1, status: int = 500) -> None:
        """The next `times` requests answer `status` with Twilio's error object."""
        code, message = _STATUS_ERRORS.get(status, (20500, "An internal server error"))
        self.force(ForcedAnswer(status, twilio_error(status, code, message)), times)

    def lose_next_answer(self, times: int = 1) -> None:
        """The next `times` messages are created, but their 201 answer stalls halfway."""
        self._answers_to_lose += times

    async def wait_for_messages(
        self,
        count: int,
        timeout: float = 5.0,  # noqa: ASYNC109  (a deadline; clear failure)
    ) -> list[dict[str, Any]]:
        """Wait until at least `count` messages were created; fail after `timeout` seconds."""
        await self._wait_for(lambda: len(self.messages) >= count, timeout, f"{count} messages")
        return self.messages

    async def wait_for_requests(
        self,
        count: int,
        timeout: float = 5.0,  # noqa: ASYNC109  (a deadline; clear failure)
    ) -> list[TwilioRequest]:
        """Wait until at least `count` requests arrived, whatever the answer."""
        await self._wait_for(lambda: len(self.requests) >= count, timeout, f"{count} requests")
        return self.requests

    def _progress(self) -> str:
        return f"{len(self.requests)} requests, {len(self.messages)} messages"

    async def _not_found(self, request: web.Request) -> web.Response:
        message = f"The requested resource {request.path} was not found"
        return web.json_response(twilio_error(404, 20404, message), status=404)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        form: dict[str, str] = {}
        if request.content_type == "application/x-www-form-urlencoded":
            form = {key: str(value) for key, value in (await request.post()).items()}
        received = await self._receive(request, form)
        if (refused := await self._scripted_or_refused(received)) is not None:
            return refused
        if request.method == "GET":
            return web.json_response(self._page(request.path))
        if request.method != "POST":
            return web.json_response(twilio_error(405, 20004, "Method not allowed"), status=405)
        return await self._create_message(request, form)

    async def _account(self, request: web.Request) -> web.StreamResponse:
        """`GET /2010-04-01/Accounts/{sid}.json`: the account resource (credential checks)."""
        received = await self._receive(request, {})
        if (refused := await self._scripted_or_refused(received)) is not None:
            return refused
        created = format_datetime(datetime(2020, 1, 1, tzinfo=UTC))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}"
        # Twilio's account resource includes the auth token: a client must not print it.
        return web.json_response(
            {
                "auth_token": self.auth_token,
                "date_created": created,
                "date_updated": created,
                "friendly_name": self.friendly_name,
                "owner_account_sid": self.account_sid,
                "sid": self.account_sid,
                "status": self.account_status,
                "subresource_uris": {"messages": f"{uri}/Messages.json"},
                "type": "Full",
                "uri": f"{uri}.json",
            }
        )

    async def _receive(self, request: web.Request, form: dict[str, str]) -> TwilioRequest:
        """Record the request in `requests`."""
        username, password = _basic_auth(request.headers.get("Authorization", ""))
        received = TwilioRequest(
            method=request.method,
            path=request.path,
            account_sid=request.match_info["account"],
            username=username,
            password=password,
            content_type=request.content_type,
            form=form,
        )
        await self._record(self.requests, received)
        return received

    async def _scripted_or_refused(self, received: TwilioRequest) -> web.Response | None:
        """A hang and forced answer due, else a 401 for wrong credentials, else None."""
        if (scripted := await self._scripted()) is not None:
            return scripted
        if (received.username, received.password) != (self.account_sid, self.auth_token) or (
            received.account_sid != self.account_sid
        ):
            return _unauthorized()
        return None

    def _page(self, path: str) -> dict[str, Any]:
        """The list of messages, newest first, on one page (as Twilio pages them)."""
        first = f"{path}?PageSize=50&Page=0"
        return {
            "messages": self.messages[::-1],
            "page": 0,
            "page_size": 50,
            "start": 0,
            "end": max(len(self.messages) - 1, 0),
            "uri": first,
            "first_page_uri": first,
            "next_page_uri": None,
            "previous_page_uri": None,
        }

    async def _create_message(
        self, request: web.Request, form: dict[str, str]
    ) -> web.StreamResponse:
        to, sender, service = (
            form.get("To", ""),
            form.get("From", ""),
            form.get("MessagingServiceSid"),
        )
        body = form.get("Body", "")
        if (wait := self._over_limit()) is not None:
            self.refused += 1
            return web.json_response(
                twilio_error(429, 20429, "Too Many Requests"),
                status=429,
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        if not to:
            return _error(21604, "A 'To' phone number is required.")
        if not sender and not service:
            return _error(21603, "A 'From' phone number is required.")
        if not body:
            return _error(21602, "Message body is required.")
        if not _E164.fullmatch(to) or to in self.invalid:
            return _error(21211, f"The 'To' number {to} is not a valid phone number.")
        if service is not None and service not in self.services:
            return _error(21705, "The Messaging Service Sid is invalid.")
        if sender and sender not in self.numbers:
            return _error(
                21606,
                f"The 'From' phone number provided ({sender}) is not a valid message-capable "
                "Twilio phone number for this destination/account.",
            )
        if len(body) > MAX_BODY_LENGTH:
            return _error(21617, "The concatenated message body exceeds the 1600 character limit.")
        if to in self.unsubscribed:
            return _error(21610, "Attempt to send to unsubscribed recipient")
        if to in self.landlines:
            return _error(21614, f"'To' number {to} is not a valid mobile number")
        if any(to.startswith(prefix) for prefix in self.blocked_prefixes):
            return _error(
                21408,
                "Permission to send an SMS has not been enabled for the region indicated "
                f"by the 'To' number: {to}.",
            )
        resource = self._resource(to, sender or None, service, body)
        await self._record(self.messages, resource)
        if self._answers_to_lose:
            self._answers_to_lose -= 1
            return await self._stall(request, resource)
        return web.json_response(resource, status=201)

    async def _stall(self, request: web.Request, resource: dict[str, Any]) -> web.StreamResponse:
        """Send the status line and part of the body, then hang until the client gives up."""
        payload = json.dumps(resource).encode()
        response = web.StreamResponse(status=201)
        response.content_type = "application/json"
        response.content_length = len(payload)
        await response.prepare(request)
        await response.write(payload[: len(payload) // 2])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), 30.0)
        return response

    def _over_limit(self) -> float | None:
        """Seconds until a message is allowed, when `rate_limit` refuses one now."""
        if self.rate_limit is None:
            return None
        now = time.monotonic()
        while self._window and self._window[0] <= now - 1.0:
            self._window.popleft()
        if len(self._window) >= self.rate_limit:
            return self._window[0] + 1.0 - now
        self._window.append(now)
        return None

    def _resource(
        self, to: str, sender: str | None, service: str | None, body: str
    ) -> dict[str, Any]:
        sid = "SM" + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            # With only a Messaging Service, Twilio picks the sender later.
            "from": sender,
            "messaging_service_sid": service,
            "num_media": "0",
            "num_segments": str(segments(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued" if sender else "accepted",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": to,
            "uri": f"{uri}.json",
        }


def segments(body: str) -> int:
    """How many SMS segments Twilio bills for `body` (GSM-7 or UCS-2)."""
    if all(c in _GSM7 or c in _GSM7_EXTENDED for c in body):
        units, single, multi = sum(2 if c in _GSM7_EXTENDED else 1 for c in body), 160, 153
    else:
        units, single, multi = len(body.encode("utf-16-le")) // 2, 70, 67
    return 1 if units <= single else -(-units // multi)


def _or_default(values: set[str] | None, default: str) -> set[str]:
    return {default} if values is None else set(values)


def _basic_auth(header: str) -> tuple[str | None, str | None]:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else (None, None)


def _unauthorized() -> web.Response:
    return web.json_response(
        twilio_error(401, 20003, "Authenticate")
        | {"detail": "Your AccountSid or AuthToken was incorrect."},
        status=401,
        headers={"WWW-Authenticate": 'Basic realm="Twilio API"'},
    )


def _error(code: int, message: str) -> web.Response:
    return web.json_response(twilio_error(400, code, message), status=400)
