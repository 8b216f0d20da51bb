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
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from functools import cache, partial
from operator import itemgetter
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
    if value.__class__ is not str or not value:  # text first: the usual case
        if value is None or value == "":
            return None
        if isinstance(value, datetime):
            return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        if isinstance(value, (int, float)):
            return datetime.fromtimestamp(value, tz=timezone.utc)
        value = str(value)
    text = value.strip()
    if " " in text:
        text = text.replace(" ", "T", 1)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if "." in text:  # Python 3.10 only takes 3 or 6 fractional digits: pad/trim to 6.
        text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


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
#: The parser of a TolerantEnum field -> what it makes of the str values (and
#: ``None``) it knows: ``parser(v)`` is ``resolved[v]`` for every key ``v``.
_ENUM_VALUES: dict[_Parser, Mapping[Any, Any]] = {}
#: The parsers of ``list[Any]`` fields (a list value: a copy of it).
_LIST_COPIES: set[_Parser] = set()


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

        if item_parser is None:
            _LIST_COPIES.add(parse_list)
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
        # str -> member: the exact values of the members, then the other
        # spellings met (vendor ones: a handful); None and "" mean absent
        resolved: dict[Any, Any] = {**tp._value2member_map_, None: None, "": None}
        most = len(resolved) + 256
        slow = partial(_structure_enum, cls=tp)

        def parse_enum(raw: Any) -> Any:
            # a value met before: one dict lookup (no Enum call)
            if raw.__class__ is not str:
                return slow(raw)
            member = resolved.get(raw, _MISSING)
            if member is _MISSING:
                member = slow(raw)
                if len(resolved) < most:
                    resolved[raw] = member
            return member

        _ENUM_VALUES[parse_enum] = resolved
        return parse_enum
    if tp is int:
        return _parse_int
    hook = converter.get_structure_hook(tp)
    if hook is _structure_datetime:
        return parse_datetime  # what the hook calls, None included
    return lambda raw: None if raw is None else hook(raw, tp)


def _parse_int(raw: Any) -> int | None:
    return None if raw is None else _structure_int(raw, int)


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
    """The structure hook of a wire model (its generated hook, see :func:`_model_hook`)."""
    hook = _HOOKS.get(cls)
    if hook is None:
        hook = _model_hook(cls)
    return cast(T, hook(payload))


def _structure_by_plan(payload: Any, cls: type[T]) -> T:
    """The rules of :func:`_structure_model`, key by key in payload order.

    The generated hook of a model takes this path whenever its shortcut does
    not surely give the same result: a payload that is not a ``dict``, a
    field given under two of its names (which name wins depends on the
    order), or a value its parser rejects (so the error is the same)."""
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


#: Generated structure hooks of the wire models (class -> hook(payload)).
_HOOKS: dict[type, Callable[[Any], Any]] = {}
#: Key sequences a model keeps a generated reader for, at most; and the
#: longest one it generates a reader for.
_MAX_SHAPES = 64
_MAX_SHAPE_KEYS = 256


def _model_hook(cls: type) -> Callable[[Any], Any]:
    """The structure hook of a wire model (made once per model).

    Payloads come as ``dict`` objects with one of a few key sequences (every
    item of a page the same).  The second time the hook sees a key sequence
    it generates a reader for it: :func:`_structure_by_plan` unrolled for
    those keys (see :func:`_shape_reader`).  The reader used last is tried
    first; it answers :data:`_OTHER_SHAPE` to a payload with other keys.
    Anything else (another mapping, a key sequence seen once, too many of
    them) goes through :func:`_structure_by_plan` itself.
    """
    readers: dict[tuple[str, ...], Callable[[dict[str, Any]], Any]] = {}
    seen: set[tuple[str, ...]] = set()
    last: list[Callable[[dict[str, Any]], Any]] = [lambda payload: _OTHER_SHAPE]

    def hook(payload: Any) -> Any:
        if payload.__class__ is not dict:
            return _structure_by_plan(payload, cls)
        obj = last[0](payload)
        if obj is not _OTHER_SHAPE:
            return obj
        shape = tuple(payload)
        reader = readers.get(shape)
        if reader is None:
            if shape not in seen:
                if len(seen) < 4 * _MAX_SHAPES and len(shape) <= _MAX_SHAPE_KEYS:
                    seen.add(shape)
                return _structure_by_plan(payload, cls)
            if len(readers) >= _MAX_SHAPES or len(shape) > _MAX_SHAPE_KEYS:
                return _structure_by_plan(payload, cls)
            reader = readers[shape] = _shape_reader(cls, shape)
        last[0] = reader
        return reader(payload)

    _HOOKS[cls] = hook
    return hook


#: What a generated reader returns for a payload whose keys are not its own.
_OTHER_SHAPE: Any = object()


def _shape_reader(cls: type, shape: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
    """Generate what :func:`_structure_by_plan` does for a ``dict`` whose keys
    are ``shape``, in that order, with the loop unrolled: every value the
    loop would parse goes through the same parser (``str``, ``int``/id,
    list, timestamp and enum values met before are taken inline, as the
    parsers take them), in the same order, a main name overriding an alias
    met before it and an alias after a filled field skipped; unknown keys go
    to ``extra`` in order; missing required fields get the plan's defaults.
    A value a parser rejects sends the payload through
    :func:`_structure_by_plan`, which raises the same error.

    When every key is a field's only name in ``shape`` (no alias beside a
    main name, no unknown key), the order does not matter: the reader takes
    any payload with exactly these keys (by ``len`` and an ``itemgetter``);
    otherwise it takes the keys in this order only.  To another payload it
    answers :data:`_OTHER_SHAPE`.
    """
    plan = _plan(cls)
    namespace: dict[str, Any] = {"_cls": cls, "_str": str, "_int": int, "_list": list}
    namespace["_fromisoformat"] = datetime.fromisoformat
    namespace["_slow"] = _structure_by_plan
    namespace["_OTHER_SHAPE"] = _OTHER_SHAPE
    values = [f"v{n}" for n in range(len(shape))]
    known = [plan.fast[key][0] for key in shape if key in plan.fast]
    if len(known) == len(shape) and len(set(known)) == len(known):  # any order will do
        check = [f"if len(payload) != {len(shape)}:", "    return _OTHER_SHAPE"]
        if shape:
            namespace["_values"] = itemgetter(*shape)
            unpack = f"({', '.join(values)},)" if len(shape) > 1 else values[0]
            check += [
                "try:",
                f"    {unpack} = _values(payload)",
                "except KeyError:",
                "    return _OTHER_SHAPE",
            ]
    else:
        namespace["_shape"] = shape
        check = [
            "if tuple(payload) != _shape:",
            "    return _OTHER_SHAPE",
            f"({', '.join(values)},) = payload.values()",
        ]
    body: list[str] = []
    filled: dict[str, str] = {}  # attribute -> its local
    extra: list[str] = []
    for n, key in enumerate(shape):
        value = values[n]
        found = plan.fast.get(key)
        if found is None:
            namespace[f"k{n}"] = key
            extra.append(f"k{n}: {value}")
            continue
        attr, fast, main = found
        if not main and attr in filled:
            continue  # an alias of a field already filled
        local = filled.setdefault(attr, f"a{len(filled)}")
        parse = plan.keys[key][1]
        namespace[f"p{n}"] = parse
        if parse in _ENUM_VALUES:  # a value met before: what the parser made of it
            namespace[f"m{n}"] = _ENUM_VALUES[parse]
            body += [
                "try:",
                f"    {local} = m{n}[{value}]",
                "except KeyError:",
                f"    {local} = p{n}({value})",
            ]
            continue
        if fast is None:  # a plain str field
            expr = f"{value} if {value}.__class__ is _str or {value} is None else _str({value})"
        elif parse is _parse_int:  # digits: what _structure_int makes of them
            expr = (
                f"{value} if {value}.__class__ is _int else _int({value}) "
                f"if {value}.__class__ is _str and {value}.isdigit() else p{n}({value})"
            )
        elif parse is _structure_id:
            expr = f"{value} if {value}.__class__ is _int else p{n}({value})"
        elif parse in _LIST_COPIES:
            expr = f"{value}[:] if {value}.__class__ is _list else p{n}({value})"
        elif parse is parse_datetime:
            # text that parse_datetime would pass to fromisoformat unchanged,
            # with an offset: its result; anything else goes through it
            expr = (
                f"d if {value}.__class__ is _str and {value} and {value}[-1] not in 'Zz' "
                f"and ' ' not in {value} and '.' not in {value} "
                f"and {value}.strip() is {value} "
                f"and (d := _fromisoformat({value})).tzinfo is not None else p{n}({value})"
            )
        else:
            expr = f"p{n}({value})"
        body.append(f"{local} = {expr}")
    values_of = dict(filled)
    for name, default in plan.defaults.items():
        if name not in filled:
            namespace[f"d_{name}"] = default
            values_of[name] = f"d_{name}"
    if plan.has_extra:
        values_of["extra"] = f"{{{', '.join(extra)}}}"
    if _plain_init(cls):
        # what the attrs __init__ would do: set every field, in order
        namespace["_new"] = object.__new__
        make = ["obj = _new(_cls)"]
        for number, field in enumerate(attrs.fields(cls)):
            if field.name in values_of:
                value = values_of[field.name]
            elif isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
                namespace[f"f{number}"] = field.default.factory
                value = f"f{number}()"
            else:
                namespace[f"f{number}"] = field.default
                value = f"f{number}"
            make.append(f"obj.{field.name} = {value}")
        make.append("return obj")
    else:
        make = [f"return _cls({', '.join(f'{k}={v}' for k, v in values_of.items())})"]
    source = "\n".join(
        [
            "def reader(payload):",
            *(f"    {line}" for line in check),
            "    try:",
            *(f"        {line}" for line in body or ["pass"]),
            "    except Exception:",
            "        return _slow(payload, _cls)  # raises what the plan's parser raised",
            *(f"    {line}" for line in make),
        ]
    )
    code = compile(source, f"<aioims reader of {cls.__name__}>", "exec")
    exec(code, namespace)  # noqa: S102 - the source is generated above from the plan
    reader: Callable[[dict[str, Any]], Any] = namespace["reader"]
    return reader


def _plain_init(cls: type) -> bool:
    """Whether the attrs ``__init__`` of ``cls`` only stores its arguments
    (and defaults) in slots: no validators, converters, pre/post-init hooks,
    factories taking ``self`` or ``__setattr__`` hooks, all fields in
    ``__init__``.  A generated reader then sets the slots itself, which spares
    matching dozens of keyword arguments per model."""
    init = cls.__dict__.get("__init__")
    code = getattr(init, "__code__", None)
    return (
        attrs.has(cls)
        and "__slots__" in cls.__dict__
        and code is not None
        and code.co_filename.startswith("<attrs generated")
        and cls.__setattr__ is object.__setattr__
        and not any(
            hasattr(cls, hook)
            for hook in ("__attrs_pre_init__", "__attrs_post_init__", "__attrs_init__")
        )
        and all(
            f.init
            and f.validator is None
            and f.converter is None
            and not (isinstance(f.default, attrs.Factory) and f.default.takes_self)  # type: ignore[arg-type]
            for f in attrs.fields(cls)
        )
    )


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
    hook = _HOOKS.get(cls)  # a wire model: its hook directly, no dispatch
    if hook is not None:
        return cast(T, hook(payload))
    return converter.structure(payload, cls)


def page_from_wire(
    payload: Any,
    item_cls: type[T],
    *,
    current: int | None = None,
    fetch: Callable[[int], Awaitable[Page[T]]] | None = None,
) -> Page[T]:
    """Build a :class:`Page` from a ``{size, current, total, list}`` payload.

    ``current``: the page number to record instead of the payload's;
    ``fetch``: what the page's ``async for`` fetches the next pages with."""
    if payload.__class__ is not dict and not isinstance(payload, Mapping):
        raise TypeError(f"expected a page object, got {type(payload).__name__}")
    raw_items = payload.get("list") or []
    if not isinstance(raw_items, list):
        raise TypeError("page 'list' is not an array")
    if item_cls in _WIRE_MODELS:  # the model hook directly: no dispatch per item
        hook = _HOOKS.get(item_cls) or _model_hook(item_cls)
        items = [hook(item) for item in raw_items]
    else:
        items = [from_wire(item, item_cls) for item in raw_items]
    wire_current = _structure_int(payload.get("current", 1), int) or 1
    return Page(
        items=items,
        total=_structure_int(payload.get("total", len(items)), int) or 0,
        current=wire_current if current is None else current,
        size=_structure_int(payload.get("size", len(items)), int) or 0,
        fetch=fetch,
    )


def to_wire(obj: Any) -> Any:
    """Unstructure a model (or any value) into the vendor's JSON shape."""
    return converter.unstructure(obj)
