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

from import_model.plan.anatomy import Anatomy
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
    "attention.family": frozenset({"standard"}),
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
    CatalogEntry("head_transform", ("head_transform",), ("head_transform",),
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
    "attention_bias": ("PortAttention.__init__",),
    "fused_qkv": ("WEIGHT_SPLITS",),
    "fused_gate_up": ("WEIGHT_SPLITS",),
    "qk_norm": ("make_qk_norm", "PortAttention.__call__"),
    "head_dim": ("head_dim_of",),
    "partial_rotary": ("rotary_width", "PortAttention._rotate"),
    "rotary_style": ("interleaved_rotary", "PortAttention._rotate", "RotaryTable"),
    "rope_scaling": ("RotaryTable",),
    "local_theta": ("rotary_tables",),
    "nope_layers": ("rotary_layers",),
    "sliding_window": ("sliding_layers", "PortAttention.__call__"),
    "attention_scale": ("attention_scale",),
    "clip_qkv": ("PortAttention.__call__",),
    "alibi": ("alibi_slopes", "PortAttention._written_out", "CachePerKVHead"),
    "attention_softcap": ("PortAttention._written_out", "CachePerKVHead"),
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
    "embedding_projection": ("embedding_width", "PortDecoder.__call__"),
    "embedding_side_tables": ("PortDecoder.__call__",),
    "sub_norms": ("PortAttention.__call__", "PortMLP.__call__"),
    "embedding_rows": ("PortDecoder.__init__",),
    "residual": ("PortBlock._parallel",),
    "residual_multiplier": ("PortBlock._sequential",),
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
    applied = [BY_RULE[r] for r in dict.fromkeys(rules) if r in BY_RULE]
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
                                        "checkpoint (a statistics-only norm, over groups of heads in DiffLlama); the "
                                        "catalog's sub-norm is BitNet's, one learned weight across the whole width"))
    transform = _value(anatomy, "head.transform")
    if transform is not None and transform != _value(anatomy, "mlp.activation", "silu"):
        missing.append(MissingDelta("head.transform", transform, "the head transform's activation differs from the "
                                                                   "MLP's; the template applies the MLP's to both"))
    sliding = _value(anatomy, "attention.sliding_window", "none")
    if sliding not in ("none", "all", "interleaved"):
        missing.append(MissingDelta("attention.sliding_window", sliding, "this sliding-window form is not in the catalog"))
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
                     "how": entry.summary if entry else (missing.reason if missing else "no catalog entry")})
    return rows
