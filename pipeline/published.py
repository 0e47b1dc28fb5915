"""Checks of a build's totals against published inventories (``checks.yaml`` ``published:``).

Three kinds, each with its citation and range in the YAML:

- ``sector_co2``: CO2 of groups of (sector, technology) keys against the CEADs sectors of the
  same city and a tolerance (e.g. ±15 %);
- ``shares``: a group's share of a species' city total inside a published range (sector shares
  of the YRD or Shanghai inventories);
- ``totals``: a species' city total (kt) inside a range.

Memo items (international aviation, bunker fuel) are not build sources, so they never enter
these totals. Findings use :class:`pipeline.checks.Finding` (checks ``published_sector_co2``,
``published_share``, ``published_total``; sector ``all``, pair ``<species>:<check name>``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from sources.tables import FrozenModel

Severity = Literal["warning", "error"]


class Select(FrozenModel):
    """Sources of one sector, optionally only some of its technologies."""

    sector: str
    technology: list[str] | None = None


class SectorCO2(FrozenModel):
    """One CEADs sector: the keys that make it and its published CO2."""

    select: list[Select] = Field(min_length=1)
    reference_mt: float = Field(gt=0)
    basis: str = Field(min_length=1)


class SectorCO2Checks(FrozenModel):
    species: str = "CO2"
    tolerance: float = Field(gt=0, lt=1)
    severity: Severity = "warning"
    citation: str = Field(min_length=1)
    groups: dict[str, SectorCO2]


class ShareCheck(FrozenModel):
    """``sum(species of the selected sources) / city total of species`` in ``range``."""

    species: str
    select: list[Select] = Field(min_length=1)
    range: tuple[float, float]
    citation: str = Field(min_length=1)
    severity: Severity = "warning"

    @model_validator(mode="after")
    def _ordered(self) -> ShareCheck:
        lo, hi = self.range
        if not 0 <= lo < hi <= 1:
            raise ValueError(f"share range must be 0 <= min < max <= 1; got {self.range}")
        return self


class TotalCheck(FrozenModel):
    """City total of ``species`` in ``range_kt``."""

    species: str
    range_kt: tuple[float, float]
    citation: str = Field(min_length=1)
    severity: Severity = "warning"


class PublishedChecks(FrozenModel):
    sector_co2: SectorCO2Checks | None = None
    shares: dict[str, ShareCheck] = Field(default_factory=dict)
    totals: dict[str, TotalCheck] = Field(default_factory=dict)


def selected(frame: pd.DataFrame, select: list[Select]) -> np.ndarray:
    """Boolean mask of the rows of ``frame`` (sector, technology columns) in ``select``."""
    mask = np.zeros(len(frame), dtype=bool)
    for s in select:
        m = (frame["sector"] == s.sector).to_numpy().copy()
        if s.technology is not None:
            m &= frame["technology"].isin(s.technology).to_numpy()
        mask |= m
    return mask


def _label(select: list[Select]) -> str:
    return " + ".join(s.sector + (f"[{','.join(s.technology)}]" if s.technology else "")
                      for s in select)


def published_findings(frame: pd.DataFrame, cfg: PublishedChecks, finding) -> list:
    """Findings of every published check that fails.

    Parameters
    ----------
    frame : emissions (kg/yr, one column per species) with sector and technology columns
    cfg : the ``published:`` block
    finding : the :class:`pipeline.checks.Finding` class (passed in to avoid an import cycle)
    """
    out = []
    c = cfg.sector_co2
    if c is not None:
        for name, g in c.groups.items():
            m = selected(frame, g.select)
            value = float(frame.loc[m, c.species].sum()) / 1e9
            lo, hi = g.reference_mt * (1 - c.tolerance), g.reference_mt * (1 + c.tolerance)
            if lo <= value <= hi:
                continue
            ids = tuple(frame.index[m][np.argsort(-frame.loc[m, c.species].to_numpy())][:10])
            out.append(finding(
                check="published_sector_co2", severity=c.severity, sector="all",
                pair=f"{c.species}:{name}",
                value=value, unit="Mt", expected=f"{g.reference_mt:g} Mt ± {c.tolerance:.0%}",
                message=(f"{name} ({_label(g.select)}) {c.species} = {value:.4g} Mt is "
                         f"{value / g.reference_mt - 1:+.1%} from {g.reference_mt:g} Mt. "
                         f"{g.basis}. Reference: {c.citation}"),
                source_ids=tuple(str(i) for i in ids)))
    for name, s in cfg.shares.items():
        total = float(frame[s.species].sum())
        m = selected(frame, s.select)
        part = float(frame.loc[m, s.species].sum())
        share = part / total if total > 0 else float("nan")
        if s.range[0] <= share <= s.range[1]:
            continue
        by = frame.groupby("sector")[s.species].sum().sort_values(ascending=False) / total
        top = ", ".join(f"{k} {v:.0%}" for k, v in by.head(4).items())
        out.append(finding(
            check="published_share", severity=s.severity, sector="all",
            pair=f"{s.species}:{name}",
            value=share, unit="1", expected=f"[{s.range[0]:g}, {s.range[1]:g}]",
            message=(f"{_label(s.select)} is {share:.1%} of city {s.species}, outside the "
                     f"published range {s.range[0]:.0%}-{s.range[1]:.0%}; largest sectors: "
                     f"{top}. Reference: {s.citation}")))
    for name, t in cfg.totals.items():
        kt = float(frame[t.species].sum()) / 1e6
        if t.range_kt[0] <= kt <= t.range_kt[1]:
            continue
        out.append(finding(
            check="published_total", severity=t.severity, sector="all",
            pair=f"{t.species}:{name}",
            value=kt, unit="kt", expected=f"[{t.range_kt[0]:g}, {t.range_kt[1]:g}] kt",
            message=(f"city {t.species} = {kt:.4g} kt is outside [{t.range_kt[0]:g}, "
                     f"{t.range_kt[1]:g}] kt ({name}). Reference: {t.citation}")))
    return out
