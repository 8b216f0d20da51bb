"""``aioims import``, ``aioims export`` and ``aioims buckets``."""

from __future__ import annotations

from typing import Any

import click

from ..models import CpuArch, DiskFormat, ImageType, Instruction, OsType, Platform, Usage
from .context import get_state, global_options, run
from .images import choice
from .output import bucket_view, detail_view, record_view, wire
from .render import Column


def _volume(text: str) -> dict[str, Any]:
    url, sep, min_disk = text.rpartition("@")
    if not sep:
        return {"imageUrl": text}
    if not min_disk.isdigit():
        raise click.BadParameter(f"expected URL or URL@MIN_DISK_GIB, got {text!r}")
    return {"imageUrl": url, "minDisk": int(min_disk)}


@click.command("import")
@click.option("--name", required=True, help="Image name (1-128 chars).")
@click.option("--url", "image_url", required=True, metavar="URL",
              help="URL of the system-disk image file to import.")
@click.option("--disk-format", type=choice(DiskFormat), default="qcow2", show_default=True)
@click.option("--min-disk", type=click.IntRange(min=0), default=40, show_default=True,
              help="Minimum disk, GiB.")
@click.option("--min-ram", type=click.IntRange(min=0), default=0, show_default=True,
              help="Minimum RAM, MiB.")
@click.option("--image-type", type=choice(ImageType), default=None)
@click.option("--os-type", type=choice(OsType), default="linux", show_default=True)
@click.option("--os-version", default="", metavar="TEXT")
@click.option("--platform", type=choice(Platform), default="other", show_default=True)
@click.option("--cpu-arch", type=choice(CpuArch), default="x86", show_default=True)
@click.option("--instruction", type=choice(Instruction), default="64-bits", show_default=True)
@click.option("--usage", type=choice(Usage), default="ecs", show_default=True)
@click.option("--description", help="2-256 chars.")
@click.option("--tag", "tags", multiple=True, help="Image tag (repeatable).")
@click.option("--volume", "volumes", multiple=True, metavar="URL[@MIN_DISK]",
              help="A data-disk image URL, optionally with its min disk in GiB (repeatable).")
@click.option("--wait/--no-wait", "wait", default=False, show_default=True,
              help="Wait until the imported image is active.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=3600.0,
              show_default=True, help="Seconds to wait with --wait.")
@global_options
def import_cmd(name: str, image_url: str, tags: tuple[str, ...], volumes: tuple[str, ...],
               wait: bool, timeout: float, **fields: Any) -> None:
    """Import an image from a URL (POST /private-images/import).

    Uses the configured tenant, department and resource group ids.
    JSON: the new image (usually 'saving'; 'active' with --wait).
    """
    state = get_state()
    settings = state.require("tenant_id", "department_id")
    kwargs = {k: v for k, v in fields.items() if v is not None}
    if tags:
        kwargs["image_tags"] = list(tags)
    if volumes:
        kwargs["volume_images"] = [_volume(v) for v in volumes]
    if settings.resource_group_id:
        kwargs["resource_group_id"] = settings.resource_group_id

    async def main() -> dict[str, Any]:
        async with state.session() as ims:
            image = await ims.import_image(
                name=name, image_url=image_url, tenant_id=str(settings.tenant_id),
                department_id=str(settings.department_id), **kwargs,
            )
            if wait:
                image = await ims.wait_for_image(image.image_id, timeout=timeout, interval=1.0)
            result: dict[str, Any] = wire(image)
            return result

    data = run(main)
    state.output.show(detail_view(data))


@click.command("buckets")
@click.argument("image_id")
@global_options
def buckets(image_id: str) -> None:
    """List the object-storage buckets an image can be exported to.

    JSON: {"items": [{"name", "azId", "cellId"}, ...]}.
    """
    state = get_state()

    async def main() -> dict[str, Any]:
        async with state.session() as ims:
            found = await ims.list_export_buckets(image_id)
            return {"items": [wire(b) for b in found]}

    data = run(main)
    state.output.show(bucket_view(data["items"], document=data))


@click.command("export")
@click.argument("image_id")
@click.option("--bucket", "bucket_name", required=True, metavar="NAME",
              help="Target bucket (see `aioims buckets IMAGE_ID`).")
@click.option("--az-id", help="The bucket's AZ id (looked up when omitted).")
@click.option("--cell-id", help="The bucket's cell id (looked up when omitted).")
@global_options
def export_cmd(image_id: str, bucket_name: str, az_id: str | None, cell_id: str | None) -> None:
    """Export an image to an object-storage bucket (POST /custom-images/{id}/export).

    JSON: {"imageId": ID, "bucket": {"name", "azId", "cellId"}, "exported": true}.
    """
    from ..models import ExportBucket

    state = get_state()

    async def main() -> dict[str, Any]:
        async with state.session() as ims:
            bucket = ExportBucket(name=bucket_name, az_id=az_id or "", cell_id=cell_id or "")
            if az_id is None or cell_id is None:
                known = {b.name: b for b in await ims.list_export_buckets(image_id)}
                if bucket_name not in known:
                    names = ", ".join(sorted(known)) or "none"
                    raise click.UsageError(
                        f"bucket {bucket_name!r} is not offered for {image_id} "
                        f"(available: {names}); pass --az-id and --cell-id to force it"
                    )
                found = known[bucket_name]
                bucket = ExportBucket(name=bucket_name, az_id=az_id or found.az_id,
                                      cell_id=cell_id or found.cell_id)
            await ims.export_image(image_id, bucket=bucket)
            return {"imageId": image_id, "bucket": wire(bucket), "exported": True}

    data = run(main)
    columns = (Column("IMAGE ID", "imageId", priority=0),
               Column("BUCKET", "bucket", get=lambda r: r["bucket"]["name"], priority=0))
    state.output.show(record_view(columns, data, data,
                                  f"export of {image_id} to bucket {bucket_name} started"))
