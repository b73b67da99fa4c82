"""One mask and one scrubber: every form of a secret, and every secret of a URL."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest

from notifyd.config import load_settings
from notifyd.redaction import (
    REDACTED,
    Scrubber,
    encoded_forms,
    redact_url,
    split_password,
    url_secrets,
)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:secret@db:5432/n", "postgresql://u:***@db:5432/n"),
        ("postgresql://u@db/n?password=secret", "postgresql://u@db/n?password=***"),
        (
            "postgresql://u@db/n?sslmode=require&PassWord=secret&sslpassword=key-secret",
            "postgresql://u@db/n?sslmode=require&PassWord=***&sslpassword=***",
        ),
        (
            "postgresql://u:a@[::1]:5432/n?password=b&application_name=x",
            "postgresql://u:***@[::1]:5432/n?password=***&application_name=x",
        ),
        ("postgresql://db/n?host=/run/pg&flag", "postgresql://db/n?host=/run/pg&flag"),
        ("https://bot:token@proxy.example/api", "https://bot:***@proxy.example/api"),
        ("postgresql://u:p@[::1/n", REDACTED),  # no telling where the password ends
    ],
)
def test_redact_url_masks_the_password_wherever_the_url_has_it(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_check_config_s_database_line_masks_a_query_password() -> None:
    settings = load_settings(
        None, {"DATABASE_URL": "postgresql://notifyd@db/notifyd?password=s3cret-query"}
    )
    assert settings.database.redacted_url() == "postgresql://notifyd@db/notifyd?password=***"


@pytest.mark.parametrize(
    ("url", "without", "password"),
    [
        ("postgresql://u:p%40ss@db/n", "postgresql://u@db/n", "p@ss"),
        (
            "postgresql://u@db/n?password=p%26q&sslmode=require",
            "postgresql://u@db/n?sslmode=require",
            "p&q",
        ),
        ("postgresql://u:a@db/n?password=b", "postgresql://u@db/n", "b"),
        ("postgresql://u@db/n?sslmode=require", "postgresql://u@db/n?sslmode=require", None),
        ("postgresql://u:@db/n", "postgresql://u@db/n", None),
    ],
)
def test_split_password_takes_it_out_of_the_url(
    url: str, without: str, password: str | None
) -> None:
    assert split_password(url) == (without, password)


def test_url_secrets_include_the_basic_credentials_pair() -> None:
    found = url_secrets("https://bot:p%2Fw@proxy.example/?token=t0k")
    assert {"p%2Fw", "p/w", "bot:p/w", "t0k"} <= set(found)


def test_encoded_forms_are_those_a_secret_travels_in() -> None:
    secret = "pa:ss/wo+rd="
    found = encoded_forms(secret)
    assert secret in found
    assert quote(secret, safe="") in found
    assert "pa%3Ass%2Fwo%2Brd%3D" in found
    assert base64.b64encode(secret.encode()).decode() in found
    assert base64.urlsafe_b64encode(secret.encode()).decode().rstrip("=") in found
    assert encoded_forms("") == set()


def test_the_scrubber_masks_the_longest_form_whole() -> None:
    scrubber = Scrubber(["secret", "\0user\0secret"])
    blob = base64.b64encode(b"\0user\0secret").decode()

    assert scrubber.scrub(f"AUTH PLAIN {blob} / secret / c2VjcmV0") == "AUTH PLAIN *** / *** / ***"
    assert scrubber.redact({"a": [f"x {blob}", 1, None], "secret": ("secret",)}) == {
        "a": ["x ***", 1, None],
        "***": ["***"],
    }
    assert not Scrubber([]).found_in("anything")
    assert Scrubber([""]).scrub("anything") == "anything"


def test_the_scrubber_finds_a_secret_anywhere_in_an_error_chain() -> None:
    scrubber = Scrubber(["hunter2"])
    inner = ValueError(base64.b64encode(b"hunter2").decode())
    outer = RuntimeError("outer")
    outer.__cause__ = inner
    outer.__context__ = RuntimeError("context")

    assert scrubber.leaks(outer)
    assert not scrubber.leaks(outer.__context__)


@pytest.mark.parametrize(
    ("url", "without", "password", "shown"),
    [
        (
            "postgresql:///notifyd?host=/run/postgresql&password=s3cret",
            "postgresql:///notifyd?host=/run/postgresql",
            "s3cret",
            "postgresql:///notifyd?host=/run/postgresql&password=***",
        ),
        (
            "postgresql:///notifyd",
            "postgresql:///notifyd",
            None,
            "postgresql:///notifyd",
        ),
    ],
)
def test_an_empty_authority_is_kept(
    url: str, without: str, password: str | None, shown: str
) -> None:
    # urlunsplit drops it, and `postgresql:/notifyd` is a database name to psql, not a URL.
    assert split_password(url) == (without, password)
    assert redact_url(url) == shown
