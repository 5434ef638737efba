"""A materialized view's input fingerprint: what its refresh depends on (the versions of the tables
it reads, the files of the folders it reads whole, its code and the configuration). Equal
fingerprints mean the refresh would recompute the same rows, so the runner skips it."""
from __future__ import annotations

import hashlib
import inspect
import json
from time import time_ns

from ..delta.table import current_version


def input_fingerprint(services, flow_name: str) -> str:
    return digest(input_parts(services, flow_name))


def digest(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def input_parts(services, flow_name: str) -> dict:
    """What the fingerprint hashes: configuration, code, and per read a table version (an int), a
    folder's files, or a temporary view's own fingerprint."""
    graph = services.graph
    flow = graph.registry.flows[flow_name]
    parts: dict = {"configuration": {k: str(v) for k, v in sorted(graph.spec.configuration.items())}}
    try:
        parts["code"] = flow.sql if flow.sql is not None else inspect.getsource(flow.func)
    except (OSError, TypeError):
        parts["code"] = None                      # unknown code: never skip
        parts["nonce"] = time_ns()
    for read in sorted(graph.analyses[flow_name].static_reads):
        if read.startswith("files:"):
            parts[read] = [(e.path, e.size, e.mtime_ns) for s in services.files.whole_folders(flow_name, read)
                           for e in s.list_files()]
        elif read in graph.registry.datasets and graph.dataset(read).is_table:
            parts[read] = current_version(services.table_path(read))
        else:                                     # a temporary view: its own inputs count
            for writer in graph.registry.flows_into(read):
                parts[read] = input_fingerprint(services, writer.name)
    return parts
