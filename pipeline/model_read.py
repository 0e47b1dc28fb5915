"""What the models would actually read of the inventory, and the WRF-Chem namelist lines.

For every model format of a build, :func:`model_read` computes per ledger row (sector ×
inventory species) the mass the configured model options would read: a model species counts
when the model reads it — WRF-Chem: the ``emiss_opt`` package reads and uses ``E_<species>``
(``config/wrfchem_packages.csv``, WRF Registry facts); CMAQ: a default DESID/EmissCtrl rule of
the configured CMAQ version and mechanism emits that surrogate
(``config/cmaq_desid_surrogates.csv``, CMAQ namelist facts). Derived speciation pollutants
are traced back: PM10 = PMC + PM2.5 and PM2.5 = BC + OC + (PM2.5 − BC − OC).
``ledger.csv`` gets ``<format>_read_kg`` and
``<format>_read_fraction``; a species the mechanism carries but the model reads below
1 − 1e-6 fails the build (``output.model_read: fail``) or is reported (``warn``); a species the
mechanism does not carry at all is named as not carried.

:func:`finish` is the one call of the build: it adds the columns, applies the rule and writes
``wrfchem/namelist.snippet``.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.wrfchem_packages import package
from sources.errors import MassBalanceError
from sources.speciation import DERIVED

DESID_CSV = Path(__file__).resolve().parents[1] / "config" / "cmaq_desid_surrogates.csv"
TOL = 1e-6
#: emiss_inpt_opt the shipped mechanism of an emiss_opt was made for (None: as chem_opt needs)
EMISS_INPT_OPT = {3: 1, 4: 1, 8: None, 10: None, 14: 1, 15: 101, 16: 16, 17: 16}


@lru_cache(maxsize=2)
def desid_surrogates(path: Path = DESID_CSV) -> dict[tuple[str, str], frozenset[str]]:
    """(CMAQ version, mechanism) → the surrogates the default namelists emit."""
    out: dict[tuple[str, str], set[str]] = {}
    with path.open(newline="") as fh:
        for r in csv.DictReader(line for line in fh if not line.startswith("#")):
            out.setdefault((r["cmaq_version"], r["mechanism"]), set()).add(r["surrogate"])
    return {k: frozenset(v) for k, v in out.items()}


def reader(fmt: str, mo) -> tuple[str, callable]:
    """(what reads it, species → read?) for model format ``fmt``."""
    if fmt == "wrfchem":
        pkg = package(mo.wrfchem.emiss_opt)
        return f"WRF-Chem emiss_opt {pkg.emiss_opt} ({pkg.name})", pkg.reads
    version, mech = mo.cmaq_desid.split(":")
    known = desid_surrogates()
    if (version, mech) not in known:
        raise ValueError(f"output.cmaq_desid {mo.cmaq_desid!r}: known are "
                         + ", ".join(f"{v}:{m}" for v, m in known))
    names = known[(version, mech)]
    return f"CMAQ {version} default DESID rules of {mech}", names.__contains__


def _pieces(species: str, pollutants: list[str]) -> list[str]:
    """The speciation pollutants an inventory species' mass is made of."""
    out = [species] if species in pollutants else []
    for d, (first, *rest) in DERIVED.items():
        if first == species:  # species = d + rest (PM10 = PMC + PM2.5), d carried or not
            out += [d] if d in pollutants else []
            for r in rest:
                out += _pieces(r, pollutants)
    return list(dict.fromkeys(out))


def _pollutant_kg(gridded: pd.Series, sector: str, p: str) -> float:
    if p in DERIVED:
        first, *rest = DERIVED[p]
        return max(_pollutant_kg(gridded, sector, first)
                   - sum(_pollutant_kg(gridded, sector, r) for r in rest), 0.0)
    return float(gridded.get((sector, p), 0.0))


def model_read(mo, ledger: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The ``<format>_read_kg`` / ``_read_fraction`` columns (index of ``ledger``), the
    problems (carried, read below 1 − 1e-6) and the notes (species not carried)."""
    gridded = ledger["gridded_kg"]
    cols: dict[str, list[float]] = {}
    problems, notes = [], []
    for fmt in mo.formats:
        part = mo.part(fmt)
        spec = part.speciation
        who, reads = reader(fmt, mo)
        read = np.array([reads(m.name) for m in spec.species], dtype=float)
        kg_read = []
        for sector, sp in ledger.index:
            share = spec.shares_for(str(sector))
            total = 0.0
            for p in _pieces(sp, spec.pollutants):
                i = spec.pollutants.index(p)
                total += _pollutant_kg(gridded, sector, p) * float(share[i] @ read)
            kg_read.append(total)
        kg = pd.Series(kg_read, index=ledger.index)
        cols[f"{fmt}_read_kg"] = kg.tolist()
        frac = (kg / gridded.where(gridded > 0)).fillna(1.0)
        cols[f"{fmt}_read_fraction"] = frac.tolist()
        for sp in dict.fromkeys(ledger.index.get_level_values("species")):
            g = float(gridded.xs(sp, level="species").sum())
            if g <= 0:
                continue
            if not _pieces(sp, spec.pollutants):
                notes.append(f"{fmt}: {sp} is not carried by mechanism {part.mechanism}")
                continue
            f = float(kg.xs(sp, level="species").sum()) / g
            if f < 1 - TOL:
                problems.append(f"{fmt} ({who}, mechanism {part.mechanism}): reads "
                                f"{f:.4%} of {sp}")
    return pd.DataFrame(cols, index=ledger.index), problems, notes


def namelist_snippet(mo, first_day: pd.Timestamp, last_day: pd.Timestamp) -> str:
    """The WRF namelist lines the wrfchemi files need."""
    w = mo.wrfchem
    fmt_name = f"wrfchemi_d{w.domain:02d}"
    kemit = w.kemit_for(mo.part("wrfchem").annual.layers.n)
    inpt = EMISS_INPT_OPT.get(w.emiss_opt)
    d = w.domain
    col = f"(column {d} of the per-domain lists)" if d > 1 else ""
    return "\n".join([
        f"! Tongyuan wrfchemi files for domain d{d:02d}, mechanism "
        f"{mo.part('wrfchem').mechanism}: {fmt_name}_{first_day:%Y-%m-%d}_00:00:00 ... "
        f"{fmt_name}_{last_day:%Y-%m-%d}_00:00:00",
        "! one file per UTC day, 24 hourly frames from 00 UTC: the run (and every restart) must",
        "! start at 00 UTC of a day with a file (WRF opens wrfchemi_d<NN>_<start time>)",
        f"&time_control  {col}",
        " io_form_auxinput5     = 2,",
        " auxinput5_inname      = 'wrfchemi_d<domain>_<date>',",
        " auxinput5_interval_m  = 60,",
        " frames_per_auxinput5  = 24,",
        "/",
        "&chem",
        f" emiss_opt             = {w.emiss_opt},",
        f" kemit                 = {kemit},",
        " io_style_emissions    = 2,",
        (f" emiss_inpt_opt        = {inpt}," if inpt is not None else
         " ! emiss_inpt_opt: as your chem_opt requires (not fixed by these files)"),
        "/",
        "! kemit must not exceed the model's layers; level k of the files is added to WRF's",
        "! eta layer k: the configured vertical.layers_m should match the run's layers.",
        ""])


def finish(mo, ledger, build_dir: Path, days: list[pd.Timestamp]) -> list[str]:
    """After the model files are written and checked: the model-read columns in ``ledger``
    (a :class:`pipeline.ledger.Ledger`), its rule, and ``wrfchem/namelist.snippet``. Returns
    the lines to show in the summary; raises :class:`MassBalanceError` when the rule is fail."""
    if mo is None:
        return []
    cols, problems, notes = model_read(mo, ledger.table)
    for c in cols:
        ledger.table[c] = cols[c]
    lines = list(notes)
    if "wrfchem" in mo.formats and days:
        (build_dir / "wrfchem").mkdir(parents=True, exist_ok=True)
        text = namelist_snippet(mo, days[0], days[-1])
        (build_dir / "wrfchem" / "namelist.snippet").write_text(text)
        lines.append("wrfchem: the namelist lines these files need are in "
                     "wrfchem/namelist.snippet")
    if problems and mo.model_read == "fail":
        raise MassBalanceError("the models would not read all of the inventory "
                               "(output.model_read: fail):\n  " + "\n  ".join(problems))
    for p in problems:
        print(f"WARNING: {p}")
    for line in lines:
        print(line)
    return problems + lines
