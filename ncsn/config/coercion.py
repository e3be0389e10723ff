"""Turning one raw ``params.yaml`` section into its dataclass: key checks, type checks, conversion.

The expected type of every key is read from the dataclass's type hints; messages name the
file, the key, the bad value and what the type allows.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any, Literal, Union

from ncsn.config.errors import ConfigError

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def key_text(key: Any) -> str:
    """A key as it appears in one-line messages: as is when printable text, else its repr."""
    return key if isinstance(key, str) and key.isprintable() else repr(key)


def suggest(key: Any, allowed: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """Return (ok, value converted to ``tp``); ints are accepted where floats are."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return (value in typing.get_args(tp), value)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, converted = _coerce(value, arg)
            if ok:
                return True, converted
        return False, value
    if origin is tuple:  # tuple[X, ...]: a list of X
        if not isinstance(value, (list, tuple)):
            return False, value
        items = [_coerce(v, typing.get_args(tp)[0]) for v in value]
        if all(ok for ok, _ in items):
            return True, tuple(v for _, v in items)
        return False, value
    if tp is type(None):
        return (value is None, value)
    if tp is bool:
        return (isinstance(value, bool), value)
    if tp is int:
        return (isinstance(value, int) and not isinstance(value, bool), value)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            ok = _NUMBER.fullmatch(value.strip()) is not None
            return (ok, float(value) if ok else value)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return (ok, float(value) if ok else value)
    if tp is str:
        return (isinstance(value, str), value)
    raise TypeError(f"unsupported config type {tp!r}")


def build_section(name: str, cls: type, raw: dict[str, Any], profile_values: dict[str, Any], source: str) -> Any:
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in hints:
            raise ConfigError(
                f"{source}: unknown key '{name}.{key_text(key)}'.{suggest(key, hints)}"
                f" Valid keys in '{name}': {', '.join(hints)}."
            )
    kwargs = {}
    for key, tp in hints.items():
        value = raw.get(key)
        if value is None:
            value = profile_values.get(key)
        if value is None:
            continue  # dataclass default (which may itself be None)
        ok, converted = _coerce(value, tp)
        if not ok:
            raise ConfigError(f"{source}: '{name}.{key}' = {value!r} is invalid; expected {_describe(tp)}.")
        kwargs[key] = converted
    return cls(**kwargs)
