"""The only pint ``UnitRegistry`` of Tongyuan, and the one way to read unit text.

Canonical units are kg, s and m. Tables carry unit strings; code converts with pint and never with
hand-written factors. Every unit read from a file goes through :func:`parse_unit` (a unit) or
:func:`parse_quantity` (a number with its unit), which refuse names pint reads differently from
inventory practice (``ton``, ``kt``, ``mt``, ``MT``, ``Nm3``).
"""

from __future__ import annotations

import re
from functools import lru_cache

import pint

from sources.errors import UnitError

ureg = pint.UnitRegistry()
# Animal head count: livestock activity is an annual average population, factors are per head-year.
ureg.define("head = [head]")
# Standard coal equivalent (标准煤): 1 kgce = 29 307.6 kJ (GB/T 2589-2020, 综合能耗计算通则), used
# for heat rates of power plants (供电煤耗, gce/kWh).
ureg.define("tce = 29.3076 * GJ")
ureg.define("kgce = 29.3076 * MJ")
ureg.define("gce = 29.3076 * kJ")
Q_ = ureg.Quantity


#: unit names pint reads differently from what inventory staff mean. ``Mt`` is read as megatonne
#: (10^9 kg), which is what an inventory means by it, and is kept; ``mt`` and ``MT`` are not.
AMBIGUOUS = {
    "ton": "pint's 'ton' is the US short ton (907 kg): write 't' for tonnes",
    "tons": "pint's 'tons' are US short tons (907 kg): write 't' for tonnes",
    "kt": "pint's 'kt' is a knot: write 'kilotonne' (or 'Gg') for thousand tonnes",
    "mt": "pint's 'mt' is a millitonne (1 kg): write 't' for tonnes, or 'megatonne' for "
          "million tonnes",
    "MT": "pint's 'MT' is a megatesla: write 't' for (metric) tonnes",
    "Nm": "'Nm' reads as newton-metre: write 'm**3' for normal cubic metres",
    "Nm3": "write 'm**3' for normal cubic metres",
}


@lru_cache(maxsize=1024)
def parse_unit(text: str) -> pint.Unit:
    """Parse a unit string; raise :class:`UnitError` (without location) if pint cannot, or if it
    uses a name pint reads differently from inventory practice (``ton``, ``kt``, ``Nm3``)."""
    for token in re.findall(r"[A-Za-z_]+[0-9]?", str(text)):
        if token in AMBIGUOUS:
            raise UnitError(None, f"ambiguous unit {text!r}: {AMBIGUOUS[token]}", value=text,
                            expected="t, kg, g, kilotonne, megatonne, m**3, km, GJ, TJ, head")
    try:
        return ureg.Unit(str(text).strip())
    except (pint.errors.UndefinedUnitError, pint.errors.DefinitionSyntaxError, ValueError,
            AttributeError, TypeError, AssertionError, SyntaxError) as exc:
        raise UnitError(None, f"cannot parse unit {text!r} ({exc})", value=text,
                        expected="a pint unit string such as 't', 'm**3', 'km', 'GJ'") from exc


def parse_quantity(text: str) -> pint.Quantity:
    """Parse ``"<number> <unit>"`` (``"12.5 t"``, ``"3 kWh/km"``, ``"303 gce/kWh"``).

    The unit part follows :func:`parse_unit`'s rules. Raises :class:`UnitError` (without
    location; callers add file, row and column) if there is no leading number or the unit is
    refused.
    """
    match = re.fullmatch(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*",
                         str(text))
    if match is None:
        raise UnitError(None, f"{text!r} is not a number followed by a unit", value=text,
                        expected="e.g. '12.5 t', '3 kWh/km', '303 gce/kWh'")
    number, unit = match.groups()
    return Q_(float(number), parse_unit(unit) if unit else ureg.dimensionless)


@lru_cache(maxsize=4096)
def factor_to(unit_from: str, unit_to: str) -> float:
    """Multiplier taking a magnitude in ``unit_from`` to ``unit_to`` (pint does the work)."""
    return float(Q_(1.0, parse_unit(unit_from)).to(parse_unit(unit_to)).magnitude)
