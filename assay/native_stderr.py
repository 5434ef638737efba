"""Keep Rust panic reports off the user's terminal.

The Rust libraries Assay runs in-process (delta-rs, obstore, the embedded engine) report a panic
straight to file descriptor 2 (`thread '…' panicked at …/buffered.rs:369:41: Already shut down`,
and a backtrace under RUST_BACKTRACE), next to the Python exception that Assay turns into a
message naming the table and the cause. The `assay` command therefore reads descriptor 2 through a pipe
and passes on every line to the real stderr but panic reports. ASSAY_DEBUG=1 leaves stderr alone.
"""
from __future__ import annotations

import os
import re
import sys
import threading

_PANIC = re.compile(rb"^thread '.*' (\(\d+\) )?panicked at ")
_PANIC_TAIL = re.compile(rb"^(note: (run with `RUST_BACKTRACE|Some details are omitted)|stack backtrace:|\s+\d+: |\s+at )")

_reader: threading.Thread | None = None


def hide_panics() -> None:
    global _reader
    if os.environ.get("ASSAY_DEBUG") or _reader is not None:
        return
    os.environ["RUST_BACKTRACE"] = "0"        # a backtrace is for Assay's developers (ASSAY_DEBUG=1)
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)                     # Python's own sys.stderr writes there too, passed on as it is
    os.close(write_end)
    _reader = threading.Thread(target=_pass_on, args=(read_end, real), name="assay-stderr", daemon=True)
    _reader.start()


def _pass_on(read_end: int, real: int) -> None:
    state, blank = None, 0   # after a panic's header: "message" (its next line), then "tail" (notes, backtrace)
    with open(read_end, "rb", buffering=0) as pipe:
        pending = b""
        while chunk := pipe.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if _PANIC.match(line):
                    state, blank = "message", 0      # blank lines just before a report are part of it
                elif state == "message":
                    state = "tail"
                elif line == b"":
                    blank += 1
                elif not (state == "tail" and _PANIC_TAIL.match(line)):
                    state = None
                    os.write(real, b"\n" * blank + line + b"\n")
                    blank = 0
        if state is None and (blank or pending):
            os.write(real, b"\n" * blank + pending)


def flush(timeout: float = 0.3) -> None:
    """Before os._exit: let the reader pass on what native code wrote last."""
    if _reader is None:
        return
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)                       # our write end closes: the reader sees the end (unless a child holds it)
    os.close(devnull)
    _reader.join(timeout)
