"""Twin parity of the port: the proof ``import-model port`` gave when it wrote it, rerun with ``pytest``.

One module-scoped run of ``import-model verify`` (a seeded tiny random-weight
twin of the model, float32 on the CPU, every tap at prefill and at each decode
step); each test reads that run. The first run compiles the port's graph (a few
minutes on a small CPU), later runs hit MAX's compile cache. Set
``IMPORT_MODEL_PORT_SOURCE`` when the model the port was written for has moved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from import_model.port.writer import PortCheck

#: The port and the model it was written for; the writer fills them in.
CHECK = PortCheck()

PORT_DIR = Path(__file__).resolve().with_name(CHECK.slug)


@pytest.fixture(scope="module")
def verdict(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    source = os.environ.get("IMPORT_MODEL_PORT_SOURCE", CHECK.model)
    reports = tmp_path_factory.mktemp("verify")
    run = subprocess.run([sys.executable, "-m", "import_model", "verify", source, "--port-dir", str(PORT_DIR),
                          "--report-dir", str(reports), "--json"], capture_output=True, text=True, timeout=3600)
    assert run.returncode in (0, 1), f"verify could not run (exit {run.returncode}): {run.stderr[-2000:]}"
    return json.loads(run.stdout)


def test_every_tap_matches_the_reference(verdict: dict[str, Any]) -> None:
    off = [f"{row['tap']} ({row['phase']}): rel. L2 {row['rel_l2']:.1e}" for row in verdict["per_tap"] if not row["ok"]]
    assert not off, "taps outside tolerance: " + "; ".join(off[:8])


def test_no_layer_diverges(verdict: dict[str, Any]) -> None:
    assert verdict["first_divergence"] is None, f"first divergent tap: {verdict['first_divergence']}"


def test_prefill_and_decode_steps_were_compared(verdict: dict[str, Any]) -> None:
    phases = {row["phase"] for row in verdict["per_tap"]}
    assert "prefill" in phases and len(phases) > 1, f"phases compared: {sorted(phases)}"


def test_logits_were_compared(verdict: dict[str, Any]) -> None:
    assert any(row["tap"] == "logits" for row in verdict["per_tap"]), "no logits tap in the report"
