"""pha.health.probe.StateCache: one refresh at a time, at most one per interval, bounded waits."""
from __future__ import annotations

import asyncio

import pytest

from pha.health.probe import StateCache

pytestmark = pytest.mark.unit

PRIMARY_ROW: tuple = (False, "0/3000060", 1, None, None, None, None, None, None, None, 150004, [])


class ScriptedProbe:
    """Answers STATE_SQL's row after `delay` seconds, or raises `error`; counts calls."""

    def __init__(self, delay: float = 0.0, error: BaseException | None = None) -> None:
        self.delay, self.error, self.calls = delay, error, 0

    async def row(self) -> tuple:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return PRIMARY_ROW

    async def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run(coro):
    return asyncio.run(coro)


def test_many_waiters_share_one_refresh() -> None:
    async def scenario():
        probe = ScriptedProbe(delay=0.05)
        cache = StateCache(probe, interval=1.0, timeout=1.0)
        snaps = await asyncio.gather(*(cache.get() for _ in range(500)))
        return probe.calls, cache.refreshes, snaps
    calls, refreshes, snaps = run(scenario())
    assert calls == 1 and refreshes == 1
    assert all(s is snaps[0] for s in snaps) and snaps[0].role == "primary"


def test_at_most_one_query_per_interval() -> None:
    async def scenario():
        clock = Clock()
        probe = ScriptedProbe()
        cache = StateCache(probe, interval=1.0, timeout=1.0, clock=clock)
        for step in range(40):           # 40 checks over 2 s of cache time
            clock.now = 100.0 + step * 0.05
            await cache.get()
        return probe.calls
    assert run(scenario()) == 2


def test_fresh_only_within_interval() -> None:
    async def scenario():
        clock = Clock()
        cache = StateCache(ScriptedProbe(), interval=1.0, timeout=1.0, clock=clock)
        assert cache.fresh() is None
        await cache.get()
        clock.now += 0.99
        inside = cache.fresh()
        clock.now += 0.02
        return inside, cache.fresh()
    inside, outside = run(scenario())
    assert inside is not None and outside is None


def test_failure_means_down_and_is_cached_too() -> None:
    async def scenario():
        probe = ScriptedProbe(error=OSError("connection refused"))
        cache = StateCache(probe, interval=1.0, timeout=1.0)
        first = await cache.get()
        second = await cache.get()
        return probe.calls, first, second
    calls, first, second = run(scenario())
    assert calls == 1 and not first.running and first.role == "unknown" and second is first


def test_a_hung_database_answers_down_within_the_timeout() -> None:
    async def scenario():
        probe = ScriptedProbe(delay=30)
        cache = StateCache(probe, interval=1.0, timeout=0.2)
        loop = asyncio.get_running_loop()
        start = loop.time()
        snap = await cache.get()
        return loop.time() - start, snap, probe.calls
    waited, snap, calls = run(scenario())
    assert waited < 1.0 and not snap.running and calls == 1


def test_attributes_join_the_snapshot_and_their_failure_is_no_error() -> None:
    async def attrs_ok() -> dict:
        return {"pgsql-status": "PRI"}

    async def attrs_broken() -> dict:
        raise RuntimeError("pacemaker is not running")

    async def scenario(reader):
        return await StateCache(ScriptedProbe(), 1.0, 1.0, attributes=reader).get()
    assert run(scenario(attrs_ok)).attributes == {"pgsql-status": "PRI"}
    broken = run(scenario(attrs_broken))
    assert broken.running and broken.attributes == {}


def test_slow_attribute_reads_do_not_delay_refreshes() -> None:
    reads: list[int] = []

    async def slow_attrs() -> dict:
        reads.append(len(reads))
        await asyncio.sleep(0.3)
        return {"pgsql-status": f"read-{len(reads)}"}

    async def scenario():
        clock = Clock()
        cache = StateCache(ScriptedProbe(), interval=1.0, timeout=1.0, attributes=slow_attrs, clock=clock)
        loop = asyncio.get_running_loop()
        first = await cache.get()                  # nothing read yet: waits for the attributes
        clock.now += 1.5
        start = loop.time()
        second = await cache.get()                 # recent attributes: answers without waiting
        waited = loop.time() - start
        await asyncio.sleep(0.4)                   # the background read lands in the cached snapshot
        return first, second, waited, cache.fresh()
    first, second, waited, later = run(scenario())
    assert first.attributes == {"pgsql-status": "read-1"}
    assert second.attributes == {"pgsql-status": "read-1"} and waited < 0.2
    assert later.attributes == {"pgsql-status": "read-2"}
