"""A download service for modellers: the published builds of an output directory over HTTP.

``tongyuan serve-files --out DIR --host H --port P`` runs this ASGI app (Starlette) on uvicorn:

* ``/`` — the catalogue page (HTML; the table is filled from the JSON API by ``catalogue.js``);
* ``/api/builds`` — published builds: id, pointers (``latest``, ``latest-period``, …), year,
  period, config hash, number of daily files and bytes;
* ``/api/builds/{build}`` — its files with size, sha256 and download URL, and its days;
* ``/files/{build}/{path}`` — a file, with ``ETag`` (its sha256), ``If-None-Match`` (304) and
  HTTP Range (206; RFC 9110: 416 with ``Content-Range: bytes */size`` for a reversed, garbage
  or unsatisfiable range, a whole 200 for another unit, several ranges or a stale ``If-Range``);
* ``/api/subset?build=&species=&start=&end=&bbox=`` — a NetCDF made with xarray from the
  build's hourly files: species (comma-separated), a UTC time window (inclusive, whole hours)
  and a lon/lat box (``lon_min,lat_min,lon_max,lat_max``): the rectangle of grid rows and
  columns enclosing the cells whose centre lies in the box, the emissions of its cells whose
  centre lies outside set to ``_FillValue``;
* ``/api/status`` — subsets running and waiting, requests in flight, memory of the server and
  its subset workers.

Only published files are served: a build is a directory of ``DIR`` holding a manifest
(staging directories start with a dot and have none until they are published), and a file is
served only if the manifest lists it and its real path lies inside the build (a symlink that
leads out is refused). Unknown builds, paths and parameters get 4xx answers, never a traceback,
and no answer names a path of the server.

Under load: subsets run in a few worker processes (:mod:`pipeline.files_subset`; HDF5 is not
thread-safe, and a crash in netCDF-C ends a worker, not the server); beyond ``max_subsets``
subsets running or waiting, and beyond ``max_requests`` requests in flight, the answer is
``503`` with ``Retry-After``. Every answer carries ``X-Content-Type-Options: nosniff`` and a
Content-Security-Policy. Optional bearer tokens (``--token-file``; 401 otherwise) and CORS
(``--cors-origin``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import logging
import math
import multiprocessing
import os
import re
import shutil
import tempfile
import weakref
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pandas as pd
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline import files_subset
from pipeline.files_subset import MAX_SUBSET_VALUES, SubsetError, SubsetRequest
from pipeline.publish import BUILD_ID, MANIFEST, Manifest, published_builds, read_manifest
from pipeline.publish import pointers as build_pointers
from pipeline.writers import FORMATS
from sources.errors import ConfigError

__all__ = ["MAX_SUBSET_HOURS", "MAX_SUBSET_VALUES", "Catalogue", "ServiceSettings",
           "create_app", "load_tokens", "parse_range", "serve"]

log = logging.getLogger("tongyuan.files_service")

FOLDER_FORMAT = {f.folder: f.name for f in FORMATS.values()}
#: longest time window of one subset request, in hours
MAX_SUBSET_HOURS = 31 * 24
#: a subset worker is replaced after this many subsets (what a leak could hold is returned)
WORKER_MAX_TASKS = 200

#: the policy of the service's own pages: scripts and styles only from the service itself
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
            "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
#: the policy of published files (the report's HTML has inline styles and data: images) and
#: of every other answer: no script runs, nothing is framed
FILE_CSP = ("default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox; "
            "frame-ancestors 'none'")


@dataclass(frozen=True)
class ServiceSettings:
    """How the service runs.

    Attributes
    ----------
    subset_workers : worker processes that make subsets (each one subset at a time)
    max_subsets : subsets running or waiting; one more is answered 503 with ``Retry-After``
    max_requests : requests in flight; one more is answered 503 with ``Retry-After``
    token_file : read-only bearer tokens, one a line (``#`` comments); None: no tokens needed
    cors_origins : origins allowed to read answers from a browser (``*``: any); empty: no CORS
    """

    subset_workers: int = 2
    max_subsets: int = 8
    max_requests: int = 64
    token_file: Path | None = None
    cors_origins: tuple[str, ...] = field(default_factory=tuple)


class Catalogue:
    """The published builds under ``out``, read from their manifests (cached by mtime)."""

    def __init__(self, out: str | Path):
        self.out = Path(out).resolve()
        self._manifests: dict[str, tuple[float, Manifest]] = {}

    def builds(self) -> list[str]:
        return published_builds(self.out)[::-1]  # newest first

    def pointers(self) -> dict[str, str]:
        return build_pointers(self.out)

    def manifest(self, build: str) -> Manifest:
        path = self.out / build / MANIFEST
        if not (BUILD_ID.match(build) and not (self.out / build).is_symlink()
                and path.is_file()):
            raise HTTPException(404, f"unknown build {build!r}")
        mtime = path.stat().st_mtime
        cached = self._manifests.get(build)
        if cached is None or cached[0] != mtime:
            try:
                cached = (mtime, read_manifest(self.out / build))
            except ConfigError as exc:  # its message names the server's path: logged only
                log.error("%s", exc)
                raise HTTPException(500, f"the manifest of build {build} cannot be read") from None
            self._manifests[build] = cached
        return cached[1]

    def summary(self, build: str, pointers: dict[str, str]) -> dict[str, Any]:
        m = self.manifest(build)
        files = m.files
        days = sorted(p for p in files if p.startswith("hourly/"))
        return {"build": build, "pointers": sorted(k for k, v in pointers.items() if v == build),
                "year": m.year, "period": list(m.period) if m.period else None,
                "config_hash": m.config_hash, "days": len(days),
                "first_day": days[0][7:15] if days else None,
                "last_day": days[-1][7:15] if days else None,
                "bytes": int(sum(f.bytes for f in files.values())),
                "formats": sorted({FOLDER_FORMAT[p.split("/")[0]] for p in files
                                   if p.split("/")[0] in FOLDER_FORMAT})}

    def file(self, build: str, rel: str) -> Path:
        """The published file ``rel`` of ``build``; 404 unless listed, 403 if it leads out."""
        files = self.manifest(build).files
        if rel not in files:
            raise HTTPException(404, f"{rel!r} is not a published file of build {build}")
        root = (self.out / build).resolve()
        path = (root / rel).resolve()
        if not path.is_relative_to(root):
            raise HTTPException(403, f"{rel!r} leads out of the build")
        if not path.is_file():
            raise HTTPException(404, f"{rel!r} is missing from build {build}")
        return path


# ---------------------------------------------------------------------------------------------
# HTTP Range (RFC 9110 §14) and entity tags (§8.8.3, §13.1.2)

class RangeNotSatisfiable(Exception):
    """A ``Range`` to answer 416: reversed, garbage, or beyond the end of the file."""


_INT_RANGE = re.compile(r"^([0-9]+)-([0-9]*)$")
_SUFFIX_RANGE = re.compile(r"^-([0-9]+)$")


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """The byte range (first, last; inclusive) a ``Range`` header asks of a file of ``size``
    bytes, or None to send the whole file.

    None for a unit other than ``bytes`` (RFC 9110 §14.2: it MUST be ignored) and for several
    ranges that do not merge into one (a server MAY ignore a ``Range``). Raises
    :class:`RangeNotSatisfiable` for a ranges-specifier that is invalid (garbage, a last
    position before the first) or that no range of satisfies (every first position at or beyond
    the end, a zero-length suffix).
    """
    unit, eq, spec = value.partition("=")
    if not eq:
        raise RangeNotSatisfiable(f"Range {value[:60]!r} is not bytes=first-last")
    if unit.strip().lower() != "bytes":
        return None
    ranges = []
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise RangeNotSatisfiable("Range names no range")
    for part in parts:
        if m := _INT_RANGE.match(part):
            first, last = int(m[1]), int(m[2]) if m[2] else None
            if last is not None and last < first:
                raise RangeNotSatisfiable(f"Range {part!r} ends before it starts")
            if first < size:
                ranges.append((first, size - 1 if last is None else min(last, size - 1)))
        elif m := _SUFFIX_RANGE.match(part):
            n = int(m[1])
            if n > 0 and size > 0:
                ranges.append((max(size - n, 0), size - 1))
        else:
            raise RangeNotSatisfiable(f"Range {part[:60]!r} is not first-last or -suffix")
    if not ranges:
        raise RangeNotSatisfiable(f"no range lies within the file's {size} bytes")
    ranges.sort()
    merged = [ranges[0]]
    for first, last in ranges[1:]:
        if first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged[0] if len(merged) == 1 else None


def etag_matches(header: str, etag: str) -> bool:
    """Whether ``If-None-Match: header`` names ``etag`` (weak comparison) or is ``*``."""
    if header.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(t.strip().removeprefix("W/") == opaque for t in header.split(","))


class _File(FileResponse):
    """A published file: whole, or the one range :func:`parse_range` chose (Starlette's own
    parser answers 400 where RFC 9110 says 416 or 200, so it only ever sees that range)."""

    def __init__(self, path: Path, byte_range: tuple[int, int] | None, **kw: Any):
        super().__init__(path, **kw)
        self.byte_range = byte_range

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"range", b"if-range")]
        if self.byte_range is not None:
            first, last = self.byte_range
            headers.append((b"range", f"bytes={first}-{last}".encode()))
        await super().__call__({**scope, "headers": headers}, receive, send)


# ---------------------------------------------------------------------------------------------
# subsets in worker processes

def _unlink_result(fut: Future) -> None:
    """Remove the file of a subset nobody waits for any more."""
    if not fut.cancelled() and fut.exception() is None:
        Path(fut.result()[0]).unlink(missing_ok=True)


class SubsetPool:
    """A fixed number of worker processes making subsets, and the bound on how many subsets
    may run or wait. A worker that dies (a crash in netCDF-C, the OOM killer) breaks the pool:
    it is replaced and the subsets it took down are tried once more on the new one."""

    def __init__(self, workers: int, limit: int):
        self.workers, self.limit = max(int(workers), 1), int(limit)
        self.in_flight = 0
        self.done = 0
        self.crashes = 0
        self.seconds = 1.0  # moving average of the time a worker takes for one subset
        self.tmpdir = tempfile.mkdtemp(prefix="tongyuan-subsets-")
        weakref.finalize(self, shutil.rmtree, self.tmpdir, True)
        self._pool: ProcessPoolExecutor | None = None

    def executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=files_subset.init_worker, max_tasks_per_child=WORKER_MAX_TASKS)
        return self._pool

    def warm(self) -> None:
        """Start the workers now rather than on the first request."""
        pool = self.executor()
        for _ in range(self.workers):
            pool.submit(files_subset.ping)

    def pids(self) -> list[int]:
        procs = getattr(self._pool, "_processes", None) or {}
        return sorted(procs)

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the queue ahead divided among the workers."""
        wait = self.seconds * max(self.in_flight - self.workers + 1, 1) / self.workers
        return min(max(math.ceil(wait), 1), 120)

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        if self._pool is broken:
            self.crashes += 1
            log.error("a subset worker died; starting new workers")
            broken.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def run(self, req: SubsetRequest) -> str:
        if self.in_flight >= self.limit:
            raise HTTPException(503, f"{self.in_flight} subsets are running or waiting (at most "
                                f"{self.limit}); try again in {self.retry_after()} s",
                                headers={"Retry-After": str(self.retry_after())})
        self.in_flight += 1
        try:
            for _ in range(2):
                pool = self.executor()
                try:
                    fut = pool.submit(files_subset.make_subset, req)
                except (BrokenProcessPool, RuntimeError):
                    self._replace(pool)
                    continue
                try:
                    path, seconds = await asyncio.wrap_future(fut)
                except BrokenProcessPool:
                    self._replace(pool)
                    continue
                except SubsetError as exc:
                    raise HTTPException(exc.status, exc.message) from None
                except asyncio.CancelledError:  # the client left: remove what it would get
                    fut.add_done_callback(_unlink_result)
                    raise
                self.done += 1
                self.seconds = 0.8 * self.seconds + 0.2 * seconds
                return path
            raise HTTPException(500, "the subset worker died twice making this subset; "
                                "the server is still up: ask for less or another window")
        finally:
            self.in_flight -= 1

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        shutil.rmtree(self.tmpdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# tokens, CORS, limits and headers for every answer

def load_tokens(path: str | Path) -> list[bytes]:
    """The sha256 of each token in ``path`` (one a line; blank lines and ``#`` comments
    skipped). Raises :class:`ConfigError` when the file is missing or holds no token."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the token file ({exc.__class__.__name__})") \
            from None
    tokens = [t.strip() for t in text.splitlines() if t.strip() and not t.startswith("#")]
    if not tokens:
        raise ConfigError(f"{path}: the token file holds no token (one a line)")
    return [hashlib.sha256(t.encode()).digest() for t in tokens]


class _Tokens:
    """The tokens of a token file, read again when the file changes (a token can be revoked
    without a restart; a file that becomes unreadable or empty lets nobody in)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.digests = load_tokens(self.path)
        self.mtime = self.path.stat().st_mtime_ns

    def allows(self, token: str) -> bool:
        try:
            mtime = self.path.stat().st_mtime_ns
            if mtime != self.mtime:
                self.mtime, self.digests = mtime, []
                self.digests = load_tokens(self.path)
        except (OSError, ConfigError) as exc:
            log.error("token file: %s; nobody is let in", exc)
            self.digests = []
        given = hashlib.sha256(token.encode()).digest()
        ok = False
        for d in self.digests:  # every token compared, in constant time
            ok |= hmac.compare_digest(given, d)
        return ok


CORS_EXPOSED = ("Content-Length, Content-Range, Content-Disposition, Accept-Ranges, ETag, "
                "Retry-After")


class _Guard:
    """The outermost layer: tokens, CORS, the bound on requests in flight, and the headers every
    answer carries (also Starlette's own 500s, which its inner middlewares never see)."""

    def __init__(self, app: ASGIApp, settings: ServiceSettings):
        self.app = app
        self.settings = settings
        self.tokens = _Tokens(settings.token_file) if settings.token_file else None
        self.in_flight = 0

    def _cors(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        allowed = self.settings.cors_origins
        if not allowed or origin is None:
            return []
        if "*" in allowed:
            value = "*"
        elif origin in allowed:
            value = origin
        else:
            return []
        return [(b"access-control-allow-origin", value.encode("latin-1")),
                (b"access-control-expose-headers", CORS_EXPOSED.encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        cors = self._cors(headers.get("origin"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                h = MutableHeaders(scope=message)
                h["x-content-type-options"] = "nosniff"
                h.setdefault("content-security-policy", FILE_CSP)
                h.setdefault("referrer-policy", "no-referrer")
                for k, v in cors:
                    h[k.decode()] = v.decode("latin-1")
                if self.settings.cors_origins:
                    h.add_vary_header("Origin")
            await send(message)

        if scope["method"] == "OPTIONS" and headers.get("access-control-request-method"):
            extra = {} if not cors else {
                "access-control-allow-methods": "GET, HEAD",
                "access-control-allow-headers": "Authorization, Range, If-None-Match, If-Range",
                "access-control-max-age": "600"}
            await Response(status_code=204, headers=extra)(scope, receive, send_with_headers)
            return
        if self.tokens is not None:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if not (scheme.lower() == "bearer" and self.tokens.allows(token.strip())):
                challenge = 'Bearer realm="tongyuan"' + (
                    ', error="invalid_token"' if token else "")
                answer = JSONResponse({"error": "this service needs a read-only token: "
                                       "Authorization: Bearer <token>", "status": 401},
                                      status_code=401, headers={"WWW-Authenticate": challenge})
                await answer(scope, receive, send_with_headers)
                return
        if self.in_flight >= self.settings.max_requests:
            answer = JSONResponse({"error": f"{self.in_flight} requests are in flight (at most "
                                   f"{self.settings.max_requests}); try again in 1 s",
                                   "status": 503}, status_code=503,
                                  headers={"Retry-After": "1"})
            await answer(scope, receive, send_with_headers)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            self.in_flight -= 1


class _App(Starlette):
    """Starlette with :class:`_Guard` outside its own error handling."""

    guard: _Guard

    def build_middleware_stack(self) -> ASGIApp:
        self.guard = _Guard(super().build_middleware_stack(), self.state.settings)
        return self.guard


# ---------------------------------------------------------------------------------------------
# pages

CATALOGUE_CSS = """body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; }
td, th { padding: .25rem .6rem; border-bottom: 1px solid #ddd; text-align: left; }
th { background: #f4f4f4; } .num { text-align: right; }
code { background: #f4f4f4; padding: 0 .2rem; }
"""

CATALOGUE_JS = """"use strict";
function fmtBytes(n) { const u = ["B", "KB", "MB", "GB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; } return n.toFixed(1) + " " + u[i]; }
fetch("api/builds").then(r => r.json()).then(data => {
  const tbody = document.querySelector("#builds tbody");
  tbody.replaceChildren();
  for (const b of data.builds) {
    const tr = document.createElement("tr");
    tr.className = "build";
    const cells = [b.build, b.pointers.join(", "), b.year,
      b.first_day ? b.first_day + " – " + b.last_day : "", b.days, b.formats.join(", "),
      fmtBytes(b.bytes)];
    cells.forEach((c, i) => { const td = document.createElement("td");
      if (i === 0) { const a = document.createElement("a"); a.href = "builds/" + c;
        a.textContent = c; td.appendChild(a); } else { td.textContent = c; }
      if (i >= 4) td.className = "num"; tr.appendChild(td); });
    tbody.appendChild(tr);
  }
  document.querySelector("#count").textContent = data.builds.length + " published builds";
}).catch(e => { document.querySelector("#count").textContent = "could not load: " + e; });
"""


def _page(title: str, body: str, css: str = "catalogue.css") -> HTMLResponse:
    text = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<link rel="stylesheet" href="{css}"></head><body>{body}</body></html>"""
    return HTMLResponse(text, headers={"Content-Security-Policy": PAGE_CSP})


def _hour(value: str | None) -> pd.Timestamp:
    t = pd.Timestamp(value).floor("h")
    if pd.isna(t) or t.tzinfo:
        raise ValueError("empty or with a time zone")
    return t


def create_app(out: str | Path, settings: ServiceSettings | None = None, **kw: Any) -> Starlette:
    """The ASGI app serving the published builds under ``out``.

    ``settings`` (or its fields as keywords: ``subset_workers``, ``max_subsets``,
    ``max_requests``, ``token_file``, ``cors_origins``) say how it runs; see
    :class:`ServiceSettings`.
    """
    settings = settings or ServiceSettings(**kw)
    cat = Catalogue(out)
    subsets = SubsetPool(settings.subset_workers, settings.max_subsets)

    async def index(request: Request) -> HTMLResponse:
        body = ("<h1>Tongyuan inventory builds</h1><p id='count'>loading…</p>"
                "<table id='builds'><thead><tr><th>build</th><th>pointers</th><th>year</th>"
                "<th>UTC days</th><th class='num'>files</th><th>formats</th>"
                "<th class='num'>size</th></tr></thead><tbody></tbody></table>"
                "<p>JSON: <code>api/builds</code>, <code>api/builds/&lt;build&gt;</code>; "
                "subsets: <code>api/subset?build=…&amp;species=NOx,CO2&amp;start=2024-07-01T00"
                "&amp;end=2024-07-01T23&amp;bbox=121.2,31.0,121.8,31.5</code></p>"
                "<script src='catalogue.js'></script>")
        return _page("Tongyuan builds", body)

    async def script(request: Request) -> Response:
        return Response(CATALOGUE_JS, media_type="text/javascript; charset=utf-8")

    async def stylesheet(request: Request) -> Response:
        return Response(CATALOGUE_CSS, media_type="text/css; charset=utf-8")

    def summaries() -> list[dict[str, Any]]:
        ptr, found = cat.pointers(), []
        for b in cat.builds():
            try:
                found.append(cat.summary(b, ptr))
            except HTTPException:  # an unreadable manifest (logged): the others are listed
                continue
        return found

    async def builds(request: Request) -> JSONResponse:
        return JSONResponse({"builds": summaries(), "pointers": cat.pointers()})

    async def build(request: Request) -> JSONResponse:
        b = request.path_params["build"]
        m = cat.manifest(b)
        files = [{"path": p, "bytes": f.bytes, "sha256": f.sha256,
                  "url": f"/files/{b}/{p}"} for p, f in sorted(m.files.items())]
        # paths relative to the build only: the configuration by its file name
        return JSONResponse({**cat.summary(b, cat.pointers()), "files": files,
                             "config": Path(m.config).name if m.config else None,
                             "inputs": m.inputs})

    async def build_page(request: Request) -> HTMLResponse:
        b = request.path_params["build"]
        m = cat.manifest(b)
        rows = "".join(
            f"<tr><td><a href='../files/{html.escape(b)}/{html.escape(p)}'>{html.escape(p)}"
            f"</a></td><td class='num'>{f.bytes:,}</td><td><code>"
            f"{html.escape(f.sha256[:16])}…</code></td></tr>"
            for p, f in sorted(m.files.items()))
        body = (f"<h1>Build {html.escape(b)}</h1><p><a href='../'>all builds</a></p>"
                "<table><thead><tr><th>file</th><th class='num'>bytes</th><th>sha256</th>"
                f"</tr></thead><tbody>{rows}</tbody></table>")
        return _page(f"Tongyuan build {b}", body, css="../catalogue.css")

    async def files(request: Request) -> Response:
        b, rel = request.path_params["build"], request.path_params["path"]
        path = cat.file(b, rel)
        etag = f'"{cat.manifest(b).files[rel].sha256}"'
        st = path.stat()
        common = {"ETag": etag, "Last-Modified": formatdate(st.st_mtime, usegmt=True),
                  "Cache-Control": "no-cache", "Content-Security-Policy": FILE_CSP}
        inm = request.headers.get("if-none-match")
        if inm is not None and etag_matches(inm, etag):
            return Response(status_code=304, headers=common)
        byte_range = None
        value, if_range = request.headers.get("range"), request.headers.get("if-range")
        if value is not None and (if_range is None
                                  or if_range in (etag, common["Last-Modified"])):
            try:
                byte_range = parse_range(value, st.st_size)
            except RangeNotSatisfiable as exc:
                return JSONResponse({"error": str(exc), "status": 416}, status_code=416,
                                    headers={**common,
                                             "Content-Range": f"bytes */{st.st_size}"})
        return _File(path, byte_range, filename=path.name, headers=common, stat_result=st)

    async def subset(request: Request) -> FileResponse:
        q = request.query_params
        b = q.get("build") or cat.pointers().get("latest", "")
        m = cat.manifest(b)
        try:
            start, end = _hour(q.get("start")), _hour(q.get("end"))
        except (ValueError, TypeError) as exc:
            raise HTTPException(400, "start and end are needed as UTC hours without a time "
                                "zone, e.g. start=2024-07-01T00&end=2024-07-01T23") from exc
        if end < start or (end - start) / pd.Timedelta(hours=1) + 1 > MAX_SUBSET_HOURS:
            raise HTTPException(400, f"the time window must run forward and span at most "
                                f"{MAX_SUBSET_HOURS} hours")
        days = pd.date_range(start.floor("D"), end.floor("D"), freq="D")
        rels = [f"hourly/{d:%Y%m%d}.nc" for d in days]
        missing = [r for r in rels if r not in m.files]
        if missing:
            raise HTTPException(404, f"build {b} has no {missing[0]}")
        bbox = None
        if q.get("bbox"):
            try:
                x0, y0, x1, y1 = (float(v) for v in q["bbox"].split(","))
            except ValueError as exc:
                raise HTTPException(400, "bbox is lon_min,lat_min,lon_max,lat_max") from exc
            if not all(map(math.isfinite, (x0, y0, x1, y1))) or x1 < x0 or y1 < y0:
                raise HTTPException(400, "bbox is lon_min,lat_min,lon_max,lat_max, finite, "
                                    "minimum before maximum")
            bbox = (x0, y0, x1, y1)
        species = tuple(s for s in (q.get("species") or "").split(",") if s)
        req = SubsetRequest(build=b, paths=tuple(str(cat.file(b, r)) for r in rels),
                            species=species, start=f"{start:%Y-%m-%dT%H}",
                            end=f"{end:%Y-%m-%dT%H}", bbox=bbox, tmpdir=subsets.tmpdir)
        tmp = await subsets.run(req)
        name = f"tongyuan_{b}_{start:%Y%m%d%H}-{end:%Y%m%d%H}.nc"
        return FileResponse(tmp, filename=name, media_type="application/x-netcdf",
                            background=BackgroundTask(os.unlink, tmp))

    async def status(request: Request) -> JSONResponse:
        return JSONResponse({
            "subsets": {"workers": subsets.workers, "limit": subsets.limit,
                        "in_flight": subsets.in_flight, "done": subsets.done,
                        "worker_crashes": subsets.crashes},
            "requests": {"in_flight": app.guard.in_flight, "limit": settings.max_requests},
            "rss_bytes": _rss(os.getpid(), subsets.pids())})

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail, "status": exc.status_code},
                            status_code=exc.status_code, headers=exc.headers)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        subsets.warm()
        try:
            yield
        finally:
            subsets.close()

    app = _App(routes=[
        Route("/", index), Route("/catalogue.js", script), Route("/catalogue.css", stylesheet),
        Route("/api/builds", builds), Route("/api/builds/{build}", build),
        Route("/api/status", status),
        Route("/builds/{build}", build_page), Route("/files/{build}/{path:path}", files),
        Route("/api/subset", subset)], exception_handlers={HTTPException: http_error},
        lifespan=lifespan)
    app.state.settings = settings
    app.state.subsets = subsets
    app.middleware_stack = app.build_middleware_stack()  # the guard exists before any request
    return app


def _rss(server: int, workers: list[int]) -> dict[str, int | None]:
    """Resident memory [bytes] of the server and of its subset workers together."""
    def one(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0
    return {"server": one(server), "workers": sum(one(p) for p in workers)}


def serve(out: str | Path, host: str = "127.0.0.1", port: int = 8000,
          settings: ServiceSettings | None = None) -> None:
    """Run the service on uvicorn until interrupted."""
    import uvicorn

    if not Path(out).is_dir():
        raise FileNotFoundError(f"{out}: output directory not found")
    uvicorn.run(create_app(out, settings), host=host, port=port, log_level="info")
