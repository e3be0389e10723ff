"""One line for a failed validation: the file, the dotted key, the bad value and what is allowed.

pydantic reports every problem at once; the line names the first, in this order: an unknown
key (with the nearest valid one), then a wrong type (``expected int``, every choice of a
choice-valued key), section by section in the order of ``params.yaml``; then a value out of
its range (the field's :class:`ncsn.config.fields.Rule`); then a combination that does not go
together (``ncsn.config.rules``).
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Iterable, Literal, Union

from ncsn.config.fields import Rule, as_float

_RULE_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number",
                          "too_short", "too_long", "rule"})
_UNKNOWN_KEY = frozenset({"unexpected_keyword_argument", "invalid_key", "extra_forbidden"})


def key_text(key: Any) -> str:
    """A key as it appears in one-line messages: as is when printable text, else its repr."""
    return key if isinstance(key, str) and key.isprintable() else repr(key)


def suggest(key: Any, allowed: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the nearest of ``allowed``, or nothing when none is near."""
    close = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def describe(tp: Any) -> str:
    """What a type allows, in words: ``float or 'auto'``, ``a list of float or null``."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {describe(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _declares_float(tp: Any) -> bool:
    return tp is float or any(_declares_float(a) for a in typing.get_args(tp))


def _shown(value: Any, tp: Any) -> Any:
    """A value that passed its type check as the schema stores it, lists kept as lists: ``0`` as ``0.0``."""
    if isinstance(value, (list, tuple)):
        return [_shown(v, tp) for v in value]
    return as_float(value) if _declares_float(tp) else value


def _broke_a_rule(errors: list[dict[str, Any]]) -> bool:
    """Whether the value has the right type but the wrong value: for a union (a number or
    ``"auto"``), some alternative failed on its rule alone."""
    alternatives: dict[Any, list[str]] = {}
    for error in errors:
        loc = error["loc"]
        alternatives.setdefault(loc[2] if len(loc) > 2 and isinstance(loc[2], str) else None, []).append(error["type"])
    return any(all(kind in _RULE_ERRORS for kind in kinds) for kinds in alternatives.values())


def _rule_text(cls: type, key: str) -> str:
    return next((m.text for m in cls.__pydantic_fields__[key].metadata if isinstance(m, Rule)), "see its comment")


def one_line(errors: list[dict[str, Any]], data: dict[str, Any], sections: dict[str, type], source: str) -> str:
    """The message for the first of pydantic's ``errors`` about ``data``, in the order of the module docstring.

    :param errors: ``ValidationError.errors()``, each ``loc`` starting with the section's name.
    :param data: the mapping that was validated, section by section.
    :param sections: the section classes by name, in the order of ``params.yaml``.
    """
    by_key: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for error in errors:
        if len(error["loc"]) >= 2:  # a rule across keys has none
            by_key.setdefault(tuple(error["loc"][:2]), []).append(error)
    for name, cls in sections.items():
        hints = typing.get_type_hints(cls)
        unknown = [loc[1] for loc, found in by_key.items()
                   if loc[0] == name and len(loc) == 2 and any(e["type"] in _UNKNOWN_KEY for e in found)]
        if unknown:
            return (f"{source}: unknown key '{name}.{key_text(unknown[0])}'.{suggest(unknown[0], hints)}"
                    f" Valid keys in '{name}': {', '.join(hints)}.")
        for key, tp in hints.items():
            found = by_key.get((name, key))
            if found and not _broke_a_rule(found):
                return f"{source}: '{name}.{key}' = {data[name].get(key)!r} is invalid; expected {describe(tp)}."
    for name, cls in sections.items():
        for key, tp in typing.get_type_hints(cls).items():
            if (name, key) in by_key:
                value = _shown(data[name][key], tp)
                return f"{source}: '{name}.{key}' = {value!r} is invalid; {_rule_text(cls, key)}."
    for error in errors:
        if error["type"] == "rule" and "key" in error.get("ctx", {}):
            ctx = error["ctx"]
            return f"{source}: '{ctx['key']}' = {ctx['value']!r} is invalid; {ctx['allowed']}."
    first = errors[0]
    return f"{source}: '{'.'.join(map(key_text, first['loc']))}': {first['msg']}."
