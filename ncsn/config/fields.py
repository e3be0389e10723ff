"""The value types of the schema: strict pydantic types, each with the rule it enforces.

A type checks what YAML gives (``Strict``: no ``"3"`` for an int, no ``true`` for a number);
a ``Field`` constraint or a validator checks the value; :class:`Rule` holds the words the
one-line messages use when that check fails (``ncsn.config.messages``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal, Optional, Union

from pydantic import AfterValidator, BeforeValidator, Field, Strict
from pydantic_core import PydanticCustomError

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


@dataclass(frozen=True)
class Rule:
    """What a field allows beyond its type, as a message says it: ``it must be >= 1``."""

    text: str


def as_float(value: Any) -> Any:
    """Numbers as floats, numeric strings too (YAML 1.1 reads ``1e-3`` as a string); anything else as is."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _list_as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def check(test: Callable[[Any], bool]) -> AfterValidator:
    """A validator that refuses the values failing ``test``; the field's :class:`Rule` names the fix."""

    def validate(value: Any) -> Any:
        if not test(value):
            raise PydanticCustomError("rule", "the value breaks the field's rule")
        return value

    return AfterValidator(validate)


Int = Annotated[int, Strict()]
Float = Annotated[float, BeforeValidator(as_float), Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
Auto = Literal["auto"]

Count = Annotated[Int, Field(ge=1), Rule("it must be >= 1")]
CountOrOff = Annotated[Int, Field(ge=0), Rule("it must be >= 0 (0 turns it off)")]
PositiveFloat = Annotated[Float, Field(gt=0, allow_inf_nan=False)]
Positive = Annotated[PositiveFloat, Rule("it must be > 0")]
Finite = Annotated[Float, Field(allow_inf_nan=False), Rule("it must be a finite number")]
UnitFraction = Annotated[Float, Field(ge=0, lt=1), Rule("it must be in [0, 1)")]


def tuple_of(item: Any) -> Any:
    """``tuple[item, ...]``, given as a YAML list (a tuple once loaded)."""
    return Annotated[tuple[item, ...], BeforeValidator(_list_as_tuple), Strict()]


def either(first: Any, second: Any, *rule: Rule) -> Any:
    """``first`` or else ``second``, tried in that order (a number before ``"auto"``)."""
    return Annotated[Union[first, second], Field(union_mode="left_to_right"), *rule]


def _band(band: tuple[float, ...]) -> bool:
    return len(band) == 2 and 0 < band[0] < band[1] and math.isfinite(band[1])


MASKS = ("right_half", "center", "random")

# The types of single keys, named after them.
Eps = either(PositiveFloat, Auto, Rule("it must be > 0 or 'auto' (NCSNv2 technique 4)"))
SigmaBegin = either(Float, Auto)  # its rule compares it with model.sigma_end: ncsn.config.rules
SigmaEnd = Annotated[PositiveFloat, Rule("it must be > 0 and finite")]
NumLevels = either(Annotated[Int, Field(ge=1)], Auto, Rule("it must be >= 1 or 'auto'"))
Mults = Annotated[tuple_of(PositiveFloat), Field(min_length=1),
                  Rule("give one width multiple > 0 per resolution, e.g. [0.5, 1, 2]")]
ImageSize = Annotated[Optional[Annotated[Int, Field(ge=8)]], Rule("it must be >= 8")]
Channels = Annotated[Optional[Annotated[Int, check(lambda c: c in (1, 3))]], Rule("it must be 1, 3 or null")]
NonNegative = Annotated[Float, Field(ge=0, allow_inf_nan=False), Rule("it must be >= 0")]
WeightDecay = NonNegative
OptionalPositive = Annotated[Optional[PositiveFloat], Rule("it must be > 0 or null")]
GradClip = Annotated[Optional[Annotated[Float, Field(gt=0)]], Rule("it must be > 0 or null")]
Band = Annotated[Optional[Annotated[tuple_of(Float), check(_band)]],
                 Rule("give [lo, hi] with 0 < lo < hi (e.g. [0.1, 1.0]), or null for every level")]
KidSubset = Annotated[Int, Field(ge=2), Rule("it must be >= 2")]
Masks = Annotated[tuple_of(Str), check(lambda masks: bool(masks) and all(m in MASKS for m in masks)),
                  Rule(f"allowed masks are {', '.join(repr(m) for m in MASKS)}")]
OpenFraction = Annotated[Float, Field(gt=0, lt=1), Rule("it must be in (0, 1)")]
