"""Decoder blocks assembled from import-model's delta catalog.

Every choice a model family makes that differs from the llama3 donor's block is
an entry of ``SPEC`` in the port's graph module, and each entry is answered by one
small, plain piece of code here: norms (RMS, ``1 + w`` RMS, LayerNorm with or
without bias), attention options (biases, QK-norm per head or over the whole
projection, partial and interleaved rotary, NoPE layers, sliding-window layer
patterns, scale overrides, clipped QKV, attention-logit soft-cap), MLPs (gated or not, the common
activations, biases), block wiring (pre-norm, sandwich, post-norm, parallel),
and the head (embedding scale, tied weights, head bias, logit scale, divisor
and final soft-cap).

Numbers that differ between sizes of one family (widths, eps, rope base and
scaling, windows, which layers slide) are read from the checkpoint's
``config.json`` at build time, so one port serves every size of the family.
The KV cache, batching and kernels are MAX's own (``max.nn`` and
``max.nn.kernels``). One exception: MAX's flash-attention kernel takes no
attention-logit soft-cap, so a family with one gets attention written out from
K/V read back out of the cache (see :class:`CatalogAttention`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from max.dtype import DType
from max.graph import DeviceRef, Graph, TensorValue, ops
from max.nn.attention.mask_config import MHAMaskVariant
from max.nn.clamp import clamp
from max.nn.embedding import Embedding
from max.nn.kernels import (
    flash_attention_ragged,
    kv_cache_gather_rows_ragged,
    rope_ragged,
    store_k_cache_ragged,
    store_v_cache_ragged,
)
from max.nn.kv_cache import KVCacheParams, PagedCacheValues
from max.nn.layer import Module
from max.nn.linear import Linear
from max.nn.norm import LayerNorm, RMSNorm
from max.nn.transformer import Transformer
from max.nn.transformer.transformer import logits_postprocess
from max.pipelines.architectures.llama3.llama3 import Llama3

#: ``config.json`` keys each runtime number may live under, first present wins.
CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "norm_eps": ("rms_norm_eps", "layer_norm_eps", "norm_eps", "layer_norm_epsilon", "norm_epsilon"),
    "rotary_fraction": ("partial_rotary_factor", "rotary_pct"),
    "rope_theta": ("rope_theta", "rotary_emb_base"),
    "window": ("sliding_window",),
    "query_pre_attn_scalar": ("query_pre_attn_scalar",),
    "attention_multiplier": ("attention_multiplier",),
    "final_softcap": ("final_logit_softcapping",),
    "attention_softcap": ("attn_logit_softcapping", "attention_logit_softcapping"),
    "logit_scale": ("logit_scale",),
    "logits_divisor": ("logits_scaling",),
    "embedding_multiplier": ("embedding_multiplier",),
    "residual_multiplier": ("residual_multiplier",),
    "clip_qkv": ("clip_qkv",),
    "intermediate_size": ("intermediate_size", "n_inner", "ffn_hidden_size"),
}

#: Activations by the names HF configs use.
ACTIVATIONS: dict[str, Callable[[TensorValue], TensorValue]] = {
    "silu": ops.silu,
    "gelu": lambda x: ops.gelu(x),
    "gelu_tanh": lambda x: ops.gelu(x, approximate="tanh"),
    "relu": ops.relu,
    "relu2": lambda x: ops.relu(x) * ops.relu(x),
    "quick_gelu": lambda x: x * ops.sigmoid(x * 1.702),
    "tanh": ops.tanh,
}


def config_value(config: Any, name: str, default: Any = None) -> Any:
    """The first of ``CONFIG_KEYS[name]`` set on ``config`` (or in its ``rope_parameters``)."""
    for key in CONFIG_KEYS.get(name, (name,)):
        value = getattr(config, key, None)
        if value is None and isinstance(getattr(config, "rope_parameters", None), dict):
            value = config.rope_parameters.get(key)
        if value is not None:
            return value
    return default


def rotary_width(config: Any, head_dim: int) -> int:
    """Channels of each head that rotate: an absolute ``rotary_dim`` (GPT-J, CodeGen) or a fraction of head_dim."""
    absolute = getattr(config, "rotary_dim", None)
    width = int(absolute) if absolute else int(head_dim * float(config_value(config, "rotary_fraction", 1.0)))
    return width - width % 2


def head_dim_of(config: Any) -> int:
    explicit = getattr(config, "head_dim", None)
    return int(explicit) if explicit else int(config.hidden_size // config.num_attention_heads)


def layer_kinds(config: Any, spec: dict[str, Any]) -> list[str]:
    """``"sliding"`` or ``"full"`` per layer, from the config's own layer list or the spec's rule."""
    layers = int(config.num_hidden_layers)
    window = config_value(config, "window")
    rule = spec["sliding_window"]
    if rule == "none" or not window:
        return ["full"] * layers
    types = getattr(config, "layer_types", None)
    if isinstance(types, (list, tuple)) and len(types) == layers:
        return ["sliding" if "sliding" in str(kind) else "full" for kind in types]
    if rule == "all":
        return ["sliding"] * layers
    period = int(getattr(config, "sliding_window_pattern", 0) or spec.get("pattern_period") or 2)
    return ["full" if (i + 1) % period == 0 else "sliding" for i in range(layers)]


def rope_layers(config: Any, spec: dict[str, Any], kinds: list[str]) -> list[bool]:
    """Whether each layer applies rotary embeddings (NoPE layers do not)."""
    rule = spec["nope"]
    layers = int(config.num_hidden_layers)
    if rule == "no_rope_layers":
        flags = getattr(config, "no_rope_layers", None) or [1] * layers
        return [bool(flag) for flag in flags][:layers]
    if rule == "all":
        return [False] * layers
    if rule == "global_layers":
        return [kind == "sliding" for kind in kinds] if "sliding" in kinds else [True] * layers
    return [True] * layers


class RotaryTable:
    """The ``[cos, sin]`` table MAX's rope kernel reads, built once per graph.

    Frequencies come from transformers' own initializer for the config's rope
    type (default, linear, yarn and every other type it knows), so scaling
    matches the reference by construction; the table is ``rot_dim`` wide, and
    attention rotates only the leading ``rot_dim`` columns of each head.
    """

    def __init__(self, config: Any, rot_dim: int, max_seq_len: int, layer_type: str | None = None) -> None:
        self.rot_dim = rot_dim
        inv_freq, attention_factor = _inverse_frequencies(config, rot_dim, max_seq_len, layer_type)
        positions = np.arange(max_seq_len, dtype=np.float32)
        angles = np.outer(positions, inv_freq.astype(np.float32))
        table = np.stack([np.cos(angles), np.sin(angles)], axis=-1) * np.float32(attention_factor)
        self.table = table.reshape(max_seq_len, rot_dim).astype(np.float32)
        self._values: dict[int, TensorValue] = {}

    def value(self, device: DeviceRef) -> TensorValue:
        """The table as a constant of the graph being built (one per graph, shared by its layers)."""
        graph = id(Graph.current)
        if graph not in self._values:
            self._values[graph] = ops.constant(self.table, DType.float32, device=device)
        return self._values[graph]


def _inverse_frequencies(config: Any, rot_dim: int, max_seq_len: int,
                         layer_type: str | None) -> tuple[np.ndarray, float]:
    try:
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

        params = getattr(config, "rope_parameters", None) or {}
        if layer_type is not None and isinstance(params.get(layer_type), dict):
            params = params[layer_type]
        else:
            layer_type = None
        kind = params.get("rope_type", "default") if isinstance(params, dict) else "default"
        if kind != "default":
            init = ROPE_INIT_FUNCTIONS[kind]
            try:
                inv, factor = init(config, None, seq_len=max_seq_len, layer_type=layer_type)
            except TypeError:
                inv, factor = init(config, None, seq_len=max_seq_len)
            return inv.double().numpy()[: rot_dim // 2], float(factor)
        base = float(params.get("rope_theta") or config_value(config, "rope_theta", 10000.0))
    except ImportError:
        base = float(config_value(config, "rope_theta", 10000.0))
    exponents = np.arange(0, rot_dim, 2, dtype=np.int64).astype(np.float32) / np.float32(rot_dim)
    return 1.0 / (np.float32(base) ** exponents), 1.0


class OffsetLayerNorm(LayerNorm):
    """LayerNorm that scales by ``1 + weight`` (Nemotron's LayerNorm1P), in float32 like MAX's own."""

    def __call__(self, x: TensorValue) -> TensorValue:
        width = x.shape[-1]
        beta = (ops.cast(self.bias, DType.float32) if self.bias is not None
                else ops.broadcast_to(ops.constant(0.0, DType.float32, self.weight.device), shape=(width,)))
        gamma = ops.cast(self.weight, DType.float32) + 1.0
        return ops.layer_norm(x.cast(DType.float32), gamma=gamma, beta=beta, epsilon=self.eps).cast(x.dtype)


def make_norm(spec: dict[str, Any], dim: int, eps: float, dtype: DType, device: DeviceRef) -> Module:
    """RMSNorm or LayerNorm, each with or without the ``(1 + w)`` offset; LayerNorm with or without bias."""
    if spec["norm"] == "layernorm":
        layer_norm = OffsetLayerNorm if spec["norm_offset"] else LayerNorm
        return layer_norm(dim, [device], dtype, eps=eps, use_bias=spec["norm_bias"])
    return RMSNorm(dim, dtype, eps, weight_offset=1.0 if spec["norm_offset"] else 0.0, multiply_before_cast=False)


class CatalogAttention(Module):
    """Self-attention over MAX's paged KV cache with the spec's attention options.

    Q, K and V are separate projections (fused checkpoints are split by the
    weight adapter); QK-norm runs before rotary (or after, per head); rotary is applied by MAX's
    rope kernel to the leading ``rot_dim`` columns (partial rotary), half-split
    or interleaved; K and V are stored, then flash attention runs causal or
    sliding-window with the spec's scale.

    With an attention-logit soft-cap (``cap * tanh(scores / cap)`` before the
    mask and softmax) the fused kernel cannot be used: MAX 26.7's flash
    attention has no soft-cap input. The cache then holds one KV head per
    cache layer (:func:`kv_cache_config_view`), so MAX's row-gather kernel can
    read every cached key and value back, and attention is written out:
    scores, cap, causal or sliding mask, softmax, weighted sum. Its memory grows
    with new tokens x context length: right for parity and short prompts, a
    fused kernel would be needed for long-context serving.
    """

    def __init__(self, *, spec: dict[str, Any], config: Any, kv_params: KVCacheParams, dtype: DType,
                 device: DeviceRef, rotary: RotaryTable | None, sliding: bool) -> None:
        super().__init__()
        hidden = int(config.hidden_size)
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(getattr(config, "num_key_value_heads", None) or self.heads)
        self.head_dim = head_dim_of(config)
        self.kv_params = kv_params
        self.rotary = rotary
        self.interleaved = spec["rotary_style"] == "interleaved"
        self.window = int(config_value(config, "window")) if sliding else -1
        self.scale = attention_scale(config, spec, self.head_dim)
        cap = config_value(config, "attention_softcap") if spec.get("attention_softcap") else None
        self.softcap = float(cap) if cap else None
        clip = config_value(config, "clip_qkv") if spec.get("clip_qkv") else None
        self.clip_qkv = float(clip) if clip else None
        bias = spec["qkv_bias"]
        self.q_proj = Linear(hidden, self.heads * self.head_dim, dtype, device, has_bias=bias)
        self.k_proj = Linear(hidden, self.kv_heads * self.head_dim, dtype, device, has_bias=bias)
        self.v_proj = Linear(hidden, self.kv_heads * self.head_dim, dtype, device, has_bias=bias)
        self.o_proj = Linear(self.heads * self.head_dim, hidden, dtype, device, has_bias=spec["o_bias"])
        self.qk_norm = spec["qk_norm"]
        self.qk_norm_after_rope = bool(spec.get("qk_norm_after_rope"))
        if self.qk_norm != "none":
            eps = float(config_value(config, "norm_eps", 1e-6))
            norm_spec = {**spec, "norm": spec.get("qk_norm_type", spec["norm"])}
            q_dim = self.head_dim if self.qk_norm == "per_head" else self.heads * self.head_dim
            k_dim = self.head_dim if self.qk_norm == "per_head" else self.kv_heads * self.head_dim
            self.q_norm = make_norm(norm_spec, q_dim, eps, dtype, device)
            self.k_norm = make_norm(norm_spec, k_dim, eps, dtype, device)

    def __call__(self, layer_idx: TensorValue, x: TensorValue, kv_collection: PagedCacheValues,
                 freqs_cis: TensorValue, input_row_offsets: TensorValue) -> TensorValue:
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.clip_qkv is not None:
            q, k, v = (clamp(t, -self.clip_qkv, self.clip_qkv) for t in (q, k, v))
        if self.qk_norm == "whole_projection":
            q, k = self.q_norm(q), self.k_norm(k)
        q = q.reshape((-1, self.heads, self.head_dim))
        k = k.reshape((-1, self.kv_heads, self.head_dim))
        v = v.reshape((-1, self.kv_heads, self.head_dim))
        if self.qk_norm == "per_head" and not self.qk_norm_after_rope:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rotary is not None:
            q, k = self._rotate(q, input_row_offsets, kv_collection), self._rotate(k, input_row_offsets, kv_collection)
        if self.qk_norm == "per_head" and self.qk_norm_after_rope:  # HunYuan normalises the rotated heads
            q, k = self.q_norm(q), self.k_norm(k)
        if self.softcap is not None:
            out = self._softcapped(layer_idx, q, k, v, kv_collection, input_row_offsets)
            return self.o_proj(out.reshape((-1, self.heads * self.head_dim)))
        store_k_cache_ragged(kv_collection, k, input_row_offsets, layer_idx)
        store_v_cache_ragged(kv_collection, v, input_row_offsets, layer_idx)
        mask = MHAMaskVariant.SLIDING_WINDOW_CAUSAL_MASK if self.window > 0 else MHAMaskVariant.CAUSAL_MASK
        out = flash_attention_ragged(self.kv_params, q, input_row_offsets, kv_collection, layer_idx,
                                     mask_variant=mask, scale=self.scale, local_window_size=self.window)
        return self.o_proj(out.reshape((-1, self.heads * self.head_dim)))

    def _softcapped(self, layer_idx: TensorValue, q: TensorValue, k: TensorValue, v: TensorValue,
                    kv_collection: PagedCacheValues, input_row_offsets: TensorValue) -> TensorValue:
        """Soft-capped attention of the new tokens ``q`` over every cached position of their request.

        KV head ``h`` of layer ``i`` lives in cache layer ``i * kv_heads + h``.
        Each request's keys and values are gathered as one row of ``longest``
        positions (a shorter request repeats its last slot; the mask hides it),
        then each new token attends to the rows of its own request.
        """
        device, index = q.device, DType.int64
        starts = ops.cast(input_row_offsets[:-1], index)
        ends = ops.cast(input_row_offsets[1:], index)
        cached = ops.rebind(ops.cast(kv_collection.cache_lengths, index), [starts.shape[0]])
        totals = cached + ends - starts
        longest = ops.max(totals, axis=0).reshape(()).to(DeviceRef.CPU())  # range bounds live on the host
        kv_pos = ops.range(0, longest, 1, out_dim="softcap_kv_len", dtype=index, device=device)
        slots = ops.cast(ops.min(kv_pos.reshape((1, -1)), (totals - 1).reshape((-1, 1))), DType.int32)
        rows = ops.cast(ops.range(0, ends.shape[0] + 1, 1, out_dim=input_row_offsets.shape[0], dtype=index,
                                  device=device), DType.uint32)
        keys, values = [], []
        for head in range(self.kv_heads):
            cache_layer = layer_idx * self.kv_heads + head
            store_k_cache_ragged(kv_collection, k[:, head:head + 1, :], input_row_offsets, cache_layer)
            store_v_cache_ragged(kv_collection, v[:, head:head + 1, :], input_row_offsets, cache_layer)
            keys.append(kv_cache_gather_rows_ragged(kv_collection, slots, rows, cache_layer, key_or_value=0))
            values.append(kv_cache_gather_rows_ragged(kv_collection, slots, rows, cache_layer, key_or_value=1))
        token = ops.range(0, q.shape[0], 1, out_dim=q.shape[0], dtype=index, device=device)
        request = ops.sum(ops.cast(token.reshape((-1, 1)) >= ends.reshape((1, -1)), index), axis=1).reshape((-1,))
        position = ops.gather(cached, request, axis=0) + token - ops.gather(starts, request, axis=0)
        visible = kv_pos.reshape((1, -1)) <= position.reshape((-1, 1))
        if self.window > 0:
            visible = visible & (kv_pos.reshape((1, -1)) > (position - self.window).reshape((-1, 1)))
        # [tokens, kv_heads, positions, head_dim], each token's own request
        k_rows = ops.gather(ops.stack(keys, axis=2), request, axis=0).permute([0, 2, 1, 3])
        v_rows = ops.gather(ops.stack(values, axis=2), request, axis=0).permute([0, 2, 1, 3])
        group = self.heads // self.kv_heads
        queries = q.reshape((-1, self.kv_heads, group, self.head_dim))
        scores = ops.cast(queries @ k_rows.permute([0, 1, 3, 2]), DType.float32) * self.scale
        scores = ops.tanh(scores / self.softcap) * self.softcap
        hidden = ops.constant(-1e30, DType.float32, device=device)
        scores = ops.where(visible.reshape((-1, 1, 1, visible.shape[1])), scores, hidden)
        probs = ops.cast(ops.softmax(scores, axis=-1), q.dtype)
        return (probs @ v_rows).reshape((-1, self.heads, self.head_dim))

    def _rotate(self, x: TensorValue, input_row_offsets: TensorValue, kv_collection: PagedCacheValues) -> TensorValue:
        """Rotary on the leading ``rot_dim`` columns of each head (all of them unless partial)."""
        assert self.rotary is not None
        table = ops.cast(self.rotary.value(x.device), x.dtype)
        start = kv_collection.cache_lengths
        rot = self.rotary.rot_dim
        if rot == self.head_dim:
            return rope_ragged(x, input_row_offsets, start, table, interleaved=self.interleaved)
        rotated = rope_ragged(x[:, :, :rot], input_row_offsets, start, table, interleaved=self.interleaved)
        return ops.concat((rotated, x[:, :, rot:]), axis=-1)


class _CachePerKVHead:
    """A config view whose KV cache holds one KV head per cache layer (``layers x kv_heads`` of them)."""

    def __init__(self, config: Any) -> None:
        self._config = config

    def __getattr__(self, name: str) -> Any:
        config = self._config
        if name == "num_key_value_heads":
            return 1
        if name == "num_hidden_layers":
            return int(config.num_hidden_layers) * int(getattr(config, "num_key_value_heads", None)
                                                       or config.num_attention_heads)
        return getattr(config, name)

    def __contains__(self, name: str) -> bool:
        return name in self._config


def kv_cache_config_view(spec: dict[str, Any], config: Any) -> Any:
    """The config the KV cache is sized from: as is, or one head per cache layer for soft-capped attention."""
    return _CachePerKVHead(config) if spec.get("attention_softcap") else config


def attention_scale(config: Any, spec: dict[str, Any], head_dim: int) -> float:
    """``1/sqrt(head_dim)`` unless the family scales by another config number."""
    rule = spec["attention_scale"]
    if rule == "query_pre_attn_scalar":
        return float(config_value(config, "query_pre_attn_scalar", head_dim)) ** -0.5
    if rule == "attention_multiplier":
        return float(config_value(config, "attention_multiplier", head_dim ** -0.5))
    return 1.0 / math.sqrt(head_dim)


class CatalogMLP(Module):
    """Gated (``down(act(gate(x)) * up(x))``) or plain (``down(act(up(x)))``) feed-forward."""

    def __init__(self, *, spec: dict[str, Any], config: Any, dtype: DType, device: DeviceRef) -> None:
        super().__init__()
        hidden = int(config.hidden_size)
        inner = int(config_value(config, "intermediate_size", 4 * hidden))
        bias = spec["mlp_bias"]
        self.gated = spec["mlp"] == "gated"
        self.activation = ACTIVATIONS[spec["activation"]]
        if self.gated:
            self.gate_proj = Linear(hidden, inner, dtype, device, has_bias=bias)
        self.up_proj = Linear(hidden, inner, dtype, device, has_bias=bias)
        self.down_proj = Linear(inner, hidden, dtype, device, has_bias=bias)

    def __call__(self, x: TensorValue) -> TensorValue:
        if self.gated:
            return self.down_proj(self.activation(self.gate_proj(x)) * self.up_proj(x))
        return self.down_proj(self.activation(self.up_proj(x)))


class CatalogBlock(Module):
    """One decoder layer: the spec's norm placement and residual wiring.

    ``sequential``: ``h = x + post_attn(attn(pre_attn(x)))``, then
    ``out = h + post_mlp(mlp(pre_mlp(h)))``, any of the four norms absent.
    ``parallel``: ``out = x + attn(pre_attn(x)) + mlp(pre_mlp(x))``, where a
    shared-norm family feeds the MLP the attention's normed input.
    """

    def __init__(self, *, spec: dict[str, Any], config: Any, attention: CatalogAttention, mlp: CatalogMLP,
                 dtype: DType, device: DeviceRef) -> None:
        super().__init__()
        self.self_attn = attention
        self.mlp = mlp
        self.parallel = spec["residual"] == "parallel"
        self.multiplier = float(config_value(config, "residual_multiplier", 1.0)) if spec.get(
            "residual_multiplier") else 1.0
        eps = float(config_value(config, "norm_eps", 1e-5))
        self.norm_roles: dict[str, str] = {}
        for role, name in spec["block_norms"].items():
            if name:
                setattr(self, name, make_norm(spec, int(config.hidden_size), eps, dtype, device))
                self.norm_roles[role] = name

    def _norm(self, role: str, x: TensorValue) -> TensorValue:
        name = self.norm_roles.get(role)
        return getattr(self, name)(x) if name else x

    def __call__(self, layer_idx: TensorValue, x: TensorValue, kv_collection: PagedCacheValues,
                 freqs_cis: TensorValue, input_row_offsets: TensorValue) -> TensorValue:
        normed = self._norm("pre_attention", x)
        attn = self._norm("post_attention", self.self_attn(layer_idx, normed, kv_collection, freqs_cis,
                                                            input_row_offsets))
        if self.parallel:
            mlp_in = normed if "pre_mlp" not in self.norm_roles else self._norm("pre_mlp", x)
            return x + attn + self.mlp(mlp_in)
        if self.multiplier != 1.0:
            attn = attn * self.multiplier
        h = x + attn
        mlp = self._norm("post_mlp", self.mlp(self._norm("pre_mlp", h)))
        if self.multiplier != 1.0:
            mlp = mlp * self.multiplier
        return h + mlp


class CatalogHead(Linear):
    """The LM head: a linear (bias optional); :meth:`finish` applies logit scale, divisor and final soft-cap.

    HF applies those after its ``lm_head`` module (in the ``ForCausalLM``
    forward), so they stay outside this module's own output here too.
    """

    def __init__(self, *, spec: dict[str, Any], config: Any, dtype: DType, device: DeviceRef) -> None:
        super().__init__(int(config.hidden_size), int(config.vocab_size), dtype, device, has_bias=spec["head_bias"])
        self.logit_scale = float(config_value(config, "logit_scale", 1.0)) if spec["logit_scale"] else 1.0
        self.divisor = float(config_value(config, "logits_divisor", 1.0)) if spec["logits_divisor"] else 1.0
        cap = config_value(config, "final_softcap") if spec["final_softcap"] else None
        self.softcap = float(cap) if cap else None

    def finish(self, logits: TensorValue) -> TensorValue:
        if self.logit_scale != 1.0:
            logits = logits * self.logit_scale
        if self.divisor != 1.0:
            logits = logits / self.divisor
        if self.softcap is not None:
            logits = ops.tanh(logits / self.softcap) * self.softcap
        return logits


class CatalogEmbedding(Embedding):
    """Token embedding; when the HF embedding module scales its own output, the scale is applied here too."""

    def __init__(self, vocab: int, hidden: int, dtype: DType, device: DeviceRef, *, scale: float = 1.0) -> None:
        super().__init__(vocab, hidden, dtype, device)
        self.scale = scale

    def __call__(self, indices: Any) -> TensorValue:
        embedded = super().__call__(indices)
        return embedded * self.scale if self.scale != 1.0 else embedded


class _NoRope:
    """Stands in for ``Transformer.rope``: each attention layer holds its own rotary table."""

    freqs_cis: TensorValue | None = None


class CatalogDecoder(Transformer):
    """Embedding, ``num_hidden_layers`` catalog blocks, final norm and head, as ``spec`` describes."""

    def __init__(self, spec: dict[str, Any], config: Any, *, kv_params: KVCacheParams, dtype: DType,
                 devices: Sequence[DeviceRef], max_seq_len: int, return_logits: Any, tie_word_embeddings: bool) -> None:
        device = devices[0]
        kinds = layer_kinds(config, spec)
        with_rope = rope_layers(config, spec, kinds)
        head_dim = head_dim_of(config)
        rot_dim = rotary_width(config, head_dim)
        tables: dict[str, RotaryTable] = {}
        layers = []
        for index, kind in enumerate(kinds):
            rotary = None
            if with_rope[index] and rot_dim:
                layer_type = "sliding_attention" if kind == "sliding" else "full_attention"
                key = layer_type if spec.get("rope_per_layer_type") else "all"
                if key not in tables:
                    tables[key] = RotaryTable(config, rot_dim, max_seq_len,
                                              layer_type if spec.get("rope_per_layer_type") else None)
                rotary = tables[key]
            attention = CatalogAttention(spec=spec, config=config, kv_params=kv_params, dtype=dtype, device=device,
                                         rotary=rotary, sliding=kind == "sliding")
            mlp = CatalogMLP(spec=spec, config=config, dtype=dtype, device=device)
            layers.append(CatalogBlock(spec=spec, config=config, attention=attention, mlp=mlp, dtype=dtype,
                                       device=device))
        scale = embedding_multiplier(config, spec)
        inside = spec.get("embedding_scale_in_module", False)
        embedding = CatalogEmbedding(int(config.vocab_size), int(config.hidden_size), dtype, device,
                                     scale=scale if inside else 1.0)
        head = CatalogHead(spec=spec, config=config, dtype=dtype, device=device)
        if tie_word_embeddings:
            head.set_shared_weight("weight", embedding.weight)
        eps = float(config_value(config, "norm_eps", 1e-5))
        super().__init__(
            dim=int(config.hidden_size), n_heads=int(config.num_attention_heads), layers=layers,
            norm=make_norm(spec, int(config.hidden_size), eps, dtype, device), output=head, embedding=embedding,
            kv_params=kv_params, rope=_NoRope(), return_logits=return_logits,
            embedding_multiplier=1.0 if inside else scale,
        )

    def _postprocess_logits(self, h: TensorValue, input_row_offsets: TensorValue, return_n_logits: TensorValue,
                            capture_hidden_states: Any = None) -> tuple[TensorValue, ...]:
        head = self.lm_head
        return logits_postprocess(h, input_row_offsets, return_n_logits, norm=self.norm,
                                  lm_head=lambda x: head.finish(head(x)), return_logits=self.return_logits,
                                  return_hidden_states=self.return_hidden_states,
                                  capture_hidden_states=capture_hidden_states)

    # Graph inputs and tracing are borrowed from the donor's graph (ragged tokens, row offsets, paged KV cache).
    def input_tree(self, kv_params: KVCacheParams, needs_hidden_state_input: bool = False) -> Any:
        return Llama3.input_tree(self, kv_params, needs_hidden_state_input)  # type: ignore[arg-type]

    def input_types(self, kv_params: KVCacheParams, needs_hidden_state_input: bool = False) -> Any:
        return Llama3.input_types(self, kv_params, needs_hidden_state_input)  # type: ignore[arg-type]

    def trace(self, *input_types: Any, **kwargs: Any) -> Any:
        return Llama3.trace(self, *input_types, **kwargs)  # type: ignore[arg-type]


def embedding_multiplier(config: Any, spec: dict[str, Any]) -> float:
    rule = spec["embedding_scale"]
    if rule == "sqrt_hidden":
        return float(np.float32(math.sqrt(int(config.hidden_size))))
    if rule == "config":
        return float(config_value(config, "embedding_multiplier", 1.0))
    return 1.0

