"""Same-source consistency checks: emission ratios, part ≤ whole rules and the city CO2 total.

Every species of a source comes from one activity record × the factor library, so within a
sector the ratios between species (NOx/CO2, SO2/CO2, CO/CO2, PM2.5/PM10) are fixed by the factor
and control tables. ``config/checks.yaml`` gives a plausible range per sector and ratio, each with
its basis; a sector outside its range points to a wrong factor, unit or control entry. Each
finding names the (fuel, technology) keys and sources that drive it and the factor-table rows to
look at.

Pure functions, no Prefect: ``load_checks`` → ``run_checks`` → ``findings_frame`` (checks.csv)
and ``raise_on_errors`` (fail the build on error-severity findings).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, ValidationError, field_validator, model_validator

from pipeline.published import PublishedChecks, published_findings
from sources.errors import ConfigError, TongyuanError
from sources.factors import KEY, NO_CONTROL, FactorLibrary
from sources.tables import FrozenModel, format_validation_error, read_yaml

Severity = Literal["warning", "error"]

#: Scale from a kg/kg mass ratio to the unit of a range.
UNIT_SCALE = {"g/kg": 1e3, "1": 1.0}
#: Most source ids listed in one finding.
MAX_SOURCES = 10
#: Most (fuel, technology) keys named as drivers of one ratio finding.
MAX_KEYS = 3

_SPECIES_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

FINDING_COLUMNS = ["check", "severity", "sector", "pair", "value", "unit", "expected", "message",
                   "source_ids", "factor_rows"]


class ChecksFailedError(TongyuanError):
    """One or more same-source checks of severity ``error`` failed.

    Parameters
    ----------
    findings : the error findings (kept as ``.findings``)
    """

    def __init__(self, findings: list[Finding] | tuple[Finding, ...]) -> None:
        self.findings = tuple(findings)
        lines = [f"{len(self.findings)} same-source check(s) failed with severity 'error':"]
        for f in self.findings:
            lines.append(f"  - [{f.check}] {f.sector} {f.pair}: {f.message}")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Finding:
    """One check outside its expected range.

    Attributes
    ----------
    check : ``ratio`` (sector totals), ``ratio_key`` (one sector/fuel/technology key against
        its sector's range), a subset-rule name (``pm25_le_pm10``), the same with ``_source``
        for the per-source variant, or ``city_co2``
    severity : ``warning`` or ``error``
    sector : sector id, or ``all`` for the city total
    pair : species pair as configured, e.g. ``NOx/CO2``, ``BC+OC/PM2_5``; ``CO2`` for the city
    value : the ratio in ``unit`` (``inf`` if the denominator is zero); Mt for the city total
    unit : ``g/kg``, ``1`` or ``Mt``
    expected : the accepted range, as text
    message : what is wrong, what drives it and where to look
    source_ids : the top contributing sources (at most 10), largest first
    factor_rows : factor (and control) table rows to check, e.g.
        ``"config/emission_factors.csv row 13: power,natural_gas,gas_combined_cycle,NOx 153 g/GJ"``
    """

    check: str
    severity: str
    sector: str
    pair: str
    value: float
    unit: str
    expected: str
    message: str
    source_ids: tuple[str, ...] = ()
    factor_rows: tuple[str, ...] = ()


# --------------------------------------------------------------------------- configuration


def parse_pair(pair: str) -> tuple[tuple[str, ...], str]:
    """Split ``"BC+OC/PM2_5"`` into ``(("BC", "OC"), "PM2_5")``.

    Raises
    ------
    ValueError
        if the text is not ``A[+B...]/C`` with species-like names.
    """
    parts = pair.split("/")
    if len(parts) != 2:
        raise ValueError(f"ratio {pair!r} must be 'NUM/DEN' or 'A+B/DEN' (one '/')")
    num = tuple(s.strip() for s in parts[0].split("+"))
    den = parts[1].strip()
    for s in (*num, den):
        if not _SPECIES_RE.match(s):
            raise ValueError(f"ratio {pair!r}: {s!r} is not a species name")
    return num, den


class RatioRange(FrozenModel):
    """Plausible range of one ratio of a sector's totals."""

    range: tuple[float, float]
    unit: Literal["g/kg", "1"]
    basis: str = Field(min_length=1)
    severity: Severity | None = None

    @model_validator(mode="after")
    def _ordered(self) -> RatioRange:
        lo, hi = self.range
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0 or hi <= lo:
            raise ValueError(f"range must be [min, max] with 0 <= min < max; got [{lo}, {hi}]")
        return self


class SectorChecks(FrozenModel):
    """The ratio ranges of one sector (``ratios: {}`` where no ratio is meaningful)."""

    note: str = ""
    ratios: dict[str, RatioRange] = Field(default_factory=dict)

    @field_validator("ratios")
    @classmethod
    def _pairs(cls, v: dict[str, RatioRange]) -> dict[str, RatioRange]:
        for pair in v:
            parse_pair(pair)
        return v


class SubsetRule(FrozenModel):
    """``sum(part) ≤ whole`` on sector totals and (optionally) on every source."""

    part: list[str] = Field(min_length=1)
    whole: str
    sector_severity: Severity
    source_severity: Severity | None = None  # None: no per-source check
    rtol: float = Field(default=1e-9, ge=0, lt=1)
    basis: str = Field(min_length=1)


class CityCO2(FrozenModel):
    """City total of one species (CO2) against a reference inventory."""

    species: str = "CO2"
    reference_mt: float = Field(gt=0)
    year: int
    citation: str = Field(min_length=1)
    tolerance: float = Field(gt=0, lt=1)
    severity: Severity


class ChecksConfig(FrozenModel):
    """The contents of ``checks.yaml`` (``path`` is set by :func:`load_checks`)."""

    version: Literal[1]
    ratio_severity: Severity = "warning"
    escalate_beyond: float | None = Field(default=10.0, gt=1)
    key_level: bool = True
    sectors: dict[str, SectorChecks]
    subset_rules: dict[str, SubsetRule] = Field(default_factory=dict)
    city_co2: CityCO2 | None = None
    #: one warning finding counting the factor rows marked ``verified=no``
    report_unverified_factors: bool = False
    #: published sector CO2, sector shares and totals (pipeline/published.py)
    published: PublishedChecks | None = None
    path: str = "<checks>"


def load_checks(path: str | Path) -> ChecksConfig:
    """Read and validate a checks file.

    Parameters
    ----------
    path : the YAML file (``config/checks.yaml``)

    Returns
    -------
    ChecksConfig

    Raises
    ------
    ConfigError
        naming the file and the dotted key of every invalid entry.
    """
    path = Path(path)
    raw = read_yaml(path, "checks file")
    try:
        return ChecksConfig.model_validate({**raw, "path": str(path)})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, "checks configuration", exc)) from exc


# --------------------------------------------------------------------------- helpers


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.4g}"


def _expected(lo: float, hi: float, unit: str) -> str:
    return f"[{_fmt(lo)}, {_fmt(hi)}]" + ("" if unit == "1" else f" {unit}")


def _table_path(library: FactorLibrary, name: str) -> str:
    return library.paths.get(name, name)


def _factor_species(library: FactorLibrary, species: str) -> str:
    """The factor-table species a species comes from: itself, or for a part that no factor row
    gives (``CO2_fossil``, ``CO2_bio``: split from ``CO2``) the species it is named after."""
    given = set(library.factors["species"])
    if species in given or "_" not in species:
        return species
    base = species.rsplit("_", 1)[0]
    return base if base in given else species


def _factor_rows(library: FactorLibrary, key: tuple[str, str, str], species: list[str]
                 ) -> list[str]:
    """``"<path> row N: sector,fuel,technology,species value unit"`` for the key's species.

    Row N is the 1-based data row of the CSV (header excluded): ``factors`` row i ↔ row i + 1.
    """
    species = list(dict.fromkeys(_factor_species(library, s) for s in species))
    ef = library.factors
    mask = ((ef["sector"] == key[0]) & (ef["fuel"] == key[1]) & (ef["technology"] == key[2])
            & ef["species"].isin(species)).to_numpy()
    path = _table_path(library, "emission_factors")
    order = {s: i for i, s in enumerate(species)}
    rows = sorted(np.flatnonzero(mask), key=lambda i: order[ef["species"].iloc[i]])
    out = []
    for i in rows:
        r = ef.iloc[i]
        out.append(f"{path} row {i + 1}: {r['sector']},{r['fuel']},{r['technology']},"
                   f"{r['species']} {r['value']} {r['unit']}")
    missing = [s for s in species if s not in set(ef["species"].to_numpy()[mask])]
    for s in missing:
        out.append(f"{path}: no row for {key[0]},{key[1]},{key[2]},{s} (species is zero)")
    return out


def _control_rows(library: FactorLibrary, control: str, species: list[str]) -> list[str]:
    if control in ("", NO_CONTROL):
        return []
    ctl = library.controls
    path = _table_path(library, "control_efficiencies")
    out = []
    for device in control.split("+"):
        mask = ((ctl["control"] == device) & ctl["species"].isin(species)).to_numpy()
        for i in np.flatnonzero(mask):
            r = ctl.iloc[i]
            out.append(f"{path} row {i + 1}: {r['control']},{r['species']} "
                       f"efficiency {r['efficiency']}")
    return out


def _join(emissions_table: pd.DataFrame, activity: pd.DataFrame) -> pd.DataFrame:
    """Emissions (index source_id) with sector, fuel, technology and control of each source."""
    cols = [*KEY, "control"]
    act = pd.DataFrame(activity[["source_id", *[c for c in cols if c in activity.columns]]])
    if "control" not in act.columns:
        act["control"] = NO_CONTROL
    act = act.drop_duplicates("source_id").set_index("source_id")
    missing = emissions_table.index.difference(act.index)
    if len(missing):
        raise ValueError(f"run_checks: {len(missing)} sources of the emissions table are not in "
                         f"the activity table, e.g. {list(missing[:5])}")
    frame = emissions_table.join(act[cols], how="left")
    frame["control"] = frame["control"].fillna(NO_CONTROL).replace("", NO_CONTROL)
    return frame


def _check_species(cfg: ChecksConfig, where: str, species: list[str],
                   columns: pd.Index) -> None:
    for s in species:
        if s not in columns:
            raise ConfigError(f"{cfg.path}: {where}: species {s!r} is not a column of the "
                              f"emissions table; columns are {list(columns)}")


def _reported_note(activity: pd.DataFrame, source_ids: list[str], species: list[str]) -> str:
    """Say when some of the sources carry reported_<species>_kg values (not from factors)."""
    notes = []
    act = activity.set_index("source_id") if "source_id" in activity.columns else activity
    for s in species:
        col = f"reported_{s}_kg"
        if col in act.columns:
            vals = pd.to_numeric(act.loc[act.index.intersection(source_ids), col],
                                 errors="coerce")
            n = int(np.isfinite(vals.to_numpy(dtype=float)).sum())
            if n:
                notes.append(f"{n} of them report {col} (replaces the factor)")
    return ("; " + "; ".join(notes)) if notes else ""


# --------------------------------------------------------------------------- ratio checks


def _inside(value: float, lo: float, hi: float, rtol: float = 1e-9) -> bool:
    """``lo ≤ value ≤ hi`` up to a relative rounding tolerance."""
    return lo * (1 - rtol) <= value <= hi * (1 + rtol)


def _ratio(num: float, den: float, scale: float) -> float | None:
    """``scale × num/den``; ``inf`` for a positive numerator over zero; None if both zero."""
    if den > 0:
        return scale * num / den
    if num > 0:
        return math.inf
    return None


@dataclass(frozen=True)
class _RangeCheck:
    """One range test: ``sum(num)/den`` within ``[lo, hi]`` [``unit``], with the finding's
    severity, the factor beyond the range that makes it an error (None: never) and its basis."""

    num: tuple[str, ...]
    den: str
    lo: float
    hi: float
    unit: str
    severity: str
    escalate: float | None
    basis: str


@dataclass(frozen=True)
class _Evidence:
    """What a finding cites beside the emissions: factor-table rows and reported values."""

    library: FactorLibrary
    activity: pd.DataFrame


def _attribute(sub: pd.DataFrame, spec: _RangeCheck, scale: float, unit: str, above: bool,
               library: FactorLibrary
               ) -> tuple[str, list[tuple[str, ...]], tuple[str, ...], tuple[str, ...]]:
    """Which keys and sources drive a sector ratio out of ``[lo, hi]``.

    A key's (or source's) share of the problem is its *excess*: ``scale·num − hi·den`` above the
    range, ``lo·den − scale·num`` below it. The keys with the largest positive excess are named
    (with their own ratio), then the sources of those keys with the largest excess, then the
    factor rows of those keys for the numerator and denominator species.
    """
    num, den, lo, hi = spec.num, spec.den, spec.lo, spec.hi
    snum = sub[list(num)].sum(axis=1) * scale
    sden = sub[den]
    excess_src = (snum - hi * sden) if above else (lo * sden - snum)
    by_key = pd.DataFrame({"num": snum, "den": sden, "excess": excess_src,
                           **{k: sub[k] for k in KEY}}).groupby(KEY, sort=False).sum()
    drivers = by_key[by_key["excess"] > 0].sort_values("excess", ascending=False)
    if drivers.empty:  # cannot happen for a real excess; fall back to the largest numerator
        drivers = by_key.sort_values("num", ascending=not above)
    total = float(drivers["excess"].clip(lower=0).sum())
    keys = []
    covered = 0.0
    for key, row in drivers.iterrows():
        keys.append(key)
        covered += max(float(row["excess"]), 0.0)
        if len(keys) >= MAX_KEYS or (total > 0 and covered >= 0.9 * total):
            break
    texts = []
    for key in keys:
        row = by_key.loc[key]
        r = _ratio(float(row["num"]), float(row["den"]), 1.0)
        share = f", {float(row['excess']) / total:.0%} of the excess" if total > 0 else ""
        texts.append(f"{key[1]}/{key[2]} ({'n/a' if r is None else _fmt(r)}{unit}{share})")
    in_keys = pd.MultiIndex.from_frame(sub[KEY]).isin(keys)
    src = excess_src[in_keys]
    src = src[src > 0].sort_values(ascending=False)
    if src.empty:
        src = snum[in_keys].sort_values(ascending=not above)
    source_ids = tuple(str(s) for s in src.index[:MAX_SOURCES])
    rows: list[str] = []
    for key in keys:
        rows += _factor_rows(library, key, [*num, den])
    return "; ".join(texts), keys, source_ids, tuple(rows)


def _range_finding(check: str, sector: str, pair: str, sub: pd.DataFrame, spec: _RangeCheck,
                   evidence: _Evidence, label: str | None = None
                   ) -> tuple[Finding | None, list[tuple[str, ...]]]:
    """A finding if ``sum(num)/den`` of ``sub`` is outside ``[lo, hi]``, and its driver keys."""
    num, den, lo, hi, unit = spec.num, spec.den, spec.lo, spec.hi, spec.unit
    severity, escalate, basis = spec.severity, spec.escalate, spec.basis
    activity = evidence.activity
    scale = UNIT_SCALE[unit]
    value = _ratio(float(sub[list(num)].to_numpy().sum()), float(sub[den].sum()), scale)
    if value is None or _inside(value, lo, hi):
        return None, []
    above = value > hi
    if escalate is not None and (value > hi * escalate or value < lo / escalate):
        severity = "error"
    u = "" if unit == "1" else f" {unit}"
    drivers, keys, source_ids, rows = _attribute(sub, spec, scale, u, above, evidence.library)
    where = "above" if above else "below"
    factor = (value / hi if above else (lo / value if value > 0 else math.inf))
    msg = (f"{label or sector}: {pair} = {_fmt(value)}{u} is {where} the plausible range "
           f"{_expected(lo, hi, unit)} (×{_fmt(factor)} beyond); driven by fuel/technology "
           f"{drivers}; top sources {', '.join(source_ids[:3]) or '-'}"
           f"{_reported_note(activity, list(source_ids), [*num, den])}; check the factor rows "
           f"(a g↔kg unit slip is ×1000). Basis: {basis}")
    return Finding(check=check, severity=severity, sector=sector, pair=pair, value=float(value),
                   unit=unit, expected=_expected(lo, hi, unit), message=msg,
                   source_ids=source_ids, factor_rows=rows), keys


def _source_subset_findings(name: str, rule: SubsetRule, frame: pd.DataFrame,
                            library: FactorLibrary) -> list[Finding]:
    """Per-source ``sum(part) ≤ whole`` after control, one finding per key and control."""
    part = frame[rule.part].sum(axis=1)
    whole = frame[rule.whole]
    bad = (part > whole * (1.0 + rule.rtol)) & (part > 0)
    if not bad.any():
        return []
    pair = f"{'+'.join(rule.part)}/{rule.whole}"
    ratio = pd.Series(np.where(whole > 0, part / whole.where(whole > 0, 1.0), np.inf),
                      index=frame.index)
    findings = []
    sel = frame[bad.to_numpy()]
    for (sector, fuel, tech, control), grp in sel.groupby([*KEY, "control"], sort=True):
        excess = (part[grp.index] - whole[grp.index]).sort_values(ascending=False)
        ids = tuple(str(s) for s in excess.index[:MAX_SOURCES])
        value = float(ratio[grp.index].max())
        species = [*rule.part, rule.whole]
        remaining = library.remaining_fraction(control, species)
        keeps = ", ".join(f"{s} {remaining[s]:.3g}" for s in species)
        cause = f"control keeps {keeps} of the uncontrolled factor"
        if len(rule.part) == 1 and remaining[rule.whole] > 0:
            mult = remaining[rule.part[0]] / remaining[rule.whole]
            cause += f", which multiplies the uncontrolled {pair} by {_fmt(mult)}"
        msg = (f"{len(grp)} source(s) of {sector}/{fuel}/{tech} with control '{control}' have "
               f"{' + '.join(rule.part)} > {rule.whole} after control (max {pair} = "
               f"{_fmt(value)}): {cause}; sources {', '.join(ids[:5])}. Basis: {rule.basis}")
        rows = (_factor_rows(library, (sector, fuel, tech), species)
                + _control_rows(library, control, species))
        findings.append(Finding(check=f"{name}_source", severity=str(rule.source_severity),
                                sector=str(sector), pair=pair, value=value, unit="1",
                                expected="<= 1", message=msg, source_ids=ids,
                                factor_rows=tuple(rows)))
    return findings


def _city_finding(cfg: ChecksConfig, frame: pd.DataFrame) -> Finding | None:
    c = cfg.city_co2
    assert c is not None
    kg = frame[c.species]
    value = float(kg.sum()) / 1e9
    ref = c.reference_mt
    lo, hi = ref * (1 - c.tolerance), ref * (1 + c.tolerance)
    if lo <= value <= hi:
        return None
    by_sector = kg.groupby(frame["sector"]).sum().sort_values(ascending=False) / 1e9
    parts = ", ".join(f"{s} {v:.4g}" for s, v in by_sector.head(5).items())
    ids = tuple(str(s) for s in kg.sort_values(ascending=False).index[:MAX_SOURCES])
    msg = (f"city {c.species} = {value:.4g} Mt is {value / ref - 1:+.1%} from the reference "
           f"{ref:g} Mt ({c.year}; tolerance ±{c.tolerance:.0%}); largest sectors (Mt): {parts}. "
           f"Check activity totals and CO2 factors, and whether all sectors are enabled. "
           f"Reference: {c.citation}")
    return Finding(check="city_co2", severity=c.severity, sector="all", pair=c.species,
                   value=value, unit="Mt", expected=f"{ref:g} Mt ± {c.tolerance:.0%} "
                   f"([{lo:.4g}, {hi:.4g}] Mt)", message=msg, source_ids=ids)


def _unverified_finding(library: FactorLibrary) -> Finding | None:
    """``verified=no`` rows of the factor table, counted (the rows themselves in factor_rows)."""
    rows = library.unverified
    if rows.empty:
        return None
    path = _table_path(library, "emission_factors")
    listed = tuple(f"{path} row {int(i) + 1}: {r['sector']},{r['fuel']},{r['technology']},"
                   f"{r['species']} {r['value']} {r['unit']}" for i, r in rows.iterrows())
    n, total = len(rows), len(library.factors)
    msg = (f"{n} of {total} emission-factor rows are verified=no: their value was not checked "
           "against the primary table they cite (see the reference column)")
    return Finding(check="unverified_factors", severity="warning", sector="all",
                   pair="verified=no", value=float(n), unit="rows", expected="0 rows",
                   message=msg, factor_rows=listed)


# --------------------------------------------------------------------------- public API


def _ratio_specs(frame: pd.DataFrame, checks_cfg: ChecksConfig, emissions_table: pd.DataFrame):
    """Yield (sector, its sources, pair, range, numerator species, denominator) per ratio check,
    after checking the species exist."""
    for sector, sc in checks_cfg.sectors.items():
        sub = frame[(frame["sector"] == sector).to_numpy()]
        for pair, rr in sc.ratios.items():
            num, den = parse_pair(pair)
            _check_species(checks_cfg, f"sectors.{sector}.ratios.{pair}", [*num, den],
                           emissions_table.columns)
            yield sector, sub, pair, rr, num, den


def run_checks(emissions_table: pd.DataFrame, activity: pd.DataFrame, library: FactorLibrary,
               checks_cfg: ChecksConfig, *, city_total: bool = True) -> list[Finding]:
    """Run every configured check on one build's emissions.

    Parameters
    ----------
    emissions_table : ``EmissionsResult.table``: index ``source_id``, one column per species,
        kg/yr
    activity : the activity table (``source_id, sector, fuel, technology, control, ...``; may
        be a GeoDataFrame), the same sources as ``emissions_table``
    library : the factor library the emissions came from (for factor-row numbers)
    checks_cfg : from :func:`load_checks`
    city_total : set False when the build covers only some sectors (the city CO2 reference
        then does not apply)

    Returns
    -------
    list of Finding, one per failed check: per sector (config order) and ratio the sector-total
    finding, then key-level findings (``ratio_key``: a (fuel, technology) key whose own ratio is
    outside the sector's range and which is not already named as a driver of the sector
    finding); then subset rules (sector totals, then sources); then the count of unverified
    factor rows (if ``report_unverified_factors``); then the city total. Empty when everything
    passes.

    Raises
    ------
    ConfigError
        if the checks name a species that is not a column of ``emissions_table``.
    """
    frame = _join(emissions_table, activity)
    evidence = _Evidence(library, activity)
    findings: list[Finding] = []
    for sector, sub, pair, rr, num, den in _ratio_specs(frame, checks_cfg, emissions_table):
        if sub.empty:
            continue
        spec = _RangeCheck(num, den, rr.range[0], rr.range[1], rr.unit,
                         rr.severity or checks_cfg.ratio_severity, checks_cfg.escalate_beyond,
                         rr.basis)
        f, named = _range_finding("ratio", sector, pair, sub, spec, evidence)
        if f is not None:
            findings.append(f)
        if not checks_cfg.key_level:
            continue
        # a key whose denominator factor is zero by definition (a battery-electric car) has no
        # ratio to test; a unit slip never gives an exact zero. A denominator no factor row
        # gives (CO2_fossil of a biomass key, split from CO2) is zero by definition when it is
        # exactly zero.
        ef = library.factors
        zero_den = set(map(tuple, ef.loc[(ef["species"] == den).to_numpy()
                                         & (ef["value_num"] == 0).to_numpy(), KEY].to_numpy()))
        derived_den = _factor_species(library, den) != den
        for key, ksub in sub.groupby(KEY, sort=True):
            if key in named or key in zero_den:  # already the driver of the sector finding
                continue
            if derived_den and float(ksub[den].sum()) == 0.0:
                continue
            kf, _ = _range_finding("ratio_key", sector, pair, ksub, spec, evidence,
                                   label=f"{key[0]}/{key[1]}/{key[2]}")
            if kf is not None:
                findings.append(kf)
    for name, rule in checks_cfg.subset_rules.items():
        _check_species(checks_cfg, f"subset_rules.{name}", [*rule.part, rule.whole],
                       emissions_table.columns)
        pair = f"{'+'.join(rule.part)}/{rule.whole}"
        for sector in pd.unique(frame["sector"]):
            sub = frame[(frame["sector"] == sector).to_numpy()]
            spec = _RangeCheck(tuple(rule.part), rule.whole, 0.0, 1.0 + rule.rtol, "1",
                             rule.sector_severity, None, rule.basis)
            f, _ = _range_finding(name, str(sector), pair, sub, spec, evidence)
            if f is not None:
                findings.append(f)
        if rule.source_severity is not None:
            findings += _source_subset_findings(name, rule, frame, library)
    if city_total and checks_cfg.published is not None:
        findings += published_findings(frame, checks_cfg.published, Finding)
    if checks_cfg.report_unverified_factors:
        f = _unverified_finding(library)
        if f is not None:
            findings.append(f)
    if city_total and checks_cfg.city_co2 is not None:
        _check_species(checks_cfg, "city_co2.species", [checks_cfg.city_co2.species],
                       emissions_table.columns)
        f = _city_finding(checks_cfg, frame)
        if f is not None:
            findings.append(f)
    return findings


def findings_frame(findings: list[Finding]) -> pd.DataFrame:
    """One row per finding, for ``checks.csv``.

    ``source_ids`` and ``factor_rows`` are joined with ``"; "`` and ``" | "``.
    """
    rows = [{"check": f.check, "severity": f.severity, "sector": f.sector, "pair": f.pair,
             "value": f.value, "unit": f.unit, "expected": f.expected, "message": f.message,
             "source_ids": "; ".join(f.source_ids), "factor_rows": " | ".join(f.factor_rows)}
            for f in findings]
    return pd.DataFrame(rows, columns=FINDING_COLUMNS)


def raise_on_errors(findings: list[Finding]) -> None:
    """Raise :class:`ChecksFailedError` listing the findings of severity ``error``, if any."""
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise ChecksFailedError(errors)
