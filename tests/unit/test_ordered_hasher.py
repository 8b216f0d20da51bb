"""The whole-file hasher: part order kept whatever order parts arrive in,
resumed parts re-read in their place, slots released once hashed, errors
raised by ``run``, and a cancelled ``run`` that waits for its drain thread."""

from __future__ import annotations

import hashlib
import io
import os
import random
import threading

import anyio
import pytest

from aioims.transfer.config import PartPlan
from aioims.transfer.errors import SourceChangedError
from aioims.transfer.hashing import OrderedHasher

PART = 64 * 1024


def _plan(data: bytes) -> PartPlan:
    count = -(-len(data) // PART)
    return PartPlan(size=len(data), part_size=PART, part_count=count, multipart=True)


def _part(data: bytes, number: int) -> io.BytesIO:
    return io.BytesIO(data[(number - 1) * PART : number * PART])


@pytest.mark.parametrize("seed", range(5))
async def test_parts_in_any_order_give_the_file_md5(seed: int) -> None:
    data = os.urandom(PART * 9 + 123)
    plan = _plan(data)
    rng = random.Random(seed)
    resumed = set(rng.sample(range(1, plan.part_count + 1), 3))
    rehashed: list[int] = []
    released: list[int] = []

    def rehash(md5: object, offset: int, length: int) -> None:
        assert threading.current_thread() is not threading.main_thread()
        rehashed.append(offset // PART + 1)
        md5.update(data[offset : offset + length])  # type: ignore[attr-defined]

    hasher = OrderedHasher(plan, resumed, rehash, released.append)
    order = [n for n in range(1, plan.part_count + 1) if n not in resumed]
    rng.shuffle(order)
    async with anyio.create_task_group() as tg:
        tg.start_soon(hasher.run)
        for number in order:
            await anyio.sleep(rng.random() / 500)
            hasher.submit(number, _part(data, number))
    assert hasher.hexdigest() == hashlib.md5(data).hexdigest()
    assert sorted(released) == sorted(order)  # each uploaded part's slot, once
    assert rehashed == sorted(resumed)


async def test_all_parts_resumed_needs_no_submit() -> None:
    data = os.urandom(PART * 3)
    plan = _plan(data)

    def rehash(md5: object, offset: int, length: int) -> None:
        md5.update(data[offset : offset + length])  # type: ignore[attr-defined]

    hasher = OrderedHasher(plan, {1, 2, 3}, rehash, lambda n: None)
    await hasher.run()
    assert hasher.hexdigest() == hashlib.md5(data).hexdigest()


async def test_a_rehash_error_is_raised_by_run() -> None:
    data = os.urandom(PART * 3)

    def rehash(md5: object, offset: int, length: int) -> None:
        raise SourceChangedError("the file shrank")

    hasher = OrderedHasher(_plan(data), {2}, rehash, lambda n: None)
    hasher.submit(1, _part(data, 1))  # before run(): kept until run() starts a drain
    hasher.submit(3, _part(data, 3))
    with pytest.raises(SourceChangedError, match="shrank"):
        await hasher.run()
    assert not hasher.done


async def test_cancelled_run_waits_for_the_drain_and_stops_it() -> None:
    data = os.urandom(PART * 4)
    entered, leave = threading.Event(), threading.Event()
    calls: list[int] = []

    def rehash(md5: object, offset: int, length: int) -> None:
        calls.append(offset // PART + 1)
        entered.set()
        leave.wait(10)

    hasher = OrderedHasher(_plan(data), {1, 2}, rehash, lambda n: None)
    drain_still_busy_at_return: list[bool] = []

    async def run() -> None:
        try:
            await hasher.run()
        finally:
            drain_still_busy_at_return.append(not leave.is_set())

    def let_go_later() -> None:
        threading.Timer(0.3, leave.set).start()

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await anyio.to_thread.run_sync(entered.wait, 10)
            let_go_later()
            scope.cancel()
    # run() returned only after the drain left part 1's rehash, and the drain
    # stopped there (part 2 was not read)
    assert drain_still_busy_at_return == [False]
    assert calls == [1]
    assert not hasher.done
