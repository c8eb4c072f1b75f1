"""Find the walls between a Hugging Face checkpoint and a MAX custom architecture.

A *wall* is something about the model that stops a port (``block``), makes it
need more than a plain decoder donor (``warn``), or is a delta worth knowing
before reading code (``info``). The knowledge lives in :data:`RULES`, one row
per wall: a detector over normalised :class:`Facts` that returns the evidence
it saw (or ``None``), a reason template that quotes that evidence, and what to
read next. :func:`scan_walls` is the only code that walks the table.

Some walls are only walls when MAX has nothing to build on: token mixers other
than softmax attention (Mamba, Mamba-2, the gated delta rule, short
convolutions, ...), multi-latent attention, routed experts. Their rules also
name the *trait* they found, and the installed MAX is asked (from its source,
never imported: :mod:`import_model.recon.max_blocks`) whether it ships a public
block for it. With a block the finding is a warning that names the block, the
MAX architecture using it (the donor) and whether its kernels run on the CPU;
without one (a trait MAX has no block for, or a MAX install lacking the file)
it is a blocker.

Everything here reads strangers' files: any config field may hold any JSON
type, so detectors only look at values through the type-checking helpers and
never raise.

Remote code (``auto_map``) is a **block** when the model type is unknown to the
installed transformers: the only HF reference is the repo's own Python, which
needs ``trust_remote_code``, and we never run a stranger's code unless the
user passes an explicit flag after reading it. When transformers has the model
type natively, the in-library class can serve as the reference, so it is only
a **warn** (the repo's code may still differ from it).
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import cache

from import_model.recon.max_blocks import find_block
from import_model.recon.transformers_files import known_model_type, module_name, transformers_models_dir
from import_model.source.checkpoint import Checkpoint
from import_model.source.safetensors_header import DTYPE_BYTES

BLOCK, WARN, INFO = "block", "warn", "info"
#: Process exit status for the worst level found; no finding at all exits 0.
EXIT_CODES = {BLOCK: 2, WARN: 1, INFO: 0}
_SEVERITY = {BLOCK: 0, WARN: 1, INFO: 2}

#: Nested config objects that describe (part of) the language model itself.
SUBCONFIG_KEYS = ("text_config", "llm_config", "language_config", "thinker_config", "attn_config", "ffn_config")
#: Caps that keep a hostile config from making the scan slow.
MAX_SECTIONS = 16
MAX_LIST_ITEMS = 4096
MAX_KEYS = 4096
#: Weights above this do not fit one 80 GB GPU with room left for KV cache and activations.
ONE_GPU_WEIGHT_BYTES = 72 * 1024**3


@dataclass(frozen=True)
class Finding:
    """One wall: how bad, a stable id, the evidence, and what to read next."""

    level: str
    code: str
    reason: str
    read_next: str
    #: For a rule that asks MAX (see :class:`Rule`): the trait found, and MAX's block for it when there is one
    #: (dotted class name, the architecture using it, whether its kernels run on the CPU: yes, no, not stated).
    trait: str = ""
    block: str = ""
    donor: str = ""
    cpu: str = ""


@dataclass(frozen=True)
class Facts:
    """The hostile inputs, type-checked once so detectors can stay short."""

    config: dict
    sections: tuple[tuple[str, dict], ...]
    model_type: str
    model_types: frozenset[str]
    architectures: tuple[str, ...]
    checkpoint: Checkpoint | None
    files: tuple[str, ...]

    def values(self, *keys: str) -> Iterator[tuple[str, object]]:
        """``(dotted path, value)`` for each of ``keys`` in every config section."""
        for prefix, section in self.sections:
            for key in keys:
                if key in section:
                    yield prefix + key, section[key]

    def key_paths(self) -> Iterator[tuple[str, str]]:
        """``(dotted path, key)`` for every string key of every section, capped."""
        for prefix, section in self.sections:
            for count, key in enumerate(section):
                if count >= MAX_KEYS:
                    break
                if isinstance(key, str):
                    yield prefix + key, key


Detector = Callable[[Facts], "str | None"]
TraitOf = Callable[[Facts], str]


@dataclass(frozen=True)
class Rule:
    """A row of the wall table; ``reason`` takes ``{evidence}``, ``read_next`` takes ``{modeling}``.

    With ``trait`` set, the rule asks the installed MAX: ``trait`` names what the facts show (a row of
    :data:`import_model.recon.max_blocks.MAX_BLOCKS`, or a name no row has). The finding has ``level`` when MAX
    ships a block for it and ``without_block`` when not, and its reason goes on with the block or with ``missing``
    (which takes ``{mixer}``, the trait in words).
    """

    code: str
    level: str
    detect: Detector
    reason: str
    read_next: str
    trait: TraitOf | None = None
    without_block: str = BLOCK
    missing: str = ""


# --------------------------------------------------------------------------- value helpers


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # a JSON integer too long for a float
        return None
    return number if math.isfinite(number) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _quote(value: object, limit: int = 60) -> str:
    """A one-line rendering of a JSON value for a reason; containers are summarised."""
    if isinstance(value, str):
        return repr(value if len(value) <= limit else value[:limit] + "...")
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and abs(value) >= 10**18:
        return "<large integer>"  # repr of a huge int can even raise (int max str digits)
    if isinstance(value, (int, float)):
        return repr(value)[:limit]
    if isinstance(value, (list, tuple)):
        return f"<list of {len(value)}>"
    if isinstance(value, dict):
        return f"<object of {len(value)} keys>"
    return f"<{type(value).__name__}>"


def _strings(value: object) -> list[str]:
    """The string items of a list (capped), or the string itself."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [item for item in value[:MAX_LIST_ITEMS] if isinstance(item, str)]
    return []


def _first(items: Iterator[str | None]) -> str | None:
    return next((item for item in items if item), None)


# --------------------------------------------------------------------------- fact building


def build_facts(config: object, checkpoint: object, files: object) -> Facts:
    """Normalise whatever we were handed into :class:`Facts`."""
    root = config if isinstance(config, dict) else {}
    sections = tuple(_sections(root))
    model_types = frozenset(m.lower() for _, value in _iter_values(sections, "model_type") if (m := _text(value)))
    model_type = _text(root.get("model_type")) or ""
    architectures = tuple(a[:120] for a in _strings(root.get("architectures")) if a)
    file_list = tuple(f for f in (files if isinstance(files, (list, tuple)) else [])[:100_000] if isinstance(f, str))
    return Facts(
        config=root,
        sections=sections,
        model_type=model_type.lower()[:80],
        model_types=model_types,
        architectures=architectures,
        checkpoint=checkpoint if isinstance(checkpoint, Checkpoint) else None,
        files=file_list,
    )


def _sections(root: dict) -> Iterator[tuple[str, dict]]:
    """The config and its language-model sub-configs, breadth first and capped."""
    queue: list[tuple[str, dict]] = [("", root)]
    seen: set[int] = set()
    while queue and len(seen) < MAX_SECTIONS:
        prefix, section = queue.pop(0)
        if id(section) in seen:
            continue
        seen.add(id(section))
        yield prefix, section
        for key in SUBCONFIG_KEYS:
            child = section.get(key)
            if isinstance(child, dict):
                queue.append((f"{prefix}{key}.", child))


def _iter_values(sections: tuple[tuple[str, dict], ...], key: str) -> Iterator[tuple[str, object]]:
    for prefix, section in sections:
        if key in section:
            yield prefix + key, section[key]


def _modeling_file(facts: Facts) -> str:
    """Where the model's forward pass is written: the repo's code first, then transformers'."""
    module = _auto_map_module(facts.config.get("auto_map"))
    if module:
        return f"the repo's {module}.py"
    repo_code = [f for f in facts.files if f.rsplit("/", 1)[-1].startswith("modeling_") and f.endswith(".py")]
    if repo_code:
        return f"the repo's {repo_code[0][:80]}"
    name = facts.model_type.replace("-", "_")
    if re.fullmatch(r"[a-z0-9_]{1,60}", name):
        return f"transformers/models/{name}/modeling_{name}.py"
    return "the model's HF modeling code"


def _auto_map_module(auto_map: object) -> str | None:
    if not isinstance(auto_map, dict):
        return None
    keys = [k for k in list(auto_map)[:64] if isinstance(k, str)]
    keys.sort(key=lambda k: (k != "AutoModelForCausalLM", not k.startswith("AutoModel")))
    for entry in (auto_map[k] for k in keys):
        for ref in _strings(entry):
            module = ref.split("--")[-1].rsplit(".", 1)[0]
            if re.fullmatch(r"[A-Za-z0-9_.]{1,80}", module) and "." in ref:
                return module.replace(".", "/")
    return None


# --------------------------------------------------------------------------- config detectors

ALIBI_FLAGS = ("alibi", "use_alibi", "alibi_bias")
POSITION_KIND_KEYS = ("position_embedding_type", "pos_emb", "position_encoding_type", "positional_encoding")


def _alibi(facts: Facts) -> str | None:
    if "bloom" in facts.model_types:
        return "model_type 'bloom', which adds ALiBi in every layer"
    for path, value in facts.values(*ALIBI_FLAGS):
        if value is True:
            return f"{path}: true"
    for path, value in facts.values(*POSITION_KIND_KEYS):
        if isinstance(value, str) and value.lower() == "alibi":
            return f"{path}: 'alibi'"
    if "mpt" in facts.model_types and not any(v is False for _, v in facts.values("alibi")):
        return "model_type 'mpt' without attn_config.alibi: false, and ALiBi is MPT's default"
    hidden = _number(facts.config.get("hidden_size"))
    if "baichuan" in facts.model_types and hidden is not None and hidden >= 5120:
        return f"model_type 'baichuan' with hidden_size {int(hidden)}, the size of the 13B models that use ALiBi"
    return None


#: Config keys that size a table of learned biases added to the attention scores by bucketed relative position
#: (CPM-Ant's position_bias_num_buckets; T5-style relative_attention_num_buckets).
RELATIVE_BIAS_KEYS = ("position_bias_num_buckets", "relative_attention_num_buckets")


def _relative_bias(facts: Facts) -> str | None:
    """A learned per-head bias on the attention scores, looked up by bucketed relative position."""
    for path, value in facts.values(*RELATIVE_BIAS_KEYS):
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return f"{path}: {value}"
    return None


def _hashed_attention(facts: Facts) -> str | None:
    """Reformer's attention kinds: LSH buckets and chunked local attention, neither a mask over one sequence."""
    for path, value in facts.values("attn_layers"):
        kinds = sorted({v for v in value if v in ("lsh", "local")}) if isinstance(value, list) else []
        if kinds:
            return f"{path}: {', '.join(kinds)}"
    return None


def _stacks_in_sub_configs(facts: Facts) -> str | None:
    """Several transformer stacks, each sized in its own sub-config, and no width of the model's own (BLT's
    byte encoder, global transformer over patches and byte decoder)."""
    config = facts.config
    stacks = sorted(key for key, value in config.items() if isinstance(value, dict)
                    and isinstance(value.get("num_hidden_layers", value.get("n_layers")), int)
                    and not re.search(r"text|vision|audio|speech", key))  # a composite's towers: its own rule
    if len(stacks) >= 2 and not any(isinstance(config.get(k), int) for k in ("hidden_size", "d_model", "n_embd")):
        return f"{', '.join(stacks)}; no hidden_size of its own"
    return None


def _draft_model(facts: Facts) -> str | None:
    """A speculative-decoding assistant (Gemma 4's): it projects the target model's hidden states, sized by
    ``backbone_hidden_size``, and reads its KV; token ids alone do not run it."""
    for path, value in facts.values("backbone_hidden_size"):
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return f"{path}: {value}"
    return None


def _codebooks(facts: Facts) -> str | None:
    """Several token streams per position (MusicGen's codebooks): each embedded, summed, and predicted by its own
    head."""
    for path, value in facts.values("num_codebooks"):
        if isinstance(value, int) and not isinstance(value, bool) and value > 1:
            return f"{path}: {value}"
    return None


LAYER_LIST_KEYS = ("layer_types", "layers_block_type", "block_types", "layers_type", "hybrid_override_pattern")
RECURRENT_WORDS = ("mamba", "ssm", "recurrent", "rwkv", "conv", "lstm", "rnn", "retention")
LINEAR_ATTENTION_WORDS = ("linear_attention", "linear", "lightning", "delta")
#: Families whose non-attention layers are not spelled out in a layer list.
RECURRENT_MODEL_TYPES = frozenset({
    "mamba", "mamba2", "falcon_mamba", "rwkv", "rwkv5", "rwkv6", "rwkv7", "xlstm", "recurrent_gemma",
    "jamba", "zamba", "zamba2", "falcon_h1", "bamba", "nemotron_h", "plamo2", "hymba",
})
RECURRENT_KEY_PREFIXES = ("ssm_", "mamba_", "lru_", "rwkv_")
RECURRENT_KEYS = ("time_step_rank", "attn_layer_period", "rescale_every", "d_state", "state_size")
LINEAR_ATTENTION_MODEL_TYPES = frozenset({
    "qwen3_next", "minimax", "qwen3_5", "qwen3_5_moe", "qwen3_5_text", "qwen3_5_moe_text", "olmo_hybrid", "kimi_linear",
})
LINEAR_ATTENTION_KEYS = ("linear_num_key_heads", "linear_num_value_heads", "linear_key_head_dim", "attn_type_list")


def _layer_lists(facts: Facts) -> Iterator[tuple[str, list[str]]]:
    for path, value in facts.values(*LAYER_LIST_KEYS):
        if isinstance(value, str) and path.endswith("hybrid_override_pattern"):
            yield path, ["mamba" if ch == "M" else "attention" if ch == "*" else "mlp" for ch in value[:MAX_LIST_ITEMS]]
        elif isinstance(value, (list, tuple)):
            yield path, [item.lower() for item in _strings(value)]


def _kinds_matching(kinds: list[str], words: tuple[str, ...]) -> list[str]:
    return sorted({kind for kind in kinds if any(word in kind for word in words)})


def _layer_list_evidence(facts: Facts, words: tuple[str, ...], exclude: tuple[str, ...] = ()) -> str | None:
    for path, kinds in _layer_lists(facts):
        hits = [k for k in _kinds_matching(kinds, words) if not any(x in k for x in exclude)]
        if hits:
            count = sum(1 for kind in kinds if kind in hits)
            return f"{path} has {', '.join(repr(h[:30]) for h in hits[:3])} in {count} of {len(kinds)} entries"
    return None


def _has_layer_list(facts: Facts) -> bool:
    return any(True for _ in _layer_lists(facts))


def _recurrent(facts: Facts) -> str | None:
    listed = _layer_list_evidence(facts, RECURRENT_WORDS, exclude=LINEAR_ATTENTION_WORDS)
    if listed or _has_layer_list(facts):
        return listed  # an explicit layer list says which layers exist; trust it over leftover keys
    kinds = sorted(facts.model_types & RECURRENT_MODEL_TYPES)
    if kinds:
        return f"model_type {kinds[0]!r}"
    for path, key in facts.key_paths():
        if key.startswith(RECURRENT_KEY_PREFIXES) or key in RECURRENT_KEYS:
            return f"state-space key {path!r}"
    return None


def _linear_attention(facts: Facts) -> str | None:
    listed = _layer_list_evidence(facts, LINEAR_ATTENTION_WORDS)
    if listed or _has_layer_list(facts):
        return listed
    kinds = sorted(facts.model_types & LINEAR_ATTENTION_MODEL_TYPES)
    if kinds:
        return f"model_type {kinds[0]!r}"
    return _first(f"key {path!r}" for path, _ in facts.values(*LINEAR_ATTENTION_KEYS))


#: The token mixer of each recurrent, state-space or linear-attention family: a trait of
#: ``recon.max_blocks.MAX_BLOCKS`` where MAX ships a block for it, else a name in MIXER_WORDS only.
MIXER_OF_MODEL_TYPE = {
    # Mamba-1 selective scan
    "mamba": "mamba", "falcon_mamba": "mamba", "jamba": "mamba", "zamba": "mamba", "hymba": "mamba",
    # Mamba-2 (SSD) scan
    "mamba2": "mamba2", "bamba": "mamba2", "falcon_h1": "mamba2", "granitemoehybrid": "mamba2",
    "nemotron_h": "mamba2", "zamba2": "mamba2", "plamo2": "mamba2",
    # short gated convolution
    "lfm2": "short-conv", "lfm2_moe": "short-conv",
    # gated delta rule, Kimi delta attention
    "qwen3_next": "gated-delta", "qwen3_5": "gated-delta", "qwen3_5_text": "gated-delta",
    "qwen3_5_moe": "gated-delta", "qwen3_5_moe_text": "gated-delta", "olmo_hybrid": "gated-delta",
    "kimi_linear": "kda",
    # mixers MAX ships no block for
    "rwkv": "rwkv", "rwkv5": "rwkv", "rwkv6": "rwkv", "rwkv7": "rwkv", "xlstm": "xlstm",
    "recurrent_gemma": "rg-lru", "minimax": "lightning",
}
#: Each mixer in the words of a reason.
MIXER_WORDS = {
    "mamba": "the Mamba selective scan", "mamba2": "the Mamba-2 (SSD) scan", "short-conv": "short gated convolutions",
    "gated-delta": "the gated delta rule", "kda": "Kimi delta attention", "rwkv": "RWKV time mixing",
    "xlstm": "xLSTM cells", "rg-lru": "the RG-LRU recurrence", "lightning": "lightning attention",
    "retention": "retention", "ssm": "a state-space mixer whose kind the config does not tell",
    "conv": "a convolutional mixer whose kind the config does not tell",
    "recurrent": "a recurrent mixer whose kind the config does not tell",
    "linear": "a linear attention whose kind the config does not tell",
    "mla": "multi-head latent attention", "moe": "routed experts",
}
#: Config keys only Mamba-2 style mixers have (head count, groups, chunked scan), and Mamba-1 style ones.
MAMBA2_KEYS = ("n_groups", "mamba_n_groups", "mamba_ngroups", "mamba_n_heads", "mamba_num_heads", "mamba_head_dim",
               "mamba_headdim", "mamba_d_head", "mamba_chunk_size", "mamba_d_ssm")
MAMBA1_KEYS = ("time_step_rank", "mamba_dt_rank", "dt_rank")
#: Layer-list words -> the mixer they name when the model type does not say.
RECURRENT_LAYER_MIXERS = (("rwkv", "rwkv"), ("lstm", "xlstm"), ("retention", "retention"), ("conv", "conv"))
LINEAR_LAYER_MIXERS = (("kda", "kda"), ("kimi", "kda"), ("delta", "gated-delta"), ("lightning", "lightning"))


def _mixer_by_model_type(facts: Facts, mixers: frozenset[str]) -> str | None:
    ordered = [facts.model_type, *sorted(facts.model_types)]
    return next((m for t in ordered if (m := MIXER_OF_MODEL_TYPE.get(t)) in mixers), None)


def _layer_kinds(facts: Facts, words: tuple[str, ...], exclude: tuple[str, ...] = ()) -> list[str]:
    return [k for _, kinds in _layer_lists(facts) for k in _kinds_matching(kinds, words)
            if not any(x in k for x in exclude)]


def _mamba_version(facts: Facts) -> str:
    """``mamba`` or ``mamba2`` from the keys only one of them has; ``ssm`` when nothing tells."""
    for _, value in facts.values("ssm_cfg"):
        if isinstance(value, dict):  # mamba_ssm's own config: Mamba-1 unless it names the Mamba2 layer
            return "mamba2" if (_text(value.get("layer")) or "").lower() == "mamba2" else "mamba"
    if any(True for _ in facts.values(*MAMBA2_KEYS)):
        return "mamba2"
    if any(True for _ in facts.values(*MAMBA1_KEYS)):
        return "mamba"
    return "ssm"


RECURRENT_MIXERS = frozenset({"mamba", "mamba2", "short-conv", "rwkv", "xlstm", "rg-lru"})
LINEAR_MIXERS = frozenset({"gated-delta", "kda", "lightning"})


def _recurrent_mixer(facts: Facts) -> str:
    """Which recurrent / state-space mixer the model has (called once ``_recurrent`` found one)."""
    known = _mixer_by_model_type(facts, RECURRENT_MIXERS)
    if known:
        return known
    kinds = _layer_kinds(facts, RECURRENT_WORDS, exclude=LINEAR_ATTENTION_WORDS)
    for word, mixer in RECURRENT_LAYER_MIXERS:
        if any(word in kind for kind in kinds):
            return mixer
    if kinds and not any("mamba" in kind or "ssm" in kind for kind in kinds):
        return "recurrent"
    return _mamba_version(facts)


def _linear_mixer(facts: Facts) -> str:
    """Which linear attention the model has (called once ``_linear_attention`` found one)."""
    known = _mixer_by_model_type(facts, LINEAR_MIXERS)
    if known:
        return known
    kinds = _layer_kinds(facts, LINEAR_ATTENTION_WORDS)
    for word, mixer in LINEAR_LAYER_MIXERS:
        if any(word in kind for kind in kinds):
            return mixer
    if any(True for _ in facts.values("linear_conv_kernel_dim")):
        return "gated-delta"  # a short convolution before a delta-rule recurrence (Qwen3-Next, OLMo hybrid)
    if any(True for _ in facts.values("attn_type_list", "linear_attn_alpha_factor")):
        return "lightning"  # MiniMax-Text-01's layer switch and lightning-attention residual scale
    return "linear"


ENCODER_DECODER_MODEL_TYPES = frozenset({
    "t5", "mt5", "umt5", "longt5", "t5gemma", "switch_transformers", "bart", "mbart", "pegasus", "pegasus_x",
    "marian", "led", "blenderbot", "blenderbot-small", "m2m_100", "nllb-moe", "fsmt", "plbart", "prophetnet",
    "bigbird_pegasus", "whisper", "seamless_m4t", "encoder-decoder",
})


def _encoder_decoder(facts: Facts) -> str | None:
    if facts.config.get("is_encoder_decoder") is True:
        return "is_encoder_decoder: true"
    kinds = sorted(facts.model_types & ENCODER_DECODER_MODEL_TYPES)
    if kinds:
        return f"model_type {kinds[0]!r}"
    for path, value in facts.values("num_decoder_layers", "decoder_layers"):
        if _number(value) is not None and (path.endswith("num_decoder_layers") or "encoder_layers" in facts.config):
            return f"{path}: {_quote(value)} next to an encoder stack"
    return None


ENCODER_ONLY_MODEL_TYPES = frozenset({
    "bert", "roberta", "xlm-roberta", "xlm-roberta-xl", "deberta", "deberta-v2", "electra", "albert", "distilbert",
    "camembert", "modernbert", "mpnet", "nomic_bert", "ernie", "megatron-bert", "mobilebert", "funnel", "xlnet",
})
BIDIRECTIONAL_FLAGS = ("prefix_lm", "use_bidirectional_attention", "bidirectional", "bidirectional_attention")
CAUSAL_FLAGS = ("is_causal", "causal", "use_causal_mask")


@dataclass(frozen=True)
class MaskReading:
    """How a family's modeling code builds its attention mask, read from the installed transformers' source (code
    only: docstrings and comments that mention the names do not count)."""

    #: it reads ``config.is_decoder`` and its causal-LM class does not set it itself (TrOCR's does)
    reads_is_decoder: bool = False
    #: every mask it builds is bidirectional (``create_bidirectional_mask``, never a causal builder or
    #: ``is_causal``): its causal-LM class attends both ways even as a decoder (Megatron-BERT, RoFormer in 5.12)
    only_bidirectional: bool = False


_MASK_BUILDER = re.compile(r"^(?:create_\w*mask|_prepare_4d\w*|get_extended_attention_mask)$")


@cache
def mask_reading(model_type: str) -> MaskReading:
    try:
        root, name = transformers_models_dir(), module_name(model_type)
        if root is None or name is None:
            return MaskReading()
        folder = root / name
        reads = forced = causal_word = False
        builders: set[str] = set()
        for path in folder.glob("modeling_*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8", errors="replace"))):
                if isinstance(node, ast.Attribute) and node.attr == "is_decoder" and _names_config(node.value):
                    reads = reads or isinstance(node.ctx, ast.Load)
                    forced = forced or isinstance(node.ctx, ast.Store)
                name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) \
                    else node.arg if isinstance(node, ast.keyword) else None
                if name and _MASK_BUILDER.match(name):
                    builders.add(name)
                causal_word = causal_word or name == "is_causal"
        return MaskReading(reads_is_decoder=reads and not forced,
                           only_bidirectional=builders == {"create_bidirectional_mask"} and not causal_word)
    except (ImportError, OSError, ValueError, SyntaxError):
        return MaskReading()


def masks_by_is_decoder(model_type: str) -> bool:
    """The family attends causally only as a decoder (BERT-style): it reads ``config.is_decoder`` and builds a
    causal mask somewhere."""
    reading = mask_reading(model_type)
    return reading.reads_is_decoder and not reading.only_bidirectional


def _names_config(node: ast.expr) -> bool:
    """``config`` or ``<anything>.config``."""
    return (isinstance(node, ast.Name) and node.id == "config") or \
        (isinstance(node, ast.Attribute) and node.attr == "config")


def _non_causal(facts: Facts) -> str | None:
    if facts.config.get("is_decoder") is False and masks_by_is_decoder(facts.model_type):
        return f"is_decoder: false (model_type {facts.model_type!r} attends causally only as a decoder)"
    if facts.model_type and mask_reading(facts.model_type).only_bidirectional:
        return (f"model_type {facts.model_type!r} builds only bidirectional attention masks "
                "(create_bidirectional_mask), as a decoder too")
    kinds = sorted(facts.model_types & ENCODER_ONLY_MODEL_TYPES)
    if kinds and facts.config.get("is_decoder") is not True:
        return f"model_type {kinds[0]!r} is an encoder-only family"
    for path, value in facts.values(*BIDIRECTIONAL_FLAGS):
        if value is True:
            return f"{path}: true"
    for path, value in facts.values(*CAUSAL_FLAGS):
        if value is False:
            return f"{path}: false"
    return None


MULTIMODAL_KEYS = (
    "vision_config", "audio_config", "speech_config", "vision_tower", "mm_vision_tower", "visual", "vision_encoder",
    "image_token_id", "image_token_index", "video_token_id", "audio_token_id", "audio_token_index", "boi_token_index",
)


def _multimodal(facts: Facts) -> str | None:
    hits = [key for key in MULTIMODAL_KEYS if facts.config.get(key) not in (None, False, "", {}, [])]
    return ", ".join(hits[:4]) if hits else None


def _mla(facts: Facts) -> str | None:
    pairs = facts.values("kv_lora_rank", "q_lora_rank")
    ranks = [f"{path}={int(n)}" for path, value in pairs if (n := _number(value)) and n > 0]
    return ", ".join(ranks) if ranks else None


DIFFERENTIAL_KEYS = ("lambda_std_dev", "lambda_init", "diff_attn", "differential_attention")


def _differential(facts: Facts) -> str | None:
    if "diffllama" in facts.model_types:
        return "model_type 'diffllama'"
    return _first(f"key {path!r}" for path, value in facts.values(*DIFFERENTIAL_KEYS) if value not in (None, False))


SINK_KEYS = ("attention_sinks", "num_sink_tokens", "sink_tokens", "use_sinks", "attn_sinks")


def _attention_sinks(facts: Facts) -> str | None:
    if "gpt_oss" in facts.model_types:
        return "model_type 'gpt_oss', a learned sink logit per head"
    found = _first(f"key {path!r}" for path, value in facts.values(*SINK_KEYS) if value not in (None, False, 0))
    if found or facts.checkpoint is None:
        return found
    sinks = next((name for name in _tensor_names(facts.checkpoint) if name.rsplit(".", 1)[-1] == "sinks"), None)
    return f"tensor {sinks[:80]!r}" if sinks else None


SOFTCAP_KEYS = ("attn_logit_softcapping", "final_logit_softcapping", "logits_soft_cap", "attn_softcap", "softcap")


def _softcapping(facts: Facts) -> str | None:
    caps = [f"{path}={v:g}" for path, value in facts.values(*SOFTCAP_KEYS) if (v := _number(value)) and v > 0]
    return ", ".join(caps[:3]) if caps else None


EXPERT_COUNT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts", "num_routed_experts",
                     "n_experts", "expert_count")
EXPERTS_PER_TOKEN_KEYS = ("num_experts_per_tok", "moe_top_k", "num_experts_per_token", "moe_k")


def _moe(facts: Facts) -> str | None:
    for path, value in facts.values(*EXPERT_COUNT_KEYS):
        count = _number(value)
        if count is not None and count > 1:
            top_k = _first(f"{p}={int(k)}" for p, v in facts.values(*EXPERTS_PER_TOKEN_KEYS) if (k := _number(v)))
            return f"{path}={int(count)}" + (f", {top_k}" if top_k else "")
    return None


ROPE_KEYS = ("rope_scaling", "rope_parameters")
LENGTH_DEPENDENT_ROPE = ("longrope", "su", "dynamic")
LONG_ROPE_FACTOR = 16.0


def _rope_dicts(facts: Facts) -> Iterator[tuple[str, dict]]:
    """Every rope-parameter object, including the per-layer-type ones (Gemma 3 style)."""
    for path, value in facts.values(*ROPE_KEYS):
        if not isinstance(value, dict):
            continue
        yield path, value
        for count, (key, inner) in enumerate(value.items()):
            if count >= 16:
                break
            if isinstance(inner, dict) and isinstance(key, str):
                yield f"{path}.{key[:40]}", inner


def _rope_kind(params: dict) -> tuple[str, float | None]:
    kind = _text(params.get("rope_type")) or _text(params.get("type")) or "default"
    return kind.lower()[:40], _number(params.get("factor"))


def _long_rope(facts: Facts) -> str | None:
    for path, params in _rope_dicts(facts):
        kind, factor = _rope_kind(params)
        if kind in LENGTH_DEPENDENT_ROPE or (factor is not None and factor >= LONG_ROPE_FACTOR):
            return f"{path}: rope_type {kind!r}" + (f", factor {factor:g}" if factor is not None else "")
    return None


def _rope_scaling(facts: Facts) -> str | None:
    if _long_rope(facts):
        return None
    for path, params in _rope_dicts(facts):
        kind, factor = _rope_kind(params)
        if kind != "default":
            return f"{path}: rope_type {kind!r}" + (f", factor {factor:g}" if factor is not None else "")
    return None


# --------------------------------------------------------------------------- checkpoint detectors

LOW_PRECISION_DTYPES = frozenset({"F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4"})
INTEGER_WEIGHT_DTYPES = frozenset({"I8", "U8", "I32"})
QUANT_KEY_LEAVES = frozenset({
    "qweight", "qzeros", "scales", "g_idx", "weight_scale", "weight_scale_inv", "input_scale", "weight_packed",
    "weight_zero_point", "weight_global_scale", "weight_scale_2", "SCB", "absmax", "quant_map",
})
QUANT_KEY_SUFFIXES = ("_blocks", "_scales")
FULL_PRECISION_DTYPES = frozenset({"F32", "F16", "BF16", "F64"})


def _tensor_names(checkpoint: Checkpoint) -> Iterator[str]:
    tensors = checkpoint.tensors if isinstance(checkpoint.tensors, dict) else {}
    return (name for name in tensors if isinstance(name, str))


def _quantized_tensor(name: str, dtype: str, ndim: int) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    if dtype in LOW_PRECISION_DTYPES or leaf in QUANT_KEY_LEAVES or leaf.endswith(QUANT_KEY_SUFFIXES):
        return True
    if ".quant_state." in name:
        return True
    return dtype in INTEGER_WEIGHT_DTYPES and leaf == "weight" and ndim >= 2


def _quantized_summary(checkpoint: Checkpoint) -> str | None:
    """``'F8_E4M3 on 3 tensors (e.g. ...)'`` for a checkpoint that stores quantized weights."""
    tensors = checkpoint.tensors if isinstance(checkpoint.tensors, dict) else {}
    hits: dict[str, list[str]] = {}
    for name, info in tensors.items():
        dtype, shape = getattr(info, "dtype", ""), getattr(info, "shape", ())
        if isinstance(name, str) and _quantized_tensor(name, str(dtype), len(shape) if isinstance(shape, tuple) else 0):
            hits.setdefault(str(dtype), []).append(name)
    if not hits:
        return None
    parts = [f"{dtype} on {len(names)} tensors (e.g. {names[0][:80]!r})" for dtype, names in hits.items()]
    return "; ".join(parts[:3])


def _quant_method(facts: Facts) -> str | None:
    for key in ("quantization_config", "compression_config"):
        block = facts.config.get(key)
        if isinstance(block, dict):
            method = _text(block.get("quant_method")) or _text(block.get("format")) or "unnamed method"
            return f"{key}.quant_method {method[:40]!r}"
        if block is not None:
            return f"{key} {_quote(block)}"
    return None


def _quantized_weights(facts: Facts) -> str | None:
    if facts.checkpoint is None:
        return None
    summary = _quantized_summary(facts.checkpoint)
    if not summary:
        return None
    method = _quant_method(facts)
    return summary + (f"; {method}" if method else "")


def _quant_config_unverified(facts: Facts) -> str | None:
    return _quant_method(facts) if facts.checkpoint is None else None


def _quant_config_unused(facts: Facts) -> str | None:
    checkpoint = facts.checkpoint
    if checkpoint is None or checkpoint.weight_format != "safetensors" or not checkpoint.tensors:
        return None
    return None if _quantized_summary(checkpoint) else _quant_method(facts)


def _weight_files(checkpoint: Checkpoint) -> str:
    names = [f for f in checkpoint.other_weight_files if isinstance(f, str)] or ["no file names recorded"]
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return ", ".join(n[:80] for n in names[:3]) + more


def _format_is(kind: str) -> Detector:
    def detect(facts: Facts) -> str | None:
        checkpoint = facts.checkpoint
        return _weight_files(checkpoint) if checkpoint is not None and checkpoint.weight_format == kind else None

    return detect


def _no_weights(facts: Facts) -> str | None:
    checkpoint = facts.checkpoint
    if checkpoint is None:
        return None
    if checkpoint.weight_format == "none":
        return "no .safetensors, .bin, .pt or .gguf file in the repo"
    if checkpoint.weight_format == "safetensors" and not checkpoint.tensors:
        return f"{len(checkpoint.shards)} safetensors shard(s) declaring no tensors"
    return None


def _side_weight_files(facts: Facts) -> str | None:
    checkpoint = facts.checkpoint
    if checkpoint is None or checkpoint.weight_format != "safetensors" or not checkpoint.other_weight_files:
        return None
    return _weight_files(checkpoint)


def _checkpoint_bytes(checkpoint: Checkpoint) -> int:
    total = 0
    for info in checkpoint.tensors.values():
        numel = 1
        for dim in getattr(info, "shape", ()):
            numel *= dim if isinstance(dim, int) else 0
        total += int(numel * DTYPE_BYTES.get(getattr(info, "dtype", ""), 0))
    return total


def _too_big(facts: Facts) -> str | None:
    if facts.checkpoint is None:
        return None
    total = _checkpoint_bytes(facts.checkpoint)
    return f"{total / 1e9:.1f} GB of weights" if total > ONE_GPU_WEIGHT_BYTES else None


def _not_read(facts: Facts) -> str | None:
    return "no checkpoint was given to the scan" if facts.checkpoint is None else None


# --------------------------------------------------------------------------- repo and identity detectors


def _auto_map_evidence(facts: Facts) -> str | None:
    auto_map = facts.config.get("auto_map")
    if auto_map in (None, {}, [], ""):
        return None
    if not isinstance(auto_map, dict):
        return f"auto_map {_quote(auto_map)}"
    entry = auto_map.get("AutoModelForCausalLM")
    key = "AutoModelForCausalLM" if entry is not None else next((k for k in auto_map if isinstance(k, str)), "?")
    refs = _strings(auto_map.get(key))
    return f"auto_map.{key[:40]} -> {refs[0][:80]!r}" if refs else f"auto_map with {len(auto_map)} entries"


def _remote_code_only(facts: Facts) -> str | None:
    evidence = _auto_map_evidence(facts)
    if evidence is None or known_model_type(facts.model_type):
        return None
    return f"{evidence}, model_type {facts.model_type[:40]!r} unknown to the installed transformers"


def _remote_code_shadowing(facts: Facts) -> str | None:
    evidence = _auto_map_evidence(facts)
    if evidence is None or not known_model_type(facts.model_type):
        return None
    return f"{evidence}, though transformers has model_type {facts.model_type!r} natively"


def _python_files(facts: Facts) -> str | None:
    code = [f for f in facts.files if f.endswith(".py")]
    if not code:
        return None
    more = f" and {len(code) - 3} more" if len(code) > 3 else ""
    return ", ".join(f[:80] for f in code[:3]) + more


def _unidentified(facts: Facts) -> str | None:
    if facts.architectures or facts.model_type:
        return None
    config = facts.config
    return f"architectures {_quote(config.get('architectures'))}, model_type {_quote(config.get('model_type'))}"


def _missing_architectures(facts: Facts) -> str | None:
    if facts.architectures or not facts.model_type:
        return None
    return f"architectures {_quote(facts.config.get('architectures'))} with model_type {facts.model_type[:40]!r}"


GENERATIVE_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration", "LMHead", "ForCausalLMPipe")
TASK_HEAD_SUFFIXES = (
    "ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering", "ForMaskedLM",
    "ForMultipleChoice", "ForNextSentencePrediction", "ForPreTraining", "ForRewardModel", "ForProcessRewardModel",
    "ForTextEncoding", "ForImageClassification", "ForAudioClassification", "ForCTC", "ForSeq2SeqLM", "ForEmbedding",
)


def _no_generative_class(facts: Facts) -> bool:
    return bool(facts.architectures) and not any(a.endswith(GENERATIVE_SUFFIXES) for a in facts.architectures)


def _task_head(facts: Facts) -> str | None:
    if not _no_generative_class(facts):
        return None
    return _first(f"architectures {a!r}" for a in facts.architectures if a.endswith(TASK_HEAD_SUFFIXES))


def _base_model_only(facts: Facts) -> str | None:
    if not _no_generative_class(facts) or _task_head(facts):
        return None
    return _first(f"architectures {a!r}" for a in facts.architectures if a.endswith("Model"))


def _unknown_head(facts: Facts) -> str | None:
    if not _no_generative_class(facts) or _task_head(facts) or _base_model_only(facts):
        return None
    return f"architectures {list(facts.architectures[:3])!r}"


# --------------------------------------------------------------------------- the table

RULES: tuple[Rule, ...] = (
    # Identity: is this a causal LM at all?
    Rule("unidentified-model", BLOCK, _unidentified,
         "config.json names no model class or type ({evidence}); nothing says what to port", "read-config-json.md"),
    Rule("task-head", BLOCK, _task_head,
         "{evidence} is a task head, not a causal LM; there is no next-token logit to match",
         "read-config-json.md, then {modeling}"),
    Rule("non-causal", BLOCK, _non_causal,
         "attention is not causal ({evidence}); MAX's decoder pipelines assume a causal mask",
         "recognize-walls.md, then {modeling}"),
    Rule("encoder-decoder", BLOCK, _encoder_decoder,
         "encoder-decoder model ({evidence}); a decoder-only donor has no cross-attention or encoder pass",
         "recognize-walls.md"),
    Rule("base-model-only", WARN, _base_model_only,
         "{evidence} is a bare backbone with no LM head class; check for lm_head.weight or tied embeddings",
         "state-dict-audit.md"),
    Rule("unknown-head", WARN, _unknown_head,
         "{evidence} is not a recognised causal-LM class name", "read-config-json.md, then {modeling}"),
    Rule("missing-architectures", WARN, _missing_architectures,
         "config.json has no architectures list ({evidence}); the class must be inferred from model_type",
         "read-config-json.md"),
    # Layers MAX's stock attention cannot express.
    Rule("alibi", WARN, _alibi,
         "ALiBi position bias ({evidence}); MAX's flash attention adds no per-head linear bias, so the port writes "
         "attention out over the cached K/V",
         "recognize-walls.md, then {modeling}"),
    Rule("relative-bias", BLOCK, _relative_bias,
         "a learned bias on the attention scores by bucketed relative position ({evidence}); MAX attention kernels "
         "add no per-head bias to the scores", "recognize-walls.md, then {modeling}"),
    # Inputs and stacks a single decoder over one token stream cannot express: Reformer, BLT, Gemma 4's
    # assistants, MusicGen and Moshi.
    Rule("hashed-attention", BLOCK, _hashed_attention,
         "attention by hashed buckets or fixed chunks ({evidence}); MAX's attention kernels attend over one causal "
         "sequence, optionally windowed", "recognize-walls.md, then {modeling}"),
    Rule("stacked-models", BLOCK, _stacks_in_sub_configs,
         "several transformer stacks that feed each other ({evidence}); a decoder port has one stack of layers",
         "recognize-walls.md, then {modeling}"),
    Rule("draft-model", BLOCK, _draft_model,
         "a draft model for speculative decoding ({evidence}): it runs on another model's hidden states and KV "
         "cache, not on token ids; port the target model, then serve the pair with MAX's speculative decoding",
         "recognize-walls.md, then {modeling}"),
    Rule("token-streams", BLOCK, _codebooks,
         "several token streams per position ({evidence}), one embedding and one head per codebook; MAX's text "
         "pipelines take one token id per position and return one row of logits", "recognize-walls.md"),
    # Token mixers other than softmax attention: a warning where the installed MAX ships a block for the mixer,
    # a blocker where it does not (see MIXER_OF_MODEL_TYPE and recon.max_blocks).
    Rule("recurrent-layers", WARN, _recurrent, "state-space / recurrent layers ({evidence})",
         "recognize-walls.md, then {modeling}", trait=_recurrent_mixer,
         missing="the installed MAX ships no public block for {mixer}: a port needs its own scan kernel and "
                 "recurrent-state cache"),
    Rule("linear-attention", WARN, _linear_attention, "linear-attention layers ({evidence})",
         "recognize-walls.md, then {modeling}", trait=_linear_mixer,
         missing="the installed MAX ships no public block for {mixer}: a port needs its own kernel and a "
                 "recurrent state in place of the KV cache"),
    Rule("mla", WARN, _mla, "multi-head latent attention ({evidence}); the donor must be an MLA architecture",
         "map-to-max.md, then {modeling}", trait=lambda facts: "mla",
         missing="the installed MAX ships no public block for {mixer}"),
    Rule("differential-attention", WARN, _differential,
         "differential attention ({evidence}); two softmax maps are subtracted per head",
         "read-modeling-code.md, then {modeling}"),
    Rule("attention-sinks", WARN, _attention_sinks,
         "attention sinks ({evidence}); the softmax denominator gets an extra per-head term",
         "read-modeling-code.md, then {modeling}"),
    Rule("moe", WARN, _moe,
         "routed experts ({evidence}); the port needs an MoE donor and a router that matches HF's",
         "map-to-max.md, then {modeling}", trait=lambda facts: "moe", without_block=WARN,
         missing="the installed MAX ships no public MoE block"),
    Rule("multimodal", WARN, _multimodal,
         "multimodal towers ({evidence}); only the text backbone is a candidate to port", "read-config-json.md"),
    Rule("long-rope", WARN, _long_rope,
         "long-context rope scaling ({evidence}); frequencies depend on length or stretch far past training",
         "read-config-json.md, then {modeling}"),
    Rule("rope-scaling", INFO, _rope_scaling,
         "scaled rope ({evidence}); the donor must implement the same frequency formula", "read-config-json.md"),
    Rule("softcapping", INFO, _softcapping,
         "logit soft-capping ({evidence}); not a wall, a tanh cap to carry over", "read-modeling-code.md"),
    # Weights.
    Rule("pickle-only", BLOCK, _format_is("pickle"),
         "weights exist only as pickle ({evidence}); we never unpickle by default: convert to safetensors first",
         "state-dict-audit.md"),
    Rule("gguf-only", BLOCK, _format_is("gguf"),
         "weights exist only as GGUF ({evidence}); find the safetensors release it was converted from",
         "state-dict-audit.md"),
    Rule("no-weights", BLOCK, _no_weights, "no weights to port ({evidence})", "state-dict-audit.md"),
    Rule("quantized-weights", BLOCK, _quantized_weights,
         "quantized weights with no full-precision copy ({evidence}); find a BF16/F16 release to port from",
         "state-dict-audit.md"),
    Rule("quantization-config", WARN, _quant_config_unverified,
         "{evidence} declared and the weights were not inspected; they may have no full-precision copy",
         "state-dict-audit.md"),
    Rule("quantization-config-unused", INFO, _quant_config_unused,
         "{evidence} declared, but every tensor is stored in full precision", "state-dict-audit.md"),
    Rule("side-weight-files", INFO, _side_weight_files,
         "pickle/GGUF files ({evidence}) sit beside the safetensors; only the safetensors are read",
         "state-dict-audit.md"),
    Rule("multi-gpu-size", INFO, _too_big,
         "{evidence}: more than one 80 GB GPU holds with room for the KV cache", "distributed-transformer.md"),
    Rule("weights-not-read", INFO, _not_read, "{evidence}; weight-level walls were not checked", "state-dict-audit.md"),
    # Code shipped in the repo.
    Rule("remote-code-only", BLOCK, _remote_code_only,
         "custom modeling code ({evidence}); the HF reference is that code, which only `verify --trust-remote-code` "
         "runs (it executes the repo's Python on this machine: read it first); `port` never runs it, so port such "
         "a family by hand (plan, scaffold) and verify with that flag",
         "recognize-walls.md, then {modeling}"),
    Rule("remote-code", WARN, _remote_code_shadowing,
         "custom modeling code ({evidence}); confirm the repo's code matches the in-library class",
         "read-modeling-code.md, then {modeling}"),
    Rule("repo-python", INFO, _python_files,
         "the repo ships Python ({evidence}); we read it, never run it", "read-modeling-code.md, then {modeling}"),
)


def scan_walls(config: dict, checkpoint: Checkpoint | None, files: list[str]) -> list[Finding]:
    """Run every rule once; findings come back worst first, in table order within a level."""
    facts = build_facts(config, checkpoint, files)
    modeling = _modeling_file(facts)
    findings = []
    for rule in RULES:
        evidence = rule.detect(facts)
        if not evidence:
            continue
        finding = Finding(level=rule.level, code=rule.code, reason=rule.reason.format(evidence=evidence),
                          read_next=rule.read_next.format(modeling=modeling))
        if rule.trait is not None:
            finding = _ask_max(rule, finding, rule.trait(facts))
        findings.append(replace(finding, reason=_one_line(finding.reason)))
    return sorted(findings, key=lambda finding: _SEVERITY[finding.level])


#: Wall codes of token mixers: a warning names MAX's block, but the catalog writes no such layer (see ``port``).
MIXER_CODES = ("recurrent-layers", "linear-attention")


def _ask_max(rule: Rule, finding: Finding, trait: str) -> Finding:
    """The finding with the installed MAX's answer for ``trait``: its block, or the rule's fallback level."""
    mixer = MIXER_WORDS.get(trait, trait)
    answer = find_block(trait)
    if answer is None:
        return replace(finding, level=rule.without_block, trait=trait,
                       reason=f"{finding.reason}; {rule.missing.format(mixer=mixer)}")
    return replace(finding, trait=trait, block=answer.dotted, donor=answer.block.donor, cpu=answer.cpu,
                   reason=f"{finding.reason}; MAX has a public block for {mixer}: {answer.summary()}")


def exit_code(findings: list[Finding]) -> int:
    """2 if anything blocks, 1 if anything warns, else 0."""
    return max((EXIT_CODES.get(f.level, 0) for f in findings), default=0)


#: A reason longer than this (deeply nested evidence) is cut; the JSON fields keep the block's name whole.
MAX_REASON = 590


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_REASON else line[:MAX_REASON - 3] + "..."
