"""Where an `assay run` spends its wall time, from a py-spy profile of it.

    pip install py-spy        # a profiler, not a dependency of Assay
    py-spy record --idle --rate 25 --format raw -o profile.txt -- python -m assay.cli run -p pipelines/zenith ...
    python bench/profile_summary.py profile.txt [--top 12]

`--idle` keeps the samples where the Assay process waits, which is most of them: the engine (in
the process on Sail, a JVM on Spark) executes each query on its own threads while the Python thread
that asked waits. Each sample is given to the deepest frame of Assay's own code on its stack (the
step that asked for the work: a write of a batch's files, a commit, a count, the planning), then to
the Assay function one level up for context. Samples of other threads than the main one (the
progress reporter, gRPC pollers) are left out when the main thread's samples can be told apart.
"""
from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^():]+?)(?::(?P<line>\d+))?\)$")


def frames(stack: str) -> list[tuple[str, str, str]]:
    out = []
    for raw in stack.split(";"):
        m = FRAME.match(raw.strip())
        if m:
            out.append((m["func"], m["file"], m["line"] or ""))
    return out


def summarise(path: Path, top: int = 12) -> list[str]:
    steps: Counter = Counter()
    callers: dict[str, Counter] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        chain = frames(stack)
        if not any(f[1] == "assay/cli.py" for f in chain):      # not the main thread's work
            continue
        n = int(count)
        total += n
        own = [f for f in chain if f[1].startswith("assay/")]
        if not own:
            continue
        func, file, line_no = own[-1]
        key = f"{func} ({file}:{line_no})"
        steps[key] += n
        caller = own[-2] if len(own) > 1 else ("-", "", "")
        callers.setdefault(key, Counter())[f"{caller[0]} ({caller[1]}:{caller[2]})"] += n
    lines = [f"{total:,} samples of the main thread; the deepest Assay frame of each (share of wall time):"]
    for key, n in steps.most_common(top):
        called_from = callers[key].most_common(1)[0][0]
        lines.append(f"  {100 * n / max(total, 1):5.1f}%  {key}   <- {called_from}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    print("\n".join(summarise(args.profile, args.top)))


if __name__ == "__main__":
    main()
