"""Whether a process named by its pid is still alive (a lock holder, a server Assay started)."""
from __future__ import annotations

import os


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (None off Linux or once gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> str | None:
    """A process's start time in clock ticks since boot: tells a reused pid apart."""
    fields = _stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else None


def alive(pid: int, start: str | None = None) -> bool:
    """True while the process runs; a zombie (exited, not yet reaped by its parent) is not alive,
    nor is another process that reused the pid when the original's `start` time is given."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat_fields(pid)
    if fields and fields[0] in ("Z", "X"):
        return False
    return start is None or start_time(pid) in (None, start)
