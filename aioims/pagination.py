"""Walking paged results, and the ``filter`` builder of the private-image list.

``filter`` is a list of clauses ``field:op:value``, ``lk`` (contains) and
``eq`` (equals).  **Every clause must match (AND)**.  In Python, combine
filters with ``&``; on the wire the clauses are joined by ``|`` (the
service's syntax, which nevertheless means AND)::

    Filter().name_contains("web").image_id_equals("img-kvvfk28fcjc0mt")
    F.lk("name", "web") & F.eq("imageId", "img-kvvfk28fcjc0mt")
    # both send: name:lk:web|imageId:eq:img-kvvfk28fcjc0mt

``filter_a | filter_b`` still works but is deprecated (it reads as OR and
is an AND): it emits a :class:`DeprecationWarning`.  There is no OR.

Filters are immutable; every method returns a new one.  ``str(filter)`` is
the wire value.  Plain strings are accepted wherever a filter is.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import attrs

from .errors import ValidationError
from .models import Page

T = TypeVar("T")

#: Operators of the filter syntax.
OPERATORS = {"lk": "contains", "eq": "equals"}


def _check_part(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"filter {what} must be a string, got {value!r}", field="filter")
    if "|" in value:
        raise ValidationError(f"filter {what} may not contain '|': {value!r}", field="filter")
    return value


@attrs.frozen
class Clause:
    """One ``field:op:value`` condition."""

    field: str
    op: str
    value: str

    def __attrs_post_init__(self) -> None:
        _check_part(self.field, "field")
        if not self.field or ":" in self.field:
            raise ValidationError(
                f"filter field must be non-empty without ':': {self.field!r}", field="filter"
            )
        if self.op not in OPERATORS:
            raise ValidationError(
                f"filter operator must be one of {sorted(OPERATORS)}, got {self.op!r}",
                field="filter",
            )
        _check_part(self.value, "value")

    def __str__(self) -> str:
        return f"{self.field}:{self.op}:{self.value}"


@attrs.frozen
class Filter:
    """A conjunction (AND) of clauses for ``list_private_images(filter=...)``;
    combine filters with ``&``."""

    clauses: tuple[Clause, ...] = ()

    def where(self, field: str, op: str, value: str) -> Filter:
        return Filter((*self.clauses, Clause(field, op, value)))

    def lk(self, field: str, value: str) -> Filter:
        """``field`` contains ``value``."""
        return self.where(field, "lk", value)

    def eq(self, field: str, value: str) -> Filter:
        """``field`` equals ``value``."""
        return self.where(field, "eq", value)

    contains = lk
    equals = eq

    def name_contains(self, value: str) -> Filter:
        return self.lk("name", value)

    def name_equals(self, value: str) -> Filter:
        return self.eq("name", value)

    def image_id_equals(self, value: str) -> Filter:
        return self.eq("imageId", value)

    def image_id_contains(self, value: str) -> Filter:
        return self.lk("imageId", value)

    def __and__(self, other: Filter | str) -> Filter:
        """Both filters' clauses must match (``a & b``; a string is parsed)."""
        if isinstance(other, str):
            other = Filter.parse(other)
        if not isinstance(other, Filter):
            return NotImplemented
        return Filter((*self.clauses, *other.clauses))

    def __rand__(self, other: str) -> Filter:
        if not isinstance(other, str):
            return NotImplemented
        return Filter.parse(other) & self

    def __or__(self, other: Filter | str) -> Filter:
        """Deprecated spelling of ``&``: the clauses are ANDed, not ORed."""
        if not isinstance(other, (Filter, str)):
            return NotImplemented
        warnings.warn(
            "Filter | Filter is deprecated and means AND (every clause must match): "
            "write Filter & Filter",
            DeprecationWarning,
            stacklevel=2,
        )
        return self & other

    def __bool__(self) -> bool:
        return bool(self.clauses)

    def __str__(self) -> str:
        return "|".join(str(c) for c in self.clauses)

    @classmethod
    def parse(cls, text: str) -> Filter:
        """Parse ``name:lk:x|imageId:eq:y|`` (empty clauses are skipped)."""
        if not isinstance(text, str):
            raise ValidationError(f"filter must be a string, got {text!r}", field="filter")
        clauses = []
        for part in text.split("|"):
            if not part:
                continue
            pieces = part.split(":", 2)
            if len(pieces) != 3:
                raise ValidationError(f"bad filter clause {part!r}", field="filter")
            clauses.append(Clause(*pieces))
        return cls(tuple(clauses))


#: An empty filter to start from: ``F.lk("name", "x") & F.eq("imageId", "img-…")``.
F = Filter()


def filter_value(value: Filter | str | None) -> str | None:
    """The wire value of a ``filter`` argument (``None``/empty -> ``None``)."""
    if value is None:
        return None
    if isinstance(value, Filter):
        return str(value) or None
    if isinstance(value, str):
        return value or None
    raise ValidationError(f"filter must be a Filter or a string, got {value!r}", field="filter")


async def walk(
    first_page: Callable[[], Awaitable[Page[T]]],
) -> AsyncIterator[T]:
    """Yield every item of every page, starting from ``await first_page()``;
    following pages come from the page's ``fetch`` callable."""
    page = await first_page()
    async for item in page:
        yield item
