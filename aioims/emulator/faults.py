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
import random
from collections.abc import Awaitable, Callable, Mapping
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


@attrs.define(kw_only=True)
class ErrorSpec:
    code: str | None = None
    status: int = 400
    message: str | None = None
    retry_after: float | None = None

    @classmethod
    def from_json(cls, raw: Any) -> ErrorSpec:
        if isinstance(raw, str):
            return cls(code=raw)
        if isinstance(raw, int) and not isinstance(raw, bool):
            return cls(status=raw)
        if not isinstance(raw, Mapping):
            raise ValueError("error must be an IMG code, an HTTP status or an object")
        status = int(raw.get("status", raw.get("http_status", 400)))
        if not 400 <= status <= 599:
            raise ValueError("error status must be 4xx or 5xx")
        retry = raw.get("retry_after", raw.get("retryAfter"))
        code = raw.get("code")
        return cls(
            code=str(code) if code else None,
            status=status,
            message=str(raw["message"]) if raw.get("message") else None,
            retry_after=float(retry) if retry is not None else None,
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
    def from_json(cls, raw: Mapping[str, Any]) -> FaultRule:
        known = {"endpoint", "path", "method", "latency", "error", "drop", "when", "times", "rate"}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown rule fields: {', '.join(sorted(unknown))}")
        when = str(raw.get("when", "before"))
        if when not in ("before", "after"):
            raise ValueError("when must be 'before' or 'after'")
        times = raw.get("times")
        rule = cls(
            endpoint=raw.get("endpoint"),
            path=raw.get("path"),
            method=str(raw["method"]).upper() if raw.get("method") else None,
            latency=float(raw.get("latency", 0.0)),
            error=ErrorSpec.from_json(raw["error"]) if raw.get("error") is not None else None,
            drop=bool(raw.get("drop", False)),
            when=when,
            times=int(times) if times is not None else None,
            rate=float(raw.get("rate", 1.0)),
        )
        if rule.endpoint is None and rule.path is None:
            raise ValueError("a rule needs an endpoint or a path")
        if not 0.0 <= rule.rate <= 1.0:
            raise ValueError("rate must be within 0..1")
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
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        rules_raw = raw.get("rules", [])
        if not isinstance(rules_raw, list):
            raise ValueError("rules must be a list")
        rules = [FaultRule.from_json(item) for item in rules_raw]
        kills = raw.get("kill_image_ids", [])
        if not isinstance(kills, list):
            raise ValueError("kill_image_ids must be a list")
        if raw.get("replace"):
            self.clear()
        self.rules.extend(rules)
        if "seed" in raw:
            self.seed = None if raw["seed"] is None else int(raw["seed"])
            self._rng = random.Random(self.seed)
        if "activate_delay" in raw:
            self.activate_delay = max(0.0, float(raw["activate_delay"]))
        self.kill_image_ids.update(str(item) for item in kills)
        if "kill_next_uploads" in raw:
            self.kill_next_uploads = max(0, int(raw["kill_next_uploads"]))

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


def configure_s3_faults(front: S3Front, raw: Mapping[str, Any]) -> int:
    """Forward ``{"rules": [...], "replace": bool}`` to the S3 front's fault
    rules (:class:`aioims.emulator.s3faults.FaultRule` JSON form); returns the
    number of rules added.  Validates every rule before adding any."""
    unknown = set(raw) - {"rules", "replace"}
    if unknown:
        raise ValueError(f"unknown S3 fault settings: {', '.join(sorted(unknown))}")
    rules_raw = raw.get("rules", [])
    if not isinstance(rules_raw, list) or not all(isinstance(r, Mapping) for r in rules_raw):
        raise ValueError("rules must be a list of objects")
    rules = [S3FaultRule.from_json(item) for item in rules_raw]
    if raw.get("replace"):
        front.faults.clear()
    front.faults.extend(rules)
    return len(rules)
