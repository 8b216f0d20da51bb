"""The migration manifest: parsing, defaults, ids, shards and the errors
(each naming the entry and the field)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aioims.migrate import ManifestError, load_manifest, parse_manifest
from aioims.migrate.manifest import shard_of

DEFAULTS = {
    "disk_format": "qcow2", "min_disk": 10, "min_ram": 512, "image_type": "os_image",
    "instruction": "64-bits", "cpu_arch": "x86", "os_type": "linux", "platform": "CentOS",
    "visibility": "private", "usage": "ecs", "os_version": "",
}  # fmt: skip

YAML = """
version: 1
sources:
  old:
    endpoint: https://ims-old.example.com
    region: region9
    token_env: OLD_TOKEN
defaults:
  diskFormat: qcow2          # camelCase works too
  min_disk: 10
  min_ram: 512
  image_type: os_image
  instruction: 64-bits
  cpu_arch: x86
  os_type: linux
  platform: CentOS
  visibility: private
  usage: ecs
  os_version: ""
options: {images: 3, parts: 12, bandwidth: 50M, part_size: 16M, attempts: 4}
images:
  - {id: web, name: web, file: images/web.qcow2, min_disk: 40}
  - name: db
    url: "https://files.example.com/db.qcow2?X-Signature=secret"
    md5: 0123456789abcdef0123456789ABCDEF
  - {name: app, ims: {source: old, image_id: img-aaaaaaaaaaaaaa}, retry: {attempts: 1}}
  - {shared: img-share-123}
"""


def manifest(*images: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"defaults": DEFAULTS, "images": list(images), **top}


def error_of(data: Any) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        parse_manifest(data, path=Path("/m/images.yaml"))
    return info.value


def test_yaml_manifest_with_every_kind_of_source(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    path = tmp_path / "images.yaml"
    path.write_text(YAML)
    m = load_manifest(path)
    web, db, app, shared = m.entries
    assert (web.id, web.kind, web.source) == ("web", "file", str(tmp_path / "images/web.qcow2"))
    assert web.metadata["min_disk"] == 40 and web.metadata["disk_format"] == "qcow2"
    assert db.kind == "url" and db.md5 == "0123456789abcdef0123456789abcdef"
    assert db.describe_source() == "url:https://files.example.com/db.qcow2"  # no signature
    assert app.source == {"source": "old", "image_id": "img-aaaaaaaaaaaaaa"}
    assert (app.attempts, web.attempts) == (1, 4)
    assert shared.source == {"share_id": "img-share-123"} and shared.name is None
    assert m.options == {"images": 3, "parts": 12, "bandwidth": 50 * 2**20,
                         "part_size": 16 * 2**20, "attempts": 4}  # fmt: skip
    assert m.sources["old"].token_env == "OLD_TOKEN"
    assert m.sources["old"].resolve_token({"OLD_TOKEN": "t0k"}) == "t0k"
    with pytest.raises(ManifestError, match="OLD_TOKEN is not set"):
        m.sources["old"].resolve_token({})


def test_json_manifest_and_stable_default_ids(tmp_path: Path) -> None:
    data = manifest({"name": "a", "file": "a.img"}, {"name": "b", "file": "b.img"})
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))
    first = load_manifest(path)
    ids = [e.id for e in first.entries]
    assert all(i.startswith("e-") for i in ids) and len(set(ids)) == 2
    # Changing metadata keeps the id (the ledger still finds the entry) ...
    data["images"][0]["min_disk"] = 99
    path.write_text(json.dumps(data))
    assert [e.id for e in load_manifest(path).entries] == ids
    # ... changing the source or the name does not.
    data["images"][0]["file"] = "other.img"
    path.write_text(json.dumps(data))
    assert load_manifest(path).entries[0].id != ids[0]


def test_shards_partition_the_entries() -> None:
    images = [{"name": f"n{i}", "file": f"f{i}"} for i in range(40)]
    m = parse_manifest(manifest(*images))
    shards = [m.shard(i, 3) for i in range(3)]
    ids = sorted(e.id for shard in shards for e in shard)
    assert ids == sorted(e.id for e in m.entries)
    assert all(shards)
    assert all(shard_of(e.id, 3) == i for i, shard in enumerate(shards) for e in shard)


@pytest.mark.parametrize(
    ("images", "top", "entry", "field", "text"),
    [
        ([{"name": "a"}], {}, "images[0]", None, "exactly one source"),
        ([{"name": "a", "file": "x", "url": "http://h/x"}], {}, "images[0]", None,
         "got file, url"),
        ([{"id": "w", "name": "a", "file": "x", "colour": 1}], {}, "w", "colour",
         "unknown field"),
        ([{"id": "w", "name": "a", "file": "x", "disk_format": "vhd"}], {}, "w", "disk_format",
         "raw"),
        ([{"id": "w", "name": " bad", "file": "x"}], {}, "w", "name", ""),
        ([{"id": "w", "file": "x"}], {}, "w", "name", "required"),
        ([{"id": "w", "name": "a", "url": "ftp://h/x"}], {}, "w", "url", "http"),
        ([{"id": "w", "name": "a", "ims": {"source": "nope", "image_id": "img-1"}}], {},
         "w", "ims.source", "unknown source account"),
        ([{"id": "w", "name": "a", "file": "x", "md5": "zz"}], {}, "w", "md5", "32 hex"),
        ([{"id": "w", "name": "a", "file": "x", "retry": {"attempts": 0}}], {}, "w",
         "retry.attempts", "positive"),
        ([{"id": "w", "name": "a", "file": "x"}, {"id": "w", "name": "b", "file": "y"}], {},
         "images[1]", "id", "duplicate id"),
        ([{"id": "w", "name": "a", "file": "x"}, {"id": "v", "name": "a", "file": "y"}], {},
         "v", "name", "also used by w"),
        ([{"id": "w", "name": "a", "file": "x", "min_disk": -1}], {}, "w", "min_disk", ">= 0"),
        ([{"name": "a", "file": "x"}], {"options": {"parts": 0}}, "options", "parts",
         "positive"),
        ([{"name": "a", "file": "x"}], {"options": {"bandwidth": "fast"}}, "options", None,
         "not a rate"),
        ([{"name": "a", "file": "x"}], {"sources": {"s": {"region": "r"}}}, "sources.s",
         "endpoint", "required"),
    ],
)
def test_errors_name_the_entry_and_the_field(images: list[Any], top: dict[str, Any],
                                             entry: str, field: str | None, text: str) -> None:
    err = error_of(manifest(*images, **top))
    assert err.entry == entry
    assert err.field == field
    assert text in str(err)
    assert str(err).startswith(f"{entry}: {field}: " if field else f"{entry}: ")


def test_required_metadata_and_document_shape() -> None:
    err = error_of({"images": [{"id": "w", "name": "a", "file": "x"}]})
    assert (err.entry, err.field) == ("w", "disk_format")
    assert "in the entry or in defaults" in str(err)
    # ims and shared entries take their metadata from the source image
    parse_manifest({"sources": {"s": {"endpoint": "http://h", "region": "r"}},
                    "images": [{"ims": {"source": "s", "image_id": "img-1"}},
                               {"shared": {"image_id": "img-2"}}]})  # fmt: skip
    assert "non-empty list" in str(error_of({"images": []}))
    assert "mapping" in str(error_of([1, 2]))
    assert "unsupported version" in str(error_of(manifest({"name": "a", "file": "x"},
                                                          version=2)))  # fmt: skip


def test_invalid_files(tmp_path: Path) -> None:
    bad = tmp_path / "m.json"
    bad.write_text("{nope")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(bad)
    with pytest.raises(ManifestError, match="cannot read"):
        load_manifest(tmp_path / "missing.yaml")
