"""The embedded engine: Sail's Spark Connect server, started in this process (no JVM).

Sail 0.7.2 accepts delta-spark's txnAppId/txnVersion write options and ignores them (a test holds
it): one reason why Assay commits every batch itself."""
from __future__ import annotations

import logging
import os
import re

from .. import fs
from .base import Engine

log = logging.getLogger(__name__)


class SailEngine(Engine):
    name = "sail"
    # Its analysis and parse errors as Sail 0.7 prints them (DataFusion's words, Arrow type names),
    # each with the wording of assay.engine_errors that says it.
    error_patterns = (
        (re.compile(r"attribute (?P<name>ObjectName\(\[.*?\]\)) is missing from the schema"), "missing_column"),
        (re.compile(r"\[UNRESOLVED_COLUMN\] Cannot find column (?P<name>\S+)"), "missing_column"),
        (re.compile(r"ambiguous attribute: (?P<name>ObjectName\(\[.*?\]\))"), "ambiguous_column"),
        (re.compile(r"Cannot coerce arithmetic expression (?P<expr>.+?) to valid types"), "arithmetic"),
        (re.compile(r"No function matches the given name and argument types '(?P<fn>\w+)\((?P<args>.*)\)'", re.S),
         "function_signature"),
        (re.compile(r"Cannot create filter with non-boolean predicate '.*?' returning (?P<type>.+)$", re.M),
         "non_boolean_filter"),
        (re.compile(r"Spark `(?P<fn>\w+)` function expects (?P<wants>[^,]+(?:, [^,]+)*?), got (?P<got>.+?)\. "),
         "function_arguments"),
        (re.compile(r"Cannot cast string (?P<value>'.*?') to value of (?P<to>\w+) type"), "cast"),
        (re.compile(r"invalid argument: found (?P<found>.+?)(?: at \d+:\d+)? expected (?P<expected>.*)$", re.M),
         "syntax_expected"),
        (re.compile(r"unknown function: (?P<fn>\S+)"), "unknown_function"),
        (re.compile(r"Table or view not found: (?P<name>\S+)"), "unknown_table"),
        (re.compile(r"UNION queries have different number of columns: left has (?P<l>\d+) columns whereas right "
                    r"has (?P<r>\d+)"), "union_width"),
    )

    def __init__(self, conf: dict[str, str]):
        super().__init__(conf)
        self._server = None

    def _start_session(self):
        # Sail logs every session at INFO on stderr; keep the terminal for Assay's own progress.
        os.environ.setdefault("RUST_LOG", "error")
        # Object stores: Sail reads them through the same object_store crate, configured from the
        # environment (assay.yml storage_options, docs/object-storage.md).
        os.environ.update(object_store_environment())
        from pysail.spark import SparkConnectServer
        from pyspark.sql import SparkSession

        self._server = SparkConnectServer(ip="127.0.0.1", port=0)
        self._server.start(background=True)
        host, port = self._server.listening_address
        # create(), not getOrCreate(): another session in this process must never be handed ours.
        return SparkSession.builder.remote(f"sc://{host}:{port}").create()

    def is_invalid_utf8(self, exc: Exception) -> bool:
        """Sail stops a whole text read at the first invalid UTF-8 byte, saying so in its error."""
        return "utf-8" in str(exc).lower()

    def _stop_session(self) -> None:
        if self._server is not None:
            try:
                self._server.stop()
            except Exception as exc:
                log.debug("stopping Sail: %s", exc)
            self._server = None


def object_store_environment() -> dict[str, str]:
    """Environment variables for Sail, which reads object stores with the same Rust `object_store`
    crate (and the AWS SDK's credential chain): each storage option under its upper-case name, the
    endpoint also as AWS_ENDPOINT_URL (the AWS SDKs' name)."""
    options = fs.options()
    env = {k.upper(): v for k, v in options.items() if k.startswith(("aws_", "azure_", "google_"))}
    endpoint = options.get("aws_endpoint") or options.get("aws_endpoint_url")
    if endpoint:
        env.setdefault("AWS_ENDPOINT_URL", endpoint)
        env.setdefault("AWS_ENDPOINT", endpoint)
    if options.get("allow_http"):
        env.setdefault("AWS_ALLOW_HTTP", options["allow_http"])
        env.setdefault("AZURE_ALLOW_HTTP", options["allow_http"])
    return env
