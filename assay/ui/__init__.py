"""`assay ui` and `assay report`: the pipeline in a browser.

A small read-only ASGI app (Starlette + uvicorn) serves a JSON API over the event log, the
dataflow graph and the tables, and the static page shipped in `static/`. The graph is laid out
in the browser by Cytoscape.js with its dagre extension, vendored from npm at build time by
`scripts/ui-vendor.sh` (never fetched from a CDN). `assay report` writes the same views as one
self-contained HTML file.

    events.py   the event log, read incrementally, folded into runs, flows and rule counts
    tables.py   the Delta tables: size, schema, history, first rows (delta-rs, no engine)
    graph.py    the declared graph (as `assay graph` builds it) with the last run's states
    sqlbox.py   the read-only SQL box: sqlglot, then the engine, refuse anything but a query
    api.py      the JSON documents, each a plain function of the lake
    app.py      the Starlette app: routes, host check, security headers
    report.py   one self-contained HTML file
    commands.py the `assay ui` and `assay report` commands
"""
