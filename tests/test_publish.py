"""Publishing without a build: staging, the manifest schema, the atomic switch, verification."""

import json

import pytest

from pipeline.publish import (
    MANIFEST,
    FileEntry,
    Manifest,
    ScenarioInfo,
    add_to_manifest,
    build_lock,
    has_manifest,
    prune,
    publish,
    published_builds,
    read_manifest,
    staging_dir,
    sweep_stale,
    verify_build,
    write_manifest,
)
from sources.errors import BuildLockedError, ConfigError
from sources.files import sha256_file

ID1, ID2, ID3 = "20240101T000000000Z-aaaaaaaa", "20240102T000000000Z-bbbbbbbb", \
    "20240103T000000000Z-cccccccc"


def _staged(out, build_id, text="a"):
    staging = staging_dir(out, build_id)
    (staging / "hourly" / "20240101.nc").write_text(text)
    (staging / "ledger.csv").write_text("species,written_kg\nCO2,1\n")
    write_manifest(staging, Manifest(build_id=build_id, config_hash="f" * 64, config="c.yaml",
                                     year=2024, inputs={"stacks": "0" * 64},
                                     day_content={"20240101": "1" * 64}))
    return staging


def test_manifest_lists_every_file_with_its_sha256_and_round_trips(tmp_path):
    staging = _staged(tmp_path, ID1)
    m = read_manifest(staging)
    assert m.files == {
        "hourly/20240101.nc": FileEntry(sha256_file(staging / "hourly" / "20240101.nc"), 1),
        "ledger.csv": FileEntry(sha256_file(staging / "ledger.csv"), 25)}
    assert m.year == 2024 and m.inputs == {"stacks": "0" * 64} and m.period is None
    doc = json.loads((staging / MANIFEST).read_text())
    assert Manifest.from_json(doc) == m and doc["period"] is None


def test_scenario_fields_keep_the_flat_keys_of_earlier_manifests(tmp_path):
    info = ScenarioInfo(name="plan", file="s.yaml", base_year=2024, target_year=2030,
                        base_config_hash="e" * 64)
    m = Manifest(build_id=ID1, config_hash="f", config="c", year=2024, scenario=info,
                 period=("2024-01-01", "2024-01-02"))
    doc = m.to_json()
    assert doc["scenario"] == "plan" and doc["target_year"] == 2030
    assert doc["period"] == ["2024-01-01", "2024-01-02"]
    assert Manifest.from_json(doc) == m


def test_read_manifest_of_a_directory_without_one_names_it(tmp_path):
    with pytest.raises(ConfigError, match=r"not a Tongyuan build directory \(no manifest.json\)"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text("{")
    with pytest.raises(ConfigError, match="not a readable Tongyuan manifest"):
        read_manifest(tmp_path)
    assert not has_manifest(tmp_path / "nothing")


def test_add_to_manifest_adds_a_subdirectory(tmp_path):
    staging = _staged(tmp_path, ID1)
    (staging / "report").mkdir()
    (staging / "report" / "index.html").write_text("<html>")
    add_to_manifest(staging, "report")
    files = read_manifest(staging).files
    assert files["report/index.html"] == FileEntry(sha256_file(staging / "report" / "index.html"),
                                                   6)
    assert "ledger.csv" in files


def test_publish_switches_latest_and_verify_finds_a_flipped_byte(tmp_path):
    out = tmp_path / "out"
    final = publish(out, _staged(out, ID1), ID1)
    assert (out / "latest").resolve() == final.resolve() and published_builds(out) == [ID1]
    assert verify_build(final) == []
    day = final / "hourly" / "20240101.nc"
    day.write_text("b")  # same size, other byte
    assert verify_build(final) == [f"{ID1}/hourly/20240101.nc: sha256 differs from the manifest"]
    day.unlink()
    assert verify_build(final) == [f"{ID1}/hourly/20240101.nc: missing"]


def test_period_builds_move_their_own_pointer_and_prune_keeps_pointed_builds(tmp_path):
    out = tmp_path / "out"
    publish(out, _staged(out, ID1), ID1)
    publish(out, _staged(out, ID2), ID2, pointer="latest-period")
    publish(out, _staged(out, ID3), ID3, pointer="latest-period")
    assert (out / "latest").resolve().name == ID1
    assert prune(out, keep=1) == [ID2]  # ID1 is what latest points to
    assert published_builds(out) == [ID1, ID3]


def test_a_second_lock_is_refused_and_stale_staging_is_swept(tmp_path):
    out = tmp_path / "out"
    with build_lock(out):
        with pytest.raises(BuildLockedError, match="another build is running"):
            with build_lock(out):
                pass
    _staged(out, ID1)
    assert [p.name for p in sweep_stale(out)] == [f".staging-{ID1}"]
    assert not any(out.glob(".staging-*"))
