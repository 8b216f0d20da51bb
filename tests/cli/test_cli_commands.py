"""Every command against the emulator, through ``python -m aioims.cli --json``."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import ALICE, BOB, CAROL, Runner, make_file, md5

from aioims.testing import EmulatorProcess

MiB = 1 << 20


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6 MiB raw file: two parts of 5 MiB (the minimum part size)."""
    return make_file(tmp_path_factory.mktemp("cli-src") / "disk.raw", 6 * MiB + 123, seed=1)


@pytest.fixture(scope="module")
def uploaded(cli: Runner, source: Path) -> dict[str, Any]:
    res = cli("upload", str(source), "--name", "cli-e2e image", "--part-size", "5M",
              "--description", "uploaded by the CLI tests", "--tag", "env=test",
              "--json").ok()
    data = res.json
    assert data["failed"] == []
    assert len(data["items"]) == 1
    image: dict[str, Any] = data["items"][0]
    return image


def test_upload_result(uploaded: dict[str, Any], source: Path) -> None:
    assert uploaded["imageId"].startswith("img-")
    assert uploaded["status"] == "active"
    assert uploaded["checksum"] == md5(source)
    assert uploaded["size"] == source.stat().st_size
    assert uploaded["name"] == "cli-e2e image"
    assert uploaded["diskFormat"] == "raw"  # sniffed: no qcow2 header
    assert uploaded["minDisk"] == 1
    assert uploaded["owner"] == ALICE["tenant_id"]
    assert uploaded["describe"] == "uploaded by the CLI tests"  # vendor (camelCase) shape


def test_images_list_shapes_and_filters(cli: Runner, uploaded: dict[str, Any]) -> None:
    image_id = uploaded["imageId"]
    page = cli("images", "list", "--size", "50", "--json").ok().json
    assert set(page) == {"items", "total", "current", "size"}
    assert page["current"] == 1 and page["size"] == 50
    assert image_id in [i["imageId"] for i in page["items"]]
    flt = cli("images", "list", "--filter", f"imageId:eq:{image_id}", "--json").ok().json
    assert [i["imageId"] for i in flt["items"]] == [image_id]
    named = cli("images", "list", "--name-contains", "cli-e2e", "--json").ok().json
    assert image_id in [i["imageId"] for i in named["items"]]
    none = cli("images", "list", "--name-contains", "no-such-name-xyz", "--json").ok().json
    assert none["items"] == [] and none["total"] == 0
    public = cli("images", "list", "--public", "--json").ok().json
    assert set(public) == {"items", "total", "current", "size"}


def test_images_list_all_walks_pages(cli: Runner, uploaded: dict[str, Any]) -> None:
    cli("images", "create", "--name", "cli-paging-extra", "--json").ok()
    walked = cli("images", "list", "--all", "--size", "1", "--json").ok().json
    assert walked["total"] >= 2
    assert len(walked["items"]) == walked["total"]
    one = cli("images", "list", "--size", "1", "--page", "2", "--json").ok().json
    assert len(one["items"]) == 1 and one["current"] == 2


def test_images_list_human_table(cli: Runner, uploaded: dict[str, Any]) -> None:
    res = cli("images", "list", "--size", "50").ok()
    assert "IMAGE ID" in res.stdout
    assert uploaded["imageId"] in res.stdout


def test_images_show(cli: Runner, uploaded: dict[str, Any]) -> None:
    shown = cli("images", "show", uploaded["imageId"], "--json").ok().json
    assert shown["imageId"] == uploaded["imageId"]
    assert shown["checksum"] == uploaded["checksum"]
    human = cli("images", "show", uploaded["imageId"]).ok().stdout
    assert "checksum" in human and uploaded["checksum"] in human


def test_images_update(cli: Runner, uploaded: dict[str, Any]) -> None:
    image_id = uploaded["imageId"]
    res = cli("images", "update", image_id, "--min-disk", "3", "--min-ram", "1024",
              "--os-version", "22.04", "--json").ok().json
    assert (res["minDisk"], res["minRam"], res["osVersion"]) == (3, 1024, "22.04")
    assert res["name"] == "cli-e2e image"  # unchanged fields kept
    shrink = cli("images", "update", image_id, "--min-disk", "1")
    assert shrink.returncode == 1
    assert "IMG.OperationFailed.ModifyMinDiskSize" in shrink.stderr
    assert cli("images", "update", image_id).returncode == 2  # nothing to update


def test_images_wait(cli: Runner, uploaded: dict[str, Any]) -> None:
    waited = cli("images", "wait", uploaded["imageId"], "--json").ok().json
    assert waited["status"] == "active"
    queued = cli("images", "create", "--name", "cli-wait-queued", "--json").ok().json
    res = cli("images", "wait", queued["imageId"], "--timeout", "1", "--interval", "0.2")
    assert res.returncode == 1
    assert "WaitTimeout" in res.stderr
    ok = cli("images", "wait", queued["imageId"], "--status", "queued", "--json").ok().json
    assert ok["status"] == "queued"


def test_share_unshare_shared_copy_delete(cli: Runner, uploaded: dict[str, Any]) -> None:
    image_id = uploaded["imageId"]
    res = cli("share", image_id, BOB["user_id"], CAROL["user_id"], "--json").ok().json
    assert res == {"imageId": image_id, "userIds": [BOB["user_id"], CAROL["user_id"]],
                   "shared": True}
    shares = cli("shares", image_id, "--json").ok().json
    assert {s["userId"] for s in shares["items"]} == {BOB["user_id"], CAROL["user_id"]}
    assert shares["total"] == 2
    assert "USER ID" in cli("shares", image_id).ok().stdout

    # bob sees it, copies it, then removes it from his list
    mine = cli("shared", "list", "--all", "--json", token=BOB["token"]).ok().json
    share = next(s for s in mine["items"] if s["imageId"] == image_id)
    assert share["image"]["imageId"] == image_id
    assert share["image"]["checksum"] == uploaded["checksum"]
    copy = cli("shared", "copy", share["shareId"], "--name", "bobs copy", "--wait", "--json",
               token=BOB["token"]).ok().json
    assert copy["imageId"] != image_id
    assert copy["status"] == "active"
    assert copy["owner"] == BOB["tenant_id"]
    deleted = cli("shared", "delete", share["shareId"], "--json", token=BOB["token"]).ok().json
    assert deleted == {"deleted": [share["shareId"]], "failed": []}
    mine = cli("shared", "list", "--all", "--json", token=BOB["token"]).ok().json
    assert share["shareId"] not in [s["shareId"] for s in mine["items"]]

    # a shared image cannot be deleted; unshare carol (and bob, if still shared)
    blocked = cli("images", "delete", image_id)
    assert blocked.returncode == 1
    assert "IMG.OperationFailed.ImageIsShared" in blocked.stderr
    left = [s["userId"] for s in cli("shares", image_id, "--json").ok().json["items"]]
    res = cli("unshare", image_id, *left, "--json").ok().json
    assert res["unshared"] is True
    assert cli("shares", image_id, "--json").ok().json["items"] == []
    again = cli("unshare", image_id, CAROL["user_id"])
    assert again.returncode == 1 and "IMG.OperationFailed.NotShared" in again.stderr


def test_download_and_compare(cli: Runner, uploaded: dict[str, Any], source: Path,
                              tmp_path: Path) -> None:
    dest = tmp_path / "copy.raw"
    res = cli("download", uploaded["imageId"], str(dest), "--json").ok().json
    assert res["bytes"] == source.stat().st_size
    assert res["path"] == str(dest)
    assert res["verified"] is True
    assert dest.read_bytes() == source.read_bytes()
    assert not Path(str(dest) + ".part").exists()
    # a directory destination gets IMAGE_ID.FORMAT
    res = cli("download", uploaded["imageId"], str(tmp_path), "--json").ok().json
    assert res["path"] == str(tmp_path / f"{uploaded['imageId']}.raw")
    assert md5(Path(res["path"])) == uploaded["checksum"]
    human = cli("download", uploaded["imageId"], str(tmp_path / "h.raw")).ok().stdout
    assert "downloaded" in human


def test_download_not_allowed_for_queued(cli: Runner, tmp_path: Path) -> None:
    queued = cli("images", "create", "--name", "cli-dl-queued", "--json").ok().json
    res = cli("download", queued["imageId"], str(tmp_path / "x"))
    assert res.returncode == 1
    assert "IMG." in res.stderr
    assert not (tmp_path / "x").exists()


def test_buckets_and_export(cli: Runner, uploaded: dict[str, Any],
                            cli_emulator: EmulatorProcess) -> None:
    image_id = uploaded["imageId"]
    buckets = cli("buckets", image_id, "--json").ok().json
    assert buckets["items"], buckets
    bucket = buckets["items"][0]
    assert set(bucket) >= {"name", "azId", "cellId"}
    res = cli("export", image_id, "--bucket", bucket["name"], "--json").ok().json
    assert res == {"imageId": image_id, "bucket": bucket, "exported": True}
    res = cli("export", image_id, "--bucket", "no-such-bucket")
    assert res.returncode == 2 and "not offered" in res.stderr
    # the exported object landed in the bucket (independent boto3 client on the S3 server)
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config

    s3 = boto3.client("s3", endpoint_url=cli_emulator.state()["s3Endpoint"],
                      aws_access_key_id="testing", aws_secret_access_key="testing",
                      region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket["name"]).get("Contents", [])]
    assert any(k.startswith(image_id) for k in keys), keys


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    finally:
        server.shutdown()
        server.server_close()


def test_import_from_url(cli: Runner, http_server: tuple[str, Path]) -> None:
    base, root = http_server
    src = make_file(root / "imported.qcow2", 2 * MiB + 7, seed=3)
    res = cli("import", "--name", "cli-imported", "--url", f"{base}/imported.qcow2",
              "--disk-format", "raw", "--min-disk", "1", "--wait", "--timeout", "120",
              "--json").ok().json
    assert res["status"] == "active"
    assert res["name"] == "cli-imported"
    assert res["checksum"] == md5(src)
    assert res["size"] == src.stat().st_size


def test_create_then_upload_into_existing_then_delete(cli: Runner, tmp_path: Path) -> None:
    created = cli("images", "create", "--name", "cli-two-step", "--disk-format", "raw",
                  "--json").ok().json
    assert created["status"] == "queued"
    f = make_file(tmp_path / "small.raw", 300_000, seed=4)
    res = cli("upload", str(f), "--image-id", created["imageId"], "--json").ok().json
    assert res["items"][0]["imageId"] == created["imageId"]
    assert res["items"][0]["status"] == "active"
    assert res["items"][0]["checksum"] == md5(f)
    gone = cli("images", "delete", created["imageId"], "--json").ok().json
    assert gone == {"deleted": [created["imageId"]], "failed": []}
    missing = cli("images", "show", created["imageId"])
    assert missing.returncode == 1


def test_upload_several_files_with_plain_progress(cli: Runner, tmp_path: Path) -> None:
    a = make_file(tmp_path / "first.raw", 5 * MiB + 1, seed=5)
    b = make_file(tmp_path / "second.raw", 400_000, seed=6)
    res = cli("--progress", "plain", "upload", str(a), str(b), "--part-size", "5M",
              "--json").ok()
    data = res.json
    assert [i["name"] for i in data["items"]] == ["first", "second"]
    assert [i["checksum"] for i in data["items"]] == [md5(a), md5(b)]
    assert data["bytes"] == a.stat().st_size + b.stat().st_size
    assert "[first.raw]" in res.stderr and "[second.raw]" in res.stderr
    assert "transfer completed" in res.stderr
    # human output: a table and the summary line
    c = make_file(tmp_path / "third.raw", 1000, seed=7)
    human = cli("upload", str(c), "--quiet").ok().stdout
    assert "uploaded 1 image(s)" in human
    assert res.stderr.count("part ") >= 1


def test_resume_flag_round_trip(cli: Runner, tmp_path: Path, cli_home: Path) -> None:
    f = make_file(tmp_path / "resumable.raw", 6 * MiB, seed=8)
    res = cli("upload", str(f), "--resume", "--part-size", "5M", "--json").ok().json
    assert res["items"][0]["checksum"] == md5(f)
    # nothing left behind in the checkpoint directory once it succeeded
    cp_dir = cli_home / ".cache" / "aioims" / "checkpoints"
    assert not list(cp_dir.glob("*.json")) if cp_dir.exists() else True


def test_download_resume_continues_a_part_file(cli: Runner, uploaded: dict[str, Any],
                                               source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "resumed.raw"
    data = source.read_bytes()
    Path(str(dest) + ".part").write_bytes(data[: 3 * MiB])
    res = cli("--progress", "plain", "download", uploaded["imageId"], str(dest), "--resume",
              "--json").ok()
    assert res.json["bytes"] == len(data)
    assert dest.read_bytes() == data
    assert "resuming at 3.0 MiB" in res.stderr
    assert not Path(str(dest) + ".part").exists()
