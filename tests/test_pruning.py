"""assay/delta/pruning.py: which files of a Delta table may hold given values, from its statistics."""
from datetime import date, datetime, timezone

import pyarrow as pa
from deltalake import write_deltalake

from assay.delta.pruning import files_holding
from assay.delta.table import open_table


def _table(path, batches, partition_by=None):
    for batch in batches:
        write_deltalake(str(path), pa.table(batch), mode="append", partition_by=partition_by)
    return open_table(path)


def _days(actions, column="day"):
    return sorted((a[f"min.{column}"], a[f"max.{column}"]) for a in actions)


def test_files_whose_range_cannot_hold_the_values_are_left_out(tmp_path):
    table = _table(tmp_path / "t", [
        {"day": [date(2026, 11, 1), date(2026, 11, 2)], "n": [1, 2], "s": ["a", "b"]},
        {"day": [date(2026, 11, 3), date(2026, 11, 4)], "n": [3, 4], "s": ["c", "d"]},
        {"day": [date(2026, 11, 5), None], "n": [5, 6], "s": ["e", "x" * 40]},
    ])
    assert _days(files_holding(table, ["day"], [(date(2026, 11, 3),)])) == [(date(2026, 11, 3), date(2026, 11, 4))]
    assert len(files_holding(table, ["day"], [(date(2026, 11, 2),), (date(2026, 11, 5),)])) == 2
    assert files_holding(table, ["day"], [(date(2027, 1, 1),)]) == []
    assert len(files_holding(table, ["day"], [(None,)])) == 3                 # NULLs: never pruned
    assert len(files_holding(table, ["n"], [(4,)])) == 1
    assert len(files_holding(table, ["day", "n"], [(date(2026, 11, 1), 4)])) == 0   # each column must fit
    # a string max this long may be a cut prefix: it bounds nothing above
    assert len(files_holding(table, ["s"], [("z",)])) == 1


def test_what_the_statistics_cannot_decide_keeps_the_file(tmp_path):
    at = datetime(2026, 11, 1, 10, tzinfo=timezone.utc)
    table = _table(tmp_path / "t", [{"ts": [at], "f": [1.5]}, {"ts": [at.replace(hour=11)], "f": [2.5]}])
    assert len(files_holding(table, ["ts"], [(at.replace(hour=23),)])) == 2
    assert len(files_holding(table, ["f"], [(9.0,)])) == 2


def test_a_partitioned_input_is_pruned_by_its_partition_values(tmp_path):
    table = _table(tmp_path / "t", [{"region": ["north", "north"], "n": [1, 2]},
                                    {"region": ["south"], "n": [3]}, {"region": [None], "n": [4]}],
                   partition_by=["region"])
    assert [a["partition.region"] for a in files_holding(table, ["region"], [("south",)])] == ["south"]
    assert len(files_holding(table, ["region"], [("south",), (None,)])) == 3
