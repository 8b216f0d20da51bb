"""Share endpoints: share, unshare, list shares, shared-images list / delete /
copy."""

from __future__ import annotations

from collections import Counter

from aiohttp import web

from ..models import Image, ImageStatus, Visibility, format_datetime
from .common import authenticate, load_image, read_body, region_of, render, services
from .context import new_image_id, new_share_id, utcnow
from .envelope import fault, ok
from .identity import Directory, User
from .render import page_json, share_json
from .store import ImageRecord, ShareRecord
from .validation import (
    SHARE_ORDER_FIELDS,
    check_share_id,
    parse_order,
    parse_page,
    validate_copy,
    validate_share,
)


def _recipients(directory: Directory, ids: list[str], caller: User) -> list[User]:
    duplicates = sorted(uid for uid, count in Counter(ids).items() if count > 1)
    if duplicates:
        raise fault("IMG.OperationFailed.DuplicateUserId", f"duplicate user ids: {duplicates}")
    users: list[User] = []
    for uid in ids:
        user = directory.by_id(uid)
        if user is None:
            raise fault("IMG.OperationFailed.InvalidUserId", f"unknown user id {uid}")
        if user.tenant_id == caller.tenant_id:
            raise fault(
                "IMG.OperationFailed.InvalidUserId",
                f"user {uid} belongs to the image's own tenant (cannot share with yourself)",
            )
        users.append(user)
    return users


async def share_image(request: web.Request) -> web.Response:
    user = authenticate(request)
    ids = validate_share(await read_body(request))
    svc = services(request)
    async with svc.locks(request.match_info["image_id"]):
        record = await load_image(request, user)
        visibility = record.image.visibility.value if record.image.visibility else ""
        if record.status != ImageStatus.ACTIVE.value or visibility != Visibility.PRIVATE.value:
            raise fault(
                "IMG.OperationFailed.ActionNotMatch",
                f"only active private images can be shared (image {record.image_id} is "
                f"{record.status}, {visibility})",
            )
        recipients = _recipients(svc.users, ids, user)
        existing = await svc.store.share_user_ids(record.image_id)
        already = sorted(u.user_id for u in recipients if u.user_id in existing)
        if already:
            raise fault("IMG.OperationFailed.AlreadyShared", f"already shared with {already}")
        now = format_datetime(utcnow())
        await svc.store.add_shares(
            ShareRecord(
                row_id=0,
                share_id=new_share_id(),
                image_id=record.image_id,
                user_id=u.user_id,
                user_name=u.user_name,
                created_at=now,
                updated_at=now,
            )
            for u in recipients
        )
    return ok(request)


async def unshare_image(request: web.Request) -> web.Response:
    user = authenticate(request)
    ids = validate_share(await read_body(request))
    svc = services(request)
    async with svc.locks(request.match_info["image_id"]):
        record = await load_image(request, user)
        recipients = _recipients(svc.users, ids, user)
        existing = await svc.store.share_user_ids(record.image_id)
        missing = sorted(u.user_id for u in recipients if u.user_id not in existing)
        if missing:
            raise fault("IMG.OperationFailed.NotShared", f"not shared with {missing}")
        await svc.store.remove_shares(record.image_id, [u.user_id for u in recipients])
    return ok(request)


async def list_image_shares(request: web.Request) -> web.Response:
    user = authenticate(request)
    svc = services(request)
    record = await load_image(request, user)
    current, size = parse_page(request.query)
    total, shares = await svc.store.list_shares(
        image_id=record.image_id,
        order=parse_order(request.query.get("orderBy"), SHARE_ORDER_FIELDS),
        offset=(current - 1) * size,
        limit=size,
    )
    return ok(request, page_json(current, size, total, [share_json(s) for s in shares]))


async def list_shared_images(request: web.Request) -> web.Response:
    user = authenticate(request)
    svc = services(request)
    current, size = parse_page(request.query)
    total, shares = await svc.store.list_shares(
        user_id=user.user_id,
        order=parse_order(request.query.get("orderBy"), SHARE_ORDER_FIELDS),
        offset=(current - 1) * size,
        limit=size,
    )
    items = []
    for share in shares:
        record = await svc.store.get_image(share.image_id)
        items.append(share_json(share, render(svc, record) if record is not None else None))
    return ok(request, page_json(current, size, total, items))


async def _load_share(request: web.Request, user: User) -> tuple[ShareRecord, ImageRecord]:
    svc = services(request)
    share_id = check_share_id(request.match_info["share_id"])
    share = await svc.store.get_share(share_id)
    image = None if share is None else await svc.store.get_image(share.image_id)
    if share is None or image is None or image.status == ImageStatus.DELETED.value:
        raise fault("IMG.DBGet.NoData", f"shared image {share_id} does not exist")
    if share.user_id != user.user_id and image.tenant_id != user.tenant_id:
        raise fault("IMG.OperationDenied.Identity", f"share {share_id} is not shared with you")
    return share, image


async def delete_shared_image(request: web.Request) -> web.Response:
    user = authenticate(request)
    svc = services(request)
    share, _ = await _load_share(request, user)
    async with svc.locks(share.image_id):
        await svc.store.delete_share(share.share_id)
    return ok(request)


async def copy_shared_image(request: web.Request) -> web.Response:
    user = authenticate(request)
    region = region_of(request)
    spec = validate_copy(await read_body(request))
    svc = services(request)
    share, source = await _load_share(request, user)
    if share.user_id != user.user_id:
        raise fault("IMG.OperationDenied.Identity", f"share {share.share_id} is not to you")
    if spec.tenant_id != user.tenant_id:
        raise fault(
            "IMG.OperationDenied.Identity", f"tenantId {spec.tenant_id} is not the caller's tenant"
        )
    if source.status != ImageStatus.ACTIVE.value:
        raise fault(
            "IMG.OperationDenied.ActionNotMatchStatus",
            f"image {source.image_id} is {source.status}, not active",
        )
    src = source.image
    now = utcnow()
    image = Image(
        image_id=new_image_id(),
        name=spec.name,
        status=ImageStatus.SAVING,
        image_type=src.image_type,
        disk_format=src.disk_format,
        owner=user.tenant_id,
        min_disk=src.min_disk,
        min_ram=src.min_ram,
        cpu_arch=src.cpu_arch,
        os_type=src.os_type,
        os_version=src.os_version,
        platform=src.platform,
        progress=0,
        usage=src.usage,
        instructions=src.instructions,
        upload_id="",
        image_tags=list(src.image_tags),
        region=region,
        visibility=Visibility.PRIVATE,
        boot_mode=src.boot_mode,
        description=spec.description,
        created_at=now,
        updated_at=now,
        department_id=spec.department_id,
        resource_group_id=spec.resource_group_id,
        department_name=user.department_name if spec.department_id == user.department_id else "",
        position="s3",
        source_type="copy",
        err_message="",
    )
    record = ImageRecord(
        image=image,
        bucket=svc.storage.tenant_bucket(user.tenant_id),
        object_key=image.image_id,
        job="copy",
    )
    await svc.storage.ensure_bucket(record.bucket)
    await svc.store.insert_image(record)
    svc.worker.start_copy(image.image_id, source)
    return ok(request, render(svc, record))
