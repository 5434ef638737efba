"""Reading a Spark Connect plan (the protobuf both engines receive): relations, their inputs and
expressions, and the names, functions and windows inside expressions, shown as a user reads them."""
from __future__ import annotations


def kind(rel) -> str:
    return rel.WhichOneof("rel_type") or "unknown"


def child(rel):
    return getattr(rel, kind(rel)).input


def children(rel) -> list:
    """The relations a relation reads (its sub-relations, at any field)."""
    body = getattr(rel, kind(rel), None)
    if body is None or not hasattr(body, "ListFields"):
        return []
    found = []
    for desc, value in body.ListFields():
        if desc.message_type is not None and desc.message_type.name == "Relation":
            found.extend(listed(desc, value))
    return found


def expressions(rel) -> list:
    """The expressions a relation evaluates (direct fields, and those inside aliases lists)."""
    body = getattr(rel, kind(rel), None)
    if body is None or not hasattr(body, "ListFields"):
        return []
    found = []
    for desc, value in body.ListFields():
        if desc.message_type is None or desc.message_type.name == "Relation":
            continue
        found.extend(listed(desc, value))
    return found


def messages(msg):
    """Every protobuf message inside `msg` (itself included), not descending into relations."""
    stack = [msg]
    while stack:
        m = stack.pop()
        yield m
        for desc, value in m.ListFields():
            if desc.message_type is None or desc.message_type.name == "Relation":
                continue
            stack.extend(listed(desc, value))


def listed(desc, value) -> list:
    """A field's value as a list (protobuf 7 has `is_repeated`; older ones, `label`)."""
    repeated = getattr(desc, "is_repeated", None)
    if repeated is None:
        repeated = desc.label == desc.LABEL_REPEATED
    return list(value) if repeated else [value]


def unalias(expr):
    if expr.WhichOneof("expr_type") == "alias":
        return expr.alias.expr, (expr.alias.name[0] if expr.alias.name else None)
    return expr, None


def attr(expr) -> str:
    return expr.unresolved_attribute.unparsed_identifier.split(".")[-1].strip("`")


def name(expr) -> str | None:
    inner, alias = unalias(expr)
    if alias:
        return alias
    if inner.WhichOneof("expr_type") == "unresolved_attribute":
        return attr(inner)
    return None


def function(expr):
    which = expr.WhichOneof("expr_type")
    if which == "unresolved_function":
        f = expr.unresolved_function
        return f.function_name.lower(), list(f.arguments), bool(f.is_distinct)
    if which == "call_function":
        f = expr.call_function
        return f.function_name.lower(), list(f.arguments), False
    return None


def has_window(expr) -> bool:
    return any(type(m).__name__ == "Window" for m in messages(expr))


def window_name(expr) -> str:
    for m in messages(expr):
        if type(m).__name__ == "Window":
            return window_name_of(m)
    return "?"


def window_name_of(window) -> str:
    fn = function(window.window_function)
    return f"{fn[0]}() over (...)" if fn else "over (...)"


def describe(expr) -> str:
    inner, alias = unalias(expr)
    which = inner.WhichOneof("expr_type")
    if which == "unresolved_attribute":
        return attr(inner)
    if which == "unresolved_star":
        return "*"
    if which == "literal":
        return "a literal"
    fn = function(inner)
    if fn:
        return f"{fn[0]}({', '.join(describe(a) for a in fn[1])})"
    if which == "cast":
        return f"cast({describe(inner.cast.expr)})"
    if which == "expression_string":
        return inner.expression_string.expression
    return alias or (which or "an expression").replace("_", " ")


def brief(expr, width: int = 60) -> str:
    """An expression in a reason: its column name when it has one, else its text, shortened."""
    inner, alias = unalias(expr)
    if alias:
        return f"'{alias}'"
    text = describe(inner)
    return text if len(text) <= width else text[:width - 1] + "…"
