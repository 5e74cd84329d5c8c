"""The cycles of ``mpnet watch``: what each target does once per interval.

A REST target gets one fresh attempt per cycle (:func:`~mpnet.probe.engine.run_attempt`). A
WebSocket target keeps ONE long-lived feed (:class:`~mpnet.probe.feed.FeedMonitor`), as a
trading system does, and each cycle samples it: connected or not, reconnects and gaps so far,
data messages since the last cycle, and an application ping.

Both go through one :class:`~mpnet.probe.pacing.RateGate`: a REST cycle inside an exchange's
rate-limit wait is skipped (nothing sent), and a feed reconnects only once the wait is over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mpnet.core.result import Attempt
from mpnet.core.watch import FeedSample, WatchState
from mpnet.probe.feed import RECONNECT_INITIAL_DELAY, FeedMonitor
from mpnet.probe.pacing import RateGate
from mpnet.probe.plan import ProbePlan, ProbeTarget


class WatchRunner:
    """Runs watch cycles over ``plan`` and records them in ``state``.

    Use as ``async with WatchRunner(plan, state) as runner:``, then :meth:`run` (or
    :meth:`cycle` one at a time). Leaving the block closes every feed and cancels its reader.

    Args:
        plan: the targets (in the order of ``state``'s rows) and the timeout per attempt/ping.
        state: where each cycle is recorded.
        reconnect_delay: the first reconnect backoff window of the feeds, in seconds.
        clock: monotonic seconds (cycle starts, feed silences).
        sleep: waits between cycles (tests pass one that waits for an event instead).
        gate: the rate-limit gate every request goes through (a fresh one when None).
    """

    def __init__(
        self,
        plan: ProbePlan,
        state: WatchState,
        *,
        reconnect_delay: float = RECONNECT_INITIAL_DELAY,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        gate: RateGate | None = None,
    ) -> None:
        planned = [
            (t.profile.name, t.target, t.route.name if t.route is not None else None)
            for t in plan.targets
        ]
        if planned != [(w.exchange, w.target, w.route) for w in state.targets]:
            raise ValueError(f"the plan's targets {planned} do not line up with the state's rows")
        self.plan = plan
        self.state = state
        self._reconnect_delay = reconnect_delay
        self._clock = clock
        self._sleep = sleep
        # Its own clock, not ``clock``: the gate sleeps for real, so it must read time for real.
        self.gate = gate if gate is not None else RateGate()
        self.feeds: list[FeedMonitor | None] = []

    async def __aenter__(self) -> WatchRunner:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open a feed for every WebSocket target (connections open in the background).

        Raises:
            ConfigError: a CA bundle of the plan cannot be loaded (before any connection).
        """
        if self.feeds:
            return
        from mpnet.net.prepare import prepare_network

        # Imports and SSL contexts now, not on the loop while a cycle's clocks run.
        prepare_network(t.tls for t in self.plan.targets)
        self.feeds = [
            FeedMonitor(
                target,
                timeout=self.plan.timeout,
                initial_delay=self._reconnect_delay,
                clock=self._clock,
                gate=self.gate,
            )
            if target.target == "ws"
            else None
            for target in self.plan.targets
        ]
        try:
            for feed in self.feeds:
                if feed is not None:
                    await feed.start()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close every feed: readers cancelled, connections closed, no reconnect pending."""
        feeds, self.feeds = self.feeds, []
        outcomes = await asyncio.gather(
            *(feed.close() for feed in feeds if feed is not None), return_exceptions=True
        )
        # Every feed is closed before the first failure to close one is raised.
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def cycle(self) -> None:
        """One cycle: every target at once, then one row update per target in ``state``."""
        if len(self.feeds) != len(self.plan.targets):
            raise RuntimeError("start the runner before running cycles")
        outcomes = await asyncio.gather(
            *(
                self._one(target, feed)
                for target, feed in zip(self.plan.targets, self.feeds, strict=True)
            )
        )
        attempts = [attempt for attempt, _ in outcomes]
        samples = [sample for _, sample in outcomes]
        codes = [
            # A feed that was up and got cut is not what the probe's diagnoses describe (a
            # close before any data reads as NO_DATA there).
            None if sample is not None and sample.last_error_dropped else finding_code(t, a)
            for t, a, sample in zip(self.plan.targets, attempts, samples, strict=True)
        ]
        self.state.record_cycle(attempts, codes, samples)

    async def run(
        self,
        *,
        interval: float,
        count: int | None = None,
        on_cycle: Callable[[], None] | None = None,
    ) -> None:
        """Run cycles ``interval`` seconds apart (start to start) until ``count`` cycles have
        been recorded (None: until cancelled); ``on_cycle`` runs after each one."""
        while count is None or self.state.cycles < count:
            started = self._clock()
            await self.cycle()
            if on_cycle is not None:
                on_cycle()
            if count is not None and self.state.cycles >= count:
                break
            await self._sleep(max(0.0, started + interval - self._clock()))

    async def _one(
        self, target: ProbeTarget, feed: FeedMonitor | None
    ) -> tuple[Attempt, FeedSample | None]:
        if feed is not None:
            return await feed.sample()
        from mpnet.probe.engine import run_attempt

        attempt = await self.gate.attempt(target, lambda: run_attempt(target, self.plan.timeout))
        return attempt, None


def finding_code(target: ProbeTarget, attempt: Attempt) -> str | None:
    """The diagnosis code that explains a failed attempt (GEO_BLOCKED, ...), if any."""
    if attempt.ok:
        return None
    from mpnet.core.diagnose import diagnose_one
    from mpnet.core.result import ProbeResult

    result = ProbeResult(
        exchange=target.profile.name,
        target=target.target,
        url=target.url,
        attempts=(attempt,),
        proxy=target.proxy,
        ssl=target.tls,
        route=target.route.name if target.route is not None else None,
    )
    for finding in diagnose_one(result):
        if finding.severity == "error":
            return finding.code
    return None
