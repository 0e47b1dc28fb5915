"""A regional background inventory merged with the city's own sources, without double counting.

Steps (:func:`add_regional`, the one call :func:`pipeline.build.prepare` makes after
``grid_and_time``):

1. **read** every field of every configured inventory (:mod:`sources.gridded`), each file
   hashed into the provenance;
2. **regrid** each field exactly and conservatively onto the build grid
   (:mod:`grids.regrid`, one cached matrix per source grid), the mass beyond the grid kept
   apart;
3. **map** their sectors and species to ours with the cited split fractions of the mapping
   tables (``config/regional_sectors.csv``, ``config/regional_species.csv``);
4. **merge** (:func:`merge`): inside the mask (the city boundary by default; any polygons),
   the local inventory *replaces* the regional one for every sector it has (``replace:
   auto``) or for the listed ones; a sector the local inventory lacks stays regional inside
   the city; a cell cut by the mask is split by its exact area fraction;
   :func:`double_counted` then proves that no sector is counted twice in any cell;
5. **time**: a monthly field keeps its month and takes our weekday, hour and holiday profile
   of the mapped sector within it; an annual field takes our full profile
   (:func:`regional_factors`);
6. **join the build** as pseudo-sources, one per (regional sector, species) whose allocation
   column is its merged field: the annual grid, the ledger, the hourly CF files and the CMAQ
   and WRF-Chem files then carry local + regional mass with the same mass checks.

Regional mass sits in its own sectors, ``<sector>@<inventory>`` (annual) or
``<sector>@<inventory>-MM`` (month MM), so that its time profile can differ from the local
sector's; the ledger carries ``regional_read``, ``regional_outside``, ``replaced_by_local`` and
``regional_gridded`` per such sector × species, and ``read = gridded + outside + rejected``
holds with the replaced mass as rejected (reason: replaced by the local inventory).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd
import scipy.sparse as sp
import shapely
import xarray as xr

from grids.allocate import Allocation
from grids.cache import CacheStats
from grids.grid import Grid
from grids.regions import read_regions, region_weights
from grids.regrid import Regridding, cached_regridding
from pipeline.checks import Finding
from pipeline.cube import annual_grid
from pipeline.ledger import RTOL, check_balance
from pipeline.steps import compute_ledger
from pipeline.writers.netcdf_cf import write_grid_dataset
from sources.emissions import EmissionsResult
from sources.errors import ConfigError, MassBalanceError
from sources.gridded import (
    GriddedField,
    GriddedSource,
    base_sector,
    load_mapping,
    read_gridded,
    regional_sector,
    sector_split,
    species_map,
    to_kg_per_cell,
)
from sources.readers import InputMeta

if TYPE_CHECKING:
    from pipeline.build import BuildState, Runner
    from pipeline.config import RegionalConfig

#: ledger columns of the merge, per sector × species [kg]
REGIONAL_COLUMNS = ["regional_read", "regional_outside", "replaced_by_local",
                    "regional_gridded"]
#: the build file with where the local inventory replaced the regional one (report map)
MERGE_FILE = "regional_merge.nc"


@dataclass
class RegionalPart:
    """One (inventory, our sector, our species, month) on the build grid [kg in the period].

    ``cells`` is the mass per target cell (flat), ``outside`` beyond the grid, ``read`` what
    the files hold for it after mapping (= Σ cells + outside)."""

    inventory: str
    sector: str
    species: str
    month: int | None
    cells: np.ndarray
    outside: float = 0.0

    @property
    def read(self) -> float:
        return float(self.cells.sum()) + self.outside

    @property
    def build_sector(self) -> str:
        return regional_sector(self.sector, self.inventory, self.month)


@dataclass
class Regional:
    """The regional background read and regridded: its parts, the files read and the log."""

    parts: list[RegionalPart]
    metas: list[InputMeta]
    log: list[str] = field(default_factory=list)
    cache: CacheStats = field(default_factory=CacheStats)
    #: the mapping rows used whose split is marked ``verified=no``, as text
    unverified: set[str] = field(default_factory=set)


def source_grid(f: GriddedField, name: str) -> Grid:
    g = f.grid
    return Grid(crs=g.crs, x0=g.x0, y0=g.y0, dx=g.dx, dy=g.dy, nx=g.nx, ny=g.ny, name=name)


def read_regional(rcfg: RegionalConfig, target: Grid, year: int,
                  cache_dir: Path | None = None) -> Regional:
    """Every configured inventory read, regridded onto ``target`` and mapped to our sectors and
    species (a field neither mapping covers is logged and left out)."""
    sec_map, spc_map = load_mapping(rcfg.sector_mapping, rcfg.species_mapping)
    acc: dict[tuple[str, str, str, int | None], RegionalPart] = {}
    metas, log, stats = [], [], CacheStats()
    unverified: set[str] = set()
    matrices: dict[tuple[str, object], Regridding] = {}
    for inv in rcfg.inventories:
        src = GriddedSource(**{**inv.model_dump(), "path": str(inv.path)})
        fields, files = read_gridded(src)
        for path, digest in files:
            metas.append(InputMeta(name=f"regional_{inv.name}_{Path(path).stem}", path=path,
                                   kind="regional", format=inv.format, sha256=digest))
        skipped: set[str] = set()
        mapped: dict[tuple[str, str], tuple[dict[str, float], dict[str, float]]] = {}
        for f in fields:
            if (f.sector, f.species) not in mapped:  # the same for every month
                splits = sector_split(sec_map, inv.name, f.sector, f.species)
                mapped[f.sector, f.species] = (splits,
                                               species_map(spc_map, inv.name, f.species))
                unverified |= _unverified_rows(sec_map, rcfg.sector_mapping, inv.name,
                                               f.sector, f.species, splits)
            splits, species = mapped[f.sector, f.species]
            if not splits or not species:
                skipped.add(f"{f.sector}/{f.species}")
                continue
            key = (inv.name, f.grid)
            if key not in matrices:
                matrices[key] = cached_regridding(source_grid(f, f"{inv.name}-{len(matrices)}"),
                                                  target, cache_dir, rcfg.densify, stats)
            reg = matrices[key]
            kg = to_kg_per_cell(f, reg.source.cell_area_m2, year)
            cells, outside = reg.apply(kg)
            for sector, frac in splits.items():
                for sp_, factor in species.items():
                    k = (inv.name, sector, sp_, f.month)
                    part = acc.setdefault(k, RegionalPart(inv.name, sector, sp_, f.month,
                                                          np.zeros(target.size)))
                    part.cells += cells.ravel() * (frac * factor)
                    part.outside += outside * frac * factor
        if skipped:
            log.append(f"regional {inv.name}: not mapped, left out: {sorted(skipped)}")
        log.append(f"regional {inv.name}: {len(fields)} fields from {len(files)} files, "
                   f"{len({k for k in matrices if k[0] == inv.name})} source grid(s)")
    return Regional(parts=list(acc.values()), metas=metas, log=log, cache=stats,
                    unverified=unverified)


def _unverified_rows(mapping: pd.DataFrame, path: object, inventory: str, their_sector: str,
                     their_species: str, splits: dict[str, float]) -> set[str]:
    """The rows behind a split (:func:`sources.gridded.sector_split`) marked verified=no."""
    if "verified" not in mapping.columns or not splits:
        return set()
    m = mapping[(mapping["inventory"] == inventory) & (mapping["their_sector"] == their_sector)
                & mapping["sector"].isin(list(splits))]
    own = m[m["species"] == their_species]
    use = own if len(own) else m[m["species"] == "*"]
    return {f"{path} row {int(i) + 1}: {r.inventory},{r.their_sector},{r.sector},{r.species} "
            f"{r.fraction:g}" for i, r in use[use["verified"] == "no"].iterrows()}


def unverified_finding(rows: set[str]) -> Finding | None:
    """One warning naming the sector-split rows used that are marked verified=no."""
    if not rows:
        return None
    return Finding(check="unverified_regional_splits", severity="warning", sector="all",
                   pair="verified=no", value=float(len(rows)), unit="rows", expected="0 rows",
                   message=f"{len(rows)} regional sector-split rows used are verified=no: "
                   "their fractions are placeholders (see their reference); replace them with "
                   "local shares", factor_rows=" | ".join(sorted(rows)))


def mask_fraction(target: Grid, polygons: gpd.GeoDataFrame | None) -> np.ndarray:
    """Share of each target cell inside the mask polygons [1] (exact area fraction in the grid
    CRS, :func:`grids.regions.region_weights`); zeros without a mask."""
    if polygons is None or len(polygons) == 0:
        return np.zeros(target.size)
    return np.clip(region_weights(target, polygons).sum(axis=1), 0.0, 1.0)


@dataclass
class MergeMap:
    """Where the merge put each inventory, for the build's :data:`MERGE_FILE`.

    ``inside``: share of each cell inside the mask [1] (flat cells); ``replaced``: regional
    mass per species replaced by the local inventory in each cell [kg/yr], (species, cells)."""

    inside: np.ndarray
    species: list[str]
    replaced: np.ndarray


def merge_map(merged: list[Merged], inside: np.ndarray, species: list[str]) -> MergeMap:
    """The :class:`MergeMap` of a merge: replaced mass summed over the regional sectors."""
    rep = np.zeros((len(species), inside.size))
    for m in merged:
        if m.replaced > 0 and m.part.species in species:
            rep[species.index(m.part.species)] += m.part.cells - m.kept
    return MergeMap(inside=inside, species=list(species), replaced=rep)


def write_merge_map(build_dir: Path, mm: MergeMap, grid: Grid, static: dict, attrs: dict,
                    year: int) -> None:
    """``regional_merge.nc``: the mask share per cell and the regional mass replaced by the
    local inventory per species and cell [kg/yr] (the report's map of where each inventory
    holds)."""
    ds = xr.Dataset({
        "local_mask_fraction": (("y", "x"), mm.inside.reshape(grid.shape), {
            "long_name": "share of the cell inside the mask where the local inventory "
                         "replaces the regional one", "units": "1", "grid_mapping": "crs",
            "coordinates": "lat lon"}),
        "replaced_by_local": (("species", "y", "x"),
                              mm.replaced.reshape(len(mm.species), *grid.shape), {
            "long_name": "regional emissions replaced by the local inventory",
            "units": "kg year-1", "grid_mapping": "crs", "coordinates": "lat lon"})},
        coords={"species": mm.species})
    write_grid_dataset(ds, build_dir / MERGE_FILE, static, attrs,
                       {"replaced_by_local": {"zlib": True, "complevel": 1}}, year=year,
                       annual=["replaced_by_local"])


@dataclass
class Merged:
    """A part after the merge: ``kept`` per cell, ``replaced`` [kg] inside the mask."""

    part: RegionalPart
    kept: np.ndarray
    replaced: float


def merge(parts: list[RegionalPart], replace_sectors: set[str], inside: np.ndarray
          ) -> list[Merged]:
    """Inside the mask (``inside``: each cell's share in it), the regional mass of the sectors
    in ``replace_sectors`` gives way to the local inventory; the rest is kept whole."""
    out = []
    for p in parts:
        if p.sector in replace_sectors:
            replaced_cells = p.cells * inside
            out.append(Merged(p, p.cells - replaced_cells, float(replaced_cells.sum())))
        else:
            out.append(Merged(p, p.cells.copy(), 0.0))
    return out


def double_counted(local: xr.DataArray, merged: list[Merged], inside: np.ndarray,
                   replace_sectors: set[str]) -> list[str]:
    """Cells where one sector is counted twice: local mass of the sector and regional mass
    of it inside the mask in the same cell. Empty when the merge is sound."""
    problems = []
    local_by = local.sum("species").stack(cell=("y", "x"))
    sectors = set(str(s) for s in local_by["sector"].values)
    for m in merged:
        s = m.part.sector
        if s not in sectors or s in replace_sectors:
            continue
        lm = local_by.sel(sector=s).to_numpy()
        regional_inside = m.part.cells * inside
        both = np.flatnonzero((lm > 0) & (regional_inside > 0))
        if both.size:
            problems.append(f"sector {s!r} ({m.part.species}, {m.part.build_sector}) is both "
                            f"local and regional in {both.size} cells inside the mask, e.g. "
                            f"cell {int(both[0])}: add it to regional.replace")
    return problems


def regional_factors(factors: xr.DataArray, names: list[str], timezone: str) -> xr.DataArray:
    """Temporal factors of the regional sectors: an annual one is its base sector's; a monthly
    one (``-MM``) its base sector's restricted to local month MM and renormalised to 1 (the
    month keeps its mass; weekday, hour and holidays shape it within)."""
    times = pd.DatetimeIndex(factors["time"].values).tz_localize("UTC").tz_convert(timezone)
    month = times.month.to_numpy()
    rows = []
    for name in names:
        base = factors.sel(sector=base_sector(name)).to_numpy()
        tail = name.rsplit("-", 1)
        if "@" in name and len(tail) == 2 and tail[1].isdigit():
            w = np.where(month == int(tail[1]), base, 0.0)
            total = w.sum()
            if total <= 0:
                raise ConfigError(f"regional sector {name!r}: no hour of the year in month "
                                  f"{tail[1]}")
            rows.append(w / total)
        else:
            rows.append(base)
    return xr.DataArray(np.array(rows).reshape(len(names), -1), dims=("sector", "time"),
                        coords={"sector": names, "time": factors["time"].values},
                        name=factors.name, attrs=factors.attrs)


#: nested species (PM10 ⊇ PM2.5 ⊇ BC + OC): each pseudo-source carries a component with every
#: species containing it, so that PM2_5_other and PMC of each source stay >= 0 (model formats)
NESTED = {"BC": ("BC", "PM2_5", "PM10"), "OC": ("OC", "PM2_5", "PM10"),
          "PM2_5": ("PM2_5", "PM10"), "PM10": ("PM10",)}
#: what a nested species' own component is: it minus these
INNER = {"PM2_5": ("BC", "OC"), "PM10": ("PM2_5",)}


def _components(fields: dict[str, tuple[np.ndarray, float]], sector: str
                ) -> dict[str, tuple[np.ndarray, float]]:
    """Per species its own component (cells, outside): the nested ones minus what they
    contain; an inventory whose PM2.5 < BC + OC (or PM10 < PM2.5) in a cell is refused."""
    out = {}
    for sp_, (cells, outside) in fields.items():
        inner = [fields[i] for i in INNER.get(sp_, ()) if i in fields]
        c = cells - sum((i[0] for i in inner), np.zeros_like(cells))
        o = outside - sum(i[1] for i in inner)
        tol = 1e-9 * max(float(cells.max(initial=0.0)), abs(outside), 1e-300)
        if c.min(initial=0.0) < -tol or o < -tol * cells.size:
            raise ConfigError(f"regional {sector}: {sp_} is smaller than "
                              f"{' + '.join(INNER[sp_])} in {int((c < -tol).sum())} cells; "
                              "the inventory's species are inconsistent")
        out[sp_] = (np.maximum(c, 0.0), max(o, 0.0))
    return out


def _pseudo_sources(merged: list[Merged], species: list[str], grid: Grid, registry
                    ) -> tuple[gpd.GeoDataFrame, pd.DataFrame, sp.csr_matrix, np.ndarray]:
    """Activity rows, emissions [kg/yr], allocation columns and outside shares of one
    pseudo-source per (regional sector, species component) holding mass on the grid or
    beyond it (:data:`NESTED`: the BC source carries its mass as BC, PM2_5 and PM10 too)."""
    by_sector: dict[str, dict[str, tuple[np.ndarray, float]]] = {}
    inventory: dict[str, str] = {}
    for m in merged:
        by_sector.setdefault(m.part.build_sector, {})[m.part.species] = (m.kept, m.part.outside)
        inventory[m.part.build_sector] = m.part.inventory
    rows, ems, cols, outside = [], [], [], []
    for sector, fields in by_sector.items():
        for sp_, (cells, out) in _components(fields, sector).items():
            e = float(cells.sum()) + out  # what stays regional: on the grid or beyond
            if e <= 0:
                continue
            sid = f"regional:{sector}:{sp_}"
            rows.append({"source_id": sid, "kind": "area", "sector": sector,
                         "subsector": inventory[sector], "fuel": "", "technology": "",
                         "control": "", "activity": e, "activity_unit": "kg",
                         "input_file": f"regional:{inventory[sector]}", "input_row": 0})
            em = dict.fromkeys(species, 0.0)
            for carried in NESTED.get(sp_, (sp_,)):
                if carried in em:
                    em[carried] = e
            ems.append(em)
            nz = np.flatnonzero(cells)
            cols.append((nz, cells[nz] / e))
            outside.append(out / e)
    table = pd.DataFrame(ems, columns=species, index=[r["source_id"] for r in rows],
                         dtype=float)
    if "CO2e" in species:
        table = registry.add_co2e(table.drop(columns="CO2e"))[species]
    activity = gpd.GeoDataFrame(rows, geometry=[grid.domain] * len(rows), crs=grid.crs)
    if cols:
        indptr = np.concatenate([[0], np.cumsum([c[0].size for c in cols])])
        matrix = sp.csc_matrix((np.concatenate([c[1] for c in cols]),
                                np.concatenate([c[0] for c in cols]), indptr),
                               shape=(grid.size, len(cols))).tocsr()
    else:
        matrix = sp.csr_matrix((grid.size, 0))
    return activity, table, matrix, np.array(outside, dtype=float)


def merge_ledger(merged: list[Merged], species: list[str], registry) -> pd.DataFrame:
    """Per (regional sector, species): regional read, outside, replaced and gridded [kg]."""
    recs = {}
    for m in merged:
        recs[(m.part.build_sector, m.part.species)] = (
            m.part.read, m.part.outside, m.replaced, float(m.kept.sum()))
    frame = pd.DataFrame([(s, sp_, *v) for (s, sp_), v in recs.items()],
                         columns=["sector", "species", *REGIONAL_COLUMNS])
    if "CO2e" in species:
        parts = []
        for col in REGIONAL_COLUMNS:
            wide = frame.pivot_table(index="sector", columns="species", values=col,
                                     aggfunc="sum").reindex(columns=[s for s in species
                                                                     if s != "CO2e"])
            wide = registry.add_co2e(wide.fillna(0.0))
            parts.append(wide["CO2e"].rename(col))
        co2e = pd.concat(parts, axis=1).reset_index().assign(species="CO2e")
        frame = pd.concat([frame, co2e[frame.columns]], ignore_index=True)
    return frame.set_index(["sector", "species"])


def check_merge_ledger(table: pd.DataFrame, rtol: float = RTOL) -> None:
    """``regional_read = regional_gridded + regional_outside + replaced_by_local`` and
    ``regional_gridded = gridded_kg`` in every regional row, to ``rtol``."""
    t = table[table[REGIONAL_COLUMNS].abs().sum(axis=1) > 0]
    lhs = t["regional_read"].to_numpy()
    rhs = (t["regional_gridded"] + t["regional_outside"] + t["replaced_by_local"]).to_numpy()
    grid_ = t["gridded_kg"].to_numpy()
    scale = np.maximum(np.abs(lhs), 1e-300)
    bad = (np.abs(lhs - rhs) > rtol * scale) | (np.abs(grid_ - t["regional_gridded"].to_numpy())
                                                > rtol * scale)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise MassBalanceError(f"regional merge ledger does not balance at {t.index[i]}: read "
                               f"{lhs[i]:.9g} kg, gridded + outside + replaced {rhs[i]:.9g} kg, "
                               f"annual grid {grid_[i]:.9g} kg")


def _mask_polygons(rcfg: RegionalConfig, boundaries: Path | None) -> gpd.GeoDataFrame | None:
    path = rcfg.mask or boundaries
    if path is None:
        return None
    regions = read_regions(path)
    if regions is None:
        raise ConfigError(f"regional.mask: {path} does not exist")
    return regions


def _replace_set(rcfg: RegionalConfig, local_sectors: set[str], known: set[str]) -> set[str]:
    if rcfg.replace == "auto":
        return set(local_sectors)
    unknown = sorted(set(rcfg.replace) - known)
    if unknown:
        raise ConfigError(f"regional.replace names unknown sectors {unknown}")
    return set(rcfg.replace)


def add_regional(state: BuildState, runner: Runner) -> None:
    """Merge the config's regional background into a prepared state: pseudo-sources joined to
    ``activity``, ``emissions`` and ``alloc``; ``annual``, ``factors`` and ``ledger`` rebuilt
    with them and checked. Nothing happens without ``regional:`` in the config."""
    s, cfg = state, state.cfg
    rcfg = cfg.regional
    if rcfg is None:
        return
    grid = s.tables.grid
    cache = Path(cfg.cache_dir) / "regrid" if cfg.cache_dir else None
    reg = runner.run("regional-read", read_regional, rcfg, grid, cfg.year, cache)
    known = set(s.tables.sectors["sector"])
    unknown = sorted({p.sector for p in reg.parts} - known)
    if unknown:
        raise ConfigError(f"{rcfg.sector_mapping}: maps onto unknown sectors {unknown}")
    local_kg = s.annual.sum(dim=("species", "y", "x")).to_pandas()
    local_sectors = {str(k) for k, v in local_kg.items() if v > 0}
    replace_sectors = _replace_set(rcfg, local_sectors, known)
    mask = _mask_polygons(rcfg, cfg.boundaries)
    inside = mask_fraction(grid, mask)
    merged = merge(reg.parts, replace_sectors, inside)
    problems = double_counted(s.annual, merged, inside, replace_sectors)
    if problems:
        raise ConfigError("regional merge counts sectors twice:\n  " + "\n  ".join(problems))
    kept_sectors = sorted({p.sector for p in reg.parts} - replace_sectors)
    reg.log.append(f"regional merge: inside the mask ({inside.sum():.1f} cells) the local "
                   f"inventory replaces {sorted(replace_sectors & {p.sector for p in reg.parts})}"
                   f"; regional kept everywhere for {kept_sectors}")
    _border_findings(s, mask, replace_sectors)
    unverified = unverified_finding(reg.unverified)
    if unverified is not None:
        s.findings.append(unverified)
    species = list(s.emissions.table.columns)
    act, table, matrix, outside = _pseudo_sources(merged, species, grid, s.tables.registry)
    names = sorted({m.part.build_sector for m in merged})
    rows = [{**s.tables.sectors.set_index("sector").loc[base_sector(n)].to_dict(), "sector": n}
            for n in names]
    s.tables = replace(s.tables, sectors=pd.concat([s.tables.sectors, pd.DataFrame(rows)],
                                                   ignore_index=True))
    s.activity = pd.concat([s.activity, act.to_crs(s.activity.crs)], ignore_index=True)
    s.emissions = EmissionsResult(table=pd.concat([s.emissions.table, table]),
                                  provenance=s.emissions.provenance)
    s.alloc = Allocation(matrix=sp.hstack([s.alloc.matrix, matrix], format="csr"),
                         source_ids=s.activity["source_id"].to_numpy(),
                         outside_fraction=np.concatenate([s.alloc.outside_fraction, outside]),
                         fallback=s.alloc.fallback)
    s.factors = xr.concat([s.factors, regional_factors(s.factors, names,
                                                       cfg.temporal.timezone)], dim="sector")
    mled = merge_ledger(merged, species, s.tables.registry)
    replaced = mled["replaced_by_local"].unstack("species").reindex(columns=species)
    rejected = replaced.fillna(0.0) if s.rejected_kg is None else \
        pd.concat([s.rejected_kg[species], replaced.fillna(0.0)])
    # the local sectors' grid is unchanged: only the regional sectors are added to it
    s.annual = xr.concat([s.annual, annual_grid(matrix, table, act["sector"].to_numpy(), grid,
                                                species, names)], dim="sector")
    s.ledger = compute_ledger(s.emissions, s.activity, s.alloc, s.annual, rejected)
    for col in REGIONAL_COLUMNS:
        s.ledger.table[col] = mled[col].reindex(s.ledger.table.index).fillna(0.0)
    check_balance(s.ledger, written=False)
    check_merge_ledger(s.ledger.table)
    s.metas = [*s.metas, *reg.metas]
    s.merge_map = merge_map(merged, inside, [sp_ for sp_ in species if sp_ != "CO2e"])
    s.cache["regional"] = {"regrid": ",".join(sorted(set(reg.cache.kinds.values()))) or "none"}
    s.cache_files = sorted({*s.cache_files, *(f"regrid/{f}" for f in reg.cache.files)})
    for line in reg.log:
        print(line)


def local_outside_share(activity: gpd.GeoDataFrame, mask: gpd.GeoDataFrame | None
                        ) -> np.ndarray:
    """Share of each local source beyond the mask [1]: a point outside it, the length of a line
    or the area of a polygon outside it."""
    if mask is None or len(activity) == 0:
        return np.zeros(len(activity))
    area = shapely.union_all(mask.to_crs(activity.crs).geometry.to_numpy())
    shapely.prepare(area)
    geoms = activity.geometry.to_numpy()
    kind = shapely.get_dimensions(geoms)
    out = np.zeros(len(geoms))
    pts, lines, polys = kind == 0, kind == 1, kind == 2
    out[pts] = ~shapely.contains(area, geoms[pts])
    for sel, size in ((lines, shapely.length), (polys, shapely.area)):
        if sel.any():
            whole = size(geoms[sel])
            inside = size(shapely.intersection(geoms[sel], area))
            out[sel] = np.clip(1.0 - np.divide(inside, whole, out=np.ones_like(whole),
                                               where=whole > 0), 0.0, 1.0)
    return out


def _border_findings(state: BuildState, mask: gpd.GeoDataFrame | None,
                     replace_sectors: set[str]) -> None:
    """A warning per replaced sector with local mass beyond the mask, where the regional mass
    of that sector is kept: there both count (local sources beyond the city boundary, e.g.
    ship lanes out at sea). Widen the mask to cover every local source to remove it."""
    share = local_outside_share(state.activity, mask)
    if not share.any():
        return
    em = state.emissions.table.drop(columns="CO2e", errors="ignore").sum(axis=1).to_numpy()
    sectors = state.activity["sector"].to_numpy()
    for sector in sorted(replace_sectors & set(sectors)):
        rows = sectors == sector
        total = float(em[rows].sum())
        out = float((em[rows] * share[rows]).sum())
        if total > 0 and out > 1e-9 * total:
            state.findings.append(Finding(
                check="regional_border", severity="warning", sector=sector, pair="all",
                value=out / total, unit="1", expected="0",
                message=f"{out / total:.2%} of local {sector} mass lies beyond the regional "
                "mask, where regional {sector} mass is kept too: it is counted twice there; "
                "widen regional.mask to cover every local source".replace("{sector}", sector)))
