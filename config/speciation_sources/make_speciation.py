"""Builds ../speciation.csv from the profiles transcribed below (run: python make_speciation.py).

VOC: EPA Speciation Tool output gspro.CB6r3_ae7_criteria.CMAQ.2022Feb02.txt
(github.com/CMASCenter/Speciation-Tool, outputs/), rows "profile TOG species massfrac divisor":
mass fraction of TOG and the divisor (g/mol) that turns it into moles. CH4 is dropped and the
rest renormalised, so the fractions are of non-methane organic gas (≈ NMVOC).
PM2.5: BC → PEC and OC → POC one to one (the inventory has both); the rest, PM2.5 − BC − OC,
by the sector profiles of MEIAT-CMAQ (github.com/Airwhf/MEIAT-CMAQ,
species/MEIC-CB05_CB06_speciate_{transportation,industry,power,residential}.csv, AE6 rows,
each summing to 1; PEC/POC are not in them).
NOx: 90 % NO, 9.2 % NO2, 0.8 % HONO of the NO2-equivalent mass (the MEIAT-CMAQ split, same in
all its sector files), turned into moles with 46.0055 g/mol for all three because inventory NOx
is NO2-equivalent mass (US EPA NEI FAQ "How are Oxides of Nitrogen (NOx) defined in the NEI?").

Two CMAQ mechanisms are written from these profiles: ``cb6r3_ae6`` (CMAQ 5.3.3 cb6r3_ae6_aq) and
``cb6r5_ae7`` (CMAQ 5.4/5.5 default cb6r5_ae7_aq: the same emission surrogates, since the
Speciation Tool's CB6r3_AE7 output feeds both and the 5.4 cb6r5 DESID namelist reads what the
cb6r3_ae7 one reads plus DMS; config/cmaq_desid_rules.csv). Both carry, as **tracer** rows
(column ``tracer`` = yes: mass already in other species, not counted twice):

* SOAALK, the Speciation Tool's CB6R3_AE7_TRACER species, per VOC profile (:data:`SOAALK`,
  computed with soaalk_from_speciate.py: the Tool's own arithmetic on the SPECIATE weights);
* NH3_FERT = the NH3 of the fertiliser sector, which CMAQ subtracts from NH3 when bidirectional
  NH3 (CTM_ABFLUX) is on (CMAQ 5.4 desid_util.F:297-307).

and CO2 and CH4 as pass-through species (CH4 → ECH4 by the default DESID rule; CO2 needs a
tracer species and rule of the user's, see cmaq/README.txt of a build).
"""
import csv
from pathlib import Path

from wrfchem_mechanisms import wrfchem_rows

VOC = {  # profile: "species massfrac divisor" (TOG basis)
    "8750a": """ACET 7.498128e-04 58.080000|ALD2 0.010359 44.053000|ALDX 2.394366e-03 35.211268|BENZ 0.043686 78.114000|CH4 0.139433 16.043000|ETH 0.058635 28.054000|ETHA 0.023007 30.070000|ETHY 0.032166 26.038000|FORM 0.013281 30.026000|IOLE 0.021701 55.520487|IVOC 9.176111e-03 139.074123|KET 1.099632e-04 18.026750|NAPH 3.806768e-04 128.174000|OLE 0.041603 28.142660|PAR 0.350466 14.280433|PRPA 1.981278e-03 44.097000|TOL 0.114017 92.691172|UNR 4.160024e-03 14.284324|XYLMN 0.132699 106.458778""",
    "8774": """ALD2 0.055695 44.053000|ALDX 0.019938 42.538002|APIN 8.746480e-04 136.238000|BENZ 0.032034 78.114000|ETH 0.204502 28.054000|ETHA 0.018481 30.070000|ETHY 0.066883 26.038000|FORM 0.088857 30.026000|IOLE 0.024105 55.208599|ISOP 1.529953e-03 68.119000|IVOC 2.936682e-03 132.163905|KET 7.489033e-03 18.026750|OLE 0.080453 29.385828|PAR 0.322950 14.803498|PRPA 0.022260 44.097000|TERP 3.133474e-04 136.238000|TOL 0.027611 94.791333|UNR 1.171310e-03 14.424999|XYLMN 0.021918 106.192097""",
    "8744": """ACET 4.554634e-03 58.080000|ALD2 9.603550e-05 44.053000|ETOH 0.012948 46.069000|FORM 3.212780e-05 30.026000|IOLE 6.711947e-03 40.491959|IVOC 0.261070 99.308173|KET 5.638283e-03 17.653837|MEOH 9.732757e-03 32.042000|NAPH 1.358644e-04 128.174000|NVOL 2.474876e-03 316.076062|OLE 5.322634e-03 23.397220|PAR 0.512314 11.057308|TERP 5.799484e-04 104.120004|TOL 0.061203 83.752205|UNR 0.043968 21.464313|XYLMN 0.073219 92.693177""",
    "0008": """BENZ 0.079 78.114|CH4 0.116 16.043|ETH 0.287 28.054|ETHA 0.028 30.070|ETHY 0.113 26.038|IOLE 0.070 54.092|OLE 0.182333 28.054|PAR 0.124667 14.027""",
    "0003": """BENZ 0.040 78.114|CH4 0.560 16.043|FORM 0.080 30.026|PAR 0.259722 14.446435|PRPA 0.040 44.097|TOL 0.020 92.141|UNR 2.777943e-04 14.363718""",
    "0002": """FORM 0.487 30.026|PAR 0.497379 14.420916|PRPA 0.012 44.097|UNR 3.621124e-03 14.319536""",
    "0122": """BENZ 0.077 78.114|CH4 0.804 16.043|ETH 0.087 28.054|ETHA 0.027 30.070|OLE 3.333376e-03 28.054|PAR 1.666688e-03 14.027""",
}
VOC_NAMES = {  # SPECIATE 5.2 PROFILE_NAME (atmoschem/respeciate data/SPECIATE.rda)
             "8750a": "Gasoline Exhaust - Reformulated gasoline",
             "8774": "Diesel Exhaust Emissions from Pre-2007 Model Year Heavy-Duty Diesel Trucks",
             "8744": "Composite Profile - Architectural Coatings: Solvent Borne and water borne",
             "0008": "Reciprocating Diesel Engine",
             "0003": "External Combustion Boiler - Natural Gas",
             "0002": "External Combustion Boiler - Distillate Oil",
             "0122": "Bar Screen Waste Incinerator"}
#: SOAALK (CB6R3_AE7_TRACER) per profile: (split of TOG, divisor g/mol) from
#: soaalk_from_speciate.py; profiles without a SOAALK species (0008, 0122) have none
SOAALK = {"8750a": (2.663027e-01, 90.732063), "8774": (1.695219e-01, 89.322578),
          "8744": (7.047577e-01, 139.011424), "0003": (1.700000e-01, 73.469145),
          "0002": (3.380000e-01, 85.110722)}
SOAALK_REF = ("SOAALK tracer of the EPA Speciation Tool mechanism CB6R3_AE7_TRACER "
              "(CMASCenter/Speciation-Tool import_data/mechanism_forImport_11Feb2020_speciate5_0_"
              "withSOAALK_13mar2020_v0.csv), the Tool's arithmetic (src/make_splits.sql) on "
              "SPECIATE 5.2 weights (atmoschem/respeciate), config/speciation_sources/"
              "soaalk_from_speciate.py; repeats alkane mass of PAR/IVOC (tracer)")
# sector → (profile, why); '*' is the default for other sectors
VOC_BY_SECTOR = {
    "*": ("0002", "closest combustion profile found (no coal-boiler profile found); ASSUMPTION"),
    "road": ("8750a", "gasoline vehicles dominate road VOC; diesel 8774 not mixed in; ASSUMPTION"),
    "shipping": ("0008", "closest profile for marine diesel engines; ASSUMPTION"),
    "offroad": ("0008", "closest profile for non-road diesel machinery; ASSUMPTION"),
    "solvents": ("8744", "surface coating"),
    "industry_process": ("8744", "no process profile found; coatings/solvent-like; ASSUMPTION"),
    "residential": ("0003", "natural-gas stoves and boilers; closest profile; ASSUMPTION"),
    "waste": ("0122", "poor stand-in for incinerators; ASSUMPTION"),
}
PM_REST = {  # MEIAT-CMAQ AE6 fractions of PM2.5 (applied to PM2.5 - BC - OC)
    "transportation": "PAL .005602|PCA .033303|PCL .009179|PFE .06222|PH2O .003706|PK .002276|PMG .040729|PMN .0005|PMOTHR .264368|PNA .002986|PNCOM .375107|PNH4 .041369|PNO3 .016703|PSI .043676|PSO4 .09631|PTI .001967",
    "industry": "PAL .030838|PCA .04692|PCL .005623|PFE .029831|PH2O .007782|PK .020635|PMG .001488|PMN .001368|PMOTHR .569705|PNA .01045|PNCOM .078912|PNH4 .001819|PNO3 .004444|PSI .089135|PSO4 .096941|PTI .00411",
    "power": "PAL .050235|PCA .034628|PCL .001152|PFE .025104|PH2O .0000395|PK .004844|PMG .000459|PMN .000248|PMOTHR .588929|PNA .000116|PNCOM .043903|PNH4 .003699|PNO3 .006201|PSI .0774444|PSO4 .159122|PTI .003877",
    "residential": "PAL .000906|PCA .00343|PCL .026758|PFE .000675|PH2O .0000286|PK .037723|PMG .000489|PMN .0000248|PMOTHR .075385|PNA .00556|PNCOM .793224|PNH4 .006773|PNO3 .006223|PSI .015033|PSO4 .027662|PTI .000103",
}
PM_BY_SECTOR = {"*": "industry", "power": "power", "residential": "residential",
                "road": "transportation", "shipping": "transportation",
                "offroad": "transportation"}
MEC = "cb6r3_ae6"
SPT = "EPA Speciation Tool gspro.CB6r3_ae7_criteria.CMAQ.2022Feb02 (CMASCenter/Speciation-Tool)"
MEIAT = "MEIAT-CMAQ species/MEIC-CB05_CB06_speciate_{}.csv (Airwhf/MEIAT-CMAQ)"

rows = []
for sector, (prof, why) in VOC_BY_SECTOR.items():
    parts = [p.split() for p in VOC[prof].split("|")]
    ch4 = sum(float(f) for s, f, _ in parts if s == "CH4")
    for s, f, mm in parts:
        if s == "CH4":
            continue
        rows.append([MEC, sector, "NMVOC", s, f"{float(f) / (1 - ch4):.6g}", mm,
                     f"{SPT}, SPECIATE {prof} {VOC_NAMES[prof]}; CH4 removed, renormalised to "
                     f"NMOG; {why}"])
for sector, prof in PM_BY_SECTOR.items():
    for item in PM_REST[prof].split("|"):
        s, f = item.split()
        rows.append([MEC, sector, "PM2_5_other", s, f, "", MEIAT.format(prof)
                     + "; applied to PM2.5 - BC - OC" + ("" if sector != "*" else
                                                           "; default for other sectors")])
rows += [[MEC, "*", "BC", "PEC", "1", "", "inventory BC is elemental carbon (AE6 PEC)"],
         [MEC, "*", "OC", "POC", "1", "", "inventory OC is organic carbon (AE6 POC)"],
         [MEC, "*", "PMC", "PMC", "1", "", "coarse PM = PM10 - PM2.5 (CMAQ PMC)"],
         [MEC, "*", "NOx", "NO", "0.9", "46.0055", MEIAT.format("*") + " NOx split; moles of "
          "NO2-equivalent mass (US EPA NEI NOx FAQ)"],
         [MEC, "*", "NOx", "NO2", "0.092", "46.0055", MEIAT.format("*") + " NOx split"],
         [MEC, "*", "NOx", "HONO", "0.008", "46.0055", MEIAT.format("*") + " NOx split"],
         [MEC, "*", "SO2", "SO2", "1", "64.0638", "one to one (SULF not split off)"],
         [MEC, "*", "CO", "CO", "1", "28.0101", "one to one"],
         [MEC, "*", "NH3", "NH3", "1", "17.0305", "one to one"]]
# fossil and biogenic CO2 (issue 17): passive tracers, one to one (no CB6 species; a CMAQ DESID
# rule or a WRF-Chem tracer option maps them, models without one ignore the variables)
rows += [[MEC, "*", sp, name, "1", "44.0095", "one to one; passive tracer of " + what]
         for sp, name, what in (("CO2_fossil", "CO2_FOSSIL", "fossil and process CO2"),
                                ("CO2_bio", "CO2_BIO", "biogenic CO2 (memo item)"))]
# CMAQ pass-through species (issue 15): CH4 → ECH4 by every default DESID namelist; CO2 has no
# default rule (a tracer species and rule of the user's, cmaq/README.txt)
cmaq_rows = [[MEC, "*", "CO2", "CO2", "1", "44.0095", "one to one; pass-through (no default "
              "CMAQ DESID rule: add a CO2 tracer species and rule, see cmaq/README.txt)"],
             [MEC, "*", "CH4", "CH4", "1", "16.0425", "one to one; CMAQ default DESID rule CH4 "
              "-> ECH4 (config/cmaq_desid_rules.csv)"]]
tracers = []
for sector, (prof, why) in VOC_BY_SECTOR.items():
    if prof in SOAALK:
        ch4 = sum(float(f) for sp, f, _ in (x.split() for x in VOC[prof].split("|"))
                  if sp == "CH4")
        frac, div = SOAALK[prof]
        tracers.append([MEC, sector, "NMVOC", "SOAALK", f"{frac / (1 - ch4):.6g}", f"{div}",
                        f"{SOAALK_REF}; SPECIATE {prof} {VOC_NAMES[prof]}; CH4 removed, "
                        f"renormalised to NMOG; {why}"])
tracers.append([MEC, "fertiliser", "NH3", "NH3_FERT", "1", "17.0305",
                "fertiliser NH3 as CMAQ's NH3_FERT: subtracted from NH3 when CTM_ABFLUX (bidirec"
                "tional NH3) is on (USEPA/CMAQ 5.4 CCTM/src/emis/emis/desid_util.F:297-307; "
                "5.3.3 EMIS_VARS.F:383-395); NH3 keeps the full mass (tracer)"])
R5 = "cb6r5_ae7"
R5_NOTE = ("; as cb6r5_ae7 (CMAQ 5.4/5.5 cb6r5_ae7_aq): the Speciation Tool's CB6r3_AE7 output "
           "is the cb6r5_ae7_aq emission surrogate set (config/cmaq_desid_rules.csv)")
cmaq = [r for r in rows if r[0] == MEC] + cmaq_rows
rows += cmaq_rows
out_rows = [r + [""] for r in rows] + [t + ["yes"] for t in tracers]
out_rows += [[R5, *r[1:6], r[6] + R5_NOTE, ""] for r in cmaq]
out_rows += [[R5, *t[1:6], t[6] + R5_NOTE, "yes"] for t in tracers]
out_rows += [r + [""] for r in wrfchem_rows(rows)]
out = Path(__file__).resolve().parent.parent / "speciation.csv"
with out.open("w", newline="") as fh:
    w = csv.writer(fh)
    w.writerow(["mechanism", "sector", "pollutant", "model_species", "mass_fraction",
                "molar_mass_g_mol", "reference", "tracer"])
    w.writerows(out_rows)
print(f"{out}: {len(out_rows)} rows")
