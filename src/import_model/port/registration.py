"""What a port's registration says, read statically (its ``SupportedArchitecture`` call), never imported."""

from __future__ import annotations

import ast
from pathlib import Path

from import_model.recon import registry


def port_encodings(port_dir: Path) -> tuple[str | None, list[str]]:
    """``(default, supported)`` encodings of the port's ``SupportedArchitecture``, read without importing it.

    A scaffold that inherits them (``supported_encodings=donor_arch.supported_encodings``) is followed into
    the donor's own ``arch.py`` in the installed MAX.
    """
    trees = _parsed(sorted(port_dir.glob("*.py")))
    call = next((n for t in trees for n in ast.walk(t) if isinstance(n, ast.Call)
                 and getattr(n.func, "id", getattr(n.func, "attr", None)) == "SupportedArchitecture"), None)
    if call is None:
        return None, []
    default = _arch_keyword(call, "default_encoding", trees)
    supported = _arch_keyword(call, "supported_encodings", trees)
    is_collection = isinstance(supported, (set, list, tuple, frozenset, dict))
    supported_list = sorted(str(s) for s in supported) if is_collection else []  # type: ignore[union-attr]
    return (default if isinstance(default, str) else None), supported_list


def _parsed(paths: list[Path]) -> list[ast.Module]:
    return [t for t in (registry.parse_python(p) for p in paths) if t is not None]


def _arch_keyword(call: ast.Call, key: str, trees: list[ast.Module], depth: int = 0) -> object:
    """A keyword of a ``SupportedArchitecture(...)`` call, following ``donor_arch.<key>`` into MAX once."""
    node = next((kw.value for kw in call.keywords if kw.arg == key), None)
    if node is None:
        return None
    donor = _native_arch_import(node, trees) if depth == 0 else None
    if donor is not None:
        donor_trees, donor_call = donor
        return _arch_keyword(donor_call, key, donor_trees, depth + 1)
    return _resolve(node, trees)


def _native_arch_import(node: ast.expr, trees: list[ast.Module]) -> tuple[list[ast.Module], ast.Call] | None:
    """For ``name.attr`` where ``name`` is imported from ``max.pipelines.architectures.<slug>.<module>``."""
    if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
        return None
    prefix = "max.pipelines.architectures."
    for tree in trees:
        for stmt in ast.walk(tree):
            if not (isinstance(stmt, ast.ImportFrom) and (stmt.module or "").startswith(prefix)):
                continue
            for alias in stmt.names:
                if (alias.asname or alias.name) != node.value.id:
                    continue
                parts = (stmt.module or "")[len(prefix):].split(".")
                path = registry.architectures_dir().joinpath(*parts).with_suffix(".py")
                call = registry.assigned_call(registry.parse_python(path), alias.name, "SupportedArchitecture")
                return (_parsed(sorted(path.parent.glob("*.py"))), call) if call is not None else None
    return None


def _resolve(node: ast.expr, trees: list[ast.Module]) -> object:
    """A literal, or ``Class.ATTR`` looked up in the port's files, then in MAX's architectures."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        pass
    if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
        return None
    found = registry.class_attribute(trees, node.value.id, node.attr)
    if found is not None:
        return found
    needle = f"class {node.value.id}("
    native = [p for p in registry.architectures_dir().glob("*/*.py") if needle in p.read_text(errors="replace")]
    return registry.class_attribute([t for t in (registry.parse_python(p) for p in native) if t is not None], node.value.id,
                                    node.attr)
