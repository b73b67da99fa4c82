"""The `[webhooks]` section: endpoints that are told how each notification ended.

Endpoints come only from configuration, never from a request, so a caller cannot make
notifyd call a host of its choosing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Annotated, Final, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator

EventType = Literal["notification.sent", "notification.failed", "notification.cancelled"]
EVENT_TYPES: Final[tuple[EventType, ...]] = (
    "notification.sent",
    "notification.failed",
    "notification.cancelled",
)
SECRET_PREFIX: Final = "whsec_"  # noqa: S105  (the format's prefix, not a secret)
# Longest endpoint URL accepted: a longer one is a mistake (or a payload smuggled into it).
MAX_URL_LENGTH: Final = 2048


def _endpoint_url(value: str) -> str:
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"must be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (parsing it is the check: a port like "5x" raises)
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if any(char.isspace() or ord(char) < 0x21 for char in value):
        raise ValueError("must not contain spaces or control characters")
    return value


class WebhookEndpoint(BaseModel):
    """One receiver: where to send, the secret to sign with, and which events it wants."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Annotated[str, AfterValidator(_endpoint_url)]
    # "whsec_" and the key in base64, as the Standard Webhooks libraries take it.
    secret: SecretStr
    events: tuple[EventType, ...] = Field(default=EVENT_TYPES, min_length=1)

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: SecretStr) -> SecretStr:
        # The message never quotes the value: it is a secret.
        text = value.get_secret_value()
        if not text.startswith(SECRET_PREFIX):
            raise ValueError(f'must start with "{SECRET_PREFIX}" (whsec_<base64 key>)')
        try:
            key = base64.b64decode(text.removeprefix(SECRET_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f'must be "{SECRET_PREFIX}" and a base64 key') from None
        if not 16 <= len(key) <= 128:
            raise ValueError("the key must be 16 to 128 bytes (24 or 32 is usual)")
        return value

    @property
    def key(self) -> str:
        """A short stable name of the endpoint (its URL's digest), kept in the outbox."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]

    @property
    def origin(self) -> str:
        """Scheme, host and port only: what logs and pages show (a path may hold a token)."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}"

    def wants(self, event_type: str) -> bool:
        return event_type in self.events


class WebhooksSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # [[webhooks.endpoints]] tables, or JSON in NOTIFYD_WEBHOOKS__ENDPOINTS.
    endpoints: tuple[WebhookEndpoint, ...] = ()
    # Seconds one request may take, connecting included; later is a failure, retried.
    timeout: float = Field(default=10.0, gt=0, le=300)
    # Seconds after the status change during which a failed send is retried; then the
    # event is marked failed (and kept).
    retry_for: float = Field(default=86400.0, gt=0, le=30 * 86400)
    # First wait after a failed send, doubling (with jitter) up to backoff_max.
    backoff_initial: float = Field(default=5.0, gt=0, le=86400)
    backoff_max: float = Field(default=3600.0, gt=0, le=86400)
    # Requests under way at once (and the connection limit), whatever the backlog.
    concurrency: int = Field(default=8, ge=1, le=256)
    # Seconds between looks at the outbox for events due.
    poll_interval: float = Field(default=1.0, gt=0, le=3600)

    @field_validator("endpoints")
    @classmethod
    def _distinct(cls, value: tuple[WebhookEndpoint, ...]) -> tuple[WebhookEndpoint, ...]:
        urls = [endpoint.url for endpoint in value]
        if len(set(urls)) != len(urls):
            raise ValueError("an endpoint URL is listed twice")
        return value
