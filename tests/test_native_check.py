"""``import-model check-native``: MAX's own registration against transformers on this exact config.

``make matrix`` runs nine twins (five where MAX's native code computes something else, four where it is
right) and writes docs/native-check.md. ``make test`` runs one of each kind cheaply: the Llama with MLP biases
is decided by the dry build (weights the graph never loads, no compile), and plain Llama reuses the graph
``tests/test_verify.py`` compiles, so it hits the compile cache. ``make matrix`` also ports the diverging
Llama through the catalog under its own class and verifies the port.
"""

from __future__ import annotations

import ast
import copy
import json
import platform
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from import_model.procs import child_env
from import_model.verify.twin import make_twin
from tests.support.families import FAMILY_CONFIGS, family_twin_dir
from tests.support.results import merged_rows

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "native-check.md"


def check_native(model: Path, *extra: str, timeout: int = 1500) -> tuple[subprocess.CompletedProcess[str], dict]:
    result = subprocess.run([sys.executable, "-m", "import_model", "check-native", str(model), "--json", *extra],
                            capture_output=True, text=True, timeout=timeout, env=child_env())
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    payload = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    return result, payload


@dataclass(frozen=True)
class Case:
    """A family twin, the config changes made before the twin is built, and what check-native must answer."""

    name: str
    family: str
    edits: dict[str, Any] = field(default_factory=dict)
    #: Keys dropped so transformers recomputes them from the edits (qwen2's per-layer kinds follow its window).
    drop: tuple[str, ...] = ()
    verdict: str = "verified"
    #: Config keys the answer must name (unread by MAX's code), and whether MAX's graph must leave weights unread.
    keys: tuple[str, ...] = ()
    unread_weights: bool = False
    #: The known difference (native_caveats) the answer must quote, by a word in it.
    explained_by: str | None = None

    def twin(self, root: Path) -> Path:
        if not self.edits and not self.drop:
            return family_twin_dir(self.family)
        config = copy.deepcopy(FAMILY_CONFIGS[self.family])
        for key in self.drop:
            config.pop(key, None)
        config.update(self.edits)
        make_twin(config, root / self.name, force=True)
        return root / self.name


LLAMA_MLP_BIAS = Case("llama-mlp-bias", "llama", {"mlp_bias": True}, verdict="diverges", keys=("mlp_bias",),
                      unread_weights=True)
PLAIN_LLAMA = Case("llama", "llama")
CASES = [
    LLAMA_MLP_BIAS,
    # Qwen2 with its window switched on for every layer: the twin's window (128) is shorter than the long prompt.
    Case("qwen2-sliding-window", "qwen2", {"use_sliding_window": True, "sliding_window": 128, "max_window_layers": 0},
         drop=("layer_types",), verdict="diverges", keys=("use_sliding_window", "sliding_window")),
    # Mistral-7B-v0.1's window on every layer (the twin's is 128).
    Case("mistral-window", "mistral", verdict="diverges", keys=("sliding_window",), explained_by="sliding_window"),
    # Phi-3.5-mini's LongRoPE: MAX reads every key, and computes the attention factor differently.
    Case("phi3-longrope", "phi3", verdict="diverges", explained_by="LongRoPE"),
    PLAIN_LLAMA,
    Case("qwen3", "qwen3"),
    Case("olmo2", "olmo2"),
    # Qwen3-MoE's experts on the CPU path (MAX's gate and expert MLPs, every expert run); routing as HF's.
    QWEN3_MOE := Case("qwen3-moe", "qwen3_moe"),
    # Qwen3MoeConfig's default: no renormalisation, which MAX's gate does anyway.
    Case("qwen3-moe-no-renormalise", "qwen3_moe", {"norm_topk_prob": False}, verdict="diverges",
         explained_by="norm_topk_prob"),
]

_rows: list[str] = []


@pytest.fixture(scope="module")
def results_table():
    yield
    header = [
        "# check-native on twins", "",
        f"`make matrix` on {platform.machine()}, Python {platform.python_version()}: `import-model check-native` on "
        "family twins, MAX's own registration against transformers, float32 on the CPU, tolerance rel. L2 1e-4.",
        "A diverging row names the config keys MAX's native code never reads, the checkpoint weights its graph "
        "never loads (decided by a dry build, without compiling), or the first tap that differs. Seconds are the "
        "dry build plus the comparison as measured; a graph compiled for the first time adds minutes.", "",
        "| twin | architecture | verdict | exit | first divergence | worst rel. L2 | unread config keys | "
        "unread weights | seconds | reason | known difference (quoted) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if _rows:
        RESULTS.write_text("\n".join(header + merged_rows(RESULTS, _rows)) + "\n")


def _run_case(case: Case, root: Path) -> dict:
    result, payload = check_native(case.twin(root))
    assert payload, result.stderr[-3000:]
    assert result.returncode == payload["exit_code"] == {"verified": 0, "diverges": 1}[case.verdict], \
        (payload.get("reason"), result.stderr[-2000:])
    assert payload["verdict"] == case.verdict
    keys = {row["key"] for row in payload["unread_keys"]}
    assert set(case.keys) <= keys, keys
    assert bool(payload["unread_weights"]) == case.unread_weights
    if case.verdict == "verified":
        assert payload["worst_rel_l2"] < 1e-4 and not keys and payload["first_divergence"] is None
    elif not case.unread_weights:
        assert payload["first_divergence"]["tap"] == "layer_0"
    if case.explained_by:
        assert any(case.explained_by in text for text in payload["explanations"]), payload["explanations"]
    return payload


def _record(case: Case, payload: dict) -> None:
    first = payload.get("first_divergence") or {}
    worst = payload.get("worst_rel_l2")
    weights = payload["unread_weights"]
    seconds = sum(v for k, v in payload.get("timings", {}).items() if k in ("dry_build_s", "total_s"))
    reason = payload["reason"] + (f"; routing: {payload['routing']}" if payload.get("routing") else "")
    _rows.append(f"| {case.name} | {payload['architecture']} | {payload['verdict']} | {payload['exit_code']} | "
                 f"{first.get('tap', '-')} | {'-' if worst is None else f'{worst:.2e}'} | "
                 f"{', '.join(k['key'] for k in payload['unread_keys']) or '-'} | "
                 f"{len(weights) if weights else '-'} | {seconds:.0f} | {reason.replace('|', '/')[:400]} | "
                 f"{'; '.join(payload['explanations']).replace('|', '/') or '-'} |")


@pytest.mark.matrix
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_native_check_matrix(case: Case, tmp_path: Path, results_table: None) -> None:
    _record(case, _run_case(case, tmp_path))


def test_mlp_biases_are_weights_the_native_graph_never_loads(tmp_path: Path) -> None:
    """Decided by the dry build: no graph is compiled."""
    payload = _run_case(LLAMA_MLP_BIAS, tmp_path)
    assert all(name.endswith(("gate_proj.bias", "up_proj.bias", "down_proj.bias")) for name in payload["unread_weights"])
    assert "max_build_s" not in payload["timings"] and not payload["per_tap"]


@pytest.mark.slow
def test_maxs_own_qwen3_moe_is_verified_on_the_experts_cpu_path(tmp_path: Path) -> None:
    """MAX's Qwen3-MoE gate and experts, every expert run on the CPU: the same twin the catalog port passes on."""
    payload = _run_case(QWEN3_MOE, tmp_path)
    assert any(note.startswith("experts: CPU path") for note in payload["notes"]), payload["notes"]
    assert re.match(r"(\d+)/\1 token-layers same experts", payload["routing"]), payload["routing"]
    assert payload["routing"].endswith(" 0 divergent")


@pytest.mark.slow
def test_plain_llama_is_verified(tmp_path: Path) -> None:
    """The graph tests/test_verify.py compiles for its Llama copy: a cache hit."""
    payload = _run_case(PLAIN_LLAMA, tmp_path)
    assert {row["tap"] for row in payload["per_tap"]} >= {"embed", "layer_0", "layer_1", "logits"}


# --------------------------------------------------------------------------- the static reader (no compile, no MAX import)


def _config(family: str, drop: tuple[str, ...] = (), **edits: Any) -> dict[str, Any]:
    config = copy.deepcopy(FAMILY_CONFIGS[family])
    for key in drop:
        config.pop(key, None)
    config.update(edits)
    return config


def _unread(slug: str, config: dict[str, Any]) -> set[str]:
    from import_model.recon.native_reads import unread_keys

    return {k.key for k in unread_keys(slug, config)}


@pytest.mark.parametrize(("family", "slug"), [("llama", "llama3"), ("qwen2", "qwen2"), ("qwen3", "qwen3"),
                                              ("olmo2", "olmo2"), ("phi3", "phi3"), ("phi4", "phi3"),
                                              ("gemma3_text", "gemma3"), ("qwen3_moe", "qwen3")])
def test_native_code_reads_every_key_of_the_configs_it_was_written_for(family: str, slug: str) -> None:
    # qwen3_moe stores num_local_experts; MAX reads it as num_experts through the config class's attribute_map.
    # phi3's window (262144) is longer than its context, and qwen2's is switched off: neither is active.
    assert _unread(slug, FAMILY_CONFIGS[family]) == set()


def test_keys_the_native_code_never_reads_are_named() -> None:
    assert _unread("llama3", _config("llama", mlp_bias=True)) == {"mlp_bias"}
    assert _unread("llama3", _config("llama", mlp_bias=True, hidden_act="gelu")) == {"mlp_bias", "hidden_act"}
    qwen2 = _config("qwen2", drop=("layer_types",), use_sliding_window=True, sliding_window=128, max_window_layers=0)
    assert _unread("qwen2", qwen2) == {"use_sliding_window", "sliding_window", "max_window_layers"}
    assert _unread("mistral", FAMILY_CONFIGS["mistral"]) == {"sliding_window"}
    assert _unread("mistral", _config("mistral", sliding_window=None)) == set()
    assert _unread("mistral", _config("mistral", sliding_window=10**6)) == set()  # wider than the context


def test_the_reader_follows_the_architectures_a_native_imports() -> None:
    from import_model.recon.native_reads import names_read, source_files

    files = {path.relative_to(path.parents[1]).as_posix() for path, _ in source_files("qwen2")}
    assert "qwen2/model_config.py" in files and "llama3/llama3.py" in files  # qwen2 builds on llama3's code
    assert "attention_bias" in names_read("qwen2") and "mlp_bias" not in names_read("llama3")
    assert names_read("no_such_architecture") == frozenset()


def test_inspect_says_native_but_unverified_and_names_the_keys(tmp_path: Path) -> None:
    twin = LLAMA_MLP_BIAS.twin(tmp_path)
    result = subprocess.run([sys.executable, "-m", "import_model", "inspect", str(twin), "--json"],
                            capture_output=True, text=True, env=child_env(), check=True)
    native = json.loads(result.stdout)["native"][0]
    assert native["status"] == "unverified" and [k["key"] for k in native["unread_keys"]] == ["mlp_bias"]
    assert len(native["unread_weights"]) == 6 and all(".mlp." in w and w.endswith(".bias") for w in native["unread_weights"])
    human = subprocess.run([sys.executable, "-m", "import_model", "inspect", str(twin)], capture_output=True,
                           text=True, env=child_env(), check=True).stdout
    assert "never reads: mlp_bias" in human and f"check-native {twin}" in human and "no port needed." not in human


# --------------------------------------------------------------------------- CLI wiring and exit codes (engine mocked)


def _answer(verdict: str, **extra: Any) -> Any:
    from import_model.recon.native_reads import UnreadKey
    from import_model.verify.native_check import NativeCheck

    keys = (UnreadKey("sliding_window", 128, "transformers masks every token older than the window"),) \
        if verdict == "diverges" else ()
    return NativeCheck("m", "MistralForCausalLM", "mistral", "twin", verdict, f"because {verdict}",
                       worst_rel_l2=1e-6 if verdict == "verified" else None, unread_keys=keys,
                       first_divergence={"tap": "layer_0", "step": 0, "prompt": 2} if verdict == "diverges" else None,
                       **extra)


@pytest.mark.parametrize(("verdict", "code"), [("verified", 0), ("diverges", 1), ("cannot_run", 2)])
def test_exit_codes_and_json_follow_the_verdict(verdict: str, code: int, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from import_model.cli import main
    from import_model.commands import native

    seen: list[list[str]] = []
    monkeypatch.setattr(native, "run_in_child", lambda argv, model, arch: seen.append(argv) or _answer(verdict))
    twin = str(family_twin_dir("mistral"))
    assert main(["check-native", twin, "--json", "--decode-steps", "2"]) == code
    payload = json.loads(capsys.readouterr().out)
    assert payload["verdict"] == verdict and payload["exit_code"] == code
    assert seen[0][:2] == ["check-native", twin] and "--json" in seen[0] and "2" in seen[0]
    assert main(["check-native", twin]) == code
    out = capsys.readouterr().out
    assert {"verified": "VERIFIED", "diverges": "DIVERGES", "cannot_run": "CANNOT RUN"}[verdict] in out
    if verdict == "diverges":
        assert "sliding_window" in out and "import-model port" in out


def test_a_class_max_does_not_register_is_refused_with_one_line() -> None:
    result = subprocess.run([sys.executable, "-m", "import_model", "check-native", str(family_twin_dir("helium"))],
                            capture_output=True, text=True, env=child_env())
    assert result.returncode == 2 and "does not register HeliumForCausalLM" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_full_weights_need_a_local_checkpoint() -> None:
    from import_model.cli import main

    assert main(["check-native", "org/not-local", "--weights", "full"]) == 2


def test_the_answer_survives_the_trip_through_json() -> None:
    from import_model.verify.native_check import from_dict

    answer = _answer("diverges", unread_weights=("layers.0.mlp.up_proj.bias",), explanations=("x",))
    assert from_dict(json.loads(json.dumps(answer.as_dict()))) == answer
    with pytest.raises(ValueError):
        from_dict({**answer.as_dict(), "verdict": "maybe"})


# --------------------------------------------------------------------------- port runs the same check first


@pytest.mark.parametrize("verdict", ["verified", "diverges", "cannot_run"])
def test_port_acts_on_the_native_answer(verdict: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from import_model.commands import native, port_run
    from import_model.errors import UserError

    monkeypatch.setattr(native, "run_in_child", lambda argv, model, arch: _answer(verdict))
    target = port_run.open_target(str(family_twin_dir("mistral")), None, "/tmp/unused-ports")
    args = argparse.Namespace(model=str(family_twin_dir("mistral")), weights="twin", revision=None)
    run = port_run.PortRun(args.model)
    if verdict == "cannot_run":
        with pytest.raises(UserError) as refused:
            port_run.native_check_step(args, target, run)
        assert refused.value.exit_code == 2 and "cannot run" in refused.value.message
    else:
        assert port_run.native_check_step(args, target, run) is (verdict == "verified")
        assert run.native_check["verdict"] == verdict
    step = run.steps[-1]
    assert step["step"] == "native check" and step["status"] == verdict.replace("_", " ")
    if verdict == "diverges":
        assert "through the catalog" in step["detail"]


# --------------------------------------------------------------------------- the engine's decisions (MAX mocked)


def _engine(monkeypatch: pytest.MonkeyPatch, dry: Any, compare: Any = None) -> Any:
    """check_native on mistral's twin config with the copy, the dry build and the comparison replaced."""
    from types import SimpleNamespace

    from import_model.recon import registry
    from import_model.verify import engine, native_check

    monkeypatch.setattr(native_check, "native_registration_copy", lambda arch, work: (work, ()))
    monkeypatch.setattr(native_check, "_dry_build", lambda checkpoint, port: dry)
    if compare is not None:
        monkeypatch.setattr(engine, "run_verify", compare)
    config = json.loads((family_twin_dir("mistral") / "config.json").read_text())
    arch = registry.find_native("MistralForCausalLM")[0]
    return native_check.check_native(Path("/nonexistent"), config, arch, SimpleNamespace(), model="m")


def test_weights_the_graph_never_loads_decide_without_a_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    def never(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("compiled although the dry build had decided")

    dry = SimpleNamespace(adapted={"layers.0.mlp.up_proj.bias": [8], "layers.0.mlp.up_proj.weight": [8, 4]},
                          expected={"layers.0.mlp.up_proj.weight": [8, 4]}, seconds=1.0)
    result = _engine(monkeypatch, dry, never)
    assert (result.verdict, result.exit_code) == ("diverges", 1)
    assert result.unread_weights == ("layers.0.mlp.up_proj.bias",) and "layers.*.mlp.up_proj.bias" in result.reason
    assert [k.key for k in result.unread_keys] == ["sliding_window"]
    assert any("sliding_window" in text for text in result.explanations)  # mistral's known difference, quoted


def test_a_graph_max_cannot_build_is_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    result = _engine(monkeypatch, "building the module tree: ValueError: no float32 kernel")
    assert (result.verdict, result.exit_code) == ("cannot_run", 2) and "no float32 kernel" in result.details
    assert result.explanations == ()  # a known difference explains a measured divergence only


def test_a_compile_failure_is_cannot_run_with_maxs_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from import_model.verify.max_runner import MaxBuildError

    def fails(*_a: Any, **_k: Any) -> Any:
        raise MaxBuildError("building the port's graph", "Traceback...\nconstraint failed: kernel has no CPU path")

    result = _engine(monkeypatch, SimpleNamespace(adapted={"w": [1]}, expected={"w": [1]}, seconds=1.0), fails)
    assert result.verdict == "cannot_run" and "kernel constraint: kernel has no CPU path" in result.reason


@pytest.mark.matrix
def test_native_check_on_real_weights(smollm2_dir: Path, results_table: None) -> None:
    """SmolLM2-135M-Instruct in float32 under its own class: MAX's llama3 on the real weights, HF sanity first."""
    from tests.support.smollm2 import smollm2_float32

    smollm2_float32()
    checkpoint = smollm2_dir.with_name(smollm2_dir.name + "-f32")  # the float32 copy, still LlamaForCausalLM
    result, payload = check_native(checkpoint, "--weights", "full")
    assert result.returncode == 0 and payload["verdict"] == "verified", (payload.get("reason"), result.stderr[-2000:])
    assert payload["worst_rel_l2"] < 1e-4 and payload["greedy_text"] and all(r["match"] for r in payload["greedy_text"])
    _record(Case("smollm2-135m-instruct (real weights)", "llama"), payload)


@pytest.mark.matrix
def test_port_writes_and_verifies_a_diverging_native_under_its_own_class(tmp_path: Path) -> None:
    """The Llama with MLP biases: check-native says diverges, so port goes on through the catalog (mlp_bias entry)."""
    twin = LLAMA_MLP_BIAS.twin(tmp_path)
    result = subprocess.run([sys.executable, "-m", "import_model", "port", str(twin), "--output-dir",
                             str(tmp_path / "ports"), "--yes", "--json"], capture_output=True, text=True, timeout=1500,
                            env=child_env())
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    run = json.loads(result.stdout)
    steps = {s["step"]: s for s in run["steps"]}
    assert steps["native check"]["status"] == "diverges" and run["native_check"]["unread_weights"]
    assert any(r["rule"] == "mlp_bias" and r["status"] == "implemented" for r in run["deltas"])
    assert result.returncode == 0 and run["verify"]["passed"] and run["verify"]["worst_rel_l2"] < 1e-4


def test_a_copied_moe_registration_gets_the_experts_cpu_path(tmp_path: Path) -> None:
    from import_model.port.native_copy import EVERY_EXPERT_MOE, copy_native_port, run_experts_on_cpu

    port = copy_native_port("qwen3", tmp_path, class_name="Qwen3MoeForCausalLM", port_slug="native_qwen3",
                            registration="Qwen3MoeForCausalLM")
    assert "ARCHITECTURES = [qwen3_moe_arch]" in (port / "__init__.py").read_text()  # not qwen3's dense one
    assert run_experts_on_cpu(port) == ["qwen3.py"]
    text = (port / "qwen3.py").read_text()
    imports = text.index("from max.nn.moe import MoE")
    assert text.index("from .every_expert_moe import EveryExpertMoE as MoE") > imports
    assert (port / EVERY_EXPERT_MOE.name).read_text() == EVERY_EXPERT_MOE.read_text()
    ast.parse(text)
    dense = copy_native_port("llama3", tmp_path, class_name="LlamaForCausalLM", port_slug="native_llama3")
    assert run_experts_on_cpu(dense) == [] and not (dense / EVERY_EXPERT_MOE.name).exists()
