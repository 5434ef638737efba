"""Assay: medallion lakehouse pipelines that run on a laptop in seconds and on Apache Spark unchanged."""
__version__ = "0.1.0"
