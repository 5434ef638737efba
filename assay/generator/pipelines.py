"""The generators by pipeline name: how to land each one's files and compute its truth."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from . import (activity_data, activity_truth, clickstream, clickstream_truth, customers_data, customers_truth, zenith_data,
               zenith_truth)
from .sink import Sink


@dataclass(frozen=True)
class Generated:
    tables: dict            # truth table name -> pyarrow.Table (empty when truth is skipped)
    metrics: dict
    injected: dict          # what the generator actually injected (for knob sanity checks)


@dataclass(frozen=True)
class PipelineDef:
    name: str
    run: Callable[[int, int, dict, int, Sink, bool], Generated]
    approx_distinct: dict = field(default_factory=dict)   # table -> columns a pipeline may approximate


def _zenith(seed, rows, knobs, drops, sink, truth):
    d = zenith_data.build(seed, rows, knobs, drops)
    zenith_data.write(d, sink, seed)
    tables, metrics = zenith_truth.compute(d, seed) if truth else ({}, {})
    return Generated(tables, metrics, d.injected)


def _activity(seed, rows, knobs, drops, sink, truth):
    d = activity_data.build(seed, rows, knobs, drops)
    activity_data.write(d, sink)
    tables, metrics = activity_truth.compute(d) if truth else ({}, {})
    return Generated(tables, metrics, d.injected)


def _customers(seed, rows, knobs, drops, sink, truth):
    d = customers_data.build(seed, rows, knobs, drops)
    customers_data.write(d, sink)
    tables, metrics = customers_truth.compute(d) if truth else ({}, {})
    return Generated(tables, metrics, d.injected)


def _clickstream(seed, rows, knobs, drops, sink, truth):
    key = clickstream_truth.key_from_env(knobs["pii_key_env"]) if truth else None     # before writing anything
    d = clickstream.build(seed, rows, knobs, drops)
    clickstream.write(d, sink)
    tables, metrics = clickstream_truth.compute(d, key, knobs["pii_key_version"]) if truth else ({}, {})
    return Generated(tables, metrics, d.injected)


PIPELINES: dict[str, PipelineDef] = {
    "zenith": PipelineDef("zenith", _zenith, {"customer_purchase_summary": ["distinct_products_purchased"]}),
    "activity_logs": PipelineDef("activity_logs", _activity),
    "customers_stream": PipelineDef("customers_stream", _customers),
    "clickstream": PipelineDef("clickstream", _clickstream),
}
