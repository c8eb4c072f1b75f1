"""``import-model plan``: anatomy, donor choice, delta list and default plan, on each family's real twin.

Every behaviour asserted below was checked by hand against the family's HF
modeling file in transformers 5.12.1 (the line quoted in each comment). The
donors stand for the installed MAX 26.7 registrations; their anatomies are
read from transformers' own modeling code for their default configs.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from import_model.cli import main
from import_model.plan import DELTA_RULES, Anatomy, build_anatomy, make_plan
from import_model.plan.anatomy import TRAITS
from import_model.plan.donors import load_donors
from import_model.plan.modeling import SourceTree, build_module_tree
from import_model.source import load_checkpoint, load_config, open_source
from tests.support.families import family_twin_dir


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Donor anatomies are computed once here, never read from the user's cache."""
    old = os.environ.get("IMPORT_MODEL_CACHE")
    os.environ["IMPORT_MODEL_CACHE"] = str(tmp_path_factory.mktemp("import-model-cache"))
    yield
    if old is None:
        os.environ.pop("IMPORT_MODEL_CACHE", None)
    else:
        os.environ["IMPORT_MODEL_CACHE"] = old


_plans: dict[tuple[str, str | None], object] = {}


def plan_for(family: str, donor: str | None = None):
    key = (family, donor)
    if key not in _plans:
        source = open_source(str(family_twin_dir(family)))
        _plans[key] = make_plan(source.display, load_config(source), load_checkpoint(source), donor=donor)
    return _plans[key]


def rules(plan) -> set[str]:
    return {delta.rule for delta in plan.deltas}


def value(plan, key: str):
    return plan.anatomy.value(key)


def source(plan, key: str) -> str:
    return plan.anatomy.row(key).source


# --------------------------------------------------------------------------- donor choice and delta lists

#: family -> (expected donor, the delta rules that must be listed, no more and no fewer).
EXPECTED = {
    # Helium is Llama with interleaved rotary: modeling_helium.rotate_half slices x[..., 0::2] / x[..., 1::2]
    # and apply_rotary_pos_emb repeat_interleaves cos/sin. Its explicit head_dim is no delta: LlamaAttention
    # reads getattr(config, "head_dim", ...) too.
    "helium": ("llama3", {"rotary_style"}),
    # StableLM 2: LayerNorm with bias (nn.LayerNorm in StableLmDecoderLayer), partial rotary 0.25, q/k/v bias
    # (bias=config.use_qkv_bias) but o_proj bias=False. Qwen2 has exactly that q/k/v-bias-only layout, so
    # against qwen2 only the norm and the partial rotary remain (llama3 would add the biases).
    "stablelm": ("qwen2", {"norm_style", "rotary_fraction"}),
    # Gemma 2 against Gemma 3, its own successor: both have (1 + w) RMSNorm, sandwich norms, sqrt(hidden)
    # embeddings, query_pre_attn_scalar and gelu-tanh; Gemma 2 lacks QK-norm and the local rope base,
    # adds both softcaps, and alternates sliding/global every layer (Gemma 3: 5 sliding : 1 global).
    "gemma2": ("gemma3", {"qk_norm", "layer_pattern", "local_theta", "attention_softcap", "final_softcap"}),
    # Command-R: CohereLayerNorm (mean-subtracting, no bias), parallel block sharing input_layernorm,
    # logits * logit_scale, interleaved rotate_half (x[..., ::2]), tied embeddings. No MAX donor is
    # parallel or LayerNorm-based, so the plainest Llama-like donor wins.
    "cohere": ("llama3", {"residual", "norm_style", "rotary_style", "logit_scale", "tied_head"}),
    # StarCoder2 was derived from Mistral: sliding window on every layer like mistral, but LayerNorm with
    # bias, a plain c_fc -> gelu_pytorch_tanh -> c_proj MLP with bias, q/k/v/o biases (use_bias) and tied.
    "starcoder2": ("mistral", {"mlp_kind", "norm_style", "attention_bias", "mlp_bias", "activation", "tied_head"}),
    # SmolLM3 is Llama with NoPE every 4th layer (`if self.use_rope:` around apply_rotary_pos_emb) and tied.
    "smollm3": ("llama3", {"nope_layers", "tied_head"}),
    # Phi-1.5: partial rotary 0.5, parallel attention + MLP sharing input_layernorm, nn.LayerNorm with bias,
    # plain fc1 -> gelu_new -> fc2 with bias, q/k/v/dense biases (bias=True), lm_head bias=True. Every dense
    # donor is equally far on these; llama3 wins the tie (phi3 adds fused qkv / gate_up layouts on top).
    "phi": ("llama3", {"mlp_kind", "residual", "norm_style", "rotary_fraction", "attention_bias", "mlp_bias",
                       "activation", "head_bias"}),
}


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_donor_and_delta_list(family: str) -> None:
    donor, expected_rules = EXPECTED[family]
    plan = plan_for(family)
    assert not plan.is_native
    assert plan.chosen is not None and plan.chosen.donor.slug == donor, [
        (c.donor.slug, c.score) for c in plan.ranking[:5]]
    assert plan.anatomy.category == "dense"
    assert plan.chosen.donor.anatomy.category == "dense"
    assert rules(plan) == expected_rules
    for delta in plan.deltas:
        assert delta.hf != delta.donor and delta.change and delta.where
        assert not delta.unverified  # every row was read from the config, the checkpoint or the code


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_ranking_is_dense_and_ordered(family: str) -> None:
    plan = plan_for(family)
    eligible = [c for c in plan.ranking if c.excluded is None]
    assert len(eligible) >= 5
    assert [c.score for c in eligible] == sorted(c.score for c in eligible)
    assert all(c.donor.anatomy.category == "dense" for c in eligible)
    excluded = {c.donor.anatomy.category for c in plan.ranking if c.excluded}
    assert {"mla", "moe", "multimodal", "hybrid"} <= excluded


# --------------------------------------------------------------------------- anatomy rows per family


def test_gemma2_anatomy() -> None:
    plan = plan_for("gemma2")
    assert value(plan, "norm.kind") == "rms" and value(plan, "norm.offset") is True  # output * (1.0 + weight)
    assert source(plan, "norm.offset") == "modeling"
    assert value(plan, "block.norms") == "sandwich"  # post_attention_layernorm on the attention output
    assert "post_feedforward_layernorm" in plan.anatomy.row("block.norms").evidence
    assert value(plan, "embedding.scale") == "sqrt_hidden"  # embed_scale=hidden_size**0.5
    assert value(plan, "embedding.scale_value") == pytest.approx(math.sqrt(64))
    assert value(plan, "attention.logit_softcap") == 50.0 and value(plan, "head.final_softcap") == 30.0
    assert value(plan, "attention.scale") == "query_pre_attn_scalar"
    assert value(plan, "mlp.kind") == "gated" and value(plan, "mlp.activation") == "gelu_tanh"
    assert value(plan, "attention.sliding_window") == "interleaved" and value(plan, "attention.layer_pattern") == "SF"
    assert value(plan, "attention.kind") == "gqa" and value(plan, "head.tied") is True


def test_gemma2_against_llama3_names_every_gemma_trait() -> None:
    plan = plan_for("gemma2", donor="llama3")
    assert plan.forced and plan.chosen.donor.slug == "llama3"
    assert rules(plan) == {"block_norms", "norm_style", "sliding_window", "activation", "attention_scale",
                           "attention_softcap", "embedding_scale", "final_softcap", "tied_head"}
    by_rule = {d.rule: d for d in plan.deltas}
    assert "(1 + w)" in by_rule["norm_style"].hf
    assert "sandwich" in by_rule["block_norms"].hf


def test_stablelm_anatomy() -> None:
    plan = plan_for("stablelm")
    assert value(plan, "norm.kind") == "layernorm" and value(plan, "norm.bias") is True
    assert value(plan, "rotary.fraction") == 0.25
    assert value(plan, "attention.qkv_bias") is True and value(plan, "attention.o_bias") is False
    assert value(plan, "block.residual") == "sequential"  # the twin has use_parallel_residual false
    assert value(plan, "attention.head_dim_source") == "derived"  # self.hidden_size // self.num_heads


def test_stablelm_parallel_residual_follows_the_config() -> None:
    config = load_config(open_source(str(family_twin_dir("stablelm"))))
    anatomy = build_anatomy({**config, "use_parallel_residual": True})
    assert anatomy.value("block.residual") == "parallel"
    assert anatomy.value("block.parallel_norm") == "shared"  # mlp(hidden_states) reads input_layernorm's output


def test_cohere_anatomy() -> None:
    plan = plan_for("cohere")
    assert value(plan, "norm.kind") == "layernorm" and value(plan, "norm.bias") is False
    assert value(plan, "block.residual") == "parallel" and value(plan, "block.parallel_norm") == "shared"
    assert value(plan, "head.logit_scale") == 0.0625
    assert value(plan, "rotary.style") == "interleaved" and source(plan, "rotary.style") == "modeling"
    assert value(plan, "head.tied") is True


def test_starcoder2_anatomy() -> None:
    plan = plan_for("starcoder2")
    assert value(plan, "norm.kind") == "layernorm" and value(plan, "norm.bias") is True
    assert value(plan, "mlp.kind") == "plain" and value(plan, "mlp.activation") == "gelu_tanh"
    assert value(plan, "mlp.bias") is True
    assert value(plan, "attention.qkv_bias") is True and value(plan, "attention.o_bias") is True
    assert value(plan, "attention.sliding_window") == "all" and value(plan, "attention.window") == 128


def test_phi_anatomy() -> None:
    plan = plan_for("phi")
    assert value(plan, "rotary.fraction") == 0.5
    assert value(plan, "block.residual") == "parallel"
    assert value(plan, "norm.kind") == "layernorm" and value(plan, "norm.bias") is True
    assert value(plan, "mlp.kind") == "plain" and value(plan, "mlp.activation") == "gelu_tanh"  # gelu_new
    assert value(plan, "attention.o_bias") is True  # self_attn.dense.bias
    assert "dense.bias" in plan.anatomy.row("attention.o_bias").evidence
    assert value(plan, "head.bias") is True and value(plan, "head.tied") is False


def test_helium_anatomy() -> None:
    plan = plan_for("helium")
    assert value(plan, "rotary.style") == "interleaved"
    assert "0::2" in plan.anatomy.row("rotary.style").evidence or "::2" in plan.anatomy.row("rotary.style").evidence
    assert value(plan, "attention.head_dim_explicit") is True and value(plan, "attention.head_dim") == 16
    assert value(plan, "attention.head_dim_source") == "config"


def test_latent_attention_anatomy() -> None:
    """Youtu's attention is DeepSeek-V3's: keys and values decompressed by kv_b_proj from a kv_lora_rank latent, read
    from that weight's input width; queries through q_a_proj or one q_proj; the latent norms built with their class's
    eps; rotary interleaved or half-split as config.rope_interleave picks the helper."""
    low_rank, direct = plan_for("youtu"), plan_for("youtu_direct")
    for plan in (low_rank, direct):
        assert value(plan, "attention.family") == "mla"
        assert plan.anatomy.row("attention.family").source == "checkpoint"
        assert "kv_b_proj" in plan.anatomy.row("attention.family").evidence
        assert value(plan, "attention.latent_norm_eps") == 1e-6
    assert value(low_rank, "attention.latent_query") == "low_rank_query"
    assert value(direct, "attention.latent_query") == "direct_query"
    assert value(low_rank, "rotary.style") == "interleaved"
    assert value(direct, "rotary.style") == "half_split"
    assert "rope_interleave=False" in direct.anatomy.row("rotary.style").evidence


def test_smollm3_anatomy() -> None:
    plan = plan_for("smollm3")
    assert value(plan, "rotary.nope_layers") == [3]  # no_rope_layers [1, 1, 1, 0]
    assert "use_rope" in plan.anatomy.row("rotary.nope_layers").evidence
    assert value(plan, "attention.sliding_window") == "none"  # use_sliding_window false


def test_falcon_anatomy() -> None:
    """Multi-query attention flagged by the config, the attention class picked from a module-level table."""
    plan = plan_for("falcon", donor="llama3")
    assert value(plan, "attention.kind") == "mqa" and value(plan, "attention.kv_heads") == 1
    assert value(plan, "block.residual") == "parallel" and value(plan, "block.parallel_norm") == "shared"
    assert value(plan, "norm.kind") == "layernorm" and value(plan, "norm.bias") is True
    assert value(plan, "mlp.activation") == "gelu"  # get_activation(config.activation)
    assert "residual" in rules(plan) and "activation" in rules(plan)


def test_falcon_new_decoder_anatomy() -> None:
    """The layer sets config.num_ln_in_parallel_attn = 2 itself, which picks ln_attn and ln_mlp."""
    plan = plan_for("falcon_40b")
    assert value(plan, "attention.kind") == "gqa"
    assert value(plan, "block.norm_names") == {"pre_attention": "ln_attn", "pre_mlp": "ln_mlp"}
    assert value(plan, "block.parallel_norm") == "separate"


def test_nemotron_layernorm_subclass_keeps_its_offset() -> None:
    """LayerNorm1P subclasses nn.LayerNorm but scales by weight + 1 in its own forward."""
    plan = plan_for("nemotron")
    assert value(plan, "norm.kind") == "layernorm" and value(plan, "norm.offset") is True
    assert value(plan, "norm.bias") is True and value(plan, "mlp.activation") == "relu2"


def test_qk_norm_position_is_read_from_the_attention_forward() -> None:
    hunyuan, apertus = plan_for("hunyuan_v1_dense"), plan_for("apertus")
    assert value(hunyuan, "attention.qk_norm_position") == "after_rope"
    assert value(apertus, "attention.qk_norm_position") == "before_rope"
    assert "qk_norm" in rules(plan_for("hunyuan_v1_dense", donor="qwen3"))


def test_gptj_rotary_dim_is_a_partial_rotary() -> None:
    plan = plan_for("gptj", donor="llama3")  # the delta list against a named donor, whatever ranks first
    assert value(plan, "rotary.fraction") == 0.25 and value(plan, "rotary.style") == "interleaved"
    assert "rotary_dim=4" in plan.anatomy.row("rotary.fraction").evidence
    assert {"rotary_fraction", "rotary_style", "head_bias", "mlp_bias"} <= rules(plan)


@pytest.mark.parametrize(("model_type", "architecture", "expected"), [
    # differential attention, its detector switched off: the lambdas are then parameters no rule knows
    ("diffllama", "DiffLlamaForCausalLM", "model.layers.{i}.self_attn.lambda_q1"),
])
def test_weights_no_trait_explains_are_a_delta(model_type: str, architecture: str, expected: str,
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A family whose extra parameters no rule knows is not a clean llama: the plan names those weights."""
    from transformers import CONFIG_MAPPING

    from import_model.plan import behaviour
    from import_model.verify.twin import make_twin

    monkeypatch.setattr(behaviour, "_differential_lambdas", lambda tree, node: None)
    config = CONFIG_MAPPING[model_type]().to_dict()
    config["architectures"] = [architecture]
    source = open_source(str(make_twin(config, tmp_path / model_type).path))
    plan = make_plan(source.display, load_config(source), load_checkpoint(source))
    assert expected in value(plan, "weights.unexplained")
    row = next(delta for delta in plan.deltas if delta.rule == "unexplained_weights")
    assert expected in row.change


def test_differential_attention_is_read_from_its_code() -> None:
    plan = plan_for("diffllama", donor="llama3")
    assert value(plan, "attention.differential") == ["lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2"]
    assert "exp(sum(self.lambda_q1 * self.lambda_k1))" in plan.anatomy.row("attention.differential").evidence
    # its groupnorm over each head pair is a step of the differential attention, without a weight; not a sub-norm
    assert value(plan, "attention.output_norm") is None and value(plan, "attention.differential_norm_weight") is False
    assert "differential_attention" in rules(plan) and "sub_norms" not in rules(plan)
    assert value(plan, "weights.unexplained") == []
    assert value(plan_for("helium"), "attention.differential") is None


def test_norms_inside_the_sublayers_are_read_from_their_code() -> None:
    plan = plan_for("bitnet", donor="llama3")
    assert value(plan, "attention.output_norm") == "attn_sub_norm" and value(plan, "mlp.inner_norm") == "ffn_sub_norm"
    assert "sub_norms" in rules(plan) and value(plan, "weights.unexplained") == []
    assert value(plan_for("helium"), "attention.output_norm") is None


@pytest.mark.parametrize("family", ["helium", "gemma2", "falcon_40b", "gptj", "phi", "apertus", "olmoe", "glm4",
                                    "bitnet"])
def test_weights_of_known_families_are_all_explained(family: str) -> None:
    plan = plan_for(family)
    assert value(plan, "weights.unexplained") == [] and "unexplained_weights" not in rules(plan)


def test_every_row_is_a_known_trait_with_a_source() -> None:
    for family in EXPECTED:
        anatomy = plan_for(family).anatomy
        for key, row in anatomy.rows.items():
            assert key in TRAITS, key
            assert row.source in ("config", "checkpoint", "modeling", "default")


def test_rule_table_covers_only_known_traits() -> None:
    for rule in DELTA_RULES:
        assert all(trait in TRAITS for trait in rule.traits), rule.id
        assert rule.kind in ("graph", "weights", "config")


# --------------------------------------------------------------------------- donors, caching, static reading


def test_donor_anatomies_round_trip_through_the_cache() -> None:
    fresh = {(d.slug, d.architecture): d for d in load_donors(use_cache=False)}
    cached = {(d.slug, d.architecture): d for d in load_donors(use_cache=True)}
    assert fresh.keys() == cached.keys()
    for key, donor in fresh.items():
        other = cached[key]
        assert donor.skipped == other.skipped
        if donor.anatomy is not None:
            assert donor.anatomy.as_dict() == other.anatomy.as_dict()
    llama = fresh[("llama3", "LlamaForCausalLM")].anatomy
    assert llama.value("rotary.style") == "half_split" and llama.value("norm.kind") == "rms"
    olmo2 = fresh[("olmo2", "Olmo2ForCausalLM")].anatomy
    assert olmo2.value("block.norms") == "post" and olmo2.value("attention.qk_norm") == "whole_projection"
    qwen3 = fresh[("qwen3", "Qwen3ForCausalLM")].anatomy
    assert qwen3.value("attention.qk_norm") == "per_head"
    assert fresh[("deepseekV3", "DeepseekV3ForCausalLM")].anatomy.category == "mla"
    assert fresh[("lfm2", "Lfm2ForCausalLM")].anatomy.category == "hybrid"  # builds Lfm2ShortConv layers
    assert fresh[("gemma4_assistant", "Gemma4AssistantForCausalLM")].skipped


def test_anatomy_round_trips_through_dict() -> None:
    anatomy = plan_for("gemma2").anatomy
    assert Anatomy.from_dict(json.loads(json.dumps(anatomy.as_dict()))).as_dict() == anatomy.as_dict()


def test_inheritance_is_followed_across_files(tmp_path: Path) -> None:
    """``class BAttention(AAttention)`` in another model folder is read through A's ``__init__``."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "modeling_a.py").write_text(
        "from torch import nn\n"
        "class AAttention(nn.Module):\n"
        "    def __init__(self, config):\n"
        "        super().__init__()\n"
        "        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.attention_bias)\n"
    )
    (tmp_path / "b" / "modeling_b.py").write_text(
        "from torch import nn\n"
        "from ..a.modeling_a import AAttention\n"
        "class BAttention(AAttention):\n"
        "    def __init__(self, config):\n"
        "        super().__init__(config)\n"
        "        self.q_norm = nn.LayerNorm(config.hidden_size)\n"
    )
    tree = SourceTree(extra_root=tmp_path)
    ref = tree.find_class(tmp_path / "b" / "modeling_b.py", "BAttention")
    assert ref is not None and [r.name for r in tree.lineage(ref)] == ["BAttention", "AAttention"]
    keys = build_module_tree(tree, ref, {"hidden_size": 8, "attention_bias": True}).keys()
    assert keys == {"q_proj.weight": (8, 8), "q_proj.bias": (8,), "q_norm.weight": (8,), "q_norm.bias": (8,)}


# --------------------------------------------------------------------------- native models and the CLI


def test_native_model_stops_with_the_serve_command(capsys: pytest.CaptureFixture[str]) -> None:
    twin = str(family_twin_dir("llama"))
    plan = plan_for("llama")
    assert plan.is_native and plan.anatomy is None and plan.deltas == []
    assert plan.serve_command == f"max serve --model {twin}"
    assert main(["plan", twin]) == 0
    out = capsys.readouterr().out
    assert "natively" in out and f"max serve --model {twin}" in out
    assert main(["plan", twin, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["native"][0]["slug"] == "llama3" and payload["serve_command"].startswith("max serve")


def test_cli_prints_ranking_deltas_and_default_plan(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    markdown = tmp_path / "plan.md"
    assert main(["plan", str(family_twin_dir("cohere")), "--markdown", str(markdown)]) == 0
    out = capsys.readouterr().out
    for text in ("Closest MAX donors", "Delta list against llama3", "Default plan", "interleaved", "logits * 0.0625",
                 "next: import-model scaffold"):
        assert text in out, text
    written = markdown.read_text()
    assert "## Delta list against `llama3`" in written and "| [ ] |" in written


def test_cli_json_and_forced_donor(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(family_twin_dir("helium")), "--json", "--donor", "mistral"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["donor"]["slug"] == "mistral" and payload["donor_forced"] is True
    assert {d["rule"] for d in payload["deltas"]} == {"rotary_style", "sliding_window"}
    assert len([r for r in payload["ranking"] if not r["excluded"]]) >= 5
    axes = payload["default_plan"]
    assert {"distribution", "quantization", "validation", "hardware", "paragraph"} <= axes.keys()
    assert "single GPU" in axes["distribution"] and "tier 6" in axes["validation"]


def test_cli_refuses_an_unknown_donor(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(family_twin_dir("helium")), "--donor", "no-such-donor"]) == 2
    assert "not a donor" in capsys.readouterr().err


def test_config_only_directory_is_sized_from_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = load_config(open_source(str(family_twin_dir("helium"))))
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert main(["plan", str(tmp_path), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    twin = load_checkpoint(open_source(str(family_twin_dir("helium"))))
    assert payload["anatomy"]["estimated_parameters"] == twin.parameter_count
    assert "estimated from the config" in payload["default_plan"]["distribution"]
    assert payload["donor"]["slug"] == "llama3"


# --------------------------------------------------------------------------- hostile input


HOSTILE_CONFIGS = [
    {"model_type": "../../etc/passwd", "architectures": ["../x"]},
    {"model_type": "gemma2", "num_hidden_layers": 10**12, "sliding_window": 7, "layer_types": None},
    {"model_type": "stablelm", "hidden_size": 0, "num_attention_heads": 0, "partial_rotary_factor": "x"},
    {"model_type": "phi", "rope_parameters": [1, 2], "layer_types": "SF", "no_rope_layers": {"a": 1}},
    {"model_type": "cohere", "logit_scale": 10**400, "hidden_size": 10**400, "tie_word_embeddings": "yes"},
    {"model_type": "smollm3", "no_rope_layers": [0] * 5000, "num_hidden_layers": -3},
    {"model_type": "qwen2_moe", "num_experts": 10**30, "num_experts_per_tok": "all"},
    {"model_type": 17, "architectures": "LlamaForCausalLM", "text_config": {"model_type": None}},
]


@pytest.mark.parametrize("config", HOSTILE_CONFIGS, ids=range(len(HOSTILE_CONFIGS)))
def test_hostile_config_never_crashes(config: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    anatomy = build_anatomy(config)
    assert all(row.key in TRAITS for row in anatomy.rows.values())
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert main(["plan", str(tmp_path), "--json"]) == 0
    json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("text", ["[1, 2]", "not json", '"a string"'])
def test_unreadable_config_is_a_user_error(text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.json").write_text(text)
    assert main(["plan", str(tmp_path)]) == 2
    assert "Traceback" not in capsys.readouterr().err


_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30) | st.floats(allow_nan=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_keys = st.sampled_from(["hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim", "layer_types",
                         "sliding_window", "use_sliding_window", "rope_parameters", "rope_scaling", "num_hidden_layers",
                         "partial_rotary_factor", "no_rope_layers", "query_pre_attn_scalar", "attention_bias",
                         "use_parallel_residual", "tie_word_embeddings", "logit_scale", "num_experts", "kv_lora_rank",
                         "intermediate_size", "hidden_act", "use_qk_norm", "qk_layernorm", "text_config"])
_TREE = SourceTree()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_type=st.sampled_from(["gemma2", "stablelm", "cohere", "phi", "smollm3", "starcoder2", "olmo2", "x"]),
       fields=st.dictionaries(_keys, _values, max_size=8))
def test_anatomy_of_any_config_never_raises(model_type: str, fields: dict) -> None:
    anatomy = build_anatomy({"model_type": model_type, **fields}, tree=_TREE)
    assert anatomy.category in ("dense", "moe", "mla", "hybrid", "multimodal")
    json.dumps(anatomy.as_dict(), default=str)


@pytest.mark.parametrize(("model_type", "architecture", "positions"), [
    ("xglm", "XGLMForCausalLM", "sinusoidal"),  # a computed table, a buffer: no weight to read
    ("opt", "OPTForCausalLM", "learned"),  # a table in the checkpoint
])
def test_position_tables_are_told_apart_by_their_weights(model_type: str, architecture: str, positions: str,
                                                          tmp_path: Path) -> None:
    """A sinusoidal table has no weight: the plan reads its layout and offset from the module's code."""
    from transformers import CONFIG_MAPPING

    from import_model.port.catalog import build_spec
    from import_model.verify.twin import make_twin

    config = CONFIG_MAPPING[model_type]().to_dict() | {"architectures": [architecture]}
    source = open_source(str(make_twin(config, tmp_path / model_type).path))
    plan = make_plan(source.display, load_config(source), load_checkpoint(source), donor="llama3")
    assert value(plan, "embedding.positions") == positions and "position_table" in rules(plan)
    result = build_spec(plan.anatomy, load_config(source), sorted(rules(plan)))
    assert "position_table" not in {m.rule for m in result.missing}
    assert result.traits.position_table == (positions == "learned") and result.traits.position_offset == 2
    assert result.traits.position_sinusoid == ("fairseq" if positions == "sinusoidal" else "none")


def test_gpt_neo_scores_are_unscaled_and_its_local_layers_slide() -> None:
    """Read from the code and the config the family really uses: q·kᵀ with no scale in GPTNeoSelfAttention,
    ``attention_layers`` / ``window_size`` instead of ``layer_types`` / ``sliding_window``."""
    plan = plan_for("gpt_neo", donor="llama3")
    assert value(plan, "attention.scale") == "none"
    assert "GPTNeoSelfAttention" in plan.anatomy.row("attention.scale").evidence
    assert value(plan, "attention.sliding_window") == "interleaved" and value(plan, "attention.layer_pattern") == "FS"
    assert value(plan, "attention.window") == 128  # the twin's window, short enough to bite on verify's prompt
    assert {"attention_scale", "sliding_window", "position_table"} <= rules(plan)


@pytest.mark.parametrize(("scaled", "expected"), [(True, "default"), (False, "none")])
def test_a_scale_expression_is_told_apart_by_its_value(scaled: bool, expected: str, tmp_path: Path) -> None:
    """GPT-2's ``scaling`` is ``head_dim ** -0.5`` or 1.0 by ``scale_attn_weights``: the evaluated value decides."""
    from transformers import AutoConfig

    from import_model.verify.twin import make_twin

    config = AutoConfig.for_model("gpt2", scale_attn_weights=scaled).to_dict() | {"architectures": ["GPT2LMHeadModel"]}
    source = open_source(str(make_twin(config, tmp_path / "gpt2").path))
    plan = make_plan(source.display, load_config(source), load_checkpoint(source), donor="llama3")
    assert value(plan, "attention.scale") == expected
    assert ("attention_scale" in rules(plan)) == (expected == "none")


def test_a_scale_divided_by_the_layer_depth_is_a_delta(tmp_path: Path) -> None:
    """GPT-2's ``scale_attn_by_inverse_layer_idx`` divides each layer's scale in ``__init__``: read from the code,
    it makes the attention_scale row, and the catalog implements it."""
    from transformers import AutoConfig

    from import_model.port.catalog import build_spec
    from import_model.verify.twin import make_twin

    config = AutoConfig.for_model("gpt2", scale_attn_by_inverse_layer_idx=True).to_dict() | {
        "architectures": ["GPT2LMHeadModel"]}
    source = open_source(str(make_twin(config, tmp_path / "gpt2").path))
    plan = make_plan(source.display, load_config(source), load_checkpoint(source), donor="llama3")
    assert value(plan, "attention.scale_by_layer") is True and "attention_scale" in rules(plan)
    result = build_spec(plan.anatomy, load_config(source), sorted(rules(plan)))
    assert result.traits.scale_by_layer and "attention_scale" not in {m.rule for m in result.missing}


@pytest.mark.parametrize(("model_type", "architecture", "placement"), [
    ("openai-gpt", "OpenAIGPTLMHeadModel", "after_add"),  # h = ln_2(n + mlp(n)), n = ln_1(x + attn(x))
    ("gpt2", "GPT2LMHeadModel", "pre"),  # ln_2 norms a sum too, but the unnormed sum stays the residual
])
def test_a_norm_after_the_residual_add_is_told_from_a_pre_norm(model_type: str, architecture: str, placement: str,
                                                                tmp_path: Path) -> None:
    """Post-LN (GPT-1) is read from the block's forward, never taken for pre-norm, and the port norms each sum."""
    from transformers import CONFIG_MAPPING

    from import_model.port.catalog import build_spec
    from import_model.verify.twin import make_twin

    config = CONFIG_MAPPING[model_type]().to_dict() | {"architectures": [architecture]}
    source = open_source(str(make_twin(config, tmp_path / model_type).path))
    plan = make_plan(source.display, load_config(source), load_checkpoint(source), donor="llama3")
    assert value(plan, "block.norms") == placement
    spec = build_spec(plan.anatomy, load_config(source), sorted(rules(plan)))
    assert "block_norms" not in {m.rule for m in spec.missing}
    roles = {"after_add": {"after_attention_add", "after_mlp_add"}, "pre": {"pre_attention", "pre_mlp"}}[placement]
    assert set(spec.traits.norms) == roles
    assert spec.traits.final_norm is (placement == "pre")  # GPT-1 has no norm after its last layer
    assert value(plan, "attention.scale") == "default"  # GPT-1's `if self.scale:` flag, on


def test_a_model_built_without_its_final_norm_is_read_from_its_module_tree(tmp_path: Path) -> None:
    """OPT with ``_remove_final_layer_norm``: no norm beside the layer list, so the port writes none (no stand-in)."""
    from transformers import AutoConfig

    from import_model.port.catalog import build_spec
    from import_model.verify.twin import make_twin

    config = AutoConfig.for_model("opt").to_dict() | {"architectures": ["OPTForCausalLM"],
                                                      "_remove_final_layer_norm": True}
    source = open_source(str(make_twin(config, tmp_path / "opt").path))
    plan = make_plan(source.display, load_config(source), load_checkpoint(source), donor="llama3")
    assert value(plan, "norm.final") is False
    spec = build_spec(plan.anatomy, load_config(source), sorted(rules(plan)))
    assert spec.traits.final_norm is False and "final_norm" in {e.id for e in spec.applied}


@pytest.mark.parametrize(("model_type", "architecture", "padded", "transform"), [
    ("bert", "BertLMHeadModel", False, "gelu"),
    ("roberta", "RobertaForCausalLM", True, "gelu"),  # positions counted from padding_idx + 1
    ("bert-generation", "BertGenerationDecoder", False, None),  # its head is the decoder linear alone
])
def test_a_bert_style_decoder_is_read_from_its_module_tree(model_type: str, architecture: str, padded: bool,
                                                           transform: str | None, tmp_path: Path) -> None:
    """BERT-style decoders: each sublayer's output module adds the residual and norms it (post-LN), the
    embeddings module adds a token-type row and norms the sum, a transform may sit before the head; every
    checkpoint weight is accounted for and the catalog writes them all."""
    from transformers import CONFIG_MAPPING

    from import_model.port.catalog import build_spec
    from import_model.verify.twin import make_twin

    config = CONFIG_MAPPING[model_type](is_decoder=True, pad_token_id=1).to_dict() | {"architectures": [architecture]}
    source = open_source(str(make_twin(config, tmp_path / model_type).path))
    plan = make_plan(source.display, load_config(source), load_checkpoint(source), donor="llama3")
    assert value(plan, "block.norms") == "after_add" and value(plan, "norm.final") is False
    assert value(plan, "embedding.norm") == "own" and value(plan, "head.transform") == transform
    offset = load_config(source)["pad_token_id"] + 1 if padded else 0
    assert value(plan, "embedding.position_offset") == offset and value(plan, "weights.unexplained") == []
    spec = build_spec(plan.anatomy, load_config(source), sorted(rules(plan)))
    assert spec.missing == [] and set(spec.traits.norms) == {"after_attention_add", "after_mlp_add"}
    assert spec.traits.head_transform is (transform is not None)


@pytest.mark.parametrize(("options", "norm", "adapter_norm", "residual"), [
    ({}, "output.LayerNorm", "block", "normed"),  # the block's own norm after the MLP's add, reused
    ({"adapter_layer_norm": True, "ln_before_adapter": False}, "output.adapter_layer_norm", "own", "sum"),
    ({"adapter_reuse_layer_norm": False}, None, "none", "sum"),
])
def test_a_language_adapter_is_read_from_the_output_modules_code(options: dict, norm: str | None, adapter_norm: str,
                                                                 residual: str, tmp_path: Path) -> None:
    """X-MOD: the output modules only add their residual and the caller norms the sum (post-LN, not an assumed
    pre-norm); the MLP's output module then runs a module picked by a language id on the sum (or its norm) and adds
    it back. The served language is the config's default; the other languages' adapters are explained, not read."""
    from transformers import CONFIG_MAPPING

    from import_model.port.catalog import build_spec
    from import_model.verify.twin import make_twin

    config = CONFIG_MAPPING["xmod"](is_decoder=True, languages=["en_XX", "de_DE"], default_language="de_DE",
                                    **options).to_dict() | {"architectures": ["XmodForCausalLM"]}
    source = open_source(str(make_twin(config, tmp_path / "xmod").path))
    plan = make_plan(source.display, load_config(source), load_checkpoint(source), donor="llama3")
    assert value(plan, "block.norms") == "after_add"
    assert value(plan, "block.norm_names") == {"after_attention_add": "attention.output.LayerNorm",
                                               "after_mlp_add": "output.LayerNorm"}
    adapter = value(plan, "block.language_adapter")
    assert {**adapter, "languages": sorted(adapter["languages"])} == {
        "table": "output.adapter_modules", "norm": norm, "residual": residual, "language": "de_DE",
        "languages": ["de_DE", "en_XX"]}
    assert "language_adapter" in rules(plan) and value(plan, "weights.unexplained") == []
    spec = build_spec(plan.anatomy, load_config(source), sorted(rules(plan)))
    assert spec.missing == [] and spec.traits.language_adapter
    assert (spec.traits.adapter_norm, spec.traits.adapter_residual_normed) == (adapter_norm, residual == "normed")


def test_a_modernbert_decoder_is_read_from_its_module_tree(tmp_path: Path) -> None:
    """ModernBERT-decoder: the token table and its norm inside an embeddings module, the head's linear (``decoder``,
    with a bias) beside a transform whose dense has none, a fused MLP input cut by ``chunk`` (first half
    activated), and a first layer that builds its pre-attention norm as an Identity; every weight is accounted for
    and the catalog writes it all."""
    from transformers import CONFIG_MAPPING

    from import_model.port.catalog import build_spec
    from import_model.verify.twin import make_twin

    config = CONFIG_MAPPING["modernbert-decoder"]().to_dict() | {"architectures": ["ModernBertDecoderForCausalLM"]}
    source = open_source(str(make_twin(config, tmp_path / "modernbert-decoder").path))
    plan = make_plan(source.display, load_config(source), load_checkpoint(source), donor="llama3")
    assert value(plan, "weights.unexplained") == [] and value(plan, "mlp.fused_gate_up") is True
    assert value(plan, "embedding.norm") == "own" and value(plan, "head.transform") == "gelu"
    assert value(plan, "head.bias") is True and value(plan, "head.transform_bias") is False
    assert value(plan, "block.norm_names") == {"pre_attention": "attn_norm", "pre_mlp": "mlp_norm"}
    assert value(plan, "block.unnormed_layers") == {"pre_attention": [0]}
    spec = build_spec(plan.anatomy, load_config(source), sorted(rules(plan)))
    assert spec.missing == [] and spec.traits.unnormed_first_layer and spec.traits.head_transform_unbiased


def test_embedding_rows_beyond_the_vocabulary_are_a_delta(tmp_path: Path) -> None:
    from transformers import MllamaTextConfig

    from import_model.verify.twin import make_twin

    config = MllamaTextConfig().to_dict() | {"architectures": ["MllamaForCausalLM"]}
    source = open_source(str(make_twin(config, tmp_path / "mllama").path))
    plan = make_plan(source.display, load_config(source), load_checkpoint(source), donor="llama3")
    assert value(plan, "embedding.extra_rows") == 8 and "embedding_rows" in rules(plan)  # the image tokens' rows


def test_modules_only_images_or_audio_run_are_set_aside(tmp_path: Path) -> None:
    from transformers import AutoConfig

    from import_model.verify.twin import make_twin

    config = AutoConfig.for_model("git").to_dict() | {"architectures": ["GitForCausalLM"]}
    source = open_source(str(make_twin(config, tmp_path / "git").path))
    plan = make_plan(source.display, load_config(source), load_checkpoint(source), donor="llama3")
    assert value(plan, "model.other_modality_modules") == ["git.image_encoder", "git.visual_projection"]
    assert value(plan, "weights.unexplained") == []


@pytest.mark.parametrize(("model_type", "architecture", "expected"), [
    ("lfm2", "Lfm2ForCausalLM", "silu"),  # Lfm2MLP.forward: self.w2(F.silu(self.w1(x)) * self.w3(x))
    ("cpmant", "CpmAntForCausalLM", "unknown"),  # an nn.GELU two modules down, and no activation key in the config
])
def test_an_activation_is_read_from_the_mlp_s_code_or_named_unknown(model_type: str, architecture: str,
                                                                    expected: str, tmp_path: Path) -> None:
    """An activation called as a function in the MLP's forward is read; one the code hides and the config does not
    name is ``unknown``, which the catalog names missing (SiLU stands in), never a silent SiLU."""
    from transformers import CONFIG_MAPPING

    from import_model.port.catalog import build_spec
    from import_model.verify.twin import make_twin

    config = CONFIG_MAPPING[model_type]().to_dict() | {"architectures": [architecture]}
    source = open_source(str(make_twin(config, tmp_path / model_type).path))
    plan = make_plan(source.display, load_config(source), load_checkpoint(source), donor="llama3")
    assert value(plan, "mlp.activation") == expected
    missing = {m.trait for m in build_spec(plan.anatomy, load_config(source), sorted(rules(plan))).missing}
    assert ("mlp.activation" in missing) == (expected == "unknown")
