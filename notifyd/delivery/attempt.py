"""One attempt: the provider called within the channel's deadline, its answer classified."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from notifyd.delivery.inflight import Delivery
from notifyd.delivery.timers import Deadlines
from notifyd.domain import Channel
from notifyd.errors import (
    LocalResourceError,
    ProviderError,
    RecipientUnreachableError,
    ThrottledError,
)
from notifyd.logs import get_logger
from notifyd.providers import Provider

log = get_logger(__name__)


# Not frozen: one is made per attempt, and a frozen dataclass takes several times as long
# to build.
@dataclass(slots=True)
class AttemptResult:
    """What one attempt came to, before it is written."""

    ok: bool
    error: str | None = None
    transient: bool | None = None
    response: dict[str, Any] | None = None
    retry_after: float | None = None
    # The vendor asked to slow down: "channel" or "recipient" (what to pause).
    throttled: str | None = None
    # The vendor said this contact can never be reached this way, and why.
    unreachable: str | None = None
    # This host lacked something to make the attempt (descriptors, memory): not an attempt.
    local_shortage: bool = False


async def attempt_once(
    provider: Provider,
    delivery: Delivery,
    deadlines: Deadlines,
    task: asyncio.Task[Any],
    channel: Channel,
) -> AttemptResult:
    """Send `delivery`'s message once, from `task`, cut off at the channel's deadline."""
    deadlines.arm(task)
    try:
        response = await provider.send(delivery.message)
    except asyncio.CancelledError:
        if not deadlines.disarm(task):
            raise  # the daemon is stopping
        return AttemptResult(
            ok=False, error=f"timed out after {deadlines.timeout:g}s", transient=True
        )
    except LocalResourceError as exc:
        return AttemptResult(ok=False, error=exc.message, local_shortage=True)
    except ThrottledError as exc:
        return AttemptResult(
            ok=False,
            error=exc.message,
            transient=True,
            response=exc.response,
            retry_after=exc.retry_after,
            throttled=exc.scope,
        )
    except RecipientUnreachableError as exc:
        return AttemptResult(
            ok=False,
            error=exc.message,
            transient=False,
            response=exc.response,
            unreachable=exc.reason,
        )
    except ProviderError as exc:
        return AttemptResult(
            ok=False,
            error=exc.message,
            transient=exc.transient,
            response=exc.response,
            retry_after=exc.retry_after,
        )
    except Exception as exc:
        # A provider bug, not a vendor answer. Only the type is logged: the text of an
        # untranslated library error may carry a secret (a token in a URL).
        log.error(
            "provider_crashed",
            notification_id=delivery.id,
            channel=channel,
            error_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
        )
        return AttemptResult(
            ok=False, error=f"internal error: {type(exc).__name__}", transient=True
        )
    finally:
        # A provider that swallowed the deadline's cancellation still gets it taken back.
        deadlines.disarm(task)
    return AttemptResult(ok=True, response=response)
