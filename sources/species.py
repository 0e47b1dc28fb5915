"""Species registry, read from ``config/species.yaml``: names, CF metadata, molar masses, GWPs.

The registry is the only home of species metadata; code asks it, never hard-codes a list.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sources.errors import ConfigError, Problems
from sources.tables import read_yaml

#: Primary species every same-source build computes, in output order (the columns of the
#: emissions table and the variables of the hourly files); PM2_5 is PM2.5, NOx counts as NO2.
PRIMARY = ("SO2", "NOx", "CO", "NMVOC", "NH3", "PM10", "PM2_5", "BC", "OC", "CO2", "CH4", "N2O")


@dataclass(frozen=True)
class Species:
    """One species' metadata."""

    id: str
    long_name: str
    kind: str
    cf_standard_name: str | None = None
    molar_mass_g_mol: float | None = None
    gwp100_ar5: float | None = None
    gwp100_ar6: float | None = None
    note: str | None = None
    reference: str | None = None


@dataclass(frozen=True)
class SpeciesRegistry:
    """All species of a build and the CO2-equivalent definition."""

    species: dict[str, Species]
    gwp_set: str = "ar6"
    co2e_components: tuple[str, ...] = ("CO2", "CH4", "N2O")
    path: str | None = field(default=None, compare=False)
    #: ``(total, fossil, biogenic)`` species ids when the registry splits CO2 by the fuels'
    #: biogenic carbon fraction (``co2_split:`` in species.yaml); ``None`` without a split
    co2_split: tuple[str, str, str] | None = None

    @property
    def split_parts(self) -> tuple[str, ...]:
        """The species computed by the CO2 split (fossil, biogenic), never by a factor row."""
        return self.co2_split[1:] if self.co2_split else ()

    @property
    def emitted(self) -> list[str]:
        """Species computed from activity × factor (everything except derived ones)."""
        return [s for s in self.species if self.species[s].kind != "derived"]

    @property
    def all(self) -> list[str]:
        return list(self.species)

    def gwp(self, species_id: str) -> float:
        sp = self.species[species_id]
        value = sp.gwp100_ar6 if self.gwp_set == "ar6" else sp.gwp100_ar5
        if value is None:
            raise ConfigError(f"{self.path}: species {species_id!r} has no gwp100_{self.gwp_set}, "
                              "but it is a CO2e component")
        return float(value)

    def add_co2e(self, table: pd.DataFrame) -> pd.DataFrame:
        """Return ``table`` (one column per species, kg) with a ``CO2e`` column added."""
        if "CO2e" not in self.species:
            return table
        out = table.copy()
        out["CO2e"] = sum(out[s] * self.gwp(s) for s in self.co2e_components)
        return out


def _short(value: object, n: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= n else text[:n - 3] + "..."


def _number(value: object, where: str, path: Path) -> object:
    """``value`` if it is a finite number >= 0 or None (``null``); ``True`` and text are
    refused."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{path}: {where} is {_short(value)}; expected a finite number >= 0 "
                          "or null")
    return value


def _co2_split(block: object, emitted: list[str], path: Path) -> tuple[str, str, str] | None:
    """``co2_split: {total: CO2, fossil: CO2_fossil, biogenic: CO2_bio}`` as a tuple (or None)."""
    if block is None:
        return None
    roles = ("total", "fossil", "biogenic")
    if not isinstance(block, dict) or set(block) != set(roles):
        raise ConfigError(f"{path}: co2_split is {_short(block)}; expected a mapping with "
                          "exactly total, fossil and biogenic (species ids)")
    ids = tuple(block[r] for r in roles)
    bad = [i for i in ids if not isinstance(i, str) or i not in emitted]
    if bad or len(set(ids)) != 3:
        raise ConfigError(f"{path}: co2_split names {list(ids)}; expected three different "
                          f"emitted species of the registry ({emitted})")
    return ids  # type: ignore[return-value]


def _species(sid: object, meta: object, known: set[str], path: Path) -> Species:
    """One entry of the ``species:`` mapping, checked."""
    if not isinstance(meta, dict):
        raise ConfigError(f"{path}: species {sid!r}: expected a mapping of attributes")
    if not str(sid).isidentifier():
        raise ConfigError(f"{path}: species id {sid!r} is not usable as a NetCDF variable name")
    kind = meta.get("kind")
    if kind not in {"pollutant", "greenhouse_gas", "derived"}:
        raise ConfigError(f"{path}: species {sid!r}: kind {kind!r}; expected pollutant, "
                          "greenhouse_gas or derived")
    attrs = {k: v for k, v in meta.items() if k in known and k != "id"}
    for k in ("molar_mass_g_mol", "gwp100_ar5", "gwp100_ar6"):
        attrs[k] = _number(attrs.get(k), f"species {sid!r}: {k}", path)
    for k in ("long_name", "cf_standard_name", "note", "reference"):
        if attrs.get(k) is not None and not isinstance(attrs[k], str):
            raise ConfigError(f"{path}: species {sid!r}: {k} is {_short(attrs[k])}; "
                              "expected text")
    if not isinstance(attrs.get("long_name"), str):
        raise ConfigError(f"{path}: species {sid!r} has no long_name; expected text")
    return Species(id=str(sid), **attrs)


def load_species(path: str | Path) -> SpeciesRegistry:
    """Load ``species.yaml``; refuse unknown kinds, missing primary species and bad GWP sets."""
    path = Path(path)
    doc = read_yaml(path, "species table")
    if not isinstance(doc.get("species"), dict):
        raise ConfigError(f"{path}: expected a top-level 'species:' mapping")
    known = {f for f in Species.__dataclass_fields__}
    species: dict[str, Species] = {}
    found = Problems()  # every bad species, reported together
    for sid, meta in doc["species"].items():
        entry = found.attempt(_species, sid, meta, known, path)
        if entry is not None:
            species[str(sid)] = entry
    found.raise_any()
    missing = [s for s in PRIMARY if s not in species]
    if missing:
        raise ConfigError(f"{path}: missing species {missing}; a same-source build needs all of "
                          f"{list(PRIMARY)}")
    co2e = doc.get("co2e") or {}
    if not isinstance(co2e, dict):
        raise ConfigError(f"{path}: co2e is {_short(co2e)}; expected a mapping with gwp_set and "
                          "components")
    gwp_set = str(co2e.get("gwp_set", "ar6")).lower()
    if gwp_set not in {"ar5", "ar6"}:
        raise ConfigError(f"{path}: co2e.gwp_set {gwp_set!r}; expected 'ar5' or 'ar6'")
    components = co2e.get("components", ["CO2", "CH4", "N2O"])
    if not isinstance(components, list) or not components \
            or not all(isinstance(c, str) for c in components):
        raise ConfigError(f"{path}: co2e.components is {_short(components)}; expected a "
                          "non-empty list of species, e.g. [CO2, CH4, N2O]")
    emitted = [s for s in species if species[s].kind != "derived"]
    unknown = [c for c in components if c not in emitted]
    if unknown:
        raise ConfigError(f"{path}: co2e.components names {unknown}, not emitted species of "
                          f"the registry; expected some of {emitted}")
    if len(set(components)) != len(components):
        raise ConfigError(f"{path}: co2e.components lists a species twice ({components}); "
                          "expected each once")
    components = tuple(components)
    reg = SpeciesRegistry(species=species, gwp_set=gwp_set, co2e_components=components,
                          path=str(path), co2_split=_co2_split(doc.get("co2_split"), emitted,
                                                               path))
    for s in components:
        reg.gwp(s)
    return reg
