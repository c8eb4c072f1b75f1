"""The delta catalog: which model traits the port template implements, as data one function reads.

Each :class:`CatalogEntry` answers one or more delta-list rules of the planner
(``plan.donors.DELTA_RULES``) and names the :class:`~import_model.plan.traits.Traits`
fields it sets; the writer specialises ``port/template/decoder.py`` on those
traits, and :data:`PIECES` says where each entry lives in a written port. An
anatomy trait that no entry covers becomes a :class:`MissingDelta`: the port is
still written, with that row marked, and ``port`` exits non-zero.

:func:`build_spec` reads a model's anatomy (config + checkpoint keys + HF
modeling source) and returns its traits, the entries applied and what is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_args

from import_model.plan.anatomy import PER_LAYER_INPUT_ROLES, Anatomy
from import_model.plan.donors import DELTA_RULES
from import_model.plan.traits import MOE_LAYER_KEYS, Activation, Traits, traits_from

#: Norm attribute names per block wiring: role -> the HF module name the checkpoint uses.
NORM_LAYOUTS: dict[tuple[str, str], dict[str, str]] = {
    ("sequential", "pre"): {"pre_attention": "input_layernorm", "pre_mlp": "post_attention_layernorm"},
    ("sequential", "sandwich"): {"pre_attention": "input_layernorm", "post_attention": "post_attention_layernorm",
                                 "pre_mlp": "pre_feedforward_layernorm", "post_mlp": "post_feedforward_layernorm"},
    ("sequential", "post"): {"post_attention": "post_attention_layernorm", "post_mlp": "post_feedforward_layernorm"},
    # post-LN: each norm on the residual stream after its add (GPT-1's ln_1 / ln_2, TrOCR's self_attn_layer_norm /
    # final_layer_norm, which the renames bring to these names)
    ("sequential", "after_add"): {"after_attention_add": "input_layernorm", "after_mlp_add": "post_attention_layernorm"},
    ("parallel", "shared"): {"pre_attention": "input_layernorm"},
    ("parallel", "separate"): {"pre_attention": "input_layernorm", "pre_mlp": "post_attention_layernorm"},
}

#: Values the template implements, per anatomy trait.
SUPPORTED: dict[str, frozenset[Any]] = {
    "attention.family": frozenset({"standard", "mla"}),
    "norm.kind": frozenset({"rms", "layernorm"}),
    "mlp.kind": frozenset({"gated", "plain"}),
    "mlp.activation": frozenset(get_args(Activation)),
    "rotary.style": frozenset({"half_split", "interleaved", "none"}),
    "attention.qk_norm": frozenset({"none", "per_head", "whole_projection"}),
    "attention.scale": frozenset({"default", "query_pre_attn_scalar", "multiplier", "none"}),
    "embedding.scale": frozenset({"none", "sqrt_hidden", "multiplier"}),
    "embedding.positions": frozenset({"none", "learned", "sinusoidal"}),
    "embedding.sinusoid": frozenset({"fairseq", "halves"}),
    "attention.position_bias": frozenset({"none", "alibi"}),
}


@dataclass(frozen=True)
class CatalogEntry:
    """One implemented delta: the plan rules it answers, the spec fields it sets and the keys it consumes."""

    id: str
    rules: tuple[str, ...]
    fields: tuple[str, ...]
    summary: str
    keys: str = ""


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry("latent_attention", ("attention_family",), ("latent_attention", "latent_mscale"),
                 "multi-head latent attention (DeepSeek-V2/V3 style), queries through a low-rank pair or one "
                 "projection: the port decompresses the latent into per-head keys (no-rope part and the shared rotated "
                 "part) and values, pads the values to the key width so MAX's flash_attention_ragged and paged KV "
                 "cache serve them on the CPU and GPU alike, and slices the output back to v_head_dim (MAX's own MLA "
                 "kernels, which cache the latent, run on GPUs only)",
                 "self_attn.{q_a_proj,q_a_layernorm,q_b_proj,q_proj,kv_a_proj_with_mqa,kv_a_layernorm,kv_b_proj}"),
    CatalogEntry("attention_bias", ("attention_bias",), ("qkv_bias", "o_bias", "o_bias_last_layer"),
                 "q/k/v and output projection biases", "self_attn.{q,k,v,o}_proj.bias"),
    CatalogEntry("fused_qkv", ("qkv_layout",), (),
                 "fused QKV split into q/k/v by the weight table (block or per-head layout)", "qkv_proj / query_key_value"),
    CatalogEntry("fused_gate_up", ("mlp_fused",), (), "fused gate_up split into gate/up by the weight table",
                 "mlp.gate_up_proj"),
    CatalogEntry("qk_norm", ("qk_norm",), ("qk_norm", "qk_norm_type", "qk_norm_after_rope", "qk_norm_weight"),
                 "QK-norm before or after rotary, per head or over the whole projection, RMS or LayerNorm, "
                 "learned weight or none",
                 "self_attn.{q,k}_norm"),
    CatalogEntry("head_dim", ("head_dim",), (), "explicit head_dim read from the config (KV cache and projections)"),
    CatalogEntry("partial_rotary", ("rotary_fraction",), (), "rotary on the leading fraction of each head"),
    CatalogEntry("rotary_style", ("rotary_style",), ("rotary_style", "rotary_inverted"),
                 "half-split or interleaved rotary pairs, rotated by the angle or by minus it"),
    CatalogEntry("rope_scaling", ("rope_scaling",), (),
                 "rope scaling by transformers' own initializer for the config's rope type"),
    CatalogEntry("local_theta", ("local_theta",), ("rope_per_layer_type",), "a rope base per layer type"),
    CatalogEntry("nope_layers", ("nope_layers",), ("nope",), "layers without rotary (NoPE)"),
    CatalogEntry("sliding_window", ("sliding_window", "layer_pattern"), ("sliding_window", "pattern_period"),
                 "sliding-window attention, all layers or a per-layer pattern"),
    CatalogEntry("attention_scale", ("attention_scale",), ("attention_scale", "scale_by_layer"),
                 "attention scale from query_pre_attn_scalar or a configured multiplier"),
    CatalogEntry("clip_qkv", ("clip_qkv",), ("clip_qkv",), "q/k/v clamped to +-clip_qkv"),
    CatalogEntry("alibi", ("alibi",), ("alibi",),
                 "ALiBi: each head's scores plus its slope times the key's position (the standard schedule, largest "
                 "bias 8), attention written out over K/V read back from a one-head-per-layer cache"),
    CatalogEntry("attention_softcap", ("attention_softcap",), ("attention_softcap",),
                 "attention-logit soft-cap: attention written out over K/V read back from a one-head-per-layer cache"),
    CatalogEntry("differential_attention", ("differential_attention",), ("differential_attention",),
                 "differential attention: each head pair's two softmax maps over values of both, the second weighed by "
                 "exp(q1 . k1) - exp(q2 . k2) + lambda_init and subtracted, normed without a weight and scaled by "
                 "1 - lambda_init; written out over K/V read back from a one-head-per-layer cache",
                 "self_attn.lambda_{q1,k1,q2,k2}"),
    CatalogEntry("final_softcap", ("final_softcap",), ("final_softcap",), "final-logit soft-cap tanh(x/c)*c"),
    CatalogEntry("logit_scale", ("logit_scale",), ("logit_scale",), "logits multiplied by logit_scale"),
    CatalogEntry("logits_divisor", ("logits_divisor",), ("logits_divisor",), "logits divided by logits_scaling"),
    CatalogEntry("embedding_scale", ("embedding_scale",), ("embedding_scale", "embedding_scale_in_module"),
                 "embeddings times sqrt(hidden_size) or a configured multiplier"),
    CatalogEntry("position_table", ("position_table",),
                 ("position_table", "position_offset", "position_extra_rows", "position_sinusoid"),
                 "a table of absolute positions added to the token embeddings, learned (with its row offset) or "
                 "computed (sinusoidal, fairseq or halves layout)",
                 "wpe.weight / embed_positions.weight"),
    CatalogEntry("embedding_norm", ("embedding_norm",), ("embedding_norm",),
                 "embeddings normalised before the first layer, by the final norm's module or by a norm of their own"),
    CatalogEntry("token_type", ("token_type",), ("token_type_row",),
                 "row 0 of the token-type table added to every embedding", "token_type_embeddings.weight"),
    CatalogEntry("embedding_rows", ("embedding_rows",), ("embedding_extra_rows",),
                 "an embedding table with rows beyond the vocabulary", "embed_tokens.weight"),
    CatalogEntry("sub_norms", ("sub_norms",), ("attention_output_norm", "mlp_inner_norm"),
                 "a norm on the attention's output before its projection, and on the MLP's down-projection input",
                 "self_attn.output_norm / mlp.inner_norm"),
    CatalogEntry("embedding_projection", ("embedding_projection",), ("embedding_projection",),
                 "embeddings narrower than the layers, projected up before the first layer; the head transform "
                 "narrows back to their width for the tied head", "embed_projection.{weight,bias}"),
    CatalogEntry("embedding_side_tables", ("embedding_side_tables",), ("embedding_side_tables",),
                 "tables the family indexes by ids text does not carry, concatenated to the token embedding at row 0 "
                 "and mapped to the hidden size by a linear", "side_tables.{j} / input_map"),
    CatalogEntry("per_layer_inputs", ("per_layer_inputs",), ("per_layer_inputs",),
                 "each layer's own input: a second token table plus the normed projection of the embeddings, "
                 "which the layer gates its output with, projects back, norms and adds",
                 "embed_tokens_per_layer / per_layer_model_projection / per_layer_projection_norm / "
                 "layers.*.per_layer_input_gate / per_layer_projection / post_per_layer_input_norm"),
    CatalogEntry("layer_scalar", ("layer_scalar",), ("layer_scalar",), "each layer's output times its stored scalar",
                 "layers.*.layer_scalar"),
    CatalogEntry("value_norm", ("value_norm",), ("value_norm",), "values normed per head, no weight, before the cache"),
    CatalogEntry("full_head_dim", ("full_head_dim",), ("full_head_dim",),
                 "full-attention layers with a wider head: the KV cache holds the widest head, narrower layers pad "
                 "their keys, values and queries with zeros and drop the padding from the output"),
    CatalogEntry("head_transform", ("head_transform",), ("head_transform", "head_transform_unbiased"),
                 "dense, the MLP's activation and a norm between the last layer and the head",
                 "head_transform.{dense,norm}"),
    CatalogEntry("tied_head", ("tied_head",), (), "LM head shares the embedding matrix", "embed_tokens.weight"),
    CatalogEntry("head_bias", ("head_bias",), ("head_bias",), "LM head bias", "lm_head.bias"),
    CatalogEntry("norm_style", ("norm_style",), ("norm", "norm_offset", "norm_bias", "norm_weight"),
                 "RMSNorm, (1 + w) RMSNorm, LayerNorm with or without bias, or either with no learned weight"),
    CatalogEntry("block_norms", ("block_norms",), ("block_norms",),
                 "sandwich / post-norm placement, or post-LN (the norm after each residual add)"),
    CatalogEntry("final_norm", ("final_norm",), ("final_norm",), "no norm between the last layer and the head"),
    CatalogEntry("residual", ("residual",), ("residual", "block_norms"),
                 "parallel attention + MLP residual, shared or separate norms"),
    CatalogEntry("language_adapter", ("language_adapter",),
                 ("language_adapter", "adapter_norm", "adapter_residual_normed"),
                 "the served language's bottleneck MLP (dense, the MLP's activation, dense) on the MLP's residual sum, "
                 "its input normed by the block's norm or its own, added back before the block's norm; the other "
                 "languages' adapters set aside", "language_adapter.{dense1,dense2,norm}"),
    CatalogEntry("unnormed_layers", ("unnormed_layers",), ("unnormed_first_layer",),
                 "no pre-attention norm on the first layer (the family builds an Identity there)"),
    CatalogEntry("residual_source", ("residual_source",), ("residual_from_normed",),
                 "each residual add takes the sublayer's normed input, not the block input"),
    CatalogEntry("residual_multiplier", ("residual_multiplier",), ("residual_multiplier",),
                 "branch outputs scaled before the residual add"),
    CatalogEntry("mlp_kind", ("mlp_kind",), ("mlp", "mlp_width_per_layer"),
                 "gated or plain MLP, one width or one per layer", "mlp.{gate,up,down}_proj"),
    CatalogEntry("activation", ("activation",), ("activation",),
                 "silu, gelu, gelu-tanh, relu, relu^2, quick-gelu, tanh, or xIELU with its learned scalars",
                 "mlp.act_fn.{alpha_p,alpha_n,beta,eps}"),
    CatalogEntry("mlp_bias", ("mlp_bias",), ("mlp_bias",), "MLP biases", "mlp.*.bias"),
    CatalogEntry("moe", ("moe", "moe_shared", "moe_router", "moe_renormalise", "moe_scaling", "moe_correction_bias",
                         "moe_grouped_topk", "moe_router_bias", "moe_shared_gate", "moe_layers", "moe_expert_layout"),
                 ("moe", "moe_router", "moe_renormalise", "moe_routed_scaling", "moe_correction_bias",
                  "moe_correction_bias_row", "moe_grouped_topk", "moe_router_bias", "moe_shared", "moe_shared_gate", "moe_dense_layers"),
                 "routed experts: softmax or sigmoid router (score-correction bias, group-limited top-k over the "
                 "n_group groups whose two best scores sum highest, top-k renormalised always or "
                 "under norm_topk_prob, routed scaling), shared experts with or without a sigmoid gate, dense layers "
                 "picked by the config; on the CPU every expert runs and the router's top-k weights combine them, on "
                 "a GPU MAX's MoE kernels run the same router's choice",
                 "mlp.gate / mlp.experts.{j}.* / mlp.shared_expert*"),
)

BY_RULE: dict[str, CatalogEntry] = {rule: entry for entry in CATALOG for rule in entry.rules}

#: Where each entry lives in a written port: names of ``port/template`` (``Port*`` classes take the family's name).
PIECES: dict[str, tuple[str, ...]] = {
    "latent_attention": ("LatentAttention", "LatentCache", "latent_attention_scale"),
    "attention_bias": ("PortAttention.__init__",),
    "fused_qkv": ("WEIGHT_SPLITS",),
    "fused_gate_up": ("WEIGHT_SPLITS",),
    "qk_norm": ("make_qk_norm", "PortAttention.__call__"),
    "head_dim": ("head_dim_of",),
    "partial_rotary": ("rotary_width", "rotate_leading"),
    "rotary_style": ("interleaved_rotary", "rotate_leading", "RotaryTable"),
    "rope_scaling": ("RotaryTable",),
    "local_theta": ("rotary_tables",),
    "nope_layers": ("rotary_layers",),
    "sliding_window": ("sliding_layers", "PortAttention.__call__"),
    "attention_scale": ("attention_scale",),
    "clip_qkv": ("PortAttention.__call__",),
    "attention_softcap": ("PortAttention._written_out", "CachePerKVHead"),
    "differential_attention": ("PortAttention._differential", "differential_lambda_init", "CachePerKVHead"),
    "alibi": ("alibi_slopes", "PortAttention._written_out", "CachePerKVHead"),
    "final_softcap": ("PortHead.finish",),
    "logit_scale": ("PortHead.finish",),
    "logits_divisor": ("PortHead.finish",),
    "embedding_scale": ("embedding_multiplier", "ScaledEmbedding"),
    "embedding_norm": ("PortDecoder.__call__",),
    "position_table": ("token_positions", "SinusoidTable", "PortDecoder.__call__"),
    "tied_head": ("WEIGHT_TIES", "PortDecoder.__init__"),
    "head_bias": ("PortDecoder.__init__",),
    "norm_style": ("make_norm", "OffsetLayerNorm", "WeightlessNorm"),
    "block_norms": ("PortBlock._sequential",),
    "final_norm": ("NoFinalNorm",),
    "token_type": ("PortDecoder.__call__",),
    "head_transform": ("HeadTransform",),
    "per_layer_inputs": ("PortDecoder.per_layer_inputs", "PortBlock._per_layer_input"),
    "layer_scalar": ("PortBlock.__call__",),
    "value_norm": ("PortAttention.__call__",),
    "full_head_dim": ("layer_head_dim", "HeadWidthView", "zero_padded", "rotary_tables"),
    "embedding_projection": ("embedding_width", "PortDecoder.__call__"),
    "embedding_side_tables": ("PortDecoder.__call__",),
    "sub_norms": ("PortAttention.__call__", "PortMLP.__call__"),
    "embedding_rows": ("PortDecoder.__init__",),
    "residual": ("PortBlock._parallel",),
    "residual_multiplier": ("PortBlock._sequential",),
    "residual_source": ("PortBlock._sequential",),
    "language_adapter": ("LanguageAdapter", "PortBlock._adapted"),
    "unnormed_layers": ("Unnormed", "PortDecoder.__init__"),
    "mlp_kind": ("PortMLP",),
    "activation": ("activation", "XIELU"),
    "mlp_bias": ("PortMLP.__init__",),
    "moe": ("PortRouter", "PortMoE", "expert_layers"),
}


@dataclass(frozen=True)
class MissingDelta:
    """A trait of the model the catalog does not implement."""

    trait: str
    value: Any
    reason: str

    @property
    def rule(self) -> str:
        """The delta-list rule this trait belongs to (the trait itself when no rule compares it)."""
        return next((r.id for r in DELTA_RULES if self.trait in r.traits), self.trait)

    def as_dict(self) -> dict[str, Any]:
        return {"trait": self.trait, "rule": self.rule, "value": self.value, "reason": self.reason}


@dataclass
class SpecResult:
    traits: Traits
    applied: list[CatalogEntry] = field(default_factory=list)
    missing: list[MissingDelta] = field(default_factory=list)

    @property
    def spec(self) -> dict[str, Any]:
        """The traits as a plain mapping (reports, JSON)."""
        return self.traits.as_dict()

    @property
    def complete(self) -> bool:
        return not self.missing

    def as_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "applied": [e.id for e in self.applied],
                "missing": [m.as_dict() for m in self.missing]}


#: What the port uses in place of a value the template lacks (trait -> (SPEC field, stand-in)), so a partial port
#: still builds and verify can show where the missing delta makes it diverge. The TODO row names the stand-in.
STANDINS: dict[str, tuple[str, Any]] = {
    "mlp.activation": ("activation", "silu"),
    "mlp.kind": ("mlp", "gated"),
    "norm.kind": ("norm", "rms"),
    "rotary.style": ("rotary_style", "half_split"),
    "attention.qk_norm": ("qk_norm", "none"),
    "attention.scale": ("attention_scale", "default"),
    "embedding.scale": ("embedding_scale", "none"),
    "attention.output_norm": ("attention_output_norm", False),
    "mlp.inner_norm": ("mlp_inner_norm", False),
}

#: Traits the template cannot express: (anatomy key, test on its value, why).
UNSUPPORTED: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("rotary.scaling", lambda v: v in ("dynamic",),
     "dynamic NTK rope rescales past the trained length; the port's table is static (exact only within it)"),
    ("attention.alibi_max_bias", lambda v: v is not None and v != 8,
     "ALiBi slopes from another largest bias; the catalog writes the standard schedule (largest bias 8)"),
)


def _value(anatomy: Anatomy, key: str, default: Any = None) -> Any:
    return anatomy.value(key, default)


def _scaled_by_module(anatomy: Anatomy) -> bool:
    """HF applies the embedding scale inside the embedding module (its output, the embed tap, is scaled)."""
    row = anatomy.row("embedding.scale")
    return bool(row and row.value != "none" and "Embedding(" in str(row.evidence))


def build_spec(anatomy: Anatomy, config: dict[str, Any], rules: list[str] | None = None) -> SpecResult:
    """The port template's ``SPEC`` for ``anatomy``; ``rules`` are the plan's delta rules (for ``applied``)."""
    missing = _unsupported(anatomy)
    spec = _spec(anatomy, config, missing)
    missing = [_stand_in(m, spec) for m in missing]
    rules = list(rules or [])
    open_rules = {m.rule for m in missing}
    applied = [BY_RULE[r] for r in dict.fromkeys(rules) if r in BY_RULE and r not in open_rules]
    return SpecResult(traits_from(spec), applied, missing + _uncovered(rules, missing))


def _unsupported(anatomy: Anatomy) -> list[MissingDelta]:
    """Traits whose value the template cannot express."""
    missing = []
    for key, allowed in SUPPORTED.items():
        value = _value(anatomy, key)
        if value is not None and value not in allowed:
            missing.append(MissingDelta(key, value, f"{key}={value!r} is not in the catalog "
                                                    f"(supported: {', '.join(sorted(map(str, allowed)))})"))
    for key, test, reason in UNSUPPORTED:
        value = _value(anatomy, key)
        if test(value):
            missing.append(MissingDelta(key, value, reason))
    missing.extend(_moe_unsupported(anatomy))
    if _value(anatomy, "mlp.activation") == "xielu" and _value(anatomy, "mlp.kind", "gated") == "gated":
        missing.append(MissingDelta("mlp.activation", "xielu", "xIELU on a gated MLP's gate: the catalog writes it "
                                                               "for a plain MLP (Apertus) only"))
    for key in ("attention.output_norm", "mlp.inner_norm"):
        if _value(anatomy, key) and _value(anatomy, f"{key}_weight") is False:
            missing.append(MissingDelta(key, _value(anatomy, key), f"{_value(anatomy, key)} has no weight in the "
                                        "checkpoint (a statistics-only norm); the "
                                        "catalog's sub-norm is BitNet's, one learned weight across the whole width"))
    if _value(anatomy, "attention.differential") and _value(anatomy, "attention.differential_norm_weight"):
        missing.append(MissingDelta("attention.differential_norm_weight", True, "the differential attention's norm "
                                    "over each head pair has a learned weight; the template's is statistics only"))
    transform = _value(anatomy, "head.transform")
    if transform is not None and transform != _value(anatomy, "mlp.activation", "silu"):
        missing.append(MissingDelta("head.transform", transform, "the head transform's activation differs from the "
                                                                   "MLP's; the template applies the MLP's to both"))
    unnormed = _value(anatomy, "block.unnormed_layers")
    if unnormed and unnormed != UNNORMED_FIRST_LAYER:
        missing.append(MissingDelta("block.unnormed_layers", unnormed, "the catalog leaves out only the first "
                                                                        "layer's pre-attention norm"))
    missing.extend(_layer_extras_unsupported(anatomy))
    missing.extend(_latent_unsupported(anatomy))
    sliding = _value(anatomy, "attention.sliding_window", "none")
    if sliding not in ("none", "all", "interleaved"):
        missing.append(MissingDelta("attention.sliding_window", sliding, "this sliding-window form is not in the catalog"))
    return missing


#: The Identity norms the template writes: the first layer's pre-attention norm (ModernBERT-decoder).
UNNORMED_FIRST_LAYER = {"pre_attention": [0]}


def _layer_extras_unsupported(anatomy: Anatomy) -> list[MissingDelta]:
    """Per-layer inputs, value norms and wider full-attention heads in forms the template does not write."""
    missing = []
    per_layer = _value(anatomy, "embedding.per_layer_inputs")
    if per_layer and tuple(per_layer) != PER_LAYER_INPUT_ROLES:
        missing.append(MissingDelta("embedding.per_layer_inputs", per_layer, "per-layer-input modules under other "
                                    f"names than the template's ({', '.join(PER_LAYER_INPUT_ROLES)})"))
    elif per_layer and _value(anatomy, "embedding.per_layer_input_scales") is not True:
        missing.append(MissingDelta("embedding.per_layer_inputs", per_layer, "the per-layer inputs' scales are not "
                                    "sqrt(width), hidden_size^-0.5 and 2^-0.5, which the template computes"))
    scalar = _value(anatomy, "block.layer_scalar")
    if scalar and scalar != "layer_scalar":
        missing.append(MissingDelta("block.layer_scalar", scalar, "a layer scalar under another name than "
                                                                   "layer_scalar"))
    if _value(anatomy, "attention.value_norm") == "weighted":
        missing.append(MissingDelta("attention.value_norm", "weighted", "a value norm with a learned weight: the "
                                                                         "template writes the weightless one"))
    if isinstance(_value(anatomy, "attention.full_head_dim"), int) and _value(anatomy, "attention.logit_softcap"):
        missing.append(MissingDelta("attention.full_head_dim", _value(anatomy, "attention.full_head_dim"),
                                    "wider full-attention heads under soft-capped attention: the written-out "
                                    "attention reads one head width"))
    if _value(anatomy, "attention.full_head_dim") == "unread":
        missing.append(MissingDelta("attention.full_head_dim", "unread", "the layers' head widths differ, but not "
                                    "as full-attention layers of global_head_dim with as many KV heads"))
    return missing


#: The eps :class:`LatentAttention`'s latent norms use: the norm class's default in the MLA modeling code read
#: (DeepSeek-V3, Youtu build them without the config's eps).
LATENT_NORM_EPS = 1e-6
#: Attention traits :class:`LatentAttention` does not write (anatomy key, the value it assumes).
LATENT_ASSUMES: tuple[tuple[str, Any], ...] = (
    ("attention.sliding_window", "none"), ("attention.qk_norm", "none"), ("attention.logit_softcap", None),
    ("attention.clip_qkv", None), ("rotary.nope_layers", "none"), ("attention.output_norm", None),
)


def _latent_unsupported(anatomy: Anatomy) -> list[MissingDelta]:
    """Latent-attention variants the template's :class:`LatentAttention` does not write."""
    if _value(anatomy, "attention.family") != "mla":
        return []
    missing = []
    query = _value(anatomy, "attention.latent_query")
    if query not in ("low_rank_query", "direct_query"):
        missing.append(MissingDelta("attention.family", "mla", f"latent attention whose queries are made by "
                                                                f"{query!r}: neither q_a_proj nor q_proj was found"))
    eps = _value(anatomy, "attention.latent_norm_eps")
    if eps is not None and eps != LATENT_NORM_EPS:
        missing.append(MissingDelta("attention.family", "mla", f"latent norms built with eps={eps}; the template's "
                                                                f"are {LATENT_NORM_EPS}"))
    for key, assumed in LATENT_ASSUMES:
        value = _value(anatomy, key, assumed)
        if value not in (assumed, [], False):
            missing.append(MissingDelta(key, value, f"{key}={value!r} with latent attention: LatentAttention does "
                                                    "not write it"))
    return missing


#: Config attributes a layer's test may read that pick nothing (the expert count is above one in any MoE model).
_EXPERT_COUNT_KEYS = frozenset({"num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts"})


def _moe_unsupported(anatomy: Anatomy) -> list[MissingDelta]:
    """MoE variants the template's router and block do not write."""
    if not _value(anatomy, "moe.experts"):
        return []
    missing = []
    router = _value(anatomy, "moe.router", "softmax")
    if router == "unread":
        missing.append(MissingDelta("moe.router", router, "the MoE block was not found in the modeling code's module "
                                                          "tree (the layer builds a dense MLP in another branch), so "
                                                          "its routing is unknown; the port routes by softmax top-k"))
    elif router not in ("softmax", "sigmoid"):
        missing.append(MissingDelta("moe.router", router, f"router scoring {router!r} is not in the catalog"))
    if _value(anatomy, "moe.renormalise") == "config" and _value(anatomy, "moe.renormalise_key") != "norm_topk_prob":
        missing.append(MissingDelta("moe.renormalise", _value(anatomy, "moe.renormalise_key"),
                                    "top-k renormalisation under a switch other than norm_topk_prob"))
    scaling = _value(anatomy, "moe.routed_scaling")
    if scaling not in (None, "routed_scaling_factor"):
        missing.append(MissingDelta("moe.routed_scaling", scaling,
                                    f"top-k weights scaled by self.{scaling}, which the template does not read"))
    keys = set(_value(anatomy, "moe.dense_layers") or ()) - _EXPERT_COUNT_KEYS - set(MOE_LAYER_KEYS)
    if keys:
        missing.append(MissingDelta("moe.dense_layers", sorted(keys),
                                    f"dense layers picked by {', '.join(sorted(keys))}, which the template does not "
                                    "read"))
    if _value(anatomy, "mlp.kind") == "plain":
        missing.append(MissingDelta("mlp.kind", "plain", "experts without a gate projection are not in the catalog"))
    return missing


def _stand_in(missing: MissingDelta, spec: dict[str, Any]) -> MissingDelta:
    """Put the stand-in for an unsupported value into ``spec`` and say so in the missing row."""
    if missing.trait not in STANDINS:
        return missing
    field_name, standin = STANDINS[missing.trait]
    spec[field_name] = standin
    held = "the port leaves it out" if standin is False else f"`{standin}` stands in"
    return MissingDelta(missing.trait, missing.value, f"{missing.reason}; {held} until it is written, "
                                                      "so verify shows where the port diverges")


def _block_norms(anatomy: Anatomy, missing: list[MissingDelta]) -> tuple[str, dict[str, str]]:
    """The residual wiring and its norm names (role -> HF module name)."""
    residual = _value(anatomy, "block.residual", "sequential")
    placement = _value(anatomy, "block.parallel_norm", "shared") if residual == "parallel" else \
        _value(anatomy, "block.norms", "pre")
    norms = NORM_LAYOUTS.get((residual, placement))
    if norms is None:
        missing.append(MissingDelta("block.norms", f"{residual}/{placement}",
                                    "this norm placement and residual wiring is not in the catalog"))
        norms = NORM_LAYOUTS[("sequential", "pre")]
    # The modeling code's own attribute names, when it uses the layout's roles (GLM-4 calls its pre-MLP norm
    # post_attention_layernorm): the graph then asks for the checkpoint's names as they are.
    seen = _value(anatomy, "block.norm_names")
    if isinstance(seen, dict) and set(seen) == set(norms) and len(set(seen.values())) == len(seen) and \
            all(str(name).isidentifier() for name in seen.values()):  # BERT's attention.output.LayerNorm: renamed
        norms = {role: seen[role] for role in norms}
    return residual, dict(norms)


def _renamed(value: Any, names: dict[str, str]) -> Any:
    return names.get(value, value)


def _spec(anatomy: Anatomy, config: dict[str, Any], missing: list[MissingDelta]) -> dict[str, Any]:
    def value(key: str, default: Any = None) -> Any:
        return _value(anatomy, key, default)

    residual, norms = _block_norms(anatomy, missing)
    nope = value("rotary.nope_layers", "none")
    sliding = value("attention.sliding_window", "none")
    spec: dict[str, Any] = {
        "norm": value("norm.kind", "rms"),
        "norm_offset": bool(value("norm.offset", False)),
        "norm_bias": bool(value("norm.bias", False)),
        "norm_weight": value("norm.weight", True) is not False,
        "residual": residual,
        "block_norms": norms,
        "residual_multiplier": value("block.residual_multiplier") not in (None, 1.0),
        "residual_from_normed": value("block.residual_source") == "normed" and residual == "sequential",
        **_adapter_spec(value("block.language_adapter"), value("block.norm_names")),
        "unnormed_first_layer": value("block.unnormed_layers") == UNNORMED_FIRST_LAYER,
        "final_norm": value("norm.final", True) is not False,
        "qkv_bias": bool(value("attention.qkv_bias", False)),
        "o_bias": bool(value("attention.o_bias", False)),
        "o_bias_last_layer": bool(value("attention.o_bias_last_layer", False)),
        "qk_norm": value("attention.qk_norm", "none"),
        "qk_norm_type": "layernorm" if value("attention.qk_norm_type") == "layernorm" else "rms",
        "qk_norm_after_rope": value("attention.qk_norm_position") == "after_rope",
        "qk_norm_weight": value("attention.qk_norm_weight", True) is not False,
        "rotary_style": value("rotary.style", "half_split"),
        "rotary_inverted": value("rotary.direction") == "inverted",
        "nope": "none" if nope in ("none", None, []) else
                ("no_rope_layers" if "no_rope_layers" in config else "global_layers"),
        "rope_per_layer_type": value("rotary.local_theta") is not None,
        "sliding_window": sliding if sliding in ("none", "all", "interleaved") else "none",
        "pattern_period": len(str(value("attention.layer_pattern") or "")) or None,
        "attention_scale": _renamed(value("attention.scale", "default"), {"multiplier": "attention_multiplier"}),
        "scale_by_layer": bool(value("attention.scale_by_layer")),
        "clip_qkv": value("attention.clip_qkv") is not None,
        "mlp": value("mlp.kind", "gated"),
        "activation": value("mlp.activation", "silu"),
        "mlp_bias": bool(value("mlp.bias", False)),
        "embedding_scale": _renamed(value("embedding.scale", "none"), {"multiplier": "config"}),
        "embedding_scale_in_module": _scaled_by_module(anatomy),
        "embedding_norm": value("embedding.norm") if value("embedding.norm") in ("final", "own") else "none",
        "position_table": value("embedding.positions") == "learned",
        "position_offset": int(value("embedding.position_offset") or 0),
        "position_extra_rows": int(value("embedding.position_extra_rows", value("embedding.position_offset")) or 0),
        "position_sinusoid": value("embedding.sinusoid", "none") if value("embedding.positions") == "sinusoidal"
                             else "none",
        "token_type_row": bool(value("embedding.token_type")),
        "head_transform": value("head.transform") is not None,
        "head_transform_unbiased": value("head.transform") is not None and value("head.transform_bias") is False,
        "embedding_projection": bool(value("embedding.projection")),
        "embedding_side_tables": tuple((rows, width) for _, rows, width in value("embedding.side_tables") or ()),
        "embedding_extra_rows": int(value("embedding.extra_rows") or 0),
        "attention_output_norm": bool(value("attention.output_norm")),
        "mlp_inner_norm": bool(value("mlp.inner_norm")),
        "mlp_width_per_layer": bool(value("mlp.width_per_layer")),
        "head_bias": bool(value("head.bias", False)),
        "logit_scale": value("head.logit_scale") is not None,
        "logits_divisor": value("head.logits_divisor") is not None,
        "final_softcap": value("head.final_softcap") is not None,
        "attention_softcap": bool(value("attention.logit_softcap")),
        "differential_attention": bool(value("attention.differential")),
        "per_layer_inputs": bool(value("embedding.per_layer_inputs")),
        "layer_scalar": bool(value("block.layer_scalar")),
        "value_norm": value("attention.value_norm") == "weightless",
        "full_head_dim": isinstance(value("attention.full_head_dim"), int),
        "latent_attention": value("attention.latent_query", "none") if value("attention.family") == "mla" and
                            value("attention.latent_query") in ("low_rank_query", "direct_query") else "none",
        "latent_mscale": bool(value("attention.latent_mscale")) and value("attention.family") == "mla",
        "alibi": value("attention.position_bias") == "alibi",
    }
    if value("moe.experts"):
        spec.update({
            "moe": True,
            "moe_router": value("moe.router", "softmax") if value("moe.router") in ("softmax", "sigmoid") else "softmax",
            "moe_renormalise": value("moe.renormalise", "never"),
            "moe_routed_scaling": value("moe.routed_scaling") is not None,
            "moe_correction_bias": bool(value("moe.correction_bias")),
            "moe_correction_bias_row": value("moe.correction_bias_rows") == 1,
            "moe_grouped_topk": value("moe.grouped_topk") is not None,
            "moe_router_bias": bool(value("moe.router_bias")),
            "moe_shared": bool(value("moe.shared_experts")),
            "moe_shared_gate": bool(value("moe.shared_gate")),
            "moe_dense_layers": tuple(k for k in MOE_LAYER_KEYS if k in (value("moe.dense_layers") or ())),
        })
    if spec["rotary_style"] == "none":
        spec["nope"] = "all"
    return spec


def _adapter_spec(adapter: Any, norm_names: Any) -> dict[str, Any]:
    """The language adapter's traits from its anatomy row: its input's norm is the block's own where it is the
    module the block norms the MLP's residual sum with (X-MOD's adapter_reuse_layer_norm), else one of its own."""
    if not isinstance(adapter, dict):
        return {}
    norm = adapter.get("norm")
    after_mlp = norm_names.get("after_mlp_add") if isinstance(norm_names, dict) else None
    return {"language_adapter": True,
            "adapter_norm": "none" if norm is None else "block" if norm == after_mlp else "own",
            "adapter_residual_normed": adapter.get("residual") == "normed" and norm is not None}


def _uncovered(rules: list[str], missing: list[MissingDelta]) -> list[MissingDelta]:
    """Plan delta rules no catalog entry answers and no missing trait already names."""
    covered = {r for e in CATALOG for r in e.rules}
    traits = {r.id: r.traits for r in DELTA_RULES}
    named = {m.trait for m in missing}
    return [MissingDelta(rule, None, f"delta `{rule}` has no catalog entry") for rule in dict.fromkeys(rules)
            if rule not in covered and not (named & set(traits.get(rule, ())))
            and rule not in {t.split(".")[0] for t in named}]


def entry_rows(result: SpecResult, rules: tuple[str, ...]) -> list[dict[str, Any]]:
    """One row per plan delta: the catalog entry that implements it, or why none does."""
    rows = []
    for rule in dict.fromkeys(rules):
        entry = BY_RULE.get(rule)
        missing = next((m for m in result.missing if m.rule == rule), None)
        rows.append({"rule": rule, "entry": entry.id if entry else None,
                     "status": "implemented" if entry and missing is None else "missing",
                     "how": missing.reason if missing else (entry.summary if entry else "no catalog entry")})
    return rows
