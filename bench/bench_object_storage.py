"""Object storage against a local folder, on a real S3-compatible server (SeaweedFS, started here by
scripts/seaweedfs.sh on 127.0.0.1 and stopped at the end).

1. Listing: 100 000 landing files (objects), then the plans of bench_listing.py (first plan taking
   1 000 files, nine more batches, a new run reading the seen-set back, a plan finding nothing new),
   in a local folder and under an s3:// prefix, side by side.
2. A whole reference pipeline run (default zenith, 1GB) with landing and storage local, then on S3
   (the same files uploaded in arrival order), each as a whole process with its peak memory, both
   verified against the generated truth.

Usage: python bench/bench_object_storage.py [--files 100000] [--pipeline zenith] [--size 1GB]
                                            [--skip-listing] [--skip-pipeline] [--work DIR]
Prints a table and writes bench/results/object-storage.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from measure import run  # noqa: E402

KEY, SECRET = "assay-bench", "assay-bench-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Seaweed:
    def __init__(self, work: Path):
        self.port = free_port()
        self.env = {**os.environ, "SEAWEEDFS_DATA_DIR": str(work / "seaweedfs"), "SEAWEEDFS_ACCESS_KEY": KEY,
                    "SEAWEEDFS_SECRET_KEY": SECRET, "SEAWEEDFS_WATCH_PID": str(os.getpid())}

    def script(self, *args: str) -> str:
        return subprocess.run(["bash", str(REPO / "scripts" / "seaweedfs.sh"), *args], env=self.env, check=True,
                              capture_output=True, text=True).stdout.strip()

    def __enter__(self):
        self.script("fetch")
        self.endpoint = self.script("start", str(self.port)).splitlines()[-1]
        self.script("bucket", "bench", str(self.port))
        return self

    def __exit__(self, *exc):
        self.script("stop", str(self.port))

    @property
    def options(self) -> dict:
        return {"aws_endpoint": self.endpoint, "aws_access_key_id": KEY, "aws_secret_access_key": SECRET,
                "aws_region": "us-east-1", "allow_http": "true"}

    @property
    def aws_env(self) -> dict:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
                "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}

    def server_pids(self) -> list[int]:
        pid_file = Path(self.env["SEAWEEDFS_DATA_DIR"]) / "weed.pid"
        return [int(pid_file.read_text())] if pid_file.exists() else []


def plans(root, checkpoint) -> dict:
    """bench_listing.py's steps on any root; seconds for each."""
    from assay.sources.base import BatchLimits
    from assay.sources.files import FileSource

    def source():
        return FileSource(root, "json", "id INT", {}, checkpoint)
    out = {}
    limits = BatchLimits(max_files=1000)
    src = source()
    t = time.perf_counter()
    plan = src.plan(None, limits)
    out["first plan (list all, take 1 000)"] = time.perf_counter() - t
    position = plan.end
    t = time.perf_counter()
    while (plan := src.plan(position, BatchLimits(max_files=10_000))) is not None and position < 10:
        position = plan.end
    out["9 more batches of 10 000"] = time.perf_counter() - t
    fresh = source()
    t = time.perf_counter()
    plan = fresh.plan(position, limits)
    out["new run, 91 000 seen, plan"] = time.perf_counter() - t
    while plan is not None:
        position = plan.end
        plan = fresh.plan(position, BatchLimits(max_files=100_000))
    again = source()
    t = time.perf_counter()
    assert again.plan(position, limits) is None
    out["new run, nothing new"] = time.perf_counter() - t
    return out


def listing(store: Seaweed, count: int, work: Path) -> dict:
    from assay import fs
    fs.configure({})
    local = work / "listing-local"
    shutil.rmtree(local, ignore_errors=True)
    names = [f"d{i // 1000:03d}/part-{i:06d}.json" for i in range(count)]
    for d in range(count // 1000 + 1):
        (local / "landing" / f"d{d:03d}").mkdir(parents=True, exist_ok=True)
    for name in names:
        (local / "landing" / name).write_text('{"id": 1}\n')
    local_times = plans(local / "landing", local / "ckpt")
    fs.configure(store.options)
    base = fs.StoragePath("s3://bench/listing")
    started = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda n: fs.write_bytes(base / "landing" / n, b'{"id": 1}\n'), names))
    upload = time.perf_counter() - started
    t = time.perf_counter()
    listed = sum(1 for _ in fs.walk_files(base / "landing"))
    raw_list = time.perf_counter() - t
    s3_times = plans(base / "landing", base / "ckpt")
    print(f"\nlisting {count:,} landing files (uploaded to S3 in {upload:.0f}s with 32 threads; a bare listing "
          f"of the {listed:,} objects: {raw_list:.2f}s)")
    print(f"{'step':34} {'local':>9} {'S3':>9} {'ratio':>7}")
    for step in local_times:
        print(f"{step:34} {local_times[step]:9.3f} {s3_times[step]:9.3f} {s3_times[step] / local_times[step]:7.1f}x")
    return {"files": count, "upload_s": upload, "bare_list_s": raw_list, "local": local_times, "s3": s3_times}


def pipeline_runs(store: Seaweed, pipeline: str, size: str, work: Path) -> dict:
    from assay import fs
    from assay.generator import generate, land_drop
    gen = work / "gen"
    shutil.rmtree(gen, ignore_errors=True)
    t = time.perf_counter()
    manifest = generate(pipeline, gen, size=size, seed=7, drops=1)
    print(f"\n{pipeline} {size}: generated {manifest['rows']:,} rows in {time.perf_counter() - t:.0f}s", flush=True)
    landing, storage = work / "landing", work / "storage"
    for folder in (landing, storage):
        shutil.rmtree(folder, ignore_errors=True)
    land_drop(gen, landing, 0)
    fs.configure(store.options)
    s3 = fs.StoragePath(f"s3://bench/{pipeline}-{int(time.time())}")
    rels = sorted(json.loads((gen / "truth" / "manifest.json").read_text())["files"]["0"])
    t = time.perf_counter()
    for rel in rels:                              # arrival order: S3 times are whole seconds, ties go by path
        fs.write_bytes(s3 / "landing" / rel, (gen / "drops" / "0" / rel).read_bytes())
    upload = time.perf_counter() - t
    project = str(REPO / "pipelines" / pipeline)
    results = {}
    for where, land, store_root, env in (("local", str(landing), str(storage), {}),
                                          ("S3", str(s3 / "landing"), str(s3 / "storage"), store.aws_env)):
        measured = run([sys.executable, "-m", "assay.cli", "run", "-p", project, "--landing", land,
                        "--storage", store_root], cwd=REPO, env={"RUST_LOG": "error", **env},
                       extra_pids=store.server_pids if where == "S3" else (lambda: []))
        if measured.returncode != 0:
            raise SystemExit(f"{where} run failed:\n{measured.output[-3000:]}")
        check = run([sys.executable, "-m", "assay.cli", "verify", pipeline, "-p", project, "--truth",
                     str(gen / "truth"), "--storage", store_root], cwd=REPO, env=env)
        results[where] = {"seconds": round(measured.seconds, 1), "peak_rss_mb": round(measured.peak_rss_mb),
                          "verified": check.returncode == 0}
    print(f"uploaded {len(rels)} landing files ({sum((gen / 'drops' / '0' / r).stat().st_size for r in rels) / 1e6:.0f}"
          f" MB) to S3 in {upload:.0f}s")
    print(f"{'whole assay run':20} {'seconds':>8} {'peak RSS MB':>12} {'verified':>9}")
    for where, r in results.items():
        print(f"{where:20} {r['seconds']:8.1f} {r['peak_rss_mb']:12,} {str(r['verified']):>9}")
    print("(S3 peak RSS includes the SeaweedFS server's)")
    return {"pipeline": pipeline, "size": size, "rows": manifest["rows"], "upload_s": upload, **results}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--pipeline", default="zenith")
    parser.add_argument("--size", default="1GB")
    parser.add_argument("--skip-listing", action="store_true")
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--work", default=None)
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="assay-bench-os-"))
    work.mkdir(parents=True, exist_ok=True)
    out = {}
    with Seaweed(work) as store:
        if not args.skip_listing:
            out["listing"] = listing(store, args.files, work)
        if not args.skip_pipeline:
            out["pipeline"] = pipeline_runs(store, args.pipeline, args.size, work)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "object-storage.json").write_text(json.dumps(out, indent=2, default=str))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
