"""Partial evaluation of a port template: the lines this model's choices select, nothing else.

A template is a real, importable Python module that reads its choices from a
few module-level values (``TRAITS.qk_norm``, ``TABLE.splits``). For one model
those values are known, so :func:`specialise` evaluates every ``if`` whose test
reads only them, keeps the taken branch (dedented, comments and all), replaces
conditional expressions and bare reads by their value, drops the top-level
definitions, private methods and imports nothing uses any more, and fills the
assignments named in ``data``. What comes out is straight-line code for this
model, formatted as the template is.

Conventions the templates follow: a static ``if`` test fits on its header line;
a method a base class calls is decorated ``@override`` (kept even when nothing
in the module calls it).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

_BLANK_RUN = re.compile(r"\n{4,}")
_INDENTED_BLANK_RUN = re.compile(r"\n{3,}(?=[ \t]+\S)")


class TemplateError(ValueError):
    """A template breaks the conventions above (a bug of import-model, not of the user's model)."""


@dataclass(frozen=True)
class _Edit:
    start: tuple[int, int]  # (line, col), 1-based lines
    end: tuple[int, int]
    text: str


def specialise(source: str, statics: dict[str, Any], *, keep: Iterable[str] = (),
               data: dict[str, str] | None = None) -> str:
    """``source`` evaluated for ``statics``; ``keep`` names survive pruning, ``data`` replaces assignments."""
    text = _fill_data(source, data or {})
    while True:
        edits = _static_edits(ast.parse(text), text.splitlines(keepends=True), statics)
        if not edits:
            break
        text = _apply(text, edits)
    text = _prune(text, set(keep))
    text = _INDENTED_BLANK_RUN.sub("\n\n", _BLANK_RUN.sub("\n\n\n", text))
    text = _after_imports(text.rstrip("\n") + "\n")
    ast.parse(text)
    return text


def _fill_data(source: str, data: dict[str, str]) -> str:
    """Replace each top-level ``NAME[: T] = ...`` named in ``data`` by ``data[NAME]`` (a whole statement)."""
    tree = ast.parse(source)
    edits = []
    for stmt in tree.body:
        name = _assigned_name(stmt)
        if name in data:
            edits.append(_Edit((stmt.lineno, 0), (stmt.end_lineno or stmt.lineno, -1), data[name].rstrip("\n")))
    missing = set(data) - {_assigned_name(s) for s in tree.body}
    if missing:
        raise TemplateError(f"template has no top-level assignment of {', '.join(sorted(missing))}")
    return _apply(source, edits)


def _assigned_name(stmt: ast.stmt) -> str | None:
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
        return stmt.target.id
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        return stmt.targets[0].id
    return None


# --------------------------------------------------------------------------- static branches

_STATIC_NODES = (ast.Attribute, ast.Name, ast.Load, ast.Compare, ast.BoolOp, ast.UnaryOp, ast.Constant, ast.Tuple,
                 ast.cmpop, ast.boolop, ast.Not, ast.Set, ast.List)


_LITERAL_TYPES = (str, int, float, bool, type(None), tuple, dict, list)


def _is_static(node: ast.expr, statics: dict[str, Any]) -> bool:
    names = [n for n in ast.walk(node) if isinstance(n, ast.Name)]
    return bool(names) and all(n.id in statics for n in names) and all(
        isinstance(n, _STATIC_NODES) for n in ast.walk(node))


def _value(node: ast.expr, statics: dict[str, Any]) -> Any:
    return eval(compile(ast.Expression(node), "<template>", "eval"), {"__builtins__": {}}, dict(statics))  # noqa: S307


def _static_edits(tree: ast.Module, lines: list[str], statics: dict[str, Any]) -> list[_Edit]:
    """Edits for the outermost static constructs (nested ones are reached on the next pass)."""
    edits: list[_Edit] = []
    parents = {id(child): parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_static(node.test, statics):
            edits.append(_if_edit(node, lines, bool(_value(node.test, statics)), parents))
            return
        if isinstance(node, ast.If) and isinstance(node.test, ast.BoolOp):
            edit = _partial_test(node, lines, statics, parents)
            if edit is not None:
                edits.append(edit)
                return
        if isinstance(node, ast.IfExp) and _is_static(node.test, statics):
            branch = node.body if _value(node.test, statics) else node.orelse
            edits.append(_Edit(*_span(node), _segment(lines, branch)))
            return
        if isinstance(node, ast.IfExp) and isinstance(node.test, ast.BoolOp):
            decided = _decided(node.test, statics)
            if decided is not None:
                edits.append(_Edit(*_span(node), _segment(lines, node.body if decided else node.orelse)))
                return
            if any(_is_static(v, statics) for v in node.test.values):
                edits.append(_cut_test(node.test, lines, statics))
                return
        if isinstance(node, (ast.Name, ast.Attribute, ast.Compare, ast.BoolOp, ast.UnaryOp)) \
                and isinstance(getattr(node, "ctx", ast.Load()), ast.Load) and _is_static(node, statics):
            value = _value(node, statics)
            if isinstance(value, _LITERAL_TYPES):
                edits.append(_Edit(*_span(node), literal(value)))
                return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return edits


def _partial_test(node: ast.If, lines: list[str], statics: dict[str, Any], parents: dict[int, ast.AST]) -> _Edit | None:
    """``if STATIC and rest:`` decided or cut to ``if rest:`` (and the same for ``or``)."""
    test = node.test
    assert isinstance(test, ast.BoolOp)
    if not any(_is_static(v, statics) for v in test.values):
        return None
    decided = _decided(test, statics)
    if decided is not None:
        return _if_edit(node, lines, decided, parents)
    return _cut_test(test, lines, statics)


def _cut_test(test: ast.BoolOp, lines: list[str], statics: dict[str, Any]) -> _Edit:
    """The test without its static operands (each of which leaves the result to the others)."""
    rest = [v for v in test.values if not _is_static(v, statics)]
    joiner = " and " if isinstance(test.op, ast.And) else " or "
    parts = [f"({_segment(lines, v)})" if isinstance(v, ast.BoolOp) and len(rest) > 1 else _segment(lines, v)
             for v in rest]
    return _Edit(*_span(test), joiner.join(parts))


def _decided(test: ast.BoolOp, statics: dict[str, Any]) -> bool | None:
    """The test's value when one static operand decides it (``False and ...``, ``True or ...``), else None."""
    deciding = isinstance(test.op, ast.Or)
    known = [bool(_value(v, statics)) for v in test.values if _is_static(v, statics)]
    return deciding if deciding in known else None


def _span(node: ast.AST) -> tuple[tuple[int, int], tuple[int, int]]:
    return (node.lineno, node.col_offset), (node.end_lineno or node.lineno, node.end_col_offset or 0)  # type: ignore[attr-defined]


def _segment(lines: list[str], node: ast.AST) -> str:
    (l1, c1), (l2, c2) = _span(node)
    if l1 == l2:
        return lines[l1 - 1].encode()[c1:c2].decode()
    parts = [lines[l1 - 1].encode()[c1:].decode(), *lines[l1:l2 - 1], lines[l2 - 1].encode()[:c2].decode()]
    return "".join(parts)


def literal(value: Any) -> str:
    """A Python literal in the house style (double quotes)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, tuple):
        items = ", ".join(literal(v) for v in value)
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    return repr(value)


def literal_assignment(name: str, annotation: str, rows: dict[str, Any]) -> str:
    """``NAME: annotation = {...}``, one row a line, for ``data`` (the tables a template is filled with)."""
    if not rows:
        return f"{name}: {annotation} = {{}}"
    body = "".join(f"    {literal(key)}: {literal(value)},\n" for key, value in rows.items())
    return f"{name}: {annotation} = {{\n{body}}}"


def _if_edit(node: ast.If, lines: list[str], taken: bool, parents: dict[int, ast.AST]) -> _Edit:
    """Replace the whole ``if`` statement by its taken branch, one indent level out."""
    if (node.test.end_lineno or node.lineno) != node.lineno:
        raise TemplateError(f"template line {node.lineno}: a static `if` test must fit on its header line")
    end = node.end_lineno or node.lineno
    indent = " " * node.col_offset
    body_end = node.body[-1].end_lineno or node.lineno
    if taken:
        chosen = _dedent(lines[node.lineno:body_end], node.body[0].col_offset - node.col_offset)
    elif node.orelse and lines[node.orelse[0].lineno - 1].lstrip().startswith("elif "):
        first = node.orelse[0].lineno - 1
        chosen = [lines[first].replace("elif ", "if ", 1), *lines[first + 1:end]]
    elif node.orelse:
        else_line = next(i for i in range(body_end, node.orelse[0].lineno) if lines[i].strip().startswith("else"))
        chosen = _dedent(lines[else_line + 1:end], node.orelse[0].col_offset - node.col_offset)
    else:
        chosen = []
    if not any(line.strip() and not line.strip().startswith("#") for line in chosen) and _only_statement(node, parents):
        chosen = [f"{indent}pass\n"]
    return _Edit((node.lineno, 0), (end, -1), "".join(chosen).rstrip("\n"))


def _only_statement(node: ast.stmt, parents: dict[int, ast.AST]) -> bool:
    parent = parents.get(id(node))
    return any(getattr(parent, block, None) == [node] for block in ("body", "orelse", "finalbody"))


def _dedent(lines: list[str], width: int) -> list[str]:
    prefix = " " * width
    return [line[width:] if line.startswith(prefix) else line.lstrip(" ") if not line.strip() else line
            for line in lines]


def _apply(text: str, edits: list[_Edit]) -> str:
    """Apply non-overlapping edits; an end column of -1 means the end of that line (its newline kept)."""
    lines = text.splitlines(keepends=True)
    for edit in sorted(edits, key=lambda e: e.start, reverse=True):
        (l1, c1), (l2, c2) = edit.start, edit.end
        head = lines[l1 - 1].encode()[:c1].decode()
        last = lines[l2 - 1]
        tail = "\n" if c2 == -1 else last.encode()[c2:].decode()
        replacement = head + edit.text + tail
        if c2 == -1 and not edit.text:
            replacement = ""
        lines[l1 - 1:l2] = [replacement]
    return "".join(lines)


def _after_imports(text: str) -> str:
    """One blank line after the imports, two when a definition follows (isort's rule)."""
    tree = ast.parse(text)
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    if not imports or imports[-1] is tree.body[-1]:
        return text
    lines = text.splitlines(keepends=True)
    for before, after in reversed(list(pairwise(imports))):  # at most one blank line between sections
        gap = range(before.end_lineno or before.lineno, after.lineno - 1)
        if len(gap) > 1 and all(not lines[i].strip() for i in gap):
            del lines[gap.start + 1:gap.stop]
    text = "".join(lines)
    tree = ast.parse(text)
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    last = imports[-1].end_lineno or imports[-1].lineno
    following = tree.body[tree.body.index(imports[-1]) + 1]
    start = last
    while start < len(lines) and not lines[start].strip():
        start += 1
    blank = 2 if isinstance(following, (ast.FunctionDef, ast.ClassDef)) else 1
    return "".join(lines[:last]) + "\n" * blank + "".join(lines[start:])


# --------------------------------------------------------------------------- pruning


def _prune(text: str, keep: set[str]) -> str:
    """Drop unused top-level definitions, private methods and import names until nothing changes."""
    while True:
        tree = ast.parse(text)
        lines = text.splitlines(keepends=True)
        edits = list(_unused_definitions(tree, lines, keep)) or list(_unused_imports(tree, lines))
        if not edits:
            return text
        text = _apply(text, edits)


def _uses(tree: ast.Module, outside: ast.AST | None = None) -> set[str]:
    """Names read and attributes taken anywhere in ``tree`` (except inside ``outside``), plus ``__all__``."""
    skip = {id(n) for n in ast.walk(outside)} if outside is not None else set()
    used: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Store):
            used.add(node.id)
        elif isinstance(node, ast.Attribute):
            used.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
            used.add(node.value)  # __all__ entries, getattr names
    return used


def _unused_definitions(tree: ast.Module, lines: list[str], keep: set[str]) -> Iterator[_Edit]:
    for stmt in tree.body:
        name = _defined_name(stmt)
        if name and name not in keep and name not in _uses(tree, outside=stmt):
            yield _statement_removal(stmt, lines)
            return  # one at a time: a removal can free others
    for stmt in tree.body:
        if not isinstance(stmt, ast.ClassDef):
            continue
        for member in stmt.body:
            if isinstance(member, ast.FunctionDef) and _prunable_method(member) \
                    and member.name not in _uses(tree, outside=member):
                yield _statement_removal(member, lines)
                return


def _defined_name(stmt: ast.stmt) -> str | None:
    """The name a top-level statement defines (dunder names such as ``__all__`` are never pruned)."""
    name = stmt.name if isinstance(stmt, (ast.FunctionDef, ast.ClassDef)) else _assigned_name(stmt)
    return None if name is None or name.startswith("__") else name


def _prunable_method(member: ast.FunctionDef) -> bool:
    private = member.name.startswith("_") and not member.name.startswith("__")
    decorated = any(isinstance(d, ast.Name) and d.id == "override" for d in member.decorator_list)
    return private and not decorated


def _statement_removal(stmt: ast.stmt, lines: list[str]) -> _Edit:
    """The statement, its decorators and the ``#`` comment lines directly above it."""
    first = min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", []))])
    while first > 1 and lines[first - 2].lstrip().startswith("#"):
        first -= 1
    return _Edit((first, 0), (stmt.end_lineno or stmt.lineno, -1), "")


def _unused_imports(tree: ast.Module, lines: list[str]) -> Iterator[_Edit]:
    used = _uses(tree)
    for stmt in tree.body:
        if not isinstance(stmt, (ast.Import, ast.ImportFrom)) or (
                isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__"):
            continue
        kept = [a for a in stmt.names if (a.asname or a.name).split(".")[0] in used]
        if len(kept) == len(stmt.names):
            continue
        text = _import_text(stmt, kept) if kept else ""
        yield _Edit((stmt.lineno, 0), (stmt.end_lineno or stmt.lineno, -1), text)


def _import_text(stmt: ast.Import | ast.ImportFrom, names: list[ast.alias]) -> str:
    parts = [f"{a.name} as {a.asname}" if a.asname else a.name for a in names]
    if isinstance(stmt, ast.Import):
        return "\n".join(f"import {p}" for p in parts)
    module = "." * stmt.level + (stmt.module or "")
    line = f"from {module} import {', '.join(parts)}"
    if len(line) <= 120:
        return line
    return f"from {module} import (\n" + "".join(f"    {p},\n" for p in parts) + ")"
