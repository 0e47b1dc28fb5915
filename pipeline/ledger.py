"""The mass ledger of a build: nothing read disappears without a reason.

Per sector × species: ``read_kg`` (computed from activity), ``gridded_kg`` (sum of the annual
grid), ``outside_domain_kg`` (parts of sources beyond the grid, measured from geometry),
``rejected_kg`` (sources dropped with a reason) and ``written_kg`` (what the hourly files carry).
:func:`check_balance` enforces ``read = gridded + outside + rejected`` and ``gridded = written``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sources.errors import MassBalanceError

COLUMNS = ["read_kg", "gridded_kg", "outside_domain_kg", "rejected_kg", "written_kg"]
RTOL = 1e-9
#: written-vs-ledger tolerance when files are written as float32 (output.dtype: float32)
FLOAT32_RTOL = 1e-6


@dataclass
class Ledger:
    """Ledger table, index (sector, species)."""

    table: pd.DataFrame

    @classmethod
    def from_build(cls, emissions: pd.DataFrame, sectors: np.ndarray,
                   outside: np.ndarray, annual_by_sector: pd.DataFrame,
                   rejected: pd.DataFrame | None = None) -> Ledger:
        """Build the ledger before writing.

        Parameters
        ----------
        emissions : kg/yr per source (rows) and species (columns)
        sectors : sector of each source
        outside : per-source fraction beyond the grid [1], measured from the geometry
        annual_by_sector : kg/yr summed over the annual grid, index sector, columns species
        rejected : kg/yr of rejected sources per sector (index) and species (columns)
        """
        species = list(emissions.columns)
        e = emissions.to_numpy()
        gridded_read = (pd.DataFrame(e, columns=species).assign(sector=sectors)
                        .groupby("sector").sum())
        out = pd.DataFrame(e * outside[:, None], columns=species).assign(sector=sectors)
        out = out.groupby("sector").sum()
        rej = (rejected[species] if rejected is not None
               else pd.DataFrame(columns=species, dtype=float))
        # everything read: the sources kept for gridding plus the rejected ones
        read = gridded_read.add(rej, fill_value=0.0)
        rows = []
        for s in read.index:
            for sp in species:
                rows.append({"sector": s, "species": sp, "read_kg": float(read.loc[s, sp]),
                             "gridded_kg": float(annual_by_sector.loc[s, sp])
                             if s in annual_by_sector.index else 0.0,
                             "outside_domain_kg": float(out.loc[s, sp]) if s in out.index else 0.0,
                             "rejected_kg": float(rej.loc[s, sp]) if s in rej.index else 0.0,
                             "written_kg": np.nan})
        table = pd.DataFrame(rows).set_index(["sector", "species"])
        return cls(table=table)

    def record_written(self, written: pd.DataFrame) -> None:
        """``written`` indexed (sector, species) with a ``written_kg`` column."""
        self.table["written_kg"] = written["written_kg"].reindex(self.table.index).fillna(0.0)

    def totals(self) -> pd.DataFrame:
        """Per species, summed over sectors."""
        return self.table.groupby(level="species", sort=False).sum()

    def to_csv(self, path) -> None:
        self.table.reset_index().to_csv(path, index=False, float_format="%.17g")


def _rel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    scale = np.maximum(np.abs(a), np.abs(b))
    return np.where(scale > 0, np.abs(a - b) / np.where(scale > 0, scale, 1.0), 0.0)


def check_balance(ledger: Ledger, rtol: float = RTOL, written: bool = True) -> None:
    """Raise :class:`MassBalanceError` naming every sector × species off by more than ``rtol``."""
    t = ledger.table
    problems = []
    lhs = t["read_kg"].to_numpy()
    rhs = (t["gridded_kg"] + t["outside_domain_kg"] + t["rejected_kg"]).to_numpy()
    for (s, sp), r in zip(t.index, _rel(lhs, rhs), strict=True):
        if r > rtol:
            problems.append(f"{s}/{sp}: read {t.loc[(s, sp), 'read_kg']:.6g} kg != gridded + "
                            f"outside + rejected {rhs[t.index.get_loc((s, sp))]:.6g} kg "
                            f"(relative {r:.2e})")
    if written:
        for (s, sp), r in zip(t.index, _rel(t["gridded_kg"].to_numpy(),
                                             t["written_kg"].to_numpy()), strict=True):
            if r > rtol:
                problems.append(f"{s}/{sp}: gridded {t.loc[(s, sp), 'gridded_kg']:.6g} kg != "
                                f"written {t.loc[(s, sp), 'written_kg']:.6g} kg (relative {r:.2e})")
    if problems:
        raise MassBalanceError("mass balance failed (tolerance %.0e):\n  " % rtol
                               + "\n  ".join(problems[:20])
                               + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20
                                  else ""))
