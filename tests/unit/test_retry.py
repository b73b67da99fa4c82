"""The retry policy: backoff with jitter, retry-or-fall-back decisions, resuming a delivery."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from notifyd.delivery.retry import (
    FallBack,
    ResumePoint,
    RetryLater,
    RetryPolicy,
    backoff_delay,
    decide,
    resume_point,
    throttled_too_long,
)
from notifyd.domain import Attempt

SEEDS = range(200)
POLICY = RetryPolicy(max_attempts=3, backoff_initial=1.0, backoff_max=60.0)
CHANNELS = ("email", "sms", "telegram")
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _ceiling(policy: RetryPolicy, attempt: int) -> float:
    return min(policy.backoff_max, policy.backoff_initial * 2.0 ** (attempt - 1))


def _attempt(
    channel: str,
    number: int,
    *,
    status: str = "failed",
    transient: bool | None = True,
) -> Attempt:
    return Attempt(
        id=number,
        notification_id=1,
        channel=channel,
        attempt=number,
        status=status,
        error=None if status == "success" else "boom",
        transient=None if status == "success" else transient,
        provider_response=None,
        started_at=NOW,
        finished_at=NOW,
    )


def _failures(channel: str, count: int, *, transient: bool = True) -> list[Attempt]:
    return [_attempt(channel, n, transient=transient) for n in range(1, count + 1)]


# backoff_delay


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 6, 7, 8, 10, 30, 100])
def test_backoff_stays_between_half_the_ceiling_and_the_ceiling(attempt: int) -> None:
    ceiling = _ceiling(POLICY, attempt)

    delays = [backoff_delay(POLICY, attempt, random.Random(seed)) for seed in SEEDS]

    assert all(ceiling / 2 <= d <= ceiling for d in delays), (ceiling, min(delays), max(delays))


def test_backoff_is_jittered_across_seeds() -> None:
    delays = {backoff_delay(POLICY, 3, random.Random(seed)) for seed in SEEDS}

    assert len(delays) > 100


def test_backoff_grows_exponentially_until_the_cap() -> None:
    policy = RetryPolicy(max_attempts=10, backoff_initial=0.5, backoff_max=1000.0)

    for seed in SEEDS:
        for attempt in range(1, 8):
            # Each attempt's range [c/2, c] starts where the previous one ended.
            before = backoff_delay(policy, attempt, random.Random(seed))
            after = backoff_delay(policy, attempt + 1, random.Random(seed))
            assert after == pytest.approx(2 * before)


def test_backoff_is_capped_at_backoff_max() -> None:
    policy = RetryPolicy(max_attempts=100, backoff_initial=1.0, backoff_max=8.0)

    delays = [
        backoff_delay(policy, attempt, random.Random(seed))
        for seed in SEEDS
        for attempt in (5, 6, 10, 50, 100)
    ]

    assert max(delays) <= 8.0
    assert min(delays) >= 4.0


def test_backoff_is_zero_when_the_initial_delay_is_zero() -> None:
    policy = RetryPolicy(max_attempts=5, backoff_initial=0.0, backoff_max=0.0)

    assert {backoff_delay(policy, a, random.Random(s)) for s in SEEDS for a in (1, 2, 5)} == {0.0}


def test_backoff_is_reproducible_with_the_same_seed() -> None:
    first = backoff_delay(POLICY, 4, random.Random(7))
    second = backoff_delay(POLICY, 4, random.Random(7))

    assert first == second


# decide


def test_permanent_error_falls_back_at_the_first_attempt() -> None:
    decision = decide(POLICY, 1, transient=False, rng=random.Random(0))

    assert isinstance(decision, FallBack)
    assert "permanent" in decision.reason


def test_permanent_error_ignores_retry_after() -> None:
    decision = decide(POLICY, 1, transient=False, retry_after=5.0)

    assert isinstance(decision, FallBack)


@pytest.mark.parametrize("attempt", [1, 2])
def test_transient_error_below_max_attempts_retries_within_the_backoff(attempt: int) -> None:
    ceiling = _ceiling(POLICY, attempt)

    for seed in SEEDS:
        decision = decide(POLICY, attempt, transient=True, rng=random.Random(seed))
        assert isinstance(decision, RetryLater)
        assert ceiling / 2 <= decision.delay <= ceiling


def test_transient_error_at_max_attempts_falls_back() -> None:
    decision = decide(POLICY, 3, transient=True, rng=random.Random(0))

    assert isinstance(decision, FallBack)
    assert "3 attempts" in decision.reason


def test_transient_error_beyond_max_attempts_falls_back() -> None:
    assert isinstance(decide(POLICY, 4, transient=True), FallBack)


def test_a_single_attempt_policy_falls_back_at_once() -> None:
    policy = RetryPolicy(max_attempts=1)

    assert isinstance(decide(policy, 1, transient=True, rng=random.Random(0)), FallBack)


def test_retry_after_longer_than_the_backoff_wins() -> None:
    for seed in SEEDS:
        decision = decide(POLICY, 1, transient=True, retry_after=42.0, rng=random.Random(seed))
        assert decision == RetryLater(42.0)


def test_retry_after_shorter_than_the_backoff_does_not_shorten_it() -> None:
    policy = RetryPolicy(max_attempts=5, backoff_initial=10.0, backoff_max=60.0)

    for seed in SEEDS:
        expected = backoff_delay(policy, 2, random.Random(seed))
        decision = decide(policy, 2, transient=True, retry_after=0.5, rng=random.Random(seed))
        assert decision == RetryLater(expected)
        assert decision.delay >= 10.0


# resume_point


def test_no_attempts_starts_on_the_first_channel() -> None:
    assert resume_point(CHANNELS, [], 3) == ResumePoint(0, 0)


def test_one_transient_failure_resumes_the_same_channel_with_it_counted() -> None:
    assert resume_point(CHANNELS, _failures("email", 1), 3) == ResumePoint(0, 1)


def test_max_transient_failures_move_to_the_next_channel() -> None:
    assert resume_point(CHANNELS, _failures("email", 3), 3) == ResumePoint(1, 0)


def test_a_permanent_failure_uses_up_the_channel_at_once() -> None:
    attempts = _failures("email", 1, transient=False)

    assert resume_point(CHANNELS, attempts, 3) == ResumePoint(1, 0)


def test_attempts_on_later_channels_are_counted_there() -> None:
    attempts = [*_failures("email", 3), *_failures("sms", 2)]

    assert resume_point(CHANNELS, attempts, 3) == ResumePoint(1, 2)


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_success_anywhere_means_already_sent(channel: str) -> None:
    attempts = [*_failures("email", 2), _attempt(channel, 3, status="success")]

    point = resume_point(CHANNELS, attempts, 3)

    assert point.already_sent is True
    assert point.channel_index is None


def test_all_channels_used_up_leaves_nothing() -> None:
    attempts = [
        *_failures("email", 3),
        *_failures("sms", 1, transient=False),
        *_failures("telegram", 3),
    ]

    assert resume_point(CHANNELS, attempts, 3) == ResumePoint(None, 0, already_sent=False)


def test_the_notification_channel_order_is_respected() -> None:
    channels = ("telegram", "email")

    assert resume_point(channels, [], 3) == ResumePoint(0, 0)
    assert resume_point(channels, _failures("telegram", 3), 3) == ResumePoint(1, 0)
    # Failures on email count against email, which comes second here.
    assert resume_point(channels, _failures("email", 1), 3) == ResumePoint(0, 0)


def test_attempts_on_channels_outside_the_order_are_ignored() -> None:
    attempts = _failures("sms", 3)

    assert resume_point(("email",), attempts, 3) == ResumePoint(0, 0)


def test_max_attempts_one_uses_a_channel_up_after_one_failure() -> None:
    assert resume_point(CHANNELS, _failures("email", 1), 1) == ResumePoint(1, 0)


def test_a_vendor_asking_to_wait_too_long_makes_the_channel_fall_back() -> None:
    policy = RetryPolicy(max_attempts=3, backoff_initial=1, backoff_max=60, max_retry_after=300)
    assert decide(policy, 1, transient=True, retry_after=300) == RetryLater(300)
    decision = decide(policy, 1, transient=True, retry_after=3600)
    assert isinstance(decision, FallBack)
    assert "3600s" in decision.reason


def test_throttled_too_long() -> None:
    assert throttled_too_long(0.0, 30.0, 600.0) is None
    assert throttled_too_long(590.0, 30.0, 600.0) == (
        "asked to wait 30 s, which would pass delivery.max_throttle_wait of 600 s:"
        " trying the next channel"
    )
    assert throttled_too_long(601.0, 1.0, 600.0) == (
        "throttled for 601 s, longer than delivery.max_throttle_wait: trying the next channel"
    )
