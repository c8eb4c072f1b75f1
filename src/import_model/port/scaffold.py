"""Scaffold a port: ``DIR/<slug>/`` with the five files plus ``<slug>.py``, registered under the model's class.

Two modes, both read the installed MAX's source statically (``import max.pipelines``
costs ten seconds and is never needed to write files):

- **default**: a small package that *subclasses* the donor. ``model_config.py``,
  ``<slug>.py`` (the graph) and ``weight_adapters.py`` expose the overrides,
  ``model.py`` re-homes the few donor methods that name the donor's config or
  graph class so the port's own classes are built, and every row of the plan's
  delta list becomes one ``# TODO(delta <rule>): <change>`` in the file where
  it belongs.
- **full copy** (``--full-copy``): the donor's files copied (:func:`copy_native_port`),
  classes, slug, registration and imports renamed, the layout normalised to the
  five files plus ``<slug>.py`` (other donor modules are imported from the
  installed MAX; a role the donor borrows from another architecture is written
  as in the default mode).

In both modes the donor's docstrings and comments are replaced by the seed's
three-sentence pattern (what the module is, what it implements today, what it
does not do yet), so ``import-model audit`` passes a fresh scaffold. Nothing is
written outside ``DIR``: the package is staged in a temporary folder under
``DIR`` and renamed into place; an existing port is replaced only with ``force``.
"""

from __future__ import annotations

import ast
import builtins
import copy
import importlib.util
import io
import re
import shutil
import tempfile
import textwrap
import tokenize
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from import_model.errors import UserError
from import_model.plan.donors import Delta
from import_model.port.native_copy import copy_native_port, validate_slug
from import_model.recon import registry

ARCH_PACKAGE = "max.pipelines.architectures"
#: The five files of a port (plus ``<slug>.py``, the graph), by role.
ROLE_FILES: dict[str, str] = {
    "init": "__init__.py",
    "arch": "arch.py",
    "config": "model_config.py",
    "model": "model.py",
    "weights": "weight_adapters.py",
}
#: Suffixes of HF class names; what is left names the port's classes (HeliumForCausalLM -> Helium).
ARCH_SUFFIXES = ("ForCausalLM", "ForConditionalGeneration", "LMHeadModel", "Model")
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


# --------------------------------------------------------------------------- names


@dataclass(frozen=True)
class PortNames:
    """The port's identity: HF class, slug and the names of its classes."""

    architecture: str
    slug: str
    camel: str

    @property
    def config(self) -> str:
        return f"{self.camel}Config"

    @property
    def model(self) -> str:
        return f"{self.camel}Model"

    @property
    def graph(self) -> str:
        return self.camel

    @property
    def symbol(self) -> str:
        return f"{self.slug}_arch"

    @property
    def graph_file(self) -> str:
        return f"{self.slug}.py"


def stem_of(architecture: str) -> str:
    for suffix in ARCH_SUFFIXES:
        if architecture.endswith(suffix) and len(architecture) > len(suffix):
            return architecture[: -len(suffix)]
    return architecture


def port_names(architecture: str, slug: str) -> PortNames:
    stem = re.sub(r"\W", "", stem_of(architecture)) or slug.title().replace("_", "")
    if not stem[0].isalpha():
        stem = "Port" + stem
    return PortNames(architecture, slug, stem[0].upper() + stem[1:])


def default_slug(config: dict) -> str:
    """The slug a scaffold uses when none is given: the model_type, made a valid package name."""
    raw = config.get("model_type") if isinstance(config.get("model_type"), str) else None
    if not raw:
        raw = stem_of(str((config.get("architectures") or ["port"])[0]))
    slug = re.sub(r"[^a-z0-9_]", "_", raw.lower()).strip("_")[:60] or "port"
    return slug if slug[0].isalpha() else f"m_{slug}"


def check_slug(slug: str, output_dir: Path) -> str:
    """A valid package name that does not shadow an installed top-level module (MAX appends DIR to sys.path)."""
    validate_slug(slug)
    spec = importlib.util.find_spec(slug) if slug.isidentifier() else None
    origin = Path(spec.origin).resolve() if spec and spec.origin and spec.origin not in ("built-in", "frozen") else None
    if spec is not None and (origin is None or output_dir not in origin.parents):
        raise UserError(f"slug {slug!r} is also an installed Python module that would shadow the port; "
                        f"pass --slug {slug}_port (or another name)")
    return slug


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
            if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and name in _assigned(stmt):
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


def _assigned(stmt: ast.Assign | ast.AnnAssign) -> set[str]:
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
    return {t.id for t in targets if isinstance(t, ast.Name)}


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
    facts.config_is_dataclass = bool(node and any(_base_name(_call_func(d)) == "dataclass" for d in node.decorator_list))
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
    if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and len(_assigned(stmt)) == 1:
        return next(iter(_assigned(stmt)))
    return None


def _annotation_ids(node: ast.AST) -> set[int]:
    ids: set[int] = set()
    for sub in ast.walk(node):
        parts: list[ast.AST | None] = []
        if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
            parts.append(sub.returns)
        elif isinstance(sub, ast.arg):
            parts.append(sub.annotation)
        elif isinstance(sub, ast.AnnAssign):
            parts.append(sub.annotation)
        ids |= {id(n) for part in parts if part is not None for n in ast.walk(part)}
    return ids


def _names_renamed(index: SourceIndex, module: str, stmt: ast.stmt, renames: dict[Ref, str]) -> bool:
    skip = _annotation_ids(stmt)
    return any(isinstance(n, ast.Name) and id(n) not in skip and index.resolve(module, n.id) in renames
               for n in ast.walk(stmt))


class _Renamer(ast.NodeTransformer):
    def __init__(self, index: SourceIndex, module: str, owner: str, renames: dict[Ref, str]) -> None:
        self.index, self.module, self.owner, self.renames = index, module, owner, renames

    def visit_Name(self, node: ast.Name) -> ast.Name:
        target = self.renames.get(self.index.resolve(self.module, node.id))
        return ast.copy_location(ast.Name(target, node.ctx), node) if target else node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id == "super" and not node.args:
            node.args = [ast.Name(self.owner, ast.Load()), ast.Name("self", ast.Load())]
        return node


def _copy_member(index: SourceIndex, ref: Ref, owner: ast.ClassDef, stmt: ast.stmt, renames: dict[Ref, str],
                 donor_slug: str) -> tuple[str, set[str]]:
    node = copy.deepcopy(stmt)
    uses_super = any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "super"
                     for n in ast.walk(node))
    node = _Renamer(index, ref.module, owner.name, renames).visit(node)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        swapped = sorted(set(renames.values()) & {n.id for n in ast.walk(node) if isinstance(n, ast.Name)})
        doc = (f"Copied from the {donor_slug} donor's ``{owner.name}.{node.name}``, unchanged apart from "
               f"building {', '.join(swapped)} instead of the donor's classes.")
        body = node.body[1:] if _docstring_node(node) is not None else node.body
        node.body = [ast.Expr(ast.Constant(doc)), *(body or [ast.Pass()])]
    imports = _free_imports(index, ref.module, node, set(renames.values()))
    if uses_super:
        imports.add(Ref(ref.module, owner.name).import_line())
    text = ast.unparse(ast.fix_missing_locations(node))
    return textwrap.indent(text, "    "), imports


def _free_imports(index: SourceIndex, module: str, node: ast.AST, local_names: set[str]) -> set[str]:
    bound = {a.arg for a in ast.walk(node) if isinstance(a, ast.arg)}
    bound |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    bound |= {n.name for n in ast.walk(node) if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n is not node}
    loads = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    free = loads - bound - local_names - set(dir(builtins)) - {"self", "cls"}
    return {index.resolve(module, name).import_line(name) for name in sorted(free)}


def _docstring_node(node: ast.AST) -> ast.Expr | None:
    body = getattr(node, "body", None)
    if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
            isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
        return body[0]
    return None
