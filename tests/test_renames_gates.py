"""Weight renames and the gates, on family twins against a native llama3 copy (no MAX compile anywhere).

One dry build per (checkpoint, port) is shared through module fixtures: importing MAX costs ~10 s
once, each dry build a few seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from import_model.cli import main
from import_model.errors import UserError
from import_model.port import renames
from import_model.port.renames import FUSED_RULES, derive_mapping, dry_build, summarize, write_adapter_table
from import_model.procs import child_env
from import_model.source import load_checkpoint, open_source
from import_model.verify import gates
from tests.support.families import family_twin_dir
from tests.support.ports import native_port

REPO = Path(__file__).resolve().parent.parent
ARCH = "RenamesLlamaForCausalLM"


def copied_checkpoint(source: Path, target: Path, architecture: str | None = None) -> Path:
    """A real copy (LocalSource refuses links that leave the folder), optionally naming another class."""
    shutil.copytree(source, target)
    if architecture:
        config = json.loads((target / "config.json").read_text())
        config["architectures"] = [architecture]
        (target / "config.json").write_text(json.dumps(config, indent=2))
    return target


def tensors_of(folder: Path) -> dict[str, tuple[int, ...]]:
    return {k: t.shape for k, t in load_checkpoint(open_source(str(folder))).tensors.items()}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("renames-gates")


@pytest.fixture(scope="module")
def llama_port(root: Path) -> Path:
    return native_port("llama3", root / "ports", ARCH, "rg_llama")


@pytest.fixture(scope="module")
def llama_ckpt(root: Path) -> Path:
    return copied_checkpoint(family_twin_dir("llama"), root / "ckpt" / "llama", ARCH)


@pytest.fixture(scope="module")
def mapped(llama_port: Path) -> Any:
    """``mapped(family)`` -> (dry build, mapping) of the family's twin against the llama3 port, built once."""
    cache: dict[str, tuple[renames.GraphWeights, renames.WeightMapping]] = {}

    def get(family: str) -> tuple[renames.GraphWeights, renames.WeightMapping]:
        if family not in cache:
            twin = family_twin_dir(family)
            dry = dry_build(twin, llama_port)
            config = json.loads((twin / "config.json").read_text())
            cache[family] = dry, derive_mapping(tensors_of(twin), dry.expected, config)
        return cache[family]

    return get


# -- renames on real dry builds -----------------------------------------------------------


def test_llama_twin_maps_completely(mapped: Any) -> None:
    dry, mapping = mapped("llama")
    assert dry.module == "Llama3" and not dry.standins and dry.expected
    assert mapping.complete and not mapping.orphans and not mapping.missing and not mapping.mismatches
    assert set(mapping.renames.values()) == set(dry.expected)
    assert all(graph == key.removeprefix("model.") for key, graph in mapping.renames.items())
    # The donor's own adapter already produces exactly what the graph expects.
    assert dry.adapted == dry.expected


EXPECTED_LEFTOVERS: dict[str, tuple[set[str], set[str]]] = {
    # family: (orphan patterns, missing patterns)
    "starcoder2": (
        {"model.layers.*.input_layernorm.bias", "model.layers.*.post_attention_layernorm.bias", "model.norm.bias",
         "model.layers.*.self_attn.q_proj.bias", "model.layers.*.self_attn.k_proj.bias",
         "model.layers.*.self_attn.v_proj.bias", "model.layers.*.self_attn.o_proj.bias",
         "model.layers.*.mlp.c_fc.bias", "model.layers.*.mlp.c_proj.bias"},
        {"layers.*.mlp.gate_proj.weight"},
    ),
    "phi": (
        {"lm_head.bias", "model.final_layernorm.bias", "model.layers.*.input_layernorm.bias",
         "model.layers.*.self_attn.q_proj.bias", "model.layers.*.self_attn.k_proj.bias",
         "model.layers.*.self_attn.v_proj.bias", "model.layers.*.self_attn.dense.bias",
         "model.layers.*.mlp.fc1.bias", "model.layers.*.mlp.fc2.bias"},
        {"layers.*.post_attention_layernorm.weight", "layers.*.mlp.gate_proj.weight"},
    ),
    "gpt_neox": (
        {"gpt_neox.final_layer_norm.bias", "gpt_neox.layers.*.input_layernorm.bias",
         "gpt_neox.layers.*.post_attention_layernorm.bias", "gpt_neox.layers.*.attention.query_key_value.bias",
         "gpt_neox.layers.*.attention.dense.bias", "gpt_neox.layers.*.mlp.dense_h_to_4h.bias",
         "gpt_neox.layers.*.mlp.dense_4h_to_h.bias"},
        {"layers.*.mlp.gate_proj.weight"},
    ),
}


@pytest.mark.parametrize("family", sorted(EXPECTED_LEFTOVERS))
def test_other_families_report_orphans_and_missing(family: str, mapped: Any) -> None:
    dry, mapping = mapped(family)
    orphans, missing = EXPECTED_LEFTOVERS[family]
    assert {p for p, _ in summarize(mapping.orphans)} == orphans
    assert {p for p, _ in summarize(mapping.missing)} == missing
    assert not mapping.mismatches and not mapping.complete
    # Different names were still found by the rule table.
    assert mapping.renames, family
    if family == "gpt_neox":
        assert mapping.renames["gpt_neox.embed_in.weight"] == "embed_tokens.weight"
        assert mapping.renames["embed_out.weight"] == "lm_head.weight"
        split = next(s for s in mapping.splits if s.source == "gpt_neox.layers.0.attention.query_key_value.weight")
        assert split.layout == "per_head" and split.ratio == (1, 1, 1)
        assert split.targets == tuple(f"layers.0.self_attn.{p}_proj.weight" for p in "qkv")
        # GPT-NeoX configs have neither num_key_value_heads nor rms_norm_eps: stood in, and reported.
        assert dry.standins == {"num_key_value_heads": "num_attention_heads", "rms_norm_eps": "layer_norm_eps"}
    if family == "phi":
        assert mapping.renames["model.layers.1.self_attn.dense.weight"] == "layers.1.self_attn.o_proj.weight"
        assert mapping.renames["model.final_layernorm.weight"] == "norm.weight"
    if family == "starcoder2":
        assert mapping.renames["model.layers.0.mlp.c_fc.weight"] == "layers.0.mlp.up_proj.weight"


@pytest.mark.parametrize("family", ["smollm3", "gemma"])
def test_tied_embeddings_twin_is_complete(family: str, mapped: Any) -> None:
    dry, mapping = mapped(family)
    config = json.loads((family_twin_dir(family) / "config.json").read_text())
    assert config["tie_word_embeddings"] is True
    # Neither side stores a head: the checkpoint is tied and the llama3 graph reuses the embedding.
    assert "lm_head.weight" not in tensors_of(family_twin_dir(family)) and "lm_head.weight" not in dry.expected
    assert mapping.complete and not mapping.ties


def test_written_table_drives_the_adapter(root: Path, mapped: Any) -> None:
    """Write the gpt_neox table into a fresh llama3 copy; a second dry build shows the adapter now splits QKV."""
    _dry, mapping = mapped("gpt_neox")
    port = native_port("llama3", root / "ports", ARCH, "rg_llama_written")
    adapters = port / "weight_adapters.py"
    user_code = "\n\ndef my_helper() -> int:\n    return 42  # user code outside the markers\n"
    adapters.write_text(adapters.read_text() + user_code)
    original = adapters.read_text()
    write_adapter_table(port, mapping)
    write_adapter_table(port, mapping)  # a rewrite replaces the block, never duplicates it
    text = adapters.read_text()
    assert text.count(renames.BEGIN_MARKER) == 1 and text.count(renames.END_MARKER) == 1
    assert text.startswith(original.rstrip("\n")) and "return 42  # user code" in text
    assert '"gpt_neox.layers.*.attention.dense.weight": "layers.*.self_attn.o_proj.weight"' in text

    again = dry_build(family_twin_dir("gpt_neox"), port)
    missing = [k for k in again.expected if k not in again.adapted]
    orphans = [k for k in again.adapted if k not in again.expected]
    assert {p for p, _ in summarize(missing)} == {"layers.*.mlp.gate_proj.weight"}
    assert {p for p, _ in summarize(orphans)} == EXPECTED_LEFTOVERS["gpt_neox"][0]
    shared = set(again.expected) & set(again.adapted)
    assert "layers.1.self_attn.k_proj.weight" in shared
    assert all(again.expected[k] == again.adapted[k] for k in shared)


def test_broken_markers_are_refused(root: Path, llama_port: Path) -> None:
    port = native_port("llama3", root / "ports", ARCH, "rg_llama_markers")
    adapters = port / "weight_adapters.py"
    adapters.write_text(adapters.read_text() + "\n" + renames.BEGIN_MARKER + "\n")
    before = adapters.read_text()
    with pytest.raises(UserError, match="markers are broken"):
        write_adapter_table(port, renames.WeightMapping())
    assert adapters.read_text() == before


# -- renames on synthetic tables (the matching rules themselves) ---------------------------


def test_fused_projections_split_and_stack() -> None:
    graph = {"layers.0.self_attn.q_proj.weight": (64, 32), "layers.0.self_attn.k_proj.weight": (16, 32),
             "layers.0.self_attn.v_proj.weight": (16, 32), "layers.0.mlp.gate_up_proj.weight": (96, 32)}
    ckpt = {"model.layers.0.self_attn.qkv_proj.weight": (96, 32), "model.layers.0.mlp.gate_proj.weight": (48, 32),
            "model.layers.0.mlp.up_proj.weight": (48, 32), "model.layers.0.self_attn.rotary_emb.inv_freq": (8,)}
    mapping = derive_mapping(ckpt, graph, {})
    assert mapping.complete, mapping
    (split,) = mapping.splits
    assert split.layout == "blocks" and split.ratio == (4, 1, 1)
    (concat,) = mapping.concats
    assert concat.target == "layers.0.mlp.gate_up_proj.weight"
    assert concat.sources == ("model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight")
    assert "model.layers.0.self_attn.rotary_emb.inv_freq" in mapping.dropped


def test_a_fused_input_read_from_its_code_splits_gate_first() -> None:
    """ModernBERT-decoder's ``mlp.Wi``: its forward chunks it in two and activates the first half (the gate), its
    ``mlp.Wo`` is the down projection, its head's linear ``decoder`` sits at the root beside the ``lm_head``
    transform, and its token table and norm sit in an ``embeddings`` module: all read from the module tree."""
    config = {"model_type": "modernbert-decoder", "architectures": ["ModernBertDecoderForCausalLM"],
              "hidden_size": 8, "intermediate_size": 12, "num_attention_heads": 2, "num_hidden_layers": 2,
              "vocab_size": 16, "layer_types": ["full_attention", "sliding_attention"], "tie_word_embeddings": True}
    ckpt = {"model.layers.0.mlp.Wi.weight": (24, 8), "model.layers.0.mlp.Wo.weight": (8, 12),
            "model.embeddings.tok_embeddings.weight": (16, 8), "model.embeddings.norm.weight": (8,),
            "lm_head.dense.weight": (8, 8), "lm_head.norm.weight": (8,), "decoder.bias": (16,)}
    graph = {"layers.0.mlp.gate_proj.weight": (12, 8), "layers.0.mlp.up_proj.weight": (12, 8),
             "layers.0.mlp.down_proj.weight": (8, 12), "embed_tokens.weight": (16, 8), "embed_norm.weight": (8,),
             "head_transform.dense.weight": (8, 8), "head_transform.norm.weight": (8,), "lm_head.bias": (16,),
             "lm_head.weight": (16, 8)}
    mapping = derive_mapping(ckpt, graph, config)
    assert mapping.complete, mapping
    (split,) = mapping.splits
    assert split.source == "model.layers.0.mlp.Wi.weight"
    assert split.targets == ("layers.0.mlp.gate_proj.weight", "layers.0.mlp.up_proj.weight")
    assert mapping.renames["decoder.bias"] == "lm_head.bias"
    assert mapping.ties == {"lm_head.weight": "model.embeddings.tok_embeddings.weight"}


def test_shape_mismatch_is_reported() -> None:
    mapping = derive_mapping({"model.norm.weight": (64,), "model.embed_tokens.weight": (10, 64)},
                             {"norm.weight": (32,), "embed_tokens.weight": (10, 64)}, {})
    assert [(m.checkpoint, m.graph, m.checkpoint_shape, m.graph_shape) for m in mapping.mismatches] == \
        [("model.norm.weight", "norm.weight", (64,), (32,))]
    assert not mapping.complete and not mapping.orphans and not mapping.missing


def test_tied_head_filled_or_dropped() -> None:
    embed = {"model.embed_tokens.weight": (10, 8)}
    graph_head = {"embed_tokens.weight": (10, 8), "lm_head.weight": (10, 8)}
    tied = derive_mapping(embed, graph_head, {"tie_word_embeddings": True})
    assert tied.ties == {"lm_head.weight": "model.embed_tokens.weight"} and tied.complete
    untied = derive_mapping(embed, graph_head, {"tie_word_embeddings": False})
    assert untied.missing == ["lm_head.weight"] and untied.notes
    stored = derive_mapping({**embed, "lm_head.weight": (10, 8)}, {"embed_tokens.weight": (10, 8)},
                            {"tie_word_embeddings": True})
    assert "lm_head.weight" in stored.dropped and stored.complete


def test_fused_rules_are_data() -> None:
    assert all(rule.layout in ("blocks", "per_head", "four_shards") for rule in FUSED_RULES)
    assert renames.candidate_names("gpt_neox.layers.3.mlp.dense_h_to_4h.weight")[-1] == "layers.3.mlp.up_proj.weight"


# -- the written runtime code, on numbers ---------------------------------------------------


class _FakeWeights:
    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def data(self) -> Any:
        from max.graph.weights import WeightData

        return WeightData.from_numpy(self.array, "x")


def test_runtime_code_splits_and_stacks_values() -> None:
    table = renames.AdapterTable(
        renames={"model.norm.weight": "norm.weight"},
        splits={"x.layers.*.attention.query_key_value.weight": ("per_head", ("q.*", "k.*", "v.*"), (1, 1, 1)),
                "model.layers.*.self_attn.qkv_proj.weight": ("blocks", ("bq.*", "bk.*", "bv.*"), (2, 1, 1))},
        concats={"gu.*": ("blocks", ("model.layers.*.mlp.gate_proj.weight", "model.layers.*.mlp.up_proj.weight"))},
        ties={"lm_head.weight": "model.embed_tokens.weight"},
        drops={"model.layers.*.rotary_emb.inv_freq": "buffer"},
    )
    block = renames.render_table_block(table, "convert")
    namespace: dict[str, Any] = {"convert": lambda state_dict, **kw: {k: v.data() for k, v in state_dict.items()}}
    exec(compile(block, "<table>", "exec"), namespace)  # our own generated code
    heads, head_size, hidden = 2, 3, 4
    fused = np.arange(heads * 3 * head_size * hidden, dtype=np.float32).reshape(-1, hidden)
    qkv = np.arange(8 * hidden, dtype=np.float32).reshape(8, hidden)
    gate, up = np.ones((2, hidden), np.float32), np.zeros((2, hidden), np.float32)
    state = {"x.layers.0.attention.query_key_value.weight": _FakeWeights(fused),
             "model.layers.1.self_attn.qkv_proj.weight": _FakeWeights(qkv),
             "model.layers.1.mlp.gate_proj.weight": _FakeWeights(gate),
             "model.layers.1.mlp.up_proj.weight": _FakeWeights(up),
             "model.layers.1.rotary_emb.inv_freq": _FakeWeights(np.ones(2, np.float32)),
             "model.embed_tokens.weight": _FakeWeights(np.eye(3, dtype=np.float32)),
             "model.norm.weight": _FakeWeights(np.ones(4, np.float32))}
    hf_config = type("Cfg", (), {"num_attention_heads": heads})()
    converted = namespace["convert"](state, huggingface_config=hf_config, pipeline_config=None)
    out = {k: np.from_dlpack(v.data) for k, v in converted.items()}
    per_head = fused.reshape(heads, 3, head_size, hidden)
    for index, name in enumerate(("q.0", "k.0", "v.0")):
        np.testing.assert_array_equal(out[name], per_head[:, index].reshape(-1, hidden))
    np.testing.assert_array_equal(out["bq.1"], qkv[:4])
    np.testing.assert_array_equal(out["bk.1"], qkv[4:6])
    np.testing.assert_array_equal(out["bv.1"], qkv[6:])
    np.testing.assert_array_equal(out["gu.1"], np.concatenate([gate, up]))
    np.testing.assert_array_equal(out["lm_head.weight"], np.eye(3))
    assert "norm.weight" in out and not any("inv_freq" in k for k in out)
    assert "model.layers.1.mlp.gate_proj.weight" not in out


def test_grouped_query_fused_qkv_splits_by_kv_group() -> None:
    """Falcon's new decoder stores QKV per KV head: that head's queries, then its K, then its V."""
    table = renames.AdapterTable(splits={"h.*.qkv.weight": ("per_head", ("q.*", "k.*", "v.*"), (4, 1, 1))})
    namespace: dict[str, Any] = {"convert": lambda state_dict, **kw: {k: v.data() for k, v in state_dict.items()}}
    exec(compile(renames.render_table_block(table, "convert"), "<table>", "exec"), namespace)  # our own code
    heads, kv_heads, head_size, hidden = 8, 2, 3, 5
    groups = np.arange(kv_heads * (heads // kv_heads + 2) * head_size * hidden, dtype=np.float32)
    groups = groups.reshape(kv_heads, heads // kv_heads + 2, head_size, hidden)
    state = {"h.0.qkv.weight": _FakeWeights(groups.reshape(-1, hidden))}
    hf_config = type("Cfg", (), {"num_attention_heads": heads})()
    out = {k: np.from_dlpack(v.data) for k, v in namespace["convert"](state, huggingface_config=hf_config).items()}
    np.testing.assert_array_equal(out["q.0"], groups[:, :4].reshape(-1, hidden))
    np.testing.assert_array_equal(out["k.0"], groups[:, 4].reshape(-1, hidden))
    np.testing.assert_array_equal(out["v.0"], groups[:, 5].reshape(-1, hidden))


def test_mpt_fused_qkv_splits_in_blocks() -> None:
    from transformers import AutoConfig

    config = AutoConfig.for_model("mpt", d_model=16, n_heads=2, n_layers=1).to_dict() | {
        "architectures": ["MptForCausalLM"]}
    key = "transformer.blocks.0.attn.Wqkv.weight"
    graph = {f"layers.0.self_attn.{p}_proj.weight": (16, 16) for p in "qkv"}
    mapping = derive_mapping({key: (48, 16)}, graph, config)
    assert mapping.complete and [(s.source, s.layout, s.targets) for s in mapping.splits] == [
        (key, renames.BLOCKS, tuple(graph))]


def test_codegen_fused_qkv_splits_by_shard() -> None:
    """CodeGen's qkv_proj holds four shards, each [q | v | k] for a quarter of the heads."""
    table = renames.AdapterTable(splits={"h.*.qkv.weight": ("four_shards", ("q.*", "v.*", "k.*"), (1, 1, 1))})
    namespace: dict[str, Any] = {"convert": lambda state_dict, **kw: {k: v.data() for k, v in state_dict.items()}}
    exec(compile(renames.render_table_block(table, "convert"), "<table>", "exec"), namespace)  # our own code
    shards = np.arange(4 * 3 * 2 * 5, dtype=np.float32).reshape(4, 3, 2, 5)
    state = {"h.0.qkv.weight": _FakeWeights(shards.reshape(-1, 5))}
    hf_config = type("Cfg", (), {"num_attention_heads": 8})()
    out = {k: np.from_dlpack(v.data) for k, v in namespace["convert"](state, huggingface_config=hf_config).items()}
    for index, name in enumerate(("q.0", "v.0", "k.0")):
        np.testing.assert_array_equal(out[name], shards[:, index].reshape(-1, 5))


def test_keys_of_an_open_unexplained_row_are_set_aside() -> None:
    """BitNet's sub-norms match no trait: while that row is open, the partial port loads without them."""
    names = ["model.layers.0.self_attn.attn_sub_norm.weight", "model.layers.1.mlp.ffn_sub_norm.weight",
             "model.layers.0.self_attn.q_proj.weight", "model.layers.0.input_layernorm.weight"]
    pending = renames.pending_delta_keys(names, ["unexplained_weights"])
    assert pending == {"unexplained_weights": names[:2]}
    assert renames.pending_delta_keys(names, []) == {}


def test_gaps_are_set_aside_and_stood_in() -> None:
    """What names cannot match is closed for a partial port: orphans and mismatched tensors dropped with a
    reason, the graph weights nothing fills returned as stand-ins (layer numbers as ``*``)."""
    mapping = derive_mapping({"model.norm.weight": (64,), "model.extra.weight": (3,),
                              "model.layers.0.self_attn.q_proj.weight": (8, 8)},
                             {"norm.weight": (32,), "layers.0.self_attn.q_proj.weight": (8, 8),
                              "layers.0.self_attn.k_proj.weight": (8, 8)}, {})
    stand_ins = renames.stand_in_gaps(mapping)
    assert stand_ins == {"norm.weight": "model.norm.weight has another shape",
                         "layers.*.self_attn.k_proj.weight": "no checkpoint tensor fills it"}
    assert set(mapping.dropped) == {"model.norm.weight", "model.extra.weight"}
    assert all(reason.startswith(f"{renames.SET_ASIDE} {renames.UNFILLED})") for reason in mapping.dropped.values())
    assert mapping.complete and mapping.renames == {"model.layers.0.self_attn.q_proj.weight":
                                                    "layers.0.self_attn.q_proj.weight"}


@pytest.mark.parametrize(("model_type", "architecture", "key", "graph_name"), [
    ("xglm", "XGLMForCausalLM", "model.layer_norm.weight", "norm.weight"),  # final norm under its own name
    ("gpt_neo", "GPTNeoForCausalLM", "transformer.h.0.attn.attention.q_proj.weight",
     "layers.0.self_attn.q_proj.weight"),  # projections one module deeper
    ("biogpt", "BioGptForCausalLM", "biogpt.layers.1.fc1.weight", "layers.1.mlp.up_proj.weight"),  # own prefix
    ("biogpt", "BioGptForCausalLM", "biogpt.layer_norm.bias", "norm.bias"),  # prefix and final norm together
    # the layer list and the MLP under names of their own
    ("mpt", "MptForCausalLM", "transformer.blocks.1.ffn.up_proj.weight", "layers.1.mlp.up_proj.weight"),
])
def test_renames_read_from_the_module_tree(model_type: str, architecture: str, key: str, graph_name: str) -> None:
    from transformers import AutoConfig

    config = AutoConfig.for_model(model_type).to_dict() | {"architectures": [architecture]}
    assert graph_name not in renames.candidate_names(key)  # no table row knows this family's name
    assert graph_name in renames.candidate_names(key, renames.found_renames(renames.module_tree(config)))
    mapping = derive_mapping({key: (4,)}, {graph_name: (4,)}, config)
    assert mapping.renames == {key: graph_name} and mapping.complete


@pytest.mark.parametrize(("options", "norm_key"), [
    ({}, None),  # the adapter's input normed by the block's own output.LayerNorm: nothing more to rename
    ({"adapter_layer_norm": True}, "roberta.encoder.layer.0.output.adapter_layer_norm.weight"),
])
def test_the_served_languages_adapter_is_renamed_and_the_others_set_aside(options: dict, norm_key: str | None) -> None:
    """X-MOD: the config's default language's adapter becomes the port's ``language_adapter`` (its own input norm
    too); every other language's adapter is set aside, named."""
    from transformers import AutoConfig

    config = AutoConfig.for_model("xmod", is_decoder=True, languages=["en_XX", "de_DE"], default_language="de_DE",
                                  **options).to_dict() | {"architectures": ["XmodForCausalLM"]}
    layer = "roberta.encoder.layer.0.output"
    checkpoint = {f"{layer}.adapter_modules.{lang}.dense1.weight": (2, 4) for lang in ("en_XX", "de_DE")}
    graph = {"layers.0.language_adapter.dense1.weight": (2, 4)}
    if norm_key:
        checkpoint[norm_key] = graph["layers.0.language_adapter.norm.weight"] = (4,)
    mapping = derive_mapping(checkpoint, graph, config)
    assert mapping.renames == {f"{layer}.adapter_modules.de_DE.dense1.weight": "layers.0.language_adapter.dense1.weight",
                               **({norm_key: "layers.0.language_adapter.norm.weight"} if norm_key else {})}
    assert mapping.dropped == {f"{layer}.adapter_modules.en_XX.dense1.weight":
                               "another language's adapter: the port serves de_DE only"}
    assert mapping.complete


# -- gates ---------------------------------------------------------------------------------


def run_cli(*argv: str) -> int:
    return main(list(argv))


def test_gates_pass_on_a_good_native_copy(llama_ckpt: Path, llama_port: Path, tmp_path: Path) -> None:
    out = tmp_path / "gates.json"
    code = run_cli("gates", str(llama_ckpt), "--port-dir", str(llama_port), "--json-out", str(out))
    payload = json.loads(out.read_text())
    statuses = {g["gate"]: g["status"] for g in payload["gates"]}
    assert code == 0 and payload["exit_code"] == 0 and payload["passed"], payload
    assert all(s in ("PASS", "WARN") for s in statuses.values()), statuses
    for gate in ("arch-name", "donor-still-in-place", "checkpoint", "import-smoke", "graph-dry-build",
                 "adapter-graph-keys", "weights-format"):
        assert statuses[gate] == "PASS", (gate, payload)
    # A float32 checkpoint while the llama3 copy's default encoding is q4_k: a warning, not a failure.
    encoding = next(g for g in payload["gates"] if g["gate"] == "encoding")
    assert encoding["status"] == "WARN" and "q4_k" in encoding["detail"]
    assert "parity" not in statuses


def test_gates_fail_when_the_donor_is_still_in_place(root: Path, tmp_path: Path) -> None:
    port = native_port("llama3", root / "ports", "HeliumForCausalLM", "rg_helium")
    ckpt = copied_checkpoint(family_twin_dir("helium"), root / "ckpt" / "helium")
    out = tmp_path / "helium.json"
    code = run_cli("gates", str(ckpt), "--port-dir", str(port), "--phase", "preflight", "--json-out", str(out))
    statuses = {g["gate"]: g for g in json.loads(out.read_text())["gates"]}
    assert code == 1
    assert statuses["donor-still-in-place"]["status"] == "FAIL"
    assert "llama3" in statuses["donor-still-in-place"]["detail"]
    assert statuses["arch-name"]["status"] == "PASS"
    assert not any(g["phase"] == "smoke" for g in statuses.values())


def test_gates_fail_while_scaffold_delta_markers_remain(root: Path, tmp_path: Path) -> None:
    ckpt = copied_checkpoint(family_twin_dir("helium"), root / "ckpt" / "helium-scaffold")
    out_dir = tmp_path / "ports"
    assert run_cli("scaffold", str(ckpt), "--start-from", "llama3", "--output-dir", str(out_dir)) == 0
    port = out_dir / "helium"
    out = tmp_path / "scaffold.json"
    code = run_cli("gates", str(ckpt), "--port-dir", str(port), "--phase", "preflight", "--json-out", str(out))
    donor = {g["gate"]: g for g in json.loads(out.read_text())["gates"]}["donor-still-in-place"]
    assert code == 1 and donor["status"] == "FAIL" and "rotary_style" in donor["detail"]
    # Once the row is implemented and its marker removed, the gate passes.
    for path in port.rglob("*.py"):
        path.write_text(path.read_text().replace("TODO(delta rotary_style)", "Implemented (rotary_style)"))
    run_cli("gates", str(ckpt), "--port-dir", str(port), "--phase", "preflight", "--json-out", str(out))
    donor = {g["gate"]: g for g in json.loads(out.read_text())["gates"]}["donor-still-in-place"]
    assert donor["status"] == "PASS"


def test_parity_is_skipped_after_a_failure(root: Path) -> None:
    ctx = gates.open_context(str(family_twin_dir("helium")), native_port("llama3", root / "ports", "HeliumForCausalLM",
                                                                          "rg_helium_skip"))
    ctx.results.append(gates.Gate("preflight", "donor-still-in-place", gates.FAIL, "still the donor"))
    status, detail = gates.gate_parity(ctx)[:2]
    assert status == gates.SKIP and "donor-still-in-place" in detail


def test_run_oss_gates_script_fails_on_an_arch_name_mismatch(llama_port: Path, tmp_path: Path) -> None:
    """The seed-named script, same args: the llama twin says LlamaForCausalLM, the port registers another name."""
    out = tmp_path / "mismatch.json"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "run_oss_gates.py"), str(family_twin_dir("llama")),
                             "--port-dir", str(llama_port), "--phase", "preflight", "--json-out", str(out)],
                            capture_output=True, text=True, timeout=300, env=child_env())
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    arch = next(g for g in json.loads(out.read_text())["gates"] if g["gate"] == "arch-name")
    assert arch["status"] == "FAIL" and ARCH in arch["detail"] and "LlamaForCausalLM" in arch["detail"]
    assert "arch-name" in result.stdout and "FAIL" in result.stdout


def test_renames_cli_json(llama_ckpt: Path, llama_port: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli("renames", str(llama_ckpt), "--port-dir", str(llama_port), "--json")
    payload = json.loads(capsys.readouterr().out)
    assert code == 0 and payload["complete"] and not payload["on_twin"]
    assert payload["renames"]["model.norm.weight"] == "norm.weight"
    assert payload["orphans"] == [] and payload["missing"] == []


@pytest.mark.slow
def test_phase_all_runs_parity_on_a_good_port(llama_ckpt: Path, llama_port: Path, tmp_path: Path) -> None:
    """`--phase all` ends with the parity engine (compiles the graph: minutes cold on 2 cores)."""
    out = tmp_path / "all.json"
    code = run_cli("gates", str(llama_ckpt), "--port-dir", str(llama_port), "--phase", "all", "--json-out", str(out))
    parity = next(g for g in json.loads(out.read_text())["gates"] if g["gate"] == "parity")
    assert code == 0 and parity["status"] == "PASS", parity


def test_stacked_experts_are_cut_into_each_experts_weights() -> None:
    """GraniteMoE keeps every expert in one 3-D tensor: input_linear [E, 2I, H] (each expert's gate, then up) and
    output_linear [E, H, I]; the table cuts them into the per-expert modules the port builds."""
    experts, inner, hidden = 3, 4, 5
    prefix = "model.layers.0.block_sparse_moe."
    checkpoint = {prefix + "input_linear.weight": (experts, 2 * inner, hidden),
                  prefix + "output_linear.weight": (experts, hidden, inner)}
    graph = {f"layers.0.mlp.experts.{j}.{part}.weight": (inner, hidden) for j in range(experts)
             for part in ("gate_proj", "up_proj")}
    graph |= {f"layers.0.mlp.experts.{j}.down_proj.weight": (hidden, inner) for j in range(experts)}
    mapping = derive_mapping(checkpoint, graph, {"model_type": "granitemoe"})
    assert mapping.complete, (mapping.orphans, mapping.missing, mapping.mismatches)
    table = renames.adapter_table(mapping)
    namespace: dict[str, Any] = {"convert": lambda state_dict, **kw: {k: v.data() for k, v in state_dict.items()}}
    exec(compile(renames.render_table_block(table, "convert"), "<table>", "exec"), namespace)  # our own code
    up_gate = np.arange(experts * 2 * inner * hidden, dtype=np.float32).reshape(experts, 2 * inner, hidden)
    down = -np.arange(experts * hidden * inner, dtype=np.float32).reshape(experts, hidden, inner)
    state = {prefix + "input_linear.weight": _FakeWeights(up_gate), prefix + "output_linear.weight": _FakeWeights(down)}
    out = {k: np.from_dlpack(v.data) for k, v in namespace["convert"](state).items()}
    for j in range(experts):
        np.testing.assert_array_equal(out[f"layers.0.mlp.experts.{j}.gate_proj.weight"], up_gate[j, :inner])
        np.testing.assert_array_equal(out[f"layers.0.mlp.experts.{j}.up_proj.weight"], up_gate[j, inner:])
        np.testing.assert_array_equal(out[f"layers.0.mlp.experts.{j}.down_proj.weight"], down[j])
