"""The per-source tables of a build: ``sources.csv``, ``notices.csv`` and ``inputs.csv``."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import geopandas as gpd
import pandas as pd

from grids.allocate import Allocation
from sources.readers import InputMeta

#: the columns of ``inputs.csv``, one row per file a build read (:class:`InputMeta`)
INPUTS_COLUMNS = ["path", "format", "kind", "sha256", "source_crs", "rows", "layer", "name"]


def _relative(paths: pd.Series | list[str], base: Path | None) -> list[str]:
    """Paths relative to ``base`` (the config's folder): published tables never carry the
    server's absolute paths."""
    return [os.path.relpath(p, base) if base is not None and p and os.path.isabs(p) else p
            for p in paths]


def write_details(build_dir: Path, activity: gpd.GeoDataFrame, alloc: Allocation,
                  rejected: gpd.GeoDataFrame, metas: list[InputMeta],
                  base: Path | None = None) -> None:
    """Per-source details behind the ledger.

    ``sources.csv``: every source kept for gridding, its keys, input location, a representative
    point in the grid CRS and the share beyond the grid. ``notices.csv``: area sources spread by
    area (zero proxy) and rejected sources, with the reason. ``inputs.csv``: the input files.
    File paths are written relative to ``base`` (the configuration's folder).
    """
    point = activity.geometry.representative_point()
    table = pd.DataFrame({
        **{c: activity[c].to_numpy() for c in ("source_id", "kind", "sector", "subsector", "fuel",
                                               "technology", "control", "activity",
                                               "activity_unit", "input_file", "input_row")},
        "x": point.x.to_numpy(), "y": point.y.to_numpy(),
        "outside_domain_fraction": alloc.outside_fraction})
    table["input_file"] = _relative(table["input_file"], base)
    table.to_csv(build_dir / "sources.csv", index=False, float_format="%.9g")
    rows = [{"source_id": s, "reason": "area proxy zero inside polygon: spread by area"}
            for s in alloc.fallback]
    rows += [{"source_id": s, "reason": r} for s, r in
             zip(rejected["source_id"], rejected.get("reject_reason", []), strict=False)]
    pd.DataFrame(rows, columns=["source_id", "reason"]).to_csv(build_dir / "notices.csv",
                                                               index=False)
    inputs = pd.DataFrame([asdict(m) for m in metas], columns=INPUTS_COLUMNS)
    inputs["path"] = _relative(inputs["path"], base)
    inputs.to_csv(build_dir / "inputs.csv", index=False)


#: memo items and the per-technology IPCC/MEE codes live next to ``sectors.csv``
MEMO_ITEMS = "memo_items.csv"
IPCC_KEYS = "ipcc_keys.csv"


def memo_totals(path: Path) -> pd.DataFrame:
    """Memo items (international aviation, bunker fuel): kg per item and species, computed from
    ``memo_items.csv`` (activity × factor, both per t); never part of the territorial totals."""
    from sources.units import Q_, parse_unit

    memo = pd.read_csv(path, dtype={"activity": float, "value": float})
    kg = [float((Q_(a, parse_unit(au)) * Q_(v, parse_unit(u))).to("kg").magnitude)
          for a, au, v, u in zip(memo["activity"], memo["activity_unit"], memo["value"],
                                 memo["unit"], strict=True)]
    return memo.assign(kg=kg)[["memo_item", "ipcc", "species", "kg"]]


def write_inventory_totals(build_dir: Path, emissions_table: pd.DataFrame,
                           activity: pd.DataFrame, sectors: pd.DataFrame,
                           config_dir: Path) -> None:
    """``totals_ipcc.csv`` and ``totals_mee.csv``: the build's kg/yr by IPCC category and by MEE
    first-level source class (long format: code, name, species, kg, memo).

    Codes come from ``sectors.csv`` (``ipcc``, ``mee_code``, ``mee_class``), overridden per
    (sector, technology) by ``config_dir/ipcc_keys.csv`` where it exists. Memo items from
    ``config_dir/memo_items.csv`` are appended to the IPCC table with ``memo=yes``; they are not
    sources of the build and never enter the territorial rows.
    """
    config_dir = Path(config_dir)
    sectors = sectors.assign(**{c: sectors[c] if c in sectors.columns else "unmapped"
                                for c in ("ipcc", "mee_code", "mee_class")})
    keys = activity[["source_id", "sector", "technology"]].drop_duplicates("source_id")
    keys = keys.merge(sectors[["sector", "ipcc", "mee_code", "mee_class"]], on="sector",
                      how="left")
    if (config_dir / IPCC_KEYS).exists():
        over = pd.read_csv(config_dir / IPCC_KEYS, dtype=str)
        keys = keys.merge(over[["sector", "technology", "ipcc", "mee_code"]],
                          on=["sector", "technology"], how="left", suffixes=("", "_key"))
        for col in ("ipcc", "mee_code"):
            keys[col] = keys[f"{col}_key"].fillna(keys[col])
    keys = keys.set_index("source_id").reindex(emissions_table.index)
    long = emissions_table.rename_axis("source_id").reset_index().melt(
        id_vars="source_id", var_name="species", value_name="kg")
    long = long.join(keys, on="source_id")
    ipcc = long.groupby(["ipcc", "species"], sort=True)["kg"].sum().reset_index()
    ipcc["memo"] = "no"
    if (config_dir / MEMO_ITEMS).exists():
        memo = memo_totals(config_dir / MEMO_ITEMS)
        memo = memo.assign(ipcc=memo["memo_item"] + " " + memo["ipcc"], memo="yes")
        ipcc = pd.concat([ipcc, memo[["ipcc", "species", "kg", "memo"]]], ignore_index=True)
    ipcc.to_csv(build_dir / "totals_ipcc.csv", index=False, float_format="%.9g")
    mee = long.groupby(["mee_code", "species"], sort=True)["kg"].sum().reset_index()
    names = sectors.drop_duplicates("mee_code").set_index("mee_code")["mee_class"]
    mee.insert(1, "mee_class", mee["mee_code"].map(names).str.split("-").str[0])
    mee.to_csv(build_dir / "totals_mee.csv", index=False, float_format="%.9g")
