"""Benchmark: one week of hourly CF files on a 100 m grid over the whole city (float32).

The Shanghai demo with its grid refined from 1 km to 100 m (1300 × 1380 = 1.79 M cells, the
same extent), written for 2024-07-01..07 with ``pipeline.run_build`` (no Prefect). Prints the
time per step and the peak RSS of this process and of each worker (``peak_rss_mb``: the sum of
those peaks, each at its own moment) and of all of them at once (``tree_peak_mb``,
:mod:`tree_memory`), and ends with::

    RESULT cells=… days=7 build_s=… write_s=… peak_rss_mb=… tree_peak_mb=…
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
from pathlib import Path

from tree_memory import TreeRss, parts_text  # bench/ is sys.path[0]

from pipeline import open_build, run_build
from pipeline.parallel import peak_rss_mb

REPO = Path(__file__).resolve().parent.parent


def fine_config(config: Path, target: Path, factor: int) -> Path:
    """A copy of ``config`` beside it (its relative paths still hold) with the cell size divided
    by ``factor`` and float32 files."""
    text = config.read_text(encoding="utf-8")
    for key in ("dx", "dy"):
        text = re.sub(rf"(\n  {key}: )(\d+)", lambda m: m.group(1) + str(int(m.group(2)) //
                                                                        factor), text)
    for key in ("nx", "ny"):
        text = re.sub(rf"(\n  {key}: )(\d+)", lambda m: m.group(1) + str(int(m.group(2)) *
                                                                        factor), text)
    text = text.replace("name: SH1KM", "name: SH100M").replace("dtype: float64",
                                                                "dtype: float32")
    path = config.parent / f".{target.name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO / "config" / "shanghai.yaml")
    ap.add_argument("--factor", type=int, default=10, help="1 km / factor cells (10: 100 m)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tongyuan-fine-"))
    config = fine_config(args.config, work, args.factor)
    try:
        with TreeRss() as tree:
            r = run_build(config, out=work / "out", period=("2024-07-01", "2024-07-07"),
                          scheduler="processes")
        workers = r.writes.peak_rss_mb
        parent = peak_rss_mb()
        peak = parent + sum(v for k, v in workers.items() if k != "this process")
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in r.timings.items())
        size = sum(p.stat().st_size for p in r.files) / 1e6
        grid = open_build(r.build_dir).grid
        print(f"\n{grid.nx} × {grid.ny} = {grid.size:,} cells, {len(r.files)} days, float32, "
              f"{size:,.0f} MB of day files; {r.seconds:.1f} s ({steps})")
        print(f"peak RSS: this process {parent:.0f} MB; day files on {r.writes.scheduler}, "
              f"workers {', '.join(f'{v:.0f}' for v in workers.values())} MB; the sum of "
              f"those peaks {peak:.0f} MB, all processes at once {tree.peak_mb:.0f} MB "
              f"({tree.peak_at:.0f} s into the build: {parts_text(tree.peak_parts)} MB)")
        print(f"RESULT cells={grid.size} days={len(r.files)} build_s={r.seconds:.1f} "
              f"write_s={r.timings['write']:.1f} peak_rss_mb={peak:.0f} "
              f"tree_peak_mb={tree.peak_mb:.0f}")
    finally:
        config.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    main()
