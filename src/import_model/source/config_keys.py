"""The one table of config-key aliases: where each number a port reads may live in a family's ``config.json``.

Rows are read by the port writer (which rows it writes into a port: those the
port's code reads) and, through the written rows, by the port at build time.
The first key the HF config object answers wins.
"""

from __future__ import annotations

CONFIG_ALIASES: dict[str, tuple[str, ...]] = {
    # every family; layer_norm_eps: GPT-NeoX, Phi, StableLM; layer_norm_epsilon: Falcon, GPT-J, CodeGen
    "norm_eps": ("rms_norm_eps", "layer_norm_eps", "norm_eps", "layer_norm_epsilon", "norm_epsilon"),
    # the donor's own name for the same number (the llama3 config class reads rms_norm_eps)
    "rms_norm_eps": ("rms_norm_eps", "layer_norm_eps", "norm_eps", "layer_norm_epsilon", "norm_epsilon"),
    # partial rotary: Phi, StableLM, Persimmon, GLM (partial_rotary_factor); GPT-NeoX (rotary_pct)
    "rotary_fraction": ("partial_rotary_factor", "rotary_pct"),
    # GPT-NeoX keeps its base as rotary_emb_base
    "rope_theta": ("rope_theta", "rotary_emb_base"),
    # Mistral-style windows: Starcoder2, Gemma 2, Cohere 2, EXAONE 4; GPT-Neo's local layers
    "window": ("sliding_window", "window_size"),
    # Gemma 2, VaultGemma
    "query_pre_attn_scalar": ("query_pre_attn_scalar",),
    # Granite, HyperCLOVA X
    "attention_multiplier": ("attention_multiplier",),
    "embedding_multiplier": ("embedding_multiplier",),
    "residual_multiplier": ("residual_multiplier",),
    "logits_divisor": ("logits_scaling",),
    # Gemma 2, VaultGemma
    "final_softcap": ("final_logit_softcapping",),
    "attention_softcap": ("attn_logit_softcapping", "attention_logit_softcapping"),
    # Cohere, Cohere 2
    "logit_scale": ("logit_scale",),
    # OLMo
    "clip_qkv": ("clip_qkv",),
    # GPT-J, CodeGen, Falcon (n_inner / ffn_hidden_size); OPT, XGLM (ffn_dim); TrOCR (decoder_ffn_dim); CTRL (dff)
    "intermediate_size": ("intermediate_size", "n_inner", "ffn_hidden_size", "ffn_dim", "decoder_ffn_dim", "dff"),
    # learned position tables: GPT-2, GPT-BigCode (n_positions), OPT, BioGPT
    "max_positions": ("max_position_embeddings", "n_positions", "n_ctx"),
    # Falcon (num_kv_heads, n_head_kv); multi-head families without the key fall back to the query heads
    "num_key_value_heads": ("num_key_value_heads", "num_kv_heads", "n_head_kv", "num_attention_heads"),
    # mixtures of experts: OLMoE, Qwen2-MoE, Mixtral (num_local_experts), DeepSeek-style (n_routed_experts)
    "experts": ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts", "num_routed_experts"),
    # moe_topk: HunYuan-MoE; top_k_experts: Gemma 4's MoE block
    "top_k": ("num_experts_per_tok", "moe_top_k", "num_experts_per_token", "top_k", "moe_topk", "top_k_experts"),
    "expert_width": ("moe_intermediate_size", "expert_ffn_hidden_size", "intermediate_size"),
    "shared_width": ("shared_expert_intermediate_size", "moe_shared_expert_intermediate_size"),
    "shared_count": ("n_shared_experts", "num_shared_experts", "moe_num_shared_experts"),
    "norm_topk_prob": ("norm_topk_prob",),
    "routed_scaling": ("routed_scaling_factor",),
    # Gemma 4: the per-layer inputs' width and token table, the full-attention layers' head
    "per_layer_input_width": ("hidden_size_per_layer_input",),
    "per_layer_input_vocab": ("vocab_size_per_layer_input",),
    "full_head_dim": ("global_head_dim",),
}


def rows_for(names: set[str] | list[str]) -> dict[str, tuple[str, ...]]:
    """The rows a port reads, whole: which key a model sets is known only to its HF config object at build time
    (a config class may answer a name through its ``attribute_map``)."""
    return {name: CONFIG_ALIASES.get(name, (name,)) for name in sorted(set(names))}


def context_length(config: dict) -> int | None:
    """The longest sequence the model's config allows (its position-table size), when it says so."""
    for key in CONFIG_ALIASES["max_positions"]:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None
