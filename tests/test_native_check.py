"""``import-model check-native``: MAX's own registration against transformers on this exact config.

``make matrix`` runs seven twins (four where MAX's native code computes something else, three where it is
right) and writes docs/native-check.md. ``make test`` runs one of each kind cheaply: the Llama with MLP biases
is decided by the dry build (weights the graph never loads, no compile), and plain Llama reuses the graph
``tests/test_verify.py`` compiles, so it hits the compile cache.
"""

from __future__ import annotations

import copy
import json
import platform
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
        "never loads (decided by a dry build, without compiling), or the first tap that differs.", "",
        "| twin | architecture | verdict | exit | first divergence | worst rel. L2 | unread config keys | "
        "unread weights | seconds | reason |",
        "|---|---|---|---|---|---|---|---|---|---|",
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
    _rows.append(f"| {case.name} | {payload['architecture']} | {payload['verdict']} | {payload['exit_code']} | "
                 f"{first.get('tap', '-')} | {'-' if worst is None else f'{worst:.2e}'} | "
                 f"{', '.join(k['key'] for k in payload['unread_keys']) or '-'} | "
                 f"{len(weights) if weights else '-'} | {seconds:.0f} | {payload['reason'].replace('|', '/')[:300]} |")


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
def test_plain_llama_is_verified(tmp_path: Path) -> None:
    """The graph tests/test_verify.py compiles for its Llama copy: a cache hit."""
    payload = _run_case(PLAIN_LLAMA, tmp_path)
    assert {row["tap"] for row in payload["per_tap"]} >= {"embed", "layer_0", "layer_1", "logits"}
