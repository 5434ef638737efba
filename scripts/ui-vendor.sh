#!/usr/bin/env bash
# Vendors the graph-layout libraries of `assay ui` from the npm registry, at pinned versions,
# with their licences, into assay/ui/static/vendor/ (git-ignored; the page never uses a CDN):
#   Cytoscape.js (MIT) draws the graph; cytoscape-dagre (MIT) lays it out with dagre
#   (@dagrejs/dagre and @dagrejs/graphlib, MIT, bundled inside cytoscape-dagre's dist file; their
#   licences are copied too, at the versions bundled: dagre 3.0.0, graphlib 4.0.1).
#
#   bash scripts/ui-vendor.sh          install when missing or when the pins changed (idempotent)
#   bash scripts/ui-vendor.sh --force  install again
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/assay/ui/static/vendor"
WORK="$ROOT/.cache/ui-vendor"
# Exact versions; change them here and nowhere else.
PACKAGES=(cytoscape@3.34.4 cytoscape-dagre@4.0.1 @dagrejs/dagre@3.0.0 @dagrejs/graphlib@4.0.1)
STAMP="$DEST/.vendored"

die() { echo "ui-vendor.sh: $*" >&2; exit 1; }

want="${PACKAGES[*]}"
if [[ "${1:-}" != "--force" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" \
      && -f "$DEST/cytoscape.min.js" && -f "$DEST/cytoscape-dagre.min.js" ]]; then
  exit 0
fi
command -v npm >/dev/null 2>&1 || die "npm is required (Node.js) to vendor ${PACKAGES[*]}"

rm -rf "$WORK"
mkdir -p "$WORK"
cat >"$WORK/package.json" <<JSON
{"name": "assay-ui-vendor", "version": "0.0.0", "private": true, "license": "UNLICENSED"}
JSON
echo "ui-vendor.sh: npm install ${PACKAGES[*]}" >&2
# --ignore-scripts: nothing of these packages runs here; --save-exact pins the lock file too
(cd "$WORK" && npm install --no-audit --no-fund --ignore-scripts --save-exact --loglevel=error "${PACKAGES[@]}" >/dev/null) \
  || die "npm install failed"

M="$WORK/node_modules"
check_version() {  # name version
  local got
  got="$(node -e "process.stdout.write(require(process.argv[1]).version)" "$M/$1/package.json")"
  [[ "$got" == "$2" ]] || die "$1: wanted $2, npm installed $got"
}
for spec in "${PACKAGES[@]}"; do
  name="${spec%@*}"; version="${spec##*@}"
  check_version "$name" "$version"
done

tmp="$DEST.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
cp "$M/cytoscape/dist/cytoscape.min.js" "$tmp/cytoscape.min.js"
cp "$M/cytoscape/LICENSE" "$tmp/LICENSE.cytoscape"
cp "$M/cytoscape-dagre/dist/cytoscape-dagre.min.js" "$tmp/cytoscape-dagre.min.js"
cp "$M/cytoscape-dagre/LICENSE" "$tmp/LICENSE.cytoscape-dagre"
cp "$M/@dagrejs/dagre/LICENSE" "$tmp/LICENSE.dagre"
cp "$M/@dagrejs/graphlib/LICENSE" "$tmp/LICENSE.graphlib"
# source-map comments point at files not shipped here
sed -i -e 's|^//# sourceMappingURL=.*$||' "$tmp/cytoscape.min.js" "$tmp/cytoscape-dagre.min.js"
{
  echo "Vendored by scripts/ui-vendor.sh from the npm registry; not edited except for removed source-map comments."
  for spec in "${PACKAGES[@]}"; do
    name="${spec%@*}"
    echo "$spec  $(node -e "const p=require(process.argv[1]); process.stdout.write(p.license + '  ' + (p.homepage || ''))" "$M/$name/package.json")"
  done
  echo "@dagrejs/dagre and @dagrejs/graphlib are bundled inside cytoscape-dagre.min.js."
} >"$tmp/README"
echo "$want" >"$tmp/.vendored"
rm -rf "$DEST"
mv "$tmp" "$DEST"
echo "ui-vendor.sh: $(ls "$DEST" | tr '\n' ' ')" >&2
