"""A loader process for the kill -9 tests of the PostgreSQL sink (tests/test_postgres_sink.py).

    python -m tests.postgres_loader '<json>'

The JSON names the sink configuration, the table, its keys, and the batches in order
(app_id, batch_id, files). Each batch not yet recorded is upserted; the process prints
`COPY <batch_id>` once the COPY of a batch is under way (its first file was streamed and the
second is being asked for) and `DONE <batch_id>` after the commit, so that the test can kill
it mid-COPY.
"""
from __future__ import annotations

import json
import sys


def files_announcing(batch_id: int, files: list[str]):
    """The batch's files, lazily; asking for the second one means the COPY is streaming."""
    for i, path in enumerate(files):
        if i == 1:
            print(f"COPY {batch_id}", flush=True)
        yield path


def main() -> None:
    job = json.loads(sys.argv[1])
    from assay.sinks.postgres import PostgresSink
    with PostgresSink(job["config"]) as sink:
        for batch in job["batches"]:
            result = sink.upsert_batch(job["table"], files_announcing(batch["batch_id"], batch["files"]),
                                       job["keys"], app_id=batch["app_id"], batch_id=batch["batch_id"])
            print(f"{'SKIP' if result.skipped else 'DONE'} {batch['batch_id']}", flush=True)


if __name__ == "__main__":
    main()
