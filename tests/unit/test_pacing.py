"""Pacing, throttling and suppression in the actor loop, over the in-memory queue."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import timedelta

from structlog.testing import capture_logs

from notifyd.channel_settings import ChannelsSettings
from notifyd.delivery.pacing import DEFAULT_PAUSE, Pacer, fixed_interval, pacer_for, pause_length
from notifyd.domain import AttemptStatus, Channel, Recipient, Status
from notifyd.errors import RecipientUnreachableError, ThrottledError
from tests.fakes.memory_queue import MemoryQueue
from tests.support import wait_until
from tests.unit.pipeline import Pipeline, ScriptedProvider

TELEGRAM, SMS, EMAIL = Channel.TELEGRAM, Channel.SMS, Channel.EMAIL


def chat(user_id: int, chat_id: str) -> Recipient:
    return Recipient(user_id=user_id, email=None, phone="+79001234567", telegram_chat_id=chat_id)


async def settled(pipeline: Pipeline, count: int) -> None:
    async def done() -> bool:
        statuses = pipeline.statuses()
        finals = statuses[Status.SENT] + statuses[Status.FAILED]
        return finals >= count and len(pipeline.in_flight) == 0

    await wait_until(done, deadline=10, what=f"{count} notifications to finish")


async def test_a_rate_limit_spaces_the_channel_s_attempts() -> None:
    telegram = ScriptedProvider(TELEGRAM)
    pipeline = Pipeline({TELEGRAM: telegram}, rate_limits={TELEGRAM: 50.0}, actors=10)
    for n in range(10):
        pipeline.queue.add([TELEGRAM], recipient=chat(n, str(1000 + n)))
    pipeline.start()
    await pipeline.claim()
    await settled(pipeline, 10)
    await pipeline.stop()

    slots = sorted(slot for _, _, slot in pipeline.queue.reserved)
    assert len(slots) == 10
    gaps = [later - earlier for earlier, later in itertools.pairwise(slots)]
    assert min(gaps) >= 0.02 - 1e-6  # 1/50 s apart: never faster than the vendor takes


async def test_one_recipient_s_burst_is_spaced_without_holding_back_the_others() -> None:
    telegram = ScriptedProvider(TELEGRAM)
    pipeline = Pipeline({TELEGRAM: telegram}, intervals={TELEGRAM: 0.2}, concurrency=1, actors=2)
    burst = [pipeline.queue.add([TELEGRAM], recipient=chat(1, "42")) for _ in range(4)]
    others = [pipeline.queue.add([TELEGRAM], recipient=chat(n, str(n))) for n in range(2, 6)]
    pipeline.start()
    started = time.monotonic()
    await pipeline.claim()

    async def others_sent() -> bool:
        return set(others) <= set(telegram.sent)

    await wait_until(others_sent, deadline=5, what="the other recipients' messages")
    others_done = time.monotonic() - started
    await settled(pipeline, 8)
    await pipeline.stop()

    # The burst to chat 42 takes 3 intervals; the others did not wait behind it.
    assert others_done < 0.2 * 3
    order = [n for n in telegram.sent if n in burst]
    assert order == burst
    burst_slots = sorted(slot for _, key, slot in pipeline.queue.reserved if key == "telegram:42")
    assert [round(b - a, 2) for a, b in itertools.pairwise(burst_slots)] == [0.2] * 3


async def test_a_slot_beyond_the_horizon_sends_the_notification_back_to_the_queue() -> None:
    telegram = ScriptedProvider(TELEGRAM)
    pipeline = Pipeline({TELEGRAM: telegram}, intervals={TELEGRAM: 30.0}, horizon=1.0)
    first = pipeline.queue.add([TELEGRAM], recipient=chat(1, "42"))
    second = pipeline.queue.add([TELEGRAM], recipient=chat(1, "42"))
    pipeline.start()
    await pipeline.claim()

    async def deferred() -> bool:
        return pipeline.queue.rows[second].status == Status.PENDING

    await wait_until(deferred, deadline=5, what="the second to go back to the queue")
    await settled(pipeline, 1)
    await pipeline.stop()
    assert telegram.sent == [first]
    row = pipeline.queue.rows[second]
    assert row.locked_by is None
    assert pipeline.queue.attempts_of(second) == []  # waiting is not an attempt
    assert second not in pipeline.in_flight


async def test_a_throttled_attempt_pauses_the_channel_and_does_not_count() -> None:
    throttled = ThrottledError("Too Many Requests: retry after 0.2", retry_after=0.2)
    telegram = ScriptedProvider(TELEGRAM, [throttled, throttled])
    pipeline = Pipeline({TELEGRAM: telegram}, max_attempts=1, rate_limits={TELEGRAM: 1000.0})
    notification_id = pipeline.queue.add([TELEGRAM], recipient=chat(1, "42"))
    pipeline.start()
    await pipeline.claim()
    await settled(pipeline, 1)
    await pipeline.stop()

    log = pipeline.queue.attempts_of(notification_id)
    assert [(a.attempt, a.status) for a in log] == [
        (1, AttemptStatus.THROTTLED),
        (1, AttemptStatus.THROTTLED),
        (1, AttemptStatus.SUCCESS),
    ]
    assert pipeline.queue.rows[notification_id].status == Status.SENT
    # Every retry waited for the pause the vendor asked for.
    assert log[1].started_at - log[0].finished_at >= timedelta(seconds=0.2)
    assert pipeline.metrics.channels[TELEGRAM].attempt_throttled.value == 2


async def test_throttled_for_too_long_falls_back_saying_why() -> None:
    throttled = ThrottledError("Too Many Requests", retry_after=0.05)
    telegram = ScriptedProvider(TELEGRAM, [throttled] * 100)
    sms = ScriptedProvider(SMS)
    pipeline = Pipeline(
        {TELEGRAM: telegram, SMS: sms}, max_throttle_wait=0.2, rate_limits={TELEGRAM: 1000.0}
    )
    notification_id = pipeline.queue.add([TELEGRAM, SMS], recipient=chat(1, "42"))
    pipeline.start()
    await pipeline.claim()
    await settled(pipeline, 1)
    await pipeline.stop()

    log = pipeline.queue.attempts_of(notification_id)
    assert (log[-1].channel, log[-1].status) == (SMS, AttemptStatus.SUCCESS)
    last_throttled = [a for a in log if a.channel == TELEGRAM][-1]
    # Either it has waited too long, or the next pause would end past the limit.
    assert "delivery.max_throttle_wait" in (last_throttled.error or "")
    assert all(a.status == AttemptStatus.THROTTLED for a in log if a.channel == TELEGRAM)


async def test_a_pause_longer_than_the_budget_falls_back_at_once() -> None:
    throttled = ThrottledError("Too Many Requests: retry after 30", retry_after=30)
    telegram = ScriptedProvider(TELEGRAM, [throttled])
    sms = ScriptedProvider(SMS)
    pipeline = Pipeline(
        {TELEGRAM: telegram, SMS: sms}, max_throttle_wait=10, rate_limits={TELEGRAM: 1000.0}
    )
    notification_id = pipeline.queue.add([TELEGRAM, SMS], recipient=chat(1, "42"))
    pipeline.start()
    await pipeline.claim()
    await settled(pipeline, 1)
    await pipeline.stop()

    log = pipeline.queue.attempts_of(notification_id)
    assert [(a.channel, a.status) for a in log] == [
        (TELEGRAM, AttemptStatus.THROTTLED),
        (SMS, AttemptStatus.SUCCESS),
    ]
    assert log[0].error == (
        "Too Many Requests: retry after 30 (asked to wait 30 s, which would pass"
        " delivery.max_throttle_wait of 10 s: trying the next channel)"
    )


async def test_an_unreachable_contact_is_suppressed_and_skipped_afterwards() -> None:
    blocked = RecipientUnreachableError("Forbidden: bot was blocked by the user", reason="blocked")
    telegram = ScriptedProvider(TELEGRAM, [blocked])
    sms = ScriptedProvider(SMS)
    pipeline = Pipeline({TELEGRAM: telegram, SMS: sms})
    first = pipeline.queue.add([TELEGRAM, SMS], recipient=chat(7, "42"))
    pipeline.start()
    await pipeline.claim()
    await settled(pipeline, 1)
    assert pipeline.queue.suppressions == {(7, TELEGRAM): ("42", "blocked")}

    second = pipeline.queue.add([TELEGRAM, SMS], recipient=chat(7, "42"))
    await pipeline.claim()
    await settled(pipeline, 2)
    await pipeline.stop()

    assert telegram.calls == 1  # the second never reached the vendor
    skipped = pipeline.queue.attempts_of(second)
    assert [(a.channel, a.status, a.transient) for a in skipped] == [
        (TELEGRAM, AttemptStatus.FAILED, False),
        (SMS, AttemptStatus.SUCCESS, None),
    ]
    assert "suppressed" in (skipped[0].error or "")
    assert pipeline.queue.rows[first].status == Status.SENT


async def test_higher_priority_goes_first_while_a_channel_is_busy() -> None:
    gate = asyncio.Event()
    telegram = ScriptedProvider(TELEGRAM, [gate])
    pipeline = Pipeline({TELEGRAM: telegram}, concurrency=1, actors=1)
    blocker = pipeline.queue.add([TELEGRAM], recipient=chat(1, "1"))
    pipeline.start()
    await pipeline.claim()

    async def attempting() -> bool:
        return telegram.running == 1

    await wait_until(attempting, deadline=5, what="the first attempt")
    low = [pipeline.queue.add([TELEGRAM], recipient=chat(n, str(n))) for n in (2, 3)]
    urgent = pipeline.queue.add([TELEGRAM], priority=50, recipient=chat(4, "4"))
    await pipeline.claim()
    gate.set()
    await settled(pipeline, 4)
    await pipeline.stop()
    assert telegram.sent == [blocker, urgent, *low]


def test_lateness_and_pause_bounds() -> None:
    paced = Pacer(TELEGRAM, MemoryQueue(), rate_limit=30.0, recipient_interval=None)
    per_recipient = Pacer(TELEGRAM, MemoryQueue(), rate_limit=0.0, recipient_interval=None)

    assert paced.late_after == 1 / 30
    assert per_recipient.late_after == float("inf")
    # A vendor's retry time as a pause: none said is the default, nonsense is bounded.
    assert pause_length(None) == 1.0
    assert pause_length(1e12) == 3600.0
    assert pause_length(2.5) == 2.5


async def test_only_a_channel_without_slots_or_pauses_lets_attempts_go_unchecked() -> None:
    queue = MemoryQueue()
    recipient = chat(1, "42")
    assert not Pacer(SMS, queue, rate_limit=5.0, recipient_interval=None).holds_nothing_back()
    per_recipient = Pacer(SMS, queue, rate_limit=0.0, recipient_interval=fixed_interval(1.0))
    assert not per_recipient.holds_nothing_back()
    free = Pacer(SMS, queue, rate_limit=0.0, recipient_interval=None)
    assert free.holds_nothing_back()

    # A recipient's pause holds the channel's check until the pause is over.
    await free.pause(recipient, None, whole=False)
    assert not free.holds_nothing_back()

    async def recipient_free() -> bool:
        return free.pause_past(0.0, recipient) is None

    await wait_until(recipient_free, deadline=5, what="the recipient's pause to end")
    assert free.holds_nothing_back()

    # The channel's pause: until it is over and its end logged, every attempt checks.
    await free.pause(recipient, None, whole=True)
    assert not free.holds_nothing_back()

    async def channel_free() -> bool:
        return not free.paused

    await wait_until(channel_free, deadline=5, what="the channel's pause to end")
    assert not free.holds_nothing_back()
    with capture_logs() as logs:
        free.note_resumed()
    assert [entry["event"] for entry in logs] == ["channel_resumed"]
    assert free.holds_nothing_back()


def test_a_slow_down_that_says_now_is_a_pause_all_the_same() -> None:
    # "Retry after 0", a negative time, or an HTTP date already past (a vendor clock
    # behind ours): taken at its word, the channel would be asked again at once, as fast
    # as the vendor answers, for all of delivery.max_throttle_wait.
    assert pause_length(0) == DEFAULT_PAUSE
    assert pause_length(0.001) == DEFAULT_PAUSE
    assert pause_length(-5) == DEFAULT_PAUSE


async def test_slots_taken_before_a_pause_wait_for_it() -> None:
    # A slow rate, so that the other deliveries hold slots reserved before the 429.
    throttled = ThrottledError("Too Many Requests: retry after 0.5", retry_after=0.5)
    telegram = ScriptedProvider(TELEGRAM, [throttled])
    pipeline = Pipeline({TELEGRAM: telegram}, rate_limits={TELEGRAM: 20.0})
    ids = [pipeline.queue.add([TELEGRAM], recipient=chat(n, str(n))) for n in range(1, 6)]
    pipeline.start()
    await pipeline.claim()
    await settled(pipeline, len(ids))
    await pipeline.stop()

    attempts = sorted(
        (a for n in ids for a in pipeline.queue.attempts_of(n)), key=lambda a: a.started_at
    )
    first = attempts[0]
    assert first.status == AttemptStatus.THROTTLED
    # Nothing else went to the vendor during the pause it asked for.
    assert all(a.started_at - first.finished_at >= timedelta(seconds=0.45) for a in attempts[1:])
    assert telegram.calls == len(ids) + 1


async def test_a_pause_holds_every_actor_of_a_channel_without_slots() -> None:
    # No rate_limit and no per_recipient_interval (SMTP's default): the pause is not in
    # any slot, and the other deliveries must still wait it out, not only the one told.
    throttled = ThrottledError("421 4.7.0 Too many messages", retry_after=0.5)
    email = ScriptedProvider(EMAIL, [throttled])
    pipeline = Pipeline({EMAIL: email}, concurrency=1)
    ids = [pipeline.queue.add([EMAIL], recipient=chat(n, str(n))) for n in range(1, 6)]
    pipeline.start()
    await pipeline.claim()
    await settled(pipeline, len(ids))
    await pipeline.stop()

    attempts = sorted(
        (a for n in ids for a in pipeline.queue.attempts_of(n)), key=lambda a: a.started_at
    )
    first = attempts[0]
    assert first.status == AttemptStatus.THROTTLED
    assert all(a.started_at - first.finished_at >= timedelta(seconds=0.45) for a in attempts[1:])
    assert email.calls == len(ids) + 1


async def test_every_pause_and_resume_of_a_channel_is_logged() -> None:
    # On a channel without slots too: each pause is told, and so is its end.
    throttled = ThrottledError("421 4.7.0 Too many messages", retry_after=0.2)
    email = ScriptedProvider(EMAIL, [throttled, "ok", throttled, "ok"])
    pipeline = Pipeline({EMAIL: email}, concurrency=1, actors=1)
    ids = [pipeline.queue.add([EMAIL], recipient=chat(n, str(n))) for n in range(1, 4)]
    with capture_logs() as logs:
        pipeline.start()
        await pipeline.claim()
        await settled(pipeline, len(ids))
        await pipeline.stop()

    events = [e["event"] for e in logs if e["event"] in {"channel_paused", "channel_resumed"}]
    assert events == ["channel_paused", "channel_resumed"] * 2


async def test_a_pause_past_the_budget_falls_back_those_not_yet_tried_too() -> None:
    # The vendor asks the whole channel to wait 30 s, past max_throttle_wait: the
    # notification told falls back at once, and so does one that was waiting its turn,
    # instead of sitting out the pause in the queue. Neither asks the vendor again.
    throttled = ThrottledError("Too Many Requests: retry after 30", retry_after=30)
    telegram = ScriptedProvider(TELEGRAM, [throttled])
    sms = ScriptedProvider(SMS)
    pipeline = Pipeline(
        {TELEGRAM: telegram, SMS: sms},
        max_throttle_wait=10,
        rate_limits={TELEGRAM: 1000.0},
        concurrency=1,
    )
    told = pipeline.queue.add([TELEGRAM, SMS], recipient=chat(1, "41"))
    waiting = pipeline.queue.add([TELEGRAM, SMS], recipient=chat(2, "42"))
    pipeline.start()
    await pipeline.claim()
    await settled(pipeline, 2)
    await pipeline.stop()

    assert telegram.calls == 1
    assert sorted(sms.sent) == sorted([told, waiting])
    log = pipeline.queue.attempts_of(waiting)
    assert [(a.channel, a.status) for a in log] == [
        (TELEGRAM, AttemptStatus.THROTTLED),
        (SMS, AttemptStatus.SUCCESS),
    ]
    assert "not tried" in (log[0].error or "")
    assert "delivery.max_throttle_wait of 10 s" in (log[0].error or "")


async def test_while_a_channel_is_paused_higher_priority_goes_first_when_it_ends() -> None:
    # The lower ones were there first, but none takes a slot during the pause: when it
    # ends, the most urgent goes first, even one that came in the meantime.
    throttled = ThrottledError("Too Many Requests: retry after 1", retry_after=1.0)
    telegram = ScriptedProvider(TELEGRAM, [throttled])
    pipeline = Pipeline({TELEGRAM: telegram}, rate_limits={TELEGRAM: 1000.0}, concurrency=1)
    pipeline.queue.add([TELEGRAM], recipient=chat(1, "1"))
    low = [pipeline.queue.add([TELEGRAM], priority=-100, recipient=chat(n, str(n))) for n in (2, 3)]
    pipeline.start()
    await pipeline.claim()

    async def paused() -> bool:
        return pipeline.actors[TELEGRAM].pacer.paused

    await wait_until(paused, deadline=5, what="the pause")
    urgent = pipeline.queue.add([TELEGRAM], priority=100, recipient=chat(4, "4"))
    await pipeline.claim()
    await settled(pipeline, 4)
    await pipeline.stop()

    assert telegram.sent[0] == urgent
    assert telegram.sent[-2:] == low


async def test_telegram_spaces_groups_further_apart_than_private_chats() -> None:
    # Telegram takes about one message a second in a private chat, 20 a minute in a
    # group (a negative id) or a channel (an @username); 30 a second from the bot.
    queue = MemoryQueue()
    pacer = pacer_for(TELEGRAM, ChannelsSettings(), queue)
    for chat_id in ("1001", "-1001234", "@news"):
        for _ in range(2):
            assert (await pacer.reserve(chat(1, chat_id))).reserved

    def spacing(key: str) -> float:
        first, second = [slot for _, recipient, slot in queue.reserved if recipient == key]
        return round(second - first, 3)

    assert spacing("telegram:1001") == 1.0
    assert spacing("telegram:-1001234") == 3.0
    assert spacing("telegram:@news") == 3.0
    channel = [slot for key, _, slot in queue.reserved if key == "telegram"]
    assert all(round(b - a, 3) >= round(1 / 30, 3) for a, b in itertools.pairwise(channel))


async def test_a_group_paused_past_the_budget_falls_back_its_other_messages_only() -> None:
    # Telegram asks one group to wait 30 s, past max_throttle_wait: the other message to
    # that group falls back without asking, and a private chat's goes on as usual.
    throttled = ThrottledError("Too Many Requests", scope="recipient", retry_after=30)
    telegram = ScriptedProvider(TELEGRAM, [throttled])
    sms = ScriptedProvider(SMS)
    pipeline = Pipeline(
        {TELEGRAM: telegram, SMS: sms},
        max_throttle_wait=10,
        rate_limits={TELEGRAM: 1000.0},
        intervals={TELEGRAM: 0.01},
        concurrency=1,
    )
    told = pipeline.queue.add([TELEGRAM, SMS], recipient=chat(1, "-100"))
    same_group = pipeline.queue.add([TELEGRAM, SMS], recipient=chat(2, "-100"))
    private = pipeline.queue.add([TELEGRAM, SMS], recipient=chat(3, "3"))
    pipeline.start()
    await pipeline.claim()
    await settled(pipeline, 3)
    await pipeline.stop()

    assert telegram.calls == 2
    assert telegram.sent == [private]
    assert sorted(sms.sent) == sorted([told, same_group])
    [skipped, _] = pipeline.queue.attempts_of(same_group)
    assert skipped.status == AttemptStatus.THROTTLED
    assert (skipped.error or "").startswith("not tried: the vendor asked this recipient to pause")
