"""How a materialized view's refresh is done, and why: `noop`, `append`, `partitions` or `full`
(issue 20).

`append` merges the view's query over only the rows appended to one input since the last refresh
into the view's rows, by group key. That equals a full recompute when the query is a decomposable
aggregate of that input: the input, then row-wise filters and projections (and joins with inputs
that did not change, keeping the input's rows on their preserved side), then one GROUP BY with only
count, sum, min and max, then at most renames, a selection of its columns, or a sort.

`partitions` recomputes only the partitions of a partitioned view that the changed input's added
or removed rows fall in, and keeps the others. That equals a full recompute when each of the view's
rows is computed from input rows of its own partition only: the partition columns pass unchanged
from the input to the view, every aggregate groups by them, every window is partitioned by them,
and the input is not joined or unioned (its rows would meet rows of other partitions). It takes
removed rows too (dedupe replacements, AUTO CDC updates and deletes), and any aggregate.

The query's shape is read from its Spark Connect plan (a protobuf both engines receive, so the
reading is engine-neutral): relations (`aggregate`, `filter`, `project`, `join`, `read`) and the
names of unresolved functions. Whatever this module cannot prove mergeable is a reason for `full`.
A SQL-defined view reaches the engine as SQL text (a `sql` relation), so its shape is not visible.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import GraphError
from . import connect_plan as cp

REFRESH_PROPERTY = "assay.refresh"
AUTO, INCREMENTAL = "auto", "incremental"
MODES = (AUTO, INCREMENTAL)
NOOP, APPEND, PARTITIONS, FULL = "noop", "append", "partitions", "full"

# Merge of two partial results of one aggregate (count and sum add, min and max keep the least and
# the greatest); SQL's NULL rules hold because the merge is itself sum/min/max over the partials.
MERGEABLE = {"count": "sum", "sum": "sum", "min": "min", "max": "max"}
# Functions whose value is not a function of the row: an incremental result would differ from a
# recompute (and two recomputes differ from each other).
NONDETERMINISTIC = {"rand", "randn", "random", "uuid", "shuffle", "monotonically_increasing_id",
                    "spark_partition_id", "input_file_name", "input_file_block_start", "input_file_block_length",
                    "current_timestamp", "current_date", "now", "localtimestamp", "reflect", "try_reflect",
                    "randstr", "uniform", "rand_int"}
# Of those, the random ones: a partition recomputed with them is as good a recompute as the kept
# ones were (not so for time or layout: a kept partition would show an older clock or clash ids).
RANDOM = {"rand", "randn", "random", "uuid", "shuffle", "randstr", "uniform", "rand_int"}
AGGREGATES = {"count", "sum", "min", "max", "avg", "mean", "count_distinct", "approx_count_distinct", "first",
              "last", "first_value", "last_value", "collect_list", "collect_set", "stddev", "stddev_samp",
              "stddev_pop", "variance", "var_samp", "var_pop", "percentile", "percentile_approx",
              "approx_percentile", "median", "mode", "any_value", "bool_and", "bool_or", "every", "some", "any",
              "max_by", "min_by", "corr", "covar_pop", "covar_samp", "skewness", "kurtosis", "sum_distinct",
              "try_sum", "try_avg", "count_if", "array_agg", "listagg", "string_agg", "bit_and", "bit_or",
              "bit_xor", "histogram_numeric", "count_min_sketch", "hll_sketch_agg", "regr_count"}
# Relations that keep, drop or transform each row on its own (the path from the aggregate to the
# appended input may use only these, and joins).
ROW_WISE = {"filter", "project", "with_columns", "with_columns_renamed", "drop", "to_df", "subquery_alias",
            "hint", "repartition", "repartition_by_expression", "fill_na", "drop_na", "replace"}
# Where in a query an expression sits, as a reason says it.
WHERE = {"with_columns": "a computed column", "project": "a projection", "filter": "a filter",
         "join": "a join condition", "aggregate": "an aggregate"}
# Above the aggregate: relations that do not change its rows.
TRANSPARENT = {"sort", "subquery_alias", "hint", "repartition", "repartition_by_expression"}


def refresh_mode(dataset) -> str:
    """The view's declared refresh: `auto` (any technique) or `incremental` (noop or append only)."""
    mode = str(dataset.table_properties.get(REFRESH_PROPERTY, AUTO)).strip().lower()
    if mode not in MODES:
        raise GraphError(f"materialized view '{dataset.name}' (at {dataset.location}): refresh "
                         f"'{mode}' is not one of {', '.join(MODES)}")
    return mode


@dataclass(frozen=True)
class Technique:
    """The refresh chosen and why. `required`: a full refresh nothing could have replaced (the first
    refresh, a changed definition, one asked for), which even refresh="incremental" accepts."""
    kind: str
    reason: str
    required: bool = False

    def metrics(self) -> dict:
        return {"refresh": self.kind, "reason": self.reason}


@dataclass
class Shape:
    """A view's query seen as an aggregate of one appended input: for each output column, its role
    (`key`, or how two partial values merge: `sum`, `min`, `max`); `blockers` say why it is not one."""
    roles: list[str] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)

    @property
    def mergeable(self) -> bool:
        return not self.blockers


def aggregate_shape(root, columns: list[str], changed: str, tables: dict[str, str]) -> Shape:
    """The shape of a query whose plan's root relation is `root`, with output `columns`, for an
    increment of the input `changed`; `tables`: the table path each input dataset is read from."""
    shape = Shape()
    names = {str(path).rstrip("/"): name for name, path in tables.items()}
    top: list = []
    rel = root
    while cp.kind(rel) in TRANSPARENT | {"project", "to_df", "with_columns_renamed", "drop", "with_columns",
                                       "filter", "limit", "offset", "tail", "deduplicate"}:
        top.append(rel)
        rel = cp.child(rel)
    if cp.kind(rel) == "sql":
        shape.blockers.append("defined in SQL: its query reaches the engine as text, so its shape is not visible "
                              "to Assay (define the view with the DataFrame API for incremental refreshes)")
        return shape
    if cp.kind(rel) != "aggregate":
        shape.blockers.append(_no_aggregate(rel))
        return shape
    agg = rel.aggregate
    if agg.group_type != type(agg).GroupType.GROUP_TYPE_GROUPBY:
        shape.blockers.append(f"{type(agg).GroupType.Name(agg.group_type).removeprefix('GROUP_TYPE_').lower()} "
                              "grouping is not merged")
    outputs: list[tuple[str | None, str]] = []
    for expr in agg.grouping_expressions:
        _row_wise(expr, "a group key", shape.blockers)
        outputs.append((cp.name(expr), "key"))
    for expr in agg.aggregate_expressions:
        outputs.append((cp.name(expr), _merge_of(expr, shape.blockers)))
    for rel_above in reversed(top):
        outputs = _above(rel_above, outputs, shape.blockers)
        if outputs is None:
            break
    if outputs is not None and not shape.blockers:
        if len(outputs) != len(columns):
            shape.blockers.append(f"its {len(columns)} columns could not be matched to the aggregate's "
                                  f"{len(outputs)} outputs")
        else:
            shape.roles = [role for _, role in outputs]
    found = _input_path(agg.input, changed, names, shape.blockers)
    if found == 0:
        shape.blockers.append(f"'{changed}' is not read where its rows are aggregated")
    elif found > 1:
        shape.blockers.append(f"'{changed}' is read {found} times (a self-join or union: its increment "
                              "is not merged)")
    return shape


# --- above the aggregate ---------------------------------------------------------------------

def _above(rel, outputs, blockers):
    kind = cp.kind(rel)
    if kind in TRANSPARENT:
        return outputs
    if kind == "to_df":
        names = list(rel.to_df.column_names)
        return [(n, role) for n, (_, role) in zip(names, outputs)] if len(names) == len(outputs) else outputs
    if kind == "with_columns_renamed":
        renames = dict(rel.with_columns_renamed.rename_columns_map)
        renames.update({r.col_name: r.new_col_name for r in getattr(rel.with_columns_renamed, "renames", [])})
        return [(renames.get(n, n), role) for n, role in outputs]
    if kind == "drop":
        dropped = {cp.name(e) for e in rel.drop.columns} | set(rel.drop.column_names)
        if any(n in dropped for n, role in outputs if role == "key"):
            blockers.append("a group key is dropped from the view (its rows cannot be matched by key)")
            return None
        return [(n, role) for n, role in outputs if n not in dropped]
    if kind == "project":
        by_name = {n: role for n, role in outputs if n is not None}
        result = []
        for expr in rel.project.expressions:
            inner, alias = cp.unalias(expr)
            which = inner.WhichOneof("expr_type")
            if which == "unresolved_star":
                result.extend(outputs)
            elif which == "unresolved_attribute" and cp.attr(inner) in by_name:
                result.append((alias or cp.attr(inner), by_name[cp.attr(inner)]))
            else:
                blockers.append(f"{cp.brief(expr)} is computed over the aggregate (the view does not keep "
                                "the aggregates it is computed from, so it cannot be merged)")
                return None
        keys = [n for n, role in outputs if role == "key"]
        if sum(1 for _, role in result if role == "key") < len(keys) and keys:
            blockers.append("a group key is not among the view's columns (its rows cannot be matched by key)")
            return None
        return result
    if kind == "with_columns":
        for alias in rel.with_columns.aliases:
            inner = alias.expr
            if cp.has_window(inner):
                blockers.append(f"window function {cp.window_name(inner)} over the aggregate")
            else:
                blockers.append(f"'{alias.name[0] if alias.name else '?'}' is computed over the aggregate "
                                "(the view does not keep what it is computed from)")
        return None
    if kind == "filter":
        blockers.append("a filter over the aggregate (HAVING): a group left out may come back with more rows")
        return None
    if kind == "deduplicate":
        blockers.append("distinct rows of the aggregate")
        return None
    blockers.append(f"{kind} over the aggregate")
    return None


def _merge_of(expr, blockers) -> str:
    inner, _ = cp.unalias(expr)
    which = inner.WhichOneof("expr_type")
    fn = cp.function(inner)
    if fn is None:
        blockers.append(f"{cp.brief(expr)} wraps an aggregate in {which or 'an expression'} (only bare count, sum, "
                        "min and max are merged)")
        return "?"
    name, args, distinct = fn
    for arg in args:
        _row_wise(arg, f"the argument of {name}()", blockers)
    if name in ("min", "max"):
        return name
    if name in ("count", "sum") and distinct:
        what = "countDistinct" if name == "count" else "sum(DISTINCT)"
        blockers.append(f"{what}({', '.join(cp.describe(a) for a in args)}) is not mergeable (a value counted "
                        "before cannot be told from a new one)")
        return "?"
    if name in MERGEABLE:
        return MERGEABLE[name]
    if name in ("avg", "mean"):
        blockers.append(f"avg({', '.join(cp.describe(a) for a in args)}) is not mergeable from the view's rows "
                        "(they keep the average, not its sum and count: aggregate sum and count and divide "
                        "downstream)")
    elif name in AGGREGATES or which == "unresolved_function":
        blockers.append(f"{name}() is not mergeable here")
    return "?"


# --- below the aggregate -----------------------------------------------------------------------

def _input_path(rel, changed: str, names: dict[str, str], blockers: list[str]) -> int:
    """How many times the input `changed` is read under `rel`; adds a blocker for every relation on
    its path that does not keep rows apart, and for non-deterministic expressions anywhere."""
    kind = cp.kind(rel)
    leaf = _leaf(rel, changed, names, blockers)
    if leaf is not None:
        return leaf
    for expr in cp.expressions(rel):
        _row_wise(expr, WHERE.get(kind, f"a {kind.replace('_', ' ')}"), blockers)
    if kind == "join":
        join = rel.join
        left = _input_path(join.left, changed, names, blockers)
        right = _input_path(join.right, changed, names, blockers)
        types = type(join).JoinType
        kept_left = {types.JOIN_TYPE_INNER, types.JOIN_TYPE_CROSS, types.JOIN_TYPE_LEFT_OUTER,
                     types.JOIN_TYPE_LEFT_SEMI, types.JOIN_TYPE_LEFT_ANTI}
        kept_right = {types.JOIN_TYPE_INNER, types.JOIN_TYPE_CROSS, types.JOIN_TYPE_RIGHT_OUTER}
        if (left and join.join_type not in kept_left) or (right and join.join_type not in kept_right):
            side = "left" if left else "right"
            blockers.append(f"a {types.Name(join.join_type).removeprefix('JOIN_TYPE_').lower().replace('_', ' ')} "
                            f"join with '{changed}' on its {side} side (new rows would change rows already "
                            "aggregated)")
        return left + right
    children = cp.children(rel)
    found = sum(_input_path(c, changed, names, blockers) for c in children)
    if found and kind not in ROW_WISE:
        blockers.append(_not_row_wise(rel, changed))
    return found


def _leaf(rel, changed: str, names: dict[str, str], blockers: list[str]) -> int | None:
    """How many times a relation without inputs reads `changed` (None: it has inputs)."""
    kind = cp.kind(rel)
    if kind == "read":
        read = rel.read
        if read.HasField("data_source"):
            paths = [str(p).rstrip("/") for p in read.data_source.paths]
            if read.data_source.format == "delta" and len(paths) == 1 and paths[0] in names:
                return int(names[paths[0]] == changed)
            blockers.append(f"reads {read.data_source.format or 'files'} {', '.join(paths)} directly")
            return 0
        blockers.append(f"reads '{read.named_table.unparsed_identifier}' from the engine's catalog")
        return 0
    if kind in ("local_relation", "cached_local_relation", "range"):
        return 0
    if kind == "sql":
        blockers.append("part of it is SQL text (its shape is not visible)")
        return 0
    return None


def _not_row_wise(rel, changed: str) -> str:
    kind = cp.kind(rel)
    if kind == "aggregate":
        return f"aggregates '{changed}' twice (an aggregate of an aggregate)"
    if kind == "set_op":
        return f"a {kind.replace('_', ' ')} over '{changed}' (union, intersect or except is not merged)"
    if kind == "deduplicate":
        return f"distinct rows of '{changed}' (dropDuplicates) are not merged"
    if kind in ("limit", "offset", "tail", "sample"):
        return f"{kind} over '{changed}'"
    return f"{kind.replace('_', ' ')} over '{changed}' is not merged"


def _row_wise(expr, where: str, blockers: list[str]) -> None:
    """Blockers for what makes an expression more than a function of its row."""
    for msg in cp.messages(expr):
        name = type(msg).__name__
        if name == "Window":
            blockers.append(f"window function {cp.window_name_of(msg)} in {where}")
        elif name in ("UnresolvedFunction", "CallFunction"):
            fn = msg.function_name.lower()
            if fn in NONDETERMINISTIC:
                blockers.append(f"{fn}() in {where} is not deterministic")
        elif name == "CommonInlineUserDefinedFunction" and not msg.deterministic:
            blockers.append(f"the non-deterministic function {msg.function_name}() in {where}")
        elif name == "ExpressionString":
            text = msg.expression.lower()
            for fn in NONDETERMINISTIC:
                if f"{fn}(" in text.replace(" (", "("):
                    blockers.append(f"{fn}() in {where} is not deterministic")
            if " over " in f" {text} " or " over(" in text:
                blockers.append(f"a window function in {where}")
        elif name == "SubqueryExpression":
            blockers.append(f"a subquery in {where}")


# --- partitions ------------------------------------------------------------------------------------

# Relations under which a partition's rows stay apart, when they do not redefine a partition column.
KEEPS_PARTITIONS = {"filter", "project", "with_columns", "with_columns_renamed", "drop", "sort", "subquery_alias",
                    "hint", "repartition", "repartition_by_expression", "drop_na", "aggregate", "deduplicate"}


def partition_blockers(root, partition_cols: list[str], changed: str, tables: dict[str, str]) -> list[str]:
    """Why a partition of the view may hold values computed from rows of `changed` outside it
    (empty: recomputing the touched partitions equals a full recompute)."""
    blockers: list[str] = []
    names = {str(path).rstrip("/"): name for name, path in tables.items()}
    found = _partition_path(root, set(partition_cols), changed, names, blockers)
    if found == 0:
        blockers.append(f"'{changed}' is not read where the view's rows come from")
    elif found > 1:
        blockers.append(f"'{changed}' is read {found} times")
    return list(dict.fromkeys(blockers))


def _partition_path(rel, parts: set[str], changed: str, names: dict[str, str], blockers: list[str]) -> int:
    kind = cp.kind(rel)
    leaf = _leaf(rel, changed, names, blockers)
    if leaf is not None:
        return leaf
    for expr in cp.expressions(rel):
        _not_time_or_layout(expr, WHERE.get(kind, f"a {kind.replace('_', ' ')}"), blockers)
    found = sum(_partition_path(c, parts, changed, names, blockers) for c in cp.children(rel))
    if not found:
        return 0                                  # a branch the change does not reach: read whole
    shown = ", ".join(sorted(parts))
    if kind not in KEEPS_PARTITIONS:
        what = {"join": "joined", "set_op": "unioned, intersected or subtracted"}.get(kind)
        blockers.append(f"'{changed}' is {what} there (its rows would meet rows of other partitions)" if what
                        else f"{kind.replace('_', ' ')} over '{changed}' mixes partitions")
        return found
    if kind == "aggregate":
        agg = rel.aggregate
        keys = {cp.attr(e) for e in agg.grouping_expressions if e.WhichOneof("expr_type") == "unresolved_attribute"}
        if agg.group_type != type(agg).GroupType.GROUP_TYPE_GROUPBY or not parts <= keys:
            blockers.append(f"an aggregate that does not group by {shown}")
    elif kind == "deduplicate":
        dedupe = rel.deduplicate
        if not dedupe.all_columns_as_keys and not parts <= set(dedupe.column_names):
            blockers.append(f"distinct rows by columns without {shown}")
    elif kind == "with_columns_renamed":
        renamed = dict(rel.with_columns_renamed.rename_columns_map)
        renamed.update({r.col_name: r.new_col_name for r in getattr(rel.with_columns_renamed, "renames", [])})
        if parts & (set(renamed) | set(renamed.values())):
            blockers.append(f"a partition column ({shown}) is renamed")
    elif kind == "drop":
        if parts & ({cp.name(e) for e in rel.drop.columns} | set(rel.drop.column_names)):
            blockers.append(f"a partition column ({shown}) is dropped under the view")
    elif kind in ("with_columns", "project"):
        _keeps_partition_columns(rel, kind, parts, blockers)
    return found


def _keeps_partition_columns(rel, kind: str, parts: set[str], blockers: list[str]) -> None:
    """A projection or computed columns: no partition column computed anew, every window over them."""
    shown = ", ".join(sorted(parts))
    if kind == "with_columns":
        items = [(a.name[0] if a.name else None, a.expr) for a in rel.with_columns.aliases]
    else:
        items = []
        for expr in rel.project.expressions:
            inner, alias = cp.unalias(expr)
            items.append((alias or cp.name(expr), inner))
    kept = set()
    for name, expr in items:
        if expr.WhichOneof("expr_type") == "unresolved_star":
            kept |= parts
            continue
        if expr.WhichOneof("expr_type") == "unresolved_attribute" and cp.attr(expr) == name:
            kept.add(name)
        elif name in parts:
            blockers.append(f"partition column '{name}' is computed ({cp.brief(expr)}), not the input's")
        for msg in cp.messages(expr):
            if type(msg).__name__ == "Window":
                over = {cp.attr(e) for e in msg.partition_spec if e.WhichOneof("expr_type") == "unresolved_attribute"}
                if not parts <= over:
                    blockers.append(f"window function {cp.window_name_of(msg)} is not partitioned by {shown}")
    if kind == "project" and not parts <= kept:
        blockers.append(f"a projection without the partition column(s) {', '.join(sorted(parts - kept))}")


def _not_time_or_layout(expr, where: str, blockers: list[str]) -> None:
    for msg in cp.messages(expr):
        name = type(msg).__name__
        if name in ("UnresolvedFunction", "CallFunction"):
            fn = msg.function_name.lower()
            if fn in NONDETERMINISTIC - RANDOM:
                blockers.append(f"{fn}() in {where} depends on when or where it runs")
        elif name == "ExpressionString":
            text = msg.expression.lower().replace(" (", "(")
            blockers.extend(f"{fn}() in {where} depends on when or where it runs"
                            for fn in NONDETERMINISTIC - RANDOM if f"{fn}(" in text)
            if " over " in f" {text} " or " over(" in text:
                blockers.append(f"a window function in {where} (as SQL text: its partitioning is not visible)")
        elif name == "SubqueryExpression":
            blockers.append(f"a subquery in {where}")


def _no_aggregate(rel) -> str:
    kind = cp.kind(rel)
    if kind in ("read", "local_relation"):
        return "not an aggregate (no groupBy): its rows are the input's, and rows already there may change"
    if kind == "join":
        return "a join over aggregates (or no single aggregate under the view's columns)"
    return f"not a single aggregate at its top ({kind.replace('_', ' ')})"
