"""Per-part integrity: Content-MD5 or CRC32C, and the per-endpoint probe.

``TransferConfig.part_checksum`` picks what protects each part on the wire:

* ``"md5"`` — ``Content-MD5`` (every S3 server checks it; MD5 costs about
  1.6 CPU-s/GiB);
* ``"crc32c"`` — ``x-amz-checksum-crc32c`` (S3 checks it since 2022, Ceph
  RGW only from Squid; 10–20× cheaper than MD5 with google-crc32c);
* ``"auto"`` — CRC32C where :func:`endpoint_honours_crc32c` says the
  endpoint rejects a wrong one, else Content-MD5;
* ``None`` — nothing per part.

The driver calls :func:`part_checksum_params` for each part buffer and passes
the result to ``UploadPart``/``PutObject`` as keyword arguments.  botocore
(>= 1.36, with ``request_checksum_calculation="when_required"`` as aioims
sets it) sends a ``ChecksumCRC32C`` given by the caller as the
``x-amz-checksum-crc32c`` header as-is: it computes nothing, adds no trailer
and does not switch to ``aws-chunked`` (checked by ``tests/e2e/test_checksums.py``).

CRC32C implementation: ``google-crc32c`` (C, hardware CRC instruction; the
``aioims[crc32c]`` extra) when installed, else a pure-Python table
(correct, but ~1,000× slower: ``"auto"`` then chooses Content-MD5).
"""

from __future__ import annotations

import base64
import hashlib
import logging
from typing import Any

logger = logging.getLogger("aioims.transfer")

#: google-crc32c accepts only read-only ``bytes``: views are fed in copies of
#: this size (cache-sized, so the copy costs little next to the CRC).
_CRC_SLICE = 256 * 1024

_google_crc32c: Any
_FAST: bool
try:  # pragma: no branch
    import google_crc32c as _google_crc32c

    _FAST = bool(_google_crc32c.implementation == "c")
except ImportError:  # pragma: no cover - depends on the environment
    _google_crc32c = None
    _FAST = False

#: Which CRC32C implementation is in use.
CRC32C_IMPLEMENTATION = (
    "google-crc32c" if _FAST else ("google-crc32c (python)" if _google_crc32c else "python")
)


def _make_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _make_table()


def _crc32c_python(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    crc = value ^ 0xFFFFFFFF
    table = _TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC32C (Castagnoli) of ``data``, continuing from ``value``."""
    if _google_crc32c is None:
        return _crc32c_python(data, value)
    if isinstance(data, bytes):
        return int(_google_crc32c.extend(value, data))
    view = memoryview(data).cast("B")
    crc = value
    for start in range(0, len(view), _CRC_SLICE):
        crc = _google_crc32c.extend(crc, bytes(view[start : start + _CRC_SLICE]))
    return int(crc)


def crc32c_is_fast() -> bool:
    """True when a native CRC32C is available (``"auto"`` only picks CRC32C then)."""
    return _FAST


def crc32c_b64(data: bytes | bytearray | memoryview) -> str:
    """The ``x-amz-checksum-crc32c`` value of ``data`` (base64 of the big-endian CRC)."""
    return base64.b64encode(crc32c(data).to_bytes(4, "big")).decode("ascii")


def md5_b64(data: bytes | bytearray | memoryview) -> str:
    """The ``Content-MD5`` value of ``data``."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")


def part_checksum_params(kind: str | None, view: bytes | bytearray | memoryview) -> dict[str, str]:
    """``UploadPart``/``PutObject`` keyword arguments protecting ``view``:
    ``{"ContentMD5": ...}`` for ``"md5"``, ``{"ChecksumCRC32C": ...}`` for
    ``"crc32c"``, ``{}`` for ``None``.  ``"auto"`` must be resolved first
    (:func:`resolve_part_checksum`).  Runs where it is called: call it from
    the worker thread that reads the part."""
    if kind is None:
        return {}
    if kind == "md5":
        return {"ContentMD5": md5_b64(view)}
    if kind == "crc32c":
        return {"ChecksumCRC32C": crc32c_b64(view)}
    raise ValueError(f"part checksum {kind!r} must be resolved to 'md5', 'crc32c' or None")


# --------------------------------------------------------------------------
# The per-endpoint probe

_PROBE_BODY = b"aioims crc32c probe\n"
#: Error codes meaning "the checksum did not match" (AWS, MinIO, Ceph Squid+).
CHECKSUM_MISMATCH_CODES = frozenset(
    {"BadDigest", "XAmzContentChecksumMismatch", "InvalidDigest", "InvalidChecksum"}
)

#: endpoint URL -> whether it rejects a wrong x-amz-checksum-crc32c.
_honours: dict[str, bool] = {}


def forget_probes() -> None:
    """Clear the per-endpoint cache (tests)."""
    _honours.clear()


def cached_probe(endpoint_url: str) -> bool | None:
    return _honours.get(endpoint_url)


async def endpoint_honours_crc32c(client: Any, bucket: str, key: str) -> bool:
    """Whether the client's S3 endpoint checks ``x-amz-checksum-crc32c``.

    Once per endpoint URL (cached for the process): a 20-byte ``PutObject``
    to ``bucket``/``key`` with a deliberately wrong CRC32C.  An endpoint that
    honours the header rejects it with a checksum-mismatch error and nothing
    is written; one that ignores it (Ceph before Squid) stores the object —
    it is deleted again right away (best effort; the upload overwrites that
    key anyway, so pass the upload's own key: upload credentials are often
    limited to it).  Any other answer (access denied, a network error...)
    counts as "not honoured" and is not cached, so a later transfer asks again.
    """
    meta = getattr(client, "meta", None)
    url = str(getattr(meta, "endpoint_url", "") or f"client-{id(client)}")
    known = _honours.get(url)
    if known is not None:
        return known
    from botocore.exceptions import ClientError

    wrong = base64.b64encode((crc32c(_PROBE_BODY) ^ 0x5A5A5A5A).to_bytes(4, "big")).decode()
    try:
        await client.put_object(Bucket=bucket, Key=key, Body=_PROBE_BODY, ChecksumCRC32C=wrong)
    except ClientError as exc:
        code = str((exc.response.get("Error") or {}).get("Code") or "")
        if code in CHECKSUM_MISMATCH_CODES:
            _honours[url] = True
            return True
        logger.debug("CRC32C probe on %s: %s; using Content-MD5", url, code or exc)
        return False
    except Exception as exc:  # network trouble: do not cache
        logger.debug("CRC32C probe on %s failed: %s; using Content-MD5", url, exc)
        return False
    _honours[url] = False
    logger.info("%s ignores x-amz-checksum-crc32c: parts carry Content-MD5", url)
    try:
        await client.delete_object(Bucket=bucket, Key=key)
    except Exception as exc:  # best effort: the upload overwrites it
        logger.debug("deleting the CRC32C probe object failed: %s", exc)
    return False


async def resolve_part_checksum(kind: str | None, client: Any, bucket: str, key: str) -> str | None:
    """The per-part checksum to use for ``TransferConfig.part_checksum=kind``:
    ``"auto"`` becomes ``"crc32c"`` when a native CRC32C is installed and the
    endpoint honours it (:func:`endpoint_honours_crc32c`), else ``"md5"``."""
    if kind != "auto":
        return kind
    if not crc32c_is_fast():
        return "md5"
    return "crc32c" if await endpoint_honours_crc32c(client, bucket, key) else "md5"
