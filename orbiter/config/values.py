"""The one check of a settings table's scalar values: known keys, each of its type.

Every table reader (``orbiter.config.settings``, ``orbiter.config.tcp``,
``orbiter.config.stomp``) goes through :func:`scalars`, so an unknown key
or a wrong type gets the same :class:`SettingsError` naming the key
wherever it is (an int is accepted for a float; nan and inf are not);
:func:`check_positive` is the one "must be positive" check.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import fields
from typing import Any

_KINDS: dict[str, type] = {"bool": bool, "int": int, "float": float, "str": str}


class SettingsError(ValueError):
    """A setting is invalid; the message names the key."""


def typed(where: str, value: Any, kind: type) -> Any:
    """``value`` if it is a ``kind`` (an int is taken as a float; nan and inf are not), else
    SettingsError."""
    if kind is float and type(value) in (int, float):
        if not math.isfinite(value):  # TOML has nan and inf; nan passes every "> 0" check
            raise SettingsError(f"'{where}' must be a finite number")
        return float(value)
    if type(value) is not kind:
        raise SettingsError(f"'{where}' must be of type {kind.__name__}")
    return value


def kinds_of(cls: Any) -> dict[str, type]:
    """The scalar type of each field of the settings dataclass ``cls``."""
    return {f.name: _KINDS[str(f.type)] for f in fields(cls)}


def check_positive(settings: Any, name: str, keys: Iterable[str] | None = None) -> None:
    """SettingsError naming the first of ``keys`` (every field of the settings dataclass
    ``settings`` if None) whose value in ``settings`` (table ``name``) is not positive."""
    for key in (f.name for f in fields(settings)) if keys is None else keys:
        if getattr(settings, key) <= 0:
            raise SettingsError(f"'{name}.{key}' must be positive")


def scalars(table: dict[str, Any], name: str, kinds: dict[str, type]) -> dict[str, Any]:
    """The values of table ``name``, each checked against ``kinds`` (which lists every key)."""
    values = {}
    for key, value in table.items():
        if key not in kinds:
            raise SettingsError(f"unknown key '{name}.{key}'")
        values[key] = typed(f"{name}.{key}", value, kinds[key])
    return values
