"""The scaffold modes of the writer: a TODO-only port started from any MAX donor, read from MAX's source.

Both read the installed MAX's source statically (``import max.pipelines`` costs
ten seconds and is never needed to write files):

- **subclass**: a small package that *subclasses* the donor. ``model_config.py``,
  ``<slug>.py`` (the graph) and ``weight_adapters.py`` expose the overrides,
  ``model.py`` re-homes the few donor methods that name the donor's config or
  graph class so the port's own classes are built, and every row of the plan's
  delta list becomes one ``# TODO(delta <rule>): <change>`` in the file where
  it belongs.
- **full copy** (``--full-copy``): the donor's files copied (:func:`copy_native_port`),
  classes, slug, registration and imports renamed, the layout normalised to the
  five files plus ``<slug>.py`` (other donor modules are imported from the
  installed MAX; a role the donor borrows from another architecture is written
  as in the subclass mode).

In both the donor's docstrings and comments are replaced by the seed's
three-sentence pattern (what the module is, what it implements today, what it
does not do yet), so ``import-model audit`` passes a fresh scaffold.
"""

from __future__ import annotations

import ast
import builtins
import io
import json
import re
import shutil
import sys
import tempfile
import textwrap
import tokenize
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from import_model.errors import UserError
from import_model.plan.donors import Delta
from import_model.port.native_copy import (
    copy_native_port,
    read_port_file,
    stem_of,
)
from import_model.port.package import ROLE_FILES, PortNames, assigned_names, defined_names
from import_model.recon import registry

ARCH_PACKAGE = "max.pipelines.architectures"
#: Base-class names that mark a MAX graph module (the class a pipeline model instantiates).
GRAPH_BASES = frozenset({"Transformer", "Module", "Layer"})
#: Graph classes with these name fragments build the multi-device variant; the port runs on one device.
MULTI_DEVICE_MARKERS = ("Distributed", "DataParallel")
#: Which file each kind of delta (``Delta.kind``) is implemented in.
DELTA_FILES: dict[str, str] = {"graph": "graph", "config": "config", "weights": "weights"}
#: Registration fields the port sets itself; every other field the donor passes is taken from the donor.
ARCH_OVERRIDES = ("name", "example_repo_ids", "pipeline_model", "config", "weight_adapters",
                  "default_weights_format", "multi_gpu_supported")
ATTRIBUTION = ("# Derived from Modular MAX's {donor} architecture: Copyright (c) {year}, Modular Inc.,\n"
               "# Apache License v2.0 with LLVM Exceptions (https://llvm.org/LICENSE.txt).\n")
_COPYRIGHT_YEAR = re.compile(r"Copyright \(c\) (\d{4}), Modular Inc")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# --------------------------------------------------------------------------- reading MAX's source


@dataclass(frozen=True)
class Ref:
    """A name defined in a module: a class, function or variable, or (``name == ""``) the module itself."""

    module: str
    name: str

    def import_line(self, local: str | None = None) -> str:
        local = local or self.name or self.module.rsplit(".", 1)[-1]
        if not self.name:
            top = self.module.split(".")[0]
            return f"import {self.module}" if local == top and "." not in self.module else \
                f"import {self.module} as {local}"
        return f"from {self.module} import {self.name}" + (f" as {local}" if local != self.name else "")


class SourceIndex:
    """The installed MAX architectures, parsed on demand and never imported."""

    def __init__(self) -> None:
        self.root = registry.architectures_dir()
        self._trees: dict[str, ast.Module | None] = {}

    def path(self, module: str) -> Path | None:
        if not module.startswith(ARCH_PACKAGE + "."):
            return None
        base = self.root.joinpath(*module[len(ARCH_PACKAGE) + 1:].split("."))
        if (base / "__init__.py").is_file():
            return base / "__init__.py"
        return base.with_suffix(".py") if base.with_suffix(".py").is_file() else None

    def tree(self, module: str) -> ast.Module | None:
        if module not in self._trees:
            path = self.path(module)
            try:
                self._trees[module] = ast.parse(path.read_text()) if path else None
            except (OSError, SyntaxError, ValueError):
                self._trees[module] = None
        return self._trees[module]

    def text(self, module: str) -> str:
        path = self.path(module)
        return path.read_text() if path else ""

    def in_tree(self, ref: Ref) -> bool:
        return self.path(ref.module) is not None

    def absolute(self, module: str, node: ast.ImportFrom) -> str:
        if node.level == 0:
            return node.module or ""
        path = self.path(module)
        parts = module.split(".")
        if path is None or path.name != "__init__.py":
            parts = parts[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        return ".".join(parts + ([node.module] if node.module else []))

    def resolve(self, module: str, name: str, depth: int = 0) -> Ref:
        """Where ``name`` as seen from ``module`` is defined (following imports inside MAX's tree)."""
        for stmt in _top_level(self.tree(module)):
            if isinstance(stmt, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == name:
                return Ref(module, name)
            if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and name in assigned_names(stmt):
                return Ref(module, name)
            if isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    if (alias.asname or alias.name.split(".")[0]) == name:
                        return Ref(alias.name if alias.asname else name, "")
            if isinstance(stmt, ast.ImportFrom):
                for alias in stmt.names:
                    if (alias.asname or alias.name) == name:
                        return self._follow(self.absolute(module, stmt), alias.name, depth)
        return Ref(module, name)

    def _follow(self, source: str, name: str, depth: int) -> Ref:
        if self.path(f"{source}.{name}") is not None and not self._defines(source, name):
            return Ref(f"{source}.{name}", "")
        if depth < 8 and self.path(source) is not None:
            return self.resolve(source, name, depth + 1)
        return Ref(source, name)

    def _defines(self, module: str, name: str) -> bool:
        return any(isinstance(s, (ast.ClassDef, ast.FunctionDef)) and s.name == name
                   for s in _top_level(self.tree(module)))

    def class_def(self, ref: Ref) -> ast.ClassDef | None:
        for stmt in _top_level(self.tree(ref.module)):
            if isinstance(stmt, ast.ClassDef) and stmt.name == ref.name:
                return stmt
        return None

    def mro(self, ref: Ref) -> list[tuple[Ref, ast.ClassDef]]:
        """The class and its bases inside MAX's architecture tree, depth first."""
        out: list[tuple[Ref, ast.ClassDef]] = []
        self._mro(ref, out, set())
        return out

    def _mro(self, ref: Ref, out: list[tuple[Ref, ast.ClassDef]], seen: set[Ref]) -> None:
        node = self.class_def(ref)
        if node is None or ref in seen:
            return
        seen.add(ref)
        out.append((ref, node))
        for base in node.bases:
            name = _base_name(base)
            if name and isinstance(_strip_subscript(base), ast.Name):
                self._mro(self.resolve(ref.module, name), out, seen)

    def is_graph_class(self, ref: Ref) -> bool:
        return any(_base_name(base) in GRAPH_BASES for _, node in self.mro(ref) for base in node.bases)


def _top_level(tree: ast.Module | None) -> Iterator[ast.stmt]:
    """Module statements, including those under top-level ``if``/``try`` (TYPE_CHECKING imports)."""
    for stmt in tree.body if tree else []:
        yield stmt
        if isinstance(stmt, (ast.If, ast.Try)):
            yield from stmt.body
            yield from getattr(stmt, "orelse", [])


def _strip_subscript(node: ast.expr) -> ast.expr:
    return node.value if isinstance(node, ast.Subscript) else node


def _base_name(node: ast.expr) -> str | None:
    node = _strip_subscript(node)
    if isinstance(node, ast.Name):
        return node.id
    return node.attr if isinstance(node, ast.Attribute) else None


# --------------------------------------------------------------------------- the donor


@dataclass
class DonorFacts:
    """What a port needs to know about its donor, read from MAX's source."""

    slug: str
    architecture: str
    registration: Ref
    call: ast.Call
    model: Ref
    config: Ref
    adapter: Ref | None
    graph: Ref | None
    config_family: list[Ref] = field(default_factory=list)
    config_is_dataclass: bool = False
    year: str = "2026"

    @property
    def package(self) -> str:
        return f"{ARCH_PACKAGE}.{self.slug}"

    def own(self, ref: Ref) -> bool:
        """Defined in the donor's own package (copied by a full copy), not borrowed from another architecture."""
        return ref.module == self.package or ref.module.startswith(self.package + ".")


def donor_entry(wanted: str) -> registry.NativeArch:
    """The donor registration named by slug (or HF class)."""
    archs = [a for a in registry.native_architectures() if a.is_donor]
    for arch in archs:
        if wanted in (arch.slug, arch.name):
            return arch
    raise UserError(f"--start-from {wanted[:60]!r} is not a text-generation architecture of the installed MAX; "
                    "choose one of: " + ", ".join(sorted({a.slug for a in archs})))


def analyse_donor(index: SourceIndex, entry: registry.NativeArch) -> DonorFacts:
    package = f"{ARCH_PACKAGE}.{entry.slug}"
    found = _registration(index, package, entry.symbol)
    if found is None:
        raise UserError(f"could not find {entry.symbol} = SupportedArchitecture(...) in {entry.slug}; "
                        "the MAX install is unusual")
    module, call = found
    kwargs = {kw.arg: kw.value for kw in call.keywords if kw.arg}
    model = _kw_ref(index, module, kwargs.get("pipeline_model"))
    config = _kw_ref(index, module, kwargs.get("config"))
    if model is None or config is None:
        raise UserError(f"the {entry.slug} registration names no pipeline_model/config class; choose another donor")
    facts = DonorFacts(entry.slug, entry.name, Ref(module, entry.symbol), call, model, config,
                       _adapter_ref(index, module, kwargs.get("weight_adapters")), _find_graph(index, model))
    facts.config_family = [ref for ref, _ in index.mro(config)] or [config]
    node = index.class_def(config)
    facts.config_is_dataclass = bool(node and any(_base_name(_call_func(d)) == "dataclass"
                                                  for d in node.decorator_list))
    year = _COPYRIGHT_YEAR.search(index.text(module))
    facts.year = year.group(1) if year else facts.year
    return facts


def _call_func(node: ast.expr) -> ast.expr:
    return node.func if isinstance(node, ast.Call) else node


def _registration(index: SourceIndex, package: str, symbol: str) -> tuple[str, ast.Call] | None:
    path = index.path(package)
    if path is None:
        return None
    for file in sorted(path.parent.glob("*.py")):
        module = package if file.name == "__init__.py" else f"{package}.{file.stem}"
        call = registry.assigned_call(index.tree(module), symbol, "SupportedArchitecture")
        if call is not None:
            return module, call
    return None


def _kw_ref(index: SourceIndex, module: str, node: ast.expr | None) -> Ref | None:
    if isinstance(node, ast.Name):
        return index.resolve(module, node.id)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        owner = index.resolve(module, node.value.id)
        target = owner.module if not owner.name else f"{owner.module}.{owner.name}"
        return index.resolve(target, node.attr)
    return None


def _adapter_ref(index: SourceIndex, module: str, node: ast.expr | None) -> Ref | None:
    if not isinstance(node, ast.Dict):
        return None
    for key, value in zip(node.keys, node.values, strict=True):
        if isinstance(key, ast.Attribute) and key.attr == "safetensors":
            return _kw_ref(index, module, value)
    return None


def _find_graph(index: SourceIndex, model: Ref) -> Ref | None:
    """The single-device graph class the pipeline model instantiates."""
    for ref, node in index.mro(model):
        for call in (n for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)):
            target = index.resolve(ref.module, call.func.id)
            if any(marker in target.name for marker in MULTI_DEVICE_MARKERS):
                continue
            if target.name and index.in_tree(target) and index.class_def(target) and index.is_graph_class(target):
                return target
    return None


# --------------------------------------------------------------------------- re-homing donor methods


@dataclass
class Rehomed:
    """Class attributes and methods copied from donor classes with the port's classes swapped in."""

    body: list[str] = field(default_factory=list)
    imports: set[str] = field(default_factory=set)
    methods: list[str] = field(default_factory=list)


def rehome(index: SourceIndex, facts: DonorFacts, renames: dict[Ref, str], skip_own: bool) -> Rehomed:
    """Every member of the pipeline model's donor classes that names a renamed class, copied and renamed.

    ``skip_own``: members of classes in the donor's own package are already in the port (full copy).
    """
    out, seen = Rehomed(), set()
    for ref, node in index.mro(facts.model):
        own = skip_own and facts.own(ref)
        for stmt in node.body:
            member = _member_name(stmt)
            if member is None or member in seen:
                continue
            seen.add(member)
            if own or not _names_renamed(index, ref.module, stmt, renames):
                continue
            text, imports = _copy_member(index, ref, node, stmt, renames, facts.slug)
            out.body.append(text)
            out.imports |= imports
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.methods.append(f"{node.name}.{member}")
    return out


def _member_name(stmt: ast.stmt) -> str | None:
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return stmt.name
    if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and len(assigned_names(stmt)) == 1:
        return next(iter(assigned_names(stmt)))
    return None


def _annotation_ids(node: ast.AST) -> set[int]:
    ids: set[int] = set()
    for sub in ast.walk(node):
        parts: list[ast.AST | None] = []
        if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
            parts.append(sub.returns)
        elif isinstance(sub, (ast.arg, ast.AnnAssign)):
            parts.append(sub.annotation)
        ids |= {id(n) for part in parts if part is not None for n in ast.walk(part)}
    return ids


def _names_renamed(index: SourceIndex, module: str, stmt: ast.stmt, renames: dict[Ref, str]) -> bool:
    skip = _annotation_ids(stmt)
    return any(isinstance(n, ast.Name) and id(n) not in skip and index.resolve(module, n.id) in renames
               for n in ast.walk(stmt))


def _copy_member(index: SourceIndex, ref: Ref, owner: ast.ClassDef, stmt: ast.stmt, renames: dict[Ref, str],
                 donor_slug: str) -> tuple[str, set[str]]:
    """The member's own source text, with renamed classes, explicit ``super(...)`` and an honest docstring."""
    lines = index.text(ref.module).splitlines()
    first = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])])
    edits: list[tuple[int, int, int, str]] = []  # (line, start col, end col, text), 1-based lines
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and (target := renames.get(index.resolve(ref.module, node.id))):
            edits.append((node.lineno, node.col_offset, node.end_col_offset or node.col_offset, target))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super" \
                and not node.args and node.lineno == node.end_lineno:
            edits.append((node.lineno, node.col_offset, node.end_col_offset or 0, f"super({owner.name}, self)"))
    segment = _apply_edits(lines, edits)[first - 1: stmt.end_lineno]
    text = textwrap.dedent("\n".join(segment))
    imports = _free_imports(index, ref.module, stmt, set(renames))
    if any(e[3].startswith("super(") for e in edits):
        imports.add(Ref(ref.module, owner.name).import_line())
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
        swapped = sorted({e[3] for e in edits if not e[3].startswith("super(")})
        doc = (f"Copied from the {donor_slug} donor's ``{owner.name}.{stmt.name}``; it builds "
               f"{', '.join(swapped)} instead of the donor's classes.")
        text = _replace_docstring(text, doc)
    return textwrap.indent(strip_comments(text), "    "), imports


def _apply_edits(lines: list[str], edits: list[tuple[int, int, int, str]]) -> list[str]:
    """Replace byte-column spans (as ``ast`` reports them) on the given 1-based lines."""
    out = list(lines)
    for line, start, end, text in sorted(edits, reverse=True):
        raw = out[line - 1].encode()
        out[line - 1] = (raw[:start] + text.encode() + raw[end:]).decode()
    return out


def _replace_docstring(text: str, doc: str) -> str:
    """``text`` (one dedented def) with its docstring replaced by ``doc``, or ``doc`` added."""
    tree = ast.parse(text)
    func = tree.body[0]
    lines = text.split("\n")
    indent = " " * func.body[0].col_offset
    new = [f'{indent}"""{line}' if i == 0 else f"{indent}{line}" for i, line in
           enumerate(textwrap.wrap(doc, width=max(40, 96 - len(indent))))]
    new[-1] += '"""'
    existing = _docstring_node(func)
    if existing is not None and existing.end_lineno is not None:
        lines[existing.lineno - 1: existing.end_lineno] = new
    else:
        lines[func.body[0].lineno - 1: func.body[0].lineno - 1] = new
    return "\n".join(lines)


def _free_imports(index: SourceIndex, module: str, node: ast.AST, renamed: set[Ref]) -> set[str]:
    """Import lines for every global the copied member uses (renamed classes excepted)."""
    bound = {a.arg for a in ast.walk(node) if isinstance(a, ast.arg)}
    bound |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    bound |= {n.name for n in ast.walk(node) if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n is not node}
    bound |= {(a.asname or a.name).split(".")[0] for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))
              for a in n.names}
    loads = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    free = loads - bound - set(dir(builtins)) - {"self", "cls"}
    refs = {name: index.resolve(module, name) for name in sorted(free)}
    return {ref.import_line(name) for name, ref in refs.items() if ref not in renamed}


def _docstring_node(node: ast.AST) -> ast.Expr | None:
    body = getattr(node, "body", None)
    if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
            isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
        return body[0]
    return None


# --------------------------------------------------------------------------- what the port says about itself


@dataclass
class Context:
    """Everything the file renderers need."""

    names: PortNames
    facts: DonorFacts
    deltas: list[Delta]
    example_repo: str | None
    full_copy: bool
    rehomed: list[str] = field(default_factory=list)

    def deltas_in(self, role: str) -> list[Delta]:
        return [d for d in self.deltas if DELTA_FILES.get(d.kind, "graph") == role]

    @property
    def donor(self) -> str:
        return self.facts.slug

    def attribution(self) -> str:
        note = ""
        if self.full_copy:
            note = (f"# The donor's comments and docstrings were replaced; the originals are in "
                    f"max/pipelines/architectures/{self.donor}/.\n")
        return ATTRIBUTION.format(donor=self.donor, year=self.facts.year) + note


def _rules(deltas: list[Delta]) -> str:
    return ", ".join(d.rule for d in deltas)


def _open_sentence(ctx: Context, role: str) -> str:
    """The third sentence: what the module does not do yet."""
    deltas = ctx.deltas if role in ("init", "model") else ctx.deltas_in(role)
    if role == "init":
        if not deltas:
            return (f"The plan lists no delta against {ctx.donor}; it is not yet verified against HF "
                    f"{ctx.names.architecture}.")
        return (f"It does not yet implement the {len(deltas)} open delta(s) of the plan ({_rules(deltas)}); "
                "PORT.md tracks them.")
    if role == "model":
        return ("It does not yet change how the donor loads, batches or executes; the deltas live in "
                f"{ctx.names.graph_file}, model_config.py and weight_adapters.py.")
    if role == "arch":
        return "It does not yet support multi-GPU serving: the donor's distributed graph lacks this port's changes."
    if deltas:
        return f"It does not yet implement {len(deltas)} delta(s): {_rules(deltas)}; each is a TODO below."
    quiet = {"config": "No config-only delta is open; graph deltas that need new keys add fields here.",
             "weights": "No weights delta is open; run the adapter-to-graph key diff before the first serve.",
             "graph": "The plan lists no graph delta; parity against HF decides whether it is complete."}
    return quiet[role]


def module_doc(ctx: Context, role: str) -> str:
    """The seed's three sentences: what this module is, what it implements today, what it does not do yet."""
    n, d = ctx.names, ctx.facts
    how = f"a renamed copy of the {d.slug} donor's code" if ctx.full_copy else f"subclasses of the {d.slug} donor"
    graph_from = f"the {d.slug} donor's ``{d.graph.name}``" if d.graph else f"the {d.slug} donor's graph"
    what = {
        "init": f"The {n.architecture} custom-architecture package: ``max serve --custom-architectures "
                f"<dir>/{n.slug}`` imports it and reads ``ARCHITECTURES``.",
        "arch": f"Registration of {n.architecture} with MAX: class name, encodings, weight adapter, pipeline "
                "model and config.",
        "config": f"Configuration of the {n.architecture} graph (``{n.config}``), read from config.json.",
        "model": f"The {n.architecture} pipeline model (``{n.model}``): loads weights, builds ``{n.config}`` and "
                 f"the ``{n.graph}`` graph, and executes it.",
        "weights": f"Weight adapter for {n.architecture} safetensors checkpoints: checkpoint names onto the "
                   "graph's names.",
        "graph": f"The {n.architecture} decoder graph (``{n.graph}``).",
    }[role]
    today = {
        "init": f"Today it registers ``{n.symbol}`` for {n.architecture} with {how}, so it computes what "
                f"{d.slug} computes.",
        "arch": f"Today it keeps the {d.slug} donor's tokenizer, encodings, batching and memory planning, and "
                "runs on a single GPU (multi_gpu_supported=False).",
        "config": f"Today ``{n.config}`` reads every key the way the {d.slug} donor's ``{d.config.name}`` does"
                  + (" (a renamed copy)." if ctx.full_copy else " (a subclass that changes nothing yet)."),
        "model": (f"Today it is the {d.slug} donor's ``{d.model.name}`` renamed" if ctx.full_copy else
                  f"Today it subclasses the {d.slug} donor's ``{d.model.name}``")
                 + (f"; {', '.join(ctx.rehomed)} are copied from the donor so the port's own classes are built."
                    if ctx.rehomed else "; every method behaves as the donor's."),
        "weights": (f"Today it is the {d.slug} donor's adapter, renamed" if ctx.full_copy and not d.adapter
                    else f"Today it hands every tensor to the {d.slug} donor's adapter" if d.adapter
                    else "Today it passes every tensor through under its checkpoint name")
                   + ", after the import-model weight table at the end of this file (when there is one) renames, "
                     "splits and sets aside checkpoint tensors.",
        "graph": (f"Today ``{n.graph}`` builds exactly {graph_from} graph"
                  + (" (a renamed copy)." if ctx.full_copy and d.graph and d.own(d.graph) else
                     " (a subclass that changes nothing yet).")),
    }[role]
    body = textwrap.fill(f"{what} {today} {_open_sentence(ctx, role)}", width=100)
    return f'"""{body}\n"""\n'


def todo_block(deltas: list[Delta], donor: str, indent: str = "") -> str:
    """One marked ``# TODO(delta <rule>): <change>`` per delta row, with the evidence under it."""
    out = []
    for delta in deltas:
        lines = textwrap.wrap(f"TODO(delta {delta.rule}): {delta.change}.", width=100,
                              subsequent_indent="    ")
        detail = "" if delta.hf in delta.change and delta.donor in delta.change else \
            f"HF: {delta.hf}; donor {donor}: {delta.donor}. "
        if delta.where:
            detail += f"Found in {delta.where[:240]}"
        lines += textwrap.wrap(detail, width=100, initial_indent="    ", subsequent_indent="    ")
        out.append("\n".join(f"{indent}# {line}" for line in lines))
    return "\n".join(out) + ("\n" if out else "")


def _wrap_import(line: str) -> str:
    if len(line) <= 100 or not line.startswith("from "):
        return line
    head, names = line.split(" import ", 1)
    return f"{head} import (\n    {names},\n)"


def _import_key(line: str) -> tuple[int, str]:
    module = line.split()[1]
    if module.startswith("."):
        return 2, line
    return (0 if module.split(".")[0] in sys.stdlib_module_names else 1), line


def _imports(lines: Iterable[str]) -> str:
    """Import lines, standard library first, one blank line between the groups."""
    ordered = sorted(set(lines), key=_import_key)
    groups = [[_wrap_import(x) for x in ordered if _import_key(x)[0] == g] for g in (0, 1, 2)]
    return "\n\n".join("\n".join(g) for g in groups if g) + "\n"


# --------------------------------------------------------------------------- subclass mode


def render_init(ctx: Context) -> str:
    n = ctx.names
    return (f"{ctx.attribution()}{module_doc(ctx, 'init')}\nfrom .arch import {n.symbol}\n\n"
            f"ARCHITECTURES = [{n.symbol}]\n\n__all__ = [\"ARCHITECTURES\", \"{n.symbol}\"]\n")


def _registration_kwargs(ctx: Context, donor_name: str) -> list[str]:
    n = ctx.names
    own = {
        "name": json.dumps(n.architecture),
        "example_repo_ids": json.dumps([ctx.example_repo] if ctx.example_repo else []),
        "pipeline_model": n.model,
        "config": n.config,
        "weight_adapters": "{WeightsFormat.safetensors: weight_adapters.convert_safetensor_state_dict}",
        "default_weights_format": "WeightsFormat.safetensors",
        "multi_gpu_supported": "False",
    }
    order = [kw.arg for kw in ctx.facts.call.keywords if kw.arg]
    order += [key for key in ARCH_OVERRIDES if key not in order]
    return [f"    {key}={own.get(key, f'{donor_name}.{key}')}," for key in order]


def render_arch(ctx: Context) -> str:
    n, d = ctx.names, ctx.facts
    imports = _imports([
        "from max.graph.weights import WeightsFormat",
        "from max.pipelines.lib import SupportedArchitecture",
        d.registration.import_line("donor_arch"),
    ])
    body = "\n".join(_registration_kwargs(ctx, "donor_arch"))
    return (f"{ctx.attribution()}{module_doc(ctx, 'arch')}\nfrom __future__ import annotations\n\n{imports}\n"
            f"from . import weight_adapters\nfrom .model import {n.model}\nfrom .model_config import {n.config}\n\n"
            f"{n.symbol} = SupportedArchitecture(\n{body}\n)\n")


@dataclass(frozen=True)
class Piece:
    """A generated class or function: the imports it needs and its code (no module header)."""

    imports: list[str]
    code: str


def _class_doc(text: str) -> str:
    return "\n".join(_doc_lines(text, 4)) + "\n"


def config_piece(ctx: Context) -> Piece:
    n, d = ctx.names, ctx.facts
    imports = [d.config.import_line()] + (["from dataclasses import dataclass"] if d.config_is_dataclass else [])
    decorator = "@dataclass(kw_only=True)\n" if d.config_is_dataclass else ""
    doc = _class_doc(f"{n.architecture} configuration; today identical to the {d.slug} donor's ``{d.config.name}``.")
    todos = todo_block(ctx.deltas_in("config"), d.slug, "    ")
    return Piece(imports, f"{decorator}class {n.config}({d.config.name}):\n{doc}" + (f"\n{todos}" if todos else ""))


def graph_piece(ctx: Context) -> Piece:
    n, d = ctx.names, ctx.facts
    if d.graph is None:
        return Piece([], "# No graph class of the donor was found to subclass; write the graph here.\n"
                     + todo_block(ctx.deltas_in("graph"), d.slug))
    doc = _class_doc(f"{n.architecture} decoder; today it builds the {d.slug} donor's ``{d.graph.name}`` graph.")
    todos = todo_block(ctx.deltas_in("graph"), d.slug, "    ")
    return Piece([d.graph.import_line()], f"class {n.graph}({d.graph.name}):\n{doc}" + (f"\n{todos}" if todos else ""))


def weights_piece(ctx: Context) -> Piece:
    n, d = ctx.names, ctx.facts
    imports = ["from typing import Any", "from max.graph.weights import WeightData, Weights"]
    if d.adapter is not None:
        imports.append(d.adapter.import_line(f"donor_{d.adapter.name}"))
        result = f"donor_{d.adapter.name}(state_dict, **kwargs)"
    else:
        result = "{name: weight.data() for name, weight in state_dict.items()}"
    doc = "\n".join(_doc_lines(f"Map a {n.architecture} safetensors state dict onto the graph's weight names; "
                               f"today the {d.slug} donor's mapping.", 4)) + "\n"
    todos = todo_block(ctx.deltas_in("weights"), d.slug, "    ")
    return Piece(imports, "def convert_safetensor_state_dict(state_dict: dict[str, Weights], **kwargs: Any)"
                 f" -> dict[str, WeightData]:\n{doc}{todos}    return {result}\n")


def render_piece(ctx: Context, role: str, piece: Piece) -> str:
    """A whole generated module: attribution, three-sentence docstring, imports, the piece."""
    imports = f"{_imports(piece.imports)}\n\n" if piece.imports else ""
    return (f"{ctx.attribution()}{module_doc(ctx, role)}\nfrom __future__ import annotations\n\n"
            f"{imports}{piece.code}")


def append_piece(text: str, piece: Piece) -> str:
    """An existing module with a generated piece added at its end."""
    return _add_imports(text.rstrip("\n") + "\n\n\n" + piece.code, piece.imports)


def port_renames(ctx: Context, config_name: str, graph_name: str) -> dict[Ref, str]:
    renames = dict.fromkeys(ctx.facts.config_family, config_name)
    if ctx.facts.graph is not None:
        renames[ctx.facts.graph] = graph_name
    return renames


def _local_imports(ctx: Context, text: str, config_name: str, graph_name: str) -> list[str]:
    out = []
    if re.search(rf"\b{re.escape(graph_name)}\b", text) and ctx.facts.graph is not None:
        out.append(f"from .{ctx.names.slug} import {graph_name}")
    if re.search(rf"\b{re.escape(config_name)}\b", text):
        out.append(f"from .model_config import {config_name}")
    return out


def model_piece(ctx: Context, index: SourceIndex, config_name: str, graph_name: str) -> Piece:
    """The pipeline model subclass, with the donor members that name the donor's config or graph re-homed."""
    n, d = ctx.names, ctx.facts
    moved = rehome(index, d, port_renames(ctx, config_name, graph_name), skip_own=False)
    ctx.rehomed = moved.methods
    body = "\n\n".join(moved.body)
    doc = _class_doc(f"{n.architecture} pipeline model; builds ``{config_name}`` and ``{graph_name}`` where the "
                     f"{d.slug} donor's ``{d.model.name}`` builds its own.")
    imports = sorted(moved.imports | {d.model.import_line()}) + _local_imports(ctx, body, config_name, graph_name)
    return Piece(imports, f"class {n.model}({d.model.name}):\n{doc}" + (f"\n{body}\n" if body else ""))


def default_files(ctx: Context, index: SourceIndex) -> dict[str, str]:
    model = model_piece(ctx, index, ctx.names.config, ctx.names.graph)  # first: records the re-homed methods
    return {
        "model.py": render_piece(ctx, "model", model),
        "__init__.py": render_init(ctx),
        "arch.py": render_arch(ctx),
        "model_config.py": render_piece(ctx, "config", config_piece(ctx)),
        "weight_adapters.py": render_piece(ctx, "weights", weights_piece(ctx)),
        ctx.names.graph_file: render_piece(ctx, "graph", graph_piece(ctx)),
    }


# --------------------------------------------------------------------------- rewriting copied text


def strip_comments(text: str) -> str:
    """``text`` without comments: comment-only lines go, trailing comments are cut."""
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type == tokenize.COMMENT]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return text
    lines = text.split("\n")
    drop: set[int] = set()
    for token in reversed(tokens):
        row, col = token.start
        before = lines[row - 1][:col]
        if before.strip():
            lines[row - 1] = before.rstrip()
        else:
            drop.add(row - 1)
    return "\n".join(line for i, line in enumerate(lines) if i not in drop)


def _string_statements(tree: ast.Module) -> Iterator[tuple[ast.AST, int, ast.Expr]]:
    """Every bare string statement (docstrings and attribute docs) with its owner and position in the body."""
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for position, stmt in enumerate(body):
            if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and \
                    isinstance(stmt.value.value, str):
                yield node, position, stmt


def _whole_lines(lines: list[str], stmt: ast.stmt) -> bool:
    end = stmt.end_lineno or stmt.lineno
    tail = lines[end - 1].encode()[stmt.end_col_offset or 0:].decode().strip()
    return not lines[stmt.lineno - 1].encode()[: stmt.col_offset].decode().strip() and (not tail or
                                                                                        tail.startswith("#"))


def rewrite_docstrings(text: str, class_doc: dict[str, str], function_doc: str) -> str:
    """Drop the module docstring and attribute docs; give classes and functions honest one-line docstrings."""
    tree = ast.parse(text)
    lines = text.split("\n")
    edits: list[tuple[int, int, list[str]]] = []
    for owner, position, stmt in _string_statements(tree):
        if not _whole_lines(lines, stmt):
            continue
        new: list[str] = []
        if position == 0 and isinstance(owner, ast.ClassDef):
            new = _doc_lines(class_doc.get(owner.name, function_doc), stmt.col_offset)
        elif position == 0 and isinstance(owner, (ast.FunctionDef, ast.AsyncFunctionDef)):
            new = _doc_lines(function_doc, stmt.col_offset)
        if not new and len(getattr(owner, "body", [])) == 1 and not isinstance(owner, ast.Module):
            new = [" " * stmt.col_offset + "pass"]
        edits.append((stmt.lineno, stmt.end_lineno or stmt.lineno, new))
    for start, end, new in sorted(edits, reverse=True):
        lines[start - 1: end] = new
    return "\n".join(lines)


def _doc_lines(doc: str, col: int) -> list[str]:
    indent = " " * col
    wrapped = textwrap.wrap(doc, width=max(40, 100 - col))
    out = [f'{indent}"""{wrapped[0]}'] + [f"{indent}{line}" for line in wrapped[1:]]
    out[-1] += '"""'
    return out


def honest_module(text: str, header: str, doc: str, todos: str, class_doc: dict[str, str], function_doc: str) -> str:
    """A copied module with the donor's words replaced: attribution, three-sentence docstring, TODOs, code."""
    body = strip_comments(rewrite_docstrings(text, class_doc, function_doc))
    body = re.sub(r"\n{4,}", "\n\n\n", body).strip("\n")
    return f"{header}{doc}" + (f"\n{todos}" if todos else "") + f"\n{body}\n"


# --------------------------------------------------------------------------- full copy


@dataclass
class CopyState:
    """The full copy in memory: file name -> text, and what was renamed or borrowed on the way."""

    files: dict[str, str]
    renamed: dict[str, str] = field(default_factory=dict)
    borrowed: list[str] = field(default_factory=list)
    generated: list[str] = field(default_factory=list)


def _stem_pattern(facts: DonorFacts, names: PortNames) -> tuple[re.Pattern[str], dict[str, str]]:
    """Donor name fragments (Llama3, Llama, llama3, LLAMA...) and the port's fragment for each."""
    pairs: dict[str, str] = {}
    for stem in {stem_of(facts.architecture), facts.slug}:
        pairs.setdefault(stem[0].upper() + stem[1:], names.camel)
        pairs.setdefault(stem.upper(), names.slug.upper())
        pairs.setdefault(stem.lower(), names.slug)
        pairs.setdefault(stem, names.slug if stem == facts.slug else names.camel)
    alternatives = sorted(pairs, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, alternatives))), pairs


def rename_identifiers(state: CopyState, facts: DonorFacts, names: PortNames) -> None:
    """Rename every name the copy defines that carries the donor's name (Llama3Config -> HeliumConfig)."""
    pattern, pairs = _stem_pattern(facts, names)
    defined = set(defined_names(state.files))
    for old in sorted(defined):
        new = pattern.sub(lambda m: pairs[m.group(0)], old)
        if new != old and new not in defined and new not in state.renamed.values():
            state.renamed[old] = new
    if facts.registration.name in defined:
        state.renamed = {k: v for k, v in state.renamed.items() if v != names.symbol}
        state.renamed[facts.registration.name] = names.symbol
    modules = [Path(n).stem for n in state.files if n != "__init__.py"]
    for file, text in state.files.items():
        for old, new in state.renamed.items():
            text = re.sub(rf"(?<![\w.]){re.escape(old)}\b", new, text)
            for module in modules:
                text = re.sub(rf"\b{module}\.{re.escape(old)}\b", f"{module}.{new}", text)
        state.files[file] = text


def _relative_import_text(node: ast.ImportFrom, kept: set[str], donor_package: str, graph_from: str | None,
                          graph_to: str) -> str | None:
    """The rewritten form of a ``from .x import ...`` line, or None when it stays as it is."""
    names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in node.names)
    if node.module is None:
        local = [a for a in node.names if a.name in kept]
        remote = [a for a in node.names if a.name not in kept]
        if not remote:
            return None
        parts = []
        if local:
            parts.append("from . import " + ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in local))
        parts.append(f"from {donor_package} import " + ", ".join(
            a.name + (f" as {a.asname}" if a.asname else "") for a in remote))
        return "\n".join(parts)
    head = node.module.split(".")[0]
    if graph_from is not None and node.module == graph_from:
        return f"from .{graph_to} import {names}"
    if head in kept:
        return None
    return f"from {donor_package}.{node.module} import {names}"


def _as_relative(node: ast.ImportFrom, package: str, kept: set[str]) -> ast.ImportFrom:
    """``from <donor package>.<kept module> import x`` seen as ``from .<kept module> import x`` (same lines)."""
    module = node.module or ""
    if node.level == 0 and module.startswith(package + ".") and module[len(package) + 1:].split(".")[0] in kept:
        relative = ast.ImportFrom(module[len(package) + 1:], node.names, 1)
        return ast.copy_location(relative, node)
    return node


def normalise_layout(state: CopyState, facts: DonorFacts, names: PortNames) -> None:
    """Keep the five files plus the graph (renamed ``<slug>.py``); import every other donor module from MAX."""
    graph_from = None
    if facts.graph is not None and facts.own(facts.graph) and facts.graph.module.count(".") == \
            facts.package.count(".") + 1:
        stem = facts.graph.module.rsplit(".", 1)[1]
        if f"{stem}.py" in state.files and f"{stem}.py" not in ROLE_FILES.values():
            graph_from = stem
    keep = set(ROLE_FILES.values()) | ({f"{graph_from}.py"} if graph_from else set())
    state.borrowed = sorted(n for n in state.files if n not in keep)
    kept_modules = {Path(n).stem for n in keep if n in state.files}
    files = {}
    for name in sorted(keep & set(state.files)):
        text = state.files[name]
        tree = ast.parse(text)
        lines = text.split("\n")
        for node in sorted((n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)),
                           key=lambda n: n.lineno, reverse=True):
            relative = _as_relative(node, facts.package, kept_modules)
            if relative.level != 1:
                continue
            new = _relative_import_text(relative, kept_modules, facts.package, graph_from, names.slug)
            if new is None and relative is not node:
                new = f"from .{relative.module} import " + ", ".join(
                    a.name + (f" as {a.asname}" if a.asname else "") for a in relative.names)
            if new is not None:
                indent = lines[node.lineno - 1][: node.col_offset]
                lines[node.lineno - 1: node.end_lineno] = [indent + line for line in new.split("\n")]
        files[names.graph_file if graph_from and name == f"{graph_from}.py" else name] = "\n".join(lines)
    state.files = files
    state.borrowed += sorted(p.name + "/" for p in (registry.architectures_dir() / facts.slug).iterdir()
                             if p.is_dir() and p.name not in ("__pycache__", "recipes"))


def _offset(lines: list[str], line: int, col: int) -> int:
    return sum(len(x) + 1 for x in lines[: line - 1]) + len(lines[line - 1].encode()[:col].decode())


def _registration_call(text: str, symbol: str) -> ast.Call:
    call = registry.assigned_call(ast.parse(text), symbol, "SupportedArchitecture")
    if call is None or call.end_lineno is None or call.end_col_offset is None:
        raise UserError(f"the copied registration {symbol} could not be found; the MAX install is unusual")
    return call


def patch_registration(text: str, symbol: str, values: dict[str, str], imports: list[str]) -> str:
    """Set keyword arguments of ``symbol = SupportedArchitecture(...)`` (adding missing ones) and add imports."""
    call = _registration_call(text, symbol)
    lines = text.split("\n")
    present = {kw.arg: kw.value for kw in call.keywords if kw.arg}
    spans = [(_offset(lines, v.lineno, v.col_offset), _offset(lines, v.end_lineno, v.end_col_offset), values[k])
             for k, v in present.items() if k in values and v.end_lineno is not None and v.end_col_offset is not None]
    for start, end, value in sorted(spans, reverse=True):
        text = text[:start] + value + text[end:]
    missing = {k: v for k, v in values.items() if k not in present}
    if missing:
        call = _registration_call(text, symbol)
        close = _offset(text.split("\n"), call.end_lineno or 0, call.end_col_offset or 0) - 1
        head = text[:close].rstrip()
        head += "" if head.endswith(("(", ",")) else ","
        text = head + "\n" + "".join(f"    {k}={v},\n" for k, v in missing.items()) + text[close:]
    return _add_imports(text, imports)


def _add_imports(text: str, imports: list[str]) -> str:
    """Insert import lines after the module's last top-level import."""
    if not imports:
        return text
    tree = ast.parse(text)
    last = max((s.end_lineno or s.lineno for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))),
               default=0)
    lines = text.split("\n")
    present = {line.strip() for line in lines}
    lines[last:last] = [_wrap_import(line) for line in dict.fromkeys(imports) if line not in present]
    return "\n".join(lines)


def _insert_members(text: str, class_name: str, members: list[str], imports: set[str]) -> str:
    tree = ast.parse(text)
    node = next((s for s in tree.body if isinstance(s, ast.ClassDef) and s.name == class_name), None)
    if node is None or node.end_lineno is None:
        raise UserError(f"the copied pipeline model {class_name} could not be found in model.py")
    lines = text.split("\n")
    lines[node.end_lineno: node.end_lineno] = [""] + "\n\n".join(members).split("\n")
    return _add_imports("\n".join(lines), sorted(imports))


def _in_copy(facts: DonorFacts, ref: Ref | None, kept: set[str]) -> bool:
    """Whether ``ref`` is defined in a donor module the full copy keeps."""
    if ref is None or not facts.own(ref):
        return False
    return ref.module == facts.package or ref.module[len(facts.package) + 1:].split(".")[0] in kept


def _role_of(file: str, names: PortNames) -> str:
    if file == names.graph_file:
        return "graph"
    return next(role for role, name in ROLE_FILES.items() if name == file)


def full_copy_files(ctx: Context, index: SourceIndex, scratch: Path) -> CopyState:
    """The donor's files copied, renamed, normalised to the port layout, and made honest."""
    n, d = ctx.names, ctx.facts
    package = copy_native_port(d.slug, scratch, class_name=n.architecture, port_slug=n.slug, force=True)
    state = CopyState({p.name: read_port_file(p) for p in sorted(package.glob("*.py"))})
    shutil.rmtree(package)
    normalise_layout(state, d, n)
    kept = {Path(name).stem for name in state.files}
    if d.graph is not None and n.graph_file in state.files:
        kept.add(d.graph.module[len(d.package) + 1:].split(".")[0])
    rename_identifiers(state, d, n)
    has = {"model": _in_copy(d, d.model, kept), "config": _in_copy(d, d.config, kept),
           "graph": _in_copy(d, d.graph, kept), "weights": _in_copy(d, d.adapter, kept)}
    config_name = state.renamed.get(d.config.name, d.config.name) if has["config"] else n.config
    graph_name = state.renamed.get(d.graph.name, d.graph.name) if d.graph and has["graph"] else n.graph
    model_name = state.renamed.get(d.model.name, d.model.name) if has["model"] else n.model
    members = Rehomed()
    if has["model"] and not (has["config"] and (has["graph"] or d.graph is None)):
        members = rehome(index, d, port_renames(ctx, config_name, graph_name), skip_own=True)
        ctx.rehomed = members.methods
    _make_honest(ctx, state)
    _fill_missing(ctx, index, state, has, (config_name, graph_name, model_name))
    if members.body:
        imports = members.imports | set(_local_imports(ctx, "\n".join(members.body), config_name, graph_name))
        state.files["model.py"] = _insert_members(state.files["model.py"], model_name, members.body, imports)
    return state


def _make_honest(ctx: Context, state: CopyState) -> None:
    """Replace every copied module's docstrings and comments (the donor's words) with the port's."""
    d = ctx.facts
    class_doc = {new: f"``{new}`` is the {d.slug} donor's ``{old}``, copied and renamed; its code is unchanged."
                 for old, new in state.renamed.items()}
    function_doc = f"Copied from the {d.slug} donor, unchanged apart from names."
    for file, text in state.files.items():
        role = _role_of(file, ctx.names)
        todos = todo_block(ctx.deltas_in(role), d.slug) if role in ("config", "weights", "graph") else ""
        state.files[file] = honest_module(text, ctx.attribution(), module_doc(ctx, role), todos, class_doc,
                                          function_doc)


def _fill_missing(ctx: Context, index: SourceIndex, state: CopyState, has: dict[str, bool],
                  names: tuple[str, str, str]) -> None:
    """Write the roles the donor borrows from another architecture, and point the registration at them."""
    n = ctx.names
    config_name, graph_name, model_name = names
    pieces = {"config": lambda: config_piece(ctx), "graph": lambda: graph_piece(ctx),
              "weights": lambda: weights_piece(ctx),
              "model": lambda: model_piece(ctx, index, config_name, graph_name)}
    for role in ("model", "config", "graph", "weights"):
        if has[role]:
            continue
        file = n.graph_file if role == "graph" else ROLE_FILES[role]
        piece = pieces[role]()
        state.files[file] = append_piece(state.files[file], piece) if file in state.files else \
            render_piece(ctx, role, piece)
        state.generated.append(file)
    values = {"example_repo_ids": json.dumps([ctx.example_repo] if ctx.example_repo else []),
              "default_weights_format": "WeightsFormat.safetensors", "multi_gpu_supported": "False"}
    imports = ["from max.graph.weights import WeightsFormat"]
    if not has["model"]:
        values["pipeline_model"] = model_name
        imports.append(f"from .model import {model_name}")
    if not has["config"]:
        values["config"] = config_name
        imports.append(f"from .model_config import {config_name}")
    if not has["weights"]:
        values["weight_adapters"] = "{WeightsFormat.safetensors: weight_adapters.convert_safetensor_state_dict}"
        imports.append("from . import weight_adapters")
        state.files["arch.py"] = _drop_import(state.files["arch.py"], "weight_adapters")
    state.files["arch.py"] = patch_registration(state.files["arch.py"], n.symbol, values, imports)


def _drop_import(text: str, name: str) -> str:
    """Remove ``from <absolute module> import <name>`` statements that import nothing else."""
    lines = text.split("\n")
    for node in reversed(ast.parse(text).body):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and [a.name for a in node.names] == [name] \
                and node.names[0].asname is None:
            del lines[node.lineno - 1: node.end_lineno]
    return "\n".join(lines)


@dataclass(frozen=True)
class DonorCode:
    """The files of a scaffold, and what writing them learned about the donor."""

    files: dict[str, str]
    donor: str  # the donor's slug
    rehomed: tuple[str, ...] = ()  # donor methods copied into the pipeline model
    borrowed: tuple[str, ...] = ()  # donor modules still imported from MAX (full copy)
    generated: tuple[str, ...] = ()  # roles the donor borrows elsewhere, written as subclasses (full copy)


def donor_code_files(names: PortNames, donor: registry.NativeArch, deltas: list[Delta], example_repo: str | None,
                     full_copy: bool, out_dir: Path) -> DonorCode:
    """A scaffold's files: subclasses of ``donor`` (or, ``full_copy``, its code renamed), one TODO per delta.

    A full copy stages MAX's files in a scratch folder under ``out_dir`` (removed before returning).
    """
    index = SourceIndex()
    facts = analyse_donor(index, donor)
    ctx = Context(names, facts, deltas, example_repo, full_copy)
    if not full_copy:
        files = default_files(ctx, index)
        return DonorCode(files, facts.slug, tuple(ctx.rehomed))
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{names.slug}.copy.", dir=out_dir))
    try:
        state = full_copy_files(ctx, index, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return DonorCode(state.files, facts.slug, tuple(ctx.rehomed), tuple(state.borrowed), tuple(state.generated))
