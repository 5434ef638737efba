"""Silver: typed, globally deduplicated on log_id, enriched with the region of the IP's network."""
import ipaddress

import numpy as np
import pandas as pd
from pyspark.sql import functions as F

from assay import pipelines as dp


def network_ranges(geo: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted (first address, last address, region) of non-overlapping networks."""
    if geo.empty:
        return np.array([], np.int64), np.array([], np.int64), np.array([], object)
    nets = [ipaddress.ip_network(n, strict=False) for n in geo["network"]]
    first = np.array([int(n.network_address) for n in nets], np.int64)
    last = np.array([int(n.broadcast_address) for n in nets], np.int64)
    order = np.argsort(first)
    return first[order], last[order], geo["region"].to_numpy(object)[order]


def ip_to_int(ips: pd.Series) -> np.ndarray:
    octets = ips.str.split(".", expand=True).astype(np.int64).to_numpy()
    return (octets[:, 0] << 24) | (octets[:, 1] << 16) | (octets[:, 2] << 8) | octets[:, 3]


def region_udf(first: np.ndarray, last: np.ndarray, regions: np.ndarray):
    """A pandas UDF finding each address's network by binary search (networks never overlap)."""
    @F.pandas_udf("string")
    def region_of_ip(ips: pd.Series) -> pd.Series:
        if ips.empty:
            return pd.Series([], dtype=object)
        addresses = ip_to_int(ips)
        index = np.searchsorted(first, addresses, side="right") - 1
        found = (index >= 0) & (addresses <= last[np.clip(index, 0, None)]) if len(first) else \
            np.zeros(len(addresses), bool)
        out = np.full(len(addresses), "Unknown", dtype=object)
        out[found] = regions[index[found]]
        return pd.Series(out)
    return region_of_ip


@dp.table(name="silver.silver_activity_logs",
          comment="One row per log_id across all files and runs (earliest event_time kept), with region.")
@dp.dedupe(keys=["log_id"], order_by=["event_time", "_source_file"])
def silver_activity_logs():
    geo = dp.read("bronze_geo_ip").toPandas()       # a few thousand networks: searched on the workers
    region_of_ip = region_udf(*network_ranges(geo))
    logs = dp.read_stream("bronze_activity_logs")
    return logs.select(
        F.trim("log_id").alias("log_id"), F.trim("user_id").alias("user_id"),
        F.to_timestamp("event_time").alias("event_time"), "ip_address", "content_id", "action",
        F.col("watch_time_seconds").cast("int").alias("watch_time_seconds"),
        region_of_ip(F.col("ip_address")).alias("region"),
        F.to_date(F.to_timestamp("event_time")).alias("event_date"),
        "_source_file")
