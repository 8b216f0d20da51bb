"""The suite's own machinery (tests/conftest.py, tests/fakes/sink.py): a
crashed moto is replaced instead of failing every later test, a test's
bucket is emptied and counted at teardown, the sink answers checkable
ETags without storing anything, the slow lane is applied by node id."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

import pytest
from fakes.lanes import is_slow, is_slow_item
from fakes.moto import MOTO_DATA_LIMIT, SharedMoto, empty_bucket

pytestmark = pytest.mark.timeout(120)


def test_a_dead_moto_is_replaced_for_the_next_test(shared_moto: SharedMoto) -> None:
    first = shared_moto.get()
    first.process.kill()
    first.process.wait()
    second = shared_moto.get()
    assert second.process.poll() is None and second.url != first.url
    shared_moto.boto3(second.url).create_bucket(Bucket=f"t-{uuid.uuid4().hex[:12]}")


def test_bucket_teardown_counts_and_deletes_everything(boto3_s3: Any) -> None:
    name = f"t-{uuid.uuid4().hex[:12]}"
    boto3_s3.create_bucket(Bucket=name)
    boto3_s3.put_object(Bucket=name, Key="a", Body=b"x" * 1000)
    upload = boto3_s3.create_multipart_upload(Bucket=name, Key="b")["UploadId"]
    boto3_s3.upload_part(Bucket=name, Key="b", UploadId=upload, PartNumber=1, Body=b"y" * 500)
    assert empty_bucket(boto3_s3, name) == 1500
    assert name not in [b["Name"] for b in boto3_s3.list_buckets()["Buckets"]]
    assert MOTO_DATA_LIMIT == 64 * 1024 * 1024


def test_sink_answers_checkable_etags_and_stores_nothing(s3_sink: Any) -> None:
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3", endpoint_url=s3_sink.url, aws_access_key_id="k", aws_secret_access_key="s",
        region_name="us-east-1", config=Config(s3={"addressing_style": "path"}),
    )  # fmt: skip
    chunks = [b"a" * 70_000, b"b" * 1234]
    upload = s3.create_multipart_upload(Bucket="b", Key="k")["UploadId"]
    parts = []
    for number, data in enumerate(chunks, 1):
        md5 = hashlib.md5(data).digest()
        answer = s3.upload_part(
            Bucket="b", Key="k", UploadId=upload, PartNumber=number, Body=data,
            ContentMD5=base64.b64encode(md5).decode(),
        )  # fmt: skip
        assert answer["ETag"] == f'"{md5.hex()}"'
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})
    done = s3.complete_multipart_upload(
        Bucket="b", Key="k", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    whole = hashlib.md5(b"".join(hashlib.md5(c).digest() for c in chunks)).hexdigest()
    assert done["ETag"] == f'"{whole}-2"'
    stats = s3_sink.stats()
    assert stats["parts"] == 2 and stats["part_bytes"] == sum(map(len, chunks))
    assert stats["completes"] == 1
    assert s3.create_multipart_upload(Bucket="b", Key="k")["UploadId"] != upload


def test_slow_lane_patterns() -> None:
    assert is_slow("tests/e2e/test_transfer_memory.py::test_2gib_upload_memory_and_loop_stalls")
    assert is_slow(
        "tests/e2e/test_transfer_faults.py::test_credentials_refreshed_mid_upload[expire]"
    )
    assert not is_slow("tests/unit/test_fake_s3.py::test_multipart_round_trip_and_etag")
    assert is_slow_item("tests/cli/test_new.py::test_x", ["cli", "tmp_path"])
    assert not is_slow_item("tests/cli/test_new.py::test_x", ["tmp_path"])


def test_slow_marker_is_applied(request: pytest.FixtureRequest) -> None:
    items = request.session.items
    marked = {item.nodeid for item in items if item.get_closest_marker("slow")}
    assert all(is_slow_item(i.nodeid, i.fixturenames) for i in items if i.nodeid in marked)
    assert request.node.get_closest_marker("slow") is None
