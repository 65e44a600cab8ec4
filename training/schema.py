"""Typed YAML for training configs: nested frozen dataclasses, validated at the file boundary.

Every field carries its documentation in `field(metadata={"doc": ...})`, so one source gives the checks,
the error messages and the commented example config (`harness train sft --example-config`). Unknown keys
raise and list the known ones (a typo never silently falls back to a default).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin

from harness.errors import UsageError

T = TypeVar("T")


def doc(text: str, default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A dataclass field with its documentation."""
    return dataclasses.field(default=default, metadata={"doc": text}, **kwargs)


def _type_name(hint: Any) -> str:
    origin = get_origin(hint)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(hint))
    if origin is tuple:
        return f"list of {_type_name(get_args(hint)[0])}"
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def _convert(value: Any, hint: Any, where: str, source: str) -> Any:
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, where, source)
            except UsageError as error:
                errors.append(error)
        raise errors[0]
    if origin is Literal:
        if value not in get_args(hint):
            raise _bad(source, where, f"must be one of {_type_name(hint)}, not {value!r}")
        return value
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise _bad(source, where, f"must be a list, not {value!r}")
        (item,) = get_args(hint)[:1]
        return tuple(_convert(v, item, f"{where}[{i}]", source) for i, v in enumerate(value))
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise _bad(source, where, f"must be a mapping of {_type_name(hint)} fields, not {value!r}")
        return build(typing.cast(type[Any], hint), value, source, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise _bad(source, where, f"must be true or false, not {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(source, where, f"must be a whole number, not {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad(source, where, f"must be a number, not {value!r}")
        try:
            return float(value)
        except OverflowError:  # an integer with hundreds of digits
            raise _bad(source, where, "is too large a number") from None
    if hint is str:
        if not isinstance(value, str):
            raise _bad(source, where, f"must be a string, not {value!r}")
        return value
    raise TypeError(f"schema: unsupported field type {hint!r} at {where}")


def _bad(source: str, where: str, problem: str) -> UsageError:
    return UsageError(
        f"{source}: '{where}' {problem}.", "`harness train sft --example-config` prints every field."
    )


def build(cls: type[T], mapping: Mapping[str, Any], source: str, where: str = "") -> T:
    """cls(**mapping) with every value checked against the field's type; nested dataclasses recurse."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(mapping) - set(fields), key=str)  # YAML keys need not be strings
    if unknown:
        prefix = f"{where}." if where else ""
        raise UsageError(
            f"{source}: unknown key{'s' if len(unknown) > 1 else ''} "
            + ", ".join(f"'{prefix}{k}'" for k in unknown)
            + ".",
            f"Known keys{' under ' + where if where else ''}: {', '.join(fields)}.",
        )
    values = {}
    for name, value in mapping.items():
        values[name] = _convert(value, hints[name], f"{where}.{name}" if where else name, source)
    missing = [
        n
        for n, f in fields.items()
        if n not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise UsageError(
            f"{source}: missing required key(s) {', '.join(missing)}{' in ' + where if where else ''}."
        )
    try:
        return cls(**values)
    except ValueError as error:  # __post_init__ checks of combinations of fields
        raise UsageError(f"{source}: {error}") from None


def to_record(value: Any) -> Any:
    """Dataclasses -> plain JSON-able values (tuples become lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_record(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [to_record(v) for v in value]
    return value


def _yaml_scalar(value: Any) -> str:
    import yaml  # type: ignore[import-untyped]

    text: str = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def example_yaml(cls: type[Any], values: Any = None, indent: int = 0) -> str:
    """A commented YAML document of every field with its default (or the given values)."""
    hints = typing.get_type_hints(cls)
    lines = []
    pad = "  " * indent
    for f in dataclasses.fields(cls):
        text = f.metadata.get("doc", "")
        current = getattr(values, f.name) if values is not None else _default(f)
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            lines.append(f"{pad}# {text}")
            lines.append(f"{pad}{f.name}:")
            lines.append(example_yaml(typing.cast(type[Any], hint), current, indent + 1))
            continue
        shown = "REQUIRED" if current is dataclasses.MISSING else _yaml_scalar(to_record(current))
        lines.append(f"{pad}# {text} ({_type_name(hint)})")
        lines.append(f"{pad}{f.name}: {shown}")
    return "\n".join(lines)


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING
