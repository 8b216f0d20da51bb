"""The fake S3 client itself (tests/fakes/fake_s3.py), used directly: its
answers, errors, pagination, scripted faults, request log and credential
checks must be those the transfer engine meets on real servers."""

from __future__ import annotations

import base64
import hashlib
import io
from typing import Any

import aiohttp
import anyio
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError
from fakes.clock import FakeClock
from fakes.fake_s3 import FakeS3, FakeS3Client, Rule, crc32c, crc32c_b64, md5_b64

from aioims.transfer.s3 import FailureKind, classify

pytestmark = pytest.mark.timeout(30)

B, K = "bucket", "disk.img"


def code_of(info: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = info.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


async def start(client: FakeS3Client, key: str = K, **extra: Any) -> str:
    return str((await client.create_multipart_upload(Bucket=B, Key=key, **extra))["UploadId"])


async def put_part(client: FakeS3Client, upload_id: str, number: int, data: bytes,
                   key: str = K, **extra: Any) -> dict[str, Any]:  # fmt: skip
    return await client.upload_part(
        Bucket=B, Key=key, UploadId=upload_id, PartNumber=number, Body=io.BytesIO(data),
        ContentLength=len(data), **extra,
    )  # fmt: skip


def listing(*parts: tuple[int, str]) -> dict[str, Any]:
    return {"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in parts]}


# --- the happy path and the object model ------------------------------------------------


async def test_multipart_round_trip_and_etag() -> None:
    s3 = FakeS3(min_part_size=4)
    client = s3.client()
    upload_id = await start(client)
    chunks = [b"part-one", b"part-two", b"3"]
    etags = []
    for number, data in enumerate(chunks, 1):
        answer = await put_part(client, upload_id, number, data, ContentMD5=md5_b64(data))
        assert answer["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert answer["ResponseMetadata"]["RequestId"]
        etags.append(answer["ETag"])
    done = await client.complete_multipart_upload(
        Bucket=B, Key=K, UploadId=upload_id, MultipartUpload=listing(*enumerate(etags, 1))
    )
    binary = b"".join(hashlib.md5(c).digest() for c in chunks)
    expected = f'"{hashlib.md5(binary).hexdigest()}-3"'
    assert done["ETag"] == expected and done["Key"] == K and done["Bucket"] == B
    head = await client.head_object(Bucket=B, Key=K)
    assert head["ETag"] == expected and head["ContentLength"] == len(b"".join(chunks))
    got = await client.get_object(Bucket=B, Key=K, Range="bytes=4-11")
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert await got["Body"].read() == b"".join(chunks)[4:12]
    assert got["ContentRange"] == f"bytes 4-11/{len(b''.join(chunks))}"
    assert s3.open_uploads() == [] and s3.uploads[upload_id].state == "completed"
    # completing again: AWS's usual answer
    with pytest.raises(ClientError) as info:
        await client.complete_multipart_upload(
            Bucket=B, Key=K, UploadId=upload_id, MultipartUpload=listing(*enumerate(etags, 1))
        )
    assert code_of(info) == ("NoSuchUpload", 404)


async def test_big_parts_cost_only_a_digest() -> None:
    s3 = FakeS3(keep_bytes=1024)
    client = s3.client()
    upload_id = await start(client)
    data = bytes(6 * 1024 * 1024)
    part = await put_part(client, upload_id, 1, data)
    last = await put_part(client, upload_id, 2, b"tail")
    await client.complete_multipart_upload(
        Bucket=B, Key=K, UploadId=upload_id,
        MultipartUpload=listing((1, part["ETag"]), (2, last["ETag"])),
    )  # fmt: skip
    stored = s3.objects[(B, K)]
    assert stored.data is None and stored.size == len(data) + 4 and stored.parts == 2
    assert s3.log[1].body_size == len(data)
    assert s3.log[1].body_md5 == hashlib.md5(data).hexdigest()
    assert "Body" not in s3.log[1].params
    with pytest.raises(RuntimeError, match="keep_bytes"):
        await client.get_object(Bucket=B, Key=K)


async def test_put_head_get_and_missing_objects() -> None:
    s3 = FakeS3()
    client = s3.client()
    answer = await client.put_object(
        Bucket=B, Key="small", Body=b"hello", ContentMD5=md5_b64(b"hello")
    )
    assert answer["ETag"] == f'"{hashlib.md5(b"hello").hexdigest()}"'
    got = await client.get_object(Bucket=B, Key="small")
    assert await got["Body"].read() == b"hello" and got["ContentLength"] == 5
    with pytest.raises(ClientError) as info:
        await client.head_object(Bucket=B, Key="nope")
    assert code_of(info) == ("404", 404)  # what botocore makes of a bodiless 404
    with pytest.raises(ClientError) as info:
        await client.get_object(Bucket=B, Key="nope")
    assert code_of(info) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as info:
        await client.get_object(Bucket=B, Key="small", Range="bytes=10-")
    assert code_of(info) == ("InvalidRange", 416)


async def test_unknown_bucket_when_buckets_are_declared() -> None:
    s3 = FakeS3(buckets=["only"])
    with pytest.raises(ClientError) as info:
        await s3.client().create_multipart_upload(Bucket=B, Key=K)
    assert code_of(info) == ("NoSuchBucket", 404)
    s3.create_bucket(B)
    await s3.client().create_multipart_upload(Bucket=B, Key=K)


# --- digests -----------------------------------------------------------------------------


def test_crc32c_known_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c_b64(b"123456789") == base64.b64encode(bytes.fromhex("e3069283")).decode()


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"ContentMD5": md5_b64(b"other")}, "BadDigest"),
        ({"ContentMD5": "not base64!"}, "InvalidDigest"),
        ({"ContentMD5": base64.b64encode(b"short").decode()}, "InvalidDigest"),
        ({"ChecksumCRC32C": crc32c_b64(b"other")}, "BadDigest"),
        ({"ChecksumCRC32C": "??"}, "InvalidRequest"),
        ({"ContentLength": 99}, "IncompleteBody"),
    ],
)
async def test_bad_digests_are_rejected_and_nothing_is_stored(
    extra: dict[str, Any], code: str
) -> None:
    s3 = FakeS3()
    client = s3.client()
    crc = {"ChecksumAlgorithm": "CRC32C"} if "ChecksumCRC32C" in extra else {}
    upload_id = await start(client, **crc)
    params = {"Bucket": B, "Key": K, "UploadId": upload_id, "PartNumber": 1, "Body": b"data"}
    with pytest.raises(ClientError) as info:
        await client.upload_part(**{**params, **extra})
    assert code_of(info) == (code, 400)
    assert s3.uploads[upload_id].parts == {}
    assert s3.log[-1].outcome == "error" and s3.log[-1].error == code
    assert not s3.log[-1].applied


async def test_good_crc32c_is_echoed_and_listed() -> None:
    s3 = FakeS3()
    client = s3.client()
    created = await client.create_multipart_upload(Bucket=B, Key=K, ChecksumAlgorithm="CRC32C")
    assert created["ChecksumAlgorithm"] == "CRC32C"
    upload_id = created["UploadId"]
    answer = await put_part(client, upload_id, 1, b"data", ChecksumCRC32C=crc32c_b64(b"data"))
    assert answer["ChecksumCRC32C"] == crc32c_b64(b"data")
    page = await client.list_parts(Bucket=B, Key=K, UploadId=upload_id)
    assert page["Parts"][0]["ChecksumCRC32C"] == crc32c_b64(b"data")
    assert page["ChecksumAlgorithm"] == "CRC32C"
    uploads = await client.list_multipart_uploads(Bucket=B)
    assert uploads["Uploads"][0]["ChecksumAlgorithm"] == "CRC32C"


@pytest.mark.parametrize(
    ("algorithm", "extra", "expected", "actual"),
    [
        (None, {"ChecksumCRC32C": crc32c_b64(b"data")}, "null", "crc32c"),
        ("CRC32C", {}, "crc32c", "null"),
        ("CRC32C", {"ContentMD5": md5_b64(b"data")}, "crc32c", "null"),
    ],
)
async def test_part_checksum_type_must_match_the_upload(
    algorithm: str | None, extra: dict[str, Any], expected: str, actual: str
) -> None:
    """AWS: UploadPart's checksum type must be the one CreateMultipartUpload declared."""
    s3 = FakeS3()
    client = s3.client()
    upload_id = await start(client, **({"ChecksumAlgorithm": algorithm} if algorithm else {}))
    with pytest.raises(ClientError) as info:
        await put_part(client, upload_id, 1, b"data", **extra)
    assert code_of(info) == ("InvalidRequest", 400)
    message = info.value.response["Error"]["Message"]
    assert message == (
        f"Checksum Type mismatch occurred, expected checksum Type: {expected}, "
        f"actual checksum Type: {actual}"
    )
    assert s3.uploads[upload_id].parts == {}


async def test_complete_of_a_crc32c_upload_needs_every_part_checksum() -> None:
    """AWS: an upload created with CRC32C is completed with each part's CRC32C."""
    s3 = FakeS3(min_part_size=1)
    client = s3.client()
    upload_id = await start(client, ChecksumAlgorithm="CRC32C")
    etags, crcs = [], []
    for number, data in ((1, b"one"), (2, b"two")):
        crc = crc32c_b64(data)
        etags.append((await put_part(client, upload_id, number, data, ChecksumCRC32C=crc))["ETag"])
        crcs.append(crc)
    ids = {"Bucket": B, "Key": K, "UploadId": upload_id}
    missing = [{"PartNumber": 1, "ETag": etags[0], "ChecksumCRC32C": crcs[0]},
               {"PartNumber": 2, "ETag": etags[1]}]  # fmt: skip
    with pytest.raises(ClientError) as info:
        await client.complete_multipart_upload(**ids, MultipartUpload={"Parts": missing})
    assert code_of(info) == ("InvalidRequest", 400)
    assert info.value.response["Error"]["Message"] == (
        "The upload was created using a crc32c checksum. The complete request must include "
        "the checksum for each part. It was missing for part 2 in the request."
    )
    wrong = [{**missing[0]}, {**missing[1], "ChecksumCRC32C": crcs[0]}]
    with pytest.raises(ClientError) as info:
        await client.complete_multipart_upload(**ids, MultipartUpload={"Parts": wrong})
    assert code_of(info) == ("InvalidPart", 400)
    good = [{**missing[0]}, {**missing[1], "ChecksumCRC32C": crcs[1]}]
    answer = await client.complete_multipart_upload(**ids, MultipartUpload={"Parts": good})
    raw = base64.b64decode(crcs[0]) + base64.b64decode(crcs[1])
    assert answer["ChecksumCRC32C"] == f"{crc32c_b64(raw)}-2"
    assert s3.objects[(B, K)].data == b"onetwo"


async def test_radosgw_ignores_flexible_checksums() -> None:
    """Ceph before Squid: CRC32C and ChecksumAlgorithm accepted, checked nowhere."""
    s3 = FakeS3("radosgw", min_part_size=1)
    client = s3.client()
    created = await client.create_multipart_upload(Bucket=B, Key=K, ChecksumAlgorithm="CRC32C")
    assert "ChecksumAlgorithm" not in created
    upload_id = created["UploadId"]
    answer = await put_part(client, upload_id, 1, b"data", ChecksumCRC32C=crc32c_b64(b"other"))
    assert "ChecksumCRC32C" not in answer
    page = await client.list_parts(Bucket=B, Key=K, UploadId=upload_id)
    assert "ChecksumAlgorithm" not in page and "ChecksumCRC32C" not in page["Parts"][0]
    await client.complete_multipart_upload(
        Bucket=B, Key=K, UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": answer["ETag"]}]},
    )  # fmt: skip
    await client.put_object(Bucket=B, Key="p", Body=b"data", ChecksumCRC32C=crc32c_b64(b"x"))
    assert s3.objects[(B, "p")].size == 4


# --- listing -----------------------------------------------------------------------------


async def test_list_parts_pages() -> None:
    s3 = FakeS3()
    client = s3.client()
    upload_id = await start(client)
    for number in (7, 1, 3, 2, 6, 5, 4):
        await put_part(client, upload_id, number, bytes([number]))
    seen, marker, pages = [], 0, 0
    while True:
        page = await client.list_parts(
            Bucket=B, Key=K, UploadId=upload_id, MaxParts=3, PartNumberMarker=marker
        )
        pages += 1
        assert page["PartNumberMarker"] == marker and page["MaxParts"] == 3
        seen += [(p["PartNumber"], p["Size"]) for p in page["Parts"]]
        if not page["IsTruncated"]:
            break
        marker = page["NextPartNumberMarker"]
    assert pages == 3 and seen == [(n, 1) for n in range(1, 8)]
    # the paginator walks the same pages
    numbers = [
        p["PartNumber"]
        async for page in client.get_paginator("list_parts").paginate(
            Bucket=B, Key=K, UploadId=upload_id, MaxParts=2
        )
        for p in page.get("Parts", [])
    ]
    assert numbers == list(range(1, 8))
    empty = await client.list_parts(Bucket=B, Key=K, UploadId=await start(client))
    assert "Parts" not in empty and empty["IsTruncated"] is False


async def test_list_multipart_uploads_prefix_and_markers() -> None:
    s3 = FakeS3()
    client = s3.client()
    ids = {}
    for key in ("img/b", "img/a", "img/a", "other", "img/c", "img/a"):
        ids.setdefault(key, []).append(await start(client, key))
    await client.abort_multipart_upload(Bucket=B, Key="img/c", UploadId=ids["img/c"][0])
    got: list[tuple[str, str]] = []
    params: dict[str, Any] = {"Bucket": B, "Prefix": "img/", "MaxUploads": 2}
    pages = 0
    while True:
        page = await client.list_multipart_uploads(**params)
        pages += 1
        got += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
        if not page["IsTruncated"]:
            break
        params["KeyMarker"] = page["NextKeyMarker"]
        params["UploadIdMarker"] = page["NextUploadIdMarker"]
    # sorted by key, then by initiation; aborted and other prefixes left out
    assert got == [("img/a", i) for i in ids["img/a"]] + [("img/b", ids["img/b"][0])]
    assert pages == 2
    whole = await client.list_multipart_uploads(Bucket=B, KeyMarker="img/a")
    assert [u["Key"] for u in whole["Uploads"]] == ["img/b", "other"]


# --- completion rules --------------------------------------------------------------------


async def test_complete_validates_parts() -> None:
    s3 = FakeS3(min_part_size=5)
    client = s3.client()
    upload_id = await start(client)
    one = (await put_part(client, upload_id, 1, b"12345"))["ETag"]
    two = (await put_part(client, upload_id, 2, b"123"))["ETag"]
    three = (await put_part(client, upload_id, 3, b"1"))["ETag"]
    cases = [
        (listing(), "MalformedXML"),
        (listing((2, two), (1, one)), "InvalidPartOrder"),
        (listing((1, one), (1, one)), "InvalidPartOrder"),
        (listing((1, one), (2, one)), "InvalidPart"),
        (listing((1, one), (4, one)), "InvalidPart"),
        (listing((1, one), (2, two), (3, three)), "EntityTooSmall"),  # part 2 < 5 bytes
    ]
    for parts, code in cases:
        with pytest.raises(ClientError) as info:
            await client.complete_multipart_upload(
                Bucket=B, Key=K, UploadId=upload_id, MultipartUpload=parts
            )
        assert code_of(info) == (code, 400), parts
    assert s3.open_uploads() and (B, K) not in s3.objects
    # a subset of the parts is fine (unquoted ETags too)
    subset = listing((1, one.strip('"')), (3, three))
    done = await client.complete_multipart_upload(
        Bucket=B, Key=K, UploadId=upload_id, MultipartUpload=subset
    )
    assert done["ETag"].endswith('-2"') and s3.objects[(B, K)].size == 6


async def test_gone_uploads() -> None:
    s3 = FakeS3()
    client = s3.client()
    upload_id = await start(client)
    part = await put_part(client, upload_id, 1, b"x")
    assert (await client.abort_multipart_upload(Bucket=B, Key=K, UploadId=upload_id))[
        "ResponseMetadata"
    ]["HTTPStatusCode"] == 204
    for call in (
        client.upload_part(Bucket=B, Key=K, UploadId=upload_id, PartNumber=2, Body=b"y"),
        client.list_parts(Bucket=B, Key=K, UploadId=upload_id),
        client.abort_multipart_upload(Bucket=B, Key=K, UploadId=upload_id),
        client.complete_multipart_upload(
            Bucket=B, Key=K, UploadId=upload_id, MultipartUpload=listing((1, part["ETag"]))
        ),
        client.list_parts(Bucket=B, Key="other", UploadId=await start(client)),  # wrong key
    ):
        with pytest.raises(ClientError) as info:
            await call
        assert code_of(info) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as info:
        await client.upload_part(Bucket=B, Key=K, UploadId=await start(client), PartNumber=0,
                                 Body=b"")  # fmt: skip
    assert code_of(info) == ("InvalidArgument", 400)


async def test_radosgw_quirks() -> None:
    s3 = FakeS3("radosgw")
    client = s3.client()
    upload_id = await start(client)
    part = await put_part(client, upload_id, 1, b"x")
    done = await client.complete_multipart_upload(
        Bucket=B, Key=K, UploadId=upload_id, MultipartUpload=listing((1, part["ETag"]))
    )
    assert done["ETag"] == ""  # radosgw's empty <ETag>
    head = await client.head_object(Bucket=B, Key=K)
    assert head["ETag"] == f'"{hashlib.md5(hashlib.md5(b"x").digest()).hexdigest()}-1"'
    with pytest.raises(ClientError) as info:
        await client.list_parts(Bucket=B, Key=K, UploadId=upload_id)
    assert code_of(info) == ("NoSuchKey", 404)
    aborted = await start(client)
    part = await put_part(client, aborted, 1, b"x")
    await client.abort_multipart_upload(Bucket=B, Key=K, UploadId=aborted)
    with pytest.raises(ClientError) as info:
        await client.complete_multipart_upload(
            Bucket=B, Key=K, UploadId=aborted, MultipartUpload=listing((1, part["ETag"]))
        )
    assert code_of(info) == ("InternalError", 500)


async def test_complete_completed_can_answer_ok() -> None:
    s3 = FakeS3()
    s3.quirks.complete_completed = "ok"
    client = s3.client()
    upload_id = await start(client)
    parts = listing((1, (await put_part(client, upload_id, 1, b"x"))["ETag"]))
    first = await client.complete_multipart_upload(
        Bucket=B, Key=K, UploadId=upload_id, MultipartUpload=parts
    )
    again = await client.complete_multipart_upload(
        Bucket=B, Key=K, UploadId=upload_id, MultipartUpload=parts
    )
    assert again["ETag"] == first["ETag"]


# --- scripted faults ----------------------------------------------------------------------


async def test_fail_on_the_nth_call_of_a_part_for_times() -> None:
    s3 = FakeS3()
    rule = s3.fail("UploadPart", "SlowDown", part=2, nth=2, times=2)
    client = s3.client()
    upload_id = await start(client)
    await put_part(client, upload_id, 1, b"a")
    await put_part(client, upload_id, 2, b"b")  # 1st call of part 2: passes
    for _ in range(2):
        with pytest.raises(ClientError) as info:
            await put_part(client, upload_id, 2, b"b")
        assert code_of(info) == ("SlowDown", 503)
        failure = classify(info.value)
        assert failure is not None and failure.kind is FailureKind.TRANSIENT
        assert failure.request_id == info.value.response["ResponseMetadata"]["RequestId"]
    await put_part(client, upload_id, 2, b"b")  # 4th: passes again
    assert rule.seen == 4 and rule.fired == 2
    assert s3.part_sends(upload_id) == {1: 1, 2: 4}
    assert [c.outcome for c in s3.calls("upload_part", part=2)] == ["ok", "error", "error", "ok"]


async def test_drop_applies_nothing() -> None:
    s3 = FakeS3()
    s3.drop("create_multipart_upload")
    s3.drop("upload_part", kind="disconnected")
    client = s3.client()
    with pytest.raises(EndpointConnectionError) as info:
        await start(client)
    assert classify(info.value).kind is FailureKind.TRANSIENT  # type: ignore[union-attr]
    assert s3.uploads == {} and s3.log[0].outcome == "dropped" and not s3.log[0].applied
    upload_id = await start(client)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await put_part(client, upload_id, 1, b"a")
    assert s3.uploads[upload_id].parts == {}


async def test_lost_response_still_changes_the_state() -> None:
    """The crash window: the server completed the upload, the client never heard."""
    s3 = FakeS3()
    s3.lose_response("complete_multipart_upload")
    client = s3.client()
    upload_id = await start(client)
    etag = (await put_part(client, upload_id, 1, b"a"))["ETag"]
    with pytest.raises(ConnectionClosedError) as info:
        await client.complete_multipart_upload(
            Bucket=B, Key=K, UploadId=upload_id, MultipartUpload=listing((1, etag))
        )
    assert classify(info.value).kind is FailureKind.TRANSIENT  # type: ignore[union-attr]
    assert (B, K) in s3.objects and s3.uploads[upload_id].state == "completed"
    call = s3.calls("complete_multipart_upload")[0]
    assert call.applied and call.outcome == "lost"
    with pytest.raises(ClientError) as again:  # the retry finds it gone
        await client.complete_multipart_upload(
            Bucket=B, Key=K, UploadId=upload_id, MultipartUpload=listing((1, etag))
        )
    assert code_of(again) == ("NoSuchUpload", 404)


async def test_hold_until_the_test_says_so_and_cancel_before_applying() -> None:
    s3 = FakeS3()
    gate = anyio.Event()
    rule = s3.hold("upload_part", gate, part=1)
    client = s3.client()
    upload_id = await start(client)
    results: list[str] = []

    async def send() -> None:
        results.append((await put_part(client, upload_id, 1, b"a"))["ETag"])

    async with anyio.create_task_group() as tg:
        tg.start_soon(send)
        await rule.reached.wait()
        assert s3.in_flight["upload_part"] == 1 and results == []
        assert s3.uploads[upload_id].parts == {}
        gate.set()
    assert len(results) == 1 and 1 in s3.uploads[upload_id].parts

    rule2 = s3.hold("upload_part", anyio.Event(), part=2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(put_part, client, upload_id, 2, b"b")
        await rule2.reached.wait()
        tg.cancel_scope.cancel()
    assert 2 not in s3.uploads[upload_id].parts
    assert s3.calls(part=2)[0].outcome == "cancelled"
    assert s3.in_flight["upload_part"] == 0 and s3.max_in_flight["upload_part"] == 1


async def test_cancelled_while_the_answer_is_withheld() -> None:
    """Killed during CompleteMultipartUpload, after the server applied it."""
    s3 = FakeS3()
    rule = s3.hold_response("complete_multipart_upload", anyio.Event())
    client = s3.client()
    upload_id = await start(client)
    etag = (await put_part(client, upload_id, 1, b"a"))["ETag"]
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: client.complete_multipart_upload(
            Bucket=B, Key=K, UploadId=upload_id, MultipartUpload=listing((1, etag))
        ))  # fmt: skip
        await rule.reached.wait()
        await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    assert s3.calls("CompleteMultipartUpload")[0].outcome == "cancelled-applied"
    assert (B, K) in s3.objects


async def test_hooks_and_any_operation_rules() -> None:
    s3 = FakeS3()
    events: list[str] = []

    async def before(call: Any) -> None:
        events.append(f"before {call.operation}")

    async def after(call: Any, response: dict[str, Any]) -> None:
        events.append(f"after {call.operation} {sorted(response)[0]}")

    s3.hook("*", before=before, after=after, times=None)
    s3.add(Rule("*", nth=3, error="InternalError"))
    client = s3.client()
    upload_id = await start(client)
    await put_part(client, upload_id, 1, b"a")
    with pytest.raises(ClientError) as info:
        await client.list_parts(Bucket=B, Key=K, UploadId=upload_id)
    assert code_of(info) == ("InternalError", 500)
    # hooks run on every call; the error rule acts on the 3rd (no "after" then)
    assert events == [
        "before create_multipart_upload", "after create_multipart_upload Bucket",
        "before upload_part", "after upload_part ETag", "before list_parts",
    ]  # fmt: skip


async def test_first_due_rule_wins_and_all_rules_count() -> None:
    s3 = FakeS3()
    first = s3.fail("upload_part", "InternalError", nth=2)
    second = s3.fail("upload_part", "SlowDown", nth=1, times=2)
    client = s3.client()
    upload_id = await start(client)
    codes = []
    for _ in range(3):
        try:
            await put_part(client, upload_id, 1, b"a")
            codes.append("ok")
        except ClientError as exc:
            codes.append(exc.response["Error"]["Code"])
    assert codes == ["SlowDown", "InternalError", "ok"]
    assert (first.seen, first.fired, second.seen, second.fired) == (3, 1, 3, 1)


# --- credentials --------------------------------------------------------------------------


async def test_credentials_are_checked_and_expire_on_the_fake_clock() -> None:
    clock = FakeClock()
    s3 = FakeS3(clock=clock)
    s3.allow("AK1", token="T1", expires_at=clock() + 60)
    good = s3.client("AK1", "T1")
    upload_id = await start(good)
    for client, code, status in (
        (s3.client("nobody", "T1"), "InvalidAccessKeyId", 403),
        (s3.client("AK1", "T-other"), "InvalidToken", 400),
    ):
        with pytest.raises(ClientError) as info:
            await put_part(client, upload_id, 1, b"a")
        assert code_of(info) == (code, status)
    clock.advance(60)
    with pytest.raises(ClientError) as info:
        await put_part(good, upload_id, 1, b"a")
    assert code_of(info) == ("ExpiredToken", 400)
    assert classify(info.value).kind is FailureKind.CREDENTIALS  # type: ignore[union-attr]
    s3.allow("AK2", token="T2")
    await put_part(s3.client("AK2", "T2"), upload_id, 1, b"a")
    assert [(c.access_key, c.token, c.outcome) for c in s3.calls("upload_part")] == [
        ("nobody", "T1", "error"), ("AK1", "T-other", "error"),
        ("AK1", "T1", "error"), ("AK2", "T2", "ok"),
    ]  # fmt: skip
    radosgw = FakeS3("radosgw")
    radosgw.allow("AK", token="T")
    radosgw.expire("AK")
    with pytest.raises(ClientError) as info:
        await start(radosgw.client("AK", "T"))
    assert code_of(info) == ("AccessDenied", 403)


async def test_client_factory_yields_a_client_with_the_kwargs_credentials() -> None:
    s3 = FakeS3()
    kwargs = {
        "endpoint_url": "https://s3.example", "region_name": "r1",
        "aws_access_key_id": "AK", "aws_secret_access_key": "SECRET",
        "aws_session_token": "TOK", "verify": True, "config": None,
    }  # fmt: skip
    async with s3.client_factory(kwargs) as client:
        await client.create_multipart_upload(Bucket=B, Key=K)
        assert client.meta.endpoint_url == "https://s3.example"
    assert client.closed and s3.clients == [client]
    assert "SECRET" not in repr(client.kwargs)
    assert (s3.log[0].access_key, s3.log[0].token) == ("AK", "TOK")
    with pytest.raises(RuntimeError):
        await client.create_multipart_upload(Bucket=B, Key=K)


async def test_concurrent_calls_are_counted() -> None:
    s3 = FakeS3()
    gate = anyio.Event()
    rules = [s3.hold("upload_part", gate, part=n) for n in (1, 2, 3)]
    client = s3.client()
    upload_id = await start(client)
    async with anyio.create_task_group() as tg:
        for n in (1, 2, 3):
            tg.start_soon(put_part, client, upload_id, n, bytes([n]))
        for rule in rules:
            await rule.reached.wait()
        assert s3.in_flight["upload_part"] == 3
        gate.set()
    assert s3.max_in_flight["upload_part"] == 3 and s3.max_in_flight["*"] == 3
    assert sorted(s3.uploads[upload_id].parts) == [1, 2, 3]
