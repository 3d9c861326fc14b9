"""Strict construction of dataclasses from YAML mappings: every key checked, errors that name it.

:func:`build_dataclass` turns a nested mapping into nested dataclasses, rejecting unknown keys
(with a "did you mean" hint), missing required keys and values of the wrong type
(:func:`coerce`), each as a :class:`ConfigError` naming the dotted key (``data.train_size``).
Nothing here knows the training schema (:mod:`molequi.training.config`).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Union


class ConfigError(ValueError):
    """A bad configuration: unknown, missing or ill-typed key, or an out-of-range value."""


def coerce(value: Any, annotation: Any, key: str) -> Any:
    """``value`` checked against a type annotation (ints are accepted as floats, tuples as lists).

    Supports ``Any``, ``None``, unions, ``Literal``, ``bool``, ``int``, ``float``, ``str``,
    sequences, tuples and mappings of those.

    Raises:
        ConfigError: ``value`` does not fit, naming ``key`` and the expected type.
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        for option in args:
            try:
                return coerce(value, option, key)
            except ConfigError:
                continue
        raise type_error(value, annotation, key)
    if origin is Literal:
        if value in args and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected one of {', '.join(map(repr, args))}, got {value!r}")
    if annotation in (None, type(None)):
        if value is None:
            return None
    elif annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
            if len(value) == len(args):
                return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    elif origin in (list, Sequence, typing.Sequence) or annotation in (list, Sequence):
        if isinstance(value, (list, tuple)):
            item = args[0] if args else Any
            return [coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    elif origin in (dict, Mapping, typing.Mapping) or annotation in (dict, Mapping):
        if isinstance(value, Mapping):
            key_type, value_type = args if args else (Any, Any)
            return {coerce(k, key_type, f"{key} key"): coerce(v, value_type, f"{key}.{k}") for k, v in value.items()}
    else:
        raise TypeError(f"config type {annotation!r} of {key} is not supported")
    raise type_error(value, annotation, key)


def build_dataclass(cls: type, raw: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "config"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys, got {type(raw).__name__} {raw!r}")
    if hasattr(cls, "from_mapping"):  # a section that checks its own keys (e.g. a model's arguments)
        return cls.from_mapping(raw, prefix)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            raise ConfigError(unknown_key(prefix + str(key), key, names, f"in {where}"))
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if f.name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"missing required key {key!r}")
            continue
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            kwargs[f.name] = build_dataclass(hint, raw[f.name], key + ".")
        else:
            kwargs[f.name] = coerce(raw[f.name], hint, key)
    return cls(**kwargs)


def unknown_key(full_key: str, key: Any, known: Sequence[str], where: str) -> str:
    prefix = full_key[: len(full_key) - len(str(key))]
    close = difflib.get_close_matches(str(key), list(known), n=1)
    hint = f"; did you mean {prefix + close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
    return f"unknown key {full_key!r} {where}{hint}"


def type_error(value: Any, annotation: Any, key: str) -> ConfigError:
    return ConfigError(f"{key}: expected {describe(annotation)}, got {type(value).__name__} {value!r}")


def describe(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in (None, type(None)):
        return "null"
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin is tuple:
        return f"a list of {len(args)}" if args and args[-1] is not Ellipsis else "a list"
    if origin in (list, Sequence, typing.Sequence):
        return f"a list of {describe(args[0])}" if args else "a list"
    if origin in (dict, Mapping, typing.Mapping):
        return f"a mapping {describe(args[0])} -> {describe(args[1])}" if args else "a mapping"
    return getattr(annotation, "__name__", str(annotation))


def plain(value: Any) -> Any:
    """Tuples as lists, recursively, so the config dumps as plain YAML."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def deep_copy(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: deep_copy(v) if isinstance(v, Mapping) else v for k, v in raw.items()}
