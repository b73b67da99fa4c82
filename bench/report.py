"""Figures, the table they are printed as, and the JSON file they are saved to."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from bench.procs import REPO

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# How a figure is judged against its target: its ratio to the reference, or its own value.
TargetKind = Literal["ratio_at_least", "ratio_at_most", "at_least", "at_most"]


@dataclass
class Figure:
    """One measured number beside the reference measured in the same run."""

    scenario: str
    name: str
    unit: str
    value: float | None
    reference: float | None = None
    reference_name: str = ""
    target_kind: TargetKind | None = None
    target: float | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.reference:
            return None
        return self.value / self.reference

    @property
    def met(self) -> bool | None:
        if self.target_kind is None or self.target is None or self.value is None:
            return None
        if self.target_kind in ("ratio_at_least", "ratio_at_most"):
            ratio = self.ratio
            if ratio is None:
                return None
            return (
                ratio >= self.target
                if self.target_kind == "ratio_at_least"
                else ratio <= self.target
            )
        if self.target_kind == "at_least":
            return self.value >= self.target
        return self.value <= self.target

    def target_text(self) -> str:
        if self.target_kind is None or self.target is None:
            return ""
        if self.target_kind == "ratio_at_least":
            return f"≥ {self.target:g} x ref"
        if self.target_kind == "ratio_at_most":
            return f"≤ {self.target:g} x ref"
        sign = "≥" if self.target_kind == "at_least" else "≤"
        return f"{sign} {_number(self.target)} {self.unit}"

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = None if self.ratio is None else round(self.ratio, 3)
        data["target_text"] = self.target_text()
        data["met"] = self.met
        return data


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(figures: list[Figure]) -> str:
    """The figures as a fixed-width text table."""
    header = ("scenario", "figure", "value", "reference (same run)", "ratio", "target", "met")
    rows = [header]
    for figure in figures:
        if figure.error is not None:
            rows.append((figure.scenario, figure.name, "ERROR", figure.error[:60], "", "", ""))
            continue
        reference = ""
        if figure.reference is not None:
            reference = f"{_number(figure.reference)} ({figure.reference_name})"
        ratio = "" if figure.ratio is None else f"{figure.ratio:.2f}"
        met = {None: "", True: "yes", False: "NO"}[figure.met]
        rows.append(
            (
                figure.scenario,
                figure.name,
                f"{_number(figure.value)} {figure.unit}",
                reference,
                ratio,
                figure.target_text(),
                met,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def _git(*args: str) -> str:
    git = shutil.which("git")
    if git is None:
        return ""
    try:
        result = subprocess.run(
            [git, *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor()


def _memory_total_mb() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    """The machine and the code measured."""
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_mb": _memory_total_mb(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--", "notifyd", "sql")),
    }


def save(data: dict[str, Any], quick: bool) -> Path:
    """Write the run to bench/results/<time>[-quick].json and latest.json beside it."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{stamp}{'-quick' if quick else ''}.json"
    text = json.dumps(data, indent=2, default=str)
    path.write_text(text + "\n", "utf-8")
    (RESULTS_DIR / "latest.json").write_text(text + "\n", "utf-8")
    return path


def header_lines(info: dict[str, Any]) -> list[str]:
    host = info["machine"]
    pg = info.get("postgres", {})
    settings = pg.get("settings", {})
    return [
        f"machine: {host['cores']} cores ({host['cpu']}), {host['memory_mb']} MB, "
        f"Linux {host['kernel']}, Python {host['python']}",
        f"postgres: {pg.get('version', '?')} (embedded), "
        + ", ".join(f"{k}={v}" for k, v in settings.items()),
        "round trip after 20 ms idle: SELECT 1 "
        f"{pg.get('probe', {}).get('select_1_ms_p50', '?')} ms, single-row commit "
        f"{pg.get('probe', {}).get('insert_commit_ms_p50', '?')} ms (medians)",
        f"notifyd: {host['git_commit']}{' + uncommitted changes' if host['git_dirty'] else ''}"
        f"; load generator: {info.get('load_tool', '?')}"
        f"; load average at start {host['load_average'][0]:.2f}",
        *(
            [f"notifyd settings from the environment: {_pairs(info['notifyd_settings'])}"]
            if info.get("notifyd_settings")
            else []
        ),
    ]


def _pairs(settings: dict[str, str]) -> str:
    return ", ".join(f"{name}={value}" for name, value in sorted(settings.items()))
