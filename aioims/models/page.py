"""A page of results that can also walk the following pages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

import attrs

T = TypeVar("T")


@attrs.define(kw_only=True)
class Page(Generic[T]):
    """One page of a list call: ``items``, ``total`` (item count), ``current``
    (1-based page number) and ``size`` (page size).

    ``async for item in page`` yields this page's items and then fetches and
    yields the following pages' items until ``total`` is reached;
    ``await page.next_page()`` fetches just the next page (or returns ``None``).
    """

    items: list[T] = attrs.field(factory=list)
    total: int = 0
    current: int = 1
    size: int = 0
    _fetch: Callable[[int], Awaitable[Page[T]]] | None = attrs.field(
        default=None, repr=False, eq=False, alias="fetch"
    )

    def __len__(self) -> int:
        return len(self.items)

    def has_next_page(self) -> bool:
        if not self.items or self.size <= 0:
            return False
        return self.current * self.size < self.total

    async def next_page(self) -> Page[T] | None:
        if self._fetch is None or not self.has_next_page():
            return None
        return await self._fetch(self.current + 1)

    async def __aiter__(self) -> AsyncIterator[T]:
        page: Page[T] | None = self
        while page is not None:
            for item in page.items:
                yield item
            page = await page.next_page()
