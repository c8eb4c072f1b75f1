"""Tiny random-weight "twins" of causal LMs, for proving parity on CPU in seconds.

A twin keeps the source model's architecture class and every behavioural option (rotary style,
norms, biases, softcaps, sliding-window pattern, MoE routing, ...) but shrinks the sizes. The
size rules live in one table, ``SHRINK_RULES`` (config field -> rule), read by ``shrink_config``.
Weights are seeded and initialised by us (not by transformers) so that biases and norm weights
are non-trivial: a port that forgets a bias or a norm weight must fail parity on the twin.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from import_model.errors import UserError
from import_model.safe_io import (
    check_output_root,
    directory_identity,
    file_sha256,
    foreign_entries,
    is_written_here,
    read_marker,
)
from import_model.safe_output import first_non_finite, strict_json, visible

# Twin sizes. Hidden size is derived: heads * HEAD_DIM, so a source with hidden == heads * head_dim keeps that.
HEAD_DIM = 16
WIDE_HEAD_DIM = 32  # used when the source's head_dim * heads != hidden_size, to keep that mismatch
HEADS = 4
GQA_KV_HEADS = 2
INTERMEDIATE = 160  # never equal to the hidden size, so a transposed MLP weight cannot pass
MOE_INTERMEDIATE = 48
SHARED_EXPERT_INTERMEDIATE = 96
EXPERTS = 4
TOP_K = 2
SLIDING_WINDOW = 128  # crossed by verify's long prompt; MAX's CPU flash attention needs a window >= 128
VOCAB = 512
MIN_LAYERS = 2
MAX_DEFAULT_LAYERS = 8
MAX_PARAMETERS = 20_000_000  # a twin is tiny; more means a size field escaped the table
BIAS_NOISE = 0.1  # std of the noise added to 1-D parameters (biases, norm weights)

SPECIAL_TOKENS = ("<|pad|>", "<|bos|>", "<|eos|>", "<|unk|>", "<|im_start|>", "<|im_end|>")
ROLE_IDS = {"pad": 0, "bos": 1, "eos": 2, "unk": 3}
END_OF_TURN_ID = 5
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MARKER = "twin.json"
# Bump when the twin recipe changes, so cached twins are rebuilt.
RECIPE_VERSION = 1

# A nested dict with one of these is a sub-model config (vision tower, dbrx ffn_config...), not an option dict.
SUBCONFIG_SIZE_KEYS = frozenset(
    {"hidden_size", "num_hidden_layers", "vocab_size", "intermediate_size", "ffn_hidden_size", "d_model", "n_layers"}
)

# Top-level keys never carried into a twin: the twin is plain float32, native transformers code, no hub identity.
DROPPED_KEYS = ("auto_map", "quantization_config", "_name_or_path", "transformers_version", "torch_dtype")


@dataclass(frozen=True)
class Rule:
    """How one config field shrinks: ``kind`` names a function in ``_RULE_FUNCS``; ``arg`` parameterises it."""

    kind: str
    arg: Any = None


# Application order matters: later rules may read what earlier ones produced (e.g. kv heads after heads).
# Keys are canonical transformers names; a config class's ``attribute_map`` resolves aliases (n_layer, n_head...).
SHRINK_RULES: dict[str, Rule] = {
    "num_hidden_layers": Rule("layers"),
    "decoder_layers": Rule("layers"),  # bart-style decoders (encoder_layers is the num_hidden_layers alias)
    "num_attention_heads": Rule("heads"),
    "decoder_attention_heads": Rule("heads"),
    "num_key_value_heads": Rule("kv_heads"),
    "num_kv_heads": Rule("kv_heads"),  # falcon (read only with new_decoder_architecture or without multi_query)
    # Multi-head latent attention (DeepSeek-style); None (e.g. no q LoRA) stays None. Before head_dim,
    # which follows qk_rope_head_dim when the source ties them.
    "kv_lora_rank": Rule("fixed", 32),
    "q_lora_rank": Rule("fixed", 48),
    "adapter_rank": Rule("fixed", 8),  # Zamba2's shared-attention LoRA adapters
    "qk_rope_head_dim": Rule("fixed", 8),
    "qk_nope_head_dim": Rule("fixed", HEAD_DIM),
    "v_head_dim": Rule("fixed", HEAD_DIM),
    "qk_head_dim": Rule("sum", ("qk_nope_head_dim", "qk_rope_head_dim")),
    "head_dim": Rule("head_dim"),
    "hidden_size": Rule("hidden"),
    "attention_hidden_size": Rule("follow_hidden"),  # rwkv: defaults to hidden_size
    "hidden_size_global": Rule("hidden"),  # BLT: the global transformer's width, seen from its byte encoder
    "encoder_hash_byte_group_vocab": Rule("fixed", VOCAB),  # BLT: the byte n-gram hash table
    "word_embed_proj_dim": Rule("follow_hidden"),  # OPT: projections in and out only where it differs
    "global_head_dim": Rule("head_dim_multiple"),  # gemma4: global layers use a multiple of head_dim
    "hidden_size_per_layer_input": Rule("fixed", HEAD_DIM),  # gemma3n / gemma4 per-layer embeddings
    "vocab_size_per_layer_input": Rule("fixed", VOCAB),
    "intermediate_size": Rule("fixed", INTERMEDIATE),
    "n_inner": Rule("fixed", INTERMEDIATE),  # gpt2-style; None means 4 * hidden and stays None
    "ffn_dim": Rule("fixed", INTERMEDIATE),  # opt-style
    "dff": Rule("fixed", INTERMEDIATE),  # CTRL
    # RoCBert's shape and pronunciation tables
    "shape_vocab_size": Rule("fixed", 64),
    "shape_embed_dim": Rule("fixed", 16),
    "pronunciation_vocab_size": Rule("fixed", 64),
    "pronunciation_embed_dim": Rule("fixed", 16),
    "ffn_hidden_size": Rule("fixed", INTERMEDIATE),
    "decoder_ffn_dim": Rule("fixed", INTERMEDIATE),
    "encoder_ffn_dim": Rule("fixed", INTERMEDIATE),
    "moe_intermediate_size": Rule("fixed", MOE_INTERMEDIATE),
    "expert_ffn_hidden_size": Rule("fixed", MOE_INTERMEDIATE),
    "shared_expert_intermediate_size": Rule("fixed", SHARED_EXPERT_INTERMEDIATE),
    "moe_shared_expert_intermediate_size": Rule("fixed", SHARED_EXPERT_INTERMEDIATE),
    "shared_intermediate_size": Rule("fixed", SHARED_EXPERT_INTERMEDIATE),
    "vocab_size": Rule("fixed", VOCAB),
    # MoE: fewer experts but still a real choice (top-k < experts).
    "num_experts": Rule("experts", EXPERTS),
    "num_local_experts": Rule("experts", EXPERTS),
    "n_routed_experts": Rule("experts", EXPERTS),
    "moe_num_experts": Rule("experts", EXPERTS),
    "zero_expert_num": Rule("cap", 2),
    "num_experts_per_tok": Rule("top_k", TOP_K),
    "moe_topk": Rule("top_k", TOP_K),
    "moe_top_k": Rule("top_k", TOP_K),  # DBRX's ffn_config
    "n_group": Rule("cap", 2),  # must divide the expert count
    "topk_group": Rule("cap", 1),
    "n_shared_experts": Rule("cap", 1),
    # State-space blocks of hybrid models: heads * head dim must equal expand * hidden.
    "mamba_n_heads": Rule("fixed", HEADS),
    "mamba_d_head": Rule("ssm_head_dim", "mamba_n_heads"),
    "mamba_d_state": Rule("fixed", 16),
    "mamba_dt_rank": Rule("fixed", 8),
    "mamba_chunk_size": Rule("cap", 16),
    # Attention windows: keep them, but small enough to bite on short prompts (one that never bites stays so).
    "sliding_window": Rule("window", SLIDING_WINDOW),
    "window_size": Rule("window", SLIDING_WINDOW),  # GPT-Neo's local layers
    "attention_chunk_size": Rule("window", SLIDING_WINDOW),
    # Per-layer structure: lists are cut to the twin's depth, periods are kept and size the default depth.
    "layer_types": Rule("per_layer"),
    "no_rope_layers": Rule("per_layer"),
    "block_types": Rule("per_layer"),
    "layers_block_type": Rule("per_layer"),
    "mlp_only_layers": Rule("layer_ids"),
    "attn_layer_indices": Rule("layer_ids"),
    "max_window_layers": Rule("layer_index"),
    "num_kv_shared_layers": Rule("shared_suffix"),  # Gemma 3n: after the per-layer lists
    "first_k_dense_replace": Rule("dense_prefix"),
    "num_dense_layers": Rule("dense_prefix"),
    "attn_layer_offset": Rule("dense_prefix"),
    "expert_layer_offset": Rule("dense_prefix"),
    "sliding_window_pattern": Rule("period"),
    "_sliding_window_pattern": Rule("period"),
    "no_rope_layer_interval": Rule("period"),
    "decoder_sparse_step": Rule("period"),
    "interleave_moe_layer_step": Rule("period"),
    "attn_layer_period": Rule("period"),
    "expert_layer_period": Rule("period"),
    # Sizes that follow the head dimension.
    "query_pre_attn_scalar": Rule("follow_head_dim"),
    "rotary_dim": Rule("rotary_dim"),  # gpt-j / codegen: absolute rotary width
    "rope_parameters": Rule("rope"),  # longrope factor lists and mrope sections are per rotary frequency
    "rope_scaling": Rule("rope"),
    # Special tokens point into the twin tokenizer (equalities like pad == eos are kept).
    "bos_token_id": Rule("token"),
    "eos_token_id": Rule("token"),
    "pad_token_id": Rule("token"),
}


@dataclass(frozen=True)
class TwinInfo:
    """What ``make_twin`` built. ``shrunk`` maps each changed config field to ``(old, new)``."""

    path: Path
    model_type: str
    architecture: str
    num_layers: int
    num_parameters: int
    shrunk: dict[str, tuple[Any, Any]] = field(default_factory=dict)


@dataclass
class _Ctx:
    """Inputs of one shrink: the normalised source dict, the twin built so far, alias map, twin depth."""

    src: dict[str, Any]
    out: dict[str, Any]
    aliases: dict[str, str]
    layers: int

    def key(self, name: str) -> str:
        return self.aliases.get(name, name)

    def src_get(self, name: str) -> Any:
        return self.src.get(self.key(name))

    def out_get(self, name: str) -> Any:
        return self.out.get(self.key(name))


# --------------------------------------------------------------------------- rules


def _src_heads(ctx: _Ctx) -> tuple[int, int]:
    heads = ctx.src_get("num_attention_heads")
    heads = heads if isinstance(heads, int) and heads > 0 else HEADS
    kv = next((v for v in map(ctx.src_get, ("num_key_value_heads", "num_kv_heads")) if isinstance(v, int) and v > 0),
              heads)
    return heads, kv


def _twin_heads(ctx: _Ctx) -> int:
    heads, kv = _src_heads(ctx)
    if 1 < kv < heads and heads % kv == 0:
        return GQA_KV_HEADS * min(heads // kv, 4)
    return HEADS


def _twin_kv_heads(ctx: _Ctx) -> int:
    heads, kv = _src_heads(ctx)
    if kv == heads:
        return _twin_heads(ctx)
    if kv == 1 or heads % kv:
        return 1
    return GQA_KV_HEADS


def _src_head_dim(ctx: _Ctx) -> float:
    explicit = ctx.src_get("head_dim")
    if isinstance(explicit, int) and explicit > 0:
        return explicit
    hidden = ctx.src_get("hidden_size")
    return hidden / _src_heads(ctx)[0] if isinstance(hidden, int) else HEAD_DIM


def _twin_head_dim(ctx: _Ctx) -> int:
    """Explicit head_dim if the source has one, else hidden / heads (as transformers derives it)."""
    explicit = ctx.out_get("head_dim")
    if isinstance(explicit, int) and explicit > 0:
        return explicit
    hidden = ctx.out_get("hidden_size")
    return hidden // _twin_heads(ctx) if isinstance(hidden, int) else HEAD_DIM  # a sub-config with no width


def _rule_head_dim(value: Any, ctx: _Ctx, arg: Any) -> Any:
    """16, or 32 when the source's head_dim * heads != hidden; None (derived) becomes the derived 16."""
    if value is None:
        return HEAD_DIM
    if not isinstance(value, int):
        return value
    if value == ctx.src_get("qk_rope_head_dim"):  # MLA configs tie head_dim to the rotary part
        return ctx.out_get("qk_rope_head_dim")
    hidden = ctx.src_get("hidden_size")
    matched = not isinstance(hidden, int) or value * _src_heads(ctx)[0] == hidden
    return HEAD_DIM if matched else WIDE_HEAD_DIM


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _rule_fixed(value: Any, ctx: _Ctx, arg: Any) -> Any:
    """Ints become ``arg``; a per-layer list of ints (gemma3n) becomes ``arg`` for every twin layer."""
    if isinstance(value, list) and value and all(_is_int(v) for v in value):
        return [arg] * ctx.layers
    return arg if _is_int(value) else value


def _rule_sum(value: Any, ctx: _Ctx, arg: Any) -> Any:
    parts = [ctx.out_get(name) for name in arg]
    return sum(parts) if _is_int(value) and all(_is_int(p) for p in parts) else value


def _rule_ssm_head_dim(value: Any, ctx: _Ctx, arg: Any) -> Any:
    """SSM head dim such that heads * head_dim == expand * hidden, as mamba blocks require."""
    heads, expand = ctx.out_get(arg), ctx.src_get("mamba_expand") or 2
    return expand * ctx.out_get("hidden_size") // heads if _is_int(value) and _is_int(heads) else value


def _rule_cap(value: Any, ctx: _Ctx, arg: Any) -> Any:
    return min(value, arg) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else value


def _rule_window(value: Any, ctx: _Ctx, arg: Any) -> Any:
    """A window as long as the whole context never masks anything (Phi-3.5: 262144 over 131072): keep it inert."""
    context = ctx.src_get("max_position_embeddings")
    if isinstance(value, int) and isinstance(context, int) and value >= context > 0:
        return value
    return _rule_cap(value, ctx, arg)


def _rule_experts(value: Any, ctx: _Ctx, arg: Any) -> Any:
    return min(value, arg) if isinstance(value, int) and value > 1 else value


def _rule_top_k(value: Any, ctx: _Ctx, arg: Any) -> Any:
    if not isinstance(value, int) or value < 1:
        return value
    experts = [ctx.out_get(name) for name, rule in SHRINK_RULES.items() if rule.kind == "experts"]
    experts = [e for e in experts if _is_int(e) and e > 1]
    bound = min(experts) - 1 if experts else arg
    return max(1, min(value, arg, bound))


def _rule_per_layer(value: Any, ctx: _Ctx, arg: Any) -> Any:
    """Keep the first layers' entries; a shorter cyclic pattern (recurrent_gemma block_types) repeats."""
    if not isinstance(value, list) or not value:
        return value
    return [value[i % len(value)] for i in range(ctx.layers)]


def _rule_layer_ids(value: Any, ctx: _Ctx, arg: Any) -> Any:
    return [i for i in value if i < ctx.layers] if isinstance(value, list) else value


def _rule_layer_index(value: Any, ctx: _Ctx, arg: Any) -> Any:
    return min(value, ctx.layers) if isinstance(value, int) else value


def _rule_shared_suffix(value: Any, ctx: _Ctx, arg: Any) -> Any:
    """Last layers that reuse earlier layers' KV (Gemma 3n): as many as leave every layer kind in the layers
    before them, which compute their own."""
    if not isinstance(value, int) or value <= 0:
        return value
    kinds = ctx.out_get("layer_types")
    own = _prefix_cover(kinds[:ctx.layers]) if isinstance(kinds, list) and kinds else 1
    return max(0, min(value, ctx.layers - own))


def _rule_dense_prefix(value: Any, ctx: _Ctx, arg: Any) -> Any:
    return min(value, ctx.layers - 1) if isinstance(value, int) and value > 0 else value


def _rule_keep(value: Any, ctx: _Ctx, arg: Any) -> Any:
    return value


def _rule_follow_head_dim(value: Any, ctx: _Ctx, arg: Any) -> Any:
    """A scalar equal to the source head_dim (or hidden/heads) becomes the twin's; others are kept."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return value
    src_heads = _src_heads(ctx)[0]
    hidden = ctx.src_get("hidden_size")
    if value == _src_head_dim(ctx):
        return _twin_head_dim(ctx)
    if isinstance(hidden, int) and value == hidden / src_heads:
        return ctx.out_get("hidden_size") // _twin_heads(ctx)
    return value


def _rule_follow_hidden(value: Any, ctx: _Ctx, arg: Any) -> Any:
    return ctx.out_get("hidden_size") if _is_int(value) and value == ctx.src_get("hidden_size") else value


def _rule_head_dim_multiple(value: Any, ctx: _Ctx, arg: Any) -> Any:
    if not _is_int(value):
        return value
    return max(2, round(value / _src_head_dim(ctx) * _twin_head_dim(ctx)))


def _rule_rotary_dim(value: Any, ctx: _Ctx, arg: Any) -> Any:
    if not isinstance(value, int) or value <= 0:
        return value
    fraction = min(1.0, value / _src_head_dim(ctx))
    return max(2, 2 * round(fraction * _twin_head_dim(ctx) / 2))


def _resample(values: list[Any], n: int) -> list[Any]:
    """Pick ``n`` evenly spaced entries, keeping the first and the last."""
    if n <= 1 or len(values) <= 1:
        return values[:n]
    return [values[round(i * (len(values) - 1) / (n - 1))] for i in range(n)]


def _shrink_rope_dict(rope: dict[str, Any], ctx: _Ctx) -> dict[str, Any]:
    if rope and all(isinstance(v, dict) for v in rope.values()):  # per layer type (gemma3)
        return {k: _shrink_rope_dict(v, ctx) for k, v in rope.items()}
    out = dict(rope)
    partial = rope.get("partial_rotary_factor", ctx.src_get("partial_rotary_factor"))
    partial = partial if isinstance(partial, (int, float)) else 1.0
    half = max(1, int(_twin_head_dim(ctx) * partial) // 2)
    for name in ("short_factor", "long_factor"):
        if isinstance(rope.get(name), list):
            out[name] = _resample(rope[name], half)
    section = rope.get("mrope_section")
    if isinstance(section, list) and section and sum(section) > 0:
        scaled = [max(1, round(s * half / sum(section))) for s in section]
        scaled[-1] += half - sum(scaled)
        out["mrope_section"] = scaled
    return out


def _rule_rope(value: Any, ctx: _Ctx, arg: Any) -> Any:
    return _shrink_rope_dict(value, ctx) if isinstance(value, dict) else value


def _twin_token_id(value: int, ctx: _Ctx) -> int:
    """Map a source special-token id onto the twin tokenizer, keeping equalities between roles."""
    for role in ("bos", "eos", "pad"):
        src = ctx.src_get(f"{role}_token_id")
        first = src[0] if isinstance(src, list) and src else src
        if value == first:
            return ROLE_IDS[role]
    return END_OF_TURN_ID


def _rule_token(value: Any, ctx: _Ctx, arg: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return _twin_token_id(value, ctx)
    if isinstance(value, list):
        mapped = [_twin_token_id(v, ctx) for v in value if isinstance(v, int)]
        return list(dict.fromkeys(mapped))
    return value


_RULE_FUNCS: dict[str, Callable[[Any, _Ctx, Any], Any]] = {
    "layers": lambda value, ctx, arg: ctx.layers,
    "heads": lambda value, ctx, arg: _twin_heads(ctx),
    "kv_heads": lambda value, ctx, arg: _twin_kv_heads(ctx),  # None means "as many as heads"
    "head_dim": _rule_head_dim,
    "hidden": lambda value, ctx, arg: _twin_heads(ctx) * HEAD_DIM,
    "fixed": _rule_fixed,
    "sum": _rule_sum,
    "ssm_head_dim": _rule_ssm_head_dim,
    "cap": _rule_cap,
    "window": _rule_window,
    "experts": _rule_experts,
    "top_k": _rule_top_k,
    "per_layer": _rule_per_layer,
    "layer_ids": _rule_layer_ids,
    "layer_index": _rule_layer_index,
    "dense_prefix": _rule_dense_prefix,
    "shared_suffix": _rule_shared_suffix,
    "period": _rule_keep,
    "follow_head_dim": _rule_follow_head_dim,
    "rotary_dim": _rule_rotary_dim,
    "follow_hidden": _rule_follow_hidden,
    "head_dim_multiple": _rule_head_dim_multiple,
    "rope": _rule_rope,
    "token": _rule_token,
}


# --------------------------------------------------------------------------- config


def _prefix_cover(values: list[Any]) -> int:
    """Length of the shortest prefix that contains every distinct value (the pattern's period, roughly)."""
    seen: set[str] = set()
    wanted = {json.dumps(v, sort_keys=True) for v in values}
    for i, v in enumerate(values):
        seen.add(json.dumps(v, sort_keys=True))
        if seen == wanted:
            return i + 1
    return len(values)


def _per_layer_keys(src: dict[str, Any], aliases: dict[str, str], src_layers: int) -> list[str]:
    """Table rows of kind per_layer, plus any other top-level list exactly one entry per source layer."""
    keys = [aliases.get(k, k) for k, r in SHRINK_RULES.items() if r.kind == "per_layer"]
    ruled = {aliases.get(k, k) for k in SHRINK_RULES}
    extra = [
        k
        for k, v in src.items()
        if k not in ruled and isinstance(v, list) and src_layers > 1 and len(v) == src_layers and "token" not in k
    ]
    return [k for k in keys if k in src] + extra


def default_num_layers(src: dict[str, Any], aliases: dict[str, str]) -> int:
    """Fewest layers (>= 2) that still show every per-layer pattern of the source, up to MAX_DEFAULT_LAYERS."""
    src_layers = src.get(aliases.get("num_hidden_layers", "num_hidden_layers"))
    src_layers = src_layers if isinstance(src_layers, int) and src_layers > 0 else MIN_LAYERS
    need = MIN_LAYERS
    for key in _per_layer_keys(src, aliases, src_layers):
        if isinstance(src[key], list) and src[key]:
            need = max(need, _prefix_cover(src[key]))
    for name, rule in SHRINK_RULES.items():
        value = src.get(aliases.get(name, name))
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        if rule.kind == "period" and value > 1:
            need = max(need, value)
        elif rule.kind == "dense_prefix" and value > 0:
            need = max(need, value + 1)
    return min(need, MAX_DEFAULT_LAYERS, src_layers)


def shrink_config(src: dict[str, Any], aliases: dict[str, str], layers: int) -> tuple[dict[str, Any], dict]:
    """Apply ``SHRINK_RULES`` (and the per-layer-list fallback) to a normalised config dict.

    Returns the twin dict and ``{field: (old, new)}`` for every field that changed.
    """
    ctx = _Ctx(src=src, out=dict(src), aliases=aliases, layers=layers)
    for name, rule in SHRINK_RULES.items():
        key = ctx.key(name)
        if key in src:
            ctx.out[key] = _RULE_FUNCS[rule.kind](src[key], ctx, rule.arg)
    for key in _per_layer_keys(src, aliases, src.get(ctx.key("num_hidden_layers")) or 0):
        ctx.out[key] = _rule_per_layer(src[key], ctx, None)
    ruled = {ctx.key(name) for name in SHRINK_RULES}
    for key, value in src.items():  # other special-token ids must still index the twin vocab
        if key in ruled or not key.endswith(("_token_id", "_token_index")):
            continue
        if isinstance(value, int) and not isinstance(value, bool) and value >= VOCAB:
            ctx.out[key] = ROLE_IDS["unk"]
    for key in DROPPED_KEYS:
        ctx.out.pop(key, None)
    for key, value in src.items():  # sizes kept in sub-configs (DBRX's ffn_config, a vision tower): the same rules
        if isinstance(value, dict) and SUBCONFIG_SIZE_KEYS & value.keys():
            ctx.out[key] = {k: v for k, v in shrink_config(value, {}, layers)[0].items()
                            if k not in _GENERIC_CONFIG_KEYS or k in SUBCONFIG_SIZE_KEYS}
    changed = {k: (src.get(k), v) for k, v in ctx.out.items() if src.get(k) != v}
    changed.update({k: (src[k], None) for k in DROPPED_KEYS if src.get(k) and k != "transformers_version"})
    return ctx.out, changed


def _one_line(exc: BaseException, limit: int = 240) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _config_class(config: dict[str, Any]) -> type:
    from transformers import CONFIG_MAPPING

    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise UserError("config has no model_type; pass a transformers config.json of a causal language model")
    if model_type not in CONFIG_MAPPING:
        if config.get("auto_map"):
            raise UserError(
                f"model_type {model_type!r} needs the model's own remote code (auto_map); "
                "twins are built only for architectures that ship with transformers"
            )
        raise UserError(f"model_type {model_type!r} is not known to this transformers version; cannot build a twin")
    return CONFIG_MAPPING[model_type]


def _architecture(config: dict[str, Any], model_type: str) -> tuple[str, type]:
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    archs = config.get("architectures") or []
    archs = [archs] if isinstance(archs, str) else archs
    name = archs[0] if archs and isinstance(archs[0], str) else MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
    if not name:
        raise UserError(f"model_type {model_type!r} has no causal-LM class in transformers; cannot build a twin")
    cls = getattr(transformers, name, None)
    if cls is None and not config.get("auto_map") and MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type):
        # A class name transformers does not know (a renamed or private class) over a known model_type:
        # the weights are built by the model_type's own causal-LM class; the config keeps the declared name.
        cls = getattr(transformers, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type], None)
        return name, cls
    if cls is None:
        hint = " (it is remote code, see auto_map)" if config.get("auto_map") else ""
        raise UserError(f"architecture {name!r} is not a transformers class{hint}; cannot build a twin")
    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    if name not in causal and not name.endswith("ForCausalLM"):
        raise UserError(f"architecture {name!r} is not a causal language model; twins cover causal LMs only")
    return name, cls


#: Keys a transformers config writes whatever its class (``PretrainedConfig().to_dict()``'s, less ``model_type``,
#: with the older ``torch_dtype`` and ``torchscript`` and ``tie_word_embeddings``): some sub-config classes refuse
#: them (DBRX's).
_GENERIC_CONFIG_KEYS = frozenset({"_name_or_path", "output_attentions", "output_hidden_states", "return_dict",
                                  "torchscript", "dtype", "torch_dtype", "transformers_version", "architectures",
                                  "id2label", "label2id", "problem_type", "chunk_size_feed_forward",
                                  "tie_word_embeddings", "is_encoder_decoder"})


def _normalise(config: dict[str, Any], config_cls: type) -> dict[str, Any]:
    """Round-trip through the config class: legacy keys (rope_theta, rope_scaling...) become canonical."""
    nested = sorted(k for k, v in config.items() if isinstance(v, dict) and SUBCONFIG_SIZE_KEYS & v.keys())
    if "text_config" in nested:
        raise UserError(
            f"{config_cls.model_type} is a composite config ({', '.join(nested)}); "
            "build the twin from its text_config (the language model) instead"
        )
    raw = {k: v for k, v in config.items() if k not in ("auto_map", "quantization_config")}
    for key in nested:  # a sub-config class may refuse the generic keys another class's to_dict wrote (DBRX's)
        raw[key] = {k: v for k, v in raw[key].items() if k not in _GENERIC_CONFIG_KEYS or k in SUBCONFIG_SIZE_KEYS}
    try:
        parsed = config_cls.from_dict(raw)
    except Exception as exc:  # transformers raises many types for bad configs
        raise UserError(f"transformers rejects this {config_cls.model_type} config: {_one_line(exc)}") from exc
    normal = parsed.to_dict()
    for key in ("auto_map", "quantization_config"):
        if key in config:
            normal[key] = config[key]
    return normal


def build_twin_config(config: dict[str, Any], num_layers: int | None = None) -> tuple[Any, str, type, dict]:
    """Return (twin config object, architecture name, model class, shrunk fields) without touching disk."""
    config_cls = _config_class(config)
    arch_name, model_cls = _architecture(config, config_cls.model_type)
    src = _normalise(config, config_cls)
    aliases = dict(getattr(config_cls, "attribute_map", {}) or {})
    if num_layers is not None and num_layers < 1:
        raise UserError(f"num_layers must be at least 1, got {num_layers}")
    layers = num_layers or default_num_layers(src, aliases)
    twin, changed = shrink_config(src, aliases, layers)
    twin["architectures"] = [arch_name]
    twin["dtype"] = "float32"
    try:
        twin_config = config_cls.from_dict(twin)
    except Exception as exc:
        raise UserError(f"the shrunk {config_cls.model_type} config is invalid: {_one_line(exc)}") from exc
    return twin_config, arch_name, model_cls, changed


# --------------------------------------------------------------------------- weights


def _init_weights(model: Any, seed: int) -> None:
    """Seeded init: matrices ~ N(0, 1/fan_in), 1-D params (biases, norm weights) get noise on their default."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in model.named_parameters():
            if param.ndim >= 2:
                std = 1.0 / math.sqrt(param.shape[-1])
                param.copy_(torch.randn(param.shape, generator=gen, dtype=torch.float32) * std)
            elif param.ndim == 1:
                param.add_(torch.randn(param.shape, generator=gen, dtype=torch.float32) * BIAS_NOISE)


def _check_size(twin_config: Any, model_cls: type) -> None:
    """Count parameters on the meta device first, so a size field the table misses fails fast, not slowly."""
    import torch

    try:
        with torch.device("meta"):
            n_params = sum(p.numel() for p in model_cls(twin_config).parameters())
    except Exception as exc:  # the model code rejects this combination of options
        raise UserError(f"transformers cannot build a {model_cls.__name__} twin: {_one_line(exc)}") from exc
    if n_params > MAX_PARAMETERS:
        raise UserError(
            f"the {twin_config.model_type} twin would have {n_params:,} parameters; "
            "a size field of this config is missing from SHRINK_RULES"
        )


def _build_model(twin_config: Any, model_cls: type, seed: int) -> Any:
    import torch

    _check_size(twin_config, model_cls)
    torch.manual_seed(seed)
    model = model_cls(twin_config).to(torch.float32)
    _init_weights(model, seed)
    return model.eval()


# --------------------------------------------------------------------------- tokenizer

_CORPUS = """\
The quick brown fox jumps over the lazy dog. A tiny model is still a model: it has layers, heads and weights.
What is the capital of France? The capital of France is Paris. Berlin is the capital of Germany.
Hello, world! How are you today? I am fine, thank you. Please answer the question in one sentence.
def add(a, b):
    return a + b

for i in range(10):
    print(i * i)
Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 42 100 2024 3.14159 1e-5.
The user asked the assistant a question, and the assistant gave an answer with reasons.
Attention is computed between queries and keys; the values are mixed by the softmax of the scores.
Rotary position embeddings rotate pairs of channels by an angle that grows with the position.
Sliding window attention looks only at recent tokens, while global attention looks at all of them.
Experts in a mixture route each token to the top few experts chosen by a small router network.
"""


@lru_cache(maxsize=1)
def _base_tokenizer_json() -> str:
    """Byte-level BPE trained on the built-in corpus; trained once per process (the trainer is deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    return tok.to_str()


def _token_for(twin_id: Any, fallback: str) -> str:
    first = twin_id[0] if isinstance(twin_id, list) and twin_id else twin_id
    return SPECIAL_TOKENS[first] if isinstance(first, int) and first < len(SPECIAL_TOKENS) else fallback


def _build_tokenizer(twin_config: Any) -> Any:
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer.from_str(_base_tokenizer_json())
    bos = getattr(twin_config, "bos_token_id", None)
    if isinstance(bos, int):
        token = SPECIAL_TOKENS[bos]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{token} $A", pair=f"{token} $A {token} $B", special_tokens=[(token, bos)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=_token_for(bos, "<|bos|>"),
        eos_token=_token_for(getattr(twin_config, "eos_token_id", None), "<|eos|>"),
        pad_token=_token_for(getattr(twin_config, "pad_token_id", None), "<|pad|>"),
        unk_token="<|unk|>",
        extra_special_tokens=["<|im_start|>", "<|im_end|>"],
        chat_template=CHAT_TEMPLATE,
        model_max_length=getattr(twin_config, "max_position_embeddings", None) or 2048,
        add_bos_token=isinstance(bos, int),
    )


# --------------------------------------------------------------------------- disk


#: Names transformers of the supported versions write into a twin (with ``twin.json``): what a test may expect.
KNOWN_TWIN_FILES = frozenset({
    "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "chat_template.jinja", MARKER,
})


def _read_marker(output_dir: Path) -> dict[str, Any] | None:
    """``output_dir``'s ``twin.json``, None without one; a FIFO, an oversized or a damaged one is refused (exit 2)."""
    return read_marker(output_dir / MARKER, "twin marker",
                       f"{output_dir / MARKER} is not a twin marker import-model wrote; --force only replaces the "
                       "tool's own twins, so choose another output directory")


def _recorded_digests(marker: dict[str, Any], output_dir: Path) -> dict[str, tuple[int, str]]:
    """The size and SHA-256 the marker records for each twin file, refused unless well formed."""
    recorded = marker.get("digests")
    if isinstance(recorded, dict) and all(
            isinstance(name, str) and isinstance(entry, list) and len(entry) == 2
            and isinstance(entry[0], int) and isinstance(entry[1], str) for name, entry in recorded.items()):
        return {name: (entry[0], entry[1]) for name, entry in recorded.items()}
    raise UserError(f"{output_dir / MARKER} is damaged (no file digests); refusing to replace {output_dir} "
                    "with --force (delete the directory yourself if nothing in it is yours)")


def _changed_files(output_dir: Path, recorded: dict[str, tuple[int, str]]) -> list[str]:
    """Twin files whose size or SHA-256 differ from the marker's: a twin is never edited, so the user did."""
    changed = []
    for name, (size, sha) in sorted(recorded.items()):
        path = output_dir / name
        if not path.exists():
            continue  # a missing file loses nothing of the user's
        if path.lstat().st_size != size or file_sha256(path, "twin file") != (size, sha):
            changed.append(name)
    return changed


def _check_replaceable(output_dir: Path) -> None:
    """Refuse to replace ``output_dir`` unless the tool's own twin fills it, unedited and alone.

    The marker must name this very directory (its device and inode: a marker
    copied in from elsewhere names another), every other entry must be a file
    the marker lists, and each must still have the size and SHA-256 recorded.
    """
    marker = _read_marker(output_dir)
    if marker is None:
        what = "a checkpoint (config.json) no twin wrote" if (output_dir / "config.json").exists() else \
            "files no twin wrote"
        raise UserError(f"{output_dir} holds {what} (no {MARKER}); --force only replaces an earlier twin, "
                        "so choose another output directory")
    if "directory" not in marker:
        raise UserError(f"{output_dir} has a {MARKER} of an older import-model that cannot prove the tool wrote it; "
                        "if it is an old twin, delete the directory yourself, then run the command again")
    if not is_written_here(marker["directory"], output_dir):
        raise UserError(f"{output_dir / MARKER} was not written in this directory (copied or moved in from "
                        "elsewhere); --force only replaces a twin the tool wrote here, so choose another output "
                        "directory or delete this one yourself")
    recorded = _recorded_digests(marker, output_dir)
    foreign = foreign_entries(output_dir, {*recorded, MARKER})
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise UserError(f"{output_dir} is a twin directory that also holds {foreign[0]!r}{more}, which no twin "
                        "wrote; refusing to replace it (move those files away, or choose another output directory)")
    changed = _changed_files(output_dir, recorded)
    if changed:
        more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
        raise UserError(f"{output_dir / changed[0]}{more} changed since the twin was written, so it holds your "
                        "edits; refusing to replace it with --force (copy your changes away, or choose another "
                        "output directory)")


def _check_target(output_dir: Path, force: bool) -> None:
    """Refuse an output a twin may not fill: ``--force`` replaces only a directory an earlier twin wrote, whole."""
    if output_dir.is_symlink() or (output_dir.exists() and not output_dir.is_dir()):
        raise UserError(f"{output_dir} exists and is not a directory; choose another output directory")
    if not output_dir.is_dir() or not any(output_dir.iterdir()):
        return
    if not force:
        raise UserError(f"{output_dir} is not empty; pass force=True (--force) to replace it")
    _check_replaceable(output_dir)


def _swap_in(tmp: Path, output_dir: Path) -> None:
    """Rename ``tmp`` to ``output_dir``; an existing output_dir is moved aside first, then deleted."""
    old = None
    if output_dir.is_dir():
        if any(output_dir.iterdir()):
            old = output_dir.with_name(f".{output_dir.name}.old-{uuid.uuid4().hex[:8]}")
            os.rename(output_dir, old)
        else:
            output_dir.rmdir()
    os.rename(tmp, output_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _quiet_progress() -> Iterator[None]:
    """Hide transformers' per-shard progress bar for a twin's single tiny shard."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _write_files(tmp: Path, model: Any, tokenizer: Any, marker: dict[str, Any]) -> None:
    from transformers import GenerationConfig

    cfg = model.config
    model.generation_config = GenerationConfig(
        bos_token_id=getattr(cfg, "bos_token_id", None),
        eos_token_id=getattr(cfg, "eos_token_id", None),
        pad_token_id=getattr(cfg, "pad_token_id", None),
        do_sample=False,
    )
    with _quiet_progress():
        model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    config_path = tmp / "config.json"
    saved = json.loads(config_path.read_text())
    saved["dtype"] = saved["torch_dtype"] = "float32"  # torch_dtype for readers older than transformers 5
    saved["architectures"] = [marker["architecture"]]  # the declared class, even one transformers does not name
    config_path.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
    # The marker names the directory it is written in (kept by the rename into place) and every file with
    # its size and SHA-256, so a later --force replaces only this twin, unedited, and nothing copied in.
    written = sorted(entry.name for entry in os.scandir(tmp) if entry.is_file(follow_symlinks=False))
    digests = {name: list(file_sha256(tmp / name, "twin file")) for name in written if name != MARKER}
    marker = marker | {"files": sorted({*written, MARKER}), "digests": digests,
                       "directory": directory_identity(tmp)}
    (tmp / MARKER).write_text(strict_json(marker, sort_keys=True) + "\n")


def cached_twin(config: dict[str, Any], progress: Callable[[str], None] | None = None,
                message: str = "making a tiny twin") -> Path:
    """The twin of ``config`` in the shared cache: built once, reused by verify, renames and port."""
    from import_model.cache import cache_root

    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
    target = cache_root() / "twins" / digest
    if not (target / "config.json").is_file():
        if progress:
            progress(message)
        make_twin(config, target, force=True)
    return target


def twin_of(source: Any, config: dict[str, Any], progress: Callable[[str], None] | None = None) -> Path:
    """What a twin verify runs on: ``source`` itself when it is already a twin, else its cached twin."""
    if source.kind == "local" and source.has(MARKER):
        return Path(source.root).resolve()
    return cached_twin(config, progress, f"making a tiny twin of {source.display}")


def config_fingerprint(config: dict[str, Any], seed: int, num_layers: int | None) -> str:
    """Stable hash of what determines a twin: source config, seed, depth and the recipe (this file's code)."""
    recipe = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    blob = json.dumps([config, seed, num_layers, RECIPE_VERSION, recipe], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_twin_info(path: Path) -> TwinInfo | None:
    """TwinInfo of a complete twin directory, or None if it is not one."""
    try:
        marker = _read_marker(path)
        if marker is None:
            return None
        shrunk = {k: tuple(v) for k, v in marker.get("shrunk", {}).items()}
        return TwinInfo(
            path=path,
            model_type=marker["model_type"],
            architecture=marker["architecture"],
            num_layers=marker["num_layers"],
            num_parameters=marker["num_parameters"],
            shrunk=shrunk,
        )
    except (UserError, ValueError, TypeError, KeyError, AttributeError):
        return None


def make_twin(
    config: dict[str, Any],
    output_dir: Path,
    *,
    seed: int = 0,
    num_layers: int | None = None,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
    source: Path | None = None,
) -> TwinInfo:
    """Build a tiny random-weight twin of a causal-LM config into ``output_dir`` (atomically).

    ``output_dir`` may not be the file-system root or the home directory, nor
    overlap ``source`` (the checkpoint directory the config was read from).
    """
    say = progress or (lambda _msg: None)
    if not isinstance(config, dict):
        raise UserError("config must be a dict read from a config.json")
    bad = first_non_finite(config)
    if bad is not None:
        raise UserError(f"config.json sets {visible(bad)[:100]} to NaN or Infinity; a twin of it would compute NaN "
                        "(fix the value: no real model is configured that way)")
    fingerprint = config_fingerprint(config, seed, num_layers)
    config = copy.deepcopy(config)  # transformers fills nested dicts (rope) in place; keep the caller's intact
    output_dir = Path(output_dir).absolute()
    check_output_root(output_dir, "--output", source=source)
    _check_target(output_dir, force)
    twin_config, arch, model_cls, changed = build_twin_config(config, num_layers)
    layers = getattr(twin_config, "num_hidden_layers", None) or num_layers or 0
    say(f"twin of {arch}: {layers} layers, hidden {getattr(twin_config, 'hidden_size', '?')}, vocab {VOCAB}")
    model = _build_model(twin_config, model_cls, seed)
    n_params = sum(p.numel() for p in model.parameters())
    info = TwinInfo(output_dir, twin_config.model_type, arch, layers, n_params, changed)
    marker = {
        "model_type": info.model_type,
        "architecture": arch,
        "num_layers": layers,
        "num_parameters": n_params,
        "seed": seed,
        "fingerprint": fingerprint,
        "shrunk": changed,
    }
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_dir.with_name(f".{output_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        say(f"writing {n_params:,} float32 parameters and a {VOCAB}-token tokenizer")
        _write_files(tmp, model, _build_tokenizer(twin_config), marker)
        _check_target(output_dir, force)  # the target may have appeared while we were building
        _swap_in(tmp, output_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    say(f"twin written to {output_dir}")
    return info
