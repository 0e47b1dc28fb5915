"""WRF-Chem speciation rows, derived from the CB6r3 rows of make_speciation.py (imported there).

One mechanism per emiss_opt package of WRF-Chem (wrf-model/WRF v4.7.1 Registry/registry.chem
:4054-4075; the variables each package reads are ../wrfchem_packages.csv):

=================  =========  ==================================================================
mechanism          emiss_opt  WRF-Chem chemistry it feeds
=================  =========  ==================================================================
radm2_sorgam       3          RADM2/RACM + MADE/SORGAM (chem_opt 2, 11, 12, ...)
cbmz_mosaic        4          CBMZ + MOSAIC (chem_opt 7-10, 31-34), emiss_inpt_opt 1
mozcart            8          MOZART-4 gases + GOCART aerosol (chem_opt 112)
mozart_mosaic      10         MOZART + MOSAIC (chem_opt 201-203)
cb05_radm2         14         CB05 + SORGAM fed RADM2-named input (chem_opt 131/132)
cb05               15         CB05 + SORGAM fed CB05-named input (emiss_inpt_opt 101)
wrfghg_co2         16         WRF-GHG CO2 tracers (chem_opt 16, emiss_inpt_opt 16)
wrfghg             17         WRF-GHG CO2/CO/CH4 tracers (chem_opt 17, emiss_inpt_opt 16)
=================  =========  ==================================================================

VOC: each CB6r3 species of a sector's profile (EPA Speciation Tool output, SPECIATE profile
cited on the CB6r3 row) goes whole to one species of the target mechanism (:data:`VOC_MAP`);
mass is kept, moles are the mass over the target's molar mass: the representative molecule of a
lumped molecule mechanism (RADM2, MOZART; :data:`MOLAR`), or the CB6r3 profile's own divisor
when the target is the same carbon-bond species (``None``). Rows mapping several CB6r3 species
onto one target carry the mass-weighted harmonic molar mass, so moles are summed exactly.
Unreactive (UNR), intermediate- and non-volatile (IVOC, NVOL) carbon has no home in these
mechanisms; it is put in the slowest alkane lump so that its mass reaches the model (marked
ASSUMPTION: it makes that mass slightly reactive).

PM: BC and OC as EC and organic carbon; of PM2.5 − BC − OC (the MEIAT-CMAQ sector profile on the
CB6r3 rows) sulfate, nitrate (and for MOSAIC ammonium, sodium, chloride) to their own variables,
the rest as unspeciated PM2.5; PM10 − PM2.5 as the package's coarse variable. Nucleation (I) and
accumulation (J) modes split 0.2 : 0.8, the split of the emis_map examples of NCAR ACOM's
anthro_emis utility ('ECI(a)->0.2*BC','ECJ(a)->0.8*BC'); ASSUMPTION, no measured size split.
"""

from __future__ import annotations

import re
from collections import defaultdict

SOURCE = "cb6r3_ae6"
REG = "WRF v4.7.1 Registry/registry.chem (see config/wrfchem_packages.csv)"
ANTHRO = ("I:J = 0.2:0.8 as in NCAR ACOM anthro_emis emis_map examples ('ECI(a)->0.2*BC'); "
          "ASSUMPTION")

#: representative molecule of a lumped target species: (g/mol, molecule)
MOLAR = {
    "HC3": (44.097, "propane"), "HC5": (72.150, "n-pentane"), "HC8": (114.229, "n-octane"),
    "ETH_RADM": (30.070, "ethane"), "OL2": (28.054, "ethene"), "OLT": (42.081, "propene"),
    "OLI": (56.107, "trans-2-butene"), "ISO": (68.119, "isoprene"),
    "TOL": (92.141, "toluene"), "XYL": (106.167, "m-xylene"), "HCHO": (30.026, "formaldehyde"),
    "ALD": (44.053, "acetaldehyde"), "KET": (72.107, "methyl ethyl ketone"),
    "TERP": (136.238, "alpha-pinene"), "CH3OH": (32.042, "methanol"),
    "C2H5OH": (46.069, "ethanol"), "BIGALK": (72.150, "n-pentane (MOZART-4 BIGALK C5H12)"),
    "BIGENE": (56.107, "butene (MOZART-4 BIGENE C4H8)"), "C2H4": (28.054, "ethene"),
    "C2H6": (30.070, "ethane"), "C2H2": (26.038, "ethyne"), "C3H6": (42.081, "propene"),
    "C3H8": (44.097, "propane"), "CH2O": (30.026, "formaldehyde"),
    "CH3CHO": (44.053, "acetaldehyde"), "CH3COCH3": (58.080, "acetone"),
    "MEK": (72.107, "methyl ethyl ketone"), "TOLUENE": (92.141, "toluene"),
    "BENZENE": (78.114, "benzene"), "XYLENE": (106.167, "m-xylene"),
    "ISOP": (68.119, "isoprene"), "C10H16": (136.238, "alpha-pinene"),
    "APIN": (136.238, "alpha-pinene"), "CO2": (44.0095, "carbon dioxide"),
    "CH4": (16.0425, "methane"),
}
#: CB05 carbon-bond targets whose moles are not the CB6r3 divisor's: (g/mol, why)
CB05_PAR = {"BENZ": (78.114, "benzene = 1 PAR + 5 UNR in CB05 (only the PAR carried)"),
            "ETHY": (26.038, "ethyne as 1 PAR per molecule; ASSUMPTION"),
            "PRPA": (44.097 / 1.5, "propane = 1.5 PAR + 1.5 UNR in CB05"),
            "ACET": (58.080, "acetone as 1 PAR per molecule; ASSUMPTION"),
            "IVOC": (14.027, "IVOC carbon as PAR (one per CH2); ASSUMPTION"),
            "NVOL": (14.027, "NVOL carbon as PAR (one per CH2); ASSUMPTION")}

_RADM2 = {"ETHA": "ETH_RADM", "ETH": "OL2", "ETHY": "HC3", "PRPA": "HC3", "PAR": "HC5",
          "UNR": "HC3", "IVOC": "HC8", "NVOL": "HC8", "OLE": "OLT", "IOLE": "OLI",
          "TOL": "TOL", "BENZ": "TOL", "XYLMN": "XYL", "NAPH": "XYL", "FORM": "HCHO",
          "ALD2": "ALD", "ALDX": "ALD", "KET": "KET", "ACET": "KET", "MEOH": "HC3",
          "ETOH": "HC3", "ISOP": "ISO", "TERP": "TERP", "APIN": "TERP"}
_MOZ = {"ETHA": "C2H6", "ETH": "C2H4", "ETHY": "C2H6", "PRPA": "C3H8", "PAR": "BIGALK",
        "UNR": "BIGALK", "IVOC": "BIGALK", "NVOL": "BIGALK", "OLE": "C3H6", "IOLE": "BIGENE",
        "TOL": "TOLUENE", "BENZ": "TOLUENE", "XYLMN": "TOLUENE", "NAPH": "TOLUENE",
        "FORM": "CH2O", "ALD2": "CH3CHO", "ALDX": "CH3CHO", "KET": "MEK", "ACET": "CH3COCH3",
        "MEOH": "CH3OH", "ETOH": "C2H5OH", "ISOP": "ISOP", "TERP": "C10H16", "APIN": "C10H16"}
_CB05 = {s: s for s in ("PAR", "OLE", "IOLE", "TOL", "FORM", "ALD2", "ALDX", "ETH", "ETHA",
                        "MEOH", "ETOH", "ISOP", "TERP")}
_CB05.update({"XYLMN": "XYL", "NAPH": "XYL", "APIN": "TERP", "KET": "PAR", "UNR": "PAR",
              **{s: "PAR" for s in CB05_PAR}})
#: mechanism → CB6r3 VOC species → target species (keys of MOLAR map to their molecule)
VOC_MAP = {
    "radm2_sorgam": _RADM2,
    # E_ISO is not used by CBMZ and the package has no E_TERP (module_cbmz_addemiss.F:25-229);
    # with emiss_inpt_opt 1 E_CH3OH/E_C2H5OH are ignored (:173-195): alcohols stay in HC3
    "cbmz_mosaic": {**_RADM2, "ISOP": "OLT", "TERP": "OLI", "APIN": "OLI"},
    "cb05_radm2": {**_RADM2, "ALDX": "ALDX", "MEOH": "CH3OH", "ETOH": "C2H5OH"},
    "mozcart": _MOZ,
    "mozart_mosaic": {**_MOZ, "ETHY": "C2H2", "BENZ": "BENZENE", "XYLMN": "XYLENE",
                      "NAPH": "XYLENE", "TERP": "APIN", "APIN": "APIN"},
    "cb05": _CB05,
}
#: mechanism → (emiss_opt, NOx split {species: share of NO2-equivalent mass}, PM scheme,
#: coarse variable or None, greenhouse gases carried)
PACKAGES = {
    "radm2_sorgam": (3, {"NO": 0.9, "NO2": 0.092, "HONO": 0.008}, "ij", "PM_10",
                     ("CO2", "CH4")),
    # with emiss_inpt_opt 1 CBMZ ignores E_NO2 (module_cbmz_addemiss.F:173-195): all NOx as NO
    "cbmz_mosaic": (4, {"NO": 1.0}, "ij", None, ()),
    "mozcart": (8, {"NO": 0.9, "NO2": 0.1}, "gocart", "PM_10", ()),
    "mozart_mosaic": (10, {"NO": 0.9, "NO2": 0.092, "HONO": 0.008}, "ij_mosaic", "PM_10", ()),
    "cb05_radm2": (14, {"NO": 0.9, "NO2": 0.1}, "ij", "PM10", ()),
    "cb05": (15, {"NO": 0.9, "NO2": 0.1}, "ij", "PM10", ()),
    "wrfghg_co2": (16, None, None, None, ("CO2",)),
    "wrfghg": (17, None, None, None, ("CO2", "CH4")),
}
NOX_REF = ("MEIAT-CMAQ NOx split 90 % NO / 9.2 % NO2 / 0.8 % HONO of NO2-equivalent mass; a "
           "share for a variable the package lacks goes to NO2 (or NO)")


def _voc_target(mech: str, cb6: str, divisor: float) -> tuple[str, float, str]:
    """(target species, its molar mass, why) of one CB6r3 VOC species in ``mech``."""
    target = VOC_MAP[mech].get(cb6)
    if target is None:
        raise KeyError(f"{mech}: no target for CB6r3 {cb6}")
    if mech == "cb05":
        if cb6 in CB05_PAR:
            m, why = CB05_PAR[cb6]
            return target, m, why
        why = ("unreactive carbon kept as PAR so its mass reaches the model; ASSUMPTION"
               if cb6 == "UNR" else "same carbon-bond species, CB6r3 divisor")
        return target, divisor, why
    if target == "ALDX":
        return target, divisor, "same carbon-bond species, CB6r3 divisor"
    m, molecule = MOLAR[target]
    name = "ETH" if target == "ETH_RADM" else target
    why = f"{name} as {molecule} {m:g} g/mol"
    if cb6 in ("UNR", "IVOC", "NVOL"):
        why += "; no such species in the mechanism, kept in an alkane lump; ASSUMPTION"
    return name, m, why


def _merge(parts: list[tuple[str, str, float, float, str]]) -> list[list[str]]:
    """Rows (sector, pollutant, species, fraction, g/mol or nan, reference) summed per target."""
    acc: dict[tuple[str, str, str], list] = defaultdict(lambda: [0.0, 0.0, []])
    for sector, pollutant, species, frac, molar, ref in parts:
        a = acc[(sector, pollutant, species)]
        a[0] += frac
        a[1] += frac / molar if molar == molar else 0.0
        prefix, detail = ref if isinstance(ref, tuple) else ("", ref)
        details = next((d for p, d in a[2] if p == prefix), None)
        if details is None:
            a[2].append((prefix, details := []))
        if detail not in details:
            details.append(detail)
    out = []
    for (sector, pollutant, species), (frac, moles, refs) in acc.items():
        molar = f"{frac / moles:.6f}" if moles > 0 else ""
        text = " | ".join(f"{p}: {'; '.join(d)}" if p else "; ".join(d) for p, d in refs)
        out.append([sector, pollutant, species, f"{frac:.6g}", molar, text])
    return out


def _voc_parts(mech: str, cb6_rows: list[list[str]]) -> list:
    parts = []
    for _, sector, pollutant, s, frac, divisor, ref in cb6_rows:
        if pollutant != "NMVOC":
            continue
        target, molar, why = _voc_target(mech, s, float(divisor))
        profile = re.search(r"SPECIATE \S+", ref).group(0)
        parts.append((sector, "NMVOC", target, float(frac), molar,
                      (f"{profile} via EPA Speciation Tool CB6r3 (gspro 2022Feb02)",
                       f"{s} → {target}: {why}")))
    return parts


def _pm_parts(mech: str, cb6_rows: list[list[str]]) -> list:
    _, _, scheme, coarse, _ = PACKAGES[mech]
    parts = []
    if scheme is None:
        return parts
    if scheme == "gocart":
        parts += [("*", "BC", "BC", 1.0, float("nan"), "inventory BC → GOCART BC"),
                  ("*", "OC", "OC", 1.0, float("nan"), "inventory OC → GOCART OC"),
                  ("*", "PM2_5_other", "PM_25", 1.0, float("nan"),
                   "PM2.5 − BC − OC unspeciated (GOCART p25)")]
    else:
        own = {"PSO4": "SO4", "PNO3": "NO3"}
        if scheme == "ij_mosaic":
            own.update({"PNH4": "NH4", "PNA": "NA", "PCL": "CL"})
        for pol, name in (("BC", "EC"), ("OC", "ORG")):
            for mode, share in (("I", 0.2), ("J", 0.8)):
                parts.append(("*", pol, f"{name}{mode}", share, float("nan"),
                              f"inventory {pol} as {name} (carbon mass); {ANTHRO}"))
        for _, sector, pollutant, s, frac, _, ref in cb6_rows:
            if pollutant != "PM2_5_other":
                continue
            base = own.get(s, "PM25")
            for mode, share in (("I", 0.2), ("J", 0.8)):
                parts.append((sector, pollutant, f"{base}{mode}", float(frac) * share,
                              float("nan"), (f"{ref.split(';')[0]}; {ANTHRO}", s)))
    if coarse is not None:
        parts.append(("*", "PMC", coarse, 1.0, float("nan"),
                      f"PM10 − PM2.5 as the package's coarse PM E_{coarse} ({REG})"))
    return parts


def _gas_parts(mech: str) -> list:
    _, nox, scheme, _, ghg = PACKAGES[mech]
    parts = []
    for pol in ghg:
        parts.append(("*", pol, pol, 1.0, MOLAR[pol][0], f"one to one ({REG})"))
    if nox is None:
        parts.append(("*", "CO", "CO", 1.0, 28.0101, f"one to one ({REG})"))
        return parts
    for s, share in nox.items():
        parts.append(("*", "NOx", s, share, 46.0055, NOX_REF))
    parts += [("*", "SO2", "SO2", 1.0, 64.0638, "one to one"),
              ("*", "CO", "CO", 1.0, 28.0101, "one to one"),
              ("*", "NH3", "NH3", 1.0, 17.0305, "one to one")]
    return parts


def wrfchem_rows(rows: list[list[str]]) -> list[list[str]]:
    """The speciation rows of every WRF-Chem mechanism, from the CB6r3 ``rows``."""
    cb6 = [r for r in rows if r[0] == SOURCE]
    out = []
    for mech in PACKAGES:
        parts = _gas_parts(mech)
        if PACKAGES[mech][2] is not None:
            parts += _voc_parts(mech, cb6) + _pm_parts(mech, cb6)
        eo = PACKAGES[mech][0]
        out += [[mech, *r[:5], f"emiss_opt {eo}: {r[5]}"] for r in _merge(parts)]
    return out
