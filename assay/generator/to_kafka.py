"""Send a generated data set's lines to a Kafka topic at a steady rate, creating the topic if needed."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Iterator

from .kafka_producer import ensure_topic, produce

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/s|/sec|/second)?\s*$")


def parse_rate(text: str | None) -> float | None:
    """'5000/s' → 5000.0; None or 'max' → unthrottled."""
    if text is None or str(text).strip() in ("", "max"):
        return None
    match = _RATE.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"'{text}' is not a rate (write e.g. 5000/s)")
    return float(match.group(1))


def _lines(out_dir: Path) -> Iterator[bytes]:
    manifest = json.loads((out_dir / "truth" / "manifest.json").read_text())
    for drop in range(manifest["drops"]):
        for rel in sorted(manifest["files"][str(drop)]):
            if not rel.endswith(".json"):
                continue
            with open(out_dir / "drops" / str(drop) / rel, "rb") as handle:
                for line in handle:
                    line = line.rstrip(b"\r\n")
                    if line:
                        yield line


def _key(line: bytes) -> bytes | None:
    """The message key: the record's customer_id (keeps one customer's changes in one partition)."""
    try:
        value = json.loads(line).get("customer_id")
    except (ValueError, AttributeError):
        return None
    return None if value is None else str(value).encode()


def _throttled(lines: Iterator[bytes], rate: float | None) -> Iterator[tuple]:
    started = time.monotonic()
    for sent, line in enumerate(lines):
        if rate is not None:
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        yield (_key(line), line)


def send(out_dir, bootstrap: str, topic: str, rate: float | None = None, options: dict | None = None,
         partitions: int = 3) -> int:
    """Produce every JSON line of every drop, in arrival order; the number of messages sent. A missing
    topic is created first with `partitions` partitions (replication 1)."""
    ensure_topic(bootstrap, topic, partitions, options)
    return produce(bootstrap, topic, _throttled(_lines(Path(out_dir)), rate), options=options,
                   timeout_s=3600)
