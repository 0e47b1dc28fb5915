"""Uncertainty of a build, the IPCC way (2006 Vol. 1 Ch. 3) and the same-source way.

- **Approach 1** (:func:`approach1_table`, in every build whose tables carry uncertainty
  columns → ``uncertainty.csv``): per sector × species and for the city, the central total and
  its 95 % half-width by linear propagation of the parameters of :mod:`sources.uncertainty`.
- **Approach 2** (:func:`run_monte_carlo`, ``tongyuan uncertainty <build> --members N``, or
  ``uncertainty.members`` in the config): N members drawn with the real correlations (one
  activity draw per record for all its species, one per factor row for every source using it,
  one per fuel's carbon content) and pushed through the build's **own allocation matrix**: per
  species the member emissions are a dense (sources × members) block ``E`` and the member grids
  one sparse-dense product ``A @ E``. Outputs: ``uncertainty_mc.csv`` (per sector × species mean,
  median, 2.5/97.5 % and the Approach 1 comparison), ``uncertainty_ratios.csv`` (NOx/CO2,
  CO/CO2, SO2/CO2 per sector and city with and without the shared activity) and
  ``uncertainty.nc`` (per-cell 2.5/97.5 % grids, CF; optionally K member grids).

Member ``m`` draws its normals from ``SeedSequence(seed, spawn_key=(m, stream))``, so a seed
gives the same numbers whichever process, chunk or order computes a member.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr

from pipeline.writers.netcdf_cf import write_grid_dataset
from sources.measures import SCALE_PREFIX, emission_scale
from sources.uncertainty import (
    Z95,
    UncertaintyModel,
    activity_uncertainty,
    build_model,
    member_emissions,
    propagate,
    propagate_ratio,
    standard_normals,
)

#: same-source ratios reported (numerator, denominator)
RATIOS = (("NOx", "CO2"), ("CO", "CO2"), ("SO2", "CO2"))
CITY = "city"


def model_of_state(state: Any, *, activity: pd.DataFrame | None = None,
                   emissions: Any = None, scale: pd.DataFrame | None = None
                   ) -> UncertaintyModel | None:
    """The uncertainty model of a build state (:class:`pipeline.build.BuildState`), or None when
    its tables carry no uncertainty (no uncertainty columns in ``emission_factors.csv`` or no
    ``tables.activity_uncertainty``)."""
    tables, cfg = state.tables, state.cfg
    if not tables.library.has_uncertainty or tables.activity_types is None:
        return None
    act = state.activity if activity is None else activity
    em = state.emissions if emissions is None else emissions
    scale = emission_scale(act) if scale is None else scale
    names = {str(spec.path): spec.name for spec in cfg.inputs}
    rules = [(a.input, a.sector, a.data_type) for a in cfg.uncertainty.activity]
    u, logn, _ = activity_uncertainty(act, rules, tables.activity_types, names,
                                      cfg.uncertainty.default_data_type,
                                      where=str(cfg.config_path))
    types = tables.activity_types
    mu = float(types.loc["measured", "u_rel"]) if "measured" in types.index else 0.0
    ml = bool(types.loc["measured", "lognormal"]) if "measured" in types.index else False
    return build_model(act, em.table, em.provenance, tables.library, tables.registry, u, logn,
                       measured_u=mu, measured_lognormal=ml, scale=scale)


def sector_groups(sectors: np.ndarray) -> tuple[list[str], sp.csr_matrix]:
    """Sector names (sorted) and the (sources × sectors + city) one-hot matrix."""
    names = sorted(set(sectors))
    codes = pd.Categorical(sectors, categories=names).codes
    n = len(sectors)
    onehot = sp.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, len(names)))
    city = sp.csr_matrix(np.ones((n, 1)))
    return [*names, CITY], sp.hstack([onehot, city], format="csr")


def approach1_table(model: UncertaintyModel, sectors: np.ndarray) -> pd.DataFrame:
    """Approach 1 per sector × species and for the city: ``central_kg``, ``u95_kg`` (95 %
    half-width), ``u95_pct``, ``lower_kg`` and ``upper_kg`` (central ∓ half-width, cut at 0)."""
    names, groups = sector_groups(sectors)
    rows = []
    for sp_, (central, half) in propagate(model, groups).items():
        for g, c, h in zip(names, central, half, strict=True):
            rows.append({"sector": g, "species": sp_, "central_kg": c, "u95_kg": h,
                         "u95_pct": 100 * h / c if c > 0 else np.nan,
                         "lower_kg": max(c - h, 0.0), "upper_kg": c + h})
    out = pd.DataFrame(rows)
    return out[out["central_kg"] > 0].reset_index(drop=True)


@dataclass
class MonteCarloResult:
    """What :func:`run_monte_carlo` computed.

    Attributes
    ----------
    members, seed : how many members and from which seed
    stats : per sector × species (and city): central, mean, median, p2_5, p97_5 [kg/yr], the
        MC and Approach 1 95 % half-widths [% of central] and their ratio
    ratios : per sector (and city) and ratio: central, mean, median, p2_5, p97_5 [g/kg] with
        the shared activity (``correlated``) and with independent activity per species
    lower, upper, central : (species, cells) per-cell 2.5 / 97.5 % and central grid [kg/yr]
    member_grids : (K, species, cells) the first K members' grids, or None
    totals : per species (sectors + city × members) member totals [kg/yr]
    correlated : drawn with the inventory's correlations (shared activity, factor rows,
        devices), or with none (``--independent``, IPCC Approach 1's assumptions)
    """

    members: int
    seed: int
    species: list[str]
    stats: pd.DataFrame
    ratios: pd.DataFrame
    lower: np.ndarray
    upper: np.ndarray
    central: np.ndarray
    member_grids: np.ndarray | None
    totals: dict[str, np.ndarray] = field(default_factory=dict)
    correlated: bool = True


def _chunks(n: int, size: int) -> list[range]:
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


def _run(tasks: list[Any], scheduler: str) -> list[Any]:
    """Compute dask-delayed ``tasks`` on ``scheduler`` (``threads`` or ``synchronous``)."""
    import dask

    return list(dask.compute(*tasks, scheduler="sync" if scheduler == "synchronous"
                             else "threads"))


def member_multipliers(model: UncertaintyModel, seed: int, members: range,
                       stream: int = 0) -> np.ndarray:
    """Multipliers of every parameter for ``members`` (parameters × members, float32,
    C-contiguous) from each member's own seed sequence (:func:`standard_normals`)."""
    z = standard_normals(seed, members, model.n_z, stream=stream)
    return np.ascontiguousarray(model.multipliers(z), dtype=np.float32)


def _percentiles(g: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """``np.percentile(g, qs, axis=1)`` (its default ``linear`` method, the same numbers to the
    bit, float64) of float ``g`` without NaN, by one ``np.partition`` on the order statistics
    it needs instead of numpy's partition of a copy at every one of them and both ends."""
    n = g.shape[1]
    pos = (n - 1) * (np.asarray(qs, dtype=np.float64) / 100)
    lo = np.floor(pos)
    gamma = pos - lo
    lo = lo.astype(np.intp)
    hi = lo + 1
    top = pos >= n - 1
    lo[top], hi[top] = n - 1, n - 1
    part = np.partition(g, sorted(set(lo) | set(hi)), axis=1)
    a, b = part[:, lo], part[:, hi]
    d = b - a  # in g's type, as numpy's _lerp
    out = a + d * gamma
    upper = gamma >= 0.5
    out[:, upper] = (b - d * (1 - gamma))[:, upper]
    return out.T


@dataclass
class _Species:
    """One species' evaluation plan: its terms' layout by sector, and the allocation of its
    terms (in layout order, float32) restricted to the cells it can reach."""

    name: str
    layout: Any
    cells: np.ndarray
    alloc: sp.csr_matrix
    grid: np.ndarray | None = None  # (cells × members) float32
    totals: np.ndarray | None = None  # (sectors × members) float64


def _plans(model: UncertaintyModel, matrix: sp.csr_matrix, codes: np.ndarray, n_groups: int,
           members: int) -> list[_Species]:
    from sources.uncertainty import term_layout

    plans = []
    for s_ in model.species:
        t = model.terms[s_]
        lay = term_layout(t, codes)
        a = (matrix @ t.to_sources(model.n_sources)[:, lay.order]).tocsr()
        cells = np.flatnonzero(np.diff(a.indptr) > 0)  # cells no term reaches stay exactly 0
        plans.append(_Species(s_, lay, cells, a[cells].astype(np.float32),
                              np.empty((cells.size, members), dtype=np.float32),
                              np.zeros((n_groups, members))))
    return plans


def run_monte_carlo(model: UncertaintyModel, matrix: sp.csr_matrix, sectors: np.ndarray,
                    members: int, seed: int, *, chunk: int = 50, member_grids: int = 0,
                    cell_chunk: int = 2048, ratios: bool = True, correlated: bool = True,
                    scheduler: str = "threads") -> MonteCarloResult:
    """Approach 2: ``members`` draws pushed through the allocation ``matrix`` (cells × sources).

    Members run in chunks of ``chunk``, each chunk a task: its multipliers (float32,
    parameters × members, from each member's own seed sequence), then per species the member
    values of its terms (:func:`sources.uncertainty.evaluate_terms`: blocks of terms sharing a
    sector and a factor × device product, float32; sector sums in float64), and the member
    grids, one sparse-dense product of the species' allocation (cells × terms, float32) with
    them. Then per species and chunk of ``cell_chunk`` cells a task takes the per-cell 2.5 /
    97.5 % over members (one ``np.partition``). Cells no term of a species reaches are 0 in
    every member and skipped. Tasks run on Dask's ``threads`` scheduler (shared memory; numpy
    and scipy release the GIL) or ``synchronous``; every number is the same on either and
    whatever ``chunk``.

    ``correlated=False`` draws every source's activity and every (source, factor row) and
    (source, device) independently (:func:`sources.uncertainty.independent_model`): the
    no-correlation Monte Carlo of IPCC Approach 1's assumptions, compared with the matching
    Approach 1. Its ratio table has no ``independent_activity`` rows (they need the factor
    draws of every member, millions of numbers then).

    float32 is used for member multipliers, term values, member grids and the per-cell
    percentiles (a relative precision of 6e-8, far below any uncertainty drawn); central
    values, sector and city totals and their statistics are float64.
    """
    from dask import delayed

    from sources.uncertainty import evaluate_terms, independent_model

    if not correlated:
        model = independent_model(model)
    names, groups = sector_groups(sectors)
    codes = pd.Categorical(sectors, categories=names[:-1]).codes.astype(np.int64)
    n_sec = len(names) - 1
    a1 = propagate(model, groups)
    n_cells = matrix.shape[0]
    plans = _plans(model, matrix, codes, n_sec, members)
    pairs = [(a, b) for a, b in RATIOS if a in model.terms and b in model.terms] \
        if ratios else []
    dens = {b for _, b in pairs}
    nums = sorted({a for a, _ in pairs} - dens)
    chunks = _chunks(members, max(int(chunk), 1))
    # the multipliers of every member are kept when the ratios' independent activity needs
    # them (it reuses other members' factor draws)
    keep_blocks = bool(pairs) and correlated
    blocks: list[np.ndarray | None] = [None] * len(chunks)
    width = max((len(p.layout.order) for p in plans), default=0)

    def members_task(i: int) -> None:
        ch = chunks[i]
        mult = member_multipliers(model, seed, ch)  # C-contiguous, for np.take
        if keep_blocks:
            blocks[i] = mult
        buf = np.empty((width, len(ch)), dtype=np.float32)
        for p in plans:
            v = buf[:len(p.layout.order)]
            tot = np.zeros((n_sec, len(ch)))
            evaluate_terms(p.layout, mult, v, tot)
            p.totals[:, ch.start:ch.stop] = tot
            p.grid[:, ch.start:ch.stop] = p.alloc @ v

    _run([delayed(members_task)(i) for i in range(len(chunks))], scheduler)
    lower = np.zeros((len(model.species), n_cells))
    upper = np.zeros_like(lower)

    def cells_task(i: int, cc: range) -> None:
        p = plans[i]
        q = _percentiles(p.grid[cc.start:cc.stop], (2.5, 97.5))
        lower[i, p.cells[cc.start:cc.stop]], upper[i, p.cells[cc.start:cc.stop]] = q

    _run([delayed(cells_task)(i, cc) for i, p in enumerate(plans)
          for cc in _chunks(p.cells.size, cell_chunk)], scheduler)
    central = np.zeros_like(lower)
    k = min(member_grids, members)
    keep = np.zeros((k, len(model.species), n_cells), dtype=np.float32) if k else None
    totals: dict[str, np.ndarray] = {}
    for i, p in enumerate(plans):
        t = model.terms[p.name]
        central[i] = matrix @ (t.to_sources(model.n_sources) @ t.coef)
        if keep is not None:
            keep[:, i, p.cells] = p.grid[:, :k].T
        totals[p.name] = np.vstack([p.totals, p.totals.sum(axis=0)])
    rows = []
    for s_ in model.species:
        tot = totals[s_]
        c0, h1 = a1[s_]
        q = np.percentile(tot, [2.5, 50, 97.5], axis=1)
        for j, gname in enumerate(names):
            if c0[j] <= 0:
                continue
            mc_half = 0.5 * (q[2, j] - q[0, j])
            a1_pct = 100 * h1[j] / c0[j]
            rows.append({"sector": gname, "species": s_, "central_kg": c0[j],
                         "mean_kg": tot[j].mean(), "median_kg": q[1, j], "p2_5_kg": q[0, j],
                         "p97_5_kg": q[2, j], "mc_lower_pct": 100 * (q[0, j] - c0[j]) / c0[j],
                         "mc_upper_pct": 100 * (q[2, j] - c0[j]) / c0[j],
                         "mc_u95_pct": 100 * mc_half / c0[j], "approach1_u95_pct": a1_pct,
                         "mc_over_approach1": (100 * mc_half / c0[j]) / a1_pct
                         if a1_pct > 0 else np.nan})
    indep: dict[str, np.ndarray] | None = None
    if keep_blocks:
        indep = _independent_activity_totals(model, plans, blocks, chunks, nums, dens, totals,
                                             members, scheduler)
    ratio_table = _ratio_table(model, groups, names, pairs, totals, indep) if ratios \
        else pd.DataFrame()
    return MonteCarloResult(members=members, seed=seed, species=list(model.species),
                            stats=pd.DataFrame(rows), ratios=ratio_table, lower=lower,
                            upper=upper, central=central, member_grids=keep, totals=totals,
                            correlated=correlated)


def _independent_activity_totals(model: UncertaintyModel, plans: list[_Species],
                                 blocks: list[Any], chunks: list[range], nums: list[str],
                                 dens: set[str], totals: dict[str, np.ndarray], members: int,
                                 scheduler: str) -> dict[str, np.ndarray]:
    """Member totals of the ratios' species with each species' activity drawn independently
    (what an inventory that grids species apart would assume).

    They need no new random numbers: numerator ``k`` takes the activity multipliers of member
    ``π(m) = (m + 1 + k) mod N`` with the factor and device draws of member ``m``. Members are
    independent and identically distributed, so that activity draw is independent of member
    ``m``'s (the denominator keeps its own) and has the same distribution. It is computed the
    cheap way round: member ``j``'s few factor and device rows are those of member π⁻¹(j)
    (not the 50 000 activity rows), and the member totals are then permuted by π."""
    from dask import delayed

    from sources.uncertainty import evaluate_terms

    other = np.flatnonzero(model.kind != "activity")
    saved = np.hstack([b[other] for b in blocks]) if blocks else np.zeros((other.size, 0))
    by_name = {p.name: p for p in plans}
    indep = {s_: totals[s_] for s_ in dens}
    n_sec = totals[next(iter(totals))].shape[0] - 1
    for k, s_ in enumerate(nums):
        pi = (np.arange(members) + 1 + k) % max(members, 1)
        inverse = np.empty_like(pi)
        inverse[pi] = np.arange(members)
        p = by_name[s_]
        tot = np.zeros((n_sec, members))

        def task(i: int, p: _Species = p, inverse: np.ndarray = inverse,
                 tot: np.ndarray = tot) -> None:
            ch = chunks[i]
            alt = blocks[i].copy()
            alt[other] = saved[:, inverse[ch.start:ch.stop]]  # member j: factors of π⁻¹(j)
            t = np.zeros((n_sec, len(ch)))
            evaluate_terms(p.layout, alt, np.empty((len(p.layout.order), len(ch)),
                                                   dtype=np.float32), t)
            tot[:, ch.start:ch.stop] = t

        _run([delayed(task)(i) for i in range(len(chunks))], scheduler)
        tot = tot[:, pi]  # member m: activity of π(m), factors of m
        indep[s_] = np.vstack([tot, tot.sum(axis=0)])
    return indep


def _ratio_table(model: UncertaintyModel, groups: sp.csr_matrix, names: list[str],
                 pairs: list[tuple[str, str]], totals: dict[str, np.ndarray],
                 indep: dict[str, np.ndarray] | None) -> pd.DataFrame:
    """Same-source ratios [g/kg] per sector and city, with the shared activity (the members of
    :func:`run_monte_carlo`) and, when given, with each species' activity drawn independently
    (:func:`_independent_activity_totals`)."""
    rows = []
    modes = [("correlated", totals)] + ([("independent_activity", indep)] if indep else [])
    for num, den in pairs:
        central, a1 = propagate_ratio(model, num, den, groups)
        for mode, source in modes:
            with np.errstate(divide="ignore", invalid="ignore"):
                r = 1e3 * source[num] / source[den]
            for j, gname in enumerate(names):
                if not np.isfinite(central[j]) or central[j] <= 0:
                    continue
                q = np.percentile(r[j], [2.5, 50, 97.5])
                rows.append({"sector": gname, "ratio": f"{num}/{den}", "unit": "g/kg",
                             "activity": mode, "central": 1e3 * central[j],
                             "mean": float(r[j].mean()), "median": q[1], "p2_5": q[0],
                             "p97_5": q[2], "mc_u95_pct": 50 * (q[2] - q[0]) / (1e3 * central[j]),
                             "approach1_u95_pct": 100 * a1[j] if mode == "correlated"
                             else np.nan})
    return pd.DataFrame(rows)


def write_monte_carlo(result: MonteCarloResult, build_dir: Path, grid: Any,
                      static: dict[str, Any], attrs: dict[str, Any], year: int) -> list[Path]:
    """``uncertainty_mc.csv``, ``uncertainty_ratios.csv`` and ``uncertainty.nc`` (CF): per-cell
    2.5 / 97.5 % and central annual grids per species (local sources, all sectors), and the
    first K member grids when kept."""
    build_dir = Path(build_dir)
    result.stats.to_csv(build_dir / "uncertainty_mc.csv", index=False, float_format="%.9g")
    result.ratios.to_csv(build_dir / "uncertainty_ratios.csv", index=False, float_format="%.9g")
    shape = (len(result.species), grid.ny, grid.nx)
    coords = {"species": result.species, "y": grid.y, "x": grid.x}

    def var(values: np.ndarray, what: str) -> xr.DataArray:
        return xr.DataArray(values.reshape(shape), dims=("species", "y", "x"), coords=coords,
                            attrs={"long_name": f"{what} of the annual emissions per grid cell "
                                   f"over {result.members} Monte Carlo members",
                                   "units": "kg year-1", "grid_mapping": "crs",
                                   "coordinates": "lat lon"})

    ds = xr.Dataset({"annual_emissions_p2_5": var(result.lower, "2.5th percentile"),
                     "annual_emissions_p97_5": var(result.upper, "97.5th percentile")})
    ds["annual_emissions_central"] = var(result.central, "central estimate")
    ds["annual_emissions_central"].attrs["long_name"] = (
        "annual emissions per grid cell at the central values (local sources)")
    enc = {v: {"zlib": True, "complevel": 1, "chunksizes": (1, grid.ny, grid.nx)}
           for v in ds.data_vars}
    if result.member_grids is not None:
        k = result.member_grids.shape[0]
        ds["annual_emissions_member"] = xr.DataArray(
            result.member_grids.reshape((k, *shape)), dims=("member", "species", "y", "x"),
            coords={**coords, "member": np.arange(k, dtype=np.int32)},
            attrs={"long_name": "annual emissions per grid cell of equally plausible Monte "
                   "Carlo members", "units": "kg year-1", "grid_mapping": "crs",
                   "coordinates": "lat lon"})
        ds["member"].attrs = {"long_name": "Monte Carlo member number"}
        enc["annual_emissions_member"] = {"zlib": True, "complevel": 1,
                                          "chunksizes": (1, 1, grid.ny, grid.nx)}
    ds["species"].attrs = {"long_name": "emitted species"}
    path = build_dir / "uncertainty.nc"
    write_grid_dataset(ds, path, static, {
        **attrs, "tongyuan_uncertainty": f"IPCC 2006 Vol. 1 Ch. 3 Approach 2 (Monte Carlo), "
        f"{result.members} members, seed {result.seed}, "
        + ("correlations of the inventory (one activity per source for all its species, one "
           "draw per factor row, device and fuel)" if result.correlated else
           "no correlations (every source's activity, factors and devices drawn apart: IPCC "
           "Approach 1's assumptions)")
        + "; local sources (regional background at its central value)"}, enc, year=year,
        annual=list(ds.data_vars))
    return [build_dir / "uncertainty_mc.csv", build_dir / "uncertainty_ratios.csv", path]


#: sub-directory of a build with the Monte Carlo files
MC_DIR = "uncertainty"


def write_uncertainty(state: Any, build_dir: Path, static: dict[str, Any],
                      attrs: dict[str, Any]) -> list[Path]:
    """The uncertainty files of a build: ``uncertainty.csv`` (Approach 1) when the tables
    carry uncertainties, and the Monte Carlo files in ``uncertainty/`` when
    ``uncertainty.members`` > 0."""
    model = model_of_state(state)
    if model is None:
        return []
    sectors = state.activity["sector"].to_numpy()
    path = Path(build_dir) / "uncertainty.csv"
    approach1_table(model, sectors).to_csv(path, index=False, float_format="%.9g")
    written = [path]
    u = state.cfg.uncertainty
    if u.members > 0:
        result = run_monte_carlo(model, state.alloc.matrix, sectors, u.members, u.seed,
                                 member_grids=u.member_grids, scheduler=u.scheduler)
        folder = Path(build_dir) / MC_DIR
        folder.mkdir(exist_ok=True)
        written += write_monte_carlo(result, folder, state.tables.grid, static, attrs,
                                     state.cfg.year)
    return written


def run_uncertainty(build: str | Path, members: int, seed: int | None = None, *,
                    member_grids: int | None = None, config: str | Path | None = None,
                    correlated: bool = True) -> MonteCarloResult:
    """``tongyuan uncertainty``: Monte Carlo on a published build. Its configuration
    (``config``, or the manifest's when that path exists; its hash must be the build's) is read
    again (allocation matrices come from the cache), the members are drawn (with the
    inventory's correlations, or none: ``correlated=False``) and ``<build>/uncertainty/`` is
    replaced atomically and added to the manifest."""
    from pipeline.build import prepare  # the recipe module imports this one
    from pipeline.config import config_hash, load_config
    from pipeline.provenance import provenance_attrs
    from pipeline.publish import read_manifest, replace_subdir
    from pipeline.writers.netcdf_cf import static_coords
    from sources.errors import ConfigError

    build_dir = Path(build).resolve()
    manifest = read_manifest(build_dir)
    path = Path(config) if config is not None else Path(manifest.config or "")
    if not path.is_file():
        raise ConfigError(f"{build_dir}: the build's configuration {str(path)!r} is not found "
                          "from here (manifests record it relative to its folder); give it "
                          "with --config")
    cfg = load_config(path, {"output.dir": str(build_dir.parent)})
    if manifest.scenario is None and config_hash(cfg) != manifest.config_hash:
        raise ConfigError(f"{path}: not the configuration of {build_dir} (its hash "
                          f"{config_hash(cfg)[:12]} differs from the build's "
                          f"{manifest.config_hash[:12]}: a table or setting changed since)")
    state = prepare(cfg)
    model = model_of_state(state)
    if model is None:
        raise ConfigError(f"{manifest.config}: the tables carry no uncertainty (uncertainty_pct "
                          "and distribution columns in emission_factors.csv, and "
                          "tables.activity_uncertainty); nothing to draw")
    u = cfg.uncertainty
    result = run_monte_carlo(model, state.alloc.matrix, state.activity["sector"].to_numpy(),
                             members, u.seed if seed is None else seed,
                             member_grids=u.member_grids if member_grids is None
                             else member_grids, correlated=correlated, scheduler=u.scheduler)
    attrs = provenance_attrs(cfg, state.metas, manifest.build_id, manifest.config_hash,
                             state.tables.grid)
    static = static_coords(state.tables.grid)
    replace_subdir(build_dir, MC_DIR, lambda folder: write_monte_carlo(
        result, folder, state.tables.grid, static, attrs, cfg.year))
    if (build_dir / "report").is_dir():  # the report's uncertainty section reads the members
        from pipeline.report import write_report

        replace_subdir(build_dir, "report", lambda folder: write_report(build_dir, folder))
    return result


def half_width(result_lower: np.ndarray, result_upper: np.ndarray, central: np.ndarray
               ) -> np.ndarray:
    """Relative 95 % half-width per cell [1]: (p97.5 − p2.5) / (2 · central); NaN where the
    central value is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(central > 0, 0.5 * (result_upper - result_lower) / central, np.nan)


def _changed_sources(before: pd.DataFrame, after: pd.DataFrame) -> set[str]:
    """Ids of the sources whose emissions a measure can have changed: in one table only, or
    with a different key, control, activity, unit, parent, factor scale or reported value."""
    def cols(df: pd.DataFrame) -> list[str]:
        return [c for c in df.columns if c in ("sector", "fuel", "technology", "control",
                                               "activity", "activity_unit", "parent_pos")
                or c.startswith((SCALE_PREFIX, "reported_"))]

    use = sorted(set(cols(before)) | set(cols(after)))
    b = before.reindex(columns=["source_id", *use]).set_index("source_id")
    a = after.reindex(columns=["source_id", *use]).set_index("source_id")
    common = b.index.intersection(a.index)
    bb, aa = b.loc[common], a.loc[common]
    same = ((bb == aa) | (bb.isna() & aa.isna())).all(axis=1).to_numpy()
    return {str(i) for i in b.index.symmetric_difference(a.index)} | {
        str(i) for i in common[~same]}


def synergy_ranges(run: Any, tables: Any, cfg: Any, members: int, seed: int,
                   species: tuple[str, ...] = ("CO2", "CO2_fossil", "CO2e", "NOx", "SO2",
                                               "PM2_5", "NMVOC")) -> pd.DataFrame:
    """The synergy table with 95 % ranges of each measure's Δ and of the co-benefit ratios,
    base and scenario drawn with **common random numbers**: a source derived from a base record
    takes the record's activity draw, every state uses the same factor and device draws, so a
    measure's Δ carries only the uncertainty of what it changes.

    Adds ``delta_<sp>_t_p2_5`` / ``_p97_5`` [t/yr] and, for every ratio column
    ``<p>_t_per_kt_<CO2 species>`` of the table, ``<column>_p2_5`` / ``_p97_5``. Rows
    ``sum_of_alone`` and ``interaction`` get no range. Returns the table unchanged when the
    tables carry no uncertainty.
    """
    from sources.emissions import compute_emissions  # only the synergy needs it here

    syn = run.synergy.copy()
    if not tables.library.has_uncertainty or tables.activity_types is None or members < 2:
        return syn
    base = run.base
    n_base = len(base)
    new_ids: dict[str, int] = {}
    for _, _, before, after in run.states:
        for act in (before, after):
            pos = act["parent_pos"].to_numpy()
            for sid in act["source_id"].to_numpy()[pos < 0]:
                new_ids.setdefault(str(sid), n_base + len(new_ids))
    n_act = n_base + len(new_ids)
    names = {str(spec.path): spec.name for spec in cfg.inputs}
    rules = [(a.input, a.sector, a.data_type) for a in cfg.uncertainty.activity]
    types = tables.activity_types
    mu = float(types.loc["measured", "u_rel"]) if "measured" in types.index else 0.0
    ml = bool(types.loc["measured", "lognormal"]) if "measured" in types.index else False
    cache: dict[tuple[int, frozenset], dict[str, np.ndarray]] = {}
    z: np.ndarray | None = None

    def totals(act: pd.DataFrame, ids: frozenset) -> dict[str, np.ndarray]:
        nonlocal z
        if (id(act), ids) in cache:
            return cache[(id(act), ids)]
        act = act[act["source_id"].isin(ids).to_numpy()]
        if len(act) == 0:
            return {s_: np.zeros(members) for s_ in species}
        scale = emission_scale(act)
        em = compute_emissions(act, tables.library, tables.registry, scale=scale)
        pos = act["parent_pos"].to_numpy()
        key = np.where(pos >= 0, pos, [new_ids.get(str(s_), 0) for s_ in act["source_id"]])
        u, logn, _ = activity_uncertainty(act, rules, types, names,
                                          cfg.uncertainty.default_data_type)
        model = build_model(act, em.table, em.provenance, tables.library, tables.registry,
                            u, logn, measured_u=mu, measured_lognormal=ml, scale=scale,
                            activity_key=key, n_activity_z=n_act)
        if z is None or z.shape[0] < model.n_z:
            z = standard_normals(seed, range(members), model.n_z)
        mult = model.multipliers(z[:model.n_z])
        out = {s_: member_emissions(model, s_, mult).sum(axis=0) / 1e3
               for s_ in species if s_ in model.terms}
        cache[(id(act), ids)] = out
        return out

    deltas: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for measure, basis, before, after in run.states:
        # common random numbers: the sources a measure leaves alone cancel member by member,
        # so only the sources it changed, removed or added are drawn
        ids = frozenset(_changed_sources(before, after))
        b, a = totals(before, ids), totals(after, ids)
        deltas[(measure, basis)] = {s_: a.get(s_, 0.0) - b.get(s_, 0.0)
                                    for s_ in set(a) | set(b)}
    ratio_cols = [c for c in syn.columns if "_t_per_kt_" in c and not c.endswith(("_p2_5",
                                                                                    "_p97_5"))]
    for s_ in species:
        if f"delta_{s_}_t" not in syn.columns:
            continue
        lo, hi = [], []
        for _, r in syn.iterrows():
            d = deltas.get((r["measure"], r["basis"]), {}).get(s_)
            q = np.percentile(d, [2.5, 97.5]) if d is not None else (np.nan, np.nan)
            lo.append(q[0])
            hi.append(q[1])
        syn[f"delta_{s_}_t_p2_5"], syn[f"delta_{s_}_t_p97_5"] = lo, hi
    # the ratios' CO2: fossil CO2 where the registry splits CO2 (pipeline.scenario._ratios)
    ratio_co2 = tables.registry.co2_split[1] if tables.registry.co2_split else "CO2"
    for col in ratio_cols:
        num, den = col.split("_t_per_kt_")
        den = ratio_co2 if den == "CO2" else den
        lo, hi = [], []
        for _, r in syn.iterrows():
            d = deltas.get((r["measure"], r["basis"]), {})
            if num in d and den in d:
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = d[num] / (d[den] / 1e3)
                ratio = ratio[np.isfinite(ratio)]
                q = np.percentile(ratio, [2.5, 97.5]) if ratio.size else (np.nan, np.nan)
            else:
                q = (np.nan, np.nan)
            lo.append(q[0])
            hi.append(q[1])
        syn[f"{col}_p2_5"], syn[f"{col}_p97_5"] = lo, hi
    return syn


__all__ = ["MC_DIR", "Z95", "MonteCarloResult", "approach1_table", "half_width",
           "model_of_state", "run_monte_carlo", "run_uncertainty", "sector_groups",
           "synergy_ranges", "write_monte_carlo", "write_uncertainty"]
