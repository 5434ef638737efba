"""How many times a batch opens a Delta table (each open reads the table's log: a listing of
_delta_log and the commits since the last checkpoint; on an object store every one is requests).

Runs the `assay init` scaffold (bronze with quarantine, silver deduplicated with a watermark,
a gold view) in process over FILES landing files, one file per batch, and counts the
`deltalake.DeltaTable` opens between a batch's start and its record, per flow. The control
plane's reads only: the engine's own reads of the data are not counted.

Usage: python bench/delta_log_reads.py [--files 6] [--s3]
  --s3: storage and landing on SeaweedFS (scripts/seaweedfs.sh, started on 127.0.0.1 and stopped).
Prints one line per flow: batches, opens, opens per batch.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import deltalake  # noqa: E402

from assay import fs  # noqa: E402
from assay.runtime.runner import RunOptions, Runner  # noqa: E402
from assay.scaffold import create_project, sample_orders  # noqa: E402
from assay.spec import load_spec  # noqa: E402

OPENS = [0]


def count_opens() -> None:
    original = deltalake.DeltaTable.__init__

    def counted(self, *args, **kwargs):
        OPENS[0] += 1
        return original(self, *args, **kwargs)
    deltalake.DeltaTable.__init__ = counted


class CountingRunner(Runner):
    """Attributes the opens between a batch's start and its record to that batch's flow."""
    per_flow: dict = defaultdict(lambda: [0, 0])      # flow -> [batches, opens]

    def _batch_started(self, name, batch):
        self._opens_at = OPENS[0]
        super()._batch_started(name, batch)

    def _progress(self, graph, name, batch, result, offsets, seconds, ctx):
        super()._progress(graph, name, batch, result, offsets, seconds, ctx)
        entry = self.per_flow[name]
        entry[0] += 1
        entry[1] += OPENS[0] - self._opens_at


def land(landing, files: int) -> None:
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    for f in range(files):
        rows = [{**r, "order_id": f"f{f}-{r['order_id']}"} for r in sample_orders(200, start + timedelta(hours=f))]
        fs.write_bytes(landing / "orders" / f"orders-{f:04d}.json",
                       "".join(json.dumps(r) + "\n" for r in rows).encode())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--s3", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        folder = create_project(Path(work) / "shop")
        (folder / "landing" / "orders" / "orders-0001.json").unlink()
        if args.s3:
            from bench_object_storage import KEY, SECRET, Seaweed
            with Seaweed(Path(work)) as store:
                os.environ.update({"BENCH_S3_KEY": KEY, "BENCH_S3_SECRET": SECRET})
                with open(folder / "assay.yml", "a") as config:      # credentials only as references
                    config.write(f"storage_options:\n  aws_endpoint: '{store.endpoint}'\n"
                                 "  aws_access_key_id: '${env:BENCH_S3_KEY}'\n"
                                 "  aws_secret_access_key: '${env:BENCH_S3_SECRET}'\n"
                                 "  aws_region: us-east-1\n  allow_http: 'true'\n")
                base = "s3://bench/log-reads"
                spec = load_spec(folder, storage=f"{base}/storage", landing=f"{base}/landing")
                fs.configure(spec.storage_options)
                land(fs.StoragePath(f"{base}/landing"), args.files)
                report(spec, "S3 (SeaweedFS)")
        else:
            land(folder / "landing", args.files)
            report(load_spec(folder), "local folder")


def report(spec, where: str) -> None:
    count_opens()
    CountingRunner(spec, RunOptions(max_files=1)).run()
    print(f"Delta table opens per batch, {where}:")
    for flow, (batches, opens) in CountingRunner.per_flow.items():
        print(f"  {flow:<16} batches={batches:<3} opens={opens:<4} per batch={opens / batches:.1f}")


if __name__ == "__main__":
    main()
