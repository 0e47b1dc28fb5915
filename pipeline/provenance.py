"""Build identity and provenance: build id, code version, global attributes, and the content
keys of the caches (an input's read and emissions, the whole build's input fingerprint)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grids.grid import Grid
from pipeline import __version__
from pipeline.config import BuildConfig, InputConfig, build_overrides, config_hash, load_config
from pipeline.publish import Manifest, has_manifest, read_manifest, verify_build
from sources.files import digest, frame_digest, sha256_file, sha256_or_missing
from sources.readers import InputMeta

if TYPE_CHECKING:  # the build's tables are made by pipeline.build, which imports this module
    from pipeline.build import Tables


def code_version() -> str:
    """Package version, plus the git commit when run from a checkout."""
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=True)
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=5, check=True).stdout.strip()
        return f"{__version__}+g{out.stdout.strip()}" + (".dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return __version__


def new_build_id(cfg_hash: str, now: dt.datetime | None = None) -> str:
    """``YYYYMMDDTHHMMSSmmmZ-<config hash 8>``: sortable, unique per millisecond and config."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z-{cfg_hash[:8]}"


def global_attributes(*, build_id: str, cfg_hash: str, inputs: dict[str, str], version: str,
                      name: str, year: int, grid_name: str) -> dict[str, Any]:
    """Global attributes shared by every output file of a build."""
    attrs: dict[str, Any] = {
        "title": f"Tongyuan same-source carbon-pollution emission inventory: {name} {year}",
        "institution": "Tongyuan",
        "source": "Tongyuan same-source inventory pipeline (activity x emission factors)",
        "history": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ} built by tongyuan "
                   f"{version}",
        "references": "see config/REFERENCES.md and the reference columns of config/*.csv",
        "tongyuan_build_id": build_id,
        "tongyuan_config_hash": cfg_hash,
        "tongyuan_code_version": version,
        "tongyuan_grid": grid_name,
        "tongyuan_time_basis": "UTC; profiles defined in local time and shifted",
    }
    for name_, sha in sorted(inputs.items()):
        # CF §2.3: attribute names are letters, digits and underscores (an input named after a
        # file such as P0001_2024-07.csv would otherwise make an invalid name)
        attrs[f"input_sha256_{re.sub(r'[^A-Za-z0-9_]', '_', name_)}"] = sha
    return attrs


def read_key(cfg: BuildConfig, tables: Tables, spec: InputConfig, code: str) -> str:
    """Content key of :func:`read_input`: the file's bytes (every part of a Shapefile), its
    config entry, what validation checks it against (factor keys, control devices, proxy
    names, species, sector proxies, plausibility bounds), the grid's CRS and the code version.
    A change anywhere else (another input, a factor value, a profile) leaves it unchanged."""
    return "read-" + digest({
        "code": code, "input": spec.model_dump(mode="json"), "sha256": sha256_or_missing(spec.path),
        "crs": tables.grid.crs.to_wkt(), "keys": frame_digest(tables.library.keys),
        "devices": sorted(tables.library.devices), "proxies": sorted(tables.proxies),
        "species": tables.registry.emitted, "sector_proxies": cfg.sector_proxies,
        "bounds": None if tables.bounds is None else frame_digest(tables.bounds)})


def emissions_key(cfg: BuildConfig, source_key: str) -> str:
    """Content key of one input's emissions: its read key and the bytes of the tables the
    same-source step uses (species, factors, controls, fuels)."""
    t = cfg.tables
    return "emissions-" + digest({
        "read": source_key, **{name: sha256_file(path) for name, path in (
            ("species", t.species), ("factors", t.emission_factors),
            ("controls", t.control_efficiencies), ("fuels", t.fuels))}})


def provenance_attrs(cfg: BuildConfig, metas: list[InputMeta], build_id: str,
                     cfg_hash: str, grid: Grid) -> dict[str, Any]:
    """The global attributes of a build's files (:func:`global_attributes` from its config,
    inputs and grid)."""
    inputs = {m.name: m.sha256 for m in metas}
    return global_attributes(build_id=build_id, cfg_hash=cfg_hash, inputs=inputs,
                             version=code_version(), name=cfg.name, year=cfg.year,
                             grid_name=grid.name)


def input_fingerprint(cfg: BuildConfig) -> str:
    """sha256 over everything a build's files depend on: the configuration and tables (the
    config hash), the bytes of every input, proxy, CEMS, boundary and GRIDDESC file, the output
    settings and the code version. Equal fingerprints mean the same inventory."""
    h = hashlib.sha256(config_hash(cfg).encode())
    files = ([("input", i.name, i.path) for i in cfg.inputs]
             + [("proxy", n, p) for n, p in sorted(cfg.proxies.items())]
             + [("cems", str(p), p) for p in cfg.cems]
             + ([("boundaries", "", cfg.boundaries)] if cfg.boundaries else [])
             + ([("griddesc", "", cfg.grid.griddesc)] if getattr(cfg.grid, "griddesc", None)
                else [])
             + [(kind, "", p) for kind, p in (("wrf_domain", cfg.grid.wrf),
                                              ("wrfchem_domain", cfg.output.wrfchem.domain_file),
                                              ("metcro3d", cfg.vertical.metcro3d),
                                              ("wrf_layers", cfg.vertical.wrfinput))
                if p is not None])
    if cfg.regional is not None:  # every file of a regional inventory, and its mask
        for inv in cfg.regional.inventories:
            root = Path(inv.path)
            paths = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
            files += [("regional", inv.name, p) for p in paths]
        if cfg.regional.mask is not None:
            files.append(("regional_mask", "", cfg.regional.mask))
    for kind, name, path in files:
        h.update(f"|{kind}:{name}:{sha256_or_missing(path)}".encode())
    o = cfg.output
    h.update(json.dumps({"period": o.period, "formats": o.formats, "mechanism": o.mechanism,
                         "dtype": o.dtype, "complevel": o.complevel, "shuffle": o.shuffle,
                         "code": code_version()}, sort_keys=True, default=str).encode())
    return h.hexdigest()


def start_build(cfg: BuildConfig) -> tuple[str, str]:
    """(build id, config hash)."""
    h = config_hash(cfg)
    return new_build_id(h), h


def pointer_name(cfg: BuildConfig, base: str = "latest") -> str:
    """The pointer a build of ``cfg`` publishes under: ``base``, or ``<base>-period`` for a
    period build."""
    return base if cfg.output.period is None else f"{base}-period"


def up_to_date(config: str | Path, *, verify: bool = False,
               **overrides: Any) -> Manifest | None:
    """The manifest of the published build (under ``latest``, or ``latest-period`` for a
    period build) whose input fingerprint equals the configuration's now (with the same
    ``overrides`` as :func:`pipeline.build.run_build`): a build would publish the same
    inventory again.
    None when something changed or nothing is published, and, with ``verify``, when a file of
    the build differs from its manifest (the problems are printed): rebuilding then writes the
    broken days again, since a day is reused only while its sha256 matches."""
    cfg = load_config(config, build_overrides(overrides))
    pointer = Path(cfg.output.dir) / pointer_name(cfg)
    if not (pointer.is_symlink() and has_manifest(pointer)):
        return None
    manifest = read_manifest(pointer)
    if manifest.fingerprint != input_fingerprint(cfg):
        return None
    problems = verify_build(pointer.resolve()) if verify else []
    for problem in problems:
        print(f"published build is damaged: {problem}")
    return None if problems else manifest
