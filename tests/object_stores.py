"""pytest plugin: real object stores on 127.0.0.1 for the whole session, started by the project's
scripts: SeaweedFS's S3 gateway (scripts/seaweedfs.sh, `weed` built from its Go module) and Azurite's
Blob service (scripts/azurite.sh, from npm). Nothing is mocked and nothing is skipped: a missing
toolchain fails the fixture with the reason and the server's log tail.

Each store gives `storage_options` as assay.yml takes them (credentials as ${env:...} references to
variables this plugin sets) and `uri(prefix)` for a fresh location in its bucket or container.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import sys
import subprocess
import urllib.error
import urllib.request
import uuid
from email.utils import formatdate
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT_S = 1800       # the first build of weed from its Go module
START_TIMEOUT_S = 120

S3_KEY, S3_SECRET = "assay-test", "assay-test-secret-" + uuid.uuid4().hex[:8]
# Azurite's well-known development account and key (public, documented by Microsoft).
AZ_ACCOUNT = "devstoreaccount1"
AZ_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    script = ""
    env_prefix = ""

    def __init__(self, port: int, data_dir: Path):
        self.port = port
        self.data_dir = Path(data_dir)

    def _run(self, *args: str, timeout: float, env: dict | None = None) -> str:
        env = dict(os.environ, **{f"{self.env_prefix}_DATA_DIR": str(self.data_dir),
                                  f"{self.env_prefix}_WATCH_PID": str(os.getpid())}, **self.extra_env(), **(env or {}))
        try:
            proc = subprocess.run(["bash", str(ROOT / "scripts" / self.script), *args], cwd=ROOT, env=env, text=True,
                                  capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"`{self.script} {' '.join(args)}` did not finish in {timeout:g}s\n"
                               f"{e.stdout or ''}{e.stderr or ''}\n{self.log_tail()}") from None
        if proc.returncode != 0:
            raise RuntimeError(f"`{self.script} {' '.join(args)}` failed (exit {proc.returncode}):\n"
                               f"{proc.stdout}{proc.stderr}\n--- log tail ---\n{self.log_tail()}")
        return proc.stdout.strip()

    def extra_env(self) -> dict:
        return {}

    def log_tail(self, lines: int = 40) -> str:
        for name in ("weed.log", "azurite.log"):
            log = self.data_dir / name
            if log.exists():
                return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def stop(self, grace_s: int | None = None) -> None:
        """SIGTERM, SIGKILL after `grace_s` (the script's default; 0: SIGKILL at once)."""
        env = None if grace_s is None else {f"{self.env_prefix}_STOP_TIMEOUT": str(grace_s)}
        self._run("stop", str(self.port), timeout=60, env=env)


class SeaweedS3(_Server):
    """SeaweedFS's S3 gateway with one signed identity and a bucket `assay`."""
    script, env_prefix = "seaweedfs.sh", "SEAWEEDFS"
    bucket = "assay"
    env = {"ASSAY_TEST_S3_KEY": S3_KEY, "ASSAY_TEST_S3_SECRET": S3_SECRET}

    def extra_env(self) -> dict:
        return {"SEAWEEDFS_ACCESS_KEY": S3_KEY, "SEAWEEDFS_SECRET_KEY": S3_SECRET}

    def start(self) -> None:
        self._run("fetch", timeout=BUILD_TIMEOUT_S)
        self.endpoint = self._run("start", str(self.port), timeout=START_TIMEOUT_S).splitlines()[-1]
        self._run("bucket", self.bucket, str(self.port), timeout=START_TIMEOUT_S)

    @property
    def storage_options(self) -> dict:
        return {"aws_endpoint": self.endpoint, "aws_access_key_id": "${env:ASSAY_TEST_S3_KEY}",
                "aws_secret_access_key": "${env:ASSAY_TEST_S3_SECRET}", "aws_region": "us-east-1",
                "allow_http": "true"}

    @property
    def resolved_options(self) -> dict:
        return {**self.storage_options, "aws_access_key_id": S3_KEY, "aws_secret_access_key": S3_SECRET}

    def uri(self, prefix: str = "") -> str:
        return f"s3://{self.bucket}/{prefix or uuid.uuid4().hex[:10]}"


class AzuriteBlob(_Server):
    """Azurite's Blob service with a container `lake`."""
    script, env_prefix = "azurite.sh", "AZURITE"
    container = "lake"
    env = {"ASSAY_TEST_AZ_KEY": AZ_KEY}

    def start(self) -> None:
        self._run("fetch", timeout=BUILD_TIMEOUT_S)
        self.endpoint = self._run("start", str(self.port), timeout=START_TIMEOUT_S).splitlines()[-1]
        self.create_container(self.container)

    def create_container(self, name: str) -> None:
        """Azurite has no command for it: one Create Container request signed with the account key."""
        date, version = formatdate(usegmt=True), "2021-08-06"
        headers = {"x-ms-date": date, "x-ms-version": version}
        canonical = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
        to_sign = "PUT\n" + "\n" * 11 + canonical + f"/{AZ_ACCOUNT}/{AZ_ACCOUNT}/{name}\nrestype:container"
        signature = base64.b64encode(hmac.new(base64.b64decode(AZ_KEY), to_sign.encode(),
                                              hashlib.sha256).digest()).decode()
        request = urllib.request.Request(f"{self.endpoint}/{name}?restype=container", method="PUT", headers={
            **headers, "Authorization": f"SharedKey {AZ_ACCOUNT}:{signature}", "Content-Length": "0"})
        try:
            urllib.request.urlopen(request, timeout=30).close()
        except urllib.error.HTTPError as e:
            if e.code != 409:          # 409: it exists already
                raise RuntimeError(f"creating container {name}: HTTP {e.code} {e.read()[:300]!r}") from None

    @property
    def storage_options(self) -> dict:
        return {"azure_storage_account_name": AZ_ACCOUNT, "azure_storage_account_key": "${env:ASSAY_TEST_AZ_KEY}",
                "azure_endpoint": self.endpoint, "allow_http": "true"}

    @property
    def resolved_options(self) -> dict:
        return {**self.storage_options, "azure_storage_account_key": AZ_KEY}

    def uri(self, prefix: str = "") -> str:
        return f"az://{self.container}/{prefix or uuid.uuid4().hex[:10]}"


def _serve(cls, tmp_path_factory, name):
    server = cls(_free_port(), tmp_path_factory.mktemp(name))
    os.environ.update(server.env)
    server.start()
    try:
        yield server
    finally:
        # Throwaway: its data goes with the session's temporary folder. Neither ends on SIGTERM here
        # (Azurite's event loop stays up after it says closed, weed's filer keeps reconnecting), so a
        # graceful stop waited out the scripts' whole grace, 10 s and 15 s, at the end of every session.
        server.stop(grace_s=0)


@pytest.fixture(scope="session")
def s3_store(tmp_path_factory):
    yield from _serve(SeaweedS3, tmp_path_factory, "seaweedfs")


@pytest.fixture(scope="session")
def azure_store(tmp_path_factory):
    yield from _serve(AzuriteBlob, tmp_path_factory, "azurite")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that used a store shows the tail of its log."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for key in ("s3_store", "azure_store"):
            server = getattr(item, "funcargs", {}).get(key)
            if isinstance(server, _Server):
                report.sections.append((f"{key} log (tail)", server.log_tail(30)))


_used = {"stores": False, "status": 0}


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(fixturedef, request):
    if fixturedef.argname in ("s3_store", "azure_store"):
        _used["stores"] = True


def pytest_sessionfinish(session, exitstatus):
    _used["status"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave without interpreter teardown once a session used an object store: delta-rs 1.6.6 and
    obstore each keep a Rust runtime, and tearing both down at exit aborts the process now and then
    ("terminate called without an active exception"), which would turn a green run red (the CLI
    leaves the same way: assay.cli._exit)."""
    if _used["stores"]:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_used["status"])
