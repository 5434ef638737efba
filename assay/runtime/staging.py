"""The pipeline's scratch space: files a batch or a publish writes before they land, cleared after."""
from __future__ import annotations

from pathlib import Path


def staging_dir(spec, owner: str) -> Path:
    """The staging folder of a flow (or of "publish"), under the pipeline's system folder."""
    return spec.system_dir / "staging" / owner
