"""A sample disk image for ``aioims demo``: a valid qcow2 (version 3) file.

The file is exactly the requested size (rounded up to the 64 KiB cluster): a
header cluster, a refcount table, refcount blocks, the L1 table and L2 tables,
then data clusters, all allocated, so ``qemu-img check`` finds a consistent
image whose virtual disk is filled with pseudo-random data.  Writing is
sequential and fast (one random 1 MiB block, varied per chunk); call
:func:`write_sample_image` in a worker thread.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from pathlib import Path

CLUSTER_BITS = 16
CLUSTER = 1 << CLUSTER_BITS  # 64 KiB
REFCOUNT_ORDER = 4  # 16-bit refcounts
REFCOUNTS_PER_BLOCK = CLUSTER * 8 // (1 << REFCOUNT_ORDER)  # 32768
L2_ENTRIES = CLUSTER // 8  # 8192
COPIED = 1 << 63  # QCOW_OFLAG_COPIED: refcount is exactly 1
HEADER_LENGTH = 104
MIN_SIZE = 8 * CLUSTER

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.I)


def parse_size(text: str) -> int:
    """``"64M"`` -> 67108864; K/M/G/T are binary (KiB, MiB, ...); plain = bytes."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (examples: 8M, 256M, 1G, 1048576)")
    number, unit = float(match.group(1)), match.group(2).lower()
    factor = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[unit]
    return int(number * factor)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _layout(total_clusters: int) -> tuple[int, int, int, int, int]:
    """Split *total_clusters* into (refcount table clusters, refcount blocks,
    L1 clusters, L2 tables, data clusters)."""
    data = total_clusters
    for _ in range(64):
        l2 = _ceil_div(data, L2_ENTRIES)
        l1 = _ceil_div(l2 * 8, CLUSTER)
        rb = _ceil_div(total_clusters, REFCOUNTS_PER_BLOCK)
        rt = _ceil_div(rb * 8, CLUSTER)
        new_data = total_clusters - 1 - rt - rb - l1 - l2
        if new_data == data:
            break
        data = new_data
    return rt, rb, l1, l2, data


def qcow2_metadata(file_size: int) -> tuple[bytes, int, int]:
    """The metadata clusters of a fully allocated qcow2 image of *file_size*
    bytes: returns (metadata bytes, number of data clusters, virtual size)."""
    total = _ceil_div(max(file_size, MIN_SIZE), CLUSTER)
    rt, rb, l1_clusters, l2_count, data = _layout(total)
    rt_offset = CLUSTER
    rb_offset = rt_offset + rt * CLUSTER
    l1_offset = rb_offset + rb * CLUSTER
    l2_offset = l1_offset + l1_clusters * CLUSTER
    data_offset = l2_offset + l2_count * CLUSTER
    virtual_size = data * CLUSTER

    header = struct.pack(
        ">4sIQIIQIIQQIIQQQQII",
        b"QFI\xfb",
        3,  # version
        0,  # backing_file_offset
        0,  # backing_file_size
        CLUSTER_BITS,
        virtual_size,
        0,  # crypt_method
        l2_count,  # l1_size (entries)
        l1_offset,
        rt_offset,
        rt,  # refcount_table_clusters
        0,  # nb_snapshots
        0,  # snapshots_offset
        0,  # incompatible_features
        0,  # compatible_features
        0,  # autoclear_features
        REFCOUNT_ORDER,
        HEADER_LENGTH,
    )
    assert len(header) == HEADER_LENGTH
    header += struct.pack(">II", 0, 0)  # end of header extensions
    out = bytearray(data_offset)
    out[: len(header)] = header
    # refcount table -> refcount blocks
    for i in range(rb):
        struct.pack_into(">Q", out, rt_offset + 8 * i, rb_offset + i * CLUSTER)
    # refcount blocks: every cluster of the file is used once
    struct.pack_into(f">{total}H", out, rb_offset, *([1] * total))
    # L1 -> L2 tables
    for i in range(l2_count):
        struct.pack_into(">Q", out, l1_offset + 8 * i, (l2_offset + i * CLUSTER) | COPIED)
    # L2 -> data clusters (contiguous)
    offsets = [(data_offset + i * CLUSTER) | COPIED for i in range(data)]
    struct.pack_into(f">{data}Q", out, l2_offset, *offsets)
    return bytes(out), data, virtual_size


def write_sample_image(path: Path, size: int, *, qcow2: bool = True) -> tuple[int, str]:
    """Write the sample image; returns (bytes written, MD5 hex).  Blocking."""
    md5 = hashlib.md5(usedforsecurity=False)
    block = os.urandom(1 << 20)
    written = 0
    with open(path, "wb") as fh:
        if qcow2:
            meta, data_clusters, _ = qcow2_metadata(size)
            fh.write(meta)
            md5.update(meta)
            written = len(meta)
            remaining = data_clusters * CLUSTER
        else:
            remaining = size
        counter = 0
        while remaining > 0:
            chunk_len = min(len(block), remaining)
            prefix = counter.to_bytes(16, "big")
            chunk = prefix + block[16:chunk_len] if chunk_len > 16 else block[:chunk_len]
            fh.write(chunk)
            md5.update(chunk)
            written += chunk_len
            remaining -= chunk_len
            counter += 1
    return written, md5.hexdigest()


def md5_file(path: Path, chunk: int = 1 << 20) -> str:
    """MD5 of a file (blocking; run it in a thread)."""
    md5 = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while True:
            data = fh.read(chunk)
            if not data:
                break
            md5.update(data)
    return md5.hexdigest()
