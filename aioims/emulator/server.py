"""The in-process emulator: :class:`Emulator` wires the store, the S3 backend
(embedded moto or external), the optional S3 front, the worker and the web
application, and runs them on a loopback port."""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from aiohttp import web

from ..models import ImageStatus
from .app import build_app
from .context import Services
from .faults import FaultInjector
from .identity import DEFAULT_USERS, Directory, User, load_users_file
from .s3auth import check_lifetime
from .s3front import S3Front
from .s3server import EmbeddedS3
from .storage import Storage
from .store import Store
from .worker import Worker

log = logging.getLogger("aioims.emulator")

READY_PREFIX = "IMS emulator ready at "
DB_NAME = "ims.sqlite3"


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # another host name, or "" (every interface)


def exposure_warning(host: str) -> str:
    return (
        f"\n{'!' * 78}\n"
        f"!! The IMS emulator listens on {host!r}, not on a loopback address.\n"
        "!! Anyone who can reach this machine can use its API, its S3 front and its\n"
        "!! admin API (/_emulator/: faults, users with their tokens, reset).\n"
        "!! It is a test double with well-known tokens: do not expose it to a network\n"
        "!! you do not trust; pass --admin-token to protect the admin API.\n"
        f"{'!' * 78}"
    )


class Emulator:
    """The IMS emulator, in-process::

        async with Emulator(tmp_path) as emu:
            emu.url        # http://127.0.0.1:PORT (the service root)
            emu.s3_url     # the backing S3 server
            emu.users      # {"alice": User(...), ...}
            emu.faults     # FaultInjector (same as POST /_emulator/faults)

    ``s3_endpoint=None`` starts the embedded moto S3 (objects live only while
    it runs); otherwise that S3-compatible server is used with the given keys.
    ``s3_front=True`` puts the fault-injecting S3 front
    (:class:`~aioims.emulator.s3front.S3Front`) in front of it;
    ``upload-prepare`` then hands out the front's URL and short-lived
    credentials (``credential_lifetime`` seconds).
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        s3_endpoint: str | None = None,
        s3_access_key: str = "testing",
        s3_secret_key: str = "testing",  # noqa: S107 - moto's dummy key
        s3_region: str = "us-east-1",
        s3_front: bool = True,
        credential_lifetime: float = 3600.0,
        config: str | Path | None = None,
        users: Iterable[User] = (),
        faults: Mapping[str, Any] | str | Path | None = None,
        seed: int | None = None,
        access_log: bool = False,
        admin_token: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.s3_endpoint = s3_endpoint
        self.s3_access_key = s3_access_key
        self.s3_secret_key = s3_secret_key
        self.s3_region = s3_region
        self.use_front = s3_front
        self.credential_lifetime = check_lifetime(credential_lifetime)
        self.config = config
        self.extra_users = list(users)
        self.faults = FaultInjector(seed)
        self._fault_config = faults
        self.access_log = access_log
        if admin_token is not None and not admin_token:
            raise ValueError("admin_token must not be empty")
        self.admin_token = admin_token
        self._initial_users: list[User] = []
        self._reset_lock = anyio.Lock()
        self._http: aiohttp.ClientSession | None = None
        self.url = ""
        self.s3_url = ""
        self.front_url: str | None = None
        self.services: Services | None = None
        self._embedded: EmbeddedS3 | None = None
        self._front: S3Front | None = None
        self._storage: Storage | None = None
        self._store: Store | None = None
        self._worker: Worker | None = None
        self._runner: web.AppRunner | None = None

    # --- properties ---------------------------------------------------------------

    @property
    def users(self) -> dict[str, User]:
        """Known users by user name."""
        if self.services is None:
            return {}
        return {user.user_name: user for user in self.services.users.all()}

    @property
    def front(self) -> S3Front | None:
        """The S3 front (None with ``s3_front=False`` or before start)."""
        return self._front

    @property
    def storage(self) -> Storage | None:
        """The emulator's own S3 client (the backend's keys; admin use)."""
        return self._storage

    @property
    def upload_domain(self) -> str:
        return self.services.upload_domain if self.services is not None else ""

    @property
    def lost(self) -> set[str]:
        return self.services.lost if self.services is not None else set()

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> str:
        try:
            return await self._start()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.stop()
            raise

    async def _start(self) -> str:
        if not is_loopback(self.host):
            log.warning("%s", exposure_warning(self.host))
        if self._fault_config is not None:
            if isinstance(self._fault_config, Mapping):
                self.faults.configure(self._fault_config)
            else:
                self.faults.load_file(self._fault_config)
        self._store = store = Store(self.data_dir / DB_NAME)
        await store.open()
        directory = await self._load_users(store)

        if self.s3_endpoint is None:
            self._embedded = EmbeddedS3()
            self.s3_url = await self._embedded.start()
        else:
            self.s3_url = self.s3_endpoint.rstrip("/")
        self._storage = storage = Storage(
            self.s3_url, self.s3_access_key, self.s3_secret_key, self.s3_region
        )
        await storage.start()

        if self.use_front:
            public = self.host in ("0.0.0.0", "::", "")  # noqa: S104
            self._front = S3Front(
                self.s3_url,
                upstream_access_key=self.s3_access_key,
                upstream_secret_key=self.s3_secret_key,
                upstream_region=self.s3_region,
                host=self.host if not public else "127.0.0.1",
                port=0,
            )
            self.front_url = (await self._front.start()).rstrip("/")

        self._worker = worker = Worker()
        self.services = services = Services(
            store=store,
            storage=storage,
            users=directory,
            faults=self.faults,
            worker=worker,
            front=self._front,
            upload_domain=self.front_url or self.s3_url,
            credential_lifetime=self.credential_lifetime,
            reset_hook=self.reset,
            admin_token=self.admin_token,
        )
        worker.services = services
        await self._check_files(services)
        await worker.resume()

        self._runner = web.AppRunner(
            build_app(services),
            access_log=log if self.access_log else None,
            shutdown_timeout=5.0,
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        if ":" in shown:
            shown = f"[{shown}]"
        self.url = f"http://{shown}:{self.port}"
        return self.url

    async def _load_users(self, store: Store) -> Directory:
        initial: dict[str, User] = {user.token: user for user in DEFAULT_USERS}
        if self.config is not None:
            for user in load_users_file(self.config):
                initial[user.token] = user
        for user in self.extra_users:
            initial[user.token] = user
        self._initial_users = list(initial.values())
        users: dict[str, User] = {user.token: user for user in DEFAULT_USERS}
        for user in await store.load_users():
            users[user.token] = user
        users.update(initial)
        directory = Directory(users.values())
        await store.upsert_users(directory.all())
        return directory

    async def _check_files(self, services: Services) -> None:
        """Find active images whose file is gone (e.g. the embedded S3 was
        restarted): they stay listed, but downloads answer DownloadNotAllowed."""
        records = await services.store.images_in_status(ImageStatus.ACTIVE.value)
        limiter = anyio.CapacityLimiter(16)

        async def check(image_id: str, bucket: str, key: str) -> None:
            async with limiter:
                if await services.storage.head(bucket, key) is None:
                    services.lost.add(image_id)

        async with anyio.create_task_group() as group:
            for record in records:
                group.start_soon(check, record.image_id, record.bucket, record.object_key)
        if services.lost:
            log.warning(
                "%d active image(s) lost their file (the embedded S3 keeps objects only while "
                "it runs); downloads of them answer IMG.OperationFailed.DownloadNotAllowed: %s",
                len(services.lost),
                ", ".join(sorted(services.lost)),
            )

    async def reset(self) -> float:
        """Back to a clean account, cheaply (``POST /_emulator/reset``): every
        running background job cancelled; every image, share and record deleted
        (row ids start at 1 again); the users those given at start (defaults,
        ``config``, ``users``: users added later are gone); IMS faults cleared
        (seed back to the one given at start, no activate delay); the S3
        front's rules and statistics cleared and every credential it issued
        revoked; the credential lifetime back to ``credential_lifetime``; and
        the storage emptied with the emulator's own handles -- the embedded S3
        is wiped in one call, on an external one every object and multipart
        upload of the emulator's buckets (``iaas-image-*``, ``ims-export-*``)
        is deleted.  Meant for test harnesses between tests: call it while no
        request is in flight.  Returns the seconds it took."""
        services, worker = self.services, self._worker
        if services is None or worker is None:
            raise RuntimeError("the emulator is not running")
        started = time.perf_counter()
        async with self._reset_lock:
            await worker.cancel_all()
            self.faults.reset()
            if self._front is not None:
                self._front.reset()
            services.credential_lifetime = self.credential_lifetime
            services.lost.clear()
            users = list(self._initial_users)
            await services.store.reset(users)
            services.users.replace(users)
            if self._embedded is not None:
                await self._wipe_embedded()
                services.storage.forget_buckets()
            else:
                await services.storage.empty_emulator_buckets()
        took = time.perf_counter() - started
        log.info("emulator reset in %.1f ms", took * 1000)
        return took

    async def _wipe_embedded(self) -> None:
        """Wipe the embedded moto server (ours alone) through its own admin
        endpoint -- reached directly, never through the S3 front."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        async with self._http.post(f"{self.s3_url}/moto-api/reset") as answer:
            if answer.status != 200:
                raise RuntimeError(f"resetting the embedded S3 answered HTTP {answer.status}")
            await answer.read()

    async def stop(self) -> None:
        with anyio.CancelScope(shield=True):
            http, self._http = self._http, None
            if http is not None:
                await http.close()
            runner, self._runner = self._runner, None
            if runner is not None:
                await runner.cleanup()
            worker, self._worker = self._worker, None
            if worker is not None:
                await worker.shutdown()
            front, self._front = self._front, None
            if front is not None:
                await front.stop()
            storage, self._storage = self._storage, None
            if storage is not None:
                await storage.close()
            embedded, self._embedded = self._embedded, None
            if embedded is not None:
                await embedded.stop()
            store, self._store = self._store, None
            if store is not None:
                await store.close()

    async def wait_idle(self) -> None:
        """Wait until no background job runs (handy in tests)."""
        if self._worker is not None:
            await self._worker.idle()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
