"""`assay postgres …`: the PostgreSQL side of published tables (roles, state), and the PostgreSQL
half of `assay verify`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import ConfigError

postgres_app = typer.Typer(no_args_is_help=True, help="The PostgreSQL mirror of published tables (dp.postgres).")
console = Console()


ConfOpt = typer.Option(None, "--conf", help="postgres.host=…, postgres.port=…, postgres.dbname=… (repeatable): "
                                            "where PostgreSQL is this time, instead of assay.yml's.")


def _spec(project: str, target: Optional[str], storage: Optional[str] = None, conf: Optional[list[str]] = None):
    from ..spec import conf_pairs, load_spec
    return load_spec(project, target=target, storage=storage, conf=conf_pairs(conf))


@postgres_app.command("apply-roles")
def apply_roles_command(
        project: str = typer.Option(".", "--project", "-p", help="The pipeline folder (holding assay.yml)."),
        target: Optional[str] = typer.Option(None, "--target", "-t", help="A target of assay.yml."),
        admin_user: str = typer.Option(..., "--admin-user",
                                       help="A superuser or a CREATEROLE role owning the database (the RDS master "
                                            "user, the Azure server admin)."),
        admin_password_env: str = typer.Option("ASSAY_PG_ADMIN_PASSWORD", "--admin-password-env",
                                               help="The environment variable holding the admin's password."),
        role_password: Optional[list[str]] = typer.Option(
            None, "--role-password", help="KIND=ENV_VAR: owner, writer or analyst gets a login, with the password "
                                          "held by ENV_VAR (repeatable)."),
        create_login: bool = typer.Option(True, "--create-login/--no-create-login",
                                          help="Create the pipeline's login (postgres.user) with postgres.password "
                                               "when it does not exist."),
        conf: Optional[list[str]] = ConfOpt):
    """Create the owner, writer and analyst roles of assay.yml's postgres.roles, with least-privilege grants."""
    from .postgres.roles import apply_roles
    spec = _spec(project, target, conf=conf)
    if not spec.postgres:
        raise ConfigError(f"{spec.root / 'assay.yml'} has no 'postgres:' section")
    passwords = {}
    for item in role_password or []:
        kind, _, variable = item.partition("=")
        if not variable or variable not in os.environ:
            raise ConfigError(f"--role-password {item}: expected KIND=ENV_VAR with ENV_VAR set in the environment")
        passwords[kind] = os.environ[variable]
    admin_password = os.environ.get(admin_password_env)
    if admin_password is None:
        raise ConfigError(f"--admin-password-env: the environment variable {admin_password_env} is not set")
    admin = {**spec.postgres, "user": admin_user, "password": admin_password}
    admin.pop("roles", None)
    apply_roles(dict(spec.postgres), admin=admin, passwords=passwords, create_login=create_login)
    roles = spec.postgres.get("roles") or {}
    console.print(f"roles applied: owner {roles.get('owner')}, writer {roles.get('writer')}, analyst "
                  f"{roles.get('analyst')}; login {spec.postgres.get('user')} may act as owner and writer")


@postgres_app.command("status")
def status_command(project: str = typer.Option(".", "--project", "-p"),
                   target: Optional[str] = typer.Option(None, "--target", "-t"),
                   storage: Optional[str] = typer.Option(None, "--storage"), conf: Optional[list[str]] = ConfOpt):
    """Each published table: its Delta version and the version PostgreSQL holds."""
    from ..delta.table import open_table
    from .postgres.sink import sink_for
    spec = _spec(project, target, storage, conf)
    found = mirrors(spec)
    if not found:
        console.print("no published table (run the pipeline first, or declare publish=dp.postgres(...))")
        return
    table = Table(show_edge=False)
    for column in ("dataset", "postgres table", "delta version", "postgres version", "behind"):
        table.add_column(column)
    with sink_for(spec) as sink:
        for name, mirror in sorted(found.items()):
            delta = open_table(_table_path(spec, name))
            version = delta.version() if delta is not None else None
            app_id = f"assay:{spec.name}:{name}:{delta.metadata().id}" if delta is not None else None
            loaded = sink.last_batch(mirror.table, app_id) if app_id else None
            behind = "—" if version is None else ("not loaded" if loaded is None else f"{version - loaded} versions")
            table.add_row(name, f"{sink.config.schema}.{mirror.table}", str(version), str(loaded), behind)
    console.print(table)


def _table_path(spec, dataset: str) -> Path:
    from .. import catalog
    entry = catalog.declared(spec).get(dataset) or {}
    return spec.storage / entry.get("schema", spec.schema_for(None)) / dataset


def mirrors(spec) -> dict:
    """The published datasets of a pipeline (name → Mirror), from what its last run recorded
    (catalog.json): these commands do not load the pipeline."""
    from .. import catalog
    from .declaration import mirror_of
    found = {}
    for name, entry in catalog.declared(spec).items():
        mirror = mirror_of(name, entry.get("kind", ""), entry.get("table_properties") or {})
        if mirror is not None:
            found[name] = mirror
    return found


def verify_mirrors(spec, truth_dir) -> list:
    """The PostgreSQL tables of the published datasets compared with the truth, row for row (as
    `postgres:<schema>.<table>` results of a verify report)."""
    import json

    import pyarrow.parquet as pq

    from .postgres.sink import sink_for
    from ..verify import TableResult, compare
    manifest = json.loads((Path(truth_dir) / "manifest.json").read_text())
    found = {name: m for name, m in mirrors(spec).items() if name in manifest["tables"]}
    if not found:
        return []
    results = []
    with sink_for(spec) as sink:
        for name, mirror in sorted(found.items()):
            label = f"postgres:{sink.config.schema}.{mirror.table}"
            truth = pq.read_table(Path(truth_dir) / f"{name}.parquet")
            try:
                actual = sink.read_table(mirror.table)
            except Exception as exc:            # a finding, not a crash of the comparison
                results.append(TableResult(label, "error", truth.num_rows, note=f"{type(exc).__name__}: {exc}"))
                continue
            results.append(compare(label, truth, actual,
                                   approx=manifest["tables"][name].get("approx_distinct", [])))
    return results
