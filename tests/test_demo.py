"""`make demo`, the README's first command: it must run end to end and print true answers."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, cli


@pytest.mark.slow
def test_demo_runs_end_to_end_and_its_tables_match_the_truth(tmp_path):
    env = {**os.environ, "ASSAY_DEMO_ROWS": "20000", "ASSAY_DEMO_DIR": str(tmp_path / "demo")}
    result = subprocess.run([sys.executable, "-m", "assay.demo"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for title in ("Top 5 products by purchases on the most recent day", "Daily revenue by category",
                  "Top 10 customers by total purchase value"):
        assert title in result.stdout
    assert "Pipeline ran in" in result.stdout and "Whole demo:" in result.stdout
    demo = tmp_path / "demo"
    verified = cli("verify", "zenith", "--truth", str(demo / "generated" / "truth"), "--storage",
                   str(demo / "storage"), cwd=ROOT, timeout=300)
    assert verified.returncode == 0, verified.stdout + verified.stderr
