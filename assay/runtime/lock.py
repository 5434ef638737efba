"""One run at a time per storage root.

Local storage: an exclusive flock on `<system>/pipeline.lock`, released by the kernel even on kill -9.

Object storage (no flock there): a lease object at the same place, taken and kept with the store's
conditional writes only (assay.fs: put-if-absent, replace-if-ETag-matches), so two runs can never both
believe they hold it:

- take: create the object if absent; or replace a released one, or a stale one, on the condition
  that it is still the very version read (its ETag). Of two runs racing for the same lock, the
  store lets exactly one conditional write through.
- keep: the holder rewrites it every `ttl/4` seconds, again conditional on its own last ETag; a
  failed renewal means someone took the lock over, and the holder stops before its next commit.
- stale: the holder runs on this machine (same boot) and its process is gone (kill -9, a crash):
  taken over at once; otherwise only when the lease has not been renewed for `ttl` seconds by the
  store's own clock (the object's last-modified time against a probe object written just now, so
  clocks of different machines never matter).
- commits are fenced: before each Delta commit and checkpoint record the holder checks that its last
  renewal succeeded less than `ttl/2` ago by its own monotonic clock. A lock can be taken over only
  after `ttl` without renewal, so a holder that could still commit always has ttl/2 to spare; only a
  process frozen for longer than that inside one commit call could overlap a new holder.
- release: the object is replaced by a "released" record (conditional on our ETag), never deleted,
  so a late release can never remove someone else's lock.

Delta commits stay single-writer per table under this lock, which is what lets delta-rs commit on S3
without a locking provider (docs/object-storage.md, Delta commits on S3).
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import uuid

from .. import fs
from .. import processes
from ..errors import PipelineLocked

DEFAULT_TTL_S = float(os.environ.get("ASSAY_LOCK_TTL", "60"))


class PipelineLock:
    def __init__(self, folder, ttl_s: float | None = None):
        folder = fs.as_path(folder)
        self.path = folder / "pipeline.lock"
        self._impl = _FileLock(self.path) if folder.is_local else _Lease(self.path, ttl_s or DEFAULT_TTL_S)

    def acquire(self) -> None:
        self._impl.acquire()

    def release(self) -> None:
        self._impl.release()

    def fence(self) -> None:
        """Raise unless this run may still commit (BatchRun and Checkpoint call it before each
        commit and record): a lease on object storage may be lost; a local flock cannot be."""
        check = getattr(self._impl, "check", None)
        if check is not None:
            check()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


def _who(info: dict) -> str:
    try:
        host = f" on {info['host']}" if info.get("host") and info["host"] != socket.gethostname() else ""
        return f"process {info['pid']}{host} started at {info['started']}"
    except (KeyError, TypeError):
        return "another process"


def _locked(info: dict, root) -> PipelineLocked:
    return PipelineLocked(f"another `assay run` ({_who(info)}) is using the storage at {root}; "
                          "wait for it to finish (or stop it) and run again. Nothing was written.")


def _identity() -> dict:
    return {"pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": socket.gethostname(), "boot": _boot_id(), "pid_start": processes.start_time(os.getpid())}


class _FileLock:
    def __init__(self, path):
        self.path = path
        self._handle = None

    def acquire(self) -> None:
        local = str(self.path)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        handle = open(local, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            try:
                info = json.loads(holder)
            except ValueError:
                info = {}
            raise _locked(info, self.path.parent.parent) from None
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


class _Lease:
    def __init__(self, path, ttl_s: float):
        self.path = path
        self.ttl_s = ttl_s
        self.owner = uuid.uuid4().hex
        self._etag: str | None = None
        self._renewed = 0.0                   # monotonic time of the last successful write
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()
        self._identity = _identity()

    def _record(self, state: str = "held") -> bytes:
        return json.dumps({**self._identity, "owner": self.owner, "state": state, "ttl_s": self.ttl_s,
                           "renewed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode()

    def acquire(self) -> None:
        for _ in range(5):
            written = time.monotonic()
            try:
                self._etag = fs.put_if_absent(self.path, self._record())
                break
            except fs.PreconditionFailed:
                pass
            current = fs.get_with_etag(self.path)
            if current is None:
                continue                      # released and removed by hand meanwhile: try again
            data, etag = current
            try:
                info = json.loads(data or b"{}")
            except ValueError:
                info = {}
            if info.get("state") != "released" and not self._stale(info):
                raise _locked(info, self.path.parent.parent)
            try:
                self._etag = fs.put_if_match(self.path, self._record(), etag)
                break
            except fs.PreconditionFailed:
                continue                      # someone else moved first: look again
        else:
            raise PipelineLocked(f"could not take the lock {self.path}: it changed under every attempt")
        self._renewed = written
        self._thread = threading.Thread(target=self._keep, name="assay-lease", daemon=True)
        self._thread.start()

    def _stale(self, info: dict) -> bool:
        if info.get("boot") and info.get("boot") == _boot_id():
            pid = info.get("pid")
            return not (isinstance(pid, int) and processes.alive(pid, info.get("pid_start")))
        info_head = fs.head(self.path)
        if info_head is None:
            return True
        probe = self.path.parent / f".lock-probe-{self.owner}"
        fs.write_bytes(probe, b"")
        now = fs.head(probe)
        fs.delete(probe)
        ttl = float(info.get("ttl_s") or self.ttl_s)
        return now is not None and (now.mtime_ns - info_head.mtime_ns) / 1e9 > ttl

    def _keep(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            with self._mutex:
                if self._lost:
                    return
                written = time.monotonic()
                try:
                    self._etag = fs.put_if_match(self.path, self._record(), self._etag)
                    self._renewed = written
                except fs.PreconditionFailed:
                    self._lost = "another run took the lock over"
                except Exception as exc:       # the store did not answer: try again next round
                    if time.monotonic() - self._renewed > self.ttl_s / 2:
                        self._lost = f"the lock could not be renewed: {exc}"

    def check(self) -> None:
        """Raise unless this run may still write: called before every commit."""
        if self._lost or time.monotonic() - self._renewed > self.ttl_s / 2:
            reason = self._lost or f"its lease was not renewed for {time.monotonic() - self._renewed:.0f} s"
            raise PipelineLocked(f"this run no longer holds {self.path} ({reason}); it stopped before "
                                 "committing. The next run repairs the interrupted batch.")

    def release(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=10)
        self._thread = None
        with self._mutex:
            if self._lost or self._etag is None:
                return
            try:
                fs.put_if_match(self.path, self._record("released"), self._etag)
            except fs.PreconditionFailed:
                pass


def held(folder) -> bool:
    """Whether a live process holds the lock of this storage now (`assay history` tells a run in
    progress from one that was killed)."""
    folder = fs.as_path(folder)
    path = folder / "pipeline.lock"
    if folder.is_local:
        try:
            handle = open(str(path))
        except FileNotFoundError:
            return False
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
    current = fs.get_with_etag(path)
    try:
        info = json.loads(current[0] or b"{}") if current else {}
    except ValueError:
        return False
    return bool(info) and info.get("state") != "released" and not _Lease(path, DEFAULT_TTL_S)._stale(info)


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            return handle.read().strip()
    except OSError:
        return None
