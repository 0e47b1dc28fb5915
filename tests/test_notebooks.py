"""The notebooks in notebooks/ run top to bottom on a demo build (one day, for speed), and are
committed without outputs."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture(scope="module")
def demo_day_build(tmp_path_factory, prefect_harness):
    from pipeline.flows import build_inventory

    out = tmp_path_factory.mktemp("demo-day")
    summary = build_inventory(str(REPO / "config" / "shanghai.yaml"), out_dir=str(out),
                              period=("2024-01-15", "2024-01-15"))
    return Path(summary.build_dir)


def test_notebooks_are_committed_without_outputs():
    assert len(NOTEBOOKS) >= 3
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, demo_day_build, monkeypatch):
    monkeypatch.setenv("TONGYUAN_BUILD", str(demo_day_build))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
