"""Benchmark: what the caches save on the Shanghai demo (issue 5, "incremental").

On a copy of the demo (config and data, so the repository is never touched), in one process
with one Prefect server, for a period (default January, 31 days; ``--full`` for the year):

- ``cold``: the first build into an empty output directory (the baseline);
- ``unchanged``: the same build again: every input step and every day come from the cache;
- ``nightly``: the nightly flow with nothing changed: compares fingerprints, publishes nothing;
- ``one_input``: one stack's activity changed (×1.1, ×1.2, …): the stacks are re-read and their
  emissions recomputed; their matrix, the other inputs and any day whose content did not change
  come from the cache.

Each warm case runs ``--repeat`` times (medians). Ends with::

    RESULT cold_s=… unchanged_s=… nightly_s=… one_input_s=… unchanged_ratio=… one_input_ratio=…
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))



def scale_first_activity(stacks: Path, original: str, factor: float) -> None:
    """Write ``original`` (a stacks CSV) to ``stacks`` with its first row's ``activity`` × factor.

    Parsed with :mod:`csv`: names such as ``"… unit 1 (873 MW, synthetic unit)"`` are quoted
    and hold commas.
    """
    rows = list(csv.reader(io.StringIO(original)))
    at = rows[0].index("activity")
    rows[1][at] = f"{float(rows[1][at]) * factor:.1f}"
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    stacks.write_text(out.getvalue(), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--full", action="store_true", help="the whole year instead of January")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tongyuan-incr-") as tmp:
        root = Path(tmp)
        shutil.copytree(REPO / "config", root / "config")
        shutil.copytree(REPO / "data" / "shanghai-demo", root / "data" / "shanghai-demo")
        cfg = root / "config" / "shanghai.yaml"
        if not args.full:  # in the config, so that the nightly flow builds January too
            text = cfg.read_text()
            assert "\noutput:\n" in text and "period:" not in text
            cfg.write_text(text.replace("\noutput:\n",
                                        "\noutput:\n  period: [2024-01-01, 2024-01-31]\n", 1))
        os.environ.setdefault("PREFECT_HOME", str(root / "prefect"))
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        from pipeline.flows import build_inventory, nightly_inventory

        out = root / "out"
        stacks = root / "data" / "shanghai-demo" / "points" / "stacks.csv"
        original = stacks.read_text()

        def build() -> tuple[float, dict]:
            t0 = time.perf_counter()
            s = build_inventory(str(cfg), out_dir=str(out))
            return time.perf_counter() - t0, s

        def describe(s: dict) -> str:
            steps = [(n, st, v) for n, d in s.cache.items() for st, v in d.items()]
            redone = [f"{n} {st}" for n, st, v in steps if v != "hit"]
            m = json.loads((Path(s.build_dir) / "manifest.json").read_text())
            return (f"{len(steps) - len(redone)}/{len(steps)} input steps cached "
                    f"(computed: {', '.join(redone) or 'none'}); days reused "
                    f"{len(m['reused_days'])}/{len(m['day_content'])}")

        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            build_inventory(str(cfg), out_dir=str(root / "warmup"), period=("2024-01-01",
                                                                            "2024-01-01"))
            cold, s = build()
            print(f"cold:       {cold:6.1f} s  {describe(s)}")
            times: dict[str, list[float]] = {"unchanged": [], "nightly": [], "one_input": []}
            for i in range(args.repeat):
                t, s = build()
                times["unchanged"].append(t)
                print(f"unchanged:  {t:6.1f} s  {describe(s)}")
            for i in range(args.repeat):
                t0 = time.perf_counter()
                r = nightly_inventory(str(cfg), out_dir=str(out))
                t = time.perf_counter() - t0
                times["nightly"].append(t)
                print(f"nightly:    {t:6.1f} s  published={r['published']}")
            for i in range(args.repeat):
                scale_first_activity(stacks, original, 1.1 + 0.1 * i)
                t, s = build()
                times["one_input"].append(t)
                print(f"one input:  {t:6.1f} s  {describe(s)}")
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"RESULT cold_s={cold:.1f} unchanged_s={med['unchanged']:.1f} "
              f"nightly_s={med['nightly']:.2f} one_input_s={med['one_input']:.1f} "
              f"unchanged_ratio={cold / med['unchanged']:.1f} "
              f"one_input_ratio={cold / med['one_input']:.1f}")


if __name__ == "__main__":
    main()
