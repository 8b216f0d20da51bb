"""The rendering layer: tables that fit 60/80/120 columns without splitting an
id or a word, no trailing blanks; value/csv/json; -c columns."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from rich.cells import cell_len

from aioims.cli.context import DELETE_COLUMNS
from aioims.cli.migrate import PLAN_COLUMNS, REPORT_COLUMNS
from aioims.cli.output import bucket_view, detail_view, image_view, record_view, share_view
from aioims.cli.render import Column, UnknownColumnError, View, render
from aioims.cli.transfer import UPLOAD_COLUMNS

WIDTHS = (60, 80, 120)

IMAGES: list[dict[str, Any]] = [
    {"imageId": f"img-kvvfk28fcjc0mt{n:02d}", "name": name, "status": status,
     "imageType": "os_image", "diskFormat": "qcow2", "size": size, "minDisk": 20,
     "osType": "linux", "visibility": "private", "createdAt": "2026-12-02T00:45:26Z",
     "checksum": "0f3c" * 8}
    for n, (name, status, size) in enumerate([
        ("ubuntu 22.04 LTS server image with a rather long descriptive name", "active",
         6 << 30),
        ("web", "queued", None),
        ("数据盘 镜像 备份", "saving", 123456789),
    ])
]
IDS = [i["imageId"] for i in IMAGES]


def _check(text: str, width: int, ids: list[str]) -> list[str]:
    lines = text.splitlines()
    assert lines, text
    for line in lines:
        assert cell_len(line) <= width, f"{cell_len(line)} > {width}: {line!r}"
        assert line == line.rstrip(), f"trailing blank: {line!r}"
    for ident in ids:  # whole, on one line
        assert any(ident in line for line in lines), (ident, text)
        assert sum(line.count(ident) for line in lines) == text.count(ident)
    return lines


@pytest.mark.parametrize("width", WIDTHS)
def test_image_table_fits(width: int) -> None:
    view = image_view(IMAGES, footer="page 1, 3 of 3 item(s), page size 10", document={})
    lines = _check(render(view, "table", (), width), width, IDS)
    header = lines[0]
    assert header.startswith("IMAGE ID") and "NAME" in header and "STATUS" in header
    for status in ("active", "queued", "saving"):
        assert any(status in line for line in lines)
    if width == 120:
        assert "SIZE" in header and "CREATED" in header
    if width < 120:  # something had to give: say so
        assert any("hidden" in line for line in lines)
    # a shortened name ends with an ellipsis; a whole word is never cut without one
    name = IMAGES[0]["name"]
    row = next(line for line in lines if IDS[0] in line)
    if name not in row:
        assert "…" in row


def test_unlimited_width_shows_everything() -> None:
    text = render(image_view(IMAGES), "table", (), None)
    assert IMAGES[0]["name"] in text
    assert "VISIBILITY" in text and "hidden" not in text


@pytest.mark.parametrize("width", WIDTHS)
def test_other_tables_fit(width: int) -> None:
    shares = [{"shareId": f"img-share-{n:020d}", "imageId": IDS[n], "userId": "7000000000000000202",
               "userName": "bob the builder of very long user names", "createdAt":
               "2026-12-02T00:45:26Z", "image": IMAGES[n]} for n in range(3)]
    share_ids = [s["shareId"] for s in shares]
    _check(render(share_view(shares, with_image=True), "table", (), width), width, share_ids)
    _check(render(share_view(shares, with_image=False), "table", (), width), width,
           [*share_ids, "7000000000000000202"])
    buckets = [{"name": "backup-bucket", "azId": "az-1", "cellId": "cell-1"}]
    _check(render(bucket_view(buckets), "table", (), width), width, ["backup-bucket"])
    rows = [dict(IMAGES[n], file=f"/var/lib/images/{IMAGES[n]['name']}.qcow2", sent=1 << 30,
                 transfer=12.5, bytesPerSecond=85899345, seconds=15.2) for n in range(3)]
    upload = View(UPLOAD_COLUMNS, rows, document={}, footer=[
        "uploaded 3 image(s): 3.0 GiB sent in 12.5 s of transfer (245.8 MiB/s), 15.2 s in all"])
    _check(render(upload, "table", (), width), width, IDS)
    entries = [{"entryId": f"entry-{n}", "name": "a long entry name for the report table",
                "status": "failed" if n else "verified", "imageId": IDS[n], "size": 5 << 30,
                "md5": "0f3c" * 8, "duration": 61.5, "rate": 1e8, "errorCode":
                "IMG.OperationFailed" if n else None, "errorStage": "transfer", "requestId":
                "646e94f0-0ef8-471e-88c3-78b3fe46ab43"} for n in range(3)]
    report = View(REPORT_COLUMNS, entries, document={}, items_key="entries")
    _check(render(report, "table", (), width), width, [*IDS, "entry-0", "entry-2"])
    plan = View(PLAN_COLUMNS, [{"entryId": "e1", "name": "n", "kind": "file", "size": 1,
                                "parts": 1, "action": "migrate",
                                "problems": ["source missing: /very/long/path/to/a/file"],
                                "warnings": []}], document={}, items_key="entries")
    _check(render(plan, "table", (), width), width, ["e1"])
    deletes = [{"id": IDS[0], "result": "deleted", "error": None},
               {"id": IDS[1], "result": "failed", "error": {"code": "IMG.DBGet.NoData"}}]
    _check(render(View(DELETE_COLUMNS, deletes, document={}), "table", (), width), width,
           IDS[:2])


@pytest.mark.parametrize("width", WIDTHS)
def test_detail_and_record_views_fit(width: int) -> None:
    image = dict(IMAGES[0], imageTags=["env=test", "team=platform"] * 4,
                 describe="a description " * 12)
    lines = _check(render(detail_view(image), "table", (), width), width, [IDS[0]])
    assert lines[0].startswith("imageId")
    message = ("downloaded img-kvvfk28fcjc0mt00 to /tmp/some/where/ubuntu.qcow2: 6.0 GiB "
               "in 12.0 s (512.0 MiB/s), checksum verified")
    view = record_view([Column("IMAGE ID", "imageId")], {"imageId": IDS[0]}, {}, message)
    lines = _check(render(view, "table", (), width), width, [IDS[0]])
    # a number and its unit stay on one line
    assert not any(a.endswith(("6.0", "12.0")) for a in lines), lines


def test_value_csv_json_and_columns() -> None:
    document = {"items": IMAGES, "total": 3, "current": 1, "size": 10}
    view = image_view(IMAGES, document=document)
    value = render(view, "value", ["id", "size"])
    assert value.splitlines() == [f"{IDS[0]}\t{6 << 30}", f"{IDS[1]}\t", f"{IDS[2]}\t123456789"]
    rows = list(csv.reader(io.StringIO(render(view, "csv", ["IMAGE ID", "name", "checksum"]))))
    assert rows[0] == ["imageId", "name", "checksum"]
    assert rows[1] == [IDS[0], IMAGES[0]["name"], "0f3c" * 8]
    assert len(rows) == 4
    assert json.loads(render(view, "json")) == document
    projected = json.loads(render(view, "json", ["image_id", "status"]))
    assert projected["total"] == 3
    assert projected["items"][1] == {"imageId": IDS[1], "status": "queued"}
    # -c in a table: only those columns, in that order, nothing hidden
    table = render(view, "table", ["status", "id"], 60)
    assert table.splitlines()[0].split() == ["STATUS", "IMAGE", "ID"]
    assert "hidden" not in table
    # a single record
    detail = detail_view(IMAGES[0])
    assert render(detail, "value", ["status", "size"]) == f"active\n{6 << 30}\n"
    assert json.loads(render(detail, "json", ["status"])) == {"status": "active"}
    with pytest.raises(UnknownColumnError, match="available: imageId, name"):
        render(view, "table", ["bogus"], 80)


def test_empty_listing() -> None:
    assert render(image_view([], footer="page 1, 0 of 0 item(s), page size 10"), "table", (),
                  60) == "no images (page 1, 0 of 0 item(s), page size 10)\n"
    assert render(image_view([]), "csv").startswith("imageId,name,status")
    assert render(image_view([]), "value") == ""
