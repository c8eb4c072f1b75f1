"""Copy a native MAX architecture into a standalone custom-architecture package.

``max serve --custom-architectures DIR/<slug>`` imports ``<slug>`` as a
top-level package, so the copy's relative imports that climb out of the
architecture (``from ..llama3 import x``) are rewritten to absolute ones, the
registration is renamed to the model's own class, and ``__init__.py`` exposes
``ARCHITECTURES``. The verify engine's ground truth (a native model treated as
a port) and the full-copy scaffold both start here.
"""

from __future__ import annotations

import ast
import json
import keyword
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from import_model.errors import UserError
from import_model.recon import registry
from import_model.safe_io import (
    MAX_PORT_FILE_BYTES,
    directory_identity,
    foreign_entries,
    is_written_here,
    read_bounded_text,
    read_marker,
)

SLUG = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_SKIP = {"__pycache__", "recipes"}
#: The file import-model leaves in every port package it writes: which files there are its own.
PORT_MANIFEST = ".import-model-port.json"
#: What a port written before the manifest existed may hold (besides ``<slug>.py`` and ``__pycache__``).
LEGACY_PORT_FILES = frozenset({"__init__.py", "arch.py", "model_config.py", "model.py", "weight_adapters.py",
                               "layers.py"})


#: Suffixes of HF class names; what is left is the family stem (PhiForCausalLM -> Phi).
ARCH_SUFFIXES = ("ForCausalLM", "ForConditionalGeneration", "LMHeadModel", "Model")


def stem_of(architecture: str) -> str:
    for suffix in ARCH_SUFFIXES:
        if architecture.endswith(suffix) and len(architecture) > len(suffix):
            return architecture[: -len(suffix)]
    return architecture


def validate_slug(slug: str) -> str:
    if not SLUG.match(slug):
        raise UserError(f"slug {slug[:80]!r} is not valid: use lowercase letters, digits and _, starting with a letter")
    if keyword.iskeyword(slug):
        raise UserError(f"slug {slug!r} is a Python keyword and cannot name a package; pass --slug {slug}_port")
    return slug


def copy_native_port(donor_slug: str, output_dir: Path, *, class_name: str, port_slug: str,
                     force: bool = False, registration: str | None = None) -> Path:
    """Write ``output_dir/port_slug`` as a copy of native ``donor_slug`` registered as ``class_name``.

    ``registration`` picks, by its native class name, which of the folder's registrations is copied (qwen3's
    folder registers Qwen3 and Qwen3-MoE); the first text-generation one by default.
    """
    validate_slug(port_slug)
    if not class_name.isidentifier():
        raise UserError(f"architecture name {class_name!r} is not a Python identifier")
    entry = _donor_entry(donor_slug, registration)
    source = registry.architectures_dir() / donor_slug
    target = output_dir / port_slug
    if target.exists() and any(target.iterdir()):
        if not force:
            raise UserError(f"{target} already exists; pass --force to replace it (your edits there would be lost)")
        check_replaceable(target)
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{port_slug}.", dir=output_dir))
    try:
        for path in sorted(source.rglob("*.py")):
            relative = path.relative_to(source)
            if _SKIP & set(relative.parts):
                continue
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            (staging / relative).write_text(absolutize_imports(path.read_text(), depth=len(relative.parts) - 1))
        _rename_registration(staging, entry.symbol, class_name)
        init = staging / "__init__.py"
        init.write_text(init.read_text() + f"\nARCHITECTURES = [{entry.symbol}]\n")
        write_manifest(staging)
        if target.exists():
            check_replaceable(target)
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


#: How MAX writes a bfloat16-only registration (a GPU encoding) in its config classes.
BFLOAT16_ONLY = '{"bfloat16"}'


def allow_cpu_float32(port: Path) -> bool:
    """Add float32 to a copied port's bfloat16-only ``SUPPORTED_ENCODINGS`` (the CPU runs float32); True if changed.

    The graph code is not touched: only the list of encodings the registration accepts.
    """
    changed = False
    for path in port.glob("*.py"):
        text = path.read_text()
        if "SUPPORTED_ENCODINGS" in text and BFLOAT16_ONLY in text:
            path.write_text(text.replace(BFLOAT16_ONLY, '{"bfloat16", "float32"}'))
            changed = True
    return changed


#: The template check-native adds to a copy whose experts run on MAX's GPU-only grouped-matmul kernels.
EVERY_EXPERT_MOE = Path(__file__).parent / "template" / "every_expert_moe.py"


def run_experts_on_cpu(port: Path) -> list[str]:
    """Give a copied port's ``MoE`` a CPU path (every expert, weighed by the registration's own gate); the files
    changed, relative to ``port``.

    Each ``from max.nn.moe import ... MoE ...`` is followed by one line that rebinds ``MoE`` to
    ``EveryExpertMoE`` (a subclass that runs MAX's own ``MoE`` anywhere but on a CPU); nothing else is touched.
    """
    changed = []
    for path in sorted(port.rglob("*.py")):
        text = path.read_text()
        lines = text.splitlines(keepends=True)
        depth = len(path.relative_to(port).parts) - 1
        imports = [node for node in ast.walk(ast.parse(text)) if isinstance(node, ast.ImportFrom)
                   and node.module in ("max.nn.moe", "max.nn.moe.moe") and node.end_lineno is not None
                   and any(alias.name == "MoE" and alias.asname is None for alias in node.names)]
        for node in sorted(imports, key=lambda n: -(n.end_lineno or 0)):
            rebind = (f"{' ' * node.col_offset}from {'.' * (depth + 1)}{EVERY_EXPERT_MOE.stem} import "
                      "EveryExpertMoE as MoE  # check-native: the experts' CPU path\n")
            lines.insert(node.end_lineno or 0, rebind)
        if imports:
            path.write_text("".join(lines))
            changed.append(path.relative_to(port).as_posix())
    if changed:
        shutil.copyfile(EVERY_EXPERT_MOE, port / EVERY_EXPERT_MOE.name)
    return changed


def write_manifest(package: Path) -> None:
    """Record every file of the staged ``package`` (and the manifest itself) as the tool's own.

    The manifest also names the staging directory itself (device and inode,
    kept when it is renamed into place), so a manifest copied or shipped in
    with someone else's files does not let ``--force`` delete them.
    """
    files = sorted(p.relative_to(package).as_posix() for p in package.rglob("*")
                   if p.is_file() and "__pycache__" not in p.relative_to(package).parts)
    manifest = {"written_by": "import-model", "files": sorted({*files, PORT_MANIFEST}),
                "directory": directory_identity(package)}
    (package / PORT_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _read_manifest(package: Path) -> dict[str, Any] | None:
    """The package's manifest, None without one; a damaged one is refused (exit 2)."""
    damaged = (f"{package / PORT_MANIFEST} is damaged; refusing to replace {package} with --force "
               "(move the package away, or delete it yourself if nothing in it is yours)")
    manifest = read_marker(package / PORT_MANIFEST, "port manifest", damaged)
    files = None if manifest is None else manifest.get("files")
    if manifest is not None and not (isinstance(files, list) and all(isinstance(name, str) for name in files)):
        raise UserError(damaged)
    return manifest


def _manifest_files(package: Path) -> frozenset[str] | None:
    """The files the package's manifest lists, or None when it has no manifest the tool wrote there.

    A manifest without the directory's identity (written before it was
    recorded) proves nothing, so the package is judged like a port older than
    the manifest. One naming another directory was copied in and is refused.
    """
    manifest = _read_manifest(package)
    if manifest is None or "directory" not in manifest:
        return None
    if not is_written_here(manifest["directory"], package):
        raise UserError(f"{package / PORT_MANIFEST} was not written in this directory (copied or moved in from "
                        "elsewhere); --force only replaces a port the tool wrote here, so choose another "
                        "--output-dir or --slug, or delete the package yourself")
    return frozenset(manifest["files"]) | {PORT_MANIFEST}


def _is_bytecode(relative: str) -> bool:
    """Python's own entries in a port: ``__pycache__`` folders (``.../__pycache__/``) and ``.pyc`` files in them."""
    parts = relative.split("/")
    return len(parts) >= 2 and parts[-2] == "__pycache__" and (parts[-1] == "" or parts[-1].endswith(".pyc"))


def check_replaceable(package: Path) -> None:
    """Refuse to replace ``package`` unless import-model wrote it and it holds nothing else.

    A port carries the tool's manifest, written in this very directory (or,
    written before that, registers an architecture and has only the port
    layout's file names). Python's ``__pycache__`` bytecode is never foreign;
    any other file, a link or a missing registration makes ``--force`` stop
    with one line. Port files are meant to be edited, so edits are not checked.
    """
    own = _manifest_files(package)
    if own is None:
        if not registered_names(package) or not (package / "__init__.py").is_file():
            raise UserError(f"{package} is not a port import-model wrote (no {PORT_MANIFEST} written there, no "
                            "registration); --force only replaces the tool's own ports, so choose another "
                            "--output-dir or --slug")
        own = LEGACY_PORT_FILES | {f"{package.name}.py", PORT_MANIFEST}
    foreign = foreign_entries(package, own, _is_bytecode)
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise UserError(f"{package} holds {foreign[0]!r}{more}, which import-model did not write; refusing to "
                        "replace it with --force (move those files out of the package first)")


def _donor_entry(donor_slug: str, registration: str | None = None) -> registry.NativeArch:
    for arch in registry.native_architectures():
        if arch.slug == donor_slug and arch.is_donor and registration in (None, arch.name):
            return arch
    donors = sorted({a.slug for a in registry.native_architectures() if a.is_donor})
    raise UserError(f"{donor_slug!r} is not a text-generation architecture of the installed MAX; choose one of: "
                    + ", ".join(donors))


#: Packages above an architecture folder, nearest first: where a relative import that leaves the copy points.
_OUTSIDE = ("max.pipelines.architectures", "max.pipelines", "max")
_RELATIVE_IMPORT = re.compile(r"^(\s*)from (\.+)([\w.]*) import", flags=re.M)


def absolutize_imports(text: str, depth: int = 0) -> str:
    """Rewrite relative imports that climb out of the copied package (a file ``depth`` folders deep) to absolute ones.

    ``from ..llama3.model import X`` in a top-level file becomes
    ``from max.pipelines.architectures.llama3.model import X``; imports inside the package stay relative.
    """

    def rewrite(match: re.Match[str]) -> str:
        indent, dots, rest = match.groups()
        outside = len(dots) - depth - 2  # 0: the architectures package, 1: max.pipelines, ...
        if outside < 0:
            return match.group(0)
        base = _OUTSIDE[min(outside, len(_OUTSIDE) - 1)]
        return f"{indent}from {base}{'.' + rest if rest else ''} import"

    return _RELATIVE_IMPORT.sub(rewrite, text)


def _rename_registration(package: Path, symbol: str, class_name: str) -> None:
    """Set ``name=`` of ``symbol = SupportedArchitecture(...)`` to ``class_name``, wherever it is defined."""
    for path in sorted(package.glob("*.py")):
        text = path.read_text()
        call = registry.assigned_call(ast.parse(text), symbol, "SupportedArchitecture")
        if call is None:
            continue
        for kw in call.keywords:
            if kw.arg == "name" and isinstance(kw.value, ast.Constant) and kw.value.end_col_offset is not None:
                lines = text.splitlines(keepends=True)
                line = lines[kw.value.lineno - 1]
                lines[kw.value.lineno - 1] = (line[: kw.value.col_offset] + repr(class_name)
                                              + line[kw.value.end_col_offset:])
                path.write_text("".join(lines))
                return
    raise UserError(f"could not find the registration {symbol} in the donor's files; the MAX install is unusual")


def read_port_file(path: Path) -> str:
    """A file of an existing port, bounded (a device, a FIFO or a huge file is refused with one line)."""
    return read_bounded_text(path, MAX_PORT_FILE_BYTES, "port file", errors="replace")


def registered_names(port_dir: Path) -> list[str]:
    """The ``name=`` of every ``SupportedArchitecture(...)`` in a port, read without importing it."""
    names = []
    for path in sorted(port_dir.glob("*.py")):
        if path.is_dir():
            continue
        try:
            tree = ast.parse(read_port_file(path))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == \
                    "SupportedArchitecture":
                for kw in node.keywords:
                    if kw.arg == "name" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                        names.append(kw.value.value)
    return names


def unmodified_donor(port_dir: Path) -> str | None:
    """The native slug whose code the port still is, file for file (ignoring imports, docstrings, names)."""
    port_files = {p.name: _shape(read_port_file(p)) for p in port_dir.glob("*.py")
                  if p.name not in ("__init__.py", "arch.py") and not p.is_dir()}
    if not port_files:
        return None
    root = registry.architectures_dir()
    for slug in sorted({a.slug for a in registry.native_architectures() if a.is_donor}):
        native = {name: root / slug / name for name in port_files}
        if all(path.is_file() and _shape(path.read_text()) == port_files[name] for name, path in native.items()):
            return slug
    return None


def _shape(text: str) -> str:
    """The code's AST without imports and docstrings, so renames and comment edits do not count as changes."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return text
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            kept = [n for n in body if not isinstance(n, (ast.Import, ast.ImportFrom))]
            if kept and isinstance(kept[0], ast.Expr) and isinstance(kept[0].value, ast.Constant) \
                    and isinstance(kept[0].value.value, str):
                kept = kept[1:]
            node.body = kept or [ast.Pass()]
    return ast.dump(tree)
