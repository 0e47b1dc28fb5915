"""How the SOAALK rows of make_speciation.py were computed (run once by hand; not part of a build).

SOAALK is a tracer of the EPA Speciation Tool's mechanism CB6R3_AE7_TRACER ("Carbon Bond
version 6 for CMAQ AERO7 aerosol scheme - SOAALK", CMASCenter/Speciation-Tool
import_data/sptool_mechanism_description_speciate5_0_04mar2020_v0.csv:4). The Tool's published
criteria output gspro.CB6r3_ae7_criteria.CMAQ.2022Feb02.txt has no SOAALK, so this script
repeats the Tool's arithmetic (src/make_splits.sql, src/prep_out.sql at b90a7de3f7b2) for our
seven VOC profiles:

* weights: SPECIATE profile weight percents, species with a volatile molecular weight > 0,
  renormalised to 100 %;
* moles of model species per gram = Σ_species weight/100 · moles_per_mole / volatile_mw;
* divisor (average molecular weight) = Σ_species mole share · volatile_mw · C(model species) /
  C(species); split = moles per gram · divisor (the gspro "massfrac" column).

Inputs: SPECIATE profile weights from atmoschem/respeciate data/SPECIATE.rda (SPECIATE 5.2 tables,
tblLastUpdated 2022-07-15), volatile molecular weights from the Tool's
import_data/speciate5.0_exports/export_species_properties_2020_0313.txt (column 15), moles per
mole from import_data/mechanism_forImport_11Feb2020_speciate5_0_withSOAALK_13mar2020_v0.csv and
carbons from import_data/carbons_all_mechanisms_speciate5_0_04mar2020_v0.csv.

Check: the same arithmetic with mechanism CB6R3_AE7 gives the Tool's published gspro split for
every species of the seven profiles to within 9e-4 of TOG mass (8750a 8.1e-4, 8774 8.7e-4,
8744 3.5e-4, the four small profiles < 4e-7: SPECIATE 5.2 weights vs the Tool's own export).

Usage: python soaalk_from_speciate.py SPECIATE.rda props.txt mechanism.csv carbons.csv
(reading the .rda needs the `rdata` package).
"""
import csv
import sys
from collections import defaultdict

PROFILES = ["8750a", "8774", "8744", "0008", "0003", "0002", "0122"]


def split(weights, vmw, mech, carb, mechanism):
    """{model species: (split, divisor)} of one profile (weights: species id → percent)."""
    w = {s: p for s, p in weights.items() if p > 0 and vmw.get(s, 0) > 0}
    tot = sum(w.values())
    mpg, contrib = defaultdict(float), defaultdict(list)
    for s, p in w.items():
        maps = mech.get((mechanism, s)) or [("UNK", 1.0)]
        sc = sum(f * carb.get((mechanism, a), 1.0) for a, f in maps) or 1.0
        for a, f in maps:
            x = p / tot * f / vmw[s]
            mpg[a] += x
            contrib[a].append((x, vmw[s] * carb.get((mechanism, a), 1.0) / sc))
    return {a: (x * (sum(c * g for c, g in contrib[a]) / x), sum(c * g for c, g in contrib[a]) / x)
            for a, x in mpg.items()}


def main(rda, props, mech_csv, carbons_csv):
    import rdata

    sp = rdata.read_rda(rda)["SPECIATE"]["SPECIES"]
    vmw = {}
    for r in csv.reader(open(props, encoding="latin-1")):
        try:
            vmw[r[0]] = float(r[14])
        except (ValueError, IndexError):
            pass
    mech = defaultdict(list)
    for m, s, a, f in csv.reader(open(mech_csv)):
        if float(f) > 0:
            mech[(m, s)].append((a, float(f)))
    carb = {(m, a): float(c) for m, a, c in csv.reader(open(carbons_csv))}
    for p in PROFILES:
        rows = sp[sp.PROFILE_CODE == p]
        weights = defaultdict(float)
        for s, pct in zip(rows.SPECIES_ID, rows.WEIGHT_PERCENT):
            weights[str(int(s))] += float(pct)
        t = split(weights, vmw, mech, carb, "CB6R3_AE7_TRACER").get("SOAALK")
        print(p, "SOAALK", *(f"{t[0]:.6e} {t[1]:.6f}".split() if t else ["none"]))


if __name__ == "__main__":
    main(*sys.argv[1:5])
