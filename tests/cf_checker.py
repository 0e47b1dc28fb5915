"""The IOOS compliance-checker on a file, as a modeller runs it: its command line, ``--test
cf:1.8 --criteria strict``, offline (the standard-name table it packages)."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest


def cf_findings(path: str | Path) -> dict:
    """The checker's failed checks on ``path``: ``high``, ``medium``, ``low`` counts,
    ``messages`` (priority, section and message of each) and ``errors`` (checks the checker
    itself could not run, from its stderr)."""
    exe = Path(sys.executable).with_name("compliance-checker")
    if not exe.exists():
        pytest.skip("compliance-checker is not installed (pip install -e .[test])")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        res = subprocess.run([str(exe), "--test", "cf:1.8", "--criteria", "strict", "-f", "json",
                              "-o", str(report), str(path)],
                             capture_output=True, text=True, timeout=120)
        r = json.loads(report.read_text())["cf:1.8"]
    messages = [f"{prio.split('_')[0]}: {check['name']}: {msg}"
                for prio in ("high_priorities", "medium_priorities", "low_priorities")
                for check in r[prio] for msg in check["msgs"]]
    errors = res.stderr if "exceptions occurred" in res.stderr else ""
    return {"high": r["high_count"], "medium": r["medium_count"], "low": r["low_count"],
            "messages": messages, "errors": errors, "returncode": res.returncode}


def assert_cf_clean(path: str | Path) -> None:
    """0 high, 0 medium, 0 low findings, every check run, exit code 0."""
    f = cf_findings(path)
    assert (f["high"], f["medium"], f["low"], f["errors"], f["returncode"]) == (0, 0, 0, "", 0), \
        f"{Path(path).name}: {f}"
