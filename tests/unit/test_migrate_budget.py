"""The transfer budget: the fair part limiter, the bandwidth bucket, and the
``TransferConfig(part_limiter=...)`` hook of the transfer engine."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from aioims.errors import ValidationError
from aioims.migrate import Budget, FairPartLimiter, TokenBucket, parse_rate, parse_size
from aioims.transfer import MiB, TransferConfig
from aioims.transfer.hashing import PartSlots


async def test_limit_holds_under_load() -> None:
    limiter = FairPartLimiter(3)
    inside = peak = 0

    async def part(owner: str) -> None:
        nonlocal inside, peak
        async with limiter.slot(owner):
            inside += 1
            peak = max(peak, inside)
            await anyio.sleep(0.001)
            inside -= 1

    async with anyio.create_task_group() as tg:
        for i in range(60):
            tg.start_soon(part, f"o{i % 5}")
    assert peak == limiter.max_in_use == 3
    assert limiter.in_use == 0 and limiter.held == {} and limiter.granted == 60


async def test_a_big_owner_cannot_starve_a_small_one() -> None:
    """The big transfer holds every slot and has many parts queued; a small
    one asks for one slot: it gets the very next free slot."""
    limiter = FairPartLimiter(4)
    order: list[str] = []
    for _ in range(4):
        await limiter.acquire("big", 0)

    async def want(owner: str) -> None:
        await limiter.acquire(owner, 0)
        order.append(owner)

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(want, "big")
        await anyio.sleep(0.01)
        tg.start_soon(want, "small")
        await anyio.sleep(0.01)
        limiter.release("big")
        await anyio.sleep(0.01)
        assert order == ["small"]
        # From then on slots alternate towards equal shares.
        for _ in range(10):
            limiter.release("big")
            await anyio.sleep(0)
        tg.cancel_scope.cancel()
    assert order[0] == "small"
    assert limiter.held["big"] <= 4


async def test_equal_holders_are_served_round_robin() -> None:
    limiter = FairPartLimiter(1)
    await limiter.acquire("x", 0)
    order: list[str] = []

    async def want(owner: str) -> None:
        await limiter.acquire(owner, 0)
        order.append(owner)
        limiter.release(owner)

    async with anyio.create_task_group() as tg:
        for owner in ("a", "a", "a", "b", "b", "c"):
            tg.start_soon(want, owner)
            await anyio.sleep(0)
        await anyio.sleep(0.01)
        limiter.release("x")
    assert order == ["a", "b", "c", "a", "b", "a"]


async def test_cancelled_waiters_hold_nothing() -> None:
    limiter = FairPartLimiter(1)
    await limiter.acquire("a", 0)
    with anyio.move_on_after(0.05):
        await limiter.acquire("b", 0)
    assert limiter.waiting == 0
    limiter.release("a")
    assert limiter.in_use == 0
    with pytest.raises(RuntimeError):
        limiter.release("a")


async def test_bandwidth_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a fake clock: the waits are exactly what the rate asks for."""
    from types import SimpleNamespace

    from fakes.clock import FakeClock

    from aioims.migrate import budget

    clock = FakeClock()
    fake_anyio = SimpleNamespace(**{n: getattr(anyio, n) for n in dir(anyio) if n[0] != "_"})
    fake_anyio.sleep = clock.sleep
    monkeypatch.setattr(budget, "time", SimpleNamespace(monotonic=clock.monotonic))
    monkeypatch.setattr(budget, "anyio", fake_anyio)

    bucket = TokenBucket(4 * MiB)  # burst: one second's worth
    for _ in range(6):
        await bucket.take(1 * MiB)
    # 4 MiB of burst, then 2 MiB at 4 MiB/s
    assert clock.sleeps == [0.25, 0.25] and clock.now == 0.5
    assert bucket.taken == 6 * MiB
    limiter = FairPartLimiter(2, bandwidth=8 * MiB)
    started = clock.now
    for _ in range(3):
        async with limiter.slot("a", 4 * MiB):
            pass
    assert clock.now - started == 0.5  # 8 MiB of burst, then 4 MiB at 8 MiB/s


def test_parsing_and_budget_validation() -> None:
    assert parse_rate("50M") == 50 * MiB
    assert parse_rate("1.5G") == 1.5 * 1024 * MiB
    assert parse_rate("800k") == 800 * 1024
    assert parse_rate("100MiB/s") == 100 * MiB
    assert parse_rate(None) is None and parse_rate("0") is None
    assert parse_size("8M") == 8 * MiB
    with pytest.raises(ValueError):
        parse_rate("fast")
    assert Budget(parts=16).image_parts == 16
    assert Budget(parts=16, per_image_parts=4).image_parts == 4
    with pytest.raises(ValueError):
        Budget(images=0)
    with pytest.raises(ValueError):
        Budget(bandwidth=-1)


class CountingLimiter:
    def __init__(self) -> None:
        self.held = 0
        self.bytes: list[int] = []

    async def acquire(self, owner: object, nbytes: int) -> None:
        self.held += 1
        self.bytes.append(nbytes)

    def release(self, owner: object) -> None:
        self.held -= 1


async def test_transfer_hook_part_slots_give_everything_back() -> None:
    shared = CountingLimiter()
    slots = PartSlots(4, 10, shared, owner="t")
    await slots.acquire(1, 1, 10)
    await slots.acquire(2, 2, 10)
    await slots.acquire(3, 1, 7)
    assert shared.held == 3 and shared.bytes == [10, 10, 7]
    slots.release(1)
    slots.release(2)  # one user left on part 2
    assert shared.held == 2
    slots.close()  # a failed transfer: parts 2 and 3 never released
    assert shared.held == 0
    slots.close()
    assert shared.held == 0


def test_transfer_config_accepts_a_limiter_and_compares_without_it() -> None:
    limiter: Any = FairPartLimiter(2)
    config = TransferConfig(part_limiter=limiter)
    assert config.part_limiter is limiter
    assert config == TransferConfig() and hash(config) == hash(TransferConfig())
    assert "part_limiter" not in repr(config)
    with pytest.raises(ValidationError, match="part_limiter"):
        TransferConfig(part_limiter=object())  # type: ignore[arg-type]
