"""Weight renames: which checkpoint tensor fills which weight of the port's graph.

The graph's expected names come from a *dry build* (:func:`dry_build`): MAX
builds the pipeline on the CPU exactly as ``max serve`` would (config, weight
adapter, module tree) and stops at the first ``max.nn.Module.load_state_dict``
call, where it records the module tree's ``raw_state_dict()`` (every weight
name with its shape) and the state dict the port's own weight adapter
produced. Compiling the model is refused outright and the log-probabilities
helper graph is not built (nothing executes), so the cost is the pipeline
set-up only: ~0.3 s per build on a twin once ``max.pipelines`` is imported
(that import costs 5-10 s). Reading the adapter's output means the adapter
reads the tensors, which is why large checkpoints are dry-built on their twin.

The checkpoint -> graph mapping is then derived from knowledge kept as data:
:data:`RENAME_RULES` (regex -> replacement, applied in order; every
intermediate name is a candidate, so a graph that kept the checkpoint's own
names wins), :data:`FUSED_RULES` (fused projections split or stacked),
:data:`TIE_RULES` (a head that shares the embedding) and :data:`IGNORED`
(buffers that are not weights). A candidate is accepted only when its name is
in the graph *and* its shape matches. What is left over is reported: orphans
(checkpoint tensors nothing consumes), missing (graph weights nothing fills)
and shape mismatches.

:func:`write_adapter_table` writes the mapping into the port's
``weight_adapters.py`` as readable dict literals between markers, with the few
lines of runtime code that apply them in front of the donor's adapter.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.util
import json
import logging
import math
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from import_model.cache import atomic_write
from import_model.errors import UserError
from import_model.max_cpu import one_device_collective_patches, patched
from import_model.plan.anatomy import EMBEDDING_NAMES, adapter_languages, explained_key, served_language
from import_model.recon.keys import key_pattern
from import_model.safe_io import MAX_PORT_FILE_BYTES, read_bounded_text
from import_model.source import LocalSource, load_config
from import_model.source.config_keys import context_length

UNEXPLAINED = "unexplained_weights"

Shape = tuple[Any, ...]

# --------------------------------------------------------------------------- knowledge tables


@dataclass(frozen=True)
class RenameRule:
    """``re.sub(pattern, replacement, name)``; ``note`` says which checkpoints write names this way."""

    pattern: str
    replacement: str
    note: str


#: Applied in order to a checkpoint name; each name along the way is a candidate graph name.
RENAME_RULES: tuple[RenameRule, ...] = (
    RenameRule(r"^model\.", "", "HF decoder prefix (Llama, Mistral, Qwen, Gemma, Phi, ...)"),
    RenameRule(r"^transformer\.", "", "GPT-2 / Bloom / Falcon prefix"),
    RenameRule(r"^gpt_neox\.", "", "GPT-NeoX / Pythia prefix"),
    RenameRule(r"^decoder\.", "", "OPT / XGLM / BioGPT decoder prefix (model.decoder.layers)"),
    RenameRule(r"^h\.(\d+)\.", r"layers.\1.", "GPT-2 / Bloom / Falcon block list"),
    RenameRule(r"^(?:embed_in|wte|word_embeddings|tokens_embed|tok_embeddings)\.", "embed_tokens.",
               "token embedding (GPT-1: tokens_embed; ModernBERT-decoder: tok_embeddings)"),
    RenameRule(r"^embed_out\.", "lm_head.", "GPT-NeoX output head"),
    RenameRule(r"^(?:wpe|embed_positions|position_embeddings|positions_embed)\.", "embed_positions.",
               "learned position table (GPT-2, GPT-Neo, GPT-BigCode, OPT, BioGPT, GPT-1)"),
    RenameRule(r"^(?:final_layer_norm|final_layernorm|ln_f|norm_f)\.", "norm.", "final norm"),
    RenameRule(r"\.attn\.", ".self_attn.", "attention module named attn (GPT-J, CodeGen)"),
    RenameRule(r"\.self_attn\.out_proj\.", ".self_attn.o_proj.", "attention output (GPT-J, CodeGen, OPT)"),
    RenameRule(r"\.self_attn\.c_proj\.", ".self_attn.o_proj.", "attention output (GPT-2, GPT-BigCode)"),
    RenameRule(r"\.(?:attention|self_attention)\.query_key_value\.", ".self_attn.qkv_proj.", "fused QKV (NeoX, Bloom)"),
    RenameRule(r"\.(?:attention|self_attn|self_attention)\.dense\.", ".self_attn.o_proj.", "attention output (NeoX, Phi)"),
    RenameRule(r"\.mlp\.(?:dense_h_to_4h|fc1|c_fc|fc_in)\.", ".mlp.up_proj.", "non-gated MLP input (NeoX, Phi, GPT-J)"),
    RenameRule(r"\.mlp\.(?:dense_4h_to_h|fc2|c_proj|fc_out)\.", ".mlp.down_proj.", "MLP output (NeoX, Phi, GPT-J)"),
    RenameRule(r"^layers\.(\d+)\.fc1\.", r"layers.\1.mlp.up_proj.", "MLP input kept on the block (OPT, XGLM, BioGPT)"),
    RenameRule(r"^layers\.(\d+)\.fc2\.", r"layers.\1.mlp.down_proj.", "MLP output kept on the block (OPT, XGLM, BioGPT)"),
    RenameRule(r"\.self_attn_layer_norm\.", ".input_layernorm.", "pre-attention norm (OPT, XGLM, BioGPT)"),
    RenameRule(r"^layers\.(\d+)\.final_layer_norm\.", r"layers.\1.post_attention_layernorm.",
               "pre-MLP norm (OPT, XGLM, BioGPT)"),
    RenameRule(r"\.ln_1\.", ".input_layernorm.", "GPT-2 pre-attention norm"),
    RenameRule(r"\.ln_2\.", ".post_attention_layernorm.", "GPT-2 pre-MLP norm"),
    RenameRule(r"\.attention_layernorm\.", ".input_layernorm.", "pre-attention norm (Apertus)"),
    RenameRule(r"\.feedforward_layernorm\.", ".post_attention_layernorm.", "pre-MLP norm (Apertus)"),
    RenameRule(r"\.pre_feedforward_layernorm\.", ".post_attention_layernorm.",
               "pre-MLP norm of a pre-norm block under its sandwich name (VaultGemma)"),
    RenameRule(r"\.self_attn\.(q|k)_layernorm\.", r".self_attn.\1_norm.", "QK LayerNorm (Persimmon)"),
    RenameRule(r"\.self_attn\.query_layernorm\.", ".self_attn.q_norm.", "QK-norm (Hunyuan)"),
    RenameRule(r"\.self_attn\.key_layernorm\.", ".self_attn.k_norm.", "QK-norm (Hunyuan)"),
    RenameRule(r"^layer\.(\d+)\.", r"layers.\1.", "BERT-style block list (encoder.layer)"),
    RenameRule(r"\.attention\.self\.(q|k|v)\w*\.", r".self_attn.\1_proj.", "BERT-style query / key / value"),
    RenameRule(r"\.attention\.output\.dense\.", ".self_attn.o_proj.", "BERT-style attention output"),
    RenameRule(r"\.attention\.dense_bias$", ".self_attn.o_proj.bias",
               "the output projection's bias kept apart, added after the residual's dropout (GPT-NeoX-Japanese)"),
    RenameRule(r"\.attention\.output\.LayerNorm\.", ".input_layernorm.", "BERT-style norm after the attention's add"),
    RenameRule(r"\.intermediate\.dense\.", ".mlp.up_proj.", "BERT-style MLP input"),
    RenameRule(r"^layers\.(\d+)\.output\.dense\.", r"layers.\1.mlp.down_proj.", "BERT-style MLP output"),
    RenameRule(r"^layers\.(\d+)\.output\.LayerNorm\.", r"layers.\1.post_attention_layernorm.",
               "BERT-style norm after the MLP's add"),
    RenameRule(r"\.block_sparse_moe\.", ".mlp.", "MoE block named block_sparse_moe (Mixtral, PhiMoE, MiniMax)"),
    RenameRule(r"\.mlp\.(?:gate|router)\.(weight|bias)$", r".mlp.gate.gate_score.\1",
               "MoE router linear: MAX's MoEGate keeps it as gate_score"),
    RenameRule(r"\.mlp\.experts\.(\d+)\.w1\.", r".mlp.experts.\1.gate_proj.", "expert gate projection (Mixtral)"),
    RenameRule(r"\.mlp\.experts\.(\d+)\.w3\.", r".mlp.experts.\1.up_proj.", "expert up projection (Mixtral)"),
    RenameRule(r"\.mlp\.experts\.(\d+)\.w2\.", r".mlp.experts.\1.down_proj.", "expert down projection (Mixtral)"),
    RenameRule(r"\.mlp\.shared_experts\.", ".mlp.shared_expert.", "shared experts as one MLP (DeepSeek-style)"),
    RenameRule(r"\.mlp\.shared_mlp\.", ".mlp.shared_expert.", "the shared expert (HunYuan-MoE's shared_mlp)"),
    RenameRule(r"\.mlp\.gate\.wg\.weight$", ".mlp.gate.gate_score.weight", "MoE router linear (HunYuan-MoE's gate.wg)"),
    RenameRule(r"\.mlp\.router\.layer\.(weight|bias)$", r".mlp.gate.gate_score.\1",
               "MoE router linear kept as router.layer (GraniteMoE)"),
    RenameRule(r"\.mlp\.e_score_correction_bias$", ".mlp.gate.e_score_correction_bias",
               "score-correction bias kept on the MoE block, not its router (EXAONE-MoE)"),
    RenameRule(r"\.mlp\.(?:gate\.)?moe_statics\.e_score_correction_bias$", ".mlp.gate.e_score_correction_bias",
               "score-correction bias kept in a statistics module (ERNIE-4.5-MoE)"),
)

BLOCKS, PER_HEAD, FOUR_SHARDS, STACKED = "blocks", "per_head", "four_shards", "stacked"


@dataclass(frozen=True)
class FusedRule:
    """A fused projection: ``fused`` (a regex, and ``fused_text`` literally) stands for ``parts`` in one tensor.

    ``layout`` is how the parts sit along dim 0: ``blocks`` (one after the other)
    or ``per_head`` (interleaved head by head, as GPT-NeoX and Bloom store QKV; with fewer KV heads, as
    Falcon does, each KV head's group holds its query heads, then its K and V heads), or ``four_shards``
    (CodeGen: four model-parallel shards, each holding its quarter of every part).
    """

    fused: str
    fused_text: str
    parts: tuple[str, ...]
    layout: str


_QKV = (".self_attn.q_proj.", ".self_attn.k_proj.", ".self_attn.v_proj.")
FUSED_RULES: tuple[FusedRule, ...] = (
    FusedRule(r"\.self_attn\.qkv_proj\.", ".self_attn.qkv_proj.", _QKV, BLOCKS),
    FusedRule(r"\.attn\.c_attn\.", ".attn.c_attn.", _QKV, BLOCKS),  # GPT-2, GPT-BigCode (MQA: q | k | v)
    FusedRule(r"\.attn\.Wqkv\.", ".attn.Wqkv.", _QKV, BLOCKS),  # MPT, DBRX: [q | k | v]
    FusedRule(r"\.mlp\.gate_up_proj\.", ".mlp.gate_up_proj.", (".mlp.gate_proj.", ".mlp.up_proj."), BLOCKS),
    # the fused input whose second half is the activated one, the name its code reads to (plan.behaviour)
    FusedRule(r"\.mlp\.up_gate_proj\.", ".mlp.up_gate_proj.", (".mlp.up_proj.", ".mlp.gate_proj."), BLOCKS),
    FusedRule(r"\.(?:attention|self_attention)\.query_key_value\.", ".attention.query_key_value.", _QKV, PER_HEAD),
    FusedRule(r"\.self_attn\.query_key_value\.", ".self_attn.query_key_value.", _QKV, PER_HEAD),
    # CodeGen: shards of [q | v | k], in that order
    FusedRule(r"\.attn\.qkv_proj\.", ".attn.qkv_proj.",
              (".self_attn.q_proj.", ".self_attn.v_proj.", ".self_attn.k_proj."), FOUR_SHARDS),
)

@dataclass(frozen=True)
class StackedRule:
    """Every expert's weights in one 3-D tensor ``[experts, out, in]``: ``stacked`` (a regex) is replaced by each of
    ``parts`` with ``{j}`` the expert's number; expert ``j``'s slice holds its parts one after the other."""

    stacked: str
    parts: tuple[str, ...]
    note: str


STACKED_RULES: tuple[StackedRule, ...] = (
    StackedRule(r"\.(?:input_linear|experts\.gate_up_proj)(?:\.weight)?$",
                (".experts.{j}.gate_proj.weight", ".experts.{j}.up_proj.weight"),
                "gate and up of every expert, [E, 2I, H] (GraniteMoE's input_linear, transformers 5's gate_up_proj)"),
    StackedRule(r"\.(?:output_linear|experts\.down_proj)(?:\.weight)?$", (".experts.{j}.down_proj.weight",),
                "down of every expert, [E, H, I] (GraniteMoE's output_linear, transformers 5's down_proj)"),
)

#: (head weight, embedding weight it shares) in graph names: a tied checkpoint stores only the embedding.
TIE_RULES: tuple[tuple[str, str], ...] = (("lm_head.weight", "embed_tokens.weight"),)

#: Checkpoint tensors that are buffers, not weights: (regex, reason).
IGNORED: tuple[tuple[str, str], ...] = (
    (r"(?:^|\.)rotary_emb\.inv_freq$", "RoPE buffer; MAX computes it from the config"),
    (r"\.attn\.masked_bias$", "GPT-2 attention mask buffer"),
    (r"\.attention\.(?:bias|masked_bias)$", "GPT-NeoX causal mask buffer"),
)

#: Config attributes a donor's config code reads, and the keys other families keep them under.
#: Used only to let a dry build finish when the port's config code is not rewired yet (reported).
CONFIG_STANDINS: dict[str, tuple[str, ...]] = {
    "num_key_value_heads": ("num_attention_heads", "n_head"),
    "rms_norm_eps": ("layer_norm_eps", "norm_epsilon", "layer_norm_epsilon", "norm_eps"),
    "layer_norm_eps": ("rms_norm_eps", "norm_epsilon", "layer_norm_epsilon"),
    "num_attention_heads": ("n_head",),
    "hidden_size": ("n_embd", "d_model"),
    "num_hidden_layers": ("n_layer",),
    "max_position_embeddings": ("n_positions",),
    "intermediate_size": ("n_inner", "ffn_hidden_size"),
    "rope_theta": ("rotary_emb_base", "rope_parameters.rope_theta"),
    "head_dim": ("hidden_size/num_attention_heads",),
    "rope_local_base_freq": ("rope_parameters.rope_theta", "rope_theta"),
    "_sliding_window_pattern": ("sliding_window_pattern", "period:layer_types"),
}

#: Checkpoint keys a delta row adds to the graph once implemented (regex on the key), so an orphan key that an
#: open ``TODO(delta <rule>)`` will consume is told apart from a real naming gap. Knowledge as data.
PENDING_DELTA_KEYS: dict[str, str] = {
    "norm_style": r"norm\.bias$",
    "block_norms": r"(pre|post)_\w*(layernorm|norm)\.(weight|bias)$",
    "qk_norm": r"\.(q|k|query|key)_(layer)?norm\.(weight|bias)$",
    "attention_bias": r"(self_attn|attention)\.\w+\.bias$",
    "mlp_bias": r"mlp\.\w+\.bias$",
    "head_bias": r"lm_head\.bias$",
    "activation": r"\.(act_fn|act|activation_fn)\.\w+$",
}

#: Donor graph weights a delta row removes once implemented (a shared-norm parallel block has no pre-MLP norm, a
#: plain MLP no gate), so the key diff of an unfinished scaffold names them instead of failing on them.
PENDING_GRAPH_WEIGHTS: dict[str, str] = {
    "residual": r"post_attention_layernorm\.(weight|bias)$",
    "block_norms": r"(post_attention|pre_feedforward|post_feedforward)_layernorm\.(weight|bias)$",
    "mlp_kind": r"mlp\.gate_proj\.(weight|bias)$",
    "qk_norm": r"\.(q|k)_norm\.(weight|bias)$",
}

#: How the weight table marks a key it drops for an open delta row (the gate reads it back).
SET_ASIDE = "set aside until TODO(delta"


#: A local checkpoint larger than this is dry-built through its tiny twin (the adapter casts every tensor).
DRY_BUILD_MAX_BYTES = 256 * 1024**2
#: How many missing config attributes a dry build may stand in for before giving up.
MAX_STANDINS = 8

# --------------------------------------------------------------------------- names


_NUMBER = re.compile(r"(?<![^.])\d+(?![^.])")


def name_pattern(name: str) -> str:
    """``model.layers.3.mlp.up_proj.weight`` -> ``model.layers.*.mlp.up_proj.weight``."""
    return _NUMBER.sub("*", name)


def summarize(names: Iterable[str]) -> list[tuple[str, int]]:
    """Names collapsed to patterns, with how many names each covers, in first-seen order."""
    counts: dict[str, int] = {}
    for name in names:
        pattern = name_pattern(name)
        counts[pattern] = counts.get(pattern, 0) + 1
    return list(counts.items())


def candidate_names(name: str, found: tuple[RenameRule, ...] = ()) -> list[str]:
    """``name`` and every name ``found`` then :data:`RENAME_RULES` turn it into on the way, in order."""
    names = [name]
    for rule in (*found, *RENAME_RULES):
        renamed = re.sub(rule.pattern, rule.replacement, names[-1])
        if renamed != names[-1]:
            names.append(renamed)
    return names


def shape_text(shape: Shape) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


# --------------------------------------------------------------------------- the mapping


@dataclass
class Split:
    """One fused checkpoint tensor cut into graph weights; ``ratio`` gives the parts' relative sizes."""

    source: str
    layout: str
    targets: tuple[str, ...]
    ratio: tuple[int, ...]


@dataclass
class Concat:
    """Several checkpoint tensors stacked along dim 0 into one graph weight."""

    target: str
    layout: str
    sources: tuple[str, ...]


@dataclass
class Mismatch:
    checkpoint: str
    graph: str
    checkpoint_shape: Shape
    graph_shape: Shape


@dataclass
class WeightMapping:
    """Which checkpoint tensor fills which graph weight, and what is left over."""

    renames: dict[str, str] = field(default_factory=dict)
    splits: list[Split] = field(default_factory=list)
    concats: list[Concat] = field(default_factory=list)
    ties: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    transposed: list[str] = field(default_factory=list)  # stored (in, out): transposed before anything else
    orphans: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.orphans or self.missing or self.mismatches)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["complete"] = self.complete
        data["orphan_patterns"] = [{"pattern": p, "count": n} for p, n in summarize(self.orphans)]
        data["missing_patterns"] = [{"pattern": p, "count": n} for p, n in summarize(self.missing)]
        return data


class _Matcher:
    """Mutable bookkeeping while :func:`derive_mapping` claims checkpoint keys and graph weights."""

    def __init__(self, checkpoint: dict[str, Shape], graph: dict[str, Shape],
                 found: tuple[RenameRule, ...] = ()) -> None:
        self.found = found
        self.checkpoint = checkpoint
        self.graph = graph
        self.free_keys = dict.fromkeys(checkpoint)  # ordered set
        self.free_weights = dict.fromkeys(graph)
        self.mapping = WeightMapping()

    def claim(self, keys: Iterable[str], weights: Iterable[str]) -> None:
        for key in keys:
            self.free_keys.pop(key, None)
        for weight in weights:
            self.free_weights.pop(weight, None)

    def free_target(self, key: str) -> str | None:
        """The first candidate name of ``key`` that is an unclaimed graph weight."""
        return next((name for name in self.names(key) if name in self.free_weights), None)

    def names(self, key: str) -> list[str]:
        return candidate_names(key, self.found)


def derive_mapping(checkpoint: dict[str, Shape], graph: dict[str, Shape], config: dict[str, Any]) -> WeightMapping:
    """Match checkpoint tensors (name -> shape) to graph weights (name -> shape) by name and shape."""
    root = module_tree(config)  # read once: transposed weights, found renames and unread modules all come from it
    read = read_roles(root)
    stored = stored_transposed(root)
    flipped = [k for k, v in checkpoint.items() if len(v) == 2 and any(p.fullmatch(k) for p in stored)]
    shapes = {k: tuple(reversed(v)) if k in flipped else tuple(v) for k, v in checkpoint.items()}
    language, served, others = _language_adapter(read, config, list(shapes))
    matcher = _Matcher(shapes, {k: tuple(v) for k, v in graph.items()}, (*served, *found_renames(root, read)))
    matcher.mapping.transposed = flipped
    for key in [k for k in matcher.free_keys if others and others.match(k)]:
        matcher.mapping.dropped[key] = f"another language's adapter: the port serves {language} only"
        matcher.claim([key], [])
    unread = unread_by_causal_lm(read)
    for key in [k for k in matcher.free_keys if unread and unread.match(k)]:
        matcher.mapping.dropped[key] = "cross-attention: runs only with encoder states, which a causal LM never passes"
        matcher.claim([key], [])
    towers = _other_modality_prefixes(read)
    for key in [k for k in matcher.free_keys if towers and k.startswith(towers)]:
        matcher.mapping.dropped[key] = "runs only with image or audio inputs, which token ids alone never pass"
        matcher.claim([key], [])
    _drop_buffers(matcher)
    _match_direct(matcher)
    _match_splits(matcher)
    _match_stacked(matcher)
    _match_concats(matcher)
    _match_ties(matcher, _ties_embeddings(config))
    mapping = matcher.mapping
    mapping.orphans = list(matcher.free_keys)
    mapping.missing = list(matcher.free_weights)
    return mapping


def module_tree(config: dict[str, Any]) -> Any:
    """The HF module tree of the config's causal-LM class, read from its modeling source (None if unreadable)."""
    from import_model.plan.modeling import SourceTree, build_module_tree, causal_lm_class, modeling_path

    model_type = config.get("model_type")
    path = modeling_path(model_type) if isinstance(model_type, str) and model_type else None
    if path is None:
        return None
    archs = config.get("architectures") if isinstance(config.get("architectures"), list) else []
    tree = SourceTree()
    names = [n for n in (*archs[:1], causal_lm_class(model_type)) if isinstance(n, str)]
    ref = next((r for n in names if (r := tree.find_class(path, n)) is not None), None)
    if ref is None:
        return None
    try:
        return build_module_tree(tree, ref, config)
    except (RecursionError, ValueError):
        return None


def stored_transposed(root: Any) -> tuple[re.Pattern[str], ...]:
    """Checkpoint weights the family's modeling code keeps as (in, out), as transformers' ``Conv1D`` does (GPT-2),
    read from its module tree (:func:`module_tree`); none when the code could not be read."""
    if root is None:
        return ()
    return tuple(re.compile(re.escape(node.path).replace(re.escape("{i}"), r"\d+") + r"\.weight")
                 for node in root.walk() if node.values.get("transposed"))


#: Decoder prefixes :data:`RENAME_RULES` already strip.
_KNOWN_PREFIXES = frozenset({"model.", "transformer.", "gpt_neox.", "model.decoder.", "decoder."})

#: Names a projection of the attention module has in the checkpoints the table rules know.
_PROJECTION_NAMES = frozenset({"q_proj", "k_proj", "v_proj", "qkv_proj", "query_key_value", "c_attn", "Wqkv"})


def read_roles(root: Any) -> tuple[Any, Any] | None:
    """``(source tree, roles)`` of the family's module tree (:func:`module_tree`), read once for the renames and the
    unread modules; None when the code could not be read."""
    from import_model.plan.behaviour import find_roles
    from import_model.plan.modeling import SourceTree

    if root is None:
        return None
    tree = SourceTree()
    return tree, find_roles(root, tree)


def unread_by_causal_lm(read: tuple[Any, Any] | None) -> re.Pattern[str] | None:
    """Checkpoint keys of the layer modules a causal LM never runs (cross-attention that needs encoder states), read
    from the family's module tree and the layer's forward (:func:`read_roles`); None when there are none."""
    from import_model.plan.behaviour import encoder_only_modules

    if read is None:
        return None
    tree, roles = read
    unread = encoder_only_modules(tree, roles)
    if roles.layer is None or not unread:
        return None
    layer = re.escape(roles.layer.path).replace(re.escape("{i}"), r"\d+")
    return re.compile(rf"{layer}\.(?:{'|'.join(map(re.escape, unread))})\.")


def _language_adapter(read: tuple[Any, Any] | None, config: dict[str, Any],
                      keys: list[str]) -> tuple[str | None, list[RenameRule], re.Pattern[str] | None]:
    """X-MOD's per-language adapters, read from the layer's code: the served language's (the config's default, else
    its first) renamed to the port's ``language_adapter`` (its own input norm too), and a pattern of the other
    languages' keys, which the weight table sets aside: (the served language, the renames, that pattern)."""
    from import_model.plan.behaviour import language_adapter

    seen = language_adapter(*read).get("adapter") if read is not None else None
    layer = read[1].layer if read is not None else None
    if seen is None or layer is None:
        return None, [], None
    table, norm = seen.value["table"], seen.value["norm"]
    found = adapter_languages(layer.path, table, keys)
    language = served_language(config.get("text_config") or config, found)
    if language is None:
        return None, [], None
    rules = [RenameRule(rf"\.(\d+)\.{re.escape(table)}\.{re.escape(language)}\.", r".\1.language_adapter.",
                        f"the {language} adapter, the one language the port serves (read from the layer's code)")]
    own_norm = norm is not None and norm != _after_mlp_norm(read)
    if own_norm:
        rules.append(RenameRule(rf"\.(\d+)\.{re.escape(norm)}\.", r".\1.language_adapter.norm.",
                                "the adapter's own input norm"))
    others = [lang for lang in found if lang != language]
    prefix = re.escape(layer.path).replace(re.escape("{i}"), r"\d+")
    pattern = re.compile(rf"{prefix}\.{re.escape(table)}\.(?:{'|'.join(map(re.escape, others))})\.") if others \
        else None
    return language, rules, pattern


def _after_mlp_norm(read: tuple[Any, Any]) -> str | None:
    """The norm the layer applies to the MLP's residual sum (post-LN), as a path in the layer."""
    from import_model.plan.behaviour import block_behaviour

    names = block_behaviour(*read).get("norm_names")
    return names.value.get("after_mlp_add") if names is not None else None


def _other_modality_prefixes(read: tuple[Any, Any] | None) -> tuple[str, ...]:
    """Key prefixes of the modules outside the layers that run only with image or audio inputs (GIT's image
    encoder): the weight table sets their tensors aside."""
    from import_model.plan.behaviour import other_modality_modules

    return tuple(f"{path}." for path in other_modality_modules(*read)) if read is not None else ()


def _head_renames(roles: Any) -> list[RenameRule]:
    """The head's linear, its bias and a transform before it, wherever the module tree puts them (BERT's
    ``cls.predictions.{transform,decoder,bias}``, RoBERTa's ``lm_head.{dense,layer_norm,decoder,bias}``)."""
    head = roles.lm_head
    if head is None or head.path == "lm_head":
        return []
    rules = [RenameRule(rf"^{re.escape(head.path)}\.", "lm_head.", "the head's linear, found in the module tree")]
    if "." in head.path:  # a head at the root (ModernBERT-decoder's decoder) has no owner to keep a bias
        owner = head.path.rsplit(".", 1)[0]
        rules.append(RenameRule(rf"^{re.escape(owner)}\.bias$", "lm_head.bias", "the head's bias beside its linear"))
    transform = roles.head_transform
    if transform is not None:
        for attr, child in transform.children.items():
            if child is head:
                continue
            part = "dense" if child.kind == "linear" else "norm" if "norm" in child.kind else None
            if part:
                rules.append(RenameRule(rf"^{re.escape(transform.path)}\.{re.escape(attr)}\.", f"head_transform.{part}.",
                                        "the head transform's dense and norm"))
    return rules


def found_renames(root: Any, read: tuple[Any, Any] | None = None) -> tuple[RenameRule, ...]:
    """Renames read from the family's HF module tree (:func:`module_tree`), tried before :data:`RENAME_RULES`: the
    final norm beside the layer list, under whatever name the family gives it (XGLM's ``layer_norm``), an attention
    module whose projections sit one module deeper (GPT-Neo's ``attn.attention``), and the decoder's own prefix."""
    read = read or read_roles(root)
    if read is None:
        return ()
    _, roles = read
    rules: list[RenameRule] = []
    norm = roles.final_norm
    if norm is not None and roles.backbone is not None and not norm.path.endswith(".norm"):
        rules.append(RenameRule(rf"^{re.escape(norm.path)}\.", "norm.", "final norm found beside the layer list"))
    embed_norm = roles.embed_norm
    if embed_norm is not None and embed_norm is not norm:
        rules.append(RenameRule(rf"^{re.escape(embed_norm.path)}\.", "embed_norm.",
                                "the embeddings' own norm (TrOCR's layernorm_embedding, BERT's embeddings.LayerNorm)"))
    rules.extend(_head_renames(roles))
    if roles.embed_projection is not None:
        rules.append(RenameRule(rf"^{re.escape(roles.embed_projection.path)}\.", "embed_projection.",
                                "the embeddings' projection to the hidden size (ELECTRA's embeddings_project)"))
    rules.extend(_sublayer_norm_renames(read))
    rules.extend(_inner_norm_renames(read))
    rules.extend(_projection_renames(read))
    if roles.embed is not None and roles.embed.path.rsplit(".", 1)[-1] not in EMBEDDING_NAMES:
        rules.append(RenameRule(rf"^{re.escape(roles.embed.path)}\.", "embed_tokens.",
                                "the token embeddings under a name of their own (CTRL's w), found in the module tree"))
    rules.extend(_side_table_renames(read))
    holder = roles.embed.path.rsplit(".", 1)[0] if roles.embed is not None and "." in roles.embed.path else ""
    if holder and roles.backbone is not None and holder != roles.backbone.path:
        rules.append(RenameRule(rf"^{re.escape(holder)}\.", "", "the embeddings' own module (BERT's bert.embeddings)"))
    if roles.attention is not None and roles.layer is not None:
        attr, attention = roles.attention
        inner = next((name for name, child in attention.children.items()
                      if _PROJECTION_NAMES & set(child.children)), None)
        if inner is not None and not _PROJECTION_NAMES & set(attention.children):
            rules.append(RenameRule(rf"\.{re.escape(attr)}\.{re.escape(inner)}\.", ".self_attn.",
                                    "attention projections one module deeper, found in the module tree"))
    rules.extend(_layer_list_renames(roles))
    backbone = roles.backbone.path if roles.backbone is not None else ""
    if backbone and f"{backbone}." not in _KNOWN_PREFIXES:  # after the norm rule, which names the whole path
        rules.append(RenameRule(rf"^{re.escape(backbone)}\.", "", "the decoder's own prefix (BioGPT's biogpt.)"))
    return tuple(rules)


#: Names of a decoder's layer list the table rules already bring to ``layers``.
_LAYER_LIST_NAMES = frozenset({"layers", "h", "layer"})


def _layer_list_renames(roles: Any) -> list[RenameRule]:
    """The layer list and the MLP under names of their own (MPT's ``transformer.blocks.{i}.ffn``), read from the
    module tree, under the port's ``layers.{i}`` and ``mlp`` (the decoder's prefix is stripped after)."""
    layer = roles.layer
    if layer is None or not layer.path.endswith(".{i}"):
        return []
    holder = layer.path[: -len(".{i}")]
    rules = []
    if holder.rsplit(".", 1)[-1] not in _LAYER_LIST_NAMES:
        prefix = holder.rsplit(".", 1)[0] + "." if "." in holder else ""
        rules.append(RenameRule(rf"^{re.escape(holder)}\.(\d+)\.", rf"{prefix}layers.\1.",
                                "the layer list under a name of its own, found in the module tree"))
    mlp = roles.mlp[0] if roles.mlp else None
    if mlp and mlp != "mlp" and {"up_proj", "down_proj"} <= set(roles.mlp[1].children):
        rules.append(RenameRule(rf"\.(\d+)\.{re.escape(mlp)}\.", r".\1.mlp.",
                                "the MLP under a name of its own, found in the module tree"))
    return rules


def _side_table_renames(read: tuple[Any, Any]) -> list[RenameRule]:
    """Tables concatenated to the token embedding and the linear after them (RoCBert's ``shape_embed``,
    ``pronunciation_embed`` and ``map_inputs_layer``), read from the embeddings' code, under the port's names."""
    from import_model.plan.behaviour import side_tables

    tree, roles = read
    found = side_tables(tree, roles)
    if not found:
        return []
    holder = roles.embed.path.rsplit(".", 1)[0]
    rules = [RenameRule(rf"^{re.escape(holder)}\.{re.escape(attr)}\.", f"side_tables.{index}.",
                        f"table {index} concatenated to the token embedding, found in its code")
             for index, (attr, _, _) in enumerate(found["tables"].value)]
    return [*rules, RenameRule(rf"^{re.escape(holder)}\.{re.escape(found['input_map'].value)}\.", "input_map.",
                               "the linear over the concatenation, found in the embeddings' code")]


def _projection_renames(read: tuple[Any, Any]) -> list[RenameRule]:
    """Projections under names of their own, read from their code (CTRL's ``Wq`` ... ``dense``, its MLP's
    ``ffn.0`` and ``ffn.2``), under the port's names."""
    from import_model.plan.behaviour import projection_behaviour, projection_home

    tree, roles = read
    rules = []
    for role, seen in projection_behaviour(tree, roles).items():
        module, owner = projection_home(roles, role)
        rules.append(RenameRule(rf"\.{re.escape(owner[0])}\.{re.escape(seen.value)}\.", f".{module}.{role}.",
                                f"{seen.evidence}, found in its code"))
    return rules


def _sublayer_norm_renames(read: tuple[Any, Any]) -> list[RenameRule]:
    """BERT-style pre-LN norms nested in the layer's sublayers (Megatron-BERT's ``attention.ln``), read from the
    layer's code, under the names of a pre-norm block."""
    from import_model.plan.behaviour import sublayer_input_norms

    names = {"pre_attention": "input_layernorm", "pre_mlp": "post_attention_layernorm"}
    return [RenameRule(rf"\.(\d+)\.{re.escape(path)}\.", rf".\1.{names[role]}.",
                       f"the norm {path} runs on the {role[4:]}'s input, found in the layer's code")
            for role, path in sublayer_input_norms(*read).items()]


def _inner_norm_renames(read: tuple[Any, Any]) -> list[RenameRule]:
    """Norms inside the sublayers (BitNet's ``attn_sub_norm`` and ``ffn_sub_norm``), read from their code, under
    the port's names."""
    from import_model.plan.behaviour import sublayer_output_norms

    tree, roles = read
    targets = {"attention": ("self_attn", "output_norm", roles.attention), "mlp": ("mlp", "inner_norm", roles.mlp)}
    rules = []
    for group, seen in sublayer_output_norms(tree, roles).items():
        module, name, role = targets[group]
        rules.append(RenameRule(rf"\.{re.escape(role[0])}\.{re.escape(seen.value)}\.", f".{module}.{name}.",
                                f"the norm {seen.value} inside the layer's {group}, found in its code"))
    return rules


def _ties_embeddings(config: dict[str, Any]) -> bool:
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    value = config.get("tie_word_embeddings", text.get("tie_word_embeddings", True))
    return bool(value)


def _drop_buffers(matcher: _Matcher) -> None:
    for key in list(matcher.free_keys):
        for pattern, reason in IGNORED:
            if re.search(pattern, key) and not any(name in matcher.graph for name in matcher.names(key)):
                matcher.mapping.dropped[key] = reason
                matcher.claim([key], [])
                break


def _match_direct(matcher: _Matcher) -> None:
    """Rename matches: a candidate name with the same shape wins; a name-only match is a mismatch."""
    for key in list(matcher.free_keys):
        names = [n for n in matcher.names(key) if n in matcher.free_weights]
        exact = next((n for n in names if matcher.graph[n] == matcher.checkpoint[key]), None)
        if exact is not None:
            matcher.mapping.renames[key] = exact
            matcher.claim([key], [exact])
        elif names and not _is_fused(key):
            matcher.mapping.mismatches.append(
                Mismatch(key, names[0], matcher.checkpoint[key], matcher.graph[names[0]]))
            matcher.claim([key], [names[0]])


def _is_fused(key: str) -> bool:
    return any(re.search(rule.fused, key) for rule in FUSED_RULES)


def _match_splits(matcher: _Matcher) -> None:
    for key in list(matcher.free_keys):
        if not _match_split(matcher, key, key) and not _is_fused(key):
            # a name the renames found in the code give it (ModernBERT-decoder's mlp.Wi, a fused gate_up)
            renamed = next((name for name in matcher.names(key)[1:] if _is_fused(name)), None)
            if renamed is not None:
                _match_split(matcher, key, renamed)


def _match_split(matcher: _Matcher, key: str, fused: str) -> bool:
    """Split checkpoint tensor ``key``, read under the fused name ``fused``, by the first rule whose parts are graph
    weights; False when none claims it."""
    for rule in FUSED_RULES:
        if re.search(rule.fused, fused):
            targets = [matcher.free_target(re.sub(rule.fused, part, fused)) for part in rule.parts]
            if any(t is None for t in targets) or len(set(targets)) != len(targets):
                continue
            names = tuple(t for t in targets if t is not None)
            shapes = [matcher.graph[t] for t in names]
            source_shape = matcher.checkpoint[key]
            if _stacks_to(shapes, source_shape, rule.layout):
                matcher.mapping.splits.append(Split(key, rule.layout, names, _ratio(shapes)))
            else:
                matcher.mapping.mismatches.append(Mismatch(key, " + ".join(names), source_shape, _stacked(shapes)))
            matcher.claim([key], names)
            return True
    return False


def _match_stacked(matcher: _Matcher) -> None:
    """A 3-D tensor of every expert's weights, cut into each expert's graph weights (expert by expert, its parts in
    order): a split of the tensor seen as ``[experts * out, in]``."""
    for key in list(matcher.free_keys):
        shape = matcher.checkpoint[key]
        if len(shape) != 3 or not all(isinstance(d, int) for d in shape):
            continue
        for rule in STACKED_RULES:
            if not re.search(rule.stacked, key):
                continue
            wanted = [re.sub(rule.stacked, part.format(j=j), key) for j in range(shape[0]) for part in rule.parts]
            targets = [matcher.free_target(name) for name in wanted]
            if any(t is None for t in targets):
                continue
            names = tuple(t for t in targets if t is not None)
            shapes = [matcher.graph[t] for t in names]
            flat = (shape[0] * shape[1], shape[2])
            if _stacks_to(shapes, flat, BLOCKS) and len({s[0] for s in shapes}) == 1:
                matcher.mapping.splits.append(Split(key, STACKED, names, (1,) * len(names)))
            else:
                matcher.mapping.mismatches.append(Mismatch(key, " + ".join(names[:2]) + " ...", shape,
                                                           _stacked(shapes)))
            matcher.claim([key], names)
            break


def _match_concats(matcher: _Matcher) -> None:
    for rule in FUSED_RULES:
        groups: dict[str, dict[int, str]] = {}
        for key in matcher.free_keys:
            for index, part in enumerate(rule.parts):
                if part in key:
                    groups.setdefault(key.replace(part, rule.fused_text, 1), {})[index] = key
        for fused_key, parts in groups.items():
            if len(parts) != len(rule.parts) or any(k not in matcher.free_keys for k in parts.values()):
                continue
            target = matcher.free_target(fused_key)
            if target is None:
                continue
            sources = tuple(parts[i] for i in range(len(rule.parts)))
            shapes = [matcher.checkpoint[k] for k in sources]
            if _stacks_to(shapes, matcher.graph[target], rule.layout):
                matcher.mapping.concats.append(Concat(target, rule.layout, sources))
            else:
                matcher.mapping.mismatches.append(Mismatch(" + ".join(sources), target, _stacked(shapes),
                                                           matcher.graph[target]))
            matcher.claim(sources, [target])


def _match_ties(matcher: _Matcher, tied: bool) -> None:
    """Fill a graph head from the embedding (tied checkpoints), or drop a stored copy the graph does not use."""
    filled_by = {graph_name: key for key, graph_name in matcher.mapping.renames.items()}
    for head, embedding in TIE_RULES:
        for weight in list(matcher.free_weights):
            if not (weight == head or weight.endswith("." + head)):
                continue
            source = filled_by.get(weight[: len(weight) - len(head)] + embedding)
            if source is None:
                continue
            if not tied:
                matcher.mapping.notes.append(f"{weight} is missing and the config does not tie embeddings, "
                                             f"so it is not filled from {source}")
            elif matcher.graph[weight] == matcher.checkpoint[source]:
                matcher.mapping.ties[weight] = source
                matcher.claim([], [weight])
        if not tied:
            continue
        for key in list(matcher.free_keys):
            if any(n == head or n.endswith("." + head) for n in matcher.names(key)) and \
                    not any(n in matcher.graph for n in matcher.names(key)):
                matcher.mapping.dropped[key] = "tied to the embedding: the graph reuses the embedding weight"
                matcher.claim([key], [])


def _stacks_to(parts: list[Shape], whole: Shape, layout: str) -> bool:
    if not parts or any(len(p) != len(whole) or p[1:] != whole[1:] for p in parts):
        return False
    if not all(isinstance(p[0], int) for p in parts) or not isinstance(whole[0], int):
        return False
    if layout == FOUR_SHARDS and (len({p[0] for p in parts}) != 1 or parts[0][0] % 4):
        return False
    if layout == PER_HEAD and (len({p[0] for p in parts[1:]}) != 1 or parts[0][0] % parts[1][0]):
        return False  # queries, then equal K and V parts (grouped-query attention has fewer K/V heads)
    return sum(p[0] for p in parts) == whole[0]


def _stacked(parts: list[Shape]) -> Shape:
    if parts and all(p and isinstance(p[0], int) for p in parts):
        return (sum(p[0] for p in parts), *parts[0][1:])
    return ()


def _ratio(shapes: list[Shape]) -> tuple[int, ...]:
    sizes = [int(s[0]) for s in shapes]
    divisor = math.gcd(*sizes) or 1
    return tuple(size // divisor for size in sizes)


# --------------------------------------------------------------------------- the adapter table


@dataclass
class AdapterTable:
    """The mapping as the dict literals written into ``weight_adapters.py`` (``*`` = a layer number)."""

    renames: dict[str, str] = field(default_factory=dict)
    splits: dict[str, tuple[str, tuple[str, ...], tuple[int, ...]]] = field(default_factory=dict)
    concats: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    ties: dict[str, str] = field(default_factory=dict)
    drops: dict[str, str] = field(default_factory=dict)
    transposes: dict[str, str] = field(default_factory=dict)


def adapter_table(mapping: WeightMapping) -> AdapterTable:
    """Collapse per-layer entries into ``*`` patterns when the layer numbers carry over unchanged."""
    table = AdapterTable()
    table.renames = _collapse({k: v for k, v in mapping.renames.items() if k != v})
    for split in mapping.splits:
        key, targets = _templated(split.source, split.targets)
        table.splits[key] = (split.layout, targets, split.ratio)
    for concat in mapping.concats:
        key, sources = _templated(concat.target, concat.sources)
        table.concats[key] = (concat.layout, sources)
    table.ties = _collapse(mapping.ties)
    for key, reason in mapping.dropped.items():
        table.drops[name_pattern(key)] = reason
    table.transposes = dict.fromkeys((name_pattern(key) for key in mapping.transposed), "stored (in, out) by Conv1D")
    return table


def _templated(key: str, values: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    numbers = _NUMBER.findall(key)
    if all(_NUMBER.findall(v) == numbers for v in values):
        return name_pattern(key), tuple(name_pattern(v) for v in values)
    return key, values


def _collapse(pairs: dict[str, str]) -> dict[str, str]:
    """``{a.0.x: b.0.y, a.1.x: b.1.y}`` -> ``{a.*.x: b.*.y}``; anything irregular stays exact."""
    templates: dict[str, set[str]] = {}
    for key, value in pairs.items():
        if _NUMBER.findall(key) == _NUMBER.findall(value):
            templates.setdefault(name_pattern(key), set()).add(name_pattern(value))
    result: dict[str, str] = {}
    for key, value in pairs.items():
        pattern = name_pattern(key)
        values = templates.get(pattern, set())
        if len(values) == 1:
            result[pattern] = next(iter(values))
        else:
            result[key] = value
    return result


BEGIN_MARKER = "# >>> import-model weight table (generated by `import-model renames --write`; keep the markers) >>>"
END_MARKER = "# <<< import-model weight table <<<"
ADAPTER_FILE = "weight_adapters.py"
ARCH_FILE = "arch.py"

#: The adapter MAX's llama3 registers; it strips every ``model.`` from a name itself, so the table need not.
LLAMA3_ADAPTER = "from max.pipelines.architectures.llama3.weight_adapters import convert_safetensor_state_dict"


@dataclass(frozen=True)
class TableShape:
    """Which tables a block holds: the template's code for an empty one is left out."""

    renames: bool = True
    splits: bool = True
    concats: bool = True
    ties: bool = True
    drops: bool = True
    transposes: bool = True


def _without_prefix_strips(table: AdapterTable) -> AdapterTable:
    """The table without renames the llama3 adapter makes anyway (``model.layers.*.x`` -> ``layers.*.x``)."""
    renames = {k: v for k, v in table.renames.items() if k.replace("model.", "") != v}
    return AdapterTable(renames, table.splits, table.concats, table.ties, table.drops, table.transposes)


def render_table_block(table: AdapterTable, adapter: str) -> str:
    """The text between (and including) the markers: the tables and the code they need, nothing more."""
    from importlib import resources

    from import_model.port.specialise import literal_assignment, specialise

    shape = TableShape(bool(table.renames), bool(table.splits), bool(table.concats), bool(table.ties),
                       bool(table.drops), bool(table.transposes))
    if not any(vars(shape).values()):
        body = "# The checkpoint's names are the graph's: the donor's adapter reads them as they are.\n"
        return f"{BEGIN_MARKER}\n{body}{END_MARKER}\n"
    sections = {
        "WEIGHT_RENAMES": ("dict[str, str]", table.renames),
        "WEIGHT_SPLITS": ("dict[str, tuple[str, tuple[str, ...], tuple[int, ...]]]", table.splits),
        "WEIGHT_CONCATS": ("dict[str, tuple[str, tuple[str, ...]]]", table.concats),
        "WEIGHT_TIES": ("dict[str, str]", table.ties),
        "WEIGHT_DROPS": ("dict[str, str]", table.drops),
        "WEIGHT_TRANSPOSES": ("dict[str, str]", table.transposes),
    }
    data = {name: literal_assignment(name, annotation, values) for name, (annotation, values) in sections.items()}
    template = resources.files("import_model.port.template").joinpath("weight_table.py").read_text()
    text = specialise(template, {"TABLE": shape}, keep={"convert_safetensor_state_dict"}, data=data)
    tree = ast.parse(text)
    last_import = max(n.end_lineno or n.lineno for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)))
    body = "".join(text.splitlines(keepends=True)[last_import:]).strip("\n")
    body = re.sub(r"\bconvert_safetensor_state_dict\b", adapter, body)
    return f"{BEGIN_MARKER}\n\n{body}\n{END_MARKER}\n"


def safetensors_adapter_name(port_dir: Path) -> str:
    """The ``weight_adapters.<name>`` that ``arch.py`` registers for safetensors."""
    import ast

    arch = port_dir / ARCH_FILE
    try:
        tree = ast.parse(read_bounded_text(arch, MAX_PORT_FILE_BYTES, "registration file"))
    except (SyntaxError, ValueError, RecursionError) as exc:
        raise UserError(f"cannot read {arch}: {exc}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Attribute) and key.attr == "safetensors" and isinstance(value, ast.Attribute) \
                        and isinstance(value.value, ast.Name) and value.value.id == "weight_adapters":
                    return value.attr
    raise UserError(f"{arch} registers no `WeightsFormat.safetensors: weight_adapters.<function>` adapter; "
                    "add one before writing the weight table")


def write_adapter_table(port_dir: Path, mapping: WeightMapping) -> Path:
    """Write (or replace) the marked table block in the port's ``weight_adapters.py``, atomically.

    Text outside the markers is kept byte for byte; a first write appends the
    block at the end, after the adapter function it wraps.
    """
    path = port_dir / ADAPTER_FILE
    if not path.exists():
        raise UserError(f"{path} does not exist; is {port_dir} a port (<output_dir>/<slug>)?")
    text = read_bounded_text(path, MAX_PORT_FILE_BYTES, "weight adapter file")
    table = adapter_table(mapping)
    if LLAMA3_ADAPTER in text:
        table = _without_prefix_strips(table)
    block = render_table_block(table, safetensors_adapter_name(port_dir))
    begin, end = text.find(BEGIN_MARKER), text.find(END_MARKER)
    if (begin < 0) != (end < 0) or text.count(BEGIN_MARKER) > 1 or text.count(END_MARKER) > 1 or end < begin:
        raise UserError(f"{path}: the import-model markers are broken (one missing, repeated or out of order); "
                        "fix or remove them by hand, then write again")
    if begin >= 0:
        line_end = text.find("\n", end)
        after = text[line_end + 1:] if line_end >= 0 else ""
        new_text = text[:begin] + block + after
    else:
        new_text = text + ("" if text.endswith("\n") else "\n") + "\n\n" + block
    try:
        compile(new_text, str(path), "exec")  # never write a file that does not parse
    except (SyntaxError, ValueError) as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) and exc.lineno else ""
        raise UserError(f"{path} would not parse with the weight table added{where}: "
                        f"{getattr(exc, 'msg', None) or exc}; fix the file by hand, then write again") from None
    atomic_write(path, new_text.encode())
    return path


# --------------------------------------------------------------------------- dry build


@dataclass
class GraphWeights:
    """What a dry build saw: the graph's weights and what the port's adapter hands it (name -> shape)."""

    expected: dict[str, Shape]
    adapted: dict[str, Shape]
    module: str
    checkpoint: Path
    architecture: str
    standins: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


class DryBuildError(UserError):
    """The port failed before its module tree received weights; ``details`` keeps MAX's traceback."""

    def __init__(self, step: str, details: str) -> None:
        lines = [ln.strip() for ln in details.strip().splitlines() if ln.strip()]
        raised = [ln for ln in lines if re.match(r"^[\w.]*(Error|Exception): ", ln)]
        first = raised[-1] if raised else lines[-1] if lines else "unknown error"
        super().__init__(f"{step}: {first[:240]}")
        self.step = step
        self.details = details

    @property
    def needs_gpu(self) -> bool:
        """The port's graph creates GPU devices even to be built (a donor MAX ships for GPUs only)."""
        return 'No supported "gpu" device' in self.details


class _Captured(BaseException):
    """Raised from the patched ``load_state_dict`` to stop the build before any compile."""


class _CompileRefused(BaseException):
    """Raised if the build reaches compilation without passing through ``load_state_dict``."""


_COMPILE_METHODS = ("compile", "compile_async", "compile_reusing_mefs", "load", "load_all")
_MISSING_ATTR = re.compile(r"object has no attribute '(\w+)'")


def dry_build(checkpoint: Path, port_dir: Path, *, max_length: int = 512, in_child: bool = False) -> GraphWeights:
    """Build the port's pipeline on the CPU up to its first ``load_state_dict`` and read both sides.

    The checkpoint is shown to MAX through a temporary folder of links whose
    ``config.json`` names the port's architecture, so a port can be checked
    against a checkpoint of another class. Config attributes the port's code
    reads but the checkpoint lacks are filled from :data:`CONFIG_STANDINS`
    (and reported) so the module tree can still be built.
    """
    start = time.perf_counter()
    config = load_config(LocalSource(checkpoint))
    archs = _register_port(port_dir)
    if not in_child and any("float32" not in arch.supported_encodings for arch in archs):
        return _dry_build_in_child(checkpoint, port_dir, max_length)
    limit = context_length(config)
    max_length = min(max_length, limit) if limit else max_length  # MAX refuses a length past the position table
    names = [arch.name for arch in archs]
    declared = config.get("architectures") or [None]
    architecture = declared[0] if declared[0] in names else names[0]
    standins: dict[str, str] = {}
    work = Path(tempfile.mkdtemp(prefix="import-model-dry-"))
    try:
        with _float32_allowed(archs):
            record = _build_with_standins(checkpoint, work, config, architecture, standins, max_length)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return GraphWeights(expected=record["expected"], adapted=record["adapted"], module=record["module"],
                        checkpoint=checkpoint, architecture=architecture, standins=standins,
                        seconds=round(time.perf_counter() - start, 2))


def _build_with_standins(checkpoint: Path, work: Path, config: dict[str, Any], architecture: str,
                         standins: dict[str, str], max_length: int) -> dict[str, Any]:
    """Build once; on a missing config attribute, retry with a stand-in key (recorded in ``standins``)."""
    while True:
        view = _view(checkpoint, work / f"view{len(standins)}", config, architecture)
        try:
            with _config_standins(config, standins):
                return _build_once(view, max_length)
        except DryBuildError as exc:
            attr = _standin_for(exc.details, config, standins)
            if attr is None or len(standins) >= MAX_STANDINS:
                raise
            standins[attr] = next(k for k in CONFIG_STANDINS[attr] if _standin_value(config, k) is not None)


def checkpoint_for_dry_build(source: Any, config: dict[str, Any], checkpoint: Any,
                             progress: Any = None) -> tuple[Path, bool]:
    """``(folder, is_twin)``: the checkpoint itself when it is local and small, else its tiny twin.

    The twin is cached where ``import-model verify`` keeps it, so both commands build on the same one.
    """
    if source.kind == "local" and checkpoint is not None and checkpoint.weight_format == "safetensors" \
            and checkpoint.total_bytes <= DRY_BUILD_MAX_BYTES:
        return Path(source.display).resolve(), False
    from import_model.verify.twin import cached_twin

    return cached_twin(config, progress, f"making a tiny twin of {source.display} to build the graph on"), True


def _standin_for(details: str, config: dict[str, Any], standins: dict[str, str]) -> str | None:
    found = _MISSING_ATTR.findall(details)
    if not found:
        return None
    attr = found[-1]
    if attr in standins or attr not in CONFIG_STANDINS:
        return None
    return attr if any(_standin_value(config, k) is not None for k in CONFIG_STANDINS[attr]) else None


def _standin_value(config: dict[str, Any], source: str) -> Any:
    """A config.json value by key, ``a.b`` (nested), ``a/b`` (a quotient of two keys) or ``period:layer_types``
    (layers per full-attention layer); None when absent."""
    if source.startswith("period:"):
        kinds = config.get(source.split(":", 1)[1])
        full = [i for i, kind in enumerate(kinds or []) if "full" in str(kind)]
        return full[0] + 1 if full else None
    if "/" in source:
        numerator, denominator = (_standin_value(config, part) for part in source.split("/", 1))
        ok = isinstance(numerator, int) and isinstance(denominator, int) and denominator
        return numerator // denominator if ok else None
    value: Any = config
    for part in source.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


@contextlib.contextmanager
def _config_standins(config: dict[str, Any], standins: dict[str, str]) -> Iterator[None]:
    """Give the HF config objects MAX loads the stand-in attributes (transformers may fold a key written into
    config.json elsewhere, as it folds ``rope_theta`` into ``rope_parameters``)."""
    from transformers import AutoConfig

    values = {attr: _standin_value(config, source) for attr, source in standins.items()}
    original = AutoConfig.__dict__["from_pretrained"]

    def with_standins(cls: Any, *args: Any, **kwargs: Any) -> Any:
        loaded = original.__func__(cls, *args, **kwargs)
        for attr, value in values.items():
            if getattr(loaded, attr, None) is None:
                setattr(loaded, attr, value)
        return loaded

    with patched([(AutoConfig, "from_pretrained", classmethod(with_standins))]):
        yield


def _view(checkpoint: Path, target: Path, config: dict[str, Any], architecture: str) -> Path:
    target.mkdir(parents=True)
    for path in checkpoint.iterdir():
        if path.name != "config.json":
            (target / path.name).symlink_to(path.resolve())
    view_config = dict(config, architectures=[architecture])
    (target / "config.json").write_text(json.dumps(view_config, indent=2))
    return target


def _register_port(port_dir: Path) -> list[Any]:
    """Import the port under a private name (so ports sharing a slug never collide) and register it with MAX."""
    init = port_dir / "__init__.py"
    if not init.is_file():
        raise UserError(f"{port_dir} is not a port: it has no __init__.py (pass the <output_dir>/<slug> folder)")
    stamp = "|".join(f"{p.name}:{p.stat().st_mtime_ns}:{p.stat().st_size}" for p in sorted(port_dir.glob("*.py")))
    digest = hashlib.sha256(f"{port_dir.resolve()}|{stamp}".encode()).hexdigest()[:12]
    alias = f"_import_model_port_{port_dir.name}_{digest}"
    try:
        module = sys.modules.get(alias) or _import_as(alias, init, port_dir)
        from max.pipelines import PIPELINE_REGISTRY

        archs = list(getattr(module, "ARCHITECTURES", None) or [])
        if not archs:
            raise DryBuildError("registering the port", f"{port_dir.name} exposes no ARCHITECTURES list")
        with _quiet_max():
            for arch in archs:
                PIPELINE_REGISTRY.register(arch, allow_override=True)
    except DryBuildError:
        raise
    except Exception as exc:  # noqa: BLE001 - the port's own code may raise anything
        raise DryBuildError("importing the port", "".join(traceback.format_exception(exc))) from None
    return archs


def _import_as(alias: str, init: Path, port_dir: Path) -> Any:
    spec = importlib.util.spec_from_file_location(alias, init, submodule_search_locations=[str(port_dir)])
    if spec is None or spec.loader is None:
        raise DryBuildError("importing the port", f"cannot load {init}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        for name in [n for n in sys.modules if n == alias or n.startswith(alias + ".")]:
            del sys.modules[name]
        raise
    return module


def _dry_build_in_child(checkpoint: Path, port_dir: Path, max_length: int) -> GraphWeights:
    """The dry build of a port registered without float32, in a child process.

    Such a donor was only ever built for GPUs in bfloat16; asked for float32 on
    the CPU, MAX can crash outright (a segfault), which must not take this
    process with it.
    """
    import subprocess

    from import_model.procs import child_env

    code = ("import json, sys; from pathlib import Path\n"
            "from import_model.port.renames import DryBuildError, dry_build\n"
            "try:\n    g = dry_build(Path(sys.argv[1]), Path(sys.argv[2]), max_length=int(sys.argv[3]), in_child=True)\n"
            "except DryBuildError as exc:\n    sys.exit(exc.details)\n"
            "print(json.dumps({'expected': g.expected, 'adapted': g.adapted, 'module': g.module, "
            "'architecture': g.architecture, 'standins': g.standins, 'seconds': g.seconds}))")
    result = subprocess.run([sys.executable, "-c", code, str(checkpoint), str(port_dir), str(max_length)],
                            capture_output=True, text=True, env=child_env(), timeout=900, check=False)
    if result.returncode < 0:
        raise DryBuildError("building the module tree", f"MAX crashed (signal {-result.returncode}) building this "
                            "port on the CPU in float32; its registration lists no float32, so check it on a GPU")
    if result.returncode != 0:
        raise DryBuildError("building the module tree", result.stderr.strip()[-6000:])
    record = json.loads(result.stdout.strip().splitlines()[-1])

    def shapes(table: dict[str, list[Any]]) -> dict[str, Shape]:
        return {name: tuple(shape) for name, shape in table.items()}

    return GraphWeights(expected=shapes(record["expected"]), adapted=shapes(record["adapted"]),
                        module=record["module"], checkpoint=checkpoint, architecture=record["architecture"],
                        standins=record["standins"], seconds=record["seconds"])


@contextlib.contextmanager
def _float32_allowed(archs: list[Any]) -> Iterator[None]:
    """Let the dry build ask for float32 even where the port's registration lists only bfloat16.

    Nothing is compiled or loaded, only names and shapes are read, and MAX's CPU
    takes no bfloat16; the registration is put back afterwards.
    """
    with patched([(arch, "supported_encodings", set(arch.supported_encodings) | {"float32"}) for arch in archs]):
        yield


def _build_once(view: Path, max_length: int) -> dict[str, Any]:
    from max.pipelines import AutoModel

    record: dict[str, Any] = {}
    with _capturing(record), _quiet_max():
        try:
            AutoModel(str(view), devices="cpu", quantization_encoding="float32", max_length=max_length,
                      max_batch_size=1)
        except _Captured:
            return record
        except _CompileRefused:
            raise DryBuildError("building the module tree", "the pipeline reached graph compilation without calling "
                                "max.nn Module.load_state_dict, so its weight names cannot be read") from None
        except Exception as exc:  # noqa: BLE001 - MAX and the port raise many kinds
            raise DryBuildError("building the module tree", "".join(traceback.format_exception(exc))) from None
    raise DryBuildError("building the module tree", "the pipeline finished without loading weights")


#: The one helper graph every text pipeline builds before the model: log-probabilities (2.6 s of a 3 s dry
#: build, all of it graph building and a cached compile). A dry build never executes it, so it is not built.
_SKIPPED_HELPER_GRAPHS = (("max.pipelines.lib.log_probabilities", "log_probabilities_ragged_graph"),)
_SKIPPED = object()  # stands for a helper graph that was not built


@contextlib.contextmanager
def _capturing(record: dict[str, Any]) -> Iterator[None]:
    """Patch ``Module.load_state_dict`` to record and stop, and the model-compile entry points to refuse.

    A weightless ``InferenceSession.load`` (a helper graph) still compiles, except for the skipped
    helpers, which load as ``None``; a load that brings weights is the model and is refused.
    """
    from max.engine import InferenceSession
    from max.nn.layer.layer import Module

    patches: list[tuple[Any, str, Any]] = []

    def load_state_dict(module: Any, state_dict: Any, **_kwargs: Any) -> None:
        record["expected"] = {name: _shape(w.shape) for name, w in module.raw_state_dict().items()}
        record["adapted"] = {name: _shape(getattr(v, "shape", ())) for name, v in state_dict.items()}
        record["module"] = type(module).__name__
        raise _Captured

    patches.append((Module, "load_state_dict", load_state_dict))
    patches += one_device_collective_patches(signal_buffers=False)  # nothing executes before the weights load
    helper = [0]  # > 0 while a weightless helper graph loads (its own compile calls pass)
    for name in _COMPILE_METHODS:
        if name in InferenceSession.__dict__:
            patches.append((InferenceSession, name, _guarded(InferenceSession.__dict__[name], name, helper)))
    for module_name, attr in _SKIPPED_HELPER_GRAPHS:
        module = sys.modules.get(module_name) or importlib.import_module(module_name)
        if hasattr(module, attr):
            patches.append((module, attr, lambda *_a, **_k: _SKIPPED))
    with patched(patches):
        yield


def _guarded(method: Any, name: str, helper: list[int]) -> Any:
    def guarded(session: Any, *args: Any, **kwargs: Any) -> Any:
        if helper[0]:
            return method(session, *args, **kwargs)
        if name != "load" or kwargs.get("weights_registry"):
            raise _CompileRefused
        if args and args[0] is _SKIPPED:
            return None
        helper[0] += 1
        try:
            return method(session, *args, **kwargs)
        finally:
            helper[0] -= 1
    return guarded


@contextlib.contextmanager
def _quiet_max() -> Iterator[None]:
    """MAX logs an override warning per registration and pipeline set-up chatter; keep stderr for our lines."""
    logger = logging.getLogger("max.pipelines")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _shape(shape: Any) -> Shape:
    dims = []
    for dim in shape:
        try:
            dims.append(int(dim))
        except (TypeError, ValueError):
            dims.append(str(dim))
    return tuple(dims)


def pending_delta_keys(names: list[str], open_rules: list[str],
                       table: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Names an open delta row accounts for, by rule (the first open rule whose pattern matches).

    ``table`` is :data:`PENDING_DELTA_KEYS` (checkpoint keys the delta will consume) by default, or
    :data:`PENDING_GRAPH_WEIGHTS` (donor graph weights the delta will remove).
    """
    patterns = PENDING_DELTA_KEYS if table is None else table
    pending: dict[str, list[str]] = {}
    for name in names:
        rule = next((r for r in open_rules if r in patterns and re.search(patterns[r], name)), None)
        if rule is None and table is None and UNEXPLAINED in open_rules and not explained_key(key_pattern(name)):
            rule = UNEXPLAINED  # the plan's row lists these keys: they match no trait's pattern
        if rule:
            pending.setdefault(rule, []).append(name)
    return pending


def set_aside_pending(mapping: WeightMapping, open_rules: list[str]) -> dict[str, list[str]]:
    """Drop orphans an open delta row will consume (named in the table), so a partial port still loads."""
    pending = pending_delta_keys(mapping.orphans, open_rules)
    for rule, keys in pending.items():
        for key in keys:
            mapping.dropped[key] = f"{SET_ASIDE} {rule}) is implemented"
    mapping.orphans = [k for k in mapping.orphans if k not in mapping.dropped]
    return pending


#: The delta row of a partial port whose graph weights no checkpoint tensor fills (stood in) or whose checkpoint
#: tensors no graph weight takes (set aside): the names or layouts the port does not read yet.
UNFILLED = "unfilled_weights"


def stand_in_gaps(mapping: WeightMapping) -> dict[str, str]:
    """Close what name matching left open, so a partial port still loads and verify can run.

    Orphans and mismatched checkpoint tensors are set aside (dropped, marked for :data:`UNFILLED`); the graph
    weights nothing fills are returned as stand-ins (graph name pattern -> why) for the port's model to fill.
    """
    stand_ins: dict[str, str] = {}
    for key in mapping.orphans:
        mapping.dropped[key] = f"{SET_ASIDE} {UNFILLED}) is implemented: no graph weight takes it"
    for miss in mapping.mismatches:
        for key in miss.checkpoint.split(" + "):
            mapping.dropped[key] = (f"{SET_ASIDE} {UNFILLED}) is implemented: shape {shape_text(miss.checkpoint_shape)}"
                                    f", the graph wants {shape_text(miss.graph_shape)}")
        for name in miss.graph.split(" + "):
            stand_ins[name_pattern(name)] = f"{name_pattern(miss.checkpoint)} has another shape"
    for name in mapping.missing:
        stand_ins.setdefault(name_pattern(name), "no checkpoint tensor fills it")
    mapping.orphans, mapping.mismatches, mapping.missing = [], [], []
    return stand_ins


@dataclass
class DerivedTable:
    """A port's weight table derived from a dry build, before it is written."""

    mapping: WeightMapping
    pending: dict[str, list[str]]
    dry: GraphWeights
    built_on: Path
    on_twin: bool
    tensors: dict[str, Any]

    def set_aside_text(self) -> str:
        """``N key(s) set aside for delta R; ...`` ('' when nothing was set aside)."""
        return "; ".join(f"{len(keys)} key(s) set aside for delta {rule}" for rule, keys in self.pending.items())


def derive_table(source: Any, config: dict[str, Any], checkpoint: Any, port_dir: Path, open_rules: list[str],
                 progress: Any = None) -> DerivedTable:
    """Dry-build the port (on the checkpoint or its twin), match names, set aside keys of open delta rows.

    Raises :class:`DryBuildError` when the port does not build.
    """
    from import_model.source import load_checkpoint, open_source

    folder, on_twin = checkpoint_for_dry_build(source, config, checkpoint, progress)
    if progress:
        progress("dry-building the port to read its weight names (no compile)")
    dry = dry_build(folder, port_dir)
    tensors = load_checkpoint(open_source(str(folder))).tensors
    mapping = derive_mapping({k: t.shape for k, t in tensors.items()}, dry.expected, config)
    pending = set_aside_pending(mapping, open_rules)
    return DerivedTable(mapping, pending, dry, folder, on_twin, tensors)
