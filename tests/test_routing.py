"""Routing-aware parity: expert sets compared per MoE layer, near-ties told apart from divergences."""

from __future__ import annotations

import numpy as np
import pytest

from import_model.verify.hf_reference import HFReference, expert_modules
from import_model.verify.report_files import markdown
from import_model.verify.routing import INDICES_TAP, NEAR_TIE, LayerRouting, margins, routed_layers, summary, tally
from tests.support.families import family_twin_dir


def test_same_sets_in_any_order_agree() -> None:
    layer = LayerRouting(1)
    tally(layer, np.array([[0, 2], [1, 3]]), np.array([[2, 0], [1, 3]]), None)
    assert (layer.tokens, layer.same, layer.near_ties, layer.divergent) == (2, 2, 0, 0)
    assert layer.agreement == 1.0


def test_a_mismatch_at_a_near_tie_is_not_a_divergence() -> None:
    choice = np.array([[0.9, 0.5, 0.5 + NEAR_TIE / 10, 0.1],   # 2nd and 3rd best all but equal
                       [0.9, 0.6, 0.2, 0.1]])                  # a clear choice
    gaps = margins(choice, 2)
    assert gaps[0] < NEAR_TIE < gaps[1]
    layer = LayerRouting(0)
    tally(layer, np.array([[0, 1], [0, 1]]), np.array([[0, 2], [0, 2]]), choice)
    assert (layer.same, layer.near_ties, layer.divergent) == (0, 1, 1)
    assert "1 near-tie(s), 1 divergent" in summary([layer])


def test_decode_compares_the_last_row_only() -> None:
    layer = LayerRouting(0)
    hf = np.array([[3, 1], [0, 1], [2, 3]])  # HF reruns the whole sequence
    tally(layer, hf, np.array([[3, 2]]), None)  # MAX's decode step: one new row
    assert (layer.tokens, layer.same) == (1, 1)


def test_routed_layers_and_summary() -> None:
    assert routed_layers({f"{INDICES_TAP}3": np.zeros((1, 2)), f"{INDICES_TAP}1": np.zeros((1, 2)),
                          "layer_1": np.zeros(1)}) == [1, 3]
    worst = LayerRouting(2, tokens=10, same=9, divergent=1)
    line = summary([LayerRouting(1, tokens=10, same=10), worst])
    assert line.startswith("19/20 token-layers same experts (95.0%), worst layer_2 90.0%")
    assert summary([]) == "-"


def test_report_shows_the_routing_table() -> None:
    result = {"architecture": "X", "passed": True, "per_tap": [], "prompts": [],
              "routing": [LayerRouting(1, tokens=4, same=3, divergent=1).as_dict()]}
    text = markdown(result)
    assert "## Routing" in text and "| layer_1 | 4 | 3 | 75.0% | 0 | **1** |" in text


@pytest.mark.parametrize("family", ["olmoe", "dots1"])
def test_hf_reference_reports_each_moe_layers_choice(family: str) -> None:
    """A pre-hook on the module transformers hands ``top_k_index`` to gives each token's experts, per MoE layer
    (dots.llm1's first layer is dense, so it reports none)."""
    reference = HFReference.load(family_twin_dir(family))
    found = expert_modules(reference.modules.layers)
    expected = [0, 1] if family == "olmoe" else [1]
    assert sorted(found) == expected
    taps = reference.run([5, 6, 7, 8])
    assert routed_layers(taps) == expected
    chosen = taps[f"{INDICES_TAP}{expected[-1]}"]
    top_k = reference.model.config.num_experts_per_tok
    assert chosen.shape == (4, top_k)
    assert all(len(set(row)) == top_k for row in chosen.tolist())
