"""`make demo` on a fresh checkout gives an Assay whose `assay ui` and `assay report` work: `make install`
vendors the UI's graph libraries (git-ignored, so a checkout has none) before pip installs the package.

The checkout is this working tree's files (not those git ignores) in a temporary folder; its virtual environment
sees this one's packages (all but Assay itself), so `make install` downloads only what it must:
the graph libraries and pip's build backend."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT

VENDOR = Path("assay/ui/static/vendor")


def fresh_checkout(folder: Path) -> Path:
    """This working tree's files as a clone would have them: everything but what git ignores."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name)
    return folder


def venv_with_our_packages(checkout: Path, links: Path) -> None:
    """checkout/.venv, where `make install` finds every dependency already installed (links to this
    environment's packages) but not Assay, which it must install from the checkout."""
    ours = Path(sysconfig.get_paths()["purelib"])
    links.mkdir()
    for entry in ours.iterdir():
        if not re.match(r"(assay|__editable__|_*pycache)", entry.name, re.I) and not entry.name.endswith(".pth"):
            (links / entry.name).symlink_to(entry)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(checkout / ".venv")], check=True)
    site = Path(subprocess.run([str(checkout / ".venv/bin/python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "our_packages.pth").write_text(f"{links}\n")


@pytest.mark.slow
def test_make_demo_on_a_fresh_checkout_installs_what_assay_ui_and_assay_report_need(tmp_path):
    checkout = fresh_checkout(tmp_path / "checkout")
    assert not (checkout / VENDOR).exists()                    # git-ignored: a clone has none
    venv_with_our_packages(checkout, tmp_path / "our_packages")
    env = {**os.environ, "ASSAY_DEMO_ROWS": "5000", "ASSAY_DEMO_DIR": str(tmp_path / "demo"), "RUST_LOG": "error"}
    env.pop("VIRTUAL_ENV", None)
    demo = subprocess.run(["make", "demo", f"PYTHON={sys.executable}"], cwd=checkout, env=env, capture_output=True,
                          text=True, timeout=900)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    vendored = {p.name for p in (checkout / VENDOR).iterdir()}
    assert {"cytoscape.min.js", "cytoscape-dagre.min.js", "LICENSE.cytoscape", "LICENSE.cytoscape-dagre",
            "LICENSE.dagre", "LICENSE.graphlib", "README"} <= vendored
    assay = str(checkout / ".venv" / "bin" / "assay")
    located = subprocess.run([str(checkout / ".venv/bin/python"), "-c", "import assay; print(assay.__file__)"],
                             cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert located == str(checkout / "assay" / "__init__.py")     # the Assay make install installed
    project = ["-p", str(checkout / "pipelines" / "zenith"), "--storage", str(tmp_path / "demo" / "storage")]

    report = subprocess.run([assay, "report", "-o", str(tmp_path / "report.html"), *project], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stdout + report.stderr
    html = (tmp_path / "report.html").read_text()
    assert "cytoscape" in html and "gold_daily_product_performance" in html

    server = subprocess.Popen([assay, "ui", *project, "--port", "0"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        url = re.search(r"http://\S+/", server.stdout.readline()).group(0)
        for path in ("", "static/vendor/cytoscape.min.js", "static/vendor/cytoscape-dagre.min.js", "api/graph"):
            with urllib.request.urlopen(url + path, timeout=120) as response:
                assert response.status == 200, path
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
