"""What every port is, whichever mode wrote it: its names, its files, and how they reach the disk.

A port is ``DIR/<slug>/`` with five files plus ``<slug>.py`` (the graph). The
writer (``port/writer.py``) decides their text; this module names the classes,
checks the slug and the target folder, and stages the package in a temporary
folder under ``DIR`` before renaming it into place, so nothing is written
outside ``DIR`` and an existing port is replaced only with ``force``.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from import_model.errors import UserError
from import_model.port.native_copy import (
    check_replaceable,
    read_port_file,
    stem_of,
    validate_slug,
    write_manifest,
)
from import_model.safe_io import check_output_root

#: The five files of a port (plus ``<slug>.py``, the graph), by role.
ROLE_FILES: dict[str, str] = {
    "init": "__init__.py",
    "arch": "arch.py",
    "config": "model_config.py",
    "model": "model.py",
    "weights": "weight_adapters.py",
}


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


def assigned_names(stmt: ast.Assign | ast.AnnAssign) -> set[str]:
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
    return {t.id for t in targets if isinstance(t, ast.Name)}


def defined_names(files: dict[str, str], *, members: bool = False) -> dict[str, str]:
    """Top-level names ``files`` define (classes, functions, assigned names) -> the file defining each;
    with ``members``, also ``Class.method`` for every method."""
    defined: dict[str, str] = {}
    for file, text in files.items():
        for stmt in ast.parse(text).body:
            if isinstance(stmt, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                defined[stmt.name] = file
                for member in stmt.body if members and isinstance(stmt, ast.ClassDef) else ():
                    if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        defined[f"{stmt.name}.{member.name}"] = file
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                defined |= dict.fromkeys(assigned_names(stmt), file)
    return defined


# --------------------------------------------------------------------------- writing


def check_target(out_dir: Path, slug: str, force: bool, source: Path | None = None) -> Path:
    """``out_dir/slug``, refused when it exists (unless ``force``) or would lead outside ``out_dir``.

    ``out_dir`` may not be the file-system root or the home directory; the
    package may not overlap ``source`` (the local checkpoint the command reads);
    ``force`` replaces only a package import-model wrote that holds nothing else.
    """
    check_output_root(out_dir, "--output-dir")
    if source is not None:
        check_output_root(out_dir / slug, "--output-dir", source=source)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--output-dir {out_dir} is a file; name a directory")
    target = out_dir / slug
    if target.is_symlink():
        raise UserError(f"{target} is a symbolic link; refusing to write through it")
    if target.exists() and target.resolve().parent != out_dir:
        raise UserError(f"{target} resolves outside {out_dir}; refusing to write there")
    if target.exists() and not target.is_dir():
        raise UserError(f"{target} exists and is not a directory; move it away first")
    if target.exists() and not force:
        raise UserError(f"{target} already exists; pass --force to replace it (your edits there would be lost)")
    if target.exists() and any(target.iterdir()):
        check_replaceable(target)
    return target


def write_package(out_dir: Path, slug: str, files: dict[str, str]) -> Path:
    """Stage ``files`` in a temporary folder under ``out_dir``, then swap it in as ``out_dir/slug``."""
    for name in files:
        if "/" in name or "\\" in name or name.startswith(".") or not name.endswith(".py"):
            raise ValueError(f"refusing to write a port file named {name!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / slug
    staging = Path(tempfile.mkdtemp(prefix=f".{slug}.new.", dir=out_dir))
    backup = out_dir / f".{slug}.old.{staging.name.rsplit('.', 1)[-1]}"
    try:
        for name, text in files.items():
            (staging / name).write_text(text)
        write_manifest(staging)
        if target.exists():
            if any(target.iterdir()):
                check_replaceable(target)  # again: the user may have added files while the port was built
            target.rename(backup)
        staging.rename(target)
    except BaseException:
        if backup.exists() and not target.exists():
            backup.rename(target)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(backup, ignore_errors=True)
    return target


def check_files(files: dict[str, str]) -> None:
    """Every generated module must at least parse; a failure here is a bug in the scaffold, not the user's."""
    for name, text in files.items():
        compile(text, name, "exec", dont_inherit=True)


# --------------------------------------------------------------------------- open deltas


#: A delta row a writer marked and nobody has implemented yet.
_OPEN_DELTA = re.compile(r"#\s*TODO\(delta ([\w.-]+)\)")


def open_delta_rules(text: str) -> list[str]:
    """Rule ids of the ``TODO(delta ...)`` markers in one module's text."""
    return _OPEN_DELTA.findall(text)


def open_delta_markers(port_dir: Path) -> list[str]:
    """Rule ids of the ``TODO(delta ...)`` markers still present in a port's Python files."""
    texts = [read_port_file(path) for path in sorted(port_dir.rglob("*.py")) if not path.is_dir()]
    return list(dict.fromkeys(rule for text in texts for rule in open_delta_rules(text)))
