"""The default plan the seed asks for before any code: four axes, each a stated default the user may veto.

- distribution shape: weight bytes (at the checkpoint's own precision) plus an
  8k-token KV cache against one GPU, from :func:`import_model.recon.keys.memory_estimates`;
- quantization variants: the checkpoint's dtypes and ``quantization_config``
  against the donor's supported encodings;
- validation depth: a tier from :data:`VALIDATION_TIERS`;
- hardware target: what the first two axes need.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from import_model.recon.keys import GPU_BUDGET_BYTES, human_bytes, memory_estimates
from import_model.source.checkpoint import Checkpoint

#: The seed's validation tiers, 1 (smoke) to 6 (logit parity): (name, what passing means).
VALIDATION_TIERS: dict[int, tuple[str, str]] = {
    1: ("smoke", "the port loads and generates tokens"),
    2: ("coherent text", "sensible output on the model card's prompt template"),
    3: ("greedy match", "greedy text matches HF on a handful of prompts"),
    4: ("top-1 logprob", "the served model's top-1 logprob at the prompt is within 5% of HF"),
    5: ("layer parity", "every block's hidden states match HF on a seeded twin"),
    6: ("logit parity", "full logits match HF within tolerance, prefill and decode"),
}
#: safetensors dtype -> the MAX encoding that stores it as is.
DTYPE_ENCODINGS: dict[str, str] = {
    "BF16": "bfloat16", "F16": "float16", "F32": "float32", "F8_E4M3": "float8_e4m3fn",
}
#: Encodings that are quantized variants (ported after the full-precision one reaches parity).
QUANTIZED = ("float8_e4m3fn", "float4_e2m1fnx2", "gptq", "q4_k", "q4_0", "q6_k")
#: Reference RAM budget for running the HF model in float32 on CPU (the parity engine's default).
CPU_REFERENCE_BYTES = 48 * 1024**3


@dataclass
class DefaultPlan:
    distribution: str
    quantization: str
    validation: str
    hardware: str
    encoding: str
    gpus: int
    tier: int

    @property
    def paragraph(self) -> str:
        return (f"By default I would {self.distribution}; {self.quantization}; {self.validation}; "
                f"and target {self.hardware}. Veto any of these before the scaffold is written.")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"paragraph": self.paragraph}


def _native_encoding(checkpoint: Checkpoint | None, config: dict) -> str:
    """The encoding that keeps the released weights as they are."""
    if checkpoint is not None and checkpoint.tensors:
        dtype = next(iter(checkpoint.params_by_dtype()), "BF16")
        if dtype in DTYPE_ENCODINGS:
            return DTYPE_ENCODINGS[dtype]
    declared = config.get("torch_dtype") or config.get("dtype")
    return declared if isinstance(declared, str) and declared in ("bfloat16", "float16", "float32") else "bfloat16"


def _quant_method(config: dict) -> str | None:
    quant = config.get("quantization_config")
    if isinstance(quant, dict) and isinstance(quant.get("quant_method"), str):
        return quant["quant_method"][:40]
    return None


def _gpus_needed(total_bytes: int) -> int:
    """GPUs of the plan's budget needed, rounded up to a power of two (tensor-parallel sizes)."""
    needed = max(1, math.ceil(total_bytes / GPU_BUDGET_BYTES))
    return 1 << (needed - 1).bit_length()


def default_plan(config: dict, checkpoint: Checkpoint | None, donor_encodings: list[str] | None,
                 donor: str | None, estimated_parameters: int | None = None) -> DefaultPlan:
    """The four-axis default for this model and donor (sizes from the weights, else from the config)."""
    config = config if isinstance(config, dict) else {}
    encoding = _native_encoding(checkpoint, config)
    params = checkpoint.parameter_count if checkpoint is not None else 0
    estimated = not params and bool(estimated_parameters)
    params = params or estimated_parameters or 0
    rows = {row["encoding"]: row for row in memory_estimates(params, config)} if params else {}
    row = rows.get(encoding)
    total = row["weight_bytes"] + row["kv_cache_bytes_8k_tokens"] if row else 0
    gpus = _gpus_needed(total) if row else 1
    if not row:
        distribution = "size the deployment once the weights are readable (no safetensors header was read)"
    elif gpus == 1:
        distribution = (f"serve on a single GPU: {human_bytes(row['weight_bytes'])} of {encoding} weights plus "
                        f"{human_bytes(row['kv_cache_bytes_8k_tokens'])} of KV cache for 8k tokens fit one 80 GB GPU")
    else:
        distribution = (f"shard tensor-parallel across {gpus} GPUs: {human_bytes(total)} of {encoding} weights and "
                        "8k-token KV cache exceed one 80 GB GPU (read references/distributed-transformer.md before choosing the donor)")
    if row and estimated:
        distribution += " (sizes estimated from the config: no weights were read)"
    quantization = _quantization_text(encoding, _quant_method(config), donor_encodings or [], donor)
    tier = 6
    reference = params * 4
    validation = (f"validate to tier {tier} ({VALIDATION_TIERS[tier][0]}) on a seeded random-weight twin in float32 "
                  f"on CPU, then tier 4 ({VALIDATION_TIERS[4][0]} against HF) on the real weights")
    if reference > CPU_REFERENCE_BYTES:
        validation += f" (the float32 HF reference needs {human_bytes(reference)}: run it in {encoding} on GPU)"
    hardware = _hardware_text(gpus, encoding)
    return DefaultPlan(distribution, quantization, validation, hardware, encoding, gpus, tier)


def _quantization_text(encoding: str, method: str | None, donor_encodings: list[str], donor: str | None) -> str:
    if method:
        text = (f"the checkpoint is pre-quantized ({method}): port a full-precision release first and add the "
                f"{method} variant only after parity")
    else:
        text = f"port the released {encoding} weights as they are"
    if donor_encodings and encoding not in donor_encodings:
        text += f" (the donor {donor} lists {', '.join(donor_encodings)}: add {encoding} to the port's encodings)"
    variants = [e for e in donor_encodings if e in QUANTIZED and e != encoding]
    if variants:
        text += f"; quantized variants the donor supports ({', '.join(variants)}) come after parity"
    return text


def _hardware_text(gpus: int, encoding: str) -> str:
    card = "an FP8-capable NVIDIA GPU (H100 class)" if encoding.startswith("float8") else "an 80 GB NVIDIA GPU (H100 class)"
    return card if gpus == 1 else f"{gpus} x 80 GB NVIDIA GPUs (H100 class) on one node"
