"""Pseudonymisation (assay/pii.py): keyed HMAC-SHA-256 computed by the engine's built-ins.

- The engine's value equals Python's `hmac` on many values (Unicode, empty, NUL, multi-block) and
  keys (short, one block, longer than a block, non-ASCII), NULL stays NULL, the version prefixes it.
- The same values on Apache Spark (a real local Spark Connect server) as on the embedded engine.
- The SQL form gives the Python form's values.
- The key, and the HMAC blocks equivalent to it, never appear in what Assay prints, logs, stores
  in the event log or says in errors (run, dry-run, graph, status, history, query, failures).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import random
from pathlib import Path

import pytest

from assay import pii
from assay.errors import ConfigError, GraphError
from tests.conftest import cli, table, write_project

pytest_plugins = ["tests.spark_server"]

KEYS = {"PII_TEST_K32": "k" * 32, "PII_TEST_K64": "0123456789abcdef" * 4, "PII_TEST_K100": "long-key-" * 12,
        "PII_TEST_KUNI": "ключ-🔑-secret-secret-secret-secret"}
LEAK_KEY = "leak-test-key-7c0ffee-" + "9" * 20        # the key the leak tests look for


@pytest.fixture(autouse=True, scope="module")
def keys():
    saved = {k: os.environ.get(k) for k in KEYS}
    os.environ.update(KEYS)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def reference(key: str, value: str, version: str = "v1") -> str:
    return f"{version}:" + hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()


def sample_values() -> list[str]:
    rnd = random.Random(7)
    fixed = ["", "a", "abc", "user@example.org", "USER@Example.ORG", " 10001 ", "10001", "Ünïcödé ☃ 𝄞 日本語",
             "josé.garcía@correo.es", "x" * 55, "x" * 56, "y" * 63, "y" * 64, "z" * 65, "w" * 1000, "\n\t", "\x00nul"]
    alphabet = [(32, 126), (160, 0x2FF), (0x370, 0x3FF), (0x400, 0x4FF), (0x4E00, 0x4FFF), (0x1F300, 0x1F64F)]

    def one() -> str:
        out = []
        for _ in range(rnd.randint(0, 150)):
            lo, hi = rnd.choice(alphabet)
            out.append(chr(rnd.randint(lo, hi)))
        return "".join(out)
    return fixed + [one() for _ in range(500)]


def engine_values(spark, values: list[str], key_var: str, version: str = "v1") -> dict[int, str]:
    df = spark.createDataFrame([(i, v) for i, v in enumerate(values)] + [(len(values), None)], "i INT, v STRING")
    rows = df.select("i", pii.pseudonymize("v", key=f"${{env:{key_var}}}", version=version).alias("h")).collect()
    return {r["i"]: r["h"] for r in rows}


# ---------------------------------------------------------------- values

def test_engine_hmac_equals_pythons_on_many_values_and_keys(engine):
    values = sample_values()
    for var, key in KEYS.items():
        got = engine_values(engine.spark, values, var, version="v3")
        assert got[len(values)] is None                            # NULL stays NULL
        wrong = [(v, got[i]) for i, v in enumerate(values) if got[i] != reference(key, v, "v3")]
        assert wrong == [], f"{var}: {len(wrong)} values differ from Python's hmac, e.g. {wrong[:2]}"
        assert all(got[i].startswith("v3:") and len(got[i]) == 3 + 64 for i in range(len(values)))


def test_keys_and_versions_give_unrelated_values(engine):
    got = {var: engine_values(engine.spark, ["same"], var)[0] for var in KEYS}
    assert len(set(got.values())) == len(KEYS)
    v2 = engine_values(engine.spark, ["same"], "PII_TEST_K32", version="v2")[0]
    assert v2[3:] == got["PII_TEST_K32"][3:] and v2[:3] == "v2:"   # the version is only the prefix


def test_sql_form_equals_the_python_form(engine):
    values = sample_values()[:80]
    spark = engine.spark
    spark.createDataFrame([(i, v) for i, v in enumerate(values)], "i INT, v STRING").createOrReplaceTempView("pii_t")
    sql = pii.expand_sql("SELECT i, PSEUDONYMIZE(trim(v), '${env:PII_TEST_K64}', 'v9') AS h, "
                         "pseudonymize(v, '${env:PII_TEST_K32}') AS h1, 'pseudonymize(x)' AS s FROM pii_t")
    rows = {r["i"]: r for r in spark.sql(sql).collect()}
    for i, v in enumerate(values):
        assert rows[i]["h"] == reference(KEYS["PII_TEST_K64"], v.strip(" "), "v9")
        assert rows[i]["h1"] == reference(KEYS["PII_TEST_K32"], v)
        assert rows[i]["s"] == "pseudonymize(x)"                      # strings are left alone
    nested = pii.expand_sql("SELECT pseudonymize(pseudonymize(v, '${env:PII_TEST_K32}'), '${env:PII_TEST_K32}', "
                            "'v2') AS h FROM pii_t WHERE i = 3")
    assert spark.sql(nested).collect()[0]["h"] == reference(KEYS["PII_TEST_K32"], reference(KEYS["PII_TEST_K32"],
                                                                                          values[3]), "v2")


def test_the_same_values_on_apache_spark(spark_server, engine):
    from assay.engines import create_engine
    values = sample_values()[:200]
    sail = engine_values(engine.spark, values, "PII_TEST_KUNI")
    with create_engine("spark", {"remote": spark_server}) as spark_engine:
        spark = engine_values(spark_engine.spark, values, "PII_TEST_KUNI")
        spark_engine.spark.createDataFrame([(v,) for v in values[:20]], "v STRING").createOrReplaceTempView("t")
        sql = spark_engine.spark.sql(pii.expand_sql("SELECT pseudonymize(lower(trim(v)), '${env:PII_TEST_K100}') "
                                                    "AS h FROM t")).collect()
    assert spark == sail
    assert all(spark[i] == reference(KEYS["PII_TEST_KUNI"], v) for i, v in enumerate(values))
    assert [r["h"] for r in sql] == [reference(KEYS["PII_TEST_K100"], v.strip(" ").lower()) for v in values[:20]]


# ---------------------------------------------------------------- the key, by reference only

def test_the_key_is_a_reference_checked_without_echoing_it(monkeypatch):
    with pytest.raises(GraphError) as literal:
        pii.pseudonymize("v", key="a-literal-key-that-must-not-be-echoed-000000")
    assert "a-literal-key" not in str(literal.value) and "${env:NAME}" in str(literal.value)
    monkeypatch.delenv("PII_TEST_MISSING", raising=False)
    with pytest.raises(ConfigError, match="PII_TEST_MISSING"):
        pii.pseudonymize("v", key="${env:PII_TEST_MISSING}")
    monkeypatch.setenv("PII_TEST_SHORT", "short-key-value")
    with pytest.raises(ConfigError) as short:
        pii.pseudonymize("v", key="${env:PII_TEST_SHORT}")
    assert "PII_TEST_SHORT" in str(short.value) and "short-key-value" not in str(short.value)
    with pytest.raises(GraphError, match="version"):
        pii.pseudonymize("v", key="${env:PII_TEST_K32}", version="v1:")
    with pytest.raises(GraphError, match="string literals"):
        pii.expand_sql("SELECT pseudonymize(v, key_column) FROM t")


def test_hmac_blocks_follow_rfc_2104():
    # RFC 4231 test case 2: key "Jefe", "what do ya want for nothing?"
    inner, outer = pii.pad_blocks(b"Jefe")
    digest = hashlib.sha256(outer + hashlib.sha256(inner + b"what do ya want for nothing?").digest()).hexdigest()
    assert digest == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    long_key = b"\xaa" * 131                       # RFC 4231 test case 6: a key longer than a block
    inner, outer = pii.pad_blocks(long_key)
    digest = hashlib.sha256(outer + hashlib.sha256(
        inner + b"Test Using Larger Than Block-Size Key - Hash Key First").digest()).hexdigest()
    assert digest == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"


LEAK_PIPELINE = '''
from pyspark.sql import functions as F
from assay import pipelines as dp

KEY = "${env:PII_LEAK_KEY}"

@dp.table(name="bronze.people")
def people():
    return dp.read_files("people", "json", schema="id STRING, email STRING")

@dp.table(name="silver.people_keyed")
@dp.expect_or_fail("known_person", "id <> 'boom'")
def people_keyed():
    return dp.read_stream("people").select(
        "id", dp.pseudonymize(F.lower(F.trim("email")), key=KEY, version="v1").alias("email_key"))
'''
LEAK_SQL = '''
CREATE MATERIALIZED VIEW gold.people_sql AS
SELECT id, pseudonymize(lower(trim(email)), '${env:PII_LEAK_KEY}', 'v1') AS email_key FROM people;
'''


def leak_markers() -> list[str]:
    inner, outer = (b.hex() for b in pii.pad_blocks(LEAK_KEY.encode()))
    return [LEAK_KEY, inner, outer, inner.upper(), outer.upper(), inner[:40], outer[:40]]


def assert_no_leak(text: str, where: str) -> None:
    found = [m[:12] + "…" for m in leak_markers() if m in text or m.lower() in text.lower()]
    assert not found, f"{where} shows the key or an HMAC block ({found}):\n{text[-3000:]}"


def storage_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


@pytest.mark.slow
def test_the_key_never_appears_in_output_event_log_or_errors(tmp_path):
    folder = write_project(tmp_path / "proj", {"transformations/p.py": LEAK_PIPELINE,
                                               "transformations/g.sql": LEAK_SQL})
    (folder / "landing/people").mkdir(parents=True)
    (folder / "landing/people/a.json").write_text('{"id": "1", "email": " Ann@Example.org "}\n'
                                                  '{"id": "2", "email": "bob@example.org"}\n')
    env = {"PII_LEAK_KEY": LEAK_KEY, "ASSAY_DEBUG": ""}
    outputs = []

    def run(*args, code=0, **extra):
        result = cli(*args, cwd=folder, env={**env, **extra})
        outputs.append((" ".join(args), result.stdout + result.stderr))
        assert result.returncode == code, result.stdout + result.stderr
        return result.stdout + result.stderr

    run("run")
    keyed = table(folder, "02_silver", "people_keyed")
    assert sorted(r["email_key"] for r in keyed) == sorted(reference(LEAK_KEY, e) for e in
                                                            ("ann@example.org", "bob@example.org"))
    assert sorted(r["email_key"] for r in table(folder, "03_gold", "people_sql")) == \
        sorted(r["email_key"] for r in keyed)                      # the SQL form gives the same keys
    run("dry-run")
    run("graph")
    run("graph", "--format", "json")
    run("status")
    run("history")
    run("query", "SELECT * FROM event_log")

    # A failing expectation quotes the first failing row: keyed values only.
    (folder / "landing/people/b.json").write_text('{"id": "boom", "email": "eve@example.org"}\n')
    failure = run("run", code=5)
    assert "known_person" in failure and reference(LEAK_KEY, "eve@example.org") in failure
    run("run", code=5, ASSAY_DEBUG="1")
    # An engine error in a query holding the blocks (an unknown column), in Python and in SQL.
    (folder / "transformations/p.py").write_text(LEAK_PIPELINE.replace('F.trim("email")', 'F.trim("mail")'))
    failure = run("dry-run", code=3)
    assert "mail" in failure
    (folder / "transformations/p.py").write_text(LEAK_PIPELINE)
    (folder / "transformations/g.sql").write_text(LEAK_SQL.replace("trim(email)", "trim(nope)"))
    failure = run("dry-run", code=3)
    assert "nope" in failure
    run("run", code=3, ASSAY_DEBUG="1")

    for command, text in outputs:
        assert_no_leak(text, f"`assay {command}`")
    assert_no_leak(storage_bytes(folder / "storage").decode("latin-1"), "the storage (tables, event log, checkpoints)")


def test_the_key_never_appears_in_apache_sparks_errors(spark_server, tmp_path):
    """Spark's errors carry the analysed plan, literals included, and PySpark's client logs them to
    stderr itself: both are masked."""
    config = f"""
        name: t
        storage: ./storage
        landing: ./landing
        engine: spark
        engine_conf: {{remote: "{spark_server}"}}
        schemas: {{bronze: 01_bronze, silver: 02_silver, gold: 03_gold, system: _system}}
    """
    folder = write_project(tmp_path / "proj", {
        "transformations/p.py": LEAK_PIPELINE.replace('F.trim("email")', 'F.trim("mail")'),
        "transformations/g.sql": LEAK_SQL.replace("trim(email)", "trim(nope)")}, config)
    (folder / "landing/people").mkdir(parents=True)
    result = cli("dry-run", cwd=folder, env={"PII_LEAK_KEY": LEAK_KEY, "ASSAY_DEBUG": ""})
    text = result.stdout + result.stderr
    assert result.returncode == 3, text
    assert "UNRESOLVED_COLUMN" in text and "mail" in text and "nope" in text, text
    assert "***PII_LEAK_KEY:ipad***" in text, text    # the plan was printed, with the blocks masked
    assert_no_leak(text, "`assay dry-run` on Apache Spark")
