"""Errors a user sees: each names what is wrong and where, in one paragraph, without a traceback."""
from __future__ import annotations


class AssayError(Exception):
    """An error that the CLI prints as a short paragraph and turns into a non-zero exit code."""
    exit_code = 1


class ConfigError(AssayError):
    """assay.yml is missing, malformed, or names something that does not exist."""
    exit_code = 2


class GraphError(AssayError):
    """The dataflow graph is invalid: unknown datasets or columns, cycles, duplicate names."""
    exit_code = 3


class FlowError(AssayError):
    """A flow failed while running: its query raised, or the engine rejected it."""
    exit_code = 4


class ExpectationFailed(AssayError):
    """An expectation whose action is `fail` was violated; nothing of the batch was written.
    `batch` holds the failing batch's counts (rows read, each rule's passed and failed rows),
    which the flow's failure event records."""
    exit_code = 5

    def __init__(self, message: str, batch=None):
        super().__init__(message)
        self.batch = batch


class PipelineLocked(AssayError):
    """Another run holds the pipeline's storage."""
    exit_code = 6


class SchemaChanged(AssayError):
    """New columns appeared in a source; they are recorded and picked up on the next run."""
    exit_code = 7


class StorageUnwritable(AssayError):
    """The storage root cannot be written: read-only, no permission, or full."""
    exit_code = 8


_UNWRITABLE = {  # errno: what it means for the storage root, and what to do
    30: ("is read-only", "mount it writable, or point --storage / ASSAY_STORAGE at a writable folder"),
    13: ("cannot be written by this user (permission denied)",
         "give this user write access, or point --storage / ASSAY_STORAGE at a folder it can write"),
    1: ("cannot be written by this user (operation not permitted)",
        "give this user write access, or point --storage / ASSAY_STORAGE at a folder it can write"),
    28: ("is full (no space left on device)", "free some space (`assay vacuum` deletes unreferenced files)"),
    122: ("is over its disk quota", "free some space (`assay vacuum` deletes unreferenced files)"),
}


def storage_unwritable(exc: BaseException, root) -> StorageUnwritable | None:
    """`exc` in Assay's words when it (or what caused it) is the storage refusing writes: an OSError's
    errno, or the `(os error N)` that Rust libraries (delta-rs, the engine) put in their messages."""
    import re
    seen = exc
    while seen is not None:
        code = seen.errno if isinstance(seen, OSError) else None
        found = re.search(r"\(os error (\d+)\)", str(seen))
        code = code if code in _UNWRITABLE else int(found.group(1)) if found else None
        if code in _UNWRITABLE:
            what, todo = _UNWRITABLE[code]
            path = getattr(seen, "filename", None)
            if path and not str(path).startswith(str(root)):      # not the storage: a landing file, say
                return StorageUnwritable(f"{path} {what.replace('be written', 'be used')}: {seen.strerror}")
            at = f" (writing {path})" if path and str(path) != str(root) else ""
            cause = (seen.strerror if isinstance(seen, OSError) and seen.errno else None) or \
                " ".join(line.strip(" ↳") for line in re.sub(r"\x1b\[[0-9;]*m", "", str(seen)).strip().splitlines())
            return StorageUnwritable(f"the storage at {root} {what}{at}: {cause}. {todo[0].upper()}{todo[1:]}, "
                                     "then run again: an interrupted batch is repaired by the next run.")
        seen = seen.__cause__ or seen.__context__
    return None
