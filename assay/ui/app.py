"""The Starlette app of `assay ui`: the JSON API and the static page, read-only.

Safe by default: every route reads; the one POST (the SQL box) runs only checked queries.
Requests must name this server in their Host header (a page on another site cannot reach it
through DNS rebinding) and a cross-site POST is refused; responses forbid framing and any
script or connection that is not this server's own.
"""
from __future__ import annotations

import json
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import AssayError
from .api import Lake, NotFound, redact
from .sqlbox import RejectedQuery

STATIC = Path(__file__).resolve().parent / "static"
VENDOR_FILES = ("cytoscape.min.js", "cytoscape-dagre.min.js")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def vendor_missing() -> list[str]:
    return [name for name in VENDOR_FILES if not (STATIC / "vendor" / name).is_file()]


class JSON(JSONResponse):
    def render(self, content) -> bytes:
        return json.dumps(redact(content), default=str, ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")).encode("utf-8")


def _int(request: Request, name: str, default: int) -> int:
    try:
        return int(request.query_params.get(name, default))
    except ValueError:
        return default


def create_app(lake: Lake, allowed_hosts: set[str] | None = None) -> Starlette:
    def endpoint(fn):
        def handler(request: Request):
            try:
                return JSON(fn(request), headers={"Cache-Control": "no-store"})
            except NotFound as exc:
                return JSON({"error": str(exc)}, status_code=404)
            except RejectedQuery as exc:
                return JSON({"error": str(exc)}, status_code=400)
            except AssayError as exc:
                return JSON({"error": str(exc)}, status_code=500)
            except Exception as exc:  # one line for the page, never a traceback
                return JSON({"error": f"{type(exc).__name__}: {exc}"}, status_code=500)
        return handler

    async def sql(request: Request):
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSON({"error": "send the query as JSON: {\"sql\": \"SELECT ...\"}"}, status_code=415)
        try:
            body = await request.json()
        except ValueError:
            return JSON({"error": "the body is not JSON"}, status_code=400)
        if not isinstance(body, dict) or not isinstance(body.get("sql"), str):
            return JSON({"error": "send {\"sql\": \"SELECT ...\"}"}, status_code=400)
        from starlette.concurrency import run_in_threadpool
        return await run_in_threadpool(endpoint(lambda r: lake.sql(body["sql"], body.get("limit") or 200)),
                                       request)

    def index(request: Request):
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    routes = [
        Route("/", index),
        Route("/api/overview", endpoint(lambda r: lake.overview())),
        Route("/api/state", endpoint(lambda r: lake.state())),
        Route("/api/graph", endpoint(lambda r: lake.graph(r.query_params.get("run") or None))),
        Route("/api/runs", endpoint(lambda r: lake.runs(_int(r, "offset", 0), _int(r, "limit", 50)))),
        Route("/api/runs/{run_id}", endpoint(lambda r: lake.run(r.path_params["run_id"]))),
        Route("/api/quality", endpoint(lambda r: lake.quality(_int(r, "last", 20)))),
        Route("/api/tables", endpoint(lambda r: lake.tables_list())),
        Route("/api/tables/{name}", endpoint(lambda r: lake.table(r.path_params["name"],
                                                                  _int(r, "preview", 20)))),
        Route("/api/tables/{name}/rows", endpoint(lambda r: lake.table_rows(
            r.path_params["name"], _int(r, "limit", 100), r.query_params.get("rule")))),
        Route("/api/sql", sql, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
    ]
    app = Starlette(routes=routes)
    return Guard(app, allowed_hosts if allowed_hosts is not None else LOOPBACK)


def host_of(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    """ASGI middleware: Host must be this server's, no cross-site POST, security headers on all."""

    def __init__(self, app, allowed_hosts: set[str]):
        self.app = app
        self.allowed = {h.lower() for h in allowed_hosts}

    def _allowed(self, host: str) -> bool:
        return "*" in self.allowed or host in self.allowed

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if not self._allowed(host_of(headers.get("host", ""))):
            response = Response("unknown host", status_code=421, media_type="text/plain")
            return await response(scope, receive, send)
        origin = headers.get("origin")
        if scope.get("method") not in ("GET", "HEAD") and origin is not None:
            from urllib.parse import urlsplit
            if not self._allowed((urlsplit(origin).hostname or "").lower()):
                response = Response("cross-site request refused", status_code=403, media_type="text/plain")
                return await response(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                extra = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                         (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer"),
                         (b"cross-origin-resource-policy", b"same-origin")]
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)
        return await self.app(scope, receive, send_with_headers)
