"""Fault test: kill a build at random moments, again and again; ``latest`` must always point at
a complete, checksum-valid build, and the next run must resume and publish.

Builds the fixture world, then ``--kills`` times (default 20) starts
``tongyuan build --period 2024-03-01:2024-03-03`` in its own process group and SIGKILLs it after
a random delay (seeded) between 0.5 s and the duration of an undisturbed build, so that kills
land in start-up, reading, allocation, writing and publishing. After each kill it checks that
the pointer, if any, resolves to a build whose manifest lists files that all exist with their
sha256. Finally one build runs to the end and must publish (the stale staging directories are
swept, allocation comes from the cache). Ends with
``RESULT kills=… runs=… valid=… published_while_killing=… final_ok=…`` (runs that finished
before their kill time are not counted as kills; it goes on until ``--kills`` processes were
killed).

    .venv/bin/python bench/kill_resume.py --kills 20
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.publish import verify_build  # noqa: E402
from tests.world import write_world  # noqa: E402


def check_pointer(out: Path, pointer: str = "latest-period") -> tuple[bool, str]:
    link = out / pointer
    if not link.is_symlink():
        return True, "no pointer yet"
    build = link.resolve()
    problems = verify_build(build)
    return not problems, problems[0] if problems else f"{build.name}: every file verified"


def run_build(cfg: Path, out: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "build", "--config", str(cfg),
                             "--out", str(out), "--period", "2024-03-01:2024-03-03", "--force"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="tongyuan-kill-") as tmp:
        root = Path(tmp)
        cfg = write_world(root)
        out = root / "out"
        env = dict(os.environ, PREFECT_HOME=str(root / "prefect"))
        t0 = time.perf_counter()
        p = run_build(cfg, out, env)
        if p.wait(timeout=600) != 0:
            raise SystemExit("the undisturbed build failed")
        full = time.perf_counter() - t0
        print(f"undisturbed build: {full:.1f} s")
        valid, published, killed, k = 0, 0, 0, 0
        before = {q.name for q in out.iterdir()}
        while killed < args.kills and k < 3 * args.kills:  # runs that finish first don't count
            k += 1
            delay = rng.uniform(0.5, full)
            p = run_build(cfg, out, env)
            time.sleep(delay)
            state = "finished" if p.poll() is not None else "killed"
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                killed += 1
            p.wait()
            ok, what = check_pointer(out)
            valid += ok
            now = {q.name for q in out.iterdir()}
            new_builds = [n for n in now - before if n[:1].isdigit()]
            published += len(new_builds)
            before = now
            stale = sorted(n for n in now if n.startswith(".staging-"))
            print(f"run {k:2d} after {delay:5.1f} s ({state}): pointer "
                  f"{'OK' if ok else 'BROKEN'} ({what}); staging left: {len(stale)}")
        p = run_build(cfg, out, env)
        final_ok = p.wait(timeout=600) == 0 and check_pointer(out)[0]
        leftovers = [n for n in os.listdir(out) if n.startswith(".staging-")]
        final_ok = final_ok and not leftovers
        manifest = json.loads(((out / "latest-period") / "manifest.json").read_text())
        print(f"final build: {'published' if final_ok else 'FAILED'}; staging left: "
              f"{len(leftovers)}; days taken from earlier builds or the day store: "
              f"{len(manifest.get('reused_days', {}))} of {len(manifest['day_content'])}")
        print(f"RESULT kills={killed} runs={k} valid={valid} published_while_killing={published} "
              f"final_ok={int(final_ok)}")
        if valid != k or killed < args.kills or not final_ok:
            sys.exit(1)


if __name__ == "__main__":
    main()
