"""Build directories, manifest and the atomic ``latest`` switch.

A build writes into ``OUT/.staging-<build-id>/``. Only after every check has passed is the
manifest (sha256 of every file) written, the directory renamed to ``OUT/<build-id>/`` and the
``OUT/latest`` symlink replaced in one ``rename``. A failed or interrupted build never changes
what ``latest`` points to. One build at a time per output directory (an ``flock``).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sources.errors import BuildLockedError, ConfigError, OutputError
from sources.files import sha256_file

#: the name of a published build directory: <UTC time to the ms>Z-<config hash prefix>
BUILD_ID = re.compile(r"^[0-9]{8}T[0-9]{9}Z-[0-9a-f]{8}$")


@contextmanager
def build_lock(out: Path) -> Iterator[None]:
    """Exclusive lock on ``OUT/.lock`` for the duration of a build."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fh = open(out / ".lock", "a+")
    except OSError as exc:
        raise OutputError(f"{out}: the output directory cannot be written ({exc.strerror}); "
                          "use --out with a directory you can write") from exc
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
    """Remove what killed builds left behind (``.staging-*``, ``.latest-*``); call under the
    lock."""
    removed = []
    for path in (sorted(out.glob(".staging-*")) + sorted(out.glob(".latest*-*"))
                 + sorted(out.glob(".pruned-*"))):
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


#: the file in every published build that lists its files and records what it was built from
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class FileEntry:
    """One published file: its sha256 and size [bytes]."""

    sha256: str
    bytes: int


@dataclass(frozen=True)
class Manifest:
    """What ``manifest.json`` records of a build: where it came from and every file it holds.

    The one schema of the manifest: only :func:`read_manifest` and :func:`write_manifest` touch
    its JSON, every other module reads these fields.

    Attributes
    ----------
    build_id : the build's id (``<UTC time>Z-<config hash prefix>``)
    config_hash : sha256 of the configuration and its tables (for a scenario: of the base
        configuration and the scenario file)
    config : path of the build configuration (YAML)
    year : output year
    period : the UTC days written (first, last), or None for the whole year
    boundaries : district boundaries file the report uses, or None
    inputs : input name → sha256 of its file (None when it could not be read)
    day_content : day (YYYYMMDD) → content hash of its hourly file (arrays, coordinates and
        encoding, without the build's global attributes): equal hashes, equal content
    reused_days : day → id of the build that wrote the file this build hard-links
    fingerprint : :func:`pipeline.provenance.input_fingerprint` of the build, or None
    cache_files : the task records and allocation matrices the build used (relative to the
        cache directory); the cache keeps what a kept build lists
    scenario : for a scenario build, its name, file, base and target year and base config hash
    files : path relative to the build → :class:`FileEntry`; filled by :func:`write_manifest`
    """

    build_id: str
    config_hash: str
    config: str
    year: int
    period: tuple[str, str] | None = None
    boundaries: str | None = None
    inputs: dict[str, str | None] = field(default_factory=dict)
    day_content: dict[str, str] = field(default_factory=dict)
    reused_days: dict[str, str] = field(default_factory=dict)
    fingerprint: str | None = None
    cache_files: list[str] = field(default_factory=list)
    scenario: ScenarioInfo | None = None
    files: dict[str, FileEntry] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        scenario = doc.pop("scenario")
        if scenario is not None:  # the flat keys of earlier manifests
            doc.update({"scenario": scenario["name"], "scenario_file": scenario["file"],
                        "base_year": scenario["base_year"],
                        "target_year": scenario["target_year"],
                        "base_config_hash": scenario["base_config_hash"]})
        doc["period"] = list(self.period) if self.period else None
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Manifest:
        scenario = None
        if doc.get("scenario"):
            scenario = ScenarioInfo(name=doc["scenario"], file=doc.get("scenario_file"),
                                    base_year=doc.get("base_year"),
                                    target_year=doc.get("target_year"),
                                    base_config_hash=doc.get("base_config_hash"))
        period = doc.get("period")
        return cls(build_id=doc["build_id"], config_hash=doc.get("config_hash", ""),
                   config=doc.get("config", ""), year=int(doc["year"]),
                   period=tuple(period) if period else None,
                   boundaries=doc.get("boundaries"), inputs=dict(doc.get("inputs") or {}),
                   day_content=dict(doc.get("day_content") or {}),
                   reused_days=dict(doc.get("reused_days") or {}),
                   fingerprint=doc.get("fingerprint"),
                   cache_files=list(doc.get("cache_files") or []), scenario=scenario,
                   files={k: FileEntry(**v) for k, v in (doc.get("files") or {}).items()})


@dataclass(frozen=True)
class ScenarioInfo:
    """The scenario a scenario build applied to its base configuration."""

    name: str
    file: str | None
    base_year: int | None
    target_year: int | None
    base_config_hash: str | None


def has_manifest(build: Path) -> bool:
    """Whether ``build`` is a directory holding a manifest (a published or staged build)."""
    return (Path(build) / MANIFEST).is_file()


def read_manifest(build: str | Path) -> Manifest:
    """The manifest of a build directory (or of the build a ``latest*`` pointer refers to).

    Raises :class:`~sources.errors.ConfigError` when there is none or it cannot be read.
    """
    path = Path(build) / MANIFEST
    try:
        return Manifest.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError as exc:
        raise ConfigError(f"{build}: not a Tongyuan build directory (no {MANIFEST})") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a readable Tongyuan manifest ({exc})") from exc


def fsync_path(path: Path) -> None:
    """Flush a file's or a directory's entries to disk (so that a rename after it publishes
    data that a power cut cannot undo)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """:func:`fsync_path` every file and directory under ``root``, and ``root`` itself."""
    for p in sorted(root.rglob("*")):
        if not p.is_symlink():
            fsync_path(p)
    fsync_path(root)


def _write_json(build_dir: Path, manifest: Manifest) -> Path:
    path = build_dir / MANIFEST
    tmp = build_dir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest.to_json(), indent=1, sort_keys=True), encoding="utf-8")
    fsync_path(tmp)
    os.replace(tmp, path)
    return path


#: the output directory's private folder: what the server knows of a build and never
#: publishes (the absolute folder of its configuration), one ``<build id>.json`` per build
LOCAL = ".local"


def write_local_record(out: Path, build_id: str, record: dict[str, str]) -> Path:
    """``out/.local/<build_id>.json``: the server's own record of a build (absolute paths the
    manifest must not carry), written atomically; removed when the build is pruned."""
    folder = out / LOCAL
    folder.mkdir(exist_ok=True)
    path = folder / f"{build_id}.json"
    tmp = folder / f".{build_id}.json.tmp"
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
    return path


def local_record(build: Path) -> dict[str, str]:
    """The server's record of the build at ``build`` (``OUT/<id>`` or a pointer to it); {} when
    there is none (an older build, or a build copied elsewhere)."""
    build = build.resolve()
    path = build.parent / LOCAL / f"{build.name}.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}


@dataclass(frozen=True)
class HashedFile:
    """The sha256 of a file's bytes on disk, measured where it was written (a worker, right
    after closing it, while its pages are still in memory), with the size, modification time
    and inode it had then: :func:`write_manifest` takes the sha256 only while the file still
    has all three, and reads the file again otherwise."""

    sha256: str
    bytes: int
    mtime_ns: int
    inode: int

    def matches(self, path: Path) -> bool:
        """Whether ``path`` is still the file that was hashed (same size, time and inode)."""
        try:
            st = path.stat()
        except OSError:
            return False
        return (st.st_size, st.st_mtime_ns, st.st_ino) == (self.bytes, self.mtime_ns,
                                                           self.inode)


def hash_file(path: Path) -> HashedFile:
    """:class:`HashedFile` of ``path`` (its sha256, read once, and its stat)."""
    before = path.stat()
    sha = sha256_file(path)
    return HashedFile(sha, before.st_size, before.st_mtime_ns, before.st_ino)


def _entries(build_dir: Path, files: list[Path],
             hashed: Mapping[str, HashedFile] | None = None) -> dict[str, FileEntry]:
    out = {}
    for p in files:
        known = (hashed or {}).get(str(p))
        out[str(p.relative_to(build_dir))] = (
            FileEntry(sha256=known.sha256, bytes=known.bytes)
            if known is not None and known.matches(p)
            else FileEntry(sha256=sha256_file(p), bytes=p.stat().st_size))
    return out


def write_manifest(build_dir: Path, manifest: Manifest,
                   hashed: Mapping[str, HashedFile] | None = None) -> Path:
    """Write ``manifest`` into ``build_dir`` with the sha256 and size of every file there.

    ``hashed``: path → :class:`HashedFile` of files whose sha256 was measured when they were
    written (the day files, hashed by the workers that wrote them); a file that still matches
    its record is not read again, every other file is.
    """
    files = sorted(p for p in build_dir.rglob("*") if p.is_file() and p.name != MANIFEST)
    return _write_json(build_dir, replace(manifest, files=_entries(build_dir, files, hashed)))


def add_to_manifest(build_dir: Path, subdir: str) -> None:
    """Add the files under ``build_dir/subdir`` (e.g. the report) to an existing manifest."""
    manifest = read_manifest(build_dir)
    added = _entries(build_dir, sorted(p for p in (build_dir / subdir).rglob("*") if p.is_file()))
    _write_json(build_dir, replace(manifest, files={**manifest.files, **added}))


def replace_subdir(build_dir: Path, subdir: str, fill: Callable[[Path], Any]) -> Any:
    """Replace ``build_dir/subdir`` of a published build (its report) without ever leaving it
    broken: ``fill(folder)`` writes the new content into a hidden sibling folder, which is then
    fsynced and swapped in by two renames and one manifest write (the manifest then lists the
    new files, the old ones are gone). A kill while ``fill`` runs leaves the build as it was
    (the hidden folder is swept the next time). Returns what ``fill`` returns."""
    for stale in build_dir.glob(f".{subdir}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    new = build_dir / f".{subdir}-new-{os.getpid()}"
    old = build_dir / f".{subdir}-old-{os.getpid()}"
    new.mkdir()
    value = fill(new)
    fsync_tree(new)
    manifest = read_manifest(build_dir)
    entries = {f"{subdir}/{k}": v for k, v in _entries(new, sorted(
        p for p in new.rglob("*") if p.is_file())).items()}
    kept = {k: v for k, v in manifest.files.items() if not k.startswith(f"{subdir}/")}
    target = build_dir / subdir
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    _write_json(build_dir, replace(manifest, files={**kept, **entries}))
    fsync_path(build_dir)
    shutil.rmtree(old, ignore_errors=True)
    return value


def publish(out: Path, staging: Path, build_id: str, pointer: str = "latest") -> Path:
    """Rename the staging directory and switch ``pointer`` (``latest``) to it atomically.

    Full-year builds move ``latest``; period (episode) builds move ``latest-period`` so that
    readers of ``latest`` always get a whole year.
    """
    final = out / build_id
    if final.exists():
        raise BuildLockedError(f"{final} already exists; build ids are unique per second and "
                               "config, so another build just published the same id")
    fsync_tree(staging)  # every file on disk before the renames make it visible
    os.replace(staging, final)
    tmp_link = out / f".{pointer}-{build_id}"
    if tmp_link.is_symlink():
        tmp_link.unlink()
    os.symlink(build_id, tmp_link)
    fsync_path(out)
    os.replace(tmp_link, out / pointer)
    fsync_path(out)
    return final


def disk_full(exc: BaseException, out: Path) -> OutputError | None:
    """An :class:`OutputError` naming ``out`` and its free space when ``exc`` is a full disk
    (``ENOSPC``, or the HDF error netCDF raises when a write runs out of space), else None."""
    full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if not full and isinstance(exc, RuntimeError) and "HDF error" in str(exc):
        full = shutil.disk_usage(out).free < 256 * 2**20  # an HDF error on an almost full disk
    if not full:
        return None
    free = shutil.disk_usage(out).free
    return OutputError(f"{out}: the disk is full ({free / 2**20:,.0f} MB free) while writing "
                       f"the build ({exc}); free some space or use --out on another disk; "
                       "nothing was published")


def discard(staging: Path) -> None:
    """Remove a failed build's staging directory."""
    shutil.rmtree(staging, ignore_errors=True)


def published_builds(out: Path) -> list[str]:
    """Ids of the published builds in ``out``, oldest first: directories named like a build id
    (never a staging directory or anything else) holding a manifest."""
    if not out.is_dir():
        return []
    return sorted(p.name for p in out.iterdir() if BUILD_ID.match(p.name) and p.is_dir()
                  and not p.is_symlink() and has_manifest(p))


def pointers(out: Path) -> dict[str, str]:
    """``latest*`` pointer → the build id it refers to."""
    if not out.is_dir():
        return {}
    found = {p.name: Path(os.readlink(p)).name for p in out.glob("latest*") if p.is_symlink()}
    return {k: v for k, v in found.items() if BUILD_ID.match(v)}


def prune(out: Path, keep: int | None) -> list[str]:
    """Remove all but the newest ``keep`` published builds (call under the lock, after
    publishing). A build a ``latest*`` pointer refers to is never removed. Returns the ids
    removed."""
    if keep is None:
        return []
    ids = published_builds(out)
    protected = set(pointers(out).values())
    removed = []
    for build in ids[:max(len(ids) - keep, 0)]:
        if build in protected:
            continue
        # rename first: a reader sees the whole build or none of it
        trash = out / f".pruned-{build}"
        os.replace(out / build, trash)
        shutil.rmtree(trash, ignore_errors=True)
        (out / LOCAL / f"{build}.json").unlink(missing_ok=True)
        removed.append(build)
    return removed


def prune_day_store(store: Path | None) -> int:
    """Remove stored day files that no build holds any more (one link left: the store's own),
    and temporary links a killed build left. Call under the lock, after publishing and pruning:
    what a killed build wrote then has served its purpose. Returns the number removed."""
    if store is None or not store.is_dir():
        return 0
    removed = 0
    for path in store.iterdir():
        if path.name.startswith(".") or (path.is_file() and path.stat().st_nlink == 1):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


#: the parts of the cache a build's manifest lists under ``cache_files``
PRUNED_CACHE = ("tasks", "allocation")


def prune_cache(out: Path, cache_dir: Path | None) -> int:
    """Remove the cached task records and allocation matrices that no published build in
    ``out`` used (each build's manifest lists them in ``cache_files``), and temporary files a
    killed build left. Call under the lock, after publishing and pruning: the cache then holds
    what rebuilding any kept build needs and nothing more. A cache directory set apart from
    ``out/.cache`` may serve other output directories as well and is left alone. Returns the
    number of files removed."""
    if cache_dir is None or Path(cache_dir).resolve() != (out / ".cache").resolve():
        return 0
    used: set[str] = set()
    for build in published_builds(out):
        used.update(read_manifest(out / build).cache_files)
    removed = 0
    for part in PRUNED_CACHE:
        folder = Path(cache_dir) / part
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.is_file() and f"{part}/{path.name}" not in used:
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def verify_build(build: Path) -> list[str]:
    """What is wrong with a published build: a missing manifest, or a file it lists that is
    missing or whose sha256 differs. Empty when the build is complete."""
    if not has_manifest(build):
        return [f"{build.name}: no {MANIFEST}"]
    problems = []
    for rel, entry in read_manifest(build).files.items():
        path = build / rel
        if not path.is_file():
            problems.append(f"{build.name}/{rel}: missing")
        elif sha256_file(path) != entry.sha256:
            problems.append(f"{build.name}/{rel}: sha256 differs from the manifest")
    return problems


def _totals(build: Path) -> dict[str, float]:
    import pandas as pd

    path = build / "ledger.csv"
    if not path.is_file():
        return {}
    t = pd.read_csv(path).groupby("species", sort=False)["written_kg"].sum()
    return {str(k): float(v) for k, v in t.items()}


def _period(period: tuple[str, str] | None) -> list[str] | None:
    return list(period) if period else None  # as earlier entries printed it


def changes_entry(previous: Path | None, build: Path, pointer: str) -> str:
    """A ``CHANGES.md`` entry: which inputs and tables changed since the build ``pointer``
    referred to before, and written totals per species before and after."""
    new = read_manifest(build)
    lines = [f"## {build.name} → {pointer}", ""]
    old: Manifest | None = None
    if previous is None or not has_manifest(previous):
        lines += ["First build published under this pointer.", ""]
    else:
        old = read_manifest(previous)
        lines += [f"Previous: {previous.name}.", ""]
        a, b = old.inputs, new.inputs
        changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        what = ", ".join(f"{k} ({'new' if k not in a else 'removed' if k not in b else 'changed'})"
                         for k in changed) or "none"
        lines.append(f"- inputs changed: {what}")
        same = old.config_hash == new.config_hash
        lines.append(f"- configuration and tables: {'unchanged' if same else 'changed'} "
                     f"(config hash {new.config_hash[:12]})")
        if old.period != new.period:
            lines.append(f"- period: {_period(old.period)} → {_period(new.period)}")
        lines.append("")
    before = _totals(previous) if old is not None and previous is not None else {}
    after = _totals(build)
    lines += ["| species | before t | after t | change |", "|---|---:|---:|---:|"]
    for sp, v in after.items():
        b = before.get(sp)
        change = "" if b in (None, 0) else f"{(v - b) / b * 100:+.3f} %"
        lines.append(f"| {sp} | {'' if b is None else f'{b / 1e3:,.3f}'} | {v / 1e3:,.3f} | "
                     f"{change} |")
    return "\n".join(lines) + "\n\n"


def record_changes(out: Path, previous: Path | None, build: Path, pointer: str) -> Path:
    """Prepend the entry for ``build`` to ``OUT/CHANGES.md`` (newest first), atomically."""
    path = out / "CHANGES.md"
    head = "# Published builds (newest first)\n\n"
    old = path.read_text(encoding="utf-8") if path.exists() else head
    body = old[len(head):] if old.startswith(head) else old
    tmp = out / ".CHANGES.md.tmp"
    tmp.write_text(head + changes_entry(previous, build, pointer) + body, encoding="utf-8")
    os.replace(tmp, path)
    return path
