"""Source configs for the model families the toolkit targets, and cached twins built from them.

Each entry starts from transformers' default config class for the model_type and sets what a real
checkpoint of that family has (sizes of a known release plus its distinctive options), written the way
its hub config.json writes them; the config class then normalises legacy keys (rope_theta, rotary_pct...).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from transformers import CONFIG_MAPPING

from import_model.errors import UserError
from import_model.verify.twin import TwinInfo, config_fingerprint, make_twin, read_twin_info

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SEED = 0


def _pattern(period: int, layers: int) -> list[str]:
    """Every ``period``-th layer global, the others sliding (gemma2: period 2; exaone4: 4; gemma3: 6)."""
    return ["full_attention" if (i + 1) % period == 0 else "sliding_attention" for i in range(layers)]


def _longrope_factors(n: int, top: float) -> list[float]:
    return [round(1.0 + (top - 1.0) * (i / (n - 1)) ** 2, 4) for i in range(n)]


#: zai-org/GLM-4.5-Air: a sigmoid router with a score-correction bias, a shared expert, the first layer dense.
_GLM4_MOE: dict[str, Any] = {
    "hidden_size": 4096,
    "intermediate_size": 10944,
    "moe_intermediate_size": 1408,
    "n_routed_experts": 128,
    "n_shared_experts": 1,
    "num_experts_per_tok": 8,
    "n_group": 1,
    "topk_group": 1,
    "routed_scaling_factor": 1.0,
    "norm_topk_prob": True,
    "first_k_dense_replace": 1,
    "num_hidden_layers": 46,
    "num_attention_heads": 96,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "partial_rotary_factor": 0.5,
    "attention_bias": True,
    "use_qk_norm": False,
    "vocab_size": 151552,
    "rope_theta": 1000000.0,
    "eos_token_id": [151329, 151336, 151338],
    "pad_token_id": 151329,
    "tie_word_embeddings": False,
}

# (model_type, architecture, options of a real checkpoint); the comment names the checkpoint mimicked.
_FAMILIES: dict[str, tuple[str, str, dict[str, Any]]] = {
    # kyutai/helium-1-preview-2b
    "helium": (
        "helium",
        "HeliumForCausalLM",
        {
            "hidden_size": 2560,
            "intermediate_size": 7040,
            "num_hidden_layers": 24,
            "num_attention_heads": 20,
            "num_key_value_heads": 20,
            "head_dim": 128,
            "vocab_size": 48000,
            "rms_norm_eps": 1e-8,
            "rope_theta": 100000.0,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 3,
            "tie_word_embeddings": False,
        },
    ),
    # arcee-ai/AFM-4.5B: relu2 non-gated MLP, YaRN
    "arcee": (
        "arcee",
        "ArceeForCausalLM",
        {
            "hidden_size": 2560,
            "intermediate_size": 18432,
            "num_hidden_layers": 36,
            "num_attention_heads": 20,
            "num_key_value_heads": 4,
            "head_dim": 128,
            "vocab_size": 128004,
            "hidden_act": "relu2",
            "max_position_embeddings": 65536,
            "rope_theta": 10000.0,
            "rope_scaling": {"rope_type": "yarn", "factor": 20.0, "original_max_position_embeddings": 4096},
            "bos_token_id": 128000,
            "eos_token_id": 128001,
            "tie_word_embeddings": False,
        },
    ),
    # stabilityai/stablelm-2-1_6b: partial rotary 0.25, LayerNorm, qkv bias
    "stablelm": (
        "stablelm",
        "StableLmForCausalLM",
        {
            "hidden_size": 2048,
            "intermediate_size": 5632,
            "num_hidden_layers": 24,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "vocab_size": 100352,
            "partial_rotary_factor": 0.25,
            "use_qkv_bias": True,
            "qk_layernorm": False,
            "use_parallel_residual": False,
            "layer_norm_eps": 1e-5,
            "rope_theta": 10000,
            "bos_token_id": 100257,
            "eos_token_id": 100257,
            "tie_word_embeddings": False,
        },
    ),
    # bigcode/starcoder2-3b: biases everywhere, gelu_pytorch_tanh non-gated MLP, sliding window
    "starcoder2": (
        "starcoder2",
        "Starcoder2ForCausalLM",
        {
            "hidden_size": 3072,
            "intermediate_size": 12288,
            "num_hidden_layers": 30,
            "num_attention_heads": 24,
            "num_key_value_heads": 2,
            "vocab_size": 49152,
            "hidden_act": "gelu_pytorch_tanh",
            "use_bias": True,
            "norm_epsilon": 1e-5,
            "rope_theta": 999999.4420358813,
            "sliding_window": 4096,
            "max_position_embeddings": 16384,
            "bos_token_id": 0,
            "eos_token_id": 0,
            "tie_word_embeddings": True,
        },
    ),
    # google/gemma-7b: head_dim * heads != hidden, tied embeddings, (1 + w) RMSNorm
    "gemma": (
        "gemma",
        "GemmaForCausalLM",
        {
            "hidden_size": 3072,
            "intermediate_size": 24576,
            "num_hidden_layers": 28,
            "num_attention_heads": 16,
            "num_key_value_heads": 16,
            "head_dim": 256,
            "vocab_size": 256000,
            "hidden_activation": "gelu_pytorch_tanh",
            "rms_norm_eps": 1e-6,
            "bos_token_id": 2,
            "eos_token_id": 1,
            "pad_token_id": 0,
            "tie_word_embeddings": True,
        },
    ),
    # google/gemma-2-2b: softcaps, query_pre_attn_scalar, alternating sliding/global
    "gemma2": (
        "gemma2",
        "Gemma2ForCausalLM",
        {
            "hidden_size": 2304,
            "intermediate_size": 9216,
            "num_hidden_layers": 26,
            "num_attention_heads": 8,
            "num_key_value_heads": 4,
            "head_dim": 256,
            "vocab_size": 256000,
            "hidden_activation": "gelu_pytorch_tanh",
            "query_pre_attn_scalar": 256,
            "sliding_window": 4096,
            "final_logit_softcapping": 30.0,
            "attn_logit_softcapping": 50.0,
            "layer_types": _pattern(2, 26),
            "bos_token_id": 2,
            "eos_token_id": 1,
            "pad_token_id": 0,
            "tie_word_embeddings": True,
        },
    ),
    # HuggingFaceTB/SmolLM3-3B: every 4th layer without RoPE (NoPE)
    "smollm3": (
        "smollm3",
        "SmolLM3ForCausalLM",
        {
            "hidden_size": 2048,
            "intermediate_size": 11008,
            "num_hidden_layers": 36,
            "num_attention_heads": 16,
            "num_key_value_heads": 4,
            "vocab_size": 128256,
            "rope_theta": 5000000.0,
            "max_position_embeddings": 65536,
            "no_rope_layer_interval": 4,
            "no_rope_layers": [int((i + 1) % 4 != 0) for i in range(36)],
            "bos_token_id": 128000,
            "eos_token_id": 128012,
            "pad_token_id": 128004,
            "tie_word_embeddings": True,
        },
    ),
    # EleutherAI/pythia-160m: parallel residual, partial rotary 0.25, biases
    "gpt_neox": (
        "gpt_neox",
        "GPTNeoXForCausalLM",
        {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "vocab_size": 50304,
            "rotary_pct": 0.25,
            "rotary_emb_base": 10000,
            "use_parallel_residual": True,
            "hidden_act": "gelu",
            "layer_norm_eps": 1e-5,
            "bos_token_id": 0,
            "eos_token_id": 0,
            "tie_word_embeddings": False,
        },
    ),
    # microsoft/phi-1_5: partial rotary 0.5, parallel attention + MLP, LayerNorm, biases
    "phi": (
        "phi",
        "PhiForCausalLM",
        {
            "hidden_size": 2048,
            "intermediate_size": 8192,
            "num_hidden_layers": 24,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "vocab_size": 51200,
            "partial_rotary_factor": 0.5,
            "hidden_act": "gelu_new",
            "layer_norm_eps": 1e-5,
            "qk_layernorm": False,
            "bos_token_id": 50256,
            "eos_token_id": 50256,
            "tie_word_embeddings": False,
        },
    ),
    # CohereForAI/c4ai-command-r-v01: logit_scale, no qk norm, parallel block, tied
    "cohere": (
        "cohere",
        "CohereForCausalLM",
        {
            "hidden_size": 8192,
            "intermediate_size": 22528,
            "num_hidden_layers": 40,
            "num_attention_heads": 64,
            "num_key_value_heads": 64,
            "vocab_size": 256000,
            "logit_scale": 0.0625,
            "use_qk_norm": False,
            "rope_theta": 8000000.0,
            "layer_norm_eps": 1e-5,
            "max_position_embeddings": 131072,
            "bos_token_id": 5,
            "eos_token_id": 255001,
            "pad_token_id": 0,
            "tie_word_embeddings": True,
        },
    ),
    # THUDM/glm-4-9b-chat-hf: partial rotary 0.5 (interleaved), qkv bias, several eos ids
    "glm": (
        "glm",
        "GlmForCausalLM",
        {
            "hidden_size": 4096,
            "intermediate_size": 13696,
            "num_hidden_layers": 40,
            "num_attention_heads": 32,
            "num_key_value_heads": 2,
            "head_dim": 128,
            "vocab_size": 151552,
            "partial_rotary_factor": 0.5,
            "attention_bias": True,
            "rms_norm_eps": 1.5625e-07,
            "max_position_embeddings": 131072,
            "eos_token_id": [151329, 151336, 151338],
            "pad_token_id": 151329,
            "tie_word_embeddings": False,
        },
    ),
    # LGAI-EXAONE/EXAONE-4.0-32B: 3 sliding : 1 global ("LLLG"), llama3 rope scaling
    "exaone4": (
        "exaone4",
        "Exaone4ForCausalLM",
        {
            "hidden_size": 5120,
            "intermediate_size": 27392,
            "num_hidden_layers": 64,
            "num_attention_heads": 40,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "vocab_size": 102400,
            "sliding_window": 4096,
            "sliding_window_pattern": "LLLG",
            "layer_types": _pattern(4, 64),
            "max_position_embeddings": 131072,
            "rope_theta": 1000000.0,
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 16.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192,
            },
            "bos_token_id": 1,
            "eos_token_id": 361,
            "pad_token_id": 0,
            "tie_word_embeddings": False,
        },
    ),
    # allenai/OLMoE-1B-7B-0924: 64 experts top-8, qk norm
    "olmoe": (
        "olmoe",
        "OlmoeForCausalLM",
        {
            "hidden_size": 2048,
            "intermediate_size": 1024,
            "num_hidden_layers": 16,
            "num_attention_heads": 16,
            "num_key_value_heads": 16,
            "vocab_size": 50304,
            "num_experts": 64,
            "num_experts_per_tok": 8,
            "norm_topk_prob": False,
            "clip_qkv": None,
            "eos_token_id": 50279,
            "pad_token_id": 1,
            "tie_word_embeddings": False,
        },
    ),
    # Qwen/Qwen1.5-MoE-A2.7B: 60 experts top-4 plus a gated shared expert, qkv bias
    "qwen2_moe": (
        "qwen2_moe",
        "Qwen2MoeForCausalLM",
        {
            "hidden_size": 2048,
            "intermediate_size": 5632,
            "moe_intermediate_size": 1408,
            "shared_expert_intermediate_size": 5632,
            "num_experts": 60,
            "num_experts_per_tok": 4,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "num_key_value_heads": 16,
            "vocab_size": 151936,
            "rope_theta": 1000000.0,
            "max_position_embeddings": 8192,
            "decoder_sparse_step": 1,
            "bos_token_id": 151643,
            "eos_token_id": 151643,
            "tie_word_embeddings": False,
        },
    ),
    # mistralai/Mixtral-8x7B-v0.1: 8 experts top-2, top-k weights always renormalised, GQA 4:1
    "mixtral": (
        "mixtral",
        "MixtralForCausalLM",
        {
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "num_local_experts": 8,
            "num_experts_per_tok": 2,
            "vocab_size": 32000,
            "rope_theta": 1000000.0,
            "sliding_window": None,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "tie_word_embeddings": False,
        },
    ),
    # Qwen/Qwen3-30B-A3B: 128 experts top-8 renormalised, QK-norm (MAX registers Qwen3MoeForCausalLM natively)
    "qwen3_moe": (
        "qwen3_moe",
        "Qwen3MoeForCausalLM",
        {
            "hidden_size": 2048,
            "intermediate_size": 6144,
            "moe_intermediate_size": 768,
            "num_experts": 128,
            "num_experts_per_tok": 8,
            "norm_topk_prob": True,
            "num_hidden_layers": 48,
            "num_attention_heads": 32,
            "num_key_value_heads": 4,
            "head_dim": 128,
            "vocab_size": 151936,
            "rope_theta": 1000000.0,
            "decoder_sparse_step": 1,
            "mlp_only_layers": [],
            "bos_token_id": 151643,
            "eos_token_id": 151645,
            "tie_word_embeddings": False,
        },
    ),
    # rednote-hilab/dots.llm1.base: sigmoid router with a score-correction bias, grouped top-k, routed scaling,
    # a shared expert, the first layer dense, QK-norm
    "dots1": (
        "dots1",
        "Dots1ForCausalLM",
        {
            "hidden_size": 4096,
            "intermediate_size": 10944,
            "moe_intermediate_size": 1408,
            "n_routed_experts": 128,
            "n_shared_experts": 2,
            "num_experts_per_tok": 6,
            "n_group": 1,
            "topk_group": 1,
            "routed_scaling_factor": 2.5,
            "norm_topk_prob": True,
            "first_k_dense_replace": 1,
            "num_hidden_layers": 62,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "vocab_size": 152064,
            "rope_theta": 10000000.0,
            "bos_token_id": None,
            "eos_token_id": 151649,
            "tie_word_embeddings": False,
        },
    ),
    # zai-org/GLM-4.5-Air: sigmoid router with a score-correction bias, top-k renormalised, a shared expert, the
    # first layer dense, partial rotary 0.5, qkv bias
    "glm4_moe": ("glm4_moe", "Glm4MoeForCausalLM", _GLM4_MOE),
    # GLM-4.5-Air's block with DeepSeek-V3's expert groups (n_group 8, topk_group 4; the twin keeps 2 groups of 2
    # experts and picks 1): the group-limited top-k of the sigmoid router, on a family MAX does not register
    "glm4_moe_grouped": ("glm4_moe", "Glm4MoeForCausalLM",
                         _GLM4_MOE | {"n_group": 8, "topk_group": 4, "routed_scaling_factor": 2.5}),
    # YoutuConfig's defaults (tencent/Youtu-LLM-2B as transformers writes them): multi-head latent attention with
    # low-rank queries (q_lora_rank) and interleaved rotary on the shared rope key (rope_interleave)
    "youtu": ("youtu", "YoutuForCausalLM", {}),
    # the same block with one q_proj (q_lora_rank None, as DeepSeek-V2-Lite) and half-split rotary
    "youtu_direct": ("youtu", "YoutuForCausalLM", {"q_lora_rank": None, "rope_interleave": False}),
    # upstage/Solar-Open-100B: sigmoid router with a score-correction bias, a shared expert, every layer routed
    "solar_open": (
        "solar_open",
        "SolarOpenForCausalLM",
        {
            "hidden_size": 4096,
            "moe_intermediate_size": 1280,
            "n_routed_experts": 128,
            "n_shared_experts": 1,
            "num_experts_per_tok": 8,
            "n_group": 1,
            "topk_group": 1,
            "routed_scaling_factor": 1.0,
            "norm_topk_prob": True,
            "num_hidden_layers": 48,
            "num_attention_heads": 64,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "vocab_size": 196608,
            "rope_theta": 1000000.0,
            "tie_word_embeddings": False,
        },
    ),
    # allenai/FlexOlmo-7x7B-1T: 7 experts top-5 (softmax, not renormalised), OLMo-2 post-norms, whole-projection QK-norm
    "flex_olmo": (
        "flex_olmo",
        "FlexOlmoForCausalLM",
        {
            "hidden_size": 4096,
            "intermediate_size": 11008,
            "num_experts": 7,
            "num_experts_per_tok": 5,
            "norm_topk_prob": False,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "vocab_size": 100352,
            "rope_theta": 500000.0,
            "pad_token_id": 100277,
            "eos_token_id": 100257,
            "tie_word_embeddings": False,
        },
    ),
    # LGAI-EXAONE/K-EXAONE-236B-A23B: sigmoid router with a score-correction bias, routed scaling, a shared expert,
    # dense layers picked by mlp_layer_types, 3:1 sliding/global attention with QK-norm and no rope on global layers
    "exaone_moe": (
        "exaone_moe",
        "ExaoneMoeForCausalLM",
        {
            "hidden_size": 6144,
            "intermediate_size": 18432,
            "moe_intermediate_size": 2048,
            "num_experts": 128,
            "num_experts_per_tok": 8,
            "num_shared_experts": 1,
            "n_group": 1,
            "topk_group": 1,
            "routed_scaling_factor": 2.5,
            "norm_topk_prob": True,
            "num_hidden_layers": 48,
            "num_attention_heads": 64,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "sliding_window": 128,
            "sliding_window_pattern": 4,
            "layer_types": ["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"] * 12,
            "mlp_layer_types": ["dense"] + ["sparse"] * 47,
            "first_k_dense_replace": 1,
            "vocab_size": 153600,
            "rope_theta": 1000000.0,
            "bos_token_id": 1,
            "eos_token_id": 53,
            "tie_word_embeddings": False,
        },
    ),
    # baidu/ERNIE-4.5-21B-A3B-PT: softmax router with a score-correction bias (moe_statics), 2 shared experts, dense
    # layers picked by moe_layer_start_index / interval
    "ernie4_5_moe": (
        "ernie4_5_moe",
        "Ernie4_5_MoeForCausalLM",
        {
            "hidden_size": 2560,
            "intermediate_size": 12288,
            "moe_intermediate_size": 1536,
            "moe_num_experts": 64,
            "moe_k": 6,
            "moe_num_shared_experts": 2,
            "moe_layer_start_index": 1,
            "moe_layer_end_index": 27,
            "moe_layer_interval": 1,
            "num_hidden_layers": 28,
            "num_attention_heads": 20,
            "num_key_value_heads": 4,
            "vocab_size": 103424,
            "rope_theta": 500000.0,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "tie_word_embeddings": True,
        },
    ),
    # ibm-granite/granite-3.1-3b-a800m-instruct: every expert's weights stacked in 3-D tensors (input_linear
    # [E, 2I, H], output_linear [E, H, I]), a softmax over the top-k logits, Granite's multipliers
    "granitemoe": (
        "granitemoe",
        "GraniteMoeForCausalLM",
        {
            "hidden_size": 1536,
            "intermediate_size": 512,
            "num_local_experts": 40,
            "num_experts_per_tok": 8,
            "num_hidden_layers": 32,
            "num_attention_heads": 24,
            "num_key_value_heads": 8,
            "vocab_size": 49155,
            "embedding_multiplier": 12.0,
            "residual_multiplier": 0.22,
            "attention_multiplier": 0.015625,
            "logits_scaling": 6.0,
            "rope_theta": 10000000.0,
            "max_position_embeddings": 131072,
            "bos_token_id": 0,
            "eos_token_id": 0,
            "pad_token_id": 0,
            "tie_word_embeddings": True,
        },
    ),
    # meta-llama/Llama-3.2-1B: GQA 4:1, llama3 rope scaling, tied
    "llama": (
        "llama",
        "LlamaForCausalLM",
        {
            "hidden_size": 2048,
            "intermediate_size": 8192,
            "num_hidden_layers": 16,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 64,
            "vocab_size": 128256,
            "rms_norm_eps": 1e-5,
            "max_position_embeddings": 131072,
            "rope_theta": 500000.0,
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 32.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192,
            },
            "bos_token_id": 128000,
            "eos_token_id": 128001,
            "tie_word_embeddings": True,
        },
    ),
    # Qwen/Qwen2.5-0.5B-style: q/k/v biases, no o bias, GQA, tied
    "qwen2": (
        "qwen2",
        "Qwen2ForCausalLM",
        {
            "hidden_size": 896,
            "intermediate_size": 4864,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
            "vocab_size": 151936,
            "rope_theta": 1000000.0,
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": True,
        },
    ),
    # Qwen/Qwen3-0.6B: qk norm, head_dim * heads != hidden, tied
    "qwen3": (
        "qwen3",
        "Qwen3ForCausalLM",
        {
            "hidden_size": 1024,
            "intermediate_size": 3072,
            "num_hidden_layers": 28,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "vocab_size": 151936,
            "rope_theta": 1000000.0,
            "max_position_embeddings": 40960,
            "bos_token_id": 151643,
            "eos_token_id": 151645,
            "tie_word_embeddings": True,
        },
    ),
    # allenai/OLMo-2-1124-7B: post-norm blocks, qk norm over the full projection
    "olmo2": (
        "olmo2",
        "Olmo2ForCausalLM",
        {
            "hidden_size": 4096,
            "intermediate_size": 11008,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "vocab_size": 100352,
            "rope_theta": 500000.0,
            "rms_norm_eps": 1e-6,
            "max_position_embeddings": 4096,
            "eos_token_id": 100257,
            "pad_token_id": 100277,
            "tie_word_embeddings": False,
        },
    ),
    # google/gemma-3-1b-it: 5 sliding : 1 global, separate local rope base, head_dim * heads != hidden
    "gemma3_text": (
        "gemma3_text",
        "Gemma3ForCausalLM",
        {
            "hidden_size": 1152,
            "intermediate_size": 6912,
            "num_hidden_layers": 26,
            "num_attention_heads": 4,
            "num_key_value_heads": 1,
            "head_dim": 256,
            "vocab_size": 262144,
            "query_pre_attn_scalar": 256,
            "sliding_window": 512,
            "sliding_window_pattern": 6,
            "rope_theta": 1000000.0,
            "rope_local_base_freq": 10000.0,
            "max_position_embeddings": 32768,
            "final_logit_softcapping": None,
            "attn_logit_softcapping": None,
            "bos_token_id": 2,
            "eos_token_id": [1, 106],
            "pad_token_id": 0,
            "tie_word_embeddings": True,
        },
    ),
    # Families named in no catalog issue, kept to test the catalog on what nobody listed.
    # swiss-ai/Apertus-8B: xIELU activation (learned per-layer scalars), QK-norm, llama3 rope, plain MLP
    "apertus": ("apertus", "ApertusForCausalLM", {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3}),
    # microsoft/Diff-Transformer style (DiffLlama): differential attention, two softmax maps subtracted with a
    # learned lambda (lambda_q1/k1/q2/k2 per layer) and a weightless norm per head pair
    "diffllama": ("diffllama", "DiffLlamaForCausalLM", {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}),
    # google/vaultgemma-1b: Gemma2's soft-caps and sliding pattern with pre-norm blocks named like sandwich ones
    "vaultgemma": ("vaultgemma", "VaultGemmaForCausalLM", {"bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0}),
    # adept/persimmon-8b-base: fused per-head QKV under self_attn, QK LayerNorm, relu^2, half rotary
    "persimmon": ("persimmon", "PersimmonForCausalLM", {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}),
    # zai-org/GLM-4-9B-0414: sandwich norms whose pre-MLP norm is named post_attention_layernorm
    "glm4": ("glm4", "Glm4ForCausalLM", {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}),
    # naver-hyperclovax/HyperCLOVAX-SEED-Think-14B: extra post-norms (post_norm1/2) behind a config switch
    "hyperclovax": ("hyperclovax", "HyperCLOVAXForCausalLM",
                    {"use_post_norm": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}),
    # tiiuae/falcon-7b: multi-query attention in a fused QKV, one LayerNorm shared by parallel attention and MLP
    "falcon": ("falcon", "FalconForCausalLM", {"bos_token_id": 11, "eos_token_id": 11}),
    # tiiuae/falcon-40b: the "new decoder": grouped KV heads in the fused QKV, separate ln_attn / ln_mlp
    "falcon_40b": ("falcon", "FalconForCausalLM", {
        "hidden_size": 8192, "num_attention_heads": 128, "num_kv_heads": 8, "num_hidden_layers": 60,
        "new_decoder_architecture": True, "multi_query": False, "parallel_attn": True, "bias": False,
        "vocab_size": 65024, "bos_token_id": 11, "eos_token_id": 11}),
    # EleutherAI/gpt-j-6b: interleaved rotary on rotary_dim of each head, parallel block, biased MLP and head
    "gptj": ("gptj", "GPTJForCausalLM", {"bos_token_id": 1, "eos_token_id": 2}),
    # nvidia/Minitron-8B-Base: LayerNorm1P ((1 + w) LayerNorm with bias), relu^2 plain MLP, half rotary
    "nemotron": ("nemotron", "NemotronForCausalLM", {"bos_token_id": 2, "eos_token_id": 3}),
    # baidu/ERNIE-4.5-0.3B-PT: interleaved rotary, tied head
    "ernie4_5": ("ernie4_5", "Ernie4_5ForCausalLM", {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}),
    # tencent/Hunyuan-7B-Instruct: per-head QK-norm applied after rotary (Qwen3 applies it before)
    "hunyuan_v1_dense": ("hunyuan_v1_dense", "HunYuanDenseV1ForCausalLM", {"bos_token_id": 1, "eos_token_id": 2,
                                                                         "pad_token_id": 0}),
    # ByteDance-Seed/Seed-OSS-36B-Instruct: q/k/v biases without an output bias, GQA
    "seed_oss": ("seed_oss", "SeedOssForCausalLM", {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}),
    # CohereLabs/c4ai-command-r7b-12-2024: Cohere's parallel block with sliding layers and NoPE global layers
    "cohere2": ("cohere2", "Cohere2ForCausalLM", {"bos_token_id": 5, "eos_token_id": 255001, "pad_token_id": 0}),
    # inceptionai/Jais-2: plain biased MLP with relu^2, LayerNorm, attention biases
    "jais2": ("jais2", "Jais2ForCausalLM", {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}),
    # facebook/cwm: llama3 rope scaling with interleaved sliding layers
    "cwm": ("cwm", "CwmForCausalLM", {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}),
    # microsoft/bitnet-b1.58-2B-4T: sub-norms inside attention and MLP that no catalog row knows (a partial port)
    "bitnet": ("bitnet", "BitNetForCausalLM", {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}),
    # Salesforce/codegen-350M-mono: GPT-J's block with QKV fused in four model-parallel shards of [q | v | k]
    "codegen": ("codegen", "CodeGenForCausalLM", {"bos_token_id": 1, "eos_token_id": 2}),
    # openai-community/gpt2 (the config class's defaults): learned positions, Conv1D weights, fused c_attn
    "gpt2": ("gpt2", "GPT2LMHeadModel", {"bos_token_id": 1, "eos_token_id": 2}),
    # EleutherAI/gpt-neo-125m (the config class's defaults): unscaled q·kᵀ, global and local (windowed) layers,
    # projections one module deeper (attn.attention), learned positions
    "gpt_neo": ("gpt_neo", "GPTNeoForCausalLM", {"bos_token_id": 1, "eos_token_id": 2}),
    # facebook/xglm-564M (the config class's defaults): a computed sinusoidal position table (no weight, offset 2),
    # embeddings scaled by sqrt(d_model), a final norm named layer_norm
    "xglm": ("xglm", "XGLMForCausalLM", {"bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}),
    # microsoft/trocr-base-handwritten's decoder (the config class's defaults): post-LN blocks, a LayerNorm of the
    # embeddings' own and no final norm, learned positions offset by 2, cross-attention a causal LM never runs
    "trocr": ("trocr", "TrOCRForCausalLM", {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
                                            "is_decoder": True}),
    # google-bert/bert-base-uncased's family as a decoder (BertLMHeadModel, is_decoder): post-LN in each sublayer's
    # output module, token-type row 0, the embeddings' own LayerNorm, a head transform, no final norm
    "bert": ("bert", "BertLMHeadModel", {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "is_decoder": True}),
    # FacebookAI/roberta-base's family as a decoder: BERT's block, positions counted from padding_idx + 1
    "roberta": ("roberta", "RobertaForCausalLM", {"bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
                                                  "is_decoder": True}),
    # Salesforce/ctrl (the config class's defaults): its own names read from its code (Wq/Wk/Wv/dense, a Sequential
    # MLP, the token table w), embeddings scaled in place, a sinusoid buffer added
    "ctrl": ("ctrl", "CTRLLMHeadModel", {"bos_token_id": 1, "eos_token_id": 2}),
    # weiweishi/roc-bert-base-zh as a decoder: shape and pronunciation tables concatenated to the token embedding
    "roc_bert": ("roc_bert", "RoCBertForCausalLM", {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
                                                    "is_decoder": True}),
    # tencent/Hunyuan-A13B-Instruct's family at its config class's default: one routed expert beside a shared MLP,
    # QK-norm, the router as gate.wg
    "hunyuan_v1_moe": ("hunyuan_v1_moe", "HunYuanMoEV1ForCausalLM", {"bos_token_id": 1, "eos_token_id": 2,
                                                                     "pad_token_id": 0}),
    # openai-community/openai-gpt (the config class's defaults): post-LN (ln_1 / ln_2 after each add), no final
    # norm, learned positions, Conv1D weights, gelu_new picked from the family's own table
    "openai-gpt": ("openai-gpt", "OpenAIGPTLMHeadModel", {"bos_token_id": 1, "eos_token_id": 2}),
    # karpathy's nanochat (the config class's defaults): weightless norms and QK-norm, embeddings normalised,
    # rotary by minus the angle, relu^2, final soft-cap
    "nanochat": ("nanochat", "NanoChatForCausalLM", {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}),
    # microsoft/Phi-3.5-mini-instruct: fused qkv / gate_up, LongRoPE, sliding window
    "phi3": (
        "phi3",
        "Phi3ForCausalLM",
        {
            "hidden_size": 3072,
            "intermediate_size": 8192,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "vocab_size": 32064,
            "max_position_embeddings": 131072,
            "original_max_position_embeddings": 4096,
            "sliding_window": 262144,
            "rope_theta": 10000.0,
            "rope_scaling": {
                "type": "longrope",
                "short_factor": _longrope_factors(48, 2.0),
                "long_factor": _longrope_factors(48, 40.0),
            },
            "bos_token_id": 1,
            "eos_token_id": 32000,
            "pad_token_id": 32000,
            "tie_word_embeddings": False,
        },
    ),
    # microsoft/phi-4: the Phi-3 class with GQA 4:1 and plain RoPE (no LongRoPE, no window)
    "phi4": (
        "phi3",
        "Phi3ForCausalLM",
        {
            "hidden_size": 5120,
            "intermediate_size": 17920,
            "num_hidden_layers": 40,
            "num_attention_heads": 40,
            "num_key_value_heads": 10,
            "vocab_size": 100352,
            "max_position_embeddings": 16384,
            "original_max_position_embeddings": 16384,
            "sliding_window": None,
            "rope_theta": 250000.0,
            "rope_scaling": None,
            "bos_token_id": 100257,
            "eos_token_id": 100265,
            "pad_token_id": 100349,
            "tie_word_embeddings": False,
        },
    ),
    # mistralai/Mistral-7B-v0.1: GQA 4:1, sliding window on every layer
    "mistral": (
        "mistral",
        "MistralForCausalLM",
        {
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "vocab_size": 32000,
            "sliding_window": 4096,
            "max_position_embeddings": 32768,
            "rope_theta": 10000.0,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "tie_word_embeddings": False,
        },
    ),
    # bigscience/bloom-560m: ALiBi (no rotary), embedding LayerNorm, fused qkv, hub names n_layer / n_head
    "bloom": (
        "bloom",
        "BloomForCausalLM",
        {
            "hidden_size": 1024,
            "n_layer": 24,
            "n_head": 16,
            "vocab_size": 250880,
            "layer_norm_epsilon": 1e-5,
            "apply_residual_connection_post_layernorm": False,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 3,
            "tie_word_embeddings": True,
        },
    ),
}


def _source_config(model_type: str, architecture: str, options: dict[str, Any]) -> dict[str, Any]:
    config = CONFIG_MAPPING[model_type](**options).to_dict()
    config["architectures"] = [architecture]
    config["dtype"] = "bfloat16"
    return config


FAMILY_CONFIGS: dict[str, dict[str, Any]] = {name: _source_config(*spec) for name, spec in _FAMILIES.items()}

_session_twins: dict[str, Path] = {}


def cache_root() -> Path:
    """Where cached test twins live: $IMPORT_MODEL_TEST_CACHE or <repo>/.cache/test-twins."""
    env = os.environ.get("IMPORT_MODEL_TEST_CACHE")
    return Path(env) if env else REPO_ROOT / ".cache" / "test-twins"


def make_family_twin(family: str, output_dir: Path, **kw: Any) -> TwinInfo:
    """Build the twin of one family into ``output_dir`` (kwargs go to ``make_twin``)."""
    if family not in FAMILY_CONFIGS:
        raise KeyError(f"unknown family {family!r}; known: {', '.join(sorted(FAMILY_CONFIGS))}")
    return make_twin(FAMILY_CONFIGS[family], output_dir, **kw)


def _is_current(path: Path, family: str) -> bool:
    """A cached twin is reused only if complete and built from the same config, seed and recipe."""
    import json

    if read_twin_info(path) is None:
        return False
    marker = json.loads((path / "twin.json").read_text())
    return marker.get("fingerprint") == config_fingerprint(FAMILY_CONFIGS[family], DEFAULT_SEED, None)


def _rebuild(family: str, path: Path) -> None:
    """Replace a stale cached twin; one --force refuses (an older marker, a cache restored by copying) is
    removed first: the cache is the tests' own."""
    try:
        make_family_twin(family, path, seed=DEFAULT_SEED, force=True)
    except UserError:
        if _is_current(path, family):
            return
        shutil.rmtree(path, ignore_errors=True)
        make_family_twin(family, path, seed=DEFAULT_SEED, force=True)


def family_twin_dir(family: str) -> Path:
    """Path of the family's default twin, built at most once per session and reused across sessions."""
    if family in _session_twins:
        return _session_twins[family]
    path = cache_root() / family
    if not _is_current(path, family):
        try:
            _rebuild(family, path)
        except Exception:
            if not _is_current(path, family):  # another process may have won the race
                raise
    _session_twins[family] = path
    return path
