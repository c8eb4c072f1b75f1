"""Verify benchmark: `import-model verify` on a twin, cold and warm compile cache, compile vs run split.

Prints one Markdown table. "Cold" points XDG_CACHE_HOME (where MAX keeps its
compiled graphs) at an empty folder; "warm" reruns against that folder.
Wall time is the whole command in a fresh process (imports included); build is
MAX's graph build and compile plus weight load; compare is running both models
over every prompt and decode step and comparing the taps.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.families import family_twin_dir  # noqa: E402
from tests.support.ports import native_port, renamed_checkpoint  # noqa: E402


def run_verify(checkpoint: Path, port: Path, cache: str) -> tuple[float, dict]:
    env = dict(os.environ, XDG_CACHE_HOME=cache, MAX_SERVE_DISABLE_TELEMETRY="1")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "import_model", "verify", str(checkpoint), "--port-dir", str(port),
                             "--json"], capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"verify failed ({result.returncode}): {result.stderr[-800:]}")
    return wall, json.loads(result.stdout)


def main() -> int:
    arch = "BenchLlamaForCausalLM"
    with tempfile.TemporaryDirectory() as work, tempfile.TemporaryDirectory() as cache:
        checkpoint = renamed_checkpoint(family_twin_dir("llama"), Path(work) / "ckpt", arch)
        port = native_port("llama3", Path(work) / "ports", arch, "bench_llama")
        rows = []
        for label in ("cold", "warm"):
            wall, payload = run_verify(checkpoint, port, cache)
            timings = payload["timings"]
            rows.append((label, wall, timings["max_build_s"], timings["compare_s"], payload["passed"]))
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          "llama twin (2 layers), 3 prompts (6, 32 and 222 tokens), 3 decode steps each\n")
    print("| compile cache | wall time | MAX build (compile + load) | run and compare | verdict |")
    print("|---|---|---|---|---|")
    for label, wall, build, compare, passed in rows:
        print(f"| {label} | {wall:.1f} s | {build:.1f} s | {compare:.2f} s | {'PASS' if passed else 'FAIL'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
