"""The one loader of YAML configs: a config dataclass's fields (name, type, default) are its YAML
form, nested dataclasses (and lists of them) nested mappings. A field's metadata may say:

- ``path``: a relative path in a YAML file is relative to that file's folder;
- ``min`` / ``max``: bounds of a number (the command line checks the same bounds).

The command-line side of the same fields is ``conrec.cli.options.config_options``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config that does not fit its dataclass: what is wrong, and where."""


def load_yaml(cls: type[T], path: str | Path, **overrides: Any) -> T:
    """``cls`` from a YAML file, with ``overrides`` (those not None) on top; unknown keys are
    errors, not silently ignored."""
    path = Path(path)
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config file is a mapping of key: value")
    raw.update({key: value for key, value in overrides.items() if value is not None})
    return from_dict(cls, raw, where=str(path), base=path.parent)


def from_dict(cls: type[T], raw: Mapping[str, Any], *, where: str, base: Path | None = None) -> T:
    """``cls`` from a mapping (a parsed YAML file): nested dataclasses (and lists of them) from
    nested mappings, ``path`` fields resolved from ``base``, bounds checked."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {raw!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    if unknown := sorted(set(raw) - set(known)):
        raise ConfigError(f"{where}: unknown {cls.__name__} keys {unknown}; known: {sorted(known)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in raw.items():
        field, kind = known[name], _unwrap_optional(hints[name])
        inner = f"{where}: {name}"
        if dataclasses.is_dataclass(kind) and isinstance(value, Mapping):
            value = from_dict(kind, value, where=inner, base=base)
        elif typing.get_origin(kind) is list and isinstance(value, list):
            [item] = typing.get_args(kind) or [Any]
            if dataclasses.is_dataclass(item):
                value = [from_dict(item, v, where=f"{inner}[{i}]", base=base)
                         for i, v in enumerate(value)]  # fmt: skip
        elif field.metadata.get("path") and base is not None and isinstance(value, str):
            value = str(base / value) if not Path(value).is_absolute() else value
        elif typing.get_origin(kind) is Literal and value not in typing.get_args(kind):
            raise ConfigError(f"{inner}: {value!r} is not one of {typing.get_args(kind)}")
        _check_bounds(field, value, inner)
        values[name] = value
    missing = [
        f"{name} ({field.metadata.get('help', 'required')})"
        for name, field in known.items()
        if field.init
        and name not in values
        and field.default is dataclasses.MISSING
        and field.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: {cls.__name__} needs {', '.join(missing)}")
    return cls(**values)


def _check_bounds(field: dataclasses.Field, value: Any, where: str) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    low, high = field.metadata.get("min"), field.metadata.get("max")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"{where}: {value} is outside [{low}, {high}]")


def _unwrap_optional(kind: Any) -> Any:
    """``X | None`` -> ``X``; any other type as it is."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return kind
