"""One scheduler that polls ``getAthOrSignResult`` for every pending TW FidO transaction.

A single asyncio task keeps a heap of due times. It polls each transaction no sooner than
``interval`` after its previous poll finished. Polls of different transactions run side by side,
at most ``MAX_CONCURRENT_POLLS`` at once. ``on_done`` runs once per transaction with the result,
the final error, or ``PollTimeout`` at the deadline.
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

from push.client import AthResult, SpApiClient, SpApiError, SpApiUnavailable, SpApiUntrusted
from push.ticket import Ticket

log = logging.getLogger(__name__)

MAX_CONCURRENT_POLLS = 32  # bounds open connections to the SP API however many logins wait
UNAVAILABLE_MAX_DELAY = 30.0  # seconds; back-off cap while the SP API is down, to notice recovery

OnDone = Callable[[AthResult | Exception], Awaitable[None]]


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

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="twfido-poll-scheduler")
            log.info("TW FidO poll scheduler started (interval %.1f s)", self._interval)

    async def close(self) -> None:
        """Stop polling. Watches still pending get no ``on_done`` call."""
        tasks = [t for t in (self._task, *self._polls, *self._deliveries) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        log.info("TW FidO poll scheduler stopped with %d pending watches", len(self._watches))

    def watch(self, key: str, ticket: Ticket, deadline: float, on_done: OnDone) -> None:
        """Poll ``ticket`` until a final result or ``deadline`` (in the scheduler's clock)."""
        if key in self._watches:
            log.info("watch %s replaced by a new transaction", key)
            self.unwatch(key)
        watch = _Watch(key, ticket, deadline, on_done)
        self._watches[key] = watch
        self._by_ticket[ticket.sp_ticket_id] = key
        # The push has only just gone out, so the first poll waits a full interval too.
        self._schedule(watch, self._clock() + self._spacing())

    def unwatch(self, key: str) -> None:
        """Stop polling ``key`` without calling its ``on_done``; a poll in flight is ignored."""
        watch = self._watches.pop(key, None)
        if watch is not None:
            self._by_ticket.pop(watch.ticket.sp_ticket_id, None)

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
