"""HTTP load: `wrk` when installed, else a Python load generator in a separate process.

Both report one dict: requests, requests/s, non-2xx and socket errors, latency p50/p99/max.
`python -m bench.load URL --users N --connections C --duration S` is the fallback
generator; it prints `BENCH_JSON {...}` like the wrk script does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
WRK_SCRIPT = Path(__file__).with_name("wrk_notify.lua")
MARKER = "BENCH_JSON "


def tool() -> str:
    """The load generator this machine will use."""
    return "wrk" if shutil.which("wrk") else "python (bench.load)"


def _parse(output: str) -> dict[str, Any]:
    for line in output.splitlines():
        if line.startswith(MARKER):
            result: dict[str, Any] = json.loads(line[len(MARKER) :])
            requests = result["requests"]
            result["requests_per_s"] = round(requests / result["duration_s"], 1)
            result["errors"] = sum(v for k, v in result.items() if k.startswith("errors_"))
            return result
    raise RuntimeError(f"no summary in the load generator's output: {output[-1500:]}")


async def run_load(
    url: str, *, users: int, connections: int, duration: float, threads: int = 1
) -> dict[str, Any]:
    """Drive `POST url` for `duration` seconds with `connections` open connections."""
    wrk = shutil.which("wrk")
    if wrk is not None:
        argv = [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "10s",
            "-s",
            str(WRK_SCRIPT),
            url,
            "--",
            str(users),
        ]
    else:
        argv = [
            sys.executable,
            "-m",
            "bench.load",
            url,
            "--users",
            str(users),
            "--connections",
            str(connections),
            "--duration",
            str(duration),
        ]
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=REPO,
    )
    output, _ = await process.communicate()
    result = _parse(output.decode("utf-8", errors="replace"))
    result["tool"] = "wrk" if wrk is not None else "python"
    return result


async def _generate(url: str, users: int, connections: int, duration: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = {"errors_connect": 0, "errors_status": 0, "errors_timeout": 0}
    rng = random.Random()
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=10)
    started = time.perf_counter()
    end = started + duration

    async def client(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < end:
            body = {
                "user_id": rng.randint(1, users),
                "subject": "bench",
                "message": "hello from bench.load",
                "channels": ["sms"],
            }
            sent = time.perf_counter()
            try:
                async with session.post(url, json=body) as response:
                    await response.read()
                    if response.status >= 300:
                        errors["errors_status"] += 1
            except TimeoutError:
                errors["errors_timeout"] += 1
                continue
            except (aiohttp.ClientError, OSError):
                errors["errors_connect"] += 1
                continue
            latencies.append(time.perf_counter() - sent)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pick(q: float) -> float:
        if not latencies:
            return 0.0
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 3)

    return {
        "requests": len(latencies) + errors["errors_status"],
        "duration_s": elapsed,
        **errors,
        "latency_p50_ms": pick(0.50),
        "latency_p99_ms": pick(0.99),
        "latency_max_ms": round(latencies[-1] * 1000, 3) if latencies else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    result = asyncio.run(_generate(args.url, args.users, args.connections, args.duration))
    print(MARKER + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
