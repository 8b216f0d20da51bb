"""A controllable clock for retry/deadline tests (no waiting, no load dependence).

``FakeClock`` satisfies :class:`aioims.config.Clock`: pass it as
``RetryPolicy(clock=FakeClock())``.  ``sleep(d)`` records ``d``, advances the
clock by ``d`` at once and yields to the event loop once; ``advance(d)``
moves time forward by hand (e.g. from a fake server's handler, to make an
attempt "take" that long).  It is also a plain ``callable`` returning the
time, so it can serve as :class:`fakes.fake_s3.FakeS3`'s ``clock``.
"""

from __future__ import annotations

import anyio.lowlevel


class FakeClock:
    def __init__(self, start: float = 0.0) -> None:
        self.now = float(start)
        #: every ``sleep`` asked for, in order
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))
        await anyio.lowlevel.checkpoint()
