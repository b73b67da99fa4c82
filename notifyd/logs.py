"""structlog setup: one JSON object per line on stdout, and nothing else there."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _dumps(event: Any, **_: Any) -> str:
    # orjson is several times faster than json; OPT_NON_STR_KEYS keeps odd dicts loggable
    # instead of raising from the logger.
    return orjson.dumps(event, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


_SHARED_PROCESSORS: list[structlog.typing.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure_logging(level: str = "info") -> None:
    """Route structlog and the standard library's logging to JSON lines on stdout."""
    numeric = _LEVELS[level]
    structlog.configure(
        processors=[
            *_SHARED_PROCESSORS,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    # Libraries (aiohttp, asyncio, asyncpg) log through the standard library: render them
    # as the same JSON lines, so stdout stays machine-readable.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_SHARED_PROCESSORS,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(serializer=_dumps),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.INFO))


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """A logger whose lines carry `module=name`.

    Lazy: modules call this at import time, before `configure_logging` runs, and the
    configuration in force at the first log call is the one used.
    """
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(module=name)
    return logger
