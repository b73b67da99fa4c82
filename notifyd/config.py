"""Configuration: `notifyd.toml`, overridden by environment variables.

Precedence, highest first:
1. `NOTIFYD_<SECTION>__<KEY>` (nested sections joined with `__`, lists as JSON),
2. the variables of the system notifyd replaces (`DATABASE_URL`, `EMAIL_HOST`, ...),
3. the TOML file,
4. the defaults below (the same ones `notifyd.toml` documents).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from notifyd.channel_settings import ChannelsSettings, Section
from notifyd.domain import MAX_MESSAGE_LENGTH, MAX_SUBJECT_LENGTH
from notifyd.errors import ConfigError
from notifyd.redaction import redact_url
from notifyd.webhook_settings import WebhooksSettings

DEFAULT_CONFIG_FILE = Path("notifyd.toml")

# Environment variables of the system notifyd replaces, and the key each one sets.
LEGACY_ENV: dict[str, tuple[str, ...]] = {
    "DATABASE_URL": ("database", "url"),
    "EMAIL_HOST": ("channels", "email", "host"),
    "EMAIL_PORT": ("channels", "email", "port"),
    "EMAIL_HOST_USER": ("channels", "email", "username"),
    "EMAIL_HOST_PASSWORD": ("channels", "email", "password"),
    "DEFAULT_FROM_EMAIL": ("channels", "email", "from_address"),
    "SMS_FAIL_ALWAYS": ("channels", "sms", "fail_always"),
    "TELEGRAM_BOT_TOKEN": ("channels", "telegram", "bot_token"),
    "TELEGRAM_API_URL": ("channels", "telegram", "api_url"),
}
# Django's EMAIL_USE_TLS means STARTTLS and EMAIL_USE_SSL means implicit TLS.
LEGACY_EMAIL_SECURITY = {"EMAIL_USE_TLS": "starttls", "EMAIL_USE_SSL": "tls"}
_TRUE = {"1", "true", "yes", "on", "t", "y"}
# A shorter API token can be guessed; `openssl rand -hex 32` gives 64 characters.
MIN_TOKEN_LENGTH = 16


# A host name as the Host header carries it: DNS labels, optionally a leading "." for a
# domain and all its subdomains; or an IP address (IPv6 in brackets or bare).
_HOST_NAME = re.compile(r"\.?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")


def _allowed_host(value: str) -> str:
    """One `http.allowed_hosts` entry, lower case; IPv6 addresses in brackets."""
    entry = value.strip().lower().removesuffix(".")
    if entry == "*":
        return entry
    bare = entry.removeprefix("[").removesuffix("]")
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        pass
    else:
        return f"[{address}]" if address.version == 6 else str(address)
    if not _HOST_NAME.fullmatch(entry) or len(entry) > 253:
        raise ValueError(
            f"{value!r} is not a host name or IP address (give no scheme, port or path; "
            '".example.com" also allows every subdomain, "*" any host)'
        )
    return entry


class HttpSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Seconds a client has to send a request's headers: from connecting, or from the first
    # byte of a request that follows another on the same connection.
    header_timeout: float = Field(default=10.0, gt=0, le=3600)
    # Seconds a client has to send a request's body, once its headers are in.
    body_timeout: float = Field(default=30.0, gt=0, le=3600)
    # Seconds an open connection may wait for its next request.
    idle_timeout: float = Field(default=75.0, gt=0, le=3600)
    # Seconds a client may leave an answer unread while the server waits to send more.
    send_timeout: float = Field(default=30.0, gt=0, le=3600)
    # Most inbound connections at once; lowered at start to what the descriptor limit leaves
    # after the database, SMTP and vendor connections.
    max_connections: int = Field(default=1024, ge=1)
    # Host names served besides the loopback names (and, listening beyond loopback, any IP
    # address): "notify.example.com", ".example.com" (and subdomains), or "*" for any.
    allowed_hosts: tuple[Annotated[str, AfterValidator(_allowed_host)], ...] = ()
    # Proxies whose Forwarded / X-Forwarded-For / X-Forwarded-Proto headers are believed.
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # "auto": the dashboard cookie is Secure when the request came over https (as a trusted
    # proxy says); "always": whatever the request says.
    secure_cookies: Literal["auto", "always"] = "auto"

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        # "10.0.0.5" is the network 10.0.0.5/32; a network with host bits set is refused.
        if isinstance(value, list | tuple):
            try:
                return tuple(ipaddress.ip_network(str(item).strip()) for item in value)
            except ValueError as exc:
                raise ValueError(f"must be IP addresses or networks: {exc}") from None
        return value


class ApiSettings(Section):
    # Bearer tokens for /api/; empty: the API is open to whoever reaches the port.
    tokens: tuple[SecretStr, ...] = ()
    # Requests per second per token, in bursts of as many; 0: no limit.
    rate_limit: float = Field(default=0.0, ge=0)
    # Enqueues that arrive together share one INSERT: at most this many per statement...
    enqueue_batch_size: int = Field(default=100, ge=1, le=10_000)
    # ...and this many such statements at once (each takes a pooled connection).
    enqueue_writers: int = Field(default=4, ge=1, le=64)

    @field_validator("tokens")
    @classmethod
    def _strong(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for token in value:
            secret = token.get_secret_value()
            if len(secret) < MIN_TOKEN_LENGTH or secret != secret.strip() or " " in secret:
                raise ValueError(
                    f"each token needs at least {MIN_TOKEN_LENGTH} characters and no spaces"
                )
        return value


class LimitsSettings(Section):
    # Longest message accepted, in characters; the database refuses more than 65,536.
    max_message_length: int = Field(default=MAX_MESSAGE_LENGTH, ge=1, le=MAX_MESSAGE_LENGTH)
    # Longest subject, in bytes of UTF-8 (RFC 5322's line limit is 998).
    max_subject_bytes: int = Field(default=MAX_SUBJECT_LENGTH, ge=0, le=MAX_SUBJECT_LENGTH)


# What `database.url` reaches: "auto" (detected), PostgreSQL itself, or a pooler that keeps
# a server connection per client connection ("session") or per transaction.
PoolerSetting = Literal["auto", "none", "session", "transaction"]


def _postgres_url(value: SecretStr | None) -> SecretStr | None:
    if value is None or not value.get_secret_value():
        return None
    parts = urlsplit(value.get_secret_value())
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ValueError("must be a postgresql:// URL")
    try:
        parts.port  # noqa: B018  (parsing it is the check: a port like "5x" raises)
    except ValueError:
        # Not the library's message: it would quote the URL, password and all.
        raise ValueError("has an invalid port") from None
    return value


PostgresUrl = Annotated[SecretStr | None, AfterValidator(_postgres_url)]


class DatabaseSettings(Section):
    # Empty: start the embedded PostgreSQL with its data in `embedded_dir`.
    url: PostgresUrl = None
    # The session that must not be pooled (LISTEN, the presence lock), when `url` is a
    # transaction pooler; empty: `url`, where it keeps sessions.
    listen_url: PostgresUrl = None
    pooler: PoolerSetting = "auto"
    embedded_dir: Path = Path(".notifyd/pgdata")
    pool_min_size: int = Field(default=2, ge=1)
    pool_max_size: int = Field(default=10, ge=1)
    connect_timeout: float = Field(default=5.0, gt=0)
    command_timeout: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _pool_bounds(self) -> DatabaseSettings:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("pool_min_size must not exceed pool_max_size")
        if self.listen_url is not None and self.url is None:
            # The embedded PostgreSQL is reached directly: there is nothing to route around.
            raise ValueError("listen_url is set without url: set both, or neither")
        return self

    @property
    def listen_pooler(self) -> PoolerSetting:
        """What the LISTEN session's URL is taken to reach: `pooler` only where it is `url`.

        `pooler` says what `url` reaches. A `listen_url` of its own is always looked at:
        trusted as a session pooler's, LISTEN and the presence lock would go through a
        transaction pooler given there by mistake, and the lock would outlive the instance
        on a pooled server connection.
        """
        if self.listen_url is None or self.listen_url == self.url:
            return self.pooler
        return "auto"

    def redacted_url(self) -> str | None:
        """The database URL with its password (userinfo or query) replaced, safe to show."""
        if self.url is None:
            return None
        return redact_url(self.url.get_secret_value())

    def redacted_listen_url(self) -> str | None:
        """`listen_url` with its password replaced, safe to show."""
        if self.listen_url is None:
            return None
        return redact_url(self.listen_url.get_secret_value())


class DispatcherSettings(Section):
    poll_interval: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=250, ge=1, le=10_000)
    claimers: int = Field(default=2, ge=1, le=16)
    max_in_flight: int = Field(default=1000, ge=1)
    listen_check_interval: float = Field(default=5.0, gt=0)
    reconnect_backoff_max: float = Field(default=10.0, gt=0)
    # Attempts written per statement at most, and statements written at once.
    write_batch_size: int = Field(default=500, ge=1, le=10_000)
    writers: int = Field(default=2, ge=1, le=32)


class DeliverySettings(Section):
    max_attempts: int = Field(default=3, ge=1, le=100)
    backoff_initial: float = Field(default=1.0, ge=0)
    backoff_max: float = Field(default=60.0, ge=0)
    # A vendor's Retry-After above this makes the channel fall back instead of waiting.
    max_retry_after: float = Field(default=300.0, gt=0)
    lease_seconds: float = Field(default=30.0, ge=1)
    # A notification the vendor keeps throttling falls back to its next channel after
    # waiting this long (seconds) on one channel; throttled attempts do not count otherwise.
    max_throttle_wait: float = Field(default=600.0, gt=0)

    @model_validator(mode="after")
    def _backoff_bounds(self) -> DeliverySettings:
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must not be less than backoff_initial")
        return self


class ShutdownSettings(Section):
    grace_seconds: float = Field(default=10.0, ge=0)


class RetentionSettings(Section):
    # Finished notifications (and their attempts) older than this are deleted; 0 keeps all.
    days: float = Field(default=30.0, ge=0)
    # How long an Idempotency-Key is remembered.
    idempotency_key_hours: float = Field(default=24.0, gt=0)
    # Seconds between pruning rounds, and rows deleted per statement.
    prune_interval: float = Field(default=300.0, gt=0)
    batch_size: int = Field(default=1000, ge=1, le=100_000)


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # One `http_request` line per request (notifyd.web.access_log); always on at "debug".
    access: bool = False

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("access")
    @classmethod
    def _shown(cls, value: bool, info: ValidationInfo) -> bool:
        # Its lines are at info: at a higher level they would be asked for and never shown.
        if value and info.data.get("level") not in {"debug", "info"}:
            raise ValueError('needs level = "info" or "debug"')
        return value

    @property
    def access_enabled(self) -> bool:
        """Whether every request is logged."""
        return self.access or self.level == "debug"


class Settings(BaseSettings):
    """The whole configuration of one daemon."""

    model_config = SettingsConfigDict(
        env_prefix="NOTIFYD_",
        env_nested_delimiter="__",
        env_ignore_empty=True,
        extra="forbid",
        frozen=True,
    )

    http: HttpSettings = HttpSettings()
    api: ApiSettings = ApiSettings()
    limits: LimitsSettings = LimitsSettings()
    database: DatabaseSettings = DatabaseSettings()
    dispatcher: DispatcherSettings = DispatcherSettings()
    delivery: DeliverySettings = DeliverySettings()
    channels: ChannelsSettings = ChannelsSettings()
    shutdown: ShutdownSettings = ShutdownSettings()
    retention: RetentionSettings = RetentionSettings()
    webhooks: WebhooksSettings = WebhooksSettings()
    log: LogSettings = LogSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # `load_settings` passes the TOML file merged with the legacy variables as init
        # arguments; NOTIFYD_* variables must win over both, so env comes first.
        return (env_settings, init_settings)


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the configuration, or raise `ConfigError` naming the offending key."""
    env = os.environ if environ is None else environ
    if path is None and env.get("NOTIFYD_CONFIG"):
        path = Path(env["NOTIFYD_CONFIG"])
    file_data = _read_toml(path)
    merged = deep_merge(file_data, legacy_env_overrides(env))
    try:
        return Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, env)) from None


def legacy_env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """The nested settings that the old system's environment variables ask for."""
    result: dict[str, Any] = {}
    for name, key in LEGACY_ENV.items():
        value = environ.get(name, "")
        if value != "":
            _set_nested(result, key, value)
    for name, security in LEGACY_EMAIL_SECURITY.items():
        if environ.get(name, "").strip().lower() in _TRUE:
            _set_nested(result, ("channels", "email", "security"), security)
    return result


def _read_toml(path: Path | None) -> dict[str, Any]:
    if path is None:
        if not DEFAULT_CONFIG_FILE.is_file():
            return {}
        path = DEFAULT_CONFIG_FILE
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _describe(exc: ValidationError, environ: Mapping[str, str]) -> str:
    # Name the old-style variable only when it is the one that set the bad value.
    reverse = {".".join(key): name for name, key in LEGACY_ENV.items() if environ.get(name)}
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        key = ".".join(str(part) for part in error["loc"]) or "(root)"
        source = f" (from {reverse[key]})" if key in reverse else ""
        problems.append(f"{key}{source}: {error['msg']}")
    return "invalid configuration: " + "; ".join(problems)


def _set_nested(target: dict[str, Any], key: tuple[str, ...], value: Any) -> None:
    for part in key[:-1]:
        target = target.setdefault(part, {})
    target[key[-1]] = value


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`base` with `override` laid over it, nested tables merged key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
