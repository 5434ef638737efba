"""Deterministic, vectorised source data for the pipelines, with the exact expected output.

    manifest = generate("zenith", "data/zenith", rows=100_000, seed=0, drops=2)
    land_drop("data/zenith", "landing/zenith", 0)

writes out_dir/drops/<k>/<landing-relative paths> and out_dir/truth/{<table>.parquet,
manifest.json}. See assay.verify to compare a pipeline's tables with the truth.
"""
from .api import generate, land_drop
from .pipelines import PIPELINES

__all__ = ["generate", "land_drop", "PIPELINES"]
