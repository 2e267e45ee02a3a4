"""The option engine: each key of a table is an :class:`OptionSpec` (its TOML type, default and
validator), and :func:`read_options` turns a table into checked values with the key path in every
error. Protocol specs use the same validators for their link options."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, Final, Literal

from gateway.errors import ConfigError

ID_RE: Final = re.compile(r"\A[a-z0-9_-]{1,64}\Z")
"""Gateway ids, link names and unit ids: MQTT topic segments, so a small safe alphabet."""

# --- option tables -----------------------------------------------------------------------------


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()
"""An :class:`OptionSpec` default meaning the key must be given."""

OptionKind = Literal["int", "float", "bool", "str", "str_list", "float_list"]
Validator = Callable[[Any, str], object]
"""``(value already of the spec's kind, key path) -> normalised value``; raises ConfigError."""


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One key of a config table: its TOML type, its default, and what else it must satisfy.

    ``transports`` limits a link option to some transports (``{"listen"}``); ``None`` means any.
    ``doc`` is the sentence the protocol pages show for a link option (Markdown); keys that
    several protocols share are described once in :mod:`gateway.drivers.docs` instead.
    """

    kind: OptionKind
    default: object = REQUIRED
    validate: Validator | None = None
    transports: frozenset[str] | None = None
    doc: str = ""


_KIND_NAMES: Final[Mapping[str, str]] = {
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean (true or false)",
    "str": "a string",
    "str_list": "an array of strings",
    "float_list": "an array of numbers",
}


_TOML_TYPE_NAMES: Final = (
    (bool, "boolean"),  # before int: bool is an int subclass
    (int, "integer"),
    (float, "float"),
    (str, "string"),
    (list, "array"),
    (Mapping, "table"),
    (datetime | date | time, "datetime"),
)


def _type_name(value: object) -> str:
    return next(
        (name for t, name in _TOML_TYPE_NAMES if isinstance(value, t)), type(value).__name__
    )


def wrong_type(key: str, expected: str, value: object) -> ConfigError:
    return ConfigError(key, f"expected {expected}, got {_type_name(value)}")


def _scalar(kind: str, value: object, key: str) -> object:
    if kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind == "float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(key, "must be a finite number")
            return float(value)
    elif kind == "str" and isinstance(value, str):
        return value
    raise wrong_type(key, _KIND_NAMES[kind], value)


def _coerce(kind: OptionKind, value: object, key: str) -> object:
    if kind in ("str_list", "float_list"):
        if not isinstance(value, list):
            raise wrong_type(key, _KIND_NAMES[kind], value)
        item_kind = "str" if kind == "str_list" else "float"
        return tuple(_scalar(item_kind, item, f"{key}[{i}]") for i, item in enumerate(value))
    return _scalar(kind, value, key)


def join_key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def suggestion(key: str, candidates: Collection[str]) -> str:
    close = difflib.get_close_matches(key, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def reject_unknown(
    table: Mapping[str, object],
    path: str,
    allowed: Collection[str],
    explain: Callable[[str], str | None] = lambda _key: None,
) -> None:
    for key in table:
        if key not in allowed:
            reason = explain(key) or "unknown key" + suggestion(key, allowed)
            raise ConfigError(join_key(path, key), reason)


def read_options(
    table: Mapping[str, object], path: str, specs: Mapping[str, OptionSpec]
) -> dict[str, object]:
    """Every key of ``specs`` from ``table``: type-checked, validated, or its default."""
    values: dict[str, object] = {}
    for name, spec in specs.items():
        key = join_key(path, name)
        if name in table:
            value = _coerce(spec.kind, table[name], key)
            values[name] = spec.validate(value, key) if spec.validate else value
        elif spec.default is REQUIRED:
            raise ConfigError(key, "required")
        else:
            values[name] = spec.default
    return values


def as_table(value: object, key: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise wrong_type(key, "a table", value)
    return value


# --- validators --------------------------------------------------------------------------------


def identifier(value: str, key: str) -> str:
    if not ID_RE.match(value):
        raise ConfigError(key, f"{value!r} is not an id: use 1 to 64 of a-z 0-9 _ -")
    return value


def non_empty(value: str, key: str) -> str:
    if not value:
        raise ConfigError(key, "must not be empty")
    return value


def int_range(low: int, high: int) -> Validator:
    def check(value: int, key: str) -> int:
        if not low <= value <= high:
            raise ConfigError(key, f"must be between {low} and {high}, got {value}")
        return value

    return check


def float_range(low: float, high: float) -> Validator:
    def check(value: float, key: str) -> float:
        if not low <= value <= high:
            raise ConfigError(key, f"must be within {low:g}..{high:g}, got {value:g}")
        return value

    return check


def positive(value: float, key: str) -> float:
    if value <= 0:
        raise ConfigError(key, f"must be greater than 0, got {value:g}")
    return value


def one_of(*choices: object, fold: Callable[[Any], Any] = lambda v: v) -> Validator:
    def check(value: object, key: str) -> object:
        folded = fold(value)
        if folded not in choices:
            listed = ", ".join(str(c) for c in choices)
            raise ConfigError(key, f"must be one of {listed}, got {value!r}")
        return folded

    return check


def each(check: Validator, *, max_items: int | None = None) -> Validator:
    def check_all(values: tuple[object, ...], key: str) -> tuple[object, ...]:
        if max_items is not None and len(values) > max_items:
            raise ConfigError(key, f"at most {max_items} entries, got {len(values)}")
        return tuple(check(value, f"{key}[{i}]") for i, value in enumerate(values))

    return check_all


def mqtt_topic_prefix(value: str, key: str) -> str:
    if not value or value.startswith("/") or value.endswith("/") or "//" in value:
        raise ConfigError(key, "must be topic levels separated by single slashes, like fieldlink")
    if any(ch in value for ch in "+#\0") or value.startswith("$"):
        raise ConfigError(key, "must not contain + # or NUL, nor start with $")
    return value


def as_int(value: object) -> int:
    assert isinstance(value, int)
    return value


def as_float(value: object) -> float:
    assert isinstance(value, float | int)
    return float(value)


def as_words(value: object) -> tuple[str, ...]:
    assert isinstance(value, tuple | list)
    return tuple(str(word) for word in value)


def address_list(rule: Callable[[str], str]) -> Validator:
    """A list of device addresses, each checked and normalised by ``rule``."""

    def check(value: str, key: str) -> str:
        try:
            return rule(value)
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None

    return each(check)
