"""SMS through Twilio's Messages API, with aiohttp.

One POST per message to `/2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded,
with HTTP basic auth. Twilio answers 201 with the message resource, or an error object
`{"code", "message", "more_info", "status"}`. The auth token travels in the Authorization
header, which aiohttp keeps in the request info of its exceptions: this module never
chains an aiohttp exception and scrubs the token from every text it builds.

How Twilio's answers are read:
- `429` (error 20429, the account's limit of concurrent requests) and error 21611 (the
  sender's queue is full) are `ThrottledError` for the whole channel, waiting what the
  `Retry-After` header says (seconds or an HTTP date), else a short default.
- Error 21610 (the recipient replied STOP to this sender) and 21614 (the number is not a
  mobile number) are `RecipientUnreachableError`: the number is suppressed.
- Other 5xx are transient; other 4xx permanent.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import aiohttp

from notifyd.domain import Channel, OutgoingMessage
from notifyd.errors import (
    PermanentProviderError,
    RecipientUnreachableError,
    ThrottledError,
    TransientProviderError,
)
from notifyd.logs import get_logger
from notifyd.providers.http import (
    BODY_EXCERPT,
    HttpProvider,
    json_object,
    retry_after_seconds,
)
from notifyd.providers.sms import mask_phone, sms_recipient
from notifyd.redaction import url_secrets

if TYPE_CHECKING:
    from notifyd.channel_settings import SmsSettings

log = get_logger(__name__)

API_VERSION = "2010-04-01"
# Twilio refuses a longer Body (error 21617); it splits shorter ones into segments itself.
MAX_BODY_LENGTH = 1600
# Twilio error codes that ask to slow down, although they come with a 4xx status.
THROTTLING_CODES: Final = frozenset(
    {
        20429,  # too many requests
        21611,  # the From number's queue is full; it drains as Twilio sends
    }
)
# Error codes that say this number can never be reached by this sender, and why.
UNREACHABLE_CODES: Final = {
    21610: "the recipient replied STOP to this sender (Twilio error 21610)",
    21614: "the number is not a mobile number (Twilio error 21614)",
}
_CREDENTIAL_CODES = frozenset({20003, 20005, 20006})
_ERROR_KEYS = ("code", "message", "more_info", "detail")


class TwilioSmsProvider(HttpProvider):
    """Sends each message as one Twilio Message (Twilio splits it into segments)."""

    channel = Channel.SMS

    def __init__(self, settings: SmsSettings) -> None:
        token = settings.auth_token.get_secret_value()
        # Built by hand: aiohttp 3.14 deprecates BasicAuth, and older ones lack its successor.
        credentials = base64.b64encode(f"{settings.account_sid}:{token}".encode()).decode()
        super().__init__(
            timeout=settings.timeout,
            concurrency=settings.concurrency,
            # The pair is sent in base64 as the basic credentials.
            secrets=(token, f"{settings.account_sid}:{token}", *url_secrets(settings.api_url)),
            headers={"Accept": "application/json", "Authorization": f"Basic {credentials}"},
        )
        self._settings = settings
        account = quote(settings.account_sid, safe="")
        self._url = f"{settings.api_url}/{API_VERSION}/Accounts/{account}/Messages.json"

    async def send(self, message: OutgoingMessage) -> dict[str, Any]:
        """Hand one SMS to Twilio; return the message's sid, status and number."""
        phone = sms_recipient(message, self._settings)
        text = message.as_text()
        if len(text) > MAX_BODY_LENGTH:
            raise PermanentProviderError(
                f"SMS text is {len(text)} characters long; Twilio accepts at most {MAX_BODY_LENGTH}"
            )
        form = {"To": phone, "Body": text}
        if self._settings.messaging_service_sid:
            form["MessagingServiceSid"] = self._settings.messaging_service_sid
        else:
            form["From"] = self._settings.from_number
        status, retry_header, raw = await self._post(form)
        answer = self._interpret(status, retry_header, raw, phone)
        log.debug(
            "twilio_accepted",
            notification_id=message.notification_id,
            sid=answer["sid"],
            phone=mask_phone(phone),
        )
        return answer

    async def check(self) -> str:
        """Fetch the account resource: Twilio takes the credentials and the account is active."""
        account = quote(self._settings.account_sid, safe="")
        url = f"{self._settings.api_url}/{API_VERSION}/Accounts/{account}.json"
        status, retry_header, raw = await self._get(url)
        body = json_object(raw)
        if status == 200 and body is not None:
            # The resource holds the auth token too: only these fields are ever read.
            state, kind = body.get("status"), body.get("type")
            name = self._scrub(str(body.get("friendly_name") or self._settings.account_sid))
            if state not in (None, "active"):
                raise PermanentProviderError(f"Twilio account {name} is {state}")
            return f"account '{name}' is {state or 'reachable'}" + (f" ({kind})" if kind else "")
        # No message, no phone: the account lookup's errors are read like a send's.
        self._interpret(status, retry_header, raw, phone="")
        raise PermanentProviderError(f"Twilio answered the account lookup with HTTP {status}")

    async def _get(self, url: str) -> tuple[int, str | None, bytes]:
        """GET `url`; return the status, the Retry-After header and the body."""
        try:
            async with self._ensure_session().get(url, allow_redirects=False) as response:
                return response.status, response.headers.get("Retry-After"), await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            error = self._unreachable("Twilio", exc)
        # Raised out here for the reason `_post` gives: no context carrying the credentials.
        raise error from None

    async def _post(self, form: dict[str, str]) -> tuple[int, str | None, bytes]:
        """POST the form; return the status, the Retry-After header and the body."""
        status: int | None = None
        try:
            # A redirect would be a wrong api_url; following it would repeat the POST.
            async with self._ensure_session().post(
                self._url, data=form, allow_redirects=False
            ) as response:
                status = response.status
                return status, response.headers.get("Retry-After"), await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            if status == 201:
                # Twilio has created the message: retrying would send it twice.
                log.warning("twilio_answer_lost", error_type=type(exc).__name__)
                return status, None, b""
            error = self._unreachable("Twilio", exc)
        # aiohttp exceptions can carry the request's headers, with the credentials.
        # `from None` inside the except block would only hide them from tracebacks and
        # keep them reachable as __context__; raised out here, the error has no context.
        raise error from None

    def _interpret(
        self, status: int, retry_header: str | None, raw: bytes, phone: str
    ) -> dict[str, Any]:
        """Turn the HTTP answer into a result, or raise the matching provider error."""
        body = json_object(raw)
        if status == 201:
            body = body or {}
            return {
                "provider": "twilio",
                "sid": body.get("sid"),
                "status": body.get("status"),
                "to": body.get("to", phone),
                "num_segments": _int_or_none(body.get("num_segments")),
            }
        transient = status == 429 or status >= 500
        retry_after = retry_after_seconds(retry_header)
        code = body.get("code") if body is not None else None
        if not isinstance(code, int) or isinstance(code, bool):
            excerpt = raw[:BODY_EXCERPT].decode("utf-8", errors="replace")
            response = {"http_status": status, "body": self._scrub(excerpt)}
            error = f"Twilio answered HTTP {status}"
            if body is None:
                error += " without JSON"
            if status == 429:
                log.warning("twilio_rate_limited", retry_after=retry_after, code=None)
                raise ThrottledError(error, response=response, retry_after=retry_after)
            if transient:
                raise TransientProviderError(error, response=response, retry_after=retry_after)
            raise PermanentProviderError(error, response=response)

        assert body is not None  # a code was read from it
        response = {"http_status": status} | {k: body[k] for k in _ERROR_KEYS if k in body}
        response = self._redact(response)
        text = str(response.get("message") or f"HTTP {status}").replace(phone, mask_phone(phone))
        error = f"Twilio error {code}: {text}"
        if code in _CREDENTIAL_CODES or status in {401, 403}:
            error += " (check channels.sms.account_sid and auth_token)"
        if status == 429 or code in THROTTLING_CODES:
            log.warning("twilio_rate_limited", retry_after=retry_after, code=code)
            raise ThrottledError(error, response=response, retry_after=retry_after)
        if transient:
            raise TransientProviderError(error, response=response, retry_after=retry_after)
        if code in UNREACHABLE_CODES and phone:
            raise RecipientUnreachableError(
                error, reason=UNREACHABLE_CODES[code], response=response
            )
        raise PermanentProviderError(error, response=response)


def _int_or_none(value: object) -> int | None:
    """Twilio sends counts as strings ("1")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    # ASCII only: isdigit() is also true for "²", which int() refuses.
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None
