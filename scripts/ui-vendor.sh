#!/usr/bin/env bash
# Vendors the graph-layout libraries of `assay ui` and `assay report` from the npm registry, at
# pinned versions, with their licences, into assay/ui/static/vendor/ (git-ignored; the page never
# uses a CDN; the package ships them, so `make install` runs this before pip):
#   Cytoscape.js (MIT) draws the graph; cytoscape-dagre (MIT) lays it out with dagre
#   (@dagrejs/dagre and @dagrejs/graphlib, MIT, bundled inside cytoscape-dagre's dist file; their
#   licences are copied too, at the versions bundled).
# Needs only Python 3 (no Node.js): each tarball is fetched from the registry and checked against
# its pinned sha512 (the registry's dist.integrity) before anything is taken from it.
#
#   bash scripts/ui-vendor.sh          install when missing or when the pins changed (idempotent)
#   bash scripts/ui-vendor.sh --force  install again
# npm_config_registry names a mirror of the registry (default https://registry.npmjs.org/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/assay/ui/static/vendor"
# name, exact version, integrity of its tarball: change them here and nowhere else.
PACKAGES=(
  "cytoscape 3.34.4 sha512-msY99tMY8iWTg+sIPGfSqDcPNOt4xcj+v/K/7qUFaCUxxlqnMkUYLBjRUzn9W5CU/R2hrmtJa5+UtovrEM2ctg=="
  "cytoscape-dagre 4.0.1 sha512-hyNdh8Vp1nwzBcjHnM4c71G81bFhPmQYLXD2HM9AZIvl+8TrMzWEOPW45hF/XOBQiEguPcDQzi6VrXR1XBcXOA=="
  "@dagrejs/dagre 3.0.0 sha512-ZzhnTy1rfuoew9Ez3EIw4L2znPGnYYhfn8vc9c4oB8iw6QAsszbiU0vRhlxWPFnmmNSFAkrYeF1PhM5m4lAN0Q=="
  "@dagrejs/graphlib 4.0.1 sha512-IvcV6FduIIAmLwnH+yun+QtV36SC7mERqa86aClNqmMN09WhmPPYU8ckHrZBozErf+UvHPWOTJYaGYiIcs0DgA=="
)
STAMP="$DEST/.vendored"

want="$(printf '%s\n' "${PACKAGES[@]}")"
if [[ "${1:-}" != "--force" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" \
      && -f "$DEST/cytoscape.min.js" && -f "$DEST/cytoscape-dagre.min.js" ]]; then
  exit 0
fi

tmp="$DEST.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
echo "ui-vendor.sh: fetching ${#PACKAGES[@]} packages from the npm registry" >&2
"${PYTHON:-python3}" - "$tmp" "${npm_config_registry:-https://registry.npmjs.org/}" "${PACKAGES[@]}" <<'PY'
import base64, hashlib, io, json, re, sys, tarfile, urllib.request
from pathlib import Path

dest, registry, specs = Path(sys.argv[1]), sys.argv[2].rstrip("/"), sys.argv[3:]
COPY = {  # package: (its file, the vendored name)
    "cytoscape": [("dist/cytoscape.min.js", "cytoscape.min.js"), ("LICENSE", "LICENSE.cytoscape")],
    "cytoscape-dagre": [("dist/cytoscape-dagre.min.js", "cytoscape-dagre.min.js"), ("LICENSE", "LICENSE.cytoscape-dagre")],
    "@dagrejs/dagre": [("LICENSE", "LICENSE.dagre")],
    "@dagrejs/graphlib": [("LICENSE", "LICENSE.graphlib")],
}
readme = ["Vendored by scripts/ui-vendor.sh from the npm registry, each tarball checked against its pinned sha512;",
          "not edited except for removed source-map comments (they point at files not shipped here)."]
for spec in specs:
    name, version, integrity = spec.split()
    url = f"{registry}/{name}/-/{name.rpartition('/')[2]}-{version}.tgz"
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            data = response.read()
    except OSError as exc:
        sys.exit(f"ui-vendor.sh: cannot fetch {url}: {getattr(exc, 'reason', exc)}")
    got = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if got != integrity:
        sys.exit(f"ui-vendor.sh: {url} has checksum {got}, not the pinned {integrity}")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        meta = json.load(tar.extractfile("package/package.json"))
        for inner, out in COPY[name]:
            body = tar.extractfile(f"package/{inner}").read()
            if out.endswith(".js"):
                body = re.sub(rb"(?m)^//# sourceMappingURL=.*$", b"", body)
            (dest / out).write_bytes(body)
    readme.append(f"{name}@{version}  {meta.get('license')}  {meta.get('homepage') or ''}".rstrip())
readme.append("@dagrejs/dagre and @dagrejs/graphlib are bundled inside cytoscape-dagre.min.js.")
(dest / "README").write_text("\n".join(readme) + "\n")
PY
echo "$want" >"$tmp/.vendored"
rm -rf "$DEST"
mv "$tmp" "$DEST"
echo "ui-vendor.sh: $(ls "$DEST" | tr '\n' ' ')" >&2
