"""Config map, key patterns, memory estimates and the static MAX registry."""

from __future__ import annotations

import json
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from import_model.procs import child_env
from import_model.recon import config_map, keys, registry
from import_model.recon.native_caveats import native_caveats
from import_model.source.safetensors_header import TensorInfo


def _roles(config: dict) -> dict[str, str]:
    return {row.key: row.role for row in config_map.map_config(config)}


def test_config_roles_follow_the_table() -> None:
    roles = _roles({
        "hidden_size": 64, "rms_norm_eps": 1e-6, "partial_rotary_factor": 0.5, "attention_bias": False,
        "mlp_bias": True, "hidden_act": "gelu_pytorch_tanh", "initializer_range": 0.02, "eos_token_id": 2,
        "rope_scaling": {"rope_type": "yarn", "factor": 4.0}, "brand_new_knob": 7,
    })
    assert roles["hidden_size"] == config_map.WIRED
    assert roles["partial_rotary_factor"] == config_map.GRAPH
    assert roles["attention_bias"] == config_map.WIRED  # off: nothing to implement
    assert roles["mlp_bias"] == config_map.GRAPH
    assert roles["hidden_act"] == config_map.GRAPH
    assert roles["initializer_range"] == config_map.IGNORED
    assert roles["eos_token_id"] == config_map.SERVING
    assert roles["rope_scaling.rope_type"] == config_map.GRAPH  # yarn: the donor lacks it
    assert roles["rope_scaling.factor"] == config_map.WIRED
    assert roles["brand_new_knob"] == config_map.UNKNOWN


def test_silu_and_default_rope_need_no_graph_code() -> None:
    roles = _roles({"hidden_act": "silu", "rope_parameters": {"rope_type": "default", "rope_theta": 1e4}})
    assert roles["hidden_act"] == config_map.WIRED
    assert roles["rope_parameters.rope_type"] == config_map.WIRED


def test_text_config_keys_map_like_top_level() -> None:
    roles = _roles({"text_config": {"hidden_size": 8, "final_logit_softcapping": 30.0}, "vision_config": {"depth": 2}})
    assert roles["text_config.hidden_size"] == config_map.WIRED
    assert roles["text_config.final_logit_softcapping"] == config_map.GRAPH
    assert roles["vision_config.depth"] == config_map.GRAPH


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(config_map.CONFIG_KEYS) + ["x", "text_config"]),
                       st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
                                    lambda s: st.lists(s, max_size=3) | st.dictionaries(st.text(max_size=4), s, max_size=3),
                                    max_leaves=10), max_size=8))
def test_config_map_takes_any_json_types(config: dict) -> None:
    rows = config_map.map_config(config)
    assert {row.key for row in rows} >= set(config)


def test_key_patterns_collapse_layers_and_experts() -> None:
    tensors = [
        TensorInfo(f"model.layers.{i}.mlp.experts.{j}.w1.weight", "BF16", (8, 4), "s") for i in range(3) for j in range(2)
    ] + [TensorInfo("model.embed_tokens.weight", "BF16", (10, 4), "s")]
    rows = {row.pattern: row for row in keys.summarize_keys(tensors)}
    row = rows["model.layers.{i}.mlp.experts.{j}.w1.weight"]
    assert row.count == 6 and row.params == 6 * 32 and row.shape_text == "8x4"
    assert rows["model.embed_tokens.weight"].count == 1


def test_memory_estimates_scale_with_encoding() -> None:
    config = {"num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "hidden_size": 4096}
    rows = {row["encoding"]: row for row in keys.memory_estimates(8_000_000_000, config)}
    assert rows["bfloat16"]["weight_bytes"] == 16_000_000_000
    assert rows["float32"]["weight_bytes"] == 2 * rows["bfloat16"]["weight_bytes"]
    assert rows["q4_k"]["weight_bytes"] < rows["bfloat16"]["weight_bytes"] / 3
    # 2 (K,V) x 32 layers x 8 kv heads x 128 head_dim x 2 bytes, for 8192 tokens
    assert rows["bfloat16"]["kv_cache_bytes_8k_tokens"] == 2 * 32 * 8 * 128 * 2 * 8192
    assert rows["bfloat16"]["fits_one_80gb_gpu"]
    huge = {row["encoding"]: row for row in keys.memory_estimates(400_000_000_000, config)}
    assert not huge["bfloat16"]["fits_one_80gb_gpu"]


def test_registry_is_read_from_the_installed_max_tree() -> None:
    archs = registry.native_architectures(use_cache=False)
    by_name = {a.name: a for a in archs if a.is_text_generation}
    # Every registered slug is a real directory of the installed MAX.
    root = registry.architectures_dir()
    assert all((root / a.slug).is_dir() for a in archs)
    assert by_name["LlamaForCausalLM"].slug == "llama3"
    assert by_name["LlamaForCausalLM"].is_donor
    assert "float32" in by_name["LlamaForCausalLM"].supported_encodings
    assert "HeliumForCausalLM" not in by_name
    assert not any(a.is_donor for a in archs if "Eagle" in a.name)
    assert registry.native_architectures() == archs  # the cached read agrees with the scan


def test_registry_does_not_import_max() -> None:
    code = (
        "import sys\n"
        "from import_model.recon.registry import native_architectures\n"
        "native_architectures(use_cache=False)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'max' or m.startswith('max.'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, check=True,
                         env=child_env())
    assert json.loads(out.stdout) == []


def test_native_caveats_match_the_configs_that_show_them() -> None:
    """Pinned by docs/verify-matrix.md: each applies only where the difference can show."""
    phi35 = {"max_position_embeddings": 131072, "original_max_position_embeddings": 4096,
             "rope_parameters": {"rope_type": "longrope"}}
    assert len(native_caveats("Phi3ForCausalLM", phi35)) == 1
    assert native_caveats("Phi3ForCausalLM", {**phi35, "max_position_embeddings": 4096}) == []
    assert native_caveats("Phi3ForCausalLM", {"rope_parameters": {"rope_type": "default"}}) == []
    mistral = {"sliding_window": 4096, "max_position_embeddings": 32768}
    assert "sliding_window" in native_caveats("MistralForCausalLM", mistral)[0]
    assert native_caveats("MistralForCausalLM", {**mistral, "sliding_window": None}) == []
    assert native_caveats("LlamaForCausalLM", mistral) == []
    assert native_caveats("MistralForCausalLM", {"sliding_window": "x", "max_position_embeddings": None}) == []


def test_registry_marks_every_registration_by_task() -> None:
    """PipelineTask and input_modalities are read for every registration, copies and speculators included."""
    archs = registry.native_architectures(use_cache=False)
    assert "unknown" not in {a.task for a in archs}
    assert {"TEXT_GENERATION", "EMBEDDINGS_GENERATION", "PIXEL_GENERATION"} <= {a.task for a in archs}
    by = {(a.name, a.slug): a for a in archs}
    bert = by[("BertModel", "bert")]
    assert (bert.task_label, bert.is_donor) == ("embeddings", False)
    gemma3 = by[("Gemma3ForConditionalGeneration", "gemma3multimodal")]
    assert gemma3.inputs == ["TEXT", "IMAGE"] and gemma3.task_label == "text generation, multimodal (image)"
    # dataclasses.replace(qwen3_5_arch, name=...): a text generation copy, whose base stays the donor.
    copy = by[("Qwen3_5ForCausalLM", "qwen3_5")]
    assert (copy.task, copy.derived_from, copy.config_class, copy.is_donor) == (
        "TEXT_GENERATION", "qwen3_5_arch", "Qwen3_5Config", False)
    assert by[("Qwen3_5ForConditionalGeneration", "qwen3_5")].is_donor
    # Speculator(base=deepseekV3_arch) in another architecture's folder: the base's task and config.
    eagle = by[("Eagle3DeepseekV3ForCausalLM", "eagle3_deepseekV3")]
    assert (eagle.task, eagle.derived_from, eagle.config_class) == ("TEXT_GENERATION", "deepseekV3_arch",
                                                                    "DeepseekV3Config")


def test_registry_follows_copies_across_modules(tmp_path) -> None:
    root = tmp_path / "architectures"
    (root / "base").mkdir(parents=True)
    (root / "copy").mkdir()
    (root / "__init__.py").write_text(
        "lazy = [_LazyArch('BaseForCausalLM', '.base', 'base_arch'),\n"
        "        _LazyArch('CopyForCausalLM', '.copy', 'copy_arch'),\n"
        "        _LazyArch('LoopForCausalLM', '.copy', 'loop_arch')]\n")
    (root / "base" / "arch.py").write_text(
        "base_arch = SupportedArchitecture(name='BaseForCausalLM', task=PipelineTask.EMBEDDINGS_GENERATION,\n"
        "    input_modalities={InputModality.IMAGE, InputModality.TEXT}, config=BaseConfig)\n")
    (root / "copy" / "arch.py").write_text(
        "from ..base.arch import base_arch\n"
        "copy_arch = dataclasses.replace(base_arch, name='CopyForCausalLM', config=None)\n"
        "loop_arch = replace(loop_arch, name='LoopForCausalLM')\n")
    archs = {a.name: a for a in registry._scan(root)}
    assert (archs["BaseForCausalLM"].task, archs["BaseForCausalLM"].inputs) == ("EMBEDDINGS_GENERATION",
                                                                                ["TEXT", "IMAGE"])
    copied = archs["CopyForCausalLM"]
    assert (copied.task, copied.config_class, copied.derived_from) == ("EMBEDDINGS_GENERATION", "BaseConfig",
                                                                       "base_arch")
    assert archs["LoopForCausalLM"].task == "unknown"  # a registration copied from itself ends, unread
