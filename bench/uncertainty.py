"""Benchmark: Monte Carlo uncertainty of the full Shanghai demo vs one build's annual steps.

In one process, on the demo configuration with an empty cache directory (so nothing is reused):

- ``annual``: one build's read-to-annual-grid steps (tables, read + emissions, allocation, annual
  grid, temporal factors, ledger: :func:`pipeline.build.prepare`), the baseline;
- ``members``: the uncertainty model of that build and ``--members`` Monte Carlo members (every
  species, annual, per-cell 2.5/97.5 % over the grid, sector totals, same-source ratios with
  and without the shared activity), :func:`pipeline.uncertainty.run_monte_carlo`.

Each run in a fresh output directory (a cold cache); medians of ``--repeat`` runs. Target
(issue 18): 1000 members in ≤ 2 × the annual steps, peak RSS ≤ 2 GB. Ends with::

    RESULT members=1000 seconds=… ratio_to_annual=… peak_rss_mb=…
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=20240101)
    ap.add_argument("--repeat", type=int, default=3, help="runs of both steps (medians)")
    args = ap.parse_args()
    from pipeline.build import prepare
    from pipeline.config import load_config
    from pipeline.uncertainty import model_of_state, run_monte_carlo

    annual, members, models = [], [], []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="tongyuan-unc-") as tmp:  # a cold cache
            cfg = load_config(REPO / "config" / "shanghai.yaml", {"output.dir": tmp})
            t0 = time.perf_counter()
            state = prepare(cfg)
            annual.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            model = model_of_state(state)
            models.append(time.perf_counter() - t0)
            result = run_monte_carlo(model, state.alloc.matrix,
                                     state.activity["sector"].to_numpy(), args.members,
                                     args.seed)
            members.append(time.perf_counter() - t0)
        print(f"run {i + 1}: annual steps {annual[-1]:.2f} s; model {models[-1]:.2f} s; "
              f"model + {args.members} members {members[-1]:.2f} s", flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    a, m = statistics.median(annual), statistics.median(members)
    city = result.stats[result.stats["sector"] == "city"].set_index("species")
    print(f"medians of {args.repeat}: annual steps {a:.2f} s; model + {args.members} members "
          f"{m:.2f} s ({len(model.species)} species, {state.alloc.matrix.shape[0]} cells, "
          f"{model.n_sources} sources); ratio {m / a:.2f}")
    for sp in ("CO2", "NOx", "SO2", "PM2_5"):
        r = city.loc[sp]
        print(f"  city {sp}: MC {r.mc_lower_pct:+.1f}/{r.mc_upper_pct:+.1f} %, Approach 1 "
              f"±{r.approach1_u95_pct:.1f} %")
    print(f"RESULT members={args.members} seconds={m:.1f} "
          f"ratio_to_annual={m / a:.2f} peak_rss_mb={rss:.0f}")

if __name__ == "__main__":
    main()
