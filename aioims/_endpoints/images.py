"""Image endpoints: list, get, create, update, delete, import, wait."""

# The public API takes `timeout=` by design (per-call override), hence:
# ruff: noqa: ASYNC109

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import anyio

from .._protocol import RetryMode, quote_segment
from ..config import RetryPolicy
from ..errors import ImageKilledError, UploadFailedError, ValidationError, WaitTimeoutError
from ..models import (
    BootMode,
    CpuArch,
    DiskFormat,
    Image,
    ImageStatus,
    ImageType,
    Instruction,
    OsType,
    Page,
    Platform,
    Usage,
    Visibility,
    VolumeImage,
)
from ..models.spec import ImageSpec, TenantDefaults
from ..pagination import Filter, filter_value
from ..validation import (
    check_description,
    check_enum,
    check_id,
    check_name,
    check_non_negative,
    check_page,
    check_positive,
    check_str,
    check_tags,
    check_volume_images,
)
from ._base import EndpointBase, parse_model, parse_page

DEFAULT_PAGE_SIZE = 50


def tenant_defaults(session: object) -> TenantDefaults:
    """The :class:`TenantDefaults` of a session (none for other objects)."""
    found = getattr(session, "_defaults", None)
    return found if isinstance(found, TenantDefaults) else TenantDefaults()


def fill_tenancy(
    session: object,
    tenant_id: str | None,
    department_id: str | None,
    resource_group_id: str | None,
) -> tuple[str, str, str | None]:
    """Tenant, department and resource-group ids, the session's defaults
    filling those left ``None`` (or ``""``); a missing tenant or department
    raises :class:`~aioims.ValidationError`."""
    given = TenantDefaults(tenant_id=tenant_id, department_id=department_id)
    defaults = tenant_defaults(session)
    tenant = given.tenant_id or defaults.tenant_id
    department = given.department_id or defaults.department_id
    for value, field, variable in ((tenant, "tenant_id", "IMS_TENANT_ID"),
                                   (department, "department_id", "IMS_DEPARTMENT_ID")):  # fmt: skip
        if value is None:
            raise ValidationError(
                f"{field}: is required: pass it or configure a default ({variable}, "
                f"or {field} in the profile of config.toml)",
                field=field,
            )
    assert tenant is not None and department is not None
    if resource_group_id is None:  # "" stays: explicitly none
        resource_group_id = defaults.resource_group_id
    return tenant, department, resource_group_id


def _image_path(image_id: str, suffix: str = "") -> str:
    return f"/private-images/{quote_segment(check_id(image_id))}{suffix}"


class ImageEndpoints(EndpointBase):
    """Listing, reading and managing images."""

    async def list_images(
        self,
        *,
        current: int = 1,
        size: int = 10,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> Page[Image]:
        """One page of images (public images by default). ``GET /images``"""
        current, size = check_page(current, size)
        envelope = await self._call(
            "GET", "/images", params={"current": current, "size": size},
            timeout=timeout, retry=retry,
        )  # fmt: skip

        async def fetch(number: int) -> Page[Image]:
            return await self.list_images(current=number, size=size, timeout=timeout, retry=retry)

        return parse_page(envelope, Image, fetch, requested=current)

    async def iter_images(
        self,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> AsyncIterator[Image]:
        """Every image, page after page."""
        check_positive(page_size, "page_size")
        page = await self.list_images(current=1, size=page_size, timeout=timeout, retry=retry)
        async for image in page:
            yield image

    async def get_image(
        self,
        image_id: str,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> Image:
        """Details of one image. ``GET /images/{image_id}``"""
        path = f"/images/{quote_segment(check_id(image_id))}"
        envelope = await self._call("GET", path, timeout=timeout, retry=retry)
        return parse_model(envelope, Image)

    async def list_private_images(
        self,
        *,
        current: int = 1,
        size: int = 10,
        filter: Filter | str | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> Page[Image]:
        """One page of the caller's private images, optionally filtered.
        ``GET /private-images``"""
        current, size = check_page(current, size)
        wire_filter = filter_value(filter)
        envelope = await self._call(
            "GET",
            "/private-images",
            params={"filter": wire_filter, "current": current, "size": size},
            request_info=wire_filter is not None,
            timeout=timeout,
            retry=retry,
        )

        async def fetch(number: int) -> Page[Image]:
            return await self.list_private_images(
                current=number, size=size, filter=wire_filter, timeout=timeout, retry=retry
            )

        return parse_page(envelope, Image, fetch, requested=current)

    async def iter_private_images(
        self,
        *,
        filter: Filter | str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> AsyncIterator[Image]:
        """Every private image (matching ``filter``), page after page."""
        check_positive(page_size, "page_size")
        page = await self.list_private_images(
            current=1, size=page_size, filter=filter, timeout=timeout, retry=retry
        )
        async for image in page:
            yield image

    async def update_private_image(
        self,
        image_id: str,
        *,
        boot_mode: BootMode | str,
        cpu_arch: CpuArch | str,
        disk_format: DiskFormat | str,
        instruction: Instruction | str,
        min_disk: int,
        min_ram: int,
        name: str,
        os_type: OsType | str,
        os_version: str,
        platform: Platform | str,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Change a private image's metadata (every field is required;
        ``disk_format`` must stay the same, ``min_disk`` may not shrink).
        ``PUT /private-images/{image_id}``"""
        path = _image_path(image_id)
        body = {
            "bootMode": check_enum(BootMode, boot_mode, "boot_mode"),
            "cpuArch": check_enum(CpuArch, cpu_arch, "cpu_arch"),
            "diskFormat": check_enum(DiskFormat, disk_format, "disk_format"),
            "instruction": check_enum(Instruction, instruction, "instruction"),
            "minDisk": check_non_negative(min_disk, "min_disk"),
            "minRam": check_non_negative(min_ram, "min_ram"),
            "name": check_name(name),
            "osType": check_enum(OsType, os_type, "os_type"),
            "osVersion": check_str(os_version, "os_version", allow_empty=True),
            "platform": check_enum(Platform, platform, "platform"),
        }
        await self._call("PUT", path, json_body=body, timeout=timeout, retry=retry)

    async def create_private_image(
        self,
        spec: ImageSpec | None = None,
        /,
        *,
        name: str | None = None,
        disk_format: DiskFormat | str | None = None,
        min_disk: int | None = None,
        min_ram: int | None = None,
        image_type: ImageType | str | None = None,
        instruction: Instruction | str | None = None,
        cpu_arch: CpuArch | str | None = None,
        os_type: OsType | str | None = None,
        platform: Platform | str | None = None,
        visibility: Visibility | str | None = None,
        usage: Usage | str | None = None,
        department_id: str | None = None,
        tenant_id: str | None = None,
        description: str | None = None,
        image_tags: Sequence[Any] | None = None,
        resource_group_id: str | None = None,
        boot_mode: BootMode | str | None = None,
        os_version: str | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> Image:
        """Create a private image's metadata; it starts in ``queued``.
        ``POST /private-images`` (flat body). Never retried.

        Give an :class:`~aioims.ImageSpec`, keyword arguments (its fields), or
        both (the keywords override the spec's fields).  Fields left out take
        the spec's defaults (``disk_format`` ``qcow2``, ``min_disk`` 1, ...);
        ``tenant_id``/``department_id``/``resource_group_id`` left out (or
        ``None``) come from :attr:`~aioims.IMSSession.defaults`.  Everything
        is validated before the request is sent."""
        given = {
            "name": name, "disk_format": disk_format, "min_disk": min_disk,
            "min_ram": min_ram, "image_type": image_type, "instruction": instruction,
            "cpu_arch": cpu_arch, "os_type": os_type, "platform": platform,
            "visibility": visibility, "usage": usage, "department_id": department_id,
            "tenant_id": tenant_id, "description": description, "image_tags": image_tags,
            "resource_group_id": resource_group_id, "boot_mode": boot_mode,
            "os_version": os_version,
        }  # fmt: skip
        changes = {key: value for key, value in given.items() if value is not None}
        if spec is None:
            if name is None:
                raise ValidationError("name: is required (or pass an ImageSpec)", field="name")
            spec = ImageSpec(**changes)
        elif not isinstance(spec, ImageSpec):
            raise ValidationError(
                f"spec must be an aioims.ImageSpec, got {type(spec).__name__}", field="spec"
            )
        elif changes:
            spec = spec.replace(**changes)
        kwargs = spec.to_create_kwargs(tenant_defaults(self))
        body: dict[str, Any] = {
            "diskFormat": kwargs["disk_format"],
            "minDisk": kwargs["min_disk"],
            "minRam": kwargs["min_ram"],
            "name": kwargs["name"],
            "imageType": kwargs["image_type"],
            "instruction": kwargs["instruction"],
            "cpuArch": kwargs["cpu_arch"],
            "osType": kwargs["os_type"],
            "platform": kwargs["platform"],
            "visibility": kwargs["visibility"],
            "usage": kwargs["usage"],
            "departmentId": kwargs["department_id"],
            "tenantId": kwargs["tenant_id"],
        }
        optional = {
            "description": "description", "image_tags": "imageTags",
            "resource_group_id": "resourceGroupId", "boot_mode": "bootMode",
            "os_version": "osVersion",
        }  # fmt: skip
        body.update({wire: kwargs[key] for key, wire in optional.items() if key in kwargs})
        envelope = await self._call(
            "POST", "/private-images", json_body=body, mode=RetryMode.NEVER,
            timeout=timeout, retry=retry,
        )  # fmt: skip
        return parse_model(envelope, Image)

    async def delete_private_image(
        self,
        image_id: str,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Delete a private image (a shared one must be unshared first).
        ``DELETE /private-images/{image_id}``"""
        await self._call("DELETE", _image_path(image_id), timeout=timeout, retry=retry)

    async def import_image(
        self,
        *,
        name: str,
        min_disk: int,
        min_ram: int,
        cpu_arch: CpuArch | str,
        disk_format: DiskFormat | str,
        os_type: OsType | str,
        os_version: str,
        platform: Platform | str,
        usage: Usage | str,
        instruction: Instruction | str,
        image_url: str,
        department_id: str | None = None,
        tenant_id: str | None = None,
        visibility: Visibility | str = "private",
        image_type: ImageType | str | None = None,
        description: str | None = None,
        image_tags: Sequence[Any] | None = None,
        resource_group_id: str | None = None,
        volume_images: Sequence[VolumeImage | dict[str, Any]] | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> Image:
        """Import a custom image from a URL (system disk, optional data disks).
        ``POST /private-images/import``. Never retried.  Ids left out (or
        ``None``) come from :attr:`~aioims.IMSSession.defaults`."""
        tenant_id, department_id, resource_group_id = fill_tenancy(
            self, tenant_id, department_id, resource_group_id
        )
        wire_visibility = check_enum(Visibility, visibility, "visibility")
        if wire_visibility != Visibility.PRIVATE.value:
            raise ValidationError(
                "visibility: an imported image is always 'private'", field="visibility"
            )
        body: dict[str, Any] = {
            "name": check_name(name),
            "minDisk": check_non_negative(min_disk, "min_disk"),
            "minRam": check_non_negative(min_ram, "min_ram"),
            "cpuArch": check_enum(CpuArch, cpu_arch, "cpu_arch"),
            "diskFormat": check_enum(DiskFormat, disk_format, "disk_format"),
            "osType": check_enum(OsType, os_type, "os_type"),
            "osVersion": check_str(os_version, "os_version", allow_empty=True),
            "platform": check_enum(Platform, platform, "platform"),
            "usage": check_enum(Usage, usage, "usage"),
            "instruction": check_enum(Instruction, instruction, "instruction"),
            "departmentId": check_str(department_id, "department_id"),
            "tenantId": check_str(tenant_id, "tenant_id"),
            "imageUrl": check_str(image_url, "image_url"),
            "visibility": wire_visibility,
        }
        if image_type is not None:
            body["imageType"] = check_enum(ImageType, image_type, "image_type")
        if description is not None:
            body["description"] = check_description(description)
        if image_tags is not None:
            body["imageTags"] = check_tags(image_tags)
        if resource_group_id is not None:
            body["resourceGroupId"] = check_str(
                resource_group_id, "resource_group_id", allow_empty=True
            )
        if volume_images is not None:
            body["volumeImages"] = check_volume_images(volume_images)
        envelope = await self._call(
            "POST", "/private-images/import", json_body=body, mode=RetryMode.NEVER,
            timeout=timeout, retry=retry,
        )  # fmt: skip
        return parse_model(envelope, Image)

    async def wait_for_image(
        self,
        image_id: str,
        *,
        until: ImageStatus | str | Iterable[ImageStatus | str] = ImageStatus.ACTIVE,
        timeout: float = 600.0,
        interval: float = 2.0,
        initial_interval: float | None = None,
    ) -> Image:
        """Poll :meth:`get_image` every ``interval`` seconds until the image's
        status is ``until`` (one status or several) and return it.

        With ``initial_interval`` the first wait is that long and each next
        one doubles, up to ``interval`` (quick answers for quick transitions,
        few calls for slow ones).

        ``killed`` raises :class:`~aioims.ImageKilledError`, ``deleted``
        :class:`~aioims.UploadFailedError` (unless waited for); after
        ``timeout`` seconds :class:`~aioims.WaitTimeoutError`.
        """
        image_id = check_id(image_id)
        wanted_raw = [until] if isinstance(until, str) else list(until)
        if not wanted_raw:
            raise ValidationError("until: give at least one status", field="until")
        wanted = {check_enum(ImageStatus, status, "until") for status in wanted_raw}
        checks = [(timeout, "timeout"), (interval, "interval")]
        if initial_interval is not None:
            checks.append((initial_interval, "initial_interval"))
        for value, what in checks:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValidationError(f"{what} must be > 0, got {value!r}", field=what)
        last_status: str | None = None
        pause = interval if initial_interval is None else min(initial_interval, interval)
        with anyio.move_on_after(timeout):
            while True:
                image = await self.get_image(image_id)
                last_status = image.status.value if image.status is not None else None
                if last_status in wanted:
                    return image
                if last_status == ImageStatus.KILLED.value:
                    detail = f": {image.err_message}" if image.err_message else ""
                    raise ImageKilledError(
                        f"image {image_id} was killed{detail}", image_id=image_id, stage="wait"
                    )
                if last_status == ImageStatus.DELETED.value:
                    raise UploadFailedError(
                        f"image {image_id} was deleted while waiting",
                        image_id=image_id,
                        stage="wait",
                    )
                await anyio.sleep(pause)
                pause = min(pause * 2, interval)
        raise WaitTimeoutError(
            f"image {image_id} not {'/'.join(sorted(wanted))} after {timeout}s "
            f"(last status: {last_status})",
            image_id=image_id,
            last_status=last_status,
        )


def _creatable_visibility(value: Any) -> str:
    wire = check_enum(Visibility, value, "visibility")
    if wire == Visibility.SHARED.value:
        raise ValidationError(
            "visibility: 'shared' cannot be set; use public, private or market",
            field="visibility",
        )
    return wire
