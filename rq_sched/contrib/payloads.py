"""Payload schemas for typed tasks: check a value against a type, turn it into msgpack data and
back.

A schema is a type built from: ``None``, ``bool``, ``int``, ``float`` (an int is accepted),
``str``, ``bytes``, ``Any``, ``list[X]``, ``tuple[X, ...]``, ``dict[str, X]``, ``X | Y``,
``Literal[...]``, dataclasses, TypedDicts, and pydantic v2 models (recognised by their
``model_validate`` / ``model_dump`` methods, so pydantic is never imported here). Anything else
is refused when the schema is declared, not when the first task runs.

* :func:`encode` checks a producer's value deeply (a dataclass does not check its own field
  types) and returns plain data; a dataclass becomes a dict of its fields.
* :func:`decode` checks data read from a task and rebuilds the declared type. Missing
  dataclass fields that have defaults take them (an older producer); unknown keys are refused.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, Literal, Union

from rq_sched.errors import ValidationError

_SCALARS: tuple[type, ...] = (type(None), bool, int, float, str, bytes)


def check_schema(
    schema: object, where: str = "payload", _seen: frozenset[int] = frozenset()
) -> None:
    """Refuse a type that :func:`encode` and :func:`decode` cannot handle.

    Raises:
        ValidationError: ``schema`` (or a part of it, named in the message) is unsupported.
    """
    if schema is Any or schema in _SCALARS or _is_model(schema):
        return
    _seen = _check_not_recursive(schema, where, _seen)
    origin, args = typing.get_origin(schema), typing.get_args(schema)
    if origin is Literal:
        _check_literal(args, where)
        return
    if origin in (Union, types.UnionType, list):
        _check_union(args, where)  # list[X] has one option: never ambiguous
        for arg in args:
            check_schema(arg, where, _seen)
        return
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        check_schema(args[0], where, _seen)
        return
    if origin is dict and args and args[0] is str:
        check_schema(args[1], where, _seen)
        return
    if _is_record(schema):
        for name, hint in _hints(schema).items():
            check_schema(hint, f"{where}.{name}", _seen)
        return
    raise ValidationError(
        f"{where}: {schema!r} cannot be a typed payload; use None, bool, int, float, str, bytes, "
        "Any, list[X], tuple[X, ...], dict[str, X], X | Y, Literal, a dataclass, a TypedDict "
        "or a pydantic model"
    )


def _check_not_recursive(schema: object, where: str, seen: frozenset[int]) -> frozenset[int]:
    """``seen`` with ``schema`` added; a schema already on the path refers to itself."""
    if id(schema) in seen:
        raise ValidationError(
            f"{where}: {schema!r} refers to itself; recursive payload types "
            "are not supported (nest a dict[str, Any] instead)"
        )
    return seen | {id(schema)}


def _check_literal(values: tuple[object, ...], where: str) -> None:
    """Literal values must survive msgpack as they are (an enum member comes back a plain str)."""
    for value in values:
        if type(value) not in _SCALARS:
            raise ValidationError(
                f"{where}: Literal value {value!r} cannot be a typed payload; use None, bool, "
                "int, float, str or bytes values"
            )


def _check_union(options: tuple[object, ...], where: str) -> None:
    """Stored data records no type name, so a union can hold at most one record type (two
    would be told apart only by their fields, and the first that fits would win)."""
    records = [o for o in options if _is_model(o) or _is_record(o)]
    if len(records) > 1:
        names = ", ".join(type_name(r) for r in records)
        raise ValidationError(
            f"{where}: a union of several dataclasses, TypedDicts or models ({names}) cannot be "
            "a typed payload: the stored data does not say which one was sent; use one type "
            "with a Literal 'kind' field, or separate task types"
        )


def encode(value: object, schema: object, where: str = "payload") -> Any:
    """``value`` as msgpack-encodable data, after checking it is a ``schema``.

    Raises:
        ValidationError: ``value`` does not match ``schema``; the message names the field.
    """
    return _convert(value, schema, where, outbound=True)


def decode(data: object, schema: object, where: str = "payload") -> Any:
    """The ``schema`` value that ``data`` (as read from a task) describes.

    Raises:
        ValidationError: ``data`` does not match ``schema``; the message names the field.
    """
    return _convert(data, schema, where, outbound=False)


def type_name(schema: object) -> str:
    """A short readable name for ``schema`` (``Signup``, ``list[int]``)."""
    if schema is type(None):
        return "None"
    return getattr(schema, "__qualname__", None) or repr(schema)


def _convert(value: object, schema: object, where: str, *, outbound: bool) -> Any:
    if schema is Any:
        return value
    if schema in _SCALARS:
        return _scalar(value, schema, where)
    if _is_model(schema):
        return _model(value, schema, where, outbound=outbound)
    origin, args = typing.get_origin(schema), typing.get_args(schema)
    if origin is None:
        return _record(value, schema, where, outbound=outbound)
    return _generic(value, origin, args, where, outbound=outbound)


def _generic(
    value: object, origin: object, args: tuple[Any, ...], where: str, *, outbound: bool
) -> Any:
    if origin is Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        raise _mismatch(where, f"one of {list(args)!r}", value)
    if origin in (Union, types.UnionType):
        return _union(value, args, where, outbound=outbound)
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise _mismatch(where, "a dict with str keys", value)
        return {
            k: _convert(v, args[1], f"{where}[{k!r}]", outbound=outbound) for k, v in value.items()
        }
    # list[X] or tuple[X, ...]: msgpack has only lists, so a tuple is rebuilt on the way in.
    if not isinstance(value, list | tuple):
        raise _mismatch(where, "a list", value)
    items = [
        _convert(item, args[0], f"{where}[{i}]", outbound=outbound) for i, item in enumerate(value)
    ]
    return tuple(items) if origin is tuple and not outbound else items


def _scalar(value: object, schema: type, where: str) -> object:
    if schema is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise _mismatch(where, "a float (this int is too large for one)", value) from None
    if type(value) is not schema:  # exact: a bool is not an int here
        raise _mismatch(where, type_name(schema), value)
    return value


def _union(value: object, options: tuple[object, ...], where: str, *, outbound: bool) -> Any:
    deeper: list[ValidationError] = []
    for option in options:
        try:
            return _convert(value, option, where, outbound=outbound)
        except ValidationError as exc:
            # An option that matched the value's shape and failed inside says more than
            # "expected A | B": report the field that is wrong.
            if str(exc).startswith((f"{where}.", f"{where}[")):
                deeper.append(exc)
    if deeper:
        raise deeper[0]
    raise _mismatch(where, " | ".join(type_name(o) for o in options), value)


def _record(value: object, schema: object, where: str, *, outbound: bool) -> Any:
    hints = _hints(schema)
    if dataclasses.is_dataclass(schema):
        if outbound:
            if not isinstance(value, schema):  # type: ignore[arg-type]
                raise _mismatch(where, type_name(schema), value)
            fields = {name: getattr(value, name) for name in hints}
        else:
            fields = _fields_of(value, schema, hints, where)
        data = {
            k: _convert(v, hints[k], f"{where}.{k}", outbound=outbound) for k, v in fields.items()
        }
        return data if outbound else schema(**data)  # type: ignore[operator]
    fields = _fields_of(value, schema, hints, where)  # a TypedDict is a dict both ways
    return {k: _convert(v, hints[k], f"{where}.{k}", outbound=outbound) for k, v in fields.items()}


def _fields_of(
    value: object, schema: object, hints: dict[str, object], where: str
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _mismatch(where, f"{type_name(schema)} (a dict of its fields)", value)
    unknown = sorted(str(k) for k in value if k not in hints)
    if unknown:
        raise ValidationError(f"{where}: unknown field(s) {unknown} for {type_name(schema)}")
    missing = sorted(set(_required(schema, hints)) - set(value))
    if missing:
        raise ValidationError(f"{where}: missing field(s) {missing} of {type_name(schema)}")
    return dict(value)


def _required(schema: object, hints: dict[str, object]) -> list[str]:
    if dataclasses.is_dataclass(schema):
        return [
            f.name
            for f in dataclasses.fields(schema)
            if f.init
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
    return _typeddict_required(schema)


@functools.cache
def _typeddict_required(schema: type) -> list[str]:
    # Read from the annotations, not __required_keys__: under `from __future__ import
    # annotations` Python 3.11 cannot see NotRequired[...] in a string and calls every key
    # required.
    total = getattr(schema, "__total__", True)
    required = []
    for name, hint in typing.get_type_hints(schema, include_extras=True).items():
        origin = typing.get_origin(hint)
        if origin is typing.Required or (total and origin is not typing.NotRequired):
            required.append(name)
    return sorted(required)


def _model(value: object, schema: Any, where: str, *, outbound: bool) -> Any:
    if outbound:
        if not isinstance(value, schema):
            raise _mismatch(where, type_name(schema), value)
        return value.model_dump(mode="json")
    try:
        return schema.model_validate(value)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ValidationError(f"{where}: not a valid {type_name(schema)}: {exc}") from exc


@functools.cache
def _hints(schema: type) -> dict[str, object]:
    hints = typing.get_type_hints(schema)
    if dataclasses.is_dataclass(schema):
        return {f.name: hints[f.name] for f in dataclasses.fields(schema) if f.init}
    return hints


def _is_record(schema: object) -> bool:
    return isinstance(schema, type) and (
        dataclasses.is_dataclass(schema) or typing.is_typeddict(schema)
    )


def _is_model(schema: object) -> bool:
    return isinstance(schema, type) and all(
        callable(getattr(schema, name, None)) for name in ("model_validate", "model_dump")
    )


def _mismatch(where: str, expected: str, value: object) -> ValidationError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return ValidationError(f"{where}: expected {expected}, got {type(value).__name__} {shown}")
