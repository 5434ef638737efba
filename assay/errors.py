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
