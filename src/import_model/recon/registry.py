"""What the installed MAX registers natively, read from its source tree on disk.

``import max.pipelines`` costs over ten seconds, so the registry is read
statically: ``max/pipelines/architectures/__init__.py`` lists every
architecture as ``_LazyArch(name, module, symbol)``, and each module's
``SupportedArchitecture(...)`` call says its task (``PipelineTask``: text,
embeddings, pixel or audio generation), the inputs it accepts
(``input_modalities``: text, image, video) and its config class, whose
``DEFAULT_ENCODING`` / ``SUPPORTED_ENCODINGS`` class attributes we read too. A
registration written as a copy of another (``dataclasses.replace(base, ...)``,
or a ``Speculator(base=...)``) takes what it does not override from its base.
The result is cached per MAX install (keyed by path and modification times).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.util
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from import_model.cache import atomic_write, cache_root
from import_model.errors import UserError
from import_model.safe_io import MAX_CACHE_BYTES, read_bounded_text

#: Name fragments of registrations that are draft / speculative decoders, not models to port from.
SPECULATIVE_MARKERS = ("Eagle", "DFlash", "Dflash", "DSpark", "MTP", "NextN", "Draft")
#: Suffix MAX uses for a second implementation of the same model on its newer module API.
MODULE_V3_SUFFIX = "_ModuleV3"
#: Bump when :class:`NativeArch` changes, so cached scans are redone.
_SCHEMA = 3
#: How many copies deep a registration may derive from another before we stop following bases.
MAX_BASE_DEPTH = 4
#: ``PipelineTask`` member -> the words ``list-archs`` shows.
TASK_WORDS = {
    "TEXT_GENERATION": "text generation",
    "EMBEDDINGS_GENERATION": "embeddings",
    "PIXEL_GENERATION": "pixel generation",
    "AUDIO_GENERATION": "audio generation",
}


@dataclass
class NativeArch:
    """One architecture class the installed MAX serves without a port."""

    name: str
    slug: str
    task: str = "unknown"
    config_class: str | None = None
    default_encoding: str | None = None
    supported_encodings: list[str] = field(default_factory=list)
    speculates_on: str | None = None
    #: The module attribute holding the ``SupportedArchitecture`` (e.g. ``llama_arch``).
    symbol: str = ""
    #: ``InputModality`` members the registration declares (MAX's default is text only).
    inputs: list[str] = field(default_factory=lambda: ["TEXT"])
    #: For a registration copied from another (``replace(base, ...)`` or ``Speculator(base=...)``): the base's symbol.
    derived_from: str | None = None

    @property
    def task_label(self) -> str:
        """``text generation``, ``text generation, multimodal (image)``, ``embeddings``, ... for people to read."""
        label = TASK_WORDS.get(self.task, self.task.lower().replace("_", " "))
        extra = [m.lower() for m in self.inputs if m != "TEXT"]
        return f"{label}, multimodal ({', '.join(extra)})" if extra else label

    @property
    def is_text_generation(self) -> bool:
        return self.task == "TEXT_GENERATION"

    @property
    def is_donor(self) -> bool:
        """A plain text-generation model whose code a port can start from."""
        return (
            self.is_text_generation
            and self.speculates_on is None
            and self.derived_from is None  # a renamed copy: its base is the donor
            and not self.name.endswith(MODULE_V3_SUFFIX)
            and not any(marker in self.name for marker in SPECULATIVE_MARKERS)
        )


def max_package_dir() -> Path:
    """The installed ``max`` package directory, found without importing it."""
    spec = importlib.util.find_spec("max")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("MAX is not installed in this environment; run `make setup` (pip install 'max[serve]==26.7.0')")
    return Path(next(iter(spec.submodule_search_locations)))


def architectures_dir() -> Path:
    path = max_package_dir() / "pipelines" / "architectures"
    if not (path / "__init__.py").is_file():
        raise UserError(f"{path} is missing; the MAX install is incomplete or too old (need max 26.7)")
    return path


def native_architectures(use_cache: bool = True) -> list[NativeArch]:
    """Every architecture the installed MAX registers, in registration order."""
    root = architectures_dir()
    cache = _cache_file(root)
    if use_cache and cache is not None and cache.is_file():
        try:
            return [NativeArch(**row) for row in json.loads(read_bounded_text(cache, MAX_CACHE_BYTES, "registry cache"))]
        except (UserError, OSError, ValueError, TypeError):
            pass
    archs = _scan(root)
    if cache is not None:
        with contextlib.suppress(OSError):  # a read-only cache only costs speed
            atomic_write(cache, json.dumps([asdict(a) for a in archs]).encode())
    return archs


def find_native(architecture: str, text_only: bool = True) -> list[NativeArch]:
    """Registrations whose class name is exactly ``architecture``."""
    return [a for a in native_architectures() if a.name == architecture and (a.is_text_generation or not text_only)]


def native_class(config: dict[str, Any]) -> str | None:
    """The HF class of a checkpoint when MAX serves it natively, by ``architectures[0]`` or by ``model_type``.

    The second lookup matters for ports: a checkpoint renamed to a port's class is still a model MAX ships.
    """
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    archs = config.get("architectures") if isinstance(config.get("architectures"), list) else []
    hf_class = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(str(config.get("model_type")))
    for name in [*(a for a in archs[:1] if isinstance(a, str)), hf_class]:
        if name and find_native(name):
            return name
    return None


def serve_command(model: str) -> str:
    return f"max serve --model {model}"


# -- scanning -----------------------------------------------------------------


def _cache_file(root: Path) -> Path | None:
    try:
        stamp = int(max(p.stat().st_mtime_ns for p in root.glob("*/*.py")))
    except (OSError, ValueError):
        return None
    key = hashlib.sha256(f"{root}|{stamp}|{_SCHEMA}".encode()).hexdigest()[:16]
    return cache_root() / "registry" / f"max-archs-{key}.json"


def _scan(root: Path) -> list[NativeArch]:
    archs = []
    for name, module, symbol, speculates_on in _lazy_entries(root / "__init__.py"):
        slug = module.lstrip(".")
        arch = NativeArch(name=name, slug=slug, speculates_on=speculates_on, symbol=symbol)
        _fill_from_module(arch, root / slug, symbol)
        archs.append(arch)
    return archs


def _lazy_entries(init_file: Path) -> list[tuple[str, str, str, str | None]]:
    tree = ast.parse(init_file.read_text())
    entries = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and call_name(node) == "_LazyArch" and len(node.args) >= 3:
            try:
                name, module, symbol = (ast.literal_eval(arg) for arg in node.args[:3])
                kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
            except ValueError:
                continue
            entries.append((name, module, symbol, kwargs.get("speculates_on")))
    return entries


def _fill_from_module(arch: NativeArch, module_dir: Path, symbol: str) -> None:
    """Read task, inputs and config class from the registration ``symbol`` in the module (or its base's)."""
    if not module_dir.is_dir():
        return
    trees = {path: parse_python(path) for path in sorted(module_dir.glob("*.py"))}
    found = _registration(module_dir.parent, symbol, trees.values())
    if found is None:
        return
    keywords, arch.derived_from = found
    task, config, inputs = keywords.get("task"), keywords.get("config"), keywords.get("input_modalities")
    if isinstance(task, ast.Attribute):
        arch.task = task.attr
    if isinstance(config, ast.Name):
        arch.config_class = config.id
    if isinstance(inputs, (ast.Set, ast.List, ast.Tuple)):
        arch.inputs = sorted({e.attr for e in inputs.elts if isinstance(e, ast.Attribute)}, key=_modality_order)
    if arch.config_class and not _fill_encodings(arch, trees.values()):
        # The config class may live in another architecture (e.g. a reuse of Llama3Config).
        needle = f"class {arch.config_class}("
        elsewhere = [p for p in module_dir.parent.glob("*/*.py") if needle in p.read_text(errors="replace")]
        _fill_encodings(arch, (parse_python(p) for p in elsewhere))


#: Calls a registration is written with: the registration itself, a copy of another, a speculative variant of one.
REGISTRATION_CALLS = ("SupportedArchitecture", "replace", "Speculator")


def _registration(root: Path, symbol: str, trees: Iterable[ast.Module | None],
                  depth: int = 0) -> tuple[dict[str, ast.expr], str | None] | None:
    """The keywords that define ``symbol`` (a copy's base filled in under its overrides), and the base's symbol."""
    call = next((c for tree in trees if (c := _registration_call(tree, symbol)) is not None), None)
    if call is None and depth > 0:  # a base defined in another architecture's module
        needle = f"{symbol} ="
        trees = [parse_python(p) for p in sorted(root.glob("*/*.py")) if needle in p.read_text(errors="replace")]
        call = next((c for tree in trees if (c := _registration_call(tree, symbol)) is not None), None)
    if call is None:
        return None
    keywords = {kw.arg: kw.value for kw in call.keywords if kw.arg}
    if call_name(call) == "SupportedArchitecture":
        return keywords, None
    base = keywords.pop("base", None) if call_name(call) == "Speculator" else (call.args[0] if call.args else None)
    if not isinstance(base, ast.Name) or depth >= MAX_BASE_DEPTH:
        return keywords, None
    inherited = _registration(root, base.id, trees, depth + 1)
    merged = dict(inherited[0]) if inherited else {}
    merged.update({k: v for k, v in keywords.items() if not (isinstance(v, ast.Constant) and v.value is None)})
    return merged, base.id


def _registration_call(tree: ast.Module | None, symbol: str) -> ast.Call | None:
    for callee in REGISTRATION_CALLS:
        call = assigned_call(tree, symbol, callee)
        if call is not None:
            return call
    return None


def _modality_order(name: str) -> tuple[int, str]:
    return (0 if name == "TEXT" else 1, name)


def _fill_encodings(arch: NativeArch, trees: Iterable[ast.Module | None]) -> bool:
    """Copy the config class's encoding attributes onto ``arch``; False if the class is not here."""
    parsed = [t for t in trees if t is not None]
    if not any(_find_class(t, arch.config_class or "") for t in parsed):
        return False
    default = class_attribute(parsed, arch.config_class or "", "DEFAULT_ENCODING")
    arch.default_encoding = default if isinstance(default, str) else None
    found = class_attribute(parsed, arch.config_class or "", "SUPPORTED_ENCODINGS")
    arch.supported_encodings = sorted(found) if isinstance(found, (set, list, tuple)) else []
    return True


def class_attribute(trees: Iterable[ast.Module], class_name: str, attr: str) -> object:
    """The literal value of ``class_name.attr`` in the first tree that defines the class (None if not literal)."""
    for tree in trees:
        node = _find_class(tree, class_name)
        if node is None:
            continue
        for stmt in node.body:
            target, value = _class_attr(stmt)
            if target == attr:
                return _literal(value)
        return None
    return None


def _find_class(tree: ast.Module, class_name: str) -> ast.ClassDef | None:
    return next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name), None)


def parse_python(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text())
    except (OSError, SyntaxError, ValueError):
        return None


def assigned_call(tree: ast.Module | None, symbol: str, callee: str) -> ast.Call | None:
    if tree is None:
        return None
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Call):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == symbol for t in targets) and call_name(node.value) == callee:
                return node.value
    return None


def _class_attr(stmt: ast.stmt) -> tuple[str | None, ast.expr | None]:
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
        return stmt.target.id, stmt.value
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        return stmt.targets[0].id, stmt.value
    return None, None


def _literal(node: ast.expr | None) -> object:
    if node is None:
        return None
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def call_name(call: ast.Call) -> str | None:
    """The called name: ``f`` of ``f(...)`` or ``x.f(...)``."""
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None
