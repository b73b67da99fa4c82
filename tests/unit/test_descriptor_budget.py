"""The inbound connection cap: what the descriptor limit leaves after notifyd's own needs."""

from __future__ import annotations

import pytest

from notifyd.config import Settings
from notifyd.errors import ConfigError
from notifyd.web.server import (
    BACKLOG,
    MIN_CONNECTIONS,
    RESOLVER_THREADS,
    SLACK,
    descriptor_budget,
    reserved_descriptors,
)


def test_the_reserve_follows_the_settings() -> None:
    base = Settings()
    fixed = RESOLVER_THREADS + BACKLOG + SLACK
    # pool 10 + LISTEN and its replacement; SMTP 10 + 4 idle; Telegram 10; no Twilio.
    assert reserved_descriptors(base) == 12 + 14 + 10 + fixed
    bigger = Settings(
        database={"pool_max_size": 50},
        channels={
            "email": {"concurrency": 40, "pool_size": 8},
            "telegram": {"concurrency": 30},
            "sms": {
                "provider": "twilio",
                "concurrency": 20,
                "account_sid": "AC" + "0" * 32,
                "auth_token": "token",
                "from_number": "+15551234567",
            },
        },
    )
    assert reserved_descriptors(bigger) == 52 + 48 + 30 + 20 + fixed


def test_the_cap_is_what_the_limit_leaves() -> None:
    settings = Settings()
    reserve = reserved_descriptors(settings)
    budget = descriptor_budget(settings, limit=1024, in_use=20)
    assert budget.connections == 1024 - 20 - reserve
    assert budget.reserve == reserve
    assert budget.limit == 1024


def test_max_connections_lowers_the_cap_further() -> None:
    settings = Settings(http={"max_connections": 100})
    assert descriptor_budget(settings, limit=65536, in_use=20).connections == 100
    assert descriptor_budget(settings, limit=None, in_use=20).connections == 100


def test_a_limit_that_leaves_too_little_is_a_configuration_error() -> None:
    settings = Settings()
    too_low = reserved_descriptors(settings) + 20 + MIN_CONNECTIONS - 1
    with pytest.raises(ConfigError) as caught:
        descriptor_budget(settings, limit=too_low, in_use=20)
    message = str(caught.value)
    assert f"RLIMIT_NOFILE {too_low}" in message
    assert "ulimit -n" in message
    assert descriptor_budget(settings, limit=too_low + 1, in_use=20).connections == MIN_CONNECTIONS


def test_the_descriptors_in_use_are_counted() -> None:
    budget = descriptor_budget(Settings(), limit=100_000)
    assert 3 <= budget.in_use < 100_000
