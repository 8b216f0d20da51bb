"""``aioims images list|show|update|delete|wait``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..errors import ValidationError
from ..models import (
    BootMode,
    CpuArch,
    DiskFormat,
    ImageStatus,
    ImageType,
    Instruction,
    OsType,
    Platform,
    Usage,
)
from .context import delete_each, get_state, global_options, run, usage_error, validation_message
from .output import detail_view, image_view, page_footer, page_json, wire

F = TypeVar("F", bound=Callable[..., Any])


def choice(enum_cls: Any) -> click.Choice[str]:
    """A case-insensitive choice over the declared members of a model enum."""
    return click.Choice([m.value for m in enum_cls], case_sensitive=False)


def metadata_options(*, upload: bool) -> Callable[[F], F]:
    """The image metadata options of ``upload`` and ``images create``."""
    specs: list[tuple[tuple[str, ...], dict[str, Any]]] = [
        (("--name",), {"help": "Image name (one FILE only; default: the file name)."}
         if upload else {"required": True, "help": "Image name (1-128 chars)."}),
        (("--description",), {"help": "2-256 chars."}),
        (("--disk-format",), {"type": choice(DiskFormat), "help":
                              "raw or qcow2 (default: detected from the file header)."}
         if upload else {"type": choice(DiskFormat), "default": "qcow2", "show_default": True}),
        (("--min-disk",), {"type": click.IntRange(min=0), "help":
                           "Minimum disk in GiB (default: just above the (virtual) disk size)."}
         if upload else {"type": click.IntRange(min=0), "default": 1, "show_default": True,
                         "help": "Minimum disk, GiB."}),
        (("--min-ram",), {"type": click.IntRange(min=0), "default": 0, "show_default": True,
                          "help": "Minimum RAM, MiB."}),
        (("--image-type",), {"type": choice(ImageType), "default": "os_image",
                             "show_default": True}),
        (("--os-type",), {"type": choice(OsType), "default": "linux", "show_default": True}),
        (("--os-version",), {"metavar": "TEXT"}),
        (("--platform",), {"type": choice(Platform), "default": "other", "show_default": True}),
        (("--cpu-arch",), {"type": choice(CpuArch), "default": "x86", "show_default": True}),
        (("--instruction",), {"type": choice(Instruction), "default": "64-bits",
                              "show_default": True}),
        (("--usage",), {"type": choice(Usage), "default": "ecs", "show_default": True}),
        (("--boot-mode",), {"type": choice(BootMode)}),
        (("--visibility",), {"type": click.Choice(["private", "public", "market"]),
                             "default": "private", "show_default": True}),
        (("--tag", "tags"), {"multiple": True, "help": "Image tag (repeatable)."}),
    ]

    def decorate(func: F) -> F:
        for decls, kwargs in reversed(specs):
            func = click.option(*decls, **kwargs)(func)
        return func

    return decorate


def create_kwargs(fields: dict[str, Any], tags: tuple[str, ...]) -> dict[str, Any]:
    """``create_private_image`` keyword arguments: the given metadata plus the
    configured tenant/department/resource group ids."""
    state = get_state()
    settings = state.require("tenant_id", "department_id")
    kwargs = {k: v for k, v in fields.items() if v is not None}
    kwargs.update(tenant_id=settings.tenant_id, department_id=settings.department_id)
    if settings.resource_group_id:
        kwargs["resource_group_id"] = settings.resource_group_id
    if tags:
        kwargs["image_tags"] = list(tags)
    return kwargs


@click.group()
def images() -> None:
    """List, show, update, delete and wait for images."""


@images.command("list")
@click.option("--public", is_flag=True, help="Public images (GET /images) instead of private.")
@click.option("--filter", "filter_", metavar="EXPR",
              help="Private list filter: clauses field:op:value joined by '|' "
                   "(op lk = contains, eq = equals), e.g. 'name:lk:web|imageId:eq:img-…'.")
@click.option("--name-contains", metavar="TEXT", help="Shortcut for --filter name:lk:TEXT.")
@click.option("--all", "walk_all", is_flag=True, help="Walk every page.")
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True,
              help="Page number (1-based).")
@click.option("--size", type=click.IntRange(min=1), default=10, show_default=True,
              help="Page size.")
@global_options
def list_cmd(public: bool, filter_: str | None, name_contains: str | None, walk_all: bool,
             page: int, size: int) -> None:
    """List private images (or public ones with --public).

    Columns: id, name, status, imageType, diskFormat, size, minDisk, osType,
    visibility, createdAt (and any other image field with -c).
    JSON: {"items": [image, ...], "total": N, "current": PAGE, "size": SIZE}.
    """
    from ..pagination import Filter

    state = get_state()
    if public and (filter_ or name_contains):
        raise click.UsageError("--filter/--name-contains apply to private images only")
    flt = None
    if filter_ or name_contains:
        try:
            flt = Filter.parse(filter_ or "")
            if name_contains:
                flt = flt.name_contains(name_contains)
        except ValidationError as exc:
            usage_error(state, f"--filter: {validation_message(exc)} "
                               "(expected field:op:value clauses joined by '|', op lk or eq)")

    async def main() -> dict[str, Any]:
        async with state.session() as ims:
            if public:
                first = await ims.list_images(current=page, size=size)
            else:
                first = await ims.list_private_images(current=page, size=size, filter=flt)
            items = list(first.items)
            if walk_all:
                nxt = await first.next_page()
                while nxt is not None:
                    items.extend(nxt.items)
                    nxt = await nxt.next_page()
            return page_json(items, first.total, first.current, first.size or size)

    data = run(main)
    footer = page_footer(len(data["items"]), data["total"], data["current"], data["size"],
                         walk_all)
    state.output.show(image_view(data["items"], footer=footer, document=data))


@images.command("show")
@click.argument("image_id")
@global_options
def show_cmd(image_id: str) -> None:
    """Show one image (GET /images/{id}).  JSON: the image object."""
    state = get_state()

    async def main() -> dict[str, Any]:
        async with state.session() as ims:
            result: dict[str, Any] = wire(await ims.get_image(image_id))
            return result

    data = run(main)
    state.output.show(detail_view(data))


@images.command("create")
@metadata_options(upload=False)
@global_options
def create_cmd(tags: tuple[str, ...], **fields: Any) -> None:
    """Create a private image's metadata only (POST /private-images); it stays
    'queued' until a file is uploaded with `aioims upload FILE --image-id ID`.

    Uses the configured tenant, department and resource group ids.
    JSON: the new image.
    """
    state = get_state()
    kwargs = create_kwargs(fields, tags)

    async def main() -> dict[str, Any]:
        async with state.session() as ims:
            result: dict[str, Any] = wire(await ims.create_private_image(**kwargs))
            return result

    data = run(main)
    state.output.show(detail_view(data))


@images.command("update")
@click.argument("image_id")
@click.option("--name", help="New name (1-128 chars).")
@click.option("--min-disk", type=click.IntRange(min=0), help="Minimum disk, GiB (may not shrink).")
@click.option("--min-ram", type=click.IntRange(min=0), help="Minimum RAM, MiB.")
@click.option("--os-type", type=choice(OsType))
@click.option("--os-version", metavar="TEXT")
@click.option("--platform", type=choice(Platform))
@click.option("--cpu-arch", type=choice(CpuArch))
@click.option("--instruction", type=choice(Instruction))
@click.option("--boot-mode", type=choice(BootMode))
@global_options
def update_cmd(image_id: str, **changes: Any) -> None:
    """Update a private image's metadata (PUT /private-images/{id}).

    The API wants every field: unchanged ones are taken from the current image.
    JSON: the image after the update.
    """
    state = get_state()
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        raise click.UsageError("nothing to update: give at least one option")

    async def main() -> dict[str, Any]:
        async with state.session() as ims:
            current = await ims.get_image(image_id)
            fields: dict[str, Any] = {
                "name": current.name,
                "min_disk": current.min_disk or 0,
                "min_ram": current.min_ram or 0,
                "os_type": current.os_type or OsType.OTHER,
                "os_version": current.os_version or "",
                "platform": current.platform or Platform.OTHER,
                "cpu_arch": current.cpu_arch or CpuArch.X86,
                "instruction": current.instructions or Instruction.BITS_64,
                "boot_mode": current.boot_mode or BootMode.BIOS,
                "disk_format": current.disk_format,
            }
            fields.update(changes)
            await ims.update_private_image(image_id, **fields)
            result: dict[str, Any] = wire(await ims.get_image(image_id))
            return result

    data = run(main)
    state.output.show(detail_view(data))


@images.command("delete")
@click.argument("image_ids", metavar="IMAGE_ID...", nargs=-1, required=True)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation on a terminal.")
@global_options
def delete_cmd(image_ids: tuple[str, ...], yes: bool) -> None:
    """Delete private images (DELETE /private-images/{id}).

    Goes on past a failure and reports each image; exit 1 if any failed.
    JSON: {"deleted": [IMAGE_ID, ...], "failed": [{"id", "error"}]}.
    """
    state = get_state()
    if not yes and not state.json_mode and sys.stdin.isatty():
        click.confirm(f"Delete {len(image_ids)} image(s): {', '.join(image_ids)}?", abort=True)
    delete_each(image_ids, lambda ims, i: ims.delete_private_image(i), "")


@images.command("wait")
@click.argument("image_id")
@click.option("--status", "statuses", multiple=True, type=choice(ImageStatus),
              default=["active"], show_default=True,
              help="Status to wait for (repeatable); 'killed' always ends the wait.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=3600.0,
              show_default=True, help="Seconds before giving up (exit 1).")
@click.option("--interval", type=click.FloatRange(min=0.05), default=2.0, show_default=True,
              help="Seconds between polls.")
@global_options
def wait_cmd(image_id: str, statuses: tuple[str, ...], timeout: float, interval: float) -> None:
    """Poll an image until it reaches a status (default: active).

    Exit 1 when it ends in 'killed' or 'deleted' (unless asked for) or on timeout.
    JSON: the image object.
    """
    state = get_state()

    async def main() -> dict[str, Any]:
        async with state.session() as ims:
            image = await ims.wait_for_image(
                image_id, until=list(statuses), timeout=timeout, interval=interval
            )
            result: dict[str, Any] = wire(image)
            return result

    data = run(main)
    state.output.show(detail_view(data))
