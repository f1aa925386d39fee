"""Config dataclasses from plain dicts: the one path by which a recipe (YAML plus overrides) and
a saved `sec_config.json` become `TrainConfig` / `ModelConfig`.

The dataclasses check their own values in `__post_init__` (with `check` and `check_choices`),
so a bad value fails the same way whether it comes from a recipe, a saved config or Python;
`from_dict` adds the unknown-key check and says where the bad key or value came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A recipe, override or saved config that does not fit the schema."""


def check(ok: bool, key: str, value: Any, expected: str) -> None:
    """Raises `ValueError("KEY must be EXPECTED, got VALUE")` unless `ok`."""
    if not ok:
        raise ValueError(f"{key} must be {expected}, got {value!r}")


def check_choices(obj: Any) -> None:
    """Checks every `Literal`-typed field of dataclass instance `obj` against its allowed values
    (OmegaConf checks recipes too, but saved configs and Python callers bypass it)."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        hint, value = hints[f.name], getattr(obj, f.name)
        allowed = [
            a
            for h in (hint, *typing.get_args(hint))
            if typing.get_origin(h) is Literal
            for a in typing.get_args(h)
        ]
        optional = type(None) in typing.get_args(hint)
        if allowed and value not in allowed and not (value is None and optional):
            raise ValueError(f"{f.name}: invalid value {value!r}, expected one of {allowed}")


def unknown_key_error(key: str, valid: list[str], source: str, prefix: str) -> ConfigError:
    """The error for a key the schema lacks, naming the closest valid key."""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys: {sorted(valid)}"
    return ConfigError(f"{source}: unknown key '{prefix}{key}'{hint}")


def check_keys(data: Mapping, schema: type, source: str, prefix: str = "") -> None:
    """Raises `ConfigError` for the first key of `data` (nested) that dataclass `schema` lacks."""
    hints = typing.get_type_hints(schema)
    names = [f.name for f in dataclasses.fields(schema)]
    for key, value in data.items():
        if key not in names:
            raise unknown_key_error(str(key), names, source, prefix)
        if dataclasses.is_dataclass(hints[key]) and isinstance(value, Mapping):
            check_keys(value, hints[key], source, f"{prefix}{key}.")


def from_dict(schema: type[T], data: Mapping, source: str, prefix: str = "") -> T:
    """Builds dataclass `schema` from plain data; missing keys take their defaults.

    Args:
        schema (`type`): the dataclass (`TrainConfig`, `ModelConfig`, ...).
        data (`Mapping`): its fields as plain containers; nested dataclasses as nested mappings.
        source (`str`): where the data came from (a file, "command-line override"), for errors.
        prefix (`str`): the dotted key of `data` inside the whole config, for errors.

    Raises:
        ConfigError: an unknown key (with the closest valid one) or a value the dataclass's
            `__post_init__` rejects, as "SOURCE: KEY ...".
    """
    check_keys(data, schema, source, prefix)
    hints = typing.get_type_hints(schema)
    kwargs = {}
    for key, value in data.items():
        if dataclasses.is_dataclass(hints[key]) and isinstance(value, Mapping):
            value = from_dict(hints[key], value, source, f"{prefix}{key}.")
        kwargs[key] = value
    try:
        return schema(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: {prefix}{err}") from err
