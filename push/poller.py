"""One scheduler that polls ``getAthOrSignResult`` for every pending TW FidO transaction.

A single asyncio task keeps a heap of due times. It polls each transaction no sooner than
``interval`` after its previous poll finished. Polls of different transactions run side by side,
at most ``MAX_CONCURRENT_POLLS`` at once. ``on_done`` runs once per transaction with the result,
the final error, or ``PollTimeout`` at the deadline.

With several nodes a ``PollLease`` (``push.poll_lease``) makes exactly one node poll each
transaction: the lease is renewed before each poll, a node that finds it held by another waits,
and a sweep hands transactions whose lease expired (their node died) to ``set_adopter``'s callback.
Without a lease (one node) nothing of this runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from push import ticket as ticket_codec
from push.client import AthResult, SpApiClient, SpApiError, SpApiUnavailable, SpApiUntrusted
from push.poll_lease import Lease
from push.ticket import Ticket

log = logging.getLogger(__name__)

MAX_CONCURRENT_POLLS = 32  # bounds open connections to the SP API however many logins wait
UNAVAILABLE_MAX_DELAY = 30.0  # seconds; back-off cap while the SP API is down, to notice recovery

LEASE_POLLS = 3  # a lease outlives three poll intervals, so one slow poll does not lose it
DONE_RETENTION = 600.0  # seconds an ended watch stays marked; the longest TW FidO time_limit

OnDone = Callable[[AthResult | Exception], Awaitable[None]]
Adopter = Callable[[str, Ticket, float], None]  # key, ticket, deadline in the scheduler's clock


class PollLease(Protocol):
    """Shared leases and the registry of watched transactions (see ``push.poll_lease``)."""

    async def register(self, key: str, ticket: str, deadline: float, ttl: float) -> None: ...

    async def acquire(self, key: str, ttl: float) -> Lease: ...

    async def finish(self, key: str, remaining: float) -> None: ...

    async def orphans(self, now: float) -> list[tuple[str, str, float]]: ...


class PollTimeout(Exception):
    """The deadline passed before the transaction had a final result."""


@dataclass(eq=False)
class _Watch:
    key: str
    ticket: Ticket
    deadline: float
    on_done: OnDone
    entry: int = 0  # sequence number of this watch's current heap entry; older ones are stale
    polling: bool = False
    poked: bool = False  # poke() arrived during a poll: poll again as soon as it ends
    failures: int = 0  # consecutive SpApiUnavailable results
    polls: int = 0


class PollScheduler:
    """Poll pending transactions from one task; see the module docstring."""

    def __init__(
        self,
        client: SpApiClient,
        *,
        interval: float,
        jitter: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        lease: PollLease | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if interval <= 0 or not 0 <= jitter < 1:
            raise ValueError("interval must be positive and jitter in [0, 1)")
        self._client = client
        self._interval = interval
        self._jitter = jitter
        self._clock = clock
        self._watches: dict[str, _Watch] = {}
        self._by_ticket: dict[str, str] = {}  # sp_ticket_id -> key
        self._heap: list[tuple[float, int, str]] = []
        self._sequence = itertools.count()
        self._wake = asyncio.Event()
        self._polls: set[asyncio.Task[None]] = set()
        self._deliveries: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._lease = lease
        self._lease_ttl = LEASE_POLLS * interval
        self._wall = wall_clock
        self._adopter: Adopter | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._lease_work: set[asyncio.Task[None]] = set()
        self._registrations: dict[str, asyncio.Task[None]] = {}  # key -> pending register()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="twfido-poll-scheduler")
            log.info("TW FidO poll scheduler started (interval %.1f s)", self._interval)
        if self._lease is not None and self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="twfido-poll-sweeper")

    def set_adopter(self, adopter: Adopter) -> None:
        """Name who watches a transaction whose polling node stopped (used with a lease)."""
        self._adopter = adopter

    async def close(self) -> None:
        """Stop polling. Watches still pending get no ``on_done`` call."""
        tasks = [
            t
            for t in (self._task, self._sweeper, *self._polls, *self._deliveries, *self._lease_work)
            if t is not None
        ]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = self._sweeper = None
        log.info("TW FidO poll scheduler stopped with %d pending watches", len(self._watches))

    def watch(self, key: str, ticket: Ticket, deadline: float, on_done: OnDone) -> None:
        """Poll ``ticket`` until a final result or ``deadline`` (in the scheduler's clock)."""
        if key in self._watches:
            log.info("watch %s replaced by a new transaction", key)
            self._drop(key)
        watch = _Watch(key, ticket, deadline, on_done)
        self._watches[key] = watch
        self._by_ticket[ticket.sp_ticket_id] = key
        # The push has only just gone out, so the first poll waits a full interval too.
        self._schedule(watch, self._clock() + self._spacing())
        if self._lease is not None:
            wall_deadline = self._wall() + (deadline - self._clock())
            registration = self._spawn_lease_work(
                self._lease.register(
                    key, ticket_codec.encode(ticket), wall_deadline, self._lease_ttl
                ),
                key,
            )
            self._registrations[key] = registration
            registration.add_done_callback(lambda _: self._registrations.pop(key, None))

    async def registered(self, key: str) -> None:
        """Wait until the watch of ``key`` is registered for the other nodes (at once without a lease).

        A node that dies after this still has its transaction adopted by another node.
        """
        registration = self._registrations.get(key)
        if registration is not None:
            await asyncio.shield(registration)

    def unwatch(self, key: str) -> None:
        """Stop polling ``key`` without calling its ``on_done``; a poll in flight is ignored.

        With a lease, the watch ends on every node, because its login has ended.
        """
        watch = self._drop(key)
        if self._lease is not None:
            remaining = watch.deadline - self._clock() if watch is not None else DONE_RETENTION
            self._spawn_lease_work(self._lease.finish(key, remaining), key)

    def _drop(self, key: str) -> _Watch | None:
        watch = self._watches.pop(key, None)
        if watch is not None:
            self._by_ticket.pop(watch.ticket.sp_ticket_id, None)
        return watch

    def poke(self, sp_ticket_id: str) -> None:
        """Poll this transaction now, because its result is known to be ready."""
        key = self._by_ticket.get(sp_ticket_id)
        watch = self._watches.get(key) if key is not None else None
        if watch is None:
            return
        if watch.polling:
            watch.poked = True
        else:
            self._schedule(watch, self._clock())

    @property
    def pending(self) -> int:
        return len(self._watches)

    # -- the scheduler task -------------------------------------------------------------------

    def _spacing(self) -> float:
        # Jitter only lengthens the gap, because the SP API recommends polls no faster than this.
        return self._interval * (1 + random.uniform(0, self._jitter))

    def _schedule(self, watch: _Watch, due: float) -> None:
        watch.entry = next(self._sequence)
        heapq.heappush(self._heap, (min(due, watch.deadline), watch.entry, watch.key))
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._start_due_polls()
            timeout: float | None = None
            if self._heap and len(self._polls) < MAX_CONCURRENT_POLLS:
                timeout = max(0.0, self._heap[0][0] - self._clock())
            self._wake.clear()
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
            # that races with the event being set, which made close() hang.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    def _start_due_polls(self) -> None:
        now = self._clock()
        while self._heap and self._heap[0][0] <= now and len(self._polls) < MAX_CONCURRENT_POLLS:
            _, entry, key = heapq.heappop(self._heap)
            watch = self._watches.get(key)
            if watch is None or watch.entry != entry or watch.polling:
                continue  # unwatched, rescheduled since, or a poll is running
            if now >= watch.deadline:
                self._finish(watch, PollTimeout(f"no result for {key} before the deadline"))
                continue
            watch.polling = True
            task = asyncio.create_task(self._poll(watch), name=f"twfido-poll-{key}")
            self._polls.add(task)
            task.add_done_callback(self._poll_ended)

    def _poll_ended(self, task: asyncio.Task[None]) -> None:
        self._polls.discard(task)
        self._wake.set()

    async def _poll(self, watch: _Watch) -> None:
        if self._lease is not None and not await self._hold_lease(watch):
            return
        outcome: AthResult | Exception | None
        try:
            watch.polls += 1
            outcome = await self._client.get_result(watch.ticket)
        except SpApiUnavailable as exc:
            watch.failures += 1
            delay = min(self._interval * 2**watch.failures, UNAVAILABLE_MAX_DELAY)
            log.warning("poll of %s failed (%s); retrying in %.1f s", watch.key, exc, delay)
            self._after_poll(watch, max(delay, self._spacing()))
            return
        except (SpApiError, SpApiUntrusted) as exc:
            outcome = exc
        except Exception as exc:  # a bug, not a pending state: end the login rather than loop
            log.exception("poll of %s failed unexpectedly", watch.key)
            outcome = exc

        if outcome is None:
            watch.failures = 0
            self._after_poll(watch, self._spacing())
            return
        watch.polling = False
        if self._watches.get(watch.key) is watch:
            self._finish(watch, outcome)

    async def _hold_lease(self, watch: _Watch) -> bool:
        """Take or renew the lease before polling; reschedule or drop the watch if not ours."""
        assert self._lease is not None
        try:
            lease = await self._lease.acquire(watch.key, self._lease_ttl)
        except Exception as exc:  # Redis trouble: wait as for an unreachable SP API
            log.warning(
                "poll lease of %s unavailable (%s); retrying", watch.key, type(exc).__name__
            )
            self._after_poll(watch, self._spacing())
            return False
        if lease is Lease.HELD:
            return True
        if lease is Lease.DONE:
            watch.polling = False
            if self._watches.get(watch.key) is watch:
                self._drop(watch.key)  # another node ended it and ran on_done
        else:
            self._after_poll(watch, self._spacing())  # another node polls it; watch its lease
        return False

    async def _sweep(self) -> None:
        """Adopt registered watches that no node holds a lease on (their node stopped)."""
        assert self._lease is not None
        while True:
            await asyncio.sleep(self._interval)
            if self._adopter is None:
                continue
            try:
                orphans = await self._lease.orphans(self._wall())
            except Exception as exc:
                log.warning("poll sweep failed: %s", type(exc).__name__)
                continue
            for key, text, wall_deadline in orphans:
                if key in self._watches:
                    continue
                try:
                    ticket = ticket_codec.decode(text)
                except ticket_codec.TicketError:
                    log.error("poll registry contains an invalid ticket for %s", key)
                    continue
                log.info("adopting the poll of %s: its node stopped renewing the lease", key)
                self._adopter(key, ticket, self._clock() + (wall_deadline - self._wall()))

    def _spawn_lease_work(self, work: Awaitable[None], key: str) -> asyncio.Task[None]:
        async def run() -> None:
            try:
                await work
            except Exception as exc:  # the lease expires by itself; log and go on
                log.warning("poll lease update of %s failed: %s", key, type(exc).__name__)

        task = asyncio.create_task(run())
        self._lease_work.add(task)
        task.add_done_callback(self._lease_work.discard)
        return task

    def _after_poll(self, watch: _Watch, delay: float) -> None:
        watch.polling = False
        if self._watches.get(watch.key) is not watch:
            return  # unwatched while the poll ran
        if watch.poked:
            watch.poked = False
            delay = 0.0
        self._schedule(watch, self._clock() + delay)

    def _finish(self, watch: _Watch, outcome: AthResult | Exception) -> None:
        self.unwatch(watch.key)
        log.debug(
            "watch %s done after %d polls: %s", watch.key, watch.polls, type(outcome).__name__
        )
        task = asyncio.create_task(self._deliver(watch, outcome), name=f"twfido-done-{watch.key}")
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, watch: _Watch, outcome: AthResult | Exception) -> None:
        try:
            await watch.on_done(outcome)
        except Exception:
            log.exception("on_done for %s raised", watch.key)
