"""`assay ui` and `assay report`, registered by assay/cli.py. Imports stay inside the functions so
that loading the CLI does not load the web stack."""
from __future__ import annotations

import socket
import sys
from typing import Optional

import typer

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
ANY_HOSTS = ("0.0.0.0", "::", "")


def _load(project: str, target: Optional[str], storage: Optional[str], landing: Optional[str],
          conf: Optional[list[str]]):
    from ..spec import conf_pairs, load_spec
    return load_spec(project, target=target, storage=storage, landing=landing, conf=conf_pairs(conf))


def _console():
    from rich.console import Console
    return Console(width=None if sys.stdout.isatty() else 200)


def allowed_hosts(host: str) -> set[str]:
    from .app import LOOPBACK
    if host in ANY_HOSTS:
        return {"*"}
    return set(LOOPBACK) | {host.lower().strip("[]")}


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free one."""
    from ..errors import ConfigError
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (choose another --port)") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def ui(project: str = typer.Option(".", "--project", "-p", help="The pipeline folder (holding assay.yml)."),
       target: Optional[str] = typer.Option(None, "--target", "-t", help="A target of assay.yml (dev, prod...)."),
       storage: Optional[str] = typer.Option(None, "--storage", help="Storage root, instead of assay.yml's."),
       landing: Optional[str] = typer.Option(None, "--landing", help="Landing root, instead of assay.yml's."),
       conf: Optional[list[str]] = typer.Option(None, "--conf", help="configuration KEY=VALUE (repeatable)."),
       port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port (0: a free one)."),
       host: str = typer.Option("127.0.0.1", "--host",
                                help="Interface to listen on; anything but loopback exposes the pipeline's data.")):
    """Serve the pipeline in a browser (graph, runs, data quality, tables), read-only, on 127.0.0.1."""
    import uvicorn

    from ..errors import AssayError
    from .api import Lake
    from .app import create_app, vendor_missing
    spec = _load(project, target, storage, landing, conf)
    missing = vendor_missing()
    if missing:
        raise AssayError(f"the graph library is not vendored ({', '.join(missing)} missing): run "
                         "`bash scripts/ui-vendor.sh` (or `make ui-vendor`) first")
    console = _console()
    lake = Lake(spec)
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    if host not in LOOPBACK_HOSTS:
        console.print(f"[yellow]warning[/]: listening on {host}, not loopback: anyone who can reach this "
                      "machine can read the pipeline's tables and event log (no authentication).")
    console.print(f"Assay UI for pipeline '{spec.name}' at [bold]http://{shown}:{bound}/[/] (read-only; "
                  "Ctrl-C to stop)", highlight=False)
    sys.stdout.flush()
    app = create_app(lake, allowed_hosts(host))

    def warm_up():                     # read the event log and load the graph before the first page
        try:
            lake.events.snapshot()
            lake.declared()
        except Exception:              # the page shows any error when it asks
            pass
    import threading
    threading.Thread(target=warm_up, name="assay-ui-warm-up", daemon=True).start()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                           timeout_graceful_shutdown=2))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        lake.close()


def report(out: str = typer.Option("report.html", "--out", "-o", help="The HTML file to write."),
           project: str = typer.Option(".", "--project", "-p", help="The pipeline folder (holding assay.yml)."),
           target: Optional[str] = typer.Option(None, "--target", "-t", help="A target of assay.yml."),
           storage: Optional[str] = typer.Option(None, "--storage", help="Storage root, instead of assay.yml's."),
           landing: Optional[str] = typer.Option(None, "--landing", help="Landing root, instead of assay.yml's."),
           runs: int = typer.Option(1000, "--runs", min=1, help="How many recent runs the runs page lists."),
           details: int = typer.Option(20, "--details", min=0, help="How many recent runs keep their flows and batches.")):
    """Write the UI's views as one self-contained HTML file (no server, nothing fetched when opened)."""
    from .api import Lake
    from .report import write_report
    spec = _load(project, target, storage, landing, None)
    lake = Lake(spec)
    try:
        path = write_report(lake, out, runs=runs, run_details=details, graphs=min(details, 10))
    finally:
        lake.close()
    size = path.stat().st_size
    _console().print(f"wrote {path} ({size / 1e6:.1f} MB): pipeline '{spec.name}', "
                     f"{len(lake.events.snapshot().runs)} run(s), {len(lake.tables.refs())} table(s)", highlight=False)
