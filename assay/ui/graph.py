"""The dataflow graph the UI draws: what the code declares (built like `assay graph`), with each
node's state and row counts in one run of the event log.

Nodes are datasets (id: the dataset's name), the sources they ingest (`source:files:PATH`,
`source:kafka:TOPIC`), flows that are not the only flow of their table (`flow:NAME`, append
flows), and the quarantine and late-rows tables beside their table. Each node carries its
layer (sources, then the layers of assay.yml: landing, bronze, silver, gold, then any other
schema), which the page draws as columns.
"""
from __future__ import annotations

from pathlib import Path

from ..spec import PipelineSpec
from .events import COUNTS, INTERRUPTED, Run, zero_counts
from .tables import LATE_SUFFIX, QUARANTINE_SUFFIX, layer_of

SOURCES_LAYER = "sources"
LAYER_ORDER = ("landing", "bronze", "silver", "gold")
# How one table's several flows combine into its state: the first that any flow has wins.
STATE_PRIORITY = ("failed", "running", INTERRUPTED, "completed")


def project_path(spec: PipelineSpec, location: str | None) -> str | None:
    """'file:line' as the loader wrote it (relative to the process's folder) → relative to the
    project folder, as the user knows it ('transformations/orders.py:12')."""
    if not location:
        return location
    file, sep, line = str(location).rpartition(":")
    if not sep or not line.isdigit():
        return location
    try:
        path = (Path.cwd() / file).resolve()
        return f"{path.relative_to(spec.root.resolve())}:{line}"
    except (OSError, ValueError):
        return location


def declared_graph(spec: PipelineSpec, engine) -> dict:
    """Flows and datasets as the code declares them, analysed as `assay graph` does (read-only)."""
    from ..runtime.services import analyse
    g = analyse(spec, engine).graph
    flows = []
    for name in g.order:
        flow = g.registry.flows[name]
        analysis = g.analyses[name]
        sources = []
        for src in analysis.sources:
            if src.kind == "delta":
                continue
            value = src.args.get("path") or src.args.get("topics")
            if isinstance(value, (list, tuple)):
                value = ",".join(map(str, value))
            sources.append(f"{src.kind}:{value}")
        flows.append({"flow": name, "target": flow.target, "reads": sorted(analysis.static_reads),
                      "streams": sorted(analysis.stream_reads), "sources": sources,
                      "defined_at": project_path(spec, str(flow.location))})
    datasets = {}
    for ds in g.registry.datasets.values():
        dedupe = getattr(ds, "dedupe", None)
        datasets[ds.name] = {
            "kind": ds.kind, "schema": spec.schema_for(ds.schema_name), "comment": ds.comment,
            "defined_at": project_path(spec, str(ds.location)), "private": bool(getattr(ds, "private", False)),
            "quarantine": bool(getattr(ds, "quarantine", False)),
            "late": bool(dedupe is not None and getattr(dedupe, "watermark", None)),
            "partition_cols": list(getattr(ds, "partition_cols", ()) or ()),
            "cluster_by": list(getattr(ds, "cluster_by", ()) or ()),
            "expectations": [{"name": e.name, "action": e.action, "sql": e.sql}
                             for e in getattr(ds, "expectations", ())]}
    return {"flows": flows, "datasets": datasets}


def graph_from_events(spec: PipelineSpec, runs: list[Run], declared: dict) -> dict:
    """The graph as far as the event log and catalog.json tell it (when the code cannot be loaded):
    each flow's latest inputs and outputs."""
    flows: dict[str, dict] = {}
    for run in runs:
        for fr in run.flows.values():
            inputs = [str(i) for i in (fr.inputs or [])]
            sources = []
            for batch in fr.batches:
                for key in (batch.get("sources") or {}) if isinstance(batch.get("sources"), dict) else {}:
                    source = _source_name(spec, str(key))
                    if source and source not in sources:
                        sources.append(source)
            flows[fr.flow] = {"flow": fr.flow, "target": fr.target or fr.flow,
                              "reads": sorted(i for i in inputs if i.startswith("files:") or i in declared),
                              "streams": [], "sources": sources or flows.get(fr.flow, {}).get("sources", []),
                              "defined_at": declared.get(fr.target or fr.flow, {}).get("defined_at")}
            for out in fr.outputs or []:
                if out == (fr.target or fr.flow) + QUARANTINE_SUFFIX:
                    flows[fr.flow]["has_quarantine"] = True
                if out == (fr.target or fr.flow) + LATE_SUFFIX:
                    flows[fr.flow]["has_late"] = True
    datasets = {}
    for name, entry in declared.items():
        datasets[name] = {"kind": entry.get("kind"), "schema": entry.get("schema"), "comment": entry.get("comment"),
                          "defined_at": entry.get("defined_at"), "private": False,
                          "quarantine": any(f.get("has_quarantine") for f in flows.values() if f["target"] == name),
                          "late": any(f.get("has_late") for f in flows.values() if f["target"] == name),
                          "partition_cols": entry.get("partition_cols") or [],
                          "cluster_by": entry.get("cluster_by") or [], "expectations": []}
    for flow in flows.values():
        datasets.setdefault(flow["target"], {"kind": "table", "schema": None, "comment": None, "defined_at": None,
                                             "private": False, "quarantine": False, "late": False,
                                             "partition_cols": [], "cluster_by": [], "expectations": []})
    return {"flows": sorted(flows.values(), key=lambda f: f["flow"]), "datasets": datasets}


def _source_name(spec: PipelineSpec, key: str) -> str | None:
    """An event log source key ('files:json:/landing/x', 'kafka:topic') as the graph names it
    ('files:x' relative to the landing root); Delta increments are edges, not sources."""
    kind, _, rest = key.partition(":")
    if kind == "delta" or not rest:
        return None
    if kind == "files":
        path = rest.partition(":")[2] or rest
        landing = str(spec.landing).rstrip("/") + "/"
        return f"files:{path[len(landing):] if path.startswith(landing) else path}"
    return f"{kind}:{rest}"


def layers_of(spec: PipelineSpec, nodes: list[dict]) -> list[str]:
    present = {n["layer"] for n in nodes}
    ordered = [SOURCES_LAYER, *LAYER_ORDER]
    rest = sorted(present - set(ordered) - {"system"})
    return [layer for layer in [*ordered, *rest, "system"] if layer in present]


def assemble(spec: PipelineSpec, decl: dict, run: Run | None, run_open: bool) -> dict:
    """Nodes and edges of the declared graph, each dataset with its state and counts in `run`."""
    flows_by_target: dict[str, list[dict]] = {}
    for flow in decl["flows"]:
        flows_by_target.setdefault(flow["target"], []).append(flow)
    nodes: dict[str, dict] = {}
    edges: dict[str, dict] = {}

    def edge(source: str, target: str, kind: str) -> None:
        key = f"{source}->{target}"
        if source in nodes and target in nodes and key not in edges:
            edges[key] = {"id": key, "source": source, "target": target, "kind": kind}

    def state_of(flow_names: list[str]) -> tuple[str, dict, dict]:
        counts, extra = zero_counts(), {"batches": 0, "duration_s": 0.0, "message": None}
        if run is None:
            return "never", counts, extra
        states = []
        for name in flow_names:
            fr = run.flows.get(name)
            if fr is None:
                continue
            states.append(fr.state(run_open))
            for key in COUNTS:
                counts[key] += fr.counts[key]
            extra["batches"] += len(fr.batches)
            extra["duration_s"] += float(fr.duration_s or 0)
            extra["message"] = extra["message"] or fr.message
        for state in STATE_PRIORITY:
            if state in states:
                return state, counts, extra
        return ("queued" if run_open else "skipped"), counts, extra

    for name, ds in decl["datasets"].items():
        schema = ds.get("schema")
        layer = layer_of(spec, schema) if schema else "other"
        flow_names = [f["flow"] for f in flows_by_target.get(name, [])]
        state, counts, extra = state_of(flow_names)
        if ds.get("kind") == "temporary_view":
            state = "view" if run is not None else "never"
        nodes[name] = {"id": name, "label": name, "type": "dataset", "kind": ds.get("kind"), "layer": layer,
                       "schema": schema, "state": state, **counts, **extra, "flows": flow_names,
                       "defined_at": ds.get("defined_at"), "comment": ds.get("comment"),
                       "expectations": ds.get("expectations") or [],
                       "partition_cols": ds.get("partition_cols") or [], "cluster_by": ds.get("cluster_by") or []}
        for suffix, flag, count in ((QUARANTINE_SUFFIX, "quarantine", "rows_quarantined"),
                                    (LATE_SUFFIX, "late", "rows_late")):
            if ds.get(flag):
                side = name + suffix
                nodes[side] = {"id": side, "label": side, "type": "side", "kind": flag, "layer": layer,
                               "schema": schema, "state": state, "parent_dataset": name,
                               **zero_counts(), "rows_written": counts[count], "flows": flow_names,
                               "defined_at": ds.get("defined_at")}

    for flow in decl["flows"]:
        for src in flow["sources"] + [r for r in flow["reads"] if r.startswith("files:")]:
            sid = f"source:{src}"
            if sid not in nodes:
                kind, _, label = src.partition(":")
                nodes[sid] = {"id": sid, "label": label, "type": "source", "kind": kind, "layer": SOURCES_LAYER,
                              "schema": None, "state": "source", **zero_counts(), "flows": [],
                              "defined_at": None}
        if flow["target"] not in nodes:
            continue
        separate = len(flows_by_target.get(flow["target"], [])) > 1 or flow["flow"] != flow["target"]
        into = flow["target"]
        if separate:
            fid = f"flow:{flow['flow']}"
            state, counts, extra = state_of([flow["flow"]])
            nodes[fid] = {"id": fid, "label": flow["flow"], "type": "flow", "kind": "flow",
                          "layer": nodes[flow["target"]]["layer"], "schema": nodes[flow["target"]]["schema"],
                          "state": state, **counts, **extra, "flows": [flow["flow"]],
                          "defined_at": flow.get("defined_at")}
            into = fid
        for src in flow["sources"]:
            edge(f"source:{src}", into, "source")
        for read in flow["reads"]:
            edge(f"source:{read}" if read.startswith("files:") else read, into, "read")
        for read in flow["streams"]:
            edge(read, into, "stream")
        if separate:
            edge(into, flow["target"], "flow")
    for node in list(nodes.values()):
        if node["type"] == "side":
            edge(node["parent_dataset"], node["id"], node["kind"])
        if node["type"] == "dataset" and node["defined_at"] is None and node["flows"]:
            node["defined_at"] = next((f.get("defined_at") for f in decl["flows"] if f["flow"] in node["flows"]),
                                      None)
    node_list = list(nodes.values())
    return {"nodes": node_list, "edges": list(edges.values()), "layers": layers_of(spec, node_list)}
