"""Password login storm: logins per second and event-loop lag while argon2id hashing runs.

Runs the real password method (credential store in SQLite, in-memory session store, audit log)
in one process. A probe task sleeps ``PROBE_INTERVAL`` seconds in a loop and records how late
each wake-up is. Its p99 is measured first with no load (baseline), then during the storm.

    .venv/bin/python -m bench.password_storm --seconds 10 --concurrency 32

The figures depend on the machine; record them with its CPU count and model.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from server.audit import AuditLog
from server.config import PasswordSettings
from server.errors import LoginError
from server.logins import ClientInfo, Logins
from server.methods.base import StartRequest
from server.methods.password import PasswordMethod
from server.passwords import HashParameters
from server.sessions.memory import MemoryStore
from server.sessions.model import State

PROBE_INTERVAL = 0.005  # seconds between probe wake-ups; short enough to see brief stalls
ACCOUNTS = 50  # distinct accounts, so per-account counters never interfere
PASSWORD = "Storm#Bench2025"


def percentile(samples: list[float], fraction: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def probe(stop: asyncio.Event, lags: list[float]) -> None:
    """Record how much later than requested each short sleep returns."""
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(PROBE_INTERVAL)
        lags.append(time.perf_counter() - started - PROBE_INTERVAL)


async def measure_lag(seconds: float) -> list[float]:
    stop, lags = asyncio.Event(), list[float]()
    task = asyncio.create_task(probe(stop, lags))
    await asyncio.sleep(seconds)
    stop.set()
    await task
    return lags


async def build_method(data_dir: Path, settings: PasswordSettings) -> PasswordMethod:
    store = MemoryStore()
    audit = AuditLog(data_dir / "audit.log")
    method = PasswordMethod(
        Logins(store, audit),
        settings=settings,
        credentials_path=data_dir / "credentials.sqlite3",
    )
    await method.open()
    hashed = await method.hashing.hash(PASSWORD)
    for number in range(ACCOUNTS):
        await method.credentials.set_password(
            f"bench{number}", "A123456789", hashed, changed_at=time.time(), must_change=False
        )
    return method


async def storm(
    method: PasswordMethod, seconds: float, concurrency: int, wrong_every: int
) -> dict[str, float]:
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []
    counts = {"approved": 0, "rejected": 0}

    async def worker(number: int) -> None:
        attempt = 0
        while time.perf_counter() < deadline:
            attempt += 1
            wrong = wrong_every > 0 and attempt % wrong_every == 0
            request = StartRequest(
                body={
                    "account": f"bench{(number + attempt) % ACCOUNTS}",
                    "password": "wrong" if wrong else PASSWORD,
                },
                binding="bench",
                # One address per worker and attempt, so address locks stay out of the figures.
                client=ClientInfo(f"10.{number}.{attempt // 250 % 250}.{attempt % 250}", "bench"),
            )
            started = time.perf_counter()
            try:
                session = await method.start(request)
                counts["approved" if session.state is State.APPROVED else "rejected"] += 1
            except LoginError:
                counts["rejected"] += 1
            latencies.append(time.perf_counter() - started)

    begun = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - begun
    total = counts["approved"] + counts["rejected"]
    return {
        "logins": total,
        "approved": counts["approved"],
        "per_second": total / elapsed,
        "latency_p50": percentile(latencies, 0.50),
        "latency_p99": percentile(latencies, 0.99),
    }


async def run(args: argparse.Namespace) -> None:
    settings = PasswordSettings(
        time_cost=args.time_cost,
        memory_cost=args.memory_cost,
        parallelism=args.parallelism,
        max_concurrent_hashes=args.max_concurrent_hashes,
        max_failures=10**6,  # the storm measures hashing, not lockouts
        address_max_failures=10**6,
    )
    parameters = HashParameters(settings.time_cost, settings.memory_cost, settings.parallelism)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"hash: {parameters.describe()}, at most {settings.max_concurrent_hashes} at once")
    print(f"storm: {args.concurrency} concurrent clients for {args.seconds:.0f} s")

    with tempfile.TemporaryDirectory() as folder:
        method = await build_method(Path(folder), settings)
        try:
            baseline = await measure_lag(args.baseline_seconds)

            stop, lags = asyncio.Event(), list[float]()
            probe_task = asyncio.create_task(probe(stop, lags))
            result = await storm(method, args.seconds, args.concurrency, args.wrong_every)
            stop.set()
            await probe_task
        finally:
            await method.close()

    ms = 1000.0
    logins, approved, rate = result["logins"], result["approved"], result["per_second"]
    print(f"logins: {logins:.0f} ({approved:.0f} approved), {rate:.1f}/s")
    p50, p99 = result["latency_p50"] * ms, result["latency_p99"] * ms
    print(f"login latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(
        f"event-loop lag p99: baseline {percentile(baseline, 0.99) * ms:.2f} ms, "
        f"during storm {percentile(lags, 0.99) * ms:.2f} ms "
        f"(mean {statistics.fmean(lags) * ms:.2f} ms, {len(lags)} samples)"
    )


def main() -> None:
    defaults = PasswordSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="storm length in seconds")
    parser.add_argument(
        "--baseline-seconds", type=float, default=3.0, help="no-load probe length in seconds"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent login clients")
    parser.add_argument(
        "--wrong-every", type=int, default=4, help="every Nth login uses a wrong password (0: none)"
    )
    parser.add_argument("--time-cost", type=int, default=defaults.time_cost, help="argon2id passes")
    parser.add_argument(
        "--memory-cost", type=int, default=defaults.memory_cost, help="argon2id memory in KiB"
    )
    parser.add_argument(
        "--parallelism", type=int, default=defaults.parallelism, help="argon2id lanes"
    )
    parser.add_argument(
        "--max-concurrent-hashes",
        type=int,
        default=defaults.max_concurrent_hashes,
        help="hashes at once",
    )
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
