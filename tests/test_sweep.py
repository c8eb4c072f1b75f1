"""The sweep's own logic: variants read from each family's modeling code, shards, verdicts, the merged document.

The sweep's runs themselves (a compile per family) live behind `make sweep`; these tests need no MAX.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sweep():  # noqa: ANN201 - the script, loaded as a module
    spec = importlib.util.spec_from_file_location("sweep_script", REPO / "sweep" / "sweep.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["sweep_script"] = module
    spec.loader.exec_module(module)
    return module


def test_variants_toggle_the_options_the_modeling_code_reads(sweep) -> None:
    names = {v.name: v for v in sweep.variants_of("falcon", "FalconForCausalLM")}
    assert {"default", "parallel_attn=False", "new_decoder_architecture=True", "alibi=True", "rope=yarn"} <= set(names)
    assert names["parallel_attn=False"].config["parallel_attn"] is False
    assert names["rope=yarn"].config["rope_parameters"]["rope_type"] == "yarn"
    assert not any(name.split("=")[0] in sweep.RUNTIME_FLAGS for name in names)  # use_cache and the like: no rows


def test_shards_cover_every_family_once(sweep) -> None:
    families = list(sweep.causal_families())
    assert len(families) > 100 and "gpt2" in families
    shards = [sweep.shard_of(families, f"{i}/7") for i in range(1, 8)]
    assert sorted(f for shard in shards for f in shard) == sorted(families)
    with pytest.raises(SystemExit):
        sweep.shard_of(families, "8/7")


def _run(code_steps: list[tuple[str, str, str]], **extra: object) -> dict:
    return {"steps": [{"step": s, "status": st, "detail": d} for s, st, d in code_steps], "deltas": [],
            "missing": [], "mode": "catalog", **extra}


def test_verdicts_come_from_the_port_run(sweep) -> None:
    variant = sweep.Variant("gpt2", "default", {"model_type": "gpt2"})
    native = sweep.row_of(variant, 0, _run([("native check", "done", "MAX serves X natively (slug llama3)")]), "",
                          True, 1.0)
    assert native.verdict == "NATIVE"
    walled = sweep.row_of(variant, 2, _run([("walls", "blocked", "encoder-decoder: ...")]), "a wall", True, 1.0)
    assert (walled.verdict, walled.kind) == ("NOT A DECODER", "not a decoder")
    by_hand = sweep.row_of(variant, 2, _run([("walls", "by hand", "recurrent-layers: ... NemotronHMamba2Mixer ...")]),
                           "the catalog does not write ...", True, 1.0)
    assert (by_hand.verdict, by_hand.kind) == ("BY HAND", "recurrent") and "NemotronHMamba2Mixer" in by_hand.detail
    rwkv = sweep.row_of(variant, 2, _run([("walls", "blocked", "recurrent-layers: ... RWKV ...")]), "a wall", True, 1.0)
    assert (rwkv.verdict, rwkv.kind) == ("WALL", "recurrent")
    passed = sweep.row_of(variant, 0, _run([("verify", "PASS", "PASS")], verify={
        "passed": True, "worst_rel_l2": 5e-7, "first_divergence": None}), "", True, 1.0)
    assert passed.verdict == "PASS" and passed.worst_rel_l2 == "5.0e-07"
    partial = sweep.row_of(variant, 1, _run([("verify", "FAIL", "FAIL")], missing=[{"rule": "moe"}], verify={
        "passed": False, "worst_rel_l2": 0.3, "first_divergence": {"tap": "layer_0"}}), "", True, 1.0)
    assert (partial.verdict, partial.missing, partial.first_divergence) == ("PARTIAL", "moe", "layer_0")
    broken = sweep.row_of(variant, 1, _run([("weight table", "FAIL", "3 orphan(s)")]), "", False, 1.0)
    assert broken.verdict == "COULD NOT RUN" and "3 orphan(s)" in broken.detail
    dry = sweep.row_of(variant, 0, _run([("weight table", "done", "complete")]), "", False, 1.0)
    assert dry.verdict == "DRY OK"
    reference = sweep.row_of(variant, 2, _run([("verify", "FAIL", "verify could not run (exit 2: the HF reference "
                                                "DbrxForCausalLM cannot run on one row of token ids: mat1 and mat2 "
                                                "shapes cannot be multiplied)")]), "", True, 1.0)
    assert reference.verdict == "REFERENCE FAILS" and "mat1 and mat2" in reference.detail
    crashed = sweep.row_of(variant, 2, _run([("verify", "FAIL", "verify could not run (exit 2: building the port's "
                                              "graph failed)")]), "", True, 1.0)
    assert crashed.verdict == "COULD NOT RUN"


def test_a_shard_replaces_only_its_own_rows(sweep, tmp_path: Path) -> None:
    doc = tmp_path / "sweep.md"
    sweep.write_document(doc, [sweep.Row("gpt2", "default", "dense", "PASS"), sweep.Row("opt", "default", "dense",
                                                                                         "FAIL")], ["gpt2", "opt"])
    sweep.write_document(doc, [sweep.Row("opt", "default", "dense", "PASS")], ["opt"])
    text = doc.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| gpt2 ") or line.startswith("| opt ")]
    assert len(rows) == 2 and all("| PASS |" in row for row in rows)
    assert "PASS 2/2 (100%)" in text and "| PASS | 2 |" in text


def test_expert_counts_the_config_class_leaves_unset_get_the_twins_sizes(sweep) -> None:
    default = sweep.variants_of("dots1", "Dots1ForCausalLM")[0].config  # Dots1Config() leaves all three None
    assert (default["n_routed_experts"], default["num_experts_per_tok"], default["n_shared_experts"]) == (4, 2, 1)
    gemma4 = sweep.variants_of("gemma4_text", "Gemma4ForCausalLM")[0].config  # None there means no experts
    assert gemma4.get("num_experts") is None
