"""``import-model port`` end to end on family twins: written port, weight table, gates, verify.

``make test`` runs four families whose deltas barely overlap (interleaved rotary;
parallel residual + fused per-head QKV + partial rotary + LayerNorm + biases;
sandwich (1 + w) norms + attention and final soft-caps + sliding pattern +
embedding scale + gelu-tanh + tied head; post-norms + QK-norm + sliding
pattern + NoPE layers + llama3 rope), NanoChat and XGLM, plus
Apertus, whose xIELU activation is outside the catalog, and CTRL, whose weight
names match nothing the catalog knows: written ports with stand-ins, the gaps
named, verify run anyway, exit 1. OLMoE (softmax top-k experts) and GLM-4-MoE with expert
groups (a sigmoid router with a score-correction bias, group-limited top-k,
routed scaling, a shared expert, a dense first layer) prove the MoE entry on its
CPU expert path, routing token for token as HF does.
``make port-matrix`` runs every family and commits the table
in docs/port-matrix.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from import_model.procs import child_env
from tests.support.families import family_twin_dir
from tests.support.ports import CATALOG_BREAKAGES, plant

IN_CI = ["helium", "gpt_neox", "gemma2", "exaone4", "nanochat", "xglm", "olmoe", "glm4_moe_grouped"]
#: A family config named apart from its model_type: the port is written under the model_type's slug.
SLUG = {"glm4_moe_grouped": "glm4_moe"}
#: What each family proves beyond the rest: plan rules the catalog must implement, and a piece the port must hold.
#: nanochat: norms with no weight in the checkpoint, told apart by the module tree, an embedding norm and a rotary
#: by minus the angle. (GPT-2's learned table and Conv1D weights are proven by the short-context test below; GPT-2,
#: GPT-Neo and the post-LN families (GPT-1, TrOCR, BERT, RoBERTa) run in ``make port-matrix``, to keep
#: ``make test`` within its hour on a cold compile cache.)
PROVES: dict[str, tuple[set[str], str]] = {
    "nanochat": ({"norm_style", "qk_norm", "embedding_norm", "rotary_style"}, "class WeightlessNorm"),
    # xglm: a position table with no weight, computed in the graph; the final norm found under its own name
    "xglm": ({"position_table", "embedding_scale"}, "class SinusoidTable"),
    # olmoe: routed experts, a softmax top-k router (renormalised under norm_topk_prob), run every expert on the CPU
    "olmoe": ({"moe", "qk_norm"}, "class OlmoeRouter(MoEGate)"),
    # glm4_moe_grouped: a sigmoid router choosing through a score-correction bias within the best expert groups,
    # renormalised and scaled, a shared expert, the first layer dense (read from the layer's other branch)
    "glm4_moe_grouped": ({"moe", "rotary_fraction", "attention_bias"}, "def _within_best_groups"),
}
#: Families whose MLP is a mixture of experts: PORT.md must say which expert path verify ran, and verify must
#: report each MoE layer's routing against HF's.
MOE = {"olmoe", "glm4_moe_grouped"}


def run_port(model: Path, out_dir: Path, *extra: str, timeout: int = 1500) -> tuple[int, dict, str]:
    result = subprocess.run([sys.executable, "-m", "import_model", "port", str(model), "--output-dir", str(out_dir),
                             "--force", "--json", *extra], capture_output=True, text=True, timeout=timeout,
                            env=child_env())
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    payload = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    return result.returncode, payload, result.stderr


@pytest.fixture(scope="module")
def ported(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[int, dict, str, Path]]:
    """``port`` each family once per module; later tests reuse the written port and its compiled graph."""
    runs: dict[str, tuple[int, dict, str, Path]] = {}

    def get(family: str) -> tuple[int, dict, str, Path]:
        if family not in runs:
            out = tmp_path_factory.mktemp(f"port-{family}")
            runs[family] = (*run_port(family_twin_dir(family), out), out)
        return runs[family]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("family", IN_CI)
def test_family_ports_and_passes(family: str, ported: Callable[[str], tuple[int, dict, str, Path]]) -> None:
    code, payload, stderr, tmp_path = ported(family)
    assert code == 0, f"{stderr[-2000:]}\nsteps: {payload.get('steps')}\nverify: {str(payload.get('verify'))[:2000]}"
    steps = {s["step"]: s for s in payload["steps"]}
    assert steps["weight table"]["status"] == "done" and steps["gates"]["status"] == "done"
    assert steps["verify"]["status"] == "PASS"
    assert payload["missing"] == [] and all(r["status"] == "implemented" for r in payload["deltas"])
    assert payload["verify"]["passed"] and payload["verify"]["worst_rel_l2"] < 1e-4
    port_dir = Path(payload["port_dir"])
    assert payload["mode"] == ("donor" if family == "helium" else "catalog")  # helium: MAX's Llama3, one switch
    assert (port_dir / f"{SLUG.get(family, family)}.py").is_file() == (payload["mode"] == "catalog")
    assert not (port_dir / "layers.py").exists()
    assert (port_dir / "weight_adapters.py").read_text().count("import-model weight table") == 2
    assert all(row["where"] for row in payload["deltas"] if row["rule"] != "tied_head")
    tracking = (tmp_path / "PORT.md").read_text()
    assert "Tier 6 (logit parity)" in tracking and "implemented" in tracking
    assert payload["serve_command"].startswith("max serve") and str(port_dir) in payload["serve_command"]
    assert ("verify ran the port's CPU path" in tracking) == (family in MOE)
    routing = payload["verify"].get("routing") or []
    assert bool(routing) == (family in MOE)
    assert all(layer["tokens"] > 0 and layer["divergent"] == 0 for layer in routing), routing
    if family in PROVES:
        rules, piece = PROVES[family]
        assert rules <= {r["rule"] for r in payload["deltas"]}
        assert any(piece in path.read_text() for path in port_dir.glob("*.py"))


@pytest.mark.slow
def test_the_port_s_own_test_file_reruns_its_parity(ported: Callable[[str], tuple[int, dict, str, Path]]) -> None:
    code, _payload, _stderr, out = ported("helium")
    assert code == 0
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(out / "test_helium.py")],
                            capture_output=True, text=True, env=child_env(), timeout=1500, cwd=out)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "4 passed" in result.stdout


def test_differential_attention_port_passes(tmp_path: Path) -> None:
    code, payload, stderr = run_port(family_twin_dir("diffllama"), tmp_path)
    assert code == 0, stderr[-2000:]
    # Differential attention: the learned lambdas weigh each head pair's second map, a weightless norm per pair
    # (DiffLlama's groupnorm), all written out over the K/V the soft-cap path gathers.
    assert payload["missing"] == []
    rows = {row["rule"]: row for row in payload["deltas"]}
    assert rows["differential_attention"]["status"] == "implemented"
    port_dir = Path(payload["port_dir"])
    assert "TODO(delta" not in (port_dir / "diffllama.py").read_text()
    table = next(s for s in payload["steps"] if s["step"] == "weight table")
    assert table["status"] == "done" and "set aside" not in table["detail"]
    verify = payload["verify"]
    assert verify is not None and Path(verify["report"]).is_file()
    assert verify["passed"] and verify["first_divergence"] is None, verify["first_divergence"]


def test_native_model_stops_at_the_serve_command(tmp_path: Path) -> None:
    code, payload, stderr = run_port(family_twin_dir("llama"), tmp_path)
    assert code == 0, stderr[-2000:]
    assert payload["serve_command"].startswith("max serve") and payload["port_dir"] is None
    # MAX's own llama3 graph was compared on the twin first (the graph tests/test_verify.py compiles: a cache hit).
    assert payload["native_check"]["verdict"] == "verified" and payload["native_check"]["worst_rel_l2"] < 1e-4
    assert not any(tmp_path.iterdir())


def test_existing_port_is_refused_without_force(tmp_path: Path) -> None:
    (tmp_path / "helium").mkdir()
    (tmp_path / "helium" / "mine.py").write_text("# hand edits\n")
    result = subprocess.run([sys.executable, "-m", "import_model", "port", str(family_twin_dir("helium")),
                             "--output-dir", str(tmp_path), "--no-verify"], capture_output=True, text=True,
                            env=child_env(), timeout=300)
    assert result.returncode == 2 and "already exists" in result.stderr
    assert (tmp_path / "helium" / "mine.py").read_text() == "# hand edits\n"


def test_written_port_passes_the_audit_without_edits(tmp_path: Path) -> None:
    code, payload, stderr = run_port(family_twin_dir("helium"), tmp_path, "--no-verify")
    assert code == 0, stderr[-2000:]
    assert payload["verify"] is None and {s["step"] for s in payload["steps"]} >= {"weight table", "gates"}
    audit = subprocess.run([sys.executable, "-m", "import_model", "audit", payload["port_dir"]], capture_output=True,
                           text=True, env=child_env(), timeout=120)
    assert audit.returncode == 0, audit.stdout[-2000:]
    assert "0 lie(s), 0 stale" in audit.stdout


@pytest.mark.slow
def test_planted_missing_bias_fails_at_the_first_layer(ported: Callable[[str], tuple[int, dict, str, Path]],
                                                       tmp_path: Path) -> None:
    import shutil

    code, payload, _stderr, _out = ported("gpt_neox")
    assert code == 0
    port = tmp_path / "gpt_neox"
    shutil.copytree(payload["port_dir"], port)
    bug = CATALOG_BREAKAGES["qkv_bias_dropped"]
    plant(port, bug)
    result = subprocess.run([sys.executable, "-m", "import_model", "verify", str(family_twin_dir("gpt_neox")),
                             "--port-dir", str(port), "--json"], capture_output=True, text=True, env=child_env(),
                            timeout=1500)
    assert result.returncode == 1, result.stderr[-2000:]
    verdict = json.loads(result.stdout)
    assert verdict["first_divergence"]["tap"] == bug.first_tap
    assert all(row["ok"] for row in verdict["per_tap"] if row["tap"] == "embed")


@pytest.mark.slow
def test_weights_no_graph_weight_takes_are_stood_in_and_verify_names_the_divergence(tmp_path: Path) -> None:
    """Gemma 4's text model with keys standing for values and one KV head on its full-attention layers
    (attention_k_eq_v, num_global_key_value_heads=1): those layers' wider heads fit no weight the catalog's graph
    declares (its wider-head entry takes as many KV heads as the sliding layers). The port still builds: the
    unmatched tensors are set aside, the graph weights nothing fills are stood in (named as a missing row), verify
    runs and names where it diverges, exit 1."""
    from transformers import AutoConfig

    from import_model.verify.twin import make_twin

    config = AutoConfig.for_model("gemma4_text", attention_k_eq_v=True, num_global_key_value_heads=1).to_dict() | \
        {"architectures": ["Gemma4ForCausalLM"]}
    twin = make_twin(config, tmp_path / "twin").path
    code, payload, stderr = run_port(twin, tmp_path / "ports", "--yes")
    assert code == 1, stderr[-2000:]
    unfilled = next(m for m in payload["missing"] if m["rule"] == "unfilled_weights")
    assert "shape mismatch" in unfilled["reason"] and "stood in" in unfilled["reason"]
    steps = {s["step"]: s for s in payload["steps"]}
    assert steps["weight table"]["status"] == "partial" and "adapter-graph-keys FAIL" not in steps["gates"]["detail"]
    model = (Path(payload["port_dir"]) / "model.py").read_text()
    # no v_proj on those layers (the keys stand for the values): the graph's is stood in
    assert '"layers.*.self_attn.v_proj.weight": "no checkpoint tensor fills it"' in model and "with_stand_ins(" in model
    verify = payload["verify"]
    assert verify is not None and "error" not in verify and not verify["passed"]
    # the weight table sets aside and stands in by name pattern (``layers.*.self_attn.q_norm.weight``), every
    # layer's tensor of a name one layer mismatches: the divergence shows from the first layer
    assert verify["first_divergence"]["tap"] == "layer_0"


@pytest.mark.slow
def test_names_read_from_the_model_s_code_port_and_pass(tmp_path: Path) -> None:
    """CTRL (the config class's defaults): its token table ``w``, attention projections ``Wq``/``Wk``/``Wv``/``dense``
    and Sequential MLP ``ffn.0``/``ffn.2`` match no name in the rename table; they are read from its code (what
    the attention's forward assigns each projection to, the Sequential's linears by position), and the port
    passes."""
    from transformers import AutoConfig

    from import_model.verify.twin import make_twin

    config = AutoConfig.for_model("ctrl").to_dict() | {"architectures": ["CTRLLMHeadModel"]}
    twin = make_twin(config, tmp_path / "twin").path
    code, payload, stderr = run_port(twin, tmp_path / "ports", "--yes")
    assert code == 0, stderr[-2000:]
    assert payload["verify"]["passed"] and not payload["missing"]
    table = (Path(payload["port_dir"]) / "weight_adapters.py").read_text()
    assert '"transformer.h.*.multi_head_attention.Wq.weight": "layers.*.self_attn.q_proj.weight"' in table
    assert '"transformer.h.0.ffn.2.weight": "layers.0.mlp.down_proj.weight"' in table


@pytest.mark.slow
def test_a_checkpoint_with_no_tokenizer_and_a_short_context_ports_and_verifies(tmp_path: Path) -> None:
    """GPT-2 with 128 positions (shorter than verify's 222-token prompt) and no tokenizer files: MAX is built for
    the model's own context, the prompts are token ids cut to fit, and the port passes."""
    from transformers import AutoConfig

    from import_model.verify.engine import TOKENIZER_FILES
    from import_model.verify.twin import make_twin

    config = AutoConfig.for_model("gpt2", n_positions=128).to_dict() | {"architectures": ["GPT2LMHeadModel"]}
    checkpoint = make_twin(config, tmp_path / "short").path
    for name in (*TOKENIZER_FILES, "special_tokens_map.json", "merges.txt", "chat_template.jinja"):
        (checkpoint / name).unlink(missing_ok=True)
    code, payload, stderr = run_port(checkpoint, tmp_path / "ports", "--yes")
    assert code == 0, stderr[-2000:]
    verify = payload["verify"]
    assert verify["passed"] and verify["worst_rel_l2"] < 1e-4
    # GPT-2's own deltas: a learned position table, fused c_attn split, Conv1D weights stored (in, out)
    assert {"position_table", "qkv_layout"} <= {r["rule"] for r in payload["deltas"] if r["status"] == "implemented"}
    assert "WEIGHT_TRANSPOSES" in (Path(payload["port_dir"]) / "weight_adapters.py").read_text()
    notes = " ".join(verify["notes"])
    assert "ships no tokenizer" in notes and "cut to 125 tokens" in notes


@pytest.mark.slow
def test_gemma3_270m_real_weights_port_passes(gemma3_dir: Path, tmp_path: Path) -> None:
    """The real Gemma 3 270M weights under a class MAX does not register: the catalog writes Gemma 3's decoder
    (QK-norm with 1 + w, 5 sliding : 1 full layers with their own rope bases, query_pre_attn_scalar, the embedding
    scale) and `verify --weights full` passes: the HF oracle answers first, then every tap and 16 greedy tokens
    on two chat prompts. `make port-matrix` adds MAX's own gemma3 on the same weights and the served port."""
    from tests.support.gemma3 import gemma3_float32

    code, payload, stderr = run_port(gemma3_float32("Gemma3RenamedForCausalLM"), tmp_path, "--weights", "full",
                                     timeout=3000)
    assert code == 0, stderr[-2000:]
    verify = payload["verify"]
    assert payload["mode"] == "catalog" and verify["passed"] and verify["worst_rel_l2"] < 1e-4
    assert any(n.startswith("HF oracle:") and "Paris" in n for n in verify["notes"])
    assert len(verify["greedy_text"]) == 2
    assert all(t["match"] and len(t["hf"]) >= 16 for t in verify["greedy_text"])
