"""Load test of the download service (``tongyuan serve-files``) on loopback.

Builds the fixture world for two days (or serves ``--out DIR``), starts the service in its own
process, and sends ``--requests`` requests (default 10 000) from ``--concurrency`` connections
(default 16) with httpx: 40 % JSON build list, 20 % one build's file list, 30 % a 64 KiB
Range read of an hourly file at a random offset, 10 % the catalogue page. Every answer is
checked (status, and the Range bytes against the file). Prints the latency distribution and
ends with ``RESULT requests=… errors=… p50_ms=… p99_ms=… rps=…``.

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
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"{r['requests']:,} requests from {args.concurrency} connections in {r['wall_s']:.1f} s "
          f"({r['rps']:.0f}/s); latency p50 {r['p50_ms']:.1f} ms, p90 {r['p90_ms']:.1f} ms, "
          f"p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms; errors {r['errors']}")
    print(f"RESULT requests={r['requests']} errors={r['errors']} p50_ms={r['p50_ms']:.1f} "
          f"p99_ms={r['p99_ms']:.1f} rps={r['rps']:.0f}")
    if r["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
