"""The demo's sample image: a consistent, fully allocated qcow2 v3 file."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from aioims.cli.sample import CLUSTER, md5_file, parse_size, write_sample_image


@pytest.mark.parametrize(
    ("text", "value"),
    [("8M", 8 << 20), ("256M", 256 << 20), ("1G", 1 << 30), ("64MiB", 64 << 20),
     ("1048576", 1 << 20), ("1.5G", 3 << 29), ("512k", 512 << 10)],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("bad", ["", "M", "12Q", "-1M", "1 2M"])
def test_parse_size_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


def _check_qcow2(path: Path) -> int:
    """Walk the qcow2 structures like a reader would; return the virtual size."""
    data = path.read_bytes()
    (magic, version, _bfo, _bfs, cluster_bits, virtual, crypt, l1_size, l1_off, rt_off,
     rt_clusters, nb_snap, _so, incompat, _compat, _autoclear, refcount_order,
     header_len) = struct.unpack_from(">4sIQIIQIIQQIIQQQQII", data)
    assert (magic, version, crypt, nb_snap, incompat) == (b"QFI\xfb", 3, 0, 0, 0)
    assert header_len == 104 and refcount_order == 4
    cluster = 1 << cluster_bits
    assert len(data) % cluster == 0
    used: dict[int, int] = {0: 1}

    def mark(offset: int) -> None:
        assert offset % cluster == 0 and offset < len(data)
        used[offset // cluster] = used.get(offset // cluster, 0) + 1

    for i in range(rt_clusters):
        mark(rt_off + i * cluster)
    refcounts: dict[int, int] = {}
    for i in range(rt_clusters * cluster // 8):
        (rb,) = struct.unpack_from(">Q", data, rt_off + 8 * i)
        if rb:
            mark(rb)
            for j in range(cluster // 2):
                (count,) = struct.unpack_from(">H", data, rb + 2 * j)
                if count:
                    refcounts[i * (cluster // 2) + j] = count
    for i in range(-(-l1_size * 8 // cluster)):
        mark(l1_off + i * cluster)
    mapped = 0
    for i in range(l1_size):
        (l2,) = struct.unpack_from(">Q", data, l1_off + 8 * i)
        l2 &= (1 << 62) - 1 - 0x1FF
        if not l2:
            continue
        mark(l2)
        for j in range(cluster // 8):
            (entry,) = struct.unpack_from(">Q", data, l2 + 8 * j)
            offset = entry & ((1 << 56) - 1) & ~0x1FF
            if offset:
                assert entry >> 63 == 1  # COPIED: refcount 1
                mark(offset)
                mapped += 1
    assert used == refcounts, "refcounts must match the clusters in use"
    assert mapped * cluster == virtual
    return int(virtual)


@pytest.mark.parametrize("size", ["1M", "8M", "33M"])
def test_sample_is_consistent_qcow2(tmp_path: Path, size: str) -> None:
    path = tmp_path / "s.qcow2"
    written, md5 = write_sample_image(path, parse_size(size))
    assert written == path.stat().st_size == parse_size(size)
    assert md5 == md5_file(path)
    virtual = _check_qcow2(path)
    assert virtual > written - 8 * CLUSTER
    if shutil.which("qemu-img"):
        subprocess.run(["qemu-img", "check", str(path)], check=True, capture_output=True)


def test_samples_differ_between_runs(tmp_path: Path) -> None:
    a = write_sample_image(tmp_path / "a", 1 << 20)[1]
    b = write_sample_image(tmp_path / "b", 1 << 20)[1]
    assert a != b


def test_raw_sample(tmp_path: Path) -> None:
    written, _ = write_sample_image(tmp_path / "r.raw", 3 << 20, qcow2=False)
    assert written == 3 << 20
