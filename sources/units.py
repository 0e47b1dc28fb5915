"""The only pint ``UnitRegistry`` of Tongyuan, and conversion to canonical units.

Canonical units are kg, s and m. Tables carry unit strings; code converts with pint and never with
hand-written factors.
"""

from __future__ import annotations

from functools import lru_cache

import pint

from sources.errors import UnitError

ureg = pint.UnitRegistry()
# Animal head count: livestock activity is an annual average population, factors are per head-year.
ureg.define("head = [head]")
Q_ = ureg.Quantity


@lru_cache(maxsize=1024)
def parse_unit(text: str) -> pint.Unit:
    """Parse a unit string; raise :class:`UnitError` (without location) if pint cannot."""
    try:
        return ureg.Unit(str(text).strip())
    except (pint.errors.UndefinedUnitError, pint.errors.DefinitionSyntaxError, ValueError,
            AttributeError, TypeError, AssertionError, SyntaxError) as exc:
        raise UnitError(None, f"cannot parse unit {text!r} ({exc})", value=text,
                        expected="a pint unit string such as 't', 'm**3', 'km', 'GJ'") from exc


@lru_cache(maxsize=4096)
def factor_to(unit_from: str, unit_to: str) -> float:
    """Multiplier taking a magnitude in ``unit_from`` to ``unit_to`` (pint does the work)."""
    return float(Q_(1.0, parse_unit(unit_from)).to(parse_unit(unit_to)).magnitude)


def to_canonical(value: float, unit: str, canonical: str = "kg") -> float:
    """Convert one value to the canonical unit (kg by default)."""
    return float(value) * factor_to(unit, canonical)
