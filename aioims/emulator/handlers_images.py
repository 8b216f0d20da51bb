"""Image endpoints: list, get, create, update, upload-prepare/done, download,
delete, import, export buckets, export."""

from __future__ import annotations

import base64
import logging
from typing import Any

from aiohttp import web
from botocore.exceptions import ClientError

from ..models import (
    BootMode,
    CpuArch,
    DiskFormat,
    Image,
    ImageStatus,
    ImageType,
    Instruction,
    OsType,
    Platform,
    Usage,
    Visibility,
    VolumeImage,
)
from .common import (
    authenticate,
    check_min_disk,
    load_image,
    read_body,
    region_of,
    render,
    require_status,
    services,
)
from .context import new_image_id, utcnow
from .envelope import fault, invalid, ok, request_id
from .identity import User
from .render import LOST_MESSAGE, page_json
from .s3policy import UploadScope
from .storage import CHUNK, is_missing
from .store import ImageQuery, ImageRecord
from .validation import (
    IMAGE_ORDER_FIELDS,
    ImageSpec,
    parse_filter,
    parse_order,
    parse_page,
    validate_create,
    validate_done,
    validate_export,
    validate_import,
    validate_prepare,
    validate_update,
)

log = logging.getLogger("aioims.emulator")

QUEUED, SAVING, ACTIVE, KILLED = "queued", "saving", "active", "killed"


def _new_image(spec: ImageSpec, user: User, region: str, *, status: str, source: str) -> Image:
    now = utcnow()
    return Image(
        image_id=new_image_id(),
        name=spec.name,
        status=ImageStatus(status),
        image_type=ImageType(spec.image_type),
        disk_format=DiskFormat(spec.disk_format),
        owner=user.tenant_id,
        min_disk=spec.min_disk,
        min_ram=spec.min_ram,
        cpu_arch=CpuArch(spec.cpu_arch),
        os_type=OsType(spec.os_type),
        os_version=spec.os_version,
        platform=Platform(spec.platform),
        progress=0,
        usage=Usage(spec.usage),
        instructions=Instruction(spec.instructions),
        upload_id="",
        image_tags=list(spec.image_tags),
        region=region,
        visibility=Visibility(spec.visibility),
        boot_mode=BootMode(spec.boot_mode),
        description=spec.description,
        created_at=now,
        updated_at=now,
        department_id=spec.department_id,
        resource_group_id=spec.resource_group_id,
        department_name=user.department_name if spec.department_id == user.department_id else "",
        position="s3",
        source_type=source,
        err_message="",
        volume_images=[
            VolumeImage(image_url=v["imageUrl"], min_disk=v["minDisk"]) for v in spec.volume_images
        ],
    )


def _check_tenant(spec_tenant: str, user: User) -> None:
    if spec_tenant != user.tenant_id:
        raise fault(
            "IMG.OperationDenied.Identity", f"tenantId {spec_tenant} is not the caller's tenant"
        )


async def _page(request: web.Request, user: User, *, include_public: bool) -> web.Response:
    svc = services(request)
    current, size = parse_page(request.query)
    query = ImageQuery(
        tenant_id=user.tenant_id,
        include_public=include_public,
        clauses=parse_filter(request.query.get("filter")),
        order=parse_order(request.query.get("orderBy"), IMAGE_ORDER_FIELDS),
        offset=(current - 1) * size,
        limit=size,
    )
    total, records = await svc.store.list_images(query)
    items = [render(svc, record) for record in records]
    return ok(request, page_json(current, size, total, items))


async def list_images(request: web.Request) -> web.Response:
    user = authenticate(request)
    return await _page(request, user, include_public=True)


async def list_private_images(request: web.Request) -> web.Response:
    user = authenticate(request)
    return await _page(request, user, include_public=False)


async def get_image(request: web.Request) -> web.Response:
    user = authenticate(request)
    record = await load_image(request, user, "read")
    return ok(request, render(services(request), record))


async def create_private_image(request: web.Request) -> web.Response:
    user = authenticate(request)
    region = region_of(request)
    spec = validate_create(await read_body(request))
    _check_tenant(spec.tenant_id, user)
    svc = services(request)
    image = _new_image(spec, user, region, status=QUEUED, source="upload")
    record = ImageRecord(
        image=image, bucket=svc.storage.tenant_bucket(user.tenant_id), object_key=image.image_id
    )
    await svc.store.insert_image(record)
    return ok(request, render(svc, record))


async def update_private_image(request: web.Request) -> web.Response:
    user = authenticate(request)
    spec = validate_update(await read_body(request))
    svc = services(request)
    async with svc.locks(request.match_info["image_id"]):
        record = await load_image(request, user)
        require_status(
            record, (QUEUED, ACTIVE, KILLED), "IMG.OperationDenied.ActionNotMatchStatus", "update"
        )
        image = record.image
        current_format = image.disk_format.value if image.disk_format else ""
        if spec.disk_format != current_format:
            raise invalid("diskFormat", f"must stay {current_format!r} (got {spec.disk_format!r})")
        if spec.min_disk < (image.min_disk or 0):
            raise fault(
                "IMG.OperationFailed.ModifyMinDiskSize",
                f"minDisk may not shrink from {image.min_disk} to {spec.min_disk} GiB",
            )
        check_min_disk(spec.min_disk, image.size or record.prepared_size)
        image.name = spec.name
        image.min_disk = spec.min_disk
        image.min_ram = spec.min_ram
        image.cpu_arch = CpuArch(spec.cpu_arch)
        image.instructions = Instruction(spec.instructions)
        image.os_type = OsType(spec.os_type)
        image.os_version = spec.os_version
        image.platform = Platform(spec.platform)
        image.boot_mode = BootMode(spec.boot_mode)
        image.updated_at = utcnow()
        await svc.store.save_image(record)
    return ok(request)


async def upload_prepare(request: web.Request) -> web.Response:
    user = authenticate(request)
    size = validate_prepare(await read_body(request))
    svc = services(request)
    async with svc.locks(request.match_info["image_id"]):
        record = await load_image(request, user)
        require_status(
            record, (QUEUED, KILLED), "IMG.OperationFailed.UploadNotAllowed", "upload to"
        )
        check_min_disk(record.image.min_disk or 0, size)
        await svc.storage.ensure_bucket(record.bucket)
        if record.status == KILLED:
            await svc.storage.delete(record.bucket, record.object_key)
        record.prepared_size = size
        record.image.status = ImageStatus.QUEUED
        record.image.err_message = ""
        record.image.upload_id = ""
        record.image.updated_at = utcnow()
        await svc.store.save_image(record)
    if svc.front is not None:
        creds = svc.front.issue_credentials(
            lifetime=svc.credential_lifetime,
            scope=UploadScope(record.bucket, record.object_key),
        )
        access, secret, token = creds.access_key, creds.secret_key, creds.token or ""
    else:
        access, secret, token = svc.storage.access_key, svc.storage.secret_key, ""
    return ok(
        request,
        {
            "image_url": "",
            "accessKey": access,
            "secretKey": secret,
            "token": token,
            "bucket": record.bucket,
            "file": record.object_key,
            "domain": svc.upload_domain,
        },
    )


async def upload_done(request: web.Request) -> web.Response:
    user = authenticate(request)
    result, upload_id = validate_done(await read_body(request))
    svc = services(request)
    async with svc.locks(request.match_info["image_id"]):
        record = await load_image(request, user)
        status = record.status
        if result == "success" and status in (SAVING, ACTIVE):
            return ok(request)  # a retried notification
        if result == "failed" and status == KILLED:
            if upload_id:
                await svc.storage.abort_upload(record.bucket, record.object_key, upload_id)
            return ok(request)
        require_status(record, (QUEUED,), "IMG.OperationDenied.ActionNotMatchStatus", "finish")
        if record.prepared_size is None:
            raise fault(
                "IMG.OperationFailed.UploadNotAllowed",
                f"call upload-prepare before upload-done for image {record.image_id}",
            )
        record.image.upload_id = upload_id
        record.image.updated_at = utcnow()
        if result == "success":
            record.image.status = ImageStatus.SAVING
            record.job = "verify"
        else:
            if upload_id:
                await svc.storage.abort_upload(record.bucket, record.object_key, upload_id)
            record.image.status = ImageStatus.KILLED
            record.image.err_message = "IMG.OperationFailed.UploadError: the upload failed"
        await svc.store.save_image(record)
    if result == "success":
        svc.worker.start_verify(record.image_id)
    return ok(request)


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``(first, last)`` of a single ``bytes=`` range; ``None`` to send it all.
    Raises HTTP 416 when unsatisfiable."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    start_text, _, end_text = spec.strip().partition("-")
    try:
        if start_text == "":
            length = int(end_text)
            if length <= 0:
                raise ValueError
            first, last = max(0, size - length), size - 1
        else:
            first = int(start_text)
            last = int(end_text) if end_text else size - 1
            last = min(last, size - 1)
    except ValueError:
        return None
    if first >= size or first > last or first < 0:
        raise web.HTTPRequestRangeNotSatisfiable(
            headers={"Content-Range": f"bytes */{size}"},
            text=f"{header!r} is not satisfiable (the file has {size} bytes)",
        )
    return first, last


async def download_private_image(request: web.Request) -> web.StreamResponse:
    user = authenticate(request)
    svc = services(request)
    record = await load_image(request, user)
    require_status(record, (ACTIVE,), "IMG.OperationFailed.DownloadNotAllowed", "download")
    size = record.image.size or 0
    range_header = request.headers.get("Range")
    span = _parse_range(range_header, size) if range_header else None
    first, last = span if span is not None else (None, None)
    checksum = record.image.checksum or ""
    headers = {
        "x-request-id": request_id(request),
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        "ETag": f'"{checksum}"',
        "x-checksum-md5": checksum,
        "Content-Disposition": f'attachment; filename="{record.image_id}"',
    }
    if span is None and checksum:
        headers["Content-MD5"] = _b64_md5(checksum)
    try:
        async with svc.storage.open(record.bucket, record.object_key, first, last) as stream:
            answer = web.StreamResponse(status=200 if span is None else 206, headers=headers)
            answer.content_length = stream.content_length
            if span is not None:
                answer.headers["Content-Range"] = f"bytes {first}-{last}/{size}"
            await answer.prepare(request)
            try:
                if request.method != "HEAD":
                    async for chunk in stream.chunks(CHUNK):
                        await answer.write(chunk)
                await answer.write_eof()
            except (ClientError, OSError, ValueError) as exc:
                # Too late for an envelope: cut the body short so the client notices.
                log.warning("download of %s broke off: %r", record.image_id, exc)
                if request.transport is not None:
                    request.transport.abort()
            return answer
    except ClientError as exc:
        if not is_missing(exc):
            raise
        svc.lost.add(record.image_id)
        raise fault("IMG.OperationFailed.DownloadNotAllowed", LOST_MESSAGE) from None


def _b64_md5(hex_digest: str) -> str:
    try:
        return base64.b64encode(bytes.fromhex(hex_digest)).decode()
    except ValueError:
        return ""


async def delete_private_image(request: web.Request) -> web.Response:
    user = authenticate(request)
    svc = services(request)
    async with svc.locks(request.match_info["image_id"]):
        record = await load_image(request, user)
        if record.shared:
            raise fault(
                "IMG.OperationFailed.ImageIsShared",
                f"image {record.image_id} is shared: unshare it first",
            )
        if record.status == SAVING:
            raise fault(
                "IMG.OperationFailed.DeleteNotAllowed",
                f"image {record.image_id} is saving; wait until it is active or killed",
            )
        await svc.storage.delete(record.bucket, record.object_key)
        record.image.status = ImageStatus.DELETED
        record.image.updated_at = utcnow()
        await svc.store.save_image(record)
        svc.lost.discard(record.image_id)
    return ok(request)


async def import_image(request: web.Request) -> web.Response:
    user = authenticate(request)
    region = region_of(request)
    spec = validate_import(await read_body(request))
    _check_tenant(spec.tenant_id, user)
    svc = services(request)
    image = _new_image(spec, user, region, status=SAVING, source="import")
    record = ImageRecord(
        image=image,
        bucket=svc.storage.tenant_bucket(user.tenant_id),
        object_key=image.image_id,
        job="import",
    )
    await svc.store.insert_image(record)
    svc.worker.start_import(image.image_id, spec.image_url)
    return ok(request, render(svc, record))


def _buckets(svc: Any, record: ImageRecord, region: str) -> list[dict[str, str]]:
    cell = record.image.region or region
    return [
        {"azId": "AZ0", "cellId": cell, "name": name}
        for name in svc.storage.export_buckets(record.tenant_id)
    ]


async def list_export_buckets(request: web.Request) -> web.Response:
    user = authenticate(request)
    svc = services(request)
    record = await load_image(request, user)
    buckets = _buckets(svc, record, region_of(request))
    for bucket in buckets:
        await svc.storage.ensure_bucket(bucket["name"])
    return ok(request, buckets)


async def export_image(request: web.Request) -> web.Response:
    user = authenticate(request)
    name, az_id, cell_id = validate_export(await read_body(request))
    svc = services(request)
    record = await load_image(request, user)
    buckets = {b["name"]: b for b in _buckets(svc, record, region_of(request))}
    bucket = buckets.get(name)
    if bucket is None:
        raise invalid("bucket.name", f"{name!r} is not an export bucket (see oss-bucket-list)")
    if bucket["azId"] != az_id:
        raise invalid("bucket.azId", f"bucket {name} is in {bucket['azId']}, not {az_id}")
    if bucket["cellId"] != cell_id:
        raise invalid("bucket.cellId", f"bucket {name} is in {bucket['cellId']}, not {cell_id}")
    require_status(record, (ACTIVE,), "IMG.OperationDenied.ActionNotMatchStatus", "export")
    disk_format = record.image.disk_format.value if record.image.disk_format else "raw"
    key = f"{record.image_id}.{disk_format}"
    try:
        await svc.storage.copy(record.bucket, record.object_key, name, key, record.image.size or 0)
    except ClientError as exc:
        if not is_missing(exc):
            raise
        svc.lost.add(record.image_id)
        raise fault("IMG.OperationFailed.DownloadNotAllowed", LOST_MESSAGE) from None
    return ok(request)
