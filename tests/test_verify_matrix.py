"""The heavy ground-truth matrix for the parity engine (`make matrix`, not in `make test`).

Every native donor copied as a custom architecture must PASS on its family's
twin; every planted bug must FAIL at the layer it touches; where MAX's own code
differs from transformers, the twin must FAIL at that layer and pass once the
one difference is removed on the HF side. Each row is its own graph compile
(minutes cold), so the matrix writes its results to docs/verify-matrix.md,
which is committed.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.families import family_twin_dir
from tests.support.ports import BREAKAGES, allow_float32, bfloat16_norm_weights, native_port, renamed_checkpoint
from tests.support.results import merged_rows
from tests.test_verify import verify

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "verify-matrix.md"


@dataclass(frozen=True)
class Case:
    """A twin, the native donor copied as its port, and what the engine must say about the pair."""

    family: str
    donor: str
    breakage: str | None = None
    #: A known difference between MAX's own code and HF: the tap where it must show, and why.
    known_difference: tuple[str, str] | None = None
    #: Dotted config.json edits on the twin copy.
    config_edits: dict[str, Any] = field(default_factory=dict)
    #: Store norm weights as bfloat16 (exact values) for a graph that declares them so.
    bfloat16_norms: bool = False
    note: str = ""

    @property
    def id(self) -> str:
        return "-".join([self.family, self.donor, self.breakage or ("variant" if self.config_edits else "clean")])

    @property
    def expected_first_tap(self) -> str | None:
        if self.breakage:
            return BREAKAGES[self.breakage].first_tap
        return self.known_difference[0] if self.known_difference else None


#: MAX 26.7 scales the softmax by LongRoPE's attention factor once; HF (and Phi-3's own code) multiplies cos and
#: sin by it, so q.k gets its square. Phi-3.5-mini's twin keeps the real 131072 / 4096 context ratio (factor 1.19).
LONGROPE_FACTOR = math.sqrt(1 + math.log(131072 / 4096) / math.log(4096))

#: Every native copy must PASS on its family's twin and every planted bug must FAIL where it is planted; a
#: difference in MAX's own code must FAIL where it shows, and the same twin with that one difference removed on
#: the HF side must PASS.
CASES = [
    Case("llama", "llama3"),
    Case("qwen3", "qwen3"),
    Case("olmo2", "olmo2"),
    Case("gemma3_text", "gemma3", bfloat16_norms=True,
         note="norm weights stored as bfloat16 (bf16-exact values), which MAX's gemma3 graph declares"),
    Case("phi4", "phi3"),
    Case("phi3", "phi3", known_difference=(
        "layer_0", "MAX 26.7 applies LongRoPE's attention factor once (softmax scale), HF twice (cos and sin)")),
    Case("phi3", "phi3", config_edits={"rope_parameters.attention_factor": math.sqrt(LONGROPE_FACTOR)},
         note="HF's LongRoPE attention factor set to the square root of MAX's: the plain phi3 row's only difference"),
    Case("mistral", "mistral", known_difference=(
        "layer_0", "MAX 26.7's mistral ignores sliding_window: past the window (the 222-token prompt) it attends to "
                   "the whole context")),
    Case("mistral", "mistral", config_edits={"sliding_window": None},
         note="no window, as Mistral-7B-v0.2 and later ship: the plain mistral row's only difference"),
    Case("llama", "llama3", "rope_theta"),
    Case("llama", "llama3", "norm_eps_layer1"),
    Case("llama", "llama3", "transposed_o_proj_layer1"),
    Case("llama", "llama3", "residual_dropped_layer1"),
]

_rows: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def results_table():
    yield
    header = [
        "# Verify ground-truth matrix", "",
        f"`make matrix` on {platform.machine()}, {platform.python_version()}; float32 on CPU; tolerance rel. L2 1e-4.",
        "An expected FAIL without a planted bug is a place where MAX's own code differs from transformers (the note "
        "says how); the row beside it removes that one difference on the HF side and passes.",
        "", "| family twin | donor copied | planted bug | expected | verdict | first divergence | worst rel. L2 | build s | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    RESULTS.write_text("\n".join(header + merged_rows(RESULTS, _rows, key_columns=3)) + "\n")


@pytest.mark.matrix
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_matrix(case: Case, tmp_path: Path) -> None:
    arch = f"Parity{case.family.title().replace('_', '')}ForCausalLM"
    checkpoint = renamed_checkpoint(family_twin_dir(case.family), tmp_path / "ckpt", arch, case.config_edits)
    if case.bfloat16_norms:
        assert bfloat16_norm_weights(checkpoint) > 0
    port = native_port(case.donor, tmp_path / "ports", arch, f"m_{case.family}_{case.breakage or 'clean'}",
                       breakage=case.breakage)
    notes = [case.note] if case.note else []
    if allow_float32(port):
        notes.append("float32 added to the copy's bfloat16-only registration (graph untouched)")
    start = time.perf_counter()
    result, payload = verify(str(checkpoint), "--port-dir", str(port))
    first_tap = case.expected_first_tap
    expected = f"FAIL at {first_tap}" if first_tap else "PASS"
    first = payload.get("first_divergence") or {}
    verdict = {0: "PASS", 1: "FAIL"}.get(result.returncode, "ERROR")
    worst = max((row["rel_l2"] for row in payload.get("per_tap", [])), default=float("nan"))
    if case.known_difference:
        notes.append(case.known_difference[1])
    notes += payload.get("notes", [])
    if result.returncode not in (0, 1):
        error = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
        notes.append("error: " + error.split("(full message")[0].split(" Report: ")[0])
    edits = ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {json.dumps(v)}" for k, v in case.config_edits.items())
    _rows.append(f"| {case.family}{' (' + edits + ')' if edits else ''} | {case.donor} | {case.breakage or '-'} | "
                 f"{expected} | {verdict} | {first.get('tap', '-')} | {worst:.2e} | "
                 f"{payload.get('timings', {}).get('max_build_s', time.perf_counter() - start):.0f} | "
                 f"{'; '.join(notes).replace('|', '/')[:400]} |")
    if first_tap:
        assert result.returncode == 1, result.stderr[-1500:]
        assert first["tap"] == first_tap
    else:
        assert result.returncode == 0, result.stderr[-1500:]
