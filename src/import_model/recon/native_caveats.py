"""Where a native MAX architecture computes something other than transformers, and for which configs.

"Native" means MAX serves the class without a port. It does not promise the same numbers. Each row
below was found by the parity engine on a native copy and is pinned in docs/verify-matrix.md: a twin
that shows the difference fails at the layer named, and the same twin with the difference removed
on the HF side passes. ``inspect`` and ``plan`` print the matching rows next to the serve command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NativeCaveat:
    architecture: str
    applies: Callable[[dict[str, Any]], bool]
    text: str


def longrope_original(config: dict[str, Any]) -> Any:
    """``original_max_position_embeddings`` of a LongRoPE config (top level or in its rope dict), else None."""
    rope = config.get("rope_parameters") or config.get("rope_scaling")
    rope = rope if isinstance(rope, dict) else {}
    if (rope.get("rope_type") or rope.get("type")) != "longrope":
        return None
    return config.get("original_max_position_embeddings") or rope.get("original_max_position_embeddings")


def _longrope_factor(config: dict[str, Any]) -> float:
    longest, original = config.get("max_position_embeddings"), longrope_original(config)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in (longest, original))
    return float(longest) / float(original) if numbers else 1.0


def _window_bites(config: dict[str, Any]) -> bool:
    window, longest = config.get("sliding_window"), config.get("max_position_embeddings")
    return isinstance(window, int) and window > 0 and (not isinstance(longest, int) or window < longest)


CAVEATS: tuple[NativeCaveat, ...] = (
    NativeCaveat("Phi3ForCausalLM", lambda c: _longrope_factor(c) > 1.0,
                 "MAX 26.7 multiplies the softmax scale by LongRoPE's attention factor once; transformers multiplies "
                 "cos and sin by it, so its attention scores get the square: logits differ from layer 0 on"),
    NativeCaveat("Qwen3MoeForCausalLM", lambda c: not c.get("norm_topk_prob"),
                 "MAX 26.7's Qwen3MoEGate always divides the top-k routing weights by their sum; transformers "
                 "divides only under norm_topk_prob (false here), so every MoE layer's output is scaled "
                 "differently"),
    NativeCaveat("MistralForCausalLM", _window_bites,
                 "MAX 26.7's mistral ignores sliding_window: past the window it attends to the whole context, where "
                 "transformers masks everything older than the window"),
)


def native_caveats(architecture: str | None, config: dict[str, Any]) -> list[str]:
    """The known differences from transformers that apply to this config on MAX's native architecture."""
    return [c.text for c in CAVEATS if c.architecture == architecture and c.applies(config)]


def native_entries(natives: list[Any], config: dict[str, Any]) -> list[dict[str, Any]]:
    """What ``inspect`` and ``plan`` report for each native registration of the checkpoint's class.

    ``unread_keys`` (read statically from MAX's source) and ``caveats`` are hints; ``status`` is ``unverified``
    whatever they say, because only ``import-model check-native`` measures parity.
    """
    from import_model.recon.native_reads import unread_keys

    return [{"name": a.name, "slug": a.slug, "default_encoding": a.default_encoding, "status": "unverified",
             "unread_keys": [k.as_dict() for k in unread_keys(a.slug, config)],
             "caveats": native_caveats(a.name, config)} for a in natives]
