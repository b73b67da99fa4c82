"""Request bodies of the API, validated by pydantic, and the errors the API reports."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from notifyd.domain import LINE_BREAKS, MAX_MESSAGE_LENGTH
from notifyd.web.answers import timestamp
from notifyd.web.problems import field_errors
from notifyd.web.schemas import (
    BIGINT_MAX,
    SINGLE_LINE_PATTERN,
    NotifyRequest,
    UserCreate,
    UserUpdate,
)


def _errors(model: type[BaseModel], body: dict[str, Any]) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(body)
    return field_errors(info.value)


def _notify(**fields: Any) -> dict[str, Any]:
    return {"user_id": 1, "message": "Hello", **fields}


def _fields(errors: list[dict[str, str]]) -> set[str]:
    return {e["field"] for e in errors}


# NotifyRequest: valid bodies


def test_minimal_notify_request_gets_defaults() -> None:
    request = NotifyRequest.model_validate({"user_id": 1, "message": "Hello"})

    assert request.user_id == 1
    assert request.message == "Hello"
    assert request.subject == ""
    assert request.channels == ["email", "sms", "telegram"]


def test_full_notify_request() -> None:
    request = NotifyRequest.model_validate(
        _notify(user_id=BIGINT_MAX, subject="Привет", channels=["telegram", "email"])
    )

    assert request.user_id == BIGINT_MAX
    assert request.subject == "Привет"
    assert request.channels == ["telegram", "email"]


def test_default_channels_are_not_shared_between_requests() -> None:
    first = NotifyRequest.model_validate(_notify())
    second = NotifyRequest.model_validate(_notify())

    assert first.channels is not second.channels


# NotifyRequest: user_id


@pytest.mark.parametrize("user_id", ["1", 1.5, True, False, None, [1], 2.0**60])
def test_user_id_must_be_a_strict_integer(user_id: object) -> None:
    errors = _errors(NotifyRequest, _notify(user_id=user_id))

    assert _fields(errors) == {"user_id"}


def test_an_integral_number_written_with_a_fraction_is_that_integer() -> None:
    # JSON (and the OpenAPI document's "integer") make no difference between 7 and 7.0.
    request = NotifyRequest.model_validate(_notify(user_id=7.0, priority=-20.0))

    assert (request.user_id, request.priority) == (7, -20)
    assert type(request.user_id) is int
    assert UserCreate.model_validate({"telegram_chat_id": 1001.0}).telegram_chat_id == "1001"


@pytest.mark.parametrize("user_id", [0, -1, BIGINT_MAX + 1, 2**64])
def test_user_id_out_of_range(user_id: int) -> None:
    errors = _errors(NotifyRequest, _notify(user_id=user_id))

    assert _fields(errors) == {"user_id"}


def test_missing_user_id_and_message() -> None:
    errors = _errors(NotifyRequest, {})

    assert errors == [
        {"field": "user_id", "message": "Field required"},
        {"field": "message", "message": "Field required"},
    ]


# NotifyRequest: message


@pytest.mark.parametrize("message", ["", " ", "\t\n  \r\n"])
def test_message_must_not_be_blank(message: str) -> None:
    errors = _errors(NotifyRequest, _notify(message=message))

    assert _fields(errors) == {"message"}


def test_blank_message_error_text() -> None:
    [error] = _errors(NotifyRequest, _notify(message="   "))

    assert error == {"field": "message", "message": "must not be blank"}


def test_message_must_be_a_string() -> None:
    assert _fields(_errors(NotifyRequest, _notify(message=42))) == {"message"}


def test_message_with_nul_is_refused() -> None:
    [error] = _errors(NotifyRequest, _notify(message="a\x00b"))

    assert error["field"] == "message"
    assert "NUL" in error["message"]


def test_message_with_a_lone_surrogate_is_refused() -> None:
    # pydantic itself refuses it as "unable to parse raw data as a unicode string".
    [error] = _errors(NotifyRequest, _notify(message="a\ud800b"))

    assert error["field"] == "message"


def test_message_length_limit() -> None:
    ok = NotifyRequest.model_validate(_notify(message="x" * MAX_MESSAGE_LENGTH))
    assert len(ok.message) == MAX_MESSAGE_LENGTH

    errors = _errors(NotifyRequest, _notify(message="x" * (MAX_MESSAGE_LENGTH + 1)))
    assert _fields(errors) == {"message"}


def test_message_keeps_newlines_and_unicode() -> None:
    text = "line 1\nline 2 — ✓ 😀"

    assert NotifyRequest.model_validate(_notify(message=text)).message == text


# NotifyRequest: subject


@pytest.mark.parametrize(
    "subject",
    [
        "a\rb",
        "a\nb",
        "a\r\nBcc: x@example.com",
        "\n",
        # Every other character str.splitlines() breaks at: the e-mail channel refuses them.
        *(f"a{c}b" for c in "\v\f\x1c\x1d\x1e\x85\u2028\u2029"),
    ],
)
def test_subject_must_be_one_line(subject: str) -> None:
    [error] = _errors(NotifyRequest, _notify(subject=subject))

    assert error["field"] == "subject"
    assert "single line" in error["message"]
    # The rule as the OpenAPI document states it says so too.
    assert re.fullmatch(SINGLE_LINE_PATTERN, subject) is None


def test_the_line_breaks_a_subject_may_not_hold_are_those_of_splitlines() -> None:
    breaks = {chr(c) for c in range(0x110000) if len(f"a{chr(c)}b".splitlines()) > 1}
    assert breaks == LINE_BREAKS


@pytest.mark.parametrize("subject", ["", "Привет!", "tab\tis fine", "a\u200bb"])
def test_a_one_line_subject_is_taken(subject: str) -> None:
    assert NotifyRequest.model_validate(_notify(subject=subject)).subject == subject
    assert re.fullmatch(SINGLE_LINE_PATTERN, subject) is not None


def test_subject_with_nul_is_refused() -> None:
    assert _fields(_errors(NotifyRequest, _notify(subject="a\x00"))) == {"subject"}


def test_subject_with_a_lone_surrogate_is_refused() -> None:
    assert _fields(_errors(NotifyRequest, _notify(subject="\ud800"))) == {"subject"}


def test_subject_limit_is_counted_in_utf8_bytes() -> None:
    # 'я' takes two bytes in UTF-8: 499 of them are 998 bytes, 500 are 1000.
    ok = NotifyRequest.model_validate(_notify(subject="я" * 499))
    assert len(ok.subject.encode("utf-8")) == 998

    [error] = _errors(NotifyRequest, _notify(subject="я" * 500))
    assert error["field"] == "subject"
    assert "998 bytes" in error["message"]


def test_ascii_subject_limit() -> None:
    NotifyRequest.model_validate(_notify(subject="s" * 998))

    assert _fields(_errors(NotifyRequest, _notify(subject="s" * 999))) == {"subject"}


def test_subject_must_be_a_string() -> None:
    assert _fields(_errors(NotifyRequest, _notify(subject=None))) == {"subject"}


# NotifyRequest: channels


def test_channels_must_not_be_empty() -> None:
    assert _fields(_errors(NotifyRequest, _notify(channels=[]))) == {"channels"}


def test_unknown_channel_is_reported_by_position() -> None:
    [error] = _errors(NotifyRequest, _notify(channels=["pigeon", "email"]))

    assert error["field"] == "channels"
    assert error["message"].startswith("item 0:")
    assert "email" in error["message"]


def test_unknown_channel_in_second_position() -> None:
    [error] = _errors(NotifyRequest, _notify(channels=["email", "EMAIL"]))

    assert error["field"] == "channels"
    assert error["message"].startswith("item 1:")


def test_duplicate_channel_is_named() -> None:
    [error] = _errors(NotifyRequest, _notify(channels=["email", "sms", "email"]))

    assert error["field"] == "channels"
    assert not error["message"].startswith("Value error")
    assert "repeated: email" in error["message"]
    assert "sms" not in error["message"]


def test_channels_must_be_a_list() -> None:
    assert _fields(_errors(NotifyRequest, _notify(channels="email"))) == {"channels"}


def test_extra_fields_are_refused() -> None:
    [error] = _errors(NotifyRequest, _notify(urgency="high"))

    assert error["field"] == "urgency"
    assert "not permitted" in error["message"]


def test_every_bad_field_is_reported() -> None:
    errors = _errors(
        NotifyRequest, {"user_id": True, "message": " ", "subject": "a\nb", "channels": []}
    )

    assert _fields(errors) == {"user_id", "message", "subject", "channels"}


# field_errors


def test_field_errors_strips_the_value_error_prefix() -> None:
    errors = _errors(NotifyRequest, _notify(message=" "))

    assert all(not e["message"].startswith("Value error") for e in errors)


def test_field_errors_of_a_whole_body_error() -> None:
    assert _errors(UserUpdate, {}) == [
        {"field": "(body)", "message": "name at least one of email, phone, telegram_chat_id"}
    ]


# UserCreate


def test_user_with_every_contact() -> None:
    user = UserCreate.model_validate(
        {"email": "ann@example.com", "phone": "+15551234567", "telegram_chat_id": 1001}
    )

    assert user.contacts() == {
        "email": "ann@example.com",
        "phone": "+15551234567",
        "telegram_chat_id": "1001",
    }


def test_contacts_hold_only_the_fields_sent() -> None:
    assert UserCreate.model_validate({"email": "ann@example.com"}).contacts() == {
        "email": "ann@example.com"
    }


@pytest.mark.parametrize(
    "email", ["ann@example.com", "a.b+tag@sub.example.org", "Ann@EXAMPLE.com", "имя@пример.рф"]
)
def test_valid_emails(email: str) -> None:
    assert UserCreate.model_validate({"email": email}).email == email


@pytest.mark.parametrize(
    "email",
    [
        "",
        "ann",
        "ann@",
        "@example.com",
        "ann@@example.com",
        "a b@example.com",
        "ann@example.com\r\nBcc: x@example.com",
        "a\x00@example.com",
        "a" * 250 + "@e.co",
    ],
)
def test_invalid_emails(email: str) -> None:
    [error] = _errors(UserCreate, {"email": email})

    assert error["field"] == "email"


@pytest.mark.parametrize("phone", ["+15551234567", "+79991234567", "+1234567", "+123456789012345"])
def test_valid_phones(phone: str) -> None:
    assert UserCreate.model_validate({"phone": phone}).phone == phone


@pytest.mark.parametrize(
    "phone",
    ["15551234567", "+0123456789", "+123456", "+1234567890123456", "+1 555 123 4567", "+1-555"],
)
def test_invalid_phones(phone: str) -> None:
    [error] = _errors(UserCreate, {"phone": phone})

    assert error["field"] == "phone"
    assert "E.164" in error["message"]


def test_phone_must_be_a_string() -> None:
    assert _fields(_errors(UserCreate, {"phone": 15551234567})) == {"phone"}


@pytest.mark.parametrize(
    ("chat_id", "stored"),
    [
        (1001, "1001"),
        (-1001234567890, "-1001234567890"),
        ("1001", "1001"),
        ("@channelname", "@channelname"),
    ],
)
def test_telegram_chat_id_is_stored_as_text(chat_id: int | str, stored: str) -> None:
    user = UserCreate.model_validate({"telegram_chat_id": chat_id})

    assert user.telegram_chat_id == stored
    assert user.contacts() == {"telegram_chat_id": stored}


@pytest.mark.parametrize("chat_id", [True, False, 1001.5, "@abc", "channel", "", "12a", [1001]])
def test_invalid_telegram_chat_ids(chat_id: object) -> None:
    errors = _errors(UserCreate, {"telegram_chat_id": chat_id})

    assert _fields(errors) == {"telegram_chat_id"}


def test_user_extra_fields_are_refused() -> None:
    assert _fields(_errors(UserCreate, {"email": "a@b.co", "name": "Ann"})) == {"name"}


@pytest.mark.parametrize(
    "body",
    [
        {"email": "ann@example.com\n"},
        {"phone": "+15551234567\n"},
        {"telegram_chat_id": "1001\n"},
        {"telegram_chat_id": "@channelname\n"},
    ],
    ids=["email", "phone", "chat_id", "channel_username"],
)
def test_contact_with_a_trailing_newline_is_refused(body: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        UserCreate.model_validate(body)


# UserUpdate


def test_update_with_null_clears_only_that_field() -> None:
    update = UserUpdate.model_validate({"phone": None})

    assert update.contacts() == {"phone": None}


def test_update_normalises_the_chat_id() -> None:
    update = UserUpdate.model_validate({"telegram_chat_id": 42, "email": None})

    assert update.contacts() == {"telegram_chat_id": "42", "email": None}


def test_update_validates_the_fields_it_gets() -> None:
    assert _fields(_errors(UserUpdate, {"phone": "555"})) == {"phone"}


def test_empty_update_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least one of"):
        UserUpdate.model_validate({})


# timestamp


def test_timestamp_always_has_microseconds_and_the_offset() -> None:
    value = datetime(2024, 5, 1, 12, 30, 5, tzinfo=UTC)

    assert timestamp(value) == "2024-05-01T12:30:05.000000+00:00"


def test_timestamp_keeps_the_microseconds() -> None:
    value = datetime(2024, 5, 1, 12, 30, 5, 123456, tzinfo=UTC)

    assert timestamp(value) == "2024-05-01T12:30:05.123456+00:00"


def test_timestamps_have_one_shape() -> None:
    base = datetime(2024, 5, 1, tzinfo=UTC)
    texts = [timestamp(base + timedelta(microseconds=us)) for us in (0, 1, 999_999)]

    assert {len(t) for t in texts if t is not None} == {32}


def test_timestamp_of_another_zone_keeps_its_offset() -> None:
    value = datetime(2024, 5, 1, 15, 0, tzinfo=timezone(timedelta(hours=3)))

    assert timestamp(value) == "2024-05-01T15:00:00.000000+03:00"


def test_timestamp_of_none() -> None:
    assert timestamp(None) is None
