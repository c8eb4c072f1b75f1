"""The real Gemma 3 270M checkpoint converted from GGUF is a faithful oracle, or these tests say where it is not.

The conversion (tests/support/gemma3.py) repairs what the GGUF path gets wrong (its FIXES); these tests check
the repairs against an independent reading of the GGUF, and what transformers' loader already gets right
against google/gemma-3-270m's published config.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.gemma3 import CONTROL, NORMAL, gguf_path, read_vocabulary

pytestmark = pytest.mark.slow  # builds the checkpoint once (about two minutes on 2 cores)

#: google/gemma-3-270m's config.json, the values that decide what the model computes.
PUBLISHED = {
    "model_type": "gemma3_text", "hidden_size": 640, "intermediate_size": 2048, "num_hidden_layers": 18,
    "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256, "query_pre_attn_scalar": 256,
    "sliding_window": 512, "rms_norm_eps": 1e-6, "vocab_size": 262144, "max_position_embeddings": 32768,
    "hidden_activation": "gelu_pytorch_tanh", "attn_logit_softcapping": None, "final_logit_softcapping": None,
    "tie_word_embeddings": True, "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0,
}
#: Every sixth layer attends globally (rope base 1e6), the others in a 512-token window (rope base 1e4).
FULL_LAYERS = {5, 11, 17}
ROPE_THETA = {"full_attention": 1_000_000.0, "sliding_attention": 10_000.0}

TEXTS = ("Hello world", "The capital of France is Paris.", "Rivers carry water to the sea, don't they?",
         "naïve café déjà vu 2026", "def fibonacci(n): return n if n < 2 else fibonacci(n - 1)")


@pytest.fixture(scope="module")
def vocabulary() -> tuple[list[str], list[float], list[int]]:
    return read_vocabulary(gguf_path())


def test_config_is_the_published_gemma3_270m(gemma3_dir: Path) -> None:
    config = json.loads((gemma3_dir / "config.json").read_text())
    assert {key: config.get(key) for key in PUBLISHED} == PUBLISHED
    assert {i for i, kind in enumerate(config["layer_types"]) if kind == "full_attention"} == FULL_LAYERS
    assert {kind: p["rope_theta"] for kind, p in config["rope_parameters"].items()} == ROPE_THETA
    generation = json.loads((gemma3_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [1, 106]  # <eos>, <end_of_turn>


def test_norm_weights_have_llamacpps_plus_one_taken_off(gemma3_dir: Path) -> None:
    """llama.cpp stores Gemma's RMSNorm weights as 1 + w; the checkpoint must hold w, as Gemma's modeling code adds 1."""
    import numpy as np
    from gguf import GGUFReader
    from safetensors.torch import load_file

    raw = {t.name: np.asarray(t.data, dtype=np.float32) for t in GGUFReader(str(gguf_path())).tensors
           if t.name.endswith("norm.weight")}
    ours = {name: t.float().numpy() for name, t in load_file(str(gemma3_dir / "model.safetensors")).items()
            if name.endswith("norm.weight")}
    pairs = {"blk.3.attn_norm.weight": "model.layers.3.input_layernorm.weight",
             "blk.3.attn_q_norm.weight": "model.layers.3.self_attn.q_norm.weight",
             "blk.3.attn_k_norm.weight": "model.layers.3.self_attn.k_norm.weight",
             "blk.3.post_attention_norm.weight": "model.layers.3.post_attention_layernorm.weight",
             "blk.3.ffn_norm.weight": "model.layers.3.pre_feedforward_layernorm.weight",
             "blk.3.post_ffw_norm.weight": "model.layers.3.post_feedforward_layernorm.weight",
             "output_norm.weight": "model.norm.weight"}
    for gguf_name, name in pairs.items():
        np.testing.assert_allclose(ours[name], raw[gguf_name] - 1, rtol=1e-2, atol=1e-2, err_msg=name)
    assert len(ours) == len(raw) == 18 * 6 + 1


def _sentencepiece_bpe(text: str, scores: dict[str, float]) -> list[str]:
    """SentencePiece's BPE as the GGUF describes it: spaces become '▁', then the adjacent pair whose merged piece
    scores highest merges, until no pair is a piece (an independent reading, not transformers' merges)."""
    symbols = list(text.replace(" ", "▁"))
    while True:
        candidates = [(scores[a + b], i) for i, (a, b) in enumerate(zip(symbols, symbols[1:], strict=False)) if a + b in scores]
        if not candidates:
            return symbols
        _, at = max(candidates, key=lambda c: (c[0], -c[1]))
        symbols[at:at + 2] = [symbols[at] + symbols[at + 1]]


def test_tokenizer_is_sentencepiece_bpe_with_bos(gemma3_dir: Path, vocabulary) -> None:
    from transformers import AutoTokenizer

    pieces, scores, types = vocabulary
    normal = {piece: score for piece, score, kind in zip(pieces, scores, types, strict=True) if kind == NORMAL}
    tokenizer = AutoTokenizer.from_pretrained(str(gemma3_dir))
    for text in TEXTS:
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == 2  # <bos>
        assert tokenizer.convert_ids_to_tokens(ids[1:]) == _sentencepiece_bpe(text, normal), text
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer("Hello world")["input_ids"] == [2, 9259, 1902]


def test_chat_template_is_gemma3s_turn_format(gemma3_dir: Path, vocabulary) -> None:
    from transformers import AutoTokenizer

    pieces, _, types = vocabulary
    tokenizer = AutoTokenizer.from_pretrained(str(gemma3_dir))
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == ("<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n"
                    "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n")
    ids = tokenizer.apply_chat_template(messages[1:2], add_generation_prompt=True, tokenize=True, return_dict=False)
    assert list(ids) == [2, 105, 2364, 107, 10979, 106, 107, 105, 4368, 107]
    assert pieces[105] == "<start_of_turn>" and types[105] == CONTROL
    assert tokenizer.convert_ids_to_tokens(ids) == ["<bos>", "<start_of_turn>", "user", "\n", "Hi", "<end_of_turn>",
                                                    "\n", "<start_of_turn>", "model", "\n"]


def test_transformers_own_gguf_tokenizer_splits_words_into_characters(tmp_path: Path) -> None:
    """Why FIXES rebuilds the tokenizer: the loader's own (saved and reloaded, as a checkpoint ships it) reads
    'Hello' as five characters. When transformers fixes this, this test fails and the fix can go."""
    from transformers import AutoTokenizer

    gguf = gguf_path()
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(str(tmp_path))
    assert reloaded.convert_ids_to_tokens(reloaded("Hello world")["input_ids"]) == list("Hello") + ["▁"] + list("world")
