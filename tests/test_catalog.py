"""The delta catalog: which spec each family's anatomy selects, and how the port is written.

The expected choices below restate each family's HF modeling code in
transformers 5.12.1 (rotary helper, norm classes, block forward, MLP,
attention scale, head): the catalog must select exactly those, and name what
it cannot implement instead of writing a silent partial port.
"""

from __future__ import annotations

import ast
import math
from dataclasses import replace
from typing import Any

import pytest

from import_model.plan import make_plan
from import_model.port.catalog import CATALOG, NORM_LAYOUTS, build_spec, entry_rows
from import_model.port.package import port_names
from import_model.port.writer import PortRequest, port_files
from import_model.source import load_checkpoint, load_config, open_source
from tests.support.families import family_twin_dir

PRE = NORM_LAYOUTS[("sequential", "pre")]

#: family -> spec fields that differ from a Llama block, as the HF modeling code has them.
EXPECTED: dict[str, dict[str, Any]] = {
    "helium": {"rotary_style": "interleaved"},  # HeliumAttention: rotate_half on x[..., ::2] / x[..., 1::2]
    "arcee": {"mlp": "plain", "activation": "relu2"},  # ArceeMLP: down(act(up(x))), hidden_act relu2
    "stablelm": {"norm": "layernorm", "norm_bias": True, "qkv_bias": True},  # nn.LayerNorm, use_qkv_bias
    "starcoder2": {"norm": "layernorm", "norm_bias": True, "mlp": "plain", "activation": "gelu_tanh",
                   "mlp_bias": True, "qkv_bias": True, "o_bias": True, "sliding_window": "all"},
    "gemma": {"norm_offset": True, "activation": "gelu_tanh", "embedding_scale": "sqrt_hidden"},
    "gemma2": {"attention_softcap": True, "norm_offset": True, "activation": "gelu_tanh",
               "embedding_scale": "sqrt_hidden", "block_norms": NORM_LAYOUTS[("sequential", "sandwich")],
               "attention_scale": "query_pre_attn_scalar", "final_softcap": True, "sliding_window": "interleaved"},
    "smollm3": {"nope": "no_rope_layers"},  # SmolLM3Attention: use_rope = config.no_rope_layers[layer_idx]
    "gpt_neox": {"residual": "parallel", "block_norms": NORM_LAYOUTS[("parallel", "separate")],
                 "norm": "layernorm", "norm_bias": True, "mlp": "plain", "activation": "gelu", "mlp_bias": True,
                 "qkv_bias": True, "o_bias": True},
    "phi": {"residual": "parallel", "block_norms": NORM_LAYOUTS[("parallel", "shared")], "norm": "layernorm",
            "norm_bias": True, "mlp": "plain", "activation": "gelu_tanh", "mlp_bias": True, "qkv_bias": True,
            "o_bias": True, "head_bias": True},
    "cohere": {"residual": "parallel", "block_norms": NORM_LAYOUTS[("parallel", "shared")], "norm": "layernorm",
               "norm_bias": False, "rotary_style": "interleaved", "logit_scale": True},
    "glm": {"rotary_style": "interleaved", "qkv_bias": True},
    "exaone4": {"block_norms": NORM_LAYOUTS[("sequential", "post")], "qk_norm": "per_head",
                "sliding_window": "interleaved", "nope": "global_layers"},
    # DiffLlamaAttention: exp(sum(lambda_q1 * lambda_k1)) - exp(sum(lambda_q2 * lambda_k2)) weighs the head pairs'
    # second maps; its weightless groupnorm is a step of that, not BitNet's sub-norm
    "diffllama": {"differential_attention": True},
    # BloomModel builds build_alibi_tensor for its layers; BloomGelu's code is the tanh GELU; the sublayers add the
    # residual they are handed (dropout_add), so the block is pre-norm
    "bloom": {"alibi": True, "rotary_style": "none", "nope": "all", "norm": "layernorm", "norm_bias": True,
              "qkv_bias": True, "o_bias": True, "mlp": "plain", "activation": "gelu_tanh", "mlp_bias": True},
}

#: family -> delta rules the catalog applies (vs MAX's llama3) and what it cannot implement.
APPLIED: dict[str, set[str]] = {
    "gpt_neox": {"fused_qkv", "partial_rotary", "residual", "mlp_kind", "norm_style"},
    "glm": {"fused_gate_up", "partial_rotary", "rotary_style"},
    "arcee": {"rope_scaling", "mlp_kind", "activation"},
    "apertus": {"activation", "qk_norm", "mlp_kind"},
    "diffllama": {"differential_attention"},
}
MISSING: dict[str, set[str]] = {}

LLAMA_SPEC = {"norm": "rms", "norm_offset": False, "norm_bias": False, "residual": "sequential", "block_norms": PRE,
              "qkv_bias": False, "o_bias": False, "qk_norm": "none", "rotary_style": "half_split", "nope": "none",
              "sliding_window": "none", "attention_scale": "default", "mlp": "gated", "activation": "silu",
              "mlp_bias": False, "embedding_scale": "none", "head_bias": False, "logit_scale": False,
              "logits_divisor": False, "final_softcap": False, "attention_softcap": False,
              "differential_attention": False, "alibi": False}


def _spec_for(family: str) -> tuple[Any, Any, list[str]]:
    source = open_source(str(family_twin_dir(family)))
    config = load_config(source)
    plan = make_plan(source.display, config, load_checkpoint(source), donor="llama3")
    rules = [d.rule for d in plan.deltas]
    assert plan.anatomy is not None
    return build_spec(plan.anatomy, config, rules), config, rules


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_family_spec_matches_the_modeling_code(family: str) -> None:
    result, _config, _rules = _spec_for(family)
    for key, llama_value in LLAMA_SPEC.items():
        expected = EXPECTED[family].get(key, llama_value)
        assert result.spec[key] == expected, f"{family}: spec[{key!r}] = {result.spec[key]!r}, expected {expected!r}"
    assert {m.rule for m in result.missing} == MISSING.get(family, set())
    if family in APPLIED:
        assert APPLIED[family] <= {e.id for e in result.applied}


#: family -> the MoE traits read from its config, keys and modeling code (the rest stay off).
MOE_TRAITS: dict[str, dict[str, Any]] = {
    # OlmoeTopKRouter: softmax, top-k divided by its sum under `if self.norm_topk_prob`; every layer routes
    "olmoe": {"moe": True, "moe_router": "softmax", "moe_renormalise": "config", "moe_shared": False,
              "moe_shared_gate": False, "moe_dense_layers": ()},
    # Qwen2MoeSparseMoeBlock: a shared expert scaled by sigmoid(shared_expert_gate); the layer tests
    # mlp_only_layers and decoder_sparse_step
    "qwen2_moe": {"moe": True, "moe_router": "softmax", "moe_renormalise": "config", "moe_shared": True,
                  "moe_shared_gate": True, "moe_dense_layers": ("mlp_only_layers", "decoder_sparse_step")},
    # Dots1MoE, built only where layer_idx >= first_k_dense_replace (the module tree's layer 0 is dense): sigmoid,
    # a score-correction bias on the router, top-k divided by a local `denominator` under norm_topk_prob, times
    # routed_scaling_factor, group-limited by n_group
    "dots1": {"moe": True, "moe_router": "sigmoid", "moe_renormalise": "config", "moe_routed_scaling": True,
              "moe_correction_bias": True, "moe_grouped_topk": True, "moe_shared": True, "moe_shared_gate": False,
              "moe_dense_layers": ("first_k_dense_replace",)},
    # ExaoneMoeDecoderLayer: `MoE(config) if config.mlp_layer_types[layer_idx] == "sparse" else MLP(config)`
    "exaone_moe": {"moe": True, "moe_router": "sigmoid", "moe_correction_bias": True, "moe_shared": True,
                   "moe_dense_layers": ("mlp_layer_types",)},
    # FlexOlmoTopKRouter: softmax under norm_topk_prob, every layer routes
    "flex_olmo": {"moe": True, "moe_router": "softmax", "moe_renormalise": "config", "moe_correction_bias": False,
                  "moe_grouped_topk": False, "moe_dense_layers": ()},
    # GraniteMoeTopKGating: a softmax over the top-k logits (renormalised); experts stacked in 3-D tensors, their
    # gate product in GraniteMoeMoE.forward
    "granitemoe": {"moe": True, "moe_router": "softmax", "moe_renormalise": "always", "mlp": "gated",
                   "moe_dense_layers": ()},
    # Glm4MoeMoE with n_group 2: group-limited top-k on
    "glm4_moe_grouped": {"moe": True, "moe_router": "sigmoid", "moe_grouped_topk": True, "moe_correction_bias": True,
                         "moe_routed_scaling": True, "moe_dense_layers": ("first_k_dense_replace",)},
    # Ernie4_5_MoeTopKRouter: softmax chosen through moe_statics' bias, always divided by its (clamped) sum; the
    # layer routes by moe_layer_interval / start / end
    "ernie4_5_moe": {"moe": True, "moe_router": "softmax", "moe_renormalise": "always", "moe_correction_bias": True,
                     "moe_shared": True,
                     "moe_dense_layers": ("moe_layer_interval", "moe_layer_start_index", "moe_layer_end_index")},
}


@pytest.mark.parametrize("family", sorted(MOE_TRAITS))
def test_moe_traits_are_read_and_implemented(family: str) -> None:
    result, _config, _rules = _spec_for(family)
    assert result.complete, result.missing
    for key, expected in MOE_TRAITS[family].items():
        assert result.spec[key] == expected, f"{family}: spec[{key!r}] = {result.spec[key]!r}, expected {expected!r}"
    assert "moe" in {e.id for e in result.applied}


def test_moe_variants_outside_the_catalog_are_named() -> None:
    """A router that scores some other way and a layer test on keys the template does not read are named as
    missing rows, not silently routed."""
    result, config, rules = _spec_for("olmoe")
    anatomy = make_plan("olmoe", config, load_checkpoint(open_source(str(family_twin_dir("olmoe")))),
                        donor="llama3").anatomy
    assert anatomy is not None
    anatomy.add("moe.router", "sparsemixer", "modeling", "PhimoeTopKRouter.forward")
    anatomy.add("moe.dense_layers", ["moe_every_other"], "modeling", "builds self.mlp under a test")
    missing = build_spec(anatomy, config, rules).missing
    assert {m.trait for m in missing} == {"moe.router", "moe.dense_layers"}
    assert result.complete


def test_written_port_parses_and_marks_missing_deltas() -> None:
    # DiffLlama as it was before the catalog wrote differential attention: plain attention stands in, the row is open
    result, config, rules = _spec_for("diffllama")
    traits = replace(result.traits, differential_attention=False)
    request = PortRequest(port_names(config["architectures"][0], "diffllama"), config, traits, rules=tuple(rules),
                          missing=(("differential_attention", "not written yet"),))
    files = port_files(request)
    assert set(files) == {"__init__.py", "arch.py", "model_config.py", "model.py", "weight_adapters.py", "diffllama.py"}
    graph = files["diffllama.py"]
    assert "# TODO(delta differential_attention)" in graph
    assert "NOT implemented" in (ast.get_docstring(ast.parse(graph)) or "")
    assert "SPEC" not in graph and "TRAITS" not in graph and "_differential" not in graph


def test_differential_attention_is_read_and_written() -> None:
    result, config, rules = _spec_for("diffllama")
    assert result.complete, result.missing
    assert result.spec["differential_attention"] is True and result.spec["attention_output_norm"] is False
    assert "differential_attention" in rules and "sub_norms" not in rules and "unexplained_weights" not in rules
    rows = {r["rule"]: r for r in entry_rows(result, tuple(rules))}
    assert rows["differential_attention"]["status"] == "implemented"
    request = PortRequest(port_names(config["architectures"][0], "diffllama"), config, result.traits,
                          rules=tuple(rules))
    graph = port_files(request)["diffllama.py"]
    assert "def _differential" in graph and "def _written_out" in graph and "def differential_lambda_init" in graph
    assert "lambda_q1" in graph and "softcap" not in graph.replace("softcap_kv_len", "")
    assert "TODO(delta" not in graph


def test_differential_lambda_init_follows_the_layer_schedule() -> None:
    from import_model.port.template.decoder import differential_lambda_init

    assert differential_lambda_init(0) == pytest.approx(0.2)
    assert differential_lambda_init(3) == pytest.approx(0.8 - 0.6 * math.exp(-0.9))


def test_a_learned_norm_on_the_head_pairs_is_named_missing() -> None:
    source = open_source(str(family_twin_dir("diffllama")))
    config = load_config(source)
    anatomy = make_plan(source.display, config, load_checkpoint(source), donor="llama3").anatomy
    assert anatomy is not None
    anatomy.add("attention.differential_norm_weight", True, "checkpoint", "test: a weight on the head-pair norm")
    missing = build_spec(anatomy, config).missing
    assert [m.trait for m in missing] == ["attention.differential_norm_weight"]


def test_xielu_is_written_with_its_learned_scalars() -> None:
    result, config, rules = _spec_for("apertus")
    assert result.complete and result.spec["activation"] == "xielu"
    request = PortRequest(port_names(config["architectures"][0], "apertus"), config, result.traits, rules=tuple(rules))
    graph = port_files(request)["apertus.py"]
    assert "class XIELU(Module)" in graph and "self.act_fn = XIELU(dtype, device)" in graph
    assert "ops.silu" not in graph


def test_gemma2_attention_softcap_is_in_the_catalog() -> None:
    result, _config, rules = _spec_for("gemma2")
    assert result.complete and result.spec["attention_softcap"] and result.spec["final_softcap"]
    assert "attention_softcap" in {e.id for e in result.applied}


@pytest.mark.parametrize(("family", "query", "rotary"), [("youtu", "low_rank_query", "interleaved"),
                                                          ("youtu_direct", "direct_query", "half_split")])
def test_latent_attention_is_in_the_catalog(family: str, query: str, rotary: str) -> None:
    """MLA with low-rank or direct queries is written as LatentAttention over the paged cache, no q/k/v projections."""
    result, config, rules = _spec_for(family)
    assert result.complete, result.missing
    assert result.spec["latent_attention"] == query and result.spec["rotary_style"] == rotary
    assert "latent_attention" in {e.id for e in result.applied}
    request = PortRequest(port_names(config["architectures"][0], family), config, result.traits, rules=tuple(rules))
    files = port_files(request)
    graph = next(text for name, text in files.items() if name not in
                 {"__init__.py", "arch.py", "model_config.py", "model.py", "weight_adapters.py"})
    assert "class LatentAttention(Module)" in graph and "flash_attention_ragged" in graph
    assert ("self.q_a_proj" in graph) == (query == "low_rank_query") and ("self.q_proj" in graph) != (
        query == "low_rank_query")
    assert "self.k_proj" not in graph and "class PortAttention" not in graph
    assert "LatentCache(config)" in files["model_config.py"]


def test_latent_attention_variants_outside_the_catalog_are_named() -> None:
    """Latent norms with another eps, or latent attention with a sliding window, are missing rows."""
    _result, config, rules = _spec_for("youtu")
    anatomy = make_plan("youtu", config, load_checkpoint(open_source(str(family_twin_dir("youtu")))),
                        donor="llama3").anatomy
    assert anatomy is not None
    anatomy.add("attention.latent_norm_eps", 1e-5, "modeling", "q_a_layernorm is built with eps=1e-05")
    anatomy.add("attention.sliding_window", "all", "modeling", "every layer slides")
    result = build_spec(anatomy, config, rules)
    assert {m.trait for m in result.missing} == {"attention.family", "attention.sliding_window"}
    rows = {r["rule"]: r for r in entry_rows(result, tuple(rules))}
    assert rows["attention_family"]["status"] == "missing" and "eps=1e-05" in rows["attention_family"]["how"]


def test_latent_attention_scale_and_cache_follow_the_modeling_code(monkeypatch: Any) -> None:
    """The softmax scale is HF's (mscale squared under YaRN's mscale_all_dim, which the catalog reads from Youtu's
    code); the cache holds one key-wide head per query head."""
    from transformers import YoutuConfig
    from transformers.models.youtu.modeling_youtu import YoutuAttention

    from import_model.port.template import decoder
    from import_model.port.template.decoder import LatentCache, latent_attention_scale

    result, _config, _rules = _spec_for("youtu")
    assert result.spec["latent_mscale"] is True
    monkeypatch.setattr(decoder, "TRAITS", result.traits)

    for rope in ({"rope_type": "default", "rope_theta": 10000.0},
                 {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0, "mscale": 1.0, "mscale_all_dim": 1.0,
                  "original_max_position_embeddings": 4096, "beta_fast": 32, "beta_slow": 1}):
        config = YoutuConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=4, q_lora_rank=48,
                             kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
                             rope_parameters=rope)
        assert latent_attention_scale(config) == pytest.approx(YoutuAttention(config, 0).scaling, rel=1e-12)
    view = LatentCache(config)
    assert (view.num_key_value_heads, view.head_dim, view.kv_lora_rank) == (4, 24, 32)


def test_alibi_scaled_with_the_scores_is_named_missing() -> None:
    """Falcon with alibi: true divides the bias by the scores' scale (and builds it in bfloat16): not the catalog's
    ALiBi, so the row is missing rather than silently BLOOM's."""
    source = open_source(str(family_twin_dir("falcon")))
    config = {**load_config(source), "alibi": True}
    plan = make_plan(source.display, config, load_checkpoint(source), donor="llama3")
    assert plan.anatomy is not None and plan.anatomy.value("attention.position_bias") == "alibi_scaled"
    result = build_spec(plan.anatomy, config, [d.rule for d in plan.deltas])
    assert result.spec["alibi"] is False and {m.rule for m in result.missing} == {"alibi"}
    default, _config, _rules = _spec_for("falcon")  # alibi: false switches the builder off
    assert default.spec["alibi"] is False and "alibi" not in {m.rule for m in default.missing}


def test_a_residual_taken_from_the_normed_input_is_read() -> None:
    """BLOOM with apply_residual_connection_post_layernorm: the block's code makes the normed input the residual each
    sublayer adds back; the norms stay where they were (pre-norm), and the default keeps the block input."""
    source = open_source(str(family_twin_dir("bloom")))
    config = {**load_config(source), "apply_residual_connection_post_layernorm": True}
    plan = make_plan(source.display, config, load_checkpoint(source), donor="llama3")
    result = build_spec(plan.anatomy, config, [d.rule for d in plan.deltas])
    assert result.complete and result.spec["residual_from_normed"] and result.spec["block_norms"] == PRE
    assert "residual_source" in {e.id for e in result.applied}
    default, _config, _rules = _spec_for("bloom")
    assert default.spec["residual_from_normed"] is False


def test_alibi_slopes_follow_the_standard_schedule() -> None:
    import numpy as np
    import torch
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    from import_model.port.template.decoder import alibi_slopes

    for heads in (4, 6, 12, 20):
        reference = build_alibi_tensor(torch.ones(1, 2), heads, torch.float32).reshape(heads, 2)[:, 1].numpy()
        np.testing.assert_allclose(alibi_slopes(heads), reference, rtol=1e-6)


def test_catalog_entries_are_unique_and_described() -> None:
    ids = [e.id for e in CATALOG]
    assert len(ids) == len(set(ids))
    assert all(e.summary and e.rules for e in CATALOG)


def test_rope_per_layer_type_reaches_the_decoder_through_the_donor_view(tmp_path: Any, monkeypatch: Any) -> None:
    """Gemma 3's sliding layers rotate with their own base (10000), its full layers with the global one (1e6), as
    HF's rotary embedding computes them, although the donor's config view flattens rope_parameters for the donor."""
    import importlib
    import json

    import numpy as np
    import torch
    from transformers import AutoConfig
    from transformers.models.gemma3.modeling_gemma3 import Gemma3RotaryEmbedding

    from tests.support.ports import renamed_checkpoint

    twin = renamed_checkpoint(family_twin_dir("gemma3_text"), tmp_path / "twin", "Gemma3RopeCheckForCausalLM")
    config = json.loads((twin / "config.json").read_text())
    result, _, rules = _spec_for("gemma3_text")
    assert result.traits.rope_per_layer_type
    names = port_names("Gemma3RopeCheckForCausalLM", "gemma3_rope_check")
    request = PortRequest(names, config, result.traits, rules=tuple(rules))
    package = tmp_path / "ports" / names.slug
    package.mkdir(parents=True)
    for name, text in port_files(request).items():
        (package / name).write_text(text)
    monkeypatch.syspath_prepend(str(package.parent))
    decoder = importlib.import_module(f"{names.slug}.{names.slug}")
    view = importlib.import_module(f"{names.slug}.model_config").donor_view(AutoConfig.from_pretrained(str(twin)))
    assert view.rope_parameters["rope_theta"] == 1e6  # what the donor reads
    sliding = decoder.sliding_layers(view)
    tables = decoder.rotary_tables(view, decoder.head_dim_of(view), 16, sliding)
    hf = Gemma3RotaryEmbedding(view.family_config)
    for layer, slides in enumerate(sliding):
        cos, sin = hf(torch.zeros(1, 16, 1), torch.arange(16)[None], layer_type="sliding_attention" if slides
                      else "full_attention")
        half = cos.shape[-1] // 2
        expected = np.stack([cos[0, :, :half].numpy(), sin[0, :, :half].numpy()], axis=-1).reshape(16, -1)
        np.testing.assert_allclose(tables[layer].table, expected, atol=1e-5, err_msg=f"layer {layer}")
    assert sliding == [True] * 5 + [False]


#: A small Gemma 4 text model: 5 sliding layers of head 32, one full-attention layer of head 64, per-layer inputs.
GEMMA4_SMALL = {"hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 6, "num_attention_heads": 4,
                "num_key_value_heads": 2, "head_dim": 32, "global_head_dim": 64, "hidden_size_per_layer_input": 16,
                "vocab_size": 512, "vocab_size_per_layer_input": 512, "sliding_window": 128,
                "layer_types": ["sliding_attention"] * 5 + ["full_attention"]}


def _gemma4_spec(tmp_path: Any, model_type: str, architecture: str, **extra: Any) -> tuple[Any, Any, list[str]]:
    from transformers import AutoConfig

    from import_model.verify.twin import make_twin

    fields = {k: v for k, v in GEMMA4_SMALL.items() if model_type == "gemma4_text" or "per_layer" not in k}
    config = AutoConfig.for_model(model_type, **fields, **extra).to_dict() | {"architectures": [architecture]}
    source = open_source(str(make_twin(config, tmp_path / model_type).path))
    config = load_config(source)
    plan = make_plan(source.display, config, load_checkpoint(source), donor="llama3")
    assert plan.anatomy is not None
    rules = [d.rule for d in plan.deltas]
    return build_spec(plan.anatomy, config, rules), config, rules


def test_gemma4_per_layer_inputs_layer_scalar_value_norm_and_wider_full_heads_are_written(tmp_path: Any) -> None:
    """Gemma 4 text: told apart by shapes (a second token table layers * 16 wide, the q projection of the one
    full-attention layer twice as wide), not by name; every checkpoint tensor is explained, the port is complete."""
    result, config, rules = _gemma4_spec(tmp_path, "gemma4_text", "Gemma4ForCausalLM")
    assert result.complete, [m.reason for m in result.missing]
    assert {"per_layer_inputs", "layer_scalar", "value_norm", "full_head_dim"} <= set(rules)
    assert "unexplained_weights" not in rules and "head_transform" not in rules  # the backbone is no head transform
    spec = result.spec
    assert spec["per_layer_inputs"] and spec["layer_scalar"] and spec["value_norm"] and spec["full_head_dim"]
    request = PortRequest(port_names("Gemma4ForCausalLM", "gemma4_text"), config, result.traits, rules=tuple(rules))
    files = port_files(request)
    graph = files["gemma4_text.py"]
    assert "def per_layer_inputs(self" in graph and "self.layer_scalar = Weight(" in graph
    assert "self.v_norm = WeightlessNorm(" in graph and "def zero_padded(" in graph
    assert "HeadWidthView(config, widest_head_dim(config))" in files["model_config.py"]


def test_gemma4_full_heads_with_other_kv_heads_are_named_missing(tmp_path: Any) -> None:
    """Keys equal to values with their own KV head count on the full layers (attention_k_eq_v): the wider heads
    are not the catalog's form, and the port says so."""
    result, _config, _rules = _gemma4_spec(tmp_path, "gemma4_text", "Gemma4ForCausalLM", attention_k_eq_v=True,
                                           num_global_key_value_heads=1)
    assert any(m.trait == "attention.full_head_dim" for m in result.missing)
    assert not result.spec["full_head_dim"]


def test_gemma4_unified_text_has_no_per_layer_inputs(tmp_path: Any) -> None:
    result, _config, rules = _gemma4_spec(tmp_path, "gemma4_unified_text", "Gemma4UnifiedForCausalLM")
    assert result.complete, [m.reason for m in result.missing]
    assert not result.spec["per_layer_inputs"] and result.spec["layer_scalar"] and result.spec["full_head_dim"]
    assert "per_layer_inputs" not in rules
