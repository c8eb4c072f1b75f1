"""Ports with a known answer, for proving the parity engine itself.

A native MAX architecture copied as a custom architecture must pass against
HF; the same copy with one deliberate bug must fail, and the engine must name
the first layer the bug touches. Each bug is a text edit of the copied files,
kept here as data.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from import_model.port.native_copy import allow_cpu_float32, copy_native_port


@dataclass(frozen=True)
class Breakage:
    """Replace ``old`` by ``new`` in ``file`` of the copied donor; ``first_tap`` is where it must show."""

    file: str
    old: str
    new: str
    first_tap: str
    #: Code added at the end of ``file`` (e.g. a helper class the edit refers to).
    append: str = ""


BREAKAGES: dict[str, Breakage] = {
    # RoPE theta x4: every attention layer rotates wrongly, so the first block diverges.
    "rope_theta": Breakage("llama3.py", "rope_theta=config.rope_theta,", "rope_theta=config.rope_theta * 4,", "layer_0"),
    # The second block's attention norm gets eps 0.5 instead of the config's.
    "norm_eps_layer1": Breakage(
        "llama3.py",
        "attention_norm=create_norm(),",
        "attention_norm=create_norm() if i != 1 else RMSNorm(config.hidden_size, config.dtype,"
        " config.rms_norm_eps + 0.5, multiply_before_cast=False),",
        "layer_1",
    ),
    # The second block's output projection is loaded transposed (square, so it still loads).
    "transposed_o_proj_layer1": Breakage(
        "weight_adapters.py",
        "\n    return new_state_dict\n\n\ndef convert_safetensor_state_dict",
        "\n    key = 'layers.1.self_attn.o_proj.weight'\n"
        "    new_state_dict[key] = WeightData.from_numpy(\n"
        "        np.ascontiguousarray(np.from_dlpack(new_state_dict[key].data).T), key\n"
        "    )\n    return new_state_dict\n\n\ndef convert_safetensor_state_dict",
        "layer_1",
    ),
    # The second block drops its skip connection: it returns attention + MLP without adding its input back.
    "residual_dropped_layer1": Breakage(
        "llama3.py",
        "            TransformerBlock(\n",
        "            (_ResidualDroppedBlock if i == 1 else TransformerBlock)(\n",
        "layer_1",
        append="\n\nclass _ResidualDroppedBlock(TransformerBlock):\n"
               "    def __call__(self, layer_idx, x, *args, **kwargs):\n"
               "        return super().__call__(layer_idx, x, *args, **kwargs) - x\n",
    ),
}


#: Bugs planted in a catalog port written by `import-model port` (its graph module, ``gpt_neox.py``).
CATALOG_BREAKAGES: dict[str, Breakage] = {
    # Q, K and V computed without their biases (the weights still load): every attention layer is off.
    "qkv_bias_dropped": Breakage(
        "gpt_neox.py",
        "q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)",
        "q, k, v = (x @ p.weight.to(x.device).T for p in (self.q_proj, self.k_proj, self.v_proj))",
        "layer_0",
    ),
}


def plant(port: Path, bug: Breakage) -> Path:
    """Apply ``bug`` to the copied or written port at ``port``."""
    path = port / bug.file
    text = path.read_text()
    assert text.count(bug.old) == 1, f"{bug.old!r} not found once in {path}"
    path.write_text(text.replace(bug.old, bug.new) + bug.append)
    return port


def renamed_checkpoint(source: Path, target: Path, architecture: str,
                       config_edits: dict[str, Any] | None = None) -> Path:
    """A copy of ``source`` whose config names ``architecture`` (weights are linked, not copied).

    ``config_edits`` maps dotted config paths (``rope_parameters.attention_factor``) to new values.
    """
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.name != "config.json":
            (target / path.name).symlink_to(path.resolve())
    config = json.loads((source / "config.json").read_text())
    config["architectures"] = [architecture]
    for dotted, value in (config_edits or {}).items():
        *parents, last = dotted.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[last] = value
    (target / "config.json").write_text(json.dumps(config, indent=2))
    return target


def bfloat16_norm_weights(checkpoint: Path) -> int:
    """Store the checkpoint's norm weights as bfloat16, rounded first; returns how many changed.

    For a MAX graph that declares its norm weights bfloat16 (gemma3 in MAX 26.7). The rounded values
    are exact in both dtypes, so HF's float32 reference reads the same numbers the port does.
    """
    import torch
    from safetensors.torch import load_file, save_file

    path = checkpoint / "model.safetensors"
    tensors = load_file(str(path))
    norms = [name for name in tensors if name.endswith("norm.weight")]
    for name in norms:
        tensors[name] = tensors[name].to(torch.bfloat16)
    path.unlink()  # a link into the shared twin: write a new file, leave the twin alone
    save_file(tensors, str(path), metadata={"format": "pt"})
    return len(norms)


def native_port(donor: str, out_dir: Path, architecture: str, slug: str, breakage: str | None = None) -> Path:
    port = copy_native_port(donor, out_dir, class_name=architecture, port_slug=slug, force=True)
    return plant(port, BREAKAGES[breakage]) if breakage else port


def allow_float32(port: Path) -> bool:
    """Add float32 to a copied port's bfloat16-only encodings (graph untouched); True if anything changed."""
    return allow_cpu_float32(port)
