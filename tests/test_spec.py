"""assay.yml: validation names the bad key, ${env:...} secrets, targets and run-time overrides."""
import pytest

from assay import secrets
from assay.errors import ConfigError
from assay.spec import load_spec


def write(tmp_path, text):
    (tmp_path / "assay.yml").write_text(text)
    return tmp_path


def test_defaults_and_layer_schemas(tmp_path):
    spec = load_spec(write(tmp_path, "name: zen\nschemas: {bronze: 01_bronze, system: _sys}\n"))
    assert spec.name == "zen"
    assert spec.schema_for("bronze") == "01_bronze"
    assert spec.schema_for("02_custom") == "02_custom"
    assert spec.system_dir == tmp_path / "storage" / "_sys"
    assert spec.batch_max_bytes == 256 * 10**6


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'storge'"):
        load_spec(write(tmp_path, "name: x\nstorge: ./s\n"))
    with pytest.raises(ConfigError, match="unknown key 'batch.max_filez'"):
        load_spec(write(tmp_path, "name: x\nbatch: {max_filez: 3}\n"))


def test_invalid_yaml_names_line(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_spec(write(tmp_path, "name: x\nstorage: :\n  - bad: [\n"))


def test_env_reference_resolved_and_masked(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSAY_TEST_SECRET", "s3cr3t-value-123")
    spec = load_spec(write(tmp_path, "name: x\nconfiguration: {password: '${env:ASSAY_TEST_SECRET}'}\n"))
    assert spec.configuration["password"] == "s3cr3t-value-123"
    assert "s3cr3t" not in secrets.redact("connecting with s3cr3t-value-123 failed")


def test_missing_env_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("ASSAY_NOT_SET", raising=False)
    with pytest.raises(ConfigError, match="ASSAY_NOT_SET is not set"):
        load_spec(write(tmp_path, "name: x\nconfiguration: {k: '${env:ASSAY_NOT_SET}'}\n"))


def test_targets_override_and_runtime_overrides(tmp_path, monkeypatch):
    text = ("name: x\nstorage: ./dev\nconfiguration: {a: '1', b: '2'}\n"
            "targets:\n  prod: {storage: ./prod, configuration: {b: '3'}}\n")
    write(tmp_path, text)
    prod = load_spec(tmp_path, target="prod")
    assert prod.storage == tmp_path / "prod"
    assert prod.configuration == {"a": "1", "b": "3"}
    with pytest.raises(ConfigError, match="unknown target 'qa'"):
        load_spec(tmp_path, target="qa")
    monkeypatch.setenv("ASSAY_STORAGE", str(tmp_path / "elsewhere"))
    assert load_spec(tmp_path).storage == tmp_path / "elsewhere"
    assert load_spec(tmp_path, storage=str(tmp_path / "cli")).storage == tmp_path / "cli"


def test_bad_values(tmp_path):
    with pytest.raises(ConfigError, match="engine must be one of"):
        load_spec(write(tmp_path, "name: x\nengine: duck\n"))
    with pytest.raises(ConfigError, match="max_bytes"):
        load_spec(write(tmp_path, "name: x\nbatch: {max_bytes: lots}\n"))
    with pytest.raises(ConfigError, match="'name' must be a simple name"):
        load_spec(write(tmp_path, "name: 'a b'\n"))
    with pytest.raises(ConfigError, match="schemas.bronze"):
        load_spec(write(tmp_path, "name: x\nschemas: {bronze: '../etc'}\n"))


def test_env_references_resolved_for_the_target_in_use_only(tmp_path, monkeypatch):
    monkeypatch.delenv("ASSAY_PROD_ONLY", raising=False)
    monkeypatch.setenv("ASSAY_DEV_SECRET", "dev-secret-value-42")
    write(tmp_path, "name: x\nconfiguration: {k: '${env:ASSAY_DEV_SECRET}'}\ndefault_target: dev\n"
                    "targets:\n  dev: {}\n  prod: {configuration: {k: '${env:ASSAY_PROD_ONLY}'}}\n")
    assert load_spec(tmp_path).configuration["k"] == "dev-secret-value-42"
    with pytest.raises(ConfigError, match=r"'targets\.prod\.configuration\.k' refers to \$\{env:ASSAY_PROD_ONLY\}, "
                                          r"but the environment variable ASSAY_PROD_ONLY is not set"):
        load_spec(tmp_path, target="prod")
    # a value the target overrides is not needed either
    monkeypatch.delenv("ASSAY_DEV_SECRET")
    monkeypatch.setenv("ASSAY_PROD_ONLY", "prod-secret-value-43")
    assert load_spec(tmp_path, target="prod").configuration["k"] == "prod-secret-value-43"


def test_postgres_connection_overridden_with_conf(tmp_path):
    write(tmp_path, "name: x\npostgres: {host: db.example.com, port: 5432, dbname: analytics, user: u}\n")
    spec = load_spec(tmp_path, conf={"postgres.host": "127.0.0.1", "postgres.port": "5433", "k": "v"})
    assert spec.postgres == {"host": "127.0.0.1", "port": "5433", "dbname": "analytics", "user": "u"}
    assert spec.configuration == {"k": "v"} and spec.conf_overrides == {"k"}
    with pytest.raises(ConfigError, match="postgres.password"):
        load_spec(tmp_path, conf={"postgres.password": "secret"})
    write(tmp_path, "name: x\n")
    with pytest.raises(ConfigError, match="no 'postgres:' section"):
        load_spec(tmp_path, conf={"postgres.host": "h"})
