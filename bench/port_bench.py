"""Port benchmark: `import-model port` wall time, and ported vs native decode speed, in one run.

Prints Markdown tables:

1. `port` on the Helium twin with MAX's compile cache empty (cold) and again (warm).
2. Time to first token (prefill of a 128-token prompt) and decode tokens/s
   (32 greedy steps through the KV cache) of a catalog port against MAX's
   native llama3 on a checkpoint of the same shape, median of 3 runs, each
   model in its own process:
   - SmolLM2-135M (real weights, float32) under a class name MAX does not
     register, so `port` writes a catalog port: Llama in all but its name;
   - Helium and GPT-NeoX twins widened to SmolLM2's shape (576 wide, 30
     layers, 9 heads / 3 KV heads), each against a Llama twin of that shape.
3. HF transformers eager against the MAX port on SmolLM2-135M, same prompt and steps.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.families import make_family_twin  # noqa: E402
from tests.support.ports import renamed_checkpoint  # noqa: E402

from import_model.procs import child_env  # noqa: E402

PROMPT_TOKENS = 128
DECODE_STEPS = 32
RUNS = 3
WIDE = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
        "num_key_value_heads": 3, "head_dim": 64}


def measure(checkpoint: str, port_dir: str | None) -> dict:
    """Run in a child process: build once, then RUNS x (prefill + DECODE_STEPS decode steps)."""
    from import_model.verify.max_runner import MaxPort

    start = time.perf_counter()
    port = MaxPort(Path(checkpoint), Path(port_dir) if port_dir else None, max_length=512, taps=False)
    build = time.perf_counter() - start
    ids = [(7 * i + 3) % 400 + 10 for i in range(PROMPT_TOKENS)]
    ttft, rates = [], []
    for _ in range(RUNS + 1):  # the first run warms caches and is dropped
        steps = port.run(ids, DECODE_STEPS)
        ttft.append(steps[0].seconds)
        rates.append(DECODE_STEPS / sum(s.seconds for s in steps[1:]))
    port.close()
    return {"build_s": build, "ttft_s": statistics.median(ttft[1:]), "decode_tps": statistics.median(rates[1:])}


def measure_hf(checkpoint: str) -> dict:
    """HF transformers eager, float32 on CPU: the same prompt, prefill then DECODE_STEPS cached greedy steps."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    ids = torch.tensor([[(7 * i + 3) % 400 + 10 for i in range(PROMPT_TOKENS)]])
    ttft, rates = [], []
    with torch.no_grad():
        for _ in range(RUNS + 1):
            start = time.perf_counter()
            out = model(ids, use_cache=True)
            ttft.append(time.perf_counter() - start)
            cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
            start = time.perf_counter()
            for _ in range(DECODE_STEPS):
                out = model(token, past_key_values=cache, use_cache=True)
                cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
            rates.append(DECODE_STEPS / (time.perf_counter() - start))
    return {"ttft_s": statistics.median(ttft[1:]), "decode_tps": statistics.median(rates[1:])}


def child(checkpoint: Path, port_dir: Path | None) -> dict:
    args = [sys.executable, __file__, "--measure", str(checkpoint), str(port_dir or "")]
    if port_dir == Path("hf"):
        args = [sys.executable, __file__, "--measure-hf", str(checkpoint)]
    result = subprocess.run(args, capture_output=True, text=True, env=child_env(), check=False)
    if result.returncode != 0:
        raise SystemExit(f"measuring {checkpoint} failed: {result.stderr[-800:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_port(model: Path, out_dir: Path, env: dict[str, str], *extra: str) -> tuple[float, dict]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "import_model", "port", str(model), "--output-dir", str(out_dir),
                             "--force", "--json", *extra], capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"port {model} failed ({result.returncode}): {result.stderr[-800:]}")
    return wall, json.loads(result.stdout)


def wide_twin(family: str, target: Path) -> Path:
    """The family's twin config at SmolLM2's shape (keys the family's config class has), seeded random weights."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    small = target.with_name(target.name + "-small")
    make_family_twin(family, small, force=True)
    config = AutoConfig.from_pretrained(str(small))
    for key, value in WIDE.items():
        if hasattr(config, key):
            setattr(config, key, value)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(str(target))
    for path in small.iterdir():
        if "token" in path.name or path.name == "special_tokens_map.json":
            shutil.copy(path, target / path.name)
    return target


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="port-bench-"))
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}\n")
    # 1. port wall time, cold and warm compile cache.
    cache = work / "xdg-cache"
    env = child_env() | {"XDG_CACHE_HOME": str(cache)}
    helium = work / "helium-twin"
    make_family_twin("helium", helium, force=True)
    rows = []
    for label in ("cold", "warm"):
        wall, payload = run_port(helium, work / f"ports-{label}", env)
        rows.append((label, wall, payload["verify"]["passed"]))
    print("## `import-model port` on the Helium twin\n")
    print("| compile cache | wall time | verdict |\n|---|---|---|")
    for label, wall, passed in rows:
        print(f"| {label} | {wall:.1f} s | {'PASS' if passed else 'FAIL'} |")
    # 2. ported vs native.
    from tests.support.smollm2 import smollm2_float32

    smol = smollm2_float32("SmolBenchForCausalLM")
    native_smol = renamed_checkpoint(smol, work / "smol-native", "LlamaForCausalLM")
    _, smol_port = run_port(smol, work / "smol-ports", child_env(), "--no-verify")
    pairs = [("SmolLM2-135M real weights (Llama but its class name)", smol, Path(smol_port["port_dir"]), native_smol)]
    llama_wide = wide_twin("llama", work / "llama-wide")
    for family in ("helium", "gpt_neox"):
        twin = wide_twin(family, work / f"{family}-wide")
        _, ported = run_port(twin, work / f"{family}-ports", child_env(), "--no-verify")
        pairs.append((f"{family} twin at SmolLM2's shape", twin, Path(ported["port_dir"]), llama_wide))
    print(f"\n## Catalog port vs native llama3 ({PROMPT_TOKENS}-token prefill, {DECODE_STEPS} decode steps, "
          f"median of {RUNS}, float32 on CPU)\n")
    print("| model | port TTFT | native TTFT | TTFT ratio (native/port) | port decode tok/s | native decode tok/s "
          "| decode ratio (port/native) |\n|---|---|---|---|---|---|---|")
    measured: dict[Path, dict] = {}
    for name, checkpoint, port_dir, native in pairs:
        ported = measured[port_dir] = child(checkpoint, port_dir)
        base = child(native, None)
        print(f"| {name} | {ported['ttft_s'] * 1000:.0f} ms | {base['ttft_s'] * 1000:.0f} ms | "
              f"{base['ttft_s'] / ported['ttft_s']:.2f} | {ported['decode_tps']:.1f} | {base['decode_tps']:.1f} | "
              f"{ported['decode_tps'] / base['decode_tps']:.2f} |")
    hf, ported = child(smol, Path("hf")), measured[Path(smol_port["port_dir"])]
    print("\n## HF eager vs the MAX port on SmolLM2-135M (float32, CPU, same prompt and steps)\n")
    print("| runtime | TTFT | decode tok/s |\n|---|---|---|")
    print(f"| transformers eager | {hf['ttft_s'] * 1000:.0f} ms | {hf['decode_tps']:.1f} |")
    print(f"| MAX catalog port | {ported['ttft_s'] * 1000:.0f} ms | {ported['decode_tps']:.1f} |")
    print(f"| ratio (MAX / HF decode) | - | {ported['decode_tps'] / hf['decode_tps']:.2f} |")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--measure":
        print(json.dumps(measure(sys.argv[2], sys.argv[3] or None)))
        sys.exit(0)
    if len(sys.argv) == 3 and sys.argv[1] == "--measure-hf":
        print(json.dumps(measure_hf(sys.argv[2])))
        sys.exit(0)
    sys.exit(main())
