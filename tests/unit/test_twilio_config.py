"""Twilio as the SMS provider: its settings, their validation, and picking the provider."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from notifyd.channel_settings import ChannelsSettings, SmsSettings
from notifyd.config import load_settings
from notifyd.errors import ConfigError
from notifyd.providers import build_providers
from notifyd.providers.http import retry_after_seconds
from notifyd.providers.sms import StubSmsProvider
from notifyd.providers.twilio import TwilioSmsProvider

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
SERVICE_SID = "MG" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-auth-token-3c9f0e"
FROM_NUMBER = "+15017122661"


@pytest.fixture(autouse=True)
def _no_config_file_in_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # load_settings() reads ./notifyd.toml when no path is given; the repository has one.
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "notifyd.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _error(path: Path | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    return str(info.value)


def _twilio_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for key, value in {"provider": "twilio", **values}.items():
        monkeypatch.setenv(f"NOTIFYD_CHANNELS__SMS__{key.upper()}", value)


def test_stub_is_the_default_and_needs_no_twilio_keys() -> None:
    sms = load_settings(None, environ={}).channels.sms

    assert sms.provider == "stub"
    assert sms.api_url == "https://api.twilio.com"
    assert isinstance(build_providers(ChannelsSettings())["sms"], StubSmsProvider)


def test_twilio_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    _twilio_env(
        monkeypatch, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number=FROM_NUMBER
    )

    sms = load_settings(None, environ={}).channels.sms

    assert sms.provider == "twilio"
    assert sms.account_sid == ACCOUNT_SID
    assert sms.auth_token.get_secret_value() == AUTH_TOKEN
    assert sms.from_number == FROM_NUMBER


def test_token_from_the_environment_completes_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _toml(
        tmp_path,
        f"""
        [channels.sms]
        provider = "twilio"
        account_sid = "{ACCOUNT_SID}"
        messaging_service_sid = "{SERVICE_SID}"
        api_url = "http://127.0.0.1:9999/"
        """,
    )
    monkeypatch.setenv("NOTIFYD_CHANNELS__SMS__AUTH_TOKEN", AUTH_TOKEN)

    sms = load_settings(path, environ={}).channels.sms

    assert sms.provider == "twilio"
    assert sms.messaging_service_sid == SERVICE_SID
    assert sms.auth_token.get_secret_value() == AUTH_TOKEN
    assert sms.api_url == "http://127.0.0.1:9999"  # trailing slash dropped


def test_twilio_without_credentials_names_every_missing_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _twilio_env(monkeypatch)

    error = _error()

    assert error == (
        "invalid configuration: "
        'channels.sms.account_sid: required when provider = "twilio"; '
        'channels.sms.auth_token: required when provider = "twilio"; '
        'channels.sms.from_number: required when provider = "twilio", '
        "unless messaging_service_sid is set"
    )


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"auth_token": AUTH_TOKEN, "from_number": FROM_NUMBER}, "channels.sms.account_sid"),
        ({"account_sid": ACCOUNT_SID, "from_number": FROM_NUMBER}, "channels.sms.auth_token"),
        ({"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN}, "channels.sms.from_number"),
    ],
    ids=["account_sid", "auth_token", "sender"],
)
def test_each_missing_key_is_named(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], key: str
) -> None:
    _twilio_env(monkeypatch, **values)

    error = _error()

    assert error.startswith(f"invalid configuration: {key}: required")
    assert error.count("required") == 1
    assert AUTH_TOKEN not in error


def test_a_messaging_service_is_sender_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    _twilio_env(
        monkeypatch,
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        messaging_service_sid=SERVICE_SID,
    )

    settings = load_settings(None, environ={})

    assert isinstance(build_providers(settings.channels)["sms"], TwilioSmsProvider)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("account_sid", "SK" + "0" * 32, "must be a Twilio Account SID"),
        ("account_sid", ACCOUNT_SID + "0", "must be a Twilio Account SID"),
        ("messaging_service_sid", "MGxyz", "must be a Twilio Messaging Service SID"),
        ("from_number", "15017122661", "must be an E.164 phone number"),
        ("from_number", "+1 501 712 2661", "must be an E.164 phone number"),
        ("api_url", "api.twilio.com", "must be an http:// or https:// URL"),
        ("provider", "nexmo", "Input should be 'stub' or 'twilio'"),
    ],
)
def test_malformed_values_are_named(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str, message: str
) -> None:
    _twilio_env(
        monkeypatch, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number=FROM_NUMBER
    )
    monkeypatch.setenv(f"NOTIFYD_CHANNELS__SMS__{key.upper()}", value)

    error = _error()

    assert f"channels.sms.{key}: " in error
    assert message in error
    assert AUTH_TOKEN not in error


def test_twilio_keys_are_checked_for_the_stub_too(tmp_path: Path) -> None:
    # A typo is reported before someone switches the provider, not after.
    path = _toml(tmp_path, '[channels.sms]\nfrom_number = "5017122661"\n')

    assert "channels.sms.from_number: " in _error(path)


def test_auth_token_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    _twilio_env(
        monkeypatch, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number=FROM_NUMBER
    )
    settings = load_settings(None, environ={})

    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert AUTH_TOKEN not in text
    assert json.loads(settings.model_dump_json())["channels"]["sms"]["auth_token"] == "**********"


def test_build_providers_picks_twilio() -> None:
    sms = SmsSettings(
        provider="twilio",
        account_sid=ACCOUNT_SID,
        auth_token=SecretStr(AUTH_TOKEN),
        from_number=FROM_NUMBER,
    )

    provider = build_providers(ChannelsSettings(sms=sms))["sms"]

    assert isinstance(provider, TwilioSmsProvider)
    assert provider.channel == "sms"


# Retry-After, as seconds or as an HTTP date


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        (None, None),
        ("", None),
        ("-3", None),
        ("inf", None),
        ("soon", None),
        ("Wed, 21 Oct 2026 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2026 07:27:00 GMT", 0.0),  # in the past: now
        ("Wed, 21 Oct 2026 07:28:30", None),  # no zone
    ],
)
def test_retry_after_seconds(header: str | None, seconds: float | None) -> None:
    now = datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC)

    assert retry_after_seconds(header, now) == seconds


@pytest.mark.parametrize(
    ("sender", "rate"),
    [
        ({"provider": "stub"}, 0.0),  # no vendor
        ({"from_number": FROM_NUMBER}, 1.0),  # a long code: one segment a second
        ({"from_number": "+18885550123"}, 3.0),  # US toll-free: three a second
        ({"from_number": "+18005550123"}, 3.0),
        ({"from_number": "+18995550123"}, 1.0),  # 899 is not a toll-free code
        ({"messaging_service_sid": SERVICE_SID}, 0.0),  # the service queues itself
        ({"from_number": FROM_NUMBER, "rate_limit": 10.0}, 10.0),  # set: taken as is
        ({"from_number": FROM_NUMBER, "rate_limit": 0.0}, 0.0),
    ],
)
def test_the_default_rate_limit_follows_the_sender(sender: dict[str, object], rate: float) -> None:
    settings = {"provider": "twilio", "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN}
    assert SmsSettings.model_validate({**settings, **sender}).effective_rate_limit() == rate
