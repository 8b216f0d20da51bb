"""Fault rules, operation names and request statistics for the S3 front.

See :mod:`aioims.emulator.s3front` for how they are used.  A :class:`FaultSet`
is an ordered list of :class:`FaultRule`; for each request the first live rule
that matches (operation, part number, probability draw) fires, and only that
one.  ``times`` counts firings (``None`` = unlimited); a rule that has fired
``times`` times is dropped.  JSON form (``FaultSet.to_json()``, accepted back by
``FaultSet.from_json``; ``times`` there is the number of firings left)::

    [{"operation": "UploadPart", "part_numbers": [2], "action": "error",
      "status": 500, "code": "InternalError", "message": null, "delay": 0.0,
      "times": 1, "probability": 1.0, "seed": null, "when": "before"}]

``when: "after"`` (with ``action`` ``"reset"`` or ``"error"``) is the *lost
response*: the request is forwarded to the backend first (its side effect
happens: the multipart upload is created, the part stored, the object
completed) and only then is the answer replaced -- ``"reset"`` drops the
client connection without an answer, ``"error"`` answers the S3 error.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Literal, cast

import attrs

Action = Literal["error", "reset", "delay", "expire"]
ACTIONS: frozenset[str] = frozenset({"error", "reset", "delay", "expire"})
When = Literal["before", "after"]
#: the actions that may run ``when="after"`` the backend answered
AFTER_ACTIONS: frozenset[str] = frozenset({"error", "reset"})
#: bounds of the JSON form (admin API): seconds of delay, part numbers
MAX_DELAY = 3600.0
MAX_PART_NUMBER = 10000

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


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _part_numbers(value: Iterable[int] | None) -> frozenset[int] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise ValueError(f"part_numbers must be a list of integers, got {value!r}")
    numbers = list(value)
    for number in numbers:
        if not _is_int(number) or not 1 <= number <= MAX_PART_NUMBER:
            raise ValueError(
                f"part_numbers must be integers within 1..{MAX_PART_NUMBER}, got {number!r}"
            )
    return frozenset(numbers)


def _finite(value: object) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(float(value))
    )


def _check_probability(_: object, __: object, value: float) -> None:
    if not _finite(value) or not 0 <= value <= 1:
        raise ValueError(f"probability must be a number within [0, 1], got {value!r}")


def _check_status(_: object, __: object, value: int) -> None:
    if not _is_int(value) or not 400 <= value <= 599:
        raise ValueError(f"status must be an HTTP error status (400..599), got {value!r}")


def _check_delay(_: object, __: object, value: float) -> None:
    if not _finite(value) or not 0 <= value <= MAX_DELAY:
        raise ValueError(f"delay must be a finite number within [0, {MAX_DELAY:g}], got {value!r}")


def _check_times(_: object, __: object, value: int | None) -> None:
    if value is not None and (not _is_int(value) or value < 0):
        raise ValueError(f"times must be an integer >= 0 or None, got {value!r}")


def _check_seed(_: object, __: object, value: int | None) -> None:
    if value is not None and not _is_int(value):
        raise ValueError(f"seed must be an integer or None, got {value!r}")


def _check_code(_: object, __: object, value: str) -> None:
    if not isinstance(value, str) or not value or len(value) > 128 or not value.isalnum():
        raise ValueError(f"code must be an S3 error code (1..128 letters/digits), got {value!r}")


def _check_message(_: object, __: object, value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or len(value) > 4096):
        raise ValueError("message must be a string of at most 4096 characters or None")


def _check_operation(_: object, __: object, value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or not value or len(value) > 64):
        raise ValueError(f"operation must be an S3 operation name or '*', got {value!r}")


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
    * ``when``: ``"before"`` (default: the request never reaches the backend)
      or ``"after"`` (``"error"``/``"reset"`` only: the request is forwarded,
      its side effect happens, then the answer is replaced -- the lost
      response);
    * ``times``: how many times the rule fires (``None`` = always);
    * ``probability`` / ``seed``: fire on a random draw (a per-rule
      ``random.Random(seed)``); a request that loses the draw does not use up
      ``times``.
    """

    operation: str | None = attrs.field(default=None, validator=_check_operation)
    part_numbers: frozenset[int] | None = attrs.field(default=None, converter=_part_numbers)
    action: Action = attrs.field(default="error", validator=attrs.validators.in_(ACTIONS))
    status: int = attrs.field(default=500, validator=_check_status)
    code: str = attrs.field(default="InternalError", validator=_check_code)
    message: str | None = attrs.field(default=None, validator=_check_message)
    delay: float = attrs.field(default=0.0, validator=_check_delay)
    times: int | None = attrs.field(default=1, validator=_check_times)
    probability: float = attrs.field(default=1.0, validator=_check_probability)
    seed: int | None = attrs.field(default=None, validator=_check_seed)
    when: When = attrs.field(default="before", validator=attrs.validators.in_(("before", "after")))

    def __attrs_post_init__(self) -> None:
        if self.when == "after" and self.action not in AFTER_ACTIONS:
            raise ValueError(
                f"when='after' needs action 'reset' or 'error', not {self.action!r}"
            )

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
        if not isinstance(data, Mapping):
            raise ValueError(f"a fault rule must be a JSON object, got {type(data).__name__}")
        unknown = set(data) - {field.name for field in attrs.fields(cls)}
        if unknown:
            raise ValueError(f"unknown fault rule fields: {sorted(unknown)}")
        try:
            return cls(**cast(dict[str, Any], dict(data)))
        except (TypeError, OverflowError) as exc:  # e.g. part_numbers that are not numbers
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
