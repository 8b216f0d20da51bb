"""One benchmark client run, in its own process (so CPU and RSS are its own).

Run by the harness as ``python benchmarks/client.py '<json spec>'``; prints
one line ``RESULT {json}``.  Only the standard library is imported at the
top: each client imports its library lazily (the aioboto3 client may run
under another interpreter, see ``--aioboto3-python``).

Spec keys: ``client`` (aioims, boto3, aioboto3, obstore, s5cmd, socket, api,
e2e), ``url``, ``bucket``, ``key``, ``file``, ``size`` and client options.

Reported: ``wall`` (s, the timed section only: clients are created and
warmed up with a tiny upload first), ``cpu`` (user+sys of this process, plus
its children for s5cmd, during the timed section), ``rss_mib`` (peak RSS:
VmHWM, or the children's maxrss for s5cmd) and, for asyncio clients, the
event-loop lateness of a 1 ms ticker task beside the upload (``stall_max_ms``,
``stall_p99_ms``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
WARM_SIZE = 1024


def vm_hwm_mib() -> float:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class Meter:
    """Wall and CPU time of a section (this process and its children)."""

    def __init__(self) -> None:
        self.wall = self.cpu = self.cpu_children = 0.0

    def __enter__(self) -> Meter:
        self._r0 = resource.getrusage(resource.RUSAGE_SELF)
        self._c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu = (r1.ru_utime - self._r0.ru_utime) + (r1.ru_stime - self._r0.ru_stime)
        self.cpu_children = (c1.ru_utime - self._c0.ru_utime) + (c1.ru_stime - self._c0.ru_stime)


def _schedstat_reader() -> Any:
    """A function returning the seconds this thread has spent waiting in the
    CPU run queue (Linux schedstat), or None where that is not available."""
    try:
        stat = open(f"/proc/self/task/{threading.get_native_id()}/schedstat", "rb", buffering=0)  # noqa: SIM115
    except OSError:
        return None

    def waited() -> float:
        stat.seek(0)
        return int(stat.read().split()[1]) / 1e9

    return waited


class Ticker:
    """A task sleeping 1 ms in a loop; records how late each wake-up is.

    ``late`` is the raw lateness; ``own`` subtracts the time the loop thread
    sat in the CPU run queue meanwhile (other processes on a shared machine),
    leaving what the process itself caused: work on the loop or waiting for
    the GIL (whose holder may itself be waiting for a CPU); ``cpu`` is the
    CPU time the loop thread used during the tick (work done on the loop).
    While it runs, every callback the loop runs is timed too (CPU time of
    the longest single one: a blocking call or long copy on the loop).
    """

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.late: list[float] = []
        self.own: list[float] = []
        self.cpu: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        clock, interval = time.perf_counter, self.interval
        waited = _schedstat_reader()
        queue = waited() if waited is not None else 0.0
        thread_time = time.thread_time
        while True:
            start, cpu = clock(), thread_time()
            await asyncio.sleep(interval)
            late = clock() - start - interval
            self.late.append(late)
            self.cpu.append(thread_time() - cpu)
            if waited is not None:
                now = waited()
                self.own.append(max(0.0, late - (now - queue)))
                queue = now

    def __enter__(self) -> Ticker:
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._worst_callback = 0.0
        original = self._original = asyncio.events.Handle._run
        thread_time = time.thread_time

        def timed_run(handle: asyncio.Handle) -> None:
            start = thread_time()
            original(handle)
            spent = thread_time() - start
            if spent > self._worst_callback:
                self._worst_callback = spent

        asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.events.Handle._run = self._original  # type: ignore[method-assign]
        if self._task is not None:
            self._task.cancel()

    def summary(self) -> dict[str, float]:
        own = self.own or self.late
        return {
            "stall_max_ms": max(self.late, default=0.0) * 1000,
            "stall_p99_ms": percentile(self.late, 0.99) * 1000,
            "stall_own_max_ms": max(own, default=0.0) * 1000,
            "stall_own_p99_ms": percentile(own, 0.99) * 1000,
            "stall_cpu_max_ms": max(self.cpu, default=0.0) * 1000,
            "stall_cpu_p99_ms": percentile(self.cpu, 0.99) * 1000,
            "worst_callback_cpu_ms": self._worst_callback * 1000,
            "stall_ticks": len(self.late),
        }


class LoopCPU:
    """CPU time of the event-loop thread (the thread entering it) over a section.

    The 1 ms ticker beside the upload costs the loop thread CPU too (a wake-up
    per tick): :meth:`net_of` measures that cost per tick on the idle loop
    right after the section and subtracts it, so ``loop_cpu`` is what the
    upload itself took from the loop (``loop_cpu_raw`` keeps the total)."""

    def __enter__(self) -> LoopCPU:
        self.seconds = 0.0
        self._start = time.thread_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.thread_time() - self._start

    async def net_of(self, ticker: Ticker, ticks: int = 300) -> dict[str, float]:
        idle = Ticker()
        start = time.thread_time()
        with idle:
            while len(idle.late) < ticks:
                await asyncio.sleep(0.01)
        per_tick = (time.thread_time() - start) / max(len(idle.late), 1)
        overhead = per_tick * len(ticker.late)
        return {
            "loop_cpu": max(0.0, self.seconds - overhead),
            "loop_cpu_raw": self.seconds,
            "ticker_cpu_per_tick_us": per_tick * 1e6,
        }


@contextlib.contextmanager
def profiled(spec: dict[str, Any]) -> Iterator[None]:
    """cProfile the timed section when ``spec["profile"]`` names a .pstats file."""
    target = spec.get("profile")
    if not target:
        yield
        return
    import cProfile

    # CPU time of this (the loop's) thread: waits and other threads' work do not count
    profile = cProfile.Profile(time.thread_time)
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        profile.dump_stats(target)


def warm_file(tmp: str) -> str:
    path = os.path.join(tmp, "warm.bin")
    with open(path, "wb") as out:
        out.write(os.urandom(WARM_SIZE))
    return path


# -- clients -------------------------------------------------------------------


async def run_aioims(spec: dict[str, Any], meter: Meter, tmp: str) -> dict[str, Any]:
    from aioims.models.upload import UploadTarget
    from aioims.transfer import TransferConfig, upload_file

    options = dict(spec.get("config", {}))
    if spec.get("ca_file"):
        options["ca_bundle"] = spec["ca_file"]
    config = TransferConfig(**options)
    md5 = bool(spec.get("md5", True))

    def target(key: str) -> UploadTarget:
        return UploadTarget(
            access_key=spec["access_key"],
            secret_key=spec["secret_key"],
            bucket=spec["bucket"],
            file=key,
            domain=spec["url"],
        )

    await upload_file(target(spec["key"] + "-warm"), warm_file(tmp), config=config, md5=md5)
    ticker = Ticker()
    with profiled(spec), meter, ticker, LoopCPU() as loop_cpu:
        result = await upload_file(target(spec["key"]), spec["file"], config=config, md5=md5)
    assert result.size == spec["size"], result
    return {
        **ticker.summary(),
        **(await loop_cpu.net_of(ticker)),
        "part_size": config.part_size,
        "max_concurrency": config.max_concurrency,
        "parts": result.part_count,
        "md5": result.md5,
    }


def _boto_config(spec: dict[str, Any], config_cls: Any) -> Any:
    s3: dict[str, Any] = {"addressing_style": "path"}
    kwargs: dict[str, Any] = {"region_name": spec["region"], "retries": {"max_attempts": 1}}
    if spec.get("tuned"):
        s3["payload_signing_enabled"] = False
        kwargs["request_checksum_calculation"] = "when_required"
        kwargs["response_checksum_validation"] = "when_required"
        kwargs["max_pool_connections"] = spec["max_concurrency"] + 2
    return config_cls(s3=s3, **kwargs)


def _boto_transfer(spec: dict[str, Any]) -> tuple[Any, dict[str, int]]:
    from boto3.s3.transfer import TransferConfig

    if spec.get("tuned"):
        shape = {
            "multipart_chunksize": spec["part_size"],
            "max_concurrency": spec["max_concurrency"],
            "multipart_threshold": spec["part_size"],
        }
        return TransferConfig(**shape), shape
    default = TransferConfig()
    return default, {
        "multipart_chunksize": default.multipart_chunksize,
        "max_concurrency": default.max_request_concurrency,
    }


def _client_kwargs(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "endpoint_url": spec["url"],
        "aws_access_key_id": spec["access_key"],
        "aws_secret_access_key": spec["secret_key"],
        "region_name": spec["region"],
    }


def run_boto3(spec: dict[str, Any], meter: Meter, tmp: str) -> dict[str, Any]:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3", config=_boto_config(spec, Config), verify=spec.get("ca_file"), **_client_kwargs(spec)
    )
    transfer, shape = _boto_transfer(spec)
    client.put_object(Bucket=spec["bucket"], Key=spec["key"] + "-warm", Body=b"x" * WARM_SIZE)
    with profiled(spec), meter:
        client.upload_file(spec["file"], spec["bucket"], spec["key"], Config=transfer)
    client.close()
    return {"part_size": shape["multipart_chunksize"], "max_concurrency": shape["max_concurrency"]}


async def run_aioboto3(spec: dict[str, Any], meter: Meter, tmp: str) -> dict[str, Any]:
    import aioboto3
    from aiobotocore.config import AioConfig

    transfer, shape = _boto_transfer(spec)
    session = aioboto3.Session()
    config = _boto_config(spec, AioConfig)
    async with session.client("s3", config=config, **_client_kwargs(spec)) as client:
        await client.put_object(
            Bucket=spec["bucket"], Key=spec["key"] + "-warm", Body=b"x" * WARM_SIZE
        )
        ticker = Ticker()
        with profiled(spec), meter, ticker:
            await client.upload_file(spec["file"], spec["bucket"], spec["key"], Config=transfer)
    return {
        **ticker.summary(),
        "part_size": shape["multipart_chunksize"],
        "max_concurrency": shape["max_concurrency"],
    }


async def run_obstore(spec: dict[str, Any], meter: Meter, tmp: str) -> dict[str, Any]:
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        spec["bucket"],
        endpoint=spec["url"],
        access_key_id=spec["access_key"],
        secret_access_key=spec["secret_key"],
        region=spec["region"],
        virtual_hosted_style_request=False,
        unsigned_payload=bool(spec.get("tuned")),
        client_options={
            "allow_http": True,
            **(
                {"root_certificate": Path(spec["ca_file"]).read_bytes()}
                if spec.get("ca_file")
                else {}
            ),
        },
    )
    shape = {"chunk_size": 5 * MiB, "max_concurrency": 12}
    if spec.get("tuned"):
        shape = {"chunk_size": spec["part_size"], "max_concurrency": spec["max_concurrency"]}
    await obstore.put_async(store, spec["key"] + "-warm", b"x" * WARM_SIZE)
    ticker = Ticker()
    with profiled(spec), meter, ticker, LoopCPU() as loop_cpu:
        await obstore.put_async(store, spec["key"], Path(spec["file"]), **shape)
    return {
        **ticker.summary(),
        **(await loop_cpu.net_of(ticker)),
        "part_size": shape["chunk_size"],
        "max_concurrency": shape["max_concurrency"],
    }


async def run_sender(spec: dict[str, Any], meter: Meter, tmp: str) -> dict[str, Any]:
    """A minimal multipart driver on aiobotocore, to measure the HTTP session
    alone: ``spec["sender"]`` is ``"thread"`` (aioims' ThreadedSession) or
    ``"aiohttp"`` (aiobotocore's own).  Parts are read with ``preadv`` into
    reused BytesIO buffers in worker threads, checksummed there
    (``spec["part_checksum"]``: md5, crc32c or none), then sent."""
    import io

    from aiobotocore.config import AioConfig
    from aiobotocore.httpsession import AIOHTTPSession
    from aiobotocore.session import get_session

    from aioims.transfer.checksums import part_checksum_params
    from aioims.transfer.sender import ThreadedSession, start_sender_pool

    part_size, concurrency = spec["part_size"], spec["max_concurrency"]
    threaded = spec.get("sender") == "thread"
    if threaded:
        start_sender_pool(concurrency)  # before the loop runs: off the loop
    checksum = spec.get("part_checksum")
    config = AioConfig(
        http_session_cls=ThreadedSession if threaded else AIOHTTPSession,
        region_name=spec["region"],
        s3={"addressing_style": "path", "payload_signing_enabled": False},
        retries={"total_max_attempts": 1, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=concurrency + 2,
    )
    https = spec["url"].startswith("https://")
    verify = spec.get("ca_file") if https else False
    size = spec["size"]
    count = max(1, -(-size // part_size))
    fd = os.open(spec["file"], os.O_RDONLY)

    def read(buffer: io.BytesIO, number: int) -> dict[str, str]:
        offset = (number - 1) * part_size
        length = min(part_size, size - offset)
        buffer.seek(0)
        buffer.truncate(length)
        view = buffer.getbuffer()
        try:
            got = os.preadv(fd, [view], offset)
            assert got == length, (got, length)
            return part_checksum_params(checksum, view)
        finally:
            view.release()

    session = get_session()
    kwargs = _client_kwargs(spec)
    async with session.create_client("s3", config=config, verify=verify, **kwargs) as client:
        await client.put_object(Bucket=spec["bucket"], Key=spec["key"] + "-warm", Body=b"x")
        ticker = Ticker()
        with profiled(spec), meter, ticker, LoopCPU() as loop_cpu:
            upload = await client.create_multipart_upload(Bucket=spec["bucket"], Key=spec["key"])
            numbers = iter(range(1, count + 1))
            etags: dict[int, str] = {}

            async def worker() -> None:
                buffer = io.BytesIO(bytes(part_size))
                for number in numbers:
                    params = await asyncio.to_thread(read, buffer, number)
                    buffer.seek(0)
                    answer = await client.upload_part(
                        Bucket=spec["bucket"], Key=spec["key"], UploadId=upload["UploadId"],
                        PartNumber=number, Body=buffer, **params,
                    )  # fmt: skip
                    etags[number] = answer["ETag"]

            await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
            parts = [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
            await client.complete_multipart_upload(
                Bucket=spec["bucket"], Key=spec["key"], UploadId=upload["UploadId"],
                MultipartUpload={"Parts": parts},
            )  # fmt: skip
        sends = getattr(client._endpoint.http_session, "threaded_sends", None)
    os.close(fd)
    if threaded:
        assert sends == count, (sends, count)
    return {
        **ticker.summary(),
        **(await loop_cpu.net_of(ticker)),
        "part_size": part_size,
        "max_concurrency": concurrency,
        "parts": count,
    }


def s5cmd_binary() -> str | None:
    beside = Path(sys.executable).parent / "s5cmd"
    if beside.exists():
        return str(beside)
    return shutil.which("s5cmd")


def run_s5cmd(spec: dict[str, Any], meter: Meter, tmp: str) -> dict[str, Any]:
    binary = s5cmd_binary()
    if binary is None:
        raise RuntimeError("s5cmd is not installed")
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID=spec["access_key"],
        AWS_SECRET_ACCESS_KEY=spec["secret_key"],
        AWS_REGION=spec["region"],
        AWS_DEFAULT_REGION=spec["region"],
    )
    env.pop("AWS_SESSION_TOKEN", None)
    shape = {"part_size": 50 * MiB, "max_concurrency": 5}  # s5cmd's defaults
    options: list[str] = []
    if spec.get("tuned"):
        shape = {"part_size": spec["part_size"], "max_concurrency": spec["max_concurrency"]}
        options = ["-c", str(shape["max_concurrency"]), "-p", str(shape["part_size"] // MiB)]
    url = f"s3://{spec['bucket']}/{spec['key']}"
    argv = [binary, "--endpoint-url", spec["url"], "cp", *options, spec["file"], url]
    with meter:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"s5cmd failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return {
        **shape,
        "rss_children_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def _answer_complete(answer: bytes) -> bool:
    """An empty-bodied answer is complete (nginx's echo answers chunked)."""
    head, sep, rest = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    return b"chunked" not in head.lower() or rest.endswith(b"0\r\n\r\n")


def run_socket(spec: dict[str, Any], meter: Meter, tmp: str) -> dict[str, Any]:
    """The loopback ceiling: one keep-alive socket sending part-sized PUT
    bodies from memory, one after the other (``spec["part_size"]``, 8 MiB
    by default: the sink keeps bodies up to 32 MiB in memory)."""
    host, _, port = spec["url"].removeprefix("http://").partition(":")
    size = spec["size"]
    part = int(spec.get("part_size") or 8 * MiB)
    block = memoryview(bytes(part))
    with socket.create_connection((host, int(port))) as sock, meter:
        left, number = size, 0
        while left:
            length = min(left, part)
            number += 1
            head = (
                f"PUT /{spec['bucket']}/{spec['key']}?partNumber={number}&uploadId=u HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\nContent-Length: {length}\r\n\r\n"
            )
            sock.sendall(head.encode())
            sock.sendall(block[:length])
            answer = b""
            while not _answer_complete(answer):
                data = sock.recv(65536)
                if not data:
                    raise RuntimeError("the sink closed the connection")
                answer += data
            if not answer.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"sink answered {answer[:80]!r}")
            left -= length
    return {}


ASYNC_CLIENTS = {
    "aioims": run_aioims,
    "aioboto3": run_aioboto3,
    "obstore": run_obstore,
    "sender": run_sender,
}
SYNC_CLIENTS = {"boto3": run_boto3, "s5cmd": run_s5cmd, "socket": run_socket}


def run(spec: dict[str, Any]) -> dict[str, Any]:
    name = spec["client"]
    if spec.get("patches"):
        __import__("experiments").apply(spec["patches"])
    meter = Meter()
    with tempfile.TemporaryDirectory(prefix="aioims-bench-client-") as tmp:
        if name in ("api", "e2e"):
            module = __import__("child_api" if name == "api" else "child_e2e")
            return {**module.run(spec), "rss_mib": vm_hwm_mib()}
        if name in ASYNC_CLIENTS:
            extra = asyncio.run(ASYNC_CLIENTS[name](spec, meter, tmp))
        else:
            extra = SYNC_CLIENTS[name](spec, meter, tmp)
    rss = vm_hwm_mib()
    if name == "s5cmd":
        rss = extra.pop("rss_children_mib")
    return {
        "wall": meter.wall,
        "cpu": meter.cpu + meter.cpu_children,
        "rss_mib": rss,
        **extra,
    }


def main() -> int:
    spec = json.loads(sys.argv[1])
    try:
        result = {"ok": True, **run(spec)}
    except Exception as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:800]}
    print("RESULT " + json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
