"""Assay's incremental runtime: checkpointed micro-batches over batch DataFrames, on every engine."""
