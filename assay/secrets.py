"""Values that must never be shown: resolved ${env:...} references and Kafka passwords.

Everything Assay prints, logs or stores in the event log passes through `redact`.
"""
from __future__ import annotations

import logging
import re
import threading

_lock = threading.Lock()
_values: dict[str, str] = {}          # secret value → the name shown instead
# Keys whose values are credentials, wherever they appear (assay.yml, Kafka options, storage options).
_SENSITIVE_KEY = re.compile(r"(password|secret|token|connection_?string|jaas|private\.key|credential|api[._]?key)",
                            re.I)


def register(name: str, value: str | None) -> None:
    """Remember a value so that `redact` masks it. Short values (< 4 chars) are not worth masking."""
    if value and len(value) >= 4:
        with _lock:
            _values[value] = name
        _guard_engine_logs()


def is_sensitive_key(key: str) -> bool:
    return bool(_SENSITIVE_KEY.search(key))


def register_options(options: dict) -> None:
    """Register the values of options whose key names a credential (sasl.password, ...)."""
    for key, value in options.items():
        if is_sensitive_key(str(key)) and isinstance(value, str):
            register(str(key), value)


def redact(text: str) -> str:
    with _lock:
        items = sorted(_values.items(), key=lambda kv: -len(kv[0]))
    for value, name in items:
        if value in text:
            text = text.replace(value, f"***{name}***")
    return text


# PySpark's client logs an engine error itself, with the query plan (literals included), to
# stderr through two loggers of its own: mask secrets there as well.
_ENGINE_LOGGERS = ("DataFrameQueryContextLogger", "SQLQueryContextLogger")
_guarded = False


class _Redacting(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), ()
        if record.exc_info:                      # its text is the message again, unmasked
            record.exc_info, record.exc_text = None, None
        context = record.__dict__.get("context")
        if isinstance(context, dict):
            record.context = {k: redact(v) if isinstance(v, str) else v for k, v in context.items()}
        return True


def _guard_engine_logs() -> None:
    global _guarded
    if _guarded:
        return
    _guarded = True
    try:
        from pyspark.logger import PySparkLogger
    except ImportError:        # no engine client in this process
        return
    for name in _ENGINE_LOGGERS:
        PySparkLogger.getLogger(name).addFilter(_Redacting())
