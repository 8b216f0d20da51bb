"""``IMSSession``: lifecycle, options, and the plumbing under the endpoint
coroutines (which live in :mod:`aioims._endpoints`, one mixin per group)."""

# The public API takes `timeout=` by design (per-call override), hence:
# ruff: noqa: ASYNC109

from __future__ import annotations

import copy
import functools
import inspect
import os
import ssl
import warnings
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio.to_thread

from ._endpoints import ImageEndpoints, SharingEndpoints, UploadEndpoints
from ._protocol import Envelope, PreparedRequest, RetryMode, build_request
from ._transport import SSLOption, StreamResponse, Transport
from ._version import __version__
from .auth import Auth, HeaderAuth
from .config import DEFAULT_TIMEOUT, RetryPolicy, Settings
from .errors import ValidationError
from .models import Image
from .models.spec import CreateKwargs, ImageSpec, TenantDefaults

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .transfer import TransferConfig
    from .transfer.events import EventStream, ProgressCallback
    from .uploader import Uploader

USER_AGENT = f"aioims/{__version__}"


class _Shared:
    """State shared by a session and its :meth:`IMSSession.with_options` views."""

    __slots__ = ("http", "owned", "transport")

    def __init__(self) -> None:
        self.http: aiohttp.ClientSession | None = None
        self.owned = False
        self.transport: Transport | None = None


def _check_timeout(value: Any, field: str = "timeout") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValidationError(f"{field} must be a number > 0, got {value!r}", field=field)
    return float(value)


class IMSSession(ImageEndpoints, UploadEndpoints, SharingEndpoints):
    """An asynchronous client of one IMS endpoint and region.

    ::

        async with IMSSession("https://ims.example.com", "region0",
                              auth=HeaderAuth.bearer(token)) as ims:
            image = await ims.get_image("img-kvvfk28fcjc0mt")

    ``session``: an :class:`aiohttp.ClientSession` to borrow (it is never
    closed by aioims); otherwise one is created on enter and closed on exit.
    ``timeout`` (seconds, per attempt) and ``retry`` are defaults that every
    endpoint coroutine can override with its own ``timeout=``/``retry=``.
    TLS certificates are verified unless ``verify_ssl=False``; ``ca_bundle``
    is a PEM file of extra trusted CAs (read once, on enter, off the loop).
    ``defaults``: the tenant/department/resource-group ids that
    :meth:`create_private_image`, :meth:`upload_image`, :meth:`import_image`
    and :meth:`copy_shared_image` use when a call leaves them out
    (a :class:`~aioims.TenantDefaults` or a mapping; :meth:`from_env` reads
    them from ``IMS_TENANT_ID``/... or the profile).
    """

    def __init__(
        self,
        endpoint: str,
        region: str,
        *,
        auth: Auth | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        verify_ssl: bool = True,
        ca_bundle: str | None = None,
        user_agent: str | None = None,
        defaults: TenantDefaults | Mapping[str, str | None] | None = None,
    ) -> None:
        if auth is not None and not isinstance(auth, Auth):
            raise TypeError("auth must have an async apply(request) method")
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError("session must be an aiohttp.ClientSession")
        self._settings = Settings(
            endpoint=endpoint,
            region=region,
            timeout=_check_timeout(timeout),
            retry=retry if retry is not None else RetryPolicy(),
            verify_ssl=verify_ssl,
            ca_bundle=ca_bundle,
            user_agent=user_agent or USER_AGENT,
        )
        self._base_url = self._settings.base_url
        self._auth = auth
        self._borrowed = session
        self._shared = _Shared()
        self._timeout = self._settings.timeout
        self._retry = self._settings.retry
        self._defaults = TenantDefaults.coerce(defaults)
        # One entry per active ``async with`` on this object: did it open?
        self._entered: list[bool] = []

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        profile: str | None = None,
        auth: Auth | None = None,
        session: aiohttp.ClientSession | None = None,
        **overrides: Any,
    ) -> IMSSession:
        """Build a session from the configuration: ``overrides`` (keyword
        values such as ``timeout=5``, ``tenant_id=...``) > ``IMS_*``
        environment variables (``environ``, default ``os.environ``) > the
        ``profile`` (default ``IMS_PROFILE``, else ``default``) of
        ``~/.config/aioims/config.toml``.  See :mod:`aioims.settings` and
        ``docs/configuration.md``.  ``IMS_TOKEN`` becomes
        ``HeaderAuth.bearer(token)`` unless ``auth`` is given; the tenant ids
        become :attr:`defaults`.  Missing endpoint/region or bad values raise
        :class:`~aioims.ValidationError` naming the variable."""
        from .settings import resolve

        settings = resolve(overrides, environ, profile=profile)
        if auth is None and settings.token:
            auth = HeaderAuth.bearer(settings.token)
        return cls(**settings.session_kwargs(), auth=auth, session=session)

    # -- options -------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The API root, e.g. ``https://host/api/image/v1``."""
        return self._base_url

    @property
    def region(self) -> str:
        return self._settings.region

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    def retry(self) -> RetryPolicy:
        return self._retry

    @property
    def defaults(self) -> TenantDefaults:
        """Tenant/department/resource-group ids used when a call leaves them out."""
        return self._defaults

    @property
    def closed(self) -> bool:
        return self._shared.transport is None

    @property
    def http_session(self) -> aiohttp.ClientSession:
        """The aiohttp session in use (only while open)."""
        return self._open_transport().http

    def with_options(
        self, *, timeout: float | None = None, retry: RetryPolicy | None = None
    ) -> IMSSession:
        """A view with other defaults that shares this session's HTTP
        connection pool (closing the view does not close the session)."""
        view = copy.copy(self)
        view._entered = []
        if timeout is not None:
            view._timeout = _check_timeout(timeout)
        if retry is not None:
            if not isinstance(retry, RetryPolicy):
                raise ValidationError("retry must be a RetryPolicy", field="retry")
            view._retry = retry
        return view

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return (
            f"IMSSession(endpoint={self._base_url!r}, region={self.region!r}, "
            f"timeout={self._timeout}, auth={self._auth!r}, {state})"
        )

    # -- lifecycle -----------------------------------------------------------

    async def _ssl_option(self) -> SSLOption:
        if not self._settings.verify_ssl:
            return False
        if self._settings.ca_bundle is None:
            return True
        make = functools.partial(ssl.create_default_context, cafile=self._settings.ca_bundle)
        try:
            return await anyio.to_thread.run_sync(make)
        except (OSError, ssl.SSLError) as exc:
            raise ValidationError(
                f"cannot load CA bundle {self._settings.ca_bundle!r}: {exc}", field="ca_bundle"
            ) from exc

    async def open(self) -> IMSSession:
        """Open the session (``async with`` does this for you)."""
        shared = self._shared
        if shared.transport is not None:
            return self
        ssl_option = await self._ssl_option()
        if self._borrowed is not None:
            if self._borrowed.closed:
                raise RuntimeError("the borrowed aiohttp.ClientSession is closed")
            http, owned = self._borrowed, False
        else:
            connector = aiohttp.TCPConnector(ssl=ssl_option)
            http = aiohttp.ClientSession(connector=connector)
            owned = True
        shared.http, shared.owned = http, owned
        shared.transport = Transport(http, auth=self._auth, ssl=ssl_option)
        return self

    async def close(self) -> None:
        """Close the HTTP session if this object created it (never a borrowed one)."""
        shared = self._shared
        http, owned = shared.http, shared.owned
        shared.transport, shared.http, shared.owned = None, None, False
        if http is not None and owned:
            await http.close()

    async def __aenter__(self) -> IMSSession:
        # Already open (nested ``async with``, or a view of an open session):
        # this block will not close it.
        opens = self._shared.transport is None
        if opens:
            await self.open()
        self._entered.append(opens)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._entered and self._entered.pop():
            await self.close()

    # -- convenience ---------------------------------------------------------------

    async def upload_image(
        self,
        path: str | os.PathLike[str],
        spec: ImageSpec | None = None,
        *,
        config: TransferConfig | None = None,
        progress: ProgressCallback | EventStream | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        image_id: str | None = None,
        delete_on_failure: bool = False,
        **legacy_create_kwargs: Unpack[CreateKwargs],
    ) -> Image:
        """Upload an image file through the whole flow (create, prepare,
        multipart transfer, done, wait, verify) and return the active image;
        see :class:`aioims.uploader.Uploader` and ``docs/uploading.md``.

        ``spec``: the :class:`~aioims.ImageSpec` of the image to create
        (``disk_format``/``min_disk`` left ``None`` are taken from the file,
        tenant ids from :attr:`defaults`); not needed with ``image_id`` (an
        existing ``queued`` image) or a ``checkpoint`` that names the image.
        The spec is checked before anything is sent.

        Deprecated: ``create_private_image`` keyword arguments instead of a
        spec (``upload_image(path, name=..., ...)``); they still work, with a
        :class:`DeprecationWarning`, and override the spec's fields.
        """
        if spec is not None and not isinstance(spec, ImageSpec):
            raise ValidationError(
                f"spec must be an aioims.ImageSpec, got {type(spec).__name__}", field="spec"
            )
        if legacy_create_kwargs:
            warnings.warn(
                "upload_image(path, name=..., ...) is deprecated: pass an "
                "aioims.ImageSpec, upload_image(path, ImageSpec(name=...))",
                DeprecationWarning,
                stacklevel=2,
            )
            extra = dict(legacy_create_kwargs)
            spec = spec.replace(**extra) if spec is not None else ImageSpec.from_mapping(extra)
        if spec is not None:
            spec = spec.with_defaults(self._defaults)
        if spec is not None and image_id is None:
            spec.to_create_kwargs()  # tenant/department present? (raises before any I/O)
            if spec.disk_format is None or spec.min_disk is None:
                spec = await anyio.to_thread.run_sync(spec.for_file, path)
        from .uploader import Uploader  # imported lazily: pulls in aiobotocore

        uploader = Uploader(
            self, config=config, progress=progress, delete_on_failure=delete_on_failure
        )
        return await _run_uploader(uploader, path, spec, image_id=image_id, checkpoint=checkpoint)

    # -- plumbing used by the endpoint mixins ------------------------------------

    def _open_transport(self) -> Transport:
        transport = self._shared.transport
        if transport is None:
            raise RuntimeError(
                "IMSSession is not open: use 'async with IMSSession(...) as ims' "
                "or 'await ims.open()'"
            )
        return transport

    def _prepare(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None,
        json_body: Any,
        request_info: bool,
    ) -> PreparedRequest:
        return build_request(
            method,
            self._base_url,
            path,
            region=self._settings.region,
            params=params,
            json_body=json_body,
            request_info=request_info,
            user_agent=self._settings.user_agent,
        )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        request_info: bool = False,
        mode: RetryMode = RetryMode.SAFE,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> Envelope:
        per_call = self._timeout if timeout is None else _check_timeout(timeout)
        transport = self._shared.transport or self._open_transport()
        settings = self._settings
        request = build_request(
            method,
            self._base_url,
            path,
            region=settings.region,
            params=params,
            json_body=json_body,
            request_info=request_info,
            user_agent=settings.user_agent,
        )
        return await transport.send(
            request, timeout=per_call, retry=retry or self._retry, mode=mode
        )

    @asynccontextmanager
    async def _stream(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        request_info: bool = False,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> AsyncIterator[StreamResponse]:
        """Open a streamed response of an API path (for downloads, resumable
        ones included: pass ``headers={"Range": "bytes=N-"}``; 200 and 206
        are accepted).  Errors and JSON envelopes raise the mapped error."""
        per_call = self._timeout if timeout is None else _check_timeout(timeout)
        transport = self._open_transport()
        request = self._prepare(
            method, path, params=params, json_body=None, request_info=request_info
        )
        request.headers["Accept"] = "*/*"
        if headers:
            request.headers.update(headers)
        async with transport.stream(
            request, timeout=per_call, retry=retry or self._retry
        ) as response:
            yield response


def _uploader_takes_spec(uploader: Uploader) -> bool:
    """Whether ``Uploader.upload`` takes ``(path, spec, ...)`` (the new entry
    point) rather than only ``create_private_image`` keyword arguments."""
    try:
        parameters = list(inspect.signature(uploader.upload).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover
        return False
    return len(parameters) > 1 and parameters[1].kind in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    )


async def _run_uploader(
    uploader: Uploader,
    path: str | os.PathLike[str],
    spec: ImageSpec | None,
    *,
    image_id: str | None,
    checkpoint: str | os.PathLike[str] | None,
) -> Image:
    """Call ``Uploader.upload(path, spec, image_id=..., checkpoint=...)``; while
    the uploader still takes ``**create_kwargs`` only, pass the spec as those."""
    upload: Any = uploader.upload
    if spec is not None and image_id is not None:
        try:  # the spec is not needed to upload into an existing image
            spec.to_create_kwargs()
        except ValidationError:
            spec = None
    if _uploader_takes_spec(uploader):
        result = await upload(path, spec, image_id=image_id, checkpoint=checkpoint)
    else:
        kwargs = spec.to_create_kwargs() if spec is not None and image_id is None else {}
        result = await upload(path, image_id=image_id, checkpoint=checkpoint, **kwargs)
    assert isinstance(result, Image)
    return result
