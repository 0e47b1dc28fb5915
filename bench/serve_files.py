"""Load test of the download service (``tongyuan serve-files``) on loopback.

Builds the fixture world for two days (or serves ``--out DIR``), starts the service in its own
process, and sends ``--requests`` requests (default 10 000) from ``--concurrency`` connections
(default 16) with httpx: 40 % JSON build list, 20 % one build's file list, 30 % a 64 KiB
Range read of an hourly file at a random offset, 10 % the catalogue page. Every answer is
checked (status, and the Range bytes against the file). Then the subset phase:
``--subsets`` (200) ``/api/subset`` requests from ``--subset-concurrency`` (16) connections,
varied in species, hours and box; a 503 is waited out as its ``Retry-After`` says (bounded),
every 200 must be a NetCDF holding the species asked for, and the server must still run at the
end (0 crashes). The resident memory of the server and its subset workers is sampled through
the phase. Prints the latency distributions and ends with ``RESULT requests=… errors=… p50_ms=…
p99_ms=… rps=… subsets=… subset_errors=… crashes=… subset_p99_ms=… rss_peak_mb=…``.

    .venv/bin/python bench/serve_files.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from tree_memory import tree_rss_mb  # bench/ is sys.path[0]

REPO = Path(__file__).resolve().parent.parent


def fixture_builds(root: Path) -> Path:
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("PREFECT_HOME", str(root / "prefect"))
    from pipeline.flows import build_inventory
    from tests.world import write_world

    cfg = write_world(root)
    build_inventory(str(cfg), out_dir=str(root / "out"), period=("2024-03-01", "2024-03-02"))
    return root / "out"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SUBSET_SPECIES = ["CO2", "NOx,SO2", "CO2,CH4,PM2_5", "CO2,NOx,SO2,CO"]
SUBSET_WINDOWS = [("2024-03-01T00", "2024-03-02T23"), ("2024-03-01T20", "2024-03-02T03"),
                  ("2024-03-02T05", "2024-03-02T05")]


async def run_subsets(url: str, n: int, concurrency: int, seed: int, pid: int) -> dict:
    import netCDF4

    rng = random.Random(seed)
    build = httpx.get(f"{url}/api/builds", timeout=30).json()["builds"][0]["build"]
    jobs = []
    for _ in range(n):
        species, (start, end) = rng.choice(SUBSET_SPECIES), rng.choice(SUBSET_WINDOWS)
        params = {"build": build, "species": species, "start": start, "end": end}
        if rng.random() < 0.5:
            params["bbox"] = "120.9,30.7,120.94,30.73"
        jobs.append(params)
    latencies: list[float] = []
    errors = refused = 0
    rss = [tree_rss_mb(pid)]
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            rss.append(tree_rss_mb(pid))
            await asyncio.sleep(0.1)

    async with httpx.AsyncClient(base_url=url, timeout=300,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        queue: asyncio.Queue = asyncio.Queue()
        for params in jobs:
            queue.put_nowait(params)

        async def worker() -> None:
            nonlocal errors, refused
            while not queue.empty():
                params = queue.get_nowait()
                t0 = time.perf_counter()
                ok = False
                try:
                    for _ in range(60):  # bounded: 503 + Retry-After is waited out
                        resp = await client.get("/api/subset", params=params)
                        if resp.status_code != 503:
                            break
                        refused += 1
                        await asyncio.sleep(float(resp.headers.get("retry-after", "1")))
                    if resp.status_code == 200:
                        with netCDF4.Dataset("subset.nc", memory=resp.content) as ds:
                            ok = set(params["species"].split(",")) <= set(ds.variables)
                except (httpx.HTTPError, OSError):
                    ok = False
                latencies.append((time.perf_counter() - t0) * 1000)
                errors += 0 if ok else 1

        sampler = asyncio.create_task(sample())
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
        done.set()
        await sampler
    q = statistics.quantiles(latencies, n=100)
    return {"subsets": n, "subset_errors": errors, "refused_503": refused, "p50_ms": q[49],
            "p99_ms": q[98], "max_ms": max(latencies), "wall_s": wall,
            "rss_start_mb": rss[0], "rss_peak_mb": max(rss), "rss_end_mb": tree_rss_mb(pid)}


async def run(url: str, out: Path, n: int, concurrency: int, seed: int) -> dict:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=url, timeout=30,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        builds = (await client.get("/api/builds")).json()["builds"]
        build = builds[0]["build"]
        files = [f for f in (await client.get(f"/api/builds/{build}")).json()["files"]
                 if f["path"].startswith("hourly/")]
        blobs = {f["path"]: (out / build / f["path"]).read_bytes() for f in files}
        latencies: list[float] = []
        errors = 0
        queue: asyncio.Queue = asyncio.Queue()
        for _ in range(n):
            queue.put_nowait(rng.random())

        async def worker() -> None:
            nonlocal errors
            while not queue.empty():
                r = queue.get_nowait()
                t0 = time.perf_counter()
                try:
                    if r < 0.4:
                        resp = await client.get("/api/builds")
                        ok = resp.status_code == 200 and resp.json()["builds"]
                    elif r < 0.6:
                        resp = await client.get(f"/api/builds/{build}")
                        ok = resp.status_code == 200
                    elif r < 0.9:
                        f = files[int(r * 1000) % len(files)]["path"]
                        size = len(blobs[f])
                        start = int((r * 7919) % 1 * max(size - 65536, 1))
                        end = min(start + 65535, size - 1)
                        resp = await client.get(f"/files/{build}/{f}",
                                                headers={"Range": f"bytes={start}-{end}"})
                        ok = resp.status_code == 206 and resp.content == blobs[f][start:end + 1]
                    else:
                        resp = await client.get("/")
                        ok = resp.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append((time.perf_counter() - t0) * 1000)
                errors += 0 if ok else 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=100)
    return {"requests": n, "errors": errors, "p50_ms": q[49], "p90_ms": q[89], "p99_ms": q[98],
            "max_ms": max(latencies), "rps": n / wall, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="serve these builds (default: a fixture build)")
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--subsets", type=int, default=200, help="subset requests (default 200)")
    ap.add_argument("--subset-concurrency", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tongyuan-serve-bench-") as tmp:
        out = args.out or fixture_builds(Path(tmp))
        port = free_port()
        env = dict(os.environ, PREFECT_HOME=str(Path(tmp) / "prefect"))
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve-files", "--out",
                                 str(out), "--port", str(port)], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/api/builds", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            else:
                raise SystemExit("the service did not start: " + proc.stderr.read().decode())
            r = asyncio.run(run(url, out, args.requests, args.concurrency, args.seed))
            s = asyncio.run(run_subsets(url, args.subsets, args.subset_concurrency, args.seed,
                                        proc.pid))
            alive = proc.poll() is None
            try:
                alive = alive and httpx.get(f"{url}/api/builds", timeout=10).status_code == 200
                status = httpx.get(f"{url}/api/status", timeout=10).json()
            except httpx.HTTPError:
                alive, status = False, {}
            crashes = (0 if alive else 1) + status.get("subsets", {}).get("worker_crashes", 0)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"{r['requests']:,} requests from {args.concurrency} connections in {r['wall_s']:.1f} s "
          f"({r['rps']:.0f}/s); latency p50 {r['p50_ms']:.1f} ms, p90 {r['p90_ms']:.1f} ms, "
          f"p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms; errors {r['errors']}")
    print(f"{s['subsets']} subsets from {args.subset_concurrency} connections in "
          f"{s['wall_s']:.1f} s; latency p50 {s['p50_ms']:.0f} ms, p99 {s['p99_ms']:.0f} ms, max "
          f"{s['max_ms']:.0f} ms; 503 + Retry-After waited out {s['refused_503']} times; errors "
          f"{s['subset_errors']}; crashes {crashes} (server {'up' if alive else 'DOWN'}); RSS of "
          f"server + workers {s['rss_start_mb']:.0f} MB at start, peak {s['rss_peak_mb']:.0f} MB, "
          f"{s['rss_end_mb']:.0f} MB at the end")
    print(f"RESULT requests={r['requests']} errors={r['errors']} p50_ms={r['p50_ms']:.1f} "
          f"p99_ms={r['p99_ms']:.1f} rps={r['rps']:.0f} subsets={s['subsets']} "
          f"subset_errors={s['subset_errors']} crashes={crashes} "
          f"subset_p99_ms={s['p99_ms']:.0f} rss_peak_mb={s['rss_peak_mb']:.0f}")
    if r["errors"] or s["subset_errors"] or crashes:
        sys.exit(1)


if __name__ == "__main__":
    main()
