"""The day files and their content-addressed store, without a build."""

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline.day_store import (
    WriteContext,
    day_content_hash,
    previous_days,
    stored_days,
    write_days,
)
from pipeline.writers.netcdf_cf import static_coords


def _cube(tables, value=1e-9, days=2):
    g = tables.grid
    time = pd.date_range("2024-03-01", periods=24 * days, freq="h").to_numpy()
    flux = np.full((len(time), g.ny, g.nx), value)
    flux[:, 0, 0] = np.arange(len(time)) * value  # hours differ
    attrs = {"units": "kg m-2 s-1", "grid_mapping": "crs"}
    return xr.Dataset({"CO2": (("time", "y", "x"), flux, attrs)},
                      coords={"time": time, "y": g.y, "x": g.x})


def _ctx(tables, folder, build_id="20240101T000000000Z-aaaaaaaa", store=None, previous=None):
    return WriteContext(hourly_dir=folder, static=static_coords(tables.grid),
                        attrs={"tongyuan_build_id": build_id, "tongyuan_code_version": "t"},
                        year=2024, dtype="float64", complevel=1, shuffle=False,
                        previous=previous or {}, store=store)


def test_write_days_measures_the_mass_each_file_carries(tables, tmp_path):
    cube, area = _cube(tables), tables.grid.cell_area_m2
    got = write_days(cube, [pd.Timestamp("2024-03-01")], _ctx(tables, tmp_path / "h"), area)
    assert got.files == [str(tmp_path / "h" / "20240301.nc")] and got.reused == {}
    expected = float((cube["CO2"].isel(time=slice(0, 24)) * area).sum()) * 3600.0
    assert got.written["20240301"]["CO2"] == pytest.approx(expected, rel=1e-12)
    with netCDF4.Dataset(got.files[0]) as nc:
        assert nc["CO2"].shape == (24, tables.grid.ny, tables.grid.nx)
        assert nc.tongyuan_build_id == "20240101T000000000Z-aaaaaaaa"


def test_content_hash_ignores_global_attributes_but_not_values(tables):
    day = _cube(tables).isel(time=slice(0, 24))
    a = day_content_hash(day, _ctx(tables, None, build_id="20240101T000000000Z-aaaaaaaa"))
    b = day_content_hash(day, _ctx(tables, None, build_id="20240202T000000000Z-bbbbbbbb"))
    changed = day.copy(deep=True)
    changed["CO2"][3, 1, 1] *= 1 + 1e-15
    assert a == b != day_content_hash(changed, _ctx(tables, None))
    other_code = _ctx(tables, None)
    other_code.attrs["tongyuan_code_version"] = "u"
    assert day_content_hash(day, other_code) != a


def test_a_stored_day_is_linked_not_rewritten_by_the_next_build(tables, tmp_path):
    store, cube, area = tmp_path / "store", _cube(tables), tables.grid.cell_area_m2
    days = [pd.Timestamp("2024-03-01"), pd.Timestamp("2024-03-02")]
    first = write_days(cube, days, _ctx(tables, tmp_path / "b1", store=store), area)
    assert len(stored_days(store)) == 2
    second = write_days(cube, days, _ctx(tables, tmp_path / "b2", store=store,
                                         build_id="20240202T000000000Z-bbbbbbbb"), area)
    assert second.reused == {"20240301": "20240101T000000000Z-aaaaaaaa",
                             "20240302": "20240101T000000000Z-aaaaaaaa"}
    assert second.content == first.content and second.written == first.written
    for a, b in zip(first.files, second.files, strict=True):
        assert (tmp_path / a).stat().st_ino == (tmp_path / b).stat().st_ino  # the same file


def test_previous_days_reads_the_pointed_build(tmp_path):
    from pipeline.publish import Manifest, publish, staging_dir, write_manifest

    out, bid = tmp_path / "out", "20240101T000000000Z-aaaaaaaa"
    staging = staging_dir(out, bid)
    (staging / "hourly" / "20240301.nc").write_text("x")
    write_manifest(staging, Manifest(build_id=bid, config_hash="f", config="c", year=2024,
                                     day_content={"20240301": "h1", "20240302": "h2"},
                                     reused_days={"20240302": "older"}))
    assert previous_days(out / "latest") == {}
    publish(out, staging, bid)
    build = out / bid
    assert previous_days(out / "latest") == {
        "20240301": ("h1", str(build / "hourly" / "20240301.nc"), bid),
        "20240302": ("h2", str(build / "hourly" / "20240302.nc"), "older")}
