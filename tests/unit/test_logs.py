"""Logging setup: structlog and the standard library both as JSON lines on stdout."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog

from notifyd.logs import UtcTimestamper, configure_logging, get_logger


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Put structlog and the root logger back as they were, for the tests that follow."""
    # Restoring the saved objects (not just reset_defaults) keeps the processor list that
    # structlog.testing.capture_logs edits in place the same one other tests' loggers use.
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
    structlog.configure(**saved)
    structlog.contextvars.clear_contextvars()
    for handler in root.handlers[:]:
        if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter):
            root.removeHandler(handler)
    for handler in handlers:
        # pytest adds and removes its own capture handlers around each phase.
        if type(handler).__module__ != "_pytest.logging" and handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    captured = capsys.readouterr()
    assert captured.err == ""
    return [json.loads(line) for line in captured.out.splitlines()]


def _assert_utc_iso(value: str) -> None:
    assert value.endswith(("Z", "+00:00")), value
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.utcoffset() is not None
    assert parsed.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 60


def test_structlog_event_is_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info")

    get_logger("notifyd.test").info("thing_happened", notification_id=42, channel="email")

    out = capsys.readouterr().out
    assert out.count("\n") == 1
    entry = json.loads(out)
    assert entry["event"] == "thing_happened"
    assert entry["level"] == "info"
    assert entry["module"] == "notifyd.test"
    assert entry["notification_id"] == 42
    assert entry["channel"] == "email"
    _assert_utc_iso(entry["timestamp"])


def test_each_event_is_its_own_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info")
    log = get_logger("notifyd.test")

    log.info("first", text="multi\nline")
    log.warning("second")

    entries = _lines(capsys)
    assert [(e["event"], e["level"]) for e in entries] == [("first", "info"), ("second", "warning")]
    assert entries[0]["text"] == "multi\nline"


def test_exception_is_rendered_inside_the_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info")
    log = get_logger("notifyd.test")

    try:
        raise ValueError("kaput")
    except ValueError:
        log.exception("it_failed")

    [entry] = _lines(capsys)
    assert entry["event"] == "it_failed"
    assert entry["level"] == "error"
    assert "ValueError: kaput" in entry["exception"]


def test_context_variables_are_merged(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info")
    structlog.contextvars.bind_contextvars(notification_id=7)

    get_logger("notifyd.test").info("with_context")

    [entry] = _lines(capsys)
    assert entry["notification_id"] == 7


def test_values_json_cannot_encode_are_logged_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info")

    get_logger("notifyd.test").info("odd_values", when=object, mapping={1: "one"})

    [entry] = _lines(capsys)
    assert "object" in entry["when"]
    assert entry["mapping"] == {"1": "one"}


def test_stdlib_logging_is_a_json_line_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info")

    logging.getLogger("aiohttp.access").warning("GET %s %d", "/api/health", 200)

    out = capsys.readouterr().out
    assert out.count("\n") == 1
    entry = json.loads(out)
    assert entry["event"] == "GET /api/health 200"
    assert entry["level"] == "warning"
    _assert_utc_iso(entry["timestamp"])


def test_debug_is_filtered_at_info(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info")
    log = get_logger("notifyd.test")

    log.debug("hidden")
    logging.getLogger("asyncio").debug("hidden too")
    log.info("shown")

    assert [e["event"] for e in _lines(capsys)] == ["shown"]


def test_warning_level_filters_info(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("warning")
    log = get_logger("notifyd.test")

    log.info("hidden")
    logging.getLogger("aiohttp.access").info("hidden too")
    log.warning("shown")

    assert [e["event"] for e in _lines(capsys)] == ["shown"]


def test_debug_level_shows_debug_events(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("debug")

    get_logger("notifyd.test").debug("visible")

    [entry] = _lines(capsys)
    assert entry["event"] == "visible"
    assert entry["level"] == "debug"


def test_unknown_level_is_refused() -> None:
    with pytest.raises(KeyError):
        configure_logging("verbose")


def test_logger_made_before_configure_logging_writes_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Every notifyd module does `log = get_logger(__name__)` at import, before cli.main
    # calls configure_logging: such loggers must still follow the configuration.
    early = get_logger("notifyd.early")
    configure_logging("info")

    early.debug("filtered_out")
    early.info("module_event")

    [entry] = _lines(capsys)
    assert entry["event"] == "module_event"
    assert entry["module"] == "notifyd.early"


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (1_767_225_600.0, "2026-01-01T00:00:00.000000Z"),
        (1_767_225_600.25, "2026-01-01T00:00:00.250000Z"),
        (1_767_225_659.999999, "2026-01-01T00:00:59.999999Z"),
        (951_782_400.5, "2000-02-29T00:00:00.500000Z"),
    ],
)
def test_timestamps_are_utc_with_microseconds(now: float, expected: str) -> None:
    stamper = UtcTimestamper(clock=lambda: now)
    stamped = stamper(None, "info", {"event": "x"})
    assert stamped["timestamp"] == expected
    parsed = datetime.fromisoformat(expected.replace("Z", "+00:00"))
    assert abs(parsed.timestamp() - now) < 1e-6


def test_the_cached_second_moves_on() -> None:
    clock = iter([1_767_225_600.9, 1_767_225_601.1, 1_767_225_601.2])
    stamper = UtcTimestamper(clock=lambda: next(clock))
    stamps = [stamper(None, "info", {})["timestamp"] for _ in range(3)]
    assert stamps == [
        "2026-01-01T00:00:00.900000Z",
        "2026-01-01T00:00:01.100000Z",
        "2026-01-01T00:00:01.200000Z",
    ]


def test_lines_are_utf8_whatever_the_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    # A C locale gives Python an ASCII stdout: text would fail to encode there.
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="ascii"))
    configure_logging("info")

    get_logger("notifyd.test").info("greeting", text="Привет")

    assert json.loads(raw.getvalue().decode("utf-8"))["text"] == "Привет"


def test_a_stdout_without_a_byte_buffer_still_gets_the_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stream)
    configure_logging("info")

    get_logger("notifyd.test").info("to_text", n=1)

    [entry] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert (entry["event"], entry["n"]) == ("to_text", 1)
