"""One search dimension: a constant or a sampler (``{choice: [...]}``, ``{uniform: [lo, hi]}``,
``{loguniform: [lo, hi]}``, ``{randint: [lo, hi]}``), optionally with a ``when`` condition,
and :func:`Dim`, the field type that parses and checks one from YAML."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, replace
from typing import Annotated, Any

from pydantic import BeforeValidator, TypeAdapter, ValidationError

from raycifar.config import (
    finite,
)

SAMPLERS = ("choice", "uniform", "loguniform", "randint")


# --- dimensions ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Dimension:
    """One search dimension: a constant or a sampler with its arguments."""

    sampler: str  # "constant" or one of SAMPLERS
    args: tuple
    when: tuple[tuple[str, tuple], ...] = ()  # (``section.key``, values it must take) pairs, all must hold

    def active(self, drawn: dict[str, Any]) -> bool:
        """Whether this dimension applies given the values ``drawn`` so far (by ``section.key``):
        every key it depends on was drawn and took one of the listed values."""
        return all(key in drawn and drawn[key] in values for key, values in self.when)

    def sample(self, rng: random.Random) -> Any:
        """Draw one value with ``rng``."""
        if self.sampler == "constant":
            return self.args[0]
        if self.sampler == "choice":
            return rng.choice(self.args)
        low, high = self.args
        if self.sampler == "uniform":
            return rng.uniform(low, high)
        if self.sampler == "loguniform":
            return math.exp(rng.uniform(math.log(low), math.log(high)))
        return rng.randint(low, high)  # randint: both ends inclusive

    def values(self) -> tuple:
        """The values a constant or a choice can take; the bounds of a range."""
        return self.args

    def can_be(self, value: Any) -> bool:
        """Whether a draw can produce ``value``."""
        if self.sampler in ("constant", "choice"):
            return value in self.args
        low, high = self.args
        return low <= value <= high

    def may_differ(self, value: Any) -> bool:
        """Whether a draw can produce something other than ``value``."""
        if self.sampler in ("constant", "choice"):
            return any(arg != value for arg in self.args)
        return self.args != (value, value)

    def describe(self) -> str:
        """``0.1`` for a constant, ``loguniform [0.01, 0.3]`` for a sampler (JSON values), with
        its condition: ``choice [0.2, 0.4] when train.optimizer = sgd``."""
        text = (
            json.dumps(self.args[0]) if self.sampler == "constant" else f"{self.sampler} {json.dumps(list(self.args))}"
        )
        return text + (f" when {describe_condition(self.when)}" if self.when else "")


def describe_condition(when: tuple[tuple[str, tuple], ...]) -> str:
    """``train.optimizer = sgd and augment.policy in [randaugment, autoaugment]``."""
    parts = []
    for key, values in when:
        shown = [json.dumps(v).strip('"') for v in values]
        parts.append(f"{key} = {shown[0]}" if len(shown) == 1 else f"{key} in [{', '.join(shown)}]")
    return " and ".join(parts)


def _parse_condition(raw: Any) -> tuple[tuple[str, tuple], ...]:
    """``{train.optimizer: sgd}`` or ``{augment.policy: [a, b]}`` as (key, values) pairs."""
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"when: expects a mapping of section.key to a value or a list of values, got {raw!r}")
    pairs = []
    for key, values in raw.items():
        if not isinstance(key, str) or key.count(".") != 1:
            raise ValueError(f"when: {key!r}: name the key it depends on as section.key, e.g. train.optimizer")
        values = tuple(values) if isinstance(values, list) else (values,)
        if not values:
            raise ValueError(f"when: {key}: give at least one value")
        pairs.append((key, values))
    return tuple(pairs)


KIND_HINTS = {
    "number": "numbers",
    "integer": "integers: use randint or choice",
    "other": "fixed values: use choice",
}


def _accepts(check: Any, value: Any) -> bool:
    try:
        check(value)
        return True
    except ValidationError:
        return False


def _value_kind(check: Any) -> str:
    """``number`` if the key takes fractions, ``integer`` if only whole numbers, else ``other``."""
    if _accepts(check, 0.5):
        return "number"
    return "integer" if _accepts(check, 1) else "other"


def _dimension(value_type: Any) -> BeforeValidator:
    """A pydantic validator turning a raw YAML value into a checked :class:`Dimension`.

    ``value_type`` validates every value the dimension can produce (constants, each
    choice, both bounds of a range); infinite and NaN numbers are refused everywhere.
    """
    check = TypeAdapter(value_type).validate_python
    kind = _value_kind(check)

    def valid(value: Any) -> Any:
        if not finite(value):
            raise ValueError(f"{value!r}: must be a finite number")
        try:
            return check(value)
        except ValidationError as err:
            raise ValueError(f"{value!r}: {err.errors()[0]['msg']}") from None

    def parse(raw: Any) -> Dimension:
        if isinstance(raw, Dimension):
            return raw
        if not isinstance(raw, dict):
            return Dimension("constant", (valid(raw),))
        if "when" in raw:
            raw = dict(raw)
            when = _parse_condition(raw.pop("when"))
            if not raw:
                raise ValueError("when: a condition belongs to a sampler, e.g. {choice: [0.2, 0.4], when: {...}}")
            return replace(parse(raw), when=when)
        if len(raw) != 1 or next(iter(raw)) not in SAMPLERS:
            raise ValueError(f"a sampler is a mapping with exactly one of {', '.join(SAMPLERS)}; got {raw!r}")
        sampler, args = next(iter(raw.items()))
        if not isinstance(args, list) or not args:
            raise ValueError(f"{sampler} takes a non-empty list, got {args!r}")
        if sampler == "choice":
            return Dimension("choice", tuple(valid(a) for a in args))
        if len(args) != 2:
            raise ValueError(f"{sampler} takes [low, high], got {args!r}")
        if sampler == "randint" and kind != "integer":
            raise ValueError(f"randint draws integers; this key takes {KIND_HINTS[kind]}")
        if sampler in ("uniform", "loguniform") and kind != "number":
            raise ValueError(f"{sampler} draws fractional numbers; this key takes {KIND_HINTS[kind]}")
        low, high = (valid(a) for a in args)
        if low > high:
            raise ValueError(f"{sampler} low {low!r} is above high {high!r}")
        if low == high:
            raise ValueError(f"{sampler} [{low!r}, {high!r}] draws one value: write it as the constant {low!r}")
        if sampler == "loguniform" and low <= 0:
            raise ValueError(f"loguniform needs low > 0, got {low!r}")
        return Dimension(sampler, (low, high))

    return BeforeValidator(parse)


def Dim(value_type: Any) -> Any:  # noqa: N802 - reads as a type in field declarations
    """Field type for a search dimension whose values are of ``value_type``."""
    return Annotated[Dimension, _dimension(value_type)]
