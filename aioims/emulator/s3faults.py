"""Fault rules, operation names and request statistics for the S3 front.

See :mod:`aioims.emulator.s3front` for how they are used.  A :class:`FaultSet`
is an ordered list of :class:`FaultRule`; for each request the first live rule
that matches (operation, part number, probability draw) fires, and only that
one.  ``times`` counts firings (``None`` = unlimited); a rule that has fired
``times`` times is dropped.  JSON form (``FaultSet.to_json()``, accepted back by
``FaultSet.from_json``; ``times`` there is the number of firings left)::

    [{"operation": "UploadPart", "part_numbers": [2], "action": "error",
      "status": 500, "code": "InternalError", "message": null, "delay": 0.0,
      "times": 1, "probability": 1.0, "seed": null}]
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Literal, cast

import attrs

Action = Literal["error", "reset", "delay", "expire"]
ACTIONS: frozenset[str] = frozenset({"error", "reset", "delay", "expire"})

#: Operation names :func:`detect_operation` produces for object requests
#: (bucket-level requests get ``ListBuckets``, ``CreateBucket``, ``ListObjects``, ...).
OBJECT_OPERATIONS = frozenset(
    {
        "PutObject",
        "CopyObject",
        "GetObject",
        "HeadObject",
        "DeleteObject",
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
        "CompleteMultipartUpload",
        "AbortMultipartUpload",
        "ListParts",
    }
)


def detect_operation(method: str, path: str, query: Mapping[str, str], copy_source: bool) -> str:
    """The S3 operation name of a path-style request.

    ``path`` is the decoded path (``/bucket/key``), ``query`` the decoded query
    parameters, ``copy_source`` whether ``x-amz-copy-source`` is present.
    """
    method = method.upper()
    bucket, _, key = path.lstrip("/").partition("/")
    verb = {"GET": "Get", "PUT": "Put", "DELETE": "Delete", "HEAD": "Head", "POST": "Post"}.get(
        method, method.title()
    )
    if not bucket:
        return "ListBuckets" if method == "GET" else f"{verb}Service"
    if not key:
        if "uploads" in query and method == "GET":
            return "ListMultipartUploads"
        if "delete" in query and method == "POST":
            return "DeleteObjects"
        sub = next((name for name in query if name.isalpha() and name.islower()), None)
        if sub is not None and sub not in ("prefix", "delimiter", "marker", "encoding"):
            return f"{verb}Bucket{sub.title()}"
        return {
            "GET": "ListObjectsV2" if query.get("list-type") == "2" else "ListObjects",
            "PUT": "CreateBucket",
            "DELETE": "DeleteBucket",
            "HEAD": "HeadBucket",
        }.get(method, f"{verb}Bucket")
    upload = "uploadId" in query
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        return "CompleteMultipartUpload" if upload else "PostObject"
    if method == "PUT":
        if upload and "partNumber" in query:
            return "UploadPartCopy" if copy_source else "UploadPart"
        for sub in ("tagging", "acl", "retention", "legal-hold"):
            if sub in query:
                return f"PutObject{sub.title().replace('-', '')}"
        return "CopyObject" if copy_source else "PutObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if upload else "DeleteObject"
    if method == "GET":
        if upload:
            return "ListParts"
        for sub in ("tagging", "acl", "attributes", "retention", "legal-hold"):
            if sub in query:
                return f"GetObject{sub.title().replace('-', '')}"
        return "GetObject"
    if method == "HEAD":
        return "HeadObject"
    return f"{verb}Object"


def _part_numbers(value: Iterable[int] | None) -> frozenset[int] | None:
    return None if value is None else frozenset(int(n) for n in value)


def _check_probability(_: object, __: object, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"probability must be a number within [0, 1], got {value!r}")


def _optional(kind: type) -> Any:
    return attrs.validators.optional(attrs.validators.instance_of(kind))


def _check_status(_: object, __: object, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
        raise ValueError(f"status must be an HTTP status code, got {value!r}")


def _check_delay(_: object, __: object, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"delay must be a number >= 0, got {value!r}")


def _check_times(_: object, __: object, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"times must be an integer >= 0 or None, got {value!r}")


@attrs.frozen
class FaultRule:
    """One fault to inject.

    * ``operation``: S3 operation name (``"UploadPart"``, ``"PutObject"``,
      ``"CreateMultipartUpload"``, ``"CompleteMultipartUpload"``,
      ``"AbortMultipartUpload"``, ``"ListParts"``, ``"GetObject"``,
      ``"HeadObject"``, ...) or ``"*"``/``None`` for every request;
    * ``part_numbers``: only requests whose ``partNumber`` is in the set
      (``None`` = any request, with or without a part number);
    * ``action``: ``"error"`` (S3 XML error ``status``/``code``/``message``),
      ``"reset"`` (read part of the body, then drop the connection without an
      answer), ``"delay"`` (sleep ``delay`` seconds, then forward normally),
      ``"expire"`` (expire the request's temporary credentials now and answer
      ``400 ExpiredToken``; later requests with them get ``ExpiredToken`` too);
    * ``times``: how many times the rule fires (``None`` = always);
    * ``probability`` / ``seed``: fire on a random draw (a per-rule
      ``random.Random(seed)``); a request that loses the draw does not use up
      ``times``.
    """

    operation: str | None = attrs.field(default=None, validator=_optional(str))
    part_numbers: frozenset[int] | None = attrs.field(default=None, converter=_part_numbers)
    action: Action = attrs.field(default="error", validator=attrs.validators.in_(ACTIONS))
    status: int = attrs.field(default=500, validator=_check_status)
    code: str = attrs.field(default="InternalError", validator=attrs.validators.instance_of(str))
    message: str | None = attrs.field(default=None, validator=_optional(str))
    delay: float = attrs.field(default=0.0, validator=_check_delay)
    times: int | None = attrs.field(default=1, validator=_check_times)
    probability: float = attrs.field(default=1.0, validator=_check_probability)
    seed: int | None = attrs.field(default=None, validator=_optional(int))

    def matches(self, operation: str, part_number: int | None) -> bool:
        if self.operation not in (None, "*", operation):
            return False
        return self.part_numbers is None or part_number in self.part_numbers

    def to_json(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["part_numbers"] = None if self.part_numbers is None else sorted(self.part_numbers)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultRule:
        """A rule from its JSON object; ``ValueError`` if it is not a valid rule."""
        unknown = set(data) - {field.name for field in attrs.fields(cls)}
        if unknown:
            raise ValueError(f"unknown fault rule fields: {sorted(unknown)}")
        try:
            return cls(**cast(dict[str, Any], dict(data)))
        except TypeError as exc:  # e.g. part_numbers that are not numbers
            raise ValueError(f"invalid fault rule: {exc}") from None


@attrs.define
class _Entry:
    rule: FaultRule
    remaining: int | None
    rng: random.Random


class FaultSet:
    """The ordered fault rules of one :class:`~aioims.emulator.s3front.S3Front`."""

    def __init__(self, rules: Iterable[FaultRule] = ()) -> None:
        self._entries: list[_Entry] = []
        for rule in rules:
            self.add(rule)

    def add(self, rule: FaultRule) -> FaultRule:
        self._entries.append(_Entry(rule, rule.times, random.Random(rule.seed)))
        return rule

    def extend(self, rules: Iterable[FaultRule]) -> None:
        for rule in rules:
            self.add(rule)

    def clear(self) -> None:
        self._entries.clear()

    def replace(self, other: FaultSet) -> None:
        """Take over ``other``'s rules (and their remaining counts)."""
        self._entries = list(other._entries)

    @property
    def rules(self) -> list[FaultRule]:
        """The rules that can still fire, in order."""
        return [entry.rule for entry in self._entries if entry.remaining != 0]

    def __len__(self) -> int:
        return len(self.rules)

    def pick(self, operation: str, part_number: int | None) -> FaultRule | None:
        """The rule that fires for this request, if any (counts the firing)."""
        for entry in self._entries:
            rule = entry.rule
            if entry.remaining == 0 or not rule.matches(operation, part_number):
                continue
            if rule.probability < 1.0 and entry.rng.random() >= rule.probability:
                continue
            if entry.remaining is not None:
                entry.remaining -= 1
            self._entries = [e for e in self._entries if e.remaining != 0]
            return rule
        return None

    def to_json(self) -> list[dict[str, Any]]:
        out = []
        for entry in self._entries:
            if entry.remaining != 0:
                data = entry.rule.to_json()
                data["times"] = entry.remaining
                out.append(data)
        return out

    @classmethod
    def from_json(cls, data: Iterable[Mapping[str, Any]] | Mapping[str, Any]) -> FaultSet:
        """Rules from JSON: a list of rule objects or ``{"rules": [...]}``."""
        if isinstance(data, Mapping):
            data = cast(Iterable[Mapping[str, Any]], data["rules"])
        return cls(FaultRule.from_json(item) for item in data)


@attrs.frozen
class FaultHit:
    """A fault that fired."""

    operation: str
    part_number: int | None
    action: str
    code: str | None


@attrs.define
class FrontStats:
    """What reached the front (counted before the credential check)."""

    requests: Counter[str] = attrs.Factory(Counter)  # operation -> requests received
    part_numbers: list[int] = attrs.Factory(list)  # UploadPart part numbers, arrival order
    rejected: Counter[str] = attrs.Factory(Counter)  # credential error code -> count
    faults: list[FaultHit] = attrs.Factory(list)  # injected faults, in order

    def count(self, operation: str) -> int:
        return self.requests[operation]

    def faults_for(self, operation: str) -> list[FaultHit]:
        return [hit for hit in self.faults if hit.operation == operation]

    def reset(self) -> None:
        self.requests.clear()
        self.part_numbers.clear()
        self.rejected.clear()
        self.faults.clear()

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "part_numbers": list(self.part_numbers),
            "rejected": dict(self.rejected),
            "faults": [attrs.asdict(hit) for hit in self.faults],
        }
