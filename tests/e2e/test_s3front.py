"""The S3 front against a real moto server, driven by boto3 and aiobotocore."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import functools
import hashlib
import io
import ipaddress
import json
import logging
import os
import ssl
import string
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import boto3
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, ConnectionError, HTTPClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from multidict import CIMultiDict

from aioims.emulator.s3faults import FaultHit, FaultRule, FaultSet, detect_operation
from aioims.emulator.s3front import S3Front, TemporaryCredentials
from aioims.emulator.s3sigv4 import sign_headers

MiB = 1 << 20
REGION = "us-east-1"
_AIO_SESSION = get_session()


# -- helpers ------------------------------------------------------------------
async def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def _keys(creds: TemporaryCredentials | tuple[str, str, str | None]) -> dict[str, Any]:
    if isinstance(creds, TemporaryCredentials):
        creds = (creds.access_key, creds.secret_key, creds.token)
    return {
        "aws_access_key_id": creds[0],
        "aws_secret_access_key": creds[1],
        "aws_session_token": creds[2],
    }


def boto3_client(url: str, creds: Any, *, retries: int = 1, **extra: Any) -> Any:
    config = Config(
        signature_version="s3v4",  # presigned URLs default to SigV2, which the front refuses
        s3={"addressing_style": "path"},
        retries={"total_max_attempts": retries, "mode": "standard"},
        request_checksum_calculation=extra.pop("checksums", "when_required"),
        response_checksum_validation="when_required",
    )
    return boto3.client(
        "s3", endpoint_url=url, region_name=REGION, config=config, **_keys(creds), **extra
    )


@asynccontextmanager
async def aio_client(url: str, creds: Any, *, retries: int = 1) -> AsyncIterator[Any]:
    config = AioConfig(
        s3={"addressing_style": "path"},
        retries={"total_max_attempts": retries, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    async with _AIO_SESSION.create_client(
        "s3", endpoint_url=url, region_name=REGION, config=config, **_keys(creds)
    ) as client:
        yield client


def get_read(client: Any, **params: Any) -> dict[str, Any]:
    """get_object and read the body (in the calling thread: never on the loop)."""
    answer: dict[str, Any] = client.get_object(**params)
    answer["Body"] = answer["Body"].read()
    return answer


def error_code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


def direct_bytes(boto3_s3: Any, bucket: str, key: str) -> bytes:
    return bytes(boto3_s3.get_object(Bucket=bucket, Key=key)["Body"].read())


@pytest.fixture
async def front(s3_url: str) -> AsyncIterator[S3Front]:
    async with S3Front(s3_url) as running:
        yield running


@pytest.fixture
def creds(front: S3Front) -> TemporaryCredentials:
    return front.issue_credentials()


async def upload_parts(client: Any, bucket: str, key: str, parts: list[bytes]) -> dict[str, Any]:
    upload = await client.create_multipart_upload(Bucket=bucket, Key=key)
    done = []
    for number, data in enumerate(parts, start=1):
        answer = await client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=data
        )
        done.append({"PartNumber": number, "ETag": answer["ETag"]})
    result: dict[str, Any] = await client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": done}
    )
    return result


# -- credentials and plain forwarding -------------------------------------------
async def test_issued_credentials_shape(front: S3Front) -> None:
    creds = front.issue_credentials(lifetime=60)
    assert creds.access_key.startswith("ASIA") and len(creds.access_key) == 20
    assert set(creds.access_key[4:]) <= set(string.ascii_uppercase + string.digits)
    assert len(creds.secret_key) == 40 and len(creds.token) > 100
    assert creds.expires_at.tzinfo is not None
    left = (creds.expires_at - dt.datetime.now(dt.timezone.utc)).total_seconds()
    assert 55 < left <= 60
    assert creds.secret_key not in repr(creds) and creds.token not in repr(creds)
    assert front.issue_credentials(lifetime=None).expires_at.year == 9999
    assert front.url.startswith("http://127.0.0.1:")


async def test_put_get_boto3(
    front: S3Front, creds: TemporaryCredentials, bucket: str, boto3_s3: Any
) -> None:
    client = boto3_client(front.url, creds)
    data = os.urandom(300_000)
    put = await run(client.put_object, Bucket=bucket, Key="a/b.img", Body=data, ContentType="x/y")
    assert await run(direct_bytes, boto3_s3, bucket, "a/b.img") == data
    got = await run(get_read, client, Bucket=bucket, Key="a/b.img")
    assert got["Body"] == data
    assert got["ETag"] == put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert got["ContentType"] == "x/y"
    ranged = await run(get_read, client, Bucket=bucket, Key="a/b.img", Range="bytes=10-19")
    assert ranged["ContentRange"] == f"bytes 10-19/{len(data)}"
    assert ranged["Body"] == data[10:20]
    head = await run(client.head_object, Bucket=bucket, Key="a/b.img")
    assert head["ContentLength"] == len(data)
    assert front.stats.count("PutObject") == 1 and front.stats.count("GetObject") == 2
    assert front.stats.count("HeadObject") == 1 and not front.stats.rejected


async def test_put_get_aiobotocore(
    front: S3Front, creds: TemporaryCredentials, bucket: str, boto3_s3: Any
) -> None:
    data = os.urandom(200_000)
    async with aio_client(front.url, creds) as client:
        await client.put_object(Bucket=bucket, Key="k", Body=data, ContentMD5=_md5_b64(data))
        got = await client.get_object(Bucket=bucket, Key="k")
        async with got["Body"] as body:
            assert await body.read() == data
        head = await client.head_object(Bucket=bucket, Key="k")
        direct = await run(boto3_s3.head_object, Bucket=bucket, Key="k")
        listed = await client.list_objects_v2(Bucket=bucket)
        await client.delete_object(Bucket=bucket, Key="k")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == direct["ETag"]
    assert [o["Key"] for o in listed["Contents"]] == ["k"]
    assert "Contents" not in boto3_s3.list_objects_v2(Bucket=bucket)
    assert front.stats.count("ListObjectsV2") == 1 and front.stats.count("DeleteObject") == 1


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


async def test_multipart_aiobotocore(
    front: S3Front, creds: TemporaryCredentials, bucket: str, boto3_s3: Any
) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1000)]
    async with aio_client(front.url, creds) as client:
        done = await upload_parts(client, bucket, "mp.img", parts)
    assert done["ETag"].endswith('-3"')
    assert await run(direct_bytes, boto3_s3, bucket, "mp.img") == b"".join(parts)
    stats = front.stats
    assert stats.count("CreateMultipartUpload") == 1 and stats.count("UploadPart") == 3
    assert stats.count("CompleteMultipartUpload") == 1 and stats.part_numbers == [1, 2, 3]
    assert json.loads(json.dumps(stats.to_json())) == {
        "requests": {"CreateMultipartUpload": 1, "UploadPart": 3, "CompleteMultipartUpload": 1},
        "part_numbers": [1, 2, 3],
        "rejected": {},
        "faults": [],
    }


async def test_concurrent_parts(
    front: S3Front, creds: TemporaryCredentials, bucket: str, boto3_s3: Any
) -> None:
    parts = [os.urandom(5 * MiB) for _ in range(4)] + [b"last"]
    async with aio_client(front.url, creds) as client:
        upload = await client.create_multipart_upload(Bucket=bucket, Key="c")
        params = {"Bucket": bucket, "Key": "c", "UploadId": upload["UploadId"]}
        answers = await asyncio.gather(
            *(
                client.upload_part(PartNumber=n, Body=data, **params)
                for n, data in enumerate(parts, start=1)
            )
        )
        done = [{"PartNumber": n, "ETag": a["ETag"]} for n, a in enumerate(answers, start=1)]
        await client.complete_multipart_upload(MultipartUpload={"Parts": done}, **params)
    assert await run(direct_bytes, boto3_s3, bucket, "c") == b"".join(parts)
    assert sorted(front.stats.part_numbers) == [1, 2, 3, 4, 5]


async def test_multipart_list_abort_boto3(
    front: S3Front, creds: TemporaryCredentials, bucket: str, boto3_s3: Any
) -> None:
    client = boto3_client(front.url, creds)
    upload = await run(client.create_multipart_upload, Bucket=bucket, Key="x")
    upload_id = upload["UploadId"]
    for number in (1, 2):
        await run(
            client.upload_part,
            Bucket=bucket,
            Key="x",
            UploadId=upload_id,
            PartNumber=number,
            Body=io.BytesIO(b"p" * (1 + number)),  # file-like: boto3 sends Expect: 100-continue
        )
    listed = await run(client.list_parts, Bucket=bucket, Key="x", UploadId=upload_id)
    assert [(p["PartNumber"], p["Size"]) for p in listed["Parts"]] == [(1, 2), (2, 3)]
    uploads = await run(client.list_multipart_uploads, Bucket=bucket)
    assert [u["UploadId"] for u in uploads["Uploads"]] == [upload_id]
    await run(client.abort_multipart_upload, Bucket=bucket, Key="x", UploadId=upload_id)
    assert "Uploads" not in await run(boto3_s3.list_multipart_uploads, Bucket=bucket)
    assert front.stats.requests == {
        "CreateMultipartUpload": 1,
        "UploadPart": 2,
        "ListParts": 1,
        "ListMultipartUploads": 1,
        "AbortMultipartUpload": 1,
    }


@pytest.mark.parametrize("key", ["dir/a b+c=d~e&f$g@h,i;j:k'(l)!*", "ünï/файл 名.qcow2", "a//b/"])
async def test_awkward_keys_pass_signature_checks(
    front: S3Front, creds: TemporaryCredentials, bucket: str, boto3_s3: Any, key: str
) -> None:
    async with aio_client(front.url, creds) as client:
        await client.put_object(Bucket=bucket, Key=key, Body=b"aio")
        listed = await client.list_objects_v2(Bucket=bucket, Prefix=key[:3])
        tagged = await client.get_object_tagging(Bucket=bucket, Key=key)
    assert [o["Key"] for o in listed["Contents"]] == [key] and tagged["TagSet"] == []
    sync = boto3_client(front.url, creds)
    assert (await run(get_read, sync, Bucket=bucket, Key=key))["Body"] == b"aio"
    assert front.stats.count("GetObjectTagging") == 1 and not front.stats.rejected


async def test_presigned_urls(front: S3Front, creds: TemporaryCredentials, bucket: str) -> None:
    client = boto3_client(front.url, creds)
    put_url = client.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "p q"}, ExpiresIn=60
    )
    get_url = client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "p q"}, ExpiresIn=60
    )
    assert "X-Amz-Security-Token" in get_url
    async with aiohttp.ClientSession() as http:
        async with http.put(put_url, data=b"presigned") as answer:
            assert answer.status == 200, await answer.text()
        async with http.get(get_url) as answer:
            assert answer.status == 200 and await answer.read() == b"presigned"
        tampered = get_url.replace("p%20q", "p%20r")
        async with http.get(tampered) as answer:
            assert answer.status == 403 and "SignatureDoesNotMatch" in await answer.text()
    assert front.stats.rejected == {"SignatureDoesNotMatch": 1}


# -- credential errors -----------------------------------------------------------
async def test_anonymous_request_is_denied_with_s3_xml(front: S3Front, bucket: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{front.url}/{bucket}/k") as answer:
        body = await answer.text()
        assert answer.status == 403
        assert answer.headers["Content-Type"].startswith("application/xml")
        request_id = answer.headers["x-amz-request-id"]
    assert body.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied<')
    assert f"<RequestId>{request_id}</RequestId>" in body
    assert front.stats.rejected == {"AccessDenied": 1}


async def test_sigv2_is_refused(front: S3Front, creds: TemporaryCredentials, bucket: str) -> None:
    client = boto3.client(
        "s3",
        endpoint_url=front.url,
        region_name=REGION,
        config=Config(signature_version="s3", s3={"addressing_style": "path"}),
        **_keys(creds),
    )
    with pytest.raises(ClientError) as caught:
        await run(client.list_objects_v2, Bucket=bucket)
    assert error_code(caught.value) == "InvalidRequest"
    assert "AWS4-HMAC-SHA256" in caught.value.response["Error"]["Message"]


async def test_unknown_key(front: S3Front, bucket: str) -> None:
    async with aio_client(front.url, ("ASIAUNKNOWN", "x" * 40, "tok")) as client:
        with pytest.raises(ClientError) as caught:
            await client.get_object(Bucket=bucket, Key="k")
    assert error_code(caught.value) == "InvalidAccessKeyId"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


async def test_expired_credentials(front: S3Front, bucket: str) -> None:
    creds = front.issue_credentials(lifetime=0.5)
    sync = boto3_client(front.url, creds)
    await run(sync.put_object, Bucket=bucket, Key="k", Body=b"before")
    await asyncio.sleep(0.6)
    with pytest.raises(ClientError) as caught:
        await run(sync.put_object, Bucket=bucket, Key="k", Body=b"after")
    assert error_code(caught.value) == "ExpiredToken"
    assert caught.value.response["Error"]["Message"] == "The provided token has expired."
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    async with aio_client(front.url, creds) as client:
        with pytest.raises(ClientError) as caught:
            await client.create_multipart_upload(Bucket=bucket, Key="k")
    assert error_code(caught.value) == "ExpiredToken"
    assert front.stats.rejected == {"ExpiredToken": 2}


async def test_revoked_credentials_with_expect_continue(
    front: S3Front, creds: TemporaryCredentials, bucket: str, boto3_s3: Any
) -> None:
    sync = boto3_client(front.url, creds)
    await run(sync.put_object, Bucket=bucket, Key="k", Body=b"ok")
    assert front.revoke(creds.access_key) and not front.revoke(creds.access_key)
    big = os.urandom(3 * MiB)
    for body in (io.BytesIO(big), big):  # with and without Expect: 100-continue
        with pytest.raises(ClientError) as caught:
            await run(sync.put_object, Bucket=bucket, Key="k", Body=body)
        assert error_code(caught.value) == "InvalidAccessKeyId"
    async with aio_client(front.url, creds) as client:  # aiohttp: no Expect, body is drained
        for _ in range(2):
            with pytest.raises(ClientError) as caught:
                await client.put_object(Bucket=bucket, Key="k", Body=big)
            assert error_code(caught.value) == "InvalidAccessKeyId"
    assert await run(direct_bytes, boto3_s3, bucket, "k") == b"ok"
    # the client's connection pool is still usable for a good request afterwards
    fresh = front.issue_credentials()
    sync2 = boto3_client(front.url, fresh)
    await run(sync2.put_object, Bucket=bucket, Key="k", Body=io.BytesIO(big))
    assert await run(direct_bytes, boto3_s3, bucket, "k") == big


async def test_missing_or_wrong_token(
    front: S3Front, creds: TemporaryCredentials, bucket: str
) -> None:
    for token in (None, creds.token + "x"):
        async with aio_client(front.url, (creds.access_key, creds.secret_key, token)) as client:
            with pytest.raises(ClientError) as caught:
                await client.list_objects_v2(Bucket=bucket)
        assert error_code(caught.value) == "InvalidToken"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    front.add_static_credentials("ADMINKEY", "admin-secret")
    sync = boto3_client(front.url, ("ADMINKEY", "admin-secret", "unexpected"))
    with pytest.raises(ClientError) as caught:
        await run(sync.list_objects_v2, Bucket=bucket)
    assert error_code(caught.value) == "InvalidToken"
    assert front.stats.rejected == {"InvalidToken": 3}


async def test_static_credentials_and_bad_secret(s3_url: str, bucket: str) -> None:
    async with S3Front(s3_url) as strict, S3Front(s3_url, verify_signatures=False) as lax:
        for front in (strict, lax):
            front.add_static_credentials("ADMINKEY", "admin-secret")
            good = boto3_client(front.url, ("ADMINKEY", "admin-secret", None))
            await run(good.put_object, Bucket=bucket, Key="s", Body=b"static")
            bad = boto3_client(front.url, ("ADMINKEY", "wrong-secret", None))
            if front is strict:
                with pytest.raises(ClientError) as caught:
                    await run(bad.put_object, Bucket=bucket, Key="s", Body=b"x")
                assert error_code(caught.value) == "SignatureDoesNotMatch"
            else:
                await run(bad.put_object, Bucket=bucket, Key="s", Body=b"x")


async def test_expired_presigned_url(
    front: S3Front, creds: TemporaryCredentials, bucket: str
) -> None:
    client = boto3_client(front.url, creds)
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=1
    )
    await asyncio.sleep(1.1)
    async with aiohttp.ClientSession() as http, http.get(url) as answer:
        assert answer.status == 403
        assert "<Message>Request has expired</Message>" in await answer.text()


async def test_payload_hash_mismatch_never_reaches_upstream(
    front: S3Front, bucket: str, boto3_s3: Any
) -> None:
    front.add_static_credentials("ADMINKEY", "admin-secret")
    path = f"/{bucket}/sha"
    data = os.urandom(300_000)
    for digest, status in ((hashlib.sha256(b"other").hexdigest(), 400), (_sha(data), 200)):
        headers = _signed(front, "PUT", path, {"Content-Length": str(len(data))}, digest)
        async with (
            aiohttp.ClientSession() as http,
            http.put(front.url + path, data=data, headers=headers) as answer,
        ):
            text = await answer.text()
        assert answer.status == status, text
        if status == 400:
            assert "XAmzContentSHA256Mismatch" in text
            with pytest.raises(ClientError):
                await run(boto3_s3.head_object, Bucket=bucket, Key="sha")
    assert await run(direct_bytes, boto3_s3, bucket, "sha") == data


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _signed(
    front: S3Front, method: str, path: str, headers: dict[str, str], payload_hash: str
) -> CIMultiDict[str]:
    """Headers of a request signed with the static ADMINKEY credentials."""
    out: CIMultiDict[str] = CIMultiDict(headers)
    out["Host"] = front.url.split("://", 1)[1]
    out.update(
        sign_headers(
            method,
            path,
            "",
            out,
            access_key="ADMINKEY",
            secret_key="admin-secret",
            region=REGION,
            payload_hash=payload_hash,
        )
    )
    return out


# -- faults -------------------------------------------------------------------
async def test_error_on_part_two_once_is_retried(
    front: S3Front, creds: TemporaryCredentials, bucket: str, boto3_s3: Any
) -> None:
    front.faults.add(FaultRule(operation="UploadPart", part_numbers={2}, status=500))
    parts = [os.urandom(5 * MiB), b"tail"]
    async with aio_client(front.url, creds, retries=3) as client:
        await upload_parts(client, bucket, "r.img", parts)
    assert await run(direct_bytes, boto3_s3, bucket, "r.img") == b"".join(parts)
    assert front.stats.part_numbers == [1, 2, 2]
    assert front.stats.faults == [FaultHit("UploadPart", 2, "error", "InternalError")]
    assert front.faults.rules == [] and front.faults.to_json() == []


async def test_error_answer_seen_by_both_clients(
    front: S3Front, creds: TemporaryCredentials, bucket: str
) -> None:
    front.faults.add(FaultRule(operation="PutObject", status=503, code="SlowDown", times=2))
    sync = boto3_client(front.url, creds)
    with pytest.raises(ClientError) as caught:
        await run(sync.put_object, Bucket=bucket, Key="k", Body=os.urandom(2 * MiB))
    assert error_code(caught.value) == "SlowDown"
    assert caught.value.response["Error"]["Message"] == "Please reduce your request rate."
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    async with aio_client(front.url, creds) as client:
        with pytest.raises(ClientError) as caught:
            await client.put_object(Bucket=bucket, Key="k", Body=os.urandom(2 * MiB))
        assert error_code(caught.value) == "SlowDown"
        await client.put_object(Bucket=bucket, Key="k", Body=b"third time")  # times=2 used up
    assert front.stats.count("PutObject") == 3 and len(front.stats.faults) == 2


async def test_reset_on_part_three_is_a_connection_error(
    front: S3Front, creds: TemporaryCredentials, bucket: str
) -> None:
    # aiohttp (under aiobotocore) silently resends an idempotent PUT once after a
    # dropped connection, so aiobotocore only sees the error on the second reset.
    front.faults.add(FaultRule(operation="UploadPart", part_numbers={3}, action="reset", times=3))
    sync = boto3_client(front.url, creds)
    upload = await run(sync.create_multipart_upload, Bucket=bucket, Key="r")
    params = {"Bucket": bucket, "Key": "r", "UploadId": upload["UploadId"]}
    body = os.urandom(MiB)
    await run(sync.upload_part, PartNumber=2, Body=body, **params)
    with pytest.raises((HTTPClientError, ConnectionError)):  # not a ClientError: no answer
        await run(sync.upload_part, PartNumber=3, Body=body, **params)
    async with aio_client(front.url, creds) as client:
        with pytest.raises((HTTPClientError, ConnectionError, aiohttp.ClientError)):
            await client.upload_part(PartNumber=3, Body=body, **params)
        await client.upload_part(PartNumber=3, Body=body, **params)  # the rule is used up
        listed = await client.list_parts(**params)
    assert [p["PartNumber"] for p in listed["Parts"]] == [2, 3]
    assert front.stats.part_numbers == [2, 3, 3, 3, 3]
    assert [hit.action for hit in front.stats.faults] == ["reset"] * 3


async def test_reset_is_retried_by_the_client(
    front: S3Front, creds: TemporaryCredentials, bucket: str, boto3_s3: Any
) -> None:
    front.faults.add(FaultRule(operation="PutObject", action="reset"))
    sync = boto3_client(front.url, creds, retries=3)
    await run(sync.put_object, Bucket=bucket, Key="k", Body=b"again")
    assert await run(direct_bytes, boto3_s3, bucket, "k") == b"again"
    assert front.stats.count("PutObject") == 2


async def test_delay(front: S3Front, creds: TemporaryCredentials, bucket: str) -> None:
    front.faults.add(FaultRule(operation="HeadBucket", action="delay", delay=0.4, times=None))
    async with aio_client(front.url, creds) as client:
        for _ in range(2):
            started = time.monotonic()
            await client.head_bucket(Bucket=bucket)
            assert time.monotonic() - started >= 0.4
        await client.list_objects_v2(Bucket=bucket)
    # only the two HeadBucket calls were delayed (counted, not timed: a busy
    # machine may be slow)
    assert len(front.faults.rules) == 1 and len(front.stats.faults) == 2


async def test_expire_fault_expires_the_credentials(
    front: S3Front, creds: TemporaryCredentials, bucket: str
) -> None:
    front.faults.add(FaultRule(operation="UploadPart", action="expire"))
    async with aio_client(front.url, creds) as client:
        upload = await client.create_multipart_upload(Bucket=bucket, Key="e")
        params = {"Bucket": bucket, "Key": "e", "UploadId": upload["UploadId"]}
        for _ in range(2):
            with pytest.raises(ClientError) as caught:
                await client.upload_part(PartNumber=1, Body=b"x", **params)
            assert error_code(caught.value) == "ExpiredToken"
    async with aio_client(front.url, front.issue_credentials()) as client:
        await client.upload_part(PartNumber=1, Body=b"x", **params)
    assert front.stats.rejected == {"ExpiredToken": 1} and len(front.stats.faults) == 1


async def test_wildcard_rule_applies_after_the_credential_check(
    front: S3Front, creds: TemporaryCredentials, bucket: str
) -> None:
    front.faults.add(FaultRule(operation="*", status=500, times=None))
    async with aio_client(front.url, ("ASIAUNKNOWN", "x" * 40, "t")) as client:
        with pytest.raises(ClientError) as caught:
            await client.list_objects_v2(Bucket=bucket)
        assert error_code(caught.value) == "InvalidAccessKeyId"
    async with aio_client(front.url, creds) as client:
        for call in (client.list_objects_v2(Bucket=bucket), client.list_buckets()):
            with pytest.raises(ClientError) as caught:
                await call
            assert error_code(caught.value) == "InternalError"
    assert [hit.operation for hit in front.stats.faults] == ["ListObjectsV2", "ListBuckets"]


def test_fault_set_times_and_probability() -> None:
    faults = FaultSet([FaultRule(operation="GetObject", times=2)])
    assert [faults.pick("GetObject", None) is not None for _ in range(3)] == [True, True, False]
    assert faults.pick("PutObject", None) is None and faults.rules == []

    always = FaultSet([FaultRule(part_numbers=[1, 2], times=None)])
    assert all(always.pick("UploadPart", 2) for _ in range(50))
    assert always.pick("UploadPart", 3) is None and always.pick("PutObject", None) is None

    def draws(rule: FaultRule, n: int = 200) -> list[bool]:
        fs = FaultSet([rule])
        return [fs.pick("PutObject", None) is not None for _ in range(n)]

    half = FaultRule(probability=0.5, seed=7, times=None)
    assert draws(half) == draws(half)  # a seed makes the draws reproducible
    assert 60 < sum(draws(half)) < 140
    assert not any(draws(FaultRule(probability=0.0, times=None)))
    # losing a draw does not use up `times`
    assert sum(draws(FaultRule(probability=0.1, seed=1, times=3), n=1000)) == 3
    # the first live matching rule wins
    both = FaultSet([FaultRule(code="A"), FaultRule(code="B", times=None)])
    assert [r.code for r in (both.pick("X", None), both.pick("X", None))] == ["A", "B"]  # type: ignore[union-attr]


def test_fault_set_json_round_trip() -> None:
    faults = FaultSet()
    faults.add(FaultRule(operation="UploadPart", part_numbers={3, 2}, action="reset", times=2))
    faults.add(FaultRule(action="delay", delay=0.25, times=None, probability=0.5, seed=3))
    faults.pick("UploadPart", 2)
    data = json.loads(json.dumps(faults.to_json()))
    assert data[0] == {
        "operation": "UploadPart",
        "part_numbers": [2, 3],
        "action": "reset",
        "status": 500,
        "code": "InternalError",
        "message": None,
        "delay": 0.0,
        "times": 1,  # one firing left
        "probability": 1.0,
        "seed": None,
        "when": "before",
    }
    again = FaultSet.from_json({"rules": data})
    assert again.to_json() == data
    assert again.rules[0].part_numbers == frozenset({2, 3})
    front_faults = FaultSet()
    front_faults.replace(FaultSet.from_json(data))
    assert front_faults.to_json() == data
    bad_rules: list[dict[str, Any]] = [
        {"action": "explode"},
        {"colour": "red"},
        {"probability": 2},
        {"times": -1},
        {"times": "2"},
        {"status": "500"},
        {"delay": -1},
        {"part_numbers": 5},
        {"part_numbers": ["x"]},
        {"operation": 3},
    ]
    for bad in bad_rules:
        with pytest.raises(ValueError):
            FaultSet.from_json([bad])


@pytest.mark.parametrize(
    ("method", "path", "query", "copy", "operation"),
    [
        ("GET", "/", "", False, "ListBuckets"),
        ("PUT", "/b", "", False, "CreateBucket"),
        ("HEAD", "/b", "", False, "HeadBucket"),
        ("GET", "/b", "list-type=2&prefix=a", False, "ListObjectsV2"),
        ("GET", "/b", "uploads", False, "ListMultipartUploads"),
        ("GET", "/b", "location", False, "GetBucketLocation"),
        ("POST", "/b", "delete", False, "DeleteObjects"),
        ("POST", "/b/k", "uploads", False, "CreateMultipartUpload"),
        ("PUT", "/b/k", "partNumber=2&uploadId=u", False, "UploadPart"),
        ("PUT", "/b/k", "partNumber=2&uploadId=u", True, "UploadPartCopy"),
        ("POST", "/b/k", "uploadId=u", False, "CompleteMultipartUpload"),
        ("DELETE", "/b/k", "uploadId=u", False, "AbortMultipartUpload"),
        ("GET", "/b/k", "uploadId=u", False, "ListParts"),
        ("PUT", "/b/k/x", "", False, "PutObject"),
        ("PUT", "/b/k", "", True, "CopyObject"),
        ("GET", "/b/k", "", False, "GetObject"),
        ("GET", "/b/k", "partNumber=1", False, "GetObject"),
        ("HEAD", "/b/k", "", False, "HeadObject"),
        ("DELETE", "/b/k", "", False, "DeleteObject"),
        ("GET", "/b/k", "tagging", False, "GetObjectTagging"),
    ],
)
def test_detect_operation(method: str, path: str, query: str, copy: bool, operation: str) -> None:
    params = dict(p.partition("=")[::2] for p in query.split("&") if p)
    assert detect_operation(method, path, params, copy) == operation


# -- re-signing and passthrough ------------------------------------------------------
async def test_resigned_requests_pass_a_signature_checking_upstream(
    s3_url: str, bucket: str, boto3_s3: Any
) -> None:
    """client --(issued creds)--> front (resign) --(UPKEY)--> checking front --> moto."""
    async with S3Front(s3_url, resign=False) as checker:
        checker.add_static_credentials("UPKEY", "up-secret")
        async with S3Front(
            checker.url, upstream_access_key="UPKEY", upstream_secret_key="up-secret"
        ) as front:
            creds = front.issue_credentials()
            parts = [os.urandom(5 * MiB), b"end"]
            async with aio_client(front.url, creds) as client:
                await upload_parts(client, bucket, "dir/a b+c.img", parts)
                await client.put_object(Bucket=bucket, Key="ü k", Body=b"x", ContentType="a/b")
                head = await client.head_object(Bucket=bucket, Key="ü k")
            sync = boto3_client(front.url, creds)
            url = sync.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": "ü k"}, ExpiresIn=60
            )
            async with aiohttp.ClientSession() as http, http.get(url) as answer:
                assert answer.status == 200 and await answer.read() == b"x"
        misconfigured = S3Front(checker.url, upstream_access_key="UPKEY", upstream_secret_key="no")
        async with (
            misconfigured,
            aio_client(misconfigured.url, misconfigured.issue_credentials()) as client,
        ):
            with pytest.raises(ClientError) as caught:
                await client.head_bucket(Bucket=bucket)
            assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert head["ContentType"] == "a/b" and head["ContentLength"] == 1
    assert await run(direct_bytes, boto3_s3, bucket, "dir/a b+c.img") == b"".join(parts)
    assert checker.stats.rejected == {"SignatureDoesNotMatch": 1}
    assert checker.stats.count("UploadPart") == 2 and checker.stats.count("GetObject") == 1


async def test_passthrough_keeps_the_client_signature_valid(
    s3_url: str, bucket: str, boto3_s3: Any
) -> None:
    """client --(K)--> front (resign=False) --(same request)--> front checking K --> moto."""
    async with S3Front(s3_url, resign=False) as checker:
        checker.add_static_credentials("KEY", "secret")
        async with S3Front(checker.url, resign=False) as front:
            front.add_static_credentials("KEY", "secret")
            sync = boto3_client(front.url, ("KEY", "secret", None))
            await run(sync.put_object, Bucket=bucket, Key="p/q r", Body=b"pass", ContentType="t/u")
            got = await run(get_read, sync, Bucket=bucket, Key="p/q r")
            async with aio_client(front.url, ("KEY", "secret", None)) as client:
                await upload_parts(client, bucket, "mp", [os.urandom(5 * MiB), b"z"])
    assert got["Body"] == b"pass" and got["ContentType"] == "t/u"
    assert not checker.stats.rejected and checker.stats.count("UploadPart") == 2
    assert (await run(boto3_s3.head_object, Bucket=bucket, Key="mp"))["ETag"].endswith('-2"')


async def test_passthrough_to_moto_with_issued_credentials(
    s3_url: str, bucket: str, boto3_s3: Any
) -> None:
    front = S3Front(s3_url, resign=False)
    async with front, aio_client(front.url, front.issue_credentials()) as client:
        await upload_parts(client, bucket, "k", [os.urandom(5 * MiB), b"!"])
    assert (await run(direct_bytes, boto3_s3, bucket, "k")).endswith(b"!")


def test_sign_headers_agrees_with_botocore() -> None:
    headers: CIMultiDict[str] = CIMultiDict(
        {
            "Host": "10.0.0.1:9000",
            "Content-Type": "application/octet-stream",
            "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==",
            "x-amz-meta-name": "  a   b ",
            "Content-Length": "0",
        }
    )
    moment = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    query = "uploadId=a%2Fb%3D&partNumber=2"
    signed = sign_headers(
        "PUT",
        "/bucket/dir/%C3%BC%20k",
        query,
        headers,
        access_key="AK",
        secret_key="SK",
        region="region0",
        now=moment,
    )
    names = signed["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert names == [
        "content-md5",
        "content-type",
        "host",
        "x-amz-content-sha256",
        "x-amz-date",
        "x-amz-meta-name",
    ]
    all_headers = {**dict(headers), **signed}
    request = AWSRequest(
        method="PUT",
        url=f"http://10.0.0.1:9000/bucket/dir/%C3%BC%20k?{query}",
        headers={k: v for k, v in all_headers.items() if k.lower() in names},
    )
    request.context["timestamp"] = signed["x-amz-date"]
    auth = S3SigV4Auth(Credentials("AK", "SK"), "s3", "region0")
    expected = auth.signature(
        auth.string_to_sign(request, auth.canonical_request(request)), request
    )
    assert signed["Authorization"].endswith(f"Signature={expected}")
    assert signed["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"


# -- aws-chunked bodies ------------------------------------------------------------
def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, str(cert_file)


@pytest.mark.parametrize("resign", [True, False])
async def test_https_front_with_trailing_checksums(
    s3_url: str, bucket: str, boto3_s3: Any, tmp_path: Path, resign: bool
) -> None:
    """Over HTTPS botocore sends STREAMING-UNSIGNED-PAYLOAD-TRAILER aws-chunked bodies."""
    context, ca_file = _self_signed(tmp_path)
    seen: list[str] = []
    async with S3Front(s3_url, ssl_context=context, resign=resign) as front:
        original = front._outgoing

        def spy(exchange: Any, *args: Any) -> Any:
            seen.append(exchange.request.headers.get("x-amz-content-sha256", ""))
            return original(exchange, *args)

        front._outgoing = spy  # type: ignore[method-assign]
        assert front.url.startswith("https://127.0.0.1:")
        sync = boto3_client(
            front.url, front.issue_credentials(), verify=ca_file, checksums="when_supported"
        )
        data = os.urandom(3 * MiB + 17)
        await run(sync.put_object, Bucket=bucket, Key="c", Body=data)
        assert (await run(get_read, sync, Bucket=bucket, Key="c"))["Body"] == data
    assert seen[0] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert await run(direct_bytes, boto3_s3, bucket, "c") == data


@pytest.mark.parametrize("resign", [True, False])
async def test_signed_chunk_bodies(s3_url: str, bucket: str, boto3_s3: Any, resign: bool) -> None:
    data = os.urandom(200_000)
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)] + [b""]
    fake = "0" * 64  # chunk signatures are not checked (by the front or by moto)
    encoded = b"".join(
        f"{len(c):x};chunk-signature={fake}\r\n".encode() + c + b"\r\n" for c in chunks
    )
    async with S3Front(s3_url, resign=resign) as front:
        front.add_static_credentials("ADMINKEY", "admin-secret")
        path = f"/{bucket}/chunked"
        headers = _signed(
            front,
            "PUT",
            path,
            {
                "Content-Encoding": "aws-chunked",
                "x-amz-decoded-content-length": str(len(data)),
                "Content-Length": str(len(encoded)),
            },
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        )
        async with (
            aiohttp.ClientSession() as http,
            http.put(front.url + path, data=encoded, headers=headers) as answer,
        ):
            assert answer.status == 200, await answer.text()
    assert await run(direct_bytes, boto3_s3, bucket, "chunked") == data


# -- streaming, lifecycle ---------------------------------------------------------
def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_large_body_streams_with_bounded_memory(
    front: S3Front, creds: TemporaryCredentials, bucket: str
) -> None:
    size, block = 64 * MiB, os.urandom(MiB)
    client = boto3_client(front.url, creds)
    put_url, get_url = (
        client.generate_presigned_url(op, Params={"Bucket": bucket, "Key": "big"}, ExpiresIn=600)
        for op in ("put_object", "get_object")
    )

    async def body(total: int) -> AsyncIterator[bytes]:
        for _ in range(total // MiB):
            yield block

    async def transfer(http: aiohttp.ClientSession, total: int) -> str:
        headers = {"Content-Length": str(total)}
        async with http.put(put_url, data=body(total), headers=headers) as answer:
            assert answer.status == 200, await answer.text()
        digest = hashlib.md5()
        async with http.get(get_url) as answer:
            assert answer.status == 200 and answer.content_length == total
            async for chunk in answer.content.iter_chunked(1 << 16):
                digest.update(chunk)
        return digest.hexdigest()

    peak = 0

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, _rss())
            await asyncio.sleep(0.005)

    async with aiohttp.ClientSession() as http:
        await transfer(http, 4 * MiB)  # warm up buffers and connections
        before = _rss()
        sampler = asyncio.create_task(sample())
        try:
            got = await transfer(http, size)
        finally:
            sampler.cancel()
    expected = hashlib.md5(block * (size // MiB)).hexdigest()
    assert got == expected
    assert peak - before < 24 * MiB, f"RSS grew by {(peak - before) / MiB:.1f} MiB"


async def test_lifecycle(s3_url: str) -> None:
    front = S3Front(s3_url)
    url = await front.start()
    assert url == front.url and "127.0.0.1" in url
    with pytest.raises(RuntimeError):
        await front.start()
    await front.stop()
    await front.stop()  # idempotent
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            async with http.get(url):
                pass
    with pytest.raises(ValueError):
        S3Front("127.0.0.1:9000")


async def test_unreachable_upstream(bucket: str) -> None:
    front = S3Front("http://127.0.0.1:9")
    async with front, aio_client(front.url, front.issue_credentials()) as client:
        with pytest.raises(ClientError) as caught:
            await client.head_object(Bucket=bucket, Key="k")
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        with pytest.raises(ClientError) as caught:
            await client.put_object(Bucket=bucket, Key="k", Body=os.urandom(MiB))
        assert error_code(caught.value) == "ServiceUnavailable"


# -- lost responses (when="after"): the backend acts, the client hears nothing ----
NO_ANSWER = (HTTPClientError, ConnectionError, aiohttp.ClientError)


async def test_lost_response_of_create_multipart_upload_leaves_an_upload(
    front: S3Front, creds: TemporaryCredentials, bucket: str, boto3_s3: Any
) -> None:
    front.faults.add(FaultRule(operation="CreateMultipartUpload", action="reset", when="after"))
    async with aio_client(front.url, creds) as client:
        with pytest.raises(NO_ANSWER):
            await client.create_multipart_upload(Bucket=bucket, Key="lost")
    listed = await run(boto3_s3.list_multipart_uploads, Bucket=bucket, Prefix="lost")
    assert len(listed.get("Uploads", [])) == 1  # created upstream, never told to the client
    assert [(hit.operation, hit.action) for hit in front.stats.faults] == [
        ("CreateMultipartUpload", "reset")
    ]


async def test_lost_response_of_upload_part_stores_the_part(
    front: S3Front, creds: TemporaryCredentials, bucket: str, boto3_s3: Any
) -> None:
    # times=2: aiohttp resends an idempotent PUT once after a dropped connection
    front.faults.add(FaultRule(operation="UploadPart", action="reset", when="after", times=2))
    body = os.urandom(64 * 1024)
    async with aio_client(front.url, creds) as client:
        upload = await client.create_multipart_upload(Bucket=bucket, Key="part")
        params = {"Bucket": bucket, "Key": "part", "UploadId": upload["UploadId"]}
        with pytest.raises(NO_ANSWER):
            await client.upload_part(PartNumber=1, Body=body, **params)
        listed = await client.list_parts(**params)
    assert [(p["PartNumber"], p["Size"]) for p in listed["Parts"]] == [(1, len(body))]
    assert front.stats.part_numbers == [1, 1]


async def test_lost_response_of_complete_multipart_upload_completes(
    front: S3Front, creds: TemporaryCredentials, bucket: str, boto3_s3: Any
) -> None:
    front.faults.add(
        FaultRule(operation="CompleteMultipartUpload", action="reset", when="after")
    )
    body = b"complete me"
    async with aio_client(front.url, creds) as client:
        upload = await client.create_multipart_upload(Bucket=bucket, Key="done")
        params = {"Bucket": bucket, "Key": "done", "UploadId": upload["UploadId"]}
        part = await client.upload_part(PartNumber=1, Body=body, **params)
        with pytest.raises(NO_ANSWER):
            await client.complete_multipart_upload(
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}, **params
            )
    assert await run(direct_bytes, boto3_s3, bucket, "done") == body  # it did complete
    listed = await run(boto3_s3.list_multipart_uploads, Bucket=bucket, Prefix="done")
    assert listed.get("Uploads", []) == []
    assert front.stats.count("CompleteMultipartUpload") == 1  # a POST is not resent


async def test_error_after_the_backend_acted(
    front: S3Front, creds: TemporaryCredentials, bucket: str, boto3_s3: Any
) -> None:
    front.faults.add(
        FaultRule(operation="PutObject", action="error", status=503, code="SlowDown",
                  when="after")
    )  # fmt: skip
    async with aio_client(front.url, creds) as client:
        with pytest.raises(ClientError) as caught:
            await client.put_object(Bucket=bucket, Key="stored", Body=b"it landed")
    assert error_code(caught.value) == "SlowDown"
    assert await run(direct_bytes, boto3_s3, bucket, "stored") == b"it landed"


def test_lost_response_rule_validation() -> None:
    for action in ("delay", "expire"):
        with pytest.raises(ValueError, match="after"):
            FaultRule(action=action, when="after")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FaultRule.from_json({"action": "reset", "when": "later"})
    rule = FaultRule.from_json({"operation": "CompleteMultipartUpload", "action": "reset",
                                "when": "after"})
    assert rule.when == "after" and rule.to_json()["when"] == "after"
    bad: list[dict[str, Any]] = [
        {"delay": float("inf")}, {"delay": float("nan")}, {"delay": -1}, {"times": -1},
        {"times": 1.5}, {"times": True}, {"probability": float("nan")}, {"status": 200},
        {"part_numbers": [0]}, {"part_numbers": "12"}, {"part_numbers": [1.5]},
        {"seed": "x"}, {"code": ""}, {"operation": 5},
    ]
    for data in bad:
        with pytest.raises(ValueError):
            FaultRule.from_json(data)


# -- what goes back to the client ------------------------------------------------
def test_clean_response_headers() -> None:
    from aioims.emulator.s3front import clean_response_headers

    upstream = CIMultiDict(
        [("Server", "Werkzeug/3"), ("Server", "moto"), ("Connection", "close, X-Hop"),
         ("X-Hop", "1"), ("Keep-Alive", "timeout=5"), ("Transfer-Encoding", "chunked"),
         ("ETag", '"a"'), ("etag", '"b"'), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
         ("x-amz-request-id", "R")]
    )  # fmt: skip
    cleaned = clean_response_headers(upstream)
    assert cleaned.getall("Server") == ["Werkzeug/3"]
    assert cleaned.getall("ETag") == ['"a"']
    assert cleaned.getall("Set-Cookie") == ["a=1", "b=2"]
    for gone in ("Connection", "X-Hop", "Keep-Alive", "Transfer-Encoding"):
        assert gone not in cleaned
    assert cleaned["x-amz-request-id"] == "R"


def _sigv4_headers(method: str, url: str, creds: TemporaryCredentials, data: bytes = b"",
                   extra: dict[str, str] | None = None) -> dict[str, str]:
    request = AWSRequest(method=method, url=url, data=data, headers=extra or {})
    S3SigV4Auth(Credentials(creds.access_key, creds.secret_key, creds.token), "s3",
                REGION).add_auth(request)
    return dict(request.headers.items())


async def test_front_answers_each_header_once(
    front: S3Front, creds: TemporaryCredentials, bucket: str
) -> None:
    url = f"{front.url}/{bucket}/dup?uploads"
    async with aiohttp.ClientSession() as http, http.post(
        url, headers=_sigv4_headers("POST", url, creds)
    ) as answer:
        assert answer.status == 200
        names = [name.lower() for name, _ in answer.raw_headers]
    assert names.count(b"server") == 1
    assert len(names) == len(set(names)), names


async def test_client_disconnect_is_one_info_line(
    front: S3Front, creds: TemporaryCredentials, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that goes away while the front waits to send ``100 Continue``
    is logged as one INFO line, not a traceback."""
    front.faults.add(FaultRule(operation="PutObject", action="delay", delay=0.2))
    port = int(front.url.rsplit(":", 1)[1])
    url = f"{front.url}/{bucket}/gone"
    body = b"x" * 1024
    headers = _sigv4_headers("PUT", url, creds, body,
                      {"Expect": "100-continue", "Content-Length": str(len(body))})
    headers.setdefault("Host", f"127.0.0.1:{port}")
    head = f"PUT /{bucket}/gone HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    ) + "\r\n"
    caplog.set_level(logging.INFO)
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode())
    await writer.drain()
    writer.close()  # gone before the front answers
    await writer.wait_closed()
    with anyio.fail_after(20):
        while not [r for r in caplog.records if "disconnected" in r.getMessage()]:
            await asyncio.sleep(0.02)
    lines = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    assert lines[0].name == "aioims.emulator.s3front" and lines[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
