"""The sweep: every causal-LM ``model_type`` of the pinned transformers through ``import-model port``.

``make sweep SHARD=i/N`` (``python sweep/sweep.py --shard i/N --write docs/sweep.md``) takes every
``model_type`` of transformers' causal-LM mapping whose index is ``i - 1`` modulo ``N``, and for each:

- builds the family's config from its own config class (``AutoConfig.for_model``), with the
  causal-LM class of the mapping as ``architectures[0]``: the **default** variant (expert counts the
  class leaves unset, which transformers cannot build, get the twin's sizes: ``UNSET_MOE_SIZES``; keys
  every published checkpoint sets that the class leaves out and the model reads: ``PUBLISHED_KEYS``);
- adds one **variant** per structural option the family's modeling code reads (``config.<name>``
  in ``modeling_<family>.py``, read as text): every boolean toggled from its default, and the
  rope types in ``ROPE_VARIANTS`` where the config has rope parameters;
- makes each variant's tiny twin and runs ``port --no-verify`` on it (plan, write, weight
  table, dry build: seconds); a variant whose twin the family's own classes refuse, even with the
  sizes its option needs (``UNSET_OPTION_SIZES``), is REJECTED, quoted;
- runs the full ``port`` (compile and verify on the twin: minutes) on the default variant and
  on every variant whose plan differs from the default's (``--compile-variants N`` compiles at
  most N of those per family; the others keep their dry verdict, DRY OK).

A family runs in a worker process; if MAX takes the worker down, the row in flight records
the crash (stderr quoted) and a fresh worker goes on with the next variant. Rows carry their
date and the MAX and transformers versions; ``--write`` replaces only this shard's families'
rows of the document and recounts the summary over the whole table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from import_model.recon.walls import masks_by_is_decoder

REPO = Path(__file__).resolve().parent.parent

#: The variant of a BERT-style family that is a decoder (its default config attends both ways).
DECODER_VARIANT = "is_decoder=True"

#: Config booleans that change neither the weights nor what the model computes at inference.
RUNTIME_FLAGS = frozenset({
    "use_cache", "output_attentions", "output_hidden_states", "return_dict", "torchscript", "is_decoder",
    "is_encoder_decoder", "add_cross_attention", "tie_encoder_decoder", "gradient_checkpointing",
    "use_return_dict", "chunk_size_feed_forward", "output_router_logits", "_output_attentions", "use_flash_attn",
    "use_sdpa", "pretraining_tp_enabled", "scale_attn_weights_for_training", "use_memory_efficient_attention",
    # numerics of the softmax only (float32 on the CPU either way)
    "reorder_and_upcast_attn", "attention_softmax_in_fp32", "scale_attention_softmax_in_fp32",
    # GPT-2's sequence-summary head (double-heads models), not the causal LM
    "summary_use_proj", "summary_proj_to_labels",
    # a kernel choice (Mamba's pure-PyTorch scan), not the model
    "use_mambapy",
})
#: Rope variants tried where the default config has rope parameters: (rope_type, parameters).
ROPE_VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("linear", {"factor": 2.0}),
    ("yarn", {"factor": 4.0}),
)
#: Config keys whose value above 1 marks a mixture of experts.
MOE_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts", "num_experts_per_tok")
#: Wall codes that mean the model is not a decoder-only causal LM.
NOT_DECODER_WALLS = ("non-causal", "encoder-decoder", "task-head")
#: Wall codes of recurrent or state-space models (not dense decoders).
RECURRENT_WALLS = ("recurrent-layers", "linear-attention")
#: The scratch folder a sweep worker ports and verifies in (``<tmp>/import-model-sweep-XXXX/``).
WORK_DIR = re.compile(r"\S*/import-model-sweep-[\w]+/")
VERDICTS = ("NATIVE", "PASS", "PARTIAL", "FAIL", "DRY OK", "AS DEFAULT", "WALL", "BY HAND", "NOT A DECODER",
            "REJECTED", "REFERENCE FAILS", "COULD NOT RUN")
#: What verify says when transformers' own class cannot run the twin (DBRX in transformers 5.12 builds its router
#: from the expert width): the reference's fault, quoted; the port is written and its plan stands.
REFERENCE_FAILS = re.compile(r"the HF reference \S+ cannot run")


@dataclass(frozen=True)
class Variant:
    family: str  # the model_type
    name: str  # "default", "<option>=<value>" or "rope=<type>"
    config: dict[str, Any]
    text_row: str = ""  # a composite (text + vision/audio) whose language model has its own row: that model_type


@dataclass
class Row:
    family: str
    variant: str
    kind: str  # dense | moe | recurrent | not a decoder
    verdict: str
    implemented: str = "-"
    missing: str = "-"
    first_divergence: str = "-"
    worst_rel_l2: str = "-"
    detail: str = ""
    seconds: float = 0.0
    plan: list[str] = field(default_factory=list)  # the plan's signature, to compare variants with the default

    def cells(self, stamp: str) -> str:
        detail = WORK_DIR.sub("", self.detail)[:220]  # the run's scratch folder says nothing once it is gone
        values = [self.family, self.variant, self.kind, self.verdict, self.implemented, self.missing,
                  self.first_divergence, self.worst_rel_l2, detail, f"{self.seconds:.0f}", stamp]
        return "| " + " | ".join(str(v).replace("|", "/").replace("\n", " ") for v in values) + " |"


# --------------------------------------------------------------------------- families and variants


def causal_families() -> dict[str, str]:
    """model_type -> causal-LM class name, as the pinned transformers maps them."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return dict(sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.items()))


def shard_of(families: list[str], spec: str) -> list[str]:
    index, count = (int(x) for x in spec.split("/"))
    if not 1 <= index <= count:
        raise SystemExit(f"--shard {spec}: want i/N with 1 <= i <= N")
    return [f for n, f in enumerate(families) if n % count == index - 1]


def options_read(family: str) -> set[str]:
    """Names the family's modeling code reads as ``config.<name>`` (the source is read, never imported)."""
    import importlib.util

    from transformers.models.auto.configuration_auto import model_type_to_module_name

    module = model_type_to_module_name(family)
    spec = importlib.util.find_spec(f"transformers.models.{module}")
    if spec is None or not spec.submodule_search_locations:
        return set()
    folder = Path(next(iter(spec.submodule_search_locations)))
    text = "".join(p.read_text() for p in sorted(folder.glob("modeling_*.py")))
    return set(re.findall(r"config\.([a-z_][a-z0-9_]*)", text))


#: MoE sizes a config class may leave unset (None) by default, which transformers cannot build a model from
#: (dots.llm1's n_routed_experts, num_experts_per_tok and n_shared_experts): the twin's own sizes.
UNSET_MOE_SIZES = {"n_routed_experts": 4, "num_experts_per_tok": 2, "n_shared_experts": 1}
#: Sizes an option needs that its config class leaves unset when the option is off; a variant that turns the
#: option on and cannot be built is retried with one group at a time, where its config holds None.
UNSET_OPTION_SIZES: tuple[dict[str, int], ...] = (
    {"num_experts": 4, "top_k_experts": 2, "moe_intermediate_size": 32},  # Gemma 4's enable_moe_block
    {"num_global_key_value_heads": 1},  # Gemma 4's attention_k_eq_v: the global layers' KV heads
)
#: Keys every published checkpoint of a family sets, which its config class leaves out and its model reads: the
#: default config gets them so transformers can build it (family -> keys, merged one level deep).
PUBLISHED_KEYS: dict[str, dict[str, Any]] = {
    # transformers 5.12's DbrxAttention reads attn_config.rope_theta, which DbrxAttentionConfig does not define,
    # and clamps q/k/v by clip_qkv whatever it is (None fails); databricks/dbrx-base's config.json sets both
    "dbrx": {"attn_config": {"rope_theta": 500000.0, "clip_qkv": 8.0}},
    # Lfm2MoeConfig leaves layer_types unset and its model indexes it; LiquidAI/LFM2-8B-A1B lists short-convolution
    # layers with a full-attention layer among them (here every third of the class's 32 layers)
    "lfm2_moe": {"layer_types": ["full_attention" if index % 3 == 2 else "conv" for index in range(32)]},
}


def variants_of(family: str, architecture: str) -> list[Variant]:
    from transformers import AutoConfig

    try:
        config = AutoConfig.for_model(family).to_dict()
    except Exception:  # noqa: BLE001 - a composite the model type names (MusicGen's) needs parts to be built
        config = _causal_config(architecture)
    text = config.get("text_config")
    text_type = text.get("model_type") if isinstance(text, dict) else None
    if isinstance(text_type, str) and text_type != family:
        if text_type in causal_families():
            return [Variant(family, "default", config | {"architectures": [architecture]}, text_row=text_type)]
        config = dict(text)  # the causal LM is the language model alone (Emu3, Mllama): its own config
    config["architectures"] = [architecture]
    config = _with_published_keys(family, config)
    out = [Variant(family, "default", _with_moe_sizes(config))]
    if config.get("is_decoder") is False and masks_by_is_decoder(family):
        # BERT-style: the causal-LM class attends causally only as a decoder; the default config is bidirectional
        out.append(Variant(family, DECODER_VARIANT, _rebuilt(family, architecture, config, {"is_decoder": True})))
    read = options_read(family)
    for name in sorted(read):
        value = config.get(name)
        if isinstance(value, bool) and name not in RUNTIME_FLAGS:
            out.append(Variant(family, f"{name}={not value}", _rebuilt(family, architecture, config, {name: not value})))
    rope = config.get("rope_parameters")
    if isinstance(rope, dict) and rope.get("rope_type") == "default":
        for rope_type, params in ROPE_VARIANTS:
            extra = {"original_max_position_embeddings": config.get("max_position_embeddings") or 4096}
            out.append(Variant(family, f"rope={rope_type}", _rebuilt(
                family, architecture, config, {"rope_parameters": rope | {"rope_type": rope_type, **params, **extra}})))
    return out


def _causal_config(architecture: str) -> dict[str, Any]:
    """The config the causal-LM class itself takes (MusicGen's decoder config), built with its defaults."""
    import transformers

    config_class = getattr(getattr(transformers, architecture, None), "config_class", None)
    if config_class is None:
        raise ValueError(f"{architecture} names no config class")
    return config_class().to_dict()


def _rebuilt(family: str, architecture: str, default: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """The default config with ``change``, built again through the family's config class so that what the class
    derives from an option follows it (GPT-BigCode's KV head count from ``multi_query``); the plain merge where the
    class refuses the change."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.for_model(str(default.get("model_type") or family), **change).to_dict()
    except Exception:  # noqa: BLE001 - a class that validates its options; the merged dict still makes a twin
        return default | change
    config["architectures"] = [architecture]
    return _with_moe_sizes(_with_published_keys(family, config))


def _with_published_keys(family: str, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the keys of :data:`PUBLISHED_KEYS` its class left out (a sub-config's merged into it)."""
    for key, value in PUBLISHED_KEYS.get(family, {}).items():
        config[key] = config[key] | value if isinstance(value, dict) and isinstance(config.get(key), dict) else value
    return config


def _with_moe_sizes(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the twin's sizes for expert counts its class leaves unset (:data:`UNSET_MOE_SIZES`)."""
    if all(config.get(key, 0) is None for key in ("n_routed_experts", "num_experts_per_tok")):
        config |= {key: size for key, size in UNSET_MOE_SIZES.items() if key in config and config[key] is None}
    return config


def kind_of(config: dict[str, Any]) -> str:
    text = json.dumps(config)
    sections = [config] + [value for value in config.values() if isinstance(value, dict)]  # DBRX's ffn_config
    if any(isinstance(section.get(k), int) and section.get(k, 0) > 1 for section in sections for k in MOE_KEYS):
        return "moe"
    if re.search(r'"(ssm_|mamba|conv_kernel|state_size|linear_attn|layers_block_type|attn_layer_period)', text):
        return "recurrent"
    return "dense"


# --------------------------------------------------------------------------- one variant


def port_once(twin: Path, out_dir: Path, verify: bool) -> tuple[int, dict[str, Any], str]:
    """``import-model port`` in this process: (exit code, the run's record, the refusal line if any)."""
    from import_model.cli import build_parser
    from import_model.commands.port_run import PortRun, port_steps
    from import_model.errors import UserError

    argv = ["port", str(twin), "--output-dir", str(out_dir), "--force", "--json"] + ([] if verify else ["--no-verify"])
    args = build_parser().parse_args(argv)
    run = PortRun(str(twin))
    refusal = ""
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            code = port_steps(args, run)
        except UserError as exc:
            code, refusal = exc.exit_code, exc.message
        except Exception as exc:  # noqa: BLE001 - the sweep records a bug in a row instead of stopping
            code, refusal = 3, f"internal error: {type(exc).__name__}: {str(exc)[:300]}"
    return code, run.as_dict(), refusal


def row_of(variant: Variant, code: int, run: dict[str, Any], refusal: str, verified: bool, seconds: float) -> Row:
    kind = kind_of(variant.config)
    steps = {s["step"]: s for s in run.get("steps", [])}
    deltas = run.get("deltas", [])
    implemented = ", ".join(r["rule"] for r in deltas if r["status"] == "implemented") or "-"
    missing = ", ".join(m["rule"] for m in run.get("missing", [])) or "-"
    plan = sorted(f"{r['rule']}:{r['status']}" for r in deltas) + [f"mode:{run.get('mode')}"] + sorted(
        f"missing:{m['rule']}:{m.get('value')}" for m in run.get("missing", []))
    row = Row(variant.family, variant.name, kind, "COULD NOT RUN", implemented, missing, seconds=seconds, plan=plan)
    walls = steps.get("walls", {})
    if code == 0 and "natively" in steps.get("native check", {}).get("detail", ""):
        row.verdict, row.detail = "NATIVE", steps["native check"]["detail"]
        return row
    if code == 2 and walls.get("status") == "by hand":  # a mixer MAX has a block for, which the catalog does not write
        row.kind, row.verdict, row.detail = "recurrent", "BY HAND", walls["detail"]
        return row
    if code == 2 and walls.get("status") == "blocked":
        codes = walls["detail"]
        if any(w in codes for w in NOT_DECODER_WALLS):
            row.kind, row.verdict = "not a decoder", "NOT A DECODER"
        else:
            row.verdict = "WALL"
            row.kind = "recurrent" if any(w in codes for w in RECURRENT_WALLS) else row.kind
        row.detail = codes
        return row
    if refusal:
        row.detail = refusal
        return row
    failed = [f"{s['step']}: {s['detail']}" for s in run.get("steps", [])
              if s["status"] == "FAIL" and s["step"] != "verify" and not _only_open_todos(s, run)]
    verify = run.get("verify") or {}
    if verified and verify and "error" not in verify:
        first = (verify.get("first_divergence") or {}).get("tap", "-")
        row.first_divergence = first
        row.worst_rel_l2 = f"{verify.get('worst_rel_l2', 0.0):.1e}"
        row.verdict = "PASS" if verify.get("passed") and code == 0 else "PARTIAL" if run.get("missing") else "FAIL"
        row.detail = "; ".join(failed)
        return row
    if verified:
        detail = steps.get("verify", {}).get("detail", "verify did not run")
        row.detail = "; ".join(failed + [detail])
        if REFERENCE_FAILS.search(detail):
            row.verdict = "REFERENCE FAILS"
        return row
    row.verdict = "DRY OK" if not failed else "COULD NOT RUN"
    row.detail = "; ".join(failed)
    return row


def _only_open_todos(step: dict[str, Any], run: dict[str, Any]) -> bool:
    """A partial port's gates fail on its own ``TODO(delta ...)`` markers (the donor-still-in-place gate): that is
    the missing delta already named, not a second failure."""
    failing = [part.split()[0] for part in step["detail"].split(", ") if part.endswith("FAIL")]
    return step["step"] == "gates" and bool(run.get("missing")) and failing == ["donor-still-in-place"]


def settled_by_config(variant: Variant) -> Row | None:
    """What the config alone decides, before any twin: MAX registers the class, the config is a composite whose
    language model has its own row, or ``port``'s wall step stops (a blocker, or a mixer to build by hand)."""
    from import_model.commands.port_run import PortRun, walls_step
    from import_model.errors import UserError
    from import_model.recon import registry

    architecture = variant.config["architectures"][0]
    natives = registry.find_native(architecture)
    if natives:
        return Row(variant.family, variant.name, kind_of(variant.config), "NATIVE",
                   detail=f"MAX serves {architecture} natively (slug {natives[0].slug}): no port")
    if variant.text_row:
        return Row(variant.family, variant.name, "multimodal", "NOT A DECODER",
                   detail=f"a composite config (text_config and more); its language model, {variant.text_row}, "
                          "has its own row")
    run = PortRun(variant.family)
    try:
        walls_step(variant.family, variant.config, None, [], run)
    except UserError as exc:
        return row_of(variant, 2, run.as_dict(), exc.message, False, 0.0)
    return None


def _twin_failure(config: dict[str, Any], twin: Path) -> str | None:
    """Why transformers cannot make a twin of ``config`` (None: it made one at ``twin``)."""
    from import_model.errors import UserError
    from import_model.verify.twin import make_twin

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            make_twin(config, twin, force=True)
    except UserError as exc:
        return exc.message
    except Exception as exc:  # noqa: BLE001 - a config the family's own class rejects, for one
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


def run_variant(variant: Variant, work: Path, verify: bool) -> Row:
    start = time.perf_counter()
    settled = settled_by_config(variant)
    if settled is not None:
        return settled
    slug = re.sub(r"\W+", "_", f"{variant.family}-{variant.name}")
    twin = work / "twins" / slug
    # an option its class leaves sized None when off is tried again with the twin's sizes (Gemma 4's MoE block)
    groups = [{key: size for key, size in group.items() if variant.config.get(key, 0) is None}
              for group in UNSET_OPTION_SIZES] if variant.name != "default" else []
    configs = [variant.config] + [variant.config | group for group in groups if group]
    for config in configs:
        failure = _twin_failure(config, twin)
        if failure is None:
            variant = Variant(variant.family, variant.name, config, variant.text_row)
            break
    if failure is not None:
        # the family's own config or model class refuses this option value: not a port result
        verdict = "COULD NOT RUN" if variant.name == "default" else "REJECTED"
        return Row(variant.family, variant.name, kind_of(variant.config), verdict, detail=f"twin: {failure}",
                   seconds=time.perf_counter() - start)
    code, run, refusal = port_once(twin, work / "ports" / slug, verify)
    return row_of(variant, code, run, refusal, verify, time.perf_counter() - start)


# --------------------------------------------------------------------------- worker and parent


def worker(families: list[str], rows_path: Path, skip: set[str], verify: bool, variant_compiles: int = -1) -> int:
    """Run every variant of ``families``, appending a ``start`` and a ``row`` record per variant.

    ``variant_compiles``: how many variants of a family (besides the default) may be compiled and verified; the
    rest keep their dry verdict (-1: all whose plan differs from the default's)."""
    mapping = causal_families()
    work = Path(tempfile.mkdtemp(prefix="import-model-sweep-"))

    def record(payload: dict[str, Any]) -> None:
        with rows_path.open("a") as f:
            f.write(json.dumps(payload) + "\n")

    for family in families:
        try:
            variants = variants_of(family, mapping[family])
        except Exception as exc:  # noqa: BLE001 - a config class that cannot be built with defaults
            record({"row": asdict(Row(family, "default", "dense", "COULD NOT RUN",
                                      detail=f"config: {type(exc).__name__}: {str(exc)[:200]}"))})
            continue
        default: Row | None = None
        compiled = 0
        for variant in variants:
            # BERT-style: the default config is bidirectional, its is_decoder=True variant is the decoder to port
            as_decoder = default is not None and default.verdict == "NOT A DECODER" and variant.name == DECODER_VARIANT
            if default is not None and default.verdict in ("NATIVE", "NOT A DECODER", "WALL", "BY HAND") and \
                    not as_decoder:
                break  # MAX registers the class (``check-native`` proves it), or there is no decoder to port
            key = f"{family}/{variant.name}"
            if key in skip:
                continue
            record({"start": key})
            row = run_variant(variant, work, verify=False)
            differs = default is None or row.plan != default.plan
            first = default is None or as_decoder  # the family's first decoder config is always compiled
            if verify and row.verdict == "DRY OK" and differs and (first or compiled != variant_compiles):
                compiled += not first
                row = run_variant(variant, work, verify=True)
            elif default is not None and row.verdict == "DRY OK" and row.plan == default.plan:
                row.verdict, row.detail = "AS DEFAULT", f"same plan as the default (verdict {default.verdict})"
            if variant.name == "default":
                default = row
            record({"row": asdict(row)})
            print(f"sweep: {key:48} {row.verdict:14} {row.seconds:5.0f} s  {row.missing if row.missing != '-' else ''}",
                  flush=True)
    return 0


def run_shard(families: list[str], verify: bool, variant_compiles: int = -1) -> list[Row]:
    """Run the worker until every variant has a row; a worker that dies leaves a crash row for its variant."""
    rows_path = Path(tempfile.mkstemp(prefix="sweep-rows-", suffix=".jsonl")[1])
    done: dict[str, Row] = {}
    while True:
        skip = set(done)
        argv = [sys.executable, __file__, "--worker", ",".join(families), "--rows", str(rows_path)]
        argv += ([] if verify else ["--no-verify"]) + ["--compile-variants", str(variant_compiles)]
        argv += ["--skip", ",".join(sorted(skip))] if skip else []
        log = rows_path.with_suffix(".log")
        with log.open("w") as stderr:
            proc = subprocess.run(argv, stderr=stderr, text=True, check=False)
        errors = log.read_text(errors="replace").strip().splitlines()
        started = None
        for line in rows_path.read_text().splitlines():
            record = json.loads(line)
            if "start" in record:
                started = record["start"]
            else:
                row = Row(**record["row"])
                done[f"{row.family}/{row.variant}"] = row
                started = None
        if proc.returncode == 0:
            return list(done.values())
        if started is None or started in done:
            raise SystemExit(f"sweep worker failed outside a variant (exit {proc.returncode}): "
                             f"{(errors or [''])[-1][:300]}; log: {log}")
        family, name = started.split("/", 1)
        tail = " ".join(errors[-2:])[-300:]
        done[started] = Row(family, name, "dense", "COULD NOT RUN",
                            detail=f"MAX crashed the process (exit {proc.returncode}): {tail}")
        print(f"sweep: {started} crashed the worker; going on", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the document


HEADER = ["| family | variant | kind | verdict | deltas implemented | missing deltas | first divergence | worst rel. L2 "
          "| detail | time s | run |", "|---|---|---|---|---|---|---|---|---|---|---|"]


def document(table: list[str]) -> str:
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in table]
    counts = {v: sum(r[3] == v for r in rows) for v in VERDICTS}
    # each family's first decoder config: its default, or a BERT-style family's is_decoder=True variant
    decoders = {r[0]: r for r in rows if r[1] == DECODER_VARIANT}
    defaults = [decoders.get(r[0], r) if r[3] == "NOT A DECODER" else r for r in rows if r[1] == "default"]
    dense = [r for r in defaults if r[2] == "dense" and r[3] not in ("NATIVE", "NOT A DECODER")]
    passed = sum(r[3] == "PASS" for r in dense)
    compiled = sum(r[3] in ("PASS", "PARTIAL", "FAIL") for r in dense)
    dry = sum(r[3] == "DRY OK" for r in dense)
    share = (f"{passed}/{len(dense)} ({100 * passed / len(dense):.0f}%); of the {compiled} compiled and verified, "
             f"{passed} PASS; {dry} dry only (not compiled yet)") if dense else "none yet"
    families = len({r[0] for r in rows})
    return "\n".join([
        "# Sweep", "",
        "Written by `make sweep SHARD=i/N` (`python sweep/sweep.py`); what each verdict means and how variants are "
        "chosen is in the script's docstring. Every row is `import-model port` on a tiny random-weight twin of the "
        "family's own config class (float32, CPU, verify tolerance rel. L2 1e-4).", "",
        f"Families covered: {families} of {len(causal_families())} causal-LM model types. "
        f"Dense decoder families that MAX does not register, default config (a BERT-style family's "
        f"{DECODER_VARIANT} variant): PASS {share}.", "",
        "| verdict | rows |", "|---|---|", *(f"| {v} | {n} |" for v, n in counts.items() if n), "",
        "- NATIVE: MAX registers the class; PASS / PARTIAL / FAIL: compiled and verified on the twin (PARTIAL names "
        "the missing delta and the first divergent tap); DRY OK: plan, weight table and dry build passed, not "
        "compiled; AS DEFAULT: the variant's plan equals the default's; WALL / NOT A DECODER: a `check-walls` "
        "blocker (exit 2); BY HAND: `check-walls` warns (exit 1) of a token mixer the installed MAX ships a block "
        "for, named in the detail, which the catalog does not write, so `port` stops; REJECTED: the family's own "
        "config or model class refuses this option value as the sweep sets it (quoted), so no twin exists to "
        "port; REFERENCE FAILS: the installed transformers' own class cannot run the twin (quoted), so there is "
        "nothing to compare the written port with; COULD NOT RUN: anything else, quoted.", "",
        *HEADER, *table, "",
    ])


def write_document(path: Path, rows: list[Row], families: list[str]) -> None:
    stamp = f"{datetime.date.today().isoformat()}, max {version('max')}, transformers {version('transformers')}"
    fresh = [row.cells(stamp) for row in rows]
    kept = []
    if path.is_file():
        lines = [line for line in path.read_text().splitlines() if line.startswith("| ")]
        start = next((i for i, line in enumerate(lines) if line.startswith("| family |")), None)
        if start is not None:
            kept = [line for line in lines[start + 1:] if line.split("|")[1].strip() not in families]
    table = sorted(kept + fresh, key=lambda line: (line.split("|")[1].strip(), line.split("|")[2].strip() != "default",
                                                   line.split("|")[2].strip()))
    temp = path.with_suffix(".tmp")
    temp.write_text(document(table))
    temp.replace(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shard", default="1/1", metavar="i/N", help="run the i-th of N shards (default 1/1)")
    parser.add_argument("--family", action="append", help="run only these model types (repeatable)")
    parser.add_argument("--no-verify", action="store_true", help="plan, weight table and dry build only")
    parser.add_argument("--compile-variants", type=int, default=-1, metavar="N",
                        help="compile and verify at most N variants per family besides the default (default: every "
                             "variant whose plan differs); the others keep their dry verdict")
    parser.add_argument("--write", type=Path, metavar="FILE", help="merge this shard's rows into FILE")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--skip", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker.split(","), args.rows, set(filter(None, args.skip.split(","))), not args.no_verify,
                      args.compile_variants)
    families = args.family or shard_of(list(causal_families()), args.shard)
    print(f"sweep: {len(families)} families: {' '.join(families)}", file=sys.stderr, flush=True)
    rows = run_shard(families, not args.no_verify, args.compile_variants)
    for row in rows:
        print(f"{row.family:24} {row.variant:36} {row.verdict:14} {row.missing:24} {row.detail[:80]}")
    if args.write:
        write_document(args.write, rows, families)
        print(f"sweep: wrote {args.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
