"""The scenarios of the suite, in the order they run (later ones reuse earlier drains)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from bench.api import scenario_api
from bench.drain import scenario_drain, scenario_fallback, scenario_memory, scenario_scaleout
from bench.harness import Bench
from bench.latency import scenario_latency
from bench.report import Figure
from bench.vendors import scenario_vendors

SCENARIOS: Final[dict[str, Callable[[Bench], Awaitable[list[Figure]]]]] = {
    "drain": scenario_drain,
    "memory": scenario_memory,
    "scaleout": scenario_scaleout,
    "fallback": scenario_fallback,
    "latency": scenario_latency,
    "api": scenario_api,
    "vendors": scenario_vendors,
}
