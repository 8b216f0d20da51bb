"""The ``aiohttp.web`` application: routes under ``/api/image/v1``, the
envelope middleware, and the admin API under ``/_emulator/``."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable

from aiohttp import web

from . import handlers_images as images
from . import handlers_shares as shares
from .admin import add_admin_routes, admin_middleware
from .context import SERVICES, Services
from .envelope import ImsFault, error_response, fault, invalid, new_request_id
from .faults import API_PREFIX

log = logging.getLogger("aioims.emulator")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: (method, path under /api/image/v1, handler); the handler's name is the
#: endpoint name used by fault rules (and the SDK coroutine's name).
ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/images", images.list_images),
    ("GET", "/images/{image_id}", images.get_image),
    ("GET", "/private-images", images.list_private_images),
    ("POST", "/private-images", images.create_private_image),
    ("POST", "/private-images/import", images.import_image),
    ("PUT", "/private-images/{image_id}", images.update_private_image),
    ("DELETE", "/private-images/{image_id}", images.delete_private_image),
    ("POST", "/private-images/{image_id}/upload-prepare", images.upload_prepare),
    ("POST", "/private-images/{image_id}/upload-done", images.upload_done),
    ("GET", "/private-images/{image_id}/file", images.download_private_image),
    ("HEAD", "/private-images/{image_id}/file", images.download_private_image),
    ("POST", "/private-images/{image_id}/share", shares.share_image),
    ("GET", "/private-images/{image_id}/share", shares.list_image_shares),
    ("POST", "/private-images/{image_id}/unshare", shares.unshare_image),
    ("GET", "/private-images/{image_id}/oss-bucket-list", images.list_export_buckets),
    ("POST", "/custom-images/{image_id}/export", images.export_image),
    ("GET", "/shared-images", shares.list_shared_images),
    ("DELETE", "/shared-images/{share_id}", shares.delete_shared_image),
    ("POST", "/shared-images/{share_id}/copy", shares.copy_shared_image),
]

ENDPOINT_NAMES: tuple[str, ...] = tuple(dict.fromkeys(handler.__name__ for *_, handler in ROUTES))


@web.middleware
async def envelope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, ``IMG.*`` error envelopes, and never a crash."""
    rid = new_request_id()
    if not request.path.startswith(API_PREFIX):
        try:
            return await handler(request)
        except (ValueError, TypeError, KeyError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
    try:
        answer = await handler(request)
    except ImsFault as exc:
        answer = error_response(request, exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            exc.headers["x-request-id"] = rid
            raise
        answer = http_error_response(request, exc)
    except asyncio.CancelledError:
        raise
    except sqlite3.Error as exc:
        log.exception("database error in %s %s", request.method, request.path)
        code = "IMG.DBGet.Fail" if request.method in ("GET", "HEAD") else "IMG.DBUpdate.Fail"
        answer = error_response(request, fault(code, f"{type(exc).__name__}: {exc}"))
    except Exception as exc:
        log.exception("unexpected error in %s %s", request.method, request.path)
        answer = error_response(
            request,
            ImsFault("IMG.Internal.Error", f"服务内部错误: {type(exc).__name__}: {exc}"),
        )
    if not answer.prepared:
        answer.headers.setdefault("x-request-id", rid)
    return answer


#: headers of aiohttp's own error answers that their envelope keeps
_KEPT_HEADERS = ("Allow", "Content-Range", "Retry-After")


def http_error_response(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own errors under the API (no route: 404, wrong method: 405
    with ``Allow``, body too large: 413, bad range: 416 with
    ``Content-Range``) as an ``IMG.InvalidParameter`` envelope with the same
    HTTP status; a 5xx (never expected) as ``IMG.Internal.Error`` (HTTP 400)."""
    if exc.status >= 500:
        problem = ImsFault("IMG.Internal.Error", f"服务内部错误: HTTP {exc.status} {exc.reason}")
    elif isinstance(exc, web.HTTPNotFound):
        problem = invalid("path", f"no endpoint {request.path!r}")
    elif isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        problem = invalid("method", f"{request.method} not allowed here (allowed: {allowed})")
    else:
        field = {413: "body", 416: "Range"}.get(exc.status, "request")
        problem = invalid(field, exc.text or exc.reason)
    if exc.status < 500:
        problem.status = exc.status
    answer = error_response(request, problem)
    for name in _KEPT_HEADERS:
        if name in exc.headers:
            answer.headers[name] = exc.headers[name]
    return answer


async def openapi_json(request: web.Request) -> web.Response:
    """``GET /openapi.json``: the OpenAPI 3.1 document of this API."""
    from .openapi import openapi_text  # lazily: ``python -m aioims.emulator.openapi`` runs it

    return web.Response(text=openapi_text(), content_type="application/json")


def build_app(services: Services) -> web.Application:
    """The application; the admin API (:mod:`aioims.emulator.admin`) checks
    ``services.admin_token`` and resets through ``services.reset_hook``."""
    app = web.Application(
        middlewares=[
            envelope_middleware,
            admin_middleware(services.admin_token),
            services.faults.middleware(),
        ],
        client_max_size=4 * 1024 * 1024,
    )
    app[SERVICES] = services
    services.faults.endpoints = frozenset(ENDPOINT_NAMES)
    for method, path, handler in ROUTES:
        app.router.add_route(method, API_PREFIX + path, handler)
    add_admin_routes(app)
    app.router.add_get("/openapi.json", openapi_json)
    return app
