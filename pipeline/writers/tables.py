"""The per-source tables of a build: ``sources.csv``, ``notices.csv`` and ``inputs.csv``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import geopandas as gpd
import pandas as pd

from grids.allocate import Allocation
from sources.readers import InputMeta

#: the columns of ``inputs.csv``, one row per file a build read (:class:`InputMeta`)
INPUTS_COLUMNS = ["path", "format", "kind", "sha256", "source_crs", "rows", "layer", "name"]


def write_details(build_dir: Path, activity: gpd.GeoDataFrame, alloc: Allocation,
                  rejected: gpd.GeoDataFrame, metas: list[InputMeta]) -> None:
    """Per-source details behind the ledger.

    ``sources.csv``: every source kept for gridding, its keys, input location, a representative
    point in the grid CRS and the share beyond the grid. ``notices.csv``: area sources spread by
    area (zero proxy) and rejected sources, with the reason. ``inputs.csv``: the input files.
    """
    point = activity.geometry.representative_point()
    table = pd.DataFrame({
        **{c: activity[c].to_numpy() for c in ("source_id", "kind", "sector", "subsector", "fuel",
                                               "technology", "control", "activity",
                                               "activity_unit", "input_file", "input_row")},
        "x": point.x.to_numpy(), "y": point.y.to_numpy(),
        "outside_domain_fraction": alloc.outside_fraction})
    table.to_csv(build_dir / "sources.csv", index=False, float_format="%.9g")
    rows = [{"source_id": s, "reason": "area proxy zero inside polygon: spread by area"}
            for s in alloc.fallback]
    rows += [{"source_id": s, "reason": r} for s, r in
             zip(rejected["source_id"], rejected.get("reject_reason", []), strict=False)]
    pd.DataFrame(rows, columns=["source_id", "reason"]).to_csv(build_dir / "notices.csv",
                                                               index=False)
    pd.DataFrame([asdict(m) for m in metas], columns=INPUTS_COLUMNS).to_csv(
        build_dir / "inputs.csv", index=False)
