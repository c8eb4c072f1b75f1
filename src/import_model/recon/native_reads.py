"""Which ``config.json`` keys a native MAX architecture's code never reads, found from its source without importing it.

A class MAX registers is served by MAX's own graph, which reads the keys its
code was written for and silently ignores the rest: a Llama with ``mlp_bias``
set, a Qwen2 with ``use_sliding_window`` switched on. Such a key changes what
transformers computes and nothing in MAX. :func:`unread_keys` finds them
cheaply: every name the architecture's code could read a key by (an attribute
access ``x.key`` or a string ``"key"`` anywhere in its files, the other
architectures it imports, and the ``max.pipelines`` helper modules it imports)
counts as read, so the list errs towards silence; ``import-model
check-native`` is the proof either way.

Only keys whose value changes the computation are candidates: keys
``config_map`` marks as needing graph code at this value, plus the
value-aware rows of :data:`ACTIVE_WHEN` (a window that is switched off or wider
than the context, per-layer kinds that are all full attention).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from import_model.recon import config_map
from import_model.recon.registry import architectures_dir, max_package_dir, parse_python

#: How many architecture packages deep the import closure is followed.
MAX_IMPORT_DEPTH = 4


@dataclass(frozen=True)
class UnreadKey:
    """A config key with an effect at its value that the native architecture's code never mentions."""

    key: str
    value: Any
    note: str

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, "note": self.note}


def _window_active(config: dict[str, Any]) -> bool:
    window, longest = config.get("sliding_window"), config.get("max_position_embeddings")
    if config.get("use_sliding_window") is False:  # qwen2/qwen3 keep a window they do not use when switched off
        return False
    return isinstance(window, int) and not isinstance(window, bool) and window > 0 and \
        (not isinstance(longest, int) or window < longest)


def _some_layer_not_full(config: dict[str, Any]) -> bool:
    kinds = config.get("layer_types")
    return isinstance(kinds, list) and any(kind != "full_attention" for kind in kinds)


def _window_layers_active(config: dict[str, Any]) -> bool:
    layers, total = config.get("max_window_layers"), config.get("num_hidden_layers")
    return bool(config.get("use_sliding_window")) and isinstance(layers, int) and \
        (not isinstance(total, int) or layers < total)


def _head_dim_differs(config: dict[str, Any]) -> bool:
    head, hidden, heads = config.get("head_dim"), config.get("hidden_size"), config.get("num_attention_heads")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (head, hidden, heads)):
        return False
    return head != hidden // heads


#: Keys whose effect depends on other keys (or whose table role says "wired" when a native may still skip them):
#: key -> does the value change the computation for this config.
ACTIVE_WHEN: dict[str, tuple[Callable[[dict[str, Any]], bool], str]] = {
    # mistral, qwen2, qwen3, phi3, gemma2/3: a window narrower than the context (and switched on, for qwen2/qwen3)
    "sliding_window": (_window_active, "transformers masks every token older than the window"),
    # qwen2, qwen3, gemma3, ministral: per-layer attention kinds, a no-op when every layer is full attention
    "layer_types": (_some_layer_not_full, "per-layer attention kind: some layers are not full attention"),
    # qwen2, qwen3: where full attention starts, only with use_sliding_window on
    "max_window_layers": (_window_layers_active, "layers from this index on use the sliding window"),
    # llama, mistral, qwen3, gemma: an explicit head width other than hidden_size / heads
    "head_dim": (_head_dim_differs, "head width other than hidden_size / num_attention_heads"),
}


#: Weights a switch key adds in transformers' modeling code, by name: a native graph that never reads the key
#: builds no place for them, so they go unread. ``check-native``'s dry build lists the real ones.
KEY_WEIGHTS: dict[str, re.Pattern[str]] = {
    # llama, mistral-style MLPs with mlp_bias: gate/up/down biases
    "mlp_bias": re.compile(r"\.mlp\.\w+\.bias$"),
    # llama, granite, olmo with attention_bias: q/k/v/o biases
    "attention_bias": re.compile(r"\.self_attn\.\w+\.bias$"),
}


def weights_of_unread_keys(keys: list[UnreadKey], names: Iterable[str]) -> list[str]:
    """Checkpoint tensors that come with the unread switch keys (by name, per :data:`KEY_WEIGHTS`)."""
    patterns = [KEY_WEIGHTS[k.key] for k in keys if k.key in KEY_WEIGHTS]
    return sorted(name for name in names if any(p.search(name) for p in patterns))


def unread_keys(slug: str, config: dict[str, Any]) -> list[UnreadKey]:
    """Top-level keys of ``config`` that change the computation and that native ``slug``'s code never reads."""
    read = names_read(slug)
    aliases = attribute_aliases(config.get("model_type"))
    found = []
    for row in config_map.map_config(config):
        if "." in row.key or row.key in read or aliases.get(row.key, frozenset()) & read:
            continue
        special = ACTIVE_WHEN.get(row.key)
        if special is not None:
            if special[0](config):
                found.append(UnreadKey(row.key, row.value, special[1]))
        elif row.role == config_map.GRAPH:
            found.append(UnreadKey(row.key, row.value, row.note))
    return found


def attribute_aliases(model_type: Any) -> dict[str, frozenset[str]]:
    """``{stored key: other names}`` from the transformers config class's ``attribute_map``.

    MAX reads the loaded ``AutoConfig``, where ``config.num_experts`` answers from a stored
    ``num_local_experts`` (Qwen3-MoE), so a read under either name reads the key.
    """
    from transformers import CONFIG_MAPPING

    try:
        mapping = getattr(CONFIG_MAPPING[str(model_type)], "attribute_map", None) or {}
    except (KeyError, ImportError, AttributeError):
        return {}
    aliases: dict[str, set[str]] = {}
    for alias, stored in mapping.items():
        if isinstance(alias, str) and isinstance(stored, str):
            aliases.setdefault(stored, set()).add(alias)
    return {key: frozenset(names) for key, names in aliases.items()}


@cache
def names_read(slug: str) -> frozenset[str]:
    """Every attribute name and identifier-like string in the code native ``slug`` runs (empty if it is missing)."""
    names: set[str] = set()
    for path, symbols in source_files(slug):
        tree = parse_python(path)
        if tree is None:
            continue
        nodes = [tree] if symbols is None else [n for n in tree.body if getattr(n, "name", None) in symbols]
        for node in (sub for top in nodes for sub in ast.walk(top)):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                names.add(node.value)
            elif isinstance(node, ast.keyword) and node.arg:  # dict(key=...) lookups and config(**{...}) fields
                names.add(node.arg)
    return frozenset(names)


def source_files(slug: str) -> list[tuple[Path, frozenset[str] | None]]:
    """The architecture's own files and the architectures it imports (transitively), whole; and from the
    ``max.pipelines`` helper modules it imports, the functions and classes it imports by name.

    A helper module such as ``lib/config/model_config.py`` also defines pipeline settings that share a config
    key's name (``sliding_window`` there is a serving flag), so only the imported definitions count.
    """
    root = architectures_dir()
    seen_dirs: set[str] = set()
    files: list[tuple[Path, frozenset[str] | None]] = []
    helpers: dict[Path, set[str]] = {}
    pending = [(slug, 0)]
    while pending:
        name, depth = pending.pop()
        folder = root / name
        if name in seen_dirs or not folder.is_dir() or depth > MAX_IMPORT_DEPTH:
            continue
        seen_dirs.add(name)
        for path in sorted(folder.rglob("*.py")):
            files.append((path, None))
            for module, symbols in _imported_modules(path, folder):
                other = _architecture_of(module)
                if other is not None:
                    pending.append((other, depth + 1))
                elif (helper := _helper_file(module)) is not None:
                    helpers.setdefault(helper, set()).update(symbols)
    return files + [(path, frozenset(symbols)) for path, symbols in helpers.items()]


def _imported_modules(path: Path, package: Path) -> list[tuple[str, list[str]]]:
    """Dotted ``max.…`` names of the modules ``path`` imports from (relative imports resolved), with the names."""
    tree = parse_python(path)
    if tree is None:
        return []
    here = ["max", "pipelines", "architectures", package.name, *path.parent.relative_to(package).parts]
    modules = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
        elif node.module and node.module.startswith("max."):
            module = node.module
        else:
            continue
        modules.append((module, [alias.name for alias in node.names]))
    return modules


def _architecture_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[:3] == ["max", "pipelines", "architectures"] and len(parts) > 3:
        return parts[3]
    return None


def _helper_file(module: str) -> Path | None:
    """The file of a ``max.pipelines`` module (a module, not a package's ``__init__``, which only re-exports)."""
    parts = module.split(".")
    if parts[:2] != ["max", "pipelines"]:
        return None
    path = max_package_dir().joinpath(*parts[1:]).with_suffix(".py")
    return path if path.is_file() else None
