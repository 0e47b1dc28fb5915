"""A download service for modellers: the published builds of an output directory over HTTP.

``tongyuan serve-files --out DIR --host H --port P`` runs this ASGI app (Starlette) on uvicorn:

* ``/`` — the catalogue page (HTML; the table is filled from the JSON API by a small script);
* ``/api/builds`` — published builds: id, pointers (``latest``, ``latest-period``, …), year,
  period, config hash, number of daily files and bytes;
* ``/api/builds/{build}`` — its files with size, sha256 and download URL, and its days;
* ``/files/{build}/{path}`` — a file, with HTTP Range support (``206 Partial Content``);
* ``/api/subset?build=&species=&start=&end=&bbox=`` — a NetCDF made with xarray from the
  build's hourly files: species (comma-separated), a UTC time window (inclusive, whole hours)
  and a lon/lat box (``lon_min,lat_min,lon_max,lat_max``; cells whose centre lies inside).

Only published files are served: a build is a directory of ``DIR`` holding a manifest
(staging directories start with a dot and have none until they are published), and a file is
served only if the manifest lists it and its real path lies inside the build (a symlink that
leads out is refused). Unknown builds, paths and parameters get 4xx answers, never a traceback.
"""

from __future__ import annotations

import html
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.routing import Route

from pipeline.publish import BUILD_ID, MANIFEST, Manifest, published_builds, read_manifest
from pipeline.publish import pointers as build_pointers
from pipeline.writers import FORMATS

FOLDER_FORMAT = {f.folder: f.name for f in FORMATS.values()}
#: most values (hours × cells × species) one subset request may carry (400 MB of float64)
MAX_SUBSET_VALUES = 50_000_000
#: longest time window of one subset request, in hours
MAX_SUBSET_HOURS = 31 * 24


class Catalogue:
    """The published builds under ``out``, read from their manifests (cached by mtime)."""

    def __init__(self, out: str | Path):
        self.out = Path(out).resolve()
        self._manifests: dict[str, tuple[float, Manifest]] = {}

    def builds(self) -> list[str]:
        return published_builds(self.out)[::-1]  # newest first

    def pointers(self) -> dict[str, str]:
        return build_pointers(self.out)

    def manifest(self, build: str) -> Manifest:
        path = self.out / build / MANIFEST
        if not (BUILD_ID.match(build) and not (self.out / build).is_symlink()
                and path.is_file()):
            raise HTTPException(404, f"unknown build {build!r}")
        mtime = path.stat().st_mtime
        cached = self._manifests.get(build)
        if cached is None or cached[0] != mtime:
            cached = (mtime, read_manifest(self.out / build))
            self._manifests[build] = cached
        return cached[1]

    def summary(self, build: str, pointers: dict[str, str]) -> dict[str, Any]:
        m = self.manifest(build)
        files = m.files
        days = sorted(p for p in files if p.startswith("hourly/"))
        return {"build": build, "pointers": sorted(k for k, v in pointers.items() if v == build),
                "year": m.year, "period": list(m.period) if m.period else None,
                "config_hash": m.config_hash, "days": len(days),
                "first_day": days[0][7:15] if days else None,
                "last_day": days[-1][7:15] if days else None,
                "bytes": int(sum(f.bytes for f in files.values())),
                "formats": sorted({FOLDER_FORMAT[p.split("/")[0]] for p in files
                                   if p.split("/")[0] in FOLDER_FORMAT})}

    def file(self, build: str, rel: str) -> Path:
        """The published file ``rel`` of ``build``; 404 unless listed, 403 if it leads out."""
        files = self.manifest(build).files
        if rel not in files:
            raise HTTPException(404, f"{rel!r} is not a published file of build {build}")
        root = (self.out / build).resolve()
        path = (root / rel).resolve()
        if not path.is_relative_to(root):
            raise HTTPException(403, f"{rel!r} leads out of the build")
        if not path.is_file():
            raise HTTPException(404, f"{rel!r} is missing from build {build}")
        return path


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; }}
td, th {{ padding: .25rem .6rem; border-bottom: 1px solid #ddd; text-align: left; }}
th {{ background: #f4f4f4; }} .num {{ text-align: right; }}
code {{ background: #f4f4f4; padding: 0 .2rem; }}
</style></head><body>{body}</body></html>"""


CATALOGUE_SCRIPT = """
<script>
function fmtBytes(n) { const u = ["B", "KB", "MB", "GB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; } return n.toFixed(1) + " " + u[i]; }
fetch("api/builds").then(r => r.json()).then(data => {
  const tbody = document.querySelector("#builds tbody");
  tbody.innerHTML = "";
  for (const b of data.builds) {
    const tr = document.createElement("tr");
    tr.className = "build";
    const cells = [b.build, b.pointers.join(", "), b.year,
      b.first_day ? b.first_day + " – " + b.last_day : "", b.days, b.formats.join(", "),
      fmtBytes(b.bytes)];
    cells.forEach((c, i) => { const td = document.createElement("td");
      if (i === 0) { const a = document.createElement("a"); a.href = "builds/" + c;
        a.textContent = c; td.appendChild(a); } else { td.textContent = c; }
      if (i >= 4) td.className = "num"; tr.appendChild(td); });
    tbody.appendChild(tr);
  }
  document.querySelector("#count").textContent = data.builds.length + " published builds";
}).catch(e => { document.querySelector("#count").textContent = "could not load: " + e; });
</script>"""


def create_app(out: str | Path) -> Starlette:
    """The ASGI app serving the published builds under ``out``."""
    cat = Catalogue(out)

    async def index(request: Request) -> HTMLResponse:
        body = ("<h1>Tongyuan inventory builds</h1><p id='count'>loading…</p>"
                "<table id='builds'><thead><tr><th>build</th><th>pointers</th><th>year</th>"
                "<th>UTC days</th><th class='num'>files</th><th>formats</th>"
                "<th class='num'>size</th></tr></thead><tbody></tbody></table>"
                "<p>JSON: <code>api/builds</code>, <code>api/builds/&lt;build&gt;</code>; "
                "subsets: <code>api/subset?build=…&amp;species=NOx,CO2&amp;start=2024-07-01T00"
                "&amp;end=2024-07-01T23&amp;bbox=121.2,31.0,121.8,31.5</code></p>"
                + CATALOGUE_SCRIPT)
        return HTMLResponse(_page("Tongyuan builds", body))

    async def builds(request: Request) -> JSONResponse:
        ptr = cat.pointers()
        return JSONResponse({"builds": [cat.summary(b, ptr) for b in cat.builds()],
                             "pointers": ptr})

    async def build(request: Request) -> JSONResponse:
        b = request.path_params["build"]
        m = cat.manifest(b)
        files = [{"path": p, "bytes": f.bytes, "sha256": f.sha256,
                  "url": f"/files/{b}/{p}"} for p, f in sorted(m.files.items())]
        return JSONResponse({**cat.summary(b, cat.pointers()), "files": files,
                             "inputs": m.inputs})

    async def build_page(request: Request) -> HTMLResponse:
        b = request.path_params["build"]
        m = cat.manifest(b)
        rows = "".join(
            f"<tr><td><a href='../files/{html.escape(b)}/{html.escape(p)}'>{html.escape(p)}"
            f"</a></td><td class='num'>{f.bytes:,}</td><td><code>"
            f"{html.escape(f.sha256[:16])}…</code></td></tr>"
            for p, f in sorted(m.files.items()))
        body = (f"<h1>Build {html.escape(b)}</h1><p><a href='../'>all builds</a></p>"
                "<table><thead><tr><th>file</th><th class='num'>bytes</th><th>sha256</th>"
                f"</tr></thead><tbody>{rows}</tbody></table>")
        return HTMLResponse(_page(f"Tongyuan build {b}", body))

    async def files(request: Request) -> FileResponse:
        path = cat.file(request.path_params["build"], request.path_params["path"])
        return FileResponse(path, filename=path.name)

    def subset(request: Request) -> FileResponse:  # sync: Starlette runs it in a thread
        q = request.query_params
        b = q.get("build") or cat.pointers().get("latest", "")
        m = cat.manifest(b)
        try:
            start = pd.Timestamp(q["start"]).floor("h")
            end = pd.Timestamp(q["end"]).floor("h")
            if pd.isna(start) or pd.isna(end) or start.tzinfo or end.tzinfo:
                raise ValueError("empty or with a time zone")
        except (KeyError, ValueError, TypeError) as exc:
            raise HTTPException(400, "start and end are needed as UTC hours without a time "
                                "zone, e.g. start=2024-07-01T00&end=2024-07-01T23") from exc
        if end < start or (end - start) / pd.Timedelta(hours=1) + 1 > MAX_SUBSET_HOURS:
            raise HTTPException(400, f"the time window must run forward and span at most "
                                f"{MAX_SUBSET_HOURS} hours")
        days = pd.date_range(start.floor("D"), end.floor("D"), freq="D")
        rels = [f"hourly/{d:%Y%m%d}.nc" for d in days]
        missing = [r for r in rels if r not in m.files]
        if missing:
            raise HTTPException(404, f"build {b} has no {missing[0]}")
        import xarray as xr
        paths = [cat.file(b, r) for r in rels]
        with xr.open_mfdataset(paths, combine="by_coords", data_vars="minimal",
                               coords="minimal", compat="override") as ds:
            species = [s for s in (q.get("species") or "").split(",") if s]
            emitted = [v for v in ds.data_vars if ds[v].dims == ("time", "y", "x")]
            unknown = [s for s in species if s not in emitted]
            if unknown or not species:
                raise HTTPException(400, f"species must be a comma-separated list of {emitted}"
                                    + (f"; unknown: {unknown}" if unknown else ""))
            sub = ds[species + ["cell_area", "crs"]].sel(time=slice(start, end))
            if q.get("bbox"):
                try:
                    x0, y0, x1, y1 = (float(v) for v in q["bbox"].split(","))
                except ValueError as exc:
                    raise HTTPException(400, "bbox is lon_min,lat_min,lon_max,lat_max") from exc
                inside = ((ds["lon"] >= x0) & (ds["lon"] <= x1) & (ds["lat"] >= y0)
                          & (ds["lat"] <= y1)).values
                if not inside.any():
                    raise HTTPException(400, "bbox holds no cell centre of the grid")
                rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
                sub = sub.isel(y=slice(rows[0], rows[-1] + 1), x=slice(cols[0], cols[-1] + 1))
            size = sub.sizes["time"] * sub.sizes["y"] * sub.sizes["x"] * len(species)
            if size > MAX_SUBSET_VALUES:
                raise HTTPException(413, f"the subset would hold {size:,} values (at most "
                                    f"{MAX_SUBSET_VALUES:,}): ask for fewer species, hours or a "
                                    "smaller bbox, or download the daily files")
            sub.attrs = {**ds.attrs, "tongyuan_subset": f"build {b}; species {species}; "
                         f"{start:%Y-%m-%dT%H}..{end:%Y-%m-%dT%H} UTC; bbox {q.get('bbox')}"}
            fd, tmp = tempfile.mkstemp(suffix=".nc", prefix="tongyuan-subset-")
            os.close(fd)
            try:
                sub.load().to_netcdf(tmp, engine="netcdf4")
            except BaseException:
                os.unlink(tmp)
                raise
        name = f"tongyuan_{b}_{start:%Y%m%d%H}-{end:%Y%m%d%H}.nc"
        return FileResponse(tmp, filename=name, media_type="application/x-netcdf",
                            background=BackgroundTask(os.unlink, tmp))

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail, "status": exc.status_code},
                            status_code=exc.status_code)

    return Starlette(routes=[
        Route("/", index), Route("/api/builds", builds), Route("/api/builds/{build}", build),
        Route("/builds/{build}", build_page), Route("/files/{build}/{path:path}", files),
        Route("/api/subset", subset)], exception_handlers={HTTPException: http_error})


def serve(out: str | Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the service on uvicorn until interrupted."""
    import uvicorn

    if not Path(out).is_dir():
        raise FileNotFoundError(f"{out}: output directory not found")
    uvicorn.run(create_app(out), host=host, port=port, log_level="info")
