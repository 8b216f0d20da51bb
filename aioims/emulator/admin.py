"""The admin API under ``/_emulator/`` (outside the IMS API; see docs/emulator.md).

Rules every endpoint follows:

* a body is a JSON object (an empty body is ``{}``) of known keys, at most
  32 levels deep, without ``NaN``/``Infinity``; numbers are finite and
  non-negative, counts are integers, flags are booleans;
* the whole body is validated before anything changes (all-or-nothing);
* every bad input is a 4xx JSON answer ``{"error": "..."}`` -- 400 invalid,
  401 missing/wrong admin token, 404 unknown admin path, 405 wrong method,
  409 conflict (a token or user id already bound to another user), 413 body
  too large -- never a 5xx;
* with an admin token (``--admin-token`` / ``Emulator(admin_token=...)``)
  every ``/_emulator/`` request needs ``X-Emulator-Admin-Token: <token>``.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .context import SERVICES, Services
from .faults import parse_s3_faults
from .identity import User, user_from_json
from .s3auth import check_lifetime

ADMIN_PREFIX = "/_emulator/"
ADMIN_TOKEN_HEADER = "X-Emulator-Admin-Token"  # noqa: S105 - a header name
MAX_DEPTH = 32
MAX_USER_FIELD = 256
_TOKEN = re.compile(r"[!-~]{1,256}")  # printable ASCII, no spaces: it follows 'Bearer '
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AdminError(Exception):
    """A 4xx answer of the admin API."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_json(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(raw: bytes) -> Any:
    """A request body as JSON: ``{}`` when empty; :class:`AdminError` (400)
    when it is not UTF-8 JSON, holds ``NaN``/``Infinity`` or nests deeper than
    :data:`MAX_DEPTH`."""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise AdminError(400, f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise AdminError(400, f"malformed JSON body ({exc})") from None
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise AdminError(400, f"JSON nested deeper than {MAX_DEPTH} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, float) and not math.isfinite(item):
            raise AdminError(400, "numbers must be finite")
    return data


async def read_object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (see :func:`parse_json`)."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise AdminError(413, "body too large") from None
    except (web.RequestPayloadError, ValueError) as exc:
        raise AdminError(400, f"cannot read the body ({exc})") from None
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise AdminError(400, f"the body must be a JSON object, not {type(data).__name__}")
    return data


def _known(data: dict[str, Any], keys: set[str]) -> None:
    unknown = set(data) - keys
    if unknown:
        raise AdminError(400, f"unknown keys: {', '.join(sorted(unknown))}")


def _svc(request: web.Request) -> Services:
    return request.app[SERVICES]


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "").lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise AdminError(400, f"query parameter {name} must be true or false")


# --- middleware ----------------------------------------------------------------


def admin_middleware(admin_token: str | None) -> Any:
    """Admin token check and JSON errors for everything under ``/_emulator/``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(ADMIN_PREFIX) and request.path != "/_emulator":
            return await handler(request)
        if admin_token is not None:
            given = request.headers.get(ADMIN_TOKEN_HEADER, "")
            if not secrets.compare_digest(given.encode(), admin_token.encode()):
                return error_json(401, f"missing or wrong {ADMIN_TOKEN_HEADER} header")
        try:
            return await handler(request)
        except AdminError as exc:
            return error_json(exc.status, exc.message)
        except ValueError as exc:  # a model's own validation (fault rules, users)
            return error_json(400, str(exc))
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            if isinstance(exc, web.HTTPMethodNotAllowed):
                allowed = ", ".join(sorted(exc.allowed_methods))
                answer = error_json(405, f"{request.method} not allowed here (allowed: {allowed})")
                answer.headers["Allow"] = exc.headers.get("Allow", allowed)
                return answer
            if isinstance(exc, web.HTTPNotFound):
                return error_json(404, f"no admin endpoint {request.path!r}")
            return error_json(exc.status if exc.status < 500 else 400, exc.reason)

    return middleware


# --- handlers ------------------------------------------------------------------


def _user_json(user: User, tokens: bool) -> dict[str, str]:
    data = user.to_json()
    if not tokens:
        data.pop("token")
    return data


async def admin_state(request: web.Request) -> web.Response:
    """``GET /_emulator/state[?tokens=true]`` (tokens only when asked)."""
    svc = _svc(request)
    tokens = _flag(request, "tokens")
    records = await svc.store.images_in_status("queued", "saving", "active", "killed")
    return web.json_response(
        {
            "users": [_user_json(user, tokens) for user in svc.users.all()],
            "counts": await svc.store.status_counts(),
            "shares": await svc.store.share_count(),
            "images": [
                {
                    "imageId": r.image_id,
                    "name": r.image.name,
                    "status": r.status,
                    "owner": r.tenant_id,
                    "size": r.image.size,
                    "checksum": r.image.checksum,
                    "errMessage": r.image.err_message,
                    "lost": r.image_id in svc.lost,
                }
                for r in records
            ],
            "lost": sorted(svc.lost),
            "jobs": svc.worker.pending,
            "uploadDomain": svc.upload_domain,
            "s3Endpoint": svc.storage.endpoint,
            "s3Front": svc.front is not None,
            "credentialLifetime": svc.credential_lifetime,
            "faults": svc.faults.to_json(),
            "s3Faults": svc.front.faults.to_json() if svc.front is not None else [],
        }
    )


async def admin_get_faults(request: web.Request) -> web.Response:
    return web.json_response(_svc(request).faults.to_json())


async def admin_set_faults(request: web.Request) -> web.Response:
    svc = _svc(request)
    svc.faults.configure(await read_object(request))  # validates all, then applies
    return web.json_response(svc.faults.to_json())


async def admin_clear_faults(request: web.Request) -> web.Response:
    svc = _svc(request)
    svc.faults.clear()
    return web.json_response(svc.faults.to_json())


async def admin_set_s3_faults(request: web.Request) -> web.Response:
    """``{"rules": [...], "replace": bool, "credential_lifetime": seconds}``."""
    svc = _svc(request)
    payload = await read_object(request)
    _known(payload, {"rules", "replace", "credential_lifetime"})
    lifetime: float | None = None
    if "credential_lifetime" in payload:
        lifetime = check_lifetime(payload.pop("credential_lifetime"))
    rules, replace = parse_s3_faults(payload)
    if payload and svc.front is None:
        raise AdminError(400, "the S3 front is disabled: S3 faults need it")
    # valid: apply it all
    if lifetime is not None:
        svc.credential_lifetime = lifetime
    if svc.front is not None:
        if replace:
            svc.front.faults.clear()
        svc.front.faults.extend(rules)
    return web.json_response(
        {"rules_added": len(rules), "credential_lifetime": svc.credential_lifetime}
    )


async def admin_get_s3_faults(request: web.Request) -> web.Response:
    svc = _svc(request)
    return web.json_response(
        {
            "rules": svc.front.faults.to_json() if svc.front is not None else [],
            "credential_lifetime": svc.credential_lifetime,
        }
    )


async def admin_clear_s3_faults(request: web.Request) -> web.Response:
    svc = _svc(request)
    if svc.front is not None:
        svc.front.faults.clear()
    return web.json_response({"cleared": svc.front is not None})


async def admin_users(request: web.Request) -> web.Response:
    """``GET /_emulator/users``: every user, tokens included (test harnesses
    log in with them; protect the admin API with an admin token)."""
    return web.json_response([user.to_json() for user in _svc(request).users.all()])


def check_user(user: User) -> None:
    """Field rules of a user added through the admin API."""
    if not _TOKEN.fullmatch(user.token):
        raise AdminError(400, "token must be 1..256 printable ASCII characters without spaces")
    for name, value in user.to_json().items():
        if len(value) > MAX_USER_FIELD or _CONTROL.search(value):
            raise AdminError(
                400, f"{name} must be at most {MAX_USER_FIELD} characters, no control characters"
            )


async def admin_add_user(request: web.Request) -> web.Response:
    """``POST /_emulator/users``: add one user.  The same user again is a
    no-op (200); a token or user id already bound to a different user is 409."""
    svc = _svc(request)
    user = user_from_json(await read_object(request))
    check_user(user)
    existing = svc.users.by_token(user.token)
    if existing is not None:
        if existing != user:
            raise AdminError(
                409, f"token already belongs to user {existing.user_name!r}: not rebound"
            )
        return web.json_response(user.to_json())
    clash = svc.users.by_id(user.user_id)
    if clash is not None:
        raise AdminError(409, f"user id {user.user_id} already belongs to {clash.user_name!r}")
    svc.users.add(user)
    await svc.store.upsert_users([user])
    return web.json_response(user.to_json(), status=201)


async def admin_reset(request: web.Request) -> web.Response:
    """``POST /_emulator/reset``: back to a clean account (see :meth:`Services.reset`)."""
    _known(await read_object(request), set())
    reset = _svc(request).reset_hook
    if reset is None:
        raise AdminError(400, "this emulator cannot be reset")
    took = await reset()
    return web.json_response({"reset": True, "seconds": round(took, 6)})


def add_admin_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/_emulator/state", admin_state)
    router.add_get("/_emulator/faults", admin_get_faults)
    router.add_post("/_emulator/faults", admin_set_faults)
    router.add_delete("/_emulator/faults", admin_clear_faults)
    router.add_get("/_emulator/s3-faults", admin_get_s3_faults)
    router.add_post("/_emulator/s3-faults", admin_set_s3_faults)
    router.add_delete("/_emulator/s3-faults", admin_clear_s3_faults)
    router.add_get("/_emulator/users", admin_users)
    router.add_post("/_emulator/users", admin_add_user)
    router.add_post("/_emulator/reset", admin_reset)
