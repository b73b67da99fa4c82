"""What an attempt leaves behind once it ends: its record, its log line, the metrics.

The actors decide; these functions only write down what was decided, the same way for
every channel.
"""

from __future__ import annotations

import time
from typing import Final

from notifyd.delivery.attempt import AttemptResult
from notifyd.delivery.inflight import Delivery
from notifyd.delivery.store import DeliveryStore
from notifyd.domain import AttemptRecord, AttemptStatus, Channel, Status, epoch_in_range
from notifyd.logs import get_logger, info_enabled
from notifyd.metrics import Metrics

log = get_logger("notifyd.delivery.actors")

# The error of an attempt not made because the contact is suppressed.
SUPPRESSED: Final = (
    "suppressed: the vendor said earlier that this contact cannot be reached; change the"
    " contact or lift the suppression to try it again"
)
# The error of an attempt not made because the vendor paused the channel (or the
# recipient) past what delivery.max_throttle_wait leaves the notification (the actor adds
# how long).
PAUSED: Final = "not tried: the vendor asked this channel to pause"
RECIPIENT_PAUSED: Final = "not tried: the vendor asked this recipient to pause"


def not_tried(left: float, whole: bool) -> AttemptResult:
    """The result of an attempt given up on, unmade, because of a pause `left` s long."""
    return AttemptResult(
        ok=False,
        error=PAUSED if whole else RECIPIENT_PAUSED,
        transient=True,
        retry_after=left,
        throttled="channel" if whole else "recipient",
    )


def attempt_record(
    delivery: Delivery,
    channel: Channel,
    attempt: int,
    status: AttemptStatus,
    error: str | None,
    result: AttemptResult,
    started_at: float,
) -> AttemptRecord:
    """The attempt as the attempt log keeps it."""
    finished_at = time.time()
    return AttemptRecord(
        notification_id=delivery.id,
        channel=channel,
        attempt=attempt,
        status=status,
        error=error,
        transient=result.transient,
        provider_response=result.response,
        started_at=started_at,
        # Never before its start, should the clock be set back meanwhile.
        finished_at=finished_at if finished_at > started_at else started_at,
        round=delivery.notification.round,
    )


def log_attempt(
    delivery: Delivery,
    channel: Channel,
    attempt: int,
    status: AttemptStatus,
    error: str | None,
    elapsed: float,
) -> None:
    if not info_enabled():  # one line per attempt: not even built when not written
        return
    log.info(
        "attempt_finished",
        notification_id=delivery.id,
        channel=channel,
        attempt=attempt,
        status=status,
        error=error,
        duration_ms=round(elapsed * 1000, 3),
    )


def finished(
    metrics: Metrics,
    delivery: Delivery,
    channel: Channel,
    status: Status,
    attempt: int,
    finished_at: float,
) -> None:
    """Count and log a notification that ended `sent` or `failed`."""
    notification = delivery.notification
    (metrics.finished_sent if status == Status.SENT else metrics.finished_failed).inc()
    if epoch_in_range(notification.created):  # not a stray value another application wrote
        metrics.latency.observe(finished_at - notification.created)
    if status == Status.SENT:
        if not info_enabled():
            return
        log.info(
            "notification_sent",
            notification_id=notification.id,
            channel=channel,
            attempt=attempt,
        )
    else:
        log.warning(
            "notification_failed",
            notification_id=notification.id,
            channels=list(notification.channels),
        )


def cancelled(metrics: Metrics, delivery: Delivery, channel: Channel) -> None:
    """Count and log a notification that ended `cancelled` while this instance held it."""
    metrics.finished_cancelled.inc()
    log.info("notification_cancelled", notification_id=delivery.id, channel=channel)


async def suppress(store: DeliveryStore, delivery: Delivery, channel: Channel, reason: str) -> None:
    """Remember that the user's contact on `channel` can never be reached."""
    recipient = delivery.notification.recipient
    contact = recipient.contact(channel)
    if not contact:
        return
    try:
        recorded = await store.suppress(recipient.user_id, channel, contact, reason)
    except Exception as exc:
        # An outage, or a statement refused (a deadlock with another application's
        # transaction on the user's row): the vendor refuses again next time, and this
        # notification goes on to its next channel either way.
        log.warning(
            "suppression_not_recorded",
            channel=channel,
            error_type=type(exc).__name__,
            error=str(exc)[:500],
        )
        return
    if not recorded:
        return  # the user changed that contact meanwhile: the new one is not refused
    log.warning("contact_suppressed", user_id=recipient.user_id, channel=channel, reason=reason)
