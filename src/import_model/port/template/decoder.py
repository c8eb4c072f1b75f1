"""The decoder template of a catalog port: every delta of the catalog, each a small named piece.

``import-model port`` specialises this module for one model
(:mod:`import_model.port.specialise`): every ``if TRAITS...`` is decided by the
model's traits, so the written ``<slug>.py`` holds only the branches and pieces
that model uses. Imported as it is, the module is the llama3 donor's block
(``Traits()``), which tests build and run.

Numbers that differ between sizes of one family (widths, eps, rope base and
scaling, windows, which layers slide) are read from ``config.json`` at build
time through ``CONFIG_KEYS``, so one port serves every size of the family.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from max.dtype import DType
from max.graph import DeviceRef, Graph, TensorValue, Weight, ops
from max.nn.activation import GatedActivation
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
from max.nn.layer import LayerList, Module
from max.nn.linear import MLP, Linear
from max.nn.moe import MoE, MoEGate, make_concatenated_gated_activation_fn
from max.nn.norm import LayerNorm, RMSNorm
from max.nn.transformer import Transformer
from max.nn.transformer.transformer import logits_postprocess
from max.pipelines.architectures.llama3.llama3 import Llama3
from typing_extensions import override

from import_model.plan.traits import Traits
from import_model.source.config_keys import CONFIG_ALIASES

#: The model's structural choices; the writer evaluates every read of it.
TRAITS = Traits()

#: ``config.json`` keys each number may live under, first present wins.
CONFIG_KEYS: dict[str, tuple[str, ...]] = CONFIG_ALIASES


def config_value(config: Any, name: str, default: Any = None) -> Any:
    """The first of ``CONFIG_KEYS[name]`` set on ``config`` (or in its ``rope_parameters``)."""
    for key in CONFIG_KEYS.get(name, (name,)):
        value = getattr(config, key, None)
        if value is None and isinstance(getattr(config, "rope_parameters", None), dict):
            value = config.rope_parameters.get(key)
        if value is not None:
            return value
    return default


def embedding_width(config: Any) -> int:
    """The embeddings' width, ``embedding_size``, which a projection takes to the hidden size (ELECTRA)."""
    return int(config_value(config, "embedding_size", config.hidden_size))


def head_dim_of(config: Any) -> int:
    explicit = getattr(config, "head_dim", None)
    return int(explicit) if explicit else int(config.hidden_size // config.num_attention_heads)


def layer_head_dim(config: Any, sliding: bool) -> int:
    """A layer's head width: a full-attention layer's own (``global_head_dim``) where the family gives it one."""
    if TRAITS.full_head_dim and not sliding:
        return int(config_value(config, "full_head_dim") or head_dim_of(config))
    else:
        return head_dim_of(config)


def widest_head_dim(config: Any) -> int:
    """The widest head of any layer: the width the KV cache is sized for."""
    return max(layer_head_dim(config, sliding=False), head_dim_of(config))


class HeadWidthView:
    """A config view whose ``head_dim`` is ``width`` (a full-attention layer's rope table; the KV cache's widest head),
    seen through ``family_config`` too."""

    def __init__(self, config: Any, width: int) -> None:
        self._config = config
        self._width = width

    @property
    def family_config(self) -> Any:
        return HeadWidthView(getattr(self._config, "family_config", self._config), self._width)

    def __getattr__(self, name: str) -> Any:
        return self._width if name == "head_dim" else getattr(self._config, name)

    def __contains__(self, name: str) -> bool:
        return name in self._config


def rotary_width(config: Any, head_dim: int) -> int:
    """Channels of each head that rotate: an absolute ``rotary_dim`` (GPT-J, CodeGen) or a fraction of head_dim."""
    absolute = getattr(config, "rotary_dim", None)
    width = int(absolute) if absolute else int(head_dim * float(config_value(config, "rotary_fraction", 1.0)))
    return width - width % 2


# --------------------------------------------------------------------------- which layers slide, which rotate


def sliding_layers(config: Any) -> list[bool]:
    """Whether each layer attends through a sliding window: the config's ``layer_types``, else the family's rule."""
    layers = int(config.num_hidden_layers)
    if not config_value(config, "window"):
        return [False] * layers
    types = getattr(config, "layer_types", None) or getattr(config, "attention_layers", None)
    if isinstance(types, (list, tuple)) and len(types) == layers:
        # "sliding_attention" (Mistral-style layer_types) or "local" (GPT-Neo's attention_layers)
        return ["sliding" in str(kind) or kind == "local" for kind in types]
    if TRAITS.sliding_window == "all":
        return [True] * layers
    else:
        fallback = TRAITS.pattern_period or 2
        period = int(getattr(config, "sliding_window_pattern", 0) or fallback)
        return [(i + 1) % period != 0 for i in range(layers)]


def rotary_layers(config: Any, sliding: list[bool]) -> list[bool]:
    """Whether each layer applies rotary embeddings (NoPE layers do not)."""
    layers = int(config.num_hidden_layers)
    if TRAITS.nope == "no_rope_layers":
        flags = getattr(config, "no_rope_layers", None) or [1] * layers
        return [bool(flag) for flag in flags][:layers]
    else:
        return list(sliding) if any(sliding) else [True] * layers


# --------------------------------------------------------------------------- rotary


class ConstantTable:
    """A float32 table computed once in numpy and built into each graph as a constant (shared by its layers)."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = table.astype(np.float32)
        self._values: dict[int, TensorValue] = {}

    def value(self, device: DeviceRef) -> TensorValue:
        """The table as a constant of the graph being built."""
        graph = id(Graph.current)
        if graph not in self._values:
            self._values[graph] = ops.constant(self.table, DType.float32, device=device)
        return self._values[graph]


class RotaryTable(ConstantTable):
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
        if TRAITS.rotary_inverted:
            angles = -angles  # the family's helper builds (x2, -x1): a rotation by minus the angle
        table = np.stack([np.cos(angles), np.sin(angles)], axis=-1) * np.float32(attention_factor)
        super().__init__(table.reshape(max_seq_len, rot_dim))


class SinusoidTable(ConstantTable):
    """The computed position table: sines in the first half of each row, cosines in the second, at frequencies
    10000^(-i / d) for i < half, where d is half - 1 (fairseq: XGLM, TrOCR) or half (Marian, Pegasus); an odd width
    ends in a zero column."""

    def __init__(self, rows: int, width: int) -> None:
        half = width // 2
        divisor = half - 1 if TRAITS.position_sinusoid == "fairseq" else half
        frequencies = np.exp(np.arange(half, dtype=np.float32) * np.float32(-math.log(10000.0) / divisor))
        angles = np.arange(rows, dtype=np.float32)[:, None] * frequencies[None, :]
        super().__init__(np.pad(np.concatenate([np.sin(angles), np.cos(angles)], axis=1), ((0, 0), (0, width % 2))))


def _inverse_frequencies(config: Any, rot_dim: int, max_seq_len: int,
                         layer_type: str | None) -> tuple[np.ndarray, float]:
    try:
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

        if layer_type is not None:  # the family's own per-type dicts: a donor view flattens them for the donor
            config = getattr(config, "family_config", config)
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


#: Rope types whose frequencies span the whole head, zero past the rotated share (transformers' proportional rope,
#: Gemma 4's full-attention layers): the whole head is rotated, its zero-frequency pairs unchanged.
WHOLE_HEAD_ROPE_TYPES: tuple[str, ...] = ("proportional",)


def type_rotary_width(config: Any, head_dim: int, layer_type: str) -> int | None:
    """Channels that rotate in a layer of ``layer_type``, from that type's own rope parameters (None: none given)."""
    params = (getattr(getattr(config, "family_config", config), "rope_parameters", None) or {}).get(layer_type)
    if not isinstance(params, dict):
        return None
    if params.get("rope_type") in WHOLE_HEAD_ROPE_TYPES:
        return head_dim
    width = int(head_dim * float(params.get("partial_rotary_factor", 1.0)))
    return width - width % 2


def rotary_tables(config: Any, rot_dim: int, max_seq_len: int, sliding: list[bool]) -> list[RotaryTable]:
    """One table per layer, shared between layers of one kind."""
    if TRAITS.rope_per_layer_type:
        wide = HeadWidthView(config, layer_head_dim(config, sliding=False)) if TRAITS.full_head_dim else config
        local_width = type_rotary_width(config, head_dim_of(config), "sliding_attention") or rot_dim
        full_width = type_rotary_width(wide, layer_head_dim(config, sliding=False), "full_attention") or rot_dim
        local = RotaryTable(config, local_width, max_seq_len, "sliding_attention")
        full = RotaryTable(wide, full_width, max_seq_len, "full_attention")
        return [local if slides else full for slides in sliding]
    else:
        table = RotaryTable(config, rot_dim, max_seq_len)
        return [table] * len(sliding)


# --------------------------------------------------------------------------- norms


class OffsetLayerNorm(LayerNorm):
    """LayerNorm that scales by ``1 + weight`` (Nemotron's LayerNorm1P), in float32 like MAX's own."""

    def __call__(self, x: TensorValue) -> TensorValue:
        width = x.shape[-1]
        beta = (ops.cast(self.bias, DType.float32) if self.bias is not None
                else ops.broadcast_to(ops.constant(0.0, DType.float32, self.weight.device), shape=(width,)))
        gamma = ops.cast(self.weight, DType.float32) + 1.0
        return ops.layer_norm(x.cast(DType.float32), gamma=gamma, beta=beta, epsilon=self.eps).cast(x.dtype)


class WeightlessNorm(Module):
    """A norm with no learned weight or bias (NanoChat): the statistics only, in float32."""

    def __init__(self, eps: float, *, layer_norm: bool) -> None:
        super().__init__()
        self.eps = eps
        self.layer_norm = layer_norm

    def __call__(self, x: TensorValue) -> TensorValue:
        h = x.cast(DType.float32)
        if self.layer_norm:
            h = h - ops.mean(h, axis=-1)
        return (h * ops.rsqrt(ops.mean(h * h, axis=-1) + self.eps)).cast(x.dtype)


def make_norm(dim: int, eps: float, dtype: DType, device: DeviceRef) -> Module:
    """The family's norm over ``dim`` channels."""
    if not TRAITS.norm_weight:
        return WeightlessNorm(eps, layer_norm=TRAITS.norm == "layernorm")
    elif TRAITS.norm == "layernorm" and TRAITS.norm_offset:
        return OffsetLayerNorm(dim, [device], dtype, eps=eps, use_bias=TRAITS.norm_bias)
    elif TRAITS.norm == "layernorm":
        return LayerNorm(dim, [device], dtype, eps=eps, use_bias=TRAITS.norm_bias)
    elif TRAITS.norm_offset:
        return RMSNorm(dim, dtype, eps, weight_offset=1.0, multiply_before_cast=False)
    else:
        return RMSNorm(dim, dtype, eps, multiply_before_cast=False)


def make_qk_norm(dim: int, eps: float, dtype: DType, device: DeviceRef) -> Module:
    """The norm QK-norm applies to queries and keys: the block's own kind unless the family picks the other."""
    if not TRAITS.qk_norm_weight:
        return WeightlessNorm(eps, layer_norm=TRAITS.qk_norm_type == "layernorm")
    elif TRAITS.qk_norm_type == TRAITS.norm and TRAITS.norm_weight:
        return make_norm(dim, eps, dtype, device)
    elif TRAITS.qk_norm_type == "layernorm":
        layer_norm = OffsetLayerNorm if TRAITS.norm_offset else LayerNorm
        return layer_norm(dim, [device], dtype, eps=eps, use_bias=TRAITS.norm_bias)
    else:
        return RMSNorm(dim, dtype, eps, weight_offset=1.0 if TRAITS.norm_offset else 0.0, multiply_before_cast=False)


# --------------------------------------------------------------------------- attention


def token_positions(input_row_offsets: TensorValue, kv_collection: PagedCacheValues, count: Any,
                    device: DeviceRef) -> tuple[TensorValue, TensorValue]:
    """For each of ``count`` ragged tokens: the request it belongs to, and its position in that request's sequence
    (the tokens the KV cache already holds for the request, plus its index among the new ones)."""
    index = DType.int64
    starts = ops.cast(input_row_offsets[:-1], index)
    ends = ops.cast(input_row_offsets[1:], index)
    cached = ops.rebind(ops.cast(kv_collection.cache_lengths, index), [starts.shape[0]])
    token = ops.range(0, count, 1, out_dim=count, dtype=index, device=device)
    request = ops.sum(ops.cast(token.reshape((-1, 1)) >= ends.reshape((1, -1)), index), axis=1).reshape((-1,))
    return request, ops.gather(cached, request, axis=0) + token - ops.gather(starts, request, axis=0)


def attention_scale(config: Any, head_dim: int) -> float:
    """The scale of the attention scores."""
    if TRAITS.attention_scale == "query_pre_attn_scalar":
        return float(config_value(config, "query_pre_attn_scalar", head_dim)) ** -0.5
    elif TRAITS.attention_scale == "attention_multiplier":
        return float(config_value(config, "attention_multiplier", head_dim ** -0.5))
    elif TRAITS.attention_scale == "none":
        # the scores are q·kᵀ as they are (GPT-Neo)
        return 1.0
    else:
        return 1.0 / math.sqrt(head_dim)


#: The narrowest sliding window MAX 26.7's CPU flash attention compiles: it masks 128 key positions at a time and
#: refuses a narrower window ("SIMD width of sliding window mask must be <= window size").
CPU_FLASH_MIN_WINDOW = 128


def written_out_attention(config: Any, devices: Sequence[DeviceRef]) -> bool:
    """Whether attention runs written out (:meth:`PortAttention._written_out`) over a cache of one KV head per layer
    instead of MAX's flash kernel: for a soft-cap, which the kernel lacks, or on the CPU for a sliding window
    narrower than its CPU build accepts (ModernBERT-decoder's 64, half its local_attention)."""
    if TRAITS.attention_softcap or TRAITS.differential_attention or TRAITS.alibi:
        return True
    elif TRAITS.sliding_window != "none":
        window = int(config_value(config, "window") or 0)
        return any(device.is_cpu() for device in devices) and 0 < window < CPU_FLASH_MIN_WINDOW
    else:
        return False


def rotate_leading(rotary: RotaryTable, x: TensorValue, input_row_offsets: TensorValue,
                   kv_collection: PagedCacheValues) -> TensorValue:
    """Rotary on the leading ``rotary.rot_dim`` channels of each head of ``x`` (all of them unless partial)."""
    table = ops.cast(rotary.value(x.device), x.dtype)
    start = kv_collection.cache_lengths
    interleaved = TRAITS.rotary_style == "interleaved"
    rot = rotary.rot_dim
    if rot == int(x.shape[-1]):
        return rope_ragged(x, input_row_offsets, start, table, interleaved=interleaved)
    rotated = rope_ragged(x[:, :, :rot], input_row_offsets, start, table, interleaved=interleaved)
    return ops.concat((rotated, x[:, :, rot:]), axis=-1)


def zero_padded(x: TensorValue, width: int) -> TensorValue:
    """``x`` ([tokens, heads, w]) with zero channels appended to each head up to ``width``."""
    extra = width - int(x.shape[-1])
    if extra == 0:
        return x
    zeros = ops.broadcast_to(ops.constant(0.0, x.dtype, device=x.device), shape=(x.shape[0], x.shape[1], extra))
    return ops.concat((x, zeros), axis=-1)


class PortAttention(Module):
    """Self-attention over MAX's paged KV cache: projections, rotary, flash attention, output projection."""

    def __init__(self, *, config: Any, kv_params: KVCacheParams, dtype: DType, device: DeviceRef,
                 rotary: RotaryTable | None, sliding: bool) -> None:
        super().__init__()
        hidden = int(config.hidden_size)
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(getattr(config, "num_key_value_heads", None) or self.heads)
        self.head_dim = layer_head_dim(config, sliding) if TRAITS.full_head_dim else head_dim_of(config)
        if TRAITS.full_head_dim:
            self.cache_head_dim = widest_head_dim(config)
        self.kv_params = kv_params
        self.rotary = rotary
        self.window = int(config_value(config, "window")) if TRAITS.sliding_window != "none" and sliding else -1
        if TRAITS.sliding_window != "none":
            self.written_out = written_out_attention(config, [device])
        self.scale = attention_scale(config, self.head_dim)
        if TRAITS.attention_softcap:
            self.softcap = float(config_value(config, "attention_softcap"))
        if TRAITS.alibi:
            self.slopes = ConstantTable(alibi_slopes(self.heads))
        if TRAITS.clip_qkv:
            self.clip = float(config_value(config, "clip_qkv"))
        if TRAITS.differential_attention:
            for name in ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2"):
                setattr(self, name, Weight(name, dtype, [self.head_dim], device))
            self.lambda_init = differential_lambda_init(0)  # the decoder sets each layer's own
            self.pair_norm = WeightlessNorm(float(config_value(config, "norm_eps", 1e-5)), layer_norm=False)
        self.q_proj = Linear(hidden, self.heads * self.head_dim, dtype, device, has_bias=TRAITS.qkv_bias)
        self.k_proj = Linear(hidden, self.kv_heads * self.head_dim, dtype, device, has_bias=TRAITS.qkv_bias)
        self.v_proj = Linear(hidden, self.kv_heads * self.head_dim, dtype, device, has_bias=TRAITS.qkv_bias)
        self.o_proj = Linear(self.heads * self.head_dim, hidden, dtype, device, has_bias=TRAITS.o_bias)
        if TRAITS.attention_output_norm:
            self.output_norm = make_norm(self.heads * self.head_dim, float(config_value(config, "norm_eps", 1e-5)),
                                         dtype, device)
        if TRAITS.qk_norm == "per_head":
            eps = float(config_value(config, "norm_eps", 1e-6))
            self.q_norm = make_qk_norm(self.head_dim, eps, dtype, device)
            self.k_norm = make_qk_norm(self.head_dim, eps, dtype, device)
        elif TRAITS.qk_norm == "whole_projection":
            eps = float(config_value(config, "norm_eps", 1e-6))
            self.q_norm = make_qk_norm(self.heads * self.head_dim, eps, dtype, device)
            self.k_norm = make_qk_norm(self.kv_heads * self.head_dim, eps, dtype, device)
        if TRAITS.value_norm:
            self.v_norm = WeightlessNorm(float(config_value(config, "norm_eps", 1e-6)), layer_norm=False)

    def __call__(self, layer_idx: TensorValue, x: TensorValue, kv_collection: PagedCacheValues,
                 freqs_cis: TensorValue, input_row_offsets: TensorValue) -> TensorValue:
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if TRAITS.clip_qkv:
            q, k, v = (clamp(t, -self.clip, self.clip) for t in (q, k, v))
        if TRAITS.qk_norm == "whole_projection":
            q, k = self.q_norm(q), self.k_norm(k)
        q = q.reshape((-1, self.heads, self.head_dim))
        k = k.reshape((-1, self.kv_heads, self.head_dim))
        v = v.reshape((-1, self.kv_heads, self.head_dim))
        if TRAITS.qk_norm == "per_head" and not TRAITS.qk_norm_after_rope:
            q, k = self.q_norm(q), self.k_norm(k)
        if TRAITS.nope != "all" and self.rotary is not None:
            q = rotate_leading(self.rotary, q, input_row_offsets, kv_collection)
            k = rotate_leading(self.rotary, k, input_row_offsets, kv_collection)
        if TRAITS.qk_norm == "per_head" and TRAITS.qk_norm_after_rope:  # HunYuan normalises the rotated heads
            q, k = self.q_norm(q), self.k_norm(k)
        if TRAITS.value_norm:
            v = self.v_norm(v)  # Gemma 4: each value head normed, no weight
        if TRAITS.attention_softcap or TRAITS.differential_attention or TRAITS.alibi or (TRAITS.sliding_window != "none" and self.written_out):  # noqa: E501
            out = self._written_out(layer_idx, q, k, v, kv_collection, input_row_offsets)
        else:
            if TRAITS.full_head_dim:
                # zero channels after each head up to the cache's width: the scores q·k and the first head_dim output
                # channels are those of the narrow heads (the scale is passed as it is)
                q, k, v = (zero_padded(t, self.cache_head_dim) for t in (q, k, v))
            store_k_cache_ragged(kv_collection, k, input_row_offsets, layer_idx)
            store_v_cache_ragged(kv_collection, v, input_row_offsets, layer_idx)
            mask = MHAMaskVariant.SLIDING_WINDOW_CAUSAL_MASK if self.window > 0 else MHAMaskVariant.CAUSAL_MASK
            out = flash_attention_ragged(self.kv_params, q, input_row_offsets, kv_collection, layer_idx,
                                         mask_variant=mask, scale=self.scale, local_window_size=self.window)
            if TRAITS.full_head_dim:
                out = out[:, :, :self.head_dim]  # the padded channels' outputs are zeros
        out = out.reshape((-1, self.heads * self.head_dim))
        if TRAITS.attention_output_norm:
            out = self.output_norm(out)  # BitNet: the attention's output normed before the output projection
        return self.o_proj(out)

    def _written_out(self, layer_idx: TensorValue, q: TensorValue, k: TensorValue, v: TensorValue,
                     kv_collection: PagedCacheValues, input_row_offsets: TensorValue) -> TensorValue:
        """Attention written out over the cached K/V: with a logit soft-cap ``cap * tanh(scores / cap)``, ALiBi's
        ``slope[head] * key position``, or differential (:meth:`_differential`), none of which MAX's flash attention
        computes; plain, for a window narrower than the CPU flash kernel takes (:func:`written_out_attention`).

        MAX 26.7's flash attention takes neither, so the cache holds one KV
        head per cache layer (:class:`CachePerKVHead`): KV head ``h`` of layer
        ``i`` lives in cache layer ``i * kv_heads + h``, which MAX's row-gather
        kernel can read back. Each request's keys and values are gathered as
        one row of ``longest`` positions (a shorter request repeats its last
        slot; the mask hides it), then each new token attends to the rows of
        its own request. Memory grows with new tokens x context length: right
        for parity and short prompts; long-context serving needs a fused kernel.
        """
        device, index = q.device, DType.int64
        request, position = token_positions(input_row_offsets, kv_collection, q.shape[0], device)
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
        visible = kv_pos.reshape((1, -1)) <= position.reshape((-1, 1))
        if self.window > 0:
            visible = visible & (kv_pos.reshape((1, -1)) > (position - self.window).reshape((-1, 1)))
        # [tokens, kv_heads, positions, head_dim], each token's own request
        k_rows = ops.gather(ops.stack(keys, axis=2), request, axis=0).permute([0, 2, 1, 3])
        v_rows = ops.gather(ops.stack(values, axis=2), request, axis=0).permute([0, 2, 1, 3])
        group = self.heads // self.kv_heads
        queries = q.reshape((-1, self.kv_heads, group, self.head_dim))
        scores = ops.cast(queries @ k_rows.permute([0, 1, 3, 2]), DType.float32) * self.scale
        if TRAITS.attention_softcap:
            scores = ops.tanh(scores / self.softcap) * self.softcap
        if TRAITS.alibi:
            # a linear bias by key position: the same softmax as by distance (each row's shift is constant).
            # [heads, 1] @ [1, positions] as a matmul: MAX 26.7 fused the broadcast product of the slopes and
            # the dynamic-length range into the add as zeros, and the port computed attention without the bias
            slopes = self.slopes.value(device).reshape((-1, 1))
            bias = slopes @ ops.cast(kv_pos, DType.float32).reshape((1, -1))
            scores = scores + bias.reshape((1, self.kv_heads, group, -1))
        hidden = ops.constant(-1e30, DType.float32, device=device)
        scores = ops.where(visible.reshape((-1, 1, 1, visible.shape[1])), scores, hidden)
        probs = ops.cast(ops.softmax(scores, axis=-1), q.dtype)
        if TRAITS.differential_attention:
            return self._differential(probs, v_rows)
        return (probs @ v_rows).reshape((-1, self.heads, self.head_dim))

    def _differential(self, probs: TensorValue, v_rows: TensorValue) -> TensorValue:
        """Differential attention over the softmax maps ``probs`` ``[tokens, kv_heads, group, positions]``.

        Heads ``i`` and ``i + heads/2`` form a pair; both read the values of both
        (each head's own, concatenated along head_dim: ``2 * head_dim`` wide).
        The pair's output is the first head's minus ``lambda`` times the second's,
        ``lambda = exp(q1 . k1) - exp(q2 . k2) + lambda_init``, normed over its
        ``2 * head_dim`` channels without a weight and scaled by ``1 - lambda_init``;
        the pairs side by side are what ``o_proj`` reads.
        """
        tokens, positions, half = probs.shape[0], v_rows.shape[2], self.heads // 2
        group = self.heads // self.kv_heads
        per_head = ops.broadcast_to(v_rows.reshape((tokens, self.kv_heads, 1, positions, self.head_dim)),
                                    (tokens, self.kv_heads, group, positions, self.head_dim))
        per_head = per_head.reshape((tokens, self.heads, positions, self.head_dim))
        pair_values = ops.concat((per_head[:, :half], per_head[:, half:]), axis=-1)
        maps = probs.reshape((tokens, self.heads, 1, positions))
        out = (maps @ ops.concat((pair_values, pair_values), axis=1)).reshape((tokens, self.heads, 2 * self.head_dim))
        weight = (ops.exp(ops.sum(ops.cast(self.lambda_q1 * self.lambda_k1, DType.float32), axis=-1))
                  - ops.exp(ops.sum(ops.cast(self.lambda_q2 * self.lambda_k2, DType.float32), axis=-1)))
        weight = ops.cast(weight, out.dtype) + self.lambda_init
        return self.pair_norm(out[:, :half] - weight * out[:, half:]) * (1.0 - self.lambda_init)


def differential_lambda_init(layer: int) -> float:
    """The differential attention's lambda_init for a layer (0-based): ``0.8 - 0.6 exp(-0.3 layer)``, the
    Differential Transformer's schedule, which DiffLlama computes from the layer index (no config key holds it)."""
    return 0.8 - 0.6 * math.exp(-0.3 * layer)


def alibi_slopes(heads: int, max_bias: float = 8.0) -> np.ndarray:
    """ALiBi's per-head slopes: ``2 ** -(max_bias * i / n)`` for the ``n`` heads of the largest power of two not above
    ``heads``, then every other slope of twice that many for the heads left over."""
    def schedule(count: int) -> np.ndarray:
        return 2.0 ** (-max_bias * np.arange(1, count + 1) / count)

    base = 2 ** int(np.floor(np.log2(heads)))
    extra = schedule(2 * base)[0::2][: heads - base]
    return np.concatenate([schedule(base), extra]).astype(np.float32)


class CachePerKVHead:
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


# --------------------------------------------------------------------------- multi-head latent attention

#: The eps of the latent norms (q_a_layernorm, kv_a_layernorm): their norm class's default where the MLA modeling code
#: builds them (DeepSeek-V3, Youtu), not the config's eps; the catalog names a model whose code builds them otherwise.
LATENT_NORM_EPS = 1e-6


def latent_widths(config: Any) -> tuple[int, int, int]:
    """``(no-rope, rope, value)`` channels per head of latent attention."""
    return int(config.qk_nope_head_dim), int(config.qk_rope_head_dim), int(config.v_head_dim)


def latent_cache_width(config: Any) -> int:
    """Each cache head's width: a key's (its no-rope and rope channels), or a value's where that is wider."""
    nope, rope, value = latent_widths(config)
    return max(nope + rope, value)


def latent_attention_scale(config: Any) -> float:
    """``1 / sqrt(no-rope + rope)``; where the family's code says so, times mscale squared when a rope scaling sets
    ``mscale_all_dim`` (YaRN's temperature, which DeepSeek-V3's code squares into the softmax scale)."""
    nope, rope, _ = latent_widths(config)
    scale = (nope + rope) ** -0.5
    if TRAITS.latent_mscale:
        params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
        if isinstance(params, dict) and params.get("rope_type", params.get("type", "default")) != "default":
            factor, all_dim = float(params.get("factor") or 1.0), float(params.get("mscale_all_dim") or 0.0)
            if all_dim and factor > 1.0:
                mscale = 0.1 * all_dim * math.log(factor) + 1.0
                scale *= mscale * mscale
    return scale


class LatentAttention(Module):
    """Multi-head latent attention (DeepSeek-V2/V3 style) written as plain attention over MAX's paged KV cache.

    Queries come through a low-rank pair (``q_a_proj``, its RMS norm, ``q_b_proj``)
    or one ``q_proj``; each head's query is ``qk_nope_head_dim`` channels without
    rotary, then ``qk_rope_head_dim`` rotated ones. ``kv_a_proj_with_mqa`` gives a
    ``kv_lora_rank`` latent and one rope key every head shares; ``kv_b_proj``
    decompresses the normed latent into each head's no-rope key and its value.
    The path that runs, on the CPU and on a GPU alike: the decompressed keys
    (no-rope part, then the shared rotated part) and the values, zero-padded to
    the key width, go into a cache of ``heads`` heads of that width; MAX's
    ``flash_attention_ragged`` attends; the output is sliced back to
    ``v_head_dim``. Zero value channels add nothing, so the result is exact.
    MAX's own MLA block caches the latent instead (less memory per token), but
    its kernels run on GPUs only: MAX's DeepSeek-V2 refuses a CPU.
    """

    def __init__(self, *, config: Any, kv_params: KVCacheParams, dtype: DType, device: DeviceRef,
                 rotary: RotaryTable | None) -> None:
        super().__init__()
        hidden = int(config.hidden_size)
        self.heads = int(config.num_attention_heads)
        self.nope, self.rope, self.v_dim = latent_widths(config)
        self.rank = int(config.kv_lora_rank)
        self.head_dim = latent_cache_width(config)
        self.kv_params = kv_params
        self.rotary = rotary
        self.scale = latent_attention_scale(config)
        query = self.heads * (self.nope + self.rope)
        if TRAITS.latent_attention == "low_rank_query":
            q_rank = int(config.q_lora_rank)
            self.q_a_proj = Linear(hidden, q_rank, dtype, device, has_bias=TRAITS.qkv_bias)
            self.q_a_layernorm = make_norm(q_rank, LATENT_NORM_EPS, dtype, device)
            self.q_b_proj = Linear(q_rank, query, dtype, device)
        else:
            self.q_proj = Linear(hidden, query, dtype, device)
        self.kv_a_proj_with_mqa = Linear(hidden, self.rank + self.rope, dtype, device, has_bias=TRAITS.qkv_bias)
        self.kv_a_layernorm = make_norm(self.rank, LATENT_NORM_EPS, dtype, device)
        self.kv_b_proj = Linear(self.rank, self.heads * (self.nope + self.v_dim), dtype, device)
        self.o_proj = Linear(self.heads * self.v_dim, hidden, dtype, device, has_bias=TRAITS.o_bias)

    def __call__(self, layer_idx: TensorValue, x: TensorValue, kv_collection: PagedCacheValues,
                 freqs_cis: TensorValue, input_row_offsets: TensorValue) -> TensorValue:
        if TRAITS.latent_attention == "low_rank_query":
            q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))
        else:
            q = self.q_proj(x)
        q = q.reshape((-1, self.heads, self.nope + self.rope))
        compressed = self.kv_a_proj_with_mqa(x)
        latent, k_rope = compressed[:, :self.rank], compressed[:, self.rank:]
        kv = self.kv_b_proj(self.kv_a_layernorm(latent)).reshape((-1, self.heads, self.nope + self.v_dim))
        k_nope, v = kv[:, :, :self.nope], kv[:, :, self.nope:]
        q_rope, k_rope = q[:, :, self.nope:], k_rope.reshape((-1, 1, self.rope))
        if self.rotary is not None:
            q_rope = rotate_leading(self.rotary, q_rope, input_row_offsets, kv_collection)
            k_rope = rotate_leading(self.rotary, k_rope, input_row_offsets, kv_collection)
        k_rope = ops.broadcast_to(k_rope, shape=(k_nope.shape[0], self.heads, self.rope))
        q = zero_padded(ops.concat((q[:, :, :self.nope], q_rope), axis=-1), self.head_dim)
        k = zero_padded(ops.concat((k_nope, k_rope), axis=-1), self.head_dim)
        store_k_cache_ragged(kv_collection, k, input_row_offsets, layer_idx)
        store_v_cache_ragged(kv_collection, zero_padded(v, self.head_dim), input_row_offsets, layer_idx)
        out = flash_attention_ragged(self.kv_params, q, input_row_offsets, kv_collection, layer_idx,
                                     mask_variant=MHAMaskVariant.CAUSAL_MASK, scale=self.scale)
        return self.o_proj(out[:, :, :self.v_dim].reshape((-1, self.heads * self.v_dim)))


class LatentCache:
    """A config view that sizes the KV cache for :class:`LatentAttention`: one cache head per query head, each
    :func:`latent_cache_width` wide."""

    def __init__(self, config: Any) -> None:
        self._config = config

    def __getattr__(self, name: str) -> Any:
        if name == "num_key_value_heads":
            return int(self._config.num_attention_heads)
        if name == "head_dim":
            return latent_cache_width(self._config)
        return getattr(self._config, name)

    def __contains__(self, name: str) -> bool:
        return name in self._config


# --------------------------------------------------------------------------- MLP


def activation(x: TensorValue) -> TensorValue:
    """The MLP's activation."""
    if TRAITS.activation == "gelu":
        return ops.gelu(x)
    elif TRAITS.activation == "gelu_tanh":
        return ops.gelu(x, approximate="tanh")
    elif TRAITS.activation == "relu":
        return ops.relu(x)
    elif TRAITS.activation == "relu2":
        return ops.relu(x) * ops.relu(x)
    elif TRAITS.activation == "quick_gelu":
        return x * ops.sigmoid(x * 1.702)
    elif TRAITS.activation == "tanh":
        return ops.tanh(x)
    else:
        return ops.silu(x)


class XIELU(Module):
    """xIELU: quadratic above zero, an exponential below, shaped by four scalars the checkpoint holds per layer."""

    def __init__(self, dtype: DType, device: DeviceRef) -> None:
        super().__init__()
        self.alpha_p = Weight("alpha_p", dtype, [1], device)
        self.alpha_n = Weight("alpha_n", dtype, [1], device)
        self.beta = Weight("beta", dtype, [], device)
        self.eps = Weight("eps", dtype, [], device)

    def __call__(self, x: TensorValue) -> TensorValue:
        alpha_p = ops.log1p(ops.exp(self.alpha_p))  # softplus keeps both slopes positive
        alpha_n = self.beta + ops.log1p(ops.exp(self.alpha_n))
        beta = ops.broadcast_to(self.beta, [1])
        negative = (ops.exp(ops.min(x, ops.broadcast_to(self.eps, [1]))) - 1.0 - x) * alpha_n + beta * x
        return ops.where(x > 0, alpha_p * x * x + beta * x, negative)


class PortMLP(Module):
    """The feed-forward block."""

    def __init__(self, *, config: Any, dtype: DType, device: DeviceRef, width: int | None = None) -> None:
        super().__init__()
        hidden = int(config.hidden_size)
        inner = width or int(config_value(config, "intermediate_size", 4 * hidden))
        if TRAITS.mlp == "gated":
            self.gate_proj = Linear(hidden, inner, dtype, device, has_bias=TRAITS.mlp_bias)
        self.up_proj = Linear(hidden, inner, dtype, device, has_bias=TRAITS.mlp_bias)
        self.down_proj = Linear(inner, hidden, dtype, device, has_bias=TRAITS.mlp_bias)
        if TRAITS.mlp_inner_norm:
            self.inner_norm = make_norm(inner, float(config_value(config, "norm_eps", 1e-5)), dtype, device)
        if TRAITS.activation == "xielu":
            self.act_fn = XIELU(dtype, device)

    def __call__(self, x: TensorValue) -> TensorValue:
        if TRAITS.mlp == "gated":
            inner = activation(self.gate_proj(x)) * self.up_proj(x)
        elif TRAITS.activation == "xielu":
            inner = self.act_fn(self.up_proj(x))
        else:
            inner = activation(self.up_proj(x))
        if TRAITS.mlp_inner_norm:
            inner = self.inner_norm(inner)  # BitNet: what the down projection reads is normed first
        return self.down_proj(inner)


# --------------------------------------------------------------------------- mixture of experts


def expert_layers(config: Any) -> list[bool]:
    """Whether each layer routes its tokens through experts; the others keep a dense MLP of ``intermediate_size``."""
    layers = int(config.num_hidden_layers)
    routed = [True] * layers
    if "mlp_only_layers" in TRAITS.moe_dense_layers:
        dense = {int(i) for i in getattr(config, "mlp_only_layers", None) or []}
        routed = [r and i not in dense for i, r in enumerate(routed)]
    if "decoder_sparse_step" in TRAITS.moe_dense_layers:
        step = int(getattr(config, "decoder_sparse_step", None) or 1)
        routed = [r and (i + 1) % step == 0 for i, r in enumerate(routed)]
    if "first_k_dense_replace" in TRAITS.moe_dense_layers:
        first = int(getattr(config, "first_k_dense_replace", None) or 0)
        routed = [r and i >= first for i, r in enumerate(routed)]
    if "moe_layer_freq" in TRAITS.moe_dense_layers:
        every = int(getattr(config, "moe_layer_freq", None) or 1)
        routed = [r and i % every == 0 for i, r in enumerate(routed)]
    if "moe_layer_interval" in TRAITS.moe_dense_layers:  # ERNIE-4.5-MoE: every interval-th layer routes
        interval = int(getattr(config, "moe_layer_interval", None) or 1)
        routed = [r and (i + 1) % interval == 0 for i, r in enumerate(routed)]
    if "moe_layer_start_index" in TRAITS.moe_dense_layers:
        start = int(getattr(config, "moe_layer_start_index", None) or 0)
        routed = [r and i >= start for i, r in enumerate(routed)]
    if "moe_layer_end_index" in TRAITS.moe_dense_layers:
        end = getattr(config, "moe_layer_end_index", None)
        last = layers - 1 if end is None or int(end) < 0 else int(end)
        routed = [r and i <= last for i, r in enumerate(routed)]
    if "mlp_layer_types" in TRAITS.moe_dense_layers:
        kinds = list(getattr(config, "mlp_layer_types", None) or ["sparse"] * layers)
        routed = [r and str(kind) == "sparse" for r, kind in zip(routed, kinds, strict=True)]
    return routed


def _one_hot(indices: TensorValue, count: int) -> TensorValue:
    """``[tokens, count]`` float32: 1 where the column is ``indices`` (a ``[tokens, 1]`` column of expert ids)."""
    experts = ops.range(0, count, 1, out_dim=count, dtype=indices.dtype, device=indices.device)
    return ops.cast(ops.equal(indices, experts.reshape((1, -1))), DType.float32)


def _row_sum(x: TensorValue) -> TensorValue:
    """``[rows, 1]``: each row's sum over its few columns (a group's two best scores), as column adds."""
    total = x[:, 0:1]
    for column in range(1, int(x.shape[-1])):
        total = total + x[:, column:column + 1]
    return total


class PortRouter(MoEGate):
    """Scores every expert for each token and keeps the top k with their weights.

    Both expert paths take the experts and weights from here, so what the CPU
    path proves against the reference is the routing the GPU path uses.
    """

    def __init__(self, *, config: Any, weights_dtype: DType, devices: list[DeviceRef], hidden_dim: int,
                 num_experts: int, num_experts_per_token: int, dtype: DType = DType.float32) -> None:
        super().__init__(devices, hidden_dim, num_experts, num_experts_per_token, weights_dtype,
                         linear_cls=functools.partial(Linear, has_bias=TRAITS.moe_router_bias))
        if TRAITS.moe_renormalise == "config":
            self.renormalise = bool(config_value(config, "norm_topk_prob", False))
        else:
            self.renormalise = TRAITS.moe_renormalise == "always"
        if TRAITS.moe_routed_scaling:
            self.scaling = float(config_value(config, "routed_scaling", 1.0))
        if TRAITS.moe_correction_bias:
            shape = [1, num_experts] if TRAITS.moe_correction_bias_row else [num_experts]
            self.e_score_correction_bias = Weight("e_score_correction_bias", DType.float32, shape, devices[0])
        if TRAITS.moe_grouped_topk:
            self.groups = int(config_value(config, "n_group", 1) or 1)
            self.group_top_k = int(config_value(config, "topk_group", 1) or 1)

    @override
    def __call__(self, hidden_state: TensorValue) -> tuple[TensorValue, TensorValue]:
        """``(indices, weights)``: each token's top-k experts and what their outputs are multiplied by."""
        indices, weights, _ = self.route(hidden_state)
        return indices, weights

    def route(self, hidden_state: TensorValue) -> tuple[TensorValue, TensorValue, TensorValue]:
        """``(indices, weights, choice)``: the top-k experts, their weights, and the float32 scores the top-k was
        taken over (what verify compares with the reference to tell a near-tie from a wrong choice)."""
        logits = ops.cast(self.gate_score(hidden_state), DType.float32)
        scores = ops.sigmoid(logits) if TRAITS.moe_router == "sigmoid" else ops.softmax(logits)
        choice = scores + self._correction_bias() if TRAITS.moe_correction_bias else scores
        if TRAITS.moe_grouped_topk and self.groups > 1:
            choice = self._within_best_groups(choice)
        if TRAITS.moe_correction_bias:
            # the bias only chooses; the chosen experts are weighed by their plain scores: the chosen values less
            # the bias of each chosen expert
            chosen, indices = ops.top_k(choice, k=self.num_experts_per_token, axis=-1)
            weights = chosen - ops.gather(self._correction_bias(), indices, axis=0)
        else:
            weights, indices = ops.top_k(choice, k=self.num_experts_per_token, axis=-1)
        if TRAITS.moe_renormalise != "never" and self.renormalise:
            weights = self._renormalised(logits, weights)
        if TRAITS.moe_routed_scaling:
            weights = weights * self.scaling
        return indices, ops.cast(weights, hidden_state.dtype), choice

    def _correction_bias(self) -> TensorValue:
        """The score-correction bias, one value per expert (ERNIE-4.5-MoE stores it as a ``[1, experts]`` row)."""
        bias = self.e_score_correction_bias
        return bias.reshape((self.num_experts,)) if TRAITS.moe_correction_bias_row else bias

    def _within_best_groups(self, choice: TensorValue) -> TensorValue:
        """``choice`` with every expert outside the ``topk_group`` best groups pushed out of reach; a group's score
        is the sum of its two best experts' (the group-limited top-k of DeepSeek-V3, dots.llm1, GLM-4-MoE)."""
        per_group = self.num_experts // self.groups
        best, _ = ops.top_k(choice.reshape((-1, per_group)), k=min(2, per_group), axis=-1)
        group_scores = _row_sum(best).reshape((-1, self.groups))
        _, chosen = ops.top_k(group_scores, k=self.group_top_k, axis=-1)
        group_of = ops.range(0, self.num_experts, 1, out_dim=self.num_experts, dtype=chosen.dtype,
                             device=choice.device) // per_group
        keep = ops.cast(ops.equal(chosen[:, 0:1], group_of.reshape((1, -1))), DType.float32)
        for g in range(1, self.group_top_k):
            keep = keep + ops.cast(ops.equal(chosen[:, g:g + 1], group_of.reshape((1, -1))), DType.float32)
        out_of_reach = ops.constant(-1e30, DType.float32, device=choice.device)
        return ops.where(keep > 0.5, choice, out_of_reach)

    def _renormalised(self, logits: TensorValue, weights: TensorValue) -> TensorValue:
        """The top-k weights divided by their sum. Under a plain softmax router that equals the softmax of the top-k
        logits, which is how it is computed: MAX 26.7's CPU graph returned wrong rows for the top-k values divided
        by their own sum in a prefill (every row after the first: a Mixtral twin's MoE block, rel. L2 0.15; a
        dots.llm1 twin's, 0.76), though a graph of the router alone divides right. The rows go wrong where columns
        of the quotient are sliced out: check-native's CPU path for MAX's own Qwen3-MoE gate, which divides
        plainly, matches transformers once it combines the experts without slicing (``every_expert_moe.py``)."""
        if TRAITS.moe_router == "softmax" and not TRAITS.moe_correction_bias and not TRAITS.moe_grouped_topk:
            top, _ = ops.top_k(logits, k=self.num_experts_per_token, axis=-1)
            return ops.softmax(top)
        else:
            # positive weights (sigmoid scores, softmax probabilities) over their sum, as the softmax of their logs
            # (the quotient itself is what MAX 26.7's CPU graph got wrong)
            return ops.softmax(ops.log(weights))


def expert_activation() -> GatedActivation:
    """The experts' activation as MAX's MoE kernels take it (fused where a kernel computes it)."""
    if TRAITS.activation == "silu":
        return GatedActivation()
    elif TRAITS.activation == "gelu_tanh":
        return GatedActivation(fused_activation="gelu_tanh")
    else:
        return GatedActivation(gated_activation_fn=make_concatenated_gated_activation_fn(activation))


class PortMoE(MoE):
    """Routed experts, and the shared expert beside them where the family has one.

    On a CPU every expert runs on every token and the router's top-k weights
    (zero for the experts a token did not choose) combine their outputs: the
    same sum the reference computes, without MAX's grouped-matmul kernels,
    which run on GPUs only. On a GPU MAX's MoE runs the same router's choice.
    """

    def __init__(self, *, config: Any, dtype: DType, device: DeviceRef) -> None:
        hidden = int(config.hidden_size)
        super().__init__(
            devices=[device], hidden_dim=hidden, num_experts=int(config_value(config, "experts")),
            num_experts_per_token=int(config_value(config, "top_k")),
            moe_dim=int(config_value(config, "expert_width")),
            gate_cls=functools.partial(PortRouter, config=config, weights_dtype=dtype),
            mlp_cls=functools.partial(MLP, has_bias=TRAITS.mlp_bias), dtype=dtype, activation=expert_activation(),
        )
        if TRAITS.moe_shared:
            width = config_value(config, "shared_width") or \
                int(config_value(config, "shared_count", 1)) * int(config_value(config, "expert_width"))
            self.shared_expert = PortMLP(config=config, dtype=dtype, device=device, width=int(width))
        if TRAITS.moe_shared_gate:
            self.shared_expert_gate = Linear(hidden, 1, dtype, device)

    @override
    def __call__(self, x: TensorValue) -> TensorValue:
        routed = self._every_expert(x) if self.devices[0].is_cpu() else super().__call__(x)
        if TRAITS.moe_shared_gate:
            return routed + ops.sigmoid(self.shared_expert_gate(x)) * self.shared_expert(x)
        elif TRAITS.moe_shared:
            return routed + self.shared_expert(x)
        else:
            return routed

    def _every_expert(self, x: TensorValue) -> TensorValue:
        """Every expert on every token, each output times its weight in the router's choice (0 if not chosen)."""
        indices, weights = self.gate(x)
        chosen = ops.cast(weights, DType.float32)
        combine = chosen[:, 0:1] * _one_hot(indices[:, 0:1], self.num_experts)
        for k in range(1, self.num_experts_per_token):
            combine = combine + chosen[:, k:k + 1] * _one_hot(indices[:, k:k + 1], self.num_experts)
        combine = ops.cast(combine, x.dtype)
        out = None
        for j, expert in enumerate(self.experts):
            y = expert.down_proj(activation(expert.gate_proj(x)) * expert.up_proj(x)) * combine[:, j:j + 1]
            out = y if out is None else out + y
        assert out is not None
        return out


# --------------------------------------------------------------------------- block


class LanguageAdapter(Module):
    """X-MOD: the bottleneck MLP of the one language the port serves (dense, the MLP's activation, dense), which the
    model picks by a language id; the weight table sets the other languages' adapters aside."""

    def __init__(self, *, config: Any, dtype: DType, device: DeviceRef) -> None:
        super().__init__()
        hidden = int(config.hidden_size)
        width = hidden // int(config_value(config, "adapter_reduction_factor", 2))
        self.dense1 = Linear(hidden, width, dtype, device, has_bias=True)
        self.dense2 = Linear(width, hidden, dtype, device, has_bias=True)
        if TRAITS.adapter_norm == "own":
            self.norm = make_norm(hidden, float(config_value(config, "norm_eps", 1e-5)), dtype, device)

    def __call__(self, x: TensorValue) -> TensorValue:
        return self.dense2(activation(self.dense1(x)))


class PortBlock(Module):
    """One decoder layer: norms, attention, MLP and the residual adds."""

    def __init__(self, *, config: Any, attention: Module, mlp: Module, dtype: DType,
                 device: DeviceRef) -> None:
        super().__init__()
        self.self_attn = attention
        self.mlp = mlp
        if TRAITS.residual_multiplier:
            self.multiplier = float(config_value(config, "residual_multiplier", 1.0))
        eps = float(config_value(config, "norm_eps", 1e-5))
        for name in NORM_NAMES:
            setattr(self, name, make_norm(int(config.hidden_size), eps, dtype, device))
        if TRAITS.language_adapter:
            self.language_adapter = LanguageAdapter(config=config, dtype=dtype, device=device)
        if TRAITS.per_layer_inputs:
            hidden, width = int(config.hidden_size), int(config_value(config, "per_layer_input_width"))
            self.per_layer_input_gate = Linear(hidden, width, dtype, device, has_bias=False)
            self.per_layer_projection = Linear(width, hidden, dtype, device, has_bias=False)
            self.post_per_layer_input_norm = make_norm(hidden, eps, dtype, device)
        if TRAITS.layer_scalar:
            self.layer_scalar = Weight("layer_scalar", dtype, [1], device)

    def __call__(self, layer_idx: TensorValue, x: TensorValue, kv_collection: PagedCacheValues,
                 freqs_cis: TensorValue, input_row_offsets: TensorValue,
                 per_layer_input: TensorValue | None = None) -> TensorValue:
        if TRAITS.residual == "parallel":
            out = self._parallel(layer_idx, x, kv_collection, freqs_cis, input_row_offsets)
        else:
            out = self._sequential(layer_idx, x, kv_collection, freqs_cis, input_row_offsets)
        if TRAITS.per_layer_inputs:
            assert per_layer_input is not None
            out = out + self._per_layer_input(out, per_layer_input)
        if TRAITS.layer_scalar:
            out = out * self.layer_scalar  # Gemma 4: the whole layer output times its stored scalar
        return out

    def _per_layer_input(self, h: TensorValue, per_layer_input: TensorValue) -> TensorValue:
        """Gemma 4: the layer's output, gated down to the per-layer width, activated, times this layer's own input,
        projected back and normed: what is added to the output."""
        gated = activation(self.per_layer_input_gate(h)) * per_layer_input
        return self.post_per_layer_input_norm(self.per_layer_projection(gated))

    def _sequential(self, layer_idx: TensorValue, x: TensorValue, kv_collection: PagedCacheValues,
                    freqs_cis: TensorValue, input_row_offsets: TensorValue) -> TensorValue:
        """``h = x + post_attention(attn(pre_attention(x)))``, then ``h + post_mlp(mlp(pre_mlp(h)))``; post-LN norms
        each sum instead."""
        normed = self._norm("pre_attention", x) if "pre_attention" in TRAITS.norms else x
        attn = self.self_attn(layer_idx, normed, kv_collection, freqs_cis, input_row_offsets)
        if "post_attention" in TRAITS.norms:
            attn = self._norm("post_attention", attn)
        if TRAITS.residual_multiplier:
            attn = attn * self.multiplier
        h = (normed if TRAITS.residual_from_normed else x) + attn  # BLOOM's option: the normed input is the residual
        if "after_attention_add" in TRAITS.norms:
            h = self._norm("after_attention_add", h)  # post-LN: the residual stream itself is normed
        mlp_in = self._norm("pre_mlp", h) if "pre_mlp" in TRAITS.norms else h
        mlp = self.mlp(mlp_in)
        if "post_mlp" in TRAITS.norms:
            mlp = self._norm("post_mlp", mlp)
        if TRAITS.residual_multiplier:
            mlp = mlp * self.multiplier
        if TRAITS.residual_from_normed:
            return mlp_in + mlp
        if TRAITS.language_adapter:
            return self._adapted(h + mlp)
        elif "after_mlp_add" in TRAITS.norms:
            return self._norm("after_mlp_add", h + mlp)
        else:
            return h + mlp

    def _adapted(self, x: TensorValue) -> TensorValue:
        """The served language's adapter on the MLP's residual sum, its input normed as the model does (by the
        block's norm after the MLP's add, or its own), added back to that input or to the sum; then that norm."""
        if TRAITS.adapter_norm == "block":
            normed = self._norm("after_mlp_add", x)
        elif TRAITS.adapter_norm == "own":
            normed = self.language_adapter.norm(x)
        else:
            normed = x
        kept = normed if TRAITS.adapter_residual_normed else x
        if "after_mlp_add" in TRAITS.norms:
            return self._norm("after_mlp_add", kept + self.language_adapter(normed))
        else:
            return kept + self.language_adapter(normed)

    def _parallel(self, layer_idx: TensorValue, x: TensorValue, kv_collection: PagedCacheValues,
                  freqs_cis: TensorValue, input_row_offsets: TensorValue) -> TensorValue:
        """``x + attn(pre_attention(x)) + mlp(pre_mlp(x))``; with one shared norm the MLP reads the same input."""
        normed = self._norm("pre_attention", x)
        attn = self.self_attn(layer_idx, normed, kv_collection, freqs_cis, input_row_offsets)
        if "pre_mlp" in TRAITS.norms:
            return x + attn + self.mlp(self._norm("pre_mlp", x))
        else:
            return x + attn + self.mlp(normed)

    def _norm(self, role: str, x: TensorValue) -> TensorValue:
        return getattr(self, NORM_ROLES[role])(x)


class Unnormed(Module):
    """A norm the family builds as an Identity on some layers (ModernBERT-decoder's first pre-attention norm: its
    embeddings are normed already); it has no weight."""

    def __call__(self, x: TensorValue) -> TensorValue:
        return x


#: Norm role -> the module name the checkpoint uses for it, in block order.
NORM_ROLES: dict[str, str] = TRAITS.norms

#: The block's norm modules.
NORM_NAMES: tuple[str, ...] = tuple(NORM_ROLES.values())


# --------------------------------------------------------------------------- embedding and head


def embedding_multiplier(config: Any) -> float:
    """What the embeddings are multiplied by."""
    if TRAITS.embedding_scale == "sqrt_hidden":
        return float(np.float32(math.sqrt(int(config.hidden_size))))
    elif TRAITS.embedding_scale == "config":
        return float(config_value(config, "embedding_multiplier", 1.0))
    else:
        return 1.0


class ScaledEmbedding(Embedding):
    """Token embedding that scales its own output, as the HF embedding module does (its output is the embed tap)."""

    def __init__(self, vocab: int, hidden: int, dtype: DType, device: DeviceRef, *, scale: float) -> None:
        super().__init__(vocab, hidden, dtype, device)
        self.scale = scale

    def __call__(self, indices: Any) -> TensorValue:
        return super().__call__(indices) * self.scale


class PortHead(Linear):
    """The LM head; :meth:`finish` applies what HF applies after its ``lm_head`` module, in the ``ForCausalLM``."""

    def __init__(self, *, config: Any, dtype: DType, device: DeviceRef) -> None:
        super().__init__(int(config.hidden_size), int(config.vocab_size), dtype, device, has_bias=TRAITS.head_bias)
        if TRAITS.logit_scale:
            self.logit_scale = float(config_value(config, "logit_scale", 1.0))
        if TRAITS.logits_divisor:
            self.divisor = float(config_value(config, "logits_divisor", 1.0))
        if TRAITS.final_softcap:
            self.softcap = float(config_value(config, "final_softcap"))

    def finish(self, logits: TensorValue) -> TensorValue:
        if TRAITS.logit_scale:
            logits = logits * self.logit_scale
        if TRAITS.logits_divisor:
            logits = logits / self.divisor
        if TRAITS.final_softcap:
            logits = ops.tanh(logits / self.softcap) * self.softcap
        return logits


class NoFinalNorm(Module):
    """The family has no norm after its last layer: the head reads the last layer's output as it is."""

    def __call__(self, x: TensorValue) -> TensorValue:
        return x


class HeadTransform(Module):
    """Between the last layer and the head: a dense, the MLP's activation and a norm (BERT-style heads)."""

    def __init__(self, *, config: Any, dtype: DType, device: DeviceRef) -> None:
        super().__init__()
        hidden = int(config.hidden_size)
        width = embedding_width(config) if TRAITS.embedding_projection else hidden  # the tied head's input
        self.dense = Linear(hidden, width, dtype, device, has_bias=not TRAITS.head_transform_unbiased)
        self.norm = make_norm(width, float(config_value(config, "norm_eps", 1e-5)), dtype, device)

    def __call__(self, x: TensorValue) -> TensorValue:
        return self.norm(activation(self.dense(x)))


class _NoRope:
    """Stands in for ``Transformer.rope``: each attention layer holds its own rotary table."""

    freqs_cis: TensorValue | None = None


# --------------------------------------------------------------------------- decoder


class PortDecoder(Transformer):
    """Embedding, ``num_hidden_layers`` blocks, final norm and head."""

    def __init__(self, config: Any, *, kv_params: KVCacheParams, dtype: DType, devices: Sequence[DeviceRef],
                 max_seq_len: int, return_logits: Any, tie_word_embeddings: bool) -> None:
        device = devices[0]
        sliding = [False] * int(config.num_hidden_layers) if TRAITS.sliding_window == "none" else sliding_layers(config)
        if TRAITS.latent_attention != "none":
            rot_dim = latent_widths(config)[1]  # latent attention rotates only its rope channels, all of them
        else:
            rot_dim = rotary_width(config, head_dim_of(config))
        if TRAITS.nope == "all":
            tables: list[RotaryTable | None] = [None] * len(sliding)
        elif TRAITS.nope == "none":
            tables = list(rotary_tables(config, rot_dim, max_seq_len, sliding))
        else:
            with_rope = rotary_layers(config, sliding)
            tables = [table if rope else None for table, rope in
                      zip(rotary_tables(config, rot_dim, max_seq_len, sliding), with_rope, strict=True)]
        if TRAITS.moe:
            routed = expert_layers(config)
            mlps: list[Module] = [PortMoE(config=config, dtype=dtype, device=device) if routes else
                                  PortMLP(config=config, dtype=dtype, device=device) for routes in routed]
        else:
            mlps = [PortMLP(config=config, dtype=dtype, device=device,
                            width=int(config.intermediate_size[index]) if TRAITS.mlp_width_per_layer else None)
                    for index in range(len(sliding))]
        if TRAITS.latent_attention != "none":
            attentions: list[Module] = [LatentAttention(config=config, kv_params=kv_params, dtype=dtype, device=device,
                                                        rotary=table) for table in tables]
        else:
            attentions = [PortAttention(config=config, kv_params=kv_params, dtype=dtype, device=device,
                                        rotary=tables[index], sliding=sliding[index]) for index in range(len(sliding))]
        layers = [PortBlock(config=config, dtype=dtype, device=device, attention=attentions[index], mlp=mlps[index])
                  for index in range(len(sliding))]
        if TRAITS.o_bias_last_layer:
            for layer in layers[:-1]:  # only the last layer's output projection carries a bias
                attention = layer.self_attn
                attention.o_proj = Linear(attention.heads * attention.head_dim, int(config.hidden_size), dtype,
                                          device, has_bias=False)
        if TRAITS.differential_attention:
            for index, layer in enumerate(layers):
                layer.self_attn.lambda_init = differential_lambda_init(index)
        if TRAITS.unnormed_first_layer:
            setattr(layers[0], NORM_ROLES["pre_attention"], Unnormed())
        if TRAITS.scale_by_layer:
            for index, layer in enumerate(layers):
                layer.self_attn.scale /= index + 1  # the scale divided by the layer's depth, as the family does
        width = embedding_width(config) if TRAITS.embedding_projection else int(config.hidden_size)
        vocab_rows = int(config.vocab_size) + TRAITS.embedding_extra_rows if TRAITS.embedding_extra_rows else \
            int(config.vocab_size)
        if TRAITS.embedding_scale_in_module:
            embedding = ScaledEmbedding(vocab_rows, width, dtype, device,
                                        scale=embedding_multiplier(config))
            multiplier = 1.0
        elif TRAITS.embedding_scale != "none":
            embedding = Embedding(vocab_rows, width, dtype, device)
            multiplier = embedding_multiplier(config)
        else:
            embedding = Embedding(vocab_rows, width, dtype, device)
            multiplier = 1.0
        if TRAITS.logit_scale or TRAITS.logits_divisor or TRAITS.final_softcap:
            head: Linear = PortHead(config=config, dtype=dtype, device=device)
        else:
            head = Linear(width, int(config.vocab_size), dtype, device, has_bias=TRAITS.head_bias)
        if tie_word_embeddings:
            head.set_shared_weight("weight", embedding.weight)
        eps = float(config_value(config, "norm_eps", 1e-5))
        norm = make_norm(int(config.hidden_size), eps, dtype, device) if TRAITS.final_norm else NoFinalNorm()
        super().__init__(
            dim=int(config.hidden_size), n_heads=int(config.num_attention_heads), layers=layers,
            norm=norm, output=head, embedding=embedding,
            kv_params=kv_params, rope=_NoRope(), return_logits=return_logits, embedding_multiplier=multiplier,
        )
        if TRAITS.embedding_norm == "own":
            self.embed_norm = make_norm(width, eps, dtype, device)
        if TRAITS.token_type_row:
            types = int(config_value(config, "type_vocab_size", 2))
            self.token_type_embeddings = Embedding(types, width, dtype, device)
        if TRAITS.head_transform:
            self.head_transform = HeadTransform(config=config, dtype=dtype, device=device)
        if TRAITS.per_layer_inputs:
            self.per_layer_width = int(config_value(config, "per_layer_input_width"))
            packed = len(layers) * self.per_layer_width
            self.embed_tokens_per_layer = ScaledEmbedding(
                int(config_value(config, "per_layer_input_vocab", config.vocab_size)), packed, dtype, device,
                scale=float(np.float32(math.sqrt(self.per_layer_width))))
            self.per_layer_model_projection = Linear(int(config.hidden_size), packed, dtype, device, has_bias=False)
            self.projection_scale = float(np.float32(int(config.hidden_size) ** -0.5))
            self.per_layer_projection_norm = make_norm(self.per_layer_width, eps, dtype, device)
        if TRAITS.embedding_projection:
            self.embed_projection = Linear(width, int(config.hidden_size), dtype, device, has_bias=True)
        if TRAITS.embedding_side_tables:
            sizes = [(int(getattr(config, rows)), int(getattr(config, columns)))
                     for rows, columns in TRAITS.embedding_side_tables]
            self.side_tables = LayerList([Embedding(rows, columns, dtype, device) for rows, columns in sizes])
            self.input_map = Linear(width + sum(columns for _, columns in sizes), int(config.hidden_size), dtype,
                                    device, has_bias=True)
        if TRAITS.position_table or TRAITS.position_sinusoid != "none":
            rows = int(config_value(config, "max_positions"))
            if TRAITS.position_extra_rows:
                rows += TRAITS.position_extra_rows  # rows before position 0 (OPT's offset of 2)
            if TRAITS.position_table:
                self.embed_positions = Embedding(rows, width, dtype, device)
            else:
                self.sinusoid = SinusoidTable(rows, int(config.hidden_size))

    if TRAITS.logit_scale or TRAITS.logits_divisor or TRAITS.final_softcap or TRAITS.head_transform:
        @override
        def _postprocess_logits(self, h: TensorValue, input_row_offsets: TensorValue, return_n_logits: TensorValue,
                                capture_hidden_states: Any = None) -> tuple[TensorValue, ...]:
            return logits_postprocess(h, input_row_offsets, return_n_logits, norm=self.norm, lm_head=self._head,
                                      return_logits=self.return_logits, return_hidden_states=self.return_hidden_states,
                                      capture_hidden_states=capture_hidden_states)

        def _head(self, x: TensorValue) -> TensorValue:
            """What HF computes from the last hidden state: its head transform, head and logit arithmetic."""
            if TRAITS.head_transform:
                x = self.head_transform(x)
            head = self.lm_head
            if TRAITS.logit_scale or TRAITS.logits_divisor or TRAITS.final_softcap:
                assert isinstance(head, PortHead)
                return head.finish(head(x))
            else:
                return head(x)

    if TRAITS.position_table or TRAITS.position_sinusoid != "none" or TRAITS.embedding_norm != "none" or TRAITS.token_type_row or TRAITS.embedding_projection or TRAITS.embedding_side_tables or TRAITS.per_layer_inputs:  # noqa: E501
        @override
        def __call__(self, tokens: Any, kv_collection: PagedCacheValues, return_n_logits: TensorValue,
                     input_row_offsets: TensorValue, hidden_states: TensorValue | None = None) -> tuple[TensorValue, ...]:
            """What enters the first layer: the token embeddings, then what this family adds to them."""
            h = self.embed_tokens(tokens)
            if TRAITS.embedding_side_tables:
                # tables indexed by ids text does not carry (RoCBert's shape and pronunciation ids): their row 0
                looked_up = [table(tokens * 0) for table in self.side_tables]
                h = self.input_map(ops.concat([h, *looked_up], axis=-1))
            if TRAITS.embedding_scale != "none" and not TRAITS.embedding_scale_in_module:
                h = h * float(self.embedding_multiplier)
            if TRAITS.position_table or TRAITS.position_sinusoid != "none":
                # the table of absolute positions, learned or computed (its first rows sit before position 0 where
                # the family offsets them)
                _, positions = token_positions(input_row_offsets, kv_collection, h.shape[0], h.device)
                if TRAITS.position_offset:
                    positions = positions + TRAITS.position_offset
                if TRAITS.position_table:
                    h = h + self.embed_positions(positions)
                else:
                    h = h + ops.cast(ops.gather(self.sinusoid.value(h.device), positions, axis=0), h.dtype)
            if TRAITS.token_type_row:
                h = h + self.token_type_embeddings(tokens * 0)  # no token types are passed: every token is type 0
            if TRAITS.embedding_norm == "own":
                h = self.embed_norm(h)
            elif TRAITS.embedding_norm == "final":
                h = self.norm(h)  # the final norm's module normalises the embeddings too, as in HF
            if TRAITS.embedding_projection:
                h = self.embed_projection(h)
            if TRAITS.per_layer_inputs:
                return self._layers_with_inputs(h, self.per_layer_inputs(tokens, h), kv_collection, return_n_logits,
                                                input_row_offsets)
            return self._process_hidden_states(h, kv_collection, return_n_logits, input_row_offsets)

    if TRAITS.per_layer_inputs:
        def per_layer_inputs(self, tokens: Any, h: TensorValue) -> TensorValue:
            """Gemma 4: ``[tokens, layers, width]``, each layer's own input: the embeddings projected to every
            layer's width, scaled by hidden_size^-0.5 and normed, plus the rows of the per-layer token table,
            the sum times 2^-0.5."""
            layers, width = len(self.layers), self.per_layer_width
            projected = self.per_layer_model_projection(h) * self.projection_scale
            projected = self.per_layer_projection_norm(projected.reshape((-1, layers, width)))
            looked_up = self.embed_tokens_per_layer(tokens).reshape((-1, layers, width))
            return (projected + looked_up) * float(np.float32(2 ** -0.5))

        def _layers_with_inputs(self, h: TensorValue, per_layer: TensorValue, kv_collection: PagedCacheValues,
                                return_n_logits: TensorValue, input_row_offsets: TensorValue) -> tuple[TensorValue, ...]:
            """The layers, each given its own slice of ``per_layer``, then the donor's logits."""
            for index, layer in enumerate(self.layers):
                h = layer(ops.constant(index, DType.uint32, device=DeviceRef.CPU()), h, kv_collection,
                          freqs_cis=None, input_row_offsets=input_row_offsets, per_layer_input=per_layer[:, index, :])
            return self._postprocess_logits(h, input_row_offsets, return_n_logits)

    # Graph inputs and tracing are the donor's (ragged tokens, row offsets, paged KV cache).
    def input_tree(self, kv_params: KVCacheParams, needs_hidden_state_input: bool = False) -> Any:
        return Llama3.input_tree(self, kv_params, needs_hidden_state_input)  # type: ignore[arg-type]

    def input_types(self, kv_params: KVCacheParams, needs_hidden_state_input: bool = False) -> Any:
        return Llama3.input_types(self, kv_params, needs_hidden_state_input)  # type: ignore[arg-type]

    def trace(self, *input_types: Any, **kwargs: Any) -> Any:
        return Llama3.trace(self, *input_types, **kwargs)  # type: ignore[arg-type]
