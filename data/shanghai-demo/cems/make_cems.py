"""Writes the synthetic CEMS demo series P0001_2024-07.csv (run from the repository root:
.venv/bin/python data/shanghai-demo/cems/make_cems.py [OUT.csv]). SYNTHETIC, like the rest of the demo.

Stack P0001 (Waigaoqiao coal unit 1) reports hourly SO2 and NOx for July 2024 (UTC). The series
follows a daily load cycle around 1.1 × the inventory's mean hourly emission with 8 % noise
(seed 20240701), and has gaps as real CEMS records do: all of 2024-07-10 (analyser
calibration) and 2024-07-20 06:00–17:00 UTC (data-logger outage). Tongyuan fills them from the
sector profile scaled to the remaining annual total (pipeline/cems.py).
"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
from pipeline.config import load_config  # noqa: E402
from pipeline.steps import compute_input_emissions, load_tables, read_inputs  # noqa: E402

cfg = load_config(REPO / "config" / "shanghai.yaml")
tables = load_tables(cfg)
activity, _, _ = read_inputs(cfg, tables)
em = compute_input_emissions(activity, tables).table
j = int(np.flatnonzero(activity["source_id"].to_numpy() == "P0001")[0])
hours = pd.date_range("2024-07-01", "2024-07-31 23:00", freq="h")
gap = (hours.date == pd.Timestamp("2024-07-10").date()) | (
    (hours.date == pd.Timestamp("2024-07-20").date()) & (hours.hour >= 6) & (hours.hour < 18))
rng = np.random.default_rng(20240701)
local_hour = (hours.hour + 8) % 24
load = 1.0 + 0.15 * np.sin((local_hour - 9) / 24 * 2 * np.pi)
rows = []
for sp in ("SO2", "NOx"):
    mean = float(em[sp].iloc[j]) / 8784 * 1.1
    kg = mean * load * rng.normal(1.0, 0.08, hours.size)
    rows += [{"source_id": "P0001", "time_utc": f"{t:%Y-%m-%dT%H:%M}", "species": sp,
              "value": round(float(v), 3), "unit": "kg"}
             for t, v, g in zip(hours, kg, gap, strict=True) if not g]
out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("P0001_2024-07.csv")
pd.DataFrame(rows).to_csv(out, index=False)
print(f"{out}: {len(rows)} rows")
