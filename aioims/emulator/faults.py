"""Fault injection on the IMS API side.

Configured with ``POST /_emulator/faults`` (or ``--faults FILE.json``, or
:meth:`FaultInjector.configure` in-process) with a JSON object::

    {
      "rules": [
        {"endpoint": "upload_prepare", "error": {"code": "IMG.Internal.Error"}, "times": 2},
        {"path": "/api/image/v1/private-images/*", "method": "GET", "latency": 0.5,
         "rate": 0.3},
        {"endpoint": "get_image", "error": {"status": 503, "retry_after": 1}, "times": 1},
        {"endpoint": "create_private_image", "drop": true, "when": "after", "times": 1}
      ],
      "seed": 42,
      "activate_delay": 2.0,
      "kill_image_ids": ["img-abc"],
      "kill_next_uploads": 1,
      "replace": false
    }

A rule matches on ``endpoint`` (the route name, i.e. the SDK coroutine name:
``list_images``, ``get_image``, ``create_private_image``, ``upload_prepare``,
``upload_done``, ``download_private_image``, ...; ``"*"`` for all) and/or
``path`` (an ``fnmatch`` pattern on the request path) and ``method``.  When it
fires (``rate``: probability from a seeded RNG, default 1; ``times``: how many
times before it is spent, default unlimited) it sleeps ``latency`` seconds and
then, if it has one, applies its outcome: ``error`` — ``{"code": "IMG.x",
"status": 400, "message": "..."}`` answers that envelope; ``{"status": 503,
"retry_after": 2}`` without a code answers a raw (non-JSON) 5xx with
``Retry-After`` — or ``drop`` (close the connection without an answer).
``when: "after"`` runs the real handler first (its side effects happen) and
replaces its answer.  Rules are tried in order; latencies add up; the first
outcome wins.

``activate_delay`` delays every ``saving`` -> ``active`` transition;
``kill_image_ids`` / ``kill_next_uploads`` force the next verification of
those images / of the next N uploads to end in ``killed``.
"""

from __future__ import annotations

import fnmatch
import json
import math
import random
from collections.abc import Awaitable, Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import anyio
import attrs
from aiohttp import web

from .envelope import ImsFault, error_response
from .s3faults import FaultRule as S3FaultRule
from .s3front import S3Front

API_PREFIX = "/api/image/v1"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: bounds of the JSON configuration (seconds; counts)
MAX_SECONDS = 3600.0
MAX_COUNT = 1_000_000
MAX_TEXT = 4096
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def seconds(name: str, value: object, *, maximum: float = MAX_SECONDS) -> float:
    """A finite number of seconds within ``[0, maximum]`` (``ValueError`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or not 0 <= number <= maximum:
        raise ValueError(f"{name} must be finite and within [0, {maximum:g}], got {value!r}")
    return number


def count(name: str, value: object, *, maximum: int = MAX_COUNT) -> int:
    """An integer within ``[0, maximum]`` (``ValueError`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise ValueError(f"{name} must be an integer within [0, {maximum}], got {value!r}")
    return value


def text(name: str, value: object, *, maximum: int = MAX_TEXT) -> str:
    if not isinstance(value, str) or len(value) > maximum:
        raise ValueError(f"{name} must be a string of at most {maximum} characters")
    return value


def flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


@attrs.define(kw_only=True)
class ErrorSpec:
    code: str | None = None
    status: int = 400
    message: str | None = None
    retry_after: float | None = None

    @classmethod
    def from_json(cls, raw: Any) -> ErrorSpec:
        if isinstance(raw, str):
            return cls(code=text("error", raw, maximum=128))
        if _is_int(raw):
            raw = {"status": raw}
        if not isinstance(raw, Mapping):
            raise ValueError("error must be an IMG code, an HTTP status or an object")
        unknown = set(raw) - {"code", "status", "http_status", "message", "retry_after",
                              "retryAfter"}  # fmt: skip
        if unknown:
            raise ValueError(f"unknown error fields: {', '.join(sorted(map(str, unknown)))}")
        status = raw.get("status", raw.get("http_status", 400))
        if not _is_int(status) or not 400 <= status <= 599:
            raise ValueError(f"error status must be an integer within 400..599, got {status!r}")
        retry = raw.get("retry_after", raw.get("retryAfter"))
        code = raw.get("code")
        message = raw.get("message")
        return cls(
            code=text("error.code", code, maximum=128) if code else None,
            status=status,
            message=text("error.message", message) if message else None,
            retry_after=seconds("error.retry_after", retry) if retry is not None else None,
        )

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    def response(self, request: web.Request) -> web.StreamResponse:
        if self.code is None and self.status >= 500:
            headers = {}
            if self.retry_after is not None:
                headers["Retry-After"] = f"{self.retry_after:g}"
            text = self.message or "injected server error"
            return web.Response(status=self.status, text=text, headers=headers)
        code = self.code or "IMG.Internal.Error"
        answer = error_response(
            request, ImsFault(code, self.message or f"injected fault: {code}", status=self.status)
        )
        if self.retry_after is not None:
            answer.headers["Retry-After"] = f"{self.retry_after:g}"
        return answer


@attrs.define(kw_only=True)
class FaultRule:
    endpoint: str | None = None
    path: str | None = None
    method: str | None = None
    latency: float = 0.0
    error: ErrorSpec | None = None
    drop: bool = False
    when: str = "before"
    times: int | None = None
    rate: float = 1.0
    fired: int = 0

    @classmethod
    def from_json(
        cls, raw: Mapping[str, Any], endpoints: Collection[str] | None = None
    ) -> FaultRule:
        """A rule from its JSON object (``ValueError`` if invalid); ``endpoints``
        are the known endpoint names (``None``: any)."""
        if not isinstance(raw, Mapping):
            raise ValueError("a rule must be a JSON object")
        known = {"endpoint", "path", "method", "latency", "error", "drop", "when", "times", "rate"}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown rule fields: {', '.join(sorted(map(str, unknown)))}")
        when = raw.get("when", "before")
        if when not in ("before", "after"):
            raise ValueError("when must be 'before' or 'after'")
        endpoint = raw.get("endpoint")
        if endpoint is not None:
            text("endpoint", endpoint, maximum=128)
            if endpoints is not None and endpoint != "*" and endpoint not in endpoints:
                raise ValueError(f"unknown endpoint {endpoint!r}")
        path = raw.get("path")
        if path is not None:
            text("path", path, maximum=1024)
        method = raw.get("method")
        if method is not None:
            method = text("method", method, maximum=16).upper()
            if method not in _METHODS:
                raise ValueError(f"method must be one of {', '.join(sorted(_METHODS))}")
        times = raw.get("times")
        rate = raw.get("rate", 1.0)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError(f"rate must be a number within [0, 1], got {rate!r}")
        rule = cls(
            endpoint=endpoint,
            path=path,
            method=method or None,
            latency=seconds("latency", raw.get("latency", 0.0)),
            error=ErrorSpec.from_json(raw["error"]) if raw.get("error") is not None else None,
            drop=flag("drop", raw.get("drop", False)),
            when=when,
            times=count("times", times) if times is not None else None,
            rate=float(rate),
        )
        if rule.endpoint is None and rule.path is None:
            raise ValueError("a rule needs an endpoint or a path")
        return rule

    def to_json(self) -> dict[str, Any]:
        out = attrs.asdict(self, recurse=False)
        out["error"] = self.error.to_json() if self.error else None
        return out

    def matches(self, endpoint: str | None, method: str, path: str) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        if self.method is not None and self.method != method:
            return False
        if self.endpoint is not None and self.endpoint not in ("*", endpoint):
            return False
        return self.path is None or fnmatch.fnmatchcase(path, self.path)

    @property
    def has_outcome(self) -> bool:
        return self.error is not None or self.drop


class FaultInjector:
    """The fault state of one emulator (API rules, slow or forced transitions)."""

    def __init__(self, seed: int | None = None) -> None:
        self.rules: list[FaultRule] = []
        self.activate_delay = 0.0
        self.kill_image_ids: set[str] = set()
        self.kill_next_uploads = 0
        self.seed = seed
        self._rng = random.Random(seed)
        self._initial_seed = seed
        #: endpoint names rules may name (set by the application; None: any)
        self.endpoints: Collection[str] | None = None

    def reset(self) -> None:
        """Back to the start: no rules or settings, the seed given at start."""
        self.clear()
        self.seed = self._initial_seed
        self._rng = random.Random(self.seed)

    # --- configuration ---------------------------------------------------------

    def configure(self, raw: Mapping[str, Any]) -> None:
        """Apply a JSON configuration (see the module docstring).  Validates
        everything before changing anything; raises ``ValueError``."""
        if not isinstance(raw, Mapping):
            raise ValueError("the fault configuration must be a JSON object")
        known = {
            "rules", "seed", "activate_delay", "kill_image_ids", "kill_next_uploads", "replace",
        }  # fmt: skip
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(map(str, unknown)))}")
        rules_raw = raw.get("rules", [])
        if not isinstance(rules_raw, list):
            raise ValueError("rules must be a list")
        if len(rules_raw) > 1000:
            raise ValueError("at most 1000 rules at a time")
        rules = [FaultRule.from_json(item, self.endpoints) for item in rules_raw]
        kills = raw.get("kill_image_ids", [])
        if not isinstance(kills, list) or len(kills) > 1000:
            raise ValueError("kill_image_ids must be a list of at most 1000 image ids")
        kill_ids = [text("kill_image_ids[]", item, maximum=128) for item in kills]
        replace = flag("replace", raw.get("replace", False))
        seed = raw.get("seed")
        if seed is not None and not _is_int(seed):
            raise ValueError(f"seed must be an integer or null, got {seed!r}")
        delay = None
        if "activate_delay" in raw:
            delay = seconds("activate_delay", raw["activate_delay"])
        kill_next = (
            count("kill_next_uploads", raw["kill_next_uploads"])
            if "kill_next_uploads" in raw
            else None
        )
        # valid: apply it all
        if replace:
            self.clear()
        self.rules.extend(rules)
        if "seed" in raw:
            self.seed = seed
            self._rng = random.Random(self.seed)
        if delay is not None:
            self.activate_delay = delay
        self.kill_image_ids.update(kill_ids)
        if kill_next is not None:
            self.kill_next_uploads = kill_next

    def load_file(self, path: str | Path) -> None:
        self.configure(json.loads(Path(path).read_text(encoding="utf-8")))

    def add(self, rule: FaultRule) -> None:
        self.rules.append(rule)

    def clear(self) -> None:
        self.rules.clear()
        self.activate_delay = 0.0
        self.kill_image_ids.clear()
        self.kill_next_uploads = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "rules": [rule.to_json() for rule in self.rules],
            "seed": self.seed,
            "activate_delay": self.activate_delay,
            "kill_image_ids": sorted(self.kill_image_ids),
            "kill_next_uploads": self.kill_next_uploads,
        }

    # --- use ---------------------------------------------------------------------

    def should_kill(self, image_id: str, *, upload: bool) -> bool:
        """Whether this verification must end in ``killed`` (consumes the order)."""
        if image_id in self.kill_image_ids:
            self.kill_image_ids.discard(image_id)
            return True
        if upload and self.kill_next_uploads > 0:
            self.kill_next_uploads -= 1
            return True
        return False

    def pick(self, endpoint: str | None, method: str, path: str) -> tuple[float, FaultRule | None]:
        """Total latency and the rule whose outcome applies (if any)."""
        latency = 0.0
        for rule in list(self.rules):
            if not rule.matches(endpoint, method, path):
                continue
            if rule.rate < 1.0 and self._rng.random() >= rule.rate:
                continue
            rule.fired += 1
            latency += rule.latency
            if rule.has_outcome:
                return latency, rule
        return latency, None

    def middleware(self) -> Any:
        @web.middleware
        async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not request.path.startswith(API_PREFIX) or not self.rules:
                return await handler(request)
            route = request.match_info.route
            endpoint = getattr(route.handler, "__name__", None) if route is not None else None
            latency, rule = self.pick(endpoint, request.method, request.path)
            if latency > 0:
                await anyio.sleep(latency)
            if rule is None:
                return await handler(request)
            if rule.when == "after":
                answer = await handler(request)
                if answer.prepared:
                    return answer  # already streamed: too late to replace
            return await _outcome(request, rule)

        return fault_middleware


async def _outcome(request: web.Request, rule: FaultRule) -> web.StreamResponse:
    if rule.drop:
        transport = request.transport
        if transport is not None:
            transport.abort()
        return web.Response(status=499)  # never sent: the transport is gone
    assert rule.error is not None
    return rule.error.response(request)


def parse_s3_faults(raw: Mapping[str, Any]) -> tuple[list[S3FaultRule], bool]:
    """Validate ``{"rules": [...], "replace": bool}`` (the S3 front's rules in
    :class:`aioims.emulator.s3faults.FaultRule` JSON form): ``(rules, replace)``."""
    if not isinstance(raw, Mapping):
        raise ValueError("the S3 fault configuration must be a JSON object")
    unknown = set(raw) - {"rules", "replace"}
    if unknown:
        raise ValueError(f"unknown S3 fault settings: {', '.join(sorted(map(str, unknown)))}")
    rules_raw = raw.get("rules", [])
    if not isinstance(rules_raw, list) or not all(isinstance(r, Mapping) for r in rules_raw):
        raise ValueError("rules must be a list of objects")
    if len(rules_raw) > 1000:
        raise ValueError("at most 1000 rules at a time")
    return [S3FaultRule.from_json(item) for item in rules_raw], flag(
        "replace", raw.get("replace", False)
    )


def configure_s3_faults(front: S3Front, raw: Mapping[str, Any]) -> int:
    """Forward ``{"rules": [...], "replace": bool}`` to the S3 front's fault
    rules; returns the number of rules added.  Validates every rule before
    adding any."""
    rules, replace = parse_s3_faults(raw)
    if replace:
        front.faults.clear()
    front.faults.extend(rules)
    return len(rules)
