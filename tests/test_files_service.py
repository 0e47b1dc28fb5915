"""The download service: catalogue, JSON API, downloads with Range, subsets, refusals."""

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import xarray as xr

from pipeline.files_service import create_app
from sources.files import sha256_file
from tests.world import write_world


@pytest.fixture(scope="module")
def served(tmp_path_factory, prefect_harness):
    from pipeline.flows import build_inventory

    root = tmp_path_factory.mktemp("served")
    cfg = write_world(root)
    s = build_inventory(str(cfg), out_dir=str(root / "out"), period=("2024-03-01", "2024-03-02"))
    out = root / "out"
    (out / ".staging-20990101T000000000Z-deadbeef").mkdir()  # never listed
    return out, Path(s.build_dir).name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Live:
    """The app on uvicorn in a thread, on a free loopback port."""

    def __init__(self, out):
        import uvicorn

        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(create_app(out), host="127.0.0.1",
                                                    port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=60)
        return self

    def __exit__(self, *exc):
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def live(served):
    with _Live(served[0]) as srv:
        yield srv


def test_catalogue_and_json_api(served, live):
    out, build = served
    c = live.client
    r = c.get("/")
    assert r.status_code == 200 and "Tongyuan inventory builds" in r.text
    data = c.get("/api/builds").json()
    assert [b["build"] for b in data["builds"]] == [build]
    b = data["builds"][0]
    assert b["pointers"] == ["latest-period"] and b["days"] == 2 and b["year"] == 2024
    assert (b["first_day"], b["last_day"]) == ("20240301", "20240302")
    detail = c.get(f"/api/builds/{build}").json()
    files = {f["path"]: f for f in detail["files"]}
    f = files["hourly/20240301.nc"]
    assert f["sha256"] == sha256_file(out / build / "hourly" / "20240301.nc")
    assert f["url"] == f"/files/{build}/hourly/20240301.nc"
    page = c.get(f"/builds/{build}")
    assert page.status_code == 200 and "hourly/20240302.nc" in page.text


def test_download_whole_and_by_range(served, live):
    out, build = served
    c = live.client
    path = out / build / "hourly" / "20240301.nc"
    whole = c.get(f"/files/{build}/hourly/20240301.nc")
    assert whole.status_code == 200 and whole.content == path.read_bytes()
    part = c.get(f"/files/{build}/hourly/20240301.nc", headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.content == path.read_bytes()[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{path.stat().st_size}"
    bad = c.get(f"/files/{build}/hourly/20240301.nc",
                headers={"Range": f"bytes={path.stat().st_size + 10}-"})
    assert bad.status_code == 416


def test_subset_is_a_netcdf_with_the_same_values(served, live):
    out, build = served
    c = live.client
    r = c.get("/api/subset", params={"build": build, "species": "CO2,NOx",
                                     "start": "2024-03-01T20", "end": "2024-03-02T03",
                                     "bbox": "120.9,30.7,120.94,30.73"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-netcdf"
    tmp = out.parent / "subset.nc"
    tmp.write_bytes(r.content)
    with xr.open_dataset(tmp) as sub, xr.open_mfdataset(
            sorted((out / build / "hourly").glob("*.nc")), combine="by_coords",
            data_vars="minimal", coords="minimal", compat="override") as full:
        assert set(sub.data_vars) >= {"CO2", "NOx", "cell_area"} and "SO2" not in sub
        assert sub.sizes["time"] == 8
        assert float(sub["lon"].min()) >= 120.9 - 0.01 and sub.sizes["x"] < full.sizes["x"]
        ref = full["CO2"].sel(time=sub["time"], x=sub["x"], y=sub["y"])
        np.testing.assert_array_equal(sub["CO2"].values, ref.values)


@pytest.mark.parametrize("url, status", [
    ("/api/builds/20990101T000000000Z-deadbeef", 404),                  # unknown build
    ("/api/builds/..", 404),
    ("/files/20990101T000000000Z-deadbeef/manifest.json", 404),
    ("/files/{build}/../../../etc/passwd", 404),                        # traversal
    ("/files/{build}/%2e%2e/%2e%2e/etc/passwd", 404),
    ("/files/{build}/hourly/../../{build}/manifest.json", 404),
    ("/files/{build}/outside_link", 404),                               # not in the manifest
    ("/files/.staging-20990101T000000000Z-deadbeef/x", 404),
    ("/api/subset?build={build}&species=XX&start=2024-03-01T00&end=2024-03-01T01", 400),
    ("/api/subset?build={build}&species=CO2", 400),
    ("/api/subset?build={build}&species=CO2&start=2024-03-05T00&end=2024-03-05T01", 404),
    ("/api/subset?build={build}&species=CO2&start=2024-03-01T05&end=2024-03-01T01", 400),
    ("/api/subset?build={build}&species=CO2&start=2024-03-01T00&end=2024-03-01T01&bbox=1,2",
     400),
    ("/api/subset?build={build}&species=CO2&start=&end=2024-03-01T01", 400),
    ("/api/subset?build={build}&species=CO2&start=2024-03-01T00%2B08:00&end=2024-03-01T01",
     400),
])
def test_refusals(served, live, url, status):
    out, build = served
    link = out / build / "outside_link"
    if not link.exists():
        link.symlink_to("/etc/passwd")
    c = live.client
    r = c.get(url.format(build=build))
    assert r.status_code == status, r.text
    assert "root:" not in r.text
    assert r.headers["content-type"].startswith("application/json")


def test_a_symlink_in_the_manifest_leading_out_is_refused(served, tmp_path):
    """Even a listed file is refused when its real path leaves the build."""
    import json

    out, build = served
    copy = tmp_path / "out"
    shutil.copytree(out / build, copy / build, symlinks=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (copy / build / "hourly" / "20240301.nc").unlink()
    (copy / build / "hourly" / "20240301.nc").symlink_to(secret)
    assert "hourly/20240301.nc" in json.loads((copy / build / "manifest.json").read_text())[
        "files"]
    with _Live(copy) as srv:
        r = srv.client.get(f"/files/{build}/hourly/20240301.nc")
    assert r.status_code == 403 and "secret" not in r.text


def test_catalogue_page_in_headless_chromium(served, live, tmp_path):
    """The catalogue's table is filled by its script from the JSON API: a real browser shows
    the build row."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian chromium is not installed (.ci/run installs it)")
    out, build = served
    res = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                          f"--user-data-dir={tmp_path / 'profile'}",
                          "--virtual-time-budget=5000", "--dump-dom", f"{live.url}/"],
                         capture_output=True, text=True, timeout=120)
    dom = res.stdout
    assert "1 published builds" in dom, res.stderr[-2000:]
    assert f'<a href="builds/{build}">{build}</a>' in dom
    assert "latest-period" in dom


def test_cli_serve_files_bad_arguments(tmp_path, capsys):
    from pipeline.cli import main

    assert main(["serve-files", "--out", str(tmp_path / "nope")]) == 2
    assert "output directory" in capsys.readouterr().err
    assert main(["serve-files", "--out", str(tmp_path), "--port", "70000"]) == 2
    assert "not a port number" in capsys.readouterr().err
