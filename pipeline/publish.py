"""Build directories, manifest and the atomic ``latest`` switch.

A build writes into ``OUT/.staging-<build-id>/``. Only after every check has passed is the
manifest (sha256 of every file) written, the directory renamed to ``OUT/<build-id>/`` and the
``OUT/latest`` symlink replaced in one ``rename``. A failed or interrupted build never changes
what ``latest`` points to. One build at a time per output directory (an ``flock``).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.provenance import sha256_file
from sources.errors import BuildLockedError


@contextmanager
def build_lock(out: Path) -> Iterator[None]:
    """Exclusive lock on ``OUT/.lock`` for the duration of a build."""
    out.mkdir(parents=True, exist_ok=True)
    fh = open(out / ".lock", "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise BuildLockedError(f"{out}: another build is running in this output directory "
                                   f"(lock {out / '.lock'} is held); wait for it or use another "
                                   "--out") from exc
        yield
    finally:
        fh.close()


def sweep_stale(out: Path) -> list[Path]:
    """Remove what killed builds left behind (``.staging-*``, ``.latest-*``); call under the lock."""
    removed = []
    for path in sorted(out.glob(".staging-*")) + sorted(out.glob(".latest*-*")):
        if path.is_symlink() or path.is_file():
            path.unlink()
        else:
            shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def staging_dir(out: Path, build_id: str) -> Path:
    path = out / f".staging-{build_id}"
    path.mkdir(parents=True, exist_ok=False)
    (path / "hourly").mkdir()
    return path


def write_manifest(build_dir: Path, extra: dict[str, Any]) -> Path:
    files = sorted(p for p in build_dir.rglob("*") if p.is_file() and p.name != "manifest.json")
    manifest = {**extra, "files": {str(p.relative_to(build_dir)): {
        "sha256": sha256_file(p), "bytes": p.stat().st_size} for p in files}}
    path = build_dir / "manifest.json"
    tmp = build_dir / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
    return path


def add_to_manifest(build_dir: Path, subdir: str) -> None:
    """Add the files under ``build_dir/subdir`` (e.g. the report) to an existing manifest."""
    path = build_dir / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    for p in sorted((build_dir / subdir).rglob("*")):
        if p.is_file():
            manifest["files"][str(p.relative_to(build_dir))] = {"sha256": sha256_file(p),
                                                                 "bytes": p.stat().st_size}
    tmp = build_dir / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def publish(out: Path, staging: Path, build_id: str, pointer: str = "latest") -> Path:
    """Rename the staging directory and switch ``pointer`` (``latest``) to it atomically.

    Full-year builds move ``latest``; period (episode) builds move ``latest-period`` so that
    readers of ``latest`` always get a whole year.
    """
    final = out / build_id
    if final.exists():
        raise BuildLockedError(f"{final} already exists; build ids are unique per second and "
                               "config, so another build just published the same id")
    os.replace(staging, final)
    tmp_link = out / f".{pointer}-{build_id}"
    if tmp_link.is_symlink():
        tmp_link.unlink()
    os.symlink(build_id, tmp_link)
    os.replace(tmp_link, out / pointer)
    return final


def discard(staging: Path) -> None:
    """Remove a failed build's staging directory."""
    shutil.rmtree(staging, ignore_errors=True)
