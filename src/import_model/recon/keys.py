"""Checkpoint key listings: per-layer patterns, totals, and memory at each MAX encoding."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from import_model.source.checkpoint import Checkpoint
from import_model.source.safetensors_header import TensorInfo

_INDEX = re.compile(r"(?<=\.)\d+(?=\.|$)")

#: Bytes per weight for each MAX encoding (block formats include their scales).
ENCODING_BYTES_PER_PARAM: dict[str, float] = {
    "float32": 4.0,
    "bfloat16": 2.0,
    "float16": 2.0,
    "float8_e4m3fn": 1.0,
    "q6_k": 210 / 256,
    "q4_k": 144 / 256,
    "q4_0": 18 / 32,
    "gptq": 0.5 + 4 / 128,
    "float4_e2m1fnx2": 0.5 + 1 / 16,
}

#: One GPU the plan compares against (an 80 GB H100 leaves about 72 GiB for weights and cache).
GPU_BUDGET_BYTES = 72 * 1024**3


@dataclass
class KeyPattern:
    pattern: str
    count: int
    shapes: list[tuple[int, ...]]
    dtypes: list[str]
    params: int

    @property
    def shape_text(self) -> str:
        return "x".join(map(str, self.shapes[0])) if len(self.shapes) == 1 else "varies"

    def as_dict(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "count": self.count,
            "shape": list(self.shapes[0]) if len(self.shapes) == 1 else None,
            "dtypes": self.dtypes,
            "params": self.params,
        }


def key_pattern(name: str) -> str:
    """``model.layers.7.mlp.experts.3.w1`` -> ``model.layers.{i}.mlp.experts.{j}.w1``."""
    letters = iter("ijklmn")
    return _INDEX.sub(lambda _m: "{" + next(letters, "x") + "}", name)


def summarize_keys(tensors: list[TensorInfo]) -> list[KeyPattern]:
    """Collapse per-layer (and per-expert) keys into one row each, in first-seen order."""
    rows: dict[str, KeyPattern] = {}
    for tensor in tensors:
        pattern = key_pattern(tensor.name)
        row = rows.get(pattern)
        if row is None:
            row = rows[pattern] = KeyPattern(pattern, 0, [], [], 0)
        row.count += 1
        row.params += tensor.numel
        if tensor.shape not in row.shapes:
            row.shapes.append(tensor.shape)
        if tensor.dtype not in row.dtypes:
            row.dtypes.append(tensor.dtype)
    return list(rows.values())


def select_keys(checkpoint: Checkpoint, prefixes: list[str] | None) -> list[TensorInfo]:
    tensors = sorted(checkpoint.tensors.values(), key=lambda t: _natural_key(t.name))
    if prefixes:
        tensors = [t for t in tensors if any(t.name.startswith(p) for p in prefixes)]
    return tensors


def _natural_key(name: str) -> list[Any]:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in name.split(".")]


def memory_estimates(parameter_count: int, config: dict[str, Any]) -> list[dict[str, Any]]:
    """Weight bytes at each encoding, and whether they fit one GPU with room for a 8k-token KV cache."""
    kv_per_token = kv_cache_bytes_per_token(config)
    rows = []
    for encoding, per_param in ENCODING_BYTES_PER_PARAM.items():
        weights = int(parameter_count * per_param)
        kv_8k = kv_per_token * 8192 if kv_per_token else 0
        rows.append({
            "encoding": encoding,
            "weight_bytes": weights,
            "kv_cache_bytes_8k_tokens": kv_8k,
            "fits_one_80gb_gpu": weights + kv_8k <= GPU_BUDGET_BYTES,
        })
    return rows


def kv_cache_bytes_per_token(config: dict[str, Any], bytes_per_value: int = 2) -> int:
    """K and V for one token across all layers, in bfloat16; 0 when the config lacks the numbers."""
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    layers = _int(text, "num_hidden_layers", "n_layer", "num_layers")
    heads = _int(text, "num_attention_heads", "n_head")
    kv_heads = _int(text, "num_key_value_heads", "num_kv_heads") or heads
    hidden = _int(text, "hidden_size", "n_embd", "d_model")
    head_dim = _int(text, "head_dim") or (hidden // heads if hidden and heads else 0)
    return 2 * layers * kv_heads * head_dim * bytes_per_value


def _int(config: dict[str, Any], *names: str) -> int:
    for name in names:
        value = config.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**40:
            return value
    return 0


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def human_count(count: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.2f}{unit}"
    return str(int(count))
