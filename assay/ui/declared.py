"""What the last run recorded about each declared table (catalog.json), read for the UI's pages:
the table list (tables.py) and the graph and status documents (api.py) both need it."""
from __future__ import annotations

import json

from .. import catalog
from ..spec import PipelineSpec


def declared_datasets(spec: PipelineSpec) -> dict:
    """catalog.json as a mapping ({} before any run, or when it cannot be read: the UI still
    shows the tables and the event log without it)."""
    path = spec.system_dir / catalog.CATALOG_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
