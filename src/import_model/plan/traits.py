"""The structural choices of a decoder family, as one typed value: the vocabulary plan, catalog and writer share.

Every field's default is what MAX's llama3 block does, so ``Traits()`` is the
donor and a family's traits read as a diff against it. Numbers that differ
between sizes of one family (widths, eps, rope base, windows) are not traits:
the written port reads them from ``config.json`` at build time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

NormKind = Literal["rms", "layernorm"]
Residual = Literal["sequential", "parallel"]
QKNorm = Literal["none", "per_head", "whole_projection"]
RotaryStyle = Literal["half_split", "interleaved", "none"]
NoPE = Literal["none", "no_rope_layers", "global_layers", "all"]
SlidingWindow = Literal["none", "all", "interleaved"]
AttentionScale = Literal["default", "query_pre_attn_scalar", "attention_multiplier", "none"]
MLPKind = Literal["gated", "plain"]
#: xielu: xIELU (Apertus), a piecewise activation with four learned scalars per layer (act_fn.alpha_p, ...)
Activation = Literal["silu", "gelu", "gelu_tanh", "relu", "relu2", "quick_gelu", "tanh", "xielu"]
EmbeddingScale = Literal["none", "sqrt_hidden", "config"]
Sinusoid = Literal["none", "fairseq", "halves"]
EmbeddingNorm = Literal["none", "final", "own"]
MoERouter = Literal["softmax", "sigmoid"]
Renormalise = Literal["never", "always", "config"]
#: The norm on a language adapter's input: none, the block's norm after the MLP's add (reused), or one of its own.
AdapterNorm = Literal["none", "block", "own"]
#: Multi-head latent attention (DeepSeek-V2/V3): keys and values decompressed from a shared latent. low_rank_query:
#: queries through their own low-rank pair (q_a_proj, q_a_layernorm, q_b_proj); direct_query: one q_proj.
LatentAttention = Literal["none", "low_rank_query", "direct_query"]

#: Config attributes a decoder layer may test to build a dense MLP in place of its MoE block, which the template
#: knows how to read (the layer's own test, read from the modeling code, names them).
MOE_LAYER_KEYS: tuple[str, ...] = ("mlp_only_layers", "decoder_sparse_step", "first_k_dense_replace", "moe_layer_freq",
                                   "mlp_layer_types", "moe_layer_interval", "moe_layer_start_index",
                                   "moe_layer_end_index")

#: The donor's norm placement: role -> the HF module name the checkpoint uses.
PRE_NORMS: tuple[tuple[str, str], ...] = (("pre_attention", "input_layernorm"), ("pre_mlp", "post_attention_layernorm"))


@dataclass(frozen=True)
class Traits:
    """What the port's decoder computes, field by field; defaults are MAX's llama3."""

    norm: NormKind = "rms"
    norm_offset: bool = False  # scale by (1 + w)
    norm_bias: bool = False
    norm_weight: bool = True  # False: statistics only (NanoChat)
    residual: Residual = "sequential"
    block_norms: tuple[tuple[str, str], ...] = PRE_NORMS
    residual_multiplier: bool = False
    residual_from_normed: bool = False  # each residual add takes the sublayer's normed input (BLOOM's option)
    # X-MOD: the served language's bottleneck MLP on the MLP's residual sum (normed by adapter_norm), added back to
    # that input (adapter_residual_normed) or to the un-normed sum, before the block's norm after the MLP's add
    language_adapter: bool = False
    adapter_norm: AdapterNorm = "none"
    adapter_residual_normed: bool = False
    unnormed_first_layer: bool = False  # layer 0 builds its pre-attention norm as an Identity (ModernBERT-decoder)
    final_norm: bool = True  # a norm between the last layer and the head
    qkv_bias: bool = False
    o_bias: bool = False
    o_bias_last_layer: bool = False  # that bias on the last layer only (GPT-NeoX-Japanese)
    attention_output_norm: bool = False  # a norm on the attention's output before o_proj (BitNet)
    mlp_inner_norm: bool = False  # a norm on what the MLP's down projection reads (BitNet)
    mlp_width_per_layer: bool = False  # intermediate_size lists one width per layer (Gemma 3n)
    qk_norm: QKNorm = "none"
    qk_norm_type: NormKind = "rms"
    qk_norm_after_rope: bool = False
    qk_norm_weight: bool = True
    rotary_style: RotaryStyle = "half_split"
    rotary_inverted: bool = False  # the pair rotated by minus the angle (NanoChat)
    nope: NoPE = "none"
    rope_per_layer_type: bool = False
    sliding_window: SlidingWindow = "none"
    pattern_period: int | None = None
    attention_scale: AttentionScale = "default"
    scale_by_layer: bool = False  # each layer's scale divided by its depth (GPT-2's scale_attn_by_inverse_layer_idx)
    clip_qkv: bool = False
    mlp: MLPKind = "gated"
    activation: Activation = "silu"
    mlp_bias: bool = False
    embedding_scale: EmbeddingScale = "none"
    embedding_scale_in_module: bool = False
    position_table: bool = False  # a learned table of absolute positions added to the embeddings (GPT-2, OPT)
    position_offset: int = 0  # its row for position 0 (OPT: 2, RoBERTa: padding_idx + 1)
    position_extra_rows: int = 0  # its rows beyond max_position_embeddings (OPT: 2)
    position_sinusoid: Sinusoid = "none"  # a computed [sin | cos] table added to the embeddings (XGLM, Marian)
    # a norm on the embeddings: the final norm's own module (NanoChat) or a module of its own (TrOCR)
    embedding_norm: EmbeddingNorm = "none"
    token_type_row: bool = False  # BERT-style: row 0 of a token-type table added to every embedding
    head_transform: bool = False  # BERT-style: dense, the MLP's activation and a norm before the head
    head_transform_unbiased: bool = False  # that dense has no bias (ModernBERT-decoder's classifier_bias=False)
    embedding_projection: bool = False  # ELECTRA: embeddings (and the head's input) narrower, projected up
    embedding_extra_rows: int = 0  # Mllama: embedding rows beyond vocab_size (image tokens)
    # RoCBert: tables concatenated to the token embedding at row 0, then a linear to the hidden size:
    # the config keys of each table's (rows, width)
    embedding_side_tables: tuple[tuple[str, str], ...] = ()
    head_bias: bool = False
    logit_scale: bool = False
    logits_divisor: bool = False
    final_softcap: bool = False
    attention_softcap: bool = False
    # differential attention (DiffLlama): two softmax maps per head pair subtracted with a learned lambda, each
    # pair's output normed (statistics only) and scaled by 1 - lambda_init
    differential_attention: bool = False
    alibi: bool = False  # a per-head linear bias by key position added to the scores (BLOOM, MPT)
    moe: bool = False  # the MLP is a mixture of routed experts
    moe_router: MoERouter = "softmax"  # how the router scores experts
    moe_renormalise: Renormalise = "never"  # top-k weights divided by their sum (config: under norm_topk_prob)
    moe_routed_scaling: bool = False  # top-k weights times routed_scaling_factor
    moe_correction_bias: bool = False  # a score-correction bias chooses the experts, the plain scores weigh them
    moe_correction_bias_row: bool = False  # that bias stored as a [1, experts] row (ERNIE-4.5-MoE)
    moe_grouped_topk: bool = False  # experts chosen only from the topk_group groups whose two best scores sum highest
    moe_router_bias: bool = False
    moe_shared: bool = False  # always-on shared expert(s) beside the routed ones
    moe_shared_gate: bool = False  # their output scaled by sigmoid(a linear gate)
    moe_dense_layers: tuple[str, ...] = ()  # of MOE_LAYER_KEYS: what picks the layers that keep a dense MLP
    # Gemma 4: a second token table and a projection of the embeddings give each layer a narrow input, which the
    # layer gates its output with and adds back (embed_tokens_per_layer, per_layer_input_gate, ...)
    per_layer_inputs: bool = False
    layer_scalar: bool = False  # each layer's output multiplied by its own stored scalar (Gemma 4's layer_scalar)
    value_norm: bool = False  # values normed per head with no learned weight before the cache (Gemma 4's v_norm)
    full_head_dim: bool = False  # full-attention layers use a wider head (global_head_dim) than sliding ones
    latent_attention: LatentAttention = "none"  # MLA in place of q/k/v projections, and how its queries are made
    latent_mscale: bool = False  # its scale times YaRN's mscale squared (DeepSeek-V3's code; V2's has none)

    @property
    def norms(self) -> dict[str, str]:
        """Norm role -> module name, in block order."""
        return dict(self.block_norms)

    def differences(self) -> dict[str, Any]:
        """The fields that differ from the donor's, by name."""
        donor = Traits()
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != getattr(donor, f.name)}

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``block_norms`` as a role -> name mapping."""
        data = asdict(self)
        data["block_norms"] = self.norms
        return data


def traits_from(values: dict[str, Any]) -> Traits:
    """:class:`Traits` from a field dict (``block_norms`` as a mapping or pairs); unknown names are refused."""
    known = {f.name for f in fields(Traits)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"not trait fields: {', '.join(unknown)}")
    norms = values.get("block_norms")
    if isinstance(norms, dict):
        values = {**values, "block_norms": tuple(norms.items())}
    return Traits(**values)
