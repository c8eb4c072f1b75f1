"""Where each ``config.json`` key goes in a MAX port.

One table, :data:`CONFIG_KEYS`, says for every known Hugging Face config key
whether the donor's MAX config class wires it (and into which field), whether
it needs graph code when set to a non-default value, or whether inference
ignores it. :func:`map_config` reads the table for every top-level and nested
key of a config. Keys not in the table are reported as unknown: read the
modeling code for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WIRED = "wired"  # the donor config class reads it
GRAPH = "graph"  # needs graph code in the port when active
SERVING = "serving"  # tokenizer / pipeline / generation, not the graph
IGNORED = "ignored"  # irrelevant to inference
UNKNOWN = "unknown"  # not in the table: read the modeling code

#: Values that mean "feature off" for GRAPH keys: such a key needs no code.
_OFF = (None, False, 0, 0.0, 1.0, "", [], {})


@dataclass(frozen=True)
class KeyRule:
    role: str
    max_field: str = ""
    note: str = ""
    #: For GRAPH keys: values that need no graph code (the key is then reported as wired, no-op).
    inactive: tuple[Any, ...] = _OFF


def _w(field: str, note: str = "") -> KeyRule:
    return KeyRule(WIRED, field, note)


def _g(note: str, inactive: tuple[Any, ...] = _OFF, field: str = "") -> KeyRule:
    return KeyRule(GRAPH, field, note, inactive)


def _s(note: str) -> KeyRule:
    return KeyRule(SERVING, "", note)


def _i(note: str = "training or bookkeeping only") -> KeyRule:
    return KeyRule(IGNORED, "", note)


#: HF config key (dotted for nested keys) -> where it goes. Knowledge as data.
CONFIG_KEYS: dict[str, KeyRule] = {
    # -- shape -------------------------------------------------------------
    "hidden_size": _w("hidden_size"),
    "n_embd": _w("hidden_size", "GPT-2 style name for hidden_size"),
    "d_model": _w("hidden_size", "alternative name for hidden_size"),
    "intermediate_size": _w("intermediate_size"),
    "n_inner": _w("intermediate_size", "None means 4 x hidden_size"),
    "ffn_hidden_size": _w("intermediate_size"),
    "num_hidden_layers": _w("num_hidden_layers"),
    "n_layer": _w("num_hidden_layers"),
    "num_layers": _w("num_hidden_layers"),
    "num_attention_heads": _w("num_attention_heads"),
    "n_head": _w("num_attention_heads"),
    "num_key_value_heads": _w("num_key_value_heads", "GQA; absent means = num_attention_heads"),
    "num_kv_heads": _w("num_key_value_heads"),
    "multi_query": _g("multi-query attention: one KV head", inactive=(None, False)),
    "head_dim": _w("kv_params.head_dim", "explicit head_dim; the donor may derive hidden_size / heads instead"),
    "vocab_size": _w("vocab_size"),
    "max_position_embeddings": _w("max_seq_len"),
    "n_positions": _w("max_seq_len"),
    "seq_length": _w("max_seq_len"),
    "original_max_position_embeddings": _w("rope scaling", "rope scaling's pre-extension length"),
    "tie_word_embeddings": _w("tie_word_embeddings", "weights: lm_head may be absent from the checkpoint"),
    # -- norms -------------------------------------------------------------
    "rms_norm_eps": _w("rms_norm_eps"),
    "layer_norm_eps": _g("LayerNorm eps: the block uses LayerNorm, not RMSNorm", inactive=(None,), field="norm_method"),
    "layer_norm_epsilon": _g("LayerNorm eps: the block uses LayerNorm, not RMSNorm", inactive=(None,), field="norm_method"),
    "norm_epsilon": _w("rms_norm_eps", "norm eps: check in the modeling code whether it feeds RMSNorm or LayerNorm"),
    "norm_eps": _w("rms_norm_eps"),
    "use_qk_norm": _g("per-head RMS/LayerNorm on q and k before RoPE"),
    "qk_layernorm": _g("LayerNorm on q and k before RoPE"),
    "qk_norm": _g("norm on q and k before RoPE"),
    "use_post_attention_norm": _g("extra norm after attention (sandwich)"),
    "use_post_feedforward_norm": _g("extra norm after the MLP (sandwich)"),
    "norm_type": _g("norm variant", inactive=(None, "rms_norm", "rmsnorm")),
    # -- attention ---------------------------------------------------------
    "attention_bias": _g("bias on q/k/v (and o in some families)", field="attention_bias"),
    "attention_out_bias": _g("bias on the output projection"),
    "bias": _g("biases on linear layers"),
    "use_bias": _g("biases on linear layers"),
    "add_bias_linear": _g("biases on linear layers"),
    "add_qkv_bias": _g("bias on the fused qkv projection"),
    "qkv_bias": _g("bias on q/k/v"),
    "attention_dropout": _i("dropout: inactive at inference"),
    "attn_pdrop": _i("dropout: inactive at inference"),
    "attention_multiplier": _w("attention_multiplier", "attention scale override (Granite style)"),
    "query_pre_attn_scalar": _g("attention scale is query_pre_attn_scalar**-0.5, not head_dim**-0.5", inactive=(None,)),
    "attn_logit_softcapping": _g("tanh softcap on attention scores"),
    "attention_logit_softcapping": _g("tanh softcap on attention scores"),
    "sliding_window": _w("sliding_window", "donor must support the window; check which layers use it"),
    "use_sliding_window": _g("sliding-window attention switch", inactive=(None, False)),
    "max_window_layers": _g("layers past this index use full attention", inactive=(None,)),
    "sliding_window_pattern": _g("every Nth layer is global, the rest slide", inactive=(None, 0, 1)),
    "layer_types": _g("per-layer attention kind (sliding / full / other)", inactive=(None, [])),
    "cache_implementation": _s("HF cache choice: MAX uses its own paged KV cache"),
    "clip_qkv": _w("clip_qkv", "clamps q/k/v activations (OLMo style)"),
    "alibi": _g("ALiBi positional bias instead of RoPE: see check-walls", inactive=(None, False)),
    "position_embedding_type": _g("how positions enter the model", inactive=(None, "rope", "rotary")),
    # -- rotary --------------------------------------------------------------
    "rope_theta": _w("rope_theta"),
    "rotary_emb_base": _w("rope_theta"),
    "rope_scaling": _g("rope scaling dict: the donor handles llama3 / longrope only", inactive=(None, {})),
    "rope_scaling.type": _g("rope scaling type", inactive=(None, "default")),
    "rope_scaling.rope_type": _g("rope scaling type", inactive=(None, "default", "llama3")),
    "rope_scaling.factor": _w("rope_scaling_params.factor"),
    "rope_scaling.low_freq_factor": _w("rope_scaling_params.low_freq_factor"),
    "rope_scaling.high_freq_factor": _w("rope_scaling_params.high_freq_factor"),
    "rope_scaling.original_max_position_embeddings": _w("rope_scaling_params.orig_max_position"),
    "rope_parameters": _w("rope_theta / rope_scaling_params", "transformers 5 rope dict"),
    "rope_parameters.rope_theta": _w("rope_theta"),
    "rope_parameters.rope_type": _g("rope scaling type", inactive=(None, "default", "llama3")),
    "rope_parameters.factor": _w("rope_scaling_params.factor"),
    "rope_parameters.low_freq_factor": _w("rope_scaling_params.low_freq_factor"),
    "rope_parameters.high_freq_factor": _w("rope_scaling_params.high_freq_factor"),
    "rope_parameters.original_max_position_embeddings": _w("rope_scaling_params.orig_max_position"),
    "rope_parameters.partial_rotary_factor": _g("only this fraction of head_dim is rotated", inactive=(None, 1, 1.0)),
    "partial_rotary_factor": _g("only this fraction of head_dim is rotated", inactive=(None, 1, 1.0)),
    "rotary_pct": _g("only this fraction of head_dim is rotated", inactive=(None, 1, 1.0)),
    "rotary_dim": _g("rotated width per head", inactive=(None,)),
    "rope_interleaved": _g("interleaved (GPT-J) rotary instead of half-split"),
    "no_rope_layers": _g("per-layer NoPE: these layers skip RoPE", inactive=(None, [])),
    "no_rope_layer_interval": _g("every Nth layer skips RoPE", inactive=(None, 0)),
    "rope_local_base_freq": _g("separate rope theta for sliding layers", inactive=(None,)),
    # -- MLP -----------------------------------------------------------------
    "hidden_act": _g("MLP activation: the donor uses silu", inactive=("silu", "swish")),
    "hidden_activation": _g("MLP activation: the donor uses silu", inactive=("silu", "swish")),
    "activation_function": _g("MLP activation: the donor uses silu", inactive=("silu", "swish")),
    "mlp_bias": _g("bias on gate/up/down"),
    "mlp_type": _g("MLP variant", inactive=(None, "gated", "swiglu")),
    # -- MoE -----------------------------------------------------------------
    "num_experts": _g("routed experts: needs an MoE donor", inactive=(None, 0, 1)),
    "num_local_experts": _g("routed experts: needs an MoE donor", inactive=(None, 0, 1)),
    "n_routed_experts": _g("routed experts: needs an MoE donor", inactive=(None, 0, 1)),
    "num_experts_per_tok": _g("top-k routing", inactive=(None, 0)),
    "moe_intermediate_size": _g("expert MLP width", inactive=(None, 0)),
    "shared_expert_intermediate_size": _g("shared expert beside the routed ones", inactive=(None, 0)),
    "n_shared_experts": _g("shared experts", inactive=(None, 0)),
    "norm_topk_prob": _g("renormalise top-k router weights", inactive=(None, False)),
    "decoder_sparse_step": _g("MoE every Nth layer", inactive=(None, 1)),
    "mlp_only_layers": _g("layers that keep a dense MLP", inactive=(None, [])),
    "first_k_dense_replace": _g("first k layers dense", inactive=(None, 0)),
    "router_aux_loss_coef": _i("router training loss"),
    "output_router_logits": _i("router training output"),
    "router_jitter_noise": _i("router training noise"),
    # -- block wiring and scales ----------------------------------------------
    "use_parallel_residual": _g("attention and MLP read the same input and are summed", inactive=(None, False)),
    "parallel_attn": _g("attention and MLP in parallel", inactive=(None, False)),
    "parallel_block": _g("attention and MLP in parallel", inactive=(None, False)),
    "residual_multiplier": _w("residual_multiplier"),
    "embedding_multiplier": _w("embedding_multiplier"),
    "scale_emb": _w("embedding_multiplier", "MiniCPM-style embedding scale"),
    "logits_scaling": _w("logits_scaling", "logits divided by this"),
    "logit_scale": _g("logits multiplied by this (Cohere)", inactive=(None, 1, 1.0)),
    "final_logit_softcapping": _g("tanh softcap on the final logits"),
    "output_multiplier_scale": _g("logit scale", inactive=(None, 1, 1.0)),
    "mup_width_multiplier": _g("muP logit scale", inactive=(None, 1, 1.0)),
    # -- quantization ----------------------------------------------------------
    "quantization_config": _g("quantized release: pick the MAX encoding and weight loading to match", inactive=(None, {})),
    # -- sub-configs of multimodal / wrapped models --------------------------
    "vision_config": _g("vision tower: outside a text-only port", inactive=(None, {})),
    "audio_config": _g("audio tower: outside a text-only port", inactive=(None, {})),
    "image_token_index": _s("multimodal placeholder token"),
    "image_token_id": _s("multimodal placeholder token"),
    # -- serving / tokenizer -------------------------------------------------
    "bos_token_id": _s("tokenizer: beginning-of-sequence id"),
    "eos_token_id": _s("tokenizer / generation stop id"),
    "pad_token_id": _s("tokenizer padding id"),
    "sep_token_id": _s("tokenizer separator id"),
    "decoder_start_token_id": _s("encoder-decoder generation start id"),
    "torch_dtype": _s("checkpoint dtype: choose the MAX encoding to match"),
    "dtype": _s("checkpoint dtype: choose the MAX encoding to match"),
    "use_cache": _i("HF cache switch"),
    "architectures": _s("registration name: arch.py name must equal architectures[0]"),
    "model_type": _s("selects the HF modeling code to compare against"),
    "auto_map": _s("remote code: see check-walls"),
    "is_encoder_decoder": _g("encoder-decoder: see check-walls", inactive=(None, False)),
    # -- bookkeeping -----------------------------------------------------------
    "transformers_version": _i(),
    "initializer_range": _i(),
    "initializer_factor": _i(),
    "embedding_dropout": _i("dropout: inactive at inference"),
    "hidden_dropout": _i("dropout: inactive at inference"),
    "hidden_dropout_prob": _i("dropout: inactive at inference"),
    "attention_probs_dropout_prob": _i("dropout: inactive at inference"),
    "resid_pdrop": _i("dropout: inactive at inference"),
    "embd_pdrop": _i("dropout: inactive at inference"),
    "summary_first_dropout": _i("dropout: inactive at inference"),
    "classifier_dropout": _i("classification head only"),
    "pretraining_tp": _i("training-time tensor parallel split; MAX ignores it"),
    "gradient_checkpointing": _i(),
    "tokenizer_class": _s("tokenizer class for AutoTokenizer"),
    "_name_or_path": _i(),
    "output_attentions": _i(),
    "output_hidden_states": _i(),
    "return_dict": _i(),
    "problem_type": _i(),
    "id2label": _i("classification labels"),
    "label2id": _i("classification labels"),
    "chunk_size_feed_forward": _i(),
    "tf_legacy_loss": _i(),
    "use_bfloat16": _i(),
    "keys_to_ignore_at_inference": _i(),
}

#: Sub-config containers whose keys mean what they mean at top level.
_TEXT_CONTAINERS = ("text_config", "language_config", "llm_config")


@dataclass(frozen=True)
class ConfigRow:
    key: str
    value: Any
    role: str
    max_field: str
    note: str

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, "role": self.role, "max_field": self.max_field, "note": self.note}


def map_config(config: dict[str, Any]) -> list[ConfigRow]:
    """One row per top-level and nested key, in the order of the config."""
    rows: list[ConfigRow] = []
    _walk(config, "", rows, depth=0)
    return rows


def _walk(node: dict[str, Any], prefix: str, rows: list[ConfigRow], depth: int) -> None:
    for key, value in node.items():
        path = f"{prefix}{key}"
        rows.append(_row(path, value))
        if isinstance(value, dict) and depth < 4 and not _is_label_map(key):
            _walk(value, f"{path}.", rows, depth + 1)


def _is_label_map(key: str) -> bool:
    return key in ("id2label", "label2id", "auto_map")


def _row(path: str, value: Any) -> ConfigRow:
    rule = _lookup(path)
    if rule is None:
        return ConfigRow(path, value, UNKNOWN, "", "not in the table: read the HF modeling code for it")
    role = rule.role
    note = rule.note
    if role == GRAPH and _is_inactive(value, rule.inactive):
        role, note = WIRED, f"no effect at this value ({note})"
    return ConfigRow(path, value, role, rule.max_field, note)


def _lookup(path: str) -> KeyRule | None:
    if path in CONFIG_KEYS:
        return CONFIG_KEYS[path]
    parts = path.split(".")
    if parts[0] in _TEXT_CONTAINERS and len(parts) > 1:
        return _lookup(".".join(parts[1:]))
    if len(parts) > 1:
        parent = CONFIG_KEYS.get(parts[0])
        if parent is not None and parts[0] in ("quantization_config", "vision_config", "audio_config"):
            return KeyRule(parent.role, "", f"part of {parts[0]}", ())
    return None


def _is_inactive(value: Any, inactive: tuple[Any, ...]) -> bool:
    for off in inactive:
        if type(value) is type(off) and value == off:
            return True
        if isinstance(value, (int, float)) and not isinstance(value, bool) and isinstance(off, (int, float)) \
                and not isinstance(off, bool) and value == off:
            return True
    return value is None and None in inactive


def summarize(rows: list[ConfigRow]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.role] = counts.get(row.role, 0) + 1
    return counts
