"""Tiny random-weight twins: every family loads, runs and keeps its distinctive options."""

from __future__ import annotations

import json
import shutil
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from safetensors.torch import load_file
from transformers import CONFIG_MAPPING, AutoConfig, AutoModelForCausalLM, AutoTokenizer

from import_model.errors import UserError
from import_model.verify import twin as twin_mod
from import_model.verify.twin import SHRINK_RULES, TwinInfo, make_twin
from tests.support.families import FAMILY_CONFIGS, family_twin_dir, make_family_twin

PROMPT = "What is the capital of France? The capital of France is Paris. def add(a, b): return a + b"
S, F = "sliding_attention", "full_attention"

# Options each family's twin must still have (dotted paths reach into nested dicts).
DISTINCTIVE: dict[str, dict[str, Any]] = {
    "helium": {"rms_norm_eps": 1e-8, "head_dim": 16},
    "arcee": {"hidden_act": "relu2", "rope_parameters.rope_type": "yarn", "rope_parameters.factor": 20.0},
    "stablelm": {"rope_parameters.partial_rotary_factor": 0.25, "use_qkv_bias": True, "layer_norm_eps": 1e-5},
    "starcoder2": {"use_bias": True, "hidden_act": "gelu_pytorch_tanh", "sliding_window": 128, "num_key_value_heads": 2},
    "gemma": {"hidden_activation": "gelu_pytorch_tanh", "head_dim": 32, "tie_word_embeddings": True},
    "gemma2": {
        "final_logit_softcapping": 30.0,
        "attn_logit_softcapping": 50.0,
        "query_pre_attn_scalar": 32,
        "layer_types": [S, F],
        "sliding_window": 128,
    },
    "smollm3": {"no_rope_layers": [1, 1, 1, 0], "num_hidden_layers": 4},
    "gpt_neox": {"use_parallel_residual": True, "rope_parameters.partial_rotary_factor": 0.25, "attention_bias": True},
    "phi": {"rope_parameters.partial_rotary_factor": 0.5, "hidden_act": "gelu_new"},
    "cohere": {"logit_scale": 0.0625, "use_qk_norm": False, "tie_word_embeddings": True},
    "glm": {"rope_parameters.partial_rotary_factor": 0.5, "attention_bias": True, "eos_token_id": [2, 5]},
    "exaone4": {"layer_types": [S, S, S, F], "rope_parameters.rope_type": "llama3", "sliding_window": 128},
    "olmoe": {"num_experts": 4, "num_experts_per_tok": 2, "norm_topk_prob": False},
    "mixtral": {"num_local_experts": 4, "num_experts_per_tok": 2},
    "qwen3_moe": {"num_experts_per_tok": 2, "norm_topk_prob": True, "moe_intermediate_size": 48},
    "dots1": {"n_routed_experts": 4, "n_shared_experts": 1, "first_k_dense_replace": 1},
    "glm4_moe": {"n_routed_experts": 4, "first_k_dense_replace": 1, "attention_bias": True, "n_group": 1},
    "glm4_moe_grouped": {"n_routed_experts": 4, "n_group": 2, "topk_group": 1, "routed_scaling_factor": 2.5},
    "solar_open": {"n_routed_experts": 4, "n_shared_experts": 1, "norm_topk_prob": True},
    "flex_olmo": {"num_experts": 4, "num_experts_per_tok": 2, "norm_topk_prob": False},
    "exaone_moe": {"num_experts": 4, "num_shared_experts": 1, "mlp_layer_types": ["dense", "sparse", "sparse", "sparse"],
                   "layer_types": [S, S, S, F]},
    "granitemoe": {"num_local_experts": 4, "num_experts_per_tok": 2, "residual_multiplier": 0.22,
                   "logits_scaling": 6.0},
    "ernie4_5_moe": {"moe_num_experts": 4, "moe_num_shared_experts": 2, "moe_layer_start_index": 1},
    "apertus": {"hidden_act": "xielu", "rope_parameters.rope_type": "llama3"},
    "diffllama": {"lambda_std_dev": 0.1, "attention_bias": False},
    "vaultgemma": {"attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "tie_word_embeddings": True},
    "persimmon": {"hidden_act": "relu2", "qk_layernorm": True, "partial_rotary_factor": 0.5},
    "glm4": {"partial_rotary_factor": 0.5},
    "hyperclovax": {"use_post_norm": True},
    "gptj": {"rotary_dim": 4, "activation_function": "gelu_new"},
    "codegen": {"rotary_dim": 4, "n_head": 4},
    "gpt2": {"activation_function": "gelu_new", "tie_word_embeddings": True},
    "gpt_neo": {"window_size": 128, "attention_layers": ["global", "local"]},
    "xglm": {"scale_embedding": True, "activation_function": "gelu"},
    "nanochat": {"hidden_act": "relu2"},
    "trocr": {"layernorm_embedding": True, "decoder_ffn_dim": 160},
    "openai-gpt": {"afn": "gelu", "n_positions": 512},
    "bert": {"is_decoder": True, "type_vocab_size": 2},
    "roberta": {"is_decoder": True, "hidden_act": "gelu"},
    "ctrl": {"model_type": "ctrl"},
    "roc_bert": {"is_decoder": True, "concat_input": True, "enable_shape": True},
    "hunyuan_v1_moe": {"num_experts": 1, "moe_topk": 1},
    "bitnet": {"hidden_act": "relu2"},
    "nemotron": {"hidden_act": "relu2", "partial_rotary_factor": 0.5},
    "ernie4_5": {"tie_word_embeddings": True},
    "hunyuan_v1_dense": {"num_key_value_heads": 4},
    "seed_oss": {"attention_bias": True, "attention_out_bias": False},
    "cohere2": {"sliding_window": 128, "logit_scale": 0.0625},
    "jais2": {"hidden_act": "relu2"},
    "cwm": {"sliding_window": 128, "rope_parameters.rope_type": "llama3"},
    "falcon": {"multi_query": True, "parallel_attn": True, "new_decoder_architecture": False},
    "falcon_40b": {"new_decoder_architecture": True, "num_attention_heads": 8, "num_kv_heads": 2},
    "qwen2_moe": {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 48, "qkv_bias": True},
    "llama": {"rope_parameters.rope_type": "llama3", "num_attention_heads": 8, "num_key_value_heads": 2},
    "qwen2": {"num_key_value_heads": 2, "tie_word_embeddings": True, "rms_norm_eps": 1e-6},
    "qwen3": {"head_dim": 32, "num_key_value_heads": 2, "tie_word_embeddings": True},
    "olmo2": {"rms_norm_eps": 1e-6, "pad_token_id": 0},
    "gemma3_text": {
        "layer_types": [S, S, S, S, S, F],
        "rope_parameters.sliding_attention.rope_theta": 10000.0,
        "rope_parameters.full_attention.rope_theta": 1000000.0,
        "eos_token_id": [2, 5],
    },
    # A window longer than the context never masks anything, so the twin keeps it that way.
    "phi3": {"rope_parameters.rope_type": "longrope", "pad_token_id": 2, "eos_token_id": 2, "sliding_window": 262144},
    "phi4": {"rope_parameters.rope_type": "default", "rope_parameters.rope_theta": 250000.0, "sliding_window": None},
    "youtu": {"rope_interleave": True, "kv_lora_rank": 32, "q_lora_rank": 48},
    "youtu_direct": {"rope_interleave": False, "q_lora_rank": None},
    "mistral": {"sliding_window": 128, "num_key_value_heads": 2},
    "bloom": {"n_layer": 2, "n_head": 4, "tie_word_embeddings": True},
}
# num_ln_in_parallel_attn: falcon's decoder layer fills it in on the config it is built from (None -> 2).
IGNORED_KEYS = {"transformers_version", "dtype", "torch_dtype", "_name_or_path", "architectures", "num_ln_in_parallel_attn"}


def _instantiable(family: str) -> bool:
    config = FAMILY_CONFIGS[family]
    return config["model_type"] in CONFIG_MAPPING and hasattr(transformers, config["architectures"][0])


FAMILIES = [
    pytest.param(f, marks=pytest.mark.skipif(not _instantiable(f), reason="not in this transformers"))
    for f in sorted(FAMILY_CONFIGS)
]


@cache
def _loaded(family: str) -> tuple[Any, Any, dict[str, Any]]:
    path = family_twin_dir(family)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model, tokenizer, AutoConfig.from_pretrained(path).to_dict()


def _get(config: dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = value[part]
    return value


def _marker(path: Path) -> dict[str, Any]:
    return json.loads((path / "twin.json").read_text())


@pytest.mark.parametrize("family", FAMILIES)
def test_twin_loads_and_runs(family: str) -> None:
    model, tokenizer, config = _loaded(family)
    assert type(model).__name__ == FAMILY_CONFIGS[family]["architectures"][0]
    assert next(model.parameters()).dtype == torch.float32
    assert len(tokenizer) <= config["vocab_size"] == 512
    inputs = tokenizer(PROMPT, return_tensors="pt")
    assert inputs["input_ids"].shape[1] > 8
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], config["vocab_size"])
    assert torch.isfinite(logits).all()
    assert logits.std() > 1e-3  # random weights, not a constant output


@pytest.mark.parametrize("family", FAMILIES)
def test_twin_is_small_and_keeps_everything_else(family: str) -> None:
    _, _, twin = _loaded(family)
    marker = _marker(family_twin_dir(family))
    assert marker["num_parameters"] < 2_000_000
    assert 2 <= marker["num_layers"] <= 8
    source = FAMILY_CONFIGS[family]
    kept = set(source) - set(marker["shrunk"]) - IGNORED_KEYS
    assert {k: twin.get(k) for k in kept} == {k: source[k] for k in kept}
    for dotted, expected in DISTINCTIVE[family].items():
        assert _get(twin, dotted) == expected, dotted


@pytest.mark.parametrize("family", FAMILIES)
def test_twin_keeps_structure(family: str) -> None:
    _, _, twin = _loaded(family)
    source = FAMILY_CONFIGS[family]
    for key in ("layer_types", "no_rope_layers"):
        if isinstance(source.get(key), list):  # every per-layer variant still appears in the twin
            assert set(twin[key]) == set(source[key]) and len(twin[key]) == twin["num_hidden_layers"]
    heads_key = next(k for k in ("num_attention_heads", "n_head", "num_heads", "attention_heads",
                                 "decoder_attention_heads") if k in source)
    heads, kv = source[heads_key], source.get("num_key_value_heads") or source[heads_key]
    t_heads, t_kv = twin[heads_key], twin.get("num_key_value_heads") or twin[heads_key]
    assert (kv == heads) == (t_kv == t_heads) and (kv == 1) == (t_kv == 1) and t_heads % t_kv == 0
    if isinstance(source.get("head_dim"), int):  # head_dim * heads != hidden survives shrinking
        assert (source["head_dim"] * heads == source["hidden_size"]) == (
            twin["head_dim"] * t_heads == twin["hidden_size"]
        )
    if source.get("num_experts", 0) > 1:  # HunYuan-MoE's default routes through its one expert
        assert (
            1 < twin["num_experts"] < source["num_experts"] and 1 <= twin["num_experts_per_tok"] < twin["num_experts"]
        )


@pytest.mark.parametrize("family", FAMILIES)
def test_twin_tokenizer_matches_config(family: str) -> None:
    _, tokenizer, twin = _loaded(family)
    eos = twin["eos_token_id"]
    assert tokenizer.eos_token_id == (eos[0] if isinstance(eos, list) else eos) or eos is None
    if twin.get("pad_token_id") is not None:
        assert tokenizer.pad_token_id == twin["pad_token_id"]
    ids = tokenizer(PROMPT)["input_ids"]
    if twin.get("bos_token_id") is not None:
        assert ids[0] == twin["bos_token_id"] == tokenizer.bos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == PROMPT
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False
    )
    assert chat.endswith("<|im_start|>assistant\n")


def test_phi3_longrope_factors_fit_the_twin_rotary_dim() -> None:
    _, _, twin = _loaded("phi3")
    half = twin["hidden_size"] // twin["num_attention_heads"] // 2
    rope = twin["rope_parameters"]
    assert len(rope["short_factor"]) == len(rope["long_factor"]) == half
    source = FAMILY_CONFIGS["phi3"]["rope_parameters"]
    assert rope["long_factor"][0] == source["long_factor"][0] and rope["long_factor"][-1] == source["long_factor"][-1]


def test_biases_and_norm_weights_are_not_trivial() -> None:
    """A port that drops a bias or a norm weight must fail parity, so these cannot be 0 / 1."""
    weights = load_file(family_twin_dir("starcoder2") / "model.safetensors")
    biases = {k: v for k, v in weights.items() if k.endswith(".bias")}
    assert biases and all(v.abs().max() > 0 for v in biases.values())
    norms = {k: v for k, v in weights.items() if "norm" in k and v.ndim == 1}
    assert norms and all((v - 1).abs().max() > 0 for v in norms.values())


def test_same_seed_same_weights(tmp_path: Path) -> None:
    a = make_family_twin("llama", tmp_path / "a", seed=3)
    b = make_family_twin("llama", tmp_path / "b", seed=3)
    c = make_family_twin("llama", tmp_path / "c", seed=4)
    wa, wb, wc = (load_file(i.path / "model.safetensors") for i in (a, b, c))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)
    assert (a.path / "tokenizer.json").read_bytes() == (b.path / "tokenizer.json").read_bytes()


def test_twin_info(tmp_path: Path) -> None:
    messages: list[str] = []
    info = make_family_twin("gemma2", tmp_path / "g", num_layers=3, progress=messages.append)
    assert isinstance(info, TwinInfo) and info.path == tmp_path / "g"
    assert (info.model_type, info.architecture, info.num_layers) == ("gemma2", "Gemma2ForCausalLM", 3)
    assert info.shrunk["hidden_size"] == (2304, 64) and info.shrunk["num_hidden_layers"] == (26, 3)
    assert info.num_parameters == sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(info.path).parameters())
    assert AutoConfig.from_pretrained(info.path).layer_types == [S, F, S]
    saved = json.loads((info.path / "config.json").read_text())
    assert saved["dtype"] == saved["torch_dtype"] == "float32"
    assert messages and str(info.path) in messages[-1]


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "twin"
    (tmp_path / "neighbour.txt").write_text("keep me")
    first = make_family_twin("bloom", out)
    with pytest.raises(UserError, match="not empty"):
        make_family_twin("bloom", out)
    assert _marker(out)["seed"] == 0
    second = make_family_twin("bloom", out, seed=1, force=True)
    assert _marker(out)["seed"] == 1 and second.num_parameters == first.num_parameters
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "neighbour.txt",
        "twin",
    ]  # no temp dirs left, nothing else gone


def test_force_only_replaces_model_directories(tmp_path: Path) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "precious.txt").write_text("do not delete")
    with pytest.raises(UserError, match="no twin wrote"):
        make_family_twin("bloom", out, force=True)
    assert (out / "precious.txt").read_text() == "do not delete"
    (tmp_path / "empty").mkdir()
    make_family_twin("bloom", tmp_path / "empty")  # an empty directory is fine without force
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a directory"):
        make_family_twin("bloom", tmp_path / "file", force=True)


def _tree(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_the_marker_lists_every_file_the_twin_wrote(tmp_path: Path) -> None:
    info = make_family_twin("bloom", tmp_path / "twin")
    listed = _marker(info.path)["files"]
    assert listed == sorted(p.name for p in info.path.iterdir())
    assert {"config.json", "model.safetensors", "twin.json"} <= set(listed) <= twin_mod.KNOWN_TWIN_FILES


def test_force_refuses_a_real_checkpoint_and_deletes_nothing(tmp_path: Path) -> None:
    checkpoint = tmp_path / "my-model"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps({"model_type": "bloom"}))
    (checkpoint / "notes.txt").write_text("my notes")
    before = _tree(checkpoint)
    with pytest.raises(UserError, match=r"checkpoint \(config.json\) no twin wrote") as caught:
        make_family_twin("bloom", checkpoint, force=True)
    assert "\n" not in caught.value.message
    assert _tree(checkpoint) == before and sorted(p.name for p in tmp_path.iterdir()) == ["my-model"]


def _force_is_refused(out: Path, match: str) -> None:
    """``--force`` onto ``out`` is refused with one line matching ``match``, and nothing in ``out`` changes."""
    before = _tree(out)
    with pytest.raises(UserError, match=match) as caught:
        make_family_twin("bloom", out, seed=1, force=True)
    assert "\n" not in caught.value.message and _tree(out) == before


def test_force_refuses_a_twin_holding_a_user_file_and_keeps_it(tmp_path: Path) -> None:
    out = tmp_path / "twin"
    make_family_twin("bloom", out)
    (out / "experiment.log").write_text("mine")
    _force_is_refused(out, "'experiment.log'.*no twin wrote")
    (out / "experiment.log").unlink()
    make_family_twin("bloom", out, seed=1, force=True)  # its own earlier twin, nothing else: replaced
    assert _marker(out)["seed"] == 1


def test_force_refuses_an_older_marker_that_cannot_name_its_directory(tmp_path: Path) -> None:
    out = tmp_path / "twin"
    make_family_twin("bloom", out)
    marker = _marker(out)
    del marker["directory"], marker["digests"]  # a twin.json written before markers named their directory
    (out / "twin.json").write_text(json.dumps(marker))
    _force_is_refused(out, "older import-model.*delete the directory yourself")


def test_the_marker_names_its_directory_and_each_file_digest(tmp_path: Path) -> None:
    import hashlib

    info = make_family_twin("bloom", tmp_path / "twin")
    marker = _marker(info.path)
    stat = info.path.lstat()
    assert marker["directory"] == [stat.st_dev, stat.st_ino]  # the staging directory's, kept by the rename
    assert sorted(marker["digests"]) == [name for name in marker["files"] if name != "twin.json"]
    config = (info.path / "config.json").read_bytes()
    assert marker["digests"]["config.json"] == [len(config), hashlib.sha256(config).hexdigest()]


def test_force_refuses_a_forged_marker_and_keeps_the_users_files(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    (out / "twin.json").write_text(json.dumps({"architecture": "X", "files": ["notes.txt", "twin.json"],
                                               "fingerprint": "0"}))
    before = _tree(out)
    code, err = _twin_cli(str(family_twin_dir("bloom")), "--output", str(out), "--force", capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "twin.json" in err, err
    assert _tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_force_refuses_a_marker_forged_with_a_guessed_identity_and_digests(tmp_path: Path) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    stat = out.lstat()
    forged = {"directory": [stat.st_dev, stat.st_ino + 1], "digests": {"notes.txt": [8, "0" * 64]},
              "files": ["notes.txt", "twin.json"]}
    (out / "twin.json").write_text(json.dumps(forged))
    with pytest.raises(UserError, match="not written in this directory"):
        make_family_twin("bloom", out, force=True)
    assert (out / "notes.txt").read_text() == "my notes"


def test_force_refuses_a_copy_of_a_real_twin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    original = tmp_path / "twin"
    make_family_twin("bloom", original)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)  # a cloned repo or cp -r: the same files, another directory
    before = _tree(copy)
    code, err = _twin_cli(str(family_twin_dir("bloom")), "--output", str(copy), "--force", capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not written in this directory" in err, err
    assert _tree(copy) == before
    make_family_twin("bloom", original, seed=3, force=True)  # the original is still the tool's own
    assert _marker(original)["seed"] == 3


def test_force_refuses_a_twin_whose_files_were_edited(tmp_path: Path) -> None:
    out = tmp_path / "twin"
    make_family_twin("bloom", out)
    config = json.loads((out / "config.json").read_text())
    config["my_note"] = "tuned by hand"
    (out / "config.json").write_text(json.dumps(config))
    _force_is_refused(out, "config.json changed since the twin was written")


def test_force_replaces_the_tools_own_twin_even_with_a_file_missing(tmp_path: Path) -> None:
    out = tmp_path / "twin"
    make_family_twin("bloom", out)
    (out / "generation_config.json").unlink()  # nothing of the user's is lost by replacing it
    make_family_twin("bloom", out, seed=4, force=True)
    assert _marker(out)["seed"] == 4 and (out / "generation_config.json").is_file()
    make_family_twin("bloom", out, seed=5, force=True)  # and the new one is the tool's own in turn
    assert _marker(out)["seed"] == 5


def test_force_refuses_a_twin_with_a_subdirectory_or_link(tmp_path: Path) -> None:
    out = tmp_path / "twin"
    make_family_twin("bloom", out)
    (out / "runs").mkdir()
    with pytest.raises(UserError, match="'runs'"):
        make_family_twin("bloom", out, force=True)
    (out / "runs").rmdir()
    (out / "tokenizer.json").unlink()
    (out / "tokenizer.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(UserError, match="tokenizer.json"):
        make_family_twin("bloom", out, force=True)


def _twin_cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from import_model.cli import main

    capsys.readouterr()
    code = main(["twin", *argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("where", ["same", "inside", "around"])
def test_twin_never_writes_over_its_own_source(tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    source = tmp_path / "source"
    shutil.copytree(family_twin_dir("bloom"), source)  # a twin is a checkpoint too, with twin.json
    before = _tree(source)
    output = {"same": source, "inside": source / "twin", "around": tmp_path}[where]
    code, err = _twin_cli(str(source), "--output", str(output), "--force", capsys=capsys)
    assert code == 2 and "overlap the source" in err and len(err.strip().splitlines()) == 1
    assert _tree(source) == before and sorted(p.name for p in tmp_path.iterdir()) == ["source"]


def test_twin_refuses_home_and_root_as_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "keep.txt").write_text("mine")
    monkeypatch.setenv("HOME", str(home))
    for output in ("~", str(home), "/"):
        code, err = _twin_cli(str(family_twin_dir("bloom")), "--output", output, "--force", capsys=capsys)
        assert code == 2 and ("home directory" in err or "root" in err), err
    assert sorted(p.name for p in home.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({}, "no model_type"),
        ({"hidden_size": 64, "num_hidden_layers": 2}, "no model_type"),
        ({"model_type": "definitely_not_a_model"}, "not known"),
        (
            {
                "model_type": "my_remote_lm",
                "architectures": ["MyRemoteForCausalLM"],
                "auto_map": {"AutoModelForCausalLM": "modeling_my.MyRemoteForCausalLM"},
            },
            "remote code",
        ),
        (
            {
                "model_type": "llama",
                "architectures": ["MyRemoteForCausalLM"],
                "auto_map": {"AutoModelForCausalLM": "modeling_my.MyRemoteForCausalLM"},
            },
            "remote code",
        ),
        ({"model_type": "bert", "architectures": ["BertForMaskedLM"]}, "not a causal language model"),
    ],
)
def test_garbage_configs_are_user_errors(tmp_path: Path, config: dict[str, Any], match: str) -> None:
    with pytest.raises(UserError, match=match):
        make_twin(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_hub_style_legacy_keys(tmp_path: Path) -> None:
    """A config.json written by older transformers (rope_theta / rope_scaling, torch_dtype) still works."""
    raw = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "vocab_size": 49152,
        "rope_theta": 100000.0,
        "rope_scaling": {"rope_type": "linear", "factor": 2.0},
        "torch_dtype": "bfloat16",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 2,
        "tie_word_embeddings": True,
    }
    info = make_twin(raw, tmp_path / "smol")
    twin = AutoConfig.from_pretrained(info.path)
    assert twin.rope_parameters["rope_type"] == "linear" and twin.rope_parameters["factor"] == 2.0
    assert (twin.num_attention_heads, twin.num_key_value_heads) == (6, 2)  # 9:3 keeps its 3:1 ratio
    assert twin.pad_token_id == twin.eos_token_id == 2 and twin.bos_token_id == 1


def test_shrink_table_only_uses_known_rules() -> None:
    assert {rule.kind for rule in SHRINK_RULES.values()} <= set(twin_mod._RULE_FUNCS)


@pytest.mark.slow
def test_smollm2_real_checkpoint_answers_paris() -> None:
    from tests.support.smollm2 import smollm2_checkpoint

    path = smollm2_checkpoint()
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert model.dtype == torch.bfloat16 and type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) > 100_000_000
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer


def test_sizes_kept_in_sub_configs_shrink_by_the_same_rules() -> None:
    from import_model.verify.twin import shrink_config

    src = {"hidden_size": 4096, "num_hidden_layers": 32, "vision_config": {
        "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
        "image_size": 224, "_name_or_path": "", "output_attentions": False}}
    twin, changed = shrink_config(src, {}, 2)
    vision = twin["vision_config"]
    assert vision["num_hidden_layers"] == 2 and vision["hidden_size"] < 1024 and vision["image_size"] == 224
    assert "output_attentions" not in vision and "vision_config" in changed


def test_kv_shared_layers_leave_every_layer_kind_computing_its_own() -> None:
    from import_model.verify.twin import build_twin_config

    source = AutoConfig.for_model("gemma3n_text").to_dict() | {"architectures": ["Gemma3nForCausalLM"]}
    twin = build_twin_config(source)[0]
    own = twin.layer_types[:twin.num_hidden_layers - twin.num_kv_shared_layers]
    assert {"sliding_attention", "full_attention"} <= set(own)
