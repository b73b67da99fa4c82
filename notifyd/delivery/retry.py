"""Retry and fallback decisions: pure functions of (policy, attempt, error)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from notifyd.domain import Attempt, AttemptStatus

_RANDOM = random.Random()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    # A vendor asking to wait longer than this is treated as down: fall back instead of
    # holding the notification (and its lease) that long.
    max_retry_after: float = 300.0


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Try the same channel again after `delay` seconds."""

    delay: float


@dataclass(frozen=True, slots=True)
class FallBack:
    """Give up on this channel: move to the next one, or fail if none is left."""

    reason: str


Decision = RetryLater | FallBack


def backoff_delay(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random.

    The fixed half keeps retries from hammering a struggling server; the random half spreads
    out the notifications that failed together, so they do not come back together.
    """
    ceiling = min(policy.backoff_max, policy.backoff_initial * 2.0 ** (attempt - 1))
    half = ceiling / 2
    return half + (rng or _RANDOM).uniform(0, half)


def decide(
    policy: RetryPolicy,
    attempt: int,
    *,
    transient: bool,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> Decision:
    """What to do after failed attempt number `attempt` (1-based) on a channel."""
    if not transient:
        return FallBack("permanent error")
    if attempt >= policy.max_attempts:
        return FallBack(f"{policy.max_attempts} attempts failed")
    if retry_after is not None and retry_after > policy.max_retry_after:
        return FallBack(f"the vendor asks to wait {retry_after:g}s")
    delay = backoff_delay(policy, attempt, rng)
    if retry_after is not None and retry_after > delay:
        # The vendor said when to come back (Telegram's retry_after, HTTP Retry-After).
        delay = retry_after
    return RetryLater(delay)


def throttled_too_long(waited: float, pause: float, limit: float) -> str | None:
    """Why a notification throttled for `waited` s, asked to pause `pause` s more, falls
    back (`limit`: delivery.max_throttle_wait); None while it may wait."""
    if waited >= limit:
        return (
            f"throttled for {waited:.0f} s, longer than delivery.max_throttle_wait:"
            " trying the next channel"
        )
    if waited + pause > limit:
        return (
            f"asked to wait {pause:g} s, which would pass delivery.max_throttle_wait"
            f" of {limit:g} s: trying the next channel"
        )
    return None


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where a delivery resumes after its lease expired: a channel, or nothing left."""

    channel_index: int | None
    attempts_on_channel: int
    already_sent: bool = False
    # When the vendor first throttled it on that channel, if it did.
    throttled_since: datetime | None = None


def resume_point(
    channels: Sequence[str], attempts: Sequence[Attempt], max_attempts: int
) -> ResumePoint:
    """Resume from the attempt log, skipping the channels already used up.

    A channel is used up after `max_attempts` logged attempts or one permanent failure;
    throttled attempts (the vendor asked to slow down) do not count. An attempt that was
    in flight when the previous owner died was never logged, so it is simply made again:
    this is the one place a duplicate delivery can come from.
    """
    if any(a.status == AttemptStatus.SUCCESS for a in attempts):
        return ResumePoint(None, 0, already_sent=True)
    for index, channel in enumerate(channels):
        on_channel = [a for a in attempts if a.channel == channel]
        counted = [a for a in on_channel if a.status != AttemptStatus.THROTTLED]
        used_up = len(counted) >= max_attempts or any(a.transient is False for a in counted)
        if not used_up:
            throttled = [a.started_at for a in on_channel if a.status == AttemptStatus.THROTTLED]
            return ResumePoint(index, len(counted), throttled_since=min(throttled, default=None))
    return ResumePoint(None, 0)
