"""The scenarios of the suite, in the order they run (later ones reuse earlier drains)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from bench.api import scenario_api
from bench.drain import scenario_drain, scenario_fallback, scenario_memory, scenario_scaleout
from bench.harness import Bench
from bench.history import scenario_history
from bench.latency import scenario_latency
from bench.pooled import scenario_pooled
from bench.report import Figure
from bench.vendors import scenario_vendors

SCENARIOS: Final[dict[str, Callable[[Bench], Awaitable[list[Figure]]]]] = {
    "drain": scenario_drain,
    "memory": scenario_memory,
    "scaleout": scenario_scaleout,
    "fallback": scenario_fallback,
    "latency": scenario_latency,
    "api": scenario_api,
    "pooled": scenario_pooled,
    "history": scenario_history,
    "vendors": scenario_vendors,
}
# What runs without --only: the history loads millions of rows and the pooled drains need
# PgBouncer installed, so those two run when named.
DEFAULT_SCENARIOS: Final = tuple(name for name in SCENARIOS if name not in {"history", "pooled"})
