"""The wall scanner on real families' configs, crafted checkpoints, and fuzzed junk."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import CONFIG_MAPPING

from import_model.cli import main
from import_model.procs import child_env
from import_model.recon import max_blocks, registry, walls
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
    (family_config("cpmant", "CpmAntForCausalLM"), "relative-bias", "position_bias_num_buckets: 512"),
    # Token mixers the installed MAX ships no block for (those it has one for warn: see below).
    (family_config("rwkv", "RwkvForCausalLM"), "recurrent-layers", "no public block for RWKV time mixing"),
    (family_config("xlstm", "xLSTMForCausalLM"), "recurrent-layers", "no public block for xLSTM cells"),
    (family_config("recurrent_gemma", "RecurrentGemmaForCausalLM"), "recurrent-layers", "block_types"),
    (family_config("minimax", "MiniMaxForCausalLM"), "linear-attention", "no public block for lightning attention"),
    ({"architectures": ["XForCausalLM"], "model_type": "x", "layer_types": ["retention", "attention"]},
     "recurrent-layers", "no public block for retention"),
    ({"architectures": ["XForCausalLM"], "model_type": "x", "state_size": 16},
     "recurrent-layers", "a state-space mixer whose kind the config does not tell"),
    (family_config("t5", "T5ForConditionalGeneration"), "encoder-decoder", "is_encoder_decoder: true"),
    (family_config("bart", "BartForConditionalGeneration"), "encoder-decoder", "is_encoder_decoder: true"),
    (family_config("bert", "BertForMaskedLM"), "non-causal", "model_type 'bert'"),
    (family_config("bert", "BertForMaskedLM"), "task-head", "'BertForMaskedLM'"),
    (family_config("bert-generation", "BertGenerationDecoder"), "non-causal", "is_decoder: false"),
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


@pytest.mark.parametrize(("config", "quoted"), [
    (family_config("bloom", "BloomForCausalLM"), "model_type 'bloom'"),
    (family_config("mpt", "MptForCausalLM"), "attn_config.alibi: true"),
    (family_config("falcon", "FalconForCausalLM", alibi=True), "alibi: true"),
    ({"model_type": "baichuan", "architectures": ["BaichuanForCausalLM"], "hidden_size": 5120,
      "num_hidden_layers": 40, "auto_map": {"AutoModelForCausalLM": "modeling_baichuan.BaichuanForCausalLM"}},
     "hidden_size 5120"),
    ({"architectures": ["JAISLMHeadModel"], "model_type": "jais", "position_embedding_type": "alibi"},
     "position_embedding_type: 'alibi'"),
])
def test_alibi_warns(config: dict, quoted: str) -> None:
    """ALiBi is a catalog entry (attention written out over the cached K/V), not a wall: the scan says so."""
    findings = scan_walls(config, BF16_LLAMA, [])
    assert codes(findings).get("alibi") == WARN, codes(findings)
    assert quoted in by_code(findings, "alibi").reason and "attention out" in by_code(findings, "alibi").reason


def test_mpt_prefix_lm_is_non_causal_as_well_as_alibi() -> None:
    config = family_config("mpt", "MptForCausalLM")
    config["attn_config"]["prefix_lm"] = True
    found = codes(scan_walls(config, BF16_LLAMA, []))
    assert found["alibi"] == WARN
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


# --------------------------------------------------------------------------- token mixers MAX ships a block for

#: What MAX 26.7's docstrings say about each block's kernels (see recon/max_blocks.py).
MAMBA = ("mamba", "MambaSSMModule", "mamba", "not stated", "whether its kernels run on the CPU is not stated")
MAMBA2 = ("mamba2", "NemotronHMamba2Mixer", "nemotron_h", "not stated", "MAX's docstrings do not say for "
          "mamba2_ssd_chunk_scan_varlen_fwd_inplace")
GATED_DELTA = ("gated-delta", "GatedDeltaNet", "qwen3_5", "no", "gated_delta_conv1d_fwd: no CPU implementation")
SHORT_CONV = ("short-conv", "LFM2ShortConv", "lfm2", "yes", "its kernels run on the CPU (it calls no custom kernel")


def _no_limit(config: dict) -> dict:
    """Mamba-2 families default ``time_step_limit`` to (0, inf), which JSON (and the twin maker) refuses."""
    config.pop("time_step_limit", None)
    return config


@pytest.mark.parametrize(("config", "code", "expected"), [
    (family_config("mamba", "MambaForCausalLM"), "recurrent-layers", MAMBA),
    (family_config("falcon_mamba", "FalconMambaForCausalLM"), "recurrent-layers", MAMBA),
    (family_config("jamba", "JambaForCausalLM"), "recurrent-layers", MAMBA),
    (family_config("zamba", "ZambaForCausalLM"), "recurrent-layers", MAMBA),
    ({"architectures": ["MambaLMHeadModel"], "d_model": 2560, "n_layer": 64, "ssm_cfg": {}}, "recurrent-layers", MAMBA),
    (_no_limit(family_config("mamba2", "Mamba2ForCausalLM")), "recurrent-layers", MAMBA2),
    (_no_limit(family_config("bamba", "BambaForCausalLM")), "recurrent-layers", MAMBA2),
    (_no_limit(family_config("falcon_h1", "FalconH1ForCausalLM")), "recurrent-layers", MAMBA2),
    (_no_limit(family_config("granitemoehybrid", "GraniteMoeHybridForCausalLM")), "recurrent-layers", MAMBA2),
    (family_config("zamba2", "Zamba2ForCausalLM"), "recurrent-layers", MAMBA2),
    ({"architectures": ["NemotronHForCausalLM"], "model_type": "nemotron_h", "hybrid_override_pattern": "M-M*-M-"},
     "recurrent-layers", MAMBA2),
    ({"architectures": ["MambaLMHeadModel"], "d_model": 2560, "n_layer": 64, "ssm_cfg": {"layer": "Mamba2"}},
     "recurrent-layers", MAMBA2),
    (family_config("lfm2", "Lfm2ForCausalLM", layer_types=["conv", "conv", "full_attention"]), "recurrent-layers",
     SHORT_CONV),
    (family_config("qwen3_next", "Qwen3NextForCausalLM"), "linear-attention", GATED_DELTA),
    (family_config("qwen3_5", "Qwen3_5ForConditionalGeneration"), "linear-attention", GATED_DELTA),
    (family_config("olmo_hybrid", "OlmoHybridForCausalLM"), "linear-attention", GATED_DELTA),
])
def test_mixers_with_a_max_block_warn_naming_it(config: dict, code: str, expected: tuple[str, ...]) -> None:
    trait, cls, donor, cpu, cpu_words = expected
    findings = scan_walls(config, BF16_LLAMA, [])
    finding = by_code(findings, code)
    assert (finding.level, finding.trait, finding.donor, finding.cpu) == (WARN, trait, donor, cpu)
    assert finding.block.endswith("." + cls)
    assert f"{cls} in max." in finding.reason and f"MAX's {donor} architecture" in finding.reason
    assert cpu_words in finding.reason
    assert BLOCK not in codes(findings).values()
    assert exit_code(findings) == 1


def test_mla_and_moe_name_their_max_blocks() -> None:
    findings = scan_walls(family_config("deepseek_v3", "DeepseekV3ForCausalLM"), BF16_LLAMA, [])
    mla, moe = by_code(findings, "mla"), by_code(findings, "moe")
    assert (mla.block, mla.donor) == ("max.nn.attention.multi_latent_attention.LatentAttentionWithRope", "deepseekV3")
    assert (moe.block, moe.donor, moe.cpu) == ("max.nn.moe.moe.MoE", "qwen3", "no")
    assert "grouped_matmul_ragged, moe_create_indices: no CPU implementation" in moe.reason


def test_a_max_without_the_block_falls_back_to_a_blocker(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """An install lacking the block's file answers None: a mixer blocks again; routed experts stay a warning."""
    assert max_blocks.find_block("mamba2", root=tmp_path) is None
    monkeypatch.setattr(walls, "find_block", lambda trait: max_blocks.find_block(trait, root=tmp_path))
    findings = scan_walls(_no_limit(family_config("nemotron_h", "NemotronHForCausalLM")), BF16_LLAMA, [])
    assert codes(findings) == {"recurrent-layers": BLOCK, "moe": WARN}
    assert "no public block for the Mamba-2 (SSD) scan" in by_code(findings, "recurrent-layers").reason
    assert by_code(findings, "recurrent-layers").block == ""
    assert exit_code(findings) == 2


def test_every_row_of_the_block_table_is_in_the_installed_max() -> None:
    donors = {a.slug for a in registry.native_architectures() if a.is_donor}
    for row in max_blocks.MAX_BLOCKS:
        answer = max_blocks.find_block(row.trait)
        assert answer is not None, row
        assert row.donor in donors and row.trait in walls.MIXER_WORDS
        assert answer.cpu in (max_blocks.CPU_YES, max_blocks.CPU_NO, max_blocks.CPU_UNKNOWN)
    assert {v for v in walls.MIXER_OF_MODEL_TYPE.values()} - set(walls.MIXER_WORDS) == set()


def _fake_max(root, kernel_doc: str, body: str = "gated_kernel(x)") -> None:
    (root / "nn" / "state_space").mkdir(parents=True)
    (root / "nn" / "state_space" / "ops.py").write_text(f'def gated_kernel(x):\n    """{kernel_doc}"""\n')
    (root / "nn" / "kernels.py").write_text("def unrelated():\n    pass\n")
    module = root / "pipelines" / "architectures" / "lfm2"
    module.mkdir(parents=True)
    (module / "lfm2.py").write_text(
        "def helper(x):\n    return " + body + "\n\n\n"
        "class LFM2ShortConv:\n    def __call__(self, x):\n        return helper(x)\n")


@pytest.mark.parametrize(("doc", "body", "cpu"), [
    ("Runs it.\n\n    .. Skipped without a GPU: the kernel has no CPU\n       implementation.", "gated_kernel(x)",
     max_blocks.CPU_NO),
    ("Example:\n\n        device = Accelerator() if accelerator_count() > 0 else CPU()", "gated_kernel(x)",
     max_blocks.CPU_YES),
    ("Says nothing about devices.", "gated_kernel(x)", max_blocks.CPU_UNKNOWN),
    ("Unused.", "x * 2", max_blocks.CPU_YES),
    ("Unused.", "ops.inplace_custom('op', x)", max_blocks.CPU_UNKNOWN),
])
def test_cpu_support_is_read_from_the_kernel_docstrings(tmp_path, doc: str, body: str, cpu: str) -> None:
    _fake_max(tmp_path, doc, body)
    answer = max_blocks.find_block("short-conv", root=tmp_path)
    assert answer is not None and answer.cpu == cpu
    assert answer.kernels == (("gated_kernel",) if "gated_kernel" in body else ())


def test_a_max_file_without_the_class_or_with_broken_python_is_no_block(tmp_path) -> None:
    for name, text in (("other-class", "class SomethingElse:\n    pass\n"), ("broken", "class LFM2ShortConv(:\n")):
        root = tmp_path / name
        _fake_max(root, "Doc.")
        (root / "pipelines" / "architectures" / "lfm2" / "lfm2.py").write_text(text)
        assert max_blocks.find_block("short-conv", root=root) is None
    assert max_blocks.find_block("no-such-trait", root=tmp_path / "broken") is None


# --------------------------------------------------------------------------- twins, through the CLI

#: model_type -> (HF class, config overrides, check-walls exit, the MAX block named or None).
TWINS = {
    "bamba": ("BambaForCausalLM", {}, 1, "NemotronHMamba2Mixer"),
    "nemotron_h": ("NemotronHForCausalLM", {}, 1, "NemotronHMamba2Mixer"),
    "zamba2": ("Zamba2ForCausalLM", {}, 1, "NemotronHMamba2Mixer"),
    "jamba": ("JambaForCausalLM", {}, 1, "MambaSSMModule"),
    "lfm2": ("Lfm2ForCausalLM", {"num_hidden_layers": 4, "layer_types": ["conv", "conv", "full_attention", "conv"]},
             1, "LFM2ShortConv"),
    "qwen3_next": ("Qwen3NextForCausalLM", {}, 1, "GatedDeltaNet"),
    "rwkv": ("RwkvForCausalLM", {}, 2, None),
    "xlstm": ("xLSTMForCausalLM", {}, 2, None),
    "recurrent_gemma": ("RecurrentGemmaForCausalLM", {}, 2, None),
}


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from transformers import AutoConfig

    from import_model.verify.twin import make_twin

    root = tmp_path_factory.mktemp("wall-twins")
    made = {}
    for model_type, (architecture, overrides, _, _) in TWINS.items():
        config = _no_limit(AutoConfig.for_model(model_type, **overrides).to_dict())
        config["architectures"] = [architecture]
        made[model_type] = make_twin(json.loads(json.dumps(config)), root / model_type).path
    return made


@pytest.mark.parametrize("model_type", sorted(TWINS))
def test_check_walls_on_twins(model_type: str, twins: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, _, expected_exit, block = TWINS[model_type]
    assert main(["check-walls", str(twins[model_type]), "--json"]) == expected_exit
    payload = json.loads(capsys.readouterr().out)
    assert payload["exit_code"] == expected_exit
    mixer = next(f for f in payload["findings"] if f["code"] in walls.MIXER_CODES)
    if block is None:
        assert mixer["level"] == BLOCK and mixer["max_block"]["block"] is None
        assert "the installed MAX ships no public block" in mixer["reason"]
    else:
        assert mixer["level"] == WARN and mixer["max_block"]["block"].endswith("." + block)
        assert block in mixer["reason"] and "CPU" in mixer["reason"]
        assert mixer["max_block"]["cpu"] in (max_blocks.CPU_YES, max_blocks.CPU_NO, max_blocks.CPU_UNKNOWN)
    assert main(["check-walls", str(twins[model_type])]) == expected_exit
    assert ("WARNINGS (exit 1)" if expected_exit == 1 else "BLOCKED (exit 2)") in capsys.readouterr().out


@pytest.mark.parametrize(("model_type", "needles"), [
    ("bamba", ("the catalog does not write the Mamba-2 (SSD) scan", "NemotronHMamba2Mixer",
               "--start-from nemotron_h")),
    ("qwen3_next", ("the gated delta rule", "GatedDeltaNet", "kernels on the CPU: no", "--start-from qwen3_5")),
    ("rwkv", ("hits a wall the catalog cannot port", "no public block for RWKV time mixing")),
])
def test_port_still_refuses_a_mixer_it_cannot_write(model_type: str, needles: tuple[str, ...], twins: dict[str, Path],
                                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A warning for a mixer MAX has a block for must not let ``port`` write a Llama-shaped port of it."""
    out_dir = tmp_path / "ports"
    assert main(["port", str(twins[model_type]), "--output-dir", str(out_dir), "--yes"]) == 2
    err = capsys.readouterr().err
    message = err[err.index("error:"):]
    assert "Traceback" not in err
    assert len(message.strip().splitlines()) == 1  # one line
    for needle in needles:
        assert needle in " ".join(message.split()), needle
    assert not out_dir.exists()  # nothing written


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


def test_asking_max_for_blocks_does_not_import_max() -> None:
    code = (
        "import json, sys\n"
        "from import_model.recon.walls import scan_walls\n"
        "found = scan_walls({'model_type': 'bamba', 'architectures': ['BambaForCausalLM'], 'mamba_n_groups': 1,\n"
        "                    'num_experts': 8}, None, [])\n"
        "assert any(f.block for f in found), found\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'max' or m.startswith('max.'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=child_env())
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize(("config", "causal"), [
    (family_config("bert", "BertLMHeadModel", is_decoder=True), True),  # a BERT-style decoder attends causally
    (family_config("roberta", "RobertaForCausalLM"), False),  # the default config is bidirectional
    (family_config("gpt_neox", "GPTNeoXForCausalLM"), True),  # is_decoder false, but read only in a docstring
    (family_config("trocr", "TrOCRForCausalLM"), True),  # its causal-LM class sets is_decoder itself
    # transformers 5.12's Megatron-BERT and RoFormer build only bidirectional masks, decoder or not
    (family_config("megatron-bert", "MegatronBertForCausalLM", is_decoder=True), False),
    (family_config("roformer", "RoFormerForCausalLM", is_decoder=True), False),
])
def test_is_decoder_is_read_where_the_family_masks_by_it(config: dict, causal: bool) -> None:
    assert ("non-causal" not in codes(scan_walls(config, BF16_LLAMA, []))) is causal


def test_several_token_streams_per_position_block() -> None:
    from transformers import MusicgenDecoderConfig

    config = MusicgenDecoderConfig().to_dict() | {"architectures": ["MusicgenForCausalLM"]}
    findings = scan_walls(config, BF16_LLAMA, [])
    assert codes(findings)["token-streams"] == BLOCK and "num_codebooks: 4" in by_code(findings, "token-streams").reason
    assert "token-streams" not in codes(scan_walls(config | {"num_codebooks": 1}, BF16_LLAMA, []))


def test_hashed_and_chunked_attention_block() -> None:
    config = family_config("reformer", "ReformerModelWithLMHead", is_decoder=True)
    findings = scan_walls(config, BF16_LLAMA, [])
    assert codes(findings)["hashed-attention"] == BLOCK and "lsh" in by_code(findings, "hashed-attention").reason


def test_a_draft_model_fed_by_another_models_states_blocks() -> None:
    from transformers import AutoConfig

    config = AutoConfig.for_model("gemma4_assistant").to_dict() | {"architectures": ["Gemma4AssistantForCausalLM"]}
    findings = scan_walls(config, BF16_LLAMA, [])
    assert codes(findings)["draft-model"] == BLOCK and "backbone_hidden_size" in by_code(findings, "draft-model").reason


def test_several_stacks_in_sub_configs_block() -> None:
    from transformers import AutoConfig

    config = AutoConfig.for_model("blt").to_dict() | {"architectures": ["BltForCausalLM"]}
    assert codes(scan_walls(config, BF16_LLAMA, []))["stacked-models"] == BLOCK
    git = AutoConfig.for_model("git").to_dict() | {"architectures": ["GitForCausalLM"]}  # one stack and a tower
    assert "stacked-models" not in codes(scan_walls(git, BF16_LLAMA, []))
