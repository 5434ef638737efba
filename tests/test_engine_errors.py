"""Engine error texts in Assay's words, naming the dataset and file:line, the engine's first line kept
below. The texts are the ones the engines really print: the embedded engine's were captured from
it (and are provoked again below, so an engine upgrade that changes them fails here), Spark 4's are
its documented error conditions."""
import pytest

from assay.engine_errors import explain, sql_type, translate
from tests.conftest import write_project

SAIL = {
    "missing": 'attribute ObjectName([Identifier("nope")]) is missing from the schema: cannot resolve attribute',
    "missing_qualified": 'attribute ObjectName([Identifier("t"), Identifier("nope")]) is missing from the schema: '
                         'cannot resolve attribute',
    "missing_join_key": "[UNRESOLVED_COLUMN] Cannot find column nope",
    "ambiguous": 'ambiguous attribute: ObjectName([Identifier("id")])',
    "arithmetic": "Cannot coerce arithmetic expression List(non-null Int32) + Int32 to valid types",
    "signature": ("Internal error: Function 'sum' failed to match any signature, errors: Error during planning: "
                  "Function 'sum' requires Decimal, but received List(non-null Int32) (DataType: List(non-null "
                  "Int32)).\nThis issue was likely caused by a bug in DataFusion's code. No function matches the "
                  "given name and argument types 'sum(List(non-null Int32))'. You might need to add explicit type "
                  "casts.\n\tCandidate functions:\n\tsum(Decimal)\n\tsum(UInt64)"),
    "filter": "Cannot create filter with non-boolean predicate 't.#1' returning Utf8",
    "cast": "Cannot cast string 'x' to value of Int32 type",
    "syntax": "invalid argument: found = at 6:7 expected '+', '-', '~', 'NOT', '!', '(', 'EXISTS', 'TABLE', "
              "identifier, 'STRUCT', 'CASE', 'CAST', 'TRY_CAST', string, number, 'NULL', 'INTERVAL', or variable",
    "syntax_end": "invalid argument: found end of input expected expression",
    "syntax_paren": "invalid argument: found t at 16:17 expected ',', or ')'",
    "syntax_string": "invalid argument: found end of input expected any, '\\', or '''",
    "function": "unknown function: nofunc",
    "table": "Table not found: [TABLE_OR_VIEW_NOT_FOUND] Table or view not found: nosuch",
    "union": "UNION queries have different number of columns: left has 1 columns whereas right has 2 columns",
}

SPARK = {
    "missing": "[UNRESOLVED_COLUMN.WITH_SUGGESTION] A column, variable, or function parameter with name `nope` "
               "cannot be resolved. Did you mean one of the following? [`id`, `name`, `day`]. SQLSTATE: 42703;\n"
               "'Project ['nope]\n+- SubqueryAlias t",
    "missing_no_suggestion": "[UNRESOLVED_COLUMN.WITHOUT_SUGGESTION] A column, variable, or function parameter "
                             "with name `t`.`nope` cannot be resolved.  SQLSTATE: 42703",
    "ambiguous": "[AMBIGUOUS_REFERENCE] Reference `id` is ambiguous, could be: [`t`.`id`, `u`.`id`]. "
                 "SQLSTATE: 42704",
    "type": "[DATATYPE_MISMATCH.BINARY_OP_DIFF_TYPES] Cannot resolve \"(arr + 1)\" due to data type mismatch: the "
            "left and right operands of the binary operator have incompatible types (\"ARRAY<INT>\" and \"INT\"). "
            "SQLSTATE: 42K09;",
    "cast": "[DATATYPE_MISMATCH.CAST_WITHOUT_SUGGESTION] Cannot resolve \"CAST(arr AS INT)\" due to data type "
            "mismatch: cannot cast \"ARRAY<INT>\" to \"INT\". SQLSTATE: 42K09;",
    "cast_value": "[CAST_INVALID_INPUT] The value 'x' of the type \"STRING\" cannot be cast to \"INT\" because it "
                  "is malformed. Correct the value as per the syntax, or change its target type. SQLSTATE: 22018",
    "syntax": "[PARSE_SYNTAX_ERROR] Syntax error at or near '='. SQLSTATE: 42601 (line 1, pos 6)",
    "syntax_end": "[PARSE_SYNTAX_ERROR] Syntax error at or near end of input. SQLSTATE: 42601",
    "function": "[UNRESOLVED_ROUTINE] Cannot resolve routine `nofunc` on search path [`system`.`builtin`, "
                "`system`.`session`, `spark_catalog`.`default`]. SQLSTATE: 42883",
    "table": "[TABLE_OR_VIEW_NOT_FOUND] The table or view `nosuch` cannot be found. Verify the spelling and "
             "correctness of the schema and catalog.",
}


@pytest.mark.parametrize("key, said", [
    ("missing", "column 'nope' does not exist"),
    ("missing_qualified", "column 't.nope' does not exist"),
    ("missing_join_key", "column 'nope' does not exist"),
    ("ambiguous", "column 'id' is ambiguous: more than one input has it; qualify it"),
    ("arithmetic", "the types do not match: cannot compute ARRAY<INT> + INT"),
    ("signature", "function sum() does not accept (ARRAY<INT>)"),
    ("filter", "a filter condition must be BOOLEAN, this one is STRING"),
    ("cast", "the value 'x' cannot be cast to INT; use try_cast()"),
    ("syntax", "SQL syntax error: unexpected '=', expected an expression"),
    ("syntax_end", "SQL syntax error: the SQL ends too early, expected an expression"),
    ("syntax_paren", "SQL syntax error: unexpected 't', expected ',', ')'"),
    ("syntax_string", "SQL syntax error: a string is not closed"),
    ("function", "unknown function nofunc()"),
    ("table", "table or view 'nosuch' does not exist"),
    ("union", "the two sides of a UNION have 1 and 2 columns"),
])
def test_embedded_engine_texts(key, said):
    text = translate(SAIL[key], "clean", "transformations/silver.py:12")
    first, second = text.split("\n")
    assert first.startswith(f"dataset 'clean' (at transformations/silver.py:12): {said}"), first
    assert second == "    engine: " + SAIL[key].splitlines()[0]


@pytest.mark.parametrize("key, said", [
    ("missing", "column 'nope' does not exist; did you mean one of: id, name, day"),
    ("missing_no_suggestion", "column 't.nope' does not exist"),
    ("ambiguous", "column 'id' is ambiguous: more than one input has it (t.id, u.id)"),
    ("type", "the types do not match in \"(arr + 1)\": the left and right operands of the binary operator have "
             "incompatible types (\"ARRAY<INT>\" and \"INT\")"),
    ("cast", "the types do not match in \"CAST(arr AS INT)\": cannot cast \"ARRAY<INT>\" to \"INT\""),
    ("cast_value", "the value 'x' cannot be cast to INT"),
    ("syntax", "SQL syntax error: unexpected '='"),
    ("syntax_end", "SQL syntax error: the SQL ends too early"),
    ("function", "unknown function nofunc()"),
    ("table", "table or view 'nosuch' does not exist"),
])
def test_spark_texts(key, said):
    first, second = translate(SPARK[key], "clean", "silver.sql:3").split("\n")
    assert first.startswith(f"dataset 'clean' (at silver.sql:3): {said}"), first
    assert second == "    engine: " + SPARK[key].splitlines()[0]


@pytest.mark.parametrize("name, own, other", [("sail", SAIL, SPARK), ("spark", SPARK, SAIL)])
def test_each_engine_declares_the_texts_it_prints(name, own, other):
    """Each engine's module holds the patterns of its own texts, each naming a wording Assay has; they
    match none of the other engine's texts, so the order in which engines are tried does not matter."""
    from assay.engine_errors import WORDINGS
    from assay.engines import engine_class
    patterns = engine_class(name).error_patterns
    assert {wording for _, wording in patterns} <= WORDINGS.keys()
    assert [key for key, text in own.items() if not any(p.search(text) for p, _ in patterns)] == []
    assert [key for key, text in other.items() if any(p.search(text) for p, _ in patterns)] == []


def test_missing_column_lists_the_columns_known_to_assay():
    assert explain(SAIL["missing"], {"orders": ["id", "amount"], "customers": ["id", "region"]}).startswith(
        "column 'nope' does not exist; the columns of its inputs: orders (id, amount); customers (id, region)\n")
    assert explain(SPARK["missing"], ["id", "name"]).startswith("column 'nope' does not exist; the columns are: id, name")


def test_unknown_texts_pass_through_as_one_line():
    assert translate("something new\nat line 2", "d", "a.py:1") == "dataset 'd' (at a.py:1): something new"


def test_arrow_types_in_spark_words():
    assert sql_type("List(non-null Int32)") == "ARRAY<INT>"
    assert sql_type('Struct("a": Int32, "b": List(Utf8))') == "STRUCT<a: INT, b: ARRAY<STRING>>"
    assert sql_type("Decimal128(10, 2)") == "DECIMAL(10,2)"
    assert sql_type('Timestamp(Microsecond, Some("UTC"))') == "TIMESTAMP"


@pytest.mark.parametrize("provoke, key", [
    (lambda s: s.sql("SELECT nope FROM t").schema, "missing"),
    (lambda s: s.sql("SELECT id FROM t JOIN u ON t.id = u.id").schema, "ambiguous"),
    (lambda s: s.sql("SELECT arr + 1 FROM t").schema, "arithmetic"),
    (lambda s: s.sql("SELECT id FROM t WHERE id >= = 0").schema, "syntax"),
    (lambda s: s.sql("SELECT nofunc(id) FROM t").schema, "function"),
    (lambda s: s.sql("SELECT * FROM t WHERE name").schema, "filter"),
])
def test_the_embedded_engine_still_says_these(engine, provoke, key):
    spark = engine.spark
    spark.sql("SELECT 1 AS id, 'a' AS name, array(1, 2) AS arr").createOrReplaceTempView("t")
    spark.sql("SELECT 1 AS id").createOrReplaceTempView("u")
    with pytest.raises(Exception) as caught:
        provoke(spark)
    said = explain(str(caught.value)).split("\n")[0]
    assert said == explain(SAIL[key]).split("\n")[0]


def test_dry_run_names_the_missing_column_and_the_inputs(tmp_path, assay_cli):
    folder = write_project(tmp_path / "p", {"transformations/a.py": """
        from assay import pipelines as dp

        @dp.table(name="bronze.raw")
        def raw():
            return dp.read_files("in", "json", schema="id STRING, amount DOUBLE")

        @dp.materialized_view(name="gold.totals")
        @dp.expect("positive", "amout > 0")
        def totals():
            return dp.read("raw").select("id", "nope")

        @dp.materialized_view(name="gold.checked")
        @dp.expect("positive", "amout > 0")
        def checked():
            return dp.read("raw")
        """})
    result = assay_cli("dry-run", cwd=folder)
    assert result.returncode == 3 and "Traceback" not in result.stderr
    err = " ".join(result.stderr.split())   # the console may wrap long lines
    assert ("dataset 'totals' (at transformations/a.py:8): column 'nope' does not exist; the columns of its "
            "inputs: raw (id, amount") in err
    assert "engine: attribute ObjectName" in err
    assert ("expectation 'positive' of 'checked' (at transformations/a.py:13) is not valid SQL over its columns: "
            "column 'amout' does not exist; the columns are: id, amount") in err
