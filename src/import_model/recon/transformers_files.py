"""Where the installed transformers keeps its files, and its ``auto/`` tables, read without importing it.

Importing transformers costs seconds and hundreds of MiB; the recon commands
(``check-walls``, ``inspect``) only need to find a family's folder and the
model types transformers implements, so they parse the source instead.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from functools import cache
from pathlib import Path
from typing import Any

#: Names a model type, module or class may take before it is used in a path.
SAFE_NAME = re.compile(r"[A-Za-z0-9_]{1,80}")
#: Larger source files are not parsed (no modeling file of transformers comes near it).
MAX_FILE_BYTES = 4 * 1024 * 1024


@cache
def transformers_models_dir() -> Path | None:
    """``transformers/models`` of the installed package, found without importing it."""
    spec = importlib.util.find_spec("transformers")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "models"
    return path if path.is_dir() else None


@cache
def transformers_version() -> str:
    root = transformers_models_dir()
    if root is None:
        return "none"
    match = re.search(r'__version__\s*=\s*"([^"]+)"', (root.parent / "__init__.py").read_text(errors="replace"))
    return match.group(1) if match else "unknown"


@cache
def auto_tables(file_name: str) -> dict[str, dict[str, Any]]:
    """Every ``*_MAPPING_NAMES = OrderedDict([...])`` table of an ``auto/`` module, read as literals."""
    root = transformers_models_dir()
    tree = parse_file(root / "auto" / file_name) if root else None
    tables: dict[str, dict[str, Any]] = {}
    for node in tree.body if tree else []:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        name, value = node.targets[0].id, node.value
        if isinstance(value, ast.Call) and value.args:  # OrderedDict([...])
            value = value.args[0]
        try:
            literal = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, RecursionError):
            continue
        if isinstance(literal, (list, tuple)):
            literal = dict(item for item in literal if isinstance(item, tuple) and len(item) == 2)
        if isinstance(literal, dict):
            tables[name] = literal
    return tables


def module_name(model_type: str) -> str | None:
    """The ``transformers/models/<name>`` folder of a model_type (``gemma3_text`` -> ``gemma3``)."""
    if not isinstance(model_type, str) or not SAFE_NAME.fullmatch(model_type.replace("-", "_")):
        return None
    special = auto_tables("auto_mappings.py").get("SPECIAL_MODEL_TYPE_TO_MODULE_NAME", {})
    name = special.get(model_type, model_type).replace("-", "_")
    return name if SAFE_NAME.fullmatch(name) else None


def parse_file(path: Path) -> ast.Module | None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        return ast.parse(path.read_text(errors="replace"))
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def known_model_type(model_type: object) -> bool:
    """A model type the installed transformers implements itself (False if its files cannot be read)."""
    return isinstance(model_type, str) and model_type in auto_tables("auto_mappings.py").get("CONFIG_MAPPING_NAMES", {})
