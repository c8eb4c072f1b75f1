"""The wall scanner on real families' configs, crafted checkpoints, and fuzzed junk."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import CONFIG_MAPPING

from import_model.recon import walls
from import_model.recon.walls import BLOCK, INFO, WARN, Finding, exit_code, scan_walls
from import_model.source.checkpoint import Checkpoint
from import_model.source.safetensors_header import DTYPE_BYTES, TensorInfo

REFERENCES = ("recognize-walls.md", "read-config-json.md", "distributed-transformer.md", "state-dict-audit.md",
              "map-to-max.md", "read-modeling-code.md")


def family_config(model_type: str, architecture: str | None, **overrides: object) -> dict:
    """A family's transformers defaults as config.json would hold them, plus ``architectures``."""
    config = CONFIG_MAPPING[model_type]().to_dict()
    config["architectures"] = [architecture] if architecture else None
    config.update(overrides)
    return json.loads(json.dumps(config))


def make_checkpoint(tensors: dict[str, tuple[str, tuple[int, ...]]], others: tuple[str, ...] = ()) -> Checkpoint:
    infos = {name: TensorInfo(name=name, dtype=dtype, shape=shape, shard="model.safetensors")
             for name, (dtype, shape) in tensors.items()}
    return Checkpoint(weight_format="safetensors", shards=["model.safetensors"], tensors=infos,
                      other_weight_files=list(others))


BF16_LLAMA = make_checkpoint({
    "model.embed_tokens.weight": ("BF16", (32000, 64)),
    "model.layers.0.self_attn.q_proj.weight": ("BF16", (64, 64)),
    "model.layers.0.mlp.down_proj.weight": ("BF16", (64, 128)),
    "model.norm.weight": ("BF16", (64,)),
    "lm_head.weight": ("BF16", (32000, 64)),
})


def codes(findings: list[Finding]) -> dict[str, str]:
    return {f.code: f.level for f in findings}


def by_code(findings: list[Finding], code: str) -> Finding:
    return next(f for f in findings if f.code == code)


# --------------------------------------------------------------------------- the table itself


def test_rule_table_is_well_formed() -> None:
    seen = set()
    for rule in walls.RULES:
        assert re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", rule.code), rule.code
        assert rule.code not in seen
        seen.add(rule.code)
        assert rule.level in (BLOCK, WARN, INFO)
        assert "{evidence}" in rule.reason
        assert rule.read_next.split(",")[0] in REFERENCES, rule.read_next


def test_exit_code_is_the_worst_level() -> None:
    def finding(level: str) -> Finding:
        return Finding(level, "x", "r", "recognize-walls.md")

    assert exit_code([]) == 0
    assert exit_code([finding(INFO)]) == 0
    assert exit_code([finding(INFO), finding(WARN)]) == 1
    assert exit_code([finding(WARN), finding(BLOCK), finding(INFO)]) == 2


# --------------------------------------------------------------------------- families that port


@pytest.mark.parametrize(("model_type", "architecture", "expected"), [
    ("llama", "LlamaForCausalLM", {}),
    ("helium", "HeliumForCausalLM", {}),
    ("stablelm", "StableLmForCausalLM", {}),
    ("cohere", "CohereForCausalLM", {}),
    ("starcoder2", "Starcoder2ForCausalLM", {}),
    ("mistral", "MistralForCausalLM", {}),
    ("gemma2", "Gemma2ForCausalLM", {"softcapping": INFO}),
])
def test_plain_decoders_are_clear(model_type: str, architecture: str, expected: dict[str, str]) -> None:
    findings = scan_walls(family_config(model_type, architecture), BF16_LLAMA, ["config.json", "model.safetensors"])
    assert codes(findings) == expected
    assert exit_code(findings) == 0


def test_softcapping_is_a_delta_quoting_both_caps() -> None:
    finding = by_code(scan_walls(family_config("gemma2", "Gemma2ForCausalLM"), BF16_LLAMA, []), "softcapping")
    assert "attn_logit_softcapping=50" in finding.reason
    assert "final_logit_softcapping=30" in finding.reason


def test_config_only_scan_says_weights_were_not_read() -> None:
    findings = scan_walls(family_config("llama", "LlamaForCausalLM"), None, ["config.json"])
    assert codes(findings) == {"weights-not-read": INFO}
    assert exit_code(findings) == 0


# --------------------------------------------------------------------------- hard walls in the config


@pytest.mark.parametrize(("config", "code", "quoted"), [
    (family_config("bloom", "BloomForCausalLM"), "alibi", "model_type 'bloom'"),
    (family_config("mpt", "MptForCausalLM"), "alibi", "attn_config.alibi: true"),
    (family_config("falcon", "FalconForCausalLM", alibi=True), "alibi", "alibi: true"),
    ({"model_type": "baichuan", "architectures": ["BaichuanForCausalLM"], "hidden_size": 5120,
      "num_hidden_layers": 40, "auto_map": {"AutoModelForCausalLM": "modeling_baichuan.BaichuanForCausalLM"}},
     "alibi", "hidden_size 5120"),
    ({"architectures": ["JAISLMHeadModel"], "model_type": "jais", "position_embedding_type": "alibi"},
     "alibi", "position_embedding_type: 'alibi'"),
    (family_config("mamba", "MambaForCausalLM"), "recurrent-layers", "model_type 'mamba'"),
    (family_config("mamba2", "Mamba2ForCausalLM"), "recurrent-layers", "model_type 'mamba2'"),
    (family_config("rwkv", "RwkvForCausalLM"), "recurrent-layers", "model_type 'rwkv'"),
    (family_config("jamba", "JambaForCausalLM"), "recurrent-layers", "model_type 'jamba'"),
    (family_config("falcon_h1", "FalconH1ForCausalLM"), "recurrent-layers", "model_type 'falcon_h1'"),
    (family_config("zamba2", "Zamba2ForCausalLM"), "recurrent-layers", "layers_block_type has 'mamba'"),
    (family_config("recurrent_gemma", "RecurrentGemmaForCausalLM"), "recurrent-layers", "block_types"),
    (family_config("lfm2", "Lfm2ForCausalLM", layer_types=["conv", "conv", "full_attention"]),
     "recurrent-layers", "'conv' in 2 of 3"),
    ({"architectures": ["NemotronHForCausalLM"], "model_type": "nemotron_h", "hybrid_override_pattern": "M-M*-M-"},
     "recurrent-layers", "hybrid_override_pattern"),
    ({"architectures": ["MambaLMHeadModel"], "d_model": 2560, "n_layer": 64, "ssm_cfg": {}},
     "recurrent-layers", "'ssm_cfg'"),
    (family_config("qwen3_next", "Qwen3NextForCausalLM"), "linear-attention", "'linear_attention'"),
    (family_config("t5", "T5ForConditionalGeneration"), "encoder-decoder", "is_encoder_decoder: true"),
    (family_config("bart", "BartForConditionalGeneration"), "encoder-decoder", "is_encoder_decoder: true"),
    (family_config("bert", "BertForMaskedLM"), "non-causal", "model_type 'bert'"),
    (family_config("bert", "BertForMaskedLM"), "task-head", "'BertForMaskedLM'"),
    (family_config("gemma2", "Gemma2ForCausalLM", use_bidirectional_attention=True), "non-causal",
     "use_bidirectional_attention: true"),
    (family_config("llama", "LlamaForSequenceClassification"), "task-head", "'LlamaForSequenceClassification'"),
    ({"hidden_size": 64}, "unidentified-model", "architectures null, model_type null"),
])
def test_hard_walls_block(config: dict, code: str, quoted: str) -> None:
    findings = scan_walls(config, BF16_LLAMA, [])
    assert codes(findings).get(code) == BLOCK, codes(findings)
    assert quoted in by_code(findings, code).reason
    assert exit_code(findings) == 2
    assert findings[0].level == BLOCK  # worst first


def test_mpt_prefix_lm_is_non_causal_as_well_as_alibi() -> None:
    config = family_config("mpt", "MptForCausalLM")
    config["attn_config"]["prefix_lm"] = True
    found = codes(scan_walls(config, BF16_LLAMA, []))
    assert found["alibi"] == BLOCK
    assert found["non-causal"] == BLOCK
    assert "attn_config.prefix_lm: true" in by_code(scan_walls(config, None, []), "non-causal").reason


def test_falcon_without_alibi_is_clear() -> None:
    findings = scan_walls(family_config("falcon", "FalconForCausalLM"), BF16_LLAMA, [])
    assert exit_code(findings) == 0


def test_hybrid_family_with_attention_only_layer_list_is_not_recurrent() -> None:
    """Granite 4 dense variants reuse the hybrid model type; the layer list is the truth."""
    config = family_config("granitemoehybrid", "GraniteMoeHybridForCausalLM", layer_types=["attention"] * 4,
                           num_local_experts=0)
    assert "recurrent-layers" not in codes(scan_walls(config, BF16_LLAMA, []))
    config["layer_types"] = ["mamba", "attention", "mamba", "mamba"]
    finding = by_code(scan_walls(config, BF16_LLAMA, []), "recurrent-layers")
    assert "'mamba' in 3 of 4 entries" in finding.reason


# --------------------------------------------------------------------------- warnings


@pytest.mark.parametrize(("model_type", "architecture", "quoted"), [
    ("olmoe", "OlmoeForCausalLM", "num_experts=64, num_experts_per_tok=8"),
    ("qwen2_moe", "Qwen2MoeForCausalLM", "num_experts=60, num_experts_per_tok=4"),
    ("mixtral", "MixtralForCausalLM", "num_local_experts=8, num_experts_per_tok=2"),
])
def test_moe_families_warn(model_type: str, architecture: str, quoted: str) -> None:
    findings = scan_walls(family_config(model_type, architecture), BF16_LLAMA, [])
    assert codes(findings) == {"moe": WARN}
    assert quoted in findings[0].reason
    assert findings[0].read_next.startswith("map-to-max.md")
    assert exit_code(findings) == 1


def test_deepseek_v3_release_shape() -> None:
    """DeepSeek-V3 as published: MLA, routed experts, repo code, FP8 block-scaled weights."""
    config = family_config(
        "deepseek_v3", "DeepseekV3ForCausalLM",
        auto_map={"AutoConfig": "configuration_deepseek.DeepseekV3Config",
                  "AutoModelForCausalLM": "modeling_deepseek.DeepseekV3ForCausalLM"},
        quantization_config={"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                             "weight_block_size": [128, 128]},
    )
    weights = make_checkpoint({
        "model.embed_tokens.weight": ("BF16", (129280, 64)),
        "model.layers.0.mlp.down_proj.weight": ("F8_E4M3", (64, 128)),
        "model.layers.0.mlp.down_proj.weight_scale_inv": ("F32", (1, 1)),
        "model.layers.0.self_attn.kv_a_proj_with_mqa.weight": ("F8_E4M3", (576, 64)),
    })
    files = ["config.json", "configuration_deepseek.py", "modeling_deepseek.py", "model.safetensors"]
    findings = scan_walls(config, weights, files)
    assert codes(findings) == {
        "quantized-weights": BLOCK, "mla": WARN, "moe": WARN, "remote-code": WARN, "repo-python": INFO,
    }
    assert "kv_lora_rank=512, q_lora_rank=1536" in by_code(findings, "mla").reason
    quantized = by_code(findings, "quantized-weights").reason
    assert "F8_E4M3 on 2 tensors" in quantized
    assert "quant_method 'fp8'" in quantized
    assert "F32 on 1 tensors" in quantized  # the weight_scale_inv key
    assert by_code(findings, "mla").read_next == "map-to-max.md, then the repo's modeling_deepseek.py"
    assert exit_code(findings) == 2


def test_deepseek_v3_config_alone_warns_for_mla() -> None:
    findings = scan_walls(family_config("deepseek_v3", "DeepseekV3ForCausalLM"), BF16_LLAMA, [])
    assert codes(findings) == {"mla": WARN, "moe": WARN}


@pytest.mark.parametrize(("model_type", "architecture", "quoted"), [
    ("llava", "LlavaForConditionalGeneration", "vision_config, image_token_index"),
    ("qwen2_vl", "Qwen2VLForConditionalGeneration", "vision_config, image_token_id, video_token_id"),
])
def test_multimodal_warns(model_type: str, architecture: str, quoted: str) -> None:
    findings = scan_walls(family_config(model_type, architecture), BF16_LLAMA, [])
    assert codes(findings) == {"multimodal": WARN}
    assert quoted in findings[0].reason


def test_differential_attention_and_sinks_warn() -> None:
    found = codes(scan_walls(family_config("diffllama", "DiffLlamaForCausalLM"), BF16_LLAMA, []))
    assert found == {"differential-attention": WARN}
    sinks = make_checkpoint({"model.layers.0.self_attn.sinks": ("BF16", (8,)), "lm_head.weight": ("BF16", (8, 8))})
    finding = by_code(scan_walls(family_config("llama", "LlamaForCausalLM"), sinks, []), "attention-sinks")
    assert "model.layers.0.self_attn.sinks" in finding.reason


def test_rope_scaling() -> None:
    gpt_oss = scan_walls(family_config("gpt_oss", "GptOssForCausalLM"), BF16_LLAMA, [])
    assert codes(gpt_oss) == {"attention-sinks": WARN, "moe": WARN, "long-rope": WARN}
    assert "rope_type 'yarn', factor 32" in by_code(gpt_oss, "long-rope").reason

    llama31 = family_config("llama", "LlamaForCausalLM", rope_scaling={
        "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192, "rope_type": "llama3"})
    assert codes(scan_walls(llama31, BF16_LLAMA, [])) == {"rope-scaling": INFO}

    phi3 = family_config("phi3", "Phi3ForCausalLM", rope_scaling={"type": "longrope", "short_factor": [1.0],
                                                                   "long_factor": [2.0]})
    assert "rope_scaling: rope_type 'longrope'" in by_code(scan_walls(phi3, BF16_LLAMA, []), "long-rope").reason

    gemma3 = family_config("gemma3_text", "Gemma3ForCausalLM")
    gemma3["rope_parameters"]["full_attention"] = {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6}
    finding = by_code(scan_walls(gemma3, BF16_LLAMA, []), "rope-scaling")
    assert "rope_parameters.full_attention: rope_type 'linear', factor 8" in finding.reason


def test_architecture_class_checks() -> None:
    base = scan_walls(family_config("llama", "LlamaModel"), BF16_LLAMA, [])
    assert codes(base) == {"base-model-only": WARN}
    odd = scan_walls(family_config("llama", "LlamaSomethingNew"), BF16_LLAMA, [])
    assert codes(odd) == {"unknown-head": WARN}
    missing = scan_walls(family_config("llama", None), BF16_LLAMA, [])
    assert codes(missing) == {"missing-architectures": WARN}
    assert "model_type 'llama'" in missing[0].reason


# --------------------------------------------------------------------------- remote code


def test_auto_map_for_a_native_model_type_warns() -> None:
    config = family_config("qwen2", "Qwen2ForCausalLM",
                           auto_map={"AutoModelForCausalLM": "modeling_qwen.QWenLMHeadModel"})
    findings = scan_walls(config, BF16_LLAMA, ["config.json", "modeling_qwen.py"])
    assert codes(findings) == {"remote-code": WARN, "repo-python": INFO}
    remote = by_code(findings, "remote-code")
    assert "auto_map.AutoModelForCausalLM -> 'modeling_qwen.QWenLMHeadModel'" in remote.reason
    assert remote.read_next == "read-modeling-code.md, then the repo's modeling_qwen.py"


def test_auto_map_for_an_unknown_model_type_blocks() -> None:
    config = {"architectures": ["ChatGLMModel"], "model_type": "chatglm",
              "auto_map": {"AutoConfig": "configuration_chatglm.ChatGLMConfig",
                           "AutoModelForCausalLM": "org/other-repo--modeling_chatglm.ChatGLMForConditionalGeneration"}}
    findings = scan_walls(config, BF16_LLAMA, ["modeling_chatglm.py"])
    assert codes(findings)["remote-code-only"] == BLOCK
    finding = by_code(findings, "remote-code-only")
    assert "model_type 'chatglm' unknown to the installed transformers" in finding.reason
    assert "verify --trust-remote-code" in finding.reason and "executes the repo's Python" in finding.reason
    assert finding.read_next == "recognize-walls.md, then the repo's modeling_chatglm.py"
    assert exit_code(findings) == 2


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize(("tensors", "quant_config", "quoted"), [
    ({"model.layers.0.mlp.down_proj.weight": ("F8_E5M2", (8, 8))}, None, "F8_E5M2 on 1 tensors"),
    ({"model.layers.0.mlp.down_proj.qweight": ("I32", (1, 8)), "model.layers.0.mlp.down_proj.scales": ("F16", (1, 8))},
     {"quant_method": "gptq", "bits": 4}, "quant_method 'gptq'"),
    ({"model.layers.0.mlp.down_proj.weight": ("U8", (32, 1)),
      "model.layers.0.mlp.down_proj.weight.absmax": ("F32", (4,))},
     {"quant_method": "bitsandbytes", "load_in_4bit": True}, "U8 on 1 tensors"),
    ({"model.layers.0.mlp.down_proj.weight": ("I8", (8, 8))}, None, "I8 on 1 tensors"),
    ({"model.layers.0.mlp.experts.down_proj_blocks": ("U8", (8, 8, 16)),
      "model.layers.0.mlp.experts.down_proj_scales": ("U8", (8, 8))}, {"quant_method": "mxfp4"}, "mxfp4"),
    ({"model.layers.0.mlp.down_proj.weight": ("F4", (8, 8))}, {"quant_method": "compressed-tensors"},
     "quant_method 'compressed-tensors'"),
])
def test_quantized_weights_block(tensors: dict, quant_config: dict | None, quoted: str) -> None:
    config = family_config("llama", "LlamaForCausalLM")
    if quant_config:
        config["quantization_config"] = quant_config
    findings = scan_walls(config, make_checkpoint(tensors), [])
    assert codes(findings) == {"quantized-weights": BLOCK}
    assert quoted in findings[0].reason


def test_quantization_config_without_weights_warns_and_with_full_precision_weights_is_info() -> None:
    config = family_config("llama", "LlamaForCausalLM", quantization_config={"quant_method": "awq", "bits": 4})
    unverified = scan_walls(config, None, [])
    assert codes(unverified) == {"quantization-config": WARN, "weights-not-read": INFO}
    assert "quantization_config.quant_method 'awq'" in unverified[0].reason
    unused = scan_walls(config, BF16_LLAMA, [])
    assert codes(unused) == {"quantization-config-unused": INFO}


@pytest.mark.parametrize(("checkpoint", "code", "quoted"), [
    (Checkpoint(weight_format="pickle", other_weight_files=["pytorch_model.bin"]), "pickle-only", "pytorch_model.bin"),
    (Checkpoint(weight_format="gguf", other_weight_files=["model-q4_k_m.gguf"]), "gguf-only", "model-q4_k_m.gguf"),
    (Checkpoint(weight_format="none"), "no-weights", "no .safetensors"),
    (Checkpoint(weight_format="safetensors", shards=["model.safetensors"]), "no-weights", "declaring no tensors"),
])
def test_unusable_weight_formats_block(checkpoint: Checkpoint, code: str, quoted: str) -> None:
    findings = scan_walls(family_config("llama", "LlamaForCausalLM"), checkpoint, [])
    assert codes(findings) == {code: BLOCK}
    assert quoted in findings[0].reason
    assert findings[0].read_next == "state-dict-audit.md"


def test_pickle_next_to_safetensors_is_info() -> None:
    weights = make_checkpoint({"lm_head.weight": ("BF16", (8, 8))}, others=("pytorch_model.bin",))
    findings = scan_walls(family_config("llama", "LlamaForCausalLM"), weights, [])
    assert codes(findings) == {"side-weight-files": INFO}


def test_checkpoint_too_big_for_one_gpu_is_info() -> None:
    huge = make_checkpoint({"model.embed_tokens.weight": ("BF16", (200_000, 200_000))})
    findings = scan_walls(family_config("llama", "LlamaForCausalLM"), huge, [])
    assert codes(findings) == {"multi-gpu-size": INFO}
    assert findings[0].reason.startswith("80.0 GB of weights")
    assert findings[0].read_next == "distributed-transformer.md"
    assert exit_code(findings) == 0


# --------------------------------------------------------------------------- hostile input

#: Every key some rule reads, so fuzzing reaches the detectors and not just the early exits.
RULE_KEYS = sorted({
    "model_type", "architectures", "auto_map", "quantization_config", "compression_config", "is_encoder_decoder",
    "hidden_size", "encoder_layers", "text_config", "attn_config", "ffn_config", "llm_config", "kv_lora_rank",
    "q_lora_rank", *walls.ALIBI_FLAGS, *walls.POSITION_KIND_KEYS, *walls.LAYER_LIST_KEYS, *walls.RECURRENT_KEYS,
    *walls.LINEAR_ATTENTION_KEYS, *walls.BIDIRECTIONAL_FLAGS, *walls.CAUSAL_FLAGS, *walls.MULTIMODAL_KEYS,
    *walls.DIFFERENTIAL_KEYS, *walls.SINK_KEYS, *walls.SOFTCAP_KEYS, *walls.EXPERT_COUNT_KEYS,
    *walls.EXPERTS_PER_TOKEN_KEYS, *walls.ROPE_KEYS, "num_decoder_layers", "decoder_layers", "ssm_cfg",
})
MODEL_TYPES = ["bloom", "mpt", "baichuan", "mamba", "qwen3_next", "t5", "bert", "gpt_oss", "diffllama", "llama", ""]

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars | st.sampled_from(MODEL_TYPES + ["mamba", "linear_attention", "alibi", "longrope", "conv"]),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.sampled_from(RULE_KEYS) | st.text(max_size=8),
                                                                inner, max_size=5),
    max_leaves=25,
)
hostile_configs = st.dictionaries(st.sampled_from(RULE_KEYS) | st.text(max_size=10), json_values, max_size=12)
hostile_files = st.lists(st.text(max_size=30) | st.sampled_from(["modeling_x.py", "a.bin", "b.gguf"]), max_size=5)
hostile_tensors = st.dictionaries(
    st.text(max_size=30) | st.sampled_from(["x.qweight", "x.weight", "x.sinks", "a.quant_state.b"]),
    st.tuples(st.sampled_from(sorted(DTYPE_BYTES)), st.lists(st.integers(0, 2**20), max_size=3).map(tuple)),
    max_size=5,
)
hostile_checkpoints = st.none() | st.builds(
    lambda fmt, tensors, others: Checkpoint(
        weight_format=fmt, shards=["model.safetensors"], other_weight_files=others,
        tensors={n: TensorInfo(n, d, s, "model.safetensors") for n, (d, s) in tensors.items()}),
    st.sampled_from(["safetensors", "pickle", "gguf", "none", "???"]), hostile_tensors, hostile_files,
)


def _check_findings(findings: list[Finding]) -> None:
    assert exit_code(findings) in (0, 1, 2)
    for finding in findings:
        assert finding.level in (BLOCK, WARN, INFO)
        assert "\n" not in finding.reason and "\r" not in finding.reason
        assert len(finding.reason) < 600


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=hostile_configs, checkpoint=hostile_checkpoints, files=hostile_files)
def test_random_json_never_raises(config: dict, checkpoint: Checkpoint | None, files: list[str]) -> None:
    _check_findings(scan_walls(config, checkpoint, files))


@settings(max_examples=200, deadline=None)
@given(data=st.data(), model_type=st.sampled_from(["llama", "mpt", "gemma3", "deepseek_v3", "zamba2", "gpt_oss"]))
def test_real_configs_with_fields_replaced_by_junk_never_raise(data: st.DataObject, model_type: str) -> None:
    config = family_config(model_type, "XForCausalLM")
    for key in data.draw(st.lists(st.sampled_from(sorted(config)), max_size=len(config), unique=True)):
        config[key] = data.draw(json_values)
    _check_findings(scan_walls(config, BF16_LLAMA, ["config.json"]))


@pytest.mark.parametrize("junk", [None, [], "config", 3, {"architectures": "LlamaForCausalLM"},
                                  {"architectures": [1, None, {}]}, {"model_type": ["llama"]},
                                  {"text_config": {"text_config": {"text_config": {}}}},
                                  {"hidden_size": 10**400, "kv_lora_rank": float("inf"), "num_experts": float("nan")},
                                  {"architectures": 10**5000, "auto_map": -(10**5000), "model_type": "x" * 10_000},
                                  {"layer_types": ["mamba"] * 100_000}])
def test_odd_top_level_values_do_not_crash(junk: object) -> None:
    _check_findings(scan_walls(junk, None, None))  # type: ignore[arg-type]


def test_deeply_nested_subconfigs_are_capped() -> None:
    config: dict = {"model_type": "llama", "architectures": ["LlamaForCausalLM"]}
    node = config
    for _ in range(5000):
        node["text_config"] = {"alibi": False}
        node = node["text_config"]
    node["alibi"] = True  # too deep to be read as the model's own setting
    assert "alibi" not in codes(scan_walls(config, BF16_LLAMA, []))
