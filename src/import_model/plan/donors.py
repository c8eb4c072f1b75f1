"""Donors: the installed MAX's native architectures, described by their Hugging Face twins, and ranked.

A native MAX architecture computes what its HF counterpart computes, so the
anatomy of the HF class (read from transformers' modeling source with the
model_type's *default* config) stands for the donor. :data:`DELTA_RULES` says,
one row per kind of difference, how structural it is (its weight) and what a
port must change; :func:`compare` turns two anatomies into a delta list and a
score (the sum of weights: lower is closer), and :func:`rank` orders every
donor for a target.

Donor anatomies cost a few seconds to read (30-odd modeling files and config
classes), so they are cached per (transformers, MAX, this code) version.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from import_model.cache import atomic_write, cache_root
from import_model.errors import UserError
from import_model.plan.anatomy import DEFAULT, Anatomy, _quiet, build_anatomy, describe
from import_model.plan.modeling import (
    SourceTree,
    causal_lm_class,
    hf_config_class,
    model_type_of_class,
)
from import_model.recon import registry
from import_model.recon.transformers_files import transformers_version
from import_model.safe_io import MAX_CACHE_BYTES, read_bounded_text

#: Bump when the cached donor anatomy format changes.
SCHEMA = 3

#: Weight classes of a difference: how much of the donor it invalidates.
STRUCTURAL, MLP_SHAPE, WIRING, STYLE, SMALL, SCALAR, CONFIG_ONLY = 100, 30, 20, 10, 5, 3, 1
#: Tie-break among equally distant donors: the simplest, most travelled dense donors first.
DONOR_PREFERENCE = ("llama3", "mistral", "qwen2", "qwen3", "phi3", "olmo2", "gemma3", "granite", "olmo", "olmo3")
#: How many donors the ranking shows.
TOP = 5


@dataclass(frozen=True)
class DeltaRule:
    """One kind of difference: which anatomy rows it compares and what a port must change."""

    id: str
    component: str
    traits: tuple[str, ...]
    weight: int
    kind: str  # graph | weights | config
    change: str  # may use {hf} and {donor}
    project: Callable[[Any], Any] | None = None  # compare project(value) instead of the value
    when: Callable[[Anatomy, Anatomy], bool] | None = None  # only compare when this holds
    compare_values: bool = True  # False: ``when`` alone decides
    change_off: str | None = None  # the change when the target lacks what the donor has


def _present(value: Any) -> bool:
    return value not in (None, False, 0, "none", [], "")


def _both_sparse(target: Anatomy, donor: Anatomy) -> bool:
    return bool(target.value("moe.experts")) and bool(donor.value("moe.experts"))


def _both_interleaved(target: Anatomy, donor: Anatomy) -> bool:
    return target.value("attention.sliding_window") == donor.value("attention.sliding_window") == "interleaved"


def _head_dim_breaks(target: Anatomy, donor: Anatomy) -> bool:
    """The target's head_dim is not hidden_size / heads, and the donor's code derives it that way."""
    return bool(target.value("attention.head_dim_differs")) and donor.value("attention.head_dim_source") == "derived"


#: Every kind of difference the plan knows, most structural first. Knowledge as data.
DELTA_RULES: tuple[DeltaRule, ...] = (
    DeltaRule("attention_family", "attention", ("attention.family",), STRUCTURAL, "graph",
              "replace the attention block: {hf} instead of {donor}"),
    DeltaRule("moe", "moe", ("moe.experts",), STRUCTURAL, "graph",
              "swap the MLP for the other kind: {hf} instead of {donor}", project=_present),
    DeltaRule("moe_shared", "moe", ("moe.shared_experts",), MLP_SHAPE, "graph",
              "add the shared expert path ({hf})", project=_present, when=_both_sparse,
              change_off="remove the donor's shared expert path ({donor})"),
    DeltaRule("moe_router", "moe", ("moe.router",), STYLE, "graph", "match the router: {hf}", when=_both_sparse),
    DeltaRule("moe_renormalise", "moe", ("moe.renormalise",), STYLE, "graph",
              "renormalise the top-k weights: {hf} (donor: {donor})", when=_both_sparse),
    DeltaRule("moe_scaling", "moe", ("moe.routed_scaling",), SMALL, "graph",
              "scale the top-k weights by {hf} (donor: {donor})", when=_both_sparse),
    DeltaRule("moe_grouped_topk", "moe", ("moe.grouped_topk",), STYLE, "graph",
              "group-limited top-k over {hf} expert groups (donor: {donor})", when=_both_sparse),
    DeltaRule("moe_correction_bias", "moe", ("moe.correction_bias",), SMALL, "graph",
              "choose experts with a score-correction bias ({hf})", project=_present, when=_both_sparse,
              change_off="drop the donor's score-correction bias"),
    DeltaRule("moe_router_bias", "moe", ("moe.router_bias",), SMALL, "graph", "router bias: {hf} (donor: {donor})",
              when=_both_sparse),
    DeltaRule("moe_shared_gate", "moe", ("moe.shared_gate",), SMALL, "graph",
              "gate the shared expert by sigmoid(a linear): {hf} (donor: {donor})", when=_both_sparse),
    DeltaRule("moe_layers", "moe", ("moe.dense_layers",), WIRING, "graph",
              "dense MLP layers picked by {hf} (donor: {donor})", when=_both_sparse),
    DeltaRule("moe_expert_layout", "moe", ("moe.expert_layout",), SMALL, "weights",
              "expert weights stored {hf} (donor: {donor})", when=_both_sparse),
    DeltaRule("mlp_kind", "mlp", ("mlp.kind",), MLP_SHAPE, "graph", "rewrite the MLP: {hf} instead of {donor}"),
    DeltaRule("residual", "block", ("block.residual", "block.parallel_norm"), WIRING, "graph",
              "rewire the decoder block: {hf} instead of {donor}"),
    DeltaRule("block_norms", "block", ("block.norms",), STYLE, "graph",
              "move the block norms: {hf} instead of {donor}"),
    # BLOOM with apply_residual_connection_post_layernorm: the residual is the sublayer's normed input
    DeltaRule("residual_source", "block", ("block.residual_source",), SCALAR, "graph",
              "add each sublayer's output to its normed input ({hf})", project=_present,
              change_off="add each sublayer's output to the block input"),
    # GPT-1, BERT-style decoders, OPT without do_layer_norm_before: the last layer's output feeds the head
    DeltaRule("final_norm", "norm", ("norm.final",), SCALAR, "graph", "final norm before the head: {hf} (donor: {donor})"),
    DeltaRule("norm_style", "norm", ("norm.kind", "norm.offset", "norm.weight", "norm.bias"), STYLE, "graph",
              "swap every norm (layers and final): {hf} instead of {donor}"),
    DeltaRule("rotary_style", "rotary", ("rotary.style", "rotary.direction"), STYLE, "graph",
              "change the rotary embedding to {hf} (donor: {donor})"),
    DeltaRule("rotary_fraction", "rotary", ("rotary.fraction",), STYLE, "graph",
              "rotate only part of each head: {hf}, the rest passes through (donor: {donor})"),
    DeltaRule("nope_layers", "rotary", ("rotary.nope_layers",), STYLE, "graph",
              "skip rotary per layer: {hf} (donor: {donor})", project=_present,
              change_off="apply rotary on every layer (the donor skips it: {donor})"),
    DeltaRule("qk_norm", "attention", ("attention.qk_norm", "attention.qk_norm_type", "attention.qk_norm_position",
                                       "attention.qk_norm_weight"),
              STYLE, "graph",
              "match the QK-norm: {hf} instead of {donor}", change_off="remove the donor's QK-norm ({donor})"),
    DeltaRule("sliding_window", "attention", ("attention.sliding_window",), SMALL, "graph",
              "match the attention masks: {hf} instead of {donor}"),
    DeltaRule("layer_pattern", "attention", ("attention.layer_pattern",), CONFIG_ONLY + 1, "config",
              "wire layer_types into the port's config: {hf}, the donor defaults to {donor}", when=_both_interleaved),
    DeltaRule("rope_scaling", "rotary", ("rotary.scaling",), SMALL, "graph",
              "implement the rope frequency formula: {hf} instead of {donor}"),
    DeltaRule("local_theta", "rotary", ("rotary.local_theta",), SMALL, "graph",
              "give sliding layers their own rope base: {hf} (donor: {donor})", project=_present,
              change_off="use one rope base for every layer (the donor's {donor})"),
    DeltaRule("attention_bias", "attention", ("attention.qkv_bias", "attention.o_bias", "attention.o_bias_last_layer"),
              SMALL, "graph",
              "match the attention projection biases: {hf} instead of {donor}"),
    DeltaRule("qkv_layout", "attention", ("attention.qkv_layout",), SCALAR, "weights",
              "map the checkpoint's {hf} onto the donor's {donor} in the weight adapter"),
    DeltaRule("head_dim", "attention", ("attention.head_dim",), SCALAR, "graph",
              "size heads from config.head_dim ({hf}), not hidden_size / heads", when=_head_dim_breaks,
              compare_values=False),
    DeltaRule("mlp_fused", "mlp", ("mlp.fused_gate_up",), SCALAR, "weights",
              "split or fuse gate/up in the weight adapter ({hf}; donor {donor})"),
    DeltaRule("mlp_bias", "mlp", ("mlp.bias",), SMALL, "graph", "match the MLP biases: {hf} instead of {donor}"),
    DeltaRule("activation", "mlp", ("mlp.activation",), SMALL, "graph",
              "use {hf} in the MLP instead of {donor}"),
    # GPT-2 (scale_attn_by_inverse_layer_idx): the scale divided by each layer's depth
    DeltaRule("attention_scale", "attention", ("attention.scale", "attention.scale_by_layer"), SCALAR, "graph",
              "compute the softmax scale as {hf} (donor: {donor})"),
    DeltaRule("attention_softcap", "attention", ("attention.logit_softcap",), SCALAR, "graph",
              "add the attention-score cap: {hf}", project=_present, change_off="drop the donor's cap ({donor})"),
    # BLOOM, MPT (Falcon with alibi: true): no rotary, a per-head linear bias by key position on the scores
    DeltaRule("alibi", "attention", ("attention.position_bias",), SMALL, "graph",
              "add {hf} to the attention scores (donor: {donor})"),
    DeltaRule("clip_qkv", "attention", ("attention.clip_qkv",), SCALAR, "graph",
              "clamp q/k/v: {hf}", project=_present, change_off="drop the donor's clamp ({donor})"),
    DeltaRule("embedding_scale", "embedding", ("embedding.scale",), SCALAR, "graph",
              "scale the token embeddings: {hf} instead of {donor}"),
    # GPT-2, GPT-Neo, GPT-BigCode, OPT (offset 2), BioGPT: a learned table of absolute positions
    DeltaRule("position_table", "embedding", ("embedding.positions", "embedding.position_offset"), STYLE, "graph",
              "add the learned position table to the token embeddings ({hf})", change_off="drop the donor's {donor}"),
    # NanoChat: the final norm's module also normalises the embeddings
    DeltaRule("embedding_norm", "embedding", ("embedding.norm",), SCALAR, "graph",
              "normalise the embeddings before the first layer ({hf})", project=_present,
              change_off="drop the donor's embedding norm"),
    # BERT-style decoders (BERT, RoBERTa, ELECTRA, ...): type-0 row of the token-type table, a transform before the head
    DeltaRule("token_type", "embedding", ("embedding.token_type",), SCALAR, "graph",
              "add row 0 of the token-type table to every embedding ({hf})", change_off="drop the donor's token types"),
    # Mllama: the embedding table holds rows beyond the vocabulary (image tokens) that the head does not predict
    DeltaRule("embedding_rows", "embedding", ("embedding.extra_rows",), SCALAR, "graph",
              "size the embedding table for its extra rows ({hf}); the head keeps the vocabulary", project=_present,
              change_off="drop the donor's extra embedding rows"),
    # DiffLlama: two softmax maps per head pair, the second weighed by a learned lambda and subtracted
    DeltaRule("differential_attention", "attention", ("attention.differential", "attention.differential_norm_weight"),
              WIRING, "graph", "subtract a second softmax map per head pair, weighed by {hf}", project=_present,
              change_off="drop the donor's differential attention"),
    # BitNet: norms inside the sublayers, on the attention's output and on the down projection's input
    DeltaRule("sub_norms", "block", ("attention.output_norm", "mlp.inner_norm"), SMALL, "graph",
              "norm inside the sublayers ({hf})", project=_present, change_off="drop the donor's sub-norms"),
    # ELECTRA: embeddings narrower than the layers, projected up (and the head transform narrows back)
    DeltaRule("embedding_projection", "embedding", ("embedding.projection",), SMALL, "graph",
              "project the embeddings ({hf}) to the hidden size before the first layer", project=_present,
              change_off="drop the donor's embedding projection"),
    # RoCBert: shape and pronunciation tables concatenated to the token embedding, mapped back to the hidden size
    DeltaRule("embedding_side_tables", "embedding", ("embedding.side_tables",), SMALL, "graph",
              "concatenate {hf} to the token embedding and map the whole to the hidden size", project=_present,
              change_off="drop the donor's concatenated tables"),
    # Gemma 4: each layer's own narrow input from a second token table and a projection of the embeddings
    DeltaRule("per_layer_inputs", "embedding", ("embedding.per_layer_inputs",), SMALL, "graph",
              "give every layer its per-layer input ({hf}): gate the layer's output with it and add it back",
              project=_present, change_off="drop the donor's per-layer inputs"),
    # Gemma 4: each layer's output times a stored scalar
    DeltaRule("layer_scalar", "block", ("block.layer_scalar",), SCALAR, "graph",
              "multiply each layer's output by its stored scalar ({hf})", project=_present,
              change_off="drop the donor's layer scalar"),
    # Gemma 4 (and 3n): values normed per head, no weight
    DeltaRule("value_norm", "attention", ("attention.value_norm",), SCALAR, "graph",
              "norm the values per head before the cache: {hf}", project=_present,
              change_off="drop the donor's value norm"),
    # Gemma 4: full-attention layers with a wider head than the sliding ones
    DeltaRule("full_head_dim", "attention", ("attention.full_head_dim",), SMALL, "graph",
              "give the full-attention layers their own head width ({hf}); the KV cache holds the widest",
              project=_present, change_off="one head width for every layer"),
    DeltaRule("head_transform", "head", ("head.transform",), SMALL, "graph",
              "transform the last hidden state before the head: dense, {hf}, norm", project=_present,
              change_off="drop the donor's head transform"),
    # X-MOD: each layer's output runs the bottleneck MLP of one language (picked by a language id) on its residual
    # sum; the port serves one language and sets the others' adapters aside
    DeltaRule("language_adapter", "block", ("block.language_adapter",), SMALL, "graph",
              "add {hf}: the served language's bottleneck MLP, its input normed as the model does, added back",
              project=_present, change_off="drop the donor's language adapters"),
    # ModernBERT-decoder: layer 0 builds its pre-attention norm as an Identity (the embeddings are normed already)
    DeltaRule("unnormed_layers", "block", ("block.unnormed_layers",), SCALAR, "graph",
              "leave out the norms the family builds as an Identity on some layers: {hf}", project=_present,
              change_off="give every layer its norms (the donor leaves out {donor})"),
    DeltaRule("residual_multiplier", "block", ("block.residual_multiplier",), SCALAR, "graph",
              "scale the residual branches: {hf}", project=_present, change_off="drop the donor's {donor}"),
    DeltaRule("head_bias", "head", ("head.bias",), SCALAR, "graph", "add the LM head bias",
              change_off="drop the donor's LM head bias"),
    DeltaRule("logit_scale", "head", ("head.logit_scale",), SCALAR, "graph",
              "multiply the logits: {hf}", project=_present, change_off="drop the donor's {donor}"),
    DeltaRule("logits_divisor", "head", ("head.logits_divisor",), SCALAR, "graph",
              "divide the logits: {hf}", project=_present, change_off="drop the donor's {donor}"),
    DeltaRule("final_softcap", "head", ("head.final_softcap",), SCALAR, "graph",
              "add the final-logit cap: {hf}", project=_present, change_off="drop the donor's cap ({donor})"),
    DeltaRule("tied_head", "head", ("head.tied",), CONFIG_ONLY, "weights",
              "wire tie_word_embeddings ({hf}): the weight adapter must {action}"),
    DeltaRule("unexplained_weights", "block", ("weights.unexplained",), WIRING, "graph",
              "implement what these weights compute (no rule describes them; read the modeling code): {hf}",
              when=lambda target, _donor: bool(target.value("weights.unexplained")), compare_values=False),
)


@dataclass(frozen=True)
class Delta:
    """One real difference between the model and a donor, and what the port must change."""

    rule: str
    component: str
    hf: str
    donor: str
    change: str
    where: str
    kind: str
    weight: int
    traits: tuple[str, ...]
    unverified: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"traits": list(self.traits)}


@dataclass
class DonorInfo:
    """A donor registration and the HF model_type that stands for it (None: transformers lacks the class)."""

    slug: str
    architecture: str
    model_type: str | None
    encodings: list[str] = field(default_factory=list)
    skipped: str | None = None
    anatomy: Anatomy | None = None



@dataclass
class Candidate:
    """A donor scored against the target."""

    donor: DonorInfo
    score: int
    deltas: list[Delta]
    excluded: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "slug": self.donor.slug, "architecture": self.donor.architecture, "model_type": self.donor.model_type,
            "category": self.donor.anatomy.category if self.donor.anatomy else None, "score": self.score,
            "deltas": len(self.deltas), "structural_deltas": sum(1 for d in self.deltas if d.weight >= STYLE),
            "excluded": self.excluded, "encodings": self.donor.encodings,
        }


# --------------------------------------------------------------------------- comparing


def _text(anatomy: Anatomy, keys: tuple[str, ...]) -> str:
    """The rule's traits in words; secondary traits that are unset are left out."""
    parts = [describe(key, anatomy.value(key)) for index, key in enumerate(keys)
             if key in anatomy.rows and (index == 0 or anatomy.value(key) is not None)]
    return ", ".join(p for p in parts if p) or "-"


def _projected(rule: DeltaRule, anatomy: Anatomy) -> tuple[Any, ...]:
    values = tuple(anatomy.value(key) for key in rule.traits)
    return tuple(rule.project(v) for v in values) if rule.project else values


def _differs(rule: DeltaRule, target: Anatomy, donor: Anatomy) -> bool:
    if rule.when is not None and not rule.when(target, donor):
        return False
    if not rule.compare_values:
        return True
    if not any(key in target.rows for key in rule.traits):
        return False
    return _projected(rule, target) != _projected(rule, donor)


def _where(target: Anatomy, keys: tuple[str, ...]) -> tuple[str, bool]:
    rows = [target.rows[k] for k in keys if k in target.rows]
    text = " | ".join(f"{row.source}: {row.evidence}" for row in rows if row.evidence)
    return text, any(row.source == DEFAULT for row in rows)


def compare(target: Anatomy, donor: Anatomy) -> list[Delta]:
    """Every real difference between the target and the donor, as delta rows in rule order."""
    deltas = []
    for rule in DELTA_RULES:
        if not _differs(rule, target, donor):
            continue
        hf, theirs = _text(target, rule.traits), _text(donor, rule.traits)
        action = "reuse embed_tokens for lm_head" if target.value("head.tied") else "load a separate lm_head.weight"
        template = rule.change_off if rule.change_off and not _present(target.value(rule.traits[0])) else rule.change
        where, unverified = _where(target, rule.traits)
        deltas.append(Delta(rule.id, rule.component, hf, theirs, template.format(hf=hf, donor=theirs, action=action),
                            where, rule.kind, rule.weight, rule.traits, unverified))
    return deltas


def score(deltas: list[Delta]) -> int:
    return sum(delta.weight for delta in deltas)


# --------------------------------------------------------------------------- donor anatomies


#: Registered text-generation classes that are not standalone autoregressive decoders to port from.
NOT_STANDALONE: tuple[tuple[str, str], ...] = (
    ("Assistant", "a draft model that assists a larger model's speculative decoding"),
    ("BlockDiffusion", "a block-diffusion LM, not an autoregressive decoder"),
)


def donor_infos() -> list[DonorInfo]:
    """Every donor registration, with the model_type that stands for it."""
    infos = []
    for arch in registry.native_architectures():
        if not arch.is_donor:
            continue
        model_type = model_type_of_class(arch.name)
        info = DonorInfo(arch.slug, arch.name, model_type, list(arch.supported_encodings))
        reason = next((why for marker, why in NOT_STANDALONE if marker in arch.name), None)
        if reason:
            info.skipped, info.model_type = reason, None
        elif model_type is None:
            info.skipped = f"{arch.name} is not in the installed transformers"
        infos.append(info)
    return infos


def donor_anatomy(info: DonorInfo, tree: SourceTree) -> Anatomy | None:
    """The HF anatomy of a donor from its model_type's default config; multimodal donors by their text model."""
    assert info.model_type is not None
    with _quiet():
        config = hf_config_class(info.model_type)().to_dict()
    config["architectures"] = [info.architecture]
    text = config.get("text_config")
    if isinstance(text, dict) and isinstance(text.get("model_type"), str):
        text_type = text["model_type"]
        text_config = dict(text)
        text_config["architectures"] = [causal_lm_class(text_type) or info.architecture]
        anatomy = build_anatomy(text_config, None, tree=tree, normalise=False)
        anatomy.architecture = info.architecture
        anatomy.notes.append(f"text backbone read from {text_type}")
        anatomy.category = "multimodal"
        return anatomy
    return build_anatomy(config, None, tree=tree, normalise=False)


def load_donors(use_cache: bool = True) -> list[DonorInfo]:
    """Donor registrations with their anatomies, read once per installed version and cached."""
    infos = donor_infos()
    cache = _cache_file()
    if use_cache and cache is not None and cache.is_file():
        with contextlib.suppress(UserError, OSError, ValueError, KeyError, TypeError):
            stored = json.loads(read_bounded_text(cache, MAX_CACHE_BYTES, "donor cache"))
            for info in infos:
                entry = stored.get(f"{info.slug}|{info.architecture}")
                if entry is not None:
                    info.skipped = entry.get("skipped")
                    info.anatomy = Anatomy.from_dict(entry["anatomy"]) if entry.get("anatomy") else None
            if all(f"{i.slug}|{i.architecture}" in stored for i in infos):
                return infos
    tree = SourceTree()
    for info in infos:
        if info.model_type is None:
            continue
        try:
            info.anatomy = donor_anatomy(info, tree)
        except Exception as exc:  # noqa: BLE001 - one unreadable donor must not sink the ranking
            info.skipped = f"its HF anatomy could not be read ({type(exc).__name__})"
    if cache is not None:
        payload = {f"{i.slug}|{i.architecture}": {"skipped": i.skipped, "anatomy": i.anatomy.as_dict() if i.anatomy else None}
                   for i in infos}
        with contextlib.suppress(OSError):
            atomic_write(cache, json.dumps(payload).encode())
    return infos


def _cache_file() -> Path | None:
    try:
        root = registry.architectures_dir()
        stamp = (root / "__init__.py").stat().st_mtime_ns
    except Exception:  # noqa: BLE001 - no MAX install: no cache file; the registry reports the problem
        return None
    code = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        code.update(path.read_bytes())
    key = hashlib.sha256(f"{SCHEMA}|{transformers_version()}|{root}|{stamp}|{code.hexdigest()}".encode()).hexdigest()
    return cache_root() / "plan" / f"donors-{key[:16]}.json"


# --------------------------------------------------------------------------- ranking

#: Target category -> donor categories considered first; the rest only when none of these exist.
ELIGIBLE: dict[str, tuple[str, ...]] = {
    "dense": ("dense",),
    "moe": ("moe", "mla", "dense"),
    "mla": ("mla", "moe"),
    "hybrid": ("hybrid", "dense", "moe"),
    "multimodal": ("multimodal", "dense", "moe", "mla"),
}


def rank(target: Anatomy, donors: list[DonorInfo]) -> list[Candidate]:
    """Every readable donor scored against the target, closest eligible first."""
    readable = [d for d in donors if d.anatomy is not None and d.skipped is None]
    eligible = ELIGIBLE.get(target.category, ("dense",))
    pool = {d.anatomy.category for d in readable if d.anatomy}
    allowed = set(eligible) & pool or pool
    candidates = []
    for donor in readable:
        assert donor.anatomy is not None
        deltas = compare(target, donor.anatomy)
        excluded = None if donor.anatomy.category in allowed else \
            f"{donor.anatomy.category} donor for a {target.category} model"
        candidates.append(Candidate(donor, score(deltas), deltas, excluded))
    candidates.sort(key=lambda c: (c.excluded is not None, c.score, _preference(c.donor.slug), c.donor.slug, c.donor.architecture))
    return candidates


def _preference(slug: str) -> int:
    return DONOR_PREFERENCE.index(slug) if slug in DONOR_PREFERENCE else len(DONOR_PREFERENCE)
