"""Uncertainty of the same-source emissions: parameters, Approach 1 and Monte Carlo members.

Every emission of a source is a product of uncertain *parameters* (IPCC 2006 Vol. 1 Ch. 3):

``E[s, sp] = A_s × EF_row(s, sp) × U × Π_d (1 − η_d)``

- one **activity** parameter per activity record, shared by every species of the record (the
  same-source dependence: NOx and CO2 of a stack move together with its fuel);
- one **factor** parameter per row of ``emission_factors.csv``, shared by every source using
  the row; the CO2 rows of one fuel share one standard normal (the fuel's **carbon content**);
- one **control** parameter per row of ``control_efficiencies.csv``, on the penetration 1 − η
  (what passes the device), shared by every source with the device;
- one **measured** parameter per source with a ``reported_<species>_kg`` value (its measured
  flue-gas flow: shared by the species it reports).

A parameter's uncertainty is its 95 % relative half-width ``U`` and a distribution: ``normal``
(multiplier ``1 + (U/1.96)·z``, cut at 0) or ``lognormal`` with mean 1 and the same relative
standard deviation ``U/1.96`` (``σ² = ln(1 + (U/1.96)²)``, multiplier ``exp(σz − σ²/2)``), so that
both have the variance Approach 1 propagates. PM10 is its fine part (the PM2.5 row and PM2.5
devices) plus its coarse part (the PM10 row and PM10 devices), as in
:func:`sources.emissions.compute_emissions`.

:func:`build_model` turns an activity table and its central emissions into *terms* (per
species: source, coefficient, parameters multiplied); :func:`propagate` is Approach 1 (linear
propagation, IPCC Eq. 3.1 for sums and Eq. 3.2 for products, with parameters shared by several
terms added before squaring, i.e. fully correlated); :func:`member_emissions` evaluates the
terms for Monte Carlo multipliers (Approach 2).

References
----------
IPCC (2006) 2006 IPCC Guidelines for National Greenhouse Gas Inventories, Vol. 1 Ch. 3,
Uncertainties, Eqs. 3.1, 3.2 and §3.2.3.2 (Monte Carlo).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sources.errors import ConfigError
from sources.factors import KEY, NO_CONTROL, FactorLibrary
from sources.species import SpeciesRegistry
from sources.tables import read_table, uncertainty_columns

#: the 97.5 % quantile of the standard normal: a 95 % half-width is 1.96 standard deviations
Z95 = 1.959963984540054
#: data types whose activity uncertainty the activity table must give
ACTIVITY_COLUMNS = ["data_type", "uncertainty_pct", "distribution", "reference"]


def multipliers(z: np.ndarray, u: np.ndarray, lognormal: np.ndarray,
                cap: np.ndarray | None = None) -> np.ndarray:
    """Multipliers (mean 1, relative standard deviation ``u / 1.96``) of standard normals ``z``
    (parameters × members, in ``z``'s float type); ``u``, ``lognormal`` and ``cap`` (largest
    multiplier, e.g. a penetration that cannot exceed 1) are per parameter (rows of ``z``)."""
    s = u / Z95
    sig = np.sqrt(np.log1p(s * s))
    a = np.where(lognormal, sig, s).astype(z.dtype)
    b = np.where(lognormal, -0.5 * sig * sig, 1.0).astype(z.dtype)
    out = z * a[:, None]
    out += b[:, None]
    logn = np.flatnonzero(lognormal)
    if logn.size == len(u):
        np.exp(out, out=out)
    elif logn.size:
        out[logn] = np.exp(out[logn])
    np.maximum(out, 0.0, out=out)  # a normal multiplier is cut at 0 (exp is positive anyway)
    if cap is not None:
        capped = np.flatnonzero(np.isfinite(cap))
        if capped.size:
            out[capped] = np.minimum(out[capped], cap[capped, None].astype(z.dtype))
    return out


def load_activity_types(path: str | Path) -> pd.DataFrame:
    """``data_type → u_rel [1], lognormal`` from an activity-uncertainty table
    (``data_type, uncertainty_pct, distribution, reference``; one row per data type)."""
    df = read_table(path, ACTIVITY_COLUMNS, "activity-uncertainty", unique=["data_type"])
    df["u_rel"], df["lognormal"] = uncertainty_columns(df, path)
    return df.set_index("data_type")


def activity_uncertainty(activity: pd.DataFrame, rules: list[tuple[str, str | None, str]],
                         types: pd.DataFrame, input_names: dict[str, str], default: str,
                         where: str = "config") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per source: 95 % relative half-width [1], lognormal flag and data type of its activity.

    ``rules`` are ``(input name, sector or None, data type)``; a rule with a sector beats one
    without for the sources of that sector; sources no rule matches take ``default``.
    """
    for _, _, dt in [*rules, ("", None, default)]:
        if dt not in types.index:
            raise ConfigError(f"{where}: activity data type {dt!r} is not in the "
                              f"activity-uncertainty table; known: {sorted(types.index)}")
    files = activity["input_file"].astype(str).to_numpy()
    uniq, inv = np.unique(files, return_inverse=True)
    names = np.array([input_names.get(f, "") for f in uniq], dtype=object)[inv]
    sectors = activity["sector"].to_numpy()
    dtype = np.full(len(activity), default, dtype=object)
    for specific in (False, True):
        for name, sector, dt in rules:
            if (sector is not None) != specific:
                continue
            mask = names == name
            if sector is not None:
                mask &= sectors == sector
            dtype[mask] = dt
    u = types["u_rel"].reindex(dtype).to_numpy(dtype=float)
    logn = types["lognormal"].reindex(dtype).to_numpy(dtype=bool)
    return u, logn, dtype.astype(str)


@dataclass(frozen=True)
class Terms:
    """One species' emissions as a sum of products: ``E[source] = Σ coef × Π mult[params]``."""

    source: np.ndarray  # int, per term
    coef: np.ndarray  # kg/yr at the central values, per term
    params: np.ndarray  # int (terms × k), -1 = none

    def to_sources(self, n_sources: int) -> sp.csr_matrix:
        """Sparse (sources × terms) summation matrix."""
        n = len(self.source)
        return sp.csr_matrix((np.ones(n), (self.source, np.arange(n))), shape=(n_sources, n))

    @functools.cached_property
    def unique_sources(self) -> bool:
        """Whether no source has more than one term."""
        return bool(self.source.size == 0 or np.bincount(self.source).max() <= 1)


@dataclass(frozen=True)
class UncertaintyModel:
    """Parameters and terms of an activity table's emissions.

    Attributes
    ----------
    species : the species with terms (emitted species, their CO2 split parts and CO2e)
    u, lognormal, cap : per parameter: 95 % relative half-width [1], distribution, largest
        multiplier
    z : per parameter, the index of its standard normal (parameters sharing one are fully
        correlated: the CO2 rows of one fuel)
    kind : per parameter: ``activity``, ``measured``, ``factor`` or ``control``
    n_z : number of standard normals one member draws
    n_sources : sources; the first normals are their activities (by activity key)
    terms : per species
    """

    species: list[str]
    u: np.ndarray
    lognormal: np.ndarray
    cap: np.ndarray
    z: np.ndarray
    kind: np.ndarray
    n_z: int
    n_sources: int
    terms: dict[str, Terms]

    def multipliers(self, z: np.ndarray) -> np.ndarray:
        """Multipliers of every parameter (parameters × members) from normals (n_z × members)."""
        return multipliers(z[self.z], self.u, self.lognormal, self.cap)

    def sigma_by_z(self) -> sp.csr_matrix:
        """(n_z × parameters) matrix of relative standard deviations: a normal's effect."""
        n = len(self.u)
        return sp.csr_matrix((self.u / Z95, (self.z, np.arange(n))), shape=(self.n_z, n))


def _control_params(library: FactorLibrary, controls: np.ndarray, species: str,
                    ctl_index: dict[tuple[str, str], int], k: int) -> np.ndarray:
    """(sources × k) control parameter indices (-1: none) of each source's devices for
    ``species``."""
    out = np.full((len(controls), k), -1, dtype=np.int64)
    codes, uniques = pd.factorize(pd.Series(controls))
    for c, control in enumerate(uniques):
        if control in ("", NO_CONTROL):
            continue
        ids = [ctl_index[(d, species)] for d in str(control).split("+")
               if (d, species) in ctl_index]
        if ids:
            out[codes == c, :len(ids)] = ids
    return out


def build_model(activity: pd.DataFrame, emissions: pd.DataFrame, provenance: pd.DataFrame,
                library: FactorLibrary, registry: SpeciesRegistry, activity_u: np.ndarray,
                activity_lognormal: np.ndarray, *, measured_u: float = 0.0,
                measured_lognormal: bool = False, scale: pd.DataFrame | None = None,
                activity_key: np.ndarray | None = None, n_activity_z: int | None = None,
                rtol: float = 1e-9) -> UncertaintyModel:
    """The parameters and terms of ``emissions`` (the central table of ``activity``, as
    :func:`sources.emissions.compute_emissions` computed it with ``scale``).

    ``activity_key`` (per source, default its position) numbers the activity normals: sources
    with one key share their activity draw, and two models of one library with the same
    ``n_activity_z`` (default: largest key + 1) draw the same normals for the same key, factor
    row and device (common random numbers for a scenario and its base).

    Sources with no factor row (regional pseudo-sources) keep their central emissions as a
    term without parameters. The terms at central values must give ``emissions`` back (to
    ``rtol``); anything else is an error, not a silent difference.
    """
    act = activity.reset_index(drop=True)
    n = len(act)
    pos = pd.Series(np.arange(n), index=pd.Index(act["source_id"].astype(str)))
    ef = library.factors.reset_index(drop=True)
    ctl = library.controls.reset_index(drop=True)
    has_ef_u = "u_rel" in ef.columns
    has_ctl_u = "u_rel" in ctl.columns

    # parameters: activity (n) | measured (sources with reported values) | factors | controls
    reported_cols = [c for c in act.columns if c.startswith("reported_") and c.endswith("_kg")]
    reported = {c[len("reported_"):-len("_kg")]: act[c].to_numpy(dtype=float)
                for c in reported_cols}
    has_reported = np.zeros(n, dtype=bool)
    for v in reported.values():
        has_reported |= np.isfinite(v)
    measured_src = np.flatnonzero(has_reported)
    measured_param = np.full(n, -1, dtype=np.int64)
    measured_param[measured_src] = n + np.arange(measured_src.size)
    f0 = n + measured_src.size
    c0 = f0 + len(ef)
    n_par = c0 + len(ctl)
    u = np.zeros(n_par)
    logn = np.zeros(n_par, dtype=bool)
    cap = np.full(n_par, np.inf)
    kind = np.empty(n_par, dtype=object)
    u[:n], logn[:n], kind[:n] = activity_u, activity_lognormal, "activity"
    u[n:f0], logn[n:f0], kind[n:f0] = measured_u, measured_lognormal, "measured"
    if has_ef_u:
        u[f0:c0], logn[f0:c0] = ef["u_rel"].to_numpy(float), ef["lognormal"].to_numpy(bool)
    kind[f0:c0] = "factor"
    if has_ctl_u:
        u[c0:], logn[c0:] = ctl["u_rel"].to_numpy(float), ctl["lognormal"].to_numpy(bool)
    kind[c0:] = "control"
    with np.errstate(divide="ignore"):
        cap[c0:] = 1.0 / np.maximum(1.0 - ctl["efficiency_value"].to_numpy(float), 0.0)
    # normals: [activity keys | factor rows | control rows | measured, by activity key]; the
    # CO2 rows of one real fuel share one normal (its carbon content); sources with the same
    # activity key (a scenario's source derived from a base record) share their draws. The
    # measured block comes last: a model without measured values draws a prefix of the same
    # stream, and two models with the same n_activity_z share every normal they both use.
    key = np.arange(n) if activity_key is None else np.asarray(activity_key, dtype=np.int64)
    n_act = int(key.max()) + 1 if n_activity_z is None and n else int(n_activity_z or 0)
    if n and (key.min() < 0 or key.max() >= n_act):
        raise ValueError(f"activity keys must lie in [0, {n_act})")
    zf = n_act
    zm = n_act + len(ef) + len(ctl)
    zi = np.empty(n_par, dtype=np.int64)
    zi[:n] = key
    zi[n:f0] = zm + key[measured_src]
    zi[f0:c0] = zf + np.arange(len(ef))
    total_co2 = registry.co2_split[0] if registry.co2_split else "CO2"
    co2_rows = np.flatnonzero((ef["species"] == total_co2).to_numpy()
                              & ~ef["fuel"].isin(["", "none"]).to_numpy())
    for _, rows in pd.Series(co2_rows).groupby(ef["fuel"].to_numpy()[co2_rows]):
        zi[f0 + rows.to_numpy()] = zf + int(rows.iloc[0])
    zi[c0:] = zf + len(ef) + np.arange(len(ctl))
    n_z = int(zi.max()) + 1 if n_par else 0
    n_z = max(n_z, zm)

    ctl_index = {(d, s): c0 + i for i, (d, s) in enumerate(zip(ctl["control"], ctl["species"],
                                                            strict=True))}
    k_ctl = max([len(str(c).split("+")) for c in act["control"].unique()] + [1])
    row_of = pd.Series(np.arange(len(ef)), index=pd.MultiIndex.from_frame(ef[KEY + ["species"]]))

    prov = provenance.copy()
    prov["_pos"] = pos.reindex(prov["source_id"].astype(str)).to_numpy()
    prov = prov[np.isfinite(prov["_pos"].to_numpy(dtype=float))]
    prov["_pos"] = prov["_pos"].astype(np.int64)
    keys = act[KEY].iloc[prov["_pos"].to_numpy()].reset_index(drop=True)
    keys["species"] = prov["species"].to_numpy()
    prov["_row"] = row_of.reindex(pd.MultiIndex.from_frame(keys)).to_numpy()
    unc = (prov["activity"] * prov["factor_value"] * prov["kg_per_unit"]).to_numpy(float)
    prov["_unc"] = unc
    prov = pd.DataFrame({c: prov[c].to_numpy() for c in ("_pos", "_row", "_unc", "kg",
                                                         "control_remaining_fraction")},
                        index=pd.RangeIndex(len(prov))).assign(
        species=prov["species"].astype(str).to_numpy(dtype=object))
    by_species = {k: v for k, v in prov.groupby("species", sort=False)}
    empty = prov.iloc[:0]

    species = list(registry.emitted)
    controls = act["control"].astype(str).to_numpy()
    scale_of = {}
    if scale is not None:
        sc = scale.reindex(act["source_id"])
        scale_of = {s_: np.where(np.isfinite(c.to_numpy(float)), c.to_numpy(float), 1.0)
                    for s_, c in sc.items()}
    parts = set(registry.split_parts)
    terms: dict[str, Terms] = {}
    for s_ in species:
        if s_ in parts:
            continue
        rows = by_species.get(s_, empty)
        src = rows["_pos"].to_numpy()
        ctlp = _control_params(library, controls, s_, ctl_index, k_ctl)
        src_l, coef_l, par_l = [], [], []

        def add(src_: np.ndarray, coef_: np.ndarray, fac_: np.ndarray, ctl_: np.ndarray) -> None:
            src_l.append(src_)
            coef_l.append(coef_)
            par_l.append(np.column_stack([src_, fac_, ctl_]))

        if s_ == "PM10" and "PM2_5" in species:
            fine = by_species.get("PM2_5", empty).set_index("_pos")
            both = np.isin(src, fine.index.to_numpy()) & (rows["_unc"].to_numpy() > 0)
            both &= np.isin(src, fine.index[fine["_unc"].to_numpy() > 0])
            b = src[both]
            unc10 = rows["_unc"].to_numpy()[both]
            unc25 = fine.loc[b, "_unc"].to_numpy()
            rem25 = fine.loc[b, "control_remaining_fraction"].to_numpy()
            rem10 = rows["control_remaining_fraction"].to_numpy()[both]
            ctl25 = _control_params(library, controls, "PM2_5", ctl_index, k_ctl)
            add(b, unc25 * rem25, f0 + fine.loc[b, "_row"].to_numpy(np.int64), ctl25[b])
            add(b, np.clip(unc10 - unc25, 0.0, None) * rem10,
                f0 + rows["_row"].to_numpy()[both].astype(np.int64), ctlp[b])
            one = ~both
            add(src[one], rows["kg"].to_numpy()[one],
                f0 + rows["_row"].to_numpy()[one].astype(np.int64), ctlp[src[one]])
        else:
            add(src, rows["kg"].to_numpy(float), f0 + rows["_row"].to_numpy().astype(np.int64),
                ctlp[src])
        source = np.concatenate(src_l)
        coef = np.concatenate(coef_l)
        params = np.vstack(par_l)
        if s_ in reported:
            given = reported[s_]
            mask = np.isfinite(given)
            keep = ~mask[source]
            source, coef, params = source[keep], coef[keep], params[keep]
            r = np.flatnonzero(mask)
            extra = np.full((r.size, params.shape[1]), -1, dtype=np.int64)
            extra[:, 0] = measured_param[r]
            source = np.concatenate([source, r])
            coef = np.concatenate([coef, given[r]])
            params = np.vstack([params, extra])
        if s_ in scale_of:
            coef = coef * scale_of[s_][source]
        terms[s_] = Terms(source=source, coef=coef, params=params)

    if registry.co2_split is not None:
        total, fossil, bio = registry.co2_split
        share = library.biogenic_fraction(act["fuel"])
        t = terms[total]
        terms[fossil] = Terms(t.source, t.coef * (1.0 - share[t.source]), t.params)
        terms[bio] = Terms(t.source, t.coef * share[t.source], t.params)
    if "CO2e" in emissions.columns:
        comps = [c for c in registry.co2e_components if c in terms]
        width = max(terms[c].params.shape[1] for c in comps)

        def padded(p: np.ndarray) -> np.ndarray:
            return np.hstack([p, np.full((len(p), width - p.shape[1]), -1, dtype=np.int64)])

        terms["CO2e"] = Terms(
            source=np.concatenate([terms[c].source for c in comps]),
            coef=np.concatenate([terms[c].coef * registry.gwp(c) for c in comps]),
            params=np.vstack([padded(terms[c].params) for c in comps]))
    # sources without factor rows or reported values (regional pseudo-sources): constant terms
    known = np.zeros(n, dtype=bool)
    known[prov["_pos"].to_numpy()] = True
    known |= has_reported
    fixed = np.flatnonzero(~known)
    if fixed.size:
        for s_, t in list(terms.items()):
            if s_ not in emissions.columns:
                continue
            pad = np.full((fixed.size, t.params.shape[1]), -1, dtype=np.int64)
            terms[s_] = Terms(source=np.concatenate([t.source, fixed]),
                              coef=np.concatenate([t.coef, emissions[s_].to_numpy(float)[fixed]]),
                              params=np.vstack([t.params, pad]))
    model = UncertaintyModel(species=[s_ for s_ in emissions.columns if s_ in terms], u=u,
                             lognormal=logn, cap=cap, z=zi, kind=kind, n_z=n_z, n_sources=n,
                             terms=terms)
    _check_central(model, emissions, rtol)
    return model


def _check_central(model: UncertaintyModel, emissions: pd.DataFrame, rtol: float) -> None:
    ones = np.ones((len(model.u), 1))
    for s_ in model.species:
        got = member_emissions(model, s_, ones)[:, 0]
        want = emissions[s_].to_numpy(dtype=float)
        scale = max(float(np.abs(want).sum()), 1e-300)
        if np.abs(got - want).sum() > rtol * scale:
            i = int(np.argmax(np.abs(got - want)))
            raise ValueError(f"uncertainty terms of {s_} do not give the central emissions back "
                             f"(source {i}: {got[i]!r} kg vs {want[i]!r} kg)")


#: terms per evaluation block: a block × a member chunk of float32 stays in the core's cache
BLOCK_ROWS = 2048


@dataclass(frozen=True)
class Layout:
    """One species' terms ordered for evaluation in blocks (:func:`term_layout`).

    A term's parameter columns are either *gathered* (per term: the activity or measured flow
    of its source, and in an :func:`independent_model` every column) or *shared* (few distinct
    values: a factor row, a device). Terms are sorted by the group of their source, which
    gathered columns they have and their shared parameters, so within a block the product of
    the shared multipliers is one number per member and only the gathered columns are taken
    term by term.

    Attributes
    ----------
    order : term positions (into :class:`Terms`) in evaluation order
    gathered : per ordered term, the parameters of its gathered columns (-1: none)
    coef : per ordered term, its central value [kg/yr]
    blocks : (start, stop, group, shared parameters, gathered columns present) of runs of
        ordered terms at most :data:`BLOCK_ROWS` long
    """

    order: np.ndarray
    gathered: np.ndarray
    coef: np.ndarray
    blocks: tuple[tuple[int, int, int, np.ndarray, np.ndarray], ...]


def _unique_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(a, axis=0, return_inverse=True)`` of an int (n × k) array, the same rows in
    the same (lexicographic) order, by one ``np.lexsort`` (numpy's sorts the rows as opaque
    bytes, ~40× slower on 50 000 rows)."""
    n = a.shape[0]
    order = np.lexsort(a.T[::-1]) if n else np.zeros(0, dtype=np.intp)
    s = a[order]
    new = np.r_[True, (s[1:] != s[:-1]).any(axis=1)] if n else np.zeros(0, dtype=bool)
    inverse = np.empty(n, dtype=np.intp)
    inverse[order] = np.cumsum(new) - 1
    return s[new], inverse


def term_layout(terms: Terms, group: np.ndarray | None = None, rows: int = BLOCK_ROWS,
                max_shared: int = 4096) -> Layout:
    """The :class:`Layout` of ``terms``; ``group`` (per source, int ≥ 0, e.g. a sector code)
    keeps blocks within one group, for per-group totals. Column 0 (activity, measured flow)
    is gathered, and so is any other column with more than ``max_shared`` distinct
    parameters."""
    p = terms.params
    n = len(terms.source)
    g = np.zeros(n, dtype=np.int64) if group is None else \
        np.asarray(group, dtype=np.int64)[terms.source]
    gcols = [j for j in range(p.shape[1])
             if j == 0 or np.unique(p[:, j]).size > max_shared]
    scols = [j for j in range(p.shape[1]) if j not in gcols]
    gath = p[:, gcols] if gcols else np.full((n, 1), -1, dtype=np.int64)
    present = (gath >= 0) @ (1 << np.arange(gath.shape[1], dtype=np.int64))
    rest = np.sort(p[:, scols], axis=1) if scols else np.full((n, 1), -1, dtype=np.int64)
    combos, combo = _unique_rows(rest)
    order = np.lexsort((combo, present, g))  # stable: terms keep their order within a run
    key = np.column_stack([g[order], present[order], combo[order]])
    starts = np.flatnonzero(np.r_[True, (key[1:] != key[:-1]).any(axis=1)]) if n else \
        np.zeros(0, dtype=np.int64)
    stops = np.r_[starts[1:], n] if n else np.zeros(0, dtype=np.int64)
    blocks = []
    for a, b in zip(starts, stops, strict=True):
        shared = combos[combo[order[a]]]
        cols = np.flatnonzero(gath[order[a]] >= 0)
        for lo in range(int(a), int(b), rows):
            blocks.append((lo, min(lo + rows, int(b)), int(key[a, 0]), shared[shared >= 0],
                           cols))
    return Layout(order=order, gathered=np.ascontiguousarray(gath[order].T),
                  coef=terms.coef[order], blocks=tuple(blocks))


def evaluate_terms(layout: Layout, mult: np.ndarray, out: np.ndarray,
                   totals: np.ndarray | None = None) -> np.ndarray:
    """Member values of the ordered terms, ``out[t, m] = coef[t] × Π mult[params of t, m]``
    (terms × members, in ``out``'s float type), block by block: ``np.take`` of the gathered
    parameters' rows, one product of the block's shared rows, one scaling by ``coef``, on a
    block that stays in cache. ``totals`` (groups × members, float64) gets each group's sum
    added, in float64 whatever ``out`` is. ``mult``: multipliers (parameters × members,
    C-contiguous)."""
    dt = out.dtype
    coef = layout.coef.astype(dt)
    scratch = None
    for lo, hi, grp, shared, cols in layout.blocks:
        v = out[lo:hi]
        if cols.size:
            np.take(mult, layout.gathered[cols[0], lo:hi], axis=0, out=v, mode="clip")
            for c in cols[1:]:
                if scratch is None:
                    scratch = np.empty((BLOCK_ROWS, out.shape[1]), dtype=dt)
                w = scratch[:hi - lo]
                np.take(mult, layout.gathered[c, lo:hi], axis=0, out=w, mode="clip")
                v *= w
        else:
            v.fill(1)
        if shared.size:
            fac = mult[shared[0]].astype(dt)
            for q in shared[1:]:
                fac *= mult[q]
            v *= fac
        v *= coef[lo:hi, None]
        if totals is not None:
            totals[grp] += v.sum(axis=0, dtype=np.float64)
    return out


def independent_model(model: UncertaintyModel) -> UncertaintyModel:
    """The same model with no correlation between sources: every (source, factor row) and
    (source, device) gets a parameter and a standard normal of its own (the activity of a
    source stays one draw for all its species: it is one record). The species that share a
    pair share its draw (CO2 with its fossil and biogenic parts, CO2e with its components),
    so they stay consistent. The normals of the pairs follow the model's, so both models draw
    the same activities from one seed."""
    n_par = len(model.u)
    keys = []
    for t in model.terms.values():
        p = t.params[:, 1:]
        has = p >= 0
        keys.append(np.repeat(t.source, has.sum(axis=1)) * n_par + p[has])
    uniq = np.unique(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.int64)
    base = uniq % n_par
    new_terms = {}
    for s_, t in model.terms.items():
        params = t.params.copy()
        p = params[:, 1:]
        has = p >= 0
        k = np.broadcast_to(t.source[:, None], p.shape)[has] * n_par + p[has]
        p[has] = n_par + np.searchsorted(uniq, k)
        new_terms[s_] = Terms(source=t.source, coef=t.coef, params=params)
    return UncertaintyModel(
        species=list(model.species), u=np.concatenate([model.u, model.u[base]]),
        lognormal=np.concatenate([model.lognormal, model.lognormal[base]]),
        cap=np.concatenate([model.cap, model.cap[base]]),
        z=np.concatenate([model.z, model.n_z + np.arange(uniq.size)]),
        kind=np.concatenate([model.kind, model.kind[base]]), n_z=model.n_z + uniq.size,
        n_sources=model.n_sources, terms=new_terms)


def member_emissions(model: UncertaintyModel, species: str, mult: np.ndarray,
                     dtype: type = np.float64) -> np.ndarray:
    """Emissions of one species for each member (sources × members) [kg/yr] from the
    multipliers of every parameter (parameters × members, :meth:`UncertaintyModel.multipliers`;
    float32 multipliers give float32 emissions with ``dtype=np.float32``)."""
    t = model.terms[species]
    lay = term_layout(t)
    values = evaluate_terms(lay, np.ascontiguousarray(mult),
                            np.empty((len(t.coef), mult.shape[1]), dtype=dtype))
    if t.unique_sources:  # one term per source: a scatter, no summation
        out = np.zeros((model.n_sources, values.shape[1]), dtype=dtype)
        out[t.source[lay.order]] = values
        return out
    s_ = t.to_sources(model.n_sources)[:, lay.order]
    return np.asarray(s_.astype(values.dtype) @ values, dtype=dtype)


def sensitivity(model: UncertaintyModel, species: str) -> sp.csr_matrix:
    """(n_z × sources) first-order effect of each standard normal on each source's emissions
    [kg/yr per unit normal]: Σ over the terms and parameters it enters of coef × U/1.96."""
    t = model.terms[species]
    rows, cols, vals = [], [], []
    sig = model.u / Z95
    for j in range(t.params.shape[1]):
        p = t.params[:, j]
        has = p >= 0
        rows.append(model.z[p[has]])
        cols.append(t.source[has])
        vals.append(t.coef[has] * sig[p[has]])
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(model.n_z, model.n_sources))


def propagate(model: UncertaintyModel, groups: sp.spmatrix) -> dict[str, tuple[np.ndarray,
                                                                              np.ndarray]]:
    """Approach 1 (IPCC 2006 Vol. 1 Ch. 3, Eqs. 3.1 and 3.2): per species, the central total and
    the 95 % half-width [kg/yr] of each group of sources (``groups``: sources × groups weights,
    e.g. a one-hot sector matrix). Shared parameters add before squaring (fully correlated),
    independent ones in quadrature."""
    out = {}
    for s_ in model.species:
        t = model.terms[s_]
        central = np.asarray(groups.T @ (t.to_sources(model.n_sources) @ t.coef)).ravel()
        g = sensitivity(model, s_) @ groups
        var = np.asarray(g.multiply(g).sum(axis=0)).ravel()
        out[s_] = (central, Z95 * np.sqrt(var))
    return out


def propagate_ratio(model: UncertaintyModel, num: str, den: str, groups: sp.spmatrix
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Approach 1 for the ratio of two species' totals per group: central ratio and the 95 %
    relative half-width [1] (``δR/R = δX/X − δY/Y``: a parameter both share, such as the
    activity of a stack, cancels)."""
    x = np.asarray(groups.T @ (model.terms[num].to_sources(model.n_sources)
                               @ model.terms[num].coef)).ravel()
    y = np.asarray(groups.T @ (model.terms[den].to_sources(model.n_sources)
                               @ model.terms[den].coef)).ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        gx = (sensitivity(model, num) @ groups).toarray() / x
        gy = (sensitivity(model, den) @ groups).toarray() / y
        ratio = x / y
    return ratio, Z95 * np.sqrt(((gx - gy) ** 2).sum(axis=0))


def standard_normals(seed: int, members: range | np.ndarray, n: int, stream: int = 0
                     ) -> np.ndarray:
    """(n × members) standard normals, member ``m``'s from its own ``SeedSequence(seed,
    spawn_key=(m, stream))``: the same numbers whichever process, order or chunk draws them."""
    out = np.empty((len(members), n))  # member by member into contiguous rows
    for j, m in enumerate(members):
        gen = np.random.Generator(np.random.PCG64(
            np.random.SeedSequence(seed, spawn_key=(int(m), int(stream)))))
        gen.standard_normal(out=out[j])
    return out.T
