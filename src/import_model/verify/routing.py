"""Routing-aware parity for mixtures of experts: does the port send each token to the experts HF sends it to?

Both sides hand over, per MoE layer, each token's chosen experts: HF from a
pre-hook on the experts module (transformers passes it ``top_k_index``), MAX
from a tap on the router module. The port's router also hands over the scores
its top-k was taken over (``choice``); a token whose expert set differs while
its k-th and (k+1)-th scores lie within :data:`NEAR_TIE` of each other is a
near-tie (float32 rounding can pick either side), not a divergence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Scores closer than this at the top-k boundary may legitimately round either way between two float32 programs.
NEAR_TIE = 1e-4

#: Tap name prefixes: each MoE layer's chosen experts (both sides) and the port's choice scores (MAX only).
INDICES_TAP = "router_indices_"
CHOICE_TAP = "router_choice_"


@dataclass
class LayerRouting:
    """One MoE layer, summed over prompts, prefill and decode."""

    layer: int
    tokens: int = 0
    same: int = 0
    near_ties: int = 0
    divergent: int = 0

    @property
    def agreement(self) -> float:
        return self.same / self.tokens if self.tokens else 1.0

    def as_dict(self) -> dict[str, float | int]:
        return {"layer": self.layer, "tokens": self.tokens, "same_experts": self.same, "near_ties": self.near_ties,
                "divergent": self.divergent, "agreement": round(self.agreement, 6)}


def routed_layers(taps: dict[str, np.ndarray]) -> list[int]:
    """The layers a side reported chosen experts for."""
    return sorted(int(name[len(INDICES_TAP):]) for name in taps if name.startswith(INDICES_TAP))


def margins(choice: np.ndarray, k: int) -> np.ndarray:
    """Per token, the gap between its k-th and (k+1)-th highest scores (inf when every expert is chosen)."""
    if choice.shape[-1] <= k:
        return np.full(choice.shape[0], np.inf)
    ordered = -np.sort(-choice.astype(np.float64), axis=-1)
    return ordered[:, k - 1] - ordered[:, k]


def tally(into: LayerRouting, hf: np.ndarray, got: np.ndarray, choice: np.ndarray | None) -> None:
    """Add one execution's rows of one layer: ``hf`` and ``got`` are ``[tokens, k]`` expert ids."""
    rows = min(len(hf), len(got))
    hf, got = np.rint(hf[-rows:]).astype(np.int64), np.rint(got[-rows:]).astype(np.int64)
    gaps = margins(choice[-rows:], got.shape[1]) if choice is not None and len(choice) >= rows else None
    for row in range(rows):
        into.tokens += 1
        if set(hf[row].tolist()) == set(got[row].tolist()):
            into.same += 1
        elif gaps is not None and gaps[row] < NEAR_TIE:
            into.near_ties += 1
        else:
            into.divergent += 1


def summary(layers: list[LayerRouting]) -> str:
    """One line for tables: the lowest agreement over the MoE layers, with near-ties and divergent tokens."""
    if not layers:
        return "-"
    tokens = sum(layer.tokens for layer in layers)
    same = sum(layer.same for layer in layers)
    worst = min(layers, key=lambda layer: layer.agreement)
    ties = sum(layer.near_ties for layer in layers)
    divergent = sum(layer.divergent for layer in layers)
    return (f"{same}/{tokens} token-layers same experts ({100 * same / max(tokens, 1):.1f}%), worst layer_{worst.layer} "
            f"{100 * worst.agreement:.1f}%; {ties} near-tie(s), {divergent} divergent")
