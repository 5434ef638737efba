"""Reproducible installs: every package Assay imports is declared with an exact pin, and the lock
(constraints.txt, used by `make install`) pins everything those bring in, at the versions this
environment runs the tests with."""
import ast
import re
import sys
from importlib import metadata

from packaging.markers import default_environment
from packaging.requirements import Requirement

from tests.conftest import ROOT


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> dict[str, list[Requirement]]:
    text = (ROOT / "pyproject.toml").read_text()
    lists = {}
    for key in ("dependencies", "test"):
        block = re.search(rf"^{key} = \[(.*?)\]$", text, re.M | re.S).group(1)   # "psycopg[binary]": ] inside
        lists[key] = [Requirement(r) for r in re.findall(r'"([^"]+)"', block)]
    return lists


def lock() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pins = [line.split("==") for line in lines if line.strip() and not line.startswith("#")]
    return {canonical(name): version.strip() for name, version in pins}


def test_every_declared_dependency_is_pinned_exactly():
    loose = [str(r) for reqs in declared().values() for r in reqs
             if len(r.specifier) != 1 or next(iter(r.specifier)).operator != "=="]
    assert loose == []


def test_every_imported_package_is_declared():
    """A module imported by assay/ must come from a declared dependency, not from one that
    another package happens to bring in today."""
    owners = metadata.packages_distributions()
    runtime = {canonical(r.name) for r in declared()["dependencies"]}
    missing = set()
    for path in (ROOT / "assay").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "assay":
                    continue
                dists = {canonical(d) for d in owners.get(top, [top])}
                if not dists & runtime:
                    missing.add(f"{top} ({path.relative_to(ROOT)})")
    assert sorted(missing) == []


def test_the_lock_holds_every_dependency_at_the_tested_version():
    pins = lock()
    reqs = declared()
    queue = [(r, set()) for r in reqs["dependencies"]] + [(r, {"test"}) for r in reqs["test"]]
    seen, problems = set(), []
    while queue:
        req, extras = queue.pop()
        name = canonical(req.name)
        if req.marker and not any(req.marker.evaluate({**default_environment(), "extra": e})
                                  for e in (extras or {""})):
            continue
        if name in seen:
            continue
        seen.add(name)
        installed = metadata.version(req.name)
        if pins.get(name) != installed:
            problems.append(f"{name}: installed {installed}, lock {pins.get(name)}")
        queue += [(Requirement(r), set(req.extras)) for r in metadata.requires(req.name) or []]
    assert problems == []
    assert set(pins) - seen - {"pip"} == set(), "the lock pins packages nothing needs: run make lock"


def test_make_install_uses_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    assert "-c constraints.txt -e '.[test]'" in makefile and "$(STAMP): pyproject.toml constraints.txt" in makefile
