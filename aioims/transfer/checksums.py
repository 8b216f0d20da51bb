"""Per-part integrity: Content-MD5 or CRC32C, and the per-endpoint probe.

``TransferConfig.part_checksum`` picks what protects each part on the wire:

* ``"md5"`` — ``Content-MD5`` (every S3 server checks it; MD5 costs about
  1.6 CPU-s/GiB);
* ``"crc32c"`` — ``x-amz-checksum-crc32c`` (S3 checks it since 2022, Ceph
  RGW only from Squid; 10–20× cheaper than MD5 with google-crc32c);
* ``"auto"`` — CRC32C where the endpoint rejects a wrong one (the probe,
  :meth:`aioims.transfer._engine.Engine.probe_crc32c`, once per endpoint
  URL), else Content-MD5;
* ``None`` — nothing per part.

The driver decides the kind (``Driver._checksum_kind``: the one rule, which
also lets a resumed upload's declared algorithm win), calls
:func:`part_checksum_params` for each part buffer and passes the result to
``UploadPart``/``PutObject`` as keyword arguments.  A CRC32C multipart upload
is declared so (``CreateMultipartUpload(ChecksumAlgorithm="CRC32C")``) and
completed with every part's ``ChecksumCRC32C``: AWS refuses either half
alone.  botocore (>= 1.36, with ``request_checksum_calculation="when_required"``
as aioims sets it) sends a ``ChecksumCRC32C`` given by the caller as the
``x-amz-checksum-crc32c`` header as-is: it computes nothing, adds no trailer
and does not switch to ``aws-chunked`` (checked by ``tests/e2e/test_sender.py``).

CRC32C implementation: ``google-crc32c`` (C, hardware CRC instruction; the
``aioims[crc32c]`` extra) when installed, else a pure-Python table
(correct, but ~1,000× slower: ``"auto"`` then chooses Content-MD5).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

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
    (by the driver).  Runs where it is called: call it from
    the worker thread that reads the part."""
    if kind is None:
        return {}
    if kind == "md5":
        return {"ContentMD5": md5_b64(view)}
    if kind == "crc32c":
        return {"ChecksumCRC32C": crc32c_b64(view)}
    raise ValueError(f"part checksum {kind!r} must be resolved to 'md5', 'crc32c' or None")


# --------------------------------------------------------------------------
# The per-endpoint probe (sent by Engine.probe_crc32c, through Engine.call)

#: The ``ChecksumAlgorithm`` a CRC32C multipart upload is created with (and
#: ListParts reports for it).
CRC32C_ALGORITHM = "CRC32C"

#: What the probe writes: 20 bytes, sent with a deliberately wrong CRC32C.
PROBE_BODY = b"aioims crc32c probe\n"
#: The ETag of the probe object an endpoint that ignores CRC32C keeps (until
#: the upload overwrites it): never taken for an upload's object.
PROBE_ETAG = '"' + hashlib.md5(PROBE_BODY, usedforsecurity=False).hexdigest() + '"'
#: Error codes meaning "the checksum did not match" (AWS, MinIO, Ceph Squid+).
CHECKSUM_MISMATCH_CODES = frozenset(
    {"BadDigest", "XAmzContentChecksumMismatch", "InvalidDigest", "InvalidChecksum"}
)

#: endpoint URL -> whether it rejects a wrong x-amz-checksum-crc32c.
_honours: dict[str, bool] = {}


def probe_crc32c_value() -> str:
    """The deliberately wrong ``x-amz-checksum-crc32c`` the probe sends."""
    return base64.b64encode((crc32c(PROBE_BODY) ^ 0x5A5A5A5A).to_bytes(4, "big")).decode()


def forget_probes() -> None:
    """Clear the per-endpoint cache (tests)."""
    _honours.clear()


def cached_probe(endpoint_url: str) -> bool | None:
    """What the probe found for ``endpoint_url`` (None: not probed, or the
    answer was ambiguous)."""
    return _honours.get(endpoint_url)


def remember_probe(endpoint_url: str, honoured: bool) -> None:
    """Cache a clear probe answer for the process."""
    _honours[endpoint_url] = honoured
