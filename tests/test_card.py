"""The model-card reader on a realistic card, edge cases, and hostile text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from import_model import cli
from import_model.recon import card
from import_model.recon.card import CardLink, CardNotes, FamilyClaim, scan_card
from import_model.source import open_source
from import_model.source.base import MAX_SMALL_FILE_BYTES

REALISTIC_CARD = """\
---
license: other
license_name: falcon-lite-license
library_name: transformers
pipeline_tag: text-generation
base_model:
  - "tiiuae/falcon-lite-7b-base"
tags:
- llama-factory
- mistral
- text-generation-inference
- arxiv:2402.00838
model-index:
- name: Owl-7B
  results: []
---

# Owl-7B

<p align="center"><img src="https://example.com/owl.png" width="200"></p>

Owl-7B is a fine-tuned version of [Qwen2.5-7B](https://huggingface.co/Qwen/Qwen2.5-7B) on 2T tokens of \
curated web text. Its tokenizer is derived from Llama 3. Read the [paper](https://arxiv.org/abs/2402.00838v2) \
and our [blog post](https://owl.ai/blog/owl-7b/).

## Architecture

We introduce **QK-norm** in every attention layer, unlike prior models in this size class.
- Grouped-query attention with a sliding window of 4096 tokens in every other layer.
- Input and output embeddings are tied.
- Attention and MLP run in parallel, as in GPT-J.

| Parameter | Value |
|-----------|-------|
| alibi     | no    |

```python
# Mixture of Experts is not used; this comment is code, not prose.
model = AutoModelForCausalLM.from_pretrained("owl/owl-7b", trust_remote_code=True)
```

Code: https://github.com/owl-ai/owl and https://github.com/owl-ai/owl/tree/main/train.
The HF paper page is https://huggingface.co/papers/2402.00838.

## Citation

See https://openreview.net/forum?id=abc123 for the reviews.
"""


def test_realistic_card_gives_exactly_the_expected_notes() -> None:
    notes = scan_card(REALISTIC_CARD)
    assert notes == CardNotes(
        family_claims=(
            FamilyClaim("Falcon", "base_model", "base_model: tiiuae/falcon-lite-7b-base"),
            FamilyClaim("Mistral", "tags", "tags: mistral"),
            FamilyClaim("Qwen", "text",
                        "Owl-7B is a fine-tuned version of Qwen2.5-7B on 2T tokens of curated web text."),
            FamilyClaim("Llama", "text", "Its tokenizer is derived from Llama 3."),
        ),
        base_models=("tiiuae/falcon-lite-7b-base",),
        tags=("llama-factory", "mistral", "text-generation-inference", "arxiv:2402.00838"),
        library_name="transformers",
        license="other (falcon-lite-license)",
        links=(
            CardLink("paper", "https://arxiv.org/abs/2402.00838v2"),
            CardLink("blog", "https://owl.ai/blog/owl-7b/"),
            CardLink("code", "https://github.com/owl-ai/owl"),
            CardLink("paper", "https://openreview.net/forum?id=abc123"),
        ),
        tricks={
            "qk-norm": ("We introduce QK-norm in every attention layer, unlike prior models in this size class.",),
            "we-introduce": ("We introduce QK-norm in every attention layer, unlike prior models in this size class.",),
            "unlike-prior": ("We introduce QK-norm in every attention layer, unlike prior models in this size class.",),
            "sliding-window": ("Grouped-query attention with a sliding window of 4096 tokens in every other layer.",),
            "tied-embeddings": ("Input and output embeddings are tied.",),
            "parallel-residual": ("Attention and MLP run in parallel, as in GPT-J.",),
        },
        truncated=False,
    )
    assert notes.families == ("Falcon", "Mistral", "Qwen", "Llama")


def test_tags_claim_a_family_only_when_they_name_it() -> None:
    notes = scan_card("---\ntags: [llama-factory, llama.cpp, qwen2, gemma-2]\n---\nHello there, this is a card.\n")
    assert notes.families == ("Qwen", "Gemma")


def test_code_blocks_headings_and_tables_are_not_prose() -> None:
    text = (
        "# Mixture of experts with ALiBi\n\n"
        "~~~\nWe introduce a recurrent state-space layer here.\n~~~\n"
        "| uses fp8 weights | yes |\n"
        "A plain sentence about nothing special at all.\n"
    )
    assert scan_card(text).tricks == {}


def test_list_items_are_separate_sentences() -> None:
    notes = scan_card("Intro line that runs on\n* uses multi-head latent attention\n* uses a router over 64 experts\n")
    assert notes.tricks["mla"] == ("uses multi-head latent attention",)
    assert notes.tricks["moe-routing"] == ("uses a router over 64 experts",)


@pytest.mark.parametrize(("sentence", "tag"), [
    ("The model uses partial rotary embeddings on a quarter of each head.", "partial-rotary"),
    ("Logits are soft-capped at 30 before the softmax.", "softcapping"),
    ("Weights are released in FP8 only, with block-wise scales.", "fp8-only"),
    ("Attention uses ALiBi instead of rotary embeddings.", "alibi"),
    ("Every third layer is a Mamba-2 block instead of attention.", "state-space"),
    ("Half the layers use gated DeltaNet linear attention.", "linear-attention"),
    ("Fused Triton kernels are required for the router.", "custom-kernels"),
    ("This is the first open model to reach this score with 1B parameters.", "first-model"),
    ("It replaces softmax attention with differential attention in every head.", "novel-attention"),
    ("Context is extended to 128k tokens with YaRN.", "rope-scaling"),
    ("The prefix uses bidirectional attention, as in a prefix-LM.", "non-causal"),
    ("An extra head is trained with multi-token prediction.", "multi-token-prediction"),
])
def test_each_trick_family_is_recognised(sentence: str, tag: str) -> None:
    assert scan_card(sentence).tricks.get(tag) == (sentence,)


def test_long_sentence_excerpt_keeps_the_match_in_view() -> None:
    sentence = "Filler words go here " * 40 + "and then we apply QK-norm to every head " + "more filler " * 40 + "end."
    (excerpt,) = scan_card(sentence).tricks["qk-norm"]
    assert "QK-norm" in excerpt
    assert excerpt.startswith("...") and excerpt.endswith("...")
    assert len(excerpt) <= card.EXCERPT_CHARS + 6


def test_links_are_deduplicated_and_classified() -> None:
    text = (
        "See arXiv:2307.09288 and https://arxiv.org/pdf/2307.09288.pdf and https://huggingface.co/papers/2307.09288. "
        "Code at https://GitHub.com/org/repo, https://github.com/org/repo/blob/main/LICENSE and "
        "https://github.com/org/repo. Badge: https://img.shields.io/badge/x.svg and https://huggingface.co/org/model. "
        "Paper PDF: https://example.org/papers/owl.pdf; write-up at https://org.substack.com/p/owl."
    )
    assert scan_card(text).links == (
        CardLink("paper", "https://arxiv.org/pdf/2307.09288.pdf"),
        CardLink("code", "https://GitHub.com/org/repo"),
        CardLink("paper", "https://example.org/papers/owl.pdf"),
        CardLink("blog", "https://org.substack.com/p/owl"),
    )


def test_front_matter_variants() -> None:
    crlf = "---\r\nlicense: apache-2.0\r\nbase_model: ['mistralai/Mistral-7B-v0.1']\r\n---\r\nBody text goes here.\r\n"
    notes = scan_card(crlf)
    assert notes.license == "apache-2.0"
    assert notes.base_models == ("mistralai/Mistral-7B-v0.1",)
    assert notes.families == ("Mistral",)
    unclosed = scan_card("---\nlicense: mit\nThis front matter never closes, so it is body text.\n")
    assert unclosed.license is None and unclosed.base_models == ()


@pytest.mark.parametrize("empty", ["", "   \n\n", None, 42, "---\n---\n"])
def test_empty_or_non_text_input_gives_empty_notes(empty: object) -> None:
    assert scan_card(empty) == CardNotes()  # type: ignore[arg-type]


HOSTILE = {
    "brackets": "[" * 300_000,
    "open-links": ("[a](" + "b" * 499) * 600,
    "angle-brackets": ("<" + "a" * 299) * 1_000,
    "url-run": "https://" + "a" * 300_000,
    "many-urls": "https://github.com/a/b " * 30_000,
    "tiny-sentences": "a. B. " * 60_000,
    "repeated-trick": "We introduce MoE with a router. " * 20_000,
    "claims": "based on llama qwen mistral gemma " * 10_000,
    "unclosed-front-matter": "---\n" + "tags:\n" + "- llama\n" * 60_000,
    "fences": "```\n" * 100_000,
    "spaces": "." + " " * 300_000 + "X",
    "one-word-line": "slidingwindow" * 30_000,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_cards_are_bounded(name: str) -> None:
    notes = scan_card(HOSTILE[name])
    assert notes.truncated == (len(HOSTILE[name]) > card.MAX_CARD_CHARS)
    assert len(notes.links) <= card.MAX_LINKS
    assert len(notes.family_claims) <= len(card.FAMILIES)
    for sentences in notes.tricks.values():
        assert len(sentences) <= card.MAX_SENTENCES_PER_TAG
        assert all(len(s) <= card.EXCERPT_CHARS + 6 for s in sentences)


def test_repeated_sentences_are_reported_once() -> None:
    notes = scan_card("We introduce MoE with a router. " * 1_000)
    assert notes.tricks["we-introduce"] == ("We introduce MoE with a router.",)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("-#*`[]()<>|:.!? \n\tabcLQMoEqk_/0123456789hts")), max_size=400)
       | st.text(max_size=400))
def test_random_text_never_raises(text: str) -> None:
    notes = scan_card(text)
    assert all(link.kind in ("paper", "code", "blog") for link in notes.links)
    assert all(tag in card.TRICK_PATTERNS for tag in notes.tricks)



# -- the optional card through ModelSource.read_card -----------------------------------------------------

OVERSIZED_CARD = 40 * 1024 * 1024


def _model_dir(path: Path, card_bytes: int | None = None) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"architectures": ["OwlLlamaForCausalLM"], "model_type": "llama"}))
    if card_bytes is not None:
        with open(path / "README.md", "wb") as handle:
            handle.truncate(card_bytes)  # sparse: no disk used
    return path


def test_read_card_skips_an_oversized_card_with_a_note(tmp_path: Path) -> None:
    assert OVERSIZED_CARD > MAX_SMALL_FILE_BYTES
    text, note = open_source(str(_model_dir(tmp_path / "m", OVERSIZED_CARD))).read_card()
    assert text is None
    assert note is not None and "README.md skipped" in note and str(OVERSIZED_CARD) in note and "\n" not in note


def test_read_card_reads_a_normal_card_and_reports_none_when_absent(tmp_path: Path) -> None:
    with_card = _model_dir(tmp_path / "a")
    (with_card / "README.md").write_text("# Owl\nBased on Llama 3.\n")
    assert open_source(str(with_card)).read_card() == ("# Owl\nBased on Llama 3.\n", None)
    assert open_source(str(_model_dir(tmp_path / "b"))).read_card() == (None, None)


@pytest.mark.parametrize("argv_tail", [["inspect", "--json"], ["inspect"], ["plan", "--markdown"]])
def test_oversized_card_does_not_fail_the_command(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                  argv_tail: list[str]) -> None:
    model = _model_dir(tmp_path / "m", OVERSIZED_CARD)
    argv = [argv_tail[0], str(model), *argv_tail[1:]]
    if argv_tail[-1] == "--markdown":
        argv.append(str(tmp_path / "PLAN.md"))
    assert cli.main(argv) == 0
    out, err = capfd.readouterr()
    assert "model card README.md skipped" in err and "Traceback" not in err
    if "--json" in argv:
        doc = json.loads(out)
        assert doc["model_card"] is None and "README.md skipped" in doc["model_card_note"]
    else:
        assert "README.md skipped" in out or argv_tail[0] == "plan"
    if argv_tail[-1] == "--markdown":
        assert (tmp_path / "PLAN.md").is_file()
