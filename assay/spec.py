"""assay.yml: what a pipeline is called, where its data lives, what code defines it, and per-target overrides.

Secrets are never written in the file: `${env:NAME}` references are resolved from the
environment at load time, for the target in use only (other targets' references may stay
unset), and the resolved values are registered with `assay.secrets` so that they are masked
wherever Assay prints or logs text.
"""
from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import fs, secrets
from .engines import ENGINES as ENGINE_NAMES
from .errors import ConfigError
from .fs import StoragePath
from .units import parse_bytes

SPEC_FILE = "assay.yml"
SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_]{1,128}$")
ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
LAYERS = ("landing", "bronze", "silver", "gold", "system")
ENGINES = tuple(ENGINE_NAMES)

DEFAULT_SCHEMAS = {"landing": "landing", "bronze": "bronze", "silver": "silver", "gold": "gold", "system": "_system"}
TOP_KEYS = {"name", "catalog", "storage", "landing", "schemas", "default_schema", "libraries", "configuration",
            "engine", "engine_conf", "batch", "targets", "default_target", "description", "maintenance",
            "postgres", "storage_options"}
TARGET_KEYS = TOP_KEYS - {"name", "targets", "default_target"}
BATCH_KEYS = {"max_files", "max_bytes", "max_records"}
POSTGRES_CONF = ("host", "port", "dbname", "user", "sslmode")     # --conf postgres.KEY=VALUE
# storage_options whose values are credentials: given only as ${env:NAME} references.
SECRET_OPTION = re.compile(r"(secret|password|token|sas|_key$|access_key|client_secret|credential)", re.I)


@dataclass(frozen=True)
class Library:
    glob: str
    schema: str | None = None


@dataclass
class PipelineSpec:
    name: str
    root: Path                      # the folder holding assay.yml
    storage: StoragePath            # a local folder or an object-store URI (assay.fs)
    landing: StoragePath
    catalog: str
    schemas: dict[str, str]
    default_schema: str
    libraries: list[Library]
    configuration: dict[str, Any]
    engine: str = "sail"
    engine_conf: dict[str, str] = field(default_factory=dict)
    batch_max_files: int | None = 1000
    batch_max_bytes: int | None = 256 * 1024 * 1024
    batch_max_records: int | None = None
    target: str | None = None
    conf_overrides: frozenset[str] = frozenset()    # configuration keys given with --conf
    maintenance: dict[str, Any] = field(default_factory=dict)   # checked by maintenance.Policy.from_spec
    storage_options: dict[str, str] = field(default_factory=dict)   # object_store keys (docs/object-storage.md)
    postgres: dict[str, Any] = field(default_factory=dict)      # checked by runtime.publish (docs/postgres.md)

    def check_configuration_used(self, keys_read: set[str]) -> None:
        """A --conf key that no dataset reads is a typo or a stale flag: say so instead of ignoring it."""
        unused = sorted(self.conf_overrides - set(keys_read))
        if unused:
            read = ", ".join(sorted(keys_read)) or "none"
            raise ConfigError(f"--conf {', '.join(unused)}: no dataset of pipeline '{self.name}' reads "
                              f"{'this key' if len(unused) == 1 else 'these keys'} with dp.config (keys read: {read})")

    def schema_for(self, name_or_layer: str | None) -> str:
        """A layer key ('bronze') or a literal schema name ('01_bronze') → the storage schema name."""
        if name_or_layer is None:
            return self.schema_for(self.default_schema)
        return self.schemas.get(name_or_layer, name_or_layer)

    @property
    def system_dir(self) -> StoragePath:
        return self.storage / self.schemas["system"]

    def table_path(self, schema: str, table: str) -> StoragePath:
        path = (self.storage / schema / table).resolve()
        if not path.is_relative_to(self.storage.resolve()):
            raise ConfigError(f"table path {path} is outside the storage root {self.storage}")
        return path


def find_spec(start: str | Path = ".") -> Path:
    """The assay.yml in `start` or the closest parent folder."""
    here = Path(start).resolve()
    if here.is_file():
        return here
    for folder in (here, *here.parents):
        candidate = folder / SPEC_FILE
        if candidate.exists():
            return candidate
    raise ConfigError(f"no {SPEC_FILE} in {here} or any parent folder: run `assay init NAME` to create a "
                      "project, or pass --project PATH")


def conf_pairs(items: list[str] | None) -> dict[str, str]:
    """`--conf KEY=VALUE` options as a dict (the value may hold '=' itself)."""
    values = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--conf expects KEY=VALUE, got '{item}'")
        key, _, value = item.partition("=")
        values[key] = value
    return values


def load_spec(path: str | Path = ".", *, target: str | None = None, storage: str | None = None,
              landing: str | None = None, conf: dict[str, str] | None = None, engine: str | None = None,
              remote: str | None = None) -> PipelineSpec:
    """Read and validate assay.yml, apply the target's overrides, then run-time overrides.

    Run-time overrides, strongest first: the arguments, then the environment variables
    ASSAY_TARGET, ASSAY_STORAGE and ASSAY_LANDING. `engine` replaces the file's engine (its
    options are kept only when it names the same engine); `remote` (a Spark Connect address)
    implies the Spark engine.
    """
    spec_path = find_spec(path)
    try:
        raw = yaml.safe_load(spec_path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{spec_path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{spec_path} must be a mapping of keys (name, storage, libraries, ...)")
    _check_keys(raw, TOP_KEYS, spec_path, "")
    _check_storage_options(raw, spec_path)

    target = target or os.environ.get("ASSAY_TARGET") or raw.get("default_target")
    targets = raw.pop("targets", None) or {}
    if not isinstance(targets, dict):
        raise ConfigError(f"{spec_path}: 'targets' must map target names to overrides")
    overrides: dict = {}
    if target is not None:
        if target not in targets:
            known = ", ".join(sorted(targets)) or "none"
            raise ConfigError(f"{spec_path}: unknown target '{target}' (defined targets: {known})")
        overrides = targets[target] or {}
        if not isinstance(overrides, dict):
            raise ConfigError(f"{spec_path}: target '{target}' must be a mapping of overrides")
        _check_keys(overrides, TARGET_KEYS, spec_path, f"targets.{target}.")
        raw = _deep_merge(raw, overrides)
    # Only the settings in use are resolved: another target's secret (Event Hubs' connection
    # string on a laptop) need not be set, and is never registered or read.
    raw = _resolve_env(raw, spec_path, "", overrides, target)
    conf = dict(conf or {})
    raw["postgres"] = _postgres_overrides(raw.get("postgres"), conf, spec_path)

    root = spec_path.parent
    name = raw.get("name")
    if not isinstance(name, str) or not SCHEMA_NAME.match(name):
        raise ConfigError(f"{spec_path}: 'name' must be a simple name (letters, digits, underscores), got {name!r}")

    schemas = dict(DEFAULT_SCHEMAS)
    given = raw.get("schemas") or {}
    if not isinstance(given, dict):
        raise ConfigError(f"{spec_path}: 'schemas' must map layers ({', '.join(LAYERS)}) to schema names")
    for layer, schema in given.items():
        if not isinstance(schema, str) or not SCHEMA_NAME.match(schema):
            raise ConfigError(f"{spec_path}: schemas.{layer} must be a simple name, got {schema!r}")
        schemas[str(layer)] = schema

    default_schema = raw.get("default_schema", "silver")
    libraries = _libraries(raw.get("libraries"), spec_path)
    configuration = raw.get("configuration") or {}
    if not isinstance(configuration, dict):
        raise ConfigError(f"{spec_path}: 'configuration' must be a mapping of names to values")
    configuration = {**configuration, **(conf or {})}

    chosen, options = _engine(raw.get("engine", "sail"), spec_path)
    wanted = "spark" if remote else engine
    if wanted and wanted != chosen:
        chosen, options = _engine(wanted, Path("--engine"))
    if remote:
        options["remote"] = remote
    engine_conf = raw.get("engine_conf") or {}
    if not isinstance(engine_conf, dict):
        raise ConfigError(f"{spec_path}: 'engine_conf' must be a mapping of settings")

    batch = raw.get("batch") or {}
    if not isinstance(batch, dict):
        raise ConfigError(f"{spec_path}: 'batch' must be a mapping (max_files, max_bytes, max_records)")
    _check_keys(batch, BATCH_KEYS, spec_path, "batch.")

    # Paths given at run time are relative to where the user is; those in assay.yml to the file.
    # An object-store URI (s3://, abfss://, az://, gs://) is taken as it is.
    def location(given, env, key, default) -> StoragePath:
        value = str(given or os.environ.get(env) or "")
        from_file = not value
        value = value or str(raw.get(key) or default)
        if fs.is_uri(value) or "://" in value:
            return StoragePath(value)
        return StoragePath((root / value).resolve() if from_file else Path(value).resolve())
    storage_options = _option_values(raw.get("storage_options") or {})
    fs.configure(storage_options)
    return PipelineSpec(
        name=name, root=root,
        storage=location(storage, "ASSAY_STORAGE", "storage", "storage"),
        landing=location(landing, "ASSAY_LANDING", "landing", "landing"),
        catalog=str(raw.get("catalog") or name), schemas=schemas, default_schema=str(default_schema),
        libraries=libraries, configuration=configuration, engine=chosen,
        engine_conf={**options, **_flat(engine_conf)},
        batch_max_files=_positive(batch.get("max_files", 1000), "batch.max_files", spec_path),
        batch_max_bytes=_bytes(batch.get("max_bytes", "256MB"), spec_path),
        batch_max_records=_positive(batch.get("max_records"), "batch.max_records", spec_path),
        target=target, conf_overrides=frozenset(conf), maintenance=raw.get("maintenance") or {},
        postgres=raw.get("postgres") or {}, storage_options=storage_options)


def _option_values(options: dict) -> dict[str, str]:
    return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in options.items() if v is not None}


def _check_storage_options(raw: dict, spec_path: Path) -> None:
    """`storage_options` (and each target's) map object_store keys to values; credentials only by
    ${env:NAME} reference, so that none is ever written in assay.yml (and all are masked)."""
    places = [("storage_options", raw.get("storage_options"))]
    for name, target in (raw.get("targets") or {}).items():
        if isinstance(target, dict):
            places.append((f"targets.{name}.storage_options", target.get("storage_options")))
    for where, options in places:
        if options is None:
            continue
        if not isinstance(options, dict):
            raise ConfigError(f"{spec_path}: '{where}' must map option names (aws_endpoint, "
                              "azure_storage_account_name, ...) to values")
        for key, value in _option_values(options).items():
            if SECRET_OPTION.search(key) and not ENV_REF.fullmatch(str(value).strip()):
                raise ConfigError(f"{spec_path}: {where}.{key} is a credential: give it as ${{env:NAME}} "
                                  "(never its value in the file)")


def _engine(value: Any, spec_path: Path) -> tuple[str, dict[str, str]]:
    """`engine: spark`, or `engine: {spark: {remote: ..., key: value}}`: the engine's name and the
    options given beside it (kept only while that engine is chosen; `engine_conf` applies to any)."""
    options: Any = {}
    if isinstance(value, dict):
        if len(value) != 1:
            raise ConfigError(f"{spec_path}: 'engine' as a mapping names one engine, e.g. "
                              f"{{spark: {{remote: 'sc://host:15002'}}}}; got {sorted(value)}")
        value, options = next(iter(value.items()))
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise ConfigError(f"{spec_path}: engine.{value} must be a mapping of options, got {options!r}")
    if value not in ENGINES:
        raise ConfigError(f"{spec_path}: engine must be one of {', '.join(ENGINES)}, got {value!r}")
    return value, _flat(options)


def _flat(options: dict, prefix: str = "") -> dict[str, str]:
    """Nested YAML mappings as dotted keys: {spark: {sql: {shuffle.partitions: 8}}} -> spark.sql.shuffle.partitions."""
    out = {}
    for key, value in options.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, bool):
            out[f"{prefix}{key}"] = str(value).lower()
        elif value is not None:
            out[f"{prefix}{key}"] = str(value)
    return out


def _check_keys(raw: dict, allowed: set[str], spec_path: Path, prefix: str) -> None:
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{spec_path}: unknown key '{prefix}{key}' (allowed: {', '.join(sorted(allowed))})")


def _resolve_env(value: Any, spec_path: Path, where: str, override: Any = None, target: str | None = None) -> Any:
    """${env:NAME} references replaced by their values. `override` is the same place in the target's
    overrides: a value that came from there is named as `targets.<target>.<key>` in errors."""
    def inner(key):
        return override.get(key) if isinstance(override, dict) else None
    if isinstance(value, dict):
        return {k: _resolve_env(v, spec_path, f"{where}{k}.", inner(k), target) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env(v, spec_path, f"{where}{i}.", override[i] if isinstance(override, list) else None,
                             target) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        var, default = match.group(1), match.group(2)
        resolved = os.environ.get(var, default)
        if resolved is None:
            key = where.rstrip(".")
            named = f"targets.{target}.{key}" if override is not None else key
            used = f" (target '{target}' is in use)" if target is not None else ""
            raise ConfigError(f"{spec_path}: '{named}' refers to ${{env:{var}}}, "
                              f"but the environment variable {var} is not set{used}")
        secrets.register(var, resolved)
        return resolved

    return ENV_REF.sub(substitute, value)


def _postgres_overrides(section: Any, conf: dict[str, str], spec_path: Path) -> dict:
    """`--conf postgres.KEY=VALUE` (taken out of `conf`): where to reach PostgreSQL this run, as
    Kafka's `--conf kafka.bootstrap_servers` says where the broker is. Connection keys only; the
    password stays an ${env:…} reference in assay.yml (a command line shows in `ps` and shells' history)."""
    given = {key.split(".", 1)[1]: conf.pop(key) for key in list(conf) if key.startswith("postgres.")}
    if not given:
        return section or {}
    for key, value in given.items():
        if key not in POSTGRES_CONF:
            raise ConfigError(f"--conf postgres.{key}: only {', '.join(f'postgres.{k}' for k in POSTGRES_CONF)} "
                              "can be given at run time" + ("; the password only as ${env:NAME} in assay.yml"
                                                            if key == "password" else ""))
        if key == "port" and not (value.isdigit() and 0 < int(value) < 65536):
            raise ConfigError(f"--conf postgres.port must be a port number (1-65535), got {value!r}")
    if not isinstance(section, dict) or not section:
        raise ConfigError(f"--conf {', '.join(f'postgres.{k}' for k in given)}: {spec_path} has no 'postgres:' "
                          "section to override")
    return {**section, **given}


def _deep_merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _libraries(value: Any, spec_path: Path) -> list[Library]:
    if value is None:
        return [Library("transformations/**/*.py"), Library("transformations/**/*.sql")]
    if not isinstance(value, list):
        raise ConfigError(f"{spec_path}: 'libraries' must be a list of globs or {{glob, schema}} mappings")
    libraries = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            libraries.append(Library(item))
        elif isinstance(item, dict) and isinstance(item.get("glob"), str):
            _check_keys(item, {"glob", "schema"}, spec_path, f"libraries.{i}.")
            libraries.append(Library(item["glob"], item.get("schema")))
        else:
            raise ConfigError(f"{spec_path}: libraries[{i}] must be a glob string or a mapping with 'glob'")
    return libraries


def _positive(value: Any, key: str, spec_path: Path) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{spec_path}: {key} must be a positive whole number, got {value!r}")
    return value


def _bytes(value: Any, spec_path: Path) -> int | None:
    if value is None:
        return None
    try:
        return parse_bytes(value)
    except ValueError as exc:
        raise ConfigError(f"{spec_path}: batch.max_bytes: {exc}") from None
