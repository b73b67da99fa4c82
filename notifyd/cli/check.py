"""`notifyd check-config`: try each configured part and say, one line each, what works.

The database is connected to and its migrations compared with this notifyd's, and asked
whether status events are recorded (`notifyd.cli.webhooks`); each channel
is tried through its provider's `check` (SMTP login, Telegram getMe, the Twilio account),
all at once, each within its own timeout. Nothing is sent.

Secrets never reach the output: every part reports through messages built to be free of
them, and the report is scrubbed of every configured secret once more before it is shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from notifyd.channel_settings import EmailSettings
from notifyd.cli import tables
from notifyd.cli.runner import connect_one
from notifyd.cli.webhooks import recording_check
from notifyd.config import DEFAULT_CONFIG_FILE, LEGACY_ENV, Settings
from notifyd.db import Route
from notifyd.db.listen import Place, probe_listen_session
from notifyd.db.migrations import LEGACY_CHAIN, schema_status
from notifyd.delivery.listener import LISTEN_URL_POOLED, NO_LISTEN_URL, POLL_ONLY
from notifyd.errors import (
    DatabaseUnavailableError,
    ListenDatabaseError,
    NotifydError,
    PooledSessionError,
    ProviderError,
)
from notifyd.providers import Provider, build_providers
from notifyd.providers.base import NOTHING_TO_CHECK
from notifyd.redaction import Scrubber, url_secrets

# A warning works, but something is likely amiss; only a failure makes the exit code 1.
Outcome = Literal["ok", "warning", "failed", "skipped"]
# What the README suggests for seeing e-mail without a mail server.
LOCAL_CATCHER_PORT = 1025
LOCAL_CATCHER = f"python -m aiosmtpd -n -l localhost:{LOCAL_CATCHER_PORT}"


@dataclass(frozen=True, slots=True)
class CheckResult:
    part: str
    outcome: Outcome
    detail: str


async def check_all(
    settings: Settings, source: str, database: str | NotifydError | None
) -> list[CheckResult]:
    """Every check, in a fixed order: config, database, then the channels.

    `database` is the URL to try, why there is none (the embedded server did not start), or
    None when there is none to try: no URL, and no embedded database in this folder yet.
    """
    providers = build_providers(settings.channels)
    checks: list[Awaitable[list[CheckResult]]] = [_database_parts(settings, database)]
    checks += [
        _one(_guarded(name, _channel(settings, name, provider)))
        for name, provider in providers.items()
    ]
    try:
        results = await asyncio.gather(*checks)
    finally:
        await asyncio.gather(*(provider.close() for provider in providers.values()))
    return [_config(settings, source), *(result for part in results for result in part)]


async def _one(check: Awaitable[CheckResult]) -> list[CheckResult]:
    return [await check]


async def _database_parts(
    settings: Settings, database: str | NotifydError | None
) -> list[CheckResult]:
    """The database, then (for a configured URL) where the LISTEN session would go, then
    whether status events are recorded."""
    found: list[tuple[Route, Place]] = []
    results = [await _guarded("database", _database(settings, database, found))]
    if settings.database.url is not None:
        results.append(await _guarded("listener", _listener(settings, found)))
    if found and isinstance(database, str):
        # Only of a database reached: its own line says why another could not be asked.
        results.append(await _guarded("webhooks", _webhooks(settings, database)))
    return results


async def _webhooks(settings: Settings, database: str) -> CheckResult:
    level, detail = await recording_check(settings, database)
    return CheckResult("webhooks", "skipped" if level == "off" else level, detail)


def report(results: Sequence[CheckResult], settings: Settings) -> str:
    """The results as a table, with every configured secret masked."""
    text = tables.table(
        ("PART", "RESULT", "DETAIL"), [(r.part, r.outcome, r.detail) for r in results]
    )
    return scrubber_of(settings).scrub(text)


def all_ok(results: Sequence[CheckResult]) -> bool:
    """Whether every configured part works (skipped parts are not configured)."""
    return all(result.outcome != "failed" for result in results)


def config_source(path: Path | None, environ: Mapping[str, str] | None = None) -> str:
    """Which file `load_settings` read, in the words of the report."""
    env = os.environ if environ is None else environ
    if path is None and env.get("NOTIFYD_CONFIG"):
        path = Path(env["NOTIFYD_CONFIG"])
    if path is None and DEFAULT_CONFIG_FILE.is_file():
        path = DEFAULT_CONFIG_FILE
    if path is None:
        return f"no {DEFAULT_CONFIG_FILE}: defaults and environment"
    return f"read {path}"


def scrubber_of(settings: Settings) -> Scrubber:
    """Masks every secret of the configuration, in every form it could be printed in."""
    channels = settings.channels
    email, sms = channels.email, channels.sms
    values = [
        email.password.get_secret_value(),
        channels.telegram.bot_token.get_secret_value(),
        sms.auth_token.get_secret_value(),
        *(token.get_secret_value() for token in settings.api.tokens),
        *url_secrets(channels.telegram.api_url),
        *url_secrets(sms.api_url),
    ]
    for url in (settings.database.url, settings.database.listen_url):
        if url is not None:
            values += url_secrets(url.get_secret_value())
    if email.password.get_secret_value():
        # What SMTP AUTH PLAIN sends (in base64).
        values.append(f"\0{email.username}\0{email.password.get_secret_value()}")
    if sms.auth_token.get_secret_value():
        # The HTTP basic credentials Twilio gets.
        values.append(f"{sms.account_sid}:{sms.auth_token.get_secret_value()}")
    return Scrubber(value for value in values if value)


def secrets_of(settings: Settings) -> list[str]:
    """Every secret in the configuration, in the forms it could be printed in, longest first."""
    return scrubber_of(settings).forms


def _config(settings: Settings, source: str) -> CheckResult:
    http = settings.http
    tokens = len(settings.api.tokens)
    access = f"{tokens} API token(s)" if tokens else "open to all (no api.tokens)"
    return CheckResult("config", "ok", f"{source}; API on {http.host}:{http.port}, {access}")


async def _guarded(part: str, check: Awaitable[CheckResult]) -> CheckResult:
    """A check's result; whatever it raises becomes a failure, so the others still run."""
    try:
        return await check
    except ProviderError as exc:
        return CheckResult(part, "failed", exc.message)
    except NotifydError as exc:
        return CheckResult(part, "failed", str(exc))
    except Exception as exc:  # a bug in a check must not hide the others' results
        return CheckResult(part, "failed", f"unexpected error: {type(exc).__name__}: {exc}")


async def _database(
    settings: Settings, database: str | NotifydError | None, found: list[tuple[Route, Place]]
) -> CheckResult:
    """Connect and compare the migrations; `found` gets the route and where it is."""
    db = settings.database
    where = db.redacted_url() or f"embedded PostgreSQL in {db.embedded_dir}"
    if database is None:
        return CheckResult(
            "database",
            "skipped",
            f"not configured: DATABASE_URL is not set and there is no embedded database in "
            f"{db.embedded_dir.absolute()} yet (`notifyd serve` creates it; if it ran "
            "elsewhere, cd there)",
        )
    if isinstance(database, NotifydError):
        return CheckResult("database", "failed", f"{where}: {database}")
    try:
        connected = await connect_one(settings, database)
        found.append((connected.route, await connected.place()))
        try:
            schema = await schema_status(connected.pool)
        finally:
            await connected.close()
    except NotifydError as exc:
        return CheckResult("database", "failed", f"{where}: {exc}")
    if schema.pending:
        names = ", ".join(migration.name for migration in schema.pending)
        count = len(schema.pending)
        state = f"{count} migration(s) pending ({names}): `notifyd migrate` or `serve` applies them"
    else:
        state = f"migrations up to date ({len(schema.applied)} applied)"
    if schema.recognised_as is not None:
        first, last = LEGACY_CHAIN[min(LEGACY_CHAIN)], LEGACY_CHAIN[max(LEGACY_CHAIN)]
        state += (
            f"; {first} to {last} recognised as {schema.recognised_as}, which the next "
            "`notifyd migrate` or `serve` records in the ledger"
        )
    if schema.unknown:
        versions = ", ".join(str(version) for version in sorted(schema.unknown))
        state += f"; migrated by a newer notifyd (unknown versions {versions})"
    reached = connected.route.describe()
    return CheckResult("database", "ok", f"{where}: connected to {reached}; {state}")


async def _listener(settings: Settings, found: list[tuple[Route, Place]]) -> CheckResult:
    """Where the LISTEN session and the presence lock would go, tried when it is its own."""
    db = settings.database
    if db.listen_url is not None:
        where = db.redacted_listen_url()
        try:
            await probe_listen_session(
                db.listen_url.get_secret_value(),
                db.listen_pooler,
                db.connect_timeout,
                database=found[0][1] if found else None,
            )
        except PooledSessionError:
            return CheckResult("listener", "failed", f"{where}: {LISTEN_URL_POOLED}")
        except ListenDatabaseError as exc:
            return CheckResult("listener", "failed", f"{where}: {exc}")
        except DatabaseUnavailableError as exc:
            return CheckResult("listener", "failed", f"{where}: {exc}")
        return CheckResult("listener", "ok", f"LISTEN on {where}: a session of its own")
    if not found:
        return CheckResult("listener", "skipped", "the database could not be reached")
    if found[0][0].keeps_sessions:
        return CheckResult("listener", "ok", "LISTEN on database.url, which keeps sessions")
    return CheckResult(
        "listener",
        "skipped",
        f"{POLL_ONLY}: {NO_LISTEN_URL}; set {variable_for('database.listen_url')} to "
        "PostgreSQL itself (not the pooler) for wake-ups at once",
    )


async def _channel(settings: Settings, name: str, provider: Provider) -> CheckResult:
    missing = provider.missing_setting
    if missing is not None:
        return CheckResult(
            name, "skipped", f"not configured ({missing} is not set): set {variable_for(missing)}"
        )
    if name == "email" and await _default_smtp_absent(settings.channels.email):
        email = settings.channels.email
        return CheckResult(
            name,
            "skipped",
            f"nothing listens on {email.host}:{email.port}, the default, so e-mail attempts "
            "fail and fall back to the next channel. To see the mail, run a local catcher "
            # `make serve` does not install it (it is a development tool).
            f"(`pip install aiosmtpd`, then `{LOCAL_CATCHER}`) and set "
            f"EMAIL_PORT={LOCAL_CATCHER_PORT}, or set EMAIL_HOST "
            "and EMAIL_PORT to your SMTP server",
        )
    detail = await provider.check()
    if detail == NOTHING_TO_CHECK:
        if name == "sms" and settings.channels.sms.provider == "stub":
            detail = (
                "stub provider: logs each SMS (sms_stub_sent) and sends nothing; to send, "
                'set channels.sms.provider = "twilio" and its account'
            )
        return CheckResult(name, "skipped", detail)
    return CheckResult(name, "ok", detail)


def variable_for(key: str) -> str:
    """The environment variable that sets a configuration key (the legacy one if any)."""
    path = tuple(key.split("."))
    for name, legacy in LEGACY_ENV.items():
        if legacy == path:
            return name
    return "NOTIFYD_" + "__".join(part.upper() for part in path)


async def _default_smtp_absent(email: EmailSettings) -> bool:
    """Whether e-mail is left at its default address, where nothing accepts connections.

    Expected on a machine without a mail server, so not a failure; a server that answers
    there gets the full check.
    """
    defaults = EmailSettings.model_fields
    if (email.host, email.port) != (defaults["host"].default, defaults["port"].default):
        return False
    try:
        async with asyncio.timeout(email.timeout):
            _, writer = await asyncio.open_connection(email.host, email.port)
    except (OSError, TimeoutError):
        return True
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return False
