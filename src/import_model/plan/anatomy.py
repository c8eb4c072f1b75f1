"""A model's anatomy: what its forward pass computes, one row per trait, each row saying where it was read.

Three sources feed the rows:

- ``config``: ``config.json`` (normalised through transformers' config class
  when the model_type is known, so defaults are filled in the way HF fills them);
- ``checkpoint``: tensor names and shapes from the safetensors headers, matched
  against :data:`KEY_FACTS` (for a donor, the names its modeling code would
  create, labelled ``modeling``);
- ``modeling``: the HF modeling source, read statically by
  :mod:`import_model.plan.behaviour`.

A row whose source could not be read falls back to ``default`` (what almost
every decoder does) and says so in its evidence. :data:`TRAITS` lists every row
key with its meaning; :func:`describe` turns a value into words.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from import_model.plan import behaviour
from import_model.plan.modeling import (
    SourceTree,
    build_module_tree,
    causal_lm_class,
    config_defaults,
    hf_config_class,
    modeling_path,
)
from import_model.recon.keys import key_pattern
from import_model.recon.transformers_files import known_model_type
from import_model.source.checkpoint import Checkpoint
from import_model.source.config_keys import CONFIG_ALIASES

CONFIG, CHECKPOINT, MODELING, DEFAULT = "config", "checkpoint", "modeling", "default"

#: Every anatomy row: "component.trait" -> what the value means.
TRAITS: dict[str, str] = {
    "attention.family": "standard (softmax over a KV cache) | mla | hybrid (recurrent or linear layers)",
    "attention.latent_query": "mla only: low_rank_query (q_a_proj, q_a_layernorm, q_b_proj) | direct_query (q_proj)",
    "attention.latent_mscale": "mla only: the softmax scale is multiplied by YaRN's mscale squared (mscale_all_dim)",
    "attention.latent_norm_eps": "mla only: the eps the latent norms (q_a_layernorm, kv_a_layernorm) are built with",
    "attention.kind": "mha | gqa | mqa",
    "attention.heads": "query heads",
    "attention.kv_heads": "key/value heads",
    "attention.head_dim": "per-head width",
    "attention.head_dim_explicit": "config sets head_dim (it may differ from hidden_size / heads)",
    "attention.head_dim_differs": "head_dim * heads != hidden_size (an explicit head_dim that matters)",
    "attention.head_dim_source": "config | derived: whether the attention code reads config.head_dim",
    "attention.qkv_layout": "split (q/k/v projections) | fused (one qkv projection)",
    "attention.qkv_bias": "q/k/v projections carry a bias",
    "attention.o_bias": "the output projection carries a bias",
    "attention.o_bias_last_layer": "only the last layer's output projection carries that bias (GPT-NeoX-Japanese)",
    "attention.qk_norm": "none | per_head (norm over head_dim) | whole_projection (norm over heads * head_dim)",
    "attention.output_norm": "the attention module's norm on its output before the output projection (BitNet's "
                             "attn_sub_norm; None: none)",
    "mlp.inner_norm": "the MLP's norm on what its last projection reads (BitNet's ffn_sub_norm; None: none)",
    "attention.output_norm_weight": "that norm has a weight in the checkpoint (False: statistics only, as DiffLlama's "
                                    "norm over each pair of heads)",
    "mlp.inner_norm_weight": "the MLP's inner norm has a weight in the checkpoint",
    "mlp.width_per_layer": "intermediate_size is a list, one MLP width per layer (Gemma 3n)",
    "attention.qk_norm_type": "rms | layernorm (only with a QK norm)",
    "attention.qk_norm_position": "before_rope | after_rope (only with a QK norm whose forward was read)",
    "attention.qk_norm_weight": "the QK-norm has a learned weight (only with a QK norm)",
    "attention.scale": "default (1/sqrt(head_dim)) | query_pre_attn_scalar | multiplier | custom",
    "attention.scale_value": "the softmax scale, evaluated",
    "attention.scale_by_layer": "True when each layer's scale is divided by its depth (GPT-2's flag)",
    "attention.logit_softcap": "tanh cap on attention scores (None: off)",
    "attention.differential": "differential attention: the four lambda vectors (q1, k1, q2, k2) whose exp(q1 . k1) - "
                              "exp(q2 . k2) weighs the second half of the heads' maps against the first (None: off)",
    "attention.differential_norm_weight": "the differential attention's norm over each head pair has a weight in the "
                                          "checkpoint (False: statistics only, DiffLlama's groupnorm)",
    "attention.position_bias": "none | alibi (a per-head linear bias on the scores) | alibi_scaled (scaled with them)",
    "attention.sliding_window": "none | all (every layer) | interleaved (per-layer pattern)",
    "attention.window": "sliding window length in tokens",
    "attention.layer_pattern": "one period of the layer types: S sliding, F full, C chunked",
    "attention.clip_qkv": "clamp on q/k/v activations (None: off)",
    "rotary.style": "half_split (rotate_half on halves) | interleaved (adjacent pairs) | none",
    "rotary.direction": "standard | inverted (the helper rotates by minus the angle)",
    "rotary.fraction": "share of head_dim that is rotated (partial rotary < 1)",
    "rotary.scaling": "rope frequency formula: default | linear | dynamic | yarn | longrope | llama3 | ...",
    "rotary.theta": "rope base frequency",
    "rotary.local_theta": "a separate rope base for sliding layers (None: one base for all)",
    "rotary.nope_layers": "layers that skip rotary (NoPE), or none",
    "norm.kind": "rms | layernorm",
    "norm.offset": "the weight is applied as (1 + w)",
    "norm.weight": "the norm has a learned weight",
    "norm.bias": "the norm has a learned bias",
    "norm.eps": "norm epsilon",
    "norm.final": "a norm closes the layer stack before the head (False: the last layer's output goes to the head)",
    "block.residual": "sequential | parallel (attention and MLP both read the block input)",
    "block.norms": "pre | sandwich (pre and post) | post (post only) | none | after_add (post-LN, after the residual add)",
    "block.parallel_norm": "shared | separate (parallel blocks only)",
    "block.residual_source": "normed: each residual add takes the sublayer's normed input (None: the block input)",
    "block.norm_names": "the decoder layer's norm attribute per role (pre/post attention, pre/post MLP)",
    "block.residual_multiplier": "scale on each sublayer output before the residual add (None: off)",
    "block.unnormed_layers": "norm role -> the layers that build it as an Identity (ModernBERT-decoder: no "
                             "pre-attention norm on layer 0); None: every layer has its norms",
    "model.other_modality_modules": "modules outside the layers that run only with image or audio inputs (a vision "
                                    "tower, an audio embedder): a text-only causal LM never runs them",
    "block.cross_attention": "the layer's modules that run only with encoder states (cross-attention): a causal LM "
                             "never reads their weights",
    "mlp.kind": "gated (act(gate) * up) | plain (act(up))",
    "mlp.fused_gate_up": "gate and up projections stored as one tensor",
    "mlp.activation": "silu | gelu_tanh | gelu | relu | relu2 | ...",
    "mlp.bias": "MLP projections carry biases",
    "moe.experts": "routed experts per MoE layer (0: dense)",
    "moe.top_k": "experts per token",
    "moe.shared_experts": "always-on shared experts",
    "moe.router": "router scoring: softmax | sigmoid",
    "moe.renormalise": "top-k weights divided by their sum: never | always | config (under a config switch)",
    "moe.renormalise_key": "the config attribute that switches renormalisation on (norm_topk_prob)",
    "moe.routed_scaling": "the attribute the top-k weights are multiplied by (routed_scaling_factor; None: off)",
    "moe.grouped_topk": "expert groups for group-limited top-k (n_group, also 1 where the router's code groups; "
                        "None: plain top-k)",
    "moe.correction_bias": "a score-correction bias added to the scores for choosing only",
    "moe.correction_bias_rows": "rows of a score-correction bias stored as [rows, experts] (None: one per expert)",
    "moe.router_bias": "the router's linear carries a bias",
    "moe.shared_gate": "the shared experts' output scaled by sigmoid(its own linear gate)",
    "moe.dense_layers": "config attributes the layer tests to build a dense MLP instead (empty: every layer routes)",
    "moe.expert_layout": "per_expert (experts.{j}.gate_proj ...) | stacked (3-D experts.gate_up_proj ...)",
    "embedding.scale": "none | sqrt_hidden | multiplier",
    "embedding.scale_value": "the embedding multiplier, evaluated",
    "embedding.norm": "a norm on the embeddings before the first layer: final (the final norm's module) | own (a module "
                      "of its own) | None",
    "embedding.positions": "none | learned | sinusoidal (a position table added to the token embeddings; "
                           "sinusoidal: computed, no weights)",
    "embedding.sinusoid": "fairseq (sin | cos, 10000^(-i / (half - 1))) | halves (10000^(-i / half)) | unknown",
    "embedding.position_offset": "the position table's row for position 0 (OPT: 2; RoBERTa: padding_idx + 1)",
    "embedding.position_extra_rows": "rows of the position table beyond max_position_embeddings (OPT: 2)",
    "embedding.token_type": "a table of token types whose row 0 is added to every embedding (BERT-style)",
    "embedding.extra_rows": "rows of the embedding table beyond vocab_size (Mllama's image tokens; None: none)",
    "embedding.projection": "the embeddings' own width where a linear projects them to the hidden size before the "
                            "first layer (ELECTRA's embedding_size; None: the embeddings are hidden-wide)",
    "embedding.side_tables": "tables concatenated to the token embedding at row 0 (the ids text does not carry), "
                             "then mapped to the hidden size: ((module, rows key, width key), ...) (RoCBert)",
    "embedding.input_map": "the linear that maps that concatenation to the hidden size",
    "head.tied": "the LM head reuses the embedding matrix",
    "head.bias": "the LM head carries a bias",
    "head.transform": "the activation of a dense + activation + norm before the head (BERT-style; None: none)",
    "head.transform_bias": "that dense has a bias (None: no transform, or no stored weight to tell)",
    "head.logit_scale": "logits multiplied by a constant (None: off)",
    "head.logits_divisor": "logits divided by a constant (None: off)",
    "head.final_softcap": "tanh cap on the final logits (None: off)",
    "block.language_adapter": "a module picked by a language id from a per-language table, run on the MLP's "
                              "residual sum (or its norm) and added back (X-MOD): the table, its norm, what is "
                              "added back, the language the port serves and every language the checkpoint holds",
    "embedding.per_layer_inputs": "the modules that give each layer its own narrow input (a second token table, a "
                                  "projection of the embeddings and its norm; per layer a gate, a projection back and "
                                  "a norm), in PER_LAYER_INPUT_ROLES order (Gemma 4; None: none)",
    "embedding.per_layer_input_scales": "those inputs' three scales match sqrt(width), hidden_size^-0.5 and 2^-0.5",
    "block.layer_scalar": "a stored [1] scalar each layer's output is multiplied by (Gemma 4's layer_scalar; None)",
    "attention.value_norm": "weightless | weighted: a per-head norm on the values (Gemma 4's v_norm; None: none)",
    "attention.full_head_dim": "the wider head of the full-attention layers where the checkpoint's q/k/v widths "
                               "differ between layers (Gemma 4's global_head_dim; None: one width; unread: the "
                               "layers or the config key do not say which)",
    "weights.unexplained": "checkpoint key patterns no trait accounts for (learned positions, extra norms, new "
                           "parameters): their computation is a delta no rule names",
}


@dataclass(frozen=True)
class Row:
    """One trait of the anatomy and where it was read."""

    component: str
    trait: str
    value: Any
    source: str
    evidence: str

    @property
    def key(self) -> str:
        return f"{self.component}.{self.trait}"


@dataclass
class Anatomy:
    """A model's traits (rows keyed ``component.trait``), category and reading notes."""

    model_type: str
    architecture: str | None
    category: str = "dense"  # dense | moe | mla | hybrid | multimodal
    rows: dict[str, Row] = field(default_factory=dict)
    modeling_file: str | None = None
    notes: list[str] = field(default_factory=list)
    #: Parameters the modeling code would allocate for this config (None: not read).
    estimated_parameters: int | None = None

    def add(self, key: str, value: Any, source: str, evidence: str) -> None:
        component, trait = key.split(".", 1)
        self.rows[key] = Row(component, trait, value, source, evidence)

    def value(self, key: str, default: Any = None) -> Any:
        row = self.rows.get(key)
        return row.value if row is not None else default

    def row(self, key: str) -> Row | None:
        return self.rows.get(key)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_type": self.model_type, "architecture": self.architecture, "category": self.category,
            "modeling_file": self.modeling_file, "notes": list(self.notes),
            "estimated_parameters": self.estimated_parameters,
            "rows": [asdict(row) | {"key": row.key} for row in self.rows.values()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Anatomy:
        anatomy = cls(data["model_type"], data.get("architecture"), data.get("category", "dense"),
                      modeling_file=data.get("modeling_file"), notes=list(data.get("notes", [])),
                      estimated_parameters=data.get("estimated_parameters"))
        for row in data.get("rows", []):
            anatomy.add(row["key"], row["value"], row["source"], row["evidence"])
        return anatomy


# --------------------------------------------------------------------------- words for values

_WORDS: dict[str, dict[Any, str]] = {
    "norm.kind": {"rms": "RMSNorm", "layernorm": "LayerNorm"},
    "rotary.direction": {"standard": "rotates by the angle", "inverted": "rotates by minus the angle"},
    "rotary.style": {"half_split": "half-split rotary (rotate_half)", "interleaved": "interleaved rotary (adjacent pairs)",
                     "none": "no rotary", "unknown": "rotary style not recognised"},
    "block.residual": {"sequential": "sequential residual", "parallel": "parallel attention + MLP"},
    "block.norms": {"pre": "pre-norm", "sandwich": "sandwich norms (pre + post)", "post": "post-norm only",
                    "none": "no block norms", "after_add": "norm after each residual add (post-LN)"},
    "mlp.kind": {"gated": "gated MLP", "plain": "plain (non-gated) MLP"},
    "attention.qk_norm": {"none": "no QK-norm", "per_head": "per-head QK-norm",
                          "whole_projection": "QK-norm over the whole projection"},
    "attention.sliding_window": {"none": "no sliding window", "all": "sliding window on every layer",
                                 "interleaved": "sliding/global layer pattern"},
    "attention.scale": {"default": "scale 1/sqrt(head_dim)", "query_pre_attn_scalar": "scale query_pre_attn_scalar^-0.5",
                        "multiplier": "scale = configured attention multiplier", "custom": "custom scale"},
    "embedding.scale": {"none": "unscaled embeddings", "sqrt_hidden": "embeddings * sqrt(hidden_size)",
                        "multiplier": "embeddings * configured multiplier"},
    "attention.qkv_layout": {"split": "separate q/k/v projections", "fused": "fused qkv projection"},
}


_WORDS.update({
    "mlp.activation": {"silu": "SiLU", "gelu_tanh": "GELU (tanh approximation)", "gelu": "GELU (erf)",
                       "relu2": "squared ReLU", "relu": "ReLU"},
    "block.parallel_norm": {"shared": "one norm shared by attention and MLP", "separate": "separate attention / MLP norms"},
    "attention.position_bias": {"none": "no bias on the attention scores", "alibi": "ALiBi (a per-head linear bias)",
                                "alibi_scaled": "ALiBi scaled with the scores"},
    "attention.family": {"standard": "softmax attention", "mla": "multi-head latent attention",
                         "hybrid": "hybrid (recurrent / conv / linear layers)"},
    "attention.qk_norm_type": {"rms": "RMS", "layernorm": "LayerNorm"},
    "attention.qk_norm_position": {"before_rope": "QK-norm before rotary", "after_rope": "QK-norm after rotary"},
})

#: Value formatters for traits whose words depend on the value itself.
_FORMATS: dict[str, Any] = {
    "rotary.fraction": lambda v: "full rotary" if v in (None, 1, 1.0) else f"partial rotary ({v:g} of head_dim)",
    "rotary.nope_layers": lambda v: "rotary on every layer" if v in ("none", None, []) else f"NoPE (no rotary) on layers {_short_list(v)}",
    "rotary.local_theta": lambda v: "one rope base for all layers" if not v else f"sliding layers use rope base {v:g}",
    "rotary.scaling": lambda v: f"rope scaling {v}",
    "head.tied": lambda v: "LM head tied to the embeddings" if v else "separate lm_head weight",
    "head.bias": lambda v: "LM head bias" if v else "no LM head bias",
    "head.logit_scale": lambda v: f"logits * {v:g}" if v else "no logit scale",
    "head.logits_divisor": lambda v: f"logits / {v:g}" if v else "no logit divisor",
    "head.final_softcap": lambda v: f"final logits capped by {v:g} * tanh(x / {v:g})" if v else "no final-logit softcap",
    "weights.unexplained": lambda v: _short_list(v) if v else "every weight explained",
    "attention.differential": lambda v: f"differential attention (lambda from {', '.join(v)})" if v else
                              "one softmax map per head",
    "attention.differential_norm_weight": lambda v: "a learned weight on the head-pair norm" if v else
                                          "head-pair norm without a weight",
    "block.language_adapter": lambda v: f"the {v['language']} adapter of {v['table']} after the MLP's residual add"
                                        if v else "no language adapter",
    "embedding.per_layer_inputs": lambda v: f"per-layer inputs ({v[0]}, {v[3]}, ...)" if v else "no per-layer inputs",
    "block.layer_scalar": lambda v: f"layer output * {v}" if v else "no layer scalar",
    "attention.value_norm": lambda v: f"{v} value norm" if v else "no value norm",
    "attention.full_head_dim": lambda v: f"full-attention head_dim {v}" if v else "one head_dim for every layer",
    "attention.logit_softcap": lambda v: f"attention scores capped by {v:g} * tanh(x / {v:g})" if v else "no attention softcap",
    "attention.qkv_bias": lambda v: "q/k/v biases" if v else "no q/k/v biases",
    "attention.o_bias_last_layer": lambda v: "on the last layer only" if v else "",
    "attention.output_norm": lambda v: f"{v} on the attention's output" if v else "no norm on the attention's output",
    "mlp.inner_norm": lambda v: f"{v} on the down projection's input" if v else "no norm inside the MLP",
    "attention.o_bias": lambda v: "output-projection bias" if v else "no output-projection bias",
    "attention.clip_qkv": lambda v: f"q/k/v clamped to +-{v:g}" if v else "no q/k/v clamp",
    "attention.layer_pattern": lambda v: f"layer pattern {v} (S=sliding, F=full)",
    "attention.head_dim": lambda v: f"head_dim {v}",
    "attention.scale_by_layer": lambda v: "scale divided by the layer's depth (layer_idx + 1)" if v else "",
    "mlp.bias": lambda v: "MLP biases" if v else "no MLP biases",
    "mlp.fused_gate_up": lambda v: "fused gate_up projection" if v else "separate gate / up projections",
    "moe.experts": lambda v: f"{v} routed experts" if v else "dense MLP (no experts)",
    "moe.shared_experts": lambda v: f"{v} shared expert(s)" if v else "no shared expert",
    "block.residual_multiplier": lambda v: f"sublayer outputs * {v:g}" if v else "no residual multiplier",
    "norm.offset": lambda v: "(1 + w) weight" if v else "",
    "norm.weight": lambda v: "" if v else "no learned weight",
    "norm.bias": lambda v: "with bias" if v else "no bias",
    "attention.qk_norm_weight": lambda v: "learned QK-norm weight" if v else "weightless QK-norm",
    "embedding.positions": lambda v: {"learned": "learned position table added to the embeddings",
                                      "sinusoidal": "sinusoidal position table (computed) added to the embeddings"
                                      }.get(v, "no position table"),
    "norm.final": lambda v: "a norm before the head" if v else "no norm after the last layer",
    "embedding.token_type": lambda v: "row 0 of a token-type table added" if v else "no token types",
    "head.transform": lambda v: f"dense, {v}, norm before the head" if v else "no head transform",
    "embedding.extra_rows": lambda v: f"{v} embedding rows beyond the vocabulary" if v else
                                      "one embedding row per vocabulary entry",
    "embedding.projection": lambda v: f"embeddings {v} wide, projected to the hidden size" if v else
                                      "embeddings as wide as the layers",
    "embedding.side_tables": lambda v: f"{', '.join(t[0] for t in v)} concatenated at row 0" if v else
                                       "no tables concatenated to the token embedding",
    "embedding.norm": lambda v: {"final": "embeddings normalised by the final norm's module",
                                 "own": "embeddings normalised by a norm of their own"}.get(v, "embeddings not normalised"),
}


def describe(key: str, value: Any) -> str:
    """A value in words (``norm.kind``/``rms`` -> ``RMSNorm``)."""
    words = _WORDS.get(key, {})
    if isinstance(value, (str, int, float, bool)) and value in words:
        return words[value]
    if key in _FORMATS:
        with contextlib.suppress(TypeError, ValueError):
            return _FORMATS[key](value)
    trait = key.split(".", 1)[-1].replace("_", " ")
    if isinstance(value, bool):
        return trait if value else f"no {trait}"
    if value is None:
        return f"no {trait}"
    if isinstance(value, list):
        return f"{trait} {_short_list(value)}"
    return f"{trait} {value}"


def _short_list(items: list[Any]) -> str:
    shown = ", ".join(str(i) for i in items[:8])
    return f"[{shown}{', ...' if len(items) > 8 else ''}] ({len(items)})"


# --------------------------------------------------------------------------- config helpers

#: Caps that keep a hostile config from being handed to transformers' config classes.
SANE_LAYERS = 1024
SANE_WIDTH = 10**7
SANE_LIST = 4096


def _int(cfg: dict, *names: str) -> int | None:
    for name in names:
        value = cfg.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**40:
            return value
    return None


def _float(cfg: dict, *names: str) -> float | None:
    for name in names:
        value = cfg.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            with contextlib.suppress(OverflowError):
                number = float(value)
                if math.isfinite(number):
                    return number
    return None


def _text_section(config: dict) -> dict:
    """The language-model part of a config (``text_config`` of a multimodal config)."""
    for key in ("text_config", "llm_config", "language_config"):
        if isinstance(config.get(key), dict):
            return config[key]
    return config


def _sane(config: dict, depth: int = 0) -> bool:
    """Small enough to hand to transformers' config class (which builds per-layer lists)."""
    if depth > 3:
        return False
    for value in config.values():
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and not 0 <= value <= SANE_WIDTH * 30:
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if isinstance(value, (list, tuple)) and len(value) > SANE_LIST:
            return False
        if isinstance(value, dict) and (len(value) > SANE_LIST or not _sane(value, depth + 1)):
            return False
    layers = config.get("num_hidden_layers")
    return not (isinstance(layers, int) and layers > SANE_LAYERS)


def effective_config(config: dict) -> tuple[dict, str | None]:
    """``config`` with the config class's defaults filled in; a note when that was not possible.

    Defaults and attribute aliases are read from the config class's source. Only when a field the
    class derives in ``__post_init__`` matters here and the file lacks it (``layer_types`` of a
    sliding-window model, ``no_rope_layers``) is transformers itself asked, which costs seconds.
    """
    model_type = config.get("model_type")
    defaults = config_defaults(model_type) if known_model_type(model_type) else None
    if defaults is None:
        return dict(config), None
    merged = dict(defaults.values)
    merged.update(config)
    for alias, target in defaults.aliases.items():
        if alias in config and target not in config:
            merged[target] = config[alias]
        elif target in config and alias not in config:  # MPT stores d_model; its code reads config.hidden_size
            merged[alias] = config[target]
    if not _needs_derivation(config, merged, defaults.derived):
        return merged, None
    if not _sane(config):
        return merged, "config values too large to normalise; derived fields read as written"
    try:
        with _quiet():
            normalised = hf_config_class(model_type).from_dict(dict(config)).to_dict()
    except Exception as exc:  # noqa: BLE001 - a stranger's config may break the class in any way
        return merged, f"transformers could not load the config ({type(exc).__name__}); derived fields read as written"
    merged.update(normalised)
    return merged, None


def _needs_derivation(config: dict, merged: dict, derived: frozenset[str]) -> bool:
    sliding = isinstance(merged.get("sliding_window"), int) and merged.get("use_sliding_window") is not False
    if "layer_types" in derived and config.get("layer_types") is None and sliding:
        return True
    return "no_rope_layers" in derived and config.get("no_rope_layers") is None


@contextlib.contextmanager
def _quiet():
    """Silence transformers' warnings and prints while it normalises a config."""
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


# --------------------------------------------------------------------------- checkpoint key facts

#: BERT-style attention keeps its projections one module deeper (attention.self.query, attention.output.dense).
_ATTN = r"(?:self_attn|attention|attn|self_attention|mixer)(?:\.self|\.output)?"
#: BERT-style blocks: the MLP is intermediate.dense then output.dense, each sublayer's norm sits in its output module.
_BERT_MLP = r"\{i\}\.(?:intermediate|output)\.dense"
#: BERT-style norms in a sublayer: post-LN in the output modules, pre-LN in the attention wrapper or the MLP's
#: first module, or BERT-cased on the layer (Megatron-BERT's attention.ln, XLM-RoBERTa-XL's LayerNorm)
_BERT_NORM = r"\{i\}\.(?:(?:attention\.)?output\.LayerNorm|(?:attention\.|intermediate\.)?(?:LayerNorm|ln|\w*layer_norm))"
_MLP = r"(?:mlp|feed_forward|ffn|block_sparse_moe|moe)"
#: A learned position table: wpe (GPT-2), embed_positions (OPT), position_embeddings (BERT-style), positions_embed
#: (GPT-1).
POSITION_TABLE_KEY = r"(?:^|\.)(?:wpe|embed_positions|position_embeddings|positions_embed)\.weight$"
#: fact -> regex over key patterns (``model.layers.{i}.self_attn.q_proj.weight``).
KEY_FACTS: dict[str, str] = {
    "qkv_fused": rf"\.{_ATTN}\.(?:qkv_proj|query_key_value|Wqkv|c_attn|W_pack|qkv)\.weight$",
    "q_split": rf"\.{_ATTN}\.(?:q_proj|query|wq|q_a_proj|q_b_proj)\.weight$",
    # q_a_proj / kv_a_proj_with_mqa: latent attention's input projections, biased under attention_bias (DeepSeek-V3)
    "qkv_bias": rf"\.{_ATTN}\.(?:q_proj|k_proj|v_proj|query|key|value|wq|wk|wv|qkv_proj|query_key_value|Wqkv|c_attn|W_pack|"
                r"q_a_proj|kv_a_proj_with_mqa)\.bias$",
    # latent attention (DeepSeek-V2/V3, Youtu): keys and values come up from a compressed latent through kv_b_proj;
    # queries through their own low-rank pair (q_a_proj) or one q_proj
    "kv_latent_up": rf"\.{_ATTN}\.kv_b_proj\.weight$",
    "q_low_rank": rf"\.{_ATTN}\.q_a_proj\.weight$",
    "q_direct": rf"\.{_ATTN}\.q_proj\.weight$",
    "o_bias": rf"\.{_ATTN}\.(?:(?:o_proj|dense|out_proj|wo|c_proj)\.bias|dense_bias)$",  # GPT-NeoX-Japanese: dense_bias
    "q_norm": rf"\.{_ATTN}\.(?:q_norm|q_layernorm|query_layernorm|q_ln)\.(?:norms\.\{{j\}}\.)?weight$",
    "k_norm": rf"\.{_ATTN}\.(?:k_norm|k_layernorm|key_layernorm|k_ln)\.(?:norms\.\{{j\}}\.)?weight$",
    "mlp_gate": rf"\.{_MLP}\.(?:gate_proj|w1|w3|wi_0|gate_up_proj|up_gate_proj)(?:\.weight)?$",
    # up_gate_proj: a fused input read from its code with the activated half second
    "mlp_gate_up": rf"\.{_MLP}\.(?:experts\.)?(?:gate_up_proj|up_gate_proj|w13)(?:\.weight)?$",
    # OPT: on the block; BERT-style: intermediate.dense
    "mlp_plain": rf"(?:\.{_MLP}\.(?:fc1|c_fc|dense_h_to_4h|fc_in|up_proj|w_in)|\{{i\}}\.fc1|\{{i\}}\.intermediate\.dense)"
                 r"\.weight$",
    "mlp_bias": rf"\.{_MLP}\.(?!.*(?:router|gate)\.).*\.bias$|\{{i\}}\.fc[12]\.bias$|{_BERT_MLP}\.bias$",
    "experts": r"\.experts\.",
    "experts_per_module": r"\.experts\.\{j\}\.",
    "experts_stacked": rf"\.experts\.(?:gate_up_proj|gate_proj|up_proj|down_proj|w1|w2|w3|w13)(?:\.weight)?$|"
                       rf"\.{_MLP}\.(?:input_linear|output_linear)\.weight$",
    "shared_expert": r"shared_expert|shared_mlp",  # shared_mlp: HunYuan-MoE
    "shared_expert_gate": r"shared_expert_gate\.weight$",
    "router_bias": rf"\.{_MLP}\.(?:gate|router)\.bias$",
    "correction_bias": r"e_score_correction_bias$",
    "lm_head": r"^(?:lm_head|embed_out|output)\.weight$",
    "position_table": POSITION_TABLE_KEY,
    "lm_head_bias": r"^(?:lm_head|embed_out|output)\.bias$",
    # Block norms sit right under the block, whatever the block list is called (layers, h, blocks).
    "layer_norm_weight": rf"\{{i\}}\.[a-z_0-9]*(?:norm|ln)[a-z_0-9]*\.weight$|{_BERT_NORM}\.weight$",
    "layer_norm_bias": rf"\{{i\}}\.[a-z_0-9]*(?:norm|ln)[a-z_0-9]*\.bias$|{_BERT_NORM}\.bias$",
    "pre_feedforward_norm": r"\{i\}\.pre_feedforward_layernorm\.weight$",
    "post_feedforward_norm": r"\{i\}\.post_feedforward_layernorm\.weight$",
    "input_norm": r"\{i\}\.(?:input_layernorm|ln_1|attention_norm)\.weight$",
}


def key_facts(shapes: dict[str, tuple[int, ...] | None]) -> dict[str, list[str]]:
    """fact -> the matching key patterns (empty list: absent)."""
    return {fact: [k for k in shapes if re.search(regex, k)] for fact, regex in KEY_FACTS.items()}


def checkpoint_shapes(checkpoint: Checkpoint | None) -> dict[str, tuple[int, ...] | None]:
    """Key pattern -> shape of its first tensor."""
    shapes: dict[str, tuple[int, ...] | None] = {}
    for tensor in (checkpoint.tensors.values() if checkpoint else []):
        shapes.setdefault(key_pattern(tensor.name), tuple(tensor.shape))
    return shapes


# --------------------------------------------------------------------------- assembly


def checkpoint_layer_shapes(checkpoint: Checkpoint | None) -> dict[str, dict[int, tuple[int, ...]]]:
    """Key pattern -> layer number -> the shape that layer's tensor has (layers of one model may differ)."""
    found: dict[str, dict[int, tuple[int, ...]]] = {}
    for tensor in (checkpoint.tensors.values() if checkpoint else []):
        number = re.search(r"\.(\d+)\.", tensor.name)
        if number is not None:
            found.setdefault(key_pattern(tensor.name), {})[int(number.group(1))] = tuple(tensor.shape)
    return found


@dataclass
class _Inputs:
    cfg: dict  # the language-model section, normalised
    shapes: dict[str, tuple[int, ...] | None]
    facts: dict[str, list[str]]
    key_source: str
    seen: dict[str, dict[str, behaviour.Observation]]  # detector group -> observations
    roles: behaviour.Roles | None
    layer_shapes: dict[str, dict[int, tuple[int, ...]]] = field(default_factory=dict)  # key pattern -> per layer

    @property
    def layers(self) -> dict[str, frozenset[int]]:
        """Key pattern -> the layer numbers whose tensors it names (a tensor some layers only hold)."""
        return {pattern: frozenset(shapes) for pattern, shapes in self.layer_shapes.items()}


def build_anatomy(config: dict, checkpoint: Checkpoint | None = None, *, tree: SourceTree | None = None,
                  normalise: bool = True) -> Anatomy:
    """The anatomy of the model ``config`` (and ``checkpoint``, if given) describe."""
    raw = config if isinstance(config, dict) else {}
    model_type = raw.get("model_type") if isinstance(raw.get("model_type"), str) else ""
    archs = raw.get("architectures")
    architecture = archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else None
    anatomy = Anatomy(model_type[:80], architecture[:120] if architecture else None)
    cfg, note = effective_config(raw) if normalise else (dict(raw), None)
    if note:
        anatomy.notes.append(note)
    tree = tree or SourceTree()
    seen, roles, keys = _read_modeling(anatomy, tree, cfg, architecture)
    anatomy.estimated_parameters = _parameter_estimate(keys, _int(_text_section(cfg), "num_hidden_layers", "n_layer"))
    shapes = checkpoint_shapes(checkpoint)
    key_source = CHECKPOINT
    if not shapes:
        shapes, key_source = keys, MODELING
        if checkpoint is not None:
            anatomy.notes.append("the checkpoint lists no safetensors keys: key facts come from the modeling code")
    towers = _modality_towers(seen)  # an image or audio encoder's biases and norms are not the decoder's
    decoder = _port_named({k: v for k, v in shapes.items() if not k.startswith(towers)}, seen, roles)
    inputs = _Inputs(_text_section(cfg), shapes, key_facts(decoder), key_source, seen, roles,
                     checkpoint_layer_shapes(checkpoint))
    for assemble in _ASSEMBLERS:
        assemble(anatomy, inputs)
    anatomy.category = categorise(raw, anatomy)
    return anatomy


def _modality_towers(seen: dict[str, dict[str, behaviour.Observation]]) -> tuple[str, ...]:
    """Key prefixes of the modules that run only on image or audio inputs (GIT's, Phi-4-multimodal's encoders)."""
    unread = seen.get("modality", {}).get("unread")
    return tuple(f"{path}." for path in (unread.value if unread else ()))


def _read_modeling(anatomy: Anatomy, tree: SourceTree, cfg: dict, architecture: str | None):
    """Run the behaviour detectors over the model's HF modeling source, if transformers has it."""
    path = modeling_path(anatomy.model_type) if anatomy.model_type else None
    if path is None:
        anatomy.notes.append(f"no HF modeling source for model_type {anatomy.model_type or '(none)'!r} in the installed "
                             "transformers: modeling rows fall back to defaults; read the repo's code")
        return {}, None, {}
    anatomy.modeling_file = f"transformers/models/{path.parent.name}/{path.name}"
    names = [n for n in (architecture, causal_lm_class(anatomy.model_type)) if n]
    ref = next((r for n in names if (r := tree.find_class(path, n)) is not None), None)
    if ref is None:
        anatomy.notes.append(f"{anatomy.modeling_file} defines none of {names or ['a causal-LM class']}")
        return {}, None, {}
    try:
        root = build_module_tree(tree, ref, _text_section(cfg) if "text_config" in cfg else cfg)
        roles = behaviour.find_roles(root, tree)
        seen = {name: detect(tree, roles) for name, detect in _DETECTORS.items()}
        seen["norm"] = behaviour.norm_behaviour(tree, _first_norm(roles))
        seen["qk_norm"] = behaviour.norm_behaviour(tree, roles.q_norm)
    except RecursionError:
        anatomy.notes.append(f"{anatomy.modeling_file} is too deeply nested to read")
        return {}, None, {}
    return seen, roles, root.keys()


def _parameter_estimate(keys: dict[str, tuple[int, ...] | None], layers: int | None) -> int | None:
    """Parameters the modeling code allocates: per-layer keys ({i}) count once per layer."""
    sized = [(key, shape) for key, shape in keys.items() if shape is not None]
    if not sized or not layers:
        return None
    return sum(math.prod(shape) * (layers if "{i}" in key else 1) for key, shape in sized)


_DETECTORS = {
    "mixers": behaviour.hybrid_mixers,
    "rotary": behaviour.rotary_behaviour,
    "attention": behaviour.attention_behaviour,
    "mlp": behaviour.mlp_behaviour,
    "sub_norms": behaviour.sublayer_output_norms,
    "projections": behaviour.projection_behaviour,
    "side_tables": behaviour.side_tables,
    "modality": behaviour.modality_behaviour,
    "embedding": behaviour.embedding_behaviour,
    "positions": behaviour.position_behaviour,
    "score_bias": behaviour.score_bias,
    "head": behaviour.head_behaviour,
    "block": behaviour.block_behaviour,
    "adapter": behaviour.language_adapter,
}


def _first_norm(roles: behaviour.Roles) -> Any:
    return next(iter(roles.layer_norms.values()), None) or roles.final_norm


def _seen(inputs: _Inputs, group: str, name: str) -> behaviour.Observation | None:
    return inputs.seen.get(group, {}).get(name)


def _keys_text(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (f" (+{len(keys) - 3})" if len(keys) > 3 else "")


# -- attention ------------------------------------------------------------------------


def _attention(anatomy: Anatomy, inputs: _Inputs) -> None:
    cfg = inputs.cfg
    mixers = _seen(inputs, "mixers", "mixers")
    if not _latent_attention(anatomy, inputs):
        if mixers:
            anatomy.add("attention.family", "hybrid", MODELING, mixers.evidence)
        else:
            anatomy.add("attention.family", "standard", CONFIG, "no latent-attention rank, no recurrent or conv mixers")
    heads = _int(cfg, "num_attention_heads", "n_head", "num_heads")
    kv_heads = _int(cfg, "num_key_value_heads", "num_kv_heads", "n_head_kv") or heads
    if cfg.get("multi_query") is True and not cfg.get("new_decoder_architecture"):
        kv_heads = 1
    if heads:
        kind = "mha" if kv_heads == heads else "mqa" if kv_heads == 1 else "gqa"
        anatomy.add("attention.kind", kind, CONFIG, f"num_attention_heads={heads}, num_key_value_heads={kv_heads}")
        anatomy.add("attention.heads", heads, CONFIG, f"num_attention_heads={heads}")
        anatomy.add("attention.kv_heads", kv_heads, CONFIG, f"num_key_value_heads={kv_heads}")
    hidden = _int(cfg, "hidden_size", "n_embd", "d_model")
    explicit = _int(cfg, "head_dim")
    if explicit:
        anatomy.add("attention.head_dim", explicit, CONFIG, f"head_dim={explicit} (hidden_size / heads = "
                    f"{hidden // heads if hidden and heads else '?'})")
    elif hidden and heads:
        anatomy.add("attention.head_dim", hidden // heads, CONFIG, f"hidden_size {hidden} / {heads} heads")
    anatomy.add("attention.head_dim_explicit", bool(explicit), CONFIG,
                f"head_dim={explicit}" if explicit else "config sets no head_dim")
    differs = bool(explicit and hidden and heads and explicit * heads != hidden)
    anatomy.add("attention.head_dim_differs", differs, CONFIG,
                f"{heads} heads * head_dim {explicit} = {explicit * heads} vs hidden_size {hidden}" if differs
                else "heads * head_dim == hidden_size")
    if seen := _seen(inputs, "attention", "head_dim_source"):
        anatomy.add("attention.head_dim_source", seen.value, MODELING, seen.evidence)
    _projections(anatomy, inputs)
    _qk_norm(anatomy, inputs)
    _scale(anatomy, inputs)
    _sliding(anatomy, inputs)
    clip = _float(cfg, "clip_qkv")
    anatomy.add("attention.clip_qkv", clip, CONFIG, f"clip_qkv={clip}" if clip else "no clip_qkv")
    differential = _seen(inputs, "attention", "differential")
    anatomy.add("attention.differential", list(differential.value) if differential else None,
                MODELING if differential else DEFAULT,
                differential.evidence if differential else "no pair of lambda vectors weighs two softmax maps")
    _position_bias(anatomy, inputs)


def _latent_attention(anatomy: Anatomy, inputs: _Inputs) -> bool:
    """Multi-head latent attention (DeepSeek-V2/V3, Youtu): keys and values decompressed by ``kv_b_proj`` from a
    latent of ``kv_lora_rank`` channels. Read from the weights (the up-projection's input width is the rank the
    attention's code reads), from the config's rank where no weights were read. Adds how the queries are made and
    the eps the latent norms are built with (their class default, not the config's, in the modeling code read)."""
    rank = _int(inputs.cfg, "kv_lora_rank")
    up = inputs.facts.get("kv_latent_up") or []
    shape = inputs.shapes.get(up[0]) if up else None
    if shape and rank and shape[-1] == rank:
        anatomy.add("attention.family", "mla", inputs.key_source,
                    f"{up[0]} {list(shape)} decompresses keys and values from a kv_lora_rank={rank} latent")
    elif rank:
        anatomy.add("attention.family", "mla", CONFIG, f"kv_lora_rank={rank}")
    else:
        return False
    if low_rank := inputs.facts.get("q_low_rank"):
        anatomy.add("attention.latent_query", "low_rank_query", inputs.key_source, _keys_text(low_rank))
    elif direct := inputs.facts.get("q_direct"):
        anatomy.add("attention.latent_query", "direct_query", inputs.key_source, _keys_text(direct))
    else:
        query = "direct_query" if inputs.cfg.get("q_lora_rank") is None else "low_rank_query"
        anatomy.add("attention.latent_query", query, CONFIG, f"q_lora_rank={inputs.cfg.get('q_lora_rank')}")
    holder = inputs.roles.attention[1] if inputs.roles is not None and inputs.roles.attention else None
    if holder is not None:
        mscale = _seen(inputs, "attention", "scale_mscale")
        anatomy.add("attention.latent_mscale", mscale is not None, MODELING, mscale.evidence if mscale else
                    f"{holder.class_name} reads no mscale_all_dim: its scale is 1/sqrt(qk_head_dim) under any rope")
    for name, child in (holder.children.items() if holder is not None else ()):
        eps = child.values.get("variance_epsilon", child.values.get("eps"))
        if child.kind in behaviour.NORM_KINDS and isinstance(eps, float):
            anatomy.add("attention.latent_norm_eps", eps, MODELING, f"{holder.class_name}.{name} is built with "
                        f"eps={eps}")
            break
    return True


def _position_bias(anatomy: Anatomy, inputs: _Inputs) -> None:
    seen = _seen(inputs, "score_bias", "kind")
    if seen is None:
        anatomy.add("attention.position_bias", "none", MODELING if inputs.roles else DEFAULT,
                    "the backbone builds no bias for the attention scores")
        return
    anatomy.add("attention.position_bias", seen.value, MODELING, seen.evidence)
    given = _seen(inputs, "score_bias", "max_bias")
    anatomy.add("attention.alibi_max_bias", given.value if given else behaviour.ALIBI_MAX_BIAS, MODELING,
                given.evidence if given else "the builder's own maximum")


def _projections(anatomy: Anatomy, inputs: _Inputs) -> None:
    facts, source = inputs.facts, inputs.key_source
    if facts["qkv_fused"]:
        anatomy.add("attention.qkv_layout", "fused", source, _keys_text(facts["qkv_fused"]))
    elif facts["q_split"]:
        anatomy.add("attention.qkv_layout", "split", source, _keys_text(facts["q_split"]))
    if facts["qkv_fused"] or facts["q_split"]:
        anatomy.add("attention.qkv_bias", bool(facts["qkv_bias"]), source,
                    _keys_text(facts["qkv_bias"]) if facts["qkv_bias"] else "no q/k/v bias keys")
        anatomy.add("attention.o_bias", bool(facts["o_bias"]), source,
                    _keys_text(facts["o_bias"]) if facts["o_bias"] else "no output-projection bias key")
        held = inputs.layers.get(facts["o_bias"][0], frozenset()) if facts["o_bias"] else frozenset()
        layers = _int(inputs.cfg, "num_hidden_layers", "n_layer")
        last_only = bool(held) and layers is not None and layers > 1 and held == {layers - 1}
        anatomy.add("attention.o_bias_last_layer", last_only, source,
                    f"{facts['o_bias'][0]} is held by layer {layers - 1} only" if last_only else
                    "held by every layer that has an output projection")


def _qk_norm(anatomy: Anatomy, inputs: _Inputs) -> None:
    keys = inputs.facts["q_norm"]
    head_dim, heads = anatomy.value("attention.head_dim"), anatomy.value("attention.heads")
    if keys:
        shape = inputs.shapes.get(keys[0]) or ()
        width = math.prod(shape) if shape else None
        kind = "per_head" if width == head_dim or "norms.{j}" in keys[0] else \
            "whole_projection" if head_dim and heads and width == head_dim * heads else "per_head"
        anatomy.add("attention.qk_norm", kind, inputs.key_source, f"{keys[0]} shape {list(shape)} "
                    f"(head_dim {head_dim}, heads * head_dim {head_dim * heads if head_dim and heads else '?'})")
        if seen := _seen(inputs, "qk_norm", "kind"):
            anatomy.add("attention.qk_norm_type", seen.value, MODELING, seen.evidence)
        if seen := _seen(inputs, "rotary", "qk_norm_position"):
            anatomy.add("attention.qk_norm_position", seen.value, MODELING, seen.evidence)
        anatomy.add("attention.qk_norm_weight", True, inputs.key_source, keys[0])
        return
    if inputs.roles is not None and inputs.roles.q_norm is not None:
        # A QK-norm module with no weight in the checkpoint (NanoChat): applied per head, on the head-shaped view.
        anatomy.add("attention.qk_norm", "per_head", MODELING,
                    f"{inputs.roles.q_norm.path} is a norm module with no weight in the checkpoint")
        anatomy.add("attention.qk_norm_weight", False, inputs.key_source, "no q_norm weight keys")
        if seen := _seen(inputs, "qk_norm", "kind"):
            anatomy.add("attention.qk_norm_type", seen.value, MODELING, seen.evidence)
        if seen := _seen(inputs, "rotary", "qk_norm_position"):
            anatomy.add("attention.qk_norm_position", seen.value, MODELING, seen.evidence)
        return
    flag = next(((k, inputs.cfg[k]) for k in ("use_qk_norm", "qk_layernorm", "qk_norm") if k in inputs.cfg), None)
    evidence = f"no q_norm keys; {flag[0]}={flag[1]}" if flag else "no q_norm / q_layernorm keys"
    anatomy.add("attention.qk_norm", "none", inputs.key_source, evidence)


def _scale_kind(kind: str, value: Any, head_dim: Any) -> str:
    """A scale expression the patterns do not name, told apart by its value for this config: 1 is no scale
    (GPT-2 with ``scale_attn_weights=False``), ``head_dim ** -0.5`` the default."""
    if kind != "custom" or not isinstance(value, (int, float)) or isinstance(value, bool):
        return kind
    if math.isclose(value, 1.0):
        return "none"
    if isinstance(head_dim, int) and head_dim > 0 and math.isclose(value, head_dim ** -0.5, rel_tol=1e-6):
        return "default"
    return kind


def _scale(anatomy: Anatomy, inputs: _Inputs) -> None:
    cfg = inputs.cfg
    if seen := _seen(inputs, "attention", "scale"):
        value = _seen(inputs, "attention", "scale_value")
        anatomy.add("attention.scale", _scale_kind(seen.value, value.value if value else None,
                                                   anatomy.value("attention.head_dim")), MODELING, seen.evidence)
        by_layer = _seen(inputs, "attention", "scale_by_layer")
        anatomy.add("attention.scale_by_layer", True if by_layer else None, MODELING,
                    by_layer.evidence if by_layer else "one scale for every layer")
        anatomy.add("attention.scale_value", value.value if value else None, MODELING, value.evidence if value else "")
    elif (scalar := _float(cfg, "query_pre_attn_scalar")) is not None:
        anatomy.add("attention.scale", "query_pre_attn_scalar", CONFIG, f"query_pre_attn_scalar={scalar}")
        anatomy.add("attention.scale_value", scalar**-0.5 if scalar > 0 else None, CONFIG, "query_pre_attn_scalar^-0.5")
    else:
        anatomy.add("attention.scale", "default", DEFAULT, "no modeling code read; assumed 1/sqrt(head_dim)")
    if seen := _seen(inputs, "attention", "softcap"):
        anatomy.add("attention.logit_softcap", seen.value, MODELING, seen.evidence)
    else:
        cap = _float(cfg, "attn_logit_softcapping")
        source = CONFIG if inputs.roles is None else MODELING
        evidence = f"attn_logit_softcapping={cap}" if cap else "the attention forward passes no softcap"
        anatomy.add("attention.logit_softcap", cap if inputs.roles is None else None, source, evidence)


_LAYER_LETTER = {"sliding_attention": "S", "full_attention": "F", "chunked_attention": "C"}
#: GPT-Neo's ``attention_layers`` names -> layer types.
_LOCAL_GLOBAL = {"local": "sliding_attention", "global": "full_attention"}


def _period(types: list[str]) -> list[str]:
    types = types[:1024]
    for size in range(1, len(types) + 1):
        if all(types[i] == types[i % size] for i in range(len(types))):
            return types[:size]
    return types


#: ``sliding_window_pattern`` letters (EXAONE 4 writes "LLLG") -> layer types.
_PATTERN_LETTERS = {"L": "sliding_attention", "S": "sliding_attention", "G": "full_attention", "F": "full_attention"}


def _types_from_pattern(cfg: dict) -> list[str]:
    """Layer types from ``sliding_window_pattern`` when the config has no ``layer_types``."""
    pattern, layers = cfg.get("sliding_window_pattern"), _int(cfg, "num_hidden_layers") or 0
    layers = min(layers, SANE_LIST)
    if isinstance(pattern, int) and not isinstance(pattern, bool) and 1 < pattern <= layers:
        return ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(layers)]
    if isinstance(pattern, str) and pattern and all(ch in _PATTERN_LETTERS for ch in pattern[:64]):
        return [_PATTERN_LETTERS[pattern[i % len(pattern)]] for i in range(layers)] if len(pattern) <= 64 else []
    return []


def _sliding(anatomy: Anatomy, inputs: _Inputs) -> None:
    cfg = inputs.cfg
    window = _int(cfg, "sliding_window", "attention_window", "window_size")
    support = _seen(inputs, "attention", "sliding")
    raw_types = cfg.get("layer_types")
    types = [t for t in raw_types[:SANE_LIST] if isinstance(t, str)] if isinstance(raw_types, list) else []
    origin = "layer_types" if types else "sliding_window_pattern"
    if not types and isinstance(cfg.get("attention_layers"), list):  # GPT-Neo: "global" / "local" per layer
        types = [_LOCAL_GLOBAL.get(t, str(t)) for t in cfg["attention_layers"][:SANE_LIST]]
        origin = "attention_layers"
    types = types or _types_from_pattern(cfg)
    if support is not None and support.value == "never":
        anatomy.add("attention.sliding_window", "none", MODELING, support.evidence)
        return
    kinds = {_LAYER_LETTER.get(t, "?") for t in types}
    if window and types and "S" in kinds and len(kinds) > 1:
        pattern = "".join(_LAYER_LETTER.get(t, "?") for t in _period(types))
        anatomy.add("attention.sliding_window", "interleaved", CONFIG, f"{origin} mixes {sorted(kinds)} "
                    f"(period {len(pattern)}: {pattern})")
        anatomy.add("attention.layer_pattern", pattern, CONFIG, f"{origin}, {len(types)} layers")
    elif window and cfg.get("use_sliding_window") is not False and (not types or kinds == {"S"}):
        anatomy.add("attention.sliding_window", "all", CONFIG, f"sliding_window={window}" + (
            " and every layer_types entry is sliding" if types else ", no layer_types"))
    else:
        why = "no sliding_window" if not window else "use_sliding_window=false" \
            if cfg.get("use_sliding_window") is False else "layer_types has no sliding layer"
        anatomy.add("attention.sliding_window", "none", CONFIG, why)
        return
    anatomy.add("attention.window", window, CONFIG, f"sliding_window={window}")


# -- rotary -----------------------------------------------------------------------------


def _rope_params(cfg: dict) -> tuple[dict, dict | None]:
    """The global rope parameter dict, and the sliding-layer one when rope differs per layer type."""
    params = cfg.get("rope_parameters")
    if isinstance(params, dict) and isinstance(params.get("full_attention"), dict):
        local = params.get("sliding_attention")
        return params["full_attention"], local if isinstance(local, dict) else None
    merged: dict = {}
    for key in ("rope_scaling", "rope_parameters"):
        if isinstance(cfg.get(key), dict):
            merged.update(cfg[key])
    return merged, None


def _rotary(anatomy: Anatomy, inputs: _Inputs) -> None:
    cfg = inputs.cfg
    style = _seen(inputs, "rotary", "style")
    otherwise = _seen(inputs, "rotary", "style_otherwise")
    if otherwise is not None and otherwise.value[0] in cfg and not cfg[otherwise.value[0]]:
        switch, other = otherwise.value  # the config turns the helper read first off (rope_interleave: false)
        anatomy.add("rotary.style", other, MODELING, f"{switch}={cfg[switch]}: {otherwise.evidence}")
    elif style is not None:
        anatomy.add("rotary.style", style.value, MODELING, style.evidence)
    else:
        anatomy.add("rotary.style", "half_split", DEFAULT, "no modeling code read; assumed rotate_half")
    direction = _seen(inputs, "rotary", "direction")
    anatomy.add("rotary.direction", direction.value if direction else "standard", MODELING if style else DEFAULT,
                direction.evidence if direction else "the rotary helper builds (-x2, x1)")
    params, local = _rope_params(cfg)
    fraction = _float(params, "partial_rotary_factor") or _float(cfg, "partial_rotary_factor", "rotary_pct",
                                                                   "rotary_emb_fraction")
    evidence = f"partial_rotary_factor={fraction}"
    rotary_dim, head_dim = _int(cfg, "rotary_dim"), anatomy.value("attention.head_dim")
    if fraction is None and rotary_dim and isinstance(head_dim, int) and 0 < rotary_dim < head_dim:
        fraction, evidence = rotary_dim / head_dim, f"rotary_dim={rotary_dim} of head_dim {head_dim}"  # GPT-J, CodeGen
    anatomy.add("rotary.fraction", fraction if fraction is not None else 1.0, CONFIG,
                evidence if fraction is not None else "no partial rotary key: full")
    kind = params.get("rope_type") or params.get("type") or "default"
    kind = kind[:40] if isinstance(kind, str) else "default"
    anatomy.add("rotary.scaling", kind, CONFIG, f"rope_type={kind}")
    theta = _float(params, "rope_theta") or _float(cfg, "rope_theta", "rotary_emb_base", "rope_base")
    anatomy.add("rotary.theta", theta, CONFIG, f"rope_theta={theta}")
    local_theta = _float(local, "rope_theta") if local else _float(cfg, "rope_local_base_freq")
    anatomy.add("rotary.local_theta", local_theta, CONFIG, f"sliding layers use rope_theta={local_theta}"
                if local_theta else "one rope base for all layers")
    _nope(anatomy, inputs)


def _nope(anatomy: Anatomy, inputs: _Inputs) -> None:
    flags = inputs.cfg.get("no_rope_layers")
    conditional = _seen(inputs, "rotary", "conditional")
    if isinstance(flags, list) and flags and (conditional is not None or inputs.roles is None):
        nope = [i for i, f in enumerate(flags[:SANE_LIST]) if f in (0, False)]
        if nope:
            why = conditional.evidence if conditional else "no modeling code read"
            anatomy.add("rotary.nope_layers", nope, CONFIG, f"no_rope_layers flags 0 at {_short_list(nope)}; {why}")
            return
    types = inputs.cfg.get("layer_types")
    if conditional is not None and "slid" in conditional.evidence and inputs.cfg.get("sliding_window") \
            and isinstance(types, list) and any("sliding" in str(t) for t in types):
        nope = [i for i, t in enumerate(types[:SANE_LIST]) if "sliding" not in str(t)]
        if nope:
            anatomy.add("rotary.nope_layers", nope, MODELING,
                        f"full-attention layers {_short_list(nope)} skip rotary: {conditional.evidence}")
            return
    anatomy.add("rotary.nope_layers", "none", MODELING if conditional is None and inputs.roles else CONFIG,
                "every layer applies rotary")


# -- norms and block wiring ---------------------------------------------------------------


def _norms(anatomy: Anatomy, inputs: _Inputs) -> None:
    cfg, facts = inputs.cfg, inputs.facts
    seen = inputs.seen.get("norm", {})
    if "kind" in seen:
        anatomy.add("norm.kind", seen["kind"].value, MODELING, seen["kind"].evidence)
    else:
        layer = _float(cfg, "layer_norm_eps", "layer_norm_epsilon")
        anatomy.add("norm.kind", "layernorm" if layer else "rms", DEFAULT if not layer else CONFIG,
                    "layer_norm_eps in config" if layer else "no modeling code read; assumed RMSNorm")
    offset = seen.get("offset")
    anatomy.add("norm.offset", offset.value if offset else False, MODELING if offset else DEFAULT,
                offset.evidence if offset else "assumed plain weight")
    if facts["layer_norm_weight"] or facts["layer_norm_bias"] or inputs.key_source == CHECKPOINT:
        anatomy.add("norm.weight", bool(facts["layer_norm_weight"]), inputs.key_source,
                    _keys_text(facts["layer_norm_weight"]) or "no layer norm weight keys")
        anatomy.add("norm.bias", bool(facts["layer_norm_bias"]), inputs.key_source,
                    _keys_text(facts["layer_norm_bias"]) or "no layer norm bias keys")
    else:
        for trait in ("weight", "bias"):
            row = seen.get(trait)
            anatomy.add(f"norm.{trait}", row.value if row else trait == "weight", MODELING if row else DEFAULT,
                        row.evidence if row else "assumed")
    eps = _float(cfg, "rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "norm_epsilon", "norm_eps")
    anatomy.add("norm.eps", eps, CONFIG, f"eps={eps}")
    _final_norm(anatomy, inputs)


def _final_norm(anatomy: Anatomy, inputs: _Inputs) -> None:
    """Whether a norm closes the layer stack: a norm module beside the layer list in the family's module tree
    (GPT-1, BERT-style decoders and OPT without ``do_layer_norm_before`` have none)."""
    roles = inputs.roles
    if roles is None or roles.backbone is None:
        anatomy.add("norm.final", True, DEFAULT, "no module tree read; assumed a final norm")
    elif roles.final_norm is not None:
        anatomy.add("norm.final", True, MODELING, f"{roles.final_norm.path} ({roles.final_norm.class_name})")
    else:
        anatomy.add("norm.final", False, MODELING,
                    f"{roles.backbone.path} holds no norm beside its layer list: the last layer's output is the head's "
                    "input")


def _block(anatomy: Anatomy, inputs: _Inputs) -> None:
    cfg, facts = inputs.cfg, inputs.facts
    seen = inputs.seen.get("block", {})
    if "residual" in seen:
        anatomy.add("block.residual", seen["residual"].value, MODELING, seen["residual"].evidence)
    else:
        parallel = cfg.get("use_parallel_residual") is True or cfg.get("parallel_attn") is True
        anatomy.add("block.residual", "parallel" if parallel else "sequential", CONFIG if parallel else DEFAULT,
                    "use_parallel_residual / parallel_attn" if parallel else "assumed sequential")
    source = seen.get("residual_source")
    anatomy.add("block.residual_source", source.value if source else None, MODELING if source else DEFAULT,
                source.evidence if source else "each residual add takes the block input")
    if "norms" in seen:
        evidence = seen["norms"].evidence
        post_keys = facts["post_feedforward_norm"]
        if post_keys:
            evidence += f"; keys {_keys_text(post_keys + facts['pre_feedforward_norm'])}"
        anatomy.add("block.norms", seen["norms"].value, MODELING, evidence)
    elif facts["post_feedforward_norm"]:
        placement = "sandwich" if facts["input_norm"] else "post"
        anatomy.add("block.norms", placement, inputs.key_source,
                    _keys_text(facts["post_feedforward_norm"] + facts["input_norm"]))
    else:
        anatomy.add("block.norms", "pre", DEFAULT, "no post-sublayer norm keys; assumed pre-norm")
    if "parallel_norm" in seen:
        anatomy.add("block.parallel_norm", seen["parallel_norm"].value, MODELING, seen["parallel_norm"].evidence)
    if "norm_names" in seen:
        anatomy.add("block.norm_names", seen["norm_names"].value, MODELING, seen["norm_names"].evidence)
    _language_adapter(anatomy, inputs)
    unnormed = seen.get("unnormed_layers")
    anatomy.add("block.unnormed_layers", unnormed.value if unnormed else None, MODELING if unnormed else DEFAULT,
                unnormed.evidence if unnormed else "every layer builds its norms")
    cross = seen.get("cross_attention")
    anatomy.add("block.cross_attention", cross.value if cross else [], MODELING if cross else DEFAULT,
                cross.evidence if cross else "every module of the layer runs in a causal LM")
    multiplier = seen.get("residual_multiplier")
    value = multiplier.value if multiplier and multiplier.value != 1.0 else None
    anatomy.add("block.residual_multiplier", value, MODELING if multiplier else DEFAULT,
                multiplier.evidence if multiplier else "sublayer outputs added unscaled")


#: Config keys that name the language a per-language model runs when it is given none, and the languages it
#: holds in its tables' order (X-MOD: ``default_language``, ``languages``; the HF model picks by the latter's index).
DEFAULT_LANGUAGE_KEY, LANGUAGES_KEY = "default_language", "languages"


def adapter_languages(layer_path: str, table: str, keys: Iterable[str]) -> list[str]:
    """The entries of a per-language table (``{layer}.{table}.<language>.``) the keys hold, first seen first."""
    layer = re.escape(layer_path).replace(re.escape("{i}"), r"(?:\d+|\{i\})")
    pattern = re.compile(rf"^{layer}\.{re.escape(table)}\.([^.]+)\.")
    return list(dict.fromkeys(m.group(1) for key in keys if (m := pattern.match(key))))


def served_language(cfg: dict, found: list[str]) -> str | None:
    """The one language a port serves: the config's default language, else its first listed one (what the HF
    model is set to when a row of token ids comes without language ids, and what verify sets it to)."""
    default = cfg.get(DEFAULT_LANGUAGE_KEY)
    if isinstance(default, str) and default in found:
        return default
    listed = [str(lang) for lang in cfg.get(LANGUAGES_KEY) or () if str(lang) in found]
    return listed[0] if listed else (found[0] if found else None)


def _language_adapter(anatomy: Anatomy, inputs: _Inputs) -> None:
    seen = inputs.seen.get("adapter", {}).get("adapter")
    layer = inputs.roles.layer if inputs.roles is not None else None
    found = adapter_languages(layer.path, seen.value["table"], inputs.shapes) if seen and layer is not None else []
    language = served_language(inputs.cfg, found)
    if seen is None or language is None:
        anatomy.add("block.language_adapter", None, MODELING if seen else DEFAULT,
                    seen.evidence + "; the checkpoint holds no entry of its table" if seen else
                    "no module picked by a language id")
        return
    anatomy.add("block.language_adapter", {**seen.value, "language": language, "languages": found}, MODELING,
                f"{seen.evidence}; the checkpoint holds {', '.join(found)}: the port serves {language} (the config's "
                f"{DEFAULT_LANGUAGE_KEY}, else the first of its {LANGUAGES_KEY})")


# -- MLP and MoE ----------------------------------------------------------------------------

#: HF activation names -> the function they compute.
ACTIVATIONS: dict[str, str] = {
    "silu": "silu", "swish": "silu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh", "gelu_python_tanh": "gelu_tanh", "gelu": "gelu", "gelu_python": "gelu",
    "relu": "relu", "relu2": "relu2", "relu_squared": "relu2", "quick_gelu": "quick_gelu", "tanh": "tanh",
    "xielu": "xielu",
}


def _sub_norms(anatomy: Anatomy, inputs: _Inputs) -> None:
    seen, roles = inputs.seen.get("sub_norms", {}), inputs.roles
    for key, group in (("attention.output_norm", "attention"), ("mlp.inner_norm", "mlp")):
        row = seen.get(group)
        owner = getattr(roles, group, None) if roles is not None else None
        if row and group == "attention" and anatomy.value("attention.differential"):
            # DiffLlama's groupnorm over each head pair is a step of the differential attention, not a sub-norm
            anatomy.add(key, None, MODELING, f"{row.value}: the differential attention's norm over each head pair "
                                             "(attention.differential)")
            key = "attention.differential_norm"
        else:
            anatomy.add(key, row.value if row else None, MODELING if row else DEFAULT,
                        row.evidence if row else "no norm inside the sublayer")
        if row and owner is not None and inputs.shapes:  # the checkpoint tells BitNet's norm from a weightless one
            weight = f"{owner[1].path}.{row.value}.weight"
            anatomy.add(f"{key}_weight", weight in inputs.shapes, inputs.key_source,
                        f"{weight} {'is' if weight in inputs.shapes else 'is not'} in the checkpoint")


def _mlp(anatomy: Anatomy, inputs: _Inputs) -> None:
    cfg, facts, source = inputs.cfg, inputs.facts, inputs.key_source
    seen = inputs.seen.get("mlp", {})
    _sub_norms(anatomy, inputs)
    widths = cfg.get("intermediate_size")
    anatomy.add("mlp.width_per_layer", isinstance(widths, list), CONFIG,
                f"intermediate_size lists {len(widths)} widths, one per layer" if isinstance(widths, list) else
                "one intermediate_size for every layer")
    if "kind" in seen:
        anatomy.add("mlp.kind", seen["kind"].value, MODELING, seen["kind"].evidence + _key_note(facts))
    elif facts["mlp_gate"] or facts["mlp_plain"]:
        anatomy.add("mlp.kind", "gated" if facts["mlp_gate"] else "plain", source,
                    _keys_text(facts["mlp_gate"] or facts["mlp_plain"]))
    anatomy.add("mlp.fused_gate_up", bool(facts["mlp_gate_up"]), source,
                _keys_text(facts["mlp_gate_up"]) or "no fused gate_up key")
    raw = seen["activation"].value if "activation" in seen else next(
        (cfg[k] for k in ("hidden_act", "hidden_activation", "activation_function", "activation")
         if isinstance(cfg.get(k), str)), None)
    where = seen["activation"].evidence if "activation" in seen else f"config activation {raw!r}"
    if raw is not None:
        raw = raw[:40]
        anatomy.add("mlp.activation", ACTIVATIONS.get(raw, raw), MODELING if "activation" in seen else CONFIG,
                    f"{where} ({raw})")
    elif inputs.roles is not None and inputs.roles.mlp is not None and "moe_class" not in seen:
        anatomy.add("mlp.activation", "unknown", MODELING, f"{inputs.roles.mlp[1].class_name}'s activation was not "
                    "recognised in its code and the config names none")
    anatomy.add("mlp.bias", bool(facts["mlp_bias"]), source, _keys_text(facts["mlp_bias"]) or "no MLP bias keys")


def _key_note(facts: dict[str, list[str]]) -> str:
    keys = facts["mlp_gate"] or facts["mlp_plain"]
    return f"; keys {_keys_text(keys)}" if keys else ""


#: MoE config keys, first present wins (the alias table's rows; a shared expert's width implies one).
EXPERT_KEYS = CONFIG_ALIASES["experts"]
TOP_K_KEYS = CONFIG_ALIASES["top_k"]
SHARED_KEYS = (*CONFIG_ALIASES["shared_count"], *CONFIG_ALIASES["shared_width"])


def _moe(anatomy: Anatomy, inputs: _Inputs) -> None:
    cfg, facts, source = inputs.cfg, inputs.facts, inputs.key_source
    experts = _int(cfg, *EXPERT_KEYS) or 0
    block = _seen(inputs, "mlp", "moe_class")
    # one expert is still a routed block where the module tree builds one (HunYuan-MoE's default config)
    if experts < 1 or (experts == 1 and block is None):
        anatomy.add("moe.experts", 0, CONFIG, "no expert-count key: dense MLP")
        return
    key = next(k for k in EXPERT_KEYS if _int(cfg, k))
    evidence = f"{key}={experts}" + (f"; keys {_keys_text(facts['experts'])}" if facts["experts"] else "") + \
        (f"; the layer's MLP is {block.value}" if experts == 1 and block else "")
    anatomy.add("moe.experts", experts, CONFIG, evidence)
    top_k = _int(cfg, *TOP_K_KEYS)
    anatomy.add("moe.top_k", top_k, CONFIG, f"top_k={top_k}")
    shared = _int(cfg, *SHARED_KEYS)
    shared_count = 1 if shared and "intermediate" in next(k for k in SHARED_KEYS if _int(cfg, k)) else shared or 0
    if facts["shared_expert"] and not shared_count:
        shared_count = 1
    anatomy.add("moe.shared_experts", shared_count, CONFIG, f"shared experts {shared_count}")
    anatomy.add("moe.shared_gate", bool(facts["shared_expert_gate"]), source,
                _keys_text(facts["shared_expert_gate"]) or "no shared_expert_gate key: shared experts added as they are")
    seen = _seen(inputs, "mlp", "router")
    configured = cfg.get("scoring_func") if isinstance(cfg.get("scoring_func"), str) else None
    unread = inputs.roles is not None and seen is None and not configured
    scoring = configured or (seen.value if seen else "unread" if unread else "softmax")
    where = f"scoring_func={configured}" if configured else seen.evidence if seen else \
        "the decoder layer's MLP as the module tree reads it is not the MoE block, so its router was not read" \
        if unread else "assumed softmax"
    anatomy.add("moe.router", scoring, CONFIG if configured or not seen else MODELING, where)
    renorm = _seen(inputs, "mlp", "renormalise")
    if renorm is not None:
        kind, switch = renorm.value
        anatomy.add("moe.renormalise", kind, MODELING,
                    renorm.evidence + (f"; {switch}={cfg.get(switch)}" if switch else ""))
        anatomy.add("moe.renormalise_key", switch, MODELING, renorm.evidence)
    elif inputs.roles is not None and seen is not None:
        anatomy.add("moe.renormalise", "never", MODELING, f"{seen.evidence}; no division of the top-k weights")
    else:
        flag = cfg.get("norm_topk_prob")
        anatomy.add("moe.renormalise", "config" if "norm_topk_prob" in cfg else "never", CONFIG,
                    f"norm_topk_prob={flag}")
        anatomy.add("moe.renormalise_key", "norm_topk_prob" if "norm_topk_prob" in cfg else None, CONFIG, "")
    scaling = _seen(inputs, "mlp", "routed_scaling")
    anatomy.add("moe.routed_scaling", scaling.value if scaling else None, MODELING if scaling else DEFAULT,
                scaling.evidence if scaling else "top-k weights used as the router gives them")
    groups = _int(cfg, "n_group")
    grouped = _seen(inputs, "mlp", "grouped")
    if grouped is not None and groups:
        # the router's code groups: the port groups too, so a size of the family with n_group > 1 routes right
        anatomy.add("moe.grouped_topk", groups, MODELING,
                    f"{grouped.evidence}; n_group={groups}, topk_group={cfg.get('topk_group')}")
    else:
        anatomy.add("moe.grouped_topk", groups if groups and groups > 1 else None, CONFIG,
                    f"n_group={groups}, topk_group={cfg.get('topk_group')}" if groups else "no expert groups")
    anatomy.add("moe.correction_bias", bool(facts["correction_bias"]), source,
                _keys_text(facts["correction_bias"]) or "no score-correction bias key")
    bias_shape = inputs.shapes.get(facts["correction_bias"][0]) or () if facts["correction_bias"] else ()
    anatomy.add("moe.correction_bias_rows", bias_shape[0] if len(bias_shape) == 2 else None, source,
                f"stored {list(bias_shape)}" if bias_shape else "no stored shape")
    anatomy.add("moe.router_bias", bool(facts["router_bias"]), source,
                _keys_text(facts["router_bias"]) or "no router bias key")
    layers = _seen(inputs, "mlp", "expert_layers")
    anatomy.add("moe.dense_layers", list(layers.value) if layers else [], MODELING if layers else DEFAULT,
                layers.evidence if layers else "every layer routes")
    stacked = bool(facts["experts_stacked"]) and not facts["experts_per_module"]
    anatomy.add("moe.expert_layout", "stacked" if stacked else "per_expert", source,
                _keys_text(facts["experts_stacked"] if stacked else facts["experts_per_module"]) or "no expert keys")


# -- embedding and head --------------------------------------------------------------------


def _embedding(anatomy: Anatomy, inputs: _Inputs) -> None:
    seen = inputs.seen.get("embedding", {})
    scale, value = seen.get("scale"), seen.get("scale_value")
    number = value.value if value else None
    kind = scale.value if scale else "none"
    hidden = _int(inputs.cfg, "hidden_size", "d_model", "n_embd")
    if kind == "multiplier" and number == 1.0:
        kind = "none"
    elif kind == "multiplier" and isinstance(number, float) and hidden and math.isclose(number, math.sqrt(hidden)):
        kind = "sqrt_hidden"  # XGLM: sqrt(d_model), a size the port reads from each config
    anatomy.add("embedding.scale", kind, MODELING if scale else DEFAULT, scale.evidence if scale else "assumed unscaled")
    anatomy.add("embedding.scale_value", number if kind != "none" else None, MODELING if value else DEFAULT,
                value.evidence if value else "")
    _positions(anatomy, inputs)
    normed = seen.get("norm")
    anatomy.add("embedding.norm", normed.value if normed else None, MODELING if normed else DEFAULT,
                normed.evidence if normed else "embeddings enter the first layer as they are")
    embed = inputs.roles.embed if inputs.roles is not None else None
    key = key_pattern(f"{embed.path}.weight") if embed is not None else \
        next((k for k in inputs.shapes if re.search(rf"(?:^|\.){_EMBED_NAMES}\.weight$", k)), None)
    stored = inputs.shapes.get(key) if key else None
    vocab = _int(inputs.cfg, "vocab_size")
    extra = stored[0] - vocab if stored and vocab and isinstance(stored[0], int) and stored[0] > vocab else 0
    anatomy.add("embedding.extra_rows", extra or None, inputs.key_source,
                f"{key} holds {stored[0]} rows for a vocabulary of {vocab}" if extra and stored else
                "one embedding row per vocabulary entry")
    projection = inputs.roles.embed_projection if inputs.roles is not None else None
    width = (projection.params.get("weight") or (0, 0))[1] if projection is not None else None
    anatomy.add("embedding.projection", width, MODELING if inputs.roles else DEFAULT,
                f"{projection.path} takes the embeddings from {width} to the hidden size" if projection else
                "the embeddings are as wide as the layers")
    side = inputs.seen.get("side_tables", {})
    if "tables" in side:
        anatomy.add("embedding.side_tables", side["tables"].value, MODELING, side["tables"].evidence)
        anatomy.add("embedding.input_map", side["input_map"].value, MODELING, side["input_map"].evidence)
    token_type = inputs.roles.token_type if inputs.roles is not None else None
    anatomy.add("embedding.token_type", token_type is not None, MODELING if inputs.roles else DEFAULT,
                f"{token_type.path}: the type-0 row is added to every token's embedding (no token types are passed)"
                if token_type else "no table of token types")


def _positions(anatomy: Anatomy, inputs: _Inputs) -> None:
    """A position table: learned (its key, and how many rows sit before position 0: rows - max positions), or
    computed with no weight (its layout and offset read from the module's code)."""
    keys = inputs.facts["position_table"]
    if not keys:
        computed, offset = _seen(inputs, "positions", "sinusoid"), _seen(inputs, "positions", "offset")
        if computed is not None:
            anatomy.add("embedding.positions", "sinusoidal", MODELING,
                        f"{computed.evidence}: a computed table of absolute positions added to the embeddings")
            anatomy.add("embedding.sinusoid", computed.value, MODELING, computed.evidence)
            anatomy.add("embedding.position_offset", offset.value if offset else 0, MODELING,
                        offset.evidence if offset else "no offset")
            return
        anatomy.add("embedding.positions", "none", inputs.key_source, "no position-table key")
        return
    shape = inputs.shapes.get(keys[0]) or ()
    limit = _int(inputs.cfg, "max_position_embeddings", "n_positions", "n_ctx")
    offset = shape[0] - limit if len(shape) == 2 and isinstance(shape[0], int) and limit else 0
    anatomy.add("embedding.positions", "learned", inputs.key_source, f"{keys[0]} shape {list(shape)}")
    rows_text = f"{shape[0] if shape else '?'} rows for max_position_embeddings={limit}"
    anatomy.add("embedding.position_extra_rows", max(offset, 0), inputs.key_source, rows_text)
    counted = _seen(inputs, "positions", "learned_offset")
    if counted is not None:
        anatomy.add("embedding.position_offset", counted.value, MODELING, counted.evidence)
        return
    anatomy.add("embedding.position_offset", max(offset, 0), inputs.key_source, rows_text)


def _head_biases(inputs: _Inputs) -> list[str]:
    """The head's bias where the module tree puts it: on its linear, or beside it (BERT's ``cls.predictions.bias``,
    RoBERTa's ``lm_head.bias``)."""
    head = inputs.roles.lm_head if inputs.roles is not None else None
    if head is None:
        return []
    owner = head.path.rsplit(".", 1)[0] if "." in head.path else ""
    names = {f"{head.path}.bias", f"{owner}.bias" if owner else "bias"}
    return [key for key in inputs.shapes if key in names]


def _head_transform_bias(anatomy: Anatomy, inputs: _Inputs) -> None:
    """Whether the head transform's dense stores a bias beside its weight (BERT's does, ModernBERT-decoder's not)."""
    transform = inputs.roles.head_transform if inputs.roles is not None else None
    head = inputs.roles.lm_head if inputs.roles is not None else None
    dense = next((f"{c.path}" for c in transform.children.values() if c.kind == "linear" and c is not head),
                 None) if transform is not None else None
    if dense is None or f"{dense}.weight" not in inputs.shapes:
        anatomy.add("head.transform_bias", None, DEFAULT, "no head transform dense weight to read")
        return
    biased = f"{dense}.bias" in inputs.shapes
    anatomy.add("head.transform_bias", biased, inputs.key_source,
                f"{dense}.bias" if biased else f"{dense}.weight without a bias")


def _head(anatomy: Anatomy, inputs: _Inputs) -> None:
    cfg, facts, source = inputs.cfg, inputs.facts, inputs.key_source
    tie = cfg.get("tie_word_embeddings")
    if source == CHECKPOINT:  # transformers ties whenever the config says so, even over a stored lm_head
        tied = tie is True or not facts["lm_head"]
        stored = f"{facts['lm_head'][0]} present" if facts["lm_head"] else "no lm_head.weight in the checkpoint"
        anatomy.add("head.tied", tied, CHECKPOINT, f"{stored}; tie_word_embeddings={tie}")
    else:
        anatomy.add("head.tied", tie is not False, CONFIG, f"tie_word_embeddings={tie}")
    biases = facts["lm_head_bias"] or _head_biases(inputs)
    anatomy.add("head.bias", bool(biases), source, _keys_text(biases) or "no LM head bias key")
    seen = inputs.seen.get("head", {})
    transform = seen.get("transform")
    anatomy.add("head.transform", ACTIVATIONS.get(transform.value, transform.value) if transform else None,
                MODELING if transform else DEFAULT, transform.evidence if transform else "the head reads the last "
                "hidden state as it is")
    _head_transform_bias(anatomy, inputs)
    fallback = {"logit_scale": "logit_scale", "logits_divisor": "logits_scaling", "final_softcap": "final_logit_softcapping"}
    for trait, config_key in fallback.items():
        row = seen.get(trait)
        if row is not None:
            value = row.value
            if trait in ("logit_scale", "logits_divisor") and value == 1.0:
                value = None
            anatomy.add(f"head.{trait}", value, MODELING, row.evidence)
        elif inputs.roles is not None:
            anatomy.add(f"head.{trait}", None, MODELING, "the CausalLM forward does no such arithmetic on the logits")
        else:
            value = _float(cfg, config_key)
            anatomy.add(f"head.{trait}", value if value not in (None, 1.0) else None, CONFIG, f"{config_key}={value}")


#: The per-layer-input modules by role, as the port's template names them (Gemma 4's attributes): on the backbone the
#: token table, the projection of the embeddings and its norm; on each layer the gate, the projection back and the norm.
PER_LAYER_INPUT_ROLES: tuple[str, ...] = ("embed_tokens_per_layer", "per_layer_model_projection",
                                          "per_layer_projection_norm", "per_layer_input_gate", "per_layer_projection",
                                          "post_per_layer_input_norm")
_VALUE_NORM = re.compile(r"^(?:v|value)_(?:norm|layernorm)$")


def _weight_shape(node: Any) -> tuple[int, ...]:
    return tuple(node.params.get("weight") or ())


def _child_shaped(node: Any, kinds: frozenset[str] | set[str], shape: tuple[int, ...],
                  skip: set[str] | frozenset[str] = frozenset()) -> str | None:
    """The first child of ``node`` of one of ``kinds`` whose weight has ``shape`` (its name not in ``skip``)."""
    return next((attr for attr, child in node.children.items()
                 if child.kind in kinds and attr not in skip and _weight_shape(child) == shape), None)


def _per_layer_input_modules(inputs: _Inputs, block_norms: set[str]) -> tuple[tuple[str, ...], Any] | None:
    """The per-layer-input modules, told apart by their shapes: a second token table ``layers * width`` wide, a linear
    from the hidden size to that width and a norm over ``width`` beside it; in each layer a linear from the hidden
    size to ``width``, one back, and a norm the block's own wiring does not use. Also the backbone (its scales)."""
    roles, cfg = inputs.roles, inputs.cfg
    layers, hidden = _int(cfg, "num_hidden_layers"), _int(cfg, "hidden_size")
    if roles is None or roles.backbone is None or roles.layer is None or not layers or not hidden:
        return None
    backbone, layer = roles.backbone, roles.layer
    for attr, table in backbone.children.items():
        shape = _weight_shape(table)
        is_table = table.kind == "embedding" or table.values.get("builtin_base") == "embedding"
        if table is roles.embed or not is_table or len(shape) != 2 or shape[1] % layers:
            continue
        total, width = shape[1], shape[1] // layers
        linear, norms = {"linear"}, behaviour.NORM_KINDS
        found = (attr, _child_shaped(backbone, linear, (total, hidden)), _child_shaped(backbone, norms, (width,)),
                 _child_shaped(layer, linear, (width, hidden)), _child_shaped(layer, linear, (hidden, width)),
                 _child_shaped(layer, norms, (hidden,), skip=block_norms))
        if all(found):
            return tuple(str(name) for name in found), backbone
    return None


def _per_layer_scales_match(backbone: Any, table: Any, width: int, hidden: int) -> bool:
    """The table's own scale is sqrt(width), and the backbone holds hidden_size^-0.5 and 2^-0.5 (the projection's and
    the sum's scales): the numbers the template computes from the config."""
    numbers = [v for v in backbone.values.values() if isinstance(v, float)]
    table_scale = table.values.get("scalar_embed_scale")
    return (isinstance(table_scale, (int, float)) and math.isclose(table_scale, math.sqrt(width))
            and any(math.isclose(v, hidden ** -0.5) for v in numbers)
            and any(math.isclose(v, 2 ** -0.5) for v in numbers))


def _layer_extras(anatomy: Anatomy, inputs: _Inputs) -> None:
    """Per-layer inputs, a stored layer scalar, a value norm, and full-attention layers with a wider head."""
    names = anatomy.value("block.norm_names")
    used = set(names.values()) if isinstance(names, dict) else set()
    found = _per_layer_input_modules(inputs, used)
    if found is not None:
        modules, backbone = found
        table = backbone.children[modules[0]]
        width = _weight_shape(table)[1] // int(_int(inputs.cfg, "num_hidden_layers") or 1)
        anatomy.add("embedding.per_layer_inputs", list(modules), MODELING,
                    f"{table.path} {list(_weight_shape(table))}: {width} channels per layer; " + ", ".join(modules[1:]))
        anatomy.add("embedding.per_layer_input_scales",
                    _per_layer_scales_match(backbone, table, width, int(_int(inputs.cfg, "hidden_size") or 1)),
                    MODELING, f"{table.path} scale {table.values.get('scalar_embed_scale')}; backbone numbers "
                    f"{sorted(v for v in backbone.values.values() if isinstance(v, float))}")
    else:
        anatomy.add("embedding.per_layer_inputs", None, MODELING if inputs.roles else DEFAULT, "no per-layer inputs")
    scalars = [key for key, shape in inputs.shapes.items() if re.search(r"\{i\}\.\w+$", key) and shape == (1,)]
    anatomy.add("block.layer_scalar", scalars[0].rsplit(".", 1)[-1] if scalars else None, inputs.key_source,
                f"{scalars[0]} shape [1]" if scalars else "no per-layer scalar")
    attention = inputs.roles.attention[1] if inputs.roles is not None and inputs.roles.attention else None
    value_norm = next((attr for attr, child in attention.children.items() if _VALUE_NORM.match(attr)
                       and child.kind in behaviour.NORM_KINDS), None) if attention is not None else None
    if value_norm is not None and attention is not None:
        node = attention.children[value_norm]
        kind = "weighted" if node.params.get("weight") else "weightless"
        anatomy.add("attention.value_norm", kind, MODELING, f"{node.path} ({node.class_name}): {kind}")
    else:
        anatomy.add("attention.value_norm", None, MODELING if attention is not None else DEFAULT, "no value norm")
    _full_head_dim(anatomy, inputs)


def _full_head_dim(anatomy: Anatomy, inputs: _Inputs) -> None:
    """Layers whose q/k widths say a wider head than the others: the full-attention layers' own head_dim, which a
    config key the template reads holds (``CONFIG_ALIASES["full_head_dim"]``)."""
    heads, kv_heads = anatomy.value("attention.heads"), anatomy.value("attention.kv_heads")
    q_keys = inputs.facts["q_split"]
    k_keys = [key.replace(".q_proj.", ".k_proj.") for key in q_keys[:1]]
    q_widths = inputs.layer_shapes.get(q_keys[0], {}) if q_keys else {}
    k_widths = inputs.layer_shapes.get(k_keys[0], {}) if k_keys else {}
    dims = {layer: shape[0] // heads for layer, shape in q_widths.items() if heads and shape}
    if len(set(dims.values())) < 2:
        anatomy.add("attention.full_head_dim", None, inputs.key_source, "every layer's q projection is as wide")
        return
    wide = max(dims.values())
    wide_layers = sorted(layer for layer, dim in dims.items() if dim == wide)
    keys = [key for key in CONFIG_ALIASES["full_head_dim"] if inputs.cfg.get(key) == wide]
    pattern = str(anatomy.value("attention.layer_pattern") or "")
    full = all(pattern and pattern[i % len(pattern)] == "F" for i in wide_layers) and \
        all(pattern[i % len(pattern)] != "F" for i in dims if i not in wide_layers)
    kv_match = all(kv_heads and k_widths.get(i, (0,))[0] == kv_heads * dims[i] for i in dims)
    evidence = (f"{q_keys[0]}: layers {wide_layers} head {wide}, others {min(dims.values())}; config "
                f"{', '.join(keys) or 'no known key'} = {wide}; wide layers full-attention: {full}; "
                f"k_proj matches: {kv_match}")
    anatomy.add("attention.full_head_dim", wide if keys and full and kv_match else "unread", inputs.key_source,
                evidence)


#: Key patterns (``{i}`` = a block) the traits above account for; anything else in a checkpoint is named by
#: ``weights.unexplained``. Block norms count only under the names the block's forward uses (norm_names).
_PROJ = r"\.(?:weight|bias)$"
#: The token embeddings' attribute names the rename table knows; another is found in the module tree.
EMBEDDING_NAMES = ("embed_tokens", "wte", "word_embeddings", "embed_in", "tokens_embed", "tok_embeddings")
_EMBED_NAMES = f"(?:{'|'.join(EMBEDDING_NAMES)})"
EXPLAINED_KEYS: tuple[str, ...] = (
    r"^(?:model\.|transformer\.|gpt_neox\.|language_model\.|decoder\.)*(?:embed_tokens|wte|word_embeddings|embed_in|"
    r"tokens_embed)"
    r"\.weight$",
    r"^(?:model\.|transformer\.|gpt_neox\.|language_model\.|decoder\.)*(?:norm|ln_f|final_layer_norm|final_layernorm|"
    r"norm_f|layer_norm)" + _PROJ,
    r"^(?:lm_head|embed_out|output)" + _PROJ,
    POSITION_TABLE_KEY,  # the position table trait names it
    rf"\{{i\}}\.(?:{_ATTN}\.)+(?:q_proj|k_proj|v_proj|o_proj|qkv_proj|query_key_value|Wqkv|c_attn|c_proj|W_pack|dense|"
    r"out_proj|query|key|value|wq|wk|wv|wo|q_a_proj|q_b_proj|kv_a_proj_with_mqa|kv_b_proj)" + _PROJ,
    rf"\{{i\}}\.{_ATTN}\.dense_bias$",  # GPT-NeoX-Japanese: the output projection's bias, kept apart
    rf"\{{i\}}\.(?:{_ATTN}\.)+(?:q_norm|k_norm|q_layernorm|k_layernorm|query_layernorm|key_layernorm|q_ln|k_ln|"
    r"q_a_layernorm|kv_a_layernorm)\.(?:norms\.\{j\}\.)?(?:weight|bias)$",
    rf"\{{i\}}\.{_MLP}\.(?:gate_proj|up_proj|down_proj|gate_up_proj|fc1|fc2|fc_in|fc_out|c_fc|c_proj|dense_h_to_4h|"
    r"dense_4h_to_h|w1|w2|w3|wi_0|wi_1|wo|w13)" + _PROJ,
    rf"\{{i\}}\.{_MLP}\..*(?:expert|router|gate|shared_mlp)",  # mixture-of-experts weights: the moe traits read them
    rf"\{{i\}}\.{_MLP}\.(?:input_linear|output_linear)\.weight$",  # every expert in one 3-D tensor (GraniteMoE)
    rf"\{{i\}}\.{_MLP}\..*e_score_correction_bias$",  # the router's bias kept beside it (EXAONE-MoE, ERNIE-4.5-MoE)
    r"\{i\}\.(?:fc1|fc2)" + _PROJ,  # OPT / XGLM keep the MLP's two layers on the block itself
    _BERT_MLP + _PROJ, _BERT_NORM + _PROJ,  # BERT-style blocks
    r"\.(?:act_fn|act|activation_fn)\.\w+$",  # a learned activation's scalars: the activation trait names it
    r"(?:^|\.)rotary_emb\.inv_freq$",  # buffers, not weights
    r"\.(?:attention|attn)\.(?:bias|masked_bias)$",
)
_BLOCK_NORM_KEY = re.compile(r"\{i\}\.([a-z_0-9]*(?:norm|ln)[a-z_0-9]*)\.(?:weight|bias)$", re.IGNORECASE)


def explained_key(pattern: str, block_norms: set[str] | None = None) -> bool:
    """A key pattern some trait accounts for; a block-level norm only under ``block_norms`` when they are known."""
    if any(re.search(explained, pattern) for explained in EXPLAINED_KEYS):
        return True
    nested = [name for name in block_norms or () if "." in name]  # a norm inside a sublayer (attention.ln)
    if any(re.search(rf"\{{i\}}\.{re.escape(name)}\.(?:weight|bias)$", pattern) for name in nested):
        return True
    norm = _BLOCK_NORM_KEY.search(pattern)
    return bool(norm) and (block_norms is None or norm.group(1) in block_norms)


def _renamed_projections(seen: dict[str, dict[str, behaviour.Observation]],
                         roles: behaviour.Roles | None) -> list[tuple[str, str]]:
    """(the model's key pattern, the port's) of each projection read under another name (CTRL's ``Wq``, its
    Sequential MLP's ``0`` and ``2``), without the ``.weight`` / ``.bias``."""
    pairs = []
    for role, found in seen.get("projections", {}).items():
        module, owner = behaviour.projection_home(roles, role) if roles is not None else ("", None)
        if owner:
            own = f"{owner[1].path}.{found.value}".replace("{i}", "0")  # a layer's index and a position alike
            port = f"{owner[1].path.rsplit('.', 1)[0]}.{module}.{role}".replace("{i}", "0")
            pairs.append((key_pattern(own), key_pattern(port)))
    return pairs


def _port_named(shapes: dict[str, tuple[int, ...] | None], seen: dict[str, dict[str, behaviour.Observation]],
                roles: behaviour.Roles | None) -> dict[str, tuple[int, ...] | None]:
    """``shapes`` plus each renamed projection's keys under the port's names, so the key facts read them."""
    aliases = {f"{port}.{name}": shapes[f"{own}.{name}"] for own, port in _renamed_projections(seen, roles)
               for name in ("weight", "bias") if f"{own}.{name}" in shapes}
    return shapes | aliases


def _unexplained(anatomy: Anatomy, inputs: _Inputs) -> None:
    norm_names = anatomy.value("block.norm_names")
    used = set(norm_names.values()) if isinstance(norm_names, dict) and norm_names else None
    roles = inputs.roles  # the embedding, final norm and head wherever the module tree puts them (BioGPT's biogpt.)
    found = {f"{node.path}.{name}" for node in (roles.embed, roles.embed_norm, roles.final_norm, roles.lm_head,
                                                 roles.token_type, roles.embed_projection)
             if node is not None for name in ("weight", "bias")} if roles is not None else set()
    if roles is not None and roles.head_transform is not None:
        found |= {key for key in inputs.shapes if key.startswith(f"{roles.head_transform.path}.")}
    for owner, key in ((roles.attention if roles else None, "attention.output_norm"),
                       (roles.mlp if roles else None, "mlp.inner_norm")):
        if owner is not None and anatomy.value(key):
            found |= {f"{owner[1].path}.{anatomy.value(key)}.{name}" for name in ("weight", "bias")}
    differential = anatomy.value("attention.differential")
    if differential and roles is not None and roles.attention is not None:  # the lambda vectors
        found |= {f"{roles.attention[1].path}.{name}" for name in differential}
    found |= set(_head_biases(inputs))
    found |= {f"{own}.{name}" for own, _ in _renamed_projections(inputs.seen, roles) for name in ("weight", "bias")}
    side = inputs.seen.get("side_tables", {})
    if "tables" in side and roles is not None and roles.embed is not None:  # RoCBert's tables and the linear after
        holder = roles.embed.path.rsplit(".", 1)[0]
        found |= {f"{holder}.{attr}.weight" for attr, _, _ in side["tables"].value}
        found |= {f"{holder}.{side['input_map'].value}.{name}" for name in ("weight", "bias")}
    adapter = anatomy.value("block.language_adapter")
    if adapter and roles is not None and roles.layer is not None:  # every language's table entries, and its own norm
        found |= {key for key in inputs.shapes if adapter_languages(roles.layer.path, adapter["table"], [key])}
        if adapter["norm"]:
            found |= {f"{roles.layer.path}.{adapter['norm']}.{name}" for name in ("weight", "bias")}
    per_layer = anatomy.value("embedding.per_layer_inputs")
    if per_layer and roles is not None and roles.backbone is not None and roles.layer is not None:
        found |= {f"{roles.backbone.path}.{name}.weight" for name in per_layer[:3]}
        found |= {f"{roles.layer.path}.{name}.weight" for name in per_layer[3:]}
    if anatomy.value("block.layer_scalar") and roles is not None and roles.layer is not None:
        found.add(f"{roles.layer.path}.{anatomy.value('block.layer_scalar')}")
    cross = anatomy.value("block.cross_attention") or []
    unread = re.compile(r"\{i\}\.(?:" + "|".join(map(re.escape, cross)) + r")\.") if cross else None
    modality = inputs.seen.get("modality", {}).get("unread")
    if modality is not None:
        anatomy.add("model.other_modality_modules", modality.value, MODELING, modality.evidence)
    towers = _modality_towers(inputs.seen)
    left = [key for key in inputs.shapes if key not in found and not explained_key(key, used)
            and not (unread and unread.search(key)) and not key.startswith(towers)]
    anatomy.add("weights.unexplained", sorted(left), inputs.key_source,
                _keys_text(sorted(left)) if left else "every key matches a trait's pattern")


_ASSEMBLERS = (_attention, _rotary, _norms, _block, _mlp, _moe, _embedding, _head, _layer_extras, _unexplained)


# --------------------------------------------------------------------------- category

#: Wall codes (from recon.walls) -> the category they put a model in, most specific first.
CATEGORY_WALLS: tuple[tuple[str, str], ...] = (
    ("multimodal", "multimodal"),
    ("recurrent-layers", "hybrid"),
    ("linear-attention", "hybrid"),
    ("mla", "mla"),
    ("moe", "moe"),
)


def categorise(config: dict, anatomy: Anatomy | None = None) -> str:
    """dense | moe | mla | hybrid | multimodal, from the wall scan of the config."""
    from import_model.recon.walls import scan_walls

    codes = {finding.code for finding in scan_walls(config, None, [])}
    if anatomy is not None and anatomy.value("attention.family") == "hybrid":
        codes.add("recurrent-layers")
    category = next((cat for code, cat in CATEGORY_WALLS if code in codes), "dense")
    if anatomy is not None and category == "mla" and anatomy.value("attention.family") != "mla":
        anatomy.rows["attention.family"] = Row("attention", "family", "mla", CONFIG, "wall scan: mla")
    if anatomy is not None and category == "hybrid":
        anatomy.add("attention.family", "hybrid", CONFIG, "wall scan: recurrent or linear-attention layers")
    return category
