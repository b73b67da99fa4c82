"""`[webhooks]`: endpoints refused when they cannot be right, secrets never shown, and the
signature the spec's own library verifies."""

from __future__ import annotations

import base64
import json

import pytest
from standardwebhooks.webhooks import Webhook

from notifyd.config import Settings, load_settings
from notifyd.delivery.webhooks import backoff, signed_headers
from notifyd.errors import ConfigError
from notifyd.webhook_settings import WebhookEndpoint

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef01234567").decode()


def load_with(monkeypatch: pytest.MonkeyPatch, endpoints: object) -> Settings:
    monkeypatch.setenv("NOTIFYD_WEBHOOKS__ENDPOINTS", json.dumps(endpoints))
    return load_settings(environ={})


def test_endpoints_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = {
        "url": "https://a.example/hook?token=abc",
        "secret": SECRET,
        "events": ["notification.failed"],
    }
    settings = load_with(monkeypatch, [endpoint])
    (endpoint,) = settings.webhooks.endpoints
    assert endpoint.events == ("notification.failed",)
    assert endpoint.wants("notification.failed")
    assert not endpoint.wants("notification.sent")
    # What logs show: no path, no query (a token may be there).
    assert endpoint.origin == "https://a.example"
    assert SECRET not in repr(settings)


@pytest.mark.parametrize(
    ("endpoint", "complaint"),
    [
        ({"url": "ftp://a.example/x", "secret": SECRET}, "url"),
        ({"url": "https:///nohost", "secret": SECRET}, "url"),
        ({"url": "https://a.example:99999/", "secret": SECRET}, "url"),
        ({"url": "https://a.example/" + "x" * 3000, "secret": SECRET}, "url"),
        ({"url": "https://a.example/a b", "secret": SECRET}, "url"),
        ({"url": "https://a.example/", "secret": "plain-password"}, "secret"),
        ({"url": "https://a.example/", "secret": "whsec_not*base64"}, "secret"),
        ({"url": "https://a.example/", "secret": "whsec_c2hvcnQ="}, "secret"),
        ({"url": "https://a.example/", "secret": SECRET, "events": []}, "events"),
        ({"url": "https://a.example/", "secret": SECRET, "events": ["x"]}, "events"),
        ({"url": "https://a.example/", "secret": SECRET, "callback": "x"}, "callback"),
    ],
)
def test_bad_endpoints_stop_the_daemon_naming_the_key(
    monkeypatch: pytest.MonkeyPatch, endpoint: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load_with(monkeypatch, [endpoint])
    message = str(refused.value)
    assert f"webhooks.endpoints.0.{complaint}" in message
    # Not even a wrong secret is quoted.
    assert str(endpoint["secret"]) not in message


def test_one_url_twice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    twice = [{"url": "https://a.example/", "secret": SECRET}] * 2
    with pytest.raises(ConfigError, match="listed twice"):
        load_with(monkeypatch, twice)


def test_the_signature_verifies_with_the_spec_library() -> None:
    endpoint = WebhookEndpoint(url="https://a.example/", secret=SECRET)  # type: ignore[arg-type]
    body = json.dumps({"type": "notification.sent", "data": {"id": 1}}).encode()
    headers = signed_headers(endpoint, "evt_1", body)
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(SECRET).verify(body, headers) == {"type": "notification.sent", "data": {"id": 1}}
    # Another body, or another secret, does not verify.
    with pytest.raises(Exception, match="signature"):
        Webhook(SECRET).verify(body + b" ", headers)
    other = "whsec_" + base64.b64encode(b"another-secret-of-24-byte").decode()
    with pytest.raises(Exception, match="signature"):
        Webhook(other).verify(body, headers)


def test_backoff_grows_with_jitter_and_stays_bounded() -> None:
    for attempts in range(1, 12):
        top = min(100.0, 1.0 * 2 ** (attempts - 1))
        assert top / 2 <= backoff(1.0, 100.0, attempts) <= top
    # A count another application wrote, however large, does not overflow.
    assert 50.0 <= backoff(1.0, 100.0, 2**31 - 1) <= 100.0
