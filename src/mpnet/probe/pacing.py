"""The rate-limit gate: every request mpnet sends to an exchange passes it.

One :class:`RateGate` is shared by everything that talks to the exchanges in a run: the probe
engine's attempts (REST and WebSocket targets of an exchange share its state), ``mpnet serve``'s
scrapes (one gate for the process, so a scrape inside a wait sends nothing), and ``mpnet watch``'s
REST rows and long-lived feeds. Per exchange it keeps a :class:`~mpnet.core.ratelimit.
ExchangeBudget` (the decisions are pure and live there); this module only sleeps and locks.

* An attempt whose turn comes inside the exchange's wait (after a 429 or 418, or with the weight
  header near its limit) is not sent: it comes back as an :class:`~mpnet.core.result.Attempt`
  with ``skipped`` set, at once (there is nothing to wait for).
* Otherwise requests to one exchange start at least ``1 / rate_limit.requests_per_s`` apart
  (the profile's public limit), and attempts of one target at least ``interval`` apart
  (``mpnet probe --interval``). An attempt that failed before reaching the exchange (at
  ``dns``, ``tcp`` or ``proxy``) gives its turn back: it sent the exchange nothing.
* The answers an attempt receives (every :func:`~mpnet.net.exchange.timed_request` answer, the
  KuCoin bootstrap included, and a refused WebSocket upgrade) are read for Retry-After and
  weight headers.

A feed (``mpnet watch``) has no attempts to skip: :meth:`RateGate.wait_turn` sleeps until the
wait is over and its turn comes, then it connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from mpnet.core.ratelimit import RATE_LIMIT_STATUSES, ExchangeBudget, Skip, wait_for
from mpnet.core.result import Attempt, ErrorInfo
from mpnet.errors import Phase, ProbeError
from mpnet.probe.plan import ProbeTarget

if TYPE_CHECKING:
    from mpnet.net.exchange import TimedResponse

#: Phases whose failure means no request reached the exchange: no address, no connection, or the
#: proxy did not open the tunnel (an answer from the proxy is not one from the exchange).
_BEFORE_THE_EXCHANGE = frozenset({str(Phase.DNS), str(Phase.TCP), str(Phase.PROXY)})
#: The same for a KuCoin-style bootstrap request, which fails in phase ``bootstrap``: its kinds.
_NOT_CONNECTED_KINDS = frozenset(
    {"nxdomain", "no_resolver", "refused", "unreachable", "proxy_unreachable", "proxy_refused"}
)


def _never_reached(error: ErrorInfo) -> bool:
    """Whether the attempt that failed with ``error`` sent the exchange nothing."""
    if error.phase in _BEFORE_THE_EXCHANGE:
        return True
    return error.phase == str(Phase.BOOTSTRAP) and error.kind in _NOT_CONNECTED_KINDS


class RateGate:
    """Per-exchange waits and pacing, shared by every attempt that goes through it.

    Args:
        clock: monotonic seconds (waits and pacing).
        wall: Unix time (an HTTP-date Retry-After, weight windows aligned to the clock).
        sleep: waits (tests pass a fake one).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._budgets: dict[tuple[str, str | None], ExchangeBudget] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._target_starts: dict[tuple[str, str, str | None], float] = {}
        self._returned: dict[int, asyncio.Event] = {}

    def budget(self, target: ProbeTarget) -> ExchangeBudget:
        """The state of ``target``'s exchange (made on first use from its profile).

        One per exchange and route asked for (``--via``): an exchange limits and bans by the
        address a request comes from, and each route leaves from its own, so a 429 through one
        route holds back that route only. Targets without a route share the exchange's state.
        """
        name = target.profile.name
        key = (name, target.route.name if target.route is not None else None)
        budget = self._budgets.get(key)
        if budget is None:
            budget = self._budgets[key] = ExchangeBudget(name, target.profile.rate_limit)
        return budget

    def skip(self, target: ProbeTarget) -> Skip | None:
        """Why a request to ``target``'s exchange must not go out now, or None."""
        return self.budget(target).skip(now=self._clock())

    async def attempt(
        self,
        target: ProbeTarget,
        run: Callable[[], Awaitable[Attempt]],
        *,
        interval: float | None = None,
        semaphore: asyncio.Semaphore | None = None,
    ) -> Attempt:
        """Run one attempt at ``target`` through the gate.

        Args:
            target: the exchange x target the attempt goes to.
            run: starts the attempt (its clock starts inside, after every wait here).
            interval: least seconds between the starts of two attempts at this target.
            semaphore: bounds the attempts running at once; taken before the exchange's turn,
                so the attempt starts as soon as its turn comes.

        Returns:
            The attempt, or a skipped attempt (never sent) when the exchange's wait was running.
        """
        if interval is not None:
            await self._target_turn(target, interval)
        budget = self.budget(target)
        skip = budget.skip(now=self._clock())
        if skip is not None:
            return Attempt(ok=False, skipped=skip)
        async with semaphore if semaphore is not None else contextlib.nullcontext():
            turn = await self._exchange_turn(target, budget)
            if isinstance(turn, Skip):
                return Attempt(ok=False, skipped=turn)
            with self.observing(target):
                attempt = await run()
        if attempt.error is not None:
            if _never_reached(attempt.error):
                # Nothing reached the exchange: the next request need not keep its distance
                # (one already waiting for its turn looks again now).
                budget.unsent(at=turn[0], previous=turn[1])
                self._given_back(budget).set()
            self._note_refusal(budget, attempt.error)
        return attempt

    async def wait_turn(self, target: ProbeTarget) -> None:
        """Sleep until the exchange's wait is over and its next request may start (a feed's
        reconnect), then take that turn."""
        budget = self.budget(target)
        while True:
            remaining = budget.wait_ends() - self._clock()
            if remaining > 0:
                # Not under the exchange's lock: attempts of other targets still skip at once.
                await self._sleep(remaining)
                continue
            if not isinstance(await self._exchange_turn(target, budget), Skip):
                return

    @contextlib.contextmanager
    def observing(self, target: ProbeTarget) -> Iterator[None]:
        """Read the rate-limit headers of every HTTP answer received inside the block, and the
        status of a refusal raised out of it."""
        from mpnet.net.exchange import response_observer

        budget = self.budget(target)

        def observe(response: TimedResponse) -> None:
            wait = wait_for(
                response.status, response.headers, now=response.received_at, limit=budget.limit
            )
            if wait is not None:
                budget.note(wait, at=self._clock())

        token = response_observer.set(observe)
        try:
            yield
        except ProbeError as exc:
            status = getattr(exc, "status", None)
            if status in RATE_LIMIT_STATUSES and exc.phase is not Phase.PROXY:
                wait = wait_for(
                    status, getattr(exc, "headers", {}) or {}, now=self._wall(), limit=budget.limit
                )
                if wait is not None:
                    budget.note(wait, at=self._clock())
            raise
        finally:
            response_observer.reset(token)

    # -- internals ----------------------------------------------------------------------------

    async def _target_turn(self, target: ProbeTarget, interval: float) -> None:
        key = (
            target.profile.name,
            target.target,
            target.route.name if target.route is not None else None,
        )
        previous = self._target_starts.get(key)
        if previous is not None:
            delay = previous + interval - self._clock()
            if delay > 0:
                await self._sleep(delay)
        self._target_starts[key] = self._clock()

    async def _exchange_turn(
        self, target: ProbeTarget, budget: ExchangeBudget
    ) -> Skip | tuple[float, float]:
        """Wait for the exchange's next request slot and take it (its start, and the start it
        succeeds), or say why not (a wait began)."""
        lock = self._locks.setdefault(id(budget), asyncio.Lock())
        async with lock:
            while True:
                now = self._clock()
                skip = budget.skip(now=now)
                if skip is not None:
                    return skip
                delay = budget.next_send(now=now) - now
                if delay <= 0:
                    return now, budget.sent(now=now)
                await self._sleep_unless_given_back(delay, budget)

    def _given_back(self, budget: ExchangeBudget) -> asyncio.Event:
        return self._returned.setdefault(id(budget), asyncio.Event())

    async def _sleep_unless_given_back(self, delay: float, budget: ExchangeBudget) -> None:
        """Sleep ``delay``, or less if an attempt gives its turn back meanwhile."""
        given_back = self._given_back(budget)
        given_back.clear()
        sleeping = asyncio.ensure_future(self._sleep(delay))
        waiting = asyncio.ensure_future(given_back.wait())
        try:
            await asyncio.wait((sleeping, waiting), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeping, waiting):
                task.cancel()
            await asyncio.gather(sleeping, waiting, return_exceptions=True)

    def _note_refusal(self, budget: ExchangeBudget, error: ErrorInfo) -> None:
        """A refused WebSocket upgrade (or any refusal the answer hook did not see)."""
        if error.status not in RATE_LIMIT_STATUSES or error.phase == str(Phase.PROXY):
            return
        wait = wait_for(error.status, error.headers, now=self._wall(), limit=budget.limit)
        if wait is not None:
            budget.note(wait, at=self._clock())


__all__ = ["RateGate"]
