"""What the models would actually read of the inventory, and the WRF-Chem namelist lines.

For every model format of a build, :func:`model_read` computes per ledger row (sector ×
inventory species) the mass the configured model options would read: a model species counts
when the model reads it — WRF-Chem: the ``emiss_opt`` package reads and uses ``E_<species>``
(``config/wrfchem_packages.csv``, WRF Registry facts); CMAQ: a default DESID/EmissCtrl rule of
the configured CMAQ version and mechanism emits that surrogate
(``config/cmaq_desid_surrogates.csv``, CMAQ namelist facts). Derived speciation pollutants
are traced back: PM10 = PMC + PM2.5 and PM2.5 = BC + OC + (PM2.5 − BC − OC).
Tracer species (SOAALK, NH3_FERT: mass other species already carry) are never counted. CMAQ
also reads the surrogates of the user's own rules (``output.cmaq.extra_rules``), and with
bidirectional NH3 (``output.cmaq.abflux``) subtracts NH3_FERT from NH3: that fertiliser NH3 is
not read, by design (CMAQ computes it), and is named as such rather than as a problem.
``ledger.csv`` gets ``<format>_read_kg`` and
``<format>_read_fraction``; a species the mechanism carries but the model reads below
1 − 1e-6 fails the build (``output.model_read: fail``) or is reported (``warn``), naming the
model species that hold the unread mass; a species the mechanism does not carry at all is
named as not carried.

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
#: why CMAQ's default namelists emit no such surrogate (cmaq_emissions.md §8-9)
CMAQ_WHY = {"IVOC": "no default DESID rule; CMAQ represents IVOC-range SOA through PCVOC "
                    "(6.579 x POC+PNCOM)",
            "UNR": "unreactive carbon: no CB6 species, no rule",
            "NVOL": "non-volatile carbon: no CB6 species, no rule",
            "CO2": "no default rule: add a CO2 tracer species and rule (cmaq/README.txt) and "
                   "output.cmaq.extra_rules: [CO2]",
            "CO2_FOSSIL": "no default rule (a tracer of the user's, as CO2)",
            "CO2_BIO": "no default rule (a tracer of the user's, as CO2)"}
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
    extra = tuple(mo.cmaq.extra_rules) if mo.cmaq is not None else ()
    names = known[(version, mech)] | frozenset(extra)
    who = f"CMAQ {version} default DESID rules of {mech}" + (
        f" + the user's rules for {', '.join(extra)}" if extra else "")
    return who, names.__contains__


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
    problems (carried, read below 1 − 1e-6) and the notes (species not carried, mass not read
    by design)."""
    gridded = ledger["gridded_kg"]
    cols: dict[str, list[float]] = {}
    problems, notes = [], []
    for fmt in mo.formats:
        part = mo.part(fmt)
        spec = part.speciation
        who, reads = reader(fmt, mo)
        names = [m.name for m in spec.species]
        read = np.array([reads(m.name) and not m.tracer for m in spec.species], dtype=float)
        abflux = fmt == "cmaq" and mo.cmaq is not None and mo.cmaq.abflux
        fert = np.array([m.name == "NH3_FERT" and m.tracer for m in spec.species], dtype=float)
        kg_read, kg_design = [], []
        lost: dict[tuple[str, str], float] = {}  # (inventory species, model species) → kg
        for sector, sp in ledger.index:
            share = spec.shares_for(str(sector))
            total = design = 0.0
            for p in _pieces(sp, spec.pollutants):
                i = spec.pollutants.index(p)
                kg = _pollutant_kg(gridded, sector, p)
                total += kg * float(share[i] @ read)
                for j in np.flatnonzero((share[i] > 0) & (read == 0)):
                    lost[(sp, names[j])] = lost.get((sp, names[j]), 0.0) + kg * share[i, j]
                if abflux:  # CMAQ: NH3 += -1 x NH3_FERT on every stream (bidirectional NH3)
                    sub = kg * float(spec.tracer_shares_for(str(sector))[i] @ fert)
                    total -= sub
                    design += sub
            kg_read.append(total)
            kg_design.append(design)
        kg = pd.Series(kg_read, index=ledger.index)
        by_design = pd.Series(kg_design, index=ledger.index)
        cols[f"{fmt}_read_kg"] = kg.tolist()
        frac = (kg / gridded.where(gridded > 0)).fillna(1.0)
        cols[f"{fmt}_read_fraction"] = frac.tolist()
        absent = []
        for sp in dict.fromkeys(ledger.index.get_level_values("species")):
            g = float(gridded.xs(sp, level="species").sum())
            if g <= 0 or (mo.emitted and sp not in mo.emitted):  # CO2e: derived, no variable
                continue
            if not _pieces(sp, spec.pollutants):
                t = g / 1e3
                absent.append(f"{sp} ({t:,.0f} t)" if t >= 100 else f"{sp} ({t:.3g} t)")
                continue
            got = float(kg.xs(sp, level="species").sum())
            design = float(by_design.xs(sp, level="species").sum())
            if design > 0:
                notes.append(f"{fmt}: CTM_ABFLUX (output.cmaq.abflux): CMAQ subtracts NH3_FERT "
                             f"from NH3 and computes fertiliser NH3 itself: {design / g:.4%} of "
                             f"{sp} ({design / 1e3:,.1f} t) is not read, by design")
            f = (got + design) / g
            if f < 1 - TOL:
                parts = sorted(((v, m) for (s_, m), v in lost.items() if s_ == sp and v > 0),
                               reverse=True)
                detail = ", ".join(f"{m} {v / g:.2%}" + (f" ({CMAQ_WHY[m]})" if fmt == "cmaq"
                                                          and m in CMAQ_WHY else "")
                                   for v, m in parts)
                problems.append(f"{fmt} ({who}, mechanism {part.mechanism}): reads "
                                f"{got / g:.4%} of {sp}" + (f"; not read: {detail}" if detail
                                                            else ""))
        if absent:
            notes.append(f"{fmt} ({who}, mechanism {part.mechanism}) carries no variable for: "
                         + ", ".join(absent) + " (in the CF files and the ledger only)")
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


def cmaq_readme(mo, first_day: pd.Timestamp, last_day: pd.Timestamp) -> str:
    """How to point CMAQ at the files: run-script variables, namelists, streams, NH3_FERT,
    what the default namelists do not emit and the CO2 tracer lines."""
    part = mo.part("cmaq")
    grid = part.annual.grid.name
    version, mech = mo.cmaq_desid.split(":")
    merged = f"emis_{part.mechanism}_{grid}_${{YYYYMMDD}}.nc"
    names = {m.name for m in part.speciation.species}
    read = desid_surrogates()[(version, mech)] | frozenset(mo.cmaq.extra_rules
                                                          if mo.cmaq is not None else ())
    unread = sorted(n for n in names if n not in read and n != "NH3_FERT")
    nml = (f"EMISSCTRL_NML = EmissCtrl_{mech}.nml" if version.startswith("5.3") else
           f"DESID_CTRL_NML = CMAQ_Control_DESID.nml, DESID_CHEM_CTRL_NML = "
           f"CMAQ_Control_DESID_{mech}.nml")
    out = [f"Tongyuan CMAQ emission files: mechanism {part.mechanism}, read as CMAQ {version} "
           f"{mech}; grid {grid} (GRID_NAME; GRIDDESC grid = this grid or a window inside it)",
           f"days {first_day:%Y-%m-%d} .. {last_day:%Y-%m-%d} (UTC), one GRDDED3 file a day, "
           f"25 hourly steps 00..24 UTC, gases moles/s, aerosols g/s per cell; "
           f"{part.annual.n_layers} layer(s): file layer k is CMAQ layer k",
           f"namelists: {nml} (the model-read ledger, ledger.csv cmaq_read_kg, assumes their "
           "default rules)", "",
           "Use EITHER the merged file OR the streams, never both (every emission would count "
           "twice).", "", "merged file (one stream), in the run script:",
           "  setenv N_EMIS_GR 1",
           f"  setenv GR_EMIS_001 <build>/cmaq/{merged}",
           "  setenv GR_EMIS_LAB_001 TONGYUAN", "  setenv GR_EM_SYM_DATE_001 F"]
    if mo.streams:
        out += ["", f"streams ({len(mo.streams)}, output.cmaq.streams; each stream's files add "
                "up to the merged file):", f"  setenv N_EMIS_GR {len(mo.streams)}"]
        for i, (label, secs) in enumerate(mo.streams.items(), 1):
            out += [f"  setenv GR_EMIS_{i:03d} <build>/cmaq/streams/emis_{part.mechanism}_"
                    f"{grid}_{label}_${{YYYYMMDD}}.nc",
                    f"  setenv GR_EMIS_LAB_{i:03d} {label}    # {', '.join(secs)}",
                    f"  setenv GR_EM_SYM_DATE_{i:03d} F"]
        out += ["  a DESID rule can address a stream by its label, e.g. in CMAQ_Control_DESID_"
                f"{mech}.nml (syntax of CMAQ 5.4 DOCS/Users_Guide/Appendix/CMAQ_UG_appendixB_"
                "emissions_control.md:237):",
                f"  'EVERYWHERE', '{next(iter(mo.streams))}', 'All', 'All', 'All', 0.5, "
                "'UNIT', 'm',   ! halves that stream"]
    if "NH3_FERT" in names:
        spec = part.speciation
        k, i = [m.name for m in spec.species].index("NH3_FERT"), spec.pollutants.index("NH3")
        fert = [x for x, t in spec.tracer_shares.items() if x != "*" and t[i, k] > 0]
        out += ["", "bidirectional NH3: NH3 holds all NH3; NH3_FERT repeats its fertiliser part "
                f"(sectors {', '.join(fert)}). With CTM_ABFLUX Y CMAQ subtracts NH3_FERT from "
                "NH3 in every stream (CMAQ 5.4 CCTM/src/emis/emis/desid_util.F:297-307) and "
                "computes fertiliser NH3 itself; with N, NH3_FERT is unused. Set "
                "output.cmaq.abflux to "
                "match your run (the ledger then counts that NH3 as not read, by design)."]
    if unread:
        out += ["", "variables the default namelists do not emit (a line in the CCTM log, "
                "mass in ledger.csv, not in cmaq_read_kg):"]
        out += [f"  {n}: {CMAQ_WHY.get(n, 'no default DESID rule')}" for n in unread]
    if "CO2" in names:
        out += ["", "CO2 as a CMAQ tracer (format of CMAQ 5.4 DOCS/Users_Guide/Tutorials/"
                "CMAQ_UG_tutorial_tracers.md:41-50): a line in your tracer namelist (TRAC_NML, "
                "instead of trac0/Species_Table_TR_0.nml)",
                "  'CO2'  ,44.01 ,''  ,-1 ,''  ,-1 ,''  ,-1 ,''  ,-1 ,''  ,''  ,'YES' ,'YES' "
                ",''  ,''  ,'YES',",
                f"and a rule in CMAQ_Control_DESID_{mech}.nml",
                "  'EVERYWHERE', 'ALL'         ,'CO2'    ,'CO2'         ,'GAS'  ,1.  ,'UNIT','a',",
                "then set output.cmaq.extra_rules: [CO2] so the ledger counts it. The tracer "
                "carries Tongyuan's CO2 only (no background unless IC/BC give one)."]
    return "\n".join(out) + "\n"


def finish(mo, ledger, build_dir: Path, days: list[pd.Timestamp]) -> list[str]:
    """After the model files are written and checked: the model-read columns in ``ledger``
    (a :class:`pipeline.ledger.Ledger`), its rule, ``wrfchem/namelist.snippet`` and
    ``cmaq/README.txt``. Returns the lines to show in the summary; raises
    :class:`MassBalanceError` when the rule is fail."""
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
    if "cmaq" in mo.formats and days:
        (build_dir / "cmaq").mkdir(parents=True, exist_ok=True)
        (build_dir / "cmaq" / "README.txt").write_text(cmaq_readme(mo, days[0], days[-1]))
        if mo.streams:
            lines.append(f"cmaq: {len(mo.streams)} streams in cmaq/streams/ ("
                         + "; ".join(f"{k}: {', '.join(v)}" for k, v in mo.streams.items())
                         + ")")
        lines.append("cmaq: run-script variables (N_EMIS_GR, GR_EMIS_###, GR_EMIS_LAB_###), "
                     "namelists, NH3_FERT and the CO2 tracer lines are in cmaq/README.txt")
    if problems and mo.model_read == "fail":
        raise MassBalanceError("the models would not read all of the inventory "
                               "(output.model_read: fail):\n  " + "\n  ".join(problems))
    for p in problems:
        print(f"WARNING: {p}")
    for line in lines:
        print(line)
    return [f"WARNING: {p}" for p in problems] + lines
