"""Pacing: a channel's attempts spaced to what its vendor takes, across every instance.

Each paced attempt first takes a sending slot in PostgreSQL (`notifyd.reserve_slot`): the
channel's next slot (`rate_limit` a second) and the recipient's (`per_recipient_interval`
between two messages to one chat or number), both at once. Slots live in the database, so
two instances share one limit instead of each sending at the full rate. A slot a few
seconds away is waited out on a timer, outside the actors; a slot further away is not
taken, and the notification goes back to the queue until then, so a slow channel never
fills memory or holds back the other channels' work.

A vendor's "slow down" (`ThrottledError`) pushes the channel's (or the recipient's) next
slot by the time it asked for: every instance pauses, not only the one that was told.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from notifyd.channel_settings import ChannelsSettings, channel_settings
from notifyd.delivery.store import DeliveryStore
from notifyd.domain import Channel, Recipient
from notifyd.logs import get_logger

log = get_logger(__name__)

# A slot at most this far away is waited for in memory; a later one sends the notification
# back to the queue (it is claimed again when its slot comes).
HOLD_HORIZON: Final = 10.0
# The pause after a "slow down" that did not say for how long, and the shortest one taken:
# one that says "now" (0, or an HTTP date already past, from a vendor's clock behind ours)
# would have the vendor asked again at once, as fast as it answers, for as long as
# delivery.max_throttle_wait. Telegram and Twilio give whole seconds anyway. And the
# longest one taken (a vendor asking for more is treated as asking for this: past
# delivery.max_throttle_wait the notification falls back anyway).
DEFAULT_PAUSE: Final = 1.0
# A delivery at most this late past its slot always goes (see `Pacer.late_after`).
LATE_FLOOR: Final = 0.025
MAX_PAUSE: Final = 3600.0


@dataclass(frozen=True, slots=True)
class Slot:
    """A sending slot: taken (`reserved`) and `wait` seconds away, or not taken."""

    reserved: bool
    wait: float


NOW: Final = Slot(reserved=True, wait=0.0)


class Pacer:
    """The sending slots of one channel, and its pauses."""

    def __init__(
        self,
        channel: Channel,
        store: DeliveryStore,
        *,
        rate_limit: float,
        recipient_interval: Callable[[str], float] | None,
        horizon: float = HOLD_HORIZON,
    ) -> None:
        self.channel = channel
        self._store = store
        self._interval = 1.0 / rate_limit if rate_limit > 0 else 0.0
        self._recipient_interval = recipient_interval or _no_interval
        # Neither limit: no attempt on this channel ever needs a slot.
        self._unpaced = not self._interval and recipient_interval is None
        self._horizon = horizon
        # Monotonic time until which this instance knows the channel is paused.
        self.paused_until = 0.0
        # Monotonic time this instance last heard the channel must pause.
        self.paused_at = 0.0
        self._paused = False
        # Recipients (contact: until when) this instance heard must pause; those over are
        # dropped whenever one is added.
        self._recipient_pauses: dict[str, float] = {}
        # Monotonic time when every pause this instance heard of is over.
        self._pauses_over_at = 0.0

    def holds_nothing_back(self) -> bool:
        """True when no attempt on this channel has anything to wait for: it takes no
        slots, and every pause this instance heard of is over and said to be (the actors'
        check per attempt, in one call, for the common case)."""
        return self._unpaced and not self._paused and time.monotonic() >= self._pauses_over_at

    def paces(self, recipient: Recipient) -> bool:
        """Whether an attempt to `recipient` needs a slot at all."""
        if self._unpaced:
            return False
        if self._interval:
            return True
        contact = recipient.contact(self.channel)
        return bool(contact) and self._recipient_interval(contact or "") > 0

    def honours_pause(self, recipient: Recipient, *, whole: bool) -> bool:
        """Whether the next slot for `recipient` waits for such a pause (`pause`).

        A channel without a rate takes no channel slot, and one without an interval for
        this recipient no recipient slot: a pause of what it does not take is not seen.
        """
        if whole:
            return bool(self._interval)
        contact = recipient.contact(self.channel)
        return bool(contact) and self._recipient_interval(contact or "") > 0

    @property
    def late_after(self) -> float:
        """How late past its slot an attempt may still go (seconds; inf: any).

        A delivery that reaches an actor well after its slot (the host was busy) would go
        out together with the slots after it: a burst the vendor counts against the
        limit. Past one of the channel's intervals it takes a new slot instead (and never
        sooner than `LATE_FLOOR`: at a high rate, the event loop's own jitter is more than
        an interval, and a new slot for every delivery would waste half of them).
        """
        return max(self._interval, LATE_FLOOR) if self._interval else float("inf")

    @property
    def rated(self) -> bool:
        """Whether the channel has a rate_limit: a slot of its own, in the database."""
        return bool(self._interval)

    @property
    def paused(self) -> bool:
        return time.monotonic() < self.paused_until

    def pause_past(self, budget: float, recipient: Recipient) -> tuple[float, bool] | None:
        """Seconds left of a pause this instance heard of, for the channel or for
        `recipient`, if over `budget`; and whether it is the channel's."""
        now = time.monotonic()
        left, whole = self.paused_until - now, True
        contact = recipient.contact(self.channel)
        if contact and (alone := self._recipient_pauses.get(contact, 0.0) - now) > left:
            left, whole = alone, False
        return (left, whole) if left > 0 and left > budget else None

    def pause_left(self) -> float:
        """Seconds left of a pause of the whole channel that this instance heard of.

        Every delivery of this instance waits it out before it takes a slot: on a channel
        without `rate_limit` no slot would hold it back (other instances learn of it when
        they are told in turn); on one with, slots taken during the pause would go in the
        order deliveries came, and when it ends the most urgent must go first.
        """
        return max(0.0, self.paused_until - time.monotonic())

    def note_resumed(self) -> None:
        """Log `channel_resumed` once the pause this instance heard of is over."""
        if self._paused and not self.paused:
            self._paused = False
            log.info("channel_resumed", channel=self.channel)

    async def reserve(self, recipient: Recipient) -> Slot:
        """Take the next slot for a message to `recipient` (`DatabaseUnavailableError`)."""
        contact = recipient.contact(self.channel)
        recipient_interval = self._recipient_interval(contact) if contact else 0.0
        if not self._interval and not recipient_interval:
            return NOW
        reserved, wait = await self._store.reserve_slot(
            self.channel.value,
            self._interval,
            self._recipient_key(contact) if contact and recipient_interval else None,
            recipient_interval,
            self._horizon,
        )
        return Slot(reserved, max(0.0, wait))

    async def pause(self, recipient: Recipient, seconds: float | None, *, whole: bool) -> float:
        """The vendor said to slow down: no slot for `seconds` (`DatabaseUnavailableError`).

        `whole`: the channel pauses; otherwise only this recipient. Returns the pause.
        """
        pause = pause_length(seconds)
        contact = recipient.contact(self.channel)
        if whole or not contact:
            key = self.channel.value
            self.note_resumed()  # a pause over before anyone looked: its end is told first
            self.paused_at = time.monotonic()
            self.paused_until = max(self.paused_until, self.paused_at + pause)
            self._pauses_over_at = max(self._pauses_over_at, self.paused_until)
            if not self._paused:
                self._paused = True
                log.warning("channel_paused", channel=self.channel, seconds=pause)
        else:
            key = self._recipient_key(contact)
            now = time.monotonic()
            pauses = {c: end for c, end in self._recipient_pauses.items() if end > now}
            pauses[contact] = max(pauses.get(contact, 0.0), now + pause)
            self._recipient_pauses = pauses
            self._pauses_over_at = max(self._pauses_over_at, pauses[contact])
            log.info("recipient_paused", channel=self.channel, seconds=pause)
        await self._store.pause_slot(key, pause)
        return pause

    def _recipient_key(self, contact: str) -> str:
        return f"{self.channel.value}:{contact}"


def pause_length(seconds: float | None) -> float:
    """The pause taken for a vendor's "retry after `seconds`" (None: it did not say)."""
    if seconds is None or not seconds >= DEFAULT_PAUSE:  # also NaN
        return DEFAULT_PAUSE
    return min(seconds, MAX_PAUSE)


def telegram_interval(per_chat: float, per_group: float) -> Callable[[str], float]:
    """Telegram's spacing: `per_group` for a group or channel (a negative id, or an
    @username), `per_chat` for a private chat."""

    def interval(chat_id: str) -> float:
        return per_group if chat_id.startswith(("-", "@")) else per_chat

    return interval


def fixed_interval(seconds: float) -> Callable[[str], float] | None:
    """The same spacing for every recipient; None for none."""
    if seconds <= 0:
        return None

    def interval(_contact: str) -> float:
        return seconds

    return interval


def _no_interval(_contact: str) -> float:
    return 0.0


def pacer_for(channel: Channel, settings: ChannelsSettings, store: DeliveryStore) -> Pacer:
    """The pacer of `channel` as configured (`channels.<name>.rate_limit` and intervals)."""
    if channel is Channel.TELEGRAM:
        telegram = settings.telegram
        interval = telegram_interval(telegram.per_recipient_interval, telegram.group_interval)
        return Pacer(channel, store, rate_limit=telegram.rate_limit, recipient_interval=interval)
    config = channel_settings(settings, channel)
    return Pacer(
        channel,
        store,
        rate_limit=config.effective_rate_limit(),
        recipient_interval=fixed_interval(config.per_recipient_interval),
    )
