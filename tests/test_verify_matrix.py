"""The heavy ground-truth matrix for the parity engine (`make matrix`, not in `make test`).

Every native donor copied as a custom architecture must PASS on its family's
twin; every planted bug must FAIL at the layer it touches. Each row is its own
graph compile (minutes cold), so the matrix writes its results to
docs/verify-matrix.md, which is committed.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import pytest

from tests.support.families import family_twin_dir
from tests.support.ports import BREAKAGES, allow_float32, native_port, renamed_checkpoint
from tests.support.results import merged_rows
from tests.test_verify import verify

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "verify-matrix.md"

#: (family twin, native donor slug, breakage or None): what must pass, and what must fail where.
#: Rows that cannot run on a CPU stay in the table with the reason, rather than being hidden. gemma3 and
#: mistral in MAX 26.7 register only bfloat16 (a GPU encoding): their copies get float32 added to the
#: registration; gemma3 and qwen3 build all-reduce layers that need GPU devices even on one device.
CASES = [
    ("llama", "llama3", None),
    ("qwen3", "qwen3", None),
    ("olmo2", "olmo2", None),
    ("gemma3_text", "gemma3", None),
    ("phi3", "phi3", None),
    ("mistral", "mistral", None),
    ("llama", "llama3", "rope_theta"),
    ("llama", "llama3", "norm_eps_layer1"),
    ("llama", "llama3", "transposed_o_proj_layer1"),
    ("llama", "llama3", "residual_dropped_layer1"),
]

_rows: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def results_table():
    yield
    header = [
        "# Verify ground-truth matrix", "",
        f"`make matrix` on {platform.machine()}, {platform.python_version()}; float32 on CPU; tolerance rel. L2 1e-4.",
        "", "| family twin | donor copied | planted bug | expected | verdict | first divergence | worst rel. L2 | build s | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    RESULTS.write_text("\n".join(header + merged_rows(RESULTS, _rows, key_columns=3)) + "\n")


@pytest.mark.matrix
@pytest.mark.parametrize(("family", "donor", "breakage"), CASES, ids=[f"{f}-{d}-{b or 'clean'}" for f, d, b in CASES])
def test_matrix(family: str, donor: str, breakage: str | None, tmp_path: Path) -> None:
    arch = f"Parity{family.title().replace('_', '')}ForCausalLM"
    checkpoint = renamed_checkpoint(family_twin_dir(family), tmp_path / "ckpt", arch)
    port = native_port(donor, tmp_path / "ports", arch, f"m_{family}_{breakage or 'clean'}", breakage=breakage)
    widened = allow_float32(port)
    start = time.perf_counter()
    result, payload = verify(str(checkpoint), "--port-dir", str(port))
    expected = "FAIL at " + BREAKAGES[breakage].first_tap if breakage else "PASS"
    first = payload.get("first_divergence") or {}
    verdict = {0: "PASS", 1: "FAIL"}.get(result.returncode, "ERROR")
    worst = max((row["rel_l2"] for row in payload.get("per_tap", [])), default=float("nan"))
    note = "" if result.returncode in (0, 1) else (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
    if result.returncode < 0 or result.returncode > 128:
        note = f"the process died with signal {abs(result.returncode) % 128} while MAX built or ran the graph"
    note = note.split("(full message")[0].split(" Report: ")[0].replace("|", "/")[:140]
    if widened:
        note = ("float32 added to the copy's bfloat16-only registration (graph untouched); " + note).rstrip("; ")
    _rows.append(f"| {family} | {donor} | {breakage or '-'} | {expected} | {verdict} | {first.get('tap', '-')} | "
                 f"{worst:.2e} | {payload.get('timings', {}).get('max_build_s', time.perf_counter() - start):.0f} | "
                 f"{note} |")
    if breakage:
        assert result.returncode == 1, result.stderr[-1500:]
        assert first["tap"] == BREAKAGES[breakage].first_tap
    else:
        assert result.returncode == 0, result.stderr[-1500:]

