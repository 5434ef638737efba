"""One run at a time per storage root: an exclusive flock, released by the kernel even on kill -9."""
from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from ..errors import PipelineLocked


class PipelineLock:
    def __init__(self, folder: Path):
        self.path = Path(folder) / "pipeline.lock"
        self._handle = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            try:
                info = json.loads(holder)
                who = f"process {info['pid']} started at {info['started']}"
            except (ValueError, KeyError):
                who = "another process"
            raise PipelineLocked(f"another `assay run` ({who}) is using the storage at {self.path.parent.parent}; "
                                 "wait for it to finish (or stop it) and run again. Nothing was written.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
