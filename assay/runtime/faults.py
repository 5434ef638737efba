"""Named instants where a test can kill the process as `kill -9` would, to prove exactly-once at
the moments that matter: after the engine wrote a batch's files but before any commit, between
the commits of one batch's tables, after the last commit but before the batch is recorded, and
after a materialized view's refresh landed but before it is recorded; and between the steps of
the event log's compaction (runtime/history.py).

`ASSAY_CRASH_AT=<point>:<n>` kills the process the n-th time (1-based) it reaches <point>. Unset
in normal runs: the check is one dictionary lookup.
"""
from __future__ import annotations

import os
import signal

WRITTEN, BETWEEN_COMMITS, COMMITTED = "written", "between_commits", "committed"
REFRESHED = "refreshed"
KEY_INDEXED = "key_indexed"          # a key index part written, its manifest not yet (runtime/key_index.py)
HISTORY_COMPACTED, HISTORY_CHECKPOINTED = "history_compacted", "history_checkpointed"
_seen: dict[str, int] = {}


def crash_point(name: str) -> None:
    wanted = os.environ.get("ASSAY_CRASH_AT")
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
