"""`assay report`: the views of `assay ui` as one self-contained HTML file, for CI artefacts and
e-mail. The page is the same (index.html, app.js, style.css, the vendored graph libraries, all
inlined); instead of asking the server, it reads the API documents written into the file. Its
Content-Security-Policy allows no network access at all: nothing is fetched when it is opened.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from .api import Lake, redact
from .app import STATIC, VENDOR_FILES

REPORT_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
              "base-uri 'none'; form-action 'none'")
PAGE = 50                       # the runs page's page size (app.js PAGE)
QUALITY_WINDOWS = (10, 20, 50)  # the data-quality page's choices


def key(path: str, **params) -> str:
    """The document's key, built as app.js builds its request URLs (same order, same escaping)."""
    parts = [f"{quote(k, safe='')}={quote(str(v), safe='')}" for k, v in params.items() if v not in (None, "")]
    return path + ("?" + "&".join(parts) if parts else "")


class _Documents(dict):
    """Documents by key; one that cannot be made (an unreadable table) is kept as its error,
    which the page shows where the document would have been."""

    def add(self, name: str, make) -> object:
        try:
            self[name] = make()
        except Exception as exc:
            self[name] = {"__error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
        return self[name]


def collect(lake: Lake, runs: int = 1000, run_details: int = 20, graphs: int = 10, rows: int = 100) -> dict:
    """Every document the report's pages can ask for."""
    data = _Documents()
    data[key("/api/overview")] = lake.overview()
    data[key("/api/state")] = lake.state()
    graph = lake.graph()
    data[key("/api/graph")] = graph
    first = lake.runs(0, PAGE)
    total = min(first["total"], runs)
    for offset in range(0, max(total, 1), PAGE):
        data[key("/api/runs", offset=offset, limit=PAGE)] = first if offset == 0 else lake.runs(offset, PAGE)
    recent = lake.runs(0, max(run_details, graphs, 1))["runs"]
    for summary in recent[:run_details]:
        data[key("/api/runs/" + quote(summary["run_id"], safe=""))] = lake.run(summary["run_id"])
    for summary in recent[:graphs]:
        data[key("/api/graph", run=summary["run_id"])] = lake.graph(summary["run_id"])
    quality = None
    for last in QUALITY_WINDOWS:
        quality = lake.quality(last)
        data[key("/api/quality", last=last)] = quality
    tables = lake.tables_list()
    data[key("/api/tables")] = tables
    for table in tables["tables"]:
        name = table["name"]
        data.add(key("/api/tables/" + quote(name, safe=""), preview=20), lambda: lake.table(name, 20))
    # The data-quality page's row panels: quarantined rows (all, and per rule) and late rows.
    for entry in (quality or {}).get("tables", []):
        if entry.get("quarantine_table"):
            name = entry["quarantine_table"]
            data.add(key(f"/api/tables/{quote(name, safe='')}/rows", limit=rows), lambda: lake.table_rows(name, rows))
            for rule in entry["rules"]:
                data.add(key(f"/api/tables/{quote(name, safe='')}/rows", limit=rows, rule=rule["name"]),
                         lambda: lake.table_rows(name, rows, rule["name"]))
        if entry.get("late_table"):
            name = entry["late_table"]
            data.add(key(f"/api/tables/{quote(name, safe='')}/rows", limit=rows), lambda: lake.table_rows(name, rows))
    return dict(data)


def _script_text(text: str) -> str:
    """JavaScript safe inside <script>: a literal '</script' would end the element."""
    return re.sub(r"</(script)", r"<\\/\1", text, flags=re.IGNORECASE)


def render(lake: Lake, **limits) -> str:
    missing = [name for name in VENDOR_FILES if not (STATIC / "vendor" / name).is_file()]
    if missing:
        from ..errors import AssayError
        raise AssayError(f"the graph library is not vendored ({', '.join(missing)} missing): run "
                         "`bash scripts/ui-vendor.sh` (or `make ui-vendor`) first")
    written = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    payload = {"written": written, "pipeline": lake.spec.name, "data": collect(lake, **limits)}
    blob = json.dumps(redact(payload), default=str, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    # inside <script type=application/json>, only '<' can end the element early
    blob = blob.replace("<", "\\u003c")
    html = (STATIC / "index.html").read_text()
    html = html.replace('<meta charset="utf-8">',
                        f'<meta charset="utf-8">\n<meta http-equiv="Content-Security-Policy" content="{REPORT_CSP}">', 1)
    css = (STATIC / "style.css").read_text()
    html = html.replace('<link rel="stylesheet" href="/static/style.css">', "<style>\n" + css.replace("</", "<\\/") +
                        "\n</style>", 1)

    def inline(match: re.Match) -> str:
        src = match.group(1)
        path = STATIC / src.removeprefix("/static/")
        return "<script>\n" + _script_text(path.read_text()) + "\n</script>"
    head, _, tail = html.partition('<script src="/static/vendor/')
    tail = '<script src="/static/vendor/' + tail
    data_tag = f'<script id="assay-report" type="application/json">{blob}</script>\n'
    tail = re.sub(r'<script src="(/static/[^"]+)"></script>', lambda m: inline(m), tail)
    return head + data_tag + tail


def write_report(lake: Lake, out: str | Path, **limits) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(lake, **limits), encoding="utf-8")
    return path
