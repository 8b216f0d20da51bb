"""The single cattrs converter: wire (camelCase JSON) <-> attrs models.

Vendor quirks handled here, in one place:

* field names are camelCase on the wire, snake_case in Python;
* ``describe`` (responses) and ``description`` (requests) both fill
  ``Image.description``; ``imageTags`` and ``tags`` both fill
  ``Image.image_tags``, and ``null`` becomes ``[]``;
* ``upload-prepare`` says ``image_url`` (snake) beside camelCase keys;
* ``progress`` arrives as ``"100"``, ``"0%"`` or ``0``; integers may arrive as
  strings; ``""`` means "absent" for numbers, enums and timestamps;
* ``id`` is an int in most payloads and a string in one: digit strings become
  ints, anything else is kept as a string;
* timestamps are RFC 3339 with ``Z`` or an offset, with or without fractions;
  naive ones are taken as UTC;
* enums are tolerant (see :mod:`aioims.models.enums`);
* unknown fields are kept in ``extra`` and written back by :func:`to_wire`.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from functools import cache, partial
from typing import Any, TypeVar, cast

import attrs
import cattrs

from .enums import TolerantEnum
from .image import Image, VolumeImage
from .page import Page
from .share import ExportBucket, ImageShare
from .upload import UploadTarget

T = TypeVar("T")

converter = cattrs.Converter()

_WIRE_MODELS: tuple[type, ...] = (Image, VolumeImage, ImageShare, ExportBucket, UploadTarget)

# Extra wire names accepted on input (wire name -> attribute name).
_INPUT_ALIASES: dict[type, dict[str, str]] = {
    Image: {
        "describe": "description",
        "tags": "image_tags",
        "instruction": "instructions",
        "volumelImages": "volume_images",
    },
    UploadTarget: {"image_url": "image_url", "imageUrl": "image_url"},
}
# Wire name written by to_wire when it differs from the camelCase of the attribute.
_OUTPUT_NAMES: dict[type, dict[str, str]] = {
    Image: {"description": "describe"},
    UploadTarget: {"image_url": "image_url"},
}
# Attributes never written by to_wire (not part of the vendor payload).
_LOCAL_ONLY: dict[type, frozenset[str]] = {UploadTarget: frozenset({"expires_at"})}


def camel(name: str) -> str:
    """``min_disk`` -> ``minDisk``."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@cache
def _input_names(cls: type) -> dict[str, str]:
    names: dict[str, str] = {}
    for field in attrs.fields(cls):
        if field.name == "extra":
            continue
        names[camel(field.name)] = field.name
        names[field.name] = field.name
    names.update(_INPUT_ALIASES.get(cls, {}))
    return names


@cache
def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in attrs.fields(cls)}


_FRACTION = re.compile(r"\.(\d+)")


def parse_datetime(value: Any) -> datetime | None:
    """Parse an RFC 3339 timestamp into an aware ``datetime`` (naive -> UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, (int, float)):
        parsed = datetime.fromtimestamp(value, tz=timezone.utc)
    else:
        text = str(value).strip().replace(" ", "T", 1)
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        # Python 3.10 only takes 3 or 6 fractional digits: pad/trim to 6.
        text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
        parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def format_datetime(value: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and ``Z``, as the service writes it."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    utc = value.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _structure_int(value: Any, _: type) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    text = str(value).strip().rstrip("%").strip()
    if text == "":
        return None
    return int(float(text)) if "." in text else int(text)


def _structure_bool(value: Any, _: type) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("", "null", "none"):
        return None
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _structure_enum(value: Any, cls: type[TolerantEnum]) -> TolerantEnum | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        member = cls._value2member_map_.get(value)  # the exact value: no Enum call
        if member is not None:
            return cast(TolerantEnum, member)
    return cls(str(value))


def _structure_datetime(value: Any, _: type) -> datetime | None:
    return parse_datetime(value)


def _structure_id(value: Any) -> int | str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text) if text.isdigit() else text


_Parser = Callable[[Any], Any]
_MISSING: Any = object()


@attrs.frozen
class _ModelPlan:
    """How to build one model: wire key -> (attribute, parser), computed once."""

    keys: dict[str, tuple[str, _Parser]]
    main_keys: frozenset[str]
    has_extra: bool
    defaults: dict[str, Any]
    #: wire key -> (attribute, parser or None for a plain ``str`` field, is a main key)
    fast: dict[str, tuple[str, _Parser | None, bool]] = attrs.field(factory=dict)


def _parser_for(tp: Any, attr: str) -> _Parser:
    """A one-argument function turning a wire value into a value of ``tp``."""
    if attr == "id":
        return _structure_id
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp) or (Any,)
        item_parser = None if item is Any else _parser_for(item, "")

        def parse_list(raw: Any) -> list[Any]:
            if raw is None:
                return []
            values = raw if isinstance(raw, list) else [raw]
            return values[:] if item_parser is None else [item_parser(v) for v in values]

        return parse_list
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(args) == 1 and type(None) in typing.get_args(tp):
        # every parser below maps None (and "" where that means absent) itself
        return _parser_for(args[0], attr)
    if tp is Any or typing.get_origin(tp) is dict:
        return lambda raw: raw
    if tp is str:
        return lambda raw: raw if raw is None or isinstance(raw, str) else str(raw)
    if isinstance(tp, type) and issubclass(tp, TolerantEnum):
        members = tp._value2member_map_
        tolerated: dict[str, Any] = {}  # non-exact strings already resolved
        slow = partial(_structure_enum, cls=tp)

        def parse_enum(raw: Any) -> Any:
            # the exact value of a member: one dict lookup (no Enum call)
            if raw.__class__ is not str:
                return slow(raw)
            member = members.get(raw, _MISSING)
            if member is _MISSING:
                member = tolerated.get(raw, _MISSING)
                if member is _MISSING:
                    member = slow(raw)
                    if len(tolerated) < 256:  # vendor spellings: a handful
                        tolerated[raw] = member
            return member

        return parse_enum
    if tp is int:
        return lambda raw: None if raw is None else _structure_int(raw, int)
    hook = converter.get_structure_hook(tp)
    return lambda raw: None if raw is None else hook(raw, tp)


@cache
def _plan(cls: type) -> _ModelPlan:
    types = _field_types(cls)
    parsers = {name: _parser_for(tp, name) for name, tp in types.items() if name != "extra"}
    keys = {key: (attr, parsers[attr]) for key, attr in _input_names(cls).items()}
    main = frozenset(k for k, (attr, _) in keys.items() if k in (attr, camel(attr)))
    defaults = {
        f.name: "" if types[f.name] is str else None
        for f in attrs.fields(cls)
        if f.default is attrs.NOTHING
    }
    fast = {
        key: (attr, None if types[attr] in (str, str | None) else parse, key in main)
        for key, (attr, parse) in keys.items()
    }
    return _ModelPlan(keys, main, "extra" in types, defaults, fast)


def _structure_model(payload: Any, cls: type[T]) -> T:
    if isinstance(payload, cls):
        return payload
    if not isinstance(payload, Mapping):
        raise TypeError(f"expected a JSON object for {cls.__name__}, got {type(payload).__name__}")
    plan = _plan(cast(type, cls))
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    lookup = plan.fast.get
    for key, raw in payload.items():
        found = lookup(key)
        if found is None:
            extra[key] = raw
            continue
        attr, parse, main = found
        if not main and attr in kwargs:
            continue  # an alias of a field already filled under its main name
        if parse is None:  # a str field
            kwargs[attr] = raw if raw is None or raw.__class__ is str else str(raw)
        else:
            kwargs[attr] = parse(raw)
    if plan.has_extra:
        kwargs["extra"] = extra
    for name, default in plan.defaults.items():
        if name not in kwargs:
            kwargs[name] = default
    return cls(**kwargs)


def _unstructure_model(obj: Any) -> dict[str, Any]:
    cls = type(obj)
    renames = _OUTPUT_NAMES.get(cls, {})
    skip = _LOCAL_ONLY.get(cls, frozenset())
    out: dict[str, Any] = {}
    for field in attrs.fields(cls):
        if field.name == "extra" or field.name in skip:
            continue
        out[renames.get(field.name, camel(field.name))] = to_wire(getattr(obj, field.name))
    out.update(getattr(obj, "extra", {}) or {})
    return out


converter.register_structure_hook(int, _structure_int)
converter.register_structure_hook(bool, _structure_bool)
converter.register_structure_hook(datetime, _structure_datetime)
converter.register_structure_hook_func(
    lambda t: isinstance(t, type) and issubclass(t, TolerantEnum), _structure_enum
)
# TolerantEnums are ``str`` subclasses: cattrs would otherwise pick its built-in
# ``str`` hook (plain ``cls(value)``) before the predicate above, turning ``""``
# into a pseudo-member instead of ``None``.
converter.register_structure_hook(TolerantEnum, _structure_enum)
converter.register_structure_hook_func(lambda t: t in _WIRE_MODELS, _structure_model)
converter.register_unstructure_hook_func(lambda t: t in _WIRE_MODELS, _unstructure_model)
converter.register_unstructure_hook(datetime, format_datetime)
converter.register_unstructure_hook(TolerantEnum, lambda e: e.value)


def from_wire(payload: Any, cls: type[T]) -> T:
    """Build a model from a decoded JSON payload."""
    return converter.structure(payload, cls)


def page_from_wire(payload: Any, item_cls: type[T]) -> Page[T]:
    """Build a :class:`Page` from a ``{size, current, total, list}`` payload."""
    if not isinstance(payload, Mapping):
        raise TypeError(f"expected a page object, got {type(payload).__name__}")
    raw_items = payload.get("list") or []
    if not isinstance(raw_items, list):
        raise TypeError("page 'list' is not an array")
    if item_cls in _WIRE_MODELS:  # the model hook directly: no dispatch per item
        items = [_structure_model(item, item_cls) for item in raw_items]
    else:
        items = [from_wire(item, item_cls) for item in raw_items]
    return Page(
        items=items,
        total=_structure_int(payload.get("total", len(items)), int) or 0,
        current=_structure_int(payload.get("current", 1), int) or 1,
        size=_structure_int(payload.get("size", len(items)), int) or 0,
    )


def to_wire(obj: Any) -> Any:
    """Unstructure a model (or any value) into the vendor's JSON shape."""
    return converter.unstructure(obj)
